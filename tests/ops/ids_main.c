/*
 * ids_main.c - embedding and gather with ids out of range (tests/ops/ids.fdl).
 *
 * The table is malloc'ed to its exact size, so under ASan (SAN=1) a read
 * past it is an error.  Each bad id (-1, V, INT32_MAX, INT32_MIN; N and -1
 * for gather) must make forward return FR_EINDEX with a message naming the
 * id, its element and the range; good ids give the table's rows exactly.
 * Prints one line per check; exits 1 when any failed, 2 on a set-up error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

#define T 6

static int failed, passed;

static void check(const char *what, int ok, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (ok)
        passed++;
    else
        failed++;
}

int main(void)
{
    float *table = malloc(sizeof(float) * ids_V * ids_D);
    float x[T * ids_N], e[T * ids_D], g[T * 2];
    int32_t tok[T], sel[T * 2];
    if (!table)
        return 2;
    for (int i = 0; i < ids_V * ids_D; i++)
        table[i] = (float)i + 0.5f;
    for (int i = 0; i < T * ids_N; i++)
        x[i] = (float)(100 + i);
    ids_weights w = {table};
    size_t ws_bytes = ids_workspace_size(T);
    void *ws = fr_alloc(ws_bytes ? ws_bytes : 64);
    if (!ws)
        return 2;

    /* good ids: rows of the table, elements of x */
    for (int t = 0; t < T; t++) {
        tok[t] = (t * 3) % ids_V;
        sel[2 * t] = t % ids_N;
        sel[2 * t + 1] = ids_N - 1;
    }
    int rc = ids_forward(&w, T, tok, sel, x, e, g, ws, ws_bytes);
    int same = rc == 0;
    for (int t = 0; t < T && same; t++) {
        same = memcmp(e + t * ids_D, table + tok[t] * ids_D, sizeof(float) * ids_D) == 0 &&
               g[2 * t] == x[t * ids_N + t % ids_N] && g[2 * t + 1] == x[t * ids_N + ids_N - 1];
    }
    check("good ids give the rows", same, rc ? fr_last_error() : NULL);

    static const int32_t bad_tok[] = {-1, ids_V, INT32_MAX, INT32_MIN};
    for (size_t b = 0; b < sizeof bad_tok / sizeof *bad_tok; b++) {
        char want[128], what[64];
        for (int t = 0; t < T; t++)
            tok[t] = t % ids_V;
        tok[4] = bad_tok[b];
        rc = ids_forward(&w, T, tok, sel, x, e, g, ws, ws_bytes);
        snprintf(want, sizeof want, "id %ld at element 4 of 'tok' is outside [0, 5)", (long)bad_tok[b]);
        snprintf(what, sizeof what, "embedding id %ld", (long)bad_tok[b]);
        check(what, rc == FR_EINDEX && strstr(fr_last_error(), want) &&
                        strcmp(fr_strerror(rc), "index out of range") == 0, fr_last_error());
    }
    for (int t = 0; t < T; t++)
        tok[t] = t % ids_V;
    static const int32_t bad_sel[] = {-1, ids_N};
    for (size_t b = 0; b < sizeof bad_sel / sizeof *bad_sel; b++) {
        char want[128], what[64];
        sel[7] = bad_sel[b];
        rc = ids_forward(&w, T, tok, sel, x, e, g, ws, ws_bytes);
        snprintf(want, sizeof want, "gather: id %ld at element 7 of 'sel' is outside [0, 4)", (long)bad_sel[b]);
        snprintf(what, sizeof what, "gather id %ld", (long)bad_sel[b]);
        check(what, rc == FR_EINDEX && strstr(fr_last_error(), want), fr_last_error());
        sel[7] = 0;
    }
    /* and a good call after the errors works again */
    rc = ids_forward(&w, T, tok, sel, x, e, g, ws, ws_bytes);
    check("a good call after the errors", rc == 0, rc ? fr_last_error() : NULL);
    fr_free(ws);
    free(table);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
