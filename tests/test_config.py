"""Settings: backend switching, threads, seeding, show_config, and the native build."""
import inspect
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import pynn
from pynn import _native
from pynn.backends import numpy as reference


def test_native_backend_is_built():
    # A wheel without its kernels would silently run everything on NumPy.
    assert _native.AVAILABLE, _native.IMPORT_ERROR
    assert pynn.get_backend() == "native"


def test_native_and_reference_have_the_same_kernels_and_signatures():
    for name in reference.__all__:
        native_fn = getattr(_native, name)
        assert inspect.signature(native_fn) == inspect.signature(getattr(reference, name)), name


def test_set_backend_switches_and_rejects_unknown_names():
    pynn.set_backend("numpy")
    assert pynn.get_backend() == "numpy"
    pynn.set_backend("native")
    assert pynn.get_backend() == "native"
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        pynn.set_backend("cuda")
    with pytest.raises(TypeError, match="backend must be a str"):
        pynn.set_backend(None)
    assert pynn.get_backend() == "native"


def test_use_backend_restores_and_is_thread_local():
    seen = {}

    def other_thread():
        seen["other"] = pynn.get_backend()

    with pynn.use_backend("numpy"):
        assert pynn.get_backend() == "numpy"
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert pynn.get_backend() == "native"
    assert seen["other"] == "native"


def test_ops_run_on_the_backend_in_force_in_each_thread(monkeypatch):
    # ops look the backend up through a global that set_backend and use_backend clear:
    # every switch must reach the next op, and a block in one thread must not leak into
    # another
    calls = []
    for module, name in ((_native, "native"), (reference, "numpy")):
        def spy(a, b, out=None, real=module.matmul_2d, name=name):
            calls.append(name)
            return real(a, b, out)
        monkeypatch.setattr(module, "matmul_2d", spy)
    x = np.ones((2, 2), np.float32)

    def ran(fn):
        del calls[:]
        fn()
        return list(calls)

    def in_thread():
        t = threading.Thread(target=pynn.ops.matmul, args=(x, x))
        t.start()
        t.join()

    try:
        assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
        pynn.set_backend("numpy")
        assert ran(lambda: pynn.ops.matmul(x, x)) == ["numpy"]
        assert ran(in_thread) == ["numpy"]
        pynn.set_backend("native")
        assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
        with pynn.use_backend("numpy"):
            assert ran(lambda: pynn.ops.matmul(x, x)) == ["numpy"]
            assert ran(in_thread) == ["native"]
            with pynn.use_backend("native"):
                assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
            assert ran(lambda: pynn.ops.matmul(x, x)) == ["numpy"]
        assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
        with pynn.use_backend("native"):  # the default's own block
            assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
            pynn.set_backend("numpy")  # every thread, this one too
            assert ran(lambda: pynn.ops.matmul(x, x)) == ["numpy"]
            assert ran(in_thread) == ["numpy"]
        assert ran(lambda: pynn.ops.matmul(x, x)) == ["numpy"]
        with pynn.use_backend("native"):
            assert ran(lambda: pynn.ops.matmul(x, x)) == ["native"]
            assert ran(in_thread) == ["numpy"]
    finally:
        pynn.set_backend("native")


def test_use_backend_restores_after_an_exception():
    with pytest.raises(KeyError):
        with pynn.use_backend("numpy"):
            raise KeyError("boom")
    assert pynn.get_backend() == "native"


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                      (True, TypeError), ("2", TypeError),
                                      (pynn._config.MAX_THREADS + 1, ValueError),
                                      (2**31, ValueError), (np.uint64(2**63), ValueError)])
def test_set_num_threads_rejects_bad_values(bad, exc):
    before = pynn.get_num_threads()
    with pytest.raises(exc, match="num_threads"):
        pynn.set_num_threads(bad)
    assert pynn.get_num_threads() == before


def test_set_num_threads_roundtrip():
    pynn.set_num_threads(1)
    assert pynn.get_num_threads() == 1
    pynn.set_num_threads(np.int64(3))
    assert pynn.get_num_threads() == 3


def test_thread_count_from_the_environment_is_capped():
    """An absurd OMP_NUM_THREADS does not reach the kernels (100,000 threads crashed the
    OpenMP runtime; 2**31 made every native call overflow)."""
    for value in ("100000", "3000000000"):
        out = _run("import pynn; print(pynn.get_num_threads())", OMP_NUM_THREADS=value)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.split()[-1]) == pynn._config.MAX_THREADS


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "PYNN_BACKEND", "PYNN_FORCE_ISA")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_environment_settings_are_honoured():
    out = _run("import pynn; print(pynn.get_num_threads(), pynn.get_backend())",
               OMP_NUM_THREADS="3", PYNN_BACKEND="numpy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "numpy"]


def test_force_isa_from_environment():
    out = _run("from pynn import _native; print(_native.get_isa())", PYNN_FORCE_ISA="generic")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "generic"


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown ISA"):
        _native.set_isa("sse9")


def test_missing_extension_falls_back_to_numpy_with_a_warning():
    code = ("import sys, warnings; sys.modules['pynn._native._core'] = None\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import pynn\n"
            "    print(pynn.get_backend())\n"
            "print(any('could not be imported' in str(x.message) for x in w))\n"
            "try:\n"
            "    pynn.set_backend('native')\n"
            "except RuntimeError as e:\n"
            "    print('refused', 'not available' in str(e))\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "True", "refused", "True"]


def test_manual_seed_makes_draws_reproducible():
    pynn.manual_seed(7)
    a = [pynn._config.next_seed() for _ in range(3)]
    pynn.manual_seed(7)
    b = [pynn._config.next_seed() for _ in range(3)]
    assert a == b
    with pytest.raises(ValueError, match="seed"):
        pynn.manual_seed(-1)
    with pytest.raises(TypeError, match="seed"):
        pynn.manual_seed("7")


def test_show_config_reports_simd_threads_and_backend(capsys):
    pynn.show_config()
    text = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in text.splitlines())
    assert fields["version"] == pynn.__version__
    assert fields["simd"] == _native.get_isa()
    assert fields["num_threads"] == str(pynn.get_num_threads())
    assert fields["backend"] == pynn.get_backend()


def test_a_block_for_the_default_backend_keeps_the_fast_lookup():
    # ops read the backend from a global while every thread runs on the default; a block
    # for the default itself (as the GEMM bench opens), even before anything has asked
    # which backend is the default, must not turn that off (the thread-local lookup costs
    # a sixth of a small product), and a block for another backend must
    code = ("import numpy as np, pynn\n"
            "from pynn import _config, _native\n"
            "x = np.ones((2, 2), np.float32)\n"
            "with pynn.use_backend('native'):\n"
            "    pynn.ops.matmul(x, x)\n"
            "    print(_config.current is _native)\n"
            "with pynn.use_backend('numpy'):\n"
            "    pynn.ops.matmul(x, x)\n"
            "    print(_config.current)\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "None"]
