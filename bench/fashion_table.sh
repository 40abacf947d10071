#!/usr/bin/env bash
# The rectified-flow table on Fashion-MNIST: each model of bench/fashion_models.sh sampled with
# 1, 2, 4 and 8 Euler steps (10,000 samples each) and with dopri5 at tolerance 1e-3 (2,000
# samples), measured by `flowscope-cli evaluate`: the Frechet distance to the 10,000 test images in
# the features of the shipped classifier (lower is better), straightness S and path length ratio.
# Usage: bench/fashion_table.sh MODELDIR [MODEL...]   (MODELDIR: the OUTDIR of
# bench/fashion_models.sh; MODELs among ddpm rectified reflow distilled, default all four)
set -euo pipefail
models=${1:?usage: bench/fashion_table.sh MODELDIR [MODEL...]}
shift
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(ddpm rectified reflow distilled)
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
field() { "$python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
printf "| model | path | 1 step | 2 steps | 4 steps | 8 steps | dopri5 (NFE) | S (8 steps) | path length ratio (8 steps) |\n"
printf "|---|---|---|---|---|---|---|---|---|\n"
for model in "${names[@]}"; do
    bundle="bundle:$models/fashion-$model"
    steps=1,2,4,8
    [ "$model" = distilled ] && steps=1
    "$cli" evaluate --model "$bundle" --steps "$steps" --samples 10000 --json >"$work/$model.json"
    path=$(field "$work/$model.json" "d['path']")
    row="| $model | $path"
    for i in 0 1 2 3; do
        if [ "$model" = distilled ] && [ "$i" -gt 0 ]; then row+=" | -"; continue; fi
        row+=" | $(field "$work/$model.json" "f\"{d['rows'][$i]['frechet']:.1f}\"")"
    done
    if [ "$model" = distilled ]; then
        row+=" | - | - | -"
    else
        "$cli" evaluate --model "$bundle" --steps 1 --adaptive --samples 2000 --json >"$work/$model-ode.json"
        row+=" | $(field "$work/$model-ode.json" "f\"{d['rows'][1]['frechet']:.1f} ({d['rows'][1]['nfe']:.0f})\"")"
        row+=" | $(field "$work/$model.json" "f\"{d['rows'][3]['straightness']:.4f}\"")"
        row+=" | $(field "$work/$model.json" "f\"{d['rows'][3]['path_length_ratio']:.4f}\"")"
    fi
    echo "$row |"
done
if [ -f "$work/${names[0]}-ode.json" ]; then
    echo
    echo "floor (real training images vs the test images): $(field "$work/${names[0]}.json" "f\"{d['frechet_floor']:.2f}\"")" \
         "at 10,000, $(field "$work/${names[0]}-ode.json" "f\"{d['frechet_floor']:.2f}\"") at 2,000"
fi
