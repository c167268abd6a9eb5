/*
 * mem.c - aligned, zeroed allocation for workspaces, caches and tensor copies.
 *
 * 64 bytes is a cache line and the widest vector register fusec targets
 * (AVX-512), so any buffer from fr_alloc can be read with aligned vector
 * loads.  The size is rounded up to a whole number of lines so that a kernel
 * may read the last partial vector of a row without leaving the allocation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"

void *fr_alloc(size_t nbytes)
{
    void *p = NULL;
    size_t rounded;

    if (nbytes == 0 || nbytes > SIZE_MAX - (FR_ALIGN - 1))
        return NULL;
    rounded = (nbytes + (FR_ALIGN - 1)) & ~(size_t)(FR_ALIGN - 1);
    if (posix_memalign(&p, FR_ALIGN, rounded) != 0)
        return NULL;
    memset(p, 0, rounded);
    return p;
}

void fr_free(void *p)
{
    free(p);
}
