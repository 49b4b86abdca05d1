"""pynn.ops: NumPy arrays in, NumPy arrays out, NumPy's semantics.

float32 and float64 inputs run on the backend in force (native C kernels or the NumPy
reference); every other dtype NumPy accepts gets NumPy's own answer. Inputs are never
modified. Every forward op with a backward has `<name>_backward` taking the cached
tensors explicitly.
"""
__all__ = []


def _export(module):
    __all__.extend(module.__all__)
    globals().update({name: getattr(module, name) for name in module.__all__})


# Families register here, one import each.
from . import _softmax_xent  # noqa: E402
_export(_softmax_xent)
from . import _eltwise  # noqa: E402
_export(_eltwise)
from . import _norm  # noqa: E402
_export(_norm)
from . import _dropout  # noqa: E402
_export(_dropout)
from . import _optim  # noqa: E402
_export(_optim)
from . import _gemm  # noqa: E402
_export(_gemm)
