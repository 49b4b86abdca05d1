/* The per-ISA table of GEMM tile and block sizes, with the kernels that go with them.
 *
 * Tiles: the micro-kernel's MR x NR, set by the register file (kernel_*.c say why), and
 * the units in which edge tiles shrink. Blocks, for a 2-core Sapphire Rapids (48 KB L1d,
 * 2 MB L2 per core), sized by what each must fit and checked by measurement (KC 256-512
 * and NC 256-512 measured within a few percent of each other at 1024^3 and 2048^3, NC 1024
 * slower):
 *   KC  the k block: the A micro-panel (MR x KC: 18 KB for float AVX-512) stays in L1
 *       while B micro-panels stream past, and every k block costs one pass over C, so
 *       it is as long as L1 allows. It also fixes every element's summation order: it
 *       depends on the ISA and k only, never on anything else about a call.
 *   NC  columns of packed B per block: KC x NC (768 KB) stays in L2 next to C's rows.
 *   MC  rows of packed A per block, about 4 MB of them. A is read from L3 a micro-panel
 *       at a time and each of its blocks meets every column block of B, which is packed
 *       again for each block of A: MC is as large as a reasonable buffer allows.
 * Dot products (gemm_dotkernel) take x @ w.T narrower than a vector: a 12 x 32 tile would
 * compute mostly padding there (32 x 10 x 256: 2.5 -> 1.3 us, 512 x 10 x 784: 109 -> 53
 * us, 1 x 10 x 256: 1.5 -> 0.12 us), while a C exactly one vector wide fills the tile
 * (512 x 16 x 128: 15.5 us as tiles, 18 as dot products).
 */
#include "act.h"
#include "gemm/kernel.h"

static void act_f32(void *x, int64_t n, pynn_act act, double negative_slope)
{
    pynn_act_apply_f32((float *)x, (const float *)x, n, act, (float)negative_slope);
}

static void act_f64(void *x, int64_t n, pynn_act act, double negative_slope)
{
    pynn_act_apply_f64((double *)x, (const double *)x, n, act, negative_slope);
}

static const gemm_arch sgemm_table[] = {
    /*                   elsize  mr  nr units   kc    mc    nc   micro-kernel          */
    [PYNN_ISA_GENERIC] = {4,      4,  8, 4,  8, 256, 4096,  512, sgemm_generic_4x8,
                          gemm_pack_copy_f32, gemm_pack_trans_f32, act_f32},
#ifdef PYNN_X86
    [PYNN_ISA_AVX2] =    {4,      6, 16, 3,  8, 256, 4092,  512, sgemm_avx2_6x16,
                          gemm_pack_copy_f32_avx2, gemm_pack_trans_f32_avx2, act_f32},
    [PYNN_ISA_AVX512] =  {4,     12, 32, 4, 16, 384, 2688,  512, sgemm_avx512_12x32,
                          gemm_pack_copy_f32_avx512, gemm_pack_trans_f32_avx512, act_f32,
                          sgemm_avx512_dot, 15},
#endif
};

static const gemm_arch dgemm_table[] = {
    [PYNN_ISA_GENERIC] = {8,      4,  4, 4,  4, 256, 2048,  256, dgemm_generic_4x4,
                          gemm_pack_copy_f64, gemm_pack_trans_f64, act_f64},
#ifdef PYNN_X86
    [PYNN_ISA_AVX2] =    {8,      6,  8, 3,  4, 256, 2046,  256, dgemm_avx2_6x8,
                          gemm_pack_copy_f64_avx2, gemm_pack_trans_f64_avx2, act_f64},
    [PYNN_ISA_AVX512] =  {8,     12, 16, 4,  8, 192, 2688,  512, dgemm_avx512_12x16,
                          gemm_pack_copy_f64_avx512, gemm_pack_trans_f64_avx512, act_f64,
                          dgemm_avx512_dot, 7},
#endif
};

static const gemm_arch *select(const gemm_arch *table, size_t entries)
{
    size_t isa = (size_t)pynn_cpu_isa();
    return isa < entries ? &table[isa] : &table[PYNN_ISA_GENERIC];
}

const gemm_arch *gemm_arch_f32(void)
{
    return select(sgemm_table, sizeof sgemm_table / sizeof sgemm_table[0]);
}

const gemm_arch *gemm_arch_f64(void)
{
    return select(dgemm_table, sizeof dgemm_table / sizeof dgemm_table[0]);
}
