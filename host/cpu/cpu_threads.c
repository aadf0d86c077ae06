/* The CPU backend's team of threads (see cpu_threads.h). */
#include "cpu_threads.h"

#include "cpu_ops.h"

#include <cblas.h>
#include <pthread.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_count = 1; /* written once, under threads_once */

static void threads_init(void)
{
    int n = openblas_get_num_threads();
#ifdef _OPENMP
    threads_count = n > 0 ? n : 1;
    omp_set_num_threads(threads_count);
    openblas_set_num_threads(1);
#else
    (void)n;
    threads_count = 1;
#endif
}

int cuvae_cpu_threads(void)
{
    pthread_once(&threads_once, threads_init);
    return threads_count;
}

void cuvae_cpu_parallel(int n, void (*fn)(void *arg, int t), void *arg)
{
#ifdef _OPENMP
    int team = cuvae_cpu_threads();
    if (n > 1 && team > 1) {
#pragma omp parallel for schedule(static, 1) num_threads(team < n ? team : n)
        for (int t = 0; t < n; t++) fn(arg, t);
        return;
    }
#endif
    for (int t = 0; t < n; t++) fn(arg, t);
}

void cuvae_cpu_split(size_t total, int n, int t, size_t align, size_t *begin, size_t *end)
{
    size_t units = (total + align - 1) / align;
    size_t b = units * (size_t)t / (size_t)n * align,
           e = units * (size_t)(t + 1) / (size_t)n * align;
    *begin = b < total ? b : total;
    *end = e < total ? e : total;
}

int cuvae_cpu_parts_for(size_t n)
{
    size_t parts = (size_t)cuvae_cpu_threads();
    if (parts > CUVAE_CPU_MAX_PARTS) parts = CUVAE_CPU_MAX_PARTS;
    if (parts * 16384 > n) parts = n / 16384 + 1;
    return (int)parts;
}

int cuvae_cpu_row_parts(size_t rows, size_t row_work)
{
    int parts = cuvae_cpu_parts_for(rows * row_work);
    if (rows == 0) return 1;
    return (size_t)parts > rows ? (int)rows : parts;
}
