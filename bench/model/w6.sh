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
# Environment: FUSEC (build/fusec), DIR (build/bench/w6), THREADS (nproc),
# PROMPT (512), DECODE (64), REPEAT (3), and LAYERS, VOCAB, HIDDEN, INTER, HEADS,
# KV_HEADS, HEAD_DIM to try a smaller shape (the defaults are Llama-3.2-1B's),
# PEERS_DIR (build/peers: where the llama.cpp peer is), PEER (llama; none).
set -u
: "${FUSEC:=build/fusec}" "${DIR:=build/bench/w6}" "${THREADS:=$(nproc)}" "${PROMPT:=512}"
: "${DECODE:=64}" "${REPEAT:=3}" "${LAYERS:=16}" "${VOCAB:=128256}" "${HIDDEN:=2048}" "${INTER:=8192}"
: "${HEADS:=32}" "${KV_HEADS:=8}" "${HEAD_DIM:=64}"
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
# same_tokens PEER FILE WHY: compares the first line of FILE with fusec's tokens
same_tokens() {
    if [ "$(head -1 "$2")" = "$(cat "$DIR/fusec.tokens")" ]; then
        echo "w6: fusec and $1 generate the same $((DECODE + 1)) greedy tokens"
    else
        echo "w6: the greedy tokens of $1 differ ($3):"
        echo "  fusec: $(cat "$DIR/fusec.tokens")"
        echo "  $1: $(head -1 "$2")"
    fi
}
start=$(date +%s.%N)
"$FUSEC" --config "$DIR/config.json" --target native dsl-examples/llama_model.fdl -o "$DIR/model.c" ||
    { echo "w6: error: fusec failed"; exit 1; }
echo "w6: fusec compiled the $LAYERS-layer model in $(echo "$(date +%s.%N) - $start" | bc) s ($(wc -l <"$DIR/model.c") lines of C)"
for r in $(seq "$REPEAT"); do
    FUSE_NUM_THREADS=$THREADS "$FUSEC" run dsl-examples/llama_model.fdl --config "$DIR/config.json" \
        --weights "$DIR/model.safetensors" --prompt-ids "$IDS" -n $((DECODE + 1)) --stats \
        >"$DIR/fusec.tokens" 2>"$DIR/fusec.$r.log" || { cat "$DIR/fusec.$r.log"; exit 1; }
    echo "w6: fusec run $r, $THREADS threads: $(tr '\n' ';' <"$DIR/fusec.$r.log")"
done
if $PY -c 'import torch' 2>/dev/null; then
    for r in $(seq "$REPEAT"); do
        $PY bench/model/torch_peer.py "$DIR" --threads "$THREADS" --decode "$DECODE" >"$DIR/torch.out" ||
            { echo "w6: error: the PyTorch peer failed"; exit 1; }
        echo "w6: $(tail -1 "$DIR/torch.out")"
    done
    same_tokens PyTorch "$DIR/torch.out" "random weights make near ties; compare the first ones"
else
    echo "w6: note: no python3-torch: the PyTorch peer is skipped"
fi
# llama.cpp (bench/peer_llama.sh): the same float32 weights as a GGUF
# (bench/peer_llama_gguf.py, DIR/model-f32.gguf, written once), the same
# prompt and number of greedy tokens, F16 KV cache and flash attention.
# Checked first (peer_llama_check): its logits for the prompt, all at once
# and with the last token decoded, against fusec's on the same weights
# (fusec check --golden: a golden copy of the checkpoint, as large, is
# written into DIR and removed after); a failed check is reported, not timed.
PEER=${PEER:-llama}
if [ "$PEER" = llama ] && . bench/peer_llama.sh && peer_llama_ready; then
    [ -n "$(find "$DIR/model-f32.gguf" -newer "$DIR/model.safetensors" 2>/dev/null)" ] || rm -f "$DIR/model-f32.gguf"
    ok=no
    peer_llama_check "$DIR" f32 native && ok=yes
    [ $ok = yes ] || echo "w6: llama.cpp: check FAILED: not timed"
    for r in $(seq "$REPEAT"); do
        [ $ok = yes ] || break
        "$PEERS_DIR/peer_llama" "$DIR/model-f32.gguf" --ids "$IDS" --generate $((DECODE + 1)) --threads "$THREADS" \
            >"$DIR/llama.tokens" 2>"$DIR/llama.$r.log" || { cat "$DIR/llama.$r.log"; exit 1; }
        echo "w6: $(grep "^llama.cpp" "$DIR/llama.$r.log")"
    done
    [ $ok = no ] || same_tokens llama.cpp "$DIR/llama.tokens" "its F16 KV cache; random weights make near ties"
fi
