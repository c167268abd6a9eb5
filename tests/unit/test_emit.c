/*
 * test_emit.c - the C emitter, checked by running what it writes.
 *
 * Every test builds a small graph by hand (or compiles a dsl-example), emits
 * it into a temporary directory, compiles the C with the strict flags users
 * compile it with (-Werror -Wpedantic and friends), links it with a small
 * driver and the runtime, runs it, and compares every output (and the
 * caches' final contents) with the float64 interpreter on the same data.
 * The driver talks to the block only through NAME_desc, so the generic
 * trampolines are tested on the way.  It also fills the workspace and the
 * outputs with NaN before each call and checks canary bytes after them, so a
 * kernel that reads a slot before writing it, or writes past its end, fails.
 *
 * The driver and its file protocol are in blockrun.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "blockrun.h"
#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];

/* ---- processes and files ------------------------------------------------- */

static const char *tmp_path(const char *name) {
    return fu_format("%s/%s", tmpdir, name);
}

static char *slurp(const char *path, size_t *len) {
    char *s = fu_read_file(path, len);
    assert_non_null(s);
    return s;
}

/* Set by the tests that pin the generic target's text (reset by
 * generic_teardown, also when such a test fails). */
static bool generic_only;

static int generic_teardown(void **state) {
    (void)state;
    generic_only = false;
    return 0;
}

/* The target every test runs on: FUSEC_TEST_TARGET (tests/targets/run.sh
 * runs every test on each target), else generic. */
static const Target *test_target(void) {
    const char *tn = generic_only ? NULL : getenv("FUSEC_TEST_TARGET");
    const Target *t = target_find(tn && *tn ? tn : "generic");
    assert_non_null(t);
    return t;
}

/* Emits g as tmpdir/NAME.c and .h; returns emit_c's result. */
static int emit_files(const Graph *g) {
    FILE *c = fopen(tmp_path(fu_format("%s.c", g->name)), "w");
    FILE *h = fopen(tmp_path(fu_format("%s.h", g->name)), "w");
    assert_non_null(c);
    assert_non_null(h);
    int rc = emit_c(g, test_target(), c, h, fu_format("%s.h", g->name));
    assert_int_equal(fclose(c), 0);
    assert_int_equal(fclose(h), 0);
    return rc;
}

/* Compiles the emitted block with the driver under -Werror; returns the
 * program's path (the test is skipped where the CPU lacks the target's
 * features: it only compiles). */
static const char *build_block(const Graph *g, BrRun *run) {
    *run = br_how_to_run(test_target());
    const char *prog = br_build(tmpdir, g->name, g->name, test_target(), *run);
    if (!prog)
        br_skip_compile_only(test_target());
    return prog;
}

/* ---- graphs -------------------------------------------------------------- */

static const SrcLoc noloc = {NULL, 0, 0, 1};

static Node *infer(Graph *g, Node *n) {
    char why[256];
    if (!ir_infer(n, g, why, sizeof why))
        fail_msg("ir_infer(%s): %s", op_info[n->op].name, why);
    return n;
}

/* An interface source (input, weight, cache) of the given type. */
static Node *src(Graph *g, Op op, const char *name, DType dt, int rank, ...) {
    Node *n = ir_node(g, op, 0, NULL, noloc);
    va_list ap;
    n->name = name;
    n->dtype = dt;
    n->rank = rank;
    va_start(ap, rank);
    for (int d = 0; d < rank; d++)
        n->shape[d] = va_arg(ap, Dim);
    va_end(ap);
    if (op == OP_CACHE)
        for (int s = 0; s < FU_MAX_SYMS; s++)
            if (n->shape[0].k[s])
                g->cache_sym = s;
    return infer(g, n);
}

static Node *cst(Graph *g, double v) {
    Node *n = ir_node(g, OP_CONST, 0, NULL, noloc);
    n->f[0] = v;
    n->dtype = DT_F32;
    return infer(g, n);
}

/* An op node; attributes are set by the caller, who then calls infer. */
static Node *mk(Graph *g, Op op, Node *a, Node *b, Node *c) {
    Node *in[3] = {a, b, c};
    return ir_node(g, op, c ? 3 : b ? 2 : a ? 1 : 0, in, noloc);
}

static Node *op1(Graph *g, Op op, Node *a) { return infer(g, mk(g, op, a, NULL, NULL)); }
static Node *op2(Graph *g, Op op, Node *a, Node *b) { return infer(g, mk(g, op, a, b, NULL)); }

static Node *out(Graph *g, const char *name, Node *x) {
    Node *n = mk(g, OP_OUTPUT, x, NULL, NULL);
    n->name = name;
    return infer(g, n);
}

static Dim C(int64_t c) { return dim_const(c); }
static Dim S(int s) { return dim_sym(s); }

/* ---- data ------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double *rand_data(int64_t n, double lo, double hi, bool integer) {
    return br_rand_data(&rng, n, lo, hi, integer);
}

#define MAX_CALLS 4
#define MAX_T 16

/* One test run: symbols per call, data (NULL: random), expectations. */
typedef struct Spec {
    int ncalls;
    int64_t syms[MAX_CALLS][FU_MAX_SYMS];
    int64_t capacity;
    double lo, hi;                  /* random range for f32 data */
    double *w[MAX_T];               /* weights, g->weights order */
    double *in[MAX_CALLS][MAX_T];   /* inputs per call, g->inputs order */
    double *cache0[MAX_T];          /* initial cache rows (capacity of them) */
    int expect_rc[MAX_CALLS];
    double tol;                     /* bound on the relative L2 error per output */
    const Graph *ref;               /* the graph the interpreter runs (NULL: the same) */
    bool keep_schedule;             /* the test scheduled g itself */
    bool expect_mismatch;           /* the negative control: some output must differ */
    double worst;                   /* out: the largest relative L2 error seen */
    double *got[MAX_CALLS][MAX_T];  /* out: C's outputs per call */
} Spec;

static int64_t cache_row(const Node *c) {
    int64_t r = 1;
    for (int d = 1; d < c->rank; d++)
        r *= c->shape[d].c;
    return r;
}

/* The relative L2 error of C's float results against the interpreter's
 * doubles.  Infinities and NaNs must match exactly (else the error is
 * infinite); *maxabs gets the largest absolute difference of the rest. */
static double rel_err(const double *got, const double *ref, int64_t n, double *maxabs) {
    double num = 0, den = 0;
    *maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) || isinf(ref[i]) || isnan(got[i]) || isinf(got[i])) {
            if (isnan(ref[i]) ? !isnan(got[i]) : got[i] != ref[i])
                return INFINITY;
            continue;
        }
        double d = fabs(got[i] - ref[i]);
        num += d * d;
        den += ref[i] * ref[i];
        *maxabs = d > *maxabs ? d : *maxabs;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double expect_close(const char *what, const double *got, const double *ref, int64_t n,
                           double tol) {
    double maxabs, rel = rel_err(got, ref, n, &maxabs);
    if (!(rel <= tol)) {
        for (int64_t i = 0; i < n; i++)
            if (!(fabs(got[i] - ref[i]) <= 10 * tol * (1 + fabs(ref[i])))) {
                print_error("%s[%lld]: got %.9g, reference %.9g\n", what, (long long)i, got[i],
                            ref[i]);
                break;
            }
        fail_msg("%s: relative L2 error %.3g (max abs %.3g) exceeds %.3g", what, rel, maxabs, tol);
    }
    return rel;
}

/* Emits, compiles and runs g on sp's calls; checks every result (and the
 * caches at the end) against interp_run on the same data. */
static void run_and_compare(Graph *g, Spec *sp) {
    Options o = {0, "generic", 0, false, NULL, false};
    int64_t cap = sp->capacity;
    if (sp->tol == 0)
        sp->tol = 1e-5;
    if (sp->hi == sp->lo)
        sp->lo = -1, sp->hi = 1;
    if (sp->ncalls == 0)
        sp->ncalls = 1;
    ir_recount(g);
    ir_verify(g, "test");
    if (!sp->keep_schedule)
        pass_schedule(g, &o);
    ir_verify(g, "schedule");
    assert_int_equal(emit_files(g), 0);
    BrRun run;
    const char *prog = build_block(g, &run);

    /* data */
    int64_t zero[FU_MAX_SYMS] = {0};
    double **cref = fu_alloc(sizeof *cref * (size_t)(g->ncaches + 1));
    for (int i = 0; i < g->nweights; i++)
        if (!sp->w[i])
            sp->w[i] = rand_data(ir_numel(g->weights[i], zero), sp->lo, sp->hi,
                                 g->weights[i]->dtype == DT_I32);
    for (int i = 0; i < g->ncaches; i++) {
        int64_t n = cap * cache_row(g->caches[i]);
        if (!sp->cache0[i])
            sp->cache0[i] = rand_data(n, sp->lo, sp->hi, false);
        cref[i] = fu_alloc(sizeof(double) * (size_t)(n + 1));
        memcpy(cref[i], sp->cache0[i], sizeof(double) * (size_t)n);
    }
    for (int c = 0; c < sp->ncalls; c++)
        for (int i = 0; i < g->ninputs; i++)
            if (!sp->in[c][i])
                sp->in[c][i] = rand_data(ir_numel(g->inputs[i], sp->syms[c]),
                                         g->inputs[i]->dtype == DT_I32 ? 0 : sp->lo,
                                         g->inputs[i]->dtype == DT_I32 ? 100 : sp->hi,
                                         g->inputs[i]->dtype == DT_I32);

    FILE *f = fopen(tmp_path("in.bin"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(&cap, 8, 1, f), 1);
    for (int i = 0; i < g->ncaches; i++)
        br_put(f, sp->cache0[i], cap * cache_row(g->caches[i]), DT_F32);
    for (int i = 0; i < g->nweights; i++)
        br_put(f, sp->w[i], ir_numel(g->weights[i], zero), g->weights[i]->dtype);
    int64_t nc = sp->ncalls;
    assert_int_equal(fwrite(&nc, 8, 1, f), 1);
    for (int c = 0; c < sp->ncalls; c++) {
        if (g->nsyms)
            assert_int_equal(fwrite(sp->syms[c], 8, (size_t)g->nsyms, f), (size_t)g->nsyms);
        for (int i = 0; i < g->ninputs; i++)
            br_put(f, sp->in[c][i], ir_numel(g->inputs[i], sp->syms[c]), g->inputs[i]->dtype);
    }
    assert_int_equal(fclose(f), 0);

    if (br_run(prog, run, tmp_path("in.bin"), tmp_path("out.bin"), 0) != 0)
        fail_msg("the generated block %s failed to run (files in %s)", g->name, tmpdir);

    f = fopen(tmp_path("out.bin"), "rb");
    assert_non_null(f);
    sp->worst = 0;
    for (int c = 0; c < sp->ncalls; c++) {
        int32_t rc;
        assert_int_equal(fread(&rc, 4, 1, f), 1);
        if (rc != sp->expect_rc[c])
            fail_msg("call %d of %s returned %d, expected %d", c, g->name, rc, sp->expect_rc[c]);
        if (rc != 0)
            continue;
        double **want = fu_alloc(sizeof *want * (size_t)(g->noutputs + 1));
        for (int i = 0; i < g->noutputs; i++)
            want[i] = fu_alloc(sizeof(double) * (size_t)(ir_numel(g->outputs[i], sp->syms[c]) + 1));
        InterpArgs ia = {sp->syms[c], (const double *const *)sp->in[c], (const double *const *)sp->w,
                         cref, cap, want};
        char err[256];
        if (interp_run(sp->ref ? sp->ref : g, &ia, err, sizeof err) != 0)
            fail_msg("interp_run: %s", err);
        for (int i = 0; i < g->noutputs; i++) {
            int64_t n = ir_numel(g->outputs[i], sp->syms[c]);
            double maxabs, *got = fu_alloc(sizeof(double) * (size_t)(n + 1));
            br_get(f, got, n, g->outputs[i]->dtype);
            sp->got[c][i] = got;
            const char *what = fu_format("%s call %d output %s", g->name, c, g->outputs[i]->name);
            double rel = sp->expect_mismatch ? rel_err(got, want[i], n, &maxabs)
                                             : expect_close(what, got, want[i], n, sp->tol);
            sp->worst = rel > sp->worst ? rel : sp->worst;
        }
    }
    for (int i = 0; i < g->ncaches; i++) {
        int64_t n = cap * cache_row(g->caches[i]);
        double *got = fu_alloc(sizeof(double) * (size_t)(n + 1));
        br_get(f, got, n, DT_F32);
        expect_close(fu_format("%s cache %s", g->name, g->caches[i]->name), got, cref[i], n, sp->tol);
    }
    if (sp->expect_mismatch && !(sp->worst > sp->tol))
        fail_msg("%s: the negative control matched (error %.3g)", g->name, sp->worst);
    char extra;
    assert_int_equal(fread(&extra, 1, 1, f), 0);
    fclose(f);
}

/* ---- tests: elementwise ---------------------------------------------------- */

static const Op unary_ops[] = {OP_NEG, OP_EXP, OP_TANH, OP_SIGMOID, OP_SILU,
                               OP_GELU, OP_GELU_TANH, OP_RELU};
static const Op positive_ops[] = {OP_LOG, OP_SQRT, OP_RSQRT, OP_RECIP};

static Graph *unary_graph(void) {
    Graph *g = ir_graph_new("unary");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(5));
    Node *xp = src(g, OP_INPUT, "xp", DT_F32, 2, S(T), C(5));
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++)
        out(g, op_info[unary_ops[i]].name, op1(g, unary_ops[i], x));
    for (size_t i = 0; i < sizeof positive_ops / sizeof positive_ops[0]; i++)
        out(g, op_info[positive_ops[i]].name, op1(g, positive_ops[i], xp));
    return g;
}

static void test_unary(void **state) {
    (void)state;
    Graph *g = unary_graph();
    Spec sp = {.ncalls = 2, .syms = {{3}, {1}}, .lo = -4, .hi = 4};
    /* log, sqrt, rsqrt, recip get positive inputs */
    for (int c = 0; c < 2; c++)
        sp.in[c][1] = rand_data(sp.syms[c][0] * 5, 0.05, 3, false);
    run_and_compare(g, &sp);
}

static void test_binary_broadcast(void **state) {
    (void)state;
    Graph *g = ir_graph_new("binary");
    int T = ir_add_sym(g, "T");
    Node *a = src(g, OP_INPUT, "a", DT_F32, 3, S(T), C(4), C(5));
    Node *row = src(g, OP_INPUT, "row", DT_F32, 1, C(5));
    Node *col = src(g, OP_INPUT, "col", DT_F32, 2, C(4), C(1));
    Node *mid = src(g, OP_INPUT, "mid", DT_F32, 3, S(T), C(1), C(5));
    Node *pos = src(g, OP_INPUT, "pos", DT_F32, 3, S(T), C(4), C(5));
    out(g, "add_row", op2(g, OP_ADD, a, row));          /* rank mismatch */
    out(g, "sub_col", op2(g, OP_SUB, a, col));          /* column */
    out(g, "mul_scalar", op2(g, OP_MUL, a, cst(g, 2.5)));
    out(g, "scalar_div", op2(g, OP_DIV, cst(g, -3), pos));
    out(g, "div_same", op2(g, OP_DIV, a, pos));
    out(g, "max_mid", op2(g, OP_MAXIMUM, a, mid));
    out(g, "min_both", op2(g, OP_MINIMUM, col, mid));   /* both sides broadcast */
    out(g, "add_scalars", op2(g, OP_ADD, cst(g, 1.5), cst(g, 0.25)));
    Spec sp = {.ncalls = 2, .syms = {{3}, {1}}};
    for (int c = 0; c < 2; c++)
        sp.in[c][4] = rand_data(sp.syms[c][0] * 20, 0.5, 2, false);
    run_and_compare(g, &sp);
}

static void test_reduce(void **state) {
    (void)state;
    Graph *g = ir_graph_new("reduce");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 3, C(3), S(T), C(5));
    const Op ops[] = {OP_SUM, OP_MAX, OP_MEAN};
    for (int ax = 0; ax < 3; ax++)
        for (int o = 0; o < 3; o++) {
            Node *n = mk(g, ops[o], x, NULL, NULL);
            n->i[0] = ax;
            out(g, fu_format("%s%d", op_info[ops[o]].name, ax), infer(g, n));
        }
    Spec sp = {.ncalls = 2, .syms = {{4}, {1}}};
    run_and_compare(g, &sp);
}

/* ---- tests: contractions ----------------------------------------------------- */

static void test_matmul(void **state) {
    (void)state;
    Graph *g = ir_graph_new("mm");
    int T = ir_add_sym(g, "T");
    Node *a = src(g, OP_INPUT, "a", DT_F32, 4, C(2), C(1), S(T), C(7));
    Node *b = src(g, OP_INPUT, "b", DT_F32, 3, C(3), C(7), C(5));
    Node *b2 = src(g, OP_INPUT, "b2", DT_F32, 2, C(7), C(5));
    Node *bt = src(g, OP_INPUT, "bt", DT_F32, 3, C(3), C(5), C(7));
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(7));
    out(g, "batched", op2(g, OP_MATMUL, a, b));       /* [2,1,T,7] x [3,7,5] */
    out(g, "rank_mismatch", op2(g, OP_MATMUL, a, b2)); /* [2,1,T,7] x [7,5] */
    Node *t = mk(g, OP_MATMUL, a, bt, NULL);
    t->i[0] = 1;
    out(g, "transposed", infer(g, t));                 /* [2,1,T,7] x [3,5,7]^T */
    out(g, "plain", op2(g, OP_MATMUL, x, b2));
    /* scores-like: x [T, 7] x x^T -> [T, T] */
    Node *xx = mk(g, OP_MATMUL, x, x, NULL);
    xx->i[0] = 1;
    out(g, "gram", infer(g, xx));
    Spec sp = {.ncalls = 2, .syms = {{3}, {1}}};
    run_and_compare(g, &sp);
}

static void test_linear(void **state) {
    (void)state;
    Graph *g = ir_graph_new("lin");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(7));
    Node *x3 = src(g, OP_INPUT, "x3", DT_F32, 3, C(2), S(T), C(7));
    Node *w0 = src(g, OP_WEIGHT, "fc.weight", DT_F32, 2, C(9), C(7));  /* [out, in] */
    Node *w1 = src(g, OP_WEIGHT, "proj.weight", DT_F32, 2, C(7), C(9)); /* [in, out] */
    Node *b = src(g, OP_WEIGHT, "fc.bias", DT_F32, 1, C(9));
    Node *l;
    l = mk(g, OP_LINEAR, x, w0, NULL);
    out(g, "out_in", infer(g, l));
    l = mk(g, OP_LINEAR, x3, w0, b);
    out(g, "out_in_bias", infer(g, l));
    l = mk(g, OP_LINEAR, x, w1, NULL);
    l->i[0] = 1;
    out(g, "in_out", infer(g, l));
    l = mk(g, OP_LINEAR, x3, w1, b);
    l->i[0] = 1;
    out(g, "in_out_bias", infer(g, l));
    Spec sp = {.ncalls = 2, .syms = {{5}, {1}}};
    run_and_compare(g, &sp);
}

/* ---- tests: data movement -------------------------------------------------- */

static void test_shape_ops(void **state) {
    (void)state;
    Graph *g = ir_graph_new("shapes");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(6));
    Node *y = src(g, OP_INPUT, "y", DT_F32, 2, C(2), C(6));
    Node *ids = src(g, OP_INPUT, "ids", DT_I32, 2, S(T), C(4));
    Node *r = mk(g, OP_RESHAPE, x, NULL, NULL);
    r->dtype = DT_F32;
    r->rank = 3;
    r->shape[0] = S(T), r->shape[1] = C(2), r->shape[2] = C(3);
    infer(g, r);
    Node *tr = mk(g, OP_TRANSPOSE, r, NULL, NULL);
    tr->i[0] = 2, tr->i[1] = 0, tr->i[2] = 1;
    out(g, "reshaped_transposed", infer(g, tr));       /* [3, T, 2] */
    Node *t2 = mk(g, OP_TRANSPOSE, x, NULL, NULL);
    t2->i[0] = 1, t2->i[1] = 0;
    out(g, "transposed", infer(g, t2));
    Node *sl = mk(g, OP_SLICE, x, NULL, NULL);
    sl->i[0] = 1, sl->i[1] = 2, sl->i[2] = 3;
    infer(g, sl);
    out(g, "sliced", sl);
    Node *cc = mk(g, OP_CONCAT, x, y, NULL);            /* [T + 2, 6] */
    cc->i[0] = 0;
    out(g, "rows", infer(g, cc));
    Node *c2 = mk(g, OP_CONCAT, sl, sl, NULL);          /* [T, 6] */
    c2->i[0] = 1;
    out(g, "cols", infer(g, c2));
    Node *s3 = mk(g, OP_SLICE, tr, NULL, NULL);        /* middle axis of rank 3 */
    s3->i[0] = 0, s3->i[1] = 1, s3->i[2] = 2;
    out(g, "slice3", infer(g, s3));
    Node *isl = mk(g, OP_SLICE, ids, NULL, NULL);      /* i32 data moves too */
    isl->i[0] = 1, isl->i[1] = 1, isl->i[2] = 2;
    out(g, "ids_slice", infer(g, isl));
    out(g, "view", r);                                 /* an output that is a view */
    out(g, "passthrough", x);                          /* an output that is an input */
    Spec sp = {.ncalls = 2, .syms = {{3}, {1}}};
    run_and_compare(g, &sp);
}

/* ---- tests: row-wise composites ---------------------------------------------- */

static void test_norms(void **state) {
    (void)state;
    Graph *g = ir_graph_new("norms");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(7));
    Node *x3 = src(g, OP_INPUT, "x3", DT_F32, 3, C(2), S(T), C(7));
    Node *w = src(g, OP_WEIGHT, "norm.weight", DT_F32, 1, C(7));
    Node *b = src(g, OP_WEIGHT, "norm.bias", DT_F32, 1, C(7));
    Node *n = mk(g, OP_RMS_NORM, x, w, NULL);
    n->f[0] = 1e-5;
    out(g, "rms", infer(g, n));
    n = mk(g, OP_RMS_NORM, x3, w, NULL);
    n->f[0] = 0.5;
    out(g, "rms3", infer(g, n));
    n = mk(g, OP_LAYER_NORM, x, w, b);
    n->f[0] = 1e-5;
    out(g, "ln", infer(g, n));
    n = mk(g, OP_LAYER_NORM, x3, w, b);
    n->f[0] = 1e-3;
    out(g, "ln3", infer(g, n));
    Spec sp = {.ncalls = 2, .syms = {{4}, {1}}, .lo = -3, .hi = 3};
    run_and_compare(g, &sp);
}

static void test_softmax_mask(void **state) {
    (void)state;
    Graph *g = ir_graph_new("smax");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 3, C(2), S(T), dim_add(S(T), C(3)));
    Node *r = src(g, OP_INPUT, "r", DT_F32, 2, S(T), C(5));
    Node *m = op1(g, OP_CAUSAL_MASK, x);
    out(g, "masked", m);
    out(g, "probs", op1(g, OP_SOFTMAX, m));
    out(g, "rows", op1(g, OP_SOFTMAX, r));
    Spec sp = {.ncalls = 2, .syms = {{4}, {1}}, .lo = -5, .hi = 5};
    /* row 0 of r entirely -inf (zeros by definition), row 1 partly -inf */
    for (int c = 0; c < 2; c++) {
        sp.in[c][1] = rand_data(sp.syms[c][0] * 5, -5, 5, false);
        for (int j = 0; j < 5; j++)
            sp.in[c][1][j] = -INFINITY;
        if (sp.syms[c][0] > 1)
            sp.in[c][1][5] = sp.in[c][1][8] = -INFINITY;
    }
    run_and_compare(g, &sp);
}

static void test_rope(void **state) {
    (void)state;
    Graph *g = ir_graph_new("rope");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(24));
    Node *pos = src(g, OP_INPUT, "pos", DT_I32, 1, S(T));
    Node *n = mk(g, OP_ROPE, x, pos, NULL);
    n->i[0] = 8;
    n->f[0] = 10000;
    out(g, "y", infer(g, n));
    n = mk(g, OP_ROPE, x, pos, NULL);
    n->i[0] = 12;
    n->f[0] = 500000;
    out(g, "y12", infer(g, n));
    Spec sp = {.ncalls = 2, .syms = {{5}, {1}}};
    /* positions far from 0, where a float angle would lose digits */
    double p0[5] = {1000, 1001, 1002, 4093, 7}, p1[1] = {12345};
    sp.in[0][1] = p0;
    sp.in[1][1] = p1;
    run_and_compare(g, &sp);
}

static Node *attention(Graph *g, Node *q, Node *k, Node *v, int H, int KVH, int hd, bool causal,
                       double scale) {
    Node *n = mk(g, OP_ATTENTION, q, k, v);
    n->i[0] = H, n->i[1] = KVH, n->i[2] = hd, n->i[3] = causal;
    n->f[0] = scale;
    return infer(g, n);
}

static void test_attention(void **state) {
    (void)state;
    Graph *g = ir_graph_new("attn");
    int T = ir_add_sym(g, "T");
    Dim Sd = dim_add(S(T), C(3)); /* S > T: three earlier keys */
    Node *q = src(g, OP_INPUT, "q", DT_F32, 2, S(T), C(16));
    Node *k = src(g, OP_INPUT, "k", DT_F32, 2, Sd, C(8));
    Node *v = src(g, OP_INPUT, "v", DT_F32, 2, Sd, C(8));
    out(g, "causal", attention(g, q, k, v, 4, 2, 4, true, 0.5));  /* GQA 4 heads on 2 */
    out(g, "full", attention(g, q, k, v, 4, 2, 4, false, 0.3));
    out(g, "mqa", attention(g, q, k, k, 2, 1, 8, true, 1.0));  /* one kv head */
    Spec sp = {.ncalls = 2, .syms = {{5}, {1}}, .lo = -2, .hi = 2};
    run_and_compare(g, &sp);
}

/* ---- tests: caches ---------------------------------------------------------- */

/* A tiny decoder step: append k and v to the caches, causal GQA attention
 * over all rows, and the appended k rows as a second output. */
static Graph *kv_graph(void) {
    Graph *g = ir_graph_new("kv");
    int T = ir_add_sym(g, "T"), P = ir_add_sym(g, "P");
    Node *q = src(g, OP_INPUT, "q", DT_F32, 2, S(T), C(16));
    Node *kx = src(g, OP_INPUT, "k", DT_F32, 2, S(T), C(8));
    Node *vx = src(g, OP_INPUT, "v", DT_F32, 2, S(T), C(8));
    Node *kc = src(g, OP_CACHE, "k_cache", DT_F32, 2, S(P), C(8));
    Node *vc = src(g, OP_CACHE, "v_cache", DT_F32, 2, S(P), C(8));
    Node *ka = op2(g, OP_APPEND, kc, kx), *va = op2(g, OP_APPEND, vc, vx);
    out(g, "o", attention(g, q, ka, va, 4, 2, 4, true, 0.5));
    out(g, "keys", ka);
    return g;
}

static void test_cache_prefill_decode(void **state) {
    (void)state;
    Graph *g = kv_graph();
    /* prefill 5, decode 1, then 2 more; then a call past the capacity */
    Spec sp = {.ncalls = 4, .capacity = 9,
               .syms = {{5, 0}, {1, 5}, {2, 6}, {2, 8}},
               .expect_rc = {0, 0, 0, FR_ECAPACITY}};
    run_and_compare(g, &sp);

    /* The same 8 tokens at once give the same rows as the three calls. */
    Graph *g2 = kv_graph();
    Spec all = {.ncalls = 1, .capacity = 9, .syms = {{8, 0}}};
    for (int i = 0; i < 3; i++) {
        double *d = fu_alloc(sizeof(double) * 8 * 16);
        int64_t row = i == 0 ? 16 : 8, at = 0;
        for (int c = 0; c < 3; c++) {
            int64_t n = sp.syms[c][0] * row;
            memcpy(d + at, sp.in[c][i], sizeof(double) * (size_t)n);
            at += n;
        }
        all.in[0][i] = d;
    }
    all.cache0[0] = sp.cache0[0];
    all.cache0[1] = sp.cache0[1];
    run_and_compare(g2, &all);
    /* both outputs: attention rows [T, 16], and the cache rows [P+T, 8] */
    for (int i = 0; i < 2; i++) {
        int64_t row = i == 0 ? 16 : 8, at = 0;
        for (int c = 0; c < 3; c++) {
            int64_t n = sp.syms[c][0] * row;
            expect_close(fu_format("split call %d vs all at once, output %d", c, i), sp.got[c][i],
                         all.got[0][i] + (i == 0 ? at : 0), i == 0 ? n : (sp.syms[c][1] + sp.syms[c][0]) * row,
                         1e-6);
            at += n;
        }
    }
}

static void test_bad_symbols(void **state) {
    (void)state;
    /* T = 0 and a negative P are refused, not run. */
    Graph *g = kv_graph();
    Spec sp = {.ncalls = 3, .capacity = 4, .syms = {{0, 0}, {1, -1}, {1, 3}},
               .expect_rc = {FR_EDIM, FR_EDIM, 0}};
    run_and_compare(g, &sp);
}

/* ---- tests: kernels of several nodes ---------------------------------------- */

/* A kernel of several nodes, as a fusion pass would make it before a fused
 * emitter exists for its kind: the generic target still computes it, node
 * by node inside one function.  Here exp, mul and add share kernel 0 and
 * exp's result is also read by an output. */
static void test_multi_node_kernel(void **state) {
    (void)state;
    generic_only = true; /* pins the generic target's text, whatever FUSEC_TEST_TARGET says */
    Graph *g = ir_graph_new("multi");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(5));
    Node *a = op1(g, OP_EXP, x);
    Node *b = op2(g, OP_MUL, a, cst(g, 2));
    Node *c = op2(g, OP_ADD, b, x);
    out(g, "y", c);
    out(g, "z", a);
    Options o = {0, "generic", 0, false, NULL, false};
    ir_recount(g);
    pass_schedule(g, &o);
    /* merge the first three kernels (exp, mul, add) into kernel 0 */
    Kernel *k0 = g->kernels[0];
    assert_int_equal(k0->nodes[0]->op, OP_EXP);
    assert_int_equal(g->kernels[2]->nodes[0]->op, OP_ADD);
    k0->kind = KK_ELEMWISE;
    k0->nnodes = 3;
    k0->nodes = fu_alloc(3 * sizeof(Node *));
    k0->nodes[0] = a, k0->nodes[1] = b, k0->nodes[2] = c;
    b->kernel = c->kernel = 0;
    for (int k = 3; k < g->nkernels; k++) {
        g->kernels[k - 2] = g->kernels[k];
        g->kernels[k - 2]->id = k - 2;
        for (int i = 0; i < g->kernels[k - 2]->nnodes; i++)
            g->kernels[k - 2]->nodes[i]->kernel = k - 2;
    }
    g->nkernels -= 2;
    Spec sp = {.ncalls = 2, .syms = {{3}, {1}}, .keep_schedule = true};
    run_and_compare(g, &sp);
    char *text = slurp(tmp_path("multi.c"), NULL);
    assert_non_null(strstr(text, "static void k1_exp_mul_add("));
    assert_null(strstr(text, "k2_mul"));
}

/* Workspace planning: in a chain of unfused kernels b, c, d and e are each
 * dead two kernels after they are made, so b and d share one storage and c
 * and e another, while a (read again by the last kernel) keeps its own; the
 * run starts from a workspace full of 0xff bytes, so a wrong overlap shows
 * in the results. */
static void test_workspace_sharing(void **state) {
    (void)state;
    Graph *g = ir_graph_new("chain");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(5));
    Node *a = op1(g, OP_EXP, x);
    Node *b = op2(g, OP_MUL, a, cst(g, 0.5));
    Node *c = op2(g, OP_ADD, b, x);
    Node *d = op1(g, OP_NEG, c);
    Node *e = op1(g, OP_TANH, d);
    Node *f = op2(g, OP_MUL, e, a); /* a lives to the end: its storage is its own */
    out(g, "y", f);
    Spec sp = {.ncalls = 3, .syms = {{3}, {1}, {17}}};
    run_and_compare(g, &sp);
    char *text = slurp(tmp_path("chain.c"), NULL);
    const char *lay = strstr(text, "static int fu_layout(");
    assert_non_null(lay);
    const char *end = strstr(lay, "\n}\n");
    int stores = 0;
    for (const char *p = strstr(lay, "at += "); p && p < end; p = strstr(p + 1, "at += "))
        stores++;
    /* a (kernels 0..5) alone; b, d (1..2, 3..4) and c, e (2..3, 4..5) */
    assert_int_equal(stores, 3);
    assert_non_null(strstr(lay, " exp: f32[T, 5], kernels 0..5 */"));
}

/* ---- tests: the interface ------------------------------------------------- */

/* No symbols, weights or caches: every optional part of the API is absent. */
static void test_minimal_block(void **state) {
    (void)state;
    Graph *g = ir_graph_new("tiny");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, C(3), C(4));
    out(g, "y", op1(g, OP_EXP, x));
    out(g, "z", op2(g, OP_MUL, x, cst(g, 2)));
    Spec sp = {.ncalls = 1};
    run_and_compare(g, &sp);
    char *h = slurp(tmp_path("tiny.h"), NULL);
    assert_non_null(strstr(h, "size_t tiny_workspace_size(void);"));
    assert_non_null(strstr(h, "int tiny_forward(const float *x /* f32[3, 4] */"));
    assert_null(strstr(h, "tiny_weights"));
    assert_null(strstr(h, "tiny_cache"));
}

static void test_header_contents(void **state) {
    (void)state;
    generic_only = true; /* pins the generic target's text, whatever FUSEC_TEST_TARGET says */
    Graph *g = kv_graph();
    ir_add_const_dim(g, "HD", 4);
    Node *w = src(g, OP_WEIGHT, "self_attn.q_proj.weight", DT_F32, 2, C(16), C(16));
    out(g, "qp", infer(g, mk(g, OP_LINEAR, g->inputs[0], w, NULL)));
    Options o = {0, "generic", 0, false, NULL, false};
    ir_recount(g);
    pass_schedule(g, &o);
    assert_int_equal(emit_files(g), 0);
    char *h = slurp(tmp_path("kv.h"), NULL);
    char *c = slurp(tmp_path("kv.c"), NULL);
    assert_non_null(strstr(h, "#include \"fusec_rt.h\""));
    assert_non_null(strstr(h, "#define kv_HD 4"));
    assert_non_null(strstr(h, "const float *self_attn_q_proj_weight;"));
    assert_non_null(strstr(h, "float *k_cache;"));
    assert_non_null(strstr(h, "int64_t capacity;"));
    assert_non_null(strstr(h, "int kv_bind(kv_weights *w, const fr_st *file, const char *prefix, fr_err *err);"));
    assert_non_null(strstr(h, "int kv_cache_init(kv_cache *c, int64_t capacity, fr_err *err);"));
    assert_non_null(strstr(h, "void kv_cache_free(kv_cache *c);"));
    assert_non_null(strstr(h, "size_t kv_workspace_size(int64_t T, int64_t P);"));
    assert_non_null(strstr(h, "int kv_forward(const kv_weights *w,"));
    assert_non_null(strstr(h, "const float *q /* f32[T, 16] */"));
    assert_non_null(strstr(h, "float *out_o /* f32[T, 16] */"));
    assert_non_null(strstr(h, "extern const fr_block_desc kv_desc;"));
    assert_non_null(strstr(c, "Generated by fusec " FUSEC_VERSION " from block kv, target generic."));
    assert_non_null(strstr(c, "#include \"kv.h\""));
    assert_non_null(strstr(c, "\"self_attn.q_proj.weight\""));
    /* kernels named after node and op; symbolic shapes stay expressions */
    assert_non_null(strstr(c, "_attention("));
    assert_non_null(strstr(c, "(T + P)"));
    assert_non_null(strstr(c, "int64_t send = t + P + 1;"));
    assert_null(strstr(c, tmpdir));
}

/* The same graph emitted twice, and two graphs built the same way, give the
 * same bytes. */
static void test_deterministic(void **state) {
    (void)state;
    Options o = {0, "generic", 0, false, NULL, false};
    char *text[3];
    size_t len[3];
    Graph *g = NULL;
    for (int i = 0; i < 3; i++) {
        if (i < 2) {
            g = kv_graph();
            ir_recount(g);
            pass_schedule(g, &o);
        }
        char *cbuf = NULL, *hbuf = NULL;
        size_t cl = 0, hl = 0;
        FILE *c = open_memstream(&cbuf, &cl), *h = open_memstream(&hbuf, &hl);
        assert_non_null(c);
        assert_non_null(h);
        assert_int_equal(emit_c(g, target_find("generic"), c, h, "kv.h"), 0);
        assert_int_equal(fclose(c), 0);
        assert_int_equal(fclose(h), 0);
        text[i] = fu_format("%s\n----\n%s", cbuf, hbuf);
        len[i] = strlen(text[i]);
        free(cbuf);
        free(hbuf);
    }
    assert_true(len[0] > 1000);
    assert_int_equal(len[0], len[1]);
    assert_int_equal(len[1], len[2]);
    assert_memory_equal(text[0], text[1], len[0]);
    assert_memory_equal(text[1], text[2], len[0]);
}

/* Names that cannot become distinct C identifiers are user errors. */
static void test_name_errors(void **state) {
    (void)state;
    const char *cases[][2] = {
        {"weight", "a.b"},   /* collides with a_b below */
        {"input", "int"},
        {"input", "fu_x"},
        {"sym", "i"},
        {"input", "k3_exp"},
        {"sym", "x"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Graph *g = ir_graph_new("bad");
        int T = ir_add_sym(g, strcmp(cases[c][0], "sym") == 0 ? cases[c][1] : "T");
        Node *x = src(g, OP_INPUT, strcmp(cases[c][0], "input") == 0 ? cases[c][1] : "inp", DT_F32, 2,
                      S(T), C(4));
        Node *y = x;
        if (strcmp(cases[c][0], "weight") == 0) {
            Node *w1 = src(g, OP_WEIGHT, "a.b", DT_F32, 1, C(4));
            Node *w2 = src(g, OP_WEIGHT, "a_b", DT_F32, 1, C(4));
            y = op2(g, OP_ADD, op2(g, OP_ADD, x, w1), w2);
        }
        out(g, "y", op1(g, OP_EXP, y));
        Options o = {0, "generic", 0, false, NULL, false};
        ir_recount(g);
        pass_schedule(g, &o);
        diag_reset();
        FILE *cf = fopen("/dev/null", "w"), *hf = fopen("/dev/null", "w");
        assert_non_null(cf);
        assert_non_null(hf);
        int rc = emit_c(g, target_find("generic"), cf, hf, "bad.h");
        fclose(cf);
        fclose(hf);
        /* only the collision is an error: reserved names get their C
         * spelling (emit_c's c_ident, issue 10; tests/limits compiles them) */
        int want = c == 0 ? -1 : 0;
        if (rc != want || diag_error_count() != (c == 0))
            fail_msg("%s '%s': emit_c returned %d with %d errors", cases[c][0], cases[c][1], rc,
                     diag_error_count());
        diag_reset();
    }
}

/* The comparison can fail: C emitted from a graph with eps 0.5 checked
 * against the interpreter on the same graph with eps 1e-5 must differ. */
static Graph *norm_graph(double eps) {
    Graph *g = ir_graph_new("neg");
    int T = ir_add_sym(g, "T");
    Node *x = src(g, OP_INPUT, "x", DT_F32, 2, S(T), C(7));
    Node *w = src(g, OP_WEIGHT, "w", DT_F32, 1, C(7));
    Node *n = mk(g, OP_RMS_NORM, x, w, NULL);
    n->f[0] = eps;
    out(g, "y", infer(g, n));
    return g;
}

static void test_negative_control(void **state) {
    (void)state;
    Graph *ref = norm_graph(1e-5);
    ir_recount(ref);
    Spec sp = {.ncalls = 1, .syms = {{3}}, .lo = -0.5, .hi = 0.5, .ref = ref,
               .expect_mismatch = true};
    run_and_compare(norm_graph(0.5), &sp);
    print_message("negative control: relative L2 error %.3g\n", sp.worst);
}

static void test_target_find(void **state) {
    (void)state;
    const Target *t = target_find("generic");
    assert_non_null(t);
    assert_string_equal(t->name, "generic");
    assert_int_equal(t->vec_floats, 1);
    assert_ptr_equal(target_find(NULL), t);
    assert_null(target_find("x86-64-avx9"));
}

/* ---- tests: the dsl-examples against the golden layers -------------------- */

/* The folder of golden files: $GOLDEN, else the committed copies. */
static const char *golden_dir(void) {
    const char *s = getenv("GOLDEN");
    return s && *s ? s : "tests/golden/hf";
}

static double *f32_data(const fr_tensor *t, int64_t from, int64_t n) {
    double *d = fu_alloc(sizeof(double) * (size_t)(n + 1));
    for (int64_t j = 0; j < n; j++) {
        const char *p = (const char *)t->data + 4 * (from + j);
        if (t->dtype == FR_I32) {
            int32_t v;
            memcpy(&v, p, 4);
            d[j] = v;
        } else {
            float v;
            memcpy(&v, p, 4);
            d[j] = v;
        }
    }
    return d;
}

/* Runs a dsl-example on its golden file, all rows in one call and then as a
 * prefill of `split` rows followed by one-token decode calls, through the KV
 * caches.  Each call is checked against the interpreter, and the rows of
 * the C output against the file's out64.hidden_states. */
static void golden(const char *fdl, const char *st, int split) {
    if (access(fdl, R_OK) != 0)
        fail_msg("%s: %s", fdl, strerror(errno));
    Options o = {0, "generic", 0, false, NULL, false};
    Graph *g = compile_pipeline(fdl, NULL, &o);
    assert_non_null(g);
    fr_st f;
    fr_err err;
    if (fr_st_open(&f, fu_format("%s/%s", golden_dir(), st), &err) != 0)
        fail_msg("%s", err.msg);
    const fr_tensor *ref = fr_st_find(&f, "out64.hidden_states");
    assert_non_null(ref);
    assert_int_equal(ref->dtype, FR_F64);
    assert_int_equal(g->noutputs, 1);
    int64_t T = ref->shape[0], row = (int64_t)(ref->nbytes / 8) / T;
    int tsym = ir_find_sym(g, "T");
    assert_true(tsym >= 0);
    assert_true(split < T && T - split < MAX_CALLS);
    for (int pass = 0; pass < 2; pass++) {
        Spec sp = {.capacity = T};
        sp.ncalls = pass == 0 ? 1 : 1 + (int)(T - split);
        for (int i = 0; i < g->nweights; i++) {
            const fr_tensor *t = fr_st_find(&f, fu_format("w.%s", g->weights[i]->name));
            assert_non_null(t);
            sp.w[i] = f32_data(t, 0, (int64_t)(t->nbytes / 4));
        }
        int64_t done = 0;
        for (int c = 0; c < sp.ncalls; c++) {
            int64_t rows = pass == 0 ? T : c == 0 ? split : 1;
            sp.syms[c][tsym] = rows;
            if (g->cache_sym >= 0)
                sp.syms[c][g->cache_sym] = done;
            for (int i = 0; i < g->ninputs; i++) {
                const fr_tensor *t = fr_st_find(&f, fu_format("in.%s", g->inputs[i]->name));
                assert_non_null(t);
                int64_t per_row = (int64_t)(t->nbytes / 4) / t->shape[0];
                sp.in[c][i] = f32_data(t, done * per_row, rows * per_row);
            }
            done += rows;
        }
        for (int i = 0; i < g->ncaches; i++)
            sp.cache0[i] = fu_alloc(sizeof(double) * (size_t)(T * cache_row(g->caches[i])));
        run_and_compare(g, &sp);
        /* the C rows, call after call, against the golden float64 output */
        double *got = fu_alloc(sizeof(double) * (size_t)(T * row));
        done = 0;
        for (int c = 0; c < sp.ncalls; c++) {
            int64_t rows = sp.syms[c][tsym];
            memcpy(got + done * row, sp.got[c][0], sizeof(double) * (size_t)(rows * row));
            done += rows;
        }
        double *want = fu_alloc(sizeof(double) * (size_t)(T * row));
        memcpy(want, ref->data, sizeof(double) * (size_t)(T * row));
        const char *how = pass == 0 ? "all rows" : fu_format("prefill %d + decode", split);
        double rel = expect_close(fu_format("%s (%s) vs out64", fdl, how), got, want, T * row, 1e-5);
        print_message("%s, %s: C vs golden out64: relative L2 error %.3g; vs interpreter %.3g\n", fdl,
                      how, rel, sp.worst);
    }
    fr_st_close(&f);
}

static void test_llama_golden(void **state) {
    (void)state;
    golden("dsl-examples/llama_layer.fdl", "llama_layer.safetensors", 12);
}

/* Attention and RMSNorm from primitives: batched broadcast matmuls,
 * transposes, reshapes, causal_mask and softmax on real data. */
static void test_llama_prim_golden(void **state) {
    (void)state;
    golden("dsl-examples/llama_layer_prim.fdl", "llama_layer.safetensors", 12);
}

static void test_gpt2_golden(void **state) {
    (void)state;
    golden("dsl-examples/gpt2_block.fdl", "gpt2_block.safetensors", 12);
}

/* ---- main ------------------------------------------------------------------ */

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_emit.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    if (getenv("KEEP_TMP"))
        return 0;
    char *argv[] = {"rm", "-rf", tmpdir, NULL};
    return br_run_argv(argv, 0) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_find),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_softmax_mask),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_cache_prefill_decode),
        cmocka_unit_test(test_bad_symbols),
        cmocka_unit_test_teardown(test_multi_node_kernel, generic_teardown),
        cmocka_unit_test(test_workspace_sharing),
        cmocka_unit_test(test_minimal_block),
        cmocka_unit_test_teardown(test_header_contents, generic_teardown),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_negative_control),
        cmocka_unit_test(test_llama_golden),
        cmocka_unit_test(test_llama_prim_golden),
        cmocka_unit_test(test_gpt2_golden),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
