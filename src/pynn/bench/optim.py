"""Fused optimizer steps on one parameter tensor of 1M elements.

pynn updates the parameter and its state in one pass per step; PyTorch runs its fused
CPU kernels (torch.optim.Adam/SGD/RMSprop with fused=True where available), the fastest
of its implementations, on the same tensor.
"""
import itertools

import numpy as np

from pynn import ops
from pynn.bench._registry import Case

GROUP = "optim"
F32 = 4


def _arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(np.float32),
            (rng.standard_normal(n) * 1e-3).astype(np.float32))


def _torch_opt(name, n, **options):
    import torch

    param, grad = _arrays(n)
    p = torch.nn.Parameter(torch.from_numpy(param))
    p.grad = torch.from_numpy(grad)
    cls = getattr(torch.optim, name)
    try:
        opt = cls([p], fused=True, **options)
        opt.step()
    except (RuntimeError, TypeError, ValueError):  # no fused CPU kernel in this version
        opt = cls([p], **options)
    return opt.step


def _adam_case(n, quick=True):
    def make():
        param, grad = _arrays(n)
        m, v = np.zeros_like(param), np.zeros_like(param)
        steps = itertools.count(1)
        return lambda: ops.adam_update(param, grad, m, v, step=next(steps), lr=1e-3)

    # read param, grad, m, v; write param, m, v
    return Case(GROUP, f"adam_update ({n},) f32", make,
                lambda: _torch_opt("Adam", n, lr=1e-3), quick=quick, bytes=7 * n * F32)


def _sgd_case(n, quick=True):
    def make():
        param, grad = _arrays(n)
        buf = np.zeros_like(param)
        return lambda: ops.sgd_update(param, grad, buf, lr=0.01, momentum=0.9)

    return Case(GROUP, f"sgd_update momentum=0.9 ({n},) f32", make,
                lambda: _torch_opt("SGD", n, lr=0.01, momentum=0.9), quick=quick,
                bytes=5 * n * F32)


def _rmsprop_case(n, quick=False):
    def make():
        param, grad = _arrays(n)
        sq = np.zeros_like(param)
        return lambda: ops.rmsprop_update(param, grad, sq, lr=1e-3)

    return Case(GROUP, f"rmsprop_update ({n},) f32", make,
                lambda: _torch_opt("RMSprop", n, lr=1e-3), quick=quick, bytes=5 * n * F32)


def cases():
    n = 1 << 20
    return [_adam_case(n), _sgd_case(n), _rmsprop_case(n)]
