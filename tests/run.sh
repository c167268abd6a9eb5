#!/bin/sh
# Runs every test: each unit-test program ($FUSEC_LIB_DIR/tests/test_*,
# judged by tests/unit/run.sh), then each end-to-end suite tests/*/run.sh in
# name order.  Everything runs whatever failed before it; each item prints
# its time, and the last line is "N passed, M failed" over the unit programs
# and the suites.  Exits non-zero when anything failed.
#
# Environment: FUSEC (the compiler), GOLDEN (the folder of golden
# .safetensors files, default tests/golden/hf), FUSEC_LIB_DIR (build),
# FUSEC_CHECK_CACHE (where `fusec check` keeps the harnesses it built:
# default $FUSEC_LIB_DIR/check-cache, so a test run never fills the user's
# cache and `make clean` empties it).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${FUSEC_LIB_DIR:=build}"
: "${FUSEC_CHECK_CACHE:=$(cd "$FUSEC_LIB_DIR" && pwd)/check-cache}"
export FUSEC GOLDEN FUSEC_LIB_DIR FUSEC_CHECK_CACHE
pass=0
fail=0
failed=""
t_all=$(date +%s)
item() { # item NAME CMD...: runs CMD, counts it, prints its time
    name=$1
    shift
    echo "== $name"
    t0=$(date +%s)
    if "$@"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed="$failed $name"
        echo "FAILED: $name"
    fi
    echo "== $name: $(($(date +%s) - t0))s"
}
for prog in "$FUSEC_LIB_DIR"/tests/test_*; do
    [ -x "$prog" ] || continue
    item "unit $(basename "$prog")" sh tests/unit/run.sh "$prog"
done
for suite in tests/*/run.sh; do
    [ -f "$suite" ] && [ "$suite" != tests/unit/run.sh ] || continue
    item "$suite" sh "$suite"
done
echo "== all: $(($(date +%s) - t_all))s${failed:+; failed:$failed}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
