/*
 * fuse_norm.c - RMSNorm and LayerNorm fusion.
 *
 * pass_rewrite_norm finds RMSNorm written from primitives, the way
 * Hugging Face's LlamaRMSNorm spells it,
 *
 *     x * rsqrt(mean(x * x, axis=-1) + eps) * w      (factors in any order,
 *     x / sqrt(mean(x * x, axis=-1) + eps) * w        either spelling)
 *
 * and replaces it by one rms_norm(x, w, eps) node, so everything after it
 * (and --explain) sees the composite op.  LayerNorm written out is then
 * rms_norm(x - mean(x), w) + b, which becomes layer_norm(x, w, b, eps).  The pattern's inner nodes must
 * have no other consumer; otherwise their values are needed anyway and the
 * rewrite is refused with the reason.
 *
 * pass_fuse_norm then places every norm still on its own:
 *  - a norm whose consumers are all linear layers reading it as their input
 *    becomes the prologue of one KK_GEMM kernel holding those linears: the
 *    GEMM normalises rows of A as it reads them (or scales the product by
 *    the row-scale identity), and the normalised tensor is never stored;
 *  - any other norm becomes a KK_ROWWISE kernel: one pass per row that also
 *    computes the elementwise ops producing its input (a residual add; a
 *    producer read elsewhere is stored as it is computed) and applies the
 *    elementwise ops consuming its output.
 * Afterwards no norm that feeds only linears is stored unless the GEMM
 * emitter refuses the kernel (emit_gemm_supports) or a merge would make the
 * kernel graph cyclic; each such case is noted for --explain.
 */
#include "fusec.h"

#include <math.h>
#include <string.h>

/* ---- the rewrite ------------------------------------------------------------ */

/* A factor of the product: a plain tensor, or 1/sqrt(a) of some a. */
typedef struct Factor {
    Node *n;
    bool inv_sqrt;      /* the factor is 1/sqrt(n) */
} Factor;

#define MAX_FACTORS 6

/* Flattens a product tree of single-use mul (and div-by-sqrt) nodes into
 * its factors; the top node itself may have any number of users. */
static bool factors(Node *n, bool top, Factor *f, int *nf) {
    if (*nf >= MAX_FACTORS)
        return false;
    if ((top || n->nuses == 1) && n->op == OP_MUL) {
        return factors(n->in[0], false, f, nf) && factors(n->in[1], false, f, nf);
    }
    if ((top || n->nuses == 1) && n->op == OP_DIV && n->in[1]->op == OP_SQRT && n->in[1]->nuses == 1) {
        if (!factors(n->in[0], false, f, nf) || *nf >= MAX_FACTORS)
            return false;
        f[(*nf)++] = (Factor){n->in[1]->in[0], true};
        return true;
    }
    if (n->nuses == 1 && n->op == OP_RSQRT) {
        f[(*nf)++] = (Factor){n->in[0], true};
        return true;
    }
    f[(*nf)++] = (Factor){n, false};
    return true;
}

/* mean(x * x, last axis) + eps with single-use inner nodes: x and eps. */
static bool mean_square_plus_eps(const Node *a, Node **x, double *eps) {
    if (a->op != OP_ADD || a->nuses != 1)
        return false;
    const Node *m = a->in[0], *c = a->in[1];
    if (m->op == OP_CONST)
        m = a->in[1], c = a->in[0];
    if (c->op != OP_CONST || !(c->f[0] > 0) || !isfinite(c->f[0]))
        return false;
    if (m->op != OP_MEAN || m->nuses != 1 || m->in[0]->op != OP_MUL || m->in[0]->nuses != 1)
        return false;
    const Node *sq = m->in[0];
    if (sq->in[0] != sq->in[1] || m->i[0] != sq->rank - 1)
        return false;
    *x = sq->in[0];
    *eps = c->f[0];
    return true;
}

static bool try_rms(Graph *g, Node *top) {
    Factor f[MAX_FACTORS];
    int nf = 0;
    if (top->op != OP_MUL && top->op != OP_DIV)
        return false;
    if (!factors(top, true, f, &nf) || nf != 3)
        return false;
    int r = -1;
    for (int i = 0; i < nf; i++)
        if (f[i].inv_sqrt)
            r = r < 0 ? i : 99;
    if (r < 0 || r == 99)
        return false;
    Node *x;
    double eps;
    if (!mean_square_plus_eps(f[r].n, &x, &eps))
        return false;
    /* the other two factors: x itself and a weight over the last axis */
    Node *w = NULL;
    bool have_x = false;
    for (int i = 0; i < nf; i++) {
        if (i == r)
            continue;
        if (f[i].n == x && !have_x)
            have_x = true;
        else
            w = f[i].n;
    }
    if (!have_x || !w || x->rank < 1 || !fuse_same_shape(x, top) || w->rank != 1 ||
        !dim_eq(w->shape[0], x->shape[x->rank - 1]) || w->dtype != DT_F32)
        return false;
    Node *in[2] = {x, w};
    Node *nw = ir_node(g, OP_RMS_NORM, 2, in, top->loc);
    nw->f[0] = eps;
    char why[256];
    if (!ir_infer(nw, g, why, sizeof why))
        fu_internal(__FILE__, __LINE__, "rms_norm rewrite: %s", why);
    fuse_note(g, "norm: %s = x * rsqrt(mean(x*x) + eps) * w recognised as rms_norm(%s, %s)",
              fuse_name(g, top), fuse_name(g, x), fuse_name(g, w));
    ir_replace(g, top, nw);
    return true;
}

/* rms_norm(x - mean(x), w) + b, with x - mean(x) read only by the rms_norm
 * (its mean of squares is the variance): layer_norm(x, w, b). */
static bool try_layer(Graph *g, Node *add) {
    if (add->op != OP_ADD)
        return false;
    for (int s = 0; s < 2; s++) {
        Node *rms = add->in[s], *b = add->in[1 - s];
        if (rms->op != OP_RMS_NORM || rms->nuses != 1 || b->rank != 1 || b->dtype != DT_F32 ||
            !fuse_same_shape(add, rms))
            continue;
        Node *c = rms->in[0];
        if (c->op != OP_SUB || c->nuses != 1 || c->in[1]->op != OP_MEAN || c->in[1]->nuses != 1)
            continue;
        Node *x = c->in[0], *m = c->in[1];
        if (m->in[0] != x || m->i[0] != x->rank - 1 || !dim_eq(b->shape[0], x->shape[x->rank - 1]))
            continue;
        Node *in[3] = {x, rms->in[1], b};
        Node *nw = ir_node(g, OP_LAYER_NORM, 3, in, add->loc);
        nw->f[0] = rms->f[0];
        char why[256];
        if (!ir_infer(nw, g, why, sizeof why))
            fu_internal(__FILE__, __LINE__, "layer_norm rewrite: %s", why);
        fuse_note(g, "norm: %s = rms_norm(x - mean(x), w) + b recognised as layer_norm(%s, %s, %s)",
                  fuse_name(g, add), fuse_name(g, x), fuse_name(g, rms->in[1]), fuse_name(g, b));
        ir_replace(g, add, nw);
        return true;
    }
    return false;
}

void pass_rewrite_norm(Graph *g, const Options *o) {
    if (!fuse_enabled(o, FUSE_NORM))
        return;
    ir_rewrite_all(g, try_rms);
    ir_rewrite_all(g, try_layer);
}

/* ---- the fusion --------------------------------------------------------------- */

static bool single(const Graph *g, const Node *n) {
    return n->kernel >= 0 && g->kernels[n->kernel]->kind == KK_SINGLE;
}

/* The model's verdict on a prologue: the GEMM that normalises A as it
 * packs it (again for every column block) against the norm's own row pass
 * and the plain GEMMs, at each of cost_points. */
static bool prologue_pays(Graph *g, const Options *o, Node **cand, int nu, Node *norm) {
    CostPart *parts = fu_alloc(sizeof *parts * (size_t)(nu + 1));
    parts[0] = (CostPart){&cand[nu], 1, KK_ROWWISE};
    for (int i = 0; i < nu; i++)
        parts[i + 1] = (CostPart){&cand[i], 1, KK_SINGLE};
    return cost_pays(g, o, "norm", fu_format("%s as the prologue of its linears", fuse_name(g, norm)),
                     (CostPart){cand, nu + 1, KK_GEMM}, parts, nu + 1);
}

/* The norm and every linear reading it become one KK_GEMM kernel, where
 * the cost model says that pays. */
static bool as_prologue(Graph *g, const Options *o, Node *norm) {
    Node **users;
    int nu = ir_users(g, norm, &users);
    if (nu == 0)
        return false;
    for (int i = 0; i < nu; i++) {
        Node *u = users[i];
        if (u->op != OP_LINEAR || u->in[0] != norm) {
            fuse_note(g, "norm: %s is read by %s (%s), not only by linear layers: no GEMM prologue",
                      fuse_name(g, norm), fuse_name(g, u), op_info[u->op].name);
            return false;
        }
        if (!single(g, u)) {
            fuse_note(g, "norm: %s feeds %s, which is already fused elsewhere: no GEMM prologue",
                      fuse_name(g, norm), fuse_name(g, u));
            return false;
        }
    }
    Node **cand = fu_alloc(sizeof *cand * (size_t)(nu + 1));
    memcpy(cand, users, sizeof *cand * (size_t)nu);
    cand[nu] = norm;
    if (!fuse_gemm_ok(g, cand, nu + 1, KK_GEMM, "norm") || !prologue_pays(g, o, cand, nu, norm))
        return false;
    /* Merge the linears first (they share A), then the norm. */
    int k = users[0]->kernel;
    for (int i = 1; i < nu; i++)
        if (!sched_try_merge(g, k, users[i]->kernel)) {
            fuse_note(g, "norm: linears %s and %s cannot share a kernel (a path between them runs "
                         "through another kernel)", fuse_name(g, users[0]), fuse_name(g, users[i]));
            return false;
        }
    if (!sched_try_merge(g, k, norm->kernel)) {
        fuse_note(g, "norm: %s cannot join its linears' kernel", fuse_name(g, norm));
        return false;
    }
    Kernel *kr = g->kernels[k];
    kr->kind = KK_GEMM;
    kr->note = fu_format("%s prologue: %s is normalised as the GEMM reads it, never stored",
                         op_info[norm->op].name, fuse_name(g, norm));
    return true;
}

/* Elementwise producers of the row op's input join as prologue, elementwise
 * consumers of its output as epilogue; all must have the norm's shape. */
static void grow_rowwise(Graph *g, Node *row, int k, const char *pass) {
    /* prologue: walk producers breadth first from the row op's input */
    Node *stack[32];
    int sp = 0;
    stack[sp++] = row->in[0];
    while (sp) {
        Node *p = stack[--sp];
        if (!fuse_is_elementwise(p) || !single(g, p) || !fuse_same_shape(p, row))
            continue;
        if (!sched_try_merge(g, k, p->kernel)) {
            fuse_note(g, "%s: %s cannot join %s's row pass (the kernel graph would be cyclic)", pass,
                      fuse_name(g, p), fuse_name(g, row));
            continue;
        }
        if (p->nuses > 1)
            fuse_note(g, "%s: %s joins %s's row pass but is stored: it has %d consumers", pass,
                      fuse_name(g, p), fuse_name(g, row), p->nuses);
        for (int j = 0; j < p->nin && sp < 30; j++)
            stack[sp++] = p->in[j];
    }
    /* epilogue: consumers of the row op, then of those */
    sp = 0;
    stack[sp++] = row;
    while (sp) {
        Node *c = stack[--sp];
        Node **users;
        int nu = ir_users(g, c, &users);
        for (int i = 0; i < nu; i++) {
            Node *u = users[i];
            if (!fuse_is_elementwise(u) || !single(g, u) || !fuse_same_shape(u, row))
                continue;
            if (!sched_try_merge(g, k, u->kernel))
                continue;
            if (sp < 30)
                stack[sp++] = u;
        }
    }
}

void pass_fuse_norm(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_NORM, "norm"))
        return;
    ir_recount(g);
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (op_info[n->op].cat != CAT_NORM || !single(g, n))
            continue;
        if (as_prologue(g, o, n))
            continue;
        int k = n->kernel;
        grow_rowwise(g, n, k, "norm");
        Kernel *kr = g->kernels[k];
        kr->kind = KK_ROWWISE;
        kr->note = fu_format("%s in one pass per row%s", op_info[n->op].name,
                             kr->nnodes > 1 ? " with its elementwise neighbours" : "");
    }
    sched_compact(g);
}
