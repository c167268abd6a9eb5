/*
 * fusec_comm.h - libfusec_comm: the MPI communicator for tensor-parallel
 * blocks (docs/distributed.md).  Built only where mpicc exists
 * (build/libfusec_comm.a); a program that uses it is compiled with mpicc
 * and linked with libfusec_comm.a before libfusec_rt.a.
 *
 *   fr_mpi_init(&argc, &argv, &err);     MPI_Init, registers the all-reduce
 *   ... NAME_bind (checks rank and size), NAME_forward ...
 *   fr_mpi_finalize();
 *
 * Failure: every exchange waits at most fr_mpi_timeout() seconds
 * (FUSEC_TP_TIMEOUT, default 60) and then fails with FR_ECOMM ("a peer rank
 * died or stalls"); a rank that mpirun terminates because a peer died says
 * so on stderr before it exits.  fr_mpi_fail prints a message with the rank
 * and ends the whole job (MPI_Abort), so no rank waits for a dead peer.
 */
#ifndef FUSEC_COMM_H
#define FUSEC_COMM_H

#include <stdint.h>

#include "fusec_rt.h"

#ifdef __cplusplus
extern "C" {
#endif

int fr_mpi_init(int *argc, char ***argv, fr_err *err);
void fr_mpi_finalize(void);
double fr_mpi_timeout(void);
/* 0 when every rank passed the same value; else FR_ECOMM naming `what` and the ranks that differ */
int fr_mpi_agree(uint64_t value, const char *what, fr_err *err);
/* The first largest of the ranks' values (ties and NaN: the lowest index;
 * NaN counts as largest, as torch.argmax): each rank passes its best value
 * and its global index; *best is the winner's index on every rank. */
int fr_mpi_argmax(float value, int64_t index, int64_t *best, fr_err *err);
/* The ranks' pieces laid end to end, in rank order, on every rank: each
 * passes its n floats; all has room for the total (at most `cap`). */
int fr_mpi_allgather(const float *mine, int64_t n, float *all, int64_t cap, fr_err *err);
/* "fusec: rank R of N: MESSAGE" on stderr, then MPI_Abort(code): the job ends */
void fr_mpi_fail(int code, const char *msg)
#if defined(__GNUC__)
    __attribute__((noreturn))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* FUSEC_COMM_H */
