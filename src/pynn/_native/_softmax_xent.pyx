# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Softmax, log-softmax and fused softmax + cross-entropy (csrc/softmax_xent.c).

Same names and signatures as pynn.backends.numpy.softmax_xent, which documents them.
Outputs must not overlap inputs (the C kernels read them through restrict pointers).
"""
from libc.stdint cimport int64_t

include "_common.pxi"

cdef extern from "pynn/pynn.h" nogil:
    ctypedef int pynn_reduction
    pynn_status pynn_softmax_forward_f32(float *y, const float *x, int log_softmax, int64_t m,
                                         int64_t c, int64_t k, int nthreads)
    pynn_status pynn_softmax_forward_f64(double *y, const double *x, int log_softmax,
                                         int64_t m, int64_t c, int64_t k, int nthreads)
    pynn_status pynn_softmax_backward_f32(float *dx, const float *dy, const float *y,
                                          int log_softmax, int64_t m, int64_t c, int64_t k,
                                          int nthreads)
    pynn_status pynn_softmax_backward_f64(double *dx, const double *dy, const double *y,
                                          int log_softmax, int64_t m, int64_t c, int64_t k,
                                          int nthreads)
    pynn_status pynn_softmax_xent_forward_backward_f32(
        double *loss, float *losses, float *dlogits, const float *logits,
        const int64_t *labels, const float *weight, pynn_reduction reduction,
        double label_smoothing, int64_t ignore_index, int64_t n, int64_t c, int nthreads)
    pynn_status pynn_softmax_xent_forward_backward_f64(
        double *loss, double *losses, double *dlogits, const double *logits,
        const int64_t *labels, const double *weight, pynn_reduction reduction,
        double label_smoothing, int64_t ignore_index, int64_t n, int64_t c, int nthreads)


cdef int check_same_shape(tuple shape, tuple expected, str name) except -1:
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}, expected {expected}")
    return 0


cdef int check_apart(const void *out, size_t out_bytes, str out_name, const void *inp,
                     size_t in_bytes, str in_name) except -1:
    """Refuse an output whose bytes overlap an input's (both contiguous)."""
    cdef const char *o = <const char *>out
    cdef const char *i = <const char *>inp
    if o < i + in_bytes and i < o + out_bytes:
        raise ValueError(f"{out_name} overlaps the input {in_name}; pass a separate array")
    return 0


def softmax_forward(real[:, :, ::1] y, const real[:, :, ::1] x, bint log):
    """y = softmax(x) or log_softmax(x) along axis 1; x, y (M, C, K). y may be x."""
    cdef tuple shape = (x.shape[0], x.shape[1], x.shape[2])
    check_same_shape((y.shape[0], y.shape[1], y.shape[2]), shape, "y")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        return
    cdef size_t nbytes = x.shape[0] * x.shape[1] * x.shape[2] * sizeof(real)
    check_apart(&y[0, 0, 0], nbytes, "y", &x[0, 0, 0], nbytes, "x")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_softmax_forward_f32(&y[0, 0, 0], &x[0, 0, 0], log, x.shape[0],
                                              x.shape[1], x.shape[2], nt)
        else:
            status = pynn_softmax_forward_f64(&y[0, 0, 0], &x[0, 0, 0], log, x.shape[0],
                                              x.shape[1], x.shape[2], nt)
    check_status(status, "softmax_forward")


def softmax_backward(real[:, :, ::1] dx, const real[:, :, ::1] dy, const real[:, :, ::1] y,
                     bint log):
    """Input gradient of softmax_forward from its output y, along axis 1; (M, C, K)."""
    cdef tuple shape = (y.shape[0], y.shape[1], y.shape[2])
    check_same_shape((dy.shape[0], dy.shape[1], dy.shape[2]), shape, "dy")
    check_same_shape((dx.shape[0], dx.shape[1], dx.shape[2]), shape, "dx")
    if y.shape[0] == 0 or y.shape[1] == 0 or y.shape[2] == 0:
        return
    cdef size_t nbytes = y.shape[0] * y.shape[1] * y.shape[2] * sizeof(real)
    check_apart(&dx[0, 0, 0], nbytes, "dx", &dy[0, 0, 0], nbytes, "dy")
    check_apart(&dx[0, 0, 0], nbytes, "dx", &y[0, 0, 0], nbytes, "y")
    cdef int nt = _num_threads()
    cdef int status
    with nogil:
        if real is float:
            status = pynn_softmax_backward_f32(&dx[0, 0, 0], &dy[0, 0, 0], &y[0, 0, 0], log,
                                               y.shape[0], y.shape[1], y.shape[2], nt)
        else:
            status = pynn_softmax_backward_f64(&dx[0, 0, 0], &dy[0, 0, 0], &y[0, 0, 0], log,
                                               y.shape[0], y.shape[1], y.shape[2], nt)
    check_status(status, "softmax_backward")


def softmax_xent_forward_backward(losses, real[:, ::1] dlogits, const real[:, ::1] logits,
                                  const int64_t[::1] labels, weight, int reduction,
                                  double label_smoothing, int64_t ignore_index):
    """Fused softmax + cross-entropy; logits, dlogits (N, C), labels (N,) int64,
    weight (C,) or None, losses (N,) or None. Returns the reduced loss."""
    cdef int64_t n = logits.shape[0], c = logits.shape[1]
    check_same_shape((dlogits.shape[0], dlogits.shape[1]), (n, c), "dlogits")
    check_same_shape((labels.shape[0],), (n,), "labels")
    cdef real[::1] losses_view
    cdef const real[::1] weight_view
    cdef real *losses_ptr = NULL
    cdef const real *weight_ptr = NULL
    if losses is not None:
        losses_view = losses
        check_same_shape((losses_view.shape[0],), (n,), "losses")
        if n:
            losses_ptr = &losses_view[0]
    if weight is not None:
        weight_view = weight
        check_same_shape((weight_view.shape[0],), (c,), "weight")
        if c:
            weight_ptr = &weight_view[0]
    cdef real *dlogits_ptr = &dlogits[0, 0] if n and c else NULL
    cdef const real *logits_ptr = &logits[0, 0] if n and c else NULL
    cdef const int64_t *labels_ptr = &labels[0] if n else NULL
    cdef size_t nbytes = n * c * sizeof(real)
    check_apart(dlogits_ptr, nbytes, "dlogits", logits_ptr, nbytes, "logits")
    if losses_ptr != NULL:
        check_apart(losses_ptr, n * sizeof(real), "losses", logits_ptr, nbytes, "logits")
    cdef int nt = _num_threads()
    cdef double loss = 0
    cdef int status
    with nogil:
        if real is float:
            status = pynn_softmax_xent_forward_backward_f32(
                &loss, losses_ptr, dlogits_ptr, logits_ptr, labels_ptr, weight_ptr, reduction,
                label_smoothing, ignore_index, n, c, nt)
        else:
            status = pynn_softmax_xent_forward_backward_f64(
                &loss, losses_ptr, dlogits_ptr, logits_ptr, labels_ptr, weight_ptr, reduction,
                label_smoothing, ignore_index, n, c, nt)
    check_status(status, "softmax_xent_forward_backward")
    return loss


def argmax_hits(const real[:, ::1] logits, const int64_t[::1] labels):
    """Rows whose largest logit (np.argmax's rule) is at their label; see
    pynn.backends.numpy.softmax_xent."""
    cdef Py_ssize_t n = logits.shape[0], c = logits.shape[1], i, j
    cdef int64_t hits = 0, best
    cdef real top, x
    if labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries, logits has {n} rows")
    if c == 0:
        if n:
            raise ValueError("argmax of an empty row: logits has no columns")
        return 0
    with nogil:
        for i in range(n):
            top = logits[i, 0]
            best = 0
            if top == top:  # the first NaN is the argmax: past it, nothing changes
                for j in range(1, c):
                    x = logits[i, j]
                    if not (x <= top):  # larger, or NaN
                        top = x
                        best = j
                        if x != x:
                            break
            hits += best == labels[i]
    return hits
