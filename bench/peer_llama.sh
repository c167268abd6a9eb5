# bench/peer_llama.sh - sourced by bench/types.sh and bench/model/w6.sh: the
# llama.cpp peer (docs/benchmarks.md, "llama.cpp").  Needs what
# bench/install-llama.sh puts into $PEERS_DIR (default $BUILD/peers): peer_llama
# (the static driver, bench/peer_llama.c) and py/ (the gguf package); and
# /usr/bin/python3 with numpy.  Every check and time goes through
# bench/peer_llama_gguf.py (the GGUF of the same weights) and peer_llama.
#
# peer_llama_ready: true when the peer is there (else says why, once).
# peer_llama_check DIR TYPE TARGET: DIR holds config.json, model.safetensors
#   (float32) and prompt.txt; writes DIR/model-TYPE.gguf (the layers'
#   projections as TYPE; q8_0/q4_0/bf16/f16 must be byte-identical to fusec
#   quantize's) and checks llama.cpp's logits for the prompt, all at once and
#   with the last token decoded through the KV cache, against fusec's model
#   (dsl-examples/llama_model.fdl, the same stored weights, --kv-type f16 as
#   llama.cpp's cache) with `fusec check --golden`; tolerance by type, and
#   3e-2 for the decoded token (see docs/benchmarks.md).  Status 0 when both
#   pass.
: "${PEERS_DIR:=${BUILD:-build}/peers}"
PEER_PY=/usr/bin/python3
peer_llama_ready() {
    [ -x "$PEERS_DIR/peer_llama" ] && [ -f "$PEERS_DIR/py/gguf/__init__.py" ] && return 0
    [ -n "${peer_llama_said:-}" ] ||
        echo "# llama.cpp: not built ($PEERS_DIR/peer_llama missing: PEERS=llama sh bench/install-deps.sh, or sh bench/install-llama.sh)"
    peer_llama_said=1
    return 1
}

peer_llama_check() {
    _d=$1 _ty=$2 _tg=$3
    _st=$_d/model.safetensors
    _wt=""
    if [ "$_ty" != f32 ]; then
        _st=$_d/model-$_ty.safetensors
        [ -f "$_st" ] || "$FUSEC" quantize "$_d/model.safetensors" -o "$_st" --type "$_ty" --include '*proj.weight' ||
            { echo "peer_llama: $_ty: fusec quantize failed" >&2; return 1; }
        _wt="--weight-type=*proj.weight=$_ty"
    fi
    if [ ! -f "$_d/model-$_ty.gguf" ]; then
        PYTHONPATH="$PEERS_DIR/py${PYTHONPATH:+:$PYTHONPATH}" $PEER_PY bench/peer_llama_gguf.py gguf "$_d" -o "$_d/model-$_ty.gguf.tmp" --type "$_ty" \
            ${_wt:+--compare "$_st"} >"$_d/gguf-$_ty.log" 2>&1 || { cat "$_d/gguf-$_ty.log" >&2; return 1; }
        mv "$_d/model-$_ty.gguf.tmp" "$_d/model-$_ty.gguf"
    fi
    case $_ty in
    bf16) _tol="--rtol 1.5e-2 --max-tol 3e-2" ;;
    q*) _tol="--rtol 3e-2 --max-tol 5e-2" ;;
    *) _tol="--rtol 3e-3 --max-tol 1e-2" ;;
    esac
    _ids=$(cat "$_d/prompt.txt")
    _n=$(echo "$_ids" | tr ',' '\n' | wc -l)
    for _k in "$_n" $((_n - 1)); do
        # the last token decoded alone: llama.cpp's single-token flash
        # attention rounds Q to f16 and sums in f16, an error that grows with
        # the cached length (one f32 layer: 2.9e-5 batched, 2.5e-3 decoded
        # after 199 tokens, 6.0e-3 after 1024; 16 layers after 63: 3.6e-3)
        [ "$_k" = "$_n" ] || _tol="--rtol 3e-2 --max-tol 5e-2"
        "$PEERS_DIR/peer_llama" "$_d/model-$_ty.gguf" --ids "$_ids" --split "$_k" --logits "$_d/logits.txt" \
            >/dev/null 2>"$_d/peer.log" || { cat "$_d/peer.log" >&2; return 1; }
        $PEER_PY bench/peer_llama_gguf.py golden "$_d" "$_ids" "$_d/logits.txt" --weights "$_st" -o "$_d/golden.safetensors" ||
            return 1
        # shellcheck disable=SC2086
        if ! "$FUSEC" check dsl-examples/llama_model.fdl --config "$_d/config.json" --golden "$_d/golden.safetensors" \
            --target "$_tg" --kv-type f16 $_wt $_tol >"$_d/check-$_ty.log" 2>&1; then
            echo "peer_llama: $_ty: llama.cpp's logits (prompt of $_n, $_k at once) differ from fusec's:" >&2
            tail -3 "$_d/check-$_ty.log" >&2
            return 1
        fi
        echo "# llama.cpp $_ty (prompt $_n, $_k at once) vs fusec: $(grep -h 'logits' "$_d/check-$_ty.log" | tail -1)"
    done
    rm -f "$_d/golden.safetensors"
}
