/*
 * test_pool.c - the persistent thread pool: every thread runs, barriers
 * order phases (each phase reads what every thread wrote in the one
 * before), the pool survives many calls and thread-count changes, and a
 * nested call runs inline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fusec_rt.h"

#define N 1000
typedef struct {
    int64_t a[N], b[N];
    int ran[64];
    int64_t total;
} Work;

/* phase 1: a[i] = i; barrier; phase 2: b[i] = a[N-1-i] (written by another
 * thread); barrier; thread 0 sums b. */
static void phases(void *ctx, int tid, int nth) {
    Work *w = ctx;
    int64_t lo, hi;
    w->ran[tid]++;
    fr_split(N, tid, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        w->a[i] = i;
    fr_barrier(nth);
    for (int64_t i = lo; i < hi; i++)
        w->b[i] = w->a[N - 1 - i] * 2;
    fr_barrier(nth);
    if (tid == 0) {
        w->total = 0;
        for (int i = 0; i < N; i++)
            w->total += w->b[i];
    }
}

static void run_with(int threads, int calls) {
    fr_set_num_threads(threads);
    assert_int_equal(fr_pool_threads(), threads);
    Work *w = calloc(1, sizeof *w);
    assert_non_null(w);
    for (int c = 0; c < calls; c++) {
        memset(w->b, 0, sizeof w->b);
        fr_parallel(phases, w);
        assert_int_equal(w->total, (int64_t)N * (N - 1)); /* 2 * sum(0..N-1) */
    }
    for (int t = 0; t < threads; t++)
        assert_int_equal(w->ran[t], calls);
    free(w);
}

static void test_one_thread(void **s) { (void)s; run_with(1, 3); }
static void test_four_threads_many_calls(void **s) { (void)s; run_with(4, 300); }
static void test_resize(void **s) {
    (void)s;
    run_with(3, 10);
    run_with(2, 10);
    run_with(5, 10);
}

/* Worker threads must not call cmocka's assertions (a failure there
 * longjmps on the wrong stack and crashes the program instead of failing
 * the test): they record what they saw and the test asserts on it after
 * fr_parallel returns. */
typedef struct {
    int count, tid, nth;
} Inner;
static void inner(void *ctx, int tid, int nth) {
    Inner *in = ctx;
    in->tid = tid;
    in->nth = nth;
    in->count++;
}
static void outer(void *ctx, int tid, int nth) {
    Inner *ins = ctx;
    (void)nth;
    fr_parallel(inner, &ins[tid]);
}
static void test_nested_runs_inline(void **s) {
    (void)s;
    fr_set_num_threads(3);
    Inner ins[3];
    for (int t = 0; t < 3; t++)
        ins[t] = (Inner){0, -1, -1};
    fr_parallel(outer, ins);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(ins[t].count, 1);
        assert_int_equal(ins[t].tid, 0);  /* inline: the nested call's only thread */
        assert_int_equal(ins[t].nth, 1);
    }
}

static void test_split(void **s) {
    (void)s;
    int64_t b, e, covered = 0, prev = 0;
    for (int t = 0; t < 7; t++) {
        fr_split(100, t, 7, &b, &e);
        assert_int_equal(b, prev);
        assert_true(e - b == 14 || e - b == 15);
        covered += e - b;
        prev = e;
    }
    assert_int_equal(covered, 100);
    fr_split(2, 5, 7, &b, &e); /* more threads than items: empty share */
    assert_int_equal(e - b, 0);
}

/* Records each thread's buffer (asserted on by the test, not here). */
static void touch_scratch(void *ctx, int tid, int nth) {
    unsigned char **seen = ctx;
    (void)nth;
    unsigned char *p = fr_scratch(tid);
    seen[tid] = p;
    if (p && (uintptr_t)p % FR_ALIGN == 0)
        memset(p, tid + 1, 4096); /* each thread owns its buffer: ASan would catch overlap */
}
static void test_scratch(void **s) {
    (void)s;
    fr_err err;
    fr_set_num_threads(2);
    assert_int_equal(fr_scratch_reserve(1024, &err), FR_OK);
    assert_int_equal(fr_scratch_reserve(4096, &err), FR_OK); /* grows */
    fr_set_num_threads(3);
    assert_int_equal(fr_scratch_reserve(4096, &err), FR_OK); /* one more slot */
    unsigned char *seen[3] = {NULL, NULL, NULL};
    fr_parallel(touch_scratch, seen);
    for (int t = 0; t < 3; t++) {
        assert_non_null(seen[t]);
        assert_int_equal((uintptr_t)seen[t] % FR_ALIGN, 0);
    }
    unsigned char *a = fr_scratch(0), *b = fr_scratch(2);
    assert_true(a != b);
    assert_int_equal(a[4095], 1);
    assert_int_equal(b[0], 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread),
        cmocka_unit_test(test_four_threads_many_calls),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_nested_runs_inline),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_scratch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fr_pool_shutdown();
    return rc;
}
