/* Softmax, log-softmax and fused softmax + cross-entropy, forward and backward.
 *
 * Compiled once per ISA (a MULTI source): portable C whose loops gcc and clang vectorise,
 * with exp and log from vmath.h. The kernels for one float type are written once, in the
 * second half of this file, which includes itself twice (float, then double).
 *
 * Softmax runs along the middle axis of a contiguous (M, C, K) array, which is any array
 * and any axis without a transpose. K > 1 walks blocks of up to KBLOCK neighbouring
 * columns, the vector lanes running along K. K == 1 is the row case: rows of at least
 * LANES values are reduced one at a time, shorter rows (classifier heads with ten
 * classes) a chunk of ROW_CHUNK rows at a time, transposed so that the lanes run across
 * rows. Rows are shifted by their maximum before exp, so large values cannot overflow;
 * NaN or inf in a row makes that row NaN (inf - inf), as in PyTorch.
 *
 * Every value's summation order is fixed by the shape alone: sums along a long row go
 * into LANES accumulators folded in a fixed order (which is also what lets the compiler
 * vectorise them without -ffast-math), the other paths sum sequentially along C, and
 * the cross-entropy adds its row losses per chunk of ROW_CHUNK rows, then the chunks in
 * order. So results do not depend on the thread count, nor a row's on its batch.
 */
#ifndef PYNN_SX_REAL

#include <math.h> /* NAN */
#include <stdlib.h>
#include <string.h>

#include "isa.h"
#include "vmath.h"

enum {
    LANES = 32,       /* accumulators per row reduction: two AVX-512 float vectors */
    KBLOCK = 64,      /* columns per task when softmax runs along a strided axis */
    ROW_CHUNK = 16,   /* rows per task, and per partial sum of the cross-entropy loss */
    SUM_BLOCK = 4096, /* values per piece of a long row's sum (BLOCKED_SUM) */
    COL_PIECE = 32,   /* values per piece of a column's sum (softmax_columns) */
    MIN_WORK = 16384  /* elements that justify one more thread (exp is ~10 flops) */
};

#define PYNN_SX_REAL float
#define PYNN_SX_FN(name) name##_f32
#define PYNN_SX_EXP vm_exp_f32
#define PYNN_SX_LOG vm_log_f32
#include "softmax_xent.c"
#undef PYNN_SX_REAL
#undef PYNN_SX_FN
#undef PYNN_SX_EXP
#undef PYNN_SX_LOG

#define PYNN_SX_REAL double
#define PYNN_SX_FN(name) name##_f64
#define PYNN_SX_EXP vm_exp_f64
#define PYNN_SX_LOG vm_log_f64
#include "softmax_xent.c"
#undef PYNN_SX_REAL
#undef PYNN_SX_FN
#undef PYNN_SX_EXP
#undef PYNN_SX_LOG

#if PYNN_ISA_generic
/* Dispatchers: the variant for the ISA in force. */
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_forward_f32,
                          (float *, const float *, int, int64_t, int64_t, int64_t, int));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_forward_f64,
                          (double *, const double *, int, int64_t, int64_t, int64_t, int));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_backward_f32,
                          (float *, const float *, const float *, int, int64_t, int64_t,
                           int64_t, int));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_backward_f64,
                          (double *, const double *, const double *, int, int64_t, int64_t,
                           int64_t, int));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_xent_forward_backward_f32,
                          (double *, float *, float *, const float *, const int64_t *,
                           const float *, pynn_reduction, double, int64_t, int64_t, int64_t,
                           int));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_softmax_xent_forward_backward_f64,
                          (double *, double *, double *, const double *, const int64_t *,
                           const double *, pynn_reduction, double, int64_t, int64_t, int64_t,
                           int));

pynn_status pynn_softmax_forward_f32(float *y, const float *x, int log_softmax, int64_t m,
                                     int64_t c, int64_t k, int nthreads)
{
    pynn_status (*fn)(float *, const float *, int, int64_t, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, pynn_softmax_forward_f32);
    return fn(y, x, log_softmax, m, c, k, nthreads);
}

pynn_status pynn_softmax_forward_f64(double *y, const double *x, int log_softmax, int64_t m,
                                     int64_t c, int64_t k, int nthreads)
{
    pynn_status (*fn)(double *, const double *, int, int64_t, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, pynn_softmax_forward_f64);
    return fn(y, x, log_softmax, m, c, k, nthreads);
}

pynn_status pynn_softmax_backward_f32(float *dx, const float *dy, const float *y,
                                      int log_softmax, int64_t m, int64_t c, int64_t k,
                                      int nthreads)
{
    pynn_status (*fn)(float *, const float *, const float *, int, int64_t, int64_t, int64_t,
                      int);
    PYNN_SELECT_ISA(fn, pynn_softmax_backward_f32);
    return fn(dx, dy, y, log_softmax, m, c, k, nthreads);
}

pynn_status pynn_softmax_backward_f64(double *dx, const double *dy, const double *y,
                                      int log_softmax, int64_t m, int64_t c, int64_t k,
                                      int nthreads)
{
    pynn_status (*fn)(double *, const double *, const double *, int, int64_t, int64_t,
                      int64_t, int);
    PYNN_SELECT_ISA(fn, pynn_softmax_backward_f64);
    return fn(dx, dy, y, log_softmax, m, c, k, nthreads);
}

pynn_status pynn_softmax_xent_forward_backward_f32(
    double *loss, float *losses, float *dlogits, const float *logits, const int64_t *labels,
    const float *weight, pynn_reduction reduction, double label_smoothing,
    int64_t ignore_index, int64_t n, int64_t c, int nthreads)
{
    pynn_status (*fn)(double *, float *, float *, const float *, const int64_t *,
                      const float *, pynn_reduction, double, int64_t, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, pynn_softmax_xent_forward_backward_f32);
    return fn(loss, losses, dlogits, logits, labels, weight, reduction, label_smoothing,
              ignore_index, n, c, nthreads);
}

pynn_status pynn_softmax_xent_forward_backward_f64(
    double *loss, double *losses, double *dlogits, const double *logits,
    const int64_t *labels, const double *weight, pynn_reduction reduction,
    double label_smoothing, int64_t ignore_index, int64_t n, int64_t c, int nthreads)
{
    pynn_status (*fn)(double *, double *, double *, const double *, const int64_t *,
                      const double *, pynn_reduction, double, int64_t, int64_t, int64_t, int);
    PYNN_SELECT_ISA(fn, pynn_softmax_xent_forward_backward_f64);
    return fn(loss, losses, dlogits, logits, labels, weight, reduction, label_smoothing,
              ignore_index, n, c, nthreads);
}
#endif /* PYNN_ISA_generic */

#else /* ---- kernels for one float type: real is float or double ------------------------ */

#define real PYNN_SX_REAL
#define FN PYNN_SX_FN
#define EXP PYNN_SX_EXP
#define LOG PYNN_SX_LOG

/* ---- reductions along a contiguous row x[0..n) --------------------------------------
 * Each keeps LANES partial results, lane j seeing elements j, j + LANES, ..., folds them
 * pairwise (a tree the compiler vectorises; folding lane by lane would be a serial chain
 * of LANES dependent operations per row), then adds the tail. The max ignores NaN, but
 * a NaN still reaches the row's output through exp(NaN - max) in the sum. */

PYNN_INLINE real FN(fold_max)(real *acc)
{
    for (int h = LANES / 2; h > 0; h /= 2)
        for (int j = 0; j < h; j++)
            acc[j] = acc[j + h] > acc[j] ? acc[j + h] : acc[j];
    return acc[0];
}

PYNN_INLINE real FN(fold_sum)(real *acc)
{
    for (int h = LANES / 2; h > 0; h /= 2)
        for (int j = 0; j < h; j++)
            acc[j] += acc[j + h];
    return acc[0];
}

PYNN_INLINE real FN(row_max)(const real *x, int64_t n)
{
    real m = x[0];
    int64_t i = 0;
    if (n >= LANES) {
        real acc[LANES];
        for (int j = 0; j < LANES; j++)
            acc[j] = x[j];
        for (i = LANES; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
        m = FN(fold_max)(acc);
    }
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

PYNN_INLINE real FN(row_sum_piece)(const real *x, int64_t n)
{
    real acc[LANES] = {0}, s = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += x[i + j];
    for (; i < n; i++)
        s += x[i];
    return FN(fold_sum)(acc) + s;
}

PYNN_INLINE real FN(row_dot_piece)(const real *a, const real *b, int64_t n)
{
    real acc[LANES] = {0}, s = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += a[i + j] * b[i + j];
    for (; i < n; i++)
        s += a[i] * b[i];
    return FN(fold_sum)(acc) + s;
}

/* sum_i exp(x[i] - m) */
PYNN_INLINE real FN(row_sum_exp_piece)(const real *x, real m, int64_t n)
{
    real acc[LANES] = {0}, s = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += EXP(x[i + j] - m);
    for (; i < n; i++)
        s += EXP(x[i] - m);
    return FN(fold_sum)(acc) + s;
}

/* e[i] = exp(x[i] - m); returns sum_i e[i]. */
PYNN_INLINE real FN(row_exp_sum_piece)(real *PYNN_RESTRICT e, const real *PYNN_RESTRICT x, real m,
                                 int64_t n)
{
    real acc[LANES] = {0}, s = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            const real v = EXP(x[i + j] - m);
            e[i + j] = v;
            acc[j] += v;
        }
    for (; i < n; i++) {
        const real v = EXP(x[i] - m);
        e[i] = v;
        s += v;
    }
    return FN(fold_sum)(acc) + s;
}

/* sum_i w[i] * (x[i] - m), or sum_i (x[i] - m) when w is NULL. Shifting before summing
 * keeps the smoothing term accurate when the logits are large (no cancellation
 * between sum w*x and m * sum w). */
PYNN_INLINE real FN(row_sum_shifted_piece)(const real *x, const real *w, real m, int64_t n)
{
    real acc[LANES] = {0}, s = 0;
    int64_t i = 0;
    if (w) {
        for (; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += w[i + j] * (x[i + j] - m);
        for (; i < n; i++)
            s += w[i] * (x[i] - m);
    } else {
        for (; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += x[i + j] - m;
        for (; i < n; i++)
            s += x[i] - m;
    }
    return FN(fold_sum)(acc) + s;
}

/* Rows longer than SUM_BLOCK add the sums of SUM_BLOCK-value pieces in double, so that no
 * lane accumulator takes more than SUM_BLOCK / LANES values: over a row of 10^8 values
 * with one dominant term, float lanes running the whole row were 0.5% off. A row of up to
 * SUM_BLOCK values is summed as one piece, exactly as before. */
#define BLOCKED_SUM(piece, n, ...)                                         \
    do {                                                                   \
        if ((n) <= SUM_BLOCK) {                                            \
            const int64_t i0 = 0;                                          \
            return piece(__VA_ARGS__, (n));                                \
        }                                                                  \
        double total = 0;                                                  \
        for (int64_t i0 = 0; i0 < (n); i0 += SUM_BLOCK) {                  \
            const int64_t len = (n) - i0 < SUM_BLOCK ? (n) - i0 : SUM_BLOCK; \
            total += (double)piece(__VA_ARGS__, len);                      \
        }                                                                  \
        return (real)total;                                                \
    } while (0)

PYNN_INLINE real FN(row_sum)(const real *x, int64_t n)
{
    BLOCKED_SUM(FN(row_sum_piece), n, x + i0);
}

PYNN_INLINE real FN(row_dot)(const real *a, const real *b, int64_t n)
{
    BLOCKED_SUM(FN(row_dot_piece), n, a + i0, b + i0);
}

PYNN_INLINE real FN(row_sum_exp)(const real *x, real m, int64_t n)
{
    BLOCKED_SUM(FN(row_sum_exp_piece), n, x + i0, m);
}

PYNN_INLINE real FN(row_exp_sum)(real *PYNN_RESTRICT e, const real *PYNN_RESTRICT x, real m,
                                 int64_t n)
{
    BLOCKED_SUM(FN(row_exp_sum_piece), n, e + i0, x + i0, m);
}

PYNN_INLINE real FN(row_sum_shifted)(const real *x, const real *w, real m, int64_t n)
{
    BLOCKED_SUM(FN(row_sum_shifted_piece), n, x + i0, w ? w + i0 : NULL, m);
}

#undef BLOCKED_SUM

/* ---- softmax ------------------------------------------------------------------------ */

/* x, y (C,): one row. */
PYNN_INLINE void FN(softmax_row)(real *PYNN_RESTRICT y, const real *PYNN_RESTRICT x,
                                 int log_softmax, int64_t c)
{
    const real m = FN(row_max)(x, c);
    if (log_softmax) {
        const real log_s = LOG(FN(row_sum_exp)(x, m, c));
        for (int64_t i = 0; i < c; i++)
            y[i] = (x[i] - m) - log_s;
    } else {
        const real r = (real)1 / FN(row_exp_sum)(y, x, m, c);
        for (int64_t i = 0; i < c; i++)
            y[i] *= r;
    }
}

/* x, y: kn <= KBLOCK columns of C values, K apart. Each column is reduced along C, the
 * vector lanes running across columns: sequentially within pieces of COL_PIECE values,
 * the pieces' sums added in double. A column of 2^23 float values with one dominant term,
 * summed in one accumulator, came out 11% off (3e-8 now); a column of up to COL_PIECE
 * values is one piece, summed as before. */
PYNN_INLINE void FN(softmax_columns)(real *PYNN_RESTRICT y, const real *PYNN_RESTRICT x,
                                     int log_softmax, int64_t c, int64_t k, int64_t kn)
{
    real mx[KBLOCK], s[KBLOCK];
    double total[KBLOCK];
    for (int64_t j = 0; j < kn; j++) {
        mx[j] = x[j];
        total[j] = 0;
    }
    for (int64_t i = 1; i < c; i++) {
        const real *xi = x + i * k;
        for (int64_t j = 0; j < kn; j++)
            mx[j] = xi[j] > mx[j] ? xi[j] : mx[j];
    }
    for (int64_t i0 = 0; i0 < c; i0 += COL_PIECE) {
        const int64_t i1 = c - i0 < COL_PIECE ? c : i0 + COL_PIECE;
        for (int64_t j = 0; j < kn; j++)
            s[j] = 0;
        for (int64_t i = i0; i < i1; i++) {
            const real *xi = x + i * k;
            real *yi = y + i * k;
            if (log_softmax)
                for (int64_t j = 0; j < kn; j++)
                    s[j] += EXP(xi[j] - mx[j]);
            else
                for (int64_t j = 0; j < kn; j++) {
                    const real v = EXP(xi[j] - mx[j]);
                    yi[j] = v;
                    s[j] += v;
                }
        }
        for (int64_t j = 0; j < kn; j++)
            total[j] += (double)s[j];
    }
    if (log_softmax) {
        for (int64_t j = 0; j < kn; j++)
            s[j] = LOG((real)total[j]);
        for (int64_t i = 0; i < c; i++) {
            const real *xi = x + i * k;
            real *yi = y + i * k;
            for (int64_t j = 0; j < kn; j++)
                yi[j] = (xi[j] - mx[j]) - s[j];
        }
    } else {
        for (int64_t j = 0; j < kn; j++)
            s[j] = (real)1 / (real)total[j];
        for (int64_t i = 0; i < c; i++) {
            real *yi = y + i * k;
            for (int64_t j = 0; j < kn; j++)
                yi[j] *= s[j];
        }
    }
}

/* Rows shorter than LANES would fill a fraction of the vector lanes one at a time, and
 * pay the set-up of every loop (and exp) for a handful of values. A chunk of them is
 * transposed instead, t[i][r] = x[r][i], and goes through the column kernels with the
 * lanes running across its rows. Lanes past the chunk's last row hold zeros. */
PYNN_INLINE void FN(transpose_in)(real *PYNN_RESTRICT t, const real *PYNN_RESTRICT x,
                                  int64_t nr, int64_t c)
{
    for (int64_t r = 0; r < nr; r++)
        for (int64_t i = 0; i < c; i++)
            t[i * ROW_CHUNK + r] = x[r * c + i];
    for (int64_t r = nr; r < ROW_CHUNK; r++)
        for (int64_t i = 0; i < c; i++)
            t[i * ROW_CHUNK + r] = 0;
}

PYNN_INLINE void FN(transpose_out)(real *PYNN_RESTRICT y, const real *PYNN_RESTRICT t,
                                   int64_t nr, int64_t c)
{
    for (int64_t r = 0; r < nr; r++)
        for (int64_t i = 0; i < c; i++)
            y[r * c + i] = t[i * ROW_CHUNK + r];
}

/* x, y (nr, C): nr <= ROW_CHUNK rows with C < LANES. */
PYNN_INLINE void FN(softmax_short_rows)(real *PYNN_RESTRICT y, const real *PYNN_RESTRICT x,
                                        int log_softmax, int64_t nr, int64_t c)
{
    real tx[LANES * ROW_CHUNK], ty[LANES * ROW_CHUNK];
    FN(transpose_in)(tx, x, nr, c);
    FN(softmax_columns)(ty, tx, log_softmax, c, ROW_CHUNK, ROW_CHUNK);
    FN(transpose_out)(y, ty, nr, c);
}

/* x, y (M, C, K); normalised along C: softmax, or log_softmax when log_softmax != 0.
 * y must not overlap x. */
pynn_status PYNN_ISA_FN(FN(pynn_softmax_forward))(real *PYNN_RESTRICT y,
                                                  const real *PYNN_RESTRICT x, int log_softmax,
                                                  int64_t m, int64_t c, int64_t k,
                                                  int nthreads)
{
    if (m < 0 || c < 0 || k < 0)
        return PYNN_ERR_ARG;
    if (m == 0 || c == 0 || k == 0)
        return PYNN_OK;
    const int nt = pynn_threads_for(m * c * k, MIN_WORK, nthreads);
    if (k == 1) {
        const int64_t chunks = (m + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t ch = 0; ch < chunks; ch++) {
            const int64_t r0 = ch * ROW_CHUNK, nr = m - r0 < ROW_CHUNK ? m - r0 : ROW_CHUNK;
            if (c < LANES)
                FN(softmax_short_rows)(y + r0 * c, x + r0 * c, log_softmax, nr, c);
            else
                for (int64_t r = r0; r < r0 + nr; r++)
                    FN(softmax_row)(y + r * c, x + r * c, log_softmax, c);
        }
    } else {
        const int64_t blocks = (k + KBLOCK - 1) / KBLOCK;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t t = 0; t < m * blocks; t++) {
            const int64_t k0 = (t % blocks) * KBLOCK;
            const int64_t at = (t / blocks) * c * k + k0;
            const int64_t kn = k - k0 < KBLOCK ? k - k0 : KBLOCK;
            FN(softmax_columns)(y + at, x + at, log_softmax, c, k, kn);
        }
    }
    (void)nt;
    return PYNN_OK;
}

/* dy, y, dx (C,): one row. */
PYNN_INLINE void FN(softmax_backward_row)(real *PYNN_RESTRICT dx, const real *PYNN_RESTRICT dy,
                                          const real *PYNN_RESTRICT y, int log_softmax,
                                          int64_t c)
{
    if (log_softmax) {
        const real g = FN(row_sum)(dy, c);
        for (int64_t i = 0; i < c; i++)
            dx[i] = dy[i] - EXP(y[i]) * g;
    } else {
        const real g = FN(row_dot)(dy, y, c);
        for (int64_t i = 0; i < c; i++)
            dx[i] = y[i] * (dy[i] - g);
    }
}

/* dy, y, dx: kn <= KBLOCK columns of C values, K apart; sums in pieces as in
 * softmax_columns. */
PYNN_INLINE void FN(softmax_backward_columns)(real *PYNN_RESTRICT dx,
                                              const real *PYNN_RESTRICT dy,
                                              const real *PYNN_RESTRICT y, int log_softmax,
                                              int64_t c, int64_t k, int64_t kn)
{
    real g[KBLOCK];
    double total[KBLOCK];
    for (int64_t j = 0; j < kn; j++)
        total[j] = 0;
    for (int64_t i0 = 0; i0 < c; i0 += COL_PIECE) {
        const int64_t i1 = c - i0 < COL_PIECE ? c : i0 + COL_PIECE;
        for (int64_t j = 0; j < kn; j++)
            g[j] = 0;
        for (int64_t i = i0; i < i1; i++) {
            const real *dyi = dy + i * k, *yi = y + i * k;
            if (log_softmax)
                for (int64_t j = 0; j < kn; j++)
                    g[j] += dyi[j];
            else
                for (int64_t j = 0; j < kn; j++)
                    g[j] += dyi[j] * yi[j];
        }
        for (int64_t j = 0; j < kn; j++)
            total[j] += (double)g[j];
    }
    for (int64_t j = 0; j < kn; j++)
        g[j] = (real)total[j];
    for (int64_t i = 0; i < c; i++) {
        const real *dyi = dy + i * k, *yi = y + i * k;
        real *dxi = dx + i * k;
        if (log_softmax)
            for (int64_t j = 0; j < kn; j++)
                dxi[j] = dyi[j] - EXP(yi[j]) * g[j];
        else
            for (int64_t j = 0; j < kn; j++)
                dxi[j] = yi[j] * (dyi[j] - g[j]);
    }
}

/* dy, y, dx (nr, C): nr <= ROW_CHUNK rows with C < LANES, transposed as in
 * softmax_short_rows. */
PYNN_INLINE void FN(softmax_backward_short_rows)(real *PYNN_RESTRICT dx,
                                                 const real *PYNN_RESTRICT dy,
                                                 const real *PYNN_RESTRICT y, int log_softmax,
                                                 int64_t nr, int64_t c)
{
    real tdx[LANES * ROW_CHUNK], tdy[LANES * ROW_CHUNK], ty[LANES * ROW_CHUNK];
    FN(transpose_in)(tdy, dy, nr, c);
    FN(transpose_in)(ty, y, nr, c);
    FN(softmax_backward_columns)(tdx, tdy, ty, log_softmax, c, ROW_CHUNK, ROW_CHUNK);
    FN(transpose_out)(dx, tdx, nr, c);
}

/* dy, y, dx (M, C, K), along C; y is the forward output (softmax, or log_softmax when
 * log_softmax != 0). dx must not overlap dy or y. */
pynn_status PYNN_ISA_FN(FN(pynn_softmax_backward))(real *PYNN_RESTRICT dx,
                                                   const real *PYNN_RESTRICT dy,
                                                   const real *PYNN_RESTRICT y,
                                                   int log_softmax, int64_t m, int64_t c,
                                                   int64_t k, int nthreads)
{
    if (m < 0 || c < 0 || k < 0)
        return PYNN_ERR_ARG;
    if (m == 0 || c == 0 || k == 0)
        return PYNN_OK;
    const int nt = pynn_threads_for(m * c * k, MIN_WORK, nthreads);
    if (k == 1) {
        const int64_t chunks = (m + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t ch = 0; ch < chunks; ch++) {
            const int64_t r0 = ch * ROW_CHUNK, nr = m - r0 < ROW_CHUNK ? m - r0 : ROW_CHUNK;
            const int64_t at = r0 * c;
            if (c < LANES)
                FN(softmax_backward_short_rows)(dx + at, dy + at, y + at, log_softmax, nr, c);
            else
                for (int64_t r = r0; r < r0 + nr; r++)
                    FN(softmax_backward_row)(dx + r * c, dy + r * c, y + r * c, log_softmax,
                                             c);
        }
    } else {
        const int64_t blocks = (k + KBLOCK - 1) / KBLOCK;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t t = 0; t < m * blocks; t++) {
            const int64_t k0 = (t % blocks) * KBLOCK;
            const int64_t at = (t / blocks) * c * k + k0;
            const int64_t kn = k - k0 < KBLOCK ? k - k0 : KBLOCK;
            FN(softmax_backward_columns)(dx + at, dy + at, y + at, log_softmax, c, k, kn);
        }
    }
    (void)nt;
    return PYNN_OK;
}

/* ---- fused softmax + cross-entropy --------------------------------------------------- */

/* What every row shares: eps = label smoothing, w_sum = sum of the weights (C without),
 * scale = 1 / (summed target weight) for "mean", else 1. */
typedef struct {
    const real *weight;
    real eps, w_sum, scale;
    int64_t ignore_index, c;
} FN(xent_params);

/* x, d (C,): a row that is not ignored, with d = exp(x - m) and s = sum(d) on entry.
 * Returns the row's loss and turns d into its gradient (times p->scale) in place. */
PYNN_INLINE real FN(xent_finish)(real *PYNN_RESTRICT d, const real *PYNN_RESTRICT x,
                                 int64_t label, real m, real s, const FN(xent_params) *p)
{
    const int64_t c = p->c;
    const real *w = p->weight;
    const real eps = p->eps;
    const real w_label = w ? w[label] : (real)1;
    const real log_s = LOG(s);
    /* -log p[label] = log s - (x[label] - m), and the smoothing term
     * sum_c w[c] (-log p[c]) = w_sum log s - sum_c w[c] (x[c] - m). */
    real loss = (1 - eps) * w_label * (log_s - (x[label] - m));
    if (eps > 0)
        loss += eps / (real)c * (p->w_sum * log_s - FN(row_sum_shifted)(x, w, m, c));

    /* dloss/dx = a p - (1 - eps) w[label] onehot - eps / C * w, with p = d / s */
    const real k = ((1 - eps) * w_label + eps / (real)c * p->w_sum) * p->scale / s;
    const real t = eps / (real)c * p->scale;
    if (w)
        for (int64_t i = 0; i < c; i++)
            d[i] = d[i] * k - t * w[i];
    else
        for (int64_t i = 0; i < c; i++)
            d[i] = d[i] * k - t;
    d[label] -= (1 - eps) * w_label * p->scale;
    return loss;
}

/* x, d (nr, C): nr <= ROW_CHUNK rows with C < LANES, transposed as in softmax_short_rows
 * so that lane r computes what xent_finish computes for row r. Writes the row losses
 * into loss[0..nr) (0 for ignored rows) and the gradients into d. */
PYNN_INLINE void FN(xent_short_rows)(real *PYNN_RESTRICT d, real *PYNN_RESTRICT loss,
                                     const real *PYNN_RESTRICT x, const int64_t *labels,
                                     int64_t nr, const FN(xent_params) *p)
{
    const int64_t c = p->c;
    const real *w = p->weight;
    const real eps = p->eps, t_eps = eps / (real)c * p->scale;
    real t[LANES * ROW_CHUNK], m[ROW_CHUNK], s[ROW_CHUNK], sz[ROW_CHUNK];
    real w_label[ROW_CHUNK], z_label[ROW_CHUNK], k[ROW_CHUNK];
    FN(transpose_in)(t, x, nr, c);
    for (int64_t r = 0; r < ROW_CHUNK; r++) {
        m[r] = t[r];
        s[r] = sz[r] = 0;
    }
    for (int64_t i = 1; i < c; i++)
        for (int64_t r = 0; r < ROW_CHUNK; r++)
            m[r] = t[i * ROW_CHUNK + r] > m[r] ? t[i * ROW_CHUNK + r] : m[r];
    for (int64_t i = 0; i < c; i++) {
        const real wi = w ? w[i] : (real)1;
        real *ti = t + i * ROW_CHUNK;
        for (int64_t r = 0; r < ROW_CHUNK; r++) {
            const real z = ti[r] - m[r], e = EXP(z);
            ti[r] = e;
            s[r] += e;
            sz[r] += wi * z;
        }
    }
    for (int64_t r = 0; r < ROW_CHUNK; r++) {
        const int keep = r < nr && labels[r] != p->ignore_index;
        w_label[r] = keep ? (w ? w[labels[r]] : (real)1) : 0;
        z_label[r] = keep ? x[r * c + labels[r]] - m[r] : 0;
    }
    for (int64_t r = 0; r < ROW_CHUNK; r++) {
        const real log_s = LOG(s[r]);
        const real smooth = eps > 0 ? eps / (real)c * (p->w_sum * log_s - sz[r]) : 0;
        loss[r] = (1 - eps) * w_label[r] * (log_s - z_label[r]) + smooth;
        k[r] = ((1 - eps) * w_label[r] + eps / (real)c * p->w_sum) * p->scale / s[r];
    }
    for (int64_t i = 0; i < c; i++) {
        const real wi = w ? w[i] : (real)1;
        real *ti = t + i * ROW_CHUNK;
        for (int64_t r = 0; r < ROW_CHUNK; r++)
            ti[r] = ti[r] * k[r] - t_eps * wi;
    }
    FN(transpose_out)(d, t, nr, c);
    for (int64_t r = 0; r < nr; r++) {
        if (labels[r] == p->ignore_index) {
            memset(d + r * c, 0, (size_t)c * sizeof *d);
            loss[r] = 0;
        } else {
            d[r * c + labels[r]] -= (1 - eps) * w_label[r] * p->scale;
        }
    }
}

/* x, d (nr, C), nr <= ROW_CHUNK rows: their losses (into losses when not NULL) and
 * gradients; returns the sum of the losses, added in row order. A long row is read
 * twice (max, then exp into d) while it is in cache and d is finished in place: one
 * read of x and one write of d from memory. */
PYNN_INLINE double FN(xent_chunk)(real *PYNN_RESTRICT d, real *losses,
                                  const real *PYNN_RESTRICT x, const int64_t *labels,
                                  int64_t nr, const FN(xent_params) *p)
{
    const int64_t c = p->c;
    real loss[ROW_CHUNK];
    if (c < LANES) {
        FN(xent_short_rows)(d, loss, x, labels, nr, p);
    } else {
        for (int64_t r = 0; r < nr; r++) {
            real *dr = d + r * c;
            const real *xr = x + r * c;
            if (labels[r] == p->ignore_index) {
                memset(dr, 0, (size_t)c * sizeof *dr);
                loss[r] = 0;
            } else {
                const real mr = FN(row_max)(xr, c);
                const real s = FN(row_exp_sum)(dr, xr, mr, c);
                loss[r] = FN(xent_finish)(dr, xr, labels[r], mr, s, p);
            }
        }
    }
    double acc = 0;
    for (int64_t r = 0; r < nr; r++) {
        if (losses)
            losses[r] = loss[r];
        acc += loss[r];
    }
    return acc;
}

/* logits, dlogits (N, C); labels (N,) in [0, C) or ignore_index; weight (C,) or NULL;
 * losses (N,) or NULL; *loss: the mean (over the summed target weight) or the sum of the
 * row losses, as `reduction` says (NONE: the sum, writing losses). dlogits is the
 * gradient of *loss. Outputs must not overlap inputs. ERR_ARG for a label out of range;
 * ERR_NOMEM. */
pynn_status PYNN_ISA_FN(FN(pynn_softmax_xent_forward_backward))(
    double *loss, real *losses, real *dlogits, const real *logits, const int64_t *labels,
    const real *weight, pynn_reduction reduction, double label_smoothing,
    int64_t ignore_index, int64_t n, int64_t c, int nthreads)
{
    if (n < 0 || c < 1 || !(label_smoothing >= 0 && label_smoothing <= 1) ||
        (reduction != PYNN_REDUCTION_NONE && reduction != PYNN_REDUCTION_MEAN &&
         reduction != PYNN_REDUCTION_SUM))
        return PYNN_ERR_ARG;
    double w_target = 0; /* the "mean" divisor, summed in row order */
    for (int64_t i = 0; i < n; i++) {
        const int64_t label = labels[i];
        if (label == ignore_index)
            continue;
        if (label < 0 || label >= c)
            return PYNN_ERR_ARG;
        w_target += weight ? (double)weight[label] : 1.0;
    }
    double w_sum = (double)c;
    if (weight) {
        w_sum = 0;
        for (int64_t j = 0; j < c; j++)
            w_sum += weight[j];
    }
    /* No target weight at all (every counted row's class weighted 0): the mean is 0 / 0,
     * NaN, as in PyTorch, even where smoothing makes the summed loss positive. */
    const int mean = reduction == PYNN_REDUCTION_MEAN;
    const double scale = !mean ? 1.0 : w_target == 0 ? (double)NAN : 1.0 / w_target;
    const FN(xent_params) p = {weight, (real)label_smoothing, (real)w_sum, (real)scale,
                               ignore_index, c};

    const int64_t chunks = (n + ROW_CHUNK - 1) / ROW_CHUNK;
    double *partial = malloc((size_t)(chunks > 0 ? chunks : 1) * sizeof *partial);
    if (!partial)
        return PYNN_ERR_NOMEM;
    const int nt = pynn_threads_for(n * c, MIN_WORK, nthreads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t r0 = ch * ROW_CHUNK, nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
        partial[ch] = FN(xent_chunk)(dlogits + r0 * c, losses ? losses + r0 : NULL,
                                     logits + r0 * c, labels + r0, nr, &p);
    }
    (void)nt;
    double total = 0;
    for (int64_t ch = 0; ch < chunks; ch++)
        total += partial[ch];
    free(partial);
    *loss = !mean ? total : w_target == 0 ? (double)NAN : total / w_target;
    return PYNN_OK;
}

#undef real
#undef FN
#undef EXP
#undef LOG

#endif /* PYNN_SX_REAL */
