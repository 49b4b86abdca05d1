"""Fused optimizer steps: the native kernels against the NumPy reference (every ISA, both
dtypes, every option), both against torch.optim over several steps, the list form (many
parameters in one call) against the one-parameter form, determinism across thread counts,
in-place semantics (state updated, grad untouched, unused buffers left alone) and bad
input, which both backends refuse alike."""
import inspect
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pynn
from pynn import _native, ops
from pynn.backends.numpy import optim as reference

# Native vs reference: the same operations, up to fused multiply-adds on AVX2/AVX-512.
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}
TORCH_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
STEPS = 5

native = pytest.mark.skipif(not _native.AVAILABLE, reason="native backend not built")
# The entries of one list-form call: empty, 0-D, sizes around the vector widths, and
# 70066 elements in all, past the 2 x 32768 that two threads need; they split the
# concatenated elements at a multiple of 8192, inside an entry at an unaligned offset.
SHAPES = [(17,), (), (0,), (40001,), (3, 0), (5, 7), (30011,), (1,)]

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


def list_grads(rng, params, steps=STEPS):
    """Per step, one gradient per parameter."""
    return [list(step) for step in zip(*(grads(rng, p.shape, p.dtype, steps) for p in params))]


def zeros(param):
    """A zero state buffer for param, or one per parameter of a list."""
    return [np.zeros_like(p) for p in param] if isinstance(param, list) else np.zeros_like(param)


# Runners: STEPS steps of an op, in either form (param an array, gs a list of gradients;
# or param a list of arrays, gs a list of per-step gradient lists). They return param and
# the state, in the order of the reference kernel's arguments.

def run_sgd(param, gs, lr=0.1, **options):
    buf = zeros(param) if options.get("momentum", 0) else None
    for i, g in enumerate(gs):
        ops.sgd_update(param, g, buf, lr=lr, first_step=i == 0, **options)
    return param, buf


def run_adam(param, gs, lr=0.01, **options):
    m, v = zeros(param), zeros(param)
    vmax = zeros(param) if options.get("amsgrad") else None
    for i, g in enumerate(gs):
        ops.adam_update(param, g, m, v, step=i + 1, lr=lr, max_exp_avg_sq=vmax, **options)
    return param, m, v, vmax


def run_rmsprop(param, gs, lr=0.01, **options):
    sq = zeros(param)
    buf = zeros(param) if options.get("momentum", 0) else None
    gavg = zeros(param) if options.get("centered") else None
    for g in gs:
        ops.rmsprop_update(param, g, sq, lr=lr, momentum_buffer=buf, grad_avg=gavg, **options)
    return param, sq, buf, gavg


def arrays(result):
    """A runner's result as one list of arrays (list-form results flattened, None dropped)."""
    out = []
    for a in result:
        if isinstance(a, list):
            out.extend(a)
        elif a is not None:
            out.append(a)
    return out


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
def test_native_matches_reference(isa, dtype, name, options, rng):
    """One list-form call over every shape in SHAPES, STEPS times."""
    runner = RUNNERS[name][0]
    params0 = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    gs = list_grads(rng, params0)
    outs = {}
    for backend in ("native", "numpy"):
        with pynn.use_backend(backend):
            outs[backend] = arrays(runner([p.copy() for p in params0], gs, **options))
    for got, want in zip(outs["native"], outs["numpy"], strict=True):
        assert got.dtype == dtype and got.shape == want.shape
        assert_close(got, want, TOL[dtype])


@native
@pytest.mark.parametrize("options", [dict(), dict(eps=1e-36), dict(amsgrad=True),
                                     dict(weight_decay=0.1, decoupled_weight_decay=True)],
                         ids=["default", "tiny-eps", "amsgrad", "adamw"])
def test_adam_special_values_match_reference(isa, options):
    """Gradients and state of every kind of float32 in every lane position: zero (v = 0),
    subnormal (flushed to zero by the kernels: a difference far below the tolerance),
    huge (v overflows to inf), inf and NaN; a tiny eps makes denominators near the bottom
    of the normal range. The native float path estimates sqrt and 1/x and must send
    exactly the special lanes to the exact instructions; lengths 1..40 put them in masked
    tails too."""
    specials = np.array([0.0, -0.0, 1e-40, -3e-39, 1e30, -2e25, np.inf, -np.inf, np.nan,
                         1.0, -0.5, 1e-20, 3e-3], np.float32)
    rng = np.random.default_rng(5)
    for n in (1, 5, 16, 17, 33, 40):
        g = rng.choice(specials, n).astype(np.float32)
        p = rng.standard_normal(n).astype(np.float32)
        v0 = rng.choice(np.array([0.0, 1e-40, 4.0, np.inf], np.float32), n)
        m0 = rng.choice(specials, n).astype(np.float32)
        outs = {}
        for backend in ("native", "numpy"):
            state = [p.copy(), g.copy(), m0.copy(), v0.copy(), v0.copy()]
            with pynn.use_backend(backend), np.errstate(all="ignore"):
                ops.adam_update(state[0], state[1], state[2], state[3], step=3,
                                max_exp_avg_sq=state[4], **options)
            outs[backend] = state
        for got, want in zip(outs["native"], outs["numpy"], strict=True):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-30)


@native
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_subnormal_state_is_flushed_and_the_callers_flags_kept(isa, dtype, name):
    """State decayed into the subnormal range (a parameter that stopped getting gradient)
    is flushed to zero, where x86 would take a slow assist on every use; the parameter
    gets the reference's update regardless; and the caller's floating-point flags are
    as they were: NumPy still makes subnormals afterwards."""
    tiny = np.finfo(dtype).smallest_subnormal * 1000
    n = 70000                                   # two threads' worth, and a short call too
    for size in (n, 17):
        p, g = np.ones(size, dtype), np.zeros(size, dtype)
        buf = np.full(size, tiny, dtype)
        want = p.copy()
        if name == "sgd":
            ops.sgd_update(p, g, buf, lr=0.1, momentum=0.9)
        elif name == "adam":
            ops.adam_update(p, g, buf, np.full(size, tiny, dtype), step=900)
        else:
            ops.rmsprop_update(p, g, np.full(size, tiny, dtype), lr=0.01, momentum=0.9,
                               momentum_buffer=buf)
        np.testing.assert_array_equal(buf, 0)
        np.testing.assert_allclose(p, want, rtol=0, atol=1e-30)
    assert np.multiply(np.array(tiny, dtype), 0.5, dtype=dtype) != 0


@native
@pytest.mark.parametrize("name,options", [("sgd", dict(momentum=0.9, nesterov=True)),
                                          ("adam", dict(amsgrad=True, weight_decay=0.1)),
                                          ("rmsprop", dict(centered=True, momentum=0.5))],
                         ids=["sgd", "adam", "rmsprop"])
def test_same_bits_at_any_thread_count_and_in_either_form(isa, dtype, name, options, rng):
    """Two threads split the list's elements inside an entry, at an unaligned offset; the
    bits are those of one thread, and those of updating each entry alone."""
    runner = RUNNERS[name][0]
    params0 = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    gs = list_grads(rng, params0, steps=2)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        outs.append([a.tobytes() for a in arrays(runner([p.copy() for p in params0], gs,
                                                        **options))])
    pynn.set_num_threads(1)
    alone = [arrays(runner(p.copy(), [step[i] for step in gs], **options))
             for i, p in enumerate(params0)]
    # each entry's param first, then its state, as the list form orders them by role
    by_role = [a.tobytes() for role in zip(*alone) for a in role]
    assert outs[0] == outs[1] == by_role


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


# ---- the list form ----------------------------------------------------------------------

@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_list_form_is_the_single_form_per_entry(backend, dtype, name, options, rng):
    runner = RUNNERS[name][0]
    params0 = [rng.standard_normal(shape).astype(dtype) for shape in [(3, 4), (0,), (), (9,)]]
    gs = list_grads(rng, params0)
    listed = [a.tobytes() for a in arrays(runner([p.copy() for p in params0], gs, **options))]
    alone = [arrays(runner(p.copy(), [step[i] for step in gs], **options))
             for i, p in enumerate(params0)]
    assert listed == [a.tobytes() for role in zip(*alone) for a in role]


@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(0, 5), max_size=3).map(tuple), max_size=5),
       double=st.booleans(), as_tuples=st.booleans())
def test_list_form_on_any_shapes(shapes, double, as_tuples):
    """Any number of entries of any shapes (tuples as well as lists): each entry ends as
    the one-parameter form leaves it, and the op returns param itself."""
    rng = np.random.default_rng(len(shapes))
    dtype = np.float64 if double else np.float32
    params0 = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grad = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    seq = tuple if as_tuples else list
    params, m, v = seq(p.copy() for p in params0), seq(map(np.zeros_like, params0)), \
        seq(map(np.zeros_like, params0))
    assert ops.adam_update(params, seq(grad), m, v, step=1, weight_decay=0.1) is params
    for i, p0 in enumerate(params0):
        p, m1, v1 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        ops.adam_update(p, grad[i], m1, v1, step=1, weight_decay=0.1)
        for got, want in ((params[i], p), (m[i], m1), (v[i], v1)):
            assert got.tobytes() == want.tobytes()


def test_empty_lists_do_nothing_but_are_checked(backend):
    params = []
    assert ops.adam_update(params, [], [], (), step=1) is params
    assert ops.sgd_update((), (), None, lr=0.1) == ()
    ops.rmsprop_update([], [], [], momentum=0.9, momentum_buffer=[], centered=True, grad_avg=[])
    with pytest.raises(ValueError, match="exp_avg has 1 entries, param has 0"):
        ops.adam_update([], [], [np.zeros(1)], [], step=1)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update([], [], [], [], step=0)


def test_list_form_gradients_convert_and_may_share_memory(backend, rng):
    """Parameters may be disjoint views of one array; gradients may be array-likes of any
    dtype that casts, read-only, and overlap each other (they are only read)."""
    flat = rng.standard_normal(20).astype(np.float32)
    params = [flat[:12].reshape(3, 4), flat[12:]]
    shared = rng.standard_normal(20)
    shared.flags.writeable = False
    grads = [shared[:12].reshape(3, 4), shared[4:12].tolist()]
    expected = [p.copy() for p in params]
    for p, g in zip(expected, grads):
        ops.sgd_update(p, np.asarray(g, np.float32), None, lr=0.1, weight_decay=0.01)
    ops.sgd_update(params, grads, None, lr=0.1, weight_decay=0.01)
    for got, want in zip(params, expected):
        assert got.tobytes() == want.tobytes()
    np.testing.assert_array_equal(flat[12:], params[1])


def _list_args(rng):
    shapes = [(3,), (2, 2), (5,)]
    return dict(param=[rng.standard_normal(s).astype(np.float32) for s in shapes],
                grad=[np.ones(s, np.float32) for s in shapes],
                exp_avg=[np.zeros(s, np.float32) for s in shapes],
                exp_avg_sq=[np.zeros(s, np.float32) for s in shapes])


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _views(*slices):
    """Views of one float32 array: (start, stop, shape) each."""
    flat = np.zeros(16, np.float32)
    return [flat[i:j].reshape(shape) for i, j, shape in slices]


def _set(key, i, make):
    """A mutation of the arguments: entry i of `key` becomes make(args)."""
    def mutate(args):
        args[key][i] = make(args)
    return mutate


def _set_views(*targets):
    """A mutation: (key, i, start, stop, shape) entries become views of one array."""
    def mutate(args):
        for (key, i, *_), view in zip(targets, _views(*(t[2:] for t in targets))):
            args[key][i] = view
    return mutate


BAD_LISTS = [
    (TypeError, r"exp_avg must be a list or tuple of arrays",
     lambda a: a.update(exp_avg=a["exp_avg"][0])),
    (ValueError, r"exp_avg has 2 entries, param has 3", lambda a: a["exp_avg"].pop()),
    (ValueError, r"grad has 4 entries, param has 3", lambda a: a["grad"].append(np.ones(1))),
    (TypeError, r"param\[1\] must be a numpy.ndarray",
     _set("param", 1, lambda a: [[1.0, 2.0]] * 2)),
    (TypeError, r"param\[0\] must have a floating dtype",
     _set("param", 0, lambda a: np.zeros(3, np.int32))),
    (TypeError, r"param\[1\] has dtype float64, but param\[0\] has float32",
     _set("param", 1, lambda a: np.zeros((2, 2)))),
    (ValueError, r"param\[2\] is read-only", _set("param", 2, lambda a: _read_only(a["param"][2]))),
    (ValueError, r"exp_avg_sq\[0\] must be C-contiguous",
     _set("exp_avg_sq", 0, lambda a: np.zeros(6, np.float32)[::2])),
    (ValueError, r"exp_avg\[2\] has shape \(4,\), expected param's shape \(5,\)",
     _set("exp_avg", 2, lambda a: np.zeros(4, np.float32))),
    # as many elements as the parameter, in another shape
    (ValueError, r"exp_avg\[1\] has shape \(4,\), expected param's shape \(2, 2\)",
     _set("exp_avg", 1, lambda a: np.zeros(4, np.float32))),
    (TypeError, r"exp_avg\[1\] has dtype float64, expected param's dtype float32",
     _set("exp_avg", 1, lambda a: np.zeros((2, 2)))),
    (TypeError, r"exp_avg_sq\[0\] must be a numpy.ndarray", _set("exp_avg_sq", 0, lambda a: None)),
    (ValueError, r"grad\[2\] has shape \(4,\), expected param's shape \(5,\)",
     _set("grad", 2, lambda a: np.ones(4, np.float32))),
    (TypeError, r"grad\[0\] has dtype complex64",
     _set("grad", 0, lambda a: np.ones(3, np.complex64))),
    (ValueError, r"exp_avg\[0\] overlaps param\[0\]", _set("exp_avg", 0, lambda a: a["param"][0])),
    (ValueError, r"exp_avg_sq\[2\] overlaps exp_avg\[2\]",
     _set("exp_avg_sq", 2, lambda a: a["exp_avg"][2])),
    (ValueError, r"grad\[0\] overlaps exp_avg\[0\]", _set("grad", 0, lambda a: a["exp_avg"][0])),
    (ValueError, r"param\[1\] overlaps param\[0\]",
     _set_views(("param", 0, 0, 3, (3,)), ("param", 1, 2, 6, (2, 2)))),
    (ValueError, r"exp_avg\[2\] overlaps param\[1\]",
     _set_views(("param", 1, 0, 4, (2, 2)), ("exp_avg", 2, 3, 8, (5,)))),
    (ValueError, r"grad\[2\] overlaps param\[0\]",
     _set_views(("param", 0, 0, 3, (3,)), ("grad", 2, 2, 7, (5,)))),
]


@pytest.mark.parametrize("exc,match,mutate", BAD_LISTS, ids=[m for _, m, _ in BAD_LISTS])
def test_bad_lists_are_refused_alike_and_change_nothing(backend, rng, exc, match, mutate):
    """Both backends raise the same error (the native kernels check the arrays in C, and
    what they refuse, pynn.ops explains), before anything is written."""
    args = _list_args(rng)
    mutate(args)
    before = [(a, a.copy()) for key in ("param", "exp_avg", "exp_avg_sq")
              for a in (args[key] if isinstance(args[key], list) else [args[key]])
              if isinstance(a, np.ndarray)]
    with pytest.raises(exc, match=match):
        ops.adam_update(args["param"], args["grad"], args["exp_avg"], args["exp_avg_sq"], step=1)
    for a, copy in before:
        np.testing.assert_array_equal(a, copy)


# ---- bad input ---------------------------------------------------------------------------

def test_bad_arrays(backend, rng):
    p = rng.standard_normal(6).astype(np.float32)
    ro = p.copy()
    ro.flags.writeable = False
    bad = [
        (TypeError, "param", dict(param=p.tolist())),
        (TypeError, "param must be a numpy.ndarray, or a list", dict(param=iter(p))),
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


BAD_OPTIONS = [(ValueError, "step", dict(step=0)),
               (ValueError, "int64", dict(step=2**70)),
               (TypeError, "step", dict(step=1.0)), (ValueError, "lr", dict(lr=-1.0)),
               (ValueError, "lr", dict(lr=np.nan)), (TypeError, "lr", dict(lr="1e-3")),
               (ValueError, "beta1", dict(beta1=1.0)), (ValueError, "beta2", dict(beta2=-0.1)),
               (ValueError, "eps", dict(eps=0.0)), (ValueError, "eps", dict(eps=np.inf)),
               (ValueError, "weight_decay", dict(weight_decay=np.inf)),
               (ValueError, "weight_decay", dict(weight_decay=-1e-4)),
               (TypeError, "amsgrad", dict(amsgrad=1)),
               (ValueError, "max_exp_avg_sq", dict(amsgrad=True)),
               (TypeError, "decoupled_weight_decay", dict(decoupled_weight_decay=None))]


@pytest.mark.parametrize("exc,match,bad", BAD_OPTIONS,
                         ids=[f"{next(iter(b))}={next(iter(b.values()))!r}"
                              for _, _, b in BAD_OPTIONS])
def test_bad_options_of_a_list_step(backend, rng, exc, match, bad):
    """An optimizer's call (lists of arrays) is checked as the one-array form is, options
    included, though it goes to the kernels with fewer steps, before anything is written."""
    args = _list_args(rng)
    before = [(a, a.copy()) for key in ("param", "exp_avg", "exp_avg_sq") for a in args[key]]
    with pytest.raises(exc, match=match):
        ops.adam_update(args["param"], args["grad"], args["exp_avg"], args["exp_avg_sq"],
                        **{"step": 1, **bad})
    for a, copy in before:
        np.testing.assert_array_equal(a, copy)


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
    """The kernels check what pynn.ops would (see test_bad_lists_...), and what would crash C."""
    p, q = np.ones(4, np.float32), np.ones(3, np.float32)

    def adam(params, m, v, grads, vmax=None, step=1):
        _native.adam_update(params, m, v, vmax, grads, step, 0.1, 0.9, 0.99, 1e-8, 0.0, False)

    with pytest.raises(ValueError, match="argument out of range"):
        _native.sgd_update([p], None, [p.copy()], 0.1, 0.9, 0.0, False, 0.0, False)
    for params in ([p], []):  # empty lists too
        with pytest.raises(ValueError, match="argument out of range"):
            adam(params, [q.copy() for q in params], [q.copy() for q in params],
                 [q.copy() for q in params], step=0)
    with pytest.raises(TypeError, match="list"):
        adam((p,), [p.copy()], [p.copy()], [p.copy()])
    with pytest.raises(ValueError, match="square_avgs has 2 entries, params has 1"):
        _native.rmsprop_update([p], [p.copy(), p.copy()], None, None, [p.copy()], 0.1, 0.9,
                               1e-8, 0.0, 0.0)
    bad = [
        (ValueError, "grads\\[0\\] differs in shape", [[p], [p.copy()], [p.copy()], [q]]),
        (ValueError, "exp_avgs\\[0\\] is 2-D", [[p], [p.reshape(2, 2).copy()], [p.copy()], [p]]),
        (ValueError, "differs in dtype", [[p, np.ones(3)], [p.copy(), np.ones(3)],
                                          [p.copy(), np.ones(3)], [p.copy(), np.ones(3)]]),
        (ValueError, "float32 or float64", [[np.ones(4, np.int32)], [p], [p], [p]]),
        (ValueError, "params\\[0\\]: .*not C-contiguous",
         [[np.ones(8, np.float32)[::2]], [p], [p], [p]]),
        (ValueError, "exp_avg_sqs\\[0\\]: .*read-only", [[p], [p.copy()], [_read_only(p)], [p]]),
        (TypeError, "exp_avgs\\[0\\] must be a numpy.ndarray",
         [[p], [bytearray(16)], [p.copy()], [p]]),
        (TypeError, "grads\\[0\\]", [[p], [p.copy()], [p.copy()], [[1.0] * 4]]),
        (ValueError, "exp_avgs\\[0\\] overlaps params\\[0\\]", [[p], [p], [p.copy()], [p.copy()]]),
    ]
    v0 = np.ones(4, np.float32)
    bad.append((ValueError, "grads\\[1\\] overlaps exp_avg_sqs\\[0\\]",
                [[p, q], [p.copy(), q.copy()], [v0, q.copy()], [p.copy(), v0[1:]]]))
    for exc, match, (params, m, v, grads) in bad:
        with pytest.raises(exc, match=match):
            adam(params, m, v, grads)
    # gradients are only read: they may share memory with each other
    g = np.ones(4, np.float32)
    adam([p, p.copy()], [np.zeros(4, np.float32), np.zeros(4, np.float32)],
         [np.zeros(4, np.float32), np.zeros(4, np.float32)], [g, g])
    assert np.all(p < 1)


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
