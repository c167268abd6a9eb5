/*
 * tests/batch/batch_main.c - NAME_forward_batch against NAME_forward, on any
 * block (through NAME_desc: compile with -DDESC=NAME_desc).
 *
 *   batch_main [--lens 1,5,13,1] [--past 7,0,3,20] [--tol 1e-6] [--nan] [--bitwise]
 *              [--ref-threads N] [--threads-agree]
 *
 * Random weights and inputs (a fixed seed); every sequence's caches start
 * with random rows [0, P_s).  Each sequence runs alone through desc.run on
 * its own caches, then all of them together through desc.run_batch on
 * copies of the same caches; every output row and every new cache row must
 * agree within --tol (relative to the output's largest magnitude; NaN where
 * the reference has NaN).  It prints err=<largest difference> bitwise=<0|1>.
 * --nan puts a NaN in sequence 0's input: the other sequences' outputs must
 * stay equal to theirs (the batch does not leak across sequences).
 * --bitwise: the outputs and new cache rows must be bitwise equal.
 * --ref-threads N: the reference runs on N threads (the batch on
 * FUSE_NUM_THREADS).  --threads-agree: the batch again on 1 to 4 threads,
 * each bitwise equal to the first.  A length 0 is an idle sequence: no
 * reference, its caches must stay untouched (FR_EDIM expected instead when
 * an output is each sequence's last row).
 * Then the bad arguments: each gives its FR_E* code.
 * Exit 0 when everything agrees.
 */
#include "fusec_rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const fr_block_desc DESC;

#define MAXSEQ 16

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double rnd(void) {  /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static size_t esize(fr_dtype t) { return t == FR_F32 || t == FR_I32 ? 4 : t == FR_F16 || t == FR_BF16 ? 2 : 1; }

static int parse_list(const char *s, int64_t *v) {
    int n = 0;
    while (*s && n < MAXSEQ) {
        char *end;
        v[n++] = strtoll(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s)
            return -1;
    }
    return n;
}

static int fail_count = 0;
static void check(int cond, const char *what) {
    if (!cond) {
        printf("FAIL %s\n", what);
        fail_count++;
    }
}

int main(int argc, char **argv) {
    const fr_block_desc *b = &DESC;
    int64_t T[MAXSEQ] = {1, 5, 13, 1}, P[MAXSEQ] = {7, 0, 3, 20};
    int ns = 4, np = 4, nan_in = 0, need_bitwise = 0, ref_threads = 0, agree = 0, i, s, j;
    double tol = 1e-6;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lens") && i + 1 < argc)
            ns = parse_list(argv[++i], T);
        else if (!strcmp(argv[i], "--past") && i + 1 < argc)
            np = parse_list(argv[++i], P);
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc)
            tol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--nan"))
            nan_in = 1;
        else if (!strcmp(argv[i], "--bitwise"))
            need_bitwise = 1;
        else if (!strcmp(argv[i], "--ref-threads") && i + 1 < argc)
            ref_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads-agree"))
            agree = 1;
        else {
            fprintf(stderr, "usage: %s [--lens L,..] [--past P,..] [--tol X] [--nan] [--bitwise] [--ref-threads N] "
                    "[--threads-agree]\n", argv[0]);
            return 2;
        }
    }
    if (!b->run_batch) {
        printf("%s has no run_batch\n", b->name);
        return 1;
    }
    if (ns < 1 || (b->ncaches && np != ns)) {
        fprintf(stderr, "--lens and --past need the same count\n");
        return 2;
    }
    int ts = -1, ps = b->ncaches ? b->cache_sym : -1;
    for (j = 0; j < b->nsyms; j++)
        if (j != ps)
            ts = j;
    int64_t sumT = 0, maxP = 0, R0[MAXSEQ];
    for (s = 0; s < ns; s++) {
        if (!b->ncaches)
            P[s] = 0;
        R0[s] = sumT;
        sumT += T[s];
        maxP = P[s] > maxP ? P[s] : maxP;
    }
    /* weights */
    const void **w = calloc((size_t)b->nweights + 1, sizeof *w);
    for (i = 0; i < b->nweights; i++) {
        const fr_tensor_desc *d = &b->weights[i];
        int64_t n = fr_desc_numel(d, NULL);
        float *x = malloc(sizeof(float) * (size_t)n);
        int norm = strstr(d->name, "norm") != NULL && d->rank == 1;
        for (int64_t k = 0; k < n; k++)
            x[k] = (float)(norm ? 1.0 + 0.1 * rnd() : 0.1 * rnd());
        w[i] = x;
    }
    /* inputs, packed [sumT, ...] (a dim without T: shared) */
    int64_t bsyms[FR_MAX_SYMS] = {0};
    bsyms[ts] = sumT;
    if (ps >= 0)
        bsyms[ps] = maxP;
    void **in = calloc((size_t)b->ninputs + 1, sizeof *in);
    int64_t in_row[8] = {0};
    for (i = 0; i < b->ninputs; i++) {
        const fr_tensor_desc *d = &b->inputs[i];
        int64_t n = fr_desc_numel(d, bsyms);
        in_row[i] = d->shape_k[0][ts] ? n / sumT : 0;
        in[i] = malloc(esize(d->dtype) * (size_t)n + 1);
        for (s = 0; s < ns; s++)
            for (int64_t t = 0; t < T[s]; t++)
                for (int64_t k = 0; k < (in_row[i] ? in_row[i] : n); k++) {
                    int64_t at = in_row[i] ? (R0[s] + t) * in_row[i] + k : k;
                    if (d->dtype == FR_I32) {
                        int32_t *x = in[i];
                        x[at] = strstr(d->name, "position") ? (int32_t)(P[s] + t)
                              : strstr(d->name, "mask") ? (t == 0 || rnd() > -0.5)
                                                        : (int32_t)((rnd() + 1.0) * 50.0);
                    } else {
                        ((float *)in[i])[at] = (float)rnd();
                    }
                }
        if (nan_in && d->dtype == FR_F32 && in_row[i])
            ((float *)in[i])[1] = NAN;
    }
    /* caches: every sequence's start rows, capacity P + T + 2 */
    float *cache0[MAXSEQ][8], *cref[MAXSEQ][8], *cbat[MAXSEQ][8];
    int64_t cap[MAXSEQ], crow[8] = {0};
    for (s = 0; s < ns; s++) {
        cap[s] = P[s] + T[s] + 2;
        for (i = 0; i < b->ncaches; i++) {
            const fr_tensor_desc *d = &b->caches[i];
            int64_t one[FR_MAX_SYMS] = {0};
            one[ps] = 1;
            crow[i] = fr_desc_numel(d, one);
            size_t bytes = esize(d->dtype) * (size_t)(cap[s] * crow[i]);
            cache0[s][i] = malloc(bytes);
            for (size_t k = 0; k < bytes / esize(d->dtype); k++)
                if (d->dtype == FR_F32)
                    cache0[s][i][k] = (float)rnd();
                else
                    ((uint16_t *)cache0[s][i])[k] = (uint16_t)(0x3c00 + (k * 37 & 0xff));
            cref[s][i] = fr_alloc(bytes);
            cbat[s][i] = fr_alloc(bytes);
            memcpy(cref[s][i], cache0[s][i], bytes);
            memcpy(cbat[s][i], cache0[s][i], bytes);
        }
    }
    /* outputs: packed rows, or one block per sequence (no T in the shape) */
    void **oref = calloc((size_t)b->noutputs + 1, sizeof *oref), **obat = calloc((size_t)b->noutputs + 1, sizeof *obat);
    int64_t orow[8], onum[8];
    for (i = 0; i < b->noutputs; i++) {
        const fr_tensor_desc *d = &b->outputs[i];
        int64_t n = fr_desc_numel(d, bsyms);
        orow[i] = d->shape_k[0][ts] ? n / sumT : 0;
        onum[i] = orow[i] ? n : n * ns;
        oref[i] = calloc((size_t)onum[i] + 1, 4);
        obat[i] = calloc((size_t)onum[i] + 1, 4);
    }
    size_t wsb = b->workspace_size(bsyms);
    void *ws = fr_alloc(wsb ? wsb : 64);
    /* the reference: each sequence with tokens alone */
    int nth0 = fr_get_num_threads();
    if (ref_threads > 0) {
        fr_set_num_threads(ref_threads);
        fr_free(ws);
        wsb = b->workspace_size(bsyms);
        ws = fr_alloc(wsb ? wsb : 64);
    }
    for (s = 0; s < ns; s++) {
        if (T[s] == 0)
            continue;
        int64_t sy[FR_MAX_SYMS] = {0};
        const void *ip[8];
        void *op[8];
        sy[ts] = T[s];
        if (ps >= 0)
            sy[ps] = P[s];
        for (i = 0; i < b->ninputs; i++)
            ip[i] = (const char *)in[i] + esize(b->inputs[i].dtype) * (size_t)(R0[s] * in_row[i]);
        for (i = 0; i < b->noutputs; i++)
            op[i] = (char *)oref[i] + 4 * (size_t)(orow[i] ? R0[s] * orow[i] : s * (onum[i] / ns));
        int rc = b->run(w, cref[s], cap[s], sy, ip, op, ws, wsb);
        if (rc != 0) {
            printf("FAIL forward of sequence %d: %s\n", s, fr_last_error());
            return 1;
        }
    }
    fr_set_num_threads(nth0);
    /* the batch */
    int64_t syms[FR_MAX_SYMS * MAXSEQ];
    float *const *cp[MAXSEQ];
    for (s = 0; s < ns; s++) {
        syms[ts * ns + s] = T[s];
        if (ps >= 0)
            syms[ps * ns + s] = P[s];
        cp[s] = cbat[s];
    }
    int idle = 0, lastrow = 0, early = -1;
    for (s = 0; s < ns; s++)
        idle |= T[s] == 0;
    for (i = 0; i < b->noutputs; i++)
        lastrow |= orow[i] == 0;
    if (idle && lastrow) {  /* an idle sequence has no last row: FR_EDIM */
        int rc0 = b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb);
        printf("%s: an idle sequence with last-row outputs: %s\n", b->name, rc0 == FR_EDIM ? fr_last_error() : "no FR_EDIM");
        early = rc0 == FR_EDIM && b->workspace_size_batch(ns, syms) == 0 ? 0 : 1;
        goto done;
    }
    /* the batch's workspace: workspace_size_batch, at least workspace_size(sum T, max P) */
    size_t wsb2 = b->workspace_size_batch(ns, syms);
    if (wsb2 < wsb) {
        printf("FAIL workspace_size_batch %zu < workspace_size %zu\n", wsb2, wsb);
        return 1;
    }
    fr_free(ws);
    ws = fr_alloc(wsb2 ? wsb2 : 64);
    wsb = wsb2;
    int rc = b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb);
    if (rc != 0) {
        printf("FAIL forward_batch: %s (%d)\n", fr_last_error(), rc);
        return 1;
    }
    double err = 0;
    int bitwise = 1;
    for (i = 0; i < b->noutputs; i++) {
        const float *r = oref[i], *x = obat[i];
        double mx = 0;
        for (int64_t k = 0; k < onum[i]; k++)
            mx = isfinite(r[k]) && fabs(r[k]) > mx ? fabs(r[k]) : mx;
        for (int64_t k = 0; k < onum[i]; k++) {
            if (isnan(r[k]) || isnan(x[k])) {
                if (!(isnan(r[k]) && isnan(x[k]))) {
                    printf("FAIL output %s[%lld]: %g vs %g\n", b->outputs[i].name, (long long)k, r[k], x[k]);
                    return 1;
                }
                continue;
            }
            double e = fabs((double)r[k] - (double)x[k]) / (mx > 0 ? mx : 1);
            err = e > err ? e : err;
            bitwise &= memcmp(&r[k], &x[k], 4) == 0;
        }
    }
    for (s = 0; s < ns; s++)
        for (i = 0; i < b->ncaches; i++) {
            size_t off = esize(b->caches[i].dtype) * (size_t)(P[s] * crow[i]);
            size_t bytes = esize(b->caches[i].dtype) * (size_t)(T[s] * crow[i]);
            int same = memcmp((char *)cref[s][i] + off, (char *)cbat[s][i] + off, bytes) == 0;
            if (!same && b->caches[i].dtype == FR_F32) {
                const float *r = (const float *)((char *)cref[s][i] + off), *x = (const float *)((char *)cbat[s][i] + off);
                double mx = 0;
                for (size_t k = 0; k < bytes / 4; k++)
                    mx = isfinite(r[k]) && fabs(r[k]) > mx ? fabs(r[k]) : mx;
                for (size_t k = 0; k < bytes / 4; k++)
                    if (!(fabs(r[k] - x[k]) <= tol * mx) && !(isnan(r[k]) && isnan(x[k]))) {
                        printf("FAIL cache %s of sequence %d, element %zu: %g vs %g\n", b->caches[i].name, s, k,
                               r[k], x[k]);
                        return 1;
                    }
            } else if (!same) {
                printf("FAIL cache %s of sequence %d differs\n", b->caches[i].name, s);
                return 1;
            }
            bitwise &= same;
            if (T[s] == 0)      /* idle: the whole cache untouched */
                check(memcmp(cbat[s][i], cache0[s][i], esize(b->caches[i].dtype) * (size_t)(cap[s] * crow[i])) == 0,
                      "an idle sequence's caches untouched");
            /* the rows before P are the caller's, untouched */
            check(memcmp(cbat[s][i], cache0[s][i], esize(b->caches[i].dtype) * (size_t)(P[s] * crow[i])) == 0,
                  "rows before P untouched");
        }
    printf("%s: %d sequences, %lld tokens: err=%.3g bitwise=%d\n", b->name, ns, (long long)sumT, err, bitwise);
    check(err <= tol, "outputs within the tolerance");
    check(bitwise || !need_bitwise, "outputs and cache rows bitwise equal");

    /* the batch on 1 to 4 threads: bitwise what it gave on nth0 */
    for (int nt = 1; agree && nt <= 4; nt++) {
        fr_set_num_threads(nt);
        void *o2[8];
        float *const *cp2[MAXSEQ];
        float *c2[MAXSEQ][8];
        for (s = 0; s < ns; s++) {
            for (i = 0; i < b->ncaches; i++) {
                size_t bytes = esize(b->caches[i].dtype) * (size_t)(cap[s] * crow[i]);
                c2[s][i] = fr_alloc(bytes);
                memcpy(c2[s][i], cache0[s][i], bytes);
            }
            cp2[s] = c2[s];
        }
        for (i = 0; i < b->noutputs; i++)
            o2[i] = calloc((size_t)onum[i] + 1, 4);
        size_t wsn = b->workspace_size_batch(ns, syms);
        void *ws2 = fr_alloc(wsn ? wsn : 64);
        int same = b->run_batch(w, cp2, cap, ns, syms, (const void *const *)in, o2, ws2, wsn) == 0;
        for (i = 0; i < b->noutputs; i++) {
            same &= memcmp(o2[i], obat[i], 4 * (size_t)onum[i]) == 0;
            free(o2[i]);
        }
        for (s = 0; s < ns; s++)
            for (i = 0; i < b->ncaches; i++) {
                same &= memcmp(c2[s][i], cbat[s][i], esize(b->caches[i].dtype) * (size_t)(cap[s] * crow[i])) == 0;
                fr_free(c2[s][i]);
            }
        fr_free(ws2);
        if (!same)
            printf("FAIL the batch on %d threads differs from it on %d\n", nt, nth0);
        fail_count += !same;
    }
    fr_set_num_threads(nth0);

    /* bad arguments: each its code, nothing written */
    check(b->run_batch(w, cp, cap, 0, syms, (const void *const *)in, obat, ws, wsb) == FR_EDIM, "nseq = 0: FR_EDIM");
    check(b->workspace_size_batch(0, syms) == 0, "workspace_size_batch of nseq = 0: 0");
    if (!nan_in && !lastrow) {  /* every sequence idle: 0, nothing written */
        int64_t tsave[MAXSEQ];
        int untouched = 1;
        float *before[MAXSEQ][8];
        void *obefore[8];
        for (s = 0; s < ns; s++) {
            tsave[s] = syms[ts * ns + s];
            syms[ts * ns + s] = 0;
            for (i = 0; i < b->ncaches; i++) {
                size_t bytes = esize(b->caches[i].dtype) * (size_t)(cap[s] * crow[i]);
                before[s][i] = malloc(bytes);
                memcpy(before[s][i], cbat[s][i], bytes);
            }
        }
        for (i = 0; i < b->noutputs; i++) {
            obefore[i] = malloc(4 * (size_t)onum[i]);
            memcpy(obefore[i], obat[i], 4 * (size_t)onum[i]);
        }
        check(b->workspace_size_batch(ns, syms) > 0, "every sequence idle: workspace_size_batch > 0");
        check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == 0,
              "every sequence idle: 0");
        for (s = 0; s < ns; s++) {
            syms[ts * ns + s] = tsave[s];
            for (i = 0; i < b->ncaches; i++) {
                untouched &= memcmp(before[s][i], cbat[s][i], esize(b->caches[i].dtype) * (size_t)(cap[s] * crow[i])) == 0;
                free(before[s][i]);
            }
        }
        for (i = 0; i < b->noutputs; i++) {
            untouched &= memcmp(obefore[i], obat[i], 4 * (size_t)onum[i]) == 0;
            free(obefore[i]);
        }
        check(untouched, "every sequence idle: caches and outputs untouched");
    }
    if (!nan_in) {
        int64_t save = syms[ts * ns + ns - 1];
        syms[ts * ns + ns - 1] = -1;
        check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_EDIM,
              "T[s] = -1: FR_EDIM");
        syms[ts * ns + ns - 1] = 0;
        check(lastrow == (b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_EDIM),
              "T[s] = 0: FR_EDIM exactly when an output is the last row");
        syms[ts * ns + ns - 1] = save;
        check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, 64) == FR_EWORKSPACE ||
                  wsb <= 64, "a small workspace: FR_EWORKSPACE");
        void *o0 = obat[0];
        obat[0] = NULL;
        check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_ENULL,
              "a NULL output: FR_ENULL");
        obat[0] = o0;
        if (b->ncaches) {
            int64_t c0 = cap[ns - 1];
            cap[ns - 1] = P[ns - 1] + T[ns - 1] - 1;
            check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_ECAPACITY,
                  "a small cache: FR_ECAPACITY");
            cap[ns - 1] = c0;
            cp[ns - 1] = NULL;
            check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_ENULL,
                  "a NULL cache: FR_ENULL");
            if (ns > 1) {
                cp[ns - 1] = cbat[0];
                check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_EINVAL,
                      "two sequences on one cache: FR_EINVAL");
            }
            cp[ns - 1] = cbat[ns - 1];
            save = syms[ps * ns];
            syms[ps * ns] = -1;
            check(b->run_batch(w, cp, cap, ns, syms, (const void *const *)in, obat, ws, wsb) == FR_EDIM,
                  "P[s] = -1: FR_EDIM");
            syms[ps * ns] = save;
        }
    }
done:
    /* everything back (the sanitized run checks for leaks) */
    for (i = 0; i < b->nweights; i++)
        free((void *)w[i]);
    free(w);
    for (i = 0; i < b->ninputs; i++)
        free(in[i]);
    free(in);
    for (s = 0; s < ns; s++)
        for (i = 0; i < b->ncaches; i++) {
            free(cache0[s][i]);
            fr_free(cref[s][i]);
            fr_free(cbat[s][i]);
        }
    for (i = 0; i < b->noutputs; i++) {
        free(oref[i]);
        free(obat[i]);
    }
    free(oref);
    free(obat);
    fr_free(ws);
    return early >= 0 ? early : fail_count ? 1 : 0;
}
