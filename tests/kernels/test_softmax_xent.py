"""Softmax, log-softmax and fused softmax + cross-entropy: the native kernels against the
NumPy reference (every ISA, both dtypes, awkward shapes and axes), the reference against
PyTorch and against finite differences, determinism across thread counts and batches,
and bad input."""
import inspect
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pynn
from pynn import _native, ops
from pynn.backends.numpy import softmax_xent as reference

# Native vs reference: the same formulas, summed in a different order, with exp and log
# from vmath.h (<= 1 ulp) instead of libm.
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14)}
# Against PyTorch in float64 (inputs rounded to the dtype first).
TORCH_TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
             np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")
XENT_SHAPES = [(0, 5), (1, 1), (7, 13), (3, 1000), (257, 10), (4096, 33)]
# around the 32 accumulator lanes (shorter rows are transposed 16 at a time) and the
# 64-column blocks of a strided axis
SOFTMAX_SHAPES = XENT_SHAPES + [(5, 31), (2, 32), (3, 33), (33, 2), (17,), (2, 3, 0)]
REDUCTIONS = ("mean", "sum", "none")


def run(backend, fn, *args, **kwargs):
    with pynn.use_backend(backend):
        return fn(*args, **kwargs)


def make_labels(rng, n, c, ignore_index=None):
    labels = rng.integers(0, c, n)
    if ignore_index is not None:
        labels[::3] = ignore_index
    return labels


def torch_xent(logits, labels, reduction, label_smoothing, ignore_index, weight):
    """PyTorch's loss and the gradient of its sum, in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed; it is only a cross-check")
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(x, torch.tensor(labels, dtype=torch.int64),
                                             weight=w, reduction=reduction,
                                             label_smoothing=label_smoothing,
                                             ignore_index=ignore_index)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


# ---- the native module mirrors the reference -----------------------------------------

@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        native_fn, reference_fn = getattr(_native, name), getattr(reference, name)
        assert inspect.signature(native_fn) == inspect.signature(reference_fn)


# ---- softmax, log_softmax and their backward -------------------------------------------

@native
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_native_matches_reference(isa, dtype, shape, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for forward, backward in ((ops.softmax, ops.softmax_backward),
                              (ops.log_softmax, ops.log_softmax_backward)):
        y = run("native", forward, x)
        y_ref = run("numpy", forward, x)
        assert y.dtype == dtype and y.shape == shape
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])
        dx = run("native", backward, dy, y_ref)
        np.testing.assert_allclose(dx, run("numpy", backward, dy, y_ref), **TOL[dtype])


@native
@pytest.mark.parametrize("shape", [(3, 7, 5), (2, 70, 130)], ids=str)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_every_axis(isa, dtype, shape, axis, rng):
    """Along a middle axis the kernel walks blocks of 64 columns: 130 has a ragged one."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for log in (False, True):
        forward = ops.log_softmax if log else ops.softmax
        backward = ops.log_softmax_backward if log else ops.softmax_backward
        y = run("native", forward, x, axis=axis)
        expected = x.astype(np.float64) - x.max(axis=axis, keepdims=True)
        expected = expected - np.log(np.exp(expected).sum(axis=axis, keepdims=True))
        np.testing.assert_allclose(y, expected if log else np.exp(expected), **TOL[dtype])
        np.testing.assert_allclose(y, run("numpy", forward, x, axis=axis), **TOL[dtype])
        np.testing.assert_allclose(run("native", backward, dy, y, axis=axis),
                                   run("numpy", backward, dy, y, axis=axis), **TOL[dtype])


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), data=st.data())
@native
def test_softmax_random_shapes_and_axes(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32) * 5
    np.testing.assert_allclose(run("native", ops.log_softmax, x, axis),
                               run("numpy", ops.log_softmax, x, axis), rtol=1e-5, atol=2e-6)


@native
@pytest.mark.parametrize("shape", [(40, 66), (37, 10)], ids=str)
def test_softmax_non_contiguous_views_and_out(dtype, shape, rng):
    base = rng.standard_normal(shape).astype(dtype)
    for x in (base[:, ::2], base.T, base[::-1, 3:]):
        expected = run("numpy", ops.softmax, np.ascontiguousarray(x))
        np.testing.assert_allclose(run("native", ops.softmax, x), expected, **TOL[dtype])
        out = np.empty(x.shape, np.float64)  # a wider out is filled by casting, like a ufunc
        assert run("native", ops.softmax, x, out=out) is out
        np.testing.assert_allclose(out, expected, **TOL[dtype])
    x = base.copy()
    expected = run("native", ops.log_softmax, x)
    assert run("native", ops.log_softmax, x, out=x) is x  # in place
    np.testing.assert_array_equal(x, expected)
    y = run("native", ops.softmax, base)
    dy = rng.standard_normal(base.shape).astype(dtype)
    expected = run("native", ops.softmax_backward, dy, y)
    assert run("native", ops.softmax_backward, dy, y, out=dy) is dy
    np.testing.assert_array_equal(dy, expected)


def test_softmax_other_dtypes():
    ints = np.array([[1, 2, 3], [0, 0, 5]])
    y = ops.softmax(ints)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ops.softmax(ints.astype(np.float64)), rtol=1e-15)
    half = ops.log_softmax(np.array([1, 2, 3], np.float16))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, ops.log_softmax(np.array([1.0, 2.0, 3.0])), rtol=2e-3)
    assert ops.softmax([[True, False]]).dtype == np.float64
    np.testing.assert_allclose(ops.softmax_backward(np.ones(3, np.int64), np.full(3, 1 / 3)),
                               0, atol=1e-16)
    with pytest.raises(TypeError, match="x must be real"):
        ops.softmax(np.ones(3, np.complex128))


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_softmax_backward_matches_finite_differences(backend, rng):
    x = rng.standard_normal((3, 5, 4))
    dy = rng.standard_normal(x.shape)
    h = 1e-6
    for log, axis in itertools.product((False, True), (0, 1, 2)):
        forward = ops.log_softmax if log else ops.softmax
        backward = ops.log_softmax_backward if log else ops.softmax_backward
        dx = run(backend, backward, dy, run(backend, forward, x, axis), axis)
        numeric = np.empty_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            numeric[i] = (np.sum(dy * run(backend, forward, xp, axis))
                          - np.sum(dy * run(backend, forward, xm, axis))) / (2 * h)
        np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_softmax_large_and_non_finite_values(backend, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [np.nan, 0, 1], [np.inf, 0, 1]], dtype)
    y = run(backend, ops.softmax, x)
    np.testing.assert_allclose(y[:2], [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert np.isnan(y[2:]).any(axis=1).all()   # NaN and inf propagate, nothing raises
    log_y = run(backend, ops.log_softmax, x[:2])
    np.testing.assert_allclose(log_y, [[0, -2e4, -1e4], [-np.log(3)] * 3], rtol=1e-6)


@pytest.mark.parametrize("torch_fn,op", [("softmax", ops.softmax),
                                         ("log_softmax", ops.log_softmax)])
def test_softmax_matches_torch(torch_fn, op, dtype, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed; it is only a cross-check")
    x = (rng.standard_normal((6, 9, 11)) * 4).astype(dtype)
    for axis in range(3):
        expected = getattr(torch, torch_fn)(torch.tensor(x, dtype=torch.float64), axis).numpy()
        np.testing.assert_allclose(op(x, axis), expected, **TORCH_TOL[dtype])


# ---- fused softmax + cross-entropy ------------------------------------------------------

COMBOS = list(itertools.product(REDUCTIONS, (0.0, 0.1), (False, True), (False, True)))


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
@pytest.mark.parametrize("reduction,label_smoothing,ignore,weighted", COMBOS)
def test_xent_matches_torch(backend, reduction, label_smoothing, ignore, weighted, dtype, rng):
    logits = (rng.standard_normal((37, 11)) * 3).astype(dtype)
    ignore_index = 4 if ignore else -100   # an index inside [0, C) may be ignored too
    labels = make_labels(rng, 37, 11, ignore_index if ignore else None)
    weight = rng.uniform(0.2, 2.0, 11).astype(dtype) if weighted else None
    loss, grad = run(backend, ops.softmax_cross_entropy, logits, labels, reduction,
                     label_smoothing, ignore_index, weight)
    t_loss, t_grad = torch_xent(logits, labels, reduction, label_smoothing, ignore_index, weight)
    if reduction == "none":
        assert loss.shape == (37,) and loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    assert grad.shape == logits.shape and grad.dtype == dtype
    np.testing.assert_allclose(loss, t_loss, **TORCH_TOL[dtype])
    np.testing.assert_allclose(grad, t_grad, **TORCH_TOL[dtype])
    if ignore:
        assert not grad[labels == ignore_index].any()


@native
@pytest.mark.parametrize("shape", XENT_SHAPES, ids=str)
def test_xent_native_matches_reference(isa, dtype, shape, rng):
    n, c = shape
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    weight = rng.uniform(0.1, 3.0, c).astype(dtype)
    for reduction, label_smoothing, ignore, weighted in COMBOS:
        args = (logits, make_labels(rng, n, c, -100 if ignore else None), reduction,
                label_smoothing, -100, weight if weighted else None)
        loss, grad = run("native", ops.softmax_cross_entropy, *args)
        loss_ref, grad_ref = run("numpy", ops.softmax_cross_entropy, *args)
        np.testing.assert_allclose(loss, loss_ref, **TOL[dtype])
        np.testing.assert_allclose(grad, grad_ref, **TOL[dtype])


@pytest.mark.parametrize("reduction,label_smoothing,ignore,weighted", COMBOS)
def test_xent_reference_gradient_matches_finite_differences(reduction, label_smoothing, ignore,
                                                            weighted, rng):
    logits = rng.standard_normal((5, 4)) * 2
    labels = make_labels(rng, 5, 4, -1 if ignore else None)
    weight = rng.uniform(0.5, 2.0, 4) if weighted else None

    def loss(x):
        value = run("numpy", ops.softmax_cross_entropy, x, labels, reduction, label_smoothing,
                    -1, weight)[0]
        return float(np.sum(value))

    grad = run("numpy", ops.softmax_cross_entropy, logits, labels, reduction, label_smoothing,
               -1, weight)[1]
    h = 1e-6
    numeric = np.empty_like(logits)
    for i in np.ndindex(logits.shape):
        xp, xm = logits.copy(), logits.copy()
        xp[i] += h
        xm[i] -= h
        numeric[i] = (loss(xp) - loss(xm)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_xent_edge_cases(backend, dtype, rng):
    logits = rng.standard_normal((4, 3)).astype(dtype)
    ignored = np.full(4, -100)
    loss, grad = run(backend, ops.softmax_cross_entropy, logits, ignored)
    assert np.isnan(loss) and not grad.any()    # mean over no rows: NaN, as in PyTorch
    assert run(backend, ops.softmax_cross_entropy, logits, ignored, "sum")[0] == 0.0
    empty = np.zeros((0, 3), dtype)
    assert np.isnan(run(backend, ops.softmax_cross_entropy, empty, np.zeros(0, int))[0])
    loss, grad = run(backend, ops.softmax_cross_entropy, empty, np.zeros(0, int), "none")
    assert loss.shape == (0,) and grad.shape == (0, 3)
    # every counted row's class weighted 0: the mean is 0 / 0, NaN, for the loss and the
    # gradient of the counted rows, with smoothing too (whose sum alone is positive)
    weight = np.array([0, 1, 1], dtype)
    for label_smoothing in (0.0, 0.1):
        loss, grad = run(backend, ops.softmax_cross_entropy, logits, [0, -100, 0, 0], "mean",
                         label_smoothing, -100, weight)
        assert np.isnan(loss) and np.isnan(grad[[0, 2, 3]]).all() and not grad[1].any()
    # uint64 labels past int64 would wrap (2**64 - 100 onto the default ignore_index)
    with pytest.raises(ValueError, match="out of range"):
        run(backend, ops.softmax_cross_entropy, logits, np.array([1, 2**64 - 100, 0, 1],
                                                                 np.uint64))
    # one class: softmax is 1, the loss and its gradient 0
    loss, grad = run(backend, ops.softmax_cross_entropy, np.array([[5.0]], dtype), [0])
    assert loss == 0.0 and grad.tolist() == [[0.0]]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_long_row_with_one_dominant_term(backend):
    """A row of 2**23 values summed in float32: the native kernel adds the sums of pieces in
    double (float lanes over the whole row were 9e-6 off here, 0.5% at 10**8)."""
    n = 2**23 + 5
    x = np.zeros(n, np.float32)
    x[-1] = 20
    p = np.exp(20.0) / (n - 1 + np.exp(20.0))
    y = run(backend, ops.softmax, x)
    assert abs(y[-1] / p - 1) < 1e-6
    assert abs(run(backend, ops.log_softmax, x)[0] / -np.log(n - 1 + np.exp(20.0)) - 1) < 1e-6
    loss = run(backend, ops.softmax_cross_entropy, x[None], [0], "sum")[0]
    assert abs(loss / np.log(n - 1 + np.exp(20.0)) - 1) < 1e-6


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_long_strided_axis_with_one_dominant_term(backend):
    """The same along a strided axis (columns of a C-ordered array), where the native kernel
    runs down each column: one float accumulator a column was 11% off for log_softmax and
    4% for the backward's sum here; pieces of a column now add up in double."""
    n = 2**23 + 5
    x = np.zeros((n, 2), np.float32)
    x[-1] = 20
    total = n - 1 + np.exp(20.0)
    y = run(backend, ops.softmax, x, 0)
    np.testing.assert_allclose(y[-1], np.exp(20.0) / total, rtol=1e-6)
    z = run(backend, ops.log_softmax, x, 0)
    np.testing.assert_allclose(z[0], -np.log(total), rtol=1e-6)
    dy = np.full((n, 2), 0.1, np.float32)
    # log_softmax_backward: dx = dy - softmax * sum(dy), sum(dy) = 0.1 n
    dx = run(backend, ops.log_softmax_backward, dy, z, 0)
    np.testing.assert_allclose(dx[-1], 0.1 - np.exp(20.0) / total * 0.1 * n, rtol=1e-5)
    # softmax_backward: dx = y (dy - sum(dy y))
    dy[-1] = 1
    dx = run(backend, ops.softmax_backward, dy, y, 0)
    g = np.sum(dy.astype(np.float64) * y, axis=0)
    np.testing.assert_allclose(dx[-1], y[-1] * (1 - g), rtol=1e-5)


def test_xent_single_sample_matches_torch(dtype, rng):
    logits = rng.standard_normal(7).astype(dtype)
    for reduction in REDUCTIONS:
        loss, grad = ops.softmax_cross_entropy(logits, np.int64(3), reduction, 0.2)
        t_loss, t_grad = torch_xent(logits, np.int64(3), reduction, 0.2, -100, None)
        assert grad.shape == (7,)
        assert np.shape(loss) == np.shape(t_loss)
        np.testing.assert_allclose(loss, t_loss, **TORCH_TOL[dtype])
        np.testing.assert_allclose(grad, t_grad, **TORCH_TOL[dtype])


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_xent_large_and_non_finite_logits(backend, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], dtype)
    for label_smoothing in (0.0, 0.3):
        loss, grad = run(backend, ops.softmax_cross_entropy, logits, [1, 1, 2], "none",
                         label_smoothing)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        expected = 2e4 * (1 - label_smoothing) + label_smoothing / 3 * 3e4
        np.testing.assert_allclose(loss[0], expected, rtol=1e-6)
    bad = np.array([[np.nan, 0, 1], [0, 1, 2], [np.inf, 0, 0]], dtype)
    loss, grad = run(backend, ops.softmax_cross_entropy, bad, [0, 1, 2], "none")
    assert np.isnan(loss[[0, 2]]).all() and np.isfinite(loss[1])
    assert np.isnan(grad[[0, 2]]).all() and np.isfinite(grad[1]).all()
    loss, grad = run(backend, ops.softmax_cross_entropy, bad, [-100, 1, -100])
    assert np.isfinite(loss) and not grad[[0, 2]].any()   # ignored rows stay clean


def test_xent_label_dtypes(rng):
    logits = rng.standard_normal((9, 6))
    labels = rng.integers(0, 6, 9)
    expected = ops.softmax_cross_entropy(logits, labels)
    for dt in (np.uint8, np.int16, np.int32, np.uint64):
        loss, grad = ops.softmax_cross_entropy(logits, labels.astype(dt))
        assert loss == expected[0]
        np.testing.assert_array_equal(grad, expected[1])
    loss, grad = ops.softmax_cross_entropy(logits.tolist(), labels.tolist())   # array-likes
    assert loss == expected[0]


@pytest.mark.parametrize("reduction,label_smoothing,ignore_index",
                         [("mean", 0.0, -100), ("sum", 0.2, 2), ("mean", 1.0, 0)])
def test_xent_quick_path_is_the_general_one(backend, dtype, reduction, label_smoothing,
                                            ignore_index, rng):
    """C-contiguous (N, C) logits with int64 labels take a short path to the kernel; other
    layouts and label dtypes, checked and converted first, give the same bits."""
    logits = rng.standard_normal((13, 7)).astype(dtype)
    labels = rng.integers(0, 7, 13)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing, ignore_index=ignore_index)
    with pynn.use_backend(backend):
        loss, grad = ops.softmax_cross_entropy(logits, labels, **kw)
        for other_logits, other_labels in [(np.asfortranarray(logits), labels),
                                           (logits, labels.astype(np.int32)),
                                           (logits, labels[::-1].copy()[::-1])]:
            other = ops.softmax_cross_entropy(other_logits, other_labels, **kw)
            assert other[0] == loss
            np.testing.assert_array_equal(other[1], grad)
    assert type(loss) is float and grad.flags.c_contiguous and grad.dtype == dtype


# ---- determinism -------------------------------------------------------------------------

@native
@pytest.mark.parametrize("classes", [10, 33])
def test_bitwise_identical_at_1_and_2_threads(dtype, classes, rng):
    x = rng.standard_normal((4100, classes)).astype(dtype)
    x3 = rng.standard_normal((64, 40, 70)).astype(dtype)
    labels = make_labels(rng, 4100, classes, -100)
    weight = rng.uniform(0.5, 2, classes).astype(dtype)
    results = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        with pynn.use_backend("native"):
            y = ops.softmax(x)
            results.append([y, ops.log_softmax(x3, axis=1), ops.softmax_backward(x, y),
                            ops.log_softmax_backward(x3, x3, axis=1)]
                           + [np.asarray(v) for r in REDUCTIONS for v in ops.softmax_cross_entropy(
                               x, labels, r, 0.1, weight=weight)])
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


@native
@pytest.mark.parametrize("classes", [10, 37])
def test_sample_result_does_not_depend_on_its_batch(isa, dtype, classes, rng):
    x = rng.standard_normal((300, classes)).astype(dtype)
    labels = make_labels(rng, 300, classes)
    dy = rng.standard_normal(x.shape).astype(dtype)
    with pynn.use_backend("native"):
        losses, grad = ops.softmax_cross_entropy(x, labels, "none", 0.1)
        y = ops.softmax(x)
        log_y = ops.log_softmax(x)
        dx = ops.log_softmax_backward(dy, log_y)
        for i in (0, 17, 299):
            rows = slice(i, i + 1)
            loss_i, grad_i = ops.softmax_cross_entropy(x[rows], labels[rows], "none", 0.1)
            assert loss_i.tobytes() == losses[rows].tobytes()
            assert grad_i.tobytes() == grad[rows].tobytes()
            assert ops.softmax(x[rows]).tobytes() == y[rows].tobytes()
            assert ops.log_softmax(x[rows]).tobytes() == log_y[rows].tobytes()
            assert ops.log_softmax_backward(dy[rows], log_y[rows]).tobytes() == dx[rows].tobytes()


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_xent_bad_input(backend):
    logits = np.zeros((4, 3))
    labels = np.array([0, 1, 2, 1])
    xent = ops.softmax_cross_entropy
    with pynn.use_backend(backend):
        with pytest.raises(TypeError, match="labels"):
            xent(logits, labels.astype(np.float64))
        with pytest.raises(TypeError, match="labels"):
            xent(logits, labels > 0)
        with pytest.raises(ValueError, match="label 3 is out of range"):
            xent(logits, [0, 1, 3, 1])
        with pytest.raises(ValueError, match="label -1 is out of range"):
            xent(logits, [0, -1, 2, 1])
        for bad, label in (([0, 1, 3, 1], 3), ([0, -1, 2, 1], -1)):  # int64: the quick path
            with pytest.raises(ValueError, match=f"label {label} is out of range"):
                xent(logits, np.array(bad, np.int64))
        with pytest.raises(ValueError, match="labels must have shape"):
            xent(logits, labels[:3])
        with pytest.raises(ValueError, match="labels must have shape"):
            xent(logits, labels[:, None])
        with pytest.raises(ValueError, match="reduction"):
            xent(logits, labels, reduction="avg")
        with pytest.raises(ValueError, match="reduction"):
            xent(logits, labels, reduction=None)
        for bad in (-0.1, 1.5, np.nan):
            with pytest.raises(ValueError, match="label_smoothing"):
                xent(logits, labels, label_smoothing=bad)
        with pytest.raises(TypeError, match="label_smoothing"):
            xent(logits, labels, label_smoothing="0.1")
        with pytest.raises(ValueError, match="weight"):
            xent(logits, labels, weight=np.ones(4))
        with pytest.raises(ValueError, match="weight"):
            xent(logits, labels, weight=np.ones((3, 1)))
        with pytest.raises(TypeError, match="ignore_index"):
            xent(logits, labels, ignore_index=1.0)
        with pytest.raises(ValueError, match="logits"):
            xent(np.zeros((2, 3, 4)), labels)
        with pytest.raises(ValueError, match="at least one class"):
            xent(np.zeros((4, 0)), labels)
        with pytest.raises(TypeError, match="logits"):
            xent(np.zeros((4, 3), complex), labels)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_softmax_bad_input(backend):
    x = np.zeros((3, 4), np.float32)
    with pynn.use_backend(backend):
        for op in (ops.softmax, ops.log_softmax):
            with pytest.raises(np.exceptions.AxisError):
                op(x, axis=2)
            with pytest.raises(np.exceptions.AxisError):
                op(np.float32(1.0))
            with pytest.raises(TypeError, match="axis"):
                op(x, axis=1.0)
            with pytest.raises(ValueError, match="out has shape"):
                op(x, out=np.empty((4, 3), np.float32))
            with pytest.raises(ValueError, match="read-only"):
                op(x, out=np.broadcast_to(np.float32(0), x.shape))
            with pytest.raises(TypeError, match="out"):
                op(x, out=np.empty(x.shape, np.int32))
            with pytest.raises(TypeError, match="x"):
                op([["a"]])
        for op in (ops.softmax_backward, ops.log_softmax_backward):
            with pytest.raises(ValueError, match="dy has shape"):
                op(np.zeros((3, 5)), x)
            with pytest.raises(np.exceptions.AxisError):
                op(x, x, axis=-3)
            with pytest.raises(ValueError, match="overlaps"):
                op(x, x[::-1].copy(), out=x[::-1])


@native
def test_native_kernels_refuse_inconsistent_shapes():
    x = np.zeros((2, 3, 1))
    with pytest.raises(ValueError, match="y has shape"):
        _native.softmax_forward(np.zeros((2, 4, 1)), x, False)
    with pytest.raises(ValueError, match="dx has shape"):
        _native.softmax_backward(np.zeros((2, 4, 1)), x, x, True)
    with pytest.raises(ValueError, match="labels has shape"):
        _native.softmax_xent_forward_backward(None, np.zeros((2, 3)), np.zeros((2, 3)),
                                              np.zeros(3, np.int64), None, 1, 0.0, -100)
    with pytest.raises(ValueError, match="weight has shape"):
        _native.softmax_xent_forward_backward(None, np.zeros((2, 3)), np.zeros((2, 3)),
                                              np.zeros(2, np.int64), np.ones(2), 1, 0.0, -100)
    with pytest.raises(ValueError, match="argument out of range"):   # the C check on labels
        _native.softmax_xent_forward_backward(None, np.zeros((2, 3)), np.zeros((2, 3)),
                                              np.array([0, 7]), None, 1, 0.0, -100)
    # the kernels read through restrict pointers: an output must not overlap an input
    x = np.zeros((4, 3, 1))
    with pytest.raises(ValueError, match="y overlaps the input x"):
        _native.softmax_forward(x, x, False)
    with pytest.raises(ValueError, match="dx overlaps the input y"):
        _native.softmax_backward(x[1:], x[:3].copy(), x[:3], True)
    with pytest.raises(ValueError, match="dlogits overlaps the input logits"):
        _native.softmax_xent_forward_backward(None, x[:, :, 0], x[:, :, 0],
                                              np.zeros(4, np.int64), None, 1, 0.0, -100)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_inputs_are_not_modified(backend, rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    labels = np.array([0, 4, -100, 2, 2, 1])
    weight = np.linspace(0.5, 1.5, 5).astype(np.float32)
    saved = [a.copy() for a in (x, dy, labels, weight)]
    with pynn.use_backend(backend):
        y = ops.softmax(x, axis=0)
        ops.log_softmax(x)
        ops.softmax_backward(dy, y, axis=0)
        ops.log_softmax_backward(dy, y)
        for reduction in REDUCTIONS:
            ops.softmax_cross_entropy(x, labels, reduction, 0.1, weight=weight)
    for a, b in zip((x, dy, labels, weight), saved):
        np.testing.assert_array_equal(a, b)


# ---- argmax_hits: a batch's correct predictions ------------------------------------------

@native
@pytest.mark.parametrize("n,c", [(0, 10), (1, 1), (7, 1), (33, 10), (200, 3), (5, 1000)])
def test_argmax_hits_is_numpys_argmax(dtype, n, c, rng):
    """Both backends count rows whose np.argmax is their label: the first of tied maxima,
    the first NaN of a row that has one; labels out of range are simply never hit."""
    x = rng.integers(-3, 3, (n, c)).astype(dtype)  # many ties
    specials = rng.random((n, c))
    x[specials < 0.05] = np.nan
    x[(specials >= 0.05) & (specials < 0.1)] = np.inf
    x[(specials >= 0.1) & (specials < 0.15)] = -np.inf
    labels = rng.integers(-2, c + 2, n)                  # mostly misses
    labels[: n // 2] = x[: n // 2].argmax(axis=1)        # hits, NaN rows and ties included
    want = int(np.count_nonzero(x.argmax(axis=1) == labels)) if n else 0
    assert want >= n // 2
    assert reference.argmax_hits(x, labels) == want
    assert _native.argmax_hits(x, labels) == want


@native
def test_argmax_hits_refuses_mismatched_labels():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        _native.argmax_hits(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError):
        _native.argmax_hits(np.zeros((2, 0), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        reference.argmax_hits(np.zeros((2, 0), np.float32), np.zeros(2, np.int64))
