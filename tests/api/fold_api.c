/*
 * fold_api.c - folded weight-only values (fold.c) through the generated API,
 * on the Gemma-3 layer, whose six norm weights are 1 + w.
 *
 *   fold_api tests/layers/gemma3_layer.safetensors
 *
 * gemma3_layer_bind computes every 1 + w into the struct (checked exactly);
 * a prefill + decode matches out64 within 1e-5; pointing a weight elsewhere
 * makes forward refuse the call (FR_ENULL naming the weight and NAME_fold)
 * until gemma3_layer_fold runs; changed data is picked up by NAME_fold; a
 * struct copied by value works; NAME_fold refuses NULL and unbound weights.
 *
 * Prints one line per check; exits 1 when any failed, 2 on a set-up error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma3_layer.h"

static int failed, passed;

static void check(const char *what, int ok, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (ok)
        passed++;
    else
        failed++;
}

#define D gemma3_layer_D
#define NT 13

/* Prefill 12 rows, then decode row 12; out gets all 13 rows.  Returns the
 * first non-zero code. */
static int run(const gemma3_layer_weights *w, const float *x, const int32_t *pos, float *out)
{
    gemma3_layer_cache c;
    fr_err err;
    int rc = gemma3_layer_cache_init(&c, NT, &err);
    size_t ws_bytes = gemma3_layer_workspace_size(NT, NT);
    void *ws = fr_alloc(ws_bytes);
    if (rc == 0 && !ws)
        rc = FR_ENOMEM;
    if (rc == 0)
        rc = gemma3_layer_forward(w, &c, 12, 0, x, pos, out, ws, ws_bytes);
    if (rc == 0)
        rc = gemma3_layer_forward(w, &c, 1, 12, x + 12 * D, pos + 12, out + 12 * D, ws, ws_bytes);
    fr_free(ws);
    gemma3_layer_cache_free(&c);
    return rc;
}

static double rel_l2(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

int main(int argc, char **argv)
{
    fr_st f;
    fr_err err;
    gemma3_layer_weights w;
    static float out[NT * D], out2[NT * D], ln[D];
    char buf[160];
    if (argc != 2 || fr_st_open(&f, argv[1], &err) != 0) {
        fprintf(stderr, "fold_api: error: usage: fold_api GEMMA3.safetensors (%s)\n", argc == 2 ? err.msg : "");
        return 2;
    }
    const fr_tensor *x = fr_st_find(&f, "in.hidden_states"), *pos = fr_st_find(&f, "in.position_ids");
    const fr_tensor *ref = fr_st_find(&f, "out64.hidden_states");
    if (!x || !pos || !ref || gemma3_layer_bind(&w, &f, "w.", &err) != 0) {
        fprintf(stderr, "fold_api: error: %s: not a gemma3_layer golden file\n", argv[1]);
        return 2;
    }
    const float *xs = x->data, *r64 = ref->data;
    const int32_t *ps = pos->data;

    int exact = 1;
    for (int i = 0; i < D; i++)
        exact &= w.fu_fold18[i] == 1.0f + w.input_layernorm_weight[i];
    check("bind folds 1 + input_layernorm.weight exactly", exact, NULL);

    int rc = run(&w, xs, ps, out);
    double e = rc == 0 ? rel_l2(out, r64, NT * D) : 1.0;
    snprintf(buf, sizeof buf, "rc %d, rel. L2 %.3g against out64", rc, e);
    check("prefill 12 + decode after bind", rc == 0 && e <= 1e-5, buf);

    /* a copy of the struct is as good as the original */
    gemma3_layer_weights w2 = w;
    rc = run(&w2, xs, ps, out2);
    check("a copy of the struct gives the same output", rc == 0 && memcmp(out, out2, sizeof out) == 0, NULL);

    /* another pointer, same values: refused until folded again */
    memcpy(ln, w.input_layernorm_weight, sizeof ln);
    w2.input_layernorm_weight = ln;
    rc = run(&w2, xs, ps, out2);
    check("a weight pointed elsewhere after bind is refused", rc == FR_ENULL &&
              strstr(fr_last_error(), "weight 'input_layernorm.weight' is not the one its folded values") &&
              strstr(fr_last_error(), "gemma3_layer_fold"), fr_last_error());
    rc = gemma3_layer_fold(&w2, &err);
    check("gemma3_layer_fold", rc == 0, NULL);
    rc = run(&w2, xs, ps, out2);
    check("after gemma3_layer_fold: the same output", rc == 0 && memcmp(out, out2, sizeof out) == 0, NULL);

    /* changed data: fold again, and the output follows */
    for (int i = 0; i < D; i++)
        ln[i] = -1.0f; /* 1 + w = 0: the normalised h is 0, attention gets zero q, k, v */
    rc = gemma3_layer_fold(&w2, &err);
    exact = rc == 0;
    for (int i = 0; i < D; i++)
        exact &= w2.fu_fold18[i] == 0.0f;
    check("gemma3_layer_fold picks up changed data", exact, NULL);
    rc = run(&w2, xs, ps, out2);
    check("and forward uses it", rc == 0 && rel_l2(out2, r64, NT * D) > 1e-3, NULL);

    /* misuse */
    check("gemma3_layer_fold(NULL) is FR_EINVAL", gemma3_layer_fold(NULL, NULL) == FR_EINVAL, fr_last_error());
    w2.self_attn_q_norm_weight = NULL;
    rc = gemma3_layer_fold(&w2, &err);
    check("gemma3_layer_fold with an unbound weight is FR_ENULL", rc == FR_ENULL &&
              strstr(err.msg, "'self_attn.q_norm.weight' is not bound"), err.msg);

    fr_st_close(&f);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
