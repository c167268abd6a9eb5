/*
 * fuse_elementwise.c - elementwise and broadcast chains become one loop.
 *
 * Runs last: the GEMM, row and attention passes have taken the elementwise
 * ops they can hold as prologues and epilogues, and what is left are chains
 * such as the final residual add, or a whole block of activations when the
 * other passes are off.  Every unary or binary op still on its own joins
 * the kernel of each operand that is itself such an op (or a KK_ELEMWISE
 * kernel) of the same output shape; operands of other shapes are read with
 * broadcasting inside the one loop.
 *
 * The consumer check (llama.cpp's ggml_can_fuse): fusing a producer into its
 * consumer's loop removes its store only when the consumer is its one
 * reader.  A producer with another consumer outside the group, or that is
 * a block output, is still computed in the loop and stored, and --explain
 * says so; when the other consumers could recompute it from its own inputs
 * for fewer bytes than storing and re-reading it costs, --explain says that
 * too (the estimate lives in recompute_note).
 *
 * Afterwards every kernel of kind KK_ELEMWISE holds unary/binary nodes of
 * one shape, connected by producer-consumer edges.
 */
#include "fusec.h"

#include <string.h>

static bool elementwise_kernel(const Graph *g, const Node *n) {
    if (n->kernel < 0 || !fuse_is_elementwise(n))
        return false;
    KernelKind kind = g->kernels[n->kernel]->kind;
    return kind == KK_SINGLE || kind == KK_ELEMWISE;
}

/* Elements of n, counting each symbolic dim as 1024: only for comparing. */
static double rough_numel(const Node *n) {
    double e = 1;
    for (int d = 0; d < n->rank; d++) {
        double v = (double)n->shape[d].c;
        for (int s = 0; s < FU_MAX_SYMS; s++)
            v += 1024.0 * n->shape[d].k[s];
        e *= v;
    }
    return e;
}

/* p is stored because `others` consumers outside the group read it too.
 * Recomputing it there instead would read p's own operands in each of
 * those consumers; storing costs one write and one read per consumer. */
static void recompute_note(Graph *g, const Node *p, int others) {
    double self = rough_numel(p), operands = 0;
    for (int j = 0; j < p->nin; j++)
        if (p->in[j]->op != OP_CONST)
            operands += rough_numel(p->in[j]);
    double store = self * (1 + others), recompute = operands * others;
    if (recompute < store)
        fuse_note(g, "elementwise: recomputing %s (%s) in its other consumer%s would move fewer "
                     "bytes than storing it (%.3g vs %.3g elements at 1024 per symbol)",
                  fuse_name(g, p), op_info[p->op].name, others > 1 ? "s" : "", recompute, store);
}

void pass_fuse_elementwise(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_ELEMENTWISE, "elementwise"))
        return;
    ir_recount(g);
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (!elementwise_kernel(g, n))
            continue;
        for (int j = 0; j < n->nin; j++) {
            Node *p = n->in[j];
            if (!elementwise_kernel(g, p) || p->kernel == n->kernel)
                continue;
            if (!fuse_same_shape(p, n)) {
                fuse_note(g, "elementwise: %s (%s) and %s (%s) have different shapes: separate loops",
                          fuse_name(g, p), op_info[p->op].name, fuse_name(g, n), op_info[n->op].name);
                continue;
            }
            int from = p->kernel, into = n->kernel;
            if (!sched_try_merge(g, into, from)) {
                fuse_note(g, "elementwise: %s cannot join %s's loop (a path between them runs "
                             "through another kernel)", fuse_name(g, p), fuse_name(g, n));
                continue;
            }
            g->kernels[into]->kind = KK_ELEMWISE;
        }
    }
    /* The consumer check, once the groups are final. */
    for (int i = 0; i < g->nnodes; i++) {
        Node *p = g->nodes[i];
        if (p->kernel < 0 || g->kernels[p->kernel]->kind != KK_ELEMWISE)
            continue;
        Node **users;
        int nu = ir_users(g, p, &users), inside = 0, outside = 0;
        bool output = false;
        for (int u = 0; u < nu; u++) {
            output |= users[u]->op == OP_OUTPUT;
            if (users[u]->kernel == p->kernel)
                inside++;
            else if (users[u]->op != OP_OUTPUT)
                outside++;
        }
        if (!inside || (!outside && !output))
            continue;
        fuse_note(g, "elementwise: %s is stored although its loop also consumes it: %s",
                  fuse_name(g, p), output ? "it is a block output"
                                       : fu_format("%s has %d consumers", fuse_name(g, p), nu));
        if (outside)
            recompute_note(g, p, outside);
    }
    for (int k = 0; k < g->nkernels; k++)
        if (g->kernels[k]->kind == KK_ELEMWISE && g->kernels[k]->nnodes > 1)
            g->kernels[k]->note = "elementwise chain in one loop";
    sched_compact(g);
}
