/* Portable GEMM micro-kernels: plain C that the compiler vectorises along the columns of
 * the tile, with the accumulators small enough to live in registers on a baseline x86-64
 * (16 SSE registers) or an AArch64 build. They are also the readable specification of
 * the micro-kernel contract in kernel.h: the ISA kernels compute exactly this, with
 * fused multiply-adds.
 */
#include "gemm/kernel.h"

#define S_MR 4
#define S_NR 8
#define D_MR 4
#define D_NR 4

void sgemm_generic_4x8(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                       int64_t rs_b, void *c_, int64_t ldc, int m, int n, const gemm_epilogue *ep)
{
    const float *a = (const float *)a_, *b = (const float *)b_;
    float *c = (float *)c_;
    float acc[S_MR][S_NR] = {{0}};
    for (int64_t p = 0; p < k; p++) {
        const float *bp = b + p * rs_b;
        for (int i = 0; i < S_MR; i++) {
            const float ai = a[i * rs_a + p * cs_a];
            for (int j = 0; j < S_NR; j++)
                acc[i][j] += ai * bp[j];
        }
    }
    const float alpha = (float)ep->alpha, beta = (float)ep->beta;
    const float *bias = (const float *)ep->bias;
    const int64_t rs_c = ep->transpose ? 1 : ldc, cs_c = ep->transpose ? ldc : 1;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float *cij = c + i * rs_c + j * cs_c;
            float z = alpha * acc[i][j];
            if (beta != 0.0f)
                z = beta == 1.0f ? z + *cij : z + beta * *cij;
            if (bias)
                z += bias[ep->transpose ? i : j];
            *cij = z;
        }
    }
}

void dgemm_generic_4x4(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
                       int64_t rs_b, void *c_, int64_t ldc, int m, int n,
                       const gemm_epilogue *ep)
{
    const double *a = (const double *)a_, *b = (const double *)b_;
    double *c = (double *)c_;
    double acc[D_MR][D_NR] = {{0}};
    for (int64_t p = 0; p < k; p++) {
        const double *bp = b + p * rs_b;
        for (int i = 0; i < D_MR; i++) {
            const double ai = a[i * rs_a + p * cs_a];
            for (int j = 0; j < D_NR; j++)
                acc[i][j] += ai * bp[j];
        }
    }
    const double alpha = ep->alpha, beta = ep->beta;
    const double *bias = (const double *)ep->bias;
    const int64_t rs_c = ep->transpose ? 1 : ldc, cs_c = ep->transpose ? ldc : 1;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double *cij = c + i * rs_c + j * cs_c;
            double z = alpha * acc[i][j];
            if (beta != 0.0)
                z = beta == 1.0 ? z + *cij : z + beta * *cij;
            if (bias)
                z += bias[ep->transpose ? i : j];
            *cij = z;
        }
    }
}
