#!/bin/sh
# tests/fusion/run.sh - the fusion passes end to end.
#
#  1. kernel counts and kinds, pinned per example, fused and unfused (-O0),
#     and with each pass turned off (--no-fuse);
#  2. attention and RMSNorm written from primitives fuse into the same
#     kernels as the builtins (the "kernel N: kind [ops]" lines of --explain);
#  3. --explain names what each kernel absorbed and every refusal's reason;
#     --emit=report and --emit=dot work and fusion saves traffic;
#  4. fused, unfused and the float64 interpreter agree: fusec check on the
#     golden layers (all rows, and prefill + decode through the KV cache) and
#     on random data for T = 1, 7, 64 and blocks of odd sizes, -O0 and
#     default, with passes turned off, on more threads (the decode split of
#     the attention kernel) and on the AVX2 target when the CPU has it.
#
# Environment: FUSEC (default build/fusec), GOLDEN (the folder of golden .safetensors files, default tests/golden/hf).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}"
# every rewrite pass checks, after each rewrite, that no node before the
# point it resumes at would now match or be noted differently (schedule.c)
export FUSEC_CHECK_REWRITES=1
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-fusion.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

ex=dsl-examples
fx=tests/fusion

# ---- 1. kernel counts ------------------------------------------------------------

# The pins below are what each pass can do (--fuse-all: every legal fusion);
# what the cost model then keeps is pinned after them (default_kinds).
# kinds FILE [OPTIONS...]: the kernel kinds in order, e.g. "gemm attention gemm mlp"
kinds() {
    "$FUSEC" --explain --fuse-all "$@" 2>/dev/null | sed -n 's/^kernel [0-9]*: \([a-z]*\) .*/\1/p' | tr '\n' ' ' | sed 's/ $//'
}
# counts FILE [OPTIONS...]: "fused unfused"
counts() {
    "$FUSEC" --explain --fuse-all "$@" 2>/dev/null | sed -n '1s/.*: \([0-9]*\) kernels* (unfused: \([0-9]*\)).*/\1 \2/p'
}

expect_counts() {
    want=$1
    shift
    got=$(counts "$@")
    if [ "$got" = "$want" ]; then ok "kernels (fused unfused) $want: $*"; else bad "kernels of $*: want '$want', got '$got'"; fi
}
expect_kinds() {
    want=$1
    shift
    got=$(kinds "$@")
    if [ "$got" = "$want" ]; then ok "kinds '$want': $*"; else bad "kinds of $*: want '$want', got '$got'"; fi
}

expect_counts "4 18" $ex/llama_layer.fdl
expect_counts "4 15" $ex/gpt2_block.fdl
expect_counts "4 36" $ex/llama_layer_prim.fdl
expect_counts "4 18" $fx/odd_llama.fdl
expect_counts "4 36" $fx/odd_llama_prim.fdl
expect_counts "4 15" $fx/odd_gpt2.fdl
expect_counts "4 27" $fx/patterns.fdl
expect_counts "5 8" $fx/refusals.fdl
expect_counts "18 18" $ex/llama_layer.fdl -O0
expect_counts "36 36" $ex/llama_layer_prim.fdl -O0
expect_counts "15 15" $ex/gpt2_block.fdl -O0

expect_kinds "gemm attention gemm mlp" $ex/llama_layer.fdl
expect_kinds "gemm attention gemm mlp" $ex/gpt2_block.fdl
expect_kinds "gemm attention gemm mlp" $ex/llama_layer_prim.fdl
expect_kinds "rowwise rowwise rowwise rowwise" $fx/patterns.fdl
# per-head q/k RMSNorm (Qwen3) joins the projection GEMM; without the
# epilogue pass it stays a row pass per norm
expect_kinds "gemm attention gemm mlp" $ex/qwen3_layer.fdl
expect_counts "4 20" $ex/qwen3_layer.fdl
expect_kinds "gemm gemm attention gemm mlp" $fx/odd_qknorm.fdl
# weight-only ops are folded at bind time: Gemma-3's six 1 + w leave the
# schedule (FUSEC_FOLD=0 and -O0 keep them as per-call kernels)
expect_counts "6 28" $ex/gemma3_layer.fdl
FUSEC_FOLD=0 expect_counts "12 28" $ex/gemma3_layer.fdl
expect_counts "3 24" $fx/fold.fdl
# bf16 norm weights: their conversion to f32 folds too
expect_counts "6 34" $ex/gemma3_layer.fdl --weight-type='*norm.weight=bf16'
expect_kinds "gemm rowwise rowwise single single rowwise attention single single mlp" $fx/odd_qknorm.fdl --no-fuse=epilogue
# one pass off at a time
expect_kinds "single gemm attention gemm mlp" $ex/llama_layer.fdl --no-fuse=norm
expect_kinds "gemm attention single single mlp" $ex/llama_layer.fdl --no-fuse=epilogue
expect_kinds "gemm single single single gemm mlp" $ex/llama_layer.fdl --no-fuse=attention
expect_kinds "gemm attention gemm gemm gemm" $ex/llama_layer.fdl --no-fuse=mlp
expect_kinds "gemm attention gemm mlp" $ex/llama_layer.fdl --no-fuse=elementwise,softmax
expect_kinds "gemm single single single single single single gemm mlp" $ex/gpt2_block.fdl --no-fuse=attention
expect_kinds "gemm single single single single single gemm rowwise gemm single gemm mlp" \
    $ex/llama_layer_prim.fdl --no-fuse=attention
expect_counts "13 18" $ex/llama_layer.fdl --no-fuse=norm,epilogue,mlp
expect_counts "18 18" $ex/llama_layer.fdl --no-fuse=elementwise,norm,epilogue,softmax,attention,mlp
# what the cost model keeps by default (cost.c: the fused MLP does not pay
# at T = 512 and gains nothing at T = 1; cheap epilogues stay fused)
default_kinds() {
    got=$("$FUSEC" --explain "$@" 2>/dev/null | sed -n 's/^kernel [0-9]*: \([a-z]*\) .*/\1/p' | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" = "$want" ]; then ok "default kinds '$want': $*"; else bad "default kinds of $*: want '$want', got '$got'"; fi
}
want="gemm attention gemm gemm gemm" default_kinds $ex/llama_layer.fdl
want="gemm attention gemm gemm gemm" default_kinds $ex/gpt2_block.fdl
want="gemm attention gemm gemm gemm" default_kinds $ex/gpt2_block.fdl --target=x86-64-avx512
want="gemm attention gemm gemm gemm" default_kinds $ex/llama_layer.fdl --target=x86-64-avx512
want="gemm attention gemm mlp" default_kinds $ex/llama_layer.fdl --fuse-all

# ---- 2. primitives fuse like the builtins ------------------------------------------

same_kernels() {
    "$FUSEC" --explain "$1" | grep '^kernel ' >"$tmp/a"
    "$FUSEC" --explain "$2" | grep '^kernel ' >"$tmp/b"
    if [ -s "$tmp/a" ] && diff "$tmp/a" "$tmp/b" >"$tmp/d"; then
        ok "same fused kernels: $1 and $2"
    else
        bad "different fused kernels: $1 and $2"
        sed 's/^/       /' "$tmp/d"
    fi
}
same_kernels $ex/llama_layer.fdl $ex/llama_layer_prim.fdl
same_kernels $fx/odd_llama.fdl $fx/odd_llama_prim.fdl

# ---- 3. explain, report, dot -------------------------------------------------------

expect_text() {
    what=$1
    pattern=$2
    shift 2
    if "$FUSEC" "$@" >"$tmp/out" 2>&1 && grep -q -- "$pattern" "$tmp/out"; then
        ok "$what"
    else
        bad "$what: no '$pattern' in the output of fusec $*"
        head -20 "$tmp/out" | sed 's/^/       /'
    fi
}
expect_text "explain: primitive attention recognised" "recognised as attention(q, keys, values, heads=8, kv_heads=2, head_dim=32)" \
    --explain $ex/llama_layer_prim.fdl
expect_text "explain: primitive rms_norm recognised" "recognised as rms_norm(hidden_states, input_layernorm.weight)" \
    --explain $ex/llama_layer_prim.fdl
expect_text "explain: the norm prologue is never stored" "h is normalised as the GEMM reads it, never stored" \
    --explain $ex/llama_layer.fdl
expect_text "explain: absorbed operators listed" "absorbs: %15 rope (q), %17 rope (k), %19 append (keys), %20 append (values), %21 attention (attn)" \
    --explain $ex/llama_layer.fdl
expect_text "explain: the MLP intermediate is never stored" "the \[rows, 704\] intermediate is never stored" \
    --explain --fuse-all $ex/llama_layer.fdl
expect_text "explain: the cost model's verdict on the MLP" \
    "mlp: the MLP ending in m as one kernel: not fused, it does not pay (cost: decode .* prefill .*generic, 1 thread)" \
    --explain $ex/llama_layer.fdl
expect_text "report: predicted times" "^fused .* ms$" --emit=report $ex/llama_layer.fdl --dim T=512
expect_text "explain: stored intermediate with 4 consumers" "a joins p's row pass but is stored: it has 4 consumers" \
    --explain $fx/patterns.fdl
expect_text "explain: refused MLP names the consumers" "mlp: u is not fused into one MLP kernel with y: u has 2 consumers" \
    --explain $fx/refusals.fdl
expect_text "explain: refused prologue names the reason" "norm: h is read by h (output), not only by linear layers" \
    --explain $fx/refusals.fdl
expect_text "explain: stored elementwise intermediate" "elementwise: t is stored although its loop also consumes it: t has 2 consumers" \
    --explain $fx/refusals.fdl
expect_text "explain: recomputing would be cheaper" "recomputing t (mul) in its other consumer would move fewer bytes" \
    --explain $fx/refusals.fdl
# a's rewrite removes nodes before the refused b: b is noted under its
# number before and after it, as a scan from the start after every rewrite gives
expect_text "explain: refused rewrite under its first number" "softmax(q k^T) v at %18 is not rewritten: the scores are scaled" \
    --explain $fx/rewrite_order.fdl
expect_text "explain: refused rewrite under its number after a rewrite" "softmax(q k^T) v at %13 is not rewritten: the scores are scaled" \
    --explain $fx/rewrite_order.fdl
expect_text "explain: q_norm joins the q projection's GEMM" \
    "epilogue: qh (rms_norm over each 32-wide head of %16) joins the GEMM" --explain $ex/qwen3_layer.fdl
expect_text "explain: the q/k norms are stored, the projections not" \
    "stores: %18 rms_norm (qh), %21 rms_norm (kh), %26 linear (v)$" --explain $ex/qwen3_layer.fdl
expect_text "explain: Gemma's 1 + w folded" \
    "fold: %18 = add(1, input_layernorm.weight) (256 floats) is computed once when the weights are bound" \
    --explain $ex/gemma3_layer.fdl
expect_text "explain: too large to fold" "fold: %34 (mul of weights) is computed at every call: the folded values would pass 65536 floats" \
    --explain $fx/fold.fdl
expect_text "explain: -O0 fuses nothing" "fusion is off or found nothing to fuse" --explain -O0 $ex/llama_layer.fdl
expect_text "report: totals fused vs unfused" "^unfused *18 " --emit=report $ex/llama_layer.fdl --dim T=512
expect_text "report: traffic saved" "^saved: [1-9][0-9]* bytes" --emit=report $ex/llama_layer.fdl --dim T=1 --dim P=1024
expect_text "dot: both graphs" "subgraph cluster_a_k3" --emit=dot $ex/llama_layer.fdl
expect_text "dot: before fusion" "before fusion: llama_layer, 18 kernels" --emit=dot $ex/llama_layer.fdl
# the Llama-3.2-1B figures of docs/fusion.md
expect_text "report: llama_1b decode fused bytes" "^fused *4 .* 247570436 " --emit=report --fuse-all $fx/llama_1b.fdl --dim T=1 --dim P=1024
expect_text "report: llama_1b decode unfused bytes" "^unfused *18 .* 247951368 " --emit=report $fx/llama_1b.fdl --dim T=1 --dim P=1024
expect_text "report: llama_1b prefill fused bytes" "^fused *4 .* 289425408 " --emit=report --fuse-all $fx/llama_1b.fdl --dim T=512
expect_text "report: llama_1b prefill unfused bytes" "^unfused *18 .* 484462592 " --emit=report $fx/llama_1b.fdl --dim T=512
expect_text "report: llama_1b_prim prefill unfused bytes" "^unfused *36 .* 815837184 " --emit=report $fx/llama_1b_prim.fdl --dim T=512
same_kernels $fx/llama_1b.fdl $fx/llama_1b_prim.fdl
# refused as bad usage (exit 2, the message saying why), not by a crash
refused() { # refused NAME REGEX ARGS...
    name=$1 re=$2
    shift 2
    "$FUSEC" "$@" >"$tmp/log" 2>&1
    got=$?
    if [ $got -eq 2 ] && grep -Eq -- "$re" "$tmp/log"; then
        ok "$name"
    else
        bad "$name (exit $got, expected 2 and '$re')"
        sed 's/^/       /' "$tmp/log" | head -10
    fi
}
refused "report without --dim T is refused" "error: --emit=report needs --dim T=VALUE" \
    --emit=report $ex/llama_layer.fdl
refused "--no-fuse=bogus is refused" "error: --no-fuse: expected names from .*, got 'bogus'" \
    --explain --no-fuse=bogus $ex/llama_layer.fdl

# ---- 4. numbers: fused, unfused and the interpreter agree ---------------------------

check() {
    what=$1
    shift
    if "$FUSEC" check "$@" >"$tmp/log" 2>&1; then
        ok "$what"
    else
        bad "$what: fusec check $*"
        tail -8 "$tmp/log" | sed 's/^/       /'
    fi
}

g=$GOLDEN
if [ -f "$g/llama_layer.safetensors" ] && [ -f "$g/gpt2_block.safetensors" ]; then
    for b in llama_layer llama_layer_prim gpt2_block; do
        st=$b
        [ $b = llama_layer_prim ] && st=llama_layer
        check "golden $b" $ex/$b.fdl --golden "$g/$st.safetensors"
        check "golden $b, prefill 12 + decode" $ex/$b.fdl --golden "$g/$st.safetensors" --split 12
        check "golden $b -O0, prefill 12 + decode" $ex/$b.fdl --golden "$g/$st.safetensors" --split 12 -O0
    done
else
    bad "golden files missing under $g"
fi

for b in llama_layer llama_layer_prim gpt2_block; do
    for T in 1 7 64; do
        check "random $b T=$T" $ex/$b.fdl --random --dim T=$T
        check "random $b T=$T -O0" $ex/$b.fdl --random --dim T=$T -O0
    done
done
for T in 1 7 64; do
    check "random qwen3_layer T=$T" $ex/qwen3_layer.fdl --random --dim T=$T
done
for T in 1 7; do
    check "random fold T=$T" $fx/fold.fdl --random --dim T=$T
done
check "random fold T=7 -O0" $fx/fold.fdl --random --dim T=7 -O0
check "random gemma3_layer T=20, prefill 9 + decode" $ex/gemma3_layer.fdl --random --dim T=20 --split 9
FUSEC_FOLD=0 check "random gemma3_layer T=7 without folding" $ex/gemma3_layer.fdl --random --dim T=7
check "random gemma3_layer T=7, bf16 norm weights, prefill 3 + decode" $ex/gemma3_layer.fdl --random --dim T=7 \
    --split 3 --weight-type='*norm.weight=bf16'
check "random gemma3_layer T=7, f16 norm weights -O0" $ex/gemma3_layer.fdl --random --dim T=7 -O0 \
    --weight-type='*norm.weight=f16'
check "random qwen3_layer T=20 -O0, prefill 9 + decode" $ex/qwen3_layer.fdl --random --dim T=20 --split 9 -O0
FUSE_NUM_THREADS=3 check "random qwen3_layer T=20, prefill 9 + decode, 3 threads" $ex/qwen3_layer.fdl \
    --random --dim T=20 --split 9
# the head norms on extreme rows (2^66, 2^-140: squares beyond float) and NaN/Inf
for k in nan,inf bigrow tinyrow huge,denormal; do
    check "random odd_qknorm T=17 --special $k" $fx/odd_qknorm.fdl --random --dim T=17 --special $k --special-rate 0.2
done
for b in odd_llama odd_llama_prim odd_gpt2 odd_qknorm patterns refusals; do
    check "random $b T=1" $fx/$b.fdl --random --dim T=1
    check "random $b T=13" $fx/$b.fdl --random --dim T=13
    check "random $b T=13 -O0" $fx/$b.fdl --random --dim T=13 -O0
done
check "random rewrite_order T=9" $fx/rewrite_order.fdl --random --dim T=9
check "random patterns T=50 (fully masked rows)" $fx/patterns.fdl --random --dim T=50
for p in elementwise norm epilogue softmax attention mlp; do
    check "random llama_layer_prim T=7 --no-fuse=$p" $ex/llama_layer_prim.fdl --random --dim T=7 --no-fuse $p
done
# without GEMM kernels the norms become row passes with the residual add as prologue
FUSEC_GEMM_KINDS=0 check "golden gpt2_block without GEMM kinds, prefill 7 + decode" $ex/gpt2_block.fdl \
    --golden "$g/gpt2_block.safetensors" --split 7
FUSEC_GEMM_KINDS=0 check "random odd_llama T=13 without GEMM kinds" $fx/odd_llama.fdl --random --dim T=13
check "random gpt2_block T=7 --no-fuse=norm,epilogue,mlp" $ex/gpt2_block.fdl --random --dim T=7 --no-fuse norm,epilogue,mlp
# decode with more threads than kv heads: the attention kernel splits the cache
FUSE_NUM_THREADS=4 check "random llama_layer T=40, prefill 2 + decode, 4 threads" \
    $ex/llama_layer.fdl --random --dim T=40 --split 2
FUSE_NUM_THREADS=3 check "random odd_llama_prim T=37, prefill 5 + decode, 3 threads" \
    $fx/odd_llama_prim.fdl --random --dim T=37 --split 5
if grep -q avx2 /proc/cpuinfo 2>/dev/null && grep -q fma /proc/cpuinfo 2>/dev/null; then
    FUSE_NUM_THREADS=2 check "random odd_llama T=13 avx2" $fx/odd_llama.fdl --random --dim T=13 --target x86-64-avx2
    FUSE_NUM_THREADS=2 check "random odd_gpt2 T=29 avx2, prefill 3 + decode" $fx/odd_gpt2.fdl --random --dim T=29 \
        --target x86-64-avx2 --split 3
    FUSE_NUM_THREADS=2 check "random patterns T=50 avx2" $fx/patterns.fdl --random --dim T=50 --target x86-64-avx2
    FUSE_NUM_THREADS=2 check "random odd_qknorm T=29 avx2, prefill 3 + decode" $fx/odd_qknorm.fdl --random --dim T=29 \
        --target x86-64-avx2 --split 3
else
    echo "skip AVX2 checks: the CPU has no AVX2+FMA"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
