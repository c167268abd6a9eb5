/*
 * threads.c - how many threads kernels may use.
 *
 * The count comes from fr_set_num_threads when a program set one, else from
 * the FUSE_NUM_THREADS environment variable, else 1.  The variable is read on
 * every call rather than cached so that a test or a driver can change it
 * between runs.  Bad values never reach a kernel: anything that is not a
 * whole positive decimal number means 1, and counts are capped at
 * FR_MAX_THREADS because no machine fusec targets has more cores and a typo
 * such as 100000 must not create a hundred thousand threads.
 *
 * There is no thread pool yet; kernels ask this for their partition count.
 * The setting is a plain int: set it before running kernels, not during.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "fusec_rt.h"

#define FR_MAX_THREADS 1024

static int requested; /* 0: not set, use the environment */

static int clamp_threads(long n)
{
    if (n < 1)
        return 1;
    if (n > FR_MAX_THREADS)
        return FR_MAX_THREADS;
    return (int)n;
}

/* n < 1 forgets an earlier setting, so FUSE_NUM_THREADS applies again. */
void fr_set_num_threads(int n)
{
    requested = n < 1 ? 0 : clamp_threads(n);
}

/* Parses FUSE_NUM_THREADS: optional blanks, a decimal number, optional blanks. */
static int env_threads(void)
{
    const char *s = getenv("FUSE_NUM_THREADS");
    char *end;
    long n;

    if (!s)
        return 1;
    errno = 0;
    n = strtol(s, &end, 10);
    if (end == s)
        return 1;
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (*end != '\0')
        return 1;
    /* A number too large for long is still a request for "many". */
    if (errno == ERANGE)
        return n == LONG_MAX ? FR_MAX_THREADS : 1;
    return clamp_threads(n);
}

int fr_get_num_threads(void)
{
    return requested > 0 ? requested : env_threads();
}
