/*
 * explain.c - `fusec --explain FILE.fdl`: what fusion did, and why not more.
 *
 * For every kernel of the fused schedule: its kind, the operators it
 * absorbed (each node with its DSL name), which of them it stores (read by
 * another kernel, or a block output: everything else stays in registers or
 * cache), and the pass's own summary.  Then every decision the passes
 * recorded with fuse_note: rewrites of primitive spellings, and each
 * refused fusion with its reason ("h has 2 consumers").  The first line
 * compares the kernel count with the unfused (-O0) schedule.
 *
 * The "kernel N: kind [ops]" lines are a stable summary: tests compare them
 * between blocks that should fuse the same way (attention written with
 * primitives vs the attention op).
 */
#include "fusec.h"

#include <string.h>

static const char *const kind_names[] = {"single", "elementwise", "rowwise", "gemm", "attention", "mlp"};

static const char *kind_name(KernelKind k) {
    return (int)k >= 0 && (size_t)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "?";
}

/* Kernels that compute something (output copies and views have none). */
static int working_kernels(const Graph *g) {
    return g ? g->nkernels : 0;
}

/* Whether n is stored: read by a node of another kernel (through views), or
 * a block output. */
static bool read_outside(const Graph *g, const Node *n, int kernel) {
    Node **users;
    int nu = ir_users(g, n, &users);
    for (int i = 0; i < nu; i++) {
        const Node *c = users[i];
        if (c->op == OP_OUTPUT)
            return true;
        if (c->op == OP_RESHAPE) {
            if (read_outside(g, c, kernel))
                return true;
            continue;
        }
        if (c->kernel != kernel)
            return true;
    }
    return false;
}

static bool stored(const Graph *g, const Node *n) {
    return n->op == OP_APPEND || read_outside(g, n, n->kernel); /* an append writes its cache rows */
}

static const char *node_text(const Node *n) {
    if (n->label)
        return fu_format("%%%d %s (%s)", n->id, op_info[n->op].name, n->label);
    return fu_format("%%%d %s", n->id, op_info[n->op].name);
}

void explain_print(FILE *out, const Graph *g, const Graph *unfused) {
    fprintf(out, "block %s: %d kernel%s", g->name, working_kernels(g), working_kernels(g) == 1 ? "" : "s");
    if (unfused)
        fprintf(out, " (unfused: %d)", working_kernels(unfused));
    fprintf(out, "\n\n");
    for (int k = 0; k < g->nkernels; k++) {
        const Kernel *kr = g->kernels[k];
        fprintf(out, "kernel %d: %s [", k, kind_name(kr->kind));
        for (int i = 0; i < kr->nnodes; i++)
            fprintf(out, "%s%s", i ? ", " : "", op_info[kr->nodes[i]->op].name);
        fprintf(out, "]\n");
        if (kr->nnodes > 1) {
            fprintf(out, "    absorbs:");
            for (int i = 0; i < kr->nnodes; i++)
                fprintf(out, "%s %s", i ? "," : "", node_text(kr->nodes[i]));
            fprintf(out, "\n");
        } else {
            fprintf(out, "    computes: %s\n", node_text(kr->nodes[0]));
        }
        int nst = 0;
        for (int i = 0; i < kr->nnodes; i++)
            if (stored(g, kr->nodes[i]))
                fprintf(out, "%s %s", nst++ ? "," : "    stores:", node_text(kr->nodes[i]));
        if (nst)
            fprintf(out, "\n");
        if (kr->nnodes > nst && kr->nnodes > 1)
            fprintf(out, "    keeps in registers/cache: %d intermediate%s\n", kr->nnodes - nst,
                    kr->nnodes - nst == 1 ? "" : "s");
        if (kr->note)
            fprintf(out, "    why: %s\n", kr->note);
    }
    fprintf(out, "\ndecisions:\n");
    if (g->nfuse_notes == 0)
        fprintf(out, "    (none%s)\n", g->nkernels && unfused && g->nkernels == unfused->nkernels
                                           ? ": fusion is off or found nothing to fuse" : "");
    for (int i = 0; i < g->nfuse_notes; i++)
        fprintf(out, "    %s\n", g->fuse_notes[i]);
}
