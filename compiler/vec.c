/*
 * vec.c - the vector vocabulary: one mapping per ISA (ggml style).
 *
 * Kernel emitters (emit_c.c, emit_gemm.c, emit_fused.c) write each loop once
 * against a small vocabulary - load, store, masked tail load/store, set1,
 * add/sub/mul/div/max/min, fma, horizontal sum/max and the unary ops of
 * ops.def - and this file turns every word into C text for one ISA.  The
 * table `isas` holds the intrinsic spelling of each word, with $1 $2 $3 for
 * the operands; words that need several intrinsics (tails, reductions, the
 * transcendental functions) become static inline helpers named
 * fu_<what>_<tag> that v_prelude writes once per target row into the generated
 * file ($T in a template is the row's tag, so rows that share an ISA can
 * share a file).
 *
 * The transcendental helpers are written once below, as templates over the
 * same table (plus a few integer and mask words that only they need), so
 * AVX2, AVX-512 and NEON run the same algorithm:
 *   exp      Cephes expf: n = round(x log2 e), Cody-Waite reduction in two
 *            steps, degree-7 polynomial, scale by 2^n as two factors so that
 *            overflow gives inf and results near underflow stay correct
 *   log      Cephes logf: exponent/mantissa split, degree-9 polynomial;
 *            0 -> -inf, < 0 -> NaN, inf -> inf, denormals rescaled
 *   tanh     Cephes tanhf: odd polynomial for |x| < 0.625, else
 *            1 - 2 / (exp(2|x|) + 1) with x's sign
 *   sigmoid  1 / (1 + exp(-x)); silu x / (1 + exp(-x))
 *   gelu     0.5 x erfc(-x / sqrt 2), erfc from the Chebyshev fit of
 *            Numerical Recipes (erfcc, fractional error < 1.2e-7)
 *   gelu_tanh  x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), which
 *            equals 0.5 x (1 + tanh u) without its cancellation for x < 0
 *   rsqrt    1 / sqrt(x) with the exact square root (not the 12-bit estimate)
 * The generic target maps everything to scalar C and libm (expf, logf,
 * tanhf), with gelu_tanh in the same cancellation-free form and gelu by the
 * same erfc algorithm (libm's erff form cancels for x < 0).  The measured errors against libm are in docs/targets.md, and
 * tests/unit/test_vec.c holds every ISA that runs on the test machine to them.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

typedef struct VecIsa {
    const char *type, *itype, *mtype;   /* float vector, int32 vector, lane mask */
    const char *load, *store, *set1, *zero;
    const char *add, *sub, *mul, *div, *fma, *sqrt, *neg;
    /* max/min: the larger/smaller, NaN when $2 is NaN (when $1 is, $2 or
     * NaN): one instruction, for the templates and relu (max(0, x)).
     * maxnan/minnan: NaN when either is NaN (maximum and minimum).
     * maxacc: for accumulators that are never NaN: a NaN in $1 is skipped or
     * kept, whichever is cheaper. */
    const char *max, *min, *maxnan, *minnan, *maxacc;
    const char *hsum, *hmax;
    /* only the math templates use these */
    const char *round, *f2i, *i2f, *fasi, *iasf, *iadd, *isub, *iset1, *iand, *ior, *sra, *sll;
    const char *lt, *eq, *isnan_, *sel;  /* sel($1 mask, $2 if set, $3 if clear) */
    const char *fma1;                   /* a fused multiply-add even in scalar C (fmaf) */
    const char *iota;
} VecIsa;

/* Indexed by Isa. */
static const VecIsa isas[] = {
    [ISA_GENERIC] = {
        .type = "float", .itype = "int32_t", .mtype = "int",
        .load = "(*($1))", .store = "(*($1) = ($2))", .set1 = "($1)", .zero = "0.0f",
        .add = "($1 + $2)", .sub = "($1 - $2)", .mul = "($1 * $2)", .div = "($1 / $2)",
        .max = "fu_max_generic($1, $2)", .min = "fu_min_generic($1, $2)",
        .maxnan = "fu_maxnan_generic($1, $2)", .minnan = "fu_minnan_generic($1, $2)",
        .maxacc = "fu_max_generic($1, $2)",
        .fma = "($1 * $2 + $3)", .fma1 = "fmaf($1, $2, $3)", .sqrt = "sqrtf($1)", .neg = "(-($1))",
        .hsum = "($1)", .hmax = "($1)",
        .round = "rintf($1)", .f2i = "((int32_t)($1))", .i2f = "((float)($1))",
        .fasi = "fu_fasi_generic($1)", .iasf = "fu_iasf_generic($1)",
        .iadd = "($1 + $2)", .isub = "($1 - $2)", .iset1 = "((int32_t)($1))",
        .iand = "($1 & $2)", .ior = "($1 | $2)", .sra = "($1 >> $2)",
        .sll = "((int32_t)((uint32_t)($1) << $2))",
        .lt = "($1 < $2)", .eq = "($1 == $2)", .isnan_ = "($1 != $1)", .sel = "($1 ? $2 : $3)",
        .iota = "0.0f",
    },
    [ISA_AVX2] = {
        .type = "__m256", .itype = "__m256i", .mtype = "__m256",
        .load = "_mm256_loadu_ps($1)", .store = "_mm256_storeu_ps($1, $2)",
        .set1 = "_mm256_set1_ps($1)", .zero = "_mm256_setzero_ps()",
        .add = "_mm256_add_ps($1, $2)", .sub = "_mm256_sub_ps($1, $2)",
        .mul = "_mm256_mul_ps($1, $2)", .div = "_mm256_div_ps($1, $2)",
        /* maxps/minps return the second operand when either is NaN: exactly
         * `a > b ? a : b` and `a < b ? a : b`. */
        .max = "_mm256_max_ps($1, $2)", .min = "_mm256_min_ps($1, $2)",
        .maxnan = "fu_maxnan_$T($1, $2)", .minnan = "fu_minnan_$T($1, $2)",
        .maxacc = "_mm256_max_ps($1, $2)",
        .fma = "_mm256_fmadd_ps($1, $2, $3)", .fma1 = "_mm256_fmadd_ps($1, $2, $3)", .sqrt = "_mm256_sqrt_ps($1)",
        .neg = "_mm256_xor_ps($1, _mm256_set1_ps(-0.0f))",
        .hsum = "fu_hsum_$T($1)", .hmax = "fu_hmax_$T($1)",
        .round = "_mm256_round_ps($1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
        .f2i = "_mm256_cvttps_epi32($1)", .i2f = "_mm256_cvtepi32_ps($1)",
        .fasi = "_mm256_castps_si256($1)", .iasf = "_mm256_castsi256_ps($1)",
        .iadd = "_mm256_add_epi32($1, $2)", .isub = "_mm256_sub_epi32($1, $2)",
        .iset1 = "_mm256_set1_epi32($1)", .iand = "_mm256_and_si256($1, $2)",
        .ior = "_mm256_or_si256($1, $2)", .sra = "_mm256_srai_epi32($1, $2)",
        .sll = "_mm256_slli_epi32($1, $2)",
        .lt = "_mm256_cmp_ps($1, $2, _CMP_LT_OQ)", .eq = "_mm256_cmp_ps($1, $2, _CMP_EQ_OQ)",
        .isnan_ = "_mm256_cmp_ps($1, $1, _CMP_UNORD_Q)", .sel = "_mm256_blendv_ps($3, $2, $1)",
        .iota = "_mm256_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f)",
    },
    [ISA_AVX512] = {
        .type = "__m512", .itype = "__m512i", .mtype = "__mmask16",
        .load = "_mm512_loadu_ps($1)", .store = "_mm512_storeu_ps($1, $2)",
        .set1 = "_mm512_set1_ps($1)", .zero = "_mm512_setzero_ps()",
        .add = "_mm512_add_ps($1, $2)", .sub = "_mm512_sub_ps($1, $2)",
        .mul = "_mm512_mul_ps($1, $2)", .div = "_mm512_div_ps($1, $2)",
        .max = "_mm512_max_ps($1, $2)", .min = "_mm512_min_ps($1, $2)",
        .maxnan = "fu_maxnan_$T($1, $2)", .minnan = "fu_minnan_$T($1, $2)",
        .maxacc = "_mm512_max_ps($1, $2)",
        .fma = "_mm512_fmadd_ps($1, $2, $3)", .fma1 = "_mm512_fmadd_ps($1, $2, $3)", .sqrt = "_mm512_sqrt_ps($1)",
        /* _mm512_xor_ps needs AVX512DQ; the integer xor is AVX512F */
        .neg = "_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512($1), "
               "_mm512_set1_epi32((int)0x80000000u)))",
        .hsum = "_mm512_reduce_add_ps($1)", .hmax = "fu_hmax_$T($1)",
        .round = "_mm512_roundscale_ps($1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
        .f2i = "_mm512_cvttps_epi32($1)", .i2f = "_mm512_cvtepi32_ps($1)",
        .fasi = "_mm512_castps_si512($1)", .iasf = "_mm512_castsi512_ps($1)",
        .iadd = "_mm512_add_epi32($1, $2)", .isub = "_mm512_sub_epi32($1, $2)",
        .iset1 = "_mm512_set1_epi32($1)", .iand = "_mm512_and_si512($1, $2)",
        .ior = "_mm512_or_si512($1, $2)", .sra = "_mm512_srai_epi32($1, $2)",
        .sll = "_mm512_slli_epi32($1, $2)",
        .lt = "_mm512_cmp_ps_mask($1, $2, _CMP_LT_OQ)", .eq = "_mm512_cmp_ps_mask($1, $2, _CMP_EQ_OQ)",
        .isnan_ = "_mm512_cmp_ps_mask($1, $1, _CMP_UNORD_Q)", .sel = "_mm512_mask_blend_ps($1, $3, $2)",
        .iota = "_mm512_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f, 9.0f, "
                "10.0f, 11.0f, 12.0f, 13.0f, 14.0f, 15.0f)",
    },
    [ISA_NEON] = {
        .type = "float32x4_t", .itype = "int32x4_t", .mtype = "uint32x4_t",
        .load = "vld1q_f32($1)", .store = "vst1q_f32($1, $2)",
        .set1 = "vdupq_n_f32($1)", .zero = "vdupq_n_f32(0.0f)",
        .add = "vaddq_f32($1, $2)", .sub = "vsubq_f32($1, $2)",
        .mul = "vmulq_f32($1, $2)", .div = "vdivq_f32($1, $2)",
        /* FMAX/FMIN (and FMAXV) return NaN when either operand is NaN */
        .max = "vmaxq_f32($1, $2)", .min = "vminq_f32($1, $2)",
        .maxnan = "vmaxq_f32($1, $2)", .minnan = "vminq_f32($1, $2)", .maxacc = "vmaxq_f32($1, $2)",
        .fma = "vfmaq_f32($3, $1, $2)", .fma1 = "vfmaq_f32($3, $1, $2)", .sqrt = "vsqrtq_f32($1)", .neg = "vnegq_f32($1)",
        .hsum = "vaddvq_f32($1)", .hmax = "vmaxvq_f32($1)",
        .round = "vrndnq_f32($1)", .f2i = "vcvtq_s32_f32($1)", .i2f = "vcvtq_f32_s32($1)",
        .fasi = "vreinterpretq_s32_f32($1)", .iasf = "vreinterpretq_f32_s32($1)",
        .iadd = "vaddq_s32($1, $2)", .isub = "vsubq_s32($1, $2)", .iset1 = "vdupq_n_s32($1)",
        .iand = "vandq_s32($1, $2)", .ior = "vorrq_s32($1, $2)", .sra = "vshrq_n_s32($1, $2)",
        .sll = "vshlq_n_s32($1, $2)",
        .lt = "vcltq_f32($1, $2)", .eq = "vceqq_f32($1, $2)",
        .isnan_ = "vmvnq_u32(vceqq_f32($1, $1))", .sel = "vbslq_f32($1, $2, $3)",
        .iota = "fu_iota_$T()",
    },
};

static const VecIsa *isa(const Target *t) {
    FU_ASSERT(t && t->nvariants == 0 && (size_t)t->isa < sizeof isas / sizeof isas[0]);
    return &isas[t->isa];
}

/* The template with $1, $2, $3 replaced by a, b, c (arena string). */
static const char *subst(const char *tag, const char *tmpl, const char *a, const char *b, const char *c) {
    Buf o = {0};
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '$' && p[1] == 'T') {
            buf_puts(&o, tag);
            p++;
        } else if (p[0] == '$' && p[1] >= '1' && p[1] <= '3') {
            const char *arg = p[1] == '1' ? a : p[1] == '2' ? b : c;
            FU_ASSERT(arg);
            buf_puts(&o, arg);
            p++;
        } else {
            buf_printf(&o, "%c", *p);
        }
    }
    const char *s = fu_strdup(o.data ? o.data : "");
    free(o.data);
    return s;
}

#define S1(t, f, a) subst((t)->tag, isa(t)->f, a, NULL, NULL)
#define S2(t, f, a, b) subst((t)->tag, isa(t)->f, a, b, NULL)
#define S3(t, f, a, b, c) subst((t)->tag, isa(t)->f, a, b, c)

/* ---- the vocabulary ---------------------------------------------------------- */

const char *v_type(const Target *t) { return isa(t)->type; }
/* Scalar C reads "x + i" as x[i]: the generic target's loops look hand-written. */
static const char *subscript(const char *ptr) {
    const char *p = ptr;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
        return NULL;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')
        p++;
    if (strncmp(p, " + ", 3) != 0 || strchr(p + 3, ',') || strchr(p + 3, '?'))
        return NULL;
    return fu_format("%.*s[%s]", (int)(p - ptr), ptr, p + 3);
}

const char *v_load(const Target *t, const char *ptr) {
    const char *s = t->isa == ISA_GENERIC ? subscript(ptr) : NULL;
    return s ? s : S1(t, load, ptr);
}
const char *v_store(const Target *t, const char *ptr, const char *val) {
    const char *s = t->isa == ISA_GENERIC ? subscript(ptr) : NULL;
    return s ? fu_format("%s = %s", s, val) : S2(t, store, ptr, val);
}
const char *v_set1(const Target *t, const char *x) { return S1(t, set1, x); }
const char *v_zero(const Target *t) { return isa(t)->zero; }
const char *v_fma(const Target *t, const char *a, const char *b, const char *c) {
    return S3(t, fma, a, b, c);
}
const char *v_hsum(const Target *t, const char *v) { return S1(t, hsum, v); }
const char *v_hmax(const Target *t, const char *v) { return S1(t, hmax, v); }
const char *v_max_acc(const Target *t, const char *x, const char *acc) { return S2(t, maxacc, x, acc); }
const char *v_norm_stats(const Target *t, const char *x, const char *n, bool center, double eps, const char *mu,
                         const char *lo, const char *inv) {
    return fu_format("fu_norm_stats_%s(%s, %s, %d, %s, &%s, &%s, &%s)", t->tag, x, n, center ? 1 : 0,
                     c_double_lit(eps), mu, lo, inv);
}
const char *v_iota(const Target *t) { return subst(t->tag, isa(t)->iota, NULL, NULL, NULL); }

const char *v_select_lt(const Target *t, const char *a, const char *b, const char *x, const char *y) {
    return S3(t, sel, S2(t, lt, a, b), x, y);
}

const char *v_load_n(const Target *t, const char *ptr, const char *n, const char *fill) {
    if (!fill)
        fill = "0.0f";
    switch (t->isa) {
    case ISA_GENERIC: return fu_format("((%s) > 0 ? *(%s) : (%s))", n, ptr, fill);
    case ISA_AVX512:
        return fu_format("_mm512_mask_loadu_ps(_mm512_set1_ps(%s), (__mmask16)((1u << (unsigned)(%s)) - 1u), %s)",
                         fill, n, ptr);
    default: return fu_format("fu_load_n_%s(%s, (int)(%s), %s)", t->tag, ptr, n, fill);
    }
}

const char *v_store_n(const Target *t, const char *ptr, const char *val, const char *n) {
    switch (t->isa) {
    case ISA_GENERIC: return fu_format("((%s) > 0 ? (void)(*(%s) = (%s)) : (void)0)", n, ptr, val);
    case ISA_AVX512:
        return fu_format("_mm512_mask_storeu_ps(%s, (__mmask16)((1u << (unsigned)(%s)) - 1u), %s)", ptr,
                         n, val);
    default: return fu_format("fu_store_n_%s(%s, %s, (int)(%s))", t->tag, ptr, val, n);
    }
}

const char *v_bin(const Target *t, Op op, const char *a, const char *b) {
    switch (op) {
    case OP_ADD: return S2(t, add, a, b);
    case OP_SUB: return S2(t, sub, a, b);
    case OP_MUL: return S2(t, mul, a, b);
    case OP_DIV: return S2(t, div, a, b);
    case OP_MAXIMUM: return S2(t, maxnan, a, b);
    case OP_MINIMUM: return S2(t, minnan, a, b);
    default: fu_internal(__FILE__, __LINE__, "v_bin: '%s' is not binary", op_info[op].name);
    }
}

const char *v_unary(const Target *t, Op op, const char *a) {
    const char *tag = t->tag;
    switch (op) {
    case OP_NEG: return S1(t, neg, a);
    case OP_SQRT: return S1(t, sqrt, a);
    case OP_RECIP: return S2(t, div, v_set1(t, "1.0f"), a);
    case OP_RSQRT: return S2(t, div, v_set1(t, "1.0f"), S1(t, sqrt, a));
    /* relu(NaN) is NaN: max(0, a) returns a NaN second operand, in one instruction */
    case OP_RELU: return S2(t, max, v_zero(t), a);
    case OP_EXP: return fu_format("fu_exp_%s(%s)", tag, a);
    case OP_LOG: return fu_format("fu_log_%s(%s)", tag, a);
    case OP_TANH: return fu_format("fu_tanh_%s(%s)", tag, a);
    case OP_SIGMOID: return fu_format("fu_sigmoid_%s(%s)", tag, a);
    case OP_SILU: return fu_format("fu_silu_%s(%s)", tag, a);
    case OP_GELU: return fu_format("fu_gelu_%s(%s)", tag, a);
    case OP_GELU_TANH: return fu_format("fu_gelu_tanh_%s(%s)", tag, a);
    default: fu_internal(__FILE__, __LINE__, "v_unary: '%s' is not unary", op_info[op].name);
    }
}

/* "AVX2" for tag "avx2". */
static const char *upper(const char *s) {
    char *u = fu_strdup(s);
    for (char *p = u; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return u;
}

const char *v_attr(const Target *t) {
    if (isa(t) && t->attr[0] == '\0')
        return "";
    return fu_format("FU_ATTR_%s ", upper(t->tag));
}

/* ---- the prelude -------------------------------------------------------------- */

/* Shorthands for the templates below: they read like the C they write. */
#define K(x) v_set1(t, x)
#define ADD(a, b) S2(t, add, a, b)
#define SUB(a, b) S2(t, sub, a, b)
#define MUL(a, b) S2(t, mul, a, b)
#define DIV(a, b) S2(t, div, a, b)
#define MAX(a, b) S2(t, max, a, b)
#define MIN(a, b) S2(t, min, a, b)
#define FMA(a, b, c) S3(t, fma, a, b, c)
#define NEG(a) S1(t, neg, a)
#define SEL(m, a, b) S3(t, sel, m, a, b)
#define LT(a, b) S2(t, lt, a, b)
#define EQ(a, b) S2(t, eq, a, b)
#define ISNAN(a) S1(t, isnan_, a)
#define FASI(a) S1(t, fasi, a)
#define IASF(a) S1(t, iasf, a)
#define IAND(a, b) S2(t, iand, a, b)
#define IOR(a, b) S2(t, ior, a, b)
#define IADD(a, b) S2(t, iadd, a, b)
#define ISUB(a, b) S2(t, isub, a, b)
#define ISET1(a) S1(t, iset1, a)
#define SRA(a, n) S2(t, sra, a, n)
#define SLL(a, n) S2(t, sll, a, n)
#define EXPV(a) fu_format("fu_exp_%s(%s)", t->tag, a)

/* "static FU_ATTR_AVX2 inline __m256 fu_NAME_avx2(__m256 x) {" */
static void fn_open(Buf *b, const Target *t, const char *ret, const char *name, const char *params) {
    buf_printf(b, "static %sinline %s fu_%s_%s(%s) {\n", v_attr(t), ret, name, t->tag, params);
}

#define L(...) (buf_puts(b, "    "), buf_printf(b, __VA_ARGS__), buf_puts(b, "\n"))

/* Horner's rule: acc = c[0]; acc = acc * x + c[i] ... */
static void horner(Buf *b, const Target *t, const char *acc, const char *x, const char *const *c, int n) {
    L("%s = %s;", acc, K(c[0]));
    for (int i = 1; i < n; i++)
        L("%s = %s;", acc, FMA(acc, x, K(c[i])));
}

static void prelude_exp(Buf *b, const Target *t) {
    static const char *const c[] = {"1.9875691500e-4f", "1.3981999507e-3f", "8.3334519073e-3f",
                                    "4.1665795894e-2f", "1.6666665459e-1f", "5.0000001201e-1f"};
    const char *T = isa(t)->type, *I = isa(t)->itype;
    buf_puts(b, "/* e^x: Cephes expf (n = round(x log2 e), r = x - n ln 2 in two steps,\n"
                " * e^r by a polynomial, times 2^n as two factors: overflow gives inf, the\n"
                " * subnormal range rounds once).  NaN stays NaN (the clamps keep it). */\n");
    fn_open(b, t, T, "exp", fu_format("%s x", T));
    L("%s n, r, p;", T);
    L("%s ni, n1;", I);
    L("x = %s;", MAX(K("-104.0f"), "x"));
    L("x = %s;", MIN(K("89.0f"), "x"));
    L("n = %s;", S1(t, round, MUL("x", K("1.44269504088896341f"))));
    L("r = %s;", FMA("n", K("-0.693359375f"), "x"));
    L("r = %s;", FMA("n", K("2.12194440e-4f"), "r"));
    horner(b, t, "p", "r", c, 6);
    L("p = %s;", FMA("p", MUL("r", "r"), ADD("r", K("1.0f"))));
    L("ni = %s;", S1(t, f2i, "n"));
    L("n1 = %s;", SRA("ni", "1"));
    L("p = %s;", MUL("p", IASF(SLL(IADD("n1", ISET1("127")), "23"))));
    L("return %s;", MUL("p", IASF(SLL(IADD(ISUB("ni", "n1"), ISET1("127")), "23"))));
    buf_puts(b, "}\n\n");
}

static void prelude_log(Buf *b, const Target *t) {
    static const char *const c[] = {"7.0376836292e-2f", "-1.1514610310e-1f", "1.1676998740e-1f",
                                    "-1.2420140846e-1f", "1.4249322787e-1f", "-1.6668057665e-1f",
                                    "2.0000714765e-1f", "-2.4999993993e-1f", "3.3333331174e-1f"};
    const char *T = isa(t)->type, *I = isa(t)->itype, *M = isa(t)->mtype;
    buf_puts(b, "/* log x: Cephes logf (x = m 2^e with m in [sqrt(1/2), sqrt 2), log(m) by a\n"
                " * polynomial in m - 1); subnormals are scaled by 2^23 first; 0 -> -inf,\n"
                " * x < 0 -> NaN, inf -> inf, NaN -> NaN. */\n");
    fn_open(b, t, T, "log", fu_format("%s x", T));
    L("%s m, e, z, y, r;", T);
    L("%s bits;", I);
    L("%s tiny = %s, big;", M, LT("x", K("1.17549435e-38f")));
    L("bits = %s;", FASI(SEL("tiny", MUL("x", K("8388608.0f")), "x")));
    L("e = %s;", S1(t, i2f, ISUB(SRA("bits", "23"), ISET1("127"))));
    L("e = %s;", SEL("tiny", SUB("e", K("23.0f")), "e"));
    L("m = %s;", IASF(IOR(IAND("bits", ISET1("0x007fffff")), ISET1("0x3f800000"))));
    L("big = %s;", LT(K("1.41421356f"), "m"));
    L("m = %s;", SEL("big", FMA("m", K("0.5f"), K("-1.0f")), SUB("m", K("1.0f"))));
    L("e = %s;", SEL("big", ADD("e", K("1.0f")), "e"));
    L("z = %s;", MUL("m", "m"));
    horner(b, t, "y", "m", c, 9);
    L("y = %s;", MUL(MUL("y", "m"), "z"));
    L("y = %s;", FMA("e", K("-2.12194440e-4f"), "y"));
    L("y = %s;", FMA("z", K("-0.5f"), "y"));
    L("r = %s;", ADD("m", "y"));
    L("r = %s;", FMA("e", K("0.693359375f"), "r"));
    L("r = %s;", SEL(EQ("x", K("INFINITY")), "x", "r"));
    L("r = %s;", SEL(EQ("x", v_zero(t)), K("-INFINITY"), "r"));
    L("r = %s;", SEL(LT("x", v_zero(t)), K("NAN"), "r"));
    L("return %s;", SEL(ISNAN("x"), "x", "r"));
    buf_puts(b, "}\n\n");
}

static void prelude_tanh(Buf *b, const Target *t) {
    static const char *const c[] = {"-5.70498872745e-3f", "2.06390887954e-2f", "-5.37397155531e-2f",
                                    "1.33314422036e-1f", "-3.33332819422e-1f"};
    const char *T = isa(t)->type, *I = isa(t)->itype;
    buf_puts(b, "/* tanh x: Cephes tanhf (an odd polynomial below 0.625, else\n"
                " * 1 - 2 / (e^2|x| + 1) with the sign of x). */\n");
    fn_open(b, t, T, "tanh", fu_format("%s x", T));
    L("%s a, z, p, q;", T);
    L("%s sign = %s;", I, IAND(FASI("x"), ISET1("(-2147483647 - 1)")));
    L("a = %s;", IASF(IAND(FASI("x"), ISET1("0x7fffffff"))));
    L("z = %s;", MUL("x", "x"));
    horner(b, t, "p", "z", c, 5);
    L("p = %s;", FMA(MUL("p", "z"), "x", "x"));
    L("q = %s;", SUB(K("1.0f"), DIV(K("2.0f"), ADD(EXPV(ADD("a", "a")), K("1.0f")))));
    L("q = %s;", IASF(IOR(FASI("q"), "sign")));
    L("return %s;", SEL(LT("a", K("0.625f")), "p", "q"));
    buf_puts(b, "}\n\n");
}

static void prelude_gelu(Buf *b, const Target *t) {
    /* Numerical Recipes erfcc: erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) */
    static const char *const c[] = {"0.17087277f", "-0.82215223f", "1.48851587f", "-1.13520398f",
                                    "0.27886807f", "-0.18628806f", "0.09678418f", "0.37409196f",
                                    "1.00002368f", "-1.26551223f"};
    const char *T = isa(t)->type;
    buf_puts(b, "/* gelu x = x - x h or x h (x < 0), h = erfc(|x| / sqrt 2) / 2 from the Chebyshev\n"
                " * fit of Numerical Recipes (erfcc, relative error < 1.2e-7).  z^2 = x^2 / 2 is\n"
                " * carried as hi + lo (fma) and e^-hi e^(P - lo) taken separately, so the\n"
                " * rounding of z^2 does not grow the error of the tail. */\n");
    fn_open(b, t, T, "gelu", fu_format("%s x", T));
    L("%s ax, z, u, xx, hi, lo, p, h, r;", T);
    L("ax = %s;", IASF(IAND(FASI("x"), ISET1("0x7fffffff"))));
    L("z = %s;", MUL("ax", K("0.707106781f")));
    L("u = %s;", DIV(K("1.0f"), FMA("z", K("0.5f"), K("1.0f"))));
    L("xx = %s;", MUL("x", "x"));
    L("hi = %s;", MUL("xx", K("0.5f")));
    L("lo = %s;", MUL(S3(t, fma1, "x", "x", NEG("xx")), K("0.5f")));
    horner(b, t, "p", "u", c, 10);
    L("h = %s;", MUL(MUL("u", K("0.5f")), MUL(EXPV(NEG("hi")), EXPV(SUB("p", "lo")))));
    L("r = %s;", SEL(LT("x", v_zero(t)), MUL("x", "h"), FMA(NEG("x"), "h", "x")));
    L("r = %s;", SEL(LT("x", K("-14.0f")), MUL("x", v_zero(t)), "r"));
    L("return %s;", SEL(LT(K("10.0f"), "x"), "x", "r"));
    buf_puts(b, "}\n\n");
}

static void prelude_simple(Buf *b, const Target *t) {
    const char *T = isa(t)->type;
    buf_puts(b, "/* sigmoid x = 1 / (1 + e^-x), silu x = x / (1 + e^-x), gelu_tanh x =\n"
                " * x / (1 + e^-2u) with u = sqrt(2/pi) (x + 0.044715 x^3), the same as\n"
                " * x (1 + tanh u) / 2 without its cancellation for x < 0. */\n");
    fn_open(b, t, T, "sigmoid", fu_format("%s x", T));
    L("return %s;", DIV(K("1.0f"), ADD(K("1.0f"), EXPV(NEG("x")))));
    buf_puts(b, "}\n\n");
    fn_open(b, t, T, "silu", fu_format("%s x", T));
    L("return %s;", DIV("x", ADD(K("1.0f"), EXPV(NEG("x")))));
    buf_puts(b, "}\n\n");
    fn_open(b, t, T, "gelu_tanh", fu_format("%s x", T));
    L("%s u = %s;", T, MUL(K("-1.59576912f"), FMA(MUL(K("0.044715f"), "x"), MUL("x", "x"), "x")));
    L("return %s;", DIV("x", ADD(K("1.0f"), EXPV("u"))));
    buf_puts(b, "}\n\n");
}

/* The ISA-specific helpers: tails, horizontal reductions, x86's NaN-propagating max/min. */
static void prelude_isa(Buf *b, const Target *t) {
    switch (t->isa) {
    case ISA_AVX2:
        buf_puts(b, "/* Lanes [0, n) of a tail: maskload/maskstore never touch the others. */\n");
        fn_open(b, t, "__m256i", "tailmask", "int n");
        L("return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "__m256", "load_n", "const float *p, int n, float fill");
        L("__m256i m = fu_tailmask_%s(n);", t->tag);
        L("return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "void", "store_n", "float *p, __m256 v, int n");
        L("_mm256_maskstore_ps(p, fu_tailmask_%s(n), v);", t->tag);
        buf_puts(b, "}\n\n");
        fn_open(b, t, "float", "hsum", "__m256 v");
        L("__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));");
        L("s = _mm_add_ps(s, _mm_movehl_ps(s, s));");
        L("s = _mm_add_ss(s, _mm_movehdup_ps(s));");
        L("return _mm_cvtss_f32(s);");
        buf_puts(b, "}\n\n");
        buf_puts(b, "/* The largest lane; NaN when any lane is NaN. */\n");
        fn_open(b, t, "float", "hmax", "__m256 v");
        L("__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));");
        L("s = _mm_max_ps(s, _mm_movehl_ps(s, s));");
        L("s = _mm_max_ss(s, _mm_movehdup_ps(s));");
        L("return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) ? NAN : _mm_cvtss_f32(s);");
        buf_puts(b, "}\n\n");
        buf_puts(b, "/* maximum and minimum: NaN when either lane is NaN (maxps alone returns\n"
                    " * the second operand); the all-ones lane of the compare is a NaN. */\n");
        fn_open(b, t, "__m256", "maxnan", "__m256 a, __m256 b");
        L("return _mm256_or_ps(_mm256_max_ps(a, b), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "__m256", "minnan", "__m256 a, __m256 b");
        L("return _mm256_or_ps(_mm256_min_ps(a, b), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));");
        buf_puts(b, "}\n\n");
        break;
    case ISA_AVX512:
        buf_puts(b, "/* The largest lane; NaN when any lane is NaN (the reduction alone\n"
                    " * returns whichever its order of maxps gives). */\n");
        fn_open(b, t, "float", "hmax", "__m512 v");
        L("return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) ? NAN : _mm512_reduce_max_ps(v);");
        buf_puts(b, "}\n\n");
        buf_puts(b, "/* maximum and minimum: max(a, b) (a NaN b returned) where a is ordered,\n"
                    " * a (NaN) elsewhere. */\n");
        fn_open(b, t, "__m512", "maxnan", "__m512 a, __m512 b");
        L("return _mm512_mask_max_ps(a, _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a, b);");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "__m512", "minnan", "__m512 a, __m512 b");
        L("return _mm512_mask_min_ps(a, _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a, b);");
        buf_puts(b, "}\n\n");
        break;
    case ISA_NEON:
        buf_puts(b, "/* Tails go through a small array: NEON has no masked load or store. */\n");
        fn_open(b, t, "float32x4_t", "load_n", "const float *p, int n, float fill");
        L("float a[4];");
        L("for (int i = 0; i < 4; i++)");
        L("    a[i] = i < n ? p[i] : fill;");
        L("return vld1q_f32(a);");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "void", "store_n", "float *p, float32x4_t v, int n");
        L("float a[4];");
        L("vst1q_f32(a, v);");
        L("for (int i = 0; i < n; i++)");
        L("    p[i] = a[i];");
        buf_puts(b, "}\n\n");
        fn_open(b, t, "float32x4_t", "iota", "void");
        L("static const float i[4] = {0.0f, 1.0f, 2.0f, 3.0f};");
        L("return vld1q_f32(i);");
        buf_puts(b, "}\n\n");
        break;
    default:
        break;
    }
}

/* The rescue of a norm's row statistics (v_norm_stats): scalar C in double,
 * whose range holds the square of any float.  Written for every ISA (with
 * its attribute, so a multi-target file needs nothing else). */
static void prelude_norm_stats(Buf *b, const Target *t) {
    buf_puts(b, "/* A norm's row statistics in double, for the rare rows whose float sums\n"
                " * overflow (|x| above about 1e19) or underflow: mean (center) as mu + lo,\n"
                " * the float mean and the rest, and 1 / sqrt(var + eps). */\n");
    fn_open(b, t, "void", "norm_stats",
            "const float *x, int64_t n, int center, double eps, float *mu, float *lo, float *inv");
    L("double m = 0.0, ss = 0.0;");
    L("int64_t j;");
    L("if (center) {");
    L("    for (j = 0; j < n; ++j)");
    L("        m += x[j];");
    L("    m /= (double)n;");
    L("}");
    L("for (j = 0; j < n; ++j)");
    L("    ss += ((double)x[j] - m) * ((double)x[j] - m);");
    L("*mu = (float)m;");
    L("*lo = (float)(m - (double)*mu);");
    L("*inv = (float)(1.0 / sqrt(ss / (double)n + eps));");
    buf_puts(b, "}\n\n");
}

/* generic: scalar C with libm, as the interpreter defines each op. */
static void prelude_generic(Buf *b) {
    static const char *const fns[][2] = {
        {"max", "return a > b ? a : b;"},
        {"min", "return a < b ? a : b;"},
        {"maxnan", "return a != a || a > b ? a : b;"},
        {"minnan", "return a != a || a < b ? a : b;"},
    };
    static const char *const un[][2] = {
        {"exp", "expf(x)"},
        {"log", "logf(x)"},
        {"tanh", "tanhf(x)"},
        {"sigmoid", "1.0f / (1.0f + expf(-x))"},
        {"silu", "x / (1.0f + expf(-x))"},
        /* the sigmoid form: 1 + tanh(u) cancels for x < 0 (gelu: see below) */
        {"gelu_tanh", "x / (1.0f + expf(-1.59576912f * (x + 0.044715f * x * x * x)))"},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        buf_printf(b, "static inline float fu_%s_generic(float a, float b) {\n    %s\n}\n", fns[i][0],
                   fns[i][1]);
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++)
        buf_printf(b, "static inline float fu_%s_generic(float x) {\n    return %s;\n}\n", un[i][0],
                   un[i][1]);
    /* The float bits, for the gelu template (memcpy: no aliasing games). */
    buf_puts(b, "static inline int32_t fu_fasi_generic(float x) {\n    int32_t i;\n"
                "    memcpy(&i, &x, sizeof i);\n    return i;\n}\n"
                "static inline float fu_iasf_generic(int32_t i) {\n    float x;\n"
                "    memcpy(&x, &i, sizeof x);\n    return x;\n}\n\n");
    /* libm's 0.5 x (1 + erf(x / sqrt 2)) cancels for x < 0, and erfc(-x / sqrt 2)
     * grows the rounding of x / sqrt 2 by x^2: the SIMD algorithm is better. */
    const Target *g = &(Target){.name = "generic", .tag = "generic", .attr = "", .isa = ISA_GENERIC};
    prelude_gelu(b, g);
    prelude_norm_stats(b, g);
}

void v_prelude(Buf *b, const Target *t) {
    (void)isa(t);
    buf_printf(b, "/* ---- vector vocabulary for %s (compiler/vec.c) ---- */\n", t->name);
    if (t->isa == ISA_GENERIC) {
        prelude_generic(b);
        return;
    }
    buf_printf(b, "#if %s\n", t->guard);
    buf_printf(b, "#include <%s>\n", t->isa == ISA_NEON ? "arm_neon.h" : "immintrin.h");
    if (t->attr[0]) {
        const char *m = fu_format("FU_ATTR_%s", upper(t->tag));
        buf_printf(b, "#if defined(__GNUC__)\n#define %s __attribute__((target(\"%s\")))\n#else\n#define %s\n#endif\n",
                   m, t->attr, m);
    }
    buf_puts(b, "\n");
    prelude_isa(b, t);
    prelude_exp(b, t);
    prelude_log(b, t);
    prelude_tanh(b, t);
    prelude_simple(b, t);
    prelude_gelu(b, t);
    prelude_norm_stats(b, t);
    buf_printf(b, "#endif /* %s */\n\n", t->guard);
}
