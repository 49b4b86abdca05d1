/* The micro-kernel of kernel_avx512.c for one float type: the epilogue, the intrinsic k
 * loop, the tiles and the entry point, written once. kernel_avx512.c includes this file
 * twice, after defining
 *   T       float or double          VEC   __m512 or __m512d   L  lanes: 16 or 8
 *   MASK    __mmask16 or __mmask8    MASK_OF(n)  the lanes below n
 *   VOP(op) _mm512_<op>_ps or _pd    KFN(name)   sgemm_<name> or dgemm_<name>
 *   GEMM_ASM  the assembly k loop    KERNEL      the entry point's name
 *   DOT_KERNEL  the dot-product kernel's name (kernel.h)
 * and KFN(store_t), the transposed epilogue, which differs between the types (16 x 16 or
 * 8 x 8 register transposes); it undefines them at the end. */

#define ES ((int64_t)sizeof(T))

/* The epilogue of kernel.h on rows i < m, columns j < n, for given flags: called with
 * constants for the common cases, so that those compile without a test per row. */
PYNN_INLINE void KFN(store_rows)(T *c, int64_t ldc, int m, const MASK mk[2], VEC acc[12][2],
                                 const int R, const int V, VEC alpha, VEC beta,
                                 const VEC bv[2], const int scale, const int add_c,
                                 const int fma_c, const int bias)
{
    _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {
        if (i >= m)
            break;
        _Pragma("GCC unroll 2") for (int v = 0; v < V; v++) {
            T *cv = c + i * ldc + L * v;
            VEC z = acc[i][v];
            if (scale)
                z = VOP(mul)(alpha, z);
            if (add_c) {
                const VEC cold = VOP(maskz_loadu)(mk[v], cv);
                z = fma_c ? VOP(fmadd)(beta, cold, z) : VOP(add)(z, cold);
            }
            if (bias)
                z = VOP(add)(z, bv[v]);
            VOP(mask_storeu)(cv, mk[v], z);
        }
    }
}

PYNN_INLINE void KFN(store)(T *c, int64_t ldc, int m, int n, VEC acc[12][2], const int R,
                            const int V, const gemm_epilogue *ep)
{
    const MASK mk[2] = {MASK_OF(n), MASK_OF(n - L)};
    const VEC alpha = VOP(set1)((T)ep->alpha), beta = VOP(set1)((T)ep->beta);
    const int scale = ep->alpha != 1.0, add_c = ep->beta != 0.0, fma_c = add_c && ep->beta != 1.0;
    const T *bias = (const T *)ep->bias;
    VEC bv[2] = {VOP(setzero)(), VOP(setzero)()};
    if (bias) {
        bv[0] = VOP(maskz_loadu)(mk[0], bias);
        if (V > 1)
            bv[1] = VOP(maskz_loadu)(mk[1], bias + L);
    }
    if (scale || fma_c)
        KFN(store_rows)(c, ldc, m, mk, acc, R, V, alpha, beta, bv, scale, add_c, fma_c,
                        bias != NULL);
    else if (add_c) /* a later k block: C += sums */
        KFN(store_rows)(c, ldc, m, mk, acc, R, V, alpha, beta, bv, 0, 1, 0, bias != NULL);
    else if (bias)
        KFN(store_rows)(c, ldc, m, mk, acc, R, V, alpha, beta, bv, 0, 0, 0, 1);
    else
        KFN(store_rows)(c, ldc, m, mk, acc, R, V, alpha, beta, bv, 0, 0, 0, 0);
}

/* acc[i][v] += A(i, p) * B(p, L v..L v + L-1) over `steps` values of p; advances a and b.
 * Row i of A is read at q[i / 4] + (i % 4) rs_a: three pointers and the offsets rs_a,
 * 2 rs_a and 3 rs_a fit x86 addressing when A is read in place (cs_a == 1, rs_a the row
 * stride), where twelve row pointers would not fit the registers. */
PYNN_INLINE void KFN(steps)(int64_t steps, const T **a_, int64_t rs_a, int64_t cs_a,
                            const T **b_, int64_t rs_b, VEC acc[12][2], const int R,
                            const int V)
{
    const T *q[3] = {*a_, *a_ + 4 * rs_a, *a_ + 8 * rs_a}, *b = *b_;
    const int64_t rs3 = 3 * rs_a;
    for (int64_t p = 0; p < steps; p++) {
        const VEC b0 = VOP(loadu)(b);
        const VEC b1 = V > 1 ? VOP(loadu)(b + L) : b0;
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {
            const T *row = q[i / 4] + (i % 4 == 3 ? rs3 : (i % 4) * rs_a);
            const VEC ai = VOP(set1)(*row);
            acc[i][0] = VOP(fmadd)(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = VOP(fmadd)(ai, b1, acc[i][1]);
        }
        q[0] += cs_a;
        q[1] += cs_a;
        q[2] += cs_a;
        b += rs_b;
    }
    *a_ = q[0];
    *b_ = b;
}

/* A tile computed with R rows and V vectors of accumulators (R >= m, L V >= n). Called
 * with constants for R and V and a literal 1 for rs_a or cs_a, so that each call compiles
 * to its own loop with the accumulators in registers and the unit stride folded into the
 * addresses. */
PYNN_INLINE void KFN(tile)(int64_t k, const T *a, int64_t rs_a, int64_t cs_a,
                           const T *b, int64_t rs_b, T *c, int64_t ldc, int m, int n,
                           const gemm_epilogue *ep, const int R, const int V)
{
    VEC acc[12][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
        acc[i][0] = acc[i][1] = VOP(setzero)();
    if (k >= 2 * PREFETCH_C_STEPS) {
        const int c_rows = ep->transpose ? n : m, c_cols = ep->transpose ? m : n;
        prefetch_c_l2((const char *)c, ldc * ES, c_rows, c_cols * ES);
        KFN(steps)(k - PREFETCH_C_STEPS, &a, rs_a, cs_a, &b, rs_b, acc, R, V);
        prefetch_c_l1((const char *)c, ldc * ES, c_rows, c_cols * ES);
        KFN(steps)(PREFETCH_C_STEPS, &a, rs_a, cs_a, &b, rs_b, acc, R, V);
    } else {
        KFN(steps)(k, &a, rs_a, cs_a, &b, rs_b, acc, R, V);
    }
    if (ep->transpose)
        KFN(store_t)(c, ldc, m, n, acc, R, V, ep);
    else
        KFN(store)(c, ldc, m, n, acc, R, V, ep);
}

/* The tile variant for an m x n edge: 12, 10, 8 or 4 rows, with V vectors. */
PYNN_INLINE void KFN(edge_rows)(int64_t k, const T *a, int64_t rs_a, int64_t cs_a,
                                const T *b, int64_t rs_b, T *c, int64_t ldc, int m, int n,
                                const gemm_epilogue *ep, const int V)
{
    if (m > 10)
        KFN(tile)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 12, V);
    else if (m > 8)
        KFN(tile)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 10, V);
    else if (m > 4)
        KFN(tile)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 8, V);
    else
        KFN(tile)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 4, V);
}

/* The tile variant for an m x n edge: 2 vectors, or 1 for n <= L. Inlined twice, with a
 * literal 1 for rs_a or for cs_a. */
PYNN_INLINE void KFN(edge)(int64_t k, const T *a, int64_t rs_a, int64_t cs_a,
                           const T *b, int64_t rs_b, T *c, int64_t ldc, int m, int n,
                           const gemm_epilogue *ep)
{
    if (n > L)
        KFN(edge_rows)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 2);
    else
        KFN(edge_rows)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep, 1);
}

/* A tile with more than 10 rows and L columns, A packed or read in place (cs_a 12 or 1). */
static void KFN(tile_asm)(int64_t k, const T *a, int64_t rs_a, int64_t cs_a, const T *b,
                          int64_t rs_b, T *c, int64_t ldc, int m, int n,
                          const gemm_epilogue *ep)
{
    VEC acc[12][2];
    if (k >= 2 * PREFETCH_C_STEPS) {
        const int c_rows = ep->transpose ? n : m, c_cols = ep->transpose ? m : n;
        prefetch_c_l2((const char *)c, ldc * ES, c_rows, c_cols * ES);
    }
    GEMM_ASM(k, a, rs_a, cs_a, b, rs_b, acc);
    if (ep->transpose)
        KFN(store_t)(c, ldc, m, n, acc, 12, 2, ep);
    else
        KFN(store)(c, ldc, m, n, acc, 12, 2, ep);
}

void KERNEL(int64_t k, const void *a_, int64_t rs_a, int64_t cs_a, const void *b_,
            int64_t rs_b, void *c_, int64_t ldc, int m, int n,
            const gemm_epilogue *ep)
{
    const T *a = (const T *)a_, *b = (const T *)b_;
    T *c = (T *)c_;
    if (m > 10 && n > L && k >= GEMM_ASM_MIN_STEPS && (cs_a == 1 || (rs_a == 1 && cs_a == 12)))
        KFN(tile_asm)(k, a, rs_a, cs_a, b, rs_b, c, ldc, m, n, ep);
    else if (rs_a == 1)
        KFN(edge)(k, a, 1, cs_a, b, rs_b, c, ldc, m, n, ep);
    else
        KFN(edge)(k, a, rs_a, 1, b, rs_b, c, ldc, m, n, ep);
}

/* One vector of k for the dot-product kernel: acc[r][q] += a_r[p..] * b_q[p..]; where
 * `masked`, the lanes outside mk are loaded as 0 (so they add 0 * 0). (Masked loads
 * throughout made 512 x 10 x 784 6% slower: the full vectors load plainly.) */
PYNN_INLINE VEC KFN(dot_load)(const T *x, MASK mk, const int masked)
{
    return masked ? VOP(maskz_loadu)(mk, x) : VOP(loadu)(x);
}

PYNN_INLINE void KFN(dot_step)(const T *a, int64_t lda, const T *b, int64_t ldb, int64_t p,
                               MASK mk, const int masked, VEC acc[4][5], const int R,
                               const int Q)
{
    VEC bv[5];
    _Pragma("GCC unroll 5") for (int q = 0; q < Q; q++)
        bv[q] = KFN(dot_load)(b + q * ldb + p, mk, masked);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const VEC av = KFN(dot_load)(a + r * lda + p, mk, masked);
        _Pragma("GCC unroll 5") for (int q = 0; q < Q; q++)
            acc[r][q] = VOP(fmadd)(av, bv[q], acc[r][q]);
    }
}

/* The dot-product kernel (kernel.h), R rows by the Q columns from b, into sums[r][q]:
 * R * Q accumulators of lanes, R + Q loads for R * Q FMAs a vector of k. */
PYNN_INLINE void KFN(dot_block)(int64_t k, const T *a, int64_t lda, const T *b, int64_t ldb,
                                T sums[4][L], int j0, const int R, const int Q)
{
    VEC acc[4][5];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 5") for (int q = 0; q < Q; q++)
            acc[r][q] = VOP(setzero)();
    int64_t p = 0;
    for (; p + L <= k; p += L)
        KFN(dot_step)(a, lda, b, ldb, p, MASK_OF(L), 0, acc, R, Q);
    if (p < k)
        KFN(dot_step)(a, lda, b, ldb, p, MASK_OF((int)(k - p)), 1, acc, R, Q);
    VEC flat[24];
    T out[24];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 5") for (int q = 0; q < Q; q++)
            flat[r * Q + q] = acc[r][q];
    _Pragma("GCC unroll 24") for (int x = R * Q; x < (R * Q + 7) / 8 * 8; x++)
        flat[x] = VOP(setzero)();
    _Pragma("GCC unroll 3") for (int x = 0; x < R * Q; x += 8)
        KFN(hsum8)(flat + x, out + x);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 5") for (int q = 0; q < Q; q++)
            sums[r][j0 + q] = out[r * Q + q];
}

/* R rows of C: the columns in groups of at most 5, then the epilogue of the GEMM tiles on
 * the sums as one vector a row. */
PYNN_INLINE void KFN(dot_rows)(int64_t k, const T *a, int64_t lda, const T *b, int64_t ldb,
                               T *c, int64_t ldc, int n, const gemm_epilogue *ep, const int R)
{
    T sums[4][L];
    const int groups = (n + 4) / 5;
    for (int g = 0, j0 = 0; g < groups; g++) {
        const int q = (n - j0) / (groups - g); /* groups of near-equal width */
        const T *bg = b + j0 * ldb;
        switch (q) {
        case 1: KFN(dot_block)(k, a, lda, bg, ldb, sums, j0, R, 1); break;
        case 2: KFN(dot_block)(k, a, lda, bg, ldb, sums, j0, R, 2); break;
        case 3: KFN(dot_block)(k, a, lda, bg, ldb, sums, j0, R, 3); break;
        case 4: KFN(dot_block)(k, a, lda, bg, ldb, sums, j0, R, 4); break;
        default: KFN(dot_block)(k, a, lda, bg, ldb, sums, j0, R, 5); break;
        }
        j0 += q;
    }
    VEC acc[12][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        acc[r][0] = VOP(maskz_loadu)(MASK_OF(n), sums[r]);
    KFN(store)(c, ldc, R, n, acc, R, 1, ep);
}

void DOT_KERNEL(int64_t k, const void *a_, int64_t lda, const void *b_, int64_t ldb,
                void *c_, int64_t ldc, int m, int n, const gemm_epilogue *ep)
{
    const T *a = (const T *)a_, *b = (const T *)b_;
    T *c = (T *)c_;
    int i = 0;
    for (; i + 4 <= m; i += 4)
        KFN(dot_rows)(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, n, ep, 4);
    for (; i < m; i++)
        KFN(dot_rows)(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, n, ep, 1);
}

#undef ES
#undef T
#undef VEC
#undef L
#undef MASK
#undef MASK_OF
#undef VOP
#undef KFN
#undef GEMM_ASM
#undef KERNEL
#undef DOT_KERNEL
