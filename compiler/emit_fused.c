/*
 * emit_fused.c - C for the fused kernel kinds that are not GEMMs:
 * KK_ELEMWISE, KK_ROWWISE and KK_ATTENTION (emit_c.c calls
 * emit_fused_kernel for them; emit_gemm.c writes KK_GEMM and KK_MLP).
 *
 * Every loop is written once against the vector vocabulary (vec.c): a main
 * loop of W = vec_floats lanes and one masked tail step, explicit vector
 * accumulators for reductions, so the hot loops never wait for the C
 * compiler's auto-vectorizer; on the generic target W is 1 and the same
 * templates give plain scalar C.  Every kernel function has `tid` and `nth`
 * and splits its work over the threads itself.
 *
 *  - KK_ELEMWISE: the DAG of unary/binary nodes is evaluated per vector of
 *    elements in one loop; each value lives in a register, and only the
 *    kernel's results (read by another kernel, or block outputs) are stored.
 *    Operands of the output's shape are read at the flat index; broadcast
 *    operands per row (a vector of the last axis, or one value per row).
 *  - KK_ROWWISE: one row op (rms_norm, layer_norm or softmax) with the
 *    elementwise/causal_mask ops that produce its input (prologue) and
 *    consume its output (epilogue).  Each row is read a few times while it
 *    sits in L1/L2 (statistics, then the normalised values) and written
 *    once; the prologue is recomputed in each pass instead of stored.
 *  - KK_ATTENTION: flash attention.  A work item is one kv head and a tile
 *    of query tokens; the G = H / KVH query heads that share the kv head
 *    are processed together, so each key/value block is read once for all
 *    of them.  Keys come in blocks of fa_bk (target.c's TargetTiles, like
 *    every block size here): the block of K is transposed
 *    into scratch, scores for the tile are one vector FMA sweep, the online
 *    softmax keeps a running max and sum per query row and rescales the
 *    accumulator, and P.V accumulates into the tile's output rows.  The T x
 *    S scores never exist beyond one block.  RoPE of q is applied as the
 *    query tile is loaded (scaled by the softmax scale at the same time);
 *    RoPE of the new k rows is applied as they are appended to the cache,
 *    before a barrier.  With fewer work items than threads (decode: one
 *    query token, a long cache) the keys of each item are split over the
 *    threads; each writes its partial (max, sum, unnormalised output) to its
 *    scratch, and after a barrier the partials are merged by their
 *    log-sum-exp.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ----------------------------------------------------------- */

static bool in_kernel(const Kernel *kr, const Node *n) {
    for (int i = 0; i < kr->nnodes; i++)
        if (kr->nodes[i] == n)
            return true;
    return false;
}

static int W_of(Kern *k) { return kern_target(k)->vec_floats; }

static const char *vt(Kern *k) { return v_type(kern_target(k)); }

/* The product of dims [from, to) of n as a C expression. */
static const char *numel(Kern *k, const Node *n, int from, int to) {
    const char *s = NULL;
    int64_t c = 1;
    for (int d = from; d < to; d++) {
        if (dim_is_const(n->shape[d])) {
            c *= n->shape[d].c;
            continue;
        }
        const char *x = kern_dim(k, n->shape[d]);
        s = s ? fu_format("%s * %s", s, x) : x;
    }
    if (!s)
        return fu_format("%lld", (long long)c);
    if (c != 1)
        s = fu_format("%s * %lld", s, (long long)c);
    return fu_format("(%s)", s);
}

/* One step of a vector loop; `tail` when only fu_m lanes remain. */
typedef void (*Step)(Kern *k, void *ctx, bool tail);

/* for (; idx + W <= to; idx += W) step; if (idx < to) { fu_m = to - idx; tail step } */
static void vloop(Kern *k, const char *idx, const char *to, Step step, void *ctx) {
    int W = W_of(k);
    if (W == 1) {
        kern_line(k, "for (; %s < %s; ++%s) {", idx, to, idx);
        kern_indent(k, 1);
        step(k, ctx, false);
        kern_indent(k, -1);
        kern_line(k, "}");
        return;
    }
    kern_line(k, "for (; %s + %d <= %s; %s += %d) {", idx, W, to, idx, W);
    kern_indent(k, 1);
    step(k, ctx, false);
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_line(k, "if (%s < %s) {", idx, to);
    kern_indent(k, 1);
    kern_line(k, "int fu_m = (int)(%s - %s);", to, idx);
    step(k, ctx, true);
    kern_indent(k, -1);
    kern_line(k, "}");
}

static const char *vload(Kern *k, const char *ptr, bool tail, const char *fill) {
    return tail ? v_load_n(kern_target(k), ptr, "fu_m", fill) : v_load(kern_target(k), ptr);
}

static const char *vstore(Kern *k, const char *ptr, const char *val, bool tail) {
    return tail ? v_store_n(kern_target(k), ptr, val, "fu_m") : v_store(kern_target(k), ptr, val);
}

/* val where the lane is one of the tail's fu_m, else fill (reductions must
 * not see the lanes past the end, whatever the ops made of them). */
static const char *tail_only(Kern *k, const char *val, bool tail, const char *fill) {
    if (!tail)
        return val;
    const Target *t = kern_target(k);
    return v_select_lt(t, v_iota(t), v_set1(t, "(float)fu_m"), val, v_set1(t, fill));
}

/* ---- the elementwise DAG --------------------------------------------------------- */

/* How an operand from outside the DAG is read inside the loop over the last axis. */
typedef enum Access { ACC_SCALAR, ACC_FLAT, ACC_ROW, ACC_ROWSCALAR } Access;

typedef struct Operand {
    const Node *n;
    Access acc;
    const char *ptr;    /* ACC_FLAT: base; ACC_ROW / ACC_ROWSCALAR: this row's pointer */
    const char *scalar; /* ACC_SCALAR: a float expression */
} Operand;

/* The DAG evaluator shared by KK_ELEMWISE and KK_ROWWISE: nodes `dag`
 * (topological), operands from outside, the loop index and the per-step
 * names of the values computed so far. */
typedef struct Dag {
    const Kernel *kr;
    const Node *out;        /* the shape every DAG node has */
    int ndag;
    const Node **dag;
    int nops;
    Operand *ops;
    const char *idx;        /* the element index inside the row (or flat) */
    const char **val;       /* per dag position: its value in this step, or NULL */
    const char **ext;       /* per operand: loaded value in this step, or NULL */
    /* row pass hooks (KK_ROWWISE) */
    const Node *row;        /* the row op, or NULL */
    const char *row_value;  /* its value in this step, set by the caller */
    const char *mask_lim;   /* causal_mask: keys j > mask_lim are -inf */
} Dag;

static bool bcast_last(const Node *x) {
    return x->rank == 0 || (dim_is_const(x->shape[x->rank - 1]) && x->shape[x->rank - 1].c == 1);
}

static bool all_ones(const Node *x) {
    for (int d = 0; d < x->rank; d++)
        if (!dim_is_const(x->shape[d]) || x->shape[d].c != 1)
            return false;
    return true;
}

static int dag_pos(const Dag *g, const Node *n) {
    for (int i = 0; i < g->ndag; i++)
        if (g->dag[i] == n)
            return i;
    return -1;
}

static int op_pos(const Dag *g, const Node *n) {
    for (int i = 0; i < g->nops; i++)
        if (g->ops[i].n == n)
            return i;
    return -1;
}

/* Collects the operands the DAG reads from outside it, classified against
 * the output shape.  `flat`: whether the loop runs over flat indices (then
 * every operand must be scalar or of the full shape). */
static void dag_operands(Kern *k, Dag *g, bool *flat_ok) {
    g->ops = fu_alloc(sizeof *g->ops * (size_t)(3 * g->ndag + 1));
    *flat_ok = true;
    for (int i = 0; i < g->ndag; i++) {
        const Node *n = g->dag[i];
        for (int j = 0; j < n->nin; j++) {
            const Node *x = n->in[j];
            if (dag_pos(g, x) >= 0 || (g->row && x == g->row) || op_pos(g, x) >= 0)
                continue;
            if (n->op == OP_ROPE && j == 1)
                continue;
            Operand *o = &g->ops[g->nops++];
            o->n = x;
            if (x->op == OP_CONST) {
                o->acc = ACC_SCALAR;
                o->scalar = c_float_lit(x->f[0]);
            } else if (x->rank == 0 || all_ones(x)) {
                o->acc = ACC_SCALAR;
                o->scalar = fu_format("%s[0]", kern_buf(k, x, false));
            } else if (fuse_same_shape(x, g->out)) {
                o->acc = ACC_FLAT;
                o->ptr = kern_buf(k, x, false);
            } else {
                o->acc = bcast_last(x) ? ACC_ROWSCALAR : ACC_ROW;
                *flat_ok = false;
            }
        }
    }
}

/* Row offset of operand x broadcast against out, from the row indices
 * fu_i0.. (declared by the caller); marks the indices it uses. */
static const char *row_offset(Kern *k, const Node *x, const Node *out, unsigned *used) {
    const char *s = NULL;
    int lead = out->rank - x->rank;
    for (int d = 0; d < out->rank - 1; d++) {
        int xd = d - lead;
        if (xd < 0 || (dim_is_const(x->shape[xd]) && x->shape[xd].c == 1))
            continue;
        *used |= 1u << d;
        const char *st = numel(k, x, xd + 1, x->rank);
        const char *term = strcmp(st, "1") == 0 ? fu_format("fu_i%d", d) : fu_format("fu_i%d * %s", d, st);
        s = s ? fu_format("%s + %s", s, term) : term;
    }
    return s ? s : "0";
}

/* Declares, inside a loop over rows `fu_r`, the row indices and each
 * broadcast operand's row pointer. */
static void dag_row_setup(Kern *k, Dag *g) {
    const Node *out = g->out;
    unsigned used = 0;
    const char **offs = fu_alloc(sizeof *offs * (size_t)(g->nops + 1));
    for (int i = 0; i < g->nops; i++)
        if (g->ops[i].acc == ACC_ROW || g->ops[i].acc == ACC_ROWSCALAR)
            offs[i] = row_offset(k, g->ops[i].n, out, &used);
    if (used) {
        kern_line(k, "int64_t fu_q = fu_r;");
        for (int d = out->rank - 2; d >= 0; d--) {
            if (used & (1u << d))
                kern_line(k, "int64_t fu_i%d = %s;", d,
                          d == 0 ? "fu_q" : fu_format("fu_q %% %s", kern_dim(k, out->shape[d])));
            if (d > 0 && (used & ((1u << d) - 1)))
                kern_line(k, "fu_q /= %s;", kern_dim(k, out->shape[d]));
        }
        kern_line(k, "(void)fu_q;");
    }
    for (int i = 0; i < g->nops; i++) {
        Operand *o = &g->ops[i];
        if (o->acc != ACC_ROW && o->acc != ACC_ROWSCALAR)
            continue;
        const char *nm = kern_local(k, "fu_row");
        kern_line(k, "const float *%s = %s + %s;", nm, kern_buf(k, o->n, false), offs[i]);
        o->ptr = nm;
    }
}

/* The vector value of external operand o in this step. */
static const char *operand_value(Kern *k, Dag *g, int oi, bool tail) {
    if (g->ext[oi])
        return g->ext[oi];
    Operand *o = &g->ops[oi];
    const Target *t = kern_target(k);
    const char *ex;
    switch (o->acc) {
    case ACC_SCALAR: ex = v_set1(t, o->scalar); break;
    case ACC_ROWSCALAR: ex = v_set1(t, fu_format("%s[0]", o->ptr)); break;
    default: ex = vload(k, fu_format("%s + %s", o->ptr, g->idx), tail, NULL); break;
    }
    const char *nm = kern_local(k, "fu_x");
    kern_line(k, "%s %s = %s;", vt(k), nm, ex);
    g->ext[oi] = nm;
    return nm;
}

static const char *value_of(Kern *k, Dag *g, const Node *x, bool tail) {
    if (g->row && x == g->row) {
        FU_ASSERT(g->row_value);
        return g->row_value;
    }
    int p = dag_pos(g, x);
    if (p >= 0) {
        FU_ASSERT(g->val[p]);
        return g->val[p];
    }
    int oi = op_pos(g, x);
    FU_ASSERT(oi >= 0);
    return operand_value(k, g, oi, tail);
}

/* Computes dag nodes [from, to) in this step (values named in g->val). */
static void dag_eval(Kern *k, Dag *g, int from, int to, bool tail) {
    const Target *t = kern_target(k);
    for (int i = from; i < to; i++) {
        const Node *n = g->dag[i];
        const char *ex;
        if (op_info[n->op].cat == CAT_UNARY) {
            ex = v_unary(t, n->op, value_of(k, g, n->in[0], tail));
        } else if (op_info[n->op].cat == CAT_BINARY) {
            const char *a = value_of(k, g, n->in[0], tail);
            const char *b = value_of(k, g, n->in[1], tail);
            ex = v_bin(t, n->op, a, b);
        } else if (n->op == OP_CAUSAL_MASK) {
            /* lane l is key idx + l; masked when it is past mask_lim */
            FU_ASSERT(g->mask_lim);
            const char *x = value_of(k, g, n->in[0], tail);
            kern_line(k, "int64_t fu_ml%d = %s - %s;", i, g->mask_lim, g->idx);
            kern_line(k, "fu_ml%d = fu_ml%d < -1 ? -1 : fu_ml%d > %d ? %d : fu_ml%d;", i, i, i, W_of(k),
                      W_of(k), i);
            /* lane l keeps its value while l <= fu_ml, i.e. fu_ml < l is masked */
            ex = v_select_lt(t, v_set1(t, fu_format("(float)fu_ml%d", i)), v_iota(t),
                             v_set1(t, "-INFINITY"), x);
        } else {
            fu_internal(__FILE__, __LINE__, "emit_fused: %s in an elementwise DAG", op_info[n->op].name);
        }
        const char *nm = kern_local(k, "fu_v");
        kern_line(k, "%s %s = %s;", vt(k), nm, ex);
        g->val[i] = nm;
    }
}

/* Stores the DAG nodes [from, to) that are results, at element index idx
 * of the output shape (flat index or row * N + idx). */
static void dag_store(Kern *k, Dag *g, int from, int to, const char *at, bool tail) {
    for (int i = from; i < to; i++)
        if (kern_is_result(k, g->dag[i]))
            kern_line(k, "%s;", vstore(k, fu_format("%s + %s", kern_buf(k, g->dag[i], true), at),
                                       g->val[i], tail));
}

static void dag_reset(Dag *g) {
    for (int i = 0; i < g->ndag; i++)
        g->val[i] = NULL;
    for (int i = 0; i < g->nops; i++)
        g->ext[i] = NULL;
    g->row_value = NULL;
}

/* ---- KK_ELEMWISE ----------------------------------------------------------------- */

typedef struct EwStep {
    Dag *g;
    const char *at;     /* store index expression */
} EwStep;

static void ew_step(Kern *k, void *ctx, bool tail) {
    EwStep *s = ctx;
    dag_reset(s->g);
    dag_eval(k, s->g, 0, s->g->ndag, tail);
    dag_store(k, s->g, 0, s->g->ndag, s->at, tail);
}

static void emit_elemwise(Kern *k, const Kernel *kr) {
    Dag g = {0};
    g.kr = kr;
    g.dag = fu_alloc(sizeof *g.dag * (size_t)(kr->nnodes + 1));
    for (int i = 0; i < kr->nnodes; i++) {
        const Node *n = kr->nodes[i];
        FU_ASSERT(fuse_is_elementwise(n));
        g.dag[g.ndag++] = n;
    }
    FU_ASSERT(g.ndag > 0);
    g.out = g.dag[g.ndag - 1];
    for (int i = 0; i < g.ndag; i++)
        FU_ASSERT(fuse_same_shape(g.dag[i], g.out));
    g.val = fu_alloc(sizeof *g.val * (size_t)(g.ndag + 1));
    bool flat;
    dag_operands(k, &g, &flat);
    g.ext = fu_alloc(sizeof *g.ext * (size_t)(g.nops + 1));
    const Node *out = g.out;
    if (flat || out->rank <= 1) {
        /* one flat range, split in blocks of 16 floats (no shared cache lines) */
        const char *N = numel(k, out, 0, out->rank);
        kern_line(k, "int64_t fu_b0, fu_b1;");
        kern_line(k, "fr_split((%s + 15) / 16, tid, nth, &fu_b0, &fu_b1);", N);
        kern_line(k, "int64_t fu_j = fu_b0 * 16, fu_end = fu_b1 * 16 < %s ? fu_b1 * 16 : %s;", N, N);
        g.idx = "fu_j";
        EwStep s = {&g, "fu_j"};
        vloop(k, "fu_j", "fu_end", ew_step, &s);
        return;
    }
    /* rows of the last axis, split over the threads */
    const char *R = numel(k, out, 0, out->rank - 1), *L = kern_dim(k, out->shape[out->rank - 1]);
    kern_line(k, "int64_t fu_r0, fu_r1;");
    kern_line(k, "fr_split(%s, tid, nth, &fu_r0, &fu_r1);", R);
    kern_line(k, "for (int64_t fu_r = fu_r0; fu_r < fu_r1; ++fu_r) {");
    kern_indent(k, 1);
    dag_row_setup(k, &g);
    /* full-shape operands are read at row * L + j */
    for (int i = 0; i < g.nops; i++)
        if (g.ops[i].acc == ACC_FLAT) {
            const char *nm = kern_local(k, "fu_row");
            kern_line(k, "const float *%s = %s + fu_r * %s;", nm, g.ops[i].ptr, L);
            g.ops[i].ptr = nm;
            g.ops[i].acc = ACC_ROW;
        }
    kern_line(k, "int64_t fu_j = 0;");
    g.idx = "fu_j";
    EwStep s = {&g, fu_format("fu_r * %s + fu_j", L)};
    vloop(k, "fu_j", L, ew_step, &s);
    kern_indent(k, -1);
    kern_line(k, "}");
}

/* ---- KK_ROWWISE ------------------------------------------------------------------ */

typedef enum RowPass { RP_SUM, RP_SQDEV, RP_SUMSQ, RP_ABSMAX, RP_MAX, RP_EXPSUM, RP_APPLY } RowPass;

typedef struct RowStep {
    Dag *g;
    RowPass pass;
    int npro;           /* dag[0, npro) is the prologue */
    const char *acc;    /* vector accumulator of the statistics passes */
    const char *acc2;   /* RP_SQDEV's second one: the sum of x - mu */
    const char *scale;  /* the statistics passes read x * scale (a float), or x when NULL */
    const char *mu, *lo, *inv, *mx;
    const char *w, *b;  /* norm weight and bias pointers */
    const char *at;     /* store index expression of the apply pass */
} RowStep;

static void row_step(Kern *k, void *ctx, bool tail) {
    RowStep *s = ctx;
    Dag *g = s->g;
    const Target *t = kern_target(k);
    const Node *row = g->row;
    dag_reset(g);
    dag_eval(k, g, 0, s->npro, tail);
    const char *x = value_of(k, g, row->in[0], tail);
    const char *xs = s->pass != RP_APPLY && s->scale ? v_bin(t, OP_MUL, x, v_set1(t, s->scale)) : x;
    switch (s->pass) {
    case RP_SUM:
    case RP_SUMSQ: {
        /* a row read straight from memory has zeros past the tail already */
        const char *xm = xs;
        if (tail && s->npro > 0) {
            xm = kern_local(k, "fu_t");
            kern_line(k, "%s %s = %s;", vt(k), xm, tail_only(k, xs, tail, "0.0f"));
        } else if (xs != x) {
            xm = kern_local(k, "fu_t");
            kern_line(k, "%s %s = %s;", vt(k), xm, xs);
        }
        kern_line(k, "%s = %s;", s->acc,
                  s->pass == RP_SUM ? v_bin(t, OP_ADD, s->acc, xm) : v_fma(t, xm, xm, s->acc));
        return;
    }
    case RP_SQDEV: {
        const char *d = kern_local(k, "fu_d");
        kern_line(k, "%s %s = %s;", vt(k), d, tail_only(k, v_bin(t, OP_SUB, xs, v_set1(t, s->mu)), tail, "0.0f"));
        kern_line(k, "%s = %s;", s->acc, v_fma(t, d, d, s->acc));
        kern_line(k, "%s = %s;", s->acc2, v_bin(t, OP_ADD, s->acc2, d));
        return;
    }
    case RP_ABSMAX: {
        /* |x| as maximum(x, -x): a NaN stays */
        const char *a = kern_local(k, "fu_a");
        kern_line(k, "%s %s = %s;", vt(k), a, x);
        kern_line(k, "%s = %s;", s->acc,
                  v_bin(t, OP_MAXIMUM, tail_only(k, v_bin(t, OP_MAXIMUM, a, v_unary(t, OP_NEG, a)), tail, "0.0f"),
                        s->acc));
        return;
    }
    case RP_MAX:
        /* a NaN skipped here still makes the row NaN through exp(x - max) */
        kern_line(k, "%s = %s;", s->acc, v_max_acc(t, tail_only(k, x, tail, "-INFINITY"), s->acc));
        return;
    case RP_EXPSUM:
        kern_line(k, "%s = %s;", s->acc,
                  v_bin(t, OP_ADD, s->acc,
                        tail_only(k, v_unary(t, OP_EXP, v_bin(t, OP_SUB, x, v_set1(t, s->mx))), tail, "0.0f")));
        return;
    case RP_APPLY:
        break;
    }
    /* the row op's value, then the epilogue, then the stores */
    const char *y;
    if (row->op == OP_SOFTMAX) {
        y = v_bin(t, OP_MUL, v_unary(t, OP_EXP, v_bin(t, OP_SUB, x, v_set1(t, s->mx))), v_set1(t, s->inv));
    } else {
        const char *wv = vload(k, fu_format("%s + %s", s->w, g->idx), tail, NULL);
        const char *xc = row->op == OP_LAYER_NORM
                             ? v_bin(t, OP_SUB, v_bin(t, OP_SUB, x, v_set1(t, s->mu)), v_set1(t, s->lo))
                             : x;
        y = v_bin(t, OP_MUL, v_bin(t, OP_MUL, xc, v_set1(t, s->inv)), wv);
        if (row->op == OP_LAYER_NORM)
            y = v_bin(t, OP_ADD, y, vload(k, fu_format("%s + %s", s->b, g->idx), tail, NULL));
    }
    const char *nm = kern_local(k, "fu_y");
    kern_line(k, "%s %s = %s;", vt(k), nm, y);
    g->row_value = nm;
    dag_eval(k, g, s->npro, g->ndag, tail);
    dag_store(k, g, 0, g->ndag, s->at, tail);
    if (kern_is_result(k, row))
        kern_line(k, "%s;", vstore(k, fu_format("%s + %s", kern_buf(k, row, true), s->at), nm, tail));
}

/* One sweep over the row with a vector accumulator; leaves the reduced
 * float in `out` (and RP_SQDEV's sum of x - mu in out2). */
static void row_reduce(Kern *k, RowStep *s, RowPass pass, const char *out, const char *out2, const char *N) {
    const Target *t = kern_target(k);
    bool max = pass == RP_MAX || pass == RP_ABSMAX;
    s->pass = pass;
    s->acc = kern_local(k, "fu_acc");
    kern_line(k, "%s %s = %s;", vt(k), s->acc, pass == RP_MAX ? v_set1(t, "-INFINITY") : v_zero(t));
    if (pass == RP_SQDEV) {
        s->acc2 = kern_local(k, "fu_acc");
        kern_line(k, "%s %s = %s;", vt(k), s->acc2, v_zero(t));
    }
    kern_line(k, "fu_j = 0;");
    vloop(k, "fu_j", N, row_step, s);
    kern_line(k, "float %s = %s;", out, max ? v_hmax(t, s->acc) : v_hsum(t, s->acc));
    if (pass == RP_SQDEV)
        kern_line(k, "float %s = %s;", out2, v_hsum(t, s->acc2));
}

/* The statistics of a layer_norm (center) or rms_norm row, into fu_mu,
 * fu_lo and fu_inv (declared by the caller), from the passes over x * scale
 * (NULL: x).  layer_norm: mu is the float mean of a first pass, lo the mean
 * of x - mu from the second, which also sums (x - mu)^2: var = that / D -
 * lo^2, and the apply pass's (x - mu) - lo is right to float rounding even
 * for rows like 1e6 +- 2, whose mean float cannot hold (the corrected
 * two-pass algorithm).  Leaves the sum of squares in float `q` (declared). */
static void norm_passes(Kern *k, RowStep *s, bool center, const char *scale, const char *q, const char *N,
                        const char *D) {
    s->scale = scale;
    if (center) {
        const char *sum = kern_local(k, "fu_sum"), *dev = kern_local(k, "fu_dev");
        row_reduce(k, s, RP_SUM, sum, NULL, N);
        kern_line(k, "fu_mu = %s / %s;", sum, D);
        s->mu = "fu_mu";
        row_reduce(k, s, RP_SQDEV, q, dev, N);
        kern_line(k, "fu_lo = %s / %s;", dev, D);
    } else {
        row_reduce(k, s, RP_SUMSQ, q, NULL, N);
    }
    s->scale = NULL;
}

/* fu_mu, fu_lo, fu_inv of a norm row (see norm_passes).  A row whose float
 * sum of squares overflows (|x| above about 1e19; or, with eps < 1e-30,
 * underflows) is measured again scaled by a power of two that brings its
 * largest |x| to [0.5, 1), and the statistics are put together in double;
 * a row holding NaN or inf keeps the first answer (NaN, or x * 0). */
static void emit_norm_stats(Kern *k, RowStep *s, const Node *row, const char *N) {
    bool center = row->op == OP_LAYER_NORM;
    double eps = row->f[0];
    const char *D = fu_format("(float)%s", N);
    kern_line(k, "float fu_mu = 0.0f, fu_lo = 0.0f, fu_inv;");
    if (!center)
        kern_line(k, "(void)fu_mu, (void)fu_lo;");
    norm_passes(k, s, center, NULL, "fu_q", N, D);
    if (center) {
        /* rounding may leave a constant row's variance a hair below 0 */
        kern_line(k, "float fu_var = fu_q / %s - fu_lo * fu_lo;", D);
        kern_line(k, "fu_inv = 1.0f / sqrtf((fu_var < 0.0f ? 0.0f : fu_var) + %s);", c_float_lit(eps));
    } else
        kern_line(k, "fu_inv = 1.0f / sqrtf(fu_q / %s + %s);", D, c_float_lit(eps));
    kern_line(k, "if (!(fu_q < INFINITY)%s) {", eps < 1e-30 ? " || fu_q < 1e-30f" : "");
    kern_indent(k, 1);
    row_reduce(k, s, RP_ABSMAX, "fu_amax", NULL, N);
    kern_line(k, "if (fu_amax < INFINITY && fu_amax > 0.0f) {");
    kern_indent(k, 1);
    kern_line(k, "int fu_e;");
    kern_line(k, "(void)frexpf(fu_amax, &fu_e);");
    kern_line(k, "float fu_sc = ldexpf(1.0f, fu_e > 127 ? -127 : fu_e < -126 ? 126 : -fu_e);");
    kern_line(k, "double fu_ds = fu_sc, fu_var2;");
    norm_passes(k, s, center, "fu_sc", "fu_q2", N, D);
    if (center) {
        kern_line(k, "fu_var2 = (double)fu_q2 / %s - (double)fu_lo * fu_lo;", D);
        kern_line(k, "double fu_m = ((double)fu_mu + fu_lo) / fu_ds;");
        kern_line(k, "fu_mu = (float)fu_m;");
        kern_line(k, "fu_lo = (float)(fu_m - fu_mu);");
    } else {
        kern_line(k, "fu_var2 = (double)fu_q2 / %s;", D);
    }
    kern_line(k, "fu_inv = (float)(fu_ds / sqrt((fu_var2 < 0.0 ? 0.0 : fu_var2) + %s * fu_ds * fu_ds));",
              c_double_lit(eps));
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
    s->mu = "fu_mu";
    s->lo = "fu_lo";
    s->inv = "fu_inv";
}

/* The ancestors of `row` inside the kernel come first (the prologue), then
 * everything else (the epilogue), each in topological order. */
static void emit_rowwise(Kern *k, const Kernel *kr) {
    Dag g = {0};
    const Node *row = NULL;
    for (int i = 0; i < kr->nnodes; i++) {
        OpCat c = op_info[kr->nodes[i]->op].cat;
        if (c == CAT_NORM || kr->nodes[i]->op == OP_SOFTMAX) {
            FU_ASSERT(!row);
            row = kr->nodes[i];
        }
    }
    FU_ASSERT(row);
    g.kr = kr;
    g.row = row;
    g.out = row;
    g.dag = fu_alloc(sizeof *g.dag * (size_t)(kr->nnodes + 1));
    /* ancestors of the row op within the kernel */
    bool *anc = fu_alloc(sizeof *anc * (size_t)(kr->nnodes + 1));
    for (int i = kr->nnodes - 1; i >= 0; i--) {
        const Node *n = kr->nodes[i];
        bool a = false;
        for (int j = 0; j < kr->nnodes && !a; j++) {
            const Node *c = kr->nodes[j];
            if (c != row && !anc[j])
                continue;
            for (int q = 0; q < c->nin; q++)
                a |= c->in[q] == n;
        }
        anc[i] = a && n != row;
    }
    int npro = 0;
    for (int i = 0; i < kr->nnodes; i++)
        if (anc[i])
            g.dag[g.ndag++] = kr->nodes[i], npro++;
    for (int i = 0; i < kr->nnodes; i++)
        if (!anc[i] && kr->nodes[i] != row)
            g.dag[g.ndag++] = kr->nodes[i];
    for (int i = 0; i < g.ndag; i++)
        FU_ASSERT(fuse_same_shape(g.dag[i], row) &&
                  (fuse_is_elementwise(g.dag[i]) || g.dag[i]->op == OP_CAUSAL_MASK));
    g.val = fu_alloc(sizeof *g.val * (size_t)(g.ndag + 1));
    bool flat;
    dag_operands(k, &g, &flat);
    /* the row op's own input is an operand when no prologue makes it */
    if (dag_pos(&g, row->in[0]) < 0 && op_pos(&g, row->in[0]) < 0) {
        Operand *o = &g.ops[g.nops++];
        o->n = row->in[0];
        o->acc = ACC_FLAT;
        o->ptr = kern_buf(k, row->in[0], false);
    }
    g.ext = fu_alloc(sizeof *g.ext * (size_t)(g.nops + 1));

    int r = row->rank;
    const char *R = numel(k, row, 0, r - 1), *N = kern_dim(k, row->shape[r - 1]);
    RowStep s = {0};
    s.g = &g;
    s.npro = npro;
    if (op_info[row->op].cat == CAT_NORM) {
        s.w = kern_buf(k, row->in[1], false);
        if (row->op == OP_LAYER_NORM)
            s.b = kern_buf(k, row->in[2], false);
    }
    kern_line(k, "int64_t fu_r0, fu_r1;");
    kern_line(k, "fr_split(%s, tid, nth, &fu_r0, &fu_r1);", R);
    kern_line(k, "for (int64_t fu_r = fu_r0; fu_r < fu_r1; ++fu_r) {");
    kern_indent(k, 1);
    dag_row_setup(k, &g);
    for (int i = 0; i < g.nops; i++)
        if (g.ops[i].acc == ACC_FLAT) {
            const char *nm = kern_local(k, "fu_row");
            kern_line(k, "const float *%s = %s + fu_r * %s;", nm, g.ops[i].ptr, N);
            g.ops[i].ptr = nm;
            g.ops[i].acc = ACC_ROW;
        }
    /* causal_mask: this row is query i = fu_r mod T of [.., T, S]; key j is
     * visible when j <= i + (S - T) */
    for (int i = 0; i < g.ndag; i++)
        if (g.dag[i]->op == OP_CAUSAL_MASK) {
            const Node *m = g.dag[i];
            const char *T = kern_dim(k, m->shape[m->rank - 2]);
            const char *off = kern_dim(k, dim_sub(m->shape[m->rank - 1], m->shape[m->rank - 2]));
            kern_line(k, "int64_t fu_lim = fu_r %% %s + %s;", T, off);
            g.mask_lim = "fu_lim";
            break;
        }
    kern_line(k, "int64_t fu_j;");
    g.idx = "fu_j";
    s.at = fu_format("fu_r * %s + fu_j", N);
    switch (row->op) {
    case OP_RMS_NORM:
    case OP_LAYER_NORM:
        emit_norm_stats(k, &s, row, N);
        break;
    case OP_SOFTMAX:
        /* A row of -inf only gives zeros, as in the interpreter (its sum is 0,
         * which no other row has: the max contributes exp(0) = 1).  A NaN or
         * +inf makes the sum and so the whole row NaN, as in PyTorch. */
        row_reduce(k, &s, RP_MAX, "fu_mx", NULL, N);
        kern_line(k, "if (fu_mx == -INFINITY)");
        kern_line(k, "    fu_mx = 0.0f;");
        s.mx = "fu_mx";
        row_reduce(k, &s, RP_EXPSUM, "fu_sum", NULL, N);
        kern_line(k, "float fu_inv = fu_sum == 0.0f ? 0.0f : 1.0f / fu_sum;");
        s.inv = "fu_inv";
        break;
    default:
        FU_UNREACHABLE();
    }
    s.pass = RP_APPLY;
    kern_line(k, "fu_j = 0;");
    vloop(k, "fu_j", N, row_step, &s);
    kern_indent(k, -1);
    kern_line(k, "}");
}

/* ---- KK_ATTENTION ----------------------------------------------------------------- */

/* The block sizes are the target row's TargetTiles (target.c; a tune file
 * may replace them): fa_bk keys per block, fa_rows query rows (tokens x
 * heads of one kv head) per tile at most, direct scores up to fa_direct
 * rows, at least fa_split keys per split. */

/* Rows of a 2-D tensor, possibly a column slice carved out of a wider one
 * inside the kernel: element (t, c) is ptr[t * stride + off + c]. */
typedef struct Src {
    const char *ptr;
    int64_t stride, off;
    DType dt;           /* f32, or an f16/bf16 cache or weight read in registers */
} Src;

static Src source(Kern *k, const Kernel *kr, const Node *n) {
    Src s;
    if (n->op == OP_SLICE && in_kernel(kr, n)) {
        const Node *b = n->in[0];
        FU_ASSERT(n->i[0] == 1 && b->rank == 2 && dim_is_const(b->shape[1]));
        s.ptr = kern_buf(k, b, false);
        s.stride = b->shape[1].c;
        s.off = n->i[1];
        s.dt = b->dtype;
        return s;
    }
    FU_ASSERT(n->rank == 2 && dim_is_const(n->shape[1]));
    s.ptr = kern_buf(k, n, false);
    s.stride = n->shape[1].c;
    s.off = 0;
    s.dt = n->dtype;
    return s;
}

/* "ptr + t * stride + off" */
static const char *src_row(const Src *s, const char *t) {
    if (s->off)
        return fu_format("%s + %s * %lld + %lld", s->ptr, t, (long long)s->stride, (long long)s->off);
    return fu_format("%s + %s * %lld", s->ptr, t, (long long)s->stride);
}

/* Emits the rope angles of position pos[t] for pairs i < half into the
 * float arrays fu_cs / fu_sn (the angle in double, as emit_c's rope). */
static void rope_angles(Kern *k, const Node *rope, const char *pos, const char *t) {
    int64_t hd = rope->i[0];
    kern_line(k, "for (int64_t fu_i = 0; fu_i < %lld; ++fu_i) {", (long long)(hd / 2));
    kern_line(k, "    double fu_ang = (double)%s[%s] * pow(%s, -2.0 * (double)fu_i / %s);", pos, t,
              c_double_lit(rope->f[0]), c_double_lit((double)hd));
    kern_line(k, "    fu_cs[fu_i] = (float)cos(fu_ang);");
    kern_line(k, "    fu_sn[fu_i] = (float)sin(fu_ang);");
    kern_line(k, "}");
}

/* Phase A: the new k and v rows go to rows [P, P + T) of their caches, k
 * rotated on the way when its rope is in the kernel. */
static void emit_appends(Kern *k, const Kernel *kr, const Node *att) {
    for (int s = 1; s <= 2; s++) {
        const Node *ap = att->in[s];
        if (ap->op != OP_APPEND || !in_kernel(kr, ap))
            continue;
        const Node *cache = ap->in[0], *rows = ap->in[1], *rope = NULL;
        if (rows->op == OP_ROPE && in_kernel(kr, rows)) {
            rope = rows;
            rows = rows->in[0];
        }
        Src src = source(k, kr, rows);
        int64_t width = 1;
        for (int d = 1; d < cache->rank; d++)
            width *= cache->shape[d].c;
        const char *c = kern_buf(k, cache, true);
        const char *P = kern_dim(k, cache->shape[0]);
        kern_line(k, "for (int64_t fu_t = fu_a0; fu_t < fu_a1; ++fu_t) {");
        kern_indent(k, 1);
        kern_line(k, "const float *fu_src = %s;", src_row(&src, "fu_t"));
        kern_line(k, "%s *fu_dst = %s + (%s + fu_t) * %lld;", ty_ctype(cache->dtype), c, P, (long long)width);
        if (!rope && cache->dtype == DT_F32) {
            kern_line(k, "memcpy(fu_dst, fu_src, %lld * sizeof(float));", (long long)width);
        } else if (!rope) {     /* an f16/bf16 cache: rounded to nearest even */
            kern_line(k, "for (int64_t fu_i = 0; fu_i < %lld; ++fu_i)", (long long)width);
            kern_line(k, "    %s;", ty_store1(cache->dtype, "fu_dst", "fu_i", "fu_src[fu_i]"));
        } else {
            int64_t hd = rope->i[0], half = hd / 2;
            rope_angles(k, rope, kern_buf(k, rope->in[1], false), "fu_t");
            kern_line(k, "for (int64_t fu_h = 0; fu_h < %lld; ++fu_h)", (long long)(width / hd));
            kern_line(k, "    for (int64_t fu_i = 0; fu_i < %lld; ++fu_i) {", (long long)half);
            kern_line(k, "        float fu_x1 = fu_src[fu_h * %lld + fu_i], fu_x2 = fu_src[fu_h * %lld + fu_i + %lld];",
                      (long long)hd, (long long)hd, (long long)half);
            kern_line(k, "        %s;", ty_store1(cache->dtype, "fu_dst", fu_format("fu_h * %lld + fu_i", (long long)hd),
                                                 "fu_x1 * fu_cs[fu_i] - fu_x2 * fu_sn[fu_i]"));
            kern_line(k, "        %s;", ty_store1(cache->dtype, "fu_dst",
                                                 fu_format("fu_h * %lld + fu_i + %lld", (long long)hd, (long long)half),
                                                 "fu_x2 * fu_cs[fu_i] + fu_x1 * fu_sn[fu_i]"));
            kern_line(k, "    }");
        }
        kern_indent(k, -1);
        kern_line(k, "}");
    }
}

/* Vector loop bodies of the attention kernel (ctx: see each). */
static void fa_max(Kern *k, void *ctx, bool tail) {
    (void)ctx;
    const Target *t = kern_target(k);
    kern_line(k, "fu_vm = %s;", v_max_acc(t, vload(k, "fu_sr + fu_j", tail, "-INFINITY"), "fu_vm"));
}

static void fa_exp(Kern *k, void *ctx, bool tail) {
    (void)ctx;
    const Target *t = kern_target(k);
    kern_line(k, "%s fu_p = %s;", vt(k),
              v_unary(t, OP_EXP, v_bin(t, OP_SUB, vload(k, "fu_sr + fu_j", tail, NULL), v_set1(t, "fu_mref"))));
    kern_line(k, "%s;", vstore(k, "fu_sr + fu_j", "fu_p", tail));
    kern_line(k, "fu_vs = %s;", v_bin(t, OP_ADD, "fu_vs", tail_only(k, "fu_p", tail, "0.0f")));
}

/* softcap: fu_sr[fu_j..] = C tanh(fu_sr[fu_j..] / C), ctx the attention node */
static void fa_cap(Kern *k, void *ctx, bool tail) {
    const Node *att = ctx;
    const Target *t = kern_target(k);
    const char *x = v_bin(t, OP_MUL, vload(k, "fu_sr + fu_j", tail, NULL), v_set1(t, c_float_lit(1.0 / att->f[1])));
    kern_line(k, "%s;", vstore(k, "fu_sr + fu_j", v_bin(t, OP_MUL, v_unary(t, OP_TANH, x), v_set1(t, c_float_lit(att->f[1]))),
                               tail));
}

/* fu_y[fu_d..] = fu_or[fu_d..] * fu_inv */
static void fa_out(Kern *k, void *ctx, bool tail) {
    const char *y = ctx;    /* the output row */
    const Target *t = kern_target(k);
    kern_line(k, "%s;", vstore(k, fu_format("%s + fu_d", y),
                                v_bin(t, OP_MUL, vload(k, "fu_or + fu_d", tail, NULL), v_set1(t, "fu_inv")), tail));
}

/* merge: fu_or[fu_d..] += fu_po[fu_d..] * fu_wt */
static void fa_merge(Kern *k, void *ctx, bool tail) {
    (void)ctx;
    const Target *t = kern_target(k);
    kern_line(k, "%s;", vstore(k, "fu_or + fu_d",
                                v_fma(t, vload(k, "fu_po + fu_d", tail, NULL), v_set1(t, "fu_wt"),
                                      vload(k, "fu_or + fu_d", tail, NULL)), tail));
}

/* Register blocking of the two products: FA_RB query rows at a time, and
 * enough vectors across keys (scores) or head_dim (P.V) that the FMAs form
 * independent chains (a single chain waits on the FMA latency). */
#define FA_RB 4

static int fa_nvb(const Target *t) { return t->tiles->fa_unit / t->vec_floats; }

/* Scores of rows fu_r.. (rb of them) for keys fu_v.. (nvb vectors):
 * fu_sc[r][j] = sum_d fu_qt[r][d] * fu_kt[d][j]. */
static void scores_block(Kern *k, int rb, int nvb, long long hd) {
    const Target *t = kern_target(k);
    int W = t->vec_floats;
    kern_line(k, "{");
    kern_indent(k, 1);
    for (int i = 0; i < rb; i++)
        kern_line(k, "const float *fu_q%d = fu_qt + (fu_r + %d) * %lld;", i, i, hd);
    for (int i = 0; i < rb; i++)
        for (int c = 0; c < nvb; c++)
            kern_line(k, "%s fu_a%d_%d = %s;", vt(k), i, c, v_zero(t));
    kern_line(k, "for (int64_t fu_d = 0; fu_d < %lld; ++fu_d) {", hd);
    kern_indent(k, 1);
    kern_line(k, "const float *fu_kd = fu_kt + fu_d * FU_BK + fu_v;");
    for (int c = 0; c < nvb; c++)
        kern_line(k, "%s fu_k%d = %s;", vt(k), c, v_load(t, fu_format("fu_kd + %d", c * W)));
    for (int i = 0; i < rb; i++) {
        kern_line(k, "%s fu_b%d = %s;", vt(k), i, v_set1(t, fu_format("fu_q%d[fu_d]", i)));
        for (int c = 0; c < nvb; c++)
            kern_line(k, "fu_a%d_%d = %s;", i, c, v_fma(t, fu_format("fu_b%d", i), fu_format("fu_k%d", c),
                                                         fu_format("fu_a%d_%d", i, c)));
    }
    kern_indent(k, -1);
    kern_line(k, "}");
    for (int i = 0; i < rb; i++)
        for (int c = 0; c < nvb; c++)
            kern_line(k, "%s;", v_store(t, fu_format("fu_sc + (fu_r + %d) * FU_BK + fu_v + %d", i, c * W),
                                        fu_format("fu_a%d_%d", i, c)));
    kern_indent(k, -1);
    kern_line(k, "}");
}

static void emit_scores(Kern *k, long long hd) {
    const Target *t = kern_target(k);
    int W = t->vec_floats, nvb = fa_nvb(t);
    FU_ASSERT(t->tiles->fa_bk % (nvb * W) == 0);
    kern_line(k, "int64_t fu_r = 0;");
    kern_line(k, "for (; fu_r + %d <= fu_rows; fu_r += %d)", FA_RB, FA_RB);
    kern_line(k, "    for (int64_t fu_v = 0; fu_v < FU_BK; fu_v += %d)", nvb * W);
    kern_indent(k, 2);
    scores_block(k, FA_RB, nvb, hd);
    kern_indent(k, -2);
    kern_line(k, "for (; fu_r < fu_rows; ++fu_r)");
    kern_line(k, "    for (int64_t fu_v = 0; fu_v < FU_BK; fu_v += %d)", nvb * W);
    kern_indent(k, 2);
    scores_block(k, 1, nvb, hd);
    kern_indent(k, -2);
}

/* Scores by dot products over head_dim, key by key: for a handful of query
 * rows, transposing the key block would cost more than the products. */
static void emit_scores_direct(Kern *k, long long hd, long long kstride, DType kt) {
    const Target *t = kern_target(k);
    int W = t->vec_floats;
    long long two = 2LL * W, nfull2 = hd / two * two;
    kern_line(k, "for (int64_t fu_j = 0; fu_j < fu_nb; ++fu_j) {");
    kern_indent(k, 1);
    kern_line(k, "const %s *fu_kr = fu_kb + (fu_s0 + fu_j) * %lld;", ty_ctype(kt), kstride);
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_rows; ++fu_r) {");
    kern_indent(k, 1);
    kern_line(k, "const float *fu_qr = fu_qt + fu_r * %lld;", hd);
    kern_line(k, "%s fu_a0 = %s, fu_a1 = %s;", vt(k), v_zero(t), v_zero(t));
    if (nfull2) {
        kern_line(k, "for (int64_t fu_d = 0; fu_d < %lld; fu_d += %lld) {", nfull2, two);
        kern_line(k, "    fu_a0 = %s;", v_fma(t, v_load(t, "fu_qr + fu_d"), ty_load(t, W, kt, "fu_kr", "fu_d"), "fu_a0"));
        kern_line(k, "    fu_a1 = %s;", v_fma(t, v_load(t, fu_format("fu_qr + fu_d + %d", W)),
                                           ty_load(t, W, kt, "fu_kr", fu_format("fu_d + %d", W)), "fu_a1"));
        kern_line(k, "}");
    }
    for (long long d = nfull2; d < hd; d += W) {
        long long n = hd - d < W ? hd - d : W;
        const char *qp = fu_format("fu_qr + %lld", d), *kd = fu_format("%lld", d);
        const char *nn = fu_format("%lld", n);
        const char *qv = n < W ? v_load_n(t, qp, nn, NULL) : v_load(t, qp);
        const char *kv = n < W ? ty_load_n(t, W, kt, "fu_kr", kd, nn) : ty_load(t, W, kt, "fu_kr", kd);
        kern_line(k, "fu_a0 = %s;", v_fma(t, qv, kv, "fu_a0"));
    }
    kern_line(k, "fu_sc[fu_r * FU_BK + fu_j] = %s;", v_hsum(t, v_bin(t, OP_ADD, "fu_a0", "fu_a1")));
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
}

/* Which keys of the block each query row sees: all fu_nb, or with a causal
 * mask (off: S - T as C) those up to its token's diagonal. */
typedef struct Vis {
    const char *off;    /* NULL: no mask */
    long long G;        /* query rows per token */
    long long W;        /* a sliding window: keys (diagonal - W, diagonal]; 0: none */
} Vis;

/* Declares fu_e<i>, the keys of the block row fu_r + i sees, for i < rb,
 * and fu_emin / fu_emax over them; with a window, the first keys fu_lo<i>
 * and fu_lomin / fu_lomax too. */
static void pv_limits(Kern *k, int rb, const Vis *vis) {
    for (int i = 0; i < rb; i++) {
        if (!vis->off) {
            kern_line(k, "const int64_t fu_e%d = fu_nb;", i);
            continue;
        }
        kern_line(k, "int64_t fu_e%d = fu_t0 + (fu_r + %d) / %lld + %s + 1 - fu_s0;", i, i, vis->G, vis->off);
        kern_line(k, "fu_e%d = fu_e%d < 0 ? 0 : fu_e%d > fu_nb ? fu_nb : fu_e%d;", i, i, i, i);
    }
    const char *mn = "fu_e0", *mx = "fu_e0";
    for (int i = 1; i < rb; i++) {
        mn = fu_format("(fu_e%d < %s ? fu_e%d : %s)", i, mn, i, mn);
        mx = fu_format("(fu_e%d > %s ? fu_e%d : %s)", i, mx, i, mx);
    }
    if (vis->off)
        kern_line(k, "const int64_t fu_emin = %s, fu_emax = %s;", mn, mx);
    else
        kern_line(k, "const int64_t fu_emin = %s;", mn);    /* no diagonal: fu_emax unused */
    if (!vis->W)
        return;
    for (int i = 0; i < rb; i++) {
        kern_line(k, "int64_t fu_lo%d = fu_t0 + (fu_r + %d) / %lld + %s + 1 - %lld - fu_s0;", i, i, vis->G, vis->off,
                  vis->W);
        kern_line(k, "fu_lo%d = fu_lo%d < 0 ? 0 : fu_lo%d > fu_e%d ? fu_e%d : fu_lo%d;", i, i, i, i, i, i);
    }
    mn = "fu_lo0", mx = "fu_lo0";
    for (int i = 1; i < rb; i++) {
        mn = fu_format("(fu_lo%d < %s ? fu_lo%d : %s)", i, mn, i, mn);
        mx = fu_format("(fu_lo%d > %s ? fu_lo%d : %s)", i, mx, i, mx);
    }
    kern_line(k, "const int64_t fu_lomin = %s, fu_lomax = %s;", mn, mx);
}

/* Rows fu_r.. (rb of them), head_dim columns fu_dd + [0, nv vectors, the
 * last `last` wide): fu_ot[r] = fu_ot[r] * fu_cr[r] + sum_j p[r][j] v[s0 + j]
 * over the keys j row r sees.  A masked key is not multiplied by 0: its
 * value row may hold a NaN or an inf, and it must contribute nothing.  Keys
 * all rows see go through the plain loop, the few on the diagonal between
 * fu_emin and fu_emax row by row. */
static void pv_block(Kern *k, int rb, int nv, int last, long long vstride, long long hd, const Vis *vis, DType vdt) {
    const Target *t = kern_target(k);
    int W = t->vec_floats;
    kern_line(k, "{");
    kern_indent(k, 1);
    for (int i = 0; i < rb; i++) {
        kern_line(k, "float *fu_o%d = fu_ot + (fu_r + %d) * %lld + fu_dd;", i, i, hd);
        kern_line(k, "const float *fu_p%d = fu_sc + (fu_r + %d) * FU_BK;", i, i);
    }
    pv_limits(k, rb, vis);
    for (int i = 0; i < rb; i++) {
        kern_line(k, "%s fu_c%d = %s;", vt(k), i, v_set1(t, fu_format("fu_cr[fu_r + %d]", i)));
        for (int c = 0; c < nv; c++) {
            const char *ptr = fu_format("fu_o%d + %d", i, c * W);
            const char *ld = c == nv - 1 && last < W ? v_load_n(t, ptr, fu_format("%d", last), NULL) : v_load(t, ptr);
            kern_line(k, "%s fu_a%d_%d = %s;", vt(k), i, c, v_bin(t, OP_MUL, ld, fu_format("fu_c%d", i)));
        }
    }
    /* the keys in phases: [lomin, min(lomax, emin)) checked (window only),
     * [.., emin) for every row, [.., emax) checked (causal only) */
    const char *ends[3];
    bool checked[3];
    int nph = 0;
    if (vis->W) {
        ends[nph] = "(fu_lomax < fu_emin ? fu_lomax : fu_emin)";
        checked[nph++] = true;
    }
    ends[nph] = "fu_emin";
    checked[nph++] = false;
    if (vis->off) {
        ends[nph] = "fu_emax";
        checked[nph++] = true;
    }
    kern_line(k, "int64_t fu_j = %s;", vis->W ? "fu_lomin" : "0");
    for (int ph = 0; ph < nph; ph++) {
        int diag = checked[ph];
        kern_line(k, "for (; fu_j < %s; ++fu_j) {", ends[ph]);
        kern_indent(k, 1);
        kern_line(k, "const %s *fu_vr = fu_vb + (fu_s0 + fu_j) * %lld + fu_dd;", ty_ctype(vdt), vstride);
        for (int c = 0; c < nv; c++) {
            const char *at = fu_format("%d", c * W);
            kern_line(k, "%s fu_w%d = %s;", vt(k), c,
                      c == nv - 1 && last < W ? ty_load_n(t, W, vdt, "fu_vr", at, fu_format("%d", last))
                                              : ty_load(t, W, vdt, "fu_vr", at));
        }
        for (int i = 0; i < rb; i++) {
            if (diag && vis->W)
                kern_line(k, "if (fu_j >= fu_lo%d && fu_j < fu_e%d) {", i, i);
            else if (diag)
                kern_line(k, "if (fu_j < fu_e%d) {", i);
            kern_indent(k, diag);
            kern_line(k, "%s fu_b%d = %s;", vt(k), i, v_set1(t, fu_format("fu_p%d[fu_j]", i)));
            for (int c = 0; c < nv; c++)
                kern_line(k, "fu_a%d_%d = %s;", i, c, v_fma(t, fu_format("fu_b%d", i), fu_format("fu_w%d", c),
                                                             fu_format("fu_a%d_%d", i, c)));
            kern_indent(k, -diag);
            if (diag)
                kern_line(k, "}");
        }
        kern_indent(k, -1);
        kern_line(k, "}");
    }
    for (int i = 0; i < rb; i++)
        for (int c = 0; c < nv; c++) {
            const char *ptr = fu_format("fu_o%d + %d", i, c * W), *val = fu_format("fu_a%d_%d", i, c);
            kern_line(k, "%s;", c == nv - 1 && last < W ? v_store_n(t, ptr, val, fu_format("%d", last))
                                                         : v_store(t, ptr, val));
        }
    kern_indent(k, -1);
    kern_line(k, "}");
}

/* The head_dim columns in chunks of nvb full vectors (a loop), then what is
 * left (at most nvb - 1 full vectors and a partial one), for rb rows. */
static void pv_rows(Kern *k, int rb, long long vstride, long long hd, const Vis *vis, DType vt) {
    const Target *t = kern_target(k);
    int W = t->vec_floats, nvb = fa_nvb(t);
    long long chunk = (long long)nvb * W, full = hd / chunk * chunk, rest = hd - full;
    if (full) {
        kern_line(k, "for (int64_t fu_dd = 0; fu_dd < %lld; fu_dd += %lld)", full, chunk);
        kern_indent(k, 1);
        pv_block(k, rb, nvb, W, vstride, hd, vis, vt);
        kern_indent(k, -1);
    }
    if (rest) {
        int nv = (int)((rest + W - 1) / W), last = (int)(rest - (long long)(nv - 1) * W);
        kern_line(k, "{");
        kern_indent(k, 1);
        kern_line(k, "const int64_t fu_dd = %lld;", full);
        pv_block(k, rb, nv, last, vstride, hd, vis, vt);
        kern_indent(k, -1);
        kern_line(k, "}");
    }
}

static void emit_pv(Kern *k, long long hd, long long vstride, const Vis *vis, DType vt) {
    kern_line(k, "int64_t fu_r = 0;");
    kern_line(k, "for (; fu_r + %d <= fu_rows; fu_r += %d)", FA_RB, FA_RB);
    kern_indent(k, 1);
    kern_line(k, "{");
    pv_rows(k, FA_RB, vstride, hd, vis, vt);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "for (; fu_r < fu_rows; ++fu_r)");
    kern_indent(k, 1);
    kern_line(k, "{");
    pv_rows(k, 1, vstride, hd, vis, vt);
    kern_line(k, "}");
    kern_indent(k, -1);
}

/* The key block transposed into scratch: fu_kt[d * BK + j] = k[s0 + j][d],
 * zero past the last key (fu_nb).  Whole groups of TW keys go through the
 * Kern API's TW x TW register transposes (about a quarter of the kernel's
 * time was this copy when it went element by element); the rest, and the
 * generic target, element by element. */
static void emit_transpose_keys(Kern *k, long long hd, long long kstride, DType kt) {
    int tw = kern_tw(k);
    kern_line(k, "for (int64_t fu_j = 0; fu_j < FU_BK; fu_j += %d) {", tw);
    kern_indent(k, 1);
    if (tw > 1) {
        long long full = hd / tw * tw;
        kern_line(k, "if (fu_j + %d <= fu_nb) {", tw);
        kern_indent(k, 1);
        if (full) {
            const char *rows[8], *dst[8];
            for (int r = 0; r < tw; r++) {
                rows[r] = ty_load(kern_target(k), tw, kt, fu_format("(fu_kb + (fu_s0 + fu_j + %d) * %lld)", r, kstride), "fu_d");
                dst[r] = fu_format("fu_kt + (fu_d + %d) * FU_BK + fu_j", r);
            }
            kern_line(k, "for (int64_t fu_d = 0; fu_d < %lld; fu_d += %d)", full, tw);
            kern_indent(k, 1);
            kern_transpose(k, rows, dst);
            kern_indent(k, -1);
        }
        if (full < hd) {
            kern_line(k, "for (int64_t fu_d = %lld; fu_d < %lld; ++fu_d)", full, hd);
            kern_line(k, "    for (int64_t fu_q = 0; fu_q < %d; ++fu_q)", tw);
            kern_line(k, "        fu_kt[fu_d * FU_BK + fu_j + fu_q] = %s;",
                      ty_load1(kt, "fu_kb", fu_format("(fu_s0 + fu_j + fu_q) * %lld + fu_d", kstride)));
        }
        kern_line(k, "continue;");
        kern_indent(k, -1);
        kern_line(k, "}");
    }
    kern_line(k, "for (int64_t fu_q = 0; fu_q < %d; ++fu_q)", tw);
    kern_line(k, "    for (int64_t fu_d = 0; fu_d < %lld; ++fu_d)", hd);
    kern_line(k, "        fu_kt[fu_d * FU_BK + fu_j + fu_q] = fu_j + fu_q < fu_nb ? %s : 0.0f;",
              ty_load1(kt, "fu_kb", fu_format("(fu_s0 + fu_j + fu_q) * %lld + fu_d", kstride)));
    kern_indent(k, -1);
    kern_line(k, "}");
}

static void emit_attention(Kern *k, const Kernel *kr) {
    const Node *att = NULL;
    for (int i = 0; i < kr->nnodes; i++)
        if (kr->nodes[i]->op == OP_ATTENTION)
            att = kr->nodes[i];
    FU_ASSERT(att);
    long long H = att->i[0], KVH = att->i[1], hd = att->i[2], G = H / KVH;
    const TargetTiles *tl = kern_target(k)->tiles;
    long long BK = tl->fa_bk, BQ = tl->fa_rows / G > 0 ? tl->fa_rows / G : 1, ROWS = BQ * G, half = hd / 2;
    const Node *qn = att->in[0], *kn = att->in[1], *vn = att->in[2], *qrope = NULL;
    if (qn->op == OP_ROPE && in_kernel(kr, qn)) {
        qrope = qn;
        qn = qn->in[0];
        FU_ASSERT(qrope->i[0] == hd);
    }
    /* what attention reads: the caches (after the appends) or k and v themselves */
    Src q = source(k, kr, qn), ks, vs;
    const Node *kc = kn->op == OP_APPEND && in_kernel(kr, kn) ? kn->in[0] : NULL;
    const Node *vc = vn->op == OP_APPEND && in_kernel(kr, vn) ? vn->in[0] : NULL;
    if (kc) {
        ks.ptr = kern_buf(k, kc, true);
        ks.stride = KVH * hd;
        ks.off = 0;
        ks.dt = kc->dtype;
    } else {
        ks = source(k, kr, kn);
    }
    if (vc) {
        vs.ptr = kern_buf(k, vc, true);
        vs.stride = KVH * hd;
        vs.off = 0;
        vs.dt = vc->dtype;
    } else {
        vs = source(k, kr, vn);
    }
    const char *y = kern_buf(k, att, true);
    const char *T = kern_dim(k, att->in[0]->shape[0]);
    const char *S = kern_dim(k, att->in[1]->shape[0]);
    const char *OFF = kern_dim(k, dim_sub(att->in[1]->shape[0], att->in[0]->shape[0]));
    const char *pos = qrope ? kern_buf(k, qrope->in[1], false) : NULL;
    for (int i = 0; i < kr->nnodes; i++)
        FU_ASSERT(kr->nodes[i] == att || !kern_is_result(k, kr->nodes[i]) ||
                  kr->nodes[i]->op == OP_APPEND);

    /* per-thread scratch: q tile, output tile, scores, transposed keys,
     * row max and sum, rope angles, two slots of partial results */
    long long PART = ROWS * (hd + 2);
    long long off_q = 0, off_o = off_q + ROWS * hd, off_s = off_o + ROWS * hd;
    long long off_kt = off_s + ROWS * BK, off_m = off_kt + hd * BK, off_l = off_m + ROWS;
    long long off_cr = off_l + ROWS, off_cs = off_cr + ROWS, off_sn = off_cs + half + 1;
    long long off_part = off_sn + half + 1;
    off_part = (off_part + 15) / 16 * 16;
    long long total = off_part + 2 * PART;
    kern_scratch(k, fu_format("%lld * sizeof(float)", total));

    kern_line(k, "enum { FU_BK = %lld };", BK);
    kern_line(k, "float *fu_ws = (float *)fr_scratch(tid);");
    kern_line(k, "float *fu_cs = fu_ws + %lld, *fu_sn = fu_ws + %lld;", off_cs, off_sn);
    kern_line(k, "(void)fu_cs;");
    kern_line(k, "(void)fu_sn;");

    /* in a batch, fu_bw picks one work item or the appends alone (kern_batch_items) */
    bool bw = kern_batch_items(k, KVH, BQ, att->in[0]->shape[0], att->in[1]->shape[0], att->i[3] != 0, att->i[4]);

    /* phase A: appends (and rope of k) */
    bool appends = kc || vc;
    if (appends) {
        if (bw) {
            kern_line(k, "if (fu_bw < 0) {");
            kern_indent(k, 1);
        }
        kern_line(k, "{");
        kern_indent(k, 1);
        kern_line(k, "int64_t fu_a0, fu_a1;");
        kern_line(k, "fr_split(%s, %s, nth, &fu_a0, &fu_a1);", T,
                  bw ? "fu_bw < -1 ? (int)((tid + (-2 - fu_bw)) % nth) : tid" : "tid");
        emit_appends(k, kr, att);
        kern_indent(k, -1);
        kern_line(k, "}");
        if (bw) {
            kern_line(k, "if (fu_bw < -1)");
            kern_line(k, "    return;");
        }
        kern_line(k, "fr_barrier(nth);");
        if (bw) {
            kern_indent(k, -1);
            kern_line(k, "}");
        }
    } else if (bw) {
        kern_line(k, "if (fu_bw < -1)");
        kern_line(k, "    return;");
    }

    /* work items: (kv head, query tile, key split) */
    kern_line(k, "int64_t fu_ntiles = (%s + %lld) / %lld;", T, BQ - 1, BQ);
    kern_line(k, "int64_t fu_base = %lld * fu_ntiles, fu_nsplit = 1;", KVH);
    /* fewer items than threads: split the keys, at least fa_split per split */
    kern_line(k, "int64_t fu_nkeys = %s;", S);
    if (att->i[4])  /* a window: an item's tile sees at most W + BQ - 1 keys */
        kern_line(k, "fu_nkeys = fu_nkeys < %lld ? fu_nkeys : %lld;", (long long)att->i[4] + BQ - 1,
                  (long long)att->i[4] + BQ - 1);
    kern_line(k, "if (fu_base < nth%s) {", bw ? " && fu_bw < 0" : "");
    kern_line(k, "    fu_nsplit = (nth + fu_base - 1) / fu_base;");
    kern_line(k, "    if (fu_nsplit > (fu_nkeys + %d) / %d)", tl->fa_split - 1, tl->fa_split);
    kern_line(k, "        fu_nsplit = (fu_nkeys + %d) / %d;", tl->fa_split - 1, tl->fa_split);
    kern_line(k, "    if (fu_nsplit < 1)");
    kern_line(k, "        fu_nsplit = 1;");
    kern_line(k, "}");
    kern_line(k, "int64_t fu_items = fu_base * fu_nsplit;");
    if (bw)     /* one item: the loop runs once */
        kern_line(k, "for (int64_t fu_w = fu_bw < 0 ? tid : fu_bw; fu_w < (fu_bw < 0 ? fu_items : fu_bw + 1); fu_w += nth) {");
    else
        kern_line(k, "for (int64_t fu_w = tid; fu_w < fu_items; fu_w += nth) {");
    kern_indent(k, 1);
    kern_line(k, "int64_t fu_g = fu_w / fu_nsplit / fu_ntiles, fu_tile = fu_w / fu_nsplit %% fu_ntiles, fu_sp = fu_w %% fu_nsplit;");
    kern_line(k, "int64_t fu_t0 = fu_tile * %lld, fu_nt = %s - fu_t0 < %lld ? %s - fu_t0 : %lld;", BQ, T, BQ, T, BQ);
    kern_line(k, "int64_t fu_rows = fu_nt * %lld;", G);
    kern_line(k, "float *fu_qt = fu_ws + %lld, *fu_ot = fu_ws + %lld, *fu_sc = fu_ws + %lld, *fu_kt = fu_ws + %lld;",
              off_q, off_o, off_s, off_kt);
    kern_line(k, "float *fu_mx = fu_ws + %lld, *fu_l = fu_ws + %lld, *fu_cr = fu_ws + %lld;", off_m, off_l, off_cr);
    /* the query tile: row fu_tt * G + fu_gh is token t0 + fu_tt, head g * G + fu_gh,
     * rotated and scaled as it is loaded */
    kern_line(k, "for (int64_t fu_tt = 0; fu_tt < fu_nt; ++fu_tt) {");
    kern_indent(k, 1);
    kern_line(k, "const float *fu_qsrc = %s;", src_row(&q, "(fu_t0 + fu_tt)"));
    if (qrope)
        rope_angles(k, qrope, pos, "fu_t0 + fu_tt");
    kern_line(k, "for (int64_t fu_gh = 0; fu_gh < %lld; ++fu_gh) {", G);
    kern_line(k, "    const float *fu_qh = fu_qsrc + (fu_g * %lld + fu_gh) * %lld;", G, hd);
    kern_line(k, "    float *fu_qr = fu_qt + (fu_tt * %lld + fu_gh) * %lld;", G, hd);
    if (qrope) {
        kern_line(k, "    for (int64_t fu_i = 0; fu_i < %lld; ++fu_i) {", half);
        kern_line(k, "        float fu_x1 = fu_qh[fu_i], fu_x2 = fu_qh[fu_i + %lld];", half);
        kern_line(k, "        fu_qr[fu_i] = (fu_x1 * fu_cs[fu_i] - fu_x2 * fu_sn[fu_i]) * %s;", c_float_lit(att->f[0]));
        kern_line(k, "        fu_qr[fu_i + %lld] = (fu_x2 * fu_cs[fu_i] + fu_x1 * fu_sn[fu_i]) * %s;", half,
                  c_float_lit(att->f[0]));
        kern_line(k, "    }");
    } else {
        kern_line(k, "    for (int64_t fu_d = 0; fu_d < %lld; ++fu_d)", hd);
        kern_line(k, "        fu_qr[fu_d] = fu_qh[fu_d] * %s;", c_float_lit(att->f[0]));
    }
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_rows; ++fu_r) {");
    kern_line(k, "    fu_mx[fu_r] = -INFINITY;");
    kern_line(k, "    fu_l[fu_r] = 0.0f;");
    kern_line(k, "    for (int64_t fu_d = 0; fu_d < %lld; ++fu_d)", hd);
    kern_line(k, "        fu_ot[fu_r * %lld + fu_d] = 0.0f;", hd);
    kern_line(k, "}");
    /* the keys this item sees: up to the last visible key of its last token,
     * then this split's share of them */
    if (att->i[3])
        kern_line(k, "int64_t fu_lim = fu_t0 + fu_nt + %s < %s ? fu_t0 + fu_nt + %s : %s;", OFF, S, OFF, S);
    else
        kern_line(k, "int64_t fu_lim = %s;", S);
    /* with a window, from the first key its first token sees: decode reads
     * only the last W rows of the cache */
    if (att->i[4]) {
        kern_line(k, "int64_t fu_kst = fu_t0 + %s + 1 - %lld;", OFF, (long long)att->i[4]);
        kern_line(k, "fu_kst = fu_kst < 0 ? 0 : fu_kst;");
        kern_line(k, "fu_lim = fu_lim < fu_kst ? fu_kst : fu_lim;");
    } else {
        kern_line(k, "const int64_t fu_kst = 0;");
    }
    kern_line(k, "int64_t fu_chunk = (fu_lim - fu_kst + fu_nsplit - 1) / fu_nsplit;");
    kern_line(k, "int64_t fu_kbeg = fu_kst + fu_sp * fu_chunk, fu_kend = fu_kbeg + fu_chunk < fu_lim ? fu_kbeg + fu_chunk : fu_lim;");
    kern_line(k, "const %s *fu_kb = %s + fu_g * %lld;", ty_ctype(ks.dt), ks.off ? fu_format("%s + %lld", ks.ptr, (long long)ks.off) : ks.ptr, hd);
    kern_line(k, "const %s *fu_vb = %s + fu_g * %lld;", ty_ctype(vs.dt), vs.off ? fu_format("%s + %lld", vs.ptr, (long long)vs.off) : vs.ptr, hd);
    kern_line(k, "for (int64_t fu_s0 = fu_kbeg; fu_s0 < fu_kend; fu_s0 += FU_BK) {");
    kern_indent(k, 1);
    kern_line(k, "int64_t fu_nb = fu_kend - fu_s0 < FU_BK ? fu_kend - fu_s0 : FU_BK;");
    /* Few query rows (decode): dot products straight from the key rows.
     * Many: the K block transposed (zero past the last key), fu_kt[d * BK +
     * j] = k[s0 + j][d], and the register-blocked sweep over keys. */
    kern_line(k, "if (fu_rows <= %d) {", tl->fa_direct);
    kern_indent(k, 1);
    emit_scores_direct(k, hd, (long long)ks.stride, ks.dt);
    kern_indent(k, -1);
    kern_line(k, "} else {");
    kern_indent(k, 1);
    emit_transpose_keys(k, hd, (long long)ks.stride, ks.dt);
    emit_scores(k, hd);
    kern_indent(k, -1);
    kern_line(k, "}");
    /* the online softmax, row by row: p = exp(s - new max) for the visible
     * keys (the rest are never read); the old sum and output scale by corr.
     * While every score so far is -inf the max is -inf and exp(s - max)
     * would be NaN: fu_mref is 0 then (p = 0, corr = 0).  A NaN score makes p
     * NaN, a +inf one makes it exp(inf - inf) = NaN, as softmax has it. */
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_rows; ++fu_r) {");
    kern_indent(k, 1);
    if (att->i[3]) {
        kern_line(k, "int64_t fu_jv = fu_t0 + fu_r / %lld + %s + 1 - fu_s0;", G, OFF);
        kern_line(k, "fu_jv = fu_jv < 0 ? 0 : fu_jv > fu_nb ? fu_nb : fu_jv;");
    } else {
        kern_line(k, "int64_t fu_jv = fu_nb;");
    }
    if (att->i[4]) {
        kern_line(k, "int64_t fu_jlo = fu_t0 + fu_r / %lld + %s + 1 - %lld - fu_s0;", G, OFF, (long long)att->i[4]);
        kern_line(k, "fu_jlo = fu_jlo < 0 ? 0 : fu_jlo > fu_jv ? fu_jv : fu_jlo;");
    } else {
        kern_line(k, "const int64_t fu_jlo = 0;");
    }
    kern_line(k, "float *fu_sr = fu_sc + fu_r * FU_BK;");
    kern_line(k, "if (fu_jv == fu_jlo) {");
    kern_line(k, "    fu_cr[fu_r] = 1.0f;");
    kern_line(k, "    continue;");
    kern_line(k, "}");
    const Target *t = kern_target(k);
    kern_line(k, "int64_t fu_j = fu_jlo;");
    if (att->f[1] > 0) {     /* softcap, then the mask */
        vloop(k, "fu_j", "fu_jv", fa_cap, (void *)att);
        kern_line(k, "fu_j = fu_jlo;");
    }
    if (att->nin == 4) {
        const Node *mn = att->in[3];
        const char *m = kern_buf(k, mn, false);
        const char *row = mn->rank == 2 ? fu_format("%s + (fu_t0 + fu_r / %lld) * %s", m, G, S) : m;
        kern_line(k, "const %s *fu_mr = %s + fu_s0;", mn->dtype == DT_I32 ? "int32_t" : "float", row);
        kern_line(k, "for (; fu_j < fu_jv; ++fu_j)");
        if (mn->dtype == DT_I32)
            kern_line(k, "    fu_sr[fu_j] = fu_mr[fu_j] != 0 ? fu_sr[fu_j] : -INFINITY;");
        else
            kern_line(k, "    fu_sr[fu_j] += fu_mr[fu_j];");
        kern_line(k, "fu_j = fu_jlo;");
    }
    kern_line(k, "%s fu_vm = %s;", vt(k), v_set1(t, "-INFINITY"));
    vloop(k, "fu_j", "fu_jv", fa_max, NULL);
    kern_line(k, "float fu_mb = %s;", v_hmax(t, "fu_vm"));
    kern_line(k, "float fu_mnew = fu_mb > fu_mx[fu_r] ? fu_mb : fu_mx[fu_r];");
    kern_line(k, "float fu_mref = fu_mnew == -INFINITY ? 0.0f : fu_mnew;");
    kern_line(k, "float fu_corr = expf(fu_mx[fu_r] - fu_mref);");
    kern_line(k, "%s fu_vs = %s;", vt(k), v_zero(t));
    kern_line(k, "fu_j = fu_jlo;");
    vloop(k, "fu_j", "fu_jv", fa_exp, NULL);
    kern_line(k, "fu_l[fu_r] = fu_l[fu_r] * fu_corr + %s;", v_hsum(t, "fu_vs"));
    kern_line(k, "fu_mx[fu_r] = fu_mnew;");
    kern_line(k, "fu_cr[fu_r] = fu_corr;");
    kern_indent(k, -1);
    kern_line(k, "}");
    Vis vis = {att->i[3] ? OFF : NULL, G, att->i[4]};
    emit_pv(k, hd, (long long)vs.stride, &vis, vs.dt);
    kern_indent(k, -1);
    kern_line(k, "}");
    /* finish: normalise into y, or leave the partial for the merge */
    kern_line(k, "if (fu_nsplit == 1) {");
    kern_indent(k, 1);
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_rows; ++fu_r) {");
    kern_line(k, "    float fu_inv = fu_l[fu_r] == 0.0f ? 0.0f : 1.0f / fu_l[fu_r];");
    kern_line(k, "    const float *fu_or = fu_ot + fu_r * %lld;", hd);
    kern_line(k, "    float *fu_y = %s + (fu_t0 + fu_r / %lld) * %lld + (fu_g * %lld + fu_r %% %lld) * %lld;", y, G,
              H * hd, G, G, hd);
    kern_line(k, "    int64_t fu_d = 0;");
    kern_indent(k, 1);
    vloop(k, "fu_d", fu_format("%lld", hd), fa_out, (void *)"fu_y");
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "} else {");
    kern_indent(k, 1);
    /* slot w / nth of this thread's partial area: [m, l, o[hd]] per row */
    kern_line(k, "float *fu_pp = fu_ws + %lld + (fu_w / nth) * %lld;", off_part, PART);
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_rows; ++fu_r) {");
    kern_line(k, "    fu_pp[fu_r * %lld] = fu_mx[fu_r];", hd + 2);
    kern_line(k, "    fu_pp[fu_r * %lld + 1] = fu_l[fu_r];", hd + 2);
    kern_line(k, "    memcpy(fu_pp + fu_r * %lld + 2, fu_ot + fu_r * %lld, %lld * sizeof(float));", hd + 2, hd, hd);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");

    /* merge the splits of each (kv head, tile) by their log-sum-exp */
    kern_line(k, "if (fu_nsplit > 1) {");
    kern_indent(k, 1);
    kern_line(k, "fr_barrier(nth);");
    kern_line(k, "for (int64_t fu_b = tid; fu_b < fu_base; fu_b += nth) {");
    kern_indent(k, 1);
    kern_line(k, "int64_t fu_g = fu_b / fu_ntiles, fu_tile = fu_b %% fu_ntiles;");
    kern_line(k, "int64_t fu_t0 = fu_tile * %lld, fu_nt = %s - fu_t0 < %lld ? %s - fu_t0 : %lld;", BQ, T, BQ, T, BQ);
    kern_line(k, "float *fu_or = fu_ws + %lld;", off_o);
    kern_line(k, "for (int64_t fu_r = 0; fu_r < fu_nt * %lld; ++fu_r) {", G);
    kern_indent(k, 1);
    kern_line(k, "float fu_mm = -INFINITY, fu_ll = 0.0f;");
    kern_line(k, "for (int64_t fu_sp = 0; fu_sp < fu_nsplit; ++fu_sp) {");
    kern_line(k, "    int64_t fu_w = fu_b * fu_nsplit + fu_sp;");
    kern_line(k, "    const float *fu_po = (const float *)fr_scratch((int)(fu_w %% nth)) + %lld + (fu_w / nth) * %lld + fu_r * %lld;",
              off_part, PART, hd + 2);
    kern_line(k, "    fu_mm = fu_po[0] > fu_mm ? fu_po[0] : fu_mm;");
    kern_line(k, "}");
    kern_line(k, "for (int64_t fu_d = 0; fu_d < %lld; ++fu_d)", hd);
    kern_line(k, "    fu_or[fu_d] = 0.0f;");
    /* every split is merged, also when no split saw a key with a finite
     * score (fu_mm = -inf, weights exp(m - 0) = 0): a NaN in a partial
     * must reach the output */
    kern_line(k, "float fu_mref = fu_mm == -INFINITY ? 0.0f : fu_mm;");
    kern_line(k, "for (int64_t fu_sp = 0; fu_sp < fu_nsplit; ++fu_sp) {");
    kern_indent(k, 1);
    kern_line(k, "int64_t fu_w = fu_b * fu_nsplit + fu_sp;");
    kern_line(k, "const float *fu_po = (const float *)fr_scratch((int)(fu_w %% nth)) + %lld + (fu_w / nth) * %lld + fu_r * %lld;",
              off_part, PART, hd + 2);
    kern_line(k, "float fu_wt = expf(fu_po[0] - fu_mref);");
    kern_line(k, "fu_ll += fu_po[1] * fu_wt;");
    kern_line(k, "fu_po += 2;");
    kern_line(k, "int64_t fu_d = 0;");
    vloop(k, "fu_d", fu_format("%lld", hd), fa_merge, NULL);
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_line(k, "float fu_inv = fu_ll == 0.0f ? 0.0f : 1.0f / fu_ll;");
    kern_line(k, "float *fu_y = %s + (fu_t0 + fu_r / %lld) * %lld + (fu_g * %lld + fu_r %% %lld) * %lld;", y, G, H * hd,
              G, G, hd);
    kern_line(k, "int64_t fu_d = 0;");
    vloop(k, "fu_d", fu_format("%lld", hd), fa_out, (void *)"fu_y");
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
    kern_indent(k, -1);
    kern_line(k, "}");
}

/* ---- entry -------------------------------------------------------------------------- */

void emit_fused_kernel(Kern *k, const Kernel *kr) {
    switch (kr->kind) {
    case KK_ELEMWISE: emit_elemwise(k, kr); return;
    case KK_ROWWISE: emit_rowwise(k, kr); return;
    case KK_ATTENTION: emit_attention(k, kr); return;
    default:
        fu_internal(__FILE__, __LINE__, "emit_fused: kernel %d has kind %d", kr->id, (int)kr->kind);
    }
}
