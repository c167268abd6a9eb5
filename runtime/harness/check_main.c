/*
 * check_main.c - the harness that `fusec check` links with a generated block.
 *
 *   harness IN.safetensors OUT.safetensors [--split K] [--prefix w.] [--repeat N]
 *
 * It is deliberately dumb: it knows a block only through its fr_block_desc
 * (named by -DFUSEC_BLOCK_DESC=NAME_desc) and the runtime's safetensors
 * reader and writer, so the same file drives every block and every target.
 * IN holds the weights (prefix + name, "w." by default) and the inputs
 * ("in." + name); the harness infers the block's symbols from the inputs'
 * shapes, runs the block and writes every output as "out." + name to OUT.
 * All the judging (tolerances, references) happens in fusec, not here.
 *
 * With --split K it runs rows [0, K) as one prefill call and then rows
 * K..T-1 one token at a time through the KV cache (P = rows done so far),
 * gathering the outputs' rows into full [T, ...] buffers: the result must
 * equal the all-at-once run.  It lives outside runtime/ itself because every
 * C file directly in runtime/ goes into libfusec_rt.a, and this one has main().
 *
 * Errors print "harness: error: ..." to stderr and exit 1; a bad file is an
 * error, never a crash.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"

#ifndef FUSEC_BLOCK_DESC
#error "compile the harness with -DFUSEC_BLOCK_DESC=NAME_desc"
#endif
extern const fr_block_desc FUSEC_BLOCK_DESC;

#define MAX_REPEAT 100000

static void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("harness: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: harness IN.safetensors OUT.safetensors [--split K] "
                    "[--prefix w.] [--repeat N]\n");
    exit(1);
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s)
        die("out of memory");
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* A whole decimal number in [lo, hi], or die naming the option. */
static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        die("%s: expected a whole number in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape)
{
    size_t used = 0;
    int i;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (i = 0; i < rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* A dim that is one symbol with coefficient 1 and nothing else: the only
 * kind of dim an input's extent can bind. */
static int lone_sym(const fr_tensor_desc *d, int axis, int nsyms)
{
    int s, found = -1;
    if (d->shape_c[axis] != 0)
        return -1;
    for (s = 0; s < nsyms; s++) {
        if (d->shape_k[axis][s] == 0)
            continue;
        if (d->shape_k[axis][s] != 1 || found >= 0)
            return -1;
        found = s;
    }
    return found;
}

static int depends_on(const fr_tensor_desc *d, int axis, int sym)
{
    return sym >= 0 && d->shape_k[axis][sym] != 0;
}

/* Bytes per row of a tensor whose first dim is the row symbol. */
static size_t row_bytes(const fr_tensor_desc *d, const int64_t *syms)
{
    int64_t shape[FR_MAX_RANK];
    size_t n = fr_dtype_size(d->dtype);
    int i;
    fr_desc_shape(d, syms, shape);
    for (i = 1; i < d->rank; i++)
        n *= (size_t)shape[i];
    return n;
}

/* Bytes of a tensor at these symbols, refusing sizes that overflow. */
static size_t tensor_bytes(const fr_tensor_desc *d, const int64_t *syms)
{
    int64_t shape[FR_MAX_RANK];
    size_t n = fr_dtype_size(d->dtype);
    int i;
    fr_desc_shape(d, syms, shape);
    for (i = 0; i < d->rank; i++) {
        if (shape[i] < 0)
            die("tensor '%s': negative dimension %lld", d->name, (long long)shape[i]);
        if (shape[i] && n > (size_t)-1 / (size_t)shape[i])
            die("tensor '%s' is too large", d->name);
        n *= (size_t)shape[i];
    }
    return n;
}

/* fr_alloc refuses 0 bytes; an empty tensor still needs a valid pointer. */
static void *alloc_bytes(size_t n, const char *what)
{
    void *p = fr_alloc(n ? n : FR_ALIGN);
    if (!p)
        die("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    const fr_block_desc *b = &FUSEC_BLOCK_DESC;
    const char *in_path = NULL, *out_path = NULL, *prefix = "w.";
    long split = 0, repeat = 0;
    fr_st f;
    fr_err err;
    fr_st_writer *w;
    const void **weights;
    const void **inputs;    /* whole inputs, aligned copies */
    void **outputs;         /* whole outputs */
    const void **in_call;   /* this call's row slices */
    void **out_call;
    float **caches;
    char **out_names;
    int64_t syms[FR_MAX_SYMS], csyms[FR_MAX_SYMS];
    int64_t rows = 0, capacity = 0, r0, n;
    int row_sym = -1, ncalls, call, rep, i, s, d;
    size_t ws_size = 0;
    void *ws;
    double *t_first = NULL, *t_rest = NULL;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--split") && i + 1 < argc)
            split = parse_long("--split", argv[++i], 1, 1L << 30);
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
            prefix = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = parse_long("--repeat", argv[++i], 1, MAX_REPEAT);
        else if (argv[i][0] == '-' && argv[i][1])
            usage();
        else if (!in_path)
            in_path = argv[i];
        else if (!out_path)
            out_path = argv[i];
        else
            usage();
    }
    if (!in_path || !out_path)
        usage();
    if (b->nsyms < 0 || b->nsyms > FR_MAX_SYMS)
        die("block '%s': %d symbols, at most %d supported", b->name, b->nsyms, FR_MAX_SYMS);

    if (fr_st_open(&f, in_path, &err))
        die("%s", err.msg);

    weights = calloc((size_t)b->nweights + 1, sizeof *weights);
    inputs = calloc((size_t)b->ninputs + 1, sizeof *inputs);
    in_call = calloc((size_t)b->ninputs + 1, sizeof *in_call);
    outputs = calloc((size_t)b->noutputs + 1, sizeof *outputs);
    out_call = calloc((size_t)b->noutputs + 1, sizeof *out_call);
    caches = calloc((size_t)b->ncaches + 1, sizeof *caches);
    out_names = calloc((size_t)b->noutputs + 1, sizeof *out_names);
    if (!weights || !inputs || !in_call || !outputs || !out_call || !caches || !out_names)
        die("out of memory");

    if (fr_bind_block(b, &f, prefix, weights, &err))
        die("%s", err.msg);

    /* Symbols: each input dim that is a lone symbol binds it; all must agree. */
    for (s = 0; s < FR_MAX_SYMS; s++)
        syms[s] = -1;
    for (i = 0; i < b->ninputs; i++) {
        const fr_tensor_desc *d_in = &b->inputs[i];
        char *name = concat("in.", d_in->name);
        const fr_tensor *t = fr_st_find(&f, name);
        if (!t)
            die("input '%s' not found in %s", name, in_path);
        if (t->dtype != d_in->dtype)
            die("input '%s': dtype %s, block expects %s", name, fr_dtype_name(t->dtype),
                fr_dtype_name(d_in->dtype));
        if (t->rank != d_in->rank)
            die("input '%s': rank %d, block expects rank %d", name, t->rank, d_in->rank);
        for (d = 0; d < d_in->rank; d++) {
            int sym = lone_sym(d_in, d, b->nsyms);
            if (sym < 0)
                continue;
            if (syms[sym] < 0)
                syms[sym] = t->shape[d];
            else if (syms[sym] != t->shape[d])
                die("input '%s' dim %d gives %s = %lld, an earlier input gave %lld", name, d,
                    b->sym_names[sym], (long long)t->shape[d], (long long)syms[sym]);
        }
        free(name);
    }
    if (b->cache_sym >= 0 && b->cache_sym < b->nsyms && syms[b->cache_sym] < 0)
        syms[b->cache_sym] = 0;         /* nothing cached before the first call */
    for (s = 0; s < b->nsyms; s++)
        if (syms[s] < 0)
            die("cannot infer symbol '%s': no input has it as a whole dimension",
                b->sym_names[s]);

    /* Now every input's full shape is known: check it and take an aligned copy,
     * since the file may place the data at any offset. */
    for (i = 0; i < b->ninputs; i++) {
        const fr_tensor_desc *d_in = &b->inputs[i];
        char *name = concat("in.", d_in->name);
        const fr_tensor *t = fr_st_find(&f, name);
        int64_t want[FR_MAX_RANK];
        char got_s[160], want_s[160];
        void *copy;
        fr_desc_shape(d_in, syms, want);
        if (t->rank != d_in->rank || memcmp(want, t->shape, sizeof(int64_t) * (size_t)t->rank)) {
            shape_str(got_s, sizeof got_s, t->rank, t->shape);
            shape_str(want_s, sizeof want_s, d_in->rank, want);
            die("input '%s': shape %s, block expects %s", name, got_s, want_s);
        }
        if (tensor_bytes(d_in, syms) != t->nbytes)
            die("input '%s': %zu bytes, expected %zu", name, t->nbytes, tensor_bytes(d_in, syms));
        copy = alloc_bytes(t->nbytes, name);
        if (t->nbytes)
            memcpy(copy, t->data, t->nbytes);
        inputs[i] = copy;
        free(name);
    }

    /* The row symbol: the lone symbol of every input's first dim (T).  Caches
     * hold all rows, and --split slices inputs and outputs along it. */
    if (b->ninputs > 0 && b->inputs[0].rank > 0)
        row_sym = lone_sym(&b->inputs[0], 0, b->nsyms);
    if (row_sym == b->cache_sym)
        row_sym = -1;
    if (row_sym >= 0)
        rows = syms[row_sym];
    if (b->ncaches > 0) {
        if (row_sym < 0)
            die("block '%s' has caches, but its first input's first dim is not a token "
                "symbol, so the harness cannot size them", b->name);
        capacity = rows > 0 ? rows : 1;
    }
    if (split) {
        if (row_sym < 0)
            die("--split: the first input's first dim is not a symbol to split along");
        for (i = 0; i < b->ninputs + b->noutputs; i++) {
            const fr_tensor_desc *t = i < b->ninputs ? &b->inputs[i] : &b->outputs[i - b->ninputs];
            if (t->rank < 1 || lone_sym(t, 0, b->nsyms) != row_sym)
                die("--split: '%s' does not have %s as its first dim", t->name,
                    b->sym_names[row_sym]);
            for (d = 1; d < t->rank; d++)
                if (depends_on(t, d, row_sym) || depends_on(t, d, b->cache_sym))
                    die("--split: '%s' dim %d depends on the token count", t->name, d);
        }
        if (split > rows)
            die("--split %ld: only %lld rows", split, (long long)rows);
    } else {
        split = rows > 0 ? rows : 1;
    }
    /* Calls: rows [0, split), then one row at a time. */
    ncalls = split >= rows ? 1 : (int)(1 + (rows - split));

    for (i = 0; i < b->ncaches; i++) {
        const fr_tensor_desc *c = &b->caches[i];
        size_t rb;
        if (c->dtype != FR_F32 && c->dtype != FR_F16 && c->dtype != FR_BF16)
            die("cache '%s': dtype %s, the harness supports F32, F16 and BF16 caches", c->name,
                fr_dtype_name(c->dtype));
        rb = row_bytes(c, syms);
        if (rb && (size_t)capacity > (size_t)-1 / rb)
            die("cache '%s' is too large", c->name);
        caches[i] = alloc_bytes(rb * (size_t)capacity, c->name);
    }
    for (i = 0; i < b->noutputs; i++) {
        out_names[i] = concat("out.", b->outputs[i].name);
        outputs[i] = alloc_bytes(tensor_bytes(&b->outputs[i], syms), out_names[i]);
    }

    /* One workspace, as large as the largest call needs. */
    for (call = 0; call < ncalls; call++) {
        size_t sz;
        memcpy(csyms, syms, sizeof csyms);
        if (row_sym >= 0) {
            r0 = call == 0 ? 0 : split + call - 1;
            csyms[row_sym] = call == 0 ? split : 1;
            if (b->cache_sym >= 0)
                csyms[b->cache_sym] = r0;
        }
        sz = b->workspace_size(csyms);
        if (sz > ws_size)
            ws_size = sz;
    }
    ws = alloc_bytes(ws_size, "the workspace");

    if (repeat) {
        t_first = calloc((size_t)repeat, sizeof *t_first);
        t_rest = calloc((size_t)repeat, sizeof *t_rest);
        if (!t_first || !t_rest)
            die("out of memory");
    }
    for (rep = 0; rep < (repeat ? repeat : 1); rep++) {
        double rest = 0;
        for (call = 0; call < ncalls; call++) {
            double t0;
            int rc;
            memcpy(csyms, syms, sizeof csyms);
            r0 = 0;
            n = rows;
            if (row_sym >= 0) {
                r0 = call == 0 ? 0 : split + call - 1;
                n = call == 0 ? split : 1;
                csyms[row_sym] = n;
                if (b->cache_sym >= 0)
                    csyms[b->cache_sym] = r0;
            }
            for (i = 0; i < b->ninputs; i++)
                in_call[i] = (const char *)inputs[i] +
                             (row_sym >= 0 ? (size_t)r0 * row_bytes(&b->inputs[i], syms) : 0);
            for (i = 0; i < b->noutputs; i++)
                out_call[i] = (char *)outputs[i] +
                              (row_sym >= 0 ? (size_t)r0 * row_bytes(&b->outputs[i], syms) : 0);
            t0 = fr_now();
            rc = b->run(weights, caches, capacity, csyms, in_call, out_call, ws, ws_size);
            if (rc)
                die("block '%s' failed on rows [%lld, %lld): %s (%s, code %d)", b->name,
                    (long long)r0, (long long)(r0 + n), fr_last_error(), fr_strerror(rc), rc);
            if (repeat) {
                if (call == 0)
                    t_first[rep] = fr_now() - t0;
                else
                    rest += fr_now() - t0;
            }
        }
        if (repeat && ncalls > 1)
            t_rest[rep] = rest / (ncalls - 1);
    }
    if (repeat) {
        printf("%s: %s rows [0, %ld): median %.6f ms per call over %ld runs\n", b->name,
               ncalls > 1 ? "prefill" : "run", split, 1e3 * median(t_first, (int)repeat),
               repeat);
        if (ncalls > 1)
            printf("%s: decode rows [%ld, %lld): median %.6f ms per token\n", b->name, split,
                   (long long)rows, 1e3 * median(t_rest, (int)repeat));
    }

#ifdef FUSEC_HARNESS_SCALE_ONE
    /* Test-only fault: a negative control of tests/golden/run.sh builds the
     * harness with -DFUSEC_HARNESS_SCALE_ONE=1.03, which makes one element
     * (the middle one) of the first output 3% off, as a kernel wrong in one
     * place would; `fusec check` must catch it. */
    if (b->noutputs > 0 && b->outputs[0].dtype == FR_F32) {
        size_t numel = tensor_bytes(&b->outputs[0], syms) / sizeof(float);
        if (numel)
            ((float *)outputs[0])[numel / 2] *= (float)(FUSEC_HARNESS_SCALE_ONE);
    }
#endif
    w = fr_stw_new();
    if (!w)
        die("out of memory");
    for (i = 0; i < b->noutputs; i++) {
        int64_t shape[FR_MAX_RANK];
        fr_desc_shape(&b->outputs[i], syms, shape);
        if (fr_stw_add(w, out_names[i], b->outputs[i].dtype, b->outputs[i].rank, shape,
                       outputs[i], &err))
            die("%s", err.msg);
    }
    if (fr_stw_write(w, out_path, &err))
        die("%s", err.msg);
    fr_stw_free(w);

    for (i = 0; i < b->ninputs; i++)
        fr_free((void *)inputs[i]);
    for (i = 0; i < b->noutputs; i++) {
        fr_free(outputs[i]);
        free(out_names[i]);
    }
    for (i = 0; i < b->ncaches; i++)
        fr_free(caches[i]);
    fr_free(ws);
    free(t_first);
    free(t_rest);
    free(weights);
    free(inputs);
    free(in_call);
    free(outputs);
    free(out_call);
    free(caches);
    free(out_names);
    fr_st_close(&f);
    return 0;
}
