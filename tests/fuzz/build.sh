#!/bin/sh
# tests/fuzz/build.sh - builds the libFuzzer harnesses into $BUILD/fuzz/:
#   fuzz_fdl  .fdl text through the front end, passes, emitter, interpreter
#   fuzz_st   the safetensors reader and weight binding
#   fuzz_api  the generated API's argument checks (generated/llama_layer.c)
# with clang -fsanitize=fuzzer,address,undefined.  Needs the flex and bison
# output that `make` writes to $BUILD/compiler (the Makefile's fuzz target
# builds that first).  Each harness is one clang command over the sources:
# no objects are shared with the ordinary build, whose flags differ.
#
# Environment: BUILD (default build), FUZZ_CC (default clang).
set -eu
cd "$(dirname "$0")/../.."
: "${BUILD:=build}" "${FUZZ_CC:=clang}"
out=$BUILD/fuzz
mkdir -p "$out"
for f in "$BUILD/compiler/parse.tab.c" "$BUILD/compiler/lex.yy.c"; do
    [ -f "$f" ] || { echo "fuzz build: $f missing: run make first" >&2; exit 1; }
done
flags="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Icompiler -I$BUILD/compiler -Iruntime -Wno-unused-function -Wno-unused-but-set-variable"
compiler_src=$(ls compiler/*.c | grep -v '^compiler/main\.c$')
runtime_src=$(ls runtime/*.c)
echo "fuzz build: $out/fuzz_fdl"
# shellcheck disable=SC2086
$FUZZ_CC $flags -DFUZZ_IMPORT_DIR="\"$(pwd)/dsl-examples\"" -o "$out/fuzz_fdl" \
    tests/fuzz/fuzz_fdl.c $compiler_src "$BUILD/compiler/parse.tab.c" "$BUILD/compiler/lex.yy.c" \
    $runtime_src -lm -lpthread
echo "fuzz build: $out/fuzz_st"
# shellcheck disable=SC2086
$FUZZ_CC $flags -o "$out/fuzz_st" tests/fuzz/fuzz_st.c $runtime_src -lm -lpthread
echo "fuzz build: $out/fuzz_api"
# shellcheck disable=SC2086
$FUZZ_CC $flags -Igenerated -o "$out/fuzz_api" tests/fuzz/fuzz_api.c $runtime_src -lm -lpthread
