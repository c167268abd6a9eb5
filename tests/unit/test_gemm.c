/*
 * test_gemm.c - the matrix-multiply emitter (emit_gemm.c), checked by
 * running what it writes against the float64 interpreter.
 *
 * Each test writes a small block in the DSL, schedules it unfused (-O0:
 * every linear/matmul a KK_SINGLE kernel, which emit_gemm.c writes), and
 * for KK_GEMM / KK_MLP merges named nodes into one kernel by hand, so the
 * kernels tested are exactly the ones the "Kernels" contract in fusec.h
 * describes and do not depend on the fusion passes.  The block is emitted
 * for a target, compiled with the strict flags users compile with, linked
 * with a small driver and run for several row counts (the symbol T) with 1
 * and 3 threads; every output must match interp_run on the same data.
 * The row counts cover the GEMV path (1..4 rows), odd tiles and several
 * row blocks; the constant sizes cover odd N and K and K beyond one depth
 * block (partial sums in cacc).
 *
 * Targets: generic and x86-64-avx2 run here; x86-64-avx512 runs when the
 * CPU has it (else it is only compiled); aarch64-neon is cross-compiled
 * and run under qemu-aarch64 when both are installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "blockrun.h"
#include "fusec.h"
#include "fusec_rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];

/* ---- processes and files ------------------------------------------------- */

static const char *tmp_path(const char *name) { return fu_format("%s/%s", tmpdir, name); }

/* ---- blocks and kernels ------------------------------------------------------- */

/* Compiles DSL text to a graph (sema, dce), not yet scheduled. */
static Graph *compile_graph(const char *src) {
    diag_reset();
    Graph *g = fe_compile_string("test.fdl", src, NULL);
    if (!g)
        fail_msg("the test block does not compile:\n%s", src);
    ir_verify(g, "sema");
    ir_dce(g);
    return g;
}

/* The unfused schedule: every op its own kernel. */
static Graph *schedule(Graph *g) {
    Options o = {.opt_level = 0, .target = "generic"};
    pass_schedule(g, &o);
    ir_verify(g, "schedule");
    return g;
}

static Graph *compile_block(const char *src) { return schedule(compile_graph(src)); }

static Node *by_label(Graph *g, const char *label) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->label && strcmp(g->nodes[i]->label, label) == 0)
            return g->nodes[i];
    fail_msg("no node labelled '%s'", label);
    return NULL;
}

/* Merges the kernels of the nodes named in `labels` (space-separated) into
 * one kernel of the given kind. */
static void fuse(Graph *g, KernelKind kind, const char *labels) {
    char *c = fu_strdup(labels), *p = strtok(c, " ");
    int into = -1;
    while (p) {
        Node *n = by_label(g, p);
        assert_true(n->kernel >= 0);
        if (into < 0)
            into = n->kernel;
        else if (n->kernel != into) {
            assert_true(sched_can_merge(g, into, n->kernel));
            sched_merge(g, into, n->kernel);
        }
        p = strtok(NULL, " ");
    }
    g->kernels[into]->kind = kind;
    sched_compact(g);
    ir_verify(g, "test fuse");
    char why[256];
    for (int k = 0; k < g->nkernels; k++)
        if (g->kernels[k]->kind == kind && !emit_gemm_supports(g->kernels[k], why, sizeof why))
            fail_msg("kernel %d not supported: %s", k, why);
}

/* ---- data ------------------------------------------------------------------------ */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double *rand_data(int64_t n, bool integer, double lo, double hi) {
    return integer ? br_rand_data(&rng, n, 0, 200, true) : br_rand_data(&rng, n, lo, hi, false);
}

/* The relative L2 error of got against ref; NaN anywhere is infinite. */
static double rel_err(const float *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(ref[i]))
            return INFINITY;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- building and running --------------------------------------------------------- */

/* Emits g for target t and compiles it with the driver; returns the
 * program, or NULL when the target only compiles here (this CPU lacks its
 * features). */
static const char *build(const Graph *g, const Target *t, BrRun run) {
    FILE *c = fopen(tmp_path("blk.c"), "w"), *h = fopen(tmp_path("blk.h"), "w");
    assert_non_null(c);
    assert_non_null(h);
    assert_int_equal(emit_c(g, t, c, h, "blk.h"), 0);
    assert_int_equal(fclose(c), 0);
    assert_int_equal(fclose(h), 0);
    return br_build(tmpdir, "blk", g->name, t, run);
}

#define MAX_CALLS 12

/* Runs g (already fused as the test wants) on target t for each T in
 * `rows` (0-terminated) with 1 and 3 threads; every output must be within
 * tol (relative L2) of the interpreter.  Returns the largest error. */
static double check_block(Graph *g, const char *target, const int64_t *rows, double tol) {
    const Target *t = target_find(target);
    assert_non_null(t);
    BrRun run = br_how_to_run(t);
    const char *prog = build(g, t, run);
    if (!prog)
        br_skip_compile_only(t); /* compiled with -Werror; this CPU cannot run it */
    int ncalls = 0;
    while (rows[ncalls])
        ncalls++;
    assert_true(ncalls <= MAX_CALLS);
    FU_ASSERT(g->nsyms <= 1);
    /* data: weights once, inputs per call */
    double **w = fu_alloc(sizeof *w * (size_t)(g->nweights + 1));
    double **x[MAX_CALLS];
    int64_t syms[MAX_CALLS][FU_MAX_SYMS];
    for (int i = 0; i < g->nweights; i++) {
        const Node *n = g->weights[i];
        w[i] = rand_data(ir_numel(n, syms[0]), false, -0.5, 0.5);
    }
    FILE *f = fopen(tmp_path("in.bin"), "wb");
    assert_non_null(f);
    int64_t cap = 0; /* no caches */
    assert_int_equal(fwrite(&cap, 8, 1, f), 1);
    for (int i = 0; i < g->nweights; i++)
        br_put(f, w[i], ir_numel(g->weights[i], syms[0]), DT_F32);
    int64_t nc = ncalls;
    assert_int_equal(fwrite(&nc, 8, 1, f), 1);
    for (int c = 0; c < ncalls; c++) {
        memset(syms[c], 0, sizeof syms[c]);
        syms[c][0] = rows[c];
        if (g->nsyms)
            assert_int_equal(fwrite(syms[c], 8, 1, f), 1);
        x[c] = fu_alloc(sizeof *x[c] * (size_t)(g->ninputs + 1));
        for (int i = 0; i < g->ninputs; i++) {
            const Node *n = g->inputs[i];
            x[c][i] = rand_data(ir_numel(n, syms[c]), n->dtype == DT_I32, -2, 2);
            br_put(f, x[c][i], ir_numel(n, syms[c]), n->dtype);
        }
    }
    assert_int_equal(fclose(f), 0);
    double worst = 0;
    for (int threads = 1; threads <= 3; threads += 2) {
        if (br_run(prog, run, tmp_path("in.bin"), tmp_path("out.bin"), threads) != 0)
            fail_msg("the %s program failed with %d threads (kept in %s)", target, threads, tmpdir);
        f = fopen(tmp_path("out.bin"), "rb");
        assert_non_null(f);
        for (int c = 0; c < ncalls; c++) {
            int32_t rc;
            assert_int_equal(fread(&rc, 4, 1, f), 1);
            assert_int_equal(rc, 0);
            double **ref = fu_alloc(sizeof *ref * (size_t)(g->noutputs + 1));
            for (int i = 0; i < g->noutputs; i++)
                ref[i] = fu_alloc(sizeof(double) * (size_t)(ir_numel(g->outputs[i], syms[c]) + 1));
            InterpArgs ia = {syms[c], (const double *const *)x[c], (const double *const *)w, NULL, 0, ref};
            char err[256];
            if (interp_run(g, &ia, err, sizeof err) != 0)
                fail_msg("interp: %s", err);
            for (int i = 0; i < g->noutputs; i++) {
                int64_t n = ir_numel(g->outputs[i], syms[c]);
                float *got = fu_alloc(sizeof *got * (size_t)(n + 1));
                assert_int_equal((int64_t)fread(got, 4, (size_t)n, f), n);
                double e = rel_err(got, ref[i], n);
                if (!(e <= tol))
                    fail_msg("%s, %d threads, T=%lld: output %s has relative error %.3g > %.3g (kept in %s)",
                             target, threads, (long long)rows[c], g->outputs[i]->name, e, tol, tmpdir);
                worst = e > worst ? e : worst;
            }
        }
        assert_int_equal(fclose(f), 0);
    }
    return worst;
}

/* x86-64-avx512 last: on a CPU without it check_block skips the test there,
 * after every other target ran. */
static const char *const targets[] = {"generic", "x86-64-avx2", "aarch64-neon", "x86-64-avx512"};
#define NTARGETS (sizeof targets / sizeof targets[0])

/* Row counts: GEMV (1..8: one register group of rows, or two), one odd
 * tile, several tiles and row blocks, and more rows than one accumulator
 * chunk (mchunk: 512..672). */
static const int64_t rows_all[] = {1, 3, 4, 5, 8, 9, 17, 64, 100, 257, 700, 0};
static const int64_t rows_few[] = {1, 2, 6, 17, 100, 0};

static void check_all_targets(const char *src, KernelKind kind, const char *labels, const int64_t *rows,
                              double tol) {
    for (size_t i = 0; i < NTARGETS; i++) {
        Graph *g = compile_block(src);
        if (labels)
            fuse(g, kind, labels);
        check_block(g, targets[i], rows, tol);
    }
}

/* ---- tests ----------------------------------------------------------------------- */

/* Plain linears (KK_SINGLE): both layouts, with and without bias, odd N
 * and K, K over two depth blocks, N over two GEMV chunks (4096). */
static void test_linear_single(void **state) {
    (void)state;
    static const char src[] =
        "block lin {\n"
        "  dim T;\n"
        "  input x1: f32[T, 1];\n"
        "  input x7: f32[T, 7];\n"
        "  input x65: f32[T, 65];\n"
        "  input x600: f32[T, 600];\n"
        "  weight a: f32[3, 1];\n"
        "  weight b: f32[7, 17];\n"
        "  weight c: f32[100, 65];\n"
        "  weight cb: f32[100];\n"
        "  weight d: f32[65, 257];\n"
        "  weight db: f32[257];\n"
        "  weight e: f32[33, 600];\n"
        "  weight f: f32[600, 64];\n"
        "  weight g: f32[4100, 7];\n"
        "  weight h: f32[7, 4100];\n"
        "  output ya = linear(x1, a);\n"
        "  output yb = linear(x7, b, layout = \"in_out\");\n"
        "  output yc = linear(x65, c, cb);\n"
        "  output yd = linear(x65, d, db, layout = \"in_out\");\n"
        "  output ye = linear(x600, e);\n"
        "  output yf = linear(x600, f, layout = \"in_out\");\n"
        "  output yg = linear(x7, g);\n"
        "  output yh = linear(x7, h, layout = \"in_out\");\n"
        "}\n";
    check_all_targets(src, KK_SINGLE, NULL, rows_all, 2e-6);
}

/* Batched matmul with broadcast batch dims, both B layouts (KK_SINGLE). */
static void test_matmul_single(void **state) {
    (void)state;
    static const char src[] =
        "block mm {\n"
        "  dim T;\n"
        "  input a: f32[3, T, 19];\n"
        "  input b: f32[1, 19, 33];\n"
        "  input bt: f32[3, 33, 19];\n"
        "  input c: f32[2, 1, T, 300];\n"
        "  input d: f32[3, 300, 5];\n"
        "  y1 = matmul(a, b);\n"
        "  y2 = matmul(a, transpose(bt, [0, 2, 1]));\n"
        "  y3 = matmul(c, d);\n"
        "  output y1 = y1;\n"
        "  output y2 = y2;\n"
        "  output y3 = y3;\n"
        "}\n";
    for (size_t i = 0; i < NTARGETS; i++) {
        Graph *g = compile_graph(src);
        /* y2 reads bt as stored: [.., N, K], the transposed-B flag */
        Node *y2 = by_label(g, "y2");
        y2->in[1] = y2->in[1]->in[0];
        y2->i[0] = 1;
        char why[256];
        if (!ir_infer(y2, g, why, sizeof why))
            fail_msg("%s", why);
        ir_recount(g);
        ir_dce(g);
        check_block(schedule(g), targets[i], rows_few, 2e-6);
    }
}

/* Epilogues on the tile: bias, activation, scale by a constant, residual,
 * per-column and per-row operands, an intermediate that is also stored. */
static void test_gemm_epilogue(void **state) {
    (void)state;
    static const char src[] =
        "block epi {\n"
        "  dim T;\n"
        "  input x: f32[T, 70];\n"
        "  input r: f32[T, 45];\n"
        "  input s: f32[T, 1];\n"
        "  weight w: f32[45, 70];\n"
        "  weight bias: f32[45];\n"
        "  weight col: f32[45];\n"
        "  l = linear(x, w);\n"
        "  lb = l + bias;\n"
        "  a = silu(lb);\n"
        "  sc = a * 0.5;\n"
        "  rr = sc + r;\n"
        "  cc = rr * col;\n"
        "  y = cc - s;\n"
        "  output y = y;\n"
        "  output a = a;\n"
        "}\n";
    check_all_targets(src, KK_GEMM, "l lb a sc rr cc y", rows_all, 2e-6);
}

/* GPT-2 style: linear with bias in [in, out] layout, then gelu_tanh. */
static void test_gemm_gelu_in_out(void **state) {
    (void)state;
    static const char src[] =
        "block gel {\n"
        "  dim T;\n"
        "  input x: f32[T, 300];\n"
        "  weight w: f32[300, 130];\n"
        "  weight b: f32[130];\n"
        "  l = linear(x, w, b, layout = \"in_out\");\n"
        "  y = gelu_tanh(l);\n"
        "  output y = y;\n"
        "}\n";
    check_all_targets(src, KK_GEMM, "l y", rows_all, 2e-6);
}

/* silu(g) * u: two products computed tile by tile together. */
static void test_gemm_swiglu_pair(void **state) {
    (void)state;
    static const char src[] =
        "block swi {\n"
        "  dim T;\n"
        "  input x: f32[T, 67];\n"
        "  weight wg: f32[90, 67];\n"
        "  weight wu: f32[90, 67];\n"
        "  g = linear(x, wg);\n"
        "  u = linear(x, wu);\n"
        "  sg = silu(g);\n"
        "  h = sg * u;\n"
        "  output h = h;\n"
        "  output g = g;\n"
        "}\n";
    check_all_targets(src, KK_GEMM, "g u sg h", rows_all, 2e-6);
}

/* A norm prologue shared by three projections (q, k with RoPE, v); the
 * normalized tensor is not stored. */
static void test_gemm_norm_qkv_rope(void **state) {
    (void)state;
    static const char src[] =
        "block qkv {\n"
        "  dim T;\n"
        "  input x: f32[T, 96];\n"
        "  input pos: i32[T];\n"
        "  weight nw: f32[96];\n"
        "  weight wq: f32[64, 96];\n"
        "  weight wk: f32[32, 96];\n"
        "  weight wv: f32[32, 96];\n"
        "  h = rms_norm(x, nw, eps = 1e-5);\n"
        "  ql = linear(h, wq);\n"
        "  kl = linear(h, wk);\n"
        "  v = linear(h, wv);\n"
        "  q = rope(ql, pos, head_dim = 16, theta = 10000.0);\n"
        "  k = rope(kl, pos, head_dim = 16, theta = 10000.0);\n"
        "  output q = q;\n"
        "  output k = k;\n"
        "  output v = v;\n"
        "}\n";
    check_all_targets(src, KK_GEMM, "h ql kl v q k", rows_all, 2e-6);
}

/* layer_norm prologue (with bias) whose result is also read elsewhere, and
 * rope with a head size that is not a multiple of the tile width. */
static void test_gemm_layer_norm_stored(void **state) {
    (void)state;
    static const char src[] =
        "block lnp {\n"
        "  dim T;\n"
        "  input x: f32[T, 40];\n"
        "  input pos: i32[T];\n"
        "  weight nw: f32[40];\n"
        "  weight nb: f32[40];\n"
        "  weight w: f32[60, 40];\n"
        "  h = layer_norm(x, nw, nb, eps = 1e-5);\n"
        "  l = linear(h, w);\n"
        "  q = rope(l, pos, head_dim = 20, theta = 500.0);\n"
        "  output q = q;\n"
        "  output h = h;\n"
        "}\n";
    check_all_targets(src, KK_GEMM, "h l q", rows_all, 2e-6);
}

/* The Llama MLP as one KK_MLP kernel: rms_norm, gate and up, silu * mul,
 * down, residual. */
static void test_mlp_swiglu(void **state) {
    (void)state;
    static const char src[] =
        "block mlp {\n"
        "  dim T;\n"
        "  input x: f32[T, 48];\n"
        "  weight nw: f32[48];\n"
        "  weight wg: f32[300, 48];\n"
        "  weight wu: f32[300, 48];\n"
        "  weight wd: f32[48, 300];\n"
        "  n = rms_norm(x, nw, eps = 1e-5);\n"
        "  g = linear(n, wg);\n"
        "  u = linear(n, wu);\n"
        "  sg = silu(g);\n"
        "  h = sg * u;\n"
        "  d = linear(h, wd);\n"
        "  y = x + d;\n"
        "  output y = y;\n"
        "}\n";
    check_all_targets(src, KK_MLP, "n g u sg h d y", rows_all, 2e-6);
}

/* The GPT-2 MLP as one KK_MLP kernel: layer_norm, fc with bias, gelu_tanh,
 * proj with bias ([in, out] weights), residual. */
static void test_mlp_gpt2(void **state) {
    (void)state;
    static const char src[] =
        "block mlp2 {\n"
        "  dim T;\n"
        "  input x: f32[T, 40];\n"
        "  weight nw: f32[40];\n"
        "  weight nb: f32[40];\n"
        "  weight w1: f32[40, 170];\n"
        "  weight b1: f32[170];\n"
        "  weight w2: f32[170, 40];\n"
        "  weight b2: f32[40];\n"
        "  n = layer_norm(x, nw, nb, eps = 1e-5);\n"
        "  f = linear(n, w1, b1, layout = \"in_out\");\n"
        "  a = gelu_tanh(f);\n"
        "  p = linear(a, w2, b2, layout = \"in_out\");\n"
        "  y = x + p;\n"
        "  output y = y;\n"
        "}\n";
    check_all_targets(src, KK_MLP, "n f a p y", rows_all, 2e-6);
}

/* Enough rows for several MLP row blocks: h of 1300 rows x 4000 is more
 * than the 16 MiB a row block may hold. */
static void test_mlp_row_blocks(void **state) {
    (void)state;
    static const char src[] =
        "block mlp4 {\n"
        "  dim T;\n"
        "  input x: f32[T, 24];\n"
        "  weight w1: f32[4000, 24];\n"
        "  weight w2: f32[24, 4000];\n"
        "  f = linear(x, w1);\n"
        "  a = relu(f);\n"
        "  p = linear(a, w2);\n"
        "  output y = p;\n"
        "}\n";
    static const int64_t rows[] = {1300, 0};
    Graph *g = compile_block(src);
    fuse(g, KK_MLP, "f a p");
    check_block(g, "x86-64-avx2", rows, 5e-6);
}

/* Big enough for several depth blocks and column blocks of the MLP. */
static void test_mlp_deep(void **state) {
    (void)state;
    static const char src[] =
        "block mlp3 {\n"
        "  dim T;\n"
        "  input x: f32[T, 260];\n"
        "  weight wg: f32[700, 260];\n"
        "  weight wu: f32[700, 260];\n"
        "  weight wd: f32[260, 700];\n"
        "  g = linear(x, wg);\n"
        "  u = linear(x, wu);\n"
        "  sg = silu(g);\n"
        "  h = sg * u;\n"
        "  d = linear(h, wd);\n"
        "  output y = d;\n"
        "}\n";
    static const int64_t rows[] = {1, 4, 7, 9, 130, 0};
    for (size_t i = 0; i < 2; i++) {
        Graph *g = compile_block(src);
        fuse(g, KK_MLP, "g u sg h d");
        check_block(g, targets[i], rows, 5e-6);
    }
}

/* The generated AVX2 GEMM uses FMAs in its microkernel and never calls a
 * scalar loop for them: the hot loop is pinned. */
static void test_avx2_instructions(void **state) {
    (void)state;
    Graph *g = compile_block("block p { dim T; input x: f32[T, 64]; weight w: f32[64, 64];\n"
                             "  output y = linear(x, w); }\n");
    char *text = NULL;
    size_t len = 0;
    FILE *c = open_memstream(&text, &len), *h = fopen("/dev/null", "w");
    assert_non_null(c);
    assert_non_null(h);
    assert_int_equal(emit_c(g, target_find("x86-64-avx2"), c, h, "p.h"), 0);
    fclose(c);
    fclose(h);
    assert_non_null(strstr(text, "_mm256_fmadd_ps(fu_a, fu_b0, fu_c0_0)"));
    assert_non_null(strstr(text, "_mm256_broadcast_ss(fu_ap + "));
    assert_non_null(strstr(text, "fu_c5_1"));   /* the 6 x 16 tile */
    assert_null(strstr(text, "fu_c6_0"));
    free(text);
}

/* Identical input gives byte-identical output. */
static void test_deterministic(void **state) {
    (void)state;
    char *text[2] = {NULL, NULL};
    size_t len[2];
    for (int i = 0; i < 2; i++) {
        Graph *g = compile_block("block q { dim T; input x: f32[T, 32]; weight nw: f32[32];\n"
                                 "  weight w: f32[48, 32]; weight b: f32[48];\n"
                                 "  n = rms_norm(x, nw); l = linear(n, w, b); y = relu(l); output y = y; }\n");
        fuse(g, KK_GEMM, "n l y");
        FILE *c = open_memstream(&text[i], &len[i]), *h = fopen("/dev/null", "w");
        assert_int_equal(emit_c(g, target_find("x86-64-avx512"), c, h, "q.h"), 0);
        fclose(c);
        fclose(h);
    }
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(text[0], text[1], len[0]);
    free(text[0]);
    free(text[1]);
}

/* Kernels outside the contract are refused with a reason. */
static void test_supports(void **state) {
    (void)state;
    Graph *g = compile_block("block r { dim T; input x: f32[T, 8]; weight w: f32[8, 8];\n"
                             "  l = linear(x, w); s = softmax(l); output s = s; }\n");
    Node *l = by_label(g, "l"), *s = by_label(g, "s");
    sched_merge(g, l->kernel, s->kernel);
    g->kernels[l->kernel]->kind = KK_GEMM;
    sched_compact(g);
    char why[256] = "";
    assert_false(emit_gemm_supports(g->kernels[0], why, sizeof why));
    assert_non_null(strstr(why, "softmax"));
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_gemm.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (getenv("TEST_GEMM_KEEP"))
        return 0;
    const char *names[] = {"blk.c", "blk.h", "blk.o", "driver.c", "blk_prog", "in.bin", "out.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(tmp_path(names[i]));
    rmdir(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_avx2_instructions),
        cmocka_unit_test(test_linear_single),
        cmocka_unit_test(test_matmul_single),
        cmocka_unit_test(test_gemm_epilogue),
        cmocka_unit_test(test_gemm_gelu_in_out),
        cmocka_unit_test(test_gemm_swiglu_pair),
        cmocka_unit_test(test_gemm_norm_qkv_rope),
        cmocka_unit_test(test_gemm_layer_norm_stored),
        cmocka_unit_test(test_mlp_swiglu),
        cmocka_unit_test(test_mlp_gpt2),
        cmocka_unit_test(test_mlp_deep),
        cmocka_unit_test(test_mlp_row_blocks),
    };
    /* TEST_GEMM_ONLY=pattern runs the matching tests; TEST_GEMM_KEEP keeps the files */
    if (getenv("TEST_GEMM_ONLY"))
        cmocka_set_test_filter(getenv("TEST_GEMM_ONLY"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
