#!/bin/sh
# tests/unit/run.sh - runs cmocka unit-test programs and judges their skips.
#
#   sh tests/unit/run.sh [PROGRAM...]     (default: every $FUSEC_LIB_DIR/tests/test_*)
#
# Every program runs, whatever the ones before it did.  A program passes when
# it exits 0, cmocka reports no failed test, and every test it skipped was
# skipped for a reason that holds on this machine: the test printed
# "SKIPPED: this CPU has no FLAG..." (cpuinfo flag names) and /proc/cpuinfo
# indeed lacks one of those flags.  Any other skip (a missing tool, a file
# that "does not exist yet") is a failure: after scripts/install-deps.sh
# every tool a test needs is there.
#
# Prints one line per program and, for several, "N passed, M failed"
# (programs); exits non-zero when any failed.  tests/run.sh calls it once per program.
# Environment: FUSEC_LIB_DIR (default build).
set -u
: "${FUSEC_LIB_DIR:=build}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-unit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
if [ $# -eq 0 ]; then # the programs, not what gcc --coverage writes beside them (*.gcno, *.gcda)
    for f in "$FUSEC_LIB_DIR"/tests/test_*; do
        case ${f##*/} in *.*) ;; *) set -- "$@" "$f" ;; esac
    done
fi
cpuflags=" $(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1) "
pass=0
fail=0
for prog in "$@"; do
    name=$(basename "$prog")
    if [ ! -x "$prog" ]; then
        fail=$((fail + 1))
        echo "FAIL $name: $prog is not built (make unit-test builds it)"
        continue
    fi
    t0=$(date +%s)
    "$prog" >"$tmp/out" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    # cmocka's summary: "[  PASSED  ] N test(s)."; every failed and skipped test by name
    npass=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$tmp/out" | tail -n 1)
    failed=$(sed -n 's/^\[  FAILED  \] \(test[A-Za-z0-9_]*\)$/\1/p' "$tmp/out" | sort -u)
    skipped=$(sed -n 's/^\[  SKIPPED \] \(test[A-Za-z0-9_]*\)$/\1/p' "$tmp/out" | sort -u)
    why=""
    # each skipped test's own output: from its "[ RUN      ]" line to its "[  SKIPPED ]" line
    nskip=0
    for t in $skipped; do
        nskip=$((nskip + 1))
        reason=$(sed -n "/^\[ RUN      \] $t\$/,/^\[  SKIPPED \] $t\$/p" "$tmp/out" |
            sed -n 's/.*SKIPPED: this CPU has no \([a-z0-9_ ]*[a-z0-9_]\).*/\1/p' | head -n 1)
        lacks=""
        for f in $reason; do
            case $cpuflags in *" $f "*) ;; *) lacks="$lacks $f" ;; esac
        done
        if [ -z "$reason" ]; then
            why="$why; $t skipped without a CPU reason"
        elif [ -z "$lacks" ]; then
            why="$why; $t skipped for lack of '$reason', which this CPU has"
        fi
    done
    [ -n "$failed" ] && why="$why; failed: $(echo $failed)"
    [ "$rc" -ne 0 ] && [ -z "$failed" ] && why="$why; exit status $rc"
    [ -z "$npass" ] && [ -z "$failed" ] && why="$why; no cmocka summary (crashed?)"
    if [ -z "$why" ]; then
        pass=$((pass + 1))
        skips=""
        [ "$nskip" -gt 0 ] && skips=", $nskip skipped (this CPU lacks their features)"
        echo "ok   $name: ${npass:-0} tests passed$skips (${secs}s)"
    else
        fail=$((fail + 1))
        echo "FAIL $name:${why#;} (${secs}s)"
        grep -v '^\[       OK \]\|^\[ RUN      \]' "$tmp/out" | tail -n 60 | sed 's/^/       /'
    fi
done
# (one program: its line says it all; tests/run.sh prints the totals)
[ $# -gt 1 ] && echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
