/*
 * pool.c - a persistent thread pool with a spin-then-sleep dispatch and a
 * spinning barrier, so that one call can run a whole block on all threads
 * (the CPU analogue of a monokernel): threads are created once, a call wakes
 * them, kernels separate their phases with fr_barrier(), and no thread is
 * created or joined per call.
 *
 * Synchronisation uses the GCC/Clang __atomic builtins (C99 has no
 * <stdatomic.h>); waiting spins with the CPU's pause instruction first and
 * only then yields (barrier) or sleeps on a condition variable (idle
 * workers between calls), so back-to-back kernels never pay a syscall.
 */
#include "fusec_rt.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#define FR_MAX_THREADS 256
#define SPIN_ITERS 20000 /* ~tens of microseconds of pause before yielding */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static struct {
    pthread_t threads[FR_MAX_THREADS];
    int nthreads;                 /* including the caller; 0 = not started */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned long gen;            /* bumped once per fr_parallel call */
    unsigned long start_gen;      /* gen when the workers were started */
    int shutdown;
    fr_task fn;
    void *ctx;
    int done;                     /* workers finished with the current call */
    int bar_count;                /* threads arrived at the current barrier */
    unsigned long bar_gen;        /* bumped when a barrier opens */
    int active;                   /* inside fr_parallel: nested calls run inline */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    /* pool_start returns before the next call bumps gen, so this is the
     * baseline whether the thread is scheduled before or after that call */
    unsigned long seen = pool.start_gen;
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) == seen &&
               !__atomic_load_n(&pool.shutdown, __ATOMIC_ACQUIRE)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            while (__atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) == seen && !pool.shutdown)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        if (__atomic_load_n(&pool.shutdown, __ATOMIC_ACQUIRE))
            return NULL;
        seen = __atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE);
        pool.fn(pool.ctx, tid, pool.nthreads);
        __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
    }
}

void fr_pool_shutdown(void) {
    if (pool.nthreads <= 1) {
        pool.nthreads = 0;
        return;
    }
    pthread_mutex_lock(&pool.lock);
    __atomic_store_n(&pool.shutdown, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int t = 1; t < pool.nthreads; t++)
        pthread_join(pool.threads[t], NULL);
    pool.nthreads = 0;
    pool.shutdown = 0;
}

/* Starts n-1 workers; on failure keeps the ones that started. */
static void pool_start(int n) {
    static int registered;
    if (!registered) {
        atexit(fr_pool_shutdown);
        registered = 1;
    }
    pool.nthreads = 1;
    pool.start_gen = pool.gen;
    for (int t = 1; t < n; t++) {
        if (pthread_create(&pool.threads[t], NULL, worker, (void *)(intptr_t)t) != 0)
            break;
        pool.nthreads = t + 1;
    }
}

int fr_pool_threads(void) {
    int n = fr_get_num_threads();
    return n < 1 ? 1 : n > FR_MAX_THREADS ? FR_MAX_THREADS : n;
}

void fr_parallel(fr_task fn, void *ctx) {
    int n = fr_pool_threads();
    if (n == 1 || pool.active) {
        fn(ctx, 0, 1);
        return;
    }
    if (pool.nthreads != n) {
        fr_pool_shutdown();
        pool_start(n);
        if (pool.nthreads == 1) { /* could not start threads: run alone */
            fn(ctx, 0, 1);
            return;
        }
    }
    pool.active = 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.done = 0;
    pool.bar_count = 0;
    pthread_mutex_lock(&pool.lock);
    __atomic_add_fetch(&pool.gen, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    fn(ctx, 0, pool.nthreads);
    int spins = 0;
    while (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) != pool.nthreads - 1)
        if (++spins < SPIN_ITERS)
            cpu_relax();
        else
            sched_yield();
    pool.active = 0;
}

void fr_barrier(int nthreads) {
    if (nthreads <= 1)
        return;
    unsigned long gen = __atomic_load_n(&pool.bar_gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&pool.bar_count, 1, __ATOMIC_ACQ_REL) == nthreads) {
        __atomic_store_n(&pool.bar_count, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&pool.bar_gen, 1, __ATOMIC_RELEASE);
        return;
    }
    int spins = 0;
    while (__atomic_load_n(&pool.bar_gen, __ATOMIC_ACQUIRE) == gen)
        if (++spins < SPIN_ITERS)
            cpu_relax();
        else
            sched_yield();
}

void fr_split(int64_t n, int tid, int nthreads, int64_t *begin, int64_t *end) {
    int64_t q = n / nthreads, r = n % nthreads;
    *begin = tid * q + (tid < r ? tid : r);
    *end = *begin + q + (tid < r);
}

/* Scratch: one buffer per thread slot, grown on demand and kept. */
static struct {
    void *buf[FR_MAX_THREADS];
    size_t bytes;
    int nthreads;
} scratch;

int fr_scratch_reserve(size_t bytes, fr_err *err) {
    int n = fr_pool_threads();
    if (bytes <= scratch.bytes && n <= scratch.nthreads)
        return FR_OK;
    size_t want = bytes > scratch.bytes ? bytes : scratch.bytes;
    int have = n > scratch.nthreads ? n : scratch.nthreads;
    for (int t = 0; t < have; t++) {
        if (scratch.buf[t] && want <= scratch.bytes)
            continue;
        void *p = fr_alloc(want);
        if (!p)
            return fr_seterr(err, FR_ENOMEM, "cannot allocate %zu bytes of scratch for thread %d", want, t);
        fr_free(scratch.buf[t]);
        scratch.buf[t] = p;
    }
    scratch.bytes = want;
    scratch.nthreads = have;
    return FR_OK;
}

void *fr_scratch(int tid) { return scratch.buf[tid]; }
