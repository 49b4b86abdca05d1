/* Inverted dropout with a counter-based mask: y = x * keep / (1 - p).
 *
 * keep[i] is a pure function of (seed, i, p), so the mask is the same at any thread
 * count and on any SIMD path, and backward regenerates it instead of storing it. Element
 * i draws the high 32 bits of the (i+1)-th output of SplitMix64 (Steele, Lea & Flood
 * 2014) started from key = SplitMix64's first output for `seed`, and is kept when they
 * are at least floor(p * 2^32): probability 1 - p to within 2^-32. Every output of
 * SplitMix64 is its counter (key + (i+1)*golden) passed through a bijective mixer, so an
 * element's bits cost two 64-bit multiplies and need no state. pynn.backends.numpy.dropout
 * computes the same bits in NumPy uint64 arithmetic.
 *
 * The mask multiplies (keep ? 1/(1-p) : 0), so NaN and inf in dropped elements give NaN,
 * as x * mask does in PyTorch. Compiled once per ISA (MULTI): the 64-bit multiplies
 * vectorise with AVX-512DQ and are emulated with 32-bit ones on AVX2.
 */
#include "isa.h"

#define GOLDEN 0x9E3779B97F4A7C15ull
#define MIN_PARALLEL 32768

PYNN_INLINE uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

PYNN_INLINE uint32_t draw(uint64_t key, int64_t i)
{
    return (uint32_t)(mix64(key + ((uint64_t)i + 1) * GOLDEN) >> 32);
}

/* x, y (n): y = x * (keep ? 1/(1-p) : 0); y may be x. */
void PYNN_ISA_FN(pynn_dropout_apply_f32)(float *y, const float *x, double p, uint64_t seed,
                                         int64_t n, int nthreads)
{
    const uint64_t key = mix64(seed + GOLDEN);
    const uint32_t threshold = (uint32_t)(p * 4294967296.0);
    const float scale = (float)(1.0 / (1.0 - p));
    const int nt = pynn_threads_for(n, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * (draw(key, i) >= threshold ? scale : 0.0f);
}

void PYNN_ISA_FN(pynn_dropout_apply_f64)(double *y, const double *x, double p, uint64_t seed,
                                         int64_t n, int nthreads)
{
    const uint64_t key = mix64(seed + GOLDEN);
    const uint32_t threshold = (uint32_t)(p * 4294967296.0);
    const double scale = 1.0 / (1.0 - p);
    const int nt = pynn_threads_for(n, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * (draw(key, i) >= threshold ? scale : 0.0);
}

#if PYNN_ISA_generic
PYNN_DECLARE_ISA_VARIANTS(void, pynn_dropout_apply_f32,
                          (float *y, const float *x, double p, uint64_t seed, int64_t n,
                           int nthreads));
PYNN_DECLARE_ISA_VARIANTS(void, pynn_dropout_apply_f64,
                          (double *y, const double *x, double p, uint64_t seed, int64_t n,
                           int nthreads));

static int bad_args(double p, int64_t n)
{
    return !(p >= 0 && p < 1) || n < 0;
}

static pynn_status apply_f32(float *y, const float *x, double p, uint64_t seed, int64_t n,
                             int nthreads)
{
    void (*fn)(float *, const float *, double, uint64_t, int64_t, int);
    if (bad_args(p, n))
        return PYNN_ERR_ARG;
    PYNN_SELECT_ISA(fn, pynn_dropout_apply_f32);
    fn(y, x, p, seed, n, nthreads);
    return PYNN_OK;
}

static pynn_status apply_f64(double *y, const double *x, double p, uint64_t seed, int64_t n,
                             int nthreads)
{
    void (*fn)(double *, const double *, double, uint64_t, int64_t, int);
    if (bad_args(p, n))
        return PYNN_ERR_ARG;
    PYNN_SELECT_ISA(fn, pynn_dropout_apply_f64);
    fn(y, x, p, seed, n, nthreads);
    return PYNN_OK;
}

/* x, y (n) */
pynn_status pynn_dropout_forward_f32(float *y, const float *x, double p, uint64_t seed, int64_t n,
                                     int nthreads)
{
    return apply_f32(y, x, p, seed, n, nthreads);
}

pynn_status pynn_dropout_forward_f64(double *y, const double *x, double p, uint64_t seed,
                                     int64_t n, int nthreads)
{
    return apply_f64(y, x, p, seed, n, nthreads);
}

/* dy, dx (n): the forward mask, regenerated from the seed. */
pynn_status pynn_dropout_backward_f32(float *dx, const float *dy, double p, uint64_t seed,
                                      int64_t n, int nthreads)
{
    return apply_f32(dx, dy, p, seed, n, nthreads);
}

pynn_status pynn_dropout_backward_f64(double *dx, const double *dy, double p, uint64_t seed,
                                      int64_t n, int nthreads)
{
    return apply_f64(dx, dy, p, seed, n, nthreads);
}
#endif
