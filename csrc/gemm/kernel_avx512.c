/* AVX-512 GEMM micro-kernels and packing (compiled for AVX-512 only; kernel.h has the
 * contract).
 *
 * sgemm 12x32: 12 rows of the tile by two zmm vectors of columns, 24 accumulators. Each
 * step of k loads two vectors of B and broadcasts 12 values of A, so the two FMA ports
 * stay busy while the loads (14 per 24 FMAs) fit the load ports; the other 8 registers
 * hold B, the broadcasts and the epilogue's constants. 14x32, 8x48 and 6x64 measured within
 * a few percent of it on Sapphire Rapids; 12x32 keeps two vectors of B (fewer bytes per
 * step from L2 than 8x48) and fits the common widths (multiples of 32) without an edge.
 * dgemm 12x16 is the same in doubles.
 *
 * The k loop of full tiles, where nearly all the time of a large product goes, is written
 * in assembly (gemm_asm_*); edge tiles and short loops use the intrinsic one.
 *
 * Edges: C is read and written through masks, so a partial tile costs no scalar loop, and
 * an edge tile runs a loop over only the rows (12, 10, 8 or 4) and vectors (2 or 1) it needs.
 * Ten rows have their own loop for the ten outputs of a classifier: the weight gradient of
 * such a layer (10 x 256 x 32, batch 32) took 1.46 us as 12-row tiles, 1.18 as 10-row ones.
 * Every variant performs the same per-element chain of FMAs, so which one runs never
 * changes a bit of the result. Transposed tiles (C^T, see kernel.h) are turned around in
 * registers before the same epilogue.
 */
#include <immintrin.h>

#include "gemm/kernel.h"

/* The lanes below n (n may be negative or above the width). */
PYNN_INLINE __mmask16 mask16(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

PYNN_INLINE __mmask8 mask8(int n)
{
    return n >= 8 ? (__mmask8)0xFF : n <= 0 ? (__mmask8)0 : (__mmask8)((1u << n) - 1);
}

/* The C tile is fetched in two steps: into L2 when the k loop starts (a prefetch into
 * L1 then would be evicted by the B panel streaming through L1 before the epilogue),
 * and into L1 this many steps before the loop ends. A loop of fewer than twice as many
 * steps reads C too soon for a prefetch to help. */
#define PREFETCH_C_STEPS 32

PYNN_INLINE void prefetch_c_l2(const char *c, int64_t ldc_bytes, int m, int64_t row_bytes)
{
    for (int i = 0; i < m; i++) {
        _mm_prefetch(c + i * ldc_bytes, _MM_HINT_T1);
        _mm_prefetch(c + i * ldc_bytes + row_bytes - 1, _MM_HINT_T1);
    }
}

PYNN_INLINE void prefetch_c_l1(const char *c, int64_t ldc_bytes, int m, int64_t row_bytes)
{
    for (int i = 0; i < m; i++) {
        _mm_prefetch(c + i * ldc_bytes, _MM_HINT_T0);
        _mm_prefetch(c + i * ldc_bytes + row_bytes - 1, _MM_HINT_T0);
    }
}

/* ---- the k loop of a full tile, in assembly ---------------------------------------------
 *
 * The intrinsic loop (*_steps below) increments its pointers every step of k, and those
 * integer uops compete with the FMAs for ports 0 and 5: it runs at about 85% of the FMA
 * peak with its data in L1. Unrolled by 4 in C, it makes GCC spill accumulators. This is
 * that loop unrolled by 4 with fixed registers: zmm0-23 the accumulators (tile row i in
 * zmm 2i and 2i+1), zmm24-25 the step's two vectors of B, zmm26-31 the broadcasts of A;
 * the loop alone reaches 90-95% (a whole tile with its epilogue about 85%, or 88% with
 * the packed loop below). Each accumulator is the same chain of FMAs, in the same order, as
 * in the intrinsic loop, so both give the same bits. The sums are stored to acc[12][2]
 * for the intrinsic epilogue; below GEMM_ASM_MIN_STEPS steps that round trip through
 * memory costs more than the unrolling saves.
 *
 * Row i of A is read at q[i / 4] + (i % 4) rs_a, as in the intrinsic loop; a step moves
 * along the rows by cs_a elements, 1 (A read in place) or 12 (a packed panel), which the
 * addresses carry as constants: `d1`..`d4` are 1..4 steps in bytes. `x` and `s` are the
 * instruction suffixes of the element type (ps and ss, or pd and sd). A packed panel is
 * read (GEMM_PANEL) with every row at a displacement from one pointer:
 * with no index register in the broadcasts' addresses, a tile over panels in L1 and L2
 * runs about 4% faster (85% -> 88% of the FMA peak in a C harness timing 16 tiles of
 * 12 x 384 x 32; the whole of a 2048^3 product gains about 1%, where A's panels coming
 * from L3 and C's rows from memory cost more than the loop's instructions). */
#define GEMM_ASM_MIN_STEPS 32

/* zmm r = A(i, p + u) for i = 4 q + j, at byte offset d (u steps) from row i: rows read
 * in place (GEMM_ROWS) or a packed panel (GEMM_PANEL, row i at i elements of `e` bytes
 * from a0). Each addressing comes with the pointer moves of `d` bytes (GEMM_*_MOVE). */
#define GEMM_ROWS(s, e, d, q, j, r) "vbroadcast" s " " d GEMM_ROW_##j(q) ", %%zmm" #r "\n\t"
#define GEMM_ROW_0(q) "(%[a" #q "])"
#define GEMM_ROW_1(q) "(%[a" #q "],%[rsa])"
#define GEMM_ROW_2(q) "(%[a" #q "],%[rsa],2)"
#define GEMM_ROW_3(q) "(%[a" #q "],%[rsa3])"
#define GEMM_ROWS_MOVE(d) "add $" d ", %[a0]\n\t" "add $" d ", %[a1]\n\t" "add $" d ", %[a2]\n\t"
#define GEMM_PANEL(s, e, d, q, j, r) \
    "vbroadcast" s " " d "+(4*" #q "+" #j ")*" e "(%[a0]), %%zmm" #r "\n\t"
#define GEMM_PANEL_MOVE(d) "add $" d ", %[a0]\n\t"
#define GEMM_FMA2(x, r, c0, c1)                             \
    "vfmadd231" x " %%zmm24, %%zmm" #r ", %%zmm" #c0 "\n\t" \
    "vfmadd231" x " %%zmm25, %%zmm" #r ", %%zmm" #c1 "\n\t"
/* One step: the row of B at address `brow`, A at `d` bytes into the rows, addressed by
 * `A` (GEMM_ROWS or GEMM_PANEL). */
#define GEMM_STEP(x, s, e, A, brow, d)                                                    \
    "vmovups " brow ", %%zmm24\n\t"                                                       \
    "vmovups 64" brow ", %%zmm25\n\t"                                                     \
    A(s, e, d, 0, 0, 26) A(s, e, d, 0, 1, 27)                                             \
    GEMM_FMA2(x, 26, 0, 1) GEMM_FMA2(x, 27, 2, 3)                                         \
    A(s, e, d, 0, 2, 28) A(s, e, d, 0, 3, 29)                                             \
    GEMM_FMA2(x, 28, 4, 5) GEMM_FMA2(x, 29, 6, 7)                                         \
    A(s, e, d, 1, 0, 30) A(s, e, d, 1, 1, 31)                                             \
    GEMM_FMA2(x, 30, 8, 9) GEMM_FMA2(x, 31, 10, 11)                                       \
    A(s, e, d, 1, 2, 26) A(s, e, d, 1, 3, 27)                                             \
    GEMM_FMA2(x, 26, 12, 13) GEMM_FMA2(x, 27, 14, 15)                                     \
    A(s, e, d, 2, 0, 28) A(s, e, d, 2, 1, 29)                                             \
    GEMM_FMA2(x, 28, 16, 17) GEMM_FMA2(x, 29, 18, 19)                                     \
    A(s, e, d, 2, 2, 30) A(s, e, d, 2, 3, 31)                                             \
    GEMM_FMA2(x, 30, 20, 21) GEMM_FMA2(x, 31, 22, 23)
#define GEMM_ZERO4(a, b, c, d)                                                            \
    "vmovaps %%zmm0, %%zmm" #a "\n\t" "vmovaps %%zmm0, %%zmm" #b "\n\t"                 \
    "vmovaps %%zmm0, %%zmm" #c "\n\t" "vmovaps %%zmm0, %%zmm" #d "\n\t"
#define GEMM_SAVE4(a, b, c, d)                                                            \
    "vmovups %%zmm" #a ", 64*" #a "(%[acc])\n\t" "vmovups %%zmm" #b ", 64*" #b "(%[acc])\n\t" \
    "vmovups %%zmm" #c ", 64*" #c "(%[acc])\n\t" "vmovups %%zmm" #d ", 64*" #d "(%[acc])\n\t"
/* The loop: `quads` times 4 steps, then `rest` single steps; A is GEMM_ROWS or GEMM_PANEL. */
#define GEMM_LOOP(x, s, e, A, d1, d2, d3, d4)                                             \
    "vxorps %%xmm0, %%xmm0, %%xmm0\n\t"                                                   \
    "vmovaps %%zmm0, %%zmm1\n\t" "vmovaps %%zmm0, %%zmm2\n\t" "vmovaps %%zmm0, %%zmm3\n\t" \
    GEMM_ZERO4(4, 5, 6, 7) GEMM_ZERO4(8, 9, 10, 11) GEMM_ZERO4(12, 13, 14, 15)            \
    GEMM_ZERO4(16, 17, 18, 19) GEMM_ZERO4(20, 21, 22, 23)                                 \
    "test %[quads], %[quads]\n\t"                                                         \
    "jz 2f\n\t"                                                                           \
    ".p2align 5\n"                                                                        \
    "1:\n\t"                                                                              \
    GEMM_STEP(x, s, e, A, "(%[b])", "")                                                   \
    GEMM_STEP(x, s, e, A, "(%[b],%[rsb])", d1)                                            \
    GEMM_STEP(x, s, e, A, "(%[b],%[rsb],2)", d2)                                          \
    GEMM_STEP(x, s, e, A, "(%[b],%[rsb3])", d3)                                           \
    "lea (%[b],%[rsb],4), %[b]\n\t"                                                       \
    A##_MOVE(d4)                                                                          \
    "dec %[quads]\n\t"                                                                    \
    "jnz 1b\n"                                                                            \
    "2:\n\t"                                                                              \
    "test %[rest], %[rest]\n\t"                                                           \
    "jz 4f\n"                                                                             \
    "3:\n\t"                                                                              \
    GEMM_STEP(x, s, e, A, "(%[b])", "")                                                   \
    "add %[rsb], %[b]\n\t"                                                                \
    A##_MOVE(d1)                                                                          \
    "dec %[rest]\n\t"                                                                     \
    "jnz 3b\n"                                                                            \
    "4:\n\t"                                                                              \
    GEMM_SAVE4(0, 1, 2, 3) GEMM_SAVE4(4, 5, 6, 7) GEMM_SAVE4(8, 9, 10, 11)                \
    GEMM_SAVE4(12, 13, 14, 15) GEMM_SAVE4(16, 17, 18, 19) GEMM_SAVE4(20, 21, 22, 23)
#define GEMM_OPERANDS                                                                     \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [b] "+r"(b), [quads] "+r"(quads),      \
      [rest] "+r"(rest)                                                                   \
    : [rsa] "r"(rsa), [rsa3] "r"(3 * rsa), [rsb] "r"(rsb), [rsb3] "r"(3 * rsb),           \
      [acc] "r"(acc)                                                                      \
    : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",   \
      "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16",     \
      "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",   \
      "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"

/* acc[i][v] = sum over p < k of A(i, p) * B(p, 16v..16v+15); cs_a is 1 or 12. */
PYNN_INLINE void gemm_asm_f32(int64_t k, const float *a, int64_t rs_a, int64_t cs_a,
                              const float *b, int64_t rs_b, __m512 acc[12][2])
{
    const float *a0 = a, *a1 = a + 4 * rs_a, *a2 = a + 8 * rs_a;
    const int64_t rsa = rs_a * (int64_t)sizeof(float), rsb = rs_b * (int64_t)sizeof(float);
    int64_t quads = k / 4, rest = k % 4;
    if (cs_a == 1)
        __asm__ volatile(GEMM_LOOP("ps", "ss", "4", GEMM_ROWS, "4", "8", "12", "16")
                         GEMM_OPERANDS);
    else
        __asm__ volatile(GEMM_LOOP("ps", "ss", "4", GEMM_PANEL, "48", "96", "144", "192")
                         GEMM_OPERANDS);
}

/* acc[i][v] = sum over p < k of A(i, p) * B(p, 8v..8v+7); cs_a is 1 or 12. */
PYNN_INLINE void gemm_asm_f64(int64_t k, const double *a, int64_t rs_a, int64_t cs_a,
                              const double *b, int64_t rs_b, __m512d acc[12][2])
{
    const double *a0 = a, *a1 = a + 4 * rs_a, *a2 = a + 8 * rs_a;
    const int64_t rsa = rs_a * (int64_t)sizeof(double), rsb = rs_b * (int64_t)sizeof(double);
    int64_t quads = k / 4, rest = k % 4;
    if (cs_a == 1)
        __asm__ volatile(GEMM_LOOP("pd", "sd", "8", GEMM_ROWS, "8", "16", "24", "32")
                         GEMM_OPERANDS);
    else
        __asm__ volatile(GEMM_LOOP("pd", "sd", "8", GEMM_PANEL, "96", "192", "288", "384")
                         GEMM_OPERANDS);
}

/* r[i] holds row i of a 16 x 16 block; afterwards r[j] holds column j. */
PYNN_INLINE void transpose16_ps(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

/* r[i] holds row i of an 8 x 8 block; afterwards r[j] holds column j. */
PYNN_INLINE void transpose8_pd(__m512d r[8])
{
    __m512d t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x88);
        r[i + 1] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0x88);
        r[i + 2] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xDD);
        r[i + 3] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f64x2(r[i], r[i + 4], 0xDD);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}

/* ---- the tiles: float 12 x 32, double 12 x 16 ------------------------------------------ */

/* The epilogue for a transposed tile: tile column j is row j of C, tile row i its
 * column i. The tile is transposed in registers, 16 x 16 at a time, so that the stores
 * are row segments of C, as in the straight epilogue (sgemm_store, kernel_avx512_tmpl.h). */
PYNN_INLINE void sgemm_store_t(float *c, int64_t ldc, int m, int n, __m512 acc[12][2],
                               const int R, const int V, const gemm_epilogue *ep)
{
    const __mmask16 cols = mask16(m);
    const __m512 alpha = _mm512_set1_ps((float)ep->alpha), beta = _mm512_set1_ps((float)ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const float *bias = (const float *)ep->bias;
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(cols, bias) : _mm512_setzero_ps();
    _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)
            r[i] = i < R ? acc[i][v] : _mm512_setzero_ps();
        transpose16_ps(r);
        for (int l = 0; l < 16 && 16 * v + l < n; l++) {
            float *cr = c + (16 * v + l) * ldc;
            __m512 z = r[l];
            if (scale)
                z = _mm512_mul_ps(alpha, z);
            if (add_c) {
                const __m512 cold = _mm512_maskz_loadu_ps(cols, cr);
                z = fma_c ? _mm512_fmadd_ps(beta, cold, z) : _mm512_add_ps(z, cold);
            }
            if (bias)
                z = _mm512_add_ps(z, bv);
            _mm512_mask_storeu_ps(cr, cols, z);
        }
    }
}

/* The epilogue for a transposed tile (see sgemm_store_t), 8 x 8 at a time: C row j gets
 * tile rows 0..7 and 8..11 of tile column j. */
PYNN_INLINE void dgemm_store_t(double *c, int64_t ldc, int m, int n, __m512d acc[12][2],
                               const int R, const int V, const gemm_epilogue *ep)
{
    const __m512d alpha = _mm512_set1_pd(ep->alpha), beta = _mm512_set1_pd(ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const double *bias = (const double *)ep->bias;
    _Pragma("GCC unroll 2") for (int g = 0; g < (R + 7) / 8; g++) {
        const __mmask8 cols = mask8(m - 8 * g);
        const __m512d bv = bias ? _mm512_maskz_loadu_pd(cols, bias + 8 * g) : _mm512_setzero_pd();
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            __m512d r[8];
            _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
                r[i] = 8 * g + i < R ? acc[8 * g + i][v] : _mm512_setzero_pd();
            transpose8_pd(r);
            for (int l = 0; l < 8 && 8 * v + l < n; l++) {
                double *cr = c + (8 * v + l) * ldc + 8 * g;
                __m512d z = r[l];
                if (scale)
                    z = _mm512_mul_pd(alpha, z);
                if (add_c) {
                    const __m512d cold = _mm512_maskz_loadu_pd(cols, cr);
                    z = fma_c ? _mm512_fmadd_pd(beta, cold, z) : _mm512_add_pd(z, cold);
                }
                if (bias)
                    z = _mm512_add_pd(z, bv);
                _mm512_mask_storeu_pd(cr, cols, z);
            }
        }
    }
}

/* The lanes of v[0..7] summed, into out[0..7], in a tree of shuffles and adds shared by
 * the eight (about three instructions a sum, where reducing each vector alone takes ten).
 * Each sum adds its own vector's lanes in the same order wherever it sits among the eight:
 * halves, then quarters, then within a quarter element 0 + 2 and 1 + 3, then those two. */
PYNN_INLINE void sgemm_hsum8(const __m512 v[8], float out[8])
{
    __m512 h[4], g[2];
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) /* [a.q0+a.q2, a.q1+a.q3, b..] */
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    _Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) /* quarter l: v[4i + l]'s partial */
        g[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
    const __m512 s = _mm512_add_ps(_mm512_unpacklo_ps(g[0], g[1]), _mm512_unpackhi_ps(g[0], g[1]));
    const __m512 t = _mm512_add_ps(s, _mm512_shuffle_ps(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
    float lanes[16];
    _mm512_storeu_ps(lanes, t); /* quarter l: the sums of v[l] and v[l + 4] */
    _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++) {
        out[l] = lanes[4 * l];
        out[l + 4] = lanes[4 * l + 1];
    }
}

/* The same for doubles: halves, then quarters (two doubles), then those two. */
PYNN_INLINE void dgemm_hsum8(const __m512d v[8], double out[8])
{
    __m512d h[4], g[2];
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
        h[i] = _mm512_add_pd(_mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0xEE));
    _Pragma("GCC unroll 2") for (int i = 0; i < 2; i++)
        g[i] = _mm512_add_pd(_mm512_shuffle_f64x2(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f64x2(h[2 * i], h[2 * i + 1], 0xDD));
    const __m512d s = _mm512_add_pd(_mm512_unpacklo_pd(g[0], g[1]), _mm512_unpackhi_pd(g[0], g[1]));
    double lanes[8];
    _mm512_storeu_pd(lanes, s); /* quarter l: the sums of v[l] and v[l + 4] */
    _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++) {
        out[l] = lanes[2 * l];
        out[l + 4] = lanes[2 * l + 1];
    }
}

#define T float
#define VEC __m512
#define L 16
#define MASK __mmask16
#define MASK_OF mask16
#define VOP(op) _mm512_##op##_ps
#define KFN(name) sgemm_##name
#define GEMM_ASM gemm_asm_f32
#define KERNEL sgemm_avx512_12x32
#define DOT_KERNEL sgemm_avx512_dot
#include "gemm/kernel_avx512_tmpl.h"

#define T double
#define VEC __m512d
#define L 8
#define MASK __mmask8
#define MASK_OF mask8
#define VOP(op) _mm512_##op##_pd
#define KFN(name) dgemm_##name
#define GEMM_ASM gemm_asm_f64
#define KERNEL dgemm_avx512_12x16
#define DOT_KERNEL dgemm_avx512_dot
#include "gemm/kernel_avx512_tmpl.h"

/* ---- packing: transposes in registers -------------------------------------------------- */

/* pack_trans of kernel.h: blocks of 16 source rows x 16 k are loaded (masked at the
 * edges, rows past mn read as zero), transposed, and stored as 16 k-rows of the panel. */
void gemm_pack_trans_f32_avx512(void *dst_, const void *src_, int64_t ld, int64_t mn,
                                int64_t k, int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int x0 = 0; x0 < w; x0 += 16) {
        const __mmask16 lanes = mask16(w - x0);
        const int64_t rows = mn - x0;
        for (int64_t p0 = 0; p0 < k; p0 += 16) {
            const int64_t kk = k - p0 < 16 ? k - p0 : 16;
            __m512 r[16];
            if (rows <= 0) {
                for (int i = 0; i < 16; i++)
                    r[i] = _mm512_setzero_ps();
            } else {
                const __mmask16 cols = mask16((int)kk);
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows ? _mm512_maskz_loadu_ps(cols, src + (x0 + i) * ld + p0)
                                    : _mm512_setzero_ps();
                transpose16_ps(r);
            }
            for (int64_t i = 0; i < kk; i++)
                _mm512_mask_storeu_ps(dst + (p0 + i) * w + x0, lanes, r[i]);
        }
    }
}

void gemm_pack_trans_f64_avx512(void *dst_, const void *src_, int64_t ld, int64_t mn,
                                int64_t k, int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int x0 = 0; x0 < w; x0 += 8) {
        const __mmask8 lanes = mask8(w - x0);
        const int64_t rows = mn - x0;
        for (int64_t p0 = 0; p0 < k; p0 += 8) {
            const int64_t kk = k - p0 < 8 ? k - p0 : 8;
            __m512d r[8];
            if (rows <= 0) {
                for (int i = 0; i < 8; i++)
                    r[i] = _mm512_setzero_pd();
            } else {
                const __mmask8 cols = mask8((int)kk);
                for (int i = 0; i < 8; i++)
                    r[i] = i < rows ? _mm512_maskz_loadu_pd(cols, src + (x0 + i) * ld + p0)
                                    : _mm512_setzero_pd();
                transpose8_pd(r);
            }
            for (int64_t i = 0; i < kk; i++)
                _mm512_mask_storeu_pd(dst + (p0 + i) * w + x0, lanes, r[i]);
        }
    }
}

/* pack_copy of kernel.h: each k-row of the panel is a masked load of the mn present
 * values (the rest read as zero) and a store of the full width, the k-rows in order so
 * that the source is read a row segment at a time. */
void gemm_pack_copy_f32_avx512(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                               int w)
{
    float *dst = (float *)dst_;
    const float *src = (const float *)src_;
    for (int64_t p = 0; p < k; p++)
        for (int x0 = 0; x0 < w; x0 += 16)
            _mm512_mask_storeu_ps(dst + p * w + x0, mask16(w - x0),
                                  _mm512_maskz_loadu_ps(mask16((int)(mn - x0)), src + p * ld + x0));
}

void gemm_pack_copy_f64_avx512(void *dst_, const void *src_, int64_t ld, int64_t mn, int64_t k,
                               int w)
{
    double *dst = (double *)dst_;
    const double *src = (const double *)src_;
    for (int64_t p = 0; p < k; p++)
        for (int x0 = 0; x0 < w; x0 += 8)
            _mm512_mask_storeu_pd(dst + p * w + x0, mask8(w - x0),
                                  _mm512_maskz_loadu_pd(mask8((int)(mn - x0)), src + p * ld + x0));
}
