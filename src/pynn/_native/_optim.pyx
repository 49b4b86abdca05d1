# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Fused optimizer steps (csrc/optim.c), in place on lists of parameters and their state.

Same names and signatures as pynn.backends.numpy.optim, which documents them; one call
updates every entry, in one C call. Unlike other wrappers, these make every check that
pynn.ops makes of the arrays (written arrays: ndarrays, C-contiguous and writeable; one
float dtype; each entry's shapes equal; no written array overlapping another array),
and take only gradients that need no conversion: pynn.ops hands them the arrays
unchecked, since its checks in Python would cost more than a small model's whole update,
and makes its own checks only of what these refuse. Arrays are read through the buffer
protocol rather than typed memoryviews, which would add about a microsecond per call.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport qsort

from numpy import ndarray

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


cdef struct Span:
    uintptr_t start, end     # the bytes [start, end) of one array
    Py_ssize_t role, entry   # which list (in the order added) and which entry
    bint written


cdef int by_start(const void *a, const void *b) noexcept nogil:
    cdef uintptr_t x = (<const Span *>a).start, y = (<const Span *>b).start
    return (x > y) - (x < y)


cdef class ArrayLists:
    """The buffers of one call's arrays, held until the kernel returns: `count` entries
    in at most `roles` lists, params first, which set each entry's shape and the float
    type, `kind` (b'f' float32, b'd' float64). n[e] is entry e's element count."""
    cdef Py_buffer *views
    cdef Span *spans
    cdef void **data
    cdef int64_t *n
    cdef Py_ssize_t held, nspans, count
    cdef char kind
    cdef list names

    def __cinit__(self, list params not None, Py_ssize_t roles):
        self.count = len(params)
        self.kind = b"f"  # until params[0] says; empty lists are still checked, as float32
        self.names = []
        self.views = <Py_buffer *>PyMem_Malloc(roles * self.count * sizeof(Py_buffer))
        self.spans = <Span *>PyMem_Malloc(roles * self.count * sizeof(Span))
        self.data = <void **>PyMem_Malloc(roles * self.count * sizeof(void *))
        self.n = <int64_t *>PyMem_Malloc(self.count * sizeof(int64_t))
        if not (self.views and self.spans and self.data and self.n):
            raise MemoryError("optimizer step: could not allocate the array lists")

    def __dealloc__(self):
        for i in range(self.held):
            PyBuffer_Release(&self.views[i])
        PyMem_Free(self.views)
        PyMem_Free(self.spans)
        PyMem_Free(self.data)
        PyMem_Free(self.n)

    cdef void **add(self, list arrays, str name, bint written) except? NULL:
        """Holds the buffers of `arrays`, one per entry, and returns their data pointers;
        NULL for arrays None (an unused optional state). Written arrays must be ndarrays;
        the gradients, only read, may be any buffer of the right type and shape."""
        if arrays is None:
            return NULL
        if len(arrays) != self.count:
            raise ValueError(f"{name} has {len(arrays)} entries, params has {self.count}")
        cdef Py_ssize_t role = len(self.names)
        self.names.append(name)
        cdef void **ptrs = self.data + role * self.count
        cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if written else 0)
        cdef Py_buffer *v
        cdef Py_buffer *like
        cdef char kind
        cdef Py_ssize_t e, k
        for e in range(self.count):
            a = arrays[e]
            if written and not isinstance(a, ndarray):
                raise TypeError(f"{name}[{e}] must be a numpy.ndarray, not {type(a).__name__}")
            v = &self.views[self.held]
            try:
                PyObject_GetBuffer(a, v, flags)
            except TypeError as exc:  # not a buffer
                raise TypeError(f"{name}[{e}]: {exc}") from None
            except (BufferError, ValueError) as exc:  # not C-contiguous, or read-only
                raise ValueError(f"{name}[{e}]: {exc}") from None
            self.held += 1
            kind = float_kind(v.format)
            if not kind:
                raise ValueError(f"{name}[{e}] must hold native float32 or float64, not format "
                                 f"{v.format.decode()!r}")
            if role == 0:
                if e == 0:
                    self.kind = kind
                self.n[e] = v.len // v.itemsize
            else:
                like = &self.views[e]
                if v.ndim != like.ndim:
                    raise ValueError(f"{name}[{e}] is {v.ndim}-D, params[{e}] {like.ndim}-D")
                for k in range(v.ndim):
                    if v.shape[k] != like.shape[k]:
                        raise ValueError(f"{name}[{e}] differs in shape from params[{e}]")
            if kind != self.kind:
                raise ValueError(f"{name}[{e}] differs in dtype from params[0]")
            ptrs[e] = v.buf
            if v.len:
                self.spans[self.nspans] = Span(<uintptr_t>v.buf, <uintptr_t>v.buf + v.len,
                                               role, e, written)
                self.nspans += 1
        return ptrs

    cdef int check_disjoint(self) except -1:
        """Refuses arrays where a written one overlaps any other (the gradients may share
        memory with each other): a sweep over the arrays sorted by address."""
        qsort(self.spans, self.nspans, sizeof(Span), by_start)
        cdef uintptr_t end_any = 0, end_written = 0
        cdef Span *last_any = NULL
        cdef Span *last_written = NULL
        cdef Span *s
        cdef Span *other
        for i in range(self.nspans):
            s = &self.spans[i]
            if s.written and s.start < end_any:
                other = last_any
            elif s.start < end_written:
                other = last_written
            else:
                other = NULL
            if other != NULL:
                raise ValueError(f"{self.names[s.role]}[{s.entry}] overlaps "
                                 f"{self.names[other.role]}[{other.entry}]")
            if s.end > end_any:
                end_any, last_any = s.end, s
            if s.written and s.end > end_written:
                end_written, last_written = s.end, s
        return 0


def sgd_update(list params not None, list momentum_buffers, list grads not None, double lr,
               double momentum, double dampening, bint nesterov, double weight_decay,
               bint first_step):
    """One SGD step over lists of arrays; see pynn.backends.numpy.optim."""
    cdef ArrayLists a = ArrayLists(params, 3)
    cdef void **p = a.add(params, "params", True)
    cdef void **buf = a.add(momentum_buffers, "momentum_buffers", True)
    cdef void **g = a.add(grads, "grads", False)
    a.check_disjoint()
    cdef int nt = _num_threads()
    cdef int status
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
    cdef ArrayLists a = ArrayLists(params, 5)
    cdef void **p = a.add(params, "params", True)
    cdef void **m = a.add(exp_avgs, "exp_avgs", True)
    cdef void **v = a.add(exp_avg_sqs, "exp_avg_sqs", True)
    cdef void **vmax = a.add(max_exp_avg_sqs, "max_exp_avg_sqs", True)
    cdef void **g = a.add(grads, "grads", False)
    a.check_disjoint()
    cdef int nt = _num_threads()
    cdef int status
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
    cdef ArrayLists a = ArrayLists(params, 5)
    cdef void **p = a.add(params, "params", True)
    cdef void **sq = a.add(square_avgs, "square_avgs", True)
    cdef void **buf = a.add(momentum_buffers, "momentum_buffers", True)
    cdef void **gavg = a.add(grad_avgs, "grad_avgs", True)
    cdef void **g = a.add(grads, "grads", False)
    a.check_disjoint()
    cdef int nt = _num_threads()
    cdef int status
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
