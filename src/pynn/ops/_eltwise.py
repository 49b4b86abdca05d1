"""Activations and their gradients, element by element: NumPy arrays in and out.

Every op takes any shape and layout and returns the input's shape (non-contiguous input
is copied first). `out=` follows NumPy's ufuncs (casting 'same_kind'); `out` may be the
input itself, for an in-place update. Backward ops take the incoming gradient `dy` and
the tensor the forward pass cached, of the same shape (no broadcasting).

dtypes: float32 and float64 run on the backend in force. Other real dtypes give the
result dtype NumPy's float ufuncs would (np.tanh of int8 is float16, of int64 float64):
float16 is computed in float32 and rounded, as NumPy does; integers and booleans are
converted to that float dtype. relu, leaky_relu and their gradients are comparisons and
products, so for integer or boolean input they are NumPy's own expressions (relu of an
int array is np.maximum(x, 0), still int). Complex input is refused.

Formulas and special values (NaN propagates; relu'(0) = 0; silu(-inf) and gelu(-inf)
are their limits, zero, where torch gives NaN) are documented in
pynn.backends.numpy.eltwise.
"""
import numpy as np

from pynn._config import backend_module
from pynn.backends.numpy import eltwise as _reference

from . import _validate as v
from ._activations import activation_code

__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid",
           "sigmoid_backward", "tanh", "tanh_backward", "silu", "silu_backward", "gelu",
           "gelu_backward", "activation", "activation_backward"]

# pynn_act codes (the index of the name in ACTIVATIONS)
_NONE, _RELU, _LEAKY_RELU, _SIGMOID, _TANH, _SILU, _GELU, _GELU_TANH = range(8)
_PIECEWISE_LINEAR = (_NONE, _RELU, _LEAKY_RELU)


def _real(a, name):
    a = v.asarray(a, name)
    if a.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got dtype {a.dtype}")
    return a


def _plan(dtype):
    """(kernels, dtype to compute in, result dtype) for inputs promoting to `dtype`."""
    result = np.result_type(dtype, np.float16)
    if result in v.NATIVE_DTYPES:
        return backend_module(), result, result
    if result == np.float16:
        return backend_module(), np.dtype(np.float32), result
    return _reference, result, result


def _deliver_new(result, out, inputs):
    """Return `result` (a fresh array), or copy it into a checked `out`."""
    if out is None:
        return result
    buffer = v.out_buffer(out, result.shape, result.dtype, inputs=inputs, inplace=True)
    buffer[...] = result
    return v.deliver(buffer, out)


def _integer_forward(x, act, negative_slope):
    if act == _RELU:
        return np.maximum(x, 0)
    if act == _LEAKY_RELU:
        return np.where(x > 0, x, x * negative_slope)
    return x.copy()


def _integer_backward(dy, x, act, negative_slope):
    if act == _RELU:
        return np.where(x <= 0, 0, dy)
    if act == _LEAKY_RELU:
        return np.where(x > 0, dy, dy * negative_slope)
    return dy.copy()


def _forward(x, act, negative_slope, out):
    if out is None and type(x) is np.ndarray and x.dtype in v.NATIVE_DTYPES \
            and x.flags.c_contiguous:
        # the common case in as few steps as possible (ravel of a C-contiguous array is a
        # view): at a hidden layer's size the general path's checks cost half as much as
        # the kernel
        y = np.empty(x.shape, x.dtype)
        backend_module().act_forward(y.ravel(), x.ravel(), act, negative_slope)
        return y
    x = _real(x, "x")
    inputs = (("x", x),)
    if x.dtype.kind in "biu" and act in _PIECEWISE_LINEAR:
        return _deliver_new(_integer_forward(x, act, negative_slope), out, inputs)
    kernels, dtype, result = _plan(x.dtype)
    if dtype != result:
        y = np.empty(x.shape, dtype)
        kernels.act_forward(y.reshape(-1), v.contiguous(x, dtype).reshape(-1), act,
                            negative_slope)
        return _deliver_new(y.astype(result), out, inputs)
    y = v.out_buffer(out, x.shape, dtype, inputs=inputs, inplace=True)
    kernels.act_forward(y.reshape(-1), v.contiguous(x, dtype).reshape(-1), act, negative_slope)
    return v.deliver(y, out)


def _pair(dy, x, x_name):
    dy = _real(dy, "dy")
    x = _real(x, x_name)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but {x_name} has shape {x.shape}; "
                         "they must match")
    return dy, x


def _backward(dy, x, act, negative_slope, out, x_name="x", from_output=False):
    if out is None and type(dy) is np.ndarray and type(x) is np.ndarray \
            and x.dtype in v.NATIVE_DTYPES and dy.dtype is x.dtype and dy.shape == x.shape \
            and dy.flags.c_contiguous and x.flags.c_contiguous:
        dx = np.empty(x.shape, x.dtype)
        if from_output:
            backend_module().act_backward_output(dx.ravel(), dy.ravel(), x.ravel(), act)
        else:
            backend_module().act_backward(dx.ravel(), dy.ravel(), x.ravel(), act,
                                          negative_slope)
        return dx
    dy, x = _pair(dy, x, x_name)
    inputs = (("dy", dy), (x_name, x))
    if dy.dtype.kind in "biu" and x.dtype.kind in "biu" and act in _PIECEWISE_LINEAR:
        return _deliver_new(_integer_backward(dy, x, act, negative_slope), out, inputs)
    kernels, dtype, result = _plan(np.result_type(dy, x))
    direct = dtype == result
    dx = (v.out_buffer(out, x.shape, dtype, inputs=inputs, inplace=True) if direct
          else np.empty(x.shape, dtype))
    flat = (dx.reshape(-1), v.contiguous(dy, dtype).reshape(-1),
            v.contiguous(x, dtype).reshape(-1))
    if from_output:
        kernels.act_backward_output(*flat, act)
    else:
        kernels.act_backward(*flat, act, negative_slope)
    if direct:
        return v.deliver(dx, out)
    return _deliver_new(dx.astype(result), out, inputs)


def _slope(negative_slope):
    return v.check_float(negative_slope, "negative_slope")


def _gelu_code(approximate):
    v.check_choice(approximate, "approximate", ("none", "tanh"))
    return _GELU_TANH if approximate == "tanh" else _GELU


def relu(x, out=None):
    """max(x, 0) element-wise (NaN stays NaN). x: any shape; returns x's shape."""
    return _forward(x, _RELU, 0.0, out)


def relu_backward(dy, x, out=None):
    """dy where x > 0, else 0 (also at x == 0); dy and x (the forward input) alike."""
    return _backward(dy, x, _RELU, 0.0, out)


def leaky_relu(x, negative_slope=0.01, out=None):
    """x where x > 0, else negative_slope * x. x: any shape; returns x's shape."""
    return _forward(x, _LEAKY_RELU, _slope(negative_slope), out)


def leaky_relu_backward(dy, x, negative_slope=0.01, out=None):
    """dy where x > 0, else negative_slope * dy (also at 0); dy and x (the forward input)."""
    return _backward(dy, x, _LEAKY_RELU, _slope(negative_slope), out)


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), without overflow for any x. Backward needs the output."""
    return _forward(x, _SIGMOID, 0.0, out)


def sigmoid_backward(dy, y, out=None):
    """dy * y * (1 - y), y = sigmoid(x) the forward output; dy and y of one shape."""
    return _backward(dy, y, _SIGMOID, 0.0, out, x_name="y", from_output=True)


def tanh(x, out=None):
    """Hyperbolic tangent. Backward needs the output."""
    return _forward(x, _TANH, 0.0, out)


def tanh_backward(dy, y, out=None):
    """dy * (1 - y^2), y = tanh(x) the forward output; dy and y of one shape."""
    return _backward(dy, y, _TANH, 0.0, out, x_name="y", from_output=True)


def silu(x, out=None):
    """x * sigmoid(x) (Swish). Backward needs the input."""
    return _forward(x, _SILU, 0.0, out)


def silu_backward(dy, x, out=None):
    """dy * s * (1 + x * (1 - s)), s = sigmoid(x), x the forward input."""
    return _backward(dy, x, _SILU, 0.0, out)


def gelu(x, approximate="none", out=None):
    """x * Phi(x), Phi the standard normal CDF (approximate="none", PyTorch's default), or
    x * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 (approximate="tanh")."""
    return _forward(x, _gelu_code(approximate), 0.0, out)


def gelu_backward(dy, x, approximate="none", out=None):
    """dy * gelu'(x), x the forward input; the same `approximate` as the forward pass."""
    return _backward(dy, x, _gelu_code(approximate), 0.0, out)


def activation(x, name, negative_slope=0.01, out=None):
    """The activation called `name` (one of pynn.ops._activations.ACTIVATIONS, "none" or
    None for the identity, "gelu_tanh" for gelu(approximate="tanh")) applied to x.
    negative_slope is used by "leaky_relu"."""
    return _forward(x, activation_code(name), _slope(negative_slope), out)


def activation_backward(dy, x, name, negative_slope=0.01, out=None):
    """dy * act'(x) for the activation called `name`, from the PRE-activation x (also for
    sigmoid and tanh, which are recomputed from it: more accurate than from the output)."""
    return _backward(dy, x, activation_code(name), _slope(negative_slope), out)
