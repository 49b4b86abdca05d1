"""Every layer and loss against float64 central finite differences, in training and in
evaluation mode, on both backends."""
import numpy as np
import pytest

import pynn
from pynn import nn

EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8


def numeric_grad(f, a):
    """d f() / d a by central differences, perturbing `a` in place."""
    g = np.zeros_like(a, dtype=np.float64)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + EPS
        up = f()
        a[idx] = old - EPS
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * EPS)
    return g


def check_module(module, x, training, seed=0):
    """Compare module.backward (input and parameter gradients) with finite differences
    of sum(module(x) * dy) for a random dy."""
    module.double().train(training)
    x = np.array(x, dtype=np.float64)

    def run():
        pynn.manual_seed(seed)   # the same dropout masks at every evaluation
        return module(x)

    y = run()
    dy = np.random.default_rng(seed + 1).standard_normal(np.shape(y))
    module.zero_grad()
    dx = module.backward(dy)
    analytic = {name: p.grad.copy() for name, p in module.named_parameters()}
    assert dx.shape == x.shape

    def f():
        return float(np.sum(run() * dy))

    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=RTOL, atol=ATOL, err_msg="input")
    for name, p in module.named_parameters():
        np.testing.assert_allclose(analytic[name], numeric_grad(f, p.data), rtol=RTOL,
                                   atol=ATOL, err_msg=name)


def _mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.BatchNorm1d(7), nn.Dropout(0.3),
                         nn.Linear(7, 6), nn.GELU(), nn.Linear(6, 6), nn.Tanh(),
                         nn.Residual(nn.Sequential(nn.Linear(6, 6), nn.SiLU())),
                         nn.Linear(6, 3))


LAYERS = {
    "linear": (lambda: nn.Linear(5, 3), (4, 5)),
    "linear-nobias": (lambda: nn.Linear(5, 3, bias=False), (4, 5)),
    "linear-3d": (lambda: nn.Linear(5, 3), (2, 3, 5)),
    "relu": (nn.ReLU, (4, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (4, 5)),
    "sigmoid": (nn.Sigmoid, (4, 5)),
    "tanh": (nn.Tanh, (4, 5)),
    "silu": (nn.SiLU, (4, 5)),
    "gelu": (nn.GELU, (4, 5)),
    "gelu-tanh": (lambda: nn.GELU(approximate="tanh"), (4, 5)),
    "softmax": (lambda: nn.Softmax(dim=1), (4, 5)),
    "softmax-dim0": (lambda: nn.Softmax(dim=0), (4, 5)),
    "batchnorm": (lambda: nn.BatchNorm1d(3), (6, 3)),
    "batchnorm-3d": (lambda: nn.BatchNorm1d(3), (4, 3, 5)),
    "batchnorm-noaffine": (lambda: nn.BatchNorm1d(3, affine=False), (6, 3)),
    "batchnorm-nostats": (lambda: nn.BatchNorm1d(3, track_running_stats=False), (6, 3)),
    "batchnorm-cumulative": (lambda: nn.BatchNorm1d(3, momentum=None), (6, 3)),
    "dropout": (lambda: nn.Dropout(0.4), (5, 6)),
    "flatten": (nn.Flatten, (3, 2, 4)),
    "identity": (nn.Identity, (3, 4)),
    "residual": (lambda: nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.Tanh())), (3, 4)),
    "sequential-mlp": (_mlp, (8, 5)),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradients(name, training, backend):
    make, shape = LAYERS[name]
    pynn.manual_seed(3)
    module = make()
    x = np.random.default_rng(4).standard_normal(shape)
    if name.startswith("batchnorm") and module.track_running_stats:
        module.running_mean[...] = np.linspace(-0.5, 0.5, module.num_features)
        module.running_var[...] = np.linspace(0.5, 2.0, module.num_features)
    check_module(module, x, training)


def test_gradients_accumulate(backend):
    pynn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    x = np.random.default_rng(0).standard_normal((5, 4))
    dy = np.ones((5, 2))
    model(x)
    model.backward(dy)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(dy)
    for g1, p in zip(once, model.parameters()):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-12)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_input_grad_false_skips_dx_but_fills_grads(backend):
    pynn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    x = np.random.default_rng(0).standard_normal((5, 4))
    dy = np.random.default_rng(1).standard_normal((5, 2))
    model(x)
    model.backward(dy)
    full = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    assert model.backward(dy, input_grad=False) is None
    for g, p in zip(full, model.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_frozen_parameter_gets_no_grad(backend):
    layer = nn.Linear(3, 2).double()
    layer.weight.requires_grad = False
    layer(np.ones((2, 3)))
    layer.backward(np.ones((2, 2)))
    assert layer.weight.grad is None
    np.testing.assert_allclose(layer.bias.grad, [2.0, 2.0])


# -- losses --------------------------------------------------------------------------------

def check_loss(loss_fn, x, target, grad_output=1.0):
    x = np.array(x, dtype=np.float64)
    value = loss_fn(x, target)
    analytic = loss_fn.backward(grad_output)
    assert analytic.shape == x.shape

    def f():
        return float(np.sum(np.asarray(loss_fn(x, target)) * grad_output))

    if loss_fn.reduction != "none":
        assert isinstance(value, float)
    np.testing.assert_allclose(analytic, numeric_grad(f, x), rtol=RTOL, atol=ATOL)


LOSSES = {
    "ce": lambda: nn.CrossEntropyLoss(),
    "ce-sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "ce-smooth": lambda: nn.CrossEntropyLoss(label_smoothing=0.2),
    "ce-weight": lambda: nn.CrossEntropyLoss(weight=[0.5, 1.0, 2.0, 1.5]),
    "ce-ignore": lambda: nn.CrossEntropyLoss(ignore_index=1),
    "ce-all": lambda: nn.CrossEntropyLoss(weight=[0.5, 1.0, 2.0, 1.5], ignore_index=2,
                                          label_smoothing=0.1),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_cross_entropy_gradients(name, backend):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)) * 2
    labels = np.array([0, 1, 2, 3, 1, 2])
    check_loss(LOSSES[name](), logits, labels)


def test_cross_entropy_none_and_spatial_gradients(backend):
    rng = np.random.default_rng(1)
    loss = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)
    check_loss(loss, rng.standard_normal((5, 3)), np.array([0, 2, 1, 1, 0]),
               grad_output=rng.standard_normal(5))
    spatial = nn.CrossEntropyLoss()
    check_loss(spatial, rng.standard_normal((2, 3, 4)), rng.integers(0, 3, size=(2, 4)))


@pytest.mark.parametrize("options", [{}, {"reduction": "sum", "label_smoothing": 0.2},
                                     {"weight": [0.5, 1.0, 2.0, 1.5]}],
                         ids=["mean", "sum-smooth", "weight"])
def test_cross_entropy_probability_target_gradients(options, backend):
    rng = np.random.default_rng(4)
    target = rng.random((6, 4))
    target /= target.sum(axis=1, keepdims=True)
    check_loss(nn.CrossEntropyLoss(**options), rng.standard_normal((6, 4)) * 2, target)
    spatial = rng.random((2, 4, 3))
    check_loss(nn.CrossEntropyLoss(**{**options, "reduction": "none"}),
               rng.standard_normal((2, 4, 3)), spatial, grad_output=rng.standard_normal((2, 3)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_gradients(reduction, backend):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 3)) if reduction == "none" else 1.0
    check_loss(nn.MSELoss(reduction=reduction), x, t, g)


@pytest.mark.parametrize("options", [{}, {"pos_weight": [2.0, 0.5, 1.0]},
                                     {"weight": [1.0, 0.0, 3.0], "reduction": "sum"}],
                         ids=["plain", "pos_weight", "weight-sum"])
def test_bce_with_logits_gradients(options, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3)) * 3
    t = rng.random((5, 3))
    check_loss(nn.BCEWithLogitsLoss(**options), x, t)


def test_bce_is_stable_for_large_logits():
    loss = nn.BCEWithLogitsLoss()
    value = loss(np.array([1000.0, -1000.0]), np.array([1.0, 0.0]))
    assert value == 0.0
    np.testing.assert_array_equal(loss.backward(), [0.0, 0.0])
