"""Reference inverted dropout with a counter-based mask (csrc/dropout.c).

Element i of a flat (C-order) array is kept when r_i >= floor(p * 2^32), where r_i is the
high half of the (i+1)-th output of SplitMix64 (Steele, Lea & Flood 2014) started from
the key mix(seed + golden), i.e.

    key = mix(seed + golden),  r_i = mix(key + (i + 1) * golden) >> 32   (mod 2^64)
    mix(z): z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB;
            z ^ z >> 31

so the mask depends on (seed, i, p) alone: the native kernel computes the same bits at any
thread count, and backward regenerates the mask from the seed. Kept elements are scaled
by 1 / (1 - p), rounded to the array dtype; the mask multiplies, so NaN stays NaN.
"""
import numpy as np

__all__ = ["dropout_forward", "dropout_backward"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 20   # elements drawn at a time, to bound the uint64 temporaries


def _mix(z):
    """SplitMix64's output mixer on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def keep_mask(n, p, seed):
    """Boolean (n,) array: which elements of a flat array of n dropout keeps."""
    key = _mix(np.array([seed], dtype=np.uint64) + _GOLDEN)
    threshold = np.uint64(int(p * 2**32))
    keep = np.empty(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        i = np.arange(start + 1, min(start + _CHUNK, n) + 1, dtype=np.uint64)
        keep[start:start + i.size] = (_mix(key + i * _GOLDEN) >> np.uint64(32)) >= threshold
    return keep


def _apply(out, a, p, seed):
    scale = out.dtype.type(1.0 / (1.0 - p))
    mask = np.where(keep_mask(a.size, p, seed), scale, out.dtype.type(0))
    np.multiply(a, mask, out=out)


def dropout_forward(y, x, p, seed):
    """y = x * keep / (1 - p); x, y flat (n,), one float dtype; p in [0, 1); y may be x."""
    if not 0 <= p < 1:
        raise ValueError("dropout_forward: argument out of range (p)")
    _apply(y, x, p, seed)


def dropout_backward(dx, dy, p, seed):
    """dx = dy * keep / (1 - p) with the mask of dropout_forward for the same seed and p."""
    if not 0 <= p < 1:
        raise ValueError("dropout_backward: argument out of range (p)")
    _apply(dx, dy, p, seed)
