"""Small data sets: the 8x8 handwritten digits shipped inside the package (no download),
and 2-D toy generators for classification.

    X, y = pynn.datasets.load_digits()          # X float32 (1797, 64) in [0, 1], y int64
    X, y = pynn.datasets.make_spirals(1000, noise=0.2, seed=0)
"""
import gzip
import importlib.resources
import io

import numpy as np

from pynn import _config

__all__ = ["load_digits", "make_spirals", "make_moons"]


def load_digits(as_images=False):
    """The 1797 8x8 handwritten digits (UCI, CC BY 4.0; see datasets/data/README.md).

    Returns (X, y): X float32 of shape (1797, 64), or (1797, 1, 8, 8) with
    `as_images=True` (N, C, H, W), the pixel counts 0..16 divided by 16 so that X lies in
    [0, 1]; y int64 of shape (1797,) with the digit 0..9. Each call returns new arrays.
    """
    if not isinstance(as_images, bool):
        raise TypeError(f"as_images must be a bool, not {type(as_images).__name__}")
    raw = importlib.resources.files(__name__).joinpath("data").joinpath("digits.csv.gz")
    raw = raw.read_bytes()
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",",
                       dtype=np.int64)
    X = table[:, :64].astype(np.float32) / np.float32(16.0)
    y = table[:, 64].copy()
    if as_images:
        X = X.reshape(-1, 1, 8, 8)
    return X, y


def _check_args(n_samples, noise, n_classes=None):
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, not {type(n_samples).__name__}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise TypeError(f"noise must be a real number, not {type(noise).__name__}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and non-negative, got {noise}")
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
            raise TypeError(f"n_classes must be an int, not {type(n_classes).__name__}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")


def _split_counts(n_samples, n_classes):
    """Samples per class, as even as possible (the first classes get the remainder)."""
    base, extra = divmod(n_samples, n_classes)
    return [base + (k < extra) for k in range(n_classes)]


def make_spirals(n_samples=1000, n_classes=2, noise=0.2, turns=1.5, seed=None):
    """Interleaved spiral arms, one per class, in the plane.

    Arm k holds points at angle t*turns*2*pi + 2*pi*k/n_classes and radius t for t in
    (0, 1]; Gaussian noise of standard deviation `noise * 0.1` is added to each
    coordinate. Returns X float32 (n_samples, 2) and y int64 (n_samples,), shuffled.
    `seed`: None (pynn's generator, see pynn.manual_seed), an int or a Generator.
    """
    _check_args(n_samples, noise, n_classes)
    if isinstance(turns, bool) or not isinstance(turns, (int, float, np.integer, np.floating)):
        raise TypeError(f"turns must be a real number, not {type(turns).__name__}")
    if not (np.isfinite(turns) and turns > 0):
        raise ValueError(f"turns must be finite and positive, got {turns}")
    gen = _config.generator(seed)
    xs, ys = [], []
    for k, count in enumerate(_split_counts(n_samples, n_classes)):
        t = np.linspace(0.0, 1.0, count + 1)[1:]
        angle = t * turns * 2 * np.pi + 2 * np.pi * k / n_classes
        xs.append(np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1))
        ys.append(np.full(count, k, dtype=np.int64))
    X = np.concatenate(xs) + gen.normal(0.0, 0.1 * noise, size=(n_samples, 2))
    y = np.concatenate(ys)
    order = gen.permutation(n_samples)
    return X[order].astype(np.float32), y[order]


def make_moons(n_samples=1000, noise=0.1, seed=None):
    """Two interleaving half circles (as scikit-learn's make_moons): class 0 on the upper
    arc centred at (0, 0), class 1 on the lower arc centred at (1, 0.5), radius 1, with
    Gaussian noise of standard deviation `noise` on each coordinate.

    Returns X float32 (n_samples, 2) and y int64 (n_samples,), shuffled.
    `seed`: None (pynn's generator), an int or a Generator.
    """
    _check_args(n_samples, noise)
    gen = _config.generator(seed)
    n_upper, n_lower = _split_counts(n_samples, 2)
    a = np.linspace(0.0, np.pi, n_upper)
    b = np.linspace(0.0, np.pi, n_lower)
    X = np.concatenate([np.stack([np.cos(a), np.sin(a)], axis=1),
                        np.stack([1.0 - np.cos(b), 0.5 - np.sin(b)], axis=1)])
    X += gen.normal(0.0, noise, size=X.shape)
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n_lower, np.int64)])
    order = gen.permutation(n_samples)
    return X[order].astype(np.float32), y[order]
