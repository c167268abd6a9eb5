/*
 * sema.c - from the AST to the graph IR.
 *
 * Sema loads the root file and everything it imports (each file once, in
 * import order), evaluates the top-level dims, consts and fns of every file
 * into that file's scope, then lowers one block into a Graph: declarations
 * become source nodes, expressions become nodes in program order (so the
 * graph is topological by construction), fns are inlined at each call, and
 * `output` statements become sinks.  Each node's type comes from ir_infer
 * (shape.c), the one place type rules live; sema only reports its reason.
 *
 * Values.  An expression evaluates to a Value: a tensor (a Node), a number
 * (folded at compile time; it becomes an OP_CONST node only when it meets a
 * tensor), a string, a boolean, a list (kept as AST: its elements are dims
 * or axes, read by the builtin that takes it), or poison.  Dimension
 * expressions (types, dim declarations, reshape targets, integer keywords)
 * go through eval_dim instead, which yields an affine Dim in the symbols.
 *
 * Errors.  Everything is reported with diag_error at the construct's
 * location, and sema keeps going: a failed expression yields poison, a
 * failed definition binds its name to poison, and poison silently
 * propagates, so one mistake is reported once.  A file that failed to parse
 * makes its importers lenient about unknown names for the same reason.
 *
 * Scopes are lexical: a block sees its own names, then its file's (its own
 * top-level definitions and those of the files it imports directly); a fn
 * body sees its parameters and locals, then the file that defined it.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- scopes -------------------------------------------------------------- */

typedef enum EKind { E_DIM, E_NUM, E_STR, E_BOOL, E_TENSOR, E_FN, E_POISON } EKind;

typedef struct Scope Scope;

typedef struct Entry {
    const char *name;
    EKind kind;
    SrcLoc loc;         /* where it was defined */
    Dim dim;            /* E_DIM */
    double num;         /* E_NUM */
    const char *str;    /* E_STR */
    bool b;             /* E_BOOL */
    Node *node;         /* E_TENSOR */
    const Ast *fn;      /* E_FN */
    Scope *env;         /* E_FN: the scope its body sees (its file's) */
    bool inlined;       /* E_FN: some call inlined it (else check_uncalled) */
} Entry;

struct Scope {
    Scope *parent;
    Entry **v;
    int n, cap;
    StrMap *index;      /* name -> entry, once the scope is large (a block's thousands of values) */
    bool lenient;       /* an import failed: unknown names are not reported */
};

typedef struct SFile {
    const char *path;   /* as messages name it */
    const char *key;    /* identity: the real path, else path */
    bool loading;       /* on the import stack: importing it again is a cycle */
    bool failed;        /* did not parse or could not be read */
    Scope *scope;       /* own definitions and direct imports */
    Scope own;          /* own definitions only: what an importer receives */
    AstList blocks;
    struct SFile *next;
} SFile;

#define MAX_IMPORT_DEPTH 64

typedef struct Sema {
    Graph *g;                   /* the block being lowered; NULL while loading */
    SFile *files;
    SFile *stack[MAX_IMPORT_DEPTH];
    int nstack;
    const Ast *inl[FE_MAX_INLINE];      /* fns being inlined, outermost first */
    int ninl;
    SrcLoc sym_loc[FU_MAX_SYMS];
    Scope outputs;              /* output names: their own namespace */
    Node **appended;            /* caches already appended to */
    int nappended;
    bool bad_source;            /* an input or cache failed: symbols may look unbound */
    const Ast *pair_call;       /* the topk call of `v, i = topk(...)` being evaluated */
    Node *pair_values;          /* its values (a gather of x by the indices) */
    SFile *root;                /* the file compiled: the blocks `repeat` may name */
    const Ast *block;           /* the block being lowered */
    struct Inst *inst;          /* the layer `repeat` is inlining, innermost; NULL outside */
} Sema;

static void note_dependency(const char *path);
static Entry *config_entry(const Ast *e);

static Scope *scope_new(Scope *parent) {
    Scope *s = fu_alloc(sizeof *s);
    s->parent = parent;
    return s;
}

static Entry *scope_find_local(const Scope *s, const char *name) {
    if (s->index)
        return strmap_get(s->index, name);
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->name, name) == 0)
            return s->v[i];
    return NULL;
}

static Entry *scope_find(const Scope *s, const char *name) {
    for (; s; s = s->parent) {
        Entry *e = scope_find_local(s, name);
        if (e)
            return e;
    }
    return NULL;
}

static bool scope_lenient(const Scope *s) {
    for (; s; s = s->parent)
        if (s->lenient)
            return true;
    return false;
}

static void scope_add(Scope *s, Entry *e) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        Entry **v = fu_alloc(sizeof(Entry *) * (size_t)cap);
        if (s->n)
            memcpy(v, s->v, sizeof(Entry *) * (size_t)s->n);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = e;
    if (!s->index && s->n > 32) {
        s->index = strmap_new();
        for (int i = 0; i < s->n - 1; i++)
            if (!strmap_has(s->index, s->v[i]->name))    /* the first definition wins */
                strmap_put(s->index, s->v[i]->name, s->v[i]);
    }
    if (s->index && !strmap_has(s->index, e->name))
        strmap_put(s->index, e->name, e);
}

static Entry *entry_new(const char *name, EKind kind, SrcLoc loc) {
    Entry *e = fu_alloc(sizeof *e);
    e->name = name;
    e->kind = kind;
    e->loc = loc;
    return e;
}

/* Binds e in s; a name is defined once per scope.  A redefinition keeps the
 * first definition and reports both places. */
static bool define(Scope *s, Entry *e) {
    Entry *old = scope_find_local(s, e->name);
    if (old) {
        diag_error(e->loc, "redefinition of '%s'", e->name);
        diag_note(old->loc, "'%s' was first defined here", e->name);
        return false;
    }
    scope_add(s, e);
    return true;
}

/* ---- names and messages -------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* How far a name may be from a visible one to count as a typo of it. */
static size_t typo_limit(const char *name) {
    size_t n = strlen(name) / 3;
    return n < 1 ? 1 : n > 3 ? 3 : n;
}

/* The visible name closest to `name`, if it is close enough to be a typo. */
static const Entry *closest(const Scope *s, const char *name, bool fns_only) {
    const Entry *best = NULL;
    size_t bestd = typo_limit(name) + 1;
    for (; s; s = s->parent)
        for (int i = 0; i < s->n; i++) {
            if (fns_only && s->v[i]->kind != E_FN)
                continue;
            size_t d = edit_distance(name, s->v[i]->name);
            if (d > 0 && d < bestd && d < strlen(name)) {
                best = s->v[i];
                bestd = d;
            }
        }
    return best;
}

static void unknown_name(const Scope *s, SrcLoc loc, const char *what, const char *name) {
    if (scope_lenient(s))
        return;
    diag_error(loc, "unknown %s '%s'", what, name);
    const Entry *e = closest(s, name, false);
    if (e)
        diag_note(e->loc, "did you mean '%s'?", e->name);
}

static const char *dim_str(const Sema *s, Dim d) {
    Buf b = {0};
    dim_print(&b, d, s->g ? s->g->sym_names : NULL);
    const char *r = fu_strdup(b.data ? b.data : "");
    free(b.data);
    return r;
}

/* The type "f32[T, 256]" of a declared (not yet built) tensor. */
static const char *type_str(const Sema *s, DType t, int rank, const Dim *shape) {
    Node tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.dtype = t;
    tmp.rank = rank;
    for (int d = 0; d < rank && d < FU_MAX_RANK; d++)
        tmp.shape[d] = shape[d];
    Buf b = {0};
    ir_type_str(&b, &tmp, s->g);
    const char *r = fu_strdup(b.data ? b.data : "");
    free(b.data);
    return r;
}

static const char *node_type_str(const Sema *s, const Node *n) {
    return type_str(s, n->dtype, n->rank, n->shape);
}

static bool is_c_ident(const char *name) { return strchr(name, '.') == NULL; }

/* ---- values -------------------------------------------------------------- */

typedef enum VKind { V_POISON, V_TENSOR, V_NUM, V_STR, V_BOOL, V_LIST } VKind;

typedef struct Value {
    VKind kind;
    Node *node;         /* V_TENSOR */
    double num;         /* V_NUM */
    const char *str;    /* V_STR */
    bool b;             /* V_BOOL */
    const Ast *list;    /* V_LIST: the AST_LIST */
} Value;

/* One layer of `repeat(BLOCK, x, ...)`: BLOCK's statements run with its
 * inputs bound to the call's tensors, its weights and caches named
 * prefix + name, its symbolic dims the caller's, and its output the value. */
typedef struct Inst {
    const Ast *blk;
    const char *prefix;         /* "model.layers.3." */
    const Value *args;          /* the inputs, in BLOCK's declaration order */
    int nargs, next;            /* next: the input declared next */
    Value result;               /* its (one) output */
    bool has_result;
    struct Inst *outer;
} Inst;

static bool same_type(const Node *x, DType t, int rank, const Dim *shape) {
    bool same = x->dtype == t && x->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = dim_eq(x->shape[d], shape[d]);
    return same;
}

static Value poison(void) {
    Value v;
    memset(&v, 0, sizeof v);
    v.kind = V_POISON;
    return v;
}

static Value num_value(double x) {
    Value v = poison();
    v.kind = V_NUM;
    v.num = x;
    return v;
}

static Value tensor_value(Node *n) {
    Value v = poison();
    v.kind = V_TENSOR;
    v.node = n;
    return v;
}

static const char *describe(const Value *v) {
    switch (v->kind) {
    case V_TENSOR: return "a tensor";
    case V_NUM: return "a number";
    case V_STR: return "a string";
    case V_BOOL: return "a boolean";
    case V_LIST: return "a list";
    case V_POISON: return "an invalid value";
    }
    return "a value";
}

/* Runs ir_infer on a freshly built node; its reason is the user's error.
 * A bf16/f16 operand that n cannot read itself is read through a convert
 * first (ir_convert; ir_takes says which operands read which types). */
static Value finish(Sema *s, Node *n) {
    char why[512];
    for (int j = 0; j < n->nin; j++)
        if (n->in[j] && dt_info(n->in[j]->dtype)->kind == DK_HALF && !ir_takes(n, j, n->in[j]->dtype))
            n->in[j] = ir_convert(s->g, n->in[j], n);
    if (!ir_infer(n, s->g, why, sizeof why)) {
        diag_error(n->loc, "%s", why);
        for (int j = 0; j < n->nin; j++) {
            const Node *x = n->in[j];
            const char *pat;
            if (x && x->op == OP_WEIGHT && dt_weight_rule(x->name, &pat) >= 0)
                diag_note(x->loc, "'%s' is %s by --weight-type '%s=%s'", x->name, dtype_name(x->dtype), pat,
                          dtype_name(x->dtype));
        }
        return poison();
    }
    return tensor_value(n);
}

static Node *const_node(Sema *s, double x, SrcLoc loc) {
    Node *n = ir_node(s->g, OP_CONST, 0, NULL, loc);
    n->f[0] = x;
    n->dtype = DT_F32;
    n->rank = 0;
    Value v = finish(s, n);
    return v.kind == V_TENSOR ? v.node : NULL;
}

/* A tensor operand: numbers become constant nodes.  NULL (after reporting,
 * unless v is poison) when v cannot be a tensor. */
static Node *to_tensor(Sema *s, const Value *v, SrcLoc loc) {
    switch (v->kind) {
    case V_TENSOR:
        return v->node;
    case V_NUM:
        return const_node(s, v->num, loc);
    case V_POISON:
        return NULL;
    default:
        diag_error(loc, "expected a tensor or a number, got %s", describe(v));
        return NULL;
    }
}

/* ---- dimension expressions ----------------------------------------------- */

static bool fits_int(double x) { return x == floor(x) && fabs(x) < 9007199254740992.0; }

/* Every dimension computation is checked (dim.c); one that leaves the
 * representable range is reported where it happens. */
static bool dim_too_large(const Ast *e) {
    diag_error(e->loc, "dimension too large");
    return false;
}

static bool dim_fail_nested(const Ast *e) {
    diag_error(e->loc, "expression nested too deeply (more than %d levels)", FE_MAX_NESTING);
    return false;
}

static const char *ast_what(const Ast *e) {
    switch (e->kind) {
    case AST_STR: return "a string";
    case AST_BOOL: return "a boolean";
    case AST_LIST: return "a list";
    case AST_CALL: return "a call";
    case AST_NUM: return "a number";
    case AST_NAME: return "a name";
    default: return "an expression";
    }
}

/* dim = integer | name | dim ('+'|'-'|'*'|'/') dim | '-' dim
 * Affine in the symbols; '*' needs a constant side and '/' a constant
 * divisor that divides exactly.  false after reporting (or on poison). */
static bool eval_dim(Sema *s, Scope *sc, const Ast *e, int depth, Dim *out) {
    if (depth > FE_MAX_NESTING)
        return dim_fail_nested(e);
    switch (e->kind) {
    case AST_NUM:
        if (!e->is_int) {
            diag_error(e->loc, "expected an integer dimension, got %g", e->num);
            return false;
        }
        *out = dim_const(e->ival);
        return true;
    case AST_NAME: {
        Entry *en = scope_find(sc, e->name);
        if (!en)
            en = config_entry(e);
        if (!en) {
            unknown_name(sc, e->loc, "dimension", e->name);
            return false;
        }
        switch (en->kind) {
        case E_DIM:
            *out = en->dim;
            return true;
        case E_NUM:
            if (!fits_int(en->num)) {
                diag_error(e->loc, "'%s' is %g, not an integer dimension", e->name, en->num);
                return false;
            }
            *out = dim_const((int64_t)en->num);
            return true;
        case E_POISON:
            return false;
        case E_TENSOR:
            diag_error(e->loc, "'%s' is a tensor, not a dimension", e->name);
            return false;
        default:
            diag_error(e->loc, "'%s' is not a dimension", e->name);
            return false;
        }
    }
    case AST_NEG: {
        Dim a;
        if (!eval_dim(s, sc, e->a, depth + 1, &a))
            return false;
        if (!dim_neg_ok(a, out))
            return dim_too_large(e);
        return true;
    }
    case AST_BINOP: {
        Dim a, b;
        bool oka = eval_dim(s, sc, e->a, depth + 1, &a);
        bool okb = eval_dim(s, sc, e->b, depth + 1, &b);
        if (!oka || !okb)
            return false;
        bool ca = dim_is_const(a), cb = dim_is_const(b);
        switch (e->op) {
        case '+':
            return dim_add_ok(a, b, out) || dim_too_large(e);
        case '-':
            return dim_sub_ok(a, b, out) || dim_too_large(e);
        case '*':
            if (!ca && !cb) {
                diag_error(e->loc, "cannot multiply symbolic dimensions %s and %s", dim_str(s, a),
                           dim_str(s, b));
                return false;
            }
            return dim_mul(a, b, out) || dim_too_large(e);
        case '/': {
            if (!cb) {
                diag_error(e->loc, "cannot divide by the symbolic dimension %s", dim_str(s, b));
                return false;
            }
            if (b.c == 0) {
                diag_error(e->loc, "division by zero in a dimension");
                return false;
            }
            bool exact = a.c % b.c == 0;
            for (int k = 0; k < FU_MAX_SYMS; k++)
                exact = exact && a.k[k] % b.c == 0;
            if (!exact) {
                diag_error(e->loc, "dimension division %s / %s is not exact", dim_str(s, a),
                           dim_str(s, b));
                return false;
            }
            Dim q = a;
            q.c = a.c / b.c;
            for (int k = 0; k < FU_MAX_SYMS; k++)
                q.k[k] = (int32_t)(a.k[k] / b.c);
            *out = q;
            return true;
        }
        }
        FU_UNREACHABLE();
    }
    default:
        diag_error(e->loc, "expected a dimension, got %s", ast_what(e));
        return false;
    }
}

/* A dimension that must be known at compile time (axes, lengths, counts). */
static bool eval_const_int(Sema *s, Scope *sc, const Ast *e, const char *what, int64_t *out) {
    Dim d;
    if (!eval_dim(s, sc, e, 0, &d))
        return false;
    if (!dim_is_const(d)) {
        diag_error(e->loc, "%s must be a constant, but %s is symbolic", what, dim_str(s, d));
        return false;
    }
    *out = d.c;
    return true;
}

/* type = ('f32' | 'i32') '[' [dim {',' dim}] ']'; constant dims >= 1. */
static bool eval_type(Sema *s, Scope *sc, const Ast *t, int *rank, Dim *shape) {
    if (t->list.n > FU_MAX_RANK) {
        diag_error(t->loc, "a tensor has at most %d dimensions, this type has %d", FU_MAX_RANK,
                   t->list.n);
        return false;
    }
    bool ok = true;
    for (int d = 0; d < t->list.n; d++) {
        const Ast *e = t->list.v[d];
        if (!eval_dim(s, sc, e, 0, &shape[d])) {
            ok = false;
            continue;
        }
        if (dim_is_const(shape[d]) && shape[d].c < 1) {
            diag_error(e->loc, "dimension must be positive, got %lld", (long long)shape[d].c);
            ok = false;
        }
    }
    *rank = t->list.n;
    return ok;
}

/* ---- expressions --------------------------------------------------------- */

static Value eval(Sema *s, Scope *sc, const Ast *e, int depth);
static Value call(Sema *s, Scope *sc, const Ast *e, int depth);

/* ---- config.json ---------------------------------------------------------- */

/* The model's config (fusec --config): `config.hidden_size`, or a nested
 * `config.rope_parameters.rope_theta`, is its value wherever a name may be. */
static fr_json config_json;
static const char *config_path;

int fe_load_config(const char *path) {
    fr_err err;
    fr_json_free(&config_json);
    config_path = NULL;
    if (fr_json_load(&config_json, path, &err) != FR_OK) {
        diag_plain_error("%s", err.msg);
        return -1;
    }
    if (config_json.type != FR_JSON_OBJ) {
        diag_plain_error("config '%s' is not a JSON object", path);
        fr_json_free(&config_json);
        return -1;
    }
    config_path = fu_strdup(path);
    note_dependency(config_path);
    return 0;
}

/* The entry of an unbound name config.KEY[.KEY...]: a number, boolean or
 * string of the config, or poison after reporting; NULL for other names. */
static Entry *config_entry(const Ast *e) {
    if (strncmp(e->name, "config.", 7) != 0)
        return NULL;
    Entry *en = entry_new(e->name, E_POISON, e->loc);
    if (!config_path) {
        diag_error(e->loc, "'%s' reads the model's config.json, but none was given (fusec --config FILE)",
                   e->name);
        return en;
    }
    const fr_json *v = &config_json;
    const char *p = e->name + 7;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        const char *key = fu_strndup(p, dot ? (size_t)(dot - p) : strlen(p));
        v = fr_json_get(v, key);
        p = dot ? dot + 1 : p + strlen(p);
    }
    if (!v) {
        diag_error(e->loc, "config '%s' has no '%s'", config_path, e->name + 7);
    } else if (v->type == FR_JSON_NUM) {
        en->kind = E_NUM;
        en->num = v->num;
    } else if (v->type == FR_JSON_BOOL) {
        en->kind = E_BOOL;
        en->b = v->num != 0;
    } else if (v->type == FR_JSON_STR) {
        en->kind = E_STR;
        en->str = fu_strdup(v->str);
    } else {
        diag_error(e->loc, "'%s' in config '%s' is not a number, boolean or string", e->name + 7, config_path);
    }
    return en;
}

static Value name_value(Scope *sc, const Ast *e) {
    Entry *en = scope_find(sc, e->name);
    if (!en)
        en = config_entry(e);
    if (!en) {
        unknown_name(sc, e->loc, "name", e->name);
        return poison();
    }
    Value v = poison();
    switch (en->kind) {
    case E_TENSOR:
        return tensor_value(en->node);
    case E_NUM:
        return num_value(en->num);
    case E_DIM:
        if (!dim_is_const(en->dim)) {
            diag_error(e->loc, "symbolic dimension '%s' has no value at compile time; a constant is needed here",
                       e->name);
            return poison();
        }
        return num_value((double)en->dim.c);
    case E_STR:
        v.kind = V_STR;
        v.str = en->str;
        return v;
    case E_BOOL:
        v.kind = V_BOOL;
        v.b = en->b;
        return v;
    case E_FN:
        diag_error(e->loc, "'%s' is a fn; call it with arguments", e->name);
        return poison();
    case E_POISON:
        return poison();
    }
    FU_UNREACHABLE();
}

static Op compare_op(int op) {
    switch (op) {
    case '<': return OP_LT;
    case '>': return OP_GT;
    case AST_OP_LE: return OP_LE;
    case AST_OP_GE: return OP_GE;
    case AST_OP_EQ: return OP_EQ;
    case AST_OP_NE: return OP_NE;
    default: return OP_COUNT;
    }
}

static Value binop(Sema *s, const Ast *e, Value a, Value b) {
    if (a.kind == V_POISON || b.kind == V_POISON)
        return poison();
    if (a.kind == V_NUM && b.kind == V_NUM) {
        switch (e->op) {
        case '<': return num_value(a.num < b.num);
        case '>': return num_value(a.num > b.num);
        case AST_OP_LE: return num_value(a.num <= b.num);
        case AST_OP_GE: return num_value(a.num >= b.num);
        case AST_OP_EQ: return num_value(a.num == b.num);
        case AST_OP_NE: return num_value(a.num != b.num);
        case '+': return num_value(a.num + b.num);
        case '-': return num_value(a.num - b.num);
        case '*': return num_value(a.num * b.num);
        case '/':
            if (b.num == 0) {
                diag_error(e->loc, "division by zero");
                return poison();
            }
            return num_value(a.num / b.num);
        }
        FU_UNREACHABLE();
    }
    const Value *bad = (a.kind != V_TENSOR && a.kind != V_NUM) ? &a
                       : (b.kind != V_TENSOR && b.kind != V_NUM) ? &b
                                                                 : NULL;
    if (bad) {
        diag_error(e->loc, "operator '%s' needs tensors or numbers, got %s", ast_op_text(e->op), describe(bad));
        return poison();
    }
    if (!s->g) {
        diag_error(e->loc, "tensors exist only inside a block");
        return poison();
    }
    Node *in[2] = {to_tensor(s, &a, e->a->loc), to_tensor(s, &b, e->b->loc)};
    if (!in[0] || !in[1])
        return poison();
    Op op = e->op == '+' ? OP_ADD : e->op == '-' ? OP_SUB : e->op == '*' ? OP_MUL : e->op == '/' ? OP_DIV
                                                                                     : compare_op(e->op);
    return finish(s, ir_node(s->g, op, 2, in, e->loc));
}

/* The value of an expression; tensors are built into s->g. */
static Value eval(Sema *s, Scope *sc, const Ast *e, int depth) {
    if (depth > FE_MAX_NESTING) {
        dim_fail_nested(e);
        return poison();
    }
    Value v = poison();
    switch (e->kind) {
    case AST_NUM:
        return num_value(e->num);
    case AST_STR:
        v.kind = V_STR;
        v.str = e->str;
        return v;
    case AST_BOOL:
        v.kind = V_BOOL;
        v.b = e->ival != 0;
        return v;
    case AST_LIST:
        v.kind = V_LIST;
        v.list = e;
        return v;
    case AST_NAME:
        return name_value(sc, e);
    case AST_NEG: {
        Value a = eval(s, sc, e->a, depth + 1);
        if (a.kind == V_NUM)
            return num_value(-a.num);
        if (a.kind == V_POISON)
            return poison();
        if (a.kind != V_TENSOR) {
            diag_error(e->loc, "cannot negate %s", describe(&a));
            return poison();
        }
        return finish(s, ir_node(s->g, OP_NEG, 1, &a.node, e->loc));
    }
    case AST_BINOP: {
        Value a = eval(s, sc, e->a, depth + 1);
        Value b = eval(s, sc, e->b, depth + 1);
        return binop(s, e, a, b);
    }
    case AST_CALL:
        return call(s, sc, e, depth);
    default:
        FU_UNREACHABLE();
    }
}

/* ---- builtins ------------------------------------------------------------ */

typedef enum KwType { K_INT, K_FLOAT, K_BOOL, K_STR } KwType;

typedef struct KwSpec {
    const char *name;
    KwType type;
    bool required;
} KwSpec;

#define MAX_KW 6

/* What a builtin takes besides its tensors. */
typedef struct Builtin {
    int tmin, tmax;         /* tensor arguments */
    int list;               /* trailing list argument: 0 none, 1 optional, 2 required */
    const char *list_kw;    /* the keyword that may pass the list instead */
    KwSpec kw[MAX_KW];
} Builtin;

static Builtin builtin_spec(Op op) {
    Builtin b;
    memset(&b, 0, sizeof b);
    b.tmin = op_info[op].min_in;
    b.tmax = op_info[op].max_in;
    switch (op) {
    case OP_SUM: case OP_MAX: case OP_MEAN:
        b.kw[0] = (KwSpec){"axis", K_INT, false};
        break;
    case OP_LINEAR:
        b.kw[0] = (KwSpec){"layout", K_STR, false};
        break;
    case OP_RESHAPE:
        b.list = 2;
        b.list_kw = "shape";
        break;
    case OP_TRANSPOSE:
        b.list = 1;
        b.list_kw = "perm";
        break;
    case OP_SLICE:
        b.kw[0] = (KwSpec){"axis", K_INT, false};
        b.kw[1] = (KwSpec){"start", K_INT, true};
        b.kw[2] = (KwSpec){"len", K_INT, true};
        break;
    case OP_CONCAT:
        b.kw[0] = (KwSpec){"axis", K_INT, false};
        break;
    case OP_RMS_NORM: case OP_LAYER_NORM:
        b.kw[0] = (KwSpec){"eps", K_FLOAT, false};
        break;
    case OP_ROPE:
        b.kw[0] = (KwSpec){"head_dim", K_INT, true};
        b.kw[1] = (KwSpec){"theta", K_FLOAT, false};
        break;
    case OP_TOPK:
        b.kw[0] = (KwSpec){"k", K_INT, false};
        break;
    case OP_ATTENTION:
        b.kw[0] = (KwSpec){"heads", K_INT, true};
        b.kw[1] = (KwSpec){"kv_heads", K_INT, false};
        b.kw[2] = (KwSpec){"causal", K_BOOL, false};
        b.kw[3] = (KwSpec){"scale", K_FLOAT, false};
        b.kw[4] = (KwSpec){"softcap", K_FLOAT, false};
        b.kw[5] = (KwSpec){"window", K_INT, false};
        break;
    default:
        break;
    }
    return b;
}

/* A keyword's value, read according to its spec. */
typedef struct KwVal {
    bool given, ok;
    int64_t i;
    double f;
    bool b;
    const char *s;
    SrcLoc loc;
} KwVal;

static const char *const kw_type_names[] = {"an integer", "a number", "true or false", "a string"};

static void read_kw(Sema *s, Scope *sc, const char *fname, const KwSpec *k, const Ast *e, int depth,
                    KwVal *out) {
    out->given = true;
    out->loc = e->loc;
    if (k->type == K_INT) {
        if (e->kind == AST_STR || e->kind == AST_BOOL || e->kind == AST_LIST ||
            (e->kind == AST_NUM && !e->is_int)) {
            diag_error(e->loc, "keyword '%s' of '%s' expects an integer, got %s", k->name, fname,
                       e->kind == AST_NUM ? "a fractional number" : ast_what(e));
            return;
        }
        out->ok = eval_const_int(s, sc, e, fu_format("'%s'", k->name), &out->i);
        return;
    }
    Value v = eval(s, sc, e, depth + 1);
    if (v.kind == V_POISON)
        return;
    bool match = (k->type == K_FLOAT && v.kind == V_NUM) || (k->type == K_BOOL && v.kind == V_BOOL) ||
                 (k->type == K_STR && v.kind == V_STR);
    if (!match) {
        diag_error(e->loc, "keyword '%s' of '%s' expects %s, got %s", k->name, fname,
                   kw_type_names[k->type], describe(&v));
        return;
    }
    out->ok = true;
    out->f = v.num;
    out->b = v.b;
    out->s = v.str;
}

/* An axis in [-rank, rank), normalized to >= 0. */
static bool norm_axis(Sema *s, const char *fname, const KwVal *k, const Node *x, int64_t *axis) {
    int64_t a = k->i;
    if (a < -x->rank || a >= x->rank) {
        diag_error(k->loc, "'%s': axis %lld is out of range for %s", fname, (long long)a,
                   node_type_str(s, x));
        return false;
    }
    *axis = a < 0 ? a + x->rank : a;
    return true;
}

/* An elementwise builtin applied to a number is folded, so `rsqrt(HD)`
 * is a number like `1.0 / 8` rather than a rank-0 tensor. */
static Value fold_unary(const Ast *e, Op op, double x) {
    double y;
    switch (op) {
    case OP_NEG: y = -x; break;
    case OP_EXP: y = exp(x); break;
    case OP_LOG: y = log(x); break;
    case OP_SQRT: y = sqrt(x); break;
    case OP_RSQRT: y = 1.0 / sqrt(x); break;
    case OP_RECIP: y = 1.0 / x; break;
    case OP_TANH: y = tanh(x); break;
    case OP_SIGMOID: y = 1.0 / (1.0 + exp(-x)); break;
    case OP_SILU: y = x / (1.0 + exp(-x)); break;
    case OP_RELU: y = x > 0 ? x : 0; break;
    case OP_GELU: y = 0.5 * x * (1.0 + erf(x / sqrt(2.0))); break;
    case OP_GELU_TANH:
        y = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        break;
    default: FU_UNREACHABLE();
    }
    if (!isfinite(y)) {
        diag_error(e->loc, "'%s' of %g is not a finite number", op_info[op].name, x);
        return poison();
    }
    return num_value(y);
}

static const char *plural(int n, const char *one, const char *many) { return n == 1 ? one : many; }

static Value call_builtin(Sema *s, Scope *sc, const Ast *e, Op op, bool argmax, int depth) {
    const char *fname = argmax ? "argmax" : op_info[op].name;
    Builtin spec = builtin_spec(op);
    const Ast *pos[8];
    int npos = 0;
    const Ast *list = NULL;
    KwVal kv[MAX_KW];
    memset(kv, 0, sizeof kv);
    bool ok = true;

    /* Sort the arguments: positionals (a trailing list is the shape or
     * permutation when the builtin takes one), then keywords. */
    for (int i = 0; i < e->list.n; i++) {
        const Ast *a = e->list.v[i];
        if (a->kind == AST_KWARG && spec.list_kw && strcmp(a->name, spec.list_kw) == 0) {
            if (a->a->kind != AST_LIST) {
                diag_error(a->a->loc, "keyword '%s' of '%s' expects a list, got %s", a->name, fname,
                           ast_what(a->a));
                return poison();
            }
            if (list) {
                diag_error(a->loc, "'%s' is given twice", a->name);
                return poison();
            }
            list = a->a;
            continue;
        }
        if (a->kind == AST_KWARG)
            continue;
        if (a->kind == AST_LIST && spec.list && !list) {
            list = a;
            continue;
        }
        if (npos < 8)
            pos[npos] = a;
        npos++;
    }
    /* cast(x, i32) and topk(x, 2): a type or k after the tensor */
    const Ast *extra = NULL;
    if ((op == OP_CAST || (op == OP_TOPK && !argmax)) && npos == 2) {
        extra = pos[1];
        npos = 1;
    }
    if (op == OP_CAST && !extra) {
        diag_error(e->loc, "'cast' needs the type to convert to, e.g. cast(x, i32)");
        return poison();
    }
    if (argmax)
        spec.kw[0].name = NULL;
    if (npos < spec.tmin || npos > spec.tmax) {
        if (spec.tmin == spec.tmax)
            diag_error(e->loc, "'%s' takes %d tensor %s, got %d", fname, spec.tmin,
                       plural(spec.tmin, "argument", "arguments"), npos);
        else
            diag_error(e->loc, "'%s' takes %d or %d tensor arguments, got %d", fname, spec.tmin,
                       spec.tmax, npos);
        return poison();
    }
    if (spec.list == 2 && !list) {
        diag_error(e->loc, "'%s' needs a list of dimensions, e.g. %s(x, [T, 8, 32])", fname, fname);
        return poison();
    }

    Node *in[FU_MAX_IN] = {NULL};
    for (int i = 0; i < npos; i++) {
        Value v = eval(s, sc, pos[i], depth + 1);
        if (op_info[op].cat == CAT_UNARY && v.kind == V_NUM && e->list.n == 1)
            return fold_unary(e, op, v.num);
        in[i] = to_tensor(s, &v, pos[i]->loc);
        ok = ok && in[i];
    }
    for (int i = 0; i < e->list.n; i++) {
        const Ast *a = e->list.v[i];
        if (a->kind != AST_KWARG || (spec.list_kw && strcmp(a->name, spec.list_kw) == 0))
            continue;
        int k = 0;
        while (k < MAX_KW && spec.kw[k].name && strcmp(spec.kw[k].name, a->name) != 0)
            k++;
        if (k == MAX_KW || !spec.kw[k].name) {
            diag_error(a->loc, "unknown keyword '%s' for '%s'", a->name, fname);
            ok = false;
            continue;
        }
        if (kv[k].given) {
            diag_error(a->loc, "keyword '%s' is given twice", a->name);
            ok = false;
            continue;
        }
        read_kw(s, sc, fname, &spec.kw[k], a->a, depth, &kv[k]);
        ok = ok && kv[k].ok;
    }
    for (int k = 0; k < MAX_KW && spec.kw[k].name; k++)
        if (spec.kw[k].required && !kv[k].given) {
            diag_error(e->loc, "'%s' needs the keyword '%s'", fname, spec.kw[k].name);
            ok = false;
        }
    if (!ok)
        return poison();

    int64_t topk_k = 1;
    if (op == OP_TOPK && !argmax) {
        if (extra && kv[0].given) {
            diag_error(kv[0].loc, "'topk': k is given twice");
            return poison();
        }
        if (!extra && !kv[0].given) {
            diag_error(e->loc, "'topk' needs k, e.g. topk(x, 2)");
            return poison();
        }
        if (extra && !eval_const_int(s, sc, extra, "k", &topk_k))
            return poison();
        if (!extra)
            topk_k = kv[0].i;
    }
    DType cast_to = DT_F32;
    if (op == OP_CAST) {
        Value tv = eval(s, sc, extra, depth + 1);
        if (tv.kind == V_POISON)
            return poison();
        if (tv.kind != V_STR || (strcmp(tv.str, "f32") != 0 && strcmp(tv.str, "i32") != 0)) {
            diag_error(extra->loc, "'cast' converts to f32 or i32, got %s",
                       tv.kind == V_STR ? fu_format("%s", tv.str) : describe(&tv));
            return poison();
        }
        cast_to = strcmp(tv.str, "i32") == 0 ? DT_I32 : DT_F32;
    }
    if (op == OP_TOPK && !argmax && s->pair_call != e) {
        diag_error(e->loc, "'topk' gives two values: write `values, indices = topk(x, k);`");
        return poison();
    }

    Node *n = ir_node(s->g, op, npos, in, e->loc);
    Node *x = in[0];
    switch (op) {
    case OP_CAST:
        n->i[0] = cast_to;
        break;
    case OP_TOPK:
        n->i[0] = topk_k;
        break;
    case OP_POSITIONS:
        n->i[0] = s->g->cache_sym;
        break;
    case OP_SUM: case OP_MAX: case OP_MEAN: {
        KwVal ax = kv[0];
        if (!ax.given)
            ax.i = -1, ax.loc = e->loc;
        if (!norm_axis(s, fname, &ax, x, &n->i[0]))
            return poison();
        break;
    }
    case OP_CONCAT: {
        KwVal ax = kv[0];
        if (!ax.given)
            ax.i = -1, ax.loc = e->loc;
        if (!norm_axis(s, fname, &ax, x, &n->i[0]))
            return poison();
        break;
    }
    case OP_SLICE: {
        KwVal ax = kv[0];
        if (!ax.given)
            ax.i = -1, ax.loc = e->loc;
        if (!norm_axis(s, fname, &ax, x, &n->i[0]))
            return poison();
        n->i[1] = kv[1].i;
        n->i[2] = kv[2].i;
        break;
    }
    case OP_LINEAR:
        if (kv[0].given) {
            if (strcmp(kv[0].s, "out_in") == 0)
                n->i[0] = 0;
            else if (strcmp(kv[0].s, "in_out") == 0)
                n->i[0] = 1;
            else {
                diag_error(kv[0].loc, "'linear': layout must be \"out_in\" or \"in_out\", got \"%s\"",
                           kv[0].s);
                return poison();
            }
        }
        break;
    case OP_RMS_NORM: case OP_LAYER_NORM:
        n->f[0] = kv[0].given ? kv[0].f : 1e-5;
        break;
    case OP_ROPE:
        n->i[0] = kv[0].i;
        n->f[0] = kv[1].given ? kv[1].f : 10000.0;
        break;
    case OP_ATTENTION: {
        int64_t H = kv[0].i, KVH = kv[1].given ? kv[1].i : H;
        if (H < 1 || KVH < 1) {
            diag_error(e->loc, "'attention': heads and kv_heads must be positive");
            return poison();
        }
        Dim last = x->rank ? x->shape[x->rank - 1] : dim_const(0);
        if (x->rank < 1 || !dim_is_const(last) || last.c % H) {
            diag_error(e->loc, "'attention': the last dimension of q %s is not a multiple of heads = %lld",
                       node_type_str(s, x), (long long)H);
            return poison();
        }
        n->i[0] = H;
        n->i[1] = KVH;
        n->i[2] = last.c / H;
        n->i[3] = kv[2].given && kv[2].b;
        n->f[0] = kv[3].given ? kv[3].f : 1.0 / sqrt((double)n->i[2]);
        /* C and 1 / C must be normal floats: the kernels compute C * tanh(s * (1 / C)) */
        if (kv[4].given && !(kv[4].f >= 1e-30 && kv[4].f <= 1e30)) {
            diag_error(kv[4].loc, "'attention': softcap must be a number in [1e-30, 1e30], got %g", kv[4].f);
            return poison();
        }
        n->f[1] = kv[4].given ? kv[4].f : 0.0;
        if (kv[5].given && (kv[5].i < 1 || !n->i[3])) {
            diag_error(kv[5].loc, kv[5].i < 1 ? "'attention': window must be at least 1, got %lld"
                                              : "'attention': window needs causal = true",
                       (long long)kv[5].i);
            return poison();
        }
        n->i[4] = kv[5].given ? kv[5].i : 0;
        break;
    }
    case OP_RESHAPE: {
        if (list->list.n > FU_MAX_RANK) {
            diag_error(list->loc, "'reshape': a tensor has at most %d dimensions, got %d", FU_MAX_RANK,
                       list->list.n);
            return poison();
        }
        bool good = true;
        for (int d = 0; d < list->list.n; d++) {
            const Ast *de = list->list.v[d];
            if (!eval_dim(s, sc, de, depth + 1, &n->shape[d])) {
                good = false;
            } else if (dim_is_const(n->shape[d]) && n->shape[d].c < 1) {
                diag_error(de->loc, "dimension must be positive, got %lld", (long long)n->shape[d].c);
                good = false;
            }
        }
        if (!good)
            return poison();
        n->rank = list->list.n;
        n->dtype = x->dtype;
        break;
    }
    case OP_TRANSPOSE: {
        if (!list) {
            if (x->rank != 2) {
                diag_error(e->loc, "'transpose' of %s needs a permutation, e.g. [1, 0, 2]",
                           node_type_str(s, x));
                return poison();
            }
            n->i[0] = 1;
            n->i[1] = 0;
            break;
        }
        if (list->list.n != x->rank) {
            diag_error(list->loc, "'transpose': the permutation has %d axes but %s has %d", list->list.n,
                       node_type_str(s, x), x->rank);
            return poison();
        }
        for (int d = 0; d < list->list.n; d++)
            if (!eval_const_int(s, sc, list->list.v[d], "an axis", &n->i[d]))
                return poison();
        break;
    }
    default:
        break;
    }
    Value v = finish(s, n);
    if (v.kind == V_TENSOR && op == OP_TOPK && !argmax) {
        /* the values: x at the indices (the same node form as gather(x, i)) */
        Node *gin[2] = {x, n};
        Value gv = finish(s, ir_node(s->g, OP_GATHER, 2, gin, e->loc));
        if (gv.kind != V_TENSOR)
            return poison();
        s->pair_values = gv.node;
    }
    if (v.kind == V_TENSOR && op == OP_APPEND) {
        for (int i = 0; i < s->nappended; i++)
            if (s->appended[i] == x) {
                diag_error(e->loc, "cache '%s' is appended to twice; a block appends once per cache",
                           x->name);
                return poison();
            }
        Node **a = fu_alloc(sizeof(Node *) * (size_t)(s->nappended + 1));
        if (s->nappended)
            memcpy(a, s->appended, sizeof(Node *) * (size_t)s->nappended);
        a[s->nappended++] = x;
        s->appended = a;
    }
    return v;
}

/* ---- fns ----------------------------------------------------------------- */

static void run_stmt(Sema *s, Scope *sc, const Ast *st, int depth);

static Entry *bind_value(const char *name, SrcLoc loc, const Value *v) {
    Entry *e = entry_new(name, E_POISON, loc);
    switch (v->kind) {
    case V_TENSOR: e->kind = E_TENSOR; e->node = v->node; break;
    case V_NUM: e->kind = E_NUM; e->num = v->num; break;
    case V_STR: e->kind = E_STR; e->str = v->str; break;
    case V_BOOL: e->kind = E_BOOL; e->b = v->b; break;
    case V_LIST:
        diag_error(loc, "a list cannot be bound to a name; lists are only call arguments");
        break;
    case V_POISON: break;
    }
    return e;
}

/* Inlines fn at a call: binds the arguments (positional, or by parameter
 * name), runs the body in a scope under the fn's own file, and yields the
 * value of its return. */
static Value call_fn(Sema *s, Scope *sc, const Ast *e, Entry *fe, int depth) {
    const Ast *fn = fe->fn;
    fe->inlined = true;
    for (int i = 0; i < s->ninl; i++)
        if (s->inl[i] == fn) {
            diag_error(e->loc, "recursive call to fn '%s'; fns are inlined and cannot recurse", fn->name);
            return poison();
        }
    if (s->ninl == FE_MAX_INLINE) {
        diag_error(e->loc, "fn calls nested too deeply (more than %d)", FE_MAX_INLINE);
        return poison();
    }
    int nparams = fn->list.n, npos = 0;
    for (int i = 0; i < e->list.n; i++)
        npos += e->list.v[i]->kind != AST_KWARG;
    if (npos > nparams) {
        diag_error(e->loc, "fn '%s' takes %d %s, got %d", fn->name, nparams,
                   plural(nparams, "argument", "arguments"), npos);
        diag_note(fn->loc, "'%s' is defined here", fn->name);
        return poison();
    }
    Scope *local = scope_new(fe->env);
    Entry **bound = fu_alloc(sizeof(Entry *) * (size_t)(nparams + 1));
    bool ok = true;
    int p = 0;
    for (int i = 0; i < e->list.n; i++) {
        const Ast *a = e->list.v[i];
        int slot = p;
        const Ast *val = a;
        if (a->kind == AST_KWARG) {
            slot = -1;
            for (int j = 0; j < nparams; j++)
                if (strcmp(fn->list.v[j]->name, a->name) == 0)
                    slot = j;
            if (slot < 0) {
                diag_error(a->loc, "fn '%s' has no parameter '%s'", fn->name, a->name);
                ok = false;
                continue;
            }
            if (bound[slot]) {
                diag_error(a->loc, "parameter '%s' is given twice", a->name);
                ok = false;
                continue;
            }
            val = a->a;
        } else if (bound[p++]) {
            diag_error(a->loc, "parameter '%s' is given twice", fn->list.v[slot]->name);
            ok = false;
            continue;
        }
        Value v = eval(s, sc, val, depth + 1);
        if (v.kind == V_LIST) {
            diag_error(val->loc, "a list cannot be passed to a fn");
            ok = false;
        }
        const Ast *param = fn->list.v[slot];
        bound[slot] = bind_value(param->name, param->loc, &v);
        ok = ok && v.kind != V_POISON;
    }
    if (!ok)
        return poison();
    for (int j = 0; j < nparams; j++)
        if (!bound[j]) {
            diag_error(e->loc, "fn '%s' takes %d %s, got no value for '%s'", fn->name, nparams,
                       plural(nparams, "argument", "arguments"), fn->list.v[j]->name);
            return poison();
        }
    for (int j = 0; j < nparams; j++)
        if (!define(local, bound[j]))
            ok = false;
    if (!ok)
        return poison();

    int errors = diag_error_count();
    s->inl[s->ninl++] = fn;
    Value result = poison();
    for (int i = 0; i < fn->body.n; i++) {
        const Ast *st = fn->body.v[i];
        if (st->kind == AST_RETURN)
            result = eval(s, local, st->a, depth + 1);
        else
            run_stmt(s, local, st, depth + 1);
    }
    s->ninl--;
    if (diag_error_count() > errors)
        diag_note(e->loc, "in the call to '%s' here", fn->name);
    return result;
}

/* One step of moe's lowering: a node of op on `in` with i[0] = k, i[1] =
 * norm, typed (NULL after an error). */
static Node *moe_step(Sema *s, Op op, int nin, Node *a, Node *b, Node *c, int64_t k, bool norm, SrcLoc loc) {
    Node *in[FU_MAX_IN] = {a, b, c};
    Node *n = ir_node(s->g, op, nin, in, loc);
    n->i[0] = k;
    n->i[1] = norm;
    Value v = finish(s, n);
    return v.kind == V_TENSOR ? v.node : NULL;
}

/*
 * moe(x, router, gate_up, down, top_k = K, norm_topk = B): the sparse MoE
 * MLP of Mixtral and Qwen3-MoE, lowered to
 *   logits = linear(x, router)                  [T, E]  (router [E, D])
 *   h = moe_up(x, logits, gate_up) {K, B}       [T, K, I]  (gate_up [E, 2I, D])
 *   y = moe_down(h, logits, down) {K, B}        [T, D]  (down [E, D, I])
 * where both expert ops route each token themselves (ops.def): softmax of
 * its logits, the K largest (ties: the lower expert), their probabilities
 * renormalised when B; moe_up scales h by them.  Only the K selected
 * experts' weights are read (emit_c.c).
 */
static Value call_moe(Sema *s, Scope *sc, const Ast *e, int depth) {
    static const KwSpec specs[2] = {{"top_k", K_INT, true}, {"norm_topk", K_BOOL, true}};
    KwVal kv[2];
    memset(kv, 0, sizeof kv);
    const Ast *pos[4];
    int npos = 0;
    bool ok = true;
    for (int i = 0; i < e->list.n; i++) {
        const Ast *a = e->list.v[i];
        if (a->kind != AST_KWARG) {
            if (npos < 4)
                pos[npos] = a;
            npos++;
            continue;
        }
        int k = strcmp(a->name, "top_k") == 0 ? 0 : strcmp(a->name, "norm_topk") == 0 ? 1 : -1;
        if (k < 0) {
            diag_error(a->loc, "unknown keyword '%s' for 'moe' (it takes top_k and norm_topk)", a->name);
            ok = false;
        } else if (kv[k].given) {
            diag_error(a->loc, "keyword '%s' is given twice", a->name);
            ok = false;
        } else {
            read_kw(s, sc, "moe", &specs[k], a->a, depth, &kv[k]);
            ok = ok && kv[k].ok;
        }
    }
    if (npos != 4) {
        diag_error(e->loc, "'moe' takes 4 tensor arguments (x, router, gate_up, down), got %d", npos);
        return poison();
    }
    for (int k = 0; k < 2; k++)
        if (!kv[k].given) {
            diag_error(e->loc, "'moe' needs the keyword '%s'", specs[k].name);
            ok = false;
        }
    Node *in[4];
    for (int i = 0; i < 4; i++) {
        Value v = eval(s, sc, pos[i], depth + 1);
        in[i] = to_tensor(s, &v, pos[i]->loc);
        ok = ok && in[i];
    }
    if (!ok)
        return poison();
    Node *x = in[0], *r = in[1];
    if (x->rank != 2 || r->rank != 2 || !dim_is_const(r->shape[0]) || !dim_eq(r->shape[1], x->shape[1])) {
        diag_error(e->loc, "'moe' needs x [T, D] and a router [E, D], got %s and %s", node_type_str(s, x),
                   node_type_str(s, r));
        return poison();
    }
    int64_t E = r->shape[0].c, K = kv[0].i;
    if (K < 1 || K > E) {
        diag_error(kv[0].loc, "'moe': top_k = %lld is outside [1, %lld], the router's experts", (long long)K,
                   (long long)E);
        return poison();
    }
    for (int i = 2; i < 4; i++)
        if (in[i]->rank != 3 || !dim_eq(in[i]->shape[0], r->shape[0]) ||
            !dim_eq(in[i]->shape[i == 2 ? 2 : 1], x->shape[1])) {
            diag_error(pos[i]->loc, "'moe': %s must be [E = %lld, %s] with the D of x %s, got %s",
                       i == 2 ? "gate_up" : "down", (long long)E, i == 2 ? "2I, D" : "D, I", node_type_str(s, x),
                       node_type_str(s, in[i]));
            return poison();
        }
    SrcLoc at = e->loc;
    Node *lin = moe_step(s, OP_LINEAR, 2, x, r, NULL, 0, false, at);
    Node *h = lin ? moe_step(s, OP_MOE_UP, 3, x, lin, in[2], K, kv[1].b, at) : NULL;
    Node *y = h ? moe_step(s, OP_MOE_DOWN, 3, h, lin, in[3], K, kv[1].b, at) : NULL;
    return y ? tensor_value(y) : poison();
}

#define REPEAT_MAX_ARGS 8
#define REPEAT_MAX_LAYERS 4096    /* every layer is inlined: a bound, not a hang */

/* "model.layers.{i}." with {i} replaced by the layer's index. */
static const char *layer_prefix(const char *p, int64_t i) {
    Buf b = {0};
    for (const char *q = p; *q;) {
        if (strncmp(q, "{i}", 3) == 0) {
            buf_printf(&b, "%lld", (long long)i);
            q += 3;
        } else {
            buf_printf(&b, "%c", *q++);
        }
    }
    const char *r = fu_strdup(b.data ? b.data : "");
    free(b.data);
    return r;
}

/* repeat(BLOCK, x, extra..., n = N, prefix = "model.layers.{i}."): BLOCK's
 * statements inlined N times, layer i's output feeding layer i+1's first
 * input (the extra tensors feed every layer's further inputs), layer i's
 * weights and caches named prefix (with {i} = i) + their names.  The graph
 * holds every layer; kernels identical but for their buffers are emitted
 * once (emit_c.c). */
static Value call_repeat(Sema *s, Scope *sc, const Ast *e, int depth) {
    const Ast *bname = NULL, *blk = NULL;
    Value args[REPEAT_MAX_ARGS];
    int nargs = 0;
    int64_t n = -1;
    const char *prefix = "";
    bool ok = true;
    SrcLoc nloc = e->loc;
    for (int i = 0; i < e->list.n; i++) {
        const Ast *a = e->list.v[i];
        if (a->kind == AST_KWARG && strcmp(a->name, "n") == 0) {
            ok = eval_const_int(s, sc, a->a, "'n'", &n) && ok;
            nloc = a->a->loc;
        } else if (a->kind == AST_KWARG && strcmp(a->name, "prefix") == 0) {
            Value v = eval(s, sc, a->a, depth + 1);
            if (v.kind == V_STR)
                prefix = v.str;
            else if (v.kind != V_POISON)
                diag_error(a->a->loc, "keyword 'prefix' of 'repeat' expects a string, got %s", describe(&v));
            ok = ok && v.kind == V_STR;
        } else if (a->kind == AST_KWARG) {
            diag_error(a->loc, "unknown keyword '%s' for 'repeat' (it takes n and prefix)", a->name);
            ok = false;
        } else if (!bname) {
            bname = a;
            if (a->kind != AST_NAME) {
                diag_error(a->loc, "'repeat' needs the name of a block first, got %s", ast_what(a));
                ok = false;
            }
        } else if (nargs == REPEAT_MAX_ARGS) {
            diag_error(a->loc, "'repeat' takes at most %d tensors", REPEAT_MAX_ARGS);
            ok = false;
        } else {
            args[nargs] = eval(s, sc, a, depth + 1);
            if (args[nargs].kind != V_TENSOR && args[nargs].kind != V_POISON)
                diag_error(a->loc, "'repeat' passes tensors to the block, got %s", describe(&args[nargs]));
            ok = ok && args[nargs++].kind == V_TENSOR;
        }
    }
    if (!bname) {
        diag_error(e->loc, "'repeat' needs a block and its input: repeat(BLOCK, x, n = N, prefix = \"...{i}.\")");
        return poison();
    }
    if (bname->kind == AST_NAME) {
        for (int i = 0; s->root && i < s->root->blocks.n; i++)
            if (strcmp(s->root->blocks.v[i]->name, bname->name) == 0)
                blk = s->root->blocks.v[i];
        if (!blk) {
            diag_error(bname->loc, "'repeat': no block named '%s' in this file", bname->name);
            ok = false;
        }
    }
    if (ok && nargs == 0) {
        diag_error(e->loc, "'repeat' needs the tensor the first layer takes");
        ok = false;
    }
    if (ok && (n < 1 || n > REPEAT_MAX_LAYERS)) {
        if (n < 0)
            diag_error(nloc, "'repeat' needs the number of layers: n = N");
        else
            diag_error(nloc, "'repeat': n must be in [1, %d], got %lld", REPEAT_MAX_LAYERS, (long long)n);
        ok = false;
    }
    if (ok && n > 1 && !strstr(prefix, "{i}")) {
        diag_error(e->loc, "'repeat': prefix \"%s\" has no {i}: the %lld layers' weights and caches would "
                   "share names", prefix, (long long)n);
        ok = false;
    }
    if (ok && blk == s->block) {
        diag_error(bname->loc, "'repeat': block '%s' cannot repeat itself", blk->name);
        ok = false;
    }
    for (const Inst *o = s->inst; ok && o; o = o->outer)
        if (o->blk == blk) {
            diag_error(bname->loc, "'repeat': block '%s' repeats itself through its layers", blk->name);
            ok = false;
        }
    if (!ok) {
        s->bad_source = true;   /* its caches are missing: no 'cannot be bound' after this */
        return poison();
    }
    int errors = diag_error_count();
    for (int64_t i = 0; i < n; i++) {
        Inst in;
        memset(&in, 0, sizeof in);
        in.blk = blk;
        in.prefix = layer_prefix(prefix, i);
        in.args = args;
        in.nargs = nargs;
        in.outer = s->inst;
        s->inst = &in;
        Scope *local = scope_new(s->root->scope);
        for (int j = 0; j < blk->body.n; j++)
            run_stmt(s, local, blk->body.v[j], depth + 1);
        s->inst = in.outer;
        if (diag_error_count() == errors && in.next < nargs)
            diag_error(e->loc, "'repeat': block '%s' has %d %s, the call gives %d tensors", blk->name, in.next,
                       plural(in.next, "input", "inputs"), nargs);
        else if (diag_error_count() == errors && !in.has_result)
            diag_error(blk->loc, "block '%s' has no outputs", blk->name);
        else if (diag_error_count() == errors && i + 1 < n && in.result.kind == V_TENSOR &&
                 !same_type(in.result.node, args[0].node->dtype, args[0].node->rank, args[0].node->shape))
            diag_error(e->loc, "'repeat': block '%s' gives %s, which cannot be the next layer's %s", blk->name,
                       node_type_str(s, in.result.node), node_type_str(s, args[0].node));
        if (diag_error_count() > errors) {
            diag_note(e->loc, "in layer %lld of the 'repeat' here", (long long)i);
            s->bad_source = true;
            return poison();
        }
        args[0] = in.result;
    }
    return args[0];
}

/* call = name '(' [arg {',' arg}] ')': a fn in scope, else a builtin. */
static Value call(Sema *s, Scope *sc, const Ast *e, int depth) {
    Entry *en = scope_find(sc, e->name);
    int op = op_lookup(e->name);
    bool argmax = strcmp(e->name, "argmax") == 0, moe = strcmp(e->name, "moe") == 0;
    if (argmax || moe)
        op = argmax ? OP_TOPK : OP_MOE_DOWN;
    bool builtin = op >= 0 && op_info[op].cat != CAT_SOURCE && op_info[op].cat != CAT_SINK &&
                   op_info[op].cat != CAT_CONVERT;
    /* fns shadow builtins; other names do not, so a value may be called `max` */
    if (en && en->kind == E_FN)
        return call_fn(s, sc, e, en, depth);
    if (!en && strcmp(e->name, "repeat") == 0 && s->g)
        return call_repeat(s, sc, e, depth);
    if (en && en->kind == E_POISON && (en->fn || !builtin))
        return poison();
    if (en && !builtin) {
        diag_error(e->loc, "'%s' is not a function", e->name);
        diag_note(en->loc, "'%s' is defined here", e->name);
        return poison();
    }
    if (!builtin) {
        if (scope_lenient(sc))
            return poison();
        diag_error(e->loc, "unknown function '%s'", e->name);
        const Entry *near = closest(sc, e->name, true);
        if (near) {
            diag_note(near->loc, "did you mean '%s'?", near->name);
            return poison();
        }
        for (int i = 0; i < OP_COUNT; i++)
            if (op_info[i].cat != CAT_SOURCE && op_info[i].cat != CAT_SINK && op_info[i].cat != CAT_CONVERT &&
                edit_distance(e->name, op_info[i].name) <= typo_limit(e->name)) {
                diag_note(e->loc, "did you mean '%s'?", op_info[i].name);
                break;
            }
        return poison();
    }
    if (!s->g) {
        diag_error(e->loc, "'%s' builds a tensor; tensors exist only inside a block", e->name);
        return poison();
    }
    if (moe)
        return call_moe(s, sc, e, depth);
    return call_builtin(s, sc, e, (Op)op, argmax, depth);
}

/* ---- statements ---------------------------------------------------------- */

/* dim NAME [= dim]: symbolic dims only in blocks, where they become graph
 * symbols in declaration order; constant dims must be positive. */
static void run_dim(Sema *s, Scope *sc, const Ast *d) {
    Entry *en = entry_new(d->name, E_POISON, d->loc);
    if (!is_c_ident(d->name)) {
        diag_error(d->loc, "dimension name '%s' cannot contain '.'", d->name);
    } else if (!d->a && s->inst) {
        /* a repeated block's symbols are the caller's, by name */
        int k = ir_find_sym(s->g, d->name);
        if (k < 0)
            diag_error(d->loc, "'repeat': block '%s' declares the symbolic dimension '%s', which block "
                       "'%s' lacks; declare `dim %s;` there", s->inst->blk->name, d->name, s->block->name,
                       d->name);
        else
            en->kind = E_DIM, en->dim = dim_sym(k);
    } else if (!d->a) {
        if (!s->g || s->ninl) {
            diag_error(d->loc, "symbolic dimension '%s' must be declared in a block", d->name);
        } else if (scope_find_local(sc, d->name)) {
            /* define() below reports it */
        } else {
            int k = ir_add_sym(s->g, d->name);
            if (k < 0) {
                diag_error(d->loc, "too many symbolic dimensions (at most %d)", FU_MAX_SYMS);
            } else {
                s->sym_loc[k] = d->loc;
                en->kind = E_DIM;
                en->dim = dim_sym(k);
            }
        }
    } else {
        Dim v;
        if (eval_dim(s, sc, d->a, 0, &v)) {
            if (dim_is_const(v) && v.c < 1) {
                diag_error(d->a->loc, "dimension '%s' must be positive, got %lld", d->name, (long long)v.c);
            } else {
                en->kind = E_DIM;
                en->dim = v;
            }
        }
    }
    if (define(sc, en) && s->g && !s->ninl && !s->inst && en->kind == E_DIM && dim_is_const(en->dim))
        ir_add_const_dim(s->g, en->name, en->dim.c);
}


/* An input of a repeated block is the call's tensor of that place, of the
 * declared type. */
static void inst_input(Sema *s, Scope *sc, const Ast *st, Entry *en) {
    Inst *in = s->inst;
    int rank = 0;
    Dim shape[FU_MAX_RANK];
    int at = in->next++;
    if (!eval_type(s, sc, st->type, &rank, shape))
        return;
    if (at >= in->nargs) {
        diag_error(st->loc, "'repeat': input '%s' of block '%s' has no tensor: the call gives %d", st->name,
                   in->blk->name, in->nargs);
        return;
    }
    Node *x = in->args[at].node;
    if (!x)
        return;
    if (!same_type(x, st->type->dtype, rank, shape)) {
        diag_error(st->loc, "'repeat': input '%s' of block '%s' is %s, the tensor given is %s", st->name,
                   in->blk->name, type_str(s, st->type->dtype, rank, shape), node_type_str(s, x));
        return;
    }
    en->kind = E_TENSOR;
    en->node = x;
}

static void run_source(Sema *s, Scope *sc, const Ast *st) {
    Entry *en = entry_new(st->name, E_POISON, st->loc);
    int rank = 0;
    Dim shape[FU_MAX_RANK];
    if (s->inst && st->kind == AST_INPUT) {
        inst_input(s, sc, st, en);
        define(sc, en);
        return;
    }
    if (eval_type(s, sc, st->type, &rank, shape)) {
        Op op = st->kind == AST_INPUT ? OP_INPUT : st->kind == AST_WEIGHT ? OP_WEIGHT : OP_CACHE;
        Node *n = ir_node(s->g, op, 0, NULL, st->loc);
        n->name = s->inst ? fu_format("%s%s", s->inst->prefix, st->name) : st->name;
        n->dtype = st->type->dtype;
        /* --weight-type replaces the declared type */
        int rule = op == OP_WEIGHT ? dt_weight_rule(n->name, NULL) : op == OP_CACHE ? dt_kv_type() : -1;
        if (rule >= 0)
            n->dtype = (DType)rule;
        n->rank = rank;
        for (int d = 0; d < rank; d++)
            n->shape[d] = shape[d];
        Value v = finish(s, n);
        if (v.kind == V_TENSOR) {
            en->kind = E_TENSOR;
            en->node = n;
            if (op == OP_CACHE && s->g->cache_sym < 0)
                for (int k = 0; k < FU_MAX_SYMS; k++)
                    if (n->shape[0].k[k])
                        s->g->cache_sym = k;
        }
    }
    if (en->kind == E_POISON && st->kind != AST_WEIGHT)
        s->bad_source = true;
    define(sc, en);
}

static void run_output(Sema *s, Scope *sc, const Ast *st) {
    int rank = 0;
    Dim shape[FU_MAX_RANK];
    bool typed = st->type && eval_type(s, sc, st->type, &rank, shape);
    Value v = eval(s, sc, st->a, 0);
    Entry *en = entry_new(st->name, E_POISON, st->loc);
    if (s->inst) {
        Node *x = to_tensor(s, &v, st->a->loc);
        if (s->inst->has_result)
            diag_error(st->loc, "'repeat': block '%s' has a second output; a repeated block has one",
                       s->inst->blk->name);
        else if (typed && x && !same_type(x, st->type->dtype, rank, shape))
            diag_error(st->loc, "output '%s' is declared %s but its value is %s", st->name,
                       type_str(s, st->type->dtype, rank, shape), node_type_str(s, x));
        s->inst->has_result = true;
        s->inst->result = x ? tensor_value(x) : poison();
        return;
    }
    if (!define(&s->outputs, en))
        return;
    Node *x = to_tensor(s, &v, st->a->loc);
    if (!x)
        return;
    Node *n = ir_node(s->g, OP_OUTPUT, 1, &x, st->loc);
    n->name = st->name;
    if (finish(s, n).kind != V_TENSOR || !typed)
        return;
    bool same = n->dtype == st->type->dtype && n->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = dim_eq(n->shape[d], shape[d]);
    if (!same)
        diag_error(st->loc, "output '%s' is declared %s but its value is %s", st->name,
                   type_str(s, st->type->dtype, rank, shape), node_type_str(s, n));
}

static void run_stmt(Sema *s, Scope *sc, const Ast *st, int depth) {
    switch (st->kind) {
    case AST_DIMS:
        for (int i = 0; i < st->body.n; i++)
            run_dim(s, sc, st->body.v[i]);
        return;
    case AST_CONST: {
        Value v = eval(s, sc, st->a, depth);
        Entry *en = entry_new(st->name, E_POISON, st->loc);
        if (v.kind == V_NUM) {
            en->kind = E_NUM;
            en->num = v.num;
        } else if (v.kind != V_POISON) {
            diag_error(st->a->loc, "const '%s' must be a number, got %s", st->name, describe(&v));
        }
        define(sc, en);
        return;
    }
    case AST_ASSIGN: {
        Value v = eval(s, sc, st->a, depth);
        Entry *en = bind_value(st->name, st->loc, &v);
        if (en->kind == E_TENSOR && !en->node->label && en->node->op != OP_CONST &&
            op_info[en->node->op].cat != CAT_SOURCE)
            en->node->label = st->name;
        define(sc, en);
        return;
    }
    case AST_ASSIGN2: {
        /* values, indices = topk(x, k) (a fn may not return two values) */
        const Ast *c = st->a;
        Entry *fe = c->kind == AST_CALL ? scope_find(sc, c->name) : NULL;
        Value vi = poison(), vv = poison();
        if (c->kind != AST_CALL || strcmp(c->name, "topk") != 0 || (fe && fe->kind == E_FN)) {
            diag_error(c->loc, "only 'topk' gives two values; `a, b = ...` needs a call of topk");
        } else {
            const Ast *saved = s->pair_call;
            s->pair_call = c;
            s->pair_values = NULL;
            vi = eval(s, sc, c, depth);
            s->pair_call = saved;
            if (vi.kind == V_TENSOR && s->pair_values)
                vv = tensor_value(s->pair_values);
            else
                vi = poison();
        }
        Entry *ev = bind_value(st->name, st->loc, &vv), *ei = bind_value(st->b->name, st->b->loc, &vi);
        if (ev->kind == E_TENSOR && !ev->node->label)
            ev->node->label = st->name;
        if (ei->kind == E_TENSOR && !ei->node->label)
            ei->node->label = st->b->name;
        define(sc, ev);
        define(sc, ei);
        return;
    }
    case AST_INPUT:
    case AST_WEIGHT:
    case AST_CACHE:
        run_source(s, sc, st);
        return;
    case AST_OUTPUT:
        run_output(s, sc, st);
        return;
    default:
        FU_UNREACHABLE();
    }
}

/* ---- files and imports --------------------------------------------------- */

/* Every file the front end read, in reading order, for `fusec -MD`. */
static const char **dep_files;
static int ndep_files, capdep_files;

static void note_dependency(const char *path) {
    if (ndep_files == capdep_files) {
        int cap = capdep_files ? capdep_files * 2 : 8;
        const char **p = fu_alloc(sizeof(char *) * (size_t)cap);
        if (ndep_files)
            memcpy(p, dep_files, sizeof(char *) * (size_t)ndep_files);
        dep_files = p;
        capdep_files = cap;
    }
    dep_files[ndep_files++] = path;
}

/* The list lives in the arena: a driver that releases the arena between
 * inputs (the fuzz harness) forgets it first. */
void fe_forget_dependencies(void) {
    dep_files = NULL;
    ndep_files = capdep_files = 0;
}

int fe_dependency_count(void) { return ndep_files; }
const char *fe_dependency(int i) { return dep_files[i]; }

static SFile *load(Sema *s, const char *path, const char *text, size_t len, SrcLoc at);

/* "a/./lib/../b.fdl" -> "a/b.fdl", so messages name files the short way.
 * Purely lexical: identity comes from realpath, not from this. */
static const char *normalize(const char *path) {
    size_t n = strlen(path);
    const char **parts = fu_alloc(sizeof(char *) * (n + 1));
    int np = 0;
    bool abs = path[0] == '/';
    char *copy = fu_strdup(path);
    for (char *p = copy; *p;) {
        char *q = strchr(p, '/');
        if (q)
            *q = '\0';
        if (strcmp(p, "..") == 0 && np > 0 && strcmp(parts[np - 1], "..") != 0)
            np--;
        else if (*p && strcmp(p, ".") != 0 && !(abs && np == 0 && strcmp(p, "..") == 0))
            parts[np++] = p;
        if (!q)
            break;
        p = q + 1;
    }
    Buf b = {0};
    if (abs)
        buf_puts(&b, "/");
    for (int i = 0; i < np; i++)
        buf_printf(&b, "%s%s", i ? "/" : "", parts[i]);
    const char *r = fu_strdup(b.len ? b.data : ".");
    free(b.data);
    return r;
}

/* dir(importer) + "/" + rel, unless rel is absolute. */
static const char *resolve(const char *importer, const char *rel) {
    if (rel[0] == '/')
        return normalize(rel);
    const char *slash = strrchr(importer, '/');
    if (!slash)
        return normalize(rel);
    return normalize(fu_format("%.*s/%s", (int)(slash - importer), importer, rel));
}

/* Checks a fn once, where it is defined: its body must end in exactly one
 * return, since a fn is an expression. */
static bool check_fn(const Ast *fn) {
    bool ok = true;
    for (int i = 0; i < fn->list.n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(fn->list.v[i]->name, fn->list.v[j]->name) == 0) {
                diag_error(fn->list.v[i]->loc, "parameter '%s' is declared twice", fn->list.v[i]->name);
                ok = false;
            }
    int nret = 0;
    for (int i = 0; i < fn->body.n; i++) {
        const Ast *st = fn->body.v[i];
        if (st->kind != AST_RETURN)
            continue;
        nret++;
        if (i != fn->body.n - 1) {
            diag_error(fn->body.v[i + 1]->loc, "statement after 'return' in fn '%s'", fn->name);
            ok = false;
        }
    }
    if (nret == 0) {
        diag_error(fn->loc, "fn '%s' has no 'return'", fn->name);
        ok = false;
    }
    return ok;
}

static void run_import(Sema *s, SFile *f, const Ast *imp) {
    const char *path = resolve(f->path, imp->str);
    SFile *dep = load(s, path, NULL, 0, imp->loc);
    if (!dep) {
        f->scope->lenient = true;
        return;
    }
    if (dep->failed)
        f->scope->lenient = true;
    for (int i = 0; i < dep->own.n; i++) {
        Entry *e = dep->own.v[i];
        Entry *old = scope_find_local(f->scope, e->name);
        if (old == e)
            continue;
        if (old) {
            diag_error(imp->loc, "'%s' imported from \"%s\" is already defined", e->name, imp->str);
            diag_note(old->loc, "'%s' was first defined here", e->name);
            continue;
        }
        scope_add(f->scope, e);
    }
}

/* Evaluates a file's top level: imports, dims, consts, fns; records its
 * blocks for lowering later. */
static void run_file(Sema *s, SFile *f, const Ast *root) {
    for (int i = 0; i < root->body.n; i++) {
        const Ast *it = root->body.v[i];
        int before = f->scope->n;
        switch (it->kind) {
        case AST_IMPORT:
            run_import(s, f, it);
            continue;
        case AST_FN: {
            Entry *e = entry_new(it->name, check_fn(it) ? E_FN : E_POISON, it->loc);
            e->fn = it;
            e->env = f->scope;
            define(f->scope, e);
            break;
        }
        case AST_BLOCK:
            for (int j = 0; j < f->blocks.n; j++)
                if (strcmp(f->blocks.v[j]->name, it->name) == 0) {
                    diag_error(it->loc, "redefinition of block '%s'", it->name);
                    diag_note(f->blocks.v[j]->loc, "'%s' was first defined here", it->name);
                }
            f->blocks = ast_push(f->blocks, (Ast *)it);
            continue;
        default:
            run_stmt(s, f->scope, it, 0);
            break;
        }
        for (int j = before; j < f->scope->n; j++)
            scope_add(&f->own, f->scope->v[j]);
    }
}

/* A copy of text for quoting in diagnostics: NUL bytes would end it early. */
static const char *diag_text(const char *text, size_t len) {
    if (!memchr(text, '\0', len))
        return text;
    char *t = fu_strndup(text, len);
    for (size_t i = 0; i < len; i++)
        if (t[i] == '\0')
            t[i] = '\x7f';
    return t;
}

/* Loads a file once.  `at` is the import statement (file NULL for the
 * root); text is NULL to read path from disk.  NULL when it cannot be
 * read or closes an import cycle. */
static SFile *load(Sema *s, const char *path, const char *text, size_t len, SrcLoc at) {
    char *real = realpath(path, NULL);
    const char *key = path;
    if (real) {
        key = fu_strdup(real);
        free(real);
    }
    for (SFile *f = s->files; f; f = f->next) {
        if (strcmp(f->key, key) != 0)
            continue;
        if (!f->loading)
            return f;
        Buf chain = {0};
        int i = 0;
        while (i < s->nstack && s->stack[i] != f)
            i++;
        for (; i < s->nstack; i++)
            buf_printf(&chain, "%s -> ", s->stack[i]->path);
        buf_puts(&chain, f->path);
        diag_error(at, "import cycle: %s", chain.data);
        free(chain.data);
        return NULL;
    }
    if (s->nstack == MAX_IMPORT_DEPTH) {
        diag_error(at, "imports nested too deeply (more than %d files)", MAX_IMPORT_DEPTH);
        return NULL;
    }
    if (!text) {
        text = fu_read_file(path, &len);
        if (!text) {
            if (at.file)
                diag_error(at, "cannot import '%s': %s", path, fu_read_error(errno));
            else
                diag_plain_error("cannot read '%s': %s", path, fu_read_error(errno));
            return NULL;
        }
    }
    SFile *f = fu_alloc(sizeof *f);
    f->path = path;
    f->key = key;
    f->scope = scope_new(NULL);
    f->next = s->files;
    s->files = f;
    diag_add_source(path, diag_text(text, len));
    note_dependency(path);
    Ast *root = fe_parse(path, text, len);
    if (!root) {
        f->failed = true;
        return f;
    }
    f->loading = true;
    s->stack[s->nstack++] = f;
    run_file(s, f, root);
    s->nstack--;
    f->loading = false;
    return f;
}

/* ---- blocks -------------------------------------------------------------- */

static bool has_whole_dim(Node **nodes, int n, int sym) {
    for (int i = 0; i < n; i++)
        for (int d = 0; d < nodes[i]->rank; d++)
            if (dim_eq(nodes[i]->shape[d], dim_sym(sym)))
                return true;
    return false;
}

/* Names that become C identifiers (weight and cache struct members,
 * function parameters) must stay distinct once '.' becomes '_'. */
static void check_c_names(Node **nodes, int n, const char *what) {
    StrMap *seen = strmap_new();    /* C name -> the first node with it */
    for (int i = 0; i < n; i++) {
        char *c = fu_strdup(nodes[i]->name);
        for (char *q = c; *q; q++)
            *q = *q == '.' ? '_' : *q;
        const Node *first = strmap_get(seen, c);
        if (!first) {
            strmap_put(seen, c, nodes[i]);
            continue;
        }
        diag_error(nodes[i]->loc, "%s '%s' and '%s' both become the C name '%s'", what, first->name,
                   nodes[i]->name, c);
        diag_note(first->loc, "'%s' is declared here", first->name);
    }
}

/* ---- fns no block calls --------------------------------------------------- */

/* A fn is checked when a call inlines it.  One that no call reaches is
 * checked here, without values: every name it uses must resolve (its
 * parameters and locals, then its file) and it must not reach itself
 * through its calls.  Types are not known without a call, so only names
 * and recursion are checked. */
typedef struct FnWalk {
    const Ast *root;            /* the fn under check */
    const Ast *path[FE_MAX_INLINE];     /* calls from root to the fn being walked */
    const Ast *path_fn[FE_MAX_INLINE];  /* the fns those calls reach */
    int depth;
    bool report;                /* names are reported in root's own body only */
    bool recursive;             /* a recursion was reported */
    StrMap *done;               /* fns already walked for this root */
    StrMap *cyclic;             /* fns on a reported cycle: reported once */
} FnWalk;

static void walk_fn_body(FnWalk *w, const Entry *fe);

/* A fn's identity as a map key (two files may define fns of one name). */
static const char *fn_key(const Ast *fn) { return fu_format("%p", (const void *)fn); }

static void walk_expr(FnWalk *w, Scope *sc, const Ast *e) {
    if (!e || w->recursive)
        return;
    switch (e->kind) {
    case AST_NAME:
        if (w->report && !scope_find(sc, e->name))
            unknown_name(sc, e->loc, "name", e->name);
        return;
    case AST_NEG:
        walk_expr(w, sc, e->a);
        return;
    case AST_BINOP:
        walk_expr(w, sc, e->a);
        walk_expr(w, sc, e->b);
        return;
    case AST_KWARG:
        walk_expr(w, sc, e->a);
        return;
    case AST_LIST:
        for (int i = 0; i < e->list.n; i++)
            walk_expr(w, sc, e->list.v[i]);
        return;
    case AST_CALL: {
        for (int i = 0; i < e->list.n; i++)
            walk_expr(w, sc, e->list.v[i]);
        Entry *en = scope_find(sc, e->name);
        int op = strcmp(e->name, "argmax") == 0 ? OP_TOPK : strcmp(e->name, "moe") == 0 ? OP_MOE_DOWN
                                                                                        : op_lookup(e->name);
        bool builtin = op >= 0 && op_info[op].cat != CAT_SOURCE && op_info[op].cat != CAT_SINK;
        if (en && en->kind == E_FN) {
            if (en->fn == w->root) {
                diag_error(e->loc, "recursive call to fn '%s'; fns are inlined and cannot recurse",
                           w->root->name);
                for (int i = w->depth - 1; i >= 0; i--) {
                    diag_note(w->path[i]->loc, "in the call to '%s' here", w->path[i]->name);
                    strmap_put(w->cyclic, fn_key(w->path_fn[i]), NULL);
                }
                w->recursive = true;
            } else if (w->depth < FE_MAX_INLINE && !strmap_has(w->done, fn_key(en->fn))) {
                strmap_put(w->done, fn_key(en->fn), NULL);
                w->path_fn[w->depth] = en->fn;
                w->path[w->depth++] = e;
                bool report = w->report;
                w->report = false;
                walk_fn_body(w, en);
                w->report = report;
                w->depth--;
            }
        } else if (w->report && !builtin && !(en && en->kind == E_POISON && en->fn) && !scope_lenient(sc)) {
            if (en) {
                diag_error(e->loc, "'%s' is not a function", e->name);
                diag_note(en->loc, "'%s' is defined here", e->name);
            } else {
                diag_error(e->loc, "unknown function '%s'", e->name);
            }
        }
        return;
    }
    default:
        return;
    }
}

static void walk_fn_body(FnWalk *w, const Entry *fe) {
    const Ast *fn = fe->fn;
    Scope *local = scope_new(fe->env);
    for (int i = 0; i < fn->list.n; i++)
        scope_add(local, entry_new(fn->list.v[i]->name, E_POISON, fn->list.v[i]->loc));
    for (int i = 0; i < fn->body.n && !w->recursive; i++) {
        const Ast *st = fn->body.v[i];
        switch (st->kind) {
        case AST_DIMS:
            for (int j = 0; j < st->body.n; j++) {
                walk_expr(w, local, st->body.v[j]->a);
                scope_add(local, entry_new(st->body.v[j]->name, E_POISON, st->body.v[j]->loc));
            }
            break;
        case AST_CONST:
        case AST_ASSIGN:
            walk_expr(w, local, st->a);
            scope_add(local, entry_new(st->name, E_POISON, st->loc));
            break;
        case AST_ASSIGN2:
            walk_expr(w, local, st->a);
            scope_add(local, entry_new(st->name, E_POISON, st->loc));
            scope_add(local, entry_new(st->b->name, E_POISON, st->b->loc));
            break;
        default:
            walk_expr(w, local, st->a);
            break;
        }
    }
}

static void check_uncalled(Sema *s) {
    StrMap *cyclic = strmap_new();
    for (SFile *f = s->files; f; f = f->next)
        for (int i = 0; i < f->own.n; i++) {
            const Entry *fe = f->own.v[i];
            if (fe->kind != E_FN || fe->inlined || strmap_has(cyclic, fn_key(fe->fn)))
                continue;
            FnWalk w;
            memset(&w, 0, sizeof w);
            w.root = fe->fn;
            w.report = true;
            w.done = strmap_new();
            w.cyclic = cyclic;
            walk_fn_body(&w, fe);
        }
}

static Graph *lower_block(Sema *s, SFile *root, const Ast *blk) {
    if (!is_c_ident(blk->name)) {
        diag_error(blk->loc, "block name '%s' cannot contain '.'; it names C functions", blk->name);
        return NULL;
    }
    Graph *g = ir_graph_new(blk->name);
    s->g = g;
    s->root = root;
    s->block = blk;
    /* The file's constant dims (its own and imported ones) go into the
     * generated header too. */
    for (int i = 0; i < root->scope->n; i++) {
        Entry *e = root->scope->v[i];
        if (e->kind == E_DIM && dim_is_const(e->dim))
            ir_add_const_dim(g, e->name, e->dim.c);
    }
    Scope *sc = scope_new(root->scope);
    for (int i = 0; i < blk->body.n; i++)
        run_stmt(s, sc, blk->body.v[i], 0);
    /* positions count from the caches' cached length, wherever the caches
     * were declared */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OP_POSITIONS)
            g->nodes[i]->i[0] = g->cache_sym;

    for (int k = 0; k < g->nsyms && !s->bad_source; k++)
        if (!has_whole_dim(g->inputs, g->ninputs, k) && !has_whole_dim(g->caches, g->ncaches, k))
            diag_error(s->sym_loc[k],
                       "symbolic dimension '%s' cannot be bound: no input or cache has it as a dimension",
                       g->sym_names[k]);
    if (g->noutputs == 0 && s->outputs.n == 0)
        diag_error(blk->loc, "block '%s' has no outputs", blk->name);
    check_c_names(g->weights, g->nweights, "weights");
    check_c_names(g->caches, g->ncaches, "caches");
    check_c_names(g->inputs, g->ninputs, "inputs");
    check_c_names(g->outputs, g->noutputs, "outputs");
    return g;
}

static Graph *compile(const char *path, const char *text, size_t len, const char *block) {
    int errors = diag_error_count();
    Sema s;
    memset(&s, 0, sizeof s);
    SrcLoc none = {NULL, 0, 0, 0};
    SFile *root = load(&s, path, text, len, none);
    if (!root || root->failed)
        return NULL;
    const Ast *blk = NULL;
    if (block) {
        for (int i = 0; i < root->blocks.n; i++)
            if (strcmp(root->blocks.v[i]->name, block) == 0)
                blk = root->blocks.v[i];
        if (!blk) {
            diag_plain_error("no block named '%s' in '%s'", block, path);
            return NULL;
        }
    } else if (root->blocks.n == 0) {
        if (diag_error_count() == errors)
            diag_plain_error("'%s' has no block to compile", path);
        return NULL;
    } else {
        blk = root->blocks.v[root->blocks.n - 1];
    }
    Graph *g = lower_block(&s, root, blk);
    check_uncalled(&s);
    if (!g || diag_error_count() > errors)
        return NULL;
    return g;
}

Graph *fe_compile_file(const char *path, const char *block) { return compile(path, NULL, 0, block); }

Graph *fe_compile_string(const char *path, const char *text, const char *block) {
    return compile(path, text, strlen(text), block);
}
