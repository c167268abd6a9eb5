#!/bin/sh
# bench/decode.sh - decode (T = 1) for each weight type: the Llama-3.2-1B MLP
# (bench/blocks/mlp_1b.fdl, 50M weights in its three projections; the norm
# stays f32) with its projections stored as f32, bf16, f16, q8_0 and q4_0,
# on 1 and 2 threads, against the machine's streaming read bandwidth
# (bench/limits.c).  Not part of make test (timings).
#
#   sh bench/decode.sh                      # after make; THREADS="1 2"
#   THREADS="1 4 16" TARGET=x86-64-spr sh bench/decode.sh
#
# For each type: `fusec check --random` builds the block for TARGET
# (default native), checks it against the interpreter at T = 1 and keeps its
# weights file (--keep); bench/decode_main.c then runs one decode step REPS
# times (default 15), each after a cache flush, and prints the median time,
# the weight bytes streamed per second, the read bandwidth on as many
# threads, and their ratio.  Medians; other work on the machine shows.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
TARGET=${TARGET:-native}
THREADS=${THREADS:-1 2}
REPS=${REPS:-15}
TYPES=${TYPES:-f32 bf16 f16 q8_0 q4_0}
FUSEC=$BUILD/fusec
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-decode.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
[ -x "$FUSEC" ] && [ -f "$BUILD/libfusec_rt.a" ] || { echo "decode.sh: run make first" >&2; exit 1; }
me=decode.sh
. bench/limits.sh
echo "# mlp_1b decode T=1, target $TARGET, median of $REPS, cache flushed"
echo "# type threads median_ms weight_GB/s read_bw_GB/s fraction_of_bw speedup_vs_f32"
for ty in $TYPES; do
    d=$tmp/$ty
    wt=""
    [ "$ty" = f32 ] || wt="--weight-type=mlp.*=$ty"
    # q8_0/q4_0: the interpreter quantizes its own activations, and one of the
    # 12288 here can round one step apart from the kernel's (docs/quantization.md):
    # a sanity check at 1e-3 (a wrong kernel is off by far more)
    case $ty in q*) wt="$wt --rtol 1e-3 --max-tol 1e-2" ;; esac
    # shellcheck disable=SC2086
    if ! "$FUSEC" check bench/blocks/mlp_1b.fdl --random $wt --dim T=1 --target "$TARGET" --keep "$d" \
        >"$tmp/check.log" 2>&1; then
        echo "decode.sh: $ty: fusec check failed:" >&2
        tail -5 "$tmp/check.log" >&2
        exit 1
    fi
    bytes=$(stat -c %s "$d/in.safetensors")
    $CC -O2 -Iruntime -Ibench -I"$d" -o "$d/decode" bench/decode_main.c "$d/block.c" "$tmp/limits.o" \
        "$tmp/limits_avx2.o" "$tmp/limits_avx512.o" "$BUILD/libfusec_rt.a" -lm -lpthread ||
        { echo "decode.sh: $ty: cannot build the driver" >&2; exit 1; }
    for n in $THREADS; do
        line=$("$d/decode" "$d/in.safetensors" "$bytes" "$n" "$REPS") || exit 1
        ms=$(echo "$line" | cut -d' ' -f2)
        [ "$ty" = f32 ] && eval "f32_$n=$ms"
        ref=$(eval "echo \${f32_$n:-}")
        sp=$(awk -v a="$ref" -v b="$ms" 'BEGIN { if (a == "") print "-"; else printf "%.2f", a / b }')
        echo "$ty $line $sp"
    done
    rm -f "$d/in.safetensors"
done
