# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Fused optimizer steps (csrc/optim.c), in place on lists of parameters and their state.

Same names and signatures as pynn.backends.numpy.optim, which documents them. One call
updates every entry, in one C call. Arrays are read through the buffer protocol directly
rather than typed memoryviews: a step over a small model takes a few microseconds, and a
memoryview per array would add about as much again.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    pynn_status pynn_sgd_update_f32(float **param, float **momentum_buffer, const float **grad,
                                    double lr, double momentum, double dampening, int nesterov,
                                    double weight_decay, int first_step, const int64_t *n,
                                    int64_t count, int nthreads)
    pynn_status pynn_sgd_update_f64(double **param, double **momentum_buffer,
                                    const double **grad, double lr, double momentum,
                                    double dampening, int nesterov, double weight_decay,
                                    int first_step, const int64_t *n, int64_t count,
                                    int nthreads)
    pynn_status pynn_adam_update_f32(float **param, float **exp_avg, float **exp_avg_sq,
                                     float **max_exp_avg_sq, const float **grad, int64_t step,
                                     double lr, double beta1, double beta2, double eps,
                                     double weight_decay, int decoupled_weight_decay,
                                     const int64_t *n, int64_t count, int nthreads)
    pynn_status pynn_adam_update_f64(double **param, double **exp_avg, double **exp_avg_sq,
                                     double **max_exp_avg_sq, const double **grad, int64_t step,
                                     double lr, double beta1, double beta2, double eps,
                                     double weight_decay, int decoupled_weight_decay,
                                     const int64_t *n, int64_t count, int nthreads)
    pynn_status pynn_rmsprop_update_f32(float **param, float **square_avg,
                                        float **momentum_buffer, float **grad_avg,
                                        const float **grad, double lr, double alpha, double eps,
                                        double weight_decay, double momentum, const int64_t *n,
                                        int64_t count, int nthreads)
    pynn_status pynn_rmsprop_update_f64(double **param, double **square_avg,
                                        double **momentum_buffer, double **grad_avg,
                                        const double **grad, double lr, double alpha,
                                        double eps, double weight_decay, double momentum,
                                        const int64_t *n, int64_t count, int nthreads)


cdef class Lists:
    """The buffers of one call's arrays, held until the kernel returns. `count` entries
    in up to `roles` lists; the first list added (the parameters) sets each entry's
    element count n[e] and the float type, `kind` (b'f' float32, b'd' float64)."""
    cdef Py_buffer *views
    cdef Py_ssize_t held, added, count
    cdef void **data
    cdef int64_t *n
    cdef char kind

    def __cinit__(self, list params not None, Py_ssize_t roles):
        self.count = len(params)
        self.views = <Py_buffer *>PyMem_Malloc(roles * self.count * sizeof(Py_buffer))
        self.data = <void **>PyMem_Malloc(roles * self.count * sizeof(void *))
        self.n = <int64_t *>PyMem_Malloc(self.count * sizeof(int64_t))
        if self.views == NULL or self.data == NULL or self.n == NULL:
            raise MemoryError("optimizer step: could not allocate the array lists")

    def __dealloc__(self):
        for i in range(self.held):
            PyBuffer_Release(&self.views[i])
        PyMem_Free(self.views)
        PyMem_Free(self.data)
        PyMem_Free(self.n)

    cdef void **add(self, list arrays, str name, bint writable) except? NULL:
        """Holds the buffers of `arrays` (C-contiguous, one per entry) and returns their
        data pointers; NULL for arrays None (an unused optional state)."""
        if arrays is None:
            return NULL
        if len(arrays) != self.count:
            raise ValueError(f"{name} has {len(arrays)} entries, params has {self.count}")
        cdef void **ptrs = self.data + self.added * self.count
        cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
        cdef Py_buffer *v
        cdef const char *fmt
        cdef Py_ssize_t e, size
        for e in range(self.count):
            v = &self.views[self.held]
            try:
                PyObject_GetBuffer(arrays[e], v, flags)
            except BufferError as exc:
                raise ValueError(f"{name}[{e}]: {exc}") from None
            except TypeError as exc:
                raise TypeError(f"{name}[{e}]: {exc}") from None
            self.held += 1
            fmt = v.format
            if fmt[0] == b"@" or fmt[0] == b"=":
                fmt += 1
            if (fmt[0] != b"f" and fmt[0] != b"d") or fmt[1] != 0:
                raise ValueError(f"{name}[{e}] must hold native float32 or float64, not format "
                                 f"{v.format.decode()!r}")
            size = v.len // v.itemsize
            if self.added == 0:
                if e == 0:
                    self.kind = fmt[0]
                self.n[e] = size
            elif size != self.n[e]:
                raise ValueError(f"{name}[{e}] has {size} elements, expected {self.n[e]}")
            if fmt[0] != self.kind:
                raise ValueError(f"{name}[{e}] has a different dtype from params[0]")
            ptrs[e] = v.buf
        self.added += 1
        return ptrs


def sgd_update(list params not None, list momentum_buffers, list grads not None, double lr,
               double momentum, double dampening, bint nesterov, double weight_decay,
               bint first_step):
    """One SGD step over lists of arrays; see pynn.backends.numpy.optim."""
    cdef Lists a = Lists(params, 3)
    cdef void **p = a.add(params, "params", True)
    cdef void **buf = a.add(momentum_buffers, "momentum_buffers", True)
    cdef void **g = a.add(grads, "grads", False)
    cdef int nt = _num_threads()
    cdef int status = 0
    if a.count == 0:
        return
    with nogil:
        if a.kind == b"f":
            status = pynn_sgd_update_f32(<float **>p, <float **>buf, <const float **>g, lr,
                                         momentum, dampening, nesterov, weight_decay, first_step,
                                         a.n, a.count, nt)
        else:
            status = pynn_sgd_update_f64(<double **>p, <double **>buf, <const double **>g, lr,
                                         momentum, dampening, nesterov, weight_decay, first_step,
                                         a.n, a.count, nt)
    check_status(status, "sgd_update")


def adam_update(list params not None, list exp_avgs not None, list exp_avg_sqs not None,
                list max_exp_avg_sqs, list grads not None, int64_t step, double lr,
                double beta1, double beta2, double eps, double weight_decay,
                bint decoupled_weight_decay):
    """One Adam/AdamW step over lists of arrays; see pynn.backends.numpy.optim."""
    cdef Lists a = Lists(params, 5)
    cdef void **p = a.add(params, "params", True)
    cdef void **m = a.add(exp_avgs, "exp_avgs", True)
    cdef void **v = a.add(exp_avg_sqs, "exp_avg_sqs", True)
    cdef void **vmax = a.add(max_exp_avg_sqs, "max_exp_avg_sqs", True)
    cdef void **g = a.add(grads, "grads", False)
    cdef int nt = _num_threads()
    cdef int status = 0
    if a.count == 0:
        return
    with nogil:
        if a.kind == b"f":
            status = pynn_adam_update_f32(<float **>p, <float **>m, <float **>v, <float **>vmax,
                                          <const float **>g, step, lr, beta1, beta2, eps,
                                          weight_decay, decoupled_weight_decay, a.n, a.count, nt)
        else:
            status = pynn_adam_update_f64(<double **>p, <double **>m, <double **>v,
                                          <double **>vmax, <const double **>g, step, lr, beta1,
                                          beta2, eps, weight_decay, decoupled_weight_decay, a.n,
                                          a.count, nt)
    check_status(status, "adam_update")


def rmsprop_update(list params not None, list square_avgs not None, list momentum_buffers,
                   list grad_avgs, list grads not None, double lr, double alpha, double eps,
                   double weight_decay, double momentum):
    """One RMSprop step over lists of arrays; see pynn.backends.numpy.optim."""
    cdef Lists a = Lists(params, 5)
    cdef void **p = a.add(params, "params", True)
    cdef void **sq = a.add(square_avgs, "square_avgs", True)
    cdef void **buf = a.add(momentum_buffers, "momentum_buffers", True)
    cdef void **gavg = a.add(grad_avgs, "grad_avgs", True)
    cdef void **g = a.add(grads, "grads", False)
    cdef int nt = _num_threads()
    cdef int status = 0
    if a.count == 0:
        return
    with nogil:
        if a.kind == b"f":
            status = pynn_rmsprop_update_f32(<float **>p, <float **>sq, <float **>buf,
                                             <float **>gavg, <const float **>g, lr, alpha, eps,
                                             weight_decay, momentum, a.n, a.count, nt)
        else:
            status = pynn_rmsprop_update_f64(<double **>p, <double **>sq, <double **>buf,
                                             <double **>gavg, <const double **>g, lr, alpha,
                                             eps, weight_decay, momentum, a.n, a.count, nt)
    check_status(status, "rmsprop_update")
