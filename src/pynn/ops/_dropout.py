"""Inverted dropout with a counter-based mask: NumPy arrays in and out.

The mask is a pure function of (seed, p, the element's flat C-order index): the same
seed gives the same mask on every backend, SIMD path and thread count, and
dropout_backward regenerates it instead of storing it. pynn.backends.numpy.dropout
documents the generator. Kept elements are scaled by 1 / (1 - p) (inverted dropout, as
torch.nn.functional.dropout in training mode); the mask multiplies, so NaN and inf in
dropped elements give NaN, as in PyTorch. p = 1 drops everything (x * 0).

dtypes: float32 and float64 run on the backend in force; other dtypes get NumPy's answer
to x * keep * (1 / (1 - p)) with the same boolean mask (float64 for integers).
"""
import numpy as np

from pynn._config import backend_module
from pynn.backends.numpy import dropout as _reference

from . import _validate as v

__all__ = ["dropout", "dropout_backward", "dropout_mask"]


def _check_p(p):
    return v.check_float(p, "p", 0.0, 1.0)


def _check_seed(seed):
    seed = v.check_int(seed, "seed", 0)
    if seed >= 2**64:
        raise ValueError(f"seed must be below 2**64, got {seed}")
    return seed


def _check_shape(shape):
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, not "
                        f"{type(shape).__name__}") from None
    return tuple(v.check_int(d, "shape", 0) for d in dims)


def _keep(shape, p, seed):
    """The boolean mask, computed with NumPy (for the dtypes the kernels do not take)."""
    size = int(np.prod(shape, dtype=np.int64))
    keep = _reference.keep_mask(size, p, seed) if p < 1 else np.zeros(size, bool)
    return keep.reshape(shape)


def _apply(a, name, p, seed, out, backward):
    a = v.asarray(a, name)
    p = _check_p(p)
    seed = _check_seed(seed)
    if a.dtype not in v.NATIVE_DTYPES:
        result = a * _keep(a.shape, p, seed) * (0.0 if p == 1 else 1.0 / (1.0 - p))
        buffer = v.out_buffer(out, a.shape, result.dtype, inputs=((name, a),), inplace=True)
        buffer[...] = result
        return v.deliver(buffer, out)
    y = v.out_buffer(out, a.shape, a.dtype, inputs=((name, a),), inplace=True)
    if p == 0:
        np.copyto(y, a)
    elif p == 1:
        np.multiply(a, a.dtype.type(0), out=y)
    elif y.size:
        kernel = backend_module().dropout_backward if backward else backend_module().dropout_forward
        kernel(y.reshape(-1), v.contiguous(a, a.dtype).reshape(-1), p, seed)
    return v.deliver(y, out)


def dropout(x, p=0.5, *, seed, out=None):
    """Inverted dropout: y = x * keep / (1 - p), each element kept with probability 1 - p.

    x: any shape. p in [0, 1]: 0 returns a copy of x, 1 gives x * 0. seed: an int in
    [0, 2**64) that fixes the mask (pynn._config.next_seed() draws one from pynn's
    generator); pass the same seed and p to dropout_backward. `out` may be x itself.
    """
    return _apply(x, "x", p, seed, out, backward=False)


def dropout_backward(dy, p, *, seed, out=None):
    """Gradient of dropout: dx = dy * keep / (1 - p), with the mask of dropout(x, p,
    seed=seed) for any x of dy's shape. `out` may be dy itself."""
    return _apply(dy, "dy", p, seed, out, backward=True)


def dropout_mask(shape, p, *, seed, dtype=np.float32):
    """The scaled mask keep / (1 - p) that dropout multiplies by, as an array of `shape`
    and the floating `dtype`: dropout(x, p, seed=s) == x * dropout_mask(x.shape, p, seed=s)."""
    shape = _check_shape(shape)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy floating dtype, got {dtype!r}") from None
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    p = _check_p(p)
    seed = _check_seed(seed)
    if dtype not in v.NATIVE_DTYPES:
        return (_keep(shape, p, seed) * (0.0 if p == 1 else 1.0 / (1.0 - p))).astype(dtype)
    mask = np.ones(shape, dtype)
    return _apply(mask, "mask", p, seed, mask, backward=False)
