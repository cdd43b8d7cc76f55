/* clsoftmax_mpi.h: the merge of a sharded class axis' statistics as an MPI
 * reduction. Header-only: it is compiled into the caller's MPI program (the
 * library itself never links MPI). Include it after <mpi.h>.
 *
 *   MPI_Datatype rec;                  // one position's record
 *   clsm_mpi_stats_type(CLSM_FLOAT32, CLSM_SHARD_STATS, &rec);
 *   MPI_Op op;
 *   MPI_Op_create(clsm_mpi_merge, 1, &op);   // commutative
 *   MPI_Allreduce(MPI_IN_PLACE, stats, (int)positions, rec, op, comm);
 *
 * or, with built-in operations only, clsm_mpi_allreduce_builtin. */
#ifndef CLSOFTMAX_MPI_H
#define CLSOFTMAX_MPI_H

#include <mpi.h>
#include <stdlib.h>

#include "clsoftmax.h"

/* The record type: k values of float (CLSM_FLOAT32) or double
 * (CLSM_FLOAT64), contiguous and committed. Free it with MPI_Type_free. */
static inline int clsm_mpi_stats_type(clsm_dtype dtype, int k, MPI_Datatype *type) {
  int rc = MPI_Type_contiguous(k, dtype == CLSM_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT, type);
  return rc == MPI_SUCCESS ? MPI_Type_commit(type) : rc;
}

/* An MPI_User_function: merges *len records of a type made by
 * clsm_mpi_stats_type (clsm_shard_merge: the (max, sum) pair, then sums). */
static inline void clsm_mpi_merge(void *in, void *inout, int *len, MPI_Datatype *type) {
  int ni = 0, na = 0, nd = 0, combiner = 0;
  MPI_Type_get_envelope(*type, &ni, &na, &nd, &combiner);
  if (combiner != MPI_COMBINER_CONTIGUOUS || ni != 1 || nd != 1) return;
  int k = 0;
  MPI_Aint unused;
  MPI_Datatype base;
  MPI_Type_get_contents(*type, 1, 0, 1, &k, &unused, &base);
  clsm_shard_merge(base == MPI_DOUBLE ? CLSM_FLOAT64 : CLSM_FLOAT32, k, *len, in, inout);
}

/* The same merge of n records in place with MPI_MAX and MPI_SUM only: the
 * maxima of value 0, clsm_shard_rebase, a sum, clsm_shard_restore. */
static inline int clsm_mpi_allreduce_builtin(void *stats, clsm_dtype dtype, int k, int n,
                                             MPI_Comm comm) {
  const MPI_Datatype t = dtype == CLSM_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT;
  const size_t es = dtype == CLSM_FLOAT64 ? sizeof(double) : sizeof(float);
  unsigned char *max = (unsigned char *)malloc((size_t)n * es + 1);
  if (!max) return MPI_ERR_NO_MEM;
  for (int i = 0; i < n; ++i)
    for (size_t b = 0; b < es; ++b) max[(size_t)i * es + b] = ((unsigned char *)stats)[(size_t)i * (size_t)k * es + b];
  int rc = MPI_Allreduce(MPI_IN_PLACE, max, n, t, MPI_MAX, comm);
  if (rc == MPI_SUCCESS) {
    clsm_shard_rebase(dtype, k, n, stats, max);
    rc = MPI_Allreduce(MPI_IN_PLACE, stats, n * k, t, MPI_SUM, comm);
    if (rc == MPI_SUCCESS) clsm_shard_restore(dtype, k, n, stats, max);
  }
  free(max);
  return rc;
}

#endif
