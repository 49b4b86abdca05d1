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

#endif
