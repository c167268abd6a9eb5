#!/bin/sh
# Runs every end-to-end test suite: each tests/*/run.sh, in name order, and
# prints each one's wall time and CPU time (user + system of all its
# processes: unlike the wall time, it does not depend on what else runs).
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden .safetensors files, default tests/golden/hf),
# SUITES (the names of the suites to run, e.g. "cli golden"; default all; an unknown name is an error).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${SUITES:=}"
export FUSEC GOLDEN
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
pass=0; fail=0
for suite in tests/*/run.sh; do
    [ -f "$suite" ] || continue
    if [ -n "$SUITES" ]; then
        name=${suite#tests/}; name=${name%/run.sh}
        case " $(echo $SUITES) " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "== $suite"
    t0=$(date +%s); cpu; c0=$cpu
    if sh "$suite"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $suite"; fi
    cpu; c=$((cpu - c0))
    echo "== $suite: $(($(date +%s) - t0))s (cpu $((c / 10)).$((c % 10))s)"
done
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
