/*
 * block.c - evaluating block interface shapes and binding a block's weights.
 *
 * A generated block describes each interface tensor by affine shapes in its
 * symbolic dims (fr_tensor_desc).  Generic drivers evaluate them here for the
 * symbol values of a run, and bind all weights of a block from a safetensors
 * file in one call.  Weights must have constant shapes: a checkpoint cannot
 * depend on how many tokens a run processes.
 */
#include "fusec_rt.h"

/* a + k * x, or 0 with *ok cleared when that leaves int64.  Magnitudes are
 * compared as unsigned so that no step divides INT64_MIN by -1; a product of
 * exactly INT64_MIN counts as overflow, which no real dimension reaches. */
static int64_t affine_step(int64_t a, int64_t k, int64_t x, int *ok)
{
    uint64_t uk = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
    uint64_t ux = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    int64_t p;

    if (uk != 0 && ux > (uint64_t)INT64_MAX / uk) {
        *ok = 0;
        return 0;
    }
    p = k * x;
    if ((p > 0 && a > INT64_MAX - p) || (p < 0 && a < INT64_MIN - p)) {
        *ok = 0;
        return 0;
    }
    return a + p;
}

/*
 * syms is read only where a coefficient is non-zero, so a block with nsyms
 * symbols may pass an array of nsyms values (or NULL when it has none; the
 * symbolic terms then count as 0).  A dimension whose value does not fit in
 * int64 evaluates to -1, which no caller accepts as a size.
 */
void fr_desc_shape(const fr_tensor_desc *d, const int64_t *syms, int64_t *shape)
{
    int i, s;

    for (i = 0; i < d->rank && i < FR_MAX_RANK; i++) {
        int64_t v = d->shape_c[i];
        int ok = 1;
        for (s = 0; s < FR_MAX_SYMS && ok && syms; s++)
            if (d->shape_k[i][s] != 0)
                v = affine_step(v, d->shape_k[i][s], syms[s], &ok);
        shape[i] = ok ? v : -1;
    }
}

/* -1 when a dimension is negative or the product does not fit in int64. */
int64_t fr_desc_numel(const fr_tensor_desc *d, const int64_t *syms)
{
    int64_t shape[FR_MAX_RANK];
    int64_t n = 1;
    int i;

    if (d->rank < 0 || d->rank > FR_MAX_RANK)
        return -1;
    fr_desc_shape(d, syms, shape);
    for (i = 0; i < d->rank; i++)
        if (shape[i] < 0)
            return -1;
    for (i = 0; i < d->rank; i++) {
        if (shape[i] == 0)
            return 0;
        if (n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

static int has_symbols(const fr_tensor_desc *d)
{
    int i, s;

    for (i = 0; i < d->rank; i++)
        for (s = 0; s < FR_MAX_SYMS; s++)
            if (d->shape_k[i][s] != 0)
                return 1;
    return 0;
}

/*
 * On failure every weights[i] is NULL again, so a caller cannot run a block
 * with half of its weights bound.
 */
int fr_bind_weight(const fr_block_desc *b, int i, const fr_st *f, const char *prefix, const void **data,
                   fr_err *err)
{
    int64_t full[FR_MAX_RANK];
    const fr_tensor_desc *d = &b->weights[i];
    const fr_tp_slice *sl = b->tp_slices ? &b->tp_slices[i] : NULL;
    int a = sl ? sl->axis - 1 : -1;
    if (a < 0)
        return fr_st_bind(f, prefix, d->name, d->dtype, d->rank, d->shape_c, data, err);
    if (a >= d->rank)
        return fr_seterr(err, FR_EINVAL, "weight '%s': tensor-parallel axis %d outside its rank %d", d->name, a,
                         d->rank);
    for (int k = 0; k < d->rank; k++)
        full[k] = k == a ? sl->full : d->shape_c[k];
    return fr_st_bind_slice(f, prefix, d->name, d->dtype, d->rank, full, a, sl->start, d->shape_c[a], data, err);
}

int fr_bind_block(const fr_block_desc *b, const fr_st *f, const char *prefix,
                  const void **weights, fr_err *err)
{
    const char *bname;
    int i, rc;

    if (!b || !f || (b->nweights > 0 && (!weights || !b->weights)) || b->nweights < 0)
        return fr_seterr(err, FR_EINVAL, "fr_bind_block: missing block, file or weight array");
    bname = b->name ? b->name : "?";
    for (i = 0; i < b->nweights; i++)
        weights[i] = NULL;
    if ((rc = fr_tp_check(bname, b->tp_size, b->tp_rank, err)) != FR_OK)
        return rc;
    for (i = 0; i < b->nweights; i++) {
        const fr_tensor_desc *d = &b->weights[i];
        if (!d->name || d->rank < 0 || d->rank > FR_MAX_RANK) {
            rc = fr_seterr(err, FR_EINVAL, "block '%s': weight %d has no name or a rank outside [0, %d]",
                           bname, i, FR_MAX_RANK);
            goto fail;
        }
        if (has_symbols(d)) {
            rc = fr_seterr(err, FR_EINVAL,
                           "block '%s': weight '%s' has a symbolic shape; weights must have constant shapes",
                           bname, d->name);
            goto fail;
        }
        rc = fr_bind_weight(b, i, f, prefix, &weights[i], err);
        if (rc != FR_OK)
            goto fail;
    }
    return FR_OK;
fail:
    for (i = 0; i < b->nweights; i++)
        weights[i] = NULL;
    return rc;
}
