#!/bin/sh
# bench/moe/run.sh - W7 (docs/benchmarks.md): the sparse MoE block against
# the dense workaround at T = 1 (decode) and T = 512 (prefill), on the
# widest target this CPU runs; `make bench-moe`.  Each line is the median
# of REPS timed calls (w7_main.c).  The dense block needs 2.4 GB of weights,
# the sparse one the same; they run one after the other.
#
# Environment: CC, BUILD (build), TARGET (default: x86-64-avx512 where the
# CPU has it, else x86-64-avx2, else generic), FUSE_NUM_THREADS,
# W7_T ("1 512"), W7_REPS_DECODE (20), W7_REPS_PREFILL (3), W7_DENSE (1: also
# the dense block), W7_FULL (0: a reduced shape, hidden 1024, 64 experts,
# top-8, FFN 384 - 300 MB of f32 weights, the same 64 tokens per expert at
# T = 512 as the full shape at T = 1024; 1: the Qwen3-30B-A3B-like shape,
# 2.4 GB), W7_TYPE (f32; bf16: the sparse block's experts stored bf16 and
# read in place, the dense block staying f32), FUSEC (BUILD/fusec: the
# compiler that writes the blocks).
set -u
CC=${CC:-cc}
BUILD=${BUILD:-build}
out=$BUILD/bench/moe
mkdir -p "$out" || exit 1
if [ -z "${TARGET:-}" ]; then
    TARGET=generic
    grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && TARGET=x86-64-avx2
    grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
        TARGET=x86-64-avx512
fi
case $TARGET in
x86-64-avx512) flags="-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma" ;;
x86-64-avx2) flags="-mavx2 -mfma" ;;
*) flags="" ;;
esac
FUSEC=${FUSEC:-$BUILD/fusec}
fdl=bench/moe/w7.fdl
shape="hidden 2048, 128 experts, FFN 768"
if [ "${W7_FULL:-0}" != 1 ]; then
    fdl=$out/w7_small.fdl
    sed 's/D = 2048, E = 128, I = 768/D = 1024, E = 64, I = 384/' bench/moe/w7.fdl >"$fdl" || exit 1
    shape="hidden 1024, 64 experts, FFN 384 (reduced; W7_FULL=1: 2048, 128, 768)"
fi
case ${W7_TYPE:-f32} in
f32) ;;
bf16)
    sed 's/weight gate_up: f32/weight gate_up: bf16/; s/weight down: f32/weight down: bf16/' "$fdl" >"$out/w7_bf16.fdl" ||
        exit 1
    fdl=$out/w7_bf16.fdl
    flags="$flags -DW7_BF16"
    shape="$shape, bf16 experts"
    ;;
*) echo "bench/moe/run.sh: W7_TYPE must be f32 or bf16, not '$W7_TYPE'" >&2; exit 2 ;;
esac
blocks=w7_sparse
[ "${W7_DENSE:-1}" = 1 ] && blocks="$blocks w7_dense"
for b in $blocks; do
    def=""
    [ $b = w7_dense ] && def=-DDENSE
    "$FUSEC" --target=$TARGET --block $b "$fdl" -o "$out/$b.c" || exit 1
    # shellcheck disable=SC2086
    $CC -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 $flags $def -Iruntime -I"$out" \
        bench/moe/w7_main.c "$out/$b.c" "$BUILD/libfusec_rt.a" -lm -lpthread -o "$out/$b" || exit 1
done
echo "W7 ($shape, top-8) on $TARGET, FUSE_NUM_THREADS=${FUSE_NUM_THREADS:-(all cores)}"
for T in ${W7_T:-1 512}; do
    reps=${W7_REPS_PREFILL:-3}
    [ "$T" -le 8 ] && reps=${W7_REPS_DECODE:-20}
    for b in $blocks; do
        "$out/$b" "$T" "$reps" >"$out/line" || exit 1
        cat "$out/line"
        sed -n 's/.* median_ms=\([^ ]*\).*/\1/p' "$out/line" >"$out/$b.ms"
    done
    [ "${W7_DENSE:-1}" = 1 ] && awk -v T="$T" '{ m[NR] = $1 } END { printf "T=%s sparse %.2fx faster than the dense workaround\n", T, m[2] / m[1] }' \
        "$out/w7_sparse.ms" "$out/w7_dense.ms"
done
