/* Internal: the AVX-512 float loops of the element-wise kernels (eltwise_avx512.c), called
 * by eltwise.c's avx512 build. Each returns 1 when it has computed act over the n
 * elements, 0 (having done nothing) for an activation it has no loop for; the caller then
 * runs its portable loop. Same contracts as the portable loops: y may be x, dx may be dy
 * or x.
 */
#ifndef PYNN_ELTWISE_AVX512_H
#define PYNN_ELTWISE_AVX512_H

#include "pynn/pynn.h"

/* x, y (n): y = act(x) */
int pynn_eltwise_zmm_forward_f32(float *y, const float *x, int64_t n, pynn_act act);
/* dy, x, dx (n): dx = dy * act'(x), x the pre-activation */
int pynn_eltwise_zmm_backward_f32(float *dx, const float *dy, const float *x, int64_t n,
                                  pynn_act act);

#endif
