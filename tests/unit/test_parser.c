/*
 * test_parser.c - the grammar of parse.y: the AST it builds (compared as
 * ast_dump S-expressions written by hand), operator precedence and
 * associativity, locations, and error reporting and recovery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fusec.h"

/* ---- helpers --------------------------------------------------------------- */

static char *errors_text;

/* Parses text as "t.fdl" with stderr captured into errors_text. */
static Ast *parse_len(const char *text, size_t len) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    diag_add_source("t.fdl", text);
    Ast *a = fe_parse("t.fdl", text, len);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    long size = ftell(tmp);
    assert_true(size >= 0);
    errors_text = fu_alloc((size_t)size + 1);
    rewind(tmp);
    size_t got = fread(errors_text, 1, (size_t)size, tmp);
    errors_text[got] = '\0';
    fclose(tmp);
    return a;
}

static Ast *parse(const char *text) { return parse_len(text, strlen(text)); }

static const char *dump(const Ast *a) {
    Buf b = {0};
    ast_dump(&b, a);
    char *s = fu_strdup(b.data ? b.data : "");
    free(b.data);
    return s;
}

/* The dump of the first statement of the first block, or of the first
 * top-level item when there is no block. */
static const char *first_stmt(const char *text) {
    Ast *f = parse(text);
    assert_non_null(f);
    assert_int_equal(f->kind, AST_FILE);
    assert_true(f->body.n >= 1);
    Ast *it = f->body.v[0];
    if (it->kind == AST_BLOCK) {
        assert_true(it->body.n >= 1);
        return dump(it->body.v[0]);
    }
    return dump(it);
}

/* The dump of expression e as the value of "x = e;" in a block. */
static const char *expr(const char *e) {
    char *text = fu_format("block b { x = %s; }", e);
    const char *d = first_stmt(text);
    /* "(assign x E)" -> "E" */
    assert_true(strncmp(d, "(assign x ", 10) == 0);
    size_t n = strlen(d);
    return fu_strndup(d + 10, n - 11);
}

static int setup(void **state) {
    (void)state;
    diag_reset();
    return 0;
}

/* ---- trees ---------------------------------------------------------------- */

static void test_empty_file(void **state) {
    (void)state;
    Ast *f = parse("// nothing but a comment\n");
    assert_non_null(f);
    assert_string_equal(dump(f), "(file)");
    assert_int_equal(diag_error_count(), 0);
}

static void test_precedence(void **state) {
    (void)state;
    assert_string_equal(expr("a + b * c"), "(+ a (* b c))");
    assert_string_equal(expr("a * b + c"), "(+ (* a b) c)");
    assert_string_equal(expr("a - b - c"), "(- (- a b) c)");
    assert_string_equal(expr("a / b / c"), "(/ (/ a b) c)");
    assert_string_equal(expr("(a + b) * c"), "(* (+ a b) c)");
    assert_string_equal(expr("-a * b"), "(* (neg a) b)");
    assert_string_equal(expr("a - -b"), "(- a (neg b))");
    assert_string_equal(expr("--a"), "(neg (neg a))");
    assert_string_equal(expr("2 * -3.5"), "(* 2 (neg 3.5))");
}

static void test_calls_and_literals(void **state) {
    (void)state;
    assert_string_equal(expr("rms_norm(x, w, eps = 1e-5)"), "(call rms_norm x w (kw eps 1e-05))");
    assert_string_equal(expr("f()"), "(call f)");
    assert_string_equal(expr("reshape(x, [T, H * 2, 32])"), "(call reshape x (list T (* H 2) 32))");
    assert_string_equal(expr("linear(x, w, layout = \"in_out\")"),
                        "(call linear x w (kw layout \"in_out\"))");
    assert_string_equal(expr("attention(q, k, v, causal = true, x = false)"),
                        "(call attention q k v (kw causal true) (kw x false))");
    assert_string_equal(expr("[]"), "(list)");
    assert_string_equal(expr("silu(linear(x, w)) * g"), "(* (call silu (call linear x w)) g)");
    assert_string_equal(expr("self_attn.q_proj.weight"), "self_attn.q_proj.weight");
}

static void test_declarations(void **state) {
    (void)state;
    assert_string_equal(first_stmt("block b { dim T, P, D = 256, Q = H * HD; }"),
                        "(dims (dim T) (dim P) (dim D 256) (dim Q (* H HD)))");
    assert_string_equal(first_stmt("block b { input x: f32[T, D]; }"), "(input x f32[T D])");
    assert_string_equal(first_stmt("block b { input p: i32[T]; }"), "(input p i32[T])");
    assert_string_equal(first_stmt("block b { input s: f32[]; }"), "(input s f32[])");
    assert_string_equal(first_stmt("block b { weight a.b: f32[Q, D]; }"), "(weight a.b f32[Q D])");
    assert_string_equal(first_stmt("block b { cache k: f32[P, KVH * HD]; }"),
                        "(cache k f32[P (* KVH HD)])");
    assert_string_equal(first_stmt("block b { output y = r + m; }"), "(output y (+ r m))");
    assert_string_equal(first_stmt("block b { output y: f32[T, D] = r; }"), "(output y f32[T D] r)");
    assert_string_equal(first_stmt("block b { const c = 1.0 / 8; }"), "(const c (/ 1 8))");
    assert_string_equal(first_stmt("import \"lib/a\\\"b.fdl\";"), "(import \"lib/a\"b.fdl\")");
    assert_string_equal(first_stmt("const theta = 10000.0;"), "(const theta 10000)");
    assert_string_equal(first_stmt("fn f(x, w) { h = x * w; return h + 1; }"),
                        "(fn f (x w) (assign h (* x w)) (return (+ h 1)))");
    assert_string_equal(first_stmt("fn g() { return 1; }"), "(fn g () (return 1))");
}

static void test_whole_file(void **state) {
    (void)state;
    Ast *f = parse("import \"a.fdl\";\n"
                   "dim HD = 32;\n"
                   "block one { dim T; input x: f32[T, HD]; output y = x; }\n"
                   "block two { }\n");
    assert_non_null(f);
    assert_int_equal(f->body.n, 4);
    assert_int_equal(f->body.v[0]->kind, AST_IMPORT);
    assert_int_equal(f->body.v[1]->kind, AST_DIMS);
    assert_int_equal(f->body.v[2]->kind, AST_BLOCK);
    assert_string_equal(f->body.v[2]->name, "one");
    assert_int_equal(f->body.v[2]->body.n, 3);
    assert_string_equal(f->body.v[3]->name, "two");
    assert_int_equal(f->body.v[3]->body.n, 0);
}

static void test_locations(void **state) {
    (void)state;
    /*        1234567890123456789012345678 */
    Ast *f = parse("block blk {\n  h = a + f(b, k = 2);\n  output o = h;\n}\n");
    assert_non_null(f);
    Ast *blk = f->body.v[0];
    /* a declaration is located at its name */
    assert_int_equal(blk->loc.line, 1);
    assert_int_equal(blk->loc.col, 7);
    assert_int_equal(blk->loc.len, 3);
    Ast *as = blk->body.v[0];
    assert_int_equal(as->loc.line, 2);
    assert_int_equal(as->loc.col, 3);
    Ast *plus = as->a;
    assert_int_equal(plus->kind, AST_BINOP);
    assert_int_equal(plus->loc.col, 9);     /* the operator */
    Ast *call = plus->b;
    assert_int_equal(call->kind, AST_CALL);
    assert_int_equal(call->loc.col, 11);    /* the callee's name */
    assert_int_equal(call->loc.len, 1);
    Ast *kw = call->list.v[1];
    assert_int_equal(kw->kind, AST_KWARG);
    assert_int_equal(kw->loc.col, 16);
    assert_int_equal(kw->a->loc.col, 20);
    Ast *out = blk->body.v[1];
    assert_int_equal(out->loc.line, 3);
    assert_int_equal(out->loc.col, 10);
}

/* ---- errors ----------------------------------------------------------------- */

static void test_missing_semicolon(void **state) {
    (void)state;
    assert_null(parse("block b {\n    h = silu(x)\n    output y = h;\n}\n"));
    assert_int_equal(diag_error_count(), 1);
    assert_string_equal(errors_text,
                        "t.fdl:3:5: error: syntax error, unexpected 'output', expecting ';'\n"
                        "    3 |     output y = h;\n"
                        "      |     ^~~~~~\n"
                        "t.fdl:2:16: note: is a ';' missing here?\n"
                        "    2 |     h = silu(x)\n"
                        "      |                ^\n");
}

static void test_expected_sets(void **state) {
    (void)state;
    assert_null(parse("block b { x = ; }"));
    assert_non_null(strstr(errors_text, "t.fdl:1:15: error: syntax error, unexpected ';', expecting expression\n"));
    diag_reset();
    assert_null(parse("block b { x = f(a b); }"));
    assert_non_null(strstr(errors_text,
                           "t.fdl:1:19: error: syntax error, unexpected identifier 'b', expecting ',' or ')'\n"));
    diag_reset();
    assert_null(parse("block b { input x f32[T]; }"));
    assert_non_null(strstr(errors_text, "t.fdl:1:19: error: syntax error, unexpected 'f32', expecting ':'\n"));
    diag_reset();
    assert_null(parse("block"));
    assert_non_null(strstr(errors_text,
                           "t.fdl:1:6: error: syntax error, unexpected end of file, expecting identifier\n"));
    diag_reset();
    assert_null(parse("block b { x = 3 4; }"));
    assert_non_null(strstr(errors_text, "t.fdl:1:17: error: syntax error, unexpected number '4', expecting ';'\n"));
}

static void test_recovery_reports_several(void **state) {
    (void)state;
    /* one error per broken statement; the good ones in between parse */
    assert_null(parse("block b {\n"
                      "  a = (x + ;\n"
                      "  b = x;\n"
                      "  c = x));\n"
                      "  d = x;\n"
                      "  output = d;\n"
                      "}\n"
                      "fn f(x { return x; }\n"
                      "block c { output y = 1 }\n"));
    assert_int_equal(diag_error_count(), 5);
    assert_non_null(strstr(errors_text, "t.fdl:2:12: error: syntax error, unexpected ';', expecting expression\n"));
    assert_non_null(strstr(errors_text, "t.fdl:4:8: error: syntax error, unexpected ')', expecting ';'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:6:10: error: syntax error, unexpected '=', expecting identifier\n"));
    assert_non_null(strstr(errors_text, "t.fdl:8:8: error: syntax error, unexpected '{', expecting ',' or ')'\n"));
    assert_non_null(strstr(errors_text, "t.fdl:9:24: error: syntax error, unexpected '}', expecting ';'\n"));
}

static void test_lexical_errors_fail_the_parse(void **state) {
    (void)state;
    /* the stray byte is reported once; the statement's syntax error that
     * follows from it is not */
    assert_null(parse("block b { y = x $ x; output o = y; }"));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "t.fdl:1:17: error: stray '$' in program\n"));
    diag_reset();
    const char src[] = "block b {\0 }";
    assert_null(parse_len(src, sizeof src - 1));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "t.fdl:1:10: error: stray '\\x00' in program\n"));
}

static void test_deep_nesting(void **state) {
    (void)state;
    /* bison's stack limit, not the C stack, bounds the nesting */
    int n = 20000;
    char *text = fu_alloc((size_t)(2 * n + 64));
    strcpy(text, "block b { x = ");
    size_t at = strlen(text);
    for (int i = 0; i < n; i++)
        text[at++] = '(';
    text[at++] = 'y';
    for (int i = 0; i < n; i++)
        text[at++] = ')';
    strcpy(text + at, "; }");
    assert_null(parse(text));
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(errors_text, "error: expression nested too deeply (the parser's stack is exhausted)"));

    /* 1000 levels are fine for the parser (sema bounds them later) */
    diag_reset();
    n = 1000;
    at = strlen("block b { x = ");
    for (int i = 0; i < n; i++)
        text[at++] = '-';
    strcpy(text + at, "y; }");
    Ast *f = parse(text);
    assert_non_null(f);
    /* the dump bounds its own recursion */
    assert_non_null(strstr(dump(f), "..."));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty_file, setup),
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_calls_and_literals, setup),
        cmocka_unit_test_setup(test_declarations, setup),
        cmocka_unit_test_setup(test_whole_file, setup),
        cmocka_unit_test_setup(test_locations, setup),
        cmocka_unit_test_setup(test_missing_semicolon, setup),
        cmocka_unit_test_setup(test_expected_sets, setup),
        cmocka_unit_test_setup(test_recovery_reports_several, setup),
        cmocka_unit_test_setup(test_lexical_errors_fail_the_parse, setup),
        cmocka_unit_test_setup(test_deep_nesting, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
