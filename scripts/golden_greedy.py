#!/usr/bin/env python3
"""Greedy continuations from llama.cpp's `llama-simple` (the peer), for ferrite's golden tests.

Runs llama-simple (greedy sampler, BOS per the model's metadata, special tokens parsed) for 4
prompts per model and 16 new tokens, and writes
crates/ferrite-server/tests/golden/greedy_<model>.json. CI does not run this; it needs llama.cpp
(shared/tools/build-llamacpp.sh builds it).

Usage: python3 scripts/golden_greedy.py LLAMA_CPP_BIN_DIR [MODELS_DIR]
"""
import json
import os
import subprocess
import sys

N_PREDICT = 16
PROMPTS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": [
        "The capital of France is",
        "Once upon a time",
        "def fibonacci(n):",
        "The three primary colors are",
    ],
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": [
        "The capital of France is",
        "def quicksort(arr):",
        "# Reverse a string in Python\n",
        "Water boils at",
    ],
    "gemma-3-270m-q4_k_m.gguf": [
        "The capital of France is",
        "Once upon a time",
        "The largest planet in the solar system is",
        "1, 2, 3, 4,",
    ],
}


def main():
    bin_dir = sys.argv[1]
    models = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "FERRITE_MODELS", os.path.expanduser("~/.cache/ferrite/models"))
    out_dir = os.path.join(os.path.dirname(__file__), "..", "crates", "ferrite-server", "tests", "golden")
    os.makedirs(out_dir, exist_ok=True)
    for model, prompts in PROMPTS.items():
        cases = []
        for p in prompts:
            r = subprocess.run(
                [os.path.join(bin_dir, "llama-simple"), "-m", os.path.join(models, model), "-n", str(N_PREDICT), p],
                capture_output=True, check=True)
            text = r.stdout.decode("utf-8")
            i = text.find(p)
            if i < 0:
                raise SystemExit(f"prompt not echoed by llama-simple: {text!r}")
            cont = text[i + len(p):]
            cont = cont[:-1] if cont.endswith("\n") else cont  # llama-simple ends with a newline
            cases.append({"prompt": p, "continuation": cont})
            print(model, repr(p), "->", repr(cont), file=sys.stderr)
        stem = model.split(".gguf")[0]
        with open(os.path.join(out_dir, f"greedy_{stem}.json"), "w") as f:
            json.dump({"model": model, "n_predict": N_PREDICT, "peer": "llama.cpp llama-simple (llama-cpp-python 0.3.36 vendor)", "cases": cases}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
