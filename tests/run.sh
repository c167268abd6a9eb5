#!/bin/sh
# Runs every test: each unit-test program ($FUSEC_LIB_DIR/tests/test_*,
# judged by tests/unit/run.sh), then each end-to-end suite tests/*/run.sh in
# name order.  Everything runs whatever failed before it; each item prints
# its wall time and CPU time (user + system of all its processes: unlike the
# wall time, it does not depend on what else the machine runs), and the last
# line is "N passed, M failed" over the unit programs and the suites.  Exits
# non-zero when anything failed.
#
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden
# .safetensors files, default tests/golden/hf), FUSEC_LIB_DIR (build),
# FUSEC_CHECK_CACHE (where `fusec check` keeps the harnesses it built:
# default $FUSEC_LIB_DIR/check-cache, so a test run never fills the user's
# cache and `make clean` empties it), SUITES (the names of the suites to
# run, e.g. "cli golden"; default all; an unknown name is an error),
# UNITS (0: leave out the unit programs; default 1).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${FUSEC_LIB_DIR:=build}" "${SUITES:=}" "${UNITS:=1}"
: "${FUSEC_CHECK_CACHE:=$(cd "$FUSEC_LIB_DIR" && pwd)/check-cache}"
export FUSEC GOLDEN FUSEC_LIB_DIR FUSEC_CHECK_CACHE
for name in $SUITES; do
    [ -f "tests/$name/run.sh" ] || { echo "tests/run.sh: error: no suite tests/$name/run.sh"; exit 2; }
done
cpuf=$(mktemp) || exit 2
trap 'rm -f "$cpuf"' EXIT
# cpu: the children's CPU time so far, in tenths of a second, into $cpu
# (`times` must run in this shell: a $(...) subshell has no children yet).
cpu() {
    times >"$cpuf"
    cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
                         printf "%d", 10 * (u[1] * 60 + u[2] + s[1] * 60 + s[2]) }' "$cpuf")
}
pass=0
fail=0
failed=""
t_all=$(date +%s)
item() { # item NAME CMD...: runs CMD, counts it, prints its times
    name=$1
    shift
    echo "== $name"
    t0=$(date +%s)
    cpu
    c0=$cpu
    if "$@"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed="$failed $name"
        echo "FAILED: $name"
    fi
    cpu
    c=$((cpu - c0))
    echo "== $name: $(($(date +%s) - t0))s (cpu $((c / 10)).$((c % 10))s)"
}
if [ "$UNITS" != 0 ]; then
    for prog in "$FUSEC_LIB_DIR"/tests/test_*; do
        [ -x "$prog" ] || continue
        case $prog in *.gcno | *.gcda) continue ;; esac
        item "unit $(basename "$prog")" sh tests/unit/run.sh "$prog"
    done
fi
for suite in tests/*/run.sh; do
    [ -f "$suite" ] && [ "$suite" != tests/unit/run.sh ] || continue
    if [ -n "$SUITES" ]; then
        name=${suite#tests/}
        name=${name%/run.sh}
        case " $(echo $SUITES) " in *" $name "*) ;; *) continue ;; esac
    fi
    item "$suite" sh "$suite"
done
echo "== all: $(($(date +%s) - t_all))s${failed:+; failed:$failed}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
