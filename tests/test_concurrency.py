"""Kernels release the GIL; calls from several Python threads at once must stay correct."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pynn import ops


def _work(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 200)).astype(np.float32)
    w = rng.standard_normal((50, 200)).astype(np.float32)
    labels = rng.integers(0, 50, 96)
    y = ops.linear(x, w, activation="relu")
    loss, dlogits = ops.softmax_cross_entropy(y, labels)
    dx, dw, db = ops.linear_backward(dlogits, x, w)
    return [ops.sigmoid(x), y, np.float64(loss), dx, dw, db]


def test_concurrent_calls_give_the_serial_results():
    seeds = list(range(16))
    serial = [_work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(_work, seeds))
    for a, b in zip(serial, parallel):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
