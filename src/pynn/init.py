"""Weight initialisation, in place, with PyTorch's names and formulas (torch.nn.init).

Each function takes a Parameter or a float ndarray, fills it and returns it. Random draws
come from pynn's generator (seeded by pynn.manual_seed) unless `generator` is given.
Fans follow PyTorch: for a weight of shape (out, in, *kernel), fan_in = in * prod(kernel)
and fan_out = out * prod(kernel).

He initialisation: K. He et al., "Delving Deep into Rectifiers", ICCV 2015.
Glorot initialisation: X. Glorot and Y. Bengio, "Understanding the difficulty of training
deep feedforward neural networks", AISTATS 2010.
"""
import math

import numpy as np

from pynn import _config

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def _array(tensor):
    """The ndarray behind a Parameter or ndarray, which must be a writable float array."""
    data = tensor if isinstance(tensor, np.ndarray) else getattr(tensor, "data", None)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"tensor must be a Parameter or a numpy.ndarray, "
                        f"not {type(tensor).__name__}")
    if data.dtype.kind != "f":
        raise TypeError(f"tensor must hold floats, got dtype {data.dtype}")
    if not data.flags.writeable:
        raise ValueError("tensor is read-only")
    return data


def _gen(generator):
    if generator is None:
        return _config.rng()
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator or None, "
                        f"not {type(generator).__name__}")
    return generator


def _fans(data):
    if data.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, "
                         f"got shape {data.shape}")
    receptive = math.prod(data.shape[2:])
    return data.shape[1] * receptive, data.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, (int, float)):
            raise TypeError(f"negative_slope {param!r} is not a number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fill(data, values):
    data[...] = values
    return data


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    data = _array(tensor)
    _fill(data, _gen(generator).uniform(a, b, size=data.shape))
    return tensor


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    data = _array(tensor)
    _fill(data, _gen(generator).normal(mean, std, size=data.shape))
    return tensor


def constant_(tensor, val):
    _array(tensor)[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    data = _array(tensor)
    fan_in, fan_out = _fans(data)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    _fill(data, _gen(generator).uniform(-bound, bound, size=data.shape))
    return tensor


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    data = _array(tensor)
    fan_in, fan_out = _fans(data)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    _fill(data, _gen(generator).normal(0.0, std, size=data.shape))
    return tensor


def _kaiming_std(data, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(data)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"cannot initialise a tensor with zero {mode} (shape {data.shape})")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan). With a = 0 and the default
    "leaky_relu" this is the ReLU gain sqrt(2); PyTorch's Linear default is a = sqrt(5)."""
    data = _array(tensor)
    bound = math.sqrt(3.0) * _kaiming_std(data, a, mode, nonlinearity)
    _fill(data, _gen(generator).uniform(-bound, bound, size=data.shape))
    return tensor


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std^2) with std = gain / sqrt(fan)."""
    data = _array(tensor)
    std = _kaiming_std(data, a, mode, nonlinearity)
    _fill(data, _gen(generator).normal(0.0, std, size=data.shape))
    return tensor
