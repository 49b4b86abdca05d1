/* The kernels of optim.c for one float type. optim.c includes this file twice, with
 * REAL = float, SFX = f32 and with REAL = double, SFX = f64. Comments give the PyTorch
 * operation each line reproduces. */

#define TFN(name) PYNN_CAT(name, SFX)

/* ATen's lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w),
 * so that both ends are exact. */
PYNN_INLINE REAL TFN(lerp)(REAL start, REAL end, REAL w, int small_w)
{
    return small_w ? start + w * (end - start) : end - (end - start) * ((REAL)1 - w);
}

/* param, momentum_buffer, grad (n) */
pynn_status PYNN_ISA_FN(TFN(pynn_sgd_update))(REAL *PYNN_RESTRICT param,
                                              REAL *PYNN_RESTRICT momentum_buffer,
                                              const REAL *PYNN_RESTRICT grad, double lr,
                                              double momentum, double dampening, int nesterov,
                                              double weight_decay, int first_step, int64_t n,
                                              int nthreads)
{
    if (n < 0 || !(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0) ||
        (momentum != 0) != (momentum_buffer != NULL) ||
        (nesterov && (momentum == 0 || dampening != 0)))
        return PYNN_ERR_ARG;
    const REAL lr_ = (REAL)lr, mu = (REAL)momentum, wd = (REAL)weight_decay;
    const REAL keep = (REAL)(1 - dampening);
    const int decay = weight_decay != 0;
    const int nt = pynn_threads_for(n, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        REAL d = grad[i];
        if (decay)
            d = d + wd * param[i];                      /* grad.add(param, alpha=wd) */
        if (momentum_buffer) {
            const REAL b = first_step ? d               /* clone(grad) */
                                      : momentum_buffer[i] * mu + keep * d; /* mul_, add_ */
            momentum_buffer[i] = b;
            d = nesterov ? d + mu * b : b;              /* grad.add(buf, alpha=momentum) */
        }
        param[i] = param[i] - lr_ * d;                  /* param.add_(grad, alpha=-lr) */
    }
    return PYNN_OK;
}

/* param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad (n) */
pynn_status PYNN_ISA_FN(TFN(pynn_adam_update))(REAL *PYNN_RESTRICT param,
                                               REAL *PYNN_RESTRICT exp_avg,
                                               REAL *PYNN_RESTRICT exp_avg_sq,
                                               REAL *PYNN_RESTRICT max_exp_avg_sq,
                                               const REAL *PYNN_RESTRICT grad, int64_t step,
                                               double lr, double beta1, double beta2, double eps,
                                               double weight_decay, int decoupled_weight_decay,
                                               int64_t n, int nthreads)
{
    if (n < 0 || step < 1 || !(lr >= 0) || !(beta1 >= 0 && beta1 < 1) ||
        !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !(weight_decay >= 0))
        return PYNN_ERR_ARG;
    const double bias_correction1 = 1 - pow(beta1, (double)step);
    const double bias_correction2 = 1 - pow(beta2, (double)step);
    const REAL step_size = (REAL)(lr / bias_correction1);
    const REAL bc2_sqrt = (REAL)sqrt(bias_correction2);
    const REAL w1 = (REAL)(1 - beta1), b2 = (REAL)beta2, w2 = (REAL)(1 - beta2);
    const REAL eps_ = (REAL)eps, wd = (REAL)weight_decay;
    const REAL shrink = (REAL)(1 - lr * weight_decay);
    const int small_w1 = w1 < (REAL)0.5;
    const int coupled = weight_decay != 0 && !decoupled_weight_decay;
    const int decoupled = weight_decay != 0 && decoupled_weight_decay;
    const int nt = pynn_threads_for(n, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        REAL p = param[i], g = grad[i];
        if (decoupled)
            p = p * shrink;                             /* param.mul_(1 - lr*wd) */
        if (coupled)
            g = g + wd * p;                             /* grad.add(param, alpha=wd) */
        const REAL m = TFN(lerp)(exp_avg[i], g, w1, small_w1); /* exp_avg.lerp_(grad, 1-b1) */
        const REAL v = exp_avg_sq[i] * b2 + w2 * g * g; /* mul_(b2).addcmul_(g, g, 1-b2) */
        REAL vhat = v;
        if (max_exp_avg_sq) {                           /* torch.maximum: NaN wins */
            const REAL old = max_exp_avg_sq[i];
            vhat = (v > old || v != v) ? v : old;
            max_exp_avg_sq[i] = vhat;
        }
        const REAL denom = sqrt(vhat) / bc2_sqrt + eps_;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p - step_size * (m / denom);         /* addcdiv_(m, denom, -step_size) */
    }
    return PYNN_OK;
}

/* param, square_avg, momentum_buffer, grad_avg, grad (n) */
pynn_status PYNN_ISA_FN(TFN(pynn_rmsprop_update))(REAL *PYNN_RESTRICT param,
                                                  REAL *PYNN_RESTRICT square_avg,
                                                  REAL *PYNN_RESTRICT momentum_buffer,
                                                  REAL *PYNN_RESTRICT grad_avg,
                                                  const REAL *PYNN_RESTRICT grad, double lr,
                                                  double alpha, double eps, double weight_decay,
                                                  double momentum, int64_t n, int nthreads)
{
    if (n < 0 || !(lr >= 0) || !(alpha >= 0 && alpha <= 1) || !(eps >= 0) ||
        !(weight_decay >= 0) || !(momentum >= 0))
        return PYNN_ERR_ARG;
    const REAL lr_ = (REAL)lr, a = (REAL)alpha, w = (REAL)(1 - alpha), eps_ = (REAL)eps;
    const REAL wd = (REAL)weight_decay, mu = (REAL)momentum;
    const int small_w = w < (REAL)0.5;
    const int decay = weight_decay != 0;
    const int nt = pynn_threads_for(n, MIN_PARALLEL, nthreads);
    (void)nt; /* read only by OpenMP */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        REAL g = grad[i];
        if (decay)
            g = g + wd * param[i];                      /* grad.add(param, alpha=wd) */
        const REAL s = square_avg[i] * a + w * g * g;   /* mul_(alpha).addcmul_(g, g, 1-alpha) */
        square_avg[i] = s;
        REAL avg;
        if (grad_avg) {
            const REAL ga = TFN(lerp)(grad_avg[i], g, w, small_w); /* grad_avg.lerp_(g, 1-a) */
            grad_avg[i] = ga;
            avg = sqrt(s - ga * ga);                    /* addcmul(ga, ga, value=-1).sqrt_() */
        } else {
            avg = sqrt(s);
        }
        avg = avg + eps_;
        if (momentum_buffer) {
            const REAL b = momentum_buffer[i] * mu + g / avg; /* mul_(mu).addcdiv_(g, avg) */
            momentum_buffer[i] = b;
            param[i] = param[i] - lr_ * b;              /* param.add_(buf, alpha=-lr) */
        } else {
            param[i] = param[i] - lr_ * (g / avg);      /* addcdiv_(g, avg, value=-lr) */
        }
    }
    return PYNN_OK;
}

#undef TFN
