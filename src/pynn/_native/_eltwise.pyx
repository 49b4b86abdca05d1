# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Activations, forward and backward (csrc/eltwise.c).

Same names and signatures as pynn.backends.numpy.eltwise, which documents them.
"""
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    ctypedef int pynn_act
    pynn_status pynn_act_forward_f32(float *y, const float *x, pynn_act act,
                                     double negative_slope, int64_t n, int nthreads)
    pynn_status pynn_act_forward_f64(double *y, const double *x, pynn_act act,
                                     double negative_slope, int64_t n, int nthreads)
    pynn_status pynn_act_backward_f32(float *dx, const float *dy, const float *x, pynn_act act,
                                      double negative_slope, int64_t n, int nthreads)
    pynn_status pynn_act_backward_f64(double *dx, const double *dy, const double *x,
                                      pynn_act act, double negative_slope, int64_t n,
                                      int nthreads)
    pynn_status pynn_act_backward_output_f32(float *dx, const float *dy, const float *y,
                                             pynn_act act, int64_t n, int nthreads)
    pynn_status pynn_act_backward_output_f64(double *dx, const double *dy, const double *y,
                                             pynn_act act, int64_t n, int nthreads)

# Codes as in pynn.backends.numpy.eltwise (the pynn_act enum).
cdef enum:
    ACT_SIGMOID = 3
    ACT_TANH = 4
    ACT_COUNT = 8


cdef int check_act(int act, str what) except -1:
    if act < 0 or act >= ACT_COUNT:
        raise ValueError(f"{what}: unknown activation code {act}")
    return 0


cdef int check_size(Py_ssize_t n, Py_ssize_t expected, str name) except -1:
    if n != expected:
        raise ValueError(f"{name} has {n} elements, expected {expected}")
    return 0


def act_forward(real[::1] y, const real[::1] x, int act, double negative_slope):
    """y = act(x); y, x (n,); negative_slope is used by leaky_relu. y may be x."""
    check_act(act, "act_forward")
    check_size(y.shape[0], x.shape[0], "y")
    if x.shape[0] == 0:
        return
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_act_forward_f32(&y[0], &x[0], act, negative_slope, x.shape[0], nt)
        else:
            status = pynn_act_forward_f64(&y[0], &x[0], act, negative_slope, x.shape[0], nt)
    check_status(status, "act_forward")


def act_backward(real[::1] dx, const real[::1] dy, const real[::1] x, int act,
                 double negative_slope):
    """dx = dy * act'(x) from the pre-activation x; dx, dy, x (n,). dx may be dy or x."""
    check_act(act, "act_backward")
    check_size(dy.shape[0], x.shape[0], "dy")
    check_size(dx.shape[0], x.shape[0], "dx")
    if x.shape[0] == 0:
        return
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_act_backward_f32(&dx[0], &dy[0], &x[0], act, negative_slope,
                                           x.shape[0], nt)
        else:
            status = pynn_act_backward_f64(&dx[0], &dy[0], &x[0], act, negative_slope,
                                           x.shape[0], nt)
    check_status(status, "act_backward")


def act_backward_output(real[::1] dx, const real[::1] dy, const real[::1] y, int act):
    """dx = dy * act'(x) from the output y = act(x), for sigmoid (dy y (1 - y)) and tanh
    (dy (1 - y^2)); dx, dy, y (n,). dx may be dy or y."""
    if act != ACT_SIGMOID and act != ACT_TANH:
        raise ValueError(f"act_backward_output: activation code {act} is not sigmoid or tanh")
    check_size(dy.shape[0], y.shape[0], "dy")
    check_size(dx.shape[0], y.shape[0], "dx")
    if y.shape[0] == 0:
        return
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_act_backward_output_f32(&dx[0], &dy[0], &y[0], act, y.shape[0], nt)
        else:
            status = pynn_act_backward_output_f64(&dx[0], &dy[0], &y[0], act, y.shape[0], nt)
    check_status(status, "act_backward_output")
