"""Layers with parameters or state: Linear, BatchNorm1d, Dropout; and the shape-only
Flatten and Identity. Layouts and initialisation follow PyTorch."""
import math

import numpy as np

from pynn import _config, init, ops
from pynn.ops._validate import check_float
from pynn.nn.module import Module, Parameter, is_grad_enabled

__all__ = ["Linear", "BatchNorm1d", "Dropout", "Flatten", "Identity"]


def _check_features(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _check_grad(grad, shape, name):
    grad = np.asarray(grad)
    if grad.shape != shape:
        raise ValueError(f"{name}.backward: grad_output has shape {grad.shape}, expected {shape} "
                         "(the shape of the forward output)")
    return grad


def _accumulate(param, grad):
    """Add a computed gradient into param.grad (which may be None). `grad` may be
    param.grad itself, already accumulated in place (as the linear stack's kernel does):
    then it stays. A parameter shared by two layers (tied weights) that had no gradient
    gets a new one from each; the second adds to the first."""
    if not param.requires_grad:
        return
    if param.grad is None or param.grad is grad:
        param.grad = grad
    else:
        param.grad += grad


class Linear(Module):
    """y = x @ weight.T + bias, for x of shape (*, in_features); y is (*, out_features).

    weight is (out_features, in_features) and bias (out_features,), initialised as in
    PyTorch: kaiming_uniform_(weight, a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), and bias
    U(-1/sqrt(in), 1/sqrt(in)). Inputs of another dtype are cast to the weight's dtype.
    Caches the input (and, when fused with an activation, the pre-activation).
    """

    _input_grad_optional = True

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _check_features(in_features, "in_features")
        self.out_features = _check_features(out_features, "out_features")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, not {type(bias).__name__}")
        dtype = _check_dtype(dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1.0 / math.sqrt(self.in_features)
            self.bias = Parameter(np.empty(self.out_features, dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)
        self._cache = None

    def forward(self, x):
        return self._forward(x, None)

    def _forward(self, x, activation):
        """Forward with an optional activation module applied in the GEMM epilogue."""
        w = self.weight.data
        x = np.asarray(x)
        if x.dtype != w.dtype:
            if x.dtype.kind not in "biuf":
                raise TypeError(f"Linear input must hold real numbers, got dtype {x.dtype}")
            x = x.astype(w.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expected input with {self.in_features} features in its "
                             f"last dimension, got shape {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        b = None if self.bias is None else self.bias.data
        keep = is_grad_enabled()
        z = None
        act = None if activation is None else activation._fused
        if act is None:
            y = ops.linear(x2, w, b)
        elif keep:
            y, z = ops.linear(x2, w, b, activation=act[0], negative_slope=act[1],
                              return_preact=True)
        else:
            y = ops.linear(x2, w, b, activation=act[0], negative_slope=act[1])
        self._cache = (x2, z, act, lead) if keep else None
        return y.reshape(lead + (self.out_features,))

    def backward(self, grad_output, input_grad=True):
        if self._cache is None:
            raise self._missing_cache()
        x2, z, act, lead = self._cache
        dy = _check_grad(grad_output, lead + (self.out_features,), "Linear")
        dz = dy.reshape(-1, self.out_features)
        w, b = self.weight, self.bias
        dw_in = w.grad if w.requires_grad else None
        db_in = None if b is None or not b.requires_grad else b.grad
        dx, dw, db = ops.linear_backward(
            dz, x2, w.data, dw=dw_in, db=db_in, compute_dx=input_grad, has_bias=b is not None,
            preact=z, activation=None if act is None else act[0],
            negative_slope=0.01 if act is None else act[1])
        if w.requires_grad:
            w.grad = dw
        if b is not None and b.requires_grad:
            b.grad = db
        return dx.reshape(lead + (self.in_features,)) if input_grad else None

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class BatchNorm1d(Module):
    """Batch normalisation (Ioffe and Szegedy, 2015) over x of shape (N, C) or (N, C, L).

    Training mode normalises with the batch statistics and updates running_mean and
    running_var (unbiased variance) by `momentum`, or by a cumulative average when
    momentum is None; evaluation mode uses the running statistics. With
    track_running_stats=False the batch statistics are used in both modes. weight
    (gamma) and bias (beta) exist when affine=True. Buffers as in PyTorch: running_mean,
    running_var, num_batches_tracked. Caches the input and the saved mean and 1/std.
    """

    _input_grad_optional = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        self.num_features = _check_features(num_features, "num_features")
        self.eps = check_float(eps, "eps", low=0.0, low_open=True)
        if momentum is not None:
            momentum = check_float(momentum, "momentum", 0.0, 1.0)
        self.momentum = momentum
        for flag, name in ((affine, "affine"), (track_running_stats, "track_running_stats")):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = _check_dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._cache = None

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d expected input of shape (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), got {x.shape}")
        reference = self.weight if self.affine else self.running_mean
        if reference is not None and x.dtype != reference.dtype:
            x = x.astype(reference.dtype)
        batch_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        update = self.training and self.track_running_stats
        gamma = self.weight.data if self.affine else None
        beta = self.bias.data if self.affine else None
        y, mean, invstd = ops.batch_norm(
            x, gamma, beta, self.running_mean if update or not batch_stats else None,
            self.running_var if update or not batch_stats else None, batch_stats,
            momentum=momentum, eps=self.eps)
        self._cache = (x, mean, invstd, batch_stats) if is_grad_enabled() else None
        return y

    def backward(self, grad_output, input_grad=True):
        if self._cache is None:
            raise self._missing_cache()
        x, mean, invstd, batch_stats = self._cache
        dy = _check_grad(grad_output, x.shape, "BatchNorm1d")
        dx, dgamma, dbeta = ops.batch_norm_backward(
            dy, x, self.weight.data if self.affine else None, mean, invstd, training=batch_stats)
        if self.affine:
            _accumulate(self.weight, dgamma)
            _accumulate(self.bias, dbeta)
        return dx if input_grad else None

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class Dropout(Module):
    """Inverted dropout: in training mode each element is zeroed with probability p and
    the survivors are scaled by 1/(1-p); in evaluation mode (or with p=0) it is the
    identity. The mask is regenerated in backward from a seed drawn from pynn's generator
    (pynn.manual_seed makes it reproducible), so only the seed is cached."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0)
        self._cache = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            seed, y = None, x
        else:
            seed = _config.next_seed()
            y = ops.dropout(x, self.p, seed=seed)
        self._cache = (seed, np.shape(x)) if is_grad_enabled() else None
        return y

    def backward(self, grad_output):
        if self._cache is None:
            raise self._missing_cache()
        seed, shape = self._cache
        dy = _check_grad(grad_output, shape, "Dropout")
        return dy if seed is None else ops.dropout_backward(dy, self.p, seed=seed)

    def get_config(self):
        return {"p": self.p}

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for value, name in ((start_dim, "start_dim"), (end_dim, "end_dim")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)
        self._shape = None

    def forward(self, x):
        x = np.asarray(x)
        ndim = max(x.ndim, 1)
        start = self.start_dim % ndim if -ndim <= self.start_dim < ndim else None
        end = self.end_dim % ndim if -ndim <= self.end_dim < ndim else None
        if start is None or end is None or start > end:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does "
                             f"not fit an input of shape {x.shape}")
        shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
        self._shape = x.shape if is_grad_enabled() else None
        return x.reshape(shape)

    def backward(self, grad_output):
        if self._shape is None:
            raise self._missing_cache()
        dy = np.asarray(grad_output)
        if dy.size != math.prod(self._shape):
            raise ValueError(f"Flatten.backward: grad_output has shape {dy.shape}, which does not "
                             f"match the forward output of an input of shape {self._shape}")
        return dy.reshape(self._shape)

    def get_config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed layer)."""

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output

    def get_config(self):
        return {}
