/*
 * parse.y - the grammar of the fusec DSL (docs/language.md has it as EBNF).
 *
 * A pure bison parser with locations; every action is one call into the
 * builders of ast.c, so this file stays a grammar.  The lexer (lex.l) is
 * reentrant and shares one FeCtx per parse through yyextra.
 *
 * Errors: syntax errors are reported by yyreport_syntax_error below, which
 * words the expected tokens for people ("expecting expression" rather than
 * nine token names; binary operators are left out when something else can
 * follow) and adds a note when a ';' is probably missing at the end of the
 * previous line.  Error productions at statement level (`error ';'`,
 * `error '}'`) resynchronize so one run reports several mistakes.  Bison's
 * stack limit turns very deep nesting into a located error instead of a
 * crash.
 */
%code requires {
#include "fusec.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

/* The state of one parse, shared by the parser and the lexer (yyextra). */
typedef struct FeCtx {
    const char *file;       /* names the text in diagnostics */
    int line, col;          /* where the lexer is: the next byte */
    FeLoc prev, cur;        /* the token before the lookahead, and the lookahead */
    int prev_kind, cur_kind;
    bool quiet;             /* a lexical error in this statement: its syntax errors follow from it */
    const char *tok_text;   /* the lookahead's text */
    int ntokens;
    FeLoc comment_start;    /* the opening of the block comment being skipped */
    Ast *root;              /* the AST_FILE when the parse succeeds */
} FeCtx;
}

%code {
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "lex.yy.h"

static void yyerror(FeLoc *loc, yyscan_t scanner, FeCtx *ctx, const char *msg);
#define L(x) fe_srcloc(ctx->file, (x))
}

%define api.pure full
%define api.location.type {FeLoc}
%define api.token.prefix {TOK_}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {yyscan_t scanner}
%parse-param {FeCtx *ctx}

%union {
    const char *str;
    Ast *ast;
    AstList list;
    DType dtype;
}

%token <str> IDENT "identifier"
%token <ast> NUMBER "number"
%token <str> STRING "string"
%token BLOCK "'block'" DIM "'dim'" CONST "'const'" INPUT "'input'" WEIGHT "'weight'"
%token CACHE "'cache'" OUTPUT "'output'" FN "'fn'" RETURN "'return'" IMPORT "'import'"
%token TRUE "'true'" FALSE "'false'" F32 "'f32'" I32 "'i32'"
%token BF16 "'bf16'" F16 "'f16'" Q8_0 "'q8_0'" Q4_0 "'q4_0'"

%token LE "'<='" GE "'>='" EQ "'=='" NE "'!='"
%nonassoc '<' '>' LE GE EQ NE
%left '+' '-'
%left '*' '/'
%precedence NEG

%type <ast> item block fn stmt fn_stmt common_stmt dim_item type expr primary arg
%type <list> items block_body fn_body dim_items params param_list exprs exprs_opt args args_opt
%type <dtype> dtype

%%

file:
    items                                   { ctx->root = ast_group(AST_FILE, L(@$), $1); }
    ;

/* Top level: imports, shared definitions and blocks. */
items:
    %empty                                  { $$ = ast_list_empty(); }
    | items item                            { $$ = ast_push($1, $2); }
    | items error ';'                       { $$ = $1; }
    | items error '}'                       { $$ = $1; }
    ;

item:
    IMPORT STRING ';'                       { $$ = ast_str(AST_IMPORT, L(@2), $2); }
    | common_stmt
    | fn
    | block
    ;

block:
    BLOCK IDENT '{' block_body '}'          { $$ = ast_block(L(@2), $2, $4); }
    | BLOCK IDENT '{' block_body error '}'  { $$ = ast_block(L(@2), $2, $4); }
    ;

block_body:
    %empty                                  { $$ = ast_list_empty(); }
    | block_body stmt                       { $$ = ast_push($1, $2); }
    | block_body error ';'                  { $$ = $1; }
    ;

stmt:
    common_stmt
    | INPUT IDENT ':' type ';'              { $$ = ast_decl(AST_INPUT, L(@2), $2, $4, NULL); }
    | WEIGHT IDENT ':' type ';'             { $$ = ast_decl(AST_WEIGHT, L(@2), $2, $4, NULL); }
    | CACHE IDENT ':' type ';'              { $$ = ast_decl(AST_CACHE, L(@2), $2, $4, NULL); }
    | IDENT '=' expr ';'                    { $$ = ast_named(AST_ASSIGN, L(@1), $1, $3); }
    | IDENT ',' IDENT '=' expr ';'          { $$ = ast_assign2(L(@1), $1, L(@3), $3, $5); }
    | OUTPUT IDENT '=' expr ';'             { $$ = ast_decl(AST_OUTPUT, L(@2), $2, NULL, $4); }
    | OUTPUT IDENT ':' type '=' expr ';'    { $$ = ast_decl(AST_OUTPUT, L(@2), $2, $4, $6); }
    ;

/* Allowed at top level, in blocks and in fns. */
common_stmt:
    DIM dim_items ';'                       { $$ = ast_group(AST_DIMS, L(@1), $2); }
    | CONST IDENT '=' expr ';'              { $$ = ast_named(AST_CONST, L(@2), $2, $4); }
    ;

dim_items:
    dim_item                                { $$ = ast_push(ast_list_empty(), $1); }
    | dim_items ',' dim_item                { $$ = ast_push($1, $3); }
    ;

dim_item:
    IDENT                                   { $$ = ast_named(AST_DIM, L(@1), $1, NULL); }
    | IDENT '=' expr                        { $$ = ast_named(AST_DIM, L(@1), $1, $3); }
    ;

fn:
    FN IDENT '(' params ')' '{' fn_body '}'       { $$ = ast_fn(L(@2), $2, $4, $7); }
    | FN IDENT '(' params ')' '{' fn_body error '}' { $$ = ast_fn(L(@2), $2, $4, $7); }
    ;

params:
    %empty                                  { $$ = ast_list_empty(); }
    | param_list
    ;

param_list:
    IDENT                                   { $$ = ast_push(ast_list_empty(), ast_str(AST_NAME, L(@1), $1)); }
    | param_list ',' IDENT                  { $$ = ast_push($1, ast_str(AST_NAME, L(@3), $3)); }
    ;

fn_body:
    %empty                                  { $$ = ast_list_empty(); }
    | fn_body fn_stmt                       { $$ = ast_push($1, $2); }
    | fn_body error ';'                     { $$ = $1; }
    ;

fn_stmt:
    common_stmt
    | IDENT '=' expr ';'                    { $$ = ast_named(AST_ASSIGN, L(@1), $1, $3); }
    | IDENT ',' IDENT '=' expr ';'          { $$ = ast_assign2(L(@1), $1, L(@3), $3, $5); }
    | RETURN expr ';'                       { $$ = ast_named(AST_RETURN, L(@1), NULL, $2); }
    ;

type:
    dtype '[' exprs_opt ']'                 { $$ = ast_type(L(@1), $1, $3); }
    ;

dtype:
    F32                                     { $$ = DT_F32; }
    | I32                                   { $$ = DT_I32; }
    | BF16                                  { $$ = DT_BF16; }
    | F16                                   { $$ = DT_F16; }
    | Q8_0                                  { $$ = DT_Q8_0; }
    | Q4_0                                  { $$ = DT_Q4_0; }
    ;

expr:
    expr '+' expr                           { $$ = ast_binop(L(@2), '+', $1, $3); }
    | expr '-' expr                         { $$ = ast_binop(L(@2), '-', $1, $3); }
    | expr '*' expr                         { $$ = ast_binop(L(@2), '*', $1, $3); }
    | expr '/' expr                         { $$ = ast_binop(L(@2), '/', $1, $3); }
    | expr '<' expr                         { $$ = ast_binop(L(@2), '<', $1, $3); }
    | expr '>' expr                         { $$ = ast_binop(L(@2), '>', $1, $3); }
    | expr LE expr                          { $$ = ast_binop(L(@2), AST_OP_LE, $1, $3); }
    | expr GE expr                          { $$ = ast_binop(L(@2), AST_OP_GE, $1, $3); }
    | expr EQ expr                          { $$ = ast_binop(L(@2), AST_OP_EQ, $1, $3); }
    | expr NE expr                          { $$ = ast_binop(L(@2), AST_OP_NE, $1, $3); }
    | '-' expr %prec NEG                    { $$ = ast_unary(L(@1), $2); }
    | primary
    ;

primary:
    NUMBER                                  { $$ = $1; }
    | STRING                                { $$ = ast_str(AST_STR, L(@1), $1); }
    | TRUE                                  { $$ = ast_bool(L(@1), true); }
    | FALSE                                 { $$ = ast_bool(L(@1), false); }
    | dtype                                 { $$ = ast_str(AST_STR, L(@1), dtype_name($1)); }
    | IDENT                                 { $$ = ast_str(AST_NAME, L(@1), $1); }
    | IDENT '(' args_opt ')'                { $$ = ast_call(L(@1), $1, $3); }
    | '(' expr ')'                          { $$ = $2; }
    | '[' exprs_opt ']'                     { $$ = ast_list(L(@1), $2); }
    ;

exprs_opt:
    %empty                                  { $$ = ast_list_empty(); }
    | exprs
    ;

exprs:
    expr                                    { $$ = ast_push(ast_list_empty(), $1); }
    | exprs ',' expr                        { $$ = ast_push($1, $3); }
    ;

args_opt:
    %empty                                  { $$ = ast_list_empty(); }
    | args
    ;

args:
    arg                                     { $$ = ast_push(ast_list_empty(), $1); }
    | args ',' arg                          { $$ = ast_push($1, $3); }
    ;

arg:
    expr
    | IDENT '=' expr                        { $$ = ast_named(AST_KWARG, L(@1), $1, $3); }
    ;

%%

/* Bison calls this only for its own failures; syntax errors go through
 * yyreport_syntax_error.  Running out of parser stack means the input nests
 * absurdly deep. */
static void yyerror(FeLoc *loc, yyscan_t scanner, FeCtx *ctx, const char *msg) {
    (void)scanner;
    if (strcmp(msg, "memory exhausted") == 0)
        diag_error(L(*loc), "expression nested too deeply (the parser's stack is exhausted)");
    else
        diag_error(L(*loc), "%s", msg);
}

static bool sym_is(yysymbol_kind_t k, const char *name) {
    return strcmp(yysymbol_name(k), name) == 0;
}

static bool starts_expr(yysymbol_kind_t k) {
    return k == YYSYMBOL_IDENT || k == YYSYMBOL_NUMBER || k == YYSYMBOL_STRING ||
           k == YYSYMBOL_TRUE || k == YYSYMBOL_FALSE || sym_is(k, "'('") ||
           sym_is(k, "'['") || sym_is(k, "'-'") || k == YYSYMBOL_F32 || k == YYSYMBOL_I32 || k == YYSYMBOL_BF16 ||
           k == YYSYMBOL_F16 || k == YYSYMBOL_Q8_0 || k == YYSYMBOL_Q4_0;
}

static bool is_binop(yysymbol_kind_t k) {
    return sym_is(k, "'+'") || sym_is(k, "'-'") || sym_is(k, "'*'") || sym_is(k, "'/'") || sym_is(k, "'<'") ||
           sym_is(k, "'>'") || sym_is(k, "'<='") || sym_is(k, "'>='") || sym_is(k, "'=='") || sym_is(k, "'!='");
}

/* "syntax error, unexpected X, expecting Y or Z", with the expected set
 * condensed: all the tokens that start an expression become "expression",
 * and the binary operators (which can continue almost any expression) are
 * dropped when anything else would also do.  More than four alternatives
 * are left out, as bison does. */
static int yyreport_syntax_error(const yypcontext_t *pc, yyscan_t scanner, FeCtx *ctx) {
    (void)scanner;
    if (ctx->quiet)
        return 0;
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(pc, exp, YYNTOKENS);
    if (n < 0)
        return n;
    bool has_ident = false, has_num = false, has_paren = false, has_other = false, has_semi = false;
    for (int i = 0; i < n; i++) {
        has_ident |= exp[i] == YYSYMBOL_IDENT;
        has_num |= exp[i] == YYSYMBOL_NUMBER;
        has_paren |= sym_is(exp[i], "'('");
        has_semi |= sym_is(exp[i], "';'");
    }
    bool expr = has_ident && has_num && has_paren, has_rparen = false;
    for (int i = 0; i < n; i++)
        has_rparen |= sym_is(exp[i], "')'");
    /* After an identifier, '(' (making it a call) and, inside a call, '='
     * (making it a keyword) are possible but rarely what was meant. */
    bool after_ident = ctx->prev_kind == TOK_IDENT;
    bool drop[YYNTOKENS] = {false};
    for (int i = 0; i < n; i++) {
        drop[i] = (expr && starts_expr(exp[i])) ||
                  (after_ident && (sym_is(exp[i], "'('") || (has_rparen && sym_is(exp[i], "'='"))));
        if (!drop[i] && !is_binop(exp[i]))
            has_other = true;
    }
    const char *names[YYNTOKENS];
    int m = 0;
    if (expr)
        names[m++] = "expression";
    for (int i = 0; i < n; i++) {
        if (drop[i] || (is_binop(exp[i]) && (has_other || expr)))
            continue;
        names[m++] = yysymbol_name(exp[i]);
    }

    yysymbol_kind_t tok = yypcontext_token(pc);
    Buf b = {0};
    buf_printf(&b, "syntax error, unexpected %s", yysymbol_name(tok));
    if ((tok == YYSYMBOL_IDENT || tok == YYSYMBOL_NUMBER) && ctx->tok_text)
        buf_printf(&b, " '%s'", ctx->tok_text);
    if (m > 0 && m <= 4)
        for (int i = 0; i < m; i++)
            buf_printf(&b, "%s%s", i == 0 ? ", expecting " : " or ", names[i]);
    diag_error(L(*yypcontext_location(pc)), "%s", b.data);
    free(b.data);

    /* A statement that runs into the next line almost always lacks its ';'. */
    if (has_semi && ctx->ntokens > 1 && yypcontext_location(pc)->first_line > ctx->prev.last_line) {
        FeLoc at = {ctx->prev.last_line, ctx->prev.last_column + 1, ctx->prev.last_line,
                    ctx->prev.last_column + 1};
        diag_note(L(at), "is a ';' missing here?");
    }
    return 0;
}

Ast *fe_parse(const char *file, const char *text, size_t len) {
    int errors = diag_error_count();
    if (len > INT_MAX / 2) {
        diag_plain_error("%s: file is too large (%zu bytes)", file, len);
        return NULL;
    }
    FeCtx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.file = file;
    ctx.line = ctx.col = 1;
    yyscan_t sc;
    if (yylex_init_extra(&ctx, &sc) != 0)
        fu_internal(__FILE__, __LINE__, "cannot create the scanner");
    YY_BUFFER_STATE buf = yy_scan_bytes(text, (int)len, sc);
    int rc = yyparse(sc, &ctx);
    yy_delete_buffer(buf, sc);
    yylex_destroy(sc);
    if (rc != 0 || diag_error_count() > errors)
        return NULL;
    return ctx.root;
}
