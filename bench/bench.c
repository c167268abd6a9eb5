/*
 * bench.c - the benchmark driver: fusec's generated blocks against OpenBLAS
 * and PyTorch eager, on the same random weights and inputs, as ratios to
 * fusec fused and as fractions of the machine's measured limits.
 *
 *   bench [--quick] [--gen DIR] [--variant LABEL=SUFFIX]... [--torch SCRIPT]
 *         [--python PY] [--data DIR] [--csv FILE] [--threads N,1] [--only W1,W3]
 *         [--perturb LABEL]
 *   bench --selftest GOLDEN_DIR
 *
 * Each fusec variant (fused, -O0, per target) is a shared object
 * GEN/BLOCK.SUFFIX.so built by bench/run.sh; the driver dlopens it and runs
 * the block through its fr_block_desc (BLOCK_desc), so one process holds
 * every variant, the runtime's single thread pool serves them all, and the
 * contenders can be interleaved within each repetition.  The first variant
 * is the reference ("fusec fused"); the one labelled like it plus " -O0" is
 * its unfused twin.  The OpenBLAS peer is linked in (peer_openblas.c);
 * PyTorch runs in a child python process fed over a pipe (peer_torch.py),
 * started once so its weights stay loaded.
 *
 * Per workload and thread count (a "cell"): every contender runs once on
 * the same inputs and the outputs are compared pairwise (relative L2 <=
 * 1e-4; a contender whose median disagreement exceeds it is marked
 * MISMATCH, loudly); that run is also the warm-up.  Then repetitions are
 * interleaved (round r starts at contender r mod n), each run preceded by a
 * cache flush so decode reads its weights from memory as it would in a
 * full model, with a repetition count chosen from the check run's time so
 * that each cell stays within a time budget.  A contender slower than the
 * budget allows keeps its check run as its only sample (n = 1, noted).
 *
 * The suite as a whole has a deadline (500 s, QUICK 100 s) so that it ends
 * in under 10 minutes on a 2-core machine whatever the compiler produces:
 * each cell gets a share of the time left; an optional variant (a target
 * other than the reference) whose run, predicted from its last speed, does
 * not fit in that share is skipped (marked); past the deadline every
 * contender keeps its check run as its one sample.  The reference, its -O0
 * twin and the peers always run.
 */
#include "bench.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_VARIANTS 16
#define MAX_CONTENDERS (MAX_VARIANTS + 2)
#define MAX_TENSORS 64
#define MAX_SAMPLES 64
#define MAX_ROWS 512
#define TOLERANCE 1e-4

/* ---- workloads ------------------------------------------------------------------ */

typedef struct Block {
    const char *name;       /* bench/blocks/NAME.fdl, NAME_desc */
    const char *torch;      /* peer_torch.py's model */
    Model m;
    int in_out;             /* rank-2 weights are [in, out] (GPT-2 Conv1D) */
} Block;

static const Block blocks[] = {
    {"llama_1b", "llama", {MODEL_LLAMA, 2048, 8192, 32, 8, 64, 1e-5, 500000.0}, 0},
    {"attention_1b", "attn", {MODEL_ATTN, 2048, 0, 32, 32, 64, 0, 0}, 0},
    {"gpt2_medium", "gpt2", {MODEL_GPT2, 1024, 4096, 16, 16, 64, 1e-5, 0}, 1},
    {"mlp_1b", "mlp", {MODEL_MLP, 2048, 8192, 0, 0, 0, 1e-5, 0}, 0},
};

typedef struct Workload {
    const char *id, *what;
    int block;
    int64_t T, P, quick_T, quick_P;
    int bw_bound;           /* judged against read bandwidth (else FMA peak) */
} Workload;

static const Workload workloads[] = {
    {"W1", "Llama-3.2-1B layer, decode", 0, 1, 1024, 1, 1024, 1},
    {"W2", "Llama-3.2-1B layer, prefill", 0, 512, 0, 64, 0, 0},
    {"W3", "causal attention, 32x64", 1, 2048, 0, 512, 0, 0},
    {"W4", "GPT-2-medium block", 2, 256, 0, 64, 0, 0},
    {"W5a", "Llama-3.2-1B MLP, 1 token", 3, 1, 0, 1, 0, 1},
    {"W5b", "Llama-3.2-1B MLP, prefill", 3, 512, 0, 64, 0, 0},
};
#define NWORKLOADS ((int)(sizeof workloads / sizeof workloads[0]))

/* FLOPs of the matrix products (2 per multiply-add), attention counted over
 * the causal (query, key) pairs only: query t of T sees P + t + 1 keys. */
static double model_flops(const Model *m, int64_t T, int64_t P)
{
    double t = (double)T, D = (double)m->D, F = (double)m->F;
    double Q = (double)(m->H * m->HD), KV = (double)(m->KVH * m->HD);
    double pairs = (double)T * (double)P + (double)T * (double)(T + 1) / 2.0;
    double att = 4.0 * Q * pairs;
    switch (m->kind) {
    case MODEL_LLAMA: return 2.0 * t * (D * Q + 2.0 * D * KV + Q * D + 3.0 * D * F) + att;
    case MODEL_ATTN: return att;
    case MODEL_GPT2: return 2.0 * t * (4.0 * D * D + 2.0 * D * F) + att;
    case MODEL_MLP: return 2.0 * t * 3.0 * D * F;
    }
    return 0;
}

/* Bytes a run must move at least: every weight once, the KV cache rows it
 * reads, its inputs and outputs. */
static double model_bytes(const Model *m, double weight_bytes, int64_t T, int64_t P)
{
    double t = (double)T, S = (double)(P + T), D = (double)m->D;
    double KV = (double)(m->KVH * m->HD);
    switch (m->kind) {
    case MODEL_LLAMA: return weight_bytes + 4.0 * (2.0 * S * KV + 2.0 * t * D) + 4.0 * t;
    case MODEL_ATTN: return 4.0 * 4.0 * t * D;
    case MODEL_GPT2: return weight_bytes + 4.0 * (2.0 * S * D + 2.0 * t * D);
    case MODEL_MLP: return weight_bytes + 4.0 * 2.0 * t * D;
    }
    return 0;
}

/* ---- options ---------------------------------------------------------------------- */

typedef struct Variant {
    char label[64];
    char suffix[64];
} Variant;

static struct {
    int quick;
    const char *gen, *torch, *python, *data, *csv, *only;
    const char *perturb;    /* a contender whose checked output is spoilt on purpose */
    const char *selftest;   /* --selftest GOLDEN_DIR: check the pieces and the peer, then exit */
    int threads[2], nthreads;
    Variant variants[MAX_VARIANTS];
    int nvariants;
    double budget, slow;    /* seconds per contender per cell; beyond slow, n = 1 */
    double cell_budget;     /* seconds per cell before optional variants are dropped */
    double deadline;        /* seconds for the whole suite: past it, one run per contender */
    int min_reps, max_reps;
    size_t bw_bytes, flush_bytes;
} opt;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench [--quick] [--gen DIR] [--variant LABEL=SUFFIX]... [--torch SCRIPT]\n"
            "             [--python PY] [--data DIR] [--csv FILE] [--threads N,1] [--only W1,W3]\n"
            "             [--perturb LABEL]   (spoils LABEL's checked output: tests the check)\n"
            "       bench --selftest GOLDEN_DIR  (statistics, FLOPs, the OpenBLAS peer vs Hugging Face)\n");
    exit(2);
}

static void parse_threads(const char *s)
{
    opt.nthreads = 0;
    while (*s && opt.nthreads < 2) {
        char *end;
        long n = strtol(s, &end, 10);
        if (end == s || n < 1 || n > 256)
            die("bad --threads '%s'", s);
        opt.threads[opt.nthreads++] = (int)n;
        s = *end == ',' ? end + 1 : end;
    }
}

static void parse_args(int argc, char **argv)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    opt.gen = "build/bench/gen";
    opt.python = "/usr/bin/python3";
    opt.data = "build/bench/data";
    /* all cores first: the headline numbers get the time budget first */
    opt.threads[0] = ncpu > 1 ? (int)ncpu : 1;
    opt.threads[1] = 1;
    opt.nthreads = ncpu > 1 ? 2 : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--gen") == 0)
            opt.gen = v;
        else if (strcmp(a, "--torch") == 0)
            opt.torch = v;
        else if (strcmp(a, "--python") == 0)
            opt.python = v;
        else if (strcmp(a, "--data") == 0)
            opt.data = v;
        else if (strcmp(a, "--csv") == 0)
            opt.csv = v;
        else if (strcmp(a, "--only") == 0)
            opt.only = v;
        else if (strcmp(a, "--perturb") == 0)
            opt.perturb = v;
        else if (strcmp(a, "--selftest") == 0)
            opt.selftest = v;
        else if (strcmp(a, "--threads") == 0)
            parse_threads(v);
        else if (strcmp(a, "--variant") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || (size_t)(eq - v) >= sizeof opt.variants[0].label ||
                strlen(eq + 1) >= sizeof opt.variants[0].suffix)
                die("bad --variant '%s' (want LABEL=SUFFIX)", v);
            if (opt.nvariants == MAX_VARIANTS)
                die("too many variants");
            Variant *var = &opt.variants[opt.nvariants++];
            memcpy(var->label, v, (size_t)(eq - v));
            var->label[eq - v] = '\0';
            strcpy(var->suffix, eq + 1);
        } else
            usage();
    }
    if (opt.nthreads == 2 && opt.threads[0] == opt.threads[1])
        opt.nthreads = 1;
    opt.budget = opt.quick ? 0.5 : 1.5;
    opt.slow = opt.quick ? 1.5 : 6.0;
    opt.cell_budget = opt.quick ? 10.0 : 45.0;
    opt.deadline = opt.quick ? 100.0 : 500.0;
    opt.min_reps = opt.quick ? 3 : 5;
    opt.max_reps = opt.quick ? 10 : 30;
    /* well beyond the last-level cache either way (260 MiB here) */
    opt.bw_bytes = opt.quick ? (size_t)512 << 20 : (size_t)1 << 30;
}

static int selected(const char *id)
{
    if (!opt.only)
        return 1;
    size_t n = strlen(id);
    for (const char *s = opt.only; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && strncmp(s, id, n) == 0)
            return 1;
        s += len + (e != NULL);
    }
    return 0;
}

/* ---- deterministic random data ---------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t seed_of(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = b; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* Uniform in [center - scale, center + scale), never exactly zero when center is 0
 * (a zero weight would hide a kernel that skips work). */
static void fill_uniform(float *x, int64_t n, uint64_t seed, float center, float scale)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        float u = (float)((double)(splitmix(&s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
        if (u == 0.0f)
            u = 0x1p-24f;
        x[i] = center + scale * u;
    }
}

/* ---- named tensors --------------------------------------------------------------------------- */

typedef struct Tensor {
    const char *name;
    fr_dtype dtype;
    int rank;
    int64_t shape[FR_MAX_RANK];
    int64_t numel;
    void *data;
} Tensor;

typedef struct TensorSet {
    Tensor t[MAX_TENSORS];
    int n;
} TensorSet;

static Tensor *set_find(TensorSet *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0)
            return &s->t[i];
    return NULL;
}

static Tensor *set_add(TensorSet *s, const char *name, fr_dtype dt, int rank, const int64_t *shape,
                       int64_t alloc_rows)
{
    if (s->n == MAX_TENSORS)
        die("too many tensors");
    Tensor *t = &s->t[s->n++];
    t->name = name;
    t->dtype = dt;
    t->rank = rank;
    t->numel = 1;
    for (int d = 0; d < rank; d++) {
        t->shape[d] = shape[d];
        t->numel *= shape[d];
    }
    int64_t alloc = t->numel;
    if (rank > 0 && alloc_rows > shape[0]) {
        int64_t row = 1; /* elements per row: shape[0] may be 0 (an empty cache) */
        for (int d = 1; d < rank; d++)
            row *= shape[d];
        alloc = row * alloc_rows;
    }
    if (alloc < 1)
        alloc = 1;
    t->data = fr_alloc((size_t)alloc * fr_dtype_size(dt));
    if (!t->data)
        die("out of memory for tensor '%s'", name);
    return t;
}

static void set_free(TensorSet *s)
{
    for (int i = 0; i < s->n; i++)
        fr_free(s->t[i].data);
    s->n = 0;
}

static TensorSet weights;  /* the current block's */

const float *bench_weight(const char *name, int64_t numel)
{
    Tensor *t = set_find(&weights, name);
    if (!t || t->dtype != FR_F32 || t->numel != numel) {
        fprintf(stderr, "bench: OpenBLAS peer: weight '%s' %s\n", name,
                t ? "has an unexpected shape" : "is missing");
        return NULL;
    }
    return t->data;
}

/* ---- the PyTorch peer process ------------------------------------------------------------------- */

static struct {
    pid_t pid;
    FILE *to, *from;
    int ok;
    char version[64];
} torch;

static void torch_stop(void)
{
    if (torch.to) {
        fprintf(torch.to, "quit\n");
        fclose(torch.to);
    }
    if (torch.from)
        fclose(torch.from);
    if (torch.pid > 0)
        waitpid(torch.pid, NULL, 0);
    memset(&torch, 0, sizeof torch);
}

/* Sends one command and reads the reply line; NULL (peer disabled) on failure. */
static const char *torch_cmd(const char *fmt, ...)
{
    static char line[1024];
    va_list ap;
    if (!torch.ok)
        return NULL;
    va_start(ap, fmt);
    vfprintf(torch.to, fmt, ap);
    va_end(ap);
    fputc('\n', torch.to);
    if (fflush(torch.to) != 0 || !fgets(line, sizeof line, torch.from)) {
        fprintf(stderr, "\nbench: *** the PyTorch peer died; running without it\n");
        torch.ok = 0;
        return NULL;
    }
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "ok", 2) != 0) {
        fprintf(stderr, "\nbench: *** PyTorch peer: %s\n", line);
        return NULL;
    }
    return line;
}

static void torch_start(void)
{
    int in[2], out[2];
    if (!opt.torch)
        return;
    if (pipe(in) != 0 || pipe(out) != 0) {
        fprintf(stderr, "bench: pipe: %s; running without PyTorch\n", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %s; running without PyTorch\n", strerror(errno));
        return;
    }
    if (pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
            _exit(127);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(opt.python, opt.python, opt.torch, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    torch.pid = pid;
    torch.to = fdopen(in[1], "w");
    torch.from = fdopen(out[0], "r");
    if (!torch.to || !torch.from) {
        fprintf(stderr, "bench: fdopen failed; running without PyTorch\n");
        torch_stop();
        return;
    }
    torch.ok = 1;
    const char *r = torch_cmd("hello");
    if (!r) {
        fprintf(stderr, "bench: note: PyTorch (%s %s) is not available: "
                        "no PyTorch column (bench/install-deps.sh installs python3-torch)\n",
                opt.python, opt.torch);
        torch_stop();
        return;
    }
    snprintf(torch.version, sizeof torch.version, "%s", r + 3);
}

/* ---- contenders ------------------------------------------------------------------------------ */

typedef enum { C_FUSEC, C_OPENBLAS, C_TORCH } CKind;

typedef struct Contender {
    char label[64];
    CKind kind;
    void *so;
    const fr_block_desc *desc;
    int avail;                  /* runs in the current block */
    /* desc-ordered argument arrays for the current workload */
    const void *w[MAX_TENSORS];
    float *caches[MAX_TENSORS];
    const void *in[MAX_TENSORS];
    int64_t syms[FR_MAX_SYMS];
    /* per cell */
    float *out;
    int optional;               /* a variant beyond the reference and its -O0 twin */
    int var;                    /* index in opt.variants, -1 for the peers */
    int failed, mismatch, nsamples, reps, skipped;
    char broken[80];            /* why it cannot run this workload (the probe), or "" */
    double err, check_s;
    double samples[MAX_SAMPLES];
} Contender;

static Contender cont[MAX_CONTENDERS];
static int ncont;
/* GFLOP/s of each variant's last check run on a bandwidth-bound ([1]) or a
 * compute-bound ([0]) workload: predicts its next one of the same kind */
static double var_speed[MAX_VARIANTS][2];
static int cells_total, cells_done;

typedef struct Row {
    int wl, threads;
    char label[64];
    int n, mismatch, failed, from_check, skipped;
    char why[80];
    double med, min, max, q1, q3, err;
    double flops, bytes, ratio, frac;
} Row;

static Row rows[MAX_ROWS];
static int nrows;

static struct {
    double peak[2], bw[2];          /* the limits used: the higher of start and end */
    double peak0[2], bw0[2], peak1[2], bw1[2]; /* at the start, at the end */
    const char *isa;
    double peak_isa[3][2]; /* avx512, avx2, portable */
} lim;

static FILE *csv;
static double t_start;
static char host[128], cpu[128], run_id[64];

/* ---- progress ----------------------------------------------------------------------------------- */

/* A status line: rewritten in place on a terminal; in a log, only the
 * major steps (major != 0) get a line each. */
static void progress(int major, const char *fmt, ...)
{
    static int tty = -1;
    char msg[256];
    va_list ap;
    if (tty < 0)
        tty = isatty(2);
    if (!tty && !major)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tty)
        fprintf(stderr, "\r\033[K[%4.0fs] %s", fr_now() - t_start, msg);
    else
        fprintf(stderr, "[%4.0fs] %s\n", fr_now() - t_start, msg);
}

static void progress_done(void)
{
    if (isatty(2))
        fprintf(stderr, "\r\033[K");
}

/* ---- running one contender once ------------------------------------------------------------------ */

typedef struct Cell {
    const Workload *wl;
    const Block *b;
    int64_t T, P;
    TensorSet in, caches;
    int64_t out_numel;
    float *peer_scratch;
    void *ws;
    size_t ws_bytes;
    char inputs_path[512];
} Cell;

static double run_once(Contender *c, Cell *cell, float *out, int want_output)
{
    double t;
    if (c->kind == C_FUSEC) {
        void *outs[1] = {out};
        const fr_block_desc *d = c->desc;
        t = fr_now();
        int rc = d->run(c->w, d->ncaches ? c->caches : NULL, cell->P + cell->T, c->syms, c->in,
                        outs, cell->ws, cell->ws_bytes);
        t = fr_now() - t;
        if (rc != 0)
            fprintf(stderr, "bench: *** %s: %s\n", c->label, fr_last_error());
        return rc == 0 ? t : -1;
    }
    if (c->kind == C_OPENBLAS) {
        const void *ins[3] = {0};
        const char *names[3];
        int n = 0;
        if (cell->b->m.kind == MODEL_LLAMA)
            names[n++] = "hidden_states", names[n++] = "position_ids";
        else if (cell->b->m.kind == MODEL_ATTN)
            names[n++] = "q", names[n++] = "k", names[n++] = "v";
        else
            names[n++] = "hidden_states";
        for (int i = 0; i < n; i++) {
            Tensor *tt = set_find(&cell->in, names[i]);
            if (!tt)
                return -1;
            ins[i] = tt->data;
        }
        Tensor *kc = set_find(&cell->caches, "k_cache"), *vc = set_find(&cell->caches, "v_cache");
        t = fr_now();
        int rc = peer_run(&cell->b->m, cell->T, cell->P, ins, kc ? kc->data : NULL,
                          vc ? vc->data : NULL, out, cell->peer_scratch);
        t = fr_now() - t;
        return rc == 0 ? t : -1;
    }
    /* PyTorch: it times itself, so the pipe is not in the number */
    char path[600];
    snprintf(path, sizeof path, "%s/torch_out.bin", opt.data);
    const char *r = torch_cmd("run %s", want_output ? path : "-");
    if (!r)
        return -1;
    t = atof(r + 3);
    if (want_output) {
        FILE *f = fopen(path, "rb");
        size_t got = 0;
        if (f) {
            got = fread(out, sizeof(float), (size_t)cell->out_numel, f);
            fclose(f);
        }
        if (got != (size_t)cell->out_numel) {
            fprintf(stderr, "\nbench: *** PyTorch output %s: %zu of %lld floats\n", path, got,
                    (long long)cell->out_numel);
            return -1;
        }
    }
    return t;
}

/* ---- loading a block: variants, weights ------------------------------------------------------------- */

static int weight_like(const fr_tensor_desc *d, const Tensor *t)
{
    int64_t shape[FR_MAX_RANK];
    fr_desc_shape(d, NULL, shape);
    if (!t || t->dtype != d->dtype || t->rank != d->rank)
        return 0;
    for (int i = 0; i < d->rank; i++)
        if (shape[i] != t->shape[i])
            return 0;
    return 1;
}

static double weight_bytes;

/* Loads every variant of block b, makes its weights from the first variant
 * that loaded, writes them for PyTorch.  Returns the number of fusec variants. */
static int load_block(const Block *b)
{
    char path[1024], sym[256];
    const fr_block_desc *ref = NULL;
    int nf = 0;
    ncont = 0;
    for (int v = 0; v < opt.nvariants; v++) {
        Contender *c = &cont[ncont++];
        memset(c, 0, sizeof *c);
        snprintf(c->label, sizeof c->label, "%s", opt.variants[v].label);
        c->kind = C_FUSEC;
        snprintf(path, sizeof path, "%s/%s.%s.so", opt.gen, b->name, opt.variants[v].suffix);
        snprintf(sym, sizeof sym, "%s_desc", b->name);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "bench: note: %s: no %s (it did not build): skipped\n", c->label, path);
            continue;
        }
        c->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!c->so) {
            fprintf(stderr, "bench: *** %s: %s: skipped\n", c->label, dlerror());
            continue;
        }
        c->desc = dlsym(c->so, sym);
        if (!c->desc || c->desc->noutputs != 1) {
            fprintf(stderr, "bench: *** %s: %s has no usable %s: skipped\n", c->label, path, sym);
            continue;
        }
        if (!ref)
            ref = c->desc;
        c->avail = 1;
        c->var = v;
        c->optional = v >= 2;
        nf++;
    }
    if (!ref)
        return 0;

    /* weights: norm scales near 1, biases small, matrices ~ 1/sqrt(fan_in) */
    set_free(&weights);
    weight_bytes = 0;
    for (int i = 0; i < ref->nweights; i++) {
        const fr_tensor_desc *d = &ref->weights[i];
        int64_t shape[FR_MAX_RANK];
        fr_desc_shape(d, NULL, shape);
        if (d->dtype != FR_F32)
            die("%s: weight %s is not f32", b->name, d->name);
        Tensor *t = set_add(&weights, d->name, d->dtype, d->rank, shape, 0);
        uint64_t seed = seed_of(b->name, d->name);
        size_t n = strlen(d->name);
        if (n > 5 && strcmp(d->name + n - 5, ".bias") == 0)
            fill_uniform(t->data, t->numel, seed, 0.0f, 0.02f);
        else if (d->rank == 1)
            fill_uniform(t->data, t->numel, seed, 1.0f, 0.1f);
        else {
            double fan_in = (double)(b->in_out ? shape[0] : shape[d->rank - 1]);
            fill_uniform(t->data, t->numel, seed, 0.0f, (float)sqrt(3.0 / fan_in));
        }
        weight_bytes += (double)t->numel * 4.0;
    }
    /* every variant must agree on the weights */
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        if (!c->avail)
            continue;
        for (int i = 0; i < c->desc->nweights && c->avail; i++) {
            Tensor *t = set_find(&weights, c->desc->weights[i].name);
            if (!weight_like(&c->desc->weights[i], t)) {
                fprintf(stderr, "bench: *** %s: weight %s differs from %s's: skipped\n", c->label,
                        c->desc->weights[i].name, ref->name);
                c->avail = 0;
                nf--;
            }
            if (t)
                c->w[i] = t->data;
        }
    }
    if (peer_available()) {
        Contender *c = &cont[ncont++];
        memset(c, 0, sizeof *c);
        snprintf(c->label, sizeof c->label, "OpenBLAS");
        c->kind = C_OPENBLAS;
        c->var = -1;
        c->avail = 1;
    }
    if (torch.ok) {
        Contender *c = &cont[ncont++];
        memset(c, 0, sizeof *c);
        snprintf(c->label, sizeof c->label, "PyTorch");
        c->kind = C_TORCH;
        c->var = -1;
        char wpath[600];
        fr_err err;
        snprintf(wpath, sizeof wpath, "%s/%s.weights.safetensors", opt.data, b->name);
        fr_st_writer *w = fr_stw_new();
        int rc = w ? 0 : -1;
        char names[MAX_TENSORS][128];
        for (int i = 0; i < weights.n && rc == 0; i++) {
            snprintf(names[i], sizeof names[i], "w.%s", weights.t[i].name);
            rc = fr_stw_add(w, names[i], FR_F32, weights.t[i].rank, weights.t[i].shape,
                            weights.t[i].data, &err);
        }
        if (rc == 0)
            rc = fr_stw_write(w, wpath, &err);
        fr_stw_free(w);
        if (rc != 0)
            fprintf(stderr, "bench: *** cannot write %s: %s\n", wpath, err.msg);
        else {
            progress(1, "%s: loading the weights into PyTorch", b->name);
            const Model *m = &b->m;
            c->avail = torch_cmd("weights %s %s %lld %lld %lld %lld %lld %g %g", b->torch, wpath,
                                 (long long)m->D, (long long)m->F, (long long)m->H,
                                 (long long)m->KVH, (long long)m->HD, m->eps, m->theta) != NULL;
            remove(wpath); /* PyTorch holds its own copy now */
        }
    }
    return nf;
}

static void unload_block(void)
{
    for (int v = 0; v < ncont; v++)
        if (cont[v].so)
            dlclose(cont[v].so);
    set_free(&weights);
    ncont = 0;
}

/* ---- a workload's inputs ------------------------------------------------------------------------------- */

static const fr_block_desc *ref_desc(void)
{
    for (int v = 0; v < ncont; v++)
        if (cont[v].kind == C_FUSEC && cont[v].avail)
            return cont[v].desc;
    return NULL;
}

static int sym_value(const char *name, int64_t T, int64_t P, int64_t *v)
{
    if (strcmp(name, "T") == 0)
        *v = T;
    else if (strcmp(name, "P") == 0)
        *v = P;
    else
        return -1;
    return 0;
}

/*
 * Runs a fusec variant once on the first few rows of the workload in a
 * child process, on one thread, before it runs in this one: the variants
 * are other people's work in progress, and a kernel that crashes or hangs
 * must cost its row (marked FAILED with the reason), not the whole suite.
 */
static void probe(Contender *c, Cell *cell)
{
    int64_t syms[FR_MAX_SYMS];
    const fr_block_desc *d = c->desc;
    memcpy(syms, c->syms, sizeof syms);
    for (int s = 0; s < d->nsyms; s++)
        if (strcmp(d->sym_names[s], "T") == 0 && syms[s] > 4)
            syms[s] = 4; /* the buffers are sized for the full T: fewer rows fit */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return; /* no probe: run it anyway */
    if (pid == 0) {
        void *outs[1];
        float *out = fr_alloc((size_t)cell->out_numel * sizeof(float));
        if (!out)
            _exit(2);
        outs[0] = out;
        alarm(120);
        fr_set_num_threads(1); /* the pool's workers are not in this process */
        int rc = d->run(c->w, d->ncaches ? c->caches : NULL, cell->P + cell->T, syms, c->in, outs,
                        cell->ws, cell->ws_bytes);
        if (rc != 0)
            fprintf(stderr, "bench: *** probe of %s: %s\n", c->label, fr_last_error());
        _exit(rc == 0 ? 0 : 1);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return;
    if (WIFSIGNALED(st))
        snprintf(c->broken, sizeof c->broken, "%s", WTERMSIG(st) == SIGALRM ? "hangs (probe > 120 s)"
                                                                          : strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        snprintf(c->broken, sizeof c->broken, "forward returned an error");
    if (c->broken[0]) {
        progress_done();
        fprintf(stderr, "bench: *** %s on %s: %s; not run\n", c->label, cell->wl->id, c->broken);
    }
}

/* Inputs uniform with unit variance, positions P..P+T-1, cache rows [0, P) random. */
static int make_inputs(Cell *cell)
{
    const fr_block_desc *d = ref_desc();
    int64_t syms[FR_MAX_SYMS] = {0};
    for (int s = 0; s < d->nsyms; s++)
        if (sym_value(d->sym_names[s], cell->T, cell->P, &syms[s]) != 0)
            die("%s: unknown symbol %s", d->name, d->sym_names[s]);
    for (int i = 0; i < d->ninputs; i++) {
        int64_t shape[FR_MAX_RANK];
        fr_desc_shape(&d->inputs[i], syms, shape);
        Tensor *t = set_add(&cell->in, d->inputs[i].name, d->inputs[i].dtype, d->inputs[i].rank,
                            shape, 0);
        if (t->dtype == FR_I32)
            for (int64_t k = 0; k < t->numel; k++)
                ((int32_t *)t->data)[k] = (int32_t)(cell->P + k);
        else if (t->dtype == FR_F32)
            fill_uniform(t->data, t->numel, seed_of(cell->wl->id, t->name), 0.0f, 1.7320508f);
        else
            die("%s: input %s has an unsupported dtype", d->name, t->name);
    }
    for (int i = 0; i < d->ncaches; i++) {
        int64_t shape[FR_MAX_RANK];
        fr_desc_shape(&d->caches[i], syms, shape); /* [P, ...] */
        Tensor *t = set_add(&cell->caches, d->caches[i].name, FR_F32, d->caches[i].rank, shape,
                            cell->P + cell->T);
        fill_uniform(t->data, t->numel, seed_of(cell->wl->id, t->name), 0.0f, 1.7320508f);
    }
    cell->out_numel = fr_desc_numel(&d->outputs[0], syms);

    /* bind every fusec variant's desc-ordered arrays */
    size_t ws = 64;
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        if (c->kind != C_FUSEC || !c->avail)
            continue;
        const fr_block_desc *cd = c->desc;
        for (int s = 0; s < cd->nsyms; s++)
            if (sym_value(cd->sym_names[s], cell->T, cell->P, &c->syms[s]) != 0) {
                fprintf(stderr, "bench: *** %s: unknown symbol %s: skipped\n", c->label,
                        cd->sym_names[s]);
                c->avail = 0;
            }
        for (int i = 0; i < cd->ninputs && c->avail; i++) {
            Tensor *t = set_find(&cell->in, cd->inputs[i].name);
            c->in[i] = t ? t->data : NULL;
            c->avail = t != NULL;
        }
        for (int i = 0; i < cd->ncaches && c->avail; i++) {
            Tensor *t = set_find(&cell->caches, cd->caches[i].name);
            c->caches[i] = t ? t->data : NULL;
            c->avail = t != NULL;
        }
        if (c->avail && fr_desc_numel(&cd->outputs[0], c->syms) != cell->out_numel) {
            fprintf(stderr, "bench: *** %s: output size differs: skipped\n", c->label);
            c->avail = 0;
        }
        if (c->avail) {
            /* the workspace holds per-thread scratch: size it for the most
             * threads any run of this cell uses */
            int most = 1;
            for (int k = 0; k < opt.nthreads; k++)
                most = opt.threads[k] > most ? opt.threads[k] : most;
            fr_set_num_threads(most);
            size_t n = cd->workspace_size(c->syms);
            fr_set_num_threads(0);
            if (n > ws)
                ws = n;
        }
    }
    cell->ws = fr_alloc(ws);
    cell->ws_bytes = ws;
    if (!cell->ws)
        die("out of memory for the workspaces");
    for (int v = 0; v < ncont; v++) {
        cont[v].broken[0] = '\0';
        if (cont[v].kind == C_FUSEC && cont[v].avail)
            probe(&cont[v], cell);
    }
    size_t ps = peer_available() ? peer_scratch_floats(&cell->b->m, cell->T, cell->P) : 1;
    cell->peer_scratch = fr_alloc((ps ? ps : 1) * sizeof(float));
    if (!cell->ws || !cell->peer_scratch)
        die("out of memory for the workspaces");
    for (int v = 0; v < ncont; v++) {
        cont[v].out = fr_alloc((size_t)cell->out_numel * sizeof(float));
        if (!cont[v].out)
            die("out of memory for outputs");
    }

    /* PyTorch gets the same inputs and cache rows */
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        if (c->kind != C_TORCH || !c->avail)
            continue;
        fr_err err;
        char names[2 * MAX_TENSORS][128];
        int k = 0, rc = 0;
        fr_st_writer *w = fr_stw_new();
        rc = w ? 0 : -1;
        for (int i = 0; i < cell->in.n && rc == 0; i++, k++) {
            Tensor *t = &cell->in.t[i];
            snprintf(names[k], sizeof names[k], "in.%s", t->name);
            rc = fr_stw_add(w, names[k], t->dtype, t->rank, t->shape, t->data, &err);
        }
        for (int i = 0; i < cell->caches.n && rc == 0 && cell->P > 0; i++, k++) {
            Tensor *t = &cell->caches.t[i];
            snprintf(names[k], sizeof names[k], "cache.%s", t->name);
            rc = fr_stw_add(w, names[k], t->dtype, t->rank, t->shape, t->data, &err);
        }
        snprintf(cell->inputs_path, sizeof cell->inputs_path, "%s/%s.inputs.safetensors",
                 opt.data, cell->wl->id);
        if (rc == 0)
            rc = fr_stw_write(w, cell->inputs_path, &err);
        fr_stw_free(w);
        if (rc != 0) {
            fprintf(stderr, "bench: *** cannot write %s: %s\n", cell->inputs_path, err.msg);
            c->avail = 0;
        } else {
            c->avail = torch_cmd("inputs %s %lld %lld", cell->inputs_path, (long long)cell->T,
                                 (long long)cell->P) != NULL;
            remove(cell->inputs_path);
        }
    }
    return 0;
}

static void free_cell(Cell *cell)
{
    set_free(&cell->in);
    set_free(&cell->caches);
    fr_free(cell->ws);
    fr_free(cell->peer_scratch);
    for (int v = 0; v < ncont; v++) {
        fr_free(cont[v].out);
        cont[v].out = NULL;
    }
}

/* ---- statistics -------------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1)
        return sorted[n - 1];
    return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static double rel_l2(const float *a, const float *b, int64_t n)
{
    double d = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        d += (x - y) * (x - y);
        na += x * x;
        nb += y * y;
    }
    double den = sqrt(na > nb ? na : nb);
    if (!isfinite(d) || !isfinite(den))
        return INFINITY;
    return den > 0 ? sqrt(d) / den : (d > 0 ? INFINITY : 0);
}

/* ---- one cell: check, then interleaved timing ------------------------------------------------------------ */

static const char *cell_name(const Cell *cell, char *buf, size_t n)
{
    if (cell->P)
        snprintf(buf, n, "%s T=%lld P=%lld", cell->wl->id, (long long)cell->T, (long long)cell->P);
    else
        snprintf(buf, n, "%s T=%lld", cell->wl->id, (long long)cell->T);
    return buf;
}

static void check_outputs(Cell *cell, int threads)
{
    int idx[MAX_CONTENDERS], n = 0;
    static double err[MAX_CONTENDERS][MAX_CONTENDERS];
    char name[64];
    for (int v = 0; v < ncont; v++)
        if (cont[v].avail && !cont[v].failed && !cont[v].skipped)
            idx[n++] = v;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            err[i][j] = err[j][i] = rel_l2(cont[idx[i]].out, cont[idx[j]].out, cell->out_numel);
    int any = 0;
    for (int i = 0; i < n; i++) {
        double e[MAX_CONTENDERS];
        int k = 0;
        for (int j = 0; j < n; j++)
            if (j != i)
                e[k++] = err[i][j];
        Contender *c = &cont[idx[i]];
        if (k == 0) {
            c->err = 0;
            continue;
        }
        qsort(e, (size_t)k, sizeof e[0], cmp_double);
        /* the median disagreement: one broken contender cannot taint the others
         * once there are three; with two, a disagreement marks both */
        c->err = e[(k - 1) / 2];
        c->mismatch = !(c->err <= TOLERANCE);
        any |= c->mismatch;
    }
    if (any) {
        progress_done();
        fprintf(stderr, "\nbench: *** MISMATCH in %s, %d threads: relative L2 between contenders "
                        "(tolerance %g):\n",
                cell_name(cell, name, sizeof name), threads, TOLERANCE);
        for (int i = 0; i < n; i++) {
            fprintf(stderr, "    %-22s", cont[idx[i]].label);
            for (int j = 0; j < n; j++)
                fprintf(stderr, j == i ? "       -  " : " %9.2e", err[i][j]);
            fprintf(stderr, "%s\n", cont[idx[i]].mismatch ? "   <-- MISMATCH" : "");
        }
        fprintf(stderr, "\n");
    }
}

static int plan_reps(double t)
{
    if (t >= opt.slow)
        return 0;
    t += 0.01; /* the flush before each run */
    int reps = (int)(opt.budget / t);
    if (reps > opt.max_reps)
        reps = opt.max_reps;
    if (reps < opt.min_reps) {
        if (t * opt.min_reps <= 3.0 * opt.budget)
            reps = opt.min_reps;
        else {
            reps = (int)(3.0 * opt.budget / t);
            if (reps < 1)
                reps = 1;
        }
    }
    return reps;
}

/*
 * Lets a contender's idle threads go to sleep before the next one runs:
 * OpenBLAS workers spin for about 2^28 cycles (~0.1 s) after each call
 * (its THREAD_TIMEOUT), OpenMP threads in the PyTorch process for a few
 * milliseconds, the runtime pool for about one.  On a machine with few
 * cores a spinning neighbour would otherwise take a core from whoever runs
 * next.  One thread leaves nobody spinning.
 */
static void settle(const Contender *c, int threads)
{
    struct timespec ts = {0, 0};
    if (threads <= 1)
        return;
    ts.tv_nsec = c->kind == C_OPENBLAS ? 150000000L : c->kind == C_TORCH ? 20000000L : 5000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void set_threads(int n)
{
    fr_set_num_threads(n);
    peer_set_threads(n);
    if (torch.ok)
        torch_cmd("threads %d", n);
}

static void print_row(const Row *r, int first);

static void run_cell(Cell *cell, int ti)
{
    int threads = opt.threads[ti];
    char name[64];
    cell_name(cell, name, sizeof name);
    set_threads(threads);

    /* the check run, also the warm-up; the cell's share of the time left */
    const Model *m = &cell->b->m;
    double flops = model_flops(m, cell->T, cell->P);
    double bytes = model_bytes(m, weight_bytes, cell->T, cell->P);
    double cell_start = fr_now(), left = opt.deadline - (cell_start - t_start);
    double allowance = left / (cells_total - cells_done > 0 ? cells_total - cells_done : 1);
    int over = left <= 0;
    if (allowance > opt.cell_budget)
        allowance = opt.cell_budget;
    cells_done++;
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        c->failed = c->mismatch = c->nsamples = c->reps = c->skipped = 0;
        c->err = 0;
        if (!c->avail)
            continue;
        if (c->broken[0]) {
            c->failed = 1;
            continue;
        }
        /* the time guard: an optional variant (another target) whose
         * predicted time does not fit in what is left of this cell's share
         * is not run */
        double *speed = &var_speed[c->var < 0 ? 0 : c->var][cell->wl->bw_bound];
        if (c->optional && (over || (*speed > 0 && fr_now() - cell_start +
                                                          flops / (*speed * 1e9) > allowance))) {
            c->skipped = 1;
            continue;
        }
        progress(1, "%s, %d thread%s: checking %s", name, threads, threads > 1 ? "s" : "", c->label);
        c->check_s = run_once(c, cell, c->out, 1);
        if (c->kind == C_FUSEC && c->check_s > 0 && c->var >= 0)
            *speed = flops / c->check_s / 1e9;
        settle(c, threads);
        /* --perturb: shows that the check can fail (every 7th element 1% off) */
        if (opt.perturb && strcmp(opt.perturb, c->label) == 0)
            for (int64_t i = 0; i < cell->out_numel; i += 7)
                c->out[i] *= 1.01f;
        if (c->check_s < 0) {
            progress_done();
            fprintf(stderr, "bench: *** %s failed on %s\n", c->label, name);
            c->failed = 1;
        }
    }
    check_outputs(cell, threads);

    /* interleaved repetitions */
    int rounds = 0;
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        if (!c->avail || c->failed || c->skipped)
            continue;
        c->reps = over ? 0 : plan_reps(c->check_s);
        if (c->reps == 0)
            c->samples[c->nsamples++] = c->check_s;
        if (c->reps > rounds)
            rounds = c->reps;
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < ncont; k++) {
            Contender *c = &cont[(r + k) % ncont];
            if (!c->avail || c->failed || c->skipped || r >= c->reps)
                continue;
            progress(r == 0 && k == 0, "%s, %d thread%s: round %d/%d, %s", name, threads, threads > 1 ? "s" : "",
                     r + 1, rounds, c->label);
            limits_flush(opt.flush_bytes);
            double t = run_once(c, cell, c->out, 0);
            settle(c, threads);
            if (t < 0) {
                c->failed = 1;
                continue;
            }
            if (c->nsamples < MAX_SAMPLES)
                c->samples[c->nsamples++] = t;
        }
    }
    progress_done();

    /* rows */
    double ref = 0;
    int first_row = nrows;
    for (int v = 0; v < ncont; v++) {
        Contender *c = &cont[v];
        if (!c->avail || nrows == MAX_ROWS)
            continue;
        Row *row = &rows[nrows++];
        memset(row, 0, sizeof *row);
        row->wl = (int)(cell->wl - workloads);
        row->threads = threads;
        snprintf(row->label, sizeof row->label, "%s", c->label);
        row->failed = c->failed && c->nsamples == 0;
        snprintf(row->why, sizeof row->why, "%s", c->broken);
        row->skipped = c->skipped;
        row->mismatch = c->mismatch;
        row->err = c->err;
        row->flops = flops;
        row->bytes = bytes;
        row->n = c->nsamples;
        row->from_check = c->reps == 0;
        if (c->nsamples > 0) {
            qsort(c->samples, (size_t)c->nsamples, sizeof(double), cmp_double);
            row->med = quantile(c->samples, c->nsamples, 0.5);
            row->q1 = quantile(c->samples, c->nsamples, 0.25);
            row->q3 = quantile(c->samples, c->nsamples, 0.75);
            row->min = c->samples[0];
            row->max = c->samples[c->nsamples - 1];
            if (cell->wl->bw_bound)
                row->frac = bytes / row->med / (lim.bw[ti] * 1e9);
            else
                row->frac = flops / row->med / (lim.peak[ti] * 1e9);
        }
        if (v == 0 && c->kind == C_FUSEC && row->med > 0 && !row->mismatch)
            ref = row->med;
    }
    for (int i = first_row; i < nrows; i++) {
        rows[i].ratio = ref > 0 && rows[i].med > 0 ? rows[i].med / ref : 0;
        print_row(&rows[i], i == first_row);
    }
    fflush(stdout);
}

/* ---- output ------------------------------------------------------------------------------------------ */

static const char *fmt_time(double s, char *buf, size_t n)
{
    if (s <= 0)
        snprintf(buf, n, "-");
    else if (s < 1e-3)
        snprintf(buf, n, "%.1f us", s * 1e6);
    else if (s < 1.0)
        snprintf(buf, n, "%.2f ms", s * 1e3);
    else
        snprintf(buf, n, "%.3f s", s);
    return buf;
}

static void print_header(void)
{
    printf("%-22s %3s  %-22s %10s %21s %3s %8s %7s %9s %7s  %s\n", "workload", "thr", "contender",
           "median", "spread (min..max)", "n", "GFLOP/s", "GB/s", "of limit", "t/fused",
           "check");
}

static void print_row(const Row *r, int first)
{
    const Workload *w = &workloads[r->wl];
    char wname[64], med[32], lo[32], hi[32], spread[80], ratio[16], frac[24], check[128];
    if (first) {
        int64_t T = opt.quick ? w->quick_T : w->T, P = opt.quick ? w->quick_P : w->P;
        if (P)
            snprintf(wname, sizeof wname, "%s T=%lld P=%lld", w->id, (long long)T, (long long)P);
        else
            snprintf(wname, sizeof wname, "%s T=%lld", w->id, (long long)T);
    } else
        wname[0] = '\0';
    fmt_time(r->med, med, sizeof med);
    if (r->n > 1)
        snprintf(spread, sizeof spread, "%s..%s", fmt_time(r->min, lo, sizeof lo),
                 fmt_time(r->max, hi, sizeof hi));
    else
        snprintf(spread, sizeof spread, r->n == 1 ? "(one run)" : "-");
    if (r->ratio > 0)
        snprintf(ratio, sizeof ratio, "%.2fx", r->ratio);
    else
        snprintf(ratio, sizeof ratio, "-");
    if (r->med > 0)
        snprintf(frac, sizeof frac, "%.0f%% %s", 100 * r->frac, w->bw_bound ? "bw" : "fma");
    else
        snprintf(frac, sizeof frac, "-");
    if (r->skipped)
        snprintf(check, sizeof check, "skipped: time budget");
    else if (r->failed)
        snprintf(check, sizeof check, "FAILED%s%s", r->why[0] ? ": " : "", r->why);
    else if (r->mismatch)
        snprintf(check, sizeof check, "MISMATCH %.1e", r->err);
    else
        snprintf(check, sizeof check, "ok %.0e", r->err);
    printf("%-22s %3d  %-22s %10s %21s %3d %8.1f %7.1f %9s %7s  %s\n", wname, r->threads, r->label,
           med, spread, r->n, r->med > 0 ? r->flops / r->med / 1e9 : 0.0,
           r->med > 0 ? r->bytes / r->med / 1e9 : 0.0, frac, ratio, check);
}

static void csv_text(const char *s)
{
    fputc('"', csv);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', csv);
        fputc(*s, csv);
    }
    fputc('"', csv);
}

static void csv_open(void)
{
    if (!opt.csv)
        return;
    csv = fopen(opt.csv, "w");
    if (!csv)
        die("cannot write %s: %s", opt.csv, strerror(errno));
    fprintf(csv, "run,host,cpu,mode,kind,workload,what,T,P,threads,contender,n,median_s,min_s,"
                 "q1_s,q3_s,max_s,flops,bytes,gflops,gbs,limit,limit_value,frac_of_limit,"
                 "time_vs_fused,check,rel_l2,note\n");
}

static void csv_prefix(const char *kind)
{
    csv_text(run_id);
    fputc(',', csv);
    csv_text(host);
    fputc(',', csv);
    csv_text(cpu);
    fprintf(csv, ",%s,%s,", opt.quick ? "quick" : "full", kind);
}

/* A limit as a row of its own: kind "limit", the value under gflops (is_bw 0)
 * or gbs (1) or neither (2, the load average), and again under limit_value. */
static void csv_limit(const char *name, int threads, double value, int is_bw)
{
    if (!csv)
        return;
    csv_prefix("limit");
    fprintf(csv, ",,,,%d,", threads);
    csv_text(name);
    fprintf(csv, ",,,,,,,,,"); /* n .. bytes */
    if (is_bw == 1)
        fprintf(csv, ",%.6g,", value);
    else if (is_bw == 0)
        fprintf(csv, "%.6g,,", value);
    else
        fprintf(csv, ",,");
    csv_text(name);
    fprintf(csv, ",%.6g,,,,,\n", value);
    fflush(csv);
}

static void csv_row(const Row *r)
{
    const Workload *w = &workloads[r->wl];
    if (!csv)
        return;
    int64_t T = opt.quick ? w->quick_T : w->T, P = opt.quick ? w->quick_P : w->P;
    int ti = r->threads == opt.threads[0] ? 0 : 1;
    csv_prefix("result");
    csv_text(w->id);
    fputc(',', csv);
    csv_text(w->what);
    fprintf(csv, ",%lld,%lld,%d,", (long long)T, (long long)P, r->threads);
    csv_text(r->label);
    fprintf(csv, ",%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,", r->n, r->med, r->min, r->q1, r->q3,
            r->max, r->flops, r->bytes);
    if (r->med > 0)
        fprintf(csv, "%.6g,%.6g,", r->flops / r->med / 1e9, r->bytes / r->med / 1e9);
    else
        fprintf(csv, ",,");
    fprintf(csv, "%s,%.6g,", w->bw_bound ? "read_bw_GBs" : "fma_peak_GFLOPs",
            w->bw_bound ? lim.bw[ti] : lim.peak[ti]);
    if (r->med > 0)
        fprintf(csv, "%.6g,", r->frac);
    else
        fprintf(csv, ",");
    if (r->ratio > 0)
        fprintf(csv, "%.6g,", r->ratio);
    else
        fprintf(csv, ",");
    fprintf(csv, "%s,%.3g,",
            r->skipped ? "SKIPPED" : r->failed ? "FAILED" : r->mismatch ? "MISMATCH" : "ok", r->err);
    csv_text(r->why[0] ? r->why
             : r->skipped ? "an optional variant predicted too slow for the cell's share of the "
                            "suite's time budget: skipped"
             : r->from_check && r->n == 1 ? "one run: the check run (slow, or past the suite's deadline)"
                                          : "");
    fputc('\n', csv);
    fflush(csv);
}

/* ---- targets from issue 5 ----------------------------------------------------------------------------- */

static const Row *find_row(const char *id, int threads, const char *label)
{
    for (int i = 0; i < nrows; i++)
        if (strcmp(workloads[rows[i].wl].id, id) == 0 && rows[i].threads == threads &&
            strcmp(rows[i].label, label) == 0)
            return &rows[i];
    return NULL;
}

static void target_line(const char *what, int have, double value, double goal, const char *unit)
{
    if (!have)
        printf("  %-58s  not measured\n", what);
    else
        printf("  %-58s  %-7s (%.2f%s, goal %.2f%s)\n", what, value >= goal ? "met" : "NOT met",
               value, unit, goal, unit);
}

static void print_targets(void)
{
    int n = opt.threads[0] > opt.threads[opt.nthreads - 1] ? opt.threads[0]
                                                           : opt.threads[opt.nthreads - 1];
    const char *ref = opt.variants[0].label;
    char unfused[80];
    snprintf(unfused, sizeof unfused, "%s -O0", ref);
    const Row *f1 = find_row("W1", n, ref), *f2 = find_row("W2", n, ref),
              *f3 = find_row("W3", n, ref), *u2 = find_row("W2", n, unfused),
              *u3 = find_row("W3", n, unfused), *p1 = find_row("W1", n, "PyTorch"),
              *p2 = find_row("W2", n, "PyTorch");
#define OK(r) ((r) && (r)->med > 0 && !(r)->mismatch)
    printf("\nTargets (issue 5), %s at %d threads%s:\n", ref, n,
           opt.quick ? " -- QUICK sizes, not the targets' workloads" : "");
    target_line("W1 decode at >= 85% of the read bandwidth", OK(f1), OK(f1) ? 100 * f1->frac : 0,
                85, "%");
    target_line("W2 prefill at >= 75% of the FMA peak", OK(f2), OK(f2) ? 100 * f2->frac : 0, 75,
                "%");
    target_line("W2 fused >= 1.1x faster than unfused (-O0)", OK(f2) && OK(u2),
                OK(f2) && OK(u2) ? u2->med / f2->med : 0, 1.1, "x");
    target_line("W3 fused >= 2x faster than unfused (-O0)", OK(f3) && OK(u3),
                OK(f3) && OK(u3) ? u3->med / f3->med : 0, 2.0, "x");
    target_line("W1 >= 1.5x faster than PyTorch eager", OK(f1) && OK(p1),
                OK(f1) && OK(p1) ? p1->med / f1->med : 0, 1.5, "x");
    target_line("W2 >= 1.5x faster than PyTorch eager", OK(f2) && OK(p2),
                OK(f2) && OK(p2) ? p2->med / f2->med : 0, 1.5, "x");
#undef OK
}

/* ---- self-test: the pieces against hand values, the OpenBLAS peer against Hugging Face ----------- */

static int st_fail;

static void st_check(int ok, const char *what, double got, double want)
{
    printf("  %-62s %s (got %.6g, want %.6g)\n", what, ok ? "ok" : "FAILED", got, want);
    st_fail |= !ok;
}

/*
 * The OpenBLAS peer on a golden layer (computed by Hugging Face
 * transformers, not by anyone on this project): all T rows at once, then
 * rows [0, T-1) as a prefill and row T-1 as one decode step through the
 * cache.  Both must match out64 to float32 accuracy.
 */
static void st_golden(const char *dir, const char *file, const Model *m)
{
    char path[1024];
    fr_st f;
    fr_err err;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (fr_st_open(&f, path, &err) != 0) {
        printf("  %-62s FAILED (%s)\n", file, err.msg);
        st_fail = 1;
        return;
    }
    set_free(&weights);
    for (int i = 0; i < f.ntensors && weights.n < MAX_TENSORS; i++) {
        const fr_tensor *t = &f.tensors[i];
        if (strncmp(t->name, "w.", 2) != 0 || t->dtype != FR_F32)
            continue;
        Tensor *w = &weights.t[weights.n++];
        memset(w, 0, sizeof *w);
        w->name = t->name + 2;
        w->dtype = FR_F32;
        w->rank = t->rank;
        w->numel = 1;
        for (int d = 0; d < t->rank; d++)
            w->numel *= w->shape[d] = t->shape[d];
        w->data = (void *)t->data; /* the file's: never freed here */
    }
    const fr_tensor *x = fr_st_find(&f, "in.hidden_states"), *pos = fr_st_find(&f, "in.position_ids");
    const fr_tensor *want = fr_st_find(&f, "out64.hidden_states");
    if (!x || !want || want->dtype != FR_F64 || x->rank != 2 || (m->kind == MODEL_LLAMA && !pos)) {
        printf("  %-62s FAILED (missing tensors)\n", file);
        st_fail = 1;
        weights.n = 0;
        fr_st_close(&f);
        return;
    }
    int64_t T = x->shape[0], D = x->shape[1], KVW = m->kind == MODEL_LLAMA ? m->KVH * m->HD : D;
    float *out = fr_alloc((size_t)(T * D) * sizeof(float));
    float *kc = fr_alloc((size_t)(T * KVW) * sizeof(float)), *vc = fr_alloc((size_t)(T * KVW) * sizeof(float));
    float *scratch = fr_alloc(peer_scratch_floats(m, T, T) * sizeof(float));
    if (!out || !kc || !vc || !scratch)
        die("out of memory");
    const float *xs = x->data;
    const int32_t *ps = pos ? pos->data : NULL;
    const double *ref = want->data;
    for (int mode = 0; mode < 2; mode++) {
        int rc;
        if (mode == 0) {
            const void *in[2] = {xs, ps};
            rc = peer_run(m, T, 0, in, kc, vc, out, scratch);
        } else {
            const void *in[2] = {xs, ps}, *in1[2] = {xs + (T - 1) * D, ps ? ps + T - 1 : NULL};
            rc = peer_run(m, T - 1, 0, in, kc, vc, out, scratch);
            if (rc == 0)
                rc = peer_run(m, 1, T - 1, in1, kc, vc, out + (T - 1) * D, scratch);
        }
        double d = 0, n = 0;
        for (int64_t i = 0; i < T * D; i++) {
            d += (out[i] - ref[i]) * (out[i] - ref[i]);
            n += ref[i] * ref[i];
        }
        double e = rc == 0 && n > 0 ? sqrt(d / n) : INFINITY;
        char what[160];
        snprintf(what, sizeof what, "OpenBLAS peer vs Hugging Face, %s, %s", file,
                 mode == 0 ? "prefill" : "prefill + decode");
        st_check(e <= 1e-5, what, e, 1e-5);
    }
    fr_free(out);
    fr_free(kc);
    fr_free(vc);
    fr_free(scratch);
    weights.n = 0;
    fr_st_close(&f);
}

static int selftest(const char *golden)
{
    printf("bench self-test\n");
    /* statistics: the median and quartiles of 1..5 and of 1..4, by hand */
    double a[5] = {1, 2, 3, 4, 5}, b[4] = {1, 2, 3, 4};
    st_check(quantile(a, 5, 0.5) == 3, "median of 1..5", quantile(a, 5, 0.5), 3);
    st_check(quantile(b, 4, 0.5) == 2.5, "median of 1..4", quantile(b, 4, 0.5), 2.5);
    st_check(quantile(b, 4, 0.25) == 1.75, "first quartile of 1..4", quantile(b, 4, 0.25), 1.75);
    /* relative L2: (1,0) vs (1,1e-3) is 1e-3 / |(1,1e-3)| */
    float x[2] = {1, 0}, y[2] = {1, 1e-3f};
    double e = rel_l2(x, y, 2);
    st_check(fabs(e - 1e-3 / sqrt(1 + 1e-6)) < 1e-9, "relative L2 of (1,0) and (1,1e-3)", e,
             1e-3 / sqrt(1 + 1e-6));
    float nanv[1] = {NAN}, one[1] = {1};
    st_check(isinf(rel_l2(nanv, one, 1)), "relative L2 with a NaN is infinite", rel_l2(nanv, one, 1),
             INFINITY);
    /* FLOPs: the MLP at T = 1 is 3 products of 2048 x 8192, 2 flops each;
     * causal attention at T = 2: 3 (query, key) pairs, 4 * 2048 flops each */
    st_check(model_flops(&blocks[3].m, 1, 0) == 2.0 * 3 * 2048 * 8192, "MLP FLOPs, T = 1",
             model_flops(&blocks[3].m, 1, 0), 2.0 * 3 * 2048 * 8192);
    st_check(model_flops(&blocks[1].m, 2, 0) == 3 * 4.0 * 2048, "attention FLOPs, T = 2",
             model_flops(&blocks[1].m, 2, 0), 3 * 4.0 * 2048);
    /* decode with P cached: query 0 sees P + 1 keys */
    st_check(model_flops(&blocks[1].m, 1, 1024) == 1025 * 4.0 * 2048, "attention FLOPs, T = 1, P = 1024",
             model_flops(&blocks[1].m, 1, 1024), 1025 * 4.0 * 2048);
    /* random data is never zero and has the asked-for range */
    float r[4096];
    fill_uniform(r, 4096, 42, 0.0f, 0.5f);
    int zeros = 0, out_of_range = 0;
    for (int i = 0; i < 4096; i++) {
        zeros += r[i] == 0.0f;
        out_of_range += r[i] < -0.5f || r[i] >= 0.5f;
    }
    st_check(zeros == 0 && out_of_range == 0, "random data: no zeros, inside [-0.5, 0.5)",
             zeros + out_of_range, 0);
    if (!peer_available())
        printf("  OpenBLAS peer: not built, not checked\n");
    else if (!golden)
        printf("  OpenBLAS peer: no golden directory given, not checked\n");
    else {
        /* the golden layers' configs (tests/golden/hf/README.md) */
        const Model llama = {MODEL_LLAMA, 256, 704, 8, 2, 32, 1e-5, 10000.0};
        const Model gpt2 = {MODEL_GPT2, 256, 1024, 8, 8, 32, 1e-5, 0};
        st_golden(golden, "llama_layer.safetensors", &llama);
        st_golden(golden, "gpt2_block.safetensors", &gpt2);
    }
    printf("self-test %s\n", st_fail ? "FAILED" : "passed");
    return st_fail ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------------------------------------- */

static void read_cpu_name(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(cpu, sizeof cpu, "unknown CPU");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 1 + (c[1] == ' ');
                c[strcspn(c, "\n")] = '\0';
                snprintf(cpu, sizeof cpu, "%s", c);
            }
            break;
        }
    fclose(f);
}

/* Twice the last-level cache (at least 64 MiB, at most the bandwidth buffer):
 * reading that much evicts a block's weights before each timed run. */
static size_t flush_size(void)
{
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t want = l3 > 0 ? 2 * (size_t)l3 : (size_t)256 << 20;
    if (want < ((size_t)64 << 20))
        want = (size_t)64 << 20;
    if (want > opt.bw_bytes)
        want = opt.bw_bytes;
    return want;
}

/* The 1-minute load average: other work on the machine skews every number. */
static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static void measure_limits(void)
{
    static const char *const isas[3] = {"avx512", "avx2", "portable"};
    printf("Machine limits (measured now, best of several trials):\n");
    for (int ti = 0; ti < opt.nthreads; ti++) {
        int n = opt.threads[ti];
        progress(1, "measuring the FMA peak on %d thread%s", n, n > 1 ? "s" : "");
        for (int k = 0; k < 3; k++)
            lim.peak_isa[k][ti] = limits_fma_peak_isa(isas[k], n);
        lim.peak[ti] = lim.peak0[ti] = limits_fma_peak(n, &lim.isa);
        progress(1, "measuring the read bandwidth on %d thread%s", n, n > 1 ? "s" : "");
        lim.bw[ti] = lim.bw0[ti] = limits_read_bw(opt.bw_bytes, n);
        progress_done();
        printf("  %3d thread%s  FMA peak %8.1f GFLOP/s (%s; avx2 %.1f, portable %.1f)   read "
               "bandwidth %6.1f GB/s (%zu MiB buffer)\n",
               n, n > 1 ? "s" : " ", lim.peak[ti], lim.isa, lim.peak_isa[1][ti],
               lim.peak_isa[2][ti], lim.bw[ti], opt.bw_bytes >> 20);
        if (lim.peak[ti] <= 0 || lim.bw[ti] <= 0)
            die("could not measure the machine's limits");
    }
    printf("  flush before each timed run: %zu MiB read\n"
           "  (measured again at the end; the final table uses the higher of the two)\n\n",
           opt.flush_bytes >> 20);
}

/* The limits once more after the workloads: other load on the machine at
 * the start would otherwise make every fraction look better than it is. */
static void remeasure_limits(void)
{
    printf("\nMachine limits measured again at the end:\n");
    for (int ti = 0; ti < opt.nthreads; ti++) {
        int n = opt.threads[ti];
        progress(1, "measuring the limits again on %d thread%s", n, n > 1 ? "s" : "");
        lim.peak1[ti] = limits_fma_peak_isa(lim.isa, n);
        lim.bw1[ti] = limits_read_bw(opt.bw_bytes, n);
        progress_done();
        if (lim.peak1[ti] > lim.peak[ti])
            lim.peak[ti] = lim.peak1[ti];
        if (lim.bw1[ti] > lim.bw[ti])
            lim.bw[ti] = lim.bw1[ti];
        printf("  %3d thread%s  FMA peak %8.1f GFLOP/s (start %.1f)   read bandwidth %6.1f GB/s "
               "(start %.1f)   used: %.1f GFLOP/s, %.1f GB/s\n",
               n, n > 1 ? "s" : " ", lim.peak1[ti], lim.peak0[ti], lim.bw1[ti], lim.bw0[ti],
               lim.peak[ti], lim.bw[ti]);
    }
    for (int i = 0; i < nrows; i++) {
        Row *r = &rows[i];
        int ti = r->threads == opt.threads[0] ? 0 : 1;
        if (r->med > 0)
            r->frac = workloads[r->wl].bw_bound ? r->bytes / r->med / (lim.bw[ti] * 1e9)
                                                : r->flops / r->med / (lim.peak[ti] * 1e9);
    }
}

static void csv_limits(double load0, double load1)
{
    static const char *const isas[3] = {"avx512", "avx2", "portable"};
    char name[64];
    csv_limit("load_average_start", 0, load0, 2);
    csv_limit("load_average_end", 0, load1, 2);
    for (int ti = 0; ti < opt.nthreads; ti++) {
        int n = opt.threads[ti];
        snprintf(name, sizeof name, "fma_peak_%s_GFLOPs", lim.isa);
        csv_limit(name, n, lim.peak[ti], 0);
        snprintf(name, sizeof name, "fma_peak_%s_GFLOPs_start", lim.isa);
        csv_limit(name, n, lim.peak0[ti], 0);
        snprintf(name, sizeof name, "fma_peak_%s_GFLOPs_end", lim.isa);
        csv_limit(name, n, lim.peak1[ti], 0);
        for (int k = 0; k < 3; k++)
            if (lim.peak_isa[k][ti] > 0 && strcmp(isas[k], lim.isa) != 0) {
                snprintf(name, sizeof name, "fma_peak_%s_GFLOPs", isas[k]);
                csv_limit(name, n, lim.peak_isa[k][ti], 0);
            }
        csv_limit("read_bw_GBs", n, lim.bw[ti], 1);
        csv_limit("read_bw_GBs_start", n, lim.bw0[ti], 1);
        csv_limit("read_bw_GBs_end", n, lim.bw1[ti], 1);
    }
}


/*
 * OpenBLAS picks its kernels by CPU model when it loads.  A release older
 * than the CPU (0.3.21 on a model it does not list) falls back to its
 * oldest x86-64 kernels (Prescott, SSE3), a third of what the same library
 * does with the right ones: not the peer a user who looked would get.  When
 * the choice is older than the instructions this CPU has, the driver
 * re-executes itself with OPENBLAS_CORETYPE naming the matching kernel set
 * (the library's documented override; the PyTorch child inherits it too,
 * since Debian's PyTorch uses the same OpenBLAS) and says so.  A value set
 * by the user is left alone.
 */
static void openblas_coretype(char **argv)
{
    const char *core = peer_available() ? peer_corename() : NULL;
    const char *want = NULL;
    if (!core || getenv("OPENBLAS_CORETYPE"))
        return;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd")) {
        if (strcasecmp(core, "SkylakeX") != 0 && strcasecmp(core, "Cooperlake") != 0 &&
            strcasecmp(core, "SapphireRapids") != 0)
            want = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (strcasecmp(core, "Haswell") != 0 && strcasecmp(core, "Zen") != 0 &&
            strcasecmp(core, "SkylakeX") != 0 && strcasecmp(core, "Cooperlake") != 0 &&
            strcasecmp(core, "SapphireRapids") != 0)
            want = "Haswell";
    }
#endif
    if (!want)
        return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 ||
        setenv("BENCH_OPENBLAS_DETECTED", core, 1) != 0)
        return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* could not re-execute: carry on as loaded */
}

int main(int argc, char **argv)
{
    openblas_coretype(argv);
    parse_args(argc, argv);
    if (opt.selftest)
        return selftest(opt.selftest);
    if (opt.nvariants == 0)
        die("no fusec variants given (--variant LABEL=SUFFIX); run it through bench/run.sh");
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_start = fr_now();
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    read_cpu_name();
    time_t now = time(NULL);
    struct tm tmv;
    if (localtime_r(&now, &tmv))
        strftime(run_id, sizeof run_id, "%Y-%m-%dT%H:%M:%S", &tmv);
    opt.flush_bytes = flush_size();

    /* PyTorch starts first: importing it must not overlap the limits */
    torch_start();
    csv_open();
    printf("fusec benchmark suite (%s): %s, %s, %ld cores\n", opt.quick ? "QUICK" : "full", host,
           cpu, sysconf(_SC_NPROCESSORS_ONLN));
    printf("contenders:");
    for (int v = 0; v < opt.nvariants; v++)
        printf(" [%s]", opt.variants[v].label);
    printf(" [OpenBLAS%s%s] [PyTorch%s%s]\n", peer_available() ? " " : ": not built",
           peer_available() ? peer_corename() : "", torch.ok ? " " : ": not available",
           torch.ok ? torch.version : "");
    if (getenv("BENCH_OPENBLAS_DETECTED"))
        printf("note: OpenBLAS chose its %s kernels for this CPU; the suite set "
               "OPENBLAS_CORETYPE=%s, which this CPU runs\n",
               getenv("BENCH_OPENBLAS_DETECTED"), getenv("OPENBLAS_CORETYPE"));
    double load0 = loadavg();
    if (load0 >= 0)
        printf("load average at the start: %.2f%s\n", load0,
               load0 > 0.5 ? "  (*** the machine is busy: expect noisy numbers)" : "");
    measure_limits();
    for (int wi = 0; wi < NWORKLOADS; wi++)
        cells_total += selected(workloads[wi].id) ? opt.nthreads : 0;
    print_header();

    for (int bi = 0; bi < (int)(sizeof blocks / sizeof blocks[0]); bi++) {
        const Block *b = &blocks[bi];
        int any = 0;
        for (int wi = 0; wi < NWORKLOADS; wi++)
            any |= workloads[wi].block == bi && selected(workloads[wi].id);
        if (!any)
            continue;
        progress(1, "%s: loading variants, making weights", b->name);
        if (load_block(b) == 0) {
            progress_done();
            fprintf(stderr, "bench: *** no fusec variant of %s loaded: its workloads are skipped\n",
                    b->name);
            unload_block();
            continue;
        }
        for (int wi = 0; wi < NWORKLOADS; wi++) {
            const Workload *w = &workloads[wi];
            if (w->block != bi || !selected(w->id))
                continue;
            Cell cell;
            memset(&cell, 0, sizeof cell);
            cell.wl = w;
            cell.b = b;
            cell.T = opt.quick ? w->quick_T : w->T;
            cell.P = opt.quick ? w->quick_P : w->P;
            progress(1, "%s: making inputs", w->id);
            make_inputs(&cell);
            for (int ti = 0; ti < opt.nthreads; ti++)
                run_cell(&cell, ti);
            free_cell(&cell);
        }
        unload_block();
    }

    double load1 = loadavg();
    remeasure_limits();
    printf("\nAll results (t/fused: the contender's median time over %s's; "
           "of limit: FLOPs/time/FMA peak, or bytes/time/read bandwidth):\n\n",
           opt.variants[0].label);
    print_header();
    int last_wl = -1, last_thr = -1;
    for (int i = 0; i < nrows; i++) {
        print_row(&rows[i], rows[i].wl != last_wl || rows[i].threads != last_thr);
        last_wl = rows[i].wl;
        last_thr = rows[i].threads;
    }
    print_targets();
    int mismatches = 0;
    for (int i = 0; i < nrows; i++)
        mismatches += rows[i].mismatch || rows[i].failed;
    if (mismatches)
        printf("\n*** %d row(s) MISMATCH or FAILED: see above\n", mismatches);
    if (load1 >= 0)
        printf("\nload average at the end: %.2f (the suite itself counts for up to %d)\n", load1,
               opt.threads[0]);
    if (csv) {
        csv_limits(load0, load1);
        for (int i = 0; i < nrows; i++)
            csv_row(&rows[i]);
    }
    printf("total %.0f s\n", fr_now() - t_start);
    if (csv && (ferror(csv) | fclose(csv)) != 0) {
        fprintf(stderr, "bench: error writing %s\n", opt.csv);
        return 1;
    }
    torch_stop();
    limits_free();
    return mismatches ? 3 : 0;
}
