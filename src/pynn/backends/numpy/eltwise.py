"""Reference activations, forward and backward (csrc/eltwise.c).

`act` is an activation code: the index of its name in pynn.ops._activations.ACTIVATIONS
(none, relu, leaky_relu, sigmoid, tanh, silu, gelu, gelu_tanh), as pynn_act numbers them.
Arrays are 1-D and C-contiguous, of one float dtype; outputs may be the same array as an
input. The formulas, as in PyTorch:

    relu(x) = 0 if x < 0 else x                    relu'(x) = 0 if x <= 0 else 1
    leaky_relu(x) = x if x > 0 else slope * x      leaky_relu'(x) = 1 if x > 0 else slope
    sigmoid(x) = 1 / (1 + exp(-x))                 sigmoid' = s (1 - s)
    tanh(x)                                        tanh' = 1 - tanh^2
    silu(x) = x sigmoid(x)                         silu' = s (1 + x (1 - s))
    gelu(x) = x Phi(x) = x erfc(-x / sqrt 2) / 2   gelu' = Phi(x) + x exp(-x^2/2) / sqrt(2 pi)
    gelu_tanh(x) = x (1 + tanh(w)) / 2, w = sqrt(2/pi) (x + 0.044715 x^3)

relu and leaky_relu keep NaN (their comparisons are false for it); relu'(NaN) = 1 and
leaky_relu'(NaN) = slope, as torch's kernels give. At +-inf silu, gelu, gelu_tanh and
their derivatives take their limits (0 or x; 0 or 1), where torch's x * 0 gives NaN.

Forms that stay accurate where the textbook one cancels or overflows: sigmoid from
e = exp(-|x|) (sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) below), 1 - sigmoid(x) taken as
sigmoid(-x), tanh' from the input as 4 sigmoid(2x) sigmoid(-2x), and the tanh GELU as
x sigmoid(2w) (equal to x (1 + tanh w) / 2). GELU is computed in float64 whatever the
dtype, Phi with math.erfc element by element: close to exact, and slow (about 0.1 s per
million elements).
"""
import math

import numpy as np

__all__ = ["act_forward", "act_backward", "act_backward_output"]

NONE, RELU, LEAKY_RELU, SIGMOID, TANH, SILU, GELU, GELU_TANH = range(8)

_GELU_TANH_2K = 2.0 * math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715
_erfc = np.frompyfunc(math.erfc, 1, 1)
# Derivatives are unchanged by clipping x here (their exponential factors underflowed
# long before) and then give their limits at +-inf.
_GRAD_CLIP = 1e4
# inf * 0 in the tails (silu(-inf) is NaN, as in torch) and exp underflow are expected
_quiet = np.errstate(invalid="ignore", over="ignore", under="ignore")


def _sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)) = (exp(min(x, 0)), exp(-max(x, 0))) / (1 + exp(-|x|)):
    both to full relative accuracy, and no exp argument is positive."""
    d = 1 + np.exp(-np.abs(x))
    return np.exp(np.minimum(x, 0)) / d, np.exp(-np.maximum(x, 0)) / d


def _above_minus_inf(x):
    """x with -inf raised to the most negative finite value, so that x * f(x) with f
    underflowing to 0 gives the limit 0 at -inf instead of NaN."""
    return np.maximum(x, -np.finfo(x.dtype).max)


def _phi(x64):
    """Normal CDF and density of float64 x64."""
    cdf = 0.5 * _erfc(x64 * -math.sqrt(0.5)).astype(np.float64)
    return cdf, np.exp(-0.5 * x64 * x64) * (1 / math.sqrt(2 * math.pi))


def _gelu_tanh_inner(x):
    """2w and its derivative, w = sqrt(2/pi) (x + 0.044715 x^3)."""
    k2, c = x.dtype.type(_GELU_TANH_2K), x.dtype.type(_GELU_TANH_C)
    x2 = x * x
    return k2 * (x + c * (x2 * x)), k2 * (1 + 3 * c * x2)


@_quiet
def act_forward(y, x, act, negative_slope):
    """y = act(x); y, x (n,); negative_slope is used by leaky_relu. y may be x."""
    zero = x.dtype.type(0)
    if act == NONE:
        y[...] = x
    elif act == RELU:
        y[...] = np.where(x < 0, zero, x)
    elif act == LEAKY_RELU:
        y[...] = np.where(x > 0, x, x * x.dtype.type(negative_slope))
    elif act == SIGMOID:
        y[...] = _sigmoid_pair(x)[0]
    elif act == TANH:
        y[...] = np.tanh(x)
    elif act == SILU:
        y[...] = _above_minus_inf(x) * _sigmoid_pair(x)[0]
    elif act == GELU:
        x64 = x.astype(np.float64)
        y[...] = _above_minus_inf(x64) * _phi(x64)[0]
    elif act == GELU_TANH:
        y[...] = _above_minus_inf(x) * _sigmoid_pair(_gelu_tanh_inner(x)[0])[0]
    else:
        raise ValueError(f"act_forward: unknown activation code {act}")


@_quiet
def act_backward(dx, dy, x, act, negative_slope):
    """dx = dy * act'(x) from the pre-activation x; dx, dy, x (n,). dx may be dy or x."""
    zero = x.dtype.type(0)
    if act == NONE:
        dx[...] = dy
    elif act == RELU:
        dx[...] = np.where(x <= 0, zero, dy)
    elif act == LEAKY_RELU:
        dx[...] = np.where(x > 0, dy, dy * x.dtype.type(negative_slope))
    elif act == SIGMOID:
        s, sc = _sigmoid_pair(x)
        dx[...] = dy * (s * sc)
    elif act == TANH:
        s, sc = _sigmoid_pair(2 * x)
        dx[...] = dy * (4 * (s * sc))
    elif act == SILU:
        x = np.clip(x, -_GRAD_CLIP, _GRAD_CLIP)
        s, sc = _sigmoid_pair(x)
        dx[...] = dy * (s * (1 + x * sc))
    elif act == GELU:
        x64 = np.clip(x.astype(np.float64), -_GRAD_CLIP, _GRAD_CLIP)
        cdf, density = _phi(x64)
        dx[...] = dy * (cdf + x64 * density)
    elif act == GELU_TANH:
        x = np.clip(x, -_GRAD_CLIP, _GRAD_CLIP)
        w2, dw2 = _gelu_tanh_inner(x)
        s, sc = _sigmoid_pair(w2)
        dx[...] = dy * (s * (1 + x * sc * dw2))
    else:
        raise ValueError(f"act_backward: unknown activation code {act}")


@_quiet
def act_backward_output(dx, dy, y, act):
    """dx = dy * act'(x) from the output y = act(x), for sigmoid (dy y (1 - y)) and tanh
    (dy (1 - y^2)); dx, dy, y (n,). dx may be dy or y."""
    if act == SIGMOID:
        dx[...] = dy * (y * (1 - y))
    elif act == TANH:
        dx[...] = dy * (1 - y * y)
    else:
        raise ValueError(f"act_backward_output: activation code {act} is not sigmoid or tanh")
