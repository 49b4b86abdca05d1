"""Losses. Calling one returns the loss (a Python float, or an (N,) array with
reduction="none") and caches the gradient; backward(grad=1.0) returns dLoss/dInput.

    loss = loss_fn(logits, y)
    model.backward(loss_fn.backward())
"""
import numpy as np

from pynn import ops
from pynn.nn.module import Module, is_grad_enabled
from pynn.ops._validate import check_float

__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _float_input(x, name):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        if x.dtype.kind not in "biu":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
    return x


def _optional_vector(value, name):
    if value is None:
        return None
    value = np.asarray(value)
    if value.dtype.kind not in "biuf" or value.ndim > 1:
        raise ValueError(f"{name} must be a 1-D array of real numbers or None, got "
                         f"dtype {value.dtype} and shape {value.shape}")
    return value


def _broadcasts_to(shape, target):
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


class _Loss(Module):
    def __init__(self, reduction):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self._grad = None

    def backward(self, grad_output=1.0):
        """dLoss/dInput for the latest call, scaled by grad_output (a number, or an (N,)
        array of per-sample weights with reduction="none")."""
        if self._grad is None:
            raise self._missing_cache()
        grad, per_sample = self._grad
        if type(grad_output) is float and grad_output == 1.0:
            return grad.copy()
        g = np.asarray(grad_output, dtype=grad.dtype)
        if g.ndim == 0:
            return grad * g if g != 1 else grad.copy()
        if self.reduction != "none" or g.shape != per_sample:
            raise ValueError(f"grad_output has shape {g.shape}; expected a number"
                             + (f" or shape {per_sample}" if self.reduction == "none" else ""))
        return grad * self._expand(g)

    def _expand(self, per_sample_grad):
        """Per-sample weights shaped to broadcast against the input gradient."""
        return per_sample_grad

    def _reduce(self, values, grad, count):
        """Reduce per-element losses; grad is d(sum)/dInput, rescaled to match."""
        if self.reduction == "mean":
            loss = float(values.sum() / count) if count else float("nan")
            grad = grad / count if count else grad * np.nan
        elif self.reduction == "sum":
            loss = float(values.sum())
        else:
            loss = values
        return loss, grad

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits, fused: one pass gives the loss and
    d/dlogits = softmax - target (with label smoothing, target = (1-s)*onehot + s/C).

    input: logits (N, C) or (N, C, d1, ...); target: int class indices (N,) or
    (N, d1, ...), or class probabilities of the input's shape (floating point: soft
    labels, as from mixup or distillation). weight: per-class weights (C,); ignore_index:
    a class index that contributes neither loss nor gradient (class-index targets only).
    With reduction="mean" the loss is divided by the summed weights of the counted
    samples for class indices, and by the number of samples (N d1 ...) for
    probabilities, as in PyTorch. Label smoothing mixes either kind of target with the
    uniform distribution.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = _optional_vector(weight, "weight")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"ignore_index must be an int, not {type(ignore_index).__name__}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = check_float(label_smoothing, "label_smoothing", 0.0, 1.0)

    def forward(self, input, target):
        if type(input) is np.ndarray and type(target) is np.ndarray and input.ndim == 2 \
                and target.shape == input.shape[:1] and input.dtype.kind == "f" \
                and target.dtype.kind in "iu" and (self.weight is None
                                                   or self.weight.shape == input.shape[1:]):
            # (N, C) logits and (N,) class indices: nothing to reshape
            loss, dlogits = ops.softmax_cross_entropy(
                input, target, reduction=self.reduction, label_smoothing=self.label_smoothing,
                ignore_index=self.ignore_index, weight=self.weight)
            # set past Module.__setattr__ (a cache, never a parameter, buffer or module)
            self.__dict__["_grad"] = (dlogits, target.shape) if is_grad_enabled() else None
            return loss
        logits = _float_input(input, "input")
        target = np.asarray(target)
        if logits.ndim < 2:
            raise ValueError(f"input must be logits of shape (N, C) or (N, C, d1, ...), got "
                             f"shape {logits.shape}")
        classes = logits.shape[1]
        if self.weight is not None and self.weight.shape != (classes,):
            raise ValueError(f"weight has shape {self.weight.shape}, expected ({classes},)")
        if target.shape == logits.shape and target.dtype.kind == "f":
            return self._forward_probabilities(logits, target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices (or, in the input's "
                            f"shape {logits.shape}, floating-point class probabilities), got "
                            f"dtype {target.dtype} and shape {target.shape}")
        if target.shape == logits.shape:
            raise TypeError(f"a target of the input's shape {logits.shape} holds class "
                            f"probabilities and must be floating point, got dtype "
                            f"{target.dtype}")
        expected = logits.shape[:1] + logits.shape[2:]
        if target.shape != expected:
            raise ValueError(f"target must have shape {expected} for input of shape "
                             f"{logits.shape}, got {target.shape}")
        spatial = logits.ndim > 2
        if spatial:
            logits = np.moveaxis(logits, 1, -1).reshape(-1, classes)
            target = target.reshape(-1)
        loss, dlogits = ops.softmax_cross_entropy(
            logits, target, reduction=self.reduction, label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index, weight=self.weight)
        if spatial:
            dlogits = np.moveaxis(dlogits.reshape(expected + (classes,)), -1, 1)
            if self.reduction == "none":
                loss = loss.reshape(expected)
        self._grad = (dlogits, expected) if is_grad_enabled() else None
        return loss

    def _forward_probabilities(self, logits, target):
        """Soft labels t over the classes (axis 1), smoothed to (1-s) t + s/C:
        loss = -sum_c weight_c t_c log softmax(x)_c a sample, and
        d/dx = softmax(x) sum_c weight_c t_c - weight t."""
        if self.ignore_index >= 0:
            raise ValueError(f"ignore_index ({self.ignore_index}) applies to class-index "
                             f"targets, not to class probabilities")
        classes = logits.shape[1]
        logp = ops.log_softmax(logits, axis=1)
        t = target.astype(logits.dtype, copy=False)
        if self.label_smoothing:
            t = t * logits.dtype.type(1.0 - self.label_smoothing) \
                + logits.dtype.type(self.label_smoothing / classes)
        if self.weight is not None:
            shape = (1, classes) + (1,) * (logits.ndim - 2)
            t = t * self.weight.astype(logits.dtype).reshape(shape)
        per_sample = -np.sum(t * logp, axis=1)
        grad = np.exp(logp)
        grad *= np.sum(t, axis=1, keepdims=True)
        grad -= t
        loss, grad = self._reduce(per_sample, grad, per_sample.size)
        self._grad = (grad, per_sample.shape) if is_grad_enabled() else None
        return loss

    def _expand(self, per_sample_grad):
        return np.expand_dims(per_sample_grad, 1)

    def get_config(self):
        return {"weight": None if self.weight is None else self.weight.tolist(),
                "ignore_index": self.ignore_index, "reduction": self.reduction,
                "label_smoothing": self.label_smoothing}

    def extra_repr(self):
        return (f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
                f"ignore_index={self.ignore_index}")


class MSELoss(_Loss):
    """Mean squared error: mean((input - target)^2) (or its sum, or per element).
    input and target have the same shape."""

    def __init__(self, reduction="mean"):
        super().__init__(reduction)

    def forward(self, input, target):
        x = _float_input(input, "input")
        t = np.asarray(target)
        if t.shape != x.shape:
            raise ValueError(f"target has shape {t.shape}; it must match input's {x.shape}")
        diff = x - t.astype(x.dtype, copy=False)
        loss, grad = self._reduce(diff * diff, 2 * diff, diff.size)
        self._grad = (grad, x.shape) if is_grad_enabled() else None
        return loss

    def get_config(self):
        return {"reduction": self.reduction}


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, computed stably:
    l = (1 - t) * x + (1 + (pos_weight - 1) * t) * log(1 + exp(-x)), times `weight`.

    input and target (probabilities in [0, 1]) have the same shape; weight broadcasts
    to it; pos_weight (one per class, the last axis) weighs the positive term."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        if weight is not None:
            weight = np.asarray(weight)
            if weight.dtype.kind not in "biuf":
                raise TypeError(f"weight must hold real numbers, got dtype {weight.dtype}")
        self.weight = weight
        self.pos_weight = _optional_vector(pos_weight, "pos_weight")

    def forward(self, input, target):
        x = _float_input(input, "input")
        t = np.asarray(target)
        if t.shape != x.shape:
            raise ValueError(f"target has shape {t.shape}; it must match input's {x.shape}")
        if t.dtype.kind not in "biuf":
            raise TypeError(f"target must hold real numbers, got dtype {t.dtype}")
        t = t.astype(x.dtype, copy=False)
        for extra, name in ((self.weight, "weight"), (self.pos_weight, "pos_weight")):
            if extra is not None and not _broadcasts_to(extra.shape, x.shape):
                raise ValueError(f"{name} of shape {extra.shape} does not broadcast to the "
                                 f"input's shape {x.shape}")
        # softplus(-x) = log(1 + exp(-x)), without overflow for large |x|
        softplus = np.logaddexp(0.0, -x).astype(x.dtype, copy=False)
        sigmoid = np.exp(-softplus)
        if self.pos_weight is None:
            values = (1 - t) * x + softplus
            grad = sigmoid - t
        else:
            log_weight = 1 + (self.pos_weight.astype(x.dtype) - 1) * t
            values = (1 - t) * x + log_weight * softplus
            grad = (1 - t) - log_weight * (1 - sigmoid)
        if self.weight is not None:
            w = self.weight.astype(x.dtype)
            values = values * w
            grad = grad * w
        loss, grad = self._reduce(values, grad, values.size)
        self._grad = (grad, x.shape) if is_grad_enabled() else None
        return loss

    def get_config(self):
        return {"weight": None if self.weight is None else self.weight.tolist(),
                "reduction": self.reduction,
                "pos_weight": None if self.pos_weight is None else self.pos_weight.tolist()}
