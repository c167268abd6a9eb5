/*
 * w7_main.c - times W7 (bench/moe/w7.fdl): the sparse MoE block against
 * the dense workaround, built with -DDENSE for w7_dense.
 *
 *   w7_sparse|w7_dense T REPS
 *
 * Random weights (a fixed LCG, uniform in +-1/sqrt(fan-in)), one warm-up
 * call, then REPS timed calls of forward on the threads FUSE_NUM_THREADS
 * gives; prints one line: the block, T, the median and the fastest time in
 * ms, and for the sparse block the bytes of weights a call must read at
 * least (the router and the selected experts' rows: by the ids it routed,
 * recomputed here) and the rate that makes.  Exits 1 on an error.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef DENSE
#include "w7_dense.h"
#define NAME "w7_dense"
#define P(x) w7_dense_##x
#else
#include "w7_sparse.h"
#define NAME "w7_sparse"
#define P(x) w7_sparse_##x
#endif

enum { D = P(D), E = P(E), I = P(I), K = 8 };

/* -DW7_BF16: the sparse block's experts are bf16 (bench/moe/run.sh's
 * W7_TYPE=bf16), rounded to nearest even from the same random floats. */
#if defined(W7_BF16) && !defined(DENSE)
#define WBYTES 2.0
static const uint16_t *expert_w(float *p, size_t n) {
    uint16_t *h = p ? malloc(n * sizeof *h) : NULL;
    for (size_t i = 0; h && i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], sizeof u);
        h[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    free(p);
    return h;
}
#else
#define WBYTES 4.0
static const float *expert_w(float *p, size_t n) { return (void)n, p; }
#endif

static uint64_t rng = 88172645463325252ull;

static float *randn(size_t n, double scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        p[i] = (float)(scale * ((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0));
    }
    return p;
}

#include "../timing.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s T REPS\n", argv[0]);
        return 1;
    }
    int64_t T = atoll(argv[1]);
    int reps = atoi(argv[2]);
    if (T < 1 || reps < 1 || reps > 1000)
        return 1;
    float *x = randn((size_t)T * D, 1.0), *y = malloc((size_t)T * D * sizeof *y);
    float *router = randn((size_t)E * D, 1.0 / sqrt(D));
#ifdef DENSE
    float *gate = randn((size_t)E * I * D, 1.0 / sqrt(D)), *up = randn((size_t)E * I * D, 1.0 / sqrt(D));
    float *down_t = randn((size_t)D * E * I, 1.0 / sqrt(I));
    if (!gate || !up || !down_t)
        return 1;
    P(weights) w = {router, gate, up, down_t};
#else
    size_t ngu = (size_t)E * 2 * I * D, ndn = (size_t)E * D * I;
    P(weights) w = {router, expert_w(randn(ngu, 1.0 / sqrt(D)), ngu), expert_w(randn(ndn, 1.0 / sqrt(I)), ndn)};
    const void *gate_up = w.gate_up, *down = w.down;
    if (!gate_up || !down)
        return 1;
#endif
    if (!x || !y || !router)
        return 1;
    size_t ws_bytes = P(workspace_size)(T);
    void *ws = fr_alloc(ws_bytes ? ws_bytes : 64);
    double *ms = malloc(sizeof *ms * (size_t)reps);
    if (!ws || !ms)
        return 1;
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        if (P(forward)(&w, T, x, y, ws, ws_bytes) != 0) {
            fprintf(stderr, "%s: %s\n", NAME, fr_last_error());
            return 1;
        }
        if (r >= 0)
            ms[r] = now_ms() - t0;
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp);
    double med = ms[reps / 2];
    printf("%s T=%lld median_ms=%.3f min_ms=%.3f", NAME, (long long)T, med, ms[0]);
#ifndef DENSE
    /* the experts the tokens chose (the router's softmax is monotonic in
     * the logits, so the top 8 logits; ties do not occur with random data) */
    int used[E] = {0}, nused = 0;
    for (int64_t t = 0; t < T; t++) {
        double l[E];
        for (int e = 0; e < E; e++) {
            l[e] = 0.0;
            for (int d = 0; d < D; d++)
                l[e] += (double)router[(size_t)e * D + d] * x[t * D + d];
        }
        for (int k = 0; k < K; k++) {
            int best = 0;
            for (int e = 1; e < E; e++)
                best = l[e] > l[best] ? e : best;
            l[best] = -INFINITY;
            nused += !used[best];
            used[best] = 1;
        }
    }
    double bytes = 4.0 * E * D + WBYTES * nused * 3 * I * D;
    printf(" experts=%d weight_bytes=%.0f GBps=%.2f", nused, bytes, bytes / (med * 1e6));
#endif
    printf(" sum=%.6g\n", (double)y[0] + y[(T - 1) * D + D - 1]);
    return 0;
}
