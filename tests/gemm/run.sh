#!/bin/sh
# tests/gemm/run.sh - the matrix-multiply kernels as the fusion passes build
# them, at sizes the other suites do not reach.
#
# tests/targets runs the examples for T <= 64; here `fusec check --random`
# runs llama_layer and gpt2_block (fused: KK_GEMM with the norm prologue,
# KK_MLP) for T = 9 (the smallest GEMM), 300 (several row blocks of the
# tile loops) and 700 (more rows than one accumulator chunk), on 3 threads
# (an odd split of every column range), for generic and x86-64-avx2 (when
# the CPU has it).  The per-kernel cases are in tests/unit/test_gemm.c.
#
# Environment: FUSEC (default build/fusec).  Prints "N passed, M failed".
set -u
: "${FUSEC:=build/fusec}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-gemm.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

targets=generic
if grep -q 'avx2' /proc/cpuinfo 2>/dev/null && grep -q ' fma' /proc/cpuinfo 2>/dev/null; then
    targets="$targets x86-64-avx2"
fi
for target in $targets; do
    for block in llama_layer gpt2_block; do
        for T in 9 300 700; do
            name="$block $target T=$T"
            if FUSE_NUM_THREADS=3 "$FUSEC" check "dsl-examples/$block.fdl" --random --target "$target" \
                --dim "T=$T" >"$tmp/log" 2>&1; then
                pass=$((pass + 1))
                echo "ok   $name: $(tail -n 1 "$tmp/log")"
            else
                fail=$((fail + 1))
                echo "FAIL $name"
                tail -n 20 "$tmp/log" | sed 's/^/       /'
            fi
        done
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
