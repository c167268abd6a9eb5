/*
 * bench/batch_main.c - N decode sequences in one NAME_forward_batch call
 * against N NAME_forward calls (bench/batch.sh; compile with -DDESC=NAME_desc).
 *
 *   batch_main N P REPEAT
 *
 * N sequences of one new token each after P cached rows (each its own
 * caches, random weights, inputs and cache rows); REPEAT rounds of each
 * (after one warm-up), the median printed:
 *   N=8 P=128: separate 12.34 ms (648 tok/s), batch 3.21 ms (2492 tok/s), 3.84x
 */
#include "fusec_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const fr_block_desc DESC;

static double now_ms(void) { return fr_now() * 1e3; }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(void *p, fr_dtype t, int64_t n, int64_t pos) {
    for (int64_t k = 0; k < n; k++) {
        if (t == FR_I32)
            ((int32_t *)p)[k] = (int32_t)(pos >= 0 ? pos : k % 97);
        else if (t == FR_F32)
            ((float *)p)[k] = (float)((k * 2654435761u) % 1000) * 2e-5f - 0.01f;
        else
            ((uint16_t *)p)[k] = 0x3c00;
    }
}

int main(int argc, char **argv) {
    const fr_block_desc *b = &DESC;
    if (argc != 4 || !b->run_batch || b->ncaches == 0) {
        fprintf(stderr, "usage: %s N P REPEAT (a block with caches and forward_batch)\n", argv[0]);
        return 2;
    }
    int64_t n = atoll(argv[1]), P = atoll(argv[2]);
    int rep = atoi(argv[3]), ts = b->cache_sym == 0 ? 1 : 0, i;
    if (n < 1 || n > 4096 || P < 0 || rep < 1 || b->nsyms != 2)
        return 2;
    int64_t one[FR_MAX_SYMS] = {0}, big[FR_MAX_SYMS] = {0};
    one[ts] = 1;
    one[b->cache_sym] = P;
    big[ts] = n;
    big[b->cache_sym] = P;
    const void **w = calloc((size_t)b->nweights + 1, sizeof *w);
    for (i = 0; i < b->nweights; i++) {
        int64_t k = fr_desc_numel(&b->weights[i], NULL);
        void *x = fr_alloc((size_t)k * 4);
        if (!x)
            return 1;
        fill(x, b->weights[i].dtype, k, -1);
        w[i] = x;
    }
    void **in = calloc((size_t)b->ninputs + 1, sizeof *in), **out = calloc((size_t)b->noutputs + 1, sizeof *out);
    for (i = 0; i < b->ninputs; i++) {
        int64_t k = fr_desc_numel(&b->inputs[i], big);
        in[i] = fr_alloc((size_t)k * 4);
        fill(in[i], b->inputs[i].dtype, k, strstr(b->inputs[i].name, "position") ? P : -1);
    }
    for (i = 0; i < b->noutputs; i++)
        out[i] = fr_alloc((size_t)fr_desc_numel(&b->outputs[i], big) * 4 * (size_t)n);
    float *(*caches)[8] = calloc((size_t)n, sizeof *caches);
    float *const **cp = calloc((size_t)n, sizeof *cp);
    int64_t *cap = calloc((size_t)n, sizeof *cap), *syms = calloc((size_t)n * 2, sizeof *syms);
    for (int64_t s = 0; s < n; s++) {
        cap[s] = P + 1;
        syms[ts * n + s] = 1;
        syms[b->cache_sym * n + s] = P;
        for (i = 0; i < b->ncaches && i < 8; i++) {
            int64_t row = fr_desc_numel(&b->caches[i], one) / (P ? P : 1);
            caches[s][i] = fr_alloc((size_t)((P + 1) * row) * 4);
            fill(caches[s][i], b->caches[i].dtype, P * row, -1);
        }
        cp[s] = caches[s];
    }
    size_t wsb = b->workspace_size_batch(n, syms);
    void *ws = fr_alloc(wsb ? wsb : 64);
    double *t1 = calloc((size_t)rep, sizeof *t1), *tb = calloc((size_t)rep, sizeof *tb);
    for (int r = -1; r < rep; r++) {
        double t0 = now_ms();
        for (int64_t s = 0; s < n; s++) {
            const void *ip[8];
            void *op[8];
            for (i = 0; i < b->ninputs; i++)
                ip[i] = (const char *)in[i] + (size_t)(s * fr_desc_numel(&b->inputs[i], one)) * 4;
            for (i = 0; i < b->noutputs; i++)
                op[i] = (char *)out[i] + (size_t)(s * fr_desc_numel(&b->outputs[i], one)) * 4;
            if (b->run(w, caches[s], cap[s], one, ip, op, ws, wsb) != 0) {
                fprintf(stderr, "forward: %s\n", fr_last_error());
                return 1;
            }
        }
        double t2 = now_ms();
        if (b->run_batch(w, cp, cap, n, syms, (const void *const *)in, out, ws, wsb) != 0) {
            fprintf(stderr, "forward_batch: %s\n", fr_last_error());
            return 1;
        }
        double t3 = now_ms();
        if (r >= 0) {
            t1[r] = t2 - t0;
            tb[r] = t3 - t2;
        }
    }
    qsort(t1, (size_t)rep, sizeof *t1, cmp);
    qsort(tb, (size_t)rep, sizeof *tb, cmp);
    double a = t1[rep / 2], c = tb[rep / 2];
    printf("%s N=%lld P=%lld threads=%d: separate %.2f ms (%.0f tok/s), batch %.2f ms (%.0f tok/s), %.2fx\n",
           b->name, (long long)n, (long long)P, fr_get_num_threads(), a, (double)n * 1e3 / a, c,
           (double)n * 1e3 / c, a / c);
    return 0;
}
