/*
 * fuse_mlp.c - block fusion of the transformer MLP (Blockbuster,
 * DeepFusionKernel).
 *
 * Two shapes of MLP become one KK_MLP kernel:
 *
 *     SwiGLU (Llama):  down(act(x Wg) * (x Wu))          act(g) * u in either order
 *     plain (GPT-2):   down(act(x W1 + b1)) + b2
 *
 * with act one of silu, gelu, gelu_tanh, relu, sigmoid, tanh, any linear
 * optionally with a bias, optionally the norm that produces x (when only
 * the MLP's up projections read it), and optionally the residual add that
 * consumes the down projection.  The emitter (emit_gemm.c) walks the [T, F]
 * intermediate in cache-sized chunks of F: h_chunk = act(x Wg_chunk) *
 * (x Wu_chunk), then y += h_chunk Wd_chunk; the intermediate is never
 * stored whole.  That only works when nothing else reads the
 * intermediates, so every inner node must have the MLP as its one consumer;
 * otherwise the fusion is refused with the reason (and the GEMM epilogue
 * pass still fuses what it can).
 *
 * The whole set is offered to emit_gemm_supports before it is merged, and
 * then to the cost model (cost.c): the MLP becomes one kernel only where
 * that is predicted to be faster than the two GEMM kernels the later passes
 * would build instead (--fuse-all skips the question).
 *
 * Afterwards a KK_MLP kernel's nodes are, in order: [norm], the up
 * linear(s) (one or two reading the same x), the activation, [the mul],
 * the down linear, [the residual add].
 */
#include "fusec.h"

#include <string.h>

static bool single(const Graph *g, const Node *n) {
    return n->kernel >= 0 && g->kernels[n->kernel]->kind == KK_SINGLE;
}

static bool act_op(Op op) {
    return op == OP_SILU || op == OP_GELU || op == OP_GELU_TANH || op == OP_RELU ||
           op == OP_SIGMOID || op == OP_TANH;
}

/* A node the MLP computes internally: it must be the MLP's alone. */
static bool inner(Graph *g, const Node *n, const Node *mlp_root) {
    if (!single(g, n))
        return false;
    if (n->nuses != 1) {
        fuse_note(g, "mlp: %s is not fused into one MLP kernel with %s: %s has %d consumers",
                  fuse_name(g, n), fuse_name(g, mlp_root), fuse_name(g, n), n->nuses);
        return false;
    }
    return true;
}

/* The model's verdict: the MLP as one kernel against what the later
 * passes build instead (the up projections with their norm prologue and
 * activation epilogue in one GEMM, the down projection with its residual
 * add in another), at each of cost_points. */
static bool pays(Graph *g, const Options *o, Node **set, int n, Node *down) {
    Node **first = fu_alloc(sizeof *first * (size_t)n), **second = fu_alloc(sizeof *second * 2);
    int nf = 0, ns = 0;
    for (int i = 0; i < n; i++) {
        if (set[i] == down || (set[i]->op == OP_ADD && (set[i]->in[0] == down || set[i]->in[1] == down)))
            second[ns++] = set[i];
        else
            first[nf++] = set[i];
    }
    CostPart parts[2] = {{first, nf, KK_GEMM}, {second, ns, KK_GEMM}};
    return cost_pays(g, o, "mlp", fu_format("the MLP ending in %s as one kernel", fuse_name(g, down)),
                     (CostPart){set, n, KK_MLP}, parts, 2);
}

static bool try_mlp(Graph *g, const Options *o, Node *down) {
    Node *set[8];
    int n = 0;
    if (down->op != OP_LINEAR || !single(g, down))
        return false;
    Node *h = down->in[0], *up_g = NULL, *up_u = NULL, *act = NULL, *mul = NULL;
    if (h->op == OP_MUL) {
        for (int s = 0; s < 2; s++) {
            Node *a = h->in[s], *b = h->in[1 - s];
            if (act_op(a->op) && a->in[0]->op == OP_LINEAR && b->op == OP_LINEAR &&
                a->in[0]->in[0] == b->in[0] && a->in[0] != b) {
                act = a, up_g = a->in[0], up_u = b, mul = h;
                break;
            }
        }
        if (!mul)
            return false;
    } else if (act_op(h->op) && h->in[0]->op == OP_LINEAR) {
        act = h, up_g = h->in[0];
    } else {
        return false;
    }
    /* every intermediate is read only inside the MLP */
    if (!inner(g, h, down) || (mul && !inner(g, act, down)) || !inner(g, up_g, down) ||
        (up_u && !inner(g, up_u, down)))
        return false;
    Node *x = up_g->in[0];
    set[n++] = up_g;
    if (up_u)
        set[n++] = up_u;
    set[n++] = act;
    if (mul)
        set[n++] = mul;
    set[n++] = down;
    /* the norm producing x, when only the up projections read it */
    if (op_info[x->op].cat == CAT_NORM && single(g, x)) {
        if (x->nuses == (up_u ? 2 : 1))
            set[n++] = x;
        else
            fuse_note(g, "mlp: %s stays out of the MLP kernel: it has %d consumers", fuse_name(g, x),
                      x->nuses);
    }
    /* the residual add consuming the down projection */
    Node **users;
    if (down->nuses == 1 && ir_users(g, down, &users) == 1) {
        Node *r = users[0];
        Node *other = r->op == OP_ADD ? (r->in[0] == down ? r->in[1] : r->in[0]) : NULL;
        if (other && other != down && single(g, r) && fuse_same_shape(r, down) &&
            fuse_same_shape(other, down))
            set[n++] = r;
    }
    if (!fuse_gemm_ok(g, set, n, KK_MLP, "mlp"))
        return false;
    if (!pays(g, o, set, n, down))
        return false;
    int ks[8];
    for (int i = 0; i < n; i++)
        ks[i] = set[i]->kernel;
    if (!sched_can_merge_set(g, ks, n)) {
        fuse_note(g, "mlp: the MLP ending in %s cannot be one kernel (a path between its parts runs "
                     "through another kernel)", fuse_name(g, down));
        return false;
    }
    int k = down->kernel;
    sched_merge_set(g, k, ks, n);
    Kernel *kr = g->kernels[k];
    kr->kind = KK_MLP;
    kr->note = fu_format("%s MLP (%s%s%s) as one tiled pass: the [%s] intermediate is never stored",
                         mul ? "gated" : "plain", x->kernel == k ? "norm, " : "",
                         op_info[act->op].name, set[n - 1]->op == OP_ADD ? ", residual add" : "",
                         fu_format("rows, %lld", (long long)up_g->shape[up_g->rank - 1].c));
    return true;
}

void pass_fuse_mlp(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_MLP, "mlp"))
        return;
    ir_recount(g);
    for (int i = 0; i < g->nnodes; i++)
        try_mlp(g, o, g->nodes[i]);
    sched_compact(g);
}
