"""SGD, RMSprop, Adam and AdamW, with PyTorch's options, defaults, state names and update
rules. A step updates each param group with one fused in-place call (per dtype) on the
backend in force, over all of the group's parameters that have a gradient."""
import operator

import numpy as np

from pynn import ops
from pynn.ops._validate import check_float
from pynn.optim.optimizer import Optimizer

__all__ = ["SGD", "RMSprop", "Adam", "AdamW"]

# a state's step count: Adam updates parameters at one step count per call
_STEP = operator.itemgetter("step")


def _check_bool(group, name):
    if not isinstance(group[name], bool):
        raise TypeError(f"{name} must be a bool, not {type(group[name]).__name__}")


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum (Polyak, 1964) and Nesterov momentum
    (Sutskever et al., ICML 2013) as PyTorch formulates them: with g = grad + wd * p,
    b = g on the first step and b = momentum * b + (1 - dampening) * g after, the step is
    p -= lr * (g + momentum * b if nesterov else b) (p -= lr * g without momentum).
    State: momentum_buffer (None without momentum)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def _check_group(self, group):
        super()._check_group(group)
        group["momentum"] = check_float(group["momentum"], "momentum", low=0.0)
        group["dampening"] = check_float(group["dampening"], "dampening", 0.0, 1.0)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0.0)
        _check_bool(group, "nesterov")
        if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")

    state_kinds = {"momentum_buffer": "buffer or None"}

    def _init_state(self, p, group):
        return {"momentum_buffer": None}

    def _update(self, params, group):
        momentum = group["momentum"]

        def first(state):
            # no buffer yet: PyTorch's first step, which ops takes for a whole call
            return momentum != 0 and state["momentum_buffer"] is None

        for batch, states in self._batches(params, group, first):
            first_step = first(states[0])
            if first_step:
                for p, s in zip(batch, states):
                    s["momentum_buffer"] = np.zeros_like(p.data)
            ops.sgd_update([p.data for p in batch], [p.grad for p in batch],
                           [s["momentum_buffer"] for s in states] if momentum != 0 else None,
                           lr=group["lr"], momentum=momentum, dampening=group["dampening"],
                           nesterov=group["nesterov"], weight_decay=group["weight_decay"],
                           first_step=first_step)


class RMSprop(Optimizer):
    """RMSprop (Hinton, Lecture 6e of Neural Networks for Machine Learning, 2012), as in
    PyTorch: v = alpha * v + (1 - alpha) * g^2; centered subtracts the squared running
    mean of g from v; the step is g / (sqrt(v) + eps), through a momentum buffer when
    momentum > 0. State: step, square_avg, momentum_buffer, grad_avg."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps,
                                  "weight_decay": weight_decay, "momentum": momentum,
                                  "centered": centered})

    def _check_group(self, group):
        super()._check_group(group)
        group["alpha"] = check_float(group["alpha"], "alpha", 0.0, 1.0)
        group["eps"] = check_float(group["eps"], "eps", low=0.0, low_open=True)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0.0)
        group["momentum"] = check_float(group["momentum"], "momentum", low=0.0)
        _check_bool(group, "centered")

    state_kinds = {"step": "step", "square_avg": "buffer", "momentum_buffer": "buffer or None",
                   "grad_avg": "buffer or None"}

    def _init_state(self, p, group):
        return {"step": 0, "square_avg": np.zeros_like(p.data), "momentum_buffer": None,
                "grad_avg": None}

    def _update(self, params, group):
        heavy_ball, centered = group["momentum"] > 0, group["centered"]
        for batch, states in self._batches(params, group):
            for p, s in zip(batch, states):
                s["step"] = int(s["step"]) + 1
                if heavy_ball and s["momentum_buffer"] is None:
                    s["momentum_buffer"] = np.zeros_like(p.data)
                if centered and s["grad_avg"] is None:
                    s["grad_avg"] = np.zeros_like(p.data)
            ops.rmsprop_update(
                [p.data for p in batch], [p.grad for p in batch],
                [s["square_avg"] for s in states], lr=group["lr"], alpha=group["alpha"],
                eps=group["eps"], weight_decay=group["weight_decay"], momentum=group["momentum"],
                centered=centered,
                momentum_buffer=[s["momentum_buffer"] for s in states] if heavy_ball else None,
                grad_avg=[s["grad_avg"] for s in states] if centered else None)


class Adam(Optimizer):
    """Adam (Kingma and Ba, ICLR 2015), with AMSGrad (Reddi et al., ICLR 2018) as an
    option; weight_decay adds wd * p to the gradient (L2), as PyTorch's Adam does.
    State: step, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad})

    def _check_group(self, group):
        super()._check_group(group)
        try:
            beta1, beta2 = group["betas"]
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of numbers, got {group['betas']!r}") from None
        group["betas"] = (check_float(beta1, "betas[0]", 0.0, 1.0, high_open=True),
                          check_float(beta2, "betas[1]", 0.0, 1.0, high_open=True))
        group["eps"] = check_float(group["eps"], "eps", low=0.0, low_open=True)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0.0)
        _check_bool(group, "amsgrad")

    # max_exp_avg_sq comes with the first AMSGrad step
    state_kinds = {"step": "step", "exp_avg": "buffer", "exp_avg_sq": "buffer",
                   "max_exp_avg_sq": "optional"}

    def _init_state(self, p, group):
        return {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}

    def _update(self, params, group):
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        # The bias corrections take one step count per call: parameters that started at
        # different steps are updated apart.
        for batch, states in self._batches(params, group, _STEP):
            step = int(states[0]["step"]) + 1
            for s in states:
                s["step"] = step
            if amsgrad:
                for p, s in zip(batch, states):
                    if s.get("max_exp_avg_sq") is None:
                        s["max_exp_avg_sq"] = np.zeros_like(p.data)
            ops.adam_update(
                [p.data for p in batch], [p.grad for p in batch], [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states], step=step, lr=group["lr"], beta1=beta1,
                beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                amsgrad=amsgrad,
                max_exp_avg_sq=[s["max_exp_avg_sq"] for s in states] if amsgrad else None,
                decoupled_weight_decay=self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, ICLR 2019): the step first
    multiplies p by (1 - lr * weight_decay), and the gradient is left undecayed."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
