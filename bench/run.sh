#!/bin/sh
# bench/run.sh - builds and runs the benchmark suite; `make bench` calls it
# after `make`, `make bench QUICK=1` for the short version.
#
#   1. asks the compiler's target table (bench/targets.c) which targets exist
#      and which this CPU runs, and with which C flags;
#   2. compiles every block in bench/blocks/ with fusec for each variant
#      (the best target fused -- the reference --, the same -O0, every other
#      target fused) and builds each into a shared object with `cc -O2` and
#      the target's flags; a variant that fails to build is skipped with a
#      note, never silently;
#   3. builds the driver (bench/bench.c, the OpenBLAS peer, the limit
#      kernels) against the runtime, and runs it with the PyTorch peer;
#   4. checks the driver's pieces and both peers against the golden layers
#      that Hugging Face computed (shared/golden; --selftest);
#   5. writes bench/results/STAMP-HOST[-quick].csv, and from it an SVG chart
#      and a markdown table (bench/chart.py);
#   6. prints the cost model's predicted times beside the measured ones
#      (bench/predict.py: fusec tune per thread count, then --emit=report).
#
# Environment: CC, BUILD (default build), QUICK=1, BENCH_ARGS (extra driver
# options, e.g. "--only W1,W3" or "--threads 2"), PYTHON (default
# /usr/bin/python3), GOLDEN (default tests/golden/hf).
set -u
CC=${CC:-cc}
BUILD=${BUILD:-build}
QUICK=${QUICK:-}
PYTHON=${PYTHON:-/usr/bin/python3}
BENCH_ARGS=${BENCH_ARGS:-}
FUSEC=$BUILD/fusec
RTLIB=$BUILD/libfusec_rt.a
B=$BUILD/bench
GEN=$B/gen
WARN="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wpedantic -Wshadow \
-Wmissing-prototypes -Wstrict-prototypes -Werror"

note() { echo "bench: note: $*" >&2; }
fail() { echo "bench: error: $*" >&2; exit 1; }

[ -x "$FUSEC" ] && [ -f "$RTLIB" ] || fail "$FUSEC or $RTLIB missing: run make first"
mkdir -p "$GEN" "$B/data" bench/results || fail "cannot create $B"

# ---- 1. targets ----------------------------------------------------------------------
objs=$(ls "$BUILD"/compiler/*.o | grep -v '/main\.o$')
# shellcheck disable=SC2086
$CC $WARN -O2 -Icompiler -I"$BUILD/compiler" -Iruntime bench/targets.c $objs "$RTLIB" \
    -lm -lpthread -o "$B/targets" || fail "cannot build bench/targets.c"
# names from fusec --help's target line, then the ones the target issue names
cands=$("$FUSEC" --help 2>&1 | sed -n 's/.*--target=[A-Za-z]* *target ISA: *//p' |
    tr -c 'a-z0-9_.-' ' ')
# ("native" is one of the rows under another name, "multi:..." a bundle of them)
cands=$(echo generic $cands x86-64-avx512 x86-64-avx2 aarch64-neon |
    tr ' ' '\n' | awk 'NF && $0 != "native" && $0 != "multi" && !seen[$0]++')
# shellcheck disable=SC2086
"$B/targets" $cands | awk -F'\t' '!seen[$1]++' >"$B/targets.txt" || fail "bench/targets failed"

# the reference target: the widest this CPU runs
pick_ref() {
    for pat in avx512 avx2 neon; do
        awk -F'\t' -v p="$pat" '$2 == "yes" && index($1, p) { print $1; exit }' "$B/targets.txt" |
            grep . && return
    done
    awk -F'\t' '$2 == "yes" && $1 != "generic" { print $1; exit }' "$B/targets.txt" | grep . && return
    echo generic
}
while IFS='	' read -r name ok flags; do
    [ "$ok" = yes ] || note "target $name: this CPU cannot run its code${flags:+ ($flags)}: skipped"
done <"$B/targets.txt"
for t in x86-64-avx2 x86-64-avx512; do
    grep -q "^$t	" "$B/targets.txt" || note "fusec does not know --target=$t yet: not measured"
done
REF=$(pick_ref)

# variants: "LABEL=SUFFIX TARGET OPT" lines, the reference first
variants=$(
    echo "fusec $REF=$REF.O1 $REF -O1"
    echo "fusec $REF -O0=$REF.O0 $REF -O0"
    awk -F'\t' -v r="$REF" '$2 == "yes" && $1 != r { printf "fusec %s=%s.O1 %s -O1\n", $1, $1, $1 }' \
        "$B/targets.txt"
)

# ---- 2. the blocks, per variant ----------------------------------------------------------
set --
echo "bench: compiling bench/blocks/*.fdl for: $(echo "$variants" | sed 's/=.*//' | tr '\n' ',' | sed 's/,$//')" >&2
good_variants=""
while read -r line; do
    spec=${line% * *}          # LABEL=SUFFIX
    rest=${line##*=}           # SUFFIX TARGET OPT
    suffix=${rest%% *}
    tgt=$(echo "$rest" | cut -d' ' -f2)
    optf=$(echo "$rest" | cut -d' ' -f3)
    cflags=$(awk -F'\t' -v t="$tgt" '$1 == t { print $3 }' "$B/targets.txt")
    ok=1
    for fdl in bench/blocks/*.fdl; do
        blk=$(basename "$fdl" .fdl)
        out=$GEN/$blk.$suffix
        rm -f "$out.so"
        if ! "$FUSEC" "$optf" --target="$tgt" "$fdl" -o "$out.c" 2>"$out.log"; then
            note "${spec%%=*}: fusec $optf --target=$tgt $fdl failed (see $out.log): skipped"
            ok=0
            continue
        fi
        # shellcheck disable=SC2086
        if ! $CC -std=c99 -O2 -fPIC -shared $cflags -Iruntime "$out.c" -o "$out.so" -lm \
            2>>"$out.log"; then
            note "${spec%%=*}: cc failed on $out.c (see $out.log): skipped"
            rm -f "$out.so"
            ok=0
        fi
    done
    [ $ok = 1 ] || note "${spec%%=*}: some blocks did not build; their workloads lack this variant"
    set -- "$@" --variant "$spec"
done <<EOV
$variants
EOV

# ---- 3. the driver -------------------------------------------------------------------------
blas_cflags=$(pkg-config --cflags openblas 2>/dev/null || true)
blas_libs=$(pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
peer_def=""
# shellcheck disable=SC2086
if ! $CC $WARN -O2 -Iruntime -Ibench $blas_cflags -c bench/peer_openblas.c -o "$B/peer_openblas.o" \
    2>"$B/peer_openblas.log"; then
    note "OpenBLAS not found (bench/install-deps.sh installs libopenblas-dev): no OpenBLAS column"
    peer_def=-DBENCH_NO_OPENBLAS
    blas_libs=""
    $CC $WARN -O2 -Iruntime -Ibench $peer_def -c bench/peer_openblas.c -o "$B/peer_openblas.o" ||
        fail "cannot build bench/peer_openblas.c"
fi
case $(uname -m) in
x86_64 | amd64) f2="-mavx2 -mfma" f512="-mavx512f -mfma" ;;
*) f2="" f512="" ;;
esac
# shellcheck disable=SC2086
{
    $CC $WARN -O2 -Iruntime -Ibench -c bench/bench.c -o "$B/bench.o" &&
    $CC $WARN -O2 -Iruntime -Ibench -c bench/limits.c -o "$B/limits.o" &&
    $CC $WARN -O2 -Iruntime -Ibench $f2 -c bench/limits_avx2.c -o "$B/limits_avx2.o" &&
    $CC $WARN -O2 -Iruntime -Ibench $f512 -c bench/limits_avx512.c -o "$B/limits_avx512.o" &&
    $CC -rdynamic -o "$B/bench" "$B/bench.o" "$B/limits.o" "$B/limits_avx2.o" "$B/limits_avx512.o" \
        "$B/peer_openblas.o" -Wl,--whole-archive "$RTLIB" -Wl,--no-whole-archive $blas_libs \
        -ldl -lm -lpthread
} || fail "cannot build the driver"

# ---- 4. self-tests: the statistics, and both peers against Hugging Face's golden layers --------
selftest_failed=0
GOLDEN=${GOLDEN:-tests/golden/hf}
if [ -f "$GOLDEN/llama_layer.safetensors" ]; then
    "$B/bench" --selftest "$GOLDEN" >"$B/selftest.txt" 2>&1 || selftest_failed=1
    if [ -x "$PYTHON" ]; then
        "$PYTHON" bench/peer_torch.py --selftest "$GOLDEN" >>"$B/selftest.txt" 2>&1 || selftest_failed=1
    fi
    if [ $selftest_failed = 1 ]; then
        cat "$B/selftest.txt" >&2
        echo "bench: *** SELF-TEST FAILED: a peer disagrees with Hugging Face (above)" >&2
    else
        echo "bench: self-test passed: peers match Hugging Face's golden layers ($B/selftest.txt)" >&2
    fi
else
    note "no golden layers in $GOLDEN (set GOLDEN): the peers are not checked against Hugging Face"
fi

# ---- 5. run ---------------------------------------------------------------------------------
stamp=$(date +%Y%m%d-%H%M%S)
host=$(hostname -s 2>/dev/null || hostname)
mode=""
[ -n "$QUICK" ] && [ "$QUICK" != 0 ] && mode=-quick
csv=bench/results/$stamp-$host$mode.csv
quick_arg=""
[ -n "$mode" ] && quick_arg=--quick
torch_arg=""
[ -x "$PYTHON" ] && torch_arg="--torch bench/peer_torch.py --python $PYTHON"
# shellcheck disable=SC2086
{
    "$B/bench" $quick_arg --gen "$GEN" --data "$B/data" --csv "$csv" $torch_arg "$@" $BENCH_ARGS
    echo $? >"$B/rc"
} | tee "$B/last.txt"
rc=$(cat "$B/rc")
[ -s "$csv" ] || fail "the driver wrote no results"
if [ -x "$PYTHON" ]; then
    "$PYTHON" bench/chart.py "$csv" --svg "${csv%.csv}.svg" --md "${csv%.csv}.md" ||
        note "bench/chart.py failed: no chart"
else
    note "no $PYTHON: no chart"
fi
# ---- 6. the cost model against the measurement -------------------------------------------
if [ -x "$PYTHON" ]; then
    "$PYTHON" bench/predict.py "$csv" --fusec "$FUSEC" --target "$REF" --md "${csv%.csv}-predicted.md" ||
        note "bench/predict.py failed: no predicted times"
fi
# ---- 7. every weight type and --compute=bf16: W1/W2 (the layer) and W5a/W5b (the MLP) ----
# bench/types.sh on the best target of this CPU (native), each variant checked
# against the interpreter first, llama.cpp beside the layer where
# bench/install-llama.sh built it; TYPES=0 skips it.
types_txt=${csv%.csv}-types.txt
if [ "${TYPES:-1}" != 0 ]; then
    nth="1 $(nproc)"
    [ "$(nproc)" = 1 ] && nth=1
    : >"$types_txt"
    for fdl in bench/blocks/llama_1b.fdl bench/blocks/mlp_1b.fdl; do
        if [ -n "$mode" ]; then
            FDL=$fdl THREADS=1 REPS=5 PREPS=1 VARIANTS="f32 bf16 q8_0 f32+bf16c" BUILD=$BUILD CC=$CC \
                sh bench/types.sh >>"$types_txt"
        else
            FDL=$fdl THREADS="$nth" BUILD=$BUILD CC=$CC sh bench/types.sh >>"$types_txt"
        fi || { note "bench/types.sh failed on $fdl (see $types_txt)"; rc=1; }
    done
    cat "$types_txt"
fi
echo "bench: results in $csv, chart ${csv%.csv}.svg, table ${csv%.csv}.md, types $types_txt"
[ "$selftest_failed" = 0 ] || rc=1
exit "$rc"
