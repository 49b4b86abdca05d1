/* The machine's float32 FMA peak, measured: what `python -m pynn bench gemm` reports GEMM
 * speed against. Not a kernel; a calibration loop.
 *
 * Each thread runs 12 independent chains of vector FMAs (enough to cover FMA latency times
 * the number of FMA ports on current x86 cores) on the widest vectors the CPU and OS
 * support, whatever ISA is forced for the kernels. Compiled once per ISA (MULTI).
 */
#include <stdlib.h>
#include <time.h>

#include "isa.h"
#include "gemm/kernel.h"

#if defined(PYNN_ISA_avx512) || defined(PYNN_ISA_avx2)
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#define PEAK_CHAINS 12

/* The k block the tile ceiling runs: the float AVX-512 KC, long enough that the tile's
 * epilogue costs what it does in a large product. */
#define TILE_PEAK_KC 384

/* Runs `iters` steps of the chains; returns the float lanes per chain (flops per step are
 * 2 * PEAK_CHAINS * lanes). `seed` keeps the compiler from folding the loop. */
int PYNN_ISA_FN(gemm_fma_chains)(int64_t iters, float seed, volatile float *sink)
{
#if defined(PYNN_ISA_avx512)
    __m512 acc[PEAK_CHAINS];
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(seed);
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_ps(seed * (float)i);
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return 16;
#elif defined(PYNN_ISA_avx2)
    __m256 acc[PEAK_CHAINS];
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(seed);
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm256_set1_ps(seed * (float)i);
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    float lanes[8];
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_storeu_ps(lanes, acc[0]);
    *sink = lanes[0] + lanes[7];
    return 8;
#else
    float acc[PEAK_CHAINS];
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = seed * (float)i;
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = acc[i] * 0.999999f + seed;
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] += acc[i];
    *sink = acc[0];
    return 1;
#endif
}

#if PYNN_ISA_generic
PYNN_DECLARE_ISA_VARIANTS(int, gemm_fma_chains, (int64_t, float, volatile float *));

/* CPU time of the calling thread: time this thread was not running (other work on a
 * shared machine) does not count against the peak. */
static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The sum over threads of each thread's FMA rate, best of `repeats` runs in which every
 * thread does `iters` steps at once. */
pynn_status pynn_gemm_fma_peak(double *gflops, int nthreads)
{
    if (!gflops || nthreads < 1)
        return PYNN_ERR_ARG;
    int (*chains)(int64_t, float, volatile float *) = gemm_fma_chains_generic;
#ifdef PYNN_X86
    if (pynn_cpu_best_isa() == PYNN_ISA_AVX512)
        chains = gemm_fma_chains_avx512;
    else if (pynn_cpu_best_isa() == PYNN_ISA_AVX2)
        chains = gemm_fma_chains_avx2;
#endif
    const int64_t iters = 1000000;
    const int repeats = 20;
    volatile float sink[64];
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : total)
#endif
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
            const double t0 = thread_seconds();
            const int lanes = chains(iters, 1e-3f * (float)(r + 1), &sink[t % 64]);
            const double dt = thread_seconds() - t0;
            total += 2.0 * PEAK_CHAINS * lanes * (double)iters / dt * 1e-9;
        }
        if (total > best)
            best = total;
    }
    *gflops = best;
    return PYNN_OK;
}

/* The float32 micro-kernel in force on panels that stay in L1: every tile a full
 * MR x NR x TILE_PEAK_KC block with C added (a later k block's epilogue), as in the
 * inside of a large product, without packing, cache misses or edges. Sums over threads
 * of each thread's rate in its own CPU time, best of `repeats`, as the FMA peak. */
pynn_status pynn_gemm_tile_peak(double *gflops, int nthreads)
{
    if (!gflops || nthreads < 1)
        return PYNN_ERR_ARG;
    const gemm_arch *ar = gemm_arch_f32();
    const int64_t kc = TILE_PEAK_KC, tiles = 2000;
    const int repeats = 10;
    const gemm_epilogue ep = {1.0, 1.0, NULL, 0};
    int failed = 0;
    double best = 0.0;
    for (int r = 0; r < repeats && !failed; r++) {
        double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : total) reduction(| : failed)
#endif
        {
            const size_t na = (size_t)(ar->mr * kc), nb = (size_t)(kc * ar->nr);
            float *buf = NULL;
            if (posix_memalign((void **)&buf, 64, (na + nb + (size_t)(ar->mr * ar->nr)) *
                                                      sizeof(float)) != 0) {
                failed = 1;
            } else {
                float *a = buf, *b = buf + na, *c = b + nb;
                for (size_t i = 0; i < na; i++)
                    a[i] = 1e-3f * (float)(i % 7);
                for (size_t i = 0; i < nb; i++)
                    b[i] = 1e-3f * (float)(i % 5);
                for (int i = 0; i < ar->mr * ar->nr; i++)
                    c[i] = 0.0f;
                const double t0 = thread_seconds();
                for (int64_t t = 0; t < tiles; t++)
                    ar->ukernel(kc, a, 1, ar->mr, b, ar->nr, c, ar->nr, ar->mr, ar->nr, &ep);
                const double dt = thread_seconds() - t0;
                total += 2.0 * ar->mr * ar->nr * (double)kc * (double)tiles / dt * 1e-9;
                free(buf);
            }
        }
        if (total > best)
            best = total;
    }
    if (failed)
        return PYNN_ERR_NOMEM;
    *gflops = best;
    return PYNN_OK;
}
#endif
