#!/bin/sh
# tests/api/run.sh - the generated API's error codes (api_errors.c), and
# folded weight-only values on the Gemma-3 layer (fold_api.c).
#
# Builds api_errors.c with the Llama layer for the generic target ("args":
# every argument error, its code and its message) and, where this CPU has
# them, for x86-64-avx2 and multi:x86-64-avx512,x86-64-avx2 ("cpu": with
# every feature masked off, forward returns FR_ECPU naming what is missing).
# A target this CPU lacks is a failure, not a skip: the suite runs on the
# x86-64 machines make test runs on.
#
# Environment: FUSEC (build/fusec), GOLDEN (tests/golden/hf), CC,
# FUSEC_LIB_DIR (build: its libfusec_rt.a), SAN=1 (ASan + UBSan build).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-api.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
. tests/lib.sh

flags="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Werror"
if [ "$SAN" = 1 ]; then
    flags="$flags -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    # cache_init's FR_ENOMEM case: ASan returns NULL past 4 GiB instead of aborting
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=4096"
    export ASAN_OPTIONS
fi

for spec in "generic args" "x86-64-avx2 cpu -mavx2 -mfma" "multi:x86-64-avx512,x86-64-avx2 cpu"; do
    set -- $spec
    target=$1 mode=$2
    shift 2
    name="llama_layer --target $target ($mode)"
    d=$tmp/$(echo "$target" | tr ':,' '__')
    mkdir -p "$d"
    if ! "$FUSEC" --target "$target" dsl-examples/llama_layer.fdl -o "$d/llama_layer.c" >"$tmp/log" 2>&1; then
        bad "$name: fusec failed"
        sed 's/^/       /' "$tmp/log" | head -20
        continue
    fi
    # shellcheck disable=SC2086
    if ! $CC $flags "$@" -Iruntime -I"$d" tests/api/api_errors.c "$d/llama_layer.c" \
        "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread -o "$d/api_errors" >"$tmp/log" 2>&1; then
        bad "$name: build failed"
        sed 's/^/       /' "$tmp/log" | head -20
        continue
    fi
    if FUSE_NUM_THREADS=2 timeout 300 "$d/api_errors" "$GOLDEN/llama_layer.safetensors" "$mode" >"$tmp/log" 2>&1; then
        ok "$name: $(tail -1 "$tmp/log")"
    else
        bad "$name"
        sed 's/^/       /' "$tmp/log" | head -60
    fi
done

# folded weight-only values (Gemma's 1 + w): bind, rebinding, NAME_fold (fold_api.c)
d=$tmp/fold
mkdir -p "$d"
if ! "$FUSEC" dsl-examples/gemma3_layer.fdl -o "$d/gemma3_layer.c" >"$tmp/log" 2>&1; then
    bad "gemma3_layer folded weights: fusec failed"
    sed 's/^/       /' "$tmp/log" | head -20
elif ! $CC $flags -Iruntime -I"$d" tests/api/fold_api.c "$d/gemma3_layer.c" \
    "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread -o "$d/fold_api" >"$tmp/log" 2>&1; then
    bad "gemma3_layer folded weights: build failed"
    sed 's/^/       /' "$tmp/log" | head -20
elif FUSE_NUM_THREADS=2 timeout 300 "$d/fold_api" tests/layers/gemma3_layer.safetensors >"$tmp/log" 2>&1; then
    ok "gemma3_layer folded weights: $(tail -1 "$tmp/log")"
else
    bad "gemma3_layer folded weights"
    sed 's/^/       /' "$tmp/log" | head -40
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
