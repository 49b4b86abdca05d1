"""Batch norm and the bias gradient: the native kernels against the NumPy reference (every
ISA, both dtypes, awkward shapes around the tile geometry of csrc/norm.c), the reference
against PyTorch and against finite differences, numerical robustness of the variance,
determinism across thread counts and batches, and bad input."""
import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pynn
from pynn import _native, ops
from pynn.backends.numpy import norm as reference

# Native vs reference (float64 statistics): sums in another order, in float inside tiles.
# Tolerances are relative to the scale of each output (max |reference|, at least 1).
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
TORCH_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")

# Column layout (trailing size S < 16): around the 512-column blocks and 128/256-row
# blocks; plane layout (S >= 16): around S = 16 and the 4096-value segments.
SHAPES = [
    (2, 1), (1, 7), (7, 13), (3, 1, 1), (0, 5), (4, 0), (5, 3, 0),
    (257, 3), (130, 511), (129, 513), (300, 5, 3), (2, 7, 15),
    (3, 2, 16), (4, 3, 17), (2, 3, 5, 7), (5, 2, 31, 33),
    (2, 3, 4095), (1, 2, 4097), (3, 1, 8193), (32, 4, 9, 9),
]


def run(backend, fn, *args, **kwargs):
    with pynn.use_backend(backend):
        return fn(*args, **kwargs)


def assert_close(actual, expected, tol):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def make_inputs(rng, shape, dtype, offset=0.0):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    gamma = rng.uniform(0.5, 2, C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    running_mean = rng.standard_normal(C).astype(dtype)
    running_var = rng.uniform(0.5, 2, C).astype(dtype)
    return x, gamma, beta, running_mean, running_var


def values_per_channel(shape):
    return shape[0] * math.prod(shape[2:])


# ---- the native module mirrors the reference -----------------------------------------

@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        assert inspect.signature(getattr(_native, name)) == inspect.signature(getattr(reference, name))


# ---- native against reference --------------------------------------------------------

@native
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm_training_native_matches_reference(isa, dtype, shape, rng):
    if values_per_channel(shape) == 1:
        pytest.skip("training needs more than one value per channel")
    x, gamma, beta, rm0, rv0 = make_inputs(rng, shape, dtype, offset=3.0)
    dy = rng.standard_normal(shape).astype(dtype)
    outs = {}
    for backend in ("native", "numpy"):
        rm, rv = rm0.copy(), rv0.copy()
        y, mean, invstd = run(backend, ops.batch_norm, x, gamma, beta, rm, rv, True, 0.2, 1e-3)
        grads = run(backend, ops.batch_norm_backward, dy, x, gamma, mean, invstd, True)
        outs[backend] = (y, mean, invstd, rm, rv) + grads
    for got, want in zip(outs["native"], outs["numpy"]):
        assert got.dtype == dtype and got.shape == want.shape
        assert_close(got, want, TOL[dtype])


@native
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm_eval_native_matches_reference(isa, dtype, shape, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    outs = {}
    for backend in ("native", "numpy"):
        y, mean, invstd = run(backend, ops.batch_norm, x, gamma, beta, rm, rv, False)
        grads = run(backend, ops.batch_norm_backward, dy, x, gamma, mean, invstd, False)
        outs[backend] = (y, mean, invstd) + grads
    for got, want in zip(outs["native"], outs["numpy"]):
        assert_close(got, want, TOL[dtype])
    np.testing.assert_array_equal(outs["native"][1], rm)


@native
@pytest.mark.parametrize("shape", [(9, 4), (3, 5, 20)], ids=str)
def test_batch_norm_without_affine_or_running_stats(isa, dtype, shape, rng):
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    outs = {}
    for backend in ("native", "numpy"):
        y, mean, invstd = run(backend, ops.batch_norm, x, None, None, None, None, True)
        dx, dgamma, dbeta = run(backend, ops.batch_norm_backward, dy, x, None, mean, invstd)
        assert dgamma is None and dbeta is None
        outs[backend] = (y, mean, invstd, dx)
    for got, want in zip(outs["native"], outs["numpy"]):
        assert_close(got, want, TOL[dtype])
    y = outs["native"][0]
    axes = (0,) + tuple(range(2, len(shape)))
    assert_close(y.mean(axis=axes, dtype=np.float64), np.zeros(shape[1]), 1e-5)


@native
@pytest.mark.parametrize("shape,axis", [((7, 13), -1), ((0, 5), -1), ((5,), 0), ((300, 1025), 1),
                                        ((2, 3, 5, 7), 1), ((3, 17, 4097), 1), ((4, 3, 2), 0),
                                        ((6, 2, 40), 2), ((1, 1, 1), 1)], ids=str)
def test_bias_backward_native_matches_reference(isa, dtype, shape, axis, rng):
    dy = rng.standard_normal(shape).astype(dtype)
    db = run("native", ops.bias_backward, dy, axis)
    assert db.dtype == dtype and db.shape == (shape[axis],)
    assert_close(db, run("numpy", ops.bias_backward, dy, axis), TOL[dtype])
    others = tuple(a for a in range(len(shape)) if a != axis % len(shape))
    assert_close(db, dy.sum(axis=others, dtype=np.float64), TOL[dtype])


@native
@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 40), C=st.integers(1, 9), S=st.integers(1, 40), seed=st.integers(0, 99))
def test_batch_norm_random_shapes(N, C, S, seed):
    if N * S < 2:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, S)).astype(np.float32)
    dy = rng.standard_normal((N, C, S)).astype(np.float32)
    outs = {}
    for backend in ("native", "numpy"):
        y, mean, invstd = run(backend, ops.batch_norm, x, None, None, None, None, True)
        outs[backend] = (y, mean, invstd) + run(backend, ops.batch_norm_backward, dy, x, None,
                                                mean, invstd)[:1]
    for got, want in zip(outs["native"], outs["numpy"]):
        assert_close(got, want, TOL[np.dtype(np.float32)])


# ---- the reference against PyTorch and finite differences ------------------------------

@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 7), (3, 4, 5, 6)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(backend, dtype, shape, training, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed; it is only a cross-check")
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    F = torch.nn.functional
    x, gamma, beta, rm, rv = make_inputs(rng, shape, dtype, offset=1.0)
    dy = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = F.batch_norm(tx, trm, trv, tg, tb, training=training, momentum=0.3, eps=1e-4)
    ty.backward(torch.tensor(dy))
    y, mean, invstd = run(backend, ops.batch_norm, x, gamma, beta, rm, rv, training, 0.3, 1e-4)
    dx, dgamma, dbeta = run(backend, ops.batch_norm_backward, dy, x, gamma, mean, invstd, training)
    tol = TORCH_TOL[dtype]
    assert_close(y, ty.detach().numpy(), tol)
    assert_close(rm, trm.numpy(), tol)
    assert_close(rv, trv.numpy(), tol)
    assert_close(dx, tx.grad.numpy(), tol)
    assert_close(dgamma, tg.grad.numpy(), tol)
    assert_close(dbeta, tb.grad.numpy(), tol)
    if training:
        _, t_mean, t_invstd = torch.native_batch_norm(
            torch.tensor(x), None, None, None, None, True, 0.0, 1e-4)
        assert_close(mean, t_mean.numpy(), tol)
        assert_close(invstd, t_invstd.numpy(), tol)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_reference_backward_matches_finite_differences(shape, training, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, np.float64)
    w = rng.standard_normal(shape)

    def loss(x, gamma, beta):
        with pynn.use_backend("numpy"):
            y = ops.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training)[0]
        return float(np.sum(w * y))

    with pynn.use_backend("numpy"):
        _, mean, invstd = ops.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training)
        grads = ops.batch_norm_backward(w, x, gamma, mean, invstd, training)
    h = 1e-6
    for i, arr in enumerate((x, gamma, beta)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [x.copy(), gamma.copy(), beta.copy()]
            args[i][idx] += h
            up = loss(*args)
            args[i][idx] -= 2 * h
            numeric[idx] = (up - loss(*args)) / (2 * h)
        np.testing.assert_allclose(grads[i], numeric, rtol=1e-6, atol=1e-7)


# ---- numerics and determinism ----------------------------------------------------------

@native
@pytest.mark.parametrize("shape", [(4096, 3), (64, 2, 700)], ids=str)
def test_variance_survives_a_large_mean(isa, shape, rng):
    """float32 data with |mean| / std = 1e4: E[x^2] - E[x]^2 in float32 would lose every
    digit; the tiled two-pass statistics keep the variance to float32 accuracy."""
    x = (1e4 + rng.standard_normal(shape)).astype(np.float32)
    x64 = x.astype(np.float64)
    axes = (0,) + tuple(range(2, len(shape)))
    var = x64.var(axis=axes)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    _, mean, invstd = ops.batch_norm(x, None, None, rm, rv, True, 1.0, 0.0)
    np.testing.assert_allclose(mean, x64.mean(axis=axes), rtol=1e-7)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(var), rtol=1e-4)
    M = values_per_channel(shape)
    np.testing.assert_allclose(rv, var * M / (M - 1), rtol=1e-4)


@native
@pytest.mark.parametrize("shape", [(300, 257), (4096, 5), (16, 8, 40, 40), (2, 3, 20000)],
                         ids=str)
def test_same_bits_at_any_thread_count(isa, shape, rng):
    x, gamma, beta, rm0, rv0 = make_inputs(rng, shape, np.float32, offset=2.0)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        rm, rv = rm0.copy(), rv0.copy()
        y, mean, invstd = ops.batch_norm(x, gamma, beta, rm, rv, True)
        grads = ops.batch_norm_backward(dy, x, gamma, mean, invstd)
        db = ops.bias_backward(dy, 1)
        results.append([a.tobytes() for a in (y, mean, invstd, rm, rv, db) + grads])
    assert results[0] == results[1]


@native
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 5)], ids=str)
def test_eval_output_of_a_sample_does_not_depend_on_its_batch(shape, rng):
    x, gamma, beta, rm, rv = make_inputs(rng, shape, np.float32)
    y = ops.batch_norm(x, gamma, beta, rm, rv, False)[0]
    for i in range(shape[0]):
        alone = ops.batch_norm(x[i:i + 1], gamma, beta, rm, rv, False)[0]
        assert alone.tobytes() == y[i:i + 1].tobytes()


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_non_contiguous_input_matches_its_copy(backend, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    base = rng.standard_normal((6, 8, 10)).astype(np.float32)
    for x in (base[:, ::2, 1:], base.transpose(1, 0, 2), base[::-1]):
        C = x.shape[1]
        dy = np.cos(x)
        got = run(backend, ops.batch_norm, x, None, None, None, None, True)
        want = run(backend, ops.batch_norm, x.copy(), None, None, None, None, True)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        g1 = run(backend, ops.batch_norm_backward, dy, x, np.ones(C, np.float32), *got[1:])
        g2 = run(backend, ops.batch_norm_backward, dy.copy(), x.copy(), np.ones(C, np.float32),
                 *got[1:])
        for a, b in zip(g1, g2):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(run(backend, ops.bias_backward, dy, 1),
                                      run(backend, ops.bias_backward, dy.copy(), 1))


def test_inputs_are_not_modified(rng):
    x, gamma, beta, rm, rv = make_inputs(rng, (5, 3, 4), np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    copies = [a.copy() for a in (x, gamma, beta, rm, rv, dy)]
    _, mean, invstd = ops.batch_norm(x, gamma, beta, rm, rv, False)
    saved = (mean.copy(), invstd.copy())
    ops.batch_norm_backward(dy, x, gamma, mean, invstd, True)
    ops.bias_backward(dy, 1)
    for a, b in zip((x, gamma, beta, rm, rv, dy, mean, invstd), copies + list(saved)):
        np.testing.assert_array_equal(a, b)
    ops.batch_norm(x, gamma, beta, rm, rv, True)
    for a, b in zip((x, gamma, beta, dy), (copies[0], copies[1], copies[2], copies[5])):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(rm, copies[3])  # training updates the running statistics


# ---- edge cases and other dtypes -------------------------------------------------------

def test_training_empty_batch_keeps_running_stats(dtype):
    rm, rv = np.full(3, 0.5, dtype), np.full(3, 2.0, dtype)
    y, mean, invstd = ops.batch_norm(np.empty((0, 3), dtype), None, None, rm, rv, True)
    assert y.shape == (0, 3)
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)
    dx, dgamma, dbeta = ops.batch_norm_backward(np.empty((0, 3), dtype), np.empty((0, 3), dtype),
                                                np.ones(3, dtype), mean, invstd)
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 0)


def test_backward_of_empty_channels_returns_at_once(dtype):
    """N huge and S = 0: no element, so nothing to walk (the native kernel looped over
    N doing nothing, minutes for this shape)."""
    x = np.empty((2**40, 3, 0), dtype)
    dx, dgamma, dbeta = ops.batch_norm_backward(x, x, np.ones(3, dtype), np.zeros(3, dtype),
                                                np.ones(3, dtype))
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 0)


def test_eval_with_a_single_sample(dtype):
    x = np.array([[1.0, 2.0, 3.0]], dtype)
    y, mean, invstd = ops.batch_norm(x, None, None, np.zeros(3, dtype), np.ones(3, dtype), False,
                                     eps=0.0)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(invstd, 1)


def test_nan_reaches_only_its_channel():
    x = np.ones((4, 3), np.float32)
    x[1, 1] = np.nan
    x[2, :] = 3
    y = ops.batch_norm(x, None, None, None, None, True)[0]
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()


def test_integer_input_is_computed_in_float64(rng):
    x = rng.integers(-5, 5, (6, 3, 2))
    rm, rv = np.zeros(3), np.ones(3)
    y, mean, invstd = ops.batch_norm(x, None, None, rm, rv, True)
    rm2, rv2 = np.zeros(3), np.ones(3)
    want = ops.batch_norm(x.astype(np.float64), None, None, rm2, rv2, True)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, want[0])
    np.testing.assert_array_equal(rv, rv2)


def test_float16_input_uses_the_reference_in_float16(rng):
    x = rng.standard_normal((8, 3)).astype(np.float16)
    rm, rv = np.zeros(3, np.float16), np.ones(3, np.float16)
    y, mean, invstd = ops.batch_norm(x, None, None, rm, rv, True)
    assert y.dtype == mean.dtype == np.float16
    want = ops.batch_norm(x.astype(np.float32), None, None, None, None, True)[0]
    np.testing.assert_allclose(y, want, atol=5e-3)
    assert rm.any()


def test_bias_backward_other_dtypes_match_numpy():
    dy = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    np.testing.assert_array_equal(ops.bias_backward(dy, 1), dy.sum(axis=(0, 2)))
    assert ops.bias_backward(dy, 1).dtype == dy.sum(axis=(0, 2)).dtype
    np.testing.assert_array_equal(ops.bias_backward([[1, 2], [3, 4]]), [4, 6])


# ---- bad input ---------------------------------------------------------------------------

def test_bad_batch_norm_arguments(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    bad = [
        (ValueError, "at least 2", dict(x=np.ones(3, np.float32))),
        (ValueError, "gamma", dict(gamma=np.ones(4, np.float32))),
        (ValueError, "beta", dict(beta=np.ones((3, 1), np.float32))),
        (TypeError, "training", dict(training="yes")),
        (ValueError, "momentum", dict(momentum=1.5)),
        (TypeError, "momentum", dict(momentum=None)),
        (ValueError, "eps", dict(eps=-1.0)),
        (ValueError, "eps", dict(eps=np.nan)),
        (TypeError, "running_mean", dict(running_mean=[0.0, 0.0, 0.0])),
        (TypeError, "running_var", dict(running_var=np.ones(3))),
        (ValueError, "running_mean", dict(running_mean=np.zeros(4, np.float32))),
        (ValueError, "C-contiguous", dict(running_mean=np.zeros(6, np.float32)[::2])),
        (ValueError, "read-only", dict(running_var=np.ones(3, np.float32))),
        (ValueError, "together", dict(running_var=None)),
        (ValueError, "overlaps", dict(running_var=rm)),
        (TypeError, "real", dict(x=x.astype(np.complex64))),
        (TypeError, "numbers", dict(x=np.array([["a", "b"]]))),
        (ValueError, "more than 1 value per channel", dict(x=np.ones((1, 3), np.float32))),
    ]
    for exc, match, change in bad:
        args = dict(x=x, gamma=None, beta=None, running_mean=rm, running_var=rv, training=True)
        args.update(change)
        if "read-only" == match:
            args["running_var"].flags.writeable = False
        with pytest.raises(exc, match=match):
            ops.batch_norm(**args)
    with pytest.raises(ValueError, match="required"):
        ops.batch_norm(x, None, None, None, None, False)
    np.testing.assert_array_equal(rm, 0)


def test_bad_backward_and_bias_arguments(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    mean, invstd = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="shape"):
        ops.batch_norm_backward(np.ones((4, 2), np.float32), x, None, mean, invstd)
    with pytest.raises(ValueError, match="saved_mean"):
        ops.batch_norm_backward(x, x, None, np.zeros(2, np.float32), invstd)
    with pytest.raises(ValueError, match="required"):
        ops.batch_norm_backward(x, x, None, None, invstd)
    with pytest.raises(TypeError, match="training"):
        ops.batch_norm_backward(x, x, None, mean, invstd, training=1)
    with pytest.raises(np.exceptions.AxisError):
        ops.bias_backward(x, 2)
    with pytest.raises(TypeError, match="channel_axis"):
        ops.bias_backward(x, 1.5)
    with pytest.raises(ValueError, match="1 dimension"):
        ops.bias_backward(np.float32(1))


@native
def test_native_wrappers_refuse_inconsistent_arrays():
    x = np.ones((4, 3, 2), np.float32)
    c = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="y has shape"):
        _native.batch_norm_forward(np.empty((4, 3, 1), np.float32), c.copy(), c.copy(), None,
                                   None, x, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="gamma"):
        _native.batch_norm_forward(np.empty_like(x), c.copy(), c.copy(), None, None, x,
                                   np.ones(2, np.float32), None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="argument out of range"):
        _native.batch_norm_forward(np.empty_like(x), c.copy(), c.copy(), None, None, x, None,
                                   None, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match="db"):
        _native.bias_backward(np.empty(2, np.float32), x)
    with pytest.raises((TypeError, ValueError)):
        _native.bias_backward(np.empty(3, np.float64), x)
