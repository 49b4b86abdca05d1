"""Argument checking shared by every op: conversion, dtypes, axes and `out=`.

Errors name the argument and say what was expected. Ops never modify their inputs;
`contiguous` returns the input itself when it is already a C-contiguous array of the
wanted dtype, so kernels must treat inputs as read-only.
"""
import math
import operator

import numpy as np

NATIVE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT64 = np.dtype(np.int64)  # class labels, as the kernels take them
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


def asarray(x, name):
    """`x` as an ndarray (any array-like), refusing what is not numeric."""
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from None
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    return a


def float_dtype(*arrays):
    """The result dtype NumPy would give, if it is float32 or float64; else None."""
    dt = np.result_type(*arrays)
    return dt if dt in NATIVE_DTYPES else None


def contiguous(a, dtype):
    """C-contiguous `a` of `dtype`, copying only when needed."""
    return np.ascontiguousarray(a, dtype=dtype)


def check_int(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return bool(value)


def check_float(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (ends open where asked)."""
    if type(value) is float and -math.inf < value < math.inf \
            and (low is None or value > low or (value == low and not low_open)) \
            and (high is None or value < high or (value == high and not high_open)):
        return value  # the usual case, decided in one expression
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_axis(axis, ndim, name="axis"):
    """Normalise an axis as NumPy does (negative counts from the end)."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, name)
    return axis % ndim


def check_shape(a, name, ndim=None, shape=None):
    """`shape` may hold None for any extent."""
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if shape is not None:
        if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    return a


def _overlaps(a, b):
    # The bounds test alone settles the common case (no overlap) at a third of the cost.
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except np.exceptions.TooHardError:
        return True


def _same_memory(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def out_buffer(out, shape, dtype, inputs=(), name="out", inplace=False):
    """Check a NumPy-style `out=` and return the array the kernel should write.

    That is `out` itself when it is C-contiguous with `dtype`, else a new array that
    `deliver` copies into `out` afterwards (casting 'same_kind', as NumPy's ufuncs do).
    `inputs` are (name, array) pairs `out` must not overlap; with `inplace=True`, `out`
    may be exactly one of them (an element-wise op writing over its input).
    """
    shape = tuple(shape)
    if out is None:
        return np.empty(shape, dtype)
    check_out(out, shape, dtype, inputs, name, inplace)
    if out.dtype == dtype and out.flags.c_contiguous:
        return out
    return np.empty(shape, dtype)


def check_out(out, shape, dtype, inputs=(), name="out", inplace=False, what="result"):
    """The checks of out_buffer on an array results are written or added to: an ndarray of
    `shape`, writable, that the `what` dtype casts to ('same_kind'), apart from `inputs`."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, not {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"{name} has dtype {out.dtype}, which the {what} dtype "
                        f"{np.dtype(dtype)} cannot be cast to under casting='same_kind'")
    for in_name, a in inputs:
        if isinstance(a, np.ndarray) and _overlaps(out, a):
            if not (inplace and _same_memory(out, a)):
                raise ValueError(f"{name} overlaps the input {in_name}; pass a separate array")


def deliver(buffer, out):
    """Return the result: `buffer`, copied into `out` when they differ."""
    if out is None or buffer is out:
        return buffer
    np.copyto(out, buffer, casting="same_kind")
    return out
