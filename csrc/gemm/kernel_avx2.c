/* AVX2 + FMA GEMM micro-kernels and packing (compiled for AVX2 only; kernel.h has the
 * contract).
 *
 * sgemm 6x16 and dgemm 6x8: 6 rows of the tile by two ymm vectors, 12 accumulators,
 * leaving registers for the two vectors of B and a broadcast of A (16 ymm registers in
 * all). Partial tiles are read and written through vmaskmov masks; an edge tile with
 * m <= 3 or n <= NR/2 runs a loop over only the rows and vectors it needs, with the same
 * per-element chain of FMAs. Transposed tiles (C^T) are turned around in registers.
 */
#include <immintrin.h>

#include "gemm/kernel.h"

/* All-ones in the lanes below n: the lanes that vmaskmov loads and stores. */
PYNN_INLINE __m256i lane_mask32(int n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

PYNN_INLINE __m256i lane_mask64(int n)
{
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), idx);
}

/* r[i] holds row i of an 8 x 8 block; afterwards r[j] holds column j. */
PYNN_INLINE void transpose8_ps(__m256 r[8])
{
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}

/* r[i] holds row i of a 4 x 4 block; afterwards r[j] holds column j. */
PYNN_INLINE void transpose4_pd(__m256d r[4])
{
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* ---- float: 6 x 16 ------------------------------------------------------------------- */

PYNN_INLINE void sgemm_store(float *c, int64_t ldc, int m, int n, __m256 acc[6][2], int V,
                             const gemm_epilogue *ep)
{
    const __m256i mk[2] = {lane_mask32(n), lane_mask32(n - 8)};
    const __m256 alpha = _mm256_set1_ps((float)ep->alpha), beta = _mm256_set1_ps((float)ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const float *bias = (const float *)ep->bias;
    __m256 bv[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    if (bias) {
        bv[0] = _mm256_maskload_ps(bias, mk[0]);
        if (V > 1)
            bv[1] = _mm256_maskload_ps(bias + 8, mk[1]);
    }
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++) {
        if (i >= m)
            break;
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            float *cv = c + i * ldc + 8 * v;
            __m256 z = acc[i][v];
            if (scale)
                z = _mm256_mul_ps(alpha, z);
            if (add_c) {
                const __m256 cold = _mm256_maskload_ps(cv, mk[v]);
                z = fma_c ? _mm256_fmadd_ps(beta, cold, z) : _mm256_add_ps(z, cold);
            }
            if (bias)
                z = _mm256_add_ps(z, bv[v]);
            _mm256_maskstore_ps(cv, mk[v], z);
        }
    }
}

/* The epilogue for a transposed tile: tile column j is row j of C, tile row i its column
 * i; the tile is transposed in registers, 8 x 8 at a time. */
PYNN_INLINE void sgemm_store_t(float *c, int64_t ldc, int m, int n, __m256 acc[6][2], int V,
                               const gemm_epilogue *ep)
{
    const __m256i cols = lane_mask32(m);
    const __m256 alpha = _mm256_set1_ps((float)ep->alpha), beta = _mm256_set1_ps((float)ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const float *bias = (const float *)ep->bias;
    const __m256 bv = bias ? _mm256_maskload_ps(bias, cols) : _mm256_setzero_ps();
    _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
        __m256 r[8];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
            r[i] = i < 6 ? acc[i][v] : _mm256_setzero_ps();
        transpose8_ps(r);
        for (int l = 0; l < 8 && 8 * v + l < n; l++) {
            float *cr = c + (8 * v + l) * ldc;
            __m256 z = r[l];
            if (scale)
                z = _mm256_mul_ps(alpha, z);
            if (add_c) {
                const __m256 cold = _mm256_maskload_ps(cr, cols);
                z = fma_c ? _mm256_fmadd_ps(beta, cold, z) : _mm256_add_ps(z, cold);
            }
            if (bias)
                z = _mm256_add_ps(z, bv);
            _mm256_maskstore_ps(cr, cols, z);
        }
    }
}

/* One tile with R rows and V vectors of accumulators; called with constants for R and V
 * and a literal 1 for rs_a or cs_a (see kernel_avx512.c). */
PYNN_INLINE void sgemm_tile(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                            const float *b, int64_t rs_b, float *c, int64_t ldc, int m, int n,
                            const gemm_epilogue *ep, const int R, const int V)
{
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = V > 1 ? _mm256_loadu_ps(b + 8) : b0;
        _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i * rs_a);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += cs_a;
        b += rs_b;
    }
    if (ep->transpose)
        sgemm_store_t(c, ldc, m, n, acc, V, ep);
    else
        sgemm_store(c, ldc, m, n, acc, V, ep);
}

void sgemm_avx2_6x16(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                     int64_t rs_b, void *c_, int64_t ldc, int m, int n, const gemm_epilogue *ep)
{
    const float *a = (const float *)a_, *b = (const float *)b_;
    float *c = (float *)c_;
    const int wide = n > 8, tall = m > 3;
    if (rs_a == 1) {
        if (tall && wide)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else if (tall)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 1);
        else if (wide)
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 3, 2);
        else
            sgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 3, 1);
    } else {
        if (tall && wide)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else if (tall)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 1);
        else if (wide)
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 3, 2);
        else
            sgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 3, 1);
    }
}

/* ---- double: 6 x 8 ------------------------------------------------------------------- */

PYNN_INLINE void dgemm_store(double *c, int64_t ldc, int m, int n, __m256d acc[6][2], int V,
                             const gemm_epilogue *ep)
{
    const __m256i mk[2] = {lane_mask64(n), lane_mask64(n - 4)};
    const __m256d alpha = _mm256_set1_pd(ep->alpha), beta = _mm256_set1_pd(ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const double *bias = (const double *)ep->bias;
    __m256d bv[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    if (bias) {
        bv[0] = _mm256_maskload_pd(bias, mk[0]);
        if (V > 1)
            bv[1] = _mm256_maskload_pd(bias + 4, mk[1]);
    }
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++) {
        if (i >= m)
            break;
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            double *cv = c + i * ldc + 4 * v;
            __m256d z = acc[i][v];
            if (scale)
                z = _mm256_mul_pd(alpha, z);
            if (add_c) {
                const __m256d cold = _mm256_maskload_pd(cv, mk[v]);
                z = fma_c ? _mm256_fmadd_pd(beta, cold, z) : _mm256_add_pd(z, cold);
            }
            if (bias)
                z = _mm256_add_pd(z, bv[v]);
            _mm256_maskstore_pd(cv, mk[v], z);
        }
    }
}

/* The epilogue for a transposed tile (see sgemm_store_t), 4 x 4 at a time: C row j gets
 * tile rows 0..3 and 4..5 of tile column j. */
PYNN_INLINE void dgemm_store_t(double *c, int64_t ldc, int m, int n, __m256d acc[6][2], int V,
                               const gemm_epilogue *ep)
{
    const __m256d alpha = _mm256_set1_pd(ep->alpha), beta = _mm256_set1_pd(ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const double *bias = (const double *)ep->bias;
    _Pragma("GCC unroll 2") for (int g = 0; g < 2; g++) {
        const __m256i cols = lane_mask64(m - 4 * g);
        const __m256d bv = bias ? _mm256_maskload_pd(bias + 4 * g, cols) : _mm256_setzero_pd();
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            __m256d r[4];
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
                r[i] = 4 * g + i < 6 ? acc[4 * g + i][v] : _mm256_setzero_pd();
            transpose4_pd(r);
            for (int l = 0; l < 4 && 4 * v + l < n; l++) {
                double *cr = c + (4 * v + l) * ldc + 4 * g;
                __m256d z = r[l];
                if (scale)
                    z = _mm256_mul_pd(alpha, z);
                if (add_c) {
                    const __m256d cold = _mm256_maskload_pd(cr, cols);
                    z = fma_c ? _mm256_fmadd_pd(beta, cold, z) : _mm256_add_pd(z, cold);
                }
                if (bias)
                    z = _mm256_add_pd(z, bv);
                _mm256_maskstore_pd(cr, cols, z);
            }
        }
    }
}

PYNN_INLINE void dgemm_tile(int64_t k, const double *a, int64_t rs_a, int64_t cs_a,
                            const double *b, int64_t rs_b, double *c, int64_t ldc, int m, int n,
                            const gemm_epilogue *ep, const int R, const int V)
{
    __m256d acc[6][2];
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_pd();
    for (int64_t p = 0; p < k; p++) {
        const __m256d b0 = _mm256_loadu_pd(b);
        const __m256d b1 = V > 1 ? _mm256_loadu_pd(b + 4) : b0;
        _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) {
            const __m256d ai = _mm256_broadcast_sd(a + i * rs_a);
            acc[i][0] = _mm256_fmadd_pd(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm256_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += cs_a;
        b += rs_b;
    }
    if (ep->transpose)
        dgemm_store_t(c, ldc, m, n, acc, V, ep);
    else
        dgemm_store(c, ldc, m, n, acc, V, ep);
}

void dgemm_avx2_6x8(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                    int64_t rs_b, void *c_, int64_t ldc, int m, int n, const gemm_epilogue *ep)
{
    const double *a = (const double *)a_, *b = (const double *)b_;
    double *c = (double *)c_;
    const int wide = n > 4, tall = m > 3;
    if (rs_a == 1) {
        if (tall && wide)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else if (tall)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 6, 1);
        else if (wide)
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 3, 2);
        else
            dgemm_tile(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep, 3, 1);
    } else {
        if (tall && wide)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 2);
        else if (tall)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 6, 1);
        else if (wide)
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 3, 2);
        else
            dgemm_tile(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep, 3, 1);
    }
}

/* ---- packing: transposes in registers -------------------------------------------------- */

/* pack_trans of kernel.h: blocks of 8 source rows x 8 k (4 x 4 for doubles) are loaded
 * (masked at the edges, rows past mn read as zero), transposed, and stored as k-rows of
 * the panel. */
void gemm_pack_trans_f32_avx2(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                              int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int x0 = 0; x0 < w; x0 += 8) {
        const __m256i lanes = lane_mask32(w - x0);
        const int64_t rows = mn - x0;
        for (int64_t p0 = 0; p0 < k; p0 += 8) {
            const int64_t kk = k - p0 < 8 ? k - p0 : 8;
            const __m256i cols = lane_mask32((int)kk);
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? _mm256_maskload_ps(src + (x0 + i) * ld + p0, cols)
                                : _mm256_setzero_ps();
            transpose8_ps(r);
            for (int64_t i = 0; i < kk; i++)
                _mm256_maskstore_ps(dst + (p0 + i) * w + x0, lanes, r[i]);
        }
    }
}

void gemm_pack_trans_f64_avx2(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                              int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int x0 = 0; x0 < w; x0 += 4) {
        const __m256i lanes = lane_mask64(w - x0);
        const int64_t rows = mn - x0;
        for (int64_t p0 = 0; p0 < k; p0 += 4) {
            const int64_t kk = k - p0 < 4 ? k - p0 : 4;
            const __m256i cols = lane_mask64((int)kk);
            __m256d r[4];
            for (int i = 0; i < 4; i++)
                r[i] = i < rows ? _mm256_maskload_pd(src + (x0 + i) * ld + p0, cols)
                                : _mm256_setzero_pd();
            transpose4_pd(r);
            for (int64_t i = 0; i < kk; i++)
                _mm256_maskstore_pd(dst + (p0 + i) * w + x0, lanes, r[i]);
        }
    }
}

/* pack_copy of kernel.h: each k-row of the panel is a masked load of the mn present
 * values (the rest read as zero) and a masked store of the full width. */
void gemm_pack_copy_f32_avx2(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                             int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int x0 = 0; x0 < w; x0 += 8) {
        const __m256i load = lane_mask32((int)(mn - x0)), store = lane_mask32(w - x0);
        for (int64_t p = 0; p < k; p++)
            _mm256_maskstore_ps(dst + p * w + x0, store,
                                _mm256_maskload_ps(src + p * ld + x0, load));
    }
}

void gemm_pack_copy_f64_avx2(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                             int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int x0 = 0; x0 < w; x0 += 4) {
        const __m256i load = lane_mask64((int)(mn - x0)), store = lane_mask64(w - x0);
        for (int64_t p = 0; p < k; p++)
            _mm256_maskstore_pd(dst + p * w + x0, store,
                                _mm256_maskload_pd(src + p * ld + x0, load));
    }
}
