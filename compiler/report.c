/*
 * report.c - `fusec --emit=report FILE.fdl --dim T=512 [--dim P=1024]`:
 * a roofline view of the schedule, fused and unfused.
 *
 * The traffic columns are the compulsory traffic of each kernel: every tensor it
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
 * Intensity is FLOPs per byte moved.  The counting lives in cost.c, which
 * also gives the "predicted" column: each kernel's time on the machine the
 * cost model assumes (the target's defaults or --tune=FILE).
 */
#include "fusec.h"

#include <string.h>

typedef struct Cost {
    double flops, rd, wr, t;
} Cost;

static Cost kernel_cost(const Graph *g, const Kernel *kr, const Machine *m, const int64_t *syms) {
    CostEst e = cost_kernel(g, kr, m, syms);
    return (Cost){e.flops, e.rd, e.wr, e.t};
}

static const char *kind_name(KernelKind k) {
    static const char *const names[] = {"single", "elementwise", "rowwise", "gemm", "attention", "mlp"};
    return names[k];
}

static Cost totals(const Graph *g, const Machine *m, const int64_t *syms) {
    Cost t = {0, 0, 0, 0};
    for (int k = 0; k < g->nkernels; k++) {
        Cost c = kernel_cost(g, g->kernels[k], m, syms);
        t.flops += c.flops;
        t.rd += c.rd;
        t.wr += c.wr;
        t.t += c.t;
    }
    return t;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

void report_print(FILE *out, const Graph *g, const Graph *unfused, const int64_t *syms, const Machine *m) {
    fprintf(out, "report: block %s", g->name);
    for (int s = 0; s < g->nsyms; s++)
        fprintf(out, "%s%s=%lld", s ? ", " : " at ", g->sym_names[s], (long long)syms[s]);
    fprintf(out, " (bytes as stored: 4 per f32 or i32 element, 2 per bf16 or f16, 34 and 18 per 32 of q8_0 and q4_0;\n"
            "compulsory traffic, docs/fusion.md)\n");
    fprintf(out, "predicted: the cost model (cost.c) for %s on %d thread%s\n\n", m->target, m->threads,
            m->threads == 1 ? "" : "s");
    fprintf(out, "%-6s %-11s %16s %16s %16s %9s %12s  %s\n", "kernel", "kind", "FLOPs", "bytes read",
            "bytes written", "FLOP/B", "predicted", "ops");
    for (int k = 0; k < g->nkernels; k++) {
        const Kernel *kr = g->kernels[k];
        Cost c = kernel_cost(g, kr, m, syms);
        fprintf(out, "%-6d %-11s %16.0f %16.0f %16.0f %9.2f %9.4f ms  ", k, kind_name(kr->kind), c.flops, c.rd,
                c.wr, ratio(c.flops, c.rd + c.wr), c.t * 1e3);
        for (int i = 0; i < kr->nnodes; i++)
            fprintf(out, "%s%s", i ? "," : "", op_info[kr->nodes[i]->op].name);
        fprintf(out, "\n");
    }
    Cost f = totals(g, m, syms);
    fprintf(out, "\n%-8s %8s %16s %16s %16s %16s %9s %12s\n", "", "kernels", "FLOPs", "bytes read",
            "bytes written", "bytes moved", "FLOP/B", "predicted");
    fprintf(out, "%-8s %8d %16.0f %16.0f %16.0f %16.0f %9.2f %9.4f ms\n", "fused", g->nkernels, f.flops, f.rd,
            f.wr, f.rd + f.wr, ratio(f.flops, f.rd + f.wr), f.t * 1e3);
    if (unfused) {
        Cost u = totals(unfused, m, syms);
        fprintf(out, "%-8s %8d %16.0f %16.0f %16.0f %16.0f %9.2f %9.4f ms\n", "unfused", unfused->nkernels,
                u.flops, u.rd, u.wr, u.rd + u.wr, ratio(u.flops, u.rd + u.wr), u.t * 1e3);
        double saved = (u.rd + u.wr) - (f.rd + f.wr);
        fprintf(out, "\nsaved: %.0f bytes (%.1f MiB, %.1f%% of the unfused traffic); %d fewer kernels\n",
                saved, saved / 1048576.0, 100.0 * ratio(saved, u.rd + u.wr),
                unfused->nkernels - g->nkernels);
    }
}
