# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Fused optimizer steps (csrc/optim.c), in place on the parameter and its state.

Same names and signatures as pynn.backends.numpy.optim, which documents them.
"""
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    pynn_status pynn_sgd_update_f32(float *param, float *momentum_buffer, const float *grad,
                                    double lr, double momentum, double dampening, int nesterov,
                                    double weight_decay, int first_step, int64_t n, int nthreads)
    pynn_status pynn_sgd_update_f64(double *param, double *momentum_buffer, const double *grad,
                                    double lr, double momentum, double dampening, int nesterov,
                                    double weight_decay, int first_step, int64_t n, int nthreads)
    pynn_status pynn_adam_update_f32(float *param, float *exp_avg, float *exp_avg_sq,
                                     float *max_exp_avg_sq, const float *grad, int64_t step,
                                     double lr, double beta1, double beta2, double eps,
                                     double weight_decay, int decoupled_weight_decay, int64_t n,
                                     int nthreads)
    pynn_status pynn_adam_update_f64(double *param, double *exp_avg, double *exp_avg_sq,
                                     double *max_exp_avg_sq, const double *grad, int64_t step,
                                     double lr, double beta1, double beta2, double eps,
                                     double weight_decay, int decoupled_weight_decay, int64_t n,
                                     int nthreads)
    pynn_status pynn_rmsprop_update_f32(float *param, float *square_avg, float *momentum_buffer,
                                        float *grad_avg, const float *grad, double lr,
                                        double alpha, double eps, double weight_decay,
                                        double momentum, int64_t n, int nthreads)
    pynn_status pynn_rmsprop_update_f64(double *param, double *square_avg,
                                        double *momentum_buffer, double *grad_avg,
                                        const double *grad, double lr, double alpha, double eps,
                                        double weight_decay, double momentum, int64_t n,
                                        int nthreads)


cdef int check_len(object a, Py_ssize_t n, str name) except -1:
    """`a` (a 1-D memoryview or None) has n elements."""
    if a is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} elements, expected {n}")
    return 0


def sgd_update(real[::1] param not None, real[::1] momentum_buffer, const real[::1] grad not None,
               double lr, double momentum, double dampening, bint nesterov, double weight_decay,
               bint first_step):
    """One SGD step over flat arrays; see pynn.backends.numpy.optim."""
    cdef Py_ssize_t n = param.shape[0]
    check_len(grad, n, "grad")
    check_len(momentum_buffer, n, "momentum_buffer")
    cdef real *buf = NULL
    if momentum_buffer is not None:
        buf = &momentum_buffer[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_sgd_update_f32(&param[0], buf, &grad[0], lr, momentum, dampening,
                                         nesterov, weight_decay, first_step, n, nt)
        else:
            status = pynn_sgd_update_f64(&param[0], buf, &grad[0], lr, momentum, dampening,
                                         nesterov, weight_decay, first_step, n, nt)
    check_status(status, "sgd_update")


def adam_update(real[::1] param not None, real[::1] exp_avg not None,
                real[::1] exp_avg_sq not None, real[::1] max_exp_avg_sq,
                const real[::1] grad not None, int64_t step, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint decoupled_weight_decay):
    """One Adam/AdamW step over flat arrays; see pynn.backends.numpy.optim."""
    cdef Py_ssize_t n = param.shape[0]
    check_len(grad, n, "grad")
    check_len(exp_avg, n, "exp_avg")
    check_len(exp_avg_sq, n, "exp_avg_sq")
    check_len(max_exp_avg_sq, n, "max_exp_avg_sq")
    cdef real *vmax = NULL
    if max_exp_avg_sq is not None:
        vmax = &max_exp_avg_sq[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_adam_update_f32(&param[0], &exp_avg[0], &exp_avg_sq[0], vmax,
                                          &grad[0], step, lr, beta1, beta2, eps, weight_decay,
                                          decoupled_weight_decay, n, nt)
        else:
            status = pynn_adam_update_f64(&param[0], &exp_avg[0], &exp_avg_sq[0], vmax,
                                          &grad[0], step, lr, beta1, beta2, eps, weight_decay,
                                          decoupled_weight_decay, n, nt)
    check_status(status, "adam_update")


def rmsprop_update(real[::1] param not None, real[::1] square_avg not None,
                   real[::1] momentum_buffer, real[::1] grad_avg, const real[::1] grad not None,
                   double lr, double alpha, double eps, double weight_decay, double momentum):
    """One RMSprop step over flat arrays; see pynn.backends.numpy.optim."""
    cdef Py_ssize_t n = param.shape[0]
    check_len(grad, n, "grad")
    check_len(square_avg, n, "square_avg")
    check_len(momentum_buffer, n, "momentum_buffer")
    check_len(grad_avg, n, "grad_avg")
    cdef real *buf = NULL
    cdef real *gavg = NULL
    if momentum_buffer is not None:
        buf = &momentum_buffer[0]
    if grad_avg is not None:
        gavg = &grad_avg[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_rmsprop_update_f32(&param[0], &square_avg[0], buf, gavg, &grad[0], lr,
                                             alpha, eps, weight_decay, momentum, n, nt)
        else:
            status = pynn_rmsprop_update_f64(&param[0], &square_avg[0], buf, gavg, &grad[0], lr,
                                             alpha, eps, weight_decay, momentum, n, nt)
    check_status(status, "rmsprop_update")
