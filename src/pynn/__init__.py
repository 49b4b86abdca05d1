"""pynn: neural networks on the CPU, with C/OpenMP kernels behind a NumPy-compatible API.

    import pynn
    from pynn import nn, optim, ops
"""
__version__ = "0.1.0"

from pynn._config import (  # noqa: E402
    get_backend,
    get_num_threads,
    manual_seed,
    set_backend,
    set_num_threads,
    show_config,
    use_backend,
)
from pynn import ops  # noqa: E402
from pynn import callbacks, data, datasets, init, nn, optim  # noqa: E402
from pynn.fit import evaluate, fit, predict  # noqa: E402
from pynn.io import load, save  # noqa: E402
from pynn.nn import no_grad  # noqa: E402

__all__ = [
    "__version__", "show_config", "set_backend", "get_backend", "use_backend",
    "set_num_threads", "get_num_threads", "manual_seed", "ops",
    "nn", "optim", "init", "data", "datasets", "callbacks", "fit", "evaluate", "predict",
    "save", "load", "no_grad",
]
