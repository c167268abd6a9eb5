/*
 * run_main.c - the generation driver that `fusec run` links with a model.
 *
 *   runner WEIGHTS PREFIX IDS N TEMPERATURE TOP_K TOP_P SEED EOS STATS
 *
 * fusec checks the arguments and the model's interface before it builds
 * this, so the arguments arrive in this fixed order, already valid: WEIGHTS
 * a .safetensors file or a Hugging Face model.safetensors.index.json (the
 * weights spread over several files), PREFIX put before every weight name
 * ("-" for none), IDS the prompts as "1,2,3;4,5" (one or more), N the tokens to generate,
 * TEMPERATURE (0: greedy), TOP_K (0: all), TOP_P (1: all), SEED, EOS (-1:
 * none), STATS (1: timings on stderr).
 *
 * The model (-DFUSEC_BLOCK_DESC=NAME_desc) takes the token ids i32[T] and
 * gives logits f32[R, V], R = 1 (the last position) or T; its caches hold
 * every layer's keys and values.  One call prefills the prompt (P = 0), then
 * each generated token is fed back one at a time (T = 1, P = tokens so far).
 * The tokens go to stdout, space-separated, one line per prompt.
 *
 * Several prompts run together through NAME_forward_batch, each with its own
 * caches: one call prefills them all, then one call per step decodes a token
 * for every prompt still going (one that reached N tokens or EOS leaves the
 * batch).  A block without forward_batch runs them one after another.  Each
 * prompt samples from its own generator seeded with SEED, so a prompt gives
 * the tokens it gives alone (greedy: up to the batch's rounding, see
 * docs/generated-api.md "Batches").
 *
 * Sampling: greedy is the first largest logit (torch.argmax).  Otherwise the
 * logits are divided by TEMPERATURE, cut to the TOP_K largest (ties in
 * index order), softmaxed in double, cut to the smallest set of the most
 * probable whose mass reaches TOP_P (Hugging Face's TopPLogitsWarper keeps
 * the token that crosses it), and one is drawn with a splitmix64 generator
 * seeded by SEED (one per prompt): the same seed gives the same tokens.
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

static uint64_t rng_next(uint64_t *rng_state)
{
    uint64_t z = (*rng_state += 0x9e3779b97f4a7c15ULL);
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
                      double *p, uint64_t *rng)
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
    double u = (double)(rng_next(rng) >> 11) * 0x1p-53 * total;
    for (int64_t j = 0; j < keep; j++) {
        u -= p[j];
        if (u < 0)
            return c[j].id;
    }
    return c[keep - 1].id;
}

/* One prompt: its ids (the prompt, then what it generated), its caches. */
typedef struct Seq {
    int32_t *ids;
    int64_t np, cap, P, T, made;
    int done;
    uint64_t rng;
    float **caches;
} Seq;

/* The run's settings, for pick */
static double temp, top_p;
static int64_t top_k, eos, n;
static Cand *cand;
static double *prob;
#ifdef FUSEC_MPI
static float *full;
static int kill_rank = -1, kill_step = -1;
static char kill_how[8] = "";
#endif

/* The next token of sequence q from its row of V logits; moves q on. */
static void pick(const fr_block_desc *b, Seq *q, const float *row, int64_t V)
{
#ifdef FUSEC_MPI
    fr_err merr;
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
        next = sample(full, b->tp_vocab, temp, top_k, top_p, cand, prob, &q->rng);
    } else {
        next = sample(row, V, temp, top_k, top_p, cand, prob, &q->rng);
    }
    if (fr_comm_rank() == kill_rank && q->made == kill_step)
        raise(strcmp(kill_how, "stop") ? SIGKILL : SIGSTOP);
    /* every rank holds the whole logits and samples alike: check that they agree */
    if (fr_mpi_agree((uint64_t)next, "the generated token", &merr) != FR_OK)
        die("%s", merr.msg);
#else
    (void)b;
    int32_t next = sample(row, V, temp, top_k, top_p, cand, prob, &q->rng);
#endif
    q->ids[q->P + q->T] = next;
    q->made++;
    q->P += q->T;
    q->T = 1;
    q->done = q->made == n || next == eos;
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
    if (getenv("FUSEC_TP_TEST_KILL"))
        sscanf(getenv("FUSEC_TP_TEST_KILL"), "%d:%d:%7s", &kill_rank, &kill_step, kill_how);
#endif
    if (argc != 11)
        die("the runner takes 10 arguments from fusec run, got %d", argc - 1);
    const char *prefix = strcmp(argv[2], "-") ? argv[2] : NULL;
    n = strtoll(argv[4], NULL, 10);
    top_k = strtoll(argv[6], NULL, 10);
    temp = strtod(argv[5], NULL);
    top_p = strtod(argv[7], NULL);
    uint64_t seed = strtoull(argv[8], NULL, 10);
    eos = strtoll(argv[9], NULL, 10);
    int stats = atoi(argv[10]);

    /* the prompts: "1,2,3;4,5" */
    int64_t nseq = 1, ntok = 0, max_np = 0, max_cap = 0;
    for (const char *q = argv[3]; *q; q++)
        nseq += *q == ';';
    Seq *seq = xalloc(sizeof *seq * (size_t)nseq);
    const char *q = argv[3];
    for (int64_t s = 0; s < nseq; s++) {
        Seq *z = &seq[s];
        z->np = 1;
        for (const char *e = q; *e && *e != ';'; e++)
            z->np += *e == ',';
        z->cap = z->np + n;
        z->ids = xalloc(sizeof *z->ids * (size_t)z->cap);
        for (int64_t i = 0; i < z->np; i++) {
            z->ids[i] = (int32_t)strtol(q, (char **)&q, 10);
            q += *q == ',';
        }
        q += *q == ';';
        z->P = 0;
        z->T = z->np;
        z->made = 0;
        z->done = 0;
        z->rng = seed;
        ntok += z->np;
        if (z->np > max_np)
            max_np = z->np;
        if (z->cap > max_cap)
            max_cap = z->cap;
    }

    /* the interface fusec checked: ids i32[T] in, logits f32[R, V] out */
    int ts = -1, ps = b->cache_sym;
    for (int s = 0; s < b->nsyms; s++)
        if (s != ps)
            ts = s;
    const fr_tensor_desc *od = &b->outputs[0];
    int64_t V = od->shape_c[1];
    int all_rows = od->shape_k[0][ts] != 0;
    int batch = nseq > 1 && b->run_batch;

    /* the weights */
    fr_shards sh;
    fr_err err;
    if (fr_shards_open(&sh, argv[1], &err) != FR_OK)
        die("%s", err.msg);
    const void **w = xalloc(sizeof *w * (size_t)(b->nweights + 1));
    if (fr_shards_bind(&sh, b, prefix, w, &err) != FR_OK)
        die("%s", err.msg);

    /* the caches: every layer's for every prompt, P + T <= cap rows of the cache's type */
    float ***caches = xalloc(sizeof *caches * (size_t)nseq);
    int64_t *capv = xalloc(sizeof *capv * (size_t)nseq);
    for (int64_t s = 0; s < nseq; s++) {
        caches[s] = seq[s].caches = xalloc(sizeof(float *) * (size_t)(b->ncaches + 1));
        capv[s] = seq[s].cap;
        for (int i = 0; i < b->ncaches; i++) {
            int64_t syms[FR_MAX_SYMS] = {0}, shape[FR_MAX_RANK];
            syms[ps] = 1;
            syms[ts] = 1;
            fr_desc_shape(&b->caches[i], syms, shape);
            int64_t row = 1;
            for (int d = 1; d < b->caches[i].rank; d++)
                row *= shape[d];
            seq[s].caches[i] = xalloc(fr_dtype_size(b->caches[i].dtype) * (size_t)(row * seq[s].cap));
        }
    }
    /* one workspace for the prefill and the longest decode step */
    int64_t syms[FR_MAX_SYMS] = {0};
    int64_t *bsyms = xalloc(sizeof *bsyms * (size_t)(nseq * b->nsyms));
    size_t wsz = 0, wsz2;
    if (batch) {
        for (int64_t s = 0; s < nseq; s++) {
            bsyms[ts * nseq + s] = seq[s].np;
            bsyms[ps * nseq + s] = 0;
        }
        wsz = b->workspace_size_batch(nseq, bsyms);
        for (int64_t s = 0; s < nseq; s++) {
            bsyms[ts * nseq + s] = 1;
            bsyms[ps * nseq + s] = seq[s].cap - 1;
        }
        wsz2 = b->workspace_size_batch(nseq, bsyms);
    } else {
        syms[ts] = max_np;
        syms[ps] = 0;
        wsz = b->workspace_size(syms);
        syms[ts] = 1;
        syms[ps] = max_cap - 1;
        wsz2 = b->workspace_size(syms);
    }
    if (wsz2 > wsz)
        wsz = wsz2;
    void *ws = xalloc(wsz);
    float *logits = xalloc(sizeof(float) * (size_t)(V * (all_rows ? ntok : nseq)));
    int32_t *packed = xalloc(sizeof *packed * (size_t)ntok);
    int64_t Vall = V;
#ifdef FUSEC_MPI
    if (b->tp_vocab > 0)
        Vall = b->tp_vocab;     /* this rank's logits are V of the tp_vocab columns */
    full = temp > 0 ? xalloc(sizeof(float) * (size_t)Vall) : NULL;
#endif
    cand = temp > 0 ? xalloc(sizeof *cand * (size_t)Vall) : NULL;
    prob = temp > 0 ? xalloc(sizeof *prob * (size_t)Vall) : NULL;

    Seq **act = xalloc(sizeof *act * (size_t)nseq);
    double t0 = now(), t_prefill = 0;
    for (int step = 0;; step++) {
        int64_t na = 0, rows = 0;
        for (int64_t s = 0; s < nseq; s++)
            if (!seq[s].done)
                act[na++] = &seq[s];
        if (na == 0)
            break;
        if (batch && na > 1) {
            /* every prompt still going in one call: its new tokens packed, its own caches */
            for (int64_t k = 0; k < na; k++) {
                bsyms[ts * na + k] = act[k]->T;
                bsyms[ps * na + k] = act[k]->P;
                caches[k] = act[k]->caches;
                capv[k] = act[k]->cap;
                memcpy(packed + rows, act[k]->ids + act[k]->P, sizeof *packed * (size_t)act[k]->T);
                rows += act[k]->T;
            }
            const void *in[1] = {packed};
            void *out[1] = {logits};
            int rc = b->run_batch(w, (float *const *const *)caches, capv, na, bsyms, in, out, ws, wsz);
            if (rc != FR_OK)
                die("%s: %s", fr_strerror(rc), fr_last_error());
            for (int64_t k = 0, r = 0; k < na; k++) {
                r += act[k]->T;
                pick(b, act[k], logits + (all_rows ? r - 1 : k) * V, V);
            }
        } else {
            for (int64_t k = 0; k < na; k++) {
                Seq *z = act[k];
                syms[ts] = z->T;
                syms[ps] = z->P;
                const void *in[1] = {z->ids + z->P};
                void *out[1] = {logits};
                int rc = b->run(w, z->caches, z->cap, syms, in, out, ws, wsz);
                if (rc != FR_OK)
                    die("%s: %s", fr_strerror(rc), fr_last_error());
                pick(b, z, logits + (all_rows ? (z->T - 1) * V : 0), V);
            }
        }
        if (step == 0)
            t_prefill = now() - t0;
    }
    double t_all = now() - t0;
    int64_t made = 0;
    for (int64_t s = 0; s < nseq; s++)
        made += seq[s].made - 1;
#ifdef FUSEC_MPI
    if (fr_comm_rank() != 0)
        stats = 0;
    else
#endif
        for (int64_t s = 0; s < nseq; s++) {
            for (int64_t i = 0; i < seq[s].made; i++)
                printf("%s%d", i ? " " : "", (int)seq[s].ids[seq[s].np + i]);
            printf("\n");
        }
    if (stats) {
        fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)ntok, t_prefill,
                (double)ntok / t_prefill);
        if (made > 0)
            fprintf(stderr, "decode: %lld tokens in %.3f s (%.2f tokens/s)\n", (long long)made,
                    t_all - t_prefill, (double)made / (t_all - t_prefill));
    }
    if (fflush(stdout) != 0)
        die("cannot write the tokens");
    fr_shards_close(&sh);
    for (int64_t s = 0; s < nseq; s++) {
        for (int i = 0; i < b->ncaches; i++)
            fr_free(seq[s].caches[i]);
        fr_free(seq[s].caches);
        fr_free(seq[s].ids);
    }
    void *bufs[] = {seq, caches, capv, bsyms, ws, logits, packed, cand, prob, act, (void *)w};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        fr_free(bufs[i]);
#ifdef FUSEC_MPI
    fr_free(full);
#endif
#ifdef FUSEC_MPI
    fr_mpi_finalize();
#endif
    return 0;
}
