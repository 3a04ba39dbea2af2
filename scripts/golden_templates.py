#!/usr/bin/env python3
"""Golden chat-template renderings from Python Jinja2 for ferrite-chat's template tests.

Reads the chat templates straight from the GGUF files of SmolLM2 and Qwen2.5-Coder (with the BOS/EOS
token texts their metadata names), takes Gemma 3 (instruction-tuned), Llama 3.1, Llama 3.2 and Mistral (v3
tokenizer: `[AVAILABLE_TOOLS]`, `[TOOL_CALLS]`, 9-character call ids) from
`scripts/chat_templates/`, adds the ChatML fallback (`CHATML_SOURCE` in
`crates/ferrite-chat/src/template/mod.rs`; the Rust test checks the two copies agree) and a
synthetic Mistral-style template that exercises `raise_exception`, `strftime_now` (pinned to
`FIXED_TIME`), `tojson` arguments, loop controls, `namespace` and `{% generation %}`. Each is
rendered over every conversation of `CASES` exactly as transformers' `apply_chat_template`
does: an `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
`loopcontrols` extension and transformers' `AssistantTracker` (`{% generation %}`), the
`tojson` filter `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
sort_keys=False)`, globals `raise_exception` and `strftime_now`, and the variables `messages`,
`tools` (`None` when the case declares none, as transformers passes it), `documents=None`,
`add_generation_prompt`, `bos_token`, `eos_token`.

Normalization. ferrite's `ChatTemplate::render` takes OpenAI-shaped messages and normalizes two
things before rendering (see `crates/ferrite-chat/src/template/render.rs`); `normalize()` below
does the same, so both renderers see the same messages:
  * `content` given as an array of `{"type": "text", "text": ...}` parts becomes the parts'
    texts joined with "\\n";
  * `tool_calls[].function.arguments` given as a JSON string (OpenAI's wire form) becomes the
    object it encodes (when it encodes an object).
The golden file stores the cases un-normalized (as a client sends them): the Rust test feeds
them to `render` as they are.

Writes `crates/ferrite-chat/tests/golden/templates.json`.

Usage:
    scripts/golden_templates.py [--models DIR]

Needs `pip install gguf jinja2`. Default models dir: `$FERRITE_MODELS` or
`~/.cache/ferrite/models`.
"""

import argparse
import copy
import json
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_templates_cases import CASES, SYNTHETIC_SOURCE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "ferrite-chat" / "tests" / "golden" / "templates.json"
MOD_RS = ROOT / "crates" / "ferrite-chat" / "src" / "template" / "mod.rs"

# 2026-11-30 08:05:09 UTC: what `strftime_now` sees (ferrite: `ChatTemplate::with_fixed_time`).
FIXED_TIME = 1_796_025_909

GGUF_TEMPLATES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen25": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}

# Templates of models whose GGUF we do not have (our Gemma 3 270M is the base model, without a
# template), as their Hugging Face `tokenizer_config.json` holds them, with their BOS/EOS texts:
# Llama and Mistral copied from llama.cpp's `models/templates/` (commit c392e5094), Gemma 3 from
# transformers' `models/gemma3/convert_gemma3_weights.py` (`_CHAT_TEMPLATE`).
FILE_TEMPLATES = {
    "gemma3": ("google-gemma-3-it.jinja", "<bos>", "<eos>"),
    "llama31": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "llama32": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
}
TEMPLATE_DIR = ROOT / "scripts" / "chat_templates"


class AssistantTracker(jinja2.ext.Extension):
    """transformers' `{% generation %}` block, when not tracking: renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


class Raised(Exception):
    """What `raise_exception` raises (transformers raises `jinja2.exceptions.TemplateError`)."""


def compile_template(source):
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.fromtimestamp(FIXED_TIME, timezone.utc).strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def normalize(message):
    """ferrite's message normalization (render.rs); see the module docstring."""
    message = copy.deepcopy(message)
    content = message.get("content")
    if isinstance(content, list):
        assert all(p.get("type") == "text" for p in content), "only text parts are supported"
        message["content"] = "\n".join(p["text"] for p in content)
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                parsed = json.loads(function["arguments"])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                function["arguments"] = parsed
    return message


def render(template, bos, eos, case):
    try:
        text = template.render(
            messages=[normalize(m) for m in case["messages"]],
            tools=case.get("tools"),
            documents=None,
            add_generation_prompt=case["add_generation_prompt"],
            bos_token=bos,
            eos_token=eos,
        )
        return {"text": text}
    except Raised as e:
        return {"raised": str(e)}
    except Exception as e:  # noqa: BLE001 - any other template failure must be an error in Rust too
        return {"error": f"{type(e).__name__}: {e}"}


def gguf_template(path):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        return f

    f = field("tokenizer.chat_template")
    source = bytes(f.parts[f.data[0]]).decode("utf-8")
    tokens = field("tokenizer.ggml.tokens")

    def token_text(id_key):
        f = field(id_key)
        if f is None:
            return ""
        i = int(f.parts[f.data[0]][0])
        return bytes(tokens.parts[tokens.data[i]]).decode("utf-8")

    return source, token_text("tokenizer.ggml.bos_token_id"), token_text("tokenizer.ggml.eos_token_id")


def chatml_source():
    """`CHATML_SOURCE` from mod.rs (a Rust string literal with `\\n` escapes, no other escapes)."""
    text = MOD_RS.read_text()
    m = re.search(r'pub const CHATML_SOURCE: &str = "(.*?)";', text, re.S)
    if m is None:
        sys.exit(f"CHATML_SOURCE not found in {MOD_RS}")
    return m.group(1).replace("\\\\", "\x00").replace("\\n", "\n").replace("\x00", "\\")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_models = os.environ.get("FERRITE_MODELS", str(Path.home() / ".cache" / "ferrite" / "models"))
    ap.add_argument("--models", default=default_models)
    args = ap.parse_args()

    templates = {}
    for name, file in GGUF_TEMPLATES.items():
        path = Path(args.models) / file
        if not path.exists():
            sys.exit(f"missing model {path}")
        source, bos, eos = gguf_template(path)
        templates[name] = {"gguf": file, "source": source, "bos_token": bos, "eos_token": eos}
    for name, (file, bos, eos) in FILE_TEMPLATES.items():
        source = (TEMPLATE_DIR / file).read_text()
        templates[name] = {"file": file, "source": source, "bos_token": bos, "eos_token": eos}
    templates["chatml"] = {"source": chatml_source(), "bos_token": "", "eos_token": ""}
    templates["synthetic"] = {"source": SYNTHETIC_SOURCE, "bos_token": "<s>", "eos_token": "</s>"}

    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    outputs = {}
    for name, t in templates.items():
        compiled = compile_template(t["source"])
        outputs[name] = {c["name"]: render(compiled, t["bos_token"], t["eos_token"], c) for c in CASES}

    golden = {
        "generator": "scripts/golden_templates.py",
        "jinja2": jinja2.__version__,
        "fixed_time": FIXED_TIME,
        "templates": templates,
        "cases": CASES,
        "outputs": outputs,
    }
    OUT.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n")
    for name, outs in outputs.items():
        kinds = {k: sum(1 for o in outs.values() if k in o) for k in ("text", "raised", "error")}
        print(f"{name}: {len(outs)} cases {kinds}")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
