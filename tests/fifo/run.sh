#!/bin/sh
# tests/fifo/run.sh - a FIFO where a file is expected must be refused at
# once, never block: each entry point that opens a user's file is given a
# FIFO that nobody writes (mkfifo), under a timeout.  Before the fix, open()
# blocked forever in all three (issue 10, defect 9).
#   - fusec FIFO              (the main source file)
#   - import "FIFO";          (an imported source file)
#   - fusec check --golden FIFO (fr_st_open, which every weight file goes
#     through: the harness and generated code's binding too)
# Each must exit 1 within the timeout with a message saying it is a FIFO.
#
# Environment: FUSEC (build/fusec).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-fifo.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
. tests/lib.sh

mkfifo "$tmp/fifo" || { echo "FAIL mkfifo"; exit 1; }
printf 'import "%s";\n' "$tmp/fifo" >"$tmp/imports_fifo.fdl"
cat dsl-examples/llama_layer.fdl >>"$tmp/imports_fifo.fdl"

# expect NAME WANT CMD...: exit 1 within 20 s, WANT on stderr.
expect() {
    name=$1 want=$2
    shift 2
    timeout -k 5 20 "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        bad "$name: still blocked after 20 s"
    elif [ "$rc" -ne 1 ]; then
        bad "$name: exit status $rc, expected 1"
        head -20 "$tmp/err" | sed 's/^/       /'
    elif ! grep -q -F -e "$want" "$tmp/err"; then
        bad "$name: the message lacks '$want'"
        head -20 "$tmp/err" | sed 's/^/       /'
    else
        ok "$name: $(grep -F -e "$want" "$tmp/err" | head -1)"
    fi
}

expect "fusec FIFO" "a FIFO, not a regular file" "$FUSEC" "$tmp/fifo" -o "$tmp/x.c"
expect "import \"FIFO\"" "a FIFO, not a regular file" "$FUSEC" "$tmp/imports_fifo.fdl" -o "$tmp/x.c"
expect "fusec check --golden FIFO" "not a regular file (a FIFO)" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/fifo"
if [ -e "$tmp/x.c" ] || [ -e "$tmp/x.h" ]; then
    bad "a failed compile left x.c or x.h behind"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
