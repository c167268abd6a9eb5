#!/bin/sh
# The fusec command line: help, version, exit codes, outputs written only on
# success (into directories created as needed, and only when their bytes
# change), make dependency files, target-string errors and warnings.
# Prints "N passed, M failed".
set -u
: "${FUSEC:=build/fusec}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
. tests/lib.sh
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
expect_rc "output under a regular file" 1 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/keep.c/x.c"
grep -q "cannot write '$tmp/keep.c/x.c': Not a directory" "$tmp/err" && ok "the output that cannot be written is named" \
    || { bad "the output that cannot be written is named"; cat "$tmp/err"; }
expect_rc "output two levels under a regular file" 1 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/keep.c/d/x.c"
grep -q "cannot create directory '$tmp/keep.c/d' for '$tmp/keep.c/d/x.c'" "$tmp/err" \
    && ok "the directory that cannot be made is named" || { bad "the directory that cannot be made is named"; cat "$tmp/err"; }
[ "$(cat "$tmp/keep.c")" = "precious" ] && ok "the file in the way is left alone" || bad "the file in the way is left alone"

# -o into missing directories creates them (mkdir -p), for .c, .h and .d
expect_rc "-o into missing directories" 0 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/new/deep/x.c" -MD
[ -f "$tmp/new/deep/x.c" ] && [ -f "$tmp/new/deep/x.h" ] && [ -f "$tmp/new/deep/x.d" ] \
    && ok "-o creates missing directories" || bad "-o creates missing directories"
expect_rc "--emit=ir -o into a missing directory" 0 "$FUSEC" --emit=ir dsl-examples/gpt2_block.fdl -o "$tmp/ir/g.ir"
[ -s "$tmp/ir/g.ir" ] && ok "--emit=ir -o creates its directory" || bad "--emit=ir -o creates its directory"

# an output whose bytes did not change keeps its time stamp (make rebuilds
# nothing downstream); a changed one is replaced; no temporary files left
touch -d '2001-01-01 00:00' "$tmp/new/deep/x.c" "$tmp/new/deep/x.h" "$tmp/new/deep/x.d"
old=$(stat -c %Y "$tmp/new/deep/x.c")
expect_rc "recompile, same output" 0 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/new/deep/x.c" -MD
[ "$(stat -c %Y "$tmp/new/deep/x.c" "$tmp/new/deep/x.h" "$tmp/new/deep/x.d" | sort -u)" = "$old" ] \
    && ok "unchanged .c, .h and .d are not rewritten" || bad "unchanged .c, .h and .d are not rewritten"
expect_rc "recompile with -O0" 0 "$FUSEC" -O0 dsl-examples/gpt2_block.fdl -o "$tmp/new/deep/x.c" -MD
[ "$(stat -c %Y "$tmp/new/deep/x.c")" != "$old" ] && [ "$(stat -c %Y "$tmp/new/deep/x.d")" = "$old" ] \
    && ok "a changed .c is rewritten, the unchanged .d is not" || bad "a changed .c is rewritten, the unchanged .d is not"
"$FUSEC" dsl-examples/gpt2_block.fdl -o - >"$tmp/o1.c"
sed 's/\bgpt2_block\.h\b/x.h/' "$tmp/o1.c" | cmp -s - "$tmp/new/deep/x.c" && bad "-O0 output differs from -O1" \
    || ok "-O0 output differs from -O1 (the rewrite test can fail)"
[ -z "$(ls "$tmp/new/deep" | grep '\.tmp\.')" ] && ok "no temporary files left after unchanged outputs" \
    || bad "no temporary files left after unchanged outputs"

# target strings: the bad entry named, the nearest name suggested, one hint
expect_rc "--target=avx512 is a usage error" 2 "$FUSEC" --target=avx512 dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "unknown target 'avx512'; did you mean 'x86-64-avx512'?" "$tmp/err" && ok "avx512: did you mean x86-64-avx512" \
    || { bad "avx512: did you mean x86-64-avx512"; cat "$tmp/err"; }
[ "$(grep -c "see 'fusec --help'" "$tmp/err")" = 1 ] && ok "the help hint is printed once" \
    || { bad "the help hint is printed once"; cat "$tmp/err"; }
expect_rc "--target=x86_64-avx2" 2 "$FUSEC" --target=x86_64-avx2 dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "did you mean 'x86-64-avx2'?" "$tmp/err" && ok "x86_64-avx2: did you mean x86-64-avx2" \
    || { bad "x86_64-avx2: did you mean x86-64-avx2"; cat "$tmp/err"; }
expect_rc "multi: with an unknown entry" 2 "$FUSEC" --target=multi:x86-64-avx512,foo dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "unknown target 'foo' in 'multi:x86-64-avx512,foo' (targets: generic," "$tmp/err" \
    && ok "multi: names the bad entry and lists the valid ones" || { bad "multi: names the bad entry"; cat "$tmp/err"; }
expect_rc "multi: with a misspelt entry" 2 "$FUSEC" --target=multi:neon,generic dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "unknown target 'neon' in 'multi:neon,generic'; did you mean 'aarch64-neon'?" "$tmp/err" \
    && ok "multi: suggests the nearest name" || { bad "multi: suggests the nearest name"; cat "$tmp/err"; }
expect_rc "multi: with a repeated entry" 2 "$FUSEC" --target=multi:generic,generic dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "'generic' is listed twice" "$tmp/err" && ok "multi: a repeated entry is named" || { bad "multi: repeated"; cat "$tmp/err"; }
expect_rc "multi: with a stray comma" 2 "$FUSEC" --target=multi:x86-64-avx2,,generic dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "empty entry" "$tmp/err" && ok "multi: an empty entry is named" || { bad "multi: empty entry"; cat "$tmp/err"; }
expect_rc "multi:generic,x86-64-avx2 compiles" 0 "$FUSEC" --target=multi:generic,x86-64-avx2 dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "warning: 'x86-64-avx2' in 'multi:generic,x86-64-avx2' can never be chosen: 'generic'" "$tmp/err" \
    && ok "multi: a variant after generic is never chosen: warned" || { bad "multi: warning after generic"; cat "$tmp/err"; }
expect_rc "multi:x86-64-avx2,x86-64-avx512 compiles" 0 "$FUSEC" --target=multi:x86-64-avx2,x86-64-avx512 \
    dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "'x86-64-avx512' in 'multi:x86-64-avx2,x86-64-avx512' can never be chosen: 'x86-64-avx2'" "$tmp/err" \
    && ok "multi: AVX-512 after AVX2 is never chosen: warned" || { bad "multi: warning avx512 after avx2"; cat "$tmp/err"; }
expect_rc "multi:x86-64-avx512,aarch64-neon,x86-64-avx2,generic compiles" 0 "$FUSEC" \
    --target=multi:x86-64-avx512,aarch64-neon,x86-64-avx2,generic dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
[ ! -s "$tmp/err" ] && ok "multi: a good order gives no warning" || { bad "multi: a good order gives no warning"; cat "$tmp/err"; }
expect_rc "--target=sapphirerapids is a usage error" 2 "$FUSEC" --target=sapphirerapids dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "unknown target 'sapphirerapids'; did you mean 'x86-64-spr'?" "$tmp/err" && ok "sapphirerapids: did you mean x86-64-spr" \
    || { bad "sapphirerapids: did you mean x86-64-spr"; cat "$tmp/err"; }
expect_rc "multi:x86-64-avx512,x86-64-spr compiles" 0 "$FUSEC" --target=multi:x86-64-avx512,x86-64-spr \
    dsl-examples/gpt2_block.fdl -o "$tmp/t.c"
grep -q "'x86-64-spr' in 'multi:x86-64-avx512,x86-64-spr' can never be chosen: 'x86-64-avx512'" "$tmp/err" \
    && ok "multi: x86-64-spr after x86-64-avx512 is never chosen: warned" || { bad "multi: warning spr after avx512"; cat "$tmp/err"; }
expect_rc "fusec check: unknown target" 2 "$FUSEC" check dsl-examples/gpt2_block.fdl --random --target avx2
grep -q "did you mean 'x86-64-avx2'?" "$tmp/err" && [ "$(grep -c "see 'fusec check --help'" "$tmp/err")" = 1 ] \
    && ok "fusec check: did you mean, one hint" || { bad "fusec check: did you mean, one hint"; cat "$tmp/err"; }

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
expect_rc "-MF into a missing folder" 0 "$FUSEC" dsl-examples/gpt2_block.fdl -o "$tmp/g.c" -MF "$tmp/none/g.d"
[ -f "$tmp/none/g.d" ] && ok "-MF creates its folder" || bad "-MF creates its folder"
expect_rc "-MD without an output" 2 "$FUSEC" dsl-examples/gpt2_block.fdl --emit=ir -MD

# the man page documents every option the three --help texts list
"$FUSEC" --help >"$tmp/help" && "$FUSEC" check --help >>"$tmp/help" && "$FUSEC" quantize --help >>"$tmp/help"
sed 's/\\-/-/g' docs/fusec.1 >"$tmp/man"
opts=$(sed -n 's/^  \(-[-A-Za-z0-9]*\).*/\1/p' "$tmp/help" | sort -u)
missing=""
for o in $opts; do grep -qF -- "$o" "$tmp/man" || missing="$missing $o"; done
[ -n "$opts" ] && [ -z "$missing" ] && ok "docs/fusec.1 documents every option of --help ($(echo $opts | wc -w))" \
    || bad "docs/fusec.1 lacks:$missing"

# fusec check against a file holding more than the block uses (a checkpoint):
# unused w.* are ignored with a note; an in.* the block lacks is an error
: "${GOLDEN:=tests/golden/hf}"
if /usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/golden"); from tiny_ref import read_st, write_st
t = dict(read_st(sys.argv[1])); t["w.model.norm.weight"] = t["w.input_layernorm.weight"]
t["w.lm_head.weight"] = t["w.mlp.up_proj.weight"]; write_st(sys.argv[2], t)
t["in.attention_mask"] = t["in.position_ids"]; write_st(sys.argv[3], t)' \
    "$GOLDEN/llama_layer.safetensors" "$tmp/more.st" "$tmp/morein.st" 2>"$tmp/err"; then
    expect_rc "check: a golden file with unused weights passes" 0 "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/more.st"
    grep -q "note: $tmp/more.st: 2 weights not used by block 'llama_layer', ignored: 'w.lm_head.weight', 'w.model.norm.weight'" \
        "$tmp/err" && ok "check: the unused weights are named in a note" || { bad "check: unused weights note"; cat "$tmp/err"; }
    expect_rc "check: an input the block lacks fails" 1 "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/morein.st"
    grep -q "tensor 'in.attention_mask' is not an input of block 'llama_layer'" "$tmp/err" \
        && ok "check: the extra input is named" || { bad "check: the extra input is named"; cat "$tmp/err"; }
else
    bad "check: make a golden file with extra tensors"
    cat "$tmp/err"
fi

# usage errors name what is wrong (exit 2); the spellings of -o and -O1
usage() { # usage NAME MESSAGE ARGS...: exit 2 and MESSAGE on stderr
    name=$1; msg=$2; shift 2
    expect_rc "$name" 2 "$FUSEC" "$@"
    grep -qF "fusec: error: $msg" "$tmp/err" && ok "$name: the message" || { bad "$name: the message"; cat "$tmp/err"; }
}
g=dsl-examples/gpt2_block.fdl
usage "-o without a file" "'-o' needs a file name" "$g" -o
usage "-MF without a file" "'-MF' needs a file name" "$g" -MD -MF
usage "unknown --emit kind" "unknown --emit kind 'asm' (expected c, h, ir, report or dot)" "$g" --emit=asm
usage "--dim without a number" "--dim: expected NAME=VALUE with 0 <= VALUE <= 2^31, got 'T=x'" "$g" --emit=report --dim T=x
usage "--dim past 2^31" "--dim: expected NAME=VALUE with 0 <= VALUE <= 2^31, got 'T=2147483649'" \
    "$g" --emit=report --dim T=2147483649
usage "--dim of a name the block lacks" "--dim: the block has no symbolic dim 'Q'" "$g" --emit=report --dim Q=3
usage "two input files" "more than one input file ('$g')" "$g" "$g" -o "$tmp/u.c"
"$FUSEC" "$g" -o "$tmp/sp.c" && "$FUSEC" "$g" -o"$tmp/jo.c" && "$FUSEC" -O1 "$g" -o "$tmp/o1.c" \
    && sed 's/\bjo\.h\b/sp.h/' "$tmp/jo.c" | cmp -s - "$tmp/sp.c" && sed 's/\bo1\.h\b/sp.h/' "$tmp/o1.c" | cmp -s - "$tmp/sp.c" \
    && ok "-oFILE and -O1 give the default output" || bad "-oFILE and -O1 give the default output"
"$FUSEC" --emit=report "$g" --dim T=4 >"$tmp/rep.txt" && "$FUSEC" --emit=report "$g" --dim T=4 -o "$tmp/r/rep.txt" \
    && cmp -s "$tmp/rep.txt" "$tmp/r/rep.txt" && grep -q '^report: block gpt2_block at T=4, P=0' "$tmp/rep.txt" \
    && ok "--emit=report -o writes what standard output gets" || bad "--emit=report -o writes what standard output gets"

# make rules quote what make would split or expand; outputs not named .c get
# .h and .d appended; text outputs get a .d too; a directory in the way of
# the output is named and nothing is left behind
odd="$tmp/q/a b#c\$d.out"
expect_rc "-o with a space, '#' and '\$' and -MD" 0 "$FUSEC" "$g" -o "$odd" -MD
[ -f "$odd" ] && [ -f "$odd.h" ] && head -n 1 "$odd.d" | grep -qF "$tmp/q/a\\ b\\#c\$\$d.out $tmp/q/a\\ b\\#c\$\$d.out.h: " \
    && ok "make-quoted targets, .h and .d appended" || { bad "make-quoted targets, .h and .d appended"; cat "$odd.d"; }
expect_rc "--emit=report -MD" 0 "$FUSEC" --emit=report --dim T=4 "$g" -o "$tmp/q/r.txt" -MD
head -n 1 "$tmp/q/r.txt.d" | grep -q "^$tmp/q/r.txt: .*gpt2_block.fdl .*lib/transformer.fdl" \
    && ok "--emit=report -MD names the report and the sources" || { bad "--emit=report -MD"; cat "$tmp/q/r.txt.d"; }
mkdir "$tmp/q/isdir.c"
expect_rc "output onto a directory" 1 "$FUSEC" "$g" -o "$tmp/q/isdir.c"
grep -qF "cannot write '$tmp/q/isdir.c': Is a directory" "$tmp/err" && [ ! -e "$tmp/q/isdir.h" ] \
    && [ -z "$(ls "$tmp/q" | grep '\.tmp\.')" ] && ok "output onto a directory: named, nothing left" \
    || { bad "output onto a directory: named, nothing left"; cat "$tmp/err"; ls "$tmp/q"; }

# fusec check: usage errors (exit 2) and inputs it refuses before building
# anything (exit 1), each with its message
chk() { # chk RC NAME MESSAGE ARGS...
    want=$1; name=$2; msg=$3; shift 3
    expect_rc "check: $name" "$want" "$FUSEC" check "$@"
    grep -qF -- "$msg" "$tmp/err" && ok "check: $name: the message" || { bad "check: $name: the message"; cat "$tmp/err"; }
}
chk 2 "unknown --no-fuse pass" "--no-fuse: unknown pass in 'foo' (elementwise, norm," "$g" --random --no-fuse foo
chk 2 "--weight-type without =" "--weight-type: expected PATTERN=TYPE, got 'nope'" "$g" --random --weight-type nope
chk 2 "--split 0" "--split: expected a row count >= 1, got '0'" "$g" --random --split 0
chk 2 "--seed -1" "--seed: expected a whole number >= 0, got '-1'" "$g" --random --seed -1
chk 2 "--dim without a number" "--dim: expected NAME=VALUE with 0 <= VALUE <= 1048576, got 'T=x'" "$g" --random --dim T=x
chk 2 "nine --dim" "--dim: more than 8 dims ('I=1')" "$g" --random --dim A=1 --dim B=1 --dim C=1 --dim D=1 \
    --dim E=1 --dim F=1 --dim G=1 --dim H=1 --dim I=1
chk 2 "--rtol without a value" "'--rtol' needs a value" "$g" --random --rtol
chk 2 "two input files" "more than one input file ('$g')" "$g" "$g" --random
chk 2 "--interp without --golden" "--interp checks the interpreter against a golden file" "$g" --random --interp
chk 2 "--dim with --golden" "--dim applies to --random only" "$g" --golden tests/golden/hf/gpt2_block.safetensors --dim T=3
chk 1 "--keep on a file" "--keep: '$tmp/keep.c' is not a directory" "$g" --random --keep "$tmp/keep.c"
chk 1 "--keep under a file" "cannot create '$tmp/keep.c/sub': Not a directory" "$g" --random --keep "$tmp/keep.c/sub"
chk 1 "--dim P=3 (the cache starts empty)" "--dim P: the cache starts empty, so 'P' must be 0" "$g" --random --dim P=3
chk 1 "--dim T=0" "--dim T=0: a block runs on at least one token" "$g" --random --dim T=0
chk 1 "--dim of a name the block lacks" "--dim Q: block 'gpt2_block' has no symbolic dim 'Q'" "$g" --random --dim Q=3
printf 'block s {\n  input x: f32[4, 4];\n  output y = exp(x);\n}\n' >"$tmp/static.fdl"
chk 1 "--split without a token input" "--split: block 's' has no input whose first dim is a token symbol" \
    "$tmp/static.fdl" --random --split 2
chk 1 "--cc that does not exist" "cannot run the C compiler '$tmp/nope-cc' (set CC or --cc)" "$g" --random --cc "$tmp/nope-cc"
FUSEC_RUNTIME_DIR="$tmp/nowhere" chk 1 "a runtime directory without the harness" \
    "harness '$tmp/nowhere/harness/check_main.c' not found: set FUSEC_RUNTIME_DIR" "$g" --random

# a large block's kernels wait in a temporary file in $TMPDIR until the
# layout before them is written (emit_c.c); where none can be made they wait
# in memory: the same bytes either way, single and multi-target (every
# kernel written: FUSEC_SHARE_KERNELS=0, else the repeated layers share theirs
# and the C stays under the spool's 8 MiB)
/usr/bin/python3 bench/compile/gen.py 2000 -o "$tmp/big.fdl"
for t in generic multi:x86-64-avx2,generic; do
    if FUSEC_SHARE_KERNELS=0 "$FUSEC" --target=$t "$tmp/big.fdl" -o "$tmp/spooled.c" 2>"$tmp/err" &&
        FUSEC_SHARE_KERNELS=0 TMPDIR="$tmp/none" "$FUSEC" --target=$t "$tmp/big.fdl" -o "$tmp/inmemory.c" 2>>"$tmp/err" &&
        [ "$(wc -c <"$tmp/spooled.c")" -gt 8388608 ] && sed 's/inmemory\.h/spooled.h/' "$tmp/inmemory.c" | cmp -s - "$tmp/spooled.c"; then
        ok "a large block's C is the same through a temporary file and in memory ($t)"
    else
        bad "a large block's C through a temporary file and in memory ($t)"
        cat "$tmp/err"
    fi
done
rm -f "$tmp/big.fdl" "$tmp/spooled.c" "$tmp/spooled.h" "$tmp/inmemory.c" "$tmp/inmemory.h"

# ---- fusec tune and --tune (the cost model's machine; docs/fusion.md) ----
tu() { # tu NAME WANT MESSAGE ARGS...: fusec tune's exit status and message
    name=$1; want=$2; msg=$3; shift 3
    expect_rc "$name" "$want" "$FUSEC" tune "$@"
    grep -qF -- "$msg" "$tmp/err" && ok "$name: the message" || { bad "$name: the message"; cat "$tmp/err"; }
}
expect_rc "tune --help exits 0" 0 "$FUSEC" tune --help
tu "tune without -o" 2 "fusec tune: error: no output file: use -o FILE"
tu "tune --threads 0" 2 "--threads: expected a count from 1 to 256, got '0'" --threads 0 -o "$tmp/m.tune"
tu "tune of an unknown target" 2 "unknown target 'avx512'; did you mean 'x86-64-avx512'?" --target=avx512 -o "$tmp/m.tune"
tu "tune of a multi: target" 2 "a tune file describes one target row" --target=multi:generic -o "$tmp/m.tune"
tu "tune with a stray argument" 2 "unknown argument 'x.fdl'" x.fdl
[ ! -e "$tmp/m.tune" ] && ok "a refused tune writes nothing" || bad "a refused tune wrote $tmp/m.tune"
expect_rc "tune of generic on 2 threads" 0 "$FUSEC" tune --target=generic --threads=2 --no-tiles -o "$tmp/m.tune"
grep -q "^fusec-tune 1$" "$tmp/m.tune" && grep -q "^target generic$" "$tmp/m.tune" && grep -q "^threads 2$" "$tmp/m.tune" &&
    ok "tune writes a tune file" || { bad "tune writes a tune file"; cat "$tmp/m.tune"; }
"$FUSEC" --tune="$tmp/m.tune" "$g" -o "$tmp/t1.c" && "$FUSEC" --tune="$tmp/m.tune" "$g" -o "$tmp/t2.c" &&
    sed 's/t2\.h/t1.h/' "$tmp/t2.c" | cmp -s - "$tmp/t1.c" && ok "--tune: the same file gives the same C" ||
    bad "--tune: the same file gives the same C"
"$FUSEC" --explain --tune="$tmp/m.tune" "$g" >"$tmp/out" && grep -q "mlp: .*(cost: decode .*generic, 2 threads)" "$tmp/out" &&
    ok "--explain gives the tuned machine's estimates" || { bad "--explain gives the tuned machine's estimates"; cat "$tmp/out"; }
badtune() { # badtune NAME MESSAGE TEXT [ARGS...]: exit 1 with FILE:LINE: error: MESSAGE
    name=$1; msg=$2; printf "$3" >"$tmp/bad.tune"; shift 3
    expect_rc "$name" 1 "$FUSEC" --tune="$tmp/bad.tune" "$@" "$g" -o "$tmp/bt.c"
    grep -qF -- "$msg" "$tmp/err" && ok "$name: the message" || { bad "$name: the message"; cat "$tmp/err"; }
    [ ! -e "$tmp/bt.c" ] && ok "$name: no output" || bad "$name: wrote output"
}
badtune "--tune: no header" "bad.tune:1: error: expected the header 'fusec-tune 1'" "target generic\n"
badtune "--tune: unknown key" "bad.tune:3: error: unknown key 'speed'" "fusec-tune 1\ntarget generic\nspeed 3\n"
badtune "--tune: a bad number" "bad.tune:3: error: 'x' is not a number" "fusec-tune 1\ntarget generic\nbw_gbs x\n"
badtune "--tune: another target" "the tune file measured target generic, not x86-64-avx2 (run fusec tune --target=x86-64-avx2)" \
    "fusec-tune 1\ntarget generic\n" --target=x86-64-avx2
expect_rc "--tune: a missing file" 1 "$FUSEC" --tune="$tmp/none.tune" "$g" -o "$tmp/bt.c"
grep -qF "none.tune: error: cannot read the tune file" "$tmp/err" && ok "--tune: a missing file: the message" ||
    { bad "--tune: a missing file: the message"; cat "$tmp/err"; }
expect_rc "check --tune: a bad file" 1 "$FUSEC" check "$g" --random --tune="$tmp/bad.tune" --target=x86-64-avx2
# tile keys (TargetTiles, docs/fusion.md "Tiles"): they change the C, identically twice, and the
# C they give still matches the interpreter (odd T, decode through --split, keys split 1 by 1)
printf 'fusec-tune 1\ntarget x86-64-avx512\ngemm_kc 48\ngemm_mc 28\ngemm_nc 96\ngemm_mchunk 56\ngemv_chunk 64\nattn_key_block 128\nattn_query_rows 6\nattn_direct_rows 2\nattn_split_keys 3\n' >"$tmp/tiles.tune"
"$FUSEC" --target=x86-64-avx512 "$g" -o "$tmp/t0.c" && "$FUSEC" --target=x86-64-avx512 --tune="$tmp/tiles.tune" "$g" -o "$tmp/t1.c" &&
    "$FUSEC" --target=x86-64-avx512 --tune="$tmp/tiles.tune" "$g" -o "$tmp/t2.c" &&
    sed 's/t2\.h/t1.h/' "$tmp/t2.c" | cmp -s - "$tmp/t1.c" && ok "--tune tiles: the same file gives the same C" ||
    bad "--tune tiles: the same file gives the same C"
grep -q "enum { FU_BK = 128 };" "$tmp/t1.c" && grep -q "KC 48, MC 28, NC 96" "$tmp/t1.c" &&
    grep -q "enum { FU_BK = 64 };" "$tmp/t0.c" && ok "--tune tiles: the key block and the GEMM blocking follow the file" ||
    bad "--tune tiles: the key block and the GEMM blocking follow the file"
printf 'fusec-tune 1\ntarget generic\ngemm_kc 32\ngemm_mc 12\ngemm_nc 8\ngemm_mchunk 20\ngemv_chunk 4\nattn_key_block 12\nattn_query_rows 5\nattn_direct_rows 0\nattn_split_keys 1\nmlp_floats 4096\ngemv_max_rows 5\n' >"$tmp/tiles_g.tune"
# gpt2_block: 5 rows by GEMV (gemv_max_rows), then decode; llama_layer: 11 rows by GEMM
expect_rc "check --tune tiles (gpt2_block, split)" 0 "$FUSEC" check "$g" --random --tune="$tmp/tiles_g.tune" --dim T=11 --split 5
expect_rc "check --tune tiles (llama_layer)" 0 "$FUSEC" check dsl-examples/llama_layer.fdl --random --tune="$tmp/tiles_g.tune" --dim T=11
# fusec tune --quick measures tile candidates (each built and checked by fusec check): its file is
# one --tune accepts, and every kind's candidates are in its comments (no timing is judged)
mkdir "$tmp/tt"
expect_rc "tune --quick (tiles)" 0 env TMPDIR="$tmp/tt" "$FUSEC" tune --quick --target=generic -o "$tmp/q.tune"
for kind in gemm attention gemv; do
    grep -Eq "^#   $kind T=[0-9]+: .*: [0-9.]+ ms$" "$tmp/q.tune" && ok "tune --quick timed $kind candidates" ||
        { bad "tune --quick timed $kind candidates"; cat "$tmp/q.tune" "$tmp/err"; }
done
grep -q "^attn_key_block [0-9]" "$tmp/q.tune" && grep -q "^gemm_kc [0-9]" "$tmp/q.tune" &&
    ok "tune --quick writes the tile keys" || bad "tune --quick writes the tile keys"
expect_rc "--tune accepts tune --quick's file" 0 "$FUSEC" --tune="$tmp/q.tune" "$g" -o "$tmp/q.c"
[ -n "$(ls "$tmp/tt")" ] && bad "tune --quick leaves its benchmark directory" ||
    ok "tune --quick removes its benchmark directory"
# no C compiler: the benchmarks cannot be built; the file keeps the row's tiles, with a warning
mkdir "$tmp/nocache"
expect_rc "tune --quick without a C compiler" 0 env CC=false FUSEC_CHECK_CACHE="$tmp/nocache" TMPDIR="$tmp/tt" \
    "$FUSEC" tune --quick --target=generic -o "$tmp/nocc.tune"
grep -qF "cannot build or run the gemm benchmark with the row's own tiles" "$tmp/err" && grep -q "^gemm_kc 256$" "$tmp/nocc.tune" &&
    [ -z "$(ls "$tmp/tt")" ] && ok "tune --quick without a C compiler: a warning, the row's tiles" ||
    { bad "tune --quick without a C compiler: a warning, the row's tiles"; cat "$tmp/err"; }
badtune "--tune: a tile not a multiple of nr" "bad.tune:4: error: gemm_nc 100 is not a multiple of the register tile's columns (nr), 32 on x86-64-avx512" \
    "fusec-tune 1\ntarget x86-64-avx512\n\ngemm_nc 100\n" --target=x86-64-avx512
badtune "--tune: a key block not a multiple of the scores' block" "bad.tune:2: error: attn_key_block 32 is not a multiple of the keys of one register block of scores, 64 on x86-64-avx512" \
    "fusec-tune 1\nattn_key_block 32\ntarget x86-64-avx512\n" --target=x86-64-avx512
badtune "--tune: a tile out of range" "bad.tune:3: error: attn_query_rows 0 is out of range (an integer from 1 to 1024)" \
    "fusec-tune 1\ntarget generic\nattn_query_rows 0\n"
badtune "--tune: GEMV rows out of range" "bad.tune:3: error: gemv_max_rows 9 is out of range (an integer from 4 to 8)" \
    "fusec-tune 1\ntarget generic\ngemv_max_rows 9\n"
badtune "--tune: a fractional tile" "bad.tune:3: error: gemm_kc 32.5 is out of range" "fusec-tune 1\ntarget generic\ngemm_kc 32.5\n"
badtune "--tune: MC above the accumulator's rows" "bad.tune:4: error: gemm_mc 64 is above gemm_mchunk 32" \
    "fusec-tune 1\ntarget generic\ngemm_mchunk 32\ngemm_mc 64\n"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
