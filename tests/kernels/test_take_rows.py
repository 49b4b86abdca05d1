"""take_rows, the gather of a shuffled mini-batch: the native kernel writes the rows
x[idx] as the NumPy reference does (any dtype, row shape, negative and repeated indices,
either side of the parallel threshold, any thread count), refuses bad input with the
reference's exceptions before writing anything, and is what BatchIterator's shuffled
batches come from."""
import numpy as np
import pytest

import pynn
from pynn import _native
from pynn.backends.numpy import data as reference
from pynn.data import BatchIterator

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")
BACKENDS = [reference, pytest.param(_native, marks=native)]


@pytest.mark.parametrize("module", BACKENDS, ids=["numpy", "native"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8, np.bool_,
                                   np.complex64])
@pytest.mark.parametrize("rows, row_shape, count", [
    (1, (), 1), (7, (3,), 5), (5, (2, 3), 0), (1000, (784,), 128),  # 128 rows: two threads
    (3000, (5,), 2999), (4, (0,), 3)])
def test_take_rows_writes_the_indexed_rows(module, dtype, rows, row_shape, count, rng):
    x = (rng.standard_normal((rows,) + row_shape) * 50).astype(dtype)
    idx = rng.integers(-rows, rows, size=count)  # negatives and repeats
    out = np.full((count,) + row_shape, 7, dtype)
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        out[...] = 7
        module.take_rows(out, x, idx)
        np.testing.assert_array_equal(out, x[idx])


def _bad_calls(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    good = np.array([0, 3, -1])
    out = np.zeros((3, 4), np.float32)
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    return [
        (IndexError, "index 10 is out of bounds", (out, x, np.array([1, 10, 2]))),
        (IndexError, "index -11 is out of bounds", (out, x, np.array([-11, 0, 1]))),
        (TypeError, "indices must be integers", (out, x, np.array([0.0, 1.0, 2.0]))),
        (ValueError, "idx must be 1-D", (out, x, good.reshape(3, 1))),
        (ValueError, "out has shape", (np.zeros((2, 4), np.float32), x, good)),
        (TypeError, "share a dtype", (np.zeros((3, 4), np.float64), x, good)),
        (TypeError, "without objects", (np.zeros((3, 4), object), x.astype(object), good)),
        (ValueError, "C-contiguous", (np.zeros((3, 2), np.float32), x[:, ::2], good)),
        (ValueError, "read-only", (ro, x, good)),
        (ValueError, "overlaps x", (x[4:7], x, good)),
        (TypeError, "NumPy arrays", ([[0] * 4] * 3, x, good)),
    ]


@pytest.mark.parametrize("module", BACKENDS, ids=["numpy", "native"])
def test_take_rows_refuses_bad_input_before_writing(module, rng):
    for exc, match, (out, x, idx) in _bad_calls(rng):
        before = np.array(out, copy=True)
        x_before = np.array(x, copy=True)
        with pytest.raises(exc, match=match):
            module.take_rows(out, x, idx)
        np.testing.assert_array_equal(np.asarray(out), before)
        np.testing.assert_array_equal(x, x_before)


@native
def test_take_rows_accepts_other_index_arrays_as_the_reference_does(rng):
    x = rng.standard_normal((20, 3))
    for idx in (np.array([3, -2, 5], np.int32), np.arange(12)[::4], [1, 2, 19],
                np.array([], np.int64)):
        want = x[np.asarray(idx, np.int64)]
        for module in (reference, _native):
            out = np.empty_like(want)
            module.take_rows(out, x, idx)
            np.testing.assert_array_equal(out, want)


def test_shuffled_batches_are_the_rows_of_the_order(backend, rng):
    X = rng.standard_normal((1000, 784)).astype(np.float32)
    y = np.arange(1000)
    seen = []
    for xb, yb in BatchIterator(X, y, batch_size=300, shuffle=True, seed=3):
        np.testing.assert_array_equal(xb, X[yb])  # each sample's features with its label
        assert xb.flags.c_contiguous and xb.dtype == X.dtype
        seen.append(yb)
    order = np.concatenate(seen)
    np.testing.assert_array_equal(order, np.random.default_rng(3).permutation(1000))
