#!/bin/sh
# tests/layers/run.sh - the Qwen3 and Gemma-3 decoder layers of dsl-examples/
# against their golden files (tests/layers/*.safetensors, made by
# make_golden.py: a float64 PyTorch run of Hugging Face's layer code).
#
#  1. Each layer within 1e-5 (relative L2, fusec check's default) of out64 on
#     every target here: generic, -O0, x86-64-avx2 and x86-64-avx512 where
#     the CPU has them, aarch64-neon under qemu; all rows at once, prefill 12
#     then decode token 12 from the KV cache, and (generic) every token
#     decoded one by one; the float64 interpreter too.  These run the fused
#     per-head q/k norm (qwen3, gemma3) and Gemma's folded 1 + w weights.
#  2. Checks that must fail: Gemma-3 with head_dim^-0.5 in place of
#     query_pre_attn_scalar^-0.5, and with q_norm's weight used as w in
#     place of 1 + w; Qwen3 without k_norm.
#
# Environment: FUSEC (default build/fusec).  Prints "N passed, M failed";
# exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}"
D=tests/layers
ex=dsl-examples
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-layers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
. tests/lib.sh

targets=generic
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && targets="$targets x86-64-avx2"
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
    targets="$targets x86-64-avx512"
XCC=aarch64-linux-gnu-gcc
neon=0
command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 && neon=1

for b in qwen3_layer gemma3_layer; do
    G=$D/$b.safetensors
    expect 0 "$b: interpreter" "$FUSEC" check $ex/$b.fdl --golden $G --interp
    expect 0 "$b: -O0, prefill 5 + decode" "$FUSEC" check $ex/$b.fdl --golden $G -O0 --split 5
    expect 0 "$b: generic, decode every token" "$FUSEC" check $ex/$b.fdl --golden $G --split 1
    for t in $targets; do
        expect 0 "$b: $t" "$FUSEC" check $ex/$b.fdl --golden $G --target $t
        expect 0 "$b: $t, prefill 12 + decode" "$FUSEC" check $ex/$b.fdl --golden $G --target $t --split 12
    done
    if [ $neon = 1 ]; then
        expect 0 "$b: aarch64-neon (qemu), prefill 12 + decode" "$FUSEC" check $ex/$b.fdl --golden $G \
            --target aarch64-neon --split 12 --cc $XCC --run-with "qemu-aarch64 -L /usr/aarch64-linux-gnu"
    else
        bad "$b: aarch64-neon: no $XCC or qemu-aarch64"
    fi
done

# ---- 2. must fail ----------------------------------------------------------------
sed 's|scale = 1.0 / sqrt(24.0)|scale = 1.0 / sqrt(32.0)|' $ex/gemma3_layer.fdl >$tmp/g_scale.fdl
sed 's|1.0 + self_attn.q_norm.weight|self_attn.q_norm.weight|' $ex/gemma3_layer.fdl >$tmp/g_qnorm.fdl
# kh = rms_norm(k, w) * 0 + k: k_norm's weight still declared and bound
sed 's|self_attn.k_norm.weight, eps = 1e-6);|self_attn.k_norm.weight, eps = 1e-6) * 0.0 + reshape(linear(h, self_attn.k_proj.weight), [T, KVH, HD]);|' \
    $ex/qwen3_layer.fdl >$tmp/q_knorm.fdl
for f in g_scale:gemma3_layer g_qnorm:gemma3_layer; do
    expect 1 "must fail: ${f%%:*}" "$FUSEC" check $tmp/${f%%:*}.fdl --golden $D/${f#*:}.safetensors
done
if cmp -s $tmp/q_knorm.fdl $ex/qwen3_layer.fdl; then
    bad "must fail: q_knorm: the sed changed nothing"
else
    expect 1 "must fail: qwen3 without k_norm" "$FUSEC" check $tmp/q_knorm.fdl --golden $D/qwen3_layer.safetensors
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
