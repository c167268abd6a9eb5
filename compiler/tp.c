/*
 * tp.c - tensor parallelism: rewrites a block for one rank of N (--tp=N
 * --tp-rank=R; docs/distributed.md).
 *
 * The pass looks for Megatron's pairs: a "row-parallel" linear whose input
 * is computed, through ops that act on each column (or each head) alone,
 * from "column-parallel" linears of a replicated input.  Attention half:
 * q/k/v linears -> rope -> append to the caches -> attention -> o_proj.
 * MLP half: gate/up linears -> activation -> mul -> down_proj.  The region
 * between them is split along its last axis:
 *
 *   - attention: whole heads, grouped-query groups kept together.  With
 *     KVH >= N the key/value heads are split (rank r: KV heads
 *     [r KVH / N, (r+1) KVH / N) and their query heads); with KVH < N the
 *     ranks are spread over the KV heads (each KV head replicated on the
 *     ranks that share it) and split its group of query heads;
 *   - otherwise (the MLP): the columns, balanced to within one.
 *
 * Each column-parallel weight keeps its rows of the range (its bias too),
 * each cache its columns, the attention its local head counts; the
 * row-parallel weight keeps the matching columns and its bias stays on rank
 * 0 only.  The row linear's partial sums go through one `allreduce` op,
 * which takes the residual add it feeds (out = sum over ranks + residual)
 * when there is one.  Everything outside the regions (norms, embedding,
 * logits) is computed whole on every rank.  A block with attention or MoE
 * the pass cannot split is refused with an error naming it.
 */
#include "fusec.h"

#include <string.h>

enum { SP_Q, SP_KV, NSPACE };

typedef struct Tp {
    Graph *g;
    int N, R;
    signed char *space;     /* per node id: -1 outside the region, else its space */
    bool *claimed;          /* in some region already */
    Node **list;            /* the region's nodes */
    int nlist;
    Node *att;              /* the region's attention, or NULL */
    Node **pending;         /* row linears that need an all-reduce node of their own */
    int npending;
    char why[256];
} Tp;

static bool fail(Tp *t, const Node *n, const char *fmt, const char *arg) {
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    snprintf(t->why, sizeof t->why, "%%%d (%s%s%s): %s", n->id, op_info[n->op].name, n->label ? " " : "",
             n->label ? n->label : "", msg);
    return false;
}

static bool col_leaf(const Node *n) {
    return n->op == OP_LINEAR && n->in[1]->op == OP_WEIGHT && (n->nin < 3 || n->in[2]->op == OP_WEIGHT);
}

/* Adds n (in space sp) and what it is computed from to the region. */
static bool walk(Tp *t, Node *n, int sp) {
    if (t->space[n->id] >= 0)
        return t->space[n->id] == sp || fail(t, n, "%s", "reached in two head spaces");
    if (t->claimed[n->id])
        return fail(t, n, "%s", "shared by two parallel regions");
    if (n->rank < 1 || !dim_is_const(n->shape[n->rank - 1]))
        return fail(t, n, "%s", "its last axis is not a constant");
    t->space[n->id] = (signed char)sp;
    t->list[t->nlist++] = n;
    if (col_leaf(n))
        return true;
    switch (op_info[n->op].cat) {
    case CAT_UNARY:
        return walk(t, n->in[0], sp);
    case CAT_BINARY:
        if (n->in[0]->rank != n->in[1]->rank)
            return fail(t, n, "%s", "broadcasts a split tensor");
        for (int d = 0; d < n->rank; d++)
            if (!dim_eq(n->in[0]->shape[d], n->in[1]->shape[d]))
                return fail(t, n, "%s", "broadcasts a split tensor");
        return walk(t, n->in[0], sp) && walk(t, n->in[1], sp);
    default:
        break;
    }
    switch (n->op) {
    case OP_ROPE:
        return walk(t, n->in[0], sp);
    case OP_APPEND:
        if (n->in[0]->op != OP_CACHE)
            return fail(t, n, "%s", "appends to something other than a cache");
        return walk(t, n->in[0], sp) && walk(t, n->in[1], sp);
    case OP_CACHE:
        return true;
    case OP_ATTENTION:
        if (sp != SP_Q || t->att)
            return fail(t, n, "%s", "a second attention in one parallel region");
        t->att = n;
        return walk(t, n->in[0], SP_Q) && walk(t, n->in[1], SP_KV) && walk(t, n->in[2], SP_KV);
    default:
        return fail(t, n, "%s", "not an operation the pass splits by columns");
    }
}

/* [lo, hi) of n items for part i of m, balanced to within one. */
static void split(int64_t n, int i, int m, int64_t *lo, int64_t *hi) {
    *lo = n * i / m;
    *hi = n * (i + 1) / m;
}

/* This rank's columns of each space. */
static bool ranges(Tp *t, Node *row, int64_t lo[NSPACE], int64_t hi[NSPACE]) {
    int N = t->N, R = t->R;
    if (!t->att) {
        int64_t W = row->in[0]->shape[row->in[0]->rank - 1].c;
        if (W < N)
            return fail(t, row, "%s", fu_format("%lld columns cannot be split over %d ranks", (long long)W, N));
        split(W, R, N, &lo[SP_Q], &hi[SP_Q]);
        lo[SP_KV] = hi[SP_KV] = 0;
        return true;
    }
    const Node *a = t->att;
    int64_t H = a->i[0], KVH = a->i[1], hd = a->i[2], grp = H / KVH;
    int64_t h0, h1, k0, k1;
    if (H < N)
        return fail(t, a, "%s", fu_format("%lld heads cannot be split over %d ranks", (long long)H, N));
    if (KVH >= N) {
        split(KVH, R, N, &k0, &k1);
        h0 = k0 * grp;
        h1 = k1 * grp;
    } else {
        /* KV head k is shared by ranks [k N / KVH, (k+1) N / KVH) */
        int64_t k = 0, r0 = 0, r1 = 0;
        for (k = 0; k < KVH; k++) {
            split(N, (int)k, (int)KVH, &r0, &r1);
            if (R >= r0 && R < r1)
                break;
        }
        if (r1 - r0 > grp)
            return fail(t, a, "%s", fu_format("%lld ranks share a group of %lld query heads", (long long)(r1 - r0),
                                              (long long)grp));
        split(grp, (int)(R - r0), (int)(r1 - r0), &h0, &h1);
        h0 += k * grp;
        h1 += k * grp;
        k0 = k;
        k1 = k + 1;
    }
    lo[SP_Q] = h0 * hd;
    hi[SP_Q] = h1 * hd;
    lo[SP_KV] = k0 * hd;
    hi[SP_KV] = k1 * hd;
    return true;
}

static bool slice_weight(Tp *t, Node *w, int axis, int64_t lo, int64_t hi) {
    if (w->nuses != 1)
        return fail(t, w, "%s", "a split weight is also used elsewhere");
    if (axis != 0 && dt_info(w->dtype)->kind == DK_QUANT)
        return fail(t, w, "%s", "a quantized weight splits only by rows (use f32, bf16 or f16 for it)");
    if (w->tp_axis)
        return fail(t, w, "%s", "split twice");
    w->tp_axis = axis + 1;
    w->tp_start = lo;
    w->tp_full = w->shape[axis].c;
    w->shape[axis] = dim_const(hi - lo);
    return true;
}

/* Vocabulary parallelism: the logits linear (an output's value, weight
 * [V, D]) keeps rows [v0, v1) of its weight, so the rank's logits are those
 * columns (the driver's argmax is distributed: fr_mpi_argmax); an embedding
 * of a table only embeddings and that linear read keeps the same rows, the
 * ids outside them giving zeros, and an all-reduce makes the whole rows. */
static bool vocab_split(Tp *t) {
    Graph *g = t->g;
    Node *lm = NULL;
    for (int i = 0; i < g->noutputs; i++) {
        Node *x = g->outputs[i]->in[0];
        if (col_leaf(x) && x->i[0] == 0 && x->rank == 2 && !t->claimed[x->id] && x->in[1]->rank == 2 &&
            x->in[1]->shape[0].c >= t->N && (x->nin < 3 || x->in[2]->nuses == 1))
            lm = x;
    }
    /* the logits' weight first, then the embeddings' tables (often the same, tied) */
    for (int i = -1; i < g->nnodes; i++) {
        Node *n = i < 0 ? lm : g->nodes[i];
        if (!n || (i >= 0 && n->op != OP_EMBEDDING) || (i >= 0 && n->in[0]->op != OP_WEIGHT))
            continue;
        Node *w = i < 0 ? n->in[1] : n->in[0];
        if (w->tp_axis)
            continue;   /* split with the logits: the embedding got its rows below */
        Node **users;
        int nu = ir_users(g, w, &users);
        bool ok = w->rank >= 1 && w->shape[0].c >= t->N;
        for (int j = 0; ok && j < nu; j++)
            ok = users[j] == lm || (users[j]->op == OP_EMBEDDING && users[j]->in[0] == w);
        if (!ok) {
            if (n == lm)
                lm = NULL;
            continue;
        }
        int64_t V = w->shape[0].c, v0, v1;
        split(V, t->R, t->N, &v0, &v1);
        w->tp_axis = 1;
        w->tp_start = v0;
        w->tp_full = V;
        w->shape[0] = dim_const(v1 - v0);
        for (int j = 0; j < nu; j++)
            if (users[j]->op == OP_EMBEDDING) {
                users[j]->i[0] = v0;
                users[j]->i[1] = V;
                t->pending[t->npending++] = users[j];
            }
    }
    if (lm) {
        Node *w = lm->in[1];
        if (!w->tp_axis)
            return true;
        if (lm->nin == 3 && !slice_weight(t, lm->in[2], 0, w->tp_start, w->tp_start + w->shape[0].c))
            return false;
        g->tp_vocab_start = w->tp_start;
        g->tp_vocab = w->tp_full;
    }
    return true;
}

/* Moves the graph's last node to position `at`, renumbering. */
static void move_last_to(Graph *g, int at) {
    Node *n = g->nodes[g->nnodes - 1];
    memmove(&g->nodes[at + 1], &g->nodes[at], sizeof *g->nodes * (size_t)(g->nnodes - 1 - at));
    g->nodes[at] = n;
    for (int i = at; i < g->nnodes; i++)
        g->nodes[i]->id = i;
}

/* The all-reduce after the row-parallel linear, taking the residual add
 * (the add becomes the all-reduce, in place); false when there is none and
 * a new node must follow the linear (insert_allreduce, after every region). */
static bool fuse_allreduce(Tp *t, Node *row) {
    Graph *g = t->g;
    Node **users;
    int nu = ir_users(g, row, &users);
    Node *u = nu == 1 ? users[0] : NULL;
    if (u && u->op == OP_ADD) {
        Node *other = u->in[0] == row ? u->in[1] : u->in[0];
        bool same = other != row && other->rank == row->rank && other->dtype == DT_F32;
        for (int d = 0; same && d < row->rank; d++)
            same = dim_eq(other->shape[d], row->shape[d]);
        if (same) {
            u->op = OP_ALLREDUCE;
            u->in[0] = row;
            u->in[1] = other;
            u->i[0] = t->N;
            return true;
        }
    }
    return false;
}

static void insert_allreduce(Tp *t, Node *row) {
    Graph *g = t->g;
    Node **users;
    int nu = ir_users(g, row, &users);
    Node *ar = ir_node(g, OP_ALLREDUCE, 1, &row, row->loc);
    ar->i[0] = t->N;
    ar->label = row->label;
    for (int i = 0; i < nu; i++)
        for (int j = 0; j < users[i]->nin; j++)
            if (users[i]->in[j] == row)
                users[i]->in[j] = ar;
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i]->in[0] == row)
            g->outputs[i]->in[0] = ar;
    move_last_to(g, row->id + 1);
    g->users = NULL;
}

/* Splits the region ending in the row-parallel linear `row`. */
static bool rewrite(Tp *t, Node *row) {
    int64_t lo[NSPACE], hi[NSPACE];
    if (!ranges(t, row, lo, hi))
        return false;
    for (int i = 0; i < t->nlist; i++) {
        Node *n = t->list[i];
        int sp = t->space[n->id];
        int64_t full = n->shape[n->rank - 1].c;
        int64_t want = t->att ? t->att->i[sp == SP_Q ? 0 : 1] * t->att->i[2] : row->in[0]->shape[row->in[0]->rank - 1].c;
        if (full != want)
            return fail(t, n, "%s", fu_format("its last axis has %lld columns, the split expects %lld",
                                              (long long)full, (long long)want));
        if (n->op == OP_ROPE && t->att && t->att->i[2] % n->i[0] != 0)
            return fail(t, n, "%s", "its head_dim does not divide the attention's");
        if (n->op == OP_CACHE)
            n->shape[n->rank - 1] = dim_const(hi[sp] - lo[sp]);
        if (col_leaf(n)) {
            Node *w = n->in[1];
            if (!slice_weight(t, w, n->i[0] == 0 ? 0 : 1, lo[sp], hi[sp]) ||
                (n->nin == 3 && !slice_weight(t, n->in[2], n->in[2]->rank - 1, lo[sp], hi[sp])))
                return false;
        }
    }
    if (t->att) {
        t->att->i[0] = (hi[SP_Q] - lo[SP_Q]) / t->att->i[2];
        t->att->i[1] = (hi[SP_KV] - lo[SP_KV]) / t->att->i[2];
    }
    if (!slice_weight(t, row->in[1], row->i[0] == 0 ? 1 : 0, lo[SP_Q], hi[SP_Q]))
        return false;
    if (row->nin == 3 && t->R != 0)
        row->nin = 2;       /* the bias is added once, by rank 0 */
    for (int i = 0; i < t->nlist; i++)
        t->claimed[t->list[i]->id] = true;
    if (!fuse_allreduce(t, row))
        t->pending[t->npending++] = row;
    return true;
}

bool pass_tp(Graph *g, int nranks, int rank) {
    if (nranks <= 1)
        return true;
    Tp t;
    memset(&t, 0, sizeof t);
    t.g = g;
    t.N = nranks;
    t.R = rank;
    ir_recount(g);
    int nregions = 0;
    int cap = g->nnodes + 1;
    t.claimed = fu_alloc(sizeof *t.claimed * (size_t)cap);
    t.space = fu_alloc(sizeof *t.space * (size_t)cap);
    t.list = fu_alloc(sizeof *t.list * (size_t)cap);
    Node **rows = fu_alloc(sizeof *rows * (size_t)cap);
    t.pending = fu_alloc(sizeof *t.pending * (size_t)cap);
    int nrows = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (col_leaf(g->nodes[i]))
            rows[nrows++] = g->nodes[i];
    for (int r = 0; r < nrows; r++) {
        Node *row = rows[r];
        if (t.claimed[row->id])
            continue;
        memset(t.space, -1, sizeof *t.space * (size_t)cap);
        t.nlist = 0;
        t.att = NULL;
        t.why[0] = 0;
        bool ok = walk(&t, row->in[0], SP_Q);
        /* nothing computed inside the region may be read outside it */
        for (int i = 0; ok && i < t.nlist; i++) {
            Node *n = t.list[i];
            Node **users;
            int nu = ir_users(g, n, &users);
            for (int j = 0; ok && j < nu; j++)
                if (users[j] != row && t.space[users[j]->id] < 0)
                    ok = fail(&t, n, "%s", fu_format("also read by %%%d (%s), outside the split", users[j]->id,
                                                     op_info[users[j]->op].name));
        }
        if (!ok) {
            if (t.att) {
                diag_plain_error("--tp=%d: cannot split the attention of block '%s': %s", t.N, g->name, t.why);
                return false;
            }
            continue;
        }
        if (!rewrite(&t, row)) {
            diag_plain_error("--tp=%d: cannot split block '%s': %s", t.N, g->name, t.why);
            return false;
        }
        nregions++;
    }
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        bool moe = n->op == OP_MOE_UP || n->op == OP_MOE_DOWN;
        if ((n->op == OP_ATTENTION || moe) && !t.claimed[n->id]) {
            diag_plain_error("--tp=%d: cannot split block '%s': %s %%%d is not between column-parallel linears "
                             "and a row-parallel one (docs/distributed.md says what the pass splits)",
                             t.N, g->name, moe ? "the mixture of experts" : "attention", n->id);
            return false;
        }
    }
    if (nregions == 0) {
        diag_plain_error("--tp=%d: block '%s' has no linear pair the pass can split", t.N, g->name);
        return false;
    }
    if (!vocab_split(&t)) {
        diag_plain_error("--tp=%d: cannot split block '%s': %s", t.N, g->name, t.why);
        return false;
    }
    /* (renumbers the nodes: after every use of claimed[]) */
    for (int i = 0; i < t.npending; i++)
        insert_allreduce(&t, t.pending[i]);
    /* the new types, in order */
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        char why[256];
        if (op_info[n->op].cat == CAT_SOURCE)
            continue;
        if (!ir_infer(n, g, why, sizeof why)) {
            diag_plain_error("--tp=%d: block '%s' after the split: %%%d (%s): %s", t.N, g->name, n->id,
                             op_info[n->op].name, why);
            return false;
        }
    }
    ir_dce(g);
    g->tp_size = t.N;
    g->tp_rank = t.R;
    return true;
}
