#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time, starting from its seed corpus. The seeds are never
# modified: new inputs go to a temporary folder; crashing inputs are kept in ARTIFACTS.
# Usage: run-fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACTS
set -euo pipefail
fuzzer=$1
seeds=$2
seconds=${3:-30}
artifacts=${4:-.}
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$seeds"
