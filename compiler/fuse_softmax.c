/*
 * fuse_softmax.c - softmax fusion: scale, mask, max, exp, sum and
 * normalise in one pass per row.
 *
 * pass_rewrite_softmax finds softmax written from primitives over the last
 * axis,
 *
 *     e = exp(x - max(x, axis=-1));  e / sum(e, axis=-1)     (or exp(x) / sum(exp(x)))
 *
 * and replaces it by softmax(x): the same function (the second spelling
 * only loses the overflow guard the op restores).
 *
 * pass_fuse_softmax then gives every softmax still on its own a KK_ROWWISE
 * kernel that also holds the ops that produce its input row by row (a
 * causal_mask, scaling by a constant, adding a mask tensor: any elementwise
 * op or causal_mask of the softmax's shape) and the elementwise ops that
 * consume its output.  The emitter reads each row once to find its maximum
 * and sum (online) and once more to write the normalised values; the scaled
 * and masked scores are never stored unless something else reads them.
 */
#include "fusec.h"

#include <string.h>

/* ---- the rewrite ------------------------------------------------------------ */

static bool is_last_axis(const Node *red) { return red->i[0] == red->rank - 1; }

static bool try_softmax(Graph *g, Node *div) {
    if (div->op != OP_DIV)
        return false;
    Node *e = div->in[0], *s = div->in[1];
    if (s->op != OP_SUM || s->in[0] != e || !is_last_axis(s) || s->nuses != 1)
        return false;
    /* e is read by the sum and the div only */
    if (e->op != OP_EXP || e->nuses != 2 || !fuse_same_shape(e, div))
        return false;
    Node *x = e->in[0];
    if (x->op == OP_SUB && x->nuses == 1 && x->in[1]->op == OP_MAX && x->in[1]->in[0] == x->in[0] &&
        is_last_axis(x->in[1]) && x->in[1]->nuses == 1)
        x = x->in[0];
    if (x->rank < 1 || !fuse_same_shape(x, div))
        return false;
    Node *nw = ir_node(g, OP_SOFTMAX, 1, &x, div->loc);
    char why[256];
    if (!ir_infer(nw, g, why, sizeof why))
        fu_internal(__FILE__, __LINE__, "softmax rewrite: %s", why);
    fuse_note(g, "softmax: %s = exp / sum(exp) recognised as softmax(%s)", fuse_name(g, div),
              fuse_name(g, x));
    ir_replace(g, div, nw);
    return true;
}

void pass_rewrite_softmax(Graph *g, const Options *o) {
    if (!fuse_enabled(o, FUSE_SOFTMAX))
        return;
    ir_rewrite_all(g, try_softmax);
}

/* ---- the fusion --------------------------------------------------------------- */

static bool single(const Graph *g, const Node *n) {
    return n->kernel >= 0 && g->kernels[n->kernel]->kind == KK_SINGLE;
}

/* Ops that can run inside the row pass before the softmax. */
static bool prologue_op(const Node *n) {
    return fuse_is_elementwise(n) || n->op == OP_CAUSAL_MASK;
}

void pass_fuse_softmax(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_SOFTMAX, "softmax"))
        return;
    ir_recount(g);
    for (int i = 0; i < g->nnodes; i++) {
        Node *sm = g->nodes[i];
        if (sm->op != OP_SOFTMAX || !single(g, sm))
            continue;
        int k = sm->kernel;
        Node *stack[32];
        int sp = 0, absorbed = 0;
        stack[sp++] = sm->in[0];
        while (sp) {
            Node *p = stack[--sp];
            if (!prologue_op(p) || !single(g, p) || !fuse_same_shape(p, sm))
                continue;
            if (!sched_try_merge(g, k, p->kernel)) {
                fuse_note(g, "softmax: %s cannot join %s's row pass (the kernel graph would be cyclic)",
                          fuse_name(g, p), fuse_name(g, sm));
                continue;
            }
            absorbed++;
            if (p->nuses > 1)
                fuse_note(g, "softmax: %s joins %s's row pass but is stored: it has %d consumers",
                          fuse_name(g, p), fuse_name(g, sm), p->nuses);
            for (int j = 0; j < p->nin && sp < 30; j++)
                stack[sp++] = p->in[j];
        }
        sp = 0;
        stack[sp++] = sm;
        while (sp) {
            Node *c = stack[--sp];
            Node **users;
            int nu = ir_users(g, c, &users);
            for (int j = 0; j < nu; j++) {
                Node *u = users[j];
                if (!fuse_is_elementwise(u) || !single(g, u) || !fuse_same_shape(u, sm))
                    continue;
                if (sched_try_merge(g, k, u->kernel) && sp < 30) {
                    stack[sp++] = u;
                    absorbed++;
                }
            }
        }
        Kernel *kr = g->kernels[k];
        kr->kind = KK_ROWWISE;
        kr->note = absorbed ? "softmax with its scale/mask/elementwise neighbours in one pass per row"
                            : "softmax in one pass per row";
    }
    sched_compact(g);
}
