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

__all__ = ["gemm_fused", "gemm_batched", "gemm_colsum", "linear_backward", "matmul_2d"]


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


def matmul_2d(a, b):
    """a @ b as a new C-contiguous (m, n) array, for NumPy arrays (not subclasses) a (m, k)
    and b (k, n) of one dtype, float32 or float64, in the byte order of the machine.
    Anything else gives None, and the caller (ops.matmul) takes its general path; the
    native version also gives None for operands with neither rows nor columns contiguous,
    which that path copies first."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return None
    if a.dtype not in _NATIVE or b.dtype is not a.dtype or a.shape[1] != b.shape[0]:
        return None
    return np.matmul(a, b)


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
    gradient of a bias broadcast over the rows."""
    s = dy.sum(axis=0, dtype=dy.dtype)
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
