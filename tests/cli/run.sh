#!/bin/sh
# The fusec command line: help, version, exit codes, outputs written only on
# success, make dependency files.  Prints "N passed, M failed".
set -u
: "${FUSEC:=build/fusec}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
expect_rc() { # expect_rc NAME WANT CMD...
    name=$1; want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name (exit $rc, expected $want)"; cat "$tmp/err"; fi
}

expect_rc "--help exits 0" 0 "$FUSEC" --help
grep -q "^usage: fusec" "$tmp/out" && ok "--help prints usage" || bad "--help prints usage"
expect_rc "--version exits 0" 0 "$FUSEC" --version
grep -Eq "^fusec [0-9]+\.[0-9]+\.[0-9]+$" "$tmp/out" && ok "--version format" || bad "--version format"
expect_rc "no arguments is a usage error" 2 "$FUSEC"
expect_rc "unknown option is a usage error" 2 "$FUSEC" --frobnicate dsl-examples/llama_layer.fdl -o "$tmp/x.c"
expect_rc "unknown target is a usage error" 2 "$FUSEC" --target=vax dsl-examples/llama_layer.fdl -o "$tmp/x.c"
expect_rc "missing -o is a usage error" 2 "$FUSEC" dsl-examples/llama_layer.fdl
expect_rc "missing input file" 1 "$FUSEC" "$tmp/nope.fdl" -o "$tmp/x.c"
grep -q "cannot read '$tmp/nope.fdl'" "$tmp/err" && ok "missing file is named" || bad "missing file is named"

# outputs only on success; an existing output survives a failed run
printf 'block b {\n  dim T;\n  input x: f32[T, 4];\n  output y = exp(x) + z;\n}\n' >"$tmp/bad.fdl"
echo "precious" >"$tmp/keep.c"
expect_rc "a bad block exits 1" 1 "$FUSEC" "$tmp/bad.fdl" -o "$tmp/keep.c"
[ "$(cat "$tmp/keep.c")" = "precious" ] && [ ! -e "$tmp/keep.h" ] && ok "failed run leaves outputs alone" \
    || bad "failed run leaves outputs alone"
[ -z "$(ls "$tmp" | grep '\.tmp\.')" ] && ok "no temporary files left" || bad "no temporary files left"
expect_rc "unwritable output directory" 1 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/no/such/dir/x.c"

# success: .c and .h, byte-identical across runs, -o - matches the file
expect_rc "compile gpt2_block" 0 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/a.c"
[ -f "$tmp/a.c" ] && [ -f "$tmp/a.h" ] && ok "writes .c and .h" || bad "writes .c and .h"
"$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/b.c"
sed 's/\bb\.h\b/a.h/' "$tmp/b.c" | cmp -s - "$tmp/a.c" && ok "identical input, identical output" \
    || bad "identical input, identical output"
"$FUSEC" dsl-examples/gpt2_block.fdl -o - >"$tmp/stdout.c"
sed 's/\bgpt2_block\.h\b/a.h/' "$tmp/stdout.c" | cmp -s - "$tmp/a.c" && ok "-o - writes the same C" \
    || bad "-o - writes the same C"

# make dependency files
expect_rc "-MD" 0 "$FUSEC" dsl-examples/llama_layer.fdl -o "$tmp/l.c" -MD
printf '%s\n\n%s\n' "$tmp/l.c $tmp/l.h: dsl-examples/llama_layer.fdl dsl-examples/lib/transformer.fdl" \
    "dsl-examples/lib/transformer.fdl:" >"$tmp/want.d"
cmp -s "$tmp/l.d" "$tmp/want.d" && ok "-MD writes OUT.d with imports" || { bad "-MD writes OUT.d with imports"; cat "$tmp/l.d"; }
expect_rc "-MF" 0 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/g.c" -MF "$tmp/g.dep"
[ -f "$tmp/g.dep" ] && [ ! -e "$tmp/g.d" ] && ok "-MF names the file" || bad "-MF names the file"
expect_rc "-MF into a missing folder fails" 1 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/g.c" -MF "$tmp/none/g.d"
expect_rc "-MD without an output" 2 "$FUSEC" dsl-examples/gpt2_block.fdl --emit=ir -MD

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
