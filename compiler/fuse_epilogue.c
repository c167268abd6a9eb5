/*
 * fuse_epilogue.c - GEMM epilogue fusion (CODA).
 *
 * Linear layers that read the same input become one KK_GEMM kernel (the
 * q, k and v projections read h once), and the elementwise ops that
 * consume their outputs join it as an epilogue that runs on the
 * accumulator tile before it is stored: bias add, activation, residual add,
 * scaling, the silu(g) * u of two linears, RoPE on a projection's
 * output, and a per-head RMSNorm of it (Qwen3's q_norm and k_norm: the
 * projection reshaped to [T, heads, hd], rms_norm over hd with a weight
 * [hd]; the tile holds whole heads, so each head's mean square comes from
 * its hd columns of the finished block).  A lone matmul becomes a KK_GEMM
 * of one node the same way.
 *
 * An epilogue node must have the shape of the tile it consumes, and its
 * operands from outside the kernel must be a scalar, a per-column vector
 * [N] or a tensor of the output's own shape (the residual): what a tile can
 * read at its own (row, column) coordinates.  A tile or epilogue value that
 * something outside the kernel also reads is stored as well (the emitter
 * asks kern_is_result).  Every growth step is offered to the GEMM emitter
 * first (emit_gemm_supports, through fuse_gemm_ok): a kernel is only ever
 * one it can write.  Each refusal is noted for --explain.
 *
 * Afterwards every KK_GEMM kernel holds: optionally the norm that produces
 * A (fuse_norm.c), one or more linears reading A (or one matmul), and
 * epilogue nodes that satisfy the rules above.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

static bool single(const Graph *g, const Node *n) {
    return n->kernel >= 0 && g->kernels[n->kernel]->kind == KK_SINGLE;
}

static bool all_ones(const Node *x) {
    for (int d = 0; d < x->rank; d++)
        if (!dim_is_const(x->shape[d]) || x->shape[d].c != 1)
            return false;
    return true;
}

/* A tile node: the kernel's linears/matmul and its epilogue nodes (not the
 * prologue norm). */
static bool tile_node(const Node *n, int k) {
    return n->kernel == k && op_info[n->op].cat != CAT_NORM;
}

/* Whether u can run on the tile of t (a tile node of kernel k); if not,
 * *why says why. */
static bool epilogue_ok(const Graph *g, const Node *u, const Node *t, int k, const char **why) {
    if (!fuse_same_shape(u, t)) {
        *why = "its shape differs from the GEMM output's";
        return false;
    }
    if (u->op == OP_ROPE) {
        if (u->in[0] != t) {
            *why = "it is not rope of the GEMM output";
            return false;
        }
        return true;
    }
    if (!fuse_is_elementwise(u)) {
        *why = fu_format("'%s' is not an elementwise op", op_info[u->op].name);
        return false;
    }
    for (int j = 0; j < u->nin; j++) {
        const Node *x = u->in[j];
        if (x->kernel == k) {
            if (!tile_node(x, k) || !fuse_same_shape(x, u)) {
                *why = fu_format("it reads %s, which is not a tile of this kernel", fuse_name(g, x));
                return false;
            }
            continue;
        }
        bool ok = x->rank == 0 || all_ones(x) || fuse_same_shape(x, u) ||
                  (x->rank == 1 && dim_eq(x->shape[0], u->shape[u->rank - 1]));
        if (!ok) {
            *why = fu_format("operand %s is neither a scalar, a per-column vector nor of the "
                             "output's shape", fuse_name(g, x));
            return false;
        }
    }
    return true;
}

/* Whether the GEMM emitter takes kernel k with x added. */
static bool gemm_with(Graph *g, int k, Node *x) {
    const Kernel *kr = g->kernels[k];
    Node **cand = fu_alloc(sizeof *cand * (size_t)(kr->nnodes + 1));
    memcpy(cand, kr->nodes, sizeof *cand * (size_t)kr->nnodes);
    cand[kr->nnodes] = x;
    return fuse_gemm_ok(g, cand, kr->nnodes + (x ? 1 : 0), KK_GEMM, "epilogue");
}

static int cmp_id(const void *x, const void *y) {
    const Node *a = *(Node *const *)x, *b = *(Node *const *)y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Absorbs epilogue nodes into GEMM kernel k until none is left.  Each sweep
 * visits the kernel's nodes in node order, a node that joins included (it
 * reads a tile node, so it comes after the one being visited): the order a
 * scan of the whole graph would visit them in, at the cost of the kernel. */
/* The model's verdict on u joining GEMM kernel k (it only removes u's
 * traffic and a barrier, so it pays wherever u moves bytes; asked so that
 * --explain shows the estimate, and so that an epilogue that could cost
 * something has its hook). */
static bool joins_pays(Graph *g, const Options *o, int k, Node *u, KernelKind alone, const char *what) {
    const Kernel *kr = g->kernels[k];
    Node **cand = fu_alloc(sizeof *cand * (size_t)(kr->nnodes + 1));
    memcpy(cand, kr->nodes, sizeof *cand * (size_t)kr->nnodes);
    cand[kr->nnodes] = u;
    CostPart parts[2] = {{kr->nodes, kr->nnodes, KK_GEMM}, {&cand[kr->nnodes], 1, alone}};
    return cost_pays(g, o, "epilogue", what, (CostPart){cand, kr->nnodes + 1, KK_GEMM}, parts, 2);
}

static bool epilogue_pays(Graph *g, const Options *o, int k, Node *u, const Node *t) {
    return joins_pays(g, o, k, u, fuse_is_elementwise(u) ? KK_ELEMWISE : KK_SINGLE,
                      fu_format("%s (%s) on the tile of %s", fuse_name(g, u), op_info[u->op].name, fuse_name(g, t)));
}

static int grow_epilogue(Graph *g, const Options *o, int k) {
    int added = 0;
    for (bool again = true; again;) {
        again = false;
        const Kernel *kr = g->kernels[k];
        int n = kr->nnodes, cap = n + 8;
        Node **v = malloc(sizeof *v * (size_t)cap);
        if (!v)
            fu_internal(__FILE__, __LINE__, "out of memory");
        memcpy(v, kr->nodes, sizeof *v * (size_t)n);
        qsort(v, (size_t)n, sizeof *v, cmp_id);
        for (int i = 0; i < n; i++) {
            Node *t = v[i];
            if (!tile_node(t, k))
                continue;
            Node **users;
            int nu = ir_users(g, t, &users);
            for (int j = 0; j < nu; j++) {
                Node *u = users[j];
                const char *why = NULL;
                if (!single(g, u) || (!fuse_is_elementwise(u) && u->op != OP_ROPE))
                    continue;
                if (!epilogue_ok(g, u, t, k, &why)) {
                    fuse_note(g, "epilogue: %s (%s) stays out of the GEMM of %s: %s", fuse_name(g, u),
                              op_info[u->op].name, fuse_name(g, t), why);
                    continue;
                }
                if (!gemm_with(g, k, u))
                    continue;
                if (!sched_can_merge(g, k, u->kernel)) {
                    fuse_note(g, "epilogue: %s (%s) cannot join the GEMM of %s (a path between "
                                 "them runs through another kernel)",
                              fuse_name(g, u), op_info[u->op].name, fuse_name(g, t));
                    continue;
                }
                if (!epilogue_pays(g, o, k, u, t))
                    continue;
                sched_merge(g, k, u->kernel);
                added++;
                again = true;
                /* u joins the nodes still to visit, in order */
                if (n == cap) {
                    cap *= 2;
                    v = realloc(v, sizeof *v * (size_t)cap);
                    if (!v)
                        fu_internal(__FILE__, __LINE__, "out of memory");
                }
                int at = n;
                while (at > i + 1 && v[at - 1]->id > u->id) {
                    v[at] = v[at - 1];
                    at--;
                }
                v[at] = u;
                n++;
            }
        }
        free(v);
    }
    return added;
}

/* The per-head rms_norm reading a reshape of tile node t (alone in its
 * kernel: the norm pass left it a one-node row pass), or NULL. */
static Node *head_norm_of(Graph *g, Node *t) {
    Node **users;
    int nu = ir_users(g, t, &users);
    for (int i = 0; i < nu; i++) {
        Node *r = users[i], **ru;
        if (r->op != OP_RESHAPE || r->rank != 3)
            continue;
        int nr = ir_users(g, r, &ru);
        for (int j = 0; j < nr; j++) {
            Node *n = ru[j];
            if (n->op == OP_RMS_NORM && n->in[0] == r && n->kernel >= 0 && g->kernels[n->kernel]->nnodes == 1 &&
                (g->kernels[n->kernel]->kind == KK_SINGLE || g->kernels[n->kernel]->kind == KK_ROWWISE))
                return n;
        }
    }
    return NULL;
}

/* Per-head norms of the kernel's last values join it (emit_gemm.c applies
 * them to each finished block, in place, before it leaves the cache). */
static int grow_head_norms(Graph *g, const Options *o, int k) {
    int added = 0;
    for (int i = 0; i < g->kernels[k]->nnodes; i++) {
        Node *t = g->kernels[k]->nodes[i], *n;
        if (!tile_node(t, k) || !(n = head_norm_of(g, t)))
            continue;
        const char *what = fu_format("%s (rms_norm over each %lld-wide head of %s)", fuse_name(g, n),
                                     (long long)n->shape[2].c, fuse_name(g, t));
        if (!gemm_with(g, k, n)) {
            fuse_note(g, "epilogue: %s stays a row pass", what);
            continue;
        }
        /* alone it is a row pass that reads and writes t once more */
        if (!joins_pays(g, o, k, n, KK_ROWWISE, what))
            continue;
        if (!sched_try_merge(g, k, n->kernel)) {
            fuse_note(g, "epilogue: %s cannot join the GEMM (a path between them runs through "
                         "another kernel)", what);
            continue;
        }
        fuse_note(g, "epilogue: %s joins the GEMM: each head's mean square from its columns of the "
                     "finished tile, normalised in place; no separate pass", what);
        added++;
    }
    return added;
}

/* Names of a kernel's epilogue ops for its note: "add, silu, mul". */
static const char *epilogue_names(const Graph *g, int k) {
    Buf b = {0};
    for (int i = 0; i < g->kernels[k]->nnodes; i++) {
        const Node *n = g->kernels[k]->nodes[i];
        OpCat c = op_info[n->op].cat;
        if ((c == CAT_NORM && n->in[0]->op != OP_RESHAPE) || c == CAT_MATMUL)
            continue;
        buf_printf(&b, "%s%s%s", b.len ? ", " : "", op_info[n->op].name, c == CAT_NORM ? " per head" : "");
    }
    const char *s = b.len ? fu_strdup(b.data) : "";
    free(b.data);
    return s;
}

void pass_fuse_epilogue(Graph *g, const Options *o) {
    if (!fuse_pass_on(g, o, FUSE_EPILOGUE, "epilogue"))
        return;
    if (!fuse_gemm_kinds())
        return;
    ir_recount(g);
    /* linears sharing their input, and lone matmuls, become KK_GEMM */
    for (int i = 0; i < g->nnodes; i++) {
        Node *l = g->nodes[i];
        if (op_info[l->op].cat != CAT_MATMUL || !single(g, l))
            continue;
        int k = l->kernel;
        if (!gemm_with(g, k, NULL))
            continue;
        g->kernels[k]->kind = KK_GEMM;
        if (l->op != OP_LINEAR)
            continue;
        Node **users;
        int nu = ir_users(g, l->in[0], &users);
        for (int j = 0; j < nu; j++) {
            Node *s = users[j];
            if (s == l || s->op != OP_LINEAR || s->in[0] != l->in[0] || !single(g, s))
                continue;
            if (!gemm_with(g, k, s))
                continue;
            if (!sched_try_merge(g, k, s->kernel))
                fuse_note(g, "epilogue: linears %s and %s read the same input but cannot share a "
                             "kernel (a path between them runs through another kernel)",
                          fuse_name(g, l), fuse_name(g, s));
        }
    }
    for (int k = 0; k < g->nkernels; k++) {
        Kernel *kr = g->kernels[k];
        if (kr->kind != KK_GEMM || kr->nnodes == 0)
            continue;
        int nlin = 0;
        const Node *first = NULL;
        for (int i = 0; i < kr->nnodes; i++)
            if (op_info[kr->nodes[i]->op].cat == CAT_MATMUL) {
                nlin++;
                first = first ? first : kr->nodes[i];
            }
        int added = grow_epilogue(g, o, k);
        added += grow_head_norms(g, o, k);
        kr = g->kernels[k];
        const char *what = nlin > 1 ? fu_format("%d linears sharing %s", nlin, fuse_name(g, first->in[0]))
                                    : fu_format("%s %s", op_info[first->op].name, fuse_name(g, first));
        if (added)
            what = fu_format("%s; epilogue on the accumulator tile: %s", what, epilogue_names(g, k));
        kr->note = kr->note ? fu_format("%s; %s", kr->note, what) : what;
    }
    sched_compact(g);
}
