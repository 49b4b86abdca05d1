"""pytest-benchmark suite over the same cases as `python -m pynn bench`.

    pytest bench/ --benchmark-only --benchmark-group-by=param:case

Each case runs on the native backend, the NumPy reference and PyTorch (when installed),
with NumPy's BLAS and PyTorch capped at pynn's thread count.
"""
import pytest

import pynn
from pynn.bench import ThreadLimits, load_cases

CASES = load_cases()
IDS = [f"{c.group}: {c.name}" for c in CASES]


@pytest.fixture(scope="module", autouse=True)
def same_threads():
    with ThreadLimits(pynn.get_num_threads()):
        yield


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_backend(benchmark, case, backend):
    if backend == "native" and not pynn._native.AVAILABLE:
        pytest.skip(f"native backend unavailable: {pynn._native.IMPORT_ERROR}")
    with pynn.use_backend(backend):
        benchmark(case.make())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch(benchmark, case):
    pytest.importorskip("torch", reason="PyTorch is not installed: no side-by-side figure")
    if case.make_torch is None:
        pytest.skip("PyTorch has no equivalent of this case")
    benchmark(case.make_torch())
