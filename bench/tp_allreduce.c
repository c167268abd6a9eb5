/*
 * tp_allreduce.c - bench/tp.sh's all-reduce probe: the latency and bandwidth
 * of libfusec_comm's in-place float all-reduce (the one --tp blocks call),
 * for message sizes of 1 float (a decode step's latency) to 4M floats.
 * Prints "floats bytes median_us GB/s" lines on rank 0 (bus bandwidth:
 * 2 (N-1)/N x bytes / time, as nccl-tests count it).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fusec_comm.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    fr_err err;
    if (fr_mpi_init(&argc, &argv, &err) != FR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 200, maxn = argc > 2 ? atoi(argv[2]) : 1 << 22;
    int N = fr_comm_size();
    float *buf = fr_alloc(sizeof(float) * (size_t)maxn);
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!buf || !t)
        return 1;
    for (int n = 1; n <= maxn; n *= 8) {
        int r = n >= (1 << 18) ? (reps + 9) / 10 : reps;
        for (int i = 0; i < r + 5; i++) {
            double t0 = fr_now();
            if (fr_allreduce_sum(buf, n, N) != FR_OK)
                fr_mpi_fail(1, fr_last_error());
            if (i >= 5)
                t[i - 5] = fr_now() - t0;
        }
        qsort(t, (size_t)r, sizeof *t, cmp);
        double med = t[r / 2], bytes = 4.0 * n;
        if (fr_comm_rank() == 0)
            printf("%d %.0f %.2f %.3f\n", n, bytes, med * 1e6, 2.0 * (N - 1) / N * bytes / med / 1e9);
    }
    fr_mpi_finalize();
    return 0;
}
