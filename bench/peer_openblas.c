/*
 * peer_openblas.c - the benchmark's library peer: the same blocks written
 * the way a user who picked OpenBLAS would write them.  Every matrix product
 * is an OpenBLAS call (cblas_sgemm; cblas_sgemv for a single row, which is
 * what one would call for decode, and the faster of the two there); the rest
 * (RMSNorm, LayerNorm, RoPE, the masked softmax, SiLU, GELU, residuals) is
 * straightforward single-threaded C loops.  OpenBLAS threads are set to the
 * benchmark's thread count; the loops stay on one thread, as they would in
 * such a program.
 *
 * Attention runs per head: scores = scale * Q_h K_g^T with sgemm over all
 * keys, the causal mask and softmax in C, then P V_g with sgemm (the masked
 * half of the scores is computed and zeroed, as eager frameworks do).
 * RoPE angles are computed in double, like fusec's generic kernels, so the
 * outputs agree to float32 rounding at positions in the thousands.
 *
 * Without OpenBLAS (built with -DBENCH_NO_OPENBLAS) every entry point
 * reports that the peer is unavailable.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef BENCH_NO_OPENBLAS
#include <cblas.h>

int peer_available(void) { return 1; }

void peer_set_threads(int n) { openblas_set_num_threads(n); }

const char *peer_corename(void) { return openblas_get_corename(); }

/*
 * y[T, out] = x[T, in] W^T + b for W [out, in] (nn.Linear); with in_out,
 * y = x W + b for W [in, out] (GPT-2's Conv1D).  b may be NULL.
 */
static void linear(const float *x, const float *W, const float *b, float *y, int64_t T,
                   int64_t in, int64_t out, int in_out)
{
    if (T == 1) {
        if (in_out)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)in, (int)out, 1.0f, W, (int)out, x, 1,
                        0.0f, y, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, W, (int)in, x, 1,
                        0.0f, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, in_out ? CblasNoTrans : CblasTrans, (int)T,
                    (int)out, (int)in, 1.0f, x, (int)in, W, in_out ? (int)out : (int)in, 0.0f, y,
                    (int)out);
    }
    if (b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < out; o++)
                y[t * out + o] += b[o];
}

/*
 * Causal attention of T queries over S = P + T keys (query i sees keys
 * [0, P + i]).  q, out [T, H*HD]; k, v [S, KVH*HD]; scores [T, S].
 */
static void attention(const Model *m, const float *q, const float *k, const float *v, float *out,
                      int64_t T, int64_t S, float *scores)
{
    const int64_t Q = m->H * m->HD, KV = m->KVH * m->HD, P = S - T;
    const float scale = 1.0f / sqrtf((float)m->HD);
    for (int64_t h = 0; h < m->H; h++) {
        int64_t g = h / (m->H / m->KVH);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)S, (int)m->HD, scale,
                    q + h * m->HD, (int)Q, k + g * m->HD, (int)KV, 0.0f, scores, (int)S);
        for (int64_t i = 0; i < T; i++) {
            float *s = scores + i * S;
            int64_t n = P + i + 1;
            float mx = s[0], sum = 0.0f;
            for (int64_t j = 1; j < n; j++)
                if (s[j] > mx)
                    mx = s[j];
            for (int64_t j = 0; j < n; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            for (int64_t j = 0; j < n; j++)
                s[j] /= sum;
            for (int64_t j = n; j < S; j++)
                s[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)m->HD, (int)S, 1.0f,
                    scores, (int)S, v + g * m->HD, (int)KV, 0.0f, out + h * m->HD, (int)Q);
    }
}

/* y = x / sqrt(mean(x^2) + eps) * w over rows of n. */
static void rms_norm(const float *x, const float *w, float *y, int64_t T, int64_t n, double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float ss = 0.0f;
        for (int64_t i = 0; i < n; i++)
            ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)n + (float)eps);
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] = xr[i] * r * w[i];
    }
}

static void layer_norm(const float *x, const float *w, const float *b, float *y, int64_t T,
                       int64_t n, double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float mean = 0.0f, var = 0.0f;
        for (int64_t i = 0; i < n; i++)
            mean += xr[i];
        mean /= (float)n;
        for (int64_t i = 0; i < n; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        float r = 1.0f / sqrtf(var / (float)n + (float)eps);
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] = (xr[i] - mean) * r * w[i] + b[i];
    }
}

/* Hugging Face rotate-half RoPE in place on x [T, heads*HD] (row stride ld). */
static void rope(const Model *m, float *x, int64_t ld, int64_t heads, const int32_t *pos, int64_t T)
{
    const int64_t half = m->HD / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)pos[t] * pow(m->theta, -2.0 * (double)i / (double)m->HD);
            float c = (float)cos(ang), s = (float)sin(ang);
            for (int64_t h = 0; h < heads; h++) {
                float *xh = x + t * ld + h * m->HD;
                float x1 = xh[i], x2 = xh[i + half];
                xh[i] = x1 * c - x2 * s;
                xh[i + half] = x2 * c + x1 * s;
            }
        }
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

static float gelu_tanh(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

size_t peer_scratch_floats(const Model *m, int64_t T, int64_t P)
{
    int64_t S = P + T, Q = m->H * m->HD;
    /* the largest of the models' needs: 3 [T, D] + 2 [T, Q] (q, attn) + 3 [T, D]
     * (qkv for GPT-2) + 2 [T, F] + [T, S] scores, with a margin */
    return (size_t)(T * (8 * m->D + 2 * Q + 2 * m->F + S) + 64);
}

static int run_llama(const Model *m, int64_t T, int64_t P, const float *x, const int32_t *pos,
                     float *kc, float *vc, float *out, float *scratch)
{
    const int64_t D = m->D, F = m->F, Q = m->H * m->HD, KV = m->KVH * m->HD;
    const float *ln1 = bench_weight("input_layernorm.weight", D);
    const float *wq = bench_weight("self_attn.q_proj.weight", Q * D);
    const float *wk = bench_weight("self_attn.k_proj.weight", KV * D);
    const float *wv = bench_weight("self_attn.v_proj.weight", KV * D);
    const float *wo = bench_weight("self_attn.o_proj.weight", D * Q);
    const float *ln2 = bench_weight("post_attention_layernorm.weight", D);
    const float *wg = bench_weight("mlp.gate_proj.weight", F * D);
    const float *wu = bench_weight("mlp.up_proj.weight", F * D);
    const float *wd = bench_weight("mlp.down_proj.weight", D * F);
    if (!ln1 || !wq || !wk || !wv || !wo || !ln2 || !wg || !wu || !wd)
        return -1;
    float *h = scratch, *q = h + T * D, *a = q + T * Q, *r = a + T * Q, *g = r + T * D,
          *u = g + T * F, *scores = u + T * F;

    rms_norm(x, ln1, h, T, D, m->eps);
    linear(h, wq, NULL, q, T, D, Q, 0);
    linear(h, wk, NULL, kc + P * KV, T, D, KV, 0);
    linear(h, wv, NULL, vc + P * KV, T, D, KV, 0);
    rope(m, q, Q, m->H, pos, T);
    rope(m, kc + P * KV, KV, m->KVH, pos, T);
    attention(m, q, kc, vc, a, T, P + T, scores);
    linear(a, wo, NULL, r, T, Q, D, 0);
    for (int64_t i = 0; i < T * D; i++)
        r[i] += x[i];
    rms_norm(r, ln2, h, T, D, m->eps);
    linear(h, wg, NULL, g, T, D, F, 0);
    linear(h, wu, NULL, u, T, D, F, 0);
    for (int64_t i = 0; i < T * F; i++)
        g[i] = silu(g[i]) * u[i];
    linear(g, wd, NULL, out, T, F, D, 0);
    for (int64_t i = 0; i < T * D; i++)
        out[i] += r[i];
    return 0;
}

static int run_gpt2(const Model *m, int64_t T, int64_t P, const float *x, float *kc, float *vc,
                    float *out, float *scratch)
{
    const int64_t D = m->D, F = m->F;
    const float *ln1w = bench_weight("ln_1.weight", D), *ln1b = bench_weight("ln_1.bias", D);
    const float *wqkv = bench_weight("attn.c_attn.weight", D * 3 * D);
    const float *bqkv = bench_weight("attn.c_attn.bias", 3 * D);
    const float *wo = bench_weight("attn.c_proj.weight", D * D);
    const float *bo = bench_weight("attn.c_proj.bias", D);
    const float *ln2w = bench_weight("ln_2.weight", D), *ln2b = bench_weight("ln_2.bias", D);
    const float *wfc = bench_weight("mlp.c_fc.weight", D * F);
    const float *bfc = bench_weight("mlp.c_fc.bias", F);
    const float *wpr = bench_weight("mlp.c_proj.weight", F * D);
    const float *bpr = bench_weight("mlp.c_proj.bias", D);
    if (!ln1w || !ln1b || !wqkv || !bqkv || !wo || !bo || !ln2w || !ln2b || !wfc || !bfc ||
        !wpr || !bpr)
        return -1;
    float *h = scratch, *qkv = h + T * D, *q = qkv + 3 * T * D, *a = q + T * D, *r = a + T * D,
          *f = r + T * D, *scores = f + T * F;

    layer_norm(x, ln1w, ln1b, h, T, D, m->eps);
    linear(h, wqkv, bqkv, qkv, T, D, 3 * D, 1);
    /* qkv.split(n_embd): q to its own buffer, k and v into the caches */
    for (int64_t t = 0; t < T; t++) {
        memcpy(q + t * D, qkv + t * 3 * D, (size_t)D * sizeof(float));
        memcpy(kc + (P + t) * D, qkv + t * 3 * D + D, (size_t)D * sizeof(float));
        memcpy(vc + (P + t) * D, qkv + t * 3 * D + 2 * D, (size_t)D * sizeof(float));
    }
    attention(m, q, kc, vc, a, T, P + T, scores);
    linear(a, wo, bo, r, T, D, D, 1);
    for (int64_t i = 0; i < T * D; i++)
        r[i] += x[i];
    layer_norm(r, ln2w, ln2b, h, T, D, m->eps);
    linear(h, wfc, bfc, f, T, D, F, 1);
    for (int64_t i = 0; i < T * F; i++)
        f[i] = gelu_tanh(f[i]);
    linear(f, wpr, bpr, out, T, F, D, 1);
    for (int64_t i = 0; i < T * D; i++)
        out[i] += r[i];
    return 0;
}

static int run_mlp(const Model *m, int64_t T, const float *x, float *out, float *scratch)
{
    const int64_t D = m->D, F = m->F;
    const float *ln = bench_weight("post_attention_layernorm.weight", D);
    const float *wg = bench_weight("mlp.gate_proj.weight", F * D);
    const float *wu = bench_weight("mlp.up_proj.weight", F * D);
    const float *wd = bench_weight("mlp.down_proj.weight", D * F);
    if (!ln || !wg || !wu || !wd)
        return -1;
    float *h = scratch, *g = h + T * D, *u = g + T * F;
    rms_norm(x, ln, h, T, D, m->eps);
    linear(h, wg, NULL, g, T, D, F, 0);
    linear(h, wu, NULL, u, T, D, F, 0);
    for (int64_t i = 0; i < T * F; i++)
        g[i] = silu(g[i]) * u[i];
    linear(g, wd, NULL, out, T, F, D, 0);
    return 0;
}

int peer_run(const Model *m, int64_t T, int64_t P, const void *const *inputs, float *k_cache,
             float *v_cache, float *out, float *scratch)
{
    switch (m->kind) {
    case MODEL_LLAMA:
        return run_llama(m, T, P, inputs[0], inputs[1], k_cache, v_cache, out, scratch);
    case MODEL_GPT2:
        return run_gpt2(m, T, P, inputs[0], k_cache, v_cache, out, scratch);
    case MODEL_MLP:
        return run_mlp(m, T, inputs[0], out, scratch);
    case MODEL_ATTN:
        attention(m, inputs[0], inputs[1], inputs[2], out, T, T, scratch);
        return 0;
    }
    return -1;
}

#else /* BENCH_NO_OPENBLAS */

int peer_available(void) { return 0; }
void peer_set_threads(int n) { (void)n; }
const char *peer_corename(void) { return "none"; }
size_t peer_scratch_floats(const Model *m, int64_t T, int64_t P)
{
    (void)m, (void)T, (void)P;
    return 0;
}
int peer_run(const Model *m, int64_t T, int64_t P, const void *const *inputs, float *k_cache,
             float *v_cache, float *out, float *scratch)
{
    (void)m, (void)T, (void)P, (void)inputs, (void)k_cache, (void)v_cache, (void)out,
        (void)scratch;
    return -1;
}

#endif
