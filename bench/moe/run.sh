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
# the dense block).
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
blocks=w7_sparse
[ "${W7_DENSE:-1}" = 1 ] && blocks="$blocks w7_dense"
for b in $blocks; do
    def=""
    [ $b = w7_dense ] && def=-DDENSE
    "$BUILD/fusec" --target=$TARGET --block $b bench/moe/w7.fdl -o "$out/$b.c" || exit 1
    # shellcheck disable=SC2086
    $CC -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 $flags $def -Iruntime -I"$out" \
        bench/moe/w7_main.c "$out/$b.c" "$BUILD/libfusec_rt.a" -lm -lpthread -o "$out/$b" || exit 1
done
echo "W7 on $TARGET, FUSE_NUM_THREADS=${FUSE_NUM_THREADS:-(all cores)}"
for T in ${W7_T:-1 512}; do
    reps=${W7_REPS_PREFILL:-3}
    [ "$T" -le 8 ] && reps=${W7_REPS_DECODE:-20}
    for b in $blocks; do
        "$out/$b" "$T" "$reps" || exit 1
    done
done
