/*
 * schedule.c - assigns nodes to kernels.
 *
 * Afterwards every node that does work has node->kernel >= 0, g->kernels
 * lists each kernel's nodes in topological order, and kernels are numbered
 * in execution order; sources (inputs, weights, constants, caches) and
 * reshapes (a view of contiguous data) have -1.  This pass makes every
 * working node its own KK_SINGLE kernel: the unfused baseline that -O0
 * keeps forever, and the starting point the fusion passes merge from.
 */
#include "fusec.h"

void pass_schedule(Graph *g, const Options *o) {
    (void)o;
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        bool view = op_info[n->op].cat == CAT_SOURCE || n->op == OP_RESHAPE;
        n->kernel = view ? -1 : k++;
    }
    g->nkernels = k;
    g->kernels = fu_alloc(sizeof(Kernel *) * (size_t)(k ? k : 1));
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->kernel < 0)
            continue;
        Kernel *kr = fu_alloc(sizeof *kr);
        kr->id = n->kernel;
        kr->kind = KK_SINGLE;
        kr->nnodes = 1;
        kr->nodes = fu_alloc(sizeof(Node *));
        kr->nodes[0] = n;
        g->kernels[n->kernel] = kr;
    }
}
