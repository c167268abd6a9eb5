#!/bin/sh
# Runs every end-to-end test suite: each tests/*/run.sh, in name order.
# Environment: FUSEC (the compiler), SHARED (the folder holding golden/).
set -u
: "${FUSEC:=build/fusec}" "${SHARED:=../shared}"
export FUSEC SHARED
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
