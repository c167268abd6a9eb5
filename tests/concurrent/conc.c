/*
 * conc.c - several threads calling one generated block at once.
 *
 *   conc GOLDEN.safetensors THREADS CALLS
 *
 * Linked with one generated block (-DFUSEC_BLOCK_DESC=NAME_desc), like the
 * `fusec check` harness.  It binds the block's weights ("w." + name) and
 * inputs ("in." + name) from a golden file, then runs a schedule of calls: a
 * prefill of the first half of the rows (P = 0) and the other rows one token
 * at a time through the KV caches.  The schedule first runs once on the main
 * thread (the reference); then THREADS threads, each with its own caches,
 * workspace and outputs, run it CALLS times at once, and every output of
 * every call must be bit-identical to the reference: the generated code is
 * deterministic for a given thread count, so any difference is a race
 * between callers (a shared buffer, a shared barrier, a thread pool that
 * mixes two calls).
 *
 * FUSE_NUM_THREADS applies to every call, the reference's too.  Prints one
 * line with the number of calls that differed and the largest difference;
 * exits 1 when any did, 2 on a usage or set-up error.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"

#ifndef FUSEC_BLOCK_DESC
#error "compile with -DFUSEC_BLOCK_DESC=NAME_desc"
#endif
extern const fr_block_desc FUSEC_BLOCK_DESC;
static const fr_block_desc *B = &FUSEC_BLOCK_DESC;

#define MAX_CALLS 4096

static void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("conc: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *xalloc(size_t n)
{
    void *p = fr_alloc(n ? n : FR_ALIGN);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

/* The block's inputs, weights and the schedule: read-only once set up. */
static const void **weights;
static const void **inputs;
static int64_t syms[FR_MAX_SYMS];
static int row_sym, nrows, ncalls;
static int64_t call_t[MAX_CALLS], call_p[MAX_CALLS];
static size_t ws_bytes;
static size_t *out_bytes;        /* per output, all rows */
static unsigned char **ref;      /* the reference outputs, all rows */

/* Bytes of one row (the first dim is the row symbol) or of the whole tensor. */
static size_t row_bytes(const fr_tensor_desc *d)
{
    int64_t shape[FR_MAX_RANK];
    size_t n = fr_dtype_size(d->dtype);
    int i;
    fr_desc_shape(d, syms, shape);
    for (i = 1; i < d->rank; i++)
        n *= (size_t)shape[i];
    return n;
}

/* One caller's buffers. */
typedef struct caller {
    float **caches;
    void *ws;
    unsigned char **out;
    int calls;           /* how many times to run the schedule */
    long bad_calls;
    double max_diff;
    int rc;              /* the first non-zero return code */
    pthread_t thread;
} caller;

static void caller_init(caller *c, int calls)
{
    int i;
    memset(c, 0, sizeof *c);
    c->calls = calls;
    c->caches = calloc((size_t)B->ncaches + 1, sizeof *c->caches);
    c->out = calloc((size_t)B->noutputs + 1, sizeof *c->out);
    if (!c->caches || !c->out)
        die("out of memory");
    for (i = 0; i < B->ncaches; i++)
        c->caches[i] = xalloc(row_bytes(&B->caches[i]) * (size_t)nrows);
    for (i = 0; i < B->noutputs; i++)
        c->out[i] = xalloc(out_bytes[i]);
    c->ws = xalloc(ws_bytes);
}

static void caller_free(caller *c)
{
    int i;
    for (i = 0; i < B->ncaches; i++)
        fr_free(c->caches[i]);
    for (i = 0; i < B->noutputs; i++)
        fr_free(c->out[i]);
    fr_free(c->ws);
    free(c->caches);
    free(c->out);
}

/* Runs the schedule once into c->out; the first failing call's code, or 0. */
static int run_schedule(caller *c)
{
    const void *in_call[64];
    void *out_call[64];
    int64_t csyms[FR_MAX_SYMS];
    int call, i, rc;

    for (call = 0; call < ncalls; call++) {
        int64_t r0 = call_p[call];
        memcpy(csyms, syms, sizeof csyms);
        csyms[row_sym] = call_t[call];
        if (B->cache_sym >= 0)
            csyms[B->cache_sym] = r0;
        for (i = 0; i < B->ninputs; i++)
            in_call[i] = (const char *)inputs[i] + (size_t)r0 * row_bytes(&B->inputs[i]);
        for (i = 0; i < B->noutputs; i++)
            out_call[i] = (char *)c->out[i] + (size_t)r0 * row_bytes(&B->outputs[i]);
        rc = B->run(weights, c->caches, nrows, csyms, in_call, out_call, c->ws, ws_bytes);
        if (rc)
            return rc;
    }
    return 0;
}

static void compare(caller *c)
{
    int i;
    size_t k;
    int differs = 0;
    for (i = 0; i < B->noutputs; i++) {
        if (memcmp(c->out[i], ref[i], out_bytes[i]) == 0)
            continue;
        differs = 1;
        if (B->outputs[i].dtype == FR_F32) {
            const float *x = (const float *)c->out[i], *y = (const float *)ref[i];
            for (k = 0; k < out_bytes[i] / sizeof(float); k++) {
                double d = fabs((double)x[k] - (double)y[k]);
                if (d > c->max_diff || d != d)
                    c->max_diff = d != d ? INFINITY : d;
            }
        }
    }
    c->bad_calls += differs;
}

static void *caller_main(void *arg)
{
    caller *c = arg;
    int rep, i;
    for (rep = 0; rep < c->calls; rep++) {
        for (i = 0; i < B->noutputs; i++)
            memset(c->out[i], 0xff, out_bytes[i]); /* NaN: a row not written shows */
        int rc = run_schedule(c);
        if (rc) {
            c->rc = rc;
            fprintf(stderr, "conc: %s\n", fr_last_error());
            break;
        }
        compare(c);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    fr_st f;
    fr_err err;
    caller refc, *callers;
    int nthreads, calls, i, s, t;
    long bad = 0;
    double max_diff = 0;

    if (argc != 4)
        die("usage: conc GOLDEN.safetensors THREADS CALLS");
    nthreads = atoi(argv[2]);
    calls = atoi(argv[3]);
    if (nthreads < 1 || nthreads > 64 || calls < 1)
        die("THREADS must be in [1, 64] and CALLS at least 1");
    if (B->ninputs < 1 || B->ninputs > 64 || B->noutputs > 64 || B->nsyms > FR_MAX_SYMS)
        die("block '%s': unsupported interface", B->name);
    if (fr_st_open(&f, argv[1], &err))
        die("%s", err.msg);
    weights = calloc((size_t)B->nweights + 1, sizeof *weights);
    inputs = calloc((size_t)B->ninputs + 1, sizeof *inputs);
    out_bytes = calloc((size_t)B->noutputs + 1, sizeof *out_bytes);
    ref = calloc((size_t)B->noutputs + 1, sizeof *ref);
    if (!weights || !inputs || !out_bytes || !ref)
        die("out of memory");
    if (fr_bind_block(B, &f, "w.", weights, &err))
        die("%s", err.msg);

    /* The row symbol is the first input's first dim; every other symbol but
     * the cache's must not exist. */
    row_sym = -1;
    for (s = 0; s < B->nsyms; s++)
        if (B->inputs[0].rank > 0 && B->inputs[0].shape_k[0][s] == 1 && s != B->cache_sym)
            row_sym = s;
    if (row_sym < 0 || B->nsyms != (B->cache_sym >= 0 ? 2 : 1))
        die("block '%s': needs one token symbol (and a cache symbol)", B->name);
    for (i = 0; i < B->ninputs; i++) {
        char name[256];
        const fr_tensor *tn;
        snprintf(name, sizeof name, "in.%s", B->inputs[i].name);
        tn = fr_st_find(&f, name);
        if (!tn || tn->dtype != B->inputs[i].dtype || tn->rank < 1)
            die("input '%s' missing or of the wrong dtype in %s", name, argv[1]);
        if (i == 0)
            nrows = (int)tn->shape[0];
        else if (tn->shape[0] != nrows)
            die("input '%s': %lld rows, expected %d", name, (long long)tn->shape[0], nrows);
        void *copy = xalloc(tn->nbytes);
        memcpy(copy, tn->data, tn->nbytes);
        inputs[i] = copy;
    }
    if (nrows < 2 || nrows + 1 > MAX_CALLS)
        die("%d rows: need 2 to %d", nrows, MAX_CALLS - 1);
    syms[row_sym] = nrows;
    if (B->cache_sym >= 0)
        syms[B->cache_sym] = 0;
    for (i = 0; i < B->noutputs; i++)
        out_bytes[i] = row_bytes(&B->outputs[i]) * (size_t)nrows;

    /* prefill half, then one row at a time */
    ncalls = 0;
    call_p[ncalls] = 0;
    call_t[ncalls++] = nrows / 2;
    for (i = nrows / 2; i < nrows; i++) {
        call_p[ncalls] = i;
        call_t[ncalls++] = 1;
    }
    ws_bytes = 0;
    for (i = 0; i < ncalls; i++) {
        int64_t csyms[FR_MAX_SYMS];
        memcpy(csyms, syms, sizeof csyms);
        csyms[row_sym] = call_t[i];
        if (B->cache_sym >= 0)
            csyms[B->cache_sym] = call_p[i];
        size_t n = B->workspace_size(csyms);
        ws_bytes = n > ws_bytes ? n : ws_bytes;
    }

    caller_init(&refc, 1);
    int rc = run_schedule(&refc);
    if (rc)
        die("block '%s': the reference run failed: %s", B->name, fr_last_error());
    for (i = 0; i < B->noutputs; i++)
        ref[i] = refc.out[i];

    callers = calloc((size_t)nthreads, sizeof *callers);
    if (!callers)
        die("out of memory");
    for (t = 0; t < nthreads; t++)
        caller_init(&callers[t], calls);
    for (t = 0; t < nthreads; t++)
        if (pthread_create(&callers[t].thread, NULL, caller_main, &callers[t]))
            die("cannot start thread %d", t);
    rc = 0;
    for (t = 0; t < nthreads; t++) {
        pthread_join(callers[t].thread, NULL);
        bad += callers[t].bad_calls;
        max_diff = callers[t].max_diff > max_diff ? callers[t].max_diff : max_diff;
        if (callers[t].rc && !rc)
            rc = callers[t].rc;
    }
    printf("%s (%s): %d callers x %d schedules of %d calls, FUSE_NUM_THREADS=%d: "
           "%ld schedules differ from the single-caller run (max abs diff %g)\n",
           B->name, B->target, nthreads, calls, ncalls, fr_get_num_threads(), bad, max_diff);
    if (rc)
        printf("%s: a call failed with code %d\n", B->name, rc);
    for (t = 0; t < nthreads; t++)
        caller_free(&callers[t]);
    caller_free(&refc);
    for (i = 0; i < B->ninputs; i++)
        fr_free((void *)inputs[i]);
    free(callers);
    free(weights);
    free(inputs);
    free(out_bytes);
    free(ref);
    fr_st_close(&f);
    return bad || rc ? 1 : 0;
}
