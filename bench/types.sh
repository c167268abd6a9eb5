#!/bin/sh
# bench/types.sh - one Llama-3.2-1B layer (bench/blocks/llama_1b.fdl) for
# every weight type and for --compute=bf16: W1 (decode, T = 1 after P = 1024
# cached tokens, caches flushed before each call) and W2 (prefill, T = 512,
# P = 0), side by side in one run.  Not part of make test (timings).
#
#   sh bench/types.sh                                  # after make
#   TARGET=x86-64-spr THREADS="1 16" sh bench/types.sh # the 16-core host
#
# For each variant, `fusec check --random` first builds the layer for TARGET
# and checks it against the float64 interpreter at T = 1 (quantized types
# and bf16 compute at rtol 1e-3: the interpreter rounds its own activations,
# docs/quantization.md) and keeps the weights it drew, stored as the variant's type; bench/layer_main.c then times the same
# generated block with those weights.  Medians of REPS (decode) and PREPS
# (prefill) calls, min..max beside them.
#
# Environment: BUILD (build), CC (cc), TARGET (native), THREADS ("1 2"),
# REPS (21), PREPS (5), VARIANTS (all: f32 bf16 f16 q8_0 q4_0 f32+bf16c
# bf16+bf16c; "+bf16c" = --compute=bf16), SKIP_PREFILL=1, FLUSH (1: flush the
# caches before each decode call, the default; 0: don't), FDL (the block:
# bench/blocks/llama_1b.fdl; bench/blocks/mlp_1b.fdl gives W5a/W5b, the MLP
# alone, T = 1 and T = 512 without a cache; its linears' weights are the ones
# typed, and the llama.cpp column stays "-").
#
# The llama_ms column is llama.cpp at the same shapes and weight type
# (bench/peer_llama.sh, built by bench/install-llama.sh): a Llama model of ONE
# such layer with a 256-token vocabulary (bench/model/make_model.py --layers 1,
# in $BUILD/bench/peer1), its logits checked against fusec's
# dsl-examples/llama_model.fdl on the same stored weights before it is timed
# ("fail" when the check fails, "-" when llama.cpp is not built or for
# --compute=bf16, which llama.cpp has no counterpart of).  PEER=none skips it;
# PEERS_DIR ($BUILD/peers) is where bench/install-llama.sh put it.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
TARGET=${TARGET:-native}
THREADS=${THREADS:-1 2}
REPS=${REPS:-21}
PREPS=${PREPS:-5}
VARIANTS=${VARIANTS:-f32 bf16 f16 q8_0 q4_0 f32+bf16c bf16+bf16c}
FUSEC=$BUILD/fusec
FDL=${FDL:-bench/blocks/llama_1b.fdl}
BLK=$(basename "$FDL" .fdl)
# decode after 1024 cached rows where the block has a cache
DP=0
grep -q '^ *cache ' "$FDL" && DP=1024
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-types.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
[ -x "$FUSEC" ] && [ -f "$BUILD/libfusec_rt.a" ] || { echo "types.sh: run make first" >&2; exit 1; }
me=types.sh
. bench/limits.sh
echo "# $BLK, target $TARGET; decode T=1 P=$DP (median of $REPS, cache flush ${FLUSH:-1}), prefill T=512 P=0 (median of $PREPS)"
PEER=${PEER:-llama}
[ "$BLK" = llama_1b ] || PEER=none
if [ "$PEER" = llama ]; then
    . bench/peer_llama.sh
    pdir=$BUILD/bench/peer1
    if peer_llama_ready; then
        shape="1 256 2048 8192 32 8 64 8"
        if [ "$(cat "$pdir/shape" 2>/dev/null)" != "$shape" ]; then
            rm -rf "$pdir"
            /usr/bin/python3 bench/model/make_model.py "$pdir" --layers 1 --vocab 256 --prompt 8 ||
                { echo "types.sh: make_model.py failed" >&2; exit 1; }
            echo "$shape" >"$pdir/shape"
        fi
    else
        PEER=none
    fi
fi
echo "# variant workload threads median_ms min_ms max_ms weight_MB weight_GB/s llama_ms"
for v in $VARIANTS; do
    ty=${v%+bf16c}
    opts=""
    [ "$ty" = f32 ] || opts="--weight-type=self_attn.*=$ty --weight-type=mlp.*=$ty"
    [ "$ty" = "$v" ] || opts="$opts --compute=bf16"
    tol=""
    case $v in q* | *bf16c) tol="--rtol 1e-3 --max-tol 1e-2" ;; esac
    d=$tmp/$v
    # shellcheck disable=SC2086
    if ! "$FUSEC" check "$FDL" --random $opts $tol --dim T=1 --target "$TARGET" --keep "$d" \
        >"$tmp/check.log" 2>&1; then
        echo "types.sh: $v: fusec check failed:" >&2
        tail -5 "$tmp/check.log" >&2
        exit 1
    fi
    $CC -O2 $f2 -Iruntime -Ibench -I"$d" -DDESC=${BLK}_desc -o "$d/layer" bench/layer_main.c "$d/block.c" \
        "$tmp/limits.o" "$tmp/limits_avx2.o" "$tmp/limits_avx512.o" "$BUILD/libfusec_rt.a" -lm -lpthread ||
        { echo "types.sh: $v: cannot build the driver" >&2; exit 1; }
    peer=-
    if [ "$PEER" = llama ] && [ "$ty" = "$v" ]; then
        peer=fail
        peer_llama_check "$pdir" "$ty" "$TARGET" && peer=ok
    fi
    for n in $THREADS; do
        for wl in decode prefill; do
            if [ $wl = decode ]; then
                line=$("$d/layer" "$d/in.safetensors" 1 $DP "$n" "$REPS" "${FLUSH:-1}") || exit 1
            else
                [ "${SKIP_PREFILL:-}" = 1 ] && continue
                line=$("$d/layer" "$d/in.safetensors" 512 0 "$n" "$PREPS") || exit 1
            fi
            lm=$peer
            if [ "$peer" = ok ]; then
                if [ $wl = decode ]; then
                    pl=$("$PEERS_DIR/peer_llama" "$pdir/model-$ty.gguf" --decode 1024 --threads "$n" --reps "$REPS" \
                        --flush $((${FLUSH:-1} ? 1 << 28 : 0)) 2>"$tmp/peer.err")
                else
                    pl=$("$PEERS_DIR/peer_llama" "$pdir/model-$ty.gguf" --prefill 512 --outputs all --threads "$n" --reps "$PREPS" 2>"$tmp/peer.err")
                fi
                lm=$(echo "$pl" | awk '{ for (i = 1; i < NF; i++) if ($i == "median_ms") printf "%.3f", $(i + 1) }')
                [ -n "$lm" ] || { lm=error; cat "$tmp/peer.err" >&2; }
            fi
            echo "$line" | awk -v v="$v" -v wl="$wl" -v lm="$lm" '{
                for (i = 1; i < NF; i++) f[$i] = $(i + 1)
                printf "%-11s %-7s %2d %9.3f %9.3f %9.3f %8.1f %7.2f %9s\n", v, wl, f["threads"], f["median_ms"],
                    f["min_ms"], f["max_ms"], f["weight_bytes"] / 1e6, f["GB/s"], lm }'
        done
    done
done
