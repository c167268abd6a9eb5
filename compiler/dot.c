/*
 * dot.c - `fusec --emit=dot FILE.fdl`: the graph before and after fusion,
 * for Graphviz (`dot -Tsvg`).
 *
 * One digraph with two clusters side by side: "before" is the unfused
 * graph (-O0: every op its own kernel), "after" the fused one, where every
 * kernel is a sub-cluster labelled with its kind and the nodes it holds.
 * Sources (inputs, weights, caches, constants) are drawn as plain boxes
 * outside the kernels; edges that leave a kernel carry a stored tensor,
 * edges inside one do not, so the picture shows the traffic fusion removed.
 * Output is deterministic (node order), and every label is escaped.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

static const char *esc(const char *s) {
    Buf b = {0};
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_printf(&b, "\\%c", *s);
        else if (*s == '\n')
            buf_puts(&b, "\\n");
        else
            buf_printf(&b, "%c", *s);
    }
    const char *r = b.len ? fu_strdup(b.data) : "";
    free(b.data);
    return r;
}

static const char *label(const Graph *g, const Node *n) {
    Buf b = {0};
    buf_printf(&b, "%%%d %s", n->id, op_info[n->op].name);
    if (n->name)
        buf_printf(&b, " \"%s\"", n->name);
    else if (n->label)
        buf_printf(&b, " (%s)", n->label);
    buf_puts(&b, "\n");
    ir_type_str(&b, n, g);
    const char *r = esc(b.data);
    free(b.data);
    return r;
}

static const char *const kinds[] = {"single", "elementwise", "rowwise", "gemm", "attention", "mlp"};
static const char *const colors[] = {"white", "lightyellow", "lightcyan", "lightpink", "palegreen", "plum"};

static void nodes_of(FILE *out, const Graph *g, const char *pre, const Node *n) {
    bool src = op_info[n->op].cat == CAT_SOURCE;
    fprintf(out, "    %s%d [label=\"%s\"%s];\n", pre, n->id, label(g, n),
            src ? ", shape=box, style=rounded, color=gray40" : n->op == OP_OUTPUT ? ", shape=box" : "");
}

static void one(FILE *out, const Graph *g, const char *pre, const char *title, bool clusters) {
    fprintf(out, "  subgraph cluster_%s {\n    label=\"%s: %s, %d kernels\";\n", pre, esc(title),
            esc(g->name), g->nkernels);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kernel < 0 || !clusters)
            nodes_of(out, g, pre, g->nodes[i]);
    if (clusters)
        for (int k = 0; k < g->nkernels; k++) {
            const Kernel *kr = g->kernels[k];
            fprintf(out, "    subgraph cluster_%s_k%d {\n", pre, k);
            fprintf(out, "      label=\"kernel %d: %s\"; style=filled; fillcolor=%s;\n", k,
                    kinds[kr->kind], colors[kr->kind]);
            for (int i = 0; i < kr->nnodes; i++) {
                fprintf(out, "  ");
                nodes_of(out, g, pre, kr->nodes[i]);
            }
            fprintf(out, "    }\n");
        }
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            const Node *x = n->in[j];
            bool inside = clusters && n->kernel >= 0 && n->kernel == x->kernel;
            fprintf(out, "    %s%d -> %s%d%s;\n", pre, x->id, pre, n->id, inside ? " [style=dashed]" : "");
        }
    }
    fprintf(out, "  }\n");
}

void dot_print(FILE *out, const Graph *before, const Graph *after) {
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
            esc(after ? after->name : before->name));
    if (before)
        one(out, before, "b", "before fusion", false);
    if (after)
        one(out, after, "a", "after fusion", true);
    fprintf(out, "}\n");
}
