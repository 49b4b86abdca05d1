/* Portable packing of GEMM operands into micro-panels (kernel.h describes the layout).
 *
 * pack_copy moves contiguous runs and zero-fills the padding; pack_trans walks the k
 * direction of w source rows at once, so that its writes are sequential and each source
 * cache line is used w times while it is hot. ISA files may supply faster versions of
 * pack_trans through the table in config.c; they must produce the same bytes.
 */
#include <string.h>

#include "gemm/kernel.h"

void gemm_pack_copy_f32(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k, int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int64_t p = 0; p < k; p++) {
        memcpy(dst + p * w, src + p * ld, (size_t)mn * sizeof(float));
        for (int64_t x = mn; x < w; x++)
            dst[p * w + x] = 0.0f;
    }
}

void gemm_pack_trans_f32(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k, int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int64_t p = 0; p < k; p++) {
        for (int64_t x = 0; x < mn; x++)
            dst[p * w + x] = src[x * ld + p];
        for (int64_t x = mn; x < w; x++)
            dst[p * w + x] = 0.0f;
    }
}

void gemm_pack_copy_f64(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k, int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int64_t p = 0; p < k; p++) {
        memcpy(dst + p * w, src + p * ld, (size_t)mn * sizeof(double));
        for (int64_t x = mn; x < w; x++)
            dst[p * w + x] = 0.0;
    }
}

void gemm_pack_trans_f64(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k, int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int64_t p = 0; p < k; p++) {
        for (int64_t x = 0; x < mn; x++)
            dst[p * w + x] = src[x * ld + p];
        for (int64_t x = mn; x < w; x++)
            dst[p * w + x] = 0.0;
    }
}
