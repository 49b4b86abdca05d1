"""pynn.data (scaling, splits, batches, augmentation) and pynn.datasets."""
import numpy as np
import pytest

import pynn
from pynn import data, datasets


def test_load_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.bincount(y) >= 170)
    assert (X * 16 == np.round(X * 16)).all()     # pixel counts 0..16, exactly
    images, y2 = datasets.load_digits(as_images=True)
    assert images.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(images.reshape(1797, 64), X)
    np.testing.assert_array_equal(y, y2)
    X[0, 0] = 5   # each call returns fresh arrays
    assert datasets.load_digits()[0][0, 0] == 0


def test_digits_licence_is_shipped():
    import importlib.resources

    readme = importlib.resources.files("pynn.datasets").joinpath("data").joinpath("README.md")
    text = readme.read_text()
    assert "CC BY 4.0" in text and "Alpaydin" in text and "UCI" in text


@pytest.mark.parametrize("make", [lambda s: datasets.make_spirals(301, n_classes=3, seed=s),
                                  lambda s: datasets.make_moons(301, seed=s)])
def test_generators_are_seeded_and_balanced(make):
    X, y = make(0)
    X2, y2 = make(0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert X.shape == (301, 2) and X.dtype == np.float32 and y.dtype == np.int64
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1
    assert not np.array_equal(make(1)[0], X)


def test_generator_errors():
    with pytest.raises(ValueError, match="n_samples"):
        datasets.make_moons(0)
    with pytest.raises(ValueError, match="n_classes"):
        datasets.make_spirals(10, n_classes=1)
    with pytest.raises(TypeError, match="seed"):
        datasets.make_moons(10, seed="x")


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, (500, 4)).astype(np.float32)
    train[:, 2] = 7.0   # a constant feature
    test = rng.normal(5.0, 3.0, (100, 4)).astype(np.float32)
    a, b = data.standardize(train, test)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a[:, [0, 1, 3]].std(axis=0), 1, rtol=1e-4)
    np.testing.assert_array_equal(a[:, 2], 0)
    scaler = data.Standardizer().fit(train)
    np.testing.assert_allclose(b, (test - scaler.mean_) / scaler.scale_, rtol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(b), test, rtol=1e-5)
    with pytest.raises(ValueError, match="features of shape"):
        scaler.transform(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        data.Standardizer().transform(train)


def test_normalize_maps_training_range():
    train = np.array([[0.0, 10.0], [5.0, 20.0], [10.0, 30.0]])
    a, b = data.normalize(train, np.array([[20.0, 10.0]]), feature_range=(-1, 1))
    np.testing.assert_allclose(a, [[-1, -1], [0, 0], [1, 1]])
    np.testing.assert_allclose(b, [[3, -1]])
    with pytest.raises(ValueError, match="feature_range"):
        data.Normalizer((1, 1))


def test_train_test_split():
    X = np.arange(100).reshape(50, 2)
    y = np.arange(50) % 5
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, test_size=0.2, seed=0)
    assert len(X_te) == 10 and len(X_tr) == 40
    np.testing.assert_array_equal(X_tr[:, 0] // 2 % 5, y_tr)   # rows stay paired
    assert sorted(np.concatenate([X_tr[:, 0], X_te[:, 0]]).tolist()) == list(range(0, 100, 2))
    _, _, _, strat = data.train_test_split(X, y, test_size=0.2, stratify=y, seed=1)
    assert np.all(np.bincount(strat) == 2)
    a, b = data.train_test_split(X, test_size=5, shuffle=False)
    np.testing.assert_array_equal(b, X[-5:])
    with pytest.raises(ValueError, match="different numbers of samples"):
        data.train_test_split(X, y[:-1])
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(X, test_size=1.5)


@pytest.mark.parametrize("test_size, n_test", [(0.2, 360), (360, 360), (0.001, 2), (0.999, 1796),
                                             (1796, 1796), (1, 1), (np.int64(7), 7)])
def test_split_sizes_follow_scikit_learn(test_size, n_test):
    X, _ = datasets.load_digits()
    X_tr, X_te = data.train_test_split(X, test_size=test_size, seed=0)
    assert (len(X_tr), len(X_te)) == (1797 - n_test, n_test)   # ceil(test_size * n) for a fraction
    X_tr, X_te = data.train_test_split(X, test_size=test_size, shuffle=False)
    assert (len(X_tr), len(X_te)) == (1797 - n_test, n_test)


@pytest.mark.parametrize("test_size", [0.2, 360, 0.5, 11, 1786, 0.9])
def test_stratified_split_gives_the_requested_sizes(test_size):
    X, y = datasets.load_digits()
    n_test = int(np.ceil(test_size * 1797)) if isinstance(test_size, float) else test_size
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, test_size=test_size, stratify=y, seed=0)
    assert (len(X_tr), len(X_te)) == (1797 - n_test, n_test)
    share = np.bincount(y) * n_test / 1797       # each class gives its share, rounded
    assert np.all(np.abs(np.bincount(y_te, minlength=10) - share) < 1)
    np.testing.assert_array_equal(np.bincount(y_tr) + np.bincount(y_te, minlength=10),
                                  np.bincount(y))
    rows = np.concatenate([X_tr, X_te])
    assert len(np.unique(rows, axis=0)) == len(np.unique(X, axis=0))


def test_stratified_split_rounds_by_largest_remainder():
    y = np.repeat([0, 1, 2], 5)
    extra = set()
    for seed in range(30):
        _, y_te = data.train_test_split(y, test_size=4, stratify=y, seed=seed)
        counts = np.bincount(y_te, minlength=3)
        assert len(y_te) == 4 and sorted(counts) == [1, 1, 2]
        extra.add(int(np.argmax(counts)))
    assert extra == {0, 1, 2}     # ties go to a random class, not always the first


def test_stratified_split_errors():
    X, y = datasets.load_digits()
    for test_size in (5, 0.001):
        with pytest.raises(ValueError, match="test part .* fewer than the 10 classes"):
            data.train_test_split(X, y, test_size=test_size, stratify=y, seed=0)
    with pytest.raises(ValueError, match="train part .* fewer than the 10 classes"):
        data.train_test_split(X, y, test_size=0.999, stratify=y, seed=0)
    labels = np.array([0] * 9 + [1])
    with pytest.raises(ValueError, match="only 1 member.*: \\[1\\]"):
        data.train_test_split(np.arange(10), labels, test_size=0.5, stratify=labels, seed=0)
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(np.arange(10), test_size=0.999)   # ceil(9.99): an empty train part
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(np.arange(10), test_size=0)
    with pytest.raises(ValueError, match="shuffle"):
        data.train_test_split(np.arange(10), test_size=2, stratify=labels, shuffle=False)


def test_batch_iterator():
    X = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    batches = data.BatchIterator(X, y, batch_size=4)
    assert len(batches) == 3
    got = list(batches)
    assert [len(b[1]) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)
    shuffled = data.BatchIterator(X, y, batch_size=4, shuffle=True, drop_last=True, seed=0)
    assert len(shuffled) == 2
    epoch1 = np.concatenate([b for _, b in shuffled])
    epoch2 = np.concatenate([b for _, b in shuffled])
    assert len(epoch1) == 8 and not np.array_equal(epoch1, epoch2)
    for xb, yb in shuffled:
        np.testing.assert_array_equal(xb[:, 0], yb)
    assert [len(b) for b in data.BatchIterator(X, batch_size=3)] == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="batch_size"):
        data.BatchIterator(X, y, batch_size=0)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_short_last_batch_joins_the_one_before(shuffle):
    X = np.arange(21, dtype=np.float32).reshape(21, 1)
    sizes = lambda **kw: [len(b) for b in data.BatchIterator(X, batch_size=5, shuffle=shuffle,
                                                              seed=0, **kw)]
    assert sizes(min_last=2) == [5, 5, 5, 6]
    assert sizes(min_last=1) == [5, 5, 5, 5, 1]
    assert sizes(min_last=2, drop_last=True) == [5, 5, 5, 5]
    assert len(data.BatchIterator(X, batch_size=5, min_last=2)) == 4
    assert sorted(np.concatenate(list(data.BatchIterator(X, batch_size=5, shuffle=shuffle,
                                                         seed=0, min_last=2))).ravel()) \
        == list(range(21))
    assert sizes(min_last=30) == [5, 5, 5, 6]      # a single batch is never merged away
    assert [len(b) for b in data.BatchIterator(X[:3], batch_size=5, min_last=30)] == [3]
    with pytest.raises(ValueError, match="min_last"):
        data.BatchIterator(X, min_last=0)


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_never_change_the_source(shuffle):
    """Batches in order are read-only views; shuffled ones are copies; a transform gets a
    batch of its own and may work in place. The source arrays never change."""
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    before = X.copy(), y.copy()
    for xb, yb in data.BatchIterator(X, y, batch_size=4, shuffle=shuffle, seed=0):
        if shuffle:
            xb += 1
            yb[0] = -1
        else:
            with pytest.raises(ValueError, match="read-only"):
                xb += 1
            with pytest.raises(ValueError, match="read-only"):
                yb[0] = -1
    def in_place(xb):
        xb *= 2
        return xb
    doubled = list(data.BatchIterator(X, y, batch_size=4, shuffle=shuffle, seed=0,
                                      transform=in_place))
    for xb, yb in doubled:
        np.testing.assert_array_equal(xb, 2 * X[yb])
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(y, before[1])
    assert X.flags.writeable and y.flags.writeable
    for xb in data.BatchIterator(X, batch_size=4, shuffle=shuffle, seed=0,
                                 transform=data.GaussianNoise(0.1, seed=0)):
        assert xb.flags.writeable and xb.dtype == np.float32   # a new array
    np.testing.assert_array_equal(X, before[0])


def test_gaussian_noise_augmentation():
    x = np.zeros((2000, 5), np.float32)
    noisy = data.GaussianNoise(0.5, seed=0)(x)
    assert noisy.dtype == np.float32 and np.all(x == 0)
    assert noisy.std() == pytest.approx(0.5, rel=0.03)
    clipped = data.GaussianNoise(1.0, clip=(0.0, 0.2), seed=0)(x)
    assert clipped.min() >= 0.0 and clipped.max() <= 0.2
    batches = data.BatchIterator(x, batch_size=1000, transform=data.GaussianNoise(0.1, seed=1))
    assert all(b.std() > 0.05 for b in batches)
    with pytest.raises(ValueError, match="std"):
        data.GaussianNoise(-1)


def test_seed_none_follows_manual_seed():
    pynn.manual_seed(3)
    a = datasets.make_moons(20)[0]
    pynn.manual_seed(3)
    np.testing.assert_array_equal(datasets.make_moons(20)[0], a)
