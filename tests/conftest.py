import numpy as np
import pytest

import pynn
from pynn import _native


def supported_isas():
    if not _native.AVAILABLE:
        return []
    names = _native.ISA_NAMES
    best = _native.build_info()["simd_best"]
    return list(names[: names.index(best) + 1])


@pytest.fixture(params=supported_isas() or [pytest.param(None, marks=pytest.mark.skip(
    reason="native backend not built"))])
def isa(request):
    """Runs the test once per SIMD path this CPU supports, restoring the default after."""
    before = _native.get_isa()
    _native.set_isa(request.param)
    yield request.param
    _native.set_isa(before)


@pytest.fixture(autouse=True)
def _restore_settings():
    threads, backend = pynn.get_num_threads(), pynn.get_backend()
    yield
    pynn.set_num_threads(threads)
    pynn.set_backend(backend)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", pytest.param("native", marks=pytest.mark.skipif(
    not _native.AVAILABLE, reason="native backend not built"))])
def backend(request):
    """Runs the test once per backend (the native one where it is built)."""
    with pynn.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)
