/* Helpers for kernel files compiled once per ISA (the MULTI sources in CMakeLists.txt).
 *
 * The build defines exactly one of PYNN_ISA_generic, PYNN_ISA_avx2, PYNN_ISA_avx512 for
 * such a file. PYNN_ISA_FN(name) gives the per-ISA symbol name (name_generic, ...), and
 * the dispatchers, which must exist once, go under `#if PYNN_ISA_generic`.
 *
 *   static void relu_f32(...)           -- written once, in portable C
 *   void PYNN_ISA_FN(pynn_relu_f32)(...) -- the per-ISA entry point
 *   #if PYNN_ISA_generic
 *   PYNN_DECLARE_ISA_VARIANTS(void, pynn_relu_f32, (...));
 *   ... switch (pynn_cpu_isa()) picks one ...
 *   #endif
 */
#ifndef PYNN_ISA_H
#define PYNN_ISA_H

#include "pynn/pynn.h"

#define PYNN_CAT_(a, b) a##_##b
#define PYNN_CAT(a, b) PYNN_CAT_(a, b)

#if defined(PYNN_ISA_avx512)
#define PYNN_ISA_SUFFIX avx512
#elif defined(PYNN_ISA_avx2)
#define PYNN_ISA_SUFFIX avx2
#else
#ifndef PYNN_ISA_generic
#define PYNN_ISA_generic 1
#endif
#define PYNN_ISA_SUFFIX generic
#endif

#define PYNN_ISA_FN(name) PYNN_CAT(name, PYNN_ISA_SUFFIX)

/* Declares name_generic, and name_avx2/name_avx512 on x86 builds. */
#ifdef PYNN_X86
#define PYNN_DECLARE_ISA_VARIANTS(ret, name, args) \
    ret name##_generic args;                       \
    ret name##_avx2 args;                          \
    ret name##_avx512 args
/* Picks the variant for the ISA in force: PYNN_SELECT_ISA(fnptr, name). */
#define PYNN_SELECT_ISA(var, name)                         \
    do {                                                   \
        switch (pynn_cpu_isa()) {                          \
        case PYNN_ISA_AVX512: var = name##_avx512; break;  \
        case PYNN_ISA_AVX2: var = name##_avx2; break;      \
        default: var = name##_generic; break;              \
        }                                                  \
    } while (0)
#else
#define PYNN_DECLARE_ISA_VARIANTS(ret, name, args) ret name##_generic args
#define PYNN_SELECT_ISA(var, name) do { var = name##_generic; } while (0)
#endif

#if defined(__GNUC__)
#define PYNN_RESTRICT __restrict__
#define PYNN_INLINE static inline __attribute__((always_inline))
#else
#define PYNN_RESTRICT
#define PYNN_INLINE static inline
#endif

#endif
