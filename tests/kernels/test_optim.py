"""Fused optimizer steps: the native kernels against the NumPy reference (every ISA, both
dtypes, every option), both against torch.optim over several steps, determinism across
thread counts, in-place semantics (state updated, grad untouched, unused buffers left
alone) and bad input."""
import inspect
import itertools

import numpy as np
import pytest

import pynn
from pynn import _native, ops
from pynn.backends.numpy import optim as reference

# Native vs reference: the same operations, up to fused multiply-adds on AVX2/AVX-512.
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}
TORCH_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
STEPS = 5

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")
# around the vector widths and the 32768-element parallel threshold
SIZES = [0, 1, 17, 65, 100003]

SGD_OPTIONS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3),
               dict(momentum=0.8, nesterov=True), dict(momentum=0.9, weight_decay=0.05),
               dict(momentum=0.0, weight_decay=0.05)]
ADAM_OPTIONS = [dict(), dict(amsgrad=True), dict(weight_decay=0.1),
                dict(weight_decay=0.1, decoupled_weight_decay=True),
                dict(weight_decay=0.1, amsgrad=True, decoupled_weight_decay=True),
                dict(beta1=0.3, beta2=0.5)]
RMSPROP_OPTIONS = [dict(), dict(centered=True), dict(momentum=0.9), dict(weight_decay=0.1),
                   dict(centered=True, momentum=0.5, weight_decay=0.1, alpha=0.3)]


def assert_close(actual, expected, tol):
    scale = max(1.0, float(np.max(np.abs(expected)))) if np.size(expected) else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def grads(rng, shape, dtype, steps=STEPS):
    return [(rng.standard_normal(shape) * (1 + s)).astype(dtype) for s in range(steps)]


def run_sgd(param, gs, lr=0.1, **options):
    """STEPS steps of ops.sgd_update; returns param and the momentum buffer."""
    buf = np.zeros_like(param) if options.get("momentum", 0) else None
    for i, g in enumerate(gs):
        ops.sgd_update(param, g, buf, lr=lr, first_step=i == 0, **options)
    return param, buf


def run_adam(param, gs, lr=0.01, **options):
    m, v = np.zeros_like(param), np.zeros_like(param)
    vmax = np.zeros_like(param) if options.get("amsgrad") else None
    for i, g in enumerate(gs):
        ops.adam_update(param, g, m, v, step=i + 1, lr=lr, max_exp_avg_sq=vmax, **options)
    return param, m, v, vmax


def run_rmsprop(param, gs, lr=0.01, **options):
    sq = np.zeros_like(param)
    buf = np.zeros_like(param) if options.get("momentum", 0) else None
    gavg = np.zeros_like(param) if options.get("centered") else None
    for g in gs:
        ops.rmsprop_update(param, g, sq, lr=lr, momentum_buffer=buf, grad_avg=gavg, **options)
    return param, sq, buf, gavg


RUNNERS = {"sgd": (run_sgd, SGD_OPTIONS), "adam": (run_adam, ADAM_OPTIONS),
           "rmsprop": (run_rmsprop, RMSPROP_OPTIONS)}
CASES = [(name, options) for name, (_, opts) in RUNNERS.items() for options in opts]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in options.items()) or 'default'}"
       for name, options in CASES]


@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        assert inspect.signature(getattr(_native, name)) == inspect.signature(getattr(reference, name))


# ---- native against reference --------------------------------------------------------

@native
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
@pytest.mark.parametrize("size", SIZES)
def test_native_matches_reference(isa, dtype, name, options, size, rng):
    runner = RUNNERS[name][0]
    param0 = rng.standard_normal(size).astype(dtype)
    gs = grads(rng, size, dtype)
    outs = {}
    for backend in ("native", "numpy"):
        with pynn.use_backend(backend):
            outs[backend] = runner(param0.copy(), gs, **options)
    for got, want in zip(outs["native"], outs["numpy"]):
        if want is not None:
            assert got.dtype == dtype
            assert_close(got, want, TOL[dtype])


@native
@pytest.mark.parametrize("name,options", [("sgd", dict(momentum=0.9, nesterov=True)),
                                          ("adam", dict(amsgrad=True, weight_decay=0.1)),
                                          ("rmsprop", dict(centered=True, momentum=0.5))],
                         ids=["sgd", "adam", "rmsprop"])
def test_same_bits_at_any_thread_count(isa, name, options, rng):
    param0 = rng.standard_normal((317, 331)).astype(np.float32)
    gs = grads(rng, param0.shape, np.float32, steps=2)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        outs.append([a.tobytes() for a in RUNNERS[name][0](param0.copy(), gs, **options)
                     if a is not None])
    assert outs[0] == outs[1]


# ---- against torch.optim ---------------------------------------------------------------

def torch_run(name, param, gs, lr, options):
    """The same steps with torch.optim; returns param and the state, in our order."""
    torch = pytest.importorskip("torch", reason="torch is not installed; it is only a cross-check")
    p = torch.nn.Parameter(torch.tensor(param))
    if name == "sgd":
        opt = torch.optim.SGD([p], lr=lr, **options)
        keys = ["momentum_buffer"]
    elif name == "adam":
        options = dict(options)
        betas = (options.pop("beta1", 0.9), options.pop("beta2", 0.999))
        decoupled = options.pop("decoupled_weight_decay", False)
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        opt = cls([p], lr=lr, betas=betas, foreach=False,
                  weight_decay=options.pop("weight_decay", 0.0), **options)
        keys = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    else:
        opt = torch.optim.RMSprop([p], lr=lr, foreach=False, **options)
        keys = ["square_avg", "momentum_buffer", "grad_avg"]
    for g in gs:
        p.grad = torch.tensor(g)
        opt.step()
    state = opt.state[p]
    return [p.detach().numpy()] + [state[k].numpy() if k in state else None for k in keys]


@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_matches_torch_optim(backend, dtype, name, options, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    param0 = rng.standard_normal((13, 7)).astype(dtype)
    gs = grads(rng, param0.shape, dtype)
    lr = 0.05
    want = torch_run(name, param0.copy(), gs, lr, options)
    with pynn.use_backend(backend):
        got = RUNNERS[name][0](param0.copy(), gs, lr=lr, **options)
    for g, w in zip(got, want):
        if w is not None and (g is not None):
            assert_close(g, w, TORCH_TOL[dtype])
    assert not np.array_equal(got[0], param0)


# ---- semantics -------------------------------------------------------------------------

def test_sgd_first_step_sets_the_buffer_to_the_decayed_gradient():
    param = np.array([1.0, -2.0])
    grad = np.array([0.5, 0.25])
    buf = np.full(2, 99.0)
    ops.sgd_update(param, grad, buf, lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1,
                   first_step=True)
    d = grad + 0.1 * np.array([1.0, -2.0])
    np.testing.assert_allclose(buf, d)
    np.testing.assert_allclose(param, np.array([1.0, -2.0]) - 0.1 * d)
    ops.sgd_update(param, grad, buf, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(buf, 0.9 * d + 0.5 * grad)


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_grad_and_unused_buffers_are_left_alone(backend, dtype, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    param = rng.standard_normal(50).astype(dtype)
    grad = rng.standard_normal(50).astype(dtype)
    grad_copy = grad.copy()
    unused = np.full(50, 7, dtype)
    with pynn.use_backend(backend):
        assert ops.sgd_update(param, grad, unused, lr=0.1) is param
        ops.adam_update(param, grad, np.zeros_like(param), np.zeros_like(param), step=1,
                        max_exp_avg_sq=unused)
        ops.rmsprop_update(param, grad, np.zeros_like(param), momentum_buffer=unused,
                           grad_avg=unused)
    np.testing.assert_array_equal(grad, grad_copy)
    np.testing.assert_array_equal(unused, 7)


def test_any_shape_and_grad_array_likes(rng):
    param = rng.standard_normal((3, 4, 5)).astype(np.float32)
    want = param.copy()
    g = rng.standard_normal((3, 4, 5))
    ops.sgd_update(want, g.astype(np.float32), None, lr=0.1)
    ops.sgd_update(param, g.T.T[:, :, :], None, lr=0.1)
    np.testing.assert_array_equal(param, want)
    ops.sgd_update(param, g.tolist(), None, lr=0.0)
    np.testing.assert_array_equal(param, want)
    scalar = np.array(1.0)
    ops.adam_update(scalar, 2, np.zeros(()), np.zeros(()), step=1, lr=0.5)
    np.testing.assert_allclose(scalar, 0.5)


def test_float16_runs_on_the_reference(rng):
    param = rng.standard_normal(10).astype(np.float16)
    m, v = np.zeros_like(param), np.zeros_like(param)
    before = param.copy()
    ops.adam_update(param, np.ones(10, np.float16), m, v, step=1, lr=0.1)
    assert param.dtype == np.float16
    np.testing.assert_allclose(param, before - np.float16(0.1), atol=2e-3)


# ---- bad input ---------------------------------------------------------------------------

def test_bad_arrays(rng):
    p = rng.standard_normal(6).astype(np.float32)
    ro = p.copy()
    ro.flags.writeable = False
    bad = [
        (TypeError, "param", dict(param=p.tolist())),
        (TypeError, "param", dict(param=np.ones(6, np.int64))),
        (ValueError, "C-contiguous", dict(param=np.ones(12, np.float32)[::2])),
        (ValueError, "read-only", dict(param=ro)),
        (TypeError, "exp_avg", dict(exp_avg=np.zeros(6))),
        (TypeError, "exp_avg", dict(exp_avg=None)),
        (ValueError, "exp_avg_sq", dict(exp_avg_sq=np.zeros(5, np.float32))),
        (ValueError, "overlaps", dict(exp_avg_sq="exp_avg")),
        (ValueError, "overlaps", dict(exp_avg="param")),
        (ValueError, "grad", dict(grad=np.zeros(5, np.float32))),
        (ValueError, "grad overlaps", dict(grad="param")),
        (TypeError, "grad", dict(grad=np.zeros(6, np.complex64))),
        (TypeError, "grad", dict(grad=np.array(["a"] * 6))),
        (ValueError, "max_exp_avg_sq", dict(amsgrad=True)),
        (ValueError, "step", dict(step=0)),
        (TypeError, "step", dict(step=1.0)),
        (ValueError, "lr", dict(lr=-1.0)),
        (ValueError, "beta1", dict(beta1=1.0)),
        (ValueError, "beta2", dict(beta2=-0.1)),
        (ValueError, "eps", dict(eps=0.0)),
        (ValueError, "weight_decay", dict(weight_decay=np.inf)),
        (TypeError, "amsgrad", dict(amsgrad=1)),
    ]
    for exc, match, change in bad:
        args = dict(param=p.copy(), grad=np.ones(6, np.float32), exp_avg=np.zeros(6, np.float32),
                    exp_avg_sq=np.zeros(6, np.float32), step=1)
        args.update(change)
        for key, value in change.items():
            if isinstance(value, str) and value in args:
                args[key] = args[value]
        kwargs = {k: args.pop(k) for k in list(args) if k not in ("param", "grad", "exp_avg",
                                                                    "exp_avg_sq")}
        with pytest.raises(exc, match=match):
            ops.adam_update(args["param"], args["grad"], args["exp_avg"], args["exp_avg_sq"],
                            **kwargs)
    with pytest.raises(ValueError, match="nesterov"):
        ops.sgd_update(p, p.copy(), np.zeros(6, np.float32), lr=0.1, momentum=0.9, dampening=0.1,
                       nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        ops.sgd_update(p, p.copy(), None, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum_buffer"):
        ops.sgd_update(p, p.copy(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        ops.sgd_update(p, p.copy(), None, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="dampening"):
        ops.sgd_update(p, p.copy(), np.zeros(6, np.float32), lr=0.1, momentum=0.5, dampening=2)
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_update(p, p.copy(), None, lr="0.1")
    with pytest.raises(TypeError):
        ops.sgd_update(p, p.copy(), None)   # lr is required
    with pytest.raises(ValueError, match="grad_avg"):
        ops.rmsprop_update(p, p.copy(), np.zeros(6, np.float32), centered=True)
    with pytest.raises(ValueError, match="momentum_buffer"):
        ops.rmsprop_update(p, p.copy(), np.zeros(6, np.float32), momentum=0.9)
    with pytest.raises(ValueError, match="alpha"):
        ops.rmsprop_update(p, p.copy(), np.zeros(6, np.float32), alpha=1.5)
    with pytest.raises(TypeError, match="square_avg"):
        ops.rmsprop_update(p, p.copy(), None)


def test_failed_checks_change_nothing(rng):
    p = rng.standard_normal(6).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    states = [a.copy() for a in (p, m, v)]
    for bad in (dict(step=0), dict(amsgrad=True), dict(beta1=2.0)):
        with pytest.raises((TypeError, ValueError)):
            ops.adam_update(p, np.ones(6), m, v, **{"step": 1, **bad})
    for a, b in zip((p, m, v), states):
        np.testing.assert_array_equal(a, b)


@native
def test_native_kernels_refuse_bad_arguments():
    p = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="argument out of range"):
        _native.sgd_update(p, None, p.copy(), 0.1, 0.9, 0.0, False, 0.0, False)
    with pytest.raises(ValueError, match="argument out of range"):
        _native.adam_update(p, p.copy(), p.copy(), None, p.copy(), 0, 0.1, 0.9, 0.99, 1e-8, 0.0,
                            False)
    with pytest.raises(ValueError, match="elements"):
        _native.rmsprop_update(p, np.ones(3, np.float32), None, None, p.copy(), 0.1, 0.9, 1e-8,
                               0.0, 0.0)


def test_every_option_combination_runs():
    """Smoke test over the whole option grid on the backend in force."""
    for momentum, dampening, nesterov, wd in itertools.product((0.0, 0.9), (0.0, 0.2),
                                                              (False, True), (0.0, 0.1)):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        p = np.ones(3)
        run_sgd(p, [np.ones(3)] * 2, momentum=momentum, dampening=dampening, nesterov=nesterov,
                weight_decay=wd)
        assert np.all(p < 1)
