#!/usr/bin/env python3
"""A tiny random nomic-bert encoder and its reference embeddings from an independent numpy pass.

Writes a sentence-transformers folder `OUT_DIR` (config.json with nomic-embed-text-v1.5's
keys at toy sizes, model.safetensors with seeded random f32 weights under nomic-bert's
Hugging Face names, modules.json and 1_Pooling/config.json: mean pooling then Normalize), and
prints the golden JSON (token-id sequences and their embeddings) on stdout.

The forward pass follows nomic-ai's modeling_hf_nomic_bert.py (NomicBertModel, post-norm):
word + token-type-0 embeddings, `emb_ln`, then per layer `qkv = x @ Wqkv.T` split as
(three, heads, head_dim), rotary positions (non-interleaved halves, base `rotary_emb_base`) on
the first `rotary_emb_fraction` of each head of q and k, bidirectional softmax attention
scaled by 1/sqrt(head_dim), `out_proj`, `x = norm1(x + attn)`, the gated MLP
`fc2(fc11(x) * silu(fc12(x)))`, `x = norm2(x + mlp)`; no biases (`qkv_proj_bias`,
`mlp_fc1_bias`, `mlp_fc2_bias` false). All in float64. Only numpy and safetensors: nothing
shared with ferrite.

Run with Python 3.11.7, numpy 2.4.6, safetensors 0.8.0 (versions stored in the output):

    python3 scripts/golden_nomic_bert.py crates/ferrite-models/tests/golden/nomic_tiny \
        > crates/ferrite-models/tests/golden/embeddings_nomic_tiny.json
"""

import json
import math
import os
import sys

import numpy as np
import safetensors
from safetensors.numpy import load_file, save_file

CONFIG = {
    "architectures": ["NomicBertModel"],
    "model_type": "nomic_bert",
    "activation_function": "swiglu",
    "n_embd": 32,
    "n_head": 4,
    "n_layer": 2,
    "n_inner": 48,
    "n_positions": 128,
    "vocab_size": 96,
    "type_vocab_size": 2,
    "layer_norm_epsilon": 1e-12,
    # Half of each 8-wide head rotates, so the pass-through part is exercised too.
    "rotary_emb_fraction": 0.5,
    "rotary_emb_base": 1000,
    "rotary_emb_interleaved": False,
    "rotary_emb_scale_base": None,
    "prenorm": False,
    "qkv_proj_bias": False,
    "mlp_fc1_bias": False,
    "mlp_fc2_bias": False,
    "use_rms_norm": False,
    "causal": False,
    "parallel_block": False,
}

# Token-id sequences: one token, short, a packed-batch mix, and one longer than a GEMM panel.
LENGTHS = [1, 2, 5, 9, 16, 17, 40, 100]


def make_weights(rng):
    c = CONFIG
    d, f, v = c["n_embd"], c["n_inner"], c["vocab_size"]
    r = lambda *shape: rng.normal(0.0, 0.3, size=shape).astype(np.float32)  # noqa: E731
    W = {
        "embeddings.word_embeddings.weight": r(v, d),
        "embeddings.token_type_embeddings.weight": r(c["type_vocab_size"], d),
        "emb_ln.weight": (1.0 + 0.1 * rng.normal(size=d)).astype(np.float32),
        "emb_ln.bias": (0.1 * rng.normal(size=d)).astype(np.float32),
    }
    for i in range(c["n_layer"]):
        p = f"encoder.layers.{i}."
        W[p + "attn.Wqkv.weight"] = r(3 * d, d)
        W[p + "attn.out_proj.weight"] = r(d, d)
        W[p + "mlp.fc11.weight"] = r(f, d)
        W[p + "mlp.fc12.weight"] = r(f, d)
        W[p + "mlp.fc2.weight"] = r(d, f)
        for n in ("norm1", "norm2"):
            W[p + n + ".weight"] = (1.0 + 0.1 * rng.normal(size=d)).astype(np.float32)
            W[p + n + ".bias"] = (0.1 * rng.normal(size=d)).astype(np.float32)
    return W


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def rotary(x, base, rot):
    """x [n, heads, hd]: rotate the halves of the first `rot` dims of each head by position."""
    n = x.shape[0]
    inv_freq = 1.0 / (base ** (np.arange(0, rot, 2, dtype=np.float64) / rot))
    ang = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]  # [n, rot/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., : rot // 2], x[..., rot // 2 : rot]
    out = x.copy()
    out[..., : rot // 2] = x1 * cos - x2 * sin
    out[..., rot // 2 : rot] = x2 * cos + x1 * sin
    return out


def forward(ids, W, c):
    g = lambda name: W[name].astype(np.float64)  # noqa: E731
    n = len(ids)
    d, heads = c["n_embd"], c["n_head"]
    hd = d // heads
    rot = int(hd * c["rotary_emb_fraction"])
    eps = c["layer_norm_epsilon"]
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.token_type_embeddings.weight")[np.zeros(n, dtype=np.int64)]
    x = layer_norm(x, g("emb_ln.weight"), g("emb_ln.bias"), eps)
    for i in range(c["n_layer"]):
        p = f"encoder.layers.{i}."
        qkv = (x @ g(p + "attn.Wqkv.weight").T).reshape(n, 3, heads, hd)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = rotary(q, c["rotary_emb_base"], rot)
        k = rotary(k, c["rotary_emb_base"], rot)
        q, k, v = (t.transpose(1, 0, 2) for t in (q, k, v))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, d)
        a = a @ g(p + "attn.out_proj.weight").T
        x = layer_norm(x + a, g(p + "norm1.weight"), g(p + "norm1.bias"), eps)
        up = x @ g(p + "mlp.fc11.weight").T
        gate = x @ g(p + "mlp.fc12.weight").T
        h = up * (gate / (1.0 + np.exp(-gate)))
        m = h @ g(p + "mlp.fc2.weight").T
        x = layer_norm(x + m, g(p + "norm2.weight"), g(p + "norm2.bias"), eps)
    return x


def main():
    out_dir = sys.argv[1]
    os.makedirs(os.path.join(out_dir, "1_Pooling"), exist_ok=True)
    rng = np.random.default_rng(20261130)
    save_file(make_weights(rng), os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    with open(os.path.join(out_dir, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
    with open(os.path.join(out_dir, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": CONFIG["n_embd"], "pooling_mode_mean_tokens": True}, f, indent=2)
    # The reference reads the weights back from the file, as ferrite does.
    W = load_file(os.path.join(out_dir, "model.safetensors"))
    cases = []
    for n in LENGTHS:
        ids = [int(t) for t in rng.integers(0, CONFIG["vocab_size"], size=n)]
        e = forward(np.array(ids), W, CONFIG).mean(0)
        e = e / np.linalg.norm(e)
        cases.append({"ids": ids, "embedding": [float(f"{v:.9g}") for v in e]})
    out = {
        "model": "nomic_tiny (random nomic_bert)",
        "reference": "scripts/golden_nomic_bert.py: float64 numpy forward pass, mean pooling, L2 normalised",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "safetensors": safetensors.__version__},
        "cases": cases,
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
