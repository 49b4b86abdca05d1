# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Matrix multiply with a fused epilogue, and the column sum of linear layers' backward
(csrc/gemm/).

Same names and signatures as pynn.backends.numpy.gemm, which documents them. A matrix is
a 2-D array whose rows are contiguous (unit stride in the last dimension); its row stride
is the leading dimension handed to C.
"""
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


cdef inline int64_t row_stride(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t stride,
                               Py_ssize_t col_stride, Py_ssize_t itemsize, str name) except -1:
    """The leading dimension (in elements) of a matrix with rows x cols and strides
    (stride, col_stride) in bytes, whose rows must be contiguous; a matrix of one row has
    no meaningful row stride."""
    if cols > 1 and col_stride != itemsize:
        raise ValueError(f"{name}: rows must be contiguous (column stride {col_stride} bytes)")
    if rows <= 1 or cols == 0:
        return cols if cols > 1 else 1
    if stride < cols * itemsize or stride % itemsize:
        raise ValueError(f"{name}: row stride {stride} bytes does not fit rows of {cols} "
                         f"elements of {itemsize} bytes")
    return stride // itemsize


cdef int check_dims(Py_ssize_t got_rows, Py_ssize_t got_cols, Py_ssize_t rows,
                    Py_ssize_t cols, str name) except -1:
    if got_rows != rows or got_cols != cols:
        raise ValueError(f"{name} has shape ({got_rows}, {got_cols}), expected ({rows}, {cols})")
    return 0


def gemm_fused(real[:, :] c, const real[:, :] a, const real[:, :] b, bint trans_a,
         bint trans_b, double alpha, double beta, const real[::1] bias, int activation,
         double negative_slope, real[:, :] preact):
    """c = act(alpha * op(a) @ op(b) + beta * c + bias); see pynn.backends.numpy.gemm."""
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    if activation < 0 or activation >= ACT_COUNT:
        raise ValueError(f"gemm_fused: unknown activation code {activation}")
    if trans_a:
        check_dims(a.shape[0], a.shape[1], k, m, "a")
    else:
        check_dims(a.shape[0], a.shape[1], m, k, "a")
    if trans_b:
        check_dims(b.shape[0], b.shape[1], n, k, "b")
    else:
        check_dims(b.shape[0], b.shape[1], k, n, "b")
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {n}")
    if preact is not None:
        check_dims(preact.shape[0], preact.shape[1], m, n, "preact")
    if m == 0 or n == 0:
        return
    cdef Py_ssize_t es = sizeof(real)
    cdef int64_t ldc = row_stride(m, n, c.strides[0], c.strides[1], es, "c")
    cdef int64_t lda = row_stride(a.shape[0], a.shape[1], a.strides[0], a.strides[1], es, "a")
    cdef int64_t ldb = row_stride(b.shape[0], b.shape[1], b.strides[0], b.strides[1], es, "b")
    cdef int64_t ldp = 0
    cdef real *pp = NULL
    cdef const real *pbias = NULL
    # a k == 0 operand has no elements to point at; C never reads it
    cdef real dummy = 0
    cdef const real *pa = &a[0, 0] if a.shape[0] and a.shape[1] else &dummy
    cdef const real *pb = &b[0, 0] if b.shape[0] and b.shape[1] else &dummy
    if preact is not None:
        ldp = row_stride(m, n, preact.strides[0], preact.strides[1], es, "preact")
        pp = &preact[0, 0]
    if bias is not None:
        pbias = &bias[0]
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_gemm_f32(&c[0, 0], ldc, pp, ldp, pa, lda, pb, ldb, pbias, trans_a,
                                   trans_b, <float>alpha, <float>beta, activation,
                                   <float>negative_slope, m, n, k, nt)
        else:
            status = pynn_gemm_f64(&c[0, 0], ldc, pp, ldp, pa, lda, pb, ldb, pbias, trans_a,
                                   trans_b, alpha, beta, activation, negative_slope, m, n, k,
                                   nt)
    check_status(status, "gemm_fused")


def gemm_batched(real[:, :, :] c, const real[:, :, :] a, const real[:, :, :] b,
                 bint trans_a, bint trans_b, double alpha, double beta):
    """c[e] = alpha * op(a[e]) @ op(b[e]) + beta * c[e]; see pynn.backends.numpy.gemm."""
    cdef Py_ssize_t batch = c.shape[0], m = c.shape[1], n = c.shape[2]
    cdef Py_ssize_t k = a.shape[1] if trans_a else a.shape[2]
    if a.shape[0] != batch and a.shape[0] != 1:
        raise ValueError(f"a has {a.shape[0]} matrices, expected 1 or {batch}")
    if b.shape[0] != batch and b.shape[0] != 1:
        raise ValueError(f"b has {b.shape[0]} matrices, expected 1 or {batch}")
    if trans_a:
        check_dims(a.shape[1], a.shape[2], k, m, "a")
    else:
        check_dims(a.shape[1], a.shape[2], m, k, "a")
    if trans_b:
        check_dims(b.shape[1], b.shape[2], n, k, "b")
    else:
        check_dims(b.shape[1], b.shape[2], k, n, "b")
    if batch == 0 or m == 0 or n == 0:
        return
    cdef Py_ssize_t es = sizeof(real)
    cdef int64_t ldc = row_stride(m, n, c.strides[1], c.strides[2], es, "c")
    cdef int64_t lda = row_stride(a.shape[1], a.shape[2], a.strides[1], a.strides[2], es, "a")
    cdef int64_t ldb = row_stride(b.shape[1], b.shape[2], b.strides[1], b.strides[2], es, "b")
    if batch > 1 and (c.strides[0] < m * ldc * es or c.strides[0] % es):
        raise ValueError("c: the matrices of the batch overlap")
    if a.strides[0] < 0 or a.strides[0] % es or b.strides[0] < 0 or b.strides[0] % es:
        raise ValueError("a and b need non-negative batch strides in whole elements")
    cdef int64_t stride_c = c.strides[0] // es
    cdef int64_t stride_a = a.strides[0] // es if a.shape[0] > 1 else 0
    cdef int64_t stride_b = b.strides[0] // es if b.shape[0] > 1 else 0
    cdef real dummy = 0
    cdef const real *pa = &a[0, 0, 0] if a.shape[1] and a.shape[2] else &dummy
    cdef const real *pb = &b[0, 0, 0] if b.shape[1] and b.shape[2] else &dummy
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_gemm_batched_f32(&c[0, 0, 0], ldc, stride_c, pa, lda, stride_a, pb,
                                           ldb, stride_b, trans_a, trans_b, <float>alpha,
                                           <float>beta, batch, m, n, k, nt)
        else:
            status = pynn_gemm_batched_f64(&c[0, 0, 0], ldc, stride_c, pa, lda, stride_a, pb,
                                           ldb, stride_b, trans_a, trans_b, alpha, beta, batch,
                                           m, n, k, nt)
    check_status(status, "gemm_batched")


def gemm_colsum(real[::1] db, const real[:, :] dy, bint accumulate):
    """db = dy.sum(0), or db += dy.sum(0); see pynn.backends.numpy.gemm."""
    cdef Py_ssize_t m = dy.shape[0], n = dy.shape[1]
    if db.shape[0] != n:
        raise ValueError(f"db has {db.shape[0]} elements, expected {n}")
    if n == 0:
        return
    cdef Py_ssize_t es = sizeof(real)
    cdef int64_t ldy = row_stride(m, n, dy.strides[0], dy.strides[1], es, "dy")
    cdef real dummy = 0
    cdef const real *py = &dy[0, 0] if m else &dummy
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_gemm_colsum_f32(&db[0], py, ldy, accumulate, m, n, nt)
        else:
            status = pynn_gemm_colsum_f64(&db[0], py, ldy, accumulate, m, n, nt)
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
