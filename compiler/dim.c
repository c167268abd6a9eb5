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

Dim dim_add(Dim a, Dim b) {
    a.c += b.c;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        a.k[s] += b.k[s];
    return a;
}

Dim dim_sub(Dim a, Dim b) {
    a.c -= b.c;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        a.k[s] -= b.k[s];
    return a;
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
    if (!dim_is_const(a))
        return false;
    Dim r = dim_const(a.c * b.c);
    for (int s = 0; s < FU_MAX_SYMS; s++)
        r.k[s] = (int32_t)(a.c * b.k[s]);
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
    int64_t v = d.c;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (d.k[s])
            v += (int64_t)d.k[s] * syms[s];
    return v;
}

/* Symbols first, in symbol order, then the constant: "P+T", "2*T-1". */
void dim_print(Buf *b, Dim d, const char *const *sym_names) {
    bool any = false;
    for (int s = 0; s < FU_MAX_SYMS; s++) {
        int32_t k = d.k[s];
        if (!k)
            continue;
        const char *name = sym_names && sym_names[s] ? sym_names[s] : "?";
        if (k < 0)
            buf_puts(b, "-");
        else if (any)
            buf_puts(b, "+");
        if (k != 1 && k != -1)
            buf_printf(b, "%d*", k < 0 ? -k : k);
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
