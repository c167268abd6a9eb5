/*
 * test_fuse.c - the fusion passes: the kernel table helpers, the rewrites
 * of primitive spellings (checked by running the float64 interpreter on the
 * graph before and after: they must compute the same function), the kernel
 * kinds each pass builds, the refusals and their reasons, and the numbers
 * of --emit=report against hand-computed ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "fusec.h"

/* ---- helpers ------------------------------------------------------------------ */

static Graph *front(const char *text) {
    Graph *g = fe_compile_string("t.fdl", text, NULL);
    assert_non_null(g);
    ir_verify(g, "sema");
    ir_dce(g);
    return g;
}

static Graph *compile(const char *text, int opt_level, unsigned no_fuse) {
    Graph *g = front(text);
    Options o = {opt_level, "generic", no_fuse, false, NULL, true};
    compile_passes(g, &o);
    return g;
}

static int count_op(const Graph *g, Op op) {
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i]->op == op;
    return n;
}

static const Node *find_op(const Graph *g, Op op) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == op)
            return g->nodes[i];
    return NULL;
}

/* "gemm attention gemm mlp" */
static const char *kinds(const Graph *g) {
    static const char *const names[] = {"single", "elementwise", "rowwise", "gemm", "attention", "mlp"};
    static char buf[512];
    buf[0] = 0;
    for (int k = 0; k < g->nkernels; k++) {
        if (k)
            strcat(buf, " ");
        strcat(buf, names[g->kernels[k]->kind]);
    }
    return buf;
}

static bool has_note(const Graph *g, const char *text) {
    for (int i = 0; i < g->nfuse_notes; i++)
        if (strstr(g->fuse_notes[i], text))
            return true;
    return false;
}

/* What a printer writes, as a string. */
static char *capture(void (*fn)(FILE *, const void *), const void *arg) {
    FILE *f = tmpfile();
    assert_non_null(f);
    fn(f, arg);
    long n = ftell(f);
    assert_true(n >= 0);
    char *s = fu_alloc((size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* Deterministic pseudo-random doubles in [-1, 1). */
static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 4503599627370496.0 - 1.0;
}

static double *fill(const Node *n, const int64_t *syms, uint64_t *seed, int64_t rows_override) {
    int64_t e = ir_numel(n, syms);
    if (rows_override > 0) {
        e = rows_override;
        for (int d = 1; d < n->rank; d++)
            e *= dim_eval(n->shape[d], syms);
    }
    double *p = fu_alloc(sizeof *p * (size_t)(e + 1));
    for (int64_t i = 0; i < e; i++)
        p[i] = n->dtype == DT_I32 ? (double)(i % 97) : rnd(seed);
    return p;
}

/* Runs graphs a and b through the interpreter on the same random data and
 * returns the largest difference of their first outputs, relative to its
 * largest magnitude. */
static double interp_diff(const Graph *a, const Graph *b, const int64_t *syms) {
    uint64_t seed = 42;
    int64_t cap = 64;
    assert_int_equal(a->ninputs, b->ninputs);
    assert_int_equal(a->nweights, b->nweights);
    assert_int_equal(a->noutputs, 1); /* the interpreter writes every output */
    assert_int_equal(b->noutputs, 1);
    const double **in = fu_alloc(sizeof *in * (size_t)(a->ninputs + 1));
    const double **w = fu_alloc(sizeof *w * (size_t)(a->nweights + 1));
    double **ca = fu_alloc(sizeof *ca * (size_t)(a->ncaches + 1));
    double **cb = fu_alloc(sizeof *cb * (size_t)(a->ncaches + 1));
    for (int i = 0; i < a->ninputs; i++)
        in[i] = fill(a->inputs[i], syms, &seed, 0);
    for (int i = 0; i < a->nweights; i++)
        w[i] = fill(a->weights[i], syms, &seed, 0);
    for (int i = 0; i < a->ncaches; i++) {
        ca[i] = fill(a->caches[i], syms, &seed, cap);
        int64_t e = cap;
        for (int d = 1; d < a->caches[i]->rank; d++)
            e *= dim_eval(a->caches[i]->shape[d], syms);
        cb[i] = fu_alloc(sizeof *cb[i] * (size_t)e);
        memcpy(cb[i], ca[i], sizeof *cb[i] * (size_t)e);
    }
    int64_t n = ir_numel(a->outputs[0], syms);
    double *oa = fu_alloc(sizeof *oa * (size_t)n), *ob = fu_alloc(sizeof *ob * (size_t)n);
    double *const outa[1] = {oa}, *const outb[1] = {ob};
    InterpArgs A = {syms, in, w, ca, cap, outa}, B = {syms, in, w, cb, cap, outb};
    char err[256];
    assert_int_equal(interp_run(a, &A, err, sizeof err), 0);
    assert_int_equal(interp_run(b, &B, err, sizeof err), 0);
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(oa[i] - ob[i]));
        m = fmax(m, fabs(oa[i]));
    }
    assert_true(m > 0);
    return d / m;
}

/* ---- the kernel table ---------------------------------------------------------- */

static const char chain_src[] =
    "block chain { dim T; input x: f32[T, 8]; weight w: f32[8, 8];\n"
    "  a = exp(x); b = linear(a, w); c = a * 2.0;\n"
    "  output y: f32[T, 8] = b + c; }\n";

static void test_schedule_unfused(void **state) {
    (void)state;
    Graph *g = compile(chain_src, 0, 0);
    /* exp, linear, mul, add: the weight, input and output have none */
    assert_int_equal(g->nkernels, 4);
    assert_string_equal(kinds(g), "single single single single");
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        bool none = op_info[n->op].cat == CAT_SOURCE || n->op == OP_OUTPUT || n->op == OP_RESHAPE;
        assert_int_equal(n->kernel < 0, none);
    }
    assert_int_equal(g->nfuse_notes, 0);
}

static void test_merge_legality(void **state) {
    (void)state;
    Graph *g = compile(chain_src, 0, 0);
    /* kernels: 0 exp, 1 linear, 2 mul, 3 add; exp -> linear -> add and
     * exp -> mul -> add */
    const Node *e = find_op(g, OP_EXP), *l = find_op(g, OP_LINEAR);
    const Node *m = find_op(g, OP_MUL), *ad = find_op(g, OP_ADD);
    assert_true(sched_can_merge(g, e->kernel, m->kernel));
    assert_true(sched_can_merge(g, m->kernel, ad->kernel));
    /* exp and add would have to run before and after the linear */
    assert_false(sched_can_merge(g, e->kernel, ad->kernel));
    int set[3] = {e->kernel, l->kernel, ad->kernel};
    assert_false(sched_can_merge_set(g, set, 3));   /* mul is outside, between them */
    int all[4] = {e->kernel, l->kernel, m->kernel, ad->kernel};
    assert_true(sched_can_merge_set(g, all, 4));
    /* merging keeps execution order and the verifier happy */
    assert_true(sched_try_merge(g, ad->kernel, m->kernel));
    sched_compact(g);
    assert_int_equal(g->nkernels, 3);
    char why[256];
    /* two nodes in a KK_SINGLE kernel: the verifier wants a kind that fits */
    assert_false(ir_check(g, why, sizeof why));
    assert_non_null(strstr(why, "holds"));
    g->kernels[ad->kernel]->kind = KK_ELEMWISE;
    assert_true(ir_check(g, why, sizeof why));
    g->kernels[l->kernel]->kind = KK_ROWWISE;   /* a linear is no row pass */
    assert_false(ir_check(g, why, sizeof why));
    g->kernels[l->kernel]->kind = KK_SINGLE;
    assert_true(e->kernel < l->kernel && l->kernel < ad->kernel && m->kernel == ad->kernel);
}

static void test_pass_names(void **state) {
    (void)state;
    assert_int_equal(fuse_pass_bit("attention"), FUSE_ATTENTION);
    assert_int_equal(fuse_pass_bit("mlp"), FUSE_MLP);
    assert_int_equal(fuse_pass_bit("elementwise"), FUSE_ELEMENTWISE);
    assert_int_equal(fuse_pass_bit("Attention"), 0);
    assert_int_equal(fuse_pass_bit(""), 0);
    Options o = {1, "generic", FUSE_NORM, false, NULL, true};
    assert_false(fuse_enabled(&o, FUSE_NORM));
    assert_true(fuse_enabled(&o, FUSE_MLP));
    o.opt_level = 0;
    assert_false(fuse_enabled(&o, FUSE_MLP));
}

/* ---- rewrites ----------------------------------------------------------------- */

static const char rms_src[] =
    "block rms { dim T; dim D = 12; input x: f32[T, D]; weight w: f32[D];\n"
    "  v = mean(x * x, axis = -1);\n"
    "  output y: f32[T, D] = %s; }\n";

static void check_rms(const char *expr, bool want) {
    char *text = fu_format(rms_src, expr);
    Graph *before = front(text), *after = compile(text, 1, 0);
    assert_int_equal(count_op(after, OP_RMS_NORM), want ? 1 : 0);
    if (want) {
        const Node *n = find_op(after, OP_RMS_NORM);
        assert_true(fabs(n->f[0] - 1e-5) < 1e-12);
        assert_int_equal(count_op(after, OP_MEAN), 0);
        assert_int_equal(count_op(after, OP_CONST), 0);
    }
    int64_t syms[FU_MAX_SYMS] = {5};
    assert_true(interp_diff(before, after, syms) < 1e-12);
}

static void test_rewrite_rms_norm(void **state) {
    (void)state;
    check_rms("x * rsqrt(v + 1e-5) * w", true);
    check_rms("w * (rsqrt(1e-5 + v) * x)", true);
    check_rms("x / sqrt(v + 1e-5) * w", true);
    /* not RMSNorm: the weight is missing, the eps is not positive, the
     * square is of something else */
    check_rms("x * rsqrt(v + 1e-5)", false);
    check_rms("x * rsqrt(v - 1e-5) * w", false);
    check_rms("exp(x) * rsqrt(v + 1e-5) * w", false);
    /* the variance is also an output of its own: its value is needed */
    Graph *g = compile("block r2 { dim T; input x: f32[T, 4]; weight w: f32[4];\n"
                       "  v = mean(x * x, axis = -1);\n"
                       "  output y: f32[T, 4] = x * rsqrt(v + 1e-5) * w;\n"
                       "  output v: f32[T, 1] = v; }\n", 1, 0);
    assert_int_equal(count_op(g, OP_RMS_NORM), 0);
    /* -O0 and --no-fuse=norm keep the primitives */
    assert_int_equal(count_op(compile(fu_format(rms_src, "x * rsqrt(v + 1e-5) * w"), 0, 0), OP_RMS_NORM), 0);
    assert_int_equal(count_op(compile(fu_format(rms_src, "x * rsqrt(v + 1e-5) * w"), 1, FUSE_NORM), OP_RMS_NORM), 0);
}

static void test_rewrite_layer_norm(void **state) {
    (void)state;
    const char *text = "block ln { dim T; dim D = 10; input x: f32[T, D]; weight w: f32[D]; weight b: f32[D];\n"
                       "  c = x - mean(x, axis = -1);\n"
                       "  output y: f32[T, D] = c * rsqrt(mean(c * c, axis = -1) + 1e-5) * w + b; }\n";
    Graph *before = front(text), *after = compile(text, 1, 0);
    assert_int_equal(count_op(after, OP_LAYER_NORM), 1);
    assert_int_equal(count_op(after, OP_RMS_NORM), 0);
    assert_int_equal(count_op(after, OP_MEAN), 0);
    assert_true(has_note(after, "recognised as layer_norm(x, w, b)"));
    int64_t syms[FU_MAX_SYMS] = {6};
    assert_true(interp_diff(before, after, syms) < 1e-12);
    /* the centred x read elsewhere stays: rms_norm of it, plus b */
    Graph *g = compile("block ln2 { dim T; dim D = 10; input x: f32[T, D]; weight w: f32[D]; weight b: f32[D];\n"
                       "  c = x - mean(x, axis = -1);\n"
                       "  output y: f32[T, D] = c * rsqrt(mean(c * c, axis = -1) + 1e-5) * w + b;\n"
                       "  output c: f32[T, D] = c; }\n", 1, 0);
    assert_int_equal(count_op(g, OP_LAYER_NORM), 0);
    assert_int_equal(count_op(g, OP_RMS_NORM), 1);
}

static void test_rewrite_softmax(void **state) {
    (void)state;
    const char *text = "block sm { dim T; input x: f32[T, 9]; z = x * 3.0;\n"
                       "  e = exp(z - max(z, axis = -1));\n"
                       "  output y: f32[T, 9] = e / sum(e, axis = -1); }\n";
    Graph *before = front(text), *after = compile(text, 1, 0);
    assert_int_equal(count_op(after, OP_SOFTMAX), 1);
    assert_int_equal(count_op(after, OP_EXP), 0);
    assert_int_equal(count_op(after, OP_MAX), 0);
    assert_true(has_note(after, "recognised as softmax(z)"));
    int64_t syms[FU_MAX_SYMS] = {4};
    assert_true(interp_diff(before, after, syms) < 1e-12);
    /* the scaling runs inside the softmax's row pass */
    assert_string_equal(kinds(after), "rowwise");
    /* x * 3.0 written twice is two nodes: the max is of another tensor, so
     * the rewrite keeps the subtraction (softmax ignores the shift) */
    text = "block sm3 { dim T; input x: f32[T, 9];\n"
           "  e = exp(x * 3.0 - max(x * 3.0, axis = -1));\n"
           "  output y: f32[T, 9] = e / sum(e, axis = -1); }\n";
    before = front(text);
    after = compile(text, 1, 0);
    assert_int_equal(count_op(after, OP_SOFTMAX), 1);
    assert_int_equal(count_op(after, OP_MAX), 1);
    assert_true(interp_diff(before, after, syms) < 1e-12);
    /* e read elsewhere: no rewrite */
    Graph *g = compile("block sm2 { dim T; input x: f32[T, 9]; e = exp(x);\n"
                       "  output y: f32[T, 9] = e / sum(e, axis = -1);\n"
                       "  output e: f32[T, 9] = e; }\n", 1, 0);
    assert_int_equal(count_op(g, OP_SOFTMAX), 0);
}

/* Attention from primitives; %s are the head split of q, the key and value
 * views, and the score scaling. */
static const char attn_src[] =
    "block at { dim T, P; dim H = 6, KVH = 2, HD = 4; dim G = H / KVH; dim S = P + T;\n"
    "  input q: f32[T, H * HD]; input kn: f32[T, KVH * HD]; input vn: f32[T, KVH * HD];\n"
    "  cache kc: f32[P, KVH * HD]; cache vc: f32[P, KVH * HD];\n"
    "  keys = append(kc, kn); values = append(vc, vn);\n"
    "  qh = %s;\n"
    "  kt = %s;\n"
    "  vh = reshape(transpose(reshape(values, [S, KVH, HD]), [1, 0, 2]), [KVH, 1, S, HD]);\n"
    "  probs = softmax(%s);\n"
    "  ctx = matmul(probs, vh);\n"
    "  output o: f32[T, H * HD] = reshape(transpose(ctx, [2, 0, 1, 3]), [T, H * HD]); }\n";

static const char *const q_ok = "transpose(reshape(q, [T, KVH, G, HD]), [1, 2, 0, 3])";
static const char *const k_ok = "reshape(transpose(reshape(keys, [S, KVH, HD]), [1, 2, 0]), [KVH, 1, HD, S])";

static Graph *attention_case(const char *qh, const char *kt, const char *scores, double *diff) {
    char *text = fu_format(attn_src, qh, kt, scores);
    Graph *before = front(text), *after = compile(text, 1, 0);
    int64_t syms[FU_MAX_SYMS] = {5, 3};
    *diff = interp_diff(before, after, syms);
    return after;
}

static void test_rewrite_attention(void **state) {
    (void)state;
    double d;
    Graph *g = attention_case(q_ok, k_ok, "causal_mask(matmul(qh, kt) * rsqrt(HD))", &d);
    assert_true(d < 1e-12);
    const Node *a = find_op(g, OP_ATTENTION);
    assert_non_null(a);
    assert_int_equal(a->i[0], 6);
    assert_int_equal(a->i[1], 2);
    assert_int_equal(a->i[2], 4);
    assert_int_equal(a->i[3], 1);
    assert_true(fabs(a->f[0] - 0.5) < 1e-12);
    assert_int_equal(count_op(g, OP_MATMUL), 0);
    assert_int_equal(count_op(g, OP_SOFTMAX), 0);
    assert_string_equal(kinds(g), "attention");
    /* mask before the scale, scale as a division, no mask at all */
    g = attention_case(q_ok, k_ok, "causal_mask(matmul(qh, kt)) / 3.0", &d);
    assert_true(d < 1e-12);
    assert_true(fabs(find_op(g, OP_ATTENTION)->f[0] - 1.0 / 3.0) < 1e-12);
    g = attention_case(q_ok, k_ok, "matmul(qh, kt)", &d);
    assert_true(d < 1e-12);
    assert_int_equal(find_op(g, OP_ATTENTION)->i[3], 0);
    /* keys transposed by the matmul's own layout: k as [KVH, 1, S, HD] */
    g = attention_case(q_ok, "transpose(reshape(transpose(reshape(keys, [S, KVH, HD]), [1, 0, 2]), [KVH, 1, S, HD]), [0, 1, 3, 2])",
                       "matmul(qh, kt)", &d);
    assert_true(d < 1e-12);
    assert_int_equal(count_op(g, OP_ATTENTION), 1);
    /* heads split the other way round: query head j uses kv head j % KVH,
     * which is not what attention's grouping (j / G) does: refused */
    g = attention_case("transpose(reshape(q, [T, G, KVH, HD]), [2, 1, 0, 3])", k_ok, "matmul(qh, kt)", &d);
    assert_true(d < 1e-12);
    assert_int_equal(count_op(g, OP_ATTENTION), 0);
    assert_true(has_note(g, "the output puts a head where q did not take it from") ||
                has_note(g, "k and v do not give each query head its kv head"));
    /* a scale that is not a positive constant */
    g = attention_case(q_ok, k_ok, "matmul(qh, kt) * -2.0", &d);
    assert_int_equal(count_op(g, OP_ATTENTION), 0);
    assert_true(has_note(g, "not positive"));
}

/* ---- fusion ------------------------------------------------------------------------ */

static void test_llama_kinds(void **state) {
    (void)state;
    Options o = {1, "generic", 0, false, NULL, true};
    Graph *g = compile_pipeline("dsl-examples/llama_layer.fdl", NULL, &o);
    assert_non_null(g);
    assert_string_equal(kinds(g), "gemm attention gemm mlp");
    /* the norm is inside the q/k/v GEMM; rope, appends inside attention */
    const Node *n = find_op(g, OP_RMS_NORM);
    assert_int_equal(n->kernel, 0);
    assert_int_equal(find_op(g, OP_ROPE)->kernel, 1);
    assert_int_equal(find_op(g, OP_APPEND)->kernel, 1);
    Options p = {1, "generic", FUSE_MLP | FUSE_ATTENTION, false, NULL, true};
    g = compile_pipeline("dsl-examples/llama_layer.fdl", NULL, &p);
    /* without attention fusion the ropes are projection epilogues */
    assert_string_equal(kinds(g), "gemm single single single gemm gemm gemm");
    assert_int_equal(find_op(g, OP_ROPE)->kernel, 0);
    Options z = {0, "generic", 0, false, NULL, false};
    g = compile_pipeline("dsl-examples/llama_layer_prim.fdl", NULL, &z);
    assert_int_equal(g->nkernels, 36);
}

static void test_elementwise_and_consumers(void **state) {
    (void)state;
    Graph *g = compile("block ew { dim T; input x: f32[T, 5]; input b: f32[5]; input s: f32[T, 1];\n"
                       "  a = exp(x) + b; c = a * s; d = tanh(c) - 1.0;\n"
                       "  output d: f32[T, 5] = d; output a: f32[T, 5] = a; }\n", 1, 0);
    assert_string_equal(kinds(g), "elementwise");
    assert_int_equal(g->kernels[0]->nnodes, 5);
    assert_true(has_note(g, "a is stored although its loop also consumes it: it is a block output"));
    /* different shapes: separate loops */
    g = compile("block ew2 { dim T; input x: f32[T, 5];\n"
                "  m = exp(mean(exp(x), axis = -1)); output y: f32[T, 5] = x * m; }\n", 1, 0);
    assert_string_equal(kinds(g), "single single single single");
    assert_true(has_note(g, "have different shapes: separate loops"));
    /* -O0 and --no-fuse=elementwise */
    g = compile("block ew3 { dim T; input x: f32[T, 5]; output y: f32[T, 5] = exp(x) * 2.0; }\n", 1,
                FUSE_ELEMENTWISE);
    assert_string_equal(kinds(g), "single single");
    /* stored for an outside consumer: recomputing exp(x) there reads T*5
     * elements (5120 at 1024 per symbol) against storing and reading it
     * again (10240); recomputing x + z reads two operands (10240): no note */
    g = compile("block rc { dim T; input x: f32[T, 5]; input z: f32[T, 5];\n"
                "  a = exp(x); b = a * 2.0; output y: f32[T, 5] = b; output s: f32[T, 1] = sum(a);\n"
                "  c = x + z; d = c * 3.0; output e: f32[T, 5] = d; output f: f32[T, 1] = max(c); }\n",
                1, 0);
    assert_string_equal(kinds(g), "elementwise single elementwise single");
    assert_true(has_note(g, "elementwise: a is stored although its loop also consumes it: a has 2 consumers"));
    assert_true(has_note(g, "elementwise: recomputing a (exp) in its other consumer would move fewer bytes "
                            "than storing it (5.12e+03 vs 1.02e+04 elements at 1024 per symbol)"));
    assert_true(has_note(g, "elementwise: c is stored although its loop also consumes it"));
    assert_false(has_note(g, "recomputing c"));
    /* a -> sum -> mul and a -> mul: a in mul's loop would need sum before and after it */
    g = compile("block cj { dim T; input x: f32[T, 5]; a = exp(x); output y: f32[T, 5] = a * sum(a); }\n", 1, 0);
    assert_string_equal(kinds(g), "single single single");
    assert_true(has_note(g, "elementwise: a cannot join %3's loop (a path between them runs through another kernel)"));
}

static void test_rowwise(void **state) {
    (void)state;
    Graph *g = compile("block rw { dim T; dim N = 7; input x: f32[T, N]; input y: f32[T, N];\n"
                       "  weight w: f32[N]; weight b: f32[N];\n"
                       "  r = x + y;\n"
                       "  output o: f32[T, N] = layer_norm(r, w, b, eps = 1e-5) * 2.0;\n"
                       "  output p: f32[T, N] = softmax(causal_mask(r * 0.5)) + r; }\n", 1, 0);
    /* r feeds both rows passes; one of them computes and stores it */
    assert_string_equal(kinds(g), "rowwise rowwise");
    const Node *ln = find_op(g, OP_LAYER_NORM), *sm = find_op(g, OP_SOFTMAX);
    assert_true(ln->kernel != sm->kernel);
    assert_int_equal(find_op(g, OP_CAUSAL_MASK)->kernel, sm->kernel);
    assert_true(has_note(g, "r joins"));
}

static void test_refusals(void **state) {
    (void)state;
    const char *text = "block rf { dim T; dim D = 8, F = 12; input x: f32[T, D];\n"
                       "  weight w: f32[D]; weight w1: f32[F, D]; weight w2: f32[D, F];\n"
                       "  h = rms_norm(x, w, eps = 1e-5); u = silu(linear(h, w1));\n"
                       "  output y: f32[T, D] = linear(u, w2); output u: f32[T, F] = u;\n"
                       "  output z: f32[T, D] = h * 2.0; }\n";
    Graph *g = compile(text, 1, 0);
    assert_true(has_note(g, "mlp: u is not fused into one MLP kernel with"));
    assert_true(has_note(g, "u has 2 consumers"));
    assert_true(has_note(g, "norm: h is read by"));
    assert_int_equal(count_op(g, OP_RMS_NORM), 1);
    assert_int_equal(g->kernels[find_op(g, OP_RMS_NORM)->kernel]->kind, KK_ROWWISE);
}

/* Near misses of the attention rewrite: refused with the reason, and the
 * graph still computes what it did. */
static void test_attention_refusals(void **state) {
    (void)state;
    double d;
    Graph *g = attention_case(q_ok, k_ok, "exp(matmul(qh, kt))", &d);
    assert_true(d < 1e-12);
    assert_int_equal(count_op(g, OP_ATTENTION), 0);
    assert_true(has_note(g, "attention: the softmax(q k^T) v at ctx is not rewritten: the softmax does not "
                            "read q k^T (through scale and mask)"));
    /* keys split [S, HD, KVH]: a head's columns are not contiguous */
    g = attention_case(q_ok, "reshape(transpose(reshape(keys, [S, HD, KVH]), [2, 1, 0]), [KVH, 1, HD, S])",
                       "matmul(qh, kt)", &d);
    assert_true(d < 1e-12);
    assert_int_equal(count_op(g, OP_ATTENTION), 0);
    assert_true(has_note(g, "q, k or v does not have tokens as rows and head_dim as columns"));
}

/* Attention from primitives outside attn_src's mould: refused with the
 * reason (and the graph computes what it did), or, with heads split from
 * a [T, H*hd] input and put back, recognised.  One output each
 * (interp_diff compares the first). */
static void test_attention_refusals_more(void **state) {
    (void)state;
    static const struct {
        const char *text, *note;
    } cases[] = {
        {"block a2 { dim T; input q: f32[T, 4]; input k: f32[T, 4]; input v: f32[T, 4];\n"
         "  s = matmul(q, transpose(k)); p = softmax(s);\n"
         "  output o: f32[T, 4] = matmul(p, v) * sum(s, axis = -1); }\n",
         "not rewritten: s has 2 consumers"},
        {"block a3 { dim T; input q: f32[2, T, 4]; input k: f32[2, T, 4]; input v: f32[2, T, 4];\n"
         "  p = softmax(matmul(q, transpose(k, [0, 2, 1]))); output o: f32[2, T, 4] = matmul(p, v); }\n",
         "not rewritten: q, k or v is not a reshape/transpose view of a [rows, heads*head_dim] tensor"},
        {"block a4 { dim T; input q: f32[T, 8]; input k: f32[T, 4]; input v: f32[T, 4];\n"
         "  qh = transpose(reshape(q, [T, 2, 4]), [1, 0, 2]); kt = reshape(transpose(k), [1, 4, T]);\n"
         "  vh = reshape(v, [1, T, 4]); output o: f32[2, T, 4] = matmul(softmax(matmul(qh, kt)), vh); }\n",
         "not rewritten: the context is not reshaped back to [tokens, heads*head_dim]"},
        {"block a5 { dim T; input q: f32[T, 8]; input k: f32[T, 4]; input v: f32[T, 4];\n"
         "  qh = transpose(reshape(q, [T, 2, 4]), [1, 0, 2]); kt = reshape(transpose(k), [1, 4, T]);\n"
         "  vh = reshape(v, [1, T, 4]); c = matmul(softmax(matmul(qh, kt)), vh);\n"
         "  output o: f32[T, 8] = reshape(c, [T, 8]); }\n",
         "not rewritten: the output reshape is not a view of the result"},
        {"block a6 { dim T; input q: f32[T, 8]; input k: f32[T, 4]; input v: f32[T, 4];\n"
         "  qh = transpose(reshape(q, [T, 2, 4]), [1, 0, 2]); kt = reshape(transpose(k), [1, 4, T]);\n"
         "  vh = reshape(v, [1, T, 4]); c = matmul(softmax(matmul(qh, kt)), vh);\n"
         "  output o: f32[T, 8] = reshape(transpose(c, [1, 0, 2]), [T, 8]); }\n",
         "recognised as attention(q, k, v, heads=2, kv_heads=1, head_dim=4)"},
    };
    int64_t syms[FU_MAX_SYMS] = {5};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Graph *before = front(cases[i].text), *after = compile(cases[i].text, 1, 0);
        if (!has_note(after, cases[i].note))
            fail_msg("case %zu: no note \"%s\"", i, cases[i].note);
        assert_int_equal(count_op(after, OP_ATTENTION), i == 4);
        assert_true(interp_diff(before, after, syms) < 1e-12);
    }
}

/* What the attention kernel takes in: column slices of a fused projection
 * (read in place) and a rope on one; an append whose cache something
 * else reads on the way to the other append stays out (a cycle). */
static void test_attention_kernel_parts(void **state) {
    (void)state;
    const char *c5 = "block c5 { dim T; input x: f32[T, 4]; input pos: i32[T]; weight w: f32[12, 4];\n"
                     "  qkv = linear(x, w); q = rope(slice(qkv, axis = 1, start = 0, len = 4), pos, head_dim = 4);\n"
                     "  output o: f32[T, 4] = attention(q, slice(qkv, axis = 1, start = 4, len = 4),\n"
                     "                                  slice(qkv, axis = 1, start = 8, len = 4), heads = 1, kv_heads = 1); }\n";
    int64_t syms[FU_MAX_SYMS] = {5, 3};
    Graph *g = compile(c5, 1, 0);
    const Node *at = find_op(g, OP_ATTENTION);
    const Kernel *k = g->kernels[at->kernel];
    assert_int_equal(k->kind, KK_ATTENTION);
    assert_int_equal(k->nnodes, 5); /* three slices, the rope, the attention */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OP_SLICE || g->nodes[i]->op == OP_ROPE)
            assert_int_equal(g->nodes[i]->kernel, at->kernel);
    assert_non_null(strstr(k->note, "rope q, slice %4, slice %6, slice %7"));
    assert_true(interp_diff(front(c5), g, syms) < 1e-12);
    const char *c6 = "block c6 { dim T, P; input xk: f32[T, 4]; input xv: f32[T, 4]; input q: f32[T, 4];\n"
                     "  cache kc: f32[P, 4]; cache vc: f32[P, 4];\n"
                     "  k = append(kc, xk); v = append(vc, xv * max(k, axis = 0));\n"
                     "  output o: f32[T, 4] = attention(q, k, v, heads = 1, kv_heads = 1); }\n";
    g = compile(c6, 1, 0);
    at = find_op(g, OP_ATTENTION);
    assert_int_equal(g->kernels[at->kernel]->nnodes, 1);
    assert_true(has_note(g, "attention: v stays out of the attention kernel (a path runs through another kernel)"));
    assert_true(has_note(g, "attention: k stays out of the attention kernel (a path runs through another kernel)"));
    assert_true(interp_diff(front(c6), g, syms) < 1e-12);
}

/* A rope that something else reads stays out of the attention kernel. */
static void test_attention_rope_kept_out(void **state) {
    (void)state;
    Graph *g = compile("block ar { dim T, P; dim HD = 4;\n"
                       "  input x: f32[T, 8]; input pos: i32[T];\n"
                       "  weight wq: f32[8, 8]; weight wk: f32[4, 8]; weight wv: f32[4, 8];\n"
                       "  cache kc: f32[P, 4]; cache vc: f32[P, 4];\n"
                       "  q = rope(linear(x, wq), pos, head_dim = HD); kr = rope(linear(x, wk), pos, head_dim = HD);\n"
                       "  k = append(kc, kr); v = append(vc, linear(x, wv));\n"
                       "  output y: f32[T, 8] = attention(q, k, v, heads = 2, kv_heads = 1, causal = true);\n"
                       "  output q2: f32[T, 8] = q * 2.0; output k2: f32[T, 4] = kr * 2.0; }\n",
                       1, 0);
    const Node *at = find_op(g, OP_ATTENTION);
    assert_int_equal(g->kernels[at->kernel]->kind, KK_ATTENTION);
    assert_true(has_note(g, "attention: rope q is not applied inside the attention kernel: q has 2 consumers"));
    assert_true(has_note(g, "attention: rope kr is not applied inside the attention kernel: kr has 2 consumers"));
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OP_ROPE)
            assert_true(g->nodes[i]->kernel != at->kernel);
}

/* ---- explain, report, dot ------------------------------------------------------------ */

typedef struct Pair {
    const Graph *g, *u;
    const int64_t *syms;
} Pair;

static void explain_fn(FILE *f, const void *arg) {
    const Pair *p = arg;
    explain_print(f, p->g, p->u);
}

static void report_fn(FILE *f, const void *arg) {
    const Pair *p = arg;
    Machine m = cost_defaults(target_find("generic"));
    report_print(f, p->g, p->u, p->syms, &m);
}

static void dot_fn(FILE *f, const void *arg) {
    const Pair *p = arg;
    dot_print(f, p->u, p->g);
}

static void test_explain(void **state) {
    (void)state;
    Options o = {1, "generic", 0, false, NULL, true}, z = {0, "generic", 0, false, NULL, false};
    Graph *g = compile_pipeline("dsl-examples/llama_layer_prim.fdl", NULL, &o);
    Graph *u = compile_pipeline("dsl-examples/llama_layer_prim.fdl", NULL, &z);
    Pair p = {g, u, NULL};
    char *s = capture(explain_fn, &p);
    assert_non_null(strstr(s, "block llama_layer_prim: 4 kernels (unfused: 36)"));
    assert_non_null(strstr(s, "kernel 1: attention [rope, rope, append, append, attention]"));
    assert_non_null(strstr(s, "kernel 3: mlp [rms_norm, linear, silu, linear, mul, linear, add]"));
    assert_non_null(strstr(s, "recognised as attention(q, keys, values, heads=8, kv_heads=2, head_dim=32)"));
    char *d = capture(dot_fn, &p);
    assert_non_null(strstr(d, "digraph \"llama_layer_prim\""));
    assert_non_null(strstr(d, "label=\"kernel 1: attention\""));
    assert_non_null(strstr(d, "before fusion: llama_layer_prim, 36 kernels"));
}

/* y = exp(x) * 2 + x on x [T, 4]: unfused, exp reads and writes 16T bytes,
 * mul the same, add reads 32T and writes 16T; fused, one loop reads x and
 * writes y.  3 FLOPs per element either way. */
static void test_report_numbers(void **state) {
    (void)state;
    const char *text = "block rp { dim T; input x: f32[T, 4]; output y: f32[T, 4] = exp(x) * 2.0 + x; }\n";
    Graph *g = compile(text, 1, 0), *u = compile(text, 0, 0);
    int64_t syms[FU_MAX_SYMS] = {3};
    Pair p = {g, u, syms};
    char *s = capture(report_fn, &p);
    /* kernel 0: 36 FLOPs, reads 48 bytes, writes 48 */
    assert_non_null(strstr(s, "elementwise"));
    char kind[32];
    double fl, rd, wr, in;
    const char *row = strstr(s, "\n0 ");
    assert_non_null(row);
    assert_int_equal(sscanf(row, " 0 %31s %lf %lf %lf %lf", kind, &fl, &rd, &wr, &in), 5);
    assert_string_equal(kind, "elementwise");
    assert_true(fl == 36 && rd == 48 && wr == 48);
    const char *f = strstr(s, "\nfused ");
    const char *un = strstr(s, "\nunfused ");
    assert_non_null(f);
    assert_non_null(un);
    double k1, k2, t1, t2;
    assert_int_equal(sscanf(f, " fused %lf %lf %lf %lf %lf", &k1, &fl, &rd, &wr, &t1), 5);
    assert_true(k1 == 1 && t1 == 96);
    assert_int_equal(sscanf(un, " unfused %lf %lf %lf %lf %lf", &k2, &fl, &rd, &wr, &t2), 5);
    /* 48+48 + 48+48 + 96+48 */
    assert_true(k2 == 3 && fl == 36 && rd == 192 && wr == 144 && t2 == 336);
    assert_non_null(strstr(s, "saved: 240 bytes"));
}

/* Attention's FLOPs and traffic at T = 2 after P = 3 cached rows, one head
 * of 4: the causal pairs are (3 + 1) + (3 + 2) = 9, each (4*4 + 5) FLOPs;
 * it reads q (2x4), both caches through the appends (5x4 each) and writes
 * the output (2x4) and the new cache rows (2x4 each). */
/* The FLOPs and bytes of each row op at T = 2 (8 elements of x), by hand:
 * sum reads its 8 inputs; rms_norm 4 per element, layer_norm 7, softmax 5,
 * causal_mask 1, rope 3; reads: x 32 bytes, w and b 16 each, pos 8. */
static void test_report_row_ops(void **state) {
    (void)state;
    const char *text = "block rq { dim T; input x: f32[T, 4]; input pos: i32[T]; weight w: f32[4]; weight b: f32[4];\n"
                       "  output s: f32[T, 1] = sum(x); output r: f32[T, 4] = rms_norm(x, w);\n"
                       "  output l: f32[T, 4] = layer_norm(x, w, b);\n"
                       "  output m: f32[T, 2, 2] = softmax(causal_mask(reshape(x, [T, 2, 2])));\n"
                       "  output p: f32[T, 4] = rope(x, pos, head_dim = 2); }\n";
    Graph *g = compile(text, 0, 0), *u = compile(text, 0, 0);
    int64_t syms[FU_MAX_SYMS] = {2};
    Pair p = {g, u, syms};
    char *s = capture(report_fn, &p);
    static const struct {
        const char *op;
        double flops, rd, wr;
    } want[] = {{"sum", 8, 32, 8},          {"rms_norm", 32, 48, 32}, {"layer_norm", 56, 64, 32},
                {"causal_mask", 8, 32, 32}, {"softmax", 40, 32, 32},  {"rope", 24, 40, 32}};
    for (int k = 0; k < 6; k++) {
        char head[16], kind[32], op[32];
        snprintf(head, sizeof head, "\n%d ", k);
        const char *row = strstr(s, head);
        assert_non_null(row);
        double fl, rd, wr, in;
        assert_int_equal(sscanf(row, " %*d %31s %lf %lf %lf %lf %*f ms %31s", kind, &fl, &rd, &wr, &in, op), 6);
        assert_string_equal(op, want[k].op);
        if (fl != want[k].flops || rd != want[k].rd || wr != want[k].wr)
            fail_msg("%s: %g FLOPs, %g read, %g written", op, fl, rd, wr);
    }
    assert_non_null(strstr(s, "\nunfused         6              168              248              168"));
}

static void test_report_attention(void **state) {
    (void)state;
    const char *text = "block ra { dim T, P; input q: f32[T, 4]; input k: f32[T, 4]; input v: f32[T, 4];\n"
                       "  cache kc: f32[P, 4]; cache vc: f32[P, 4];\n"
                       "  output o: f32[T, 4] = attention(q, append(kc, k), append(vc, v), heads = 1, causal = true); }\n";
    Graph *g = compile(text, 1, 0);
    assert_string_equal(kinds(g), "attention");
    int64_t syms[FU_MAX_SYMS] = {2, 3};
    Pair p = {g, NULL, syms};
    char *s = capture(report_fn, &p);
    char kind[32];
    double fl, rd, wr, in;
    const char *row = strstr(s, "\n0 ");
    assert_non_null(row);
    assert_int_equal(sscanf(row, " 0 %31s %lf %lf %lf %lf", kind, &fl, &rd, &wr, &in), 5);
    assert_true(fl == 9 * 21);
    /* q, k and v new rows read by the appends (3 x 32), both caches (2 x 80) */
    assert_true(rd == 3 * 32 + 2 * 80);
    assert_true(wr == 32 + 2 * 32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_unfused),
        cmocka_unit_test(test_merge_legality),
        cmocka_unit_test(test_pass_names),
        cmocka_unit_test(test_rewrite_rms_norm),
        cmocka_unit_test(test_rewrite_layer_norm),
        cmocka_unit_test(test_rewrite_softmax),
        cmocka_unit_test(test_rewrite_attention),
        cmocka_unit_test(test_attention_refusals),
        cmocka_unit_test(test_attention_refusals_more),
        cmocka_unit_test(test_attention_kernel_parts),
        cmocka_unit_test(test_attention_rope_kept_out),
        cmocka_unit_test(test_llama_kinds),
        cmocka_unit_test(test_elementwise_and_consumers),
        cmocka_unit_test(test_rowwise),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_report_numbers),
        cmocka_unit_test(test_report_row_ops),
        cmocka_unit_test(test_report_attention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
