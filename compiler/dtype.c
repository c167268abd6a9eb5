/*
 * dtype.c - element types: the facts of dtypes.def, the float16/bfloat16
 * conversions, the quantizers and dequantizers, and the --weight-type
 * rules that sema applies to declarations.
 *
 * The quantizers reproduce llama.cpp's reference ones bit for bit
 * (quantize_row_q8_0_ref and quantize_row_q4_0_ref in ggml/src/ggml-quants.c),
 * including their float32 arithmetic, so a checkpoint quantized here is the
 * one llama.cpp would make; docs/quantization.md has the formulas and the
 * byte layouts, and tests/quant/quant_ref.py is an independent numpy
 * implementation that tests/quant/run.sh compares with `fusec quantize` byte for
 * byte.  The dequantizers give the exact stored values (in double): that is
 * what the float64 interpreter computes with, so a quantized block is
 * checked against the values it really holds.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static DTypeInfo infos[DT_COUNT] = {
#define DT(id, nm, frt, ct, kd) [DT_##id] = {.name = nm, .fr = frt, .ctype = ct, .kind = kd},
#include "dtypes.def"
#undef DT
};

const DTypeInfo *dt_info(DType t) {
    FU_ASSERT((int)t >= 0 && t < DT_COUNT);
    DTypeInfo *d = &infos[t];
    if (d->block == 0) { /* the runtime owns block sizes */
        d->block = fr_dtype_block((fr_dtype)d->fr);
        d->block_bytes = (int)fr_dtype_block_bytes((fr_dtype)d->fr);
    }
    return d;
}

const char *dtype_name(DType t) { return dt_info(t)->name; }

int dt_lookup(const char *name) {
    for (int t = 0; t < DT_COUNT; t++)
        if (strcmp(infos[t].name, name) == 0)
            return t;
    return -1;
}

int dt_from_fr(int fr) {
    for (int t = 0; t < DT_COUNT; t++)
        if (infos[t].fr == fr)
            return t;
    return -1;
}

const char *dt_names(unsigned kinds) {
    Buf b = {0};
    for (int t = 0; t < DT_COUNT; t++)
        if (kinds & (1u << infos[t].kind))
            buf_printf(&b, "%s%s", b.len ? ", " : "", infos[t].name);
    const char *s = fu_strdup(b.data ? b.data : "");
    free(b.data);
    return s;
}

int64_t dt_row_units(DType t, int64_t n) {
    const DTypeInfo *d = dt_info(t);
    if (d->block == 1)
        return n;
    return (n + d->block - 1) / d->block * d->block_bytes;
}

/* ---- float16 and bfloat16 ------------------------------------------------------ */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Round to nearest even; overflow gives infinity; NaN stays NaN (quiet,
 * with its sign and the top bits of its payload). */
uint16_t dt_f32_to_f16(float x) {
    uint32_t u = f32_bits(x), sign = (u >> 16) & 0x8000, a = u & 0x7fffffff;
    if (a > 0x7f800000)
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000) /* 65520 and up round to infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a >= 0x38800000) { /* a normal float16: 2^-14 and up */
        uint32_t r = a - 0x38000000, h = r >> 13, rem = r & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* subnormal or zero: units of 2^-24, rounded to nearest even; below
     * 2^-25 (and 2^-25 itself, a tie) that is 0 */
    if (a <= 0x33000000)
        return (uint16_t)sign;
    uint32_t m = (a & 0x7fffff) | 0x800000, shift = 126 - (a >> 23), h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float dt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f)
        return bits_f32(sign | 0x7f800000 | (m << 13));
    if (e)
        return bits_f32(sign | ((e + 112) << 23) | (m << 13));
    float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
    return sign ? -v : v;
}

uint16_t dt_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float dt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ---- quantizers ----------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* One block of 32 (x already zero-padded): quantize_row_q8_0_ref's body. */
static bool q8_0_block(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float v = fabsf(x[j]);
        amax = amax > v ? amax : v;
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = dt_f32_to_f16(d);
    put16(b, dh);
    for (int j = 0; j < 32; j++) {
        const float x0 = x[j] * id;
        b[2 + j] = (uint8_t)(int8_t)roundf(x0);
    }
    return (dh & 0x7c00) != 0x7c00;
}

/* quantize_row_q4_0_ref's body: the scale comes from the value of largest
 * magnitude (the first such), signed, so that it maps to q = 0 exactly. */
static bool q4_0_block(const float *x, uint8_t *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = dt_f32_to_f16(d);
    put16(b, dh);
    for (int j = 0; j < 16; j++) {
        const float x0 = x[j] * id;
        const float x1 = x[16 + j] * id;
        const float y0 = x0 + 8.5f;
        const float y1 = x1 + 8.5f;
        const int q0 = (int8_t)y0 < 15 ? (int8_t)y0 : 15;
        const int q1 = (int8_t)y1 < 15 ? (int8_t)y1 : 15;
        b[2 + j] = (uint8_t)(q0 | q1 << 4);
    }
    return (dh & 0x7c00) != 0x7c00;
}

int64_t dt_store_row(DType t, const float *x, int64_t n, void *dst) {
    const DTypeInfo *d = dt_info(t);
    uint8_t *o = dst;
    switch (d->kind) {
    case DK_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        return -1;
    case DK_HALF:
        for (int64_t i = 0; i < n; i++)
            put16(o + 2 * i, t == DT_BF16 ? dt_f32_to_bf16(x[i]) : dt_f32_to_f16(x[i]));
        return -1;
    case DK_QUANT:
        for (int64_t b0 = 0; b0 < n; b0 += 32, o += d->block_bytes) {
            float blk[32];
            int m = n - b0 < 32 ? (int)(n - b0) : 32;
            for (int j = 0; j < 32; j++)
                blk[j] = j < m ? x[b0 + j] : 0.0f;
            for (int j = 0; j < m; j++)
                if (!isfinite(blk[j]))
                    return b0 + j;
            if (!(t == DT_Q8_0 ? q8_0_block(blk, o) : q4_0_block(blk, o))) {
                /* the scale overflows float16: name the largest element */
                int at = 0;
                for (int j = 1; j < m; j++)
                    if (fabsf(blk[j]) > fabsf(blk[at]))
                        at = j;
                return b0 + at;
            }
        }
        return -1;
    case DK_INT:
        break;
    }
    FU_UNREACHABLE();
}

void dt_load_row(DType t, const void *src, int64_t n, double *out) {
    const DTypeInfo *d = dt_info(t);
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        float f;
        int32_t k;
        switch (d->kind) {
        case DK_F32:
            memcpy(&f, p + 4 * i, 4);
            out[i] = f;
            break;
        case DK_INT:
            memcpy(&k, p + 4 * i, 4);
            out[i] = k;
            break;
        case DK_HALF:
            out[i] = t == DT_BF16 ? dt_bf16_to_f32(get16(p + 2 * i)) : dt_f16_to_f32(get16(p + 2 * i));
            break;
        case DK_QUANT: {
            const uint8_t *b = p + i / 32 * d->block_bytes;
            int j = (int)(i % 32), q;
            double scale = dt_f16_to_f32(get16(b));
            if (t == DT_Q8_0)
                q = (int8_t)b[2 + j];
            else
                q = (j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4) - 8;
            out[i] = scale * q;
            break;
        }
        }
    }
}

/* ---- --weight-type ------------------------------------------------------------------ */

#define MAX_RULES 64

static struct {
    char *pattern;
    DType t;
} rules[MAX_RULES];
static int nrules;

bool dt_add_weight_rule(const char *spec, char *why, size_t whylen) {
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec) {
        snprintf(why, whylen, "expected PATTERN=TYPE, got '%s'", spec);
        return false;
    }
    int t = dt_lookup(eq + 1);
    if (t < 0 || dt_info((DType)t)->kind == DK_INT) {
        snprintf(why, whylen, "unknown weight type '%s' (%s)", eq + 1,
                 dt_names(1u << DK_F32 | 1u << DK_HALF | 1u << DK_QUANT));
        return false;
    }
    if (nrules == MAX_RULES) {
        snprintf(why, whylen, "more than %d rules", MAX_RULES);
        return false;
    }
    /* malloc, not the arena: the rules outlive fu_arena_release */
    char *pat = malloc((size_t)(eq - spec) + 1);
    if (!pat)
        fu_internal(__FILE__, __LINE__, "out of memory");
    memcpy(pat, spec, (size_t)(eq - spec));
    pat[eq - spec] = '\0';
    rules[nrules].pattern = pat;
    rules[nrules++].t = (DType)t;
    return true;
}

int dt_weight_rule(const char *name, const char **pattern) {
    for (int i = nrules - 1; i >= 0; i--)
        if (fnmatch(rules[i].pattern, name, 0) == 0) {
            if (pattern)
                *pattern = rules[i].pattern;
            return rules[i].t;
        }
    return -1;
}

/* --kv-type: the type of every cache, or -1 for the declared ones. */
static int kv_type = -1;

bool dt_set_kv_type(const char *name, char *why, size_t whylen) {
    int t = dt_lookup(name);
    if (t != DT_F32 && t != DT_F16 && t != DT_BF16) {
        snprintf(why, whylen, "expected f32, f16 or bf16, got '%s'", name);
        return false;
    }
    kv_type = t;
    return true;
}

int dt_kv_type(void) { return kv_type; }

void dt_clear_rules(void) {
    while (nrules > 0)
        free(rules[--nrules].pattern);
    kv_type = -1;
}
