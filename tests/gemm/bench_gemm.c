/*
 * bench_gemm.c - how fast the generated GEMM and GEMV run, against what the
 * machine can do (tests/gemm/bench.sh builds and runs it; not part of make
 * test).
 *
 *   bench_gemm peak              FMA peak (GFLOP/s) and read bandwidth (GB/s)
 *                                per thread count, measured with the same
 *                                intrinsics the kernels use
 *   bench_gemm peak-bf16         one thread's AVX512-BF16 peak: 12 chains of
 *                                vdpbf16ps (64 flops each: 16 lanes x 2
 *                                products), or why it cannot run
 *   bench_gemm peak-amx          one thread's AMX bf16 peak: tdpbf16ps into
 *                                four 16 x 16 accumulator tiles from two A
 *                                and two B tiles (16 x 16 x 32 x 2 flops
 *                                each), after fr_amx_enable; or why not
 *   bench_gemm peak-vnni         one thread's AVX512-VNNI int8 peak: 12
 *                                chains of vpdpbusd (128 ops each: 64 u8 x s8
 *                                products and their sums), in GOP/s
 *   bench_gemm peak-amx-int8     one thread's AMX int8 peak: tdpbssd on the
 *                                same tiles (16 x 16 x 64 x 2 ops each)
 *   bench_gemm run T REPS [SETS] runs the linked block (DESC) at T rows REPS
 *                                times (a layer with caches: after 0 cached
 *                                rows, so a prefill); prints GFLOP/s (2 * T * weights) and
 *                                GB/s of weights streamed, best of REPS.
 *                                With SETS > 1 the calls cycle through SETS
 *                                copies of the weights, so that weights
 *                                larger in total than the last-level cache
 *                                come from memory on every call
 *
 * Each figure is also given per CPU-second (process CPU time, all threads):
 * on a machine shared with other work the wall clock counts the time this
 * process was not running, the CPU clock does not.
 *
 * The thread count is FUSE_NUM_THREADS, as for any block.  Peak FMA: 12
 * independent accumulator chains of _mm256_fmadd_ps per thread (enough to
 * cover the FMA latency on two pipes).  Bandwidth: every thread sums its
 * share of a 1 GiB buffer as four streams, best of 5 passes.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "fusec_rt.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const fr_block_desc DESC;

/* Seconds of CPU time used by the process (every thread). */
static double cpu_now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- peak ----------------------------------------------------------------- */

typedef struct PeakCtx {
    double sink[256];
    const float *buf;
    size_t n;
} PeakCtx;

#define FMA_ITERS 20000000L

static void fma_task(void *vctx, int tid, int nth) {
    PeakCtx *c = vctx;
    (void)nth;
    /* twelve named chains: an array would live in memory */
    const __m256 m = _mm256_set1_ps(0.999999f), d = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(1.0f), a2 = _mm256_set1_ps(2.0f);
    __m256 a3 = _mm256_set1_ps(3.0f), a4 = _mm256_set1_ps(4.0f), a5 = _mm256_set1_ps(5.0f);
    __m256 a6 = _mm256_set1_ps(6.0f), a7 = _mm256_set1_ps(7.0f), a8 = _mm256_set1_ps(8.0f);
    __m256 a9 = _mm256_set1_ps(9.0f), a10 = _mm256_set1_ps(10.0f), a11 = _mm256_set1_ps(11.0f);
    for (long it = 0; it < FMA_ITERS; it++) {
        a0 = _mm256_fmadd_ps(a0, m, d);
        a1 = _mm256_fmadd_ps(a1, m, d);
        a2 = _mm256_fmadd_ps(a2, m, d);
        a3 = _mm256_fmadd_ps(a3, m, d);
        a4 = _mm256_fmadd_ps(a4, m, d);
        a5 = _mm256_fmadd_ps(a5, m, d);
        a6 = _mm256_fmadd_ps(a6, m, d);
        a7 = _mm256_fmadd_ps(a7, m, d);
        a8 = _mm256_fmadd_ps(a8, m, d);
        a9 = _mm256_fmadd_ps(a9, m, d);
        a10 = _mm256_fmadd_ps(a10, m, d);
        a11 = _mm256_fmadd_ps(a11, m, d);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    c->sink[tid] = out[0];
}

/* Sums the thread's share of the buffer as four interleaved streams (one
 * stream alone leaves memory-level parallelism unused; the GEMV reads four
 * weight rows at once). */
static void read_task(void *vctx, int tid, int nth) {
    PeakCtx *c = vctx;
    int64_t lo, hi;
    fr_split((int64_t)(c->n / 32), tid, nth, &lo, &hi);
    int64_t q = (hi - lo) / 4;
    const float *p0 = c->buf + lo * 32, *p1 = p0 + q * 32, *p2 = p1 + q * 32, *p3 = p2 + q * 32;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < q; i++, p0 += 32, p1 += 32, p2 += 32, p3 += 32) {
        s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(p0), _mm256_load_ps(p0 + 8)));
        s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(p0 + 16), _mm256_load_ps(p0 + 24)));
        s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(p1), _mm256_load_ps(p1 + 8)));
        s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(p1 + 16), _mm256_load_ps(p1 + 24)));
        s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(p2), _mm256_load_ps(p2 + 8)));
        s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(p2 + 16), _mm256_load_ps(p2 + 24)));
        s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(p3), _mm256_load_ps(p3 + 8)));
        s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(p3 + 16), _mm256_load_ps(p3 + 24)));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    c->sink[tid] = out[0];
}

static int peak(void) {
    static PeakCtx c;
    int nth = fr_pool_threads();
    fr_parallel(fma_task, &c); /* start the pool */
    double t0 = fr_now(), c0 = cpu_now();
    fr_parallel(fma_task, &c);
    double t = fr_now() - t0, ct = cpu_now() - c0;
    double flop = 2.0 * 8 * 12 * (double)FMA_ITERS * nth;
    double gflops = flop / t / 1e9;
    c.n = (size_t)1 << 28; /* 1 GiB of floats */
    float *buf = fr_alloc(c.n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < c.n; i++)
        buf[i] = (float)(i & 7);
    c.buf = buf;
    double best = 1e30, cbest = 1e30;
    for (int r = 0; r < 5; r++) {
        t0 = fr_now();
        c0 = cpu_now();
        fr_parallel(read_task, &c);
        t = fr_now() - t0;
        best = t < best ? t : best;
        t = cpu_now() - c0;
        cbest = t < cbest ? t : cbest;
    }
    printf("threads %d  fma_peak %.1f GFLOP/s (%.1f per thread; %.1f per CPU-second)  read_bw %.1f GB/s "
           "(%.1f per CPU-second x threads)\n",
           nth, gflops, gflops / nth, flop / ct / 1e9, (double)c.n * 4 / best / 1e9,
           (double)c.n * 4 / (cbest / nth) / 1e9);
    fr_free(buf);
    return 0;
}

/* ---- bf16 peaks (one thread) ------------------------------------------------- */

#define DP_ITERS 20000000L

/* Twelve independent chains c0..c11 of one dot-product instruction: the
 * loop of the one-thread peaks below. */
#define DP_CHAINS(STEP)                                                                            \
    do {                                                                                           \
        c0 = STEP(c0, a, b);                                                                       \
        c1 = STEP(c1, a, b);                                                                       \
        c2 = STEP(c2, a, b);                                                                       \
        c3 = STEP(c3, a, b);                                                                       \
        c4 = STEP(c4, a, b);                                                                       \
        c5 = STEP(c5, a, b);                                                                       \
        c6 = STEP(c6, a, b);                                                                       \
        c7 = STEP(c7, a, b);                                                                       \
        c8 = STEP(c8, a, b);                                                                       \
        c9 = STEP(c9, a, b);                                                                       \
        c10 = STEP(c10, a, b);                                                                     \
        c11 = STEP(c11, a, b);                                                                     \
    } while (0)

/* GFLOP/s by the wall clock; *per_cpu by the process's CPU time. */
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_loop(double *per_cpu) {
    const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3f803f80), a = (__m512bh)_mm512_set1_epi32(0x33d633d6);
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    double t0 = fr_now(), ct0 = cpu_now();
    for (long it = 0; it < DP_ITERS; it++)
        DP_CHAINS(_mm512_dpbf16_ps);
    double t = fr_now() - t0, ct = cpu_now() - ct0;
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    *per_cpu = 12.0 * DP_ITERS * 64 / ct / 1e9;
    return 12.0 * DP_ITERS * 64 / t / 1e9;
}

/* vpdpbusd: 64 u8 x s8 products summed into 16 int32 lanes, 128 int8 ops
 * per instruction (GOP/s). */
__attribute__((target("avx512f,avx512vnni"))) static double dpbusd_loop(double *per_cpu) {
    const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01ff01ff);
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512i c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    double t0 = fr_now(), ct0 = cpu_now();
    for (long it = 0; it < DP_ITERS; it++)
        DP_CHAINS(_mm512_dpbusd_epi32);
    double t = fr_now() - t0, ct = cpu_now() - ct0;
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    *per_cpu = 12.0 * DP_ITERS * 128 / ct / 1e9;
    return 12.0 * DP_ITERS * 128 / t / 1e9;
}

static int peak_vnni(void) {
    if (!(fr_cpu_features() & FR_CPU_AVX512VNNI)) {
        printf("avx512vnni_peak: this CPU has no AVX512-VNNI\n");
        return 0;
    }
    double pc, w = dpbusd_loop(&pc);
    printf("threads 1  avx512vnni_peak %.1f GOP/s (vpdpbusd, int8; %.1f per CPU-second)\n", w, pc);
    return 0;
}

static int peak_bf16(void) {
    if (!(fr_cpu_features() & FR_CPU_AVX512BF16)) {
        printf("avx512bf16_peak: this CPU has no AVX512-BF16\n");
        return 0;
    }
    double pc, w = dpbf16_loop(&pc);
    printf("threads 1  avx512bf16_peak %.1f GFLOP/s (vdpbf16ps; %.1f per CPU-second)\n", w, pc);
    return 0;
}

#define AMX_ITERS 5000000L

/* The palette-1 tile configuration: 64 bytes. */
typedef struct AmxCfg {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} AmxCfg;

/* Tiles 4..7 hold A and B (16 rows of 64 bytes), 0..3 the 2 x 2 accumulators;
 * STEP is the tile instruction.  Returns the wall-clock rate, *per_cpu by CPU
 * time; ops = 2 x the products of one instruction (16 x 16 x 32 for bf16, x 64 for int8). */
#define AMX_LOOP(NAME, TARGET, STEP, A, B, OPS)                                                     \
    __attribute__((target(TARGET))) static double NAME(double *per_cpu) {                           \
        static unsigned short ab[2][16 * 32] __attribute__((aligned(64)));                          \
        static float out[16 * 16] __attribute__((aligned(64)));                                     \
        AmxCfg cfg;                                                                                 \
        memset(&cfg, 0, sizeof cfg);                                                                \
        cfg.palette = 1;                                                                            \
        for (int i = 0; i < 8; i++) {                                                               \
            cfg.rows[i] = 16;                                                                       \
            cfg.colsb[i] = 64;                                                                      \
        }                                                                                           \
        for (int i = 0; i < 16 * 32; i++) {                                                         \
            ab[0][i] = A;                                                                           \
            ab[1][i] = B;                                                                           \
        }                                                                                           \
        _tile_loadconfig(&cfg);                                                                     \
        _tile_zero(0);                                                                              \
        _tile_zero(1);                                                                              \
        _tile_zero(2);                                                                              \
        _tile_zero(3);                                                                              \
        _tile_loadd(4, ab[0], 64);                                                                  \
        _tile_loadd(5, ab[0], 64);                                                                  \
        _tile_loadd(6, ab[1], 64);                                                                  \
        _tile_loadd(7, ab[1], 64);                                                                  \
        double t0 = fr_now(), ct0 = cpu_now();                                                      \
        for (long it = 0; it < AMX_ITERS; it++) {                                                   \
            STEP(0, 4, 6);                                                                          \
            STEP(1, 4, 7);                                                                          \
            STEP(2, 5, 6);                                                                          \
            STEP(3, 5, 7);                                                                          \
        }                                                                                           \
        double t = fr_now() - t0, ct = cpu_now() - ct0;                                             \
        _tile_stored(0, out, 64);                                                                   \
        _tile_release();                                                                            \
        volatile float sink = out[0];                                                               \
        (void)sink;                                                                                 \
        *per_cpu = 4.0 * AMX_ITERS * (OPS) / ct / 1e9;                                              \
        return 4.0 * AMX_ITERS * (OPS) / t / 1e9;                                                   \
    }

/* bf16: 1.0 times 1e-7; int8: 1 times 1 (small sums, no overflow in 5M steps of 64) */
AMX_LOOP(amx_loop, "amx-tile,amx-bf16", _tile_dpbf16ps, 0x3f80, 0x33d6, 16 * 16 * 32 * 2)
AMX_LOOP(amx_int8_loop, "amx-tile,amx-int8", _tile_dpbssd, 0x0001, 0x0000, 16 * 16 * 64 * 2)

/* One AMX peak: the feature bit, the loop and the line's words. */
static int peak_amx_of(unsigned feature, double (*loop)(double *), const char *key, const char *insn,
                       const char *unit) {
    fr_err err;
    if (!(fr_cpu_features() & feature) || fr_amx_enable(&err) != 0) {
        printf("%s: no AMX here (%s)\n", key, fr_cpu_features() & feature ? err.msg : "the CPU or the kernel lacks it");
        return 0;
    }
    double pc, w = loop(&pc);
    printf("threads 1  %s %.1f %s (%s, 2 x 2 tiles; %.1f per CPU-second)\n", key, w, unit, insn, pc);
    return 0;
}

static int peak_amx(void) {
    return peak_amx_of(FR_CPU_AMX_BF16, amx_loop, "amx_bf16_peak", "tdpbf16ps", "GFLOP/s");
}

static int peak_amx_int8(void) {
    return peak_amx_of(FR_CPU_AMX_INT8, amx_int8_loop, "amx_int8_peak", "tdpbssd", "GOP/s");
}

/* ---- the block -------------------------------------------------------------- */

static float *rand_floats(int64_t n) {
    float *p = fr_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    uint32_t s = 12345;
    if (!p)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

#define MAX_SETS 16

static const char *fu_sets_note(int sets) {
    static char note[32];
    snprintf(note, sizeof note, ", %d weight sets", sets);
    return note;
}

static int run(int64_t T, int reps, int sets) {
    const fr_block_desc *b = &DESC;
    int64_t syms[FR_MAX_SYMS] = {0};
    const void *w[MAX_SETS][64];
    void *x[64], *y[64];
    float *caches[64];
    int tsym = b->cache_sym == 0 ? 1 : 0;
    if (b->nsyms < 1 || b->nsyms > 2 || (b->nsyms == 2 && b->cache_sym < 0) || b->nweights > 64 ||
        b->ninputs > 64 || b->noutputs > 64 || b->ncaches > 64) {
        fprintf(stderr, "bench_gemm: the block must have one symbol (T), and the cache's (run at 0)\n");
        return 1;
    }
    syms[tsym] = T;
    /* caches (a layer's K and V): room for the T rows this call appends */
    for (int i = 0; i < b->ncaches; i++) {
        syms[b->cache_sym] = 1;
        int64_t row = fr_desc_numel(&b->caches[i], syms);
        syms[b->cache_sym] = 0;
        if (!(caches[i] = rand_floats(row * T)))
            return 1;
    }
    double wfloats = 0;
    if (sets < 1 || sets > MAX_SETS) {
        fprintf(stderr, "bench_gemm: SETS must be 1..%d\n", MAX_SETS);
        return 1;
    }
    for (int i = 0; i < b->nweights; i++) {
        int64_t n = fr_desc_numel(&b->weights[i], syms);
        /* matrices count; vectors (norm weights, biases) are noise */
        if (b->weights[i].rank == 2)
            wfloats += (double)n;
        for (int k = 0; k < sets; k++)
            if (!(w[k][i] = rand_floats(n)))
                return 1;
    }
    for (int i = 0; i < b->ninputs; i++) {
        int64_t n = fr_desc_numel(&b->inputs[i], syms);
        if (!(x[i] = rand_floats(n)))
            return 1;
        if (b->inputs[i].dtype == FR_I32) /* positions */
            for (int64_t k = 0; k < n; k++)
                ((int32_t *)x[i])[k] = (int32_t)k;
    }
    for (int i = 0; i < b->noutputs; i++)
        if (!(y[i] = rand_floats(fr_desc_numel(&b->outputs[i], syms))))
            return 1;
    size_t wsz = b->workspace_size(syms) + 64;
    void *ws = fr_alloc(wsz);
    if (!ws)
        return 1;
    double best = 1e30, cbest = 1e30;
    int nth = fr_pool_threads();
    for (int r = 0; r < reps; r++) {
        double t0 = fr_now(), c0 = cpu_now();
        if (b->run(w[r % sets], b->ncaches ? caches : NULL, b->ncaches ? T : 0, syms, (const void *const *)x, y, ws,
                   wsz) != 0) {
            fprintf(stderr, "bench_gemm: the block failed: %s\n", fr_last_error());
            return 1;
        }
        double t = fr_now() - t0, ct = cpu_now() - c0;
        best = t < best ? t : best;
        cbest = ct < cbest ? ct : cbest;
    }
    /* per CPU-second: as if every thread had run the whole time */
    double ceq = cbest / nth;
    printf("%s T=%lld threads %d%s: %.3f ms  %.1f GFLOP/s  %.1f GB/s of weights  |  per CPU-second: %.1f GFLOP/s "
           "per thread, %.1f GB/s\n",
           b->name, (long long)T, nth, sets > 1 ? fu_sets_note(sets) : "", best * 1e3, 2.0 * (double)T * wfloats / best / 1e9,
           wfloats * 4 / best / 1e9, 2.0 * (double)T * wfloats / cbest / 1e9, wfloats * 4 / ceq / 1e9);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "peak") == 0)
        return peak();
    if (argc == 2 && strcmp(argv[1], "peak-bf16") == 0)
        return peak_bf16();
    if (argc == 2 && strcmp(argv[1], "peak-amx") == 0)
        return peak_amx();
    if (argc == 2 && strcmp(argv[1], "peak-vnni") == 0)
        return peak_vnni();
    if (argc == 2 && strcmp(argv[1], "peak-amx-int8") == 0)
        return peak_amx_int8();
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "run") == 0)
        return run(atoll(argv[2]), atoi(argv[3]), argc == 5 ? atoi(argv[4]) : 1);
    fprintf(stderr, "usage: bench_gemm peak | peak-bf16 | peak-amx | peak-vnni | peak-amx-int8 | run T REPS [SETS]\n");
    return 2;
}
