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
# PEERS (build/peers: where the llama.cpp peer is), PEER (llama; none).
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
    if [ "$(head -1 "$DIR/torch.out")" = "$(cat "$DIR/fusec.tokens")" ]; then
        echo "w6: fusec and PyTorch generate the same $((DECODE + 1)) greedy tokens"
    else
        echo "w6: the greedy tokens differ (random weights make near ties; compare the first ones):"
        echo "  fusec: $(cat "$DIR/fusec.tokens")"
        echo "  torch: $(head -1 "$DIR/torch.out")"
    fi
else
    echo "w6: note: no python3-torch: the PyTorch peer is skipped"
fi
# llama.cpp (bench/peer_llama.sh): the same float32 weights as a GGUF
# (bench/peer_llama_gguf.py, written once into DIR), the same prompt, the
# same number of greedy tokens, F16 KV cache and flash attention.  Its first
# token must be fusec's, or its logits must make the two a near tie (fusec's
# token within 1e-2 of the largest logit, relative to it: the tolerance of
# the one-layer check in bench/types.sh); else it is reported, not timed.
PEER=${PEER:-llama}
if [ "$PEER" = llama ] && . bench/peer_llama.sh && peer_llama_ready; then
    if [ ! -f "$DIR/model-f32.gguf" ] || [ "$DIR/model-f32.gguf" -ot "$DIR/model.safetensors" ]; then
        echo "w6: writing $DIR/model-f32.gguf"
        $PY bench/peer_llama_gguf.py gguf "$DIR" --type f32 -o "$DIR/model-f32.gguf.tmp" &&
            mv "$DIR/model-f32.gguf.tmp" "$DIR/model-f32.gguf" || { echo "w6: error: the GGUF writer failed"; exit 1; }
    fi
    ok=""
    for r in $(seq "$REPEAT"); do
        "$PEERS/peer_llama" "$DIR/model-f32.gguf" --ids "$IDS" --generate $((DECODE + 1)) --threads "$THREADS" \
            --logits "$DIR/llama.logits" >"$DIR/llama.tokens" 2>"$DIR/llama.$r.log" || { cat "$DIR/llama.$r.log"; exit 1; }
        if [ -z "$ok" ]; then
            ft=$(cut -d' ' -f1 "$DIR/fusec.tokens") lt=$(cut -d' ' -f1 "$DIR/llama.tokens")
            ok=$($PY -c 'import sys, numpy as np
l = np.loadtxt(sys.argv[1]); f, t = int(sys.argv[2]), int(sys.argv[3])
gap = (l[t] - l[f]) / np.abs(l).max()
print("yes" if np.argmax(l) == t and gap <= 1e-2 else "no", "%.2e" % gap)' "$DIR/llama.logits" "$ft" "$lt")
            echo "w6: llama.cpp's first token $lt, fusec's $ft (logit gap ${ok#* } of the largest)"
            if [ "${ok% *}" != yes ]; then
                echo "w6: llama.cpp: check FAILED (first token differs beyond a near tie): not timed"
                break
            fi
        fi
        echo "w6: $(cat "$DIR/llama.$r.log")"
    done
    if [ "${ok% *}" = yes ]; then
        if [ "$(cat "$DIR/llama.tokens")" = "$(cat "$DIR/fusec.tokens")" ]; then
            echo "w6: fusec and llama.cpp generate the same $((DECODE + 1)) greedy tokens"
        else
            echo "w6: the greedy tokens of llama.cpp differ (its F16 KV cache; random weights make near ties):"
            echo "  fusec: $(cat "$DIR/fusec.tokens")"
            echo "  llama: $(cat "$DIR/llama.tokens")"
        fi
    fi
fi
