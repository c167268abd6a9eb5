/*
 * fold.c - weight-only subexpressions, computed once when weights are bound.
 *
 * An elementwise op whose operands are only weights, constants and other
 * such ops (Gemma's `1 + w` norm weights, a scale folded into a weight)
 * gives the same values at every call.  This pass takes such nodes out of
 * the schedule (node->folded, kernel -1): emit_c.c gives the weights struct
 * an array per folded node and NAME_bind (or NAME_fold) computes them,
 * scalar C in node order; the kernels read them like weights.  Only f32
 * weights (and bf16/f16 ones read as f32: OP_CONVERT), constant shapes
 * and the ops below fold, and at most
 * FOLD_MAX_FLOATS floats per block (the arrays live in the struct, which a
 * caller may keep on its stack); the rest stays per-call kernels, and
 * --explain says why.  -O0 folds nothing: the unfused baseline still
 * computes them at every call, so fused and -O0 check each other;
 * FUSEC_FOLD=0 in the environment turns folding off at -O1 too.
 *
 * Afterwards: a folded node reads only weights, constants and folded nodes,
 * belongs to no kernel, and the kernels that read it are unchanged.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

#define FOLD_MAX_FLOATS (1 << 16)

bool fold_op(Op op) {
    switch (op) {
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_RSQRT: case OP_RECIP: case OP_TANH:
    case OP_SIGMOID: case OP_RELU:
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAXIMUM: case OP_MINIMUM:
    case OP_CONVERT:
        return true;
    default:
        return false;
    }
}

static int64_t const_numel(const Node *n) {
    int64_t v = 1;
    for (int d = 0; d < n->rank; d++) {
        if (!dim_is_const(n->shape[d]))
            return -1;
        v *= n->shape[d].c;
    }
    return v;
}

void pass_fold_weights(Graph *g, const Options *o) {
    const char *env = getenv("FUSEC_FOLD");
    if (o->opt_level <= 0 || (env && strcmp(env, "0") == 0))
        return;
    int64_t total = 0;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (!fold_op(n->op) || n->dtype != DT_F32 || n->kernel < 0)
            continue;
        bool ok = true, weight = false;
        for (int j = 0; j < n->nin && ok; j++) {
            const Node *x = n->in[j];
            /* convert: a bf16/f16 weight read as f32 (a bf16 checkpoint's norm weight) */
            bool half = n->op == OP_CONVERT && (x->dtype == DT_BF16 || x->dtype == DT_F16);
            ok = (x->dtype == DT_F32 || half) && (x->op == OP_WEIGHT || x->op == OP_CONST || x->folded);
            weight |= x->op == OP_WEIGHT || x->folded;
        }
        if (!ok || !weight)
            continue;
        int64_t numel = const_numel(n);
        if (numel < 0)
            continue;
        if (total + numel > FOLD_MAX_FLOATS) {
            fuse_note(g, "fold: %s (%s of weights) is computed at every call: the folded values would "
                         "pass %d floats", fuse_name(g, n), op_info[n->op].name, FOLD_MAX_FLOATS);
            continue;
        }
        total += numel;
        Kernel *kr = g->kernels[n->kernel];
        FU_ASSERT(kr->nnodes == 1 && kr->nodes[0] == n);
        kr->nnodes = 0;
        n->kernel = -1;
        n->folded = true;
        Buf b = {0};
        for (int j = 0; j < n->nin; j++)
            buf_printf(&b, "%s%s", j ? ", " : "",
                       n->in[j]->op == OP_CONST ? fu_format("%g", n->in[j]->f[0]) : fuse_name(g, n->in[j]));
        fuse_note(g, "fold: %s = %s(%s) (%lld floats) is computed once when the weights are bound, not at "
                     "every call", fuse_name(g, n), op_info[n->op].name, b.data, (long long)numel);
        free(b.data);
    }
    sched_compact(g);
}
