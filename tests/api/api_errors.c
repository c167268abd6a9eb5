/*
 * api_errors.c - every way of calling a generated NAME_forward wrongly gets
 * its own return code and a message naming the cause.
 *
 *   api_errors GOLDEN.safetensors MODE
 *
 * Linked with the Llama layer as fusec writes it (llama_layer.c/.h).  MODE
 * "args" checks the argument errors on a block this CPU can run: FR_ENULL
 * (w, a weight, cache, a cache array, an input, an output, the workspace),
 * FR_EDIM (T = 0, P < 0, T past FU_SYM_MAX, and workspace_size), FR_ECAPACITY,
 * FR_EWORKSPACE (too few bytes, misaligned), FR_ENOMEM from cache_init under
 * an address-space limit, fr_strerror's texts, and that a good call returns 0
 * with the same output on fewer threads than asked for.  MODE "cpu" expects
 * the block's target to need features this CPU has, masks them all off with
 * fr_cpu_mask and expects FR_ECPU naming the missing features.
 *
 * Prints one line per check; exits 1 when any failed, 2 on a set-up error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "llama_layer.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

static int failed, passed;

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("api_errors: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* rc must be `want` and fr_last_error() must hold every string in `words`. */
static void expect(const char *what, int rc, int want, const char *const *words)
{
    const char *msg = fr_last_error();
    int ok = rc == want;
    for (int i = 0; ok && words && words[i]; i++)
        if (!strstr(msg, words[i]))
            ok = 0;
    printf("%s %s: %d (%s): %s\n", ok ? "ok  " : "FAIL", what, rc, fr_strerror(rc), msg);
    if (ok)
        passed++;
    else {
        failed++;
        if (rc != want)
            printf("       expected %d (%s)\n", want, fr_strerror(want));
        else
            printf("       the message lacks one of the expected words\n");
    }
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

enum { CAP = 16, T0 = 4 };

static llama_layer_weights w;
static llama_layer_cache cache;
static float x[CAP * llama_layer_D], out[CAP * llama_layer_D], out2[CAP * llama_layer_D];
static int32_t pos[CAP];

static int call(const llama_layer_weights *wp, llama_layer_cache *cp, int64_t T, int64_t P, const float *in,
                const int32_t *ids, float *o, void *ws, size_t bytes)
{
    return llama_layer_forward(wp, cp, T, P, in, ids, o, ws, bytes);
}

static void check_args(void)
{
    size_t need = llama_layer_workspace_size(CAP, CAP);
    unsigned char *ws = fr_alloc(need + 64);
    if (!ws)
        die("out of memory");
    fr_seterr(NULL, 0, "%s", "");

    /* FR_ENULL, one per argument */
    expect("w NULL", call(NULL, &cache, T0, 0, x, pos, out, ws, need), FR_ENULL, WORDS("w is NULL"));
    llama_layer_weights wb = w;
    wb.mlp_up_proj_weight = NULL;
    expect("unbound weight", call(&wb, &cache, T0, 0, x, pos, out, ws, need), FR_ENULL,
           WORDS("mlp.up_proj.weight", "not bound"));
    expect("cache NULL", call(&w, NULL, T0, 0, x, pos, out, ws, need), FR_ENULL, WORDS("cache is NULL"));
    llama_layer_cache cb = cache;
    cb.v_cache = NULL;
    expect("cache not allocated", call(&w, &cb, T0, 0, x, pos, out, ws, need), FR_ENULL, WORDS("v_cache"));
    expect("input NULL", call(&w, &cache, T0, 0, NULL, pos, out, ws, need), FR_ENULL, WORDS("hidden_states"));
    expect("second input NULL", call(&w, &cache, T0, 0, x, NULL, out, ws, need), FR_ENULL,
           WORDS("position_ids"));
    expect("output NULL", call(&w, &cache, T0, 0, x, pos, NULL, ws, need), FR_ENULL,
           WORDS("output", "hidden_states"));
    expect("workspace NULL", call(&w, &cache, T0, 0, x, pos, out, NULL, need), FR_ENULL,
           WORDS("workspace is NULL"));

    /* FR_EDIM: the symbol and its value */
    expect("T = 0", call(&w, &cache, 0, 0, x, pos, out, ws, need), FR_EDIM, WORDS("T = 0"));
    expect("P = -1", call(&w, &cache, 1, -1, x, pos, out, ws, need), FR_EDIM, WORDS("P = -1"));
    expect("T past FU_SYM_MAX", call(&w, &cache, INT64_C(1) << 40, 0, x, pos, out, ws, need), FR_EDIM,
           WORDS("T = 1099511627776"));
    fr_seterr(NULL, 0, "%s", "");
    size_t z = llama_layer_workspace_size(3, -2);
    expect("workspace_size(3, -2) is 0", z == 0 ? FR_EDIM : 0, FR_EDIM, WORDS("workspace_size", "P = -2"));

    /* FR_ECAPACITY: the capacity and the rows needed */
    expect("P + T past the capacity", call(&w, &cache, 7, 10, x, pos, out, ws, need), FR_ECAPACITY,
           WORDS("16 rows", "17"));

    /* FR_EWORKSPACE: too small for even one thread, and misaligned */
    size_t need1 = 0;
    {
        int saved = fr_get_num_threads();
        fr_set_num_threads(1);
        need1 = llama_layer_workspace_size(T0, 0);
        fr_set_num_threads(saved);
    }
    expect("workspace one byte short", call(&w, &cache, T0, 0, x, pos, out, ws, need1 - 1), FR_EWORKSPACE,
           WORDS("workspace has", "needs"));
    expect("workspace misaligned", call(&w, &cache, T0, 0, x, pos, out, ws + 8, need), FR_EWORKSPACE,
           WORDS("aligned"));

    /* the checks come before any work: nothing was written to the output */
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        if (out[i] != 0) {
            expect("failed calls leave the output alone", -1, 0, NULL);
            break;
        }

    /* A good call: 0, and the last error is left as it was. */
    fr_seterr(NULL, 0, "%s", "before");
    expect("good call on the workspace's thread count", call(&w, &cache, T0, 0, x, pos, out, ws, need), 0,
           WORDS("before"));
    /* A workspace sized for one thread still serves a call that asks for
     * more: it runs on one thread, and gives the one-thread answer. */
    int saved = fr_get_num_threads();
    fr_set_num_threads(1);
    int rc1 = call(&w, &cache, T0, 0, x, pos, out, ws, need1);
    fr_set_num_threads(4);
    int rc4 = call(&w, &cache, T0, 0, x, pos, out2, ws, need1);
    fr_set_num_threads(saved);
    expect("workspace for 1 thread, 4 asked", rc1 ? rc1 : rc4, 0, NULL);
    expect("... gives the one-thread result", memcmp(out, out2, sizeof(float) * T0 * llama_layer_D) ? -1 : 0, 0,
           NULL);
    fr_free(ws);

    /* FR_ENOMEM from cache_init, under an address-space limit (ASan: its
     * own allocation limit, set by run.sh) */
    if (!UNDER_ASAN) {
        struct rlimit rl = {(rlim_t)4 << 30, (rlim_t)4 << 30};
        struct rlimit old;
        if (getrlimit(RLIMIT_AS, &old) != 0 || setrlimit(RLIMIT_AS, &rl) != 0)
            die("cannot limit the address space");
        llama_layer_cache big;
        fr_err err;
        int rc = llama_layer_cache_init(&big, INT64_C(1) << 28, &err); /* 64 GiB a cache */
        setrlimit(RLIMIT_AS, &old);
        expect("cache_init past the address-space limit", rc, FR_ENOMEM, WORDS("out of memory", "k_cache"));
        llama_layer_cache_free(&big);
    } else {
        llama_layer_cache big;
        fr_err err;
        int rc = llama_layer_cache_init(&big, INT64_C(1) << 28, &err);
        expect("cache_init past ASan's allocation limit", rc, FR_ENOMEM, WORDS("out of memory", "k_cache"));
        llama_layer_cache_free(&big);
    }

    /* fr_strerror: a distinct text per code */
    static const int codes[] = {FR_OK,    FR_EIO,  FR_EFORMAT, FR_ENOTFOUND, FR_ETYPE,     FR_ESHAPE,    FR_ENOMEM,
                                FR_EINVAL, FR_ENULL, FR_EDIM,    FR_ECAPACITY, FR_ECPU, FR_EWORKSPACE};
    int n = (int)(sizeof codes / sizeof codes[0]), distinct = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if ((i != j && strcmp(fr_strerror(codes[i]), fr_strerror(codes[j])) == 0) ||
                strcmp(fr_strerror(codes[i]), "unknown error code") == 0)
                distinct = 0;
    expect("fr_strerror: a distinct text per code", distinct ? 0 : -1, 0, NULL);
    expect("fr_strerror of an unknown code",
           strcmp(fr_strerror(-99), "unknown error code") == 0 && strcmp(fr_strerror(1), "unknown error code") == 0
               ? 0
               : -1,
           0, NULL);
}

static void check_cpu(void)
{
    size_t need = llama_layer_workspace_size(T0, 0);
    void *ws = fr_alloc(need);
    if (!ws)
        die("out of memory");
    if (call(&w, &cache, T0, 0, x, pos, out, ws, need) != 0)
        die("the block does not run on this CPU: %s", fr_last_error());
    fr_cpu_mask(~0u); /* the bits to hide: all of them */
    expect("CPU without the target's features", call(&w, &cache, T0, 0, x, pos, out, ws, need), FR_ECPU,
           WORDS("needs", "lacks", "avx"));
    fr_free(ws);
}

int main(int argc, char **argv)
{
    fr_st f;
    fr_err err;
    if (argc != 3)
        die("usage: api_errors GOLDEN.safetensors args|cpu");
    if (fr_st_open(&f, argv[1], &err) != 0 || llama_layer_bind(&w, &f, "w.", &err) != 0 ||
        llama_layer_cache_init(&cache, CAP, &err) != 0)
        die("%s", err.msg);
    const fr_tensor *tx = fr_st_find(&f, "in.hidden_states");
    if (!tx || tx->dtype != FR_F32 || tx->rank != 2 || tx->shape[0] < T0 || tx->shape[1] != llama_layer_D)
        die("in.hidden_states missing or not f32[>= %d, %d]", T0, llama_layer_D);
    memcpy(x, tx->data, sizeof(float) * T0 * llama_layer_D);
    for (int i = 0; i < CAP; i++)
        pos[i] = i;
    if (strcmp(argv[2], "args") == 0)
        check_args();
    else if (strcmp(argv[2], "cpu") == 0)
        check_cpu();
    else
        die("unknown mode '%s'", argv[2]);
    llama_layer_cache_free(&cache);
    fr_st_close(&f);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
