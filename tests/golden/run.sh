#!/bin/sh
# tests/golden/run.sh - end-to-end tests of `fusec check` and its harness.
#
#  1. The harness alone, on a hand-written block (tiny_block.c) against numpy
#     (tiny_ref.py): all rows at once, prefill + decode splits, error cases.
#  2. The examples against the Hugging Face golden layers in $GOLDEN:
#     generated C (default and -O0; all at once, --split 12 = prefill 12 then
#     decode token 12 as the golden README asks, --split 1 = every token
#     decoded one by one), the float64 interpreter (--interp), and
#     llama_layer_prim.fdl (attention and RMSNorm from primitives) against
#     the same llama file.  The interpreter is held to 1e-12 against a
#     float64 numpy run on exactly the stored weights and inputs
#     (tests/interp/np64, by tests/interp/gen_np64.py), and to just above
#     the measured error against out64 itself, which does not follow from
#     the stored float32 values to float64 precision (rel. L2 1.5e-7 for
#     Llama, 2.3e-8 for GPT-2: the size of rounding them to float32).
#  3. --random against the interpreter for T = 1, 7, 64.
#  4. Checks that must fail: a block with a wrong rope theta, mismatched
#     golden files, bad usage; and that no temporary directory is left behind.
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

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# expect STATUS NAME CMD...: CMD must exit with STATUS.  The output of a
# passing check is shown indented (it holds the measured errors); a failing
# one shows everything.
expect() {
    want=$1 name=$2
    shift 2
    "$@" >"$tmp/log" 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then
        ok "$name"
        grep -E 'err=' "$tmp/log" | sed 's/^/       /'
    else
        bad "$name (exit $got, expected $want)"
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
    expect 1 "harness: output differs from another input's reference" \
        $PY tests/golden/tiny_ref.py cmp "$tmp/t9b.st" "$tmp/o.st"
    if "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 3 --repeat 3 2>&1 | grep -q "median"; then
        ok "harness: --repeat prints the median time"
    else
        bad "harness: --repeat prints the median time"
    fi
    expect 1 "harness: missing weight" "$tiny" "$tmp/nos.st" "$tmp/o.st"
    expect 1 "harness: missing input" "$tiny" "$tmp/nox.st" "$tmp/o.st"
    expect 1 "harness: input of the wrong dtype" "$tiny" "$tmp/fpos.st" "$tmp/o.st"
    expect 1 "harness: input file missing" "$tiny" "$tmp/none.st" "$tmp/o.st"
    head -c 100 "$tmp/t9.st" >"$tmp/trunc.st"
    expect 1 "harness: truncated input file" "$tiny" "$tmp/trunc.st" "$tmp/o.st"
    : >"$tmp/empty.st"
    expect 1 "harness: empty input file" "$tiny" "$tmp/empty.st" "$tmp/o.st"
    expect 1 "harness: --split 0" "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 0
    expect 1 "harness: --split past the rows" "$tiny" "$tmp/t9.st" "$tmp/o.st" --split 10
    expect 1 "harness: output directory missing" "$tiny" "$tmp/t9.st" "$tmp/nodir/o.st"
    expect 1 "harness: no arguments" "$tiny"
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
    expect 0 "$ex: golden" "$FUSEC" check "$fdl" --golden "$gold"
    expect 0 "$ex: golden -O0" "$FUSEC" check "$fdl" --golden "$gold" -O0
    expect 0 "$ex: golden --split 12" "$FUSEC" check "$fdl" --golden "$gold" --split 12
    expect 0 "$ex: golden --split 1" "$FUSEC" check "$fdl" --golden "$gold" --split 1
    expect 0 "$ex: golden -O0 --split 5" "$FUSEC" check "$fdl" --golden "$gold" -O0 --split 5
    expect 0 "$ex: interpreter vs golden out64 (rtol $irtol)" "$FUSEC" check "$fdl" --golden "$gold" --interp --rtol "$irtol"
    expect 0 "$ex: interpreter vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --rtol 1e-12
    expect 0 "$ex: interpreter --split 12 vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --split 12 --rtol 1e-12
    expect 0 "$ex: interpreter --split 1 vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$fdl" --golden "$np64" --interp --split 1 --rtol 1e-12
done
prim=dsl-examples/llama_layer_prim.fdl
expect 0 "llama_layer_prim: golden" "$FUSEC" check "$prim" --golden "$LLAMA"
expect 0 "llama_layer_prim: golden -O0" "$FUSEC" check "$prim" --golden "$LLAMA" -O0
expect 0 "llama_layer_prim: golden --split 12" "$FUSEC" check "$prim" --golden "$LLAMA" --split 12
expect 0 "llama_layer_prim: golden --split 1" "$FUSEC" check "$prim" --golden "$LLAMA" --split 1
expect 0 "llama_layer_prim: interpreter vs golden out64 (rtol 3e-7)" "$FUSEC" check "$prim" --golden "$LLAMA" --interp --rtol 3e-7
expect 0 "llama_layer_prim: interpreter vs numpy float64 (rtol 1e-12)" "$FUSEC" check "$prim" --golden "$tmp/llama_layer.np64.safetensors" --interp --rtol 1e-12

# ---- 3. random data against the interpreter ----------------------------------
for ex in llama_layer gpt2_block llama_layer_prim; do
    for t in 1 7 64; do
        expect 0 "$ex: random T=$t" "$FUSEC" check "dsl-examples/$ex.fdl" --random --dim "T=$t"
    done
    expect 0 "$ex: random T=64 -O0 --split 50 --seed 7" "$FUSEC" check "dsl-examples/$ex.fdl" --random --dim T=64 -O0 --split 50 --seed 7
done

# ---- 4. checks that must fail ---------------------------------------------------
# A wrong block: the llama layer (with its imports) with rope theta 10000 -> 500.
mkdir -p "$tmp/wrong" && cp -R dsl-examples/. "$tmp/wrong/"
sed 's/10000/500/g' dsl-examples/llama_layer.fdl >"$tmp/wrong/llama_layer.fdl"
if cmp -s dsl-examples/llama_layer.fdl "$tmp/wrong/llama_layer.fdl"; then
    bad "wrong theta: llama_layer.fdl has no 10000 to change"
else
    expect 1 "wrong theta: generated C fails the golden check" "$FUSEC" check "$tmp/wrong/llama_layer.fdl" --golden "$LLAMA"
    expect 1 "wrong theta: interpreter fails the golden check" "$FUSEC" check "$tmp/wrong/llama_layer.fdl" --golden "$LLAMA" --interp
fi
# A wrong eps: every rms_norm's eps = ... becomes 0.01.
sed 's/eps *= *[A-Za-z0-9_.+-]*/eps = 0.01/g' dsl-examples/llama_layer.fdl >"$tmp/wrong/llama_eps.fdl"
if cmp -s dsl-examples/llama_layer.fdl "$tmp/wrong/llama_eps.fdl"; then
    bad "wrong eps: llama_layer.fdl has no 'eps = ...' to change"
else
    expect 1 "wrong eps: generated C fails the golden check" "$FUSEC" check "$tmp/wrong/llama_eps.fdl" --golden "$LLAMA"
fi
expect 1 "a too tight tolerance fails" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --rtol 1e-12
expect 1 "gpt2 golden file for the llama block" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$GPT2"
expect 1 "golden file missing" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/none.safetensors"
head -c 5000 "$LLAMA" >"$tmp/trunc.safetensors"
expect 1 "golden file truncated" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$tmp/trunc.safetensors"
expect 1 "--dim of an unknown symbol" "$FUSEC" check dsl-examples/llama_layer.fdl --random --dim Q=3
expect 1 "--split longer than the golden rows" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --split 14
# Generated C that does not compile, or a block that crashes, is fusec's bug:
# exit 70.  Simulated by a header forced into every file the harness build
# compiles.
printf 'int fusec_check_broken = ;\n' >"$tmp/broken.h"
printf '#include <signal.h>\n__attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }\n' >"$tmp/crash.h"
expect 70 "C that does not compile is an internal error" env CC="$CC -include $tmp/broken.h" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
expect 70 "a crashing block is an internal error" env CC="$CC -include $tmp/crash.h" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
expect 1 "no C compiler" env CC=/nonexistent/cc "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
expect 1 "no runtime library" env FUSEC_LIB_DIR="$tmp/nolib" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2
expect 2 "usage: no arguments" "$FUSEC" check
expect 2 "usage: --golden and --random" "$FUSEC" check dsl-examples/llama_layer.fdl --golden "$LLAMA" --random
expect 2 "usage: unknown option" "$FUSEC" check dsl-examples/llama_layer.fdl --random --frobnicate
expect 2 "usage: bad --rtol" "$FUSEC" check dsl-examples/llama_layer.fdl --random --rtol abc
expect 2 "usage: unknown target" "$FUSEC" check dsl-examples/llama_layer.fdl --random --target vax
expect 0 "usage: --help" "$FUSEC" check --help

# The temporary build directory is removed; --keep keeps its files.
mkdir -p "$tmp/tmpdir"
TMPDIR=$tmp/tmpdir "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2 >/dev/null 2>&1
if [ -z "$(ls -A "$tmp/tmpdir")" ]; then ok "no temporary files left"; else bad "temporary files left: $(ls "$tmp/tmpdir")"; fi
expect 0 "--keep" "$FUSEC" check dsl-examples/gpt2_block.fdl --random --dim T=2 --keep "$tmp/kept"
for f in block.c block.h harness in.safetensors out.safetensors; do
    [ -f "$tmp/kept/$f" ] || bad "--keep: $f missing"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
