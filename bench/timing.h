/*
 * timing.h - the clock and the sort order of the stand-alone bench drivers
 * (bench/peer_llama.c, bench/moe/w7_main.c), which do not link the fusec
 * runtime's fr_now: milliseconds on the monotonic clock, and doubles in
 * ascending order for qsort (medians).
 */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
#endif
