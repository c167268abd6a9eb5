/*
 * test_cost.c - the cost model (compiler/cost.c): that it ranks known
 * cases the way the machine does, on given peaks (never on timings), that
 * the fusion passes follow it, and the tune file's format and errors.
 *
 * The known cases: the Llama-3.2-1B MLP (D 2048, F 8192) fused as one
 * kernel gains nothing at T = 1 (both ways stream the same 192 MiB of
 * weights) and loses at T = 512 (W5b in docs/benchmarks.md: 0.87x-0.99x),
 * so it is not fused; on a machine whose memory is slow next to its FMA
 * units and whose fused MLP runs at the plain GEMM's rate, keeping the
 * [T, F] intermediate out of memory pays and it is.  A row block smaller
 * than T streams the weights once per block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fusec.h"

static const char mlp_src[] =
    "block mlp {\n"
    "  dim T;\n"
    "  dim D = 2048, F = 8192;\n"
    "  input x: f32[T, D];\n"
    "  weight nw: f32[D];\n"
    "  weight wg: f32[F, D];\n"
    "  weight wu: f32[F, D];\n"
    "  weight wd: f32[D, F];\n"
    "  n = rms_norm(x, nw, eps = 1e-5);\n"
    "  h = silu(linear(n, wg)) * linear(n, wu);\n"
    "  output y = x + linear(h, wd);\n"
    "}\n";

static Graph *front(const char *text) {
    Graph *g = fe_compile_string("t.fdl", text, NULL);
    assert_non_null(g);
    ir_verify(g, "sema");
    ir_dce(g);
    return g;
}

static Graph *compile(const char *text, const char *target, const Machine *m, bool fuse_all) {
    Graph *g = front(text);
    Options o = {1, target, 0, false, m, fuse_all};
    compile_passes(g, &o);
    return g;
}

static bool has_kind(const Graph *g, KernelKind k) {
    for (int i = 0; i < g->nkernels; i++)
        if (g->kernels[i]->kind == k)
            return true;
    return false;
}

static bool has_note(const Graph *g, const char *text) {
    for (int i = 0; i < g->nfuse_notes; i++)
        if (strstr(g->fuse_notes[i], text))
            return true;
    return false;
}

/* The predicted times at T = t of the MLP as one kernel and as the two
 * GEMM kernels built without it (--fuse-all, --no-fuse=mlp). */
static void mlp_times(const Machine *m, int64_t t, double *fused, double *unfused) {
    Graph *f = compile(mlp_src, m->target, m, true);
    Options o = {1, m->target, FUSE_MLP, false, m, true};
    Graph *u2 = front(mlp_src);
    compile_passes(u2, &o);
    assert_true(has_kind(f, KK_MLP) && !has_kind(u2, KK_MLP) && u2->nkernels == 2);
    int64_t syms[FU_MAX_SYMS] = {t};
    *fused = *unfused = 0;
    for (int k = 0; k < f->nkernels; k++)
        *fused += cost_kernel(f, f->kernels[k], m, syms).t;
    for (int k = 0; k < u2->nkernels; k++)
        *unfused += cost_kernel(u2, u2->kernels[k], m, syms).t;
}

/* ---- ranking ------------------------------------------------------------------------- */

static void test_mlp_decode_vs_prefill(void **state) {
    (void)state;
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    for (int th = 1; th <= 2; th++) {
        m.threads = th;
        double f1, u1, f512, u512;
        mlp_times(&m, 1, &f1, &u1);
        mlp_times(&m, 512, &f512, &u512);
        /* decode: the weights' stream dominates both, within the model's resolution */
        assert_true(f1 <= u1 * (1 + m.tol) && u1 <= f1 * (1 + m.tol));
        /* prefill: the fused MLP is slower, and fusion pays less than at decode */
        assert_true(f512 > u512 * (1 + m.tol));
        assert_true(u1 / f1 > u512 / f512);
        /* time grows with T: 512 rows are compute-bound, far above one row */
        assert_true(u512 > 10 * u1);
        /* so the pass refuses it, saying why */
        Graph *g = compile(mlp_src, "x86-64-avx512", &m, false);
        assert_false(has_kind(g, KK_MLP));
        assert_true(has_note(g, "mlp: the MLP ending in %"));
        assert_true(has_note(g, "not fused, it does not pay"));
    }
    /* --fuse-all builds it whatever the model says */
    assert_true(has_kind(compile(mlp_src, "x86-64-avx512", &m, true), KK_MLP));
}

static void test_mlp_pays_on_slow_memory(void **state) {
    (void)state;
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    m.p.bw1_gbs = m.p.bw_gbs = 0.5;   /* memory starved: h's trip to memory costs */
    m.mlp_eff = 1.0;                  /* and the fused stages run as fast as plain GEMMs */
    double f512, u512;
    mlp_times(&m, 512, &f512, &u512);
    assert_true(u512 > f512 * (1 + m.tol));
    Graph *g = compile(mlp_src, "x86-64-avx512", &m, false);
    assert_true(has_kind(g, KK_MLP));
    assert_true(has_note(g, ": fused (cost: decode"));
}

/* The fused MLP's kernel of f. */
static const Kernel *mlp_kernel(const Graph *f) {
    const Kernel *mk = NULL;
    for (int k = 0; k < f->nkernels; k++)
        if (f->kernels[k]->kind == KK_MLP)
            mk = f->kernels[k];
    assert_non_null(mk);
    return mk;
}

/* T = 512 fits one row block of h (2^22 floats / 8192 = 512 rows): the
 * weights stream once; T = 600 needs two blocks: once more. */
static void test_mlp_row_blocks(void **state) {
    (void)state;
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    Graph *f = compile(mlp_src, "x86-64-avx512", &m, true);
    const Kernel *mk = mlp_kernel(f);
    int64_t s512[FU_MAX_SYMS] = {512}, s600[FU_MAX_SYMS] = {600};
    CostEst a = cost_kernel(f, mk, &m, s512), b = cost_kernel(f, mk, &m, s600);
    double weights = 3.0 * 2048 * 8192 * 4;
    assert_true(a.extra_rd == 0);
    assert_true(b.extra_rd == weights);
    /* the prologue norm is applied again per 512-column block of 2 x 8192 columns */
    assert_true(a.extra_flops == 4.0 * 512 * 2048 * (32 - 1));
}

/* The model reads the machine's tiles (a tune file's), not the row's:
 * half the row block budget streams the weights once more at T = 512, a
 * column block of 1024 normalises A again half as often. */
static void test_tiles_from_machine(void **state) {
    (void)state;
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    assert_int_equal(m.tiles.nc, target_find("x86-64-avx512")->tiles->nc);
    Graph *f = compile(mlp_src, "x86-64-avx512", &m, true);
    const Kernel *mk = mlp_kernel(f);
    int64_t s512[FU_MAX_SYMS] = {512};
    m.tiles.mlp_floats = (int64_t)1 << 21;
    m.tiles.nc = 1024;
    CostEst a = cost_kernel(f, mk, &m, s512);
    assert_true(a.extra_rd == 3.0 * 2048 * 8192 * 4);
    assert_true(a.extra_flops == 4.0 * 512 * 2048 * (16 - 1));
    /* and --tune's target carries them to the emitters; equal tiles: the row itself */
    const Target *t = target_find("x86-64-avx512"), *u = target_tuned(t, &m.tiles);
    assert_true(u != t && u->tiles->nc == 1024 && t->tiles->nc == 512 && !strcmp(u->name, t->name));
    assert_ptr_equal(target_tuned(t, t->tiles), t);
    const Target *mt = target_find("multi:x86-64-avx512,generic");
    Machine mm = cost_defaults(mt);
    mm.tiles.fa_bk = 128;
    const Target *mu = target_tuned(mt, &mm.tiles);
    assert_true(mu->variants[0]->tiles->fa_bk == 128 && mu->variants[1] == mt->variants[1]);
}

/* Traffic counts bytes as stored: a linear's weight at 4, 2, 34/32 and
 * 18/32 bytes per element for f32, bf16, q8_0 and q4_0, and an f16 cache at
 * 2 bytes per element (both the rows attention reads and those append writes). */
static double kernels_rd(const char *src, int64_t t, int64_t p, double *wr) {
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    Graph *g = compile(src, "x86-64-avx512", &m, false);
    int64_t syms[FU_MAX_SYMS] = {t, p};
    double rd = 0;
    *wr = 0;
    for (int k = 0; k < g->nkernels; k++) {
        CostEst e = cost_kernel(g, g->kernels[k], &m, syms);
        rd += e.rd;
        *wr += e.wr;
    }
    return rd;
}

static void test_stored_bytes(void **state) {
    (void)state;
    static const char *const types[] = {"f32", "bf16", "q8_0", "q4_0"};
    static const double per_elem[] = {4.0, 2.0, 34.0 / 32, 18.0 / 32};
    for (int i = 0; i < 4; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "block l {\n  dim T;\n  input x: f32[T, 64];\n  weight w: %s[96, 64];\n"
                 "  output y = linear(x, w);\n}\n", types[i]);
        double wr, rd = kernels_rd(src, 1, 0, &wr);
        assert_true(rd == 64 * 4 + 96 * 64 * per_elem[i]);
        assert_true(wr == 96 * 4);
    }
    static const char cache_src[] =
        "block a {\n  dim T, P;\n  input q: f32[T, 16];\n  input k: f32[T, 16];\n"
        "  cache kc: %s[P, 16];\n  cache vc: %s[P, 16];\n"
        "  output y = attention(q, append(kc, k), append(vc, k), heads = 1, causal = true);\n}\n";
    double wr32, wr16, rd32, rd16;
    char src[512];
    snprintf(src, sizeof src, cache_src, "f32", "f32");
    rd32 = kernels_rd(src, 3, 5, &wr32);
    snprintf(src, sizeof src, cache_src, "f16", "f16");
    rd16 = kernels_rd(src, 3, 5, &wr16);
    /* 2 caches of 8 rows of 16 read, 3 rows of 16 appended to each: 2 bytes less each */
    assert_true(rd32 - rd16 == 2 * 8 * 16 * 2.0);
    assert_true(wr32 - wr16 == 2 * 3 * 16 * 2.0);
}

/* The decision rule on given numbers: no point may lose beyond tol, and
 * the gains must sum above zero. */
static void test_decide(void **state) {
    (void)state;
    Graph *g = front(mlp_src);
    Machine m = cost_defaults(target_find("generic"));
    double f1[2] = {1e-3, 1e-3}, u1[2] = {1.1e-3, 1e-3};
    assert_true(cost_decide(g, &m, "t", "a", f1, u1));
    double f2[2] = {1e-3, 1.05e-3}, u2[2] = {1.5e-3, 1e-3};   /* a 5% loss at prefill */
    assert_false(cost_decide(g, &m, "t", "b", f2, u2));
    double f3[2] = {1e-3, 1.01e-3}, u3[2] = {1e-3, 1e-3};   /* within tol, but no gain anywhere */
    assert_false(cost_decide(g, &m, "t", "c", f3, u3));
    assert_true(has_note(g, "t: b: not fused, it does not pay (cost: decode 1 ms fused / 1.5 ms unfused (+50.0%); "
                            "prefill 1.05 ms fused / 1 ms unfused (-4.8%); generic, 1 thread)"));
}

/* ---- the tune file -------------------------------------------------------------------- */

static const char *write_tmp(const char *text) {
    static char path[64];
    static int n;
    snprintf(path, sizeof path, "/tmp/test_cost_%d_%d.tune", (int)getpid(), n++);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_error(const char *text, const char *msg) {
    const char *p = write_tmp(text);
    Machine m;
    char why[512];
    assert_false(cost_read_tune(p, &m, why, sizeof why));
    if (!strstr(why, msg))
        fail_msg("expected '%s' in '%s'", msg, why);
    remove(p);
}

static void test_tune_roundtrip(void **state) {
    (void)state;
    Machine m = cost_defaults(target_find("x86-64-avx512"));
    m.threads = 2;
    m.p.fma_gflops = 123.5;
    m.p.bw_gbs = 30;
    m.p.l3 = 16 << 20;
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_cost_rt_%d.tune", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    cost_write_tune(f, &m, "a test");
    fclose(f);
    Machine r;
    char why[512];
    assert_true(cost_read_tune(path, &r, why, sizeof why));
    assert_string_equal(r.target, "x86-64-avx512");
    assert_int_equal(r.threads, 2);
    assert_true(r.p.fma_gflops == 123.5 && r.p.bw_gbs == 30 && r.p.l3 == 16 << 20);
    assert_true(r.gemm_eff == m.gemm_eff && r.mlp_eff == m.mlp_eff);
    assert_true(r.tiles.kc == m.tiles.kc && r.tiles.nc == m.tiles.nc && r.tiles.fa_bk == m.tiles.fa_bk &&
                r.tiles.mlp_floats == m.tiles.mlp_floats && r.tiles.mr == m.tiles.mr);
    /* the options take it for its own target only */
    Options o = {1, "x86-64-avx512", 0, false, NULL, false};
    assert_true(cost_use_tune(&o, path, why, sizeof why));
    assert_non_null(o.machine);
    Options q = {1, "generic", 0, false, NULL, false};
    assert_false(cost_use_tune(&q, path, why, sizeof why));
    assert_non_null(strstr(why, "the tune file measured target x86-64-avx512, not generic"));
    remove(path);
    /* a partial file keeps the target's defaults */
    const char *p = write_tmp("# hand-written\nfusec-tune 1\ntarget x86-64-avx2\nbw_gbs 50 # more\n");
    assert_true(cost_read_tune(p, &r, why, sizeof why));
    assert_true(r.p.bw_gbs == 50 && r.p.fma_gflops == target_find("x86-64-avx2")->peaks->fma_gflops);
    remove(p);
    /* tile keys, given before the target line too */
    p = write_tmp("fusec-tune 1\nattn_key_block 32\ntarget x86-64-avx2\ngemm_nc 256\ngemv_chunk 1024\n");
    assert_true(cost_read_tune(p, &r, why, sizeof why));
    assert_true(r.tiles.fa_bk == 32 && r.tiles.nc == 256 && r.tiles.gch == 1024 && r.tiles.kc == 256 && r.tiles.mr == 6);
    remove(p);
}

static void test_tune_errors(void **state) {
    (void)state;
    expect_error("", ":1: error: empty: expected the header 'fusec-tune 1'");
    expect_error("target generic\n", ":1: error: expected the header 'fusec-tune 1'");
    expect_error("fusec-tune 2\n", ":1: error: tune file version '2'");
    expect_error("fusec-tune 1\nthreads 2\n", ":2: error: no 'target' line");
    expect_error("fusec-tune 1\ntarget avx512\n", ":2: error: unknown target 'avx512'; did you mean 'x86-64-avx512'?");
    expect_error("fusec-tune 1\ntarget multi:generic\n", "not multi:");
    expect_error("fusec-tune 1\ntarget generic\nfma 3\n", ":3: error: unknown key 'fma' (keys: target, threads,");
    expect_error("fusec-tune 1\ntarget generic\nbw_gbs fast\n", ":3: error: 'fast' is not a number");
    expect_error("fusec-tune 1\ntarget generic\nbw_gbs nan\n", ":3: error: 'nan' is not a number");
    expect_error("fusec-tune 1\ntarget generic\nthreads 0\n", ":3: error: threads 0 is out of range");
    expect_error("fusec-tune 1\ntarget generic\nthreads 1.5\n", ":3: error: threads 1.5 is out of range");
    expect_error("fusec-tune 1\ntarget generic\ngemm_eff 2\n", ":3: error: gemm_eff 2 is out of range");
    expect_error("fusec-tune 1\ntarget generic\nthreads 2\nthreads 2\n", ":4: error: 'threads' given twice");
    expect_error("fusec-tune 1\ntarget generic\ntarget generic\n", ":3: error: 'target' given twice");
    expect_error("fusec-tune 1\ntarget generic\nthreads 2 3\n", ":3: error: expected 'KEY VALUE'");
    expect_error("fusec-tune 1\ntarget generic\nbw1_gbs 40\nbw_gbs 20\n", "bw_gbs (all threads) is below bw1_gbs");
    expect_error("fusec-tune 1\ntarget x86-64-avx2\ngemm_mc 100\n",
                 ":3: error: gemm_mc 100 is not a multiple of the register tile's rows (mr), 6 on x86-64-avx2");
    expect_error("fusec-tune 1\ntarget x86-64-avx2\ngemv_chunk 24\n", ":3: error: gemv_chunk 24 is not a multiple of");
    expect_error("fusec-tune 1\ntarget x86-64-avx2\ngemm_kc 40\n", ":3: error: gemm_kc 40 is not a multiple of 16");
    expect_error("fusec-tune 1\ntarget x86-64-avx2\nattn_key_block 24\n",
                 ":3: error: attn_key_block 24 is not a multiple of the keys of one register block of scores, 16");
    expect_error("fusec-tune 1\ntarget generic\nattn_key_block 2048\n", ":3: error: attn_key_block 2048 is out of range");
    expect_error("fusec-tune 1\ntarget generic\nmlp_floats 100\n", ":3: error: mlp_floats 100 is out of range");
    expect_error("fusec-tune 1\ntarget generic\ngemm_mchunk 64\ngemm_mc 128\n", ":4: error: gemm_mc 128 is above gemm_mchunk 64");
    expect_error("fusec-tune 1\ntarget generic\ngemm_mchunk 64\n", ":3: error: gemm_mc 128 is above gemm_mchunk 64");
    Machine m;
    char why[512];
    assert_false(cost_read_tune("/nonexistent/x.tune", &m, why, sizeof why));
    assert_non_null(strstr(why, "/nonexistent/x.tune: error: cannot read the tune file"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_decode_vs_prefill),
        cmocka_unit_test(test_mlp_pays_on_slow_memory),
        cmocka_unit_test(test_mlp_row_blocks),
        cmocka_unit_test(test_tiles_from_machine),
        cmocka_unit_test(test_stored_bytes),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_tune_roundtrip),
        cmocka_unit_test(test_tune_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
