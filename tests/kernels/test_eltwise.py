"""Activations, forward and backward: the native kernels against the NumPy reference (every
ISA, both dtypes, sizes around the vector widths and the threading threshold,
non-contiguous input), both against the true values (float64 for float32, mpmath for
float64) within the ulp bounds csrc/vmath.h states, extreme inputs, the reference's
backward against finite differences, determinism across thread counts, in-place `out`,
dtypes other than float32/64, bad input, and PyTorch."""
import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pynn
from pynn import _native, ops
from pynn.backends.numpy import eltwise as reference
from pynn.ops._activations import ACTIVATIONS

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")

# around 4/8/16 lanes, and around 2 * 32768, where two threads start
SIZES = [0, 1, 15, 16, 17, 31, 33, 1000, 65537]
SMOOTH = ("sigmoid", "tanh", "silu", "gelu", "gelu_tanh")
SLOPE = 0.2
EXTREMES = [0.0, -0.0, 1e-30, -1e-30, 1e-40, -1e-40, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0,
            88.0, -88.0, 100.0, -100.0, 1e30, -1e30, np.inf, -np.inf, np.nan]

# Largest error against the true value, in ulp of the true value (csrc/vmath.h), for the
# forward and the backward (from the input) of each smooth activation.
ULP_BOUND = {"sigmoid": (3, 5), "tanh": (2, 4), "silu": (4, 5), "gelu": (6, 5),
             "gelu_tanh": (3, 5)}


def run(backend, fn, *args, **kwargs):
    with pynn.use_backend(backend):
        return fn(*args, **kwargs)


def forward(name, x, **kwargs):
    """The public forward op for an activation name of ACTIVATIONS."""
    return ops.activation(x, name, negative_slope=SLOPE, **kwargs)


def backward(name, dy, x, **kwargs):
    """The input gradient for `name` from the pre-activation x, through the dedicated op
    (sigmoid and tanh: from their output)."""
    if name == "sigmoid":
        return ops.sigmoid_backward(dy, ops.sigmoid(x), **kwargs)
    if name == "tanh":
        return ops.tanh_backward(dy, ops.tanh(x), **kwargs)
    if name == "gelu":
        return ops.gelu_backward(dy, x, **kwargs)
    if name == "gelu_tanh":
        return ops.gelu_backward(dy, x, approximate="tanh", **kwargs)
    if name == "leaky_relu":
        return ops.leaky_relu_backward(dy, x, negative_slope=SLOPE, **kwargs)
    return ops.activation_backward(dy, x, name, negative_slope=SLOPE, **kwargs)


def truth(name, x, dy=None):
    """f(x) (or dy * f'(x)) computed by the reference in float64: for float32 inputs
    exact to far below a float32 ulp."""
    x64 = np.asarray(x, np.float64)
    with pynn.use_backend("numpy"):
        if dy is None:
            return forward(name, x64)
        return ops.activation_backward(np.asarray(dy, np.float64), x64, name,
                                       negative_slope=SLOPE)


def ulp(values, dtype):
    """Spacing of `values` rounded to dtype; subnormal spacing below the normal range."""
    v = np.abs(np.asarray(values, np.float64)).astype(dtype)
    return np.maximum(np.spacing(v), np.finfo(dtype).smallest_subnormal).astype(np.float64)


def assert_within(got, want, allowed, what):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        bad = ~same & ~(np.abs(got - want) <= allowed)
    assert not bad.any(), (f"{what}: {bad.sum()} values off, e.g. got {got[bad][:4]} want "
                           f"{want[bad][:4]} (allowed {np.asarray(allowed)[bad][:4]})")


def kernel_tolerance(name, x, dy, dtype, backward_pass):
    """What two correct implementations may differ by: a few ulp of the result, plus the
    problem's own conditioning (|x f'(x)| for the forward; for the backward, the size of
    the terms that cancel near a zero of f', about |dy| (1 + |x|))."""
    eps = np.finfo(dtype).eps
    x64 = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if backward_pass:
            scale = np.abs(np.asarray(dy, np.float64)) * (1 + np.minimum(np.abs(x64), 1e4))
            want = truth(name, x64, dy)
        else:
            scale = np.abs(x64 * truth(name, x64, np.ones_like(x64)))
            want = truth(name, x64)
        return 8 * ulp(want, dtype) + 8 * eps * np.nan_to_num(scale, posinf=0.0)


# ---- the native module mirrors the reference --------------------------------------------

@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        native_fn, reference_fn = getattr(_native, name), getattr(reference, name)
        assert inspect.signature(native_fn) == inspect.signature(reference_fn)


@native
@pytest.mark.parametrize("size", SIZES)
def test_native_matches_reference(isa, dtype, size, rng):
    x = (rng.standard_normal(size) * 4).astype(dtype)
    x[::7] = rng.uniform(-30, 30, x[::7].size)
    dy = rng.standard_normal(size).astype(dtype)
    for name in ACTIVATIONS:
        y = run("native", forward, name, x)
        y_ref = run("numpy", forward, name, x)
        assert y.dtype == dtype and y.shape == (size,)
        assert_within(y, y_ref, kernel_tolerance(name, x, dy, dtype, False), f"{name} forward")
        dx = run("native", backward, name, dy, x)
        dx_ref = run("numpy", backward, name, dy, x)
        assert dx.dtype == dtype and dx.shape == (size,)
        assert_within(dx, dx_ref, kernel_tolerance(name, x, dy, dtype, True), f"{name} backward")
        dx = run("native", ops.activation_backward, dy, x, name, negative_slope=SLOPE)
        assert_within(dx, dx_ref if name not in ("sigmoid", "tanh") else truth(name, x, dy),
                      kernel_tolerance(name, x, dy, dtype, True), f"{name} activation_backward")


@native
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_native_matches_reference_on_extremes(isa, dtype, name):
    x = np.array(EXTREMES, dtype)
    dy = np.ones_like(x)
    y = run("native", forward, name, x)
    assert_within(y, run("numpy", forward, name, x),
                  kernel_tolerance(name, x, dy, dtype, False), f"{name} forward")
    dx = run("native", ops.activation_backward, dy, x, name, negative_slope=SLOPE)
    assert_within(dx, run("numpy", ops.activation_backward, dy, x, name, negative_slope=SLOPE),
                  kernel_tolerance(name, x, dy, dtype, True), f"{name} backward")


@native
@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]), st.integers(0, 80),
                    elements=st.floats(-200, 200, width=32)),
       name=st.sampled_from(ACTIVATIONS))
def test_native_matches_reference_property(x, name):
    dy = np.linspace(-2, 2, x.size).astype(x.dtype)
    assert_within(run("native", forward, name, x), run("numpy", forward, name, x),
                  kernel_tolerance(name, x, dy, x.dtype, False), f"{name} forward")
    assert_within(run("native", ops.activation_backward, dy, x, name, negative_slope=SLOPE),
                  run("numpy", ops.activation_backward, dy, x, name, negative_slope=SLOPE),
                  kernel_tolerance(name, x, dy, x.dtype, True), f"{name} backward")


# ---- accuracy against the true values -------------------------------------------------------

def accuracy_inputs(rng, dtype):
    big = 90.0 if dtype == np.float32 else 720.0
    x = np.concatenate([rng.standard_normal(4000) * 3, rng.uniform(-big, big, 4000),
                        np.exp(rng.uniform(-60, 4, 2000)) * rng.choice([-1, 1], 2000),
                        EXTREMES])
    return x.astype(dtype)


def allowed_error(name, x, want, dtype, ulps, backward_pass):
    """ulps ulp of the true value; subnormal results lose bits in products (silu(-100) is
    -100 * a subnormal), so also |x| subnormal spacings; the tanh GELU carries the
    rounding of w = sqrt(2/pi)(x + 0.044715 x^3) times its conditioning; near a zero of
    a derivative, what cancels is about (1 + |x|) in size."""
    tiny = np.finfo(dtype).smallest_subnormal
    eps = np.finfo(dtype).eps
    x64 = np.minimum(np.abs(np.asarray(x, np.float64)), 1e4)
    allowed = ulps * ulp(want, dtype) + 2 * (1 + x64) * tiny
    if name == "gelu_tanh":
        with np.errstate(invalid="ignore", over="ignore"):
            slope = np.nan_to_num(np.abs(x64 * truth(name, x, np.ones_like(x))), posinf=0.0)
        allowed = allowed + 4 * eps * slope
    if backward_pass:
        allowed = allowed + 2 * eps * (1 + x64)
    return allowed


@native
@pytest.mark.parametrize("name", SMOOTH)
def test_float32_accuracy(isa, name, rng):
    x = accuracy_inputs(rng, np.float32)
    fwd_ulps, bwd_ulps = ULP_BOUND[name]
    want = truth(name, x)
    assert_within(run("native", forward, name, x), want,
                  allowed_error(name, x, want, np.float32, fwd_ulps, False), f"{name} forward")
    ones = np.ones_like(x)
    want = truth(name, x, ones)
    assert_within(run("native", ops.activation_backward, ones, x, name), want,
                  allowed_error(name, x, want, np.float32, bwd_ulps, True), f"{name} backward")


def mp_truth(name, x, derivative):
    mp = pytest.importorskip("mpmath", reason="mpmath is not installed; float64 truth needs it")
    mp.mp.dps = 60

    def sig(v):
        return 1 / (1 + mp.exp(-v))

    def w2(v):
        return 2 * mp.sqrt(2 / mp.pi) * (v + mp.mpf("0.044715") * v ** 3)

    def dw2(v):
        return 2 * mp.sqrt(2 / mp.pi) * (1 + 3 * mp.mpf("0.044715") * v ** 2)

    f = {"sigmoid": (sig, lambda v: sig(v) * sig(-v)),
         "tanh": (mp.tanh, lambda v: 1 / mp.cosh(v) ** 2),
         "silu": (lambda v: v * sig(v), lambda v: sig(v) * (1 + v * sig(-v))),
         "gelu": (lambda v: v * mp.ncdf(v), lambda v: mp.ncdf(v) + v * mp.npdf(v)),
         "gelu_tanh": (lambda v: v * sig(w2(v)),
                       lambda v: sig(w2(v)) * (1 + v * sig(-w2(v)) * dw2(v)))}[name][derivative]
    return np.array([float(f(mp.mpf(float(v)))) if np.isfinite(v) else np.nan for v in x])


@native
@pytest.mark.parametrize("name", SMOOTH)
def test_float64_accuracy(isa, name, rng):
    x = accuracy_inputs(rng, np.float64)[::20]
    x = x[np.isfinite(x)]
    fwd_ulps, bwd_ulps = ULP_BOUND[name]
    want = mp_truth(name, x, 0)
    assert_within(run("native", forward, name, x), want,
                  allowed_error(name, x, want, np.float64, fwd_ulps, False), f"{name} forward")
    want = mp_truth(name, x, 1)
    assert_within(run("native", ops.activation_backward, np.ones_like(x), x, name), want,
                  allowed_error(name, x, want, np.float64, bwd_ulps, True), f"{name} backward")


@native
def test_special_values(isa, dtype):
    """NaN propagates; +-inf and +-0 give the limits; relu(-0) keeps its sign like torch."""
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    nan, inf = np.nan, np.inf
    expected = {"relu": [nan, inf, 0, 0, -0.0], "leaky_relu": [nan, inf, -inf, 0, -0.0],
                "sigmoid": [nan, 1, 0, 0.5, 0.5], "tanh": [nan, 1, -1, 0, -0.0],
                "silu": [nan, inf, 0, 0, -0.0], "gelu": [nan, inf, 0, 0, -0.0],
                "gelu_tanh": [nan, inf, 0, 0, -0.0]}
    grads = {"relu": [1, 1, 0, 0, 0], "leaky_relu": [SLOPE, 1, SLOPE, SLOPE, SLOPE],
             "sigmoid": [nan, 0, 0, 0.25, 0.25], "tanh": [nan, 0, 0, 1, 1],
             "silu": [nan, 1, 0, 0.5, 0.5], "gelu": [nan, 1, 0, 0.5, 0.5],
             "gelu_tanh": [nan, 1, 0, 0.5, 0.5]}
    for backend in ("native", "numpy"):
        for name, want in expected.items():
            y = run(backend, forward, name, x)
            np.testing.assert_array_equal(y, np.array(want, dtype), err_msg=f"{backend} {name}")
            assert list(np.signbit(y[3:])) == list(np.signbit(np.array(want[3:]))), name
            dx = run(backend, ops.activation_backward, np.ones_like(x), x, name,
                     negative_slope=SLOPE)
            np.testing.assert_allclose(dx, np.array(grads[name], dtype), rtol=1e-6,
                                       err_msg=f"{backend} {name}'")


# ---- the reference's gradients -------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS)
def test_reference_backward_matches_finite_differences(name, rng):
    x = rng.standard_normal(400) * 3
    x = x[np.abs(x) > 1e-3]  # away from the kinks of relu and leaky_relu
    dy = rng.standard_normal(x.size)
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    with pynn.use_backend("numpy"):
        numeric = dy * (forward(name, x + h) - forward(name, x - h)) / (2 * h)
        np.testing.assert_allclose(ops.activation_backward(dy, x, name, negative_slope=SLOPE),
                                   numeric, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(backward(name, dy, x), numeric, rtol=1e-6, atol=1e-8)


# ---- threads, layout, in place -----------------------------------------------------------

@native
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_identical_at_one_and_two_threads(dtype, name, rng):
    x = (rng.standard_normal(200_003) * 5).astype(dtype)
    dy = rng.standard_normal(x.size).astype(dtype)
    results = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        results.append((run("native", forward, name, x),
                        run("native", ops.activation_backward, dy, x, name),
                        run("native", backward, name, dy, x)))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


@native
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_element_does_not_depend_on_length_or_offset(isa, dtype, name, rng):
    """An element goes through the same arithmetic wherever it falls: in a full vector or
    in the last, partial one, at any alignment of the array."""
    x = (rng.standard_normal(100) * 5).astype(dtype)
    dy = rng.standard_normal(x.size).astype(dtype)
    y = run("native", forward, name, x)
    dx = run("native", ops.activation_backward, dy, x, name, negative_slope=SLOPE)
    for lo, hi in ((0, 1), (0, 15), (0, 17), (1, 34), (3, 100), (17, 31), (99, 100)):
        assert run("native", forward, name, x[lo:hi]).tobytes() == y[lo:hi].tobytes()
        part = run("native", ops.activation_backward, dy[lo:hi], x[lo:hi], name,
                   negative_slope=SLOPE)
        assert part.tobytes() == dx[lo:hi].tobytes()


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_non_contiguous_and_nd(backend, dtype, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    base = (rng.standard_normal((37, 21)) * 3).astype(dtype)
    for x in (base.T, base[::2, 1::3], base[:, ::-1]):
        dy = np.ones(x.shape, dtype)
        for name in ACTIVATIONS:
            y = run(backend, forward, name, x)
            assert y.shape == x.shape and y.flags.c_contiguous
            np.testing.assert_array_equal(y, run(backend, forward, name, np.ascontiguousarray(x)))
            dx = run(backend, backward, name, dy[::-1], x)
            np.testing.assert_array_equal(
                dx, run(backend, backward, name, np.ascontiguousarray(dy[::-1]),
                        np.ascontiguousarray(x)))


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_out_and_in_place(backend, dtype, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    x = (rng.standard_normal((5, 33)) * 3).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for name in ACTIVATIONS:
        want = run(backend, forward, name, x)
        x_copy = x.copy()
        assert run(backend, forward, name, x_copy, out=x_copy) is x_copy
        np.testing.assert_array_equal(x_copy, want)
        out = np.empty(x.shape, np.float64)  # a wider dtype: computed in x's, then cast
        assert run(backend, forward, name, x, out=out) is out
        np.testing.assert_array_equal(out, want.astype(np.float64))
        strided = np.empty((5, 66), dtype)[:, ::2]
        run(backend, forward, name, x, out=strided)
        np.testing.assert_array_equal(strided, want)

        want = run(backend, ops.activation_backward, dy, x, name)
        dy_copy = dy.copy()
        assert run(backend, ops.activation_backward, dy_copy, x, name, out=dy_copy) is dy_copy
        np.testing.assert_array_equal(dy_copy, want)
    y = run(backend, ops.sigmoid, x)
    want = run(backend, ops.sigmoid_backward, dy, y)
    assert run(backend, ops.sigmoid_backward, dy, y, out=y) is y
    np.testing.assert_array_equal(y, want)


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal(100).astype(np.float32)
    dy = rng.standard_normal(100).astype(np.float32)
    x0, dy0 = x.copy(), dy.copy()
    for name in ACTIVATIONS:
        forward(name, x)
        backward(name, dy, x)
        ops.activation_backward(dy, x, name)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


# ---- dtypes other than float32/float64 --------------------------------------------------------

def test_other_dtypes_follow_numpy():
    ints = np.array([-3, -1, 0, 2, 5], np.int64)
    np.testing.assert_array_equal(ops.relu(ints), np.maximum(ints, 0))
    assert ops.relu(ints).dtype == np.int64
    assert ops.relu(ints.astype(np.int8)).dtype == np.int8
    assert ops.relu_backward(ints, ints).dtype == np.int64
    np.testing.assert_array_equal(ops.relu_backward(ints, ints), [0, 0, 0, 2, 5])
    leaky = ops.leaky_relu(ints, 0.5)
    assert leaky.dtype == np.float64
    np.testing.assert_array_equal(leaky, [-1.5, -0.5, 0, 2, 5])
    # the float dtype NumPy's ufuncs pick: np.tanh(int64) is float64, np.tanh(int8) float16
    assert ops.sigmoid(ints).dtype == np.float64
    np.testing.assert_allclose(ops.sigmoid(ints), 1 / (1 + np.exp(-ints.astype(float))),
                               rtol=1e-15)
    assert ops.tanh(ints.astype(np.int8)).dtype == np.float16
    assert ops.gelu(np.array([True, False])).dtype == np.float16
    assert ops.silu([1, 2]).dtype == np.float64  # array-likes
    half = np.array([-2.0, 0.5, 3.0], np.float16)
    y = ops.gelu(half)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, ops.gelu(half.astype(np.float32)).astype(np.float16))
    assert ops.sigmoid(np.float64(0.0)).shape == ()  # 0-d
    mixed = ops.silu_backward(np.ones(3, np.float32), np.zeros(3, np.float64))
    assert mixed.dtype == np.float64


# ---- bad input --------------------------------------------------------------------------

def test_bad_input():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="dy has shape"):
        ops.relu_backward(np.zeros((4, 3), np.float32), x)
    with pytest.raises(ValueError, match="dy has shape"):
        ops.sigmoid_backward(np.zeros(12, np.float32), x)
    with pytest.raises(ValueError, match="dy has shape"):
        ops.activation_backward(np.zeros((3, 1)), x, "gelu")  # no broadcasting
    read_only = np.zeros_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.tanh(x, out=read_only)
    with pytest.raises(ValueError, match="shape"):
        ops.silu(x, out=np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ops.gelu(x, out=np.zeros((3, 4), np.int32))
    big = np.zeros(20, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        ops.relu(big[:12], out=big[4:16])
    with pytest.raises(ValueError, match="activation"):
        ops.activation(x, "swish")
    with pytest.raises(ValueError, match="activation"):
        ops.activation_backward(x, x, "softmax")
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu_backward(x, x, approximate=None)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.leaky_relu(x, negative_slope=math.nan)
    with pytest.raises(TypeError, match="negative_slope"):
        ops.leaky_relu_backward(x, x, negative_slope="0.1")
    with pytest.raises(TypeError, match="x must be real"):
        ops.sigmoid(np.zeros(3, np.complex64))
    with pytest.raises(TypeError, match="x"):
        ops.relu(["a", "b"])
    with pytest.raises(TypeError, match="out"):
        ops.relu(x, out=[0.0] * 12)


@pytest.mark.parametrize("module", [pytest.param("native", marks=native), "numpy"])
def test_kernel_level_checks(module):
    kernels = _native if module == "native" else reference
    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="activation code"):
        kernels.act_forward(np.empty_like(x), x, 99, 0.0)
    with pytest.raises(ValueError, match="activation code"):
        kernels.act_backward(np.empty_like(x), x, x, -1, 0.0)
    with pytest.raises(ValueError, match="not sigmoid or tanh"):
        kernels.act_backward_output(np.empty_like(x), x, x, ACTIVATIONS.index("relu"))
    if module == "native":
        with pytest.raises(ValueError, match="elements"):
            kernels.act_forward(np.empty(7, np.float32), x, 1, 0.0)
        with pytest.raises(ValueError, match="Buffer dtype mismatch"):
            kernels.act_forward(np.empty(8, np.float64), x, 1, 0.0)


# ---- PyTorch -------------------------------------------------------------------------------

def test_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed; it is only a cross-check")
    F = torch.nn.functional
    aten = torch.ops.aten
    x = (rng.standard_normal(3000) * 3).astype(dtype)
    x[:5] = [0.0, -0.0, 1e-3, -1e-3, 7.5]
    dy = rng.standard_normal(x.size).astype(dtype)
    # torch in float64 (its float32 GELU cancels in 1 + erf(x) for x < 0)
    xt, dyt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(dy.astype(np.float64))
    cases = {
        "relu": (torch.relu, lambda: aten.threshold_backward(dyt, xt, 0)),
        "leaky_relu": (lambda t: F.leaky_relu(t, SLOPE),
                       lambda: aten.leaky_relu_backward(dyt, xt, SLOPE, False)),
        "sigmoid": (torch.sigmoid, None),
        "tanh": (torch.tanh, None),
        "silu": (F.silu, lambda: aten.silu_backward(dyt, xt)),
        "gelu": (F.gelu, lambda: aten.gelu_backward(dyt, xt)),
        "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"),
                      lambda: aten.gelu_backward(dyt, xt, approximate="tanh")),
    }
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)
    for name, (fwd, bwd) in cases.items():
        np.testing.assert_allclose(forward(name, x), fwd(xt).numpy(), **tol, err_msg=name)
        if bwd is not None:
            np.testing.assert_allclose(backward(name, dy, x), bwd().numpy(), **tol, err_msg=name)
    # from the output: the same y for both (1 - y^2 amplifies any difference in y)
    for fwd, bwd, ours in ((torch.sigmoid, aten.sigmoid_backward, ops.sigmoid_backward),
                           (torch.tanh, aten.tanh_backward, ops.tanh_backward)):
        y = fwd(torch.from_numpy(x)).to(torch.float64)
        np.testing.assert_allclose(ours(dy, y.numpy().astype(dtype)), bwd(dyt, y).numpy(), **tol)
