"""Optimizer base: parameter groups, per-parameter state, zero_grad, state_dict; and
gradient clipping. Subclasses differ in one method, `_update`, which updates a group's
parameters in place with one fused call (pynn.ops.<name>_update on lists of arrays) per
batch of parameters that share a dtype."""
import math

import numpy as np

from pynn.nn.module import Parameter
from pynn.ops._validate import check_float

__all__ = ["Optimizer", "clip_grad_norm_", "clip_grad_value_"]


def _params_list(params, where):
    if isinstance(params, Parameter):
        raise TypeError(f"{where}: params must be an iterable of Parameters (or of dicts), "
                        "not a single Parameter; wrap it in a list")
    try:
        return list(params)
    except TypeError:
        raise TypeError(f"{where}: params must be an iterable, "
                        f"not {type(params).__name__}") from None


class Optimizer:
    """Base of every optimizer.

    params: an iterable of Parameters, or of dicts {"params": [...], <option>: value}
    (param groups, each with its own options, e.g. lr); `defaults` fills what a group
    leaves out. `param_groups` is a list of dicts that schedulers and users may edit
    (group["lr"] = ...). `state[param]` holds the per-parameter buffers.
    """

    # What a subclass keeps in state[param], for loaders to check: key -> "step" (an int),
    # "buffer" (an array shaped like the parameter), "buffer or None", or "optional" (a
    # buffer, None, or absent until first used).
    state_kinds = {}

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        groups = _params_list(params, type(self).__name__)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict {"params": [...], option: value, ...}; missing options come from
        the optimizer's defaults. A parameter may belong to one group only."""
        if not isinstance(group, dict):
            raise TypeError(f"a param group must be a dict, not {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a param group needs a 'params' entry")
        params = _params_list(group["params"], "param group")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers update Parameters, got {type(p).__name__}")
            if p.data.dtype.kind != "f":
                raise TypeError(f"cannot optimize a parameter of dtype {p.data.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("a parameter appears more than once across the param groups")
        self._check_known(group, "param group")
        full = dict(self.defaults)
        full.update(group)
        full["params"] = params
        self._check_group(full)
        self.param_groups.append(full)

    def _check_known(self, group, where):
        """Refuse options this optimizer does not take (a misspelt one would be ignored)."""
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"unknown option(s) in {where}: {sorted(unknown)}; "
                             f"{type(self).__name__} takes {sorted(self.defaults)}")

    def _check_group(self, group):
        """Validate a group's options (subclasses check their own)."""
        group["lr"] = check_float(group["lr"], "lr", low=0.0)
        if "initial_lr" in group:  # set by a schedule
            group["initial_lr"] = check_float(group["initial_lr"], "initial_lr", low=0.0)

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter this optimizer updates."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient (frozen ones, requires_grad=False,
        and those with grad None are skipped), with one fused call per group and dtype.
        `closure`, if given, recomputes the loss before the update and its value is
        returned."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None and p.requires_grad]
            if params:
                for p in params:
                    if p.grad.shape != p.data.shape:
                        raise ValueError(f"a gradient has shape {p.grad.shape}, but its "
                                         f"parameter has shape {p.data.shape}")
                self._update(params, group)
        return loss

    def _batches(self, params, group, key=None):
        """params, with their states (created on first use), split into the batches one
        fused call updates: parameters of one dtype and, given `key`, one key(state) (what
        the update takes once per call, such as Adam's step count). Returns (params,
        states) pairs, in the order of their first parameter."""
        state = self.state
        try:
            # the usual case, from the second step on: one batch of parameters with state
            states = [state[p] for p in params]
            dtype = params[0].data.dtype
            for p in params:
                if p.data.dtype is not dtype:
                    break
            else:
                if key is None:
                    return [(params, states)]
                first = key(states[0])
                for s in states:
                    if key(s) != first:
                        break
                else:
                    return [(params, states)]
        except KeyError:
            pass
        batches = {}
        for p in params:
            s = state.get(p)
            if s is None:
                s = state[p] = self._init_state(p, group)
            k = (p.data.dtype, None if key is None else key(s))
            batch = batches.get(k)
            if batch is None:
                batch = batches[k] = ([], [])
            batch[0].append(p)
            batch[1].append(s)
        return batches.values()

    def _init_state(self, p, group):
        raise NotImplementedError

    def _update(self, params, group):
        """Update params (those of `group` with a gradient) in place."""
        raise NotImplementedError

    def state_dict(self):
        """{"state": {index: {name: array or number}}, "param_groups": [{option: value,
        "params": [index, ...]}]}, with parameters numbered across groups in order, as in
        PyTorch. Arrays are copies."""
        index = {}
        groups = []
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and buffers from state_dict(), for the same parameters in the
        same order. Checked entirely before anything changes."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("an optimizer state_dict is a dict with keys 'state' and "
                             "'param_groups'")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} param groups, the optimizer has "
                             f"{len(self.param_groups)}")
        params = []
        for saved, group in zip(groups, self.param_groups):
            if len(saved.get("params", ())) != len(group["params"]):
                raise ValueError("a param group in state_dict has a different number of "
                                 "parameters than the optimizer's")
            params.extend(group["params"])
        new_state = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"state_dict has state for parameter {i}, but the optimizer "
                                 f"has {len(params)} parameters")
            p = params[i]
            converted = {}
            for name, value in entry.items():
                if value is not None and not isinstance(value, (bool, int, float)):
                    value = np.asarray(value)
                    if value.ndim == 0:
                        value = value.item()
                    elif value.shape != p.data.shape:
                        raise ValueError(f"state {name!r} of parameter {i} has shape "
                                         f"{value.shape}, the parameter {p.data.shape}")
                    else:
                        value = np.array(value, dtype=p.data.dtype, order="C")
                converted[name] = value
            new_state[p] = converted
        updates = []
        for saved, group in zip(groups, self.param_groups):
            options = self._saved_options(saved)
            trial = dict(group, **options)
            self._check_group(trial)
            updates.append({k: trial[k] for k in options})
        for group, update in zip(self.param_groups, updates):
            group.update(update)
        self.state = new_state

    # PyTorch's options that choose how a step is computed, not what it computes
    _TORCH_EXECUTION = ("foreach", "fused", "differentiable", "capturable")

    def _saved_options(self, saved):
        """The options of a saved param group that this optimizer takes. PyTorch's groups
        also hold execution choices (dropped: every pynn step is one fused call), maximize
        and Adam's decoupled_weight_decay: accepted where they ask for what this optimizer
        computes, refused where they ask for something else. Any other option it does not
        take is refused, as add_param_group refuses it."""
        options = {k: v for k, v in saved.items()
                   if k != "params" and k not in self._TORCH_EXECUTION}
        if options.pop("maximize", False):
            raise ValueError("the state_dict's param group has maximize=True; pynn's "
                             "optimizers minimize (negate the loss instead)")
        if "decoupled_weight_decay" in options and "decoupled_weight_decay" not in self.defaults:
            decoupled = bool(options.pop("decoupled_weight_decay"))
            if decoupled != getattr(self, "_decoupled", False):
                kind = "decoupled (AdamW)" if decoupled else "L2 (Adam)"
                raise ValueError(f"the state_dict's param group has {kind} weight decay, "
                                 f"which {type(self).__name__} does not compute")
        self._check_known(options, "the state_dict's param group")
        return options

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _grads(parameters):
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


# Values per piece of a gradient's norm: each piece is summed in the gradient's dtype (for
# float32, NumPy's dot keeps several lane sums, each of a few hundred values), the pieces
# in double. np.linalg.norm sums a float32 array in float32 alone: the norm of 2^23 values
# of 0.1 came out 4e-4 off (4e-7 in pieces).
_NORM_PIECE = 16384


def _norm(g, p):
    """The p-norm of g (p > 0, finite) as a float."""
    flat = g.reshape(-1)
    total = 0.0
    for i in range(0, flat.size, _NORM_PIECE):
        piece = flat[i:i + _NORM_PIECE]
        if p == 2:
            with np.errstate(over="ignore"):
                s = float(np.dot(piece, piece))
            if not math.isfinite(s):   # squares past float32's range: again in double
                piece = piece.astype(np.float64)
                s = float(np.dot(piece, piece))
        else:
            s = float(np.sum(np.abs(piece).astype(np.float64) ** p))
        total += s
    return total ** (1 / p) if p != 2 else math.sqrt(total)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint norm (the norm of the vector of
    per-parameter norms) is at most max_norm. Returns the norm before clipping, a float.
    norm_type: a positive number or inf. As in PyTorch, the scale is
    max_norm / (norm + 1e-6), capped at 1."""
    max_norm = check_float(max_norm, "max_norm", low=0.0)
    if norm_type in ("inf", float("inf")):
        norm_type = math.inf
    else:
        norm_type = check_float(norm_type, "norm_type", low=0.0, low_open=True)
    grads = _grads(parameters)
    if not grads:
        return 0.0
    if norm_type == math.inf:
        norms = [float(np.max(np.abs(g))) if g.size else 0.0 for g in grads]
        total = float(np.max(norms))   # NaN wherever it is (max() drops a later NaN)
    else:
        norms = [_norm(g, norm_type) for g in grads]
        total = float(np.linalg.norm(np.array(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise FloatingPointError(f"the total norm of order {norm_type} of the gradients is "
                                 f"{total}, so they cannot be clipped")
    scale = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= scale
    return total


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element to [-clip_value, clip_value], in place."""
    clip_value = check_float(clip_value, "clip_value", low=0.0)
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
