/*
 * blockrun.c - compiling and running generated blocks for the unit tests
 * (blockrun.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "blockrun.h"
#include "fusec_rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

const char br_driver_src[] =
    "#include \"fusec_rt.h\"\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "extern const fr_block_desc DESC;\n"
    "#define CANARY 64\n"
    "static void die(const char *m) {\n"
    "    fprintf(stderr, \"driver: %s\\n\", m);\n"
    "    exit(2);\n"
    "}\n"
    "static void rd(FILE *f, void *p, size_t n) {\n"
    "    if (n && fread(p, 1, n, f) != n)\n"
    "        die(\"short read\");\n"
    "}\n"
    "static void wr(FILE *f, const void *p, size_t n) {\n"
    "    if (n && fwrite(p, 1, n, f) != n)\n"
    "        die(\"short write\");\n"
    "}\n"
    "static unsigned char *guarded(size_t n) {\n"
    "    unsigned char *p = fr_alloc(n + CANARY);\n"
    "    if (!p)\n"
    "        die(\"out of memory\");\n"
    "    memset(p, 0xff, n + CANARY);\n"
    "    return p;\n"
    "}\n"
    "static void check_canary(const unsigned char *p, size_t n, const char *what) {\n"
    "    for (size_t i = 0; i < CANARY; i++)\n"
    "        if (p[n + i] != 0xff)\n"
    "            die(what);\n"
    "}\n"
    "int main(int argc, char **argv) {\n"
    "    const fr_block_desc *b = &DESC;\n"
    "    int64_t cap, ncalls, syms[FR_MAX_SYMS] = {0}, crow[FR_MAX_SYMS] = {0};\n"
    "    void *w[64] = {0}, *x[64] = {0}, *y[64] = {0};\n"
    "    float *c[64] = {0};\n"
    "    size_t ysz[64];\n"
    "    FILE *in, *out;\n"
    "    if (argc != 3 || b->nweights > 64 || b->ninputs > 64 || b->noutputs > 64 || b->ncaches > 64)\n"
    "        die(\"usage: driver IN OUT\");\n"
    "    if (!(in = fopen(argv[1], \"rb\")) || !(out = fopen(argv[2], \"wb\")))\n"
    "        die(\"cannot open files\");\n"
    "    rd(in, &cap, 8);\n"
    "    if (b->cache_sym >= 0)\n"
    "        crow[b->cache_sym] = 1;\n"
    "    for (int i = 0; i < b->ncaches; i++) {\n"
    "        size_t n = (size_t)(cap * fr_desc_numel(&b->caches[i], crow)) * 4;\n"
    "        c[i] = (float *)guarded(n);\n"
    "        rd(in, c[i], n);\n"
    "    }\n"
    "    for (int i = 0; i < b->nweights; i++) {\n"
    "        size_t n = (size_t)fr_desc_numel(&b->weights[i], syms) * 4;\n"
    "        w[i] = malloc(n + 4);\n"
    "        if (!w[i])\n"
    "            die(\"out of memory\");\n"
    "        rd(in, w[i], n);\n"
    "    }\n"
    "    rd(in, &ncalls, 8);\n"
    "    for (int64_t call = 0; call < ncalls; call++) {\n"
    "        rd(in, syms, 8 * (size_t)b->nsyms);\n"
    "        for (int i = 0; i < b->ninputs; i++) {\n"
    "            size_t n = (size_t)fr_desc_numel(&b->inputs[i], syms) * 4;\n"
    "            free(x[i]);\n"
    "            if (!(x[i] = malloc(n + 4)))\n"
    "                die(\"out of memory\");\n"
    "            rd(in, x[i], n);\n"
    "        }\n"
    "        for (int i = 0; i < b->noutputs; i++) {\n"
    "            int64_t n = fr_desc_numel(&b->outputs[i], syms);\n"
    "            ysz[i] = n > 0 ? (size_t)n * 4 : 0;\n"
    "            fr_free(y[i]);\n"
    "            y[i] = guarded(ysz[i]);\n"
    "        }\n"
    "        size_t wsz = b->workspace_size(syms);\n"
    "        unsigned char *ws = guarded(wsz);\n"
    "        int32_t rc = b->run((const void *const *)w, c, cap, syms, (const void *const *)x, y, ws, wsz);\n"
    "        check_canary(ws, wsz, \"workspace overrun\");\n"
    "        fr_free(ws);\n"
    "        wr(out, &rc, 4);\n"
    "        for (int i = 0; i < b->noutputs; i++) {\n"
    "            check_canary(y[i], ysz[i], \"output overrun\");\n"
    "            if (rc == 0)\n"
    "                wr(out, y[i], ysz[i]);\n"
    "        }\n"
    "    }\n"
    "    for (int i = 0; i < b->ncaches; i++) {\n"
    "        size_t n = (size_t)(cap * fr_desc_numel(&b->caches[i], crow)) * 4;\n"
    "        check_canary((unsigned char *)c[i], n, \"cache overrun\");\n"
    "        wr(out, c[i], n);\n"
    "        fr_free(c[i]);\n"
    "    }\n"
    "    for (int i = 0; i < 64; i++) {\n"
    "        free(w[i]);\n"
    "        free(x[i]);\n"
    "        fr_free(y[i]);\n"
    "    }\n"
    "    if (fclose(out) != 0)\n"
    "        die(\"cannot write output\");\n"
    "    fclose(in);\n"
    "    return 0;\n"
    "}\n";

int br_run_argv(char *const argv[], int threads) {
    pid_t pid = fork();
    int st;
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (threads > 0) {
            char v[16];
            snprintf(v, sizeof v, "%d", threads);
            setenv("FUSE_NUM_THREADS", v, 1);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool br_have_program(const char *name) {
    char *argv[] = {"sh", "-c", (char *)fu_format("command -v %s >/dev/null 2>&1", name), NULL};
    return br_run_argv(argv, 0) == 0;
}

/* NEON always runs (cross-compiled, under qemu): scripts/install-deps.sh
 * installs the tools, and br_build fails when they are missing.  An x86
 * target whose features this CPU lacks can only be compiled. */
BrRun br_how_to_run(const Target *t) {
    if (t->isa == ISA_NEON)
        return BR_QEMU;
    if (t->isa == ISA_GENERIC)
        return BR_NATIVE;
    unsigned need = t->features, have = fr_cpu_features();
    return (need & have) == need ? BR_NATIVE : BR_COMPILE_ONLY;
}

void br_skip_compile_only(const Target *t) {
    char names[128];
    fr_cpu_feature_names(t->features & ~fr_cpu_features(), names, sizeof names);
    for (char *p = names; *p; p++)
        if (*p == ',')
            *p = ' ';
    /* tests/unit/run.sh accepts this skip only where /proc/cpuinfo agrees */
    print_message("SKIPPED: this CPU has no %s (%s compiled, not run)\n", names, t->name);
    skip();
}

/* Pushes the space-separated words of s. */
static void push_words(char **argv, int *a, const char *s) {
    char *c = fu_strdup(s), *p = strtok(c, " ");
    while (p) {
        argv[(*a)++] = p;
        p = strtok(NULL, " ");
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

const char *br_build(const char *dir, const char *stem, const char *block, const Target *t, BrRun run) {
    const char *cfile = fu_format("%s/%s.c", dir, stem), *prog = fu_format("%s/%s_prog", dir, stem);
    const char *driver = fu_format("%s/driver.c", dir);
    const char *cc = getenv("CC");
    write_text(driver, br_driver_src);
    if (run == BR_QEMU && !(br_have_program("aarch64-linux-gnu-gcc") && br_have_program("qemu-aarch64")))
        fail_msg("%s needs aarch64-linux-gnu-gcc and qemu-aarch64: run scripts/install-deps.sh", t->name);
    char *argv[96];
    int a = 0;
    /* CC may be a command line ("cc --coverage", "ccache gcc") */
    push_words(argv, &a, run == BR_QEMU ? "aarch64-linux-gnu-gcc" : cc && *cc ? cc : "cc");
    push_words(argv, &a, "-std=c99 -O2 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes "
                         "-Wmissing-prototypes -Werror");
    if (t->cflags && *t->cflags)
        push_words(argv, &a, t->cflags);
    if (FUSEC_SAN && run == BR_NATIVE)
        argv[a++] = "-fsanitize=address,undefined";
    argv[a++] = "-I" FUSEC_RUNTIME_DIR;
    argv[a++] = (char *)fu_format("-DDESC=%s_desc", block);
    argv[a++] = (char *)cfile;
    if (run == BR_COMPILE_ONLY) {
        argv[a++] = "-c";
        argv[a++] = "-o";
        argv[a++] = (char *)fu_format("%s/%s.o", dir, stem);
        argv[a] = NULL;
        if (br_run_argv(argv, 0) != 0)
            fail_msg("generated C for %s (%s) does not compile (kept in %s)", block, t->name, dir);
        return NULL;
    }
    argv[a++] = (char *)driver;
    if (run == BR_QEMU) {
        /* the runtime's sources, for the other architecture */
        push_words(argv, &a, "-static -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE");
        static const char *const rt[] = {"amx", "block", "cpu", "dtype", "err", "mem", "pool", "safetensors",
                                         "stwriter", "threads", "timer", "tp"};
        for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++)
            argv[a++] = (char *)fu_format("%s/%s.c", FUSEC_RUNTIME_DIR, rt[i]);
    } else {
        argv[a++] = FUSEC_LIB_DIR "/libfusec_rt.a";
    }
    argv[a++] = "-lm";
    argv[a++] = "-lpthread";
    argv[a++] = "-o";
    argv[a++] = (char *)prog;
    argv[a] = NULL;
    if (br_run_argv(argv, 0) != 0)
        fail_msg("generated C for %s (%s) does not compile (kept in %s)", block, t->name, dir);
    return prog;
}

int br_run(const char *prog, BrRun run, const char *in, const char *out, int threads) {
    char *argv[8];
    int a = 0;
    if (run == BR_QEMU) {
        argv[a++] = "qemu-aarch64";
        argv[a++] = "-L";
        argv[a++] = "/usr/aarch64-linux-gnu";
    }
    argv[a++] = (char *)prog;
    argv[a++] = (char *)in;
    argv[a++] = (char *)out;
    argv[a] = NULL;
    return br_run_argv(argv, threads);
}

void br_put(FILE *f, const double *v, int64_t n, DType dt) {
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_I32) {
            int32_t x = (int32_t)v[i];
            assert_int_equal(fwrite(&x, 4, 1, f), 1);
        } else {
            float x = (float)v[i];
            assert_int_equal(fwrite(&x, 4, 1, f), 1);
        }
    }
}

void br_get(FILE *f, double *v, int64_t n, DType dt) {
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_I32) {
            int32_t x;
            assert_int_equal(fread(&x, 4, 1, f), 1);
            v[i] = x;
        } else {
            float x;
            assert_int_equal(fread(&x, 4, 1, f), 1);
            v[i] = x;
        }
    }
}

double br_urand(uint64_t *rng, double lo, double hi) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return (double)(float)(lo + (hi - lo) * (double)(*rng >> 11) / 9007199254740992.0);
}

double *br_rand_data(uint64_t *rng, int64_t n, double lo, double hi, bool integer) {
    double *d = fu_alloc(sizeof *d * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        d[i] = integer ? floor(br_urand(rng, lo, hi)) : br_urand(rng, lo, hi);
    return d;
}
