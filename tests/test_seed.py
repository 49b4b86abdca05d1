"""pynn.manual_seed: one generator, reseeded in place, so everything holding it follows."""
import numpy as np
import pytest

import pynn
from pynn import _config, data, nn


def test_manual_seed_draws_what_default_rng_draws():
    pynn.manual_seed(42)
    got = _config.rng().normal(size=5)
    np.testing.assert_array_equal(got, np.random.default_rng(42).normal(size=5))
    pynn.manual_seed(42)
    assert _config.next_seed() == int(np.random.default_rng(42).integers(0, 2**63 - 1))


def test_manual_seed_reseeds_the_generator_in_place():
    held = _config.rng()
    pynn.manual_seed(1)
    assert _config.rng() is held and _config.generator(None) is held
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":   # seed sequences pickle from 2.0
        child = held.spawn(1)[0].random()
        pynn.manual_seed(1)
        assert held.spawn(1)[0].random() == child


def test_objects_built_before_manual_seed_follow_it():
    x = np.zeros((4, 3), np.float32)
    X = np.arange(12, dtype=np.float32).reshape(12, 1)
    noise = data.GaussianNoise(0.5)
    batches = data.BatchIterator(X, batch_size=5, shuffle=True)

    def draw():
        return noise(x), np.concatenate(list(batches))

    pynn.manual_seed(5)
    first = draw()
    pynn.manual_seed(5)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    pynn.manual_seed(5)
    fresh = data.GaussianNoise(0.5)(x)
    np.testing.assert_array_equal(fresh, first[0])   # built before or after: the same draws


@pytest.mark.parametrize("build_first", [False, True])
def test_fit_is_reproducible_whenever_the_pipeline_is_built(build_first):
    X, y = pynn.datasets.make_moons(64, seed=0)

    def train():
        noise = data.GaussianNoise(0.05) if build_first else None
        pynn.manual_seed(123)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        augment = noise if build_first else data.GaussianNoise(0.05)
        history = pynn.fit(model, X, y, epochs=2, batch_size=16, augment=augment, verbose=0,
                           progress=False)
        return history.history["loss"], [p.copy() for p in model.state_dict().values()]

    (loss_a, weights_a), (loss_b, weights_b) = train(), train()
    assert loss_a == loss_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
