#!/bin/sh
# Runs every end-to-end test suite: each tests/*/run.sh, in name order.
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden .safetensors files, default tests/golden/hf),
# SUITES (the names of the suites to run, e.g. "cli golden"; default all; an unknown name is an error).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${SUITES:=}"
export FUSEC GOLDEN
for name in $SUITES; do
    [ -f "tests/$name/run.sh" ] || { echo "tests/run.sh: error: no suite tests/$name/run.sh"; exit 2; }
done
pass=0; fail=0
for suite in tests/*/run.sh; do
    [ -f "$suite" ] || continue
    if [ -n "$SUITES" ]; then
        name=${suite#tests/}; name=${name%/run.sh}
        case " $(echo $SUITES) " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "== $suite"
    t0=$(date +%s)
    if sh "$suite"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $suite"; fi
    echo "== $suite: $(($(date +%s) - t0))s"
done
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
