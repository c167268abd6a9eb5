#!/bin/sh
# tests/golden/run.sh - end-to-end tests of `fusec check` and its harness.
#
#  1. The harness alone, on a hand-written block (tiny_block.c) against numpy
#     (tiny_ref.py): all rows at once, prefill + decode splits, error cases.
#  2. The examples against the Hugging Face golden layers in $GOLDEN:
#     generated C at -O0 (all at once, and --split 5), fused with --split 1
#     (every token decoded one by one), the float64 interpreter (--interp),
#     and llama_layer_prim.fdl (attention and RMSNorm from primitives)
#     against the same llama file.  The interpreter is held to 1e-12 against
#     a float64 numpy run on exactly the stored weights and inputs
#     (tests/interp/np64, by tests/interp/gen_np64.py), and to just above
#     the measured error against out64 itself, which does not follow from
#     the stored float32 values to float64 precision (rel. L2 1.5e-7 for
#     Llama, 2.3e-8 for GPT-2: the size of rounding them to float32).
#  3. --random against the interpreter: -O0 at T = 64, --split 50, seed 7.
#  4. Checks that must fail, each the way it should (exit status, message,
#     and for a wrong answer the FAIL line with its figure in range): a block
#     with a wrong rope theta or eps, a too tight tolerance, a kernel whose
#     expf is 0.1% off (tests/golden/bad_expf.h: the negative control every
#     suite built on `fusec check --random` rests on), one element 3% off
#     among 2^17 (wide.fdl; caught by the max-error metric where relative L2
#     is not), mismatched golden files, bad usage; no temporary file left.
#  5. The build cache (FUSEC_CHECK_CACHE): a rebuilt harness comes from it, a
#     change in the C, the flags or the runtime misses it, concurrent checks
#     share it, and it can be turned off.
#
# tests/fusion checks the fused examples against the golden files (all rows,
# and --split 12: prefill 12 then decode token 12, as the golden README asks)
# and against the interpreter at T = 1, 7, 64 (fused and -O0): not repeated here.
#
# Environment: FUSEC (default build/fusec), GOLDEN (default tests/golden/hf), CC,
# FUSEC_LIB_DIR (default build), SAN=1 for a sanitizer build.
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${CC:=cc}" "${FUSEC_LIB_DIR:=build}" "${SAN:=0}"
PY=/usr/bin/python3
G=$GOLDEN
LLAMA=$G/llama_layer.safetensors
GPT2=$G/gpt2_block.safetensors
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-golden.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

# fails STATUS REGEX NAME CMD...: CMD must exit with STATUS and print a line
# matching the extended regular expression REGEX: the failure expected, not
# just any (exit 1 is also bad input; a Python traceback is exit 1 too).
fails() {
    want=$1 re=$2 name=$3
    shift 3
    "$@" >"$tmp/log" 2>&1
    got=$?
    if [ "$got" -eq "$want" ] && grep -Eq -- "$re" "$tmp/log"; then
        ok "$name: $(grep -E -m 1 -- "$re" "$tmp/log" | cut -c 1-160)"
    else
        bad "$name (exit $got, expected $want and a line matching '$re')"
        sed 's/^/       /' "$tmp/log" | head -40
    fi
}

# in_range V LO HI: LO <= V <= HI, numerically (V may be 1.2e-05, nan, empty).
in_range() {
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v ~ /^[0-9.e+-]+$/ && v + 0 >= lo + 0 && v + 0 <= hi + 0) }'
}

# mismatch NAME "KEY:LO:HI ..." CMD...: CMD must exit 1 with a FAIL line of
# the comparison ("OUT: ... KEY=V ... FAIL") whose every KEY lies in its
# [LO, HI]: the output is wrong, by about as much as the fault makes it.
mismatch() {
    name=$1 ranges=$2
    shift 2
    "$@" >"$tmp/log" 2>&1
    got=$?
    line=$(grep -E -m 1 '^[A-Za-z_][A-Za-z0-9_.]*: max_abs_err=.* FAIL$' "$tmp/log")
    why=""
    [ "$got" -eq 1 ] || why="exit $got, expected 1"
    [ -n "$line" ] || why="$why; no FAIL line"
    for r in $ranges; do
        key=${r%%:*} lo=${r#*:} hi=${r##*:}
        lo=${lo%%:*}
        v=$(printf '%s\n' "$line" | sed -n "s/.* $key=\([^ ]*\) .*/\1/p")
        in_range "$v" "$lo" "$hi" || why="$why; $key=$v not in [$lo, $hi]"
    done
    if [ -z "$why" ]; then
        ok "$name: $line"
    else
        bad "$name (${why#; })"
        sed 's/^/       /' "$tmp/log" | head -40
    fi
}

# ---- 1. the harness on a hand-written block ---------------------------------
sanflags=
[ "$SAN" = 1 ] && sanflags="-fsanitize=address,undefined"
tiny=$tmp/tiny
# shellcheck disable=SC2086
if $CC -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror $sanflags -Iruntime -DFUSEC_BLOCK_DESC=tiny_desc \
    tests/golden/tiny_block.c runtime/harness/check_main.c "$FUSEC_LIB_DIR/libfusec_rt.a" \
    -lm -lpthread -o "$tiny" >"$tmp/log" 2>&1; then
    ok "harness: builds with tiny_block.c"
    if ! { $PY tests/golden/tiny_ref.py make "$tmp/t9.st" 9 1 &&
        $PY tests/golden/tiny_ref.py make "$tmp/t9b.st" 9 2 &&
        $PY tests/golden/tiny_ref.py make "$tmp/t1.st" 1 3 &&
        $PY tests/golden/tiny_ref.py make "$tmp/nos.st" 9 1 -w.scale &&
        $PY tests/golden/tiny_ref.py make "$tmp/nox.st" 9 1 -in.x &&
        $PY tests/golden/tiny_ref.py make "$tmp/fpos.st" 9 1 in.pos:f32; }; then
        bad "harness: tiny_ref.py make"
    fi
    for split in "" 1 4 8 9; do
        rm -f "$tmp/o.st"
        if "$tiny" "$tmp/t9.st" "$tmp/o.st" ${split:+--split "$split"} >"$tmp/log" 2>&1 &&
            $PY tests/golden/tiny_ref.py cmp "$tmp/t9.st" "$tmp/o.st" >>"$tmp/log" 2>&1; then
            ok "harness: tiny T=9 ${split:+--split $split}"
        else
            bad "harness: tiny T=9 ${split:+--split $split}"
            sed 's/^/       /' "$tmp/log"
        fi
    done
    expect 0 "harness: tiny T=1" "$tiny" "$tmp/t1.st" "$tmp/o1.st"
    expect 0 "harness: tiny T=1 output matches numpy" $PY tests/golden/tiny_ref.py cmp "$tmp/t1.st" "$tmp/o1.st"
    # The comparison itself must be able to fail: seed 1's output is not seed 2's.
    "$tiny" "$tmp/t9.st" "$tmp/o.st" >/dev/null 2>&1
    fails 1 '^y: rel_l2_err=(0\.[1-9]|[1-9])[0-9.e+-]* FAIL$' "harness: output differs from another input's reference" \
        $PY tests/golden/tiny_ref.py cmp "$tmp/t9b.st" "$tmp/o.st"
    if "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 3 --repeat 3 2>&1 | grep -q "median"; then
        ok "harness: --repeat prints the median time"
    else
        bad "harness: --repeat prints the median time"
    fi
    fails 1 "^harness: error: .*'w\.scale'" "harness: missing weight" "$tiny" "$tmp/nos.st" "$tmp/o.st"
    fails 1 "^harness: error: input 'in\.x' not found" "harness: missing input" "$tiny" "$tmp/nox.st" "$tmp/o.st"
    fails 1 "^harness: error: input 'in\.pos': dtype F32, block expects I32" "harness: input of the wrong dtype" \
        "$tiny" "$tmp/fpos.st" "$tmp/o.st"
    fails 1 "^harness: error: .*none\.st.*(No such file|cannot open)" "harness: input file missing" \
        "$tiny" "$tmp/none.st" "$tmp/o.st"
    head -c 100 "$tmp/t9.st" >"$tmp/trunc.st"
    fails 1 "^harness: error: .*trunc\.st" "harness: truncated input file" "$tiny" "$tmp/trunc.st" "$tmp/o.st"
    : >"$tmp/empty.st"
    fails 1 "^harness: error: .*empty\.st" "harness: empty input file" "$tiny" "$tmp/empty.st" "$tmp/o.st"
    fails 1 "^harness: error: --split" "harness: --split 0" "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 0
    fails 1 "^harness: error: --split 10: only 9 rows" "harness: --split past the rows" \
        "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 10
    fails 1 "^harness: error: .*nodir" "harness: output directory missing" "$tiny" "$tmp/t9.st" "$tmp/nodir/o.st"
    fails 1 "^usage: harness IN" "harness: no arguments" "$tiny"
else
    bad "harness: builds with tiny_block.c"
    sed 's/^/       /' "$tmp/log"
fi

# ---- 2. the examples against the golden layers --------------------------------
# A golden file whose out64 is numpy's float64 on the stored values: the
# golden weights and inputs with tests/interp/np64's output.
$PY - "$G" "$tmp" <<'PYEOF' || bad "compose the numpy float64 golden files"
import sys
sys.path.insert(0, "tests/golden")
from tiny_ref import read_st, write_st
g, tmp = sys.argv[1], sys.argv[2]
for ex in ("llama_layer", "gpt2_block"):
    t = {k: v for k, v in read_st(f"{g}/{ex}.safetensors").items() if k[:2] in ("w.", "in")}
    t["out64.hidden_states"] = read_st(f"tests/interp/np64/{ex}.safetensors")["out64.hidden_states"]
    write_st(f"{tmp}/{ex}.np64.safetensors", t)
PYEOF
for ex in llama_layer gpt2_block; do
    fdl=dsl-examples/$ex.fdl
    gold=$G/$ex.safetensors
    np64=$tmp/$ex.np64.safetensors
    case $ex in llama_layer) irtol=3e-7 ;; *) irtol=5e-8 ;; esac
    expect 0 "$ex: golden -O0" "$FUSEC" check "$fdl" --golden "$gold" -O0
    expect 0 "$ex: golden --split 1" "$FUSEC" check "$fdl" --golden "$gold" --split 1
    expect 0 "$ex: golden -O0 --split 5" "$FUSEC" check "$fdl" --golden "$gold" -O0 --split 5
    expect 0 "$ex: interpreter vs golden out64 (rtol $irtol)" "$FUSEC" check "$fdl" --golden "$gold" --interp --rtol "$irtol"
    expect 0 "$ex: interpreter vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --rtol 1e-12 --max-tol 1e-12
    expect 0 "$ex: interpreter --split 12 vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --split 12 --rtol 1e-12 --max-tol 1e-12
    expect 0 "$ex: interpreter --split 1 vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --split 1 --rtol 1e-12 --max-tol 1e-12
done
prim=dsl-examples/llama_layer_prim.fdl
expect 0 "llama_layer_prim: golden -O0" "$FUSEC" check "$prim" --golden "$LLAMA" -O0
expect 0 "llama_layer_prim: golden --split 1" "$FUSEC" check "$prim" --golden "$LLAMA" --split 1
expect 0 "llama_layer_prim: interpreter vs golden out64 (rtol 3e-7)" "$FUSEC" check "$prim" --golden "$LLAMA" --interp --rtol 3e-7
expect 0 "llama_layer_prim: interpreter vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$prim" --golden "$tmp/llama_layer.np64.safetensors" --interp --rtol 1e-12 --max-tol 1e-12

# ---- 3. random data against the interpreter ----------------------------------
# (fused at T = 1, 7, 64: tests/fusion)
for ex in llama_layer gpt2_block llama_layer_prim; do
    expect 0 "$ex: random T=64 -O0 --split 50 --seed 7" "$FUSEC" check "dsl-examples/$ex.fdl" --random --dim T=64 -O0 --split 50 --seed 7
done

# ---- 4. checks that must fail ---------------------------------------------------
# A wrong block: the llama layer (with its imports) with rope theta 10000 -> 500
# (measured: rel. L2 0.24).
mkdir -p "$tmp/wrong" && cp -R dsl-examples/. "$tmp/wrong/"
sed 's/10000/500/g' dsl-examples/llama_layer.fdl >"$tmp/wrong/llama_layer.fdl"
if cmp -s dsl-examples/llama_layer.fdl "$tmp/wrong/llama_layer.fdl"; then
    bad "wrong theta: llama_layer.fdl has no 10000 to change"
else
    mismatch "wrong theta: generated C fails the golden check" "rel_l2_err:1e-2:10" \
        "$FUSEC" check "$tmp/wrong/llama_layer.fdl" --golden "$LLAMA"
    mismatch "wrong theta: interpreter fails the golden check" "rel_l2_err:1e-2:10" \
        "$FUSEC" check "$tmp/wrong/llama_layer.fdl" --golden "$LLAMA" --interp
fi
# A wrong eps: every rms_norm's eps = ... becomes 0.01 (measured: 8.3e-3).
sed 's/eps *= *[A-Za-z0-9_.+-]*/eps = 0.01/g' dsl-examples/llama_layer.fdl >"$tmp/wrong/llama_eps.fdl"
if cmp -s dsl-examples/llama_layer.fdl "$tmp/wrong/llama_eps.fdl"; then
    bad "wrong eps: llama_layer.fdl has no 'eps = ...' to change"
else
    mismatch "wrong eps: generated C fails the golden check" "rel_l2_err:1e-3:1" \
        "$FUSEC" check "$tmp/wrong/llama_eps.fdl" --golden "$LLAMA"
fi
# A correct block held to 1e-12 fails by its float32 rounding (measured 7.5e-7).
mismatch "a too tight tolerance fails" "rel_l2_err:1e-8:1e-5" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --rtol 1e-12
# The negative control of `fusec check --random`: a kernel whose expf is 0.1%
# off (silu and softmax; bad_expf.h forced into the build) must fail
# (measured: rel. L2 1.2e-4 llama, 1.7e-4 gpt2; correct code 5e-7).
for ex in llama_layer gpt2_block; do
    mismatch "negative control: $ex with expf 0.1% off fails --random" "rel_l2_err:2e-5:1e-3" \
        env CC="$CC -include $PWD/tests/golden/bad_expf.h" "$FUSEC" check "dsl-examples/$ex.fdl" --random --dim T=7
done
# One element 3% off among 2^17 (wide.fdl at T = 128): the relative L2 error
# (1.6e-5) passes the random-program tester's rtol 1e-4, the max error scaled
# by the largest |ref| (9.4e-4) fails --max-tol.
mismatch "one element 3% off among 2^17 fails by the max error" "rel_l2_err:0:1e-4 scaled_max_err:2e-4:1e-2" \
    env CC="$CC -DFUSEC_HARNESS_SCALE_ONE=1.03" "$FUSEC" check tests/golden/wide.fdl --random --dim T=128 --rtol 1e-4
expect 0 "wide.fdl T=128 without the fault passes" "$FUSEC" check tests/golden/wide.fdl --random --dim T=128 --rtol 1e-4
fails 1 "no tensor 'in\.position_ids'" "gpt2 golden file for the llama block" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$GPT2"
fails 1 "none\.safetensors: cannot open" "golden file missing" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/none.safetensors"
head -c 5000 "$LLAMA" >"$tmp/trunc.safetensors"
fails 1 "trunc\.safetensors: tensor '.*'.*past the data area" "golden file truncated" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/trunc.safetensors"
fails 1 "error: --dim Q: block 'llama_layer' has no symbolic dim 'Q'" "--dim of an unknown symbol" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --random --dim Q=3
fails 1 "error: --split 14: there are only 13 rows" "--split longer than the golden rows" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --split 14
# Generated C that does not compile, or a block that crashes, is fusec's bug:
# exit 70.  Simulated by a header forced into every file the harness build
# compiles.
printf 'int fusec_check_broken = ;\n' >"$tmp/broken.h"
printf '#include <signal.h>\n__attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }\n' >"$tmp/crash.h"
fails 70 "internal error: the generated C for block 'gpt2_block' does not compile" \
    "C that does not compile is an internal error" \
    env CC="$CC -include $tmp/broken.h" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
fails 70 "internal error: the generated block (crashed \(signal 11\)|failed a sanitizer check)" \
    "a crashing block is an internal error" \
    env CC="$CC -include $tmp/crash.h" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
fails 1 "cannot run the C compiler '/nonexistent/cc'" "no C compiler" \
    env CC=/nonexistent/cc "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
fails 1 "runtime library '.*nolib/libfusec_rt\.a' not found" "no runtime library" \
    env FUSEC_LIB_DIR="$tmp/nolib" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
fails 2 "error: no input file" "usage: no arguments" "$FUSEC" check
fails 2 "error: give exactly one of --golden" "usage: --golden and --random" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --random
fails 2 "error: unknown option '--frobnicate'" "usage: unknown option" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --random --frobnicate
fails 2 "error: --rtol: expected a non-negative number, got 'abc'" "usage: bad --rtol" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --random --rtol abc
fails 2 "error: --max-tol: expected a non-negative number, got '-1'" "usage: bad --max-tol" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --random --max-tol -1
fails 2 "error: unknown target 'vax'" "usage: unknown target" \
    "$FUSEC" check dsl-examples/llama_layer.fdl --random --target vax
fails 0 "^usage: fusec check .*" "usage: --help" "$FUSEC" check --help

# The temporary build directory is removed; --keep keeps its files.
mkdir -p "$tmp/tmpdir"
TMPDIR=$tmp/tmpdir "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2 >/dev/null 2>&1
if [ -z "$(ls -A "$tmp/tmpdir")" ]; then ok "no temporary files left"; else bad "temporary files left: $(ls "$tmp/tmpdir")"; fi
expect 0 "--keep" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2 --keep "$tmp/kept"
for f in block.c block.h harness in.safetensors out.safetensors; do
    [ -f "$tmp/kept/$f" ] || bad "--keep: $f missing"
done

# ---- 5. the build cache -----------------------------------------------------------
# A cache of its own, so what is counted here is this suite's doing.
C=$tmp/cache
fails 0 "check: cached the harness as $C/h-[0-9a-f]{32}$" "cache: a first build is cached" \
    env FUSEC_CHECK_CACHE="$C" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -v
fails 0 "check: the harness from the cache: $C/h-[0-9a-f]{32}$" "cache: T=9 --split 4 builds nothing (same C)" \
    env FUSEC_CHECK_CACHE="$C" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=9 --split 4 -v
fails 0 "check: cached the harness as" "cache: -O0 is other C: built" \
    env FUSEC_CHECK_CACHE="$C" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -O0 -v
fails 0 "check: cached the harness as" "cache: another CC is another build" \
    env FUSEC_CHECK_CACHE="$C" CC="$CC -DFUSEC_UNUSED=1" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -v
# a runtime source that changed (a copy with one more comment) is a miss
cp -R runtime "$tmp/rt2" && printf '/* changed */\n' >>"$tmp/rt2/timer.c"
fails 0 "check: cached the harness as" "cache: a changed runtime source is a miss" \
    env FUSEC_CHECK_CACHE="$C" FUSEC_RUNTIME_DIR="$tmp/rt2" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -v
n=$(ls "$C" | grep -c '^h-')
if [ "$n" -eq 4 ]; then ok "cache: 4 harnesses for 5 checks"; else bad "cache: $n harnesses for 5 checks, want 4"; fi
# four checks at once on an empty cache: all pass, one entry, no temporary file
C2=$tmp/cache2
for i in 1 2 3 4; do
    FUSEC_CHECK_CACHE="$C2" "$FUSEC" check dsl-examples/llama_layer.fdl --random --dim T=$i >"$tmp/par$i.log" 2>&1 &
done
nok=0
wait
for i in 1 2 3 4; do grep -q ' ok$' "$tmp/par$i.log" && nok=$((nok + 1)); done
if [ "$nok" -eq 4 ] && [ "$(ls -A "$C2" | grep -c '^h-')" -eq 1 ] && [ -z "$(ls -A "$C2" | grep -v '^h-')" ]; then
    ok "cache: four concurrent checks pass and share one entry"
else
    bad "cache: four concurrent checks: $nok passed; cache holds: $(ls -A "$C2" | tr '\n' ' ')"
    cat "$tmp"/par*.log | sed 's/^/       /' | head -30
fi
if FUSEC_CHECK_CACHE=off "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -v >"$tmp/log" 2>&1 &&
    ! grep -q "cache" "$tmp/log"; then
    ok "cache: FUSEC_CHECK_CACHE=off builds without one"
else
    bad "cache: FUSEC_CHECK_CACHE=off builds without one"
    sed 's/^/       /' "$tmp/log" | head -20
fi
fails 0 "check: cached the harness as .*/fusec/check/h-" "cache: the default is \$XDG_CACHE_HOME/fusec/check" \
    env -u FUSEC_CHECK_CACHE XDG_CACHE_HOME="$tmp/xdg" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 -v
# FUSEC_CHECK_CACHE_MAX=2: the least recently used entries go (--fuse-all: a
# schedule none of the checks above built, so a third entry)
FUSEC_CHECK_CACHE="$C" FUSEC_CHECK_CACHE_MAX=2 "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=3 \
    --fuse-all >/dev/null 2>&1
n=$(ls "$C" | grep -c '^h-')
if [ "$n" -eq 2 ]; then ok "cache: FUSEC_CHECK_CACHE_MAX=2 keeps 2 entries"; else bad "cache: FUSEC_CHECK_CACHE_MAX=2 left $n entries"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
