/* Column sums, the bias gradient of a linear layer: db (N) (+)= sum over rows of dy (M, N).
 *
 * Compiled once per ISA (MULTI): the loop over columns vectorises; each column is summed
 * in row order from row 0, so the result does not depend on the vector width or on the
 * thread count (threads take disjoint blocks of columns).
 */
#include "isa.h"

/* Columns per block: the partial sums stay in L1 while the rows stream past. */
#define COLSUM_BLOCK 512
/* Elements a thread must have before the column sum uses a second one. */
#define COLSUM_MIN_WORK_PER_THREAD 32768

static int colsum_threads(int64_t m, int64_t n, int nthreads)
{
    const int64_t blocks = (n + COLSUM_BLOCK - 1) / COLSUM_BLOCK;
    return pynn_threads_for(m * n, COLSUM_MIN_WORK_PER_THREAD,
                            nthreads < blocks ? nthreads : (int)blocks);
}

static void colsum_block_f32(float *PYNN_RESTRICT y, const float *PYNN_RESTRICT x, int64_t ldx,
                             int accumulate, int64_t m, int64_t n)
{
    float s[COLSUM_BLOCK];
    for (int64_t j = 0; j < n; j++)
        s[j] = 0.0f;
    for (int64_t i = 0; i < m; i++) {
        const float *PYNN_RESTRICT row = x + i * ldx;
        for (int64_t j = 0; j < n; j++)
            s[j] += row[j];
    }
    for (int64_t j = 0; j < n; j++)
        y[j] = accumulate ? y[j] + s[j] : s[j];
}

static void colsum_block_f64(double *PYNN_RESTRICT y, const double *PYNN_RESTRICT x, int64_t ldx,
                             int accumulate, int64_t m, int64_t n)
{
    double s[COLSUM_BLOCK];
    for (int64_t j = 0; j < n; j++)
        s[j] = 0.0;
    for (int64_t i = 0; i < m; i++) {
        const double *PYNN_RESTRICT row = x + i * ldx;
        for (int64_t j = 0; j < n; j++)
            s[j] += row[j];
    }
    for (int64_t j = 0; j < n; j++)
        y[j] = accumulate ? y[j] + s[j] : s[j];
}

void PYNN_ISA_FN(gemm_colsum_f32)(float *y, const float *x, int64_t ldx, int accumulate,
                                  int64_t m, int64_t n, int nthreads)
{
    const int64_t blocks = (n + COLSUM_BLOCK - 1) / COLSUM_BLOCK;
    const int nt = colsum_threads(m, n, nthreads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COLSUM_BLOCK;
        colsum_block_f32(y + j0, x + j0, ldx, accumulate, m,
                         n - j0 < COLSUM_BLOCK ? n - j0 : COLSUM_BLOCK);
    }
}

void PYNN_ISA_FN(gemm_colsum_f64)(double *y, const double *x, int64_t ldx, int accumulate,
                                  int64_t m, int64_t n, int nthreads)
{
    const int64_t blocks = (n + COLSUM_BLOCK - 1) / COLSUM_BLOCK;
    const int nt = colsum_threads(m, n, nthreads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COLSUM_BLOCK;
        colsum_block_f64(y + j0, x + j0, ldx, accumulate, m,
                         n - j0 < COLSUM_BLOCK ? n - j0 : COLSUM_BLOCK);
    }
}

#if PYNN_ISA_generic
PYNN_DECLARE_ISA_VARIANTS(void, gemm_colsum_f32,
                          (float *, const float *, int64_t, int, int64_t, int64_t, int));
PYNN_DECLARE_ISA_VARIANTS(void, gemm_colsum_f64,
                          (double *, const double *, int64_t, int, int64_t, int64_t, int));

pynn_status pynn_gemm_colsum_f32(float *db, const float *dy, int64_t ldy, int accumulate,
                                 int64_t m, int64_t n, int nthreads)
{
    if (m < 0 || n < 0 || ldy < (n > 1 ? n : 1) || nthreads < 1)
        return PYNN_ERR_ARG;
    void (*fn)(float *, const float *, int64_t, int, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, gemm_colsum_f32);
    fn(db, dy, ldy, accumulate, m, n, nthreads);
    return PYNN_OK;
}

pynn_status pynn_gemm_colsum_f64(double *db, const double *dy, int64_t ldy, int accumulate,
                                 int64_t m, int64_t n, int nthreads)
{
    if (m < 0 || n < 0 || ldy < (n > 1 ? n : 1) || nthreads < 1)
        return PYNN_ERR_ARG;
    void (*fn)(double *, const double *, int64_t, int, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, gemm_colsum_f64);
    fn(db, dy, ldy, accumulate, m, n, nthreads);
    return PYNN_OK;
}
#endif
