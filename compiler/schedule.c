/*
 * schedule.c - assigns nodes to kernels.
 *
 * Afterwards every node that does work has node->kernel >= 0 and nodes of
 * one kernel are emitted as one loop nest; sources (inputs, weights,
 * constants, caches) and reshapes (a view of contiguous data) have -1.
 * Kernels are numbered in topological order.  Without fusion each working
 * node is its own kernel: the unfused baseline that -O0 keeps forever.
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
}
