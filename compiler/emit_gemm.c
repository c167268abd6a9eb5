/*
 * emit_gemm.c - matrix multiplies: KK_GEMM and KK_MLP kernels, and the
 * linear/matmul nodes of KK_SINGLE kernels (docs/gemm.md).
 *
 * Prefill (more than 4 rows) is a BLIS-style GEMM written out as C with the
 * target's intrinsics: per thread, loops over a column block (NC), a depth
 * block (KC, B packed into micro-panels of NR columns), a row block (MC, A
 * packed into micro-panels of MR rows), then an MR x NR register tile whose
 * k loop is unrolled by hand.  Partial sums of a tile between depth blocks
 * go to a per-thread accumulator buffer (cacc); after the last depth block
 * the epilogue - the kernel's elementwise nodes, evaluated in registers -
 * runs on the tile and only the kernel's results are stored.  Decode (at
 * most 4 rows) is a GEMV that streams every weight row once with several
 * independent accumulators.  Both split the output columns over the
 * threads; prefill also splits rows when there are too few columns.
 *
 * KK_MLP is two such stages per block of rows: the first computes the
 * intermediate h (e.g. silu(x Wg^T) * (x Wu^T)) for the thread's share of
 * its columns into the thread's scratch (its "piece"); after a barrier the
 * second multiplies the whole h block, read from every thread's piece, by
 * the down projection.  h is never stored whole: only row blocks sized to
 * stay in cache exist, spread over the threads' scratch.
 *
 * Everything is written into the kernel's body (no helper functions), so a
 * multi-target file needs nothing beyond the body's own attribute.  Locals
 * start with fu_ so they never meet a symbol's name.  The blocking numbers
 * per target are in target.c's table; the reasons are below.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- blocking per target ------------------------------------------------------ */

/*
 * The numbers live in target.c's table (TargetTiles); this is why they are what
 * they are.  Sized for a 32 KiB L1, a 512 KiB L2 and a 32 MiB L3 (a Zen 3 core; any
 * larger cache only helps):
 *   KC x NR floats of B (one micro-panel) stay in L1 while every MR-row
 *   micro-panel of A streams past them: KC = 256 gives 16 KiB for AVX2;
 *   MC x KC floats of A (the row block) stay in L2: MC = 144 gives 144 KiB;
 *   KC x NC floats of B (the column block) and the accumulators of the
 *   current rows live in L3: NC = 512 gives 512 KiB per product.
 * The register tiles use most of the vector registers for accumulators:
 *   AVX2     6 x 16: 12 ymm accumulators + 2 for B + 1 broadcast of A (15 of 16)
 *   AVX-512 14 x 32: 28 zmm accumulators + 2 for B + 1 broadcast (31 of 32);
 *            14 rows per two B loads is the best loads-per-FMA that fits
 *   NEON     8 x 12: 24 q accumulators + 3 for B + 2 holding 8 rows of A,
 *            used by lane (vfmaq_laneq_f32): 29 of 32
 *   generic  4 x 4: 16 float accumulators, which compilers keep in registers
 *            (gcc turns the tile into SSE/NEON vectors when the loop is not
 *            unrolled: 22 GFLOP/s here against 6 with four steps unrolled)
 * GEMV chunks are long (4096 outputs) so that a [K, N] weight is read in long
 * contiguous row segments: with 256 it streamed at 85% of the [N, K] rate,
 * with 4096 at the same rate.
 * The k loop is unrolled where that keeps every accumulator in a register
 * (checked in the assembly: gcc spills at AVX2 x4 and AVX-512 x2, and at
 * AVX2 x2 inside a big fused kernel, which then ran 10% slower).
 */
typedef TargetTiles Blk;

/* The row's tiles (target.c's table). */
static Blk blocking(const Target *t) { return *t->tiles; }

/* At most the row's gemv_rows (TargetTiles) rows: GEMV (no packing), rows
 * in register groups of at most GEMV_GROUP (gemv_body_wide takes up to
 * 2 x GEMV_GROUP: a tune file's gemv_max_rows is 4..8).  Up to 8 rows the GEMV wins: a packed GEMM spends
 * more on packing the weights than on the multiply (5 rows: 1.4 ms by GEMM
 * against 0.7 ms for 4 rows by GEMV, 2048 x 2048). */
#define GEMV_GROUP 4
/* KK_MLP: floats of h in one row block, over all threads: the row's
 * mlp_floats (2^22 = 16 MiB, half the L3): with F = 8192, 512 rows, so a
 * 512-token prefill streams the MLP's weights once.  Each thread holds its
 * columns of the block (its piece); the piece is sized at run time from
 * the thread count. */
#define MAX_GROUP_NODES 48
#define MAX_GROUPS 4

/* ---- the plan: what a kernel computes, in GEMM terms ---------------------------- */

/* How an epilogue operand from outside the kernel is indexed against the
 * [rows, N] tile. */
typedef enum ArgKind { ARG_CONST, ARG_SCALAR, ARG_COL, ARG_ROW, ARG_FULL } ArgKind;

typedef struct Prod {
    const Node *mm;     /* the linear or matmul node */
    const Node *b;      /* its B operand (the weight) */
    bool nk;            /* B stored [N, K] (linear out_in, matmul transposed) */
    const Node *bias;   /* linear's own bias, or NULL */
} Prod;

/* Products that share their output tile (at most 2: the g and u of
 * silu(g) * u) and the elementwise nodes computed from them. */
typedef struct Group {
    int np;
    Prod p[2];
    Dim N;
    int nn;
    const Node *nodes[MAX_GROUP_NODES]; /* products, then epilogue nodes, in order */
    const Node *rope;   /* a rope of one of them, applied to the finished block */
    const Node *hnorm;  /* a per-head rms_norm of reshape(one of them) to [rows, heads, hd],
                         * applied to the finished block (Qwen3's q_norm/k_norm) */
    int64_t unit;       /* columns per unit of the thread split */
    int64_t nc;         /* GEMM column block, a multiple of unit */
    int64_t gch;        /* GEMV column chunk, a multiple of unit */
} Group;

typedef struct Stage {
    int idx;            /* 0 or 1: names its locals */
    const Node *x;      /* A as stored, rows of K (for pieces: h) */
    const Node *norm;   /* the prologue norm (its input is x), or NULL */
    bool pieces;        /* KK_MLP second stage: A is h, in the threads' pieces */
    bool q;             /* q8_0/q4_0 weights: A quantized per row, int8 products */
    Dim K;
    int ng;
    Group g[MAX_GROUPS];
} Stage;

typedef struct Plan {
    int ns;
    Stage s[2];
    const Node *h;      /* KK_MLP: the intermediate */
    bool matmul;        /* one batched matmul */
    bool bf16;          /* --compute=bf16: A and B rounded to bf16 (linear_bf16) */
    const Node *out;    /* a product: its shape gives rows and batch */
} Plan;

static bool is_source(const Node *n) {
    switch (n->op) {
    case OP_INPUT: case OP_WEIGHT: case OP_CONST: case OP_CACHE: case OP_OUTPUT:
        return true;
    default:
        return false;
    }
}

static bool in_kernel(const Kernel *kr, const Node *n) {
    for (int i = 0; i < kr->nnodes; i++)
        if (kr->nodes[i] == n)
            return !is_source(n) && n->op != OP_RESHAPE;
    return false;
}

/* n with the reshapes (views) in front of it looked through. */
static const Node *view_root(const Node *n) {
    while (n->op == OP_RESHAPE)
        n = n->in[0];
    return n;
}

/* The head_dim of a per-head norm: an rms_norm over the last axis of a
 * [rows, heads, hd] view of a [rows, heads*hd] tile with weight [hd]; else 0. */
static int64_t head_norm_hd(const Node *n, const Node *tile) {
    const Node *x = n->in[0], *w = n->in[1];
    if (n->op != OP_RMS_NORM || x->op != OP_RESHAPE || view_root(x) != tile || x->rank != 3 ||
        tile->rank != 2 || !dim_eq(x->shape[0], tile->shape[0]) || !dim_is_const(x->shape[2]) ||
        !dim_is_const(tile->shape[1]) || x->shape[2].c <= 0 || tile->shape[1].c % x->shape[2].c ||
        w->rank != 1 || w->dtype != DT_F32 || n->dtype != DT_F32)
        return 0;
    return x->shape[2].c;
}

static bool same_shape(const Node *a, const Node *b) {
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (!dim_eq(a->shape[d], b->shape[d]))
            return false;
    return true;
}

static bool is_const1(Dim d) { return dim_is_const(d) && d.c == 1; }

/* How operand x (from outside) broadcasts against out ([.., rows, N]). */
static bool classify_arg(const Node *x, const Node *out, ArgKind *kind) {
    int r = out->rank, d;
    if (x->op == OP_CONST) {
        *kind = ARG_CONST;
        return true;
    }
    if (x->dtype != DT_F32 || x->rank > r)
        return false;
    bool all1 = true;
    for (d = 0; d < x->rank; d++)
        all1 = all1 && is_const1(x->shape[d]);
    if (all1) {
        *kind = ARG_SCALAR;
        return true;
    }
    if (same_shape(x, out)) {
        *kind = ARG_FULL;
        return true;
    }
    /* [.., N] with every other dim 1: a vector over the columns */
    if (dim_eq(x->shape[x->rank - 1], out->shape[r - 1])) {
        bool ok = true;
        for (d = 0; d < x->rank - 1; d++)
            ok = ok && is_const1(x->shape[d]);
        if (ok) {
            *kind = ARG_COL;
            return true;
        }
    }
    /* [.., rows, 1] with the output's leading dims: one value per row */
    if (x->rank == r && is_const1(x->shape[r - 1])) {
        bool ok = true;
        for (d = 0; d < r - 1; d++)
            ok = ok && dim_eq(x->shape[d], out->shape[d]);
        if (ok) {
            *kind = ARG_ROW;
            return true;
        }
    }
    return false;
}

/* Returns false with the reason in why: "%id op: message", or just the
 * message when the kernel as a whole is at fault (n NULL). */
static bool refuse(char *why, size_t len, const Node *n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static bool refuse(char *why, size_t len, const Node *n, const char *fmt, ...) {
    va_list ap;
    if (!why || len == 0)
        return false;
    int at = n ? snprintf(why, len, "%%%d %s: ", n->id, op_info[n->op].name) : 0;
    if (at < 0 || (size_t)at >= len)
        return false;
    va_start(ap, fmt);
    vsnprintf(why + at, len - (size_t)at, fmt, ap);
    va_end(ap);
    return false;
}

static int find_group(const Stage *s, const Node *n) {
    for (int g = 0; g < s->ng; g++)
        for (int i = 0; i < s->g[g].nn; i++)
            if (s->g[g].nodes[i] == n)
                return g;
    return -1;
}

/* Merges group b into group a (b becomes empty, then is removed). */
static bool merge_groups(Stage *s, int a, int b) {
    Group *ga = &s->g[a], *gb = &s->g[b];
    if (ga->np + gb->np > 2 || ga->nn + gb->nn > MAX_GROUP_NODES)
        return false;
    for (int i = 0; i < gb->np; i++)
        ga->p[ga->np++] = gb->p[i];
    for (int i = 0; i < gb->nn; i++)
        ga->nodes[ga->nn++] = gb->nodes[i];
    /* keep node order topological: ids are topological */
    for (int i = 1; i < ga->nn; i++)
        for (int j = i; j > 0 && ga->nodes[j - 1]->id > ga->nodes[j]->id; j--) {
            const Node *t = ga->nodes[j];
            ga->nodes[j] = ga->nodes[j - 1];
            ga->nodes[j - 1] = t;
        }
    if (gb->rope)
        ga->rope = gb->rope;
    if (gb->hnorm)
        ga->hnorm = gb->hnorm;
    s->ng--;
    if (b != s->ng)
        s->g[b] = s->g[s->ng];
    return true;
}

/* The in-kernel users of n. */
static int kernel_users(const Kernel *kr, const Node *n, const Node **out, int max) {
    int c = 0;
    for (int i = 0; i < kr->nnodes; i++) {
        const Node *u = kr->nodes[i];
        if (!in_kernel(kr, u))
            continue;
        for (int j = 0; j < u->nin; j++)
            if (u->in[j] == n) {
                if (c < max)
                    out[c] = u;
                c++;
                break;
            }
    }
    return c;
}

static bool analyze(const Kernel *kr, Plan *pl, char *why, size_t wn) {
    const Node *norm = NULL;
    int i, j;
    memset(pl, 0, sizeof *pl);
    if (kr->kind != KK_GEMM && kr->kind != KK_MLP && kr->kind != KK_SINGLE)
        return refuse(why, wn, NULL, "kernel kind is not a GEMM kind");
    /* Pass 1: the norm and the products. */
    for (i = 0; i < kr->nnodes; i++) {
        const Node *n = kr->nodes[i];
        if (is_source(n))
            continue;
        if (n->op == OP_RESHAPE) {
            const Node *u[1];
            if (kernel_users(kr, n, u, 1) > 0)
                return refuse(why, wn, n, "a view inside a GEMM kernel");
            continue;
        }
        if (op_info[n->op].cat == CAT_NORM && in_kernel(kr, view_root(n->in[0])))
            continue; /* a norm of the tile: pass 2 */
        if (op_info[n->op].cat == CAT_NORM) {
            if (norm)
                return refuse(why, wn, n, "a second norm");
            if (in_kernel(kr, n->in[0]))
                return refuse(why, wn, n, "the norm's input must come from outside");
            norm = n;
            continue;
        }
        if (n->op != OP_LINEAR && n->op != OP_MATMUL)
            continue;
        const Node *a = n->in[0];
        Prod p = {n, n->in[1], n->op == OP_LINEAR ? n->i[0] == 0 : n->i[0] != 0,
                  n->op == OP_LINEAR && n->nin > 2 ? n->in[2] : NULL};
        if (in_kernel(kr, p.b) || (p.bias && in_kernel(kr, p.bias)))
            return refuse(why, wn, n, "B and bias must come from outside");
        /* B may be a bf16/f16 weight of a linear: the packers and the GEMV
         * read it through typed.c's loads (exact widening); or a q8_0/q4_0
         * weight [N, K] of a linear with a constant K: the stage then
         * quantizes its A rows and multiplies in int8 (emit_qgemm_chunk) */
        const bool quant = dt_info(p.b->dtype)->kind == DK_QUANT;
        if (n->dtype != DT_F32 ||
            !(p.b->dtype == DT_F32 || (n->op == OP_LINEAR && (p.b->dtype == DT_BF16 || p.b->dtype == DT_F16)) ||
              (n->op == OP_LINEAR && quant && p.nk && dim_is_const(a->shape[a->rank - 1]))))
            return refuse(why, wn, n, "not f32, or a bf16/f16/q8_0/q4_0 linear weight");
        if (quant && linear_bf16(n))
            return refuse(why, wn, n, "a q8_0/q4_0 weight under --compute=bf16");
        if (pl->out && linear_bf16(n) != pl->bf16)
            return refuse(why, wn, n, "products of f32 and bf16 compute");
        pl->bf16 = linear_bf16(n);
        int st = 0;
        if (in_kernel(kr, a) && a != norm) {
            if (kr->kind != KK_MLP)
                return refuse(why, wn, n, "A computed inside a KK_GEMM kernel");
            st = 1;
        }
        Stage *s = &pl->s[st];
        if (s->ng == 0 && s->x == NULL) {
            s->x = a == norm && norm ? norm->in[0] : a;
            s->norm = a == norm ? norm : NULL;
            s->pieces = st == 1;
            s->idx = st;
            s->K = a->shape[a->rank - 1];
            if (st == 1)
                pl->h = a;
        } else if ((st == 0 && (a == norm ? norm->in[0] : a) != s->x) || (st == 1 && a != pl->h)) {
            return refuse(why, wn, n, "products of one stage must share A");
        }
        if (s->ng > 0 && s->q != quant)
            return refuse(why, wn, n, "products of q8_0/q4_0 and float weights share A");
        s->q = quant;
        if (s->ng == MAX_GROUPS)
            return refuse(why, wn, n, "too many products");
        Group *g = &s->g[s->ng++];
        memset(g, 0, sizeof *g);
        g->np = 1;
        g->p[0] = p;
        g->N = n->shape[n->rank - 1];
        g->nodes[g->nn++] = n;
        if (n->op == OP_MATMUL)
            pl->matmul = true;
        if (!pl->out) {
            pl->out = n;
        } else {
            bool same = n->rank == pl->out->rank;
            for (j = 0; same && j < n->rank - 1; j++)
                same = dim_eq(n->shape[j], pl->out->shape[j]);
            if (!same)
                return refuse(why, wn, n, "products with different rows");
        }
    }
    if (!pl->out)
        return refuse(why, wn, NULL, "no linear or matmul");
    if (pl->s[0].ng == 0)
        return refuse(why, wn, NULL, "no product reads the kernel's input");
    if (norm && pl->s[0].norm != norm)
        return refuse(why, wn, norm, "the norm feeds no product");
    pl->ns = pl->s[1].ng ? 2 : 1;
    if (kr->kind == KK_MLP && pl->ns != 2)
        return refuse(why, wn, NULL, "KK_MLP without a second linear");
    if (pl->matmul) {
        if (pl->ns != 1 || pl->s[0].ng != 1 || norm)
            return refuse(why, wn, pl->out, "a matmul must be the kernel's only product");
        if (pl->out->op != OP_MATMUL)
            return refuse(why, wn, pl->out, "matmul mixed with linear");
    }
    /* Pass 2: the epilogue nodes join the groups of their operands. */
    for (i = 0; i < kr->nnodes; i++) {
        const Node *n = kr->nodes[i];
        if (!in_kernel(kr, n) || n == norm || n->op == OP_LINEAR || n->op == OP_MATMUL)
            continue;
        OpCat cat = op_info[n->op].cat;
        if (cat == CAT_NORM) {
            /* a per-head norm of a finished tile: the group's last value */
            const Node *src = view_root(n->in[0]), *u[1];
            int hg = find_group(&pl->s[0], src);
            if (hg < 0 || pl->ns != 1 || pl->matmul || !head_norm_hd(n, src) || in_kernel(kr, n->in[1]) ||
                pl->s[0].g[hg].hnorm || pl->s[0].g[hg].rope || kernel_users(kr, src, u, 1) > 0 ||
                kernel_users(kr, n, u, 1) > 0 || !same_shape(src, pl->s[0].g[hg].p[0].mm))
                return refuse(why, wn, n, "a norm of the tile must be rms_norm over each head of a "
                                          "[rows, heads, hd] view of the last value, weight [hd], read by "
                                          "nothing in the kernel");
            pl->s[0].g[hg].hnorm = n;
            continue;
        }
        if (cat != CAT_UNARY && cat != CAT_BINARY && n->op != OP_ROPE)
            return refuse(why, wn, n, "not an elementwise epilogue op");
        int st = -1, g = -1;
        for (j = 0; j < (n->op == OP_ROPE ? 1 : n->nin); j++) {
            const Node *x = n->in[j];
            if (!in_kernel(kr, x))
                continue;
            if (x == norm)
                return refuse(why, wn, n, "the prologue norm feeds an epilogue op");
            int xs = find_group(&pl->s[0], x) >= 0 ? 0 : 1;
            int xg = find_group(&pl->s[xs], x);
            if (xg < 0)
                return refuse(why, wn, n, "operand not computed by the tile");
            if (st >= 0 && st != xs)
                return refuse(why, wn, n, "mixes the two stages");
            st = xs;
            if (g >= 0 && g != xg) {
                int a = g < xg ? g : xg, b = g < xg ? xg : g;
                if (!dim_eq(pl->s[st].g[a].N, pl->s[st].g[b].N) || !merge_groups(&pl->s[st], a, b))
                    return refuse(why, wn, n, "combines more than two products");
                g = a;
            } else {
                g = xg;
            }
        }
        if (st < 0)
            return refuse(why, wn, n, "reads nothing the tile computes");
        Group *gr = &pl->s[st].g[g];
        if (n->dtype != DT_F32 || !same_shape(n, gr->p[0].mm))
            return refuse(why, wn, n, "epilogue op of another shape");
        if (n->op == OP_ROPE) {
            const Node *u[1];
            if (gr->rope || gr->hnorm || pl->matmul || n->rank != 2 || n->i[0] <= 0 || n->i[0] % 2 ||
                !dim_is_const(n->shape[1]) || n->shape[1].c % n->i[0] || in_kernel(kr, n->in[1]) ||
                n->in[1]->rank != 1 || kernel_users(kr, n, u, 1) > 0)
                return refuse(why, wn, n, "rope must be last, on [T, heads*hd], once per product");
            gr->rope = n;
            continue;
        }
        for (j = 0; j < n->nin; j++) {
            ArgKind ak;
            if (!in_kernel(kr, n->in[j]) && !classify_arg(n->in[j], gr->p[0].mm, &ak))
                return refuse(why, wn, n, "an operand that does not broadcast along rows or columns");
        }
        if (gr->nn == MAX_GROUP_NODES)
            return refuse(why, wn, n, "epilogue too long");
        gr->nodes[gr->nn++] = n;
    }
    /* A rope's input must be computed before it and nothing may follow it. */
    for (int s = 0; s < pl->ns; s++)
        for (int g = 0; g < pl->s[s].ng; g++) {
            const Group *gr = &pl->s[s].g[g];
            if (gr->rope && find_group(&pl->s[s], gr->rope->in[0]) != g)
                return refuse(why, wn, gr->rope, "rope of another group");
            if (pl->ns == 2 && s == 0 && gr->rope)
                return refuse(why, wn, gr->rope, "rope inside an MLP");
        }
    if (pl->ns == 2) {
        const Node *u[4];
        if (pl->s[0].ng != 1 || pl->s[1].ng != 1 || pl->s[1].g[0].np != 1)
            return refuse(why, wn, NULL, "KK_MLP needs one first-layer group and one second linear");
        if (find_group(&pl->s[0], pl->h) != 0 || kernel_users(kr, pl->h, u, 4) != 1)
            return refuse(why, wn, pl->h, "the MLP intermediate must feed only the second linear");
        if (pl->out->op != OP_LINEAR || pl->s[1].g[0].p[0].mm->op != OP_LINEAR)
            return refuse(why, wn, NULL, "KK_MLP of matmuls");
    }
    return true;
}

bool emit_gemm_supports(const Kernel *kr, char *why, size_t whylen) {
    Plan pl;
    return analyze(kr, &pl, why, whylen);
}

/* ---- text helpers ----------------------------------------------------------------- */

/* The prefill microkernel's arithmetic.  Under --compute=bf16 the packed
 * panels hold bf16 values either way; where the target has AVX512-BF16 the
 * panels are then packed into k pairs (two bf16 in each 32-bit word, the
 * layout vdpbf16ps and AMX read) and each instruction does two k steps. */
typedef enum Dot {
    DOT_F32,    /* float32 FMAs (also on bf16-rounded panels) */
    DOT_BF16,   /* vdpbf16ps on k pairs */
    DOT_AMX     /* AMX tdpbf16ps: B in k pairs, A as bf16 rows (emit_pack_a_amx) */
} Dot;

/* How a q8_0/q4_0 stage multiplies (docs/gemm.md, "q8_0/q4_0 through this
 * file"): typed.c's int8 pieces, the same ones k_linear calls.  Q_VNNI: the
 * 6 x 32 vpdpbusd tile (fu_qpa, fu_qpb, fu_qmk); Q_AMX: tdpbssd on 32 x 32
 * (fu_qamx); Q_DOT: the int8 dot products (fu_qdot) on every other target. */
typedef enum QMode { Q_DOT, Q_VNNI, Q_AMX } QMode;
enum { QG_KB = 16 };    /* blocks of 32 depths per packed B panel (18 KiB: L1) */

static QMode qmode(const Target *t) {
    if (!ty_qgemm(t))
        return Q_DOT;
    return t->features & FR_CPU_AMX_INT8 ? Q_AMX : Q_VNNI;
}

/* Bytes of one quantized row of K (fu_qx_stride in the generated file). */
static int64_t qx_stride(int64_t K) { return ((K + 31) / 32 * 36 + 63) / 64 * 64; }

/* DOT_AMX: a 32 x 32 tile of 2 x 2 accumulator tiles (16 x 16 floats), two
 * tiles of A (16 rows x 32 bf16) and two of B (16 k pairs x 16 columns) per
 * 32 depths; depth blocks of 512 (a multiple of 32: every depth block but
 * the last fills whole tiles, the last is padded with zeros to fu_kcs). */

typedef struct Gen {
    Kern *k;
    const Target *t;
    Blk b;
    Plan pl;
    const char *vt;         /* vector type */
    const char *M;          /* rows of the whole kernel (a C expression) */
    const char *batch;      /* matmul: batch count, else NULL */
    bool cacc;              /* some depth may exceed KC */
    /* scratch layout, in floats from fr_scratch(tid) */
    int64_t off_pa, off_pb, off_cacc, off_st, off_an, off_yb, off_hp, off_hg, total;
    int64_t ncmax, npmax, gchmax;
    const char *hcap;       /* KK_MLP: floats of h per thread (a C expression) */
    Dot dot;                /* how the prefill tile multiplies */
    const char *kcs;        /* depths between B micro-panels: fu_kc, or fu_kcs (DOT_AMX: whole tiles) */
    DType wdt;              /* the element type of the B being packed or read (f32, bf16, f16) */
    /* q8_0/q4_0 stages (emit_qgemm_chunk, emit_gemv_path): scratch offsets in floats */
    int64_t off_qr, off_qx, off_qa, off_qb, off_qc, off_qt, off_gq, qcrows;
} Gen;

#define L(...) kern_line(G->k, __VA_ARGS__)

static void in(Gen *G) { kern_indent(G->k, 1); }
static void out(Gen *G) { kern_indent(G->k, -1); }

static const char *dimx(Gen *G, Dim d) { return kern_dim(G->k, d); }

/* The product of dims [from, to) of n as a C expression ("1" when empty). */
static const char *numelx(Gen *G, const Node *n, int from, int to) {
    Buf b = {0};
    int64_t c = 1;
    int nf = 0;
    for (int d = from; d < to; d++) {
        if (dim_is_const(n->shape[d])) {
            c *= n->shape[d].c;
            continue;
        }
        buf_printf(&b, "%s%s", nf++ ? " * " : "", dimx(G, n->shape[d]));
    }
    if (nf == 0) {
        free(b.data);
        return fu_format("%lld", (long long)c);
    }
    if (c != 1)
        buf_printf(&b, " * %lld", (long long)c);
    const char *s = fu_format("(%s)", b.data);
    free(b.data);
    return s;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

static const char *buf_of(Gen *G, const Node *n, bool written) { return kern_buf(G->k, n, written); }

/* ---- per-row norm statistics --------------------------------------------------- */

/* Declares fu_mu, fu_lo (layer_norm) and fu_iv for the row at `xr` of K
 * floats: rms_norm: iv = 1 / sqrt(mean(x^2) + eps); layer_norm: the mean as
 * mu + lo and iv = 1 / sqrt(var + eps), where mu is the float mean of a
 * first pass and the second sums x - mu (lo is its mean) and (x - mu)^2
 * (var = that / K - lo^2): the corrected two-pass algorithm, so that
 * (x - mu) - lo is right to float rounding even for rows like 1e6 +- 2.  A
 * row whose float sum of squares overflows (|x| above about 1e19; or, with
 * eps < 1e-30, underflows) is measured again in double (v_norm_stats). */
static void emit_row_stats(Gen *G, const Node *norm, const char *xr, const char *K) {
    const Target *t = G->t;
    int vf = G->b.vf;
    bool ln = norm->op == OP_LAYER_NORM;
    L("float fu_mu = 0.0f, fu_lo = 0.0f, fu_iv;");
    L("{");
    in(G);
    L("%s fu_v0 = %s, fu_v1 = %s;", G->vt, v_zero(t), v_zero(t));
    L("int64_t fu_q = 0;");
    if (ln) {
        L("for (; fu_q + %d <= %s; fu_q += %d) {", 2 * vf, K, 2 * vf);
        L("    fu_v0 = %s;", v_bin(t, OP_ADD, "fu_v0", v_load(t, fu_format("%s + fu_q", xr))));
        L("    fu_v1 = %s;", v_bin(t, OP_ADD, "fu_v1", v_load(t, fu_format("%s + fu_q + %d", xr, vf))));
        L("}");
        L("float fu_sum = %s;", v_hsum(t, v_bin(t, OP_ADD, "fu_v0", "fu_v1")));
        L("for (; fu_q < %s; ++fu_q)", K);
        L("    fu_sum += %s[fu_q];", xr);
        L("fu_mu = fu_sum / (float)%s;", K);
        L("fu_v0 = %s;", v_zero(t));
        L("fu_v1 = %s;", v_zero(t));
        L("%s fu_w0 = %s, fu_w1 = %s;", G->vt, v_zero(t), v_zero(t));
        L("const %s fu_vm = %s;", G->vt, v_set1(t, "fu_mu"));
        L("for (fu_q = 0; fu_q + %d <= %s; fu_q += %d) {", 2 * vf, K, 2 * vf);
        L("    const %s fu_d0 = %s, fu_d1 = %s;", G->vt, v_bin(t, OP_SUB, v_load(t, fu_format("%s + fu_q", xr)), "fu_vm"),
          v_bin(t, OP_SUB, v_load(t, fu_format("%s + fu_q + %d", xr, vf)), "fu_vm"));
        L("    fu_v0 = %s;", v_fma(t, "fu_d0", "fu_d0", "fu_v0"));
        L("    fu_v1 = %s;", v_fma(t, "fu_d1", "fu_d1", "fu_v1"));
        L("    fu_w0 = %s;", v_bin(t, OP_ADD, "fu_w0", "fu_d0"));
        L("    fu_w1 = %s;", v_bin(t, OP_ADD, "fu_w1", "fu_d1"));
        L("}");
        L("float fu_ss = %s, fu_dev = %s;", v_hsum(t, v_bin(t, OP_ADD, "fu_v0", "fu_v1")),
          v_hsum(t, v_bin(t, OP_ADD, "fu_w0", "fu_w1")));
        L("for (; fu_q < %s; ++fu_q) {", K);
        L("    fu_ss += (%s[fu_q] - fu_mu) * (%s[fu_q] - fu_mu);", xr, xr);
        L("    fu_dev += %s[fu_q] - fu_mu;", xr);
        L("}");
        L("fu_lo = fu_dev / (float)%s;", K);
        /* rounding may leave a constant row's variance a hair below 0 */
        L("const float fu_var = fu_ss / (float)%s - fu_lo * fu_lo;", K);
        L("fu_iv = 1.0f / sqrtf((fu_var < 0.0f ? 0.0f : fu_var) + %s);", c_float_lit(norm->f[0]));
    } else {
        L("for (; fu_q + %d <= %s; fu_q += %d) {", 2 * vf, K, 2 * vf);
        L("    const %s fu_d0 = %s, fu_d1 = %s;", G->vt, v_load(t, fu_format("%s + fu_q", xr)),
          v_load(t, fu_format("%s + fu_q + %d", xr, vf)));
        L("    fu_v0 = %s;", v_fma(t, "fu_d0", "fu_d0", "fu_v0"));
        L("    fu_v1 = %s;", v_fma(t, "fu_d1", "fu_d1", "fu_v1"));
        L("}");
        L("float fu_ss = %s;", v_hsum(t, v_bin(t, OP_ADD, "fu_v0", "fu_v1")));
        L("for (; fu_q < %s; ++fu_q)", K);
        L("    fu_ss += %s[fu_q] * %s[fu_q];", xr, xr);
        L("fu_iv = 1.0f / sqrtf(fu_ss / (float)%s + %s);", K, c_float_lit(norm->f[0]));
    }
    L("if (!(fu_ss < INFINITY)%s)", norm->f[0] < 1e-30 ? " || fu_ss < 1e-30f" : "");
    L("    %s;", v_norm_stats(t, xr, K, ln, norm->f[0], "fu_mu", "fu_lo", "fu_iv"));
    out(G);
    L("}");
}

/* The normalized value of x element `xe` at column `col`, given the
 * emit_row_stats expressions mu, lo and iv (scalar C). */
static const char *norm_expr(Gen *G, const Node *norm, const char *xe, const char *col, const char *mu,
                             const char *lo, const char *iv) {
    const char *w = buf_of(G, norm->in[1], false);
    if (norm->op == OP_LAYER_NORM)
        return fu_format("((%s - %s) - %s) * %s * %s[%s] + %s[%s]", xe, mu, lo, iv, w, col,
                         buf_of(G, norm->in[2], false), col);
    return fu_format("%s * %s * %s[%s]", xe, iv, w, col);
}

/* ---- the epilogue ---------------------------------------------------------------- */

/* One place of the epilogue: row `row`, columns [col, col + vf) (cnt: NULL
 * when all vf lanes are real, else how many are), and each product's
 * accumulated value there. */
typedef struct Pos {
    const char *row, *col, *cnt;
    const char *acc[2];
} Pos;

/* Where a stored node's element (row, col) lives: its buffer, or for the
 * MLP's h this thread's piece (rows from the block's first, fu_rb; columns
 * from the thread's first, fu_j0). */
static const char *dest_addr(Gen *G, const Node *n, const Pos *ps, bool piece) {
    if (piece)
        return fu_format("fu_hp + (%s - fu_rb) * fu_hld + (%s - fu_j0)", ps->row, ps->col);
    return fu_format("%s + %s%s * %s + %s", buf_of(G, n, true), G->batch ? "fu_yo + " : "", ps->row,
                     dimx(G, n->shape[n->rank - 1]), ps->col);
}

/* --compute=bf16: a vector (rv) or a float (rs) rounded to bf16; as is otherwise. */
static const char *rv(Gen *G, const char *v) { return G->pl.bf16 ? ty_bf16r(G->t, G->b.vf, v) : v; }
static const char *rs(Gen *G, const char *x) { return G->pl.bf16 ? fu_format("fu_bf16r(%s)", x) : x; }

/* --compute=bf16: the n floats at p rounded to bf16 in place (packed panels). */
static void emit_round_panel(Gen *G, const char *p, const char *n) {
    if (!G->pl.bf16)
        return;
    int vf = G->b.vf;
    L("{");
    in(G);
    L("float *const fu_rp = %s;", p);
    L("const int64_t fu_rn = %s;", n);
    L("int64_t fu_ri = 0;");
    if (vf > 1) {
        L("for (; fu_ri + %d <= fu_rn; fu_ri += %d)", vf, vf);
        L("    %s;", v_store(G->t, "fu_rp + fu_ri", rv(G, v_load(G->t, "fu_rp + fu_ri"))));
    }
    L("for (int64_t fu_left = fu_rn - fu_ri; fu_left > 0; --fu_left, ++fu_ri)"); /* counted: see emit_gemv_cols */
    L("    fu_rp[fu_ri] = fu_bf16r(fu_rp[fu_ri]);");
    out(G);
    L("}");
}

/* DOT_BF16: the npan micro-panels of w floats per depth at base (each
 * w * fu_kc floats apart, already rounded to bf16) packed in place into
 * k pairs: word (p, c) of a panel = bf16 of depth 2p in its low half, of
 * depth 2p + 1 (0 past fu_kc) in its high half.  Pair p is written below
 * depth 2p, which is read first, so in place is safe going forward. */
static void emit_pair_panels(Gen *G, const char *base, int w, const char *npan) {
    L("for (int64_t fu_q = 0; fu_q < %s; ++fu_q) {", npan);
    in(G);
    L("float *const fu_pp = %s + fu_q * %d * %s;", base, w, G->kcs);
    L("for (int64_t fu_p = 0; fu_p < (fu_kc + 1) / 2; ++fu_p) {");
    in(G);
    L("const float *const fu_lo = fu_pp + 2 * fu_p * %d;", w);
    L("const int fu_odd = 2 * fu_p + 1 >= fu_kc;");
    for (int c = 0; c < w; c += 16) {
        int n = w - c < 16 ? w - c : 16;
        const char *m = fu_format("(__mmask16)0x%x", n == 16 ? 0xffff : (1 << n) - 1);
        L("{");
        in(G);
        L("const __m512i fu_l = _mm512_maskz_loadu_epi32(%s, fu_lo + %d);", m, c);
        L("const __m512i fu_h = fu_odd ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi32(%s, fu_lo + %d);", m,
          w + c);
        L("_mm512_mask_storeu_epi32(fu_pp + fu_p * %d + %d, %s, _mm512_or_si512(_mm512_srli_epi32(fu_l, 16),", w, c, m);
        L("                         _mm512_and_si512(fu_h, _mm512_set1_epi32((int)0xffff0000u))));");
        out(G);
        L("}");
    }
    out(G);
    L("}");
    if (G->dot == DOT_AMX) {
        /* whole tiles: the pairs past the depth are zero */
        L("for (int64_t fu_z = (fu_kc + 1) / 2 * %d; fu_z < fu_kcs / 2 * %d; ++fu_z)", w, w);
        L("    fu_pp[fu_z] = 0.0f;");
    }
    out(G);
    L("}");
}

static const char *vload(Gen *G, const char *p, const char *cnt) {
    return cnt ? v_load_n(G->t, p, cnt, NULL) : v_load(G->t, p);
}

static const char *vstore(Gen *G, const char *p, const char *v, const char *cnt) {
    return cnt ? v_store_n(G->t, p, v, cnt) : v_store(G->t, p, v);
}

/* The value of operand x (from outside the kernel) at a place. */
static const char *arg_value(Gen *G, const Group *gr, const Node *x, const Pos *ps) {
    ArgKind ak;
    bool ok = classify_arg(x, gr->p[0].mm, &ak);
    FU_ASSERT(ok);
    switch (ak) {
    case ARG_CONST: return v_set1(G->t, c_float_lit(x->f[0]));
    case ARG_SCALAR: return v_set1(G->t, fu_format("%s[0]", buf_of(G, x, false)));
    case ARG_COL: return vload(G, fu_format("%s + %s", buf_of(G, x, false), ps->col), ps->cnt);
    case ARG_ROW:
        return v_set1(G->t, fu_format("%s[%s%s]", buf_of(G, x, false), G->batch ? "fu_ro + " : "", ps->row));
    case ARG_FULL:
        return vload(G, fu_format("%s + %s%s * %s + %s", buf_of(G, x, false), G->batch ? "fu_yo + " : "",
                                  ps->row, dimx(G, x->shape[x->rank - 1]), ps->col),
                     ps->cnt);
    }
    FU_UNREACHABLE();
}

/* Whether node n of group gr is read by another node of the group. */
static bool used_in_group(const Group *gr, const Node *n) {
    for (int i = 0; i < gr->nn; i++)
        for (int j = 0; j < gr->nodes[i]->nin; j++)
            if (gr->nodes[i]->in[j] == n)
                return true;
    return false;
}

/* Evaluates the group's nodes at one place, in registers, and stores the
 * kernel's results (and what the rope and the MLP's second stage need). */
static void emit_position(Gen *G, const Stage *s, const Group *gr, const Pos *ps, bool h_piece) {
    const Target *t = G->t;
    L("{");
    in(G);
    for (int i = 0; i < gr->nn; i++) {
        const Node *n = gr->nodes[i];
        const char *v;
        if (n->op == OP_LINEAR || n->op == OP_MATMUL) {
            int p = 0;
            while (gr->p[p].mm != n)
                p++;
            v = ps->acc[p];
            if (gr->p[p].bias)
                v = v_bin(t, OP_ADD, v, vload(G, fu_format("%s + %s", buf_of(G, gr->p[p].bias, false), ps->col), ps->cnt));
        } else {
            const char *a[2];
            for (int j = 0; j < n->nin && j < 2; j++)
                a[j] = find_group(s, n->in[j]) >= 0 ? fu_format("fu_e%d", n->in[j]->id)
                                                      : arg_value(G, gr, n->in[j], ps);
            v = op_info[n->op].cat == CAT_UNARY ? v_unary(t, n->op, a[0]) : v_bin(t, n->op, a[0], a[1]);
        }
        L("const %s fu_e%d = %s;", G->vt, n->id, v);
        bool stored = false;
        if (kern_is_result(G->k, n)) {
            L("%s;", vstore(G, dest_addr(G, n, ps, false), fu_format("fu_e%d", n->id), ps->cnt));
            stored = true;
        }
        if (gr->rope && gr->rope->in[0] == n) {
            L("%s;", vstore(G, dest_addr(G, gr->rope, ps, false), fu_format("fu_e%d", n->id), ps->cnt));
            stored = true;
        }
        if (gr->hnorm && view_root(gr->hnorm->in[0]) == n) {
            /* the norm's [rows, heads, hd] buffer has the tile's layout */
            L("%s;", vstore(G, fu_format("%s + %s * %s + %s", buf_of(G, gr->hnorm, true), ps->row,
                                         dimx(G, n->shape[1]), ps->col),
                            fu_format("fu_e%d", n->id), ps->cnt));
            stored = true;
        }
        if (h_piece && n == G->pl.h) {
            L("%s;", vstore(G, dest_addr(G, n, ps, true), fu_format("fu_e%d", n->id), ps->cnt));
            stored = true;
        }
        if (!stored && !used_in_group(gr, n))
            L("(void)fu_e%d;", n->id);
    }
    out(G);
    L("}");
}

/* The epilogue over a region of rows [0, nrows) x columns [0, ncols) whose
 * product values sit in buffers vals[p] (row stride ld); row r is absolute
 * row `row0 + r`, column c absolute column `col0 + c`. */
static void emit_region_epilogue(Gen *G, const Stage *s, const Group *gr, const char *const *vals, int64_t ld,
                                 const char *nrows, const char *ncols, const char *row0, const char *col0,
                                 bool h_piece) {
    int vf = G->b.vf;
    L("for (int64_t fu_i = 0; fu_i < %s; ++fu_i)", nrows);
    L("    for (int64_t fu_j = 0; fu_j < %s; fu_j += %d) {", ncols, vf);
    in(G);
    in(G);
    Pos ps = {fu_format("(%s + fu_i)", row0), fu_format("(%s + fu_j)", col0), NULL, {NULL, NULL}};
    for (int p = 0; p < gr->np; p++)
        ps.acc[p] = v_load(G->t, fu_format("%s + fu_i * %lld + fu_j", vals[p], (long long)ld));
    if (vf == 1) {
        emit_position(G, s, gr, &ps, h_piece);
    } else {
        L("if (%s - fu_j >= %d)", ncols, vf);
        in(G);
        emit_position(G, s, gr, &ps, h_piece);
        out(G);
        L("else");
        in(G);
        /* the lanes present, 1..vf-1; the mask lets the compiler see the bound */
        ps.cnt = fu_format("(int)((%s - fu_j) & %d)", ncols, vf - 1);
        for (int p = 0; p < gr->np; p++)
            ps.acc[p] = v_load_n(G->t, fu_format("%s + fu_i * %lld + fu_j", vals[p], (long long)ld), ps.cnt, NULL);
        emit_position(G, s, gr, &ps, h_piece);
        out(G);
    }
    out(G);
    out(G);
    L("    }");
}

/* RoPE (rotate-half) in place on the rope's buffer over rows [r0, r1) and
 * the whole heads in columns [c0, c1).  Angles in double, as emit_c.c and
 * the interpreter have them; inverse frequencies from fu_if<id>. */
static void emit_rope_block(Gen *G, const Node *rope, const char *r0, const char *r1, const char *c0,
                            const char *c1) {
    int64_t hd = rope->i[0], half = hd / 2, W = rope->shape[1].c;
    const char *y = buf_of(G, rope, true), *pos = buf_of(G, rope->in[1], false);
    L("for (int64_t fu_r = %s; fu_r < %s; ++fu_r) {", r0, r1);
    L("    float *fu_yr = %s + fu_r * %lld;", y, (long long)W);
    L("    for (int64_t fu_q = 0; fu_q < %lld; ++fu_q) {", (long long)half);
    L("        const double fu_ang = (double)%s[fu_r] * fu_if%d[fu_q];", pos, rope->id);
    L("        const float fu_cs = (float)cos(fu_ang), fu_sn = (float)sin(fu_ang);");
    L("        for (int64_t fu_hh = %s; fu_hh < %s; fu_hh += %lld) {", c0, c1, (long long)hd);
    L("            const float fu_x1 = fu_yr[fu_hh + fu_q], fu_x2 = fu_yr[fu_hh + fu_q + %lld];", (long long)half);
    L("            fu_yr[fu_hh + fu_q] = fu_x1 * fu_cs - fu_x2 * fu_sn;");
    L("            fu_yr[fu_hh + fu_q + %lld] = fu_x2 * fu_cs + fu_x1 * fu_sn;", (long long)half);
    L("        }");
    L("    }");
    L("}");
}

/* A per-head rms_norm in place on the norm's buffer over rows [r0, r1) and
 * the whole heads in columns [c0, c1): each head's mean square summed in
 * double (no overflow or underflow for any float, as the interpreter), then
 * y = x * inv * w.  The head's values are in L1 from the epilogue's store. */
static void emit_hnorm_block(Gen *G, const Node *nm, const char *r0, const char *r1, const char *c0,
                             const char *c1) {
    int64_t hd = nm->shape[2].c, W = view_root(nm->in[0])->shape[1].c;
    const char *y = buf_of(G, nm, true), *w = buf_of(G, nm->in[1], false);
    L("for (int64_t fu_r = %s; fu_r < %s; ++fu_r)", r0, r1);
    L("    for (int64_t fu_hh = %s; fu_hh < %s; fu_hh += %lld) {", c0, c1, (long long)hd);
    L("        float *const fu_yh = %s + fu_r * %lld + fu_hh;", y, (long long)W);
    /* four partial sums: no chain of dependent double adds (gcc keeps the
     * order of a double sum without -ffast-math) */
    L("        double fu_s4[4] = {0.0, 0.0, 0.0, 0.0};");
    L("        int64_t fu_q = 0;");
    L("        for (; fu_q + 4 <= %lld; fu_q += 4)", (long long)hd);
    L("            for (int fu_l = 0; fu_l < 4; ++fu_l)");
    L("                fu_s4[fu_l] += (double)fu_yh[fu_q + fu_l] * (double)fu_yh[fu_q + fu_l];");
    L("        for (; fu_q < %lld; ++fu_q)", (long long)hd);
    L("            fu_s4[0] += (double)fu_yh[fu_q] * (double)fu_yh[fu_q];");
    L("        const double fu_ss = (fu_s4[0] + fu_s4[1]) + (fu_s4[2] + fu_s4[3]);");
    L("        const float fu_iv = (float)(1.0 / sqrt(fu_ss / %s + %s));", c_double_lit((double)hd),
      c_double_lit(nm->f[0]));
    L("        for (fu_q = 0; fu_q < %lld; ++fu_q)", (long long)hd);
    L("            fu_yh[fu_q] = fu_yh[fu_q] * fu_iv * %s[fu_q];", w);
    L("    }");
}

/* ---- thread split ------------------------------------------------------------------ */

/* Declares fu_U<s>_<g> (units of group g of stage s), fu_S<s>_<g> (its
 * first weight) and fu_wt<s> (the stage's total weight; a unit weighs
 * unit * np columns of work). */
static void emit_units(Gen *G, const Stage *s) {
    Buf tot = {0};
    int si = s->idx;
    for (int g = 0; g < s->ng; g++) {
        const Group *gr = &s->g[g];
        L("const int64_t fu_U%d_%d = (%s + %lld) / %lld;", si, g, dimx(G, gr->N), (long long)(gr->unit - 1),
          (long long)gr->unit);
        if (g == 0)
            L("const int64_t fu_S%d_0 = 0;", si);
        else
            L("const int64_t fu_S%d_%d = fu_S%d_%d + fu_U%d_%d * %lld;", si, g, si, g - 1, si, g - 1,
              (long long)(s->g[g - 1].unit * s->g[g - 1].np));
        buf_printf(&tot, "%sfu_U%d_%d * %lld", g ? " + " : "", si, g, (long long)(gr->unit * gr->np));
    }
    L("const int64_t fu_wt%d = %s;", si, tot.data);
    free(tot.data);
}

/* Sets lo/hi (declared by the caller) to the columns of group g that
 * column-thread tc of tn owns: the units whose first weight falls in
 * [wt * tc / tn, wt * (tc + 1) / tn).  Every thread computes any thread's
 * range the same way (the MLP reads other threads' pieces with it). */
static void emit_col_range(Gen *G, const Stage *s, int g, const char *tc, const char *tn, const char *lo,
                           const char *hi) {
    const Group *gr = &s->g[g];
    long long w = (long long)(gr->unit * gr->np);
    int si = s->idx;
    L("{");
    in(G);
    L("const int64_t fu_lw = fu_wt%d * (%s) / (%s), fu_hw = fu_wt%d * ((%s) + 1) / (%s);", si, tc, tn, si, tc, tn);
    L("int64_t fu_ua = fu_lw <= fu_S%d_%d ? 0 : (fu_lw - fu_S%d_%d + %lld) / %lld;", si, g, si, g, w - 1, w);
    L("int64_t fu_uz = fu_hw <= fu_S%d_%d ? 0 : (fu_hw - fu_S%d_%d + %lld) / %lld;", si, g, si, g, w - 1, w);
    L("fu_ua = fu_ua < fu_U%d_%d ? fu_ua : fu_U%d_%d;", si, g, si, g);
    L("fu_uz = fu_uz < fu_U%d_%d ? fu_uz : fu_U%d_%d;", si, g, si, g);
    L("%s = fu_ua * %lld;", lo, (long long)gr->unit);
    L("%s = fu_uz * %lld < %s ? fu_uz * %lld : %s;", hi, (long long)gr->unit, dimx(G, gr->N),
      (long long)gr->unit, dimx(G, gr->N));
    out(G);
    L("}");
}

/* ---- GEMM (prefill) ------------------------------------------------------------------ */

/* Packing moves data between row-major and k-major layouts through the
 * Kern API's in-register transposes (kern_tw, kern_transpose). */

/* Packs B's columns [fu_jc, fu_jc + fu_nc) x depth [fu_pc, fu_pc + fu_kc) of
 * product p into micro-panels of NR columns (k-major, zero past N), as
 * float32: a bf16/f16 B (G->wdt) is widened while packing (exact), so every
 * microkernel reads float panels whatever the weights' type. */
static void emit_pack_b(Gen *G, const Stage *s, const Prod *p, int pi, const char *bptr) {
    const Target *t = G->t;
    int nr = G->b.nr, vf = G->b.vf;
    const DType dt = G->wdt;
    const char *ct = ty_ctype(dt);
    const char *ldb = p->nk ? dimx(G, s->K) : dimx(G, p->mm->shape[p->mm->rank - 1]);
    L("for (int64_t fu_j = 0; fu_j < fu_nc; fu_j += %d) {", nr);
    in(G);
    L("float *const fu_d = fu_pb%d + fu_j * %s;", pi, G->kcs);
    L("const int64_t fu_nn = fu_nc - fu_j < %d ? fu_nc - fu_j : %d;", nr, nr);
    int tw = kern_tw(G->k);
    /* whole panels through the in-register transposes (a bf16/f16 B widened
     * by typed.c's TW-lane loads) */
    const bool fast = p->nk && tw > 1;
    if (fast) {
        /* whole panels: TW rows of B by TW depths at a time, transposed */
        L("if (fu_nn == %d) {", nr);
        in(G);
        L("int64_t fu_p = 0;");
        L("for (; fu_p + %d <= fu_kc; fu_p += %d) {", tw, tw);
        in(G);
        for (int q = 0; q < nr / tw; q++) {
            const char *rows[8], *dst[8];
            for (int r = 0; r < tw; r++) {
                rows[r] = dt == DT_F32 ? v_load(kern_tw_target(G->k), fu_format("%s + (fu_jc + fu_j + %d) * %s + fu_pc + fu_p", bptr, q * tw + r, ldb))
                                       : ty_load(t, tw, dt, fu_format("%s + (fu_jc + fu_j + %d) * %s", bptr, q * tw + r, ldb),
                                                 "fu_pc + fu_p");
                dst[r] = fu_format("fu_d + (fu_p + %d) * %d + %d", r, nr, q * tw);
            }
            kern_transpose(G->k, rows, dst);
        }
        out(G);
        L("}");
        L("for (int64_t fu_left = fu_kc - fu_p; fu_left > 0; --fu_left, ++fu_p)");
        L("    for (int64_t fu_q = 0; fu_q < %d; ++fu_q)", nr);
        L("        fu_d[fu_p * %d + fu_q] = %s;", nr,
          dt == DT_F32 ? fu_format("%s[(fu_jc + fu_j + fu_q) * %s + fu_pc + fu_p]", bptr, ldb)
                       : ty_load1(dt, fu_format("%s + (fu_jc + fu_j + fu_q) * %s", bptr, ldb), "fu_pc + fu_p"));
        out(G);
        L("} else {");
        in(G);
    }
    if (p->nk) {
        /* B rows are columns of the tile: read each row along k. */
        L("for (int64_t fu_q = 0; fu_q < fu_nn; ++fu_q) {");
        L("    const %s *const fu_src = %s + (fu_jc + fu_j + fu_q) * %s + fu_pc;", ct, bptr, ldb);
        L("    for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p)");
        L("        fu_d[fu_p * %d + fu_q] = %s;", nr, ty_load1(dt, "fu_src", "fu_p"));
        L("}");
        L("for (int64_t fu_q = fu_nn; fu_q < %d; ++fu_q)", nr);
        L("    for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p)");
        L("        fu_d[fu_p * %d + fu_q] = 0.0f;", nr);
        if (fast) {
            out(G);
            L("}");
        }
    } else {
        L("for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p) {");
        in(G);
        L("const %s *const fu_src = %s + (fu_pc + fu_p) * %s + fu_jc + fu_j;", ct, bptr, ldb);
        L("float *const fu_dr = fu_d + fu_p * %d;", nr);
        L("if (fu_nn == %d) {", nr);
        for (int v = 0; v < G->b.nv; v++)
            L("    %s;", v_store(t, fu_format("fu_dr + %d", v * vf), ty_load(t, vf, dt, "fu_src", fu_format("%d", v * vf))));
        L("} else {");
        L("    for (int64_t fu_q = 0; fu_q < %d; ++fu_q)", nr);
        L("        fu_dr[fu_q] = fu_q < fu_nn ? %s : 0.0f;", ty_load1(dt, "fu_src", "fu_q"));
        L("}");
        out(G);
        L("}");
    }
    out(G);
    L("}");
}

/* Depths [p0, p1) (C expressions, relative to fu_pc) of a whole MR-row
 * panel, TW at a time: TW-row groups transposed, the norm (if any) applied
 * to the rows first.  xrow(r) must point so that xrow(r)[fu_p] is A's row r
 * of the panel at depth fu_pc + fu_p.  When MR is not a multiple of TW the
 * last group's stores run TW - MR % TW floats into the next depth's slots;
 * the groups go last to first so the full groups' stores then overwrite
 * them (and the range's last column spills into depths or panels written
 * later, or into the slack after fu_pa). */
static void emit_pack_a_cols(Gen *G, const Node *nm, const char *xrow_fmt, const char *p0, const char *p1) {
    const Target *pt = kern_tw_target(G->k);
    int mr = G->b.mr, tw = kern_tw(G->k);
    for (int r = 0; r < mr; r++)
        L("const float *const fu_x%d = %s;", r, fu_format(xrow_fmt, r));
    if (nm)
        for (int r = 0; r < mr; r++) {
            L("const float fu_mu%d = fu_st[3 * (fu_ic + fu_i + %d)], fu_lo%d = fu_st[3 * (fu_ic + fu_i + %d) + 1];", r,
              r, r, r);
            L("const float fu_iv%d = fu_st[3 * (fu_ic + fu_i + %d) + 2];", r, r);
            if (nm->op == OP_RMS_NORM)
                L("(void)fu_mu%d, (void)fu_lo%d;", r, r);
        }
    L("int64_t fu_p = %s;", p0);
    L("for (; fu_p + %d <= %s; fu_p += %d) {", tw, p1, tw);
    in(G);
    if (nm) {
        L("const %s fu_wv = %s;", v_type(pt), v_load(pt, fu_format("%s + fu_pc + fu_p", buf_of(G, nm->in[1], false))));
        if (nm->op == OP_LAYER_NORM)
            L("const %s fu_bv = %s;", v_type(pt), v_load(pt, fu_format("%s + fu_pc + fu_p", buf_of(G, nm->in[2], false))));
    }
    for (int g = (mr + tw - 1) / tw - 1; g >= 0; g--) {
        const char *rows[8], *dst[8];
        for (int r = 0; r < tw; r++) {
            int row = g * tw + r;
            const char *x = v_load(pt, fu_format("fu_x%d + fu_p", row));
            if (row >= mr)
                rows[r] = v_zero(pt);
            else if (!nm)
                rows[r] = x;
            else if (nm->op == OP_RMS_NORM)
                rows[r] = v_bin(pt, OP_MUL, v_bin(pt, OP_MUL, x, v_set1(pt, fu_format("fu_iv%d", row))), "fu_wv");
            else
                rows[r] = v_fma(pt, v_bin(pt, OP_MUL,
                                          v_bin(pt, OP_SUB, v_bin(pt, OP_SUB, x, v_set1(pt, fu_format("fu_mu%d", row))),
                                                v_set1(pt, fu_format("fu_lo%d", row))),
                                          v_set1(pt, fu_format("fu_iv%d", row))),
                                "fu_wv", "fu_bv");
            dst[r] = fu_format("fu_d + (fu_p + %d) * %d + %d", r, mr, g * tw);
        }
        kern_transpose(G->k, rows, dst);
    }
    out(G);
    L("}");
    L("for (int64_t fu_left = %s - fu_p; fu_left > 0; --fu_left, ++fu_p) {", p1);
    for (int r = 0; r < mr; r++)
        L("    fu_d[fu_p * %d + %d] = %s;", mr, r,
          nm ? norm_expr(G, nm, fu_format("fu_x%d[fu_p]", r), "fu_pc + fu_p", fu_format("fu_mu%d", r),
                         fu_format("fu_lo%d", r), fu_format("fu_iv%d", r))
             : fu_format("fu_x%d[fu_p]", r));
    L("}");
}

/* A whole MR-row panel on a SIMD target; ends with `continue`. */
static void emit_pack_a_vec(Gen *G, const Stage *s) {
    int mr = G->b.mr;
    L("if (fu_mc - fu_i >= %d) {", mr);
    in(G);
    if (s->pieces) {
        /* h's columns are spread over the threads' pieces */
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        in(G);
        L("int64_t fu_f0, fu_f1;");
        emit_col_range(G, &G->pl.s[0], 0, "fu_t", "nth", "fu_f0", "fu_f1");
        L("const int64_t fu_lo = fu_f0 > fu_pc ? fu_f0 : fu_pc;");
        L("const int64_t fu_hi = fu_f1 < fu_pc + fu_kc ? fu_f1 : fu_pc + fu_kc;");
        L("if (fu_lo >= fu_hi)");
        L("    continue;");
        L("const float *const fu_hb = (const float *)fr_scratch(fu_t) + %lld + fu_pc - fu_f0;", (long long)G->off_hp);
        emit_pack_a_cols(G, NULL, "fu_hb + (fu_m0 + fu_ic + fu_i + %d - fu_rb) * (fu_f1 - fu_f0)", "fu_lo - fu_pc",
                         "fu_hi - fu_pc");
        out(G);
        L("}");
    } else {
        emit_pack_a_cols(G, s->norm, fu_format("fu_A + (fu_m0 + fu_ic + fu_i + %%d) * %s + fu_pc", dimx(G, s->K)), "0",
                         "fu_kc");
    }
    L("continue;");
    out(G);
    L("}");
}

/* Packs A's rows [fu_rb + fu_ic, + fu_mc) (relative to the chunk start
 * fu_m0) x depth [fu_pc, + fu_kc) into micro-panels of MR rows (k-major,
 * zero past the last row), applying the prologue norm on the way. */
static void emit_pack_a(Gen *G, const Stage *s) {
    int mr = G->b.mr;
    L("for (int64_t fu_i = 0; fu_i < fu_mc; fu_i += %d) {", mr);
    in(G);
    L("float *const fu_d = fu_pa + fu_i * fu_kc;");
    if (kern_tw(G->k) > 1)
        emit_pack_a_vec(G, s);
    L("for (int64_t fu_q = 0; fu_q < %d; ++fu_q) {", mr);
    in(G);
    L("const int64_t fu_row = fu_m0 + fu_ic + fu_i + fu_q;");
    L("if (fu_i + fu_q >= fu_mc) {");
    L("    for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p)");
    L("        fu_d[fu_p * %d + fu_q] = 0.0f;", mr);
    L("    continue;");
    L("}");
    if (s->pieces) {
        /* h's columns are spread over the threads' pieces. */
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        in(G);
        L("int64_t fu_f0, fu_f1;");
        emit_col_range(G, &G->pl.s[0], 0, "fu_t", "nth", "fu_f0", "fu_f1");
        L("const int64_t fu_lo = fu_f0 > fu_pc ? fu_f0 : fu_pc;");
        L("const int64_t fu_hi = fu_f1 < fu_pc + fu_kc ? fu_f1 : fu_pc + fu_kc;");
        L("if (fu_lo >= fu_hi)");
        L("    continue;");
        L("const float *const fu_src = (const float *)fr_scratch(fu_t) + %lld + (fu_row - fu_rb) * (fu_f1 - fu_f0) - fu_f0;",
          (long long)G->off_hp);
        L("for (int64_t fu_p = fu_lo; fu_p < fu_hi; ++fu_p)");
        L("    fu_d[(fu_p - fu_pc) * %d + fu_q] = fu_src[fu_p];", mr);
        out(G);
        L("}");
    } else {
        const char *K = dimx(G, s->K);
        L("const float *const fu_src = fu_A + fu_row * %s + fu_pc;", K);
        if (s->norm) {
            L("const float fu_mu = fu_st[3 * (fu_row - fu_m0)], fu_lo = fu_st[3 * (fu_row - fu_m0) + 1];");
            L("const float fu_iv = fu_st[3 * (fu_row - fu_m0) + 2];");
            if (s->norm->op == OP_RMS_NORM)
                L("(void)fu_mu, (void)fu_lo;");
            L("for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p)");
            L("    fu_d[fu_p * %d + fu_q] = %s;", mr,
              norm_expr(G, s->norm, "fu_src[fu_p]", "fu_pc + fu_p", "fu_mu", "fu_lo", "fu_iv"));
        } else {
            L("for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p)");
            L("    fu_d[fu_p * %d + fu_q] = fu_src[fu_p];", mr);
        }
    }
    out(G);
    L("}");
    out(G);
    L("}");
}

/* DOT_AMX: A's rows [fu_ic, + fu_mc) of the chunk, depths [fu_pc, + fu_kc),
 * as bf16 rows of fu_kcs (zeros past the depth and past the rows, up to a
 * multiple of 32 rows), the norm applied first: the A tiles' layout.  The
 * rounding is vcvtneps2bf16's (nearest even, as fu_bf16_bits). */
static void emit_pack_a_amx(Gen *G, const Stage *s) {
    const Target *t = G->t;
    L("{");
    in(G);
    L("uint16_t *const fu_a16 = (uint16_t *)fu_pa;");
    L("const int64_t fu_mcp = (fu_mc + 31) / 32 * 32;");
    L("for (int64_t fu_q = 0; fu_q < fu_mcp; ++fu_q) {");
    in(G);
    L("uint16_t *const fu_d = fu_a16 + fu_q * fu_kcs;");
    L("const int64_t fu_row = fu_m0 + fu_ic + fu_q;");
    L("if (fu_q >= fu_mc) {");
    L("    memset(fu_d, 0, (size_t)fu_kcs * sizeof *fu_d);");
    L("    continue;");
    L("}");
    if (s->pieces) {
        L("memset(fu_d, 0, (size_t)fu_kcs * sizeof *fu_d);");
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        in(G);
        L("int64_t fu_f0, fu_f1;");
        emit_col_range(G, &G->pl.s[0], 0, "fu_t", "nth", "fu_f0", "fu_f1");
        L("const int64_t fu_lo = fu_f0 > fu_pc ? fu_f0 : fu_pc;");
        L("const int64_t fu_hi = fu_f1 < fu_pc + fu_kc ? fu_f1 : fu_pc + fu_kc;");
        L("if (fu_lo >= fu_hi)");
        L("    continue;");
        L("const float *const fu_src = (const float *)fr_scratch(fu_t) + %lld + (fu_row - fu_rb) * (fu_f1 - fu_f0) - fu_f0;",
          (long long)G->off_hp);
        L("for (int64_t fu_p = fu_lo; fu_p < fu_hi; ++fu_p)");
        L("    fu_d[fu_p - fu_pc] = fu_bf16_bits(fu_src[fu_p]);");
        out(G);
        L("}");
    } else {
        const char *K = dimx(G, s->K);
        const Node *nm = s->norm;
        L("const float *const fu_src = fu_A + fu_row * %s + fu_pc;", K);
        if (nm) {
            L("const float fu_mu = fu_st[3 * (fu_row - fu_m0)], fu_lo = fu_st[3 * (fu_row - fu_m0) + 1];");
            L("const float fu_iv = fu_st[3 * (fu_row - fu_m0) + 2];");
            if (nm->op == OP_RMS_NORM)
                L("(void)fu_mu, (void)fu_lo;");
        }
        L("int64_t fu_p = 0;");
        L("for (; fu_p + 16 <= fu_kc; fu_p += 16) {");
        in(G);
        const char *x = "_mm512_loadu_ps(fu_src + fu_p)";
        if (nm) {
            const char *w = v_load(t, fu_format("%s + fu_pc + fu_p", buf_of(G, nm->in[1], false)));
            if (nm->op == OP_RMS_NORM)
                x = v_bin(t, OP_MUL, v_bin(t, OP_MUL, x, v_set1(t, "fu_iv")), w);
            else
                x = v_fma(t, v_bin(t, OP_MUL, v_bin(t, OP_SUB, v_bin(t, OP_SUB, x, v_set1(t, "fu_mu")), v_set1(t, "fu_lo")),
                                   v_set1(t, "fu_iv")),
                          w, v_load(t, fu_format("%s + fu_pc + fu_p", buf_of(G, nm->in[2], false))));
        }
        L("_mm256_storeu_si256((__m256i *)(fu_d + fu_p), (__m256i)_mm512_cvtneps_pbh(%s));", x);
        out(G);
        L("}");
        L("for (int64_t fu_left = fu_kcs - fu_p; fu_left > 0; --fu_left, ++fu_p)"); /* counted: see emit_gemv_cols */
        L("    fu_d[fu_p] = fu_p < fu_kc ? fu_bf16_bits(%s) : 0;",
          nm ? norm_expr(G, nm, "fu_src[fu_p]", "fu_pc + fu_p", "fu_mu", "fu_lo", "fu_iv") : "fu_src[fu_p]");
    }
    out(G);
    L("}");
    out(G);
    L("}");
}

/* One k step of the MR x NR tile at offset u steps from fu_ap/fu_bp. */
static void emit_kstep(Gen *G, int u) {
    const Target *t = G->t;
    int mr = G->b.mr, nr = G->b.nr, vf = G->b.vf, nv = G->b.nv;
    L("{");
    in(G);
    Buf b = {0};
    for (int v = 0; v < nv; v++)
        buf_printf(&b, "%sfu_b%d = %s", v ? ", " : "", v, v_load(t, fu_format("fu_bp + %d", u * nr + v * vf)));
    L("const %s %s;", G->vt, b.data);
    free(b.data);
    if (t->isa == ISA_NEON) {
        /* 8 rows of A in two registers, each row used by lane. */
        for (int q = 0; q < mr / 4; q++)
            L("const float32x4_t fu_a%d = vld1q_f32(fu_ap + %d);", q, u * mr + 4 * q);
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                L("fu_c%d_%d = vfmaq_laneq_f32(fu_c%d_%d, fu_b%d, fu_a%d, %d);", i, v, i, v, v, i / 4, i % 4);
    } else {
        L("%s fu_a;", G->vt);
        for (int i = 0; i < mr; i++) {
            L("fu_a = %s;", t->isa == ISA_AVX2 ? fu_format("_mm256_broadcast_ss(fu_ap + %d)", u * mr + i)
                                               : v_set1(t, fu_format("fu_ap[%d]", u * mr + i)));
            for (int v = 0; v < nv; v++)
                L("fu_c%d_%d = %s;", i, v, v_fma(t, "fu_a", fu_format("fu_b%d", v), fu_format("fu_c%d_%d", i, v)));
        }
    }
    out(G);
    L("}");
}

/* DOT_BF16: the k loop of the MR x NR tile over k pairs (emit_pair_panels),
 * two depths per vdpbf16ps: one broadcast word of A (row i's pair) times
 * NV vectors of B words. */
static void emit_kloop_bf16(Gen *G) {
    int mr = G->b.mr, nr = G->b.nr, vf = G->b.vf, nv = G->b.nv;
    L("for (int64_t fu_p = 0; fu_p < (fu_kc + 1) / 2; ++fu_p, fu_ap += %d, fu_bp += %d) {", mr, nr);
    in(G);
    Buf b = {0};
    for (int v = 0; v < nv; v++)
        buf_printf(&b, "%sfu_b%d = (__m512bh)_mm512_loadu_ps(fu_bp + %d)", v ? ", " : "", v, v * vf);
    L("const __m512bh %s;", b.data);
    free(b.data);
    L("__m512bh fu_a;");
    for (int i = 0; i < mr; i++) {
        L("fu_a = (__m512bh)_mm512_set1_ps(fu_ap[%d]);", i);
        for (int v = 0; v < nv; v++)
            L("fu_c%d_%d = _mm512_dpbf16_ps(fu_c%d_%d, fu_a, fu_b%d);", i, v, i, v, v);
    }
    out(G);
    L("}");
}

/* DOT_AMX: the 32 x 32 tile through the four accumulator tiles, stored to
 * fu_ct and loaded into the fu_c registers for the epilogue. */
static void emit_kloop_amx(Gen *G) {
    L("(void)fu_ap;");
    L("{");
    in(G);
    L("const uint16_t *const fu_ta = (const uint16_t *)fu_pa + fu_ir * fu_kcs;");
    L("float fu_ct[32 * 32];");
    for (int c = 0; c < 4; c++)
        L("FU_TILE_ZERO(%d);", c);
    L("for (int64_t fu_p = 0; fu_p < fu_kcs / 2; fu_p += 16) {");
    in(G);
    L("FU_TILE_LOAD(4, fu_ta + 2 * fu_p, fu_kcs * 2);");
    L("FU_TILE_LOAD(5, fu_ta + 16 * fu_kcs + 2 * fu_p, fu_kcs * 2);");
    L("FU_TILE_LOAD(6, fu_bp + fu_p * 32, 128);");
    L("FU_TILE_LOAD(7, fu_bp + fu_p * 32 + 16, 128);");
    L("FU_TILE_DP(0, 4, 6);");
    L("FU_TILE_DP(1, 4, 7);");
    L("FU_TILE_DP(2, 5, 6);");
    L("FU_TILE_DP(3, 5, 7);");
    out(G);
    L("}");
    L("FU_TILE_STORE(0, fu_ct, 128);");
    L("FU_TILE_STORE(1, fu_ct + 16, 128);");
    L("FU_TILE_STORE(2, fu_ct + 512, 128);");
    L("FU_TILE_STORE(3, fu_ct + 528, 128);");
    for (int i = 0; i < 32; i++)
        for (int v = 0; v < 2; v++)
            L("fu_c%d_%d = _mm512_loadu_ps(fu_ct + %d);", i, v, i * 32 + v * 16);
    out(G);
    L("}");
}

/* The microkernel of product pi of group gr: the MR x NR tile at
 * (fu_ir, fu_jr) of the current blocks over depth fu_kc, then either its
 * partial sums into cacc or (last depth block) the epilogue. */
static void emit_micro(Gen *G, const Stage *s, const Group *gr, int pi, bool h_piece) {
    const Target *t = G->t;
    int mr = G->b.mr, nr = G->b.nr, vf = G->b.vf, nv = G->b.nv, U = G->b.unroll;
    bool lastp = pi == gr->np - 1;
    L("{");
    in(G);
    L("const float *fu_ap = fu_pa + fu_ir * fu_kc;");
    L("const float *fu_bp = fu_pb%d + fu_jr * %s;", pi, G->kcs);
    for (int i = 0; i < mr; i++) {
        Buf b = {0};
        for (int v = 0; v < nv; v++)
            buf_printf(&b, "%sfu_c%d_%d = %s", v ? ", " : "", i, v, v_zero(t));
        L("%s %s;", G->vt, b.data);
        free(b.data);
    }
    if (G->dot == DOT_AMX) {
        emit_kloop_amx(G);
    } else if (G->dot == DOT_BF16) {
        emit_kloop_bf16(G);
    } else {
        if (U > 1) {
            L("int64_t fu_p = 0;");
            L("for (; fu_p + %d <= fu_kc; fu_p += %d, fu_ap += %d, fu_bp += %d) {", U, U, U * mr, U * nr);
        } else {
            L("for (int64_t fu_p = 0; fu_p < fu_kc; ++fu_p, fu_ap += %d, fu_bp += %d) {", mr, nr);
        }
        in(G);
        for (int u = 0; u < U; u++)
            emit_kstep(G, u);
        out(G);
        L("}");
        if (U > 1) {
            L("for (; fu_p < fu_kc; ++fu_p, fu_ap += %d, fu_bp += %d)", mr, nr);
            in(G);
            emit_kstep(G, 0);
            out(G);
        }
    }
    if (G->cacc) {
        L("float *const fu_cp = fu_cacc%d + ((fu_jr / %d) * %d + (fu_ic + fu_ir) / %d) * %d;", pi, nr,
          G->b.mchunk / mr, mr, mr * nr);
        L("if (!fu_first) {");
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                L("    fu_c%d_%d = %s;", i, v,
                  v_bin(t, OP_ADD, fu_format("fu_c%d_%d", i, v), v_load(t, fu_format("fu_cp + %d", i * nr + v * vf))));
        L("}");
        L("if (!fu_last) {");
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                L("    %s;", v_store(t, fu_format("fu_cp + %d", i * nr + v * vf), fu_format("fu_c%d_%d", i, v)));
        L("} else {");
        in(G);
    }
    if (!lastp) {
        /* an earlier product of the group: park its tile for the epilogue */
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                L("%s;", v_store(t, fu_format("fu_t%d + %d", pi, i * nr + v * vf), fu_format("fu_c%d_%d", i, v)));
    } else {
        L("const int64_t fu_mr = fu_mc - fu_ir < %d ? fu_mc - fu_ir : %d;", mr, mr);
        L("const int64_t fu_nr = fu_nc - fu_jr < %d ? fu_nc - fu_jr : %d;", nr, nr);
        L("const int64_t fu_row0 = fu_m0 + fu_ic + fu_ir, fu_col0 = fu_jc + fu_jr;");
        L("if (fu_mr == %d && fu_nr == %d) {", mr, nr);
        in(G);
        /* the register tile */
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++) {
                Pos ps = {fu_format("(fu_row0 + %d)", i), fu_format("(fu_col0 + %d)", v * vf), NULL, {NULL, NULL}};
                for (int p = 0; p < gr->np; p++)
                    ps.acc[p] = p == pi ? fu_format("fu_c%d_%d", i, v)
                                        : v_load(t, fu_format("fu_t%d + %d", p, i * nr + v * vf));
                emit_position(G, s, gr, &ps, h_piece);
            }
        out(G);
        L("} else {");
        in(G);
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                L("%s;", v_store(t, fu_format("fu_t%d + %d", pi, i * nr + v * vf), fu_format("fu_c%d_%d", i, v)));
        const char *vals[2];
        for (int p = 0; p < gr->np; p++)
            vals[p] = fu_format("fu_t%d", p);
        emit_region_epilogue(G, s, gr, vals, nr, "fu_mr", "fu_nr", "fu_row0", "fu_col0", h_piece);
        out(G);
        L("}");
    }
    if (G->cacc) {
        out(G);
        L("}");
    }
    out(G);
    L("}");
}

/* Opens group g's block: its columns [fu_j0, fu_j1) of column-thread tc of
 * tn, and (h_piece) this thread's piece of h. */
static void emit_group_open(Gen *G, const Stage *s, int g, const char *tc, const char *tn, bool h_piece,
                            const char *what) {
    const Group *gr = &s->g[g];
    L("{ /* group %d: %%%d%s%s */", g, gr->p[0].mm->id, gr->np > 1 ? fu_format(" and %%%d", gr->p[1].mm->id) : "",
      what);
    in(G);
    L("int64_t fu_j0, fu_j1;");
    emit_col_range(G, s, g, tc, tn, "fu_j0", "fu_j1");
    if (h_piece) {
        L("float *const fu_hp = fu_s + %lld;", (long long)G->off_hp);
        L("const int64_t fu_hld = fu_j1 - fu_j0;");
    }
}

/* ---- q8_0/q4_0 stages ------------------------------------------------------------- */

/* Declares fu_qsrc: A's row `row` (absolute) as floats - the input row, or
 * the row normalized (the prologue) or gathered from the threads' pieces
 * (the MLP's h) into fu_qr. */
static void emit_qrow(Gen *G, const Stage *s, const char *row) {
    const char *K = dimx(G, s->K);
    if (s->pieces) {
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        in(G);
        L("int64_t fu_f0, fu_f1;");
        emit_col_range(G, &G->pl.s[0], 0, "fu_t", "nth", "fu_f0", "fu_f1");
        L("const float *const fu_src = (const float *)fr_scratch(fu_t) + %lld + (%s - fu_rb) * (fu_f1 - fu_f0) - fu_f0;",
          (long long)G->off_hp, row);
        L("for (int64_t fu_q = fu_f0; fu_q < fu_f1; ++fu_q)");
        L("    fu_qr[fu_q] = fu_src[fu_q];");
        out(G);
        L("}");
        L("const float *const fu_qsrc = fu_qr;");
    } else if (s->norm) {
        L("const float *const fu_xr = fu_A + (%s) * %s;", row, K);
        emit_row_stats(G, s->norm, "fu_xr", K);
        if (s->norm->op == OP_RMS_NORM)
            L("(void)fu_mu, (void)fu_lo;");
        L("for (int64_t fu_q = 0; fu_q < %s; ++fu_q)", K);
        L("    fu_qr[fu_q] = %s;", norm_expr(G, s->norm, "fu_xr[fu_q]", "fu_q", "fu_mu", "fu_lo", "fu_iv"));
        L("const float *const fu_qsrc = fu_qr;");
    } else {
        L("const float *const fu_qsrc = fu_A + (%s) * %s;", row, K);
    }
}

/* One chunk of rows [fu_m0, + fu_mch) of a q8_0/q4_0 stage: its A rows
 * (normalized or gathered first) quantized once, then per group, column
 * block (whole units: heads for RoPE) and panel of 32 columns, each
 * product's int32 sums scaled into a float tile column fu_qc<p> (rows x 32,
 * typed.c's fu_qmk / fu_qamx / fu_qdot), on which the float epilogue runs
 * as on the f32 tile; RoPE and per-head norms on the finished block. */
static void emit_qgemm_chunk(Gen *G, const Stage *s, bool h_piece) {
    const QMode qm = qmode(G->t);
    const char *tag = G->t->tag, *qx = ty_qx_fn(G->t);
    const int64_t K = s->K.c, nb = (K + 31) / 32, xs = qx_stride(K);
    L("float *const fu_qr = fu_s + %lld;", (long long)G->off_qr);
    L("int8_t *const fu_xq = (int8_t *)(void *)(fu_s + %lld);", (long long)G->off_qx);
    L("uint8_t *const fu_qb = (uint8_t *)(void *)(fu_s + %lld);", (long long)G->off_qb);
    L("(void)fu_qr;");
    L("(void)fu_qb;");
    if (qm == Q_VNNI)
        L("uint8_t *const fu_qa = (uint8_t *)(void *)(fu_s + %lld);", (long long)G->off_qa);
    if (qm == Q_AMX)
        L("int32_t *const fu_qt = (int32_t *)(void *)(fu_s + %lld);", (long long)G->off_qt);
    /* the chunk's rows quantized once (VNNI: 6 at a time, then packed) */
    L("for (int64_t fu_i = 0; fu_i < fu_mch; ++fu_i) {");
    in(G);
    emit_qrow(G, s, "fu_m0 + fu_i");
    if (qm == Q_VNNI) {
        L("%s(fu_qsrc, %lld, fu_xq + (fu_i %% 6) * %lld);", qx, (long long)K, (long long)xs);
        L("if (fu_i %% 6 == 5 || fu_i == fu_mch - 1)");
        L("    fu_qpa_%s(fu_xq, %lld, (int)(fu_i %% 6) + 1, %lld, fu_qa + fu_i / 6 * %lld);", tag, (long long)xs,
          (long long)nb, (long long)(nb * 256));
    } else {
        L("%s(fu_qsrc, %lld, fu_xq + fu_i * %lld);", qx, (long long)K, (long long)xs);
    }
    out(G);
    L("}");
    if (qm == Q_AMX)
        L("memset(fu_xq + fu_mch * %lld, 0, (size_t)(((fu_mch + 31) / 32 * 32 - fu_mch) * %lld));", (long long)xs,
          (long long)xs);
    for (int g = 0; g < s->ng; g++) {
        const Group *gr = &s->g[g];
        emit_group_open(G, s, g, "fu_tc", "fu_tn", h_piece, ", q8_0/q4_0");
        for (int p = 0; p < gr->np; p++)
            L("float *const fu_qc%d = fu_s + %lld;", p, (long long)(G->off_qc + p * G->qcrows * 32));
        L("for (int64_t fu_jc = fu_j0; fu_jc < fu_j1; fu_jc += %lld) {", (long long)gr->nc);
        in(G);
        L("const int64_t fu_nc = fu_j1 - fu_jc < %lld ? fu_j1 - fu_jc : %lld;", (long long)gr->nc, (long long)gr->nc);
        L("for (int64_t fu_jp = 0; fu_jp < fu_nc; fu_jp += 32) {");
        in(G);
        L("const int fu_pn = fu_nc - fu_jp < 32 ? (int)(fu_nc - fu_jp) : 32;");
        for (int p = 0; p < gr->np; p++) {
            const DType dt = gr->p[p].b->dtype;
            const int64_t rb = nb * dt_info(dt)->block_bytes;
            L("{");
            in(G);
            L("const uint8_t *const fu_w = (const uint8_t *)%s + (fu_jc + fu_jp) * %lld;", buf_of(G, gr->p[p].b, false),
              (long long)rb);
            if (qm == Q_DOT) {
                L("for (int fu_c = 0; fu_c < fu_pn; ++fu_c)");
                L("    for (int64_t fu_r8 = 0; fu_r8 < fu_mch; fu_r8 += 8) {");
                L("        const int fu_m = fu_mch - fu_r8 < 8 ? (int)(fu_mch - fu_r8) : 8;");
                L("        float fu_acc[8];");
                L("        %s(fu_w + fu_c * %lld, fu_xq + fu_r8 * %lld, %lld, %lld, fu_m, fu_acc);",
                  ty_qdot_fn(G->t, dt), (long long)rb, (long long)xs, (long long)xs, (long long)nb);
                L("        for (int fu_r = 0; fu_r < fu_m; ++fu_r)");
                L("            fu_qc%d[(fu_r8 + fu_r) * 32 + fu_c] = fu_acc[fu_r];", p);
                L("    }");
            } else {
                L("for (int64_t fu_pc = 0; fu_pc < %lld; fu_pc += %d) {", (long long)nb, QG_KB);
                in(G);
                L("const int64_t fu_kb = %lld - fu_pc < %d ? %lld - fu_pc : %d;", (long long)nb, QG_KB, (long long)nb,
                  QG_KB);
                L("fu_qpb_%s_%s(fu_w, %lld, fu_pn, fu_pc, fu_kb, fu_qb, %d);", dtype_name(dt), tag, (long long)rb,
                  qm == Q_VNNI);
                if (qm == Q_VNNI) {
                    L("for (int64_t fu_g = 0; fu_g < (fu_mch + 5) / 6; ++fu_g)");
                    L("    fu_qmk_%s(fu_qa + (fu_g * %lld + fu_pc) * 256, fu_qb, fu_kb, fu_qc%d + fu_g * 192, fu_pc == 0);",
                      tag, (long long)nb, p);
                } else {
                    L("for (int64_t fu_g = 0; fu_g < (fu_mch + 31) / 32; ++fu_g) {");
                    L("    if (fu_pc == 0)");
                    L("        memset(fu_qc%d + fu_g * 1024, 0, 4096);", p);
                    L("    fu_qamx_%s(fu_xq + fu_g * 32 * %lld, %lld, %lld, fu_pc, fu_kb, fu_qb, fu_qc%d + fu_g * 1024, fu_qt);",
                      tag, (long long)xs, (long long)xs, (long long)nb, p);
                    L("}");
                }
                out(G);
                L("}");
            }
            out(G);
            L("}");
        }
        const char *vals[2];
        for (int p = 0; p < gr->np; p++)
            vals[p] = fu_format("fu_qc%d", p);
        emit_region_epilogue(G, s, gr, vals, 32, "fu_mch", "fu_pn", "fu_m0", "(fu_jc + fu_jp)", h_piece);
        out(G);
        L("}");
        if (gr->hnorm)
            emit_hnorm_block(G, gr->hnorm, "fu_m0", "fu_m0 + fu_mch", "fu_jc", "fu_jc + fu_nc");
        else if (gr->rope)
            emit_rope_block(G, gr->rope, "fu_m0", "fu_m0 + fu_mch", "fu_jc", "fu_jc + fu_nc");
        out(G);
        L("}");
        out(G);
        L("}");
    }
}

/* The rows [r0, r1) of stage s (all threads; at least one row), as GEMM.
 * grid: rows may be split over threads too (not in the MLP, whose pieces
 * are column ranges of every row). */
static void emit_gemm_path(Gen *G, const Stage *s, const char *r0, const char *r1, bool grid, bool h_piece) {
    const Blk *b = &G->b;
    int mr = b->mr;
    L("{");
    in(G);
    L("const int64_t fu_rb = %s, fu_rows = %s - fu_rb;", r0, r1);
    L("int fu_tm = 1;");
    if (grid) {
        /* the thread grid tm x tn (tm divides nth) with the least work per thread */
        Buf wu = {0};
        for (int g = 0; g < s->ng; g++)
            buf_printf(&wu, "%sfu_U%d_%d * %d", g ? " + " : "", s->idx, g, s->g[g].np);
        L("{");
        L("    const int64_t fu_mb = (fu_rows + %d) / %d, fu_wu = %s;", mr - 1, mr, wu.data);
        L("    int64_t fu_best = 0;");
        L("    for (int fu_d = 1; fu_d <= nth; ++fu_d) {");
        L("        if (nth %% fu_d != 0)");
        L("            continue;");
        L("        const int64_t fu_cols = nth / fu_d;");
        L("        const int64_t fu_cost = (fu_wu + fu_cols - 1) / fu_cols * ((fu_mb + fu_d - 1) / fu_d);");
        L("        if (fu_d == 1 || fu_cost < fu_best) {");
        L("            fu_best = fu_cost;");
        L("            fu_tm = fu_d;");
        L("        }");
        L("    }");
        L("}");
        free(wu.data);
    }
    L("const int fu_tn = nth / fu_tm, fu_tc = tid %% fu_tn;");
    L("int64_t fu_r0, fu_r1;");
    L("fr_split((fu_rows + %d) / %d, tid / fu_tn, fu_tm, &fu_r0, &fu_r1);", mr - 1, mr);
    L("fu_r0 = fu_rb + fu_r0 * %d;", mr);
    L("fu_r1 = fu_rb + (fu_r1 * %d < fu_rows ? fu_r1 * %d : fu_rows);", mr, mr);
    L("for (int64_t fu_m0 = fu_r0; fu_m0 < fu_r1; fu_m0 += %d) {", b->mchunk);
    in(G);
    L("const int64_t fu_mch = fu_r1 - fu_m0 < %d ? fu_r1 - fu_m0 : %d;", b->mchunk, b->mchunk);
    if (s->q) {
        emit_qgemm_chunk(G, s, h_piece);
        out(G);
        L("}");
        out(G);
        L("}");
        return;
    }
    if (s->norm) {
        const char *K = dimx(G, s->K);
        L("for (int64_t fu_i = 0; fu_i < fu_mch; ++fu_i) {");
        in(G);
        L("const float *const fu_xr = fu_A + (fu_m0 + fu_i) * %s;", K);
        emit_row_stats(G, s->norm, "fu_xr", K);
        L("fu_st[3 * fu_i] = fu_mu;");
        L("fu_st[3 * fu_i + 1] = fu_lo;");
        L("fu_st[3 * fu_i + 2] = fu_iv;");
        out(G);
        L("}");
    }
    for (int g = 0; g < s->ng; g++) {
        const Group *gr = &s->g[g];
        emit_group_open(G, s, g, "fu_tc", "fu_tn", h_piece, "");
        for (int p = 0; p < gr->np; p++)
            L("float *const fu_pb%d = fu_s + %lld;", p, (long long)(G->off_pb + p * (int64_t)b->kc * G->ncmax));
        if (G->cacc)
            for (int p = 0; p < gr->np; p++)
                L("float *const fu_cacc%d = fu_s + %lld;", p,
                  (long long)(G->off_cacc + p * (int64_t)b->mchunk * G->ncmax));
        for (int p = 0; p + 1 < gr->np; p++)
            L("float fu_t%d[%d];", p, b->mr * b->nr);
        L("float fu_t%d[%d];", gr->np - 1, b->mr * b->nr);
        L("for (int64_t fu_jc = fu_j0; fu_jc < fu_j1; fu_jc += %lld) {", (long long)gr->nc);
        in(G);
        L("const int64_t fu_nc = fu_j1 - fu_jc < %lld ? fu_j1 - fu_jc : %lld;", (long long)gr->nc, (long long)gr->nc);
        const char *K = dimx(G, s->K);
        L("for (int64_t fu_pc = 0; fu_pc == 0 || fu_pc < %s; fu_pc += %d) {", K, b->kc);
        in(G);
        L("const int64_t fu_kc = %s - fu_pc < %d ? %s - fu_pc : %d;", K, b->kc, K, b->kc);
        if (G->dot == DOT_AMX)
            L("const int64_t fu_kcs = (fu_kc + 31) / 32 * 32;");
        if (G->cacc)
            L("const int fu_first = fu_pc == 0, fu_last = fu_pc + %d >= %s;", b->kc, K);
        for (int p = 0; p < gr->np; p++) {
            G->wdt = gr->p[p].b->dtype;
            emit_pack_b(G, s, &gr->p[p], p, G->pl.matmul ? "fu_B" : buf_of(G, gr->p[p].b, false));
            emit_round_panel(G, fu_format("fu_pb%d", p), fu_format("(fu_nc + %d) / %d * %d * %s", b->nr - 1, b->nr, b->nr, G->kcs));
            if (G->dot != DOT_F32)
                emit_pair_panels(G, fu_format("fu_pb%d", p), b->nr, fu_format("(fu_nc + %d) / %d", b->nr - 1, b->nr));
        }
        L("for (int64_t fu_ic = 0; fu_ic < fu_mch; fu_ic += %d) {", b->mc);
        in(G);
        L("const int64_t fu_mc = fu_mch - fu_ic < %d ? fu_mch - fu_ic : %d;", b->mc, b->mc);
        if (G->dot == DOT_AMX) {
            emit_pack_a_amx(G, s);
        } else {
            emit_pack_a(G, s);
            emit_round_panel(G, "fu_pa", fu_format("(fu_mc + %d) / %d * %d * fu_kc", b->mr - 1, b->mr, b->mr));
            if (G->dot == DOT_BF16)
                emit_pair_panels(G, "fu_pa", b->mr, fu_format("(fu_mc + %d) / %d", b->mr - 1, b->mr));
        }
        L("for (int64_t fu_jr = 0; fu_jr < fu_nc; fu_jr += %d)", b->nr);
        L("    for (int64_t fu_ir = 0; fu_ir < fu_mc; fu_ir += %d) {", b->mr);
        in(G);
        in(G);
        for (int p = 0; p < gr->np; p++)
            emit_micro(G, s, gr, p, h_piece);
        out(G);
        out(G);
        L("    }");
        if (gr->rope || gr->hnorm) {
            /* the block's rows are final: rotate (or normalise) them while they are in cache */
            L("%s{", G->cacc ? "if (fu_last) " : "");
            in(G);
            if (gr->hnorm)
                emit_hnorm_block(G, gr->hnorm, "fu_m0 + fu_ic", "fu_m0 + fu_ic + fu_mc", "fu_jc", "fu_jc + fu_nc");
            else
                emit_rope_block(G, gr->rope, "fu_m0 + fu_ic", "fu_m0 + fu_ic + fu_mc", "fu_jc", "fu_jc + fu_nc");
            out(G);
            L("}");
        }
        out(G);
        L("}");
        out(G);
        L("}");
        out(G);
        L("}");
        out(G);
        L("}");
    }
    out(G);
    L("}");
    out(G);
    L("}");
}

/* ---- GEMV (decode) --------------------------------------------------------------- */

/* Row pointer of A for GEMV row i (an expression, 0 <= i < fu_mv). */
static const char *gemv_arow(Gen *G, const Stage *s, const char *i) {
    if (s->pieces)
        return fu_format("(fu_hg + (%s) * %s)", i, dimx(G, s->K));
    if (s->norm)
        return fu_format("(fu_an + (%s) * %s)", i, dimx(G, s->K));
    return fu_format("(fu_A + (fu_rb + %s) * %s)", i, dimx(G, s->K));
}

/* Dot products of rows [g, g + mv) of A (g a C expression) with the R
 * weight rows fu_w0.. (output columns fu_n..fu_n + R - 1), U vectors of k per
 * step, each (row, column) with its own accumulators; results to fu_yb<pi>. */
static void emit_gemv_dot(Gen *G, const Stage *s, int pi, int mv, int R, int U, const char *g) {
    const Target *t = G->t;
    int vf = G->b.vf;
    const char *K = dimx(G, s->K);
    L("{");
    in(G);
    for (int i = 0; i < mv; i++)
        L("const float *const fu_x%d = %s;", i, gemv_arow(G, s, fu_format("%s + %d", g, i)));
    for (int i = 0; i < mv; i++)
        for (int r = 0; r < R; r++) {
            Buf b = {0};
            for (int u = 0; u < U; u++)
                buf_printf(&b, "%sfu_s%d_%d_%d = %s", u ? ", " : "", i, r, u, v_zero(t));
            L("%s %s;", G->vt, b.data);
            free(b.data);
        }
    L("int64_t fu_k = 0;");
    for (int tail = 0; tail < 2; tail++) {
        int UU = tail ? 1 : U;
        if (tail && U == 1)
            break;
        L("for (; fu_k + %d <= %s; fu_k += %d) {", UU * vf, K, UU * vf);
        in(G);
        for (int u = 0; u < UU; u++) {
            for (int i = 0; i < mv; i++)
                L("const %s fu_xv%d_%d = %s;", G->vt, i, u, rv(G, v_load(t, fu_format("fu_x%d + fu_k + %d", i, u * vf))));
            for (int r = 0; r < R; r++) {
                L("const %s fu_wv%d_%d = %s;", G->vt, r, u,
                  rv(G, ty_load(t, vf, G->wdt, fu_format("fu_w%d", r), fu_format("fu_k + %d", u * vf))));
                for (int i = 0; i < mv; i++)
                    L("fu_s%d_%d_%d = %s;", i, r, u,
                      v_fma(t, fu_format("fu_xv%d_%d", i, u), fu_format("fu_wv%d_%d", r, u), fu_format("fu_s%d_%d_%d", i, r, u)));
            }
        }
        out(G);
        L("}");
    }
    for (int i = 0; i < mv; i++)
        for (int r = 0; r < R; r++) {
            const char *v = fu_format("fu_s%d_%d_0", i, r);
            for (int u = 1; u < U; u++)
                v = v_bin(t, OP_ADD, v, fu_format("fu_s%d_%d_%d", i, r, u));
            L("float fu_z%d_%d = %s;", i, r, v_hsum(t, v));
        }
    if (vf > 1) {
        L("for (; fu_k < %s; ++fu_k) {", K);
        for (int i = 0; i < mv; i++)
            for (int r = 0; r < R; r++)
                L("    fu_z%d_%d += %s * %s;", i, r, rs(G, fu_format("fu_x%d[fu_k]", i)),
                  rs(G, ty_load1(G->wdt, fu_format("fu_w%d", r), "fu_k")));
        L("}");
    }
    for (int i = 0; i < mv; i++)
        for (int r = 0; r < R; r++)
            L("fu_yb%d[(%s + %d) * %lld + fu_n + %d] = fu_z%d_%d;", pi, g, i, (long long)G->gchmax, r, i, r);
    out(G);
    L("}");
}

/* The loops over output columns, R at a time, then one at a time.  body(R)
 * writes what R columns need (the weight rows are fu_w0..). */
static void emit_gemv_cols(Gen *G, const Stage *s, int R, const char *bptr, void (*body)(Gen *, const Stage *, int, int, int),
                           int pi, int mv) {
    const char *K = dimx(G, s->K);
    for (int pass = 0; pass < 2; pass++) {
        int RR = pass == 0 ? R : 1;
        if (pass == 0) {
            L("int64_t fu_n = 0;");
            L("for (; fu_n + %d <= fu_nc; fu_n += %d) {", RR, RR);
        } else { /* counted: "fu_n < fu_nc" here trips gcc's -Waggressive-loop-optimizations */
            L("for (int64_t fu_left = fu_nc - fu_n; fu_left > 0; --fu_left, ++fu_n) {");
        }
        in(G);
        for (int r = 0; r < RR; r++)
            L("const %s *const fu_w%d = %s + (fu_jc + fu_n + %d) * %s;", ty_ctype(G->wdt), r, bptr, r, K);
        body(G, s, pi, mv, RR);
        out(G);
        L("}");
    }
}

/* fu_mv rows (1..GEMV_GROUP, mv of them): R = 4 columns at a time for up to
 * two rows (one row: two accumulators each, to cover the FMA latency), 2 for
 * more; the weights stream once. */
static void gemv_body_small(Gen *G, const Stage *s, int pi, int mv, int R) {
    emit_gemv_dot(G, s, pi, mv, R, mv == 1 && R > 1 ? 2 : 1, "0");
}

/* GEMV_GROUP + 1 .. gemv_rows rows: a group of GEMV_GROUP rows, then
 * the rest, both reading the same R weight rows (in L1 by then). */
static void gemv_body_wide(Gen *G, const Stage *s, int pi, int mv, int R) {
    (void)mv;
    emit_gemv_dot(G, s, pi, GEMV_GROUP, R, 1, "0");
    L("switch (fu_mv - %d) {", GEMV_GROUP);
    for (int m = 1; m <= G->b.gemv_rows - GEMV_GROUP; m++) {
        L("case %d:", m);
        in(G);
        emit_gemv_dot(G, s, pi, m, R, 1, fu_format("%d", GEMV_GROUP));
        L("break;");
        out(G);
    }
    L("default:");
    L("    break;");
    L("}");
}

/* B [N, K]: the switch on the row count picks a fully unrolled loop. */
static void emit_gemv_nk(Gen *G, const Stage *s, int pi, const char *bptr) {
    L("switch (fu_mv) {");
    for (int mv = 1; mv <= GEMV_GROUP; mv++) {
        L("case %d: {", mv);
        in(G);
        emit_gemv_cols(G, s, mv <= 2 ? 4 : 2, bptr, gemv_body_small, pi, mv);
        L("break;");
        out(G);
        L("}");
    }
    L("default: {");
    in(G);
    emit_gemv_cols(G, s, 2, bptr, gemv_body_wide, pi, 0);
    L("break;");
    out(G);
    L("}");
    L("}");
}

/* B [K, N]: y[0..mv) chunk += x[i][k] * row k of B, four rows of B per
 * pass so each y vector is loaded and stored once per four. */
static void emit_gemv_kn(Gen *G, const Stage *s, const Prod *p, int pi, const char *bptr) {
    const Target *t = G->t;
    int vf = G->b.vf;
    const char *K = dimx(G, s->K), *ldb = dimx(G, p->mm->shape[p->mm->rank - 1]);
    long long ld = (long long)G->gchmax;
    L("for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i)");
    L("    for (int64_t fu_c = 0; fu_c < fu_nc; ++fu_c)");
    L("        fu_yb%d[fu_i * %lld + fu_c] = 0.0f;", pi, ld);
    for (int pass = 0; pass < 2; pass++) {
        int R = pass == 0 ? 4 : 1;
        if (pass == 0) {
            L("int64_t fu_k = 0;");
            L("for (; fu_k + %d <= %s; fu_k += %d) {", R, K, R);
        } else {
            L("for (; fu_k < %s; ++fu_k) {", K);
        }
        in(G);
        for (int r = 0; r < R; r++)
            L("const %s *const fu_w%d = %s + (fu_k + %d) * %s + fu_jc;", ty_ctype(G->wdt), r, bptr, r, ldb);
        L("for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i) {");
        in(G);
        const char *xrow = s->pieces ? fu_format("fu_hg + fu_i * %s", K)
                           : s->norm ? fu_format("fu_an + fu_i * %s", K)
                                     : fu_format("fu_A + (fu_rb + fu_i) * %s", K);
        L("const float *const fu_xr = %s;", xrow);
        L("float *const fu_yr = fu_yb%d + fu_i * %lld;", pi, ld);
        for (int r = 0; r < R; r++)
            L("const %s fu_xv%d = %s;", G->vt, r, v_set1(t, rs(G, fu_format("fu_xr[fu_k + %d]", r))));
        L("int64_t fu_c = 0;");
        L("for (; fu_c + %d <= fu_nc; fu_c += %d) {", vf, vf);
        in(G);
        L("%s fu_acc = %s;", G->vt, v_load(t, "fu_yr + fu_c"));
        for (int r = 0; r < R; r++)
            L("fu_acc = %s;",
              v_fma(t, fu_format("fu_xv%d", r), rv(G, ty_load(t, vf, G->wdt, fu_format("fu_w%d", r), "fu_c")), "fu_acc"));
        L("%s;", v_store(t, "fu_yr + fu_c", "fu_acc"));
        out(G);
        L("}");
        if (vf > 1) {
            /* fewer than vf columns are left; counting them in an int keeps
             * aarch64 GCC 12 from proving an overflowing trip count
             * (-Waggressive-loop-optimizations) for `for (; c < nc; ++c)` */
            L("for (int fu_q = 0, fu_nq = (int)(fu_nc - fu_c); fu_q < fu_nq; ++fu_q)");
            Buf e = {0};
            for (int r = 0; r < R; r++)
                buf_printf(&e, " + %s * %s", rs(G, fu_format("fu_xr[fu_k + %d]", r)),
                           rs(G, ty_load1(G->wdt, fu_format("fu_w%d", r), "fu_c + fu_q")));
            L("    fu_yr[fu_c + fu_q] = fu_yr[fu_c + fu_q]%s;", e.data);
            free(e.data);
        }
        out(G);
        L("}");
        out(G);
        L("}");
    }
}

/* Rows [r0, r1) of stage s (at most gemv_rows), as GEMV: threads split
 * the output columns. */
static void emit_gemv_path(Gen *G, const Stage *s, const char *r0, const char *r1, bool h_piece) {
    L("{");
    in(G);
    L("const int64_t fu_rb = %s, fu_mv = %s - fu_rb;", r0, r1);
    if (s->norm) {
        const char *K = dimx(G, s->K);
        /* each thread normalizes the (at most 4) rows for itself */
        L("float *const fu_an = fu_s + %lld;", (long long)G->off_an);
        L("for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i) {");
        in(G);
        L("const float *const fu_xr = fu_A + (fu_rb + fu_i) * %s;", K);
        L("float *const fu_ar = fu_an + fu_i * %s;", K);
        emit_row_stats(G, s->norm, "fu_xr", K);
        if (s->norm->op == OP_RMS_NORM)
            L("(void)fu_mu, (void)fu_lo;");
        L("for (int64_t fu_q = 0; fu_q < %s; ++fu_q)", K);
        L("    fu_ar[fu_q] = %s;", norm_expr(G, s->norm, "fu_xr[fu_q]", "fu_q", "fu_mu", "fu_lo", "fu_iv"));
        out(G);
        L("}");
    }
    if (s->pieces) {
        /* gather the rows of h from every thread's piece */
        const char *K = dimx(G, s->K);
        L("float *const fu_hg = fu_s + %lld;", (long long)G->off_hg);
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        in(G);
        L("int64_t fu_f0, fu_f1;");
        emit_col_range(G, &G->pl.s[0], 0, "fu_t", "nth", "fu_f0", "fu_f1");
        L("const float *const fu_src = (const float *)fr_scratch(fu_t) + %lld;", (long long)G->off_hp);
        L("for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i)");
        L("    for (int64_t fu_q = fu_f0; fu_q < fu_f1; ++fu_q)");
        L("        fu_hg[fu_i * %s + fu_q] = fu_src[fu_i * (fu_f1 - fu_f0) + fu_q - fu_f0];", K);
        out(G);
        L("}");
    }
    if (s->q) {
        /* q8_0/q4_0: the (normalized, gathered) rows quantized once, by each thread */
        L("int8_t *const fu_xq = (int8_t *)(void *)(fu_s + %lld);", (long long)G->off_gq);
        L("for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i)");
        L("    %s(%s, %s, fu_xq + fu_i * %lld);", ty_qx_fn(G->t), gemv_arow(G, s, "fu_i"), dimx(G, s->K),
          (long long)qx_stride(s->K.c));
    }
    for (int g = 0; g < s->ng; g++) {
        const Group *gr = &s->g[g];
        emit_group_open(G, s, g, "tid", "nth", h_piece, "");
        for (int p = 0; p < gr->np; p++)
            L("float *const fu_yb%d = fu_s + %lld;", p, (long long)(G->off_yb + p * G->b.gemv_rows * G->gchmax));
        L("for (int64_t fu_jc = fu_j0; fu_jc < fu_j1; fu_jc += %lld) {", (long long)gr->gch);
        in(G);
        /* fu_jc < fu_j1, so the width is positive, but aarch64 GCC 12's range
         * analysis misses it and -Waggressive-loop-optimizations fails the
         * build of the tail loops below (found by tests/diff): clamp at 0. */
        L("const int64_t fu_nc = fu_j1 - fu_jc < %lld ? (fu_j1 - fu_jc > 0 ? fu_j1 - fu_jc : 0) : %lld;",
          (long long)gr->gch, (long long)gr->gch);
        for (int p = 0; p < gr->np; p++) {
            const char *bptr = G->pl.matmul ? "fu_B" : buf_of(G, gr->p[p].b, false);
            G->wdt = gr->p[p].b->dtype;
            if (s->q) {
                /* int8 dots of every row with one weight row at a time */
                const int64_t nb = (s->K.c + 31) / 32, rb = nb * dt_info(G->wdt)->block_bytes;
                L("for (int64_t fu_n = 0; fu_n < fu_nc; ++fu_n) {");
                L("    float fu_acc[%d];", G->b.gemv_rows);
                L("    %s((const uint8_t *)%s + (fu_jc + fu_n) * %lld, fu_xq, %lld, %lld, (int)fu_mv, fu_acc);",
                  ty_qdot_fn(G->t, G->wdt), bptr, (long long)rb, (long long)qx_stride(s->K.c), (long long)nb);
                L("    for (int64_t fu_i = 0; fu_i < fu_mv; ++fu_i)");
                L("        fu_yb%d[fu_i * %lld + fu_n] = fu_acc[fu_i];", p, (long long)G->gchmax);
                L("}");
            } else if (gr->p[p].nk) {
                emit_gemv_nk(G, s, p, bptr);
            } else {
                L("{");
                in(G);
                emit_gemv_kn(G, s, &gr->p[p], p, bptr);
                out(G);
                L("}");
            }
        }
        const char *vals[2];
        for (int p = 0; p < gr->np; p++)
            vals[p] = fu_format("fu_yb%d", p);
        emit_region_epilogue(G, s, gr, vals, G->gchmax, "fu_mv", "fu_nc", "fu_rb", "fu_jc", h_piece);
        if (gr->rope)
            emit_rope_block(G, gr->rope, "fu_rb", "fu_rb + fu_mv", "fu_jc", "fu_jc + fu_nc");
        if (gr->hnorm)
            emit_hnorm_block(G, gr->hnorm, "fu_rb", "fu_rb + fu_mv", "fu_jc", "fu_jc + fu_nc");
        out(G);
        L("}");
        out(G);
        L("}");
    }
    out(G);
    L("}");
}

/* ---- the kernel ------------------------------------------------------------------- */

/* Per-group blocking (rope needs whole heads per thread and per block) and
 * the per-thread scratch layout. */
static void layout(Gen *G) {
    const Blk *b = &G->b;
    int64_t need_gemm = 0, need_gemv = 0;
    G->ncmax = 0;
    G->npmax = 1;
    G->gchmax = 0;
    G->cacc = false;
    for (int s = 0; s < G->pl.ns; s++) {
        Stage *st = &G->pl.s[s];
        if (!dim_is_const(st->K) || st->K.c > b->kc)
            G->cacc = true;
        for (int g = 0; g < st->ng; g++) {
            Group *gr = &st->g[g];
            int64_t unit = b->nr;
            if (gr->rope || gr->hnorm) {
                int64_t hd = gr->rope ? gr->rope->i[0] : gr->hnorm->shape[2].c;
                unit = unit / gcd64(unit, hd) * hd;
            }
            gr->unit = unit;
            gr->nc = b->nc >= unit ? b->nc / unit * unit : unit;
            gr->gch = b->gch >= unit ? b->gch / unit * unit : unit;
            G->ncmax = gr->nc > G->ncmax ? gr->nc : G->ncmax;
            G->gchmax = gr->gch > G->gchmax ? gr->gch : G->gchmax;
            G->npmax = gr->np > G->npmax ? gr->np : G->npmax;
        }
    }
    int64_t at = 0;
    if (G->pl.ns == 2) {
        G->off_hg = at;
        at += round16(G->b.gemv_rows * G->pl.s[1].K.c);
    }
    int64_t base = at;
    /* GEMM */
    G->off_pa = at;
    at += round16((int64_t)b->mc * b->kc + 16); /* + slack for emit_pack_a_vec */
    G->off_pb = at;
    at += round16(G->npmax * b->kc * G->ncmax);
    if (G->cacc) {
        G->off_cacc = at;
        at += round16(G->npmax * b->mchunk * G->ncmax);
    }
    if (G->pl.s[0].norm) {
        G->off_st = at;
        at += round16(3 * (int64_t)b->mchunk);
    }
    need_gemm = at;
    /* q8_0/q4_0 stages: a float row (the normalized or gathered A row), the
     * quantized rows of a chunk (VNNI: 6 at a time, packed into fu_qa), the
     * B panel, the float tile columns of the products, AMX's int32 tile;
     * over the float32 GEMM's memory (a stage uses one or the other, and
     * nothing in it outlives its stage) */
    at = base;
    int64_t qxs = 0;
    for (int s = 0; s < G->pl.ns; s++)
        if (G->pl.s[s].q) {
            int64_t K = G->pl.s[s].K.c, xs = qx_stride(K);
            qxs = xs > qxs ? xs : qxs;
            G->qcrows = (b->mchunk + 31) / 32 * 32 + 8;
            G->off_qr = at;
            at += round16(K);
            G->off_qx = at;
            at += round16(((qmode(G->t) == Q_VNNI ? 6 : G->qcrows) * xs + 3) / 4);
            G->off_qa = at;
            at += qmode(G->t) == Q_VNNI ? round16((b->mchunk + 5) / 6 * ((K + 31) / 32) * 64) : 0;
            G->off_qb = at;
            at += round16(QG_KB * 1152 / 4);
            G->off_qc = at;
            at += round16(G->npmax * G->qcrows * 32);
            G->off_qt = at;
            at += qmode(G->t) == Q_AMX ? 1024 : 0;
        }
    need_gemm = at > need_gemm ? at : need_gemm;
    /* GEMV, over the same memory */
    at = base;
    if (G->pl.s[0].norm) {
        FU_ASSERT(dim_is_const(G->pl.s[0].K));
        G->off_an = at;
        at += round16(G->b.gemv_rows * G->pl.s[0].K.c);
    }
    G->off_yb = at;
    at += round16(G->npmax * G->b.gemv_rows * G->gchmax);
    G->off_gq = at;
    at += round16((G->b.gemv_rows * qxs + 3) / 4);
    need_gemv = at;
    G->total = need_gemm > need_gemv ? need_gemm : need_gemv;
    if (G->pl.ns == 2) {
        /* the piece of h goes last, kept across the barrier: its share of
         * the row block, and at least a whole row of h.  `nth` is the
         * call's thread count, both in the kernel and in forward's
         * fu_scratch, which sizes each thread's scratch for exactly the
         * threads the call runs on. */
        int64_t F = G->pl.s[1].K.c;
        G->off_hp = round16(G->total);
        G->hcap = fu_format("((int64_t)%lld / nth > %lld ? (int64_t)%lld / nth : %lld)",
                            (long long)G->b.mlp_floats, (long long)F, (long long)G->b.mlp_floats, (long long)F);
    }
}

/* A comment naming what the kernel computes. */
static void emit_summary(Gen *G, const Kernel *kr) {
    Buf b = {0};
    for (int s = 0; s < G->pl.ns; s++) {
        const Stage *st = &G->pl.s[s];
        buf_printf(&b, "%sstage %d: A = %s%%%d", s ? "; " : "", s + 1,
                   st->norm ? fu_format("%s(%%%d) = ", op_info[st->norm->op].name, st->x->id) : "",
                   st->norm ? st->norm->id : st->x->id);
        for (int g = 0; g < st->ng; g++) {
            const Group *gr = &st->g[g];
            buf_printf(&b, ", [");
            for (int i = 0; i < gr->nn; i++)
                buf_printf(&b, "%s%%%d %s", i ? " " : "", gr->nodes[i]->id, op_info[gr->nodes[i]->op].name);
            if (gr->rope)
                buf_printf(&b, " %%%d rope", gr->rope->id);
            if (gr->hnorm)
                buf_printf(&b, " %%%d rms_norm per head", gr->hnorm->id);
            buf_puts(&b, "]");
        }
    }
    L("/* %s %s", kr->kind == KK_MLP ? "MLP" : "GEMM", b.data ? b.data : "");
    L(" * blocking: tile %dx%d, KC %d, MC %d, NC %lld; at most %d rows: GEMV */", G->b.mr, G->b.nr, G->b.kc,
      G->b.mc, (long long)G->ncmax, G->b.gemv_rows);
    free(b.data);
}

/* Inverse frequencies of each rope, once per call. */
static void emit_rope_tables(Gen *G) {
    for (int s = 0; s < G->pl.ns; s++)
        for (int g = 0; g < G->pl.s[s].ng; g++) {
            const Node *r = G->pl.s[s].g[g].rope;
            if (!r)
                continue;
            int64_t hd = r->i[0];
            L("double fu_if%d[%lld];", r->id, (long long)(hd / 2));
            L("for (int64_t fu_q = 0; fu_q < %lld; ++fu_q)", (long long)(hd / 2));
            L("    fu_if%d[fu_q] = pow(%s, -2.0 * (double)fu_q / %s);", r->id, c_double_lit(r->f[0]),
              c_double_lit((double)hd));
        }
}

/* A norm the kernel also stores (another kernel reads it): each thread
 * writes its share of rows; nothing in this kernel reads them back. */
static void emit_norm_result(Gen *G, const Stage *s) {
    const Node *n = s->norm;
    const char *K = dimx(G, s->K), *y = buf_of(G, n, true);
    L("{");
    in(G);
    L("int64_t fu_a0, fu_a1;");
    L("fr_split(fu_M, tid, nth, &fu_a0, &fu_a1);");
    L("for (int64_t fu_i = fu_a0; fu_i < fu_a1; ++fu_i) {");
    in(G);
    L("const float *const fu_xr = fu_A + fu_i * %s;", K);
    emit_row_stats(G, n, "fu_xr", K);
    if (n->op == OP_RMS_NORM)
        L("(void)fu_mu, (void)fu_lo;");
    L("for (int64_t fu_q = 0; fu_q < %s; ++fu_q)", K);
    L("    %s[fu_i * %s + fu_q] = %s;", y, K, norm_expr(G, n, "fu_xr[fu_q]", "fu_q", "fu_mu", "fu_lo", "fu_iv"));
    out(G);
    L("}");
    out(G);
    L("}");
}

/* Batched matmul: A and B offsets of batch fu_bt (batch dims broadcast). */
static void emit_batch_offsets(Gen *G) {
    const Node *n = G->pl.out, *a = n->in[0], *b = n->in[1];
    int r = n->rank, nb = r - 2;
    L("int64_t fu_ao = 0, fu_bo = 0, fu_rem = fu_bt;");
    for (int d = nb - 1; d >= 0; d--) {
        L("{");
        in(G);
        L("const int64_t fu_ix = fu_rem %% %s;", dimx(G, n->shape[d]));
        L("fu_rem /= %s;", dimx(G, n->shape[d]));
        const Node *ops[2] = {a, b};
        const char *acc[2] = {"fu_ao", "fu_bo"};
        int used = 0;
        for (int q = 0; q < 2; q++) {
            int xd = d - (r - ops[q]->rank);
            if (xd < 0 || is_const1(ops[q]->shape[xd]))
                continue;
            L("%s += fu_ix * %s;", acc[q], numelx(G, ops[q], xd + 1, ops[q]->rank));
            used++;
        }
        if (!used)
            L("(void)fu_ix;");
        out(G);
        L("}");
    }
    L("(void)fu_rem;");
    L("const float *const fu_A = %s + fu_ao;", buf_of(G, a, false));
    L("const float *const fu_B = %s + fu_bo;", buf_of(G, b, false));
    L("const int64_t fu_yo = fu_bt * %s * %s, fu_ro = fu_bt * %s;", dimx(G, n->shape[r - 2]), dimx(G, n->shape[r - 1]),
      dimx(G, n->shape[r - 2]));
    L("(void)fu_yo;");
    L("(void)fu_ro;");
}

void emit_gemm_kernel(Kern *k, const Kernel *kr) {
    char why[256];
    Gen gen, *G = &gen;
    memset(G, 0, sizeof *G);
    G->k = k;
    G->t = kern_target(k);
    G->b = blocking(G->t);
    G->vt = v_type(G->t);
    if (!analyze(kr, &G->pl, why, sizeof why))
        fu_internal(__FILE__, __LINE__, "emit_gemm: kernel %d is not a GEMM kernel: %s", kr->id, why);
    if (G->pl.bf16 && G->t->isa == ISA_AVX512 && (G->t->features & FR_CPU_AMX_BF16)) {
        G->dot = DOT_AMX;
        G->b = *G->t->tiles_amx;
    } else if (G->pl.bf16 && G->t->isa == ISA_AVX512 && (G->t->features & FR_CPU_AVX512BF16)) {
        G->dot = DOT_BF16;
    }
    G->kcs = G->dot == DOT_AMX ? "fu_kcs" : "fu_kc";
    layout(G);
    const Node *o = G->pl.out;
    if (G->pl.matmul) {
        G->M = dimx(G, o->shape[o->rank - 2]);
        G->batch = numelx(G, o, 0, o->rank - 2);
    } else {
        G->M = numelx(G, o, 0, o->rank - 1);
    }
    if (G->pl.ns == 2)
        kern_scratch(k, fu_format("(size_t)(%lld + %s) * sizeof(float)", (long long)G->off_hp, G->hcap));
    else
        kern_scratch(k, fu_format("(size_t)%lld * sizeof(float)", (long long)G->total));
    emit_summary(G, kr);
    L("float *const fu_s = (float *)fr_scratch(tid);");
    if (G->dot == DOT_AMX) {
        /* palette 1, tiles 0..7 of 16 rows of 64 bytes (per thread; forward's
         * fr_cpu_check has had Linux's permission for the tile data) */
        L("unsigned char fu_tcfg[64] = {1};");
        L("for (int fu_i = 0; fu_i < 8; ++fu_i) {");
        L("    fu_tcfg[16 + 2 * fu_i] = 64;");
        L("    fu_tcfg[48 + fu_i] = 16;");
        L("}");
        L("FU_TILE_CONFIG(fu_tcfg);");
    }
    bool qamx = false;
    for (int si = 0; si < G->pl.ns; si++)
        qamx |= G->pl.s[si].q && qmode(G->t) == Q_AMX;
    if (qamx)
        L("fu_qamx_config_%s();", G->t->tag);
    L("const int64_t fu_M = %s;", G->M);
    emit_rope_tables(G);
    for (int si = 0; si < G->pl.ns; si++)
        emit_units(G, &G->pl.s[si]);
    const Stage *s0 = &G->pl.s[0];
    if (G->pl.s[0].norm && kern_is_result(k, G->pl.s[0].norm)) {
        L("const float *const fu_A = %s;", buf_of(G, s0->x, false));
        emit_norm_result(G, s0);
    } else if (!G->pl.matmul) {
        L("const float *const fu_A = %s;", buf_of(G, s0->x, false));
    }
    if (G->pl.ns == 2) {
        /* KK_MLP: row blocks small enough that every thread's piece of h fits */
        L("int64_t fu_fmax = 0;");
        L("{");
        in(G);
        L("for (int fu_t = 0; fu_t < nth; ++fu_t) {");
        L("    int64_t fu_f0, fu_f1;");
        in(G);
        emit_col_range(G, s0, 0, "fu_t", "nth", "fu_f0", "fu_f1");
        out(G);
        L("    fu_fmax = fu_f1 - fu_f0 > fu_fmax ? fu_f1 - fu_f0 : fu_fmax;");
        L("}");
        out(G);
        L("}");
        L("int64_t fu_MB = %s / (fu_fmax > 0 ? fu_fmax : 1);", G->hcap);
        L("fu_MB = fu_MB > %d ? %d : fu_MB < 1 ? 1 : fu_MB;", G->b.mchunk, G->b.mchunk);
        /* balanced row blocks: T = 512 with room for 504 rows is two blocks
         * of 256, not 504 and a GEMV tail of 8 that streams every weight
         * again (docs/fusion.md, the MLP row tile) */
        L("if (fu_MB < fu_M) {");
        L("    const int64_t fu_nb = (fu_M + fu_MB - 1) / fu_MB, fu_b = (fu_M + fu_nb - 1) / fu_nb;");
        L("    const int64_t fu_bu = (fu_b + %d) / %d * %d;", G->b.mr - 1, G->b.mr, G->b.mr);
        L("    fu_MB = fu_bu <= fu_MB ? fu_bu : fu_b;");
        L("}");
        L("for (int64_t fu_mb0 = 0; fu_mb0 < fu_M; fu_mb0 += fu_MB) {");
        in(G);
        L("const int64_t fu_mb1 = fu_M - fu_mb0 < fu_MB ? fu_M : fu_mb0 + fu_MB;");
        L("if (fu_mb1 - fu_mb0 <= %d) {", G->b.gemv_rows);
        in(G);
        emit_gemv_path(G, s0, "fu_mb0", "fu_mb1", true);
        L("fr_barrier(nth);");
        emit_gemv_path(G, &G->pl.s[1], "fu_mb0", "fu_mb1", false);
        out(G);
        L("} else {");
        in(G);
        if (s0->norm)
            L("float *const fu_st = fu_s + %lld;", (long long)G->off_st);
        L("float *const fu_pa = fu_s + %lld;", (long long)G->off_pa);
        if (s0->q || G->pl.s[1].q)
            L("(void)fu_pa;");
        if (s0->norm && s0->q)
            L("(void)fu_st;");
        emit_gemm_path(G, s0, "fu_mb0", "fu_mb1", false, true);
        L("fr_barrier(nth);");
        emit_gemm_path(G, &G->pl.s[1], "fu_mb0", "fu_mb1", false, false);
        out(G);
        L("}");
        /* nobody may reuse its scratch while others still read its piece */
        L("fr_barrier(nth);");
        out(G);
        L("}");
        if (G->dot == DOT_AMX)
            L("FU_TILE_RELEASE();");
        if (qamx)
            L("FU_QT_RELEASE();");
        return;
    }
    if (G->pl.matmul) {
        L("for (int64_t fu_bt = 0; fu_bt < %s; ++fu_bt) {", G->batch);
        in(G);
        emit_batch_offsets(G);
    }
    L("if (fu_M <= %d) {", G->b.gemv_rows);
    in(G);
    emit_gemv_path(G, s0, "0", "fu_M", false);
    out(G);
    L("} else {");
    in(G);
    if (s0->norm)
        L("float *const fu_st = fu_s + %lld;", (long long)G->off_st);
    L("float *const fu_pa = fu_s + %lld;", (long long)G->off_pa);
    if (s0->q)
        L("(void)fu_pa;");
    if (s0->norm && s0->q)
        L("(void)fu_st;");
    emit_gemm_path(G, s0, "0", "fu_M", true, false);
    out(G);
    L("}");
    if (G->pl.matmul) {
        out(G);
        L("}");
    }
    if (G->dot == DOT_AMX)
        L("FU_TILE_RELEASE();");
    if (qamx)
        L("FU_QT_RELEASE();");
}
