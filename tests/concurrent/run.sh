#!/bin/sh
# tests/concurrent/run.sh - several threads calling one generated block at once.
#
# For the Llama layer and the GPT-2 block, on the generic target and on
# this machine's best (--target native), with FUSE_NUM_THREADS 1 and 2:
# conc.c runs a prefill + decode schedule of 8 calls on the main thread
# (the reference), then 4 threads, each with its own caches and workspace,
# run it 25 times at once (200 calls each); every output of every call must
# be bit-identical to the reference (docs/generated-api.md: calls on
# different caches and workspaces may run concurrently).  On the code before
# the per-call scratch (6c59e84) all 8 cases failed: 9 to 71 of the 100
# schedules differed, max abs diff 13 to 46 (and inf).
#
# Environment: FUSEC (build/fusec), GOLDEN (tests/golden/hf), CC,
# FUSEC_LIB_DIR (build: its libfusec_rt.a), SAN=1 (ASan + UBSan build);
# CONC_CFLAGS (extra flags, e.g. -fsanitize=thread) with CONC_RUNTIME=src
# compiles the runtime's sources into each program instead of linking the
# library, so that tests/tsan.sh instruments the pool too; CONC_CALLS (25).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
: "${CONC_CFLAGS:=}" "${CONC_RUNTIME:=lib}" "${CONC_CALLS:=25}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-conc.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
. tests/lib.sh

flags="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Werror"
[ "$SAN" = 1 ] && flags="$flags -fsanitize=address,undefined -fno-sanitize-recover=undefined"
if [ "$CONC_RUNTIME" = src ]; then
    rt="runtime/*.c"
else
    rt="$FUSEC_LIB_DIR/libfusec_rt.a"
fi

for block in llama_layer gpt2_block; do
    for target in generic native; do
        src=$tmp/${block}_$target.c
        bin=$tmp/conc_${block}_$target
        tflags=
        [ "$target" = native ] && tflags=-march=native
        if ! "$FUSEC" --target "$target" "dsl-examples/$block.fdl" -o "$src" >"$tmp/log" 2>&1; then
            bad "$block --target $target: fusec failed"
            sed 's/^/       /' "$tmp/log" | head -20
            continue
        fi
        # shellcheck disable=SC2086
        if ! $CC $flags $tflags $CONC_CFLAGS -Iruntime -I"$tmp" -DFUSEC_BLOCK_DESC="${block}_desc" \
            tests/concurrent/conc.c "$src" $rt -lm -lpthread -o "$bin" >"$tmp/log" 2>&1; then
            bad "$block --target $target: build failed"
            sed 's/^/       /' "$tmp/log" | head -20
            continue
        fi
        for n in 1 2; do
            name="$block --target $target, 4 callers, FUSE_NUM_THREADS=$n"
            if FUSE_NUM_THREADS=$n timeout 600 "$bin" "$GOLDEN/$block.safetensors" 4 "$CONC_CALLS" \
                >"$tmp/log" 2>&1; then
                ok "$name"
            else
                bad "$name"
            fi
            sed 's/^/       /' "$tmp/log" | head -40
        done
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
