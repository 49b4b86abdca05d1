"""Batch normalisation and the bias gradient: NumPy arrays in and out.

x is (N, C, ...) with the channels on axis 1 (PyTorch's BatchNorm1d/2d/3d layouts);
statistics are per channel over N and every trailing axis. Non-contiguous input is
copied first.

dtypes: float32 and float64 run on the backend in force; integer and boolean input is
computed in float64; other real floating dtypes (float16, longdouble) get the NumPy
reference in their own dtype. Complex input is refused. The computation dtype is NumPy's
result dtype of x, gamma and beta; running statistics, which training updates in place,
must already have it. Formulas are in pynn.backends.numpy.norm.
"""
import math

import numpy as np

from pynn._config import backend_module
from pynn.backends.numpy import norm as _reference

from . import _validate as v

__all__ = ["batch_norm", "batch_norm_backward", "bias_backward"]


def _kernels_and_dtype(arrays):
    """The kernel module and the dtype to compute in, for these input arrays."""
    for a_name, a in arrays:
        if a.dtype.kind == "c":
            raise TypeError(f"{a_name} must be real, got dtype {a.dtype}")
    dtype = np.result_type(*(a for _, a in arrays))
    if dtype in v.NATIVE_DTYPES:
        return backend_module(), dtype
    if dtype.kind in "biu":
        return backend_module(), np.dtype(np.float64)
    return _reference, dtype


def _as_nchw(x, name):
    x = v.asarray(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (N, C, ...), got shape "
                         f"{x.shape}")
    return x


def _channels(a, name, C):
    """An optional per-channel array: None, or an array-like of shape (C,)."""
    if a is None:
        return None
    a = v.asarray(a, name)
    return v.check_shape(a, name, shape=(C,))


def _view(shape):
    return (shape[0], shape[1], math.prod(shape[2:]))


def _running(a, name, dtype, C, others):
    """A running statistic that training updates in place: it must be exactly the array
    the kernel writes, never a silent copy."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), not "
                        f"{type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}; it is updated in place, so it must "
                        f"have the computation dtype {dtype}")
    v.check_shape(a, name, shape=(C,))
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only (it is updated in place)")
    for other_name, other in others:
        if other is not None and v._overlaps(a, other):
            raise ValueError(f"{name} overlaps {other_name}; pass a separate array")
    return a


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalisation as torch.nn.functional.batch_norm.

    x: (N, C, ...); gamma, beta: (C,) or None (no scale / no shift, affine=False).
    training=True normalises with the batch statistics (biased variance) and, when
    running_mean and running_var are given, updates them in place with the unbiased
    variance: running = (1 - momentum) * running + momentum * batch. They must then be
    writeable C-contiguous (C,) arrays of the computation dtype (x's, for float x); None
    for both skips the update. training=False normalises with running_mean and
    running_var, which are then required (and only read).

    Returns (y, saved_mean, saved_invstd): y has x's shape; saved_mean and saved_invstd
    (C,) are the statistics used (mean and 1/sqrt(var + eps)), what batch_norm_backward
    takes. Training needs more than one value per channel (N * prod(x.shape[2:]) > 1).
    """
    x = _as_nchw(x, "x")
    C = x.shape[1]
    gamma = _channels(gamma, "gamma", C)
    beta = _channels(beta, "beta", C)
    training = v.check_bool(training, "training")
    momentum = v.check_float(momentum, "momentum", 0.0, 1.0)
    eps = v.check_float(eps, "eps", 0.0)
    named = [("x", x)] + [(n, a) for n, a in (("gamma", gamma), ("beta", beta)) if a is not None]
    kernels, dtype = _kernels_and_dtype(named)
    N, _, S = _view(x.shape)
    if training:
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must be given together or both be "
                             "None")
        if running_mean is not None:
            others = [("x", x), ("gamma", gamma), ("beta", beta)]
            running_mean = _running(running_mean, "running_mean", dtype, C, others)
            running_var = _running(running_var, "running_var", dtype, C,
                                   others + [("running_mean", running_mean)])
        if N * S == 1:
            raise ValueError("Expected more than 1 value per channel when training, got input "
                             f"size {x.shape}")
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required when training=False")
        running_mean = v.contiguous(_channels(running_mean, "running_mean", C), dtype)
        running_var = v.contiguous(_channels(running_var, "running_var", C), dtype)
    y = np.empty(x.shape, dtype)
    saved_mean = np.empty(C, dtype)
    saved_invstd = np.empty(C, dtype)
    kernels.batch_norm_forward(
        y.reshape(N, C, S), saved_mean, saved_invstd, running_mean, running_var,
        v.contiguous(x, dtype).reshape(N, C, S),
        None if gamma is None else v.contiguous(gamma, dtype),
        None if beta is None else v.contiguous(beta, dtype), training, momentum, eps)
    return y, saved_mean, saved_invstd


def batch_norm_backward(dy, x, gamma, saved_mean, saved_invstd, training=True):
    """Gradients of batch_norm: (dx, dgamma, dbeta).

    dy, x: (N, C, ...), the same shape; x is the forward input. gamma: (C,) or None.
    saved_mean, saved_invstd: (C,), as batch_norm returned them. training says which
    forward pass this undoes: with the batch statistics (which depend on x) or with the
    running ones (constants: dx = dy * gamma * invstd). dgamma and dbeta are (C,), or
    None when gamma is None (no affine parameters).
    """
    dy = _as_nchw(dy, "dy")
    x = _as_nchw(x, "x")
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but x has shape {x.shape}; they must match")
    C = x.shape[1]
    gamma = _channels(gamma, "gamma", C)
    if saved_mean is None or saved_invstd is None:
        raise ValueError("saved_mean and saved_invstd are required (batch_norm returns them)")
    saved_mean = _channels(saved_mean, "saved_mean", C)
    saved_invstd = _channels(saved_invstd, "saved_invstd", C)
    training = v.check_bool(training, "training")
    named = [("dy", dy), ("x", x), ("saved_mean", saved_mean), ("saved_invstd", saved_invstd)]
    if gamma is not None:
        named.append(("gamma", gamma))
    kernels, dtype = _kernels_and_dtype(named)
    view = _view(x.shape)
    dx = np.empty(x.shape, dtype)
    dgamma = dbeta = None
    if gamma is not None:
        dgamma = np.empty(C, dtype)
        dbeta = np.empty(C, dtype)
    kernels.batch_norm_backward(
        dx.reshape(view), dgamma, dbeta, v.contiguous(dy, dtype).reshape(view),
        v.contiguous(x, dtype).reshape(view),
        None if gamma is None else v.contiguous(gamma, dtype),
        v.contiguous(saved_mean, dtype), v.contiguous(saved_invstd, dtype), training)
    return dx, dgamma, dbeta


def bias_backward(dy, channel_axis=-1):
    """Gradient of a per-channel bias: the sum of dy over every axis but channel_axis.

    dy: any shape with ndim >= 1; returns (dy.shape[channel_axis],). channel_axis=-1
    suits Linear outputs (N, out), channel_axis=1 conv outputs (N, C, H, W). The sum runs
    in a fixed order, so the result is the same at any thread count. float32 and float64
    run on the backend in force; other dtypes get np.sum's answer.
    """
    dy = v.asarray(dy, "dy")
    if dy.ndim < 1:
        raise ValueError("dy must have at least 1 dimension")
    axis = v.check_axis(channel_axis, dy.ndim, "channel_axis")
    if dy.dtype not in v.NATIVE_DTYPES:
        return np.sum(dy, axis=tuple(a for a in range(dy.ndim) if a != axis))
    view = (math.prod(dy.shape[:axis]), dy.shape[axis], math.prod(dy.shape[axis + 1:]))
    db = np.empty(dy.shape[axis], dy.dtype)
    backend_module().bias_backward(db, v.contiguous(dy, dy.dtype).reshape(view))
    return db
