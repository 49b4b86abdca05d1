"""Module and Parameter: the base of every layer, with PyTorch's names and state_dict keys.

A Module has forward and backward. forward caches what backward needs (inputs,
pre-activations, saved statistics), in training and in evaluation mode, unless it runs
inside `pynn.no_grad()`. backward(grad_output) takes dLoss/dOutput, accumulates
dLoss/dParameter into each Parameter's `.grad` and returns dLoss/dInput. A module instance
holds the cache of its latest forward pass: backward must follow the forward it belongs
to, the input must not be modified in between, and one instance cannot appear twice in a
network (two forwards would overwrite one cache), nor serve two threads at once.
"""
import math
import threading
from collections import OrderedDict, namedtuple

import numpy as np

__all__ = ["Parameter", "Module", "no_grad", "is_grad_enabled", "StateDictError"]

_grad_mode = threading.local()


def is_grad_enabled():
    """False inside `no_grad()`: forward passes then keep nothing for backward."""
    return getattr(_grad_mode, "enabled", True)


class no_grad:
    """Context manager for inference: forward passes inside it cache nothing for backward
    (less memory, no pre-activation buffers), so backward afterwards raises. Local to the
    calling thread; nests.

        with pynn.no_grad():
            logits = model(x)
    """

    def __enter__(self):
        self._previous = is_grad_enabled()
        _grad_mode.enabled = False
        return self

    def __exit__(self, *exc):
        _grad_mode.enabled = self._previous
        return False


class StateDictError(ValueError, RuntimeError):
    """A state_dict that does not fit the module: missing or unexpected keys, wrong shapes
    or dtypes. A ValueError, and a RuntimeError as in PyTorch."""


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter:
    """A trainable array: `.data` (a C-contiguous, writable float ndarray, updated in place
    by optimizers) and `.grad` (an array of the same shape and dtype, or None before the
    first backward and after zero_grad). `requires_grad=False` freezes it: layers then
    leave `.grad` alone and optimizers skip it.

    Wraps `data` without copying when it already is a C-contiguous writable float array.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Parameter):
            data = data.data
        array = np.asarray(data)
        if array.dtype.kind != "f":
            raise TypeError(f"Parameter data must be a float array, got dtype {array.dtype}")
        self.data = np.require(array, requirements=("C", "W", "A"))
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def numpy(self):
        """The underlying array (not a copy)."""
        return self.data

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"Parameter containing:\n{self.data!r}"


def _indent(text, spaces=2):
    return text.replace("\n", "\n" + " " * spaces)


class Module:
    """Base class of layers and models.

    Subclasses call `super().__init__()`, assign Parameters, sub-Modules and buffers
    (`register_buffer`) as attributes (they are registered by name, in order, and make up
    the state_dict keys), and define `forward(x)` and `backward(grad_output)`.
    Built-in layers also accept `backward(grad_output, input_grad=False)`, which skips the
    gradient with respect to the input (the first layer of a network does not need it)
    and returns None.
    """

    _input_grad_optional = False

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_modules"] = {}
        d["training"] = True

    # -- registration ------------------------------------------------------------------

    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 "before assigning attributes")
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} "
                                "(a Parameter or None is expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r} "
                                "(a Module or None is expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r} "
                                "(an ndarray or None is expected)")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Add a Parameter (or None, a declared but absent parameter such as bias=False)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"param must be a Parameter or None, not {type(param).__name__}")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name, array):
        """Add a state array that is not trained (running statistics): it is part of the
        state_dict and follows to(dtype) when it holds floats."""
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"buffer must be an ndarray or None, not {type(array).__name__}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module must be a Module or None, not {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module name must be a non-empty str without '.', got {name!r}")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # -- traversal ---------------------------------------------------------------------

    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix="", _seen=None):
        """(qualified name, module) for this module and every descendant, each once."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, module in self.named_children():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(qualified name, Parameter) pairs, each Parameter once, in registration order."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buf

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def apply(self, fn):
        """Call fn(module) on every child (recursively), then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes, gradients, dtype -------------------------------------------------------

    def train(self, mode=True):
        """Training mode (dropout on, batch statistics in BatchNorm) for this module and
        its descendants; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be a bool, not {type(mode).__name__}")
        for module in self.modules():
            module.__dict__["training"] = mode
        return self

    def eval(self):
        """Evaluation mode (dropout off, running statistics in BatchNorm); returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: to None (the default, as in PyTorch), or to
        zeros in place."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad[...] = 0

    def to(self, dtype):
        """Convert parameters and float buffers to `dtype` (float32 or float64); gradients
        are dropped. Returns self."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None and param.data.dtype != dtype:
                    param.data = param.data.astype(dtype)
                    param.grad = None
            for name, buf in module._buffers.items():
                if buf is not None and buf.dtype.kind == "f" and buf.dtype != dtype:
                    setattr(module, name, buf.astype(dtype))
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- computation -------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _missing_cache(self):
        return RuntimeError(f"{type(self).__name__}.backward() needs the cache of a forward "
                            "pass: call forward first, outside pynn.no_grad()")

    def _trace(self, x, record):
        """Forward that reports (module, output) for every module it runs; summary() uses
        it to show output shapes. Containers override it to reach their children."""
        y = self(x)
        record(self, y)
        return y

    # -- state -------------------------------------------------------------------------

    def _state_entries(self, prefix=""):
        """(key, module, registry, local name) for every state entry, in PyTorch's order:
        a module's parameters, then its buffers, then its children's."""
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, self, "_parameters", name
        for name, buf in self._buffers.items():
            if buf is not None:
                yield prefix + name, self, "_buffers", name
        for name, module in self.named_children():
            yield from module._state_entries(f"{prefix}{name}.")

    def state_dict(self):
        """An OrderedDict of copies of every parameter and buffer, keyed as in PyTorch
        ("0.weight", "1.running_mean", ...)."""
        out = OrderedDict()
        for key, module, registry, name in self._state_entries():
            value = getattr(module, registry)[name]
            out[key] = (value.data if registry == "_parameters" else value).copy()
        return out

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy parameters and buffers from `state_dict` (arrays or array-likes such as a
        PyTorch state_dict with tensors converted by .numpy()). Values are cast to each
        entry's dtype; with assign=True they replace the arrays instead (keeping their own
        float dtype).

        strict=True (the default) refuses missing and unexpected keys. Shapes must match
        in any case. Everything is checked before anything is written, so on error the
        module is unchanged. Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a mapping, not {type(state_dict).__name__}")
        entries = {key: (module, registry, name)
                   for key, module, registry, name in self._state_entries()}
        missing = [key for key in entries if key not in state_dict]
        unexpected = [key for key in state_dict.keys() if key not in entries]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
            raise StateDictError(f"state_dict does not fit {type(self).__name__}: "
                                 + "; ".join(parts))
        updates = []
        for key, (module, registry, name) in entries.items():
            if key not in state_dict:
                continue
            current = getattr(module, registry)[name]
            target = current.data if registry == "_parameters" else current
            try:
                value = np.asarray(state_dict[key])
            except Exception as exc:
                raise StateDictError(f"state_dict[{key!r}] cannot be converted to an array "
                                     f"({exc})") from None
            if value.dtype.kind not in "biuf":
                raise StateDictError(f"state_dict[{key!r}] must hold numbers, got dtype "
                                     f"{value.dtype}")
            if value.shape != target.shape:
                raise StateDictError(f"state_dict[{key!r}] has shape {value.shape}, but the "
                                     f"module expects {target.shape}")
            if assign:
                if (target.dtype.kind == "f") != (value.dtype.kind == "f"):
                    raise StateDictError(f"state_dict[{key!r}] has dtype {value.dtype}, "
                                         f"which cannot replace {target.dtype}")
            elif not np.can_cast(value.dtype, target.dtype, casting="same_kind"):
                raise StateDictError(f"state_dict[{key!r}] has dtype {value.dtype}, which "
                                     f"cannot be cast to {target.dtype}")
            updates.append((module, registry, name, target, value))
        for module, registry, name, target, value in updates:
            if not assign:
                np.copyto(target, value, casting="same_kind")
            elif registry == "_parameters":
                param = module._parameters[name]
                param.data = np.array(value, order="C", copy=True)
                param.grad = None
            else:
                setattr(module, name, np.array(value, order="C", copy=True))
        return _IncompatibleKeys(missing, unexpected)

    # -- description -------------------------------------------------------------------

    def extra_repr(self):
        """The constructor arguments shown inside the parentheses of repr()."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        children = [f"({name}): {_indent(repr(module))}" for name, module in self.named_children()]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def summary(self, input_shape=None, print_fn=print):
        """Print a table of the modules with their parameter counts and, when
        `input_shape` (one sample's shape, without the batch axis) is given, their output
        shapes (for a batch of 1, in evaluation mode; the model's modes are restored).
        print_fn receives the text; with print_fn=None it is returned instead."""
        shapes = {}
        if input_shape is not None:
            try:
                shape = tuple(int(s) for s in input_shape)
            except (TypeError, ValueError):
                raise TypeError(f"input_shape must be a sequence of ints, "
                                f"got {input_shape!r}") from None
            params = list(self.parameters())
            dtype = params[0].dtype if params else np.float32
            modes = [(m, m.training) for m in self.modules()]
            self.eval()
            try:
                with no_grad():
                    self._trace(np.zeros((1,) + shape, dtype),
                                lambda m, y: shapes.setdefault(id(m), np.shape(y)))
            finally:
                for module, mode in modes:
                    module.__dict__["training"] = mode
        rows = [("Layer (type)", "Output shape", "Param #")]
        for name, module in self.named_modules():
            depth = name.count(".") + 1 if name else 0
            count = sum(p.size for p in module.parameters())
            label = ("  " * depth) + (f"{name} ({type(module).__name__})" if name
                                      else type(module).__name__)
            shape = shapes.get(id(module))
            rows.append((label, "" if shape is None else str((None,) + tuple(shape[1:])),
                         f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [rule]
        for i, (a, b, c) in enumerate(rows):
            lines.append(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}")
            if i == 0:
                lines.append(rule)
        total = sum(p.size for p in self.parameters())
        trainable = sum(p.size for p in self.parameters() if p.requires_grad)
        buffered = sum(b.size for b in self.buffers())
        nbytes = sum(p.data.nbytes for p in self.parameters())
        lines += [rule,
                  f"Total params: {total:,} ({_human_bytes(nbytes)})",
                  f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}",
                  f"Buffer values: {buffered:,}",
                  rule]
        text = "\n".join(lines)
        if print_fn is None:
            return text
        print_fn(text)
        return None


def _human_bytes(n):
    if n < 1024:
        return f"{n} B"
    exponent = min(int(math.log(n, 1024)), 3)
    return f"{n / 1024 ** exponent:.1f} {['B', 'KiB', 'MiB', 'GiB'][exponent]}"
