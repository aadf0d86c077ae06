/* The CPU backend's threads. cuvae runs every BLAS call single-threaded and splits the work of
 * each phase of a step (GEMMs, the likelihood, Adam, ...) over its own OpenMP team instead:
 * small GEMMs (a batch of 128) lose much of their time to OpenBLAS's per-call thread hand-off,
 * a layer's two backward GEMMs (dW and dX) are independent and run side by side at full size,
 * and the element-wise phases, single-threaded before, get every core. */
#ifndef CUVAE_CPU_THREADS_H
#define CUVAE_CPU_THREADS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The team's size: OpenBLAS's own thread count when first called (so OPENBLAS_NUM_THREADS and
 * OMP_NUM_THREADS keep their meaning), 1 without OpenMP. The first call also makes OpenBLAS
 * single-threaded. Results depend on this count (the split of each GEMM follows it) and on the
 * BLAS kernels, nothing else. */
int cuvae_cpu_threads(void);

/* Runs fn(arg, t) for t in [0, n) on the team (n tasks, static order), and returns when all
 * are done. Serial without OpenMP or when n == 1. */
void cuvae_cpu_parallel(int n, void (*fn)(void *arg, int t), void *arg);

/* How many parts a pass over n floats' worth of work is split into: one per thread (at most
 * CUVAE_CPU_MAX_PARTS), and none smaller than 16k floats. */
int cuvae_cpu_parts_for(size_t n);

/* The parts of a pass over `rows` independent rows of `row_work` floats' worth of work each:
 * cuvae_cpu_parts_for, never more parts than rows. */
int cuvae_cpu_row_parts(size_t rows, size_t row_work);

/* [begin, end) of part t of n parts of [0, total), each boundary a multiple of `align`. */
void cuvae_cpu_split(size_t total, int n, int t, size_t align, size_t *begin, size_t *end);

#ifdef __cplusplus
}
#endif
#endif
