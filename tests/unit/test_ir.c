/*
 * test_ir.c - symbolic dims, the type rules of shape.c (and each refusal's
 * reason), the printer, dead code elimination, the verifier (which must
 * catch broken graphs), and dtype.c's conversions, rows and weight rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "fusec.h"

static const SrcLoc noloc = {0};

static Node *src(Graph *g, Op op, const char *name, DType t, int rank, const Dim *shape) {
    Node *n = ir_node(g, op, 0, NULL, noloc);
    n->name = name;
    n->dtype = t;
    n->rank = rank;
    for (int d = 0; d < rank; d++)
        n->shape[d] = shape[d];
    char why[256];
    assert_true(ir_infer(n, g, why, sizeof why));
    return n;
}

static Node *op2(Graph *g, Op op, Node *a, Node *b, char *why) {
    Node *in[2] = {a, b};
    Node *n = ir_node(g, op, b ? 2 : 1, in, noloc);
    if (!ir_infer(n, g, why, 256))
        return NULL;
    return n;
}

static char *type_of(const Node *n, const Graph *g) {
    static char s[128];
    Buf b = {0};
    ir_type_str(&b, n, g);
    snprintf(s, sizeof s, "%s", b.data);
    free(b.data);
    return s;
}

static void test_dims(void **state) {
    (void)state;
    Dim t = dim_sym(0), p = dim_sym(1);
    Dim pt = dim_add(p, t);
    const char *names[FU_MAX_SYMS] = {"T", "P"};
    Buf b = {0};
    dim_print(&b, pt, names);
    assert_string_equal(b.data, "T+P");
    int64_t syms[FU_MAX_SYMS] = {7, 5};
    assert_int_equal(dim_eval(pt, syms), 12);
    Dim m;
    assert_true(dim_mul(dim_const(3), t, &m));
    assert_int_equal(dim_eval(m, syms), 21);
    assert_false(dim_mul(t, p, &m)); /* not affine */
    assert_true(dim_eq(dim_sub(pt, p), t));
    assert_false(dim_is_const(pt));
    b.len = 0;
    dim_print(&b, dim_sub(dim_const(1), dim_add(t, t)), names);
    assert_string_equal(b.data, "-2*T+1");
    free(b.data);
}

/* Dim arithmetic at the edges of its ranges (constant part +-INT64_MAX,
 * multipliers +-INT32_MAX): checked, never wrapped (issue 10, defect 3;
 * UBSan watches the arithmetic under make test SAN=1). */
static void test_dim_limits(void **state) {
    (void)state;
    Dim t = dim_sym(0), r;
    const char *names[FU_MAX_SYMS] = {"T"};
    Dim k31 = dim_const(INT32_MAX), k2_30 = dim_const(1 << 30);
    /* near 2^31: (2^31 - 1) * T fits, one more T does not */
    assert_true(dim_mul(k31, t, &r));
    assert_int_equal(r.k[0], INT32_MAX);
    assert_false(dim_add_ok(r, t, &r));
    assert_int_equal(r.k[0], INT32_MAX);        /* untouched on failure */
    /* 2^30 * T + 2^30 * T is 2^31 * T: too large, not INT32_MIN */
    Dim h;
    assert_true(dim_mul(k2_30, t, &h));
    assert_false(dim_add_ok(h, h, &r));
    /* -(2^31 - 1) * T prints with its sign once */
    assert_true(dim_mul(dim_const(-INT32_MAX), t, &r));
    Buf b = {0};
    dim_print(&b, r, names);
    assert_string_equal(b.data, "-2147483647*T");
    free(b.data);
    /* near 2^32: 2^32 + 1 as a multiplier is too large (was truncated to 1) */
    assert_false(dim_mul(dim_const(4294967297LL), t, &r));
    assert_false(dim_mul(t, dim_const(4294967297LL), &r));
    /* near 2^53 and 2^63: constants add and multiply up to INT64_MAX */
    Dim p53 = dim_const(9007199254740993LL);
    assert_true(dim_add_ok(p53, p53, &r));
    assert_int_equal(r.c, 18014398509481986LL);
    assert_true(dim_add_ok(dim_const(INT64_MAX - 1), dim_const(1), &r));
    assert_int_equal(r.c, INT64_MAX);
    assert_false(dim_add_ok(r, dim_const(1), &r));
    assert_false(dim_add_ok(dim_const(4611686018427387904LL), dim_const(4611686018427387904LL), &r));
    assert_false(dim_sub_ok(dim_const(-INT64_MAX), dim_const(1), &r));
    assert_true(dim_neg_ok(dim_const(INT64_MAX), &r));
    assert_int_equal(r.c, -INT64_MAX);
    assert_false(dim_mul(dim_const(3037000500LL), dim_const(3037000500LL), &r));
    assert_true(dim_mul(dim_const(3037000499LL), dim_const(3037000499LL), &r));
    assert_false(dim_mul(dim_const(1LL << 40), h, &r));    /* (2^40) * (2^30 * T) */
    assert_false(dim_mul(dim_const(-1), dim_const(INT64_MIN), &r));
    /* evaluation saturates instead of wrapping */
    int64_t syms[FU_MAX_SYMS] = {INT64_MAX / 2};
    assert_int_equal(dim_eval(dim_add(t, dim_const(1)), syms), INT64_MAX / 2 + 1);
    assert_true(dim_mul(k31, t, &r));
    assert_int_equal(dim_eval(r, syms), INT64_MAX);
}

static void test_broadcast_rules(void **state) {
    (void)state;
    Graph *g = ir_graph_new("b");
    int T = ir_add_sym(g, "T");
    Dim td[2] = {dim_sym(T), dim_const(256)}, col[2] = {dim_sym(T), dim_const(1)}, v64[1] = {dim_const(64)};
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, td);
    Node *c = src(g, OP_INPUT, "c", DT_F32, 2, col);
    Node *w = src(g, OP_WEIGHT, "w", DT_F32, 1, v64);
    char why[256];
    Node *s = op2(g, OP_ADD, x, c, why);
    assert_non_null(s);
    assert_string_equal(type_of(s, g), "f32[T, 256]");
    assert_null(op2(g, OP_MUL, x, w, why));
    assert_string_equal(why, "cannot broadcast f32[T, 256] with f32[64]");
    Node *pos = src(g, OP_INPUT, "pos", DT_I32, 1, td);
    assert_null(op2(g, OP_EXP, pos, NULL, why));
    assert_string_equal(why, "'exp' needs f32 operands, got i32[T]");
}

static void test_matmul_linear_rules(void **state) {
    (void)state;
    Graph *g = ir_graph_new("m");
    int T = ir_add_sym(g, "T");
    Dim xd[2] = {dim_sym(T), dim_const(256)}, wd[2] = {dim_const(64), dim_const(256)};
    Dim q4[4] = {dim_const(2), dim_const(4), dim_sym(T), dim_const(32)};
    Dim k4[4] = {dim_const(2), dim_const(1), dim_const(32), dim_sym(T)};
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, xd);
    Node *w = src(g, OP_WEIGHT, "w", DT_F32, 2, wd);
    char why[256];
    Node *l = op2(g, OP_LINEAR, x, w, why);
    assert_non_null(l);
    assert_string_equal(type_of(l, g), "f32[T, 64]");
    assert_null(op2(g, OP_MATMUL, x, w, why));
    assert_string_equal(why, "'matmul': inner dimensions differ: f32[T, 256] x f32[64, 256]");
    Node *mt = ir_node(g, OP_MATMUL, 2, (Node *[]){x, w}, noloc);
    mt->i[0] = 1;
    assert_true(ir_infer(mt, g, why, sizeof why));
    assert_string_equal(type_of(mt, g), "f32[T, 64]");
    Node *q = src(g, OP_INPUT, "q", DT_F32, 4, q4);
    Node *k = src(g, OP_INPUT, "k", DT_F32, 4, k4);
    Node *s = op2(g, OP_MATMUL, q, k, why);
    assert_non_null(s);
    assert_string_equal(type_of(s, g), "f32[2, 4, T, T]");
    Node *lw = ir_node(g, OP_LINEAR, 2, (Node *[]){x, w}, noloc);
    lw->i[0] = 1; /* [in, out] layout: 64 inputs, does not fit 256 */
    assert_false(ir_infer(lw, g, why, sizeof why));
}

static void test_shape_ops_and_cache(void **state) {
    (void)state;
    Graph *g = ir_graph_new("c");
    int T = ir_add_sym(g, "T"), P = ir_add_sym(g, "P");
    Dim kd[2] = {dim_sym(T), dim_const(64)}, cd[2] = {dim_sym(P), dim_const(64)};
    Node *k = src(g, OP_INPUT, "k", DT_F32, 2, kd);
    Node *cache = src(g, OP_CACHE, "kc", DT_F32, 2, cd);
    char why[256];
    Node *all = op2(g, OP_APPEND, cache, k, why);
    assert_non_null(all);
    assert_string_equal(type_of(all, g), "f32[T+P, 64]");
    /* reshape [T+P, 64] -> [T+P, 2, 1, 32] keeps the element count */
    Node *r = ir_node(g, OP_RESHAPE, 1, &all, noloc);
    r->dtype = DT_F32;
    r->rank = 4;
    r->shape[0] = all->shape[0];
    r->shape[1] = dim_const(2);
    r->shape[2] = dim_const(1);
    r->shape[3] = dim_const(32);
    assert_true(ir_infer(r, g, why, sizeof why));
    r->shape[3] = dim_const(31);
    assert_false(ir_infer(r, g, why, sizeof why));
    Node *tr = ir_node(g, OP_TRANSPOSE, 1, &all, noloc);
    tr->i[0] = 1;
    tr->i[1] = 0;
    assert_true(ir_infer(tr, g, why, sizeof why));
    assert_string_equal(type_of(tr, g), "f32[64, T+P]");
    tr->i[1] = 1;
    assert_false(ir_infer(tr, g, why, sizeof why));
    Node *sl = ir_node(g, OP_SLICE, 1, &k, noloc);
    sl->i[0] = 1, sl->i[1] = 32, sl->i[2] = 32;
    assert_true(ir_infer(sl, g, why, sizeof why));
    sl->i[1] = 33;
    assert_false(ir_infer(sl, g, why, sizeof why));
    sl->i[0] = 0; /* symbolic axis */
    assert_false(ir_infer(sl, g, why, sizeof why));
    /* a cache whose first dim is not a symbol is refused */
    Node *bad = ir_node(g, OP_CACHE, 0, NULL, noloc);
    bad->name = "bad";
    bad->dtype = DT_F32;
    bad->rank = 2;
    bad->shape[0] = dim_const(4);
    bad->shape[1] = dim_const(4);
    assert_false(ir_infer(bad, g, why, sizeof why));
}

/* A source node typed by hand, not yet checked. */
static Node *raw(Graph *g, Op op, const char *name, DType t, int rank, const Dim *shape) {
    Node *n = ir_node(g, op, 0, NULL, noloc);
    n->name = name;
    n->dtype = t;
    n->rank = rank;
    for (int d = 0; d < rank; d++)
        n->shape[d] = shape[d];
    return n;
}

/* ir_infer must refuse n with a reason containing `want`. */
static void refuses_(Node *n, const Graph *g, const char *want, int line) {
    char why[512] = "";
    if (ir_infer(n, g, why, sizeof why))
        fail_msg("line %d: ir_infer accepted %s (expected \"%s\")", line, op_info[n->op].name, want);
    if (!strstr(why, want))
        fail_msg("line %d: ir_infer said \"%s\", expected \"%s\"", line, why, want);
}
#define REFUSES(n, want) refuses_(n, g, want, __LINE__)

static Node *nd(Graph *g, Op op, int nin, Node *a, Node *b, Node *c) {
    return ir_node(g, op, nin, (Node *[]){a, b, c}, noloc);
}

/* The declared types of sources, and what each rule refuses, with its
 * reason: the verifier re-derives every node's type through these rules,
 * so each is the check that would catch a pass building a wrong node. */
static void test_type_rule_reasons(void **state) {
    (void)state;
    Graph *g = ir_graph_new("r");
    int T = ir_add_sym(g, "T"), P = ir_add_sym(g, "P");
    Dim t3[2] = {dim_sym(T), dim_const(3)}, c43[2] = {dim_const(4), dim_const(3)};
    Dim c3[1] = {dim_const(3)}, c4[1] = {dim_const(4)}, p3[2] = {dim_sym(P), dim_const(3)};
    Dim big[2] = {dim_const((int64_t)1 << 40), dim_const((int64_t)1 << 40)};
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, t3);
    Node *w = src(g, OP_WEIGHT, "w", DT_F32, 2, c43);
    Node *v3 = src(g, OP_WEIGHT, "v3", DT_F32, 1, c3);
    Node *v4 = src(g, OP_WEIGHT, "v4", DT_F32, 1, c4);
    Node *q8 = src(g, OP_WEIGHT, "wq", DT_Q8_0, 2, (Dim[]){dim_const(4), dim_const(32)});
    Node *s = src(g, OP_CONST, NULL, DT_F32, 0, NULL);
    Node *ipos = src(g, OP_INPUT, "pos", DT_I32, 1, (Dim[]){dim_sym(T)});
    Node *cache = src(g, OP_CACHE, "kc", DT_F32, 2, p3);
    Node *huge = src(g, OP_WEIGHT, "huge", DT_F32, 2, big);

    /* sources */
    Node *r9 = raw(g, OP_INPUT, "r9", DT_F32, 1, c3);
    r9->rank = FU_MAX_RANK + 1;
    REFUSES(r9, "is out of range (at most");
    REFUSES(raw(g, OP_INPUT, "z", DT_F32, 1, (Dim[]){dim_const(0)}), "dimension 0 of f32[0] must be at least 1");
    REFUSES(raw(g, OP_CONST, NULL, DT_F32, 1, c3), "a constant is an f32 scalar");
    REFUSES(raw(g, OP_INPUT, "h", DT_BF16, 1, c3), "input 'h' must be f32 or i32, got bf16[3]");
    REFUSES(raw(g, OP_WEIGHT, "q", DT_Q4_0, 0, NULL), "q4_0 weight 'q' needs at least one dimension");
    REFUSES(raw(g, OP_WEIGHT, "ws", DT_F32, 2, t3), "weight 'ws' has symbolic shape f32[T, 3]");
    REFUSES(raw(g, OP_CACHE, "cb", DT_Q8_0, 2, p3), "cache 'cb' must be f32, f16 or bf16, got q8_0[P, 3]");
    REFUSES(raw(g, OP_CACHE, "c1", DT_F32, 1, p3), "cache 'c1' needs a cached-length dimension and a row shape");
    REFUSES(raw(g, OP_CACHE, "cr", DT_F32, 2, (Dim[]){dim_sym(P), dim_sym(T)}),
            "the rows of cache 'cr' must have a constant shape");

    /* operands */
    REFUSES(nd(g, OP_EXP, 1, q8, NULL, NULL), "'exp' cannot read 'wq' q8_0[4, 32]: a q8_0 weight can only be");
    REFUSES(nd(g, OP_EXP, 1, ipos, NULL, NULL), "'exp' needs f32 operands, got i32[T]");
    REFUSES(nd(g, OP_EXP, 2, x, x, NULL), "'exp' takes 1 to 1 operands, got 2");
    Node *hole = nd(g, OP_ADD, 2, x, x, NULL);
    hole->in[1] = NULL;
    REFUSES(hole, "operand 1 is missing");

    /* reductions and products */
    Node *r = nd(g, OP_SUM, 1, x, NULL, NULL);
    r->i[0] = 2;
    REFUSES(r, "'sum': axis 2 is out of range for f32[T, 3]");
    REFUSES(nd(g, OP_MATMUL, 2, v3, w, NULL), "'matmul' needs operands with at least 2 dimensions, got f32[3] and f32[4, 3]");
    Node *b2 = src(g, OP_INPUT, "b2", DT_F32, 3, (Dim[]){dim_const(2), dim_sym(T), dim_const(3)});
    Node *b3 = src(g, OP_INPUT, "b3", DT_F32, 3, (Dim[]){dim_const(3), dim_const(3), dim_const(4)});
    REFUSES(nd(g, OP_MATMUL, 2, b2, b3, NULL), "'matmul': batch dimensions of f32[2, T, 3] and f32[3, 3, 4] do not broadcast");
    REFUSES(nd(g, OP_LINEAR, 2, s, w, NULL), "'linear' needs an input with at least 1 dimension, got f32[]");
    REFUSES(nd(g, OP_LINEAR, 2, x, v3, NULL), "'linear' needs a 2-D weight, got f32[3]");
    Node *l = nd(g, OP_LINEAR, 2, x, w, NULL);
    l->i[0] = 2;
    REFUSES(l, "'linear': bad weight layout 2");
    l = nd(g, OP_LINEAR, 2, x, q8, NULL);
    l->i[0] = 1;
    REFUSES(l, "'linear': the q8_0 weight q8_0[4, 32] needs layout \"out_in\"");
    REFUSES(nd(g, OP_LINEAR, 3, x, w, v3), "'linear': bias f32[3] does not match the f32[4, 3] output features");

    /* shape ops */
    Node *rs = nd(g, OP_RESHAPE, 1, x, NULL, NULL);
    rs->dtype = DT_I32, rs->rank = 2, rs->shape[0] = dim_sym(T), rs->shape[1] = dim_const(3);
    REFUSES(rs, "'reshape' cannot change the dtype");
    rs = nd(g, OP_RESHAPE, 1, huge, NULL, NULL);
    rs->dtype = DT_F32, rs->rank = 1, rs->shape[0] = dim_const(1);
    REFUSES(rs, "'reshape': dimension too large: f32[1099511627776, 1099511627776] or f32[1] has more than 2^63");
    Node *sl = nd(g, OP_SLICE, 1, x, NULL, NULL);
    sl->i[0] = 3, sl->i[2] = 1;
    REFUSES(sl, "'slice': axis 3 is out of range for f32[T, 3]");
    Node *cc = nd(g, OP_CONCAT, 2, x, ipos, NULL);
    cc->i[0] = 0;
    REFUSES(cc, "'concat': cannot join f32[T, 3] and i32[T]");
    cc = nd(g, OP_CONCAT, 2, x, x, NULL);
    cc->i[0] = 5;
    REFUSES(cc, "'concat': axis 5 is out of range for f32[T, 3]");
    cc = nd(g, OP_CONCAT, 2, x, w, NULL);
    cc->i[0] = 1;
    REFUSES(cc, "'concat': f32[T, 3] and f32[4, 3] differ outside axis 1");

    /* norms, softmax, rope, attention */
    Node *nm = nd(g, OP_RMS_NORM, 2, s, v3, NULL);
    nm->f[0] = 1e-5;
    REFUSES(nm, "'rms_norm' needs at least 1 dimension");
    nm = nd(g, OP_RMS_NORM, 2, x, v3, NULL);
    REFUSES(nm, "'rms_norm': eps must be positive");
    REFUSES(nd(g, OP_CAUSAL_MASK, 1, v3, NULL, NULL), "'causal_mask' needs at least 2 dimensions, got f32[3]");
    REFUSES(nd(g, OP_SOFTMAX, 1, s, NULL, NULL), "'softmax' needs at least 1 dimension");
    Node *x4 = src(g, OP_INPUT, "x4", DT_F32, 2, (Dim[]){dim_sym(T), dim_const(4)});
    Node *ro = nd(g, OP_ROPE, 2, v4, ipos, NULL);
    ro->i[0] = 2, ro->f[0] = 1e4;
    REFUSES(ro, "'rope' needs x as [tokens, heads*head_dim], got f32[4]");
    ro = nd(g, OP_ROPE, 2, x4, ipos, NULL);
    ro->i[0] = 3, ro->f[0] = 1e4;
    REFUSES(ro, "'rope': head_dim 3 must be even and divide the last dimension of f32[T, 4]");
    ro->i[0] = 2, ro->f[0] = 0;
    REFUSES(ro, "'rope': theta must be positive");
    Node *k2 = src(g, OP_INPUT, "k2", DT_F32, 2, (Dim[]){dim_const(5), dim_const(2)});
    Node *v5 = src(g, OP_INPUT, "v5", DT_F32, 2, (Dim[]){dim_const(6), dim_const(2)});
    Node *at = nd(g, OP_ATTENTION, 3, x4, k2, k2);
    at->i[0] = 2, at->i[1] = 3, at->i[2] = 2, at->f[0] = 0.5;
    REFUSES(at, "'attention': heads (2) must be a multiple of kv_heads (3), both positive");
    at->i[1] = 1, at->i[2] = 4;
    REFUSES(at, "'attention': q must be [tokens, 8] (heads 2 x head_dim 4), got f32[T, 4]");
    at->i[2] = 2, at->in[1] = x4;
    REFUSES(at, "'attention': k must be [keys, 2] (kv_heads 1 x head_dim 2), got f32[T, 4]");
    at->in[1] = k2, at->in[2] = v5;
    REFUSES(at, "'attention': v f32[6, 2] must have the shape of k f32[5, 2]");
    at->in[2] = k2, at->f[0] = -1;
    REFUSES(at, "'attention': scale must be positive");
    at->f[0] = 0.5;
    char why[256];
    assert_true(ir_infer(at, g, why, sizeof why));

    /* append */
    REFUSES(nd(g, OP_APPEND, 2, x, x, NULL), "'append' needs a cache as its first argument");
    REFUSES(nd(g, OP_APPEND, 2, cache, v3, NULL), "'append': cannot append f32[3] to cache f32[P, 3]");
    REFUSES(nd(g, OP_APPEND, 2, cache, x4, NULL), "'append': rows of f32[T, 4] do not match cache f32[P, 3]");
    Dim many = dim_sym(P); /* INT32_MAX * P rows: with the cache's P, a coefficient past int32 */
    many.k[P] = INT32_MAX;
    Node *far = src(g, OP_INPUT, "far", DT_F32, 2, (Dim[]){many, dim_const(3)});
    REFUSES(nd(g, OP_APPEND, 2, cache, far, NULL), "'append': dimension too large: the rows of cache f32[P, 3]");
}

/* A small valid graph: y = rms_norm(x, w) + x, output "y". */
static Graph *small_graph(void) {
    Graph *g = ir_graph_new("small");
    int T = ir_add_sym(g, "T");
    Dim xd[2] = {dim_sym(T), dim_const(8)}, wd[1] = {dim_const(8)};
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, xd);
    Node *w = src(g, OP_WEIGHT, "w", DT_F32, 1, wd);
    char why[256];
    Node *n = ir_node(g, OP_RMS_NORM, 2, (Node *[]){x, w}, noloc);
    n->f[0] = 1e-5;
    assert_true(ir_infer(n, g, why, sizeof why));
    Node *dead = op2(g, OP_EXP, x, NULL, why);
    assert_non_null(dead);
    Node *s = op2(g, OP_ADD, n, x, why);
    Node *o = ir_node(g, OP_OUTPUT, 1, &s, noloc);
    o->name = "y";
    assert_true(ir_infer(o, g, why, sizeof why));
    return g;
}

static void test_print_and_dce(void **state) {
    (void)state;
    Graph *g = small_graph();
    ir_dce(g);
    char why[256];
    assert_true(ir_check(g, why, sizeof why));
    assert_int_equal(g->nnodes, 5);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ir_print(f, g);
    fclose(f);
    assert_string_equal(text,
                        "block small(T)\n"
                        "  %0 = input \"x\" : f32[T, 8]\n"
                        "  %1 = weight \"w\" : f32[8]\n"
                        "  %2 = rms_norm(%0, %1) {eps=1e-05} : f32[T, 8]\n"
                        "  %3 = add(%2, %0) : f32[T, 8]\n"
                        "  %4 = output \"y\"(%3) : f32[T, 8]\n");
    free(text);
    assert_int_equal(g->nodes[0]->nuses, 2);
}

static char *print_str(const Graph *g) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    ir_print(f, g);
    fclose(f);
    return text;
}

/* Every attribute the printer writes (axes, layouts, slice bounds, perms,
 * constants, rope's), against the expected text; and a matmul of a
 * transposed second operand, which only the passes build. */
static void test_print_attributes(void **state) {
    (void)state;
    Graph *g = fe_compile_string("p.fdl",
                                 "block pr { dim T; dim D = 4; input pos: i32[T];\n"
                                 "  input x: f32[T, D]; weight w: f32[D, 6]; weight m: f32[D, D];\n"
                                 "  h = linear(x, w, layout = \"in_out\");\n"
                                 "  s = sum(h, axis = 1) + max(h) + mean(h, axis = -1);\n"
                                 "  c = concat(slice(h, axis = 1, start = 2, len = 3), matmul(x, transpose(m)), axis = 1);\n"
                                 "  k = linear(x, m);\n"
                                 "  output y: f32[T, 6] = h * 3.5 + s; output z: f32[T, 7] = c;\n"
                                 "  output r: f32[T, D] = rope(k, pos, head_dim = 2, theta = 500.0); }\n",
                                 NULL);
    assert_non_null(g);
    ir_dce(g);
    char *text = print_str(g);
    assert_string_equal(text, "block pr(T)\n"
                              "  %0 = input \"pos\" : i32[T]\n"
                              "  %1 = input \"x\" : f32[T, 4]\n"
                              "  %2 = weight \"w\" : f32[4, 6]\n"
                              "  %3 = weight \"m\" : f32[4, 4]\n"
                              "  %4 = linear(%1, %2) {layout=in_out} : f32[T, 6]  # h\n"
                              "  %5 = sum(%4) {axis=1} : f32[T, 1]\n"
                              "  %6 = max(%4) {axis=1} : f32[T, 1]\n"
                              "  %7 = add(%5, %6) : f32[T, 1]\n"
                              "  %8 = mean(%4) {axis=1} : f32[T, 1]\n"
                              "  %9 = add(%7, %8) : f32[T, 1]  # s\n"
                              "  %10 = slice(%4) {axis=1, start=2, len=3} : f32[T, 3]\n"
                              "  %11 = transpose(%3) {perm=[1, 0]} : f32[4, 4]\n"
                              "  %12 = matmul(%1, %11) : f32[T, 4]\n"
                              "  %13 = concat(%10, %12) {axis=1} : f32[T, 7]  # c\n"
                              "  %14 = linear(%1, %3) {layout=out_in} : f32[T, 4]  # k\n"
                              "  %15 = const 3.5 : f32[]\n"
                              "  %16 = mul(%4, %15) : f32[T, 6]\n"
                              "  %17 = add(%16, %9) : f32[T, 6]\n"
                              "  %18 = output \"y\"(%17) : f32[T, 6]\n"
                              "  %19 = output \"z\"(%13) : f32[T, 7]\n"
                              "  %20 = rope(%14, %0) {head_dim=2, theta=500} : f32[T, 4]\n"
                              "  %21 = output \"r\"(%20) : f32[T, 4]\n");
    free(text);
    Node *mm = g->nodes[12];
    assert_int_equal(mm->op, OP_MATMUL);
    mm->in[1] = g->nodes[3]; /* m itself, read transposed: the same type */
    mm->i[0] = 1;
    char why[256];
    assert_true(ir_check(g, why, sizeof why));
    text = print_str(g);
    assert_non_null(strstr(text, "\n  %12 = matmul(%1, %3) {transpose_b} : f32[T, 4]\n"));
    free(text);
    g = fe_compile_string("pa.fdl",
                          "block pa { dim T; input q: f32[T, 8]; input k: f32[T, 4]; input v: f32[T, 4];\n"
                          "  output y: f32[T, 8] = attention(q, k, v, heads = 2, kv_heads = 1, causal = true,\n"
                          "                                  scale = 0.25); }\n",
                          NULL);
    assert_non_null(g);
    text = print_str(g);
    assert_non_null(strstr(text, "\n  %3 = attention(%0, %1, %2) {heads=2, kv_heads=1, head_dim=4, causal=true, "
                                 "scale=0.25} : f32[T, 8]\n"));
    free(text);
}

static void test_verifier_catches(void **state) {
    (void)state;
    char why[256];
    Graph *g = small_graph();
    assert_true(ir_check(g, why, sizeof why));
    /* a stored type that the rule does not give */
    g->nodes[3]->shape[1] = dim_const(9);
    assert_false(ir_check(g, why, sizeof why));
    assert_non_null(strstr(why, "stored type differs"));

    g = small_graph();
    /* an operand that comes later: not topological */
    g->nodes[2]->in[0] = g->nodes[3];
    assert_false(ir_check(g, why, sizeof why));
    assert_non_null(strstr(why, "not an earlier node"));

    g = small_graph();
    g->nodes[1]->name = "x"; /* the weight renamed to... a weight named x is fine */
    assert_true(ir_check(g, why, sizeof why));
    g->outputs[0]->name = NULL;
    assert_false(ir_check(g, why, sizeof why));

    g = small_graph();
    g->nodes[2]->kernel = 5; /* no kernels scheduled */
    assert_false(ir_check(g, why, sizeof why));

    g = small_graph();
    Options o = {.opt_level = 0, .target = "generic"};
    pass_schedule(g, &o);
    assert_true(ir_check(g, why, sizeof why));
    assert_int_equal(g->nodes[0]->kernel, -1);
    assert_true(g->nodes[2]->kernel >= 0);
}

/* ir_check on g must fail with a reason containing `want`. */
static void check_fails(const Graph *g, const char *want) {
    char why[256];
    assert_false(ir_check(g, why, sizeof why));
    if (!strstr(why, want))
        fail_msg("ir_check said \"%s\", expected \"%s\"", why, want);
}

/* small_graph without its dead node, scheduled at -O0: kernel 0 holds
 * %2 rms_norm, kernel 1 %3 add. */
static Graph *scheduled_graph(void) {
    Graph *g = small_graph();
    ir_dce(g);
    Options o = {.opt_level = 0, .target = "generic"};
    pass_schedule(g, &o);
    char why[256];
    assert_true(ir_check(g, why, sizeof why));
    assert_int_equal(g->nkernels, 2);
    assert_int_equal(g->nodes[2]->kernel, 0);
    assert_int_equal(g->nodes[3]->kernel, 1);
    return g;
}

/* Each way a pass could break a graph, and the verifier's reason. */
static void test_verifier_reasons(void **state) {
    (void)state;
    Graph *g = small_graph();
    g->nodes[2]->id = 7;
    check_fails(g, "node at position 2 has id %7");
    g = small_graph();
    g->nodes[2]->op = OP_COUNT;
    check_fails(g, "%2 has an invalid op");
    g = small_graph();
    g->nodes[4]->nin = 1;
    check_fails(g, "%4 (add) has 1 operands");
    g = small_graph();
    g->nodes[2]->in[1] = g->nodes[0]; /* rms_norm's weight is now f32[T, 8] */
    check_fails(g, "%2 (rms_norm): ");
    g = small_graph();
    g->ninputs = 0;
    check_fails(g, "interface lists do not match");
    g = small_graph();
    g->inputs[0] = g->weights[0];
    check_fails(g, "input list holds %1, a 'weight'");
    g = small_graph();
    g->inputs[0]->name = NULL;
    check_fails(g, "input %0 has no name");
    g = small_graph();
    g->inputs[0] = small_graph()->inputs[0];
    check_fails(g, "input 'x' is not in the graph");
    g = small_graph();
    Node *o2 = ir_node(g, OP_OUTPUT, 1, &g->nodes[4], noloc);
    o2->name = "y";
    char why[256];
    assert_true(ir_infer(o2, g, why, sizeof why));
    check_fails(g, "two outputs are named 'y'");
    g = small_graph();
    Node *e = op2(g, OP_EXP, g->outputs[0], NULL, why);
    assert_non_null(e);
    check_fails(g, "%6 (exp) reads an output node");

    /* the kernel lists */
    g = scheduled_graph();
    g->kernels[1]->id = 0;
    check_fails(g, "kernel 1 is missing, misnumbered or empty");
    g = scheduled_graph();
    g->nodes[2]->kernel = 1;
    check_fails(g, "kernel 0 lists %2, which is not in it");
    g = scheduled_graph();
    g->nodes[1]->kernel = 0; /* the weight, in no kernel's list */
    check_fails(g, "3 nodes have a kernel but the kernels list 2");
    g = scheduled_graph();
    g->kernels[0]->kind = KK_ELEMWISE;
    check_fails(g, "kernel 0 of kind 1 holds %2 (rms_norm)");
    g = scheduled_graph();
    g->kernels[1]->kind = KK_ROWWISE;
    check_fails(g, "kernel 1 of kind 2 lacks its row op, attention or product");
    g = scheduled_graph();
    /* one kernel listing add before rms_norm */
    Kernel *k0 = g->kernels[0];
    k0->nodes = (Node *[]){g->nodes[3], g->nodes[2]};
    k0->nnodes = 2;
    k0->kind = KK_ROWWISE;
    g->nodes[3]->kernel = 0;
    g->nkernels = 1;
    check_fails(g, "kernel 0's nodes are not in topological order");
    k0->nodes = (Node *[]){g->nodes[2], g->nodes[3]};
    assert_true(ir_check(g, why, sizeof why));
}

static float f32_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* The compiler's f16 and bf16 conversions on the values where rounding,
 * NaN and the subnormal range decide the bits (IEEE 754 binary16). */
static void test_half_conversions(void **state) {
    (void)state;
    static const struct {
        uint32_t f;
        uint16_t h;
    } to_f16[] = {
        {0x3f800000, 0x3c00}, /* 1 */
        {0xc0000000, 0xc000}, /* -2 */
        {0x477fe000, 0x7bff}, /* 65504, the largest */
        {0x477ff000, 0x7c00}, /* 65520 rounds to infinity */
        {0x7f800000, 0x7c00}, {0xff800000, 0xfc00},
        {0x7fc00000, 0x7e00}, /* quiet NaN */
        {0xffc02000, 0xfe01}, /* its sign and the top of its payload */
        {0x7f800001, 0x7e00}, /* a signalling NaN comes out quiet */
        {0x38800000, 0x0400}, /* 2^-14, the smallest normal */
        {0x33800000, 0x0001}, /* 2^-24, the smallest subnormal */
        {0x33000000, 0x0000}, /* 2^-25: a tie, to even (0) */
        {0x33c00000, 0x0002}, /* 3 * 2^-25: a tie, to even (2) */
        {0xb3800000, 0x8001}, /* -2^-24 */
        {0x3f801000, 0x3c00}, /* 1 + 2^-11: a tie, to even */
        {0x3f803000, 0x3c02}, /* 1 + 3 * 2^-11: a tie, to even */
    };
    for (size_t i = 0; i < sizeof to_f16 / sizeof *to_f16; i++) {
        uint16_t h = dt_f32_to_f16(f32_of(to_f16[i].f));
        if (h != to_f16[i].h)
            fail_msg("f16 of 0x%08x: 0x%04x, expected 0x%04x", (unsigned)to_f16[i].f, h, to_f16[i].h);
    }
    /* back to f32: exact for all but NaN, which stays NaN */
    static const uint16_t halves[] = {0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x8001, 0x03ff, 0x7c00, 0xfc00};
    for (size_t i = 0; i < sizeof halves / sizeof *halves; i++)
        assert_int_equal(dt_f32_to_f16(dt_f16_to_f32(halves[i])), halves[i]);
    assert_true(dt_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(dt_f16_to_f32(0x8001) == -ldexpf(1.0f, -24));
    assert_true(isinf(dt_f16_to_f32(0xfc00)) && dt_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(dt_f16_to_f32(0x7e00)));
    static const struct {
        uint32_t f;
        uint16_t b;
    } to_bf16[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* 1 + 2^-8: a tie, to even */
        {0x3f818000, 0x3f82},                       /* 1 + 3 * 2^-8: a tie, to even */
        {0x3f808001, 0x3f81}, {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to infinity */
        {0x7f800001, 0x7fc0},                       /* a signalling NaN comes out quiet */
        {0xffc00000, 0xffc0},
    };
    for (size_t i = 0; i < sizeof to_bf16 / sizeof *to_bf16; i++) {
        uint16_t b = dt_f32_to_bf16(f32_of(to_bf16[i].f));
        if (b != to_bf16[i].b)
            fail_msg("bf16 of 0x%08x: 0x%04x, expected 0x%04x", (unsigned)to_bf16[i].f, b, to_bf16[i].b);
    }
    assert_int_equal(bits_of(dt_bf16_to_f32(0x3f81)), 0x3f810000);
}

/* Rows stored and loaded: f32 and i32 as they are; a quantized block whose
 * scale overflows float16 or that holds a NaN names its element. */
static void test_rows(void **state) {
    (void)state;
    float x[40];
    for (int i = 0; i < 40; i++)
        x[i] = (float)i - 20.5f;
    float f[40];
    assert_int_equal(dt_store_row(DT_F32, x, 40, f), -1);
    assert_memory_equal(f, x, sizeof x);
    double d[40];
    dt_load_row(DT_F32, f, 40, d);
    for (int i = 0; i < 40; i++)
        assert_true(d[i] == x[i]);
    int32_t k[3] = {-7, 0, 2147483647};
    dt_load_row(DT_I32, k, 3, d);
    assert_true(d[0] == -7 && d[1] == 0 && d[2] == 2147483647.0);
    uint8_t q[4 * 34];
    x[37] = 1e9f; /* block 1, element 5: its scale 1e9 / 127 is past 65504 */
    assert_int_equal(dt_store_row(DT_Q8_0, x, 40, q), 37);
    assert_int_equal(dt_store_row(DT_Q4_0, x, 40, q), 37);
    x[37] = 0.0f;
    x[3] = NAN;
    assert_int_equal(dt_store_row(DT_Q8_0, x, 40, q), 3);
    x[3] = 1.0f;
    assert_int_equal(dt_store_row(DT_Q8_0, x, 40, q), -1);
    dt_load_row(DT_Q8_0, q, 40, d);
    for (int i = 0; i < 40; i++) /* within half a step of the block's scale */
        assert_true(fabs(d[i] - x[i]) <= 20.5 / 127 / 2 * 1.01);
}

/* --weight-type rules: the last match wins, bad specs are refused, at most
 * MAX_RULES of them, and clearing forgets them. */
static void test_weight_rules(void **state) {
    (void)state;
    char why[256];
    assert_false(dt_add_weight_rule("=q8_0", why, sizeof why));
    assert_string_equal(why, "expected PATTERN=TYPE, got '=q8_0'");
    assert_false(dt_add_weight_rule("*.weight=i32", why, sizeof why));
    assert_non_null(strstr(why, "unknown weight type 'i32' (f32, bf16, f16, q8_0, q4_0)"));
    assert_true(dt_add_weight_rule("*.weight=q8_0", why, sizeof why));
    assert_true(dt_add_weight_rule("*norm*=f32", why, sizeof why));
    const char *pat = NULL;
    assert_int_equal(dt_weight_rule("mlp.up.weight", &pat), DT_Q8_0);
    assert_string_equal(pat, "*.weight");
    assert_int_equal(dt_weight_rule("ln.norm.weight", &pat), DT_F32);
    assert_string_equal(pat, "*norm*");
    assert_int_equal(dt_weight_rule("bias", NULL), -1);
    int n = 2;
    while (dt_add_weight_rule("x=bf16", why, sizeof why))
        n++;
    assert_true(n >= 8);
    char want[64];
    snprintf(want, sizeof want, "more than %d rules", n);
    assert_string_equal(why, want);
    dt_clear_rules();
    assert_int_equal(dt_weight_rule("mlp.up.weight", NULL), -1);
    assert_true(dt_add_weight_rule("x=bf16", why, sizeof why));
    assert_int_equal(dt_weight_rule("x", NULL), DT_BF16);
    dt_clear_rules();
}

static void test_op_table(void **state) {
    (void)state;
    assert_int_equal(op_lookup("rms_norm"), OP_RMS_NORM);
    assert_int_equal(op_lookup("attention"), OP_ATTENTION);
    assert_int_equal(op_lookup("nope"), -1);
    for (int i = 0; i < OP_COUNT; i++) {
        assert_non_null(op_info[i].name);
        assert_true(op_info[i].min_in <= op_info[i].max_in);
        assert_true(op_info[i].max_in <= FU_MAX_IN);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dims),
        cmocka_unit_test(test_dim_limits),
        cmocka_unit_test(test_broadcast_rules),
        cmocka_unit_test(test_matmul_linear_rules),
        cmocka_unit_test(test_shape_ops_and_cache),
        cmocka_unit_test(test_type_rule_reasons),
        cmocka_unit_test(test_print_and_dce),
        cmocka_unit_test(test_print_attributes),
        cmocka_unit_test(test_verifier_catches),
        cmocka_unit_test(test_verifier_reasons),
        cmocka_unit_test(test_op_table),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_weight_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
