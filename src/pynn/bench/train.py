"""Training benchmark: a 784-512-256-10 ReLU MLP with Adam on synthetic MNIST-sized data.

`python -m pynn bench train` times one epoch of pynn.fit (shuffling, batching, forward,
fused cross-entropy, backward, Adam) on 60,000 samples at batch sizes 32, 128 and 512,
on pynn's native backend, pynn's NumPy backend and PyTorch (the equivalent plain loop),
with the same thread count, in one run. `--quick` times a tenth of an epoch and scales it
to a full one (the table says so). cases() gives one training step per batch size to the
kernel benchmark table.
"""
import argparse
import time

import numpy as np

import pynn
from pynn import _native
from pynn.bench._registry import Case

SIZES = (784, 512, 256, 10)
PARAMS = sum(i * o + o for i, o in zip(SIZES[:-1], SIZES[1:]))
SAMPLES = 60_000
BATCHES = (32, 128, 512)


def flops_per_sample():
    """Multiply-adds x 2 of forward (1x) and backward (2x): the usual 6 x parameters."""
    return 6.0 * PARAMS


def synthetic(n, seed=0):
    """Inputs like standardized MNIST pixels and uniformly random labels."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], n)


def pynn_model():
    from pynn import nn

    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_model(torch):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


# -- one training step (for the kernel table) ----------------------------------------------

def _pynn_step(batch):
    def make():
        from pynn import nn, optim
        from pynn.nn.containers import backward_through

        pynn.manual_seed(0)
        model = pynn_model()
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        x, y = synthetic(batch)

        def step():
            loss_fn(model(x), y)
            backward_through(model, loss_fn.backward(), False)
            opt.step()
            opt.zero_grad()
        return step
    return make


def _torch_step(batch):
    def make():
        import torch

        torch.manual_seed(0)
        model = torch_model(torch)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        x, y = (torch.from_numpy(a) for a in synthetic(batch))

        def step():
            loss_fn(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        return step
    return make


def cases():
    return [Case(group="train", name=f"MLP 784-512-256-10 Adam step, batch {b}",
                 make=_pynn_step(b), make_torch=_torch_step(b), quick=(b == 128),
                 flops=flops_per_sample() * b)
            for b in BATCHES]


# -- one epoch -----------------------------------------------------------------------------

def pynn_epoch(X, y, batch, backend):
    """Seconds for one epoch of pynn.fit on `backend` (after a few warm-up steps)."""
    from pynn import optim

    with pynn.use_backend(backend):
        pynn.manual_seed(0)
        model = pynn_model()
        opt = optim.Adam(model.parameters(), lr=1e-3)
        warm = min(len(X), 8 * batch)
        pynn.fit(model, X[:warm], y[:warm], optimizer=opt, epochs=1, batch_size=batch,
                 verbose=0, progress=False)
        start = time.perf_counter()
        pynn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=batch, verbose=0,
                 progress=False)
        return time.perf_counter() - start


def torch_epoch(X, y, batch):
    """Seconds for one epoch of the equivalent PyTorch loop (shuffled mini-batches)."""
    import torch

    torch.manual_seed(0)
    model = torch_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)

    def epoch(n):
        order = torch.randperm(n)
        for lo in range(0, n, batch):
            idx = order[lo:lo + batch]
            loss_fn(model(tx[idx]), ty[idx]).backward()
            opt.step()
            opt.zero_grad()

    epoch(min(len(X), 8 * batch))
    start = time.perf_counter()
    epoch(len(X))
    return time.perf_counter() - start


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pynn bench train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="time a tenth of an epoch and scale it to a full one")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCHES),
                        metavar="B")
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help="samples in an epoch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each library runs each epoch, taking turns; the best "
                             "time counts (a burst of other work then hits them alike)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    timed = max(args.samples // 10, max(args.batch_sizes)) if args.quick else args.samples
    scale = args.samples / timed
    X, y = synthetic(timed)
    backends = ["native", "numpy"] if _native.AVAILABLE else ["numpy"]
    torch = _torch()
    print(f"one epoch of {args.samples:,} samples, MLP {'-'.join(map(str, SIZES))} (ReLU) + "
          f"Adam, {pynn.get_num_threads()} thread(s)"
          + (f"; torch {torch.__version__} with {torch.get_num_threads()} thread(s)" if torch
             else "; torch not installed")
          + (f"; timed {timed:,} samples and scaled x{scale:g}" if scale != 1 else "")
          + f"; best of {args.rounds} rounds")
    if not _native.AVAILABLE:
        print(f"native backend unavailable: {_native.IMPORT_ERROR}")
    header = ("batch", "native", "numpy", "torch", "vs numpy", "vs torch", "native GFLOP/s",
              "samples/s")
    rows = []
    for batch in args.batch_sizes:
        seconds = {}
        for _ in range(args.rounds):
            times = {b: pynn_epoch(X, y, batch, b) for b in backends}
            if torch is not None:
                times["torch"] = torch_epoch(X, y, batch)
            for k, t in times.items():
                seconds[k] = min(seconds.get(k, float("inf")), t * scale)
        best = seconds.get("native", seconds["numpy"])
        rows.append((str(batch), *(f"{seconds[k]:.2f} s" if k in seconds else "-"
                                   for k in ("native", "numpy", "torch")),
                     f"{seconds['numpy'] / best:.2f}x" if "native" in seconds else "-",
                     f"{seconds['torch'] / best:.2f}x" if "torch" in seconds else "-",
                     f"{flops_per_sample() * args.samples / best / 1e9:.1f}",
                     f"{args.samples / best:,.0f}"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for i, row in enumerate([header] + rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    print("vs numpy / vs torch: how many times faster pynn native is; GFLOP/s counts "
          "6 x parameters per sample")
    return 0
