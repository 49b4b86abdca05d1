"""Module mechanics: registration, state_dict (PyTorch keys and layouts, real torch
models), modes, no_grad, fusion, repr/summary, errors; and pynn.init."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import pynn
from pynn import init, nn


def _mlp(bn=True):
    layers = [nn.Linear(8, 16), nn.ReLU()]
    if bn:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.Dropout(0.1), nn.Linear(16, 4)]
    return nn.Sequential(*layers)


def test_parameters_and_state_dict_keys_follow_pytorch():
    model = _mlp()
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight",
                                                         "2.bias", "4.weight", "4.bias"]
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
        "2.num_batches_tracked", "4.weight", "4.bias"]
    sd = model.state_dict()
    assert sd["0.weight"].shape == (16, 8) and sd["0.weight"].dtype == np.float32
    assert sd["2.num_batches_tracked"].dtype == np.int64 and sd["2.num_batches_tracked"].shape == ()
    sd["0.weight"][...] = 0   # a copy: the model is unchanged
    assert np.any(model[0].weight.data != 0)


def test_state_dict_round_trip_is_exact():
    pynn.manual_seed(0)
    a, b = _mlp(), _mlp()
    a.train()(np.random.default_rng(0).standard_normal((5, 8)))   # move the running stats
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)


def test_load_state_dict_refuses_bad_keys_and_shapes():
    model = _mlp()
    sd = model.state_dict()
    missing = dict(sd)
    del missing["4.bias"]
    with pytest.raises(ValueError, match="missing keys: '4.bias'"):
        model.load_state_dict(missing)
    with pytest.raises(RuntimeError, match="unexpected keys: 'extra'"):
        model.load_state_dict(dict(sd, extra=np.zeros(1)))
    result = model.load_state_dict(dict(missing, extra=np.zeros(1)), strict=False)
    assert result.missing_keys == ["4.bias"] and result.unexpected_keys == ["extra"]
    before = model.state_dict()
    bad = dict(sd)
    bad["0.bias"] = np.zeros(16)
    bad["4.weight"] = np.zeros((4, 15))
    with pytest.raises(ValueError, match=r"'4.weight'.*shape \(4, 15\).*\(4, 16\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():   # nothing was written
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="num_batches_tracked"):
        model.load_state_dict(dict(sd, **{"2.num_batches_tracked": np.float64(1.5)}))
    with pytest.raises(TypeError):
        model.load_state_dict([1, 2])


def test_torch_state_dict_loads_and_matches_forward():
    torch = pytest.importorskip("torch", reason="torch not installed")
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                 torch.nn.BatchNorm1d(16), torch.nn.Dropout(0.1),
                                 torch.nn.Linear(16, 4))
    with torch.no_grad():   # a few training-mode passes give non-trivial running stats
        for _ in range(3):
            tmodel(torch.randn(32, 8))
    tmodel.eval()
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    expected = tmodel(torch.from_numpy(x)).detach().numpy()
    model = _mlp()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    model.eval()
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    assert int(model[2].num_batches_tracked) == 3


def test_torch_training_gradients_match(backend):
    torch = pytest.importorskip("torch", reason="torch not installed")
    torch.manual_seed(1)
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(),
                                 torch.nn.BatchNorm1d(10), torch.nn.Linear(10, 10),
                                 torch.nn.GELU(), torch.nn.Linear(10, 3)).double()
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.BatchNorm1d(10), nn.Linear(10, 10),
                          nn.GELU(), nn.Linear(10, 3)).double()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y),
                                              label_smoothing=0.1)
    tloss.backward()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    tgrads = {n: p.grad.numpy() for n, p in tmodel.named_parameters()}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[name], rtol=1e-9, atol=1e-12, err_msg=name)
    for key in ("2.running_mean", "2.running_var"):
        np.testing.assert_allclose(model.state_dict()[key], tmodel.state_dict()[key].numpy(),
                                   rtol=1e-12)


def test_linear_and_activation_run_as_one_fused_call(monkeypatch):
    """A Sequential of Linear layers (activations fused) runs its forward in one
    linear_stack_forward call and its backward in one linear_stack_backward call. With any
    other step in it, each Linear is one GEMM with the activation in its epilogue (no
    separate element-wise call) and one linear_backward call. Both give the same bits."""
    from pynn._config import backend_module
    from pynn.ops._activations import ACTIVATIONS

    kernels = backend_module()
    calls = []
    names = ("gemm_fused", "act_forward", "act_backward", "linear_backward",
             "linear_stack_forward", "linear_stack_backward")
    for name in names:
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _n=name, _f=real: calls.append(
            (_n, a[8] if _n in ("gemm_fused", "linear_backward") else None)) or _f(*a))
    leaky = ACTIVATIONS.index("leaky_relu")
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    results = []
    for tail in ([], [nn.Identity()]):
        pynn.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2), nn.Linear(5, 3), *tail)
        calls.clear()
        y = model(x)
        # (the reference's stack calls its own gemm_fused, not the one patched here)
        assert calls == ([("linear_stack_forward", None)] if not tail else
                         [("gemm_fused", leaky), ("gemm_fused", 0)])
        calls.clear()
        dx = model.backward(np.ones_like(y))
        assert calls == ([("linear_stack_backward", None)] if not tail else
                         [("linear_backward", 0), ("linear_backward", leaky)])
        results.append([y, dx] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    unfused = model[2](model[1](model[0](x)))   # the same maths, module by module
    np.testing.assert_allclose(results[0][0], unfused, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["plain", "frozen", "accumulate", "no_bias", "inputs"])
def test_sequential_of_linears_is_its_layers_bit_for_bit(backend, case, monkeypatch):
    """A Sequential of Linear layers runs forward and backward as one stack call; the
    outputs, input gradient and parameter gradients are those of its layers run one by one
    (the path any other Sequential takes), bit for bit: fresh or accumulated gradients,
    frozen parameters, layers without bias, and inputs the stack call does not take
    (3-D, another dtype, a list), which run layer by layer."""
    import pynn.nn.containers as containers

    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    dy = rng.standard_normal((9, 3)).astype(np.float32)
    runs = []
    for stacked in (True, False):
        if not stacked:
            monkeypatch.setattr(containers, "_linear_stack", lambda steps: None)
        pynn.manual_seed(11)
        model = nn.Sequential(nn.Linear(6, 8, bias=case != "no_bias"), nn.GELU(),
                              nn.Linear(8, 7), nn.LeakyReLU(0.3), nn.Linear(7, 3))
        if case == "frozen":
            model[0].weight.requires_grad = False
            model[2].bias.requires_grad = False
        inputs = x
        if case == "inputs":
            inputs = [x[None].astype(np.float64), x.tolist()]
        out = []
        for xi in (inputs if case == "inputs" else [inputs]):
            y = model(xi)
            g = dy.reshape(y.shape)
            dx = model.backward(g)
            out += [y, dx]
            if case == "accumulate":
                out += [model(x * 2), model.backward(dy[::-1].copy())]
            out += [p.grad for p in model.parameters()]
        if stacked:
            assert (model._stack is not None) == (case != "inputs")
        runs.append(out)
        monkeypatch.undo()
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_sequential_stack_keeps_the_layers_usable(backend):
    """After a stacked forward each Linear's own backward works (its cache is set as its
    forward sets it); in no_grad nothing is kept."""
    pynn.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    model(x)
    assert model._stack is not None
    dx = model[2].backward(np.ones((3, 2), np.float32))
    assert dx.shape == (3, 5) and model[2].weight.grad.shape == (2, 5)
    model.zero_grad()
    with nn.no_grad():
        model(x)
    assert model._stack is None and model[0]._cache is None
    with pytest.raises(RuntimeError, match="call forward first"):
        model.backward(np.ones((3, 2), np.float32))


def test_sequential_follows_changes_to_its_children(backend):
    """Sequential remembers how it runs its children (which Linear fuses which activation)
    between calls; a change to the children or to a fused activation's options is seen
    by the next forward, stacked or not."""
    pynn.manual_seed(3)
    first, act, last = nn.Linear(4, 6), nn.LeakyReLU(0.1), nn.Linear(6, 3)
    model = nn.Sequential(first, act, last)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)

    def expected(*modules):
        y = x
        for m in modules:
            y = m(y)
        return y
    np.testing.assert_allclose(model(x), expected(first, act, last), rtol=1e-6, atol=1e-6)
    act.negative_slope = 0.5            # an option of a fused activation
    np.testing.assert_allclose(model(x), expected(first, act, last), rtol=1e-6, atol=1e-6)
    tanh = nn.Tanh()
    setattr(model, "1", tanh)           # a child replaced
    np.testing.assert_allclose(model(x), expected(first, tanh, last), rtol=1e-6, atol=1e-6)
    model.append(nn.Sigmoid())          # a child added: the stack still applies
    y = model(x)
    np.testing.assert_allclose(y, expected(first, tanh, last, nn.Sigmoid()), rtol=1e-6,
                               atol=1e-6)
    assert model._stack is not None
    model.append(nn.Dropout(0.0))       # not a Linear: the layers run one by one
    np.testing.assert_allclose(model(x), y, rtol=1e-6, atol=1e-6)
    assert model._stack is None
    dx = model.backward(np.ones((5, 3), np.float32))
    assert dx.shape == (5, 4) and first.weight.grad is not None


def test_tied_weights_add_their_gradients(backend):
    """A Parameter shared by two Linear layers gets the sum of both layers' gradients,
    whether Sequential runs them as one stack or one by one."""
    pynn.manual_seed(0)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    grads = []
    for model in (nn.Sequential(a, nn.ReLU(), b), nn.Sequential(a, nn.ReLU(), nn.Identity(), b)):
        model.zero_grad()
        y = model(x)
        model.backward(np.ones_like(y))
        grads.append(a.weight.grad.copy())
    h = np.maximum(x @ a.weight.data.T + a.bias.data, 0)
    dh = (np.ones((5, 4), np.float32) @ b.weight.data) * (h > 0)
    expected = np.ones((5, 4), np.float32).T @ h + dh.T @ x
    for g in grads:
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)


def test_sequential_container_behaviour():
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    model = nn.Sequential(a, b, c)
    assert len(model) == 3 and model[0] is a and model[-1] is c and list(model) == [a, b, c]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    with pytest.raises(ValueError, match="already in the Sequential"):
        nn.Sequential(b, b)
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(a, "relu")
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert list(ml.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_modes_propagate_and_dropout_is_identity_in_eval():
    model = _mlp()
    model.eval()
    assert not any(m.training for m in model.modules())
    x = np.ones((4, 8), np.float32)
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError):
        model.train("yes")


def test_dropout_scales_survivors():
    pynn.manual_seed(0)
    drop = nn.Dropout(0.25)
    y = drop(np.ones((200, 50), np.float32))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert abs(kept.mean() - 0.75) < 0.02


def test_backward_needs_a_recorded_forward():
    layer = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((1, 2)))
    with pynn.no_grad():
        layer(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones((1, 2)))
    assert pynn.nn.is_grad_enabled()
    model = _mlp()
    with pynn.no_grad():
        model(np.ones((2, 8)))
    with pytest.raises(RuntimeError):
        model.backward(np.ones((2, 4)))


def test_eval_mode_backward_is_supported():
    """Layers cache in evaluation mode too, so backward after an eval forward is correct
    (the gradient of the eval-mode function)."""
    bn = nn.BatchNorm1d(2).double().eval()
    bn.running_var[...] = [4.0, 0.25]
    bn(np.zeros((3, 2)))
    dx = bn.backward(np.ones((3, 2)))
    np.testing.assert_allclose(dx[0], 1 / np.sqrt(np.array([4.0, 0.25]) + 1e-5))


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.3},
                                     {"weight": [0.5, 2.0, 1.0], "reduction": "sum"},
                                     {"reduction": "none"}],
                         ids=["mean", "smooth", "weight-sum", "none"])
def test_cross_entropy_probability_targets(options, backend, dtype):
    # soft labels: -sum_c w_c t_c log softmax(x)_c a sample, t smoothed to (1-s) t + s/C;
    # the mean is over the samples (not the weights), as in PyTorch
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7, 3)) * 3).astype(dtype)
    t = rng.random((7, 3)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    loss_fn = nn.CrossEntropyLoss(**options)
    value = loss_fn(x, t)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    smooth = options.get("label_smoothing", 0.0)
    ts = t64 * (1 - smooth) + smooth / 3
    wt = ts * np.asarray(options.get("weight", [1.0, 1.0, 1.0]))
    logp = x64 - x64.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    per_sample = -(wt * logp).sum(axis=1)
    grad = np.exp(logp) * wt.sum(axis=1, keepdims=True) - wt
    reduction = options.get("reduction", "mean")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    if reduction == "none":
        np.testing.assert_allclose(value, per_sample, **tol)
        weights = rng.random(7)
        np.testing.assert_allclose(loss_fn.backward(weights), grad * weights[:, None], **tol)
    else:
        scale = 1 / 7 if reduction == "mean" else 1.0
        np.testing.assert_allclose(value, per_sample.sum() * scale, **tol)
        np.testing.assert_allclose(loss_fn.backward(), grad * scale, **tol)
    # one-hot probabilities are the class indices
    labels = rng.integers(0, 3, size=7)
    onehot = np.eye(3, dtype=dtype)[labels]
    indexed = nn.CrossEntropyLoss(**{k: v for k, v in options.items() if k != "weight"})
    soft = nn.CrossEntropyLoss(**{k: v for k, v in options.items() if k != "weight"})
    np.testing.assert_allclose(soft(x, onehot), indexed(x, labels), **tol)
    np.testing.assert_allclose(soft.backward(), indexed.backward(), **tol)


def test_cross_entropy_probability_targets_match_torch():
    torch = pytest.importorskip("torch", reason="torch not installed; only a cross-check")
    rng = np.random.default_rng(6)
    for shape in [(5, 4), (3, 4, 2, 3)]:
        for options in [{}, {"weight": rng.random(4) + 0.5, "label_smoothing": 0.2},
                        {"reduction": "sum"}, {"reduction": "none", "label_smoothing": 0.1}]:
            x, t = rng.standard_normal(shape), rng.random(shape)
            loss_fn = nn.CrossEntropyLoss(**options)
            value = loss_fn(x, t)
            tx = torch.tensor(x, requires_grad=True)
            torch_options = dict(options)
            if "weight" in options:
                torch_options["weight"] = torch.tensor(options["weight"])
            expected = torch.nn.CrossEntropyLoss(**torch_options)(tx, torch.tensor(t))
            expected.sum().backward()
            np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12,
                                       atol=1e-14)
            grad = loss_fn.backward(1.0 if np.ndim(value) == 0 else np.ones(np.shape(value)))
            np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 5)
    with pytest.raises(TypeError, match="out_features"):
        nn.Linear(3, 2.5)
    with pytest.raises(ValueError, match="expected input with 3 features"):
        nn.Linear(3, 2)(np.ones((4, 5)))
    with pytest.raises(ValueError, match="grad_output has shape"):
        layer = nn.Linear(3, 2)
        layer(np.ones((4, 3)))
        layer.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        nn.BatchNorm1d(4)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.ones((1, 3)))
    with pytest.raises(ValueError, match="target must have shape"):
        nn.CrossEntropyLoss()(np.ones((4, 3)), np.zeros(5, np.int64))
    with pytest.raises(TypeError, match="integer class indices"):
        nn.CrossEntropyLoss()(np.ones((4, 3)), np.zeros(4))
    with pytest.raises(TypeError, match="class probabilities and must be floating point"):
        nn.CrossEntropyLoss()(np.ones((4, 3)), np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match="ignore_index"):
        nn.CrossEntropyLoss(ignore_index=0)(np.ones((4, 3)), np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"weight has shape \(2,\)"):
        nn.CrossEntropyLoss(weight=[1, 2])(np.ones((4, 3)), np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="must match"):
        nn.MSELoss()(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="must be equal"):
        nn.Residual(nn.Linear(3, 2))(np.ones((1, 3)))
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="fast")


def test_to_dtype_and_input_casting():
    model = _mlp().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[2].running_mean.dtype == np.float64
    assert model[2].num_batches_tracked.dtype == np.int64
    assert model(np.ones((3, 8), np.float32)).dtype == np.float64
    with pytest.raises(TypeError):
        model.to(np.int32)


def test_repr_and_summary():
    model = _mlp()
    text = repr(model)
    assert "(0): Linear(in_features=8, out_features=16, bias=True)" in text
    assert "(3): Dropout(p=0.1)" in text
    lines = []
    model.summary(input_shape=(8,), print_fn=lines.append)
    summary = lines[0]
    total = 8 * 16 + 16 + 32 + 16 * 4 + 4
    assert f"Total params: {total:,}" in summary
    assert "(None, 16)" in summary and "(None, 4)" in summary
    assert model.training and model.summary(print_fn=None).count("Linear") == 2


def test_custom_module_composes():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(np.array([2.0]))

        def forward(self, x):
            self._x = x
            return x * self.s.data

        def backward(self, grad_output):
            self.s.grad = np.array([np.sum(grad_output * self._x)])
            return grad_output * self.s.data

    model = nn.Sequential(nn.Linear(2, 2).double(), Scale())
    model(np.ones((1, 2)))
    model.backward(np.ones((1, 2)), input_grad=False)
    assert model[1].s.grad is not None and model[0].weight.grad is not None
    assert "1.s" in model.state_dict()


# -- init ----------------------------------------------------------------------------------

def test_default_linear_init_matches_pytorch_bounds():
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    assert np.abs(layer.bias.data).max() <= bound
    # U(-b, b) has standard deviation b / sqrt(3)
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("fn,expected_std", [
    (lambda w: init.kaiming_normal_(w, nonlinearity="relu"), math.sqrt(2 / 500)),
    (lambda w: init.kaiming_uniform_(w, nonlinearity="relu"), math.sqrt(2 / 500)),
    (lambda w: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 400)),
    (lambda w: init.xavier_normal_(w), math.sqrt(2 / 900)),
    (lambda w: init.xavier_uniform_(w, gain=init.calculate_gain("tanh")), 5 / 3 * math.sqrt(2 / 900)),
])
def test_init_statistics(fn, expected_std):
    pynn.manual_seed(0)
    w = nn.Parameter(np.empty((400, 500), np.float32))
    assert fn(w) is w
    assert w.data.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.data.mean()) < 0.05 * expected_std


def test_init_constants_and_errors():
    w = np.empty((3, 4))
    init.ones_(w)
    assert np.all(w == 1)
    init.zeros_(w)
    assert np.all(w == 0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(np.empty(5))
    with pytest.raises(TypeError, match="floats"):
        init.zeros_(np.empty(3, np.int64))
    with pytest.raises(ValueError):
        init.kaiming_normal_(w, mode="fan_middle")
    pynn.manual_seed(5)
    a = init.normal_(np.empty(4)).copy()
    pynn.manual_seed(5)
    np.testing.assert_array_equal(init.normal_(np.empty(4)), a)
