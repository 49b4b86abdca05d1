"""Containers: Sequential (forward in order, backward in reverse), ModuleList and
Residual (y = x + f(x))."""
from collections import OrderedDict

import numpy as np

from pynn._config import backend_module
from pynn.nn.activation import _Activation
from pynn.nn.layers import Linear, _accumulate
from pynn.nn.module import Module, is_grad_enabled
from pynn.ops._gemm import _CODES

__all__ = ["Sequential", "ModuleList", "Residual"]


def backward_through(module, grad_output, input_grad):
    """module.backward, skipping the input gradient where the module supports it."""
    if not input_grad and module._input_grad_optional:
        return module.backward(grad_output, input_grad=False)
    return module.backward(grad_output)


def _linear_stack(steps):
    """(layers, activation codes, slopes) when every step of a Sequential's plan is a
    Linear with a fused activation or none: what linear_stack_forward/backward take."""
    layers, codes, slopes = [], [], []
    for module, activation in steps:
        if type(module) is not Linear:
            return None
        layers.append(module)
        if activation is None:
            codes.append(0)
            slopes.append(0.01)
        else:
            name, slope = activation._fused
            codes.append(_CODES[name])
            slopes.append(float(slope))
    return (layers, codes, slopes) if layers else None


def _check_module(module, where):
    if not isinstance(module, Module):
        raise TypeError(f"{where}: expected a Module, got {type(module).__name__}")
    return module


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: ordered children, appended one by one."""

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_ModuleSequence):
    """Modules applied in order: Sequential(m0, m1, ...) or Sequential(OrderedDict of
    name -> module). Children are named "0", "1", ... as in PyTorch, so state_dict keys
    match ("0.weight", "2.bias", ...).

    A Linear directly followed by ReLU, LeakyReLU, Sigmoid, Tanh, SiLU or GELU runs as
    one fused GEMM + activation call, forward and backward; nothing about it shows in
    the state_dict. backward runs the children's backward in reverse order. When every
    step is such a Linear (an MLP), the whole forward is one backend call and so is the
    whole backward (the same kernel calls with the same arguments, so the same bits).
    """

    _input_grad_optional = True

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            self.append(module, name=name)
        self._steps = None
        self._stack = None

    def append(self, module, name=None):
        """Add a module at the end (named by its position unless `name` is given)."""
        _check_module(module, "Sequential")
        if any(m is module for m in self._modules.values()):
            raise ValueError(f"this {type(module).__name__} instance is already in the "
                             "Sequential; each position needs its own instance, because a "
                             "module caches its latest forward pass for backward")
        self.add_module(str(len(self._modules)) if name is None else name, module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(modules[index]))
        return modules[index][1]

    def _plan(self):
        """(module, fused activation or None) steps."""
        modules = list(self._modules.values())
        steps, i = [], 0
        while i < len(modules):
            module = modules[i]
            following = modules[i + 1] if i + 1 < len(modules) else None
            if type(module) is Linear and isinstance(following, _Activation):
                steps.append((module, following))
                i += 2
            else:
                steps.append((module, None))
                i += 1
        return steps

    def _planned(self):
        """(steps, stack, caches): _plan(), _linear_stack() of it and, per step, the
        activation entry of a Linear's cache; remembered while the children and their
        fused activations stay the same (a forward at a small batch takes a few
        microseconds; planning again each time would add a third to it)."""
        modules = tuple(self._modules.values())
        fused = tuple(m._fused for m in modules if isinstance(m, _Activation))
        plan = self.__dict__.get("_plan_cache")
        if plan is None or plan[0] != modules or plan[1] != fused:
            steps = self._plan()
            caches = [None if a is None else a._fused for _, a in steps]
            plan = self.__dict__["_plan_cache"] = (modules, fused, steps, _linear_stack(steps),
                                                   caches)
        return plan[2], plan[3], plan[4]

    def forward(self, x):
        steps, stack, acts = self._planned()
        keep = is_grad_enabled()
        state = self.__dict__  # what backward reads, set without Module.__setattr__
        state["_stack"] = None
        if stack is not None:
            # every step a Linear: the layers' own calls, made in one backend call
            layers, codes, slopes = stack
            out = backend_module().linear_stack_forward(
                x, [m.weight.data for m in layers],
                [None if m.bias is None else m.bias.data for m in layers], codes, slopes, keep)
            if out is not None:
                ys, zs = out
                inputs = [x] + ys[:-1]
                if keep:
                    for module, xi, z, act in zip(layers, inputs, zs, acts):
                        # what the layer's own forward caches, so that its backward works too
                        module.__dict__["_cache"] = (xi, z, act, xi.shape[:1])
                    state["_steps"] = steps
                    state["_stack"] = (stack, inputs, zs)
                else:
                    for module in layers:
                        module.__dict__["_cache"] = None
                    state["_steps"] = None
                return ys[-1]
        for module, activation in steps:
            x = module(x) if activation is None else module._forward(x, activation)
        state["_steps"] = steps if keep else None
        return x

    def backward(self, grad_output, input_grad=True):
        if self._steps is None:
            raise self._missing_cache()
        if self._stack is not None:
            (layers, codes, slopes), inputs, zs = self._stack
            weights, dws, dbs = [], [], []
            for m in layers:
                w, b = m.weight, m.bias
                weights.append(w.data)
                dws.append(w.grad if w.requires_grad else False)
                dbs.append(False if b is None or not b.requires_grad else b.grad)
            out = backend_module().linear_stack_backward(
                grad_output, inputs, weights, zs, codes, slopes, dws, dbs, bool(input_grad))
            if out is not None:
                dx, dws, dbs = out
                for m, dw, db in zip(layers, dws, dbs):
                    if dw is not None:
                        _accumulate(m.weight, dw)
                    if db is not None:
                        _accumulate(m.bias, db)
                return dx
        grad = grad_output
        last = len(self._steps) - 1
        for k in range(last, -1, -1):
            module, activation = self._steps[k]
            need = input_grad or k > 0
            if activation is not None:
                grad = module.backward(grad, input_grad=need)
            else:
                grad = backward_through(module, grad, need)
        return grad

    def _trace(self, x, record):
        for module in self._modules.values():
            x = module._trace(x, record)
        record(self, x)
        return x

    def get_config(self):
        return {}


class ModuleList(_ModuleSequence):
    """A list of modules registered as children "0", "1", ... It has no forward: use it to
    hold the layers of a custom Module, whose forward and backward use them."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self._modules)), _check_module(module, "ModuleList"))
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[index]

    def get_config(self):
        return {}


class Residual(Module):
    """y = x + fn(x), for any module fn whose output has the input's shape. backward
    returns dy + fn.backward(dy). The inner module is the child "fn" (state_dict keys
    "fn.0.weight", ...)."""

    _input_grad_optional = True

    def __init__(self, fn):
        super().__init__()
        self.fn = _check_module(fn, "Residual")
        self._shape = None

    def forward(self, x):
        x = np.asarray(x)
        fx = self.fn(x)
        if np.shape(fx) != x.shape:
            raise ValueError(f"Residual: the inner module maps shape {x.shape} to "
                             f"{np.shape(fx)}; they must be equal")
        self._shape = x.shape if is_grad_enabled() else None
        return x + fx

    def backward(self, grad_output, input_grad=True):
        if self._shape is None:
            raise self._missing_cache()
        dy = np.asarray(grad_output)
        if dy.shape != self._shape:
            raise ValueError(f"Residual.backward: grad_output has shape {dy.shape}, expected "
                             f"{self._shape}")
        inner = backward_through(self.fn, dy, input_grad)
        return dy + inner if input_grad else None

    def _trace(self, x, record):
        y = np.asarray(x) + self.fn._trace(x, record)
        record(self, y)
        return y

    def get_config(self):
        return {}
