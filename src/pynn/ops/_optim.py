"""Fused optimizer steps, in place: one pass over the parameters and their state per call.

Each op is one step of the torch.optim algorithm of the same name, with PyTorch's
semantics and arithmetic (pynn.backends.numpy.optim gives the formulas). pynn.optim's
optimizers keep the state and call these, once per step for all the parameters of a group.

Two forms, told apart by param:
- one parameter: param is an ndarray, and grad and each state argument one array;
- many parameters in one call (one kernel call for all of them): param is a list or tuple
  of ndarrays, and grad and each state argument a list or tuple of as many entries (an
  optional state: such a list, or None). Entry i is updated exactly as the one-parameter
  form would update it, and errors name it ("exp_avg[2] has shape ..."). All the
  parameters of one call share one dtype: a list mixing dtypes raises TypeError (make one
  call per dtype).

The parameters and state buffers are updated in place, so they must be writeable,
C-contiguous numpy.ndarrays of one floating dtype, each buffer of its parameter's shape,
none overlapping another array of the call: anything else raises (never a silent update
of a copy). A gradient is only read; any array-like of its parameter's shape whose dtype
casts to the parameter's ('same_kind') is accepted. float32 and float64 run on the
backend in force, other floating dtypes on the NumPy reference. Each op returns param.
"""
import math

import numpy as np

from pynn._config import backend_module
from pynn.backends import numpy as _reference

from . import _validate as v

__all__ = ["sgd_update", "adam_update", "rmsprop_update"]


def _label(name, i):
    """How errors name an argument: entry i of it in the list form, itself when i is None."""
    return name if i is None else f"{name}[{i}]"


def _entries(value, name, count):
    """A list-form argument as a list of `count` entries."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of arrays, as param is, not "
                        f"{type(value).__name__}")
    if len(value) != count:
        raise ValueError(f"{name} has {len(value)} entries, param has {count}")
    return list(value)


def _owner(a):
    """The ndarray that allocated the memory `a` views, or None when that is not an ndarray
    (memory from another library, a memoryview, a raw pointer)."""
    base = a.base
    while isinstance(base, np.ndarray):
        a, base = base, base.base
    return a if base is None and a.flags.owndata else None


def _inplace(a, name, i, dtype=None, shape=None):
    """Checks an array the step writes and returns its _owner: a parameter (shape None),
    floating and of `dtype` when given (that of the list's first), or a state buffer of
    its parameter's dtype and shape."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{_label(name, i)} must be a numpy.ndarray (it is updated in place), "
                        f"not {type(a).__name__}")
    if shape is not None:
        if a.dtype != dtype:
            raise TypeError(f"{_label(name, i)} has dtype {a.dtype}, expected param's dtype "
                            f"{dtype}")
        if a.shape != shape:
            raise ValueError(f"{_label(name, i)} has shape {a.shape}, expected param's shape "
                             f"{shape}")
    elif a.dtype.kind != "f":
        raise TypeError(f"{_label(name, i)} must have a floating dtype, got {a.dtype}")
    elif dtype is not None and a.dtype != dtype:
        raise TypeError(f"{_label(name, i)} has dtype {a.dtype}, but param[0] has {dtype}; "
                        "make one call per dtype")
    flags = a.flags
    if not flags.c_contiguous:
        raise ValueError(f"{_label(name, i)} must be C-contiguous (it is updated in place)")
    if not flags.writeable:
        raise ValueError(f"{_label(name, i)} is read-only (it is updated in place)")
    return a if flags.owndata and a.base is None else _owner(a)


def _gradient(grad, i, dtype, shape):
    """Checks a gradient, as an array (not yet cast to its parameter's dtype)."""
    grad = v.asarray(grad, _label("grad", i))
    if grad.shape != shape:
        raise ValueError(f"{_label('grad', i)} has shape {grad.shape}, expected param's shape "
                         f"{shape}")
    if grad.dtype != dtype and not np.can_cast(grad.dtype, dtype, casting="same_kind"):
        raise TypeError(f"{_label('grad', i)} has dtype {grad.dtype}, which cannot be cast to "
                        f"param's dtype {dtype} under casting='same_kind'")
    return grad


def _check_disjoint(written, grads, owners, keys):
    """Refuses a call where an array the step writes shares memory with another array of
    the call (gradients, only read, may share memory with each other).

    written: (name, arrays) pairs; owners: the _owner of every array, written ones first,
    in order; keys: the entry indices (None in the one-parameter form). Arrays can share
    memory only if they view memory of one owner. Arrays whose owners are distinct ndarrays
    are therefore disjoint without a look at their addresses (which take a microsecond each
    to read from Python); arrays of one owner, and arrays of an unknown owner against all
    others, are compared, exactly.
    """
    ids = {id(owner) for owner in owners}
    if len(ids) == len(owners) and id(None) not in ids:  # owners all known and distinct
        return
    named = [(name, i, a, True) for name, arrays in written for i, a in zip(keys, arrays)]
    named += [("grad", i, g, False) for i, g in zip(keys, grads)]
    groups = {}
    for k, owner in enumerate(owners):
        if owner is not None:
            groups.setdefault(id(owner), []).append(k)
    pairs = {(j, k) for ks in groups.values() for j in ks for k in ks if j < k}
    pairs.update((min(j, k), max(j, k)) for j, owner in enumerate(owners) if owner is None
                 for k in range(len(owners)) if k != j)
    for j, k in sorted(pairs):
        (name_j, i_j, a_j, writes_j), (name_k, i_k, a_k, writes_k) = named[j], named[k]
        if (writes_j or writes_k) and v._overlaps(a_j, a_k):
            raise ValueError(f"{_label(name_k, i_k)} overlaps {_label(name_j, i_j)}; pass "
                             "separate arrays")


def _lists(param, grad, buffers):
    """The arrays of a call in either form, as the kernels take them: the entry keys
    ((None,) for one parameter, else range(count)), then lists of the parameters, of
    each buffer's arrays (None for an unused optional one) and of the gradients. Checks
    the lists, not the arrays. buffers: (name, value, required)."""
    if isinstance(param, np.ndarray):
        states = [None if value is None and not required else [value]
                  for _, value, required in buffers]
        return (None,), [param], states, [grad]
    if isinstance(param, (list, tuple)):
        count = len(param)
        states = [None if value is None and not required else _entries(value, name, count)
                  for name, value, required in buffers]
        return range(count), list(param), states, _entries(grad, "grad", count)
    raise TypeError("param must be a numpy.ndarray, or a list or tuple of them (it is "
                    f"updated in place), not {type(param).__name__}")


def _check(keys, params, states, grads, buffers):
    """Checks every array of a call (see the module's docstring); returns the gradients
    as the kernels take them, C-contiguous in the parameters' dtype."""
    owners = [_inplace(params[0], "param", keys[0])]
    dtype = params[0].dtype
    owners += [_inplace(p, "param", i, dtype) for i, p in zip(keys[1:], params[1:])]
    shapes = [p.shape for p in params]
    written = [("param", params)]
    for (name, _, _), arrays in zip(buffers, states):
        if arrays is not None:
            owners += [_inplace(a, name, i, dtype, shape)
                       for i, a, shape in zip(keys, arrays, shapes)]
            written.append((name, arrays))
    grads = [_gradient(g, i, dtype, shape) for i, g, shape in zip(keys, grads, shapes)]
    owners += [_owner(g) for g in grads]
    _check_disjoint(written, grads, owners, keys)
    return [np.asarray(g, dtype, order="C") for g in grads]  # 0-D stays 0-D


def _update(kernel, param, grad, buffers, *options, tried=False):
    """Runs the backend's `kernel` (a name) on the arrays of a call in either form, as
    kernel(params, *buffers, grads, *options), if they pass the checks.

    float32 and float64 arrays go to the backend in force, others to the reference. The
    native kernels make every check of _check themselves, in C, and take the gradients
    only as they are (C-contiguous, in the parameters' dtype), so they get the arrays
    first, unchecked: _check costs about half a microsecond an array, more than a small
    model's whole update costs in C. What they refuse goes through _check, which names
    what is wrong or converts the gradients for a second call. `tried`: the caller has
    just offered these arrays to the native kernel, which refused them.
    """
    keys, params, states, grads = _lists(param, grad, buffers)
    if not params:
        return
    first = params[0]
    native = isinstance(first, np.ndarray) and first.dtype in v.NATIVE_DTYPES
    kernels = backend_module() if native else _reference
    if kernels is not _reference and not tried:
        try:
            getattr(kernels, kernel)(params, *states, grads, *options)
            return
        except (TypeError, ValueError):
            pass
    grads = _check(keys, params, states, grads, buffers)
    getattr(kernels, kernel)(params, *states, grads, *options)


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
    nesterov = v.check_bool(nesterov, "nesterov")
    first_step = v.check_bool(first_step, "first_step")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
    if momentum != 0 and momentum_buffer is None:
        raise ValueError("momentum_buffer is required when momentum != 0")
    buffer = momentum_buffer if momentum != 0 else None
    _update("sgd_update", param, grad, [("momentum_buffer", buffer, False)], lr, momentum,
            dampening, nesterov, weight_decay, first_step)
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
    tried = False
    if type(param) is list and type(step) is int and 1 <= step <= v.INT64_MAX \
            and type(lr) is float and 0.0 <= lr < math.inf and type(eps) is float \
            and 0.0 < eps < math.inf and type(beta1) is float and 0.0 <= beta1 < 1.0 \
            and type(beta2) is float and 0.0 <= beta2 < 1.0 and type(weight_decay) is float \
            and 0.0 <= weight_decay < math.inf and amsgrad is False \
            and type(decoupled_weight_decay) is bool:
        # an optimizer's step (lists, float options in range, no AMSGrad): straight to the
        # kernels, which check the arrays themselves; at a small model the checks below
        # cost more than the update. What the kernels refuse takes the general path.
        kernels = backend_module()
        if kernels is not _reference and param and type(param[0]) is np.ndarray \
                and param[0].dtype in v.NATIVE_DTYPES:
            try:
                kernels.adam_update(param, exp_avg, exp_avg_sq, None, grad, step, lr, beta1,
                                    beta2, eps, weight_decay, decoupled_weight_decay)
                return param
            except (TypeError, ValueError):
                tried = True
    step = v.check_int(step, "step", 1)
    if step > v.INT64_MAX:   # the kernels count steps in int64; refused on both backends
        raise ValueError(f"step must fit in int64, got {step}")
    lr = v.check_float(lr, "lr", 0.0)
    beta1 = v.check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = v.check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = v.check_float(eps, "eps", 0.0, low_open=True)
    weight_decay = v.check_float(weight_decay, "weight_decay", 0.0)
    amsgrad = v.check_bool(amsgrad, "amsgrad")
    decoupled_weight_decay = v.check_bool(decoupled_weight_decay, "decoupled_weight_decay")
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError("max_exp_avg_sq is required when amsgrad=True")
    _update("adam_update", param, grad,
            [("exp_avg", exp_avg, True), ("exp_avg_sq", exp_avg_sq, True),
             ("max_exp_avg_sq", max_exp_avg_sq if amsgrad else None, False)],
            step, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, tried=tried)
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
    centered = v.check_bool(centered, "centered")
    if momentum > 0 and momentum_buffer is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    if centered and grad_avg is None:
        raise ValueError("grad_avg is required when centered=True")
    _update("rmsprop_update", param, grad,
            [("square_avg", square_avg, True),
             ("momentum_buffer", momentum_buffer if momentum > 0 else None, False),
             ("grad_avg", grad_avg if centered else None, False)],
            lr, alpha, eps, weight_decay, momentum)
    return param
