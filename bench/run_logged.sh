# Sourced by the training scripts: run NAME COMMAND... runs the command with its output in
# $out/NAME.out, and logs its start, its command line and its wall time in $out/log.txt.
stamp() { date -u +%FT%TZ; }
run() {  # name, command...
    local name=$1; shift
    local start=$SECONDS
    echo "$(stamp) $name: $*" >>"$out/log.txt"
    "$@" >>"$out/$name.out" 2>&1
    echo "$(stamp) $name: done in $((SECONDS - start)) s" >>"$out/log.txt"
}
