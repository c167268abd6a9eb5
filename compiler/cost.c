/*
 * cost.c - the cost model: how long a kernel takes, so that the fusion
 * passes fuse only where fusing pays (docs/fusion.md, "The cost model").
 *
 * A kernel's time is a roofline with the costs fusion adds:
 *
 *     t = max(t_comp, t_mem) + t_sync
 *     t_comp = matmul FLOPs / (peak * gemm_eff)  +  attention FLOPs / (peak * attn_eff)
 *              +  other FLOPs / (peak * vec_eff)   (-O0's one-op loops: loop_eff)
 *              (KK_MLP: the matmul part / mlp_eff; + recomputed FLOPs)
 *     t_mem  = (compulsory bytes + bytes streamed again) / bandwidth
 *     t_sync = barriers * sync_us    (one per kernel, two more per MLP row block)
 *
 * peak = the target's f32 FMA rate (bf16 dot products for --compute=bf16
 * where the row has them) times the threads, bandwidth = one core's times
 * the threads up to the socket's.  The compulsory bytes are report.c's: a
 * tensor from outside the kernel is read once, a result written once.
 * What fusion costs on top:
 *  - a fused MLP walks T in row blocks of h (TargetTiles.mlp_floats) and
 *    streams all three weights once per block; a block of at most 8 rows
 *    runs as GEMV;
 *  - a norm prologue normalises A again for every NC-column block of B;
 *  - a fused MLP's stages synchronise per row block and read h from every
 *    thread's piece: mlp_eff of the plain GEMM's rate (measured, below).
 * The decisions (cost_decide) weigh the fused kernel against the unfused
 * kernels the later passes would build instead, at a decode point (T = 1)
 * and a prefill point (T = 512), since T is symbolic.
 *
 * Defaults: the target row's TargetPeaks (target.c) and the efficiencies
 * below; `fusec tune` (tune.c) measures the peaks, bandwidth and caches
 * into a tune file that --tune=FILE reads (format in docs/fusion.md).
 */
#include "fusec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The efficiencies: gemm_eff from the GEMM's best fraction of the FMA peak
 * in make bench (W2 and W5b, 69-78%); vec_eff is rarely binding (row
 * passes are memory-bound); mlp_eff from W5b at T = 512, where the fused
 * MLP ran at 0.99x (1 thread) and 0.87x (2 threads) of the unfused GEMMs
 * (docs/benchmarks.md); attn_eff from W3 (the attention kernel at 41-43%
 * of the FMA peak); loop_eff from -O0's attention op (W3 at 2.5-4%, W2
 * nearer 15%: its keys fit the L2; 5% between them); sync_us from fr_barrier on 2 threads; tol is the
 * model's resolution: a predicted difference under 2% is none. */
#define GEMM_EFF 0.75
#define VEC_EFF 0.25
#define ATTN_EFF 0.45
#define LOOP_EFF 0.05
#define MLP_EFF 0.93
#define SYNC_US 2.0
#define TOL 0.02
/* q8_0/q4_0 linears (emit_gemm.c's int8 stages) in prefill: the int8 GEMM on VNNI/AMX rows
 * runs at QGEMM_EFF of gemm_eff against the int8 peak (512 x 2048 x 2048 on
 * Zen 4: 0.29 of the int8 peak where the f32 GEMM made 0.42 of its own, same
 * run); elsewhere the dot products at QDOT_EFF of the f32 GEMM's rate (the
 * Llama-3.2-1B layer: 1231 ms against 552 for f32; docs/gemm.md) */
#define QGEMM_EFF 0.7
#define QDOT_EFF 0.45

Machine cost_defaults(const Target *t) {
    Machine m = {0};
    m.target = t->nvariants ? t->variants[0]->name : t->name;
    m.threads = 1;
    m.p = *t->peaks;
    m.tiles = *t->tiles;
    m.gemm_eff = GEMM_EFF;
    m.vec_eff = VEC_EFF;
    m.attn_eff = ATTN_EFF;
    m.loop_eff = LOOP_EFF;
    m.mlp_eff = MLP_EFF;
    m.sync_us = SYNC_US;
    m.tol = TOL;
    return m;
}

Machine cost_machine(const Options *o) {
    if (o->machine)
        return *o->machine;
    const Target *t = target_find(o->target);
    FU_ASSERT(t);
    return cost_defaults(t);
}

/* ---- the tune file ------------------------------------------------------------------
 *
 *     # comments
 *     fusec-tune 1
 *     target x86-64-avx512
 *     threads 2
 *     fma_gflops 216.7
 *     ...
 *
 * One "key value" per line; the header first; every key at most once;
 * keys not given keep the target's defaults. */

typedef struct Key {
    const char *name;
    int kind;           /* 0 double, 1 bytes (int64), 2 int */
    size_t off;
    double lo, hi;
    int unit;           /* tiles: what the value must be a multiple of (Unit) */
} Key;

/* A tile must be a whole number of the register tile's rows (mr) or
 * columns (nr), of 16 depths (k pairs of bf16, quads of int8, the unroll),
 * or of the attention scores' register block (fa_unit) of the row. */
enum Unit { U_ANY, U_MR, U_NR, U_16, U_FA };

static int unit_of(const TargetTiles *t, int unit) {
    switch (unit) {
    case U_MR:
        return t->mr;
    case U_NR:
        return t->nr;
    case U_16:
        return 16;
    case U_FA:
        return t->fa_unit;
    default:
        return 1;
    }
}

static const char *const unit_name[] = {"", "the register tile's rows (mr)", "the register tile's columns (nr)",
                                        "16", "the keys of one register block of scores"};

#define D(f, lo, hi) {#f, 0, offsetof(Machine, f), lo, hi, U_ANY}
#define P(f, lo, hi) {#f, 0, offsetof(Machine, p.f), lo, hi, U_ANY}
#define T(f, name, lo, hi, unit) {#name, 2, offsetof(Machine, tiles.f), lo, hi, unit}
static const Key keys[] = {
    {"threads", 2, offsetof(Machine, threads), 1, 4096, U_ANY},
    P(fma_gflops, 0.01, 1e6), P(bf16_gflops, 0, 1e7), P(int8_gops, 0, 1e7),
    P(bw1_gbs, 0.01, 1e5), P(bw_gbs, 0.01, 1e5),
    {"l1_bytes", 1, offsetof(Machine, p.l1), 1024, 1e9, U_ANY},
    {"l2_bytes", 1, offsetof(Machine, p.l2), 1024, 1e10, U_ANY},
    {"l3_bytes", 1, offsetof(Machine, p.l3), 0, 1e12, U_ANY},
    D(gemm_eff, 0.01, 1), D(vec_eff, 0.01, 1), D(attn_eff, 0.001, 1), D(loop_eff, 0.001, 1), D(mlp_eff, 0.01, 2), D(sync_us, 0, 1e6), D(tol, 0, 1),
    /* tiles (target.c's TargetTiles) */
    T(kc, gemm_kc, 16, 8192, U_16), T(mc, gemm_mc, 1, 8192, U_MR), T(nc, gemm_nc, 1, 65536, U_NR),
    T(mchunk, gemm_mchunk, 1, 65536, U_MR), T(gch, gemv_chunk, 1, 65536, U_NR),
    {"mlp_floats", 1, offsetof(Machine, tiles.mlp_floats), 4096, 1e10, U_ANY},
    T(fa_bk, attn_key_block, 4, 1024, U_FA), T(fa_rows, attn_query_rows, 1, 1024, U_ANY),
    T(fa_direct, attn_direct_rows, 0, 1024, U_ANY), T(fa_split, attn_split_keys, 1, 65536, U_ANY),
    T(gemv_rows, gemv_max_rows, 4, 8, U_ANY),
};
#undef D
#undef P
#undef T
#define NKEYS (sizeof keys / sizeof keys[0])

static size_t key_index(const char *name) {
    size_t k = 0;
    while (k < NKEYS && strcmp(keys[k].name, name) != 0)
        k++;
    FU_ASSERT(k < NKEYS);
    return k;
}

static void set_key(Machine *m, const Key *k, double v) {
    char *base = (char *)m + k->off;
    if (k->kind == 0)
        *(double *)(void *)base = v;
    else if (k->kind == 1)
        *(int64_t *)(void *)base = (int64_t)v;
    else
        *(int *)(void *)base = (int)v;
}

static double get_key(const Machine *m, const Key *k) {
    const char *base = (const char *)m + k->off;
    if (k->kind == 0)
        return *(const double *)(const void *)base;
    if (k->kind == 1)
        return (double)*(const int64_t *)(const void *)base;
    return *(const int *)(const void *)base;
}

static bool fail(char *why, size_t n, const char *path, int line, const char *msg) {
    snprintf(why, n, "%s:%d: error: %s", path, line, msg);
    return false;
}

bool cost_read_tune(const char *path, Machine *m, char *why, size_t whylen) {
    size_t len;
    char *text = fu_read_file(path, &len);
    if (!text) {
        snprintf(why, whylen, "%s: error: cannot read the tune file: %s", path, fu_read_error(errno));
        return false;
    }
    if (strlen(text) != len)
        return fail(why, whylen, path, 1, "a NUL byte: this is not a tune file");
    bool header = false, seen[NKEYS] = {false};
    int at[NKEYS] = {0};
    const char *target = NULL;
    int line = 0;
    Machine tmp = {0};
    for (char *p = text; *p;) {
        char *end = strchr(p, '\n');
        if (end)
            *end = '\0';
        line++;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        char key[64], val[256], extra[8];
        int nf = sscanf(p, "%63s %255s %7s", key, val, extra);
        p = end ? end + 1 : p + strlen(p);
        if (nf <= 0)
            continue;
        if (nf != 2)
            return fail(why, whylen, path, line, "expected 'KEY VALUE'");
        if (!header) {
            if (strcmp(key, "fusec-tune") != 0)
                return fail(why, whylen, path, line, "expected the header 'fusec-tune 1' (written by fusec tune)");
            if (strcmp(val, "1") != 0)
                return fail(why, whylen, path, line,
                            fu_format("tune file version '%s': this fusec reads version 1", val));
            header = true;
            continue;
        }
        if (strcmp(key, "target") == 0) {
            if (target)
                return fail(why, whylen, path, line, "'target' given twice");
            const Target *t = target_find(val);
            if (!t || t->nvariants)
                return fail(why, whylen, path, line,
                            fu_format("%s", t ? "a tune file describes one target row, not multi:" : target_error(val)));
            target = t->name;
            Machine d = cost_defaults(t);
            /* keys read before 'target' keep their values */
            for (size_t k = 0; k < NKEYS; k++)
                if (seen[k])
                    set_key(&d, &keys[k], get_key(&tmp, &keys[k]));
            tmp = d;
            continue;
        }
        size_t k = 0;
        while (k < NKEYS && strcmp(keys[k].name, key) != 0)
            k++;
        if (k == NKEYS) {
            Buf b = {0};
            for (size_t j = 0; j < NKEYS; j++)
                buf_printf(&b, "%s%s", j ? ", " : "", keys[j].name);
            const char *msg = fu_format("unknown key '%s' (keys: target, %s)", key, b.data);
            free(b.data);
            return fail(why, whylen, path, line, msg);
        }
        if (seen[k])
            return fail(why, whylen, path, line, fu_format("'%s' given twice", key));
        char *e;
        errno = 0;
        double v = strtod(val, &e);
        if (*e || e == val || errno || !isfinite(v))
            return fail(why, whylen, path, line, fu_format("'%s' is not a number", val));
        if (v < keys[k].lo || v > keys[k].hi || (keys[k].kind != 0 && v != floor(v)))
            return fail(why, whylen, path, line,
                        fu_format("%s %s is out of range (%s %g to %g)", key, val,
                                  keys[k].kind ? "an integer from" : "from", keys[k].lo, keys[k].hi));
        seen[k] = true;
        at[k] = line;
        set_key(&tmp, &keys[k], v);
    }
    if (!header)
        return fail(why, whylen, path, line ? line : 1, "empty: expected the header 'fusec-tune 1'");
    if (!target)
        return fail(why, whylen, path, line, "no 'target' line: which target row was measured?");
    if (tmp.p.bw_gbs < tmp.p.bw1_gbs)
        return fail(why, whylen, path, line, "bw_gbs (all threads) is below bw1_gbs (one core)");
    /* tiles: whole register tiles of the file's target (known only now) */
    for (size_t k = 0; k < NKEYS; k++) {
        int u = unit_of(&tmp.tiles, keys[k].unit);
        long long v = (long long)get_key(&tmp, &keys[k]);
        if (seen[k] && u > 1 && v % u != 0)
            return fail(why, whylen, path, at[k],
                        fu_format("%s %lld is not a multiple of %s, %d on %s", keys[k].name, v,
                                  unit_name[keys[k].unit], u, target));
    }
    size_t kmc = key_index("gemm_mc"), kch = key_index("gemm_mchunk");
    if ((seen[kmc] || seen[kch]) && tmp.tiles.mc > tmp.tiles.mchunk)
        return fail(why, whylen, path, at[kmc] > at[kch] ? at[kmc] : at[kch],
                    fu_format("gemm_mc %d is above gemm_mchunk %d (the rows one accumulator buffer holds)",
                              tmp.tiles.mc, tmp.tiles.mchunk));
    *m = tmp;
    return true;
}

bool cost_use_tune(Options *o, const char *path, char *why, size_t whylen) {
    Machine *m = fu_alloc(sizeof *m);
    if (!cost_read_tune(path, m, why, whylen))
        return false;
    const Target *t = target_find(o->target);
    const char *want = t ? (t->nvariants ? t->variants[0]->name : t->name) : NULL;
    if (want && strcmp(want, m->target) != 0) {
        snprintf(why, whylen,
                 "%s: error: the tune file measured target %s, not %s (run fusec tune --target=%s)", path,
                 m->target, want, want);
        return false;
    }
    o->machine = m;
    return true;
}

void cost_write_tune(FILE *f, const Machine *m, const char *note) {
    fprintf(f, "# fusec tune file (docs/fusion.md, \"The tune file\")%s%s\n", note ? ": " : "", note ? note : "");
    fprintf(f, "fusec-tune 1\ntarget %s\n", m->target);
    for (size_t k = 0; k < NKEYS; k++) {
        double v = get_key(m, &keys[k]);
        if (keys[k].kind)
            fprintf(f, "%s %lld\n", keys[k].name, (long long)v);
        else
            fprintf(f, "%s %.4g\n", keys[k].name, v);
    }
}

/* ---- counting: FLOPs and compulsory bytes (the numbers --emit=report prints) -------- */

static double numel(const Node *n, const int64_t *syms) {
    double e = 1;
    for (int d = 0; d < n->rank; d++)
        e *= (double)dim_eval(n->shape[d], syms);
    return e;
}

/* Stored bytes: 4 per f32/i32 element, 2 per bf16/f16, a block's bytes per 32
 * elements of q8_0/q4_0 (34 and 18: the scale and the values). */
static double elem_bytes(DType t) {
    const DTypeInfo *d = dt_info(t);
    return (double)d->block_bytes / (double)d->block;
}

static double bytes(const Node *n, const int64_t *syms) { return numel(n, syms) * elem_bytes(n->dtype); }

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
                v = v < 0 ? 0 : v > S ? S : v;
                pairs += n->i[4] && v > (double)n->i[4] ? (double)n->i[4] : v;   /* a window: its last W */
            }
        }
        return pairs * (double)n->i[0] * (4.0 * (double)n->i[2] + 5.0);
    }
    default:
        return 0.0;
    }
}

typedef struct Set {
    Node *const *v;
    int n;
} Set;

static bool in_set(const Set *s, const Node *x) {
    for (int i = 0; i < s->n; i++)
        if (s->v[i] == x)
            return true;
    return false;
}

/* The bytes of x a node c of the set reads, or 0 when x is inside it. */
static double read_bytes(const Set *s, const Node *c, const Node *x, const int64_t *syms) {
    const Node *r = root(x);
    if (r->op == OP_APPEND)
        return bytes(r, syms);            /* the cache, P + T rows */
    if (in_set(s, r))
        return 0.0;
    if (r->op == OP_CONST)
        return 0.0;
    if (c->op == OP_SLICE)
        return bytes(c, syms);            /* only the slice's columns */
    return bytes(r, syms);
}

static bool is_result(const Graph *g, const Set *s, const Node *n) {
    Node **users;
    int nu = ir_users(g, n, &users);
    for (int i = 0; i < nu; i++) {
        const Node *c = users[i];
        if (c->op == OP_OUTPUT || (c->op == OP_RESHAPE ? is_result(g, s, c) : !in_set(s, c)))
            return true;
    }
    return false;
}

/* ---- the estimate ------------------------------------------------------------------ */

static double peak(const Machine *m, bool bf16) {
    double p = bf16 && m->p.bf16_gflops > 0 ? m->p.bf16_gflops : m->p.fma_gflops;
    return p * 1e9 * m->threads;
}

static double bandwidth(const Machine *m) {
    double bw = m->p.bw1_gbs * m->threads;
    return 1e9 * (bw < m->p.bw_gbs ? bw : m->p.bw_gbs);
}

static int64_t cdiv(int64_t a, int64_t b) { return b > 0 ? (a + b - 1) / b : a; }

CostEst cost_nodes(const Graph *g, Node *const *nodes, int n, KernelKind kind, const Machine *m,
                   const int64_t *syms) {
    CostEst c;
    memset(&c, 0, sizeof c);
    Set s = {nodes, n};
    const TargetTiles *tl = &m->tiles;
    const Node **seen = fu_alloc(sizeof *seen * (size_t)(3 * n + 1));
    int nseen = 0;
    double mm_flops = 0, attn_flops = 0, weights = 0, norm_flops = 0, ncols = 0, rows = 0, F = 0;
    bool bf16 = false, quant = false;
    for (int i = 0; i < n; i++) {
        const Node *x = nodes[i];
        double f = node_flops(x, syms);
        c.flops += f;
        if (op_info[x->op].cat == CAT_MATMUL) {
            mm_flops += f;
            bf16 |= linear_bf16(x);
            if (x->op == OP_LINEAR) {
                const Node *w = x->in[1];
                quant |= dt_info(w->dtype)->kind == DK_QUANT;
                weights += bytes(w, syms);
                if (!in_set(&s, root(x->in[0])) || op_info[root(x->in[0])->op].cat == CAT_NORM)
                    ncols += (double)dim_eval(x->shape[x->rank - 1], syms);   /* a first-stage product */
                else
                    F = (double)dim_eval(x->in[0]->shape[x->in[0]->rank - 1], syms);
                rows = numel(x, syms) / (double)dim_eval(x->shape[x->rank - 1], syms);
            } else {
                rows = (double)dim_eval(x->shape[x->rank - 2], syms);   /* matmul: M per batch */
            }
        }
        if (op_info[x->op].cat == CAT_NORM)
            norm_flops += f;
        if (op_info[x->op].cat == CAT_ATTENTION)
            attn_flops += f;
        for (int j = 0; j < x->nin; j++) {
            if (x->op == OP_APPEND && j == 0)
                continue;                 /* appending does not read the cache */
            const Node *in = x->in[j];
            double b = read_bytes(&s, x, in, syms);
            if (b == 0)
                continue;
            bool dup = false;
            for (int k = 0; k < nseen && !dup; k++)
                dup = seen[k] == root(in) && x->op != OP_SLICE;
            if (dup)
                continue;
            if (x->op != OP_SLICE)
                seen[nseen++] = root(in);
            c.rd += b;
        }
        if (x->op == OP_APPEND)   /* the new rows, stored as the cache's type */
            c.wr += numel(x->in[1], syms) * elem_bytes(x->dtype);
        else if (is_result(g, &s, x))
            c.wr += bytes(x, syms);
    }
    int barriers = 1;
    double mm_rate = m->gemm_eff;
    bool gemm = rows > tl->gemv_rows;
    if ((kind == KK_GEMM || kind == KK_SINGLE) && norm_flops > 0 && mm_flops > 0 && gemm && !quant)
        /* the prologue normalises A again for every NC-column block (a
         * q8_0/q4_0 stage normalises and quantizes each row once) */
        c.extra_flops = norm_flops * (double)(cdiv((int64_t)ncols, tl->nc) - 1);
    if (kind == KK_MLP && F > 0) {
        /* row blocks of h (emit_gemm.c: balanced, at most mchunk rows) */
        int64_t fmax = (int64_t)F, cap = tl->mlp_floats / fmax;
        cap = cap > tl->mchunk ? tl->mchunk : cap < 1 ? 1 : cap;
        int64_t blocks = cdiv((int64_t)rows, cap);
        c.extra_rd = weights * (double)(blocks - 1);
        barriers = 1 + 2 * (int)blocks;
        mm_rate *= m->mlp_eff;
        if (norm_flops > 0 && gemm && !quant)
            c.extra_flops = norm_flops * (double)(cdiv((int64_t)ncols, tl->nc) - 1);
    }
    double other = c.flops - mm_flops - attn_flops + c.extra_flops;
    double vec = peak(m, false) * (kind == KK_SINGLE ? m->loop_eff : m->vec_eff);
    c.t_comp = other / vec + attn_flops / (peak(m, false) * (kind == KK_ATTENTION ? m->attn_eff : m->loop_eff));
    if (gemm && quant && ty_qgemm(target_find(m->target)) && m->p.int8_gops > 0)
        c.t_comp += mm_flops / (m->p.int8_gops * 1e9 * m->threads * mm_rate * QGEMM_EFF);
    else if (gemm && quant)
        c.t_comp += mm_flops / (peak(m, false) * mm_rate * QDOT_EFF);
    else if (gemm)
        c.t_comp += mm_flops / (peak(m, bf16) * mm_rate);
    else
        c.t_comp += mm_flops / (peak(m, false) * m->vec_eff);   /* GEMV: memory-bound anyway */
    c.t_mem = (c.rd + c.wr + c.extra_rd) / bandwidth(m);
    c.t_sync = barriers * m->sync_us * 1e-6;
    c.t = (c.t_comp > c.t_mem ? c.t_comp : c.t_mem) + c.t_sync;
    return c;
}

CostEst cost_kernel(const Graph *g, const Kernel *kr, const Machine *m, const int64_t *syms) {
    return cost_nodes(g, kr->nodes, kr->nnodes, kr->kind, m, syms);
}

/* ---- decisions ----------------------------------------------------------------------- */

const char *const *cost_points(const Graph *g, int64_t syms[COST_POINTS][FU_MAX_SYMS]) {
    static const char *const names[COST_POINTS] = {"decode", "prefill"};
    for (int s = 0; s < FU_MAX_SYMS; s++) {
        bool cache = s == g->cache_sym;
        syms[0][s] = cache ? 1024 : 1;
        syms[1][s] = cache ? 0 : 512;
    }
    return names;
}

static const char *ms(double t) { return fu_format("%.3g ms", t * 1e3); }

bool cost_decide(Graph *g, const Machine *m, const char *pass, const char *what, const double *fused,
                 const double *unfused) {
    int64_t syms[COST_POINTS][FU_MAX_SYMS];
    const char *const *names = cost_points(g, syms);
    double sum = 0, worst = 0;
    Buf b = {0};
    for (int p = 0; p < COST_POINTS; p++) {
        double gain = unfused[p] / fused[p] - 1;
        sum += gain;
        worst = p == 0 || gain < worst ? gain : worst;
        buf_printf(&b, "%s%s %s fused / %s unfused (%+.1f%%)", p ? "; " : "", names[p], ms(fused[p]),
                   ms(unfused[p]), 100 * gain);
    }
    bool yes = worst >= -m->tol && sum > 0;
    fuse_note(g, "%s: %s: %s (cost: %s; %s, %d thread%s)", pass, what, yes ? "fused" : "not fused, it does not pay",
              b.data, m->target, m->threads, m->threads == 1 ? "" : "s");
    free(b.data);
    return yes;
}

bool cost_pays(Graph *g, const Options *o, const char *pass, const char *what, CostPart fused,
               const CostPart *parts, int nparts) {
    if (o->fuse_all)
        return true;
    Machine m = cost_machine(o);
    int64_t syms[COST_POINTS][FU_MAX_SYMS];
    cost_points(g, syms);
    double f[COST_POINTS], u[COST_POINTS];
    for (int p = 0; p < COST_POINTS; p++) {
        f[p] = cost_nodes(g, fused.nodes, fused.n, fused.kind, &m, syms[p]).t;
        u[p] = 0;
        for (int i = 0; i < nparts; i++)
            u[p] += cost_nodes(g, parts[i].nodes, parts[i].n, parts[i].kind, &m, syms[p]).t;
    }
    return cost_decide(g, &m, pass, what, f, u);
}
