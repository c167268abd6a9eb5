#!/bin/sh
# tests/fuzz/fuzz.sh - `make fuzz`: builds the libFuzzer harnesses
# (tests/fuzz/build.sh) and runs each for FUZZ_SECONDS, one after the other
# (a number of seconds, or with a unit: 90s, 30m, 2h).
#
# Corpora live in the repository, tests/fuzz/corpus/NAME, so that a run
# starts where the last one ended: each run grows its corpus in a scratch
# copy, then minimises it (libFuzzer -merge=1: the smallest set of inputs
# with the same coverage; the seeds, read afresh every run, are not copied)
# back into tests/fuzz/corpus/NAME; commit the change.  Each run also reads the seeds, fresh: for fdl the examples,
# tests/errors, tests/badinput and the regression inputs; for st small valid
# files (make_seeds.py, with the golden files' headers), the golden files
# themselves, tests/badinput's safetensors and the regression inputs; for
# api tests/fuzz/seeds/api (one input per return code) and the regression
# inputs.
# A crash, hang, leak or sanitizer report is written to
# $BUILD/fuzz/crashes/NAME-*; make it a regression input in
# tests/fuzz/regress/NAME/ once it is fixed.  Every run appends a line
# "date harness seconds executions status" to $BUILD/fuzz/stats.tsv, and the
# totals per harness are printed at the end.
#
# Environment: BUILD (build), FUZZ_SECONDS (60), FUZZ_HARNESSES ("fdl st"),
# GOLDEN (tests/golden/hf), FUZZ_ARGS (extra libFuzzer flags, e.g. -jobs=2),
# FUZZ_BUILD (1: rebuild the harnesses first; 0: use those in $BUILD/fuzz).
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${BUILD:=build}" "${FUZZ_SECONDS:=60}" "${FUZZ_HARNESSES:=fdl st api}" "${GOLDEN:=tests/golden/hf}"
: "${FUZZ_ARGS:=}" "${FUZZ_BUILD:=1}"
dir=$BUILD/fuzz
case $FUZZ_SECONDS in
*[!0-9smh]* | '' | [smh]*) echo "fuzz: FUZZ_SECONDS='$FUZZ_SECONDS': want seconds, or 90s, 30m, 2h" >&2; exit 2 ;;
*h) FUZZ_SECONDS=$((${FUZZ_SECONDS%h} * 3600)) ;;
*m) FUZZ_SECONDS=$((${FUZZ_SECONDS%m} * 60)) ;;
*s) FUZZ_SECONDS=${FUZZ_SECONDS%s} ;;
esac
case $FUZZ_SECONDS in *[!0-9]*) echo "fuzz: FUZZ_SECONDS: one number and one unit" >&2; exit 2 ;; esac
if [ "$FUZZ_BUILD" = 1 ] || [ ! -x "$dir/fuzz_fdl" ]; then
    sh tests/fuzz/build.sh || exit 1
fi
mkdir -p "$dir/crashes" || exit 1
status=0
for h in $FUZZ_HARNESSES; do
    kept=tests/fuzz/corpus/$h
    corpus=$dir/corpus_$h
    seeds=$dir/seeds_$h
    rm -rf "$seeds" "$corpus"
    mkdir -p "$kept" "$corpus" "$seeds" || exit 1
    cp "$kept"/* "$corpus/" 2>/dev/null
    case $h in
    fdl)
        cp dsl-examples/*.fdl dsl-examples/lib/*.fdl tests/errors/*.fdl "$seeds/" 2>/dev/null
        cp tests/badinput/fdl/*.fdl "$seeds/" 2>/dev/null
        cp tests/fuzz/regress/fdl/* "$seeds/" 2>/dev/null
        maxlen=16384
        dict=-dict=tests/fuzz/fdl.dict
        ;;
    st)
        GOLDEN_DIR=$GOLDEN /usr/bin/python3 tests/fuzz/make_seeds.py "$seeds" || exit 1
        cp "$GOLDEN"/*.safetensors tests/badinput/st/*.safetensors "$seeds/" 2>/dev/null
        cp tests/fuzz/regress/st/* "$seeds/" 2>/dev/null
        maxlen=65536
        dict=
        ;;
    api)
        cp tests/fuzz/seeds/api/* tests/fuzz/regress/api/* "$seeds/" 2>/dev/null
        maxlen=64
        dict=
        ;;
    *) echo "fuzz: unknown harness '$h'" >&2; exit 2 ;;
    esac
    echo "fuzz: $h for ${FUZZ_SECONDS}s (log $dir/$h.log)"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$dir/fuzz_$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -max_len=$maxlen $dict -close_fd_mask=2 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/$h-" $FUZZ_ARGS "$corpus" "$seeds" >"$dir/$h.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$h.log" | awk '{s += $1} END {print s + 0}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$h" "$secs" "$execs" "$rc" \
        >>"$dir/stats.tsv"
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$dir/$h.log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*/cov \1, ft \2/p')
    # minimise the grown corpus back into the repository's copy
    rm -rf "$dir/merged_$h"
    mkdir -p "$dir/merged_$h"
    if "$dir/fuzz_$h" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen -close_fd_mask=2 \
        "$dir/merged_$h" "$corpus" >"$dir/$h.merge.log" 2>&1; then
        rm -f "$kept"/*
        cp "$dir/merged_$h"/* "$kept/" 2>/dev/null
        echo "fuzz: $h: corpus minimised to $(ls "$kept" | wc -l) inputs in $kept ($cov)"
    else
        echo "fuzz: $h: minimising the corpus failed (log $dir/$h.merge.log); $kept left as it was"
    fi
    if [ "$rc" -eq 0 ]; then
        echo "fuzz: $h: $execs executions in ${secs}s, no crash"
    else
        status=1
        echo "fuzz: $h: FAILED (exit $rc) after $execs executions; the report:"
        grep -v -E '^(#|")' "$dir/$h.log" | tail -40
    fi
done
echo "fuzz: totals so far ($dir/stats.tsv):"
awk -F'\t' '{t[$2] += $3; e[$2] += $4; if ($5 != 0) c[$2]++}
    END {for (h in t) printf "  %s: %.2f hours, %d executions, %d failed runs\n", h, t[h] / 3600, e[h], c[h] + 0}' \
    "$dir/stats.tsv"
exit $status
