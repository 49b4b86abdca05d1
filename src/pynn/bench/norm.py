"""Batch norm, the bias gradient and dropout at the shapes layers produce.

Batch norm is timed as a training step uses it: the forward pass with batch statistics
(updating the running ones) and the backward pass; PyTorch runs F.batch_norm and
autograd's backward. The (N, C) case reduces down columns, the (N, C, H, W) case along
contiguous planes: the two layouts of csrc/norm.c.
"""
import numpy as np

from pynn import ops
from pynn.bench._registry import Case

GROUP = "norm"
F32 = 4


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    return (rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(shape).astype(np.float32),
            rng.uniform(0.5, 2, C).astype(np.float32), rng.standard_normal(C).astype(np.float32))


def _batch_norm_case(shape, quick=True):
    n = int(np.prod(shape))

    def make():
        x, dy, gamma, beta = _data(shape)
        running_mean, running_var = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)

        def step():
            _, mean, invstd = ops.batch_norm(x, gamma, beta, running_mean, running_var, True)
            return ops.batch_norm_backward(dy, x, gamma, mean, invstd)
        return step

    def make_torch():
        import torch

        x, dy, gamma, beta = (torch.from_numpy(a) for a in _data(shape))
        x.requires_grad_()
        gamma.requires_grad_()
        beta.requires_grad_()
        running_mean, running_var = torch.zeros(shape[1]), torch.ones(shape[1])

        def step():
            x.grad = gamma.grad = beta.grad = None
            torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta,
                                           training=True).backward(dy)
            return x.grad
        return step

    # at least: read x, write y; read dy and x, write dx
    return Case(GROUP, f"batch_norm fwd+bwd train {shape} f32", make, make_torch, quick=quick,
                bytes=5 * n * F32)


def _bias_backward_case(shape, channel_axis, quick=True):
    n = int(np.prod(shape))
    axes = tuple(a for a in range(len(shape)) if a != channel_axis % len(shape))

    def make():
        dy = _data(shape)[1]
        return lambda: ops.bias_backward(dy, channel_axis)

    def make_torch():
        import torch

        dy = torch.from_numpy(_data(shape)[1])
        return lambda: dy.sum(dim=axes)

    return Case(GROUP, f"bias_backward {shape} f32", make, make_torch, quick=quick,
                bytes=n * F32)


def _dropout_case(n, p=0.5, quick=True):
    def make():
        x = _data((n, 1))[0].reshape(n)
        return lambda: ops.dropout(x, p, seed=1234)

    def make_torch():
        import torch

        x = torch.from_numpy(_data((n, 1))[0].reshape(n))
        return lambda: torch.nn.functional.dropout(x, p, training=True)

    return Case(GROUP, f"dropout fwd ({n},) p={p} f32", make, make_torch, quick=quick,
                bytes=2 * n * F32)


def cases():
    return [
        _batch_norm_case((4096, 1024)),
        _batch_norm_case((32, 64, 28, 28)),
        _batch_norm_case((128, 256), quick=False),
        _bias_backward_case((4096, 1024), -1),
        _bias_backward_case((32, 64, 28, 28), 1, quick=False),
        _dropout_case(1 << 20),
    ]
