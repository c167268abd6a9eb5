#!/bin/sh
# tests/errors/run.sh - fusec's diagnostics, pinned.
#
# Each tests/errors/*.fdl carries its expectation in its first lines:
#   // ARGS: --block=nope          extra fusec arguments (optional)
#   // EXPECT: FILE:L:C: error: ... one line per diagnostic fusec must print
# fusec --emit=ir FILE must exit with status 1, and its stderr without the
# quoted source lines must equal the EXPECT lines exactly.  Where a
# FILE.expected sits beside it, the whole stderr (source lines and carets
# included) must equal that file byte for byte.
#
# Inputs too big to keep in the tree (thousands of nested parentheses) are
# generated into a temporary folder; they must fail with one located
# "nested too deeply" error and no crash.
#
# Environment: FUSEC (default build/fusec), run from the repository root.
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}"
pass=0
fail=0
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $1"
    shift
    for m in "$@"; do echo "  $m"; done
}

# A diagnostic's quoted source: "   12 | text" and "      | ^~~".
strip_quotes() { grep -a -v -E '^ *[0-9]* \| ' || true; }

for f in tests/errors/*.fdl; do
    grep -a -q '^// EXPECT: ' "$f" || { bad "$f" "no // EXPECT: lines"; continue; }
    args=$(sed -n 's|^// ARGS: ||p' "$f")
    # shellcheck disable=SC2086
    "$FUSEC" --emit=ir $args "$f" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    sed -n 's|^// EXPECT: ||p' "$f" >"$tmp/want"
    strip_quotes <"$tmp/err" >"$tmp/got"
    if [ "$rc" -ne 1 ]; then
        bad "$f" "exit status $rc, expected 1" "$(head -c 2000 "$tmp/err")"
    elif ! cmp -s "$tmp/want" "$tmp/got"; then
        bad "$f" "diagnostics differ (- expected, + got):" "$(diff "$tmp/want" "$tmp/got" | head -40)"
    elif [ -f "${f%.fdl}.expected" ] && ! cmp -s "${f%.fdl}.expected" "$tmp/err"; then
        bad "$f" "stderr differs from ${f%.fdl}.expected:" "$(diff "${f%.fdl}.expected" "$tmp/err" | head -40)"
    else
        ok
    fi
done

# deep nesting: NAME, then the expression's opening and closing halves,
# each repeated N times around x.
deep() {
    name=$1 n=$2 open=$3 close=$4
    g="$tmp/$name.fdl"
    {
        printf 'block b {\n    dim T;\n    input x: f32[T, 4];\n    output y = '
        i=0
        buf=""
        while [ $i -lt 100 ]; do buf="$buf$open"; i=$((i + 1)); done
        i=0
        while [ $i -lt $((n / 100)) ]; do printf '%s' "$buf"; i=$((i + 1)); done
        printf 'x'
        buf=""
        i=0
        while [ $i -lt 100 ]; do buf="$buf$close"; i=$((i + 1)); done
        i=0
        while [ $i -lt $((n / 100)) ]; do printf '%s' "$buf"; i=$((i + 1)); done
        printf ';\n}\n'
    } >"$g"
    "$FUSEC" --emit=ir "$g" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    strip_quotes <"$tmp/err" >"$tmp/got"
    if [ "$rc" -ne 1 ]; then
        bad "$name (generated)" "exit status $rc, expected 1" "$(head -c 2000 "$tmp/err")"
    elif [ "$(wc -l <"$tmp/got")" -ne 1 ] ||
        ! grep -q -E "^$g:4:[0-9]+: error: expression nested too deeply" "$tmp/got"; then
        bad "$name (generated)" "expected one 'nested too deeply' error, got:" "$(head -c 2000 "$tmp/got")"
    else
        ok
    fi
}
deep deep_parens 10000 '(' ')'
deep deep_negation 100000 '-' ''
deep deep_lists 10000 '[' ']'
deep deep_calls 10000 'silu(' ')'
deep deep_sema 300 '-(' ')'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
