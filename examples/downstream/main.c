/*
 * main.c - the project's program: runs decoder_layer on a prompt, prefill
 * then one token at a time through the KV cache, and compares the result
 * with a reference.
 *
 *   app FILE.safetensors    weights w.*, prompt in.hidden_states and
 *                           in.position_ids, reference out64.hidden_states
 *   app --variant           the target variant this CPU runs
 *
 * Exit status 0 when the relative L2 error is at most 1e-5, 1 otherwise.
 */
#include "layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--variant") == 0) {
        puts(decoder_layer_variant());
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.safetensors | --variant\n", argv[0]);
        return 2;
    }
    const int64_t D = decoder_layer_D;
    fr_st file = {0};
    fr_err err = {0};
    decoder_layer_weights w;
    decoder_layer_cache cache = {0};
    void *ws = NULL;
    float *out = NULL;
    const fr_tensor *x = NULL, *pos = NULL, *ref = NULL;
    int64_t T = 0;

    int rc = fr_st_open(&file, argv[1], &err);
    if (rc == 0)
        rc = decoder_layer_bind(&w, &file, "w.", &err);
    if (rc == 0) {
        x = fr_st_find(&file, "in.hidden_states");
        pos = fr_st_find(&file, "in.position_ids");
        ref = fr_st_find(&file, "out64.hidden_states");
        if (!x || !pos || !ref || x->dtype != FR_F32 || x->rank != 2 || x->shape[1] != D || x->shape[0] < 2 ||
            pos->dtype != FR_I32 || pos->rank != 1 || pos->shape[0] != x->shape[0] || ref->dtype != FR_F64 ||
            ref->rank != 2 || ref->shape[0] != x->shape[0] || ref->shape[1] != D)
            rc = fr_seterr(&err, FR_EFORMAT, "%s: expected in.hidden_states f32[T, %lld], in.position_ids "
                           "i32[T] and out64.hidden_states f64[T, %lld]", argv[1], (long long)D, (long long)D);
        else
            T = x->shape[0];
    }
    if (rc == 0)
        rc = decoder_layer_cache_init(&cache, T, &err);
    size_t ws_bytes = decoder_layer_workspace_size(T, T);
    if (rc == 0 && (!(ws = fr_alloc(ws_bytes)) ||
                    !(out = malloc(sizeof(float) * (size_t)(T * D)))))
        rc = fr_seterr(&err, FR_ENOMEM, "out of memory");
    if (rc == 0) {
        const float *hs = x->data;
        const int32_t *ids = pos->data;
        int64_t prefill = T / 2;
        rc = decoder_layer_forward(&w, &cache, prefill, 0, hs, ids, out, ws, ws_bytes);
        for (int64_t t = prefill; rc == 0 && t < T; t++)
            rc = decoder_layer_forward(&w, &cache, 1, t, hs + t * D, ids + t, out + t * D, ws, ws_bytes);
        if (rc != 0) {
            char have[128];
            snprintf(err.msg, sizeof err.msg, "decoder_layer_forward: %s (%s); this CPU has %s", fr_last_error(),
                     fr_strerror(rc), fr_cpu_feature_names(fr_cpu_features(), have, sizeof have));
        }
    }
    if (rc == 0) {
        const double *r = ref->data;
        double diff = 0, norm = 0;
        for (int64_t i = 0; i < T * D; i++) {
            diff += (out[i] - r[i]) * (out[i] - r[i]);
            norm += r[i] * r[i];
        }
        double rel = sqrt(diff / norm);   /* NaN fails too */
        printf("%s: %lld tokens (prefill %lld, then decode), rel_l2_err %.3g %s\n", decoder_layer_variant(),
               (long long)T, (long long)(T / 2), rel, rel <= 1e-5 ? "ok" : "FAIL");
        rc = rel <= 1e-5 ? 0 : 1;
    } else {
        fprintf(stderr, "app: error: %s\n", err.msg);
    }
    free(out);
    fr_free(ws);
    decoder_layer_cache_free(&cache);
    fr_st_close(&file);
    return rc == 0 ? 0 : 1;
}
