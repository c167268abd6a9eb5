/*
 * interp.c - the float64 reference interpreter of the unfused graph IR.
 *
 * This is the oracle that every other test compares against (generated C,
 * fused kernels, `fusec check --interp-ref`), so it is written to be
 * obviously right rather than fast: every node gets its own freshly
 * allocated, row-major, contiguous double buffer with the shape evaluated at
 * the run's symbol values; every op is one function of plain loops over
 * those shapes; nothing aliases (sources and reshapes copy).  The semantics
 * are the ones written at the top of ops.def and in docs/design.md.
 *
 * Typed data: weights come in as the exact values they store (a bf16, f16,
 * q8_0 or q4_0 weight dequantized to double by the caller, dt_load_row), so
 * convert is a copy.
 *
 * Choices the contract leaves open:
 *  - softmax of a row that is entirely -inf gives zeros (Hugging Face gives
 *    NaN; a causal mask never produces such a row); attention's row with
 *    every key masked gives zeros the same way.
 *  - NaN and Inf follow PyTorch (docs/language.md, "NaN, Inf and extreme
 *    values"): relu, maximum, minimum and max propagate NaN; a masked key
 *    of attention contributes nothing, whatever its value row holds.
 *  - Values are doubles, but a node's value beyond float32's range is
 *    +-inf, as it is in the generated code: the interpreter models float32's
 *    range, not its rounding (x * x of x = 1e20 is inf here too).
 *  - A symbol value < 0 is an error.  Dims of 0 (P = 0 cached rows) are fine.
 *  - Every input shape is checked against what the op needs before a loop
 *    indexes it, so a malformed graph yields an error, never a wild read.
 *
 * Buffers are malloc'ed per node (not the compiler's arena: a run's memory
 * is returned when it ends, and a failed allocation is an error, not fatal).
 */
#include "fusec.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A node's value: shape evaluated at the run's symbols, data owned. */
typedef struct Tensor {
    int rank;
    int64_t shape[FU_MAX_RANK];
    int64_t numel;
    double *data;
    bool done;          /* computed (guards use before definition) */
} Tensor;

typedef struct Interp {
    const Graph *g;
    const InterpArgs *a;
    int64_t syms[FU_MAX_SYMS];
    Tensor *val;        /* indexed by node id */
    char *err;
    size_t errlen;
} Interp;

/* ---- errors ------------------------------------------------------------- */

static void set_err(Interp *I, const char *fmt, va_list ap) {
    if (I->err && I->errlen > 0)
        vsnprintf(I->err, I->errlen, fmt, ap);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(Interp *I, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_err(I, fmt, ap);
    va_end(ap);
    return -1;
}

/* An error about one node, prefixed with "%id (op): ". */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int node_fail(Interp *I, const Node *n, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(I, "%%%d (%s): %s", n->id, op_info[n->op].name, msg);
}

/* ---- shape helpers ------------------------------------------------------- */

static Tensor *in_val(Interp *I, const Node *n, int k) {
    return &I->val[n->in[k]->id];
}

static int64_t prod(const int64_t *shape, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++)
        p *= shape[d];
    return p;
}

/* Advances a row-major multi-index over shape; false after the last one. */
static bool next_index(int64_t *idx, const int64_t *shape, int rank) {
    for (int d = rank - 1; d >= 0; d--) {
        if (++idx[d] < shape[d])
            return true;
        idx[d] = 0;
    }
    return false;
}

/* True when a tensor of shape t (rank tr) broadcasts numpy-style to shape o
 * (rank orank): its dims align with o's trailing dims and each is 1 or equal. */
static bool broadcasts_to(const int64_t *t, int tr, const int64_t *o, int orank) {
    if (tr > orank)
        return false;
    for (int d = 0; d < tr; d++) {
        int64_t od = o[orank - tr + d];
        if (t[d] != 1 && t[d] != od)
            return false;
    }
    return true;
}

/* Row-major offset into a tensor of shape t (rank tr) for the multi-index idx
 * of the broadcast shape (rank orank): size-1 dims stay at 0. */
static int64_t bcast_offset(const int64_t *t, int tr, const int64_t *idx, int orank) {
    int64_t off = 0;
    for (int d = 0; d < tr; d++) {
        int64_t i = t[d] == 1 ? 0 : idx[orank - tr + d];
        off = off * t[d] + i;
    }
    return off;
}

/* Normalises an axis attribute (negative counts from the end). */
static bool norm_axis(int64_t axis, int rank, int *out) {
    if (axis < 0)
        axis += rank;
    if (axis < 0 || axis >= rank)
        return false;
    *out = (int)axis;
    return true;
}

static bool same_shape(const Tensor *a, const Tensor *b) {
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

/* ---- sources ------------------------------------------------------------- */

/* Index of n in list (of len entries), or -1. */
static int find_node(Node *const *list, int len, const Node *n) {
    for (int i = 0; i < len; i++)
        if (list[i] == n)
            return i;
    return -1;
}

static int op_input(Interp *I, const Node *n, Tensor *out) {
    int i = find_node(I->g->inputs, I->g->ninputs, n);
    if (i < 0)
        return node_fail(I, n, "input '%s' is not in the graph's input list", n->name);
    if (!I->a->inputs || !I->a->inputs[i])
        return node_fail(I, n, "no data for input '%s'", n->name);
    if (out->numel > 0)
        memcpy(out->data, I->a->inputs[i], (size_t)out->numel * sizeof(double));
    return 0;
}

static int op_weight(Interp *I, const Node *n, Tensor *out) {
    int i = find_node(I->g->weights, I->g->nweights, n);
    if (i < 0)
        return node_fail(I, n, "weight '%s' is not in the graph's weight list", n->name);
    if (!I->a->weights || !I->a->weights[i])
        return node_fail(I, n, "no data for weight '%s'", n->name);
    if (out->numel > 0)
        memcpy(out->data, I->a->weights[i], (size_t)out->numel * sizeof(double));
    return 0;
}

static int op_const(Interp *I, const Node *n, Tensor *out) {
    (void)I;
    for (int64_t e = 0; e < out->numel; e++)
        out->data[e] = n->f[0];
    return 0;
}

/* Finds the cache behind n and its row size (product of dims 1..); P is the
 * cached-length symbol's value. */
static int cache_info(Interp *I, const Node *n, int *ci, int64_t *P, int64_t *row) {
    const Graph *g = I->g;
    *ci = find_node(g->caches, g->ncaches, n);
    if (*ci < 0)
        return node_fail(I, n, "cache '%s' is not in the graph's cache list", n->name);
    if (g->cache_sym < 0 || g->cache_sym >= g->nsyms)
        return node_fail(I, n, "the graph has a cache but no cached-length symbol");
    if (!I->a->caches || !I->a->caches[*ci])
        return node_fail(I, n, "no buffer for cache '%s'", n->name);
    if (n->rank < 1)
        return node_fail(I, n, "cache '%s' has rank 0", n->name);
    *P = I->syms[g->cache_sym];
    *row = 1;
    for (int d = 1; d < n->rank; d++)
        *row *= dim_eval(n->shape[d], I->syms);
    return 0;
}

/* The cache's rows [0, P). */
static int op_cache(Interp *I, const Node *n, Tensor *out) {
    int ci;
    int64_t P, row;
    if (cache_info(I, n, &ci, &P, &row) < 0)
        return -1;
    if (out->shape[0] != P)
        return node_fail(I, n, "first dim %lld is not P = %lld", (long long)out->shape[0],
                         (long long)P);
    if (P > I->a->cache_capacity)
        return fail(I, "cache capacity %lld is smaller than P = %lld",
                    (long long)I->a->cache_capacity, (long long)P);
    if (out->numel > 0)
        memcpy(out->data, I->a->caches[ci], (size_t)(P * row) * sizeof(double));
    return 0;
}

/* ---- elementwise ----------------------------------------------------------- */

static double sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

static double unary(Op op, double x) {
    switch (op) {
    case OP_NEG: return -x;
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_SQRT: return sqrt(x);
    case OP_RSQRT: return 1.0 / sqrt(x);
    case OP_RECIP: return 1.0 / x;
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return sigmoid(x);
    case OP_SILU: return x * sigmoid(x);
    case OP_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case OP_GELU_TANH: {
        const double pi = 3.14159265358979323846;
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
    }
    case OP_RELU: return x > 0.0 || isnan(x) ? x : 0.0;
    default: FU_UNREACHABLE();
    }
}

static int op_unary(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    if (!same_shape(x, out))
        return node_fail(I, n, "input and output shapes differ");
    for (int64_t e = 0; e < out->numel; e++)
        out->data[e] = unary(n->op, x->data[e]);
    return 0;
}

static double binary(Op op, double a, double b) {
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_MAXIMUM: return isnan(a) || a > b ? a : b;
    case OP_MINIMUM: return isnan(a) || a < b ? a : b;
    default: FU_UNREACHABLE();
    }
}

/* out = a op b with numpy broadcasting of both operands to out's shape. */
static int op_binary(Interp *I, const Node *n, Tensor *out) {
    const Tensor *a = in_val(I, n, 0), *b = in_val(I, n, 1);
    if (!broadcasts_to(a->shape, a->rank, out->shape, out->rank) ||
        !broadcasts_to(b->shape, b->rank, out->shape, out->rank))
        return node_fail(I, n, "operands do not broadcast to the output shape");
    if (out->numel == 0)
        return 0;
    int64_t idx[FU_MAX_RANK] = {0};
    int64_t e = 0;
    do {
        double x = a->data[bcast_offset(a->shape, a->rank, idx, out->rank)];
        double y = b->data[bcast_offset(b->shape, b->rank, idx, out->rank)];
        out->data[e++] = binary(n->op, x, y);
    } while (next_index(idx, out->shape, out->rank));
    return 0;
}

/* ---- reductions ---------------------------------------------------------- */

/* x viewed as [outer, len, inner] around the axis; out is [outer, 1, inner]. */
static int op_reduce(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    int ax;
    if (!norm_axis(n->i[0], x->rank, &ax))
        return node_fail(I, n, "axis %lld out of range for rank %d", (long long)n->i[0], x->rank);
    if (out->rank != x->rank || out->shape[ax] != 1)
        return node_fail(I, n, "output must keep the reduced axis with size 1");
    for (int d = 0; d < x->rank; d++)
        if (d != ax && out->shape[d] != x->shape[d])
            return node_fail(I, n, "output dim %d differs from the input's", d);
    int64_t outer = prod(x->shape, 0, ax), len = x->shape[ax];
    int64_t inner = prod(x->shape, ax + 1, x->rank);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < inner; j++) {
            double acc = n->op == OP_MAX ? -INFINITY : 0.0;
            for (int64_t k = 0; k < len; k++) {
                double v = x->data[(o * len + k) * inner + j];
                if (n->op == OP_MAX)
                    acc = isnan(v) || v > acc ? v : acc;   /* NaN stays */
                else
                    acc += v;
            }
            if (n->op == OP_MEAN)
                acc /= (double)len;
            out->data[o * inner + j] = acc;
        }
    }
    return 0;
}

/* ---- contractions ------------------------------------------------------------ */

/* a [..., M, K] x b [..., K, N] (i[0] == 1: b is [..., N, K]) -> [..., M, N];
 * the batch dims of a and b broadcast to out's. */
static int op_matmul(Interp *I, const Node *n, Tensor *out) {
    const Tensor *a = in_val(I, n, 0), *b = in_val(I, n, 1);
    bool tb = n->i[0] == 1;
    if (a->rank < 2 || b->rank < 2 || out->rank < 2)
        return node_fail(I, n, "operands and result need rank >= 2");
    int r = out->rank;
    int64_t M = out->shape[r - 2], N = out->shape[r - 1];
    int64_t K = a->shape[a->rank - 1];
    int64_t bK = tb ? b->shape[b->rank - 1] : b->shape[b->rank - 2];
    int64_t bN = tb ? b->shape[b->rank - 2] : b->shape[b->rank - 1];
    if (a->shape[a->rank - 2] != M || bK != K || bN != N)
        return node_fail(I, n, "shapes do not contract: a is [.., %lld, %lld], b gives K=%lld N=%lld, "
                         "out is [.., %lld, %lld]", (long long)a->shape[a->rank - 2], (long long)K,
                         (long long)bK, (long long)bN, (long long)M, (long long)N);
    int nb = r - 2;
    if (!broadcasts_to(a->shape, a->rank - 2, out->shape, nb) ||
        !broadcasts_to(b->shape, b->rank - 2, out->shape, nb))
        return node_fail(I, n, "batch dims do not broadcast");
    if (out->numel == 0)
        return 0;
    int64_t idx[FU_MAX_RANK] = {0};
    int64_t batch = 0;
    do {
        const double *A = a->data + bcast_offset(a->shape, a->rank - 2, idx, nb) * M * K;
        const double *B = b->data + bcast_offset(b->shape, b->rank - 2, idx, nb) * K * N;
        double *C = out->data + batch * M * N;
        for (int64_t m = 0; m < M; m++) {
            for (int64_t j = 0; j < N; j++) {
                double acc = 0.0;
                for (int64_t k = 0; k < K; k++)
                    acc += A[m * K + k] * (tb ? B[j * K + k] : B[k * N + j]);
                C[m * N + j] = acc;
            }
        }
        batch++;
    } while (next_index(idx, out->shape, nb));
    return 0;
}

/*
 * The activations of a q8_0/q4_0 linear, as its kernels see them
 * (docs/quantization.md, typed.c's fu_qx_*): the row of k elements rounded to
 * float32, then per block of 32, in float32 arithmetic (each float32 operation
 * done here in double and rounded to float, which gives the float32 result
 * exactly): amax = max |x|, d = amax / 127, id = 1 / d (0 where d is 0 or
 * subnormal), q = rint(x * id), ties to even; xh = d * q.  A block with a NaN
 * or an infinity is NaN throughout.
 */
static void quantize_row(const double *x, int64_t k, double *xh) {
    for (int64_t b0 = 0; b0 < k; b0 += 32) {
        int n = k - b0 < 32 ? (int)(k - b0) : 32;
        float xf[32], amax = 0.0f;
        bool finite = true;
        for (int j = 0; j < n; j++) {
            xf[j] = (float)x[b0 + j];
            float a = fabsf(xf[j]);
            if (!(a <= FLT_MAX))
                finite = false;
            else if (a > amax)
                amax = a;
        }
        if (!finite) {
            for (int j = 0; j < n; j++)
                xh[b0 + j] = NAN;
            continue;
        }
        float d = (float)((double)amax / 127.0);
        float id = d >= FLT_MIN ? (float)(1.0 / (double)d) : 0.0f;
        for (int j = 0; j < n; j++)
            xh[b0 + j] = (double)d * nearbyint((double)(float)((double)xf[j] * (double)id));
    }
}

/* --compute=bf16 (when r): the float32 value of x rounded to bf16, nearest
 * even, as the kernels round their float32 operands; NaN stays NaN. */
static double bf16_round(bool r, double x) {
    if (!r || x != x)
        return x;
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + (u >> 16 & 1u)) & 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x [..., in] with W [out, in] (i[0] == 0, y = x W^T) or W [in, out]
 * (i[0] == 1, y = x W), plus an optional bias [out].  With a q8_0/q4_0
 * weight each row of x is quantized first (quantize_row); under
 * --compute=bf16 (linear_bf16) both operands are rounded (bf16_round). */
static int op_linear(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *w = in_val(I, n, 1);
    const Tensor *bias = n->nin > 2 ? in_val(I, n, 2) : NULL;
    bool in_out = n->i[0] == 1;
    if (x->rank < 1 || w->rank != 2 || out->rank != x->rank)
        return node_fail(I, n, "bad ranks");
    int64_t IN = x->shape[x->rank - 1], OUT = out->shape[out->rank - 1];
    int64_t wIN = in_out ? w->shape[0] : w->shape[1];
    int64_t wOUT = in_out ? w->shape[1] : w->shape[0];
    if (wIN != IN || wOUT != OUT)
        return node_fail(I, n, "weight is [%lld, %lld], x has %lld features, y %lld",
                         (long long)w->shape[0], (long long)w->shape[1], (long long)IN,
                         (long long)OUT);
    if (bias && bias->numel != OUT)
        return node_fail(I, n, "bias has %lld elements, expected %lld", (long long)bias->numel,
                         (long long)OUT);
    int64_t rows = IN > 0 ? x->numel / IN : 0;
    if (rows * OUT != out->numel)
        return node_fail(I, n, "output has the wrong number of rows");
    bool r = linear_bf16(n);
    bool quant = dt_info(n->in[1]->dtype)->kind == DK_QUANT;
    double *xq = quant && IN > 0 ? malloc(sizeof *xq * (size_t)IN) : NULL;
    if (quant && IN > 0 && !xq)
        return node_fail(I, n, "out of memory");
    for (int64_t t = 0; t < rows; t++) {
        const double *xr = x->data + t * IN;
        if (xq) {
            quantize_row(xr, IN, xq);
            xr = xq;
        }
        for (int64_t o = 0; o < OUT; o++) {
            double acc = 0.0;
            for (int64_t k = 0; k < IN; k++)
                acc += bf16_round(r, xr[k]) * bf16_round(r, in_out ? w->data[k * OUT + o] : w->data[o * IN + k]);
            if (bias)
                acc += bias->data[o];
            out->data[t * OUT + o] = acc;
        }
    }
    free(xq);
    return 0;
}

/* ---- data movement ---------------------------------------------------------- */

static int op_reshape(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    if (x->numel != out->numel)
        return node_fail(I, n, "%lld elements cannot become %lld", (long long)x->numel,
                         (long long)out->numel);
    if (out->numel > 0)
        memcpy(out->data, x->data, (size_t)out->numel * sizeof(double));
    return 0;
}

/* Output axis d is input axis i[d]. */
static int op_transpose(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    int r = x->rank;
    bool seen[FU_MAX_RANK] = {false};
    if (out->rank != r)
        return node_fail(I, n, "rank changes");
    for (int d = 0; d < r; d++) {
        int64_t p = n->i[d];
        if (p < 0 || p >= r || seen[p] || out->shape[d] != x->shape[p])
            return node_fail(I, n, "i[] is not a permutation matching the shapes");
        seen[p] = true;
    }
    int64_t stride[FU_MAX_RANK];
    for (int d = 0; d < r; d++)
        stride[d] = prod(x->shape, d + 1, r);
    if (out->numel == 0)
        return 0;
    int64_t idx[FU_MAX_RANK] = {0};
    int64_t e = 0;
    do {
        int64_t off = 0;
        for (int d = 0; d < r; d++)
            off += idx[d] * stride[n->i[d]];
        out->data[e++] = x->data[off];
    } while (next_index(idx, out->shape, r));
    return 0;
}

/* Rows [start, start+len) of axis i[0]: x viewed as [outer, xlen, inner]. */
static int op_slice(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    int ax;
    if (!norm_axis(n->i[0], x->rank, &ax) || out->rank != x->rank)
        return node_fail(I, n, "bad axis or rank");
    int64_t start = n->i[1] < 0 ? x->shape[ax] + n->i[1] : n->i[1], len = n->i[2];
    if (start < 0 || len < 0 || start + len > x->shape[ax] || out->shape[ax] != len)
        return node_fail(I, n, "start %lld len %lld outside axis of size %lld",
                         (long long)start, (long long)len, (long long)x->shape[ax]);
    for (int d = 0; d < x->rank; d++)
        if (d != ax && out->shape[d] != x->shape[d])
            return node_fail(I, n, "output dim %d differs from the input's", d);
    int64_t outer = prod(x->shape, 0, ax), xlen = x->shape[ax];
    int64_t inner = prod(x->shape, ax + 1, x->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < inner; j++)
                out->data[(o * len + k) * inner + j] = x->data[(o * xlen + start + k) * inner + j];
    return 0;
}

/* a then b along axis i[0]: each viewed as [outer, len, inner]. */
static int op_concat(Interp *I, const Node *n, Tensor *out) {
    const Tensor *a = in_val(I, n, 0), *b = in_val(I, n, 1);
    int ax;
    if (!norm_axis(n->i[0], a->rank, &ax) || b->rank != a->rank || out->rank != a->rank)
        return node_fail(I, n, "bad axis or ranks");
    for (int d = 0; d < a->rank; d++) {
        int64_t want = d == ax ? a->shape[d] + b->shape[d] : a->shape[d];
        if ((d != ax && b->shape[d] != a->shape[d]) || out->shape[d] != want)
            return node_fail(I, n, "shapes do not concatenate on dim %d", d);
    }
    int64_t outer = prod(a->shape, 0, ax), la = a->shape[ax], lb = b->shape[ax];
    int64_t inner = prod(a->shape, ax + 1, a->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < la + lb; k++)
            for (int64_t j = 0; j < inner; j++)
                out->data[(o * (la + lb) + k) * inner + j] =
                    k < la ? a->data[(o * la + k) * inner + j]
                           : b->data[(o * lb + (k - la)) * inner + j];
    return 0;
}

/* ---- row-wise composites ------------------------------------------------------ */

/* Rows and row length of a tensor over its last axis. */
static bool last_axis_rows(const Tensor *x, int64_t *rows, int64_t *D) {
    if (x->rank < 1)
        return false;
    *D = x->shape[x->rank - 1];
    *rows = *D > 0 ? x->numel / *D : 0;
    return true;
}

/* y = x / sqrt(mean(x^2) + eps) * w over the last axis. */
static int op_rms_norm(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *w = in_val(I, n, 1);
    int64_t rows, D;
    if (!same_shape(x, out) || !last_axis_rows(x, &rows, &D) || w->numel != D)
        return node_fail(I, n, "x, w and output shapes do not agree");
    double eps = n->f[0];
    for (int64_t t = 0; t < rows; t++) {
        const double *xr = x->data + t * D;
        double ss = 0.0;
        for (int64_t j = 0; j < D; j++)
            ss += xr[j] * xr[j];
        double inv = 1.0 / sqrt(ss / (double)D + eps);
        for (int64_t j = 0; j < D; j++)
            out->data[t * D + j] = xr[j] * inv * w->data[j];
    }
    return 0;
}

/* y = (x - mean) / sqrt(var + eps) * w + b, var biased, over the last axis. */
static int op_layer_norm(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *w = in_val(I, n, 1), *b = in_val(I, n, 2);
    int64_t rows, D;
    if (!same_shape(x, out) || !last_axis_rows(x, &rows, &D) || w->numel != D || b->numel != D)
        return node_fail(I, n, "x, w, b and output shapes do not agree");
    double eps = n->f[0];
    for (int64_t t = 0; t < rows; t++) {
        const double *xr = x->data + t * D;
        double mu = 0.0, var = 0.0;
        for (int64_t j = 0; j < D; j++)
            mu += xr[j];
        mu /= (double)D;
        for (int64_t j = 0; j < D; j++)
            var += (xr[j] - mu) * (xr[j] - mu);
        var /= (double)D;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < D; j++)
            out->data[t * D + j] = (xr[j] - mu) * inv * w->data[j] + b->data[j];
    }
    return 0;
}

/* In place softmax of one row of len values; a row that is all -inf (or
 * empty) becomes zeros, by this project's definition.  A NaN or +inf makes
 * the whole row NaN (exp(NaN - m), exp(inf - inf)), as in PyTorch. */
static void softmax_row(double *v, int64_t len) {
    double m = -INFINITY;
    for (int64_t j = 0; j < len; j++)
        m = isnan(v[j]) || v[j] > m ? v[j] : m;
    if (m == -INFINITY) {
        for (int64_t j = 0; j < len; j++)
            v[j] = 0.0;
        return;
    }
    double s = 0.0;
    for (int64_t j = 0; j < len; j++) {
        v[j] = exp(v[j] - m);
        s += v[j];
    }
    for (int64_t j = 0; j < len; j++)
        v[j] /= s;
}

static int op_softmax(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    int64_t rows, D;
    if (!same_shape(x, out) || !last_axis_rows(x, &rows, &D))
        return node_fail(I, n, "input and output shapes differ");
    if (out->numel > 0)
        memcpy(out->data, x->data, (size_t)out->numel * sizeof(double));
    for (int64_t t = 0; t < rows; t++)
        softmax_row(out->data + t * D, D);
    return 0;
}

/* x [..., T, S]: (i, j) becomes -inf when key j > query i + (S - T). */
static int op_causal_mask(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    if (!same_shape(x, out) || x->rank < 2)
        return node_fail(I, n, "needs matching shapes of rank >= 2");
    int64_t T = x->shape[x->rank - 2], S = x->shape[x->rank - 1];
    int64_t mats = prod(x->shape, 0, x->rank - 2);
    for (int64_t b = 0; b < mats; b++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < S; j++) {
                int64_t e = (b * T + i) * S + j;
                out->data[e] = j > i + (S - T) ? -INFINITY : x->data[e];
            }
    return 0;
}

/* x [T, n*hd], pos [T]; Hugging Face rotate_half: the pair of element i and
 * element i + hd/2 of each head turns by pos * theta^(-2i/hd). */
static int op_rope(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *pos = in_val(I, n, 1);
    int64_t hd = n->i[0];
    double theta = n->f[0];
    if (!same_shape(x, out) || x->rank != 2 || pos->numel != x->shape[0])
        return node_fail(I, n, "x must be [T, n*hd] and pos [T]");
    int64_t T = x->shape[0], W = x->shape[1];
    if (hd <= 0 || hd % 2 != 0 || W % hd != 0)
        return node_fail(I, n, "head_dim %lld must be even and divide %lld", (long long)hd,
                         (long long)W);
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < W / hd; h++) {
            const double *xh = x->data + t * W + h * hd;
            double *yh = out->data + t * W + h * hd;
            for (int64_t i = 0; i < half; i++) {
                double inv_freq = pow(theta, -2.0 * (double)i / (double)hd);
                double ang = pos->data[t] * inv_freq;
                double x1 = xh[i], x2 = xh[i + half];
                yh[i] = x1 * cos(ang) - x2 * sin(ang);
                yh[i + half] = x2 * cos(ang) + x1 * sin(ang);
            }
        }
    }
    return 0;
}

/* q [T, H*hd], k and v [S, KVH*hd]; query head h reads kv head h / (H/KVH).
 * p = softmax_s(scale * q_t . k_s), keys s > t + (S - T) masked when causal;
 * out[t, h*hd + d] = sum_s p[s] v[s, kvh*hd + d] over the visible keys s: a
 * masked key contributes nothing (not 0 * its value row, which is NaN when
 * the row holds a NaN or an inf). */
static int op_attention(Interp *I, const Node *n, Tensor *out) {
    const Tensor *q = in_val(I, n, 0), *k = in_val(I, n, 1), *v = in_val(I, n, 2);
    const Tensor *mask = n->nin == 4 ? in_val(I, n, 3) : NULL;
    int64_t H = n->i[0], KVH = n->i[1], hd = n->i[2], W = n->i[4];
    bool causal = n->i[3] != 0;
    double scale = n->f[0], cap = n->f[1];
    if (H <= 0 || KVH <= 0 || hd <= 0 || H % KVH != 0)
        return node_fail(I, n, "heads %lld, kv_heads %lld, head_dim %lld do not fit", (long long)H,
                         (long long)KVH, (long long)hd);
    if (q->rank != 2 || k->rank != 2 || !same_shape(k, v) || !same_shape(q, out) ||
        q->shape[1] != H * hd || k->shape[1] != KVH * hd)
        return node_fail(I, n, "q must be [T, H*hd], k and v [S, KVH*hd]");
    int64_t T = q->shape[0], S = k->shape[0], group = H / KVH;
    if (mask && (mask->rank < 1 || mask->rank > 2 || mask->shape[mask->rank - 1] != S ||
                 (mask->rank == 2 && mask->shape[0] != T)))
        return node_fail(I, n, "the mask must be [S] or [T, S]");
    double *p = malloc((size_t)(S > 0 ? S : 1) * sizeof(double));
    if (!p)
        return node_fail(I, n, "out of memory for %lld scores", (long long)S); // GCOVR_EXCL_LINE: out of memory
    for (int64_t t = 0; t < T; t++) {
        const double *mrow = !mask ? NULL : mask->rank == 2 ? mask->data + t * S : mask->data;
        for (int64_t h = 0; h < H; h++) {
            int64_t kvh = h / group;
            const double *qt = q->data + t * H * hd + h * hd;
            /* keys [lo, vis) are visible: the causal mask and the window */
            int64_t vis = causal ? t + (S - T) + 1 : S;
            vis = vis < 0 ? 0 : vis > S ? S : vis;
            int64_t lo = W > 0 ? t + (S - T) - W + 1 : 0;
            lo = lo < 0 ? 0 : lo > vis ? vis : lo;
            for (int64_t s = lo; s < vis; s++) {
                const double *ks = k->data + s * KVH * hd + kvh * hd;
                double dot = 0.0;
                for (int64_t d = 0; d < hd; d++)
                    dot += qt[d] * ks[d];
                double sc = scale * dot;
                if (cap > 0)
                    sc = cap * tanh(sc / cap);
                if (mrow && n->in[3]->dtype == DT_I32)
                    sc = mrow[s] != 0 ? sc : -INFINITY;
                else if (mrow)
                    sc += mrow[s];
                p[s] = sc;
            }
            softmax_row(p + lo, vis - lo);
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int64_t s = lo; s < vis; s++)
                    acc += p[s] * v->data[s * KVH * hd + kvh * hd + d];
                out->data[t * H * hd + h * hd + d] = acc;
            }
        }
    }
    free(p);
    return 0;
}

/* ---- integers, comparisons, indexing ---------------------------------------- */

/* f32 -> i32 as cast does: toward zero, NaN 0, saturating at the range. */
static double to_i32(double x) {
    if (isnan(x))
        return 0.0;
    if (x >= 2147483647.0)
        return 2147483647.0;
    if (x <= -2147483648.0)
        return -2147483648.0;
    return trunc(x);
}

static int op_cast(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    if (!same_shape(x, out))
        return node_fail(I, n, "input and output shapes differ");
    for (int64_t e = 0; e < out->numel; e++)
        out->data[e] = n->dtype == DT_I32 && n->in[0]->dtype != DT_I32 ? to_i32(x->data[e]) : x->data[e];
    return 0;
}

static double compare(Op op, double a, double b) {
    switch (op) {
    case OP_LT: return a < b;
    case OP_LE: return a <= b;
    case OP_GT: return a > b;
    case OP_GE: return a >= b;
    case OP_EQ: return a == b;
    case OP_NE: return a != b;
    default: FU_UNREACHABLE();
    }
}

/* compare and where: every operand broadcast to out's shape. */
static int op_select(Interp *I, const Node *n, Tensor *out) {
    const Tensor *t[3];
    for (int k = 0; k < n->nin; k++) {
        t[k] = in_val(I, n, k);
        if (!broadcasts_to(t[k]->shape, t[k]->rank, out->shape, out->rank))
            return node_fail(I, n, "operands do not broadcast to the output shape");
    }
    if (out->numel == 0)
        return 0;
    int64_t idx[FU_MAX_RANK] = {0};
    int64_t e = 0;
    do {
        double v[3];
        for (int k = 0; k < n->nin; k++)
            v[k] = t[k]->data[bcast_offset(t[k]->shape, t[k]->rank, idx, out->rank)];
        out->data[e++] = n->op == OP_WHERE ? (v[0] != 0.0 ? v[1] : v[2]) : compare(n->op, v[0], v[1]);
    } while (next_index(idx, out->shape, out->rank));
    return 0;
}

/* Row ids[s] of table [V, R...]; an id outside [0, V) is an error. */
static int op_embedding(Interp *I, const Node *n, Tensor *out) {
    const Tensor *tab = in_val(I, n, 0), *ids = in_val(I, n, 1);
    if (tab->rank < 1)
        return node_fail(I, n, "the table has rank 0");
    int64_t V = tab->shape[0], R = V > 0 ? tab->numel / V : 0;
    if (out->numel != ids->numel * R)
        return node_fail(I, n, "output has %lld elements, ids %lld rows of %lld", (long long)out->numel,
                         (long long)ids->numel, (long long)R);
    /* a vocabulary-parallel table (tp.c) holds rows [i[0], i[0] + V) of i[1] */
    int64_t v0 = n->i[1] > 0 ? n->i[0] : 0, Vall = n->i[1] > 0 ? n->i[1] : V;
    for (int64_t s = 0; s < ids->numel; s++) {
        double id = ids->data[s];
        if (!(id >= 0 && id < (double)Vall))
            return node_fail(I, n, "id %.0f at element %lld is outside [0, %lld)", id, (long long)s, (long long)Vall);
        int64_t row = (int64_t)id - v0;
        for (int64_t j = 0; j < R; j++)
            out->data[s * R + j] = row >= 0 && row < V ? tab->data[row * R + j] : 0.0;
    }
    return 0;
}

/* out[..., k] = x[..., ids[..., k]] along the last axis. */
static int op_gather(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *ids = in_val(I, n, 1);
    if (x->rank < 1 || !same_shape(ids, out) || x->rank != ids->rank)
        return node_fail(I, n, "x, ids and output shapes do not agree");
    int64_t N = x->shape[x->rank - 1], K = ids->shape[ids->rank - 1];
    int64_t rows = K > 0 ? ids->numel / K : 0;
    if (rows * N != x->numel)
        return node_fail(I, n, "x and ids differ before the last axis");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            double id = ids->data[r * K + k];
            if (!(id >= 0 && id < (double)N))
                return node_fail(I, n, "id %.0f at element %lld is outside [0, %lld)", id,
                                 (long long)(r * K + k), (long long)N);
            out->data[r * K + k] = x->data[r * N + (int64_t)id];
        }
    return 0;
}

/* a comes before b in topk's order: larger first, NaN largest, ties by index. */
static bool topk_before(double a, int64_t ia, double b, int64_t ib) {
    if (isnan(a) != isnan(b))
        return isnan(a);
    if (!isnan(a) && a != b)
        return a > b;
    return ia < ib;
}

/* The indices of the k largest along the last axis, in topk's order. */
static int op_topk(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0);
    int64_t K = n->i[0];
    if (x->rank < 1 || out->rank != x->rank || out->shape[out->rank - 1] != K)
        return node_fail(I, n, "output is not [..., k]");
    int64_t N = x->shape[x->rank - 1], rows = N > 0 ? x->numel / N : 0;
    if (K < 1 || K > N)
        return node_fail(I, n, "k = %lld is outside [1, %lld]", (long long)K, (long long)N);
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x->data + r * N;
        double *yr = out->data + r * K;
        /* selection: the j-th winner is the best of those not yet taken */
        for (int64_t j = 0; j < K; j++) {
            int64_t best = -1;
            for (int64_t c = 0; c < N; c++) {
                bool taken = false;
                for (int64_t q = 0; q < j && !taken; q++)
                    taken = (int64_t)yr[q] == c;
                if (!taken && (best < 0 || topk_before(xr[c], c, xr[best], best)))
                    best = c;
            }
            yr[j] = (double)best;
        }
    }
    return 0;
}

/* The routing of moe (routed moe_up/moe_down): row t of the logits
 * [T, E] -> softmax -> the K largest (topk's order) -> their probabilities,
 * divided by their sum when norm.  ids and wts are [T, K]. */
static bool moe_route(const Tensor *logits, int64_t K, bool norm, double *ids, double *wts) {
    int64_t T = logits->shape[0], E = logits->shape[1];
    double *p = malloc((size_t)(E > 0 ? E : 1) * sizeof *p);
    if (!p)
        return false; // GCOVR_EXCL_LINE: out of memory
    for (int64_t t = 0; t < T; t++) {
        memcpy(p, logits->data + t * E, (size_t)E * sizeof *p);
        softmax_row(p, E);
        double s = 0.0;
        for (int64_t j = 0; j < K; j++) {
            int64_t best = -1;
            for (int64_t c = 0; c < E; c++) {
                bool taken = false;
                for (int64_t q = 0; q < j && !taken; q++)
                    taken = (int64_t)ids[t * K + q] == c;
                if (!taken && (best < 0 || topk_before(p[c], c, p[best], best)))
                    best = c;
            }
            ids[t * K + j] = (double)best;
            s += wts[t * K + j] = p[best];
        }
        for (int64_t j = 0; norm && j < K; j++)
            wts[t * K + j] /= s;
    }
    free(p);
    return true;
}

/* moe_up: h[t, k, i] = silu(g) * u, g and u the dot products of x[t] with
 * rows i and I + i of expert ids[t, k]'s gate_up [E, 2I, D].
 * moe_down: y[t] = sum over k of down[ids[t, k]] h[t, k] (down [E, D, I]).
 * Routed (operand 1 the router's logits [T, E], i[0] = K, i[1] = norm):
 * ids from moe_route, and moe_up's h scaled by the routing weight. */
static int op_moe(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *ids = in_val(I, n, 1), *w = in_val(I, n, 2);
    bool up = n->op == OP_MOE_UP, routed = n->in[1]->dtype == DT_F32;
    if (ids->rank != 2 || w->rank != 3 || x->rank != (up ? 2 : 3) || x->shape[0] != ids->shape[0] ||
        (routed && (ids->shape[1] != w->shape[0] || n->i[0] < 1 || n->i[0] > ids->shape[1])))
        return node_fail(I, n, "operand shapes do not agree");
    int64_t T = ids->shape[0], K = routed ? n->i[0] : ids->shape[1], E = w->shape[0];
    Tensor rt = {0};
    double *wts = NULL;
    if (routed) {
        rt.rank = 2;
        rt.shape[0] = T;
        rt.shape[1] = K;
        rt.numel = T * K;
        rt.data = malloc((size_t)(T * K > 0 ? T * K : 1) * 2 * sizeof(double));
        wts = rt.data ? rt.data + T * K : NULL;
        if (!rt.data || !moe_route(ids, K, n->i[1] != 0, rt.data, wts)) {
            free(rt.data);  // GCOVR_EXCL_LINE: out of memory
            return node_fail(I, n, "out of memory"); // GCOVR_EXCL_LINE: out of memory
        }
        ids = &rt;
    }
    int rc = 0;
    int64_t D = up ? x->shape[1] : w->shape[1], F = up ? w->shape[1] / 2 : x->shape[2];
    if (w->shape[1] != (up ? 2 * F : D) || w->shape[2] != (up ? D : F) || (!up && x->shape[1] != K) ||
        out->numel != T * (up ? K * F : D)) {
        free(rt.data);
        return node_fail(I, n, "operand shapes do not agree");
    }
    if (!up)
        memset(out->data, 0, (size_t)out->numel * sizeof(double));
    for (int64_t t = 0; t < T && rc == 0; t++)
        for (int64_t k = 0; k < K; k++) {
            double id = ids->data[t * K + k];
            if (!(id >= 0 && id < (double)E)) {
                rc = node_fail(I, n, "id %.0f at element %lld is outside [0, %lld)", id, (long long)(t * K + k),
                               (long long)E);
                break;
            }
            const double *we = w->data + (int64_t)id * w->shape[1] * w->shape[2];
            if (up) {
                const double *xr = x->data + t * D;
                for (int64_t i = 0; i < F; i++) {
                    double g = 0.0, u = 0.0;
                    for (int64_t d = 0; d < D; d++) {
                        g += we[i * D + d] * xr[d];
                        u += we[(F + i) * D + d] * xr[d];
                    }
                    out->data[(t * K + k) * F + i] = (wts ? wts[t * K + k] : 1.0) * (g * sigmoid(g) * u);
                }
            } else {
                const double *hr = x->data + (t * K + k) * F;
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int64_t i = 0; i < F; i++)
                        acc += we[d * F + i] * hr[i];
                    out->data[t * D + d] += acc;
                }
            }
        }
    free(rt.data);
    return rc;
}

/* P + t for the T rows of x (P = 0 without caches). */
static int op_positions(Interp *I, const Node *n, Tensor *out) {
    int64_t P = n->i[0] >= 0 && n->i[0] < I->g->nsyms ? I->syms[n->i[0]] : 0;
    for (int64_t t = 0; t < out->numel; t++)
        out->data[t] = (double)(P + t);
    return 0;
}

/* One rank: the sum over the ranks is x itself (+ the residual). */
static int op_allreduce(Interp *I, const Node *n, Tensor *out) {
    const Tensor *x = in_val(I, n, 0), *r = n->nin == 2 ? in_val(I, n, 1) : NULL;
    for (int64_t t = 0; t < out->numel; t++)
        out->data[t] = x->data[t] + (r ? r->data[t] : 0.0);
    return 0;
}

/* ---- state and sinks ---------------------------------------------------------- */

/* Writes x's T rows at rows [P, P+T) of the cache; yields rows [0, P+T). */
static int op_append(Interp *I, const Node *n, Tensor *out) {
    const Node *cn = n->in[0];
    const Tensor *x = in_val(I, n, 1);
    int ci;
    int64_t P, row;
    if (cn->op != OP_CACHE)
        return node_fail(I, n, "first operand is not a cache");
    if (cache_info(I, cn, &ci, &P, &row) < 0)
        return -1;
    if (x->rank < 1 || x->numel != x->shape[0] * row)
        return node_fail(I, n, "new rows do not have the cache's row size %lld", (long long)row);
    int64_t T = x->shape[0];
    if (P + T > I->a->cache_capacity)
        return fail(I, "cache capacity %lld is too small for P+T = %lld",
                    (long long)I->a->cache_capacity, (long long)(P + T));
    if (out->rank < 1 || out->shape[0] != P + T || out->numel != (P + T) * row)
        return node_fail(I, n, "result is not [P+T, ...] with the cache's rows");
    double *c = I->a->caches[ci];
    if (x->numel > 0)
        memcpy(c + P * row, x->data, (size_t)x->numel * sizeof(double));
    /* an f16 or bf16 cache keeps the rows rounded (nearest even) from float */
    for (int64_t e = 0; e < x->numel && cn->dtype != DT_F32; e++) {
        float f = (float)c[P * row + e];
        c[P * row + e] = cn->dtype == DT_F16 ? dt_f16_to_f32(dt_f32_to_f16(f)) : dt_bf16_to_f32(dt_f32_to_bf16(f));
    }
    if (out->numel > 0)
        memcpy(out->data, c, (size_t)out->numel * sizeof(double));
    return 0;
}

/* Copies the value into the caller's outputs[i]. */
static int op_output(Interp *I, const Node *n) {
    const Tensor *x = in_val(I, n, 0);
    int i = find_node(I->g->outputs, I->g->noutputs, n);
    if (i < 0)
        return node_fail(I, n, "output '%s' is not in the graph's output list", n->name);
    if (!I->a->outputs || !I->a->outputs[i])
        return node_fail(I, n, "no buffer for output '%s'", n->name);
    if (x->numel != I->val[n->id].numel)
        return node_fail(I, n, "value has %lld elements, output '%s' %lld", (long long)x->numel,
                         n->name, (long long)I->val[n->id].numel);
    if (x->numel > 0)
        memcpy(I->a->outputs[i], x->data, (size_t)x->numel * sizeof(double));
    return 0;
}

/* ---- driver ------------------------------------------------------------------- */

/* Values a float32 cannot hold become +-inf, as the float32 rounding of
 * them would (FLT_MAX and half an ulp round up to inf, anything below to
 * FLT_MAX or less). */
static void to_f32_range(Tensor *t) {
    for (int64_t e = 0; e < t->numel; e++)
        if (fabs(t->data[e]) >= 0x1.ffffffp127)
            t->data[e] = copysign(INFINITY, t->data[e]);
}

static int eval_node(Interp *I, const Node *n, Tensor *out) {
    switch (n->op) {
    case OP_INPUT: return op_input(I, n, out);
    case OP_WEIGHT: return op_weight(I, n, out);
    case OP_CONST: return op_const(I, n, out);
    case OP_CACHE: return op_cache(I, n, out);
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_RSQRT: case OP_RECIP:
    case OP_TANH: case OP_SIGMOID: case OP_SILU: case OP_GELU: case OP_GELU_TANH:
    case OP_RELU:
        return op_unary(I, n, out);
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MAXIMUM: case OP_MINIMUM:
        return op_binary(I, n, out);
    case OP_SUM: case OP_MAX: case OP_MEAN: return op_reduce(I, n, out);
    case OP_MATMUL: return op_matmul(I, n, out);
    case OP_LINEAR: return op_linear(I, n, out);
    case OP_RESHAPE: return op_reshape(I, n, out);
    case OP_TRANSPOSE: return op_transpose(I, n, out);
    case OP_SLICE: return op_slice(I, n, out);
    case OP_CONCAT: return op_concat(I, n, out);
    case OP_RMS_NORM: return op_rms_norm(I, n, out);
    case OP_LAYER_NORM: return op_layer_norm(I, n, out);
    case OP_SOFTMAX: return op_softmax(I, n, out);
    case OP_CAUSAL_MASK: return op_causal_mask(I, n, out);
    case OP_ROPE: return op_rope(I, n, out);
    case OP_ATTENTION: return op_attention(I, n, out);
    case OP_APPEND: return op_append(I, n, out);
    case OP_CONVERT: return op_reshape(I, n, out);  /* the values are exact already */
    case OP_CAST: return op_cast(I, n, out);
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE: case OP_WHERE:
        return op_select(I, n, out);
    case OP_EMBEDDING: return op_embedding(I, n, out);
    case OP_GATHER: return op_gather(I, n, out);
    case OP_TOPK: return op_topk(I, n, out);
    case OP_POSITIONS: return op_positions(I, n, out);
    case OP_ALLREDUCE: return op_allreduce(I, n, out);
    case OP_MOE_UP: case OP_MOE_DOWN: return op_moe(I, n, out);
    case OP_OUTPUT: return op_output(I, n);
    case OP_COUNT: break;
    }
    return node_fail(I, n, "unknown op %d", (int)n->op);
}

/* Checks the node's wiring, evaluates its shape and allocates its buffer. */
static int prepare(Interp *I, const Node *n, Tensor *out) {
    if (n->nin < op_info[n->op].min_in || n->nin > op_info[n->op].max_in)
        return node_fail(I, n, "%d operands", n->nin);
    for (int k = 0; k < n->nin; k++) {
        const Node *in = n->in[k];
        if (!in || in->id < 0 || in->id >= I->g->nnodes || I->g->nodes[in->id] != in ||
            !I->val[in->id].done)
            return node_fail(I, n, "operand %d is not an earlier node", k);
        if (in->op == OP_OUTPUT)
            return node_fail(I, n, "operand %d is an output", k);
    }
    if (n->rank < 0 || n->rank > FU_MAX_RANK)
        return node_fail(I, n, "rank %d", n->rank);
    out->rank = n->rank;
    out->numel = 1;
    for (int d = 0; d < n->rank; d++) {
        out->shape[d] = dim_eval(n->shape[d], I->syms);
        if (out->shape[d] < 0)
            return node_fail(I, n, "dim %d evaluates to %lld", d, (long long)out->shape[d]);
        if (out->shape[d] > 0 && out->numel > INT64_MAX / (int64_t)sizeof(double) / out->shape[d])
            return node_fail(I, n, "too many elements");
        out->numel *= out->shape[d];
    }
    if (n->op == OP_OUTPUT)
        return 0;       /* writes into the caller's buffer */
    if ((uint64_t)out->numel > SIZE_MAX / sizeof(double))
        return node_fail(I, n, "too many elements");
    out->data = malloc(out->numel > 0 ? (size_t)out->numel * sizeof(double) : 1);
    if (!out->data)
        return node_fail(I, n, "out of memory for %lld doubles", (long long)out->numel); // GCOVR_EXCL_LINE: out of memory
    return 0;
}

int interp_run(const Graph *g, const InterpArgs *a, char *err, size_t errlen) {
    Interp I;
    memset(&I, 0, sizeof I);
    I.g = g;
    I.a = a;
    I.err = err;
    I.errlen = errlen;
    if (err && errlen > 0)
        err[0] = '\0';
    if (g->nsyms < 0 || g->nsyms > FU_MAX_SYMS)
        return fail(&I, "graph has %d symbols", g->nsyms);
    for (int s = 0; s < g->nsyms; s++) {
        if (!a->syms)
            return fail(&I, "no symbol values given");
        if (a->syms[s] < 0)
            return fail(&I, "symbol %s = %lld is negative", g->sym_names[s],
                        (long long)a->syms[s]);
        I.syms[s] = a->syms[s];
    }
    if (g->nnodes <= 0)
        return 0;
    I.val = calloc((size_t)g->nnodes, sizeof *I.val);
    if (!I.val)
        return fail(&I, "out of memory for %d nodes", g->nnodes); // GCOVR_EXCL_LINE: out of memory
    int rc = 0;
    for (int k = 0; k < g->nnodes && rc == 0; k++) {
        const Node *n = g->nodes[k];
        if ((int)n->op < 0 || n->op >= OP_COUNT) {
            rc = fail(&I, "node %d has an invalid op %d", k, (int)n->op);
            break;
        }
        if (n->id != k) {
            rc = fail(&I, "node %d has id %d: ids must be dense and in order", k, n->id);
            break;
        }
        rc = prepare(&I, n, &I.val[k]);
        if (rc == 0)
            rc = eval_node(&I, n, &I.val[k]);
        if (rc == 0 && n->dtype == DT_F32 && n->op != OP_OUTPUT)
            to_f32_range(&I.val[k]);
        I.val[k].done = rc == 0;
    }
    for (int k = 0; k < g->nnodes; k++)
        free(I.val[k].data);
    free(I.val);
    return rc;
}
