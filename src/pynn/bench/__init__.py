"""Benchmarks: native kernels vs the NumPy reference vs PyTorch, side by side in one run.

    python -m pynn bench [--quick] [--only GROUP ...]   every kernel family's cases
    python -m pynn bench gemm                            GEMM GFLOP/s and % of FMA peak
    python -m pynn bench train                           one MLP training epoch

Each case is timed on every backend in the same process, one after another, with the
same thread count for pynn, NumPy's BLAS and PyTorch; the figure is the best per-call
time over several rounds (the least disturbed by other work on a shared machine), and the
ratios are what to compare: absolute times drift from run to run.
"""
import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

import pynn

FAMILIES = ("gemm", "eltwise", "softmax_xent", "norm", "optim", "train")
REPORTS = ("gemm", "train")


def load_cases(groups=None, quick=False):
    cases = []
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"pynn.bench.{family}")
        except ModuleNotFoundError:
            continue
        for case in module.cases():
            if groups and case.group not in groups:
                continue
            if quick and not case.quick:
                continue
            cases.append(case)
    return cases


def time_call(fn, min_time=0.2, rounds=5):
    """Best seconds per call of `fn` over `rounds` rounds of at least `min_time` each."""
    fn()  # warm-up: first-touch allocation, lazy imports, caches
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


class ThreadLimits:
    """Caps NumPy's BLAS and PyTorch at pynn's thread count for the duration."""

    def __init__(self, nthreads):
        self.nthreads = nthreads
        self._limiter = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits

            self._limiter = threadpool_limits(limits=self.nthreads, user_api="blas")
        except ImportError:
            pass
        torch = _torch()
        if torch is not None:
            torch.set_num_threads(self.nthreads)
        return self

    def __exit__(self, *exc):
        if self._limiter is not None:
            self._limiter.restore_original_limits()

    @property
    def blas_capped(self):
        return self._limiter is not None or "OPENBLAS_NUM_THREADS" in os.environ


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def run_cases(cases, min_time=0.2, rounds=5, progress=None):
    """Time every case on native, numpy and torch; returns a list of result dicts."""
    backends = ["native", "numpy"] if pynn._native.AVAILABLE else ["numpy"]
    results = []
    for case in cases:
        row = {"group": case.group, "name": case.name, "flops": case.flops, "bytes": case.bytes}
        for backend in backends:
            with pynn.use_backend(backend):
                fn = case.make()
                row[backend] = time_call(fn, min_time, rounds)
        if case.make_torch is not None and _torch() is not None:
            row["torch"] = time_call(case.make_torch(), min_time, rounds)
        results.append(row)
        if progress:
            progress(row)
    return results


def _fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _ratio(a, b):
    return f"{b / a:.2f}x" if a and b else "-"


def format_table(results):
    header = ("case", "native", "numpy", "torch", "vs numpy", "vs torch", "rate")
    rows = []
    for r in results:
        t = r.get("native") or r.get("numpy")
        rate = ""
        if t and r.get("flops"):
            rate = f"{r['flops'] / t / 1e9:.1f} GFLOP/s"
        elif t and r.get("bytes"):
            rate = f"{r['bytes'] / t / 1e9:.1f} GB/s"
        rows.append((f"{r['group']}: {r['name']}", _fmt_time(r.get("native")),
                     _fmt_time(r.get("numpy")), _fmt_time(r.get("torch")),
                     _ratio(r.get("native"), r.get("numpy")),
                     _ratio(r.get("native"), r.get("torch")), rate))
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w)
                       for i, (h, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot(results, path):
    """Bar chart of speed-ups over the NumPy reference (and PyTorch), one bar pair a case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['group']}: {r['name']}" for r in results]
    vs_numpy = [r["numpy"] / r["native"] if r.get("native") else np.nan for r in results]
    vs_torch = [r["torch"] / r["native"] if r.get("native") and r.get("torch") else np.nan
                for r in results]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(names) + 1.5))
    ax.barh(y - 0.2, vs_numpy, 0.4, label="vs NumPy reference")
    ax.barh(y + 0.2, vs_torch, 0.4, label="vs PyTorch")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of pynn native (x, log scale)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def header_lines(nthreads, limits, rounds):
    info = pynn._config.config_info()
    torch = _torch()
    return [
        f"pynn {info['version']}  simd={info.get('simd', 'n/a')}  threads={nthreads}  "
        f"numpy {np.__version__} (BLAS threads {'capped' if limits.blas_capped else 'NOT capped'})"
        + (f"  torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else
           "  torch not installed"),
        f"times: best per-call time of {rounds} rounds; ratios: how many times faster pynn native is",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pynn bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", nargs="?", choices=("kernels",) + REPORTS, default="kernels",
                        help="what to run (default: every kernel family's cases)")
    parser.add_argument("--quick", action="store_true", help="fewer cases, shorter rounds")
    parser.add_argument("--only", nargs="+", metavar="GROUP", choices=FAMILIES,
                        help="only these kernel families")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a PNG of the speed-ups (needs matplotlib)")
    args, rest = parser.parse_known_args(argv)
    if args.threads is not None:
        pynn.set_num_threads(args.threads)
    nthreads = pynn.get_num_threads()
    if args.report in REPORTS:
        module = importlib.import_module(f"pynn.bench.{args.report}")
        with ThreadLimits(nthreads):
            return module.main(rest + (["--quick"] if args.quick else []))
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")

    cases = load_cases(args.only, args.quick)
    rounds = 3 if args.quick else 5
    with ThreadLimits(nthreads) as limits:
        for line in header_lines(nthreads, limits, rounds):
            print(line)
        if not pynn._native.AVAILABLE:
            print(f"native backend unavailable: {pynn._native.IMPORT_ERROR}")
        results = run_cases(cases, min_time=0.05 if args.quick else 0.2, rounds=rounds,
                            progress=lambda r: print(f"  timed {r['group']}: {r['name']}",
                                                     file=sys.stderr, flush=True))
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0
