"""What a benchmark case is. Each kernel family lists its cases in pynn/bench/<family>.py
as `def cases(): return [Case(...), ...]`; the runner (pynn.bench) times every case on the
native backend, the NumPy reference and, when installed, PyTorch, in one run."""
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Case:
    group: str                  # kernel family: "gemm", "eltwise", "softmax_xent", ...
    name: str                   # what is timed, with its shape: "sigmoid fwd (1048576,)"
    make: Callable[[], Callable[[], object]]
    """Builds inputs and returns a zero-argument function to time. It is called once per
    backend, inside `pynn.use_backend(...)`, and the function it returns must call the
    public API (pynn.ops, nn, optim) so that the backend in force runs it."""
    make_torch: Optional[Callable[[], Callable[[], object]]] = None
    """The same computation in PyTorch (imported inside), or None if there is none."""
    quick: bool = True          # part of `python -m pynn bench --quick`
    flops: Optional[float] = None    # floating-point operations per call, for GFLOP/s
    bytes: Optional[float] = None    # bytes moved per call (minimum), for GB/s
    extra: dict = field(default_factory=dict)
