#!/usr/bin/env bash
# Prefill/decode speed of ferrite next to llama.cpp's llama-bench, same machine, same run.
# Usage: scripts/bench_vs_llamacpp.sh [THREADS]   (builds llama.cpp once via shared/tools)
set -euo pipefail
T=${1:-2}
cd "$(dirname "$0")/.."
M=${FERRITE_MODELS:-$HOME/.cache/ferrite/models}
BIN=$(../shared/tools/build-llamacpp.sh)
cargo build --release -q -p ferrite-server
printf '%-45s %10s %10s %10s %10s\n' model ferrite_pp llama_pp ferrite_tg llama_tg
for f in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf gemma-3-270m-q4_k_m.gguf; do
  ours=$(target/release/ferrite bench --model "$M/$f" --threads "$T" --prompt-tokens 512 --gen-tokens 128 2>/dev/null)
  peer=$("$BIN/llama-bench" -m "$M/$f" -t "$T" -p 512 -n 128 -o json 2>/dev/null)
  python3 - "$f" "$ours" "$peer" <<'PY'
import json, sys
name, ours, peer = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp = next(r["avg_ts"] for r in peer if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in peer if r["n_gen"] > 0)
print(f"{name:45s} {ours['prefill_tok_s']:10.1f} {pp:10.1f} {ours['decode_tok_s']:10.1f} {tg:10.1f}")
PY
done
