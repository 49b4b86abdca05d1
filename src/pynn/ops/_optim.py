"""Fused optimizer steps, in place: one pass over a parameter and its state per call.

Each op is one step of the torch.optim algorithm of the same name for one parameter,
with PyTorch's semantics and arithmetic (pynn.backends.numpy.optim gives the formulas).
pynn.optim's optimizers keep the state and call these.

The parameter and the state buffers are updated in place, so they must be writeable,
C-contiguous numpy.ndarrays of one floating dtype and one shape, not overlapping each
other: anything else raises (never a silent update of a copy). grad is only read; any
array-like of that shape whose dtype casts to the parameter's ('same_kind') is accepted.
float32 and float64 run on the backend in force, other floating dtypes on the NumPy
reference. Each op returns param.
"""
import numpy as np

from pynn._config import backend_module
from pynn.backends.numpy import optim as _reference

from . import _validate as v

__all__ = ["sgd_update", "adam_update", "rmsprop_update"]


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return bool(value)


def _inplace(a, name, like=None):
    """An array the step writes: param itself, or a state buffer matching param."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), not "
                        f"{type(a).__name__}")
    if like is None:
        if a.dtype.kind != "f":
            raise TypeError(f"{name} must have a floating dtype, got {a.dtype}")
    else:
        if a.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}, expected param's dtype {like.dtype}")
        if a.shape != like.shape:
            raise ValueError(f"{name} has shape {a.shape}, expected param's shape {like.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only (it is updated in place)")
    return a


def _arrays(param, grad, buffers):
    """Checks param, the state buffers and grad; returns the kernel module, then param, the
    buffers and grad, all flat. buffers: (name, array, required); an optional one may be
    None (the kernel then gets None)."""
    param = _inplace(param, "param")
    checked = [("param", param)]
    for name, a, required in buffers:
        if a is not None or required:
            _inplace(a, name, param)
            for other_name, other in checked:
                if v._overlaps(a, other):
                    raise ValueError(f"{name} overlaps {other_name}; pass separate arrays")
            checked.append((name, a))
    grad = v.asarray(grad, "grad")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {grad.shape}, expected param's shape {param.shape}")
    if not np.can_cast(grad.dtype, param.dtype, casting="same_kind"):
        raise TypeError(f"grad has dtype {grad.dtype}, which cannot be cast to param's dtype "
                        f"{param.dtype} under casting='same_kind'")
    for other_name, other in checked:
        if v._overlaps(grad, other):
            raise ValueError(f"grad overlaps {other_name}; pass a separate array")
    kernels = backend_module() if param.dtype in v.NATIVE_DTYPES else _reference
    flat = [None if a is None else a.reshape(-1) for _, a, _ in buffers]
    return kernels, param.reshape(-1), flat, v.contiguous(grad, param.dtype).reshape(-1)


def sgd_update(param, grad, momentum_buffer, *, lr, momentum=0.0, dampening=0.0,
               nesterov=False, weight_decay=0.0, first_step=False):
    """One step of torch.optim.SGD: momentum (heavy ball, or Nesterov's), dampening and
    L2 weight decay. momentum_buffer is required when momentum != 0 (and ignored when it
    is 0); first_step=True sets it to the decayed gradient, as PyTorch does when the
    buffer does not exist yet. Nesterov needs momentum > 0 and dampening == 0."""
    lr = v.check_float(lr, "lr", 0.0)
    momentum = v.check_float(momentum, "momentum", 0.0)
    dampening = v.check_float(dampening, "dampening", 0.0, 1.0)
    weight_decay = v.check_float(weight_decay, "weight_decay", 0.0)
    nesterov = _check_bool(nesterov, "nesterov")
    first_step = _check_bool(first_step, "first_step")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
    if momentum != 0 and momentum_buffer is None:
        raise ValueError("momentum_buffer is required when momentum != 0")
    buffer = momentum_buffer if momentum != 0 else None
    kernels, p, (buf,), g = _arrays(param, grad, [("momentum_buffer", buffer, False)])
    kernels.sgd_update(p, buf, g, lr, momentum, dampening, nesterov, weight_decay, first_step)
    return param


def adam_update(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
                eps=1e-8, weight_decay=0.0, amsgrad=False, max_exp_avg_sq=None,
                decoupled_weight_decay=False):
    """One step of torch.optim.Adam (AdamW with decoupled_weight_decay=True).

    step: this step's number, from 1 (the bias corrections use it). amsgrad=True keeps
    the running maximum of exp_avg_sq in max_exp_avg_sq, which it then requires (and
    which is ignored otherwise). Weight decay is L2 (added to the gradient) unless
    decoupled, when param is first multiplied by 1 - lr * weight_decay.
    """
    step = v.check_int(step, "step", 1)
    lr = v.check_float(lr, "lr", 0.0)
    beta1 = v.check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = v.check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = v.check_float(eps, "eps", 0.0, low_open=True)
    weight_decay = v.check_float(weight_decay, "weight_decay", 0.0)
    amsgrad = _check_bool(amsgrad, "amsgrad")
    decoupled_weight_decay = _check_bool(decoupled_weight_decay, "decoupled_weight_decay")
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError("max_exp_avg_sq is required when amsgrad=True")
    kernels, p, (m, v2, vmax), g = _arrays(
        param, grad, [("exp_avg", exp_avg, True), ("exp_avg_sq", exp_avg_sq, True),
                      ("max_exp_avg_sq", max_exp_avg_sq if amsgrad else None, False)])
    kernels.adam_update(p, m, v2, vmax, g, step, lr, beta1, beta2, eps, weight_decay,
                        decoupled_weight_decay)
    return param


def rmsprop_update(param, grad, square_avg, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                   momentum=0.0, centered=False, momentum_buffer=None, grad_avg=None):
    """One step of torch.optim.RMSprop. momentum > 0 needs momentum_buffer; centered=True
    (normalise by the variance estimate rather than the second moment) needs grad_avg.
    Buffers not needed by the options are ignored. State buffers start at zero."""
    lr = v.check_float(lr, "lr", 0.0)
    alpha = v.check_float(alpha, "alpha", 0.0, 1.0)
    eps = v.check_float(eps, "eps", 0.0, low_open=True)
    weight_decay = v.check_float(weight_decay, "weight_decay", 0.0)
    momentum = v.check_float(momentum, "momentum", 0.0)
    centered = _check_bool(centered, "centered")
    if momentum > 0 and momentum_buffer is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    if centered and grad_avg is None:
        raise ValueError("grad_avg is required when centered=True")
    kernels, p, (sq, buf, gavg), g = _arrays(
        param, grad, [("square_avg", square_avg, True),
                      ("momentum_buffer", momentum_buffer if momentum > 0 else None, False),
                      ("grad_avg", grad_avg if centered else None, False)])
    kernels.rmsprop_update(p, sq, buf, gavg, g, lr, alpha, eps, weight_decay, momentum)
    return param
