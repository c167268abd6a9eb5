#!/bin/sh
# tests/diff/run.sh - differential testing of random programs, a small
# fixed-seed batch for `make test` (`make fuzz-diff N=...` runs many).
#
#  1. The tester itself: a fake fusec that "miscompiles" every program
#     using sigmoid must make fdlgen.py report failures, and the minimised
#     reproducer must still use sigmoid and be small.  A tester that cannot
#     fail proves nothing.
#  2. The minimised reproducers of every mismatch fixed so far
#     (tests/diff/regress/*.fdl; T and --split from their first line).
#  3. DIFF_N random programs (default 16) from seed DIFF_SEED (default 1),
#     each checked fused and -O0 on every target that runs here, against
#     the float64 interpreter at rtol 1e-4 (tests/diff/fdlgen.py says why).
#
# Environment: FUSEC (default build/fusec), DIFF_N (16; 8 with SAN=1), DIFF_SEED, DIFF_JOBS (2),
# FDLGEN_CHECK_TIMEOUT (600: seconds of wall time after which a check counts as a hang).
# Prints "N passed, M failed" (checks); exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
# sanitized fusec and generated code run several times slower; the NEON
# build is a cross build without sanitizers, so SAN=1 leaves it to the plain run
targets=
if [ "${SAN:-0}" = 1 ]; then
    : "${DIFF_N:=8}"
    targets="--targets generic,x86-64-avx2,x86-64-avx512"
fi
: "${FUSEC:=build/fusec}" "${DIFF_N:=16}" "${DIFF_SEED:=1}" "${DIFF_JOBS:=2}"
# the rewrite passes check every point they resume their scan at (schedule.c)
export FUSEC_CHECK_REWRITES=1
PY=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-diff.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0

# ---- 1. the tester can fail, and minimises ----------------------------------
cat >"$tmp/fakefusec" <<'FAKE'
#!/bin/sh
# A fake fusec for "check FILE ... --target T": it knows the generic
# target only; a program that uses sigmoid is out of tolerance.
file=$2
prev=
for a in "$@"; do
    if [ "$prev" = "--target" ] && [ "$a" != generic ]; then
        echo "fusec check: error: unknown target '$a'"
        exit 2
    fi
    prev=$a
done
if grep -q 'sigmoid(' "$file"; then
    echo "y: max_abs_err=1 rel_l2_err=1 (rtol 0.0001) FAIL"
    exit 1
fi
echo "y: max_abs_err=0 rel_l2_err=0 (rtol 0.0001) ok"
FAKE
chmod +x "$tmp/fakefusec"
$PY tests/diff/fdlgen.py run --fusec "$tmp/fakefusec" -n 60 --seed 1 --jobs "$DIFF_JOBS" \
    --out "$tmp/fake-out" --budget 60 >"$tmp/fake.log" 2>&1
rc=$?
nrepro=$(ls "$tmp/fake-out" 2>/dev/null | wc -l)
if [ "$rc" -eq 1 ] && [ "$nrepro" -ge 1 ] && grep -q "failed" "$tmp/fake.log"; then
    pass=$((pass + 1))
    echo "ok   a fake miscompile of sigmoid is caught ($nrepro programs)"
else
    fail=$((fail + 1))
    echo "FAIL a fake miscompile of sigmoid is caught (exit $rc, $nrepro reproducers)"
    tail -20 "$tmp/fake.log" | sed 's/^/       /'
fi
small=1
for f in "$tmp"/fake-out/*.fdl; do
    [ -f "$f" ] || continue
    lets=$(grep -c '^    v[0-9]* = ' "$f")
    if ! grep -q 'sigmoid(' "$f" || [ "$lets" -gt 3 ]; then
        small=0
        echo "       not minimal ($lets statements): $f"
        sed 's/^/       /' "$f"
    fi
done
if [ "$nrepro" -ge 1 ] && [ "$small" -eq 1 ]; then
    pass=$((pass + 1))
    echo "ok   reproducers are minimised to the sigmoid (at most 3 statements)"
else
    fail=$((fail + 1))
    echo "FAIL reproducers are minimised to the sigmoid"
fi

# ---- 2. reproducers of mismatches fixed so far (tests/diff/regress) ------------
# shellcheck disable=SC2086
$PY tests/diff/fdlgen.py regress tests/diff/regress --fusec "$FUSEC" $targets >"$tmp/regress.log" 2>&1
rc=$?
grep -v '^[0-9]* passed, [0-9]* failed$' "$tmp/regress.log"
n=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$tmp/regress.log")
nfiles=$(ls tests/diff/regress/*.fdl 2>/dev/null | wc -l)
if [ -n "$n" ]; then
    pass=$((pass + ${n% *}))
    fail=$((fail + ${n#* }))
fi
# every reproducer must have run (at least one check each), and a failing
# exit status is a failure even when the counts say nothing failed
if [ -z "$n" ] || [ "${n% *}" -lt "$nfiles" ] || { [ "$rc" -ne 0 ] && [ "${n#* }" -eq 0 ]; }; then
    fail=$((fail + 1))
    echo "FAIL fdlgen.py regress: exit $rc, '${n:-no summary}' (passed failed) for $nfiles reproducers"
fi

# ---- 3. the fixed-seed batch --------------------------------------------------
# shellcheck disable=SC2086
$PY tests/diff/fdlgen.py run --fusec "$FUSEC" -n "$DIFF_N" --seed "$DIFF_SEED" --jobs "$DIFF_JOBS" \
    --out "$tmp/out" $targets >"$tmp/run.log" 2>&1
rc=$?
grep -v '^[0-9]* passed, [0-9]* failed$' "$tmp/run.log"
n=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$tmp/run.log")
if [ -n "$n" ]; then
    pass=$((pass + ${n% *}))
    fail=$((fail + ${n#* }))
fi
if [ "$rc" -ne 0 ] && [ -z "$n" ]; then
    fail=$((fail + 1))
    echo "FAIL fdlgen.py exited $rc"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
