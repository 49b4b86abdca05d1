/* Internal to csrc/gemm: the contract between the portable driver (gemm.c), the packing
 * routines and the per-ISA micro-kernels, and the per-ISA table of tile and block sizes
 * (config.c).
 *
 * The driver works on untyped pointers and element sizes; everything that depends on
 * the element type (packing, micro-kernel, activation) comes from the table, so one
 * driver serves float and double on every ISA.
 */
#ifndef PYNN_GEMM_KERNEL_H
#define PYNN_GEMM_KERNEL_H

#include "isa.h"

/* What a micro-kernel does with a finished k block of sums s[i][j] (tile row i, column j):
 *   z = alpha * s                 (alpha == 1: z = s exactly)
 *   z = z + beta * C              (beta == 0: C is never read, it may hold NaN;
 *                                  beta == 1: a plain add; else one fused multiply-add
 *                                  on ISAs that have FMA)
 *   z = z + bias                  (bias != NULL: bias[j], or bias[i] when transposed)
 *   C = z
 * where C is c[i*ldc + j], or c[j*ldc + i] when `transpose` is set: the tile then holds a
 * block of C^T, as when the driver computes C^T = op(B)^T op(A)^T. Either way each element
 * goes through the same operations. The driver passes the caller's beta on the first k
 * block, 1 on the later ones, and the bias on the last one only, so each element's
 * arithmetic is fixed by the k blocking. */
typedef struct {
    double alpha, beta;
    const void *bias;
    int transpose;
} gemm_epilogue;

/* An MR x NR tile (of C, or of C^T: see gemm_epilogue), of which the first m rows and n
 * columns are written (1 <= m <= MR, 1 <= n <= NR):
 *   s[i][j] = sum over p < k of A(i, p) * B(p, j),  A(i, p) = a[i*rs_a + p*cs_a],
 *                                                 B(p, j) = b[p*rs_b + j]
 * Each s[i][j] is one chain of fused multiply-adds (multiply then add on ISAs without FMA)
 * in increasing p, starting from zero: the same bits whatever the tile, the edge, the
 * strides or the thread, which is what makes GEMM deterministic. Either rs_a or cs_a is 1
 * (a packed or transposed panel: rs_a == 1; rows read in place: cs_a == 1). The kernel
 * reads the rows i < round_up(m, mr_unit) of A and the columns j < round_up(n, nr_unit)
 * of B (gemm_arch): the driver pads or packs edge panels to that. */
typedef void (*gemm_ukernel)(int64_t k, const void *a, int64_t rs_a, int64_t cs_a,
                             const void *b, int64_t rs_b, void *c, int64_t ldc, int m, int n,
                             const gemm_epilogue *ep);

/* Rows of C from dot products, for op(A) = A and op(B) = B^T with A and B row-major (both
 * contiguous along k) and C narrower than a vector (n <= dot_n of gemm_arch): a layer's
 * forward pass x @ w.T with few outputs, where a tile of C would be mostly padding and
 * packing w.T would transpose it. For i < m, j < n:
 *   s[i][j] = sum over p < k of a[i*lda + p] * b[j*ldb + p]
 * summed in vector lanes (p modulo the lanes, each a chain of FMAs in increasing p), the
 * lanes then added in a fixed order: the bits depend on k alone (and the ISA), never on m
 * or on which rows a call gets. Then the epilogue of gemm_epilogue (not transposed). */
typedef void (*gemm_dotkernel)(int64_t k, const void *a, int64_t lda, const void *b,
                               int64_t ldb, void *c, int64_t ldc, int m, int n,
                               const gemm_epilogue *ep);

/* Packing one micro-panel of width w (MR for A, NR for B; less for an edge panel):
 *   dst[p*w + x] = X(x, p) for x < mn, p < k;  0 for mn <= x < w
 * where X(x, p) is A(x, p) for an A panel and B(p, x) for a B panel. pack_copy reads an
 * operand whose x direction is contiguous (X(x, p) = src[p*ld + x]: A stored transposed,
 * B as is); pack_trans one whose p direction is (X(x, p) = src[x*ld + p]: A as is, B
 * stored transposed), transposing as it goes. */
typedef void (*gemm_pack)(void *dst, const void *src, int64_t ld, int64_t mn, int64_t k, int w);

/* Applies an activation in place to a contiguous run (pynn_act_apply_*, csrc/act.h). */
typedef void (*gemm_act)(void *x, int64_t n, pynn_act act, double negative_slope);

/* One row of the table in config.c: an ISA's kernels for one element type. */
typedef struct {
    size_t elsize;
    int mr, nr;           /* micro-tile */
    int mr_unit, nr_unit; /* edge tiles are computed in multiples of these (see above) */
    int kc;               /* longest k block; the blocks of a given k are all equal */
    int mc;               /* rows of packed A per block (L3) */
    int nc;               /* columns of packed B per block (L2), a multiple of nr */
    gemm_ukernel ukernel;
    gemm_pack pack_copy, pack_trans;
    gemm_act act;
    gemm_dotkernel dot;   /* NULL where the ISA has none */
    int dot_n;            /* the widest C the dot kernel takes */
} gemm_arch;

/* The table row for the ISA in force (pynn_cpu_isa()). */
const gemm_arch *gemm_arch_f32(void);
const gemm_arch *gemm_arch_f64(void);

/* Micro-kernels, named type_isa_MRxNR, with the signature of gemm_ukernel. */
#define GEMM_UKERNEL_ARGS int64_t, const void *, int64_t, int64_t, const void *, int64_t, \
                          void *, int64_t, int, int, const gemm_epilogue *
void sgemm_generic_4x8(GEMM_UKERNEL_ARGS);
void dgemm_generic_4x4(GEMM_UKERNEL_ARGS);
#ifdef PYNN_X86
void sgemm_avx2_6x16(GEMM_UKERNEL_ARGS);
void dgemm_avx2_6x8(GEMM_UKERNEL_ARGS);
void sgemm_avx512_12x32(GEMM_UKERNEL_ARGS);
void dgemm_avx512_12x16(GEMM_UKERNEL_ARGS);
#define GEMM_DOT_ARGS int64_t, const void *, int64_t, const void *, int64_t, void *, int64_t, \
                      int, int, const gemm_epilogue *
void sgemm_avx512_dot(GEMM_DOT_ARGS);
void dgemm_avx512_dot(GEMM_DOT_ARGS);
#endif

/* Packing routines, with the signature of gemm_pack: portable ones (pack.c), and faster
 * ones (kernel_avx2.c, kernel_avx512.c) that write the same bytes. */
#define GEMM_PACK_ARGS void *, const void *, int64_t, int64_t, int64_t, int
void gemm_pack_copy_f32(GEMM_PACK_ARGS);
void gemm_pack_trans_f32(GEMM_PACK_ARGS);
void gemm_pack_copy_f64(GEMM_PACK_ARGS);
void gemm_pack_trans_f64(GEMM_PACK_ARGS);
#ifdef PYNN_X86
void gemm_pack_copy_f32_avx2(GEMM_PACK_ARGS);
void gemm_pack_trans_f32_avx2(GEMM_PACK_ARGS);
void gemm_pack_copy_f64_avx2(GEMM_PACK_ARGS);
void gemm_pack_trans_f64_avx2(GEMM_PACK_ARGS);
void gemm_pack_copy_f32_avx512(GEMM_PACK_ARGS);
void gemm_pack_trans_f32_avx512(GEMM_PACK_ARGS);
void gemm_pack_copy_f64_avx512(GEMM_PACK_ARGS);
void gemm_pack_trans_f64_avx512(GEMM_PACK_ARGS);
#endif

#endif
