/* Fused optimizer steps: SGD (momentum, dampening, Nesterov), Adam/AdamW (AMSGrad) and
 * RMSprop (momentum, centered), each one pass over every parameter and its state, in place.
 *
 * One call updates a list of parameters (`count` entries; entry e's arrays hold n[e]
 * elements), so that an optimizer step over a whole model is one call rather than one per
 * parameter. The arithmetic is torch.optim's single-tensor path, operation for operation
 * and in the parameter's precision, with the hyperparameters rounded to it as ATen rounds
 * Python scalars: what PyTorch computes as a chain of tensor ops over each parameter (each
 * one a trip through memory) is here one read and one write of every array. (One
 * exception: float Adam on AVX-512 replaces sqrt and the divisions by refined estimates,
 * within an ulp or so; see adam_range_vec in optim_tmpl.h. And subnormal values are
 * flushed to zero; see run_spans.) Bias
 * corrections are computed once per call in double, as PyTorch computes them in Python.
 * The gradients are only read; weight decay is applied to a copy of each element.
 *
 * Threads split the entries' elements laid end to end (the concatenated space) into runs
 * of whole CHUNKs, so many small parameters are shared out as evenly as a few large ones.
 * Every element's update depends on that element alone, so any split gives the same bits.
 * Compiled once per ISA (MULTI) for the vector sqrt and divide. The kernels are written
 * once in optim_tmpl.h, included below for float and double.
 */
#include <float.h>
#include <tgmath.h> /* sqrt of a float is sqrtf */

#include "isa.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MIN_PARALLEL 32768 /* elements a thread must have before the work is split */
#define CHUNK 8192         /* elements per unit of the split: whole cache lines per thread */

/* A walk over elements [g, g1) of the concatenated space, one entry's piece at a time. */
typedef struct {
    const int64_t *n;
    int64_t entry, start; /* the entry holding element g, and that entry's first element */
    int64_t g, g1;
} span;

static inline span span_begin(const int64_t *n, int64_t g0, int64_t g1)
{
    span s = {n, 0, 0, g0, g1};
    if (g0 < g1)
        while (s.start + n[s.entry] <= g0)
            s.start += n[s.entry++];
    return s;
}

/* The next piece: elements [i0, i1) of entry *e. Returns 0 when the walk is over. */
static inline int span_next(span *s, int64_t *e, int64_t *i0, int64_t *i1)
{
    if (s->g >= s->g1)
        return 0;
    const int64_t n = s->n[s->entry], end = s->g1 - s->start;
    *e = s->entry;
    *i0 = s->g - s->start;
    *i1 = end < n ? end : n;
    s->g = s->start + *i1;
    s->start += n;
    s->entry++;
    return 1;
}

/* Adds up the entries' sizes into *total; 0 if a size is negative or the sum overflows. */
static int total_size(const int64_t *n, int64_t count, int64_t *total)
{
    int64_t t = 0;
    for (int64_t e = 0; e < count; e++) {
        if (n[e] < 0 || n[e] > INT64_MAX - t)
            return 0;
        t += n[e];
    }
    *total = t;
    return 1;
}

typedef void (*span_fn)(const void *args, int64_t g0, int64_t g1);

/* Subnormal values are flushed to zero where that cannot show. A moment or momentum
 * buffer of a parameter that stops getting gradient (a dead ReLU unit's weights) decays
 * geometrically and, after some 800 steps at beta 0.9, is subnormal; x86 then takes a
 * microcode assist on every operation that reads or makes one (an Adam step over a
 * 535k-parameter MLP measured 7x slower, training slowing down as more units died).
 * Flushed, a momentum or first moment feeds an update below the resolution of any
 * parameter of normal size; a second moment's square root is below eps times half an
 * ulp whenever the kernels ask for the flush (`flush` below: always for SGD, for Adam and
 * RMSprop when eps is that large, as it is by default). The flags (FTZ, DAZ) are set
 * only while a kernel runs, in each of its threads, and restored after. */
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
#include <xmmintrin.h>
#define FLUSH_BEGIN                             \
    const unsigned int saved_csr = _mm_getcsr(); \
    if (flush)                                   \
    _mm_setcsr(saved_csr | 0x8040u) /* FTZ | DAZ */
#define FLUSH_END _mm_setcsr(saved_csr)
#else
#define FLUSH_BEGIN (void)flush
#define FLUSH_END (void)0
#endif

/* Runs fn over elements [0, total): in the calling thread when the total is small (no
 * OpenMP region at all: a step over a small model costs microseconds), else as one run of
 * whole CHUNKs per thread. */
static void run_spans(span_fn fn, const void *args, int64_t total, int nthreads, int flush)
{
    const int nt = pynn_threads_for(total, MIN_PARALLEL, nthreads);
    if (nt == 1) {
        FLUSH_BEGIN;
        fn(args, 0, total);
        FLUSH_END;
        return;
    }
    const int64_t chunks = (total + CHUNK - 1) / CHUNK;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        const int64_t g0 = chunks * t / nt * CHUNK, g1 = chunks * (t + 1) / nt * CHUNK;
        FLUSH_BEGIN;
        fn(args, g0 < total ? g0 : total, g1 < total ? g1 : total);
        FLUSH_END;
    }
}

#if defined(PYNN_ISA_avx512)
#include <immintrin.h>
#endif

#define REAL float
#define SFX f32
#define REAL_MIN FLT_MIN
#define REAL_EPSILON FLT_EPSILON
#define OPTIM_VECTOR_F32 /* the divider-free Adam of optim_tmpl.h, on AVX-512 */
#include "optim_tmpl.h"
#undef OPTIM_VECTOR_F32
#undef REAL
#undef SFX
#undef REAL_MIN
#undef REAL_EPSILON

#define REAL double
#define SFX f64
#define REAL_MIN DBL_MIN
#define REAL_EPSILON DBL_EPSILON
#include "optim_tmpl.h"
#undef REAL
#undef SFX
#undef REAL_MIN
#undef REAL_EPSILON

#if PYNN_ISA_generic
#define SGD_ARGS(T)                                                                        \
    (T *const *param, T *const *momentum_buffer, const T *const *grad, double lr,          \
     double momentum, double dampening, int nesterov, double weight_decay, int first_step, \
     const int64_t *n, int64_t count, int nthreads)
#define ADAM_ARGS(T)                                                                       \
    (T *const *param, T *const *exp_avg, T *const *exp_avg_sq, T *const *max_exp_avg_sq,   \
     const T *const *grad, int64_t step, double lr, double beta1, double beta2, double eps, \
     double weight_decay, int decoupled_weight_decay, const int64_t *n, int64_t count,     \
     int nthreads)
#define RMSPROP_ARGS(T)                                                                    \
    (T *const *param, T *const *square_avg, T *const *momentum_buffer, T *const *grad_avg,  \
     const T *const *grad, double lr, double alpha, double eps, double weight_decay,       \
     double momentum, const int64_t *n, int64_t count, int nthreads)

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
              first_step, n, count, nthreads);
}

pynn_status pynn_sgd_update_f64 SGD_ARGS(double)
{
    pynn_status (*fn) SGD_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_sgd_update_f64);
    return fn(param, momentum_buffer, grad, lr, momentum, dampening, nesterov, weight_decay,
              first_step, n, count, nthreads);
}

pynn_status pynn_adam_update_f32 ADAM_ARGS(float)
{
    pynn_status (*fn) ADAM_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_adam_update_f32);
    return fn(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, decoupled_weight_decay, n, count, nthreads);
}

pynn_status pynn_adam_update_f64 ADAM_ARGS(double)
{
    pynn_status (*fn) ADAM_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_adam_update_f64);
    return fn(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, decoupled_weight_decay, n, count, nthreads);
}

pynn_status pynn_rmsprop_update_f32 RMSPROP_ARGS(float)
{
    pynn_status (*fn) RMSPROP_ARGS(float);
    PYNN_SELECT_ISA(fn, pynn_rmsprop_update_f32);
    return fn(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, eps, weight_decay,
              momentum, n, count, nthreads);
}

pynn_status pynn_rmsprop_update_f64 RMSPROP_ARGS(double)
{
    pynn_status (*fn) RMSPROP_ARGS(double);
    PYNN_SELECT_ISA(fn, pynn_rmsprop_update_f64);
    return fn(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, eps, weight_decay,
              momentum, n, count, nthreads);
}
#endif
