#!/bin/sh
# tests/fuzz/run.sh - replays the fuzz harnesses' regression inputs and seed
# corpora in `make test`, without libFuzzer.
#
# Each harness (fuzz_fdl.c, fuzz_st.c, fuzz_api.c) is linked with replay.c
# and the ordinary build's objects by $CC, with the sanitizers when SAN=1,
# and run over tests/fuzz/regress/NAME/ (every crash the fuzzers found, once
# fixed), the examples, tests/errors/, tests/badinput/, small valid
# safetensors files and the corpora `make fuzz` keeps in tests/fuzz/corpus/.  A crash, sanitizer report or internal error fails the suite.
# `make fuzz` does the fuzzing itself (clang's libFuzzer, tests/fuzz/fuzz.sh).
#
# Environment: FUSEC (build/fusec: its directory is the build), CC, SAN,
# GOLDEN (tests/golden/hf, for the golden files' headers).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}" "${CC:=cc}" "${SAN:=0}" "${GOLDEN:=tests/golden/hf}"
BUILD=$(dirname "$FUSEC")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
. tests/lib.sh

san=
[ "$SAN" = 1 ] && san="-g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
flags="-std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g -Wall -Wextra -Werror
       -Icompiler -I$BUILD/compiler -Iruntime"
objs=
for c in compiler/*.c; do
    [ "$c" = compiler/main.c ] && continue
    objs="$objs $BUILD/${c%.c}.o"
done
objs="$objs $BUILD/compiler/parse.tab.o $BUILD/compiler/lex.yy.o"

# shellcheck disable=SC2086
if $CC $flags $san -DFUZZ_IMPORT_DIR="\"$(pwd)/dsl-examples\"" tests/fuzz/fuzz_fdl.c tests/fuzz/replay.c \
    $objs "$BUILD/libfusec_rt.a" -lm -lpthread -o "$tmp/replay_fdl" >"$tmp/log" 2>&1 &&
    $CC $flags $san tests/fuzz/fuzz_st.c tests/fuzz/replay.c "$BUILD/libfusec_rt.a" -lm -lpthread \
        -o "$tmp/replay_st" >>"$tmp/log" 2>&1 &&
    $CC $flags $san -Igenerated tests/fuzz/fuzz_api.c tests/fuzz/replay.c "$BUILD/libfusec_rt.a" -lm -lpthread \
        -o "$tmp/replay_api" >>"$tmp/log" 2>&1; then
    ok "replay drivers build"
else
    bad "replay drivers build"
    sed 's/^/       /' "$tmp/log" | head -30
    echo "$pass passed, $fail failed"
    exit 1
fi

# replay NAME BINARY DIR...: every file of the DIRs in one process (state
# left by one input is part of what the next one exercises).
replay() {
    name=$1 bin=$2
    shift 2
    if "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; then
        ok "$name: $(tail -1 "$tmp/out" | sed 's/replay: //')"
    else
        bad "$name (exit $?)"
        grep -v -E '^ *[0-9]* \| |^ *\| ' "$tmp/err" | grep -E -B2 -A25 'ERROR|runtime error|internal error|fuzz_' | head -60
        grep '^replay: ' "$tmp/err" | tail -1 | sed 's/^/       last input: /'
    fi
}

mkdir -p "$tmp/fdl" "$tmp/st"
cp dsl-examples/*.fdl tests/errors/*.fdl "$tmp/fdl/"
cp tests/badinput/fdl/*.fdl "$tmp/fdl/" 2>/dev/null
replay "fdl regressions" "$tmp/replay_fdl" tests/fuzz/regress/fdl
replay "fdl seeds (examples, tests/errors, tests/badinput)" "$tmp/replay_fdl" "$tmp/fdl"
if GOLDEN_DIR=$GOLDEN /usr/bin/python3 tests/fuzz/make_seeds.py "$tmp/st" >"$tmp/log" 2>&1; then
    cp tests/badinput/st/*.safetensors "$tmp/st/" 2>/dev/null
    replay "st regressions" "$tmp/replay_st" tests/fuzz/regress/st
    replay "st seeds (valid files, tests/badinput)" "$tmp/replay_st" "$tmp/st"
else
    bad "make_seeds.py"
    sed 's/^/       /' "$tmp/log"
fi
replay "api regressions and seeds (one per return code)" "$tmp/replay_api" tests/fuzz/regress/api tests/fuzz/seeds/api
# the corpora make fuzz keeps in the repository
for h in fdl st api; do
    [ -d tests/fuzz/corpus/$h ] || continue
    replay "$h corpus (tests/fuzz/corpus/$h: $(ls tests/fuzz/corpus/$h | wc -l) inputs)" "$tmp/replay_$h" tests/fuzz/corpus/$h
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
