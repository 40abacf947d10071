#!/usr/bin/env bash
# Installs what FlowScope needs, builds the Release preset and runs every CTest test.
# Ends with CTest's summary; the exit status is CTest's.
set -euo pipefail
source "$(dirname "$0")/common.sh"

flowscope_install_dependencies
flowscope_build release -DFLOWSCOPE_WERROR="$([ -n "${FLOWSCOPE_WERROR:-}" ] && echo ON || echo OFF)"

export QT_QPA_PLATFORM=offscreen
cd "$FLOWSCOPE_ROOT"
flowscope_log "Running the tests"
ctest --preset release --output-on-failure -j2 "$@"
