/*
 * fuse_attention.c - flash attention, from the op or from primitives.
 *
 * pass_rewrite_attention rediscovers attention written out the way
 * Hugging Face's eager_attention_forward spells it:
 *
 *     scores = matmul(qh, kt) [* scale | / scale]   qh [B.., T, hd], kt [B.., hd, S]
 *     probs  = softmax([causal_mask](scores))        (scale and mask in either order)
 *     ctx    = matmul(probs, vh)                     vh [B.., S, hd]
 *     attn   = reshape/transpose(ctx) -> [T, H*hd]
 *
 * where qh, kt and vh are reshapes and transposes of 2-D tensors q [T, H*hd],
 * k and v [S, KVH*hd], and the batch dims B.. enumerate the heads, with k
 * and v broadcast over the query heads that share them (grouped-query
 * attention without repeat_kv's copy).  To check that, every operand is
 * described as a strided view of its 2-D base: sizes and element strides
 * per axis, which reshape (splitting or merging contiguous axes) and
 * transpose (permuting axes) transform exactly.  The output side runs the
 * chain backwards: ctx is a view of attn's [T, H*hd] layout.  Then, for
 * every batch index (the heads are constants), the q view must address
 * head h's columns, the output view the same head's, and k and v the
 * columns of kv head h / (H / KVH).  If all of that holds, and every
 * intermediate is read only by the next step, the whole subgraph becomes
 * one attention(q, k, v) node; the T x S scores are gone from the graph.
 *
 * pass_fuse_attention then builds the KK_ATTENTION kernel around every
 * attention node: RoPE of q (applied as query rows are loaded), the
 * appends of k and v to the caches together with RoPE of the new k rows
 * (the rotated rows are what the cache keeps), and column slices that
 * carve q, k and v out of one fused qkv projection (GPT-2): each only
 * when the attention kernel is its one consumer.  emit_fused.c writes
 * the kernel: flash attention with the online softmax over key blocks.
 */
#include "fusec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- strided views ---------------------------------------------------------- */

/* Logical tensor = base[sum_a index[a] * stride[a]] with base a contiguous
 * 2-D tensor [rows, cols] (cols constant), so every stride is a constant. */
typedef struct View {
    const Node *base;
    int rank;
    Dim size[FU_MAX_RANK];
    int64_t stride[FU_MAX_RANK];
} View;

static bool is_one(Dim d) { return dim_is_const(d) && d.c == 1; }

static bool view_base(const Node *n, View *v) {
    if (n->rank != 2 || !dim_is_const(n->shape[1]) || n->dtype != DT_F32)
        return false;
    v->base = n;
    v->rank = 2;
    v->size[0] = n->shape[0];
    v->size[1] = n->shape[1];
    v->stride[0] = n->shape[1].c;
    v->stride[1] = 1;
    return true;
}

static void view_transpose(View *v, const int64_t *perm) {
    View o = *v;
    for (int a = 0; a < v->rank; a++) {
        o.size[a] = v->size[perm[a]];
        o.stride[a] = v->stride[perm[a]];
    }
    *v = o;
}

/* Reshapes a view to `shape`: axes of size 1 are dropped and re-inserted
 * (stride 0); other axes pair up into groups of equal element count, where
 * a symbolic axis must match a symbolic axis exactly and a constant group
 * must be contiguous in the base (stride[i] == stride[i+1] * size[i+1]) to
 * be merged and then split. */
static bool view_reshape(View *v, int rank, const Dim *shape) {
    Dim is[FU_MAX_RANK];
    int64_t ist[FU_MAX_RANK];
    int ni = 0;
    for (int a = 0; a < v->rank; a++)
        if (!is_one(v->size[a])) {
            is[ni] = v->size[a];
            ist[ni++] = v->stride[a];
        }
    View o = {v->base, rank, {{0}}, {0}};
    int i = 0, j = 0;
    while (j < rank) {
        if (is_one(shape[j])) {
            o.size[j] = shape[j];
            o.stride[j++] = 0;
            continue;
        }
        if (i >= ni)
            return false;
        if (!dim_is_const(is[i]) || !dim_is_const(shape[j])) {
            if (!dim_eq(is[i], shape[j]))
                return false;
            o.size[j] = shape[j];
            o.stride[j++] = ist[i++];
            continue;
        }
        /* a constant group: input axes i..i2, output axes j..j2 */
        int64_t pi = is[i].c, pj = shape[j].c;
        int i2 = i, j2 = j;
        while (pi != pj) {
            if (pi < pj) {
                if (++i2 >= ni || !dim_is_const(is[i2]))
                    return false;
                pi *= is[i2].c;
            } else {
                do {
                    if (++j2 >= rank)
                        return false;
                } while (is_one(shape[j2]));
                if (!dim_is_const(shape[j2]))
                    return false;
                pj *= shape[j2].c;
            }
        }
        for (int a = i; a < i2; a++)
            if (ist[a] != ist[a + 1] * is[a + 1].c)
                return false;
        /* split the merged axis (stride of its last input axis) */
        int64_t st = ist[i2];
        for (int b = j2; b >= j; b--) {
            o.size[b] = shape[b];
            if (is_one(shape[b])) {
                o.stride[b] = 0;
                continue;
            }
            o.stride[b] = st;
            st *= shape[b].c;
        }
        i = i2 + 1;
        j = j2 + 1;
    }
    if (i != ni)
        return false;
    *v = o;
    return true;
}

/* n as a view of a 2-D tensor through reshapes and transposes. */
static bool view_of(const Node *n, View *v) {
    int depth = 0;
    const Node *chain[16];
    while ((n->op == OP_RESHAPE || n->op == OP_TRANSPOSE) && depth < 16) {
        chain[depth++] = n;
        n = n->in[0];
    }
    if (!view_base(n, v))
        return false;
    for (int c = depth - 1; c >= 0; c--) {
        const Node *x = chain[c];
        if (x->op == OP_TRANSPOSE)
            view_transpose(v, x->i);
        else if (!view_reshape(v, x->rank, x->shape))
            return false;
    }
    return true;
}

/* ---- the rewrite ------------------------------------------------------------ */

typedef struct Match {
    Node *scores, *mask, *softmax, *ctx, *out;  /* out: the final [T, H*hd] node */
    double scale;
    View q, k, v, o;
    int64_t H, KVH, hd;
} Match;

static bool refuse(Graph *g, const Node *at, const char *why) {
    fuse_note(g, "attention: the softmax(q k^T) v at %s is not rewritten: %s", fuse_name(g, at), why);
    return false;
}

/* The offset of batch index idx (row-major over the broadcast batch dims
 * bdims) in view v, whose batch axes are right-aligned against them. */
static int64_t batch_offset(const View *v, int nb, const int64_t *idx, int vb) {
    int64_t off = 0;
    for (int a = 0; a < vb; a++) {
        int d = nb - vb + a;
        if (!is_one(v->size[a]))
            off += idx[d] * v->stride[a];
    }
    return off;
}

/* Checks the head structure: every batch index addresses head h in q and
 * the output, and kv head h / (H / KVH) in k and v. */
static bool check_heads(Graph *g, Match *m, const Node *at) {
    int vr = m->ctx->rank, nb = vr - 2;
    Dim bd[FU_MAX_RANK];
    int64_t count = 1;
    for (int d = 0; d < nb; d++) {
        bd[d] = m->ctx->shape[d];
        if (!dim_is_const(bd[d]))
            return refuse(g, at, "a head (batch) dimension is symbolic");
        count *= bd[d].c;
    }
    int64_t hd = m->hd, qcols = m->q.base->shape[1].c, kcols = m->k.base->shape[1].c;
    if (qcols % hd || kcols % hd || count != qcols / hd)
        return refuse(g, at, "the batch dims do not enumerate the query heads");
    int64_t H = qcols / hd, KVH = kcols / hd;
    if (KVH < 1 || H % KVH || m->v.base->shape[1].c != kcols)
        return refuse(g, at, "the key/value heads do not divide the query heads");
    int64_t G = H / KVH;
    bool *seen = fu_alloc(sizeof *seen * (size_t)H);
    int64_t idx[FU_MAX_RANK] = {0};
    for (int64_t f = 0; f < count; f++) {
        int64_t r = f;
        for (int d = nb - 1; d >= 0; d--) {
            idx[d] = r % bd[d].c;
            r /= bd[d].c;
        }
        int64_t qo = batch_offset(&m->q, nb, idx, m->q.rank - 2);
        int64_t oo = batch_offset(&m->o, nb, idx, m->o.rank - 2);
        int64_t ko = batch_offset(&m->k, nb, idx, m->k.rank - 2);
        int64_t vo = batch_offset(&m->v, nb, idx, m->v.rank - 2);
        if (qo % hd || qo < 0 || qo / hd >= H || seen[qo / hd])
            return refuse(g, at, "q's batch dims do not address each head once");
        int64_t h = qo / hd;
        seen[h] = true;
        if (oo != qo)
            return refuse(g, at, "the output puts a head where q did not take it from");
        if (ko != vo || ko != (h / G) * hd)
            return refuse(g, at, "k and v do not give each query head its kv head (h / G)");
    }
    m->H = H;
    m->KVH = KVH;
    return true;
}

/* The inner axes: q [.., T, hd] rows of q, k [.., hd, S] or [.., S, hd]
 * rows of k, v [.., S, hd] rows of v, output [.., T, hd] rows of attn. */
static bool check_inner(const View *v, bool rows_then_hd, int64_t hd) {
    int r = v->rank;
    int ra = rows_then_hd ? r - 2 : r - 1, ha = rows_then_hd ? r - 1 : r - 2;
    return dim_eq(v->size[ra], v->base->shape[0]) && v->stride[ra] == v->base->shape[1].c &&
           dim_is_const(v->size[ha]) && v->size[ha].c == hd && v->stride[ha] == 1;
}

/* The [T, H*hd] node the output chain ends in, and ctx as a view of it. */
static bool output_view(Graph *g, Match *m, const Node *at) {
    Node *chain[FU_VIEW_CHAIN];
    int n = 0;
    Node *x = m->ctx;
    Node **users;
    /* follow single-consumer reshapes and transposes */
    while (n < FU_VIEW_CHAIN && x->nuses == 1 && ir_users(g, x, &users) == 1 &&
           (users[0]->op == OP_RESHAPE || users[0]->op == OP_TRANSPOSE)) {
        chain[n++] = users[0];
        x = users[0];
    }
    if (!view_base(x, &m->o))
        return refuse(g, at, "the context is not reshaped back to [tokens, heads*head_dim]");
    m->out = x;
    /* undo the chain: reshape back to the producer's shape, transpose by the inverse */
    for (int c = n - 1; c >= 0; c--) {
        const Node *step = chain[c], *prev = step->in[0];
        if (step->op == OP_RESHAPE) {
            if (!view_reshape(&m->o, prev->rank, prev->shape))
                return refuse(g, at, "the output reshape is not a view of the result");
        } else {
            int64_t inv[FU_MAX_RANK];
            for (int a = 0; a < step->rank; a++)
                inv[step->i[a]] = a;
            view_transpose(&m->o, inv);
        }
    }
    return true;
}

static bool single_use(Graph *g, Node *n, const Node *at) {
    if (n->nuses == 1)
        return true;
    return refuse(g, at, fu_format("%s has %d consumers", fuse_name(g, n), n->nuses));
}

static bool match_attention(Graph *g, Node *ctx, Match *m) {
    memset(m, 0, sizeof *m);
    if (ctx->op != OP_MATMUL || ctx->in[0]->op != OP_SOFTMAX)
        return false;
    m->ctx = ctx;
    m->softmax = ctx->in[0];
    m->scale = 1.0;
    /* walk back from the softmax through mask and scaling to the scores */
    Node *x = m->softmax->in[0];
    for (int steps = 0; steps < 4; steps++) {
        if (x->op == OP_CAUSAL_MASK && !m->mask) {
            m->mask = x;
        } else if ((x->op == OP_MUL || x->op == OP_DIV) &&
                   (x->in[1]->op == OP_CONST || (x->op == OP_MUL && x->in[0]->op == OP_CONST))) {
            const Node *c = x->in[1]->op == OP_CONST ? x->in[1] : x->in[0];
            double f = c->f[0];
            if (!(f > 0) || !isfinite(f))
                return refuse(g, ctx, "the scores are scaled by a constant that is not positive");
            m->scale *= x->op == OP_DIV ? 1.0 / f : f;
        } else {
            break;
        }
        if (!single_use(g, x, ctx))
            return false;
        x = x->in[0]->op == OP_CONST ? x->in[1] : x->in[0];
    }
    if (x->op != OP_MATMUL)
        return refuse(g, ctx, "the softmax does not read q k^T (through scale and mask)");
    m->scores = x;
    if (!single_use(g, x, ctx) || !single_use(g, m->softmax, ctx))
        return false;
    /* operands as views of 2-D tensors */
    bool kt = x->i[0] == 0;     /* k operand laid out [.., hd, S] */
    if (!view_of(x->in[0], &m->q) || !view_of(x->in[1], &m->k) || !view_of(ctx->in[1], &m->v))
        return refuse(g, ctx, "q, k or v is not a reshape/transpose view of a [rows, heads*head_dim] tensor");
    int qr = m->q.rank;
    if (!dim_is_const(m->q.size[qr - 1]))
        return refuse(g, ctx, "the head dimension is symbolic");
    m->hd = m->q.size[qr - 1].c;
    if (!check_inner(&m->q, true, m->hd) || !check_inner(&m->k, !kt, m->hd) ||
        !check_inner(&m->v, ctx->i[0] == 0, m->hd))
        return refuse(g, ctx, "q, k or v does not have tokens as rows and head_dim as columns");
    if (!output_view(g, m, ctx))
        return false;
    if (!check_inner(&m->o, true, m->hd) || !dim_eq(m->o.base->shape[0], m->q.base->shape[0]) ||
        m->o.base->shape[1].c != m->q.base->shape[1].c)
        return refuse(g, ctx, "the result is not laid out as [tokens, heads*head_dim]");
    if (!dim_eq(m->k.base->shape[0], m->v.base->shape[0]))
        return refuse(g, ctx, "k and v have different numbers of rows");
    return check_heads(g, m, ctx);
}

static bool try_attention(Graph *g, Node *ctx) {
    Match m;
    if (!match_attention(g, ctx, &m))
        return false;
    Node *in[3] = {(Node *)m.q.base, (Node *)m.k.base, (Node *)m.v.base};
    Node *nw = ir_node(g, OP_ATTENTION, 3, in, ctx->loc);
    nw->i[0] = m.H;
    nw->i[1] = m.KVH;
    nw->i[2] = m.hd;
    nw->i[3] = m.mask != NULL;
    nw->f[0] = m.scale;
    char why[256];
    if (!ir_infer(nw, g, why, sizeof why))
        fu_internal(__FILE__, __LINE__, "attention rewrite: %s", why);
    fuse_note(g, "attention: matmul/%s%ssoftmax/matmul at %s recognised as attention(%s, %s, %s, "
                 "heads=%lld, kv_heads=%lld, head_dim=%lld)",
              m.scale != 1.0 ? "scale/" : "", m.mask ? "causal_mask/" : "", fuse_name(g, ctx),
              fuse_name(g, m.q.base), fuse_name(g, m.k.base), fuse_name(g, m.v.base), (long long)m.H,
              (long long)m.KVH, (long long)m.hd);
    ir_replace(g, m.out, nw);
    return true;
}

void pass_rewrite_attention(Graph *g, const Options *o) {
    if (!fuse_enabled(o, FUSE_ATTENTION))
        return;
    ir_rewrite_all(g, try_attention);
}

/* ---- the fusion --------------------------------------------------------------- */

static bool single(const Graph *g, const Node *n) {
    return n->kernel >= 0 && g->kernels[n->kernel]->kind == KK_SINGLE;
}

/* A column slice of a 2-D tensor read only here: the kernel reads it in
 * place (row stride of the source, column offset). */
static bool col_slice(const Node *n) {
    return n->op == OP_SLICE && n->rank == 2 && n->i[0] == 1 && n->i[1] >= 0 && n->nuses == 1;
}

static int add(const Graph *g, Node **set, int n, Node *x) {
    if (!single(g, x))
        return n;
    set[n++] = x;
    return n;
}

static void fuse_one(Graph *g, Node *att) {
    Node *set[12];
    int n = 0;
    set[n++] = att;
    Node *q = att->in[0];
    if (q->op == OP_ROPE) {
        if (q->nuses == 1 && single(g, q)) {
            n = add(g, set, n, q);
            if (col_slice(q->in[0]))
                n = add(g, set, n, q->in[0]);
        } else {
            fuse_note(g, "attention: rope %s is not applied inside the attention kernel: %s",
                      fuse_name(g, q), q->nuses != 1 ? fu_format("%s has %d consumers", fuse_name(g, q), q->nuses)
                                                  : "it is already fused elsewhere");
        }
    } else if (col_slice(q)) {
        n = add(g, set, n, q);
    }
    for (int s = 1; s <= 2; s++) {
        Node *kv = att->in[s];
        if (kv->op == OP_APPEND && single(g, kv)) {
            n = add(g, set, n, kv);
            Node *rows = kv->in[1];
            if (rows->op == OP_ROPE && rows->nuses == 1 && single(g, rows)) {
                n = add(g, set, n, rows);
                rows = rows->in[0];
            } else if (rows->op == OP_ROPE) {
                fuse_note(g, "attention: rope %s is not applied inside the attention kernel: %s has "
                             "%d consumers", fuse_name(g, rows), fuse_name(g, rows), rows->nuses);
            }
            if (col_slice(rows) && single(g, rows))
                n = add(g, set, n, rows);
        } else if (col_slice(kv)) {
            n = add(g, set, n, kv);
        }
    }
    int ks[12];
    for (int i = 0; i < n; i++)
        ks[i] = set[i]->kernel;
    /* a part that would make the graph cyclic is left out, the rest kept */
    while (n > 1 && !sched_can_merge_set(g, ks, n)) {
        fuse_note(g, "attention: %s stays out of the attention kernel (a path runs through another "
                     "kernel)", fuse_name(g, set[n - 1]));
        n--;
    }
    int k = att->kernel;
    sched_merge_set(g, k, ks, n);
    Kernel *kr = g->kernels[k];
    kr->kind = KK_ATTENTION;
    Buf b = {0};
    for (int i = 1; i < n; i++)
        buf_printf(&b, ", %s %s", op_info[set[i]->op].name, fuse_name(g, set[i]));
    const char *variant = fu_format("%s%s%s%s", att->i[3] ? ", causal" : "",
                                    att->i[4] ? fu_format(", window %lld", (long long)att->i[4]) : "",
                                    att->f[1] > 0 ? fu_format(", softcap %g", att->f[1]) : "",
                                    att->nin == 4 ? fu_format(", %s mask", dtype_name(att->in[3]->dtype)) : "");
    kr->note = fu_format("flash attention (%lld heads, %lld kv heads, head_dim %lld%s): online "
                         "softmax, the scores are never stored%s",
                         (long long)att->i[0], (long long)att->i[1], (long long)att->i[2], variant,
                         b.len ? b.data : "");
    free(b.data);
}

void pass_fuse_attention(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_ATTENTION, "attention"))
        return;
    ir_recount(g);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OP_ATTENTION && single(g, g->nodes[i]))
            fuse_one(g, g->nodes[i]);
    sched_compact(g);
}
