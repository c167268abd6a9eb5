/*
 * fuzz_fdl.c - libFuzzer harness for .fdl text through the whole compiler.
 *
 * One input is one .fdl file.  It goes through the lexer and parser with
 * its exact bytes (NULs included: fe_parse takes a length), then through
 * fe_compile_string (lexer, parser, sema, imports resolved beside the
 * examples so that `import "lib/transformer.fdl"` works), and when the
 * front end accepts it, through everything after: ir_check, DCE, the pass
 * pipeline at -O0 and -O1 (which verifies the IR after every pass), the C
 * emitter for every target fusec knows, and the float64 interpreter on
 * zero data when the tensors are small.
 *
 * What counts as a bug: a crash, a sanitizer report, a hang, and any
 * internal error (fu_internal exits, which libFuzzer reports as "fuzz target
 * exited").  A user error in the input is the expected outcome for almost
 * every input and is not a bug.  The compiler's arena is released after
 * each input and the 20-error stop is off, so one process can run millions.
 *
 * Built by tests/fuzz/build.sh with clang -fsanitize=fuzzer,address,undefined,
 * and with tests/fuzz/replay.c by any C compiler to replay a corpus in
 * `make test`.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_IMPORT_DIR
#define FUZZ_IMPORT_DIR "dsl-examples"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are skipped: the lexer and parser are linear, and
 * long inputs only slow the fuzzer down. */
#define MAX_INPUT (1 << 16)
/* The interpreter runs when no tensor has more elements than this. */
#define MAX_INTERP_ELEMS 4096
#define FUZZ_T 3  /* token symbols */
#define FUZZ_P 2  /* the cache symbol: rows already cached */

static const char *input_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_IMPORT_DIR");
    if (!dir || !*dir)
        dir = FUZZ_IMPORT_DIR;
    size_t n = strlen(dir) + sizeof "/fuzz_input.fdl";
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/fuzz_input.fdl", dir);
    input_path = p;
    diag_set_max_errors(0);
    return 0;
}

/* Emits C for one target into memory: only crashes and internal errors
 * matter here, the text is thrown away. */
static void emit_to_memory(const Graph *g, const Target *t)
{
    char *cbuf = NULL, *hbuf = NULL;
    size_t clen = 0, hlen = 0;
    FILE *c = open_memstream(&cbuf, &clen), *h = open_memstream(&hbuf, &hlen);
    if (!c || !h)
        abort();
    int rc = emit_c(g, t, c, h, "fuzz_input.h");
    if (fclose(c) != 0 || fclose(h) != 0)
        abort();
    /* An emitter that fails must say why; one that succeeds writes a body. */
    if (rc == 0 && (clen == 0 || hlen == 0))
        abort();
    free(cbuf);
    free(hbuf);
}

/* Zero inputs and weights (position ids 0), caches of FUZZ_P + FUZZ_T rows;
 * skipped when any node is larger than MAX_INTERP_ELEMS. */
static void interp_small(const Graph *g)
{
    int64_t syms[FU_MAX_SYMS];
    for (int s = 0; s < FU_MAX_SYMS; s++)
        syms[s] = s == g->cache_sym ? FUZZ_P : FUZZ_T;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        int64_t e = 1;
        for (int d = 0; d < n->rank; d++) {
            int64_t v = dim_eval(n->shape[d], syms);
            if (v < 0 || v > MAX_INTERP_ELEMS)
                return;
            e *= v;
            if (e > MAX_INTERP_ELEMS)
                return;
        }
    }
    int64_t cap = FUZZ_P + FUZZ_T;
    double **in = fu_alloc(sizeof(double *) * (size_t)(g->ninputs + 1));
    double **w = fu_alloc(sizeof(double *) * (size_t)(g->nweights + 1));
    double **c = fu_alloc(sizeof(double *) * (size_t)(g->ncaches + 1));
    double **out = fu_alloc(sizeof(double *) * (size_t)(g->noutputs + 1));
    for (int i = 0; i < g->ninputs; i++)
        in[i] = fu_alloc(sizeof(double) * (size_t)(ir_numel(g->inputs[i], syms) + 1));
    for (int i = 0; i < g->nweights; i++)
        w[i] = fu_alloc(sizeof(double) * (size_t)(ir_numel(g->weights[i], syms) + 1));
    for (int i = 0; i < g->noutputs; i++)
        out[i] = fu_alloc(sizeof(double) * (size_t)(ir_numel(g->outputs[i], syms) + 1));
    for (int i = 0; i < g->ncaches; i++) {
        /* a cache's row: every dim but the first */
        int64_t row = 1;
        for (int d = 1; d < g->caches[i]->rank; d++)
            row *= dim_eval(g->caches[i]->shape[d], syms);
        c[i] = fu_alloc(sizeof(double) * (size_t)(cap * row + 1));
    }
    InterpArgs a = {syms, (const double *const *)in, (const double *const *)w, c, cap, out};
    char err[512];
    (void)interp_run(g, &a, err, sizeof err);
}

static void compile_all(const char *text)
{
    static const char *const targets[] = {"generic", "x86-64-avx2", "x86-64-avx512",
                                          "aarch64-neon",
                                          "multi:x86-64-avx512,x86-64-avx2,generic"};
    char why[512];
    for (int opt = 0; opt <= 1; opt++) {
        diag_reset();
        Graph *g = fe_compile_string(input_path, text, NULL);
        if (!g)
            return;
        if (!ir_check(g, why, sizeof why)) {
            fprintf(stderr, "fuzz_fdl: sema built a graph that fails ir_check: %s\n", why);
            abort();
        }
        ir_dce(g);
        if (!ir_check(g, why, sizeof why)) {
            fprintf(stderr, "fuzz_fdl: ir_check fails after DCE: %s\n", why);
            abort();
        }
        if (opt == 0)
            interp_small(g);
        for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
            const Target *tg = target_find(targets[t]);
            if (!tg)
                continue;
            /* the passes may rewrite the graph, so each target gets its own */
            Graph *h = t == 0 ? g : fe_compile_string(input_path, text, NULL);
            if (!h)
                abort();    /* the same text compiled a moment ago */
            ir_dce(h);
            Options o = {opt, targets[t], 0, false, NULL, false};
            compile_passes(h, &o);
            emit_to_memory(h, tg);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    /* The exact bytes through the lexer and the parser. */
    diag_reset();
    FeToken *toks;
    (void)fe_tokenize(input_path, text, size, &toks);
    diag_reset();
    (void)fe_parse(input_path, text, size);

    /* Up to the first NUL through everything. */
    compile_all(text);

    diag_reset();
    diag_forget_sources();
    fe_forget_dependencies();
    fu_arena_release();
    free(text);
    return 0;
}
