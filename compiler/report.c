/*
 * report.c - `fusec --emit=report FILE.fdl --dim T=512 [--dim P=1024]`:
 * a roofline view of the schedule, fused and unfused.
 *
 * The cost model is the compulsory traffic of each kernel: every tensor it
 * reads from outside itself is read from memory once, every result (read by
 * another kernel, or a block output) is written once, and whatever stays
 * inside the kernel costs nothing.  That is exactly what fusion changes, so
 * the difference of the totals is the traffic fusion saves; it ignores
 * re-reads that blocking does not avoid (a GEMM re-reading A per panel of
 * B), which are the same fused or not.  Special cases: a column slice read
 * inside a kernel reads only its columns; an append writes the new rows;
 * reading the cache an append extends reads all P + T rows, even inside
 * the kernel that appended (attention streams the cache from memory).
 *
 * FLOPs per op: elementwise ops and transcendental functions count 1 per
 * element, reductions 1 per input element, norms 4 (rms) or 7 (layer) per
 * element, softmax 5, rope 3, linear 2*in per output (+1 with a bias),
 * matmul 2*K per output, attention (4*hd + 5) per visible (query, key)
 * pair and head (causal attention sees only the lower-right triangle).
 * Intensity is FLOPs per byte moved.
 */
#include "fusec.h"

#include <string.h>

typedef struct Cost {
    double flops, rd, wr;
} Cost;

static double numel(const Node *n, const int64_t *syms) {
    double e = 1;
    for (int d = 0; d < n->rank; d++)
        e *= (double)dim_eval(n->shape[d], syms);
    return e;
}

static double bytes(const Node *n, const int64_t *syms) { return 4.0 * numel(n, syms); }

/* The node whose memory n is (through reshape views). */
static const Node *root(const Node *n) {
    while (n->op == OP_RESHAPE)
        n = n->in[0];
    return n;
}

static double node_flops(const Node *n, const int64_t *syms) {
    double e = numel(n, syms);
    switch (op_info[n->op].cat) {
    case CAT_UNARY:
    case CAT_BINARY:
        return e;
    case CAT_REDUCE:
        return numel(n->in[0], syms);
    case CAT_NORM:
        return (n->op == OP_RMS_NORM ? 4.0 : 7.0) * e;
    case CAT_SOFTMAX:
        return (n->op == OP_SOFTMAX ? 5.0 : 1.0) * e;
    case CAT_ROPE:
        return 3.0 * e;
    case CAT_MATMUL: {
        const Node *a = n->in[0];
        double K = (double)dim_eval(a->shape[a->rank - 1], syms);
        return 2.0 * K * e + (n->op == OP_LINEAR && n->nin > 2 ? e : 0.0);
    }
    case CAT_ATTENTION: {
        double T = (double)dim_eval(n->in[0]->shape[0], syms);
        double S = (double)dim_eval(n->in[1]->shape[0], syms), pairs = T * S;
        if (n->i[3]) {
            /* query t sees keys [0, t + S - T] */
            pairs = 0;
            for (double t = 0; t < T; t++) {
                double v = t + S - T + 1;
                pairs += v < 0 ? 0 : v > S ? S : v;
            }
        }
        return pairs * (double)n->i[0] * (4.0 * (double)n->i[2] + 5.0);
    }
    default:
        return 0.0;
    }
}

/* The bytes of x a node of kernel k reads, or 0 when x is inside k. */
static double read_bytes(const Node *c, const Node *x, int k, const int64_t *syms) {
    const Node *r = root(x);
    if (r->op == OP_APPEND)
        return bytes(r, syms);            /* the cache, P + T rows */
    if (r->kernel == k && k >= 0)
        return 0.0;
    if (r->op == OP_CONST)
        return 0.0;
    if (c->op == OP_SLICE && c->kernel == k)
        return bytes(c, syms);            /* only the slice's columns */
    return bytes(r, syms);
}

static bool is_result(const Graph *g, const Node *n) {
    Node **users;
    int nu = ir_users(g, n, &users);
    for (int i = 0; i < nu; i++) {
        const Node *c = users[i];
        if (c->op == OP_OUTPUT || (c->op == OP_RESHAPE ? is_result(g, c) : c->kernel != n->kernel))
            return true;
    }
    return false;
}

static Cost kernel_cost(const Graph *g, const Kernel *kr, const int64_t *syms) {
    Cost c = {0, 0, 0};
    /* each outside tensor once per kernel (slices of one source add up) */
    const Node **seen = fu_alloc(sizeof *seen * (size_t)(3 * kr->nnodes + 1));
    int nseen = 0;
    for (int i = 0; i < kr->nnodes; i++) {
        const Node *n = kr->nodes[i];
        c.flops += node_flops(n, syms);
        for (int j = 0; j < n->nin; j++) {
            if (n->op == OP_APPEND && j == 0)
                continue;                 /* appending does not read the cache */
            const Node *x = n->in[j];
            double b = read_bytes(n, x, kr->id, syms);
            if (b == 0)
                continue;
            bool dup = false;
            for (int s = 0; s < nseen && !dup; s++)
                dup = seen[s] == root(x) && n->op != OP_SLICE;
            if (dup)
                continue;
            if (n->op != OP_SLICE)
                seen[nseen++] = root(x);
            c.rd += b;
        }
        if (n->op == OP_APPEND)
            c.wr += bytes(n->in[1], syms);
        else if (is_result(g, n))
            c.wr += bytes(n, syms);
    }
    return c;
}

static const char *kind_name(KernelKind k) {
    static const char *const names[] = {"single", "elementwise", "rowwise", "gemm", "attention", "mlp"};
    return names[k];
}

static Cost totals(const Graph *g, const int64_t *syms) {
    Cost t = {0, 0, 0};
    for (int k = 0; k < g->nkernels; k++) {
        Cost c = kernel_cost(g, g->kernels[k], syms);
        t.flops += c.flops;
        t.rd += c.rd;
        t.wr += c.wr;
    }
    return t;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

void report_print(FILE *out, const Graph *g, const Graph *unfused, const int64_t *syms) {
    fprintf(out, "report: block %s", g->name);
    for (int s = 0; s < g->nsyms; s++)
        fprintf(out, "%s%s=%lld", s ? ", " : " at ", g->sym_names[s], (long long)syms[s]);
    fprintf(out, " (f32 and i32: 4 bytes per element; compulsory traffic, docs/fusion.md)\n\n");
    fprintf(out, "%-6s %-11s %16s %16s %16s %9s  %s\n", "kernel", "kind", "FLOPs", "bytes read",
            "bytes written", "FLOP/B", "ops");
    for (int k = 0; k < g->nkernels; k++) {
        const Kernel *kr = g->kernels[k];
        Cost c = kernel_cost(g, kr, syms);
        fprintf(out, "%-6d %-11s %16.0f %16.0f %16.0f %9.2f  ", k, kind_name(kr->kind), c.flops, c.rd,
                c.wr, ratio(c.flops, c.rd + c.wr));
        for (int i = 0; i < kr->nnodes; i++)
            fprintf(out, "%s%s", i ? "," : "", op_info[kr->nodes[i]->op].name);
        fprintf(out, "\n");
    }
    Cost f = totals(g, syms);
    fprintf(out, "\n%-8s %8s %16s %16s %16s %16s %9s\n", "", "kernels", "FLOPs", "bytes read",
            "bytes written", "bytes moved", "FLOP/B");
    fprintf(out, "%-8s %8d %16.0f %16.0f %16.0f %16.0f %9.2f\n", "fused", g->nkernels, f.flops, f.rd,
            f.wr, f.rd + f.wr, ratio(f.flops, f.rd + f.wr));
    if (unfused) {
        Cost u = totals(unfused, syms);
        fprintf(out, "%-8s %8d %16.0f %16.0f %16.0f %16.0f %9.2f\n", "unfused", unfused->nkernels,
                u.flops, u.rd, u.wr, u.rd + u.wr, ratio(u.flops, u.rd + u.wr));
        double saved = (u.rd + u.wr) - (f.rd + f.wr);
        fprintf(out, "\nsaved: %.0f bytes (%.1f MiB, %.1f%% of the unfused traffic); %d fewer kernels\n",
                saved, saved / 1048576.0, 100.0 * ratio(saved, u.rd + u.wr),
                unfused->nkernels - g->nkernels);
    }
}
