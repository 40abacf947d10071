#!/usr/bin/env bash
# The rectified-flow table on 2-D toys: 1-rectified flow, 2-rectified flow (reflow), its one-step
# distillation and a DDPM (epsilon, vp) network, all trained here by flowscope-cli, sampled at 1, 2,
# 4 and 8 Euler steps and with dopri5. Quality: the maximum mean discrepancy (RBF kernel, width
# 0.1) between 2,000 samples and 2,000 points of the data (lower is better; about 0.001 is the
# noise floor of two draws of the data itself); straightness S and path length ratio at 64 steps.
# Usage: bench/reflow_toy.sh [DATASET] (default points:moons); needs python3-numpy for the MMD.
set -euo pipefail
dataset=${1:-points:moons}
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--batch 256 --lr 3e-3 --ema 0.99)
"$cli" train --dataset "$dataset" --objective rectified --iters 3000 --out "$work/rf1" --width 128 "${common[@]}" --json >/dev/null
"$cli" train --dataset "$dataset" --objective diffusion --iters 3000 --out "$work/ddpm" --width 128 "${common[@]}" --json >/dev/null
"$cli" reflow --model "$work/rf1" --pairs 10000 --steps 32 --iters 2000 --out "$work/rf2" "${common[@]}" --json >/dev/null
"$cli" distill --model "$work/rf2" --pairs 10000 --steps 32 --iters 2000 --out "$work/distilled" "${common[@]}" --json >/dev/null
# The data itself, through the exact (empirical) model's ODE at many steps (the same points).
"$cli" sample --model "$dataset" --steps 256 --batch 2000 --seed 999 --save-final "$work/data.npy" >/dev/null
printf "| model | path | 1 step | 2 steps | 4 steps | 8 steps | dopri5 (NFE) | S | path length ratio |\n|---|---|---|---|---|---|---|---|---|\n"
for model in ddpm rf1 rf2 distilled; do
    path=linear
    [ "$model" = ddpm ] && path=vp
    row="| $model | $path"
    for steps in 1 2 4 8; do
        "$cli" sample --model "bundle:$work/$model" --path "$path" --steps "$steps" --batch 2000 --seed 7 \
            --save-final "$work/$model-$steps.npy" >/dev/null
        row+=" | $("$python" -c "
import numpy as np, sys
x = np.load('$work/$model-$steps.npy'); y = np.load('$work/data.npy')
k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * 0.1 ** 2)).mean()
print(f'{k(x, x) + k(y, y) - 2 * k(x, y):.4f}')")"
    done
    json=$("$cli" sample --model "bundle:$work/$model" --path "$path" --solver dopri5 --batch 2000 --seed 7 \
        --save-final "$work/$model-ode.npy" --json)
    nfe=$("$python" -c "import json,sys; print(json.loads(sys.argv[1])['nfe'])" "$json")
    mmd=$("$python" -c "
import numpy as np
x = np.load('$work/$model-ode.npy'); y = np.load('$work/data.npy')
k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * 0.1 ** 2)).mean()
print(f'{k(x, x) + k(y, y) - 2 * k(x, y):.4f}')")
    geometry=$("$cli" sample --model "bundle:$work/$model" --path "$path" --steps 64 --batch 2000 --seed 7 --json)
    row+=" | $mmd ($nfe) | $("$python" -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"{d['straightness']:.4f} | {d['path_length_ratio']:.4f}\")" "$geometry") |"
    echo "$row"
done
