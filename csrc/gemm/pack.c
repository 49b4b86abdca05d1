/* Portable packing of GEMM operands into micro-panels (kernel.h describes the layout).
 *
 * pack_copy moves contiguous runs and zero-fills the padding; pack_trans walks the k
 * direction of w source rows at once, so that its writes are sequential and each source
 * cache line is used w times while it is hot. ISA files may supply faster versions of
 * pack_trans through the table in config.c; they must produce the same bytes.
 */
#include <string.h>

#include "gemm/kernel.h"

/* The packing routines for one float type T with suffix S (f32, f64): written once,
 * defined twice below. */
#define GEMM_PACKERS(T, S)                                                                 \
    void gemm_pack_copy_##S(void *dst_, const void *src_, int64_t ld, int64_t mn,         \
                            int64_t k, int w)                                              \
    {                                                                                      \
        T *dst = (T *)dst_;                                                                \
        const T *src = (const T *)src_;                                                    \
        for (int64_t p = 0; p < k; p++) {                                                  \
            memcpy(dst + p * w, src + p * ld, (size_t)mn * sizeof(T));                     \
            for (int64_t x = mn; x < w; x++)                                               \
                dst[p * w + x] = 0;                                                        \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    void gemm_pack_trans_##S(void *dst_, const void *src_, int64_t ld, int64_t mn,        \
                             int64_t k, int w)                                             \
    {                                                                                      \
        T *dst = (T *)dst_;                                                                \
        const T *src = (const T *)src_;                                                    \
        for (int64_t p = 0; p < k; p++) {                                                  \
            for (int64_t x = 0; x < mn; x++)                                               \
                dst[p * w + x] = src[x * ld + p];                                          \
            for (int64_t x = mn; x < w; x++)                                               \
                dst[p * w + x] = 0;                                                        \
        }                                                                                  \
    }

GEMM_PACKERS(float, f32)
GEMM_PACKERS(double, f64)
