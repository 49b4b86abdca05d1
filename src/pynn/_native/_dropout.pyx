# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Inverted dropout with a counter-based mask (csrc/dropout.c).

Same names and signatures as pynn.backends.numpy.dropout, which documents them.
"""
from libc.stdint cimport int64_t, uint64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    pynn_status pynn_dropout_forward_f32(float *y, const float *x, double p, uint64_t seed,
                                         int64_t n, int nthreads)
    pynn_status pynn_dropout_forward_f64(double *y, const double *x, double p, uint64_t seed,
                                         int64_t n, int nthreads)
    pynn_status pynn_dropout_backward_f32(float *dx, const float *dy, double p, uint64_t seed,
                                          int64_t n, int nthreads)
    pynn_status pynn_dropout_backward_f64(double *dx, const double *dy, double p, uint64_t seed,
                                          int64_t n, int nthreads)


def dropout_forward(real[::1] y not None, const real[::1] x not None, double p, uint64_t seed):
    """y = x * keep / (1 - p) over flat arrays; y may be x."""
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} elements, expected {x.shape[0]}")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_dropout_forward_f32(&y[0], &x[0], p, seed, x.shape[0], nt)
        else:
            status = pynn_dropout_forward_f64(&y[0], &x[0], p, seed, x.shape[0], nt)
    check_status(status, "dropout_forward")


def dropout_backward(real[::1] dx not None, const real[::1] dy not None, double p,
                     uint64_t seed):
    """dx = dy * keep / (1 - p) with the forward mask; dx may be dy."""
    if dx.shape[0] != dy.shape[0]:
        raise ValueError(f"dx has {dx.shape[0]} elements, expected {dy.shape[0]}")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_dropout_backward_f32(&dx[0], &dy[0], p, seed, dy.shape[0], nt)
        else:
            status = pynn_dropout_backward_f64(&dx[0], &dy[0], p, seed, dy.shape[0], nt)
    check_status(status, "dropout_backward")
