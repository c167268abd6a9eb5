#!/bin/sh
# bench/model/w6.sh - W6: a whole model at Llama-3.2-1B shape (16 layers, hidden
# 2048, 32 heads, 8 KV heads, FFN 8192, vocab 128256, tied embeddings; float32,
# random weights): prefill of PROMPT tokens, then DECODE greedy tokens, fusec
# against PyTorch (`make bench-model`).
#
#   1. bench/model/make_model.py writes the checkpoint (about 5 GB) into DIR
#      once (kept for later runs);
#   2. fusec run dsl-examples/llama_model.fdl --config DIR/config.json, the
#      best target of this CPU, REPEAT runs (the first builds the model; its
#      build is cached), each printing its prefill and decode speeds;
#   3. bench/model/torch_peer.py, the same model in eager PyTorch, REPEAT runs;
#      the greedy tokens of both are printed and compared;
#   4. llama.cpp (bench/install-llama.sh builds it; PEER=none skips it): the
#      same weights as a GGUF, REPEAT runs of build/peers/peer_llama, its
#      first token checked against fusec's before its speeds are printed.
#
# Typed rows: for each weight type in TYPES (default "f32 bf16 q8_0"; also f16,
# q4_0) the layers' projections are converted once with `fusec quantize --type
# TYPE --include '*proj.weight'` (DIR/model-TYPE.safetensors, kept; what
# bench/peer_llama.sh writes too) and fusec run reads them as stored.  Each is
# checked before it is timed: one layer of this shape with these stored types
# (a 1-layer, 256-token config) against the float64 interpreter with
# `fusec check --random` (rtol 1e-5); a failed check says `check FAILED: not
# timed`.  The typed tokens are compared with the f32 ones (quantization moves
# near ties: reported, not asserted); llama.cpp runs and checks each type's
# GGUF.  PyTorch runs f32 only.  KV (f32; f16 as llama.cpp) is fusec's --kv-type.
#
# Environment: FUSEC (build/fusec), DIR (build/bench/w6), THREADS (nproc), TYPES, KV,
# PROMPT (512), DECODE (64), REPEAT (3), and LAYERS, VOCAB, HIDDEN, INTER, HEADS,
# KV_HEADS, HEAD_DIM to try a smaller shape (the defaults are Llama-3.2-1B's),
# PEERS_DIR (build/peers: where the llama.cpp peer is), PEER (llama; none).
set -u
: "${FUSEC:=build/fusec}" "${DIR:=build/bench/w6}" "${THREADS:=$(nproc)}" "${PROMPT:=512}"
: "${DECODE:=64}" "${REPEAT:=3}" "${LAYERS:=16}" "${VOCAB:=128256}" "${HIDDEN:=2048}" "${INTER:=8192}"
: "${HEADS:=32}" "${KV_HEADS:=8}" "${HEAD_DIM:=64}" "${TYPES:=f32 bf16 q8_0}" "${KV:=f32}"
for ty in $TYPES; do
    case $ty in
    f32 | bf16 | f16 | q8_0 | q4_0) ;;
    *) echo "w6: error: TYPES: unknown weight type '$ty' (f32, bf16, f16, q8_0, q4_0)"; exit 1 ;;
    esac
done
PY=/usr/bin/python3
shape="$LAYERS $VOCAB $HIDDEN $INTER $HEADS $KV_HEADS $HEAD_DIM $PROMPT"
if [ "$(cat "$DIR/shape" 2>/dev/null)" != "$shape" ]; then
    echo "w6: writing a random checkpoint ($shape) into $DIR"
    $PY bench/model/make_model.py "$DIR" --layers "$LAYERS" --vocab "$VOCAB" --hidden "$HIDDEN" \
        --inter "$INTER" --heads "$HEADS" --kv-heads "$KV_HEADS" --head-dim "$HEAD_DIM" --prompt "$PROMPT" ||
        { echo "w6: error: make_model.py failed"; exit 1; }
    echo "$shape" >"$DIR/shape"
fi
IDS=$(cat "$DIR/prompt.txt")
# same_tokens PEER FILE WHY [FUSEC_FILE]: compares the first line of FILE with fusec's tokens
same_tokens() {
    _f=${4:-$DIR/fusec.tokens}
    if [ "$(head -1 "$2")" = "$(cat "$_f")" ]; then
        echo "w6: fusec and $1 generate the same $((DECODE + 1)) greedy tokens"
    else
        echo "w6: the greedy tokens of $1 differ ($3): the first $(
            $PY -c 'import sys; a, b = (open(f).readline().split() for f in sys.argv[1:]); print(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))' "$2" "$_f") agree"
        echo "  fusec: $(cat "$_f")"
        echo "  $1: $(head -1 "$2")"
    fi
}
start=$(date +%s.%N)
"$FUSEC" --config "$DIR/config.json" --target native dsl-examples/llama_model.fdl -o "$DIR/model.c" ||
    { echo "w6: error: fusec failed"; exit 1; }
echo "w6: fusec compiled the $LAYERS-layer model in $(echo "$(date +%s.%N) - $start" | bc) s ($(wc -l <"$DIR/model.c") lines of C)"
# one layer of this shape, 256 tokens: the typed rows' check against the interpreter
$PY - "$DIR/config.json" "$DIR/check1.json" <<'PYEOF' || { echo "w6: error: cannot write the check's config"; exit 1; }
import json, sys
c = json.load(open(sys.argv[1]))
c["num_hidden_layers"], c["vocab_size"] = 1, 256
json.dump(c, open(sys.argv[2], "w"), indent=2)
PYEOF
PEER=${PEER:-llama}
rm -f "$DIR/fusec.tokens"     # the f32 tokens of this run only, for the typed rows' comparison
for ty in $TYPES; do
    st=$DIR/model.safetensors tok=$DIR/fusec.tokens wt=""
    if [ "$ty" != f32 ]; then
        st=$DIR/model-$ty.safetensors tok=$DIR/fusec-$ty.tokens wt="--weight-type=*proj.weight=$ty"
        [ -n "$(find "$st" -newer "$DIR/model.safetensors" 2>/dev/null)" ] ||
            "$FUSEC" quantize "$DIR/model.safetensors" -o "$st" --type "$ty" --include '*proj.weight' ||
            { echo "w6: error: fusec quantize --type $ty failed"; exit 1; }
    fi
    # shellcheck disable=SC2086
    if ! "$FUSEC" check dsl-examples/llama_model.fdl --config "$DIR/check1.json" --random --dim T=3 \
        --target native --kv-type "$KV" $wt >"$DIR/check-fusec-$ty.log" 2>&1; then
        echo "w6: fusec $ty: check FAILED: not timed"
        sed 's/^/  /' "$DIR/check-fusec-$ty.log" | tail -5
        continue
    fi
    echo "w6: fusec $ty: one layer at this shape vs the interpreter: $(grep -h 'logits' "$DIR/check-fusec-$ty.log" | tail -1)"
    for r in $(seq "$REPEAT"); do
        FUSE_NUM_THREADS=$THREADS "$FUSEC" run dsl-examples/llama_model.fdl --config "$DIR/config.json" \
            --weights "$st" --prompt-ids "$IDS" -n $((DECODE + 1)) --stats --kv-type "$KV" \
            >"$tok" 2>"$DIR/fusec-$ty.$r.log" || { cat "$DIR/fusec-$ty.$r.log"; exit 1; }
        echo "w6: fusec run $ty (kv $KV) $r, $THREADS threads: $(tr '\n' ';' <"$DIR/fusec-$ty.$r.log")"
    done
    [ "$ty" = f32 ] || [ ! -f "$DIR/fusec.tokens" ] ||
        same_tokens "fusec $ty" "$tok" "the $ty weights' rounding moves near ties" "$DIR/fusec.tokens"
    if [ "$ty" = f32 ] && $PY -c 'import torch' 2>/dev/null; then
        for r in $(seq "$REPEAT"); do
            $PY bench/model/torch_peer.py "$DIR" --threads "$THREADS" --decode "$DECODE" >"$DIR/torch.out" ||
                { echo "w6: error: the PyTorch peer failed"; exit 1; }
            echo "w6: $(tail -1 "$DIR/torch.out")"
        done
        same_tokens PyTorch "$DIR/torch.out" "random weights make near ties; compare the first ones"
    elif [ "$ty" = f32 ]; then
        echo "w6: note: no python3-torch: the PyTorch peer is skipped"
    fi
    # llama.cpp (bench/peer_llama.sh): the same stored weights as a GGUF
    # (bench/peer_llama_gguf.py, DIR/model-TYPE.gguf, written once), the same
    # prompt and number of greedy tokens, F16 KV cache and flash attention.
    # Checked first (peer_llama_check): its logits for the prompt, all at once
    # and with the last token decoded, against fusec's on the same weights
    # (fusec check --golden: a golden copy of the checkpoint, as large, is
    # written into DIR and removed after); a failed check is reported, not timed.
    if [ "$PEER" = llama ] && . bench/peer_llama.sh && peer_llama_ready; then
        [ -n "$(find "$DIR/model-$ty.gguf" -newer "$st" 2>/dev/null)" ] || rm -f "$DIR/model-$ty.gguf"
        ok=no
        peer_llama_check "$DIR" "$ty" native && ok=yes
        [ $ok = yes ] || echo "w6: llama.cpp $ty: check FAILED: not timed"
        for r in $(seq "$REPEAT"); do
            [ $ok = yes ] || break
            "$PEERS_DIR/peer_llama" "$DIR/model-$ty.gguf" --ids "$IDS" --generate $((DECODE + 1)) --threads "$THREADS" \
                >"$DIR/llama-$ty.tokens" 2>"$DIR/llama-$ty.$r.log" || { cat "$DIR/llama-$ty.$r.log"; exit 1; }
            echo "w6: $ty: $(grep "^llama.cpp" "$DIR/llama-$ty.$r.log")"
        done
        [ $ok = no ] || same_tokens "llama.cpp $ty" "$DIR/llama-$ty.tokens" "its F16 KV cache; random weights make near ties" "$tok"
    fi
done
