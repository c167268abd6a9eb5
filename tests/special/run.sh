#!/bin/sh
# tests/special/run.sh - NaN, +-inf, huge, denormal and extreme rows (issue 10,
# defects 6, 7 and 8; the rules are in docs/language.md, "NaN, Inf and
# extreme values").
#
#  1. Against PyTorch: ref.fdl's blocks on the inputs and float64 PyTorch
#     outputs committed in tests/special/*.safetensors (gen_ref.py; no torch
#     needed here): relu/maximum/minimum/max and a linear + relu with NaN
#     (7), softmax rows with NaN/+inf/-inf and causal attention with NaN and
#     inf in value rows earlier queries do not see (6), norms of rows of
#     1e30, 2e19, denormals, 1e6 +- 2, NaN, inf, constants (8).  The float64
#     interpreter, -O0 and -O1 on every target this CPU runs (NEON under
#     qemu when installed).  The comparison is NaN-aware: same NaN places,
#     same infinities, relative L2 error over the rest.
#  2. Against the interpreter with `fusec check --random --special`:
#     special.fdl's blocks (every kernel kind that computes a max, relu,
#     softmax or norm statistics, with odd sizes so every masked tail runs),
#     each kind of special value alone and all together, fused and -O0.
#  3. Checks that must fail: a reference with one NaN turned into a number,
#     one finite value changed, one -inf turned into +inf; bad --special usage.
#
# Environment: FUSEC (default build/fusec), SAN (unused; the checks build
# with fusec's own flags).  Prints "N passed, M failed"; exits non-zero when
# anything failed.
set -u
: "${FUSEC:=build/fusec}"
PY=/usr/bin/python3
D=tests/special
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-special.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

targets=generic
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && targets="$targets x86-64-avx2"
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
    targets="$targets x86-64-avx512"
XCC=aarch64-linux-gnu-gcc
neon=0
command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 && neon=1

# ---- 1. against PyTorch ------------------------------------------------------------
for b in nan_ops softmax_attn norms; do
    G=$D/$b.safetensors
    expect 0 "$b: interpreter vs PyTorch" "$FUSEC" check $D/ref.fdl --block $b --golden "$G" --interp
    expect 0 "$b: -O0 generic vs PyTorch" "$FUSEC" check $D/ref.fdl --block $b --golden "$G" -O0
    for t in $targets; do
        expect 0 "$b: $t vs PyTorch" "$FUSEC" check $D/ref.fdl --block $b --golden "$G" --target $t
    done
    if [ $neon = 1 ]; then
        expect 0 "$b: aarch64-neon vs PyTorch (qemu)" "$FUSEC" check $D/ref.fdl --block $b --golden "$G" \
            --target aarch64-neon --cc $XCC --run-with "qemu-aarch64 -L /usr/aarch64-linux-gnu"
    fi
done
[ $neon = 1 ] || echo "special: aarch64-neon skipped (no $XCC or qemu-aarch64)"

# ---- 2. --random --special against the interpreter ----------------------------------
ALL=nan,inf,huge,denormal,bigrow,tinyrow,offsetrow
# (attention at a lower rate: one NaN in a key row makes every later query NaN)
for b in elem:0.02 norms:0.02 attn:0.005; do
    rate=${b#*:} b=${b%:*}
    for t in $targets; do
        expect 0 "$b: $t, all kinds, T=9" "$FUSEC" check $D/special.fdl --block $b --random --special $ALL \
            --special-rate $rate --dim T=9 --target $t
    done
    expect 0 "$b: -O0 generic, all kinds, T=9" "$FUSEC" check $D/special.fdl --block $b --random --special $ALL \
        --special-rate $rate --dim T=9 -O0
done
for seed in 2 3; do
    expect 0 "cached attention: prefill 4 + decode, all kinds, T=9, seed $seed" "$FUSEC" check $D/special.fdl \
        --block cached --random --special $ALL --special-rate 0.005 --dim T=9 --split 4 --seed $seed
done
# each kind alone, where it matters (its effect is not hidden by a NaN
# elsewhere in the row): elements on the max/relu/softmax blocks, rows on
# the norms
t=generic
case " $targets " in *" x86-64-avx512 "*) t=x86-64-avx512 ;; esac
for k in nan inf huge denormal; do
    for b in elem attn; do
        expect 0 "$b: $t, $k, T=17" "$FUSEC" check $D/special.fdl --block $b --random --special $k \
            --special-rate 0.05 --dim T=17 --target $t
    done
done
for k in huge bigrow tinyrow offsetrow; do
    expect 0 "norms: $t, $k, T=17" "$FUSEC" check $D/special.fdl --block norms --random --special $k \
        --special-rate 0.2 --dim T=17 --target $t
done

# ---- 3. checks that must fail -------------------------------------------------------
# mutate IN OUT NAME HOW: a copy of a reference with one value of out64.NAME changed
mutate() {
    $PY - "$@" <<'PYEOF'
import json, struct, sys
import numpy as np
src, dst, name, how = sys.argv[1:5]
data = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
e = json.loads(data[8:8 + n])["out64." + name]
a = np.frombuffer(data, np.float64, (e["data_offsets"][1] - e["data_offsets"][0]) // 8,
                  8 + n + e["data_offsets"][0]).copy()
if how == "nan":
    i = int(np.flatnonzero(np.isnan(a))[0]); a[i] = 0.0
elif how == "neginf":
    i = int(np.flatnonzero(a == -np.inf)[0]); a[i] = np.inf
else:
    i = int(np.flatnonzero(np.isfinite(a) & (a != 0))[0]); a[i] *= 1.01
data[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]] = a.tobytes()
open(dst, "wb").write(data)
PYEOF
}
if mutate $D/nan_ops.safetensors "$tmp/m1.st" r nan && mutate $D/nan_ops.safetensors "$tmp/m2.st" mn value &&
    mutate $D/nan_ops.safetensors "$tmp/m3.st" mxr neginf; then
    expect 1 "must fail: a NaN of the reference turned into 0" "$FUSEC" check $D/ref.fdl --block nan_ops \
        --golden "$tmp/m1.st" --target x86-64-avx2
    expect 1 "must fail: one finite value 1% off" "$FUSEC" check $D/ref.fdl --block nan_ops \
        --golden "$tmp/m2.st" -O0
    expect 1 "must fail: a -inf of the reference turned into +inf" "$FUSEC" check $D/ref.fdl --block nan_ops \
        --golden "$tmp/m3.st" --interp
else
    bad "mutate the references"
fi
expect 2 "usage: --special with an unknown kind" "$FUSEC" check $D/special.fdl --random --special nan,bogus
expect 2 "usage: --special without --random" "$FUSEC" check $D/ref.fdl --block norms \
    --golden $D/norms.safetensors --special nan
expect 2 "usage: --special-rate 0" "$FUSEC" check $D/special.fdl --random --special nan --special-rate 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
