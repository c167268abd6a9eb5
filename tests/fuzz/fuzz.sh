#!/bin/sh
# tests/fuzz/fuzz.sh - `make fuzz`: builds the libFuzzer harnesses
# (tests/fuzz/build.sh) and runs each for FUZZ_SECONDS, one after the other.
#
# Corpora live in $BUILD/fuzz/corpus_NAME and grow from run to run.  Each
# run also reads the seeds, fresh: for fdl the examples, tests/errors,
# tests/badinput and the regression inputs; for st small valid files
# (make_seeds.py, with the golden files' headers), the golden files
# themselves, tests/badinput's safetensors and the regression inputs.
# A crash, hang, leak or sanitizer report is written to
# $BUILD/fuzz/crashes/NAME-*; make it a regression input in
# tests/fuzz/regress/NAME/ once it is fixed.  Every run appends a line
# "date harness seconds executions status" to $BUILD/fuzz/stats.tsv, and the
# totals per harness are printed at the end.
#
# Environment: BUILD (build), FUZZ_SECONDS (60), FUZZ_HARNESSES ("fdl st"),
# GOLDEN (tests/golden/hf), FUZZ_ARGS (extra libFuzzer flags, e.g. -jobs=2).
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${BUILD:=build}" "${FUZZ_SECONDS:=60}" "${FUZZ_HARNESSES:=fdl st}" "${GOLDEN:=tests/golden/hf}"
: "${FUZZ_ARGS:=}"
dir=$BUILD/fuzz
sh tests/fuzz/build.sh || exit 1
mkdir -p "$dir/crashes" || exit 1
status=0
for h in $FUZZ_HARNESSES; do
    corpus=$dir/corpus_$h
    seeds=$dir/seeds_$h
    rm -rf "$seeds"
    mkdir -p "$corpus" "$seeds" || exit 1
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
