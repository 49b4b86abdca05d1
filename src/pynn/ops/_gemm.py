"""Matrix products: matmul (np.matmul's semantics), linear (x @ w.T + b with a fused
activation) and linear's backward.

float32 and float64 run on the backend's GEMM, which sums every element in an order fixed
by the blocking alone: results are identical at any thread count, and a row of
linear(x, ...) is the same whatever batch it is computed in. Transposed views are handed
to the kernel as a transpose flag, not copied; other layouts are copied first. Every
other dtype NumPy accepts (integers, bool, complex, float16) gets NumPy's own answer.
"""
import math

import numpy as np

from pynn import _config
from pynn._config import backend_module

from . import _validate as v
from ._activations import ACTIVATIONS, activation_code
from ._eltwise import activation as _activation
from ._eltwise import activation_backward as _activation_backward

__all__ = ["matmul", "linear", "linear_backward"]

# activation name (or None) -> pynn_act code, for names that need no `approximate`
_CODES = {None: 0, **{name: code for code, name in enumerate(ACTIVATIONS)}}


def _matrix(x, dtype):
    """(s, t) with x == (s.T if t else s) and the rows of s contiguous, as the kernels take
    a matrix: for x (r, c), or a stack (e, r, c) of matrices a non-negative whole number of
    elements apart. A transposed view gives its base; only other layouts and dtypes are
    copied."""
    if x.dtype == dtype and (x.ndim == 2 or (x.strides[0] >= 0
                                             and x.strides[0] % dtype.itemsize == 0)):
        item = dtype.itemsize
        (r, c), (s0, s1) = x.shape[-2:], x.strides[-2:]
        if (c <= 1 or s1 == item) and (r <= 1 or (s0 >= c * item and s0 % item == 0)):
            return x, False
        if (r <= 1 or s0 == item) and (c <= 1 or (s1 >= r * item and s1 % item == 0)):
            return np.swapaxes(x, -1, -2), True
    return np.ascontiguousarray(x, dtype), False


def _operand(x):
    """_matrix(x, x.dtype) for a 2-D x of a native dtype, the common layouts first: the
    fast paths below serve products of a few microseconds, of which _matrix's stride
    arithmetic would be a tenth."""
    flags = x.flags
    if flags.c_contiguous:
        return x, False
    if flags.f_contiguous:
        return x.T, True
    return _matrix(x, x.dtype)


def _core_error(operand, dim, size, expected):
    return ValueError(f"matmul: Input operand {operand} has a mismatch in its core dimension "
                      f"{dim}, with gufunc signature (n?,k),(k,m?)->(n?,m?) (size {size} is "
                      f"different from {expected})")


def _matmul_shape(a, b):
    """The result shape of np.matmul(a, b), with np.matmul's errors."""
    for i, x in enumerate((a, b)):
        if x.ndim == 0:
            raise ValueError(f"matmul: Input operand {i} does not have enough dimensions "
                             "(has 0, gufunc core with signature (n?,k),(k,m?)->(n?,m?) "
                             "requires 1)")
    k = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if kb != k:
        raise _core_error(1, 0, kb, k)
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: operands could not be broadcast together: batch "
                         f"dimensions {a.shape[:-2]} and {b.shape[:-2]} (shapes {a.shape} "
                         f"and {b.shape})") from None
    m = () if a.ndim == 1 else (a.shape[-2],)
    n = () if b.ndim == 1 else (b.shape[-1],)
    return batch + m + n, batch


def matmul(a, b, out=None):
    """np.matmul(a, b, out=out): the matrix product of the last two axes, batch axes
    broadcast, a 1-D operand promoted to a row (a) or a column (b) and that axis dropped
    from the result. The result dtype is NumPy's; `out` (casting 'same_kind') must not
    overlap a or b, where NumPy would make a copy first (a ValueError here)."""
    # the common case, two float matrices (and an out= of their dtype), checked and
    # computed by one backend call (None for anything else): small products take about a
    # microsecond, and Python-level checks or lookups would add a third to that
    c = (_config.current or backend_module()).matmul_2d(a, b, out)
    if c is not None:
        return c
    a = v.asarray(a, "a")
    b = v.asarray(b, "b")
    shape, batch = _matmul_shape(a, b)
    result = np.result_type(a, b)
    c = v.out_buffer(out, shape, result, inputs=(("a", a), ("b", b)))
    if result not in v.NATIVE_DTYPES:
        np.matmul(a, b, out=c)
        return v.deliver(c, out)
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
    if c.size == 0:
        return v.deliver(c, out)
    kernels = backend_module()
    if math.prod(b2.shape[:-2]) == 1:
        # one B for every row of every batch entry: a single GEMM over the stacked rows
        sa, ta = _matrix(a2.reshape(c.size // n, k), result)
        sb, tb = _matrix(b2.reshape(k, n), result)
        kernels.gemm_fused(c.reshape(c.size // n, n), sa, sb, ta, tb, 1.0, 0.0, None, 0, 0.0,
                           None)
        return v.deliver(c, out)
    entries = math.prod(batch)
    stacks = []
    for x in (a2, b2):
        rows, cols = x.shape[-2:]
        if math.prod(x.shape[:-2]) == 1:
            x3 = x.reshape(1, rows, cols)
        elif x.shape[:-2] == batch:
            x3 = x.reshape(entries, rows, cols)
        else:
            x3 = np.broadcast_to(x, batch + (rows, cols)).reshape(entries, rows, cols)
        stacks.append(_matrix(x3, result))
    (sa, ta), (sb, tb) = stacks
    kernels.gemm_batched(c.reshape(entries, m, n), sa, sb, ta, tb, 1.0, 0.0)
    return v.deliver(c, out)


def _linear_operands(x, w, b):
    x = v.asarray(x, "x")
    w = v.asarray(w, "w")
    if x.ndim == 0:
        raise ValueError("x must have at least 1 dimension (..., in_features)")
    v.check_shape(w, "w", ndim=2)
    if w.shape[1] != x.shape[-1]:
        raise ValueError(f"w has shape {w.shape} but x has {x.shape[-1]} features (its last "
                         f"dimension); w must be (out_features, {x.shape[-1]})")
    if b is not None:
        b = v.check_shape(v.asarray(b, "b"), "b", shape=(w.shape[0],))
    return x, w, b


def linear(x, w, b=None, activation=None, *, negative_slope=0.01, approximate="none",
           out=None, return_preact=False):
    """y = act(x @ w.T + b) in one fused GEMM, as torch.nn.functional.linear then the
    activation.

    x (..., in_features), w (out_features, in_features), b (out_features,) or None; returns
    y (..., out_features). activation: None or a name of pynn.ops._activations.ACTIVATIONS
    ("gelu" with approximate="tanh" is the tanh form); negative_slope for leaky_relu.
    return_preact=True returns (y, z) with z = x @ w.T + b, which backward needs for
    activations other than relu. A row of y does not depend on the other rows of x.
    """
    if out is None and type(x) is np.ndarray and type(w) is np.ndarray and x.ndim == 2 \
            and w.ndim == 2 and x.dtype is w.dtype and x.dtype in v.NATIVE_DTYPES \
            and (activation is None or type(activation) is str) and activation in _CODES \
            and approximate == "none" and type(negative_slope) is float \
            and -math.inf < negative_slope < math.inf:
        # the common case, checked in as few steps as possible (see matmul)
        (rows, k), n = x.shape, w.shape[0]
        if w.shape[1] == k and rows and n and (b is None or (
                type(b) is np.ndarray and b.dtype is x.dtype and b.shape == (n,)
                and b.flags.c_contiguous)):
            y = np.empty((rows, n), x.dtype)
            z = np.empty((rows, n), x.dtype) if return_preact else None
            sx, tx = _operand(x)
            sw, tw = _operand(w)
            backend_module().gemm_fused(y, sx, sw, tx, not tw, 1.0, 0.0, b, _CODES[activation],
                                        negative_slope, z)
            return (y, z) if return_preact else y
    x, w, b = _linear_operands(x, w, b)
    act = activation_code(activation, approximate)
    slope = v.check_float(negative_slope, "negative_slope")
    shape = x.shape[:-1] + (w.shape[0],)
    arrays = (x, w) if b is None else (x, w, b)
    inputs = (("x", x), ("w", w), ("b", b))
    dtype = v.float_dtype(*arrays)
    if dtype is None:
        z = np.matmul(x, w.T)
        if b is not None:
            z = z + b
        if act:
            y = _activation(z, ACTIVATIONS[act], negative_slope=slope)
        else:
            y = z.copy() if return_preact else z
        if out is not None:
            buffer = v.out_buffer(out, y.shape, y.dtype, inputs=inputs)
            buffer[...] = y
            y = v.deliver(buffer, out)
        return (y, z) if return_preact else y
    y = v.out_buffer(out, shape, dtype, inputs=inputs)
    z = np.empty(shape, dtype) if return_preact else None
    if y.size:
        k, n = x.shape[-1], w.shape[0]
        rows = y.size // n
        sx, tx = _matrix(x.reshape(rows, k), dtype)
        sw, tw = _matrix(w, dtype)
        bias = None if b is None else v.contiguous(b, dtype)
        backend_module().gemm_fused(y.reshape(rows, n), sx, sw, tx, not tw, 1.0, 0.0, bias, act,
                                    slope, None if z is None else z.reshape(rows, n))
    y = v.deliver(y, out)
    return (y, z) if return_preact else y


def _grad_buffer(g, name, shape, dtype, inputs):
    """Checks a gradient array passed in to accumulate into, as `out` is checked; returns
    whether the kernels can accumulate into g itself (its dtype, rows contiguous)."""
    v.check_out(g, shape, dtype, inputs, name, what="gradient")
    if g.dtype != dtype:
        return False
    if g.ndim == 1:
        return g.shape[0] <= 1 or g.strides[0] == g.dtype.itemsize
    return _matrix(g, dtype)[0] is g


def linear_backward(dy, x, w, *, dw=None, db=None, compute_dx=True, has_bias=True,
                    preact=None, activation=None, negative_slope=0.01):
    """Gradients of z = x @ w.T + b: returns (dx, dw, db).

    dy (..., out_features) is the gradient with respect to z, x (..., in_features) the
    forward input, w (out_features, in_features). With an `activation` (a name, as in
    linear), dy is the gradient with respect to act(z) instead and preact (dy's shape)
    must be z: dy * act'(z) is taken first, in the same call.
    dx = dz @ w (x's shape), or None when compute_dx is False; dw = dz.T @ x over the
    flattened leading axes; db = dz summed over them, or None when has_bias is False.
    Passing dw or db ACCUMULATES into those arrays in place (as layers accumulate into
    Parameter.grad) and returns them.
    """
    code = _CODES.get(activation) if activation is None or type(activation) is str else None
    if code is not None and type(dy) is np.ndarray and type(x) is np.ndarray \
            and type(w) is np.ndarray and dy.ndim == 2 and x.ndim == 2 and w.ndim == 2 \
            and x.dtype in v.NATIVE_DTYPES and dy.dtype is x.dtype and w.dtype is x.dtype \
            and dy.shape == (x.shape[0], w.shape[0]) and w.shape[1] == x.shape[1] \
            and dy.flags.c_contiguous and x.flags.c_contiguous and w.flags.c_contiguous \
            and (code == 0 or (type(preact) is np.ndarray and preact.dtype is x.dtype
                               and preact.shape == dy.shape and preact.flags.c_contiguous)) \
            and type(negative_slope) is float and -math.inf < negative_slope < math.inf \
            and type(compute_dx) is bool and type(has_bias) is bool \
            and (has_bias or db is None):
        # the common case (a layer's own arrays): activation, dx, dw and db in one
        # backend call, checked in as few steps as possible (see matmul)
        inputs = (("dy", dy), ("x", x), ("w", w), ("preact", preact))
        fresh = dw is None and db is None
        if fresh or (dw is not None and (db is not None or not has_bias)
                     and _grad_buffer(dw, "dw", w.shape, x.dtype, inputs)
                     and (db is None or _grad_buffer(db, "db", (w.shape[0],), x.dtype, inputs))):
            if fresh:
                dw = np.empty(w.shape, x.dtype)
                db = np.empty(w.shape[0], x.dtype) if has_bias else None
            gx = np.empty(x.shape, x.dtype) if compute_dx else None
            dz = np.empty(dy.shape, x.dtype) if code else None
            backend_module().linear_backward(gx, dw, db, dz, dy, x, w, preact, code,
                                             negative_slope, not fresh)
            return gx, dw, db
    compute_dx = v.check_bool(compute_dx, "compute_dx")
    has_bias = v.check_bool(has_bias, "has_bias")
    if activation is not None:
        if preact is None:
            raise ValueError("linear_backward: an activation needs preact, the forward "
                             "pre-activation")
        if np.shape(preact) != np.shape(dy):
            raise ValueError(f"preact has shape {np.shape(preact)}; it must be dy's shape "
                             f"{np.shape(dy)} (the forward pre-activation)")
        dy = _activation_backward(dy, preact, activation, negative_slope=negative_slope)
    dy = v.asarray(dy, "dy")
    x, w, _ = _linear_operands(x, w, None)
    out_f, in_f = w.shape
    if dy.shape != x.shape[:-1] + (out_f,):
        raise ValueError(f"dy has shape {dy.shape}, expected {x.shape[:-1] + (out_f,)} "
                         "(x's leading dimensions, out_features)")
    if db is not None and not has_bias:
        raise ValueError("db was given but has_bias is False")
    inputs = (("dy", dy), ("x", x), ("w", w))
    dtype = v.float_dtype(dy, x, w)
    rows = math.prod(x.shape[:-1])
    dy2, x2 = dy.reshape(rows, out_f), x.reshape(rows, in_f)
    if dtype is None:
        gx = np.matmul(dy, w) if compute_dx else None
        gw, gb = np.matmul(dy2.T, x2), (dy2.sum(axis=0) if has_bias else None)
        for name, g, new in (("dw", dw, gw), ("db", db, gb)):
            if g is not None:
                _grad_buffer(g, name, new.shape, new.dtype, inputs)
                np.add(g, new, out=g, casting="same_kind")
        return gx, (gw if dw is None else dw), (gb if db is None else db)
    kernels = backend_module()
    sy, ty = _matrix(dy2, dtype)
    gx = None
    if compute_dx:
        gx = np.empty(x.shape, dtype)
        if gx.size:
            sw, tw = _matrix(w, dtype)
            kernels.gemm_fused(gx.reshape(rows, in_f), sy, sw, ty, tw, 1.0, 0.0, None, 0, 0.0,
                               None)
    sx, tx = _matrix(x2, dtype)
    if dw is None:
        dw = np.empty((out_f, in_f), dtype)
        kernels.gemm_fused(dw, sy, sx, not ty, tx, 1.0, 0.0, None, 0, 0.0, None)
    elif _grad_buffer(dw, "dw", (out_f, in_f), dtype, inputs):
        kernels.gemm_fused(dw, sy, sx, not ty, tx, 1.0, 1.0, None, 0, 0.0, None)
    else:
        new = np.empty((out_f, in_f), dtype)
        kernels.gemm_fused(new, sy, sx, not ty, tx, 1.0, 0.0, None, 0, 0.0, None)
        np.add(dw, new, out=dw, casting="same_kind")
    if has_bias:
        dy_rows = v.contiguous(dy2, dtype) if ty else sy
        if db is None:
            db = np.empty(out_f, dtype)
            kernels.gemm_colsum(db, dy_rows, False)
        elif _grad_buffer(db, "db", (out_f,), dtype, inputs):
            kernels.gemm_colsum(db, dy_rows, True)
        else:
            new = np.empty(out_f, dtype)
            kernels.gemm_colsum(new, dy_rows, False)
            np.add(db, new, out=db, casting="same_kind")
    return gx, dw, db
