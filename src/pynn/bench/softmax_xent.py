"""Softmax and fused softmax + cross-entropy at classifier-head shapes.

The fused case is the forward and the backward of the loss: pynn returns (loss, dlogits)
from one call; PyTorch runs F.cross_entropy and autograd's backward, as a training step
would.
"""
import numpy as np

from pynn import ops
from pynn.bench._registry import Case

GROUP = "softmax_xent"


def _logits(n, c, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c)) * 2).astype(np.float32), rng.integers(0, c, n)


def _xent_case(n, c, label_smoothing=0.0, quick=True):
    def make():
        logits, labels = _logits(n, c)
        return lambda: ops.softmax_cross_entropy(logits, labels,
                                                 label_smoothing=label_smoothing)

    def make_torch():
        import torch

        logits, labels = _logits(n, c)
        x = torch.from_numpy(logits).requires_grad_()
        target = torch.from_numpy(labels)

        def step():
            x.grad = None
            loss = torch.nn.functional.cross_entropy(x, target, label_smoothing=label_smoothing)
            loss.backward()
            return x.grad
        return step

    name = f"cross-entropy fwd+bwd ({n}, {c}) f32"
    if label_smoothing:
        name += f" label_smoothing={label_smoothing}"
    return Case(GROUP, name, make, make_torch, quick=quick, bytes=2 * n * c * 4)


def _softmax_case(n, c, log=False, backward=False, quick=True):
    op = ops.log_softmax if log else ops.softmax
    op_backward = ops.log_softmax_backward if log else ops.softmax_backward
    torch_name = "log_softmax" if log else "softmax"

    def make():
        x, _ = _logits(n, c)
        if backward:
            y, dy = op(x), _logits(n, c, seed=1)[0]
            return lambda: op_backward(dy, y)
        return lambda: op(x)

    def make_torch():
        import torch

        x = torch.from_numpy(_logits(n, c)[0])
        if backward:
            y = getattr(torch, torch_name)(x, -1)
            dy = torch.from_numpy(_logits(n, c, seed=1)[0])
            aten = torch.ops.aten
            grad = aten._log_softmax_backward_data if log else aten._softmax_backward_data
            return lambda: grad(dy, y, -1, torch.float32)
        return lambda: getattr(torch, torch_name)(x, -1)

    name = f"{torch_name} {'bwd' if backward else 'fwd'} ({n}, {c}) f32"
    return Case(GROUP, name, make, make_torch, quick=quick,
                bytes=(3 if backward else 2) * n * c * 4)


def cases():
    return [
        _xent_case(4096, 1000),
        _xent_case(128, 10),
        _xent_case(4096, 1000, label_smoothing=0.1, quick=False),
        _softmax_case(4096, 1000),
        _softmax_case(4096, 1000, log=True, quick=False),
        _softmax_case(4096, 1000, backward=True, quick=False),
        _softmax_case(4096, 1000, log=True, backward=True, quick=False),
    ]
