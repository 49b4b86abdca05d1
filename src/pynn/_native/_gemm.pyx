# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Matrix multiply with a fused epilogue, and the column sum of linear layers' backward
(csrc/gemm/).

Same names and signatures as pynn.backends.numpy.gemm, which documents them. A matrix is
a 2-D array whose rows are contiguous (unit stride in the last dimension); its row stride
is the leading dimension handed to C.

Arrays are read through the buffer protocol directly, into structs on the stack, rather
than typed memoryviews or an object per array: a product of small matrices takes a few
microseconds, and fused-type dispatch plus a memoryview per operand would add more than
one to every call.
"""
from cpython.buffer cimport (PyBUF_RECORDS, PyBUF_RECORDS_RO, PyBUF_SIMPLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from libc.stdint cimport int64_t

import numpy as np

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
    pynn_status pynn_gemm_tile_peak(double *gflops, int nthreads)
    pynn_status pynn_act_backward_f32(float *dx, const float *dy, const float *x, pynn_act act,
                                      double negative_slope, int64_t n, int nthreads)
    pynn_status pynn_act_backward_f64(double *dx, const double *dy, const double *x,
                                      pynn_act act, double negative_slope, int64_t n,
                                      int nthreads)

cdef enum:
    ACT_COUNT = 8
    ACT_RELU = 1  # pynn_act
    MAX_OPERANDS = 8
    # Results of at least this many bytes start on a 64-byte line (_empty_lined): below
    # it, the extra view costs about what the aligned stores save (32 x 256 x 10: ~0.25 us
    # either way).
    LINED_MIN_BYTES = 65536


cdef struct Matrix:
    # An array's buffer seen as a stack of matrices: `count` matrices (rows, cols) `stride`
    # elements apart, rows `ld` elements apart and contiguous. A 1-D array is one row; a
    # 2-D array one matrix.
    char kind                       # b'f' (float32) or b'd' (float64)
    char *data
    Py_ssize_t ndim, count, rows, cols
    int64_t stride, ld


cdef struct Operands:
    # The buffers a call holds while its kernel runs, released together at the end. On the
    # stack rather than in an object per array: a product of small matrices takes a few
    # microseconds, of which allocating those objects would take a tenth.
    Py_buffer views[MAX_OPERANDS]
    int held


cdef int take(Operands *ops, Matrix *x, obj, str name, bint writable, int ndim) except -1:
    """Acquires obj's buffer into ops (released by release(ops) whatever happens next) and
    describes it in x, checking its format, dimensions and strides."""
    PyObject_GetBuffer(obj, &ops.views[ops.held], PyBUF_RECORDS if writable else PyBUF_RECORDS_RO)
    cdef Py_buffer *v = &ops.views[ops.held]
    ops.held += 1
    x.kind = float_kind(v.format)
    if not x.kind:
        raise ValueError(f"{name} must hold native float32 or float64, not format "
                         f"{v.format.decode()!r}")
    if v.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {v.ndim}-D")
    x.data = <char *>v.buf
    x.ndim = ndim
    cdef Py_ssize_t item = v.itemsize
    x.count = v.shape[0] if ndim == 3 else 1
    x.rows = v.shape[ndim - 2] if ndim >= 2 else 1
    x.cols = v.shape[ndim - 1]
    cdef Py_ssize_t col_stride = v.strides[ndim - 1]
    cdef Py_ssize_t row_stride = v.strides[ndim - 2] if ndim >= 2 else 0
    if x.cols > 1 and col_stride != item:
        raise ValueError(f"{name}: rows must be contiguous (element stride "
                         f"{col_stride} bytes)")
    if x.rows <= 1 or x.cols == 0:
        x.ld = x.cols if x.cols > 1 else 1
    elif row_stride < x.cols * item or row_stride % item:
        raise ValueError(f"{name}: row stride {row_stride} bytes does not fit rows of "
                         f"{x.cols} elements")
    else:
        x.ld = row_stride // item
    x.stride = 0
    if ndim == 3 and x.count > 1:
        if v.strides[0] < 0 or v.strides[0] % item:
            raise ValueError(f"{name}: the matrices must be a non-negative whole number "
                             "of elements apart")
        x.stride = v.strides[0] // item
    return 0


cdef void release(Operands *ops) noexcept:
    cdef int i
    for i in range(ops.held):
        PyBuffer_Release(&ops.views[i])
    ops.held = 0


cdef int shape_is(const Matrix *x, Py_ssize_t rows, Py_ssize_t cols, str name) except -1:
    if x.ndim == 1 and x.cols != cols:
        raise ValueError(f"{name} has {x.cols} elements, expected {cols}")
    if x.rows != rows or x.cols != cols:
        raise ValueError(f"{name} has matrices of shape ({x.rows}, {x.cols}), "
                         f"expected ({rows}, {cols})")
    return 0


cdef int same_kind(const Matrix *x, const Matrix *other, str name, str other_name) except -1:
    if x.kind != other.kind:
        raise ValueError(f"{name} and {other_name} must have the same dtype")
    return 0


def gemm_fused(c, a, b, bint trans_a, bint trans_b, double alpha, double beta, bias,
               int activation, double negative_slope, preact):
    """c = act(alpha * op(a) @ op(b) + beta * c + bias); see pynn.backends.numpy.gemm."""
    cdef Operands ops
    cdef Matrix C, A, B, BIAS, P
    ops.held = 0
    try:
        take(&ops, &C, c, "c", True, 2)
        take(&ops, &A, a, "a", False, 2)
        take(&ops, &B, b, "b", False, 2)
        if bias is not None:
            take(&ops, &BIAS, bias, "bias", False, 1)
        if preact is not None:
            take(&ops, &P, preact, "preact", True, 2)
        return _gemm_fused(&C, &A, &B, trans_a, trans_b, alpha, beta,
                           &BIAS if bias is not None else NULL, activation, negative_slope,
                           &P if preact is not None else NULL)
    finally:
        release(&ops)


cdef _gemm_fused(const Matrix *C, const Matrix *A, const Matrix *B, bint trans_a,
                 bint trans_b, double alpha, double beta, const Matrix *BIAS, int activation,
                 double negative_slope, const Matrix *P):
    cdef Py_ssize_t m = C.rows, n = C.cols
    cdef Py_ssize_t k = A.rows if trans_a else A.cols
    if activation < 0 or activation >= ACT_COUNT:
        raise ValueError(f"gemm_fused: unknown activation code {activation}")
    same_kind(A, C, "a", "c")
    same_kind(B, C, "b", "c")
    shape_is(A, k if trans_a else m, m if trans_a else k, "a")
    shape_is(B, n if trans_b else k, k if trans_b else n, "b")
    if BIAS != NULL:
        same_kind(BIAS, C, "bias", "c")
        shape_is(BIAS, 1, n, "bias")
    if P != NULL:
        same_kind(P, C, "preact", "c")
        shape_is(P, m, n, "preact")
    if m == 0 or n == 0:
        return
    cdef int64_t ldp = P.ld if P != NULL else 0
    cdef char *pp = P.data if P != NULL else NULL
    cdef const char *pbias = BIAS.data if BIAS != NULL else NULL
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


cdef object _ndarray = np.ndarray, _empty = np.empty
cdef object _float32 = np.dtype(np.float32), _float64 = np.dtype(np.float64)
cdef object _uint8 = np.dtype(np.uint8)


cdef object _empty_lined(shape, dtype, Py_ssize_t nbytes):
    """np.empty(shape, dtype) (nbytes in all), starting on a 64-byte cache line when it is
    large. malloc aligns to 16 bytes only, and NumPy's arrays of 128 KB and more start 16
    bytes into a line: every vector store of a GEMM tile then writes two lines, and two
    threads splitting the columns of C share a line at the end of every row. A 512 x 256
    result of a product over k = 10 took 28 us on one thread that way, 22.5 us aligned.
    The array is a view of a uint8 buffer 64 bytes longer (its base)."""
    if nbytes < LINED_MIN_BYTES:
        return _empty(shape, dtype)
    cdef Py_buffer v
    buf = _empty(nbytes + 64, _uint8)
    PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE)
    cdef Py_ssize_t off = (64 - <Py_ssize_t>(<size_t>v.buf % 64)) % 64
    PyBuffer_Release(&v)
    return _ndarray(shape, dtype, buf, off)


cdef bint as_operand(const Py_buffer *v, Matrix *x, bint *trans) noexcept:
    """Describes the 2-D array in v as the kernels read it: itself when its rows are
    contiguous, else its transpose (stored x, trans set) when its columns are; False for
    any other layout (negative, zero or odd strides)."""
    cdef Py_ssize_t item = v.itemsize, r = v.shape[0], c = v.shape[1]
    cdef Py_ssize_t s0 = v.strides[0], s1 = v.strides[1]
    if (c <= 1 or s1 == item) and (r <= 1 or (s0 >= c * item and s0 % item == 0)):
        trans[0] = False
        x.rows, x.cols = r, c
        x.ld = s0 // item if r > 1 and s0 > 0 else (c if c > 1 else 1)
    elif (r <= 1 or s0 == item) and (c <= 1 or (s1 >= r * item and s1 % item == 0)):
        trans[0] = True
        x.rows, x.cols = c, r
        x.ld = s1 // item if c > 1 and s1 > 0 else (r if r > 1 else 1)
    else:
        return False
    x.kind = b"f" if item == 4 else b"d"
    x.data = <char *>v.buf
    x.ndim = 2
    x.count = 1
    x.stride = 0
    return True


def matmul_2d(a, b, out=None):
    """a @ b, for NumPy arrays a (m, k) and b (k, n) of one dtype, float32 or float64: a new
    C-contiguous array, or `out` (m, n) of that dtype with contiguous rows, apart from a
    and b; None for anything else (see pynn.backends.numpy.gemm). Everything is checked
    here, in C: a product of small matrices takes a few microseconds, and the Python-level
    checks of ops.matmul would add one to it."""
    if type(a) is not _ndarray or type(b) is not _ndarray:
        return None
    dtype = (<object>a).dtype
    if (dtype is not _float32 and dtype is not _float64) or (<object>b).dtype is not dtype:
        return None
    if out is not None and (type(out) is not _ndarray or (<object>out).dtype is not dtype):
        return None
    cdef Operands ops
    cdef Matrix A, B, C
    cdef bint ta, tb, tc
    cdef Py_ssize_t m, n
    ops.held = 0
    try:
        PyObject_GetBuffer(a, &ops.views[0], PyBUF_RECORDS_RO)
        ops.held = 1
        PyObject_GetBuffer(b, &ops.views[1], PyBUF_RECORDS_RO)
        ops.held = 2
        if ops.views[0].ndim != 2 or ops.views[1].ndim != 2 \
                or ops.views[0].shape[1] != ops.views[1].shape[0] \
                or not as_operand(&ops.views[0], &A, &ta) \
                or not as_operand(&ops.views[1], &B, &tb):
            return None
        m, n = ops.views[0].shape[0], ops.views[1].shape[1]
        if out is None:
            c = _empty_lined((m, n), dtype, m * n * ops.views[0].itemsize)
            take(&ops, &C, c, "c", True, 2)
        else:
            # anything unusual (read-only, another shape or layout, overlap) is left to the
            # general path, which raises or copies as NumPy does
            if not (<object>out).flags.writeable:
                return None
            PyObject_GetBuffer(out, &ops.views[2], PyBUF_RECORDS)
            ops.held = 3
            if ops.views[2].ndim != 2 or ops.views[2].shape[0] != m \
                    or ops.views[2].shape[1] != n or m == 0 or n == 0 \
                    or not as_operand(&ops.views[2], &C, &tc) or tc \
                    or not disjoint(&ops.views[2], &ops.views[0]) \
                    or not disjoint(&ops.views[2], &ops.views[1]):
                return None
            c = out
        _gemm_fused(&C, &A, &B, ta, tb, 1.0, 0.0, NULL, 0, 0.0, NULL)
        return c
    finally:
        release(&ops)


def gemm_batched(c, a, b, bint trans_a, bint trans_b, double alpha, double beta):
    """c[e] = alpha * op(a[e]) @ op(b[e]) + beta * c[e]; see pynn.backends.numpy.gemm."""
    cdef Operands ops
    cdef Matrix C, A, B
    ops.held = 0
    try:
        take(&ops, &C, c, "c", True, 3)
        take(&ops, &A, a, "a", False, 3)
        take(&ops, &B, b, "b", False, 3)
        _gemm_batched(&C, &A, &B, trans_a, trans_b, alpha, beta)
    finally:
        release(&ops)


cdef _gemm_batched(const Matrix *C, const Matrix *A, const Matrix *B, bint trans_a,
                   bint trans_b, double alpha, double beta):
    cdef Py_ssize_t batch = C.count, m = C.rows, n = C.cols
    cdef Py_ssize_t k = A.rows if trans_a else A.cols
    same_kind(A, C, "a", "c")
    same_kind(B, C, "b", "c")
    if A.count != batch and A.count != 1:
        raise ValueError(f"a has {A.count} matrices, expected 1 or {batch}")
    if B.count != batch and B.count != 1:
        raise ValueError(f"b has {B.count} matrices, expected 1 or {batch}")
    shape_is(A, k if trans_a else m, m if trans_a else k, "a")
    shape_is(B, n if trans_b else k, k if trans_b else n, "b")
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
    cdef Operands ops
    cdef Matrix DB, DY
    ops.held = 0
    try:
        take(&ops, &DB, db, "db", True, 1)
        take(&ops, &DY, dy, "dy", False, 2)
        _gemm_colsum(&DB, &DY, accumulate)
    finally:
        release(&ops)


cdef _gemm_colsum(const Matrix *DB, const Matrix *DY, bint accumulate):
    same_kind(DY, DB, "dy", "db")
    shape_is(DB, 1, DY.cols, "db")
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


def linear_backward(dx, dw, db, dz, dy, x, w, preact, int activation, double negative_slope,
                    bint accumulate):
    """A linear layer's whole backward pass (activation, dx, dw, db) in one call; see
    pynn.backends.numpy.gemm."""
    cdef Operands ops
    cdef Matrix DX, DW, DB, DZ, DY, X, W, P
    ops.held = 0
    if activation < 0 or activation >= ACT_COUNT:
        raise ValueError(f"linear_backward: unknown activation code {activation}")
    try:
        take(&ops, &DY, dy, "dy", False, 2)
        take(&ops, &X, x, "x", False, 2)
        take(&ops, &W, w, "w", False, 2)
        take(&ops, &DW, dw, "dw", True, 2)
        if activation:
            take(&ops, &DZ, dz, "dz", True, 2)
            take(&ops, &P, preact, "preact", False, 2)
        if dx is not None:
            take(&ops, &DX, dx, "dx", True, 2)
        if db is not None:
            take(&ops, &DB, db, "db", True, 1)
        _linear_backward(&DX if dx is not None else NULL, &DW, &DB if db is not None else NULL,
                         &DZ if activation else NULL, &DY, &X, &W,
                         &P if activation else NULL, activation, negative_slope, accumulate)
    finally:
        release(&ops)


cdef int contiguous_rows(const Matrix *x, str name) except -1:
    if x.rows > 1 and x.ld != x.cols:
        raise ValueError(f"{name} must be C-contiguous")
    return 0


cdef _linear_backward(const Matrix *DX, const Matrix *DW, const Matrix *DB, const Matrix *DZ,
                      const Matrix *DY, const Matrix *X, const Matrix *W, const Matrix *P,
                      int activation, double negative_slope, bint accumulate):
    cdef Py_ssize_t m = DY.rows, n = DY.cols, k = X.cols
    same_kind(X, DY, "x", "dy")
    same_kind(W, DY, "w", "dy")
    same_kind(DW, DY, "dw", "dy")
    shape_is(X, m, k, "x")
    shape_is(W, n, k, "w")
    shape_is(DW, n, k, "dw")
    if DX != NULL:
        same_kind(DX, DY, "dx", "dy")
        shape_is(DX, m, k, "dx")
    if DB != NULL:
        same_kind(DB, DY, "db", "dy")
        shape_is(DB, 1, n, "db")
    if DZ != NULL:
        # the activation kernel works on flat arrays
        same_kind(DZ, DY, "dz", "dy")
        same_kind(P, DY, "preact", "dy")
        shape_is(DZ, m, n, "dz")
        shape_is(P, m, n, "preact")
        contiguous_rows(DZ, "dz")
        contiguous_rows(P, "preact")
        contiguous_rows(DY, "dy")
    if n == 0 or k == 0:
        return
    cdef const char *g = DZ.data if DZ != NULL else DY.data
    cdef int64_t ldg = DZ.ld if DZ != NULL else DY.ld
    cdef double beta = 1.0 if accumulate else 0.0
    cdef int nt = _num_threads()
    cdef int status = 0
    with nogil:
        if DY.kind == b"f":
            if DZ != NULL and m:
                status = pynn_act_backward_f32(<float *>DZ.data, <const float *>DY.data,
                                               <const float *>P.data, activation,
                                               negative_slope, m * n, nt)
            if status == 0 and DX != NULL and m:
                status = pynn_gemm_f32(<float *>DX.data, DX.ld, NULL, 0, <const float *>g, ldg,
                                       <const float *>W.data, W.ld, NULL, 0, 0, 1.0, 0.0, 0,
                                       0.0, m, k, n, nt)
            if status == 0:
                status = pynn_gemm_f32(<float *>DW.data, DW.ld, NULL, 0, <const float *>g, ldg,
                                       <const float *>X.data, X.ld, NULL, 1, 0, 1.0,
                                       <float>beta, 0, 0.0, n, k, m, nt)
            if status == 0 and DB != NULL:
                status = pynn_gemm_colsum_f32(<float *>DB.data, <const float *>g, ldg,
                                              accumulate, m, n, nt)
        else:
            if DZ != NULL and m:
                status = pynn_act_backward_f64(<double *>DZ.data, <const double *>DY.data,
                                               <const double *>P.data, activation,
                                               negative_slope, m * n, nt)
            if status == 0 and DX != NULL and m:
                status = pynn_gemm_f64(<double *>DX.data, DX.ld, NULL, 0, <const double *>g,
                                       ldg, <const double *>W.data, W.ld, NULL, 0, 0, 1.0,
                                       0.0, 0, 0.0, m, k, n, nt)
            if status == 0:
                status = pynn_gemm_f64(<double *>DW.data, DW.ld, NULL, 0, <const double *>g,
                                       ldg, <const double *>X.data, X.ld, NULL, 1, 0, 1.0,
                                       beta, 0, 0.0, n, k, m, nt)
            if status == 0 and DB != NULL:
                status = pynn_gemm_colsum_f64(<double *>DB.data, <const double *>g, ldg,
                                              accumulate, m, n, nt)
    check_status(status, "linear_backward")


ctypedef pynn_status (*rate_fn)(double *gflops, int nthreads) noexcept nogil


cdef double _measured(rate_fn measure, int nthreads, str what) except -1.0:
    if nthreads < 1:
        raise ValueError(f"nthreads must be at least 1, got {nthreads}")
    cdef double gflops = 0
    cdef int status
    with nogil:
        status = measure(&gflops, nthreads)
    check_status(status, what)
    return gflops


def _fma_peak_gflops(int nthreads):
    """The measured float32 FMA peak of `nthreads` threads, GFLOP/s (about 50 ms)."""
    return _measured(pynn_gemm_fma_peak, nthreads, "fma_peak")


def _tile_peak_gflops(int nthreads):
    """The float32 micro-kernel's GFLOP/s on `nthreads` threads with its panels in L1
    (about 20 ms): the ceiling of a large product here, below the FMA peak by what the
    kernel's loads and epilogue cost."""
    return _measured(pynn_gemm_tile_peak, nthreads, "tile_peak")


# -- a stack of linear layers in one call ------------------------------------------------
#
# nn.Sequential's forward and backward when every step is a Linear layer (with an optional
# fused activation): the calls the layers would make one by one, made from here, with the
# same arguments and so the same bits, without a few Python calls per layer in between. A
# small model's training step is mostly those calls. Everything is checked before anything
# is computed; what these functions do not take gives None (see pynn.backends.numpy.gemm).

from libc.stdlib cimport calloc, free, malloc
from libc.math cimport isfinite


cdef struct Held:
    # Buffers held for the whole call, released together at the end.
    Py_buffer *views
    Py_ssize_t count, cap


cdef int held_init(Held *h, Py_ssize_t cap) except -1:
    h.count = 0
    h.cap = cap
    h.views = <Py_buffer *>malloc(cap * sizeof(Py_buffer))
    if h.views == NULL:
        raise MemoryError()
    return 0


cdef Py_buffer *hold(Held *h, obj, bint writable) except NULL:
    if h.count == h.cap:
        raise RuntimeError("linear_stack: too many buffers")  # a bug here, not the caller's
    PyObject_GetBuffer(obj, &h.views[h.count], PyBUF_RECORDS if writable else PyBUF_RECORDS_RO)
    h.count += 1
    return &h.views[h.count - 1]


cdef void held_release(Held *h) noexcept:
    cdef Py_ssize_t i
    for i in range(h.count):
        PyBuffer_Release(&h.views[i])
    free(h.views)
    h.views = NULL
    h.count = 0


cdef bint plain(obj, dtype, int ndim):
    return type(obj) is _ndarray and (<object>obj).dtype is dtype and (<object>obj).ndim == ndim


cdef bint hold_operand(Held *h, obj, dtype, Matrix *x, bint *trans,
                       Py_ssize_t rows, Py_ssize_t cols) except -1:
    """Holds a 2-D obj (rows, cols) of dtype with rows or columns contiguous, described as
    the GEMM reads it; False for anything else."""
    if not plain(obj, dtype, 2):
        return False
    cdef Py_buffer *v = hold(h, obj, False)
    return v.shape[0] == rows and v.shape[1] == cols and as_operand(v, x, trans)


cdef bint hold_rows(Held *h, obj, dtype, Matrix *x, Py_ssize_t rows, Py_ssize_t cols,
                    bint writable) except -1:
    """Holds a C-contiguous obj of dtype, (rows, cols), or (cols,) when rows is 0; False
    for anything else (read-only, when writable)."""
    if not plain(obj, dtype, 1 if rows == 0 else 2):
        return False
    if writable and not (<object>obj).flags.writeable:
        return False
    cdef Py_buffer *v = hold(h, obj, writable)
    cdef Py_ssize_t item = v.itemsize
    if rows == 0:
        if v.shape[0] != cols or (cols > 1 and v.strides[0] != item):
            return False
        x.ndim, x.rows = 1, 1
    else:
        if v.shape[0] != rows or v.shape[1] != cols or (cols > 1 and v.strides[1] != item) \
                or (rows > 1 and v.strides[0] != cols * item):
            return False
        x.ndim, x.rows = 2, rows
    x.kind = b"f" if item == 4 else b"d"
    x.data = <char *>v.buf
    x.count, x.cols, x.stride = 1, cols, 0
    x.ld = cols if cols > 1 else 1
    return True


cdef bint apart(const Py_buffer *v, Held *h, Py_ssize_t inputs) noexcept:
    """v shares no byte with the first `inputs` buffers held."""
    cdef Py_ssize_t i
    for i in range(inputs):
        if not disjoint(v, &h.views[i]):
            return False
    return True


cdef object hold_new(Held *h, Matrix *x, Py_ssize_t rows, Py_ssize_t cols, dtype,
                     Py_ssize_t item):
    """A new array (rows, cols), or (cols,) when rows is 0, of dtype (item bytes an
    element), held writable and described in x."""
    shape = (<object>cols,) if rows == 0 else (<object>rows, <object>cols)
    a = _empty_lined(shape, dtype, (rows if rows else 1) * cols * item)
    hold_rows(h, a, dtype, x, rows, cols, True)
    return a


cdef struct Layer:
    # What the stack's forward and backward know of one layer. A Matrix whose data is NULL
    # is absent (no bias; a gradient not added to).
    Matrix x, w, bias, preact, dw, db
    bint tx, tw  # x, w stored transposed
    int code     # the activation
    double slope


cdef int new_layers(activations, slopes, Py_ssize_t count, Layer **layers) except -1:
    """Allocates layers[0] (count zeroed entries, the caller frees it) and copies the
    activation codes and slopes in; 1 if they are usable, 0 if not (a non-finite slope),
    an error for an unknown code."""
    cdef Layer *L = <Layer *>calloc(count, sizeof(Layer))
    if L == NULL:
        raise MemoryError()
    layers[0] = L
    if len(activations) != count or len(slopes) != count:
        return 0
    cdef Py_ssize_t i
    for i in range(count):
        L[i].code = activations[i]
        if L[i].code < 0 or L[i].code >= ACT_COUNT:
            raise ValueError(f"linear_stack: unknown activation code {L[i].code}")
        L[i].slope = slopes[i]
        if not isfinite(L[i].slope):
            return 0
    return 1


def linear_stack_forward(x, weights, biases, activations, slopes, bint keep):
    """Forward through linear layers with fused activations; see pynn.backends.numpy.gemm."""
    if type(x) is not _ndarray or type(weights) is not list or type(biases) is not list:
        return None
    dtype = (<object>x).dtype
    cdef Py_ssize_t count = len(weights)
    if (dtype is not _float32 and dtype is not _float64) or count == 0 \
            or len(biases) != count or (<object>x).ndim != 2:
        return None
    cdef Py_ssize_t m = (<object>x).shape[0], k = (<object>x).shape[1], n, i
    cdef Py_ssize_t item = (<object>dtype).itemsize
    if m == 0 or k == 0:
        return None
    cdef Held h
    cdef Matrix X, Y, Z
    cdef bint tx
    cdef Layer *L = NULL
    h.views = NULL
    try:
        if not new_layers(activations, slopes, count, &L):
            return None
        held_init(&h, 1 + 4 * count)
        if not hold_operand(&h, x, dtype, &X, &tx, m, k):
            return None
        for i in range(count):
            w = weights[i]
            if not plain(w, dtype, 2):
                return None
            n = (<object>w).shape[0]
            if n == 0 or not hold_operand(&h, w, dtype, &L[i].w, &L[i].tw, n, k):
                return None
            b = biases[i]
            if b is not None and not hold_rows(&h, b, dtype, &L[i].bias, 0, n, False):
                return None
            k = n
        ys, zs = [], []
        for i in range(count):
            n = (<object>weights[i]).shape[0]
            y = hold_new(&h, &Y, m, n, dtype, item)
            z = None
            # ReLU below the last layer: backward reads the output (see the reference)
            from_output = keep and L[i].code == ACT_RELU and i < count - 1
            if keep and L[i].code and not from_output:
                z = hold_new(&h, &Z, m, n, dtype, item)
            _gemm_fused(&Y, &X, &L[i].w, tx, not L[i].tw, 1.0, 0.0,
                        &L[i].bias if L[i].bias.data != NULL else NULL, L[i].code,
                        L[i].slope, &Z if z is not None else NULL)
            ys.append(y)
            zs.append(y if from_output else z)
            X, tx = Y, False
        return ys, zs
    finally:
        if h.views != NULL:
            held_release(&h)
        free(L)


cdef int act_backward(const Matrix *DZ, const Matrix *G, const Matrix *P, int code,
                      double slope) except -1:
    cdef int64_t size = DZ.rows * DZ.cols
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if DZ.kind == b"f":
            status = pynn_act_backward_f32(<float *>DZ.data, <const float *>G.data,
                                           <const float *>P.data, code, slope, size, nt)
        else:
            status = pynn_act_backward_f64(<double *>DZ.data, <const double *>G.data,
                                           <const double *>P.data, code, slope, size, nt)
    return check_status(status, "linear_stack_backward")


def linear_stack_backward(dy, xs, weights, preacts, activations, slopes, dws, dbs,
                          bint input_grad):
    """Backward through linear_stack_forward's layers; see pynn.backends.numpy.gemm."""
    if type(dy) is not _ndarray or type(xs) is not list or type(weights) is not list \
            or type(preacts) is not list or type(dws) is not list or type(dbs) is not list:
        return None
    dtype = (<object>dy).dtype
    cdef Py_ssize_t count = len(weights)
    if (dtype is not _float32 and dtype is not _float64) or count == 0 or len(xs) != count \
            or len(preacts) != count or len(dws) != count or len(dbs) != count:
        return None
    x0 = xs[0]
    if not plain(x0, dtype, 2):
        return None
    cdef Py_ssize_t m = (<object>x0).shape[0], n, k, i, inputs
    cdef Py_ssize_t item = (<object>dtype).itemsize
    if m == 0:
        return None
    cdef Held h
    cdef Matrix DY, G, DZ, DX
    cdef Matrix *grad
    cdef Layer *L = NULL
    h.views = NULL
    try:
        if not new_layers(activations, slopes, count, &L):
            return None
        held_init(&h, 1 + 9 * count)
        # the inputs first (held in front, for the overlap checks), then the gradients
        for i in range(count):
            w = weights[i]
            if not plain(w, dtype, 2):
                return None
            n, k = (<object>w).shape
            if n == 0 or k == 0 or not hold_operand(&h, w, dtype, &L[i].w, &L[i].tw, n, k) \
                    or not hold_operand(&h, xs[i], dtype, &L[i].x, &L[i].tx, m, k):
                return None
            if i and (<object>weights[i - 1]).shape[0] != k:
                return None
            if L[i].code and not hold_rows(&h, preacts[i], dtype, &L[i].preact, m, n, False):
                return None
        if not hold_rows(&h, dy, dtype, &DY, m, (<object>weights[count - 1]).shape[0], False):
            return None
        inputs = h.count
        for i in range(count):
            n, k = (<object>weights[i]).shape
            for grads, is_w in ((dws, True), (dbs, False)):
                g = grads[i]
                if g is None or g is False:
                    continue
                if not hold_rows(&h, g, dtype, &L[i].dw if is_w else &L[i].db, n if is_w else 0,
                                 k if is_w else n, True) \
                        or not apart(&h.views[h.count - 1], &h, inputs):
                    return None
        dws, dbs = list(dws), list(dbs)
        G = DY
        gx = None
        for i in range(count - 1, -1, -1):
            n, k = (<object>weights[i]).shape
            DZ = G
            if L[i].code:
                # in place below the last layer, where G is the input gradient computed
                # above (ours to overwrite); the caller's dy is only read
                if i == count - 1:
                    hold_new(&h, &DZ, m, n, dtype, item)
                act_backward(&DZ, &G, &L[i].preact, L[i].code, L[i].slope)
            gx = None
            if i or input_grad:
                gx = hold_new(&h, &DX, m, k, dtype, item)
                _gemm_fused(&DX, &DZ, &L[i].w, False, L[i].tw, 1.0, 0.0, NULL, 0, 0.0, NULL)
            for grads, is_w in ((dws, True), (dbs, False)):
                g = grads[i]
                if g is False:
                    grads[i] = None
                    continue
                grad = &L[i].dw if is_w else &L[i].db
                accumulate = g is not None
                if not accumulate:
                    grads[i] = hold_new(&h, grad, n if is_w else 0, k if is_w else n, dtype,
                                        item)
                if is_w:
                    _gemm_fused(grad, &DZ, &L[i].x, True, L[i].tx, 1.0,
                                1.0 if accumulate else 0.0, NULL, 0, 0.0, NULL)
                else:
                    _gemm_colsum(grad, &DZ, accumulate)
            G = DX
        return gx, dws, dbs
    finally:
        if h.views != NULL:
            held_release(&h)
        free(L)
