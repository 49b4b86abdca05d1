"""Softmax, log-softmax, their backward, and fused softmax + cross-entropy.

float32 and float64 run on the backend in force. Integer and boolean inputs are computed
in float64 (as scipy.special.softmax does); other real floating dtypes (float16,
longdouble) get the NumPy reference's arithmetic in their own dtype. Complex input is
refused: softmax needs an ordering.

NaN or inf in a row gives NaN in that row's output (and, for cross-entropy, in its loss
and gradient, unless the row is ignored); nothing raises for them.
"""
import math

import numpy as np

from pynn._config import backend_module
from pynn.backends.numpy import softmax_xent as _reference

from . import _validate as v

__all__ = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
           "softmax_cross_entropy"]

REDUCTIONS = ("none", "mean", "sum")   # index = the kernels' reduction code


def _kernels_and_dtype(dtype, name):
    """The kernel module and the dtype to compute in, for input dtype `dtype`."""
    if dtype.kind == "c":
        raise TypeError(f"{name} must be real, got dtype {dtype}")
    if dtype in v.NATIVE_DTYPES:
        return backend_module(), dtype
    if dtype.kind in "biu":
        return backend_module(), np.dtype(np.float64)
    return _reference, dtype


def _output(out, shape, dtype, inputs):
    """The array the kernel writes. `out` may be one of the inputs (NumPy's in-place
    style), but the kernels need an output apart from their inputs: then a new array is
    written and `deliver` copies it into `out`."""
    y = v.out_buffer(out, shape, dtype, inputs=inputs, inplace=True)
    if y is out and any(np.may_share_memory(y, a) for _, a in inputs):
        y = np.empty(shape, dtype)
    return y


def _along(shape, axis):
    """(M, C, K): `shape` seen as rows of C values along `axis`, K apart in memory."""
    return (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


def _forward(x, axis, out, log):
    x = v.asarray(x, "x")
    kernels, dtype = _kernels_and_dtype(x.dtype, "x")
    axis = v.check_axis(axis, x.ndim)
    y = _output(out, x.shape, dtype, (("x", x),))
    if y.size:
        view = _along(x.shape, axis)
        kernels.softmax_forward(y.reshape(view), v.contiguous(x, dtype).reshape(view), log)
    return v.deliver(y, out)


def softmax(x, axis=-1, out=None):
    """exp(x) / sum(exp(x)) along `axis` (shifted by the maximum, so large x is safe).

    x: any shape with ndim >= 1; returns the same shape. `out` may be x itself.
    The output is what softmax_backward needs.
    """
    return _forward(x, axis, out, log=False)


def log_softmax(x, axis=-1, out=None):
    """x - logsumexp(x) along `axis`, computed without forming softmax(x).

    x: any shape with ndim >= 1; returns the same shape. `out` may be x itself.
    The output is what log_softmax_backward needs.
    """
    return _forward(x, axis, out, log=True)


def _backward(dy, y, axis, out, log):
    dy = v.asarray(dy, "dy")
    y = v.asarray(y, "y")
    if dy.shape != y.shape:
        raise ValueError(f"dy has shape {dy.shape} but y has shape {y.shape}; they must match")
    axis = v.check_axis(axis, y.ndim)
    for name, a in (("dy", dy), ("y", y)):
        _kernels_and_dtype(a.dtype, name)
    kernels, dtype = _kernels_and_dtype(np.result_type(dy, y), "dy")
    dx = _output(out, y.shape, dtype, (("dy", dy), ("y", y)))
    if dx.size:
        view = _along(y.shape, axis)
        kernels.softmax_backward(dx.reshape(view), v.contiguous(dy, dtype).reshape(view),
                                 v.contiguous(y, dtype).reshape(view), log)
    return v.deliver(dx, out)


def softmax_backward(dy, y, axis=-1, out=None):
    """Gradient of softmax from its output: dx = y * (dy - sum(dy * y, axis)).

    dy, y: the same shape. `out` may be dy or y itself.
    """
    return _backward(dy, y, axis, out, log=False)


def log_softmax_backward(dy, y, axis=-1, out=None):
    """Gradient of log_softmax from its output: dx = dy - exp(y) * sum(dy, axis).

    dy, y: the same shape. `out` may be dy or y itself.
    """
    return _backward(dy, y, axis, out, log=True)


def softmax_cross_entropy(logits, labels, reduction="mean", label_smoothing=0.0,
                          ignore_index=-100, weight=None):
    """Cross-entropy of softmax(logits) against class labels, and its gradient, in one pass.

    Same semantics as torch.nn.functional.cross_entropy with class-index targets:
    logits (N, C) with labels (N,), or logits (C,) with a scalar label; labels are
    integers in [0, C) or ignore_index. Ignored rows have loss 0 and gradient 0.
    weight (C,) weighs each class; "mean" divides by the summed weight of the labels of
    the rows not ignored (NaN when every row is ignored). label_smoothing in [0, 1] mixes
    the one-hot target with the uniform distribution (weighted as PyTorch does).

    Returns (loss, dlogits): loss is a float for "mean" and "sum", an array of shape
    labels.shape for "none"; dlogits has the shape of logits and is the gradient of the
    returned loss (for "none", of the sum of the row losses).
    """
    if type(logits) is np.ndarray and type(labels) is np.ndarray and logits.ndim == 2 \
            and logits.dtype in v.NATIVE_DTYPES and labels.dtype is v.INT64 \
            and labels.shape == logits.shape[:1] and logits.shape[1] \
            and logits.flags.c_contiguous and labels.flags.c_contiguous and weight is None \
            and (reduction == "mean" or reduction == "sum") \
            and type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0 \
            and type(ignore_index) is int and v.INT64_MIN <= ignore_index <= v.INT64_MAX:
        # the common case (a training step's logits and int64 labels), checked in as few
        # steps as possible: at a small batch the checks below take longer than the kernel
        dlogits = np.empty(logits.shape, logits.dtype)
        try:
            return backend_module().softmax_xent_forward_backward(
                None, dlogits, logits, labels, None, REDUCTIONS.index(reduction),
                label_smoothing, ignore_index), dlogits
        except ValueError:
            pass  # a label out of range: named by the general path below
    logits = v.asarray(logits, "logits")
    if logits.ndim not in (1, 2):
        raise ValueError(f"logits must be 1-D (C,) or 2-D (N, C), got shape {logits.shape}")
    kernels, dtype = _kernels_and_dtype(logits.dtype, "logits")
    n_classes = logits.shape[-1]
    if n_classes == 0:
        raise ValueError(f"logits must have at least one class, got shape {logits.shape}")
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    label_smoothing = v.check_float(label_smoothing, "label_smoothing", 0.0, 1.0)
    ignore_index = v.check_int(ignore_index, "ignore_index")
    if not v.INT64_MIN <= ignore_index <= v.INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")

    labels = v.asarray(labels, "labels")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    v.check_shape(labels, "labels", shape=logits.shape[:-1])
    if labels.dtype == np.uint64 and labels.size:
        # only uint64 holds labels that would wrap around in int64 (2**64 - 100 onto
        # -100, the default ignore_index)
        largest = labels.max()
        if largest > v.INT64_MAX:
            raise ValueError(f"labels: label {largest} is out of range [0, {n_classes})")

    if weight is not None:
        weight = v.asarray(weight, "weight")
        if weight.dtype.kind == "c":
            raise TypeError(f"weight must be real, got dtype {weight.dtype}")
        v.check_shape(weight, "weight", shape=(n_classes,))
        weight = v.contiguous(weight, dtype)

    rows = v.contiguous(logits, dtype).reshape(-1, n_classes)
    dlogits = np.empty(rows.shape, dtype)
    losses = np.empty(rows.shape[0], dtype) if reduction == "none" else None
    try:
        # both kernels refuse a label out of range before writing anything; the labels are
        # only searched for the culprit then (two reductions per call are a visible share
        # of a small training step)
        total = kernels.softmax_xent_forward_backward(
            losses, dlogits, rows, np.ascontiguousarray(labels.reshape(-1), dtype=np.int64),
            weight, REDUCTIONS.index(reduction), label_smoothing, ignore_index)
    except ValueError:
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= n_classes))
        if bad.any():
            raise ValueError(f"labels: label {labels[bad].flat[0]} is out of range "
                             f"[0, {n_classes}) and is not ignore_index ({ignore_index})") from None
        raise
    loss = losses.reshape(labels.shape) if reduction == "none" else total
    return loss, dlogits.reshape(logits.shape)
