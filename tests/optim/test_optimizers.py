"""Optimizers against their update formulas and against torch.optim; param groups,
state_dict, gradient clipping."""
import math
import warnings

import numpy as np
import pytest

import pynn
from pynn import nn, optim


def _params(rng, dtype=np.float64):
    """A small model's parameters: a few, of several shapes, updated in one call a step."""
    return [nn.Parameter(rng.standard_normal(shape).astype(dtype))
            for shape in ((4, 3), (3,), (2, 5, 2), (1,))]


def _grads(rng, params, steps):
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]


def _run(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.copy()
        opt.step()
    return [p.data.copy() for p in params]


def test_sgd_momentum_matches_the_formula(backend):
    rng = np.random.default_rng(0)
    params = _params(rng)
    start = [p.data.copy() for p in params]
    grads = _grads(rng, params, 3)
    lr, mu, damp, wd = 0.1, 0.9, 0.2, 0.01
    out = _run(optim.SGD(params, lr=lr, momentum=mu, dampening=damp, weight_decay=wd), params, grads)
    for i, p0 in enumerate(start):
        p, buf = p0.copy(), None
        for step in grads:
            g = step[i] + wd * p
            buf = g.copy() if buf is None else mu * buf + (1 - damp) * g
            p = p - lr * buf
        np.testing.assert_allclose(out[i], p, rtol=1e-12)


def test_adam_matches_the_formula(backend):
    rng = np.random.default_rng(1)
    params = _params(rng)
    start = [p.data.copy() for p in params]
    grads = _grads(rng, params, 4)
    lr, b1, b2, eps = 1e-2, 0.8, 0.95, 1e-6
    out = _run(optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps), params, grads)
    for i, p0 in enumerate(start):
        p, m, v = p0.copy(), 0.0, 0.0
        for t, step in enumerate(grads, 1):
            g = step[i]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(out[i], p, rtol=1e-10)


CASES = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "sgd-momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2),
                     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1,
                                              weight_decay=1e-2)),
    "sgd-nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (lambda p: optim.Adam(p, lr=1e-2), lambda t, p: t.optim.Adam(p, lr=1e-2)),
    "adam-amsgrad-wd": (lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
                        lambda t, p: t.optim.Adam(p, lr=1e-2, weight_decay=0.1, amsgrad=True)),
    "adamw": (lambda p: optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99)),
              lambda t, p: t.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99))),
    "rmsprop": (lambda p: optim.RMSprop(p, lr=1e-2), lambda t, p: t.optim.RMSprop(p, lr=1e-2)),
    "rmsprop-centered-momentum": (
        lambda p: optim.RMSprop(p, lr=1e-2, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01),
        lambda t, p: t.optim.RMSprop(p, lr=1e-2, alpha=0.9, momentum=0.5, centered=True,
                                     weight_decay=0.01)),
}


def _with_torch(name, rng):
    """torch, then the same fresh parameters for pynn and torch, and optimizer `name`
    (CASES) of each over them."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    make, make_torch = CASES[name]
    params = _params(rng)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    return torch, params, tparams, make(params), make_torch(torch, tparams)


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizers_match_torch(name, backend):
    rng = np.random.default_rng(2)
    torch, params, tparams, opt, topt = _with_torch(name, rng)
    for step in _grads(rng, params, 6):
        for p, tp, g in zip(params, tparams, step):
            p.grad = g.copy()
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam-amsgrad-wd", "rmsprop-centered-momentum"])
def test_parameters_joining_late_match_torch(name, backend):
    """A parameter whose gradient appears after the first steps has its own step count
    (Adam) or first step (SGD's buffer), so a step updates it in a call of its own."""
    rng = np.random.default_rng(6)
    torch, params, tparams, opt, topt = _with_torch(name, rng)
    for t, step in enumerate(_grads(rng, params, 5)):
        for i, (p, tp, g) in enumerate(zip(params, tparams, step)):
            late = t < i  # parameter i gets its first gradient at step i
            p.grad = None if late else g.copy()
            tp.grad = None if late else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_step_is_one_fused_call_per_group_and_dtype(name, backend, monkeypatch):
    """Parameters of two dtypes in one group, a second group, a frozen parameter and one
    without a gradient: one ops call per group and dtype, each updating exactly as one
    optimizer per parameter would."""
    op = {"sgd": "sgd_update", "adam": "adam_update", "rmsprop": "rmsprop_update"}[
        name.split("-")[0].replace("adamw", "adam")]
    calls = []
    fused = getattr(pynn.ops, op)

    def counted(param, *args, **kwargs):
        calls.append(len(param))
        return fused(param, *args, **kwargs)

    rng = np.random.default_rng(7)
    make = CASES[name][0]
    params = _params(rng) + _params(rng, np.float32)
    params[1].grad = None
    params[2].requires_grad = False
    second = _params(rng)
    single = [nn.Parameter(p.data.copy(), p.requires_grad) for p in params + second]
    singles = [make([p]) for p in single]
    opt = make([{"params": params}, {"params": second}])
    monkeypatch.setattr(pynn.ops, op, counted)
    for step in _grads(rng, params + second, 3):
        for p, q, g in zip(params + second, single, step):
            if p is not params[1]:
                p.grad, q.grad = g.copy(), g.copy()
        calls.clear()
        opt.step()
        assert calls == [2, 4, 4]  # float64 and float32 in group 0 (2 skipped), then group 1
        for o in singles:
            o.step()
        for p, q in zip(params + second, single):
            assert p.data.tobytes() == q.data.tobytes()


def test_param_groups_have_their_own_lr(backend):
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.ones(3), np.ones(3)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5


def test_step_skips_missing_and_frozen_grads_and_zero_grad_clears(backend):
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    b.requires_grad = False
    opt = optim.Adam([a, b], lr=0.1)
    b.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    np.testing.assert_array_equal(b.data, 1.0)
    a.grad = np.ones(2)
    opt.step()
    assert np.all(a.data < 1.0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = np.ones(2)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0.0)


def test_float32_parameters_stay_float32(backend):
    p = nn.Parameter(np.ones((2, 2), np.float32))
    opt = optim.AdamW([p])
    p.grad = np.ones((2, 2), np.float32)
    opt.step()
    assert p.data.dtype == np.float32 and opt.state[p]["exp_avg"].dtype == np.float32


def test_state_dict_round_trip_continues_identically(backend):
    rng = np.random.default_rng(3)
    params = _params(rng)
    grads = _grads(rng, params, 6)
    opt = optim.Adam(params, lr=1e-2, amsgrad=True)
    _run(opt, params, grads[:3])
    saved_params = [p.data.copy() for p in params]
    state = opt.state_dict()
    assert state["param_groups"][0]["params"] == list(range(len(params)))
    assert state["state"][0]["step"] == 3
    expected = _run(opt, params, grads[3:])

    params2 = [nn.Parameter(v.copy()) for v in saved_params]
    opt2 = optim.Adam(params2, lr=1.0)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == 1e-2
    for a, b in zip(_run(opt2, params2, grads[3:]), expected):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="shape"):
        bad = opt.state_dict()
        bad["state"][0]["exp_avg"] = np.zeros(7)
        opt2.load_state_dict(bad)


def test_load_state_dict_options():
    """PyTorch's execution options are dropped, options that change the arithmetic are
    refused unless they ask for what the optimizer computes, and a refused state_dict
    changes nothing (checked across all groups first)."""
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    torch_group = {"params": [0], "lr": 0.5, "momentum": 0.0, "dampening": 0,
                   "weight_decay": 0, "nesterov": False, "maximize": False, "foreach": None,
                   "differentiable": False, "fused": None}
    opt = optim.SGD([p], lr=0.1)
    opt.load_state_dict({"state": {}, "param_groups": [dict(torch_group)]})
    assert opt.param_groups[0]["lr"] == 0.5
    assert set(opt.state_dict()["param_groups"][0]) == set(opt.defaults) | {"params"}
    with pytest.raises(ValueError, match="maximize"):
        opt.load_state_dict({"state": {}, "param_groups": [dict(torch_group, maximize=True)]})
    with pytest.raises(ValueError, match="unknown option"):
        opt.load_state_dict({"state": {}, "param_groups": [dict(torch_group, momentun=0.9)]})
    adam = optim.Adam([p], lr=0.1)
    adamw = optim.AdamW([q], lr=0.1)
    for o, decoupled in ((adam, False), (adamw, True)):
        group = dict(o.state_dict()["param_groups"][0], decoupled_weight_decay=decoupled)
        o.load_state_dict({"state": {}, "param_groups": [group]})
        with pytest.raises(ValueError, match="weight decay"):
            o.load_state_dict({"state": {}, "param_groups": [
                dict(group, decoupled_weight_decay=not decoupled)]})
    two = optim.SGD([{"params": [p], "lr": 0.1}, {"params": [q], "lr": 0.2}])
    bad = two.state_dict()
    bad["param_groups"][0]["lr"] = 0.3
    bad["param_groups"][1]["maximize"] = True
    with pytest.raises(ValueError, match="maximize"):
        two.load_state_dict(bad)
    assert [g["lr"] for g in two.param_groups] == [0.1, 0.2]


def test_optimizer_argument_errors():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([])
    with pytest.raises(TypeError, match="single Parameter"):
        optim.SGD(p)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="unknown option"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}])
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([np.ones(2)])


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch", reason="torch not installed")
    rng = np.random.default_rng(4)
    for norm_type in (2.0, 1.0, math.inf):
        params = _params(rng)
        for p in params:
            p.grad = rng.standard_normal(p.shape) * 3
        tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
        for p, tp in zip(params, tparams):
            tp.grad = torch.from_numpy(p.grad.copy())
        total = optim.clip_grad_norm_(params, 1.5, norm_type=norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.5, norm_type=norm_type)
        assert total == pytest.approx(float(ttotal), rel=1e-12)
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_inf_sees_nan_anywhere():
    for order in ((0, 1), (1, 0)):
        p = [nn.Parameter(np.zeros(2, np.float32)) for _ in range(2)]
        p[0].grad = np.array([1.0, 2.0], np.float32)
        p[1].grad = np.array([np.nan, 0.0], np.float32)
        params = [p[i] for i in order]
        assert math.isnan(optim.clip_grad_norm_(params, 1.0, norm_type="inf"))
        with pytest.raises(FloatingPointError):
            optim.clip_grad_norm_(params, 1.0, norm_type="inf", error_if_nonfinite=True)


def test_clip_grad_norm_of_float32_is_accurate_and_does_not_overflow():
    # 2^23 values of 0.1: one float32 sum of squares was 4e-4 off
    p = nn.Parameter(np.zeros(2**23, np.float32))
    p.grad = np.full(2**23, 0.1, np.float32)
    exact = math.sqrt(2**23) * float(np.float32(0.1))
    assert optim.clip_grad_norm_([p], 1e9) == pytest.approx(exact, rel=1e-6)
    p.grad = np.full(2**23, 0.1, np.float32)
    assert optim.clip_grad_norm_([p], 1e9, norm_type=3) == pytest.approx(
        (2**23 * float(np.float32(0.1)) ** 3) ** (1 / 3), rel=1e-9)
    # squares past float32's range: the norm is still 1e20 (it was inf, and every
    # gradient was scaled to zero)
    q = nn.Parameter(np.zeros(3, np.float32))
    q.grad = np.array([1e20, -1e20, 0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = optim.clip_grad_norm_([q], 1.0)
    assert norm == pytest.approx(math.sqrt(2) * 1e20, rel=1e-6)
    np.testing.assert_allclose(q.grad, [2**-0.5, -2**-0.5, 0], rtol=1e-6)


def test_clip_grad_norm_and_value():
    p = nn.Parameter(np.zeros(2))
    p.grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm_([p], 1.0) == pytest.approx(5.0)
    assert np.linalg.norm(p.grad) == pytest.approx(1.0, rel=1e-5)
    p.grad = np.array([0.3, 0.4])
    optim.clip_grad_norm_([p], 1.0)
    np.testing.assert_allclose(p.grad, [0.3, 0.4], rtol=1e-5)
    p.grad = np.array([np.inf, 1.0])
    with pytest.raises(FloatingPointError):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    p.grad = np.array([-3.0, 0.5, 2.0])
    optim.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad, [-1.0, 0.5, 1.0])


def test_training_step_decreases_loss(backend):
    pynn.manual_seed(0)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    first = None
    for _ in range(30):
        loss = loss_fn(model(X), y)
        first = loss if first is None else first
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert loss < 0.5 * first
