#!/usr/bin/env python3
"""Golden index of the real safetensors test model, from the reference reader (the `safetensors`
python package, numpy backend).

Writes crates/ferrite-tensor/tests/golden/safetensors_minilm.json: every tensor's name, dtype and
shape (in file/data order), and for a few float tensors the first 8 values, the sum, and the
sha256 of the raw bytes. Checked by tests/safetensors_reader.rs.

Usage: python3 scripts/golden_safetensors.py   (needs `pip install safetensors numpy`)
"""
import hashlib
import json
import os
import sys

import numpy as np
from safetensors import safe_open

MODEL = "all-MiniLM-L6-v2/model.safetensors"
PICKS = [
    "embeddings.word_embeddings.weight",
    "embeddings.LayerNorm.bias",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.5.output.dense.bias",
    "pooler.dense.weight",
]

DTYPES = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.int32: "I32", np.uint8: "U8"}


def main():
    models = os.environ.get("FERRITE_MODELS", os.path.expanduser("~/.cache/ferrite/models"))
    path = os.path.join(models, MODEL)
    if not os.path.exists(path):
        sys.exit(f"missing {path}")
    tensors = []
    values = {}
    with safe_open(path, framework="numpy") as f:
        names = list(f.keys())
        arrays = {n: f.get_tensor(n) for n in names}
    # file order = order of the data offsets in the header
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    names.sort(key=lambda k: tuple(header[k]["data_offsets"]))
    for name in names:
        a = arrays[name]
        tensors.append([name, DTYPES[a.dtype.type], list(a.shape)])
    for name in PICKS:
        if name not in arrays:
            continue
        a = np.ascontiguousarray(arrays[name])
        values[name] = {
            "first": [float(x) for x in a.reshape(-1)[:8]],
            "sum": float(a.astype(np.float64).sum()),
            "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        }
    out = {
        "file": MODEL,
        "header_len": n,
        "metadata": header.get("__metadata__"),
        "tensors": tensors,
        "values": values,
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dst = os.path.join(root, "crates/ferrite-tensor/tests/golden/safetensors_minilm.json")
    with open(dst, "w") as fh:
        fh.write(json.dumps(out, separators=(",", ":")).replace('],["', '],\n["') + "\n")
    print(f"wrote {dst} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
