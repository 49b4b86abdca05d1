/* Fused optimizer steps: SGD (momentum, dampening, Nesterov), Adam/AdamW (AMSGrad) and
 * RMSprop (momentum, centered), each one pass over the parameter and its state, in place.
 *
 * The arithmetic is torch.optim's single-tensor path, operation for operation and in the
 * parameter's precision, with the hyperparameters rounded to it as ATen rounds Python
 * scalars: what PyTorch computes as a chain of tensor ops over the whole parameter (each
 * one a trip through memory) is here one read and one write of every array. Bias
 * corrections are computed once per call in double, as PyTorch computes them in Python.
 * The gradient is only read; weight decay is applied to a copy of each element.
 *
 * Element-wise, so any split over threads gives the same bits. Compiled once per ISA
 * (MULTI) for the vector sqrt and divide. The kernels are written once in optim_tmpl.h,
 * included below for float and double.
 */
#include <tgmath.h> /* sqrt of a float is sqrtf */

#include "isa.h"

#define MIN_PARALLEL 32768 /* elements a thread must have before a loop is split */
#define CHUNK 8192         /* elements per unit of parallel work */

#define REAL float
#define SFX f32
#include "optim_tmpl.h"
#undef REAL
#undef SFX

#define REAL double
#define SFX f64
#include "optim_tmpl.h"
#undef REAL
#undef SFX

#if PYNN_ISA_generic
#define SGD_ARGS(T)                                                                        \
    (T *param, T *momentum_buffer, const T *grad, double lr, double momentum,             \
     double dampening, int nesterov, double weight_decay, int first_step, int64_t n,      \
     int nthreads)
#define ADAM_ARGS(T)                                                                       \
    (T *param, T *exp_avg, T *exp_avg_sq, T *max_exp_avg_sq, const T *grad, int64_t step,  \
     double lr, double beta1, double beta2, double eps, double weight_decay,               \
     int decoupled_weight_decay, int64_t n, int nthreads)
#define RMSPROP_ARGS(T)                                                                    \
    (T *param, T *square_avg, T *momentum_buffer, T *grad_avg, const T *grad, double lr,   \
     double alpha, double eps, double weight_decay, double momentum, int64_t n, int nthreads)

PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_sgd_update_f32, SGD_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_sgd_update_f64, SGD_ARGS(double));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_adam_update_f32, ADAM_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_adam_update_f64, ADAM_ARGS(double));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_rmsprop_update_f32, RMSPROP_ARGS(float));
PYNN_DECLARE_ISA_VARIANTS(pynn_status, pynn_rmsprop_update_f64, RMSPROP_ARGS(double));

pynn_status pynn_sgd_update_f32 SGD_ARGS(float)
{
    pynn_status (*fn) SGD_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_sgd_update_f32);
    return fn(param, momentum_buffer, grad, lr, momentum, dampening, nesterov, weight_decay,
              first_step, n, nthreads);
}

pynn_status pynn_sgd_update_f64 SGD_ARGS(double)
{
    pynn_status (*fn) SGD_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_sgd_update_f64);
    return fn(param, momentum_buffer, grad, lr, momentum, dampening, nesterov, weight_decay,
              first_step, n, nthreads);
}

pynn_status pynn_adam_update_f32 ADAM_ARGS(float)
{
    pynn_status (*fn) ADAM_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_adam_update_f32);
    return fn(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, decoupled_weight_decay, n, nthreads);
}

pynn_status pynn_adam_update_f64 ADAM_ARGS(double)
{
    pynn_status (*fn) ADAM_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_adam_update_f64);
    return fn(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, decoupled_weight_decay, n, nthreads);
}

pynn_status pynn_rmsprop_update_f32 RMSPROP_ARGS(float)
{
    pynn_status (*fn) RMSPROP_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_rmsprop_update_f32);
    return fn(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, eps, weight_decay,
              momentum, n, nthreads);
}

pynn_status pynn_rmsprop_update_f64 RMSPROP_ARGS(double)
{
    pynn_status (*fn) RMSPROP_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_rmsprop_update_f64);
    return fn(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, eps, weight_decay,
              momentum, n, nthreads);
}
#endif
