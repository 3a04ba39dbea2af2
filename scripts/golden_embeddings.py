#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from an independent numpy forward pass.

Reads the sentence-transformers folder directly: token ids from `tokenizer.json` through the
`tokenizers` package (padding and truncation switched off: the file turns both on at 128), the
BERT forward pass in float64 numpy over the f32 safetensors weights (absolute positions, token
type 0, exact erf GELU, post-layer-norm blocks, bidirectional attention), then the pooling of
`1_Pooling/config.json` and the L2 normalisation `modules.json` asks for.

Run with Python 3.11.7, numpy 2.4.6, safetensors 0.8.0, tokenizers 0.23.3 (the versions used are stored in the
output). No torch, no transformers, no sentence-transformers: nothing shared with ferrite.

    python3 scripts/golden_embeddings.py [MODEL_DIR] > crates/ferrite-models/tests/golden/embeddings_minilm.json
"""

import json
import math
import os
import sys

import numpy as np
import safetensors
import tokenizers
from safetensors.numpy import load_file

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "",
    "a",
    "?",
    "   ",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "¿Dónde está la biblioteca más cercana?",
    "Москва — столица России.",
    "我喜欢在周末读书和喝茶。",
    "東京は日本の首都です。",
    "مرحبا بالعالم",
    "नमस्ते, आप कैसे हैं?",
    "Ceci n'est pas une pipe 🙂 — émojis & ponctuation!!!",
    "fn main() { println!(\"hello, world\"); }",
    "1234567890 3.14159 2026-11-30",
    # Long: several hundred tokens, under the 512 positions.
    " ".join(
        [
            "Rust is a general-purpose programming language emphasizing performance, type safety,"
            " and concurrency. It enforces memory safety without a garbage collector by tracking"
            " the lifetime of every reference through its borrow checker."
        ]
        * 8
    ),
]


def gelu(x):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def forward(ids, W, cfg):
    g = lambda n: W[n].astype(np.float64)  # noqa: E731
    n = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.position_embeddings.weight")[np.arange(n)]
    x = x + g("embeddings.token_type_embeddings.weight")[np.zeros(n, dtype=np.int64)]
    eps = cfg["layer_norm_eps"]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    heads = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda h, name: h @ g(p + name + ".weight").T + g(p + name + ".bias")  # noqa: E731
        q = lin(x, "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        a = lin(a, "attention.output.dense")
        x = layer_norm(x + a, g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias"), eps)
        f = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
        x = layer_norm(x + f, g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
    return x


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/ferrite/models/all-MiniLM-L6-v2")
    cfg = json.load(open(os.path.join(root, "config.json")))
    pooling = json.load(open(os.path.join(root, "1_Pooling", "config.json")))
    modules = json.load(open(os.path.join(root, "modules.json")))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    W = load_file(os.path.join(root, "model.safetensors"))
    W = {k.removeprefix("bert."): v for k, v in W.items()}
    tok = tokenizers.Tokenizer.from_file(os.path.join(root, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    cases = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        assert len(ids) <= cfg["max_position_embeddings"], len(ids)
        h = forward(np.array(ids), W, cfg)
        e = h.mean(0)
        if normalize:
            e = e / np.linalg.norm(e)
        cases.append({"text": text, "ids": ids, "embedding": [float(f"{v:.7g}") for v in e]})
    out = {
        "model": os.path.basename(root.rstrip("/")),
        "reference": "scripts/golden_embeddings.py: float64 numpy forward pass, mean pooling, L2 normalised",
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "cases": cases,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
