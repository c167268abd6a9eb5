/*
 * pool.c - a persistent thread pool with a spin-then-sleep dispatch and a
 * spinning barrier, so that one call can run a whole block on all threads
 * (the CPU analogue of a monokernel): threads are created once, a call wakes
 * them, kernels separate their phases with fr_barrier(), and no thread is
 * created or joined per call.
 *
 * Several callers.  There is one pool per process and it serves one call at
 * a time: a call that wants more than one thread takes the pool with
 * fr_pool_acquire, which waits its turn (first come, first served, asleep on
 * a condition variable) while another call holds it, and fr_pool_run hands
 * it on.  A call on one thread never touches the pool, so callers that each
 * run alone run at once.  Waiting rather than running beside the pool keeps
 * the machine at the thread count the user asked for: the workers spin at
 * barriers, and one more busy thread per core would make every barrier wait
 * for a descheduled worker.  A call from inside a pool task (a kernel, or
 * a task of fr_parallel, calling forward) runs inline on its thread, so the
 * pool can never wait for itself.
 *
 * Nothing a call uses is process-wide: its per-thread scratch is memory
 * the caller passes to fr_pool_run (generated blocks carve it from their
 * workspace), found by fr_scratch through a thread-local pointer, so two
 * callers, or a call and a nested one, never share a buffer.
 *
 * Each worker has its own mailbox (a generation counter on its own cache
 * line): a call wakes exactly the workers it uses, and an idle worker never
 * reads the state of a call it is not part of.  Synchronisation uses the
 * GCC/Clang __atomic builtins (C99 has no <stdatomic.h>); waiting spins
 * with the CPU's pause instruction first and only then yields (barrier) or
 * sleeps on a condition variable (idle workers between calls), so
 * back-to-back kernels never pay a syscall.
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

/* What a thread is running: set around every task, saved and restored by a
 * nested call.  Workers are always inside a task. */
static __thread struct {
    void *scratch;      /* this call's scratch: thread t's is scratch + t * stride */
    size_t stride;
    int in_task;        /* a call from here runs inline */
    int holding;        /* fr_pool_acquire gave this thread the pool */
} tl;

static struct {
    pthread_t threads[FR_MAX_THREADS];
    int nworkers;                 /* workers 1..nworkers are running */
    int registered;               /* atexit(fr_pool_shutdown) done */
    pthread_mutex_t lock;
    pthread_cond_t wake;          /* idle workers sleep here */
    pthread_cond_t turn;          /* callers waiting for the pool sleep here */
    unsigned long next_ticket;    /* the pool's queue: tickets taken ... */
    unsigned long serving;        /* ... and the one that holds it */
    int shutdown;
    /* the current call, written by its holder before it wakes the workers */
    fr_task fn;
    void *ctx;
    void *scratch;
    size_t stride;
    int team;                     /* threads in the call, the holder included */
    int done;                     /* workers finished with the current call */
    int bar_count;                /* threads arrived at the current barrier */
    unsigned long bar_gen;        /* bumped when a barrier opens */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .turn = PTHREAD_COND_INITIALIZER};

/* Worker t's mailbox: bumped once per call that includes it. */
static struct {
    unsigned long gen;
    char pad[64 - sizeof(unsigned long)];
} mail[FR_MAX_THREADS];

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    unsigned long seen = 0; /* the starter zeroed mail[tid] before creating us */
    tl.in_task = 1;
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&mail[tid].gen, __ATOMIC_ACQUIRE) == seen &&
               !__atomic_load_n(&pool.shutdown, __ATOMIC_ACQUIRE)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            while (__atomic_load_n(&mail[tid].gen, __ATOMIC_ACQUIRE) == seen &&
                   !__atomic_load_n(&pool.shutdown, __ATOMIC_ACQUIRE))
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        /* shutdown happens only while no call is in flight */
        if (__atomic_load_n(&pool.shutdown, __ATOMIC_ACQUIRE))
            return NULL;
        seen = __atomic_load_n(&mail[tid].gen, __ATOMIC_ACQUIRE);
        tl.scratch = pool.scratch;
        tl.stride = pool.stride;
        pool.fn(pool.ctx, tid, pool.team);
        __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
    }
}

/* Waits for this thread's turn at the pool. */
static void take_pool(void) {
    unsigned long t = __atomic_fetch_add(&pool.next_ticket, 1, __ATOMIC_ACQ_REL);
    if (__atomic_load_n(&pool.serving, __ATOMIC_ACQUIRE) != t) {
        pthread_mutex_lock(&pool.lock);
        while (__atomic_load_n(&pool.serving, __ATOMIC_ACQUIRE) != t)
            pthread_cond_wait(&pool.turn, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
}

static void give_pool(void) {
    pthread_mutex_lock(&pool.lock);
    __atomic_add_fetch(&pool.serving, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.turn);
    pthread_mutex_unlock(&pool.lock);
}

/* Joins the workers; the caller holds the pool. */
static void stop_workers(void) {
    if (pool.nworkers == 0)
        return;
    pthread_mutex_lock(&pool.lock);
    __atomic_store_n(&pool.shutdown, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int t = 1; t <= pool.nworkers; t++)
        pthread_join(pool.threads[t], NULL);
    pool.nworkers = 0;
    __atomic_store_n(&pool.shutdown, 0, __ATOMIC_RELEASE);
}

void fr_pool_shutdown(void) {
    if (tl.in_task || tl.holding)
        return;
    take_pool();
    stop_workers();
    give_pool();
}

int fr_pool_threads(void) {
    int n = fr_get_num_threads();
    return n < 1 ? 1 : n > FR_MAX_THREADS ? FR_MAX_THREADS : n;
}

int fr_pool_acquire(int want) {
    if (want > FR_MAX_THREADS)
        want = FR_MAX_THREADS;
    if (want <= 1 || tl.in_task || tl.holding)
        return 1;
    take_pool();
    tl.holding = 1;
    if (!pool.registered) {
        atexit(fr_pool_shutdown);
        pool.registered = 1;
    }
    /* Start the workers this call needs; one that cannot start leaves the
     * call with fewer threads, never an error. */
    while (pool.nworkers < want - 1) {
        int t = pool.nworkers + 1;
        mail[t].gen = 0;
        if (pthread_create(&pool.threads[t], NULL, worker, (void *)(intptr_t)t) != 0)
            break;
        pool.nworkers = t;
    }
    return pool.nworkers + 1 < want ? pool.nworkers + 1 : want;
}

void fr_pool_run(int n, fr_task fn, void *ctx, void *scratch, size_t stride) {
    int held = tl.holding; /* from here the pool is this call's, not the thread's */
    int avail = held ? (pool.nworkers + 1 < FR_MAX_THREADS ? pool.nworkers + 1 : FR_MAX_THREADS) : 1;
    void *saved_scratch = tl.scratch;
    size_t saved_stride = tl.stride;
    int saved_in_task = tl.in_task;

    tl.holding = 0;
    if (n > avail)
        n = avail;
    if (n <= 1) {
        if (held)
            give_pool();
        tl.scratch = scratch;
        tl.stride = stride;
        tl.in_task = 1;
        fn(ctx, 0, 1);
        tl.scratch = saved_scratch;
        tl.stride = saved_stride;
        tl.in_task = saved_in_task;
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.scratch = scratch;
    pool.stride = stride;
    pool.team = n;
    __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.bar_count, 0, __ATOMIC_RELAXED);
    for (int t = 1; t < n; t++)
        __atomic_add_fetch(&mail[t].gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    tl.scratch = scratch;
    tl.stride = stride;
    tl.in_task = 1;
    fn(ctx, 0, n);
    tl.scratch = saved_scratch;
    tl.stride = saved_stride;
    tl.in_task = saved_in_task;

    int spins = 0;
    while (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) != n - 1)
        if (++spins < SPIN_ITERS)
            cpu_relax();
        else
            sched_yield();
    give_pool();
}

void fr_parallel(fr_task fn, void *ctx) {
    int n = fr_pool_acquire(fr_pool_threads());
    fr_pool_run(n, fn, ctx, NULL, 0);
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

void *fr_scratch(int tid) {
    return tl.scratch ? (char *)tl.scratch + (size_t)tid * tl.stride : NULL;
}
