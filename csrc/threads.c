/* OpenMP thread-count policy. The count a kernel may use is an explicit argument chosen
 * once in Python (pynn._config); here only the rule for small problems, which run on
 * fewer threads because a parallel region costs more than their work. */
#include "pynn/pynn.h"

#ifdef _OPENMP
#include <omp.h>
int pynn_openmp_enabled(void) { return 1; }
int pynn_openmp_max_threads(void) { return omp_get_max_threads(); }
#else
int pynn_openmp_enabled(void) { return 0; }
int pynn_openmp_max_threads(void) { return 1; }
#endif

/* The most threads a region is given, whatever the caller asks for: pynn._config refuses
 * more, and this keeps a direct C caller safe too (a GEMM asked for 100,000 threads
 * crashed inside the OpenMP runtime, which sets up every thread of a region from the
 * calling thread's stack). */
#define PYNN_MAX_THREADS 1024

int pynn_threads_for(int64_t work, int64_t min_work, int nthreads)
{
#ifndef _OPENMP
    (void)work; (void)min_work; (void)nthreads;
    return 1;
#else
    if (nthreads <= 1 || min_work <= 0 || work < 2 * min_work)
        return 1;
    if (nthreads > PYNN_MAX_THREADS)
        nthreads = PYNN_MAX_THREADS;
    int64_t t = work / min_work;
    return t < nthreads ? (int)t : nthreads;
#endif
}
