# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""CPU features and OpenMP facts of the native build."""

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    int pynn_openmp_enabled()
    int pynn_openmp_max_threads()

ISA_NAMES = ("generic", "avx2", "avx512")


def best_isa():
    """Name of the best instruction set this CPU and OS support."""
    return ISA_NAMES[pynn_cpu_best_isa()]


def openmp_enabled():
    return bool(pynn_openmp_enabled())


def openmp_max_threads():
    return pynn_openmp_max_threads()
