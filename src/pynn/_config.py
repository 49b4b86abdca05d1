"""Run-time settings: the backend, the thread count and the random seed.

Settings are read from the environment once, here (PYNN_BACKEND, OMP_NUM_THREADS), and
changed through the functions below; kernels receive them as explicit arguments.
"""
import contextlib
import os
import threading

import numpy as np

BACKENDS = ("native", "numpy")


def _cpu_count():
    """CPUs this process may run on: affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


# The most threads set_num_threads takes (and the native kernels use: csrc/threads.c).
MAX_THREADS = 1024


def _threads_from_env():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n >= 1:
            return min(n, MAX_THREADS)
    return min(_cpu_count(), MAX_THREADS)


_state = threading.local()
_defaults = {"backend": None, "num_threads": _threads_from_env()}
_rng_lock = threading.Lock()
_rng = np.random.default_rng()


def _check_backend(name):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, one of {BACKENDS}, not {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name == "native":
        from pynn import _native

        if not _native.AVAILABLE:
            raise RuntimeError(f"the native backend is not available: {_native.IMPORT_ERROR}")
    return name


def _initial_backend():
    from pynn import _native

    wanted = os.environ.get("PYNN_BACKEND", "").strip().lower()
    if wanted:
        if wanted not in BACKENDS:
            import warnings

            warnings.warn(f"PYNN_BACKEND={wanted!r} is not one of {BACKENDS}; using the default",
                          RuntimeWarning, stacklevel=3)
        elif wanted == "numpy" or _native.AVAILABLE:
            return wanted
    return "native" if _native.AVAILABLE else "numpy"


def set_backend(name):
    """Run every op and model on `name`: "native" (C kernels) or "numpy" (the reference)."""
    global current
    name = _check_backend(name)
    with _switch:
        _defaults["backend"] = name
        current = None
    _state.__dict__.pop("backend", None)


def get_backend():
    """Name of the backend in force in this thread."""
    return getattr(_state, "backend", None) or _default_backend()


def _default_backend():
    name = _defaults["backend"]
    if name is None:
        name = _defaults["backend"] = _initial_backend()
    return name


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run the block on backend `name`, then restore the previous one.

    The switch is local to the calling thread."""
    global current
    _check_backend(name)
    _default_backend()
    previous = getattr(_state, "backend", None)
    with _switch:
        _open[name] += 1
        if name != _defaults["backend"]:
            current = None
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = previous
        with _switch:
            _open[name] -= 1


_backend_modules = {}

# The default backend's module while it is every thread's backend (no use_backend block
# for another backend is open in any thread: _open counts the open blocks per backend);
# None when that is not known to hold. Every op starts with the backend lookup, and a
# product of small matrices takes about a microsecond in all: reading this global costs a
# tenth of what the thread-local lookup does. It is set and cleared under _switch, and a
# thread clears it before its own block for another backend starts, so a thread inside
# such a block never reads a module other than its own.
current = None
_open = dict.fromkeys(BACKENDS, 0)
_switch = threading.Lock()


def backend_module():
    """The module of kernels for the backend in force (same function names either way)."""
    return current or _lookup()


def _lookup():
    global current
    name = _state.__dict__.get("backend") or _default_backend()
    module = _backend_modules.get(name)
    if module is None:
        if name == "native":
            from pynn import _native as module
        else:
            from pynn.backends import numpy as module
        _backend_modules[name] = module
    if _every_thread_on(name):   # read without the lock, then made sure under it
        with _switch:
            if _every_thread_on(name):
                current = module
    return module


def _every_thread_on(name):
    """Whether `name` is the default backend and no block for another one is open."""
    return name == _defaults["backend"] and not any(
        count for other, count in _open.items() if other != name)


def _check_threads(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_threads must be an int, not {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"num_threads must be in [1, {MAX_THREADS}], got {n}")
    return int(n)


def set_num_threads(n):
    """Let kernels use up to `n` OpenMP threads (default: OMP_NUM_THREADS, else the CPUs
    this process may use). Results are identical whatever `n` is."""
    _defaults["num_threads"] = _check_threads(n)


def get_num_threads():
    return _defaults["num_threads"]


def manual_seed(seed):
    """Seed pynn's random generator (initialisation, dropout masks, shuffling, and the
    data helpers given seed=None).

    The generator is reseeded in place, as torch.manual_seed reseeds the default
    generator, so objects built before the call (a GaussianNoise, a shuffling
    BatchIterator) follow the new seed too. After manual_seed(s) it draws exactly what
    numpy.random.default_rng(s) draws.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    fresh = np.random.default_rng(int(seed)).bit_generator
    with _rng_lock:
        # The pickling state carries the seed sequence too (NumPy >= 2), so spawn()
        # after manual_seed is reproducible as well as the draws.
        _rng.bit_generator.__setstate__(fresh.__getstate__())


def rng():
    """pynn's random generator (numpy.random.Generator), reseeded by manual_seed."""
    return _rng


def generator(seed=None):
    """A random generator: pynn's own for None (so manual_seed governs it), `seed` itself
    if it is a numpy.random.Generator, else a new one seeded with the int `seed`."""
    if seed is None:
        return _rng
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be None, an int or a numpy.random.Generator, "
                        f"not {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def next_seed():
    """A fresh 64-bit seed drawn from pynn's generator, for counter-based kernels."""
    with _rng_lock:
        return int(_rng.integers(0, 2**63 - 1, dtype=np.int64))


def config_info():
    """The facts show_config prints, as a dict."""
    from pynn import __version__, _native

    info = {
        "version": __version__,
        "backend": get_backend(),
        "num_threads": get_num_threads(),
        "numpy": np.__version__,
        "native_available": _native.AVAILABLE,
    }
    if _native.AVAILABLE:
        info.update(_native.build_info())
    else:
        info["native_error"] = _native.IMPORT_ERROR
    return info


def show_config():
    """Print the version, backend, SIMD target in use, OpenMP and thread settings."""
    info = config_info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
