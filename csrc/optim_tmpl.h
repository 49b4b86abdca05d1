/* The kernels of optim.c for one float type. optim.c includes this file twice, with
 * REAL = float, SFX = f32 and with REAL = double, SFX = f64. Comments give the PyTorch
 * operation each line reproduces.
 *
 * Each kernel checks its arguments, rounds the hyperparameters once, and hands a `*_span`
 * function to run_spans, which calls it on each thread's run of the concatenated space.
 * The span walks its entries' pieces and calls an inline `*_range` function whose options
 * that touch memory (a state buffer that may be NULL) are constants at each call site:
 * the compiler then builds one vector loop per variant. A single loop that merely skipped
 * the NULL buffer would be if-converted into masked loads from address 0, which AVX-512
 * serves through a slow fault-suppression assist. */

#define TFN(name) PYNN_CAT(name, SFX)

/* ATen's lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w),
 * so that both ends are exact. */
PYNN_INLINE REAL TFN(lerp)(REAL start, REAL end, REAL w, int small_w)
{
    return small_w ? start + w * (end - start) : end - (end - start) * ((REAL)1 - w);
}

/* Hyperparameters rounded to REAL, as ATen rounds Python scalars. */
typedef struct {
    REAL lr, momentum, dampened, weight_decay;
    int decay, nesterov, first_step;
} TFN(sgd_coef);

PYNN_INLINE void TFN(sgd_range)(REAL *PYNN_RESTRICT param, REAL *PYNN_RESTRICT momentum_buffer,
                                const REAL *PYNN_RESTRICT grad, TFN(sgd_coef) k, int heavy_ball,
                                int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        REAL d = grad[i];
        if (k.decay)
            d = d + k.weight_decay * param[i];          /* grad.add(param, alpha=wd) */
        if (heavy_ball) {
            const REAL b = k.first_step ? d             /* clone(grad) */
                                        : momentum_buffer[i] * k.momentum + k.dampened * d;
            momentum_buffer[i] = b;                     /* buf.mul_(mu).add_(grad, 1-damp) */
            d = k.nesterov ? d + k.momentum * b : b;    /* grad.add(buf, alpha=momentum) */
        }
        param[i] = param[i] - k.lr * d;                 /* param.add_(grad, alpha=-lr) */
    }
}

typedef struct {
    REAL *const *param, *const *momentum_buffer;
    const REAL *const *grad;
    const int64_t *n;
    TFN(sgd_coef) k;
} TFN(sgd_args);

static void TFN(sgd_span)(const void *args, int64_t g0, int64_t g1)
{
    const TFN(sgd_args) *a = args;
    span s = span_begin(a->n, g0, g1);
    int64_t e, i0, i1;
    while (span_next(&s, &e, &i0, &i1)) {
        if (a->momentum_buffer)
            TFN(sgd_range)(a->param[e], a->momentum_buffer[e], a->grad[e], a->k, 1, i0, i1);
        else
            TFN(sgd_range)(a->param[e], NULL, a->grad[e], a->k, 0, i0, i1);
    }
}

/* param[e], momentum_buffer[e], grad[e] (n[e]) for e < count */
pynn_status PYNN_ISA_FN(TFN(pynn_sgd_update))(REAL *const *param, REAL *const *momentum_buffer,
                                              const REAL *const *grad, double lr,
                                              double momentum, double dampening, int nesterov,
                                              double weight_decay, int first_step,
                                              const int64_t *n, int64_t count, int nthreads)
{
    int64_t total;
    if (count < 0 || (count > 0 && (!param || !grad || !n)) || !total_size(n, count, &total) ||
        !(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0) ||
        (momentum != 0) != (momentum_buffer != NULL) ||
        (nesterov && (momentum == 0 || dampening != 0)))
        return PYNN_ERR_ARG;
    const TFN(sgd_args) a = {param, momentum_buffer, grad, n,
                             {(REAL)lr, (REAL)momentum, (REAL)(1 - dampening),
                              (REAL)weight_decay, weight_decay != 0, nesterov, first_step}};
    run_spans(TFN(sgd_span), &a, total, nthreads, 1);
    return PYNN_OK;
}

typedef struct {
    REAL step_size, bc2_sqrt, w1, beta2, w2, eps, weight_decay, shrink;
    int small_w1, coupled, decoupled;
} TFN(adam_coef);

PYNN_INLINE void TFN(adam_range)(REAL *PYNN_RESTRICT param, REAL *PYNN_RESTRICT exp_avg,
                                 REAL *PYNN_RESTRICT exp_avg_sq,
                                 REAL *PYNN_RESTRICT max_exp_avg_sq,
                                 const REAL *PYNN_RESTRICT grad, TFN(adam_coef) k, int amsgrad,
                                 int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        REAL p = param[i], g = grad[i];
        if (k.decoupled)
            p = p * k.shrink;                           /* param.mul_(1 - lr*wd) */
        if (k.coupled)
            g = g + k.weight_decay * p;                 /* grad.add(param, alpha=wd) */
        const REAL m = TFN(lerp)(exp_avg[i], g, k.w1, k.small_w1); /* lerp_(grad, 1-beta1) */
        const REAL v = exp_avg_sq[i] * k.beta2 + k.w2 * g * g; /* mul_(b2).addcmul_(g, g, 1-b2) */
        REAL vhat = v;
        if (amsgrad) {                                  /* torch.maximum: NaN wins */
            const REAL old = max_exp_avg_sq[i];
            vhat = (v > old || v != v) ? v : old;
            max_exp_avg_sq[i] = vhat;
        }
        const REAL denom = sqrt(vhat) / k.bc2_sqrt + k.eps;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p - k.step_size * (m / denom);       /* addcdiv_(m, denom, -step_size) */
    }
}

#if defined(PYNN_ISA_avx512) && defined(OPTIM_VECTOR_F32)
/* adam_range for float on AVX-512, without the divider. The scalar loop's sqrt and its two
 * divisions all go to the one divide unit, which then bounds the whole step (about 2
 * cycles per element, twice the time the memory traffic needs). Here sqrt(v) is v times a
 * refined rsqrt14, the division by sqrt(bias_correction2) a product with its reciprocal,
 * and m / denom m times a refined rcp14: each within an ulp or so of the correctly rounded
 * result. Lanes where an estimate would be wrong rather than inexact (v or denom zero,
 * subnormal, inf or NaN) take the exact instructions. Tails are masked, so every element
 * goes through the same arithmetic wherever a thread's run starts or ends. */
/* The lanes of x that are normal numbers (not zero, subnormal, inf or NaN). */
PYNN_INLINE __mmask16 TFN(normal_lanes)(__m512 x)
{
    return _mm512_cmp_ps_mask(x, _mm512_set1_ps(FLT_MIN), _CMP_GE_OQ) &
           _mm512_cmp_ps_mask(x, _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
}

PYNN_INLINE __m512 TFN(adam_sqrt)(__m512 v)
{
    const __mmask16 ok = TFN(normal_lanes)(v);
    __m512 y = _mm512_rsqrt14_ps(v);                  /* y ~ 1/sqrt(v); one Newton step: */
    const __m512 vy = _mm512_mul_ps(v, y);            /* s = v y (1.5 - 0.5 v y^2) */
    const __m512 h = _mm512_fnmadd_ps(_mm512_mul_ps(vy, _mm512_set1_ps(0.5f)), y,
                                      _mm512_set1_ps(1.5f));
    __m512 s = _mm512_mul_ps(vy, h);
    if (ok != 0xFFFF)
        s = _mm512_mask_sqrt_ps(s, (__mmask16)~ok, v);
    return s;
}

PYNN_INLINE __m512 TFN(adam_div)(__m512 m, __m512 d)
{
    const __mmask16 ok = TFN(normal_lanes)(d);
    __m512 r = _mm512_rcp14_ps(d);                    /* r ~ 1/d; r += r (1 - d r) */
    r = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r, r);
    __m512 q = _mm512_mul_ps(m, r);
    if (ok != 0xFFFF)
        q = _mm512_mask_div_ps(q, (__mmask16)~ok, m, d);
    return q;
}

PYNN_INLINE void TFN(adam_range_vec)(REAL *PYNN_RESTRICT param, REAL *PYNN_RESTRICT exp_avg,
                                     REAL *PYNN_RESTRICT exp_avg_sq,
                                     REAL *PYNN_RESTRICT max_exp_avg_sq,
                                     const REAL *PYNN_RESTRICT grad, TFN(adam_coef) k,
                                     int amsgrad, int64_t i0, int64_t i1)
{
    const __m512 shrink = _mm512_set1_ps(k.shrink), wd = _mm512_set1_ps(k.weight_decay);
    const __m512 w1 = _mm512_set1_ps(k.w1), one_w1 = _mm512_set1_ps((REAL)1 - k.w1);
    const __m512 beta2 = _mm512_set1_ps(k.beta2), w2 = _mm512_set1_ps(k.w2);
    const __m512 inv_bc2 = _mm512_set1_ps((REAL)1 / k.bc2_sqrt), eps = _mm512_set1_ps(k.eps);
    const __m512 step = _mm512_set1_ps(k.step_size);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 mk = i1 - i >= 16 ? 0xFFFF : (__mmask16)((1u << (i1 - i)) - 1);
        __m512 p = _mm512_maskz_loadu_ps(mk, param + i);
        __m512 g = _mm512_maskz_loadu_ps(mk, grad + i);
        if (k.decoupled)
            p = _mm512_mul_ps(p, shrink);
        if (k.coupled)
            g = _mm512_fmadd_ps(wd, p, g);
        const __m512 m0 = _mm512_maskz_loadu_ps(mk, exp_avg + i);
        const __m512 diff = _mm512_sub_ps(g, m0);
        const __m512 m = k.small_w1 ? _mm512_fmadd_ps(w1, diff, m0)
                                    : _mm512_fnmadd_ps(diff, one_w1, g);
        const __m512 v = _mm512_fmadd_ps(_mm512_mul_ps(w2, g), g,
                                         _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, exp_avg_sq + i),
                                                       beta2));
        __m512 vhat = v;
        if (amsgrad) {                                  /* torch.maximum: NaN wins */
            const __m512 old = _mm512_maskz_loadu_ps(mk, max_exp_avg_sq + i);
            const __mmask16 keep = _mm512_cmp_ps_mask(v, old, _CMP_NGT_UQ) &
                                   _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
            vhat = _mm512_mask_mov_ps(v, keep, old);
            _mm512_mask_storeu_ps(max_exp_avg_sq + i, mk, vhat);
        }
        const __m512 denom = _mm512_fmadd_ps(TFN(adam_sqrt)(vhat), inv_bc2, eps);
        _mm512_mask_storeu_ps(exp_avg + i, mk, m);
        _mm512_mask_storeu_ps(exp_avg_sq + i, mk, v);
        _mm512_mask_storeu_ps(param + i, mk, _mm512_fnmadd_ps(step, TFN(adam_div)(m, denom), p));
    }
}
#define ADAM_RANGE TFN(adam_range_vec)
#else
#define ADAM_RANGE TFN(adam_range)
#endif

typedef struct {
    REAL *const *param, *const *exp_avg, *const *exp_avg_sq, *const *max_exp_avg_sq;
    const REAL *const *grad;
    const int64_t *n;
    TFN(adam_coef) k;
} TFN(adam_args);

static void TFN(adam_span)(const void *args, int64_t g0, int64_t g1)
{
    const TFN(adam_args) *a = args;
    span s = span_begin(a->n, g0, g1);
    int64_t e, i0, i1;
    while (span_next(&s, &e, &i0, &i1)) {
        if (a->max_exp_avg_sq)
            ADAM_RANGE(a->param[e], a->exp_avg[e], a->exp_avg_sq[e], a->max_exp_avg_sq[e],
                       a->grad[e], a->k, 1, i0, i1);
        else
            ADAM_RANGE(a->param[e], a->exp_avg[e], a->exp_avg_sq[e], NULL, a->grad[e], a->k, 0,
                       i0, i1);
    }
}

#undef ADAM_RANGE

/* param[e], exp_avg[e], exp_avg_sq[e], max_exp_avg_sq[e], grad[e] (n[e]) for e < count */
pynn_status PYNN_ISA_FN(TFN(pynn_adam_update))(REAL *const *param, REAL *const *exp_avg,
                                               REAL *const *exp_avg_sq,
                                               REAL *const *max_exp_avg_sq,
                                               const REAL *const *grad, int64_t step,
                                               double lr, double beta1, double beta2,
                                               double eps, double weight_decay,
                                               int decoupled_weight_decay, const int64_t *n,
                                               int64_t count, int nthreads)
{
    int64_t total;
    if (count < 0 || (count > 0 && (!param || !exp_avg || !exp_avg_sq || !grad || !n)) ||
        !total_size(n, count, &total) || step < 1 || !(lr >= 0) ||
        !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) ||
        !(weight_decay >= 0))
        return PYNN_ERR_ARG;
    const double bias_correction1 = 1 - pow(beta1, (double)step);
    const double bias_correction2 = 1 - pow(beta2, (double)step);
    const REAL w1 = (REAL)(1 - beta1);
    const TFN(adam_args) a = {param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n,
                              {(REAL)(lr / bias_correction1), (REAL)sqrt(bias_correction2), w1,
                               (REAL)beta2, (REAL)(1 - beta2), (REAL)eps, (REAL)weight_decay,
                               (REAL)(1 - lr * weight_decay), w1 < (REAL)0.5,
                               weight_decay != 0 && !decoupled_weight_decay,
                               weight_decay != 0 && decoupled_weight_decay}};
    /* a flushed second moment moves the denominator by under sqrt(REAL_MIN) / bc2 */
    run_spans(TFN(adam_span), &a, total, nthreads,
              sqrt((double)REAL_MIN) / sqrt(bias_correction2) <= eps * REAL_EPSILON / 8);
    return PYNN_OK;
}

typedef struct {
    REAL lr, alpha, w, eps, weight_decay, momentum;
    int small_w, decay;
} TFN(rmsprop_coef);

PYNN_INLINE void TFN(rmsprop_range)(REAL *PYNN_RESTRICT param, REAL *PYNN_RESTRICT square_avg,
                                    REAL *PYNN_RESTRICT momentum_buffer,
                                    REAL *PYNN_RESTRICT grad_avg, const REAL *PYNN_RESTRICT grad,
                                    TFN(rmsprop_coef) k, int heavy_ball, int centered,
                                    int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        REAL g = grad[i];
        if (k.decay)
            g = g + k.weight_decay * param[i];          /* grad.add(param, alpha=wd) */
        const REAL s = square_avg[i] * k.alpha + k.w * g * g; /* mul_(a).addcmul_(g, g, 1-a) */
        square_avg[i] = s;
        REAL avg;
        if (centered) {
            const REAL ga = TFN(lerp)(grad_avg[i], g, k.w, k.small_w); /* lerp_(grad, 1-a) */
            grad_avg[i] = ga;
            avg = sqrt(s - ga * ga);                    /* addcmul(ga, ga, value=-1).sqrt_() */
        } else {
            avg = sqrt(s);
        }
        avg = avg + k.eps;
        if (heavy_ball) {
            const REAL b = momentum_buffer[i] * k.momentum + g / avg; /* mul_.addcdiv_(g, avg) */
            momentum_buffer[i] = b;
            param[i] = param[i] - k.lr * b;             /* param.add_(buf, alpha=-lr) */
        } else {
            param[i] = param[i] - k.lr * (g / avg);     /* addcdiv_(g, avg, value=-lr) */
        }
    }
}

typedef struct {
    REAL *const *param, *const *square_avg, *const *momentum_buffer, *const *grad_avg;
    const REAL *const *grad;
    const int64_t *n;
    TFN(rmsprop_coef) k;
} TFN(rmsprop_args);

static void TFN(rmsprop_span)(const void *args, int64_t g0, int64_t g1)
{
    const TFN(rmsprop_args) *a = args;
    span s = span_begin(a->n, g0, g1);
    int64_t e, i0, i1;
    while (span_next(&s, &e, &i0, &i1)) {
        REAL *p = a->param[e], *sq = a->square_avg[e];
        const REAL *g = a->grad[e];
        if (a->momentum_buffer && a->grad_avg)
            TFN(rmsprop_range)(p, sq, a->momentum_buffer[e], a->grad_avg[e], g, a->k, 1, 1, i0, i1);
        else if (a->momentum_buffer)
            TFN(rmsprop_range)(p, sq, a->momentum_buffer[e], NULL, g, a->k, 1, 0, i0, i1);
        else if (a->grad_avg)
            TFN(rmsprop_range)(p, sq, NULL, a->grad_avg[e], g, a->k, 0, 1, i0, i1);
        else
            TFN(rmsprop_range)(p, sq, NULL, NULL, g, a->k, 0, 0, i0, i1);
    }
}

/* param[e], square_avg[e], momentum_buffer[e], grad_avg[e], grad[e] (n[e]) for e < count */
pynn_status PYNN_ISA_FN(TFN(pynn_rmsprop_update))(REAL *const *param, REAL *const *square_avg,
                                                  REAL *const *momentum_buffer,
                                                  REAL *const *grad_avg, const REAL *const *grad,
                                                  double lr, double alpha, double eps,
                                                  double weight_decay, double momentum,
                                                  const int64_t *n, int64_t count, int nthreads)
{
    int64_t total;
    if (count < 0 || (count > 0 && (!param || !square_avg || !grad || !n)) ||
        !total_size(n, count, &total) || !(lr >= 0) || !(alpha >= 0 && alpha <= 1) ||
        !(eps >= 0) || !(weight_decay >= 0) || !(momentum >= 0))
        return PYNN_ERR_ARG;
    const REAL w = (REAL)(1 - alpha);
    const TFN(rmsprop_args) a = {param, square_avg, momentum_buffer, grad_avg, grad, n,
                                 {(REAL)lr, (REAL)alpha, w, (REAL)eps, (REAL)weight_decay,
                                  (REAL)momentum, w < (REAL)0.5, weight_decay != 0}};
    run_spans(TFN(rmsprop_span), &a, total, nthreads,
              sqrt((double)REAL_MIN) <= eps * REAL_EPSILON / 8);
    return PYNN_OK;
}

#undef TFN
