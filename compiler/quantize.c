/*
 * quantize.c - `fusec quantize`: convert a checkpoint's weights to bf16,
 * f16, q8_0 or q4_0.
 *
 *   fusec quantize IN.safetensors -o OUT.safetensors --type TYPE
 *                  [--include GLOB]... [--exclude GLOB]...
 *
 * Which tensors: by default every rank-2 tensor of a float type (F32, BF16,
 * F16) - the matrices of linear layers - while 1-D norm weights and biases
 * stay as they are; --include replaces that default with the tensors whose
 * names match one of its globs, and --exclude removes matches from either.
 * Everything else, and the file's "__metadata__", is copied unchanged.
 *
 * The conversions are dtype.c's: round to nearest even for bf16/f16 (NaN and
 * infinity kept, overflow to infinity counted and reported), llama.cpp's
 * reference quantizers for q8_0/q4_0, which cannot represent NaN, infinity
 * or values whose block scale overflows float16 (an error naming the
 * tensor and the element).  The output goes through the runtime's writer
 * (a temporary file renamed into place), is never the input file, and
 * nothing is written when any tensor fails.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help_text[] =
    "usage: fusec quantize IN.safetensors -o OUT.safetensors --type TYPE\n"
    "                      [--include GLOB]... [--exclude GLOB]...\n"
    "\n"
    "Converts the weights of a safetensors checkpoint to TYPE: bf16 or f16 (round to\n"
    "nearest even), q8_0 or q4_0 (blocks of 32 along each row, llama.cpp's layouts\n"
    "and reference rounding; docs/quantization.md).  Sources may be F32, BF16 or F16.\n"
    "\n"
    "options:\n"
    "  -o FILE          the output file (never IN; written through a temporary file)\n"
    "  --type TYPE      bf16, f16, q8_0 or q4_0\n"
    "  --include GLOB   convert the tensors whose names match GLOB (repeatable); without\n"
    "                   it, every rank-2 F32/BF16/F16 tensor (1-D norm weights and biases\n"
    "                   stay as they are)\n"
    "  --exclude GLOB   do not convert tensors whose names match GLOB (repeatable)\n"
    "  -v               name every tensor converted\n"
    "  --help           print this help and exit\n"
    "\n"
    "exit status: 0 written, 1 bad input (file, values a type cannot hold), 2 bad usage\n";

#define MAX_GLOBS 64

typedef struct QArgs {
    const char *in, *out;
    int type;
    const char *inc[MAX_GLOBS], *exc[MAX_GLOBS];
    int ninc, nexc;
    bool verbose;
} QArgs;

static int usage(const char *fmt, const char *arg) {
    fprintf(stderr, "fusec quantize: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nfusec quantize: see 'fusec quantize --help'\n");
    return EXIT_USAGE;
}

static const char *value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse(int argc, char **argv, QArgs *a) {
    memset(a, 0, sizeof *a);
    a->type = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(help_text, stdout);
            return EXIT_OK;
        } else if (!strcmp(s, "-v")) {
            a->verbose = true;
        } else if (!strcmp(s, "-o")) {
            if (i + 1 >= argc)
                return usage("'-o' needs a file name%s", "");
            a->out = argv[++i];
        } else if ((v = value(argc, argv, &i, "--type"))) {
            a->type = dt_lookup(v);
            if (a->type < 0 || a->type == DT_F32 || a->type == DT_I32)
                return usage("--type: expected bf16, f16, q8_0 or q4_0, got '%s'", v);
        } else if ((v = value(argc, argv, &i, "--include"))) {
            if (a->ninc == MAX_GLOBS)
                return usage("more than 64 --include globs%s", "");
            a->inc[a->ninc++] = v;
        } else if ((v = value(argc, argv, &i, "--exclude"))) {
            if (a->nexc == MAX_GLOBS)
                return usage("more than 64 --exclude globs%s", "");
            a->exc[a->nexc++] = v;
        } else if (s[0] == '-' && s[1]) {
            if (!strcmp(s, "--type") || !strcmp(s, "--include") || !strcmp(s, "--exclude"))
                return usage("'%s' needs a value", s);
            return usage("unknown option '%s'", s);
        } else if (a->in) {
            return usage("more than one input file ('%s')", s);
        } else {
            a->in = s;
        }
    }
    if (!a->in)
        return usage("no input file%s", "");
    if (!a->out)
        return usage("no output file: use -o OUT.safetensors%s", "");
    if (a->type < 0)
        return usage("no --type (bf16, f16, q8_0 or q4_0)%s", "");
    return -1;
}

static bool matches(const char *const *globs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0)
            return true;
    return false;
}

static bool is_float(fr_dtype t) { return t == FR_F32 || t == FR_BF16 || t == FR_F16; }

/* "[3, 17]" of flat index i in a tensor of this shape. */
static const char *where(const fr_tensor *t, int64_t i) {
    Buf b = {0};
    int64_t idx[FR_MAX_RANK];
    for (int d = t->rank - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? i % t->shape[d] : 0;
        i = t->shape[d] ? i / t->shape[d] : 0;
    }
    buf_puts(&b, "[");
    for (int d = 0; d < t->rank; d++)
        buf_printf(&b, "%s%lld", d ? ", " : "", (long long)idx[d]);
    buf_puts(&b, "]");
    const char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

/* The tensor's values as float (exact for F32, BF16, F16). */
static void row_to_float(const fr_tensor *t, const unsigned char *p, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        switch (t->dtype) {
        case FR_F32: memcpy(&out[i], p + 4 * i, 4); break;
        case FR_BF16: memcpy(&h, p + 2 * i, 2); out[i] = dt_bf16_to_f32(h); break;
        case FR_F16: memcpy(&h, p + 2 * i, 2); out[i] = dt_f16_to_f32(h); break;
        default: FU_UNREACHABLE();
        }
    }
}

/* Converts t to type; NULL after reporting a value the type cannot hold. */
static void *convert(const fr_tensor *t, DType type, int64_t *overflow) {
    int64_t n = t->rank ? t->shape[t->rank - 1] : 1, rows = 1;
    for (int d = 0; d + 1 < t->rank; d++)
        rows *= t->shape[d];
    int64_t units = dt_row_units(type, n);
    size_t unit = dt_info(type)->kind == DK_QUANT ? 1 : dt_info(type)->kind == DK_HALF ? 2 : 4;
    size_t es = fr_dtype_size(t->dtype);
    unsigned char *out = malloc((size_t)(rows * units) * unit + 1);
    float *row = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!out || !row)
        fu_internal(__FILE__, __LINE__, "out of memory converting '%s'", t->name);
    *overflow = 0;
    for (int64_t r = 0; r < rows; r++) {
        row_to_float(t, (const unsigned char *)t->data + (size_t)(r * n) * es, n, row);
        unsigned char *dst = out + (size_t)(r * units) * unit;
        int64_t bad = dt_store_row(type, row, n, dst);
        if (bad >= 0) {
            float x = row[bad];
            if (isfinite(x))
                diag_plain_error("tensor '%s': the block of element %s (%g) has a scale beyond the float16 "
                                 "range, which %s cannot store", t->name, where(t, r * n + bad), (double)x,
                                 dtype_name(type));
            else
                diag_plain_error("tensor '%s': element %s is %s, which %s cannot represent", t->name,
                                 where(t, r * n + bad), isnan(x) ? "NaN" : x > 0 ? "inf" : "-inf",
                                 dtype_name(type));
            free(out);
            free(row);
            return NULL;
        }
        if (type == DT_F16)
            for (int64_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, dst + 2 * i, 2);
                *overflow += (h & 0x7fff) == 0x7c00 && isfinite(row[i]);
            }
    }
    free(row);
    return out;
}

static int quantize(const QArgs *a) {
    fr_st f;
    fr_err err;
    struct stat si, so;
    DType type = (DType)a->type;

    if (fr_st_open(&f, a->in, &err)) {
        diag_plain_error("%s", err.msg);
        return EXIT_FAIL;
    }
    if (stat(a->in, &si) == 0 && stat(a->out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        diag_plain_error("'%s' is the input file: fusec quantize never overwrites its input", a->out);
        fr_st_close(&f);
        return EXIT_FAIL;
    }
    fr_st_writer *w = fr_stw_new();
    void **owned = calloc((size_t)f.ntensors + 1, sizeof *owned);
    if (!w || !owned)
        fu_internal(__FILE__, __LINE__, "out of memory");
    int converted = 0, kept = 0, rc = EXIT_OK;
    uint64_t bytes_in = 0, bytes_out = 0;
    for (int i = 0; i < f.ntensors && rc == EXIT_OK; i++) {
        const fr_tensor *t = &f.tensors[i];
        bool inc = a->ninc ? matches(a->inc, a->ninc, t->name) : (t->rank == 2 && is_float(t->dtype));
        bool sel = inc && !matches(a->exc, a->nexc, t->name);
        fr_dtype dt = t->dtype;
        const void *data = t->data;
        if (sel && !is_float(t->dtype)) {
            diag_plain_error("tensor '%s' is %s: fusec quantize converts F32, BF16 and F16 tensors "
                             "(--exclude it)", t->name, fr_dtype_name(t->dtype));
            rc = EXIT_FAIL;
            break;
        }
        if (sel && dt_info(type)->kind == DK_QUANT && t->rank < 1) {
            diag_plain_error("tensor '%s' is a scalar: %s needs rows (--exclude it)", t->name, dtype_name(type));
            rc = EXIT_FAIL;
            break;
        }
        if (sel && t->dtype != (fr_dtype)dt_info(type)->fr) {
            int64_t overflow;
            if (!(owned[i] = convert(t, type, &overflow))) {
                rc = EXIT_FAIL;
                break;
            }
            if (overflow)
                fprintf(stderr, "fusec quantize: warning: tensor '%s': %lld values beyond the float16 range "
                                "became infinite\n", t->name, (long long)overflow);
            dt = (fr_dtype)dt_info(type)->fr;
            data = owned[i];
            converted++;
            if (a->verbose)
                fprintf(stderr, "quantize: %s: %s -> %s\n", t->name, fr_dtype_name(t->dtype), fr_dtype_name(dt));
        } else {
            kept++;
        }
        uint64_t nb = 0;
        (void)fr_dtype_nbytes(dt, t->rank, t->shape, &nb);
        bytes_in += t->nbytes;
        bytes_out += nb;
        if (fr_stw_add(w, t->name, dt, t->rank, t->shape, data, &err)) {
            diag_plain_error("%s", err.msg);
            rc = EXIT_FAIL;
        }
    }
    for (int i = 0; i < f.nmeta && rc == EXIT_OK; i++) {
        if (strncmp(f.meta[i].key, FR_QUANT_KEY, strlen(FR_QUANT_KEY)) == 0)
            continue; /* the writer makes these for its quantized tensors */
        if (fr_stw_metadata(w, f.meta[i].key, f.meta[i].value, &err)) {
            diag_plain_error("%s", err.msg);
            rc = EXIT_FAIL;
        }
    }
    if (rc == EXIT_OK && fr_stw_write(w, a->out, &err)) {
        diag_plain_error("%s", err.msg);
        rc = EXIT_FAIL;
    }
    if (rc == EXIT_OK)
        printf("%s: %d tensors converted to %s, %d kept; %.1f MB -> %.1f MB\n", a->out, converted,
               dtype_name(type), kept, (double)bytes_in / 1e6, (double)bytes_out / 1e6);
    fr_stw_free(w);
    for (int i = 0; i < f.ntensors; i++)
        free(owned[i]);
    free(owned);
    fr_st_close(&f);
    return rc;
}

int quantize_main(int argc, char **argv) {
    QArgs a;
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = quantize(&a);
    if (rc == EXIT_OK && fflush(stdout) != 0) {
        diag_plain_error("cannot write the report: %s", strerror(errno));
        rc = EXIT_FAIL;
    }
    return rc;
}
