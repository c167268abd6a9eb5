#!/bin/sh
# tests/model/run.sh - whole models: repeat, fusec run, sharded checkpoints, config.json.
#
#  1. dsl-examples/smollm_model.fdl against the Hugging Face LlamaForCausalLM
#     golden file (tied embeddings, 3 layers): the logits of all 13 positions
#     within 1e-5 of out64.logits, at once and as prefill 5 + 8 decode steps
#     (generic), on avx2, avx512 and aarch64-neon (qemu).
#  2. fusec run: prefill the 13 ids, then 8 greedy tokens equal to
#     out64.generated_ids exactly, on generic, avx2, avx512, aarch64-neon, for
#     the last-position model and the all-positions one; sampling gives the
#     same tokens for a seed twice, others for another seed, and top-k 1 is
#     greedy.
#  3. The checkpoint as published: tests/model/shard.py spreads the golden
#     weights over two shards with a model.safetensors.index.json and writes
#     config.json; dsl-examples/llama_model.fdl, every size from the config,
#     generates the same 8 tokens from them, and the all-positions variant
#     matches the logits.
#  4. Bad input, each with its message and exit status: arguments, ids out of
#     range, a missing tensor, a missing shard, a broken index or config, a
#     config key that is not there, a block that is not a model.
#
# Environment: FUSEC (default build/fusec), GOLDEN (default tests/golden/hf).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}"
PY=/usr/bin/python3
G=$GOLDEN/smollm_tiny_model.safetensors
M=dsl-examples/smollm_model.fdl
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-model.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
. tests/lib.sh

# expect STATUS NAME CMD...: CMD exits with STATUS.
expect() {
    want=$1 name=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -eq "$want" ]; then
        ok "$name"
        grep -E 'err=' "$tmp/out" | sed 's/^/       /'
    else
        bad "$name (exit $got, expected $want)"
        sed 's/^/       /' "$tmp/out" "$tmp/err" | head -20
    fi
}

# refuse STATUS NAME TEXT CMD...: CMD exits with STATUS and says TEXT on stderr.
refuse() {
    want=$1 name=$2 text=$3
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -eq "$want" ] && grep -qF -- "$text" "$tmp/err"; then
        ok "$name"
    else
        bad "$name (exit $got, expected $want and '$text')"
        sed 's/^/       /' "$tmp/err" | head -10
    fi
}

# tokens NAME WANT CMD...: CMD prints exactly WANT.
tokens() {
    name=$1 want=$2
    shift 2
    got=$("$@" 2>"$tmp/err")
    rc=$?
    if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then
        ok "$name: $got"
    else
        bad "$name: got '$got' (exit $rc), expected '$want'"
        sed 's/^/       /' "$tmp/err" | head -10
    fi
}

$PY tests/model/shard.py "$G" "$tmp/ck" || { echo "FAIL tests/model/shard.py"; exit 1; }
IDS=$(cat "$tmp/ck/prompt.txt")
WANT=$(cat "$tmp/ck/expected.txt")
XCC=aarch64-linux-gnu-gcc
QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
RUN="$FUSEC run $M --weights $G --weight-prefix w. --prompt-ids $IDS"

# ---- 1. logits against Hugging Face ------------------------------------------------
expect 0 "smollm logits, generic" $FUSEC check $M --block smollm_logits --golden "$G"
expect 0 "smollm logits, prefill 5 + decode 8, generic" $FUSEC check $M --block smollm_logits --golden "$G" --split 5
expect 0 "smollm logits, -O0" $FUSEC check $M --block smollm_logits --golden "$G" -O0
for t in x86-64-avx2 x86-64-avx512; do
    expect 0 "smollm logits, prefill 12 + decode 1, $t" $FUSEC check $M --block smollm_logits --golden "$G" --split 12 --target $t
done
expect 0 "smollm last-position logits vs the interpreter, T = 9" $FUSEC check $M --random --dim T=9
if command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    expect 0 "smollm logits, prefill 5 + decode, aarch64-neon (qemu)" $FUSEC check $M --block smollm_logits \
        --golden "$G" --split 5 --target aarch64-neon --cc $XCC --run-with "$QEMU"
else
    bad "aarch64-neon: $XCC or qemu-aarch64 missing (scripts/install-deps.sh installs them)"
fi

# ---- 2. generation --------------------------------------------------------------------
for t in generic x86-64-avx2 x86-64-avx512; do
    tokens "greedy, $t" "$WANT" $RUN -n 8 --target $t
done
tokens "greedy, all-positions logits, generic" "$WANT" $RUN -n 8 --target generic --block smollm_logits
tokens "greedy, 3 threads" "$WANT" env FUSE_NUM_THREADS=3 $RUN -n 8
# decoding after a one-token prompt and prefilling what it made agree
ONE=$($RUN -n 3 --prompt-ids 5 2>&1)
tokens "prompt 5 then 3 tokens ($ONE); their prefill gives the third" "$(echo "$ONE" | cut -d' ' -f3)" \
    $RUN -n 1 --prompt-ids "5,$(echo "$ONE" | cut -d' ' -f1-2 | tr ' ' ,)"

if command -v $XCC >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    tokens "greedy, aarch64-neon (qemu)" "$WANT" $RUN -n 8 --target aarch64-neon --cc $XCC --run-with "$QEMU"
fi
tokens "greedy, stops at --eos" "$(echo "$WANT" | cut -d' ' -f1-3)" $RUN -n 8 --eos "$(echo "$WANT" | cut -d' ' -f3)"
tokens "top-k 1 is greedy" "$WANT" $RUN -n 8 --temperature 1.5 --top-k 1 --seed 5
S1=$($RUN -n 16 --temperature 1.0 --top-p 0.95 --seed 1 2>&1)
S1b=$($RUN -n 16 --temperature 1.0 --top-p 0.95 --seed 1 2>&1)
S2=$($RUN -n 16 --temperature 1.0 --top-p 0.95 --seed 2 2>&1)
if [ "$S1" = "$S1b" ] && [ "$S1" != "$S2" ] && [ "$(echo "$S1" | wc -w)" -eq 16 ]; then
    ok "sampling: seed 1 twice '$S1', seed 2 '$S2'"
else
    bad "sampling: seed 1 '$S1' then '$S1b', seed 2 '$S2'"
fi

# ---- 3. a sharded checkpoint with its config.json ----------------------------------------
L=dsl-examples/llama_model.fdl
CK="--config $tmp/ck/config.json --weights $tmp/ck/model.safetensors.index.json"
tokens "llama_model.fdl, config.json + 2 shards" "$WANT" $FUSEC run $L $CK --prompt-ids "$IDS" -n 8
expect 0 "llama_model.fdl with its config vs the interpreter (fusec check --config)" $FUSEC check $L \
    --config "$tmp/ck/config.json" --random --dim T=4
tokens "llama_model.fdl, one file" "$WANT" $FUSEC run $L --config "$tmp/ck/config.json" --weights "$G" \
    --weight-prefix w. --prompt-ids "$IDS" -n 8

# ---- 4. bad input ------------------------------------------------------------------------
refuse 2 "no --weights" "--weights is required" $FUSEC run $M --prompt-ids 1
refuse 2 "no --prompt-ids" "--prompt-ids is required" $FUSEC run $M --weights "$G"
for bad_ids in "" "1,,2" "-1" "1,x" "2147483648" "1," ; do
    refuse 2 "--prompt-ids '$bad_ids'" "--prompt-ids: expected token ids" $FUSEC run $M --weights "$G" --prompt-ids "$bad_ids"
done
refuse 2 "-n 0" "-n: expected a token count" $RUN -n 0
refuse 2 "--top-p 0" "--top-p: expected a number in (0, 1]" $RUN --top-p 0
refuse 2 "--temperature -1" "--temperature: expected a number >= 0" $RUN --temperature -1
refuse 2 "--temperature nan" "--temperature: expected a number >= 0" $RUN --temperature nan
refuse 2 "unknown option" "unknown option '--topk'" $RUN --topk 3
refuse 1 "id beyond the vocabulary" "id 512 at element 1 of 'input_ids' is outside [0, 512)" \
    $FUSEC run $M --weights "$G" --weight-prefix w. --prompt-ids 1,512 -n 2 --target generic
refuse 1 "weights without their prefix" "model.embed_tokens.weight" $FUSEC run $M --weights "$G" --prompt-ids 1
refuse 1 "the untied block on a tied checkpoint" "use a block whose logits read model.embed_tokens.weight" \
    $FUSEC run $L $CK --block llama_model_untied --prompt-ids 1
refuse 1 "a block that is no model" "must take one input, the token ids i32[T]" \
    $FUSEC run dsl-examples/llama_layer.fdl --weights "$GOLDEN/llama_layer.safetensors" --prompt-ids 1
mkdir -p "$tmp/bad"
cp "$tmp/ck/model.safetensors.index.json" "$tmp/bad/"
cp "$tmp/ck/model-00001-of-00002.safetensors" "$tmp/bad/"
refuse 1 "a missing shard" "model-00002-of-00002.safetensors" \
    $FUSEC run $L --config "$tmp/ck/config.json" --weights "$tmp/bad/model.safetensors.index.json" --prompt-ids 1
$PY - "$tmp/ck/model.safetensors.index.json" "$tmp/bad/drop.index.json" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
del j["weight_map"]["model.layers.2.mlp.up_proj.weight"]
json.dump(j, open(sys.argv[2], "w"))
PYEOF
cp "$tmp/ck/model-0000"*.safetensors "$tmp/bad/"
refuse 1 "a tensor the index does not list" "tensor 'model.layers.2.mlp.up_proj.weight' is not in the weight_map" \
    $FUSEC run $L --config "$tmp/ck/config.json" --weights "$tmp/bad/drop.index.json" --prompt-ids 1
printf '{"weight_map": {"a": "x.safetensors",}}' >"$tmp/bad/broken.index.json"
refuse 1 "a broken index" "broken.index.json:1:38: expected a key string" \
    $FUSEC run $L --config "$tmp/ck/config.json" --weights "$tmp/bad/broken.index.json" --prompt-ids 1
printf '{"weight_map": {"a": "../x.safetensors"}}' >"$tmp/bad/escape.index.json"
refuse 1 "an index naming a file elsewhere" "is not a file name beside the index" \
    $FUSEC run $L --config "$tmp/ck/config.json" --weights "$tmp/bad/escape.index.json" --prompt-ids 1
refuse 1 "no config for config.NAME" "reads the model's config.json, but none was given" \
    $FUSEC run $L --weights "$G" --prompt-ids 1
sed 's/"num_key_value_heads"/"n_kv"/' "$tmp/ck/config.json" >"$tmp/bad/config.json"
refuse 1 "a config without a key" "error: config '$tmp/bad/config.json' has no 'num_key_value_heads'" \
    $FUSEC --emit=ir --config "$tmp/bad/config.json" $L
printf '{"hidden_size": 192,\n "vocab_size" 512}' >"$tmp/bad/broken.json"
refuse 1 "a broken config" "broken.json:2:15: expected ':'" $FUSEC --emit=ir --config "$tmp/bad/broken.json" $L
refuse 1 "a config that is no file" "cannot open" $FUSEC --emit=ir --config "$tmp/bad/nope.json" $L

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
