"""Activations, forward and backward, at 1M elements (bandwidth and vector math) and at a
hidden layer's (128, 512) (call overhead).

Backward cases take what a layer caches: sigmoid and tanh their output, the others their
input; PyTorch runs the matching aten *_backward kernel, which is what autograd calls.
"""
import numpy as np

from pynn import ops
from pynn.bench._registry import Case

GROUP = "eltwise"
SLOPE = 0.01

# name -> (forward, backward(dy, cached), backward caches the output)
_OPS = {
    "relu": (ops.relu, ops.relu_backward, False),
    "leaky_relu": (lambda x: ops.leaky_relu(x, SLOPE),
                   lambda dy, x: ops.leaky_relu_backward(dy, x, SLOPE), False),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward, True),
    "tanh": (ops.tanh, ops.tanh_backward, True),
    "silu": (ops.silu, ops.silu_backward, False),
    "gelu": (ops.gelu, ops.gelu_backward, False),
    "gelu_tanh": (lambda x: ops.gelu(x, approximate="tanh"),
                  lambda dy, x: ops.gelu_backward(dy, x, approximate="tanh"), False),
}


def _torch_ops(name):
    """(forward, backward(dy, cached)) in PyTorch."""
    import torch

    F, aten = torch.nn.functional, torch.ops.aten
    return {
        "relu": (torch.relu, lambda dy, x: aten.threshold_backward(dy, x, 0)),
        "leaky_relu": (lambda x: F.leaky_relu(x, SLOPE),
                       lambda dy, x: aten.leaky_relu_backward(dy, x, SLOPE, False)),
        "sigmoid": (torch.sigmoid, aten.sigmoid_backward),
        "tanh": (torch.tanh, aten.tanh_backward),
        "silu": (F.silu, aten.silu_backward),
        "gelu": (F.gelu, aten.gelu_backward),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                      lambda dy, x: aten.gelu_backward(dy, x, approximate="tanh")),
    }[name]


def _inputs(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    return x, rng.standard_normal(shape).astype(np.float32)


def _case(name, shape, backward, quick):
    forward_op, backward_op, from_output = _OPS[name]

    def make():
        x, dy = _inputs(shape)
        if backward:
            cached = forward_op(x) if from_output else x
            return lambda: backward_op(dy, cached)
        return lambda: forward_op(x)

    def make_torch():
        import torch

        forward_t, backward_t = _torch_ops(name)
        x, dy = (torch.from_numpy(a) for a in _inputs(shape))
        if backward:
            cached = forward_t(x) if from_output else x
            return lambda: backward_t(dy, cached)
        return lambda: forward_t(x)

    size = int(np.prod(shape))
    label = f"{name} {'bwd' if backward else 'fwd'} {shape} f32"
    return Case(GROUP, label, make, make_torch, quick=quick,
                bytes=(3 if backward else 2) * size * 4)


def cases():
    big, layer = (1 << 20,), (128, 512)
    out = []
    for name in _OPS:
        quick = name in ("relu", "sigmoid", "tanh", "silu", "gelu")
        out.append(_case(name, big, backward=False, quick=quick))
        out.append(_case(name, big, backward=True, quick=quick))
        out.append(_case(name, layer, backward=False, quick=name == "relu"))
        out.append(_case(name, layer, backward=True, quick=False))
    return out
