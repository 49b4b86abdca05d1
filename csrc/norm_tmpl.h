/* The kernels of norm.c for one float type. norm.c includes this file twice, with
 * REAL = float, SFX = f32 and with REAL = double, SFX = f64; static helpers get the suffix
 * so that both copies coexist. Values are summed in REAL inside a tile (at most 512 values
 * per accumulator: 256 rows of a column, or a lane of a segment) and in double across
 * tiles. */

#define TFN(name) PYNN_CAT(name, SFX)

/* LANES accumulators as one GNU C vector: gcc and clang map it onto the registers the ISA
 * has (one zmm, two ymm or four xmm for float), and every lane sums its values in the
 * same order on each path. Lane l takes the values at positions l (mod LANES) of a run. */
typedef REAL TFN(lanes) __attribute__((vector_size(LANES * sizeof(REAL))));

/* v = x[0:n] with lanes n.. set to pad, n < LANES: the tail of a run, padded with a value
 * that adds exactly zero, so the tail goes through the same arithmetic as the body. */
PYNN_INLINE void TFN(load_tail)(TFN(lanes) *v, const REAL *x, int64_t n, REAL pad)
{
    REAL t[LANES];
    for (int l = 0; l < LANES; l++)
        t[l] = pad;
    memcpy(t, x, (size_t)n * sizeof(REAL));
    memcpy(v, t, sizeof *v);
}

/* acc += the values of x[0:n], lane by lane. */
PYNN_INLINE void TFN(lanes_sum)(TFN(lanes) *acc, const REAL *PYNN_RESTRICT x, int64_t n)
{
    TFN(lanes) a = *acc, v;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        memcpy(&v, x + i, sizeof v);
        a += v;
    }
    if (i < n) {
        TFN(load_tail)(&v, x + i, n - i, 0);
        a += v;
    }
    *acc = a;
}

/* s1 += x - m and s2 += (x - m)^2 over x[0:n], lane by lane. */
PYNN_INLINE void TFN(lanes_dev)(TFN(lanes) *s1, TFN(lanes) *s2, const REAL *PYNN_RESTRICT x,
                                REAL m, int64_t n)
{
    TFN(lanes) a = *s1, b = *s2, v, d;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        memcpy(&v, x + i, sizeof v);
        d = v - m;
        a += d;
        b += d * d;
    }
    if (i < n) {
        TFN(load_tail)(&v, x + i, n - i, m);
        d = v - m;
        a += d;
        b += d * d;
    }
    *s1 = a;
    *s2 = b;
}

/* s1 += a and s2 += (b - m) * a over a[0:n], b[0:n], lane by lane. */
PYNN_INLINE void TFN(lanes_dot)(TFN(lanes) *s1, TFN(lanes) *s2, const REAL *PYNN_RESTRICT a,
                                const REAL *PYNN_RESTRICT b, REAL m, int64_t n)
{
    TFN(lanes) p = *s1, q = *s2, va, vb;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        memcpy(&va, a + i, sizeof va);
        memcpy(&vb, b + i, sizeof vb);
        p += va;
        q += (vb - m) * va;
    }
    if (i < n) {
        TFN(load_tail)(&va, a + i, n - i, 0);
        TFN(load_tail)(&vb, b + i, n - i, m);
        p += va;
        q += (vb - m) * va;
    }
    *s1 = p;
    *s2 = q;
}

/* The sum of the lanes, pairwise. */
PYNN_INLINE double TFN(lanes_total)(const TFN(lanes) *acc)
{
    REAL t[LANES];
    memcpy(t, acc, sizeof t);
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            t[l] += t[l + w];
    return (double)t[0];
}

/* The partial (mean, M2) from a tile's provisional mean m and the sums s1, s2 of the
 * deviations from it: the correction s1/n makes up for the rounding of m. */
PYNN_INLINE void TFN(finish_partial)(double *mean, double *m2, double m, double s1, double s2,
                                     double count)
{
    const double v = s2 - s1 * s1 / count;
    *mean = m + s1 / count;
    *m2 = v < 0 ? 0 : v; /* rounding can undershoot 0; NaN passes through */
}

/* Column layout. x (N, P); partials of columns [j0, j0 + w) over rows [n0, n1). */
static void TFN(col_tile_stats)(double *PYNN_RESTRICT mean, double *PYNN_RESTRICT m2,
                                const REAL *PYNN_RESTRICT x, int64_t P, int64_t n0, int64_t n1,
                                int64_t j0, int64_t w)
{
    REAL m[COL_BLOCK], s1[COL_BLOCK], s2[COL_BLOCK];
    const double rows = (double)(n1 - n0);
    for (int64_t j = 0; j < w; j++)
        m[j] = 0;
    for (int64_t n = n0; n < n1; n++) {
        const REAL *PYNN_RESTRICT row = x + n * P + j0;
        for (int64_t j = 0; j < w; j++)
            m[j] += row[j];
    }
    for (int64_t j = 0; j < w; j++) {
        m[j] = (REAL)((double)m[j] / rows);
        s1[j] = 0;
        s2[j] = 0;
    }
    for (int64_t n = n0; n < n1; n++) {
        const REAL *PYNN_RESTRICT row = x + n * P + j0;
        for (int64_t j = 0; j < w; j++) {
            const REAL d = row[j] - m[j];
            s1[j] += d;
            s2[j] += d * d;
        }
    }
    for (int64_t j = 0; j < w; j++)
        TFN(finish_partial)(mean + j, m2 + j, m[j], s1[j], s2[j], rows);
}

/* Column layout. a, b (N, P), mcol (w); sa[j] = sum of a, sb[j] = sum of (b - mcol[j]) * a
 * (only when b is given) over rows [n0, n1) of columns [j0, j0 + w). */
static void TFN(col_tile_sums)(double *PYNN_RESTRICT sa, double *PYNN_RESTRICT sb,
                               const REAL *PYNN_RESTRICT a, const REAL *PYNN_RESTRICT b,
                               const REAL *PYNN_RESTRICT mcol, int64_t P, int64_t n0,
                               int64_t n1, int64_t j0, int64_t w)
{
    REAL s1[COL_BLOCK], s2[COL_BLOCK];
    for (int64_t j = 0; j < w; j++) {
        s1[j] = 0;
        s2[j] = 0;
    }
    if (b) {
        for (int64_t n = n0; n < n1; n++) {
            const REAL *PYNN_RESTRICT ra = a + n * P + j0;
            const REAL *PYNN_RESTRICT rb = b + n * P + j0;
            for (int64_t j = 0; j < w; j++) {
                s1[j] += ra[j];
                s2[j] += (rb[j] - mcol[j]) * ra[j];
            }
        }
        for (int64_t j = 0; j < w; j++)
            sb[j] = s2[j];
    } else {
        for (int64_t n = n0; n < n1; n++) {
            const REAL *PYNN_RESTRICT ra = a + n * P + j0;
            for (int64_t j = 0; j < w; j++)
                s1[j] += ra[j];
        }
    }
    for (int64_t j = 0; j < w; j++)
        sa[j] = s1[j];
}

/* Plane layout. x (N, C, S); the partial (mean, M2) of channel c over rows [n0, n1) and
 * positions [s0, s0 + len) of S. */
static void TFN(plane_tile_stats)(double *mean, double *m2, const REAL *PYNN_RESTRICT x,
                                  int64_t C, int64_t S, int64_t c, int64_t n0, int64_t n1,
                                  int64_t s0, int64_t len)
{
    TFN(lanes) acc = {0}, s1 = {0}, s2 = {0};
    const double count = (double)((n1 - n0) * len);
    for (int64_t n = n0; n < n1; n++)
        TFN(lanes_sum)(&acc, x + (n * C + c) * S + s0, len);
    const REAL m = (REAL)(TFN(lanes_total)(&acc) / count);
    for (int64_t n = n0; n < n1; n++)
        TFN(lanes_dev)(&s1, &s2, x + (n * C + c) * S + s0, m, len);
    const double t1 = TFN(lanes_total)(&s1), t2 = TFN(lanes_total)(&s2);
    TFN(finish_partial)(mean, m2, m, t1, t2, count);
}

/* Plane layout. a, b (N, C, S); sa = sum of a, sb = sum of (b - m) * a (only when b is
 * given) over rows [n0, n1) and positions [s0, s0 + len) of channel c. */
static void TFN(plane_tile_sums)(double *sa, double *sb, const REAL *PYNN_RESTRICT a,
                                 const REAL *PYNN_RESTRICT b, REAL m, int64_t C, int64_t S,
                                 int64_t c, int64_t n0, int64_t n1, int64_t s0, int64_t len)
{
    TFN(lanes) s1 = {0}, s2 = {0};
    for (int64_t n = n0; n < n1; n++) {
        const int64_t off = (n * C + c) * S + s0;
        if (b)
            TFN(lanes_dot)(&s1, &s2, a + off, b + off, m, len);
        else
            TFN(lanes_sum)(&s1, a + off, len);
    }
    *sa = TFN(lanes_total)(&s1);
    if (b)
        *sb = TFN(lanes_total)(&s2);
}

/* Per-channel mean and M2 (sum of squared deviations from the mean) of x (N, C, S) over
 * its N*S values per channel; N*S > 0. */
static pynn_status TFN(channel_stats)(double *mean, double *m2, const REAL *x,
                                      const norm_tiling *t, int nthreads)
{
    const int64_t KP = t->K * t->P, tiles = t->K * t->B;
    double *pmean = malloc(2 * (size_t)KP * sizeof(double));
    if (!pmean)
        return PYNN_ERR_NOMEM;
    double *pm2 = pmean + KP;
    const int nt = pynn_threads_for(t->N * t->C * t->S, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < tiles; i++) {
        const int64_t k = i / t->B, b = i % t->B;
        const int64_t n0 = k * t->R, n1 = n0 + t->R < t->N ? n0 + t->R : t->N;
        if (t->cols) {
            const int64_t j0 = b * t->W, w = j0 + t->W < t->P ? t->W : t->P - j0;
            TFN(col_tile_stats)(pmean + k * t->P + j0, pm2 + k * t->P + j0, x, t->P, n0, n1, j0,
                                w);
        } else {
            TFN(plane_tile_stats)(pmean + k * t->P + b, pm2 + k * t->P + b, x, t->C, t->S,
                                  b / t->G, n0, n1, segment_start(t, b), segment_len(t, b));
        }
    }
    const int mt = pynn_threads_for(KP, MIN_MERGES, nthreads);
    (void)mt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(mt)
    for (int64_t c = 0; c < t->C; c++) {
        double n = 0, mu = 0, sq = 0;
        for (int64_t k = 0; k < t->K; k++)
            for (int64_t g = 0; g < t->G; g++) {
                const int64_t p = k * t->P + c * t->G + g;
                chan_merge(&n, &mu, &sq, partial_count(t, k, c * t->G + g), pmean[p], pm2[p]);
            }
        mean[c] = mu;
        m2[c] = sq;
    }
    free(pmean);
    return PYNN_OK;
}

/* Per-channel sums of a (N, C, S) over its N*S values per channel, into sa (C), and, when
 * b is given, of (b - m) * a into sb (C), with m the channel's mean laid out as the
 * coefficient arrays are (coef_len). N*S > 0. */
static pynn_status TFN(channel_sums)(double *sa, double *sb, const REAL *a, const REAL *b,
                                     const REAL *m, const norm_tiling *t, int nthreads)
{
    const int64_t KP = t->K * t->P, tiles = t->K * t->B;
    double *pa = malloc(2 * (size_t)KP * sizeof(double));
    if (!pa)
        return PYNN_ERR_NOMEM;
    double *pb = pa + KP;
    const int nt = pynn_threads_for(t->N * t->C * t->S, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < tiles; i++) {
        const int64_t k = i / t->B, j = i % t->B;
        const int64_t n0 = k * t->R, n1 = n0 + t->R < t->N ? n0 + t->R : t->N;
        if (t->cols) {
            const int64_t j0 = j * t->W, w = j0 + t->W < t->P ? t->W : t->P - j0;
            TFN(col_tile_sums)(pa + k * t->P + j0, pb + k * t->P + j0, a, b, b ? m + j0 : NULL,
                               t->P, n0, n1, j0, w);
        } else {
            const int64_t c = j / t->G;
            TFN(plane_tile_sums)(pa + k * t->P + j, pb + k * t->P + j, a, b, b ? m[c] : 0, t->C,
                                 t->S, c, n0, n1, segment_start(t, j), segment_len(t, j));
        }
    }
    const int mt = pynn_threads_for(KP, MIN_MERGES, nthreads);
    (void)mt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(mt)
    for (int64_t c = 0; c < t->C; c++) {
        double s1 = 0, s2 = 0;
        for (int64_t k = 0; k < t->K; k++)
            for (int64_t g = 0; g < t->G; g++) {
                const int64_t p = k * t->P + c * t->G + g;
                s1 += pa[p];
                if (b)
                    s2 += pb[p];
            }
        sa[c] = s1;
        if (b)
            sb[c] = s2;
    }
    free(pa);
    return PYNN_OK;
}

/* y = (x - m) * scale + shift, the coefficients laid out as coef_len says. */
static void TFN(affine_pass)(REAL *PYNN_RESTRICT y, const REAL *PYNN_RESTRICT x,
                             const REAL *PYNN_RESTRICT m, const REAL *PYNN_RESTRICT scale,
                             const REAL *PYNN_RESTRICT shift, const norm_tiling *t, int nthreads)
{
    const int nt = pynn_threads_for(t->N * t->C * t->S, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
    if (t->cols) {
        const int64_t P = t->P;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t n = 0; n < t->N; n++) {
            const REAL *PYNN_RESTRICT xr = x + n * P;
            REAL *PYNN_RESTRICT yr = y + n * P;
            for (int64_t j = 0; j < P; j++)
                yr[j] = (xr[j] - m[j]) * scale[j] + shift[j];
        }
    } else {
        const int64_t S = t->S;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < t->N * t->C; r++) {
            const int64_t c = r % t->C;
            const REAL mc = m[c], sc = scale[c], sh = shift[c];
            const REAL *PYNN_RESTRICT xr = x + r * S;
            REAL *PYNN_RESTRICT yr = y + r * S;
            for (int64_t s = 0; s < S; s++)
                yr[s] = (xr[s] - mc) * sc + sh;
        }
    }
}

/* dx = dy * k + (x - m) * a + b (training) or dx = dy * k (eval), coefficients laid out as
 * coef_len says. */
static void TFN(dx_pass)(REAL *PYNN_RESTRICT dx, const REAL *PYNN_RESTRICT dy,
                         const REAL *PYNN_RESTRICT x, const REAL *PYNN_RESTRICT m,
                         const REAL *PYNN_RESTRICT k, const REAL *PYNN_RESTRICT a,
                         const REAL *PYNN_RESTRICT b, int training, const norm_tiling *t,
                         int nthreads)
{
    const int nt = pynn_threads_for(t->N * t->C * t->S, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
    if (t->cols) {
        const int64_t P = t->P;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t n = 0; n < t->N; n++) {
            const REAL *PYNN_RESTRICT dyr = dy + n * P;
            const REAL *PYNN_RESTRICT xr = x + n * P;
            REAL *PYNN_RESTRICT dxr = dx + n * P;
            if (training)
                for (int64_t j = 0; j < P; j++)
                    dxr[j] = dyr[j] * k[j] + (xr[j] - m[j]) * a[j] + b[j];
            else
                for (int64_t j = 0; j < P; j++)
                    dxr[j] = dyr[j] * k[j];
        }
    } else {
        const int64_t S = t->S;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < t->N * t->C; r++) {
            const int64_t c = r % t->C;
            const REAL mc = m[c], kc = k[c], ac = a[c], bc = b[c];
            const REAL *PYNN_RESTRICT dyr = dy + r * S;
            const REAL *PYNN_RESTRICT xr = x + r * S;
            REAL *PYNN_RESTRICT dxr = dx + r * S;
            if (training)
                for (int64_t s = 0; s < S; s++)
                    dxr[s] = dyr[s] * kc + (xr[s] - mc) * ac + bc;
            else
                for (int64_t s = 0; s < S; s++)
                    dxr[s] = dyr[s] * kc;
        }
    }
}

/* x, y (N, C, S); gamma, beta (C) or NULL (scale 1, shift 0); running_mean, running_var (C):
 * read in eval mode, updated in training mode (may then be NULL); saved_mean,
 * saved_invstd (C) written: the statistics used, for the backward pass. */
pynn_status PYNN_ISA_FN(TFN(pynn_batch_norm_forward))(
    REAL *y, REAL *saved_mean, REAL *saved_invstd, REAL *running_mean, REAL *running_var,
    const REAL *x, const REAL *gamma, const REAL *beta, int training, double momentum,
    double eps, int64_t N, int64_t C, int64_t S, int nthreads)
{
    if (N < 0 || C < 0 || S < 0 || !(eps >= 0) || !(momentum >= 0 && momentum <= 1))
        return PYNN_ERR_ARG;
    if (!training && (!running_mean || !running_var))
        return PYNN_ERR_ARG;
    if ((running_mean == NULL) != (running_var == NULL))
        return PYNN_ERR_ARG;
    const int64_t M = N * S;
    if (training && M == 1)
        return PYNN_ERR_ARG; /* the unbiased variance would divide by zero */
    if (C == 0)
        return PYNN_OK;
    if (training && M == 0) {
        /* Nothing to learn from an empty batch: as PyTorch, running statistics stay. */
        for (int64_t c = 0; c < C; c++) {
            saved_mean[c] = 0;
            saved_invstd[c] = 0;
        }
        return PYNN_OK;
    }
    const norm_tiling t = make_tiling(N, C, S);
    const int64_t ncoef = coef_len(&t);
    double *stats = malloc(2 * (size_t)C * sizeof(double));
    REAL *coef = malloc(3 * (size_t)ncoef * sizeof(REAL));
    if (!stats || !coef) {
        free(stats);
        free(coef);
        return PYNN_ERR_NOMEM;
    }
    double *mean = stats, *invstd = stats + C;
    if (training) {
        const pynn_status status = TFN(channel_stats)(mean, invstd, x, &t, nthreads);
        if (status != PYNN_OK) {
            free(stats);
            free(coef);
            return status;
        }
        for (int64_t c = 0; c < C; c++) {
            const double m2 = invstd[c];
            invstd[c] = 1.0 / sqrt(m2 / (double)M + eps);
            if (running_mean) {
                running_mean[c] = (REAL)((1 - momentum) * running_mean[c] + momentum * mean[c]);
                running_var[c] = (REAL)((1 - momentum) * running_var[c] +
                                        momentum * (m2 / (double)(M - 1)));
            }
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = running_mean[c];
            invstd[c] = 1.0 / sqrt((double)running_var[c] + eps);
        }
    }
    REAL *m = coef, *scale = coef + ncoef, *shift = coef + 2 * ncoef;
    for (int64_t c = 0; c < C; c++) {
        saved_mean[c] = (REAL)mean[c];
        saved_invstd[c] = (REAL)invstd[c];
    }
    for (int64_t i = 0; i < ncoef; i++) {
        const int64_t c = coef_channel(&t, i);
        m[i] = (REAL)mean[c];
        scale[i] = (REAL)(gamma ? (double)gamma[c] * invstd[c] : invstd[c]);
        shift[i] = beta ? beta[c] : 0;
    }
    TFN(affine_pass)(y, x, m, scale, shift, &t, nthreads);
    free(stats);
    free(coef);
    return PYNN_OK;
}

/* dy, x, dx (N, C, S); gamma (C) or NULL (scale 1); saved_mean, saved_invstd (C) as the
 * forward pass wrote them; dgamma, dbeta (C) written unless NULL. In training mode the
 * statistics depend on x, in eval mode they are constants. */
pynn_status PYNN_ISA_FN(TFN(pynn_batch_norm_backward))(
    REAL *dx, REAL *dgamma, REAL *dbeta, const REAL *dy, const REAL *x, const REAL *gamma,
    const REAL *saved_mean, const REAL *saved_invstd, int training, int64_t N, int64_t C,
    int64_t S, int nthreads)
{
    if (N < 0 || C < 0 || S < 0)
        return PYNN_ERR_ARG;
    if (C == 0)
        return PYNN_OK;
    const int64_t M = N * S;
    const norm_tiling t = make_tiling(N, C, S);
    const int64_t ncoef = coef_len(&t);
    double *sums = malloc(2 * (size_t)C * sizeof(double));
    REAL *coef = malloc(4 * (size_t)ncoef * sizeof(REAL));
    if (!sums || !coef) {
        free(sums);
        free(coef);
        return PYNN_ERR_NOMEM;
    }
    double *sdy = sums, *sdyx = sums + C;
    REAL *m = coef, *k = coef + ncoef, *a = coef + 2 * ncoef, *b = coef + 3 * ncoef;
    for (int64_t i = 0; i < ncoef; i++)
        m[i] = saved_mean[coef_channel(&t, i)];
    if (M > 0 && (training || dgamma || dbeta)) {
        const pynn_status status = TFN(channel_sums)(sdy, sdyx, dy, x, m, &t, nthreads);
        if (status != PYNN_OK) {
            free(sums);
            free(coef);
            return status;
        }
    } else {
        for (int64_t c = 0; c < C; c++)
            sdy[c] = sdyx[c] = 0;
    }
    for (int64_t c = 0; c < C; c++) {
        if (dgamma)
            dgamma[c] = (REAL)(sdyx[c] * saved_invstd[c]);
        if (dbeta)
            dbeta[c] = (REAL)sdy[c];
    }
    if (M == 0) { /* dx has no elements (S = 0 with N huge must not walk N) */
        free(sums);
        free(coef);
        return PYNN_OK;
    }
    /* dx = g*invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean)*invstd,
     * regrouped per channel as dy*k + (x - mean)*a + b. */
    for (int64_t i = 0; i < ncoef; i++) {
        const int64_t c = coef_channel(&t, i);
        const double invstd = saved_invstd[c];
        const double kc = gamma ? (double)gamma[c] * invstd : invstd;
        k[i] = (REAL)kc;
        a[i] = training ? (REAL)(-kc * invstd * invstd * sdyx[c] / (double)M) : 0;
        b[i] = training ? (REAL)(-kc * sdy[c] / (double)M) : 0;
    }
    TFN(dx_pass)(dx, dy, x, m, k, a, b, training, &t, nthreads);
    free(sums);
    free(coef);
    return PYNN_OK;
}

/* dy (N, C, S); db (C) = the sum of dy over n and s: the gradient of a per-channel bias. */
pynn_status PYNN_ISA_FN(TFN(pynn_bias_backward))(REAL *db, const REAL *dy, int64_t N, int64_t C,
                                                 int64_t S, int nthreads)
{
    if (N < 0 || C < 0 || S < 0)
        return PYNN_ERR_ARG;
    if (C == 0)
        return PYNN_OK;
    if (N * S == 0) {
        for (int64_t c = 0; c < C; c++)
            db[c] = 0;
        return PYNN_OK;
    }
    const norm_tiling t = make_tiling(N, C, S);
    double *sums = malloc((size_t)C * sizeof(double));
    if (!sums)
        return PYNN_ERR_NOMEM;
    const pynn_status status = TFN(channel_sums)(sums, NULL, dy, NULL, NULL, &t, nthreads);
    if (status == PYNN_OK)
        for (int64_t c = 0; c < C; c++)
            db[c] = (REAL)sums[c];
    free(sums);
    return status;
}

#undef TFN
