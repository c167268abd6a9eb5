/*
 * bench.h - what the benchmark driver's files share: the model configs the
 * workloads run at, the machine limits (limits.c, limits_avx2.c,
 * limits_avx512.c) and the OpenBLAS peer (peer_openblas.c).
 *
 * The driver (bench.c) runs fusec's generated blocks through their
 * fr_block_desc, so nothing here knows a generated name; the peers are
 * written by hand against Model, the same numbers the .fdl blocks in
 * bench/blocks/ spell out.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "fusec_rt.h"

/* ---- models ---------------------------------------------------------------- */

typedef enum ModelKind {
    MODEL_LLAMA,    /* LlamaDecoderLayer: RMSNorm, GQA attention with RoPE, SwiGLU MLP */
    MODEL_ATTN,     /* causal attention alone: q, k, v in, attention out */
    MODEL_GPT2,     /* GPT2Block: LayerNorm, MHA, gelu_new MLP, Conv1D [in, out] weights */
    MODEL_MLP       /* RMSNorm + SwiGLU, no residual */
} ModelKind;

typedef struct Model {
    ModelKind kind;
    int64_t D, F;           /* hidden size, MLP inner size */
    int64_t H, KVH, HD;     /* heads, key/value heads, head dim */
    double eps, theta;      /* norm epsilon, RoPE base */
} Model;

/* Looks up a weight of the current block by checkpoint name and checks its
 * element count; NULL (with a message on stderr) if missing or misshapen.
 * Defined by the driver. */
const float *bench_weight(const char *name, int64_t numel);

/* ---- machine limits (limits.c) ----------------------------------------------- */

/* FMA throughput in GFLOP/s on `nthreads` threads of the runtime pool with the
 * best instruction set this CPU and build offer; *isa names it. */
double limits_fma_peak(int nthreads, const char **isa);
/* The same for one instruction set ("avx512", "avx2", "portable"); 0 when
 * this CPU or build lacks it. */
double limits_fma_peak_isa(const char *isa, int nthreads);
/* Streaming read bandwidth in GB/s (1e9 bytes) summing a buffer of `bytes`
 * on `nthreads` threads; best of a few passes. Allocates the buffer on first
 * use and keeps it for limits_flush.  0 on failure. */
double limits_read_bw(size_t bytes, int nthreads);
/* Evicts the caches by reading `bytes` of that buffer with all threads. */
void limits_flush(size_t bytes);
void limits_free(void);

/* Kernels per instruction set (limits_avx2.c, limits_avx512.c, limits.c):
 * fma_* runs `iters` iterations of independent FMA chains and returns a
 * value that depends on all of them (so the compiler keeps them) and the
 * flops in *flops; sum_* sums n floats.  *_available() is 0 when the build
 * or the CPU lacks the instructions. */
int fma_avx512_available(void);
float fma_avx512(long iters, double *flops);
float sum_avx512(const float *x, size_t n);
int fma_avx2_available(void);
float fma_avx2(long iters, double *flops);
float sum_avx2(const float *x, size_t n);
float fma_portable(long iters, double *flops);
float sum_portable(const float *x, size_t n);

/* ---- the OpenBLAS peer (peer_openblas.c) ---------------------------------------- */

/* 1 when built against OpenBLAS (else every peer_* call returns -1). */
int peer_available(void);
void peer_set_threads(int n);
/* The kernel set OpenBLAS chose for this CPU ("SkylakeX", "Haswell", ...). */
const char *peer_corename(void);
/* Floats of scratch the peer needs for T new tokens after P cached ones. */
size_t peer_scratch_floats(const Model *m, int64_t T, int64_t P);
/*
 * Runs the model on T tokens after P cached ones, like the fusec block:
 * inputs in the block's declaration order (hidden_states, position_ids for
 * Llama; q, k, v for attention), caches (k, v) of at least P + T rows whose
 * rows [P, P + T) it overwrites, out [T, D].  Weights come from
 * bench_weight.  Returns 0, or -1 when a weight is missing.
 */
int peer_run(const Model *m, int64_t T, int64_t P, const void *const *inputs,
             float *k_cache, float *v_cache, float *out, float *scratch);

#endif /* BENCH_H */
