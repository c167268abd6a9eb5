/*
 * target.c - the table of code-generation targets.
 *
 * A target descriptor tells the emitter what the machine offers: how many
 * floats a vector register holds, how many registers there are, and which
 * flags the C compiler needs.  Only "generic" (portable scalar C) exists
 * now.  A SIMD target (x86-64-avx2, x86-64-avx512, aarch64-neon) becomes one
 * more row here, together with the intrinsic table that maps the emitter's
 * small vector vocabulary (load, store, fma, add, mul, max, reduce,
 * broadcast) to that ISA, ggml style, so kernels are written once against the
 * vocabulary and never carry an #ifdef per use.
 */
#include "fusec.h"

#include <string.h>

static const Target targets[] = {
    /* name       cflags  vec_floats  nregs */
    {"generic",   "",     1,          16},
};

/* The target called `name` (NULL means "generic"), or NULL if unknown. */
const Target *target_find(const char *name) {
    size_t i;
    if (!name)
        name = "generic";
    for (i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (strcmp(targets[i].name, name) == 0)
            return &targets[i];
    return NULL;
}
