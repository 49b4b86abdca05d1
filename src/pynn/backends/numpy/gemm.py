"""Reference GEMM with a fused epilogue, and the column sum of a linear layer's backward
(csrc/gemm/).

A matrix here is a 2-D array of one float dtype whose rows are contiguous (unit stride in
the last dimension) and whose row stride may be larger than a row: the native kernels
take that stride as BLAS's leading dimension. Outputs are written in place.

The native GEMM sums each element over k in fixed blocks with fused multiply-adds, NumPy's
BLAS in its own order: both are within k eps sum_p |a_ip b_pj| of the exact product, and
differ from each other by rounding only.
"""
import numpy as np

from .eltwise import act_backward, act_forward

__all__ = ["gemm_fused", "gemm_batched", "gemm_colsum", "linear_backward", "matmul_2d",
           "linear_stack_forward", "linear_stack_backward"]


def gemm_fused(c, a, b, trans_a, trans_b, alpha, beta, bias, activation, negative_slope,
               preact):
    """c (m, n) = act(alpha * op(a) @ op(b) + beta * c + bias), in place.

    op(a) (m, k) is a, or a.T when trans_a (a stored (k, m)); op(b) (k, n) is b, or b.T when
    trans_b (b stored (n, k)). bias: (n,) or None. activation: a pynn_act code (the index
    in pynn.ops._activations.ACTIVATIONS); negative_slope is used by leaky_relu. preact:
    (m, n) or None; receives the value before the activation (what backward needs).
    beta == 0 never reads c, which may then hold anything, NaN included.
    """
    z = _scaled_product(c, a.T if trans_a else a, b.T if trans_b else b, alpha, beta)
    if bias is not None:
        z += bias
    if preact is not None:
        preact[...] = z
    y = np.empty_like(z)
    act_forward(y.reshape(-1), z.reshape(-1), activation, negative_slope)
    c[...] = y


def matmul_2d(a, b, out=None):
    """a @ b as a new C-contiguous (m, n) array, or written into `out`, for NumPy arrays
    (not subclasses) a (m, k) and b (k, n) of one dtype, float32 or float64, in the byte
    order of the machine, and `out` None or a writable (m, n) array of that dtype whose
    rows are contiguous and which overlaps neither a nor b. Anything else gives None, and
    the caller (ops.matmul) takes its general path; the native version also gives None
    for operands with neither rows nor columns contiguous, which that path copies first,
    and for empty results."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return None
    if a.dtype not in _NATIVE or b.dtype is not a.dtype or a.shape[1] != b.shape[0]:
        return None
    if out is None:
        return np.matmul(a, b)
    if type(out) is not np.ndarray or out.dtype is not a.dtype or not out.flags.writeable \
            or out.shape != (a.shape[0], b.shape[1]) or out.size == 0 \
            or (out.shape[1] > 1 and out.strides[1] != out.itemsize) or out.strides[0] < 0 \
            or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    return np.matmul(a, b, out=out)


_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


def _scaled_product(c, opa, opb, alpha, beta):
    """alpha * opa @ opb + beta * c in c's dtype, c not read when beta == 0."""
    dtype = c.dtype.type
    z = np.matmul(opa, opb)
    if alpha != 1:
        z *= dtype(alpha)
    if beta != 0:
        z += dtype(beta) * c
    return z


def gemm_batched(c, a, b, trans_a, trans_b, alpha, beta):
    """c[e] = alpha * op(a[e]) @ op(b[e]) + beta * c[e] for every e, in place.

    c (batch, m, n); a (batch or 1, m, k), or (batch or 1, k, m) when trans_a; b
    (batch or 1, k, n), or (batch or 1, n, k) when trans_b. One matrix in a or b is
    shared by the whole batch. beta == 0 never reads c.
    """
    c[...] = _scaled_product(c, np.swapaxes(a, 1, 2) if trans_a else a,
                             np.swapaxes(b, 1, 2) if trans_b else b, alpha, beta)


def gemm_colsum(db, dy, accumulate):
    """db (n,) = the sum of the rows of dy (m, n), or db += that when accumulate: the
    gradient of a bias broadcast over the rows. Summed in double (NumPy adds the rows one
    after another in dy's dtype: a float32 column of 2^23 values of 0.1 came out 6% off)."""
    s = dy.sum(axis=0, dtype=np.float64).astype(dy.dtype, copy=False)
    if accumulate:
        db += s
    else:
        db[...] = s


def linear_backward(dx, dw, db, dz, dy, x, w, preact, activation, negative_slope, accumulate):
    """The backward pass of y = act(x @ w.T + b) in one call, in place.

    dy (m, n) is the gradient with respect to y, x (m, k) the layer's input, w (n, k) its
    weight, preact (m, n) its pre-activation z (None when activation is 0, "none").
    dz (m, n) receives dy * act'(z) (it may be dy itself; with no activation it is not
    written and dy is used). Then dx (m, k) = dz @ w, or nothing when dx is None;
    dw (n, k) = dz.T @ x and db (n,) = dz summed over the rows, or None: both overwritten,
    or added to when accumulate.
    """
    if activation:
        act_backward(dz.reshape(-1), dy.reshape(-1), preact.reshape(-1), activation,
                     negative_slope)
    else:
        dz = dy
    if dx is not None:
        gemm_fused(dx, dz, w, False, False, 1.0, 0.0, None, 0, 0.0, None)
    gemm_fused(dw, dz, x, True, False, 1.0, 1.0 if accumulate else 0.0, None, 0, 0.0, None)
    if db is not None:
        gemm_colsum(db, dz, accumulate)


# -- a stack of linear layers in one call ------------------------------------------------
#
# What nn.Sequential runs when all its steps are Linear layers (each with an optional
# fused activation): the layers' forward, or their backward, in one backend call instead
# of a few Python calls per layer. The arithmetic is exactly the per-layer calls above,
# in the same order, so the results are those of the layers run one by one, bit for bit.
# Anything a call does not handle (layouts, dtypes, shapes, gradient buffers) gives None
# before anything is computed or written, and the caller runs the layers one by one.

_ACT_COUNT = 8
_ACT_RELU = 1  # pynn_act


def _plain(a, dtype, ndim):
    return type(a) is np.ndarray and a.dtype is dtype and a.ndim == ndim


def _operand_ok(a, dtype):
    """a is a 2-D array of dtype whose rows or columns are contiguous: what the GEMM takes
    as it is or as a transpose."""
    if not _plain(a, dtype, 2):
        return False
    item = dtype.itemsize
    (r, c), (s0, s1) = a.shape, a.strides
    return ((c <= 1 or s1 == item) and (r <= 1 or (s0 >= c * item and s0 % item == 0))) or \
        ((r <= 1 or s0 == item) and (c <= 1 or (s1 >= r * item and s1 % item == 0)))


def _codes_ok(activations, slopes, count):
    if len(activations) != count or len(slopes) != count:
        return False
    for code in activations:
        if not 0 <= code < _ACT_COUNT:
            raise ValueError(f"linear_stack: unknown activation code {code}")
    return all(-np.inf < s < np.inf for s in slopes)


def _stack_ok(x, weights, biases):
    """The dtype of a stack whose input x, weights and biases the stack calls take, or
    None: x (m, k0) and weights[i] (n_i, k_i) with k_(i+1) = n_i, all sides non-empty,
    biases[i] C-contiguous (n_i,) or None."""
    if type(x) is not np.ndarray or x.dtype not in _NATIVE or not isinstance(weights, list) \
            or not isinstance(biases, list) or not weights or len(biases) != len(weights):
        return None
    dtype = x.dtype
    if not _operand_ok(x, dtype) or 0 in x.shape:
        return None
    k = x.shape[1]
    for w, b in zip(weights, biases):
        if not _operand_ok(w, dtype) or w.shape[1] != k or w.shape[0] == 0:
            return None
        if b is not None and not (_plain(b, dtype, 1) and b.shape == (w.shape[0],)
                                  and b.flags.c_contiguous):
            return None
        k = w.shape[0]
    return dtype


def linear_stack_forward(x, weights, biases, activations, slopes, keep):
    """Forward through linear layers y_i = act_i(y_(i-1) @ weights[i].T + biases[i]),
    y_(-1) = x, as gemm_fused computes each: returns (ys, zs), the new (m, n_i) outputs and,
    when keep, what backward reads for each activation (None for layers without an
    activation, and for all when not keep): the pre-activation, except for a ReLU layer
    below the last, where it is ys[i] itself. ReLU's backward passes the gradient where
    its input is not <= 0, and relu(z) <= 0 exactly where z <= 0 (NaN and -0 included),
    so the output gives the same bits, and that output is the next layer's input, kept
    for backward anyway: no copy of the pre-activation is written.

    x (m, k0) and the weights (n_i, k_i) are 2-D arrays of one dtype (float32 or float64)
    whose rows or columns are contiguous; biases[i] is (n_i,) or None; activations[i] a
    pynn_act code and slopes[i] its negative_slope. None (nothing computed) for anything
    else, and for empty sides.
    """
    dtype = _stack_ok(x, weights, biases)
    if dtype is None or not _codes_ok(activations, slopes, len(weights)):
        return None
    ys, zs = [], []
    last = len(weights) - 1
    for i, (w, b, code, slope) in enumerate(zip(weights, biases, activations, slopes)):
        y = np.empty((x.shape[0], w.shape[0]), dtype)
        from_output = keep and code == _ACT_RELU and i < last
        z = np.empty_like(y) if keep and code and not from_output else None
        gemm_fused(y, x, w, False, True, 1.0, 0.0, b, code, slope, z)
        ys.append(y)
        zs.append(y if from_output else z)
        x = y
    return ys, zs


def _grad_ok(g, shape, dtype, inputs):
    """g is None (a new gradient), False (none wanted) or an array to add to: C-contiguous,
    writable, of dtype and shape, sharing no memory with the inputs."""
    if g is None or g is False:
        return True
    return (_plain(g, dtype, len(shape)) and g.shape == shape and g.flags.c_contiguous
            and g.flags.writeable and not any(np.may_share_memory(g, a) for a in inputs))


def linear_stack_backward(dy, xs, weights, preacts, activations, slopes, dws, dbs,
                          input_grad):
    """Backward through the layers of linear_stack_forward, last to first, as
    linear_backward computes each: returns (dx, dws, dbs).

    dy (m, n_last) is the C-contiguous gradient with respect to the last output; xs[i] the
    input of layer i (x, then ys[:-1]); preacts the zs of the forward (read for layers with
    an activation). dws[i] and dbs[i] are None (return a new gradient), False (not wanted:
    a frozen parameter, or no bias) or an array the gradient is added to in place (and
    returned), as layers accumulate into Parameter.grad; the returned lists hold None for
    False. dx, the gradient with respect to x, is computed when input_grad (else None).
    None (nothing computed or written) for anything linear_stack_forward would refuse,
    missing pre-activations, or gradient arrays that are not C-contiguous, writable
    arrays of the dtype and shape sharing no memory with an input.
    """
    count = len(weights) if isinstance(weights, list) else 0
    if not (isinstance(xs, list) and isinstance(preacts, list) and isinstance(dws, list)
            and isinstance(dbs, list) and len(xs) == len(preacts) == len(dws) == len(dbs)
            == count and count):
        return None
    dtype = _stack_ok(xs[0], weights, [None] * count)
    if dtype is None or not _codes_ok(activations, slopes, count):
        return None
    m = xs[0].shape[0]
    if not (_plain(dy, dtype, 2) and dy.shape == (m, weights[-1].shape[0])
            and dy.flags.c_contiguous):
        return None
    inputs = [dy] + list(weights)
    for i, (w, code) in enumerate(zip(weights, activations)):
        if not (_operand_ok(xs[i], dtype) and xs[i].shape == (m, w.shape[1])):
            return None
        inputs.append(xs[i])
        if code:
            z = preacts[i]
            if not (_plain(z, dtype, 2) and z.shape == (m, w.shape[0]) and z.flags.c_contiguous):
                return None
            inputs.append(z)
    for w, dw, db in zip(weights, dws, dbs):
        if not (_grad_ok(dw, w.shape, dtype, inputs) and _grad_ok(db, w.shape[:1], dtype, inputs)):
            return None
    dws, dbs = list(dws), list(dbs)
    g = dy
    for i in range(count - 1, -1, -1):
        w, code, slope = weights[i], activations[i], slopes[i]
        # below the last layer, g is the input gradient computed above: overwritten
        dz = g if not code or i < count - 1 else np.empty_like(g)
        if code:
            act_backward(dz.reshape(-1), g.reshape(-1), preacts[i].reshape(-1), code, slope)
        dx = None
        if i or input_grad:
            dx = np.empty(xs[i].shape, dtype)
            gemm_fused(dx, dz, w, False, False, 1.0, 0.0, None, 0, 0.0, None)
        for grads, shape, colsum in ((dws, w.shape, False), (dbs, w.shape[:1], True)):
            given = grads[i]
            if given is False:
                grads[i] = None
                continue
            out = np.empty(shape, dtype) if given is None else given
            if colsum:
                gemm_colsum(out, dz, given is not None)
            else:
                gemm_fused(out, dz, xs[i], True, False, 1.0, 0.0 if given is None else 1.0,
                           None, 0, 0.0, None)
            grads[i] = out
        g = dx
    return g, dws, dbs
