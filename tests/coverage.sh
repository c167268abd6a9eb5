#!/bin/sh
# tests/coverage.sh - line coverage of compiler/ and runtime/ by the tests
# (`make coverage`, which first builds fusec, the runtime and the unit-test
# programs with gcc --coverage into $COV_BUILD).
#
# Runs every unit-test program and every suite (tests/run.sh, with the
# covered fusec and with CC="cc --coverage", so that the harnesses `fusec
# check` builds count the runtime's lines too), or only the suites named in
# COV_SUITES ("golden fusion"), then prints gcovr's per-file line coverage
# of compiler/ and runtime/ (flex/bison output excluded) and writes
# $COV_BUILD/coverage.txt.  A failing test does not stop the report: its
# status is printed and the script exits non-zero.
#
# gcovr comes from Debian (apt-get install gcovr; make coverage runs
# scripts/install-deps.sh --coverage, which installs it) or PyPI (pip
# install gcovr); version 5.0 or later.
# Environment: COV_BUILD (default build-cov), GOLDEN, CC, COV_SUITES.
set -u
: "${COV_BUILD:=build-cov}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${COV_SUITES:=}"
if ! command -v gcovr >/dev/null 2>&1; then
    echo "coverage: gcovr is missing: sh scripts/install-deps.sh --coverage (or pip install gcovr)" >&2
    exit 1
fi
if [ ! -x "$COV_BUILD/fusec" ]; then
    echo "coverage: $COV_BUILD/fusec is not built (make coverage builds it)" >&2
    exit 1
fi
# counts from an earlier run would mix in
find "$COV_BUILD" -name '*.gcda' -delete
export FUSEC="$COV_BUILD/fusec" FUSEC_LIB_DIR="$COV_BUILD" GOLDEN
export FUSEC_CHECK_CACHE="$COV_BUILD/check-cache"
# atomic counters: the thread pool updates them from several threads (else
# gcov reads negative counts and gcovr stops)
export CC="$CC --coverage -fprofile-update=atomic"
status=0
if [ -z "$COV_SUITES" ]; then
    sh tests/run.sh || status=$?
else
    sh tests/unit/run.sh || status=$?
    for s in $COV_SUITES; do
        echo "== tests/$s/run.sh"
        sh "tests/$s/run.sh" || status=$?
    done
fi
echo "== coverage of compiler/ and runtime/ (lines)"
# Not counted: the calls of fu_internal and FU_UNREACHABLE (fusec's own
# bugs: an input that reaches one is a bug report), and the lines a
# GCOVR_EXCL_LINE or GCOVR_EXCL_START/STOP marks (docs/coverage.md says why).
# The interpreter's inner loops run billions of times over a whole run:
# gcovr 7 and later take counts past 2^32 for gcov bugs unless told.
big=
gcovr --help 2>/dev/null | grep -q suspicious_hits && big=--gcov-ignore-parse-errors=suspicious_hits.warn_once_per_file
# shellcheck disable=SC2086 # $big is empty or one word
gcovr $big --root . --object-directory "$COV_BUILD" --filter 'compiler/' --filter 'runtime/' \
    --exclude '.*\.tab\.[ch]$' --exclude '.*lex\.yy\.c$' --exclude '.*/lex\.c$' \
    --exclude-lines-by-pattern '.*\b(fu_internal\(|FU_UNREACHABLE\(\)).*' \
    --txt "$COV_BUILD/coverage.txt" "$COV_BUILD" || status=$?
cat "$COV_BUILD/coverage.txt"
# the files of compiler/ below 90% of their lines
low=$(awk '$1 ~ /^compiler\/.*\.c$/ && $4 ~ /%$/ && $4 + 0 < 90 { printf " %s %s", $1, $4 }' "$COV_BUILD/coverage.txt")
echo "coverage: compiler/ files below 90%:${low:- none}"
[ "$status" -eq 0 ] || echo "coverage: some tests failed (status $status): the figures count what ran"
exit "$status"
