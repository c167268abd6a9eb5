/*
 * tp.c - the runtime's side of tensor parallelism (docs/distributed.md).
 *
 * The runtime links no MPI.  A communicator registers its rank, size and
 * all-reduce here (libfusec_comm's fr_mpi_init does, runtime/mpi/comm.c);
 * the generated all-reduce of a --tp block calls fr_allreduce_sum, which
 * checks that the process count is the one the block was compiled for.
 * Without a communicator the process is rank 0 of 1 and the sum is the
 * identity.
 */
#include "fusec_rt.h"

static fr_comm_ops comm = {0, 1, NULL};

void fr_comm_register(const fr_comm_ops *ops)
{
    if (ops)
        comm = *ops;
    else
        comm = (fr_comm_ops){0, 1, NULL};
}

int fr_comm_rank(void) { return comm.rank; }
int fr_comm_size(void) { return comm.size; }

int fr_tp_check(const char *block, int tp_size, int tp_rank, fr_err *err)
{
    if (tp_size <= 1 && comm.size <= 1)
        return FR_OK;
    if (comm.size != tp_size || comm.rank != tp_rank)
        return fr_seterr(err, FR_ECOMM,
                         "%s: the block was compiled for rank %d of %d (--tp=%d --tp-rank=%d), but this process is "
                         "rank %d of %d%s",
                         block ? block : "block", tp_rank, tp_size, tp_size, tp_rank, comm.rank, comm.size,
                         comm.allreduce_sum ? "" : " (no communicator: call fr_mpi_init first, docs/distributed.md)");
    return FR_OK;
}

int fr_allreduce_sum(float *buf, int64_t n, int tp_size)
{
    fr_err err;
    if (comm.size != tp_size || (tp_size > 1 && !comm.allreduce_sum))
        return fr_tp_check("all-reduce", tp_size, comm.rank, NULL);
    if (tp_size <= 1 || n <= 0)
        return FR_OK;
    int rc = comm.allreduce_sum(buf, n, &err);
    if (rc != FR_OK)
        return fr_seterr(NULL, FR_ECOMM, "%s", err.msg);
    return FR_OK;
}
