/*
 * tiny_block.c - a hand-written block that exports an fr_block_desc, so the
 * check harness (runtime/harness/check_main.c) can be tested without the
 * compiler: tests/golden/run.sh links it with the harness and compares the
 * harness's output with numpy (tests/golden/tiny_ref.py).
 *
 * Symbols T (new rows) and P (cached rows); cache kc f32[P, 4].
 *   k[t]  = x[t] W^T                       W = lin.weight [4, 4], appended to kc at row P+t
 *   y[t]  = k[t] * scale + sum_{s <= P+t} kc[s] + pos[t]       (causal over the cache)
 *   z[t]  = sum_j x[t, j]                                      output z f32[T, 1]
 * y depends on every earlier row through the cache, so a harness that slices
 * or orders the decode calls wrongly gives a different y.
 */
#include <string.h>

#include "fusec_rt.h"

size_t tiny_workspace_size(const int64_t *syms);
int tiny_run(const void *const *weights, float *const *caches, int64_t cache_capacity,
             const int64_t *syms, const void *const *inputs, void *const *outputs,
             void *workspace, size_t workspace_bytes);

static const char *const tiny_sym_names[] = {"T", "P"};

/* shape[d] = shape_c[d] + sum_s shape_k[d][s] * syms[s];  syms = {T, P} */
static const fr_tensor_desc tiny_inputs[] = {
    {"x", FR_F32, 2, {0, 4}, {{1, 0}, {0, 0}}},
    {"pos", FR_I32, 1, {0}, {{1, 0}}},
};
static const fr_tensor_desc tiny_weights[] = {
    {"lin.weight", FR_F32, 2, {4, 4}, {{0}}},
    {"scale", FR_F32, 1, {4}, {{0}}},
};
static const fr_tensor_desc tiny_outputs[] = {
    {"y", FR_F32, 2, {0, 4}, {{1, 0}, {0, 0}}},
    {"z", FR_F32, 2, {0, 1}, {{1, 0}, {0, 0}}},
};
static const fr_tensor_desc tiny_caches[] = {
    {"kc", FR_F32, 2, {0, 4}, {{0, 1}, {0, 0}}},
};

/* The workspace holds the running column sums over the cache rows. */
size_t tiny_workspace_size(const int64_t *syms)
{
    (void)syms;
    return 4 * sizeof(float);
}

int tiny_run(const void *const *weights, float *const *caches, int64_t cache_capacity,
             const int64_t *syms, const void *const *inputs, void *const *outputs,
             void *workspace, size_t workspace_bytes)
{
    const float *w = weights[0], *scale = weights[1];   /* w [4, 4], scale [4] */
    const float *x = inputs[0];                          /* [T, 4] */
    const int32_t *pos = inputs[1];                      /* [T] */
    float *kc = caches[0];                               /* [capacity, 4] */
    float *y = outputs[0], *z = outputs[1];              /* [T, 4], [T, 1] */
    float *acc = workspace;                              /* [4] */
    int64_t T = syms[0], P = syms[1], t, s;
    int i, j;

    if (T < 1 || P < 0)
        return fr_seterr(NULL, FR_EDIM, "tiny: T = %lld, P = %lld out of range", (long long)T, (long long)P);
    if (P + T > cache_capacity)
        return fr_seterr(NULL, FR_ECAPACITY, "tiny: the cache holds %lld rows, the call needs P + T = %lld",
                         (long long)cache_capacity, (long long)(P + T));
    if (workspace_bytes < 4 * sizeof(float))
        return fr_seterr(NULL, FR_EWORKSPACE, "tiny: the workspace has %zu bytes, the call needs %zu",
                         workspace_bytes, 4 * sizeof(float));
    for (t = 0; t < T; t++)
        for (i = 0; i < 4; i++) {
            float k = 0;
            for (j = 0; j < 4; j++)
                k += x[t * 4 + j] * w[i * 4 + j];
            kc[(P + t) * 4 + i] = k;
        }
    memset(acc, 0, 4 * sizeof(float));
    for (s = 0; s < P; s++)
        for (i = 0; i < 4; i++)
            acc[i] += kc[s * 4 + i];
    for (t = 0; t < T; t++) {
        float sum = 0;
        for (i = 0; i < 4; i++) {
            acc[i] += kc[(P + t) * 4 + i];
            y[t * 4 + i] = kc[(P + t) * 4 + i] * scale[i] + acc[i] + (float)pos[t];
            sum += x[t * 4 + i];
        }
        z[t] = sum;
    }
    return 0;
}

const fr_block_desc tiny_desc = {
    .name = "tiny", .target = "generic", .nsyms = 2, .sym_names = tiny_sym_names, .cache_sym = 1,
    .ninputs = 2, .nweights = 2, .noutputs = 2, .ncaches = 1,
    .inputs = tiny_inputs, .weights = tiny_weights, .outputs = tiny_outputs, .caches = tiny_caches,
    .workspace_size = tiny_workspace_size, .run = tiny_run,
};
