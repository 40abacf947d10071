#!/usr/bin/env bash
# Trains the shipped Fashion-MNIST models with flowscope-cli: a 1-rectified flow, its reflow
# (2-rectified flow), the one-step distillation of the reflow, and a DDPM (epsilon on vp). Each
# step resumes from its checkpoint if the script is interrupted and run again.
# Usage: bench/fashion_models.sh OUTDIR   (about an hour on 2 CPU cores; minutes on a GPU)
set -euo pipefail
out=${1:?usage: bench/fashion_models.sh OUTDIR}
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
mkdir -p "$out"
common=(--batch 64 --lr 2e-3 --ema 0.999 --checkpoint-every 500)
source "$(dirname "$0")/run_logged.sh"
run rectified "$cli" train --dataset fashion-mnist --objective rectified --iters 5000 --out "$out/fashion-rectified" \
    --name "Fashion-MNIST, 1-rectified flow" --width 16 "${common[@]}"
run reflow "$cli" reflow --model "$out/fashion-rectified" --pairs 8000 --steps 8 --iters 3000 --out "$out/fashion-reflow" \
    --name "Fashion-MNIST, 2-rectified flow" "${common[@]}"
run distilled "$cli" distill --model "$out/fashion-reflow" --pairs 8000 --steps 8 --iters 3000 --out "$out/fashion-distilled" \
    --name "Fashion-MNIST, one-step distillation" "${common[@]}"
run ddpm "$cli" train --dataset fashion-mnist --objective diffusion --iters 5000 --out "$out/fashion-ddpm" \
    --name "Fashion-MNIST, DDPM (epsilon, vp)" --width 16 "${common[@]}"
