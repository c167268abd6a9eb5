#!/bin/sh
# Runs every end-to-end test suite: each tests/*/run.sh, in name order.
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden .safetensors files, default tests/golden/hf).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}"
export FUSEC GOLDEN
pass=0; fail=0
for suite in tests/*/run.sh; do
    [ -f "$suite" ] || continue
    echo "== $suite"
    t0=$(date +%s)
    if sh "$suite"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $suite"; fi
    echo "== $suite: $(($(date +%s) - t0))s"
done
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
