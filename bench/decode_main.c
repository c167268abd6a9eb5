/*
 * decode_main.c - times one decode step (T = 1) of bench/blocks/mlp_1b.fdl
 * (the Llama-3.2-1B MLP: three projections, 50M weights) as built by
 * bench/decode.sh for one weight type, against the machine's streaming read
 * bandwidth (bench/limits.c).  Each run is preceded by a cache flush, so the
 * weights come from memory as in a full model.
 *
 *   decode_main WEIGHTS.safetensors WEIGHT_BYTES THREADS REPS
 *
 * prints "threads median_ms GB/s read_bw_GB/s fraction".
 */
#include "bench.h"
#include "block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    fr_st f;
    fr_err err;
    mlp_1b_weights w;
    if (argc != 5) {
        fprintf(stderr, "usage: decode_main WEIGHTS.safetensors WEIGHT_BYTES THREADS REPS\n");
        return 2;
    }
    double bytes = atof(argv[2]);
    int nth = atoi(argv[3]), reps = atoi(argv[4]);
    if (nth < 1 || reps < 1 || reps > 1000 || bytes <= 0) {
        fprintf(stderr, "decode_main: bad arguments\n");
        return 2;
    }
    if (fr_st_open(&f, argv[1], &err) != FR_OK || mlp_1b_bind(&w, &f, "w.", &err) != FR_OK) {
        fprintf(stderr, "decode_main: %s\n", err.msg);
        return 1;
    }
    fr_set_num_threads(nth);
    size_t wsb = mlp_1b_workspace_size(1);
    void *ws = fr_alloc(wsb ? wsb : 64);
    float *x = fr_alloc(sizeof(float) * mlp_1b_D), *y = fr_alloc(sizeof(float) * mlp_1b_D);
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!ws || !x || !y || !t) {
        fprintf(stderr, "decode_main: out of memory\n");
        return 1;
    }
    for (int i = 0; i < mlp_1b_D; i++)
        x[i] = (float)((i * 37 % 101) - 50) / 50.0f;
    double bw = limits_read_bw((size_t)1 << 29, nth);
    if (mlp_1b_forward(&w, 1, x, y, ws, wsb) != FR_OK) { /* warm-up */
        fprintf(stderr, "decode_main: %s\n", fr_last_error());
        return 1;
    }
    for (int r = 0; r < reps; r++) {
        limits_flush((size_t)1 << 29);
        double t0 = fr_now();
        if (mlp_1b_forward(&w, 1, x, y, ws, wsb) != FR_OK) {
            fprintf(stderr, "decode_main: %s\n", fr_last_error());
            return 1;
        }
        t[r] = fr_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    double gbs = bytes / med / 1e9;
    printf("%d %.3f %.2f %.2f %.2f\n", nth, med * 1e3, gbs, bw, bw > 0 ? gbs / bw : 0.0);
    fr_st_close(&f);
    return 0;
}
