#!/usr/bin/env bash
# Prefill/decode speed of ferrite next to llama.cpp's llama-bench, same machine, same run.
# Usage: scripts/bench_vs_llamacpp.sh [THREADS]   (builds llama.cpp once via shared/tools)
#
# Same conditions on both sides: pp512 = a 512-token prompt; tg128 = 128 decode steps from an
# empty context (llama-bench's tg128; ferrite: a 1-token prompt); tg128@d512 = 128 decode steps
# after 512 tokens of context (llama-bench -d 512; ferrite: decode after the pp512 prompt).
set -euo pipefail
T=${1:-2}
cd "$(dirname "$0")/.."
M=${FERRITE_MODELS:-$HOME/.cache/ferrite/models}
BIN=$(../shared/tools/build-llamacpp.sh)
cargo build --release -q -p ferrite-server
printf '%-42s %9s %9s %9s %9s %9s %9s\n' model ferr_pp llama_pp ferr_tg llama_tg ferr_d512 llama_d512
for f in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf gemma-3-270m-q4_k_m.gguf; do
  long=$(target/release/ferrite bench --model "$M/$f" --threads "$T" --prompt-tokens 512 --gen-tokens 128 2>/dev/null)
  short=$(target/release/ferrite bench --model "$M/$f" --threads "$T" --prompt-tokens 1 --gen-tokens 128 2>/dev/null)
  peer=$("$BIN/llama-bench" -m "$M/$f" -t "$T" -p 512 -n 128 -o json 2>/dev/null)
  deep=$("$BIN/llama-bench" -m "$M/$f" -t "$T" -p 0 -n 128 -d 512 -o json 2>/dev/null)
  python3 - "$f" "$long" "$short" "$peer" "$deep" <<'PY'
import json, sys
name, long, short, peer, deep = sys.argv[1], *map(json.loads, sys.argv[2:])
pp = next(r["avg_ts"] for r in peer if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in peer if r["n_gen"] > 0)
tgd = next(r["avg_ts"] for r in deep if r["n_gen"] > 0)
print(f"{name:42s} {long['prefill_tok_s']:9.1f} {pp:9.1f} {short['decode_tok_s']:9.1f} {tg:9.1f} {long['decode_tok_s']:9.1f} {tgd:9.1f}")
PY
done
