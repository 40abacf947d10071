#!/usr/bin/env bash
# Trains the shipped conditional models with flowscope-cli (classifier-free guidance needs a
# network that knows the classes and a null class): a conditional 1-rectified flow and a
# conditional DDPM (epsilon on vp) on Fashion-MNIST's ten labels, and a conditional rectified flow
# on gmm:8gaussians (one class per component) with its reflow, guidance w = 2 baked in. Each step
# resumes from its checkpoint if the script is interrupted and run again.
# Usage: bench/conditional_models.sh OUTDIR   (about 40 minutes on 2 CPU cores)
set -euo pipefail
out=${1:?usage: bench/conditional_models.sh OUTDIR}
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
mkdir -p "$out"
common=(--batch 64 --lr 2e-3 --ema 0.999 --checkpoint-every 500)
points=(--batch 256 --lr 3e-3 --ema 0.99 --checkpoint-every 100000)
source "$(dirname "$0")/run_logged.sh"
run 8gaussians "$cli" train --dataset gmm:8gaussians --objective rectified --conditional --iters 3000 --width 128 \
    --out "$out/8gaussians-conditional" --name "8 gaussians by direction, conditional rectified flow" "${points[@]}"
run 8gaussians-reflow "$cli" reflow --model "$out/8gaussians-conditional" --pairs 10000 --steps 32 --cfg 2 --iters 2000 \
    --out "$out/8gaussians-conditional-reflow" --name "8 gaussians by direction, 2-rectified flow (w = 2 baked in)" \
    "${points[@]}"
run rectified "$cli" train --dataset fashion-mnist --objective rectified --conditional --iters 5000 \
    --out "$out/fashion-conditional" --name "Fashion-MNIST by class, conditional 1-rectified flow" --width 16 "${common[@]}"
run ddpm "$cli" train --dataset fashion-mnist --objective diffusion --conditional --iters 5000 \
    --out "$out/fashion-conditional-ddpm" --name "Fashion-MNIST by class, conditional DDPM (epsilon, vp)" --width 16 \
    "${common[@]}"
