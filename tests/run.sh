#!/bin/sh
# Runs every test: each unit-test program ($FUSEC_LIB_DIR/tests/test_*,
# judged by tests/unit/run.sh), then each end-to-end suite tests/*/run.sh.
# Everything runs whatever failed before it; each item prints its wall time
# and CPU time (user + system of all its processes: unlike the wall time, it
# does not depend on what else the machine runs), and the last line is
# "N passed, M failed" over the unit programs and the suites.  Exits
# non-zero when anything failed.
#
# JOBS items run at once (default: the number of CPUs).  Most items use one
# core for long stretches (one compiler, one harness at a time), so two at
# once on two cores take about 40% less wall time than one after the other.
# Each item's output is kept apart and printed whole when it ends, so
# outputs never interleave; the longest items start first (the SLOW list
# below, from measured times), the others in name order.  JOBS=1 runs them
# one after another in name order, printing as they go.  Items share only
# read-only inputs and `fusec check`'s build cache, whose writers rename
# finished files into place (docs/check.md).
#
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden
# .safetensors files, default tests/golden/hf), FUSEC_LIB_DIR (build),
# FUSEC_CHECK_CACHE (where `fusec check` keeps the harnesses it built:
# default $FUSEC_LIB_DIR/check-cache, so a test run never fills the user's
# cache and `make clean` empties it), SUITES (the names of the suites to
# run, e.g. "cli golden"; default all; an unknown name is an error),
# UNITS (0: leave out the unit programs; default 1), JOBS.
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${FUSEC_LIB_DIR:=build}" "${SUITES:=}" "${UNITS:=1}"
: "${FUSEC_CHECK_CACHE:=$(cd "$FUSEC_LIB_DIR" && pwd)/check-cache}"
: "${JOBS:=$(nproc 2>/dev/null || echo 1)}"
export FUSEC GOLDEN FUSEC_LIB_DIR FUSEC_CHECK_CACHE
case $JOBS in '' | *[!0-9]* | 0) echo "tests/run.sh: error: JOBS must be a positive number, got '$JOBS'"; exit 2 ;; esac
for name in $SUITES; do
    [ -f "tests/$name/run.sh" ] || { echo "tests/run.sh: error: no suite tests/$name/run.sh"; exit 2; }
done
# The items that take longest (about 1-3 minutes each on 2 cores), longest first.
SLOW="targets test_gemm limits diff fusion attn special moe ops golden model api layers concurrent quant bf16 install test_emit tp"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-run.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
t_all=$(date +%s)

# ---- the items: "NAME<TAB>SCRIPT<TAB>ARGUMENT" lines in $tmp/items ----
: >"$tmp/all"
if [ "$UNITS" != 0 ]; then
    for prog in "$FUSEC_LIB_DIR"/tests/test_*; do
        [ -x "$prog" ] || continue
        case $prog in *.gcno | *.gcda) continue ;; esac
        printf 'unit %s\ttests/unit/run.sh\t%s\n' "$(basename "$prog")" "$prog" >>"$tmp/all"
    done
fi
for suite in tests/*/run.sh; do
    [ -f "$suite" ] && [ "$suite" != tests/unit/run.sh ] || continue
    name=${suite#tests/}
    name=${name%/run.sh}
    if [ -n "$SUITES" ]; then
        case " $(echo $SUITES) " in *" $name "*) ;; *) continue ;; esac
    fi
    printf '%s\t%s\t\n' "$suite" "$suite" >>"$tmp/all"
done
if [ "$JOBS" -gt 1 ]; then # the SLOW ones first, in SLOW's order
    : >"$tmp/items"
    for s in $SLOW; do
        awk -F '\t' -v s="$s" '$1 == "tests/" s "/run.sh" || $1 == "unit " s' "$tmp/all" >>"$tmp/items"
    done
    awk -F '\t' 'FILENAME == ARGV[1] { seen[$1] = 1; next } !($1 in seen)' "$tmp/items" "$tmp/all" >"$tmp/rest"
    cat "$tmp/rest" >>"$tmp/items"
else
    cp "$tmp/all" "$tmp/items"
fi
n=$(wc -l <"$tmp/items")

# ---- one lane: takes the next item until none is left ----
# The next item's number is in $tmp/next; mkdir is the lock around taking it
# and around printing a finished item's output.
echo 1 >"$tmp/next"
lock() { while ! mkdir "$tmp/$1.lock" 2>/dev/null; do sleep 0.05; done; }
unlock() { rmdir "$tmp/$1.lock"; }
cpuf() { # the children's CPU time so far, in tenths of a second, into $cpu
    times >"$tmp/times.$lane"
    cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
                         printf "%d", 10 * (u[1] * 60 + u[2] + s[1] * 60 + s[2]) }' "$tmp/times.$lane")
}
lane() {
    while :; do
        lock next
        i=$(cat "$tmp/next")
        echo $((i + 1)) >"$tmp/next"
        unlock next
        [ "$i" -le "$n" ] || return 0
        line=$(sed -n "${i}p" "$tmp/items")
        name=${line%%"	"*}
        rest=${line#*"	"}
        script=${rest%%"	"*}
        arg=${rest#*"	"}
        t0=$(date +%s)
        cpuf
        c0=$cpu
        if [ "$JOBS" -gt 1 ]; then
            sh "$script" ${arg:+"$arg"} >"$tmp/out.$i" 2>&1 </dev/null && st=ok || st=FAILED
        else
            echo "== $name"
            sh "$script" ${arg:+"$arg"} && st=ok || st=FAILED
        fi
        cpuf
        c=$((cpu - c0))
        times_line="== $name: $(($(date +%s) - t0))s (cpu $((c / 10)).$((c % 10))s)"
        echo "$st $name" >"$tmp/st.$i"
        lock print
        if [ "$JOBS" -gt 1 ]; then
            echo "== $name"
            cat "$tmp/out.$i"
        fi
        [ "$st" = ok ] || echo "FAILED: $name"
        echo "$times_line"
        unlock print
    done
}
l=1
while [ "$l" -le "$JOBS" ]; do
    lane=$l
    lane &
    l=$((l + 1))
done
wait

pass=0
fail=0
failed=""
i=1
while [ "$i" -le "$n" ]; do
    if [ -f "$tmp/st.$i" ] && read -r st name <"$tmp/st.$i" && [ "$st" = ok ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        name=$(sed -n "${i}p" "$tmp/items" | cut -f1)
        failed="$failed $(echo "$name" | tr ' ' '_')"
    fi
    i=$((i + 1))
done
echo "== all: $(($(date +%s) - t_all))s, $JOBS at once${failed:+; failed:$failed}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
