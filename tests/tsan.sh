#!/bin/sh
# tests/tsan.sh - `make tsan`: ThreadSanitizer on the thread pool and on
# generated blocks running on several threads.
#
#  1. tests/unit/test_pool.c with the runtime, all built with -fsanitize=thread.
#  2. The examples, fused and -O0, on FUSE_NUM_THREADS=3 and 4, all tokens
#     at once and prefill + decode through the cache,
#     checked against the golden layers by `fusec check --cc "CC
#     -fsanitize=thread"` (--cc compiles the runtime's sources with the block,
#     so the pool itself is instrumented too).  A race is a TSan report, which
#     makes the harness exit 66 and the check fail.
#  3. tests/concurrent/run.sh under TSan: 4 threads calling the Llama layer
#     and the GPT-2 block at once, 200 calls each (generic and native,
#     FUSE_NUM_THREADS 1 and 2), each result bit-identical to the
#     single-caller run, and no race between the callers, the pool and the
#     kernels (about 5 minutes on 2 busy cores).
#
# Environment: BUILD (build: its fusec emits the C), CC, GOLDEN (tests/golden/hf).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.." || exit 2
: "${BUILD:=build}" "${CC:=cc}" "${GOLDEN:=tests/golden/hf}"
FUSEC=$BUILD/fusec
out=$BUILD/tsan
mkdir -p "$out" || exit 2
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
tsan="-fsanitize=thread -g -O1"

# ---- 1. the pool's unit test ----------------------------------------------
# shellcheck disable=SC2086
if $CC -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $tsan -Iruntime tests/unit/test_pool.c \
    runtime/*.c -lcmocka -lm -lpthread -o "$out/test_pool" >"$out/build.log" 2>&1; then
    for n in 1 2 4 7; do
        if FUSE_NUM_THREADS=$n "$out/test_pool" >"$out/test_pool.log" 2>&1; then
            ok "test_pool under TSan, FUSE_NUM_THREADS=$n"
        else
            bad "test_pool under TSan, FUSE_NUM_THREADS=$n"
            grep -A30 -E 'WARNING: ThreadSanitizer|FAILED|ERROR' "$out/test_pool.log" | head -60 | sed 's/^/       /'
        fi
    done
else
    bad "build test_pool with -fsanitize=thread"
    sed 's/^/       /' "$out/build.log" | head -30
fi

# ---- 2. generated blocks on several threads -----------------------------------
for ex in llama_layer gpt2_block llama_layer_prim; do
    case $ex in gpt2_block) gold=$GOLDEN/gpt2_block.safetensors ;;
    *) gold=$GOLDEN/llama_layer.safetensors ;; esac
    # fused on 3 threads (rows split unevenly), all at once and prefill +
    # decode; unfused on 4
    for run in "-O1 3 0" "-O1 3 12" "-O0 4 0"; do
        set -- $run
        opt=$1 threads=$2 split=$3
        name="$ex $opt FUSE_NUM_THREADS=$threads$([ "$split" != 0 ] && echo " --split $split")"
        if FUSE_NUM_THREADS=$threads "$FUSEC" check "dsl-examples/$ex.fdl" --golden "$gold" "$opt" \
            --cc "$CC $tsan" $([ "$split" != 0 ] && echo "--split $split") >"$out/check.log" 2>&1; then
            ok "$name"
        else
            bad "$name"
            grep -v '^ *[0-9]* |' "$out/check.log" | head -60 | sed 's/^/       /'
        fi
    done
done
# ---- 3. concurrent callers ----------------------------------------------------
if CONC_CFLAGS="$tsan" CONC_RUNTIME=src CONC_CALLS=25 FUSEC=$FUSEC GOLDEN=$GOLDEN CC=$CC \
    sh tests/concurrent/run.sh >"$out/conc.log" 2>&1; then
    ok "concurrent callers under TSan ($(tail -1 "$out/conc.log"))"
else
    bad "concurrent callers under TSan"
    grep -v '^ *[0-9]* |' "$out/conc.log" | head -80 | sed 's/^/       /'
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
