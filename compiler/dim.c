/*
 * dim.c - symbolic dimensions.
 *
 * A dimension is affine in the block's symbols (T tokens, P cached tokens):
 * c + sum k[s]*sym[s].  That is closed under + and -, and under * by a
 * constant, which is all a transformer block needs (P+T keys, 3*D columns).
 * Products of two symbols are refused rather than approximated.
 */
#include "fusec.h"

#include <string.h>

Dim dim_const(int64_t c) {
    Dim d;
    memset(&d, 0, sizeof d);
    d.c = c;
    return d;
}

Dim dim_sym(int s) {
    Dim d = dim_const(0);
    FU_ASSERT(s >= 0 && s < FU_MAX_SYMS);
    d.k[s] = 1;
    return d;
}

/* Checked arithmetic.  A constant part stays within +-INT64_MAX and a
 * multiplier within +-INT32_MAX (symmetric ranges: negation never
 * overflows); anything beyond is "dimension too large" to the caller. */
static bool add_i64(int64_t a, int64_t b, int64_t *out) {
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < -INT64_MAX - b))
        return false;
    *out = a + b;
    return true;
}

static bool mul_i64(int64_t a, int64_t b, int64_t *out) {
    if (a != 0 && b != 0) {
        int64_t aa = a < 0 ? -a : a, ab = b < 0 ? -b : b;
        if (a == INT64_MIN || b == INT64_MIN || aa > INT64_MAX / ab)
            return false;
    }
    *out = a * b;
    return true;
}

static bool coef(int64_t v, int32_t *out) {
    if (v > INT32_MAX || v < -INT32_MAX)
        return false;
    *out = (int32_t)v;
    return true;
}

bool dim_ok(Dim d) {
    if (d.c == INT64_MIN)
        return false;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (d.k[s] == INT32_MIN)
            return false;
    return true;
}

bool dim_add_ok(Dim a, Dim b, Dim *out) {
    Dim r;
    if (!dim_ok(a) || !dim_ok(b) || !add_i64(a.c, b.c, &r.c))
        return false;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (!coef((int64_t)a.k[s] + b.k[s], &r.k[s]))
            return false;
    *out = r;
    return true;
}

bool dim_neg_ok(Dim a, Dim *out) {
    if (!dim_ok(a))
        return false;
    a.c = -a.c;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        a.k[s] = -a.k[s];
    *out = a;
    return true;
}

bool dim_sub_ok(Dim a, Dim b, Dim *out) {
    Dim nb;
    return dim_neg_ok(b, &nb) && dim_add_ok(a, nb, out);
}

Dim dim_add(Dim a, Dim b) {
    Dim r;
    if (!dim_add_ok(a, b, &r))
        fu_internal(__FILE__, __LINE__, "dimension sum overflows");
    return r;
}

Dim dim_sub(Dim a, Dim b) {
    Dim r;
    if (!dim_sub_ok(a, b, &r))
        fu_internal(__FILE__, __LINE__, "dimension difference overflows");
    return r;
}

bool dim_is_const(Dim d) {
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (d.k[s])
            return false;
    return true;
}

bool dim_mul(Dim a, Dim b, Dim *out) {
    if (!dim_is_const(a)) {
        Dim t = a;
        a = b;
        b = t;
    }
    if (!dim_is_const(a) || !dim_ok(a) || !dim_ok(b))
        return false;
    Dim r = dim_const(0);
    if (!mul_i64(a.c, b.c, &r.c))
        return false;
    for (int s = 0; s < FU_MAX_SYMS; s++) {
        int64_t v;
        if (!mul_i64(a.c, b.k[s], &v) || !coef(v, &r.k[s]))
            return false;
    }
    *out = r;
    return true;
}

bool dim_eq(Dim a, Dim b) {
    if (a.c != b.c)
        return false;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (a.k[s] != b.k[s])
            return false;
    return true;
}

int64_t dim_eval(Dim d, const int64_t *syms) {
    int64_t v = d.c, t;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (d.k[s] && (!mul_i64(d.k[s], syms[s], &t) || !add_i64(v, t, &v)))
            return INT64_MAX;
    return v;
}

/* Symbols first, in symbol order, then the constant: "P+T", "2*T-1". */
void dim_print(Buf *b, Dim d, const char *const *sym_names) {
    bool any = false;
    for (int s = 0; s < FU_MAX_SYMS; s++) {
        int64_t k = d.k[s];    /* wide: -INT32_MIN is not an int32 */
        if (!k)
            continue;
        const char *name = sym_names && sym_names[s] ? sym_names[s] : "?";
        if (k < 0)
            buf_puts(b, "-");
        else if (any)
            buf_puts(b, "+");
        if (k != 1 && k != -1)
            buf_printf(b, "%lld*", (long long)(k < 0 ? -k : k));
        buf_puts(b, name);
        any = true;
    }
    if (!any)
        buf_printf(b, "%lld", (long long)d.c);
    else if (d.c > 0)
        buf_printf(b, "+%lld", (long long)d.c);
    else if (d.c < 0)
        buf_printf(b, "%lld", (long long)d.c);
}
