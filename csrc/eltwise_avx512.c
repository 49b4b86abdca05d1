/* AVX-512 loops for the float activations whose cost is arithmetic rather than memory
 * traffic: sigmoid, tanh, silu, gelu and gelu_tanh, forward and backward (from the input).
 *
 * Compiled only for the avx512 target (an AVX512 source of the eltwise family) and called
 * by eltwise.c's avx512 build; the portable loops there stay the generic and avx2 paths
 * and the specification. These evaluate the same formulas of vmath.h with the same range
 * reductions, polynomials and divisions, in about half the instructions of gcc's
 * vectorised C (a vector of sigmoid: 26 against 44; gelu: 53 against 102; tanh, 29
 * against 31, is the exception), where one AVX-512 instruction does the work of several:
 * - exp's 2^k is one vscalefps, which rounds a subnormal result once, as vm_exp's two
 *   multiplications do, in place of exponent arithmetic and those multiplications;
 * - a clamp is one vmaxps/vminps, with the operand order that lets NaN through, where gcc
 *   turns the C comparisons into several mask operations;
 * - GELU splits -z^2/2 exactly with one FMA instead of splitting z, and rounds exp's k
 *   from the exact part alone.
 * (The divisions stay vdivps: the divider takes one every ~11 cycles, and each of these
 * loops spends longer than that on a vector; a reciprocal estimate refined to the same
 * accuracy costs four instructions instead of one, measured no faster.)
 * So sigmoid, tanh and silu give the bits of the avx2 path when gcc contracts the C into
 * the same FMAs, and every activation keeps the error bounds vmath.h states.
 * Every element goes through the same instructions: the last, partial vector is loaded
 * and stored under a mask, so results depend neither on n nor on how threads split the
 * array.
 */
#include "eltwise_avx512.h"
#include "act.h"
#include "isa.h"

#include <float.h>
#include <immintrin.h>

#define V(c) _mm512_set1_ps(c)

PYNN_INLINE __mmask16 negative(__m512 x) { return _mm512_cmp_ps_mask(x, V(0.0f), _CMP_LT_OQ); }

/* x limited to [-limit, limit]; NaN passes (vmaxps/vminps return their second operand
 * when either is NaN) */
PYNN_INLINE __m512 clamp(__m512 x, float limit)
{
    return _mm512_max_ps(V(-limit), _mm512_min_ps(V(limit), x));
}

/* e^r for |r| <= ln2/2: vm_exp_f32's polynomial (cephes expf) */
PYNN_INLINE __m512 exp_poly(__m512 r)
{
    __m512 p = V(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, V(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, V(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, V(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, V(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, V(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    return _mm512_add_ps(p, V(1.0f));
}

/* k = round(t / ln2) as a float: adding 1.5 * 2^23 rounds to an integer */
PYNN_INLINE __m512 exp_k(__m512 t)
{
    const __m512 magic = V(0x1.8p23f);
    return _mm512_sub_ps(_mm512_fmadd_ps(t, V(1.44269504088896341f), magic), magic);
}

/* exp(t) for t <= 0 (and NaN), vm_exp_f32's Cody-Waite reduction; below -110 the result
 * rounds to 0 whatever t is, and the clamp keeps -inf out of the reduction. */
PYNN_INLINE __m512 exp_nonpos(__m512 t)
{
    t = _mm512_max_ps(V(-110.0f), t);
    const __m512 k = exp_k(t);
    __m512 r = _mm512_fnmadd_ps(k, V(0.693359375f), t);
    r = _mm512_fnmadd_ps(k, V(-2.12194440e-4f), r);
    return _mm512_scalef_ps(exp_poly(r), k);
}

/* m * exp(a + b) as vm_expm_f32: a exact, |b| tiny (below ulp(a)), a + b in [-800, 0];
 * k is rounded from a alone, |r| may then exceed ln2/2 by |b|, which the polynomial
 * does not notice */
PYNN_INLINE __m512 expm(__m512 a, __m512 b, __m512 m)
{
    const __m512 k = exp_k(a);
    __m512 r = _mm512_fnmadd_ps(k, V(0.693359375f), a);
    r = _mm512_add_ps(r, b);
    r = _mm512_fnmadd_ps(k, V(-2.12194440e-4f), r);
    return _mm512_scalef_ps(_mm512_mul_ps(exp_poly(r), m), k);
}

/* ---- sigmoid and tanh ------------------------------------------------------------------ */
/* vm_sigmoid2_f32: sigmoid(x), and sigmoid(-x) into *one_minus, from e = exp(-|x|) */
PYNN_INLINE __m512 sigmoid2(__m512 x, __m512 *one_minus)
{
    const __m512 e = exp_nonpos(_mm512_or_ps(x, V(-0.0f)));
    const __m512 r = _mm512_div_ps(V(1.0f), _mm512_add_ps(V(1.0f), e));
    const __m512 er = _mm512_mul_ps(e, r);
    const __mmask16 neg = negative(x);
    *one_minus = _mm512_mask_blend_ps(neg, er, r);
    return _mm512_mask_blend_ps(neg, r, er);
}

/* vm_sigmoid_f32: (x < 0 ? e : 1) / (1 + e), e = exp(-|x|) */
PYNN_INLINE __m512 sigmoid(__m512 x)
{
    const __m512 e = exp_nonpos(_mm512_or_ps(x, V(-0.0f)));
    return _mm512_div_ps(_mm512_mask_blend_ps(negative(x), V(1.0f), e),
                         _mm512_add_ps(V(1.0f), e));
}

/* vm_tanh_f32: (1 - e)/(1 + e) from e = exp(-2|x|) = 2^k (1 + p), then x's sign */
PYNN_INLINE __m512 tanh_(__m512 x)
{
    const __m512 h = _mm512_max_ps(V(-20.0f), _mm512_or_ps(x, V(-0.0f)));
    const __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(h, V(2.88539008177792682f), V(0x1.8p23f)),
                                   V(0x1.8p23f));
    __m512 r = _mm512_fnmadd_ps(k, V(0.3466796875f), h);
    r = _mm512_fnmadd_ps(k, V(-1.0609722085e-4f), r);
    __m512 q = V(4.4424030930e-2f);
    q = _mm512_fmadd_ps(q, r, V(1.3386529684e-1f));
    q = _mm512_fmadd_ps(q, r, V(3.3333760500e-1f));
    q = _mm512_fmadd_ps(q, r, V(6.6666173935e-1f));
    q = _mm512_fmadd_ps(q, r, V(9.9999994040e-1f));
    const __m512 ph = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r);
    const __m512 s2 = _mm512_scalef_ps(V(2.0f), k);
    const __m512 num = _mm512_fnmadd_ps(s2, ph, _mm512_fnmadd_ps(V(0.5f), s2, V(1.0f)));
    const __m512 den = _mm512_fmadd_ps(s2, ph, _mm512_fmadd_ps(V(0.5f), s2, V(1.0f)));
    /* bitwise (sign of x) | (quotient without its sign): 0xca takes b where a is set */
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        sign, _mm512_castps_si512(x), _mm512_castps_si512(_mm512_div_ps(num, den)), 0xca));
}

/* x * sigmoid(x), -inf raised to -FLT_MAX so that silu(-inf) = -FLT_MAX * 0 */
PYNN_INLINE __m512 silu(__m512 x)
{
    return _mm512_mul_ps(_mm512_max_ps(V(-FLT_MAX), x), sigmoid(x));
}

/* x sigmoid(2w), 2w = 2 sqrt(2/pi) (x + c x^3) */
PYNN_INLINE __m512 gelu_tanh(__m512 x)
{
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    const __m512 w2 = _mm512_mul_ps(V((float)GELU_TANH_2K),
                                    _mm512_fmadd_ps(V((float)GELU_TANH_C), x3, x));
    return _mm512_mul_ps(_mm512_max_ps(V(-FLT_MAX), x), sigmoid(w2));
}

/* sigmoid(x) sigmoid(-x) = r * (e r), r = 1/(1 + e): sigmoid2's product whichever
 * way its blends go */
PYNN_INLINE __m512 sigmoid_slope(__m512 x)
{
    const __m512 e = exp_nonpos(_mm512_or_ps(x, V(-0.0f)));
    const __m512 r = _mm512_div_ps(V(1.0f), _mm512_add_ps(V(1.0f), e));
    return _mm512_mul_ps(r, _mm512_mul_ps(e, r));
}

PYNN_INLINE __m512 sigmoid_grad(__m512 dy, __m512 x)
{
    return _mm512_mul_ps(dy, sigmoid_slope(x));
}

PYNN_INLINE __m512 tanh_grad(__m512 dy, __m512 x)
{
    return _mm512_mul_ps(dy, _mm512_mul_ps(V(4.0f), sigmoid_slope(_mm512_mul_ps(V(2.0f), x))));
}

PYNN_INLINE __m512 silu_grad(__m512 dy, __m512 x)
{
    __m512 sc;
    x = clamp(x, (float)GRAD_CLAMP);
    const __m512 s = sigmoid2(x, &sc);
    return _mm512_mul_ps(dy, _mm512_mul_ps(s, _mm512_fmadd_ps(x, sc, V(1.0f))));
}

PYNN_INLINE __m512 gelu_tanh_grad(__m512 dy, __m512 x)
{
    x = clamp(x, (float)GRAD_CLAMP);
    const __m512 x2 = _mm512_mul_ps(x, x);
    const __m512 x3 = _mm512_mul_ps(x2, x);
    const __m512 w2 = _mm512_mul_ps(V((float)GELU_TANH_2K),
                                    _mm512_fmadd_ps(V((float)GELU_TANH_C), x3, x));
    const __m512 c3 = V((float)(3.0 * GELU_TANH_C));
    const __m512 dw2 = _mm512_mul_ps(V((float)GELU_TANH_2K), _mm512_fmadd_ps(c3, x2, V(1.0f)));
    __m512 sc;
    const __m512 s = sigmoid2(w2, &sc);
    return _mm512_mul_ps(dy, _mm512_mul_ps(s, _mm512_fmadd_ps(_mm512_mul_ps(x, sc), dw2,
                                                              V(1.0f))));
}

/* ---- GELU (vm_gelu_f32, vm_gelu_grad_f32) ---------------------------------------------- */
/* For z = |x| clamped: R(z), and -z^2/2 = *a + *b exactly: *a the rounded product
 * (-z/2) z, *b its rounding error, which an FMA gives exactly (vm_gauss_tail_f32 splits z
 * into halves instead, for targets without FMA) */
PYNN_INLINE __m512 gauss_tail(__m512 z, __m512 *a, __m512 *b)
{
    const __m512 hz = _mm512_mul_ps(V(-0.5f), z);
    *a = _mm512_mul_ps(hz, z);
    *b = _mm512_fmsub_ps(hz, z, *a);
    const __m512 u = _mm512_mul_ps(V(0.707106781186547524f), z);
    const __m512 t = _mm512_div_ps(V(1.0f), _mm512_add_ps(V(1.0f), u));
    const __m512 v = _mm512_mul_ps(u, t);
    const __mmask16 near = _mm512_cmp_ps_mask(t, V(0.5f), _CMP_GE_OQ);
    const __m512 s = _mm512_mask_sub_ps(_mm512_sub_ps(t, V(0.540000021f)), near,
                                        V(1.0f - 0.540000021f), v);
    __m512 p = V(-3.488989472e-01f);
    p = _mm512_fmadd_ps(p, s, V(2.430975139e-01f));
    p = _mm512_fmadd_ps(p, s, V(1.776393354e-01f));
    p = _mm512_fmadd_ps(p, s, V(-2.789341807e-01f));
    p = _mm512_fmadd_ps(p, s, V(1.507696509e-01f));
    p = _mm512_fmadd_ps(p, s, V(1.840470545e-02f));
    p = _mm512_fmadd_ps(p, s, V(-1.553941965e-01f));
    p = _mm512_fmadd_ps(p, s, V(1.719392389e-01f));
    p = _mm512_fmadd_ps(p, s, V(-2.560118958e-02f));
    p = _mm512_fmadd_ps(p, s, V(-1.959336698e-01f));
    p = _mm512_fmadd_ps(p, s, V(2.221748531e-01f));
    p = _mm512_fmadd_ps(p, s, V(4.367819726e-01f));
    return _mm512_mask_blend_ps(near, _mm512_mul_ps(t, p), _mm512_fnmadd_ps(v, p, p));
}

/* x - zT for x >= 0, -zT for x < 0, zT = z T(z) = |x| Phi(-|x|) */
PYNN_INLINE __m512 gelu(__m512 x)
{
    const __m512 z = _mm512_min_ps(V(16.0f), _mm512_abs_ps(x));
    __m512 a, b;
    const __m512 r = gauss_tail(z, &a, &b);
    const __m512 zt = expm(a, b, _mm512_mul_ps(z, r));
    return _mm512_mask_sub_ps(_mm512_sub_ps(x, zt), negative(x), V(0.0f), zt);
}

/* Phi(x) + x phi(x) = 1 - d for x >= 0, d for x < 0, d = T(z) - z phi(z) */
PYNN_INLINE __m512 gelu_grad(__m512 dy, __m512 x)
{
    const __m512 z = _mm512_min_ps(V(16.0f), _mm512_abs_ps(x));
    __m512 a, b;
    const __m512 r = gauss_tail(z, &a, &b);
    const __m512 d = expm(a, b, _mm512_fnmadd_ps(z, V(0.398942280401432678f), r));
    return _mm512_mul_ps(dy, _mm512_mask_blend_ps(negative(x), _mm512_sub_ps(V(1.0f), d), d));
}

/* ---- loops ------------------------------------------------------------------------------ */
/* The element functions are inlined into these (always_inline with a constant pointer).
 * Full vectors, then the last partial one under a mask, through the same function. */
PYNN_INLINE void map1(float *y, const float *x, int64_t n, __m512 (*f)(__m512))
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

PYNN_INLINE void map2(float *dx, const float *dy, const float *x, int64_t n,
                      __m512 (*f)(__m512, __m512))
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dx + i, f(_mm512_loadu_ps(dy + i), _mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dx + i, m, f(_mm512_maskz_loadu_ps(m, dy + i),
                                           _mm512_maskz_loadu_ps(m, x + i)));
    }
}

int pynn_eltwise_zmm_forward_f32(float *y, const float *x, int64_t n, pynn_act act)
{
    switch (act) {
    case PYNN_ACT_SIGMOID: map1(y, x, n, sigmoid); return 1;
    case PYNN_ACT_TANH: map1(y, x, n, tanh_); return 1;
    case PYNN_ACT_SILU: map1(y, x, n, silu); return 1;
    case PYNN_ACT_GELU: map1(y, x, n, gelu); return 1;
    case PYNN_ACT_GELU_TANH: map1(y, x, n, gelu_tanh); return 1;
    default: return 0;
    }
}

int pynn_eltwise_zmm_backward_f32(float *dx, const float *dy, const float *x, int64_t n,
                                  pynn_act act)
{
    switch (act) {
    case PYNN_ACT_SIGMOID: map2(dx, dy, x, n, sigmoid_grad); return 1;
    case PYNN_ACT_TANH: map2(dx, dy, x, n, tanh_grad); return 1;
    case PYNN_ACT_SILU: map2(dx, dy, x, n, silu_grad); return 1;
    case PYNN_ACT_GELU: map2(dx, dy, x, n, gelu_grad); return 1;
    case PYNN_ACT_GELU_TANH: map2(dx, dy, x, n, gelu_tanh_grad); return 1;
    default: return 0;
    }
}
