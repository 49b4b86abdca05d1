/* Batch normalisation (forward, backward) and the bias gradient, over x viewed as (N, C, S):
 * S = 1 for (N, C) input, L for (N, C, L), H*W for (N, C, H, W). Every kernel here is a
 * per-channel reduction over N*S values followed, for batch norm, by one element-wise pass.
 *
 * Reductions are deterministic and numerically careful:
 * - The data are cut into tiles whose geometry depends only on (N, C, S), never on the
 *   thread count. Each tile yields one partial per column (or channel); threads take
 *   whole tiles, and the partials of a channel are combined in tile order afterwards.
 * - A tile is small enough to stay in cache, so its statistics are computed in two passes
 *   (mean, then the sums of deviations from it, corrected for the rounding of the mean)
 *   without a second trip to memory; the partial (count, mean, M2) triples are merged in
 *   double with Chan, Golub & LeVeque's pairwise update. Neither step forms
 *   E[x^2] - E[x]^2, which loses every digit when |mean| >> std in float32.
 * - Sums inside a tile run in LANES interleaved accumulators (a GNU C vector along runs,
 *   an array across columns): an association fixed in the source, so it is the same
 *   whatever the vector width.
 *
 * Two tile layouts:
 * - columns (S < COL_MAX_S): x is N rows of P = C*S contiguous values; a tile is a block
 *   of rows times a block of columns, and the inner loops run across columns, where the
 *   compiler vectorises without reassociating anything. Partials are per column; the S
 *   columns of a channel are merged with its row blocks.
 * - planes (S >= COL_MAX_S): a tile is one channel over a block of rows and a segment of
 *   S (all of it unless S is large), i.e. a few contiguous runs; partials are per channel
 *   and segment.
 *
 * Compiled once per ISA (MULTI in CMakeLists.txt). The kernels are written once, for a
 * generic float type, in norm_tmpl.h, which this file includes for float and double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"

#define LANES 16
#define COL_MAX_S 16
#define COL_BLOCK 512      /* columns per tile in the column layout */
#define COL_TILE 65536     /* values per column-layout tile: 256 KiB of float, cached */
#define COL_ROWS 256       /* rows per column-layout tile at most: bounds float sums */
#define SEGMENT 4096       /* values per plane-layout tile, about */
#define MIN_PARALLEL 32768 /* values a thread must have before a region is split */
#define MIN_MERGES 4096    /* partials a thread must have before merging is split */

/* Tile geometry, a function of the shape alone. A partial is indexed by its row block k
 * and p in [0, P); channel c owns partials p = c*G .. c*G + G - 1 of every row block. */
typedef struct {
    int64_t N, C, S;
    int cols;  /* 1: column layout, 0: plane layout */
    int64_t P; /* partials per row block: C*S columns, or C channels times G segments */
    int64_t G; /* partials per channel and row block: S columns, or segments of S */
    int64_t R; /* rows per row block */
    int64_t K; /* row blocks */
    int64_t W; /* columns per tile (column layout) */
    int64_t B; /* tiles per row block: column blocks, or one per partial */
} norm_tiling;

static norm_tiling make_tiling(int64_t N, int64_t C, int64_t S)
{
    norm_tiling t;
    t.N = N;
    t.C = C;
    t.S = S;
    t.cols = S < COL_MAX_S;
    if (t.cols) {
        t.P = C * S;
        t.G = S;
        t.W = t.P < COL_BLOCK ? t.P : COL_BLOCK;
        t.B = t.W > 0 ? (t.P + t.W - 1) / t.W : 0;
        t.R = t.W > 0 ? COL_TILE / t.W : 1;
        if (t.R > COL_ROWS)
            t.R = COL_ROWS;
    } else {
        t.G = (S + SEGMENT - 1) / SEGMENT;
        t.P = C * t.G;
        t.W = 1;
        t.B = t.P;
        t.R = SEGMENT / S;
    }
    if (t.R < 1)
        t.R = 1;
    t.K = N > 0 ? (N + t.R - 1) / t.R : 0;
    return t;
}

/* Plane layout: where partial p's segment of S starts, and its length. */
static int64_t segment_start(const norm_tiling *t, int64_t p)
{
    return (p % t->G) * SEGMENT;
}

static int64_t segment_len(const norm_tiling *t, int64_t p)
{
    const int64_t s0 = segment_start(t, p);
    return s0 + SEGMENT < t->S ? SEGMENT : t->S - s0;
}

/* How many values partial p of row block k summarises. */
static double partial_count(const norm_tiling *t, int64_t k, int64_t p)
{
    const int64_t rows = (k + 1) * t->R <= t->N ? t->R : t->N - k * t->R;
    return (double)(t->cols ? rows : rows * segment_len(t, p));
}

/* Merges the statistics (n_b, mean_b, m2_b) of a disjoint set of values into (n, mean, m2):
 * Chan, Golub & LeVeque (1979), exact in exact arithmetic and stable in floating point. */
static void chan_merge(double *n, double *mean, double *m2, double n_b, double mean_b, double m2_b)
{
    const double total = *n + n_b;
    const double delta = mean_b - *mean;
    *mean += delta * (n_b / total);
    *m2 += m2_b + delta * delta * (*n * n_b / total);
    *n = total;
}

/* Per-channel coefficients of the element-wise passes are expanded to one per column in
 * the column layout (so rows are plain vector loops) and kept one per channel in the
 * plane layout. */
static int64_t coef_len(const norm_tiling *t)
{
    return t->cols ? t->C * t->S : t->C;
}

static int64_t coef_channel(const norm_tiling *t, int64_t i)
{
    return t->cols ? i / t->S : i;
}

#define REAL float
#define SFX f32
#include "norm_tmpl.h"
#undef REAL
#undef SFX

#define REAL double
#define SFX f64
#include "norm_tmpl.h"
#undef REAL
#undef SFX

#if PYNN_ISA_generic
#define BN_FORWARD_ARGS(T)                                                                 \
    (T *y, T *saved_mean, T *saved_invstd, T *running_mean, T *running_var, const T *x,   \
     const T *gamma, const T *beta, int training, double momentum, double eps, int64_t N, \
     int64_t C, int64_t S, int nthreads)
#define BN_BACKWARD_ARGS(T)                                                                \
    (T *dx, T *dgamma, T *dbeta, const T *dy, const T *x, const T *gamma,                  \
     const T *saved_mean, const T *saved_invstd, int training, int64_t N, int64_t C,       \
     int64_t S, int nthreads)
#define BIAS_BACKWARD_ARGS(T) (T *db, const T *dy, int64_t N, int64_t C, int64_t S, int nthreads)

PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_batch_norm_forward_f32, BN_FORWARD_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_batch_norm_forward_f64, BN_FORWARD_ARGS(double));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_batch_norm_backward_f32, BN_BACKWARD_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_batch_norm_backward_f64, BN_BACKWARD_ARGS(double));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_bias_backward_f32, BIAS_BACKWARD_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_bias_backward_f64, BIAS_BACKWARD_ARGS(double));

pynn_status pynn_batch_norm_forward_f32 BN_FORWARD_ARGS(float)
{
    pynn_status (*fn) BN_FORWARD_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_batch_norm_forward_f32);
    return fn(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta, training,
              momentum, eps, N, C, S, nthreads);
}

pynn_status pynn_batch_norm_forward_f64 BN_FORWARD_ARGS(double)
{
    pynn_status (*fn) BN_FORWARD_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_batch_norm_forward_f64);
    return fn(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta, training,
              momentum, eps, N, C, S, nthreads);
}

pynn_status pynn_batch_norm_backward_f32 BN_BACKWARD_ARGS(float)
{
    pynn_status (*fn) BN_BACKWARD_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_batch_norm_backward_f32);
    return fn(dx, dgamma, dbeta, dy, x, gamma, saved_mean, saved_invstd, training, N, C, S,
              nthreads);
}

pynn_status pynn_batch_norm_backward_f64 BN_BACKWARD_ARGS(double)
{
    pynn_status (*fn) BN_BACKWARD_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_batch_norm_backward_f64);
    return fn(dx, dgamma, dbeta, dy, x, gamma, saved_mean, saved_invstd, training, N, C, S,
              nthreads);
}

pynn_status pynn_bias_backward_f32 BIAS_BACKWARD_ARGS(float)
{
    pynn_status (*fn) BIAS_BACKWARD_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_bias_backward_f32);
    return fn(db, dy, N, C, S, nthreads);
}

pynn_status pynn_bias_backward_f64 BIAS_BACKWARD_ARGS(double)
{
    pynn_status (*fn) BIAS_BACKWARD_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_bias_backward_f64);
    return fn(db, dy, N, C, S, nthreads);
}
#endif
