# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Batch normalisation and the bias gradient (csrc/norm.c).

Same names and signatures as pynn.backends.numpy.norm, which documents them.
"""
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    pynn_status pynn_batch_norm_forward_f32(float *y, float *saved_mean, float *saved_invstd,
                                            float *running_mean, float *running_var,
                                            const float *x, const float *gamma,
                                            const float *beta, int training, double momentum,
                                            double eps, int64_t N, int64_t C, int64_t S,
                                            int nthreads)
    pynn_status pynn_batch_norm_forward_f64(double *y, double *saved_mean, double *saved_invstd,
                                            double *running_mean, double *running_var,
                                            const double *x, const double *gamma,
                                            const double *beta, int training, double momentum,
                                            double eps, int64_t N, int64_t C, int64_t S,
                                            int nthreads)
    pynn_status pynn_batch_norm_backward_f32(float *dx, float *dgamma, float *dbeta,
                                             const float *dy, const float *x, const float *gamma,
                                             const float *saved_mean, const float *saved_invstd,
                                             int training, int64_t N, int64_t C, int64_t S,
                                             int nthreads)
    pynn_status pynn_batch_norm_backward_f64(double *dx, double *dgamma, double *dbeta,
                                             const double *dy, const double *x,
                                             const double *gamma, const double *saved_mean,
                                             const double *saved_invstd, int training, int64_t N,
                                             int64_t C, int64_t S, int nthreads)
    pynn_status pynn_bias_backward_f32(float *db, const float *dy, int64_t N, int64_t C,
                                       int64_t S, int nthreads)
    pynn_status pynn_bias_backward_f64(double *db, const double *dy, int64_t N, int64_t C,
                                       int64_t S, int nthreads)


cdef int check_shape(tuple shape, tuple expected, str name) except -1:
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}, expected {expected}")
    return 0


cdef int check_channels(object a, Py_ssize_t C, str name) except -1:
    """`a` (a 1-D memoryview or None) has C entries."""
    if a is not None and a.shape[0] != C:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {C}")
    return 0


def batch_norm_forward(real[:, :, ::1] y not None, real[::1] saved_mean not None,
                       real[::1] saved_invstd not None, real[::1] running_mean,
                       real[::1] running_var, const real[:, :, ::1] x not None,
                       const real[::1] gamma, const real[::1] beta, bint training,
                       double momentum, double eps):
    """Batch norm forward over x (N, C, S); see pynn.backends.numpy.norm."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    check_shape((y.shape[0], y.shape[1], y.shape[2]), (N, C, S), "y")
    for a, name in ((saved_mean, "saved_mean"), (saved_invstd, "saved_invstd"),
                    (running_mean, "running_mean"), (running_var, "running_var"),
                    (gamma, "gamma"), (beta, "beta")):
        check_channels(a, C, name)
    cdef real *rm = NULL
    cdef real *rv = NULL
    cdef const real *g = NULL
    cdef const real *b = NULL
    if running_mean is not None:
        rm = &running_mean[0]
    if running_var is not None:
        rv = &running_var[0]
    if gamma is not None:
        g = &gamma[0]
    if beta is not None:
        b = &beta[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_batch_norm_forward_f32(&y[0, 0, 0], &saved_mean[0], &saved_invstd[0],
                                                 rm, rv, &x[0, 0, 0], g, b, training, momentum,
                                                 eps, N, C, S, nt)
        else:
            status = pynn_batch_norm_forward_f64(&y[0, 0, 0], &saved_mean[0], &saved_invstd[0],
                                                 rm, rv, &x[0, 0, 0], g, b, training, momentum,
                                                 eps, N, C, S, nt)
    check_status(status, "batch_norm_forward")


def batch_norm_backward(real[:, :, ::1] dx not None, real[::1] dgamma, real[::1] dbeta,
                        const real[:, :, ::1] dy not None, const real[:, :, ::1] x not None,
                        const real[::1] gamma, const real[::1] saved_mean not None,
                        const real[::1] saved_invstd not None, bint training):
    """Batch norm backward over (N, C, S); see pynn.backends.numpy.norm."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    check_shape((dy.shape[0], dy.shape[1], dy.shape[2]), (N, C, S), "dy")
    check_shape((dx.shape[0], dx.shape[1], dx.shape[2]), (N, C, S), "dx")
    for a, name in ((dgamma, "dgamma"), (dbeta, "dbeta"), (gamma, "gamma"),
                    (saved_mean, "saved_mean"), (saved_invstd, "saved_invstd")):
        check_channels(a, C, name)
    cdef real *dg = NULL
    cdef real *db = NULL
    cdef const real *g = NULL
    if dgamma is not None:
        dg = &dgamma[0]
    if dbeta is not None:
        db = &dbeta[0]
    if gamma is not None:
        g = &gamma[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_batch_norm_backward_f32(&dx[0, 0, 0], dg, db, &dy[0, 0, 0],
                                                  &x[0, 0, 0], g, &saved_mean[0],
                                                  &saved_invstd[0], training, N, C, S, nt)
        else:
            status = pynn_batch_norm_backward_f64(&dx[0, 0, 0], dg, db, &dy[0, 0, 0],
                                                  &x[0, 0, 0], g, &saved_mean[0],
                                                  &saved_invstd[0], training, N, C, S, nt)
    check_status(status, "batch_norm_backward")


def bias_backward(real[::1] db not None, const real[:, :, ::1] dy not None):
    """db (C) = sum of dy (N, C, S) over axes 0 and 2."""
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], S = dy.shape[2]
    check_channels(db, C, "db")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_bias_backward_f32(&db[0], &dy[0, 0, 0], N, C, S, nt)
        else:
            status = pynn_bias_backward_f64(&db[0], &dy[0, 0, 0], N, C, S, nt)
    check_status(status, "bias_backward")
