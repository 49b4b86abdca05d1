/* Column sums, the bias gradient of a linear layer: db (N) (+)= sum over rows of dy (M, N).
 *
 * Compiled once per ISA (MULTI): the loop over columns vectorises; each column is summed
 * in row order from row 0, so the result does not depend on the vector width or on the
 * thread count (threads take disjoint blocks of columns). The rows are summed in pieces of
 * COLSUM_PIECE, the pieces' sums added in double: one float sum down a column of 60,000
 * rows was 8e-6 off, of 2^23 rows of 0.1 6% off (each 0.1 rounded to a multiple of the
 * sum's spacing); a column of up to COLSUM_PIECE rows is one piece.
 */
#include "isa.h"

/* Columns per block: the partial sums stay in L1 while the rows stream past. */
#define COLSUM_BLOCK 512
/* Rows per piece of a column's sum. */
#define COLSUM_PIECE 128
/* Elements a thread must have before the column sum uses a second one. */
#define COLSUM_MIN_WORK_PER_THREAD 32768

static int colsum_threads(int64_t m, int64_t n, int nthreads)
{
    const int64_t blocks = (n + COLSUM_BLOCK - 1) / COLSUM_BLOCK;
    return pynn_threads_for(m * n, COLSUM_MIN_WORK_PER_THREAD,
                            nthreads < blocks ? nthreads : (int)blocks);
}

/* The kernels for one float type T with suffix S (f32, f64): written once, defined twice
 * below. colsum_block_S sums the m rows of an n <= COLSUM_BLOCK wide block. */
#define COLSUM_KERNELS(T, S)                                                               \
    static void colsum_block_##S(T *PYNN_RESTRICT y, const T *PYNN_RESTRICT x, int64_t ldx, \
                                 int accumulate, int64_t m, int64_t n)                     \
    {                                                                                      \
        T s[COLSUM_BLOCK];                                                                 \
        double total[COLSUM_BLOCK];                                                        \
        for (int64_t j = 0; j < n; j++)                                                    \
            total[j] = 0;                                                                  \
        for (int64_t i0 = 0; i0 < m; i0 += COLSUM_PIECE) {                                 \
            const int64_t i1 = m - i0 < COLSUM_PIECE ? m : i0 + COLSUM_PIECE;              \
            for (int64_t j = 0; j < n; j++)                                                \
                s[j] = 0;                                                                  \
            for (int64_t i = i0; i < i1; i++) {                                            \
                const T *PYNN_RESTRICT row = x + i * ldx;                                  \
                for (int64_t j = 0; j < n; j++)                                            \
                    s[j] += row[j];                                                        \
            }                                                                              \
            for (int64_t j = 0; j < n; j++)                                                \
                total[j] += (double)s[j];                                                  \
        }                                                                                  \
        for (int64_t j = 0; j < n; j++)                                                    \
            y[j] = accumulate ? y[j] + (T)total[j] : (T)total[j];                          \
    }                                                                                      \
                                                                                           \
    void PYNN_ISA_FN(gemm_colsum_##S)(T *y, const T *x, int64_t ldx, int accumulate,       \
                                      int64_t m, int64_t n, int nthreads)                  \
    {                                                                                      \
        const int64_t blocks = (n + COLSUM_BLOCK - 1) / COLSUM_BLOCK;                      \
        const int nt = colsum_threads(m, n, nthreads);                                     \
        (void)nt;                                                                          \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t blk = 0; blk < blocks; blk++) {                                       \
            const int64_t j0 = blk * COLSUM_BLOCK;                                         \
            colsum_block_##S(y + j0, x + j0, ldx, accumulate, m,                           \
                             n - j0 < COLSUM_BLOCK ? n - j0 : COLSUM_BLOCK);               \
        }                                                                                  \
    }

COLSUM_KERNELS(float, f32)
COLSUM_KERNELS(double, f64)

#if PYNN_ISA_generic
/* The checked entry points, choosing the ISA variant. */
#define COLSUM_ENTRY(T, S)                                                                 \
    PYNN_DECLARE_ISA_VARIANTS(void, gemm_colsum_##S,                                       \
                              (T *, const T *, int64_t, int, int64_t, int64_t, int));      \
    pynn_status pynn_gemm_colsum_##S(T *db, const T *dy, int64_t ldy, int accumulate,      \
                                     int64_t m, int64_t n, int nthreads)                   \
    {                                                                                      \
        if (m < 0 || n < 0 || ldy < (n > 1 ? n : 1) || nthreads < 1)                       \
            return PYNN_ERR_ARG;                                                           \
        void (*fn)(T *, const T *, int64_t, int, int64_t, int64_t, int);                   \
        PYNN_SELECT_ISA(fn, gemm_colsum_##S);                                              \
        fn(db, dy, ldy, accumulate, m, n, nthreads);                                       \
        return PYNN_OK;                                                                    \
    }

COLSUM_ENTRY(float, f32)
COLSUM_ENTRY(double, f64)
#endif
