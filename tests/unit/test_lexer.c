/*
 * test_lexer.c - the tokens of lex.l: kinds, lexemes, values, locations,
 * and the located errors for bad input.  Expected values are written out
 * by hand from the input text (columns counted on the literal strings).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fusec.h"
#include "parse.tab.h"

/* ---- helpers --------------------------------------------------------------- */

/* Runs fe_tokenize with stderr captured; returns the diagnostics text. */
static char *lex_capture(const char *text, size_t len, FeToken **toks, int *n) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    diag_add_source("t.fdl", text);
    *n = fe_tokenize("t.fdl", text, len, toks);
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

static FeToken *lex(const char *text, int *n) {
    FeToken *t;
    lex_capture(text, strlen(text), &t, n);
    return t;
}

static void check_tok(const FeToken *t, int kind, const char *text, int line, int col, int len) {
    assert_int_equal(t->kind, kind);
    assert_string_equal(t->text, text);
    assert_int_equal(t->loc.line, line);
    assert_int_equal(t->loc.col, col);
    assert_int_equal(t->loc.len, len);
    assert_string_equal(t->loc.file, "t.fdl");
}

static int setup(void **state) {
    (void)state;
    diag_reset();
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_statement(void **state) {
    (void)state;
    int n;
    /*                 123456789012345678901234567890123456789 */
    FeToken *t = lex("  h = rms_norm(x, w, eps = 1e-5);", &n);
    assert_int_equal(n, 13);
    check_tok(&t[0], TOK_IDENT, "h", 1, 3, 1);
    check_tok(&t[1], '=', "=", 1, 5, 1);
    check_tok(&t[2], TOK_IDENT, "rms_norm", 1, 7, 8);
    check_tok(&t[3], '(', "(", 1, 15, 1);
    check_tok(&t[4], TOK_IDENT, "x", 1, 16, 1);
    check_tok(&t[5], ',', ",", 1, 17, 1);
    check_tok(&t[6], TOK_IDENT, "w", 1, 19, 1);
    check_tok(&t[7], ',', ",", 1, 20, 1);
    check_tok(&t[8], TOK_IDENT, "eps", 1, 22, 3);
    check_tok(&t[9], '=', "=", 1, 26, 1);
    check_tok(&t[10], TOK_NUMBER, "1e-5", 1, 28, 4);
    check_tok(&t[11], ')', ")", 1, 32, 1);
    check_tok(&t[12], ';', ";", 1, 33, 1);
    /* n excludes the end token, which sits right after the last token */
    assert_int_equal(t[13].kind, TOK_YYEOF);
    assert_int_equal(t[13].loc.col, 34);
    assert_int_equal(diag_error_count(), 0);
}

static void test_keywords_and_punctuation(void **state) {
    (void)state;
    int n;
    FeToken *t = lex("block dim const input weight cache output fn return import true false f32 i32 "
                     "( ) [ ] { } , ; : = + - * /",
                     &n);
    const int want[] = {TOK_BLOCK, TOK_DIM, TOK_CONST, TOK_INPUT, TOK_WEIGHT, TOK_CACHE, TOK_OUTPUT,
                        TOK_FN, TOK_RETURN, TOK_IMPORT, TOK_TRUE, TOK_FALSE, TOK_F32, TOK_I32,
                        '(', ')', '[', ']', '{', '}', ',', ';', ':', '=', '+', '-', '*', '/'};
    assert_int_equal(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++)
        assert_int_equal(t[i].kind, want[i]);
    assert_int_equal(diag_error_count(), 0);
}

static void test_dotted_identifiers(void **state) {
    (void)state;
    int n;
    FeToken *t = lex("self_attn.q_proj.weight model.layers.0.mlp _x9 input.x blocks", &n);
    assert_int_equal(n, 5);
    check_tok(&t[0], TOK_IDENT, "self_attn.q_proj.weight", 1, 1, 23);
    check_tok(&t[1], TOK_IDENT, "model.layers.0.mlp", 1, 25, 18);
    check_tok(&t[2], TOK_IDENT, "_x9", 1, 44, 3);
    /* a keyword followed by a dotted part is an identifier, as is a longer word */
    check_tok(&t[3], TOK_IDENT, "input.x", 1, 48, 7);
    check_tok(&t[4], TOK_IDENT, "blocks", 1, 56, 6);
}

static void test_numbers(void **state) {
    (void)state;
    int n;
    FeToken *t = lex("42 0 1e-5 10000.0 .5 5. 1E+3 2.5e2 9223372036854775807", &n);
    assert_int_equal(n, 9);
    for (int i = 0; i < n; i++) {
        assert_int_equal(t[i].kind, TOK_NUMBER);
        assert_non_null(t[i].value);
        assert_int_equal(t[i].value->kind, AST_NUM);
    }
    assert_true(t[0].value->is_int);
    assert_int_equal(t[0].value->ival, 42);
    assert_true(t[1].value->is_int);
    assert_int_equal(t[1].value->ival, 0);
    assert_false(t[2].value->is_int);
    assert_true(t[2].value->num == 1e-5);
    assert_false(t[3].value->is_int);
    assert_true(t[3].value->num == 10000.0);
    assert_true(t[4].value->num == 0.5);
    assert_true(t[5].value->num == 5.0);
    assert_false(t[5].value->is_int);
    assert_true(t[6].value->num == 1000.0);
    assert_true(t[7].value->num == 250.0);
    assert_true(t[8].value->is_int);
    assert_true(t[8].value->ival == INT64_MAX);
    assert_int_equal(diag_error_count(), 0);
}

static void test_number_then_operator(void **state) {
    (void)state;
    int n;
    /* "T-1" and "2*x" split; "1e-5" stays one literal */
    FeToken *t = lex("T-1 2*x a-1e-5", &n);
    assert_int_equal(n, 9);
    check_tok(&t[0], TOK_IDENT, "T", 1, 1, 1);
    check_tok(&t[1], '-', "-", 1, 2, 1);
    check_tok(&t[2], TOK_NUMBER, "1", 1, 3, 1);
    check_tok(&t[3], TOK_NUMBER, "2", 1, 5, 1);
    check_tok(&t[4], '*', "*", 1, 6, 1);
    check_tok(&t[5], TOK_IDENT, "x", 1, 7, 1);
    check_tok(&t[6], TOK_IDENT, "a", 1, 9, 1);
    check_tok(&t[7], '-', "-", 1, 10, 1);
    check_tok(&t[8], TOK_NUMBER, "1e-5", 1, 11, 4);
}

static void test_bad_numbers(void **state) {
    (void)state;
    int n;
    FeToken *t;
    char *err = lex_capture("1e 1.2.3 12abc 99999999999999999999", 35, &t, &n);
    /* each bad literal is still one number token, so parsing goes on */
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        assert_int_equal(t[i].kind, TOK_NUMBER);
    check_tok(&t[1], TOK_NUMBER, "1.2.3", 1, 4, 5);
    assert_int_equal(diag_error_count(), 4);
    assert_non_null(strstr(err, "t.fdl:1:1: error: invalid number literal '1e'\n"));
    assert_non_null(strstr(err, "t.fdl:1:4: error: invalid number literal '1.2.3'\n"));
    assert_non_null(strstr(err, "t.fdl:1:10: error: invalid number literal '12abc'\n"));
    assert_non_null(strstr(err, "t.fdl:1:16: error: integer literal '99999999999999999999' is too large\n"));
}

static void test_strings(void **state) {
    (void)state;
    int n;
    FeToken *t = lex("import \"lib/a b.fdl\"; \"q\\\"\\\\\\n\"", &n);
    assert_int_equal(n, 4);
    check_tok(&t[1], TOK_STRING, "\"lib/a b.fdl\"", 1, 8, 13);
    check_tok(&t[3], TOK_STRING, "\"q\\\"\\\\\\n\"", 1, 23, 9);
    assert_int_equal(diag_error_count(), 0);
}

static void test_unterminated_string(void **state) {
    (void)state;
    int n;
    FeToken *t;
    const char *src = "x = \"abc\ny = 1;";
    char *err = lex_capture(src, strlen(src), &t, &n);
    assert_int_equal(diag_error_count(), 1);
    assert_non_null(strstr(err, "t.fdl:1:5: error: unterminated string\n"));
    /* the next line lexes normally */
    assert_int_equal(t[3].kind, TOK_IDENT);
    assert_int_equal(t[3].loc.line, 2);
    assert_int_equal(t[3].loc.col, 1);
}

static void test_comments(void **state) {
    (void)state;
    int n;
    const char *src = "a // line comment \x01\xff\n/* block\n   comment * / */ b /**/c";
    FeToken *t;
    lex_capture(src, strlen(src), &t, &n);
    assert_int_equal(n, 3);
    check_tok(&t[0], TOK_IDENT, "a", 1, 1, 1);
    check_tok(&t[1], TOK_IDENT, "b", 3, 19, 1);
    check_tok(&t[2], TOK_IDENT, "c", 3, 25, 1);
    assert_int_equal(diag_error_count(), 0);
}

static void test_unterminated_comment(void **state) {
    (void)state;
    int n;
    FeToken *t;
    const char *src = "a\n  /* no end\n\n";
    char *err = lex_capture(src, strlen(src), &t, &n);
    assert_int_equal(n, 1);
    assert_int_equal(diag_error_count(), 1);
    /* located at the opening, underlining the two characters */
    assert_non_null(strstr(err, "t.fdl:2:3: error: unterminated comment\n"));
    assert_non_null(strstr(err, "      |   ^~\n"));
}

static void test_stray_bytes(void **state) {
    (void)state;
    int n;
    FeToken *t;
    /* '$', a NUL, 0xFF, 0x01, then a valid two-byte UTF-8 character */
    const char src[] = "a $\0\xff\x01 \xc3\xa9 b";
    char *err = lex_capture(src, sizeof src - 1, &t, &n);
    assert_int_equal(n, 2);
    check_tok(&t[0], TOK_IDENT, "a", 1, 1, 1);
    check_tok(&t[1], TOK_IDENT, "b", 1, 11, 1);
    assert_int_equal(diag_error_count(), 5);
    assert_non_null(strstr(err, "t.fdl:1:3: error: stray '$' in program\n"));
    assert_non_null(strstr(err, "t.fdl:1:4: error: stray '\\x00' in program\n"));
    assert_non_null(strstr(err, "t.fdl:1:5: error: stray '\\xFF' in program\n"));
    assert_non_null(strstr(err, "t.fdl:1:6: error: stray '\\x01' in program\n"));
    assert_non_null(strstr(err, "t.fdl:1:8: error: stray '\xc3\xa9' in program\n"));
}

static void test_lines_and_eof(void **state) {
    (void)state;
    int n;
    FeToken *t = lex("\tx\r\n\n  y  \n", &n);
    assert_int_equal(n, 2);
    check_tok(&t[0], TOK_IDENT, "x", 1, 2, 1);
    check_tok(&t[1], TOK_IDENT, "y", 3, 3, 1);
    /* end of input: just after the last token, on a line that exists */
    assert_int_equal(t[2].kind, TOK_YYEOF);
    assert_int_equal(t[2].loc.line, 3);
    assert_int_equal(t[2].loc.col, 4);

    t = lex("", &n);
    assert_int_equal(n, 0);
    assert_int_equal(t[0].kind, TOK_YYEOF);
    assert_int_equal(t[0].loc.line, 1);
    assert_int_equal(t[0].loc.col, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_statement, setup),
        cmocka_unit_test_setup(test_keywords_and_punctuation, setup),
        cmocka_unit_test_setup(test_dotted_identifiers, setup),
        cmocka_unit_test_setup(test_numbers, setup),
        cmocka_unit_test_setup(test_number_then_operator, setup),
        cmocka_unit_test_setup(test_bad_numbers, setup),
        cmocka_unit_test_setup(test_strings, setup),
        cmocka_unit_test_setup(test_unterminated_string, setup),
        cmocka_unit_test_setup(test_comments, setup),
        cmocka_unit_test_setup(test_unterminated_comment, setup),
        cmocka_unit_test_setup(test_stray_bytes, setup),
        cmocka_unit_test_setup(test_lines_and_eof, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
