/*
 * variant_main.c - prints which variant a block's NAME_forward runs on this
 * CPU, and the CPU features it saw (after FUSEC_CPU_MASK), for the
 * dispatcher tests in tests/targets/run.sh:  "x86-64-avx2 avx2,fma".
 * Build with -DVARIANT=NAME_variant and the block's .c and the runtime.
 */
#include "fusec_rt.h"

#include <stdio.h>

#ifndef VARIANT
#error "build with -DVARIANT=NAME_variant"
#endif

const char *VARIANT(void);

int main(void) {
    char buf[512];
    if (printf("%s %s\n", VARIANT(), fr_cpu_feature_names(fr_cpu_features(), buf, sizeof buf)) < 0)
        return 1;
    return 0;
}
