"""Data preparation: scaling fitted on the training set, splits, mini-batches, and
augmentation of feature vectors.

    X_train, X_test, y_train, y_test = pynn.data.train_test_split(X, y, test_size=0.2, seed=0)
    X_train, X_test = pynn.data.standardize(X_train, X_test)   # statistics of X_train only
    for xb, yb in pynn.data.BatchIterator(X_train, y_train, batch_size=64, shuffle=True):
        ...
"""
import numpy as np

from pynn import _config
from pynn.ops._validate import check_int

__all__ = ["Standardizer", "Normalizer", "standardize", "normalize", "train_test_split",
           "BatchIterator", "GaussianNoise"]


def _features(X, name="X"):
    """X as a float array of at least one dimension (samples first)."""
    try:
        a = np.asarray(X)
    except Exception as exc:
        raise TypeError(f"{name}: cannot convert {type(X).__name__} to an array ({exc})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim < 1:
        raise ValueError(f"{name} must have a sample axis, got a scalar")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


class _Scaler:
    """Shared fit/transform plumbing: statistics are per feature over axis 0."""

    def __init__(self):
        self._fitted = False

    def fit(self, X):
        X = _features(X)
        if X.shape[0] == 0:
            raise ValueError("X has no samples to fit on")
        self._fit(X)
        self._fitted = True
        return self

    def _check(self, X):
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X_train) first")
        X = _features(X)
        if X.shape[1:] != self._shape:
            raise ValueError(f"X has features of shape {X.shape[1:]}, but the scaler was "
                             f"fitted on features of shape {self._shape}")
        return X

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class Standardizer(_Scaler):
    """Scale each feature to zero mean and unit variance using the statistics of the data
    passed to fit (the training set), then apply the same shift and scale elsewhere.

    mean_ and scale_ (the standard deviation, with 1 where a feature is constant) have the
    shape of one sample. The output keeps the input's float dtype (integers give float64).
    """

    def _fit(self, X):
        self._shape = X.shape[1:]
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        self.scale_ = np.where(std > 0, std, 1.0)

    def transform(self, X):
        X = self._check(X)
        return ((X - self.mean_) / self.scale_).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        X = self._check(X)
        return (X * self.scale_ + self.mean_).astype(X.dtype, copy=False)


class Normalizer(_Scaler):
    """Scale each feature linearly so that the data passed to fit spans `feature_range`
    (min-max scaling); data outside the fitted range maps outside it. Constant features
    map to the lower end."""

    def __init__(self, feature_range=(0.0, 1.0)):
        super().__init__()
        try:
            low, high = (float(v) for v in feature_range)
        except (TypeError, ValueError):
            raise TypeError(f"feature_range must be a pair of numbers, "
                            f"got {feature_range!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"feature_range must be finite with low < high, got {feature_range!r}")
        self.feature_range = (low, high)

    def _fit(self, X):
        self._shape = X.shape[1:]
        self.min_ = X.min(axis=0).astype(np.float64)
        span = X.max(axis=0).astype(np.float64) - self.min_
        width = self.feature_range[1] - self.feature_range[0]
        self.scale_ = width / np.where(span > 0, span, 1.0)

    def transform(self, X):
        X = self._check(X)
        return ((X - self.min_) * self.scale_ + self.feature_range[0]).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        X = self._check(X)
        return ((X - self.feature_range[0]) / self.scale_ + self.min_).astype(X.dtype, copy=False)


def standardize(train, *others):
    """Standardize `train` with its own per-feature mean and deviation and apply the same
    transform to each array in `others` (validation, test). Returns a tuple of arrays in
    the order given. Keep a Standardizer instead when new data must be scaled later."""
    scaler = Standardizer().fit(train)
    return tuple(scaler.transform(a) for a in (train, *others))


def normalize(train, *others, feature_range=(0.0, 1.0)):
    """Min-max scale `train` to `feature_range` and apply the same transform to each array
    in `others`. Returns a tuple of arrays in the order given."""
    scaler = Normalizer(feature_range).fit(train)
    return tuple(scaler.transform(a) for a in (train, *others))


def _check_same_length(arrays):
    arrays = [np.asarray(a) if not isinstance(a, np.ndarray) else a for a in arrays]
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"array {i} is a scalar; every array needs a sample axis")
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"arrays have different numbers of samples: {[len(a) for a in arrays]}")
    return arrays


def _split_sizes(n, test_size):
    """(n_train, n_test) as scikit-learn computes them: ceil(test_size * n) test samples
    for a fraction, the int itself otherwise; both parts must be non-empty."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer,
                                                                 np.floating)):
        raise TypeError(f"test_size must be a fraction or a number of samples, "
                        f"not {type(test_size).__name__}")
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}")
        n_test = int(np.ceil(test_size * n))
    else:
        n_test = int(test_size)
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size gives {n_test} test samples out of {n}; both parts "
                         "need at least one sample")
    return n - n_test, n_test


def _stratified_test_counts(counts, n_test, gen):
    """Test samples per class: each class's exact share counts * n_test / n rounded down,
    then one more for the classes with the largest remainders until n_test is reached
    (ties broken at random, so no class is favoured by its label)."""
    share = counts * n_test
    n = int(counts.sum())
    k = share // n
    missing = n_test - int(k.sum())
    if missing:
        order = np.lexsort((gen.random(len(counts)), -(share % n)))
        k[order[:missing]] += 1
    return k


def train_test_split(*arrays, test_size=0.25, shuffle=True, stratify=None, seed=None):
    """Split arrays (same first dimension) into train and test parts, as scikit-learn does:
    returns [a_train, a_test, b_train, b_test, ...].

    test_size: a fraction in (0, 1), giving ceil(test_size * n) test samples, or a number
    of samples; the train part holds the rest, and both must be non-empty. stratify:
    labels (n,) whose class proportions both parts keep: each class gives its share of
    the test part, rounded so that the sizes are exactly those asked for; every class
    needs at least 2 members, and each part at least as many samples as there are
    classes (scikit-learn's conditions). seed: None (pynn's generator), an int or a
    Generator; shuffle=False takes the last samples as the test part.
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    arrays = _check_same_length(arrays)
    n = len(arrays[0])
    n_train, n_test = _split_sizes(n, test_size)
    if stratify is not None:
        if not shuffle:
            raise ValueError("stratify requires shuffle=True")
        labels = np.asarray(stratify)
        if labels.shape != (n,):
            raise ValueError(f"stratify must have shape ({n},), got {labels.shape}")
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if counts.min() < 2:
            raise ValueError(f"the least populated class in stratify has only 1 member, "
                             f"which is too few to split; classes with 1 member: "
                             f"{classes[counts < 2].tolist()}")
        for part, size in (("train", n_train), ("test", n_test)):
            if size < len(classes):
                raise ValueError(f"test_size gives the {part} part {size} of {n} samples, "
                                 f"fewer than the {len(classes)} classes in stratify")
        gen = _config.generator(seed)
        k_test = _stratified_test_counts(counts, n_test, gen)
        test_idx, train_idx = [], []
        for c, k in enumerate(k_test):
            members = gen.permutation(np.flatnonzero(inverse == c))
            test_idx.append(members[:k])
            train_idx.append(members[k:])
        test = gen.permutation(np.concatenate(test_idx))
        train = gen.permutation(np.concatenate(train_idx))
    elif shuffle:
        order = _config.generator(seed).permutation(n)
        train, test = order[n_test:], order[:n_test]
    else:
        train, test = np.arange(n_train), np.arange(n_train, n)
    out = []
    for a in arrays:
        out.extend((a[train], a[test]))
    return out


def _take(a, idx):
    """a[idx] for an int64 index array: the rows copied by the backend's gather (take_rows:
    on threads in the native one, where a shuffled batch of a large data set is mostly a
    wait on memory) when a is a C-contiguous array, else by indexing."""
    if type(a) is np.ndarray and a.ndim and a.flags.c_contiguous and not a.dtype.hasobject:
        out = np.empty((len(idx),) + a.shape[1:], a.dtype)
        _config.backend_module().take_rows(out, a, idx)
        return out
    return a[idx]


class BatchIterator:
    """Mini-batches over (X, y): iterating yields (X_batch, y_batch), or X_batch alone when
    y is None. len() is the number of batches per pass.

    shuffle: a new order each pass (drawn from `seed`: None for pynn's generator, an int
    or a Generator). drop_last: skip a final batch smaller than batch_size. min_last: a
    final batch of fewer samples joins the one before (batch norm, which cannot train on
    one sample, takes 2); ignored with drop_last. transform: a
    callable applied to each X batch (augmentation such as GaussianNoise); it gets a
    batch of its own, which it may change in place.

    The source arrays are never modified: shuffled batches are copies, and batches in
    order are read-only views of X and y (an in-place write raises ValueError), except
    that a transform gets a copy.
    """

    def __init__(self, X, y=None, batch_size=32, shuffle=False, drop_last=False, seed=None,
                 transform=None, min_last=1):
        arrays = _check_same_length([X] if y is None else [X, y])
        self.X = arrays[0]
        self.y = None if y is None else arrays[1]
        self.batch_size = check_int(batch_size, "batch_size", 1)
        if transform is not None and not callable(transform):
            raise TypeError("transform must be callable or None")
        self.min_last = check_int(min_last, "min_last", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self._gen = _config.generator(seed) if shuffle else None

    def __len__(self):
        full, rest = divmod(len(self.X), self.batch_size)
        if self.drop_last or rest == 0:
            return full
        return full if full and rest < self.min_last else full + 1

    def __iter__(self):
        n = len(self.X)
        order = self._gen.permutation(n) if self.shuffle else None
        last = len(self) - 1
        for b in range(last + 1):
            lo = b * self.batch_size
            # the last batch takes what is left, unless drop_last leaves it out
            hi = n if b == last and not self.drop_last else lo + self.batch_size
            if order is None:
                xb = self.X[lo:hi]
                yb = None if self.y is None else self.y[lo:hi]
                if self.transform is not None:
                    xb = xb.copy()       # a transform may work in place
                else:
                    xb.flags.writeable = False
                if yb is not None:
                    yb.flags.writeable = False
            else:
                idx = order[lo:hi]
                xb = _take(self.X, idx)
                yb = None if self.y is None else _take(self.y, idx)
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb if yb is None else (xb, yb)


class GaussianNoise:
    """Augmentation for feature vectors: returns x + N(0, std^2) noise (a new array of x's
    float dtype), optionally clipped to `clip` = (low, high). `seed` as in BatchIterator."""

    def __init__(self, std=0.1, clip=None, seed=None):
        if isinstance(std, bool) or not isinstance(std, (int, float, np.integer, np.floating)):
            raise TypeError(f"std must be a real number, not {type(std).__name__}")
        if not (np.isfinite(std) and std >= 0):
            raise ValueError(f"std must be finite and non-negative, got {std}")
        if clip is not None:
            try:
                low, high = (float(v) for v in clip)
            except (TypeError, ValueError):
                raise TypeError(f"clip must be None or a pair of numbers, got {clip!r}") from None
            if not low <= high:
                raise ValueError(f"clip must have low <= high, got {clip!r}")
            clip = (low, high)
        self.std = float(std)
        self.clip = clip
        self._gen = _config.generator(seed)

    def __call__(self, x):
        x = _features(x, "x")
        noisy = x + self._gen.normal(0.0, self.std, size=x.shape).astype(x.dtype)
        if self.clip is not None:
            np.clip(noisy, self.clip[0], self.clip[1], out=noisy)
        return noisy

    def __repr__(self):
        return f"GaussianNoise(std={self.std}, clip={self.clip})"
