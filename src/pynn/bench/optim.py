"""Fused optimizer steps: on one parameter tensor of 1M elements, and a whole Adam step
over the six parameters of a 784-512-256-10 MLP.

pynn updates the parameters and their state in one pass, and one call, per step; PyTorch
runs its fused CPU kernels (torch.optim.Adam/SGD/RMSprop with fused=True where available),
the fastest of its implementations, on the same tensors.
"""
import itertools

import numpy as np

from pynn import nn, ops, optim
from pynn.bench._registry import Case

GROUP = "optim"
F32 = 4


def _arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(np.float32),
            (rng.standard_normal(n) * 1e-3).astype(np.float32))


def _torch_opt(name, sizes, **options):
    import torch

    params = []
    for i, n in enumerate(sizes):
        param, grad = _arrays(n, seed=i)
        params.append(torch.nn.Parameter(torch.from_numpy(param)))
        params[-1].grad = torch.from_numpy(grad)
    cls = getattr(torch.optim, name)
    try:
        opt = cls(params, fused=True, **options)
        opt.step()
    except (RuntimeError, TypeError, ValueError):  # no fused CPU kernel in this version
        opt = cls(params, **options)
    return opt.step


def _adam_case(n, quick=True):
    def make():
        param, grad = _arrays(n)
        m, v = np.zeros_like(param), np.zeros_like(param)
        steps = itertools.count(1)
        return lambda: ops.adam_update(param, grad, m, v, step=next(steps), lr=1e-3)

    # read param, grad, m, v; write param, m, v
    return Case(GROUP, f"adam_update ({n},) f32", make,
                lambda: _torch_opt("Adam", [n], lr=1e-3), quick=quick, bytes=7 * n * F32)


def _sgd_case(n, quick=True):
    def make():
        param, grad = _arrays(n)
        buf = np.zeros_like(param)
        return lambda: ops.sgd_update(param, grad, buf, lr=0.01, momentum=0.9)

    return Case(GROUP, f"sgd_update momentum=0.9 ({n},) f32", make,
                lambda: _torch_opt("SGD", [n], lr=0.01, momentum=0.9), quick=quick,
                bytes=5 * n * F32)


def _rmsprop_case(n, quick=False):
    def make():
        param, grad = _arrays(n)
        sq = np.zeros_like(param)
        return lambda: ops.rmsprop_update(param, grad, sq, lr=1e-3)

    return Case(GROUP, f"rmsprop_update ({n},) f32", make,
                lambda: _torch_opt("RMSprop", [n], lr=1e-3), quick=quick, bytes=5 * n * F32)


def _mlp_adam_case(quick=True):
    """optim.Adam.step over a model's parameters: one fused call for all six, so the
    Python overhead is paid once per step rather than once per parameter."""
    sizes = [784 * 512, 512, 512 * 256, 256, 256 * 10, 10]

    def make():
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                              nn.Linear(256, 10))
        for i, p in enumerate(model.parameters()):
            p.grad = _arrays(p.data.size, seed=i)[1].reshape(p.shape)
        return optim.Adam(model.parameters(), lr=1e-3).step

    return Case(GROUP, "Adam step, 784-512-256-10 MLP (6 params) f32", make,
                lambda: _torch_opt("Adam", sizes, lr=1e-3), quick=quick,
                bytes=7 * sum(sizes) * F32)


def cases():
    n = 1 << 20
    return [_adam_case(n), _sgd_case(n), _rmsprop_case(n), _mlp_adam_case()]
