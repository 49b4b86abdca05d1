"""The pure-NumPy reference backend: one module per kernel family.

Every function here has a native twin in pynn._native with the same name and signature
(a test checks it). Conventions, as in the C kernels: outputs first (arrays the caller
allocated, written in place), then inputs, then parameters. Inputs are C-contiguous
float32 or float64 arrays of one dtype; pynn.ops validates and converts before calling.
These functions are the specification: readable first, fast second.
"""
__all__ = []


def _export(module):
    __all__.extend(module.__all__)
    globals().update({name: getattr(module, name) for name in module.__all__})


# Families register here, one import each.
from . import softmax_xent  # noqa: E402
_export(softmax_xent)
from . import eltwise  # noqa: E402
_export(eltwise)
from . import norm  # noqa: E402
_export(norm)
from . import dropout  # noqa: E402
_export(dropout)
from . import optim  # noqa: E402
_export(optim)
from . import gemm  # noqa: E402
_export(gemm)
from . import data  # noqa: E402
_export(data)
