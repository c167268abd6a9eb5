/*
 * typed.c - how kernels read stored types: bf16, f16, q8_0 and q4_0 rows
 * turned into float32 values, one element or one vector at a time.
 *
 * This is the seam between the kernels and the element types.  An emitter
 * that reads a weight or a cache never spells a type out: it asks for
 * ty_load (W float lanes of a typed row, starting at element k), ty_load_n
 * (a tail), ty_load1 (one element) or ty_store1, and gets an expression.  For
 * f32 these are the vector vocabulary's own words (vec.c), so float32 code
 * is what it always was; for the other types they call helpers that
 * ty_prelude writes into the generated file, once per ISA:
 *
 *   fu_ld1_<type>(row, k)             float: element k (portable C, the
 *                                     reference every vector helper matches)
 *   fu_ld<W>_<type>_<tag>(row, k)     W lanes from element k; for q8_0/q4_0
 *                                     k is a multiple of W, so the lanes lie
 *                                     in one block of 32
 *   fu_ldn<W>_<type>_<tag>(row, k, n) the first n lanes, the rest 0
 *   fu_f32_bf16(x), fu_f32_f16(x)     float to bf16/f16, round to nearest
 *                                     even (cache stores)
 *
 * How the lanes are made (exact: every stored value is a float32):
 *   bf16   the 16 bits shifted into the top of a float
 *   f16    AVX-512 vcvtph2ps; NEON vcvt_f32_f16; x86-64-avx2-vnni F16C's
 *          vcvtph2ps; x86-64-avx2 (no F16C in that target) integer shifts, times 2^112 for normals and subnormals,
 *          the exponent forced to all ones for inf/NaN
 *   q8_0   the block's f16 scale d times the int8 values, widened (d
 *          broadcast and converted by vcvtph2ps / vcvt_f32_f16; AVX2,
 *          without F16C here, converts it in C)
 *   q4_0   d times (nibble - 8); elements 0..15 of a block are the low
 *          nibbles of its 16 bytes, 16..31 the high ones
 *
 * A row of a quantized type is (n + 31) / 32 blocks of 34 (q8_0) or 18
 * (q4_0) bytes; ty_row_units gives the stride.  Faster kernels (AVX512-BF16,
 * AMX) replace the loops that call these, not these definitions: every one
 * of them is checked against fu_ld1_<type> through the interpreter.
 *
 * The q8_0/q4_0 linear does not multiply floats by these: its activations
 * are quantized too, and the dot products run in int8 with int32 sums
 * (fu_qx_*, fu_qdot_*, below; ty_qx_fn and ty_qdot_fn name them).
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <string.h>

const char *ty_ctype(DType t) { return dt_info(t)->ctype; }

const char *ty_row_units(DType t, const char *n) {
    const DTypeInfo *d = dt_info(t);
    if (d->block == 1)
        return n;
    return fu_format("(((%s) + %d) / %d * %d)", n, d->block - 1, d->block, d->block_bytes);
}

/* The 8-lane f32 vocabulary of an AVX-512 variant (kern_tw's transposes). */
static const Target *half_width(const Target *t, int lanes) {
    if (lanes == t->vec_floats)
        return t;
    FU_ASSERT(t->isa == ISA_AVX512 && lanes == 8);
    return target_find("x86-64-avx2");
}

const char *ty_load(const Target *t, int lanes, DType dt, const char *row, const char *k) {
    if (dt == DT_F32)
        return v_load(half_width(t, lanes), fu_format("%s + %s", row, k));
    if (lanes == 1)
        return ty_load1(dt, row, k);
    (void)half_width(t, lanes);
    return fu_format("fu_ld%d_%s_%s(%s, %s)", lanes, dtype_name(dt), t->tag, row, k);
}

const char *ty_load_n(const Target *t, int lanes, DType dt, const char *row, const char *k, const char *n) {
    if (dt == DT_F32)
        return v_load_n(half_width(t, lanes), fu_format("%s + %s", row, k), n, NULL);
    if (lanes == 1)
        return fu_format("((%s) > 0 ? %s : 0.0f)", n, ty_load1(dt, row, k));
    (void)half_width(t, lanes);
    return fu_format("fu_ldn%d_%s_%s(%s, %s, (int)(%s))", lanes, dtype_name(dt), t->tag, row, k, n);
}

const char *ty_load1(DType dt, const char *row, const char *k) {
    if (dt == DT_F32)
        return fu_format("%s[%s]", row, k);
    return fu_format("fu_ld1_%s(%s, %s)", dtype_name(dt), row, k);
}

const char *ty_store1(DType dt, const char *row, const char *k, const char *x) {
    switch (dt) {
    case DT_F32: return fu_format("%s[%s] = %s", row, k, x);
    case DT_BF16: return fu_format("%s[%s] = fu_f32_bf16(%s)", row, k, x);
    case DT_F16: return fu_format("%s[%s] = fu_f32_f16(%s)", row, k, x);
    default: fu_internal(__FILE__, __LINE__, "ty_store1: cannot store %s", dtype_name(dt));
    }
}

const char *ty_bf16r(const Target *t, int lanes, const char *v) {
    if (lanes == 1 || t->isa == ISA_GENERIC)
        return fu_format("fu_bf16r(%s)", v);
    (void)half_width(t, lanes);
    return fu_format("fu_bf16r%d_%s(%s)", lanes, t->tag, v);
}

/* ---- the helpers ---------------------------------------------------------------- */

#define L(...) (buf_printf(b, __VA_ARGS__), buf_puts(b, "\n"))

static void prelude_qx_common(Buf *b, unsigned used);

void ty_prelude_common(Buf *b, unsigned used) {
    if (used & TY_BF16R) {
        L("/* --compute=bf16: x rounded to bf16 (nearest even), as a float; a NaN stays NaN\n"
          " * with its quiet bit set, so that its top 16 bits are a bf16 NaN too */");
        L("static inline float fu_bf16r(float x) {");
        L("    uint32_t u;");
        L("    memcpy(&u, &x, sizeof u);");
        L("    u = x != x ? u | 0x00400000u : (u + 0x7fffu + (u >> 16 & 1u)) & 0xffff0000u;");
        L("    memcpy(&x, &u, sizeof x);");
        L("    return x;");
        L("}");
        L("static inline uint16_t fu_bf16_bits(float x) {");
        L("    uint32_t u;");
        L("    x = fu_bf16r(x);");
        L("    memcpy(&u, &x, sizeof u);");
        L("    return (uint16_t)(u >> 16);");
        L("}");
        buf_puts(b, "\n");
    }
    if (!(used & ~(1u << DT_F32 | 1u << DT_I32 | TY_BF16R)))
        return;
    L("/* ---- stored types: bf16, f16, q8_0, q4_0 (compiler/typed.c, docs/quantization.md) ---- */");
    L("static inline uint16_t fu_rd16(const uint8_t *p) {");
    L("    return (uint16_t)(p[0] | p[1] << 8);");
    L("}");
    L("static inline float fu_bits_f32(uint32_t u) {");
    L("    float x;");
    L("    memcpy(&x, &u, sizeof x);");
    L("    return x;");
    L("}");
    L("static inline float fu_bf16_f32(uint16_t h) {");
    L("    return fu_bits_f32((uint32_t)h << 16);");
    L("}");
    L("static inline float fu_f16_f32(uint16_t h) {");
    L("    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;");
    L("    if (e == 0x1fu)");
    L("        return fu_bits_f32(s | 0x7f800000u | m << 13);");
    L("    if (e)");
    L("        return fu_bits_f32(s | (e + 112u) << 23 | m << 13);");
    L("    return s ? -((float)m * 5.9604644775390625e-8f) : (float)m * 5.9604644775390625e-8f;");
    L("}");
    L("/* Round to nearest even; overflow to infinity; NaN stays a quiet NaN. */");
    L("static inline uint16_t fu_f32_bf16(float x) {");
    L("    uint32_t u;");
    L("    memcpy(&u, &x, sizeof u);");
    L("    if ((u & 0x7fffffffu) > 0x7f800000u)");
    L("        return (uint16_t)(u >> 16 | 0x40u);");
    L("    return (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);");
    L("}");
    L("static inline uint16_t fu_f32_f16(float x) {");
    L("    uint32_t u, s, a, h, r;");
    L("    memcpy(&u, &x, sizeof u);");
    L("    s = u >> 16 & 0x8000u;");
    L("    a = u & 0x7fffffffu;");
    L("    if (a > 0x7f800000u)");
    L("        return (uint16_t)(s | 0x7e00u | (a >> 13 & 0x3ffu));");
    L("    if (a >= 0x477ff000u)");
    L("        return (uint16_t)(s | 0x7c00u);");
    L("    if (a >= 0x38800000u) {");
    L("        r = a - 0x38000000u;");
    L("        h = r >> 13;");
    L("        r &= 0x1fffu;");
    L("        return (uint16_t)(s | (h + (r > 0x1000u || (r == 0x1000u && (h & 1u)))));");
    L("    }");
    L("    if (a <= 0x33000000u)");
    L("        return (uint16_t)s;");
    L("    {");
    L("        uint32_t m = (a & 0x7fffffu) | 0x800000u, sh = 126u - (a >> 23), half = 1u << (sh - 1u);");
    L("        h = m >> sh;");
    L("        r = m & ((1u << sh) - 1u);");
    L("        return (uint16_t)(s | (h + (r > half || (r == half && (h & 1u)))));");
    L("    }");
    L("}");
    L("/* Element k of a row: the reference for every vector load below. */");
    L("static inline float fu_ld1_bf16(const uint16_t *r, int64_t k) {");
    L("    return fu_bf16_f32(r[k]);");
    L("}");
    L("static inline float fu_ld1_f16(const uint16_t *r, int64_t k) {");
    L("    return fu_f16_f32(r[k]);");
    L("}");
    L("/* q8_0: blocks of 32 of an f16 scale d and 32 int8 q (34 bytes): x = d * q */");
    L("static inline float fu_ld1_q8_0(const uint8_t *r, int64_t k) {");
    L("    const uint8_t *b = r + (k >> 5) * 34;");
    L("    const int q = b[2 + (k & 31)];");
    L("    return fu_f16_f32(fu_rd16(b)) * (float)(q - ((q & 128) << 1));");
    L("}");
    L("/* q4_0: an f16 scale d and 16 bytes (18 bytes): x = d * (q - 8); element j < 16\n"
      " * is the low nibble of byte j, element 16 + j its high nibble */");
    L("static inline float fu_ld1_q4_0(const uint8_t *r, int64_t k) {");
    L("    const uint8_t *b = r + (k >> 5) * 18;");
    L("    const int j = (int)(k & 31), q = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;");
    L("    return fu_f16_f32(fu_rd16(b)) * (float)(q - 8);");
    L("}");
    buf_puts(b, "\n");
    if (used & (1u << DT_Q8_0 | 1u << DT_Q4_0))
        prelude_qx_common(b, used);
}

/*
 * The q8_0/q4_0 linear's activations (docs/quantization.md, "The q8_0/q4_0
 * linear"): each row of x quantized once per call into blocks of 32 like
 * llama.cpp's quantize_row_q8_0, with a float32 scale.  A quantized row of k
 * elements, nb = ceil(k / 32) blocks, at a multiple of fu_qx_stride(k)
 * bytes in the caller's scratch: int8 q[nb * 32] (the last block padded with
 * zeros), then float d[nb].  Per block, in float32: amax = max |x|;
 * d = amax / 127; id = 1 / d, or 0 where d is 0 or subnormal; q = rint(x * id)
 * (nearest, ties to even: the SIMD quantizers' rounding).  A block holding a
 * NaN or an infinity gets d = NaN and q = 0: every output of its row is NaN.
 * The interpreter computes the same values (interp.c, quantize_row).  These
 * portable helpers are the generic target's kernels and the reference the
 * vector ones match.
 */
static void prelude_qx_common(Buf *b, unsigned used) {
    bool q8 = used & (1u << DT_Q8_0), q4 = used & (1u << DT_Q4_0);
    L("/* ---- the q8_0/q4_0 linear: activations quantized per row, int8 dot products ---- */");
    L("static inline int64_t fu_qx_stride(int64_t k) {");
    L("    return ((k + 31) / 32 * 36 + 63) / 64 * 64;");
    L("}");
    L("static inline void fu_qx_block_ref(const float *x, int n, int8_t *q, float *d) {");
    L("    float amax = 0.0f;");
    L("    int j, finite = 1;");
    L("    for (j = 0; j < n; j++) {");
    L("        const float a = fabsf(x[j]);");
    L("        if (!(a <= 3.40282347e+38f))");
    L("            finite = 0;");
    L("        else if (a > amax)");
    L("            amax = a;");
    L("    }");
    L("    if (!finite) {");
    L("        memset(q, 0, 32);");
    L("        *d = NAN;");
    L("        return;");
    L("    }");
    L("    const float dd = amax / 127.0f, id = dd >= 1.17549435e-38f ? 1.0f / dd : 0.0f;");
    L("    for (j = 0; j < n; j++)");
    L("        q[j] = (int8_t)lrintf(x[j] * id);");
    L("    for (; j < 32; j++)");
    L("        q[j] = 0;");
    L("    *d = dd;");
    L("}");
    L("static inline void fu_qx_ref(const float *x, int64_t k, int8_t *xq) {");
    L("    const int64_t nb = (k + 31) / 32;");
    L("    float *d = (float *)(void *)(xq + nb * 32);");
    L("    for (int64_t b = 0; b < nb; b++)");
    L("        fu_qx_block_ref(x + 32 * b, k - 32 * b < 32 ? (int)(k - 32 * b) : 32, xq + 32 * b, d + b);");
    L("}");
    /* the reference dots: weight block times quantized activation block, int sums */
    for (int q = 0; q < 2; q++) {
        if (!(q ? q4 : q8))
            continue;
        const char *name = q ? "q4_0" : "q8_0";
        L("/* out[t] = sum over blocks of d_w * d_x[t] * (int) sum_j w_j x_j, t < R */");
        L("static inline void fu_qdot_%s_ref(const uint8_t *w, const int8_t *xq, int64_t xs, int64_t nb, int R,",
          name);
        L("                                 float *out) {");
        L("    for (int t = 0; t < R; t++) {");
        L("        const int8_t *x = xq + t * xs;");
        L("        const float *dx = (const float *)(const void *)(x + nb * 32);");
        L("        float acc = 0.0f;");
        L("        for (int64_t b = 0; b < nb; b++) {");
        L("            const uint8_t *blk = w + %d * b;", q ? 18 : 34);
        L("            int32_t s = 0;");
        if (q) {
            L("            for (int j = 0; j < 16; j++)");
            L("                s += ((blk[2 + j] & 15) - 8) * x[32 * b + j] + ((blk[2 + j] >> 4) - 8) * x[32 * b + 16 + j];");
        } else {
            L("            for (int j = 0; j < 32; j++)");
            L("                s += (blk[2 + j] - ((blk[2 + j] & 128) << 1)) * x[32 * b + j];");
        }
        L("            acc += fu_f16_f32(fu_rd16(blk)) * dx[b] * (float)s;");
        L("        }");
        L("        out[t] = acc;");
        L("    }");
        L("}");
    }
    buf_puts(b, "\n");
}

/* x86 (every x86 row, 256-bit): the quantizer, and the dot products by
 * the sign trick (|w| unsigned times x with w's sign, exact for every int8
 * w including -128): vpdpbusd where the row has VNNI (AVX512-VNNI on ymm,
 * or AVX-VNNI), else vpmaddubsw + vpmaddwd (no saturation: |w| <= 128,
 * |x| <= 127).  One block of 32 per step. */
static void prelude_qx_x86(Buf *b, const Target *t, unsigned used) {
    const char *a = v_attr(t), *g = t->tag;
    bool vnni512 = t->features & FR_CPU_AVX512VNNI, vnni = t->features & FR_CPU_AVXVNNI;
    bool f16c = t->features & FR_CPU_F16C, avx512 = t->isa == ISA_AVX512;
    L("static %sinline void fu_qx_%s(const float *x, int64_t k, int8_t *xq) {", a, g);
    L("    const int64_t nb = (k + 31) / 32;");
    L("    float *d = (float *)(void *)(xq + nb * 32);");
    L("    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);");
    L("    for (int64_t b = 0; b < nb; b++) {");
    L("        const float *xb = x + 32 * b;");
    L("        float tmp[32];");
    L("        if (k - 32 * b < 32) {");
    L("            const int n = (int)(k - 32 * b);");
    L("            for (int j = 0; j < 32; j++)");
    L("                tmp[j] = j < n ? xb[j] : 0.0f;");
    L("            xb = tmp;");
    L("        }");
    L("        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);");
    L("        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);");
    L("        const __m256 a0 = _mm256_andnot_ps(sign, v0), a1 = _mm256_andnot_ps(sign, v1);");
    L("        const __m256 a2 = _mm256_andnot_ps(sign, v2), a3 = _mm256_andnot_ps(sign, v3);");
    L("        /* NaN or infinity: unordered or not below inf */");
    L("        const __m256 bad = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(a0, inf, _CMP_NLT_UQ), _mm256_cmp_ps(a1, inf, _CMP_NLT_UQ)),");
    L("                                        _mm256_or_ps(_mm256_cmp_ps(a2, inf, _CMP_NLT_UQ), _mm256_cmp_ps(a3, inf, _CMP_NLT_UQ)));");
    L("        if (_mm256_movemask_ps(bad)) {");
    L("            memset(xq + 32 * b, 0, 32);");
    L("            d[b] = NAN;");
    L("            continue;");
    L("        }");
    L("        const __m256 m = _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3));");
    L("        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));");
    L("        h = _mm_max_ps(h, _mm_movehl_ps(h, h));");
    L("        h = _mm_max_ss(h, _mm_movehdup_ps(h));");
    L("        const float amax = _mm_cvtss_f32(h), dd = amax / 127.0f, id = dd >= 1.17549435e-38f ? 1.0f / dd : 0.0f;");
    L("        const __m256 vid = _mm256_set1_ps(id);");
    L("        /* rounding: the MXCSR's, nearest even */");
    L("        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));");
    L("        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));");
    L("        i0 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));");
    L("        i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));");
    L("        _mm256_storeu_si256((__m256i *)(void *)(xq + 32 * b), i0);");
    L("        d[b] = dd;");
    L("    }");
    L("}");
    L("/* sum of |w| * (x with w's sign) over each 4 bytes: 8 int32 */");
    L("static %sinline __m256i fu_qsum_%s(__m256i aw, __m256i sx) {", a, g);
    if (vnni512)
        L("    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);");
    else if (vnni)
        L("    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx);");
    else
        L("    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));");
    L("}");
    const char *dw = f16c ? "_mm256_cvtph_ps(_mm_set1_epi16((short)fu_rd16(blk)))"
                     : avx512 ? "_mm256_maskz_cvtph_ps(0xff, _mm_set1_epi16((short)fu_rd16(blk)))"
                              : "_mm256_set1_ps(fu_f16_f32(fu_rd16(blk)))";
    for (int q = 0; q < 2; q++) {
        if (!(used & (1u << (q ? DT_Q4_0 : DT_Q8_0))))
            continue;
        const char *name = q ? "q4_0" : "q8_0";
        /* one block of one row, for R == 1 (decode): two chains in registers */
        L("static %sinline __m256 fu_qblk_%s_%s(const uint8_t *blk, const int8_t *x, float dx, __m256 acc) {", a, name, g);
        if (q) {
            L("    const __m128i n = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));");
            L("    const __m256i wq = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n, 4), n),");
            L("                                                        _mm256_set1_epi8(15)), _mm256_set1_epi8(8));");
        } else {
            L("    const __m256i wq = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));");
        }
        L("    const __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(const void *)x), wq);");
        L("    const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(fu_qsum_%s(_mm256_abs_epi8(wq), sx)), _mm256_set1_ps(dx));", g);
        L("    return _mm256_fmadd_ps(p, %s, acc);", dw);
        L("}");
        L("static %sinline void fu_qdot_%s_%s(const uint8_t *w, const int8_t *xq, int64_t xs, int64_t nb, int R,", a,
          name, g);
        L("                                 float *out) {");
        L("    __m256 acc[8];");
        L("    const int one = R == 1;");
        L("    if (one) {");
        L("        const float *dx = (const float *)(const void *)(xq + nb * 32);");
        L("        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();");
        L("        int64_t b = 0;");
        L("        for (; b + 2 <= nb; b += 2) {");
        L("            a0 = fu_qblk_%s_%s(w + %d * b, xq + 32 * b, dx[b], a0);", name, g, q ? 18 : 34);
        L("            a1 = fu_qblk_%s_%s(w + %d * (b + 1), xq + 32 * (b + 1), dx[b + 1], a1);", name, g, q ? 18 : 34);
        L("        }");
        L("        if (b < nb)");
        L("            a0 = fu_qblk_%s_%s(w + %d * b, xq + 32 * b, dx[b], a0);", name, g, q ? 18 : 34);
        L("        acc[0] = _mm256_add_ps(a0, a1);");
        L("        R = 0;");
        L("    }");
        L("    for (int t = 0; t < R; t++)");
        L("        acc[t] = _mm256_setzero_ps();");
        L("    for (int64_t b = 0; b < nb; b++) {");
        L("        const uint8_t *blk = w + %d * b;", q ? 18 : 34);
        if (q) {
            L("        const __m128i n = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));");
            L("        const __m256i wq = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n, 4), n),");
            L("                                                            _mm256_set1_epi8(15)), _mm256_set1_epi8(8));");
        } else {
            L("        const __m256i wq = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));");
        }
        L("        const __m256i aw = _mm256_abs_epi8(wq);");
        L("        const __m256 dw = %s;", dw);
        L("        for (int t = 0; t < R; t++) {");
        L("            const int8_t *x = xq + t * xs;");
        L("            const __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * b)), wq);");
        L("            const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(fu_qsum_%s(aw, sx)),", g);
        L("                                           _mm256_broadcast_ss((const float *)(const void *)(x + nb * 32) + b));");
        L("            acc[t] = _mm256_fmadd_ps(p, dw, acc[t]);");
        L("        }");
        L("    }");
        L("    for (int t = 0; t < (one ? 1 : R); t++) {");
        L("        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));");
        L("        s = _mm_add_ps(s, _mm_movehl_ps(s, s));");
        L("        out[t] = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));");
        L("    }");
        L("}");
    }
}

/* NEON: sdot where the row has the dot product, else vmull_s8 pairs (|w x|
 * <= 16384: two fit an int16) widened by vpadal; the reference quantizer. */
static void prelude_qx_neon(Buf *b, const Target *t, unsigned used) {
    const char *a = v_attr(t), *g = t->tag;
    bool dot = t->features & FR_CPU_NEON_DOTPROD;
    for (int q = 0; q < 2; q++) {
        if (!(used & (1u << (q ? DT_Q4_0 : DT_Q8_0))))
            continue;
        const char *name = q ? "q4_0" : "q8_0";
        L("static %sinline void fu_qdot_%s_%s(const uint8_t *w, const int8_t *xq, int64_t xs, int64_t nb, int R,", a,
          name, g);
        L("                                 float *out) {");
        L("    float32x4_t acc[8];");
        L("    for (int t = 0; t < R; t++)");
        L("        acc[t] = vdupq_n_f32(0.0f);");
        L("    for (int64_t b = 0; b < nb; b++) {");
        L("        const uint8_t *blk = w + %d * b;", q ? 18 : 34);
        if (q) {
            L("        const uint8x16_t n = vld1q_u8(blk + 2);");
            L("        const int8x16_t w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(n, vdupq_n_u8(15))), vdupq_n_s8(8));");
            L("        const int8x16_t w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(n, 4)), vdupq_n_s8(8));");
        } else {
            L("        const int8x16_t w0 = vld1q_s8((const int8_t *)(blk + 2)), w1 = vld1q_s8((const int8_t *)(blk + 18));");
        }
        L("        const float dw = fu_f16_f32(fu_rd16(blk));");
        L("        for (int t = 0; t < R; t++) {");
        L("            const int8_t *x = xq + t * xs;");
        L("            const int8x16_t x0 = vld1q_s8(x + 32 * b), x1 = vld1q_s8(x + 32 * b + 16);");
        if (dot) {
            L("            const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);");
        } else {
            L("            const int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), vget_low_s8(w1), vget_low_s8(x1));");
            L("            const int16x8_t p1 = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);");
            L("            const int32x4_t s = vpadalq_s16(vpaddlq_s16(p0), p1);");
        }
        L("            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(s), dw * ((const float *)(const void *)(x + nb * 32))[b]);");
        L("        }");
        L("    }");
        L("    for (int t = 0; t < R; t++)");
        L("        out[t] = vaddvq_f32(acc[t]);");
        L("}");
    }
}

/*
 * The q8_0/q4_0 GEMM of prefill on AVX512-VNNI targets (docs/gemm.md,
 * "q8_0/q4_0 prefill"; k_linear drives it for more than 8 rows): a 6 x 32
 * register tile of vpdpbusd (u8 x s8, four consecutive depths of a column
 * per 32-bit lane).  The *weights* are the unsigned operand: packed as
 * w + 128 (0..255 for q8_0, nibble + 120 for q4_0), so vpdpbusd sums
 * (w + 128) * x = w * x + 128 * x; the activations stay the signed int8 of
 * fu_qx_*, and each row's integer accumulators start, per block of 32, from
 * -128 * sum_j x_j (computed once when A is packed): exact int32 sums
 * w . x of every block, for every int8 w including -128.  Then, per block,
 * acc += (float)sum * (d_w * d_x) in float32.
 *
 * A packed (fu_qpa_*), per group of 6 rows and block: 8 quads x 6 rows of 4
 * int8 (192 bytes), int32 nc[6] = -128 * sum, float d_x[6]: 256 bytes; rows
 * past the end are zeros with d_x = 0.  B packed (fu_qpb_*), per panel of
 * 32 columns and block: 8 quads x 32 columns of 4 u8 (1024 bytes), then
 * float d_w[32]: 1152 bytes; columns past the end are zeros with d_w = 0
 * (with u = 0 the packer writes w itself, signed: the AMX tdpbssd kernel).
 * The tile (fu_qmk_*) runs nb blocks and adds into (or, first, sets) a
 * 6 x 32 float tile c of stride 32.
 */
static void prelude_qgemm_vnni(Buf *b, const Target *t, unsigned used) {
    const char *a = v_attr(t), *g = t->tag;
    L("static %sinline void fu_qpa_%s(const int8_t *xq, int64_t xs, int nr, int64_t nb, uint8_t *ap) {", a, g);
    L("    for (int64_t b = 0; b < nb; b++, ap += 256) {");
    L("        int32_t *nc = (int32_t *)(void *)(ap + 192);");
    L("        float *da = (float *)(void *)(ap + 216);");
    L("        for (int r = 0; r < 6; r++) {");
    L("            const int8_t *x = xq + r * xs + 32 * b;");
    L("            int32_t s = 0;");
    L("            if (r < nr)");
    L("                for (int j = 0; j < 32; j++)");
    L("                    s += x[j];");
    L("            for (int q = 0; q < 8; q++) {");
    L("                if (r < nr)");
    L("                    memcpy(ap + 24 * q + 4 * r, x + 4 * q, 4);");
    L("                else");
    L("                    memset(ap + 24 * q + 4 * r, 0, 4);");
    L("            }");
    L("            nc[r] = -128 * s;");
    L("            da[r] = r < nr ? ((const float *)(const void *)(xq + r * xs + nb * 32))[b] : 0.0f;");
    L("        }");
    L("        memset(ap + 240, 0, 16);");
    L("    }");
    L("}");
    L("/* v[i]: 8 dwords (quads) of column i; stores quad q of the 8 columns at p + 128 * q */");
    L("static %sinline void fu_qtr8_%s(const __m256i *v, uint8_t *p) {", a, g);
    L("    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);");
    L("    const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);");
    L("    const __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);");
    L("    const __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);");
    L("    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);");
    L("    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);");
    L("    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);");
    L("    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);");
    L("    _mm256_storeu_si256((__m256i *)(void *)p, _mm256_permute2x128_si256(u0, u4, 0x20));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 128), _mm256_permute2x128_si256(u1, u5, 0x20));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 256), _mm256_permute2x128_si256(u2, u6, 0x20));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 384), _mm256_permute2x128_si256(u3, u7, 0x20));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 512), _mm256_permute2x128_si256(u0, u4, 0x31));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 640), _mm256_permute2x128_si256(u1, u5, 0x31));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 768), _mm256_permute2x128_si256(u2, u6, 0x31));");
    L("    _mm256_storeu_si256((__m256i *)(void *)(p + 896), _mm256_permute2x128_si256(u3, u7, 0x31));");
    L("}");
    for (int q = 0; q < 2; q++) {
        if (!(used & (1u << (q ? DT_Q4_0 : DT_Q8_0))))
            continue;
        const char *name = q ? "q4_0" : "q8_0";
        L("/* columns [0, nc) of rows w (stride rs bytes), blocks [b0, b0 + nb); 8 columns at a time,");
        L(" * their 32 bytes (8 quads) transposed in registers into 8 quads of 8 columns */");
        L("static %sinline void fu_qpb_%s_%s(const uint8_t *w, int64_t rs, int nc, int64_t b0, int64_t nb, uint8_t *bp,",
          a, name, g);
        L("                                  int u) {");
        L("    for (int64_t b = 0; b < nb; b++, bp += 1152) {");
        L("        float *dw = (float *)(void *)(bp + 1024);");
        L("        for (int c = 0; c < 32; c += 8) {");
        L("            __m256i v[8];");
        L("            for (int i = 0; i < 8; i++) {");
        L("                const uint8_t *blk = w + (c + i) * rs + %d * (b0 + b);", q ? 18 : 34);
        L("                if (c + i >= nc) {");
        L("                    v[i] = _mm256_setzero_si256();");
        L("                    dw[c + i] = 0.0f;");
        L("                    continue;");
        L("                }");
        if (q) {
            L("                const __m128i n = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));");
            L("                v[i] = _mm256_add_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n, 4), n),");
            L("                                                        _mm256_set1_epi8(15)), _mm256_set1_epi8((char)(u ? 120 : -8)));");
        } else {
            L("                v[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)),");
            L("                                        _mm256_set1_epi8((char)(u ? -128 : 0)));");
        }
        L("                dw[c + i] = fu_f16_f32(fu_rd16(blk));");
        L("            }");
        L("            fu_qtr8_%s(v, bp + 4 * c);", g);
        L("        }");
        L("    }");
        L("}");
    }
    L("static %sinline void fu_qmk_%s(const uint8_t *ap, const uint8_t *bp, int64_t nb, float *c, int first) {", a, g);
    for (int r = 0; r < 6; r++)
        L("    __m512 f%d0 = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + %d), "
          "f%d1 = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + %d);", r, 32 * r, r, 32 * r + 16);
    L("    for (int64_t b = 0; b < nb; b++, ap += 256, bp += 1152) {");
    L("        const int32_t *nc = (const int32_t *)(const void *)(ap + 192), *xa = (const int32_t *)(const void *)ap;");
    L("        const float *da = (const float *)(const void *)(ap + 216);");
    for (int r = 0; r < 6; r++)
        L("        __m512i i%d0 = _mm512_set1_epi32(nc[%d]), i%d1 = i%d0;", r, r, r, r);
    for (int q = 0; q < 8; q++) {   /* unrolled: gcc shuffles the accumulators in a loop */
        L("        {");
        L("            const __m512i b0 = _mm512_loadu_si512((const void *)(bp + %d));", 128 * q);
        L("            const __m512i b1 = _mm512_loadu_si512((const void *)(bp + %d));", 128 * q + 64);
        for (int r = 0; r < 6; r++) {
            L("            const __m512i a%d = _mm512_set1_epi32(xa[%d]);", r, 6 * q + r);
            L("            i%d0 = _mm512_dpbusd_epi32(i%d0, b0, a%d);", r, r, r);
            L("            i%d1 = _mm512_dpbusd_epi32(i%d1, b1, a%d);", r, r, r);
        }
        L("        }");
    }
    L("        const __m512 w0 = _mm512_loadu_ps((const float *)(const void *)(bp + 1024));");
    L("        const __m512 w1 = _mm512_loadu_ps((const float *)(const void *)(bp + 1088));");
    for (int r = 0; r < 6; r++) {
        L("        const __m512 s%d = _mm512_set1_ps(da[%d]);", r, r);
        L("        f%d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i%d0), _mm512_mul_ps(w0, s%d), f%d0);", r, r, r, r);
        L("        f%d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i%d1), _mm512_mul_ps(w1, s%d), f%d1);", r, r, r, r);
    }
    L("    }");
    for (int r = 0; r < 6; r++)
        L("    _mm512_storeu_ps(c + %d, f%d0), _mm512_storeu_ps(c + %d, f%d1);", 32 * r, r, 32 * r + 16, r);
    L("}");
}

/* AMX-int8 (x86-64-spr): the q8_0/q4_0 prefill GEMM's tile words, or, under
 * -DFU_AMX_EMULATE (tests on a CPU without AMX), the same in C on one
 * thread's eight tiles of the configured shapes.  The kernel (fu_qamx_*)
 * takes 32 rows x 32 columns per block of 32 depths: tiles 4, 5 are 16
 * quantized rows x 32 int8 read in place (stride fu_qx_stride), 6, 7 the
 * panel's 8 quads x 16 columns (signed w, fu_qpb_* with u = 0), tdpbssd
 * into the int32 tiles 0-3, which are stored and scaled into the float tile
 * cb (32 x 32, in L1): cb += (float)sum * (d_w * d_x). */
static void prelude_amx_int8(Buf *b, const Target *t) {
    const char *a = v_attr(t), *g = t->tag;
    L("#ifndef FU_QT_DP");
    L("#if defined(FU_AMX_EMULATE)");
    L("static __thread unsigned char fu_emq_tile[8][16][64];");
    L("static __thread int fu_emq_rows[8], fu_emq_colsb[8];");
    L("static inline void fu_emq_config(const unsigned char *c) {");
    L("    for (int i = 0; i < 8; i++) {");
    L("        fu_emq_colsb[i] = c[16 + 2 * i] | c[17 + 2 * i] << 8;");
    L("        fu_emq_rows[i] = c[48 + i];");
    L("    }");
    L("}");
    L("static inline void fu_emq_load(int t, const void *p, int64_t stride) {");
    L("    for (int r = 0; r < fu_emq_rows[t]; r++)");
    L("        memcpy(fu_emq_tile[t][r], (const unsigned char *)p + r * stride, (size_t)fu_emq_colsb[t]);");
    L("}");
    L("static inline void fu_emq_store(int t, void *p, int64_t stride) {");
    L("    for (int r = 0; r < fu_emq_rows[t]; r++)");
    L("        memcpy((unsigned char *)p + r * stride, fu_emq_tile[t][r], (size_t)fu_emq_colsb[t]);");
    L("}");
    L("/* tdpbssd: C[m][n] += sum over k of sum over e < 4 of A[m][4k + e] * B[k][4n + e], int8 */");
    L("static inline void fu_emq_dp(int c, int a, int bt) {");
    L("    for (int m = 0; m < fu_emq_rows[c]; m++)");
    L("        for (int n = 0; n < fu_emq_colsb[c] / 4; n++) {");
    L("            int32_t acc;");
    L("            memcpy(&acc, fu_emq_tile[c][m] + 4 * n, sizeof acc);");
    L("            for (int k = 0; k < fu_emq_colsb[a] / 4; k++)");
    L("                for (int e = 0; e < 4; e++)");
    L("                    acc += (int8_t)fu_emq_tile[a][m][4 * k + e] * (int8_t)fu_emq_tile[bt][k][4 * n + e];");
    L("            memcpy(fu_emq_tile[c][m] + 4 * n, &acc, sizeof acc);");
    L("        }");
    L("}");
    L("#define FU_QT_CONFIG(p) fu_emq_config(p)");
    L("#define FU_QT_RELEASE() ((void)0)");
    L("#define FU_QT_ZERO(t) memset(fu_emq_tile[t], 0, sizeof fu_emq_tile[t])");
    L("#define FU_QT_LOAD(t, p, s) fu_emq_load(t, p, s)");
    L("#define FU_QT_STORE(t, p, s) fu_emq_store(t, p, s)");
    L("#define FU_QT_DP(c, a, bt) fu_emq_dp(c, a, bt)");
    L("#ifndef FU_AMX_NEED");
    L("#define FU_AMX_NEED(bits) ((bits) & ~0x%xu)", FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8);
    L("#endif");
    L("#else");
    L("#define FU_QT_CONFIG(p) _tile_loadconfig(p)");
    L("#define FU_QT_RELEASE() _tile_release()");
    L("#define FU_QT_ZERO(t) _tile_zero(t)");
    L("#define FU_QT_LOAD(t, p, s) _tile_loadd(t, p, s)");
    L("#define FU_QT_STORE(t, p, s) _tile_stored(t, p, s)");
    L("#define FU_QT_DP(c, a, bt) _tile_dpbssd(c, a, bt)");
    L("#ifndef FU_AMX_NEED");
    L("#define FU_AMX_NEED(bits) (bits)");
    L("#endif");
    L("#endif");
    L("#endif");
    L("/* palette 1: tiles 0-3 16 x 64 bytes (int32 sums), 4-5 16 x 32 (rows), 6-7 8 x 64 (quads) */");
    L("static %sinline void fu_qamx_config_%s(void) {", a, g);
    L("    unsigned char c[64] = {1};");
    L("    for (int i = 0; i < 8; i++) {");
    L("        c[16 + 2 * i] = (unsigned char)(i == 4 || i == 5 ? 32 : 64);");
    L("        c[48 + i] = (unsigned char)(i >= 6 ? 8 : 16);");
    L("    }");
    L("    FU_QT_CONFIG(c);");
    L("}");
    L("/* 32 quantized rows xq (stride xs, nb blocks each) x the panel bp: blocks [pc, pc + kb) into cb */");
    L("static %sinline void fu_qamx_%s(const int8_t *xq, int64_t xs, int64_t nb, int64_t pc, int64_t kb,", a, g);
    L("                              const uint8_t *bp, float *cb, int32_t *ct) {");
    L("    for (int64_t b = 0; b < kb; b++, bp += 1152) {");
    L("        const int8_t *xa = xq + 32 * (pc + b);");
    L("        FU_QT_ZERO(0);");
    L("        FU_QT_ZERO(1);");
    L("        FU_QT_ZERO(2);");
    L("        FU_QT_ZERO(3);");
    L("        FU_QT_LOAD(4, xa, xs);");
    L("        FU_QT_LOAD(5, xa + 16 * xs, xs);");
    L("        FU_QT_LOAD(6, bp, 128);");
    L("        FU_QT_LOAD(7, bp + 64, 128);");
    L("        FU_QT_DP(0, 4, 6);");
    L("        FU_QT_DP(1, 4, 7);");
    L("        FU_QT_DP(2, 5, 6);");
    L("        FU_QT_DP(3, 5, 7);");
    L("        FU_QT_STORE(0, ct, 128);");
    L("        FU_QT_STORE(1, ct + 16, 128);");
    L("        FU_QT_STORE(2, ct + 512, 128);");
    L("        FU_QT_STORE(3, ct + 528, 128);");
    L("        const __m512 w0 = _mm512_loadu_ps((const float *)(const void *)(bp + 1024));");
    L("        const __m512 w1 = _mm512_loadu_ps((const float *)(const void *)(bp + 1088));");
    L("        for (int r = 0; r < 32; r++) {");
    L("            const __m512 s = _mm512_set1_ps(((const float *)(const void *)(xq + r * xs + nb * 32))[pc + b]);");
    L("            float *const c = cb + 32 * r;");
    L("            const __m512 i0 = _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(ct + 32 * r)));");
    L("            const __m512 i1 = _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(ct + 32 * r + 16)));");
    L("            _mm512_storeu_ps(c, _mm512_fmadd_ps(i0, _mm512_mul_ps(w0, s), _mm512_loadu_ps(c)));");
    L("            _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(i1, _mm512_mul_ps(w1, s), _mm512_loadu_ps(c + 16)));");
    L("        }");
    L("    }");
    L("}");
}

bool ty_qgemm(const Target *t) { return (t->features & FR_CPU_AVX512VNNI) && t->isa == ISA_AVX512; }

const char *ty_qx_fn(const Target *t) {
    return t->isa == ISA_AVX2 || t->isa == ISA_AVX512 ? fu_format("fu_qx_%s", t->tag) : "fu_qx_ref";
}

const char *ty_qdot_fn(const Target *t, DType dt) {
    FU_ASSERT(dt == DT_Q8_0 || dt == DT_Q4_0);
    return fu_format("fu_qdot_%s_%s", dtype_name(dt), t->isa == ISA_GENERIC ? "ref" : t->tag);
}

/* The vector helpers of one ISA and width. */
typedef struct TyIsa {
    const char *vt;                         /* vector type */
    const char *bf16, *f16, *q8_0, *q4_0;   /* bodies; r, k in scope */
} TyIsa;

static TyIsa ty_isa(const Target *t, int lanes) {
    TyIsa x;
    memset(&x, 0, sizeof x);
    if (t->isa == ISA_AVX512 && lanes == 16) {
        x.vt = "__m512";
        x.bf16 = "return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(\n"
                 "        _mm256_loadu_si256((const __m256i *)(r + k))), 16));";
        x.f16 = "return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + k)));";
        x.q8_0 = "const uint8_t *b = r + (k >> 5) * 34;\n"
                 "    const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2 + (k & 31)))));\n"
                 "    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)fu_rd16(b))), q);";
        x.q4_0 = "const uint8_t *b = r + (k >> 5) * 18;\n"
                 "    __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));\n"
                 "    if (k & 16)\n"
                 "        q = _mm_srli_epi16(q, 4);\n"
                 "    q = _mm_and_si128(q, _mm_set1_epi8(15));\n"
                 "    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)fu_rd16(b))),\n"
                 "                         _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q), _mm512_set1_epi32(8))));";
        return x;
    }
    if (t->isa == ISA_AVX512 || t->isa == ISA_AVX2) {
        FU_ASSERT(lanes == 8);
        x.vt = "__m256";
        x.bf16 = "return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(\n"
                 "        _mm_loadu_si128((const __m128i *)(r + k))), 16));";
        if (t->isa == ISA_AVX512)
            x.f16 = "return _mm256_maskz_cvtph_ps(0xff, _mm_loadu_si128((const __m128i *)(r + k)));";
        else if (t->features & FR_CPU_F16C)
            x.f16 = "return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + k)));";
        else
            x.f16 = "/* no F16C in this target: the bits moved into a float (normals and\n"
                    "     * subnormals times 2^112, exactly), inf/NaN with the exponent all ones */\n"
                    "    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(r + k)));\n"
                    "    const __m256i em = _mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), bits = _mm256_slli_epi32(em, 13);\n"
                    "    __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(5.192296858534827628530496e33f));\n"
                    "    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_or_si256(bits, _mm256_set1_epi32(0x7f800000))),\n"
                    "                         _mm256_castsi256_ps(_mm256_cmpgt_epi32(em, _mm256_set1_epi32(0x7bff))));\n"
                    "    return _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16)));";
        /* the block's scale: vcvtph2ps where the target has it (AVX-512VL), else portable C */
        const char *d8 = t->isa == ISA_AVX512         ? "_mm256_maskz_cvtph_ps(0xff, _mm_set1_epi16((short)fu_rd16(b)))"
                         : t->features & FR_CPU_F16C ? "_mm256_cvtph_ps(_mm_set1_epi16((short)fu_rd16(b)))"
                                                     : "_mm256_set1_ps(fu_f16_f32(fu_rd16(b)))";
        x.q8_0 = fu_format("const uint8_t *b = r + (k >> 5) * 34;\n"
                 "    const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + (k & 31)))));\n"
                 "    return _mm256_mul_ps(%s, q);", d8);
        x.q4_0 = fu_format("const uint8_t *b = r + (k >> 5) * 18;\n"
                 "    __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + (k & 15)));\n"
                 "    if (k & 16)\n"
                 "        q = _mm_srli_epi16(q, 4);\n"
                 "    q = _mm_and_si128(q, _mm_set1_epi8(15));\n"
                 "    return _mm256_mul_ps(%s,\n"
                 "                         _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(q), _mm256_set1_epi32(8))));", d8);
        return x;
    }
    FU_ASSERT(t->isa == ISA_NEON && lanes == 4);
    x.vt = "float32x4_t";
    x.bf16 = "return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(r + k), 16));";
    x.f16 = "return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(r + k)));";
    x.q8_0 = "const uint8_t *b = r + (k >> 5) * 34;\n"
             "    int32_t w;\n"
             "    memcpy(&w, b + 2 + (k & 31), sizeof w);\n"
             "    const int16x8_t q = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w)));\n"
             "    return vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(fu_rd16(b)))));";
    x.q4_0 = "const uint8_t *b = r + (k >> 5) * 18;\n"
             "    uint32_t w;\n"
             "    memcpy(&w, b + 2 + (k & 15), sizeof w);\n"
             "    w = (k & 16 ? w >> 4 : w) & 0x0f0f0f0fu;\n"
             "    const uint16x8_t q = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(w)));\n"
             "    const int32x4_t s = vsubq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(q))), vdupq_n_s32(8));\n"
             "    return vmulq_f32(vcvtq_f32_s32(s), vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(fu_rd16(b)))));";
    return x;
}

/* fu_bf16r<W>_<tag>: the lanes of fu_bf16r (integer add of 0x7fff plus
 * the lowest kept bit, then the low half cleared; NaN lanes kept). */
static void prelude_bf16r(Buf *b, const Target *t, int lanes) {
    const char *attr = v_attr(t);
    if (t->isa == ISA_AVX512 && lanes == 16) {
        L("static %sinline __m512 fu_bf16r16_%s(__m512 x) {", attr, t->tag);
        L("    const __m512i u = _mm512_castps_si512(x);");
        L("    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),");
        L("                                 _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));");
        L("    r = _mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u));");
        L("    r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), u, _mm512_set1_epi32(0x00400000));");
        L("    return _mm512_castsi512_ps(r);");
        L("}");
    } else if (t->isa == ISA_AVX512 || t->isa == ISA_AVX2) {
        L("static %sinline __m256 fu_bf16r8_%s(__m256 x) {", attr, t->tag);
        L("    const __m256i u = _mm256_castps_si256(x);");
        L("    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),");
        L("                                 _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))));");
        L("    r = _mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u));");
        L("    return _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_or_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x00400000))),");
        L("                            _mm256_cmp_ps(x, x, _CMP_UNORD_Q));");
        L("}");
    } else {
        L("static %sinline float32x4_t fu_bf16r4_%s(float32x4_t x) {", attr, t->tag);
        L("    const uint32x4_t u = vreinterpretq_u32_f32(x);");
        L("    uint32x4_t r = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fffu), vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1u))));");
        L("    r = vandq_u32(r, vdupq_n_u32(0xffff0000u));");
        L("    return vbslq_f32(vceqq_f32(x, x), vreinterpretq_f32_u32(r), vreinterpretq_f32_u32(vorrq_u32(u, vdupq_n_u32(0x00400000u))));");
        L("}");
    }
}

static void prelude_width(Buf *b, const Target *t, int lanes, unsigned used) {
    TyIsa x = ty_isa(t, lanes);
    const char *attr = v_attr(t);
    if (used & TY_BF16R)
        prelude_bf16r(b, t, lanes);
    for (int dt = 0; dt < DT_COUNT; dt++) {
        const DTypeInfo *d = dt_info((DType)dt);
        if (!(used & (1u << dt)) || (d->kind != DK_HALF && d->kind != DK_QUANT))
            continue;
        const char *body = dt == DT_BF16 ? x.bf16 : dt == DT_F16 ? x.f16 : dt == DT_Q8_0 ? x.q8_0 : x.q4_0;
        L("static %sinline %s fu_ld%d_%s_%s(const %s *r, int64_t k) {", attr, x.vt, lanes, d->name, t->tag,
          d->ctype);
        L("    %s", body);
        L("}");
        L("static %sinline %s fu_ldn%d_%s_%s(const %s *r, int64_t k, int n) {", attr, x.vt, lanes, d->name,
          t->tag, d->ctype);
        L("    float a[%d];", lanes);
        L("    for (int i = 0; i < %d; i++)", lanes);
        L("        a[i] = i < n ? fu_ld1_%s(r, k + i) : 0.0f;", d->name);
        L("    return %s;", t->isa == ISA_NEON ? "vld1q_f32(a)" : fu_format("%s(a)", lanes == 16 ? "_mm512_loadu_ps"
                                                                                              : "_mm256_loadu_ps"));
        L("}");
    }
}

/* The AMX words of emit_gemm.c's DOT_AMX kernels: the tile intrinsics, or,
 * when the file is compiled with -DFU_AMX_EMULATE (tests/bf16 on a CPU
 * without AMX), the same operations in C on one thread's eight 1 KiB tiles
 * (rows of 64 bytes; every tile 16 x 64 bytes, the only configuration the
 * kernels use), and a CPU check that leaves the AMX bits out. */
static void prelude_amx(Buf *b) {
    L("#ifndef FU_TILE_DP");
    L("#if defined(FU_AMX_EMULATE)");
    L("static __thread unsigned char fu_emu_tile[8][16][64];");
    L("static inline void fu_emu_load(int t, const void *p, int64_t stride) {");
    L("    for (int r = 0; r < 16; r++)");
    L("        memcpy(fu_emu_tile[t][r], (const unsigned char *)p + r * stride, 64);");
    L("}");
    L("static inline void fu_emu_store(int t, void *p, int64_t stride) {");
    L("    for (int r = 0; r < 16; r++)");
    L("        memcpy((unsigned char *)p + r * stride, fu_emu_tile[t][r], 64);");
    L("}");
    L("static inline float fu_emu_bf16(const unsigned char *p) {");
    L("    uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;");
    L("    float x;");
    L("    memcpy(&x, &u, sizeof x);");
    L("    return x;");
    L("}");
    L("/* tdpbf16ps: C[m][n] += sum over k pairs of A[m][k].lo * B[k][n].lo + A[m][k].hi * B[k][n].hi */");
    L("static inline void fu_emu_dp(int c, int a, int bt) {");
    L("    for (int m = 0; m < 16; m++)");
    L("        for (int n = 0; n < 16; n++) {");
    L("            float acc;");
    L("            memcpy(&acc, fu_emu_tile[c][m] + 4 * n, sizeof acc);");
    L("            for (int k = 0; k < 16; k++)");
    L("                for (int e = 0; e < 2; e++)");
    L("                    acc += fu_emu_bf16(fu_emu_tile[a][m] + 4 * k + 2 * e) * fu_emu_bf16(fu_emu_tile[bt][k] + 4 * n + 2 * e);");
    L("            memcpy(fu_emu_tile[c][m] + 4 * n, &acc, sizeof acc);");
    L("        }");
    L("}");
    L("#define FU_TILE_CONFIG(p) ((void)(p))");
    L("#define FU_TILE_RELEASE() ((void)0)");
    L("#define FU_TILE_ZERO(t) memset(fu_emu_tile[t], 0, sizeof fu_emu_tile[t])");
    L("#define FU_TILE_LOAD(t, p, s) fu_emu_load(t, p, s)");
    L("#define FU_TILE_STORE(t, p, s) fu_emu_store(t, p, s)");
    L("#define FU_TILE_DP(c, a, bt) fu_emu_dp(c, a, bt)");
    L("#define FU_AMX_NEED(bits) ((bits) & ~0x%xu)", FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8);
    L("#else");
    L("#define FU_TILE_CONFIG(p) _tile_loadconfig(p)");
    L("#define FU_TILE_RELEASE() _tile_release()");
    L("#define FU_TILE_ZERO(t) _tile_zero(t)");
    L("#define FU_TILE_LOAD(t, p, s) _tile_loadd(t, p, s)");
    L("#define FU_TILE_STORE(t, p, s) _tile_stored(t, p, s)");
    L("#define FU_TILE_DP(c, a, bt) _tile_dpbf16ps(c, a, bt)");
    L("#define FU_AMX_NEED(bits) (bits)");
    L("#endif");
    L("#endif");
}

void ty_prelude(Buf *b, const Target *t, unsigned used) {
    if (!(used & ~(1u << DT_F32 | 1u << DT_I32)) || t->isa == ISA_GENERIC)
        return;
    L("/* ---- stored types for %s (compiler/typed.c) ---- */", t->name);
    L("#if %s", t->guard);
    if ((used & TY_BF16R) && (t->features & FR_CPU_AMX_BF16))
        prelude_amx(b);
    prelude_width(b, t, t->vec_floats, used);
    if (t->isa == ISA_AVX512)
        prelude_width(b, t, 8, used);
    if (used & (1u << DT_Q8_0 | 1u << DT_Q4_0)) {
        if (t->isa == ISA_NEON)
            prelude_qx_neon(b, t, used);
        else
            prelude_qx_x86(b, t, used);
        if (ty_qgemm(t))
            prelude_qgemm_vnni(b, t, used);
        if (t->features & FR_CPU_AMX_INT8)
            prelude_amx_int8(b, t);
    }
    L("#endif /* %s */", t->guard);
    buf_puts(b, "\n");
}
