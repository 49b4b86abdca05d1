"""GEMM, matmul and linear: the native kernels against the NumPy reference on every ISA path
(all transposes, shapes around the tiles and k blocks, strided leading dimensions, alpha and
beta, NaN in C with beta 0, the fused bias/activation/pre-activation, both dtypes), against
a float64 truth within the error bound of a k-term sum, bitwise determinism across thread
counts and batch sizes, np.matmul's semantics (broadcasting, 1-D operands, dtypes, out=,
errors), linear's backward (accumulation, finite differences of the reference), bad input,
and PyTorch."""
import inspect
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pynn
from pynn import _native, ops
from pynn.backends.numpy import gemm as reference
from pynn.ops._activations import ACTIVATIONS

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")

# (m, n, k) around the tiles (MR 4/6/12, NR 8/16/32) and the edge tiles the kernels
# special-case, k around the assembly loop's minimum (32) and unrolling (4), the k blocks
# (KC 192/256/384), several row blocks (MC 2688) and column blocks (NC 256/512), m < n for
# x @ w.T (computed transposed), the threading threshold, and empty dimensions; x @ w.T
# narrower than a vector (dot products: rows in blocks of 4, columns in groups of at most
# 5, k around the vector width 8/16).
SHAPES = [(1, 1, 1), (2, 3, 5), (3, 8, 4), (5, 17, 9), (6, 16, 2), (7, 31, 33), (11, 33, 64),
          (12, 32, 383), (13, 48, 384), (25, 65, 385), (9, 20, 193), (24, 7, 257),
          (30, 45, 769), (100, 130, 40), (36, 64, 31), (24, 96, 35), (2701, 131, 5),
          (9, 1100, 37), (0, 5, 3), (4, 0, 3), (4, 5, 0),
          (5, 10, 16), (9, 15, 17), (4, 7, 1), (3, 11, 8), (8, 6, 15), (1, 10, 256),
          (1030, 12, 41), (10, 256, 32), (10, 40, 100)]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


def run(backend, fn, *args, **kwargs):
    with pynn.use_backend(backend):
        return fn(*args, **kwargs)


def operand(rng, rows, cols, dtype, trans, pad=0):
    """A matrix op(x) (rows, cols) stored as gemm takes it: x itself, or its transpose when
    trans, as a view with `pad` unused elements at the end of each stored row."""
    shape = (cols, rows) if trans else (rows, cols)
    base = rng.standard_normal((shape[0], shape[1] + pad)).astype(dtype)
    return base[:, :shape[1]]


def op(x, trans):
    return x.T if trans else x


def sum_bound(a, b, trans_a, trans_b, dtype):
    """Bound on the rounding error of each element of op(a) @ op(b) summed in any order
    with (fused) multiply-adds: k eps sum_p |a_ip b_pj|, plus a little for the epilogue."""
    k = op(a, trans_a).shape[1]
    mag = np.abs(op(a, trans_a).astype(np.float64)) @ np.abs(op(b, trans_b).astype(np.float64))
    return (k + 4) * np.finfo(dtype).eps * mag


def truth(c0, a, b, trans_a, trans_b, alpha, beta, bias):
    z = alpha * (op(a, trans_a).astype(np.float64) @ op(b, trans_b).astype(np.float64))
    if beta != 0:
        z = z + beta * c0.astype(np.float64)
    if bias is not None:
        z = z + bias
    return z


# ---- the native module mirrors the reference ------------------------------------------------

@native
def test_native_signatures_match_reference():
    for name in reference.__all__:
        assert inspect.signature(getattr(_native, name)) == inspect.signature(
            getattr(reference, name))


@native
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_gemm_matches_truth_and_reference(isa, dtype, m, n, k, trans_a, trans_b, rng):
    a = operand(rng, m, k, dtype, trans_a, pad=3)
    b = operand(rng, k, n, dtype, trans_b, pad=1)
    bound = sum_bound(a, b, trans_a, trans_b, dtype)
    for alpha, beta in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)]:
        store = rng.standard_normal((m, n + 2)).astype(dtype)
        c0 = store[:, :n].copy()
        if beta == 0:
            store[:, :n] = np.nan
        before = store.copy()
        c = store[:, :n]
        want = truth(c0, a, b, trans_a, trans_b, alpha, beta, None)
        _native.gemm_fused(c, a, b, trans_a, trans_b, alpha, beta, None, 0, 0.0, None)
        assert not np.isnan(c).any()
        tol = abs(alpha) * bound + 4 * np.finfo(dtype).eps * (np.abs(want) + abs(beta * c0))
        np.testing.assert_array_less(np.abs(c - want), tol + np.finfo(dtype).tiny)
        np.testing.assert_array_equal(store[:, n:], before[:, n:])  # padding untouched
        ref = np.where(np.isnan(before[:, :n]), 0, c0).astype(dtype)
        reference.gemm_fused(ref, a, b, trans_a, trans_b, alpha, beta, None, 0, 0.0, None)
        np.testing.assert_array_less(np.abs(c - ref), 2 * tol + np.finfo(dtype).tiny)


def guarded(shape, dtype, rng, guard_after=True):
    """A random array whose memory ends right before (or starts right after) a page that
    may not be touched: a kernel reading past the operand crashes instead of passing."""
    mmap = pytest.importorskip("mmap")
    ctypes = pytest.importorskip("ctypes")
    page = mmap.PAGESIZE
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    pages = -(-nbytes // page) + 1
    buf = mmap.mmap(-1, pages * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    guard = base + (pages - 1) * page if guard_after else base
    if ctypes.CDLL(None).mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 0) != 0:
        pytest.skip("mprotect is not available")
    offset = (pages - 1) * page - nbytes if guard_after else page
    x = np.frombuffer(buf, dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
    x[...] = rng.standard_normal(shape)
    return x


@native
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs mmap and mprotect")
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_kernels_never_read_outside_the_operands(isa, dtype, trans_a, trans_b, rng):
    for m, n, k in [(1, 1, 1), (6, 8, 5), (7, 24, 3), (9, 17, 7), (13, 33, 2), (30, 45, 11),
                    (5, 10, 17), (3, 7, 9)]:
        for after in (True, False):
            a = guarded((k, m) if trans_a else (m, k), dtype, rng, after)
            b = guarded((n, k) if trans_b else (k, n), dtype, rng, after)
            c = np.empty((m, n), dtype)
            _native.gemm_fused(c, a, b, trans_a, trans_b, 1.0, 0.0, None, 0, 0.0, None)
            np.testing.assert_allclose(c, op(a, trans_a) @ op(b, trans_b), rtol=1e-4,
                                       atol=1e-4)


@native
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("m,n,k", [(1, 3, 2), (13, 33, 40), (30, 70, 400), (9, 10, 40)])
def test_fused_epilogue_matches_reference(isa, dtype, name, m, n, k, rng):
    code = ACTIVATIONS.index(name)
    a = operand(rng, m, k, dtype, False)
    b = operand(rng, k, n, dtype, True)
    bias = rng.standard_normal(n).astype(dtype)
    c, z = np.full((m, n), np.nan, dtype), np.empty((m, n), dtype)
    _native.gemm_fused(c, a, b, False, True, 1.0, 0.0, bias, code, 0.2, z)
    c_ref, z_ref = np.empty((m, n), dtype), np.empty((m, n), dtype)
    reference.gemm_fused(c_ref, a, b, False, True, 1.0, 0.0, bias, code, 0.2, z_ref)
    tol = sum_bound(a, b, False, True, dtype) + 4 * np.finfo(dtype).eps * np.abs(bias)
    np.testing.assert_array_less(np.abs(z - z_ref), 2 * tol + np.finfo(dtype).tiny)
    # the activation is the element-wise kernel's, applied to exactly the pre-activation
    np.testing.assert_array_equal(c, ops.activation(z, name, negative_slope=0.2))


@native
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_batched_gemm_matches_reference(isa, dtype, trans_a, trans_b, rng):
    batch, m, n, k = 5, 13, 35, 70
    for shared_a, shared_b in [(False, False), (True, False), (False, True)]:
        a = rng.standard_normal((1 if shared_a else batch,) + ((k, m) if trans_a else (m, k)))
        b = rng.standard_normal((1 if shared_b else batch,) + ((n, k) if trans_b else (k, n)))
        a, b = a.astype(dtype), b.astype(dtype)
        c = rng.standard_normal((batch, m, n)).astype(dtype)
        c_ref = c.copy()
        _native.gemm_batched(c, a, b, trans_a, trans_b, 0.5, 1.0)
        reference.gemm_batched(c_ref, a, b, trans_a, trans_b, 0.5, 1.0)
        np.testing.assert_allclose(c, c_ref, rtol=0, atol=300 * np.finfo(dtype).eps * k)
        whole = np.zeros((batch, m, n), dtype)
        _native.gemm_batched(whole, a, b, trans_a, trans_b, 0.5, 0.0)
        for e in range(batch):  # each entry has the bits of the 2-D GEMM
            single = np.empty((m, n), dtype)
            _native.gemm_fused(single, a[0 if shared_a else e], b[0 if shared_b else e],
                               trans_a, trans_b, 0.5, 0.0, None, 0, 0.0, None)
            np.testing.assert_array_equal(whole[e], single)


@native
@pytest.mark.parametrize("m,n", [(0, 5), (1, 1), (7, 33), (300, 1100)])
def test_colsum_matches_reference(isa, dtype, m, n, rng):
    store = rng.standard_normal((m, n + 5)).astype(dtype)
    dy = store[:, :n]
    # the error bound of a sum of m + 1 terms, in any order
    bound = (m + 1) * np.finfo(dtype).eps * (np.abs(dy).sum(axis=0) + 1)
    for accumulate in (False, True):
        db, db_ref = np.ones(n, dtype), np.ones(n, dtype)
        _native.gemm_colsum(db, dy, accumulate)
        reference.gemm_colsum(db_ref, dy, accumulate)
        np.testing.assert_array_less(np.abs(db - db_ref.astype(np.float64)), 2 * bound + 1e-300)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=native)])
def test_long_column_sums_stay_accurate(backend):
    """The bias gradient of a float32 batch of many rows: a single float sum down each
    column was 6% off for 2^23 rows of 0.1 (every 0.1 rounded to the sum's spacing) and 8e-6
    for 60,000 random rows; the sums of pieces of rows now add up in double."""
    n = 2**23 + 3
    dy = np.full((n, 2), 0.1, np.float32)
    with pynn.use_backend(backend):
        db = ops.linear_backward(dy, np.ones((n, 1), np.float32), np.ones((2, 1), np.float32))[2]
    np.testing.assert_allclose(db, np.float64(np.float32(0.1)) * n, rtol=1e-6)
    rng = np.random.default_rng(0)
    dy = rng.random((60000, 40)).astype(np.float32)
    db = np.zeros(40, np.float32)
    with pynn.use_backend(backend):
        ops.linear_backward(dy, np.ones((60000, 1), np.float32), np.ones((40, 1), np.float32),
                            db=db, dw=np.zeros((40, 1), np.float32))
    np.testing.assert_allclose(db, dy.sum(axis=0, dtype=np.float64), rtol=5e-7)


@native
@pytest.mark.parametrize("name", ["none", "relu", "leaky_relu", "tanh", "gelu"])
@pytest.mark.parametrize("m,n,k", [(0, 3, 2), (1, 3, 2), (13, 33, 40), (64, 70, 300)])
def test_linear_backward_is_its_parts(isa, dtype, name, m, n, k, rng):
    """The one-call backward is, bit for bit, the native kernels it stands for: the
    activation backward, then dx = dz @ w, dw (+)= dz.T @ x and db (+)= colsum(dz); and it
    agrees with the reference. Every optional output, and dz written over dy."""
    code = ACTIVATIONS.index(name)
    dy = rng.standard_normal((m, n)).astype(dtype)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    z = rng.standard_normal((m, n)).astype(dtype) if code else None
    dz = np.empty((m, n), dtype)
    if code:
        _native.act_backward(dz.reshape(-1), dy.reshape(-1), z.reshape(-1), code, 0.2)
    else:
        dz[...] = dy
    dx_want = np.empty((m, k), dtype)
    _native.gemm_fused(dx_want, dz, w, False, False, 1.0, 0.0, None, 0, 0.0, None)
    for accumulate, with_dx, with_db, in_place in [(False, True, True, False),
                                                  (True, False, True, False),
                                                  (False, True, False, True)]:
        dw0 = rng.standard_normal((n, k)).astype(dtype)
        db0 = rng.standard_normal(n).astype(dtype)
        dw_want, db_want = dw0.copy(), db0.copy()
        _native.gemm_fused(dw_want, dz, x, True, False, 1.0, float(accumulate), None, 0, 0.0,
                           None)
        _native.gemm_colsum(db_want, dz, accumulate)
        outs = {}
        for impl in (_native, reference):
            dx = np.full((m, k), np.nan, dtype) if with_dx else None
            dw, db = dw0.copy(), db0.copy() if with_db else None
            g = dy.copy()
            scratch = (g if in_place else np.empty((m, n), dtype)) if code else None
            impl.linear_backward(dx, dw, db, scratch, g, x, w, z, code, 0.2, accumulate)
            outs[impl] = (dx, dw, db)
        dx, dw, db = outs[_native]
        if with_dx:
            np.testing.assert_array_equal(dx, dx_want)
        np.testing.assert_array_equal(dw, dw_want)
        if with_db:
            np.testing.assert_array_equal(db, db_want)
        for got, want in zip(outs[_native], outs[reference]):
            if got is not None:
                np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                           atol=(1e-3 if dtype == np.float32 else 1e-10) * (m + 1))


def _stack_case(rng, dtype, sizes, m, codes, with_bias, transposed):
    """Input, weights and biases of a stack of linear layers; `transposed` stores x and the
    even layers' weights column-major (views of transposes), as the GEMM takes them."""
    def matrix(rows, cols, t):
        a = rng.standard_normal((cols, rows) if t else (rows, cols)).astype(dtype)
        return a.T if t else a
    x = matrix(m, sizes[0], transposed)
    ws = [matrix(o, i, transposed and j % 2 == 0) * dtype.type(0.3)
          for j, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    bs = [rng.standard_normal(o).astype(dtype) if b else None
          for o, b in zip(sizes[1:], with_bias)]
    return x, ws, bs, list(codes), [0.2] * len(codes)


def _stored(a):
    """(s, t): a as the kernels take it, a == s.T when t."""
    return (a, False) if a.flags.c_contiguous else (a.T, True)


@pytest.mark.parametrize("impl", [pytest.param(_native, marks=native), reference],
                         ids=["native", "reference"])
@pytest.mark.parametrize("sizes,m,codes,with_bias,transposed", [
    ((7, 5), 3, (0,), (True,), False),
    ((37, 50, 20, 10), 33, (1, 6, 0), (True, False, True), False),
    ((16, 31, 9, 4, 12), 65, (2, 3, 4, 5), (False, True, True, False), True),
    ((784, 64, 10), 1, (7, 1), (True, True), True)])
def test_linear_stack_is_its_layers(impl, dtype, sizes, m, codes, with_bias, transposed, rng):
    """linear_stack_forward and linear_stack_backward are, bit for bit, the same backend's
    per-layer calls (gemm_fused forward; linear_backward, last layer first): new or
    accumulated gradients, frozen ones skipped (False), dx or not. A ReLU layer below the
    last keeps its output instead of its pre-activation; backward from it is compared
    with the per-layer calls on the true pre-activation."""
    x, ws, bs, codes, slopes = _stack_case(rng, dtype, sizes, m, codes, with_bias, transposed)
    ys, zs = impl.linear_stack_forward(x, ws, bs, codes, slopes, True)
    cur, xs, preacts = x, [x], []
    for j, (w, b, code, slope) in enumerate(zip(ws, bs, codes, slopes)):
        y = np.empty((m, w.shape[0]), dtype)
        z = np.empty_like(y) if code else None
        (sx, tx), (sw, tw) = _stored(cur), _stored(w)
        impl.gemm_fused(y, sx, sw, tx, not tw, 1.0, 0.0, b, code, slope, z)
        np.testing.assert_array_equal(ys[j], y)
        assert (zs[j] is None) == (code == 0)
        if code == 1 and j < len(ws) - 1:
            assert zs[j] is ys[j]
        elif code:
            np.testing.assert_array_equal(zs[j], z)
        cur = y
        xs.append(y)
        preacts.append(z)
    xs.pop()
    ys2, zs2 = impl.linear_stack_forward(x, ws, bs, codes, slopes, False)
    assert all(z is None for z in zs2)
    np.testing.assert_array_equal(ys2[-1], ys[-1])

    dy = rng.standard_normal(ys[-1].shape).astype(dtype)
    count = len(ws)
    given_w = [rng.standard_normal(w.shape).astype(dtype) for w in ws]
    given_b = [rng.standard_normal(w.shape[0]).astype(dtype) for w in ws]
    for pattern in range(3):
        # 0: all new; 1: all accumulated into; 2: mixed, with frozen weights and biases
        dws = [None if pattern == 0 or (pattern == 2 and j % 2) else
               (False if pattern == 2 and j == 0 else given_w[j].copy()) for j in range(count)]
        dbs = [False if bs[j] is None or (pattern == 2 and j == count - 1) else
               (None if pattern == 0 else given_b[j].copy()) for j in range(count)]
        before_w = [d if d is None or d is False else d.copy() for d in dws]
        before_b = [d if d is None or d is False else d.copy() for d in dbs]
        input_grad = pattern != 1
        dx, gws, gbs = impl.linear_stack_backward(dy, xs, ws, zs, codes, slopes, dws, dbs,
                                                  input_grad)
        g = dy
        for j in range(count - 1, -1, -1):
            # linear_backward's parts (a test above checks that it is them), on operands
            # as stored
            dz = g
            if codes[j]:
                dz = np.empty_like(g)
                impl.act_backward(dz.reshape(-1), g.reshape(-1), preacts[j].reshape(-1),
                                  codes[j], slopes[j])
            (sx, tx), (sw, tw) = _stored(xs[j]), _stored(ws[j])
            want_dx = None
            if j or input_grad:
                want_dx = np.empty(xs[j].shape, dtype)
                impl.gemm_fused(want_dx, dz, sw, False, tw, 1.0, 0.0, None, 0, 0.0, None)
            if before_w[j] is False:
                assert gws[j] is None
            else:
                add = before_w[j] is not None
                want = before_w[j].copy() if add else np.full(ws[j].shape, np.nan, dtype)
                impl.gemm_fused(want, dz, sx, True, tx, 1.0, float(add), None, 0, 0.0, None)
                np.testing.assert_array_equal(gws[j], want)
                assert (gws[j] is dws[j]) == add
            if before_b[j] is False:
                assert gbs[j] is None
            else:
                add = before_b[j] is not None
                want = before_b[j].copy() if add else np.full(ws[j].shape[0], np.nan, dtype)
                impl.gemm_colsum(want, dz, add)
                np.testing.assert_array_equal(gbs[j], want)
                assert (gbs[j] is dbs[j]) == add
            g = want_dx
        if input_grad:
            np.testing.assert_array_equal(dx, g)
        else:
            assert dx is None


@native
def test_linear_stack_native_matches_reference(dtype, rng):
    x, ws, bs, codes, slopes = _stack_case(rng, dtype, (20, 30, 12, 5), 17, (1, 5, 0),
                                           (True, False, True), True)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    out = {}
    for impl in (_native, reference):
        ys, zs = impl.linear_stack_forward(x, ws, bs, codes, slopes, True)
        dy = np.linspace(-1, 1, ys[-1].size).reshape(ys[-1].shape).astype(dtype)
        out[impl] = ys + [z for z in zs if z is not None] + [
            a for part in impl.linear_stack_backward(dy, [x] + ys[:-1], ws, zs, codes, slopes,
                                                     [None] * 3, [None, False, None], True)
            for a in (part if isinstance(part, list) else [part]) if a is not None]
    assert len(out[_native]) == len(out[reference])
    for got, want in zip(out[_native], out[reference]):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("impl", [pytest.param(_native, marks=native), reference],
                         ids=["native", "reference"])
def test_linear_stack_refuses_what_it_does_not_take(impl, rng):
    """None, with nothing computed or written, for anything the stack calls do not take
    (the layers then run one by one); an unknown activation code is an error."""
    f = np.float32
    x, ws, bs, codes, slopes = _stack_case(rng, np.dtype(f), (6, 5, 4), 3, (1, 0),
                                           (True, True), False)
    fwd = impl.linear_stack_forward
    assert fwd(x, ws, bs, codes, slopes, True) is not None
    for args in [(x.astype(np.float64), ws, bs), (x.astype(f, order="C")[:, ::2], ws, bs),
                 (x[:0], ws, bs), (x[:, :5], ws, bs), (x, [], []), (x, ws, bs[:1]),
                 (x, tuple(ws), bs), (x, [ws[0], ws[1].astype(np.float64)], bs),
                 (x, [ws[0], ws[1][:, :3]], bs), (x, ws, [bs[0], bs[1][:3]]),
                 (x, ws, [bs[0], np.repeat(bs[1], 2)[::2]]), (x.tolist(), ws, bs),
                 (x.astype(">f4"), ws, bs), (np.matrix(x), ws, bs)]:
        assert fwd(*args, codes, slopes, True) is None
    assert fwd(x, ws, bs, codes, [0.2, float("inf")], True) is None
    with pytest.raises(ValueError, match="activation code"):
        fwd(x, ws, bs, [1, 99], slopes, True)

    ys, zs = fwd(x, ws, bs, codes, slopes, True)
    xs, dy = [x, ys[0]], np.ones_like(ys[1])
    bwd = impl.linear_stack_backward
    dw0, db0 = np.ones_like(ws[0]), np.ones_like(bs[0])
    ro = np.ones_like(ws[1])
    ro.flags.writeable = False
    for args in [dict(dy=dy.T.copy().T), dict(dy=dy.astype(np.float64)), dict(dy=dy[:2]),
                 dict(xs=[x]), dict(xs=[x[:2], ys[0][:2]]), dict(zs=[None, None]),
                 dict(dws=[ws[0], None]), dict(dws=[dw0, ro]), dict(dws=[dw0, ws[1].T]),
                 dict(dws=[dw0[:, :5], None]), dict(dbs=[db0, dy[0]]),
                 dict(dws=[dw0, ys[0][:, :0]]), dict(dbs=[db0, np.ones(4, np.float64)]),
                 dict(dws=[x[:, :0], None])]:
        call = dict(dy=dy, xs=xs, zs=zs, dws=[dw0, None], dbs=[db0, None])
        call.update(args)
        before = (dw0.copy(), db0.copy())
        assert bwd(call["dy"], call["xs"], ws, call["zs"], codes, slopes, call["dws"],
                   call["dbs"], True) is None, args
        np.testing.assert_array_equal(dw0, before[0])
        np.testing.assert_array_equal(db0, before[1])
    # a gradient inside an input array (here the weights) is refused, not written
    w_big = np.ones((10, 6), f)
    ws_view = [w_big[:5], ws[1]]
    assert bwd(dy, xs, ws_view, zs, codes, slopes, [w_big[5:], None], [None, None],
               True) is not None
    np.testing.assert_array_equal(w_big[:5], 1)
    before = w_big.copy()
    assert bwd(dy, xs, ws_view, zs, codes, slopes, [w_big[:5], None], [None, None],
               True) is None
    np.testing.assert_array_equal(w_big, before)


@native
def test_linear_backward_refuses_bad_arrays(rng):
    f = np.float32
    dy, x, w = np.ones((4, 3), f), np.ones((4, 5), f), np.ones((3, 5), f)
    dw, db, dx, dz, z = np.empty((3, 5), f), np.empty(3, f), np.empty((4, 5), f), \
        np.empty((4, 3), f), np.ones((4, 3), f)
    with pytest.raises(ValueError, match="w has matrices of shape"):
        _native.linear_backward(dx, dw, db, dz, dy, x, w.T.copy(), z, 1, 0.0, False)
    with pytest.raises(ValueError, match="same dtype"):
        _native.linear_backward(dx, dw.astype(np.float64), db, dz, dy, x, w, z, 1, 0.0, False)
    with pytest.raises(ValueError, match="unknown activation"):
        _native.linear_backward(dx, dw, db, dz, dy, x, w, z, 99, 0.0, False)
    with pytest.raises(ValueError, match="dz must be C-contiguous"):
        _native.linear_backward(dx, dw, db, np.empty((4, 6), f)[:, :3], dy, x, w, z, 1, 0.0,
                                False)
    with pytest.raises(ValueError, match="db has 4 elements"):
        _native.linear_backward(dx, dw, np.empty(4, f), dz, dy, x, w, z, 1, 0.0, False)


# ---- determinism ----------------------------------------------------------------------------

@native
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_same_bits_at_any_thread_count(isa, dtype, trans_a, trans_b, rng):
    m, n, k = 150, 230, 500  # well above the serial threshold, several k blocks
    a = operand(rng, m, k, dtype, trans_a)
    b = operand(rng, k, n, dtype, trans_b)
    bias = rng.standard_normal(n).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        pynn.set_num_threads(threads)
        c, z = np.empty((m, n), dtype), np.empty((m, n), dtype)
        _native.gemm_fused(c, a, b, trans_a, trans_b, 1.5, 0.0, bias, ACTIVATIONS.index("gelu"),
                           0.0, z)
        db = np.empty(n, dtype)
        _native.gemm_colsum(db, c, False)
        results.append((c, z, db))
    for c, z, db in results[1:]:
        np.testing.assert_array_equal(c, results[0][0])
        np.testing.assert_array_equal(z, results[0][1])
        np.testing.assert_array_equal(db, results[0][2])


@native
@pytest.mark.parametrize("m,n,k,trans_b", [(128, 256, 10, False), (10, 256, 32, False),
                                           (32, 784, 64, False), (20, 300, 40, True)])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_c_off_its_cache_lines_gives_the_same_bits(isa, dtype, m, n, k, trans_b, offset, rng):
    # C starting inside a 64-byte line, with rows that do not fill whole lines (ldc = n + 1):
    # the threads then split it differently (by rows, or columns moved to a line start);
    # the results must not change, nor anything around C be written
    a = operand(rng, m, k, dtype, False)
    b = operand(rng, k, n, dtype, trans_b)
    bias = rng.standard_normal(n).astype(dtype)
    expected = None
    for threads in (1, 2, 4):
        pynn.set_num_threads(threads)
        buf = np.full(m * (n + 1) + 64, 7.0, dtype)
        start = (-buf.ctypes.data // buf.itemsize) % (64 // buf.itemsize) + offset
        c = buf[start:start + m * (n + 1)].reshape(m, n + 1)[:, :n]
        _native.gemm_fused(c, a, b, False, trans_b, 1.0, 0.0, bias, ACTIVATIONS.index("relu"),
                           0.0, None)
        outside = np.ones(buf.shape, bool)
        outside[start:start + m * (n + 1)].reshape(m, n + 1)[:, :n] = False
        assert (buf[outside] == 7.0).all()
        if expected is None:
            expected = c.copy()
            want = np.maximum(a @ (b.T if trans_b else b) + bias, 0)
            np.testing.assert_allclose(c, want, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                       atol=1e-4 if dtype == np.float32 else 1e-10)
        else:
            np.testing.assert_array_equal(c, expected)


@native
@pytest.mark.parametrize("shape", [(128, 256), (512, 64), (1, 2)])
def test_native_results_start_on_a_cache_line(dtype, shape, rng):
    a = rng.standard_normal((shape[0], 7)).astype(dtype)
    b = rng.standard_normal((7, shape[1])).astype(dtype)
    c = _native.matmul_2d(a, b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)
    assert c.shape == shape and c.dtype == dtype and c.flags.c_contiguous
    assert c.flags.writeable
    if c.nbytes >= 65536:
        assert c.ctypes.data % 64 == 0


@native
@pytest.mark.parametrize("in_f,out_f", [(300, 70), (784, 512), (10, 3), (256, 10)])
def test_a_sample_gives_the_same_bits_in_any_batch(isa, dtype, in_f, out_f, rng):
    x = rng.standard_normal((130, in_f)).astype(dtype)
    w = rng.standard_normal((out_f, in_f)).astype(dtype)
    b = rng.standard_normal(out_f).astype(dtype)
    full = ops.linear(x, w, b, "tanh")
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        for rows in (slice(17, 18), slice(0, 5), slice(3, 60), slice(1, 130)):
            np.testing.assert_array_equal(ops.linear(x[rows], w, b, "tanh"), full[rows])
        np.testing.assert_array_equal(ops.linear(x[42], w, b, "tanh"), full[42])
        np.testing.assert_array_equal(ops.matmul(x[5:9], w.T), ops.matmul(x, w.T)[5:9])
        np.testing.assert_array_equal(ops.matmul(x[7], w.T), ops.matmul(x, w.T)[7])
        w_nn = np.ascontiguousarray(w.T)  # w read row by row: the product as dx = dy @ w
        np.testing.assert_array_equal(ops.matmul(x[5:9], w_nn), ops.matmul(x, w_nn)[5:9])
        np.testing.assert_array_equal(ops.matmul(x[7], w_nn), ops.matmul(x, w_nn)[7])


# ---- matmul: np.matmul's semantics --------------------------------------------------------

@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((3,), (3, 4)), ((5, 3), (3,)), ((5, 3), (3, 4)),
                                   ((2, 5, 3), (3, 4)), ((5, 3), (2, 3, 4)),
                                   ((2, 1, 5, 3), (1, 4, 3, 6)), ((4, 5, 3), (4, 3, 6)),
                                   ((3,), (2, 3, 4)), ((2, 5, 3), (3,)), ((0, 3), (3, 4)),
                                   ((5, 0), (0, 4)), ((2, 0, 5, 3), (3, 4)), ((2, 5, 3), (1, 3, 4)),
                                   ((2, 3, 5, 3), (1, 1, 3, 4)), ((3,), (1, 3, 4))])
def test_matmul_matches_numpy(backend, dtype, sa, sb, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    a0, b0 = a.copy(), b.copy()
    got = run(backend, ops.matmul, a, b)
    want = np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@native
def test_matmul_views_and_layouts(dtype, rng):
    base = rng.standard_normal((40, 60)).astype(dtype)
    other = rng.standard_normal((60, 50)).astype(dtype)
    views = [base, base[:, :30], base.T[:30], base[::2, ::3], base[::-1], other.T.copy().T]
    for x in views:
        y = other[: x.shape[1]] if x.shape[1] <= 60 else None
        np.testing.assert_allclose(ops.matmul(x, y), np.matmul(x, y), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ops.matmul(y.T, x.T), np.matmul(y.T, x.T), rtol=1e-4,
                                   atol=1e-4)
    stack = rng.standard_normal((3, 20, 30)).astype(dtype)
    for s in (stack, np.swapaxes(stack, 1, 2), stack[:, ::2], stack[::-1]):
        t = rng.standard_normal((s.shape[-1], 7)).astype(dtype)
        np.testing.assert_allclose(ops.matmul(s, t), np.matmul(s, t), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ops.matmul(np.swapaxes(s, 1, 2).T.T, s),
                                   np.matmul(np.swapaxes(s, 1, 2), s), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_matmul_2d_takes_two_float_matrices_and_nothing_else(backend, dtype, rng):
    """The backends' one-call product (ops.matmul's fast path): a new C-contiguous result
    for any layout the kernels read (rows or columns contiguous, padded, empty), None for
    what ops.matmul's general path must handle, and the operands untouched."""
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    kernels = _native if backend == "native" else reference
    base = rng.standard_normal((40, 60)).astype(dtype)
    other = rng.standard_normal((60, 50)).astype(dtype)
    for x in (base, base[:, :30], base.T[:30], base[5:6], base[:, :1], base[:0],
              np.asfortranarray(base), base[:, :0]):
        y = other[:x.shape[1]]
        for a, b in ((x, y), (y.T, x.T)):
            a0, b0 = a.copy(), b.copy()
            got = kernels.matmul_2d(a, b)
            assert got.shape == (a.shape[0], b.shape[1]) and got.dtype == dtype
            assert got.flags.c_contiguous
            np.testing.assert_allclose(got, np.matmul(a0, b0), rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(a, a0)
            np.testing.assert_array_equal(b, b0)
    other_dtype = np.float64 if dtype == np.float32 else np.float32
    refused = [(base[0], other), (base, other[:, 0]), (base[None], other),
               (base, other.astype(other_dtype)), (base.astype(np.float16), other),
               (base.astype(np.int64), other.astype(np.int64)),
               (base.astype(object), other.astype(object)), (base[:, :59], other),
               (base.view(np.matrix), other), (base.tolist(), other),
               (base.astype(base.dtype.newbyteorder()), other)]
    for a, b in refused:
        assert kernels.matmul_2d(a, b) is None
    # rows and columns both strided: native leaves the copy to the general path
    strided = base[::2, ::3]
    result = kernels.matmul_2d(strided, other[:20])
    if backend == "native":
        assert result is None
    else:
        np.testing.assert_allclose(result, strided @ other[:20], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.matmul(strided, other[:20]), strided @ other[:20],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ta,tb", [(np.int64, np.int64), (np.int32, np.float32),
                                   (np.bool_, np.bool_), (np.complex128, np.float64),
                                   (np.float16, np.float16), (np.float32, np.float64),
                                   (np.uint8, np.float16)])
def test_matmul_dtypes_are_numpys(ta, tb, rng):
    a = (rng.standard_normal((4, 5)) * 3).astype(ta)
    b = (rng.standard_normal((5, 3)) * 3).astype(tb)
    got, want = ops.matmul(a, b), np.matmul(a, b)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert ops.matmul([[1, 2]], [[3], [4]]).tolist() == [[11]]


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "numpy"])
def test_matmul_out(backend, dtype, rng):
    with pynn.use_backend(backend):
        _matmul_out(dtype, rng)


def _matmul_out(dtype, rng):
    a = rng.standard_normal((6, 4)).astype(dtype)
    b = rng.standard_normal((4, 5)).astype(dtype)
    out = np.empty((6, 5), dtype)
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5)
    np.testing.assert_array_equal(out, ops.matmul(a, b))  # the same kernel either way
    # rows further apart than their length, and columns contiguous instead (transposed)
    for view in (np.full((6, 8), 9, dtype)[:, 1:6], np.full((5, 6), 9, dtype).T):
        assert ops.matmul(a, b, out=view) is view
        np.testing.assert_array_equal(view, ops.matmul(a, b))
        if view.base.shape == (6, 8):
            np.testing.assert_array_equal(view.base[:, [0, 6, 7]], 9)
    # an out sharing memory with an operand is refused, not written
    buf = rng.standard_normal(64).astype(dtype)
    before = buf.copy()
    with pytest.raises(ValueError, match="overlaps"):
        ops.matmul(buf[:24].reshape(6, 4), b, out=buf[20:50].reshape(6, 5))
    with pytest.raises(ValueError, match="overlaps"):
        ops.matmul(a, buf[25:45].reshape(4, 5), out=buf[:30].reshape(6, 5))
    np.testing.assert_array_equal(buf, before)
    ops.matmul(buf[:24].reshape(6, 4), b, out=buf[24:54].reshape(6, 5))  # adjacent: fine
    np.testing.assert_allclose(buf[24:54].reshape(6, 5), before[:24].reshape(6, 4) @ b,
                               rtol=1e-5)
    wide = np.zeros((6, 5), np.float64)
    assert ops.matmul(a, b, out=wide) is wide
    np.testing.assert_allclose(wide, a @ b, rtol=1e-5)
    strided = np.zeros((6, 10), dtype)[:, ::2]
    ops.matmul(a, b, out=strided)
    np.testing.assert_allclose(strided, a @ b, rtol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        ops.matmul(a, b, out=np.empty((5, 6), dtype))
    with pytest.raises(TypeError):
        ops.matmul(a, b, out=np.empty((6, 5), np.int32))
    with pytest.raises(ValueError, match="overlaps"):
        square = rng.standard_normal((4, 4)).astype(dtype)
        ops.matmul(square, square.copy(), out=square)
    ro = np.empty((6, 5), dtype)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul(a, b, out=ro)


def test_matmul_errors():
    with pytest.raises(ValueError, match="mismatch in its core dimension"):
        ops.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="mismatch in its core dimension"):
        ops.matmul(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="enough dimensions"):
        ops.matmul(np.float64(2.0), np.ones(3))
    with pytest.raises(ValueError, match="broadcast"):
        ops.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(TypeError):
        ops.matmul(np.array(["a"]), np.ones(1))
    with pytest.raises(TypeError):
        ops.matmul([[1, 2], [3]], np.ones(2))


@native
@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 70), k=st.integers(0, 50),
       batch=st.sampled_from([(), (1,), (3,), (2, 2)]), trans=st.sampled_from(TRANSPOSES),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_matmul_random_shapes(m, n, k, batch, trans, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch + ((k, m) if trans[0] else (m, k))).astype(dtype)
    b = rng.standard_normal(batch + ((n, k) if trans[1] else (k, n))).astype(dtype)
    a = np.swapaxes(a, -1, -2) if trans[0] else a
    b = np.swapaxes(b, -1, -2) if trans[1] else b
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(ops.matmul(a, b), np.matmul(a, b), rtol=tol, atol=tol * (k + 1))


# ---- linear and its backward -----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("name", [None] + list(ACTIVATIONS))
def test_linear_matches_formula(backend, dtype, name, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    x = rng.standard_normal((2, 9, 37)).astype(dtype)
    w = rng.standard_normal((21, 37)).astype(dtype)
    b = rng.standard_normal(21).astype(dtype)
    y, z = run(backend, ops.linear, x, w, b, name, negative_slope=0.1, return_preact=True)
    assert y.shape == z.shape == (2, 9, 21) and y.dtype == z.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(z, x @ w.T + b, rtol=tol, atol=tol * 10)
    want = z if name in (None, "none") else ops.activation(z, name, negative_slope=0.1)
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    y_plain = run(backend, ops.linear, x, w, None, name, negative_slope=0.1)
    want = ops.activation(x @ w.T, name or "none", negative_slope=0.1)
    np.testing.assert_allclose(y_plain, want, rtol=tol, atol=tol * 10)


def test_linear_gelu_tanh_and_views(dtype, rng):
    x = rng.standard_normal((11, 16)).astype(dtype)
    w_t = rng.standard_normal((16, 5)).astype(dtype)  # w as a transposed view
    y = ops.linear(x, w_t.T, None, "gelu", approximate="tanh")
    np.testing.assert_allclose(y, ops.gelu(x @ w_t, approximate="tanh"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.linear(x[::2], w_t.T), x[::2] @ w_t, rtol=1e-5, atol=1e-5)
    assert ops.linear(x[0], w_t.T).shape == (5,)
    assert ops.linear(np.empty((0, 16), dtype), w_t.T).shape == (0, 5)
    out = np.empty((11, 5), dtype)
    assert ops.linear(x, w_t.T, out=out) is out


def test_linear_other_dtypes_are_numpys(rng):
    x = rng.integers(-5, 5, (4, 3))
    w = rng.integers(-5, 5, (2, 3))
    b = np.array([1, -2])
    np.testing.assert_array_equal(ops.linear(x, w, b, "relu"), np.maximum(x @ w.T + b, 0))
    assert ops.linear(x, w, b).dtype == np.int64
    h = ops.linear(x.astype(np.float16), w.astype(np.float16))
    assert h.dtype == np.float16


def test_linear_bad_arguments(rng):
    x, w = np.ones((4, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match="features"):
        ops.linear(x, np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        ops.linear(x, np.ones(3))
    with pytest.raises(ValueError, match="b must have shape"):
        ops.linear(x, w, np.ones(3))
    with pytest.raises(ValueError, match="activation"):
        ops.linear(x, w, None, "swish")
    with pytest.raises(ValueError, match="approximate"):
        ops.linear(x, w, None, "gelu", approximate="fast")
    with pytest.raises(ValueError, match="at least 1"):
        ops.linear(np.float64(1.0), w)
    with pytest.raises(ValueError, match="overlaps"):
        ops.linear(x, w, out=x[:, :2])
    with pytest.raises(TypeError):
        ops.linear(x, w, negative_slope="big")


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_linear_backward_matches_formulas(backend, dtype, rng):
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    x = rng.standard_normal((3, 7, 19)).astype(dtype)
    w = rng.standard_normal((13, 19)).astype(dtype)
    dy = rng.standard_normal((3, 7, 13)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    dx, dw, db = run(backend, ops.linear_backward, dy, x, w)
    dy2, x2 = dy.reshape(-1, 13), x.reshape(-1, 19)
    np.testing.assert_allclose(dx, dy @ w, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dw, dy2.T @ x2, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(db, dy2.sum(0), rtol=tol, atol=tol * 10)
    gw, gb = np.ones((13, 19), dtype), np.ones(13, dtype)
    none, gw_out, gb_out = run(backend, ops.linear_backward, dy, x, w, dw=gw, db=gb,
                               compute_dx=False)
    assert none is None and gw_out is gw and gb_out is gb
    np.testing.assert_allclose(gw, 1 + dy2.T @ x2, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(gb, 1 + dy2.sum(0), rtol=tol, atol=tol * 10)
    assert run(backend, ops.linear_backward, dy, x, w, has_bias=False)[2] is None
    g32 = np.zeros((13, 19), np.float32)  # another dtype: accumulated with a cast
    run(backend, ops.linear_backward, dy.astype(np.float64), x, w, dw=g32)
    np.testing.assert_allclose(g32, dy2.T @ x2, rtol=1e-5, atol=1e-4)
    strided = np.zeros((13, 38), dtype)[:, ::2]
    run(backend, ops.linear_backward, dy, x, w, dw=strided)
    np.testing.assert_allclose(strided, dy2.T @ x2, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu_tanh"])
def test_linear_backward_with_an_activation_is_activation_backward_first(backend, dtype, name,
                                                                        rng):
    """activation= takes dy * act'(preact) first: in one call for plain 2-D arrays, in
    separate ops for anything else (3-D here), with the same result either way."""
    if backend == "native" and not _native.AVAILABLE:
        pytest.skip("native backend not built")
    x = rng.standard_normal((3, 7, 19)).astype(dtype)
    w = rng.standard_normal((13, 19)).astype(dtype)
    dy = rng.standard_normal((3, 7, 13)).astype(dtype)
    z = rng.standard_normal((3, 7, 13)).astype(dtype)
    dz = run(backend, ops.activation_backward, dy, z, name, negative_slope=0.3)
    want = run(backend, ops.linear_backward, dz, x, w)
    for shape in [(21,), (3, 7)]:
        args = [a.reshape(shape + (a.shape[-1],)) for a in (dy, x)]
        got = run(backend, ops.linear_backward, args[0], args[1], w,
                  preact=z.reshape(shape + (13,)), activation=name, negative_slope=0.3)
        for g, wnt in zip(got, want):
            np.testing.assert_allclose(g.reshape(wnt.shape), wnt, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs preact"):
        ops.linear_backward(dy, x, w, activation=name)


def test_reference_backward_matches_finite_differences(rng):
    x = rng.standard_normal((5, 4))
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(3)
    r = rng.standard_normal((5, 3))

    def loss(x_, w_, b_):
        return float(np.sum(run("numpy", ops.linear, x_, w_, b_) * r))

    dx, dw, db = run("numpy", ops.linear_backward, r, x, w)
    h = 1e-6
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            args = [plus if arr is t else t for t in (x, w, b)]
            args_m = [minus if arr is t else t for t in (x, w, b)]
            numeric[idx] = (loss(*args) - loss(*args_m)) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


def test_linear_backward_bad_arguments(rng):
    x, w, dy = np.ones((4, 3)), np.ones((2, 3)), np.ones((4, 2))
    with pytest.raises(ValueError, match="dy has shape"):
        ops.linear_backward(np.ones((4, 3)), x, w)
    with pytest.raises(ValueError, match="dw has shape"):
        ops.linear_backward(dy, x, w, dw=np.zeros((3, 2)))
    with pytest.raises(TypeError):
        ops.linear_backward(dy, x, w, dw=[[0.0] * 3] * 2)
    with pytest.raises(ValueError, match="overlaps"):
        ops.linear_backward(dy, x, w, dw=w)
    with pytest.raises(ValueError, match="has_bias"):
        ops.linear_backward(dy, x, w, db=np.zeros(2), has_bias=False)
    with pytest.raises(TypeError):
        ops.linear_backward(dy, x, w, dw=np.zeros((2, 3), np.int64))
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.linear_backward(dy, x, w, db=ro)
    with pytest.raises(ValueError, match=r"preact has shape \(4, 3\); it must be dy's"):
        ops.linear_backward(dy, x, w, preact=np.ones((4, 3)), activation="relu")
    for flag in ("compute_dx", "has_bias"):
        with pytest.raises(TypeError, match=f"{flag} must be a bool"):
            ops.linear_backward(dy, x, w, **{flag: "no"})   # a truthy string
    dx, _, db = ops.linear_backward(dy, x, w, compute_dx=np.False_, has_bias=np.False_)
    assert dx is None and db is None


# ---- the kernels refuse what would crash C ----------------------------------------------

@native
def test_native_wrappers_refuse_inconsistent_arrays():
    a, b, c = np.ones((4, 3)), np.ones((3, 5)), np.zeros((4, 5))
    with pytest.raises(ValueError):
        _native.gemm_fused(c, a, b, False, True, 1.0, 0.0, None, 0, 0.0, None)
    with pytest.raises(ValueError):
        _native.gemm_fused(c[:, ::2], a, np.ones((3, 3)), False, False, 1.0, 0.0, None, 0, 0.0,
                           None)
    with pytest.raises(ValueError):
        _native.gemm_fused(c, a[::-1], b, False, False, 1.0, 0.0, None, 0, 0.0, None)
    with pytest.raises(ValueError):
        _native.gemm_fused(c, a, b, False, False, 1.0, 0.0, np.ones(4), 0, 0.0, None)
    with pytest.raises(ValueError):
        _native.gemm_fused(c, a, b, False, False, 1.0, 0.0, None, 8, 0.0, None)
    with pytest.raises(ValueError):
        _native.gemm_fused(c, a, b, False, False, 1.0, 0.0, None, 0, 0.0, np.zeros((5, 4)))
    with pytest.raises((ValueError, TypeError)):
        _native.gemm_fused(c.astype(np.float32), a, b, False, False, 1.0, 0.0, None, 0, 0.0, None)
    with pytest.raises(ValueError):
        _native.gemm_batched(np.zeros((2, 4, 5)), np.ones((3, 4, 3)), np.ones((1, 3, 5)),
                             False, False, 1.0, 0.0)
    with pytest.raises(ValueError):
        _native.gemm_colsum(np.zeros(4), np.ones((3, 5)), False)


@native
def test_fma_peak_is_measured():
    assert _native._gemm._fma_peak_gflops(1) > 0.1


@native
def test_tile_ceiling_is_measured():
    # the micro-kernel in force (a forced ISA's too) runs full tiles and reports a rate
    assert _native._gemm._tile_peak_gflops(1) > 0.1
    with pytest.raises(ValueError, match="nthreads"):
        _native._gemm._tile_peak_gflops(0)


# ---- PyTorch ----------------------------------------------------------------------------------

def test_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    x = rng.standard_normal((6, 5, 40))
    w = rng.standard_normal((30, 40))
    b = rng.standard_normal(30)
    tx, tw, tb = (torch.from_numpy(t) for t in (x, w, b))
    np.testing.assert_allclose(ops.linear(x, w, b, "silu"),
                               torch.nn.functional.silu(torch.nn.functional.linear(tx, tw, tb)),
                               rtol=1e-12, atol=1e-12)
    a3 = rng.standard_normal((4, 1, 7, 9))
    b3 = rng.standard_normal((3, 9, 2))
    np.testing.assert_allclose(ops.matmul(a3, b3), torch.matmul(torch.from_numpy(a3),
                                                                torch.from_numpy(b3)),
                               rtol=1e-12, atol=1e-12)
    tx.requires_grad_(True)
    tw.requires_grad_(True)
    tb.requires_grad_(True)
    dy = rng.standard_normal((6, 5, 30))
    torch.nn.functional.linear(tx, tw, tb).backward(torch.from_numpy(dy))
    dx, dw, db = ops.linear_backward(dy, x, w)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", [pytest.param(_native, marks=native), reference],
                         ids=["native", "reference"])
def test_relu_backward_from_its_output(impl, dtype):
    """What lets linear_stack_forward keep a ReLU layer's output in place of its
    pre-activation: ReLU's backward gives the same bits from either, special values
    included."""
    z = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-30, -1e-30, 2.5, -2.5]
                 * 7, dtype)
    g = np.linspace(-3, 3, z.size).astype(dtype)
    y = np.empty_like(z)
    impl.act_forward(y, z, 1, 0.0)
    from_z, from_y = np.empty_like(z), np.empty_like(z)
    impl.act_backward(from_z, g, z, 1, 0.0)
    impl.act_backward(from_y, g, y, 1, 0.0)
    np.testing.assert_array_equal(from_y.view(np.uint8), from_z.view(np.uint8))
