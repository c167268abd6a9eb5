/*
 * test_pool.c - the persistent thread pool: every thread runs, barriers
 * order phases (each phase reads what every thread wrote in the one
 * before), the pool survives many calls and thread-count changes, a
 * nested call runs inline, each call's scratch is its own, and several
 * callers at once each get their own answer.
 */
#include <pthread.h>
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

/* Each thread fills its own scratch with its id + 1 (ASan would catch a
 * buffer that runs into the next thread's); the test asserts on the memory
 * afterwards (workers never call cmocka's assertions). */
static void touch_scratch(void *ctx, int tid, int nth) {
    size_t stride = *(const size_t *)ctx;
    (void)nth;
    unsigned char *p = fr_scratch(tid);
    if (p && (uintptr_t)p % FR_ALIGN == 0)
        memset(p, tid + 1, stride);
}
static void test_scratch(void **s) {
    (void)s;
    size_t stride = 4096;
    fr_set_num_threads(3);
    unsigned char *mem = fr_alloc(3 * stride);
    assert_non_null(mem);
    int n = fr_pool_acquire(3);
    assert_int_equal(n, 3);
    fr_pool_run(n, touch_scratch, &stride, mem, stride);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(mem[t * stride], t + 1);
        assert_int_equal(mem[t * stride + stride - 1], t + 1);
    }
    assert_null(fr_scratch(0)); /* outside a call there is none */
    fr_free(mem);
}

/* A call may use fewer threads than it acquired. */
static void count_threads(void *ctx, int tid, int nth) {
    int *ran = ctx;
    __atomic_add_fetch(&ran[tid < nth ? tid : 3], tid < nth ? 1 : 100, __ATOMIC_RELAXED);
}
static void test_fewer_than_acquired(void **s) {
    (void)s;
    int ran[4] = {0};
    int n = fr_pool_acquire(4);
    assert_int_equal(n, 4);
    fr_pool_run(2, count_threads, ran, NULL, 0);
    assert_int_equal(ran[0], 1);
    assert_int_equal(ran[1], 1);
    assert_int_equal(ran[2], 0);
    assert_int_equal(ran[3], 0);
    /* and one thread never takes the pool */
    assert_int_equal(fr_pool_acquire(1), 1);
    fr_pool_run(1, count_threads, ran, NULL, 0);
    assert_int_equal(ran[0], 2);
}

/* Several callers at once: each runs its own phases with its own scratch
 * and gets its own right answer; the pool serves them one at a time. */
typedef struct {
    Work *w;
    unsigned char *scratch;
    int bad;
} Caller;
static void phases_scratch(void *ctx, int tid, int nth) {
    Caller *c = ctx;
    unsigned char *p = fr_scratch(tid);
    if (p != c->scratch + (size_t)tid * 256) {
        c->bad = 1;
        p = c->scratch + (size_t)tid * 256;
    }
    memset(p, 0x5a, 256);
    phases(c->w, tid, nth);
    for (int i = 0; i < 256; i++)
        if (p[i] != 0x5a)
            c->bad = 1;
}
static void *caller_main(void *arg) {
    Caller *c = arg;
    for (int k = 0; k < 200; k++) {
        memset(c->w->b, 0, sizeof c->w->b);
        int n = fr_pool_acquire(fr_pool_threads());
        fr_pool_run(n, phases_scratch, c, c->scratch, 256);
        if (c->w->total != (int64_t)N * (N - 1))
            c->bad = 1;
    }
    return NULL;
}
static void test_concurrent_callers(void **s) {
    (void)s;
    enum { NC = 4 };
    pthread_t th[NC];
    Caller c[NC];
    fr_set_num_threads(3);
    for (int i = 0; i < NC; i++) {
        c[i].w = calloc(1, sizeof *c[i].w);
        c[i].scratch = fr_alloc(3 * 256);
        c[i].bad = 0;
        assert_non_null(c[i].w);
        assert_non_null(c[i].scratch);
    }
    for (int i = 0; i < NC; i++)
        assert_int_equal(pthread_create(&th[i], NULL, caller_main, &c[i]), 0);
    for (int i = 0; i < NC; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].bad, 0);
        free(c[i].w);
        fr_free(c[i].scratch);
    }
}

/* A nested call inside a task keeps the outer call's scratch afterwards. */
static int nested_bad;
static void nested_inner(void *ctx, int tid, int nth) {
    (void)ctx;
    if (tid != 0 || nth != 1 || !fr_scratch(0))
        __atomic_store_n(&nested_bad, 1, __ATOMIC_RELAXED);
    else
        memset(fr_scratch(0), 0x77, 64);
}
static void nested_outer(void *ctx, int tid, int nth) {
    unsigned char *inner = ctx;
    unsigned char *mine = fr_scratch(tid);
    (void)nth;
    int n = fr_pool_acquire(4);
    if (n != 1)
        __atomic_store_n(&nested_bad, 1, __ATOMIC_RELAXED);
    fr_pool_run(n, nested_inner, NULL, inner + (size_t)tid * 64, 64);
    if (fr_scratch(tid) != mine)
        __atomic_store_n(&nested_bad, 1, __ATOMIC_RELAXED);
}
static void test_nested_scratch(void **s) {
    (void)s;
    fr_set_num_threads(3);
    unsigned char *outer = fr_alloc(3 * 64), *inner = fr_alloc(3 * 64);
    assert_non_null(outer);
    assert_non_null(inner);
    int n = fr_pool_acquire(3);
    fr_pool_run(n, nested_outer, inner, outer, 64);
    assert_int_equal(nested_bad, 0);
    for (int t = 0; t < n; t++)
        assert_int_equal(inner[t * 64 + 63], 0x77);
    fr_free(outer);
    fr_free(inner);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread),
        cmocka_unit_test(test_four_threads_many_calls),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_nested_runs_inline),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_fewer_than_acquired),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_nested_scratch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fr_pool_shutdown();
    return rc;
}
