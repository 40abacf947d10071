#!/usr/bin/env bash
# Inversion's round trip as a measure of straightness (flowscope-cli sweep --roundtrip): data
# solved backwards to its noise and forwards again, per path, solver and step count; the CSV's
# rmse is the round trip's error per element. First the exact mixture gmm:8gaussians (256 of its
# samples, made with dopri5), then the shipped Fashion-MNIST networks on 16 test-like images
# (their own 64-step samples): the 1-rectified flow, its reflow (straighter) and the DDPM on vp.
# Usage: bench/roundtrip.sh [OUT_DIR]   (CSV files and a Markdown table; about 10 minutes on 2 cores)
set -euo pipefail
cli=${FLOWSCOPE_CLI:-build/release/app/flowscope-cli}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
table() {  # csv: prints | path | solver | rmse at each step count |
    python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = sorted({int(r["steps"]) for r in rows})
cells = {}
for r in rows:
    cells.setdefault((r["path"], r["solver"]), {})[int(r["steps"])] = float(r["rmse"])
print("| path | solver | " + " | ".join("%d steps" % s for s in steps) + " |")
print("|---|---|" + "---|" * len(steps))
for (path, solver), values in cells.items():
    print("| %s | %s | %s |" % (path, solver, " | ".join("%.2e" % values[s] for s in steps)))
PY
}
"$cli" sample --model gmm:8gaussians --solver dopri5 --rtol 1e-8 --atol 1e-8 --dtype float64 --batch 256 --seed 1 \
    --save-final "$out/points.npy" >/dev/null
"$cli" sweep --model gmm:8gaussians --roundtrip --init "$out/points.npy" --paths linear,vp,cosine \
    --solvers euler,heun,dpm++2m --steps 4,8,16,32 --csv "$out/mixture.csv" >/dev/null
echo "gmm:8gaussians, 256 points:"
table "$out/mixture.csv"
for model in fashion-rectified fashion-reflow fashion-ddpm; do
    path=linear
    [ "$model" = fashion-ddpm ] && path=vp
    "$cli" sample --model "shipped:$model" --path "$path" --solver heun --steps 64 --batch 16 --seed 3 \
        --save-final "$out/$model.npy" >/dev/null
    "$cli" sweep --model "shipped:$model" --roundtrip --init "$out/$model.npy" --paths "$path" \
        --solvers euler,heun --steps 4,8,16,32 --csv "$out/$model.csv" >/dev/null
    echo
    echo "shipped:$model, 16 of its own samples:"
    table "$out/$model.csv"
done
