/*
 * tp_main.c - bench/tp.sh's decode timer: one rank of a --tp block (or the
 * whole block) bound from a `fusec check --random --keep` weights file,
 * decoding one token (T = 1) after CTX cached ones, REPS times; rank 0
 * prints the median milliseconds.  -DFUSEC_BLOCK_DESC=NAME_desc, and
 * -DFUSEC_MPI for the ranks.
 *
 *   tp_main WEIGHTS THREADS CTX REPS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"
#ifdef FUSEC_MPI
#include "fusec_comm.h"
#endif

extern const fr_block_desc FUSEC_BLOCK_DESC;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *msg)
{
#ifdef FUSEC_MPI
    fr_mpi_fail(1, msg);     /* ends every rank */
#endif
    fprintf(stderr, "tp_main: %s\n", msg);
    exit(1);
}

int main(int argc, char **argv)
{
    const fr_block_desc *b = &FUSEC_BLOCK_DESC;
    fr_err err;
#ifdef FUSEC_MPI
    if (fr_mpi_init(&argc, &argv, &err) != FR_OK)
        die(err.msg);
#endif
    if (argc != 5)
        die("usage: tp_main WEIGHTS THREADS CTX REPS");
    fr_set_num_threads(atoi(argv[2]));
    int64_t ctx = atoll(argv[3]);
    int reps = atoi(argv[4]);
    fr_st f;
    if (fr_st_open(&f, argv[1], &err) != FR_OK)
        die(err.msg);
    const void **w = calloc((size_t)b->nweights + 1, sizeof *w);
    if (fr_bind_block(b, &f, "w.", w, &err) != FR_OK)
        die(err.msg);
    int ps = b->cache_sym, ts = ps == 0 ? 1 : 0;
    int64_t syms[FR_MAX_SYMS] = {0};
    syms[ts] = 1;
    syms[ps] = ctx;
    float **caches = calloc((size_t)b->ncaches + 1, sizeof *caches);
    for (int i = 0; i < b->ncaches; i++)
        caches[i] = fr_alloc(sizeof(float) * (size_t)((ctx + 1) * (fr_desc_numel(&b->caches[i], syms) / ctx)));
    const void *ins[8];
    void *outs[8];
    for (int i = 0; i < b->ninputs; i++)
        ins[i] = fr_alloc(64 + 8 * (size_t)fr_desc_numel(&b->inputs[i], syms));
    for (int i = 0; i < b->noutputs; i++)
        outs[i] = fr_alloc(64 + 8 * (size_t)fr_desc_numel(&b->outputs[i], syms));
    size_t wsz = b->workspace_size(syms);
    void *ws = fr_alloc(wsz ? wsz : 64);
    double *t = malloc(sizeof *t * (size_t)(reps + 3));
    for (int i = 0; i < reps + 3; i++) {
        double t0 = fr_now();
        int rc = b->run(w, caches, ctx + 1, syms, ins, outs, ws, wsz);
        if (rc != FR_OK)
            die(fr_last_error());
        if (i >= 3)
            t[i - 3] = fr_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    if (fr_comm_rank() == 0)
        printf("%.3f\n", t[reps / 2] * 1e3);
    fr_st_close(&f);
#ifdef FUSEC_MPI
    fr_mpi_finalize();
#endif
    return 0;
}
