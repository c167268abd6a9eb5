/*
 * test_vec.c - the vector vocabulary (compiler/vec.c), run on every ISA the
 * test machine can run: generic, AVX2 and AVX-512 (when the CPU has them),
 * NEON cross-compiled with aarch64-linux-gnu-gcc and run under qemu-aarch64
 * (a failure when those are not installed: scripts/install-deps.sh does).
 *
 * For each target the test writes a small C program: v_prelude, then one
 * function per word of the vocabulary written with the vocabulary itself
 * (vector main loop, masked tail), and a main that applies them to the
 * inputs in in.bin and writes out.bin.  It is compiled with the strict flags
 * and WITHOUT -m flags: the target attributes alone must make it compile,
 * as they must in a multi-target file.  The results are then compared here,
 * in double precision, with libm (exp, log, tanh, erfc, sqrt):
 *   - a dense sweep over [-20, 20], a geometric sweep over +-[1e-30, 1e30],
 *     and special values (0, -0, +-inf, NaN, subnormals, FLT_MAX, the exp
 *     overflow and underflow thresholds),
 *   - the error in ulps of the correctly rounded float, for results of
 *     magnitude >= 1e-30; smaller ones must be within 1e-30 absolute (the
 *     interpreter's double exp underflows where float does not, and values
 *     that small do not matter to a transformer),
 *   - special values exactly (exp(inf) = inf, exp(-inf) = 0, exp(100) = inf,
 *     exp(-200) = 0, log(0) = -inf, log(-1) = NaN, NaN -> NaN, ...),
 *   - tails: every length 1..40 leaves the elements past the end untouched.
 * The bounds asserted are the ones docs/targets.md states (ULP_BOUND below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];

/* The ops the driver evaluates, in out.bin's order. */
static const Op unary_ops[] = {OP_NEG, OP_EXP, OP_LOG, OP_SQRT, OP_RSQRT, OP_RECIP, OP_TANH,
                               OP_SIGMOID, OP_SILU, OP_GELU, OP_GELU_TANH, OP_RELU};
#define NUNARY (int)(sizeof unary_ops / sizeof unary_ops[0])
static const Op binary_ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAXIMUM, OP_MINIMUM};
#define NBINARY (int)(sizeof binary_ops / sizeof binary_ops[0])
#define MAXTAIL 40
#define TAILBUF 48
#define SENTINEL 12345.0f

/*
 * The stated maximum errors, in ulps of the correctly rounded result, for
 * the SIMD targets and for generic (libm's own where it uses libm), over the
 * whole input range (results of magnitude >= 1e-30) and over the core range
 * |x| <= 4.  gelu_tanh is ill-conditioned for x << 0 (the cubic in its
 * exponent: at x = -9 the exponent is 66, so its float rounding alone costs
 * ~150 ulp of a result of 1e-28); the core bound is the one that matters.
 * See docs/targets.md.
 */
static double ulp_bound(Op op, bool simd, bool core) {
    switch (op) {
    case OP_NEG: case OP_RELU: return 0.0;
    case OP_SQRT: case OP_RECIP: return 0.5;
    case OP_RSQRT: return 1.5;
    case OP_EXP: return simd ? 1.5 : 1.0;
    case OP_LOG: return 1.0;
    case OP_TANH: return simd ? 1.5 : 2.0;
    case OP_SIGMOID: return 3.0;
    case OP_SILU: return 3.0;
    case OP_GELU: return 7.0;
    case OP_GELU_TANH: return core ? 20.0 : 200.0;
    default: return 0.0;
    }
}

/* The double-precision reference, with the float constants the helpers use
 * where the op is defined by a formula (gelu_tanh's sqrt(2/pi) and 0.044715). */
static double reference(Op op, double x) {
    switch (op) {
    case OP_NEG: return -x;
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_SQRT: return sqrt(x);
    case OP_RSQRT: return 1.0 / sqrt(x);
    case OP_RECIP: return 1.0 / x;
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case OP_SILU: return x / (1.0 + exp(-x));
    case OP_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case OP_GELU_TANH: {
        /* 0.5 x (1 + tanh u) without the cancellation of 1 + tanh u for x < 0 */
        double u = (double)0.797884561f * (x + (double)0.044715f * x * x * x);
        return x / (1.0 + exp(-2.0 * u));
    }
    case OP_RELU: return x > 0 || isnan(x) ? x : 0;   /* NaN stays, as in PyTorch */
    default: return NAN;
    }
}

/* ---- inputs ----------------------------------------------------------------- */

static float *make_inputs(int *n) {
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -1e-45f,
                                    1.17549435e-38f, 1e-39f, FLT_MAX, -FLT_MAX, 88.72f, 88.7228f,
                                    88.73f, 89.0f, 100.0f, -87.3f, -88.0f, -103.0f, -104.0f,
                                    -110.0f, -200.0f, 1e-8f, -1e-8f, 0.625f, -0.625f, 0.6249f,
                                    9.99f, 10.0f, 10.01f, -14.0f, -14.01f, 1.41421356f, 0.5f, 2.0f};
    int ns = (int)(sizeof special / sizeof special[0]);
    int ndense = 40001, ngeo = 2 * 6001;
    float *x = malloc(sizeof *x * (size_t)(ns + ndense + ngeo));
    int k = 0;
    assert_non_null(x);
    for (int i = 0; i < ns; i++)
        x[k++] = special[i];
    for (int i = 0; i < ndense; i++)
        x[k++] = (float)(-20.0 + 40.0 * i / (ndense - 1) + 1e-4 * sin(i)); /* not on a grid */
    for (int i = 0; i < ngeo / 2; i++) {
        float v = (float)pow(10.0, -30.0 + 60.0 * i / (ngeo / 2 - 1));
        x[k++] = v;
        x[k++] = -v;
    }
    *n = k;
    return x;
}

/* ---- the driver ------------------------------------------------------------- */

/* Appends f(x) over n elements, the vocabulary's loop: vector body, tail. */
static void loop_fn(Buf *b, const Target *t, const char *name, const char *params, const char *store_full,
                    const char *store_tail) {
    int W = t->vec_floats;
    buf_printf(b, "static %svoid %s(%s, int64_t n) {\n", v_attr(t), name, params);
    buf_puts(b, "    int64_t i = 0;\n");
    buf_printf(b, "    for (; i + %d <= n; i += %d)\n        %s;\n", W, W, store_full);
    if (W > 1)
        buf_printf(b, "    if (i < n)\n        %s;\n", store_tail);
    buf_puts(b, "}\n");
}

static char *driver_source(const Target *t) {
    Buf b = {0};
    int W = t->vec_floats;
    const char *V = v_type(t);
    buf_puts(&b, "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n");
    v_prelude(&b, t);
    for (int i = 0; i < NUNARY; i++) {
        Op op = unary_ops[i];
        const char *full = v_store(t, "y + i", v_unary(t, op, v_load(t, "x + i")));
        const char *tail = v_store_n(t, "y + i", v_unary(t, op, v_load_n(t, "x + i", "n - i", NULL)), "n - i");
        loop_fn(&b, t, fu_format("run_%s", op_info[op].name), "const float *x, float *y", full,
                tail);
    }
    for (int i = 0; i < NBINARY; i++) {
        Op op = binary_ops[i];
        const char *full = v_store(t, "y + i", v_bin(t, op, v_load(t, "a + i"), v_load(t, "b + i")));
        const char *tail = v_store_n(
            t, "y + i", v_bin(t, op, v_load_n(t, "a + i", "n - i", NULL), v_load_n(t, "b + i", "n - i", NULL)),
            "n - i");
        loop_fn(&b, t, fu_format("run_%s", op_info[op].name), "const float *a, const float *b, float *y", full,
                tail);
    }
    {
        const char *full = v_store(t, "y + i", v_fma(t, v_load(t, "a + i"), v_load(t, "b + i"), v_load(t, "c + i")));
        const char *tail = v_store_n(t, "y + i",
                                     v_fma(t, v_load_n(t, "a + i", "n - i", NULL), v_load_n(t, "b + i", "n - i", NULL),
                                           v_load_n(t, "c + i", "n - i", NULL)),
                                     "n - i");
        loop_fn(&b, t, "run_fma", "const float *a, const float *b, const float *c, float *y", full, tail);
    }
    /* select_lt with iota: y = (lane index < n0 - i) ? a : b, i.e. i + lane < n0 */
    {
        const char *sel = v_select_lt(t, v_iota(t), v_set1(t, "(float)(n0 - i)"), v_load(t, "a + i"),
                                      v_load(t, "b + i"));
        buf_printf(&b, "static %svoid run_select(const float *a, const float *b, float *y, int64_t n, int64_t n0) {\n",
                   v_attr(t));
        buf_printf(&b, "    for (int64_t i = 0; i + %d <= n; i += %d)\n        %s;\n}\n", W, W,
                   v_store(t, "y + i", sel));
    }
    /* sum and max of x[0, n): vector accumulators, masked tail, then reduce */
    buf_printf(&b, "static %sfloat run_hsum(const float *x, int64_t n) {\n", v_attr(t));
    buf_printf(&b, "    %s acc = %s;\n    int64_t i = 0;\n", V, v_zero(t));
    buf_printf(&b, "    for (; i + %d <= n; i += %d)\n        acc = %s;\n", W, W,
               v_bin(t, OP_ADD, "acc", v_load(t, "x + i")));
    if (W > 1)
        buf_printf(&b, "    if (i < n)\n        acc = %s;\n",
                   v_bin(t, OP_ADD, "acc", v_load_n(t, "x + i", "n - i", NULL)));
    buf_printf(&b, "    return %s;\n}\n", v_hsum(t, "acc"));
    buf_printf(&b, "static %sfloat run_hmax(const float *x, int64_t n) {\n", v_attr(t));
    buf_printf(&b, "    %s acc = %s;\n    int64_t i = 0;\n", V, v_set1(t, "-INFINITY"));
    buf_printf(&b, "    for (; i + %d <= n; i += %d)\n        acc = %s;\n", W, W,
               v_bin(t, OP_MAXIMUM, v_load(t, "x + i"), "acc"));
    if (W > 1)
        buf_printf(&b, "    if (i < n)\n        acc = %s;\n",
                   v_bin(t, OP_MAXIMUM, v_load_n(t, "x + i", "n - i", "-INFINITY"), "acc"));
    buf_printf(&b, "    return %s;\n}\n\n", v_hmax(t, "acc"));

    buf_puts(&b,
             "static void die(const char *m) {\n    fprintf(stderr, \"driver: %s\\n\", m);\n    exit(2);\n}\n"
             "static void wr(FILE *f, const float *p, int64_t n) {\n"
             "    if (fwrite(p, sizeof *p, (size_t)n, f) != (size_t)n)\n        die(\"write\");\n}\n"
             "int main(int argc, char **argv) {\n"
             "    FILE *f, *o;\n    int64_t n, len;\n    float *x, *r, *y, *z, s[2];\n"
             "    if (argc != 3 || !(f = fopen(argv[1], \"rb\")) || !(o = fopen(argv[2], \"wb\")))\n"
             "        die(\"usage\");\n"
             "    if (fread(&n, sizeof n, 1, f) != 1 || n < 1 || n > 100000000)\n        die(\"bad count\");\n"
             "    x = malloc(sizeof *x * (size_t)n);\n    r = malloc(sizeof *r * (size_t)n);\n"
             "    y = malloc(sizeof *y * (size_t)n);\n    z = malloc(sizeof *z * (size_t)n);\n"
             "    if (!x || !r || !y || !z)\n        die(\"memory\");\n"
             "    if (fread(x, sizeof *x, (size_t)n, f) != (size_t)n)\n        die(\"short read\");\n"
             "    for (int64_t i = 0; i < n; i++)\n        r[i] = x[n - 1 - i];\n");
    for (int i = 0; i < NUNARY; i++)
        buf_printf(&b, "    run_%s(x, y, n);\n    wr(o, y, n);\n", op_info[unary_ops[i]].name);
    for (int i = 0; i < NBINARY; i++)
        buf_printf(&b, "    run_%s(x, r, y, n);\n    wr(o, y, n);\n", op_info[binary_ops[i]].name);
    buf_puts(&b, "    for (int64_t i = 0; i < n; i++)\n        z[i] = x[(i * 7) % n];\n"
                 "    run_fma(x, r, z, y, n);\n    wr(o, y, n);\n");
    /* tails: every length, a sentinel after the end */
    buf_printf(&b, "    for (len = 1; len <= %d; len++) {\n", MAXTAIL);
    buf_printf(&b, "        for (int i = 0; i < %d; i++)\n            y[i] = %.1ff;\n", TAILBUF, (double)SENTINEL);
    buf_printf(&b, "        run_exp(x + 100, y, len);\n        wr(o, y, %d);\n", TAILBUF);
    buf_printf(&b, "        s[0] = run_hsum(x + 100, len);\n        s[1] = run_hmax(x + 100, len);\n        wr(o, s, 2);\n");
    buf_puts(&b, "    }\n");
    buf_printf(&b, "    run_select(x, r, y, %d, 37);\n    wr(o, y, %d);\n", 4 * 16, 4 * 16);
    buf_puts(&b, "    if (fclose(o) != 0)\n        die(\"close\");\n    fclose(f);\n    free(x);\n    free(r);\n"
                 "    free(y);\n    free(z);\n    return 0;\n}\n");
    char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

/* ---- running ------------------------------------------------------------------ */

static int sh(const char *cmd) {
    int rc = system(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static float *read_floats(const char *path, size_t *n) {
    size_t len;
    char *d = fu_read_file(path, &len);
    assert_non_null(d);
    *n = len / sizeof(float);
    float *f = malloc(len + 1);
    assert_non_null(f);
    memcpy(f, d, len);
    return f;
}

/* Distance in ulps of the float nearest ref; inf counts as 2^128. */
static double ulps(double got, double ref) {
    double r = fabs(ref) > 0x1p-126 ? fabs(ref) : 0x1p-126;
    int e;
    frexp(r, &e);
    double ulp = ldexp(1.0, e - 24);
    if (isinf(got))
        got = copysign(0x1p128, got);
    if (fabs(ref) > FLT_MAX && !isinf(got))
        ref = copysign(0x1p128, ref);
    return fabs(got - ref) / ulp;
}

typedef struct Runner {
    const char *cc;       /* compiler command */
    const char *run;      /* prefix to run the program ("" or "qemu-aarch64 -L ...") */
} Runner;

/* Compiles and runs the driver for t; returns its out.bin floats. */
static float *run_driver(const Target *t, const Runner *r, const float *x, int n, size_t *nout) {
    char *src = driver_source(t);
    const char *dir = fu_format("%s/%s", tmpdir, t->tag);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(fu_format("%s/drv.c", dir), src, strlen(src));
    int64_t n64 = n;
    FILE *f = fopen(fu_format("%s/in.bin", dir), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(&n64, sizeof n64, 1, f), 1);
    assert_int_equal(fwrite(x, sizeof *x, (size_t)n, f), (size_t)n);
    assert_int_equal(fclose(f), 0);
    const char *cc = fu_format("%s -std=c99 -O2 -Wall -Wextra -Wpedantic -Wshadow -Werror -o %s/drv %s/drv.c -lm "
                               "2> %s/cc.log", r->cc, dir, dir, dir);
    if (sh(cc) != 0) {
        sh(fu_format("head -c 3000 %s/cc.log >&2", dir));
        fail_msg("the %s driver did not compile: %s", t->name, cc);
    }
    const char *cmd = fu_format("%s %s/drv %s/in.bin %s/out.bin", r->run, dir, dir, dir);
    if (sh(cmd) != 0)
        fail_msg("the %s driver failed: %s", t->name, cmd);
    return read_floats(fu_format("%s/out.bin", dir), nout);
}

/* Every check on one target's results. */
static void check_results(const Target *t, const float *x, int n, const float *out, size_t nout) {
    bool simd = t->vec_floats > 1;
    size_t want = (size_t)(NUNARY + NBINARY + 1) * (size_t)n + MAXTAIL * (TAILBUF + 2) + 64;
    assert_int_equal(nout, want);
    const float *p = out;
    for (int o = 0; o < NUNARY; o++, p += n) {
        Op op = unary_ops[o];
        double worst = 0, worst_x = 0, worst_core = 0, worst_core_x = 0;
        for (int i = 0; i < n; i++) {
            double ref = reference(op, x[i]), got = p[i];
            if (isnan(ref) || isnan(got)) {
                if (isnan(ref) != isnan(got))
                    fail_msg("%s %s(%a): got %a, libm %a", t->name, op_info[op].name, (double)x[i], got, ref);
                continue;
            }
            if (isinf(ref)) {
                if (got != ref)
                    fail_msg("%s %s(%a): got %a, libm %a", t->name, op_info[op].name, (double)x[i], got, ref);
                continue;
            }
            if (fabs(ref) < 1e-30) {
                if (fabs(got - ref) > 1e-30)
                    fail_msg("%s %s(%a): got %a, libm %a (tiny)", t->name, op_info[op].name, (double)x[i], got, ref);
                continue;
            }
            double u = ulps(got, ref);
            if (u > worst)
                worst = u, worst_x = x[i];
            if (fabsf(x[i]) <= 4.0f && u > worst_core)
                worst_core = u, worst_core_x = x[i];
        }
        print_message("   %-14s %-10s max error %6.2f ulp (x = %-14.9g bound %5.1f), |x| <= 4: %.2f ulp "
                      "(x = %.9g, bound %.1f)\n", t->name, op_info[op].name, worst, worst_x,
                      ulp_bound(op, simd, false), worst_core, worst_core_x, ulp_bound(op, simd, true));
        if (worst > ulp_bound(op, simd, false))
            fail_msg("%s %s: %.2f ulp at x = %.9g exceeds the stated %.1f", t->name, op_info[op].name, worst,
                     worst_x, ulp_bound(op, simd, false));
        if (worst_core > ulp_bound(op, simd, true))
            fail_msg("%s %s: %.2f ulp at x = %.9g exceeds the stated %.1f for |x| <= 4", t->name,
                     op_info[op].name, worst_core, worst_core_x, ulp_bound(op, simd, true));
    }
    /* exact special values */
    {
        static const struct { Op op; float x, y; } sp[] = {
            {OP_EXP, INFINITY, INFINITY}, {OP_EXP, -INFINITY, 0.0f}, {OP_EXP, 100.0f, INFINITY},
            {OP_EXP, -200.0f, 0.0f}, {OP_EXP, 0.0f, 1.0f}, {OP_LOG, 0.0f, -INFINITY},
            {OP_LOG, INFINITY, INFINITY}, {OP_LOG, 1.0f, 0.0f}, {OP_TANH, INFINITY, 1.0f},
            {OP_TANH, -INFINITY, -1.0f}, {OP_TANH, 0.0f, 0.0f}, {OP_SIGMOID, INFINITY, 1.0f},
            {OP_SIGMOID, -INFINITY, 0.0f}, {OP_SIGMOID, 0.0f, 0.5f}, {OP_GELU, INFINITY, INFINITY},
            {OP_GELU_TANH, INFINITY, INFINITY}, {OP_SILU, INFINITY, INFINITY}, {OP_RELU, -1.0f, 0.0f},
        };
        for (size_t s = 0; s < sizeof sp / sizeof sp[0]; s++) {
            int oi = 0, xi = -1;
            while (unary_ops[oi] != sp[s].op)
                oi++;
            for (int i = 0; i < n && xi < 0; i++)
                if (x[i] == sp[s].x && signbit(x[i]) == signbit(sp[s].x))
                    xi = i;
            assert_true(xi >= 0);
            float got = out[(size_t)oi * (size_t)n + (size_t)xi];
            if (got != sp[s].y)
                fail_msg("%s %s(%g) = %g, want %g", t->name, op_info[sp[s].op].name, (double)sp[s].x,
                         (double)got, (double)sp[s].y);
        }
        /* NaN in, NaN out, relu included (PyTorch's rule, docs/language.md) */
        int xn = 0;
        while (!isnan(x[xn]))
            xn++;
        for (int o = 0; o < NUNARY; o++) {
            float got = out[(size_t)o * (size_t)n + (size_t)xn];
            if (!isnan(got))
                fail_msg("%s %s(NaN) = %g", t->name, op_info[unary_ops[o]].name, (double)got);
        }
    }
    /* binary ops: exactly the scalar C expressions */
    for (int o = 0; o < NBINARY; o++, p += n)
        for (int i = 0; i < n; i++) {
            float a = x[i], b = x[n - 1 - i], want1;
            switch (binary_ops[o]) {
            case OP_ADD: want1 = a + b; break;
            case OP_SUB: want1 = a - b; break;
            case OP_MUL: want1 = a * b; break;
            case OP_DIV: want1 = a / b; break;
            /* NaN when either is NaN (PyTorch's maximum and minimum) */
            case OP_MAXIMUM: want1 = isnan(a) || isnan(b) ? NAN : a > b ? a : b; break;
            default: want1 = isnan(a) || isnan(b) ? NAN : a < b ? a : b; break;
            }
            if (memcmp(&want1, &p[i], sizeof want1) != 0 && !(isnan(want1) && isnan(p[i])))
                fail_msg("%s %s(%a, %a) = %a, want %a", t->name, op_info[binary_ops[o]].name, (double)a, (double)b,
                         (double)p[i], (double)want1);
        }
    /* fma: within one rounding of the product and one of the sum */
    for (int i = 0; i < n; i++) {
        double a = x[i], b = x[n - 1 - i], c = x[((int64_t)i * 7) % n];
        double ref = a * b + c, got = p[i];
        if (isnan(ref) || isinf(ref) || fabs(a * b) > 1e30 || fabs(ref) > 1e30)
            continue;
        double tol = 0x1p-23 * (fabs(a * b) + fabs(c)) + 1e-44;
        if (fabs(got - ref) > tol)
            fail_msg("%s fma(%a, %a, %a) = %a, want %a", t->name, a, b, c, got, ref);
    }
    p += n;
    /* tails: exp of x[100, 100+len), then the sentinel; hsum and hmax */
    const float *expv = out + (size_t)1 * (size_t)n; /* run_exp over the whole array */
    for (int len = 1; len <= MAXTAIL; len++, p += TAILBUF + 2) {
        double sum = 0, sabs = 0;
        float mx = -INFINITY;
        for (int i = 0; i < TAILBUF; i++) {
            float want1 = i < len ? expv[100 + i] : SENTINEL;
            if (memcmp(&want1, &p[i], sizeof want1) != 0)
                fail_msg("%s tail of %d: element %d is %a, want %a", t->name, len, i, (double)p[i], (double)want1);
        }
        for (int i = 0; i < len; i++) {
            sum += x[100 + i];
            sabs += fabs(x[100 + i]);
            mx = isnan(x[100 + i]) || x[100 + i] > mx ? x[100 + i] : mx;   /* NaN stays */
        }
        if (fabs(p[TAILBUF] - sum) > 0x1p-22 * sabs * len)
            fail_msg("%s hsum of %d: %g, want %g", t->name, len, (double)p[TAILBUF], sum);
        if (p[TAILBUF + 1] != mx && !(isnan(mx) && isnan(p[TAILBUF + 1])))
            fail_msg("%s hmax of %d: %g, want %g", t->name, len, (double)p[TAILBUF + 1], (double)mx);
    }
    for (int i = 0; i < 64; i++) {
        float want1 = i < 37 ? x[i] : x[n - 1 - i];
        if (memcmp(&want1, &p[i], sizeof want1) != 0 && !(isnan(want1) && isnan(p[i])))
            fail_msg("%s select_lt/iota lane %d: %a, want %a", t->name, i, (double)p[i], (double)want1);
    }
}

static void run_target(const char *name, const Runner *r) {
    const Target *t = target_find(name);
    int n;
    size_t nout;
    assert_non_null(t);
    float *x = make_inputs(&n);
    float *out = run_driver(t, r, x, n, &nout);
    check_results(t, x, n, out, nout);
    free(out);
    free(x);
}

/* The host's compiler: $CC (a command line, e.g. "cc --coverage"), else cc. */
static Runner native_runner(void) {
    const char *cc = getenv("CC");
    Runner r = {cc && *cc ? cc : "cc", ""};
    return r;
}

/* "SKIPPED: this CPU has no FLAGS": the reason tests/unit/run.sh accepts
 * where /proc/cpuinfo agrees. */
static void skip_no_cpu(const Target *t, const char *what) {
    char names[128];
    fr_cpu_feature_names(t->features & ~fr_cpu_features(), names, sizeof names);
    for (char *p = names; *p; p++)
        if (*p == ',')
            *p = ' ';
    print_message("   SKIPPED: this CPU has no %s (%s)\n", names, what);
    skip();
}

static void test_generic(void **state) {
    (void)state;
    Runner r = native_runner();
    run_target("generic", &r);
}

static void test_avx2(void **state) {
    (void)state;
    const Target *t = target_find("x86-64-avx2");
    if ((fr_cpu_features() & t->features) != t->features)
        skip_no_cpu(t, "x86-64-avx2 not run");
    Runner r = native_runner();
    run_target("x86-64-avx2", &r);
}

static void test_avx512(void **state) {
    (void)state;
    const Target *t = target_find("x86-64-avx512");
    Runner r = native_runner();
    if ((fr_cpu_features() & t->features) != t->features) {
        /* still compile it, with -Werror, without running it */
        char *src = driver_source(t);
        const char *dir = fu_format("%s/avx512c", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        write_file(fu_format("%s/drv.c", dir), src, strlen(src));
        assert_int_equal(sh(fu_format("%s -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -c -o %s/drv.o %s/drv.c",
                                      r.cc, dir, dir)), 0);
        skip_no_cpu(t, "x86-64-avx512 compiled only");
    }
    run_target("x86-64-avx512", &r);
}

/* NEON always runs: scripts/install-deps.sh installs the cross compiler and
 * qemu, so their absence is a failure, not a reason to skip. */
static void test_neon(void **state) {
    (void)state;
    static const Runner neon = {"aarch64-linux-gnu-gcc", "qemu-aarch64 -L /usr/aarch64-linux-gnu"};
    if (sh("command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1") != 0)
        fail_msg("NEON needs aarch64-linux-gnu-gcc and qemu-aarch64: run scripts/install-deps.sh");
    run_target("aarch64-neon", &neon);
}

/* The rows with features beyond their ISA's base write the same vocabulary
 * under their own tag: x86-64-avx512-bf16 where this CPU runs it (else
 * compiled only), aarch64-neon-dotprod under qemu -cpu max. */
static void test_avx512bf16(void **state) {
    (void)state;
    const Target *t = target_find("x86-64-avx512-bf16");
    Runner r = native_runner();
    if ((fr_cpu_features() & t->features) != t->features) {
        char *src = driver_source(t);
        const char *dir = fu_format("%s/bf16c", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        write_file(fu_format("%s/drv.c", dir), src, strlen(src));
        assert_int_equal(sh(fu_format("%s -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -c -o %s/drv.o %s/drv.c",
                                      r.cc, dir, dir)), 0);
        skip_no_cpu(t, "x86-64-avx512-bf16 compiled only");
    }
    run_target("x86-64-avx512-bf16", &r);
}

static void test_neon_dotprod(void **state) {
    (void)state;
    static const Runner dp = {"aarch64-linux-gnu-gcc", "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu"};
    if (sh("command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1") != 0)
        fail_msg("NEON needs aarch64-linux-gnu-gcc and qemu-aarch64: run scripts/install-deps.sh");
    run_target("aarch64-neon-dotprod", &dp);
}

/* Words that need no program: the spelling of a few, and the attribute. */
static void test_spelling(void **state) {
    (void)state;
    const Target *g = target_find("generic"), *a2 = target_find("x86-64-avx2");
    const Target *a5 = target_find("x86-64-avx512"), *ne = target_find("aarch64-neon");
    assert_string_equal(v_type(g), "float");
    assert_string_equal(v_type(a2), "__m256");
    assert_string_equal(v_type(a5), "__m512");
    assert_string_equal(v_type(ne), "float32x4_t");
    assert_string_equal(v_fma(a2, "a", "b", "c"), "_mm256_fmadd_ps(a, b, c)");
    assert_string_equal(v_fma(a5, "a", "b", "c"), "_mm512_fmadd_ps(a, b, c)");
    assert_string_equal(v_fma(ne, "a", "b", "c"), "vfmaq_f32(c, a, b)");
    assert_string_equal(v_attr(g), "");
    assert_string_equal(v_attr(a2), "FU_ATTR_AVX2 ");
    assert_string_equal(v_attr(ne), "");
    assert_int_equal(a2->vec_floats, 8);
    assert_int_equal(a5->vec_floats, 16);
    assert_int_equal(a5->nregs, 32);
    assert_int_equal(ne->vec_floats, 4);
    /* the prelude is deterministic */
    Buf b1 = {0}, b2 = {0};
    v_prelude(&b1, a2);
    v_prelude(&b2, a2);
    assert_string_equal(b1.data, b2.data);
    free(b1.data);
    free(b2.data);
}

static void test_targets(void **state) {
    (void)state;
    const Target *m = target_find("multi:x86-64-avx512,x86-64-avx2,generic");
    assert_non_null(m);
    assert_int_equal(m->nvariants, 3);
    assert_string_equal(m->variants[0]->name, "x86-64-avx512");
    assert_string_equal(m->variants[2]->name, "generic");
    assert_ptr_equal(m, target_find("multi:x86-64-avx512,x86-64-avx2,generic"));
    assert_null(target_find("multi:"));
    assert_null(target_find("multi:x86-64-avx2,"));
    assert_null(target_find("multi:x86-64-avx2,x86-64-avx2"));
    assert_null(target_find("multi:bogus"));
    assert_null(target_find("avx2"));
    assert_non_null(target_find("native"));
    assert_int_equal(target_find("native")->nvariants, 0);
    /* native follows the CPU, and the mask */
    fr_cpu_mask(FR_CPU_AVX512F | FR_CPU_AVX2 | FR_CPU_NEON);
    assert_string_equal(target_find("native")->name, "generic");
    fr_cpu_mask(0);
}

/* The rows with low-precision features: what they require, that they are
 * the only spellings (an alias is only suggested), multi: with rows that
 * share an ISA, native's order among them, and the helpers named by tag. */
static void test_lowprec_targets(void **state) {
    (void)state;
    const Target *bf = target_find("x86-64-avx512-bf16"), *spr = target_find("x86-64-spr");
    const Target *a5 = target_find("x86-64-avx512"), *dp = target_find("aarch64-neon-dotprod");
    const Target *v2 = target_find("x86-64-avx2-vnni"), *a2 = target_find("x86-64-avx2");
    assert_non_null(bf);
    assert_non_null(spr);
    assert_non_null(dp);
    assert_non_null(v2);
    assert_null(target_find("sapphirerapids"));
    assert_non_null(strstr(target_error("sapphirerapids"), "did you mean 'x86-64-spr'"));
    assert_non_null(strstr(target_error("zen4"), "did you mean 'x86-64-avx512-bf16'"));
    assert_non_null(strstr(target_error("avx-vnni"), "did you mean 'x86-64-avx2-vnni'"));
    assert_non_null(strstr(target_error("dotprod"), "did you mean 'aarch64-neon-dotprod'"));
    assert_non_null(strstr(target_error("x86-64-sp"), "did you mean 'x86-64-spr'"));
    assert_int_equal(spr->isa, ISA_AVX512);
    assert_int_equal(bf->isa, ISA_AVX512);
    assert_int_equal(v2->isa, ISA_AVX2);
    assert_int_equal(dp->isa, ISA_NEON);
    /* each row needs what the one below it needs, and more */
    assert_int_equal(bf->features & a5->features, a5->features);
    assert_int_equal(spr->features & bf->features, bf->features);
    assert_int_equal(v2->features & a2->features, a2->features);
    unsigned want_bf = FR_CPU_AVX512BF16 | FR_CPU_AVX512VNNI | FR_CPU_AVX512DQ | FR_CPU_F16C;
    unsigned want_amx = FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8;
    assert_int_equal(bf->features & want_bf, want_bf);
    assert_int_equal(bf->features & want_amx, 0);
    assert_int_equal(spr->features & want_amx, want_amx);
    assert_int_equal(v2->features, FR_CPU_AVX2 | FR_CPU_FMA | FR_CPU_F16C | FR_CPU_AVXVNNI);
    assert_int_equal(dp->features, FR_CPU_NEON | FR_CPU_NEON_DOTPROD);
    assert_non_null(strstr(spr->attr, "amx-tile"));
    assert_non_null(strstr(spr->cflags, "-mamx-bf16"));
    assert_non_null(strstr(v2->attr, "avxvnni"));
    assert_non_null(strstr(dp->attr, "dotprod"));
    /* rows sharing an ISA share a multi: file; a row twice (or via native) may not */
    const Target *m = target_find("multi:x86-64-spr,x86-64-avx512-bf16,x86-64-avx512,x86-64-avx2-vnni,"
                                  "x86-64-avx2,generic");
    assert_non_null(m);
    assert_int_equal(m->nvariants, 6);
    assert_ptr_equal(m->variants[0], spr);
    assert_null(target_find("multi:x86-64-spr,x86-64-spr"));
    assert_non_null(target_find("multi:aarch64-neon-dotprod,aarch64-neon"));
    assert_non_null(strstr(target_error("multi:x86-64-spr,x86-64-spr"), "listed twice"));
    /* the vocabulary names its helpers by the row's tag */
    assert_string_equal(v_hsum(v2, "x"), "fu_hsum_avx2vnni(x)");
    assert_string_equal(v_hmax(spr, "x"), "fu_hmax_spr(x)");
    assert_string_equal(v_iota(dp), "fu_iota_neondp()");
    /* native: AMX, else BF16, else AVX-512, as far as the CPU (and the mask) allow */
    unsigned have = fr_cpu_features();
    const char *want = (have & spr->features) == spr->features  ? "x86-64-spr"
                       : (have & bf->features) == bf->features  ? "x86-64-avx512-bf16"
                       : (have & a5->features) == a5->features  ? "x86-64-avx512"
                       : (have & dp->features) == dp->features  ? "aarch64-neon-dotprod"
                       : (have & v2->features) == v2->features  ? "x86-64-avx2-vnni"
                                                                : NULL;
    if (want)
        assert_string_equal(target_find("native")->name, want);
    fr_cpu_mask(FR_CPU_AMX_TILE);
    assert_string_not_equal(target_find("native")->name, "x86-64-spr");
    fr_cpu_mask(FR_CPU_AVX512BF16);
    assert_string_not_equal(target_find("native")->name, "x86-64-avx512-bf16");
    assert_string_not_equal(target_find("native")->name, "x86-64-spr");
    if ((have & a5->features) == a5->features)
        assert_string_equal(target_find("native")->name, "x86-64-avx512");
    fr_cpu_mask(0);
}

static void test_cpu_mask(void **state) {
    (void)state;
    char buf[256];
    unsigned all = fr_cpu_features();
    fr_cpu_mask(FR_CPU_AVX512F);
    assert_int_equal(fr_cpu_features(), all & ~(unsigned)FR_CPU_AVX512F);
    fr_cpu_mask(0);
    assert_int_equal(fr_cpu_features(), all);
    assert_string_equal(fr_cpu_feature_names(FR_CPU_AVX2 | FR_CPU_FMA, buf, sizeof buf), "avx2,fma");
    assert_string_equal(fr_cpu_feature_names(0, buf, sizeof buf), "none");
    assert_string_equal(fr_cpu_feature_names(FR_CPU_AVX512BF16 | FR_CPU_AMX_INT8 | FR_CPU_NEON_DOTPROD, buf,
                                             sizeof buf),
                        "avx512bf16,amx-int8,dotprod");
    /* AMX is reported only where the kernel granted the tile state; else
     * a target that needs it is refused with the kernel's reason */
    fr_err err;
    memset(&err, 0, sizeof err);
    int amx = fr_amx_enable(&err);
    if (all & FR_CPU_AMX_TILE) {
        assert_int_equal(amx, FR_OK);
    } else if (amx != FR_OK) {
        assert_int_equal(amx, FR_EINVAL);
        assert_non_null(strstr(err.msg, "AMX"));
        print_message("   (no AMX here: %s)\n", err.msg);
        assert_int_equal(fr_cpu_check("blk", "x86-64-spr", FR_CPU_AMX_TILE), FR_ECPU);
        assert_non_null(strstr(fr_last_error(), "amx-tile"));
        assert_non_null(strstr(fr_last_error(), "arch_prctl"));
    }
    assert_int_equal(fr_amx_enable(NULL), amx); /* asked once, the same answer */
}

/* FUSEC_CPU_MASK's names: every feature's own, and the groups.  A child
 * process (this program with --print-features) reads the variable, as any
 * program does once; every name must be known (no "unknown feature" note)
 * and hide exactly its bits. */
static const char *self_path;

static void test_cpu_mask_env(void **state) {
    (void)state;
    static const struct {
        const char *mask;
        unsigned bits;
    } cases[] = {
        {"amx-tile,avx512bf16", FR_CPU_AMX_TILE | FR_CPU_AVX512BF16},
        {"amx", FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8},
        {"avx512", FR_CPU_AVX512F | FR_CPU_AVX512BW | FR_CPU_AVX512VL},
        {"f16c avx512vnni,avxvnni", FR_CPU_F16C | FR_CPU_AVX512VNNI | FR_CPU_AVXVNNI},
        {"avx512dq,avx512fp16,avxvnniint8,dotprod,amx-bf16,amx-int8",
         FR_CPU_AVX512DQ | FR_CPU_AVX512FP16 | FR_CPU_AVXVNNIINT8 | FR_CPU_NEON_DOTPROD | FR_CPU_AMX_BF16 |
             FR_CPU_AMX_INT8},
    };
    unsigned all = fr_cpu_features();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512] = "";
        FILE *p = popen(fu_format("FUSEC_CPU_MASK='%s' '%s' --print-features 2>&1", cases[i].mask, self_path), "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = '\0';
        assert_int_equal(pclose(p), 0);
        if (strstr(out, "unknown"))
            fail_msg("FUSEC_CPU_MASK='%s': %s", cases[i].mask, out);
        assert_int_equal(strtoul(out, NULL, 0), all & ~cases[i].bits);
    }
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fusec_vec_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    if (getenv("FUSEC_KEEP_TMP"))
        return 0;
    return sh(fu_format("rm -rf '%s'", tmpdir)) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--print-features") == 0)
        return printf("0x%x\n", fr_cpu_features()) > 0 ? 0 : 1;
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowprec_targets), cmocka_unit_test(test_cpu_mask_env),
        cmocka_unit_test(test_spelling), cmocka_unit_test(test_targets), cmocka_unit_test(test_cpu_mask),
        cmocka_unit_test(test_generic),  cmocka_unit_test(test_avx2),    cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_neon),     cmocka_unit_test(test_avx512bf16), cmocka_unit_test(test_neon_dotprod),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
