/*
 * peer_llama.c - llama.cpp as a measured peer (docs/benchmarks.md,
 * "llama.cpp"): loads a GGUF (bench/peer_llama_gguf.py), runs it through
 * llama.h with flash attention on and the F16 KV cache (llama.cpp's
 * defaults for a CPU build), and either times it or prints its logits.
 * Built by bench/install-llama.sh against the static libllama/ggml of the
 * llama-cpp-python sdist: build/peers/peer_llama.
 *
 *   peer_llama MODEL.gguf --ids 1,2,3 [--split K] [--logits FILE] [--threads N]
 *       ids[0..K) as one batch (default K = all), the rest one token at a
 *       time through the KV cache; writes the last position's logits to FILE
 *       (one per line, %.9g) and prints the greedy next token.
 *   peer_llama MODEL.gguf --prefill T [--threads N] [--reps R]
 *       times a batch of T random ids at position 0 (the cache cleared before
 *       each call).
 *   peer_llama MODEL.gguf --decode P [--threads N] [--reps R]
 *       fills the cache with P random ids, then times one token at position P;
 *       the token is removed from the cache after each call
 *       (llama_memory_seq_rm), so every timed step runs at the same position.
 *   peer_llama MODEL.gguf --ids LIST --generate N [--threads N]
 *       prefills LIST, then generates N greedy tokens; prints them and the
 *       prefill and decode speeds (W6).
 *
 * --kv-type f32 (default f16, llama.cpp's) gives the KV cache in float32:
 * the check of the conversion itself without the cache's rounding.
 *
 * --outputs all asks for the logits of every position, not only the last:
 * llama.cpp computes the last layer's attention output projection and FFN
 * only for the rows whose outputs are asked for, so a one-layer model
 * standing in for one layer must ask for all of them (bench/types.sh; the
 * lm_head of its 256-token vocabulary then adds under 1%).
 *
 * --flush BYTES reads a buffer of BYTES before each timed call, as
 * bench/types.sh does before fusec's decode calls (FLUSH=1).
 *
 * Timed modes run one warm-up call, then R calls (default 21), and print
 *
 *   llama.cpp T=.. P=.. threads N median_ms MS min_ms MS max_ms MS
 *
 * Errors: a message on stderr and exit status 1.
 */
#include "llama.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "peer_llama: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(1);
}

static int verbose;
static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (verbose || level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

#include "timing.h"

static long num(const char *s, long lo, long hi, const char *what) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        die("bad number for", what);
    return v;
}

static struct llama_context *ctx;
static struct llama_batch batch;
static int n_vocab, all_outputs;

/* Reads BYTES of a buffer of its own, as bench/limits.c's limits_flush
 * before fusec's decode calls in bench/types.sh: the weights then come
 * from memory, as in a whole model. */
static volatile uint64_t flush_sink;
static void flush_caches(size_t bytes) {
    static uint64_t *buf;
    size_t n = bytes / sizeof *buf;
    if (!buf) {
        buf = malloc(n * sizeof *buf);
        if (!buf)
            die("out of memory for --flush", NULL);
        for (size_t i = 0; i < n; i++)
            buf[i] = i;
    }
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
    }
    flush_sink = s0 + s1 + s2 + s3;
}

/* Runs ids[0..n) at positions pos0.. as one batch; logits for the last. */
static void run(const llama_token *ids, int n, int pos0) {
    batch.n_tokens = n;
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = pos0 + i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = all_outputs || i == n - 1;
    }
    if (llama_decode(ctx, batch) != 0)
        die("llama_decode failed", NULL);
    llama_synchronize(ctx);
}

static int argmax(void) {
    const float *l = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL, *logits_path = NULL;
    long threads = 1, reps = 21, prefill = 0, decode = -1, split = 0, generate = 0, flush = 0;
    enum ggml_type kv = GGML_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-v")) {
            verbose = 1;
            continue;
        }
        if (a[0] != '-') {
            if (model_path)
                die("more than one model", a);
            model_path = a;
            continue;
        }
        if (!v)
            die("option needs a value", a);
        i++;
        if (!strcmp(a, "--ids"))
            ids_arg = v;
        else if (!strcmp(a, "--logits"))
            logits_path = v;
        else if (!strcmp(a, "--threads"))
            threads = num(v, 1, 1024, a);
        else if (!strcmp(a, "--reps"))
            reps = num(v, 1, 100000, a);
        else if (!strcmp(a, "--prefill"))
            prefill = num(v, 1, 1 << 20, a);
        else if (!strcmp(a, "--decode"))
            decode = num(v, 0, 1 << 20, a);
        else if (!strcmp(a, "--split"))
            split = num(v, 1, 1 << 20, a);
        else if (!strcmp(a, "--kv-type") && (!strcmp(v, "f16") || !strcmp(v, "f32")))
            kv = !strcmp(v, "f16") ? GGML_TYPE_F16 : GGML_TYPE_F32;
        else if (!strcmp(a, "--outputs") && (!strcmp(v, "all") || !strcmp(v, "last")))
            all_outputs = !strcmp(v, "all");
        else if (!strcmp(a, "--flush"))
            flush = num(v, 0, 1L << 34, a);
        else if (!strcmp(a, "--generate"))
            generate = num(v, 1, 1 << 20, a);
        else
            die("unknown option", a);
    }
    if (!model_path)
        die("usage: peer_llama MODEL.gguf (--ids LIST [--split K] [--logits FILE] [--generate N] | --prefill T |"
            " --decode P) [--threads N] [--reps R] [--kv-type f16|f32] [--outputs last|all] [--flush BYTES] [-v]", NULL);
    if (!!ids_arg + !!prefill + (decode >= 0) != 1)
        die("give exactly one of --ids, --prefill, --decode", NULL);

    llama_log_set(log_cb, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model)
        die("cannot load", model_path);
    n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    /* the token ids: given, or random (a fixed xorshift) */
    int n_ids = 0;
    llama_token *ids = NULL;
    if (ids_arg) {
        ids = malloc((strlen(ids_arg) / 2 + 2) * sizeof *ids);
        for (const char *p = ids_arg; *p;) {
            char *end;
            long t = strtol(p, &end, 10);
            if (end == p || t < 0 || t >= n_vocab || (*end && *end != ','))
                die("bad token id list (ids are 0 .. vocab-1, comma-separated)", ids_arg);
            ids[n_ids++] = (llama_token)t;
            p = *end ? end + 1 : end;
        }
        if (!n_ids)
            die("empty --ids", NULL);
    } else {
        n_ids = prefill ? (int)prefill : (int)decode + 1;
        ids = malloc(n_ids * sizeof *ids);
        uint64_t r = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < n_ids; i++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            ids[i] = (llama_token)(r % (uint64_t)n_vocab);
        }
    }
    int n_ctx = n_ids + (int)generate + 1;
    int n_batch = prefill ? (int)prefill : decode >= 0 ? (int)(decode > 0 ? decode : 1) : n_ids;
    if (n_batch < 512)
        n_batch = 512; /* llama.cpp's default n_batch/n_ubatch */

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)((n_ctx + 255) / 256 * 256);
    cp.n_batch = cp.n_ubatch = (uint32_t)n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = (int32_t)threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.type_k = cp.type_v = kv;
    cp.no_perf = 1;
    ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("cannot create a context for", model_path);
    llama_memory_t mem = llama_get_memory(ctx);
    batch = llama_batch_init(n_batch > n_ids ? n_batch : n_ids, 0, 1);

    if (ids_arg) {
        int k = split && split < n_ids ? (int)split : n_ids;
        double t0 = now_ms();
        run(ids, k, 0);
        for (int i = k; i < n_ids; i++)
            run(ids + i, 1, i);
        double t1 = now_ms();
        int next = argmax();
        if (logits_path) {
            FILE *f = fopen(logits_path, "w");
            if (!f)
                die("cannot write", logits_path);
            const float *l = llama_get_logits_ith(ctx, -1);
            for (int i = 0; i < n_vocab; i++)
                fprintf(f, "%.9g\n", l[i]);
            if (fclose(f))
                die("cannot write", logits_path);
        }
        if (!generate) {
            printf("%d\n", next);
        } else {
            double t2 = now_ms();
            printf("%d", next);
            for (long g = 1; g < generate; g++) {
                llama_token t = next;
                run(&t, 1, n_ids + (int)g - 1);
                next = argmax();
                printf(" %d", next);
            }
            double t3 = now_ms();
            printf("\n");
            fprintf(stderr, "llama.cpp, %ld threads: prefill %d tokens in %.3f s (%.1f tokens/s); decode %ld tokens in "
                    "%.3f s (%.2f tokens/s)\n", threads, n_ids, (t1 - t0) / 1e3, n_ids / ((t1 - t0) / 1e3),
                    generate - 1, (t3 - t2) / 1e3, generate > 1 ? (generate - 1) / ((t3 - t2) / 1e3) : 0.0);
        }
    } else {
        double *ms = malloc((size_t)reps * sizeof *ms);
        int T = prefill ? (int)prefill : 1, P = prefill ? 0 : (int)decode;
        if (!prefill && P > 0)
            run(ids, P, 0); /* the cached tokens */
        for (long r = -1; r < reps; r++) {
            if (prefill)
                llama_memory_clear(mem, 1);
            if (flush)
                flush_caches((size_t)flush);
            double t0 = now_ms();
            run(ids + P, T, P);
            double t1 = now_ms();
            if (!prefill && !llama_memory_seq_rm(mem, 0, P, -1))
                die("llama_memory_seq_rm failed", NULL);
            if (r >= 0)
                ms[r] = t1 - t0;
        }
        qsort(ms, (size_t)reps, sizeof *ms, cmp);
        printf("llama.cpp T=%d P=%d threads %ld median_ms %.4f min_ms %.4f max_ms %.4f\n", T, P, threads,
               ms[reps / 2], ms[0], ms[reps - 1]);
        free(ms);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return 0;
}
