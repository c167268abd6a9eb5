/*
 * target.c - the table of code-generation targets.
 *
 * A target descriptor tells the emitter what the machine offers: how many
 * floats a vector register holds, how many registers there are, which flags
 * the C compiler needs, the GCC target attribute that lets one function use
 * the ISA without global -m flags, the preprocessor condition under which it
 * compiles at all, and the CPU features (fusec_rt.h) the dispatcher of a
 * multi-target file checks before choosing it.  The intrinsic table that
 * maps the emitter's vector vocabulary to the ISA lives in vec.c, indexed by
 * `isa`, so kernels are written once and never carry an #ifdef per use.
 *
 * Two names are not rows: "native" is the best row this machine can run
 * (cpuid/xgetbv through the runtime's fr_cpu_features, so FUSEC_CPU_MASK
 * applies to it too), and "multi:A,B,..." builds a descriptor whose variants
 * are rows, in the order the dispatcher tries them.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <stdlib.h>
#include <string.h>

#define AVX512_BITS (FR_CPU_AVX512F | FR_CPU_AVX512BW | FR_CPU_AVX512VL | FR_CPU_AVX2 | FR_CPU_FMA)

static const Target targets[] = {
    {.name = "generic", .cflags = "", .vec_floats = 1, .nregs = 16, .isa = ISA_GENERIC,
     .tag = "generic", .attr = "", .guard = "", .features = 0},
    {.name = "x86-64-avx2", .cflags = "-mavx2 -mfma", .vec_floats = 8, .nregs = 16,
     .isa = ISA_AVX2, .tag = "avx2", .attr = "avx2,fma",
     .guard = "defined(__x86_64__) || defined(__i386__)", .features = FR_CPU_AVX2 | FR_CPU_FMA},
    {.name = "x86-64-avx512", .cflags = "-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma",
     .vec_floats = 16, .nregs = 32, .isa = ISA_AVX512, .tag = "avx512",
     .attr = "avx512f,avx512bw,avx512vl,avx2,fma",
     .guard = "defined(__x86_64__) || defined(__i386__)", .features = AVX512_BITS},
    {.name = "aarch64-neon", .cflags = "", .vec_floats = 4, .nregs = 32, .isa = ISA_NEON,
     .tag = "neon", .attr = "", .guard = "defined(__aarch64__)", .features = FR_CPU_NEON},
};

#define NTARGETS (sizeof targets / sizeof targets[0])

static const Target *find_row(const char *name, size_t len) {
    for (size_t i = 0; i < NTARGETS; i++)
        if (strlen(targets[i].name) == len && strncmp(targets[i].name, name, len) == 0)
            return &targets[i];
    return NULL;
}

/* The best row whose features this CPU has (the table is not in preference
 * order, so rank explicitly: widest vectors first). */
static const Target *native(void) {
    static const char *const order[] = {"x86-64-avx512", "aarch64-neon", "x86-64-avx2"};
    unsigned have = fr_cpu_features();
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const Target *t = find_row(order[i], strlen(order[i]));
        if ((t->features & have) == t->features)
            return t;
    }
    return &targets[0];
}

/* "multi:A,B,...": every name a row (or native), no ISA twice, at most
 * FU_MAX_VARIANTS.  The result is cached so that equal names give equal
 * pointers, like the rows.  The cache lives outside the arena (static
 * storage, names from malloc), because a driver may release the arena
 * between inputs (the fuzz harness does) while the cache lives on. */
static const Target *multi(const char *name) {
    static Target made[16];
    static int nmade;
    static Target scratch;
    const char *p = name + strlen("multi:");
    Target *t;
    for (int i = 0; i < nmade; i++)
        if (strcmp(made[i].name, name) == 0)
            return &made[i];
    t = nmade < (int)(sizeof made / sizeof made[0]) ? &made[nmade] : &scratch;
    memset(t, 0, sizeof *t);
    t->name = name; /* the caller's, until the name is known to be valid */
    t->cflags = "";
    t->tag = "multi";
    t->attr = "";
    t->guard = "";
    t->isa = ISA_GENERIC;
    while (*p) {
        size_t n = strcspn(p, ",");
        const Target *v = n == 6 && strncmp(p, "native", 6) == 0 ? native() : find_row(p, n);
        if (!v || t->nvariants == FU_MAX_VARIANTS)
            return NULL;
        for (int i = 0; i < t->nvariants; i++)
            if (t->variants[i]->isa == v->isa)
                return NULL;
        t->variants[t->nvariants++] = v;
        if (v->vec_floats > t->vec_floats)
            t->vec_floats = v->vec_floats;
        p += n;
        if (*p == ',' && *++p == '\0')
            return NULL; /* a trailing comma */
    }
    if (t->nvariants == 0)
        return NULL;
    t->nregs = t->variants[0]->nregs;
    char *copy = malloc(strlen(name) + 1);
    if (!copy)
        fu_internal(__FILE__, __LINE__, "out of memory");
    strcpy(copy, name);
    t->name = copy;
    if (t != &scratch)
        nmade++;
    return t;
}

/* The target called `name` (NULL means "generic"), or NULL if unknown. */
const Target *target_find(const char *name) {
    if (!name)
        name = "generic";
    if (strcmp(name, "native") == 0)
        return native();
    if (strncmp(name, "multi:", 6) == 0)
        return multi(name);
    return find_row(name, strlen(name));
}

const char *target_names(void) {
    return "generic (default), x86-64-avx2, x86-64-avx512, aarch64-neon, native, multi:T1,T2,...";
}
