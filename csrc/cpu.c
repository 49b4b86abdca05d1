/* Instruction-set detection and the ISA in force for run-time dispatch.
 *
 * An ISA counts as available only when the CPU reports it (CPUID) and the OS saves the
 * registers it needs across context switches (XCR0 via XGETBV): a CPU with AVX-512 under
 * an OS or hypervisor that does not enable the ZMM state must not run AVX-512 code.
 * Each extension module holds its own copy of this state; the Python layer sets them
 * all alike (PYNN_FORCE_ISA is read there, not here).
 */
#include "pynn/pynn.h"

#if defined(PYNN_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static pynn_isa detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return PYNN_ISA_GENERIC;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma)
        return PYNN_ISA_GENERIC;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX (YMM) state */
        return PYNN_ISA_GENERIC;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return PYNN_ISA_GENERIC;
    const int avx2 = (b >> 5) & 1;
    if (!avx2)
        return PYNN_ISA_GENERIC;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (f && dq && bw && vl && (xcr0 & 0xE0) == 0xE0) /* opmask, ZMM0-15 high, ZMM16-31 */
        return PYNN_ISA_AVX512;
    return PYNN_ISA_AVX2;
}
#else
static pynn_isa detect(void) { return PYNN_ISA_GENERIC; }
#endif

static volatile int best_isa = -1;
static volatile int current_isa = -1;

pynn_isa pynn_cpu_best_isa(void)
{
    if (best_isa < 0)
        best_isa = (int)detect(); /* idempotent: a race writes the same value */
    return (pynn_isa)best_isa;
}

pynn_isa pynn_cpu_isa(void)
{
    if (current_isa < 0)
        current_isa = (int)pynn_cpu_best_isa();
    return (pynn_isa)current_isa;
}

pynn_status pynn_cpu_set_isa(pynn_isa isa)
{
    if ((int)isa < (int)PYNN_ISA_GENERIC || (int)isa > (int)PYNN_ISA_AVX512)
        return PYNN_ERR_ARG;
    if ((int)isa > (int)pynn_cpu_best_isa())
        return PYNN_ERR_ISA;
    current_isa = (int)isa;
    return PYNN_OK;
}

const char *pynn_isa_name(pynn_isa isa)
{
    switch (isa) {
    case PYNN_ISA_AVX512: return "avx512";
    case PYNN_ISA_AVX2: return "avx2";
    case PYNN_ISA_GENERIC: return "generic";
    }
    return "unknown";
}
