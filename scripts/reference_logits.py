#!/usr/bin/env python3
"""Reference last-position logits for the llama-family test models.

An independent numpy forward pass over weights dequantized by the `gguf` package (llama.cpp's
own Python reader), written from the published architectures (llama / qwen2 / gemma3), not from
ferrite's code. Writes crates/ferrite-models/tests/golden/logits_<model>.json.

Usage: pip install gguf numpy; python3 scripts/reference_logits.py [MODELS_DIR]
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

MODELS = os.environ.get("FERRITE_MODELS", os.path.expanduser("~/.cache/ferrite/models"))
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ferrite-models", "tests", "golden")


class Weights:
    def __init__(self, path):
        self.r = GGUFReader(path)
        self.t = {t.name: t for t in self.r.tensors}
        self.cache = {}

    def meta(self, key, default=None):
        f = self.r.fields.get(key)
        return default if f is None else f.contents()

    def __call__(self, name):
        if name not in self.cache:
            t = self.t[name]
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            self.cache[name] = a.reshape([int(x) for x in reversed(t.shape)])
        return self.cache[name]

    def has(self, name):
        return name in self.t


def rms_norm(x, w, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps) * w).astype(np.float32)


def rope(x, pos, base, layout):
    # x: [T, H, D]
    t, h, d = x.shape
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, D/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x = x.astype(np.float64)
    out = x.copy()
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
    else:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        out[..., : d // 2] = a * c - b * s
        out[..., d // 2 :] = a * s + b * c
    return out.astype(np.float32)


def attention(q, k, v, scale, window):
    t, hq, d = q.shape
    hkv = k.shape[1]
    out = np.zeros_like(q)
    for h in range(hq):
        kh = h // (hq // hkv)
        s = (q[:, h, :].astype(np.float64) @ k[:, kh, :].T.astype(np.float64)) * scale
        i = np.arange(t)[:, None]
        j = np.arange(t)[None, :]
        mask = j > i
        if window:
            mask |= j <= i - window
        s[mask] = -np.inf
        s -= s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        out[:, h, :] = (p @ v[:, kh, :].astype(np.float64)).astype(np.float32)
    return out


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(w, ids):
    arch = w.meta("general.architecture")
    g = lambda k, d=None: w.meta(f"{arch}.{k}", d)
    n_layer, n_embd = g("block_count"), g("embedding_length")
    n_head, n_kv = g("attention.head_count"), g("attention.head_count_kv")
    head_dim = g("attention.key_length", n_embd // n_head)
    eps = g("attention.layer_norm_rms_epsilon")
    base = g("rope.freq_base", 10000.0)
    layout = "interleaved" if arch == "llama" else "neox"
    gemma = arch == "gemma3"
    window = g("attention.sliding_window") if gemma else None
    ids = np.array(ids)
    pos = np.arange(len(ids))
    x = w("token_embd.weight")[ids]
    if gemma:
        x = x * np.float32(np.sqrt(n_embd))
    for il in range(n_layer):
        p = f"blk.{il}."
        h = rms_norm(x, w(p + "attn_norm.weight"), eps)
        q, k, v = (h @ w(p + f"attn_{n}.weight").T for n in "qkv")
        if w.has(p + "attn_q.bias"):
            q, k, v = q + w(p + "attn_q.bias"), k + w(p + "attn_k.bias"), v + w(p + "attn_v.bias")
        q = q.reshape(len(ids), n_head, head_dim)
        k = k.reshape(len(ids), n_kv, head_dim)
        v = v.reshape(len(ids), n_kv, head_dim)
        swa = gemma and (il % 6) < 5  # gemma3: five sliding-window layers, then a global one
        if gemma:
            q = rms_norm(q, w(p + "attn_q_norm.weight"), eps)
            k = rms_norm(k, w(p + "attn_k_norm.weight"), eps)
        rbase = 10000.0 if swa else base
        q, k = rope(q, pos, rbase, layout), rope(k, pos, rbase, layout)
        a = attention(q, k, v, 1.0 / np.sqrt(head_dim), window if swa else None)
        a = a.reshape(len(ids), n_head * head_dim) @ w(p + "attn_output.weight").T
        if gemma:
            a = rms_norm(a, w(p + "post_attention_norm.weight"), eps)
        x = x + a
        h = rms_norm(x, w(p + "ffn_norm.weight"), eps)
        gate, up = h @ w(p + "ffn_gate.weight").T, h @ w(p + "ffn_up.weight").T
        f = (gelu_tanh(gate) if gemma else silu(gate)) * up
        f = f @ w(p + "ffn_down.weight").T
        if gemma:
            f = rms_norm(f, w(p + "post_ffw_norm.weight"), eps)
        x = x + f
    x = rms_norm(x[-1:], w("output_norm.weight"), eps)
    out = w("output.weight") if w.has("output.weight") else w("token_embd.weight")
    return (x @ out.T)[0].astype(np.float64)


def words_to_ids(w, text, prefix):
    """Greedy longest-match over whole words (an arbitrary but fixed token sequence)."""
    toks = w.meta("tokenizer.ggml.tokens")
    index = {t: i for i, t in enumerate(toks)}
    ids = []
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else prefix + word
        if piece in index:
            ids.append(index[piece])
        else:  # split into characters
            for j, ch in enumerate(piece):
                ids.append(index[ch])
    return ids


PROMPTS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": ("Ġ", [
        [504, 3575, 282, 4649, 314],  # "The capital of France is" (llama.cpp's tokens)
        "Once upon a time there was a little",
        "def fibonacci ( n ) : return",
    ]),
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": ("Ġ", [
        "The capital of France is",
        "def quicksort ( arr ) :",
        "Write a haiku about the sea",
    ]),
    "gemma-3-270m-q4_k_m.gguf": ("▁", [
        "The capital of France is",
        "Once upon a time there was a little",
        # 600+ tokens: exercises the 512-token sliding window.
        " ".join(["the quick brown fox jumps over the lazy dog and"] * 60) + " then",
    ]),
}


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else MODELS
    os.makedirs(OUT, exist_ok=True)
    for name, (prefix, prompts) in PROMPTS.items():
        w = Weights(os.path.join(models, name))
        cases = []
        for p in prompts:
            ids = p if isinstance(p, list) else words_to_ids(w, p, prefix)
            if w.meta("tokenizer.ggml.add_bos_token"):
                ids = [int(w.meta("tokenizer.ggml.bos_token_id"))] + ids
            logits = forward(w, ids)
            top = np.argsort(-logits)[:10]
            cases.append({
                "ids": [int(i) for i in ids],
                "top_ids": [int(i) for i in top],
                "top_logits": [float(logits[i]) for i in top],
                "first_logits": [float(v) for v in logits[:64]],
                "mean": float(logits.mean()),
                "std": float(logits.std()),
            })
            print(name, len(ids), "tokens, top", top[:5].tolist(), file=sys.stderr)
        stem = name.split(".gguf")[0]
        with open(os.path.join(OUT, f"logits_{stem}.json"), "w") as f:
            json.dump({"model": name, "reference": "numpy forward over gguf-dequantized weights (f32 matmuls, f64 norms/softmax)", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
