/*
 * fusec.h - the compiler's one internal header.
 *
 * Sections mirror the files: util.c (arena, strings), diag.c (located
 * diagnostics), dim.c (symbolic dimensions), the front end (lex.l, parse.y,
 * ast.c, sema.c), the IR (ir.c, shape.c, print.c, verify.c), the passes,
 * interp.c (the float64 oracle), emit_c.c (C code per target), check.c and
 * main.c.  Everything not declared here is static to its file.
 *
 * The pipeline (main.c):  parse -> sema (AST to graph IR) -> verify ->
 * passes, each followed by verify -> emit.
 */
#ifndef FUSEC_H
#define FUSEC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FUSEC_VERSION "0.1.0"

/* ======================================================================
 * util.c
 * ====================================================================== */

/* The compiler allocates from one arena that lives as long as the process
 * (chibicc style): nothing is freed node by node.  Out of memory is fatal. */
void *fu_alloc(size_t n);            /* zeroed */
char *fu_strdup(const char *s);
char *fu_strndup(const char *s, size_t n);
char *fu_format(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Frees the whole arena (for drivers that compile many inputs, e.g. the
 * fuzz harness); every pointer into it dies. */
void fu_arena_release(void);
/* A point in the arena's history, and going back to it: everything
 * allocated since is freed (and what is reused is overwritten).  For a
 * stage whose temporaries are many and whose results are few (the emitter,
 * per kernel): copy the results out, release, copy them back. */
typedef struct FuMark {
    void *chunk;
    size_t used;
} FuMark;
FuMark fu_arena_mark(void);
void fu_arena_release_to(FuMark m);
/* A map from strings to pointers for name lookups (the arena owns it; keys
 * are not copied and must outlive it).  strmap_put returns the previous
 * value (NULL if none); strmap_has tells a NULL value from no key. */
typedef struct StrMap StrMap;
StrMap *strmap_new(void);
void *strmap_get(const StrMap *m, const char *key);
bool strmap_has(const StrMap *m, const char *key);
void *strmap_put(StrMap *m, const char *key, void *val);
size_t strmap_count(const StrMap *m);
/* Reads a whole file (NUL-terminated).  NULL with errno set on failure;
 * a FIFO or socket is refused without blocking.  fu_read_error(errno) says
 * why the last call failed. */
char *fu_read_file(const char *path, size_t *len);
const char *fu_read_error(int err);

/* Where fusec check (and the unit tests) find the runtime's headers and
 * sources and libfusec_rt.a, and whether the build is sanitized: the
 * Makefile passes all three; these are the defaults for a plain cc. */
#ifndef FUSEC_RUNTIME_DIR
#define FUSEC_RUNTIME_DIR "runtime"
#endif
#ifndef FUSEC_LIB_DIR
#define FUSEC_LIB_DIR "build"
#endif
#ifndef FUSEC_SAN
#define FUSEC_SAN 0
#endif

/* A growable string buffer for emitters and printers. */
typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;
void buf_printf(Buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void buf_puts(Buf *b, const char *s);
void buf_vprintf(Buf *b, const char *fmt, va_list ap);

/* Internal errors: a bug in fusec, not in the user's input.  They name the
 * compiler's own file and line and exit with status 70 (EX_SOFTWARE). */
#if defined(__GNUC__)
#define FU_NORETURN __attribute__((noreturn))
#else
#define FU_NORETURN
#endif
FU_NORETURN void fu_internal(const char *file, int line, const char *fmt, ...);
#define FU_ASSERT(c) \
    ((c) ? (void)0 : fu_internal(__FILE__, __LINE__, "assertion failed: %s", #c))
#define FU_UNREACHABLE() fu_internal(__FILE__, __LINE__, "unreachable")

/* Exit codes of the fusec command. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,      /* user error in input, or `check` out of tolerance */
    EXIT_USAGE = 2,     /* bad command-line arguments */
    EXIT_INTERNAL = 70  /* a bug in fusec */
};

/* ======================================================================
 * diag.c - gcc/clang-style diagnostics
 * ====================================================================== */

typedef struct SrcLoc {
    const char *file;   /* as the user named it; NULL for "no location" */
    int line, col;      /* 1-based */
    int len;            /* columns to underline (>= 1) */
} SrcLoc;

/* Registers a file's text so diagnostics can quote its lines. */
void diag_add_source(const char *file, const char *text);
/* Prints "file:line:col: error: msg", the source line and a caret with
 * tildes under loc->len columns, to stderr; counts the error. */
void diag_error(SrcLoc loc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void diag_note(SrcLoc loc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* An error with no source location: "fusec: error: msg". */
void diag_plain_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int diag_error_count(void);
void diag_reset(void);              /* for unit tests */
void diag_set_max_errors(int n);    /* n <= 0: never stop (fuzzing) */
void diag_forget_sources(void);     /* before fu_arena_release */
/* Stop after this many errors (default 20). */
#define DIAG_MAX_ERRORS 20

/* ======================================================================
 * dim.c - symbolic dimensions
 * ====================================================================== */

#define FU_MAX_RANK 4
#define FU_MAX_SYMS 8

/* A dimension is affine in the block's symbolic dims:
 *   value = c + sum_s k[s] * sym[s]
 * Constants fold (H*HD is 256); T, P and P+T stay symbolic. */
typedef struct Dim {
    int64_t c;
    int32_t k[FU_MAX_SYMS];
} Dim;

Dim dim_const(int64_t c);
Dim dim_sym(int s);
/* Checked arithmetic: false when the result is too large (a constant part
 * beyond +-INT64_MAX or a multiplier beyond +-INT32_MAX), *out untouched.
 * Whatever builds a dim from the user's input uses these and reports
 * "dimension too large".  dim_mul is also false when neither side is
 * constant (not affine; the caller tells the two apart). */
bool dim_add_ok(Dim a, Dim b, Dim *out);
bool dim_sub_ok(Dim a, Dim b, Dim *out);
bool dim_neg_ok(Dim a, Dim *out);
bool dim_mul(Dim a, Dim b, Dim *out);
/* Whether d is within those ranges. */
bool dim_ok(Dim d);
/* a + b and a - b of dims a verified graph holds (the emitters, the tests);
 * an overflow there is a bug in fusec (internal error). */
Dim dim_add(Dim a, Dim b);
Dim dim_sub(Dim a, Dim b);
bool dim_is_const(Dim d);
bool dim_eq(Dim a, Dim b);
/* d's value at the symbol values syms; INT64_MAX when that overflows. */
int64_t dim_eval(Dim d, const int64_t *syms);
/* Writes "256", "T", "P+T", "2*T-1" with the graph's symbol names. */
void dim_print(Buf *b, Dim d, const char *const *sym_names);

/* ======================================================================
 * IR - ir.c (building), shape.c (type rules), print.c, verify.c
 * ====================================================================== */

typedef enum Op {
#define OP(id, name, nmin, nmax, cat) OP_##id,
#include "ops.def"
#undef OP
    OP_COUNT
} Op;

typedef enum OpCat {
    CAT_SOURCE, CAT_UNARY, CAT_BINARY, CAT_REDUCE, CAT_MATMUL, CAT_SHAPE,
    CAT_NORM, CAT_SOFTMAX, CAT_ROPE, CAT_ATTENTION, CAT_CACHE, CAT_SINK, CAT_CONVERT, CAT_INDEX
} OpCat;

typedef struct OpInfo {
    const char *name;
    int min_in, max_in;
    OpCat cat;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];
/* Op by its DSL/IR name, or -1. */
int op_lookup(const char *name);

typedef enum DType {
#define DT(id, name, fr, ctype, kind) DT_##id,
#include "dtypes.def"
#undef DT
    DT_COUNT
} DType;
const char *dtype_name(DType t); /* "f32", "bf16", ... (dtype.c) */

#define FU_MAX_IN 4

typedef struct Node Node;
struct Node {
    int id;             /* dense, in topological order; printed as %id */
    Op op;
    DType dtype;
    int rank;
    Dim shape[FU_MAX_RANK];
    int nin;
    Node *in[FU_MAX_IN];
    double f[2];        /* float attributes (see ops.def) */
    int64_t i[FU_MAX_RANK + 1]; /* integer attributes (see ops.def); transpose's permutation fills FU_MAX_RANK */
    const char *name;   /* interface name of input/weight/cache/output */
    const char *label;  /* the DSL variable it came from, for dumps; may be NULL */
    SrcLoc loc;         /* where the DSL wrote it */
    int nuses;          /* consumers, maintained by ir_recount */
    int kernel;         /* the kernel it was scheduled into; -1 for none */
    bool folded;        /* weight-only: computed when weights are bound (fold.c) */
    /* weights of a --tp block (tp.c): 0, whole; else this rank's slice
     * [tp_start, tp_start + shape[tp_axis - 1]) along axis tp_axis - 1 of
     * the checkpoint's tensor, whose extent there is tp_full */
    int tp_axis;
    int64_t tp_start, tp_full;
};

/*
 * Kernels: after scheduling, every node that does work belongs to exactly
 * one kernel (node->kernel is its index in g->kernels) and a kernel's nodes
 * are emitted as one C function.  The kind says which emitter writes it:
 *
 *   KK_SINGLE     one op as plain loops (emit_c.c) - the unfused path (-O0)
 *   KK_ELEMWISE   a DAG of unary/binary ops over one shape: one loop (emit_fused.c)
 *   KK_ROWWISE    norm or softmax over the last axis with elementwise
 *                 prologue/epilogue ops (scale, mask, weight, bias) (emit_fused.c)
 *   KK_GEMM       one or more linear/matmul nodes that share their A operand,
 *                 optionally preceded by the norm that produces A (a prologue:
 *                 the normalized tensor is never stored), followed by
 *                 elementwise epilogue ops on the accumulator tile (bias,
 *                 activation, residual add, scale, the silu(g)*u of two
 *                 linears, rope, or an rms_norm over each head of a
 *                 [rows, heads, hd] view of the tile) (emit_gemm.c)
 *   KK_ATTENTION  flash attention: append, rope of q and k, q.k^T, scale,
 *                 causal mask, online softmax, .v (emit_fused.c); nodes: one
 *                 attention, the appends feeding it, rope of q and of the new
 *                 k rows, column slices of a fused qkv (fuse_attention.c)
 *   KK_MLP        the whole MLP (norm, gate/up linears, activation, mul, down
 *                 linear, residual) as one tiled pass in which the [T, F]
 *                 intermediate is never stored whole (emit_gemm.c)
 *
 * A kernel's "results" are its nodes read outside it (or outputs); only
 * those are stored.  Kernels are numbered in execution order.
 */
typedef enum KernelKind {
    KK_SINGLE, KK_ELEMWISE, KK_ROWWISE, KK_GEMM, KK_ATTENTION, KK_MLP
} KernelKind;

typedef struct Kernel {
    int id;
    KernelKind kind;
    int nnodes;
    Node **nodes;       /* topological order */
    const char *note;   /* what it absorbed, for --explain; may be NULL */
} Kernel;

typedef struct Graph {
    const char *name;                 /* block name; a C identifier */
    int nsyms;
    const char *sym_names[FU_MAX_SYMS];
    int cache_sym;                    /* the symbol caches are indexed by, or -1 */
    int nnodes, cap;
    Node **nodes;                     /* topological order */
    /* Interface in declaration order (each also appears in nodes). */
    int ninputs, nweights, ncaches, noutputs;
    Node **inputs, **weights, **caches, **outputs;
    /* Named constant dims (D = 256, ...) for the generated header. */
    int nconsts;
    const char **const_names;
    int64_t *const_values;
    int nkernels;                     /* set by scheduling */
    Kernel **kernels;                 /* [nkernels] */
    /* What the fusion passes did and refused, for --explain (fuse_note). */
    int nfuse_notes;
    const char **fuse_notes;
    /* Indexes derived from the above and rebuilt on demand; NULL when
     * stale.  ir_node, ir_replace and ir_dce drop `users`; pass_schedule
     * and sched_compact drop `sched` (schedule.c). */
    struct UserIndex *users;          /* ir_users */
    struct Sched *sched;              /* kernel positions for merge checks */
    StrMap *note_set;                 /* fuse_note's duplicates */
    StrMap *const_index;              /* ir_add_const_dim: name -> index + 1 */
    struct Rewrite *rw;               /* during ir_rewrite_all (schedule.c); else NULL */
    int tp_size, tp_rank;             /* --tp=N --tp-rank=R (tp.c); 0, 0 for a whole block */
    int64_t tp_vocab_start, tp_vocab; /* vocabulary-parallel logits: columns [start, start + n) of tp_vocab; 0, 0 */
} Graph;

Graph *ir_graph_new(const char *name);
int ir_add_sym(Graph *g, const char *name);           /* index; -1 if full */
int ir_find_sym(const Graph *g, const char *name);    /* index or -1 */
void ir_add_const_dim(Graph *g, const char *name, int64_t value);
/* Appends a node with these inputs; type not yet set.  Interface nodes
 * (input, weight, cache, output) are also recorded in the graph's lists. */
Node *ir_node(Graph *g, Op op, int nin, Node *const *in, SrcLoc loc);
/* The f32 value of x (bf16 or f16), for a use by `before`, the graph's
 * last node: an OP_CONVERT of x made earlier, else a new one placed just
 * before `before`. */
Node *ir_convert(Graph *g, Node *x, Node *before);
/* Recomputes nuses for every node. */
void ir_recount(Graph *g);
/* Removes nodes that no output depends on (caches' appends stay), renumbers. */
void ir_dce(Graph *g);
/* Elements of a node for given symbol values. */
int64_t ir_numel(const Node *n, const int64_t *syms);

/* shape.c: whether operand j of n may be of dtype t as stored.  f32 and i32
 * everywhere (the type rules say which); bf16 and f16 only where a kernel
 * reads them itself - the weight of linear, the table of embedding, convert;
 * q8_0 and q4_0 only as the weight of linear.  Sema converts a bf16/f16
 * operand anywhere else (OP_CONVERT). */
bool ir_takes(const Node *n, int j, DType t);
/* shape.c: computes n's dtype/rank/shape from its inputs and attributes.
 * For sources and reshape the builder sets the type, and this only checks it.
 * Returns true, or false with a user-facing reason in why. */
bool ir_infer(Node *n, const Graph *g, char *why, size_t whylen);

/* print.c: the textual IR (`fusec --emit=ir`). Deterministic. */
void ir_print(FILE *out, const Graph *g);
/* Type as text, e.g. "f32[T, 256]". */
void ir_type_str(Buf *b, const Node *n, const Graph *g);

/* verify.c: structural and type checks; on failure reports an internal
 * error naming the pass that broke the graph, with the IR dump. */
void ir_verify(const Graph *g, const char *after_pass);
/* The same checks, returning the first problem instead (for tests). */
bool ir_check(const Graph *g, char *why, size_t whylen);

/* ======================================================================
 * dtype.c - element types (dtypes.def): facts, conversions, quantizers
 * ====================================================================== */

typedef enum DKind { DK_F32, DK_INT, DK_HALF, DK_QUANT } DKind;

typedef struct DTypeInfo {
    const char *name;       /* "q8_0" */
    int fr;                 /* the runtime's fr_dtype */
    const char *ctype;      /* C type of one stored unit: "float", "uint16_t", "uint8_t" */
    DKind kind;
    int block;              /* elements per block: 1, or 32 for DK_QUANT */
    int block_bytes;        /* bytes per block */
} DTypeInfo;

const DTypeInfo *dt_info(DType t);
int dt_lookup(const char *name);        /* the DType called name, or -1 */
int dt_from_fr(int fr);                 /* the DType of a runtime fr_dtype, or -1 */
/* The names of the types of the given kinds (bits 1 << DK_*), "f32, bf16". */
const char *dt_names(unsigned kinds);
/* C units (of ctype) of one row of n elements: n, or the blocks' bytes. */
int64_t dt_row_units(DType t, int64_t n);
/* float16 and bfloat16: round to nearest even, overflow to infinity, NaN
 * stays a (quiet) NaN; the reverse conversions are exact. */
uint16_t dt_f32_to_f16(float x);
float dt_f16_to_f32(uint16_t h);
uint16_t dt_f32_to_bf16(float x);
float dt_bf16_to_f32(uint16_t h);
/* Stores a row of n values as type t into dst (dt_row_units(t, n) units;
 * quantized types block by block as llama.cpp's reference quantizers do,
 * the last block padded with zeros).  Returns -1, or for a quantized type
 * the index of the first value it cannot represent: NaN, infinity, or one
 * whose block scale overflows float16. */
int64_t dt_store_row(DType t, const float *x, int64_t n, void *dst);
/* The exact values of a stored row of n elements. */
void dt_load_row(DType t, const void *src, int64_t n, double *out);
/* --weight-type PATTERN=TYPE rules (a glob on the checkpoint name; the last
 * match wins), which sema applies to the declarations. */
bool dt_add_weight_rule(const char *spec, char *why, size_t whylen);
int dt_weight_rule(const char *name, const char **pattern); /* DType or -1 */
bool dt_set_kv_type(const char *name, char *why, size_t whylen);   /* --kv-type */
int dt_kv_type(void);                                   /* DType of every cache, or -1 */
void dt_clear_rules(void);                              /* the weight rules and --kv-type */

/* ======================================================================
 * Front end - lex.l, parse.y, ast.c, sema.c
 * ====================================================================== */

/* Parses path (and the files it imports) and lowers its block to a graph.
 * `block` selects a block by name when the file has several (NULL: the only
 * one / the last).  Returns NULL after reporting errors with diag_error. */
/* Loads config.json for the names config.KEY (fusec --config); 0, or -1
 * after reporting. */
int fe_load_config(const char *path);
Graph *fe_compile_file(const char *path, const char *block);
/* The same from text in memory (for tests); `path` is used in messages. */
Graph *fe_compile_string(const char *path, const char *text, const char *block);
/* The files read so far (the main file, then imports), for dependency files. */
int fe_dependency_count(void);
const char *fe_dependency(int i);
void fe_forget_dependencies(void);  /* before fu_arena_release */

/* Limits that keep bad input from exhausting the C stack. */
#define FE_MAX_NESTING 200  /* expression depth sema will walk */
#define FE_MAX_INLINE 64    /* nested fn calls being inlined */

/* A token's span as the lexer tracks it (bison's YYLTYPE, see parse.y);
 * columns are 1-based bytes, last_column inclusive. */
typedef struct FeLoc {
    int first_line, first_column, last_line, last_column;
} FeLoc;

/* The AST: one tagged struct, every node with its location.  Fields a
 * kind does not use stay zero.  Lists are arena arrays that grow. */
typedef enum AstKind {
    /* expressions */
    AST_NUM,      /* num; is_int and ival when written without '.' or 'e' */
    AST_STR,      /* str */
    AST_BOOL,     /* ival 0 or 1 */
    AST_NAME,     /* name */
    AST_LIST,     /* [list...] */
    AST_BINOP,    /* a op b, op one of '+' '-' '*' '/' '<' '>' or an AST_OP_* (ast_op_text) */
    AST_NEG,      /* -a */
    AST_CALL,     /* name(list...); keyword arguments are AST_KWARG */
    AST_KWARG,    /* name = a */
    /* declarations and statements */
    AST_IMPORT,   /* str: the path as written */
    AST_DIMS,     /* dim list...; each an AST_DIM */
    AST_DIM,      /* name [= a]; no value: symbolic */
    AST_CONST,    /* const name = a */
    AST_INPUT,    /* input name: type */
    AST_WEIGHT,   /* weight name: type */
    AST_CACHE,    /* cache name: type */
    AST_ASSIGN,   /* name = a */
    AST_ASSIGN2,  /* name, b->name = a (the two results of topk) */
    AST_OUTPUT,   /* output name [: type] = a */
    AST_RETURN,   /* return a */
    AST_FN,       /* fn name(list of AST_NAME params) { body } */
    AST_BLOCK,    /* block name { body } */
    AST_FILE,     /* body: the top-level items */
    AST_TYPE      /* dtype[list of dim expressions] */
} AstKind;

typedef struct Ast Ast;
typedef struct AstList {
    Ast **v;
    int n, cap;
} AstList;

struct Ast {
    AstKind kind;
    SrcLoc loc;         /* the whole construct (for a declaration: its name) */
    const char *name;
    const char *str;
    double num;
    int64_t ival;
    bool is_int;
    int op;
    DType dtype;
    Ast *a, *b;
    Ast *type;          /* AST_INPUT/WEIGHT/CACHE/OUTPUT: an AST_TYPE or NULL */
    AstList list;       /* call arguments, list elements, type dims, params */
    AstList body;       /* statements of a fn, block or file */
};

/* ast.c: builders the grammar actions call, and a dump for tests. */
SrcLoc fe_srcloc(const char *file, FeLoc l);
Ast *ast_new(AstKind kind, SrcLoc loc);
Ast *ast_num(SrcLoc loc, double v, bool is_int, int64_t ival);
Ast *ast_str(AstKind kind, SrcLoc loc, const char *s);   /* AST_STR, AST_NAME, AST_IMPORT */
Ast *ast_bool(SrcLoc loc, bool v);
Ast *ast_binop(SrcLoc loc, int op, Ast *a, Ast *b);
Ast *ast_unary(SrcLoc loc, Ast *a);
/* The two-character comparison operators of AST_BINOP. */
enum { AST_OP_LE = 256, AST_OP_GE, AST_OP_EQ, AST_OP_NE };
const char *ast_op_text(int op);    /* "+", "<=", ... */
Ast *ast_assign2(SrcLoc loc, const char *name, SrcLoc loc2, const char *name2, Ast *value);
Ast *ast_named(AstKind kind, SrcLoc loc, const char *name, Ast *a);  /* DIM CONST ASSIGN KWARG RETURN */
Ast *ast_call(SrcLoc loc, const char *name, AstList args);
Ast *ast_list(SrcLoc loc, AstList items);
Ast *ast_type(SrcLoc loc, DType t, AstList dims);
Ast *ast_decl(AstKind kind, SrcLoc loc, const char *name, Ast *type, Ast *value); /* INPUT...OUTPUT */
Ast *ast_fn(SrcLoc loc, const char *name, AstList params, AstList body);
Ast *ast_block(SrcLoc loc, const char *name, AstList body);
Ast *ast_group(AstKind kind, SrcLoc loc, AstList items);  /* AST_DIMS */
AstList ast_list_empty(void);
AstList ast_push(AstList l, Ast *x);
/* The span from a's start to b's end (same file). */
SrcLoc fe_span(SrcLoc a, SrcLoc b);
/* S-expression dump, e.g. "(assign h (call rms_norm x w (kw eps 1e-05)))". */
void ast_dump(Buf *b, const Ast *n);

/* parse.y: parses one file's text (len bytes; it may hold NULs) into an
 * AST_FILE; NULL after reporting lexical or syntax errors.  `file` names
 * the text in messages. */
Ast *fe_parse(const char *file, const char *text, size_t len);

/* lex.l: the token stream, for tests and debugging.  kind is the bison
 * token number from parse.tab.h (0 at the end); text is the lexeme. */
typedef struct FeToken {
    int kind;
    SrcLoc loc;
    const char *text;
    Ast *value;         /* AST_NUM for numbers; NULL otherwise */
} FeToken;
/* Tokenizes text into an arena array ending with kind 0; returns the count
 * (without the end token).  Lexical errors are reported with diag_error. */
int fe_tokenize(const char *file, const char *text, size_t len, FeToken **out);

/* ======================================================================
 * Passes
 * ====================================================================== */

typedef struct Options {
    int opt_level;              /* 0: every op its own kernel; 1 (default): fuse */
    const char *target;         /* target name, "generic" by default */
    unsigned no_fuse;           /* bitmask of disabled fusion passes (fusion issue) */
    bool compute_bf16;          /* --compute=bf16: linears of f32/bf16/f16 weights get i[1] = 1 */
    const struct Machine *machine; /* --tune=FILE's machine; NULL: the target's defaults (cost.c) */
    bool fuse_all;              /* --fuse-all: every legal fusion, no cost decision */
} Options;

/* tp.c: rewrites g for rank `rank` of `n` (nothing for n <= 1):
 * column-parallel q/k/v and gate/up, row-parallel o_proj and down_proj,
 * an allreduce per pair; false after an error naming what it cannot split.
 * Run after compile_front, before compile_passes; compile_pipeline runs it
 * with the ranks compile_set_tp gave (--tp=N --tp-rank=R). */
bool pass_tp(Graph *g, int n, int rank);
void compile_set_tp(int n, int rank);

/* pipeline.c: --compute=bf16 marks the linears it applies to (i[1] = 1:
 * operands rounded to bf16, products summed in f32; docs/quantization.md).
 * Weights of q8_0/q4_0 keep their own arithmetic. */
bool linear_bf16(const Node *n);    /* a linear marked so */
/* Marks them; compile_passes does it first, and fusec check before it runs
 * the interpreter on the unfused graph.  Idempotent. */
void pass_mark_compute(Graph *g, const Options *o);

/* schedule.c: assigns every compute node a kernel (unfused: one per op;
 * reshape is a view and outputs are copies or aliases). */
void pass_schedule(Graph *g, const Options *o);

/*
 * The fusion passes (fuse_*.c; docs/fusion.md).  The rewrites run before
 * pass_schedule and turn primitive spellings into the composite ops
 * (x * rsqrt(mean(x*x) + eps) * w into rms_norm, exp/max/sum into softmax,
 * matmul/scale/mask/softmax/matmul into attention); the fusion passes then
 * merge the schedule's one-op kernels into the fused kinds.  Every pass does
 * nothing at opt_level 0 or when its FUSE_* bit is in Options.no_fuse, and
 * records what it did and refused with fuse_note for --explain.
 */
enum {
    FUSE_ELEMENTWISE = 1u << 0, FUSE_NORM = 1u << 1, FUSE_EPILOGUE = 1u << 2,
    FUSE_SOFTMAX = 1u << 3, FUSE_ATTENTION = 1u << 4, FUSE_MLP = 1u << 5
};
/* The passes build a KK_GEMM or KK_MLP kernel only when emit_gemm_supports
 * accepts it (they ask with the candidate before merging; fuse_gemm_ok).
 * The environment variable FUSEC_GEMM_KINDS=0 turns both kinds off. */
/* The FUSE_* bit of a pass name ("elementwise", "norm", "epilogue",
 * "softmax", "attention", "mlp"); 0 if unknown. */
unsigned fuse_pass_bit(const char *name);
void pass_rewrite_norm(Graph *g, const Options *o);      /* fuse_norm.c */
void pass_rewrite_softmax(Graph *g, const Options *o);   /* fuse_softmax.c */
void pass_rewrite_attention(Graph *g, const Options *o); /* fuse_attention.c */
void pass_fuse_attention(Graph *g, const Options *o);    /* KK_ATTENTION */
void pass_fuse_mlp(Graph *g, const Options *o);          /* KK_MLP (fuse_mlp.c) */
void pass_fuse_softmax(Graph *g, const Options *o);      /* KK_ROWWISE */
void pass_fuse_norm(Graph *g, const Options *o);         /* KK_GEMM prologue, KK_ROWWISE */
void pass_fuse_epilogue(Graph *g, const Options *o);     /* KK_GEMM */
void pass_fuse_elementwise(Graph *g, const Options *o);  /* KK_ELEMWISE */
/* fold.c: weight-only elementwise nodes leave the schedule (node->folded);
 * NAME_bind computes them once.  fold_op: the ops it folds. */
void pass_fold_weights(Graph *g, const Options *o);
bool fold_op(Op op);

/* schedule.c: the kernel table and graph edits the fusion passes share. */
bool fuse_enabled(const Options *o, unsigned bit);  /* opt_level > 0 and not in no_fuse */
/* fuse_enabled for a fusion pass; notes "NAME: off (--no-fuse=NAME)" when
 * only the switch turns it off. */
bool fuse_pass_on(Graph *g, const Options *o, unsigned bit, const char *name);
bool fuse_gemm_kinds(void);                         /* may KK_GEMM/KK_MLP be built */
/* Whether emit_gemm_supports takes these nodes as one kernel of `kind`;
 * if not, notes why (prefixed by `pass`) and returns false. */
bool fuse_gemm_ok(Graph *g, Node *const *nodes, int n, KernelKind kind, const char *pass);
/* The kernel whose buffer n is (through reshape views); -1 for sources. */
int sched_kernel_of(const Node *n);
/* Whether kernels a and b can become one: no path from one to the other
 * runs through a third kernel (the kernel graph stays acyclic). */
bool sched_can_merge(const Graph *g, int a, int b);
bool sched_can_merge_set(const Graph *g, const int *ks, int n);  /* the same for n kernels */
/* Moves every node of kernel `from` into kernel `into` (from becomes empty).
 * The merge must be legal (sched_can_merge). */
void sched_merge(Graph *g, int into, int from);
/* The same for the kernels ks[0..n) (into may be among them), at once: a
 * set that sched_can_merge_set accepts may pass through illegal pairs. */
void sched_merge_set(Graph *g, int into, const int *ks, int n);
/* Drops empty kernels, orders kernels by dependence (execution order) and
 * each kernel's nodes by id, renumbers.  Every fusion pass ends with it. */
void sched_compact(Graph *g);
/* The consumers of n (nodes with n as an operand), in node order; returns
 * the count and sets *out to an array that is valid (and must not be
 * written) until the graph's nodes change. */
int ir_users(const Graph *g, const Node *n, Node ***out);
/* A rewrite pass: try_at(g, n) at every node n in order, until none
 * rewrites; try_at returns true after one ir_replace.  During the pass,
 * g->nodes may hold holes (NULL) where nodes were removed; at its end the
 * graph is dense again, as if every rewrite had renumbered it (schedule.c
 * says why that is the same graph, notes and all). */
void ir_rewrite_all(Graph *g, bool (*try_at)(Graph *g, Node *n));
/* Within ir_rewrite_all: puts `nw` (just made by ir_node, so last in
 * g->nodes) where `old` is, makes every user of old use nw, and removes
 * what became dead (as ir_dce would, and constants nothing reads).  nw's
 * operands must come before old. */
void ir_replace(Graph *g, Node *old, Node *nw);
/* The longest chain of reshapes and transposes a rewrite pattern follows
 * down from the node it is tried at (fuse_attention.c's output side). */
#define FU_VIEW_CHAIN 16
/* sched_can_merge, then sched_merge; false (nothing changed) when illegal. */
bool sched_try_merge(Graph *g, int into, int from);
/* How messages name a node: its DSL variable ("h") or "%13". */
const char *fuse_name(const Graph *g, const Node *n);
bool fuse_same_shape(const Node *a, const Node *b);
bool fuse_is_elementwise(const Node *n);            /* CAT_UNARY or CAT_BINARY */
/* Records a fusion decision for --explain ("epilogue: h has 2 consumers"). */
void fuse_note(Graph *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* explain.c, report.c, dot.c: what fusion did (fusec --explain, --emit=report,
 * --emit=dot).  `unfused` is the same block compiled with -O0. */
void explain_print(FILE *out, const Graph *g, const Graph *unfused);
/* Per kernel FLOPs, bytes from memory and intensity at the symbol values
 * `syms` (the graph's order), and the totals fused vs unfused. */
struct Machine;
void report_print(FILE *out, const Graph *g, const Graph *unfused, const int64_t *syms, const struct Machine *m);
void dot_print(FILE *out, const Graph *before, const Graph *after);

/* ======================================================================
 * interp.c - the float64 reference interpreter
 * ====================================================================== */

/*
 * Runs the unfused graph in double precision.  Buffers are row-major with
 * shapes evaluated at `syms`.  Inputs of dtype i32 are passed as doubles
 * too.  caches[i] holds `cache_capacity` rows of g->caches[i]'s row shape;
 * rows [P, P+T) are written by append.  outputs[i] are caller-allocated.
 * Returns 0, or -1 with a message (e.g. the cache is too small).
 */
typedef struct InterpArgs {
    const int64_t *syms;
    const double *const *inputs;
    const double *const *weights;
    double *const *caches;
    int64_t cache_capacity;
    double *const *outputs;
} InterpArgs;
int interp_run(const Graph *g, const InterpArgs *a, char *err, size_t errlen);

/* ======================================================================
 * emit_c.c - C emitter driven by a target descriptor
 * ====================================================================== */

/*
 * target.c - code-generation targets.  A target is one ISA ("generic",
 * "x86-64-avx2", "x86-64-avx512", "aarch64-neon"; "native" resolves to the
 * best of them for this machine), or "multi:T1,T2,..." whose variants are
 * all emitted into one file with a run-time dispatcher (docs/targets.md).
 */
typedef enum Isa { ISA_GENERIC, ISA_AVX2, ISA_AVX512, ISA_NEON } Isa;

/* A row's GEMM blocking (emit_gemm.c says what each number is for and
 * why it has its value): the register tile mr x nr (vf floats per vector,
 * nv vectors per tile row), k steps unrolled, the depth/row/column blocks
 * kc/mc/nc, the rows one accumulator buffer holds (mchunk), the GEMV
 * column chunk (gch), and the KK_MLP's row block budget in floats of h
 * (mlp_floats: half the L3 the row assumes). */
typedef struct TargetTiles {
    int mr, nr, vf, nv, unroll, kc, mc, nc, mchunk, gch;
    int64_t mlp_floats;
    /* the attention kernel (emit_fused.c): keys per block (fa_bk, a multiple
     * of fa_unit, the keys one register block of scores covers), query rows
     * per tile (fa_rows), at most fa_direct rows take scores by direct dot
     * products, at least fa_split keys per split when keys are split over
     * threads */
    int fa_bk, fa_unit, fa_rows, fa_direct, fa_split;
    /* at most gemv_rows rows a linear runs as GEMV (emit_gemm.c), more as GEMM */
    int gemv_rows;
    /* the int8 GEMM of q8_0/q4_0 linears (emit_c.c, VNNI and AMX rows): rows
     * quantized per chunk (qmc: groups of 6 for VNNI, 32 for AMX) and blocks
     * of 32 depths per packed panel (qkb) */
    int qmc, qkb;
} TargetTiles;

/* What a row assumes of the machine when no tune file says otherwise
 * (cost.c's defaults; `fusec tune` measures them): per-core peaks in
 * GFLOP/s (an FMA counts 2), 0 where the row has no such unit; read
 * bandwidth of one core and of the whole socket in GB/s; cache bytes
 * (L1 and L2 per core, L3 shared). */
typedef struct TargetPeaks {
    double fma_gflops, bf16_gflops, int8_gops;
    double bw1_gbs, bw_gbs;
    int64_t l1, l2, l3;
} TargetPeaks;

#define FU_MAX_VARIANTS 8

typedef struct Target Target;
struct Target {
    const char *name;           /* "generic", "x86-64-avx2", ... */
    const char *cflags;         /* flags the C compiler needs for it, e.g. "-mavx2 -mfma" */
    int vec_floats;             /* floats per vector register (1 for generic) */
    int nregs;                  /* vector registers */
    Isa isa;                    /* selects vec.c's intrinsic table */
    const char *tag;            /* short name for suffixes: "generic", "avx2", "avx512", "neon" */
    const char *attr;           /* GCC target attribute, e.g. "avx2,fma"; "" for none */
    const char *guard;          /* #if condition under which it compiles, e.g.
                                   "defined(__x86_64__)"; "" for anywhere */
    unsigned features;          /* FR_CPU_* bits (fusec_rt.h) the CPU needs to run it */
    const TargetTiles *tiles;   /* GEMM blocking, attention blocks (a tune file may replace them) */
    const TargetTiles *tiles_amx; /* the same on AMX tiles (x86-64-spr); NULL elsewhere */
    const TargetPeaks *peaks;   /* the cost model's default machine */
    /* multi:... only: the variants in order of preference (nvariants 0 otherwise). */
    int nvariants;
    const Target *variants[FU_MAX_VARIANTS];
};
/* The target called name (NULL means "generic"), or NULL if unknown.  Also
 * "native" and "multi:T1,T2,..." (variants must be distinct ISAs, not multi). */
const Target *target_find(const char *name);
/* Every target name `--target` accepts, for --help and docs: "generic, ..." */
const char *target_names(void);
/* Why target_find(name) failed, naming the bad entry and the nearest valid
 * name ("unknown target 'avx512'; did you mean 'x86-64-avx512'?"). */
const char *target_error(const char *name);
/* The variants of a multi: target the dispatcher can never choose (one
 * listed before them runs on every CPU that runs them): one message each
 * into msgs[FU_MAX_VARIANTS]; returns how many. */
int target_shadowed(const Target *t, const char **msgs);
/* t with its tiles (a multi: target: its first variant's) replaced by
 * *tiles, for --tune=FILE; t itself when they are equal. */
const Target *target_tuned(const Target *t, const TargetTiles *tiles);

/* ======================================================================
 * vec.c - the vector vocabulary (one mapping per ISA, ggml style)
 * ======================================================================
 *
 * Kernel emitters write a loop once against these functions; each returns C
 * text (arena strings) for the target's ISA.  The arguments are C
 * expressions; a vector expression has type v_type(t), a scalar float.
 * For generic (vec_floats == 1) the "vector" is a plain float and every
 * function maps to scalar C, so the same template gives portable code:
 *
 *     W = t->vec_floats
 *     for (i = 0; i + W <= n; i += W)  v_store(t, "y + i", v_unary(t, OP_EXP, v_load(t, "x + i")))
 *     if (W > 1 && i < n)  v_store_n(t, "y + i", v_unary(...v_load_n(t, "x + i", "n - i", NULL)), "n - i")
 *
 * Functions that need more than one intrinsic are static inline helpers
 * named fu_<what>_<tag> (fu_exp_avx2) written by v_prelude, which emit_c
 * writes once per ISA per file; every function a variant defines must be
 * declared with v_attr(t) first ("static FU_ATTR_AVX2 void k3(...)") so that
 * a multi-target file compiles without global -m flags.
 */
const char *v_type(const Target *t);        /* "__m256", "__m512", "float32x4_t", "float" */
/* Unaligned load of W floats at ptr / store of val there (an expression of type void). */
const char *v_load(const Target *t, const char *ptr);
const char *v_store(const Target *t, const char *ptr, const char *val);
/* Tails: the first n (0 < n < W, an int expression) lanes only.  Lanes past n
 * read as `fill` (a float expression; NULL: 0.0f) and are never touched in
 * memory (AVX-512 masks, AVX2 maskload/maskstore, NEON a scalar loop). */
const char *v_load_n(const Target *t, const char *ptr, const char *n, const char *fill);
const char *v_store_n(const Target *t, const char *ptr, const char *val, const char *n);
const char *v_set1(const Target *t, const char *x);   /* broadcast a float */
const char *v_zero(const Target *t);
/* a op b for OP_ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM; maximum and minimum
 * are NaN where either lane is NaN (docs/language.md, as the interpreter). */
const char *v_bin(const Target *t, Op op, const char *a, const char *b);
const char *v_fma(const Target *t, const char *a, const char *b, const char *c); /* a*b + c */
/* f(a) for every CAT_UNARY op.  Errors against libm are in docs/targets.md
 * and tested in tests/unit/test_vec.c. */
const char *v_unary(const Target *t, Op op, const char *a);
/* Horizontal reductions of a vector to a float; v_hmax is NaN when any
 * lane is. */
const char *v_hsum(const Target *t, const char *v);
const char *v_hmax(const Target *t, const char *v);
/* The running maximum of row statistics (softmax's max): the larger of x
 * and acc per lane, one instruction on every ISA.  acc must start non-NaN;
 * a NaN in x is skipped on some ISAs and kept on others, so only code whose
 * result is the same either way may use it (softmax: exp(NaN - m) makes
 * the row NaN whatever m is).  Everything else uses v_bin(OP_MAXIMUM). */
const char *v_max_acc(const Target *t, const char *x, const char *acc);
/* A statement (no `;`) that recomputes a norm's row statistics in double
 * from the n floats at x (contiguous): the mean as float mu + lo (center;
 * else both 0) and inv = 1 / sqrt(var + eps), into the float lvalues named.
 * For the rows whose float sums overflow or underflow (docs/language.md). */
const char *v_norm_stats(const Target *t, const char *x, const char *n, bool center, double eps, const char *mu,
                         const char *lo, const char *inv);
/* Lane indices {0.0f, 1.0f, ..., W-1} (causal masks: lane j is key j0 + j). */
const char *v_iota(const Target *t);
/* Per lane: a < b ? x : y (ordered compare: false when a or b is NaN). */
const char *v_select_lt(const Target *t, const char *a, const char *b, const char *x, const char *y);
/* "FU_ATTR_AVX2 " (a macro from the prelude), or "" for generic. */
const char *v_attr(const Target *t);
/* The #include of the ISA's intrinsics header and the fu_*_<tag> helpers and
 * the FU_ATTR_<TAG> macro, inside `#if guard`.  Deterministic. */
void v_prelude(Buf *b, const Target *t);

/*
 * typed.c - how kernels read stored types (bf16, f16, q8_0, q4_0): the one
 * seam between kernels and element types.  Each returns a C expression;
 * for f32 they are vec.c's own words.  `row` points at a row's first unit
 * (ty_ctype), rows are ty_row_units apart; `lanes` is t->vec_floats, or 8
 * on AVX-512 (kern_tw's transposes); for q8_0/q4_0 k must be a multiple of
 * lanes (a vector never straddles a block of 32).
 */
const char *ty_ctype(DType t);                       /* "float", "uint16_t", "uint8_t" */
const char *ty_row_units(DType t, const char *n);    /* C units of a row of n elements */
const char *ty_load(const Target *t, int lanes, DType dt, const char *row, const char *k);
/* The first n lanes (0 < n < lanes), the others 0. */
const char *ty_load_n(const Target *t, int lanes, DType dt, const char *row, const char *k, const char *n);
const char *ty_load1(DType dt, const char *row, const char *k);    /* a float */
/* row[k] = x for f32, bf16, f16 (rounding to nearest even): a statement without ';'. */
const char *ty_store1(DType dt, const char *row, const char *k, const char *x);
/* --compute=bf16: v (W lanes, or a float when lanes is 1 or the target
 * generic) rounded to bf16 (nearest even) as a float32; NaN kept.  Needs
 * TY_BF16R in `used`. */
const char *ty_bf16r(const Target *t, int lanes, const char *v);
#define TY_BF16R (1u << 31)
/* The helpers: portable ones once per file, vector ones per ISA variant,
 * for the types whose bits (1 << DType) are in `used` (and TY_BF16R). */
void ty_prelude_common(Buf *b, unsigned used);
void ty_prelude(Buf *b, const Target *t, unsigned used);
/* The q8_0/q4_0 linear's helpers on target t: the activation quantizer,
 * fn(const float *x, int64_t k, int8_t *xq), and the dot products of a
 * weight row with R <= 8 quantized rows xs bytes apart,
 * fn(const uint8_t *w, const int8_t *xq, int64_t xs, int64_t nb, int R, float *out). */
const char *ty_qx_fn(const Target *t);
const char *ty_qdot_fn(const Target *t, DType dt);
bool ty_qgemm(const Target *t);   /* the q8_0/q4_0 prefill GEMM (fu_qpa/fu_qpb/fu_qmk) */

/*
 * The Kern API: how a kernel emitter (emit_gemm.c, emit_fused.c) writes one
 * kernel function.  emit_c.c owns the function's signature: every buffer the
 * body names through kern_buf becomes a parameter, every symbol kern_dim
 * mentions becomes an int64_t parameter, and the call in NAME_forward passes
 * the matching pointers.
 */
typedef struct Kern Kern;
/* The C name of n's buffer in the kernel (a float* or int32_t*), added as
 * a parameter on first use; `written` when the kernel stores into it. */
const char *kern_buf(Kern *k, const Node *n, bool written);
/* A Dim as a C expression of the block's symbols, e.g. "(T + P)". */
const char *kern_dim(Kern *k, Dim d);
/* Appends one line to the body at the current indent (printf-style). */
void kern_line(Kern *k, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void kern_indent(Kern *k, int delta);
const Target *kern_target(const Kern *k);
/* Whether n (a node of this kernel) must be stored: it is read by another
 * kernel or is a block output.  Other nodes stay in registers/scratch. */
bool kern_is_result(const Kern *k, const Node *n);
/* A local name unique within the kernel: prefix followed by a number. */
const char *kern_local(Kern *k, const char *prefix);
/* In-register transposes of TW x TW floats, TW = kern_tw (x86: 8 x 8 with
 * AVX shuffles, for AVX-512 too; NEON: 4 x 4 with vtrnq; generic: 1, none):
 * rows[r] are TW vector expressions of kern_tw_target's vocabulary, and
 * column c of the tile is stored to the address dst[c], in order c = 0, 1,
 * ... (later stores may overwrite the tail of earlier ones). */
int kern_tw(const Kern *k);
const Target *kern_tw_target(const Kern *k);
void kern_transpose(Kern *k, const char *const *rows, const char *const *dst);
/* C literals that read back exactly: the shortest float literal for
 * (float)v ("1e-05f", "2.0f") and double literal for v; NAN and
 * (-)INFINITY for the special values. */
const char *c_float_lit(double v);
const char *c_double_lit(double v);
/*
 * Threads.  NAME_forward runs all kernels inside one fr_parallel call, and
 * every kernel function gets `int tid, int nth` as its first parameters:
 * the body must split its work over the nth threads (fr_split over rows,
 * columns or heads; tiny kernels may do everything on tid 0) and may call
 * fr_barrier(nth) between its own phases (every thread must reach each
 * barrier).  emit_c puts a barrier between kernels where one reads what an
 * earlier one wrote.  Per-thread scratch: kern_scratch declares how many
 * bytes the kernel needs per thread (a size_t C expression of the symbols,
 * e.g. from kern_dim); the body then gets it as `fr_scratch(tid)` (64-byte
 * aligned).  Several calls keep the largest. */
void kern_scratch(Kern *k, const char *bytes_expr);
/* Batches (forward_batch, docs/generated-api.md "Batches"): an attention
 * kernel whose work items are (kv head, query tile of bq tokens) of one
 * sequence, with q rows T and keys S, calls this; when it returns true the
 * body reads `int64_t fu_bw`: -1 the whole kernel; >= 0 work item fu_bw
 * alone, unsplit, without the appends or any barrier; <= -2 only the
 * appends (rows split as thread (tid + -2 - fu_bw) % nth would), no barrier.
 * emit_c then runs the attention of every sequence in one pass. */
bool kern_batch_items(Kern *k, int64_t kvh, int64_t bq, Dim T, Dim S, bool causal, int64_t window);

/* Emitters of the fused kinds (see KernelKind), called by emit_c.c. */
void emit_gemm_kernel(Kern *k, const Kernel *kr);   /* emit_gemm.c: KK_GEMM, KK_MLP */
/* Whether emit_gemm_kernel can write kr (a KK_GEMM, KK_MLP, or KK_SINGLE
 * linear/matmul kernel); false with the reason in why otherwise.  Fusion
 * passes ask before they build a kernel (docs/gemm.md lists what fits). */
bool emit_gemm_supports(const Kernel *kr, char *why, size_t whylen);
void emit_fused_kernel(Kern *k, const Kernel *kr);  /* emit_fused.c: KK_ELEMWISE, KK_ROWWISE, KK_ATTENTION */

/* Writes the block's .c to c_out and its .h to h_out; the .c includes
 * header_name.  Output is byte-identical for identical input. */
int emit_c(const Graph *g, const Target *t, FILE *c_out, FILE *h_out,
           const char *header_name);

/* ======================================================================
 * cost.c - the cost model: kernel times from FLOPs, bytes and peaks
 * ====================================================================== */

/* The machine the model assumes: a target row's TargetPeaks, or what a
 * tune file (fusec tune) measured.  Efficiencies are fractions of the
 * peak that a kind of code reaches (docs/fusion.md gives their sources). */
typedef struct Machine {
    const char *target;     /* the target row it describes */
    int threads;            /* the thread count the estimates assume */
    TargetPeaks p;
    TargetTiles tiles;      /* the row's tiles, or the tune file's */
    double gemm_eff;        /* the GEMM microkernel, of the FMA peak */
    double vec_eff;         /* fused row passes and elementwise loops, of the FMA peak */
    double attn_eff;        /* the flash-attention kernel, of the FMA peak */
    double loop_eff;        /* -O0's plain loop of one non-matmul op (attention above all) */
    double mlp_eff;         /* KK_MLP's two stages, of the plain GEMM's rate */
    double sync_us;         /* one barrier between kernels or stages, microseconds */
    double tol;             /* a predicted loss below this fraction is within the model's error */
} Machine;

/* The defaults for target t (a multi: target: its first variant). */
Machine cost_defaults(const Target *t);
/* The machine of options o: o->machine, else cost_defaults of o->target. */
Machine cost_machine(const Options *o);
/* Reads a tune file into *m (starting from cost_defaults of the file's
 * target); false with "FILE:LINE: why" in why. */
bool cost_read_tune(const char *path, Machine *m, char *why, size_t whylen);
/* --tune=FILE: reads it into o->machine; false with the message (the
 * file's target must be o->target's row, or a multi: target's first). */
bool cost_use_tune(Options *o, const char *path, char *why, size_t whylen);
/* Writes m as a tune file (`note` goes into its header comment). */
void cost_write_tune(FILE *f, const Machine *m, const char *note);

/* The estimate for a set of nodes run as one kernel of `kind`: what they
 * read from outside the set, write for outside readers, compute, and the
 * time that takes on m at the symbol values syms. */
typedef struct CostEst {
    double flops, rd, wr;   /* compulsory traffic (report.c's numbers) */
    double extra_rd;        /* weights streamed again, A re-normalised: bytes */
    double extra_flops;     /* recomputation (a prologue norm per column block) */
    double t_comp, t_mem, t_sync, t; /* seconds: t = max(comp, mem) + sync */
} CostEst;
CostEst cost_nodes(const Graph *g, Node *const *nodes, int n, KernelKind kind, const Machine *m,
                   const int64_t *syms);
CostEst cost_kernel(const Graph *g, const Kernel *kr, const Machine *m, const int64_t *syms);
/* The points a decision is taken at, since T is symbolic: decode (every
 * symbol 1, the cache length 1024) and prefill (every symbol 512, no
 * cache).  Fills syms[COST_POINTS][FU_MAX_SYMS], returns their names. */
#define COST_POINTS 2
const char *const *cost_points(const Graph *g, int64_t syms[COST_POINTS][FU_MAX_SYMS]);
/* A fusion decision: the fused and unfused alternatives' times at each
 * point.  Fuse when no point loses more than m->tol and the gains sum to
 * more than 0; notes the estimate for --explain either way ("PASS: WHAT:
 * fused 1.2 ms / unfused 1.3 ms at T=512, ..."). */
bool cost_decide(Graph *g, const Machine *m, const char *pass, const char *what,
                 const double *fused, const double *unfused);
/* The hook a fusion pass calls before it merges: `fused` as one kernel
 * against the kernels `parts` it would otherwise be, at each of
 * cost_points on cost_machine(o); cost_decide's rule and note.  True
 * without asking under --fuse-all. */
typedef struct CostPart {
    Node *const *nodes;
    int n;
    KernelKind kind;
} CostPart;
bool cost_pays(Graph *g, const Options *o, const char *pass, const char *what, CostPart fused,
               const CostPart *parts, int nparts);

/* ======================================================================
 * pipeline.c, main.c, check.c - the drivers
 * ====================================================================== */

/* `fusec check ...`; argv[0] is "check".  Returns the exit status. */
int check_main(int argc, char **argv);
/* check.c: g emitted for t and compiled with runtime/harness/HARNESS and the
 * runtime in a temporary directory removed at exit; *exe is the program;
 * cc: a cross compiler (as check --cc), or NULL.
 * Returns -1, or an exit status after reporting. */
/* fusec run --tp: the next builds use mpicc (MPICC) and libfusec_comm.a, -DFUSEC_MPI. */
void check_set_mpi(bool on);
int check_build_program(const Graph *g, const Target *t, const char *harness, const char *cc, bool verbose,
                        const char **exe);
/* `fusec run ...` (run.c); argv[0] is "run". */
int run_main(int argc, char **argv);
/* `fusec tune ...` (tune.c); argv[0] is "tune". */
int tune_main(int argc, char **argv);
/* `fusec quantize ...` (quantize.c); argv[0] is "quantize". */
int quantize_main(int argc, char **argv);

/* The driver's pipeline, kept in one place (pipeline.c) so that `fusec FILE`
 * (main.c) and `fusec check` compile a block identically.
 * compile_front: fe_compile_file, ir_verify "sema", ir_dce; NULL after user
 * errors.  The float64 interpreter runs on this graph, before any pass.
 * compile_passes: pass_schedule, ir_verify "schedule" (later passes go here).
 * compile_pipeline: both. */
Graph *compile_front(const char *path, const char *block);
void compile_passes(Graph *g, const Options *o);
Graph *compile_pipeline(const char *path, const char *block, const Options *o);

#endif /* FUSEC_H */
