"""Activation modules. Each caches its input (the pre-activation) for backward.

In a Sequential, an activation that directly follows a Linear runs inside the Linear's
GEMM (ops.linear with activation=...), forward and backward; the module itself then
does no work and caches nothing.
"""
import numpy as np

from pynn import ops
from pynn.nn.module import Module, is_grad_enabled

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "SiLU", "GELU", "Softmax"]


class _Activation(Module):
    """An element-wise activation known to the fused GEMM epilogue under `_op`."""

    _op = None

    def __init__(self):
        super().__init__()
        self._x = None

    @property
    def _fused(self):
        """(ops activation name, negative_slope): how ops.linear applies this module."""
        return self._op, 0.01

    def forward(self, x):
        name, slope = self._fused
        y = ops.activation(x, name, negative_slope=slope)
        self._x = x if is_grad_enabled() else None
        return y

    def backward(self, grad_output):
        if self._x is None:
            raise self._missing_cache()
        name, slope = self._fused
        return ops.activation_backward(grad_output, self._x, name, negative_slope=slope)


class ReLU(_Activation):
    """max(x, 0)."""

    _op = "relu"

    def get_config(self):
        return {}


class LeakyReLU(_Activation):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(
                negative_slope, (int, float, np.integer, np.floating)):
            raise TypeError(f"negative_slope must be a real number, "
                            f"not {type(negative_slope).__name__}")
        if not np.isfinite(negative_slope):
            raise ValueError(f"negative_slope must be finite, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    @property
    def _fused(self):
        return "leaky_relu", self.negative_slope

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    _op = "sigmoid"

    def get_config(self):
        return {}


class Tanh(_Activation):
    _op = "tanh"

    def get_config(self):
        return {}


class SiLU(_Activation):
    """x * sigmoid(x) (Swish)."""

    _op = "silu"

    def get_config(self):
        return {}


class GELU(_Activation):
    """x * Phi(x), with Phi the standard normal CDF (exact, via erf), or its tanh
    approximation with approximate="tanh"."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    @property
    def _fused(self):
        return ("gelu_tanh" if self.approximate == "tanh" else "gelu"), 0.01

    def get_config(self):
        return {"approximate": self.approximate}

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along `dim`; caches its output for backward. For
    classification, feed logits to CrossEntropyLoss instead (it fuses the softmax)."""

    def __init__(self, dim=-1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an int, not {type(dim).__name__}")
        self.dim = int(dim)
        self._y = None

    def forward(self, x):
        y = ops.softmax(x, axis=self.dim)
        self._y = y if is_grad_enabled() else None
        return y

    def backward(self, grad_output):
        if self._y is None:
            raise self._missing_cache()
        return ops.softmax_backward(grad_output, self._y, axis=self.dim)

    def get_config(self):
        return {"dim": self.dim}

    def extra_repr(self):
        return f"dim={self.dim}"
