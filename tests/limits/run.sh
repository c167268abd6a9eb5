#!/bin/sh
# tests/limits/run.sh - programs at the compiler's limits (issue 10):
#   - every reserved identifier (C keywords, header macros and names, the
#     runtime's and the generated file's own names) as every kind of DSL
#     name: the C must compile (names.py);
#   - kernels with many operands: a chain of 63 and 200 weight multiplies,
#     a GEMM epilogue of 100 steps with 100 more GEMM outputs, 64 and 200
#     outputs: fusec exits 0 (never 70), the C compiles, and fusec check
#     --random agrees with the interpreter;
#   - dimensions at the edge of their range (a multiplier of 2^31 - 1):
#     compiled and the C compiles (the overflows past it are pinned in
#     tests/errors/dim_overflow.fdl).
# Environment: FUSEC (default build/fusec), CC.  Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${FUSEC:=build/fusec}" "${CC:=cc}"
PY=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-limits.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
. tests/lib.sh

# compiles FILE to C (exit 0) and the C with -Werror; $2: also fusec check --random
compile() {
    name=$(basename "$1" .fdl)
    "$FUSEC" "$1" -o "$tmp/$name.c" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 0 ]; then bad "$name: fusec exit $rc: $(head -1 "$tmp/err")"; return; fi
    # shellcheck disable=SC2086 # CC may be a command line ("cc --coverage")
    if ! $CC -std=c99 -Wall -Wextra -Werror -Iruntime -c "$tmp/$name.c" -o "$tmp/$name.o" 2>"$tmp/err"; then
        bad "$name: the C does not compile: $(grep error "$tmp/err" | head -1)"
        return
    fi
    if [ "${2:-}" = check ] && ! "$FUSEC" check --random "$1" >"$tmp/out" 2>&1; then
        bad "$name: fusec check --random: $(grep -v ' ok$' "$tmp/out" | head -1)"
        return
    fi
    ok "$name"
}

"$PY" - "$tmp" <<'PYEOF'
import sys
out = sys.argv[1]
def write(name, lines):
    with open("%s/%s.fdl" % (out, name), "w") as f:
        f.write("\n".join(lines) + "\n")
def chain(n):
    body = ["block b {", "    dim T;", "    input x: f32[T, 4];"] + ["    weight w%d: f32[4];" % i for i in range(n)]
    body += ["    h0 = x;"] + ["    h%d = h%d * w%d;" % (i + 1, i, i) for i in range(n)]
    return body + ["    output y = h%d;" % n, "}"]
def outputs(n):
    return ["block b {", "    dim T;", "    input x: f32[T, 4];"] + \
        ["    output y%d = x * %d.0;" % (i, i + 1) for i in range(n)] + ["}"]
def epilogue(n):
    body = ["block b {", "    dim T;", "    input x: f32[T, 16];", "    weight W: f32[16, 16];"]
    body += ["    weight w%d: f32[16];" % i for i in range(n)] + ["    h0 = linear(x, W);"]
    body += ["    h%d = silu(h%d * w%d + x);" % (i + 1, i, i) for i in range(n)]
    body += ["    output y = h%d;" % n] + ["    output z%d = linear(x, W) * w%d;" % (i, i) for i in range(n)]
    return body + ["}"]
write("chain63", chain(63))
write("chain200", chain(200))
write("outputs64", outputs(64))
write("outputs200", outputs(200))
write("epilogue100", epilogue(100))
write("dim_2p31", ["block b {", "    dim T;", "    input x: f32[T, 4];", "    input a: f32[2147483647 * T, 4];",
                   "    input c: f32[0 - 2147483647 * T + 2147483647 * T + T, 2];",
                   "    output y = exp(a);", "    output z = c * 2.0;", "}"])
PYEOF
compile "$tmp/chain63.fdl" check
compile "$tmp/chain200.fdl" check
compile "$tmp/outputs64.fdl"
compile "$tmp/outputs200.fdl" check
compile "$tmp/epilogue100.fdl" check
compile "$tmp/dim_2p31.fdl"
"$FUSEC" --emit=ir "$tmp/dim_2p31.fdl" 2>/dev/null | grep -q 'f32\[2147483647\*T, 4\]' && ok "2147483647*T prints as written" \
    || bad "2147483647*T prints as written"

"$PY" tests/limits/names.py "$FUSEC" "$tmp/names" >"$tmp/names.out" 2>&1
grep '^FAIL' "$tmp/names.out"
n_ok=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$tmp/names.out")
n_bad=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$tmp/names.out")
if [ -n "$n_ok" ] && [ "$n_bad" = 0 ]; then ok "every reserved identifier in every place ($n_ok programs)"
else bad "reserved identifiers: ${n_bad:-?} of $(( ${n_ok:-0} + ${n_bad:-0} )) programs failed"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
