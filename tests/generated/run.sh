#!/bin/sh
# tests/generated/run.sh - the committed generated/ C is current, deterministic
# and clean.
#
#  - regenerates every example into a temporary directory (tests/regen.sh) and
#    diffs it against generated/: a difference means someone changed the
#    compiler or an example without running `make regen`;
#  - runs fusec a second time and demands byte-identical .c and .h;
#  - compiles every generated/*.c with -std=c99 -Wall -Wextra -Wpedantic -Werror.
#
# Environment: FUSEC (default build/fusec), CC.
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${CC:=cc}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-generated.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

if sh tests/regen.sh "$FUSEC" "$tmp/a" >"$tmp/log" 2>&1; then
    ok "regen into a temporary directory"
else
    bad "regen into a temporary directory"
    sed 's/^/       /' "$tmp/log"
fi
if [ -z "$(ls "$tmp/a")" ]; then
    bad "no example produced C (dsl-examples/ has no block?)"
fi
if diff -r generated "$tmp/a" >"$tmp/diff" 2>&1; then
    ok "generated/ is up to date"
else
    bad "generated/ differs from what fusec writes now: run 'make regen' and commit generated/"
    head -40 "$tmp/diff" | sed 's/^/       /'
fi

if sh tests/regen.sh "$FUSEC" "$tmp/b" >/dev/null 2>&1 && diff -r "$tmp/a" "$tmp/b" >/dev/null 2>&1; then
    ok "two runs give byte-identical output"
else
    bad "two runs give different output"
fi

for c in generated/*.c; do
    [ -f "$c" ] || continue
    if $CC -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -Iruntime -c "$c" -o "$tmp/x.o" >"$tmp/log" 2>&1; then
        ok "compiles cleanly: $c"
    else
        bad "compiles cleanly: $c"
        sed 's/^/       /' "$tmp/log" | head -30
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
