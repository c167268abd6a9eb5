/*
 * fuzz_api.c - libFuzzer harness for the generated API's argument checks.
 *
 * The committed Llama layer (generated/llama_layer.c, target generic) is
 * included here, so FU_SYM_MAX is the bound the block itself uses.  One
 * input is a little program of choices, each read from the next bytes (0
 * once the input runs out): which pointer arguments are NULL (w, one weight,
 * cache, one cache array, each input, the output, the workspace), T and P
 * (small, negative, near FU_SYM_MAX, extreme or any 64-bit value), the
 * caches' capacity (1..24 rows), the thread count (1..3), workspace_bytes
 * (around what one thread or all threads need, or 0) and the workspace's
 * alignment.  The harness works out the code docs/generated-api.md promises
 * for that call (the checks in their documented order) and holds forward to
 * it:
 *   - the code is exactly the expected one, fr_strerror knows it, and a
 *     failure's fr_last_error names llama_layer_forward;
 *   - a failed call writes nothing: outputs and caches are as they were;
 *   - a successful call writes every output row [0, T) and the cache rows
 *     [P, P+T), and nothing else: not the output rows after T, not the cache
 *     rows before P or after P+T, not a byte of the workspace past workspace_bytes (the
 *     buffers are exactly that large, so ASan sees an overrun, and a canary
 *     after them catches one without ASan).
 * Any violation aborts, which libFuzzer records as a crash.
 */
#include "llama_layer.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ROWS = 24, CANARY = 256 };
#define SENTINEL 0xffffffffu /* a NaN no computation here produces */

static llama_layer_weights good_w;
static const float *weight_mem[9];

static void fail(const char *what, long long a, long long b)
{
    fprintf(stderr, "fuzz_api: %s (%lld, %lld); last error: %s\n", what, a, b, fr_last_error());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const fr_block_desc *d = &llama_layer_desc;
    int64_t none[FR_MAX_SYMS] = {0};
    if (d->nweights != 9)
        fail("the Llama layer changed its weights", d->nweights, 9);
    /* small deterministic weights: values of order 0.01 keep every row finite */
    for (int i = 0; i < d->nweights; i++) {
        int64_t n = fr_desc_numel(&d->weights[i], none);
        float *p = fr_alloc(sizeof(float) * (size_t)n);
        if (!p)
            fail("out of memory for the weights", i, n);
        for (int64_t k = 0; k < n; k++)
            p[k] = (float)((k * 7 + i * 13) % 17 - 8) * 0.002f;
        weight_mem[i] = p;
    }
    const void *const *wv = (const void *const *)weight_mem;
    memcpy(&good_w, wv, sizeof good_w); /* the struct is the weights in desc order */
    if (good_w.mlp_down_proj_weight != weight_mem[8])
        fail("the weights struct is not in desc order", 0, 0);
    return 0;
}

/* The next byte of the input, 0 past its end. */
typedef struct {
    const uint8_t *p;
    size_t n, at;
} Rd;
static unsigned byte(Rd *r) { return r->at < r->n ? r->p[r->at++] : 0; }

static int64_t pick_dim(Rd *r)
{
    unsigned m = byte(r) % 10, v = byte(r);
    switch (m) {
    case 0: return (int64_t)(v % 10);                  /* 0 .. 9 */
    case 1: return -(int64_t)(v % 4) - 1;             /* -1 .. -4 */
    case 2: return FU_SYM_MAX + (int64_t)(v % 5) - 2; /* around the bound */
    case 3: return v & 1 ? INT64_MAX : INT64_MIN;
    case 4: {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = u << 8 | byte(r);
        return (int64_t)u;
    }
    case 5: return (int64_t)(v % ROWS) + 1;
    default: return (int64_t)(v % 6) + 1;              /* mostly small, valid */
    }
}

static void fill(void *p, size_t bytes)
{
    uint32_t s = SENTINEL;
    for (size_t i = 0; i + 4 <= bytes; i += 4)
        memcpy((char *)p + i, &s, 4);
}

/* Row r of a [rows, width] float buffer is all sentinel / has none. */
static int row_all_sentinel(const float *b, int64_t r, int64_t width)
{
    for (int64_t k = 0; k < width; k++) {
        uint32_t u;
        memcpy(&u, &b[r * width + k], 4);
        if (u != SENTINEL)
            return 0;
    }
    return 1;
}
static int row_any_sentinel(const float *b, int64_t r, int64_t width)
{
    for (int64_t k = 0; k < width; k++) {
        uint32_t u;
        memcpy(&u, &b[r * width + k], 4);
        if (u == SENTINEL)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Rd r = {data, size, 0};
    unsigned nulls = byte(&r), which = byte(&r);
    nulls |= byte(&r) << 8;
    int64_t T = pick_dim(&r), P = pick_dim(&r);
    int64_t cap = 1 + (int64_t)(byte(&r) % ROWS);
    int nth = 1 + (int)(byte(&r) % 3);
    unsigned wsmode = byte(&r) % 5;
    int delta = (int)(int8_t)byte(&r);
    unsigned align = byte(&r);
    size_t offset = align % 4 == 0 ? 1 + align % 63 : 0;
    /* NULLs are rarer than not: each flag needs its bit and the next one */
    unsigned null_of = nulls & (nulls >> 1);

    llama_layer_weights w = good_w;
    llama_layer_cache cache;
    fr_err err;
    if (llama_layer_cache_init(&cache, cap, &err) != 0)
        fail("cache_init failed", cap, 0);
    const int64_t D = llama_layer_D, KV = 64;
    float *x = malloc(sizeof(float) * ROWS * D), *out = malloc(sizeof(float) * ROWS * D);
    int32_t *ids = malloc(sizeof(int32_t) * ROWS);
    float *out_before = malloc(sizeof(float) * ROWS * D);
    float *kc_before = malloc(sizeof(float) * (size_t)(cap * KV)), *vc_before = malloc(sizeof(float) * (size_t)(cap * KV));
    if (!x || !out || !ids || !out_before || !kc_before || !vc_before)
        fail("out of memory", 0, 0);
    for (int64_t i = 0; i < ROWS * D; i++)
        x[i] = (float)((i * 31) % 23 - 11) * 0.05f;
    for (int i = 0; i < ROWS; i++)
        ids[i] = i;
    fill(out, sizeof(float) * ROWS * D);
    /* rows before P hold earlier tokens (finite: a NaN there would come out
     * with the sentinel's bits); the rest is sentinel */
    for (int64_t i = 0; i < cap * KV; i++) {
        int earlier = i / KV < P; /* not i < P * KV: P may be near INT64_MAX */
        cache.k_cache[i] = earlier ? (float)(i % 13 - 6) * 0.01f : 0;
        cache.v_cache[i] = earlier ? (float)(i % 11 - 5) * 0.01f : 0;
        if (!earlier) {
            fill(&cache.k_cache[i], 4);
            fill(&cache.v_cache[i], 4);
        }
    }
    memcpy(out_before, out, sizeof(float) * ROWS * D);
    memcpy(kc_before, cache.k_cache, sizeof(float) * (size_t)(cap * KV));
    memcpy(vc_before, cache.v_cache, sizeof(float) * (size_t)(cap * KV));

    /* what a valid call would need, on 1 and on nth threads */
    int dims_ok = T >= 1 && T <= FU_SYM_MAX && P >= 0 && P <= FU_SYM_MAX;
    size_t need1 = 0, needn = 0;
    if (dims_ok) {
        fr_set_num_threads(1);
        need1 = llama_layer_workspace_size(T, P);
        fr_set_num_threads(nth);
        needn = llama_layer_workspace_size(T, P);
        if (need1 == 0 || needn < need1)
            fail("workspace_size: 0, or less on more threads", (long long)need1, (long long)needn);
    } else {
        fr_set_num_threads(nth);
        if (llama_layer_workspace_size(T, P) != 0)
            fail("workspace_size of symbols out of range is not 0", (long long)T, (long long)P);
    }
    fr_set_num_threads(nth);
    size_t bytes;
    switch (wsmode) {
    case 0: bytes = need1 + (size_t)(ptrdiff_t)delta; break;
    case 1: bytes = needn + (size_t)(ptrdiff_t)delta; break;
    case 2: bytes = 0; break;
    case 3: bytes = needn; break;
    default: bytes = need1; break;
    }
    if ((ptrdiff_t)bytes < 0 || bytes > ((size_t)1 << 30))
        bytes = 0;
    /* exactly offset + bytes (+ a canary), 64-byte aligned at the base */
    unsigned char *base = NULL;
    if (posix_memalign((void **)&base, 64, offset + bytes + CANARY) != 0)
        fail("out of memory for the workspace", (long long)bytes, 0);
    memset(base + offset + bytes, 0xa5, CANARY);
    void *ws = base + offset;

    if (null_of & 1)
        *(const float **)((char *)&w + sizeof(float *) * (which % 9)) = NULL;
    const llama_layer_weights *wp = null_of & 2 ? NULL : &w;
    llama_layer_cache cb = cache;
    if (null_of & 4)
        *(which & 1 ? &cb.k_cache : &cb.v_cache) = NULL;
    llama_layer_cache *cp = null_of & 8 ? NULL : &cb;
    const float *xp = null_of & 16 ? NULL : x;
    const int32_t *ip = null_of & 32 ? NULL : ids;
    float *op = null_of & 64 ? NULL : out;
    if (null_of & 128)
        ws = NULL;

    /* the documented order of the checks */
    int want;
    if (!wp || (null_of & 1) || !cp || (null_of & 4) || !xp || !ip || !op)
        want = FR_ENULL;
    else if (!dims_ok)
        want = FR_EDIM;
    else if (P + T > cap)
        want = FR_ECAPACITY;
    else if (!ws)
        want = FR_ENULL;
    else if (offset != 0 || bytes < need1)
        want = FR_EWORKSPACE;
    else
        want = 0;

    fr_seterr(NULL, 0, "%s", "");
    int rc = llama_layer_forward(wp, cp, T, P, xp, ip, op, ws, bytes);
    if (getenv("FUZZ_API_VERBOSE"))
        fprintf(stderr, "fuzz_api: T=%lld P=%lld cap=%lld nth=%d bytes=%zu offset=%zu nulls=0x%x: %d (%s)\n",
                (long long)T, (long long)P, (long long)cap, nth, bytes, offset, null_of, rc, fr_strerror(rc));
    if (rc != want)
        fail("forward returned another code than documented (got, want)", rc, want);
    if (strcmp(fr_strerror(rc), "unknown error code") == 0)
        fail("fr_strerror does not know forward's code", rc, 0);
    for (int i = 0; i < CANARY; i++)
        if (base[offset + bytes + i] != 0xa5)
            fail("forward wrote past workspace_bytes", (long long)bytes, i);
    if (rc != 0) {
        if (strncmp(fr_last_error(), "llama_layer_forward: ", 21) != 0)
            fail("a failure's last error does not name llama_layer_forward", rc, 0);
        if (memcmp(out, out_before, sizeof(float) * ROWS * D) != 0)
            fail("a failed call wrote the output", rc, 0);
        if (memcmp(cache.k_cache, kc_before, sizeof(float) * (size_t)(cap * KV)) != 0 ||
            memcmp(cache.v_cache, vc_before, sizeof(float) * (size_t)(cap * KV)) != 0)
            fail("a failed call wrote a cache", rc, 0);
    } else {
        for (int64_t i = 0; i < ROWS; i++)
            if (i < T ? row_any_sentinel(out, i, D) : !row_all_sentinel(out, i, D))
                fail(i < T ? "an output row was not written" : "an output row after T was written", i, T);
        for (int64_t i = 0; i < cap; i++) {
            int mine = i >= P && i < P + T;
            if (i < P && (memcmp(&cache.k_cache[i * KV], &kc_before[i * KV], sizeof(float) * KV) != 0 ||
                          memcmp(&cache.v_cache[i * KV], &vc_before[i * KV], sizeof(float) * KV) != 0))
                fail("a cache row before P was written", i, P);
            if (mine && (row_any_sentinel(cache.k_cache, i, KV) || row_any_sentinel(cache.v_cache, i, KV)))
                fail("a new cache row was not written", i, P);
            if (i >= P + T && (!row_all_sentinel(cache.k_cache, i, KV) || !row_all_sentinel(cache.v_cache, i, KV)))
                fail("a cache row after P+T was written", i, P + T);
        }
    }
    free(base);
    free(x);
    free(out);
    free(ids);
    free(out_before);
    free(kc_before);
    free(vc_before);
    llama_layer_cache_free(&cache);
    fr_set_num_threads(0);
    return 0;
}
