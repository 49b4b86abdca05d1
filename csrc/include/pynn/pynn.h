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

#ifdef __cplusplus
}
#endif
#endif
