/*
 * verify.c - the IR verifier, run after sema and after every pass.
 *
 * It checks what every pass may rely on: node ids are dense and in
 * topological order, operand counts fit the op table, each operand is a node
 * of this graph, every type is what shape.c derives from the operands, the
 * interface lists hold nodes of the right ops, names are unique, the
 * kernel numbers are in range, and each kernel holds what its kind allows.
 * A failure is a bug in the pass named, so it is reported as an internal
 * error together with the IR dump.
 */
#include "fusec.h"

#include <string.h>

static bool bad(char *why, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static bool bad(char *why, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return false;
}

static bool check_list(const Graph *g, Node *const *list, int n, Op op, const char *what, char *why,
                       size_t len) {
    StrMap *names = strmap_new();
    for (int i = 0; i < n; i++) {
        const Node *x = list[i];
        if (x->op != op)
            return bad(why, len, "%s list holds %%%d, a '%s'", what, x->id, op_info[x->op].name);
        if (!x->name)
            return bad(why, len, "%s %%%d has no name", what, x->id);
        if (x->id < 0 || x->id >= g->nnodes || g->nodes[x->id] != x)
            return bad(why, len, "%s '%s' is not in the graph", what, x->name);
        if (strmap_put(names, x->name, (void *)x))
            return bad(why, len, "two %ss are named '%s'", what, x->name);
    }
    return true;
}

/* The node mix each kernel kind promises its emitter (fusec.h, "Kernels";
 * emit_gemm_supports checks the GEMM kinds in detail). */
static bool kind_ok(const Kernel *kr, char *why, size_t len) {
    int rows = 0, att = 0, mm = 0;
    for (int j = 0; j < kr->nnodes; j++) {
        const Node *n = kr->nodes[j];
        bool ew = op_info[n->op].cat == CAT_UNARY || op_info[n->op].cat == CAT_BINARY;
        rows += n->op == OP_RMS_NORM || n->op == OP_LAYER_NORM || n->op == OP_SOFTMAX;
        att += n->op == OP_ATTENTION;
        mm += op_info[n->op].cat == CAT_MATMUL;
        bool fits = true;
        switch (kr->kind) {
        case KK_SINGLE: fits = kr->nnodes == 1; break;
        case KK_ELEMWISE: fits = ew; break;
        case KK_ROWWISE: fits = ew || n->op == OP_CAUSAL_MASK || op_info[n->op].cat == CAT_NORM || n->op == OP_SOFTMAX; break;
        case KK_ATTENTION:
            fits = n->op == OP_ATTENTION || n->op == OP_ROPE || n->op == OP_APPEND || n->op == OP_SLICE;
            break;
        case KK_GEMM: case KK_MLP:
            fits = ew || mm || n->op == OP_ROPE || op_info[n->op].cat == CAT_NORM;
            break;
        }
        if (!fits)
            return bad(why, len, "kernel %d of kind %d holds %%%d (%s)", kr->id, (int)kr->kind, n->id,
                       op_info[n->op].name);
    }
    if ((kr->kind == KK_ROWWISE && rows != 1) || (kr->kind == KK_ATTENTION && att != 1) ||
        ((kr->kind == KK_GEMM || kr->kind == KK_MLP) && mm == 0))
        return bad(why, len, "kernel %d of kind %d lacks its row op, attention or product", kr->id,
                   (int)kr->kind);
    return true;
}

bool ir_check(const Graph *g, char *why, size_t len) {
    int counts[OP_COUNT] = {0};
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->id != i)
            return bad(why, len, "node at position %d has id %%%d", i, n->id);
        if (n->op < 0 || n->op >= OP_COUNT)
            return bad(why, len, "%%%d has an invalid op", i);
        counts[n->op]++;
        if (n->nin < op_info[n->op].min_in || n->nin > op_info[n->op].max_in)
            return bad(why, len, "%%%d (%s) has %d operands", i, op_info[n->op].name, n->nin);
        for (int j = 0; j < n->nin; j++) {
            const Node *x = n->in[j];
            if (!x || x->id < 0 || x->id >= i || g->nodes[x->id] != x)
                return bad(why, len, "%%%d (%s): operand %d is not an earlier node", i, op_info[n->op].name, j);
            if (x->op == OP_OUTPUT)
                return bad(why, len, "%%%d (%s) reads an output node", i, op_info[n->op].name);
        }
        if (n->kernel != -1 && (n->kernel < 0 || n->kernel >= g->nkernels))
            return bad(why, len, "%%%d has kernel %d but the graph has %d kernels", i, n->kernel, g->nkernels);
        /* re-derive the type and compare */
        Node copy = *n;
        char reason[256];
        if (!ir_infer(&copy, g, reason, sizeof reason))
            return bad(why, len, "%%%d (%s): %s", i, op_info[n->op].name, reason);
        bool same = copy.dtype == n->dtype && copy.rank == n->rank;
        for (int d = 0; same && d < n->rank; d++)
            same = dim_eq(copy.shape[d], n->shape[d]);
        if (!same)
            return bad(why, len, "%%%d (%s): stored type differs from its type rule", i, op_info[n->op].name);
    }
    /* the kernel lists and node->kernel agree (when scheduled) */
    if (g->kernels) {
        int placed = 0;
        for (int k = 0; k < g->nkernels; k++) {
            const Kernel *kr = g->kernels[k];
            if (!kr || kr->id != k || kr->nnodes < 1)
                return bad(why, len, "kernel %d is missing, misnumbered or empty", k);
            for (int j = 0; j < kr->nnodes; j++) {
                const Node *n = kr->nodes[j];
                if (n->id < 0 || n->id >= g->nnodes || g->nodes[n->id] != n || n->kernel != k)
                    return bad(why, len, "kernel %d lists %%%d, which is not in it", k, n->id);
                if (j && kr->nodes[j - 1]->id >= n->id)
                    return bad(why, len, "kernel %d's nodes are not in topological order", k);
            }
            placed += kr->nnodes;
            if (!kind_ok(kr, why, len))
                return false;
        }
        int in_some = 0;
        for (int i = 0; i < g->nnodes; i++)
            in_some += g->nodes[i]->kernel >= 0;
        if (placed != in_some)
            return bad(why, len, "%d nodes have a kernel but the kernels list %d", in_some, placed);
    }
    if (counts[OP_INPUT] != g->ninputs || counts[OP_WEIGHT] != g->nweights ||
        counts[OP_CACHE] != g->ncaches || counts[OP_OUTPUT] != g->noutputs)
        return bad(why, len, "interface lists do not match the graph's source and output nodes");
    return check_list(g, g->inputs, g->ninputs, OP_INPUT, "input", why, len) &&
           check_list(g, g->weights, g->nweights, OP_WEIGHT, "weight", why, len) &&
           check_list(g, g->caches, g->ncaches, OP_CACHE, "cache", why, len) &&
           check_list(g, g->outputs, g->noutputs, OP_OUTPUT, "output", why, len);
}

void ir_verify(const Graph *g, const char *after_pass) {
    char why[512];
    if (ir_check(g, why, sizeof why))
        return;
    fprintf(stderr, "fusec: internal error: IR verification failed after '%s': %s\n", after_pass, why);
    ir_print(stderr, g);
    fu_internal(__FILE__, __LINE__, "the '%s' pass produced an invalid graph", after_pass);
}
