/*
 * tp_layer.c - tests/tp's driver: runs one rank of a --tp block (or the
 * whole block) on a golden file's inputs and weights, in two calls (the
 * first SPLIT rows, then the rest after them in the caches), and writes the
 * output (REF absent: OUT.bin) or compares it with REF.bin (max |d| <=
 * 1e-5 * max(1, max |ref|)).  Built with -DFUSEC_BLOCK_DESC=NAME_desc, and
 * -DFUSEC_MPI (mpicc, libfusec_comm) for the ranks.
 *
 *   tp_layer GOLDEN SPLIT OUT.bin [REF.bin]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"
#ifdef FUSEC_MPI
#include "fusec_comm.h"
#endif

extern const fr_block_desc FUSEC_BLOCK_DESC;

static void die(const char *what, const char *msg)
{
#ifdef FUSEC_MPI
    char text[600];
    snprintf(text, sizeof text, "%s: %s", what, msg);
    fr_mpi_fail(1, text);
#else
    fprintf(stderr, "tp_layer: %s: %s\n", what, msg);
    exit(1);
#endif
}

int main(int argc, char **argv)
{
    const fr_block_desc *b = &FUSEC_BLOCK_DESC;
    fr_err err;
#ifdef FUSEC_MPI
    if (fr_mpi_init(&argc, &argv, &err) != FR_OK) {
        fprintf(stderr, "tp_layer: %s\n", err.msg);
        return 1;
    }
#endif
    if (argc != 4 && argc != 5)
        die("usage", "tp_layer GOLDEN SPLIT OUT.bin [REF.bin]");
    int64_t split = atoll(argv[2]);
    fr_st f;
    if (fr_st_open(&f, argv[1], &err) != FR_OK)
        die("golden", err.msg);
    const void **w = calloc((size_t)b->nweights + 1, sizeof *w);
    if (fr_bind_block(b, &f, "w.", w, &err) != FR_OK)
        die("bind", err.msg);

    /* every input is [T, ...] */
    const fr_tensor **in = calloc((size_t)b->ninputs + 1, sizeof *in);
    int64_t T = -1;
    for (int i = 0; i < b->ninputs; i++) {
        char name[300];
        snprintf(name, sizeof name, "in.%s", b->inputs[i].name);
        if (!(in[i] = fr_st_find(&f, name)))
            die("golden", name);
        T = in[i]->shape[0];
    }
    int ps = b->cache_sym, ts = -1;
    for (int s = 0; s < b->nsyms; s++)
        if (s != ps)
            ts = s;
    if (ps < 0 || split <= 0 || split > T)
        split = T;
    int64_t syms[FR_MAX_SYMS] = {0};
    syms[ts] = T;
    int64_t orow = fr_desc_numel(&b->outputs[0], syms) / T;
    float *out = calloc((size_t)(T * orow), sizeof *out);
    float **caches = calloc((size_t)b->ncaches + 1, sizeof *caches);
    for (int i = 0; i < b->ncaches; i++) {
        syms[ps] = 1;
        caches[i] = fr_alloc(sizeof(float) * (size_t)(T * fr_desc_numel(&b->caches[i], syms)));
    }
    for (int64_t P = 0; P < T;) {
        int64_t n = P == 0 ? split : T - P;
        syms[ts] = n;
        if (ps >= 0)
            syms[ps] = P;
        const void *ins[8];
        for (int i = 0; i < b->ninputs; i++) {
            size_t es = fr_dtype_size(in[i]->dtype), row = in[i]->nbytes / (size_t)T / es;
            ins[i] = (const char *)in[i]->data + es * row * (size_t)P;
        }
        void *outs[1] = {out + P * orow};
        size_t wsz = b->workspace_size(syms);
        void *ws = fr_alloc(wsz ? wsz : 64);
        int rc = b->run(w, caches, T, syms, ins, outs, ws, wsz);
        if (rc != FR_OK)
            die(fr_strerror(rc), fr_last_error());
        fr_free(ws);
        P += n;
    }
    int rank = fr_comm_rank();
    if (argc == 4) {
        FILE *o = fopen(argv[3], "wb");
        if (!o || fwrite(out, sizeof *out, (size_t)(T * orow), o) != (size_t)(T * orow) || fclose(o))
            die("write", argv[3]);
    } else {
        FILE *r = fopen(argv[4], "rb");
        float *ref = calloc((size_t)(T * orow), sizeof *ref);
        if (!r || fread(ref, sizeof *ref, (size_t)(T * orow), r) != (size_t)(T * orow))
            die("read", argv[4]);
        fclose(r);
        double maxd = 0, maxr = 1;
        for (int64_t i = 0; i < T * orow; i++) {
            double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= maxd))
                maxd = d;       /* NaN sticks */
            if (fabs(ref[i]) > maxr)
                maxr = fabs(ref[i]);
        }
        int ok = maxd <= 1e-5 * maxr;
        printf("rank %d of %d: %s max_abs_err=%.3g (limit %.3g) %s\n", rank, fr_comm_size(), b->name, maxd,
               1e-5 * maxr, ok ? "ok" : "FAIL");
        fflush(stdout);
        if (!ok)
            die("compare", "the tensor-parallel output differs from the single-process one");
    }
    fr_st_close(&f);
#ifdef FUSEC_MPI
    fr_mpi_finalize();
#endif
    return 0;
}
