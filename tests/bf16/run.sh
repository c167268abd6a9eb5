#!/bin/sh
# tests/bf16/run.sh - --compute=bf16 (docs/quantization.md): linear's
# operands rounded to bf16 (nearest even), products summed in float32.
#
#  1. odd.fdl (every linear reads a block input, K = 67 and 300, N = 45, 13,
#     33, both layouts, bias/silu/residual/silu(g)*u epilogues): within 1e-5
#     of the float64 interpreter, which rounds the same float32 values, for
#     T = 1 (GEMV), 9, 17 and 300 (GEMM, K over one depth block) on every
#     target this machine runs, -O0, bf16 and f16 weights, NaN/Inf inputs,
#     and aarch64-neon under qemu when installed; x86-64-avx512-bf16
#     (vdpbf16ps) where the CPU has it; x86-64-spr's AMX kernels with the
#     tiles emulated in C (cc -DFU_AMX_EMULATE) on any CPU, on the tiles
#     where the CPU has AMX, else its clear error (no SIGILL).
#  2. The Llama and GPT-2 layers against the interpreter at rtol 1e-3: a
#     float32 operand that differs by an ulp from the interpreter's (after a
#     norm, attention, another linear) may round to the other bf16
#     neighbour, so the layers cannot match to 1e-5 (observed 1e-7..5e-4);
#     float32 compute is 4e-3 away, so missing rounding still fails.
#  3. The golden layers against Hugging Face's float64 outputs within 8.1e-3
#     (Hugging Face's own bf16 error): llama (f32 and bf16 checkpoints) and
#     GPT-2; the interpreter with --compute=bf16 is there too but not within
#     1e-5 (it does round).
#  4. Usage: --compute with an unknown type; --emit=ir marks the linears.
#
# Environment: FUSEC (default build/fusec), GOLDEN (default tests/golden/hf).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}"
ODD=tests/bf16/odd.fdl
LLAMA=dsl-examples/llama_layer.fdl
GPT2=dsl-examples/gpt2_block.fdl
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-bf16.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

# ---- 1. odd sizes, exact against the interpreter -----------------------------------------
for tg in generic x86-64-avx2 x86-64-avx512; do
    for T in 1 9 17 300; do
        expect 0 "odd.fdl: $tg, T=$T" "$FUSEC" check $ODD --random --compute=bf16 --target $tg --dim T=$T --seed $T
    done
done
expect 0 "odd.fdl: -O0, T=9" "$FUSEC" check $ODD --random --compute=bf16 -O0 --dim T=9
expect 0 "odd.fdl: bf16 weights (used as stored), x86-64-avx512, T=9" \
    "$FUSEC" check $ODD --random --compute=bf16 --weight-type='*.weight=bf16' --target x86-64-avx512 --dim T=9
expect 0 "odd.fdl: f16 weights (rounded to bf16), x86-64-avx2, T=3" \
    "$FUSEC" check $ODD --random --compute=bf16 --weight-type='*.weight=f16' --target x86-64-avx2 --dim T=3
expect_msg 0 "odd.fdl: NaN/Inf inputs, x86-64-avx512, T=17" "all matching" \
    "$FUSEC" check $ODD --random --compute=bf16 --special nan,inf,huge --target x86-64-avx512 --dim T=17
expect_msg 0 "odd.fdl: NaN/Inf inputs, generic, T=3" "all matching" \
    "$FUSEC" check $ODD --random --compute=bf16 --special nan,inf,huge --dim T=3
XCC=aarch64-linux-gnu-gcc
if command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    expect 0 "odd.fdl: aarch64-neon under qemu, T=9" \
        "$FUSEC" check $ODD --random --compute=bf16 --target aarch64-neon --cc $XCC \
        --run-with "qemu-aarch64 -L /usr/aarch64-linux-gnu" --dim T=9
else
    bad "aarch64-neon: no $XCC or qemu-aarch64 (scripts/install-deps.sh installs them)"
fi

# AVX512-BF16 (vdpbf16ps on k pairs) where this CPU has it
if grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then
    for T in 9 300; do
        expect 0 "odd.fdl: x86-64-avx512-bf16 (vdpbf16ps), T=$T" \
            "$FUSEC" check $ODD --random --compute=bf16 --target x86-64-avx512-bf16 --dim T=$T
    done
    expect_msg 0 "odd.fdl: x86-64-avx512-bf16, NaN/Inf inputs, T=17" "all matching" \
        "$FUSEC" check $ODD --random --compute=bf16 --special nan,inf,huge --target x86-64-avx512-bf16 --dim T=17
else
    echo "skip x86-64-avx512-bf16: this CPU has no AVX512-BF16"
fi
# AMX: the tile kernels with the tiles emulated in C (FU_AMX_EMULATE; every
# CPU), then for real where the CPU has AMX, else the clear error
EMU="${CC:-cc} -DFU_AMX_EMULATE"
for T in 9 40 300; do
    expect 0 "odd.fdl: x86-64-spr, AMX tiles emulated, T=$T" \
        env CC="$EMU" "$FUSEC" check $ODD --random --compute=bf16 --target x86-64-spr --dim T=$T
done
expect_msg 0 "odd.fdl: x86-64-spr, AMX emulated, NaN/Inf inputs, 3 threads, T=33" "all matching" \
    env CC="$EMU" FUSE_NUM_THREADS=3 "$FUSEC" check $ODD --random --compute=bf16 --special nan,inf,huge \
    --target x86-64-spr --dim T=33
if grep -qw amx_bf16 /proc/cpuinfo 2>/dev/null; then
    for T in 9 300; do
        expect 0 "odd.fdl: x86-64-spr on AMX, T=$T" \
            "$FUSEC" check $ODD --random --compute=bf16 --target x86-64-spr --dim T=$T
    done
else
    expect_msg 1 "x86-64-spr without AMX: a clear error, not SIGILL" "AMX: Linux refused the tile data state" \
        "$FUSEC" check $ODD --random --compute=bf16 --target x86-64-spr --dim T=9
fi

# ---- 2. the layers against the interpreter ------------------------------------------------
for f in $LLAMA $GPT2; do
    expect 0 "$(basename $f .fdl): generic, T=9" "$FUSEC" check $f --random --compute=bf16 --dim T=9 \
        --rtol 1e-3 --max-tol 5e-3
done
expect 0 "gpt2_block: x86-64-avx512, T=17, prefill + decode" "$FUSEC" check $GPT2 --random --compute=bf16 \
    --target x86-64-avx512 --dim T=17 --split 9 --rtol 1e-3 --max-tol 5e-3

expect 0 "llama_layer: -O0 --dim T=17" "$FUSEC" check $LLAMA --random --compute=bf16 -O0 --dim T=17 \
    --rtol 1e-3 --max-tol 5e-3
for f in $LLAMA $GPT2; do
    expect 0 "$(basename $f .fdl): x86-64-spr, AMX emulated, T=64, prefill + decode" \
        env CC="$EMU" "$FUSEC" check $f --random --compute=bf16 --target x86-64-spr --dim T=64 --split 40 \
        --rtol 1e-3 --max-tol 5e-3
done
if grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then
    for f in $LLAMA $GPT2; do
        expect 0 "$(basename $f .fdl): x86-64-avx512-bf16, T=40, prefill + decode" \
            "$FUSEC" check $f --random --compute=bf16 --target x86-64-avx512-bf16 --dim T=40 --split 20 \
            --rtol 1e-3 --max-tol 5e-3
    done
fi

# ---- 3. golden layers ---------------------------------------------------------------------
for tg in generic x86-64-avx512; do
    expect 0 "llama_layer golden, $tg: within 8.1e-3 of out64" \
        "$FUSEC" check $LLAMA --golden "$GOLDEN/llama_layer.safetensors" --compute=bf16 --target $tg \
        --rtol 8.1e-3 --max-tol 2e-2
done
expect 0 "llama_layer_bf16 golden (bf16 checkpoint), x86-64-avx512, prefill + decode" \
    "$FUSEC" check $LLAMA --golden "$GOLDEN/llama_layer_bf16.safetensors" --weight-type='*=bf16' --compute=bf16 \
    --target x86-64-avx512 --split 12 --rtol 8.1e-3 --max-tol 2e-2
expect 0 "llama_layer_bf16 golden, x86-64-spr, AMX emulated" \
    env CC="$EMU" "$FUSEC" check $LLAMA --golden "$GOLDEN/llama_layer_bf16.safetensors" --weight-type='*=bf16' \
    --compute=bf16 --target x86-64-spr --rtol 8.1e-3 --max-tol 2e-2
expect 0 "gpt2_block golden, x86-64-avx2" \
    "$FUSEC" check $GPT2 --golden "$GOLDEN/gpt2_block.safetensors" --compute=bf16 --target x86-64-avx2 \
    --rtol 8.1e-3 --max-tol 2e-2
expect 0 "llama_layer golden, the interpreter with --compute=bf16: within 8.1e-3" \
    "$FUSEC" check $LLAMA --golden "$GOLDEN/llama_layer.safetensors" --compute=bf16 --interp --rtol 8.1e-3 --max-tol 2e-2
expect 1 "... and not within 1e-5 (it rounds)" \
    "$FUSEC" check $LLAMA --golden "$GOLDEN/llama_layer.safetensors" --compute=bf16 --interp

# ---- 4. usage -----------------------------------------------------------------------------
expect_msg 2 "--compute with an unknown type" "expected f32 or bf16" \
    "$FUSEC" $ODD -o "$tmp/x.c" --compute=fp8
expect_msg 2 "fusec check --compute with an unknown type" "expected f32 or bf16" \
    "$FUSEC" check $ODD --random --compute=f16
expect_msg 0 "--emit=ir marks the linears" "{layout=out_in, compute=bf16}" \
    "$FUSEC" $ODD --emit=ir --compute=bf16
expect_msg 0 "q8_0 weights keep their arithmetic" "linear(%1, %7) {layout=out_in}" \
    "$FUSEC" $ODD --emit=ir --compute=bf16 --weight-type='c.weight=q8_0'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
