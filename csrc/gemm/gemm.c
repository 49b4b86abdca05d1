/* GEMM driver: C = act(alpha * op(A) op(B) + beta * C + bias), BLIS-style, portable.
 *
 * Loops, from the outside in, over the block of C a thread owns:
 *   e   batch entries
 *   pc  a k block of kb <= KC
 *   ic  MC rows of A              -- A[ic:ic+MC, pc:pc+kb] as MR-high micro-panels (L3)
 *   jc  NC columns of B           -- B[pc:pc+kb, jc:jc+NC] as NR-wide micro-panels (L2)
 *   ir  MR rows (macro-kernel)    -- the A micro-panel sits in L1 ...
 *   jr  NR columns                -- ... while B micro-panels stream past it from L2
 * MC is large, so that A is normally packed once per k block and B once per k block and
 * column block: each operand is packed once in all. (With jc outside ic, as in BLIS, A
 * would be packed again for every NC columns, which costs a few percent at 1024^3.)
 * Transposes only change which packing routine runs. An operand that is cheaper to read
 * in place (a row-major A meeting few B panels, a row-major B meeting few A panels) is
 * not packed; its partial edge panel is then packed on its own, so that the micro-kernel
 * never reads outside an operand. x @ w.T at a small batch is computed as (w @ x.T).T, so
 * that the small x is transposed instead of w (swap_operands); x @ w.T narrower than a
 * vector is computed by dot products of rows instead (dot_run, on ISAs with a dot kernel),
 * where a tile would be mostly padding. The fused epilogue runs
 * on the last k block: alpha, beta and bias inside the micro-kernel, then the activation
 * and the copy of the pre-activation on rows of C while they are still in cache.
 *
 * Determinism: an element of C is the same chain of FMAs over each k block, and the k
 * blocks depend on K alone (kblock()), so neither the thread split, nor M, nor packing or
 * swapping, nor which rows share a tile changes a bit of the result. (A dot product's
 * lanes and their sum in a fixed tree depend on K alone too; the dot path is chosen by
 * the layout and N, never by M or the threads.)
 *
 * Threads own disjoint blocks of C (whole batch entries, or a grid of rows x columns) and
 * pack what they read themselves: no barriers, no shared writes. (Sharing packed panels
 * between the threads saves packing but not time here: a panel packed by the other core
 * comes from its L2 about as slowly as a thread packs it from the source, and the barrier
 * before it can be read makes a small product slower.)
 */
#include <stdlib.h>
#include <string.h>

#include "gemm/kernel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Multiply-adds each thread must get before GEMM uses more than one: below that, waking a
 * thread costs about what it would save. Measured on 2 cores: 82k multiply-adds take
 * ~1.5-2.3 us on one thread and longer on two; 164k 3.7 -> 3.2 us; 328k 6.8 -> 4.8 us. */
#define GEMM_MIN_WORK_PER_THREAD 81920

typedef struct {
    const gemm_arch *ar;
    char *c;
    int64_t ldc, stride_c;
    char *preact;
    int64_t ldp;
    const char *a;
    int64_t lda, stride_a;
    const char *b;
    int64_t ldb, stride_b;
    const char *bias;
    int trans_a, trans_b;
    double alpha, beta;
    pynn_act act;
    double slope;
    int64_t batch, m, n, k;
    int64_t kc;             /* the k block (kblock) */
    int direct_a, direct_b; /* read op(A) / op(B) in place rather than packing */
    int transpose_c;        /* C^T is computed (swap_operands): tiles are stored transposed */
} gemm_problem;

/* Where the micro-panels of one block of A or B are. Panel r starts at p + r*step and has
 * strides rs, cs; if `edge` is set, the last, partial panel is there instead, packed only
 * as wide as the kernel reads (strides edge_rs, edge_cs). */
typedef struct {
    const char *p;
    int64_t step, rs, cs;
    const char *edge;
    int64_t edge_rs, edge_cs;
} gemm_panels;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* Equal k blocks of at most KC: the summation order of every element depends on K only. */
static int64_t kblock(int64_t k, int64_t kc_max)
{
    if (k <= kc_max)
        return k;
    const int64_t blocks = (k + kc_max - 1) / kc_max;
    return (k + blocks - 1) / blocks;
}

/* Packs x-lines [0, mn) x k of an operand into w-wide micro-panels at dst, the last one
 * (if partial) only as wide as the kernel reads: a multiple of `unit`. */
static void pack_block(const gemm_arch *ar, char *dst, const char *src, int64_t ld, int trans,
                       int64_t mn, int64_t k, int w, int unit)
{
    const size_t es = ar->elsize;
    for (int64_t x = 0; x < mn; x += w) {
        const int64_t width = min64(w, mn - x);
        const int panel = width < w ? (int)round_up(width, unit) : w;
        /* contiguous along x: copy runs; contiguous along k: transpose */
        if (trans)
            ar->pack_trans(dst, src + (size_t)(x * ld) * es, ld, width, k, panel);
        else
            ar->pack_copy(dst, src + (size_t)x * es, ld, width, k, panel);
        dst += (size_t)(w * k) * es;
    }
}

/* The micro-panels of A[ic:ic+mb, pc:pc+kb] for batch entry e. */
static gemm_panels panels_a(const gemm_problem *pb, char *buf, int64_t e, int64_t ic,
                            int64_t mb, int64_t pc, int64_t kb)
{
    const gemm_arch *ar = pb->ar;
    const size_t es = ar->elsize;
    const int mr = ar->mr;
    const int64_t tail = mb % mr;
    const int edge = (int)round_up(tail, ar->mr_unit);
    /* A(i, p) at a[i*lda + p], or a[p*lda + i] when transposed */
    const int64_t rs = pb->trans_a ? 1 : pb->lda, cs = pb->trans_a ? pb->lda : 1;
    const char *a = pb->a + (size_t)(e * pb->stride_a + ic * rs + pc * cs) * es;
    gemm_panels P = {buf, (int64_t)(mr * kb) * (int64_t)es, 1, mr, NULL, 1, edge};
    if (!pb->direct_a) {
        pack_block(ar, buf, a, pb->lda, !pb->trans_a, mb, kb, mr, ar->mr_unit);
        if (tail)
            P.edge = buf + (size_t)((mb - tail) * kb) * es;
        return P;
    }
    P.p = a;
    P.step = (int64_t)(mr * rs) * (int64_t)es;
    P.rs = rs;
    P.cs = cs;
    if (tail != edge) { /* the kernel would read rows past the end of A */
        pack_block(ar, buf, a + (size_t)((mb - tail) * rs) * es, pb->lda, !pb->trans_a, tail,
                   kb, edge, ar->mr_unit);
        P.edge = buf;
    }
    return P;
}

/* The micro-panels of B[pc:pc+kb, jc:jc+nb] for batch entry e. */
static gemm_panels panels_b(const gemm_problem *pb, char *buf, int64_t e, int64_t jc,
                            int64_t nb, int64_t pc, int64_t kb)
{
    const gemm_arch *ar = pb->ar;
    const size_t es = ar->elsize;
    const int nr = ar->nr;
    const int64_t tail = nb % nr;
    const int edge = (int)round_up(tail, ar->nr_unit);
    /* B(p, j) at b[p*ldb + j], or b[j*ldb + p] when transposed */
    const int64_t rs = pb->trans_b ? 1 : pb->ldb, cs = pb->trans_b ? pb->ldb : 1;
    const char *b = pb->b + (size_t)(e * pb->stride_b + pc * rs + jc * cs) * es;
    gemm_panels P = {buf, (int64_t)(nr * kb) * (int64_t)es, nr, 1, NULL, edge, 1};
    if (!pb->direct_b) {
        pack_block(ar, buf, b, pb->ldb, pb->trans_b, nb, kb, nr, ar->nr_unit);
        if (tail)
            P.edge = buf + (size_t)((nb - tail) * kb) * es;
        return P;
    }
    P.p = b;
    P.step = (int64_t)nr * (int64_t)es;
    P.rs = rs;
    if (tail != edge) { /* the kernel would read columns past the end of B */
        pack_block(ar, buf, b + (size_t)(nb - tail) * es, pb->ldb, 0, tail, kb, edge,
                   ar->nr_unit);
        P.edge = buf;
    }
    return P;
}

/* Activation and pre-activation for finished rows [i0, i1) x columns [j0, j1) of C (of
 * entry e; only a single product has a pre-activation). */
static void finish_rows(const gemm_problem *pb, int64_t e, int64_t i0, int64_t i1, int64_t j0,
                        int64_t j1)
{
    const size_t es = pb->ar->elsize;
    char *c = pb->c + (size_t)(e * pb->stride_c) * es;
    for (int64_t i = i0; i < i1; i++) {
        char *row = c + (size_t)(i * pb->ldc + j0) * es;
        if (pb->preact)
            memcpy(pb->preact + (size_t)(i * pb->ldp + j0) * es, row, (size_t)(j1 - j0) * es);
        if (pb->act != PYNN_ACT_NONE)
            pb->ar->act(row, j1 - j0, pb->act, pb->slope);
    }
}

/* C[ic:ic+mb, jc:jc+nb] of entry e, one k block, from the panels of A and B. When C^T is
 * being computed, that block is C[jc:jc+nb, ic:ic+mb] and its rows finish together at the
 * end; otherwise each MR rows are finished (activation, pre-activation) while in cache. */
static void macro_kernel(const gemm_problem *pb, const gemm_panels *A, const gemm_panels *B,
                         int64_t e, int64_t ic, int64_t mb, int64_t jc, int64_t nb, int64_t kb,
                         int first, int last)
{
    const gemm_arch *ar = pb->ar;
    const size_t es = ar->elsize;
    const int mr = ar->mr, nr = ar->nr;
    const int finish = last && (pb->preact || pb->act != PYNN_ACT_NONE);
    /* element (i, j) of the computed product at c + i*rs_c + j*cs_c */
    const int64_t rs_c = pb->transpose_c ? 1 : pb->ldc, cs_c = pb->transpose_c ? pb->ldc : 1;
    gemm_epilogue ep = {pb->alpha, first ? pb->beta : 1.0, NULL, pb->transpose_c};
    char *c = pb->c + (size_t)(e * pb->stride_c) * es;
    for (int64_t ir = 0; ir < mb; ir += mr) {
        const int m = (int)min64(mr, mb - ir);
        const int a_edge = m < mr && A->edge;
        const char *a = a_edge ? A->edge : A->p + (ir / mr) * A->step;
        const int64_t rs_a = a_edge ? A->edge_rs : A->rs, cs_a = a_edge ? A->edge_cs : A->cs;
        for (int64_t jr = 0; jr < nb; jr += nr) {
            const int n = (int)min64(nr, nb - jr);
            const int b_edge = n < nr && B->edge;
            const char *b = b_edge ? B->edge : B->p + (jr / nr) * B->step;
            const int64_t rs_b = b_edge ? B->edge_rs : B->rs;
            if (last && pb->bias)
                ep.bias = pb->bias + (size_t)(pb->transpose_c ? ic + ir : jc + jr) * es;
            ar->ukernel(kb, a, rs_a, cs_a, b, rs_b,
                        c + (size_t)((ic + ir) * rs_c + (jc + jr) * cs_c) * es, pb->ldc, m, n,
                        &ep);
        }
        if (finish && !pb->transpose_c)
            finish_rows(pb, e, ic + ir, ic + ir + m, jc, jc + nb);
    }
    if (finish && pb->transpose_c)
        finish_rows(pb, e, jc, jc + nb, ic, ic + mb);
}

/* Equal blocks of at most `most` (a multiple of `unit`) covering `size`. */
static int64_t block_size(int64_t size, int64_t most, int unit)
{
    const int64_t blocks = (size + most - 1) / most;
    return round_up((size + blocks - 1) / blocks, unit);
}

/* Packing buffers this small live on the stack: a product of small matrices takes a few
 * microseconds, of which a heap allocation and free would be a tenth. */
#define GEMM_STACK_SCRATCH 49152

/* Entries [e0, e1), rows [m0, m1), columns [n0, n1) of C: one thread's share. */
static pynn_status gemm_block(const gemm_problem *pb, int64_t e0, int64_t e1, int64_t m0,
                              int64_t m1, int64_t n0, int64_t n1)
{
    if (e0 >= e1 || m0 >= m1 || n0 >= n1)
        return PYNN_OK;
    const gemm_arch *ar = pb->ar;
    const size_t es = ar->elsize;
    const int64_t kc = pb->kc > 0 ? pb->kc : 1;
    const int64_t mc = block_size(m1 - m0, ar->mc, ar->mr);
    const int64_t nc = block_size(n1 - n0, ar->nc, ar->nr);
    const int64_t arows = pb->direct_a ? ar->mr : mc, bcols = pb->direct_b ? ar->nr : nc;
    const size_t abytes = (size_t)round_up(arows * kc * (int64_t)es, 64);
    const size_t bytes = abytes + (size_t)(bcols * kc) * es;
    double stack[(GEMM_STACK_SCRATCH + 64) / sizeof(double)];
    char *heap = NULL, *abuf = (char *)(((uintptr_t)stack + 63) & ~(uintptr_t)63);
    if (bytes > GEMM_STACK_SCRATCH) {
        if (posix_memalign((void **)&heap, 64, bytes) != 0)
            return PYNN_ERR_NOMEM;
        abuf = heap;
    }
    char *bbuf = abuf + abytes;
    for (int64_t e = e0; e < e1; e++) {
        int64_t pc = 0;
        do {
            const int64_t kb = min64(pb->kc, pb->k - pc);
            const int first = pc == 0, last = pc + kb >= pb->k;
            for (int64_t ic = m0; ic < m1; ic += mc) {
                const int64_t mb = min64(mc, m1 - ic);
                const gemm_panels A = panels_a(pb, abuf, e, ic, mb, pc, kb);
                for (int64_t jc = n0; jc < n1; jc += nc) {
                    const int64_t nb = min64(nc, n1 - jc);
                    const gemm_panels B = panels_b(pb, bbuf, e, jc, nb, pc, kb);
                    macro_kernel(pb, &A, &B, e, ic, mb, jc, nb, kb, first, last);
                }
            }
            pc += kb;
        } while (pc < pb->k);
    }
    free(heap);
    return PYNN_OK;
}

/* Reading a row-major A in place saves packing it, but a packed micro-panel is faster to
 * read (one stream instead of MR): packing pays once a panel meets a few B micro-panels.
 * B is read in place when it is row-major and few row panels of A meet it. Either way
 * the arithmetic is the same. */
static void choose_layout(gemm_problem *pb)
{
    const gemm_arch *ar = pb->ar;
    pb->direct_a = !pb->trans_a && pb->n <= 4 * ar->nr;
    pb->direct_b = !pb->trans_b && pb->m <= 4 * ar->mr;
}

/* Makes pb compute C^T = op(B)^T op(A)^T instead, with the kernels storing their tiles
 * transposed: the same multiply-adds on the same values, so the same bits. */
static void swap_operands(gemm_problem *pb)
{
    const char *a = pb->a;
    const int64_t lda = pb->lda, stride_a = pb->stride_a, m = pb->m;
    const int trans_a = pb->trans_a;
    pb->a = pb->b;
    pb->lda = pb->ldb;
    pb->stride_a = pb->stride_b;
    pb->trans_a = !pb->trans_b;
    pb->b = a;
    pb->ldb = lda;
    pb->stride_b = stride_a;
    pb->trans_b = !trans_a;
    pb->m = pb->n;
    pb->n = m;
    pb->transpose_c = 1;
}

/* Splits `units` into `parts` near-equal contiguous ranges; returns the start of `part`. */
static int64_t split(int64_t units, int parts, int part)
{
    return units * part / parts;
}

/* Where `part` of `parts` threads starts along a dimension of `tiles` tiles of `unit`
 * (`size` in all). Along the columns of C (c_cols), the start moves right to the next
 * 64-byte line of C's first row: two threads writing the two ends of one cache line in
 * every row pass it back and forth between their cores, which made a 128 x 256 product
 * three times slower on two threads when C started 16 bytes into a line (as NumPy's
 * arrays of 128 KB and more do). Tiles then start where the thread starts; the
 * arithmetic of an element does not depend on its tile. */
static int64_t thread_start(const gemm_problem *pb, int64_t tiles, int parts, int part,
                            int unit, int64_t size, int c_cols)
{
    int64_t j = min64(split(tiles, parts, part) * unit, size);
    const size_t es = pb->ar->elsize;
    const uintptr_t addr = (uintptr_t)pb->c + (uintptr_t)j * es;
    if (c_cols && j > 0 && j < size && addr % es == 0)
        j = min64(j + (int64_t)((64 - addr % 64) % 64 / es), size);
    return j;
}

/* Global rows [r0, r1) of C (entry r / m, row r % m) by the dot-product kernel. */
static void dot_block(const gemm_problem *pb, int64_t r0, int64_t r1)
{
    const size_t es = pb->ar->elsize;
    const gemm_epilogue ep = {pb->alpha, pb->beta, pb->bias, 0};
    const int finish = pb->preact || pb->act != PYNN_ACT_NONE;
    while (r0 < r1) {
        const int64_t e = r0 / pb->m, i0 = r0 % pb->m, i1 = min64(pb->m, i0 + (r1 - r0));
        /* in row blocks that keep a block's C in L1 for the activation */
        for (int64_t i = i0; i < i1; i += 64) {
            const int64_t rows = min64(64, i1 - i);
            pb->ar->dot(pb->k, pb->a + (size_t)(e * pb->stride_a + i * pb->lda) * es, pb->lda,
                        pb->b + (size_t)(e * pb->stride_b) * es, pb->ldb,
                        pb->c + (size_t)(e * pb->stride_c + i * pb->ldc) * es, pb->ldc,
                        (int)rows, (int)pb->n, &ep);
            if (finish)
                finish_rows(pb, e, i, i + rows, 0, pb->n);
        }
        r0 += i1 - i0;
    }
}

/* C = A B^T by dot products (gemm_dotkernel), the rows split between nt threads. */
static pynn_status dot_run(const gemm_problem *pb, int nt)
{
    const int64_t rows = pb->batch * pb->m;
    if (nt <= 1) { /* always, without OpenMP */
        dot_block(pb, 0, rows);
        return PYNN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        dot_block(pb, split(rows, nt, t), split(rows, nt, t + 1));
    }
#endif
    return PYNN_OK;
}

static pynn_status gemm_run(gemm_problem *pb, int nthreads)
{
    const gemm_arch *ar = pb->ar;
    if (pb->batch <= 0 || pb->m <= 0 || pb->n <= 0)
        return PYNN_OK;
    /* the threads, by the multiply-adds: the same whichever path and operand order */
    const int64_t work = pb->batch * pb->m * pb->n * (pb->k > 0 ? pb->k : 1);
    const int nt = pynn_threads_for(work, GEMM_MIN_WORK_PER_THREAD, nthreads);
    /* x @ w.T with few columns (a layer with few outputs): dot products of rows, chosen by
     * the layout and n alone, so that a row's bits do not depend on m */
    if (ar->dot && !pb->trans_a && pb->trans_b && pb->n <= ar->dot_n)
        return dot_run(pb, nt);
    pb->kc = kblock(pb->k, ar->kc);
    /* x @ w.T with fewer rows in x than in w (a layer's forward pass at a small batch):
     * packing w.T would transpose the larger operand; computing the transposed product
     * reads w in place and transposes x instead. */
    if (!pb->trans_a && pb->trans_b && pb->m < pb->n)
        swap_operands(pb);
    choose_layout(pb);
    if (nt <= 1)
        return gemm_block(pb, 0, pb->batch, 0, pb->m, 0, pb->n);

    /* Whole entries per thread when there are enough; else a grid of row x column blocks
     * in whole tiles. The grid shape minimises the busiest thread's tiles plus the panels
     * of A and B it packs (each costs about as much as a tile; one read in place, nothing).
     * Unless C's rows start on 64-byte lines, the end of a row shares a line with the start
     * of the next, and threads that split C's columns pass that line back and forth in
     * every row, once per k block: about 130 cycles a row (a 128 x 256 x 10 product took
     * 5 us on two threads with C aligned, 15 us with C 16 bytes into a line, as NumPy's
     * arrays of 128 KB and more are), against about MR cycles per k step for a tile. That
     * cost counts against such splits, in tiles. */
    const int by_entry = pb->batch >= nt;
    const int64_t tiles_m = (pb->m + ar->mr - 1) / ar->mr;
    const int64_t tiles_n = (pb->n + ar->nr - 1) / ar->nr;
    const int lined = (uintptr_t)pb->c % 64 == 0 && (pb->ldc * (int64_t)ar->elsize) % 64 == 0;
    const int64_t kblocks = pb->k > pb->kc ? (pb->k + pb->kc - 1) / pb->kc : 1;
    const int64_t tile_cycles = ar->mr * pb->k + 50;
    int pn = 1;
    int64_t best = -1;
    for (int d = 1; d <= nt; d++) {
        if (nt % d)
            continue;
        const int64_t tm = (tiles_m + nt / d - 1) / (nt / d), tn = (tiles_n + d - 1) / d;
        int64_t cost = tm * tn + (pb->direct_a ? 0 : tm) + (pb->direct_b ? 0 : tn);
        const int c_cols_split = pb->transpose_c ? d < nt : d > 1;
        if (c_cols_split && !lined) {
            const int64_t c_rows = pb->transpose_c ? tn * ar->nr : tm * ar->mr;
            cost += c_rows * kblocks * 130 / tile_cycles;
        }
        if (best < 0 || cost < best) {
            best = cost;
            pn = d;
        }
    }
    const int pm = nt / pn;
    pynn_status status = PYNN_OK;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        pynn_status s;
        if (by_entry) {
            s = gemm_block(pb, split(pb->batch, nt, t), split(pb->batch, nt, t + 1), 0, pb->m,
                           0, pb->n);
        } else {
            const int tm = t / pn, tn = t % pn, tc = pb->transpose_c;
            s = gemm_block(pb, 0, pb->batch,
                           thread_start(pb, tiles_m, pm, tm, ar->mr, pb->m, tc),
                           thread_start(pb, tiles_m, pm, tm + 1, ar->mr, pb->m, tc),
                           thread_start(pb, tiles_n, pn, tn, ar->nr, pb->n, !tc),
                           thread_start(pb, tiles_n, pn, tn + 1, ar->nr, pb->n, !tc));
        }
        if (s != PYNN_OK) {
#ifdef _OPENMP
#pragma omp critical(pynn_gemm_status)
#endif
            status = s;
        }
    }
    return status;
}

static int64_t at_least_1(int64_t x) { return x > 1 ? x : 1; }

/* Sizes, and leading dimensions that fit the rows they stride over. */
static pynn_status check(int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb,
                         int trans_a, int trans_b, int nthreads)
{
    if (m < 0 || n < 0 || k < 0 || nthreads < 1)
        return PYNN_ERR_ARG;
    if (ldc < at_least_1(n) || lda < at_least_1(trans_a ? m : k) ||
        ldb < at_least_1(trans_b ? k : n))
        return PYNN_ERR_ARG;
    return PYNN_OK;
}

static pynn_status gemm_entry(const gemm_arch *ar, void *c, int64_t ldc, void *preact,
                              int64_t ldp, const void *a, int64_t lda, const void *b,
                              int64_t ldb, const void *bias, int trans_a, int trans_b,
                              double alpha, double beta, pynn_act act, double slope,
                              int64_t m, int64_t n, int64_t k, int nthreads)
{
    pynn_status s = check(m, n, k, ldc, lda, ldb, trans_a, trans_b, nthreads);
    if (s != PYNN_OK)
        return s;
    if ((int)act < (int)PYNN_ACT_NONE || (int)act > (int)PYNN_ACT_GELU_TANH)
        return PYNN_ERR_ARG;
    if (preact && ldp < at_least_1(n))
        return PYNN_ERR_ARG;
    gemm_problem pb = {ar, (char *)c, ldc, 0, (char *)preact, ldp, (const char *)a, lda, 0,
                       (const char *)b, ldb, 0, (const char *)bias, trans_a, trans_b, alpha,
                       beta, act, slope, 1, m, n, k, 0, 0, 0, 0};
    return gemm_run(&pb, nthreads);
}

pynn_status pynn_gemm_f32(float *c, int64_t ldc, float *preact, int64_t ldp, const float *a,
                          int64_t lda, const float *b, int64_t ldb, const float *bias,
                          int trans_a, int trans_b, float alpha, float beta, pynn_act act,
                          float negative_slope, int64_t m, int64_t n, int64_t k, int nthreads)
{
    return gemm_entry(gemm_arch_f32(), c, ldc, preact, ldp, a, lda, b, ldb, bias, trans_a,
                      trans_b, alpha, beta, act, negative_slope, m, n, k, nthreads);
}

pynn_status pynn_gemm_f64(double *c, int64_t ldc, double *preact, int64_t ldp, const double *a,
                          int64_t lda, const double *b, int64_t ldb, const double *bias,
                          int trans_a, int trans_b, double alpha, double beta, pynn_act act,
                          double negative_slope, int64_t m, int64_t n, int64_t k, int nthreads)
{
    return gemm_entry(gemm_arch_f64(), c, ldc, preact, ldp, a, lda, b, ldb, bias, trans_a,
                      trans_b, alpha, beta, act, negative_slope, m, n, k, nthreads);
}

static pynn_status gemm_batched_entry(const gemm_arch *ar, void *c, int64_t ldc,
                                      int64_t stride_c, const void *a, int64_t lda,
                                      int64_t stride_a, const void *b, int64_t ldb,
                                      int64_t stride_b, int trans_a, int trans_b, double alpha,
                                      double beta, int64_t batch, int64_t m, int64_t n,
                                      int64_t k, int nthreads)
{
    pynn_status s = check(m, n, k, ldc, lda, ldb, trans_a, trans_b, nthreads);
    if (s != PYNN_OK)
        return s;
    if (batch < 0 || stride_a < 0 || stride_b < 0 || (batch > 1 && stride_c < m * ldc))
        return PYNN_ERR_ARG;
    gemm_problem pb = {ar, (char *)c, ldc, stride_c, NULL, 0, (const char *)a, lda, stride_a,
                       (const char *)b, ldb, stride_b, NULL, trans_a, trans_b, alpha, beta,
                       PYNN_ACT_NONE, 0.0, batch, m, n, k, 0, 0, 0, 0};
    return gemm_run(&pb, nthreads);
}

pynn_status pynn_gemm_batched_f32(float *c, int64_t ldc, int64_t stride_c, const float *a,
                                  int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                                  int64_t stride_b, int trans_a, int trans_b, float alpha,
                                  float beta, int64_t batch, int64_t m, int64_t n, int64_t k,
                                  int nthreads)
{
    return gemm_batched_entry(gemm_arch_f32(), c, ldc, stride_c, a, lda, stride_a, b, ldb,
                              stride_b, trans_a, trans_b, alpha, beta, batch, m, n, k, nthreads);
}

pynn_status pynn_gemm_batched_f64(double *c, int64_t ldc, int64_t stride_c, const double *a,
                                  int64_t lda, int64_t stride_a, const double *b, int64_t ldb,
                                  int64_t stride_b, int trans_a, int trans_b, double alpha,
                                  double beta, int64_t batch, int64_t m, int64_t n, int64_t k,
                                  int nthreads)
{
    return gemm_batched_entry(gemm_arch_f64(), c, ldc, stride_c, a, lda, stride_a, b, ldb,
                              stride_b, trans_a, trans_b, alpha, beta, batch, m, n, k, nthreads);
}
