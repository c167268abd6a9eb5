/*
 * emit_c.c - writes a scheduled graph as portable C: NAME.c and NAME.h.
 *
 * The generated .c has one `static void` function per kernel (pass_schedule
 * gives every compute node a kernel), written as plain loops over the shapes
 * of its nodes; symbolic dims stay C expressions of the block's symbols, so
 * one file serves every T and P.  NAME_forward calls the kernels in order on
 * buffers that are either the caller's (inputs, weights, caches, outputs) or
 * 64-byte aligned slots of one workspace; slots whose kernels do not overlap
 * share memory (plan_storage).  A single static helper, fu_layout, checks the
 * symbols and computes the slot offsets; workspace_size and forward both call
 * it so the two can never disagree.
 *
 * The float64 interpreter (interp.c) defines what every op means; the loops
 * here follow it in float, with float accumulators.  Only RoPE angles are
 * computed in double: pos * theta^(-2i/hd) loses digits in float at
 * positions in the thousands.
 *
 * Output depends only on the graph and the target: no timestamps, no paths,
 * no pointer values, no hash order.  Each name the user chose is checked
 * before anything is written, so a name that would not compile as C is a user
 * error here, not a C compiler error later.
 */
#include "fusec.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fusec_rt.h"

/* Largest power-of-two bound on every symbol such that each tensor has at
 * most 2^53 elements (exact in double, far from int64 overflow). */
#define SYM_MAX_LOG2_HI 31
#define SYM_MAX_LOG2_LO 10
#define NUMEL_LIMIT 9007199254740992.0 /* 2^53 */

/* Where a node's data lives in NAME_forward. */
typedef enum Home {
    HOME_NONE,      /* output nodes: they only copy */
    HOME_INPUT,     /* the caller's input pointer */
    HOME_WEIGHT,    /* w->field */
    HOME_FOLD,      /* w->fu_fold<id>: a weight-only node NAME_bind computed (fold.c) */
    HOME_CACHE,     /* cache->field */
    HOME_CONST,     /* a local float in forward */
    HOME_VIEW,      /* the same memory as another node (reshape, append) */
    HOME_SLOT,      /* a workspace slot */
    HOME_OUTPUT     /* written straight into the caller's output pointer */
} Home;

typedef struct Emit {
    const Graph *g;
    const Target *t;
    Home *home;             /* per node id */
    const char **ref;       /* per node id: C expression for its data in forward */
    int *slot;              /* per node id: slot index, or -1 (renumbered by plan_storage) */
    int nslots;
    int *first, *last;      /* per node id: the first and last kernel that names it */
    int *store;             /* per slot: the storage it shares (plan_storage) */
    int nstores;
    const char **c_in;      /* mangled input parameter names */
    const char **c_out;     /* "out_" + mangled output names */
    const char **c_w;       /* weight struct fields */
    const char **c_cache;   /* cache struct fields */
    bool *needed;           /* per node id: forward passes its data to some kernel */
    int64_t sym_max;        /* the bound checked on every symbol */
    const Target *vt;       /* the variant being emitted (t itself unless multi) */
    const char *suffix;     /* "" or "_avx2": names of the variant's functions */
    bool *run_used;         /* per node id: a kernel of the run function names it */
    unsigned run_syms;      /* symbols the kernels take */
    int nscratch;
    const char **scratch;   /* per-thread scratch sizes the kernels declared */
    unsigned types;         /* bits 1 << DType of every node: which typed loads to write */
    bool has_err;           /* some kernel takes fu_err (forward checks it after the run) */
    Buf c, h;
    FILE *cfile;            /* where the .c goes, written as it is made (flush_c) */
    FILE *spool;            /* the kernels' text until the layout before it is written; NULL: in e->c */
    bool spool_tried;       /* spool_open was called (once the text is large) */
    long spooled;           /* bytes written to the spool */
    int werr;               /* errno of the first failed write, or 0 */
    const char *wwhat;      /* what it was writing */
    struct KSeen *seen;     /* the kernels written, by their text (same_kernel); malloc'd */
    int nseen, capseen;
    const char *batch_no;   /* why the block has no NAME_forward_batch, or NULL (batch_plan) */
    int btok;               /* the symbol counting new tokens (T) */
    bool *btail;            /* per node id: a last-rows slice or computed from one */
    bool *bslice;           /* per node id: a last-rows slice of the tokens */
    bool rows_pass;         /* emitting a tail kernel again over nseq * len rows */
} Emit;

/* ---- names ---------------------------------------------------------------- */

/* C99 keywords: no user name may become one. */
static const char *const keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
    "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
    "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
    "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
    "_Complex", "_Imaginary",
};

/* Names the generated functions use besides their parameters: library
 * functions, macros and types, and forward's fixed parameters. */
static const char *const library_names[] = {
    "memcpy", "memset", "expf", "logf", "sqrtf", "tanhf", "erff", "pow", "cos", "sin",
    "INFINITY", "NAN", "SIZE_MAX", "INT64_C", "int64_t", "int32_t", "uint64_t", "size_t",
    "NULL", "uintptr_t", "UINT64_MAX", "w", "cache", "workspace", "workspace_bytes", "fa", "ctx",
    "tid", "nth", "caches", "nseq", "fb",
};

/* Every parameter and local of the kernels.  Symbols are kernel parameters
 * too, so a symbol must not be named like one of these. */
static const char *const kernel_names[] = {
    "x", "y", "a", "b", "w", "bias", "q", "k", "v", "pos", "cache",
    "i", "j", "kk", "m", "o", "r", "t", "h", "s", "d", "i0", "i1", "i2", "i3",
    "xr", "yr", "ar", "br", "wr", "am", "bm", "ym", "av", "xv", "acc", "ss", "inv",
    "mu", "var", "e", "sum", "mx", "qh", "kb", "vb", "kr", "vr", "sc", "corr", "p",
    "l", "send", "ang", "cs", "sn", "x1", "x2", "xh", "yh",
    /* the vectorized, threaded kernels */
    "i_end", "r0", "r1", "q", "q0", "q1", "o0", "o1", "c", "f", "f_end", "rem", "cnt", "t0", "t1",
    "p0", "p1", "pr", "vis", "dot", "vss", "vinv", "vx", "vd", "vmu", "vvar", "vmx", "vsum", "ve",
    "v1", "v2", "vc", "vs",
    /* the norms' corrected two-pass statistics */
    "lo", "sq", "vlo", "vdev",
};

static bool in_list(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

#define IN_LIST(s, list) in_list(s, list, sizeof list / sizeof list[0])

static bool is_keyword(const char *s) { return IN_LIST(s, keywords); }

/* Whether a parameter of forward (and, for symbols, of every kernel) may be
 * called s. */
static bool is_reserved(const char *s, bool in_kernels) {
    if (is_keyword(s) || IN_LIST(s, library_names) || (in_kernels && IN_LIST(s, kernel_names)))
        return true;
    /* The generated file's own statics and the runtime's names. */
    if (strncmp(s, "fu_", 3) == 0 || strncmp(s, "FU_", 3) == 0 || strncmp(s, "fr_", 3) == 0 ||
        strncmp(s, "FR_", 3) == 0)
        return true;
    /* Kernel functions are named k<id>_<op>. */
    if (s[0] == 'k' && isdigit((unsigned char)s[1])) {
        const char *p = s + 1;
        while (isdigit((unsigned char)*p))
            p++;
        if (*p == '_')
            return true;
    }
    return false;
}

/* Interface names may contain dots (checkpoint names); C sees them with
 * '.' -> '_'.  Anything else outside [A-Za-z0-9_] is refused. */
static bool valid_name(const char *s, bool dots) {
    const char *p;
    if (!s || !*s || isdigit((unsigned char)s[0]) || s[0] == '.')
        return false;
    for (p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || (dots && *p == '.')))
            return false;
    return true;
}

static const char *mangle(const char *s) {
    char *m = fu_strdup(s);
    char *p;
    for (p = m; *p; p++)
        if (*p == '.')
            *p = '_';
    return m;
}

/* C11's keywords and the names the headers the generated C includes define
 * as macros: a user name must not become one either. */
static const char *const more_reserved[] = {
    "_Alignas", "_Alignof", "_Atomic", "_Generic", "_Noreturn", "_Static_assert", "_Thread_local",
    "HUGE_VAL", "HUGE_VALF", "INT64_MAX", "INT64_MIN", "INT32_MAX", "INT32_MIN", "UINT64_MAX",
    "UINT32_MAX", "errno", "assert", "EOF", "stdin", "stdout", "stderr", "bool", "true", "false",
    "offsetof", "isnan", "isinf", "isfinite", "signbit", "fpclassify", "M_PI", "M_SQRT1_2", "M_SQRT2",
    /* fu_args's own fields and fu_layout's parameters and locals */
    "ws", "off", "at", "total", "syms", "inputs", "outputs", "weights", "caches", "cache_capacity",
    "main",
};

/* The C spelling of a user's name: '.' becomes '_', and a name the
 * generated C or its headers could already mean (a keyword, a macro, a
 * library or runtime name, a local of the generated functions, a name
 * the C standard reserves) gets the prefix "u_", as does every name that
 * already starts with "u_" or "out_", so distinct user names stay distinct
 * and any name the DSL accepts is usable (issue 10).  in_kernels: the name
 * is also a parameter of every kernel (a symbol). */
static const char *c_ident(const char *user, bool in_kernels) {
    const char *m = mangle(user);
    bool clash = is_reserved(m, in_kernels) || IN_LIST(m, more_reserved) ||
                 strncmp(m, "u_", 2) == 0 || strncmp(m, "out_", 4) == 0 ||
                 (m[0] == '_' && (m[1] == '_' || isupper((unsigned char)m[1])));
    return clash ? fu_format("u_%s", m) : m;
}

/* Checks that the C names in one scope are distinct and usable.
 * `names` are the C identifiers, `orig` what the user wrote, `what` their kind. */
static int check_scope(const char *const *names, const char *const *orig, const char *const *what,
                       int n, bool check_reserved) {
    int i, j, bad = 0;
    StrMap *first = strmap_new();   /* name -> 1 + the index that has it first */
    for (i = 0; i < n; i++) {
        intptr_t at = (intptr_t)strmap_get(first, names[i]);
        if (!at)
            strmap_put(first, names[i], (void *)(intptr_t)(i + 1));
        if (check_reserved && is_reserved(names[i], strcmp(what[i], "symbol") == 0)) {
            if (strcmp(orig[i], names[i]) == 0)
                diag_plain_error("%s name '%s' is reserved in the generated C; rename it", what[i],
                                 orig[i]);
            else
                diag_plain_error("%s name '%s' becomes '%s', which is reserved in the generated C; "
                                 "rename it", what[i], orig[i], names[i]);
            bad = -1;
            continue;
        }
        if (at) {
            j = (int)at - 1;
            diag_plain_error("%s '%s' and %s '%s' both become the C name '%s'", what[j],
                             orig[j], what[i], orig[i], names[i]);
            bad = -1;
        }
    }
    return bad;
}

/* Validates every name the user chose and computes their C spellings. */
static int check_names(Emit *e) {
    const Graph *g = e->g;
    int nparam = g->nsyms + g->ninputs + g->noutputs, i, np = 0, rc = 0;
    const char **pn = fu_alloc(sizeof *pn * (size_t)(nparam + 1));
    const char **po = fu_alloc(sizeof *po * (size_t)(nparam + 1));
    const char **pw = fu_alloc(sizeof *pw * (size_t)(nparam + 1));
    int nfield = (g->nweights > g->ncaches ? g->nweights : g->ncaches) + 1;
    const char **fo = fu_alloc(sizeof *fo * (size_t)nfield);
    const char **fw = fu_alloc(sizeof *fw * (size_t)nfield);

    if (!valid_name(g->name, false)) {
        diag_plain_error("block name '%s' is not a C identifier", g->name ? g->name : "");
        return -1;
    }
    for (i = 0; i < g->nconsts; i++)
        if (!valid_name(g->const_names[i], true)) {
            diag_plain_error("dimension name '%s' is not usable in C", g->const_names[i]);
            rc = -1;
        }
    e->c_in = fu_alloc(sizeof *e->c_in * (size_t)(g->ninputs + 1));
    e->c_out = fu_alloc(sizeof *e->c_out * (size_t)(g->noutputs + 1));
    e->c_w = fu_alloc(sizeof *e->c_w * (size_t)(g->nweights + 1));
    e->c_cache = fu_alloc(sizeof *e->c_cache * (size_t)(g->ncaches + 1));

    /* forward's parameters share one scope with the kernels' names. */
    for (i = 0; i < g->nsyms; i++) {
        if (!valid_name(g->sym_names[i], false)) {
            diag_plain_error("symbol name '%s' is not a C identifier", g->sym_names[i]);
            return -1;
        }
        pn[np] = g->sym_names[i], po[np] = g->sym_names[i], pw[np++] = "symbol";
    }
    for (i = 0; i < g->ninputs; i++) {
        if (!valid_name(g->inputs[i]->name, true)) {
            diag_plain_error("input name '%s' is not usable in C", g->inputs[i]->name);
            return -1;
        }
        e->c_in[i] = c_ident(g->inputs[i]->name, false);
        pn[np] = e->c_in[i], po[np] = g->inputs[i]->name, pw[np++] = "input";
    }
    for (i = 0; i < g->noutputs; i++) {
        if (!valid_name(g->outputs[i]->name, true)) {
            diag_plain_error("output name '%s' is not usable in C", g->outputs[i]->name);
            return -1;
        }
        e->c_out[i] = fu_format("out_%s", mangle(g->outputs[i]->name));
        pn[np] = e->c_out[i], po[np] = g->outputs[i]->name, pw[np++] = "output";
    }
    if (check_scope(pn, po, pw, np, false) != 0)
        rc = -1;

    /* Struct fields: their own scope, only keywords and duplicates matter. */
    for (i = 0; i < g->nweights; i++) {
        const char *nm = g->weights[i]->name;
        if (!valid_name(nm, true)) {
            diag_plain_error("weight name '%s' is not usable in C", nm ? nm : "");
            return -1;
        }
        e->c_w[i] = c_ident(nm, false);
        fo[i] = nm, fw[i] = "weight";
    }
    if (check_scope(e->c_w, fo, fw, g->nweights, false) != 0)
        rc = -1;
    for (i = 0; i < g->ncaches; i++) {
        const char *nm = g->caches[i]->name;
        if (!valid_name(nm, true)) {
            diag_plain_error("cache name '%s' is not usable in C", nm ? nm : "");
            return -1;
        }
        e->c_cache[i] = strcmp(mangle(nm), "capacity") == 0 ? "u_capacity" : c_ident(nm, false);
        fo[i] = nm, fw[i] = "cache";
    }
    if (check_scope(e->c_cache, fo, fw, g->ncaches, false) != 0)
        rc = -1;
    for (i = 0; i < g->nconsts && rc == 0; i++) {
        int j;
        for (j = 0; j < i; j++)
            if (strcmp(mangle(g->const_names[i]), mangle(g->const_names[j])) == 0) {
                diag_plain_error("dimensions '%s' and '%s' both become the C name '%s_%s'",
                                 g->const_names[j], g->const_names[i], g->name,
                                 mangle(g->const_names[i]));
                rc = -1;
            }
    }
    return rc;
}

/* ---- C expressions for dims ----------------------------------------------- */

/* A Buf's text moved into the arena (Bufs live on the heap), or `empty`
 * when nothing was written. */
static const char *take(Buf *b, const char *empty) {
    const char *s = b->len ? fu_strdup(b->data) : empty;
    free(b->data);
    memset(b, 0, sizeof *b);
    return s;
}

/* A dim as a C expression of the symbols: "256", "T", "(P + T)", "(2 * T - 1)".
 * Sets the bit of every symbol it mentions in *used. */
static const char *dim_c(const Graph *g, Dim d, unsigned *used) {
    Buf b = {0};
    int s, terms = 0;
    bool paren;
    for (s = 0; s < g->nsyms; s++) {
        int32_t k = d.k[s];
        if (k == 0)
            continue;
        if (used)
            *used |= 1u << s;
        if (terms == 0) {
            if (k == 1)
                buf_printf(&b, "%s", g->sym_names[s]);
            else if (k == -1)
                buf_printf(&b, "-%s", g->sym_names[s]);
            else
                buf_printf(&b, "%d * %s", (int)k, g->sym_names[s]);
        } else {
            int32_t ak = k < 0 ? -k : k;
            buf_puts(&b, k < 0 ? " - " : " + ");
            if (ak == 1)
                buf_printf(&b, "%s", g->sym_names[s]);
            else
                buf_printf(&b, "%d * %s", (int)ak, g->sym_names[s]);
        }
        terms++;
    }
    if (terms == 0)
        return d.c < 0 ? fu_format("(%lld)", (long long)d.c) : fu_format("%lld", (long long)d.c);
    paren = terms > 1 || d.c != 0 || (b.data[0] == '-') || strchr(b.data, '*') != NULL;
    if (d.c > 0)
        buf_printf(&b, " + %lld", (long long)d.c);
    else if (d.c < 0)
        buf_printf(&b, " - %lld", -(long long)d.c);
    const char *ex = take(&b, "");
    return paren ? fu_format("(%s)", ex) : ex;
}

/* The product of dims [from, to) of a shape, constants folded:
 * "1", "256", "T", "(T * 256)", "((P + T) * 64)". */
static const char *numel_c(const Graph *g, const Dim *shape, int from, int to, unsigned *used) {
    Buf b = {0};
    int64_t c = 1;
    int d, nf = 0;
    for (d = from; d < to; d++) {
        if (dim_is_const(shape[d])) {
            c *= shape[d].c;
            continue;
        }
        if (nf++)
            buf_puts(&b, " * ");
        buf_puts(&b, dim_c(g, shape[d], used));
    }
    if (c == 0 || nf == 0) {
        take(&b, "");
        return fu_format("%lld", (long long)c);
    }
    if (c != 1) {
        buf_printf(&b, " * %lld", (long long)c);
        nf++;
    }
    const char *ex = take(&b, "");
    return nf > 1 ? fu_format("(%s)", ex) : ex;
}

/* The shortest float literal that reads back as exactly (float)v:
 * 1e-05f rather than 9.99999975e-06f. */
const char *c_float_lit(double v) {
    char tmp[64];
    float f = (float)v;
    if (isnan(f))
        return "NAN";
    if (isinf(f))
        return f < 0 ? "(-INFINITY)" : "INFINITY";
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)f);
        if (strtof(tmp, NULL) == f)
            break;
    }
    if (!strpbrk(tmp, ".e"))
        return fu_format("%s.0f", tmp);
    return fu_format("%sf", tmp);
}

/* The shortest double literal that reads back as exactly v. */
const char *c_double_lit(double v) {
    char tmp[64];
    if (isnan(v))
        return "NAN";
    if (isinf(v))
        return v < 0 ? "(-INFINITY)" : "INFINITY";
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    if (!strpbrk(tmp, ".e"))
        return fu_format("%s.0", tmp);
    return fu_format("%s", tmp);
}

/* "f32[T, 256]" for comments. */
static const char *type_text(const Graph *g, const Node *n) {
    Buf b = {0};
    int d;
    buf_printf(&b, "%s[", dtype_name(n->dtype));
    for (d = 0; d < n->rank; d++) {
        if (d)
            buf_puts(&b, ", ");
        dim_print(&b, n->shape[d], g->sym_names);
    }
    buf_puts(&b, "]");
    return take(&b, "");
}

/* The C type of n's stored units (typed.c): float, int32_t, uint16_t, uint8_t. */
static const char *ctype(const Node *n) { return ty_ctype(n->dtype); }

static const char *fr_dtype_c(const Node *n) {
    return fu_format("FR_%s", fr_dtype_name((fr_dtype)dt_info(n->dtype)->fr));
}

/* ---- kernels ------------------------------------------------------------- */

/* One kernel's parameter: the buffer of `node`, read or written. */
typedef struct KParam {
    const Node *node;
    const char *name;
    bool written;
} KParam;

/* An attention kernel's work items in a batch (kern_batch_items): kvh x
 * ceil(T / bq) per sequence, each seeing up to S keys. */
typedef struct BAtt {
    bool on;
    bool causal;
    int64_t kvh, bq, window;
    Dim T, S;
} BAtt;

struct Kern {
    Emit *e;
    bool multi;             /* more than one node: parameter names get the node id */
    Buf body;
    int indent;
    KParam *p;              /* grows: a kernel may read any number of buffers */
    int np, cap;
    unsigned used;          /* symbols the body mentions */
    int nlocals;            /* kern_local's counter */
    const char *scratch;    /* kern_scratch's bytes per thread, or NULL */
    bool err;               /* takes fu_err: records an id out of range (embedding, gather) */
    BAtt att;               /* takes fu_bw: batch attention items (kern_batch_items) */
};

static void kline(Kern *k, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Lines go straight into the body: no copy in the arena (a block of
 * 100,000 operators writes hundreds of MB of C). */
static void kline_v(Kern *k, const char *fmt, va_list ap) {
    for (int i = 0; i < k->indent; i++)
        buf_puts(&k->body, "    ");
    buf_vprintf(&k->body, fmt, ap);
    buf_puts(&k->body, "\n");
}

static void kline(Kern *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kline_v(k, fmt, ap);
    va_end(ap);
}

/* The kernel's name for node's buffer, adding a parameter on first use. */
static const char *kparam(Kern *k, const Node *node, const char *role, bool written) {
    int i;
    for (i = 0; i < k->np; i++)
        if (k->p[i].node == node) {
            k->p[i].written |= written;
            return k->p[i].name;
        }
    if (k->np == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 16;
        KParam *p = fu_alloc(sizeof *p * (size_t)k->cap);
        if (k->np)
            memcpy(p, k->p, sizeof *p * (size_t)k->np);
        k->p = p;
    }
    k->p[k->np].node = node;
    k->p[k->np].name = k->multi ? fu_format("%s_%d", role, node->id) : role;
    k->p[k->np].written = written;
    return k->p[k->np++].name;
}

/* ---- the Kern API for kernel emitters in other files (fusec.h) ------------ */

const char *kern_buf(Kern *k, const Node *n, bool written) {
    return kparam(k, n, fu_format("b%d", n->id), written);
}

const char *kern_dim(Kern *k, Dim d) { return dim_c(k->e->g, d, &k->used); }

void kern_line(Kern *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kline_v(k, fmt, ap);
    va_end(ap);
}

void kern_indent(Kern *k, int delta) {
    k->indent += delta;
    FU_ASSERT(k->indent >= 0);
}

const Target *kern_target(const Kern *k) { return k->e->vt; }

int kern_tw(const Kern *k) {
    const Target *t = kern_target(k);
    return t->isa == ISA_NEON ? 4 : t->isa == ISA_GENERIC ? 1 : 8;
}

const Target *kern_tw_target(const Kern *k) {
    const Target *t = kern_target(k);
    return t->isa == ISA_AVX512 ? target_find("x86-64-avx2") : t;
}

/* The transposes of kern_tw (fusec.h); emit_gemm's A packer relies on the
 * order of the stores. */
void kern_transpose(Kern *k, const char *const *rows, const char *const *dst) {
    const Target *pt = kern_tw_target(k);
    const char *vt = v_type(pt);
    FU_ASSERT(kern_tw(k) > 1);
    kern_line(k, "{");
    kern_indent(k, 1);
    if (kern_target(k)->isa == ISA_NEON) {
        for (int r = 0; r < 4; r++)
            kern_line(k, "const float32x4_t fu_tr%d = %s;", r, rows[r]);
        kern_line(k, "const float32x4x2_t fu_tp01 = vtrnq_f32(fu_tr0, fu_tr1), fu_tp23 = vtrnq_f32(fu_tr2, fu_tr3);");
        for (int c = 0; c < 4; c++)
            kern_line(k, "vst1q_f32(%s, vcombine_f32(vget_%s_f32(fu_tp01.val[%d]), vget_%s_f32(fu_tp23.val[%d])));", dst[c],
              c < 2 ? "low" : "high", c & 1, c < 2 ? "low" : "high", c & 1);
    } else {
        for (int r = 0; r < 8; r++)
            kern_line(k, "const %s fu_tr%d = %s;", vt, r, rows[r]);
        for (int q = 0; q < 4; q++)
            kern_line(k, "const %s fu_tu%d = _mm256_unpacklo_ps(fu_tr%d, fu_tr%d), fu_tu%d = _mm256_unpackhi_ps(fu_tr%d, fu_tr%d);", vt,
              2 * q, 2 * q, 2 * q + 1, 2 * q + 1, 2 * q, 2 * q + 1);
        for (int q = 0; q < 2; q++)
            kern_line(k, "const %s fu_tv%d = _mm256_shuffle_ps(fu_tu%d, fu_tu%d, 0x44), fu_tv%d = _mm256_shuffle_ps(fu_tu%d, fu_tu%d, 0xee), "
              "fu_tv%d = _mm256_shuffle_ps(fu_tu%d, fu_tu%d, 0x44), fu_tv%d = _mm256_shuffle_ps(fu_tu%d, fu_tu%d, 0xee);",
              vt, 4 * q, 4 * q, 4 * q + 2, 4 * q + 1, 4 * q, 4 * q + 2, 4 * q + 2, 4 * q + 1, 4 * q + 3, 4 * q + 3,
              4 * q + 1, 4 * q + 3);
        for (int c = 0; c < 8; c++)
            kern_line(k, "_mm256_storeu_ps(%s, _mm256_permute2f128_ps(fu_tv%d, fu_tv%d, 0x%s));", dst[c], c & 3, 4 + (c & 3),
              c < 4 ? "20" : "31");
    }
    kern_indent(k, -1);
    kern_line(k, "}");
}

void kern_scratch(Kern *k, const char *bytes_expr) {
    FU_ASSERT(bytes_expr && *bytes_expr);
    k->scratch = k->scratch ? fu_format("fu_max_size(%s, (size_t)(%s))", k->scratch, bytes_expr)
                            : fu_format("(size_t)(%s)", bytes_expr);
}

/* Whether a node of kernel `kernel` reads n outside it; in a GEMM kernel a
 * reshape is looked through (a per-head norm of the tile reads a view of it
 * and is fed from registers, emit_gemm.c), elsewhere a view is a reader. */
static bool read_outside(const Graph *g, const Node *n, int kernel) {
    Node **users;
    int nu = ir_users(g, n, &users);
    for (int i = 0; i < nu; i++) {
        const Node *u = users[i];
        if (u->op == OP_RESHAPE && g->kernels[kernel]->kind == KK_GEMM) {
            if (read_outside(g, u, kernel))
                return true;
        } else if (u->kernel != kernel || u->op == OP_OUTPUT) {
            return true;
        }
    }
    return false;
}

bool kern_batch_items(Kern *k, int64_t kvh, int64_t bq, Dim T, Dim S, bool causal, int64_t window) {
    if (k->e->batch_no || k->e->rows_pass)
        return false;
    k->att = (BAtt){true, causal, kvh, bq, window, T, S};
    return true;
}

bool kern_is_result(const Kern *k, const Node *n) {
    return read_outside(k->e->g, n, n->kernel);
}

const char *kern_local(Kern *k, const char *prefix) { return fu_format("%s%d", prefix, k->nlocals++); }

static const char *kin(Kern *k, const Node *n, int i, const char *role) {
    return kparam(k, n->in[i], role, false);
}

static const char *kout(Kern *k, const Node *n, const char *role) {
    return kparam(k, n, role, true);
}

static const char *kdim(Kern *k, const Node *n, int d) {
    return dim_c(k->e->g, n->shape[d], &k->used);
}

static const char *knumel(Kern *k, const Node *n, int from, int to) {
    return numel_c(k->e->g, n->shape, from, to, &k->used);
}

/* A dim or element count as a float: "256.0f" or "(float)T". */
static const char *as_float(const char *count) {
    char *end;
    long long v = strtoll(count, &end, 10);
    if (*end == '\0')
        return fu_format("%lld.0f", v);
    return fu_format("(float)%s", count);
}

/* An expression without its outer parentheses, for use as a whole argument. */
static const char *bare(const char *ex) {
    size_t n = strlen(ex);
    int depth = 0;
    if (n < 2 || ex[0] != '(' || ex[n - 1] != ')')
        return ex;
    for (size_t i = 0; i < n - 1; i++) {
        depth += ex[i] == '(' ? 1 : ex[i] == ')' ? -1 : 0;
        if (depth == 0)
            return ex; /* "(a) * (b)": the first pair closes early */
    }
    return fu_strndup(ex + 1, n - 2);
}

/* "a * b" without the noise of multiplying by 1. */
static const char *mul(const char *a, const char *b) {
    if (strcmp(b, "1") == 0)
        return a;
    if (strcmp(a, "1") == 0)
        return b;
    return fu_format("%s * %s", a, b);
}

static bool same_shape(const Node *a, const Node *b) {
    int d;
    if (a->rank != b->rank)
        return false;
    for (d = 0; d < a->rank; d++)
        if (!dim_eq(a->shape[d], b->shape[d]))
            return false;
    return true;
}

/* ---- vector loops ------------------------------------------------------------ */

/*
 * Every KK_SINGLE kernel below is written once against the vector
 * vocabulary (vec.c): a main loop of W = vec_floats lanes, then one masked
 * tail step (generic has W = 1 and no tail), with explicit SIMD reductions,
 * so the hot loops never depend on the C compiler's auto-vectorizer.  Work
 * is split over the pool's threads (tid of nth) by rows, columns or heads.
 */

static const Target *kT(const Kern *k) { return k->e->vt; }
static int kW(const Kern *k) { return k->e->vt->vec_floats; }

/* One step of a vector loop over `idx`; `tail` when only fu_m lanes remain. */
typedef void (*VStep)(Kern *k, void *ctx, bool tail);

/* for (; idx + W <= to; idx += W) step;  if (idx < to) { fu_m = to - idx; tail step } */
static void vloop(Kern *k, const char *idx, const char *to, VStep step, void *ctx) {
    int W = kW(k);
    if (W == 1) {
        kline(k, "for (; %s < %s; ++%s) {", idx, to, idx);
        k->indent++;
        step(k, ctx, false);
        k->indent--;
        kline(k, "}");
        return;
    }
    kline(k, "for (; %s + %d <= %s; %s += %d) {", idx, W, to, idx, W);
    k->indent++;
    step(k, ctx, false);
    k->indent--;
    kline(k, "}");
    kline(k, "if (%s < %s) {", idx, to);
    k->indent++;
    kline(k, "int fu_m = (int)(%s - %s);", to, idx);
    step(k, ctx, true);
    k->indent--;
    kline(k, "}");
}

/* Loads W floats at ptr, or the tail's fu_m (the rest read as fill). */
static const char *vld(Kern *k, const char *ptr, bool tail, const char *fill) {
    return tail ? v_load_n(kT(k), ptr, "fu_m", fill) : v_load(kT(k), ptr);
}

static const char *vst(Kern *k, const char *ptr, const char *val, bool tail) {
    return tail ? v_store_n(kT(k), ptr, val, "fu_m") : v_store(kT(k), ptr, val);
}

/* An operand of an elementwise loop: a pointer indexed by the loop counter,
 * or a scalar (constant, rank 0, or broadcast along the loop) to splat. */
typedef struct VOperand {
    const char *ptr;    /* base pointer expression, or NULL */
    const char *scalar; /* float expression, or NULL */
} VOperand;

static const char *voperand(Kern *k, const VOperand *o, const char *idx, bool tail) {
    if (o->scalar)
        return v_set1(kT(k), o->scalar);
    return vld(k, fu_format("%s + %s", o->ptr, idx), tail, NULL);
}

/* ---- elementwise ----------------------------------------------------------- */

typedef struct EwCtx {
    Op op;
    VOperand a, b;
    const char *y, *idx;
} EwCtx;

static void ew_step(Kern *k, void *ctx, bool tail) {
    EwCtx *c = ctx;
    const char *a = voperand(k, &c->a, c->idx, tail);
    const char *v = op_info[c->op].cat == CAT_UNARY ? v_unary(kT(k), c->op, a)
                                                     : v_bin(kT(k), c->op, a, voperand(k, &c->b, c->idx, tail));
    kline(k, "%s;", vst(k, fu_format("%s + %s", c->y, c->idx), v, tail));
}

/* Operand i of n read at flat index (same shape as n), or as a scalar. */
static VOperand ew_operand(Kern *k, const Node *n, int i, const char *role) {
    const Node *x = n->in[i];
    VOperand o = {NULL, NULL};
    if (x->op == OP_CONST)
        o.scalar = c_float_lit(x->f[0]);
    else if (x->rank == 0)
        o.scalar = fu_format("%s[0]", kin(k, n, i, role));
    else
        o.ptr = kin(k, n, i, role);
    return o;
}

/* Splits [0, n) over the threads in blocks of 16 floats (64 bytes: no two
 * threads write one cache line), leaving [i, i_end) to this thread. */
static void flat_split(Kern *k, const char *n) {
    kline(k, "int64_t i, i_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &i, &i_end);", n);
}

/* y = f(x), elementwise. */
static void k_unary(Kern *k, const Node *n) {
    EwCtx c = {n->op, ew_operand(k, n, 0, "x"), {NULL, NULL}, NULL, "i"};
    c.y = kout(k, n, "y");
    flat_split(k, bare(knumel(k, n, 0, n->rank)));
    vloop(k, "i", "i_end", ew_step, &c);
}

/* The offset of operand x's row for output row indices i0..i(r-2), x
 * broadcast numpy-style against out (broadcast dims have stride 0); marks
 * in *used the indices it needs. */
static const char *row_offset(Kern *k, const Node *x, const Node *out, unsigned *used) {
    Buf b = {0};
    int lead = out->rank - x->rank;
    for (int d = 0; d < out->rank - 1; d++) {
        int xd = d - lead;
        if (xd < 0 || (dim_is_const(x->shape[xd]) && x->shape[xd].c == 1))
            continue;
        *used |= 1u << d;
        if (b.len)
            buf_puts(&b, " + ");
        buf_puts(&b, mul(fu_format("i%d", d), knumel(k, x, xd + 1, x->rank)));
    }
    return take(&b, "0");
}

/* Whether x is broadcast along out's last axis (one value per row). */
static bool bcast_last(const Node *x) {
    return x->rank == 0 || (dim_is_const(x->shape[x->rank - 1]) && x->shape[x->rank - 1].c == 1);
}

/* y = a op b with numpy broadcasting. */
static void k_binary(Kern *k, const Node *n) {
    const Node *an = n->in[0], *bn = n->in[1];
    EwCtx c = {n->op, {NULL, NULL}, {NULL, NULL}, NULL, "i"};
    if ((an->rank == 0 || same_shape(an, n)) && (bn->rank == 0 || same_shape(bn, n))) {
        /* One declarator each: the order of the calls fixes the parameter order. */
        c.a = ew_operand(k, n, 0, "a");
        c.b = ew_operand(k, n, 1, "b");
        c.y = kout(k, n, "y");
        flat_split(k, bare(knumel(k, n, 0, n->rank)));
        vloop(k, "i", "i_end", ew_step, &c);
        return;
    }
    /* Rows of the last axis: each operand is a row pointer (or a scalar when
     * broadcast along it); rows are split over the threads. */
    int r = n->rank;
    unsigned used = 0;
    const char *ap = an->op == OP_CONST ? NULL : kin(k, n, 0, "a");
    const char *bp = bn->op == OP_CONST ? NULL : kin(k, n, 1, "b");
    const char *y = kout(k, n, "y");
    const char *aoff = ap ? row_offset(k, an, n, &used) : NULL;
    const char *boff = bp ? row_offset(k, bn, n, &used) : NULL;
    const char *L = kdim(k, n, r - 1);
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(knumel(k, n, 0, r - 1)));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    if (r > 1) {
        kline(k, "int64_t q = r;");
        for (int d = r - 2; d >= 0; d--) {
            if (used & (1u << d))
                kline(k, "int64_t i%d = %s;", d, d == 0 ? "q" : fu_format("q %% %s", kdim(k, n, d)));
            if (d > 0 && (used & ((1u << d) - 1)))
                kline(k, "q /= %s;", kdim(k, n, d));
        }
        kline(k, "(void)q;");
    }
    const Node *ops[2] = {an, bn};
    const char *ptrs[2] = {ap, bp}, *offs[2] = {aoff, boff}, *names[2] = {"ar", "br"};
    VOperand *vo[2] = {&c.a, &c.b};
    for (int q = 0; q < 2; q++) {
        if (ops[q]->op == OP_CONST) {
            vo[q]->scalar = c_float_lit(ops[q]->f[0]);
            continue;
        }
        kline(k, "const float *%s = %s + %s;", names[q], ptrs[q], offs[q]);
        if (bcast_last(ops[q]))
            vo[q]->scalar = fu_format("%s[0]", names[q]);
        else
            vo[q]->ptr = names[q];
    }
    kline(k, "float *yr = %s + %s;", y, mul("r", L));
    kline(k, "int64_t j = 0;");
    c.y = "yr";
    c.idx = "j";
    vloop(k, "j", L, ew_step, &c);
    k->indent--;
    kline(k, "}");
}

/* ---- reductions ------------------------------------------------------------ */

typedef struct RedCtx {
    Op op;              /* OP_ADD or OP_MAXIMUM */
    const char *acc, *ptr, *idx;
} RedCtx;

/* acc = acc op x[idx..]: the tail pads sums with 0 and maxima with -inf. */
static void red_step(Kern *k, void *ctx, bool tail) {
    RedCtx *c = ctx;
    const char *x = vld(k, fu_format("%s + %s", c->ptr, c->idx), tail, c->op == OP_MAXIMUM ? "-INFINITY" : NULL);
    /* maximum(x, acc) propagates a NaN element, as the interpreter's max does */
    kline(k, "%s = %s;", c->acc, c->op == OP_MAXIMUM ? v_bin(kT(k), OP_MAXIMUM, x, c->acc)
                                                    : v_bin(kT(k), OP_ADD, c->acc, x));
}

/* float `out` = the sum (or max) of ptr[0, len) by a vector accumulator. */
static void emit_row_reduce(Kern *k, Op op, const char *out, const char *ptr, const char *len) {
    const char *acc = kern_local(k, "fu_acc"), *j = kern_local(k, "fu_j");
    kline(k, "%s %s = %s;", v_type(kT(k)), acc, op == OP_MAXIMUM ? v_set1(kT(k), "-INFINITY") : v_zero(kT(k)));
    kline(k, "int64_t %s = 0;", j);
    RedCtx c = {op, acc, ptr, j};
    vloop(k, j, len, red_step, &c);
    kline(k, "float %s = %s;", out, op == OP_MAXIMUM ? v_hmax(kT(k), acc) : v_hsum(kT(k), acc));
}

/* sum/max/mean over axis i[0], keeping it with size 1. */
static void k_reduce(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    int ax = (int)n->i[0];
    Op op = n->op == OP_MAX ? OP_MAXIMUM : OP_ADD;
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    const char *outer = knumel(k, xn, 0, ax), *len = kdim(k, xn, ax);
    const char *inner = knumel(k, xn, ax + 1, xn->rank);
    const char *fin = n->op == OP_MEAN ? fu_format("acc / %s", as_float(len)) : "acc";
    if (strcmp(inner, "1") == 0) {
        /* the last axis: one contiguous row per output element */
        kline(k, "int64_t o0, o1;");
        kline(k, "fr_split(%s, tid, nth, &o0, &o1);", bare(outer));
        kline(k, "for (int64_t o = o0; o < o1; ++o) {");
        k->indent++;
        emit_row_reduce(k, op, "acc", fu_format("(%s + %s)", x, mul("o", len)), len);
        kline(k, "%s[o] = %s;", y, fin);
        k->indent--;
        kline(k, "}");
        return;
    }
    /* Another axis: W adjacent outputs at once, each accumulating `len`
     * elements strided by inner; (o, column block) pairs split over threads. */
    int W = kW(k);
    const Target *t = kT(k);
    const char *ncol = W == 1 ? inner : fu_format("((%s + %d) / %d)", inner, W - 1, W);
    kline(k, "int64_t q0, q1;");
    kline(k, "fr_split(%s, tid, nth, &q0, &q1);", bare(mul(outer, ncol)));
    kline(k, "for (int64_t q = q0; q < q1; ++q) {");
    k->indent++;
    kline(k, "int64_t o = q / %s, c = q %% %s%s;", ncol, ncol, W == 1 ? "" : fu_format(" * %d", W));
    for (int tail = 0; tail <= (W > 1); tail++) {
        if (W > 1)
            kline(k, tail ? "} else {" : "if (c + %d <= %s) {", W, inner);
        k->indent += W > 1;
        if (tail)
            kline(k, "int fu_m = (int)(%s - c);", inner);
        kline(k, "%s acc = %s;", v_type(t), op == OP_MAXIMUM ? v_set1(t, "-INFINITY") : v_zero(t));
        kline(k, "for (int64_t j = 0; j < %s; ++j)", len);
        const char *xv = vld(k, fu_format("%s + (o * %s + j) * %s + c", x, len, inner), tail, NULL);
        kline(k, "    acc = %s;", op == OP_MAXIMUM ? v_bin(t, OP_MAXIMUM, xv, "acc") : v_bin(t, OP_ADD, "acc", xv));
        const char *res = n->op == OP_MEAN ? v_bin(t, OP_DIV, "acc", v_set1(t, as_float(len))) : "acc";
        kline(k, "%s;", vst(k, fu_format("%s + o * %s + c", y, inner), res, tail));
        k->indent -= W > 1;
    }
    if (W > 1)
        kline(k, "}");
    k->indent--;
    kline(k, "}");
}

/* ---- contractions: what emit_gemm.c refuses (typed weights), and -O0 ------------ */

/* acc (a vector) = sum over kk of a[kk] * b[kk], then `out` = its hsum. */
typedef struct DotCtx {
    const char *acc, *a, *b, *idx;
    DType bt;           /* b's type: f32, or a typed weight's */
    bool rnd;           /* --compute=bf16: both operands rounded to bf16 */
} DotCtx;

/* v rounded to bf16 when rnd (a bf16 weight is already). */
static const char *rnd_bf16(Kern *k, bool rnd, DType dt, const char *v) {
    return rnd && dt != DT_BF16 ? ty_bf16r(kT(k), kW(k), v) : v;
}

static void dot_step(Kern *k, void *ctx, bool tail) {
    DotCtx *c = ctx;
    kline(k, "%s = %s;", c->acc,
          v_fma(kT(k), rnd_bf16(k, c->rnd, DT_F32, vld(k, fu_format("%s + %s", c->a, c->idx), tail, NULL)),
                rnd_bf16(k, c->rnd, c->bt,
                         tail ? ty_load_n(kT(k), kW(k), c->bt, c->b, c->idx, "fu_m")
                              : ty_load(kT(k), kW(k), c->bt, c->b, c->idx)),
                c->acc));
}

static void emit_dot(Kern *k, const char *out, const char *a, const char *b, DType bt, const char *len, bool rnd) {
    const char *acc = kern_local(k, "fu_acc"), *j = kern_local(k, "fu_j");
    kline(k, "%s %s = %s;", v_type(kT(k)), acc, v_zero(kT(k)));
    kline(k, "int64_t %s = 0;", j);
    DotCtx c = {acc, a, b, j, bt, rnd};
    vloop(k, j, len, dot_step, &c);
    kline(k, "float %s = %s;", out, v_hsum(kT(k), acc));
}

/* y[0, len) (+)= s * b[0, len): the row update of a [K, N]-layout product. */
typedef struct AxpyCtx {
    const char *y, *s, *b, *idx;
    bool first;
    DType bt;           /* b's type: f32, bf16 or f16 */
    bool rnd;           /* --compute=bf16: b rounded to bf16 (s already is) */
} AxpyCtx;

static void axpy_step(Kern *k, void *ctx, bool tail) {
    AxpyCtx *c = ctx;
    const char *yp = fu_format("%s + %s", c->y, c->idx);
    const char *bv = tail ? ty_load_n(kT(k), kW(k), c->bt, c->b, c->idx, "fu_m")
                          : ty_load(kT(k), kW(k), c->bt, c->b, c->idx);
    bv = rnd_bf16(k, c->rnd, c->bt, bv);
    kline(k, "%s;", vst(k, yp, v_fma(kT(k), v_set1(kT(k), c->s), bv, vld(k, yp, tail, NULL)), tail));
}

static void emit_axpy(Kern *k, const char *y, const char *s, const char *b, DType bt, const char *len, bool rnd) {
    const char *j = kern_local(k, "fu_j");
    kline(k, "int64_t %s = 0;", j);
    AxpyCtx c = {y, s, b, j, false, bt, rnd};
    vloop(k, j, len, axpy_step, &c);
}

/* y[..., M, N] = a[..., M, K] b[..., K, N] (b stored [..., N, K] when i[0]),
 * batch dims broadcast; the batch * M rows are split over the threads. */
static void k_matmul(Kern *k, const Node *n) {
    const Node *an = n->in[0], *bn = n->in[1];
    const char *a = kin(k, n, 0, "a"), *b = kin(k, n, 1, "b"), *y = kout(k, n, "y");
    int r = n->rank, nb = r - 2, d;
    const char *M = kdim(k, n, r - 2), *N = kdim(k, n, r - 1);
    const char *K = kdim(k, an, an->rank - 1);
    Buf ao = {0}, bo = {0};
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(knumel(k, n, 0, r - 1)));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    unsigned used = 0;
    for (d = 0; d < nb; d++) {
        const Node *ops[2] = {an, bn};
        Buf *offs[2] = {&ao, &bo};
        for (int qi = 0; qi < 2; qi++) {
            const Node *x = ops[qi];
            int xd = d - (r - x->rank);
            if (xd < 0 || (dim_is_const(x->shape[xd]) && x->shape[xd].c == 1))
                continue;
            used |= 1u << d;
            buf_printf(offs[qi], "%s%s", offs[qi]->len ? " + " : "",
                       mul(fu_format("i%d", d), knumel(k, x, xd + 1, x->rank)));
        }
    }
    const char *aoff = take(&ao, NULL), *boff = take(&bo, NULL);
    kline(k, "int64_t m = r %% %s, q = r / %s;", M, M);
    for (d = nb - 1; d >= 0; d--) {
        if (used & (1u << d))
            kline(k, "int64_t i%d = %s;", d, d == 0 ? "q" : fu_format("q %% %s", kdim(k, n, d)));
        if (d > 0 && (used & ((1u << d) - 1)))
            kline(k, "q /= %s;", kdim(k, n, d));
    }
    kline(k, "(void)q;");
    kline(k, "const float *am = %s%s%s;", a, aoff ? " + " : "", aoff ? aoff : "");
    kline(k, "const float *bm = %s%s%s;", b, boff ? " + " : "", boff ? boff : "");
    kline(k, "const float *ar = am + %s;", mul("m", K));
    kline(k, "float *yr = %s + %s;", y, mul("r", N));
    if (n->i[0]) {
        /* B^T: every output is a contiguous dot product. */
        kline(k, "for (int64_t j = 0; j < %s; ++j) {", N);
        k->indent++;
        kline(k, "const float *br = bm + %s;", mul("j", K));
        emit_dot(k, "acc", "ar", "br", DT_F32, K, false);
        kline(k, "yr[j] = acc;");
        k->indent--;
        kline(k, "}");
    } else {
        /* Row m of y accumulates a[m, kk] * row kk of b: unit stride. */
        kline(k, "for (int64_t j = 0; j < %s; ++j)", N);
        kline(k, "    yr[j] = 0.0f;");
        kline(k, "for (int64_t kk = 0; kk < %s; ++kk) {", K);
        k->indent++;
        kline(k, "const float *br = bm + %s;", mul("kk", N));
        emit_axpy(k, "yr", "ar[kk]", "br", DT_F32, N, false);
        k->indent--;
        kline(k, "}");
    }
    k->indent--;
    kline(k, "}");
}

/* Prefill (more than 8 rows) of a q8_0/q4_0 linear on an AVX512-VNNI
 * target: the int8 GEMM of typed.c (docs/gemm.md, "q8_0/q4_0 prefill").
 * Threads split the columns in panels of 32.  Per chunk of at most qmc
 * rows, the rows are quantized once (VNNI: 6 at a time, packed into groups
 * of 6 by fu_qpa; AMX: into rows of fu_xs bytes, zero rows up to a multiple
 * of 32, which the tiles read in place); then per panel of 32 columns (of
 * this thread's) and depth chunk of qkb blocks, the panel is packed (L1)
 * and every group's tile (6 x 32 fu_qmk, or 32 x 32 fu_qamx) runs over it
 * into the chunk's column of float tiles fu_cb, stored (+ bias) at the end. */
/* qmc and qkb are the row's TargetTiles (target.c; AMX: its tiles_amx's qmc). */

static void k_qgemm(Kern *k, const Node *n, const char *x, const char *w, const char *bias, const char *y,
                    const char *R, const char *IN, const char *OUT) {
    const Node *wn = n->in[1];
    const char *rs = ty_row_units(wn->dtype, IN), *tag = kT(k)->tag;
    const bool amx = kT(k)->features & FR_CPU_AMX_INT8;
    const TargetTiles *tl = kT(k)->tiles;
    FU_ASSERT(!amx || kT(k)->tiles_amx);
    const int mc = amx ? kT(k)->tiles_amx->qmc : tl->qmc, cap = mc > tl->qmc ? mc : tl->qmc, qkb = tl->qkb;
    /* fu_bp, fu_cb, then the rows of a chunk: only those a call has (none for decode) */
    const char *cr = fu_format("((%s) > 8 ? ((%s) < %d ? (%s) : %d) : 0)", R, R, mc, R, mc);
    const char *qrow = fu_format("(((%s) + 31) / 32 * 36 + 64)", IN);
    const char *rows = amx ? fu_format("4096 + (%s + 31) / 32 * 32 * %s", cr, qrow)
                           : fu_format("6 * %s + ((%s) + 31) / 32 * 256 * ((%s + 5) / 6)", qrow, IN, cr);
    kern_scratch(k, fu_format("%d + %d + %s + 64", qkb * 1152, cap * 32 * 4, rows));
    kline(k, "if (%s > 8) {", R);
    k->indent++;
    kline(k, "const int64_t fu_np = ((%s) + 31) / 32;", OUT);
    kline(k, "fr_split(fu_np, tid, nth, &o0, &o1);");
    kline(k, "o0 *= 32;");
    kline(k, "o1 = o1 * 32 < %s ? o1 * 32 : %s;", OUT, OUT);
    kline(k, "if (o0 >= o1)");
    kline(k, "    return;");
    kline(k, "uint8_t *fu_bp = (uint8_t *)fu_xq;");
    kline(k, "float *fu_cb = (float *)(void *)(fu_bp + %d);", qkb * 1152);
    if (amx) {
        kline(k, "int32_t *fu_ct = (int32_t *)(void *)(fu_cb + %d);", cap * 32);
        kline(k, "int8_t *fu_xa = (int8_t *)(void *)(fu_ct + 1024);");
        kline(k, "fu_qamx_config_%s();", tag);
    } else {
        kline(k, "int8_t *fu_xt = (int8_t *)(void *)(fu_cb + %d);", cap * 32);
        kline(k, "uint8_t *fu_ap = (uint8_t *)(fu_xt + 6 * fu_xs);");
    }
    kline(k, "for (int64_t rc = 0; rc < %s; rc += %d) {", R, mc);
    k->indent++;
    kline(k, "const int mr = %s - rc < %d ? (int)(%s - rc) : %d, ng = (mr + %d) / %d;", R, mc, R, mc, amx ? 31 : 5,
          amx ? 32 : 6);
    if (amx) {
        kline(k, "for (int r = 0; r < mr; ++r)");
        kline(k, "    %s(%s + %s, %s, fu_xa + r * fu_xs);", ty_qx_fn(kT(k)), x, mul("(rc + r)", IN), IN);
        kline(k, "memset(fu_xa + mr * fu_xs, 0, (size_t)((32 * ng - mr) * fu_xs));");
    } else {
        kline(k, "for (int g = 0; g < ng; ++g) {");
        kline(k, "    const int nr = mr - 6 * g < 6 ? mr - 6 * g : 6;");
        kline(k, "    for (int r = 0; r < nr; ++r)");
        kline(k, "        %s(%s + %s, %s, fu_xt + r * fu_xs);", ty_qx_fn(kT(k)), x, mul("(rc + 6 * g + r)", IN), IN);
        kline(k, "    fu_qpa_%s(fu_xt, fu_xs, nr, fu_nb, fu_ap + g * fu_nb * 256);", tag);
        kline(k, "}");
    }
    kline(k, "for (int64_t jc = o0; jc < o1; jc += 32) {");
    k->indent++;
    kline(k, "const int nc = o1 - jc < 32 ? (int)(o1 - jc) : 32;");
    kline(k, "for (int64_t pc = 0; pc < fu_nb; pc += %d) {", qkb);
    kline(k, "    const int64_t kb = fu_nb - pc < %d ? fu_nb - pc : %d;", qkb, qkb);
    kline(k, "    fu_qpb_%s_%s((const uint8_t *)(%s + %s), %s, nc, pc, kb, fu_bp, %d);", dtype_name(wn->dtype), tag, w,
          mul("jc", rs), rs, !amx);
    kline(k, "    for (int g = 0; g < ng; ++g)");
    if (amx) {
        kline(k, "    {");
        kline(k, "        if (pc == 0)");
        kline(k, "            memset(fu_cb + g * 1024, 0, 4096);");
        kline(k, "        fu_qamx_%s(fu_xa + g * 32 * fu_xs, fu_xs, fu_nb, pc, kb, fu_bp, fu_cb + g * 1024, fu_ct);", tag);
        kline(k, "    }");
    } else {
        kline(k, "        fu_qmk_%s(fu_ap + (g * fu_nb + pc) * 256, fu_bp, kb, fu_cb + g * 192, pc == 0);", tag);
    }
    kline(k, "}");
    if (bias) {
        kline(k, "for (int r = 0; r < mr; ++r)");
        kline(k, "    for (int c = 0; c < nc; ++c)");
        kline(k, "        %s[%s + jc + c] = fu_cb[r * 32 + c] + %s[jc + c];", y, mul("(rc + r)", OUT), bias);
    } else {
        kline(k, "for (int r = 0; r < mr; ++r)");
        kline(k, "    memcpy(%s + %s + jc, fu_cb + r * 32, (size_t)nc * sizeof(float));", y, mul("(rc + r)", OUT));
    }
    k->indent--;
    kline(k, "}");
    k->indent--;
    kline(k, "}");
    if (amx)
        kline(k, "FU_QT_RELEASE();");
    kline(k, "return;");
    k->indent--;
    kline(k, "}");
}

/* y[r, :] = x[r, :] W^T (layout 0, W [out, in]) or x[r, :] W (layout 1,
 * W [in, out]), plus the bias.  Layout 0 splits the output columns over the
 * threads (decode, one row, still uses every thread); layout 1 the rows.
 * A bf16/f16/q8_0/q4_0 weight (layout 0 only for q8_0/q4_0) is read through
 * typed.c's loads: dequantized in registers, a vector at a time, never
 * expanded in memory.  A typed linear comes here only where emit_gemm.c
 * refuses its kernel (q8_0/q4_0: none today, emit_gemm.c takes every
 * q8_0/q4_0 linear the passes build; this stays the fallback). */
static void k_linear(Kern *k, const Node *n) {
    const Node *xn = n->in[0], *wn = n->in[1];
    const char *x = kin(k, n, 0, "x"), *w = kin(k, n, 1, "w");
    const char *bias = n->nin > 2 ? kin(k, n, 2, "bias") : NULL;
    const char *y = kout(k, n, "y");
    const char *R = knumel(k, xn, 0, xn->rank - 1), *IN = kdim(k, xn, xn->rank - 1);
    const char *OUT = kdim(k, n, n->rank - 1);
    if (dt_info(wn->dtype)->kind == DK_QUANT) {
        /* q8_0/q4_0 (layout 0): the rows of x quantized like the weights
         * (typed.c, docs/quantization.md), 32 at a time, into this
         * thread's scratch; int8 dot products, each weight block loaded
         * once for up to 8 rows.  Decode (T <= 8) is one pass; prefill
         * walks the rows in chunks, so each weight row is streamed R / 32
         * times and stays in L1 across its chunk's dots.  Every
         * row of every call computes the same function. */
        FU_ASSERT(n->i[0] == 0);
        /* 32 rows of fu_qx_stride(IN) <= 36 * nb + 63 bytes */
        kern_scratch(k, fu_format("((%s) + 31) / 32 * %d + %d", IN, 36 * 32, 64 * 32 + 64));
        kline(k, "int64_t o0, o1;");
        kline(k, "int8_t *fu_xq = (int8_t *)fr_scratch(tid);");
        kline(k, "const int64_t fu_nb = ((%s) + 31) / 32, fu_xs = fu_qx_stride(%s);", IN, IN);
        if (ty_qgemm(kT(k)))
            k_qgemm(k, n, x, w, bias, y, R, IN, OUT);
        kline(k, "fr_split(%s, tid, nth, &o0, &o1);", bare(OUT));
        kline(k, "if (o0 == o1)");
        kline(k, "    return;");
        kline(k, "for (int64_t rc = 0; rc < %s; rc += 32) {", R);
        k->indent++;
        kline(k, "const int nr = %s - rc < 32 ? (int)(%s - rc) : 32;", R, R);
        kline(k, "for (int r = 0; r < nr; ++r)");
        kline(k, "    %s(%s + %s, %s, fu_xq + r * fu_xs);", ty_qx_fn(kT(k)), x, mul("(rc + r)", IN), IN);
        kline(k, "for (int64_t o = o0; o < o1; ++o) {");
        k->indent++;
        kline(k, "const %s *wr = %s + %s;", ctype(wn), w, mul("o", ty_row_units(wn->dtype, IN)));
        kline(k, "for (int r8 = 0; r8 < nr; r8 += 8) {");
        k->indent++;
        kline(k, "const int m = nr - r8 < 8 ? nr - r8 : 8;");
        kline(k, "float fu_acc[8];");
        kline(k, "%s(wr, fu_xq + r8 * fu_xs, fu_xs, fu_nb, m, fu_acc);", ty_qdot_fn(kT(k), wn->dtype));
        kline(k, "for (int r = 0; r < m; ++r)");
        kline(k, "    %s[%s + o] = %s;", y, mul("(rc + r8 + r)", OUT),
              bias ? fu_format("fu_acc[r] + %s[o]", bias) : "fu_acc[r]");
        k->indent--;
        kline(k, "}");
        k->indent--;
        kline(k, "}");
        k->indent--;
        kline(k, "}");
        return;
    }
    if (n->i[0] == 0) {
        kline(k, "int64_t o0, o1;");
        kline(k, "fr_split(%s, tid, nth, &o0, &o1);", bare(OUT));
        kline(k, "for (int64_t r = 0; r < %s; ++r) {", R);
        k->indent++;
        kline(k, "const float *xr = %s + %s;", x, mul("r", IN));
        kline(k, "for (int64_t o = o0; o < o1; ++o) {");
        k->indent++;
        kline(k, "const %s *wr = %s + %s;", ctype(wn), w, mul("o", ty_row_units(wn->dtype, IN)));
        emit_dot(k, "acc", "xr", "wr", wn->dtype, IN, linear_bf16(n));
        kline(k, "%s[%s + o] = %s;", y, mul("r", OUT), bias ? fu_format("acc + %s[o]", bias) : "acc");
        k->indent--;
        kline(k, "}");
        k->indent--;
        kline(k, "}");
        return;
    }
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(R));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    kline(k, "const float *xr = %s + %s;", x, mul("r", IN));
    kline(k, "float *yr = %s + %s;", y, mul("r", OUT));
    kline(k, "for (int64_t o = 0; o < %s; ++o)", OUT);
    kline(k, "    yr[o] = %s;", bias ? fu_format("%s[o]", bias) : "0.0f");
    kline(k, "for (int64_t i = 0; i < %s; ++i) {", IN);
    k->indent++;
    kline(k, "const %s *wr = %s + %s;", ctype(wn), w, mul("i", OUT));
    emit_axpy(k, "yr", linear_bf16(n) ? "fu_bf16r(xr[i])" : "xr[i]", "wr", wn->dtype, OUT, linear_bf16(n));
    k->indent--;
    kline(k, "}");
    k->indent--;
    kline(k, "}");
}

/* ---- data movement ------------------------------------------------------------ */

/* Output axis a is input axis i[a]; the first output axis is split. */
static void k_transpose(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    Buf xi = {0}, yi = {0};
    int d;
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(kdim(k, n, 0)));
    for (d = 0; d < n->rank; d++) {
        int ax = (int)n->i[d];
        buf_printf(&xi, "%s%s", xi.len ? " + " : "",
                   mul(fu_format("i%d", d), knumel(k, xn, ax + 1, xn->rank)));
        buf_printf(&yi, "%s%s", yi.len ? " + " : "",
                   mul(fu_format("i%d", d), knumel(k, n, d + 1, n->rank)));
        if (d == 0)
            kline(k, "for (int64_t i0 = r0; i0 < r1; ++i0)");
        else
            kline(k, "for (int64_t i%d = 0; i%d < %s; ++i%d)", d, d, kdim(k, n, d), d);
        k->indent++;
    }
    kline(k, "%s[%s] = %s[%s];", y, take(&yi, "0"), x, take(&xi, "0"));
    k->indent -= n->rank;
}

/*
 * Copies of contiguous runs: this thread's share [f, f_end) of the output's
 * flat index space, walked run by run; `src` is the source of output element
 * f given the run number o and the offset rem within it (both in scope).
 */
static void emit_runs(Kern *k, const char *y, const char *total, const char *run, const char *src) {
    run = fu_format("(%s)", bare(run));
    kline(k, "int64_t f, f_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(total));
    kline(k, "while (f < f_end) {");
    k->indent++;
    kline(k, "int64_t o = f / %s, rem = f %% %s;", run, run);
    kline(k, "int64_t cnt = %s - rem < f_end - f ? %s - rem : f_end - f;", run, run);
    kline(k, "(void)o;");
    kline(k, "memcpy(%s + f, %s, (size_t)cnt * sizeof *%s);", y, src, y);
    kline(k, "f += cnt;");
    k->indent--;
    kline(k, "}");
}

/* Rows [start, start+len) of axis i[0]: one run of len * inner per outer index. */
static void k_slice(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    int ax = (int)n->i[0];
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    const char *inner = knumel(k, xn, ax + 1, xn->rank);
    const char *nx = kdim(k, xn, ax), *len = kdim(k, n, ax);
    /* a negative start counts from the end (the last rows of a symbolic axis) */
    const char *start = n->i[1] < 0 ? fu_format("%s - %lld", nx, (long long)-n->i[1])
                                    : fu_format("%lld", (long long)n->i[1]);
    emit_runs(k, y, knumel(k, n, 0, n->rank), mul(len, inner),
              fu_format("%s + %s + rem", x, mul(fu_format("(o * %s + %s)", nx, start), inner)));
}

/* a then b along axis i[0]: a run of na * inner from a, then nb * inner from b. */
static void k_concat(Kern *k, const Node *n) {
    const Node *an = n->in[0], *bn = n->in[1];
    int ax = (int)n->i[0];
    const char *a = kin(k, n, 0, "a"), *b = kin(k, n, 1, "b"), *y = kout(k, n, "y");
    const char *inner = knumel(k, n, ax + 1, n->rank);
    const char *na = fu_format("(%s)", bare(mul(kdim(k, an, ax), inner)));
    const char *nb = fu_format("(%s)", bare(mul(kdim(k, bn, ax), inner)));
    const char *ny = fu_format("(%s)", bare(mul(kdim(k, n, ax), inner)));
    kline(k, "int64_t f, f_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(knumel(k, n, 0, n->rank)));
    kline(k, "while (f < f_end) {");
    k->indent++;
    kline(k, "int64_t o = f / %s, rem = f %% %s, cnt;", ny, ny);
    kline(k, "if (rem < %s) {", na);
    kline(k, "    cnt = %s - rem < f_end - f ? %s - rem : f_end - f;", na, na);
    kline(k, "    memcpy(%s + f, %s + %s + rem, (size_t)cnt * sizeof *%s);", y, a, mul("o", na), y);
    kline(k, "} else {");
    kline(k, "    cnt = %s - rem < f_end - f ? %s - rem : f_end - f;", ny, ny);
    kline(k, "    memcpy(%s + f, %s + %s + (rem - %s), (size_t)cnt * sizeof *%s);", y, b, mul("o", nb), na, y);
    kline(k, "}");
    kline(k, "f += cnt;");
    k->indent--;
    kline(k, "}");
}

/* Writes x's T rows at row P of the cache (the node's value is then the
 * cache itself, rows [0, P+T)); the rows' floats are split over threads. */
static void k_append(Kern *k, const Node *n) {
    const Node *cn = n->in[0], *xn = n->in[1];
    const char *c = kparam(k, cn, "cache", true), *x = kin(k, n, 1, "x");
    const char *row = knumel(k, xn, 1, xn->rank);
    kline(k, "int64_t f, f_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(mul(kdim(k, xn, 0), row)));
    if (cn->dtype != DT_F32) {  /* an f16/bf16 cache: rounded to nearest even */
        kline(k, "for (int64_t e = f; e < f_end; ++e)");
        kline(k, "    %s;", ty_store1(cn->dtype, fu_format("(%s + %s)", c, mul(kdim(k, cn, 0), row)), "e",
                                     fu_format("%s[e]", x)));
        return;
    }
    kline(k, "if (f < f_end)");
    kline(k, "    memcpy(%s + %s + f, %s + f, (size_t)(f_end - f) * sizeof *%s);", c, mul(kdim(k, cn, 0), row), x,
          c);
}

/* y = x as f32 (x bf16 or f16: exact), elementwise. */
typedef struct CvCtx {
    DType t;
    const char *x, *y;
} CvCtx;

static void cv_step(Kern *k, void *ctx, bool tail) {
    CvCtx *c = ctx;
    const char *v = tail ? ty_load_n(kT(k), kW(k), c->t, c->x, "i", "fu_m") : ty_load(kT(k), kW(k), c->t, c->x, "i");
    kline(k, "%s;", vst(k, fu_format("%s + i", c->y), v, tail));
}

static void k_convert(Kern *k, const Node *n) {
    CvCtx c = {n->in[0]->dtype, kin(k, n, 0, "x"), kout(k, n, "y")};
    flat_split(k, bare(knumel(k, n, 0, n->rank)));
    vloop(k, "i", "i_end", cv_step, &c);
}

/* ---- row-wise ----------------------------------------------------------------- */

/* The rows of the last axis, split over the threads: opens
 * `for (r = r0; r < r1; ++r) {` with xr (and yr) set. */
static void rows_open(Kern *k, const char *R, const char *D, const char *x, const char *y) {
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(R));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    kline(k, "const float *xr = %s + %s;", x, mul("r", D));
    if (y)
        kline(k, "float *yr = %s + %s;", y, mul("r", D));
}

static void rows_close(Kern *k) {
    k->indent--;
    kline(k, "}");
}

/* A vector map over a row: y[j] = f(x[j], ...) written as a step. */
typedef struct MapCtx {
    int kind;           /* 0 rms: x*inv*w; 1 ln: ((x-mu)-lo)*inv*w+b; 2 sum of squares;
                           3 sums of x-mu and its square; 4 softmax exp+sum; 5 scale;
                           6 copy; 7 fill -inf */
    const char *w, *b, *acc;
} MapCtx;

static void map_step(Kern *k, void *ctx, bool tail) {
    MapCtx *c = ctx;
    const Target *t = kT(k);
    const char *x = c->kind == 7 ? NULL : vld(k, "xr + j", tail, c->kind == 4 ? "-INFINITY" : NULL);
    switch (c->kind) {
    case 0:
        kline(k, "%s;", vst(k, "yr + j", v_bin(t, OP_MUL, v_bin(t, OP_MUL, x, "vinv"),
                                               vld(k, fu_format("%s + j", c->w), tail, NULL)), tail));
        break;
    case 1: {
        const char *nx = v_bin(t, OP_MUL, v_bin(t, OP_SUB, v_bin(t, OP_SUB, x, "vmu"), "vlo"), "vinv");
        kline(k, "%s;", vst(k, "yr + j", v_fma(t, nx, vld(k, fu_format("%s + j", c->w), tail, NULL),
                                               vld(k, fu_format("%s + j", c->b), tail, NULL)), tail));
        break;
    }
    case 2:
        kline(k, "%s %s = %s;", v_type(t), "vx", x);
        kline(k, "%s = %s;", c->acc, v_fma(t, "vx", "vx", c->acc));
        break;
    case 3:
        /* the tail's padding would add (0 - mu)^2: mask it out by loading x
         * padded with mu instead */
        kline(k, "%s vd = %s;", v_type(t),
              v_bin(t, OP_SUB, tail ? v_load_n(t, "xr + j", "fu_m", "mu") : x, "vmu"));
        kline(k, "%s = %s;", c->acc, v_fma(t, "vd", "vd", c->acc));
        kline(k, "vdev = %s;", v_bin(t, OP_ADD, "vdev", "vd"));
        break;
    case 4:
        kline(k, "%s ve = %s;", v_type(t), v_unary(t, OP_EXP, v_bin(t, OP_SUB, x, "vmx")));
        kline(k, "%s;", vst(k, "yr + j", "ve", tail));
        kline(k, "%s = %s;", c->acc, v_bin(t, OP_ADD, c->acc, "ve"));
        break;
    case 5:
        kline(k, "%s;", vst(k, "yr + j", v_bin(t, OP_MUL, vld(k, "yr + j", tail, NULL), "vinv"), tail));
        break;
    case 6:
        kline(k, "%s;", vst(k, "yr + j", x, tail));
        break;
    case 7:
        kline(k, "%s;", vst(k, "yr + j", v_set1(t, "-INFINITY"), tail));
        break;
    default:
        FU_UNREACHABLE();
    }
}

static void row_map(Kern *k, int kind, const char *from, const char *len, const char *w, const char *b,
                    const char *acc) {
    MapCtx c = {kind, w, b, acc};
    kline(k, "j = %s;", from);
    vloop(k, "j", len, map_step, &c);
}

/* The rescue of a row whose float sum of squares `q` overflowed (or, with
 * eps < 1e-30, underflowed): its statistics again in double.  NaN rows take
 * it too and stay NaN. */
static void norm_rescue(Kern *k, const Node *n, const char *q, const char *D, bool center) {
    kline(k, "if (!(%s < INFINITY)%s) {", q, n->f[0] < 1e-30 ? fu_format(" || %s < 1e-30f", q) : "");
    kline(k, "    %s;", v_norm_stats(kT(k), "xr", D, center, n->f[0], "mu", "lo", "inv"));
    kline(k, "}");
}

/* y = x / sqrt(mean(x^2) + eps) * w over the last axis. */
static void k_rms_norm(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const Target *t = kT(k);
    const char *x = kin(k, n, 0, "x"), *w = kin(k, n, 1, "w"), *y = kout(k, n, "y");
    const char *R = knumel(k, xn, 0, xn->rank - 1), *D = kdim(k, xn, xn->rank - 1);
    rows_open(k, R, D, x, y);
    kline(k, "int64_t j;");
    kline(k, "%s vss = %s;", v_type(t), v_zero(t));
    row_map(k, 2, "0", D, NULL, NULL, "vss");
    kline(k, "float ss = %s, mu, lo;", v_hsum(t, "vss"));
    kline(k, "float inv = 1.0f / sqrtf(ss / %s + %s);", as_float(D), c_float_lit(n->f[0]));
    norm_rescue(k, n, "ss", D, false);
    kline(k, "(void)mu;");
    kline(k, "(void)lo;");
    kline(k, "%s vinv = %s;", v_type(t), v_set1(t, "inv"));
    row_map(k, 0, "0", D, w, NULL, NULL);
    rows_close(k);
}

/* y = (x - mean) / sqrt(var + eps) * w + b over the last axis (biased var).
 * The mean is mu + lo: mu the float mean of a first pass, lo the mean of
 * x - mu from the second, which also sums (x - mu)^2; then var = that / D -
 * lo^2, and (x - mu) - lo is exact to float rounding even for rows like
 * 1e6 +- 2, whose mean float cannot hold (corrected two-pass algorithm). */
static void k_layer_norm(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const Target *t = kT(k);
    const char *x = kin(k, n, 0, "x"), *w = kin(k, n, 1, "w"), *b = kin(k, n, 2, "b");
    const char *y = kout(k, n, "y");
    const char *R = knumel(k, xn, 0, xn->rank - 1), *D = kdim(k, xn, xn->rank - 1);
    rows_open(k, R, D, x, y);
    kline(k, "int64_t j;");
    emit_row_reduce(k, OP_ADD, "sum", "xr", D);
    kline(k, "float mu = sum / %s;", as_float(D));
    kline(k, "%s vmu = %s, vvar = %s, vdev = %s;", v_type(t), v_set1(t, "mu"), v_zero(t), v_zero(t));
    row_map(k, 3, "0", D, NULL, NULL, "vvar");
    kline(k, "float sq = %s, lo = %s / %s, var = sq / %s - lo * lo;", v_hsum(t, "vvar"), v_hsum(t, "vdev"),
          as_float(D), as_float(D));
    kline(k, "float inv = 1.0f / sqrtf((var < 0.0f ? 0.0f : var) + %s);", c_float_lit(n->f[0]));
    norm_rescue(k, n, "sq", D, true);
    kline(k, "vmu = %s;", v_set1(t, "mu"));
    kline(k, "%s vlo = %s, vinv = %s;", v_type(t), v_set1(t, "lo"), v_set1(t, "inv"));
    row_map(k, 1, "0", D, w, b, NULL);
    rows_close(k);
}

/* Softmax over the last axis; a row that is entirely -inf gives zeros, as
 * in the interpreter. */
static void k_softmax(Kern *k, const Node *n) {
    const Target *t = kT(k);
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    const char *R = knumel(k, n, 0, n->rank - 1), *N = kdim(k, n, n->rank - 1);
    rows_open(k, R, N, x, y);
    kline(k, "int64_t j;");
    emit_row_reduce(k, OP_MAXIMUM, "mx", "xr", N);
    kline(k, "if (mx == -INFINITY) {");
    kline(k, "    for (j = 0; j < %s; ++j)", N);
    kline(k, "        yr[j] = 0.0f;");
    kline(k, "    continue;");
    kline(k, "}");
    kline(k, "%s vmx = %s, vsum = %s;", v_type(t), v_set1(t, "mx"), v_zero(t));
    row_map(k, 4, "0", N, NULL, NULL, "vsum");
    kline(k, "float inv = 1.0f / %s;", v_hsum(t, "vsum"));
    kline(k, "%s vinv = %s;", v_type(t), v_set1(t, "inv"));
    row_map(k, 5, "0", N, NULL, NULL, NULL);
    rows_close(k);
}

/* x [..., T, S]: key j > query i + (S - T) becomes -inf (bottom-right
 * aligned): copy the visible prefix of each row, fill the rest. */
static void k_causal_mask(Kern *k, const Node *n) {
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    const char *T = kdim(k, n, n->rank - 2), *S = kdim(k, n, n->rank - 1);
    /* S - T as a dim of its own: "P" rather than "(T + P) - T" */
    const char *off = dim_c(k->e->g, dim_sub(n->shape[n->rank - 1], n->shape[n->rank - 2]), &k->used);
    rows_open(k, knumel(k, n, 0, n->rank - 1), S, x, y);
    kline(k, "int64_t i = r %% %s, j;", T);
    kline(k, "int64_t vis = i + %s + 1 < %s ? i + %s + 1 : %s;", off, S, off, S);
    /* T > S: the first rows see no key at all */
    kline(k, "vis = vis < 0 ? 0 : vis;");
    row_map(k, 6, "0", "vis", NULL, NULL, NULL);
    row_map(k, 7, "vis", S, NULL, NULL, NULL);
    rows_close(k);
}

/* The rotation of one head's halves: y1 = x1 cs - x2 sn, y2 = x2 cs + x1 sn. */
static void rope_step(Kern *k, void *ctx, bool tail) {
    const char *half = ctx;
    const Target *t = kT(k);
    const char *x1 = vld(k, "xh + i", tail, NULL), *x2 = vld(k, fu_format("xh + i + %s", half), tail, NULL);
    const char *cs = vld(k, "cs + i", tail, NULL), *sn = vld(k, "sn + i", tail, NULL);
    kline(k, "%s v1 = %s, v2 = %s, vc = %s, vs = %s;", v_type(t), x1, x2, cs, sn);
    kline(k, "%s;", vst(k, "yh + i", v_bin(t, OP_SUB, v_bin(t, OP_MUL, "v1", "vc"), v_bin(t, OP_MUL, "v2", "vs")), tail));
    kline(k, "%s;", vst(k, fu_format("yh + i + %s", half), v_fma(t, "v1", "vs", v_bin(t, OP_MUL, "v2", "vc")), tail));
}

/* Hugging Face rotate-half RoPE: per token t and pair (i, i + hd/2) of each
 * head, rotate by pos[t] * theta^(-2i/hd).  The angle is computed in double:
 * at positions in the thousands float loses most of its digits.  Tokens are
 * split over the threads; each computes the token's cos/sin once for all
 * heads. */
static void k_rope(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const char *x = kin(k, n, 0, "x"), *pos = kin(k, n, 1, "pos"), *y = kout(k, n, "y");
    int64_t hd = n->i[0], half = hd / 2;
    const char *T = kdim(k, xn, 0), *C = knumel(k, xn, 1, xn->rank);
    const char *heads = dim_is_const(xn->shape[xn->rank - 1]) && xn->rank == 2
                            ? fu_format("%lld", (long long)(xn->shape[1].c / hd))
                            : fu_format("%s / %lld", C, (long long)hd);
    const char *halfs = fu_format("%lld", (long long)half);
    kline(k, "int64_t t0, t1;");
    kline(k, "fr_split(%s, tid, nth, &t0, &t1);", bare(T));
    kline(k, "for (int64_t t = t0; t < t1; ++t) {");
    k->indent++;
    kline(k, "float cs[%lld], sn[%lld];", (long long)half, (long long)half);
    kline(k, "for (int64_t i = 0; i < %lld; ++i) {", (long long)half);
    kline(k, "    double ang = (double)%s[t] * pow(%s, -2.0 * (double)i / %s);", pos, c_double_lit(n->f[0]),
          c_double_lit((double)hd));
    kline(k, "    cs[i] = (float)cos(ang);");
    kline(k, "    sn[i] = (float)sin(ang);");
    kline(k, "}");
    kline(k, "for (int64_t h = 0; h < %s; ++h) {", heads);
    k->indent++;
    kline(k, "const float *xh = %s + %s + h * %lld;", x, mul("t", C), (long long)hd);
    kline(k, "float *yh = %s + %s + h * %lld;", y, mul("t", C), (long long)hd);
    kline(k, "int64_t i = 0;");
    vloop(k, "i", halfs, rope_step, (void *)halfs);
    k->indent--;
    kline(k, "}");
    k->indent--;
    kline(k, "}");
}

/* acc[d] = acc[d] * corr + p * vr[d] over the head dim. */
static void attn_step(Kern *k, void *ctx, bool tail) {
    DType vt = *(const DType *)ctx;     /* v's type: f32, f16 or bf16 */
    const Target *t = kT(k);
    const char *acc = vld(k, "acc + d", tail, NULL);
    const char *vr = tail ? ty_load_n(t, kW(k), vt, "vr", "d", "fu_m") : ty_load(t, kW(k), vt, "vr", "d");
    kline(k, "%s;", vst(k, "acc + d", v_fma(t, v_set1(t, "p"), vr, v_bin(t, OP_MUL, acc, v_set1(t, "corr"))), tail));
}

/* Scaled dot-product attention, one (token, head) pair at a time with an
 * online softmax (running max, rescaled sum and accumulator), so no score
 * buffer is needed; the pairs are split over the threads.  Query head h
 * reads kv head h / (H / KVH); when causal, key s is visible to query t iff
 * s <= t + (S - T). */
static void k_attention(Kern *k, const Node *n) {
    const Node *qn = n->in[0], *kn = n->in[1];
    const char *q = kin(k, n, 0, "q"), *kk = kin(k, n, 1, "k"), *v = kin(k, n, 2, "v");
    const char *y = kout(k, n, "y");
    long long H = (long long)n->i[0], KVH = (long long)n->i[1], hd = (long long)n->i[2];
    long long qrow = H * hd, krow = KVH * hd;
    const char *T = kdim(k, qn, 0), *hds = fu_format("%lld", hd);
    FU_ASSERT(H > 0 && KVH > 0 && hd > 0 && H % KVH == 0);
    kline(k, "int64_t p0, p1;");
    kline(k, "fr_split(%s, tid, nth, &p0, &p1);", bare(mul(T, fu_format("%lld", H))));
    kline(k, "for (int64_t pr = p0; pr < p1; ++pr) {");
    k->indent++;
    kline(k, "int64_t t = pr / %lld, h = pr %% %lld;", H, H);
    /* Keys [0, send) are visible; t < T keeps t + (S - T) + 1 <= S. */
    if (n->i[3])
        kline(k, "int64_t send = t + %s + 1;", dim_c(k->e->g, dim_sub(kn->shape[0], qn->shape[0]), &k->used));
    else
        kline(k, "int64_t send = %s;", kdim(k, kn, 0));
    kline(k, "const float *qh = %s + t * %lld + h * %lld;", q, qrow, hd);
    DType kt = kn->dtype, vt = n->in[2]->dtype;
    kline(k, "const %s *kb = %s + (h / %lld) * %lld;", ctype(kn), kk, H / KVH, hd);
    kline(k, "const %s *vb = %s + (h / %lld) * %lld;", ctype(n->in[2]), v, H / KVH, hd);
    kline(k, "float mx = -INFINITY, l = 0.0f, acc[%lld];", hd);
    kline(k, "for (int64_t d = 0; d < %lld; ++d)", hd);
    kline(k, "    acc[d] = 0.0f;");
    /* a window: keys [send - W, send) (the causal diagonal is send - 1) */
    if (n->i[4])
        kline(k, "int64_t sbeg = send - %lld < 0 ? 0 : send - %lld;", (long long)n->i[4], (long long)n->i[4]);
    else
        kline(k, "int64_t sbeg = 0;");
    kline(k, "for (int64_t s = sbeg; s < send; ++s) {");
    k->indent++;
    kline(k, "const %s *kr = kb + s * %lld;", ctype(kn), krow);
    kline(k, "const %s *vr = vb + s * %lld;", ctype(n->in[2]), krow);
    emit_dot(k, "dot", "qh", "kr", kt, hds, false);
    /* A NaN score skips the max and makes p NaN; +inf makes p = exp(inf -
     * inf) = NaN, as softmax has it; -inf gives p = 0 even while mx is -inf. */
    kline(k, "float sc = dot * %s, corr = 1.0f, p;", c_float_lit(n->f[0]));
    if (n->f[1] > 0)
        kline(k, "sc = %s * tanhf(sc / %s);", c_float_lit(n->f[1]), c_float_lit(n->f[1]));
    if (n->nin == 4) {
        const Node *mn = n->in[3];
        const char *m = kin(k, n, 3, "mask");
        const char *at = mn->rank == 2 ? fu_format("%s[t * %s + s]", m, kdim(k, kn, 0)) : fu_format("%s[s]", m);
        if (mn->dtype == DT_I32)
            kline(k, "sc = %s != 0 ? sc : -INFINITY;", at);
        else
            kline(k, "sc += %s;", at);
    }
    kline(k, "if (sc > mx) {");
    kline(k, "    corr = expf(mx - sc);");
    kline(k, "    mx = sc;");
    kline(k, "}");
    kline(k, "p = sc == -INFINITY ? 0.0f : expf(sc - mx);");
    kline(k, "l = l * corr + p;");
    kline(k, "int64_t d = 0;");
    vloop(k, "d", hds, attn_step, &vt);
    k->indent--;
    kline(k, "}");
    /* l = 0: no visible key (zeros); NaN stays NaN */
    kline(k, "float inv = l == 0.0f ? 0.0f : 1.0f / l;");
    kline(k, "for (int64_t d = 0; d < %lld; ++d)", hd);
    kline(k, "    %s[t * %lld + h * %lld + d] = acc[d] * inv;", y, qrow, hd);
    k->indent--;
    kline(k, "}");
}

/* ---- integers, comparisons, indexing (scalar C on every target) ----------------- */

/*
 * These ops are not fused and are small next to the products around them
 * (a row of ids, a mask, the router's scores), so each is one plain loop of
 * portable C that every target compiles as it is.  The flat index space of
 * the output is split over the threads; an operand broadcast numpy-style
 * is read at the offset the output index maps to.
 */

/* The element of operand i of n read at the output's flat index `f`
 * (declares `off<i>` with the index arithmetic when it needs any). */
static const char *bcast_elem(Kern *k, const Node *n, int i, const char *role) {
    const Node *x = n->in[i];
    if (x->op == OP_CONST)
        return c_float_lit(x->f[0]);
    const char *p = kin(k, n, i, role);
    if (x->rank == 0)
        return fu_format("%s[0]", p);
    if (same_shape(x, n))
        return fu_format("%s[f]", p);
    Buf b = {0};
    int lead = n->rank - x->rank;
    for (int d = 0; d < n->rank; d++) {
        int xd = d - lead;
        if (xd < 0 || (dim_is_const(x->shape[xd]) && x->shape[xd].c == 1))
            continue;
        const char *inner = knumel(k, n, d + 1, n->rank);
        const char *idx = d == 0 ? fu_format("(f / %s)", inner)
                                 : fu_format("(f / %s %% %s)", inner, kdim(k, n, d));
        if (strcmp(inner, "1") == 0)
            idx = d == 0 ? "f" : fu_format("(f %% %s)", kdim(k, n, d));
        buf_printf(&b, "%s%s", b.len ? " + " : "", mul(idx, knumel(k, x, xd + 1, x->rank)));
    }
    return fu_format("%s[%s]", p, take(&b, "0"));
}

/* lt le gt ge eq ne, where, cast: one output element per flat index. */
static void k_select(Kern *k, const Node *n) {
    static const char *const roles[3][3] = {{"x"}, {"a", "b"}, {"c", "a", "b"}};
    const char *v[3];
    for (int i = 0; i < n->nin; i++)
        v[i] = bcast_elem(k, n, i, roles[n->nin - 1][i]);
    const char *y = kout(k, n, "y");
    const char *val;
    switch (n->op) {
    case OP_CAST:
        if (n->dtype == DT_I32 && n->in[0]->dtype == DT_F32) {
            kline(k, "int64_t f, f_end;");
            kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(knumel(k, n, 0, n->rank)));
            kline(k, "for (; f < f_end; ++f) {");
            kline(k, "    float v = %s;", v[0]);
            /* toward zero; NaN 0; saturating (2^31 is the first float past INT32_MAX) */
            kline(k, "    %s[f] = v != v ? 0 : v >= 2147483648.0f ? INT32_MAX : v <= -2147483648.0f ? INT32_MIN "
                     ": (int32_t)v;", y);
            kline(k, "}");
            return;
        }
        val = n->dtype == DT_F32 ? fu_format("(float)%s", v[0]) : v[0];
        break;
    case OP_WHERE: val = fu_format("%s != 0 ? %s : %s", v[0], v[1], v[2]); break;
    case OP_LT: val = fu_format("(double)%s < (double)%s", v[0], v[1]); break;
    case OP_LE: val = fu_format("(double)%s <= (double)%s", v[0], v[1]); break;
    case OP_GT: val = fu_format("(double)%s > (double)%s", v[0], v[1]); break;
    case OP_GE: val = fu_format("(double)%s >= (double)%s", v[0], v[1]); break;
    case OP_EQ: val = fu_format("(double)%s == (double)%s", v[0], v[1]); break;
    case OP_NE: val = fu_format("(double)%s != (double)%s", v[0], v[1]); break;
    default: FU_UNREACHABLE();
    }
    kline(k, "int64_t f, f_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(knumel(k, n, 0, n->rank)));
    kline(k, "for (; f < f_end; ++f)");
    kline(k, "    %s[f] = %s;", y, val);
}

/* Thread 0 records the first id outside [0, range) in fu_err (node id,
 * element, id) for forward to report; the copy never reads past the table. */
static void check_ids(Kern *k, const Node *n, const char *ids, const char *count, const char *range) {
    k->err = true;
    kline(k, "if (tid == 0 && fu_err[0] < 0)");
    kline(k, "    for (int64_t s = 0; s < %s; ++s)", count);
    kline(k, "        if (%s[s] < 0 || %s[s] >= %s) {", ids, ids, range);
    kline(k, "            fu_err[0] = %d;", n->id);
    kline(k, "            fu_err[1] = s;");
    kline(k, "            fu_err[2] = %s[s];", ids);
    kline(k, "            break;");
    kline(k, "        }");
}

/* Row ids[s] of table [V, R...]; a row of zeros for an id out of range. */
static void k_embedding(Kern *k, const Node *n) {
    const Node *tn = n->in[0], *in = n->in[1];
    const char *tab = kin(k, n, 0, "table"), *ids = kin(k, n, 1, "ids"), *y = kout(k, n, "y");
    const char *S = knumel(k, in, 0, in->rank), *R = knumel(k, tn, 1, tn->rank), *V = kdim(k, tn, 0);
    /* a vocabulary-parallel table (tp.c): rows [i[0], i[0] + V) of i[1]; other ids give zeros */
    check_ids(k, n, ids, S, n->i[1] > 0 ? fu_format("%lld", (long long)n->i[1]) : V);
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(S));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    if (n->i[1] > 0)
        kline(k, "int32_t id = (int32_t)(%s[r] - %lld);", ids, (long long)n->i[0]);
    else
        kline(k, "int32_t id = %s[r];", ids);
    kline(k, "float *yr = %s + %s;", y, mul("r", R));
    kline(k, "if (id < 0 || id >= %s) {", V);
    kline(k, "    memset(yr, 0, (size_t)%s * sizeof *yr);", R);
    kline(k, "    continue;");
    kline(k, "}");
    kline(k, "const %s *tr = %s + %s;", ctype(tn), tab, mul("(int64_t)id", ty_row_units(tn->dtype, R)));
    if (tn->dtype == DT_F32) {
        kline(k, "memcpy(yr, tr, (size_t)%s * sizeof *yr);", R);
    } else {
        kline(k, "for (int64_t j = 0; j < %s; ++j)", R);
        kline(k, "    yr[j] = %s;", ty_load1(tn->dtype, "tr", "j"));
    }
    k->indent--;
    kline(k, "}");
}

/* y[r, k] = x[r, ids[r, k]] along the last axis; 0 for an id out of range. */
static void k_gather(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const char *x = kin(k, n, 0, "x"), *ids = kin(k, n, 1, "ids"), *y = kout(k, n, "y");
    const char *N = kdim(k, xn, xn->rank - 1), *K = kdim(k, n, n->rank - 1);
    check_ids(k, n, ids, knumel(k, n, 0, n->rank), N);
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(knumel(k, n, 0, n->rank - 1)));
    kline(k, "for (int64_t r = r0; r < r1; ++r)");
    kline(k, "    for (int64_t j = 0; j < %s; ++j) {", K);
    kline(k, "        int32_t id = %s[%s + j];", ids, mul("r", K));
    kline(k, "        %s[%s + j] = id < 0 || id >= %s ? 0 : %s[%s + id];", y, mul("r", K), N, x, mul("r", N));
    kline(k, "    }");
}

/* The indices of the k largest of each row, largest first: an insertion
 * into the sorted winners, which never moves an earlier (lower) index
 * behind an equal later one; NaN ranks above everything, as in torch. */
/* topk's insertion step, shared by topk and the MoE routing: the value v
 * (already declared) at index IDX of SRC enters the sorted list IDS of at
 * most K indices (cnt of them so far), NaN largest, ties in index order. */
static void emit_topk_insert(Kern *k, const char *src, const char *ids, const char *idx, long long K) {
    kline(k, "int64_t j = cnt;");
    kline(k, "while (j > 0) {");
    kline(k, "    float u = %s[%s[j - 1]];", src, ids);
    kline(k, "    if (!(v != v ? u == u : v > u))");
    kline(k, "        break;");
    kline(k, "    if (j < %lld)", K);
    kline(k, "        %s[j] = %s[j - 1];", ids, ids);
    kline(k, "    j--;");
    kline(k, "}");
    kline(k, "if (j < %lld) {", K);
    kline(k, "    %s[j] = (int32_t)%s;", ids, idx);
    kline(k, "    cnt += cnt < %lld;", K);
    kline(k, "}");
}

static void k_topk(Kern *k, const Node *n) {
    const Node *xn = n->in[0];
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y");
    const char *N = kdim(k, xn, xn->rank - 1);
    long long K = (long long)n->i[0];
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(knumel(k, n, 0, n->rank - 1)));
    kline(k, "for (int64_t r = r0; r < r1; ++r) {");
    k->indent++;
    kline(k, "const float *xr = %s + %s;", x, mul("r", N));
    kline(k, "int32_t *yr = %s + %s;", y, mul("r", fu_format("%lld", K)));
    kline(k, "int64_t cnt = 0;");
    kline(k, "for (int64_t c = 0; c < %s; ++c) {", N);
    k->indent++;
    kline(k, "float v = xr[c];");
    emit_topk_insert(k, "xr", "yr", "c", K);
    k->indent--;
    kline(k, "}");
    k->indent--;
    kline(k, "}");
}

/* ---- sparse MoE experts (docs/language.md "Sparse MoE") ------------------ */

/*
 * moe_up and moe_down read only the experts that the ids select.  Every
 * thread routes the tokens (moe's form: softmax of the router's logits,
 * top-k, renormalised) and sorts the T*K (token, slot) pairs by expert in
 * its own scratch - T*(E + K) + E steps, cheap next to one expert row - so
 * the work is grouped by expert without a barrier: a weight row is loaded
 * once for all the tokens routed to its expert while it sits in L1, and an
 * unselected expert's weights are never touched.  Decode (T = 1) is a GEMV
 * over the K experts' rows; prefill, one pass per expert over its tokens.
 *
 * After moe_group: fu_id[q] and (routed) fu_w[q] are pair q = t*K + k's
 * expert and weight; fu_st[e] .. fu_st[e + 1] index fu_ord, expert e's
 * pairs in increasing q.  An id out of range is left out (and reported).
 */
static void moe_group(Kern *k, const Node *n, const char *TK, const char *K, const char *E) {
    const Node *rn = n->in[1];
    bool routed = rn->dtype == DT_F32;
    const char *ids = kin(k, n, 1, routed ? "logits" : "ids");
    /* int32 st[E + 1], ord[TK] (and routed: id[TK], float w[TK], p[E]) */
    kern_scratch(k, fu_format("((size_t)(%s) * %d + %s * %d + 2) * 4", TK, routed ? 3 : 1, E, routed ? 2 : 1));
    kline(k, "int32_t *fu_st = (int32_t *)fr_scratch(tid), *fu_ord = fu_st + %s + 1;", E);
    if (routed) {
        const char *T = kdim(k, n, 0);
        long long nk = (long long)n->i[0];
        kline(k, "int32_t *fu_id = fu_ord + %s;", TK);
        kline(k, "float *fu_w = (float *)(void *)(fu_id + %s), *fu_p = fu_w + %s;", TK, TK);
        /* softmax as the softmax kernel defines it (a row of -inf: zeros;
         * NaN or +inf: NaN), then topk's insertion (NaN largest, ties: the
         * lower expert first), then the weights (renormalised). */
        kline(k, "for (int64_t t = 0; t < %s; ++t) {", T);
        k->indent++;
        kline(k, "const float *lr = %s + t * %s;", ids, E);
        kline(k, "int32_t *ir = fu_id + t * %lld;", nk);
        kline(k, "float *wr = fu_w + t * %lld, m = -INFINITY, s = 0.0f;", nk);
        kline(k, "for (int64_t e = 0; e < %s; ++e)", E);
        kline(k, "    m = lr[e] != lr[e] || lr[e] > m ? lr[e] : m;");
        kline(k, "for (int64_t e = 0; e < %s; ++e)", E);
        kline(k, "    s += fu_p[e] = m == -INFINITY ? 0.0f : expf(lr[e] - m);");
        kline(k, "int64_t cnt = 0;");
        kline(k, "for (int64_t e = 0; e < %s; ++e) {", E);
        k->indent++;
        kline(k, "float v = fu_p[e] = m == -INFINITY ? 0.0f : fu_p[e] / s;");
        emit_topk_insert(k, "fu_p", "ir", "e", nk);
        k->indent--;
        kline(k, "}");
        kline(k, "float ws = 0.0f;");
        kline(k, "for (int64_t j = 0; j < %lld; ++j)", nk);
        kline(k, "    ws += wr[j] = fu_p[ir[j]];");
        if (n->i[1]) {
            kline(k, "for (int64_t j = 0; j < %lld; ++j)", nk);
            kline(k, "    wr[j] /= ws;");
        } else {
            kline(k, "(void)ws;");
        }
        k->indent--;
        kline(k, "}");
        ids = "fu_id";
    } else {
        check_ids(k, n, ids, TK, E);
        kline(k, "const int32_t *fu_id = %s;", ids);
    }
    (void)K;
    kline(k, "memset(fu_st, 0, (size_t)(%s + 1) * sizeof *fu_st);", E);
    kline(k, "for (int64_t q = 0; q < %s; ++q)", TK);
    kline(k, "    if (fu_id[q] >= 0 && fu_id[q] < %s)", E);
    kline(k, "        fu_st[fu_id[q] + 1]++;");
    kline(k, "for (int64_t e = 0; e < %s; ++e)", E);
    kline(k, "    fu_st[e + 1] += fu_st[e];");
    kline(k, "for (int64_t q = 0; q < %s; ++q)", TK);
    kline(k, "    if (fu_id[q] >= 0 && fu_id[q] < %s)", E);
    kline(k, "        fu_ord[fu_st[fu_id[q]]++] = (int32_t)q;");
    kline(k, "for (int64_t e = %s; e > 0; --e)", E);
    kline(k, "    fu_st[e] = fu_st[e - 1];");
    kline(k, "fu_st[0] = 0;");
}

/*
 * The experts' products, per expert a register-tiled GEMM of the tokens
 * routed to it (c of them, read through fu_ord: no gather) against the
 * expert's weight rows, stored as they are ([rows, depth], f32 or a typed
 * row that typed.c's loads read in place).  The tile is MR tokens x NW
 * weight rows, each of the MR * NW sums a vector accumulator over the
 * depth (one weight vector and one token vector loaded per MR * NW / (MR +
 * NW) FMAs), reduced at the end; the NW rows stay in L1 while every block
 * of the expert's tokens streams past them, so each weight row is read
 * from memory once per call.  NW and MR fill the target's registers (a
 * token vector at a time):
 *   AVX-512, NEON (32)  NW 4 x MR 6: 24 accumulators + 4 weights + 1
 *   AVX2 (16)           NW 2 x MR 6: 12 + 2 + 1
 *   generic             NW 2 x MR 4 (floats the compiler keeps in registers)
 * Blocks at the edges are smaller (MR, MR/2, .., 1 tokens; NW, NW/2, ..,
 * 1 rows): decode (one token per expert) is a GEMV over the experts' rows
 * with NW independent accumulators.  Every sum is the same lane-by-lane
 * sequence whatever the block it falls in, so the results depend neither
 * on the blocking nor on the thread split.
 */
#define MOE_NW_MAX 4
#define MOE_MR_MAX 8

typedef struct MoeTile {
    int nw, nt;
    const char *w[MOE_NW_MAX], *a[MOE_MR_MAX];
    DType wt;           /* the weights' stored type */
} MoeTile;

static void moe_tile_step(Kern *k, void *ctx, bool tail) {
    MoeTile *c = ctx;
    const Target *t = kT(k);
    const char *vt = v_type(t);
    for (int w = 0; w < c->nw; w++)
        kline(k, "const %s fu_wv%d = %s;", vt, w,
              tail ? ty_load_n(t, kW(k), c->wt, c->w[w], "fu_j", "fu_m") : ty_load(t, kW(k), c->wt, c->w[w], "fu_j"));
    for (int j = 0; j < c->nt; j++) {
        kline(k, "const %s fu_av%d = %s;", vt, j, vld(k, fu_format("%s + fu_j", c->a[j]), tail, NULL));
        for (int w = 0; w < c->nw; w++) {
            const char *acc = fu_format("fu_m%d_%d", w, j);
            kline(k, "%s = %s;", acc, v_fma(t, fu_format("fu_wv%d", w), fu_format("fu_av%d", j), acc));
        }
    }
}

/* The register tile's shape on this target (see above). */
static void moe_tile_shape(const Kern *k, int *nw, int *mr) {
    const Target *t = kT(k);
    *nw = t->nregs >= 32 ? 4 : 2;
    *mr = kW(k) == 1 ? 4 : (t->nregs - 1 - *nw) / *nw;
    if (*mr > 6)
        *mr = 6;
}

/* One tile: the pairs p .. p + nt - 1 of the expert's list (oe), q<j>, and
 * the rows of `base` (a [.., len] f32 tensor) they read at q<j> / div; the
 * weight rows wr<w>.  Leaves the sums in floats fu_s<w>_<j>. */
static void moe_tile(Kern *k, MoeTile *c, const char *base, const char *div, const char *len) {
    const Target *t = kT(k);
    for (int j = 0; j < c->nt; j++) {
        kline(k, "const int64_t q%d = oe[p + %d];", j, j);
        c->a[j] = fu_format("r%d", j);
        kline(k, "const float *r%d = %s + %s * %s;", j, base,
              strcmp(div, "1") == 0 ? fu_format("q%d", j) : fu_format("(q%d / %s)", j, div), len);
    }
    for (int w = 0; w < c->nw; w++)
        for (int j = 0; j < c->nt; j++)
            kline(k, "%s fu_m%d_%d = %s;", v_type(t), w, j, v_zero(t));
    kline(k, "int64_t fu_j = 0;");
    vloop(k, "fu_j", len, moe_tile_step, c);
    for (int w = 0; w < c->nw; w++)
        for (int j = 0; j < c->nt; j++)
            kline(k, "const float fu_s%d_%d = %s;", w, j, v_hsum(t, fu_format("fu_m%d_%d", w, j)));
}

/* What a tile does with its sums: the rows' first index is `i` (moe_up:
 * the tile's nw weight rows are the gate rows i.. then the up rows i..). */
typedef void (*MoeStore)(Kern *k, const Node *n, const MoeTile *c);

/* for the rows [i, i1) in blocks of nw, nw / 2, .., 1 (rows per block `per`
 * weight rows: moe_up's gate and up rows are 2 per row), each for the
 * expert's c pairs in blocks of mr, mr / 2, .., 1: a tile, then store. */
static void moe_blocks(Kern *k, const Node *n, int nw, int mr, int per, const char *w, const char *wrow,
                       const char *base, const char *div, const char *len, MoeStore store) {
    const char *ct = ctype(n->in[2]), *RU = ty_row_units(n->in[2]->dtype, len);
    for (int r = nw / per; r >= 1; r /= 2) {
        kline(k, "for (; i + %d <= i1; i += %d) {", r, r);
        k->indent++;
        for (int x = 0; x < r * per; x++)
            kline(k, "const %s *wr%d = %s + (%s + %d) * %s;", ct, x, w,
                  per == 2 && x >= r ? fu_format("%s + %s", wrow, kdim(k, n, 2)) : wrow, x % r, RU);
        kline(k, "int64_t p = 0;");
        for (int nt = mr; nt >= 1; nt /= 2) {
            kline(k, "for (; p + %d <= c; p += %d) {", nt, nt);
            k->indent++;
            MoeTile c = {r * per, nt, {NULL}, {NULL}, n->in[2]->dtype};
            for (int x = 0; x < r * per; x++)
                c.w[x] = fu_format("wr%d", x);
            moe_tile(k, &c, base, div, len);
            store(k, n, &c);
            k->indent--;
            kline(k, "}");
        }
        k->indent--;
        kline(k, "}");
    }
}

/* h[q, i + r] = silu(g) * u (times the routing weight). */
static void moe_up_store(Kern *k, const Node *n, const MoeTile *c) {
    const char *h = kout(k, n, "h"), *I = kdim(k, n, 2);
    int r = c->nw / 2;
    for (int w = 0; w < r; w++)
        for (int j = 0; j < c->nt; j++)
            kline(k, "%s[q%d * %s + i + %d] = %sfu_s%d_%d / (1.0f + expf(-fu_s%d_%d)) * fu_s%d_%d;", h, j, I, w,
                  n->in[1]->dtype == DT_F32 ? fu_format("fu_w[q%d] * ", j) : "", w, j, w, j, w + r, j);
}

/* y[t, i + r] += the sum, t = q / K. */
static void moe_down_store(Kern *k, const Node *n, const MoeTile *c) {
    const char *y = kout(k, n, "y"), *K = kdim(k, n->in[0], 1), *D = kdim(k, n, 1);
    for (int j = 0; j < c->nt; j++)
        for (int w = 0; w < c->nw; w++)
            kline(k, "%s[q%d / %s * %s + i + %d] += fu_s%d_%d;", y, j, K, D, w, w, j);
}

/* h[q, i] = silu(gate_i . x[t]) * (up_i . x[t]) (times the routing weight)
 * for the pairs q = t*K + k.  The work, T*K*I (expert, row, pair) units in
 * expert order, is split evenly over the threads, and each expert row goes
 * to the thread whose share holds the row's first unit: balanced however
 * the tokens spread over the experts. */
static void k_moe_up(Kern *k, const Node *n) {
    const Node *wn = n->in[2];
    const char *x = kin(k, n, 0, "x"), *gu = kin(k, n, 2, "gu");
    const char *TK = knumel(k, n, 0, 2), *K = kdim(k, n, 1), *I = kdim(k, n, 2), *D = kdim(k, n->in[0], 1);
    const char *E = kdim(k, wn, 0);
    int nw, mr;
    moe_tile_shape(k, &nw, &mr);
    (void)kout(k, n, "h");
    moe_group(k, n, TK, K, E);
    kline(k, "int64_t u0, u1, base = 0;");
    kline(k, "fr_split(%s, tid, nth, &u0, &u1);", bare(mul(TK, I)));
    kline(k, "for (int64_t e = 0; e < %s && base < u1; ++e) {", E);
    k->indent++;
    kline(k, "const int64_t c = fu_st[e + 1] - fu_st[e], span = c * %s;", I);
    kline(k, "if (c == 0 || base + span <= u0) {");
    kline(k, "    base += span;");
    kline(k, "    continue;");
    kline(k, "}");
    kline(k, "const int32_t *oe = fu_ord + fu_st[e];");
    kline(k, "int64_t i = u0 > base ? (u0 - base + c - 1) / c : 0;");
    kline(k, "const int64_t i1 = u1 - base >= span ? %s : (u1 - base + c - 1) / c;", I);
    moe_blocks(k, n, nw, mr, 2, gu, fu_format("e * %s + i", mul("2", I)), x, K, D, moe_up_store);
    kline(k, "base += span;");
    k->indent--;
    kline(k, "}");
}

/* y[t, d] = sum over the pairs (t, k) of down[ids[t, k], d] . h[t, k]: the
 * threads split D; each runs over the selected experts in order, so every
 * y element is summed in expert order whatever the thread count. */
static void k_moe_down(Kern *k, const Node *n) {
    const Node *wn = n->in[2];
    const char *hh = kin(k, n, 0, "h"), *dn = kin(k, n, 2, "dn"), *y = kout(k, n, "y");
    const char *TK = knumel(k, n->in[0], 0, 2), *T = kdim(k, n, 0), *K = kdim(k, n->in[0], 1);
    const char *I = kdim(k, n->in[0], 2), *D = kdim(k, n, 1), *E = kdim(k, wn, 0);
    int nw, mr;
    moe_tile_shape(k, &nw, &mr);
    moe_group(k, n, TK, K, E);
    kline(k, "int64_t d0, d1;");
    kline(k, "fr_split(%s, tid, nth, &d0, &d1);", bare(D));
    kline(k, "for (int64_t t = 0; t < %s; ++t)", T);
    kline(k, "    for (int64_t d = d0; d < d1; ++d)");
    kline(k, "        %s[t * %s + d] = 0.0f;", y, D);
    kline(k, "for (int64_t e = 0; e < %s; ++e) {", E);
    k->indent++;
    kline(k, "const int64_t c = fu_st[e + 1] - fu_st[e];");
    kline(k, "if (c == 0)");
    kline(k, "    continue;");
    kline(k, "const int32_t *oe = fu_ord + fu_st[e];");
    kline(k, "int64_t i = d0;");
    kline(k, "const int64_t i1 = d1;");
    moe_blocks(k, n, nw, mr, 1, dn, fu_format("e * %s + i", D), hh, "1", I, moe_down_store);
    k->indent--;
    kline(k, "}");
}

/* P + t for t in [0, T). */
static void k_positions(Kern *k, const Node *n) {
    const char *y = kout(k, n, "y"), *T = kdim(k, n, 0);
    const char *P = n->i[0] >= 0 ? dim_c(k->e->g, dim_sym((int)n->i[0]), &k->used) : "0";
    kline(k, "int64_t f, f_end;");
    kline(k, "fu_part(%s, 16, tid, nth, &f, &f_end);", bare(T));
    kline(k, "for (; f < f_end; ++f)");
    kline(k, "    %s[f] = (int32_t)(%s + f);", y, P);
}

/* Tensor parallelism (tp.c): thread 0 sums y = x over the ranks in the
 * runtime (fr_allreduce_sum: MPI, or the identity on one rank) and records
 * a failure in fu_err; then every thread adds its share of the residual. */
static void k_allreduce(Kern *k, const Node *n) {
    const char *x = kin(k, n, 0, "x"), *y = kout(k, n, "y"), *N = knumel(k, n, 0, n->rank);
    const char *r = n->nin == 2 ? kin(k, n, 1, "r") : NULL;
    k->err = true;
    kline(k, "if (tid == 0) {");
    kline(k, "    if ((const void *)%s != (const void *)%s)", y, x);
    kline(k, "        memcpy(%s, %s, (size_t)%s * sizeof *%s);", y, x, bare(N), y);
    kline(k, "    if (fr_allreduce_sum(%s, %s, %lld) != 0 && fu_err[0] < 0)", y, bare(N), (long long)n->i[0]);
    kline(k, "        fu_err[0] = %d;", n->id);
    kline(k, "}");
    if (!r) {
        kline(k, "(void)nth;");
        return;
    }
    kline(k, "fr_barrier(nth);");
    kline(k, "int64_t r0, r1;");
    kline(k, "fr_split(%s, tid, nth, &r0, &r1);", bare(N));
    kline(k, "for (int64_t i = r0; i < r1; ++i)");
    kline(k, "    %s[i] += %s[i];", y, r);
}

static void emit_node_loops(Kern *k, const Node *n) {
    switch (op_info[n->op].cat) {
    case CAT_UNARY: k_unary(k, n); return;
    case CAT_BINARY: k_binary(k, n); return;
    case CAT_REDUCE: k_reduce(k, n); return;
    default: break;
    }
    switch (n->op) {
    case OP_MATMUL: k_matmul(k, n); return;
    case OP_LINEAR: k_linear(k, n); return;
    case OP_TRANSPOSE: k_transpose(k, n); return;
    case OP_SLICE: k_slice(k, n); return;
    case OP_CONCAT: k_concat(k, n); return;
    case OP_RMS_NORM: k_rms_norm(k, n); return;
    case OP_LAYER_NORM: k_layer_norm(k, n); return;
    case OP_SOFTMAX: k_softmax(k, n); return;
    case OP_CAUSAL_MASK: k_causal_mask(k, n); return;
    case OP_ROPE: k_rope(k, n); return;
    case OP_ATTENTION: k_attention(k, n); return;
    case OP_APPEND: k_append(k, n); return;
    case OP_CONVERT: k_convert(k, n); return;
    case OP_CAST: case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE: case OP_WHERE:
        k_select(k, n);
        return;
    case OP_EMBEDDING: k_embedding(k, n); return;
    case OP_GATHER: k_gather(k, n); return;
    case OP_TOPK: k_topk(k, n); return;
    case OP_POSITIONS: k_positions(k, n); return;
    case OP_MOE_UP: k_moe_up(k, n); return;
    case OP_MOE_DOWN: k_moe_down(k, n); return;
    case OP_ALLREDUCE: k_allreduce(k, n); return;
    default: fu_internal(__FILE__, __LINE__, "emit_c: op '%s' has no kernel", op_info[n->op].name);
    }
}

/* ---- buffers ------------------------------------------------------------- */

/* Whether a node is computed by a kernel (everything else is a source, a
 * view or an output copy). */
static bool is_computed(const Node *n) {
    switch (n->op) {
    case OP_INPUT: case OP_WEIGHT: case OP_CONST: case OP_CACHE: case OP_RESHAPE: case OP_OUTPUT:
        return false;
    default:
        return true;
    }
}

/* The node whose memory a view shares. */
static const Node *root(const Emit *e, const Node *n) {
    while (e->home[n->id] == HOME_VIEW)
        n = n->in[0];
    return n;
}

static int index_in(Node *const *list, int n, const Node *x) {
    int i;
    for (i = 0; i < n; i++)
        if (list[i] == x)
            return i;
    FU_UNREACHABLE();
}

/* Decides where every node's data lives and how forward names it. */
static void place_buffers(Emit *e) {
    const Graph *g = e->g;
    int *uses = fu_alloc(sizeof *uses * (size_t)g->nnodes);
    const Node **sole_out = fu_alloc(sizeof *sole_out * (size_t)g->nnodes);
    int i, j;
    e->home = fu_alloc(sizeof *e->home * (size_t)g->nnodes);
    e->ref = fu_alloc(sizeof *e->ref * (size_t)g->nnodes);
    e->slot = fu_alloc(sizeof *e->slot * (size_t)g->nnodes);
    e->needed = fu_alloc(sizeof *e->needed * (size_t)g->nnodes);
    for (i = 0; i < g->nnodes; i++)
        for (j = 0; j < g->nodes[i]->nin; j++) {
            const Node *x = g->nodes[i]->in[j];
            uses[x->id]++;
            if (g->nodes[i]->op == OP_OUTPUT)
                sole_out[x->id] = g->nodes[i];
        }
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        e->slot[i] = -1;
        FU_ASSERT(n->id == i);
        if (n->folded) {
            e->home[i] = HOME_FOLD;
            e->ref[i] = fu_format("w->fu_fold%d", i);
            continue;
        }
        switch (n->op) {
        case OP_INPUT:
            e->home[i] = HOME_INPUT;
            e->ref[i] = e->c_in[index_in(g->inputs, g->ninputs, n)];
            break;
        case OP_WEIGHT:
            e->home[i] = HOME_WEIGHT;
            e->ref[i] = fu_format("w->%s", e->c_w[index_in(g->weights, g->nweights, n)]);
            break;
        case OP_CACHE:
            e->home[i] = HOME_CACHE;
            e->ref[i] = fu_format("cache->%s", e->c_cache[index_in(g->caches, g->ncaches, n)]);
            break;
        case OP_CONST:
            e->home[i] = HOME_CONST;
            e->ref[i] = fu_format("&fu_c%d", i);
            break;
        case OP_RESHAPE:
            e->home[i] = HOME_VIEW;
            e->ref[i] = e->ref[n->in[0]->id];
            break;
        case OP_APPEND:
            if (n->in[0]->op != OP_CACHE)
                fu_internal(__FILE__, __LINE__, "emit_c: append %%%d does not write a cache", i);
            e->home[i] = HOME_VIEW;
            e->ref[i] = e->ref[n->in[0]->id];
            break;
        case OP_OUTPUT:
            e->home[i] = HOME_NONE;
            e->ref[i] = NULL;
            break;
        default:
            /* Computed straight into the caller's buffer when an output is
             * its only consumer: no slot and no copy. */
            if (uses[i] == 1 && sole_out[i]) {
                e->home[i] = HOME_OUTPUT;
                e->ref[i] = e->c_out[index_in(g->outputs, g->noutputs, sole_out[i])];
            } else {
                e->home[i] = HOME_SLOT;
                e->slot[i] = e->nslots++;
                e->ref[i] = fu_format("fu_t%d", i);
            }
            break;
        }
    }
    /* Outputs copy from their producer's memory, constants included. */
    for (i = 0; i < g->noutputs; i++) {
        const Node *x = g->outputs[i]->in[0];
        if (e->home[x->id] != HOME_OUTPUT)
            e->needed[root(e, x)->id] = true;
    }
}

/* Picks the symbol bound: the largest power of two (<= 2^31) at which every
 * tensor still has at most 2^53 elements.  The generated code refuses larger
 * symbols, so its int64 index arithmetic cannot overflow. */
static int pick_sym_max(Emit *e) {
    const Graph *g = e->g;
    int lg, i, d, s;
    for (lg = SYM_MAX_LOG2_HI; lg >= SYM_MAX_LOG2_LO; lg--) {
        double L = ldexp(1.0, lg), total = 0;
        bool ok = true;
        for (i = 0; i < g->nnodes && ok; i++) {
            const Node *n = g->nodes[i];
            double numel = 1;
            for (d = 0; d < n->rank; d++) {
                double v = fabs((double)n->shape[d].c);
                for (s = 0; s < g->nsyms; s++)
                    v += fabs((double)n->shape[d].k[s]) * L;
                numel *= v;
            }
            total += numel;
            ok = numel <= NUMEL_LIMIT && total <= NUMEL_LIMIT;
        }
        if (ok) {
            e->sym_max = (int64_t)1 << lg;
            return 0;
        }
    }
    /* Name the first tensor too large even at the smallest bound, where the
     * user wrote it, so a huge declared dim is found without a search. */
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        double numel = 1, L = ldexp(1.0, SYM_MAX_LOG2_LO);
        for (d = 0; d < n->rank; d++) {
            double v = fabs((double)n->shape[d].c);
            for (s = 0; s < g->nsyms; s++)
                v += fabs((double)n->shape[d].k[s]) * L;
            numel *= v;
        }
        if (numel > NUMEL_LIMIT && n->loc.file) {
            Buf b = {0};
            ir_type_str(&b, n, g);
            diag_error(n->loc, "%s%s%s is too large: %s has more than 2^53 elements",
                       n->name || n->label ? "'" : "", n->name ? n->name : n->label ? n->label : "this tensor",
                       n->name || n->label ? "'" : "", b.data);
            free(b.data);
            return -1;
        }
    }
    diag_plain_error("block '%s' is too large: its tensors have more than 2^53 elements in all", g->name);
    return -1;
}

/* ---- the .c file ------------------------------------------------------------ */

/* The nodes of a kernel that compute something (its output nodes are
 * copies forward makes at the end, or nothing at all). */
static int kernel_work(const Kernel *kr, const Node **work) {
    int n = 0;
    for (int i = 0; i < kr->nnodes; i++)
        if (is_computed(kr->nodes[i]))
            work[n++] = kr->nodes[i];
    return n;
}

/* k<first node id>_<op>[_<op>...]: "k13_rms_norm". */
static const char *kernel_name(const Node *const *work, int nwork) {
    Buf b = {0};
    buf_printf(&b, "k%d", work[0]->id);
    for (int i = 0; i < nwork && i < 4; i++)
        buf_printf(&b, "_%s", op_info[work[i]->op].name);
    return take(&b, "");
}

/* A parameter declaration: "const float *x", "float *y". */
static const char *param_decl(const KParam *p) {
    return fu_format("%s%s *%s", p->written ? "" : "const ", ctype(p->node), p->name);
}

/* A kernel's call in a run function, with the memory it reads and writes
 * (its parameters' roots), which decides where barriers go. */
typedef struct KCall {
    const char *call;
    int np;
    int *root;
    bool *written;
    const char *scratch;    /* its per-thread scratch bytes (kern_scratch), or NULL */
    const char *bcall;      /* the call on sequence fu_s of a batch (rows from fu_r0) */
    int bclass;             /* in a batch: 0 once over every token, 1 per sequence,
                             * 2 a last-rows slice per sequence, 3 once over the
                             * sequences' last rows (rcall) */
    const char *rcall;      /* class 3: the call over the nseq * len last rows */
    unsigned used;          /* the symbols it takes */
    BAtt att;               /* batch attention: its items; bcall ends in ", fu_bw);" */
} KCall;

/* The kernels written so far, each by its canonical text (same_kernel). */
typedef struct KSeen {
    uint64_t hash;
    char *text;
    char *name;
} KSeen;

/* A kernel's text with its parameters renamed by position (fu_p0, fu_p1,
 * ...), the node ids its locals' names end in numbered by first appearance
 * and its comments left out, its parameters' types, the symbols it
 * takes and its scratch: two kernels with the same text compute the same
 * function of their arguments. */
static char *kernel_text(const Emit *e, const Kern *k, const Kernel *kr) {
    Buf b = {0};
    StrMap *pos = strmap_new();
    buf_printf(&b, "%s|%u|%d|%s|", e->suffix, k->used, (int)k->err, k->scratch ? k->scratch : "");
    for (int i = 0; i < k->np; i++) {
        buf_printf(&b, "%s,", param_decl(&(KParam){k->p[i].node, "", k->p[i].written}));
        strmap_put(pos, k->p[i].name, (void *)(intptr_t)(i + 1));
    }
    buf_puts(&b, "|");
    /* the kernel's nodes and its parameters' nodes, whose ids its locals'
     * names end in (fu_e17): numbered by first appearance */
    int nn = e->g->nnodes, next = 0;
    int *ord = fu_alloc(sizeof *ord * (size_t)(nn + 1));
    for (int i = 0; i < kr->nnodes; i++)
        ord[kr->nodes[i]->id] = -1;
    for (int i = 0; i < k->np; i++)
        ord[k->p[i].node->id] = -1;
    const char *t = k->body.data ? k->body.data : "";
    while (*t) {
        const char *q = t;
        if (isalpha((unsigned char)*t) || *t == '_') {
            while (isalnum((unsigned char)*q) || *q == '_')
                q++;
            const char *id = fu_strndup(t, (size_t)(q - t));
            intptr_t at = (intptr_t)strmap_get(pos, id);
            const char *d = q;
            while (d > t && isdigit((unsigned char)d[-1]))
                d--;
            long v = d < q && q - d < 9 ? strtol(d, NULL, 10) : -1;
            /* not the helpers fu_exp_avx512, fu_max_u64, ... */
            bool local = strncmp(id, "fu_", 3) == 0 && d > t && (isalpha((unsigned char)d[-1]) || d[-1] == '_') &&
                         !(d - t >= 3 && strncmp(d - 3, "avx", 3) == 0) && !(d[-1] == 'u' && d[-2] == '_');
            if (at) {
                buf_printf(&b, "fu_p%d", (int)at - 1);
            } else if (local && v >= 0 && v < nn && ord[v]) {
                if (ord[v] < 0)
                    ord[v] = ++next;
                buf_printf(&b, "%.*s#%d", (int)(d - t), t, ord[v]);
            } else {
                buf_puts(&b, id);
            }
        } else if (isdigit((unsigned char)*t)) {
            while (isalnum((unsigned char)*q) || *q == '_' || *q == '.')
                q++;
            buf_printf(&b, "%.*s", (int)(q - t), t);
        } else if (t[0] == '/' && t[1] == '*') {      /* comments name node ids: left out */
            q = strstr(t + 2, "*/");
            q = q ? q + 2 : t + strlen(t);
        } else if (*t == '"' || *t == '\'') {         /* literals as they are */
            for (q++; *q && *q != *t; q++)
                if (*q == '\\' && q[1])
                    q++;
            if (*q)
                q++;
            buf_printf(&b, "%.*s", (int)(q - t), t);
        } else {
            buf_printf(&b, "%c", *q++);
        }
        t = q;
    }
    return b.data;      /* malloc'd by the Buf */
}

/* The name of an earlier kernel with k's text, or NULL (then k is noted
 * under name). */
static const char *same_kernel(Emit *e, const Kern *k, const Kernel *kr, const char *name) {
    /* FUSEC_SHARE_KERNELS=0 writes every kernel (tests/cli: the spool of a
     * large block's distinct kernels) */
    const char *share = getenv("FUSEC_SHARE_KERNELS");
    if (share && strcmp(share, "0") == 0)
        return NULL;
    char *text = kernel_text(e, k, kr);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *c = text; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
    for (int i = 0; i < e->nseen; i++)
        if (e->seen[i].hash == h && strcmp(e->seen[i].text, text) == 0) {
            free(text);
            return fu_strdup(e->seen[i].name);
        }
    if (e->nseen == e->capseen) {
        e->capseen = e->capseen ? 2 * e->capseen : 16;
        e->seen = realloc(e->seen, sizeof *e->seen * (size_t)e->capseen);
        if (!e->seen)
            fu_internal(__FILE__, __LINE__, "out of memory");
    }
    char *nm = malloc(strlen(name) + 1);
    if (!nm)
        fu_internal(__FILE__, __LINE__, "out of memory");
    strcpy(nm, name);
    e->seen[e->nseen++] = (KSeen){h, text, nm};
    return NULL;
}

/* Emits one kernel's function for the current variant and returns its
 * call, or NULL for a kernel with nothing to compute.  KK_SINGLE kernels are
 * written here; the fused kinds are written by their emitters when those
 * exist, else node by node (correct, only unfused), with a barrier between
 * the nodes since each splits its work its own way. */
/* ---- batches of sequences (NAME_forward_batch) ------------------------------- */

/*
 * forward_batch runs several independent sequences, each with its own caches,
 * P_s cached rows and T_s new tokens, in one call: their tokens are packed
 * into [sum T_s, ...] inputs and outputs, the kernels that treat every token
 * alike (norms, linear layers, RoPE, the MLP) run once over all of them, and
 * the kernels that depend on a sequence (append, attention, positions) run
 * once per sequence on its rows and its caches, with its own T and P.  A
 * last-rows slice (the logits of the last position) and everything computed
 * from it run per sequence too, giving one row (len rows) per sequence.
 */

/* A dim's token multiple: 0 constant, c > 0 for c * T (the token symbol
 * alone), -1 anything else (P, P + T, T + 1). */
static int64_t batch_dim(const Emit *e, Dim d) {
    if (dim_is_const(d))
        return 0;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        if (s != e->btok && d.k[s])
            return -1;
    return d.c == 0 && d.k[e->btok] > 0 ? d.k[e->btok] : -1;
}

/* Elements per token of a node whose first axis is c * T; 0 without one. */
static int64_t batch_row(const Emit *e, const Node *n) {
    int64_t c = n->rank ? batch_dim(e, n->shape[0]) : 0;
    for (int d = 1; d < n->rank && c > 0; d++)
        c *= n->shape[d].c;
    return c > 0 ? c : 0;
}

static bool batch_seq_op(Op op) {
    return op == OP_ATTENTION || op == OP_APPEND || op == OP_POSITIONS || op == OP_CAUSAL_MASK;
}

static const char *batch_what(const Node *n) {
    while (n->op == OP_RESHAPE && !n->label)
        n = n->in[0];
    return n->name ? fu_format("'%s'", n->name)
                   : n->label ? fu_format("'%s'", n->label) : fu_format("%s %%%d", op_info[n->op].name, n->id);
}

/* Whether the block can run batches: NULL, or why not.  Every tensor must
 * count tokens on its first axis only (c * T rows, or none), no op may mix
 * the rows of different tokens except the per-sequence ones (append,
 * attention, positions) and a last-rows slice, after which nothing may meet
 * the tokens again. */
static const char *batch_plan(Emit *e) {
    const Graph *g = e->g;
    int s, i, j, d;
    e->btail = fu_alloc(sizeof *e->btail * (size_t)(g->nnodes + 1));
    e->bslice = fu_alloc(sizeof *e->bslice * (size_t)(g->nnodes + 1));
    e->btok = -1;
    if (g->nsyms != (g->ncaches ? 2 : 1))
        return g->ncaches ? "it needs exactly two symbols, the new tokens and the cached rows (dim T, P)"
                          : "it needs exactly one symbol, the new tokens (dim T)";
    for (s = 0; s < g->nsyms; s++)
        if (!g->ncaches || s != g->cache_sym)
            e->btok = s;
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        bool tail = false, tok_in = false, tok;
        if (n->op == OP_CACHE || n->op == OP_APPEND || n->op == OP_WEIGHT || n->op == OP_CONST || n->folded)
            continue;
        for (j = 0; j < n->nin; j++) {
            tail |= e->btail[n->in[j]->id];
            tok_in |= batch_row(e, n->in[j]) > 0;
        }
        for (d = 1; d < n->rank; d++)
            if (!dim_is_const(n->shape[d]))
                return fu_format("%s has a symbolic dim on axis %d (only the first axis may count tokens)",
                                 batch_what(n), d);
        if (n->rank && batch_dim(e, n->shape[0]) < 0)
            return fu_format("%s has %s rows, not a multiple of %s", batch_what(n), dim_c(g, n->shape[0], NULL),
                             g->sym_names[e->btok]);
        tok = batch_row(e, n) > 0;
        if (n->op == OP_OUTPUT) {
            if (!tok && !tail)
                return fu_format("output '%s' has no token axis", n->name);
            if (tail && e->home[n->in[0]->id] != HOME_OUTPUT)
                return fu_format("output '%s' (last rows) is not computed in place", n->name);
            e->btail[i] = tail;
            continue;
        }
        if (n->op == OP_SLICE && n->i[0] == 0 && n->i[1] < 0 && tok_in && !tail) {
            e->btail[i] = e->bslice[i] = true;
            continue;
        }
        if ((n->op == OP_SLICE || n->op == OP_CONCAT) && n->i[0] == 0 && tok)
            return fu_format("%s: '%s' on the token axis", batch_what(n), op_info[n->op].name);
        if (tail && (tok || batch_seq_op(n->op)))
            return fu_format("%s: '%s' meets the tokens after a last-rows slice", batch_what(n),
                             op_info[n->op].name);
        if (tok_in && !tok && !tail)
            return fu_format("%s: '%s' reduces over the tokens", batch_what(n), op_info[n->op].name);
        e->btail[i] = tail;
    }
    return NULL;
}

/* A kernel's argument on sequence fu_s: its caches, its rows (from row
 * fu_r0 of the packed tokens), its last rows (row fu_s * len). */
static const char *batch_arg(const Emit *e, const Node *n, const Node *r) {
    const char *ref = e->ref[n->id];
    int64_t row;
    if (e->batch_no || e->rows_pass)
        return ref;
    if (e->home[r->id] == HOME_CACHE)
        return fu_format("fb->caches[fu_s]->%s", ref + strlen("cache->"));
    if (e->btail[r->id] && e->home[r->id] == HOME_SLOT)
        ref = fu_format("fu_bt%d", r->id);
    if (e->btail[n->id])
        return fu_format("(%s + fu_s * %lld)", ref, (long long)ir_numel(n, NULL));
    row = batch_row(e, n);
    return row > 0 ? fu_format("(%s + fu_r0 * %lld)", ref, (long long)row) : ref;
}

/* KCall.bclass of a kernel. */
static int batch_class(const Emit *e, const Kernel *kr, const Kern *k) {
    const Graph *g = e->g;
    int cls = 0, i;
    if (e->batch_no || e->rows_pass)
        return 0;
    for (i = 0; i < kr->nnodes; i++)
        if (e->bslice[kr->nodes[i]->id])
            return 2;
    for (i = 0; i < kr->nnodes; i++) {
        if (e->btail[kr->nodes[i]->id])
            return 3;
        if (batch_seq_op(kr->nodes[i]->op))
            cls = 1;
    }
    for (i = 0; i < k->np; i++)
        if (e->home[root(e, k->p[i].node)->id] == HOME_CACHE)
            cls = 1;
    if (g->ncaches && (k->used & (1u << g->cache_sym)))
        cls = 1;
    return cls;
}

static KCall *emit_kernel(Emit *e, const Kernel *kr) {
    const Graph *g = e->g;
    Kern *k = fu_alloc(sizeof *k);
    const Node **work = fu_alloc(sizeof *work * (size_t)(kr->nnodes + 1));
    int nwork = kernel_work(kr, work), i, s;
    if (nwork == 0)
        return NULL;
    const char *name = fu_format("%s%s", kernel_name(work, nwork), e->suffix);
    Buf call = {0};
    k->e = e;
    k->multi = nwork > 1;
    k->indent = 1;
    /* Matrix multiplies, and the kinds built around them: emit_gemm.c. */
    char why[256];
    bool gemm = kr->kind == KK_GEMM || kr->kind == KK_MLP ||
                (nwork == 1 && (work[0]->op == OP_LINEAR || work[0]->op == OP_MATMUL) &&
                 emit_gemm_supports(kr, why, sizeof why));  /* q8_0/q4_0 too, with a constant K */
    if (gemm)
        emit_gemm_kernel(k, kr);
    /* The other fused kinds: emit_fused.c. */
    bool fused = kr->kind == KK_ELEMWISE || kr->kind == KK_ROWWISE || kr->kind == KK_ATTENTION;
    if (fused)
        emit_fused_kernel(k, kr);
    for (i = 0; i < nwork && !gemm && !fused; i++) {
        const Node *n = work[i];
        if (k->multi) {
            if (i > 0)
                kline(k, "fr_barrier(nth);");
            kline(k, "{ /* %%%d %s */", n->id, op_info[n->op].name);
            k->indent++;
        }
        emit_node_loops(k, n);
        if (k->multi) {
            k->indent--;
            kline(k, "}");
        }
    }

    /* A kernel whose text is an earlier one's but for its buffers (the
     * layers of a `repeat`) is not written again: its call uses that one. */
    const char *same = same_kernel(e, k, kr, name);
    if (same)
        name = same;

    /* Comment: what it computes, then the shape of every parameter. */
    buf_printf(&e->c, "/* ");
    for (i = 0; i < nwork; i++) {
        const Node *n = work[i];
        buf_printf(&e->c, "%s%%%d = %s(", i ? "\n * " : "", n->id, op_info[n->op].name);
        for (int j = 0; j < n->nin; j++)
            buf_printf(&e->c, "%s%%%d", j ? ", " : "", n->in[j]->id);
        buf_printf(&e->c, ") : %s", type_text(g, n));
        if (n->label)
            buf_printf(&e->c, "   # %s", n->label);
    }
    for (i = 0; i < k->np; i++)
        buf_printf(&e->c, "\n *   %s: %s%s", k->p[i].name, type_text(g, k->p[i].node),
                   k->p[i].node->name ? fu_format(" (%s)", k->p[i].node->name) : "");
    if (same)
        buf_printf(&e->c, "\n * computed by %s, the same code", same);
    buf_puts(&e->c, " */\n");
    Buf *text = &e->c;
    Buf discard = {0};
    if (same)
        text = &discard;

    KCall *kc = fu_alloc(sizeof *kc);
    Buf bcall = {0};
    kc->np = k->np;
    kc->root = fu_alloc(sizeof *kc->root * (size_t)(k->np + 1));
    kc->written = fu_alloc(sizeof *kc->written * (size_t)(k->np + 1));
    buf_printf(text, "static %svoid %s(int tid, int nth", v_attr(e->vt), name);
    buf_printf(&call, "%s(tid, nth", name);
    buf_printf(&bcall, "%s(tid, nth", name);
    for (i = 0; i < k->np; i++) {
        const Node *r = root(e, k->p[i].node);
        e->run_used[r->id] = true;
        kc->root[i] = r->id;
        kc->written[i] = k->p[i].written;
        buf_printf(text, ", %s", param_decl(&k->p[i]));
        buf_printf(&call, ", %s", e->ref[k->p[i].node->id]);
        buf_printf(&bcall, ", %s", batch_arg(e, k->p[i].node, r));
    }
    for (s = 0; s < g->nsyms; s++)
        if (k->used & (1u << s)) {
            buf_printf(text, ", int64_t %s", g->sym_names[s]);
            buf_printf(&call, ", %s", e->rows_pass && s == e->btok ? "fb->nseq" : g->sym_names[s]);
            buf_printf(&bcall, ", fb->%s[fu_s]", s == e->btok ? "tok" : "past");
        }
    if (k->err) {
        buf_puts(text, ", int64_t *fu_err");
        buf_puts(&call, ", fa->err");
        buf_puts(&bcall, ", fa->err");
        e->has_err = true;
    }
    if (k->att.on) {
        buf_puts(text, ", int64_t fu_bw");
        buf_puts(&call, ", -1");
        buf_puts(&bcall, ", fu_bw");
        kc->att = k->att;
    }
    kc->used = k->used;
    kc->bclass = batch_class(e, kr, k);
    e->run_syms |= k->used;
    kc->scratch = k->scratch;
    buf_puts(text, ") {\n");
    if (k->body.len)
        buf_puts(text, k->body.data);
    buf_puts(text, "}\n\n");
    free(k->body.data);
    free(discard.data);
    buf_puts(&call, ");");
    buf_puts(&bcall, ");");
    kc->call = take(&call, "");
    kc->bcall = take(&bcall, "");
    return kc;
}

/* The symbol list of a prototype: "int64_t T, int64_t P", or "" */
static const char *sym_params(const Graph *g) {
    Buf b = {0};
    int s;
    for (s = 0; s < g->nsyms; s++)
        buf_printf(&b, "%sint64_t %s", s ? ", " : "", g->sym_names[s]);
    return take(&b, "");
}

/* "T, P" followed by `tail`, or "" when there are no symbols. */
static const char *sym_list(const Graph *g, const char *tail) {
    Buf b = {0};
    int s;
    for (s = 0; s < g->nsyms; s++)
        buf_printf(&b, "%s%s", s ? ", " : "", g->sym_names[s]);
    if (g->nsyms)
        buf_puts(&b, tail);
    return take(&b, "");
}

static const char *sym_args(const Graph *g, const char *fmt_each) {
    Buf b = {0};
    int s;
    for (s = 0; s < g->nsyms; s++) {
        if (s)
            buf_puts(&b, ", ");
        buf_printf(&b, fmt_each, s);
    }
    return take(&b, "");
}

/* Dims that could be negative for valid symbols (a negative coefficient
 * or constant), to be checked at run time. */
static bool dim_may_be_negative(Dim d) {
    int s;
    if (d.c < 0)
        return true;
    for (s = 0; s < FU_MAX_SYMS; s++)
        if (d.k[s] < 0)
            return true;
    return false;
}

/* ---- workspace planning ------------------------------------------------------ */

/* Records which kernels of a variant name which slot (through the roots of
 * their parameters); an output copied at the end of forward lives to the end. */
static void note_lifetimes(Emit *e, KCall **calls) {
    const Graph *g = e->g;
    for (int kid = 0; kid < g->nkernels; kid++) {
        const KCall *kc = calls[kid];
        for (int i = 0; kc && i < kc->np; i++) {
            int r = kc->root[i];
            if (e->home[r] != HOME_SLOT)
                continue;
            e->first[r] = kid < e->first[r] ? kid : e->first[r];
            e->last[r] = kid > e->last[r] ? kid : e->last[r];
        }
    }
    for (int i = 0; i < g->nnodes; i++)
        if (e->home[i] == HOME_SLOT && e->needed[i])
            e->last[i] = INT_MAX;
}

/* A node's element count with every symbol at 1024: only to rank sizes. */
static double rank_numel(const Graph *g, const Node *n) {
    double v = 1;
    for (int d = 0; d < n->rank; d++) {
        double x = (double)n->shape[d].c;
        for (int s = 0; s < g->nsyms; s++)
            x += 1024.0 * n->shape[d].k[s];
        v *= x > 1 ? x : 1;
    }
    return v;
}

/*
 * Gives every slot that some kernel names (or forward copies to an output)
 * a storage, and drops the others: an intermediate that a fused kernel
 * keeps in registers or cache has no memory.  Two slots share a storage
 * when the kernels that name them do not overlap (the later one's first
 * kernel comes after the earlier one's last: a kernel never reads and
 * writes the same memory through two names).  Slots are taken in order of
 * their first kernel; each goes to the free storage its size fits best
 * (sizes compared with every symbol at 1024, which only steers the choice:
 * fu_layout sizes each storage by the largest member for the actual
 * symbols).  Slots are renumbered densely.
 */
static void plan_storage(Emit *e) {
    const Graph *g = e->g;
    int n = g->nnodes, nlive = 0;
    int *order = fu_alloc(sizeof *order * (size_t)(n + 1));
    int *store_last = fu_alloc(sizeof *store_last * (size_t)(n + 1));
    double *store_size = fu_alloc(sizeof *store_size * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        if (e->home[i] == HOME_SLOT && e->first[i] != INT_MAX)
            order[nlive++] = i;
        else
            e->slot[i] = -1;
    /* insertion sort by (first kernel, node id): deterministic */
    for (int a = 1; a < nlive; a++)
        for (int b = a; b > 0 && e->first[order[b - 1]] > e->first[order[b]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    e->store = fu_alloc(sizeof *e->store * (size_t)(nlive + 1));
    e->nstores = 0;
    for (int a = 0; a < nlive; a++) {
        int i = order[a], best = -1;
        const Node *x = g->nodes[i];
        double sz = rank_numel(g, x);
        for (int s = 0; s < e->nstores; s++) {
            if (store_last[s] >= e->first[i])
                continue;
            /* a storage it fits, the smallest; else the largest */
            bool fits = store_size[s] >= sz;
            if (best < 0) {
                best = s;
                continue;
            }
            bool best_fits = store_size[best] >= sz;
            if (fits ? !best_fits || store_size[s] < store_size[best] : !best_fits && store_size[s] > store_size[best])
                best = s;
        }
        if (best < 0) {
            best = e->nstores++;
            store_size[best] = 0;
        }
        store_size[best] = sz > store_size[best] ? sz : store_size[best];
        store_last[best] = e->last[i];
        e->slot[i] = a;
        e->store[a] = best;
    }
    e->nslots = nlive;
}

/* The memory a kernel parameter's root stands for, as an index into the
 * barrier bookkeeping of emit_run: slots that share a storage are one. */
static int mem_key(const Emit *e, int root) {
    if (e->home[root] == HOME_SLOT && e->slot[root] >= 0)
        return e->g->nnodes + e->store[e->slot[root]];
    return root;
}

/* Storage s's size for the actual symbols: the largest of its members'
 * slot sizes, e.g. "fu_max_u64(fu_slot(T * 64), fu_slot(T * 704))";
 * *uses_max when it needs fu_max_u64. */
static const char *store_size_c(const Emit *e, int s, bool *uses_max) {
    const Graph *g = e->g;
    const char **sizes = fu_alloc(sizeof *sizes * (size_t)g->nnodes);
    int nsizes = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (e->slot[i] < 0 || e->store[e->slot[i]] != s)
            continue;
        const char *sz = fu_format("fu_slot(%s)", bare(numel_c(g, n->shape, 0, n->rank, NULL)));
        bool dup = false;
        for (int d = 0; d < nsizes; d++)
            dup |= strcmp(sizes[d], sz) == 0;
        if (!dup)
            sizes[nsizes++] = sz;
    }
    FU_ASSERT(nsizes > 0);
    *uses_max |= nsizes > 1;
    const char *ex = sizes[0];
    for (int d = 1; d < nsizes; d++)
        ex = fu_format("fu_max_u64(%s, %s)", ex, sizes[d]);
    return ex;
}

static void emit_layout(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int s, i, d;
    Buf seen = {0};
    const char **store_size = fu_alloc(sizeof *store_size * (size_t)(e->nstores + 1));
    bool any_max = false;
    for (s = 0; s < e->nstores; s++)
        store_size[s] = store_size_c(e, s, &any_max);
    if (e->nslots) {
        buf_puts(c, "/* Rounds a slot up to 64 bytes so every slot stays aligned. */\n");
        buf_puts(c, "static uint64_t fu_slot(int64_t numel) {\n"
                    "    return ((uint64_t)numel * 4u + 63u) & ~(uint64_t)63u;\n}\n\n");
        if (any_max)
            buf_puts(c, "static uint64_t fu_max_u64(uint64_t a, uint64_t b) {\n    return a > b ? a : b;\n}\n\n");
    }
    buf_puts(c, "/*\n * Checks the symbols and places every stored intermediate in the workspace:\n"
                " * intermediates whose kernels do not overlap share a storage (64-byte\n"
                " * aligned, as large as its largest member).  forward and workspace_size\n"
                " * both call this, so they cannot disagree.  Returns 0, or FR_EDIM with\n"
                " * fr_last_error() naming the symbol or dim and its value.\n */\n");
    buf_printf(c, "static int fu_layout(const char *fu_who%s%s, size_t *off, size_t *total) {\n",
               g->nsyms ? ", " : "", sym_params(g));
    buf_puts(c, "    uint64_t at = 0;\n    *total = 0;\n");
    if (e->nslots == 0)
        buf_puts(c, "    (void)off;\n");
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, "    if (%s < %d || %s > FU_SYM_MAX)\n"
                      "        return fr_seterr(NULL, FR_EDIM, \"%%s: %s = %%lld is out of range [%d, %%lld]\",\n"
                      "                         fu_who, (long long)%s, (long long)FU_SYM_MAX);\n",
                   g->sym_names[s], s == g->cache_sym ? 0 : 1, g->sym_names[s], g->sym_names[s],
                   s == g->cache_sym ? 0 : 1, g->sym_names[s]);
    /* Dims like T - 1 could still go negative. */
    for (i = 0; i < g->nnodes; i++)
        for (d = 0; d < g->nodes[i]->rank; d++) {
            Dim dm = g->nodes[i]->shape[d];
            const char *ex, *dc;
            if (!dim_may_be_negative(dm))
                continue;
            dc = dim_c(g, dm, NULL);
            ex = fu_format("    if (%s < 0)\n"
                           "        return fr_seterr(NULL, FR_EDIM, \"%%s: dimension %s = %%lld is negative\", fu_who,\n"
                           "                         (long long)%s);\n", dc, bare(dc), dc);
            if (seen.data && strstr(seen.data, ex))
                continue;
            buf_puts(&seen, ex);
            buf_puts(c, ex);
        }
    take(&seen, "");
    for (s = 0; s < e->nstores; s++) {
        /* storage s: its members' offsets, then its size */
        for (i = 0; i < g->nnodes; i++) {
            const Node *n = g->nodes[i];
            if (e->slot[i] < 0 || e->store[e->slot[i]] != s)
                continue;
            buf_printf(c, "    off[%d] = (size_t)at; /* %%%d %s: %s, kernels %d..%s */\n", e->slot[i], i,
                       n->label ? n->label : op_info[n->op].name, type_text(g, n), e->first[i],
                       e->last[i] == INT_MAX ? "end" : fu_format("%d", e->last[i]));
        }
        buf_printf(c, "    at += %s;\n", store_size[s]);
    }
    buf_puts(c, "    if (at > (uint64_t)SIZE_MAX)\n"
                "        return fr_seterr(NULL, FR_EDIM, \"%s: the workspace would exceed the address space\", fu_who);\n");
    buf_puts(c, "    *total = (size_t)at;\n    return 0;\n}\n\n");
}

/* The forward parameter list, as in the header (with shape comments). */
static const char *forward_params(Emit *e, const char *indent) {
    const Graph *g = e->g;
    Buf b = {0};
    int i, s;
    const char *sep = "";
    if (g->nweights) {
        buf_printf(&b, "%sconst %s_weights *w", sep, g->name);
        sep = fu_format(",\n%s", indent);
    }
    if (g->ncaches) {
        buf_printf(&b, "%s%s_cache *cache", sep, g->name);
        sep = fu_format(",\n%s", indent);
    }
    for (s = 0; s < g->nsyms; s++) {
        buf_printf(&b, "%sint64_t %s", s ? ", " : sep, g->sym_names[s]);
        if (s == g->nsyms - 1)
            sep = fu_format(",\n%s", indent);
    }
    for (i = 0; i < g->ninputs; i++) {
        const Node *n = g->inputs[i];
        buf_printf(&b, "%sconst %s *%s /* %s */", sep, ctype(n), e->c_in[i], type_text(g, n));
        sep = fu_format(",\n%s", indent);
    }
    for (i = 0; i < g->noutputs; i++) {
        const Node *n = g->outputs[i];
        buf_printf(&b, "%s%s *%s /* %s */", sep, ctype(n), e->c_out[i], type_text(g, n));
        sep = fu_format(",\n%s", indent);
    }
    buf_printf(&b, "%svoid *workspace, size_t workspace_bytes", sep);
    return take(&b, "");
}

static const char *ws_params(const Graph *g) {
    return g->nsyms ? sym_params(g) : "void";
}

/* The variant whose features are fewest: what a multi-target block needs at
 * least, for the message when no variant fits. */
static const Target *least_variant(const Target *t) {
    const Target *best = NULL;
    int nb = 0;
    for (int i = 0; i < t->nvariants; i++) {
        int n = 0;
        for (unsigned f = t->variants[i]->features; f; f &= f - 1)
            n++;
        if (!best || n < nb) {
            best = t->variants[i];
            nb = n;
        }
    }
    return best;
}

/*
 * Per-thread scratch and the workspace's size.  The kernels' scratch lives in
 * the caller's workspace, after the intermediates: one 64-byte aligned area
 * per thread of the call, so concurrent calls (each with its own workspace)
 * never share one.  Its size per thread may depend on the thread count (a
 * fused MLP splits a fixed budget between the threads), so fu_need says
 * what a call on nth threads needs; workspace_size sizes for the thread
 * count of the moment, and forward runs on as many threads as fit.
 */
static void emit_scratch(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i, s;
    if (!e->nscratch)
        return;
    buf_puts(c, "/* Bytes of per-thread scratch the kernels need on nth threads, a multiple of 64. */\n");
    buf_printf(c, "static size_t fu_scratch(%s%sint nth) {\n    size_t fu_s = 0;\n", sym_params(g),
               g->nsyms ? ", " : "");
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, "    (void)%s;\n", g->sym_names[s]);
    buf_puts(c, "    (void)nth;\n");
    for (i = 0; i < e->nscratch; i++)
        buf_printf(c, "    fu_s = fu_max_size(fu_s, %s);\n", e->scratch[i]);
    buf_puts(c, "    return (fu_s + 63u) & ~(size_t)63u;\n}\n\n");
    buf_puts(c, "/* The workspace a call on nth threads needs: the intermediates (total bytes,\n"
                " * from fu_layout), then each thread's scratch; UINT64_MAX if that overflows. */\n");
    buf_printf(c, "static uint64_t fu_need(size_t total%s%s, int nth) {\n", g->nsyms ? ", " : "", sym_params(g));
    buf_printf(c, "    uint64_t fu_s = fu_scratch(%snth);\n", sym_list(g, ", "));
    buf_puts(c, "    if (fu_s > (UINT64_MAX - total) / (uint64_t)nth)\n        return UINT64_MAX;\n"
                "    return total + fu_s * (uint64_t)nth;\n}\n\n");
}

/* How a message names a node: 'name' (an interface), 'label' (a DSL value) or %id. */
static const char *node_what(const Node *n) {
    while (n->op == OP_RESHAPE && !n->label)
        n = n->in[0];
    if (n->name)
        return fu_format("'%s'", n->name);
    if (n->label)
        return fu_format("'%s'", n->label);
    return fu_format("%%%%%d", n->id);
}

/* ---- folded weight-only values (fold.c) ------------------------------------ */

/* The weights folded nodes read, as indexes into g->weights (src may be
 * NULL); their count. */
static int fold_sources(const Graph *g, int *src) {
    int n = 0;
    for (int i = 0; i < g->nweights; i++) {
        bool used = false;
        for (int j = 0; j < g->nnodes && !used; j++)
            for (int q = 0; q < g->nodes[j]->nin && g->nodes[j]->folded; q++)
                used |= g->nodes[j]->in[q] == g->weights[i];
        if (used && src)
            src[n] = i;
        n += used;
    }
    return n;
}

/* "add(const, self_attn.q_norm.weight)" for the struct's comment. */
static const char *fold_text(const Graph *g, const Node *n) {
    (void)g;
    Buf b = {0};
    buf_printf(&b, "%s(", op_info[n->op].name);
    for (int j = 0; j < n->nin; j++) {
        const Node *x = n->in[j];
        buf_printf(&b, "%s%s", j ? ", " : "",
                   x->op == OP_WEIGHT ? x->name : x->op == OP_CONST ? c_float_lit(x->f[0])
                                                                    : fu_format("fu_fold%d", x->id));
    }
    buf_puts(&b, ")");
    return take(&b, "");
}

/* Operand x of folded n at n's flat index fu_i, numpy broadcasting (all
 * shapes constant). */
static const char *fold_operand(const Emit *e, const Node *n, const Node *x) {
    if (x->op == OP_CONST)
        return c_float_lit(x->f[0]);
    Buf b = {0};
    int lead = n->rank - x->rank;
    int64_t nstride = 1, xstride = 1;
    for (int d = n->rank - 1; d >= 0; d--) {
        int xd = d - lead;
        if (xd >= 0 && x->shape[xd].c != 1) {
            const char *q = nstride > 1 ? fu_format("fu_i / %lld", (long long)nstride) : "fu_i";
            if (d > 0)
                q = fu_format("(%s %% %lld)", q, (long long)n->shape[d].c);
            buf_printf(&b, "%s%s%s", b.len ? " + " : "", q,
                       xstride > 1 ? fu_format(" * %lld", (long long)xstride) : "");
            xstride *= x->shape[xd].c;
        }
        nstride *= n->shape[d].c;
    }
    const char *base = x->op == OP_WEIGHT ? fu_format("w->%s", e->c_w[index_in(e->g->weights, e->g->nweights, x)])
                                          : fu_format("w->fu_fold%d", x->id);
    return fu_format("%s[%s]", base, take(&b, "0"));
}

/* NAME_fold: every folded node in node order, scalar float C. */
static void emit_fold(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int *src = fu_alloc(sizeof *src * (size_t)(g->nweights + 1));
    int nsrc = fold_sources(g, src);
    buf_printf(c, "int %s_fold(%s_weights *w, fr_err *err) {\n", g->name, g->name);
    buf_printf(c, "    if (!w)\n        return fr_seterr(err, FR_EINVAL, \"%s_fold: NULL argument\");\n", g->name);
    for (int i = 0; i < nsrc; i++)
        buf_printf(c, "    if (!w->%s)\n        return fr_seterr(err, FR_ENULL, \"%s_fold: weight '%s' is not "
                      "bound (w->%s is NULL)\");\n",
                   e->c_w[src[i]], g->name, g->weights[src[i]]->name, e->c_w[src[i]]);
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (!n->folded)
            continue;
        const char *a = fold_operand(e, n, n->in[0]), *v = NULL;
        if (n->op == OP_CONVERT) /* typed.c's exact bf16/f16 -> f32 */
            a = fu_format("fu_%s_f32(%s)", dtype_name(n->in[0]->dtype), a);
        const char *b = n->nin > 1 ? fold_operand(e, n, n->in[1]) : NULL;
        switch (n->op) {
        case OP_CONVERT: v = "fu_a"; break;
        case OP_NEG: v = "-fu_a"; break;
        case OP_EXP: v = "expf(fu_a)"; break;
        case OP_LOG: v = "logf(fu_a)"; break;
        case OP_SQRT: v = "sqrtf(fu_a)"; break;
        case OP_RSQRT: v = "1.0f / sqrtf(fu_a)"; break;
        case OP_RECIP: v = "1.0f / fu_a"; break;
        case OP_TANH: v = "tanhf(fu_a)"; break;
        case OP_SIGMOID: v = "1.0f / (1.0f + expf(-fu_a))"; break;
        case OP_RELU: v = "fu_a > 0.0f || isnan(fu_a) ? fu_a : 0.0f"; break;
        case OP_ADD: v = "fu_a + fu_b"; break;
        case OP_SUB: v = "fu_a - fu_b"; break;
        case OP_MUL: v = "fu_a * fu_b"; break;
        case OP_DIV: v = "fu_a / fu_b"; break;
        case OP_MAXIMUM: v = "isnan(fu_a) || fu_a > fu_b ? fu_a : fu_b"; break;
        case OP_MINIMUM: v = "isnan(fu_a) || fu_a < fu_b ? fu_a : fu_b"; break;
        default: fu_internal(__FILE__, __LINE__, "emit_c: '%s' cannot be folded", op_info[n->op].name);
        }
        buf_printf(c, "    for (int64_t fu_i = 0; fu_i < %lld; ++fu_i) { /* %s */\n", (long long)ir_numel(n, NULL),
                   fold_text(g, n));
        buf_printf(c, "        const float fu_a = %s;\n", a);
        if (b)
            buf_printf(c, "        const float fu_b = %s;\n", b);
        buf_printf(c, "        w->fu_fold%d[fu_i] = %s;\n    }\n", i, v);
    }
    for (int i = 0; i < nsrc; i++)
        buf_printf(c, "    w->fu_fold_src[%d] = (const void *)w->%s;\n", i, e->c_w[src[i]]);
    buf_puts(c, "    return 0;\n}\n\n");
}

/* forward's refusal of a NULL w, unbound weights and stale folded values. */
static void emit_weight_checks(Emit *e, const char *who) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i;
    if (g->nweights) {
        buf_printf(c, "    if (!w)\n        return fr_seterr(NULL, FR_ENULL, \"%s: w is NULL\");\n", who);
        for (i = 0; i < g->nweights; i++)
            buf_printf(c, "    if (!w->%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: weight '%s' is "
                          "not bound (w->%s is NULL)\");\n",
                       e->c_w[i], who, g->weights[i]->name, e->c_w[i]);
        int *src = fu_alloc(sizeof *src * (size_t)(g->nweights + 1));
        int nsrc = fold_sources(g, src);
        for (i = 0; i < nsrc; i++)
            buf_printf(c, "    if (w->fu_fold_src[%d] != (const void *)w->%s)\n        return fr_seterr(NULL, "
                          "FR_ENULL, \"%s: weight '%s' is not the one its folded values were computed from "
                          "(call %s_bind or %s_fold again)\");\n",
                       i, e->c_w[src[i]], who, g->weights[src[i]]->name, g->name, g->name);
    }
}

/* This CPU must have the target's features; for multi:, fu_fn becomes the
 * variant's function `run`_TAG. */
static void emit_cpu_check(Emit *e, const char *who, const char *run) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i;
    (void)g;
    if (e->t->nvariants) {
        const Target *lv = least_variant(e->t);
        buf_puts(c, "    fr_task fu_fn;\n    switch (fu_pick()) {\n");
        for (i = 0; i < e->t->nvariants; i++) {
            const Target *v = e->t->variants[i];
            if (v->guard[0])
                buf_printf(c, "#if %s\n", v->guard);
            buf_printf(c, "    case %d:\n        fu_fn = %s_%s;\n        break;\n", i, run, v->tag);
            if (v->guard[0])
                buf_puts(c, "#endif\n");
        }
        buf_printf(c, "    default:\n        fu_rc = fr_cpu_check(\"%s\", \"%s\", 0x%xu);\n"
                      "        return fu_rc != 0 ? fu_rc\n"
                      "                          : fr_seterr(NULL, FR_ECPU, \"%s: no variant of target %s "
                      "was compiled for this CPU\");\n    }\n",
                   who, fu_format("%s, the least demanding variant of %s,", lv->name, e->t->name),
                   lv->features, who, e->t->name);
    } else if (e->t->features) {
        /* FU_AMX_NEED: the AMX bits, unless tests emulate the tiles (typed.c) */
        bool amx = ((e->t->features & FR_CPU_AMX_BF16) && (e->types & TY_BF16R)) ||
                   ((e->t->features & FR_CPU_AMX_INT8) && (e->types & (1u << DT_Q8_0 | 1u << DT_Q4_0)));
        buf_printf(c, "    fu_rc = fr_cpu_check(\"%s\", \"%s\", %s);\n    if (fu_rc != 0)\n        return fu_rc;\n",
                   who, e->t->name,
                   amx ? fu_format("FU_AMX_NEED(0x%xu)", e->t->features) : fu_format("0x%xu", e->t->features));
    }
}

/* The workspace checks and the thread count fu_n; `syms` lists the symbol
 * values ("T, P, "). */
static void emit_workspace_checks(Emit *e, const char *who, const char *syms) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    /* the bytes a call on `n` threads needs, as C */
    const char *need1 = e->nscratch ? fu_format("fu_need(fu_total, %s1)", syms) : "fu_total";
    /* The workspace: there, aligned, and large enough for one thread. */
    buf_printf(c, "    uint64_t fu_need1 = %s;\n", need1);
    buf_printf(c, "    if (!workspace && fu_need1 > 0)\n"
                  "        return fr_seterr(NULL, FR_ENULL, \"%s: workspace is NULL, the call needs %%llu bytes\",\n"
                  "                         (unsigned long long)fu_need1);\n", who);
    buf_printf(c, "    if (((uintptr_t)workspace & 63u) != 0)\n"
                  "        return fr_seterr(NULL, FR_EWORKSPACE, \"%s: the workspace is not 64-byte aligned "
                  "(allocate it with fr_alloc)\");\n", who);
    buf_printf(c, "    if (fu_need1 > workspace_bytes)\n"
                  "        return fr_seterr(NULL, FR_EWORKSPACE, \"%s: the workspace has %%zu bytes, the call "
                  "needs %%llu (%s_workspace_size)\",\n"
                  "                         workspace_bytes, (unsigned long long)fu_need1);\n",
               who, g->name);
    /* Threads: as many as asked for and the workspace has scratch for; the
     * pool may give fewer (busy, nested, threads refused). */
    if (e->nscratch) {
        const char *fits = fu_format("fu_need(fu_total, %sfu_n) > workspace_bytes", syms);
        buf_printf(c, "    int fu_n = fr_pool_threads();\n    while (fu_n > 1 && %s)\n        fu_n--;\n", fits);
        buf_printf(c, "    fu_n = fr_pool_acquire(fu_n);\n    while (fu_n > 1 && %s)\n        fu_n--;\n", fits);
    } else {
        buf_puts(c, "    int fu_n = fr_pool_acquire(fr_pool_threads());\n");
    }
}

/* After the run: an id out of range, the first one thread 0 found. */
static void emit_index_errors(Emit *e, const char *who) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i;
    for (i = 0; e->has_err && i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->op == OP_ALLREDUCE)
            buf_printf(c, "    if (fu_err[0] == %d)\n        return FR_ECOMM; /* fr_last_error: why */\n", i);
        bool moe = n->op == OP_MOE_UP || n->op == OP_MOE_DOWN;
        if (n->op != OP_EMBEDDING && n->op != OP_GATHER && !moe)
            continue;
        const Node *x = n->in[moe ? 2 : 0], *ids = n->in[1];
        /* a vocabulary-parallel embedding (--tp) names the whole vocabulary (i[1]) */
        buf_printf(c, "    if (fu_err[0] == %d)\n        return fr_seterr(NULL, FR_EINDEX, \"%s: %s: id %%lld at element "
                      "%%lld of %s is outside [0, %lld) (%s)\",\n                         (long long)fu_err[2], "
                      "(long long)fu_err[1]);\n",
                   i, who, op_info[n->op].name, node_what(ids),
                   n->op == OP_EMBEDDING && n->i[1] > 0 ? (long long)n->i[1]
                                                        : (long long)x->shape[n->op == OP_GATHER ? x->rank - 1 : 0].c,
                   n->op == OP_GATHER ? fu_format("the last axis of %s", node_what(x))
                                      : fu_format("the %s of %s", moe ? "experts" : "rows", node_what(x)));
    }
}

/* Fills the run function's arguments (fields `pre`, symbol values `syms`
 * as "T, P, ", then the lines `extra`), runs `run` (or fu_fn) on the pool
 * with `ctx`, and reports an id out of range. */
static void emit_pool_run(Emit *e, const char *who, const char *pre, const char *syms, const char *extra,
                          const char *ctx, const char *run) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    const char *v = syms;
    int i;
    for (i = 0; i < g->nsyms; i++) {
        const char *end = strchr(v, ',');
        buf_printf(c, "    %s%s = %.*s;\n", pre, g->sym_names[i], (int)(end - v), v);
        v = end + 2;
    }
    for (i = 0; i < g->ninputs; i++)
        buf_printf(c, "    %s%s = %s;\n", pre, e->c_in[i], e->c_in[i]);
    for (i = 0; i < g->noutputs; i++)
        buf_printf(c, "    %s%s = %s;\n", pre, e->c_out[i], e->c_out[i]);
    if (e->has_err)
        buf_printf(c, "    int64_t fu_err[3] = {-1, -1, -1};\n    %serr = fu_err;\n", pre);
    buf_printf(c, "    %sws = (char *)workspace;\n    %soff = fu_off;\n%s", pre, pre, extra);
    buf_printf(c, "    fr_pool_run(fu_n, %s, %s, %s);\n", e->t->nvariants ? "fu_fn" : run, ctx,
               e->nscratch ? fu_format("(char *)workspace + fu_total, fu_scratch(%sfu_n)", syms) : "NULL, 0");
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->op == OP_CONST && e->needed[i])
            buf_printf(c, "    const float fu_c%d = %s;\n", i, c_float_lit(n->f[0]));
        if (e->home[i] == HOME_SLOT && e->needed[i])
            buf_printf(c, "    %s *%s = (%s *)((char *)workspace + fu_off[%d]);\n", ctype(n), e->ref[i],
                       ctype(n), e->slot[i]);
    }
    emit_index_errors(e, who);
}

static void emit_forward(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    Buf caps = {0};
    int i;
    const char *indent = fu_format("%*s", (int)strlen(g->name) + 13, "");
    const char *who = fu_format("%s_forward", g->name);

    emit_scratch(e);
    buf_printf(c, "size_t %s_workspace_size(%s) {\n", g->name, ws_params(g));
    buf_printf(c, "    size_t off[%d], total;\n", e->nslots ? e->nslots : 1);
    buf_printf(c, "    if (fu_layout(\"%s_workspace_size\", %soff, &total) != 0)\n        return 0;\n", g->name,
               sym_list(g, ", "));
    if (e->nscratch) {
        buf_printf(c, "    uint64_t need = fu_need(total, %sfr_pool_threads());\n", sym_list(g, ", "));
        buf_printf(c, "    if (need >= (uint64_t)SIZE_MAX) {\n"
                      "        fr_seterr(NULL, FR_EDIM, \"%s_workspace_size: the workspace would exceed the "
                      "address space\");\n        return 0;\n    }\n    return (size_t)need;\n}\n\n", g->name);
    } else {
        buf_puts(c, "    return total;\n}\n\n");
    }

    /* NAME_variant: which variant forward runs here. */
    buf_printf(c, "const char *%s_variant(void) {\n", g->name);
    if (e->t->nvariants) {
        buf_puts(c, "    static const char *const names[] = {");
        for (i = 0; i < e->t->nvariants; i++)
            buf_printf(c, "%s\"%s\"", i ? ", " : "", e->t->variants[i]->name);
        buf_puts(c, "};\n    int v = fu_pick();\n    return v < 0 ? \"none\" : names[v];\n}\n\n");
    } else {
        buf_printf(c, "    return \"%s\";\n}\n\n", e->t->name);
    }

    buf_printf(c, "int %s_forward(%s) {\n", g->name, forward_params(e, indent));
    buf_printf(c, "    size_t fu_off[%d], fu_total;\n    int fu_rc;\n", e->nslots ? e->nslots : 1);
    /* Null pointers and unbound weights are refused, not dereferenced; each
     * refusal names the argument. */
    emit_weight_checks(e, who);
    if (g->ncaches) {
        buf_printf(c, "    if (!cache)\n        return fr_seterr(NULL, FR_ENULL, \"%s: cache is NULL\");\n", who);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(c, "    if (!cache->%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: cache '%s' is "
                          "not allocated (cache->%s is NULL)\");\n",
                       e->c_cache[i], who, g->caches[i]->name, e->c_cache[i]);
    }
    for (i = 0; i < g->ninputs; i++)
        buf_printf(c, "    if (!%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: input '%s' is NULL\");\n",
                   e->c_in[i], who, e->c_in[i]);
    for (i = 0; i < g->noutputs; i++)
        buf_printf(c, "    if (!%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: output '%s' (%s) is NULL\");\n",
                   e->c_out[i], who, g->outputs[i]->name, e->c_out[i]);
    buf_printf(c, "    fu_rc = fu_layout(\"%s\", %sfu_off, &fu_total);\n    if (fu_rc != 0)\n        return fu_rc;\n",
               who, sym_list(g, ", "));
    /* Every row a cache is read or written at must fit its capacity. */
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        const char *ex, *rows;
        if (n->op != OP_CACHE && n->op != OP_APPEND)
            continue;
        rows = dim_c(g, n->shape[0], NULL);
        ex = fu_format("    if (%s > cache->capacity)\n"
                       "        return fr_seterr(NULL, FR_ECAPACITY, \"%s: the caches hold %%lld rows, the call "
                       "needs %s = %%lld\",\n                         (long long)cache->capacity, (long long)%s);\n",
                       rows, who, bare(rows), rows);
        if (caps.data && strstr(caps.data, ex))
            continue;
        buf_puts(&caps, ex);
        buf_puts(c, ex);
    }
    take(&caps, "");
    emit_cpu_check(e, who, "fu_run");
    emit_workspace_checks(e, who, sym_list(g, ", "));
    buf_puts(c, "    fu_args fa;\n    memset(&fa, 0, sizeof fa);\n");
    if (g->nweights)
        buf_puts(c, "    fa.w = w;\n");
    if (g->ncaches)
        buf_puts(c, "    fa.cache = cache;\n");
    emit_pool_run(e, who, "fa.", sym_list(g, ", "), "", "&fa", "fu_run");
    /* Outputs not computed in place are copied last: by then every kernel
     * (fused ones too) has finished writing what they copy. */
    for (i = 0; i < g->noutputs; i++) {
        const Node *x = g->outputs[i]->in[0];
        if (e->home[x->id] != HOME_OUTPUT)
            buf_printf(c, "    memcpy(%s, %s, (size_t)%s * sizeof *%s);\n", e->c_out[i],
                       e->ref[x->id], numel_c(g, x->shape, 0, x->rank, NULL), e->c_out[i]);
    }
    buf_puts(c, "    return 0;\n}\n\n");
}

static const char *shape_init(const Graph *g, const Node *n) {
    Buf b = {0};
    int d, s;
    buf_puts(&b, "{");
    for (d = 0; d < n->rank; d++)
        buf_printf(&b, "%s%lld", d ? ", " : "", (long long)n->shape[d].c);
    buf_puts(&b, n->rank ? "}, {" : "0}, {{0}");
    for (d = 0; d < n->rank; d++) {
        buf_printf(&b, "%s{", d ? ", " : "");
        for (s = 0; s < g->nsyms; s++)
            buf_printf(&b, "%s%d", s ? ", " : "", (int)n->shape[d].k[s]);
        if (g->nsyms == 0)
            buf_puts(&b, "0");
        buf_puts(&b, "}");
    }
    buf_puts(&b, "}");
    return take(&b, "");
}

static void emit_desc_table(Emit *e, const char *what, Node *const *list, int n) {
    int i;
    if (n == 0)
        return;
    buf_printf(&e->c, "static const fr_tensor_desc fu_%s[%d] = {\n", what, n);
    for (i = 0; i < n; i++)
        buf_printf(&e->c, "    {\"%s\", %s, %d, %s},\n", list[i]->name, fr_dtype_c(list[i]),
                   list[i]->rank, shape_init(e->g, list[i]));
    buf_puts(&e->c, "};\n");
}

/* The desc trampolines' weights struct from the weights array. */
static void emit_desc_weights(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    for (int i = 0; i < g->nweights; i++)
        buf_printf(c, "    w.%s = (const %s *)weights[%d];\n", e->c_w[i], ctype(g->weights[i]), i);
    if (fold_sources(g, NULL)) /* generic drivers have no bind: fold on each call */
        buf_printf(c, "    {\n        int fu_frc = %s_fold(&w, NULL);\n        if (fu_frc != 0)\n"
                      "            return fu_frc;\n    }\n", g->name);
}

/* desc.run_batch: forward_batch with every sequence's caches built from
 * caches[s][i] and capacity[s], symbol j of sequence s at syms[j * nseq + s]. */
static void emit_desc_run_batch(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i, s;
    buf_printf(c, "static size_t fu_desc_workspace_size_batch(int64_t nseq, const int64_t *syms) {\n"
                  "    if (!syms)\n        return 0;\n    return %s_workspace_size_batch(nseq", g->name);
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, ", syms + %d * nseq", s);
    buf_puts(c, ");\n}\n\n");
    buf_puts(c, "static int fu_desc_run_batch(const void *const *weights, float *const *const *caches,\n"
                "                             const int64_t *capacity, int64_t nseq, const int64_t *syms,\n"
                "                             const void *const *inputs, void *const *outputs, void *workspace,\n"
                "                             size_t workspace_bytes) {\n");
    if (g->nweights)
        buf_printf(c, "    %s_weights w;\n", g->name);
    buf_printf(c, "    if (!weights || !caches || !capacity || !syms || !inputs || !outputs)\n        return "
                  "fr_seterr(NULL, FR_ENULL, \"%s_desc.run_batch: NULL array argument\");\n", g->name);
    buf_printf(c, "    if (nseq < 1 || nseq > 1048576)\n        return fr_seterr(NULL, FR_EDIM, \"%s_desc.run_batch: "
                  "nseq = %%lld is outside [1, 1048576]\", (long long)nseq);\n", g->name);
    if (!g->nweights)
        buf_puts(c, "    (void)weights;\n");
    if (!g->ncaches)
        buf_puts(c, "    (void)caches;\n    (void)capacity;\n");
    if (!g->ninputs)
        buf_puts(c, "    (void)inputs;\n");
    emit_desc_weights(e);
    if (g->ncaches) {
        buf_printf(c, "    %s_cache *cs = fr_alloc(sizeof *cs * (size_t)nseq), **cp = fr_alloc(sizeof *cp * (size_t)nseq);\n"
                      "    if (!cs || !cp) {\n        fr_free(cs);\n        fr_free(cp);\n"
                      "        return fr_seterr(NULL, FR_ENOMEM, \"%s_desc.run_batch: out of memory\");\n    }\n"
                      "    for (int64_t s = 0; s < nseq; ++s) {\n        cp[s] = caches[s] ? &cs[s] : NULL;\n"
                      "        cs[s].capacity = capacity[s];\n", g->name, g->name);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(c, "        cs[s].%s = caches[s] ? (%s *)caches[s][%d] : NULL;\n", e->c_cache[i],
                       ctype(g->caches[i]), i);
        buf_puts(c, "    }\n");
    }
    buf_printf(c, "    int rc = %s_forward_batch(%s%snseq", g->name, g->nweights ? "&w, " : "",
               g->ncaches ? "cp, " : "");
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, ", syms + %d * nseq", s);
    for (i = 0; i < g->ninputs; i++)
        buf_printf(c, ", (const %s *)inputs[%d]", ctype(g->inputs[i]), i);
    for (i = 0; i < g->noutputs; i++)
        buf_printf(c, ", (%s *)outputs[%d]", ctype(g->outputs[i]), i);
    buf_puts(c, ", workspace, workspace_bytes);\n");
    if (g->ncaches)
        buf_puts(c, "    fr_free(cs);\n    fr_free(cp);\n");
    buf_puts(c, "    return rc;\n}\n\n");
}

static void emit_bind_and_desc(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i, d, s;

    if (fold_sources(g, NULL))
        emit_fold(e);
    if (g->nweights) {
        buf_printf(c, "int %s_bind(%s_weights *w, const fr_st *file, const char *prefix, fr_err *err) {\n",
                   g->name, g->name);
        buf_puts(c, "    const void *p;\n    int rc;\n");
        buf_printf(c, "    if (!w || !file)\n        return fr_seterr(err, FR_EINVAL, \"%s_bind: "
                      "NULL argument\");\n", g->name);
        buf_puts(c, "    memset(w, 0, sizeof *w);\n    if (!prefix)\n        prefix = \"\";\n");
        if (g->tp_size > 1)
            buf_printf(c, "    rc = fr_tp_check(\"%s\", %d, %d, err);\n    if (rc != 0)\n        return rc;\n",
                       g->name, g->tp_size, g->tp_rank);
        for (i = 0; i < g->nweights; i++) {
            const Node *n = g->weights[i];
            Buf sh = {0};
            for (d = 0; d < n->rank; d++) {
                FU_ASSERT(dim_is_const(n->shape[d])); /* shape.c: weights are constant */
                buf_printf(&sh, "%s%lld", d ? ", " : "",
                           (long long)(d == n->tp_axis - 1 ? n->tp_full : n->shape[d].c));
            }
            if (n->tp_axis) /* this rank's slice of the checkpoint's tensor (tp.c) */
                buf_printf(c, "    rc = fr_st_bind_slice(file, prefix, \"%s\", %s, %d, %s, %d, %lld, %lld, &p, err);\n",
                           n->name, fr_dtype_c(n), n->rank, fu_format("(const int64_t[]){%s}", take(&sh, "")),
                           n->tp_axis - 1, (long long)n->tp_start, (long long)n->shape[n->tp_axis - 1].c);
            else
                buf_printf(c, "    rc = fr_st_bind(file, prefix, \"%s\", %s, %d, %s, &p, err);\n", n->name,
                           fr_dtype_c(n), n->rank,
                           n->rank ? fu_format("(const int64_t[]){%s}", take(&sh, "")) : "NULL");
            buf_printf(c, "    if (rc != 0)\n        return rc;\n    w->%s = (const %s *)p;\n",
                       e->c_w[i], ctype(n));
        }
        if (fold_sources(g, NULL))
            buf_printf(c, "    return %s_fold(w, err);\n}\n\n", g->name);
        else
            buf_puts(c, "    return 0;\n}\n\n");
    }

    if (g->ncaches) {
        buf_printf(c, "int %s_cache_init(%s_cache *c, int64_t capacity, fr_err *err) {\n", g->name,
                   g->name);
        buf_printf(c, "    if (!c)\n        return fr_seterr(err, FR_EINVAL, \"%s_cache_init: NULL "
                      "cache\");\n", g->name);
        buf_puts(c, "    memset(c, 0, sizeof *c);\n");
        int64_t maxrow = 1;
        for (i = 0; i < g->ncaches; i++) {
            int64_t row = 1;
            /* shape.c: a cache is [cache symbol, constant dims...] */
            FU_ASSERT(dim_eq(g->caches[i]->shape[0], dim_sym(g->cache_sym)));
            for (d = 1; d < g->caches[i]->rank; d++) {
                FU_ASSERT(dim_is_const(g->caches[i]->shape[d]));
                row *= g->caches[i]->shape[d].c;
            }
            maxrow = row > maxrow ? row : maxrow;
        }
        buf_printf(c, "    if (capacity < 1 || capacity > FU_SYM_MAX || (uint64_t)capacity * %lld > "
                      "SIZE_MAX / sizeof(float))\n", (long long)maxrow);     /* f32 is the widest */
        buf_printf(c, "        return fr_seterr(err, FR_EINVAL, \"%s_cache_init: capacity %%lld "
                      "out of range\", (long long)capacity);\n", g->name);
        for (i = 0; i < g->ncaches; i++) {
            const Node *n = g->caches[i];
            const char *row = numel_c(g, n->shape, 1, n->rank, NULL);
            buf_printf(c, "    c->%s = (%s *)fr_alloc((size_t)capacity * %s * sizeof(%s));\n",
                       e->c_cache[i], ctype(n), row, ctype(n));
            buf_printf(c, "    if (!c->%s) {\n        %s_cache_free(c);\n", e->c_cache[i], g->name);
            buf_printf(c, "        return fr_seterr(err, FR_ENOMEM, \"%s_cache_init: out of memory "
                          "for cache '%s' (%%lld rows)\", (long long)capacity);\n    }\n",
                       g->name, n->name);
        }
        buf_puts(c, "    c->capacity = capacity;\n    return 0;\n}\n\n");
        buf_printf(c, "void %s_cache_free(%s_cache *c) {\n    if (!c)\n        return;\n", g->name,
                   g->name);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(c, "    fr_free(c->%s);\n    c->%s = NULL;\n", e->c_cache[i], e->c_cache[i]);
        buf_puts(c, "    c->capacity = 0;\n}\n\n");
    }

    /* The generic face of the block, for drivers that know no names. */
    buf_puts(c, "/* ---- NAME_desc: the block for generic drivers (fusec check, benchmarks) ---- */\n\n");
    if (g->nsyms) {
        buf_printf(c, "static const char *const fu_sym_names[%d] = {", g->nsyms);
        for (s = 0; s < g->nsyms; s++)
            buf_printf(c, "%s\"%s\"", s ? ", " : "", g->sym_names[s]);
        buf_puts(c, "};\n");
    }
    emit_desc_table(e, "inputs", g->inputs, g->ninputs);
    emit_desc_table(e, "weights", g->weights, g->nweights);
    emit_desc_table(e, "outputs", g->outputs, g->noutputs);
    emit_desc_table(e, "caches", g->caches, g->ncaches);
    if (g->tp_size > 1 && g->nweights) { /* this rank's slice of each weight (tp.c) */
        buf_printf(c, "static const fr_tp_slice fu_tp_slices[%d] = {\n", g->nweights);
        for (i = 0; i < g->nweights; i++)
            buf_printf(c, "    {%d, %lld, %lld},\n", g->weights[i]->tp_axis, (long long)g->weights[i]->tp_start,
                       (long long)g->weights[i]->tp_full);
        buf_puts(c, "};\n");
    }
    buf_puts(c, "\n");

    buf_puts(c, "static size_t fu_desc_workspace_size(const int64_t *syms) {\n");
    if (g->nsyms)
        buf_printf(c, "    if (!syms)\n        return 0;\n    return %s_workspace_size(%s);\n}\n\n",
                   g->name, sym_args(g, "syms[%d]"));
    else
        buf_printf(c, "    (void)syms;\n    return %s_workspace_size();\n}\n\n", g->name);

    buf_puts(c, "static int fu_desc_run(const void *const *weights, float *const *caches, "
                "int64_t cache_capacity,\n                       const int64_t *syms, const void "
                "*const *inputs, void *const *outputs,\n                       void *workspace, "
                "size_t workspace_bytes) {\n");
    if (g->nweights)
        buf_printf(c, "    %s_weights w;\n", g->name);
    if (g->ncaches)
        buf_printf(c, "    %s_cache c;\n", g->name);
    {
        const char *sep = "    if (";
        bool any = false;
        if (g->nweights) { buf_printf(c, "%s!weights", sep); sep = " || "; any = true; }
        if (g->ncaches) { buf_printf(c, "%s!caches", sep); sep = " || "; any = true; }
        if (g->nsyms) { buf_printf(c, "%s!syms", sep); sep = " || "; any = true; }
        if (g->ninputs) { buf_printf(c, "%s!inputs", sep); sep = " || "; any = true; }
        if (g->noutputs) { buf_printf(c, "%s!outputs", sep); any = true; }
        if (any)
            buf_printf(c, ")\n        return fr_seterr(NULL, FR_ENULL, \"%s_desc.run: NULL array argument\");\n",
                       g->name);
    }
    if (!g->nweights)
        buf_puts(c, "    (void)weights;\n");
    if (!g->ncaches)
        buf_puts(c, "    (void)caches;\n    (void)cache_capacity;\n");
    if (!g->nsyms)
        buf_puts(c, "    (void)syms;\n");
    if (!g->ninputs)
        buf_puts(c, "    (void)inputs;\n");
    if (!g->noutputs)
        buf_puts(c, "    (void)outputs;\n");
    emit_desc_weights(e);
    for (i = 0; i < g->ncaches; i++)
        buf_printf(c, "    c.%s = (%s *)caches[%d];\n", e->c_cache[i], ctype(g->caches[i]), i);
    if (g->ncaches)
        buf_puts(c, "    c.capacity = cache_capacity;\n");
    buf_printf(c, "    return %s_forward(", g->name);
    {
        const char *sep = "";
        if (g->nweights) { buf_puts(c, "&w"); sep = ", "; }
        if (g->ncaches) { buf_printf(c, "%s&c", sep); sep = ", "; }
        for (s = 0; s < g->nsyms; s++) { buf_printf(c, "%ssyms[%d]", sep, s); sep = ", "; }
        for (i = 0; i < g->ninputs; i++) {
            buf_printf(c, "%s(const %s *)inputs[%d]", sep, ctype(g->inputs[i]), i);
            sep = ", ";
        }
        for (i = 0; i < g->noutputs; i++) {
            buf_printf(c, "%s(%s *)outputs[%d]", sep, ctype(g->outputs[i]), i);
            sep = ", ";
        }
        buf_printf(c, "%sworkspace, workspace_bytes);\n}\n\n", sep);
    }

    if (!e->batch_no)
        emit_desc_run_batch(e);
    buf_printf(c, "const fr_block_desc %s_desc = {\n", g->name);
    buf_printf(c, "    .name = \"%s\",\n    .target = \"%s\",\n", g->name, e->t->name);
    buf_printf(c, "    .nsyms = %d,\n    .sym_names = %s,\n    .cache_sym = %d,\n", g->nsyms,
               g->nsyms ? "fu_sym_names" : "NULL", g->ncaches ? g->cache_sym : -1);
    buf_printf(c, "    .ninputs = %d,\n    .nweights = %d,\n    .noutputs = %d,\n    .ncaches = %d,\n",
               g->ninputs, g->nweights, g->noutputs, g->ncaches);
    buf_printf(c, "    .inputs = %s,\n    .weights = %s,\n    .outputs = %s,\n    .caches = %s,\n",
               g->ninputs ? "fu_inputs" : "NULL", g->nweights ? "fu_weights" : "NULL",
               g->noutputs ? "fu_outputs" : "NULL", g->ncaches ? "fu_caches" : "NULL");
    buf_puts(c, "    .workspace_size = fu_desc_workspace_size,\n    .run = fu_desc_run,\n");
    if (!e->batch_no)
        buf_puts(c, "    .run_batch = fu_desc_run_batch,\n    .workspace_size_batch = fu_desc_workspace_size_batch,\n");
    if (g->tp_size > 1)
        buf_printf(c, "    .tp_size = %d,\n    .tp_rank = %d,\n    .tp_slices = %s,\n", g->tp_size, g->tp_rank,
                   g->nweights ? "fu_tp_slices" : "NULL");
    if (g->tp_vocab > 0)
        buf_printf(c, "    .tp_vocab_start = %lld,\n    .tp_vocab = %lld,\n", (long long)g->tp_vocab_start,
                   (long long)g->tp_vocab);
    buf_puts(c, "};\n");
}

/* ---- writing the .c as it is made --------------------------------------------- */

/*
 * The generated C of a large block runs to hundreds of megabytes (about 6
 * KB per operator), so it is not held in memory: what e->c holds goes to
 * the file as soon as the order of the file allows.  The kernels come
 * after the workspace layout in the file, and their emission decides the
 * layout, so once their text passes SPOOL_AFTER bytes it waits in a
 * temporary file (the spool) and is copied after the layout; a smaller
 * block's, or where no temporary file can be made (TMPDIR unwritable), it
 * waits in memory.  Either way the bytes are the same.  Write errors are
 * kept (e->werr) and reported once, at the end.
 */
#define SPOOL_AFTER (8 << 20)

static void write_c_text(Emit *e, FILE *f, const char *data, size_t n, const char *what) {
    if (n && !e->werr && fwrite(data, 1, n, f) != n) {
        e->werr = errno ? errno : EIO;
        e->wwhat = what;
    }
}

/* The spool: a file in $TMPDIR (or /tmp), unlinked at once so nothing is
 * left behind; NULL when none can be made. */
static FILE *spool_open(void) {
    const char *dir = getenv("TMPDIR");
    char *path = fu_format("%s/fusec-spool-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    unlink(path);
    FILE *f = fdopen(fd, "w+");
    if (!f)
        close(fd);
    return f;
}

/* What e->c holds, to the .c file. */
static void flush_c(Emit *e) {
    write_c_text(e, e->cfile, e->c.data, e->c.len, "C file");
    e->c.len = 0;
}

/* What e->c holds, to the spool. */
static void spool_c(Emit *e) {
    write_c_text(e, e->spool, e->c.data, e->c.len, "kernels to a temporary file");
    e->spooled += (long)e->c.len;
    e->c.len = 0;
}

/* The next n bytes of the spool, to the .c file. */
static void unspool(Emit *e, long n) {
    char chunk[1 << 16];
    while (n > 0 && !e->werr) {
        size_t want = n < (long)sizeof chunk ? (size_t)n : sizeof chunk;
        size_t got = fread(chunk, 1, want, e->spool);
        if (got != want) {
            e->werr = ferror(e->spool) && errno ? errno : EIO;
            e->wwhat = "kernels back from a temporary file";
            return;
        }
        write_c_text(e, e->cfile, chunk, got, "C file");
        n -= (long)got;
    }
}

/* Records a kernel's scratch size for the workspace, once per expression. */
static void add_scratch(Emit *e, const char *scratch) {
    for (int i = 0; i < e->nscratch; i++)
        if (strcmp(e->scratch[i], scratch) == 0)
            return;
    const char **grown = fu_alloc(sizeof *grown * (size_t)(e->nscratch + 1));
    if (e->nscratch)
        memcpy(grown, e->scratch, sizeof *grown * (size_t)e->nscratch);
    grown[e->nscratch++] = fu_strdup(scratch);
    e->scratch = grown;
}

/* What emit_kernel returned, copied out of everything it allocated since m
 * (the text it wrote is in e->c; the rest was its temporaries), which is
 * then released: the emitter's memory stays that of one kernel. */
static KCall *keep_call(const KCall *kc, FuMark m) {
    int np = kc->np;
    size_t ncall = strlen(kc->call) + 1, nscr = kc->scratch ? strlen(kc->scratch) + 1 : 0;
    size_t nroot = sizeof *kc->root * (size_t)np, nwr = sizeof *kc->written * (size_t)np;
    size_t nb = strlen(kc->bcall) + 1;
    char *tmp = malloc(nroot + nwr + ncall + nscr + nb + 1);
    if (!tmp)
        fu_internal(__FILE__, __LINE__, "out of memory");
    memcpy(tmp, kc->root, nroot);
    memcpy(tmp + nroot, kc->written, nwr);
    memcpy(tmp + nroot + nwr, kc->call, ncall);
    if (nscr)
        memcpy(tmp + nroot + nwr + ncall, kc->scratch, nscr);
    memcpy(tmp + nroot + nwr + ncall + nscr, kc->bcall, nb);
    int bclass = kc->bclass;
    unsigned used = kc->used;
    BAtt att = kc->att;
    fu_arena_release_to(m);
    KCall *out = fu_alloc(sizeof *out);
    out->att = att;
    out->np = np;
    out->bclass = bclass;
    out->used = used;
    out->bcall = fu_strndup(tmp + nroot + nwr + ncall + nscr, nb - 1);
    out->root = fu_alloc(nroot + sizeof *out->root);
    out->written = fu_alloc(nwr + sizeof *out->written);
    memcpy(out->root, tmp, nroot);
    memcpy(out->written, tmp + nroot, nwr);
    out->call = fu_strndup(tmp + nroot + nwr, ncall - 1);
    out->scratch = nscr ? fu_strndup(tmp + nroot + nwr + ncall, nscr - 1) : NULL;
    free(tmp);
    return out;
}

/* One function per kernel of the schedule for the current variant;
 * returns the calls, indexed by kernel id, which is the execution order. */
/* "const int64_t *T, const int64_t *P": fmt with each symbol's name. */
static const char *sym_args_fmt(const Graph *g, const char *fmt_each) {
    Buf b = {0};
    for (int s = 0; s < g->nsyms; s++) {
        if (s)
            buf_puts(&b, ", ");
        buf_printf(&b, fmt_each, g->sym_names[s]);
    }
    return take(&b, "");
}

/* forward_batch's parameters: caches and the symbols become arrays, one
 * entry per sequence. */
static const char *batch_params(Emit *e, const char *indent) {
    const Graph *g = e->g;
    Buf b = {0};
    int i, s;
    const char *sep = fu_format(",\n%s", indent);
    if (g->nweights)
        buf_printf(&b, "const %s_weights *w%s", g->name, sep);
    if (g->ncaches)
        buf_printf(&b, "%s_cache *const *caches, ", g->name);
    buf_puts(&b, "int64_t nseq");
    for (s = 0; s < g->nsyms; s++)
        buf_printf(&b, ", const int64_t *%s", g->sym_names[s]);
    for (i = 0; i < g->ninputs; i++)
        buf_printf(&b, "%sconst %s *%s /* %s */", sep, ctype(g->inputs[i]), e->c_in[i], type_text(g, g->inputs[i]));
    for (i = 0; i < g->noutputs; i++)
        buf_printf(&b, "%s%s *%s /* %s%s */", sep, ctype(g->outputs[i]), e->c_out[i], type_text(g, g->outputs[i]),
                   e->btail[g->outputs[i]->id] ? " per sequence" : "");
    buf_printf(&b, "%svoid *workspace, size_t workspace_bytes", sep);
    return take(&b, "");
}

/* A dim as C for sequence fu_s of a batch. */
static const char *batch_dim_c(const Graph *g, Dim d) {
    Buf b = {0};
    buf_printf(&b, "(INT64_C(%lld)", (long long)d.c);
    for (int s = 0; s < g->nsyms; s++)
        if (d.k[s])
            buf_printf(&b, " + %d * %s[fu_s]", d.k[s], g->sym_names[s]);
    buf_puts(&b, ")");
    return take(&b, "");
}

/* The bytes of the batch's region for the last rows (fu_bt<id>: nseq blocks
 * of each tail slot, 64-byte aligned), as C; NULL without tail slots. */
static const char *batch_tail_bytes(const Emit *e) {
    const Graph *g = e->g;
    Buf b = {0};
    for (int i = 0; i < g->nnodes; i++)
        if (e->run_used[i] && e->home[i] == HOME_SLOT && e->btail[i])
            buf_printf(&b, "%s(((size_t)nseq * %lldu * sizeof(%s) + 63u) & ~(size_t)63u)", b.len ? " + " : "",
                       (long long)ir_numel(g->nodes[i], NULL), ctype(g->nodes[i]));
    return b.len ? take(&b, "") : NULL;
}

/* The fewest tokens a sequence of a batch may have: 0 (an idle sequence,
 * skipped), 1 when an output is each sequence's last rows. */
static int batch_min_tok(const Emit *e) {
    for (int i = 0; i < e->g->noutputs; i++)
        if (e->btail[e->g->outputs[i]->id])
            return 1;
    return 0;
}

/* NAME_workspace_size_batch: workspace_size(sum of T, largest P) and the
 * last rows' region. */
static void emit_workspace_size_batch(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    const char *tok = g->sym_names[e->btok], *tb = batch_tail_bytes(e);
    int s;
    buf_printf(c, "size_t %s_workspace_size_batch(int64_t nseq", g->name);
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, ", const int64_t *%s", g->sym_names[s]);
    buf_printf(c, ") {\n    int64_t %s;\n", sym_args(g, "fu_b%d = 0"));
    buf_puts(c, "    if (nseq < 1");
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, " || !%s", g->sym_names[s]);
    buf_printf(c, ") {\n        fr_seterr(NULL, FR_EDIM, \"%s_workspace_size_batch: nseq < 1 or a NULL array\");\n"
                  "        return 0;\n    }\n", g->name);
    buf_puts(c, "    for (int64_t fu_s = 0; fu_s < nseq; ++fu_s) {\n");
    buf_printf(c, "        if (%s[fu_s] < %d || %s[fu_s] > FU_SYM_MAX - fu_b%d) {\n            fr_seterr(NULL, FR_EDIM, "
                  "\"%s_workspace_size_batch: %s[%%lld] = %%lld\", (long long)fu_s, (long long)%s[fu_s]);\n"
                  "            return 0;\n        }\n        fu_b%d += %s[fu_s];\n",
               tok, batch_min_tok(e), tok, e->btok, g->name, tok, tok, e->btok, tok);
    for (s = 0; s < g->nsyms; s++)
        if (s != e->btok)
            buf_printf(c, "        fu_b%d = %s[fu_s] > fu_b%d ? %s[fu_s] : fu_b%d;\n", s, g->sym_names[s], s,
                       g->sym_names[s], s);
    buf_printf(c, "    }\n    if (fu_b%d == 0)  /* every sequence idle: as for one token */\n        fu_b%d = 1;\n",
               e->btok, e->btok);
    if (!tb) {
        buf_printf(c, "    return %s_workspace_size(%s);\n}\n\n", g->name, sym_args(g, "fu_b%d"));
        return;
    }
    buf_printf(c, "    size_t fu_off[%d], fu_total;\n    if (fu_layout(\"%s_workspace_size_batch\", %s, fu_off, &fu_total) != 0)\n"
                  "        return 0;\n    size_t fu_ws = %s_workspace_size(%s);\n",
               e->nslots ? e->nslots : 1, g->name, sym_args(g, "fu_b%d"), g->name, sym_args(g, "fu_b%d"));
    buf_printf(c, "    return fu_ws + %s;\n}\n\n", tb);
}

static void emit_forward_batch(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    Buf caps = {0};
    int i, s;
    const char *who = fu_format("%s_forward_batch", g->name);
    const char *tok = g->sym_names[e->btok], *past = g->ncaches ? g->sym_names[g->cache_sym] : NULL;
    const char *bsyms = fu_format("%s, ", sym_args(g, "fu_b%d"));
    buf_printf(c, "int %s_forward_batch(%s) {\n", g->name,
               batch_params(e, fu_format("%*s", (int)strlen(g->name) + 19, "")));
    buf_printf(c, "    size_t fu_off[%d], fu_total;\n    int fu_rc;\n", e->nslots ? e->nslots : 1);
    buf_printf(c, "    int64_t %s;\n", sym_args(g, "fu_b%d = 0"));
    emit_weight_checks(e, who);
    buf_printf(c, "    if (nseq < 1)\n        return fr_seterr(NULL, FR_EDIM, \"%s: nseq = %%lld, at least 1 "
                  "sequence is needed\", (long long)nseq);\n", who);
    if (g->ncaches)
        buf_printf(c, "    if (!caches)\n        return fr_seterr(NULL, FR_ENULL, \"%s: caches is NULL\");\n", who);
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, "    if (!%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: %s is NULL\");\n",
                   g->sym_names[s], who, g->sym_names[s]);
    for (i = 0; i < g->ninputs; i++)
        buf_printf(c, "    if (!%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: input '%s' is NULL\");\n",
                   e->c_in[i], who, e->c_in[i]);
    for (i = 0; i < g->noutputs; i++)
        buf_printf(c, "    if (!%s)\n        return fr_seterr(NULL, FR_ENULL, \"%s: output '%s' (%s) is NULL\");\n",
                   e->c_out[i], who, g->outputs[i]->name, e->c_out[i]);
    /* every sequence: its symbols, its caches, then the sums */
    buf_puts(c, "    for (int64_t fu_s = 0; fu_s < nseq; ++fu_s) {\n");
    buf_printf(c, "        if (%s[fu_s] < %d || %s[fu_s] > FU_SYM_MAX)\n            return fr_seterr(NULL, FR_EDIM, "
                  "\"%s: %s[%%lld] = %%lld is outside [%d, %%lld]%s\", (long long)fu_s,\n"
                  "                             (long long)%s[fu_s], (long long)FU_SYM_MAX);\n",
               tok, batch_min_tok(e), tok, who, tok, batch_min_tok(e),
               batch_min_tok(e) ? " (an output is each sequence's last row)" : "", tok);
    if (past)
        buf_printf(c, "        if (%s[fu_s] < 0 || %s[fu_s] > FU_SYM_MAX)\n            return fr_seterr(NULL, "
                      "FR_EDIM, \"%s: %s[%%lld] = %%lld is outside [0, %%lld]\", (long long)fu_s,\n"
                      "                             (long long)%s[fu_s], (long long)FU_SYM_MAX);\n",
                   past, past, who, past, past);
    buf_printf(c, "        fu_rc = %s[fu_s] > 0 ? fu_layout(\"%s\", ", tok, who);
    for (s = 0; s < g->nsyms; s++)
        buf_printf(c, "%s[fu_s], ", g->sym_names[s]);
    buf_puts(c, "fu_off, &fu_total) : 0;\n        if (fu_rc != 0)\n            return fu_rc;\n");
    if (g->ncaches) {
        buf_printf(c, "        const %s_cache *fu_c = caches[fu_s];\n        if (!fu_c)\n            return "
                      "fr_seterr(NULL, FR_ENULL, \"%s: caches[%%lld] is NULL\", (long long)fu_s);\n", g->name, who);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(c, "        if (!fu_c->%s)\n            return fr_seterr(NULL, FR_ENULL, \"%s: cache '%s' of "
                          "sequence %%lld is not allocated\", (long long)fu_s);\n",
                       e->c_cache[i], who, g->caches[i]->name);
        for (i = 0; i < g->nnodes; i++) {
            const Node *n = g->nodes[i];
            if (n->op != OP_CACHE && n->op != OP_APPEND)
                continue;
            const char *rows = batch_dim_c(g, n->shape[0]);
            const char *ex = fu_format("        if (%s > fu_c->capacity)\n            return fr_seterr(NULL, "
                                       "FR_ECAPACITY, \"%s: the caches of sequence %%lld hold %%lld rows, it "
                                       "needs %s = %%lld\",\n                             (long long)fu_s, "
                                       "(long long)fu_c->capacity, (long long)%s);\n",
                                       rows, who, bare(dim_c(g, n->shape[0], NULL)), rows);
            if (caps.data && strstr(caps.data, ex))
                continue;
            buf_puts(&caps, ex);
            buf_puts(c, ex);
        }
        take(&caps, "");
        buf_printf(c, "        for (int64_t fu_r = 0; fu_r < fu_s; ++fu_r)\n            if (caches[fu_r]->%s == fu_c->%s)\n"
                      "                return fr_seterr(NULL, FR_EINVAL, \"%s: sequences %%lld and %%lld have the "
                      "same caches\", (long long)fu_r,\n                                 (long long)fu_s);\n",
                   e->c_cache[0], e->c_cache[0], who);
    }
    for (s = 0; s < g->nsyms; s++) {
        if (s == e->btok)
            buf_printf(c, "        if (fu_b%d > FU_SYM_MAX - %s[fu_s])\n            return fr_seterr(NULL, FR_EDIM, "
                          "\"%s: the batch has more than %%lld tokens\", (long long)FU_SYM_MAX);\n"
                          "        fu_b%d += %s[fu_s];\n", s, tok, who, s, tok);
        else
            buf_printf(c, "        fu_b%d = %s[fu_s] > fu_b%d ? %s[fu_s] : fu_b%d;\n", s, g->sym_names[s], s,
                       g->sym_names[s], s);
    }
    buf_printf(c, "    }\n    if (fu_b%d == 0)  /* every sequence idle */\n        return 0;\n", e->btok);
    buf_printf(c, "    fu_rc = fu_layout(\"%s\", %sfu_off, &fu_total);\n    if (fu_rc != 0)\n        return fu_rc;\n",
               who, bsyms);
    const char *tb = batch_tail_bytes(e);
    if (tb)  /* the last rows' region after the intermediates, before the scratch */
        buf_printf(c, "    size_t fu_tail = fu_total;\n    fu_total += %s;\n", tb);
    emit_cpu_check(e, who, "fu_run_batch");
    emit_workspace_checks(e, who, bsyms);
    buf_puts(c, "    fu_bargs fb;\n    memset(&fb, 0, sizeof fb);\n");
    if (g->nweights)
        buf_puts(c, "    fb.a.w = w;\n");
    emit_pool_run(e, who, "fb.a.", bsyms,
                  fu_format("%s    fb.nseq = nseq;\n    fb.tok = %s;\n%s",
                            g->ncaches ? fu_format("    fb.caches = caches;\n    fb.past = %s;\n", past) : "", tok,
                            tb ? "    fb.tail = fu_tail;\n" : ""),
                  "&fb", "fu_run_batch");
    /* outputs not computed in place: every token's rows (batch_plan) */
    for (i = 0; i < g->noutputs; i++) {
        const Node *x = g->outputs[i]->in[0];
        if (e->home[x->id] != HOME_OUTPUT)
            buf_printf(c, "    memcpy(%s, %s, (size_t)(fu_b%d * %lld) * sizeof *%s);\n", e->c_out[i], e->ref[x->id],
                       e->btok, (long long)batch_row(e, x), e->c_out[i]);
    }
    buf_puts(c, "    return 0;\n}\n\n");
}

static KCall **emit_kernels(Emit *e) {
    const Graph *g = e->g;
    KCall **calls = fu_alloc(sizeof *calls * (size_t)(g->nkernels + 1));
    FU_ASSERT(g->nkernels == 0 || g->kernels);
    for (int i = 0; i < g->nnodes; i++)
        if (is_computed(g->nodes[i]) && g->nodes[i]->kernel < 0 && !g->nodes[i]->folded)
            fu_internal(__FILE__, __LINE__, "emit_c: %%%d %s was not scheduled", i,
                        op_info[g->nodes[i]->op].name);
    /* the user index (kern_is_result) is built now, not inside a kernel's
     * temporaries */
    Node **users;
    if (g->nnodes)
        ir_users(g, g->nodes[0], &users);
    for (int kid = 0; kid < g->nkernels; kid++) {
        FU_ASSERT(g->kernels[kid] && g->kernels[kid]->id == kid);
        FuMark m = fu_arena_mark();
        calls[kid] = emit_kernel(e, g->kernels[kid]);
        if (calls[kid]) {
            calls[kid] = keep_call(calls[kid], m);
            if (calls[kid]->scratch)
                add_scratch(e, calls[kid]->scratch);
        } else {
            fu_arena_release_to(m);
        }
        if (!e->spool_tried && e->c.len > SPOOL_AFTER) {
            e->spool = spool_open();
            e->spool_tried = true;
        }
        if (e->spool)
            spool_c(e);
    }
    return calls;
}

/* The kernels after a last-rows slice, written again for a batch: their
 * tail tensors get nseq * len rows (T * len while writing, T = fb->nseq in
 * the call) in the batch's own region (fu_bt<id>), so the final norm and
 * the lm_head run once over every sequence's last rows. */
static void emit_rows_kernels(Emit *e, KCall **calls) {
    const Graph *g = e->g;
    int n = g->nnodes, i;
    if (e->batch_no)
        return;
    Dim *shape0 = fu_alloc(sizeof *shape0 * (size_t)(n + 1));
    const char **ref = fu_alloc(sizeof *ref * (size_t)(n + 1)), **bref = fu_alloc(sizeof *bref * (size_t)(n + 1));
    const char *suffix = e->suffix, *rsuffix = fu_format("%s_rows", e->suffix);
    for (i = 0; i < n; i++) {
        const Node *r = g->nodes[i];
        while (e->home[r->id] == HOME_VIEW)
            r = r->in[0];
        bref[i] = e->btail[r->id] && e->home[r->id] == HOME_SLOT ? fu_format("fu_bt%d", r->id) : e->ref[i];
    }
    for (int kid = 0; kid < g->nkernels; kid++) {
        if (!calls[kid] || calls[kid]->bclass != 3)
            continue;
        for (i = 0; i < n; i++) {
            Node *x = g->nodes[i];
            shape0[i] = x->rank ? x->shape[0] : dim_const(0);
            ref[i] = e->ref[i];
            if (e->btail[i] && x->rank && dim_is_const(x->shape[0])) {
                Dim d = dim_const(0);
                d.k[e->btok] = (int32_t)x->shape[0].c;
                x->shape[0] = d;
                e->ref[i] = bref[i];
            }
        }
        e->rows_pass = true;
        e->suffix = rsuffix;
        FuMark m = fu_arena_mark();
        KCall *kc = emit_kernel(e, g->kernels[kid]);
        e->rows_pass = false;
        e->suffix = suffix;
        for (i = 0; i < n; i++) {
            if (g->nodes[i]->rank)
                g->nodes[i]->shape[0] = shape0[i];
            e->ref[i] = ref[i];
        }
        if (!kc) {
            fu_arena_release_to(m);
            continue;
        }
        kc = keep_call(kc, m);
        calls[kid]->rcall = kc->call;
        if (kc->scratch)
            add_scratch(e, kc->scratch);
    }
}

/* What a run function gets from forward: fu_args holds every pointer and
 * symbol a kernel might need. */
static void emit_args(Emit *e) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i;
    buf_puts(c, "/* Everything the kernels need, passed through fr_parallel to a run function. */\n");
    buf_puts(c, "typedef struct fu_args {\n");
    if (g->nweights)
        buf_printf(c, "    const %s_weights *w;\n", g->name);
    if (g->ncaches)
        buf_printf(c, "    %s_cache *cache;\n", g->name);
    for (i = 0; i < g->nsyms; i++)
        buf_printf(c, "    int64_t %s;\n", g->sym_names[i]);
    for (i = 0; i < g->ninputs; i++)
        buf_printf(c, "    const %s *%s;\n", ctype(g->inputs[i]), e->c_in[i]);
    for (i = 0; i < g->noutputs; i++)
        buf_printf(c, "    %s *%s;\n", ctype(g->outputs[i]), e->c_out[i]);
    if (e->has_err)
        buf_puts(c, "    int64_t *err;        /* the first id out of range: node, element, id */\n");
    buf_puts(c, "    char *ws;\n    const size_t *off;\n} fu_args;\n\n");
    if (e->batch_no)
        return;
    buf_puts(c, "/* A batch: fu_args for the packed tokens (symbols: their sum, the largest\n"
                " * cached length), then every sequence's caches, tokens and cached rows. */\n");
    buf_puts(c, "typedef struct fu_bargs {\n    fu_args a;\n");
    if (g->ncaches)
        buf_printf(c, "    %s_cache *const *caches;\n", g->name);
    buf_puts(c, "    int64_t nseq;\n    const int64_t *tok;\n    size_t tail;        /* where the last rows' region begins */\n");
    if (g->ncaches)
        buf_puts(c, "    const int64_t *past;\n");
    buf_puts(c, "} fu_bargs;\n\n");
}

/* A per-sequence call in a batch: every sequence with tokens, fu_s, its
 * first packed row fu_r0 (declared where used); pre declares locals. */
static void emit_seq_loop(Buf *c, const char *ind, const char *bcall, const char *pre) {
    bool r0 = strstr(bcall, "fu_r0") != NULL;
    buf_printf(c, "%sfor (int64_t fu_s = 0%s; fu_s < fb->nseq; %s)\n%s    if (fb->tok[fu_s] > 0) {\n",
               ind, r0 ? ", fu_r0 = 0" : "", r0 ? "fu_r0 += fb->tok[fu_s++]" : "++fu_s", ind);
    if (*pre)
        buf_printf(c, "%s        %s\n", ind, pre);
    buf_printf(c, "%s        %s\n%s    }\n", ind, bcall, ind);
}

/* A dim as C for sequence fu_s inside a batch's run function. */
static const char *seq_dim_c(const Emit *e, Dim d) {
    const Graph *g = e->g;
    Buf b = {0};
    buf_printf(&b, "(INT64_C(%lld)", (long long)d.c);
    for (int s = 0; s < g->nsyms; s++)
        if (d.k[s])
            buf_printf(&b, " + %d * fb->%s[fu_s]", d.k[s], s == e->btok ? "tok" : "past");
    buf_puts(&b, ")");
    return take(&b, "");
}

/* fu_aic: the cost of query tile `tile` of sequence fu_s of an attention
 * kernel (its rows x the keys they see, + 16 a row). */
static void emit_att_cost(Buf *c, const Emit *e, const BAtt *a, const char *ind, const char *tile) {
    long long bq = (long long)a->bq;
    buf_printf(c, "%sint64_t fu_aT = %s, fu_aS = %s, fu_at0 = (%s) * %lld;\n", ind, seq_dim_c(e, a->T),
               seq_dim_c(e, a->S), tile, bq);
    buf_printf(c, "%sint64_t fu_aq = fu_aT - fu_at0 < %lld ? fu_aT - fu_at0 : %lld;\n", ind, bq, bq);
    if (a->causal)
        buf_printf(c, "%sint64_t fu_ahi = fu_at0 + fu_aq + fu_aS - fu_aT < fu_aS ? fu_at0 + fu_aq + fu_aS - fu_aT : fu_aS;\n",
                   ind);
    else
        buf_printf(c, "%sint64_t fu_ahi = fu_aS;\n", ind);
    if (a->window)
        buf_printf(c, "%sint64_t fu_alo = fu_at0 + fu_aS - fu_aT + 1 - %lld;\n%sfu_alo = fu_alo < 0 ? 0 : fu_alo;\n",
                   ind, (long long)a->window, ind);
    else
        buf_printf(c, "%sconst int64_t fu_alo = 0;\n", ind);
    buf_printf(c, "%sdouble fu_aic = (double)fu_aq * (double)((fu_ahi > fu_alo ? fu_ahi - fu_alo : 0) + 16);\n", ind);
}

/* An attention kernel in a batch: with at least as many work items (kv
 * head, query tile) over all the sequences as threads, the appends of
 * every sequence, a barrier, then every item of every sequence in one pass,
 * each unsplit (its arithmetic that of the per-sequence kernel's unsplit
 * items, whatever the thread count), thread i taking the items whose
 * cost midpoint falls in the i-th nth of the total cost; with fewer items,
 * sequence after sequence, each split over the threads. */
static void emit_batch_attention(Emit *e, const KCall *kc) {
    Buf *c = &e->c;
    const BAtt *a = &kc->att;
    long long kvh = (long long)a->kvh, bq = (long long)a->bq;
    buf_puts(c, "    {   /* attention: the batch's work items in one pass */\n");
    buf_printf(c, "        int64_t fu_ani = 0;\n        for (int64_t fu_s = 0; fu_s < fb->nseq; ++fu_s)\n"
                  "            fu_ani += %lld * ((%s + %lld) / %lld);\n", kvh, seq_dim_c(e, a->T), bq - 1, bq);
    buf_puts(c, "        if (fu_ani < nth) {\n");
    emit_seq_loop(c, "            ", kc->bcall, "const int64_t fu_bw = -1;");
    buf_puts(c, "        } else {\n");
    emit_seq_loop(c, "            ", kc->bcall, "const int64_t fu_bw = -2 - fu_s % nth;");
    buf_puts(c, "            fr_barrier(nth);\n            double fu_atot = 0.0, fu_acum = 0.0;\n"
                "            for (int64_t fu_s = 0; fu_s < fb->nseq; ++fu_s)\n");
    buf_printf(c, "                for (int64_t fu_tile = 0; fu_tile < (%s + %lld) / %lld; ++fu_tile) {\n",
               seq_dim_c(e, a->T), bq - 1, bq);
    emit_att_cost(c, e, a, "                    ", "fu_tile");
    buf_printf(c, "                    fu_atot += %lld.0 * fu_aic;\n                }\n", kvh);
    buf_puts(c, "            for (int64_t fu_s = 0, fu_r0 = 0; fu_s < fb->nseq; fu_r0 += fb->tok[fu_s++]) {\n");
    buf_printf(c, "                int64_t fu_ant = (%s + %lld) / %lld;\n", seq_dim_c(e, a->T), bq - 1, bq);
    buf_printf(c, "                for (int64_t fu_bw = 0; fu_bw < %lld * fu_ant; ++fu_bw) {\n", kvh);
    emit_att_cost(c, e, a, "                    ", "fu_bw % fu_ant");
    buf_printf(c, "                    if ((int)((fu_acum + 0.5 * fu_aic) * (double)nth / fu_atot) == tid)\n"
                  "                        %s\n                    fu_acum += fu_aic;\n                }\n"
                  "            }\n        }\n    }\n", kc->bcall);
}

/*
 * The block on one thread of the pool: every kernel in order, with a
 * barrier before a kernel that touches memory an earlier kernel wrote since
 * the last barrier (or writes memory one read): independent neighbours such
 * as the q, k and v projections run without one.
 */
static void emit_run(Emit *e, KCall **calls, bool batch) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    int i, ncalls = 0;
    bool any_tail = false;
    unsigned syms = e->run_syms;
    size_t nkeys = 2 * (size_t)g->nnodes + 1;
    bool *wr = fu_alloc(sizeof *wr * nkeys);
    bool *rd = fu_alloc(sizeof *rd * nkeys);
    bool any_w = false, any_c = false;
    if (batch) {
        /* the symbols the kernels run once over the packed tokens take (T = the sum) */
        syms = 0;
        for (int kid = 0; kid < g->nkernels; kid++)
            if (calls[kid] && calls[kid]->bclass == 0)
                syms |= calls[kid]->used;
        buf_printf(c, "/* A batch of sequences on thread tid of nth (%s_forward_batch). */\n", g->name);
        buf_printf(c, "static %svoid fu_run_batch%s(void *ctx, int tid, int nth) {\n", v_attr(e->vt), e->suffix);
        buf_puts(c, "    const fu_bargs *fb = (const fu_bargs *)ctx;\n    const fu_args *fa = &fb->a;\n"
                    "    (void)fa;\n");
    } else {
        buf_printf(c, "/* The whole block on thread tid of nth (the CPU's monokernel). */\n");
        buf_printf(c, "static %svoid fu_run%s(void *ctx, int tid, int nth) {\n", v_attr(e->vt), e->suffix);
        buf_puts(c, "    const fu_args *fa = (const fu_args *)ctx;\n");
    }
    for (i = 0; i < g->nnodes; i++)
        if (e->run_used[i]) {
            any_w |= e->home[i] == HOME_WEIGHT || e->home[i] == HOME_FOLD;
            any_c |= e->home[i] == HOME_CACHE;
        }
    if (any_w)
        buf_printf(c, "    const %s_weights *w = fa->w;\n", g->name);
    if (any_c && !batch)
        buf_printf(c, "    %s_cache *cache = fa->cache;\n", g->name);
    for (i = 0; i < g->nsyms; i++)
        if (syms & (1u << i))
            buf_printf(c, "    int64_t %s = fa->%s;\n", g->sym_names[i], g->sym_names[i]);
    for (i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (!e->run_used[i])
            continue;
        switch (e->home[i]) {
        case HOME_INPUT:
            buf_printf(c, "    const %s *%s = fa->%s;\n", ctype(n), e->ref[i], e->ref[i]);
            break;
        case HOME_OUTPUT:
            buf_printf(c, "    %s *%s = fa->%s;\n", ctype(n), e->ref[i], e->ref[i]);
            break;
        case HOME_CONST:
            buf_printf(c, "    const float fu_c%d = %s;\n", i, c_float_lit(n->f[0]));
            break;
        case HOME_SLOT:
            if (batch && e->btail[i]) {  /* nseq blocks of its rows, in the batch's region */
                if (!any_tail)
                    buf_puts(c, "    char *fu_tp = fa->ws + fb->tail;\n");
                any_tail = true;
                buf_printf(c, "    %s *fu_bt%d = (%s *)fu_tp;\n    fu_tp += ((size_t)fb->nseq * %lldu * sizeof(%s) + "
                              "63u) & ~(size_t)63u;\n", ctype(n), i, ctype(n), (long long)ir_numel(n, NULL), ctype(n));
                break;
            }
            buf_printf(c, "    %s *%s = (%s *)(fa->ws + fa->off[%d]);\n", ctype(n), e->ref[i], ctype(n),
                       e->slot[i]);
            break;
        default:
            break;
        }
    }
    for (int kid = 0; kid < g->nkernels; kid++) {
        KCall *kc = calls[kid];
        bool need = false;
        if (!kc)
            continue;
        for (i = 0; i < kc->np; i++) {
            int m = mem_key(e, kc->root[i]);
            need |= wr[m] || (kc->written[i] && rd[m]);
        }
        if (need) {
            buf_puts(c, "    fr_barrier(nth);\n");
            memset(wr, 0, sizeof *wr * nkeys);
            memset(rd, 0, sizeof *rd * nkeys);
        }
        for (i = 0; i < kc->np; i++) {
            int m = mem_key(e, kc->root[i]);
            rd[m] = true;
            wr[m] |= kc->written[i];
        }
        ncalls++;
        if (!batch || kc->bclass == 0 || kc->bclass == 3) {
            buf_printf(c, "    %s\n", batch && kc->bclass == 3 ? kc->rcall : kc->call);
            continue;
        }
        if (kc->att.on)
            emit_batch_attention(e, kc);
        else
            emit_seq_loop(c, "    ", kc->bcall, "");
    }
    if (ncalls == 0)
        buf_puts(c, "    (void)fa;\n    (void)tid;\n    (void)nth;\n");
    buf_puts(c, "}\n\n");
}

/* Makes v the variant being emitted: its vocabulary and its functions' suffix. */
static void use_variant(Emit *e, const Target *v, bool suffixed) {
    e->vt = v;
    e->suffix = suffixed ? fu_format("_%s", v->tag) : "";
}

/* One variant's vocabulary and kernels, into e->c; returns their calls. */
static KCall **emit_variant_kernels(Emit *e, const Target *v, bool suffixed) {
    use_variant(e, v, suffixed);
    if (v->guard[0])
        buf_printf(&e->c, "#if %s\n\n", v->guard);
    v_prelude(&e->c, v);
    ty_prelude(&e->c, v, e->types);
    KCall **calls = emit_kernels(e);
    emit_rows_kernels(e, calls);
    note_lifetimes(e, calls);
    return calls;
}

/* The variant's run function, after its kernels (the workspace is planned). */
static void emit_variant_run(Emit *e, const Target *v, bool suffixed, KCall **calls) {
    use_variant(e, v, suffixed);
    emit_run(e, calls, false);
    if (!e->batch_no)
        emit_run(e, calls, true);
    if (v->guard[0])
        buf_printf(&e->c, "#endif /* %s */\n\n", v->guard);
}

/* multi: the first variant (in the order the user listed them) whose CPU
 * features this machine has. */
static void emit_pick(Emit *e) {
    const Target *t = e->t;
    Buf *c = &e->c;
    buf_puts(c, "/* The first variant this CPU can run, in the order of --target; -1 for none. */\n");
    buf_puts(c, "static int fu_pick(void) {\n    unsigned f = fr_cpu_features();\n");
    for (int i = 0; i < t->nvariants; i++) {
        const Target *v = t->variants[i];
        if (v->guard[0])
            buf_printf(c, "#if %s\n", v->guard);
        if (v->features)
            buf_printf(c, "    if ((f & 0x%xu) == 0x%xu)\n        return %d;\n", v->features, v->features, i);
        else
            buf_printf(c, "    return %d;\n", i);
        if (v->guard[0])
            buf_puts(c, "#endif\n");
    }
    buf_puts(c, "    (void)f;\n    return -1;\n}\n\n");
}

static void emit_c_file(Emit *e, const char *header_name) {
    const Graph *g = e->g;
    Buf *c = &e->c;
    const Target *t = e->t;
    buf_printf(c, "/*\n * Generated by fusec %s from block %s, target %s.  Do not edit.\n", FUSEC_VERSION,
               g->name, t->name);
    buf_printf(c, " * The interface is documented in %s.\n */\n", header_name);
    buf_printf(c, "#include \"%s\"\n\n#include <math.h>\n#include <string.h>\n\n", header_name);
    buf_printf(c, "/* Every symbol must lie in [0 or 1, FU_SYM_MAX]: then no tensor has more than\n"
                  " * 2^53 elements and no index computation overflows int64_t. */\n"
                  "#define FU_SYM_MAX INT64_C(%lld)\n\n", (long long)e->sym_max);
    buf_puts(c, "/* [*b, *e) of [0, n) for thread tid of nth, in blocks of `grain` elements\n"
                " * (16 floats: threads never share a cache line they write). */\n"
                "static inline void fu_part(int64_t n, int64_t grain, int tid, int nth, int64_t *b, int64_t *e) {\n"
                "    int64_t bb, be;\n"
                "    fr_split((n + grain - 1) / grain, tid, nth, &bb, &be);\n"
                "    *b = bb * grain < n ? bb * grain : n;\n"
                "    *e = be * grain < n ? be * grain : n;\n"
                "}\n\n"
                "static inline size_t fu_max_size(size_t a, size_t b) {\n    return a > b ? a : b;\n}\n\n");
    ty_prelude_common(c, e->types);
    /* The kernels first, into their own buffers: which intermediates they
     * store, and in which kernels, decides the workspace layout that comes
     * before them in the file. */
    int nv = t->nvariants ? t->nvariants : 1;
    Buf top = *c;
    Buf *text = fu_alloc(sizeof *text * (size_t)nv);
    long *spooled = fu_alloc(sizeof *spooled * (size_t)nv);
    KCall ***calls = fu_alloc(sizeof *calls * (size_t)nv);
    for (int i = 0; i < e->g->nnodes; i++) {
        e->first[i] = INT_MAX;
        e->last[i] = -1;
    }
    for (int i = 0; i < nv; i++) {
        long before = e->spooled;
        memset(c, 0, sizeof *c);
        calls[i] = emit_variant_kernels(e, t->nvariants ? t->variants[i] : t, t->nvariants > 0);
        if (e->spool)
            spool_c(e);
        spooled[i] = e->spooled - before;
        text[i] = *c;
    }
    if (e->spool && fseek(e->spool, 0, SEEK_SET) != 0 && !e->werr) {
        e->werr = errno;
        e->wwhat = "kernels back from a temporary file";
    }
    *c = top;
    plan_storage(e);
    emit_layout(e);
    emit_args(e);
    if (t->nvariants == 0 && t->guard[0])
        buf_printf(c, "#if !(%s)\n#error \"this file was generated for target %s\"\n#endif\n\n", t->guard,
                   t->name);
    for (int i = 0; i < nv; i++) {
        if (spooled[i]) {
            flush_c(e);
            unspool(e, spooled[i]);
        }
        if (text[i].len)
            buf_puts(c, text[i].data);
        free(text[i].data);
        emit_variant_run(e, t->nvariants ? t->variants[i] : t, t->nvariants > 0, calls[i]);
    }
    if (t->nvariants)
        emit_pick(e);
    e->vt = t;
    emit_forward(e);
    if (!e->batch_no) {
        emit_workspace_size_batch(e);
        emit_forward_batch(e);
    }
    emit_bind_and_desc(e);
    flush_c(e);
    if (e->spool)
        fclose(e->spool);
    e->spool = NULL;
}

/* ---- the .h file --------------------------------------------------------- */

static void emit_h_file(Emit *e) {
    const Graph *g = e->g;
    Buf *h = &e->h;
    Buf guard = {0};
    const char *p;
    int i, s;
    buf_puts(&guard, "FUSEC_GEN_");
    for (p = g->name; *p; p++)
        buf_printf(&guard, "%c", toupper((unsigned char)*p));
    buf_puts(&guard, "_H");
    const char *gd = take(&guard, "");

    buf_printf(h, "/*\n * Block %s: generated by fusec %s, target %s.  Do not edit.\n *\n", g->name,
               FUSEC_VERSION, e->t->name);
    if (g->nsyms) {
        buf_puts(h, " * Symbols (bound at every call):");
        for (s = 0; s < g->nsyms; s++)
            buf_printf(h, " %s%s", g->sym_names[s],
                       s == g->cache_sym && g->ncaches ? " (rows already in the caches)" : "");
        buf_puts(h, "\n");
    }
    buf_puts(h, " *\n * Inputs:\n");
    for (i = 0; i < g->ninputs; i++)
        buf_printf(h, " *   %-30s %s\n", g->inputs[i]->name, type_text(g, g->inputs[i]));
    buf_puts(h, " * Outputs (written to out_NAME):\n");
    for (i = 0; i < g->noutputs; i++)
        buf_printf(h, " *   %-30s %s\n", g->outputs[i]->name, type_text(g, g->outputs[i]));
    if (g->nweights) {
        buf_printf(h, " * Weights (%s_bind finds each as prefix + name):\n", g->name);
        for (i = 0; i < g->nweights; i++)
            buf_printf(h, " *   %-30s %s\n", g->weights[i]->name, type_text(g, g->weights[i]));
    }
    if (g->ncaches) {
        buf_printf(h, " * Caches (rows [0, %s) hold earlier tokens; forward appends the new rows):\n",
                   g->sym_names[g->cache_sym]);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(h, " *   %-30s %s\n", g->caches[i]->name, type_text(g, g->caches[i]));
    }
    buf_puts(h, " *\n * Calling sequence (every int function returns 0 or a negative FR_E* code):\n");
    if (g->nweights)
        buf_printf(h, " *   %s_weights w;   %s_bind(&w, &file, \"model.layers.0.\", &err);\n", g->name,
                   g->name);
    if (g->ncaches)
        buf_printf(h, " *   %s_cache c;     %s_cache_init(&c, max_rows, &err);\n", g->name, g->name);
    buf_printf(h, " *   void *ws = fr_alloc(%s_workspace_size(%s));   (for the largest call)\n",
               g->name, sym_list(g, ""));
    buf_printf(h, " *   %s_forward(...);   once per call, with new symbol values each time\n", g->name);
    if (g->ncaches)
        buf_printf(h, " *   fr_free(ws);  %s_cache_free(&c);\n", g->name);
    else
        buf_puts(h, " *   fr_free(ws);\n");
    buf_puts(h, " * Outputs must not overlap inputs.  See docs/generated-api.md.\n */\n");
    buf_printf(h, "#ifndef %s\n#define %s\n\n#include \"fusec_rt.h\"\n\n", gd, gd);
    buf_puts(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");

    for (i = 0; i < g->nconsts; i++)
        buf_printf(h, "#define %s_%s %lld\n", g->name, mangle(g->const_names[i]),
                   (long long)g->const_values[i]);
    if (g->nconsts)
        buf_puts(h, "\n");

    if (g->nweights) {
        buf_printf(h, "/* One pointer per weight; field = checkpoint name with '.' -> '_'. */\n");
        buf_printf(h, "typedef struct %s_weights {\n", g->name);
        for (i = 0; i < g->nweights; i++)
            buf_printf(h, "    const %s *%s; /* %s %s */\n", ctype(g->weights[i]), e->c_w[i],
                       g->weights[i]->name, type_text(g, g->weights[i]));
        int nsrc = fold_sources(g, NULL);
        if (nsrc) {
            buf_puts(h, "    /* weight-only values, computed by NAME_bind / NAME_fold (docs/generated-api.md) */\n");
            for (i = 0; i < g->nnodes; i++)
                if (g->nodes[i]->folded)
                    buf_printf(h, "    float fu_fold%d[%lld]; /* %s */\n", i,
                               (long long)ir_numel(g->nodes[i], NULL), fold_text(g, g->nodes[i]));
            buf_printf(h, "    const void *fu_fold_src[%d]; /* the weights they were computed from */\n", nsrc);
        }
        buf_printf(h, "} %s_weights;\n\n", g->name);
        buf_printf(h, "/* Binds every weight by prefix + checkpoint name; checks dtype and shape.\n"
                      " * The pointers point into `file`, which must stay open. */\n"
                      "int %s_bind(%s_weights *w, const fr_st *file, const char *prefix, fr_err *err);\n\n",
                   g->name, g->name);
        if (nsrc)
            buf_printf(h, "/* Computes the weight-only values (fu_fold*) from the bound weights; %s_bind\n"
                          " * calls it.  Call it again after pointing a weight elsewhere or changing\n"
                          " * its data: forward refuses pointers that differ from the folded ones. */\n"
                          "int %s_fold(%s_weights *w, fr_err *err);\n\n",
                       g->name, g->name, g->name);
    }
    if (g->ncaches) {
        buf_printf(h, "/* KV caches of `capacity` rows each. */\ntypedef struct %s_cache {\n", g->name);
        for (i = 0; i < g->ncaches; i++)
            buf_printf(h, "    %s *%s; /* %s */\n", ctype(g->caches[i]), e->c_cache[i], type_text(g, g->caches[i]));
        buf_printf(h, "    int64_t capacity;\n} %s_cache;\n\n", g->name);
        buf_printf(h, "/* Allocates caches of `capacity` rows (64-byte aligned); %s_cache_free releases\n"
                      " * them (safe on a zeroed or already freed cache). */\n"
                      "int %s_cache_init(%s_cache *c, int64_t capacity, fr_err *err);\n"
                      "void %s_cache_free(%s_cache *c);\n\n",
                   g->name, g->name, g->name, g->name, g->name);
    }
    buf_printf(h, "/* Bytes of workspace forward needs for these symbol values (64-byte aligned\n"
                  " * memory, e.g. fr_alloc): the intermediates and the kernels' scratch for\n"
                  " * fr_get_num_threads() threads as set now; 0 when the symbols are out of\n"
                  " * range (fr_last_error says which). */\n"
                  "size_t %s_workspace_size(%s);\n\n", g->name, ws_params(g));
    buf_puts(h, "/* Runs the block");
    if (g->ncaches)
        buf_printf(h, " on new rows; rows [0, %s) of the caches hold the earlier ones and\n"
                      " * the new rows are appended after them",
                   g->sym_names[g->cache_sym]);
    buf_printf(h, ".  Returns 0, or without computing anything\n"
                  " * FR_ENULL (a NULL pointer, an unbound weight), FR_EDIM (a symbol out of\n"
                  " * range)%s, FR_ECPU (the CPU lacks the target's\n"
                  " * features) or FR_EWORKSPACE (workspace_bytes too small, or misaligned),\n"
                  " * with the cause in fr_last_error().  Runs on up to fr_get_num_threads()\n"
                  " * threads (fr_set_num_threads, FUSE_NUM_THREADS), as many as the workspace\n"
                  " * has scratch for; calls on different caches and workspaces may run at\n"
                  " * once (the thread pool serves them one after another).%s */\n",
               g->ncaches ? ", FR_ECAPACITY (the caches are too small)" : "",
               e->has_err ? "\n * An id of embedding or gather outside its table gives FR_EINDEX after\n"
                            " * the run, naming the id: the outputs (and the new cache rows) are\n"
                            " * then unspecified, but no row past the table is ever read."
                          : "");
    buf_printf(h, "int %s_forward(%s);\n\n", g->name,
               forward_params(e, fu_format("%*s", (int)strlen(g->name) + 13, "")));
    if (!e->batch_no)
        buf_printf(h, "/* A batch of nseq independent sequences in one call (docs/generated-api.md,\n"
                      " * \"Batches\"): sequence s has %s[s] new tokens%s.\n"
                      " * Inputs and outputs hold every sequence's tokens one after another (%s =\n"
                      " * the sum of %s[s]); an output marked \"per sequence\" holds one such block\n"
                      " * per sequence.  The workspace: %s_workspace_size_batch (at least\n"
                      " * workspace_size(sum of %s, largest %s)).\n"
                      " * Returns what forward does, FR_EDIM for nseq < 1 or %s[s] < %d, FR_EINVAL\n"
                      " * for two sequences sharing caches%s. */\n"
                      "size_t %s_workspace_size_batch(%s);\n"
                      "int %s_forward_batch(%s);\n\n",
                   g->sym_names[e->btok],
                   g->ncaches ? fu_format(" after %s[s] rows of its caches *caches[s]", g->sym_names[g->cache_sym])
                              : "",
                   g->sym_names[e->btok], g->sym_names[e->btok], g->name, g->sym_names[e->btok],
                   g->ncaches ? g->sym_names[g->cache_sym] : "-", g->sym_names[e->btok], batch_min_tok(e),
                   batch_min_tok(e) ? "" : fu_format("; a sequence with %s[s] = 0 is idle:\n * skipped", g->sym_names[e->btok]),
                   g->name, fu_format("int64_t nseq, %s", sym_args_fmt(g, "const int64_t *%s")), g->name,
                   batch_params(e, fu_format("%*s", (int)strlen(g->name) + 19, "")));
    else
        buf_printf(h, "/* No %s_forward_batch: %s. */\n\n", g->name, e->batch_no);
    buf_printf(h, "/* The target variant forward runs on this CPU, e.g. \"x86-64-avx2\" (a\n"
                  " * multi-target file picks one at run time; \"none\" if none fits). */\n"
                  "const char *%s_variant(void);\n\n", g->name);
    buf_printf(h, "/* The same block for generic drivers (fusec check, benchmarks). */\n"
                  "extern const fr_block_desc %s_desc;\n\n", g->name);
    buf_puts(h, "#ifdef __cplusplus\n}\n#endif\n");
    buf_printf(h, "#endif /* %s */\n", gd);
}

/* ---- entry ------------------------------------------------------------------ */

static int write_all(FILE *f, const Buf *b, const char *what) {
    if ((b->len && fwrite(b->data, 1, b->len, f) != b->len) || fflush(f) != 0 || ferror(f)) {
        diag_plain_error("cannot write the generated %s: %s", what, strerror(errno));
        return -1;
    }
    return 0;
}

int emit_c(const Graph *g, const Target *t, FILE *c_out, FILE *h_out, const char *header_name) {
    Emit e;
    FU_ASSERT(g && c_out && h_out && header_name);
    memset(&e, 0, sizeof e);
    /* The emitters read symbol and block names from the graph: a copy
     * holds their C spellings (c_ident); the nodes are shared. */
    if (g->name && valid_name(g->name, false)) {
        Graph *cg = fu_alloc(sizeof *cg);
        *cg = *g;
        cg->name = c_ident(g->name, false);
        for (int i = 0; i < g->nsyms; i++)
            if (valid_name(g->sym_names[i], false))
                cg->sym_names[i] = c_ident(g->sym_names[i], true);
        g = cg;
    }
    e.g = g;
    e.t = t ? t : target_find("generic");
    FU_ASSERT(e.t);
    if (strpbrk(header_name, "\"\\\n") || !*header_name) {
        diag_plain_error("header name '%s' cannot be #included", header_name);
        return -1;
    }
    if (check_names(&e) != 0 || pick_sym_max(&e) != 0)
        return -1;
    place_buffers(&e);
    e.batch_no = batch_plan(&e);
    for (int i = 0; i < g->nnodes; i++)
        e.types |= 1u << g->nodes[i]->dtype | (linear_bf16(g->nodes[i]) ? TY_BF16R : 0);
    e.run_used = fu_alloc(sizeof *e.run_used * (size_t)(g->nnodes + 1));
    e.first = fu_alloc(sizeof *e.first * (size_t)(g->nnodes + 1));
    e.last = fu_alloc(sizeof *e.last * (size_t)(g->nnodes + 1));
    e.cfile = c_out;
    emit_c_file(&e, header_name);
    if (e.werr) {
        diag_plain_error("cannot write the generated %s: %s", e.wwhat, strerror(e.werr));
        free(e.c.data);
        return -1;
    }
    emit_h_file(&e);
    for (int i = 0; i < e.nseen; i++) {
        free(e.seen[i].text);
        free(e.seen[i].name);
    }
    free(e.seen);
    int rc = write_all(h_out, &e.h, "header") == 0 && write_all(c_out, &e.c, "C file") == 0 ? 0 : -1;
    free(e.h.data);
    free(e.c.data);
    return rc;
}
