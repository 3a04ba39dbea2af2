#!/usr/bin/env python3
"""Golden values for ferrite's block dequantizers, from llama.cpp's `gguf` Python package.

For the real model files it picks a few tensors of every block type present and records, for a
few block ranges (start, middle, end of each tensor), the ABSOLUTE byte offset of the range in
the file, the number of blocks, the sha256 of the little-endian f32 output of
`gguf.quants.dequantize`, and its first values as u32 bit patterns. For Q4_0 and Q5_K (absent from
the files) it writes seeded synthetic blocks (random bytes, sane f16 scales) as hex instead of
an offset. The Rust test `tests/golden_dequant.rs` reads the raw bytes itself and compares exactly.

Usage: python3 scripts/golden_dequant.py  (writes crates/ferrite-tensor/tests/golden/dequant.json)
"""

import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

MODELS = os.environ.get("FERRITE_MODELS", os.path.expanduser("~/.cache/ferrite/models"))
FILES = [
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma-3-270m-q4_k_m.gguf",
]
TYPES = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K}
PER_TYPE_PER_FILE = 2  # tensors of each block type per file
RANGE_BLOCKS = 3  # blocks per sampled range
N_EXPLICIT = 8  # explicit values per range
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ferrite-tensor", "tests", "golden", "dequant.json")


def expect(raw: bytes, qtype) -> dict:
    data = np.frombuffer(raw, dtype=np.uint8)
    vals = gguf.quants.dequantize(data, qtype).astype(np.float32, copy=False).reshape(-1)
    le = vals.astype("<f4").tobytes()
    return {
        "numel": int(vals.size),
        "sha256": hashlib.sha256(le).hexdigest(),
        "first_bits": [int(v) for v in vals[:N_EXPLICIT].view(np.uint32)],
    }


def real_cases() -> list:
    cases = []
    for name in FILES:
        path = os.path.join(MODELS, name)
        reader = gguf.GGUFReader(path)
        taken: dict = {}
        with open(path, "rb") as f:
            blob = f.read()
        for t in reader.tensors:
            qt = t.tensor_type
            if qt not in TYPES or taken.get(qt, 0) >= PER_TYPE_PER_FILE:
                continue
            taken[qt] = taken.get(qt, 0) + 1
            bsize, tsize = gguf.GGML_QUANT_SIZES[qt]
            nblocks = int(t.n_bytes) // tsize
            base = int(t.data_offset)  # absolute offset of the tensor data in the file
            assert bytes(t.data.reshape(-1).view(np.uint8)[:64]) == blob[base:base + 64], "offset is not absolute"
            for start in (0, nblocks // 2, nblocks - RANGE_BLOCKS):
                off = base + start * tsize
                raw = blob[off:off + RANGE_BLOCKS * tsize]
                case = {
                    "model": name,
                    "tensor": t.name,
                    "dtype": qt.name,
                    "offset": off,
                    "blocks": RANGE_BLOCKS,
                    "first_block": start,
                }
                case.update(expect(raw, qt))
                cases.append(case)
    return cases


def synthetic_cases() -> list:
    rng = np.random.default_rng(20240601)
    cases = []
    for qt, scale_offsets in ((T.Q4_0, (0,)), (T.Q5_K, (0, 2))):
        bsize, tsize = gguf.GGML_QUANT_SIZES[qt]
        nblocks = 7  # odd on purpose
        raw = bytearray(rng.integers(0, 256, size=nblocks * tsize, dtype=np.uint8).tobytes())
        for b in range(nblocks):
            for so in scale_offsets:
                sign = -1.0 if rng.random() < 0.3 else 1.0
                d = np.float16(sign * rng.uniform(1e-3, 5e-2))
                raw[b * tsize + so:b * tsize + so + 2] = d.tobytes()
        case = {"model": None, "tensor": f"synthetic_{qt.name}", "dtype": qt.name, "blocks": nblocks, "hex": raw.hex()}
        case.update(expect(bytes(raw), qt))
        cases.append(case)
    return cases


def main() -> int:
    cases = real_cases() + synthetic_cases()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/golden_dequant.py", "gguf_version": getattr(gguf, "__version__", "0.19"), "cases": cases}, f, indent=1)
        f.write("\n")
    kinds = sorted({c["dtype"] for c in cases})
    print(f"wrote {len(cases)} cases ({', '.join(kinds)}) to {os.path.normpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
