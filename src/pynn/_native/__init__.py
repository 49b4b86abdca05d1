"""The native backend: Cython wrappers over the C kernels in csrc/.

Each family of kernels is one extension module; this package gathers their functions
under the same names as the NumPy reference (pynn.backends.numpy). If any module cannot
be imported, AVAILABLE is False, IMPORT_ERROR says why, and pynn runs on NumPy.
"""
import importlib
import os
import warnings

MODULES = ("_core", "_softmax_xent", "_eltwise", "_norm", "_dropout", "_optim", "_gemm")
ISA_NAMES = ("generic", "avx2", "avx512")

AVAILABLE = False
IMPORT_ERROR = None
_modules = []


def _load():
    global AVAILABLE, IMPORT_ERROR
    try:
        for name in MODULES:
            _modules.append(importlib.import_module(f"{__name__}.{name}"))
    except ImportError as exc:
        IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"pynn's compiled kernels could not be imported ({IMPORT_ERROR}); "
                      "running on the NumPy reference backend", RuntimeWarning, stacklevel=3)
        return
    from pynn.backends import numpy as reference

    namespace = globals()
    for mod in _modules:
        for name in reference.__all__:
            if hasattr(mod, name):
                namespace[name] = getattr(mod, name)
    missing = [name for name in reference.__all__ if name not in namespace]
    if missing:
        IMPORT_ERROR = f"native kernels missing: {', '.join(missing)}"
        warnings.warn(f"pynn's native build is incomplete ({IMPORT_ERROR}); "
                      "running on the NumPy reference backend", RuntimeWarning, stacklevel=3)
        return
    AVAILABLE = True
    forced = os.environ.get("PYNN_FORCE_ISA", "").strip().lower()
    if forced:
        try:
            set_isa(forced)
        except ValueError as exc:
            warnings.warn(f"PYNN_FORCE_ISA ignored: {exc}", RuntimeWarning, stacklevel=3)


def set_isa(name):
    """Force the SIMD path in every kernel module: "generic", "avx2" or "avx512"."""
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {ISA_NAMES}")
    from pynn._native import _core

    best = _core.best_isa()
    if ISA_NAMES.index(name) > ISA_NAMES.index(best):
        raise ValueError(f"ISA {name!r} is not supported here (best is {best!r})")
    for mod in _modules:
        mod._set_isa(ISA_NAMES.index(name))


def get_isa():
    """Name of the SIMD path in use."""
    return ISA_NAMES[_modules[0]._get_isa()]


def build_info():
    from pynn._native import _core

    return {
        "simd": get_isa(),
        "simd_best": _core.best_isa(),
        "openmp": _core.openmp_enabled(),
        "openmp_max_threads": _core.openmp_max_threads(),
    }


_load()
