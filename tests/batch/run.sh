#!/bin/sh
# tests/batch/run.sh - NAME_forward_batch (issue 12, item 3; docs/generated-api.md,
# "Batches"): several independent sequences, each with its own caches, P and
# T, packed into one call.
#
#  1. batch_main.c on llama_layer, gpt2_block, mistral_layer (window),
#     qwen3_layer, bert_layer (no caches, padding mask) and the whole smollm
#     model (last-position logits, one row per sequence): sequences of 1, 5,
#     13 and 1 tokens after 7, 0, 3 and 20 cached rows, against each
#     sequence run alone through NAME_forward: outputs and new cache rows
#     within 2e-6 of the output's largest magnitude (1e-5 for the 3-layer
#     model; not bitwise: the linear layers' kernels tile T = 1 and T = 20
#     differently), 4 decode sequences, 2 and 3 threads; one sequence is
#     bitwise equal to forward; a NaN in sequence 0 stays there; bad
#     arguments give FR_EDIM, FR_ENULL, FR_ECAPACITY, FR_EINVAL,
#     FR_EWORKSPACE.  On generic, -O0 and the best x86 target here.
#     attn.fdl's window, window_long (64-key blocks), padded (mask) and
#     kv_half (f16 and bf16 caches) blocks: bitwise against forward on one
#     thread, and with idle sequences (T = 0: skipped, caches untouched) the
#     batch bitwise the same on 1 to 4 threads (its attention items are never
#     split); qwen3_moe_layer (each expert's tokens gathered over the whole
#     batch) within 2e-6.  llama_layer with an idle decode sequence, the same
#     on 1 to 4 threads; smollm refuses an idle sequence (FR_EDIM: its logits
#     are its last row).  Generated C compiles with -Wshadow.
#  2. Blocks that cannot batch say why in their header (refuse.fdl).
#
# Environment: FUSEC (build/fusec), CC, FUSEC_LIB_DIR (build), SAN=1 (the
# drivers built with ASan + UBSan, to link with a SAN=1 runtime).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
san=""
[ "$SAN" = 1 ] && san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
D=tests/batch
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-batch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

best=generic
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && best=x86-64-avx2
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
    best=x86-64-avx512

# build NAME FDL [FUSEC ARGS...]: $tmp/NAME, batch_main on the block
build() {
    bn=$1 fdl=$2
    shift 2
    "$FUSEC" "$@" "$fdl" -o "$tmp/$bn.c" >"$tmp/log" 2>&1 &&
        desc=$(sed -n 's/^const fr_block_desc \([A-Za-z0-9_]*\) = {$/\1/p' "$tmp/$bn.c") &&
        $CC -std=c99 -O1 $san -Wall -Wextra -Wshadow -Werror -I runtime -DDESC="$desc" $D/batch_main.c "$tmp/$bn.c" \
            "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread -o "$tmp/$bn" >>"$tmp/log" 2>&1
}

# run NAME TOL FDL [FUSEC ARGS...]: the checks of batch_main on $tmp/NAME
run() {
    bn=$1 tol=$2
    shift 2
    if build "$bn" "$@"; then
        expect 0 "$bn: 1,5,13,1 tokens after 7,0,3,20 rows, 2 threads" env FUSE_NUM_THREADS=2 "$tmp/$bn" --tol "$tol"
        expect 0 "$bn: 4 decode sequences, 3 threads" env FUSE_NUM_THREADS=3 "$tmp/$bn" --tol "$tol" \
            --lens 1,1,1,1 --past 3,9,0,4
        expect 0 "$bn: one sequence is forward, bitwise" env FUSE_NUM_THREADS=2 "$tmp/$bn" --lens 5 --past 3 --bitwise
    else
        bad "$bn: build"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
}

run llama_layer 2e-6 dsl-examples/llama_layer.fdl
run gpt2_block 2e-6 dsl-examples/gpt2_block.fdl
run mistral_layer 2e-6 dsl-examples/mistral_layer.fdl
run qwen3_layer 2e-6 dsl-examples/qwen3_layer.fdl
run bert_layer 2e-6 dsl-examples/bert_layer.fdl
run smollm 1e-5 dsl-examples/smollm_model.fdl
run llama_O0 2e-6 dsl-examples/llama_layer.fdl -O0
[ $best != generic ] && run "llama_$best" 2e-6 dsl-examples/llama_layer.fdl --target=$best
# the attention variants of tests/attn/attn.fdl alone (no linear layers): bitwise
# (forward on 1 thread: it splits no item's keys; the batch's one pass never does)
for blk in window window_long padded kv_half; do
    if build "attn_$blk" tests/attn/attn.fdl --block $blk; then
        expect 0 "attn.fdl $blk: 1,5,13,1 tokens after 7,0,3,20 rows, bitwise" env FUSE_NUM_THREADS=2 \
            "$tmp/attn_$blk" --bitwise --ref-threads 1
        expect 0 "attn.fdl $blk: idle sequences; the batch bitwise the same on 1 to 4 threads" env FUSE_NUM_THREADS=3 \
            "$tmp/attn_$blk" --bitwise --ref-threads 1 --threads-agree --lens 1,0,13,0,1,2 --past 7,5,3,0,20,4
    else
        bad "attn.fdl $blk: build"
    fi
done
if build qwen3_moe dsl-examples/qwen3_moe_layer.fdl; then
    expect 0 "qwen3_moe_layer: experts grouped over the batch's tokens" env FUSE_NUM_THREADS=2 "$tmp/qwen3_moe" --tol 2e-6
else
    bad "qwen3_moe_layer: build"
fi
expect 0 "llama_layer: a NaN in sequence 0 stays in sequence 0" env FUSE_NUM_THREADS=2 "$tmp/llama_layer" --nan
expect 0 "smollm: 2 sequences of 13 and 1 tokens (prefill beside decode)" "$tmp/smollm" --tol 1e-5 --lens 13,1 --past 0,11
expect 0 "llama_layer: 6 decode sequences, one idle (caches untouched), the same on 1 to 4 threads" \
    env FUSE_NUM_THREADS=2 "$tmp/llama_layer" --tol 2e-6 --threads-agree --lens 1,1,1,1,0,1 --past 3,9,0,4,2,1
expect 0 "smollm: an idle sequence has no last-row logits: FR_EDIM" "$tmp/smollm" --lens 13,0 --past 0,11

# ---- 2. refusals ----------------------------------------------------------------
for b in pooled:"reduces over the tokens" two_syms:"exactly one symbol" tail_mix:"after a last-rows slice"; do
    blk=${b%%:*} why=${b#*:}
    "$FUSEC" --block "$blk" $D/refuse.fdl -o "$tmp/r_$blk.c" >"$tmp/log" 2>&1
    if grep -q "No ${blk}_forward_batch: .*$why" "$tmp/r_$blk.h" 2>/dev/null &&
        ! grep -q "int ${blk}_forward_batch" "$tmp/r_$blk.h"; then
        ok "$blk: no forward_batch ($why)"
    else
        bad "$blk: no forward_batch ($why)"
    fi
done
"$FUSEC" -O0 dsl-examples/llama_layer_prim.fdl -o "$tmp/prim.c" >"$tmp/log" 2>&1
grep -q "No llama_layer_prim_forward_batch: 'qh' has a symbolic dim on axis 2" "$tmp/prim.h" &&
    ok "llama_layer_prim -O0: attention from matmuls has no forward_batch" ||
    bad "llama_layer_prim -O0: attention from matmuls has no forward_batch"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
