#!/bin/sh
# tests/ops/run.sh - the integer, comparison and indexing ops (issue 12, item 1):
# cast, lt/le/gt/ge/eq/ne and where, embedding and gather, topk and argmax,
# positions from the cache offset (docs/language.md).
#
#  1. Against PyTorch: ops.fdl's select, select_k and embed blocks on the
#     inputs and float64 PyTorch outputs committed in tests/ops/*.safetensors
#     (gen_ref.py; no torch needed here): ties, NaN, +-inf, values outside
#     int32.  The interpreter, -O0, the widest x86 target this CPU runs and
#     NEON under qemu (the kernels are the same scalar C on every target;
#     section 3 runs each target against the interpreter).
#  2. Ids out of range: `fusec check` on bad_ids.safetensors fails with
#     FR_EINDEX's message (generated code) and the interpreter's; ids_main.c
#     (the table malloc'ed to its size, ASan with SAN=1) expects FR_EINDEX
#     naming each bad id of embedding and gather.
#  3. Against the interpreter (--random): ops.fdl's mixed block (every op,
#     odd sizes, a bf16 table) at T = 1, prefill 5 + decode, NaN/inf/huge;
#     moves (i32 through transpose, reshape, slice, concat; a tied bf16 table);
#     llama_embed.fdl (ids -> embedding -> a Llama layer with in-block
#     positions -> argmax of tied logits), prefill + decode.
#  4. Against Hugging Face: llama_pos.fdl (the golden Llama layer with
#     positions(hidden_states) instead of a position_ids input), prefill 5 +
#     decode, -O0 and the widest target.
#
# Environment: FUSEC (build/fusec), GOLDEN (tests/golden/hf), CC,
# FUSEC_LIB_DIR (build), SAN=1 (ids_main built with ASan + UBSan).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
PY=/usr/bin/python3
D=tests/ops
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-ops.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

# expect_msg TEXT NAME CMD...: CMD must fail (exit 1) and print TEXT.
expect_msg() {
    text=$1 name=$2
    shift 2
    "$@" >"$tmp/log" 2>&1
    got=$?
    if [ "$got" -eq 1 ] && grep -qF "$text" "$tmp/log"; then
        ok "$name"
    else
        bad "$name (exit $got, expected 1 and '$text')"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
}

targets=generic
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && targets="$targets x86-64-avx2"
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
    targets="$targets x86-64-avx512"
XCC=aarch64-linux-gnu-gcc
QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
best=${targets##* }     # the widest target this CPU runs: the PyTorch and HF checks use it and -O0
neon=0
command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 && neon=1

# ---- 1. against PyTorch ------------------------------------------------------------
for b in select select_k embed; do
    G=$D/$b.safetensors
    expect 0 "$b: interpreter vs PyTorch" "$FUSEC" check $D/ops.fdl --block $b --golden "$G" --interp
    expect 0 "$b: -O0 generic vs PyTorch" "$FUSEC" check $D/ops.fdl --block $b --golden "$G" -O0
    expect 0 "$b: $best vs PyTorch, 3 threads" env FUSE_NUM_THREADS=3 "$FUSEC" check $D/ops.fdl --block $b \
        --golden "$G" --target $best
    [ $neon = 1 ] && expect 0 "$b: aarch64-neon vs PyTorch (qemu)" "$FUSEC" check $D/ops.fdl --block $b \
        --golden "$G" --target aarch64-neon --cc $XCC --run-with "$QEMU"
done
[ $neon = 1 ] || bad "aarch64-neon: no $XCC or qemu-aarch64 (scripts/install-deps.sh installs them)"

# ---- 2. ids out of range -------------------------------------------------------------
msg="embedding: id 7 at element 3 of 'ids' is outside [0, 7) (the rows of 'table') (index out of range, code -13)"
expect_msg "$msg" "embed, id 7 of 7 rows: FR_EINDEX from forward" "$FUSEC" check $D/ops.fdl --block embed \
    --golden $D/bad_ids.safetensors --target generic
expect_msg "%3 (embedding): id 7 at element 3 is outside [0, 7)" "embed, id 7 of 7 rows: the interpreter refuses it" \
    "$FUSEC" check $D/ops.fdl --block embed --golden $D/bad_ids.safetensors --interp
flags="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g -Wall -Wextra -Werror"
[ "$SAN" = 1 ] && flags="$flags -fsanitize=address,undefined -fno-sanitize-recover=undefined"
for t in $targets; do
    if "$FUSEC" --target $t $D/ids.fdl -o "$tmp/ids.c" >"$tmp/log" 2>&1 &&
        # shellcheck disable=SC2086
        $CC $flags -Iruntime -I"$tmp" $D/ids_main.c "$tmp/ids.c" "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread \
            -o "$tmp/ids_main" >>"$tmp/log" 2>&1; then
        expect 0 "ids_main ($t, 2 threads): FR_EINDEX for each bad id, no read past the table" \
            env FUSE_NUM_THREADS=2 "$tmp/ids_main"
    else
        bad "ids_main ($t): build failed"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
done

# ---- 3. against the interpreter --------------------------------------------------------
for t in $targets; do
    expect 0 "mixed: $t, T=1" "$FUSEC" check $D/ops.fdl --block mixed --random --dim T=1 --target $t
    expect 0 "mixed: $t, prefill 5 + decode, T=13, 3 threads" env FUSE_NUM_THREADS=3 "$FUSEC" check $D/ops.fdl \
        --block mixed --random --dim T=13 --split 5 --target $t
    expect 0 "mixed: $t, nan/inf/huge, T=9" "$FUSEC" check $D/ops.fdl --block mixed --random --dim T=9 \
        --special nan,inf,huge --special-rate 0.05 --target $t
    expect 0 "llama_embed: $t, prefill 6 + decode, T=11" "$FUSEC" check $D/llama_embed.fdl --random --dim T=11 \
        --split 6 --target $t
done
expect 0 "moves: $best, T=5" "$FUSEC" check $D/ops.fdl --block moves --random --dim T=5 --target $best
expect 0 "moves: -O0, T=5" "$FUSEC" check $D/ops.fdl --block moves --random --dim T=5 -O0
expect 0 "mixed: -O0, prefill 5 + decode, T=13" "$FUSEC" check $D/ops.fdl --block mixed --random --dim T=13 \
    --split 5 -O0
[ $neon = 1 ] && expect 0 "mixed: aarch64-neon (qemu), prefill 5 + decode, T=13" "$FUSEC" check $D/ops.fdl \
    --block mixed --random --dim T=13 --split 5 --target aarch64-neon --cc $XCC --run-with "$QEMU"
[ $neon = 1 ] && expect 0 "llama_embed: aarch64-neon (qemu), prefill 6 + decode, T=11" "$FUSEC" check \
    $D/llama_embed.fdl --random --dim T=11 --split 6 --target aarch64-neon --cc $XCC --run-with "$QEMU"

# ---- 4. positions in the block against Hugging Face ------------------------------------------
if $PY $D/drop.py "$GOLDEN/llama_layer.safetensors" "$tmp/llama.st" in.position_ids; then
    expect 0 "llama_pos: $best vs Hugging Face, prefill 5 + decode" "$FUSEC" check $D/llama_pos.fdl \
        --golden "$tmp/llama.st" --split 5 --target $best
    expect 0 "llama_pos: -O0 vs Hugging Face, prefill 5 + decode" "$FUSEC" check $D/llama_pos.fdl \
        --golden "$tmp/llama.st" --split 5 -O0
else
    bad "drop in.position_ids from the golden Llama layer"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
