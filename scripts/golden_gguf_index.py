#!/usr/bin/env python3
"""Golden index of the real GGUF test models, from the reference reader (gguf-py's GGUFReader).

Writes crates/ferrite-tensor/tests/golden/gguf_<model>.json for each model found in
$FERRITE_MODELS (default ~/.cache/ferrite/models): version, alignment, data offset, every tensor
info (name, ggml type, row-major shape = ne reversed, absolute offset, byte length), every
metadata pair (long strings and arrays summarised: length, head, tail, sha256 / sum), and the
sha256 of the first 64 bytes of a few tensors' data. Checked by tests/gguf_reader.rs.

Usage: python3 scripts/golden_gguf_index.py   (needs `pip install gguf numpy`)
"""
import hashlib
import json
import os
import sys

import gguf
import numpy as np

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen25": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
LONG = 200  # strings longer than this are stored as length + sha256
HEAD = 4

T = gguf.GGUFValueType


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def scalar(ty, v):
    if ty == T.STRING and len(v) > LONG:
        return {"type": ty.name, "len": len(v.encode()), "sha256": sha(v.encode())}
    if ty in (T.FLOAT32, T.FLOAT64):
        v = float(v)
    elif ty == T.BOOL:
        v = bool(v)
    elif ty != T.STRING:
        v = int(v)
    return {"type": ty.name, "value": v}


def field_json(f):
    ty = f.types[0]
    if ty != T.ARRAY:
        return scalar(ty, f.contents())
    item = f.types[1] if len(f.types) > 1 else None
    items = f.contents()
    out = {"type": "ARRAY", "item_type": item.name if item else None, "len": len(items)}
    if item == T.ARRAY:  # nested: summarise lengths only
        return out
    if item == T.STRING:
        out["head"] = items[:HEAD]
        out["tail"] = items[-1:] if items else []
        out["sha256"] = sha("\n".join(items).encode())
    elif item in (T.FLOAT32, T.FLOAT64):
        out["head"] = [float(x) for x in items[:HEAD]]
        out["sum"] = float(np.sum(np.asarray(items, dtype=np.float64)))
    else:
        out["head"] = [int(x) for x in items[:HEAD]]
        out["sum"] = int(sum(int(x) for x in items))
    return out


def index(path):
    r = gguf.GGUFReader(path)
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        meta[name] = field_json(f)
    tensors = []
    for t in r.tensors:
        shape = [int(x) for x in reversed(list(t.shape))]
        tensors.append([t.name, t.tensor_type.name, shape, int(t.data_offset), int(t.n_bytes)])
    raw = np.memmap(path, mode="r")
    picks = sorted({0, len(r.tensors) // 2, len(r.tensors) - 1})
    data_sha = {}
    for i in picks:
        t = r.tensors[i]
        off = int(t.data_offset)
        data_sha[t.name] = sha(bytes(raw[off : off + min(64, int(t.n_bytes))]))
    return {
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "metadata_keys": [k for k in r.fields if not k.startswith("GGUF.")],
        "metadata": meta,
        "tensors": tensors,
        "data_sha256_first64": data_sha,
    }


def main():
    models = os.environ.get("FERRITE_MODELS", os.path.expanduser("~/.cache/ferrite/models"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "crates/ferrite-tensor/tests/golden")
    for key, file in MODELS.items():
        path = os.path.join(models, file)
        if not os.path.exists(path):
            print(f"missing {path}, skipped", file=sys.stderr)
            continue
        g = index(path)
        g["file"] = file
        out = os.path.join(out_dir, f"gguf_{key}.json")
        with open(out, "w") as fh:
            # one tensor per line keeps the file diffable and small
            body = json.dumps(g, separators=(",", ":"), ensure_ascii=False)
            fh.write(body.replace('],["', '],\n["') + "\n")
        print(f"wrote {out} ({len(g['tensors'])} tensors)")


if __name__ == "__main__":
    main()
