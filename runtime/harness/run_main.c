/*
 * run_main.c - the generation driver that `fusec run` links with a model.
 *
 *   runner WEIGHTS PREFIX IDS N TEMPERATURE TOP_K TOP_P SEED EOS STATS
 *
 * fusec checks the arguments and the model's interface before it builds
 * this, so the arguments arrive in this fixed order, already valid: WEIGHTS
 * a .safetensors file or a Hugging Face model.safetensors.index.json (the
 * weights spread over several files), PREFIX put before every weight name
 * ("-" for none), IDS the prompt as "1,2,3", N the tokens to generate,
 * TEMPERATURE (0: greedy), TOP_K (0: all), TOP_P (1: all), SEED, EOS (-1:
 * none), STATS (1: timings on stderr).
 *
 * The model (-DFUSEC_BLOCK_DESC=NAME_desc) takes the token ids i32[T] and
 * gives logits f32[R, V], R = 1 (the last position) or T; its caches hold
 * every layer's keys and values.  One call prefills the prompt (P = 0), then
 * each generated token is fed back one at a time (T = 1, P = tokens so far).
 * The tokens go to stdout, space-separated, on one line.
 *
 * Sampling: greedy is the first largest logit (torch.argmax).  Otherwise the
 * logits are divided by TEMPERATURE, cut to the TOP_K largest (ties in
 * index order), softmaxed in double, cut to the smallest set of the most
 * probable whose mass reaches TOP_P (Hugging Face's TopPLogitsWarper keeps
 * the token that crosses it), and one is drawn with a splitmix64 generator
 * seeded by SEED: the same seed gives the same tokens.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fusec_rt.h"
#ifdef FUSEC_MPI
/* fusec run --tp: one rank of a tensor-parallel model (docs/distributed.md) */
#include <signal.h>
#include "fusec_comm.h"
#endif

#ifndef FUSEC_BLOCK_DESC
#error "compile the runner with -DFUSEC_BLOCK_DESC=NAME_desc"
#endif
extern const fr_block_desc FUSEC_BLOCK_DESC;

static void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static void die(const char *fmt, ...)
{
    va_list ap;
#ifdef FUSEC_MPI
    char msg[1024];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fr_mpi_fail(1, msg);
#else
    fputs("fusec run: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
#endif
}

#ifdef FUSEC_MPI
/* FNV-1a of the run's arguments: every rank must be given the same ones. */
static uint64_t args_hash(int argc, char **argv)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 1; i < argc; i++)
        for (const char *p = argv[i];; p++) {
            h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
            if (!*p)
                break;
        }
    return h;
}
#endif

static void *xalloc(size_t n)
{
    void *p = fr_alloc(n ? n : 64);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct Cand {
    float logit;
    int32_t id;
} Cand;

static int cmp_cand(const void *a, const void *b)
{
    const Cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The next token from one row of V logits. */
static int32_t sample(const float *logits, int64_t V, double temp, int64_t top_k, double top_p, Cand *c,
                      double *p)
{
    int64_t best = 0, n = V;
    for (int64_t j = 0; j < V; j++)
        if (isnan(logits[j]))
            die("the logits hold NaN (token %lld)", (long long)j);
    for (int64_t j = 1; j < V; j++)
        if (logits[j] > logits[best])
            best = j;
    if (temp == 0)
        return (int32_t)best;
    for (int64_t j = 0; j < V; j++)
        c[j] = (Cand){logits[j], (int32_t)j};
    qsort(c, (size_t)V, sizeof *c, cmp_cand);
    if (top_k > 0 && top_k < n)
        n = top_k;
    double sum = 0;
    for (int64_t j = 0; j < n; j++)
        sum += p[j] = exp(((double)c[j].logit - (double)c[0].logit) / temp);
    double mass = 0;
    int64_t keep = n;
    for (int64_t j = 0; j < n; j++) {
        p[j] /= sum;
        mass += p[j];
        if (mass >= top_p && keep == n)
            keep = j + 1;
    }
    double total = 0;
    for (int64_t j = 0; j < keep; j++)
        total += p[j];
    double u = (double)(rng_next() >> 11) * 0x1p-53 * total;
    for (int64_t j = 0; j < keep; j++) {
        u -= p[j];
        if (u < 0)
            return c[j].id;
    }
    return c[keep - 1].id;
}

int main(int argc, char **argv)
{
    const fr_block_desc *b = &FUSEC_BLOCK_DESC;
#ifdef FUSEC_MPI
    fr_err merr;
    if (fr_mpi_init(&argc, &argv, &merr) != FR_OK) {
        fprintf(stderr, "fusec run: error: %s\n", merr.msg);
        return 1;
    }
    /* the same run everywhere: arguments and the block's rank count */
    if (fr_mpi_agree(args_hash(argc, argv), "the run's arguments (checkpoint, prompt, sampling)", &merr) != FR_OK ||
        fr_mpi_agree((uint64_t)b->tp_size, "the model's --tp rank count", &merr) != FR_OK)
        die("%s", merr.msg);
    /* tests/tp: FUSEC_TP_TEST_KILL=R:S kills rank R at generation step S
     * (R:S:stop stops it instead: a rank that hangs) */
    int kill_rank = -1, kill_step = -1;
    char kill_how[8] = "";
    if (getenv("FUSEC_TP_TEST_KILL"))
        sscanf(getenv("FUSEC_TP_TEST_KILL"), "%d:%d:%7s", &kill_rank, &kill_step, kill_how);
#endif
    if (argc != 11)
        die("the runner takes 10 arguments from fusec run, got %d", argc - 1);
    const char *prefix = strcmp(argv[2], "-") ? argv[2] : NULL;
    int64_t n = strtoll(argv[4], NULL, 10), top_k = strtoll(argv[6], NULL, 10);
    double temp = strtod(argv[5], NULL), top_p = strtod(argv[7], NULL);
    rng_state = strtoull(argv[8], NULL, 10);
    int64_t eos = strtoll(argv[9], NULL, 10);
    int stats = atoi(argv[10]);

    /* the prompt */
    int64_t np = 1;
    for (const char *q = argv[3]; *q; q++)
        np += *q == ',';
    int64_t cap = np + n;
    int32_t *ids = xalloc(sizeof *ids * (size_t)cap);
    const char *q = argv[3];
    for (int64_t i = 0; i < np; i++) {
        ids[i] = (int32_t)strtol(q, (char **)&q, 10);
        q += *q == ',';
    }

    /* the interface fusec checked: ids i32[T] in, logits f32[R, V] out */
    int ts = -1, ps = b->cache_sym;
    for (int s = 0; s < b->nsyms; s++)
        if (s != ps)
            ts = s;
    const fr_tensor_desc *od = &b->outputs[0];
    int64_t V = od->shape_c[1];
    int all_rows = od->shape_k[0][ts] != 0;

    /* the weights */
    fr_shards sh;
    fr_err err;
    if (fr_shards_open(&sh, argv[1], &err) != FR_OK)
        die("%s", err.msg);
    const void **w = xalloc(sizeof *w * (size_t)(b->nweights + 1));
    if (fr_shards_bind(&sh, b, prefix, w, &err) != FR_OK)
        die("%s", err.msg);

    /* the caches: every layer's, P + T <= cap rows */
    float **caches = xalloc(sizeof *caches * (size_t)(b->ncaches + 1));
    for (int i = 0; i < b->ncaches; i++) {
        int64_t syms[FR_MAX_SYMS] = {0}, shape[FR_MAX_RANK];
        syms[ps] = 1;
        syms[ts] = 1;
        fr_desc_shape(&b->caches[i], syms, shape);
        int64_t row = 1;
        for (int d = 1; d < b->caches[i].rank; d++)
            row *= shape[d];
        caches[i] = xalloc(sizeof(float) * (size_t)(row * cap));
    }
    /* one workspace for the prefill and the longest decode step */
    int64_t syms[FR_MAX_SYMS] = {0};
    syms[ts] = np;
    syms[ps] = 0;
    size_t wsz = b->workspace_size(syms);
    syms[ts] = 1;
    syms[ps] = cap - 1;
    size_t wsz2 = b->workspace_size(syms);
    if (wsz2 > wsz)
        wsz = wsz2;
    void *ws = xalloc(wsz);
    float *logits = xalloc(sizeof(float) * (size_t)(V * (all_rows ? np : 1)));
    int64_t Vall = V;
#ifdef FUSEC_MPI
    if (b->tp_vocab > 0)
        Vall = b->tp_vocab;     /* this rank's logits are V of the tp_vocab columns */
    float *full = temp > 0 ? xalloc(sizeof(float) * (size_t)Vall) : NULL;
#endif
    Cand *cand = temp > 0 ? xalloc(sizeof *cand * (size_t)Vall) : NULL;
    double *prob = temp > 0 ? xalloc(sizeof *prob * (size_t)Vall) : NULL;

    double t0 = now(), t_prefill = 0;
    int64_t P = 0, T = np, made = 0;
    while (made < n) {
        syms[ts] = T;
        syms[ps] = P;
        const void *in[1] = {ids + P};
        void *out[1] = {logits};
        int rc = b->run(w, caches, cap, syms, in, out, ws, wsz);
        if (rc != FR_OK)
            die("%s: %s", fr_strerror(rc), fr_last_error());
        const float *row = logits + (all_rows ? (T - 1) * V : 0);
#ifdef FUSEC_MPI
        int32_t next;
        if (b->tp_vocab > 0 && temp == 0) {
            /* vocabulary-parallel greedy: this rank's first largest, then the ranks' */
            int64_t best = 0, win;
            for (int64_t j = 0; j < V; j++)
                if (isnan(row[j]))
                    die("the logits hold NaN (token %lld)", (long long)(b->tp_vocab_start + j));
            for (int64_t j = 1; j < V; j++)
                if (row[j] > row[best])
                    best = j;
            if (fr_mpi_argmax(row[best], b->tp_vocab_start + best, &win, &merr) != FR_OK)
                die("%s", merr.msg);
            next = (int32_t)win;
        } else if (b->tp_vocab > 0) {
            /* sampling needs every logit: gather the ranks' columns */
            if (fr_mpi_allgather(row, V, full, b->tp_vocab, &merr) != FR_OK)
                die("%s", merr.msg);
            next = sample(full, b->tp_vocab, temp, top_k, top_p, cand, prob);
        } else {
            next = sample(row, V, temp, top_k, top_p, cand, prob);
        }
#else
        int32_t next = sample(row, V, temp, top_k, top_p, cand, prob);
#endif
#ifdef FUSEC_MPI
        if (fr_comm_rank() == kill_rank && made == kill_step)
            raise(strcmp(kill_how, "stop") ? SIGKILL : SIGSTOP);
        /* every rank holds the whole logits and samples alike: check that they agree */
        if (fr_mpi_agree((uint64_t)next, "the generated token", &merr) != FR_OK)
            die("%s", merr.msg);
#endif
        ids[P + T] = next;
        made++;
        if (P == 0)
            t_prefill = now() - t0;
        P += T;
        T = 1;
        if (next == eos)
            break;
    }
    double t_all = now() - t0;
#ifdef FUSEC_MPI
    if (fr_comm_rank() != 0)
        stats = 0;
    else
#endif
    {
        for (int64_t i = 0; i < made; i++)
            printf("%s%d", i ? " " : "", (int)ids[np + i]);
        printf("\n");
    }
    if (stats) {
        fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)np, t_prefill,
                (double)np / t_prefill);
        if (made > 1)
            fprintf(stderr, "decode: %lld tokens in %.3f s (%.2f tokens/s)\n", (long long)(made - 1),
                    t_all - t_prefill, (double)(made - 1) / (t_all - t_prefill));
    }
    if (fflush(stdout) != 0)
        die("cannot write the tokens");
    fr_shards_close(&sh);
#ifdef FUSEC_MPI
    fr_mpi_finalize();
#endif
    return 0;
}
