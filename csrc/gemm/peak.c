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

/* One thread's rate in GFLOP/s in the repeat `r` of a measurement, in its own CPU time. */
typedef double (*thread_rate)(const void *ctx, int thread, int r);

/* The sum over nthreads threads of each one's rate, running at once: the best of
 * `repeats` runs. */
static double best_rate(thread_rate rate, const void *ctx, int nthreads, int repeats)
{
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : total)
        total += rate(ctx, omp_get_thread_num(), r);
#else
        total += rate(ctx, 0, r);
#endif
        if (total > best)
            best = total;
    }
    return best;
}

typedef struct {
    int (*chains)(int64_t, float, volatile float *);
    volatile float *sink;
} fma_peak_ctx;

enum { FMA_PEAK_ITERS = 1000000 };

static double fma_rate(const void *ctx_, int thread, int r)
{
    const fma_peak_ctx *ctx = (const fma_peak_ctx *)ctx_;
    const double t0 = thread_seconds();
    const int lanes = ctx->chains(FMA_PEAK_ITERS, 1e-3f * (float)(r + 1),
                                  &ctx->sink[thread % 64]);
    const double dt = thread_seconds() - t0;
    return 2.0 * PEAK_CHAINS * lanes * (double)FMA_PEAK_ITERS / dt * 1e-9;
}

/* The sum over threads of each thread's FMA rate, best of 20 runs in which every thread
 * does FMA_PEAK_ITERS steps at once. */
pynn_status pynn_gemm_fma_peak(double *gflops, int nthreads)
{
    if (!gflops || nthreads < 1)
        return PYNN_ERR_ARG;
    volatile float sink[64];
    fma_peak_ctx ctx = {gemm_fma_chains_generic, sink};
#ifdef PYNN_X86
    if (pynn_cpu_best_isa() == PYNN_ISA_AVX512)
        ctx.chains = gemm_fma_chains_avx512;
    else if (pynn_cpu_best_isa() == PYNN_ISA_AVX2)
        ctx.chains = gemm_fma_chains_avx2;
#endif
    *gflops = best_rate(fma_rate, &ctx, nthreads, 20);
    return PYNN_OK;
}

typedef struct {
    const gemm_arch *ar;
    float *panels; /* each thread's A panel, B panel and C tile, `stride` floats apart */
    size_t stride;
} tile_peak_ctx;

enum { TILE_PEAK_TILES = 2000 };

static double tile_rate(const void *ctx_, int thread, int r)
{
    const tile_peak_ctx *ctx = (const tile_peak_ctx *)ctx_;
    const gemm_arch *ar = ctx->ar;
    const gemm_epilogue ep = {1.0, 1.0, NULL, 0};
    float *a = ctx->panels + (size_t)thread * ctx->stride, *b = a + ar->mr * ar->kc;
    float *c = b + ar->kc * ar->nr;
    (void)r;
    const double t0 = thread_seconds();
    for (int t = 0; t < TILE_PEAK_TILES; t++)
        ar->ukernel(ar->kc, a, 1, ar->mr, b, ar->nr, c, ar->nr, ar->mr, ar->nr, &ep);
    const double dt = thread_seconds() - t0;
    return 2.0 * ar->mr * ar->nr * (double)ar->kc * TILE_PEAK_TILES / dt * 1e-9;
}

/* The float32 micro-kernel in force on panels that stay in L1: every tile a full
 * MR x NR x KC block with C added (a later k block's epilogue), as in the inside of a
 * large product, without packing, cache misses or edges; best of 10 runs, as the FMA
 * peak. */
pynn_status pynn_gemm_tile_peak(double *gflops, int nthreads)
{
    if (!gflops || nthreads < 1)
        return PYNN_ERR_ARG;
    const gemm_arch *ar = gemm_arch_f32();
    const size_t na = (size_t)(ar->mr * ar->kc), nb = (size_t)(ar->kc * ar->nr);
    /* a thread's panels on cache lines of their own */
    const size_t stride = (na + nb + (size_t)(ar->mr * ar->nr) + 15) / 16 * 16;
    tile_peak_ctx ctx = {ar, NULL, stride};
    if (posix_memalign((void **)&ctx.panels, 64, stride * (size_t)nthreads * sizeof(float)))
        return PYNN_ERR_NOMEM;
    for (int t = 0; t < nthreads; t++) {
        float *a = ctx.panels + (size_t)t * stride, *b = a + na, *c = b + nb;
        for (size_t i = 0; i < na; i++)
            a[i] = 1e-3f * (float)(i % 7);
        for (size_t i = 0; i < nb; i++)
            b[i] = 1e-3f * (float)(i % 5);
        for (int i = 0; i < ar->mr * ar->nr; i++)
            c[i] = 0.0f;
    }
    *gflops = best_rate(tile_rate, &ctx, nthreads, 10);
    free(ctx.panels);
    return PYNN_OK;
}
#endif
