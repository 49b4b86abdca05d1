"""GEMM: GFLOP/s and % of the machine's float32 FMA peak, pynn vs NumPy's BLAS vs PyTorch.

    python -m pynn bench gemm [--quick] [--threads N] [--rounds R]   (about 2 minutes; --quick: 1)

Shapes: the three products of each layer of a 784-512-256-10 MLP at batch 32, 128 and 512
-- forward x @ w.T (NT), input gradient dy @ w (NN), weight gradient dy.T @ x (TN), with
the transposes passed as views, as layers pass them -- and square NN products of 256 to
2048. Each library computes the same np.matmul-style product of the same float32 views:
pynn.ops.matmul, numpy.matmul and torch.matmul, with the same thread count. The peak is
measured at run time by a loop of independent FMAs on the widest vectors the CPU has.

Timing: per shape, the libraries take turns for several rounds and each keeps its best
per-call time, so that a burst of other work on a shared machine hits all of them alike.
"""
import argparse
import math
import os
import time

import numpy as np

import pynn
from pynn import _native, ops
from pynn.bench._registry import Case

GROUP = "gemm"
MLP = (784, 512, 256, 10)
BATCHES = (32, 128, 512)
SQUARES = (256, 512, 1024, 2048)


def shapes():
    """(label, kind, m, n, k) of every product the report times."""
    out = []
    for batch in BATCHES:
        for fan_in, fan_out in zip(MLP[:-1], MLP[1:]):
            layer = f"{fan_in}->{fan_out} b{batch}"
            out.append((f"fwd  {layer}", "NT", batch, fan_out, fan_in))
            out.append((f"dx   {layer}", "NN", batch, fan_in, fan_out))
            out.append((f"dw   {layer}", "TN", fan_out, fan_in, batch))
    for s in SQUARES:
        out.append((f"square {s}", "NN", s, s, s))
    return out


def operands(kind, m, n, k, seed=0):
    """float32 views a (m, k) and b (k, n), transposed where `kind` says (T: a transposed
    view of a contiguous array, as w.T or dy.T in a layer)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if kind[0] == "T" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if kind[1] == "T" else (k, n), dtype=np.float32)
    return (a.T if kind[0] == "T" else a), (b.T if kind[1] == "T" else b)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _calls_in(fn, seconds):
    """Calls fn repeatedly for about `seconds`; returns how many calls that took."""
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls


# Idle worker threads keep spinning for a while after a call (OpenBLAS's for up to about
# 0.1 s), taking a core from whichever library runs next: a pause between libraries lets
# them go to sleep first. Waking sleeping threads takes long on a virtual machine, so each
# library then runs untimed for a while before its timed batch.
SETTLE = 0.15


def best_times(fns, rounds, min_time):
    """Best seconds per call of each function, the functions taking turns each round."""
    counts = []
    for fn in fns:
        fn()
        counts.append(max(1, 4 * _calls_in(fn, min_time / 4)))
        time.sleep(SETTLE)
    best = [math.inf] * len(fns)
    for _ in range(rounds):
        for i, (fn, count) in enumerate(zip(fns, counts)):
            _calls_in(fn, min_time / 4)
            t0 = time.perf_counter()
            for _ in range(count):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / count)
            time.sleep(SETTLE)
    return best


def _geomean(values):
    values = [x for x in values if x]
    return math.exp(sum(math.log(x) for x in values) / len(values)) if values else float("nan")


def _blas_threads():
    """How many threads NumPy's BLAS runs, as far as can be told."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        return f"{env} (from the environment)" if env else "its default (threadpoolctl absent)"
    counts = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    return ", ".join(str(c) for c in sorted(counts)) or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pynn bench gemm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter batches")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library")
    parser.add_argument("--rounds", type=int, default=None,
                        help="turns each library takes per shape, the best counting "
                             "(default 6; --quick 2): more catch more quiet moments on a "
                             "shared machine")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.threads is not None:
        pynn.set_num_threads(args.threads)
    nthreads = pynn.get_num_threads()
    if not _native.AVAILABLE:
        print(f"native backend unavailable ({_native.IMPORT_ERROR}): nothing to compare")
        return 1
    from pynn._native import _gemm

    # before any library has started worker threads that could still be spinning
    peak = _gemm._fma_peak_gflops(nthreads)
    tile = _gemm._tile_peak_gflops(nthreads)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(nthreads)
    rounds, min_time = (2, 0.02) if args.quick else (6, 0.03)
    if args.rounds is not None:
        rounds = args.rounds
    print(f"pynn {pynn.__version__} ({_native.get_isa()}, {nthreads} threads), numpy "
          f"{np.__version__} (BLAS threads: {_blas_threads()})"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
             else ", torch not installed"))
    print(f"measured float32 FMA peak: {peak:.1f} GFLOP/s on {nthreads} threads; pynn's "
          f"micro-kernel with its panels in L1: {tile:.1f} ({100 * tile / peak:.0f}%), the "
          f"ceiling of a large product")
    names = ["pynn", "numpy"] + (["torch"] if torch else [])
    header = (f"{'product':<22}{'op':>3}{'M':>6}{'N':>6}{'K':>6}"
              + "".join(f"{name + ' GF/s':>13}{'%pk':>5}" for name in names)
              + f"{'vs numpy':>10}" + (f"{'vs torch':>10}" if torch else ""))
    print(header)
    print("-" * len(header))
    vs_numpy, vs_torch, big = [], [], []
    with pynn.use_backend("native"):
        for label, kind, m, n, k in shapes():
            a, b = operands(kind, m, n, k)
            fns = [lambda: ops.matmul(a, b), lambda: np.matmul(a, b)]
            if torch:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)  # the same strided views
                fns.append(lambda: torch.matmul(ta, tb))
            times = best_times(fns, rounds, min_time)
            rates = [2.0 * m * n * k / t / 1e9 for t in times]
            vs_numpy.append(times[1] / times[0])
            if min(m, n, k) >= 1024:
                big.append(f"{label.strip()} {100 * rates[0] / peak:.0f}%")
            line = f"{label:<22}{kind:>3}{m:>6}{n:>6}{k:>6}" + "".join(
                f"{r:>13.1f}{100 * r / peak:>5.0f}" for r in rates) + f"{vs_numpy[-1]:>9.2f}x"
            if torch:
                vs_torch.append(times[2] / times[0])
                line += f"{vs_torch[-1]:>9.2f}x"
            print(line, flush=True)
    print("-" * len(header))
    print(f"pynn vs numpy: lowest {min(vs_numpy):.2f}x, geometric mean {_geomean(vs_numpy):.2f}x"
          + (f"; vs torch: geometric mean {_geomean(vs_torch):.2f}x" if torch else ""))
    print(f"pynn at 1024 and above: {', '.join(big)} of the FMA peak")
    return 0


def _linear_case(batch, fan_in, fan_out, activation, quick=True):
    def data():
        rng = np.random.default_rng(0)
        scale = np.float32(1 / math.sqrt(fan_in))
        return (rng.standard_normal((batch, fan_in), dtype=np.float32),
                rng.standard_normal((fan_out, fan_in), dtype=np.float32) * scale,
                rng.standard_normal(fan_out, dtype=np.float32))

    def make():
        x, w, b = data()
        return lambda: ops.linear(x, w, b, activation)

    def make_torch():
        import torch

        x, w, b = (torch.from_numpy(t) for t in data())
        act = getattr(torch.nn.functional, activation) if activation else (lambda t: t)
        return lambda: act(torch.nn.functional.linear(x, w, b))

    return Case(GROUP, f"linear+{activation or 'none'} ({batch}, {fan_in})->{fan_out} f32", make,
                make_torch, quick=quick, flops=2.0 * batch * fan_in * fan_out)


def _linear_backward_case(batch, fan_in, fan_out, quick=True):
    def data():
        rng = np.random.default_rng(1)
        return (rng.standard_normal((batch, fan_out), dtype=np.float32),
                rng.standard_normal((batch, fan_in), dtype=np.float32),
                rng.standard_normal((fan_out, fan_in), dtype=np.float32))

    def make():
        dy, x, w = data()
        dw, db = np.zeros_like(w), np.zeros(fan_out, np.float32)
        return lambda: ops.linear_backward(dy, x, w, dw=dw, db=db)

    def make_torch():
        import torch

        dy, x, w = (torch.from_numpy(t) for t in data())
        dw, db = torch.zeros_like(w), torch.zeros(fan_out)

        def step():
            dx = dy @ w
            dw.addmm_(dy.T, x)
            db.add_(dy.sum(0))
            return dx
        return step

    return Case(GROUP, f"linear backward ({batch}, {fan_in})->{fan_out} f32", make, make_torch,
                quick=quick, flops=4.0 * batch * fan_in * fan_out)


def _matmul_case(shape_a, shape_b, quick=True):
    def data():
        rng = np.random.default_rng(2)
        return (rng.standard_normal(shape_a, dtype=np.float32),
                rng.standard_normal(shape_b, dtype=np.float32))

    def make():
        a, b = data()
        return lambda: ops.matmul(a, b)

    def make_torch():
        import torch

        a, b = (torch.from_numpy(t) for t in data())
        return lambda: torch.matmul(a, b)

    m, k = shape_a[-2:]
    n = shape_b[-1]
    batch = math.prod(np.broadcast_shapes(shape_a[:-2], shape_b[:-2]))
    return Case(GROUP, f"matmul {shape_a} @ {shape_b} f32", make, make_torch, quick=quick,
                flops=2.0 * batch * m * n * k)


def cases():
    return [
        _linear_case(128, 784, 512, "relu"),
        _linear_case(32, 256, 10, None),
        _linear_case(512, 512, 256, "gelu", quick=False),
        _linear_backward_case(128, 784, 512),
        _linear_backward_case(512, 512, 256, quick=False),
        _matmul_case((512, 512), (512, 512)),
        _matmul_case((8, 4, 64, 32), (8, 4, 32, 64), quick=False),
    ]
