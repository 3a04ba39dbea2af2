#!/usr/bin/env bash
# ferrite and diffusers on the same mid-sized random FLUX pipeline (transformer width 768, 2 double
# + 4 single blocks, FLUX's real-size VAE, tiny text encoders), same machine, same run: seconds per
# denoising step, for the VAE decode and per image, at 256x256 and 512x512, 4 steps, 512 T5
# tokens on both sides (ferrite's default max_sequence_length, diffusers' FluxPipeline default).
#
#   scripts/diffusion/bench_vs_diffusers.sh [DIR] [THREADS]
#
# DIR (default /tmp/flux-mid) is built by make_tiny_flux.py --mid when missing. The diffusers side
# runs in the reference environment of scripts/diffusion/requirements.txt
# (FERRITE_DIFFUSION_VENV, default ~/.cache/ferrite/diffusion-ref).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-/tmp/flux-mid}
THREADS=${2:-2}
VENV=${FERRITE_DIFFUSION_VENV:-$HOME/.cache/ferrite/diffusion-ref}
cargo build --release -q -p ferrite-server
if [ ! -f "$DIR/model_index.json" ]; then
  "$VENV/bin/python" scripts/diffusion/make_tiny_flux.py --mid "$DIR"
fi
for size in 256 512; do
  echo "== ${size}x${size}: ferrite"
  target/release/ferrite bench --model "$DIR" --size "${size}x${size}" --steps 4 --repetitions 2 --threads "$THREADS"
  echo "== ${size}x${size}: diffusers"
  "$VENV/bin/python" scripts/diffusion/bench_diffusers.py "$DIR" --size "$size" --threads "$THREADS" --max-seq 512 --runs 2
done
