/*
 * comm.c - libfusec_comm: tensor parallelism's collectives over MPI
 * (fusec_comm.h; docs/distributed.md).
 *
 * Every exchange is non-blocking and polled (MPI_Test, yielding the CPU
 * between polls after a short spin) against a deadline, so a peer that died
 * or stalls gives FR_ECOMM after fr_mpi_timeout() seconds instead of a hang;
 * MPI errors are returned (MPI_ERRORS_RETURN), never fatal inside MPI.
 */
#define _POSIX_C_SOURCE 200809L

#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fusec_comm.h"

static int my_rank, my_size, failed;
static double timeout_s = 60;
static char term_msg[160];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double fr_mpi_timeout(void) { return timeout_s; }

static int mpi_err(int code, const char *what, fr_err *err)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    failed = 1;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", code);
    return fr_seterr(err, FR_ECOMM, "rank %d of %d: %s failed: %s (a peer rank died?)", my_rank, my_size, what,
                     text);
}

/* Waits for req until the deadline; FR_ECOMM on an error or the timeout. */
static int wait_req(MPI_Request *req, const char *what, fr_err *err)
{
    double t0 = now();
    int done = 0;
    for (long spin = 0;; spin++) {
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_err(rc, what, err);
        if (done)
            return FR_OK;
        if (spin > 2000) {
            if (now() - t0 > timeout_s) {
                failed = 1;
                return fr_seterr(err, FR_ECOMM,
                                 "rank %d of %d: %s timed out after %.0f s: a peer rank died or stalls "
                                 "(FUSEC_TP_TIMEOUT sets the limit)", my_rank, my_size, what, timeout_s);
            }
            sched_yield();
        }
    }
}

static int allreduce_sum(float *buf, int64_t n, fr_err *err)
{
    if (failed)
        return fr_seterr(err, FR_ECOMM, "rank %d of %d: an earlier exchange failed", my_rank, my_size);
    while (n > 0) {
        int chunk = n > (1 << 30) ? 1 << 30 : (int)n;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, chunk, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS)
            return mpi_err(rc, "all-reduce", err);
        if ((rc = wait_req(&req, "all-reduce", err)) != FR_OK)
            return rc;
        buf += chunk;
        n -= chunk;
    }
    return FR_OK;
}

/* mpirun ends the surviving ranks with SIGTERM when one dies: say so. */
static void on_term(int sig)
{
    ssize_t w = write(2, term_msg, strlen(term_msg));
    (void)w;
    _exit(128 + sig);
}

int fr_mpi_init(int *argc, char ***argv, fr_err *err)
{
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS)
        return fr_seterr(err, FR_ECOMM, "MPI_Init failed (error %d)", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &my_size);
    const char *t = getenv("FUSEC_TP_TIMEOUT");
    if (t && *t) {
        char *end;
        double v = strtod(t, &end);
        if (*end || !(v > 0 && v <= 1e6))
            return fr_seterr(err, FR_EINVAL, "FUSEC_TP_TIMEOUT: expected seconds in (0, 1e6], got '%s'", t);
        timeout_s = v;
    }
    snprintf(term_msg, sizeof term_msg,
             "fusec: rank %d of %d: terminated by mpirun (another rank failed or died)\n", my_rank, my_size);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    fr_comm_ops ops = {my_rank, my_size, allreduce_sum};
    fr_comm_register(&ops);
    return FR_OK;
}

void fr_mpi_finalize(void)
{
    fr_comm_register(NULL);
    MPI_Finalize();
}

int fr_mpi_agree(uint64_t value, const char *what, fr_err *err)
{
    unsigned long long mine = value, *all = malloc(sizeof *all * (size_t)my_size);
    MPI_Request req;
    if (!all)
        return fr_seterr(err, FR_ENOMEM, "out of memory");
    int rc = MPI_Iallgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD, &req);
    rc = rc != MPI_SUCCESS ? mpi_err(rc, what, err) : wait_req(&req, what, err);
    for (int r = 0; rc == FR_OK && r < my_size; r++)
        if (all[r] != all[0])
            rc = fr_seterr(err, FR_ECOMM, "rank %d of %d: ranks 0 and %d disagree on %s (%016llx, %016llx)",
                           my_rank, my_size, r, what, all[0], all[r]);
    free(all);
    return rc;
}

int fr_mpi_argmax(float value, int64_t index, int64_t *best, fr_err *err)
{
    /* MPI_MAXLOC: the largest value, ties to the lower index; NaN above every number */
    struct { double v; int i; } in, out;
    if (index < 0 || index > INT32_MAX)
        return fr_seterr(err, FR_EINVAL, "fr_mpi_argmax: index %lld out of range", (long long)index);
    in.v = value != value ? 1e300 : (double)value;
    in.i = (int)index;
    MPI_Request req;
    int rc = MPI_Iallreduce(&in, &out, 1, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS)
        return mpi_err(rc, "argmax", err);
    if ((rc = wait_req(&req, "argmax", err)) != FR_OK)
        return rc;
    *best = out.i;
    return FR_OK;
}

int fr_mpi_allgather(const float *mine, int64_t n, float *all, int64_t cap, fr_err *err)
{
    int *cnt = malloc(sizeof *cnt * 2 * (size_t)my_size), mine_n = (int)n, rc;
    MPI_Request req;
    if (!cnt)
        return fr_seterr(err, FR_ENOMEM, "out of memory");
    int *disp = cnt + my_size;
    rc = MPI_Iallgather(&mine_n, 1, MPI_INT, cnt, 1, MPI_INT, MPI_COMM_WORLD, &req);
    rc = rc != MPI_SUCCESS ? mpi_err(rc, "all-gather", err) : wait_req(&req, "all-gather", err);
    int64_t total = 0;
    for (int r = 0; rc == FR_OK && r < my_size; r++) {
        disp[r] = (int)total;
        total += cnt[r];
    }
    if (rc == FR_OK && (total > cap || total > INT32_MAX))
        rc = fr_seterr(err, FR_EINVAL, "rank %d of %d: all-gather of %lld floats into %lld", my_rank, my_size,
                       (long long)total, (long long)cap);
    if (rc == FR_OK) {
        rc = MPI_Iallgatherv(mine, mine_n, MPI_FLOAT, all, cnt, disp, MPI_FLOAT, MPI_COMM_WORLD, &req);
        rc = rc != MPI_SUCCESS ? mpi_err(rc, "all-gather", err) : wait_req(&req, "all-gather", err);
    }
    free(cnt);
    return rc;
}

void fr_mpi_fail(int code, const char *msg)
{
    fprintf(stderr, "fusec: rank %d of %d: error: %s\n", my_rank, my_size, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}
