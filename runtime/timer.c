/*
 * timer.c - a monotonic clock for benchmarks and the check harness.
 *
 * CLOCK_MONOTONIC never jumps with wall-clock adjustments, so differences of
 * fr_now() are durations.  POSIX requires it; should clock_gettime still fail,
 * fr_now returns 0.0 and durations measure as 0 rather than garbage.
 */
#include <time.h>

#include "fusec_rt.h"

double fr_now(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
