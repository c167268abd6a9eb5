/*
 * test_sema.c - graphs that sema builds from small DSL programs: which
 * nodes, in which order, with which types and attributes; symbols and
 * constant dims; fns, imports (through real temporary files) and block
 * selection; and that errors are counted, located and not cascaded.
 * Expected graphs are worked out by hand from the programs; the examples
 * in dsl-examples/ must compile to graphs that pass ir_check (tests run
 * from the repository root).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fusec.h"

/* ---- helpers --------------------------------------------------------------- */

static char *errors_text;

static char *capture_end(FILE *tmp, int saved) {
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    long size = ftell(tmp);
    assert_true(size >= 0);
    char *out = fu_alloc((size_t)size + 1);
    rewind(tmp);
    size_t got = fread(out, 1, (size_t)size, tmp);
    out[got] = '\0';
    fclose(tmp);
    return out;
}

static FILE *capture_begin(int *saved) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    *saved = dup(2);
    assert_true(*saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    return tmp;
}

/* Compiles text as "t.fdl" with stderr captured into errors_text. */
static Graph *compile_block(const char *text, const char *block) {
    int saved;
    FILE *tmp = capture_begin(&saved);
    Graph *g = fe_compile_string("t.fdl", text, block);
    errors_text = capture_end(tmp, saved);
    return g;
}

static Graph *compile(const char *text) { return compile_block(text, NULL); }

static Graph *compile_path(const char *path, const char *block) {
    int saved;
    FILE *tmp = capture_begin(&saved);
    Graph *g = fe_compile_file(path, block);
    errors_text = capture_end(tmp, saved);
    return g;
}

/* Compiles and checks the graph is well formed. */
static Graph *compile_ok(const char *text) {
    Graph *g = compile(text);
    if (!g)
        fail_msg("unexpected errors:\n%s", errors_text);
    char why[512];
    if (!ir_check(g, why, sizeof why))
        fail_msg("ir_check: %s", why);
    assert_int_equal(diag_error_count(), 0);
    return g;
}

/* The n-th node (0-based) with op, or NULL. */
static Node *find(const Graph *g, Op op, int nth) {
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == op && nth-- == 0)
            return g->nodes[i];
    return NULL;
}

static int count(const Graph *g, Op op) {
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i]->op == op;
    return n;
}

static const char *type_of(const Graph *g, const Node *n) {
    Buf b = {0};
    ir_type_str(&b, n, g);
    char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

/* Builtins applied to numbers fold to constants, against values computed
 * elsewhere (Phi(1) for gelu, the tanh form's published value). */
static void test_constant_folding(void **state) {
    (void)state;
    Graph *g = compile_ok("block f { dim T; input x: f32[T, 2];\n"
                          "  output y: f32[T, 2] = x * neg(2.0) + exp(1.0) + sqrt(4.0) + recip(8.0) + tanh(0.5)\n"
                          "    + sigmoid(0.25) + silu(1.5) + relu(-3.0) + gelu(1.0) + gelu_tanh(1.0) + rsqrt(16.0); }\n");
    static const double want[] = {-2.0,         2.718281828459045, 2.0,   0.125, 0.46211715726000974,
                                  0.5621765008857981, 1.2263617142904656, 0.0, 0.8413447460685429,
                                  0.8411919906082768, 0.25};
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->op != OP_CONST)
            continue;
        assert_true(k < (int)(sizeof want / sizeof *want));
        if (fabs(n->f[0] - want[k]) > 1e-12 * (1 + fabs(want[k])))
            fail_msg("constant %d: %.17g, expected %.17g", k, n->f[0], want[k]);
        k++;
    }
    assert_int_equal(k, (int)(sizeof want / sizeof *want));
    assert_null(compile("block f { dim T; input x: f32[T, 2]; output y: f32[T, 2] = x * sqrt(-1.0); }\n"));
    assert_non_null(strstr(errors_text, "t.fdl:1:64: error: 'sqrt' of -1 is not a finite number"));
}

/* With no error limit (the fuzz harness's setting) every error is reported
 * and compiling goes on past DIAG_MAX_ERRORS; forgetting the sources drops
 * the quoted line but not the located message. */
static void test_error_limit_and_sources(void **state) {
    (void)state;
    Buf b = {0};
    buf_puts(&b, "block b { dim T; input x: f32[T, 4];\n");
    for (int i = 0; i < DIAG_MAX_ERRORS + 5; i++)
        buf_printf(&b, "  a%d = x + nope%d;\n", i, i);
    buf_puts(&b, "  output y = x; }\n");
    diag_set_max_errors(0);
    assert_null(compile(b.data));
    diag_set_max_errors(DIAG_MAX_ERRORS);
    free(b.data);
    assert_int_equal(diag_error_count(), DIAG_MAX_ERRORS + 5);
    char want[64];
    snprintf(want, sizeof want, "t.fdl:%d:13: error: unknown name 'nope%d'\n", DIAG_MAX_ERRORS + 6,
             DIAG_MAX_ERRORS + 4);
    assert_non_null(strstr(errors_text, want));
    assert_null(strstr(errors_text, "too many errors"));
    assert_non_null(strstr(errors_text, "\n    2 |   a0 = x + nope0;\n"));
    diag_reset();
    int saved;
    FILE *tmp = capture_begin(&saved);
    diag_forget_sources();
    diag_error((SrcLoc){"t.fdl", 2, 12, 5}, "again");
    errors_text = capture_end(tmp, saved);
    assert_string_equal(errors_text, "t.fdl:2:12: error: again\n");
}

static int setup(void **state) {
    (void)state;
    diag_reset();
    return 0;
}

/* ---- graphs ------------------------------------------------------------------ */

static void test_minimal_block(void **state) {
    (void)state;
    Graph *g = compile_ok("block b {\n"
                          "    dim T;\n"
                          "    input x: f32[T, 4];\n"
                          "    h = silu(x) * 2;\n"
                          "    output y = h - x;\n"
                          "}\n");
    assert_string_equal(g->name, "b");
    assert_int_equal(g->nsyms, 1);
    assert_string_equal(g->sym_names[0], "T");
    /* input, silu, const 2, mul, sub, output: in program order */
    const Op ops[] = {OP_INPUT, OP_SILU, OP_CONST, OP_MUL, OP_SUB, OP_OUTPUT};
    assert_int_equal(g->nnodes, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(g->nodes[i]->op, ops[i]);
    assert_true(g->nodes[2]->f[0] == 2.0);
    assert_int_equal(g->nodes[2]->rank, 0);
    Node *mul = g->nodes[3];
    assert_ptr_equal(mul->in[0], g->nodes[1]);
    assert_ptr_equal(mul->in[1], g->nodes[2]);
    assert_string_equal(mul->label, "h");
    assert_int_equal(mul->rank, 2);
    assert_true(dim_eq(mul->shape[0], dim_sym(0)));
    assert_true(dim_eq(mul->shape[1], dim_const(4)));
    Node *sub = g->nodes[4];
    assert_ptr_equal(sub->in[0], mul);
    assert_ptr_equal(sub->in[1], g->nodes[0]);
    assert_int_equal(g->ninputs, 1);
    assert_string_equal(g->inputs[0]->name, "x");
    assert_int_equal(g->noutputs, 1);
    assert_string_equal(g->outputs[0]->name, "y");
    assert_ptr_equal(g->outputs[0]->in[0], sub);
    assert_int_equal(g->cache_sym, -1);
    /* source locations reach the nodes */
    assert_string_equal(mul->loc.file, "t.fdl");
    assert_int_equal(mul->loc.line, 4);
    assert_int_equal(mul->loc.col, 17);
}

static void test_numbers_fold(void **state) {
    (void)state;
    Graph *g = compile_ok("dim HD = 64;\n"
                          "const c = 1.0 / 8;\n"
                          "block b { dim T; input x: f32[T, 4];\n"
                          "  output y = x * (c + 2 * 0.5) * rsqrt(HD) - -1; }\n");
    /* (c + 1) and rsqrt(64) and -(-1) are numbers: each meets the tensor as one const */
    assert_int_equal(count(g, OP_CONST), 3);
    assert_true(find(g, OP_CONST, 0)->f[0] == 1.125);
    assert_true(find(g, OP_CONST, 1)->f[0] == 0.125);
    assert_true(find(g, OP_CONST, 2)->f[0] == -1.0);
    assert_int_equal(count(g, OP_RSQRT), 0);
    assert_int_equal(count(g, OP_NEG), 0);
    assert_int_equal(count(g, OP_SUB), 1);
}

static void test_dims_and_symbols(void **state) {
    (void)state;
    Graph *g = compile_ok("dim HD = 32;\n"
                          "block b {\n"
                          "  dim T, P;\n"
                          "  dim H = 8, KVH = H / 4, Q = H * HD;\n"
                          "  dim S = P + T, T2 = (2 * T) / 2;\n"
                          "  input x: f32[T2, Q];\n"
                          "  cache k: f32[P, KVH * HD];\n"
                          "  kv = append(k, slice(x, axis = -1, start = 0, len = KVH * HD));\n"
                          "  r = reshape(kv, [S, KVH, HD]);\n"
                          "  output y = r;\n"
                          "}\n");
    assert_int_equal(g->nsyms, 2);
    assert_string_equal(g->sym_names[0], "T");
    assert_string_equal(g->sym_names[1], "P");
    assert_int_equal(g->cache_sym, 1);
    /* constant dims in order: the file's, then the block's */
    assert_int_equal(g->nconsts, 4);
    const char *names[] = {"HD", "H", "KVH", "Q"};
    const int64_t values[] = {32, 8, 2, 256};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(g->const_names[i], names[i]);
        assert_int_equal(g->const_values[i], values[i]);
    }
    Node *x = g->inputs[0];
    assert_string_equal(type_of(g, x), "f32[T, 256]");
    Node *sl = find(g, OP_SLICE, 0);
    assert_int_equal(sl->i[0], 1);      /* axis -1 normalized */
    assert_int_equal(sl->i[1], 0);
    assert_int_equal(sl->i[2], 64);
    Node *ap = find(g, OP_APPEND, 0);
    assert_true(dim_eq(ap->shape[0], dim_add(dim_sym(1), dim_sym(0))));
    Node *rs = find(g, OP_RESHAPE, 0);
    assert_int_equal(rs->rank, 3);
    assert_true(dim_eq(rs->shape[0], dim_add(dim_sym(0), dim_sym(1))));
    assert_true(dim_eq(rs->shape[1], dim_const(2)));
    assert_true(dim_eq(rs->shape[2], dim_const(32)));
}

static void test_builtin_attributes(void **state) {
    (void)state;
    Graph *g = compile_ok("block b {\n"
                          "  dim T, P;\n"
                          "  input x: f32[T, 256];\n"
                          "  input pos: i32[T];\n"
                          "  weight w: f32[256];\n"
                          "  weight bias: f32[256];\n"
                          "  weight wio: f32[256, 64];\n"
                          "  cache kc: f32[P, 64];\n"
                          "  cache vc: f32[P, 64];\n"
                          "  n1 = rms_norm(x, w);\n"
                          "  n2 = layer_norm(x, w, bias, eps = 1e-6);\n"
                          "  l = linear(x, wio, layout = \"in_out\");\n"
                          "  q = rope(x, pos, head_dim = 32);\n"
                          "  k = rope(l, pos, head_dim = 32, theta = 500000);\n"
                          "  a = attention(q, append(kc, k), append(vc, l), heads = 8, kv_heads = 2, causal = true);\n"
                          "  a2 = attention(n1, n2, n2, heads = 2, scale = 0.5);\n"
                          "  s = sum(n2) + mean(n2, axis = 0) + max(n2, axis = -2);\n"
                          "  t = transpose(l);\n"
                          "  c = concat(l, l, axis = 0);\n"
                          "  output y = a + s + a2;\n"
                          "  output z = matmul(t, l);\n"
                          "}\n");
    assert_true(find(g, OP_RMS_NORM, 0)->f[0] == 1e-5);
    assert_true(find(g, OP_LAYER_NORM, 0)->f[0] == 1e-6);
    assert_int_equal(find(g, OP_LINEAR, 0)->i[0], 1);
    Node *r0 = find(g, OP_ROPE, 0), *r1 = find(g, OP_ROPE, 1);
    assert_int_equal(r0->i[0], 32);
    assert_true(r0->f[0] == 10000.0);
    assert_true(r1->f[0] == 500000.0);
    Node *a = find(g, OP_ATTENTION, 0);
    assert_int_equal(a->i[0], 8);
    assert_int_equal(a->i[1], 2);
    assert_int_equal(a->i[2], 32);
    assert_int_equal(a->i[3], 1);
    assert_true(fabs(a->f[0] - 1.0 / sqrt(32.0)) < 1e-15);
    Node *a2 = find(g, OP_ATTENTION, 1);
    assert_int_equal(a2->i[0], 2);
    assert_int_equal(a2->i[1], 2);      /* kv_heads defaults to heads */
    assert_int_equal(a2->i[2], 128);
    assert_int_equal(a2->i[3], 0);      /* causal defaults to false */
    assert_true(a2->f[0] == 0.5);
    assert_int_equal(find(g, OP_SUM, 0)->i[0], 1);     /* default: the last axis */
    assert_int_equal(find(g, OP_MEAN, 0)->i[0], 0);
    assert_int_equal(find(g, OP_MAX, 0)->i[0], 0);
    Node *t = find(g, OP_TRANSPOSE, 0);
    assert_int_equal(t->i[0], 1);
    assert_int_equal(t->i[1], 0);
    assert_string_equal(type_of(g, t), "f32[64, T]");
    assert_int_equal(find(g, OP_CONCAT, 0)->i[0], 0);
    assert_string_equal(type_of(g, find(g, OP_CONCAT, 0)), "f32[2*T, 64]");
    assert_int_equal(g->noutputs, 2);
    assert_string_equal(type_of(g, g->outputs[1]), "f32[64, 64]");
    assert_int_equal(g->cache_sym, 1);
}

static void test_list_arguments(void **state) {
    (void)state;
    Graph *g = compile_ok("block b { dim T; input x: f32[T, 4];\n"
                          "  a = reshape(x, shape = [T, 2, 2]);\n"
                          "  c = transpose(a, perm = [2, 0, 1]);\n"
                          "  output y = transpose(reshape(c, [4, T]), [1, 0]); }\n");
    Node *t0 = find(g, OP_TRANSPOSE, 0), *t1 = find(g, OP_TRANSPOSE, 1);
    assert_int_equal(t0->i[0], 2);
    assert_int_equal(t0->i[1], 0);
    assert_int_equal(t0->i[2], 1);
    assert_string_equal(type_of(g, t0), "f32[2, T, 2]");
    assert_string_equal(type_of(g, t1), "f32[T, 4]");

    diag_reset();
    assert_null(compile("block b { dim T; input x: f32[T, 4];\n"
                        "  a = reshape(x, shape = 3);\n"
                        "  c = reshape(x);\n"
                        "  d = transpose(reshape(x, [T, 2, 2]));\n"
                        "  e = transpose(x, [0, 1, 2]);\n"
                        "  f = reshape(x, [T, 3]);\n"
                        "  output y = x; }\n"));
    assert_int_equal(diag_error_count(), 5);
    assert_non_null(strstr(errors_text, "t.fdl:2:26: error: keyword 'shape' of 'reshape' expects a list, got a number\n"));
    assert_non_null(strstr(errors_text, "t.fdl:3:7: error: 'reshape' needs a list of dimensions, e.g. reshape(x, [T, 8, 32])\n"));
    assert_non_null(strstr(errors_text, "t.fdl:4:7: error: 'transpose' of f32[T, 2, 2] needs a permutation, e.g. [1, 0, 2]\n"));
    assert_non_null(strstr(errors_text, "t.fdl:5:20: error: 'transpose': the permutation has 3 axes but f32[T, 4] has 2\n"));
    assert_non_null(strstr(errors_text, "t.fdl:6:7: error: cannot reshape f32[T, 4] into f32[T, 3]: element counts differ\n"));
}

static void test_fns_inline(void **state) {
    (void)state;
    Graph *g = compile_ok("fn mlp(x, wg, wu, wd) {\n"
                          "  return linear(silu(linear(x, wg)) * linear(x, wu), wd);\n"
                          "}\n"
                          "fn scaled(x, s) { k = 2; return x * (s * k); }\n"
                          "fn twice(x) { return scaled(x, s = 0.25) + scaled(x, 1); }\n"
                          "block b {\n"
                          "  dim T;\n"
                          "  input x: f32[T, 8];\n"
                          "  weight g: f32[16, 8];\n"
                          "  weight u: f32[16, 8];\n"
                          "  weight d: f32[8, 16];\n"
                          "  m = mlp(x, g, u, d);\n"
                          "  output y = twice(m);\n"
                          "}\n");
    /* every call inlined: 3 linears, silu, mul for mlp; 2 x (const, mul) and an add for twice */
    assert_int_equal(count(g, OP_LINEAR), 3);
    assert_int_equal(count(g, OP_SILU), 1);
    assert_int_equal(count(g, OP_MUL), 3);
    assert_int_equal(count(g, OP_CONST), 2);
    assert_true(find(g, OP_CONST, 0)->f[0] == 0.5);
    assert_true(find(g, OP_CONST, 1)->f[0] == 2.0);
    assert_int_equal(count(g, OP_ADD), 1);
    Node *down = find(g, OP_LINEAR, 2);
    assert_ptr_equal(down->in[1], g->weights[2]);
    assert_string_equal(down->label, "m");
    assert_string_equal(type_of(g, g->outputs[0]), "f32[T, 8]");
}

static void test_builtin_names(void **state) {
    (void)state;
    /* values named like builtins leave the builtins callable; a fn shadows one */
    Graph *g = compile_ok("fn exp(x) { return x * 3; }\n"
                          "block b { dim T; input x: f32[T, 4];\n"
                          "  max = x * 2; sum = sum(max, axis = 0);\n"
                          "  output y = max(sum) + exp(x); }\n");
    assert_int_equal(count(g, OP_SUM), 1);
    assert_int_equal(count(g, OP_MAX), 1);
    assert_int_equal(count(g, OP_EXP), 0);
    assert_int_equal(count(g, OP_MUL), 2);
    assert_string_equal(type_of(g, find(g, OP_MAX, 0)), "f32[1, 1]");
}

static void test_outputs_have_their_own_names(void **state) {
    (void)state;
    Graph *g = compile_ok("block b {\n"
                          "  dim T;\n"
                          "  input hidden_states: f32[T, 4];\n"
                          "  output hidden_states: f32[T, 4] = hidden_states * 2;\n"
                          "  output copy = hidden_states;\n"
                          "}\n");
    assert_string_equal(g->inputs[0]->name, "hidden_states");
    assert_string_equal(g->outputs[0]->name, "hidden_states");
    assert_ptr_equal(g->outputs[1]->in[0], g->inputs[0]);
}

static void test_block_selection(void **state) {
    (void)state;
    const char *src = "block one { dim T; input x: f32[T, 2]; output y = x; }\n"
                      "block two { dim T; input x: f32[T, 3]; output y = exp(x); }\n";
    Graph *g = compile(src);
    assert_non_null(g);
    assert_string_equal(g->name, "two");
    g = compile_block(src, "one");
    assert_non_null(g);
    assert_string_equal(g->name, "one");
    assert_string_equal(type_of(g, g->inputs[0]), "f32[T, 2]");
    assert_int_equal(diag_error_count(), 0);
    assert_null(compile_block(src, "three"));
    assert_int_equal(diag_error_count(), 1);
    assert_string_equal(errors_text, "fusec: error: no block named 'three' in 't.fdl'\n");
}

/* ---- imports ---------------------------------------------------------------- */

static char dir[64];

static void write_file(const char *name, const char *text) {
    char *path = fu_format("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int make_dir(void **state) {
    (void)state;
    strcpy(dir, "/tmp/fusec_test_sema_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(mkdir(fu_format("%s/lib", dir), 0700), 0);
    return 0;
}

static void remove_file(const char *name) { unlink(fu_format("%s/%s", dir, name)); }

static int remove_dir(void **state) {
    (void)state;
    const char *files[] = {"main.fdl", "lib/a.fdl", "lib/b.fdl", "lib/common.fdl", "cyc1.fdl",
                           "lib/cyc2.fdl", "missing.fdl", "bad.fdl", "lib/broken.fdl"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        remove_file(files[i]);
    rmdir(fu_format("%s/lib", dir));
    rmdir(dir);
    return 0;
}

static void test_imports(void **state) {
    (void)state;
    /* a diamond: main imports a and b, both import common; common is read
     * once, and a's fn sees common's const through a's own scope */
    write_file("lib/common.fdl", "const two = 2.0;\ndim W = 8;\n");
    write_file("lib/a.fdl", "import \"common.fdl\";\nfn double(x) { return x * two; }\n");
    write_file("lib/b.fdl", "import \"./common.fdl\";\ndim D = W * 2;\n");
    write_file("main.fdl", "import \"lib/a.fdl\";\nimport \"lib/b.fdl\";\n"
                           "block m { dim T; input x: f32[T, D]; output y = double(x); }\n");
    Graph *g = compile_path(fu_format("%s/main.fdl", dir), NULL);
    if (!g)
        fail_msg("%s", errors_text);
    assert_string_equal(type_of(g, g->inputs[0]), "f32[T, 16]");
    assert_int_equal(count(g, OP_MUL), 1);
    assert_true(find(g, OP_CONST, 0)->f[0] == 2.0);
    /* imports are not transitive: main sees D (b's own), not W (common's) */
    assert_int_equal(g->nconsts, 1);
    assert_string_equal(g->const_names[0], "D");
    write_file("main.fdl", "import \"lib/b.fdl\";\n"
                           "block m { dim T; input x: f32[T, W]; output y = x; }\n");
    assert_null(compile_path(fu_format("%s/main.fdl", dir), NULL));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "main.fdl:2:34: error: unknown dimension 'W'\n"));
}

static void test_import_errors(void **state) {
    (void)state;
    write_file("cyc1.fdl", "import \"lib/cyc2.fdl\";\nblock b { dim T; input x: f32[T]; output y = x; }\n");
    write_file("lib/cyc2.fdl", "import \"../cyc1.fdl\";\n");
    assert_null(compile_path(fu_format("%s/cyc1.fdl", dir), NULL));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, fu_format("%s/lib/cyc2.fdl:1:8: error: import cycle: %s/cyc1.fdl -> "
                                                  "%s/lib/cyc2.fdl -> %s/cyc1.fdl\n",
                                                  dir, dir, dir, dir)));

    diag_reset();
    write_file("missing.fdl", "import \"lib/nothing.fdl\";\n"
                              "block b { dim T; input x: f32[T]; output y = f(x) + z; }\n");
    assert_null(compile_path(fu_format("%s/missing.fdl", dir), NULL));
    /* one error: the unknown f and z may come from the missing file */
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, fu_format("%s/missing.fdl:1:8: error: cannot import '%s/lib/nothing.fdl': "
                                                  "No such file or directory\n",
                                                  dir, dir)));

    diag_reset();
    write_file("lib/broken.fdl", "fn f(x) { return x }\n");
    write_file("bad.fdl", "import \"lib/broken.fdl\";\ndim D = 4;\n"
                          "block b { dim T; input x: f32[T, D]; output y = f(x) * q; }\n");
    assert_null(compile_path(fu_format("%s/bad.fdl", dir), NULL));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "lib/broken.fdl:1:20: error: syntax error, unexpected '}', expecting ';'\n"));

    diag_reset();
    assert_null(compile_path(fu_format("%s/no_such_root.fdl", dir), NULL));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "No such file or directory"));
}

/* ---- errors --------------------------------------------------------------------- */

static void test_errors_are_not_cascaded(void **state) {
    (void)state;
    assert_null(compile("block b {\n"
                        "  dim T;\n"
                        "  input x: f32[T, 4];\n"
                        "  weight w: f32[8];\n"
                        "  a = silu(nope);\n"                 /* 1 */
                        "  b = a + 1;\n"
                        "  c = rms_norm(x, w);\n"             /* 2 */
                        "  d = c * b + x;\n"
                        "  e = rms_norm(x, w, bogus = 1);\n"  /* 3 */
                        "  f = softmax(x, x);\n"              /* 4 */
                        "  g = x + \"s\";\n"                  /* 5 */
                        "  output y = d + e + f + g + T;\n"   /* 6: T has no value */
                        "}\n"));
    assert_int_equal(diag_error_count(), 6);
    assert_non_null(strstr(errors_text, "t.fdl:5:12: error: unknown name 'nope'\n"));
    assert_non_null(strstr(errors_text,
                           "t.fdl:7:7: error: 'rms_norm': weight f32[8] does not match the last dimension of f32[T, 4]\n"));
    assert_non_null(strstr(errors_text, "t.fdl:9:22: error: unknown keyword 'bogus' for 'rms_norm'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:10:7: error: 'softmax' takes 1 tensor argument, got 2\n"));
    assert_non_null(strstr(errors_text, "t.fdl:11:9: error: operator '+' needs tensors or numbers, got a string\n"));
    assert_non_null(strstr(errors_text,
                           "t.fdl:12:30: error: symbolic dimension 'T' has no value at compile time; a constant is needed here\n"));
}

static void test_definition_errors(void **state) {
    (void)state;
    assert_null(compile("dim D = 6;\n"
                        "dim H = 4;\n"
                        "dim HD = D / H;\n"                   /* not exact */
                        "dim Z = 0;\n"                        /* not positive */
                        "const c = 1;\n"
                        "const c = 2;\n"                      /* redefinition */
                        "fn f(x) { y = x; }\n"                /* no return */
                        "block b {\n"
                        "  dim T, U;\n"                       /* U unbound */
                        "  dim V = T * T;\n"                  /* symbolic product */
                        "  input x: f32[T, Q];\n"             /* unknown dim: x poisoned, so U is not reported */
                        "  output y = x;\n"
                        "}\n"));
    assert_int_equal(diag_error_count(), 6);
    assert_non_null(strstr(errors_text, "t.fdl:3:12: error: dimension division 6 / 4 is not exact\n"));
    assert_non_null(strstr(errors_text, "t.fdl:4:9: error: dimension 'Z' must be positive, got 0\n"));
    assert_non_null(strstr(errors_text, "t.fdl:6:7: error: redefinition of 'c'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:5:7: note: 'c' was first defined here\n"));
    assert_non_null(strstr(errors_text, "t.fdl:7:4: error: fn 'f' has no 'return'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:10:13: error: cannot multiply symbolic dimensions T and T\n"));
    assert_non_null(strstr(errors_text, "t.fdl:11:19: error: unknown dimension 'Q'\n"));

    diag_reset();
    assert_null(compile("block b { dim T, U; input x: f32[T, 2]; output y = x; }"));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "t.fdl:1:18: error: symbolic dimension 'U' cannot be bound: "
                                        "no input or cache has it as a dimension\n"));

    diag_reset();
    assert_null(compile("block b { dim T; input x: f32[T, 2]; h = x; }"));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "t.fdl:1:7: error: block 'b' has no outputs\n"));

    diag_reset();
    assert_null(compile("block b { dim T, P; input x: f32[T, 2]; cache k: f32[P, 2]; cache v: f32[T, 2];"
                        " output y = append(k, x) + append(v, x); }"));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "error: cache 'v' is indexed by 'T' but other caches by 'P'\n"));

    diag_reset();
    assert_null(compile("block b { dim T; input x: f32[T, 2]; weight a.b: f32[2]; weight a_b: f32[2];"
                        " output y = x * a.b * a_b; }"));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "error: weights 'a.b' and 'a_b' both become the C name 'a_b'\n"));
}

static void test_fn_errors(void **state) {
    (void)state;
    assert_null(compile("fn f(x, y) { return x + y; }\n"
                        "fn r(x) { return r(x); }\n"
                        "block b { dim T; input x: f32[T, 2];\n"
                        "  a = f(x);\n"
                        "  c = f(x, x, x);\n"
                        "  d = f(x, z = x);\n"
                        "  e = r(x);\n"
                        "  g = x(1);\n"
                        "  h = smax(x);\n"
                        "  output y = x; }\n"));
    assert_int_equal(diag_error_count(), 6);
    assert_non_null(strstr(errors_text, "t.fdl:4:7: error: fn 'f' takes 2 arguments, got no value for 'y'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:5:7: error: fn 'f' takes 2 arguments, got 3\n"));
    assert_non_null(strstr(errors_text, "t.fdl:6:12: error: fn 'f' has no parameter 'z'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:2:18: error: recursive call to fn 'r'; fns are inlined and cannot recurse\n"));
    assert_non_null(strstr(errors_text, "t.fdl:7:7: note: in the call to 'r' here\n"));
    assert_non_null(strstr(errors_text, "t.fdl:8:7: error: 'x' is not a function\n"));
    assert_non_null(strstr(errors_text, "t.fdl:9:7: error: unknown function 'smax'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:9:7: note: did you mean 'max'?\n"));
}

static void test_nesting_limit(void **state) {
    (void)state;
    Buf b = {0};
    buf_puts(&b, "block b { dim T; input x: f32[T, 2]; output y = ");
    for (int i = 0; i < FE_MAX_NESTING + 50; i++)
        buf_puts(&b, "-(");
    buf_puts(&b, "x");
    for (int i = 0; i < FE_MAX_NESTING + 50; i++)
        buf_puts(&b, ")");
    buf_puts(&b, "; }");
    assert_null(compile(b.data));
    free(b.data);
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "error: expression nested too deeply (more than 200 levels)\n"));

    /* well inside the limit it compiles, to a chain of negations */
    diag_reset();
    b = (Buf){0};
    buf_puts(&b, "block b { dim T; input x: f32[T, 2]; output y = ");
    for (int i = 0; i < 150; i++)
        buf_puts(&b, "-(");
    buf_puts(&b, "x");
    for (int i = 0; i < 150; i++)
        buf_puts(&b, ")");
    buf_puts(&b, "; }");
    Graph *g = compile_ok(b.data);
    free(b.data);
    assert_int_equal(count(g, OP_NEG), 150);
}

/* ---- the examples ---------------------------------------------------------------- */

static Graph *example(const char *path) {
    Graph *g = compile_path(path, NULL);
    if (!g)
        fail_msg("%s:\n%s", path, errors_text);
    char why[512];
    if (!ir_check(g, why, sizeof why))
        fail_msg("%s: ir_check: %s", path, why);
    return g;
}

static void test_example_llama(void **state) {
    (void)state;
    Graph *g = example("dsl-examples/llama_layer.fdl");
    assert_string_equal(g->name, "llama_layer");
    assert_int_equal(g->nsyms, 2);
    assert_string_equal(g->sym_names[0], "T");
    assert_string_equal(g->sym_names[1], "P");
    assert_int_equal(g->cache_sym, 1);
    assert_int_equal(g->ninputs, 2);
    assert_int_equal(g->nweights, 9);
    assert_int_equal(g->ncaches, 2);
    assert_int_equal(g->noutputs, 1);
    assert_string_equal(g->weights[1]->name, "self_attn.q_proj.weight");
    assert_string_equal(type_of(g, g->weights[2]), "f32[64, 256]");
    assert_int_equal(count(g, OP_LINEAR), 7);
    assert_int_equal(count(g, OP_RMS_NORM), 2);
    assert_int_equal(count(g, OP_ROPE), 2);
    assert_int_equal(count(g, OP_APPEND), 2);
    Node *a = find(g, OP_ATTENTION, 0);
    assert_non_null(a);
    assert_int_equal(a->i[0], 8);
    assert_int_equal(a->i[1], 2);
    assert_int_equal(a->i[2], 32);
    assert_int_equal(a->i[3], 1);
    assert_string_equal(type_of(g, a->in[1]), "f32[T+P, 64]");
    assert_string_equal(type_of(g, g->outputs[0]), "f32[T, 256]");
}

static void test_example_gpt2(void **state) {
    (void)state;
    Graph *g = example("dsl-examples/gpt2_block.fdl");
    assert_int_equal(g->nweights, 12);
    assert_int_equal(count(g, OP_LAYER_NORM), 2);
    assert_int_equal(count(g, OP_LINEAR), 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(find(g, OP_LINEAR, i)->i[0], 1);
        assert_int_equal(find(g, OP_LINEAR, i)->nin, 3);
    }
    assert_int_equal(count(g, OP_SLICE), 3);
    assert_int_equal(find(g, OP_SLICE, 2)->i[1], 512);
    assert_int_equal(count(g, OP_GELU_TANH), 1);
    Node *a = find(g, OP_ATTENTION, 0);
    assert_int_equal(a->i[1], 8);
    assert_int_equal(a->i[2], 32);
}

static void test_example_llama_prim(void **state) {
    (void)state;
    Graph *g = example("dsl-examples/llama_layer_prim.fdl");
    assert_int_equal(count(g, OP_ATTENTION), 0);
    assert_int_equal(count(g, OP_RMS_NORM), 0);
    assert_int_equal(count(g, OP_MATMUL), 2);
    assert_int_equal(count(g, OP_SOFTMAX), 1);
    assert_int_equal(count(g, OP_CAUSAL_MASK), 1);
    /* grouped-query heads: q [KVH, G, T, HD] against k [KVH, 1, HD, S] */
    Node *qk = find(g, OP_MATMUL, 0);
    assert_string_equal(type_of(g, qk->in[0]), "f32[2, 4, T, 32]");
    assert_string_equal(type_of(g, qk->in[1]), "f32[2, 1, 32, T+P]");
    assert_string_equal(type_of(g, qk), "f32[2, 4, T, T+P]");
    assert_string_equal(type_of(g, g->outputs[0]), "f32[T, 256]");
    /* the same interface as llama_layer.fdl */
    Graph *ref = example("dsl-examples/llama_layer.fdl");
    assert_int_equal(g->nweights, ref->nweights);
    for (int i = 0; i < g->nweights; i++) {
        assert_string_equal(g->weights[i]->name, ref->weights[i]->name);
        assert_string_equal(type_of(g, g->weights[i]), type_of(ref, ref->weights[i]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_minimal_block, setup),
        cmocka_unit_test_setup(test_numbers_fold, setup),
        cmocka_unit_test_setup(test_dims_and_symbols, setup),
        cmocka_unit_test_setup(test_builtin_attributes, setup),
        cmocka_unit_test_setup(test_list_arguments, setup),
        cmocka_unit_test_setup(test_fns_inline, setup),
        cmocka_unit_test_setup(test_builtin_names, setup),
        cmocka_unit_test_setup(test_outputs_have_their_own_names, setup),
        cmocka_unit_test_setup(test_block_selection, setup),
        cmocka_unit_test_setup(test_imports, setup),
        cmocka_unit_test_setup(test_import_errors, setup),
        cmocka_unit_test_setup(test_errors_are_not_cascaded, setup),
        cmocka_unit_test_setup(test_definition_errors, setup),
        cmocka_unit_test_setup(test_fn_errors, setup),
        cmocka_unit_test_setup(test_nesting_limit, setup),
        cmocka_unit_test_setup(test_example_llama, setup),
        cmocka_unit_test_setup(test_example_gpt2, setup),
        cmocka_unit_test_setup(test_example_llama_prim, setup),
        cmocka_unit_test_setup(test_error_limit_and_sources, setup),
        cmocka_unit_test_setup(test_constant_folding, setup),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
