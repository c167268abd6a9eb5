/*
 * check.c - `fusec check`: compile a block, run it, compare with a reference.
 *
 *   fusec check FILE.fdl (--golden G.safetensors | --random) [options]
 *
 * The generated C is judged from the outside, the way a user would run it:
 * the block is emitted into a temporary directory, compiled with the C
 * compiler together with the generic harness (runtime/harness/check_main.c)
 * and the runtime library, and run as a separate process on a safetensors
 * file.  The harness knows nothing but the block's fr_block_desc, so a crash
 * or a miscompile in generated code cannot take fusec down with it, and what
 * is tested is exactly what a user links.
 *
 * The references are either a golden file (outputs computed by Hugging Face
 * in float64, "out64.NAME") or the float64 interpreter run on random data
 * written by this file.  The interpreter runs on the graph straight out of
 * the front end (compile_front), before any pass, so it also checks that the
 * passes preserved the meaning of the block.
 *
 * The comparison is the relative L2 error ||got - ref|| / ||ref|| per output,
 * against --rtol; the max absolute error is printed alongside for diagnosis.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

/* A sanitized harness exits with this status when ASan or UBSan stops it
 * (a report, or a signal the sanitizer caught): a crash of the block. */
#define SAN_EXIT_CODE 86

#define MAX_DIM_VALUE (1 << 20)       /* --dim values: big enough for any test, small enough not to overflow */
#define MAX_ELEMS ((int64_t)1 << 31)  /* a tensor larger than this is refused, not allocated */
#define DEFAULT_MAX_TOL 1e-4          /* --max-tol: docs/check.md says why */

static const char help_text[] =
    "usage: fusec check FILE.fdl (--golden G.safetensors | --random) [options]\n"
    "\n"
    "Compiles the block in FILE, runs the generated C through a harness and compares\n"
    "every output with a reference: the golden file's out64.NAME (else out.NAME), or\n"
    "with --random the float64 interpreter on random weights and inputs.\n"
    "\n"
    "options:\n"
    "  --golden G       weights w.NAME, inputs in.NAME and reference outputs in G\n"
    "  --random         random weights and inputs, reference = the float64 interpreter\n"
    "  --interp         with --golden: check the float64 interpreter, not generated C\n"
    "  --target T       target ISA (default generic)\n"
    "  -O0, -O1         fusion off / on (default -O1)\n"
    "  --tune FILE      the cost model's machine (fusec tune), as fusec --tune\n"
    "  --fuse-all       every legal fusion, without the cost model, as fusec --fuse-all\n"
    "  --no-fuse P,...  turn fusion passes off (elementwise, norm, epilogue, softmax,\n"
    "                   attention, mlp), as fusec --no-fuse\n"
    "  --block NAME     the block to check when FILE holds several (default: the last)\n"
    "  --config FILE    a model's config.json for the names config.KEY, as fusec --config\n"
    "  --compute T      f32 (default) or bf16: linears round their operands to bf16 and\n"
    "                   sum in f32, and so does the interpreter, as fusec --compute\n"
    "  --weight-type PATTERN=TYPE\n"
    "                   weights whose name matches the glob PATTERN are TYPE (f32, bf16,\n"
    "                   f16, q8_0, q4_0), as fusec --weight-type; with --random they are\n"
    "                   drawn in float32 and stored as TYPE (docs/quantization.md)\n"
    "  --kv-type TYPE   every KV cache is TYPE (f32, f16, bf16), as fusec --kv-type\n"
    "  --rtol X         pass when every output's relative L2 error <= X (default 1e-5)\n"
    "  --max-tol X      and its largest elementwise error over its largest |ref| <= X\n"
    "                   (default 1e-4)\n"
    "  --split K        run rows [0, K) at once, then one token at a time through the cache\n"
    "  --dim NAME=V     with --random: the value of symbolic dim NAME (default T=7, P=0)\n"
    "  --seed N         with --random: the random seed (default 1)\n"
    "  --special K,...  with --random: replace a share of the inputs' values by special\n"
    "                   ones: nan, inf, huge (+-2^62..2^63), denormal (elements);\n"
    "                   bigrow (x 2^66), tinyrow (x 2^-140), offsetrow (+ 1e6) (rows)\n"
    "  --special-rate R with --special: the share of elements and rows (default 0.01)\n"
    "  --keep DIR       build in DIR and keep block.c, block.h, the harness and its files\n"
    "  --cc CC          cross-compile with CC (e.g. aarch64-linux-gnu-gcc): the runtime's\n"
    "                   sources are compiled with the block instead of libfusec_rt.a\n"
    "  --run-with CMD   run the harness as CMD HARNESS ... (e.g. \"qemu-aarch64 -L\n"
    "                   /usr/aarch64-linux-gnu\")\n"
    "  -v               print the commands and the symbol values\n"
    "  --help           print this help and exit\n"
    "\n"
    "exit status: 0 all outputs within tolerance, 1 out of tolerance or bad input,\n"
    "             2 bad usage, 70 internal error (e.g. generated C that does not compile)\n";

typedef struct CheckArgs {
    const char *file, *golden, *target, *block, *keep;
    bool random, interp, verbose;
    int opt_level;
    bool compute_bf16;                /* --compute=bf16 */
    unsigned no_fuse;                 /* FUSE_* bits */
    const char *tune;                 /* --tune=FILE */
    bool fuse_all;                    /* --fuse-all */
    double rtol, max_tol;             /* --rtol, --max-tol */
    int64_t split;                    /* 0: all rows in one call */
    int ndims;
    const char *dim_names[FU_MAX_SYMS];
    int64_t dim_values[FU_MAX_SYMS];
    uint64_t seed;
    unsigned special;                 /* SP_* bits */
    double special_rate;
} CheckArgs;

/* Reference and test data for one run, in the graph's interface order. */
typedef struct Data {
    int64_t syms[FU_MAX_SYMS];
    double **inputs, **weights;       /* float64 copies for the interpreter */
    double **expect;                  /* reference outputs */
    const char *in_path;              /* the file the harness reads */
} Data;

/* --special: kinds of special input values (bits), in the order of their names. */
enum { SP_NAN, SP_INF, SP_HUGE, SP_DENORMAL, SP_BIGROW, SP_TINYROW, SP_OFFSETROW, SP_COUNT };
#define SP_ROWS ((1u << SP_BIGROW) | (1u << SP_TINYROW) | (1u << SP_OFFSETROW))
static const char *const special_names[SP_COUNT] = {"nan", "inf", "huge", "denormal", "bigrow", "tinyrow",
                                                    "offsetrow"};

/* ---- errors and the temporary directory ---------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "fusec check: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nfusec check: see 'fusec check --help'\n");
    return EXIT_USAGE;
}

/* Files this command may create in its directory: cleanup removes exactly
 * these, never anything else a --keep directory might hold. */
static const char *const tmp_files[] = {"block.c", "block.h", "harness", "in.safetensors",
                                        "out.safetensors", "cc.log", "harness.log"};
static char *tmp_dir;
static bool tmp_keep;
/* --cc and --run-with: a cross compiler and the emulator that runs its output. */
static const char *cross_cc, *run_with;

static void tmp_cleanup(void)
{
    size_t i;
    if (!tmp_dir || tmp_keep)
        return;
    for (i = 0; i < sizeof tmp_files / sizeof *tmp_files; i++) {
        char *p = fu_format("%s/%s", tmp_dir, tmp_files[i]);
        if (unlink(p) != 0 && errno != ENOENT)
            fprintf(stderr, "fusec check: warning: cannot remove '%s': %s\n", p, strerror(errno));
    }
    if (rmdir(tmp_dir) != 0)
        fprintf(stderr, "fusec check: warning: cannot remove '%s': %s\n", tmp_dir, strerror(errno));
    tmp_dir = NULL;
}

/* The build directory: --keep DIR, else a fresh mkdtemp under $TMPDIR.  It is
 * also removed by atexit, so an internal error (which exits) leaves nothing. */
static bool tmp_make(const CheckArgs *a)
{
    static bool registered;
    if (a->keep) {
        struct stat st;
        if (mkdir(a->keep, 0777) != 0 && errno != EEXIST) {
            diag_plain_error("cannot create '%s': %s", a->keep, strerror(errno));
            return false;
        }
        if (stat(a->keep, &st) != 0 || !S_ISDIR(st.st_mode)) {
            diag_plain_error("--keep: '%s' is not a directory", a->keep);
            return false;
        }
        tmp_dir = fu_strdup(a->keep);
        tmp_keep = true;
        return true;
    }
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *dir = fu_format("%s/fusec-check-XXXXXX", base);
    if (!mkdtemp(dir)) {
        diag_plain_error("cannot create a temporary directory in '%s': %s", base, strerror(errno));
        return false;
    }
    tmp_dir = dir;
    tmp_keep = false;
    if (!registered && atexit(tmp_cleanup) == 0)
        registered = true;
    return true;
}

static char *tmp_path(const char *name)
{
    return fu_format("%s/%s", tmp_dir, name);
}

/* ---- options ---------------------------------------------------------------- */

/* "--name=value" or "--name value": the value, advancing *i; NULL if argv[*i]
 * is another option.  *missing is set when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 < argc)
        return argv[++*i];
    *missing = true;
    return NULL;
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* A tolerance: a finite number >= 0. */
static bool parse_tol(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= 0) || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* "nan,inf" -> its SP_* bits; false on an unknown or empty name. */
static bool parse_special(const char *v, unsigned *bits)
{
    *bits = 0;
    for (const char *p = v;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int k = 0;
        while (k < SP_COUNT && (strlen(special_names[k]) != len || strncmp(p, special_names[k], len)))
            k++;
        if (k == SP_COUNT)
            return false;
        *bits |= 1u << k;
        if (!e)
            return true;
        p = e + 1;
    }
}

/* Returns -1 when the arguments are fine, else the exit status. */
static int parse_args(int argc, char **argv, CheckArgs *a)
{
    memset(a, 0, sizeof *a);
    a->target = "generic";
    a->opt_level = 1;
    a->rtol = 1e-5;
    a->max_tol = DEFAULT_MAX_TOL;
    a->seed = 1;
    a->special_rate = 0.01;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        bool missing = false;
        int64_t n;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(help_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(s, "--random")) {
            a->random = true;
        } else if (!strcmp(s, "--interp")) {
            a->interp = true;
        } else if (!strcmp(s, "-v")) {
            a->verbose = true;
        } else if (!strcmp(s, "-O0")) {
            a->opt_level = 0;
        } else if (!strcmp(s, "-O1") || !strcmp(s, "-O")) {
            a->opt_level = 1;
        } else if ((v = opt_value(argc, argv, &i, "--no-fuse", &missing))) {
            for (const char *p = v;;) {
                const char *e = strchr(p, ',');
                unsigned bit = fuse_pass_bit(fu_strndup(p, e ? (size_t)(e - p) : strlen(p)));
                if (!bit)
                    return usage_error("--no-fuse: unknown pass in '%s' (elementwise, norm, epilogue, "
                                       "softmax, attention, mlp)", v);
                a->no_fuse |= bit;
                if (!e)
                    break;
                p = e + 1;
            }
        } else if ((v = opt_value(argc, argv, &i, "--compute", &missing))) {
            if (strcmp(v, "f32") && strcmp(v, "bf16"))
                return usage_error("--compute: expected f32 or bf16, got '%s'", v);
            a->compute_bf16 = strcmp(v, "bf16") == 0;
        } else if ((v = opt_value(argc, argv, &i, "--golden", &missing))) {
            a->golden = v;
        } else if ((v = opt_value(argc, argv, &i, "--target", &missing))) {
            a->target = v;
        } else if ((v = opt_value(argc, argv, &i, "--tune", &missing))) {
            a->tune = v;
        } else if (!strcmp(s, "--fuse-all")) {
            a->fuse_all = true;
        } else if ((v = opt_value(argc, argv, &i, "--block", &missing))) {
            a->block = v;
        } else if ((v = opt_value(argc, argv, &i, "--config", &missing))) {
            if (fe_load_config(v) != 0)
                return EXIT_FAIL;
        } else if ((v = opt_value(argc, argv, &i, "--weight-type", &missing))) {
            char why[256];
            if (!dt_add_weight_rule(v, why, sizeof why))
                return usage_error("--weight-type: %s", why);
        } else if ((v = opt_value(argc, argv, &i, "--kv-type", &missing))) {
            char why[256];
            if (!dt_set_kv_type(v, why, sizeof why))
                return usage_error("--kv-type: %s", why);
        } else if ((v = opt_value(argc, argv, &i, "--keep", &missing))) {
            a->keep = v;
        } else if ((v = opt_value(argc, argv, &i, "--cc", &missing))) {
            cross_cc = v;
        } else if ((v = opt_value(argc, argv, &i, "--run-with", &missing))) {
            run_with = v;
        } else if ((v = opt_value(argc, argv, &i, "--rtol", &missing))) {
            if (!parse_tol(v, &a->rtol))
                return usage_error("--rtol: expected a non-negative number, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--max-tol", &missing))) {
            if (!parse_tol(v, &a->max_tol))
                return usage_error("--max-tol: expected a non-negative number, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--split", &missing))) {
            if (!parse_i64(v, 1, MAX_DIM_VALUE, &a->split))
                return usage_error("--split: expected a row count >= 1, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--seed", &missing))) {
            if (!parse_i64(v, 0, INT64_MAX, &n))
                return usage_error("--seed: expected a whole number >= 0, got '%s'", v);
            a->seed = (uint64_t)n;
        } else if ((v = opt_value(argc, argv, &i, "--special", &missing))) {
            if (!parse_special(v, &a->special))
                return usage_error("--special: expected kinds from nan, inf, huge, denormal, bigrow, tinyrow, "
                                   "offsetrow, separated by commas, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--special-rate", &missing))) {
            char *end;
            errno = 0;
            a->special_rate = strtod(v, &end);
            if (end == v || *end || errno || !(a->special_rate > 0 && a->special_rate <= 1))
                return usage_error("--special-rate: expected a number in (0, 1], got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--dim", &missing))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !parse_i64(eq + 1, 0, MAX_DIM_VALUE, &n))
                return usage_error("--dim: expected NAME=VALUE with 0 <= VALUE <= 1048576, got '%s'", v);
            if (a->ndims == FU_MAX_SYMS)
                return usage_error("--dim: more than 8 dims ('%s')", v);
            a->dim_names[a->ndims] = fu_strndup(v, (size_t)(eq - v));
            a->dim_values[a->ndims++] = n;
        } else if (missing) {
            return usage_error("'%s' needs a value", s);
        } else if (s[0] == '-' && s[1]) {
            return usage_error("unknown option '%s'", s);
        } else if (a->file) {
            return usage_error("more than one input file ('%s')", s);
        } else {
            a->file = s;
        }
    }
    if (!a->file)
        return usage_error("no input file%s", "");
    if (!a->golden == !a->random)
        return usage_error("give exactly one of --golden G.safetensors and --random%s", "");
    if (a->interp && a->random)
        return usage_error("--interp checks the interpreter against a golden file: use it with --golden%s", "");
    if (a->ndims && !a->random)
        return usage_error("--dim applies to --random only: a golden file fixes the dims%s", "");
    if (a->special && !a->random)
        return usage_error("--special applies to --random only%s", "");
    const Target *t = target_find(a->target);
    if (!t)
        return usage_error("%s", target_error(a->target));
    const char *shadowed[FU_MAX_VARIANTS];
    for (int i = 0, n = target_shadowed(t, shadowed); i < n; i++)
        fprintf(stderr, "fusec check: warning: %s\n", shadowed[i]);
    return -1;
}

/* ---- shapes --------------------------------------------------------------- */

static fr_dtype fr_type(DType t)
{
    return (fr_dtype)dt_info(t)->fr;
}

/* The dim is one symbol with coefficient 1 and nothing else: the only kind
 * of dim from which a tensor's extent tells the symbol's value. */
static int lone_sym(Dim d, int nsyms)
{
    int found = -1;
    if (d.c != 0)
        return -1;
    for (int s = 0; s < nsyms; s++) {
        if (d.k[s] == 0)
            continue;
        if (d.k[s] != 1 || found >= 0)
            return -1;
        found = s;
    }
    return found;
}

/* Evaluates n's shape; returns its element count, or -1 (with an error)
 * when a dim is negative or the tensor is unreasonably large. */
static int64_t eval_shape(const Node *n, const int64_t *syms, int64_t *shape)
{
    int64_t e = 1;
    for (int d = 0; d < n->rank; d++) {
        shape[d] = dim_eval(n->shape[d], syms);
        if (shape[d] < 0) {
            diag_plain_error("'%s' dim %d is %lld at these symbol values", n->name, d,
                             (long long)shape[d]);
            return -1;
        }
        if (shape[d] && e > MAX_ELEMS / shape[d]) {
            diag_plain_error("'%s' is too large at these symbol values", n->name);
            return -1;
        }
        e *= shape[d];
    }
    return e;
}

static const char *shape_text(int rank, const int64_t *shape)
{
    Buf b = {0};
    buf_puts(&b, "[");
    for (int d = 0; d < rank; d++)
        buf_printf(&b, "%s%lld", d ? ", " : "", (long long)shape[d]);
    buf_puts(&b, "]");
    char *s = fu_strdup(b.data);    /* into the arena: Buf's own memory is malloc'ed */
    free(b.data);
    return s;
}

/* Elements per row of a tensor whose first dim is the row symbol. */
static int64_t row_elems(const Node *n, const int64_t *syms)
{
    int64_t e = 1;
    for (int d = 1; d < n->rank; d++)
        e *= dim_eval(n->shape[d], syms);
    return e;
}

/* The token symbol T: the lone symbol of the first input's first dim (not
 * the cache symbol).  Caches hold that many rows; --split splits along it. */
static int row_sym(const Graph *g)
{
    if (g->ninputs == 0 || g->inputs[0]->rank == 0)
        return -1;
    int s = lone_sym(g->inputs[0]->shape[0], g->nsyms);
    return s == g->cache_sym ? -1 : s;
}

/* --split K needs every input and output to be [T, ...] with T in no other
 * dim, and 1 <= K <= T. */
static bool split_ok(const Graph *g, int rs, const int64_t *syms, int64_t split)
{
    if (rs < 0) {
        diag_plain_error("--split: block '%s' has no input whose first dim is a token symbol",
                         g->name);
        return false;
    }
    for (int i = 0; i < g->ninputs + g->noutputs; i++) {
        const Node *n = i < g->ninputs ? g->inputs[i] : g->outputs[i - g->ninputs];
        bool ok = n->rank >= 1 && lone_sym(n->shape[0], g->nsyms) == rs;
        for (int d = 1; ok && d < n->rank; d++)
            ok = n->shape[d].k[rs] == 0 && (g->cache_sym < 0 || n->shape[d].k[g->cache_sym] == 0);
        if (!ok) {
            diag_plain_error("--split: '%s' is not [%s, ...] with %s in its first dim only",
                             n->name, g->sym_names[rs], g->sym_names[rs]);
            return false;
        }
    }
    if (split > syms[rs]) {
        diag_plain_error("--split %lld: there are only %lld rows (%s = %lld)", (long long)split,
                         (long long)syms[rs], g->sym_names[rs], (long long)syms[rs]);
        return false;
    }
    return true;
}

/* ---- reading safetensors ---------------------------------------------------- */

/* A tensor's values as doubles (the data may sit at any alignment); a
 * bf16, f16, q8_0 or q4_0 tensor's exactly (dt_load_row, row by row). */
static double *to_double(const fr_tensor *t)
{
    int dt = dt_from_fr(t->dtype);
    if (dt >= 0 && (dt_info((DType)dt)->kind == DK_HALF || dt_info((DType)dt)->kind == DK_QUANT)) {
        int64_t cols = t->rank ? t->shape[t->rank - 1] : 1, rows = 1;
        for (int d = 0; d + 1 < t->rank; d++)
            rows *= t->shape[d];
        double *v = fu_alloc(sizeof(double) * (size_t)(rows * cols > 0 ? rows * cols : 1));
        size_t unit = dt_info((DType)dt)->kind == DK_HALF ? 2 : 1;
        for (int64_t r = 0; r < rows; r++)
            dt_load_row((DType)dt, (const unsigned char *)t->data + (size_t)(r * dt_row_units((DType)dt, cols)) * unit,
                        cols, v + r * cols);
        return v;
    }
    size_t es = fr_dtype_size(t->dtype), n = es ? t->nbytes / es : 0;
    double *v = fu_alloc(sizeof(double) * (n ? n : 1));
    const unsigned char *p = t->data;
    for (size_t i = 0; i < n; i++, p += es) {
        float f;
        int32_t i32;
        int64_t i64;
        switch (t->dtype) {
        case FR_F32: memcpy(&f, p, 4); v[i] = f; break;
        case FR_F64: memcpy(&v[i], p, 8); break;
        case FR_I32: memcpy(&i32, p, 4); v[i] = i32; break;
        case FR_I64: memcpy(&i64, p, 8); v[i] = (double)i64; break;
        default: FU_UNREACHABLE();
        }
    }
    return v;
}

/* Looks up `name` in f (opened from `path`) and checks it is a tensor of
 * node n's shape at syms; `exact` demands n's dtype, else any of F32, F64,
 * I32, I64 will do (reference outputs).  NULL after reporting. */
static const fr_tensor *find_tensor(const fr_st *f, const char *path, const char *name,
                                    const Node *n, const int64_t *syms, bool exact)
{
    int64_t shape[FU_MAX_RANK];
    const fr_tensor *t = fr_st_find(f, name);
    if (!t) {
        diag_plain_error("%s: no tensor '%s' (the block's %s '%s')", path, name,
                         op_info[n->op].name, n->name);
        return NULL;
    }
    if (exact ? t->dtype != fr_type(n->dtype)
              : !(t->dtype == FR_F32 || t->dtype == FR_F64 || t->dtype == FR_I32 ||
                  t->dtype == FR_I64)) {
        int have = dt_from_fr(t->dtype);
        bool typed = n->op == OP_WEIGHT && have >= 0 && have != DT_I32;
        diag_plain_error("%s: tensor '%s' has dtype %s, expected %s%s", path, name,
                         fr_dtype_name(t->dtype), fr_dtype_name(fr_type(n->dtype)),
                         typed ? fu_format(" (to read it as stored: --weight-type '%s=%s', docs/quantization.md)",
                                           n->name, dtype_name((DType)have))
                               : "");
        return NULL;
    }
    if (eval_shape(n, syms, shape) < 0)
        return NULL;
    if (t->rank != n->rank || memcmp(t->shape, shape, sizeof(int64_t) * (size_t)n->rank)) {
        diag_plain_error("%s: tensor '%s' has shape %s, block expects %s", path, name,
                         shape_text(t->rank, t->shape), shape_text(n->rank, shape));
        return NULL;
    }
    return t;
}

/* The symbols, from the extents of the golden inputs: every input dim that
 * is a lone symbol binds it, and they must agree.  The cache symbol is 0:
 * nothing is cached before the first call. */
static bool infer_syms(const Graph *g, const fr_st *f, const char *path, int64_t *syms)
{
    for (int s = 0; s < FU_MAX_SYMS; s++)
        syms[s] = -1;
    for (int i = 0; i < g->ninputs; i++) {
        const Node *n = g->inputs[i];
        const char *name = fu_format("in.%s", n->name);
        const fr_tensor *t = fr_st_find(f, name);
        if (!t) {
            diag_plain_error("%s: no tensor '%s' (the block's input '%s')", path, name, n->name);
            return false;
        }
        if (t->rank != n->rank) {
            diag_plain_error("%s: tensor '%s' has rank %d, the block's input has rank %d", path,
                             name, t->rank, n->rank);
            return false;
        }
        for (int d = 0; d < n->rank; d++) {
            int s = lone_sym(n->shape[d], g->nsyms);
            if (s < 0)
                continue;
            if (syms[s] < 0) {
                syms[s] = t->shape[d];
            } else if (syms[s] != t->shape[d]) {
                diag_plain_error("%s: tensor '%s' dim %d gives %s = %lld, an earlier input gave %lld",
                                 path, name, d, g->sym_names[s], (long long)t->shape[d],
                                 (long long)syms[s]);
                return false;
            }
        }
    }
    if (g->cache_sym >= 0 && syms[g->cache_sym] < 0)
        syms[g->cache_sym] = 0;
    for (int s = 0; s < g->nsyms; s++)
        if (syms[s] < 0) {
            diag_plain_error("%s: cannot tell the value of '%s': no input has it as a whole dim",
                             path, g->sym_names[s]);
            return false;
        }
    return true;
}

/* A golden file or a checkpoint may hold more weights than the block uses
 * (a whole model, a layer with parts the block leaves out): unused w.*
 * tensors are ignored, with a note naming them.  A misspelt weight name
 * still fails, as the weight the block needs is then missing.  An in.*
 * tensor the block does not declare is an error: a check's inputs are made
 * for one block, so it means the file and the block disagree. */
static bool no_extras(const Graph *g, const fr_st *f, const char *path)
{
    bool ok = true;
    int unused = 0;
    Buf names = {0};
    for (int i = 0; i < f->ntensors; i++) {
        const char *name = f->tensors[i].name;
        bool w = strncmp(name, "w.", 2) == 0;
        if (!w && strncmp(name, "in.", 3) != 0)
            continue;
        Node *const *list = w ? g->weights : g->inputs;
        int n = w ? g->nweights : g->ninputs;
        bool found = false;
        for (int j = 0; j < n && !found; j++)
            found = strcmp(list[j]->name, name + (w ? 2 : 3)) == 0;
        if (found)
            continue;
        if (w) {
            if (unused++ < 4)
                buf_printf(&names, "%s'%s'", unused > 1 ? ", " : "", name);
            continue;
        }
        diag_plain_error("%s: tensor '%s' is not an input of block '%s'", path, name, g->name);
        ok = false;
    }
    if (unused) {
        SrcLoc none = {0};
        diag_note(none, "%s: %d weight%s not used by block '%s', ignored: %s%s", path, unused,
                  unused > 1 ? "s" : "", g->name, names.data, unused > 4 ? ", ..." : "");
    }
    free(names.data);
    return ok;
}

/* Loads weights, inputs and reference outputs of a golden file; every
 * missing or misshapen tensor is reported before giving up. */
static bool load_golden(const Graph *g, const fr_st *f, const char *path, Data *d)
{
    bool ok = no_extras(g, f, path);
    if (!infer_syms(g, f, path, d->syms))
        return false;
    int rs = row_sym(g);
    if (rs >= 0 && d->syms[rs] < 1) {
        diag_plain_error("%s: the inputs give %s = 0: a block runs on at least one token", path,
                         g->sym_names[rs]);
        return false;
    }
    d->inputs = fu_alloc(sizeof(double *) * (size_t)(g->ninputs + 1));
    d->weights = fu_alloc(sizeof(double *) * (size_t)(g->nweights + 1));
    d->expect = fu_alloc(sizeof(double *) * (size_t)(g->noutputs + 1));
    for (int i = 0; i < g->ninputs; i++) {
        const fr_tensor *t = find_tensor(f, path, fu_format("in.%s", g->inputs[i]->name),
                                         g->inputs[i], d->syms, true);
        if (t)
            d->inputs[i] = to_double(t);
        ok = ok && t;
    }
    for (int i = 0; i < g->nweights; i++) {
        const fr_tensor *t = find_tensor(f, path, fu_format("w.%s", g->weights[i]->name),
                                         g->weights[i], d->syms, true);
        if (t)
            d->weights[i] = to_double(t);
        ok = ok && t;
    }
    for (int i = 0; i < g->noutputs; i++) {
        const Node *n = g->outputs[i];
        const char *name = fu_format("out64.%s", n->name);
        if (!fr_st_find(f, name))
            name = fu_format("out.%s", n->name);
        if (!fr_st_find(f, name)) {
            diag_plain_error("%s: no reference output 'out64.%s' or 'out.%s'", path, n->name,
                             n->name);
            ok = false;
            continue;
        }
        const fr_tensor *t = find_tensor(f, path, name, n, d->syms, false);
        if (t)
            d->expect[i] = to_double(t);
        ok = ok && t;
    }
    return ok;
}

/* ---- random data ------------------------------------------------------------- */

/* splitmix64: tiny, deterministic on every platform, good enough for test data. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Roughly N(0, 1): the sum of four uniforms, centred and scaled to unit
 * variance.  Bounded (|x| < 3.5), so no outlier makes a test flaky. */
static double rng_normalish(void)
{
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (s - 2.0) * sqrt(3.0);
}

/* Mean and spread for a random weight, from how the block uses it, so that
 * activations stay of order 1 through a whole layer: matrices scaled by
 * 1/sqrt(fan_in), norm weights around 1, biases small. */
static void weight_law(const Graph *g, const Node *w, const int64_t *syms, double *mean,
                       double *spread)
{
    int64_t last = w->rank ? dim_eval(w->shape[w->rank - 1], syms) : 1;
    *mean = 0;
    *spread = w->rank >= 2 ? 1 / sqrt((double)(last > 0 ? last : 1)) : 0.1;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            if (n->in[j] != w)
                continue;
            int64_t fan_in = 0;
            if (n->op == OP_LINEAR && j == 1 && w->rank == 2)
                fan_in = dim_eval(w->shape[n->i[0] == 0 ? 1 : 0], syms);
            else if (n->op == OP_MATMUL && j == 1 && w->rank >= 2)
                fan_in = dim_eval(w->shape[w->rank - (n->i[0] ? 1 : 2)], syms);
            else if (n->op == OP_MATMUL && j == 0)
                fan_in = dim_eval(w->shape[w->rank - 1], syms);
            else if ((n->op == OP_RMS_NORM || n->op == OP_LAYER_NORM) && j == 1)
                *mean = 1;
            else if (n->op == OP_MUL && w->rank == 1)
                *mean = 1;      /* a norm written from primitives: x * rsqrt(...) * w */
            if (fan_in > 0)
                *spread = 1 / sqrt((double)fan_in);
            return;
        }
    }
}

/* --special: replaces a share of the values of one f32 input (numel
 * floats, rows of `row` of them) by special ones, from a generator of its
 * own, so the ordinary values are the same with and without --special.
 * Each element becomes, with probability rate, one of the element kinds
 * asked for (NaN, +-inf, +-[2^62, 2^63) whose squares still fit float but
 * whose sums of squares do not, a denormal); each row, with probability
 * rate, one of the row kinds (scaled by 2^66, so x * x overflows; by
 * 2^-140, into the denormals; shifted by 1e6, where a one-pass variance
 * cancels).  The stream depends on the seed and the input's index only. */
static void draw_special(const CheckArgs *a, int input, float *x, int64_t numel, int64_t row)
{
    unsigned el = a->special & ~SP_ROWS, rows = a->special & SP_ROWS;
    uint64_t saved = rng_state;
    int kinds[SP_COUNT], nel = 0, nrow = 0, rk[SP_COUNT];
    for (int k = 0; k < SP_COUNT; k++) {
        if (el & (1u << k))
            kinds[nel++] = k;
        if (rows & (1u << k))
            rk[nrow++] = k;
    }
    rng_state = a->seed * 0x2545f4914f6cdd1dULL + (uint64_t)input * 0x9e3779b97f4a7c15ULL + 1;
#define UNIT() ((double)(rng_next() >> 11) * (1.0 / 9007199254740992.0))
    for (int64_t r0 = 0; nrow && row > 0 && r0 < numel; r0 += row) {
        if (UNIT() >= a->special_rate)
            continue;
        int k = rk[rng_next() % (uint64_t)nrow];
        for (int64_t e = r0; e < r0 + row && e < numel; e++)
            x[e] = k == SP_BIGROW ? x[e] * 0x1p66f : k == SP_TINYROW ? x[e] * 0x1p-140f : x[e] + 1e6f;
    }
    for (int64_t e = 0; nel && e < numel; e++) {
        if (UNIT() >= a->special_rate)
            continue;
        int k = kinds[rng_next() % (uint64_t)nel];
        float sign = rng_next() & 1 ? -1.0f : 1.0f;
        switch (k) {
        case SP_NAN: x[e] = NAN; break;
        case SP_INF: x[e] = sign * INFINITY; break;
        case SP_HUGE: x[e] = sign * (float)ldexp(1.0 + UNIT(), 62); break;
        default: x[e] = sign * (float)ldexp((double)(1 + rng_next() % 0x7fffff), -149); break;
        }
    }
#undef UNIT
    rng_state = saved;
}

/* Random weights and inputs (float32 values, so the generated C and the
 * interpreter see the same numbers), written to the harness's input file. */
/* For an i32 input that embedding, gather, moe_up or moe_down read as ids (through reshapes):
 * the fewest rows any of them indexes, so random ids stay in range; 2 (0/1)
 * for an attention mask; 0 when none does. */
static int64_t ids_range(const Graph *g, const Node *in)
{
    int64_t range = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->op == OP_ATTENTION && n->nin == 4 && n->in[3] == in)
            return 2;   /* an attention mask: 0 or 1 */
        bool moe = n->op == OP_MOE_UP || n->op == OP_MOE_DOWN;
        if ((n->op != OP_EMBEDDING && n->op != OP_GATHER && !moe) || n->nin < 2)
            continue;
        const Node *ids = n->in[1];
        while (ids->op == OP_RESHAPE)
            ids = ids->in[0];
        const Node *x = n->in[moe ? 2 : 0];
        Dim rows = x->shape[n->op == OP_GATHER ? x->rank - 1 : 0];
        if (ids == in && dim_is_const(rows) && (range == 0 || rows.c < range))
            range = rows.c;
    }
    return range;
}

static bool make_random(const Graph *g, const CheckArgs *a, Data *d)
{
    fr_err err;
    bool ok = true;
    rng_state = a->seed;
    for (int s = 0; s < FU_MAX_SYMS; s++)
        d->syms[s] = s == g->cache_sym ? 0 : 7;
    for (int k = 0; k < a->ndims; k++) {
        int s = ir_find_sym(g, a->dim_names[k]);
        if (s < 0) {
            diag_plain_error("--dim %s: block '%s' has no symbolic dim '%s'", a->dim_names[k],
                             g->name, a->dim_names[k]);
            return false;
        }
        if (s == g->cache_sym && a->dim_values[k] != 0) {
            diag_plain_error("--dim %s: the cache starts empty, so '%s' must be 0",
                             a->dim_names[k], a->dim_names[k]);
            return false;
        }
        d->syms[s] = a->dim_values[k];
    }
    int rs = row_sym(g);
    if (rs >= 0 && d->syms[rs] < 1) {
        diag_plain_error("--dim %s=0: a block runs on at least one token", g->sym_names[rs]);
        return false;
    }
    fr_st_writer *w = fr_stw_new();
    if (!w) {
        diag_plain_error("out of memory"); // GCOVR_EXCL_LINE: out of memory
        return false;
    }
    d->inputs = fu_alloc(sizeof(double *) * (size_t)(g->ninputs + 1));
    d->weights = fu_alloc(sizeof(double *) * (size_t)(g->nweights + 1));
    for (int i = 0; i < g->nweights + g->ninputs && ok; i++) {
        bool is_w = i < g->nweights;
        const Node *n = is_w ? g->weights[i] : g->inputs[i - g->nweights];
        int64_t shape[FU_MAX_RANK];
        int64_t numel = eval_shape(n, d->syms, shape), row = 1;
        if (numel < 0) {
            ok = false;
            break;
        }
        double *v = fu_alloc(sizeof(double) * (size_t)(numel ? numel : 1));
        void *raw = fu_alloc(4 * (size_t)(numel ? numel : 1)), *stored = raw;
        double mean = 0, spread = 1;
        int64_t id_range = is_w ? 0 : ids_range(g, n);
        if (is_w)
            weight_law(g, n, d->syms, &mean, &spread);
        if (n->rank > 0 && shape[0] > 0)
            row = numel / shape[0];
        for (int64_t e = 0; e < numel; e++) {
            if (n->dtype == DT_I32) {
                /* ids of an embedding or gather: uniform over the rows they
                 * index; else position ids: the row index after the P0 = 0
                 * cached rows */
                int32_t x = id_range ? (int32_t)(rng_next() % (uint64_t)id_range) : (int32_t)(row ? e / row : 0);
                memcpy((char *)raw + 4 * e, &x, 4);
                v[e] = x;
            } else {
                float x = (float)(mean + spread * rng_normalish());
                memcpy((char *)raw + 4 * e, &x, 4);
                v[e] = x;
            }
        }
        if (dt_info(n->dtype)->kind == DK_HALF || dt_info(n->dtype)->kind == DK_QUANT) {
            /* a typed weight: stored as its type, and the interpreter gets
             * exactly the stored values */
            int64_t cols = n->rank ? shape[n->rank - 1] : 1, rows = cols ? numel / cols : 0;
            size_t unit = dt_info(n->dtype)->kind == DK_HALF ? 2 : 1, ru = (size_t)dt_row_units(n->dtype, cols) * unit;
            stored = fu_alloc(ru * (size_t)(rows ? rows : 1));
            for (int64_t r = 0; r < rows; r++) {
                if (dt_store_row(n->dtype, (const float *)raw + r * cols, cols, (char *)stored + ru * (size_t)r) >= 0) {
                    diag_plain_error("weight '%s': a random value cannot be stored as %s", n->name,
                                     dtype_name(n->dtype));
                    return false;
                }
                dt_load_row(n->dtype, (const char *)stored + ru * (size_t)r, cols, v + r * cols);
            }
        }
        if (a->special && !is_w && n->dtype == DT_F32) {
            int64_t last = n->rank ? shape[n->rank - 1] : 1;
            draw_special(a, i - g->nweights, raw, numel, last);
            for (int64_t e = 0; e < numel; e++) {
                float x;
                memcpy(&x, (char *)raw + 4 * e, 4);
                v[e] = x;
            }
        }
        if (is_w)
            d->weights[i] = v;
        else
            d->inputs[i - g->nweights] = v;
        if (fr_stw_add(w, fu_format("%s.%s", is_w ? "w" : "in", n->name), fr_type(n->dtype),
                       n->rank, shape, stored, &err)) {
            diag_plain_error("%s", err.msg);
            ok = false;
        }
    }
    d->in_path = tmp_path("in.safetensors");
    if (ok && fr_stw_write(w, d->in_path, &err)) {
        diag_plain_error("%s", err.msg);
        ok = false;
    }
    fr_stw_free(w);
    return ok;
}

/* ---- the interpreter ------------------------------------------------------------ */

/* Runs the float64 interpreter on d's data into outs (allocated here), all
 * rows at once or, with split, like the harness: rows [0, split) then one
 * at a time, so both paths exercise the same cache protocol. */
static bool run_interp(const Graph *g, const Data *d, int64_t split, double ***outs)
{
    int rs = row_sym(g);
    int64_t rows = rs >= 0 ? d->syms[rs] : 0, capacity = rows > 0 ? rows : 1;
    double **out = fu_alloc(sizeof(double *) * (size_t)(g->noutputs + 1));
    double **caches = fu_alloc(sizeof(double *) * (size_t)(g->ncaches + 1));
    const double **in_call = fu_alloc(sizeof(double *) * (size_t)(g->ninputs + 1));
    double **out_call = fu_alloc(sizeof(double *) * (size_t)(g->noutputs + 1));
    char err[512];

    if (g->ncaches && rs < 0) {
        diag_plain_error("block '%s' has caches but no token symbol to size them by", g->name);
        return false;
    }
    if (split && !split_ok(g, rs, d->syms, split))
        return false;
    if (!split || split > rows)
        split = rows;
    for (int i = 0; i < g->noutputs; i++) {
        int64_t shape[FU_MAX_RANK], n = eval_shape(g->outputs[i], d->syms, shape);
        if (n < 0)
            return false;
        out[i] = fu_alloc(sizeof(double) * (size_t)(n ? n : 1));
    }
    for (int i = 0; i < g->ncaches; i++) {
        int64_t re = row_elems(g->caches[i], d->syms);
        if (re < 0 || (re && capacity > MAX_ELEMS / re)) {
            diag_plain_error("cache '%s' is too large", g->caches[i]->name);
            return false;
        }
        caches[i] = fu_alloc(sizeof(double) * (size_t)(capacity * re > 0 ? capacity * re : 1));
    }
    int ncalls = rs < 0 || split >= rows ? 1 : (int)(1 + rows - split);
    for (int call = 0; call < ncalls; call++) {
        int64_t syms[FU_MAX_SYMS], r0 = call == 0 ? 0 : split + call - 1;
        memcpy(syms, d->syms, sizeof syms);
        if (rs >= 0) {
            syms[rs] = call == 0 ? split : 1;
            if (g->cache_sym >= 0)
                syms[g->cache_sym] = r0;
        }
        for (int i = 0; i < g->ninputs; i++)
            in_call[i] = d->inputs[i] + (rs >= 0 ? r0 * row_elems(g->inputs[i], d->syms) : 0);
        for (int i = 0; i < g->noutputs; i++)
            out_call[i] = out[i] + (rs >= 0 ? r0 * row_elems(g->outputs[i], d->syms) : 0);
        InterpArgs ia = {syms, in_call, (const double *const *)d->weights, caches, capacity,
                         out_call};
        if (interp_run(g, &ia, err, sizeof err) != 0) {
            diag_plain_error("interpreter: %s", err);
            return false;
        }
    }
    *outs = out;
    return true;
}

/* ---- building and running the harness ----------------------------------------- */

/* Appends the words of a space-separated string (CC, a target's cflags). */
static void push_words(const char ***argv, int *n, const char *s)
{
    while (s && *s) {
        while (*s == ' ' || *s == '\t')
            s++;
        const char *e = s;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        if (e > s)
            (*argv)[(*n)++] = fu_strndup(s, (size_t)(e - s));
        s = e;
    }
}

/* Runs argv with stdout and stderr going to log_path (fork + execvp: no
 * shell, so no path is ever re-parsed).  Returns the exit status, 128 + the
 * signal for a killed child, or -1 when it could not be started. */
static int run_cmd(const char *const *argv, const char *log_path, bool verbose)
{
    if (verbose) {
        fprintf(stderr, "+");
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "\n");
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        diag_plain_error("cannot start '%s': %s", argv[0], strerror(errno)); // GCOVR_EXCL_LINE: fork fails only out of processes
        return -1; // GCOVR_EXCL_LINE: fork fails only out of processes
    }
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
            _exit(126); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
        close(fd); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
        execvp(argv[0], (char *const *)argv); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
        fprintf(stderr, "cannot run '%s': %s\n", argv[0], strerror(errno)); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
        _exit(127); // GCOVR_EXCL_LINE: the child execs or _exits: gcov never writes its counts
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            diag_plain_error("waiting for '%s': %s", argv[0], strerror(errno)); // GCOVR_EXCL_LINE: waitpid on our own child fails only with EINTR
            return -1; // GCOVR_EXCL_LINE: waitpid on our own child fails only with EINTR
        }
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void print_log(const char *path)
{
    size_t len;
    char *text = fu_read_file(path, &len);
    if (text && len)
        fwrite(text, 1, len, stderr);
}

static bool write_block(const Graph *g, const Target *t)
{
    const char *cpath = tmp_path("block.c"), *hpath = tmp_path("block.h");
    FILE *c = fopen(cpath, "w"), *h = fopen(hpath, "w");
    bool ok = c && h;
    if (!ok)
        diag_plain_error("cannot write '%s': %s", c ? hpath : cpath, strerror(errno));
    else
        ok = emit_c(g, t, c, h, "block.h") == 0;
    if (c && fclose(c) != 0 && ok) {
        diag_plain_error("cannot write '%s': %s", cpath, strerror(errno));
        ok = false;
    }
    if (h && fclose(h) != 0 && ok) {
        diag_plain_error("cannot write '%s': %s", hpath, strerror(errno));
        ok = false;
    }
    return ok;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* Where the runtime's headers, sources and harness (*rt) and libfusec_rt.a
 * (*lib, a directory) are: FUSEC_RUNTIME_DIR and FUSEC_LIB_DIR when set;
 * else beside the running fusec (/proc/self/exe, links resolved), as
 * `make install` lays them out (PREFIX/bin/fusec, PREFIX/share/fusec/runtime,
 * PREFIX/lib) or as a build tree has them (BUILD/fusec, BUILD/libfusec_rt.a,
 * BUILD/../runtime), so a moved prefix or checkout still works; else the
 * build tree fusec was compiled in. */
static void runtime_dirs(const char **rt, const char **lib)
{
    static const char *const layouts[][2] = {
        {"/../share/fusec/runtime", "/../lib"}, /* installed */
        {"/../runtime", ""},                    /* a build tree */
    };
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    *rt = FUSEC_RUNTIME_DIR;
    *lib = FUSEC_LIB_DIR;
    if (n > 0 && (size_t)n < sizeof exe - 1) {
        exe[n] = '\0';
        const char *dir = fu_strndup(exe, (size_t)(strrchr(exe, '/') - exe));
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
            const char *r = fu_format("%s%s", dir, layouts[i][0]);
            const char *l = fu_format("%s%s", dir, layouts[i][1]);
            if (access(fu_format("%s/harness/check_main.c", r), R_OK) == 0 &&
                access(fu_format("%s/libfusec_rt.a", l), R_OK) == 0) {
                *rt = r;
                *lib = l;
                break;
            }
        }
    }
    *rt = env_or("FUSEC_RUNTIME_DIR", *rt);
    *lib = env_or("FUSEC_LIB_DIR", *lib);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted names of the files in dir ending in `ext` (".c", ".h"), as
 * dir/NAME; -1 when dir cannot be read. */
static int list_files(const char *dir, const char *ext, const char **out, int max)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t el = strlen(ext);
    int ns = 0;
    if (!d)
        return -1;
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        if (len > el && strcmp(ent->d_name + len - el, ext) == 0 && ns < max)
            out[ns++] = fu_format("%s/%s", dir, ent->d_name);
    }
    closedir(d);
    qsort(out, (size_t)ns, sizeof out[0], cmp_str);
    return ns;
}

#define MAX_RT_FILES 64

/* Appends rt's *.c (sorted) for a cross build; false when it cannot be read. */
static bool push_runtime_sources(const char ***argv, int *n, const char *rt)
{
    const char *src[MAX_RT_FILES];
    int ns = list_files(rt, ".c", src, MAX_RT_FILES);
    if (ns < 0) {
        diag_plain_error("cannot read the runtime sources in '%s': %s", rt, strerror(errno));
        return false;
    }
    for (int i = 0; i < ns; i++)
        (*argv)[(*n)++] = src[i];
    return ns > 0;
}

/* ---- the build cache ------------------------------------------------------------ */

/* Compiling the generated C dominates a check (seconds of cc against
 * milliseconds of running), and many checks build the same program: T,
 * --split, --seed and the data do not change the C.  So a harness that
 * compiled is kept in the cache directory under a hash of everything that
 * went into it: the compile command (the words of CC, the flags, the target's
 * flags, the block's name) and the contents of block.c, block.h, the
 * harness, every runtime source and header, and libfusec_rt.a.  A cross
 * build (--cc) keeps the runtime's objects, compiled once per compiler and
 * runtime, in the same way.
 *
 * Writers build into a temporary name in the cache and rename(2) it into
 * place, so a concurrent reader sees a whole file or none; a reader that
 * loses an entry to pruning just builds it again.  Only builds that
 * succeeded are kept.  What the key does not see: the compiler binary
 * itself and files CC names (-include x.h): clear the cache after changing
 * those in place.  docs/check.md, "The build cache". */

#define CACHE_MAX_DEFAULT 256         /* entries kept; the least recently used go first */

typedef struct Hash {
    uint64_t a, b;                    /* two independent 64-bit lanes: a 128-bit key */
} Hash;

static void hash_bytes(Hash *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ULL;                 /* FNV-1a */
        h->b = (h->b + p[i] + 1) * 0x9e3779b97f4a7c15ULL;        /* multiply-xorshift */
        h->b ^= h->b >> 29;
    }
}

/* Hashes s with its length, so that "ab","c" and "a","bc" differ. */
static void hash_str(Hash *h, const char *s)
{
    uint64_t n = strlen(s);
    hash_bytes(h, &n, sizeof n);
    hash_bytes(h, s, (size_t)n);
}

/* Hashes a file's contents (streamed); false when it cannot be read. */
static bool hash_contents(Hash *h, const char *path)
{
    FILE *f = fopen(path, "rb");
    char buf[65536];
    size_t n;
    if (!f)
        return false;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        hash_bytes(h, buf, n);
    bool ok = !ferror(f);
    fclose(f);
    return ok;
}

/* Hashes a file's name and contents, then a separator; false when it
 * cannot be read. */
static bool hash_file(Hash *h, const char *path)
{
    hash_str(h, path);
    if (!hash_contents(h, path))
        return false;
    hash_str(h, "\n--\n");
    return true;
}

/* Hashes every *.c and *.h in dir (sorted); false when one cannot be read. */
static bool hash_sources(Hash *h, const char *dir)
{
    const char *f[MAX_RT_FILES];
    for (int e = 0; e < 2; e++) {
        int nf = list_files(dir, e ? ".h" : ".c", f, MAX_RT_FILES);
        if (nf < 0)
            return false;
        for (int i = 0; i < nf; i++)
            if (!hash_file(h, f[i]))
                return false;
    }
    return true;
}

static const char *hash_hex(const Hash *h)
{
    return fu_format("%016llx%016llx", (unsigned long long)h->a, (unsigned long long)h->b);
}

/* mkdir -p; true when path is a directory afterwards. */
static bool make_dirs(const char *path)
{
    struct stat st;
    char *p = fu_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0777);
        *s = '/';
    }
    mkdir(p, 0777);
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The cache directory: $FUSEC_CHECK_CACHE, else $XDG_CACHE_HOME/fusec/check,
 * else $HOME/.cache/fusec/check; NULL (no cache) when FUSEC_CHECK_CACHE is
 * "off" or the directory cannot be made. */
static const char *cache_dir(bool verbose)
{
    const char *dir = getenv("FUSEC_CHECK_CACHE"), *base;
    if (dir && (!strcmp(dir, "off") || !strcmp(dir, "0") || !*dir))
        return NULL;
    if (!dir && (base = getenv("XDG_CACHE_HOME")) && *base == '/')
        dir = fu_format("%s/fusec/check", base);
    if (!dir && (base = getenv("HOME")) && *base)
        dir = fu_format("%s/.cache/fusec/check", base);
    if (!dir)
        return NULL;
    if (!make_dirs(dir)) {
        if (verbose)
            fprintf(stderr, "check: cannot use the cache '%s' (%s): building without it\n", dir,
                    strerror(errno));
        return NULL;
    }
    return dir;
}

/* Copies src to dst (mode 0755); false on any error. */
static bool copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    bool ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in && ferror(in))
        ok = false;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    if (ok && chmod(dst, 0755) != 0)
        ok = false;
    if (!ok && out)
        unlink(dst);
    return ok;
}

/* A cached harness into dst (a hard link, else a copy); false on a miss. */
static bool cache_fetch(const char *entry, const char *dst)
{
    unlink(dst);
    if (link(entry, dst) != 0 && !copy_file(entry, dst))
        return false;
    utime(entry, NULL);               /* recently used: pruned last */
    return true;
}

/* Least recently used entries ("h-*" files, "rt-*" directories) beyond
 * FUSEC_CHECK_CACHE_MAX (default 256) are removed. */
typedef struct CacheEntry {
    const char *path;
    time_t mtime;
    bool dir;
} CacheEntry;

static int cmp_entry_age(const void *x, const void *y)
{
    const CacheEntry *a = x, *b = y;
    return (a->mtime > b->mtime) - (a->mtime < b->mtime);
}

static void remove_tree(const char *path, bool dir)
{
    if (dir) {
        const char *f[MAX_RT_FILES];
        int nf = list_files(path, "", f, MAX_RT_FILES);
        for (int i = 0; i < nf; i++)
            unlink(f[i]);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void cache_prune(const char *cache)
{
    int64_t max = CACHE_MAX_DEFAULT;
    const char *env = getenv("FUSEC_CHECK_CACHE_MAX");
    if (env && *env && !parse_i64(env, 1, INT32_MAX, &max))
        max = CACHE_MAX_DEFAULT;
    DIR *d = opendir(cache);
    if (!d)
        return;
    CacheEntry *e = NULL;
    size_t ne = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        struct stat st;
        bool h = strncmp(ent->d_name, "h-", 2) == 0, r = strncmp(ent->d_name, "rt-", 3) == 0;
        const char *path = fu_format("%s/%s", cache, ent->d_name);
        if ((!h && !r) || stat(path, &st) != 0)
            continue;
        if (ne == cap) {
            cap = cap ? 2 * cap : 64;
            CacheEntry *grown = fu_alloc(sizeof *e * cap);
            if (ne)
                memcpy(grown, e, sizeof *e * ne);
            e = grown;
        }
        e[ne++] = (CacheEntry){path, st.st_mtime, r};
    }
    closedir(d);
    if ((int64_t)ne <= max)
        return;
    qsort(e, ne, sizeof *e, cmp_entry_age);
    for (size_t i = 0; i < ne - (size_t)max; i++)
        remove_tree(e[i].path, e[i].dir);
}

/* Puts file src into the cache as entry (write a temporary name, rename). */
static void cache_store(const char *cache, const char *src, const char *entry, bool verbose)
{
    char *tmp = fu_format("%s/.tmp-XXXXXX", cache);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return;
    close(fd);
    if (copy_file(src, tmp) && rename(tmp, entry) == 0) {
        if (verbose)
            fprintf(stderr, "check: cached the harness as %s\n", entry);
        cache_prune(cache);
        return;
    }
    unlink(tmp);
}

/* For a cross build with a cache: the runtime's objects, compiled with
 * cflags (the words of the compile command before its sources) once per
 * compiler, flags and runtime, into cache/rt-KEY/.  Appends them to argv.
 * Returns an exit status, or -1 when it worked. */
static int push_runtime_objects(const char ***argv, int *n, const char *const *cflags, int nflags,
                                const char *rt, const char *cache, bool verbose)
{
    const char *src[MAX_RT_FILES];
    int ns = list_files(rt, ".c", src, MAX_RT_FILES);
    if (ns <= 0) {
        diag_plain_error("cannot read the runtime sources in '%s': %s", rt,
                         ns < 0 ? strerror(errno) : "no .c files");
        return EXIT_FAIL;
    }
    Hash h = {0xcbf29ce484222325ULL, 0x2545f4914f6cdd1dULL};
    hash_str(&h, "fusec check runtime objects v1");
    for (int i = 0; i < nflags; i++)
        hash_str(&h, cflags[i]);
    if (!hash_sources(&h, rt)) {
        diag_plain_error("cannot read the runtime sources in '%s': %s", rt, strerror(errno));
        return EXIT_FAIL;
    }
    const char *dir = fu_format("%s/rt-%s", cache, hash_hex(&h));
    struct stat st;
    if (stat(dir, &st) != 0) {
        char *tmp = fu_format("%s/.tmp-rt-XXXXXX", cache);
        if (!mkdtemp(tmp)) {
            diag_plain_error("cannot create a directory in '%s': %s", cache, strerror(errno));
            return EXIT_FAIL;
        }
        const char **cmd = fu_alloc(sizeof(char *) * (size_t)(nflags + 16));
        for (int i = 0; i < ns; i++) {
            int k = nflags;
            const char *base = strrchr(src[i], '/') + 1;
            memcpy(cmd, cflags, sizeof(char *) * (size_t)nflags);
            cmd[k++] = "-I";
            cmd[k++] = rt;
            cmd[k++] = "-D_POSIX_C_SOURCE=200809L";  /* what the Makefile defines */
            cmd[k++] = "-D_DEFAULT_SOURCE";
            cmd[k++] = "-c";
            cmd[k++] = src[i];
            cmd[k++] = "-o";
            cmd[k++] = fu_format("%s/%.*s.o", tmp, (int)(strlen(base) - 2), base);
            cmd[k] = NULL;
            int rc = run_cmd(cmd, tmp_path("cc.log"), verbose);
            if (rc != 0) {
                print_log(tmp_path("cc.log"));
                remove_tree(tmp, true);
                if (rc == 126 || rc == 127 || rc < 0) {
                    diag_plain_error("cannot run the C compiler '%s' (set CC or --cc)", cmd[0]);
                    return EXIT_FAIL;
                }
                fprintf(stderr, "fusec: internal error: the runtime's '%s' does not compile with "
                                "'%s' (exit %d, output above)\n", src[i], cmd[0], rc);
                return EXIT_INTERNAL;
            }
        }
        /* another check may have built the same objects meanwhile: keep theirs */
        if (rename(tmp, dir) != 0)
            remove_tree(tmp, true);
        else if (verbose)
            fprintf(stderr, "check: cached the runtime's objects in %s\n", dir);
    }
    utime(dir, NULL);
    for (int i = 0; i < ns; i++) {
        const char *base = strrchr(src[i], '/') + 1;
        (*argv)[(*n)++] = fu_format("%s/%.*s.o", dir, (int)(strlen(base) - 2), base);
    }
    return -1;
}

/* The cache entry of the harness that argv builds (its words but the
 * temporary paths, and the contents of what it compiles); NULL when a file
 * cannot be read (then nothing is cached). */
static const char *harness_entry(const char *cache, const char *const *argv, const char *rt,
                                 const char *lib, const char *harness_c)
{
    Hash h = {0xcbf29ce484222325ULL, 0x2545f4914f6cdd1dULL};
    const char *block_c = tmp_path("block.c"), *out = tmp_path("harness");
    hash_str(&h, "fusec check harness v1");
    for (int i = 0; argv[i]; i++)
        if (strcmp(argv[i], block_c) && strcmp(argv[i], out))
            hash_str(&h, argv[i]);
    /* block.c and block.h by contents only: their directory is temporary */
    for (int i = 0; i < 2; i++) {
        if (!hash_contents(&h, tmp_path(i ? "block.h" : "block.c")))
            return NULL;
        hash_str(&h, "\n--\n");
    }
    if (!hash_file(&h, harness_c) || !hash_sources(&h, rt) || (lib && !hash_file(&h, lib)))
        return NULL;
    return fu_format("%s/h-%s", cache, hash_hex(&h));
}

/* Compiles block.c with the harness and the runtime; generated C that does
 * not compile is fusec's bug (exit 70).  A harness built before from the
 * same files and command comes from the cache.  Returns an exit status or -1. */
static bool build_mpi;   /* check_set_mpi: fusec run --tp */

void check_set_mpi(bool on) { build_mpi = on; }

static int build_harness(const Graph *g, const Target *t, const char *harness, bool verbose)
{
    const char *rt, *lib;
    runtime_dirs(&rt, &lib);
    const char *comm = fu_format("%s/libfusec_comm.a", lib);
    lib = fu_format("%s/libfusec_rt.a", lib);
    const char *harness_c = fu_format("%s/harness/%s", rt, harness);
    const char *cc = cross_cc ? cross_cc : build_mpi ? env_or("MPICC", "mpicc") : env_or("CC", "cc");
    if (build_mpi && access(comm, R_OK) != 0) {
        diag_plain_error("'%s' not found: --tp needs MPI (apt-get install openmpi-bin libopenmpi-dev, then "
                         "make comm)", comm);
        return EXIT_FAIL;
    }
    const char **argv = fu_alloc(sizeof(char *) * (96 + MAX_RT_FILES + strlen(cc) +
                                                   strlen(t->cflags ? t->cflags : "")));
    const char *cache = cache_dir(verbose);
    int n = 0, rc;

    if (!cross_cc && access(lib, R_OK) != 0) {
        diag_plain_error("runtime library '%s' not found: run make, or set FUSEC_LIB_DIR", lib);
        return EXIT_FAIL;
    }
    if (access(harness_c, R_OK) != 0) {
        diag_plain_error("harness '%s' not found: set FUSEC_RUNTIME_DIR", harness_c);
        return EXIT_FAIL;
    }
    push_words(&argv, &n, cc);
    if (n == 0)
        push_words(&argv, &n, "cc");
    argv[n++] = "-std=c99";
    argv[n++] = "-O2";
    argv[n++] = "-Wall";
    argv[n++] = "-Wextra";
    argv[n++] = "-Werror";
    push_words(&argv, &n, t->cflags);
    if (FUSEC_SAN && !cross_cc) {
        /* the block under test gets the sanitizers fusec was built with;
         * undefined behaviour must stop the run, not just print */
        argv[n++] = "-g";
        argv[n++] = "-fno-omit-frame-pointer";
        argv[n++] = "-fsanitize=address,undefined";
        argv[n++] = "-fno-sanitize-recover=undefined";
    }
    int nflags = n;
    argv[n++] = "-I";
    argv[n++] = rt;
    argv[n++] = fu_format("-DFUSEC_BLOCK_DESC=%s_desc", g->name);
    if (build_mpi) {
        argv[n++] = fu_format("-I%s/mpi", rt);
        argv[n++] = "-DFUSEC_MPI";
    }
    argv[n++] = tmp_path("block.c");
    argv[n++] = harness_c;
    if (build_mpi)
        argv[n++] = comm;
    if (!cross_cc)
        argv[n++] = lib;
    else if (cache && (rc = push_runtime_objects(&argv, &n, argv, nflags, rt, cache, verbose)) >= 0)
        return rc;
    else if (!cache && !push_runtime_sources(&argv, &n, rt))
        return EXIT_FAIL;
    if (cross_cc) { /* the runtime's sources need what the Makefile defines */
        argv[n++] = "-D_POSIX_C_SOURCE=200809L";
        argv[n++] = "-D_DEFAULT_SOURCE";
    }
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n++] = "-o";
    argv[n++] = tmp_path("harness");
    argv[n] = NULL;
    const char *entry = cache ? harness_entry(cache, argv, rt, cross_cc ? NULL : lib, harness_c) : NULL;
    if (entry && build_mpi) { /* --tp: libfusec_comm.a too */
        Hash h = {0xcbf29ce484222325ULL, 0x2545f4914f6cdd1dULL};
        hash_str(&h, entry);
        entry = hash_file(&h, comm) ? fu_format("%s/h-%s", cache, hash_hex(&h)) : NULL;
    }
    if (entry && cache_fetch(entry, tmp_path("harness"))) {
        if (verbose)
            fprintf(stderr, "check: the harness from the cache: %s\n", entry);
        return -1;
    }
    rc = run_cmd(argv, tmp_path("cc.log"), verbose);
    if (rc == 0) {
        if (verbose)
            print_log(tmp_path("cc.log"));
        if (entry)
            cache_store(cache, tmp_path("harness"), entry, verbose);
        return -1;
    }
    print_log(tmp_path("cc.log"));
    if (rc == 126 || rc == 127 || rc < 0) {
        diag_plain_error("cannot run the C compiler '%s' (set CC)", argv[0]);
        return EXIT_FAIL;
    }
    fprintf(stderr, "fusec: internal error: the generated C for block '%s' does not compile "
                    "(%s exit %d, output above)\n", g->name, argv[0], rc);
    return EXIT_INTERNAL;
}

/* Appends ":exitcode=SAN_EXIT_CODE" to the sanitizer options variable
 * `name`, keeping whatever the user set (a later option wins). */
static void set_san_exitcode(const char *name) // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
{
    const char *old = getenv(name); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
    const char *v = old && *old ? fu_format("%s:exitcode=%d", old, SAN_EXIT_CODE) // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
                                : fu_format("exitcode=%d", SAN_EXIT_CODE); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
    setenv(name, v, 1); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
}

/* Runs the harness on in_path; returns an exit status or -1 when it worked. */
static int run_harness(const char *in_path, int64_t split, bool verbose)
{
    bool sanitized = FUSEC_SAN && !cross_cc;
    if (sanitized) {
        set_san_exitcode("ASAN_OPTIONS"); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
        set_san_exitcode("UBSAN_OPTIONS"); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
    }
    const char **argv = fu_alloc(sizeof(char *) * (8 + (run_with ? strlen(run_with) : 0)));
    int n = 0;
    push_words(&argv, &n, run_with);
    argv[n++] = tmp_path("harness");
    argv[n++] = in_path;
    argv[n++] = tmp_path("out.safetensors");
    if (split) {
        argv[n++] = "--split";
        argv[n++] = fu_format("%lld", (long long)split);
    }
    argv[n] = NULL;
    int rc = run_cmd(argv, tmp_path("harness.log"), verbose);
    if (rc == 0) {
        if (verbose)
            print_log(tmp_path("harness.log"));
        return -1;
    }
    print_log(tmp_path("harness.log"));
    if (rc > 128) {
        fprintf(stderr, "fusec: internal error: the generated block crashed (signal %d)\n",
                rc - 128);
        return EXIT_INTERNAL;
    }
    if (sanitized && rc == SAN_EXIT_CODE) {
        fprintf(stderr, "fusec: internal error: the generated block failed a sanitizer check\n"); // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
        return EXIT_INTERNAL; // GCOVR_EXCL_LINE: only a SAN=1 build (FUSEC_SAN) runs it
    }
    diag_plain_error("the harness failed (exit %d)", rc);
    return EXIT_FAIL;
}

/* The harness's outputs, as doubles, in g->outputs order. */
static bool read_outputs(const Graph *g, const Data *d, double ***outs)
{
    fr_st f;
    fr_err err;
    const char *path = tmp_path("out.safetensors");
    double **out = fu_alloc(sizeof(double *) * (size_t)(g->noutputs + 1));
    bool ok = true;
    if (fr_st_open(&f, path, &err)) {
        diag_plain_error("%s", err.msg);
        return false;
    }
    for (int i = 0; i < g->noutputs && ok; i++) {
        const fr_tensor *t = find_tensor(&f, path, fu_format("out.%s", g->outputs[i]->name),
                                         g->outputs[i], d->syms, true);
        if (t)
            out[i] = to_double(t);
        ok = t != NULL;
    }
    fr_st_close(&f);
    *outs = out;
    return ok;
}

/* ---- comparing ------------------------------------------------------------------ */

/* The NaN/Inf rule: a NaN of the reference must be a NaN of the result and
 * the other way round, an inf must be the same inf (the reference's values
 * beyond float's range count as inf: the result is float).  Returns how many
 * positions break it, and writes a note for the report ("" when the output
 * has no NaN or inf at all). */
static int64_t nonfinite_mismatches(const char *name, const double *got, const double *ref, int64_t numel,
                                    char *note, size_t len)
{
    int64_t bad = 0, first = -1, nonfinite = 0;
    for (int64_t i = 0; i < numel; i++) {
        double r = fabs(ref[i]) >= 0x1.ffffffp127 ? copysign(INFINITY, ref[i]) : ref[i];
        if (isfinite(r) && isfinite(got[i]))
            continue;
        nonfinite++;
        if (isnan(r) ? !isnan(got[i]) : got[i] != r) {
            if (bad++ == 0)
                first = i;
        }
    }
    note[0] = '\0';
    if (bad)
        snprintf(note, len, " (NaN/Inf at %lld of %lld places differ; first %s[%lld]: got %g, reference %g)",
                 (long long)bad, (long long)nonfinite, name, (long long)first, got[first], ref[first]);
    else if (nonfinite)
        snprintf(note, len, " (NaN/Inf at %lld places, all matching)", (long long)nonfinite);
    return bad;
}

/* Prints one output's errors; true when both are within tolerance:
 *
 *   rel_l2_err     R = ||got - ref||_2 / ||ref||_2          against rtol
 *   scaled_max_err M = max_i |got_i - ref_i| / max_i |ref_i|  against max_tol
 *
 * (each without its denominator when ref is all zeros).  R judges the whole
 * tensor and is not dominated by one element; M catches the one element that
 * R averages away (one element 3% off among 2^17 moves R by about 1e-4, M by
 * 3% of that element's size relative to the largest).  Both are taken over
 * the places where got and ref are finite; NaN and inf places must match
 * (nonfinite_mismatches). */
static bool compare(const Node *n, const int64_t *syms, const double *got, const double *ref,
                    double rtol, double max_tol)
{
    int64_t shape[FU_MAX_RANK], numel = eval_shape(n, syms, shape);
    double max_abs = 0, max_ref = 0, num = 0, den = 0;
    char note[300];
    int64_t bad = nonfinite_mismatches(n->name, got, ref, numel, note, sizeof note);
    for (int64_t i = 0; i < numel; i++) {
        double e = got[i] - ref[i];
        if (!isfinite(got[i]) || !isfinite(ref[i]) || fabs(ref[i]) >= 0x1.ffffffp127)
            continue;       /* the NaN/Inf rule's */
        if (fabs(e) > max_abs)
            max_abs = fabs(e);
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
        num += e * e;
        den += ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num) / sqrt(den) : sqrt(num);
    double scaled = max_ref > 0 ? max_abs / max_ref : max_abs;
    bool ok = rel <= rtol && scaled <= max_tol && bad == 0;
    printf("%s: max_abs_err=%.3g rel_l2_err=%.3g (rtol %g) scaled_max_err=%.3g (max_tol %g) %s%s\n",
           n->name, max_abs, rel, rtol, scaled, max_tol, ok ? "ok" : "FAIL", note);
    return ok;
}

static void print_syms(const Graph *g, const int64_t *syms, const CheckArgs *a)
{
    fprintf(stderr, "check: block %s, target %s, -O%d,", g->name, a->target, a->opt_level);
    for (int s = 0; s < g->nsyms; s++)
        fprintf(stderr, " %s=%lld", g->sym_names[s], (long long)syms[s]);
    if (a->split)
        fprintf(stderr, ", split %lld", (long long)a->split);
    fprintf(stderr, ", build dir %s\n", tmp_dir ? tmp_dir : "(none)");
}

/* ---- the command ---------------------------------------------------------------- */

static int check_run(const CheckArgs *a)
{
    Options opt = {a->opt_level, a->target, a->no_fuse, a->compute_bf16, NULL, a->fuse_all};
    const Target *t = target_find(a->target);
    Data d;
    char why[512];
    if (a->tune && !cost_use_tune(&opt, a->tune, why, sizeof why)) {
        fprintf(stderr, "%s\n", why);
        return EXIT_FAIL;
    }
    if (a->tune)
        t = target_tuned(t, &opt.machine->tiles);   /* the file's tiles, as fusec --tune */
    fr_st golden;
    fr_err err;
    double **got = NULL;
    bool ok;

    memset(&d, 0, sizeof d);
    Graph *g = compile_front(a->file, a->block);
    if (!g)
        return EXIT_FAIL;
    pass_mark_compute(g, &opt);

    /* The reference, and the data the block will run on. */
    if (a->golden) {
        if (fr_st_open(&golden, a->golden, &err)) {
            diag_plain_error("%s", err.msg);
            return EXIT_FAIL;
        }
        ok = load_golden(g, &golden, a->golden, &d);
        fr_st_close(&golden);
        if (!ok)
            return EXIT_FAIL;
        if (a->split && !split_ok(g, row_sym(g), d.syms, a->split))
            return EXIT_FAIL;
        d.in_path = a->golden;
        if (a->interp) {
            if (a->verbose)
                print_syms(g, d.syms, a);
            if (!run_interp(g, &d, a->split, &got))
                return EXIT_FAIL;
        }
    }
    if (!a->interp && !tmp_make(a))
        return EXIT_FAIL;
    if (a->random) {
        if (!make_random(g, a, &d) || (a->split && !split_ok(g, row_sym(g), d.syms, a->split)) ||
            !run_interp(g, &d, 0, &d.expect))
            return EXIT_FAIL;
    }

    /* The generated C: passes, emit, compile, run. */
    if (!a->interp) {
        int rc;
        if (a->verbose)
            print_syms(g, d.syms, a);
        compile_passes(g, &opt);
        if (!write_block(g, t))
            return EXIT_FAIL;
        if ((rc = build_harness(g, t, "check_main.c", a->verbose)) >= 0)
            return rc;
        if ((rc = run_harness(d.in_path, a->split, a->verbose)) >= 0)
            return rc;
        if (!read_outputs(g, &d, &got))
            return EXIT_FAIL;
    }

    ok = true;
    for (int i = 0; i < g->noutputs; i++)
        ok = compare(g->outputs[i], d.syms, got[i], d.expect[i], a->rtol, a->max_tol) && ok;
    if (fflush(stdout) != 0) {
        diag_plain_error("cannot write the report: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return ok ? EXIT_OK : EXIT_FAIL;
}

/* For `fusec run` (run.c): g emitted for t and compiled with
 * runtime/harness/HARNESS in a temporary directory (removed at exit). */
int check_build_program(const Graph *g, const Target *t, const char *harness, const char *cc, bool verbose,
                        const char **exe)
{
    CheckArgs a;
    cross_cc = cc;
    memset(&a, 0, sizeof a);
    int rc;
    if ((!tmp_dir && !tmp_make(&a)) || !write_block(g, t))
        return EXIT_FAIL;
    if ((rc = build_harness(g, t, harness, verbose)) >= 0)
        return rc;
    *exe = tmp_path("harness");
    return -1;
}

int check_main(int argc, char **argv)
{
    CheckArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = check_run(&a);
    if (a.verbose && tmp_keep && tmp_dir)
        fprintf(stderr, "check: kept %s\n", tmp_dir);
    tmp_cleanup();
    return rc;
}
