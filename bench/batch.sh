#!/bin/sh
# bench/batch.sh - batching: N decode sequences (one new token each, P cached
# rows, each its own caches) in one NAME_forward_batch call against N
# NAME_forward calls, on one block (default the Llama-3.2-1B layer,
# bench/blocks/llama_1b.fdl, 240 MB of float32 weights): the linear layers
# read their weights once per call, so the batch reads them once for all N
# tokens (bench/batch_main.c; docs/benchmarks.md, "Batches").  Attention runs
# once over every sequence's (kv head, query tile) items, split over the
# threads by cost: FDL=dsl-examples/smollm_model.fdl P=2048 makes it the
# larger part of a decode step.
#
# Environment: FUSEC (build/fusec), FDL (bench/blocks/llama_1b.fdl), TARGET
# (native), NS ("1 4 16"), P (128), REPEAT (5), THREADS (nproc), CC.
set -u
: "${FUSEC:=build/fusec}" "${FDL:=bench/blocks/llama_1b.fdl}" "${TARGET:=native}" "${NS:=1 4 16}"
: "${P:=128}" "${REPEAT:=5}" "${THREADS:=$(nproc)}" "${CC:=cc}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-bbatch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$FUSEC" --target="$TARGET" "$FDL" -o "$tmp/block.c" || { echo "batch: error: fusec failed"; exit 1; }
desc=$(sed -n 's/^const fr_block_desc \([A-Za-z0-9_]*\) = {$/\1/p' "$tmp/block.c")
$CC -std=c99 -O2 -I runtime -DDESC="$desc" bench/batch_main.c "$tmp/block.c" build/libfusec_rt.a -lm -lpthread \
    -o "$tmp/bench" || { echo "batch: error: the C did not compile"; exit 1; }
for n in $NS; do
    FUSE_NUM_THREADS=$THREADS "$tmp/bench" "$n" "$P" "$REPEAT" || exit 1
done
