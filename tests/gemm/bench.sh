#!/bin/sh
# tests/gemm/bench.sh - speed of the generated GEMM and GEMV against the
# machine's measured FMA peak and read bandwidth (docs/gemm.md has results).
#
#   sh tests/gemm/bench.sh [TARGET]     (default x86-64-avx2; run from the repo root)
#   COMPUTE=bf16 sh tests/gemm/bench.sh x86-64-spr    (the --compute=bf16 kernels,
#                                       beside the AVX512-BF16 and AMX bf16 peaks)
#
# Builds two blocks with fusec - a 2048 x 2048 linear (prefill GEMM at T=512)
# and an 8192 x 2048 linear (decode GEMV at T=1) - links each with
# tests/gemm/bench_gemm.c and the runtime, and runs them with 1 and 2
# threads; the GEMV also cycling through 16 copies of its weights (1 GiB),
# so that they come from memory even on a machine with a large L3.  Not
# part of `make test`: timings need a quiet machine.
set -eu
: "${FUSEC:=build/fusec}" "${CC:=cc}" "${COMPUTE:=f32}"
target=${1:-x86-64-avx2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_gemm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/gemm.fdl" <<'EOF'
block gemm {
    dim T;
    input x: f32[T, 2048];
    weight w: f32[2048, 2048];
    output y = linear(x, w);
}
EOF
cat >"$tmp/gemv.fdl" <<'EOF'
block gemv {
    dim T;
    input x: f32[T, 2048];
    weight w: f32[8192, 2048];
    output y = linear(x, w);
}
EOF

cflags=""
case $target in
x86-64-avx2) cflags="-mavx2 -mfma" ;;
x86-64-avx512*|x86-64-spr) cflags="-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma" ;;
*) ;;
esac
for b in gemm gemv; do
    "$FUSEC" "$tmp/$b.fdl" --target "$target" --compute="$COMPUTE" -o "$tmp/$b.c"
    $CC -std=c99 -O2 $cflags -mavx2 -mfma -Iruntime -DDESC=${b}_desc "$tmp/$b.c" tests/gemm/bench_gemm.c \
        build/libfusec_rt.a -lm -lpthread -o "$tmp/$b"
done
if [ "$COMPUTE" = bf16 ]; then
    FUSE_NUM_THREADS=1 "$tmp/gemm" peak-bf16
    FUSE_NUM_THREADS=1 "$tmp/gemm" peak-amx
fi
for n in 1 2; do
    FUSE_NUM_THREADS=$n "$tmp/gemm" peak
    FUSE_NUM_THREADS=$n "$tmp/gemm" run 512 5
    FUSE_NUM_THREADS=$n "$tmp/gemv" run 1 50
    FUSE_NUM_THREADS=$n "$tmp/gemv" run 1 64 16
done
