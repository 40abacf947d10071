#!/usr/bin/env bash
# Installs what FlowScope needs (Debian 12 packages), builds it in Release mode and starts it.
# Safe to run again: installed packages and an up-to-date build are reused.
set -euo pipefail
source "$(dirname "$0")/common.sh"

flowscope_install_dependencies
flowscope_build release

bin="$FLOWSCOPE_ROOT/build/release/app"
if [ -x "$bin/flowscope" ]; then
    flowscope_log "Starting FlowScope"
    exec "$bin/flowscope" "$@"
fi

# The desktop application is not built in this version: show the engine on the command line.
out="$FLOWSCOPE_ROOT/build/release/demo"
mkdir -p "$out"
flowscope_log "Sampling 16 Fashion-MNIST images along the straight (linear) and the curved (vp) path"
"$bin/flowscope-cli" sample --model fashion-mnist --path linear --solver euler --steps 8 --batch 16 \
    --out "$out/linear.png" --filmstrip "$out/linear-steps.png"
"$bin/flowscope-cli" sample --model fashion-mnist --path vp --solver euler --steps 8 --batch 16 \
    --out "$out/vp.png" --filmstrip "$out/vp-steps.png"
flowscope_log "Images written to $out (linear.png, vp.png and their step-by-step filmstrips)"
