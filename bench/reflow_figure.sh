#!/usr/bin/env bash
# The README's reflow figure: the same 16 noise samples through the shipped Fashion-MNIST models,
# side by side: the 1-rectified flow with 1 and 8 Euler steps, the 2-rectified flow (reflow) and
# the one-step distillation with 1 step. Needs ImageMagick.
# Usage: bench/reflow_figure.sh [OUT.png]   (default resources/screenshots/reflow-fashion.png)
set -euo pipefail
out=${1:-resources/screenshots/reflow-fashion.png}
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
panels=()
add() {  # model, steps, label
    "$cli" sample --model "shipped:$1" --steps "$2" --batch 16 --seed 3 --out "$work/$1-$2.png" >/dev/null
    convert "$work/$1-$2.png" -resize 240x240 -background white -gravity north -splice 0x28 \
        -font DejaVu-Sans -pointsize 15 -annotate +0+5 "$3" "$work/panel-${#panels[@]}.png"
    panels+=("$work/panel-${#panels[@]}.png")
}
add fashion-rectified 1 "1-rectified, 1 step"
add fashion-rectified 8 "1-rectified, 8 steps"
add fashion-reflow 1 "2-rectified, 1 step"
[ -d resources/models/fashion-distilled ] && add fashion-distilled 1 "distilled, 1 step"
convert "${panels[@]}" -bordercolor white -border 6 +append "$out"
echo "wrote $out"
