/*
 * window_main.c - a sliding window never reads the cache rows before it
 * (tests/attn/attn.fdl, block window: W = 3, causal).
 *
 * After a prefill of 20 tokens, a decode step at P = 20 sees keys 18..20
 * and a 5-token step sees keys 18..24.  Each step runs twice: on the cache
 * as the prefill left it, and with rows 0..17 (which no query of the step
 * may see) overwritten with NaN.  The outputs must be finite and bitwise
 * equal.  Prints one line per check; exits 1 when any failed, 2 on a
 * set-up error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

#define P0 20
#define CAP 64
#define QW (window_H * window_HD)
#define KW (window_KVH * window_HD)

static int failed, passed;

static void check(const char *what, int ok, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (ok)
        passed++;
    else
        failed++;
}

static float val(int i) { return (float)((i * 7919) % 1000) / 250.0f - 2.0f; }

/* One step of T tokens at P = P0 on a fresh prefill, its cache rows before
 * the window poisoned when `poison`; the output goes to y. */
static int step(int T, int poison, float *y)
{
    window_cache c;
    fr_err err;
    float q[CAP * QW], k[CAP * KW], v[CAP * KW];
    for (int i = 0; i < CAP * QW; i++)
        q[i] = val(i);
    for (int i = 0; i < CAP * KW; i++) {
        k[i] = val(i + 5000);
        v[i] = val(i + 9000);
    }
    if (window_cache_init(&c, CAP, &err) != 0)
        return 2;
    size_t ws_bytes = window_workspace_size(P0, 0);
    size_t ws2 = window_workspace_size(T, P0);
    ws_bytes = ws2 > ws_bytes ? ws2 : ws_bytes;
    void *ws = fr_alloc(ws_bytes ? ws_bytes : 64);
    float *yp = malloc(sizeof(float) * P0 * QW);
    if (!ws || !yp)
        return 2;
    int rc = window_forward(&c, P0, 0, q, k, v, yp, ws, ws_bytes);
    if (rc == 0 && poison)
        for (int r = 0; r < P0 - 2; r++)
            for (int j = 0; j < KW; j++)
                c.kc[r * KW + j] = c.vc[r * KW + j] = NAN;
    if (rc == 0)
        rc = window_forward(&c, T, P0, q + P0 * QW, k + P0 * KW, v + P0 * KW, y, ws, ws_bytes);
    free(yp);
    fr_free(ws);
    window_cache_free(&c);
    return rc;
}

int main(void)
{
    static const int Ts[] = {1, 5};
    for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        int T = Ts[i];
        float a[5 * QW], b[5 * QW];
        char what[96];
        int ra = step(T, 0, a), rb = step(T, 1, b);
        if (ra == 2 || rb == 2)
            return 2;
        int finite = 1;
        for (int j = 0; j < T * QW; j++)
            finite &= isfinite(b[j]) != 0;
        snprintf(what, sizeof what, "T=%d at P=%d: rows before the window are never read", T, P0);
        check(what, ra == 0 && rb == 0 && finite && memcmp(a, b, sizeof(float) * (size_t)(T * QW)) == 0,
              ra || rb ? fr_last_error() : NULL);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
