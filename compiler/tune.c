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
 *
 * Then the tiles (target.c's TargetTiles): a few candidates per kernel kind
 * - the GEMM's depth and column blocks (KC, NC), the attention kernel's key
 * block, the GEMV's column chunk - each a short generated microbenchmark at
 * a representative shape: a one-kernel block compiled for the candidate by
 * `fusec check --random` (which also checks its result against the float64
 * interpreter: a candidate that fails is dropped, loudly) and timed by the
 * check harness's --repeat on the same threads.  The fastest candidate of
 * each kind goes into the file.  About 30 s; --quick: fewer candidates at
 * smaller shapes; --no-tiles keeps the row's tiles.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* ---- tile candidates ---------------------------------------------------------------- */

/* The microbenchmarks: one kernel each, at a shape a transformer layer has
 * (quick: smaller).  x [T, 1024] by a [1024, 1024] weight is the GEMM at
 * T = 256 and the GEMV at T = 1 (then a [2048, 2048] weight, long enough
 * for its column chunks to matter); attention: 8 heads of 64, causal. */
typedef enum Kind { TK_GEMM, TK_ATTN, TK_GEMV, TK_KINDS } Kind;

static const char *const kind_name[TK_KINDS] = {"gemm", "attention", "gemv"};

static const char *bench_fdl(Kind k, bool quick) {
    int n = k == TK_GEMV ? (quick ? 1024 : 2048) : quick ? 512 : 1024;
    if (k == TK_ATTN)
        return "block tune_attention {\n    dim T;\n    input q: f32[T, 512];\n    input k: f32[T, 512];\n"
               "    input v: f32[T, 512];\n"
               "    output y: f32[T, 512] = attention(q, k, v, heads = 8, causal = true);\n}\n";
    return fu_format("block tune_%s {\n    dim T;\n    input x: f32[T, %d];\n    weight w: f32[%d, %d];\n"
                     "    output y: f32[T, %d] = linear(x, w);\n}\n",
                     kind_name[k], n, n, n, n);
}

static int bench_rows(Kind k, bool quick) { return k == TK_GEMV ? 1 : k == TK_ATTN ? (quick ? 256 : 512) : quick ? 128 : 256; }

static int round_to(int64_t v, int unit) {
    int64_t r = v / unit * unit;
    return (int)(r < unit ? unit : r);
}

/* The candidates of kind k around the row's tiles d (the first is d
 * itself); returns how many. */
static int candidates(Kind k, const TargetTiles *d, bool quick, TargetTiles *c) {
    int n = 0;
    c[n++] = *d;
    if (k == TK_GEMM) {
        /* KC halved, NC doubled, both; quick: KC halved only */
        c[n] = *d, c[n].kc = round_to(d->kc / 2, 16), n++;
        if (!quick) {
            c[n] = *d, c[n].nc = round_to(2 * (int64_t)d->nc, d->nr), n++;
            c[n] = *d, c[n].kc = round_to(2 * (int64_t)d->kc, 16), c[n].nc = round_to(d->nc / 2, d->nr), n++;
        }
    } else if (k == TK_ATTN) {
        /* key blocks of 32, 128 (and 64, the default), whole scores blocks */
        static const int bk[] = {32, 64, 128};
        for (size_t i = 0; i < sizeof bk / sizeof bk[0]; i++) {
            int v = round_to(bk[i], d->fa_unit);
            bool dup = false;
            for (int j = 0; j < n; j++)
                dup |= c[j].fa_bk == v;
            if (!dup && (!quick || n < 2))
                c[n] = *d, c[n].fa_bk = v, n++;
        }
    } else {
        c[n] = *d, c[n].gch = round_to(d->gch / 4, d->nr), n++;
        if (!quick)
            c[n] = *d, c[n].gch = round_to(4 * (int64_t)d->gch, d->nr), n++;
    }
    return n;
}

/* Runs argv (no shell) with stdout and stderr into log and FUSE_NUM_THREADS
 * set; the exit status, or -1. */
static int spawn(const char *const *argv, const char *log, int threads) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        close(fd);
        setenv("FUSE_NUM_THREADS", fu_format("%d", threads), 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Removes dir and the files in it (the check's build files, ours). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                remove(fu_format("%s/%s", dir, e->d_name));
        closedir(d);
    }
    rmdir(dir);
}

/* Milliseconds per call of kind k with tiles c (m's machine otherwise), or
 * a negative number when the candidate could not be built or was wrong
 * (said on stderr unless quiet). */
static double time_candidate(const char *self, const char *dir, const Machine *m, Kind k, const TargetTiles *c,
                             bool quick, bool quiet) {
    Machine mc = *m;
    mc.tiles = *c;
    const char *tune = fu_format("%s/cand.tune", dir), *fdl = fu_format("%s/%s.fdl", dir, kind_name[k]);
    const char *build = fu_format("%s/build", dir), *log = fu_format("%s/log", dir);
    FILE *f = fopen(tune, "w");
    if (!f)
        return -1;
    cost_write_tune(f, &mc, "a candidate");
    if (fclose(f) != 0)
        return -1;
    const char *check[] = {self, "check", fdl, "--random", "--target", m->target, "--tune", tune, "--dim",
                           fu_format("T=%d", bench_rows(k, quick)), "--keep", build, NULL};
    if (spawn(check, log, m->threads) != 0) {
        remove_dir(build);
        if (quiet)
            return -1;
        size_t len;
        char *text = fu_read_file(log, &len);
        fprintf(stderr, "fusec tune: warning: the %s candidate (KC %d, NC %d, key block %d, GEMV chunk %d) failed "
                        "fusec check, not used:\n%s", kind_name[k], c->kc, c->nc, c->fa_bk, c->gch, text ? text : "");
        return -1;
    }
    const char *run[] = {fu_format("%s/harness", build), fu_format("%s/in.safetensors", build),
                         fu_format("%s/out.safetensors", build), "--repeat", quick ? "3" : "7", NULL};
    double ms = -1;
    if (spawn(run, log, m->threads) == 0) {
        size_t len;
        char *text = fu_read_file(log, &len), *at = text ? strstr(text, "median ") : NULL;
        if (!at || sscanf(at, "median %lf ms", &ms) != 1)
            ms = -1;
    }
    remove_dir(build);
    return ms;
}

/* Each kind's fastest candidate into m->tiles; false when nothing could be
 * measured (a message said why). */
static bool tune_tiles(Machine *m, bool quick, Buf *log) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1) {
        fprintf(stderr, "fusec tune: error: cannot find fusec itself (/proc/self/exe) to build the tile benchmarks\n");
        return false;
    }
    self[n] = '\0';
    const char *base = getenv("TMPDIR");
    char *dir = (char *)fu_format("%s/fusec-tune-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fusec tune: error: cannot create a directory for the tile benchmarks: %s\n", strerror(errno));
        return false;
    }
    TargetTiles best = m->tiles;
    bool ok = true;
    for (int k = 0; k < TK_KINDS && ok; k++) {
        FILE *f = fopen(fu_format("%s/%s.fdl", dir, kind_name[k]), "w");
        ok = f && fputs(bench_fdl((Kind)k, quick), f) >= 0;
        ok = f && fclose(f) == 0 && ok;
        TargetTiles c[8];
        int nc = candidates((Kind)k, &m->tiles, quick, c), won = -1;
        double tbest = 0;
        for (int i = 0; i < nc && ok; i++) {
            /* the row's own tiles first: where they fail, the benchmarks cannot
             * be built here (no C compiler, no runtime), not a tile's fault */
            double ms = time_candidate(self, dir, m, (Kind)k, &c[i], quick, i == 0);
            if (i == 0 && ms < 0) {
                fprintf(stderr,
                        "fusec tune: warning: cannot build or run the %s benchmark with the row's own tiles "
                        "(fusec check fails: is a C compiler there?): the file keeps the row's tiles\n",
                        kind_name[k]);
                break;
            }
            buf_printf(log, "\n#   %s T=%d: %s%s", kind_name[k], bench_rows((Kind)k, quick),
                       k == TK_GEMM  ? fu_format("KC %d NC %d", c[i].kc, c[i].nc)
                       : k == TK_ATTN ? fu_format("key block %d", c[i].fa_bk)
                                      : fu_format("chunk %d", c[i].gch),
                       ms > 0 ? fu_format(": %.3f ms", ms) : ": failed");
            if (ms > 0 && (won < 0 || ms < tbest)) {
                won = i;
                tbest = ms;
            }
        }
        if (won < 0) {
            if (k == TK_GEMM)
                break;   /* said above; the other kinds would fail alike */
            continue;
        }
        if (k == TK_GEMM) {
            best.kc = c[won].kc;
            best.nc = c[won].nc;
        } else if (k == TK_ATTN) {
            best.fa_bk = c[won].fa_bk;
        } else {
            best.gch = c[won].gch;
        }
    }
    remove(fu_format("%s/cand.tune", dir));
    remove(fu_format("%s/log", dir));
    for (int k = 0; k < TK_KINDS; k++)
        remove(fu_format("%s/%s.fdl", dir, kind_name[k]));
    rmdir(dir);
    if (!ok)
        fprintf(stderr, "fusec tune: error: cannot write the tile benchmarks in '%s'\n", dir);
    m->tiles = best;
    return ok;
}

static int usage(const char *fmt, const char *arg) {
    fprintf(stderr, "fusec tune: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: fusec tune [--target T] [--threads N] [--quick] [--no-tiles] -o FILE (fusec tune --help)\n");
    return EXIT_USAGE;
}

static const char help[] =
    "usage: fusec tune [--target T] [--threads N] [--quick] [--no-tiles] -o FILE\n"
    "\n"
    "Measures this machine for fusec's cost model (docs/fusion.md) and writes a tune\n"
    "file for fusec --tune=FILE: the FMA peak of one core on the target's vectors,\n"
    "bf16/int8 dot products where the target has them, the read bandwidth of one\n"
    "core and of N threads, and the cache sizes the operating system reports; then\n"
    "the tiles: a few candidates per kernel kind (GEMM KC/NC, the attention key block,\n"
    "the GEMV column chunk), each compiled by fusec check --random (so checked against\n"
    "the interpreter) and timed on N threads; the fastest goes into the file (~30 s).\n"
    "\n"
    "  --target=T     the target row to measure (default native); the CPU must run it\n"
    "  --threads=N    threads the estimates assume and the bandwidth is read with (default 1)\n"
    "  --quick        fewer tile candidates at smaller shapes (~10 s)\n"
    "  --no-tiles     measure no tiles: the file keeps the row's tiles\n"
    "  -o FILE        the tune file to write ('-' for standard output)\n";

int tune_main(int argc, char **argv) {
    const char *target = "native", *out = NULL;
    long threads = 1;
    bool quick = false, tiles = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        size_t n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--quick") || !strcmp(a, "--no-tiles")) {
            quick |= a[2] == 'q';
            tiles &= a[2] == 'q';
            continue;
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
    Buf log = {0};
    if (tiles && !tune_tiles(&m, quick, &log))
        return EXIT_FAIL;
    const char *note = fu_format("measured on %ld thread%s%s%s", threads, threads == 1 ? "" : "s",
                                 tiles ? (quick ? "; tiles (--quick), ms per call:" : "; tiles, ms per call:")
                                       : ", no tiles",
                                 log.data ? log.data : "");
    free(log.data);
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
