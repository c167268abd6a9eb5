/*
 * tune.c - `fusec tune [--target T] [--threads N] -o machine.tune`: short
 * microbenchmarks of this machine for the cost model (cost.c), written as
 * a tune file that `fusec --tune=FILE` reads (docs/fusion.md).
 *
 * What it measures, each the best of a few runs on N threads at once:
 *  - the FMA peak of one core on the target's vectors: independent chains
 *    of fused multiply-adds (AVX-512 and AVX2 through GCC's target
 *    attribute, so fusec itself needs no -m flags; NEON on aarch64;
 *    generic: plain C the compiler vectorises as it can);
 *  - bf16 and int8 dot products where the row has them (vdpbf16ps,
 *    vpdpbusd), and where this CPU runs them;
 *  - read bandwidth: summing a 256 MiB buffer, on one core and on N;
 * and reads the cache sizes from the operating system (sysconf).  The
 * efficiencies stay the model's defaults.  About a second in all.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TUNE_X86 1
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHAINS 12
#define REPS 4000000L
/* Twelve independent chains in named variables, so that -O2 keeps them in
 * registers without unrolling a loop (an array spilled to the stack made
 * each step wait on a store). */
#define CHAIN12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)

/* Each returns the FLOPs it did (an FMA lane counts 2), with a result the
 * caller keeps so that nothing is optimised away. */
static double fma_generic(float *sink) {
    float a[CHAINS * 4], x = 1.0000001f, y = 0.9999999f;
    for (int i = 0; i < CHAINS * 4; i++)
        a[i] = (float)i;
    for (long r = 0; r < REPS / 4; r++)
        for (int i = 0; i < CHAINS * 4; i++)
            a[i] = a[i] * x + y;
    float s = 0;
    for (int i = 0; i < CHAINS * 4; i++)
        s += a[i];
    *sink = s;
    return 2.0 * (REPS / 4) * CHAINS * 4;
}

#ifdef TUNE_X86
__attribute__((target("avx512f,fma"))) static double fma_avx512(float *sink) {
    __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f), s = _mm512_setzero_ps();
#define D(i) __m512 a##i = _mm512_set1_ps((float)i);
#define S(i) a##i = _mm512_fmadd_ps(a##i, x, y);
#define R(i) s = _mm512_add_ps(s, a##i);
    CHAIN12(D)
    for (long r = 0; r < REPS; r++) {
        CHAIN12(S)
    }
    CHAIN12(R)
#undef D
#undef S
#undef R
    *sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16 * REPS * CHAINS;
}

__attribute__((target("avx2,fma"))) static double fma_avx2(float *sink) {
    __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f), s = _mm256_setzero_ps();
#define D(i) __m256 a##i = _mm256_set1_ps((float)i);
#define S(i) a##i = _mm256_fmadd_ps(a##i, x, y);
#define R(i) s = _mm256_add_ps(s, a##i);
    CHAIN12(D)
    for (long r = 0; r < REPS; r++) {
        CHAIN12(S)
    }
    CHAIN12(R)
#undef D
#undef S
#undef R
    float v[8];
    _mm256_storeu_ps(v, s);
    *sink = v[0] + v[7];
    return 2.0 * 8 * REPS * CHAINS;
}

/* vdpbf16ps: 16 lanes, each 2 products summed: 64 FLOP per instruction */
__attribute__((target("avx512f,avx512bf16"))) static double dot_bf16(float *sink) {
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f80);
    __m512 s = _mm512_setzero_ps();
#define D(i) __m512 a##i = _mm512_setzero_ps();
#define S(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
#define R(i) s = _mm512_add_ps(s, a##i);
    CHAIN12(D)
    for (long r = 0; r < REPS; r++) {
        CHAIN12(S)
    }
    CHAIN12(R)
#undef D
#undef S
#undef R
    *sink = _mm512_reduce_add_ps(s);
    return 64.0 * REPS * CHAINS;
}

/* vpdpbusd: 16 lanes, each 4 products summed: 128 operations */
__attribute__((target("avx512f,avx512vnni"))) static double dot_int8(float *sink) {
    __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1), s = _mm512_setzero_si512();
#define D(i) __m512i a##i = _mm512_setzero_si512();
#define S(i) a##i = _mm512_dpbusd_epi32(a##i, x, y);
#define R(i) s = _mm512_add_epi32(s, a##i);
    CHAIN12(D)
    for (long r = 0; r < REPS; r++) {
        CHAIN12(S)
    }
    CHAIN12(R)
#undef D
#undef S
#undef R
    *sink = (float)_mm512_reduce_add_epi32(s);
    return 128.0 * REPS * CHAINS;
}
#endif

#if defined(__aarch64__)
static double fma_neon(float *sink) {
    float32x4_t x = vdupq_n_f32(1.0000001f), y = vdupq_n_f32(0.9999999f), s = vdupq_n_f32(0.0f);
#define D(i) float32x4_t a##i = vdupq_n_f32((float)i);
#define S(i) a##i = vfmaq_f32(y, a##i, x);
#define R(i) s = vaddq_f32(s, a##i);
    CHAIN12(D)
    for (long r = 0; r < REPS; r++) {
        CHAIN12(S)
    }
    CHAIN12(R)
#undef D
#undef S
#undef R
    *sink = vaddvq_f32(s);
    return 2.0 * 4 * REPS * CHAINS;
}
#endif

/* ---- running a kernel on n threads at once -------------------------------------------- */

typedef double (*Bench)(float *sink);

typedef struct Job {
    Bench fn;
    const float *buf;
    size_t len;
    double work, secs;
    float sink;
} Job;

static double sum_floats(const float *p, size_t n, float *sink) {
    float s[16] = {0};
    for (size_t i = 0; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            s[j] += p[i + j];
    float t = 0;
    for (int j = 0; j < 16; j++)
        t += s[j];
    *sink = t;
    return 4.0 * (double)n;
}

static void *job_run(void *arg) {
    Job *j = arg;
    double t0 = now();
    j->work = j->fn ? j->fn(&j->sink) : sum_floats(j->buf, j->len, &j->sink);
    j->secs = now() - t0;
    return NULL;
}

/* The rate (work per second, all threads) of fn, or of reading buf split
 * over the threads: the best of `tries`. */
static double rate(int threads, Bench fn, const float *buf, size_t len, int tries) {
    double best = 0;
    Job *jobs = fu_alloc(sizeof *jobs * (size_t)threads);
    pthread_t *tid = fu_alloc(sizeof *tid * (size_t)threads);
    for (int r = 0; r < tries; r++) {
        for (int i = 0; i < threads; i++) {
            size_t per = len / (size_t)threads;
            jobs[i] = (Job){fn, buf ? buf + per * (size_t)i : NULL, per, 0, 0, 0};
            if (pthread_create(&tid[i], NULL, job_run, &jobs[i]) != 0)
                fu_internal(__FILE__, __LINE__, "pthread_create failed");
        }
        double work = 0, slowest = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(tid[i], NULL);
            work += jobs[i].work;
            slowest = jobs[i].secs > slowest ? jobs[i].secs : slowest;
        }
        if (slowest > 0 && work / slowest > best)
            best = work / slowest;
    }
    return best;
}

static int64_t cache(int name, int64_t dflt) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long v = sysconf(name);
    return v > 0 ? v : dflt;
#else
    (void)name;
    return dflt;
#endif
}

static int usage(const char *fmt, const char *arg) {
    fprintf(stderr, "fusec tune: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: fusec tune [--target T] [--threads N] -o FILE (fusec tune --help)\n");
    return EXIT_USAGE;
}

static const char help[] =
    "usage: fusec tune [--target T] [--threads N] -o FILE\n"
    "\n"
    "Measures this machine for fusec's cost model (docs/fusion.md) and writes a tune\n"
    "file for fusec --tune=FILE: the FMA peak of one core on the target's vectors,\n"
    "bf16/int8 dot products where the target has them, the read bandwidth of one\n"
    "core and of N threads, and the cache sizes the operating system reports.\n"
    "\n"
    "  --target=T     the target row to measure (default native); the CPU must run it\n"
    "  --threads=N    threads the estimates assume and the bandwidth is read with (default 1)\n"
    "  -o FILE        the tune file to write ('-' for standard output)\n";

int tune_main(int argc, char **argv) {
    const char *target = "native", *out = NULL;
    long threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        size_t n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--target") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc)
                return usage("'%s' needs a value", a);
            v = argv[++i];
        } else if ((n = strcspn(a, "=")) && a[n] == '=' &&
                   (!strncmp(a, "--target", n) || !strncmp(a, "--threads", n))) {
            v = a + n + 1;
            a = fu_strndup(a, n);
        } else if (!strncmp(a, "-o", 2) && a[2]) {
            v = a + 2;
            a = "-o";
        } else {
            return usage("unknown argument '%s'", a);
        }
        if (!strcmp(a, "-o")) {
            out = v;
        } else if (!strcmp(a, "--target")) {
            target = v;
        } else {
            char *e;
            errno = 0;
            threads = strtol(v, &e, 10);
            if (*e || e == v || errno || threads < 1 || threads > 256)
                return usage("--threads: expected a count from 1 to 256, got '%s'", v);
        }
    }
    if (!out)
        return usage("no output file: use -o FILE%s", "");
    const Target *t = target_find(target);
    if (!t)
        return usage("%s", target_error(target));
    if (t->nvariants)
        return usage("a tune file describes one target row, not '%s'", target);
    unsigned have = fr_cpu_features();
    if ((t->features & have) != t->features)
        return usage("this CPU cannot run target '%s': tune on the machine that will run the code", t->name);

    Machine m = cost_defaults(t);
    m.threads = (int)threads;
    Bench fma = fma_generic;
    Bench bf16 = NULL, int8 = NULL;
#ifdef TUNE_X86
    if (t->isa == ISA_AVX512)
        fma = fma_avx512;
    else if (t->isa == ISA_AVX2)
        fma = fma_avx2;
    if (t->features & FR_CPU_AVX512BF16)
        bf16 = dot_bf16;
    if (t->features & FR_CPU_AVX512VNNI)
        int8 = dot_int8;
#endif
#if defined(__aarch64__)
    if (t->isa == ISA_NEON)
        fma = fma_neon;
#endif
    m.p.fma_gflops = rate((int)threads, fma, NULL, 0, 7) / threads / 1e9;
    if (bf16)
        m.p.bf16_gflops = rate((int)threads, bf16, NULL, 0, 5) / threads / 1e9;
    if (int8)
        m.p.int8_gops = rate((int)threads, int8, NULL, 0, 5) / threads / 1e9;
    size_t len = (size_t)64 << 20;   /* floats: 256 MiB, far beyond any L3 */
    float *buf = malloc(len * sizeof *buf);
    if (!buf) {
        fprintf(stderr, "fusec tune: error: cannot allocate the 256 MiB bandwidth buffer\n");
        return EXIT_FAIL;
    }
    for (size_t i = 0; i < len; i++)
        buf[i] = (float)(i & 1023);
    m.p.bw1_gbs = rate(1, NULL, buf, len, 3) / 1e9;
    m.p.bw_gbs = threads > 1 ? rate((int)threads, NULL, buf, len, 3) / 1e9 : m.p.bw1_gbs;
    if (m.p.bw_gbs < m.p.bw1_gbs)
        m.p.bw_gbs = m.p.bw1_gbs;
    free(buf);
#ifdef _SC_LEVEL1_DCACHE_SIZE
    m.p.l1 = cache(_SC_LEVEL1_DCACHE_SIZE, m.p.l1);
    m.p.l2 = cache(_SC_LEVEL2_CACHE_SIZE, m.p.l2);
    m.p.l3 = cache(_SC_LEVEL3_CACHE_SIZE, m.p.l3);
#else
    (void)cache;
#endif
    const char *note = fu_format("measured on %ld thread%s", threads, threads == 1 ? "" : "s");
    if (!strcmp(out, "-")) {
        cost_write_tune(stdout, &m, note);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
    }
    /* write beside, then rename: a failure leaves the old file as it was */
    const char *tmp = fu_format("%s.tmp%ld", out, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "fusec tune: error: cannot write '%s': %s\n", out, strerror(errno));
        return EXIT_FAIL;
    }
    cost_write_tune(f, &m, note);
    if (ferror(f) | (fclose(f) != 0) || rename(tmp, out) != 0) {
        fprintf(stderr, "fusec tune: error: cannot write '%s': %s\n", out, strerror(errno));
        remove(tmp);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
