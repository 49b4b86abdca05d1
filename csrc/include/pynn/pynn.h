/* pynn: C99 + OpenMP kernels behind pynn's Python API.
 *
 * Every exported kernel is declared here with a shape comment. Conventions (DESIGN.md):
 * outputs first, then inputs, then parameters, then sizes; backward takes the gradients
 * it writes first, then the incoming gradient, then cached tensors. Kernels never
 * allocate outputs, print or exit: they return a pynn_status. `nthreads` is the number
 * of OpenMP threads the caller allows (>= 1); results do not depend on it.
 */
#ifndef PYNN_H
#define PYNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PYNN_OK = 0,
    PYNN_ERR_ARG = 1,     /* an argument out of its documented range */
    PYNN_ERR_NOMEM = 2,   /* scratch allocation failed */
    PYNN_ERR_ISA = 3      /* an instruction set the CPU or OS does not support */
} pynn_status;

/* Activations, as the GEMM epilogue and the element-wise kernels name them. */
typedef enum {
    PYNN_ACT_NONE = 0,
    PYNN_ACT_RELU = 1,
    PYNN_ACT_LEAKY_RELU = 2,   /* x if x > 0 else negative_slope * x */
    PYNN_ACT_SIGMOID = 3,
    PYNN_ACT_TANH = 4,
    PYNN_ACT_SILU = 5,         /* x * sigmoid(x) */
    PYNN_ACT_GELU = 6,         /* x * Phi(x), exact erf form */
    PYNN_ACT_GELU_TANH = 7     /* tanh approximation */
} pynn_act;

/* ---- cpu.c: instruction-set detection and run-time dispatch ---------------------- */
typedef enum {
    PYNN_ISA_GENERIC = 0,   /* portable C, whatever the compiler vectorises */
    PYNN_ISA_AVX2 = 1,      /* AVX2 + FMA */
    PYNN_ISA_AVX512 = 2     /* AVX-512 F/DQ/BW/VL, 512-bit registers enabled by the OS */
} pynn_isa;

pynn_isa pynn_cpu_best_isa(void);           /* best ISA the CPU and OS support */
pynn_isa pynn_cpu_isa(void);                /* ISA the dispatch table uses now */
pynn_status pynn_cpu_set_isa(pynn_isa isa); /* force a path; ERR_ISA if unsupported */
const char *pynn_isa_name(pynn_isa isa);

/* ---- threads.c --------------------------------------------------------------------- */
int pynn_openmp_enabled(void);              /* 1 when built with OpenMP */
int pynn_openmp_max_threads(void);          /* omp_get_max_threads(), 1 without OpenMP */
/* Threads to use for `work` units when `min_work` units justify one thread. */
int pynn_threads_for(int64_t work, int64_t min_work, int nthreads);

/* ---- gather.c: rows taken by index (a shuffled mini-batch) --------------------------- */
/* x (rows, ...), idx (count); out (count, ...): out[i] = x[idx[i]], rows of row_bytes
 * bytes, negative indices from the end; ERR_ARG (nothing written) for an index outside
 * [-rows, rows). */
pynn_status pynn_take_rows(void *out, const void *x, const int64_t *idx, int64_t count,
                           int64_t rows, int64_t row_bytes, int nthreads);

/* ---- gemm: matrix multiply with a fused epilogue (csrc/gemm/) ------------------------ */
/* c (m, n) = act(alpha * op(a) @ op(b) + beta * c + bias), op(x) = x or x^T.
 * a (m, k), or (k, m) stored when trans_a; b (k, n), or (n, k) stored when trans_b; each
 * matrix row-major with the given row stride (ld >= its column count); bias (n) or NULL;
 * preact (m, n) with row stride ldp, or NULL: receives the value before the activation
 * (c and preact must not overlap each other or the inputs). beta == 0 never reads c (it
 * may hold NaN). Every element is summed over k in an order fixed by k and the ISA alone:
 * results do not depend on nthreads, on m or on the other rows. */
pynn_status pynn_gemm_f32(float *c, int64_t ldc, float *preact, int64_t ldp, const float *a,
                          int64_t lda, const float *b, int64_t ldb, const float *bias,
                          int trans_a, int trans_b, float alpha, float beta, pynn_act act,
                          float negative_slope, int64_t m, int64_t n, int64_t k, int nthreads);
pynn_status pynn_gemm_f64(double *c, int64_t ldc, double *preact, int64_t ldp, const double *a,
                          int64_t lda, const double *b, int64_t ldb, const double *bias,
                          int trans_a, int trans_b, double alpha, double beta, pynn_act act,
                          double negative_slope, int64_t m, int64_t n, int64_t k, int nthreads);
/* batch products c[e] = alpha * op(a[e]) @ op(b[e]) + beta * c[e], x[e] = x + e * stride_x
 * (elements); stride_a or stride_b 0 shares one matrix. Entries of c must not overlap
 * (stride_c >= m * ldc). Each entry's bits equal pynn_gemm_*'s. */
pynn_status pynn_gemm_batched_f32(float *c, int64_t ldc, int64_t stride_c, const float *a,
                                  int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                                  int64_t stride_b, int trans_a, int trans_b, float alpha,
                                  float beta, int64_t batch, int64_t m, int64_t n, int64_t k,
                                  int nthreads);
pynn_status pynn_gemm_batched_f64(double *c, int64_t ldc, int64_t stride_c, const double *a,
                                  int64_t lda, int64_t stride_a, const double *b, int64_t ldb,
                                  int64_t stride_b, int trans_a, int trans_b, double alpha,
                                  double beta, int64_t batch, int64_t m, int64_t n, int64_t k,
                                  int nthreads);
/* dy (m, n) with row stride ldy; db (n) = sum over rows of dy, or db += that when
 * accumulate. Each column is summed in row order: the bias gradient of a linear layer. */
pynn_status pynn_gemm_colsum_f32(float *db, const float *dy, int64_t ldy, int accumulate,
                                 int64_t m, int64_t n, int nthreads);
pynn_status pynn_gemm_colsum_f64(double *db, const double *dy, int64_t ldy, int accumulate,
                                 int64_t m, int64_t n, int nthreads);
/* The float32 FMA peak of nthreads threads in GFLOP/s, measured by a short FMA loop on the
 * widest vectors the CPU supports, in each thread's CPU time (about 50 ms): the yardstick
 * of the GEMM benchmark. */
pynn_status pynn_gemm_fma_peak(double *gflops, int nthreads);
/* The float32 micro-kernel in force, in GFLOP/s of nthreads threads, on full tiles whose
 * panels stay in L1 (about 20 ms): the most any large product can reach on this machine,
 * whatever its blocking. */
pynn_status pynn_gemm_tile_peak(double *gflops, int nthreads);

/* ---- softmax_xent.c: softmax, log-softmax, fused softmax + cross-entropy ------------ */
/* Loss reductions, numbered as PyTorch numbers them. */
typedef enum {
    PYNN_REDUCTION_NONE = 0,
    PYNN_REDUCTION_MEAN = 1,
    PYNN_REDUCTION_SUM = 2
} pynn_reduction;

/* x, y (M, C, K): y = softmax(x), or log_softmax(x) if log_softmax, along C. y must not
 * overlap x. */
pynn_status pynn_softmax_forward_f32(float *y, const float *x, int log_softmax, int64_t m,
                                     int64_t c, int64_t k, int nthreads);
pynn_status pynn_softmax_forward_f64(double *y, const double *x, int log_softmax, int64_t m,
                                     int64_t c, int64_t k, int nthreads);
/* dy, y, dx (M, C, K), y the forward output, along C: dx = y * (dy - sum(dy * y)), or
 * dx = dy - exp(y) * sum(dy) if log_softmax. dx must not overlap dy or y. */
pynn_status pynn_softmax_backward_f32(float *dx, const float *dy, const float *y,
                                      int log_softmax, int64_t m, int64_t c, int64_t k,
                                      int nthreads);
pynn_status pynn_softmax_backward_f64(double *dx, const double *dy, const double *y,
                                      int log_softmax, int64_t m, int64_t c, int64_t k,
                                      int nthreads);
/* logits, dlogits (N, C); labels (N,); weight (C,) or NULL; losses (N,) or NULL.
 * Cross-entropy of softmax(logits) as torch.nn.functional.cross_entropy computes it
 * (label smoothing, ignore_index, class weights): *loss = the reduced loss (NONE: the
 * sum, with the row losses in losses), dlogits = its gradient, in one pass over logits.
 * Outputs must not overlap inputs. */
pynn_status pynn_softmax_xent_forward_backward_f32(
    double *loss, float *losses, float *dlogits, const float *logits, const int64_t *labels,
    const float *weight, pynn_reduction reduction, double label_smoothing,
    int64_t ignore_index, int64_t n, int64_t c, int nthreads);
pynn_status pynn_softmax_xent_forward_backward_f64(
    double *loss, double *losses, double *dlogits, const double *logits,
    const int64_t *labels, const double *weight, pynn_reduction reduction,
    double label_smoothing, int64_t ignore_index, int64_t n, int64_t c, int nthreads);

/* ---- norm.c: batch normalisation, bias gradient ----------------------------------- */
/* x (N, C, S) is any (N, C, ...) input with S the product of the trailing extents (1 for
 * (N, C)). Per-channel reductions are deterministic (fixed tiles, merged in order). */
/* x, y (N, C, S); gamma, beta (C) or NULL; running_mean, running_var (C): read in eval
 * mode, updated as PyTorch does in training mode (unbiased variance; may be NULL there);
 * saved_mean, saved_invstd (C) written: the statistics used, 1/sqrt(var + eps). */
pynn_status pynn_batch_norm_forward_f32(float *y, float *saved_mean, float *saved_invstd,
                                        float *running_mean, float *running_var, const float *x,
                                        const float *gamma, const float *beta, int training,
                                        double momentum, double eps, int64_t N, int64_t C,
                                        int64_t S, int nthreads);
pynn_status pynn_batch_norm_forward_f64(double *y, double *saved_mean, double *saved_invstd,
                                        double *running_mean, double *running_var,
                                        const double *x, const double *gamma, const double *beta,
                                        int training, double momentum, double eps, int64_t N,
                                        int64_t C, int64_t S, int nthreads);
/* dy, x, dx (N, C, S); gamma (C) or NULL; saved_mean, saved_invstd (C) from the forward
 * pass; dgamma, dbeta (C) written unless NULL. training = 0: the statistics are constants. */
pynn_status pynn_batch_norm_backward_f32(float *dx, float *dgamma, float *dbeta, const float *dy,
                                         const float *x, const float *gamma,
                                         const float *saved_mean, const float *saved_invstd,
                                         int training, int64_t N, int64_t C, int64_t S,
                                         int nthreads);
pynn_status pynn_batch_norm_backward_f64(double *dx, double *dgamma, double *dbeta,
                                         const double *dy, const double *x, const double *gamma,
                                         const double *saved_mean, const double *saved_invstd,
                                         int training, int64_t N, int64_t C, int64_t S,
                                         int nthreads);
/* dy (N, C, S); db (C) = sum of dy over n and s. */
pynn_status pynn_bias_backward_f32(float *db, const float *dy, int64_t N, int64_t C, int64_t S,
                                   int nthreads);
pynn_status pynn_bias_backward_f64(double *db, const double *dy, int64_t N, int64_t C,
                                   int64_t S, int nthreads);

/* ---- dropout.c: inverted dropout with a counter-based mask ------------------------- */
/* x, y (n): y = x * keep / (1 - p), where keep[i] is a pure function of (seed, i, p), so
 * backward regenerates the mask and no thread count changes it. p in [0, 1). y may be x. */
pynn_status pynn_dropout_forward_f32(float *y, const float *x, double p, uint64_t seed, int64_t n,
                                     int nthreads);
pynn_status pynn_dropout_forward_f64(double *y, const double *x, double p, uint64_t seed,
                                     int64_t n, int nthreads);
/* dy, dx (n): dx = dy * keep / (1 - p), the same mask as the forward pass. dx may be dy. */
pynn_status pynn_dropout_backward_f32(float *dx, const float *dy, double p, uint64_t seed,
                                      int64_t n, int nthreads);
pynn_status pynn_dropout_backward_f64(double *dx, const double *dy, double p, uint64_t seed,
                                      int64_t n, int nthreads);

/* ---- optim.c: fused optimizer steps, in place, as torch.optim computes them -------- */
/* Each updates `count` parameters in one call: entry e is param[e] and its state, arrays
 * of n[e] elements; grad[e] is only read. No array that a kernel writes may overlap
 * another array of the call. */
/* param[e], momentum_buffer[e], grad[e] (n[e]). momentum_buffer NULL iff momentum == 0;
 * first_step sets the buffers to the (decayed) gradients instead of averaging. */
pynn_status pynn_sgd_update_f32(float *const *param, float *const *momentum_buffer,
                                const float *const *grad, double lr, double momentum,
                                double dampening, int nesterov, double weight_decay,
                                int first_step, const int64_t *n, int64_t count, int nthreads);
pynn_status pynn_sgd_update_f64(double *const *param, double *const *momentum_buffer,
                                const double *const *grad, double lr, double momentum,
                                double dampening, int nesterov, double weight_decay,
                                int first_step, const int64_t *n, int64_t count, int nthreads);
/* param[e], exp_avg[e], exp_avg_sq[e], max_exp_avg_sq[e], grad[e] (n[e]). max_exp_avg_sq
 * non-NULL: AMSGrad. step >= 1 counts this step; decoupled_weight_decay: AdamW. */
pynn_status pynn_adam_update_f32(float *const *param, float *const *exp_avg,
                                 float *const *exp_avg_sq, float *const *max_exp_avg_sq,
                                 const float *const *grad, int64_t step, double lr, double beta1,
                                 double beta2, double eps, double weight_decay,
                                 int decoupled_weight_decay, const int64_t *n, int64_t count,
                                 int nthreads);
pynn_status pynn_adam_update_f64(double *const *param, double *const *exp_avg,
                                 double *const *exp_avg_sq, double *const *max_exp_avg_sq,
                                 const double *const *grad, int64_t step, double lr,
                                 double beta1, double beta2, double eps, double weight_decay,
                                 int decoupled_weight_decay, const int64_t *n, int64_t count,
                                 int nthreads);
/* param[e], square_avg[e], momentum_buffer[e], grad_avg[e], grad[e] (n[e]).
 * momentum_buffer non-NULL: heavy ball with `momentum`; grad_avg non-NULL: centered. */
pynn_status pynn_rmsprop_update_f32(float *const *param, float *const *square_avg,
                                    float *const *momentum_buffer, float *const *grad_avg,
                                    const float *const *grad, double lr, double alpha,
                                    double eps, double weight_decay, double momentum,
                                    const int64_t *n, int64_t count, int nthreads);
pynn_status pynn_rmsprop_update_f64(double *const *param, double *const *square_avg,
                                    double *const *momentum_buffer, double *const *grad_avg,
                                    const double *const *grad, double lr, double alpha,
                                    double eps, double weight_decay, double momentum,
                                    const int64_t *n, int64_t count, int nthreads);

/* ---- eltwise.c: activations, forward and backward ----------------------------------- */
/* x, y (n): y = act(x), act a pynn_act (negative_slope is used by LEAKY_RELU). y may be x. */
pynn_status pynn_act_forward_f32(float *y, const float *x, pynn_act act, double negative_slope,
                                 int64_t n, int nthreads);
pynn_status pynn_act_forward_f64(double *y, const double *x, pynn_act act, double negative_slope,
                                 int64_t n, int nthreads);
/* dy, x, dx (n): dx = dy * act'(x), x the pre-activation input. dx may be dy or x. */
pynn_status pynn_act_backward_f32(float *dx, const float *dy, const float *x, pynn_act act,
                                  double negative_slope, int64_t n, int nthreads);
pynn_status pynn_act_backward_f64(double *dx, const double *dy, const double *x, pynn_act act,
                                  double negative_slope, int64_t n, int nthreads);
/* dy, y, dx (n): dx = dy * act'(x) from the forward output y = act(x), for act SIGMOID
 * (dy * y * (1 - y)) or TANH (dy * (1 - y^2)); ERR_ARG for others. dx may be dy or y. */
pynn_status pynn_act_backward_output_f32(float *dx, const float *dy, const float *y,
                                         pynn_act act, int64_t n, int nthreads);
pynn_status pynn_act_backward_output_f64(double *dx, const double *dy, const double *y,
                                         pynn_act act, int64_t n, int nthreads);

#ifdef __cplusplus
}
#endif
#endif
