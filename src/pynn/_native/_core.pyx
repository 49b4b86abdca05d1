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


# ---- rows gathered by index (csrc/gather.c) ----------------------------------------------

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_STRIDES,
                             PyBUF_WRITABLE)
from libc.stdint cimport int64_t
import numpy as np

from pynn.backends.numpy.data import check_take_rows as _check_take_rows

cdef extern from "pynn/pynn.h" nogil:
    pynn_status pynn_take_rows(void *out, const void *x, const int64_t *idx, int64_t count,
                               int64_t rows, int64_t row_bytes, int nthreads)

cdef object _ndarray = np.ndarray, _int64 = np.dtype(np.int64)


def take_rows(out, x, idx):
    """out[i] = x[idx[i]]; see pynn.backends.numpy.data. The common case (NumPy arrays, a
    C-contiguous int64 idx) is checked here; anything else goes through the reference's
    checks first, which raise as it does."""
    if not (type(out) is _ndarray and type(x) is _ndarray and type(idx) is _ndarray
            and (<object>idx).dtype is _int64 and (<object>idx).ndim == 1
            and (<object>idx).flags.c_contiguous and (<object>x).ndim >= 1
            and (<object>x).flags.c_contiguous and (<object>out).flags.c_contiguous
            and (<object>out).flags.writeable and (<object>out).dtype is (<object>x).dtype
            and not (<object>x).dtype.hasobject
            and (<object>out).shape == (<object>idx).shape + (<object>x).shape[1:]):
        idx = _check_take_rows(out, x, idx)  # raises, or returns an int64 array
        idx = np.ascontiguousarray(idx)
    cdef Py_buffer vo, vx, vi
    cdef int status
    cdef int64_t count = len(idx), rows = (<object>x).shape[0]
    cdef int64_t row_bytes = (<object>x).itemsize * ((<object>x).size // rows if rows else 0)
    cdef int nt = _num_threads()
    PyObject_GetBuffer(out, &vo, PyBUF_STRIDES | PyBUF_WRITABLE)
    try:
        PyObject_GetBuffer(x, &vx, PyBUF_STRIDES)
        try:
            if vo.len and vx.len and not disjoint(&vo, &vx):
                raise ValueError("take_rows: out overlaps x")
            PyObject_GetBuffer(idx, &vi, PyBUF_SIMPLE)
            try:
                with nogil:
                    status = pynn_take_rows(vo.buf, vx.buf, <const int64_t *>vi.buf, count,
                                            rows, row_bytes, nt)
            finally:
                PyBuffer_Release(&vi)
        finally:
            PyBuffer_Release(&vx)
    finally:
        PyBuffer_Release(&vo)
    if status == 1:
        _check_take_rows(out, x, idx)  # raises the IndexError with the index
    check_status(status, "take_rows")
