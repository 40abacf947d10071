# Shared by run.sh and test.sh: installs what is missing, then configures and builds a preset.
# shellcheck shell=bash

FLOWSCOPE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

flowscope_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Runs a command as root: directly when we are root, otherwise through sudo.
flowscope_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "FlowScope needs root to install packages: run as root or install sudo" >&2
        return 1
    fi
}

# Installs the Debian packages listed in packaging/debian-packages.txt that are not installed yet.
flowscope_install_dependencies() {
    local wanted missing=()
    wanted=$(grep -v '^\s*#' "$FLOWSCOPE_ROOT/packaging/debian-packages.txt" | awk 'NF {print $1}')
    for package in $wanted; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        flowscope_log "All ${#wanted} Debian packages FlowScope needs are installed"
        return 0
    fi
    flowscope_log "Installing ${missing[*]}"
    flowscope_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    flowscope_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Configures (once) and builds a CMake preset: release, debug or asan.
flowscope_build() {
    local preset="$1"
    shift
    export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
    export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
    export CCACHE_BASEDIR="$FLOWSCOPE_ROOT"
    cd "$FLOWSCOPE_ROOT"
    flowscope_log "Configuring the $preset build"
    cmake --preset "$preset" "$@" >/dev/null
    flowscope_log "Building ($preset, 2 jobs; the first build takes several minutes)"
    cmake --build --preset "$preset"
}
