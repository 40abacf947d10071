#!/usr/bin/env bash
# Installs what FlowScope needs, then builds and runs every CTest test twice: in the Release
# preset (including the Debian package check), and built with AddressSanitizer and
# UndefinedBehaviorSanitizer (the asan preset), where any report fails the test; runs the worker
# and controller tests under ThreadSanitizer (the tsan preset); runs bench/gpu.sh, the script
# for GPU machines, on the CPU (engine-only build, tst_device, benchmark, Python baseline), so
# that it stays ready; then runs each libFuzzer target of the file parsers for a bounded time
# (the fuzz preset, clang).
# Extra arguments go to both test-suite runs (e.g. -L unit). FLOWSCOPE_QUICK=1 runs only Release.
# The exit status is non-zero if any run failed.
set -euo pipefail
source "$(dirname "$0")/common.sh"

flowscope_install_dependencies
werror="$([ -n "${FLOWSCOPE_WERROR:-}" ] && echo ON || echo OFF)"
export QT_QPA_PLATFORM=offscreen
status=0

flowscope_build release -DFLOWSCOPE_WERROR="$werror"
flowscope_log "Running the tests (release)"
ctest --preset release --output-on-failure -j2 "$@" || status=1

if [ -z "${FLOWSCOPE_QUICK:-}" ]; then
    flowscope_build asan -DFLOWSCOPE_WERROR="$werror"
    flowscope_log "Running the tests under AddressSanitizer and UndefinedBehaviorSanitizer"
    ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        ctest --preset asan --output-on-failure -j2 "$@" || status=1

    flowscope_build tsan -DFLOWSCOPE_WERROR="$werror"
    flowscope_log "Running the worker and controller tests under ThreadSanitizer"
    ctest --preset tsan --output-on-failure || status=1

    flowscope_log "Running bench/gpu.sh on the CPU (build/gpu/results)"
    PYTHON="${PYTHON:-/usr/bin/python3}" "$FLOWSCOPE_ROOT/bench/gpu.sh" "$FLOWSCOPE_ROOT/build/gpu/results" || status=1

    flowscope_build fuzz
    flowscope_log "Fuzzing every file parser with libFuzzer"
    ctest --preset fuzz --output-on-failure -j2 || status=1
fi

if [ "$status" -ne 0 ]; then
    flowscope_log "Some tests failed (see above)"
fi
exit "$status"
