/*
 * layer_main.c - times one call of any generated block (through its
 * NAME_desc) with the weights of a safetensors file, whatever their types:
 * the driver of bench/types.sh, which builds a layer for each weight type
 * (f32, bf16, f16, q8_0, q4_0) and for --compute=bf16.
 *
 *   layer_main WEIGHTS.safetensors T P THREADS REPS [FLUSH]
 *
 * The block must have the symbols T and, with caches, P (the cached length);
 * weights are bound from "w." + each weight's name (what `fusec check
 * --random --keep DIR` writes to DIR/in.safetensors).  The caches hold P rows
 * of random values (room for P + T), the inputs are random (i32 inputs are
 * positions P .. P + T - 1).  One warm-up call, then REPS timed calls, each
 * after a cache flush when FLUSH is 1 (default: 1 for T <= 8, as decode
 * streams its weights from memory in a whole model).  Prints
 *
 *   BLOCK T=.. P=.. threads N median_ms MS min_ms MS max_ms MS weight_bytes B GB/s G
 *
 * where GB/s is the bytes of the bound weights (as stored) per median call.
 */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const fr_block_desc DESC;

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void *alloc_fill(int64_t n, size_t esz) {
    void *p = fr_alloc((size_t)(n > 0 ? n : 1) * esz);
    if (p && esz == 4)
        for (int64_t i = 0; i < n; i++)
            ((float *)p)[i] = frand();
    return p;
}

int main(int argc, char **argv) {
    const fr_block_desc *b = &DESC;
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: layer_main WEIGHTS.safetensors T P THREADS REPS [FLUSH]\n");
        return 2;
    }
    int64_t T = atoll(argv[2]), P = atoll(argv[3]);
    int nth = atoi(argv[4]), reps = atoi(argv[5]);
    int flush = argc == 7 ? atoi(argv[6]) : T <= 8;
    if (T < 1 || P < 0 || nth < 1 || reps < 1 || reps > 10000 || b->ninputs > 64 || b->nweights > 64 ||
        b->noutputs > 64 || b->ncaches > 64) {
        fprintf(stderr, "layer_main: bad arguments or block\n");
        return 2;
    }
    int64_t syms[FR_MAX_SYMS] = {0};
    int tsym = -1;
    for (int s = 0; s < b->nsyms; s++)
        if (strcmp(b->sym_names[s], "T") == 0)
            tsym = s;
    if (tsym < 0 || b->nsyms > 2 || (b->nsyms == 2 && b->cache_sym < 0)) {
        fprintf(stderr, "layer_main: the block must have the symbol T and at most the cache's P\n");
        return 2;
    }
    syms[tsym] = T;
    if (b->cache_sym >= 0)
        syms[b->cache_sym] = P;
    else if (P) {
        fprintf(stderr, "layer_main: P = %lld, but %s has no cache\n", (long long)P, b->name);
        return 2;
    }
    fr_st f;
    fr_err err;
    const void *w[64];
    if (fr_st_open(&f, argv[1], &err) != FR_OK || fr_bind_block(b, &f, "w.", w, &err) != FR_OK) {
        fprintf(stderr, "layer_main: %s\n", err.msg);
        return 1;
    }
    double wbytes = 0;
    char name[512];
    for (int i = 0; i < b->nweights; i++) {
        snprintf(name, sizeof name, "w.%s", b->weights[i].name);
        const fr_tensor *t = fr_st_find(&f, name);
        if (t)
            wbytes += (double)t->nbytes;
    }
    fr_set_num_threads(nth);
    void *x[64], *y[64];
    float *caches[64];
    int64_t cap = P + T;
    for (int i = 0; i < b->ncaches; i++) {
        int64_t s1[FR_MAX_SYMS];
        memcpy(s1, syms, sizeof s1);
        s1[b->cache_sym] = 1;
        if (!(caches[i] = alloc_fill(fr_desc_numel(&b->caches[i], s1) * cap, 4)))
            return 1;
    }
    for (int i = 0; i < b->ninputs; i++) {
        int64_t n = fr_desc_numel(&b->inputs[i], syms);
        if (!(x[i] = alloc_fill(n, 4)))
            return 1;
        if (b->inputs[i].dtype == FR_I32)
            for (int64_t k = 0; k < n; k++)
                ((int32_t *)x[i])[k] = (int32_t)(P + k % T);
    }
    for (int i = 0; i < b->noutputs; i++)
        if (!(y[i] = alloc_fill(fr_desc_numel(&b->outputs[i], syms), 4)))
            return 1;
    size_t wsb = b->workspace_size(syms) + 64;
    void *ws = fr_alloc(wsb);
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!ws || !t) {
        fprintf(stderr, "layer_main: out of memory\n");
        return 1;
    }
    for (int r = -1; r < reps; r++) {
        if (flush)
            limits_flush((size_t)1 << 28);
        double t0 = fr_now();
        if (b->run(w, b->ncaches ? caches : NULL, cap, syms, (const void *const *)x, y, ws, wsb) != 0) {
            fprintf(stderr, "layer_main: %s failed: %s\n", b->name, fr_last_error());
            return 1;
        }
        if (r >= 0)
            t[r] = fr_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    printf("%s T=%lld P=%lld threads %d median_ms %.3f min_ms %.3f max_ms %.3f weight_bytes %.0f GB/s %.2f\n",
           b->name, (long long)T, (long long)P, nth, med * 1e3, t[0] * 1e3, t[reps - 1] * 1e3, wbytes,
           wbytes / med / 1e9);
    fr_st_close(&f);
    return 0;
}
