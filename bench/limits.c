/*
 * limits.c - the machine's limits, measured at the start of every run: FMA
 * throughput per core and on all threads, streaming read bandwidth on one
 * thread and on all threads.  Every benchmark result is printed as a
 * fraction of one of these (the roofline), so they are measured rather than
 * taken from a data sheet: a VM's share of a socket is what the kernels get.
 *
 * Threads come from the runtime's pool (fr_parallel), the same threads the
 * generated kernels use.  Each measurement is the best of a few trials: a
 * limit is what the machine can do, not what it usually does.  The ISA
 * kernels live in limits_avx2.c and limits_avx512.c (built with their
 * flags); the portable ones below are the fallback on any other CPU.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#define MAX_THREADS 256

/* ---- portable kernels --------------------------------------------------------- */

float fma_portable(long iters, double *flops)
{
    /* eight independent chains; the compiler may or may not vectorise them,
     * which is exactly what "portable" means */
    float a0 = 0.50f, a1 = 0.51f, a2 = 0.52f, a3 = 0.53f;
    float a4 = 0.54f, a5 = 0.55f, a6 = 0.56f, a7 = 0.57f;
    const float m = 0.99999f, c = 1e-5f;
    for (long k = 0; k < iters; k++) {
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;
    }
    *flops = (double)iters * 8 * 2;
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

float sum_portable(const float *x, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += x[i + k];
    for (; i < n; i++)
        s[0] += x[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* ---- FMA peak ------------------------------------------------------------------- */

typedef float (*FmaFn)(long iters, double *flops);

static FmaFn fma_fn(const char *isa)
{
    if (strcmp(isa, "avx512") == 0)
        return fma_avx512_available() ? fma_avx512 : NULL;
    if (strcmp(isa, "avx2") == 0)
        return fma_avx2_available() ? fma_avx2 : NULL;
    if (strcmp(isa, "portable") == 0)
        return fma_portable;
    return NULL;
}

typedef struct FmaCtx {
    FmaFn fn;
    long iters;
    double flops[MAX_THREADS];
    float sink[MAX_THREADS];
} FmaCtx;

static void fma_task(void *ctx, int tid, int nthreads)
{
    FmaCtx *c = ctx;
    (void)nthreads;
    if (tid < MAX_THREADS)
        c->sink[tid] = c->fn(c->iters, &c->flops[tid]);
}

static volatile float sink; /* results land here so no kernel is dead code */

/* One timed fr_parallel of every thread running the FMA chains: GFLOP/s. */
static double fma_trial(FmaCtx *c, int nthreads)
{
    memset(c->flops, 0, sizeof c->flops);
    double t = fr_now();
    fr_parallel(fma_task, c);
    t = fr_now() - t;
    double flops = 0;
    for (int i = 0; i < nthreads && i < MAX_THREADS; i++) {
        flops += c->flops[i];
        sink += c->sink[i];
    }
    return t > 0 ? flops / t / 1e9 : 0;
}

double limits_fma_peak_isa(const char *isa, int nthreads)
{
    static FmaCtx ctx;
    FmaFn fn = fma_fn(isa);
    if (!fn)
        return 0;
    int old = fr_get_num_threads();
    fr_set_num_threads(nthreads);
    ctx.fn = fn;
    /* calibrate to about 0.15 s per trial, then keep the best of three */
    ctx.iters = 100000;
    double g = fma_trial(&ctx, nthreads), best = 0;
    double per_iter = g > 0 ? ctx.flops[0] / (double)ctx.iters / (g * 1e9 / nthreads) : 0;
    ctx.iters = per_iter > 0 ? (long)(0.15 / per_iter) : 10000000;
    if (ctx.iters < 100000)
        ctx.iters = 100000;
    for (int trial = 0; trial < 3; trial++) {
        g = fma_trial(&ctx, nthreads);
        if (g > best)
            best = g;
    }
    fr_set_num_threads(old);
    return best;
}

double limits_fma_peak(int nthreads, const char **isa)
{
    static const char *const isas[] = {"avx512", "avx2", "portable"};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        double g = limits_fma_peak_isa(isas[i], nthreads);
        if (g > 0) {
            if (isa)
                *isa = isas[i];
            return g;
        }
    }
    return 0;
}

/* ---- read bandwidth and cache flushing ---------------------------------------------- */

static float *buf;
static size_t buf_floats;

typedef float (*SumFn)(const float *x, size_t n);

typedef struct SumCtx {
    SumFn fn;
    const float *x;
    size_t n;
    float sink[MAX_THREADS];
} SumCtx;

static void sum_task(void *ctx, int tid, int nthreads)
{
    SumCtx *c = ctx;
    int64_t b, e;
    fr_split((int64_t)c->n, tid, nthreads, &b, &e);
    if (tid < MAX_THREADS)
        c->sink[tid] = c->fn(c->x + b, (size_t)(e - b));
}

static SumFn sum_fn(void)
{
    if (fma_avx512_available())
        return sum_avx512;
    if (fma_avx2_available())
        return sum_avx2;
    return sum_portable;
}

static int ensure_buf(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    if (buf && buf_floats >= n)
        return 0;
    fr_free(buf);
    buf_floats = 0;
    /* fr_alloc zero-fills, so every page is really backed before timing */
    buf = fr_alloc(n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench: cannot allocate %zu bytes for the bandwidth buffer\n", bytes);
        return -1;
    }
    buf_floats = n;
    return 0;
}

static double sum_pass(size_t n)
{
    static SumCtx ctx;
    ctx.fn = sum_fn();
    ctx.x = buf;
    ctx.n = n;
    double t = fr_now();
    fr_parallel(sum_task, &ctx);
    t = fr_now() - t;
    for (int i = 0; i < fr_pool_threads() && i < MAX_THREADS; i++)
        sink += ctx.sink[i];
    return t;
}

double limits_read_bw(size_t bytes, int nthreads)
{
    if (ensure_buf(bytes) != 0)
        return 0;
    int old = fr_get_num_threads();
    fr_set_num_threads(nthreads);
    size_t n = bytes / sizeof(float);
    double best = 0;
    sum_pass(n); /* first pass: page tables, TLBs */
    for (int trial = 0; trial < 5; trial++) {
        double t = sum_pass(n);
        double gbs = t > 0 ? (double)(n * sizeof(float)) / t / 1e9 : 0;
        if (gbs > best)
            best = gbs;
    }
    fr_set_num_threads(old);
    return best;
}

void limits_flush(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    if (ensure_buf(bytes) != 0)
        return;
    sum_pass(n < buf_floats ? n : buf_floats);
}

void limits_free(void)
{
    fr_free(buf);
    buf = NULL;
    buf_floats = 0;
}
