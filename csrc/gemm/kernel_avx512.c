/* AVX-512 GEMM micro-kernels (compiled for AVX-512 only; see kernel.h for the contract).
 *
 * sgemm 12x32: 12 rows of C by two zmm vectors of columns, 24 accumulators. Each step of
 * k loads two vectors of B and broadcasts 12 values of A straight into the FMAs, so the
 * two FMA ports stay busy while the loads (14 per 24 FMAs) fit the load ports. dgemm
 * 12x16 is the same shape in doubles.
 *
 * Edges: C is read and written through masks, so a partial tile costs no scalar loop, and
 * narrow or short tiles (n <= NR/2, m <= MR/2) run a loop over only the vectors and rows
 * they need. Every variant performs the same per-element chain of FMAs, so which one runs
 * never changes a bit of the result.
 */
#include <immintrin.h>

#include "gemm/kernel.h"

/* The lanes below n (n may be negative or above the width). */
PYNN_INLINE __mmask16 mask16(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

PYNN_INLINE __mmask8 mask8(int n)
{
    return n >= 8 ? (__mmask8)0xFF : n <= 0 ? (__mmask8)0 : (__mmask8)((1u << n) - 1);
}

/* Pulls the rows of a C tile towards L1 while the k loop runs. */
PYNN_INLINE void prefetch_tile(const char *c, int64_t ldc_bytes, int m, int64_t row_bytes, int l2)
{
    for (int i = 0; i < m; i++) {
        if (l2) {
        _mm_prefetch(c + i * ldc_bytes, _MM_HINT_T1);
        _mm_prefetch(c + i * ldc_bytes + row_bytes - 1, _MM_HINT_T1);
        } else {
        _mm_prefetch(c + i * ldc_bytes, _MM_HINT_T0);
        _mm_prefetch(c + i * ldc_bytes + row_bytes - 1, _MM_HINT_T0);
        }
    }
}

/* ---- float: 12 x 32 ------------------------------------------------------------------ */

/* The epilogue of kernel.h on rows i < m, columns j < n. */
PYNN_INLINE void sgemm_store(float *c, int64_t ldc, int m, int n, __m512 acc[12][2], int V,
                             const gemm_epilogue *ep)
{
    const __mmask16 mk[2] = {mask16(n), mask16(n - 16)};
    const __m512 alpha = _mm512_set1_ps((float)ep->alpha), beta = _mm512_set1_ps((float)ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const float *bias = (const float *)ep->bias;
    __m512 bv[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    if (bias) {
        bv[0] = _mm512_maskz_loadu_ps(mk[0], bias);
        if (V > 1)
            bv[1] = _mm512_maskz_loadu_ps(mk[1], bias + 16);
    }
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) {
        if (i >= m)
            break;
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            float *cv = c + i * ldc + 16 * v;
            __m512 z = acc[i][v];
            if (scale)
                z = _mm512_mul_ps(alpha, z);
            if (add_c) {
                const __m512 cold = _mm512_maskz_loadu_ps(mk[v], cv);
                z = fma_c ? _mm512_fmadd_ps(beta, cold, z) : _mm512_add_ps(z, cold);
            }
            if (bias)
                z = _mm512_add_ps(z, bv[v]);
            _mm512_mask_storeu_ps(cv, mk[v], z);
        }
    }
}

/* One tile with R rows and V vectors of accumulators; called with constants for R and V
 * and a literal 1 for rs_a or cs_a, so that each call compiles to its own loop with the
 * accumulators in registers and the unit stride folded into the addresses. */
#ifndef PFA
#define PFA 0
#endif
#ifndef PFB
#define PFB 0
#endif
#ifndef PFC
#define PFC 1
#endif
#ifndef PFCD
#define PFCD 48
#endif
PYNN_INLINE void sgemm_loop(int64_t k, const float **ap, int64_t rs_a, int64_t cs_a,
                            const float **bp, int64_t rs_b, __m512 acc[12][2], const int R, const int V)
{
    const float *a = *ap, *b = *bp;
    for (int64_t p = 0; p < k; p++) {
        if (PFA) _mm_prefetch((const char *)(a + PFA * cs_a), _MM_HINT_T0);
        if (PFB) { _mm_prefetch((const char *)(b + PFB * rs_b), _MM_HINT_T0); _mm_prefetch((const char *)(b + PFB * rs_b + 16), _MM_HINT_T0); }
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = V > 1 ? _mm512_loadu_ps(b + 16) : b0;
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * rs_a]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += cs_a;
        b += rs_b;
    }
    *ap = a; *bp = b;
}

PYNN_INLINE void sgemm_tile(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                            const float *b, int64_t rs_b, float *c, int64_t ldc, int m, int n,
                            const gemm_epilogue *ep, const int R, const int V)
{
    __m512 acc[12][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    if (PFC == 1) prefetch_tile((const char *)c, ldc * 4, m, n * 4, 0);
    if (PFC == 3) prefetch_tile((const char *)c, ldc * 4, m, n * 4, 1);
    const int64_t k1 = PFC >= 2 && k > PFCD ? k - PFCD : 0;
    sgemm_loop(k1, &a, rs_a, cs_a, &b, rs_b, acc, R, V);
    if (PFC >= 2) prefetch_tile((const char *)c, ldc * 4, m, n * 4, 0);
    sgemm_loop(k - k1, &a, rs_a, cs_a, &b, rs_b, acc, R, V);
    sgemm_store(c, ldc, m, n, acc, V, ep);
}

void sgemm_avx512_12x32(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                        int64_t rs_b, void *c_, int64_t ldc, int m, int n,
                        const gemm_epilogue *ep)
{
    const float *a = (const float *)a_, *b = (const float *)b_;
    float *c = (float *)c_;
    const int wide = n > 16, tall = m > 6;
    if (rs_a == 1) {
        if (tall && wide)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 12, 2);
        else if (tall)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 12, 1);
        else if (wide)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 1);
    } else {
        if (tall && wide)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 12, 2);
        else if (tall)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 12, 1);
        else if (wide)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 1);
    }
}

/* ---- double: 12 x 16 ----------------------------------------------------------------- */

/* The epilogue of kernel.h on rows i < m, columns j < n. */
PYNN_INLINE void dgemm_store(double *c, int64_t ldc, int m, int n, __m512d acc[12][2], int V,
                             const gemm_epilogue *ep)
{
    const __mmask8 mk[2] = {mask8(n), mask8(n - 8)};
    const __m512d alpha = _mm512_set1_pd(ep->alpha), beta = _mm512_set1_pd(ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const double *bias = (const double *)ep->bias;
    __m512d bv[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    if (bias) {
        bv[0] = _mm512_maskz_loadu_pd(mk[0], bias);
        if (V > 1)
            bv[1] = _mm512_maskz_loadu_pd(mk[1], bias + 8);
    }
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) {
        if (i >= m)
            break;
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            double *cv = c + i * ldc + 8 * v;
            __m512d z = acc[i][v];
            if (scale)
                z = _mm512_mul_pd(alpha, z);
            if (add_c) {
                const __m512d cold = _mm512_maskz_loadu_pd(mk[v], cv);
                z = fma_c ? _mm512_fmadd_pd(beta, cold, z) : _mm512_add_pd(z, cold);
            }
            if (bias)
                z = _mm512_add_pd(z, bv[v]);
            _mm512_mask_storeu_pd(cv, mk[v], z);
        }
    }
}

/* One tile with R rows and V vectors of accumulators; called with constants for R and V
 * and a literal 1 for rs_a or cs_a, so that each call compiles to its own loop with the
 * accumulators in registers and the unit stride folded into the addresses. */
PYNN_INLINE void dgemm_tile(int64_t k, const double *a, int64_t rs_a, int64_t cs_a,
                            const double *b, int64_t rs_b, double *c, int64_t ldc, int m, int n,
                            const gemm_epilogue *ep, const int R, const int V)
{
    __m512d acc[12][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_pd();
    for (int64_t p = 0; p < k; p++) {
        const __m512d b0 = _mm512_loadu_pd(b);
        const __m512d b1 = V > 1 ? _mm512_loadu_pd(b + 8) : b0;
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {
            const __m512d ai = _mm512_set1_pd(a[i * rs_a]);
            acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += cs_a;
        b += rs_b;
    }
    dgemm_store(c, ldc, m, n, acc, V, ep);
}

void dgemm_avx512_12x16(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                        int64_t rs_b, void *c_, int64_t ldc, int m, int n,
                        const gemm_epilogue *ep)
{
    const double *a = (const double *)a_, *b = (const double *)b_;
    double *c = (double *)c_;
    prefetch_tile((const char *)c, ldc * 8, m, n * 8, 0);
    const int wide = n > 8, tall = m > 6;
    if (rs_a == 1) {
        if (tall && wide)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 12, 2);
        else if (tall)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 12, 1);
        else if (wide)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 1);
    } else {
        if (tall && wide)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 12, 2);
        else if (tall)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 12, 1);
        else if (wide)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 1);
    }
}
