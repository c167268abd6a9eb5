#!/bin/sh
# tests/bf16/bench.sh - --compute=bf16 against float32, side by side (not
# part of make test: timings need a quiet machine; docs/quantization.md).
#
#   sh tests/bf16/bench.sh [TARGET] [THREADS...]   (default: native; 1 2)
#
# Builds with fusec, for TARGET, the float32 kernels (--target TARGET, or
# x86-64-avx512 for the AVX-512 rows) and the --compute=bf16 ones, of
#   gemm      a 2048 x 2048 linear (GEMM at T = 512)
#   llama_1b  one Llama-3.2-1B layer (bench/blocks/llama_1b.fdl), prefill
#             T = 512 after no cached tokens
# links each with tests/gemm/bench_gemm.c and the runtime, prints the
# one-thread peaks (AVX-512 FMA, AVX512-BF16 vdpbf16ps, AMX tdpbf16ps, and the
# int8 ones: AVX512-VNNI vpdpbusd and AMX tdpbssd; those
# this CPU has), then best-of-REPS times for every thread count given.
# GFLOP/s count the linears' 2 * T * weights only.  On a shared machine read
# the "per CPU-second" figures.
set -eu
: "${FUSEC:=build/fusec}" "${CC:=cc}" "${REPS:=5}"
target=${1:-native}
[ $# -gt 0 ] && shift
threads=${*:-1 2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_bf16.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/gemm.fdl" <<'EOF2'
block gemm {
    dim T;
    input x: f32[T, 2048];
    weight w: f32[2048, 2048];
    output y = linear(x, w);
}
EOF2
f32target=$target
case $target in
x86-64-avx512-bf16 | x86-64-spr) f32target=x86-64-avx512 ;;
esac
for blk in gemm llama_1b; do
    fdl=$tmp/gemm.fdl
    [ $blk = llama_1b ] && fdl=bench/blocks/llama_1b.fdl
    for c in f32 bf16; do
        t=$target
        [ $c = f32 ] && t=$f32target
        "$FUSEC" "$fdl" --target "$t" --compute=$c -o "$tmp/$blk.$c.c"
        $CC -std=c99 -O2 -mavx2 -mfma -Iruntime -DDESC=${blk}_desc "$tmp/$blk.$c.c" tests/gemm/bench_gemm.c \
            build/libfusec_rt.a -lm -lpthread -o "$tmp/$blk.$c"
    done
done
echo "target $target (float32: $f32target)"
FUSE_NUM_THREADS=1 "$tmp/gemm.f32" peak
FUSE_NUM_THREADS=1 "$tmp/gemm.f32" peak-bf16
FUSE_NUM_THREADS=1 "$tmp/gemm.f32" peak-amx
FUSE_NUM_THREADS=1 "$tmp/gemm.f32" peak-vnni
FUSE_NUM_THREADS=1 "$tmp/gemm.f32" peak-amx-int8
for n in $threads; do
    for blk in gemm llama_1b; do
        for c in f32 bf16; do
            printf '%-5s ' $c
            FUSE_NUM_THREADS=$n "$tmp/$blk.$c" run 512 "$REPS"
        done
    done
done
