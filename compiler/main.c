/*
 * main.c - the fusec command.
 *
 *   fusec [options] FILE.fdl -o OUT.c     compile a block to OUT.c and OUT.h
 *   fusec --emit=ir FILE.fdl              print the IR after the passes
 *   fusec check FILE.fdl --golden G ...   compile, run and compare (check.c)
 *
 * Outputs are written to temporary files beside their destination and
 * renamed into place only when everything succeeded, so a failed run never
 * leaves a partial file or clobbers the user's previous one.  An output
 * whose bytes did not change is left as it was (its time stamp too), so
 * that make does not rebuild what depends on it; missing directories on an
 * output's path are created, as mkdir -p would.
 */
#include "fusec.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: fusec [options] FILE.fdl -o OUT.c\n"
    "       fusec check FILE.fdl --golden G.safetensors [options]   (fusec check --help)\n"
    "       fusec tune [--target T] [--threads N] -o machine.tune   (fusec tune --help)\n"
    "       fusec quantize IN.safetensors -o OUT.safetensors --type T   (fusec quantize --help)\n"
    "\n"
    "Compiles a transformer block written in the fusec DSL to C.\n"
    "\n"
    "options:\n"
    "  -o FILE          write the C source to FILE and its header beside it (FILE with .h);\n"
    "                   '-o -' writes the C source to standard output.  Missing directories\n"
    "                   are created; an output whose contents did not change is not rewritten\n"
    "  --emit=KIND      what to write: c (default), h (the header alone), ir (the IR after\n"
    "                   the passes), report (FLOPs, bytes moved and intensity per kernel,\n"
    "                   fused vs unfused; needs --dim), dot (the graph before and after\n"
    "                   fusion, for Graphviz); ir, report and dot go to standard output\n"
    "                   unless -o is given\n"
    "  --explain        print each kernel with the operators it absorbed and every fusion\n"
    "                   the passes refused, with the reason (standard output unless -o)\n"
    "  --dim NAME=V     the value of symbolic dim NAME for --emit=report (the cache length\n"
    "                   defaults to 0)\n"
    "  --target=T       target ISA: generic (portable C, the default), x86-64-avx2,\n"
    "                   x86-64-avx2-vnni, x86-64-avx512, x86-64-avx512-bf16, x86-64-spr,\n"
    "                   aarch64-neon, aarch64-neon-dotprod, native (this machine's best), or\n"
    "                   multi:T1,T2,... (all in one file, picked at run time from the\n"
    "                   CPU's features, the first listed that the CPU runs; list generic\n"
    "                   last as the fallback); docs/targets.md\n"
    "  --block=NAME     the block to compile when FILE holds several (default: the last)\n"
    "  --config=FILE    a model's config.json: names config.KEY in FILE are its values\n"
    "  --compute=T      the arithmetic of linear: f32 (default), or bf16: both operands\n"
    "                   rounded to bf16 (nearest even), products summed in f32; f32 and\n"
    "                   f16 weights are converted while packing, bf16 ones used as stored,\n"
    "                   q8_0/q4_0 unaffected; prefill on vdpbf16ps (x86-64-avx512-bf16)\n"
    "                   or AMX tiles (x86-64-spr) (docs/quantization.md)\n"
    "  --weight-type=PATTERN=TYPE\n"
    "                   give the weights whose checkpoint name matches the glob PATTERN\n"
    "                   the type TYPE (f32, bf16, f16, q8_0, q4_0) instead of the declared\n"
    "                   one; repeatable, the last match wins (docs/quantization.md)\n"
    "  --kv-type=TYPE   every KV cache is TYPE (f32, f16, bf16) instead of the declared\n"
    "                   type; f16/bf16 rows are rounded as appended (docs/language.md)\n"
    "  -O0              no fusion: every operator its own kernel\n"
    "  -O1, -O          fuse (default)\n"
    "  --tune=FILE      the machine the cost model assumes, as `fusec tune` measured it\n"
    "                   (and its tiles, which the emitted kernels use)\n"
    "                   (default: the target's own figures; docs/fusion.md)\n"
    "  --fuse-all       every legal fusion, without asking the cost model\n"
    "  --tp=N --tp-rank=R\n"
    "                   tensor parallelism: the part of the block that rank R of N computes\n"
    "                   (column-/row-parallel linears, an all-reduce per pair; link with\n"
    "                   libfusec_comm and run under mpirun: docs/distributed.md)\n"
    "  --no-fuse=P,...  turn fusion passes off: elementwise, norm, epilogue, softmax,\n"
    "                   attention, mlp (docs/fusion.md)\n"
    "  -MD              also write a make dependency file (OUT.d, or the -MF file)\n"
    "  -MF FILE         write the dependency file to FILE (implies -MD)\n"
    "  --help           print this help and exit\n"
    "  --version        print the version and exit\n"
    "\n"
    "exit status: 0 success, 1 errors in the input, 2 bad usage, 70 internal error\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "fusec: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nfusec: see 'fusec --help'\n");
    return EXIT_USAGE;
}

/* "--name=value" or "--name value": returns the value and advances *i. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

/* A temporary file beside `path` that replaces it on commit. */
typedef struct Out {
    const char *path;
    char *tmp;
    FILE *f;
} Out;

/* Temporary files not yet renamed into place.  An internal error exits
 * from anywhere and a signal kills at any point, so these are also removed
 * at exit and on SIGINT, SIGTERM and SIGHUP: no run leaves a partial file. */
#define MAX_PENDING 8
static const char *volatile pending[MAX_PENDING];

static void pending_remove_all(void) {
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i]) {
            unlink(pending[i]);
            pending[i] = NULL;
        }
}

static void on_fatal_signal(int sig) {
    pending_remove_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void pending_set(const char *tmp, bool add) {
    static bool hooked;
    if (!hooked) {
        hooked = true;
        if (atexit(pending_remove_all) != 0)
            fprintf(stderr, "fusec: warning: cannot register the cleanup of temporary files\n"); // GCOVR_EXCL_LINE: atexit fails only past 32 handlers
        signal(SIGINT, on_fatal_signal);
        signal(SIGTERM, on_fatal_signal);
        signal(SIGHUP, on_fatal_signal);
    }
    for (int i = 0; i < MAX_PENDING; i++)
        if (add ? pending[i] == NULL : pending[i] == tmp) {
            pending[i] = add ? tmp : NULL;
            return;
        }
}

/* Creates the missing directories on the way to the file `path`. */
static bool make_parents(const char *path) {
    char *dir = fu_strdup(path);
    for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            diag_plain_error("cannot create directory '%s' for '%s': %s", dir, path, strerror(errno));
            return false;
        }
        *p = '/';
    }
    return true;
}

static bool out_open(Out *o, const char *path) {
    o->path = path;
    if (!make_parents(path))
        return false;
    o->tmp = fu_format("%s.tmp.XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd >= 0)
        pending_set(o->tmp, true);
    /* mkstemp creates 0600; give the file the mode a plain fopen would */
    mode_t mask = umask(0);
    umask(mask);
    if (fd >= 0 && fchmod(fd, 0666 & ~mask) != 0) {
        close(fd); // GCOVR_EXCL_LINE: fchmod of our own new file
        unlink(o->tmp); // GCOVR_EXCL_LINE: fchmod of our own new file
        pending_set(o->tmp, false); // GCOVR_EXCL_LINE: fchmod of our own new file
        fd = -1; // GCOVR_EXCL_LINE: fchmod of our own new file
    }
    if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
        diag_plain_error("cannot write '%s': %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd); // GCOVR_EXCL_LINE: fdopen fails only out of memory
            unlink(o->tmp); // GCOVR_EXCL_LINE: fdopen fails only out of memory
        }
        pending_set(o->tmp, false);
        o->tmp = NULL;
        return false;
    }
    return true;
}

static void out_abort(Out *o) {
    if (!o->tmp)
        return;
    if (o->f)
        fclose(o->f);
    unlink(o->tmp);
    pending_set(o->tmp, false);
    o->tmp = NULL;
}

/* Whether files a and b hold the same bytes (false when either cannot be read). */
static bool same_contents(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0 || !S_ISREG(sb.st_mode) || sa.st_size != sb.st_size)
        return false;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    char ba[8192], bb[8192];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        same = na == nb && memcmp(ba, bb, na) == 0 && !ferror(fa) && !ferror(fb);
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static bool out_commit(Out *o) {
    bool ok = !ferror(o->f);
    ok = (fclose(o->f) == 0) && ok;
    o->f = NULL;
    if (ok && same_contents(o->tmp, o->path)) {
        unlink(o->tmp);
        pending_set(o->tmp, false);
        o->tmp = NULL;
        return true;
    }
    if (ok && rename(o->tmp, o->path) == 0) {
        pending_set(o->tmp, false);
        o->tmp = NULL;
        return true;
    }
    diag_plain_error("cannot write '%s': %s", o->path, strerror(errno));
    unlink(o->tmp);
    pending_set(o->tmp, false);
    o->tmp = NULL;
    return false;
}

/* block.c -> block.h; anything else gets ".h" appended. */
static const char *header_path(const char *c_path) {
    size_t n = strlen(c_path);
    if (n > 2 && strcmp(c_path + n - 2, ".c") == 0)
        return fu_format("%.*s.h", (int)(n - 2), c_path);
    return fu_format("%s.h", c_path);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int write_c(const Graph *g, const Target *t, const char *out, bool header_only) {
    if (strcmp(out, "-") == 0) {
        /* to stdout: the .c (or .h) alone; the .c includes NAME.h */
        FILE *devnull = fopen("/dev/null", "w");
        if (!devnull) {
            diag_plain_error("cannot open /dev/null: %s", strerror(errno)); // GCOVR_EXCL_LINE: /dev/null opens
            return EXIT_FAIL; // GCOVR_EXCL_LINE: /dev/null opens
        }
        const char *h = fu_format("%s.h", g->name);
        int rc = header_only ? emit_c(g, t, devnull, stdout, h) : emit_c(g, t, stdout, devnull, h);
        fclose(devnull);
        return rc == 0 && fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
    }
    const char *hpath = header_only ? out : header_path(out);
    Out c = {0}, h = {0};
    if (!header_only && !out_open(&c, out))
        return EXIT_FAIL;
    if (!out_open(&h, hpath)) {
        out_abort(&c);
        return EXIT_FAIL;
    }
    FILE *devnull = NULL;
    if (header_only && !(devnull = fopen("/dev/null", "w"))) {
        out_abort(&h);
        diag_plain_error("cannot open /dev/null: %s", strerror(errno)); // GCOVR_EXCL_LINE: /dev/null opens
        return EXIT_FAIL; // GCOVR_EXCL_LINE: /dev/null opens
    }
    int rc = emit_c(g, t, header_only ? devnull : c.f, h.f, base_name(hpath));
    if (devnull)
        fclose(devnull);
    if (rc != 0) {
        out_abort(&c);
        out_abort(&h);
        return EXIT_FAIL;
    }
    if ((!header_only && !out_commit(&c)) || !out_commit(&h)) {
        out_abort(&h);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* A path in a make rule: spaces and '#' escaped, '$' doubled. */
static void make_quote(Buf *b, const char *path) {
    for (const char *p = path; *p; p++) {
        if (*p == ' ' || *p == '#')
            buf_puts(b, "\\");
        if (*p == '$')
            buf_puts(b, "$");
        buf_printf(b, "%c", *p);
    }
}

/* "OUT.c OUT.h: FILE.fdl imports..." plus an empty rule per import (gcc's
 * -MP), so deleting an imported file does not break the user's build. */
static int write_deps(const char *dep_path, const char *const *targets, int ntargets) {
    Buf b = {0};
    for (int i = 0; i < ntargets; i++) {
        if (i)
            buf_puts(&b, " ");
        make_quote(&b, targets[i]);
    }
    buf_puts(&b, ":");
    for (int i = 0; i < fe_dependency_count(); i++) {
        buf_puts(&b, " ");
        make_quote(&b, fe_dependency(i));
    }
    buf_puts(&b, "\n");
    for (int i = 1; i < fe_dependency_count(); i++) {
        buf_puts(&b, "\n");
        make_quote(&b, fe_dependency(i));
        buf_puts(&b, ":\n");
    }
    Out o = {0};
    bool ok = out_open(&o, dep_path);
    if (ok) {
        fputs(b.data, o.f);
        ok = out_commit(&o);
    }
    free(b.data);
    return ok ? EXIT_OK : EXIT_FAIL;
}

/* OUT.c -> OUT.d */
static const char *dep_path_for(const char *out) {
    size_t n = strlen(out);
    if (n > 2 && strcmp(out + n - 2, ".c") == 0)
        return fu_format("%.*s.d", (int)(n - 2), out);
    return fu_format("%s.d", out);
}

static int write_ir(const Graph *g, const char *out) {
    if (!out || strcmp(out, "-") == 0) {
        ir_print(stdout, g);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
    }
    Out o = {0};
    if (!out_open(&o, out))
        return EXIT_FAIL;
    ir_print(o.f, g);
    return out_commit(&o) ? EXIT_OK : EXIT_FAIL;
}

/* "attention,mlp" -> FUSE_ATTENTION | FUSE_MLP. */
static bool parse_no_fuse(const char *list, unsigned *bits) {
    const char *p = list;
    if (!*p)
        return false;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        unsigned b = fuse_pass_bit(fu_strndup(p, n));
        if (!b)
            return false;
        *bits |= b;
        if (!e)
            return true;
        p = e + 1;
    }
}

/* "T=512" */
static bool parse_dim(const char *s, const char **name, int64_t *value) {
    const char *eq = strchr(s, '=');
    char *end;
    if (!eq || eq == s || !eq[1])
        return false;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (errno || *end || v < 0 || v > ((long long)1 << 31))
        return false;
    *name = fu_strndup(s, (size_t)(eq - s));
    *value = v;
    return true;
}

/* The symbol values for --emit=report, in the graph's order; NULL after
 * reporting a missing or unknown dim. */
static const int64_t *report_syms(const Graph *g, const char **names, const int64_t *values, int n) {
    int64_t *syms = fu_alloc(sizeof *syms * FU_MAX_SYMS);
    bool *set = fu_alloc(sizeof *set * FU_MAX_SYMS);
    for (int i = 0; i < n; i++) {
        int s = ir_find_sym(g, names[i]);
        if (s < 0) {
            usage_error("--dim: the block has no symbolic dim '%s'", names[i]);
            return NULL;
        }
        syms[s] = values[i];
        set[s] = true;
    }
    for (int s = 0; s < g->nsyms; s++)
        if (!set[s] && s != g->cache_sym) {
            usage_error("--emit=report needs --dim %s=VALUE", g->sym_names[s]);
            return NULL;
        }
    return syms;
}

/* --explain, --emit=report, --emit=dot: the fused graph, the same block
 * compiled with -O0 and (report) the symbol values. */
typedef struct TextJob {
    const char *kind;
    const Graph *g, *unfused;
    const int64_t *syms;
    const Machine *m;
} TextJob;

static void print_text(FILE *f, const TextJob *j) {
    if (strcmp(j->kind, "explain") == 0)
        explain_print(f, j->g, j->unfused);
    else if (strcmp(j->kind, "report") == 0)
        report_print(f, j->g, j->unfused, j->syms, j->m);
    else
        dot_print(f, j->unfused, j->g);
}

static int write_text(const TextJob *j, const char *out) {
    if (!out || strcmp(out, "-") == 0) {
        print_text(stdout, j);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
    }
    Out o = {0};
    if (!out_open(&o, out))
        return EXIT_FAIL;
    print_text(o.f, j);
    return out_commit(&o) ? EXIT_OK : EXIT_FAIL;
}

/* A whole number in [lo, hi]. */
static bool parse_tp(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "check") == 0)
        return check_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        return run_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "tune") == 0)
        return tune_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "quantize") == 0)
        return quantize_main(argc - 1, argv + 1);

    Options opt = {.opt_level = 1, .target = "generic"};
    int tp = 1, tp_rank = 0;
    const char *input = NULL, *out = NULL, *emit = "c", *block = NULL, *v, *dep_file = NULL, *tune = NULL;
    const char *dim_names[FU_MAX_SYMS];
    int64_t dim_values[FU_MAX_SYMS];
    int ndims = 0;
    bool deps = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("fusec %s\n", FUSEC_VERSION);
            return EXIT_OK;
        } else if (strcmp(a, "-o") == 0) {
            if (i + 1 >= argc)
                return usage_error("'-o' needs a file name%s", "");
            out = argv[++i];
        } else if (strncmp(a, "-o", 2) == 0 && a[2]) {
            out = a + 2;
        } else if ((v = opt_value(argc, argv, &i, "--emit"))) {
            if (strcmp(v, "c") && strcmp(v, "h") && strcmp(v, "ir") && strcmp(v, "report") &&
                strcmp(v, "dot"))
                return usage_error("unknown --emit kind '%s' (expected c, h, ir, report or dot)", v);
            emit = v;
        } else if (strcmp(a, "--explain") == 0) {
            emit = "explain";
        } else if ((v = opt_value(argc, argv, &i, "--no-fuse"))) {
            if (!parse_no_fuse(v, &opt.no_fuse))
                return usage_error("--no-fuse: expected names from elementwise, norm, epilogue, "
                                   "softmax, attention, mlp separated by commas, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--dim"))) {
            if (ndims == FU_MAX_SYMS || !parse_dim(v, &dim_names[ndims], &dim_values[ndims]))
                return usage_error("--dim: expected NAME=VALUE with 0 <= VALUE <= 2^31, got '%s'", v);
            ndims++;
        } else if ((v = opt_value(argc, argv, &i, "--target"))) {
            opt.target = v;
        } else if ((v = opt_value(argc, argv, &i, "--tune"))) {
            tune = v;
        } else if (strcmp(a, "--fuse-all") == 0) {
            opt.fuse_all = true;
        } else if ((v = opt_value(argc, argv, &i, "--tp"))) {
            if (!parse_tp(v, 1, 4096, &tp))
                return usage_error("--tp: expected a rank count in [1, 4096], got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--tp-rank"))) {
            if (!parse_tp(v, 0, 4095, &tp_rank))
                return usage_error("--tp-rank: expected a rank in [0, 4095], got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--compute"))) {
            if (strcmp(v, "f32") && strcmp(v, "bf16"))
                return usage_error("--compute: expected f32 or bf16, got '%s'", v);
            opt.compute_bf16 = strcmp(v, "bf16") == 0;
        } else if ((v = opt_value(argc, argv, &i, "--weight-type"))) {
            char why[256];
            if (!dt_add_weight_rule(v, why, sizeof why))
                return usage_error("--weight-type: %s", why);
        } else if ((v = opt_value(argc, argv, &i, "--kv-type"))) {
            char why[256];
            if (!dt_set_kv_type(v, why, sizeof why))
                return usage_error("--kv-type: %s", why);
        } else if ((v = opt_value(argc, argv, &i, "--block"))) {
            block = v;
        } else if ((v = opt_value(argc, argv, &i, "--config"))) {
            if (fe_load_config(v) != 0)
                return EXIT_FAIL;
        } else if (strcmp(a, "-MD") == 0) {
            deps = true;
        } else if (strcmp(a, "-MF") == 0) {
            if (i + 1 >= argc)
                return usage_error("'-MF' needs a file name%s", "");
            dep_file = argv[++i];
            deps = true;
        } else if (strcmp(a, "-O0") == 0) {
            opt.opt_level = 0;
        } else if (strcmp(a, "-O1") == 0 || strcmp(a, "-O") == 0) {
            opt.opt_level = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option '%s'", a);
        } else if (input) {
            return usage_error("more than one input file ('%s')", a);
        } else {
            input = a;
        }
    }
    if (!input)
        return usage_error("no input file%s", "");
    if (tp_rank >= tp)
        return usage_error("--tp-rank=%s: the rank must be below --tp (default 1)", fu_format("%d", tp_rank));
    compile_set_tp(tp, tp_rank);
    const Target *t = target_find(opt.target);
    if (!t)
        return usage_error("%s", target_error(opt.target));
    const char *shadowed[FU_MAX_VARIANTS];
    for (int i = 0, n = target_shadowed(t, shadowed); i < n; i++)
        fprintf(stderr, "fusec: warning: %s\n", shadowed[i]);
    char why[512];
    if (tune && !cost_use_tune(&opt, tune, why, sizeof why)) {
        fprintf(stderr, "%s\n", why);
        return EXIT_FAIL;
    }
    if (tune)
        t = target_tuned(t, &opt.machine->tiles);   /* the file's tiles (docs/fusion.md) */
    bool is_ir = strcmp(emit, "ir") == 0;
    bool is_text = is_ir || !strcmp(emit, "explain") || !strcmp(emit, "report") || !strcmp(emit, "dot");
    if (!out && !is_text)
        return usage_error("no output file: use -o FILE.c (or -o - for standard output)%s", "");

    if (deps && (!out || strcmp(out, "-") == 0) && !dep_file)
        return usage_error("-MD needs an output file (-o FILE) or -MF FILE%s", "");

    Graph *g = compile_pipeline(input, block, &opt);
    if (!g)
        return EXIT_FAIL;
    if (is_text && !is_ir) {
        Options o0 = opt;
        o0.opt_level = 0;
        Graph *unfused = compile_pipeline(input, block, &o0);
        if (!unfused)
            return EXIT_FAIL;
        Machine m = cost_machine(&opt);
        TextJob job = {emit, g, unfused, NULL, &m};
        if (strcmp(emit, "report") == 0 && !(job.syms = report_syms(g, dim_names, dim_values, ndims)))
            return EXIT_USAGE;
        int trc = write_text(&job, out);
        if (trc != EXIT_OK || !deps)
            return trc;
        const char *target = out && strcmp(out, "-") != 0 ? out : input;
        return write_deps(dep_file ? dep_file : dep_path_for(out), &target, 1);
    }
    bool header_only = strcmp(emit, "h") == 0;
    int rc = is_ir ? write_ir(g, out) : write_c(g, t, out, header_only);
    if (rc != EXIT_OK || !deps)
        return rc;
    const char *targets[2];
    int ntargets = 0;
    if (out && strcmp(out, "-") != 0) {
        targets[ntargets++] = out;
        if (!is_ir && !header_only)
            targets[ntargets++] = header_path(out);
    } else {
        targets[ntargets++] = input;
    }
    return write_deps(dep_file ? dep_file : dep_path_for(out), targets, ntargets);
}
