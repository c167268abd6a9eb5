/*
 * touch_main.c - the MoE kernels read only the experts the ids select
 * (tests/moe/touch.fdl).
 *
 * Each expert's gate_up [2I, D] and down [D, I] fill whole pages; the two
 * tensors are mmap'ed with a PROT_NONE page after them, and before each
 * call every expert the ids do not select is made PROT_NONE too, so a read
 * of one is a SIGSEGV (the test fails by crashing).  Decode (T = 1) and
 * prefill (T = 5), on the threads FUSE_NUM_THREADS gives; the result is
 * compared with a double-precision loop here, and the prefill's bits with
 * those of 1, 2 and 3 threads.  Then ids out of range (-1,
 * E, INT32_MAX) must give FR_EINDEX with the id in the message, reading
 * nothing outside the mapping.  Prints one line per check; exits 1 when any
 * failed, 2 on a set-up error.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "touch.h"

enum { D = touch_D, E = touch_E, I = touch_I, K = touch_K, TMAX = 5 };

static int failed, passed;

static void check(const char *what, int ok, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (ok)
        passed++;
    else
        failed++;
}

/* E slabs of `per` floats (whole pages) and a PROT_NONE page after them. */
static float *slabs(size_t per) {
    size_t bytes = (size_t)E * per * sizeof(float), page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + bytes, page, PROT_NONE) != 0)
        return NULL;
    return (float *)(void *)p;
}

/* Readable exactly when `on`, expert by expert. */
static int expose(float *base, size_t per, const int *on) {
    for (int e = 0; e < E; e++)
        if (mprotect(base + (size_t)e * per, per * sizeof(float), on[e] ? PROT_READ : PROT_NONE) != 0)
            return -1;
    return 0;
}

int main(void) {
    const size_t pgu = 2 * I * D, pdn = (size_t)D * I, page = (size_t)sysconf(_SC_PAGESIZE);
    if (pgu * sizeof(float) % page || pdn * sizeof(float) % page) {
        fprintf(stderr, "touch_main: an expert's weights are not whole pages\n");
        return 2;
    }
    float *gu = slabs(pgu), *dn = slabs(pdn);
    if (!gu || !dn)
        return 2;
    srand(7);
    for (size_t i = 0; i < (size_t)E * pgu; i++)
        gu[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)E * pdn; i++)
        dn[i] = (float)rand() / RAND_MAX - 0.5f;
    float x[TMAX * D], w[TMAX * K], y[TMAX * D];
    int32_t ids[TMAX * K];
    for (int i = 0; i < TMAX * D; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < TMAX * K; i++)
        w[i] = (float)rand() / RAND_MAX;
    touch_weights tw = {gu, dn};
    size_t ws_bytes = touch_workspace_size(TMAX);
    void *ws = fr_alloc(ws_bytes ? ws_bytes : 64);
    if (!ws)
        return 2;

    /* decode picks experts 5 and 2; prefill 2, 5 and 6 (never 0, 1, 3, 4, 7) */
    static const int32_t pick[TMAX * K] = {5, 2, 2, 6, 6, 5, 2, 5, 5, 6};
    for (int T = 1; T <= TMAX; T += TMAX - 1) {
        int on[E] = {0};
        for (int i = 0; i < T * K; i++)
            on[ids[i] = pick[i]] = 1;
        if (expose(gu, pgu, on) || expose(dn, pdn, on))
            return 2;
        int rc = touch_forward(&tw, T, x, ids, w, y, ws, ws_bytes);
        double worst = 0.0;
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                double acc = 0.0;
                for (int k = 0; k < K; k++) {
                    const float *g = gu + (size_t)ids[t * K + k] * pgu, *dr = dn + (size_t)ids[t * K + k] * pdn;
                    for (int i = 0; i < I; i++) {
                        double a = 0.0, b = 0.0;
                        for (int j = 0; j < D; j++) {
                            a += (double)g[i * D + j] * x[t * D + j];
                            b += (double)g[(I + i) * D + j] * x[t * D + j];
                        }
                        acc += w[t * K + k] * dr[d * I + i] * (a / (1.0 + exp(-a)) * b);
                    }
                }
                double err = fabs(acc - y[t * D + d]);
                worst = err > worst || err != err ? err : worst;
            }
        char what[96], detail[64];
        snprintf(what, sizeof what, "T = %d reads only experts %s, result right", T, T == 1 ? "2, 5" : "2, 5, 6");
        snprintf(detail, sizeof detail, "max error %.3g", worst);
        check(what, rc == 0 && worst < 1e-5, rc ? fr_last_error() : detail);
    }

    /* the prefill's bits do not depend on the thread count (each thread's
     * share of the expert rows, and its tiles, change with it) */
    float y1[TMAX * D], y2[TMAX * D];
    memcpy(y1, y, sizeof y1);
    int same = 1, nth = fr_get_num_threads();
    for (int n = 1; n <= 3; n++) {
        fr_set_num_threads(n);
        size_t nb = touch_workspace_size(TMAX);
        void *ws2 = fr_alloc(nb ? nb : 64);
        if (!ws2)
            return 2;
        int rc = touch_forward(&tw, TMAX, x, ids, w, y2, ws2, nb);
        same &= rc == 0 && memcmp(y1, y2, sizeof y2) == 0;
        fr_free(ws2);
    }
    fr_set_num_threads(nth);
    check("T = 5: the same bits on 1, 2 and 3 threads", same, NULL);

    /* ids out of range: nothing readable but the mapping's experts */
    static const int32_t bad[] = {-1, E, INT32_MAX};
    int none[E] = {0};
    if (expose(gu, pgu, none) || expose(dn, pdn, none))
        return 2;
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        char want[96], what[64];
        for (int i = 0; i < TMAX * K; i++)
            ids[i] = 0;
        ids[3] = bad[b];
        int on[E] = {1, 0};
        if (expose(gu, pgu, on) || expose(dn, pdn, on))
            return 2;
        int rc = touch_forward(&tw, TMAX, x, ids, w, y, ws, ws_bytes);
        snprintf(want, sizeof want, "id %ld at element 3 of 'ids' is outside [0, %d)", (long)bad[b], E);
        snprintf(what, sizeof what, "id %ld: FR_EINDEX", (long)bad[b]);
        check(what, rc == FR_EINDEX && strstr(fr_last_error(), want) != NULL, fr_last_error());
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
