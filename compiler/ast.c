/*
 * ast.c - the syntax tree the grammar builds and sema walks.
 *
 * One tagged struct (Ast in fusec.h) serves every construct, so the grammar
 * actions stay one line each and sema can switch on the kind.  Nodes live in
 * the compiler's arena and are never freed.  ast_dump writes a compact
 * S-expression that the parser tests compare against.
 */
#include "fusec.h"

#include <string.h>

SrcLoc fe_srcloc(const char *file, FeLoc l) {
    SrcLoc s = {file, l.first_line, l.first_column, 1};
    if (l.last_line == l.first_line && l.last_column >= l.first_column)
        s.len = l.last_column - l.first_column + 1;
    return s;
}

SrcLoc fe_span(SrcLoc a, SrcLoc b) {
    if (a.line == b.line && b.col + b.len > a.col)
        a.len = b.col + b.len - a.col;
    return a;
}

Ast *ast_new(AstKind kind, SrcLoc loc) {
    Ast *n = fu_alloc(sizeof *n);
    n->kind = kind;
    n->loc = loc;
    return n;
}

Ast *ast_num(SrcLoc loc, double v, bool is_int, int64_t ival) {
    Ast *n = ast_new(AST_NUM, loc);
    n->num = v;
    n->is_int = is_int;
    n->ival = ival;
    return n;
}

Ast *ast_str(AstKind kind, SrcLoc loc, const char *s) {
    Ast *n = ast_new(kind, loc);
    if (kind == AST_NAME)
        n->name = s;
    else
        n->str = s;
    return n;
}

Ast *ast_bool(SrcLoc loc, bool v) {
    Ast *n = ast_new(AST_BOOL, loc);
    n->ival = v;
    return n;
}

Ast *ast_binop(SrcLoc loc, int op, Ast *a, Ast *b) {
    Ast *n = ast_new(AST_BINOP, loc);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

const char *ast_op_text(int op) {
    switch (op) {
    case AST_OP_LE: return "<=";
    case AST_OP_GE: return ">=";
    case AST_OP_EQ: return "==";
    case AST_OP_NE: return "!=";
    case '+': return "+";
    case '-': return "-";
    case '*': return "*";
    case '/': return "/";
    case '<': return "<";
    case '>': return ">";
    default: return "?";
    }
}

Ast *ast_assign2(SrcLoc loc, const char *name, SrcLoc loc2, const char *name2, Ast *value) {
    Ast *n = ast_named(AST_ASSIGN2, loc, name, value);
    n->b = ast_str(AST_NAME, loc2, name2);
    return n;
}

Ast *ast_unary(SrcLoc loc, Ast *a) {
    Ast *n = ast_new(AST_NEG, loc);
    n->a = a;
    return n;
}

Ast *ast_named(AstKind kind, SrcLoc loc, const char *name, Ast *a) {
    Ast *n = ast_new(kind, loc);
    n->name = name;
    n->a = a;
    return n;
}

Ast *ast_call(SrcLoc loc, const char *name, AstList args) {
    Ast *n = ast_new(AST_CALL, loc);
    n->name = name;
    n->list = args;
    return n;
}

Ast *ast_list(SrcLoc loc, AstList items) {
    Ast *n = ast_new(AST_LIST, loc);
    n->list = items;
    return n;
}

Ast *ast_type(SrcLoc loc, DType t, AstList dims) {
    Ast *n = ast_new(AST_TYPE, loc);
    n->dtype = t;
    n->list = dims;
    return n;
}

Ast *ast_decl(AstKind kind, SrcLoc loc, const char *name, Ast *type, Ast *value) {
    Ast *n = ast_new(kind, loc);
    n->name = name;
    n->type = type;
    n->a = value;
    return n;
}

Ast *ast_fn(SrcLoc loc, const char *name, AstList params, AstList body) {
    Ast *n = ast_new(AST_FN, loc);
    n->name = name;
    n->list = params;
    n->body = body;
    return n;
}

Ast *ast_block(SrcLoc loc, const char *name, AstList body) {
    Ast *n = ast_new(AST_BLOCK, loc);
    n->name = name;
    n->body = body;
    return n;
}

Ast *ast_group(AstKind kind, SrcLoc loc, AstList items) {
    Ast *n = ast_new(kind, loc);
    n->body = items;
    return n;
}

AstList ast_list_empty(void) {
    AstList l = {NULL, 0, 0};
    return l;
}

/* Error productions hand in NULL for a statement that failed to parse;
 * dropping it here keeps every list free of holes. */
AstList ast_push(AstList l, Ast *x) {
    if (!x)
        return l;
    if (l.n == l.cap) {
        int cap = l.cap ? l.cap * 2 : 4;
        Ast **v = fu_alloc(sizeof(Ast *) * (size_t)cap);
        if (l.n)
            memcpy(v, l.v, sizeof(Ast *) * (size_t)l.n);
        l.v = v;
        l.cap = cap;
    }
    l.v[l.n++] = x;
    return l;
}

/* ---- dump ---------------------------------------------------------------- */

static const char *const kind_names[] = {
    [AST_NUM] = "num",       [AST_STR] = "str",         [AST_BOOL] = "bool",
    [AST_NAME] = "name",     [AST_LIST] = "list",       [AST_BINOP] = "binop",
    [AST_NEG] = "neg",       [AST_CALL] = "call",       [AST_KWARG] = "kw",
    [AST_IMPORT] = "import", [AST_DIMS] = "dims",       [AST_DIM] = "dim",
    [AST_CONST] = "const",   [AST_INPUT] = "input",     [AST_WEIGHT] = "weight",
    [AST_CACHE] = "cache",   [AST_ASSIGN] = "assign",   [AST_OUTPUT] = "output", [AST_ASSIGN2] = "assign2",
    [AST_RETURN] = "return", [AST_FN] = "fn",           [AST_BLOCK] = "block",
    [AST_FILE] = "file",     [AST_TYPE] = "type",
};

static void dump_list(Buf *b, const AstList *l, int depth);

/* The depth bound keeps a pathological tree from exhausting the C stack;
 * whatever lies deeper prints as "...". */
static void dump(Buf *b, const Ast *n, int depth) {
    if (!n) {
        buf_puts(b, "nil");
        return;
    }
    if (depth > FE_MAX_NESTING) {
        buf_puts(b, "...");
        return;
    }
    switch (n->kind) {
    case AST_NUM:
        if (n->is_int)
            buf_printf(b, "%lld", (long long)n->ival);
        else
            buf_printf(b, "%g", n->num);
        return;
    case AST_STR:
        buf_printf(b, "\"%s\"", n->str);
        return;
    case AST_BOOL:
        buf_puts(b, n->ival ? "true" : "false");
        return;
    case AST_NAME:
        buf_puts(b, n->name);
        return;
    case AST_BINOP:
        buf_printf(b, "(%s ", ast_op_text(n->op));
        dump(b, n->a, depth + 1);
        buf_puts(b, " ");
        dump(b, n->b, depth + 1);
        buf_puts(b, ")");
        return;
    case AST_TYPE:
        buf_printf(b, "%s[", dtype_name(n->dtype));
        for (int i = 0; i < n->list.n; i++) {
            if (i)
                buf_puts(b, " ");
            dump(b, n->list.v[i], depth + 1);
        }
        buf_puts(b, "]");
        return;
    default:
        break;
    }
    buf_printf(b, "(%s", kind_names[n->kind]);
    if (n->name)
        buf_printf(b, " %s", n->name);
    if (n->kind == AST_ASSIGN2)
        buf_printf(b, " %s", n->b->name);
    if (n->str)
        buf_printf(b, " \"%s\"", n->str);
    if (n->kind == AST_FN) {
        buf_puts(b, " (");
        for (int i = 0; i < n->list.n; i++)
            buf_printf(b, "%s%s", i ? " " : "", n->list.v[i]->name);
        buf_puts(b, ")");
    } else {
        dump_list(b, &n->list, depth);
    }
    if (n->type) {
        buf_puts(b, " ");
        dump(b, n->type, depth + 1);
    }
    if (n->a) {
        buf_puts(b, " ");
        dump(b, n->a, depth + 1);
    }
    dump_list(b, &n->body, depth);
    buf_puts(b, ")");
}

static void dump_list(Buf *b, const AstList *l, int depth) {
    for (int i = 0; i < l->n; i++) {
        buf_puts(b, " ");
        dump(b, l->v[i], depth + 1);
    }
}

void ast_dump(Buf *b, const Ast *n) { dump(b, n, 0); }
