#!/bin/sh
# tests/tp/run.sh - tensor parallelism over MPI (fusec --tp; docs/distributed.md).
#
#  1. llama_layer (the Hugging Face golden layer): each rank of --tp=2 and
#     --tp=3 compiled on its own, run under mpirun (oversubscribed on this
#     machine's cores), in two calls (a prefill, then the rest after it in
#     the caches); every rank's output equals the single-process block's
#     within 1e-5 of the largest value (tests/tp/tp_layer.c).  --tp=3 splits
#     unevenly: 2 KV heads over 3 ranks (KV head 1 replicated on ranks 1 and
#     2, its 4 query heads split 2 + 2), 704 MLP columns as 234/235/235.
#     bert_layer at --tp=3 the same way on `fusec check --random` data.
#     (--tp=3 runs each rank on 2 threads.)
#  2. smollm_tiny_model: `fusec run --tp 2` and `--tp 3` generate exactly the
#     single-process tokens, greedy (a distributed argmax over each rank's
#     vocabulary columns) and sampled (--temperature 0.8 --top-k 40 --top-p
#     0.9 --seed 3: the ranks gather the logits); the tied embedding table
#     is split by rows (the IR shows rank 1's slice).
#  3. Failures, each within a timeout: a block compiled for 3 ranks started
#     on 2 (every rank names both counts); a rank killed mid-generation (the
#     survivors say mpirun ended them); a rank that stalls (SIGSTOP: the
#     others' all-reduce times out after FUSEC_TP_TIMEOUT seconds and ends
#     the job); blocks the pass cannot split (gpt2_block's fused qkv, the
#     MoE layer) are refused with an error naming the attention or MoE.
#
# Needs mpicc and mpirun (scripts/install-deps.sh installs OpenMPI): without
# them the suite FAILS, never passes silently.
# Environment: FUSEC (default build/fusec), GOLDEN (tests/golden/hf), FUSEC_LIB_DIR (build).
set -u
: "${FUSEC:=build/fusec}" "${GOLDEN:=tests/golden/hf}" "${FUSEC_LIB_DIR:=build}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-tp.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. tests/lib.sh

if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
    bad "mpicc/mpirun not found: install openmpi-bin libopenmpi-dev (scripts/install-deps.sh)"
    echo "$pass passed, $fail failed"
    exit 1
fi
MPIRUN="mpirun --oversubscribe"
[ "$(id -u)" -eq 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"
export OMPI_MCA_btl_vader_single_copy_mechanism=none   # containers without ptrace
make -s comm BUILD="$FUSEC_LIB_DIR" >"$tmp/log" 2>&1 || { bad "make comm"; cat "$tmp/log"; }
RT="-Iruntime -Iruntime/mpi"
LIBS="$FUSEC_LIB_DIR/libfusec_comm.a $FUSEC_LIB_DIR/libfusec_rt.a -lm -lpthread"
LLAMA=$GOLDEN/llama_layer.safetensors

# ---- 1. layers, split over 2 and 3 ranks ----
# reference BLK DATA SPLIT: the whole block's output on DATA, $tmp/BLK.ref.bin
reference() {
    $FUSEC --target=native "dsl-examples/$1.fdl" -o "$tmp/$1.c" &&
        cc -std=c99 -O2 -march=native -Iruntime -DFUSEC_BLOCK_DESC="$1_desc" "$tmp/$1.c" tests/tp/tp_layer.c \
            "$FUSEC_LIB_DIR/libfusec_rt.a" -lm -lpthread -o "$tmp/$1" &&
        "$tmp/$1" "$2" "$3" "$tmp/$1.ref.bin" || bad "$1: the single-process reference"
}
# build BLK N: rank programs $tmp/BLK.rN.R
build() {
    r=0
    while [ $r -lt "$2" ]; do
        $FUSEC --target=native --tp="$2" --tp-rank=$r "dsl-examples/$1.fdl" -o "$tmp/$1.r$2.$r.c" &&
            mpicc -std=c99 -O2 -march=native -Wall -Wextra -Werror $RT -DFUSEC_MPI -DFUSEC_BLOCK_DESC="$1_desc" \
                "$tmp/$1.r$2.$r.c" tests/tp/tp_layer.c $LIBS -o "$tmp/$1.r$2.$r" || return 1
        r=$((r + 1))
    done
}
# mpmd BLK DATA N RANKS SPLIT: the command line running ranks 0..RANKS-1 of the --tp=N build
mpmd() {
    cmd="timeout 60 $MPIRUN" r=0
    while [ $r -lt "$4" ]; do
        [ $r -gt 0 ] && cmd="$cmd :"
        cmd="$cmd -np 1 $tmp/$1.r$3.$r $2 $5 $tmp/x.bin $tmp/$1.ref.bin"
        r=$((r + 1))
    done
    echo "$cmd"
}
# layer BLK DATA N SPLIT ROWS: every rank of --tp=N equals the single process
layer() {
    if ! build "$1" "$3" >"$tmp/log" 2>&1; then
        bad "$1 --tp=$3: build"
        sed 's/^/       /' "$tmp/log" | head -20
        return
    fi
    $(mpmd "$1" "$2" "$3" "$3" "$4") >"$tmp/log" 2>&1
    rc=$? good=$(grep -c " ok$" "$tmp/log")
    if [ $rc -eq 0 ] && [ "$good" -eq "$3" ]; then
        ok "$1 --tp=$3 (prefill $4, then $(($5 - $4))): every rank equals one process"
        grep "rank 0 of" "$tmp/log" | sed 's/^/       /'
    else
        bad "$1 --tp=$3 (exit $rc, $good of $3 ranks ok)"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
}
reference llama_layer "$LLAMA" 9
layer llama_layer "$LLAMA" 2 9 13
export FUSE_NUM_THREADS=2   # the all-reduce kernel's residual add on two threads (a barrier)
layer llama_layer "$LLAMA" 3 12 13
unset FUSE_NUM_THREADS
# bert_layer (biases: the row-parallel ones added by rank 0 only; layer_norm,
# GELU, no causal mask, 4 heads as 1 + 1 + 2) on fusec check's random data
if $FUSEC check dsl-examples/bert_layer.fdl --random --dim T=7 --keep "$tmp/bert" >"$tmp/log" 2>&1; then
    reference bert_layer "$tmp/bert/in.safetensors" 7
    layer bert_layer "$tmp/bert/in.safetensors" 3 7 7
else
    bad "bert_layer: random data"
    sed 's/^/       /' "$tmp/log" | head
fi
# the negative control: a rank given a wrong weight (rank 1's o_proj slice
# from rank 0's columns) must fail the comparison
sed 's/"self_attn.o_proj.weight", FR_F32, 2, (const int64_t\[\]){256, 256}, 1, 128/"self_attn.o_proj.weight", FR_F32, 2, (const int64_t[]){256, 256}, 1, 0/; s/{2, 128, 256},/{2, 0, 256},/' \
    "$tmp/llama_layer.r2.1.c" >"$tmp/bad.c"
if cmp -s "$tmp/bad.c" "$tmp/llama_layer.r2.1.c"; then
    bad "negative control: the sabotage did not change rank 1"
else
    mpicc -std=c99 -O2 -march=native $RT -DFUSEC_MPI -DFUSEC_BLOCK_DESC=llama_layer_desc "$tmp/bad.c" \
        tests/tp/tp_layer.c $LIBS -o "$tmp/llama_layer.r2.1"
    expect_msg 1 "negative control: a wrong slice on rank 1 fails the comparison" "FAIL" \
        $(mpmd llama_layer "$LLAMA" 2 2 9)
fi

# ---- 2. whole model: greedy generation ----
RUN="$FUSEC run dsl-examples/smollm_model.fdl --weights $GOLDEN/smollm_tiny_model.safetensors --weight-prefix w. --prompt-ids 131,95,220,17,300 -n 10"
want=$($RUN 2>"$tmp/log")
[ -n "$want" ] || { bad "smollm: single-process tokens"; cat "$tmp/log"; }
for n in 2 3; do
    got=$(timeout 120 $RUN --tp $n --mpirun "$MPIRUN" 2>"$tmp/log")
    if [ -n "$want" ] && [ "$got" = "$want" ]; then
        ok "smollm_tiny_model fusec run --tp $n: the single-process tokens ($got)"
    else
        bad "smollm_tiny_model fusec run --tp $n: '$got', want '$want'"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
done

# sampling (temperature, top-k, top-p, seed): the ranks gather the logits and draw alike
want=$($RUN --temperature 0.8 --top-k 40 --top-p 0.9 --seed 3 2>"$tmp/log")
got=$(timeout 120 $RUN --temperature 0.8 --top-k 40 --top-p 0.9 --seed 3 --tp 2 --mpirun "$MPIRUN" 2>"$tmp/log")
if [ -n "$want" ] && [ "$got" = "$want" ]; then
    ok "smollm_tiny_model fusec run --tp 2 --temperature 0.8 --seed 3: the single-process tokens ($got)"
else
    bad "smollm_tiny_model sampling under --tp 2: '$got', want '$want'"
    sed 's/^/       /' "$tmp/log" | head -20
fi
# the vocabulary split: rank 1 of 3 holds rows 170..341 of the tied table
$FUSEC --tp=3 --tp-rank=1 --emit=ir dsl-examples/smollm_model.fdl >"$tmp/ir" 2>&1
if grep -q 'embed_tokens.weight" {tp: axis 0 from 170 of 512} : f32\[171, 192\]' "$tmp/ir" &&
    grep -q 'output "logits"(%[0-9]*) : f32\[1, 171\]' "$tmp/ir"; then
    ok "smollm --tp=3: embedding and logits vocabulary-parallel (rows 170..340 on rank 1)"
else
    bad "smollm --tp=3: vocabulary split"
    grep -E "embed|logits" "$tmp/ir" | sed 's/^/       /' | head
fi

# ---- 3. failures ----
if [ -x "$tmp/llama_layer.r3.1" ]; then
    expect_msg 1 "a --tp=3 block started on 2 ranks: refused at bind" "compiled for rank 1 of 3 (--tp=3 --tp-rank=1), but this process is rank 1 of 2" \
        $(mpmd llama_layer "$LLAMA" 3 2 9)
fi
# ends NAME REGEX ENV...: fusec run --tp 2 with ENV set must fail (not time out) and print REGEX
ends() {
    name=$1 re=$2
    shift 2
    t0=$(date +%s)
    env "$@" timeout 60 $RUN --tp 2 --mpirun "$MPIRUN" >"$tmp/log" 2>&1
    rc=$? t=$(($(date +%s) - t0))
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q -- "$re" "$tmp/log"; then
        ok "$name (exit $rc, ${t}s)"
    else
        bad "$name (exit $rc, ${t}s)"
        sed 's/^/       /' "$tmp/log" | head -20
    fi
}
ends "rank 1 killed at token 3: rank 0 ends with an error" \
    "rank 0 of 2: terminated by mpirun (another rank failed or died)" FUSEC_TP_TEST_KILL=1:3
ends "rank 1 stalls at token 2: rank 0's all-reduce times out and ends the job" \
    "rank 0 of 2: error: .*timed out after 3 s: a peer rank died or stalls" FUSEC_TP_TIMEOUT=3 FUSEC_TP_TEST_KILL=1:2:stop
expect_msg 1 "gpt2_block (fused qkv) refused" "--tp=2: cannot split" \
    $FUSEC --tp=2 --tp-rank=0 dsl-examples/gpt2_block.fdl -o "$tmp/g.c"
expect_msg 1 "qwen3_moe_layer (per-head q_norm, MoE) refused" "--tp=2: cannot split the attention of block 'qwen3_moe_layer'" \
    $FUSEC --tp=2 --tp-rank=1 dsl-examples/qwen3_moe_layer.fdl -o "$tmp/q.c"
expect_msg 2 "--tp-rank outside --tp" "the rank must be below --tp" \
    $FUSEC --tp=2 --tp-rank=2 dsl-examples/llama_layer.fdl -o "$tmp/l.c"
expect_msg 2 "fusec run --tp 0" "--tp: expected a rank count" $RUN --tp 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
