#!/bin/sh
# tests/quant/run.sh - weight types below float32 (docs/quantization.md).
#
#  1. `fusec quantize` against quant_ref.py, an independent numpy model of
#     llama.cpp's reference quantizers and of bf16/f16 rounding: byte for
#     byte, on odd row lengths, exact ties, all-zero blocks, scales near
#     float16's limits, and bf16/f16 sources; values a type cannot hold.
#  2. The reader refuses malformed quantized tensors (quant_ref.py malformed)
#     with a message naming the defect, and accepts the well-formed ones.
#  3. The bf16 golden layer (llama_layer_bf16.safetensors, w.* stored BF16)
#     through `fusec check --weight-type '*=bf16'`: within 1e-5 of out64 on
#     generic, AVX2, AVX-512, -O0 and prefill + decode.
#  4. Linear with bf16/f16/q8_0/q4_0 weights against the float64 interpreter
#     on exactly the stored values (random weights; odd.fdl: K = 45, 7 and
#     96, N = 13 and 5, T = 1 and 7) on every target (x86-64-avx512-bf16,
#     x86-64-spr, x86-64-avx2-vnni where this CPU has them), NEON and
#     NEON-dotprod under qemu when installed; types declared in the DSL (declared.fdl); the Llama layer with quantized projections; a checkpoint
#     quantized by `fusec quantize` run through `fusec check` (its error
#     against out64, the quantization's, is printed, bounded only loosely).
#     q8_0/q4_0 linears against quant_ref.py's numpy model of the quantized
#     activations (qlinear.fdl), and a reference without them, which fails.
#  5. Errors: a quantized weight where only linear's may be, an [in, out]
#     quantized weight, bad --weight-type values, a bf16 file on an f32 block.
#
# Environment: FUSEC (default build/fusec), GOLDEN (default tests/golden/hf).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}"
PY=/usr/bin/python3
REF=tests/quant/quant_ref.py
ODD=tests/quant/odd.fdl
LLAMA=dsl-examples/llama_layer.fdl
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-quant.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

# ---- 1. quantize vs numpy ------------------------------------------------------------
$PY $REF gen "$tmp/src.safetensors" || bad "quant_ref.py gen"
for t in q8_0 q4_0 bf16 f16; do
    if "$FUSEC" quantize "$tmp/src.safetensors" -o "$tmp/$t.safetensors" --type $t >"$tmp/log" 2>&1; then
        expect 0 "quantize --type $t: byte for byte as numpy's llama.cpp reference" \
            $PY $REF compare "$tmp/src.safetensors" "$tmp/$t.safetensors" $t
    else
        bad "quantize --type $t"
        sed 's/^/       /' "$tmp/log"
    fi
done
# a NaN cannot be quantized: an error naming the tensor, and no output file
$PY - "$tmp/nan.safetensors" <<'EOF'
import sys; sys.path.insert(0, "tests/quant"); import numpy as np, quant_ref as q
x = np.ones((2, 40), np.float32); x[1, 33] = np.nan
q.write_st(sys.argv[1], {"w": ("F32", [2, 40], x.tobytes())})
EOF
expect_msg 1 "quantize: NaN into q8_0 is an error" "'w'" \
    "$FUSEC" quantize "$tmp/nan.safetensors" -o "$tmp/nan_q.safetensors" --type q8_0
if [ -e "$tmp/nan_q.safetensors" ]; then bad "quantize: a failed run left its output"; else ok "quantize: a failed run writes nothing"; fi
expect_msg 2 "quantize: unknown --type" "--type" \
    "$FUSEC" quantize "$tmp/src.safetensors" -o "$tmp/x.safetensors" --type q5_1
expect_msg 1 "quantize: the output is never the input" "never overwrites its input" \
    "$FUSEC" quantize "$tmp/src.safetensors" -o "$tmp/src.safetensors" --type q8_0
# usage errors (exit 2, the mistake named), and tensors it cannot convert
# when asked to (exit 1, no output); -v names each conversion
src="$tmp/src.safetensors"
qusage() { # qusage NAME MESSAGE ARGS...
    name=$1 msg=$2
    shift 2
    expect_msg 2 "quantize: $name" "fusec quantize: error: $msg" "$FUSEC" quantize "$@"
}
qusage "-o without a file" "'-o' needs a file name" "$src" -o
qusage "--type without a value" "'--type' needs a value" "$src" -o "$tmp/u.safetensors" --type
qusage "unknown option" "unknown option '--frob'" "$src" -o "$tmp/u.safetensors" --type q8_0 --frob
qusage "two inputs" "more than one input file ('$src')" "$src" "$src" -o "$tmp/u.safetensors" --type q8_0
qusage "no input" "no input file" -o "$tmp/u.safetensors" --type q8_0
qusage "no output" "no output file: use -o OUT.safetensors" "$src" --type q8_0
qusage "no --type" "no --type (bf16, f16, q8_0 or q4_0)" "$src" -o "$tmp/u.safetensors"
globs=""
for i in $(seq 65); do globs="$globs x$i"; done
# shellcheck disable=SC2046,SC2086 # one --include=GLOB (--exclude=GLOB) per word
qusage "65 --include globs" "more than 64 --include globs" "$src" -o "$tmp/u.safetensors" --type q8_0 \
    $(printf -- '--include=%s ' $globs)
# shellcheck disable=SC2046,SC2086
qusage "65 --exclude globs" "more than 64 --exclude globs" "$src" -o "$tmp/u.safetensors" --type q8_0 \
    $(printf -- '--exclude=%s ' $globs)
[ -e "$tmp/u.safetensors" ] && bad "quantize: a usage error wrote an output" || ok "quantize: usage errors write nothing"
$PY - "$tmp/odd.safetensors" <<'EOF'
import sys; sys.path.insert(0, "tests/quant"); import numpy as np, quant_ref as q
q.write_st(sys.argv[1], {"pos": ("I32", [4], np.arange(4, dtype=np.int32).tobytes()),
                         "s": ("F32", [], np.float32(2).tobytes()),
                         "w": ("F32", [2, 32], np.ones((2, 32), np.float32).tobytes())})
EOF
expect_msg 1 "quantize: an i32 tensor asked for" "tensor 'pos' is I32: fusec quantize converts F32, BF16 and F16" \
    "$FUSEC" quantize "$tmp/odd.safetensors" -o "$tmp/odd_q.safetensors" --type q8_0 --include=pos
expect_msg 1 "quantize: a scalar asked for" "tensor 's' is a scalar: q8_0 needs rows" \
    "$FUSEC" quantize "$tmp/odd.safetensors" -o "$tmp/odd_q.safetensors" --type q8_0 --include=s
[ -e "$tmp/odd_q.safetensors" ] && bad "quantize: a refused tensor left an output" || ok "quantize: a refused tensor writes nothing"
expect_msg 0 "quantize -v: names the conversion, keeps the rest" "quantize: w: F32 -> BF16" \
    "$FUSEC" quantize -v "$tmp/odd.safetensors" -o "$tmp/odd_b.safetensors" --type bf16
grep -qF "1 tensors converted to bf16, 2 kept" "$tmp/log" && ok "quantize -v: the summary counts" \
    || { bad "quantize -v: the summary counts"; sed 's/^/       /' "$tmp/log"; }

# ---- 2. malformed quantized tensors -------------------------------------------------------
mkdir "$tmp/bad"
$PY $REF malformed "$tmp/bad" || bad "quant_ref.py malformed"
tab=$(printf '\t')
while IFS="$tab" read -r name msg; do
    expect_msg 1 "reader refuses a malformed quantized tensor: $name" "$msg" \
        "$FUSEC" quantize "$tmp/bad/bad_$name.safetensors" -o "$tmp/out.safetensors" --type bf16
done <"$tmp/bad/bad.txt"
for g in q8_0 q4_0; do
    expect 0 "reader accepts a well-formed $g tensor" \
        "$FUSEC" quantize "$tmp/bad/good_$g.safetensors" -o "$tmp/out.safetensors" --type bf16
done

# ---- 3. the bf16 golden layer ------------------------------------------------------------
B16=$GOLDEN/llama_layer_bf16.safetensors
for o in "--target generic" "--target x86-64-avx2" "--target x86-64-avx512" "-O0" \
         "--target x86-64-avx512 --split 12"; do
    # shellcheck disable=SC2086
    expect 0 "llama_layer_bf16: bf16 weights bound in place, f32 compute ($o)" \
        "$FUSEC" check $LLAMA --golden "$B16" --weight-type='*=bf16' $o
done
expect 0 "llama_layer_bf16: the interpreter on the bf16 values" \
    "$FUSEC" check $LLAMA --golden "$B16" --weight-type='*=bf16' --interp

# ---- 4. typed linears against the interpreter ---------------------------------------------
# the rows with VNNI/BF16/F16C where this CPU has them (x86-64-spr and
# x86-64-avx2-vnni: compiled by tests/targets where they cannot run)
lp=
grep -q avx512_vnni /proc/cpuinfo 2>/dev/null && grep -q avx512_bf16 /proc/cpuinfo && lp=x86-64-avx512-bf16
grep -q amx_int8 /proc/cpuinfo 2>/dev/null && lp="$lp x86-64-spr"
grep -q avx_vnni /proc/cpuinfo 2>/dev/null && lp="$lp x86-64-avx2-vnni"
best=${lp# }
best=${best%% *}
[ -n "$best" ] || best=x86-64-avx512
for t in q8_0 q4_0 bf16 f16; do
    for tg in generic x86-64-avx2 x86-64-avx512 $lp; do
        for T in 1 7; do
            expect 0 "odd.fdl: $t weights, $tg, T=$T" \
                "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" \
                --target $tg --dim T=$T --seed $T
        done
    done
done
# q8_0/q4_0: prefill (T > 8: rows in chunks of 32, dots 8 rows at a time;
# T = 45 is a full chunk, then 13 rows = 8 + 5) and special activations (a NaN or an infinity makes its row NaN, the
# interpreter says so too; huge and subnormal values quantize normally)
for t in q8_0 q4_0; do
    for tg in generic x86-64-avx2 $best; do
        for T in 12 45; do
            expect 0 "odd.fdl: $t weights, $tg, T=$T (prefill path)" \
                "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" --target $tg --dim T=$T --seed $T
        done
    done
    for sp in nan,inf huge,denormal; do
        for T in 1 7; do
            expect 0 "odd.fdl: $t weights, activations with $sp, $best T=$T" \
                "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" --target $best --dim T=$T \
                --special $sp --special-rate 0.05 --seed $T
        done
    done
    expect 0 "odd.fdl: $t weights, activations with nan,inf, generic T=7" \
        "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" --target generic --dim T=7 \
        --special nan,inf --special-rate 0.05
done
# q8_0/q4_0 prefill GEMM (int8 register tiles, AVX512-VNNI targets, AMX-int8
# on x86-64-spr: more than 8 rows; qgemm.fdl: several depth chunks, partial panels, padded
# blocks): odd T, T = 600 (two row chunks of at most 516), 1 and 3
# threads, prefill + decode, NaN/Inf rows (the whole row NaN, as the GEMV
# and the interpreter), huge/subnormal activations; the other targets run
# the same file through k_linear's dots
QG=tests/quant/qgemm.fdl
for t in q8_0 q4_0; do
    for T in 9 33 45 300 600; do
        for n in 1 3; do
            expect 0 "qgemm.fdl: $t weights, $best, T=$T, $n threads" \
                env FUSE_NUM_THREADS=$n "$FUSEC" check $QG --random --weight-type="[abc].weight=$t" \
                --target $best --dim T=$T --seed $T
        done
    done
    expect 0 "qgemm.fdl: $t weights, $best, T=45 prefill 37 + decode" \
        "$FUSEC" check $QG --random --weight-type="[abc].weight=$t" --target $best --dim T=45 --split 37
    for sp in nan,inf huge,denormal; do
        expect 0 "qgemm.fdl: $t weights, activations with $sp, $best T=45" \
            "$FUSEC" check $QG --random --weight-type="[abc].weight=$t" --target $best --dim T=45 \
            --special $sp --special-rate 0.0005 --seed 3
    done
    for tg in generic x86-64-avx2; do
        expect 0 "qgemm.fdl: $t weights, $tg, T=33" \
            "$FUSEC" check $QG --random --weight-type="[abc].weight=$t" --target $tg --dim T=33
    done
    # AMX-int8 (x86-64-spr: tdpbssd on 32 x 32 tiles) with the tiles emulated in C
    # (-DFU_AMX_EMULATE, as tests/bf16 does for tdpbf16ps), where the CPU runs x86-64-avx512-bf16
    case " $lp " in *" x86-64-avx512-bf16 "*) ;; *) continue ;; esac   # the spr row's AVX-512 parts
    for T in 9 45 600; do
        expect 0 "qgemm.fdl: $t weights, x86-64-spr, AMX-int8 tiles emulated, T=$T, 3 threads" \
            env CC="${CC:-cc} -DFU_AMX_EMULATE" FUSE_NUM_THREADS=3 "$FUSEC" check $QG --random \
            --weight-type="[abc].weight=$t" --target x86-64-spr --dim T=$T --seed $T
    done
    expect_msg 0 "qgemm.fdl: $t weights, x86-64-spr, AMX-int8 emulated, NaN/Inf rows, T=45" "all matching" \
        env CC="${CC:-cc} -DFU_AMX_EMULATE" "$FUSEC" check $QG --random --weight-type="[abc].weight=$t" \
        --target x86-64-spr --dim T=45 --special nan,inf --special-rate 0.0005 --seed 3
done
# q8_0/q4_0 against quant_ref.py's independent numpy model of the quantized
# activations (ties to even, an all-zero block, a subnormal scale): the
# interpreter, decode (T = 7), prefill + decode (T = 12, --split 9), NEON;
# a reference without the activations quantized must fail (error ~1e-2)
QL=tests/quant/qlinear.fdl
if $PY $REF linear "$tmp/ql7.safetensors" 7 && $PY $REF linear "$tmp/ql12.safetensors" 12 &&
    $PY $REF linear "$tmp/ql7p.safetensors" 7 plain; then
    for o in --interp "--target generic" "--target $best" "--target x86-64-avx2" -O0; do
        # shellcheck disable=SC2086
        expect 0 "qlinear.fdl: numpy's quantized activations, T=7 ($o)" \
            "$FUSEC" check $QL --golden "$tmp/ql7.safetensors" $o
    done
    for tg in generic $best; do
        expect 0 "qlinear.fdl: numpy's quantized activations, T=12 prefill 9 + decode ($tg)" \
            "$FUSEC" check $QL --golden "$tmp/ql12.safetensors" --target $tg --split 9
    done
    expect 1 "qlinear.fdl: unquantized activations are out of tolerance (the check can fail)" \
        "$FUSEC" check $QL --golden "$tmp/ql7p.safetensors" --target $best
else
    bad "quant_ref.py linear"
fi
# the rows this CPU cannot run: their int8 kernels compile cleanly
for tg in x86-64-spr x86-64-avx2-vnni x86-64-avx512-bf16; do
    case " $lp " in *" $tg "*) continue ;; esac
    if "$FUSEC" --target=$tg $ODD --weight-type='[ab].weight=q8_0' --weight-type='[cd].weight=q4_0' \
        -o "$tmp/qrow.c" >"$tmp/log" 2>&1 &&
        ${CC:-cc} -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iruntime -c "$tmp/qrow.c" -o "$tmp/qrow.o" \
            >>"$tmp/log" 2>&1; then
        ok "odd.fdl: q8_0/q4_0 on $tg compiles with -Werror (this CPU cannot run it)"
    else
        bad "odd.fdl: q8_0/q4_0 on $tg compiles with -Werror"
        head -20 "$tmp/log"
    fi
done
expect 0 "declared.fdl: q4_0, bf16, q8_0 declared in the DSL, T=2" \
    "$FUSEC" check tests/quant/declared.fdl --random --target x86-64-avx512 --dim T=2
expect_msg 0 "--weight-type overrides a declared type" 'weight "a.weight" : f32[13, 45]' \
    "$FUSEC" tests/quant/declared.fdl --emit=ir --weight-type='a.weight=f32'
expect 0 "odd.fdl: mixed types (bf16 norm and bias: converted), -O0" \
    "$FUSEC" check $ODD --random --weight-type='*=bf16' --weight-type='[ac].weight=q4_0' \
    --weight-type='b.weight=q8_0' --weight-type='d.weight=f16' -O0 --dim T=3
for t in q8_0 q4_0; do
    expect 0 "llama_layer: $t projections, x86-64-avx512, prefill + decode" \
        "$FUSEC" check $LLAMA --random --weight-type="*proj*=$t" --target x86-64-avx512 --dim T=5 --split 3
done
expect 0 "gpt2_block: bf16 [in, out] weights (layout in_out)" \
    "$FUSEC" check dsl-examples/gpt2_block.fdl --random --weight-type='*=bf16' --target x86-64-avx512 --dim T=3
XCC=aarch64-linux-gnu-gcc
if command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    for t in q8_0 q4_0 bf16 f16; do
        Ts=3
        case $t in q*) Ts="1 7" ;; esac
        for T in $Ts; do
            expect 0 "odd.fdl: $t weights, aarch64-neon under qemu, T=$T" \
                "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" \
                --target aarch64-neon --cc $XCC --run-with "qemu-aarch64 -L /usr/aarch64-linux-gnu" --dim T=$T
            expect 0 "odd.fdl: $t weights, aarch64-neon-dotprod under qemu -cpu max, T=$T" \
                "$FUSEC" check $ODD --random --weight-type="[abcd].weight=$t" --target aarch64-neon-dotprod \
                --cc $XCC --run-with "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu" --dim T=$T
        done
    done
    expect 0 "llama_layer: q8_0 through the GEMM kernels, --fuse-all, aarch64-neon-dotprod under qemu, T=12 prefill 10 + decode" \
        env FUSE_NUM_THREADS=2 "$FUSEC" check $LLAMA --random --weight-type='*proj.weight=q8_0' \
        --target aarch64-neon-dotprod --cc $XCC --run-with "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu" \
        --dim T=12 --split 10 --seed 5 --fuse-all   # seed 4: an activation-rounding flip (2e-3)
    [ -f "$tmp/ql12.safetensors" ] && for tg in aarch64-neon aarch64-neon-dotprod; do
        expect 0 "qlinear.fdl: numpy's quantized activations, T=12 prefill 9 + decode, $tg under qemu" \
            "$FUSEC" check $QL --golden "$tmp/ql12.safetensors" --target $tg --split 9 --cc $XCC \
            --run-with "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu"
    done
else
    echo "skip aarch64-neon: no $XCC or qemu-aarch64 (tests/targets/run.sh installs them)"
fi
# a checkpoint quantized by fusec quantize, through fusec check: the error
# against out64 is the quantization's (printed, not asserted: about 1.3e-2
# for q8_0 and 0.2 for q4_0 on this layer's random weights; bounded at 0.5
# only to catch a layout error, which gives about 1)
for t in q8_0 q4_0; do
    if "$FUSEC" quantize "$GOLDEN/llama_layer.safetensors" -o "$tmp/llama_$t.safetensors" --type $t \
        --include 'w.*proj.weight' >"$tmp/log" 2>&1; then
        expect 0 "llama_layer quantized to $t by fusec quantize: error vs out64 (reported)" \
            "$FUSEC" check $LLAMA --golden "$tmp/llama_$t.safetensors" --weight-type="*proj.weight=$t" \
            --target x86-64-avx512 --rtol 0.5 --max-tol 0.5
    else
        bad "quantize llama_layer to $t"
        sed 's/^/       /' "$tmp/log"
    fi
done

# Every weight type takes the GEMM emitter and its fusions, as float32 does:
# the norm prologue by default, the epilogues, the fused MLP where the cost
# model is overruled (--fuse-all); the same kernels as the f32 layer
# (q8_0/q4_0: emit_gemm.c's int8 stages, docs/gemm.md)
kernels() { # kernels ARGS...: the report's kernel kinds and ops, one line
    "$FUSEC" $LLAMA --emit=report --dim T=64 --target x86-64-avx512-bf16 "$@" 2>&1 |
        awk '/^[0-9]+ /{printf "%s %s; ", $2, $NF}'
}
for fa in "" --fuse-all; do
    f32=$(kernels $fa)
    for t in bf16 f16 q8_0 q4_0; do
        got=$(kernels $fa --weight-type="*proj.weight=$t")
        if [ -n "$f32" ] && [ "$got" = "$f32" ]; then
            ok "llama_layer: $t weights, the f32 layer's kernels ${fa:-(default)}: $got"
        else
            bad "llama_layer: $t weights, the f32 layer's kernels ${fa:-(default)}"
            echo "       f32: $f32"
            echo "       $t: $got"
        fi
    done
done
expect_msg 0 "llama_layer: q8_0 weights keep the norm prologue of q/k/v" "rms_norm,linear,linear,linear" \
    "$FUSEC" $LLAMA --emit=report --dim T=64 --weight-type="*proj.weight=q8_0" --target x86-64-avx512
expect_msg 0 "llama_layer: q4_0 weights can take the fused MLP kernel" "rms_norm,linear,silu,linear,mul,linear,add" \
    "$FUSEC" $LLAMA --emit=report --dim T=64 --weight-type="*proj.weight=q4_0" --target generic --fuse-all
# q8_0/q4_0 through the GEMM kernels (norm prologue, SiLU*up and residual
# epilogues, the fused MLP with its pieces on 3 threads) against the
# interpreter: decode (T = 1, 7) and prefill (45; 300) on every x86 row here
# and x86-64-spr with emulated AMX-int8 tiles.  Fixed seeds: where a kernel's
# float activation and the interpreter's differ by a rounding, a quantized
# value can land one step apart (docs/quantization.md; about 3 per 10^5
# here, so most seeds at T = 300, with 1200 quantized activations a row, hit
# one: rel_l2 ~2e-4); T = 300 is checked at rtol 2e-3, which every seed
# tried passes and a wrong block, panel, scale or epilogue does not.
for t in q8_0 q4_0; do
    for fa in "" --fuse-all; do
        Ts="1 7 45"
        [ -z "$fa" ] && Ts="1 45"
        for T in $Ts; do
            expect 0 "llama_layer: $t, GEMM kernels ${fa:-(default)}, $best, T=$T, 3 threads" \
                env FUSE_NUM_THREADS=3 "$FUSEC" check $LLAMA --random --weight-type="*proj.weight=$t" \
                --target $best --dim T=$T --seed 4 $fa
        done
    done
    expect 0 "llama_layer: $t, --fuse-all, $best, T=300 (rtol 2e-3), 2 threads" \
        env FUSE_NUM_THREADS=2 "$FUSEC" check $LLAMA --random --weight-type="*proj.weight=$t" \
        --target $best --dim T=300 --seed 4 --fuse-all --rtol 2e-3 --max-tol 2e-2
    for tg in generic x86-64-avx2 x86-64-avx512; do
        expect 0 "llama_layer: $t, --fuse-all, $tg, T=45 prefill 38 + decode" \
            "$FUSEC" check $LLAMA --random --weight-type="*proj.weight=$t" --target $tg --dim T=45 \
            --split 38 --seed 4 --fuse-all
    done
    expect_msg 0 "llama_layer: $t, --fuse-all, NaN/Inf rows, $best T=45" "all matching" \
        "$FUSEC" check $LLAMA --random --weight-type="*proj.weight=$t" --target $best --dim T=45 \
        --special nan,inf --special-rate 0.0005 --seed 3 --fuse-all
    case " $lp " in *" x86-64-avx512-bf16 "*) ;; *) continue ;; esac   # the spr row's AVX-512 parts
    for T in 9 45; do
        expect 0 "llama_layer: $t, --fuse-all, x86-64-spr, AMX-int8 emulated, T=$T, 3 threads" \
            env CC="${CC:-cc} -DFU_AMX_EMULATE" FUSE_NUM_THREADS=3 "$FUSEC" check $LLAMA --random \
            --weight-type="*proj.weight=$t" --target x86-64-spr --dim T=$T --seed 4 --fuse-all
    done
done

# the other epilogues on a q8_0/q4_0 tile: RoPE (attention fusion off, so
# rope joins the q/k GEMM), Qwen3's per-head q/k norms, BERT's biases and GELU
qchk() { # qchk NAME ARGS...
    name=$1
    shift
    expect 0 "$name" env FUSE_NUM_THREADS=3 "$FUSEC" check --random --seed 4 "$@"
}
qchk "llama_layer: q8_0, RoPE on the GEMM tile, x86-64-avx2, T=45" $LLAMA --weight-type='*proj.weight=q8_0' \
    --no-fuse=attention --target x86-64-avx2 --dim T=45
qchk "llama_layer: q4_0, RoPE on the GEMM tile, $best, T=45 prefill 40 + decode" $LLAMA \
    --weight-type='*proj.weight=q4_0' --no-fuse=attention --target $best --dim T=45 --split 40
qchk "qwen3_layer: q8_0, per-head norms on the GEMM tile, $best, T=45" dsl-examples/qwen3_layer.fdl \
    --weight-type='*proj.weight=q8_0' --target $best --dim T=45
qchk "qwen3_layer: q4_0, per-head norms, generic, T=9" dsl-examples/qwen3_layer.fdl \
    --weight-type='*proj.weight=q4_0' --target generic --dim T=9
qchk "bert_layer: q8_0, bias and GELU epilogues, $best, T=45" dsl-examples/bert_layer.fdl \
    --weight-type='*[ye].weight=q8_0' --target $best --dim T=45
qchk "bert_layer: q4_0, bias and GELU epilogues, generic, T=9" dsl-examples/bert_layer.fdl \
    --weight-type='*[ye].weight=q4_0' --target generic --dim T=9

# ---- 5. errors -----------------------------------------------------------------------------
expect_msg 1 "a q8_0 norm weight is an error" "can only be the weight of 'linear'" \
    "$FUSEC" $ODD -o "$tmp/x.c" --weight-type='n.weight=q8_0'
expect_msg 1 "a q4_0 [in, out] weight is an error" "needs layout \"out_in\"" \
    "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/x.c" --weight-type='*c_fc.weight=q4_0'
expect_msg 2 "--weight-type with an unknown type" "unknown weight type" \
    "$FUSEC" $ODD -o "$tmp/x.c" --weight-type='*=q5_1'
expect_msg 2 "--weight-type without =" "PATTERN=TYPE" \
    "$FUSEC" $ODD -o "$tmp/x.c" --weight-type=q8_0
expect_msg 1 "a bf16 checkpoint on an f32 block" "has dtype BF16, expected F32" \
    "$FUSEC" check $LLAMA --golden "$B16"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
