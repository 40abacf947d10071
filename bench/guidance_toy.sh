#!/usr/bin/env bash
# Guidance on the exact 2-D mixture gmm:8gaussians, class `north` (the component at (0, 2), std
# 0.25): for each path and scale w, 2,000 samples (64 Heun steps) and what guidance does to them:
# the mean position along the class's direction (2 is the component's centre: above it, the
# particles overshoot their class), the spread across it, the share nearest to the north
# component, and the straightness S of the paths (0 = straight).
# Usage: bench/guidance_toy.sh   (prints a Markdown table; about a minute on 2 CPU cores)
set -euo pipefail
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
row() {  # label, scale label, sample options...
    local label=$1 w=$2; shift 2
    json=$("$cli" sample --model gmm:8gaussians --class north --solver heun --steps 64 --batch 2000 --seed 0 \
        --save-final "$work/final.npy" --json "$@")
    python3 - "$work/final.npy" "$label" "$w" "$json" <<'PY'
import json, math, struct, sys
path, label, w, run = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
data = open(path, "rb").read()
header = struct.unpack("<H", data[8:10])[0]
values = struct.unpack("<%df" % ((len(data) - 10 - header) // 4), data[10 + header:])
xs, ys = values[0::2], values[1::2]
n = len(xs)
mean_y = sum(ys) / n
mean_x = sum(xs) / n
spread = math.sqrt(sum((x - mean_x) ** 2 for x in xs) / n)
centres = [(2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)) for k in range(8)]
north = sum(1 for x, y in zip(xs, ys)
            if min(range(8), key=lambda k: (x - centres[k][0]) ** 2 + (y - centres[k][1]) ** 2) == 2)
print("| %s | %s | %.3f | %.3f | %.3f | %.4g |" % (label, w, mean_y, spread, north / n, run["straightness"]))
PY
}
echo "| path | w | mean y (class centre 2) | spread in x (class: 0.25) | share nearest north | straightness S |"
echo "|---|---|---|---|---|---|"
for path in linear vp; do
    for w in 0 1 2 3 5 8; do row "$path" "$w" --path "$path" --cfg "$w"; done
done
echo
echo "The variants at w = 5 on the linear path:"
echo
echo "| method | w | mean y (class centre 2) | spread in x (class: 0.25) | share nearest north | straightness S |"
echo "|---|---|---|---|---|---|"
row "cfg" 5 --cfg 5
row "cfg, interval 0.3-1" 5 --cfg 5 --cfg-interval 0.3,1
row "cfg, interval 0-0.5" 5 --cfg 5 --cfg-interval 0,0.5
row "cfg, rescale 0.7" 5 --cfg 5 --cfg-rescale 0.7
row "apg (eta 0)" 5 --guidance apg --cfg 5
row "apg (eta 0, momentum 0.5, r 1)" 5 --guidance apg --cfg 5 --apg-momentum 0.5 --apg-norm 1
row "cfg-zero" 5 --guidance cfg-zero --cfg 5
row "cfg-zero, 4 zero steps" 5 --guidance cfg-zero --cfg 5 --cfg-zero-steps 4
