# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Matrix multiply with a fused epilogue, and the column sum of linear layers' backward
(csrc/gemm/).

Same names and signatures as pynn.backends.numpy.gemm, which documents them. A matrix is
a 2-D array whose rows are contiguous (unit stride in the last dimension); its row stride
is the leading dimension handed to C.

Arrays are read through the buffer protocol directly rather than typed memoryviews: a
product of small matrices takes a few microseconds, and fused-type dispatch plus a
memoryview per operand would add more than one to every call.
"""
from cpython.buffer cimport (PyBUF_RECORDS, PyBUF_RECORDS_RO, PyBuffer_Release,
                             PyObject_GetBuffer)
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    ctypedef int pynn_act
    pynn_status pynn_gemm_f32(float *c, int64_t ldc, float *preact, int64_t ldp,
                              const float *a, int64_t lda, const float *b, int64_t ldb,
                              const float *bias, int trans_a, int trans_b, float alpha,
                              float beta, pynn_act act, float negative_slope, int64_t m,
                              int64_t n, int64_t k, int nthreads)
    pynn_status pynn_gemm_f64(double *c, int64_t ldc, double *preact, int64_t ldp,
                              const double *a, int64_t lda, const double *b, int64_t ldb,
                              const double *bias, int trans_a, int trans_b, double alpha,
                              double beta, pynn_act act, double negative_slope, int64_t m,
                              int64_t n, int64_t k, int nthreads)
    pynn_status pynn_gemm_batched_f32(float *c, int64_t ldc, int64_t stride_c, const float *a,
                                      int64_t lda, int64_t stride_a, const float *b,
                                      int64_t ldb, int64_t stride_b, int trans_a, int trans_b,
                                      float alpha, float beta, int64_t batch, int64_t m,
                                      int64_t n, int64_t k, int nthreads)
    pynn_status pynn_gemm_batched_f64(double *c, int64_t ldc, int64_t stride_c,
                                      const double *a, int64_t lda, int64_t stride_a,
                                      const double *b, int64_t ldb, int64_t stride_b,
                                      int trans_a, int trans_b, double alpha, double beta,
                                      int64_t batch, int64_t m, int64_t n, int64_t k,
                                      int nthreads)
    pynn_status pynn_gemm_colsum_f32(float *db, const float *dy, int64_t ldy, int accumulate,
                                     int64_t m, int64_t n, int nthreads)
    pynn_status pynn_gemm_colsum_f64(double *db, const double *dy, int64_t ldy, int accumulate,
                                     int64_t m, int64_t n, int nthreads)
    pynn_status pynn_gemm_fma_peak(double *gflops, int nthreads)

cdef enum:
    ACT_COUNT = 8


cdef class Array:
    """An array's buffer, held while a kernel runs, seen as a stack of matrices: `count`
    matrices (rows, cols) `stride` elements apart, rows `ld` elements apart and contiguous.
    A 1-D array is one row; a 2-D array one matrix."""
    cdef Py_buffer view
    cdef bint held
    cdef char kind                   # b'f' (float32) or b'd' (float64)
    cdef char *data
    cdef Py_ssize_t count, rows, cols
    cdef int64_t stride, ld

    def __cinit__(self, obj, str name, bint writable, int ndim):
        PyObject_GetBuffer(obj, &self.view, PyBUF_RECORDS if writable else PyBUF_RECORDS_RO)
        self.held = True
        v = &self.view
        fmt = v.format
        if fmt[0] == b"@" or fmt[0] == b"=":
            fmt += 1
        if (fmt[0] != b"f" and fmt[0] != b"d") or fmt[1] != 0:
            raise ValueError(f"{name} must hold native float32 or float64, not format "
                             f"{v.format.decode()!r}")
        if v.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D, got {v.ndim}-D")
        self.kind = fmt[0]
        self.data = <char *>v.buf
        cdef Py_ssize_t item = v.itemsize
        self.count = v.shape[0] if ndim == 3 else 1
        self.rows = v.shape[ndim - 2] if ndim >= 2 else 1
        self.cols = v.shape[ndim - 1]
        cdef Py_ssize_t col_stride = v.strides[ndim - 1]
        cdef Py_ssize_t row_stride = v.strides[ndim - 2] if ndim >= 2 else 0
        if self.cols > 1 and col_stride != item:
            raise ValueError(f"{name}: rows must be contiguous (element stride "
                             f"{col_stride} bytes)")
        if self.rows <= 1 or self.cols == 0:
            self.ld = self.cols if self.cols > 1 else 1
        elif row_stride < self.cols * item or row_stride % item:
            raise ValueError(f"{name}: row stride {row_stride} bytes does not fit rows of "
                             f"{self.cols} elements")
        else:
            self.ld = row_stride // item
        self.stride = 0
        if ndim == 3 and self.count > 1:
            if v.strides[0] < 0 or v.strides[0] % item:
                raise ValueError(f"{name}: the matrices must be a non-negative whole number "
                                 "of elements apart")
            self.stride = v.strides[0] // item

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)

    cdef int shape_is(self, Py_ssize_t rows, Py_ssize_t cols, str name) except -1:
        if self.view.ndim == 1 and self.cols != cols:
            raise ValueError(f"{name} has {self.cols} elements, expected {cols}")
        if self.rows != rows or self.cols != cols:
            raise ValueError(f"{name} has matrices of shape ({self.rows}, {self.cols}), "
                             f"expected ({rows}, {cols})")
        return 0

    cdef int same_kind(self, Array other, str name, str other_name) except -1:
        if self.kind != other.kind:
            raise ValueError(f"{name} and {other_name} must have the same dtype")
        return 0


cdef Array optional(obj, str name, bint writable, int ndim):
    return None if obj is None else Array(obj, name, writable, ndim)


def gemm_fused(c, a, b, bint trans_a, bint trans_b, double alpha, double beta, bias,
               int activation, double negative_slope, preact):
    """c = act(alpha * op(a) @ op(b) + beta * c + bias); see pynn.backends.numpy.gemm."""
    cdef Array C = Array(c, "c", True, 2), A = Array(a, "a", False, 2)
    cdef Array B = Array(b, "b", False, 2), BIAS = optional(bias, "bias", False, 1)
    cdef Array P = optional(preact, "preact", True, 2)
    cdef Py_ssize_t m = C.rows, n = C.cols
    cdef Py_ssize_t k = A.rows if trans_a else A.cols
    if activation < 0 or activation >= ACT_COUNT:
        raise ValueError(f"gemm_fused: unknown activation code {activation}")
    A.same_kind(C, "a", "c")
    B.same_kind(C, "b", "c")
    A.shape_is(k if trans_a else m, m if trans_a else k, "a")
    B.shape_is(n if trans_b else k, k if trans_b else n, "b")
    if BIAS is not None:
        BIAS.same_kind(C, "bias", "c")
        BIAS.shape_is(1, n, "bias")
    if P is not None:
        P.same_kind(C, "preact", "c")
        P.shape_is(m, n, "preact")
    if m == 0 or n == 0:
        return
    cdef int64_t ldp = P.ld if P is not None else 0
    cdef char *pp = P.data if P is not None else NULL
    cdef const char *pbias = BIAS.data if BIAS is not None else NULL
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if C.kind == b"f":
            status = pynn_gemm_f32(<float *>C.data, C.ld, <float *>pp, ldp,
                                   <const float *>A.data, A.ld, <const float *>B.data, B.ld,
                                   <const float *>pbias, trans_a, trans_b, <float>alpha,
                                   <float>beta, activation, <float>negative_slope, m, n, k, nt)
        else:
            status = pynn_gemm_f64(<double *>C.data, C.ld, <double *>pp, ldp,
                                   <const double *>A.data, A.ld, <const double *>B.data, B.ld,
                                   <const double *>pbias, trans_a, trans_b, alpha, beta,
                                   activation, negative_slope, m, n, k, nt)
    check_status(status, "gemm_fused")


def gemm_batched(c, a, b, bint trans_a, bint trans_b, double alpha, double beta):
    """c[e] = alpha * op(a[e]) @ op(b[e]) + beta * c[e]; see pynn.backends.numpy.gemm."""
    cdef Array C = Array(c, "c", True, 3), A = Array(a, "a", False, 3)
    cdef Array B = Array(b, "b", False, 3)
    cdef Py_ssize_t batch = C.count, m = C.rows, n = C.cols
    cdef Py_ssize_t k = A.rows if trans_a else A.cols
    A.same_kind(C, "a", "c")
    B.same_kind(C, "b", "c")
    if A.count != batch and A.count != 1:
        raise ValueError(f"a has {A.count} matrices, expected 1 or {batch}")
    if B.count != batch and B.count != 1:
        raise ValueError(f"b has {B.count} matrices, expected 1 or {batch}")
    A.shape_is(k if trans_a else m, m if trans_a else k, "a")
    B.shape_is(n if trans_b else k, k if trans_b else n, "b")
    if batch == 0 or m == 0 or n == 0:
        return
    if batch > 1 and C.stride < m * C.ld:
        raise ValueError("c: the matrices of the batch overlap")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if C.kind == b"f":
            status = pynn_gemm_batched_f32(<float *>C.data, C.ld, C.stride,
                                           <const float *>A.data, A.ld, A.stride,
                                           <const float *>B.data, B.ld, B.stride, trans_a,
                                           trans_b, <float>alpha, <float>beta, batch, m, n, k,
                                           nt)
        else:
            status = pynn_gemm_batched_f64(<double *>C.data, C.ld, C.stride,
                                           <const double *>A.data, A.ld, A.stride,
                                           <const double *>B.data, B.ld, B.stride, trans_a,
                                           trans_b, alpha, beta, batch, m, n, k, nt)
    check_status(status, "gemm_batched")


def gemm_colsum(db, dy, bint accumulate):
    """db = dy.sum(0), or db += dy.sum(0); see pynn.backends.numpy.gemm."""
    cdef Array DB = Array(db, "db", True, 1), DY = Array(dy, "dy", False, 2)
    DY.same_kind(DB, "dy", "db")
    DB.shape_is(1, DY.cols, "db")
    if DY.cols == 0:
        return
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if DB.kind == b"f":
            status = pynn_gemm_colsum_f32(<float *>DB.data, <const float *>DY.data, DY.ld,
                                          accumulate, DY.rows, DY.cols, nt)
        else:
            status = pynn_gemm_colsum_f64(<double *>DB.data, <const double *>DY.data, DY.ld,
                                          accumulate, DY.rows, DY.cols, nt)
    check_status(status, "gemm_colsum")


def _fma_peak_gflops(int nthreads):
    """The measured float32 FMA peak of `nthreads` threads, GFLOP/s (about 50 ms)."""
    if nthreads < 1:
        raise ValueError(f"nthreads must be at least 1, got {nthreads}")
    cdef double gflops = 0
    cdef int status
    with nogil:
        status = pynn_gemm_fma_peak(&gflops, nthreads)
    check_status(status, "fma_peak")
    return gflops
