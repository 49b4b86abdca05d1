/* Activations, forward and backward: relu, leaky_relu, sigmoid, tanh, silu, gelu (erf and
 * tanh forms), over flat arrays.
 *
 * Compiled once per ISA (a MULTI source): the loops are plain C over the branch-free
 * functions of vmath.h, which gcc and clang vectorise for whatever -m flags the file is
 * built with (16 floats a zmm register in the avx512 build). One loop per activation, so
 * that the choice of activation is made once per call, not per element. The avx512 build
 * hands the float loops of the smooth activations to eltwise_avx512.c, which computes
 * these formulas with fewer instructions than gcc finds. The dispatchers at the end exist
 * once, in the generic build. Every element is computed the same way whatever the thread
 * count, so results are bitwise identical at any `nthreads`.
 *
 * Semantics follow PyTorch: relu(NaN) = NaN, relu'(0) = 0, leaky_relu'(0) = the slope,
 * relu' and leaky_relu' of NaN take the "not positive" branch of their comparison as
 * torch's kernels do (relu': dy, leaky': slope * dy). At +-inf silu, gelu and their
 * derivatives give their limits, where torch's x * 0 gives NaN for some of them.
 * Outputs may be the same array as an input (in place); other overlaps are not allowed:
 * element i is read before it is written, and gcc's run-time alias check lets
 * identical pointers take the vector loop.
 */
#include "act.h"
#include "isa.h"
#include "vmath.h"
#if PYNN_ISA_avx512
#include "eltwise_avx512.h"
#endif

#include <float.h>
#include <string.h>

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif


/* x limited to [-limit, limit]; NaN stays NaN (both comparisons are false) */
PYNN_INLINE float clamp_f32(float x, float limit)
{
    x = x > limit ? limit : x;
    return x < -limit ? -limit : x;
}

PYNN_INLINE double clamp_f64(double x, double limit)
{
    x = x > limit ? limit : x;
    return x < -limit ? -limit : x;
}

PYNN_INLINE float above_minus_inf_f32(float x) { return x < -FLT_MAX ? -FLT_MAX : x; }
PYNN_INLINE double above_minus_inf_f64(double x) { return x < -DBL_MAX ? -DBL_MAX : x; }

/* ---- float: one element -------------------------------------------------------------- */
PYNN_INLINE float relu_f32(float x) { return x < 0.0f ? 0.0f : x; }
PYNN_INLINE float leaky_relu_f32(float x, float slope) { return x > 0.0f ? x : x * slope; }

/* x * sigmoid(x) with -inf raised to -FLT_MAX, so silu(-inf) is its limit 0, not
 * -inf * 0 */
PYNN_INLINE float silu_f32(float x)
{
    return above_minus_inf_f32(x) * vm_sigmoid_f32(x);
}

/* 0.5*x*(1 + tanh(w)) = x*sigmoid(2w): the sigmoid form does not cancel for x < 0 */
PYNN_INLINE float gelu_tanh_f32(float x)
{
    const float w2 = (float)GELU_TANH_2K * (x + (float)GELU_TANH_C * (x * x * x));
    return above_minus_inf_f32(x) * vm_sigmoid_f32(w2);
}

PYNN_INLINE float relu_grad_f32(float dy, float x) { return x <= 0.0f ? 0.0f : dy; }
PYNN_INLINE float leaky_relu_grad_f32(float dy, float x, float slope)
{
    return x > 0.0f ? dy : dy * slope;
}

/* sigmoid' = s(1-s) and tanh'(x) = 4 s(2x) (1 - s(2x)), with 1-s computed directly:
 * from the input these keep relative accuracy where 1 - y*y would cancel */
PYNN_INLINE float sigmoid_grad_f32(float dy, float x)
{
    float sc;
    const float s = vm_sigmoid2_f32(x, &sc);
    return dy * (s * sc);
}

PYNN_INLINE float tanh_grad_f32(float dy, float x)
{
    float sc;
    const float s = vm_sigmoid2_f32(2.0f * x, &sc);
    return dy * (4.0f * (s * sc));
}

/* silu' = s (1 + x (1 - s)) */
PYNN_INLINE float silu_grad_f32(float dy, float x)
{
    float sc;
    x = clamp_f32(x, GRAD_CLAMP);
    const float s = vm_sigmoid2_f32(x, &sc);
    return dy * (s * (1.0f + x * sc));
}

/* d/dx x s(2w) = s (1 + 2x (1 - s) w'), w' = k (1 + 3c x^2) */
PYNN_INLINE float gelu_tanh_grad_f32(float dy, float x)
{
    x = clamp_f32(x, GRAD_CLAMP);
    const float x2 = x * x;
    const float w2 = (float)GELU_TANH_2K * (x + (float)GELU_TANH_C * (x2 * x));
    const float dw2 = (float)GELU_TANH_2K * (1.0f + (float)(3.0 * GELU_TANH_C) * x2);
    float sc;
    const float s = vm_sigmoid2_f32(w2, &sc);
    return dy * (s * (1.0f + x * sc * dw2));
}

/* ---- double: one element ------------------------------------------------------------- */
PYNN_INLINE double relu_f64(double x) { return x < 0.0 ? 0.0 : x; }
PYNN_INLINE double leaky_relu_f64(double x, double slope) { return x > 0.0 ? x : x * slope; }
PYNN_INLINE double silu_f64(double x) { return above_minus_inf_f64(x) * vm_sigmoid_f64(x); }

PYNN_INLINE double gelu_tanh_f64(double x)
{
    const double w2 = GELU_TANH_2K * (x + GELU_TANH_C * (x * x * x));
    return above_minus_inf_f64(x) * vm_sigmoid_f64(w2);
}

PYNN_INLINE double relu_grad_f64(double dy, double x) { return x <= 0.0 ? 0.0 : dy; }
PYNN_INLINE double leaky_relu_grad_f64(double dy, double x, double slope)
{
    return x > 0.0 ? dy : dy * slope;
}

PYNN_INLINE double sigmoid_grad_f64(double dy, double x)
{
    double sc;
    const double s = vm_sigmoid2_f64(x, &sc);
    return dy * (s * sc);
}

PYNN_INLINE double tanh_grad_f64(double dy, double x)
{
    double sc;
    const double s = vm_sigmoid2_f64(2.0 * x, &sc);
    return dy * (4.0 * (s * sc));
}

PYNN_INLINE double silu_grad_f64(double dy, double x)
{
    double sc;
    x = clamp_f64(x, GRAD_CLAMP);
    const double s = vm_sigmoid2_f64(x, &sc);
    return dy * (s * (1.0 + x * sc));
}

PYNN_INLINE double gelu_tanh_grad_f64(double dy, double x)
{
    x = clamp_f64(x, GRAD_CLAMP);
    const double x2 = x * x;
    const double w2 = GELU_TANH_2K * (x + GELU_TANH_C * (x2 * x));
    const double dw2 = GELU_TANH_2K * (1.0 + 3.0 * GELU_TANH_C * x2);
    double sc;
    const double s = vm_sigmoid2_f64(w2, &sc);
    return dy * (s * (1.0 + x * sc * dw2));
}

/* ---- serial loops and the per-ISA entry points ---------------------------------------------
 * Written once for a float type T with suffix S (f32, f64), defined twice below.
 *
 * forward_S, backward_S: one loop per activation. gcc ends a vectorised loop with a scalar
 * loop over the last few elements, and where the C has a select (x < 0 ? d : 1 - d) it may
 * contract a*b + c into an FMA there but not in the vector body, which computes both sides.
 * So that an element's result does not depend on where it falls, the entry points run the
 * loops over a multiple of TAIL elements (64 bytes, a multiple of every vector width here)
 * and the rest through a zero-padded copy. ZMM_FORWARD_S / ZMM_BACKWARD_S hand a call to
 * eltwise_avx512.c where it has the activation (float in the avx512 build only). */
#define TAIL(T) (64 / (int64_t)sizeof(T))

#if PYNN_ISA_avx512
#define ZMM_FORWARD_f32(y, x, n, act) pynn_eltwise_zmm_forward_f32(y, x, n, act)
#define ZMM_BACKWARD_f32(dx, dy, x, n, act) pynn_eltwise_zmm_backward_f32(dx, dy, x, n, act)
#else
#define ZMM_FORWARD_f32(y, x, n, act) 0
#define ZMM_BACKWARD_f32(dx, dy, x, n, act) 0
#endif
#define ZMM_FORWARD_f64(y, x, n, act) 0
#define ZMM_BACKWARD_f64(dx, dy, x, n, act) 0

#define ELTWISE_LOOPS(T, S)                                                                \
    /* x, y (n): y = act(x). y may be x. */                                                \
    static NOINLINE void forward_##S(T *y, const T *x, int64_t n, pynn_act act, T slope)   \
    {                                                                                      \
        int64_t i;                                                                         \
        switch (act) {                                                                     \
        case PYNN_ACT_NONE: for (i = 0; i < n; i++) y[i] = x[i]; break;                    \
        case PYNN_ACT_RELU: for (i = 0; i < n; i++) y[i] = relu_##S(x[i]); break;          \
        case PYNN_ACT_LEAKY_RELU:                                                          \
            for (i = 0; i < n; i++) y[i] = leaky_relu_##S(x[i], slope);                    \
            break;                                                                         \
        case PYNN_ACT_SIGMOID: for (i = 0; i < n; i++) y[i] = vm_sigmoid_##S(x[i]); break; \
        case PYNN_ACT_TANH: for (i = 0; i < n; i++) y[i] = vm_tanh_##S(x[i]); break;       \
        case PYNN_ACT_SILU: for (i = 0; i < n; i++) y[i] = silu_##S(x[i]); break;          \
        case PYNN_ACT_GELU: for (i = 0; i < n; i++) y[i] = vm_gelu_##S(x[i]); break;       \
        case PYNN_ACT_GELU_TANH: for (i = 0; i < n; i++) y[i] = gelu_tanh_##S(x[i]); break; \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* dy, x, dx (n): dx = dy * act'(x), x the pre-activation. dx may be dy or x. */       \
    static NOINLINE void backward_##S(T *dx, const T *dy, const T *x, int64_t n,           \
                                      pynn_act act, T slope)                               \
    {                                                                                      \
        int64_t i;                                                                         \
        switch (act) {                                                                     \
        case PYNN_ACT_NONE: for (i = 0; i < n; i++) dx[i] = dy[i]; break;                  \
        case PYNN_ACT_RELU: for (i = 0; i < n; i++) dx[i] = relu_grad_##S(dy[i], x[i]); break; \
        case PYNN_ACT_LEAKY_RELU:                                                          \
            for (i = 0; i < n; i++) dx[i] = leaky_relu_grad_##S(dy[i], x[i], slope);       \
            break;                                                                         \
        case PYNN_ACT_SIGMOID:                                                             \
            for (i = 0; i < n; i++) dx[i] = sigmoid_grad_##S(dy[i], x[i]);                 \
            break;                                                                         \
        case PYNN_ACT_TANH: for (i = 0; i < n; i++) dx[i] = tanh_grad_##S(dy[i], x[i]); break; \
        case PYNN_ACT_SILU: for (i = 0; i < n; i++) dx[i] = silu_grad_##S(dy[i], x[i]); break; \
        case PYNN_ACT_GELU: for (i = 0; i < n; i++) dx[i] = dy[i] * vm_gelu_grad_##S(x[i]); break; \
        case PYNN_ACT_GELU_TANH:                                                           \
            for (i = 0; i < n; i++) dx[i] = gelu_tanh_grad_##S(dy[i], x[i]);               \
            break;                                                                         \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    void PYNN_ISA_FN(pynn_eltwise_forward_##S)(T *y, const T *x, int64_t n, pynn_act act,  \
                                               T slope)                                    \
    {                                                                                      \
        if (ZMM_FORWARD_##S(y, x, n, act))                                                 \
            return;                                                                        \
        const int64_t body = n - n % TAIL(T);                                              \
        forward_##S(y, x, body, act, slope);                                               \
        if (body < n) {                                                                    \
            T xt[TAIL(T)] = {0}, yt[TAIL(T)];                                              \
            memcpy(xt, x + body, (size_t)(n - body) * sizeof *x);                          \
            forward_##S(yt, xt, TAIL(T), act, slope);                                      \
            memcpy(y + body, yt, (size_t)(n - body) * sizeof *y);                          \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    void PYNN_ISA_FN(pynn_eltwise_backward_##S)(T *dx, const T *dy, const T *x, int64_t n, \
                                                pynn_act act, T slope)                     \
    {                                                                                      \
        if (ZMM_BACKWARD_##S(dx, dy, x, n, act))                                           \
            return;                                                                        \
        const int64_t body = n - n % TAIL(T);                                              \
        backward_##S(dx, dy, x, body, act, slope);                                         \
        if (body < n) {                                                                    \
            T dyt[TAIL(T)] = {0}, xt[TAIL(T)] = {0}, dxt[TAIL(T)];                         \
            memcpy(dyt, dy + body, (size_t)(n - body) * sizeof *dy);                       \
            memcpy(xt, x + body, (size_t)(n - body) * sizeof *x);                          \
            backward_##S(dxt, dyt, xt, TAIL(T), act, slope);                               \
            memcpy(dx + body, dxt, (size_t)(n - body) * sizeof *dx);                       \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* dy, y, dx (n): dx = dy * act'(x) from the output y = act(x); sigmoid: y (1 - y),    \
     * tanh: 1 - y^2 (PyTorch's formulas; callers holding x get better tails from the      \
     * loops above). */                                                                    \
    void PYNN_ISA_FN(pynn_eltwise_backward_output_##S)(T *dx, const T *dy, const T *y,     \
                                                       int64_t n, pynn_act act)            \
    {                                                                                      \
        int64_t i;                                                                         \
        if (act == PYNN_ACT_SIGMOID)                                                       \
            for (i = 0; i < n; i++) dx[i] = dy[i] * (y[i] * ((T)1 - y[i]));                \
        else                                                                               \
            for (i = 0; i < n; i++) dx[i] = dy[i] * ((T)1 - y[i] * y[i]);                  \
    }

ELTWISE_LOOPS(float, f32)
ELTWISE_LOOPS(double, f64)

/* ---- dispatch and threading (once, in the generic build) -------------------------------- */
#if PYNN_ISA_generic

/* Below this many elements per thread a parallel region costs more than it saves. */
#define ELTWISE_MIN_PER_THREAD 32768
/* Threads take whole chunks (a multiple of every vector width), a contiguous run each,
 * in one call of the loop: per-call setup is paid once a thread, not once a chunk. The
 * split depends on the thread count, the results do not: each element is computed alike
 * wherever it falls in a run. */
#define ELTWISE_CHUNK 8192

/* [*lo, *hi): thread t's run of n elements among nt threads */
static void thread_run(int64_t n, int nt, int t, int64_t *lo, int64_t *hi)
{
    const int64_t nchunks = (n + ELTWISE_CHUNK - 1) / ELTWISE_CHUNK;
    *lo = nchunks * t / nt * ELTWISE_CHUNK;
    *hi = nchunks * (t + 1) / nt * ELTWISE_CHUNK;
    *hi = *hi < n ? *hi : n;
}

static int act_valid(pynn_act act)
{
    return (int)act >= (int)PYNN_ACT_NONE && (int)act <= (int)PYNN_ACT_GELU_TANH;
}

/* Runs the ISA variant `fn` over [0, n) on nt threads, thread t over its run: `call` is
 * fn's call on elements [lo, hi). */
#define ELTWISE_RUN(n, nt, call)                                                          \
    do {                                                                                   \
        if ((nt) <= 1) {                                                                   \
            const int64_t lo = 0, hi = (n);                                                \
            call;                                                                          \
            break;                                                                         \
        }                                                                                  \
        int t;                                                                             \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (t = 0; t < (nt); t++) {                                                       \
            int64_t lo, hi;                                                                \
            thread_run((n), (nt), t, &lo, &hi);                                            \
            call;                                                                          \
        }                                                                                  \
    } while (0)

/* The dispatchers for a float type T with suffix S: written once, defined twice below. */
#define ELTWISE_DISPATCH(T, S)                                                             \
    PYNN_DECLARE_ISA_VARIANTS(void, pynn_eltwise_forward_##S,                              \
                              (T *, const T *, int64_t, pynn_act, T));                     \
    PYNN_DECLARE_ISA_VARIANTS(void, pynn_eltwise_backward_##S,                             \
                              (T *, const T *, const T *, int64_t, pynn_act, T));          \
    PYNN_DECLARE_ISA_VARIANTS(void, pynn_eltwise_backward_output_##S,                      \
                              (T *, const T *, const T *, int64_t, pynn_act));             \
                                                                                           \
    void pynn_act_apply_##S(T *y, const T *x, int64_t n, pynn_act act, T negative_slope)   \
    {                                                                                      \
        void (*fn)(T *, const T *, int64_t, pynn_act, T);                                  \
        PYNN_SELECT_ISA(fn, pynn_eltwise_forward_##S);                                     \
        fn(y, x, n, act, negative_slope);                                                  \
    }                                                                                      \
                                                                                           \
    pynn_status pynn_act_forward_##S(T *y, const T *x, pynn_act act, double negative_slope, \
                                     int64_t n, int nthreads)                              \
    {                                                                                      \
        if (!act_valid(act) || n < 0)                                                      \
            return PYNN_ERR_ARG;                                                           \
        void (*fn)(T *, const T *, int64_t, pynn_act, T);                                  \
        PYNN_SELECT_ISA(fn, pynn_eltwise_forward_##S);                                     \
        const int nt = pynn_threads_for(n, ELTWISE_MIN_PER_THREAD, nthreads);              \
        const T slope = (T)negative_slope;                                                 \
        ELTWISE_RUN(n, nt, fn(y + lo, x + lo, hi - lo, act, slope));                       \
        return PYNN_OK;                                                                    \
    }                                                                                      \
                                                                                           \
    pynn_status pynn_act_backward_##S(T *dx, const T *dy, const T *x, pynn_act act,        \
                                      double negative_slope, int64_t n, int nthreads)      \
    {                                                                                      \
        if (!act_valid(act) || n < 0)                                                      \
            return PYNN_ERR_ARG;                                                           \
        void (*fn)(T *, const T *, const T *, int64_t, pynn_act, T);                       \
        PYNN_SELECT_ISA(fn, pynn_eltwise_backward_##S);                                    \
        const int nt = pynn_threads_for(n, ELTWISE_MIN_PER_THREAD, nthreads);              \
        const T slope = (T)negative_slope;                                                 \
        ELTWISE_RUN(n, nt, fn(dx + lo, dy + lo, x + lo, hi - lo, act, slope));             \
        return PYNN_OK;                                                                    \
    }                                                                                      \
                                                                                           \
    pynn_status pynn_act_backward_output_##S(T *dx, const T *dy, const T *y, pynn_act act, \
                                             int64_t n, int nthreads)                      \
    {                                                                                      \
        if ((act != PYNN_ACT_SIGMOID && act != PYNN_ACT_TANH) || n < 0)                    \
            return PYNN_ERR_ARG;                                                           \
        void (*fn)(T *, const T *, const T *, int64_t, pynn_act);                          \
        PYNN_SELECT_ISA(fn, pynn_eltwise_backward_output_##S);                             \
        const int nt = pynn_threads_for(n, ELTWISE_MIN_PER_THREAD, nthreads);              \
        ELTWISE_RUN(n, nt, fn(dx + lo, dy + lo, y + lo, hi - lo, act));                    \
        return PYNN_OK;                                                                    \
    }

ELTWISE_DISPATCH(float, f32)
ELTWISE_DISPATCH(double, f64)

#endif
