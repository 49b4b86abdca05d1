"""Dropout: the counter-based mask of the native kernels is bit for bit the NumPy
reference's (every ISA, both dtypes), independent of the thread count, keeps 1 - p of the
elements within a statistical bound, differs between seeds, and backward regenerates it.
Also the edge cases p = 0 and p = 1, other dtypes, `out=`, and bad input."""
import inspect

import numpy as np
import pytest

import pynn
from pynn import _native, ops
from pynn.backends.numpy import dropout as reference

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")
# around the vector widths (8 and 16 lanes) and the 32768-element parallel threshold
SIZES = [0, 1, 7, 15, 16, 17, 31, 33, 1000, 65537, 100003]


def run(backend, fn, *args, **kwargs):
    with pynn.use_backend(backend):
        return fn(*args, **kwargs)


@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        assert inspect.signature(getattr(_native, name)) == inspect.signature(getattr(reference, name))


def test_reference_mask_is_splitmix64():
    """The documented generator, spelled out with Python integers for a few elements."""
    mask64 = 2**64 - 1
    golden = 0x9E3779B97F4A7C15

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        return z ^ (z >> 31)

    seed, p = 2**63 + 12345, 0.3
    key = mix((seed + golden) & mask64)
    want = [mix((key + (i + 1) * golden) & mask64) >> 32 >= int(p * 2**32) for i in range(64)]
    np.testing.assert_array_equal(reference.keep_mask(64, p, seed), want)


@native
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.99])
def test_native_mask_equals_reference_bit_for_bit(isa, dtype, size, p, rng):
    x = rng.standard_normal(size).astype(dtype)
    seed = 987654321
    y = run("native", ops.dropout, x, p, seed=seed)
    assert y.dtype == dtype
    assert y.tobytes() == run("numpy", ops.dropout, x, p, seed=seed).tobytes()
    dx = run("native", ops.dropout_backward, x, p, seed=seed)
    assert dx.tobytes() == y.tobytes()
    assert dx.tobytes() == run("numpy", ops.dropout_backward, x, p, seed=seed).tobytes()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction_and_scale(p):
    n = 1 << 20
    mask = ops.dropout_mask(n, p, seed=7, dtype=np.float64)
    kept = mask != 0
    # binomial standard deviation sqrt(n p (1-p)) <= 512; 6 of them is a 1e-9 false alarm
    assert abs(kept.sum() - (1 - p) * n) < 6 * np.sqrt(n * p * (1 - p))
    np.testing.assert_array_equal(mask[kept], 1 / (1 - p))
    # no correlation between neighbours (a counter-based generator's weak spot)
    both = np.mean(kept[1:] & kept[:-1])
    assert abs(both - (1 - p) ** 2) < 6 * np.sqrt((1 - p) ** 2 / n) + 1e-3


def test_seeds_give_different_masks():
    masks = [ops.dropout_mask(4096, 0.5, seed=s) for s in (0, 1, 2, 2**63, 2**64 - 1)]
    for i in range(len(masks)):
        for j in range(i):
            agree = np.mean(masks[i] == masks[j])
            assert 0.4 < agree < 0.6
    np.testing.assert_array_equal(ops.dropout_mask(4096, 0.5, seed=1), masks[1])


@native
def test_same_bits_at_any_thread_count(isa, rng):
    x = rng.standard_normal((300, 1001)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        outs.append(ops.dropout(x, 0.3, seed=42).tobytes())
    assert outs[0] == outs[1]


def test_forward_is_x_times_mask_and_nan_propagates(dtype):
    x = np.array([1.0, np.nan, np.inf, -2.0, 0.5] * 20, dtype)
    mask = ops.dropout_mask(x.shape, 0.5, seed=3, dtype=dtype)
    y = ops.dropout(x, 0.5, seed=3)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(y, x * mask)
    dropped_inf = (mask == 0) & np.isinf(x)
    assert dropped_inf.any() and np.isnan(y[dropped_inf]).all()


def test_p_zero_copies_and_p_one_zeroes(dtype):
    x = np.arange(10, dtype=dtype)
    y = ops.dropout(x, 0.0, seed=1)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    np.testing.assert_array_equal(ops.dropout(x, 1.0, seed=1), 0)
    np.testing.assert_array_equal(ops.dropout_backward(x, 1, seed=1), 0)
    np.testing.assert_array_equal(ops.dropout_mask(4, 1.0, seed=1), 0)
    np.testing.assert_array_equal(ops.dropout_mask((2, 2), 0.0, seed=1), 1)


def test_shapes_layouts_and_out(rng):
    base = rng.standard_normal((6, 8)).astype(np.float32)
    x = base.T[::2]
    y = ops.dropout(x, 0.4, seed=5)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, ops.dropout(x.copy(), 0.4, seed=5))
    np.testing.assert_array_equal(y, x * ops.dropout_mask(x.shape, 0.4, seed=5))
    out = np.empty(x.shape, np.float64)
    assert ops.dropout(x, 0.4, seed=5, out=out) is out
    np.testing.assert_array_equal(out, y)
    inplace = base.copy()
    want = ops.dropout(base, 0.4, seed=6)
    assert ops.dropout(inplace, 0.4, seed=6, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, want)
    scalar = ops.dropout(np.float64(3.0), 0.5, seed=0)
    assert scalar.shape == ()


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal(100).astype(np.float32)
    copy = x.copy()
    ops.dropout(x, 0.5, seed=1)
    ops.dropout_backward(x, 0.5, seed=1)
    np.testing.assert_array_equal(x, copy)


def test_other_dtypes_get_numpy_arithmetic():
    x = np.arange(1, 101)
    keep = reference.keep_mask(100, 0.25, 11)
    y = ops.dropout(x, 0.25, seed=11)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, x * keep * (1 / 0.75))
    h = ops.dropout(x.astype(np.float16), 0.25, seed=11)
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, x.astype(np.float16) * keep * (1 / 0.75))
    m = ops.dropout_mask(100, 0.25, seed=11, dtype=np.float16)
    assert m.dtype == np.float16
    np.testing.assert_array_equal(m != 0, keep)


def test_bad_arguments():
    x = np.ones(5, np.float32)
    for p, exc in ((-0.1, ValueError), (1.5, ValueError), (np.nan, ValueError), ("0.5", TypeError),
                   (None, TypeError)):
        with pytest.raises(exc, match="p"):
            ops.dropout(x, p, seed=0)
    for seed, exc in ((-1, ValueError), (2**64, ValueError), (1.0, TypeError), (None, TypeError)):
        with pytest.raises(exc, match="seed"):
            ops.dropout(x, 0.5, seed=seed)
    with pytest.raises(TypeError):
        ops.dropout(x, 0.5)   # seed is required
    with pytest.raises(ValueError, match="out"):
        ops.dropout(x, 0.5, seed=0, out=np.empty(4, np.float32))
    with pytest.raises(TypeError, match="out"):
        ops.dropout(x, 0.5, seed=0, out=np.empty(5, np.int32))
    with pytest.raises(TypeError, match="numbers"):
        ops.dropout(np.array(["a"]), 0.5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        ops.dropout_mask((2, -1), 0.5, seed=0)
    with pytest.raises(TypeError, match="shape"):
        ops.dropout_mask(2.5, 0.5, seed=0)
    with pytest.raises(TypeError, match="dtype"):
        ops.dropout_mask(3, 0.5, seed=0, dtype=np.int32)


@native
def test_native_kernel_refuses_bad_arguments():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="argument out of range"):
        _native.dropout_forward(np.empty_like(x), x, 1.0, 0)
    with pytest.raises(ValueError, match="elements"):
        _native.dropout_backward(np.empty(3, np.float32), x, 0.5, 0)
    with pytest.raises(OverflowError):
        _native.dropout_forward(np.empty_like(x), x, 0.5, -1)
