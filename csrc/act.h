/* Internal: activations over a contiguous run of values, for kernels that apply one as
 * part of their own work (the GEMM epilogue). Implemented in eltwise.c.
 *
 * y[i] = act(x[i]) for i < n; y may equal x. Serial: meant to be called from inside a
 * caller's parallel region. Dispatches on the ISA in force (pynn_cpu_isa()).
 */
#ifndef PYNN_ACT_H
#define PYNN_ACT_H

#include "pynn/pynn.h"

void pynn_act_apply_f32(float *y, const float *x, int64_t n, pynn_act act, float negative_slope);
void pynn_act_apply_f64(double *y, const double *x, int64_t n, pynn_act act, double negative_slope);

/* Constants of the element-wise kernels (eltwise.c, eltwise_avx512.c), in double; the
 * float code rounds each product of them once, (float)(3.0 * GELU_TANH_C), so that both
 * files get the same bits. */
/* 2*sqrt(2/pi): the tanh-GELU's inner scale sqrt(2/pi), doubled for
 * 1 + tanh(w) = 2*sigmoid(2w). */
#define GELU_TANH_2K 1.5957691216057308
#define GELU_TANH_C 0.044715
/* Derivatives with x clamped here equal the unclamped ones wherever those are finite
 * (their exponential factors have long underflowed) and give the limits 0 or 1 at +-inf
 * instead of inf * 0. */
#define GRAD_CLAMP 1e4

#endif
