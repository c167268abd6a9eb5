/*
 * shape.c - one type rule per op.
 *
 * ir_infer computes a node's dtype and shape from its inputs and attributes,
 * or explains in user terms why it cannot ("cannot broadcast f32[T, 256]
 * with f32[64]").  Sema calls it while building the graph, and the verifier
 * calls it again after every pass, so a rule lives in exactly one place.
 * Sources and reshape carry the type their builder gave them; for those the
 * rule only checks it.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

typedef struct Why {
    char *buf;
    size_t len;
    const Graph *g;
} Why;

static bool fail(Why *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static bool fail(Why *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->buf, w->len, fmt, ap);
    va_end(ap);
    return false;
}

/* The type of n as text, in a scratch string that lives in the arena. */
static const char *ty(const Node *n, const Graph *g) {
    Buf b = {0};
    ir_type_str(&b, n, g);
    const char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

/* One dimension as text ("T", "P+T", "64"), in the arena. */
static const char *dim_text(Dim d, const Graph *g) {
    Buf b = {0};
    dim_print(&b, d, g->sym_names);
    const char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

static bool is_one(Dim d) { return dim_is_const(d) && d.c == 1; }

static void set_type(Node *n, DType t, int rank, const Dim *shape) {
    n->dtype = t;
    n->rank = rank;
    for (int d = 0; d < rank; d++)
        n->shape[d] = shape[d];
}

static bool need_f32(Why *w, const Node *n, const Node *x) {
    if (x->dtype == DT_F32)
        return true;
    if (dt_info(x->dtype)->kind == DK_QUANT)
        return fail(w, "'%s' cannot read %s%s%s: a %s weight can only be the weight of 'linear' "
                       "or moe's experts (docs/quantization.md)", op_info[n->op].name, x->name ? "'" : "", x->name ? x->name : "",
                    x->name ? fu_format("' %s", ty(x, w->g)) : ty(x, w->g), dtype_name(x->dtype));
    return fail(w, "'%s' needs f32 operands, got %s", op_info[n->op].name, ty(x, w->g));
}

bool ir_takes(const Node *n, int j, DType t) {
    switch (dt_info(t)->kind) {
    case DK_F32:
    case DK_INT:
        return true;
    case DK_HALF:
        return (n->op == OP_LINEAR && j == 1) || n->op == OP_CONVERT || (n->op == OP_EMBEDDING && j == 0) ||
               (n->op == OP_APPEND && j == 0) || (n->op == OP_ATTENTION && (j == 1 || j == 2)) ||
               ((n->op == OP_MOE_UP || n->op == OP_MOE_DOWN) && j == 2);
    case DK_QUANT:
        return (n->op == OP_LINEAR && j == 1) || ((n->op == OP_MOE_UP || n->op == OP_MOE_DOWN) && j == 2);
    }
    return false;
}

/* Operand j of n is x (f32, or a type n reads itself). */
static bool need_float(Why *w, const Node *n, int j) {
    const Node *x = n->in[j];
    if (x->dtype != DT_I32 && ir_takes(n, j, x->dtype))
        return true;
    return need_f32(w, n, x);
}

/* A declared type: constant dims >= 1, at most FU_MAX_RANK dims. */
static bool check_declared(Why *w, const Node *n) {
    if (n->rank < 0 || n->rank > FU_MAX_RANK)
        return fail(w, "rank %d is out of range (at most %d dimensions)", n->rank, FU_MAX_RANK);
    for (int d = 0; d < n->rank; d++)
        if (dim_is_const(n->shape[d]) && n->shape[d].c < 1)
            return fail(w, "dimension %d of %s must be at least 1", d, ty(n, w->g));
    return true;
}

/* numpy broadcasting of a and b's shapes into out. */
static bool broadcast(Why *w, const Node *a, const Node *b, int *rank, Dim *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    for (int d = 0; d < r; d++) {
        int da = d - (r - a->rank), db = d - (r - b->rank);
        Dim x = da >= 0 ? a->shape[da] : dim_const(1);
        Dim y = db >= 0 ? b->shape[db] : dim_const(1);
        if (dim_eq(x, y) || is_one(y))
            out[d] = x;
        else if (is_one(x))
            out[d] = y;
        else
            return fail(w, "cannot broadcast %s with %s", ty(a, w->g), ty(b, w->g));
    }
    *rank = r;
    return true;
}

/* Element counts of two shapes agree when the constant parts multiply to the
 * same number and the symbolic dims are the same multiset. */
/* The product of n's constant dims; false when it leaves int64. */
static bool const_numel(const Node *n, int64_t *out) {
    Dim e = dim_const(1);
    for (int d = 0; d < n->rank; d++)
        if (dim_is_const(n->shape[d]) && !dim_mul(n->shape[d], e, &e))
            return false;
    *out = e.c;
    return true;
}

static bool same_numel(const Node *a, const Node *b) {
    int64_t ca, cb;
    bool used[FU_MAX_RANK] = {false};
    if (!const_numel(a, &ca) || !const_numel(b, &cb) || ca != cb)
        return false;
    int nsym_a = 0;
    for (int d = 0; d < a->rank; d++) {
        if (dim_is_const(a->shape[d]))
            continue;
        nsym_a++;
        bool found = false;
        for (int e = 0; e < b->rank && !found; e++)
            if (!used[e] && !dim_is_const(b->shape[e]) && dim_eq(a->shape[d], b->shape[e]))
                used[e] = found = true;
        if (!found)
            return false;
    }
    int nsym_b = 0;
    for (int e = 0; e < b->rank; e++)
        nsym_b += !dim_is_const(b->shape[e]);
    return nsym_a == nsym_b;
}

static bool infer_source(Why *w, Node *n, const Graph *g) {
    if (!check_declared(w, n))
        return false;
    switch (n->op) {
    case OP_CONST:
        if (n->rank != 0 || n->dtype != DT_F32)
            return fail(w, "a constant is an f32 scalar");
        return true;
    case OP_INPUT:
        if (n->dtype != DT_F32 && n->dtype != DT_I32)
            return fail(w, "input '%s' must be f32 or i32, got %s", n->name, ty(n, g));
        return true;
    case OP_WEIGHT:
        if (dt_info(n->dtype)->kind == DK_INT && n->dtype != DT_I32)
            return fail(w, "weight '%s' has type %s", n->name, ty(n, g));
        if (dt_info(n->dtype)->kind == DK_QUANT && n->rank < 1)
            return fail(w, "%s weight '%s' needs at least one dimension (its blocks run along the last)",
                        dtype_name(n->dtype), n->name);
        for (int d = 0; d < n->rank; d++)
            if (!dim_is_const(n->shape[d]))
                return fail(w, "weight '%s' has symbolic shape %s; weights have constant shapes",
                            n->name, ty(n, g));
        return true;
    case OP_CACHE: {
        if (n->dtype != DT_F32 && n->dtype != DT_F16 && n->dtype != DT_BF16)
            return fail(w, "cache '%s' must be f32, f16 or bf16, got %s", n->name, ty(n, g));
        if (n->rank < 2)
            return fail(w, "cache '%s' needs a cached-length dimension and a row shape", n->name);
        Dim p = n->shape[0];
        int nsym = 0, sym = -1;
        for (int s = 0; s < FU_MAX_SYMS; s++)
            if (p.k[s]) {
                nsym++;
                sym = s;
            }
        if (nsym != 1 || p.k[sym] != 1 || p.c != 0)
            return fail(w, "the first dimension of cache '%s' must be a symbolic dimension (the cached length)",
                        n->name);
        if (g->cache_sym >= 0 && g->cache_sym != sym)
            return fail(w, "cache '%s' is indexed by '%s' but other caches by '%s'", n->name,
                        g->sym_names[sym], g->sym_names[g->cache_sym]);
        for (int d = 1; d < n->rank; d++)
            if (!dim_is_const(n->shape[d]))
                return fail(w, "the rows of cache '%s' must have a constant shape", n->name);
        return true;
    }
    default:
        return true;
    }
}

static bool infer_reduce(Why *w, Node *n) {
    Node *x = n->in[0];
    if (!need_f32(w, n, x))
        return false;
    if (n->i[0] < 0 || n->i[0] >= x->rank)
        return fail(w, "'%s': axis %lld is out of range for %s", op_info[n->op].name,
                    (long long)n->i[0], ty(x, w->g));
    set_type(n, DT_F32, x->rank, x->shape);
    n->shape[n->i[0]] = dim_const(1);
    return true;
}

static bool infer_matmul(Why *w, Node *n) {
    Node *a = n->in[0], *b = n->in[1];
    if (!need_f32(w, n, a) || !need_f32(w, n, b))
        return false;
    if (a->rank < 2 || b->rank < 2)
        return fail(w, "'matmul' needs operands with at least 2 dimensions, got %s and %s",
                    ty(a, w->g), ty(b, w->g));
    bool tb = n->i[0] != 0;
    Dim m = a->shape[a->rank - 2], ka = a->shape[a->rank - 1];
    Dim kb = b->shape[b->rank - (tb ? 1 : 2)], nn = b->shape[b->rank - (tb ? 2 : 1)];
    if (!dim_eq(ka, kb))
        return fail(w, "'matmul': inner dimensions differ: %s x %s%s", ty(a, w->g), ty(b, w->g),
                    tb ? " (second operand transposed)" : "");
    /* batch dims broadcast like elementwise ops */
    int ra = a->rank - 2, rb = b->rank - 2, r = ra > rb ? ra : rb;
    Dim out[FU_MAX_RANK];
    for (int d = 0; d < r; d++) {
        int da = d - (r - ra), db = d - (r - rb);
        Dim x = da >= 0 ? a->shape[da] : dim_const(1);
        Dim y = db >= 0 ? b->shape[db] : dim_const(1);
        if (dim_eq(x, y) || is_one(y))
            out[d] = x;
        else if (is_one(x))
            out[d] = y;
        else
            return fail(w, "'matmul': batch dimensions of %s and %s do not broadcast", ty(a, w->g),
                        ty(b, w->g));
    }
    out[r] = m;
    out[r + 1] = nn;
    set_type(n, DT_F32, r + 2, out);
    return true;
}

static bool infer_linear(Why *w, Node *n) {
    Node *x = n->in[0], *W = n->in[1];
    if (!need_f32(w, n, x) || !need_float(w, n, 1))
        return false;
    if (x->rank < 1)
        return fail(w, "'linear' needs an input with at least 1 dimension, got %s", ty(x, w->g));
    if (W->rank != 2)
        return fail(w, "'linear' needs a 2-D weight, got %s", ty(W, w->g));
    if (n->i[0] != 0 && n->i[0] != 1)
        return fail(w, "'linear': bad weight layout %lld", (long long)n->i[0]);
    if (dt_info(W->dtype)->kind == DK_QUANT && n->i[0] != 0)
        return fail(w, "'linear': the %s weight %s needs layout \"out_in\": its blocks of 32 run along "
                       "the rows, which must be the reduction dimension (store an [in, out] weight transposed, "
                       "or as bf16/f16)", dtype_name(W->dtype), ty(W, w->g));
    Dim in = W->shape[n->i[0] == 0 ? 1 : 0], out = W->shape[n->i[0] == 0 ? 0 : 1];
    if (!dim_eq(in, x->shape[x->rank - 1]))
        return fail(w, "'linear': weight %s (layout %s) does not take the last dimension of %s",
                    ty(W, w->g), n->i[0] == 0 ? "out_in" : "in_out", ty(x, w->g));
    if (n->nin == 3) {
        Node *b = n->in[2];
        if (!need_f32(w, n, b))
            return false;
        if (b->rank != 1 || !dim_eq(b->shape[0], out))
            return fail(w, "'linear': bias %s does not match the %s output features", ty(b, w->g),
                        ty(W, w->g));
    }
    set_type(n, DT_F32, x->rank, x->shape);
    n->shape[x->rank - 1] = out;
    return true;
}

static bool infer_shape_op(Why *w, Node *n) {
    Node *x = n->in[0];
    switch (n->op) {
    case OP_RESHAPE:
        if (!check_declared(w, n))
            return false;
        if (n->dtype != x->dtype)
            return fail(w, "'reshape' cannot change the dtype");
        int64_t count;
        if (!const_numel(x, &count) || !const_numel(n, &count))
            return fail(w, "'reshape': dimension too large: %s or %s has more than 2^63 elements", ty(x, w->g),
                        ty(n, w->g));
        if (!same_numel(x, n))
            return fail(w, "cannot reshape %s into %s: element counts differ", ty(x, w->g), ty(n, w->g));
        return true;
    case OP_TRANSPOSE: {
        bool seen[FU_MAX_RANK] = {false};
        Dim out[FU_MAX_RANK];
        for (int a = 0; a < x->rank; a++) {
            int64_t p = n->i[a];
            if (p < 0 || p >= x->rank || seen[p])
                return fail(w, "'transpose': the permutation is not a permutation of %d axes", x->rank);
            seen[p] = true;
            out[a] = x->shape[p];
        }
        set_type(n, x->dtype, x->rank, out);
        return true;
    }
    case OP_SLICE: {
        int64_t ax = n->i[0], start = n->i[1], len = n->i[2];
        if (ax < 0 || ax >= x->rank)
            return fail(w, "'slice': axis %lld is out of range for %s", (long long)ax, ty(x, w->g));
        Dim full = x->shape[ax];
        if (!dim_is_const(full)) {
            /* the last len rows (start = -len), as logits of the last token:
             * len at most the axis's least size (symbols >= 1, the cached
             * length >= 0) */
            int64_t least = full.c;
            bool down = false;
            for (int k = 0; k < FU_MAX_SYMS; k++) {
                down = down || full.k[k] < 0;
                least += k == w->g->cache_sym ? 0 : full.k[k];
            }
            if (start >= 0 || start != -len || down || len > least)
                return fail(w, "'slice': axis %lld of %s is symbolic; it can give only its last rows "
                            "(start = -len, len at most %lld)", (long long)ax, ty(x, w->g),
                            (long long)(down ? 0 : least));
            set_type(n, x->dtype, x->rank, x->shape);
            n->shape[ax] = dim_const(len);
            return true;
        }
        /* start + len is not computed when it would overflow (UB) */
        if (start >= 0 && len >= 1 && start > INT64_MAX - len)
            return fail(w, "'slice': start %lld with len %lld is outside axis %lld of %s",
                        (long long)start, (long long)len, (long long)ax, ty(x, w->g));
        if (start < 0 || len < 1 || start > full.c - len)
            return fail(w, "'slice': [%lld, %lld) is outside axis %lld of %s", (long long)start,
                        (long long)(start + len), (long long)ax, ty(x, w->g));
        set_type(n, x->dtype, x->rank, x->shape);
        n->shape[ax] = dim_const(len);
        return true;
    }
    case OP_CONCAT: {
        Node *y = n->in[1];
        int64_t ax = n->i[0];
        if (x->dtype != y->dtype || x->rank != y->rank)
            return fail(w, "'concat': cannot join %s and %s", ty(x, w->g), ty(y, w->g));
        if (ax < 0 || ax >= x->rank)
            return fail(w, "'concat': axis %lld is out of range for %s", (long long)ax, ty(x, w->g));
        for (int d = 0; d < x->rank; d++)
            if (d != ax && !dim_eq(x->shape[d], y->shape[d]))
                return fail(w, "'concat': %s and %s differ outside axis %lld", ty(x, w->g), ty(y, w->g),
                            (long long)ax);
        set_type(n, x->dtype, x->rank, x->shape);
        if (!dim_add_ok(x->shape[ax], y->shape[ax], &n->shape[ax]))
            return fail(w, "'concat': dimension too large: axis %lld of %s and %s together", (long long)ax,
                        ty(x, w->g), ty(y, w->g));
        return true;
    }
    default:
        FU_UNREACHABLE();
    }
}

/* A per-feature vector (norm weight or bias) must match x's last dim. */
static bool check_feature_vec(Why *w, const Node *n, const Node *x, const Node *v, const char *what) {
    if (!need_f32(w, n, v))
        return false;
    if (v->rank != 1 || !dim_eq(v->shape[0], x->shape[x->rank - 1]))
        return fail(w, "'%s': %s %s does not match the last dimension of %s", op_info[n->op].name, what,
                    ty(v, w->g), ty(x, w->g));
    return true;
}

static bool infer_rope(Why *w, Node *n) {
    Node *x = n->in[0], *pos = n->in[1];
    if (!need_f32(w, n, x))
        return false;
    if (x->rank != 2)
        return fail(w, "'rope' needs x as [tokens, heads*head_dim], got %s", ty(x, w->g));
    if (pos->dtype != DT_I32 || pos->rank != 1 || !dim_eq(pos->shape[0], x->shape[0]))
        return fail(w, "'rope' needs positions as i32[%s] (one per row of %s), got %s", dim_text(x->shape[0], w->g),
                    ty(x, w->g), ty(pos, w->g));
    int64_t hd = n->i[0];
    Dim f = x->shape[1];
    if (hd < 2 || hd % 2 || !dim_is_const(f) || f.c % hd)
        return fail(w, "'rope': head_dim %lld must be even and divide the last dimension of %s",
                    (long long)hd, ty(x, w->g));
    if (!(n->f[0] > 0))
        return fail(w, "'rope': theta must be positive");
    set_type(n, DT_F32, 2, x->shape);
    return true;
}

static bool infer_attention(Why *w, Node *n) {
    Node *q = n->in[0], *k = n->in[1], *v = n->in[2];
    for (int j = 0; j < 3; j++)
        if (!need_float(w, n, j))
            return false;
    int64_t H = n->i[0], KVH = n->i[1], hd = n->i[2];
    if (H < 1 || KVH < 1 || hd < 1 || H % KVH)
        return fail(w, "'attention': heads (%lld) must be a multiple of kv_heads (%lld), both positive",
                    (long long)H, (long long)KVH);
    if (q->rank != 2 || !dim_eq(q->shape[1], dim_const(H * hd)))
        return fail(w, "'attention': q must be [tokens, %lld] (heads %lld x head_dim %lld), got %s",
                    (long long)(H * hd), (long long)H, (long long)hd, ty(q, w->g));
    if (k->rank != 2 || !dim_eq(k->shape[1], dim_const(KVH * hd)))
        return fail(w, "'attention': k must be [keys, %lld] (kv_heads %lld x head_dim %lld), got %s",
                    (long long)(KVH * hd), (long long)KVH, (long long)hd, ty(k, w->g));
    if (v->rank != 2 || !dim_eq(v->shape[0], k->shape[0]) || !dim_eq(v->shape[1], k->shape[1]))
        return fail(w, "'attention': v %s must have the shape of k %s", ty(v, w->g), ty(k, w->g));
    if (!(n->f[0] > 0))
        return fail(w, "'attention': scale must be positive");
    if (n->f[1] < 0 || n->i[4] < 0 || (n->i[4] && !n->i[3]))
        return fail(w, "'attention': softcap and window must be positive, a window only with causal");
    if (n->nin == 4) {
        /* the mask: i32 (0 hides a key) or f32 (added), [S] or [T, S] */
        const Node *m = n->in[3];
        if ((m->dtype != DT_I32 && m->dtype != DT_F32) || m->rank < 1 || m->rank > 2 ||
            !dim_eq(m->shape[m->rank - 1], k->shape[0]) || (m->rank == 2 && !dim_eq(m->shape[0], q->shape[0])))
            return fail(w, "'attention': the mask must be i32 or f32 [%s] (keys) or [%s, %s] (tokens, keys), got %s",
                        dim_text(k->shape[0], w->g), dim_text(q->shape[0], w->g), dim_text(k->shape[0], w->g),
                        ty(m, w->g));
    }
    set_type(n, DT_F32, 2, q->shape);
    return true;
}

static bool infer_append(Why *w, Node *n) {
    Node *c = n->in[0], *x = n->in[1];
    if (c->op != OP_CACHE)
        return fail(w, "'append' needs a cache as its first argument");
    if (x->dtype != DT_F32 || x->rank != c->rank)
        return fail(w, "'append': cannot append %s to cache %s", ty(x, w->g), ty(c, w->g));
    for (int d = 1; d < c->rank; d++)
        if (!dim_eq(x->shape[d], c->shape[d]))
            return fail(w, "'append': rows of %s do not match cache %s", ty(x, w->g), ty(c, w->g));
    set_type(n, c->dtype, c->rank, c->shape);
    if (!dim_add_ok(c->shape[0], x->shape[0], &n->shape[0]))
        return fail(w, "'append': dimension too large: the rows of cache %s and %s together", ty(c, w->g),
                    ty(x, w->g));
    return true;
}

static bool infer_convert(Why *w, Node *n) {
    Node *x = n->in[0];
    if (dt_info(x->dtype)->kind != DK_HALF)
        return fail(w, "'convert' reads a bf16 or f16 tensor, got %s", ty(x, w->g));
    set_type(n, DT_F32, x->rank, x->shape);
    return true;
}

/* f32 or i32 (what the integer and indexing ops read). */
static bool need_num(Why *w, const Node *n, const Node *x) {
    if (x->dtype == DT_F32 || x->dtype == DT_I32)
        return true;
    return need_f32(w, n, x);
}

static bool need_i32(Why *w, const Node *n, const Node *x, const char *what) {
    if (x->dtype == DT_I32)
        return true;
    return fail(w, "'%s' needs %s of type i32, got %s%s", op_info[n->op].name, what, ty(x, w->g),
                x->dtype == DT_F32 ? " (cast(x, i32) converts)" : "");
}

/* moe_up (x [T, D], ids [T, K], gate_up [E, 2I, D]) -> [T, K, I] and
 * moe_down (h [T, K, I], ids [T, K], down [E, D, I]) -> [T, D]; the
 * experts' dims are constants (the weights are). */
static bool infer_moe(Why *w, Node *n) {
    const Node *x = n->in[0], *ids = n->in[1], *wt = n->in[2];
    bool up = n->op == OP_MOE_UP;
    const char *name = op_info[n->op].name;
    /* routed (moe's lowering): operand 1 is the router's logits [T, E] */
    bool routed = ids->dtype == DT_F32 && n->i[0] > 0;
    if (!need_f32(w, n, x) || (!routed && !need_i32(w, n, ids, "ids")) || !need_float(w, n, 2))
        return false;
    if (x->rank != (up ? 2 : 3))
        return fail(w, "'%s' needs %s, got %s", name, up ? "x of shape [T, D]" : "h of shape [T, K, I]", ty(x, w->g));
    if (wt->rank != 3 || !dim_is_const(wt->shape[0]) || !dim_is_const(wt->shape[1]) || !dim_is_const(wt->shape[2]))
        return fail(w, "'%s' needs the experts' weights as a constant [E, %s], got %s", name,
                    up ? "2I, D" : "D, I", ty(wt, w->g));
    if (ids->rank != 2 || !dim_eq(ids->shape[0], x->shape[0]) || !dim_is_const(ids->shape[1]))
        return fail(w, "'%s' needs ids [T, K] with the T of %s, got %s", name, ty(x, w->g), ty(ids, w->g));
    if (routed && (!dim_eq(ids->shape[1], wt->shape[0]) || n->i[0] > wt->shape[0].c))
        return fail(w, "'%s': routed by logits %s, it needs one per expert of %s and k = %lld in [1, E]", name,
                    ty(ids, w->g), ty(wt, w->g), (long long)n->i[0]);
    if (!routed && n->i[0] != 0)
        return fail(w, "'%s': k = %lld is for routing by logits; ids %s choose the experts", name,
                    (long long)n->i[0], ty(ids, w->g));
    Dim K = routed ? dim_const(n->i[0]) : ids->shape[1];
    if (!up && !dim_eq(K, x->shape[1]))
        return fail(w, "'moe_down' needs h [T, K, I] with the K of the ids, got %s", ty(x, w->g));
    Dim D = up ? x->shape[1] : wt->shape[1], I = up ? dim_const(wt->shape[1].c / 2) : x->shape[2];
    if (up && (wt->shape[1].c % 2 || !dim_eq(wt->shape[2], D)))
        return fail(w, "'moe_up' needs gate_up [E, 2I, D] (gate rows then up rows) with the D of %s, got %s",
                    ty(x, w->g), ty(wt, w->g));
    if (!up && !dim_eq(wt->shape[2], I))
        return fail(w, "'moe_down' needs down [E, D, I] with the I of %s, got %s", ty(x, w->g), ty(wt, w->g));
    Dim out[3] = {x->shape[0], up ? K : D, I};
    set_type(n, DT_F32, up ? 3 : 2, out);
    return true;
}

static bool infer_index(Why *w, Node *n, const Graph *g) {
    Node *x = n->in[0];
    Dim out[FU_MAX_RANK];
    int r = 0;
    switch (n->op) {
    case OP_CAST:
        if (!need_num(w, n, x))
            return false;
        if (n->i[0] != DT_F32 && n->i[0] != DT_I32)
            return fail(w, "'cast' converts to f32 or i32");
        set_type(n, (DType)n->i[0], x->rank, x->shape);
        return true;
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE:
        if (!need_num(w, n, x) || !need_num(w, n, n->in[1]) || !broadcast(w, x, n->in[1], &r, out))
            return false;
        set_type(n, DT_I32, r, out);
        return true;
    case OP_WHERE: {
        Node *a = n->in[1], *b = n->in[2];
        Dim ab[FU_MAX_RANK];
        int rab = 0;
        if (!need_i32(w, n, x, "its condition") || !need_num(w, n, a) || !need_num(w, n, b))
            return false;
        if (a->dtype != b->dtype)
            return fail(w, "'where' needs its two values of one type, got %s and %s", ty(a, w->g), ty(b, w->g));
        if (!broadcast(w, a, b, &rab, ab))
            return false;
        Node tmp = *a;
        set_type(&tmp, a->dtype, rab, ab);
        if (!broadcast(w, x, &tmp, &r, out))
            return false;
        set_type(n, a->dtype, r, out);
        return true;
    }
    case OP_EMBEDDING: {
        Node *ids = n->in[1];
        if (!need_float(w, n, 0) || !need_i32(w, n, ids, "ids"))
            return false;
        if (x->rank < 1 || !dim_is_const(x->shape[0]))
            return fail(w, "'embedding' needs a table [rows, ...] with a constant number of rows, got %s",
                        ty(x, w->g));
        if (ids->rank + x->rank - 1 > FU_MAX_RANK)
            return fail(w, "'embedding' of %s by %s has more than %d dimensions", ty(x, w->g), ty(ids, w->g),
                        FU_MAX_RANK);
        for (int d = 0; d < ids->rank; d++)
            out[r++] = ids->shape[d];
        for (int d = 1; d < x->rank; d++)
            out[r++] = x->shape[d];
        set_type(n, DT_F32, r, out);
        return true;
    }
    case OP_GATHER: {
        Node *ids = n->in[1];
        if (!need_num(w, n, x) || !need_i32(w, n, ids, "ids"))
            return false;
        if (x->rank < 1 || ids->rank != x->rank)
            return fail(w, "'gather' needs ids with the rank of %s, got %s", ty(x, w->g), ty(ids, w->g));
        for (int d = 0; d + 1 < x->rank; d++)
            if (!dim_eq(x->shape[d], ids->shape[d]))
                return fail(w, "'gather': %s and ids %s differ before the last axis", ty(x, w->g), ty(ids, w->g));
        if (!dim_is_const(x->shape[x->rank - 1]))
            return fail(w, "'gather': the last axis of %s is symbolic; only constant axes can be indexed",
                        ty(x, w->g));
        set_type(n, x->dtype, ids->rank, ids->shape);
        return true;
    }
    case OP_TOPK: {
        if (!need_f32(w, n, x))
            return false;
        if (x->rank < 1)
            return fail(w, "'topk' needs at least 1 dimension, got %s", ty(x, w->g));
        Dim N = x->shape[x->rank - 1];
        if (!dim_is_const(N))
            return fail(w, "'topk': the last axis of %s is symbolic; k must be checked against a constant",
                        ty(x, w->g));
        if (n->i[0] < 1)
            return fail(w, "'topk': k must be at least 1, got %lld", (long long)n->i[0]);
        if (n->i[0] > N.c)
            return fail(w, "'topk': k = %lld is larger than the last axis of %s", (long long)n->i[0], ty(x, w->g));
        set_type(n, DT_I32, x->rank, x->shape);
        n->shape[x->rank - 1] = dim_const(n->i[0]);
        return true;
    }
    case OP_MOE_UP: case OP_MOE_DOWN:
        return infer_moe(w, n);
    case OP_ALLREDUCE:
        if (x->dtype != DT_F32)
            return need_f32(w, n, x);
        if (n->i[0] < 1)
            return fail(w, "'allreduce': the rank count must be at least 1, got %lld", (long long)n->i[0]);
        if (n->nin == 2) {
            bool same = n->in[1]->dtype == DT_F32 && n->in[1]->rank == x->rank;
            for (int d = 0; same && d < x->rank; d++)
                same = dim_eq(n->in[1]->shape[d], x->shape[d]);
            if (!same)
                return fail(w, "'allreduce': the residual %s is not of the sum's type %s", ty(n->in[1], w->g),
                            ty(x, w->g));
        }
        set_type(n, DT_F32, x->rank, x->shape);
        return true;
    case OP_POSITIONS:
        if (x->rank < 1)
            return fail(w, "'positions' needs a tensor of tokens [T, ...], got %s", ty(x, w->g));
        if (n->i[0] < -1 || n->i[0] >= g->nsyms || (n->i[0] >= 0 && n->i[0] != g->cache_sym))
            return fail(w, "'positions': symbol %lld is not the caches' cached length", (long long)n->i[0]);
        set_type(n, DT_I32, 1, x->shape);
        return true;
    default:
        FU_UNREACHABLE();
    }
}

bool ir_infer(Node *n, const Graph *g, char *why, size_t whylen) {
    Why w = {why, whylen, g};
    for (int j = 0; j < n->nin; j++)
        if (!n->in[j])
            return fail(&w, "operand %d is missing", j);
    if (n->nin < op_info[n->op].min_in || n->nin > op_info[n->op].max_in)
        return fail(&w, "'%s' takes %d to %d operands, got %d", op_info[n->op].name,
                    op_info[n->op].min_in, op_info[n->op].max_in, n->nin);
    for (int j = 0; j < n->nin; j++)
        if (!ir_takes(n, j, n->in[j]->dtype))
            return need_f32(&w, n, n->in[j]);
    Node *x = n->nin ? n->in[0] : NULL;
    switch (op_info[n->op].cat) {
    case CAT_SOURCE:
        return infer_source(&w, n, g);
    case CAT_UNARY:
        if (!need_f32(&w, n, x))
            return false;
        set_type(n, DT_F32, x->rank, x->shape);
        return true;
    case CAT_BINARY: {
        Dim out[FU_MAX_RANK];
        int r = 0;
        if (!need_f32(&w, n, x) || !need_f32(&w, n, n->in[1]) || !broadcast(&w, x, n->in[1], &r, out))
            return false;
        set_type(n, DT_F32, r, out);
        return true;
    }
    case CAT_REDUCE:
        return infer_reduce(&w, n);
    case CAT_MATMUL:
        return n->op == OP_MATMUL ? infer_matmul(&w, n) : infer_linear(&w, n);
    case CAT_SHAPE:
        return infer_shape_op(&w, n);
    case CAT_NORM:
        if (!need_f32(&w, n, x))
            return false;
        if (x->rank < 1)
            return fail(&w, "'%s' needs at least 1 dimension", op_info[n->op].name);
        if (!check_feature_vec(&w, n, x, n->in[1], "weight") ||
            (n->op == OP_LAYER_NORM && !check_feature_vec(&w, n, x, n->in[2], "bias")))
            return false;
        if (!(n->f[0] > 0))
            return fail(&w, "'%s': eps must be positive", op_info[n->op].name);
        set_type(n, DT_F32, x->rank, x->shape);
        return true;
    case CAT_SOFTMAX:
        if (!need_f32(&w, n, x))
            return false;
        if (x->rank < (n->op == OP_CAUSAL_MASK ? 2 : 1))
            return fail(&w, "'%s' needs at least %d dimensions, got %s", op_info[n->op].name,
                        n->op == OP_CAUSAL_MASK ? 2 : 1, ty(x, g));
        set_type(n, DT_F32, x->rank, x->shape);
        return true;
    case CAT_ROPE:
        return infer_rope(&w, n);
    case CAT_ATTENTION:
        return infer_attention(&w, n);
    case CAT_CACHE:
        return infer_append(&w, n);
    case CAT_SINK:
        if (!n->name)
            return fail(&w, "an output needs a name");
        if (x->dtype != DT_F32 && x->dtype != DT_I32)
            return need_f32(&w, n, x);
        set_type(n, x->dtype, x->rank, x->shape);
        return true;
    case CAT_CONVERT:
        return infer_convert(&w, n);
    case CAT_INDEX:
        return infer_index(&w, n, g);
    }
    FU_UNREACHABLE();
}
