#!/usr/bin/env python3
"""Golden token ids from llama.cpp for ferrite-chat's tokenizer tests.

Runs llama.cpp's `llama-tokenize` on every string of
`crates/ferrite-chat/tests/golden/strings.json` for each GGUF model, with the model's own BOS
policy and with `--no-bos`, and writes `crates/ferrite-chat/tests/golden/tokens_<model>.json`.

Each string is passed through a file (`-f`, with `--no-escape`) so its bytes (tabs, newlines,
CR, trailing spaces) reach llama.cpp exactly; special-token texts are parsed (llama-tokenize's
default for this tool).

Usage:
    scripts/golden_tokens.py [--llama-tokenize PATH] [--models DIR] [MODEL ...]

Defaults: `~/.cache/ferrite/peers/llama.cpp/build/bin/llama-tokenize` (built by
`shared/tools/build-llamacpp.sh`), `$FERRITE_MODELS` or `~/.cache/ferrite/models`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "crates" / "ferrite-chat" / "tests" / "golden"

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen25": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}


def tokenize(binary: Path, model: Path, text: str, no_bos: bool) -> list:
    """Token ids llama.cpp gives for `text` (exact bytes, special tokens parsed)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [str(binary), "-m", str(model), "-f", path, "--no-escape", "--ids",
               "--log-disable"]
        if no_bos:
            cmd.append("--no-bos")
        out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8")
    finally:
        os.unlink(path)
    # The ids are printed as one Python-style list on the last non-empty line.
    line = [l for l in out.splitlines() if l.strip()][-1]
    ids = json.loads(line)
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise RuntimeError(f"unexpected llama-tokenize output: {out!r}")
    return ids


def render(golden: dict) -> str:
    """The golden file as JSON with one case per line (readable diffs)."""
    head = {k: v for k, v in golden.items() if k != "cases"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [']
    cases = [json.dumps(c, ensure_ascii=False) for c in golden["cases"]]
    lines.append(",\n".join(cases))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def llama_cpp_version(binary: Path) -> str:
    """Where the llama.cpp build came from: the llama-cpp-python sdist it was unpacked from (as
    `shared/tools/build-llamacpp.sh` does), else `llama-tokenize --version`; best effort."""
    peers = binary.resolve().parents[3] if len(binary.resolve().parents) > 3 else None
    sdists = sorted(peers.glob("llama_cpp_python-*.tar.gz")) if peers else []
    if sdists:
        return "vendor/llama.cpp of " + sdists[-1].name[: -len(".tar.gz")]
    try:
        r = subprocess.run([str(binary), "--version"], capture_output=True, timeout=60)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("version"):
                return line.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def main() -> int:
    home = Path(os.environ.get("HOME", "."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-tokenize", type=Path,
                    default=home / ".cache/ferrite/peers/llama.cpp/build/bin/llama-tokenize")
    ap.add_argument("--models", type=Path,
                    default=Path(os.environ.get("FERRITE_MODELS", home / ".cache/ferrite/models")))
    ap.add_argument("model", nargs="*", help=f"models to do, of {list(MODELS)} (default: all)")
    args = ap.parse_args()
    unknown = [m for m in args.model if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")

    strings = json.loads((GOLDEN / "strings.json").read_text(encoding="utf-8"))
    version = llama_cpp_version(args.llama_tokenize)
    for name in args.model or list(MODELS):
        model = args.models / MODELS[name]
        if not model.exists():
            print(f"skipping {name}: {model} missing", file=sys.stderr)
            continue
        cases = []
        for case in strings:
            text = case["text"]
            cases.append({
                "name": case["name"],
                "text": text,
                "with_bos": tokenize(args.llama_tokenize, model, text, no_bos=False),
                "no_bos": tokenize(args.llama_tokenize, model, text, no_bos=True),
            })
        out = {
            "generator": "scripts/golden_tokens.py",
            "llama_cpp": version,
            "model": MODELS[name],
            "cases": cases,
        }
        path = GOLDEN / f"tokens_{name}.json"
        path.write_text(render(out), encoding="utf-8")
        print(f"wrote {path} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
