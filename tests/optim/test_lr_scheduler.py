"""Learning-rate schedules: the same sequences as torch.optim.lr_scheduler, and their
closed forms."""
import math

import numpy as np
import pytest

from pynn import nn, optim
from pynn.optim import lr_scheduler as sched

EPOCHS = 40


def _opt(lrs=(0.1,)):
    groups = [{"params": [nn.Parameter(np.zeros(1))], "lr": lr} for lr in lrs]
    return optim.SGD(groups, lr=lrs[0])


def _sequence(opt, scheduler, epochs=EPOCHS, metrics=None):
    out = []
    for epoch in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[epoch])
    return np.array(out)


def _torch_sequence(make, lrs=(0.1,), epochs=EPOCHS, metrics=None):
    torch = pytest.importorskip("torch", reason="torch not installed")
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    opt = torch.optim.SGD(groups, lr=lrs[0])
    scheduler = make(torch.optim.lr_scheduler, opt)
    out = []
    for epoch in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[epoch])
    return np.array(out)


CASES = {
    "step": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=15, eta_min=1e-3),
    "warm-restarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=1e-4),
    "warm-restarts-mult1": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=6),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedules_match_torch(name):
    lrs = (0.1, 0.02)
    expected = _torch_sequence(CASES[name], lrs)
    opt = _opt(lrs)
    got = _sequence(opt, CASES[name](sched, opt))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


def test_linear_warmup_matches_torch_sequential_lr():
    def make_torch(m, o):
        return m.SequentialLR(o, [m.LinearLR(o, start_factor=0.25, total_iters=4),
                                  m.CosineAnnealingLR(o, T_max=20)], milestones=[4])

    expected = _torch_sequence(make_torch)
    opt = _opt()
    got = _sequence(opt, sched.LinearWarmup(opt, 4, start_factor=0.25,
                                            after=sched.CosineAnnealingLR(opt, T_max=20)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got[:5, 0], [0.025, 0.04375, 0.0625, 0.08125, 0.1], rtol=1e-12)


def test_linear_warmup_alone_and_with_step():
    opt = _opt()
    got = _sequence(opt, sched.LinearWarmup(opt, 5, start_factor=0.0), epochs=8)[:, 0]
    np.testing.assert_allclose(got, [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1], atol=1e-15)
    opt = _opt()
    got = _sequence(opt, sched.LinearWarmup(opt, 2, after=sched.StepLR(opt, 3, gamma=0.1)),
                    epochs=9)[:, 0]
    np.testing.assert_allclose(got, [0.01, 0.055, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001],
                               rtol=1e-12)


def test_reduce_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.9, 0.95, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6,
               0.6, 0.4, 0.41, 0.42, 0.43]

    def make(m, o):
        return m.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=1, min_lr=0.01)

    expected = _torch_sequence(make, epochs=len(metrics), metrics=metrics)
    opt = _opt()
    got = _sequence(opt, make(sched, opt), epochs=len(metrics), metrics=metrics)
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert got[-1, 0] < 0.1


def test_warmup_then_plateau():
    opt = _opt()
    s = sched.LinearWarmup(opt, 2, start_factor=0.5,
                           after=sched.ReduceLROnPlateau(opt, factor=0.1, patience=0))
    assert s.needs_metric
    got = _sequence(opt, s, epochs=5, metrics=[1.0, 1.0, 1.0, 2.0, 2.0])[:, 0]
    np.testing.assert_allclose(got, [0.05, 0.075, 0.1, 0.1, 0.01], rtol=1e-12)


def test_closed_forms():
    opt = _opt()
    cosine = sched.CosineAnnealingLR(opt, T_max=10, eta_min=0.0)
    for epoch in (3, 10, 14):
        cosine.step(epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(
            0.05 * (1 + math.cos(math.pi * epoch / 10)), abs=1e-15)
    opt = _opt()
    warm = sched.CosineAnnealingWarmRestarts(opt, T_0=4)
    warm.step(5.5)   # 1.5 epochs into the second cycle
    assert warm.get_last_lr()[0] == pytest.approx(0.05 * (1 + math.cos(math.pi * 1.5 / 4)))
    assert warm.per_batch and not cosine.per_batch


def test_state_dict_resumes():
    opt = _opt()
    s = sched.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        s.step()
    state = s.state_dict()
    assert "optimizer" not in state
    expected = _sequence(opt, s, epochs=5)
    opt2 = _opt()
    s2 = sched.CosineAnnealingLR(opt2, T_max=10)
    s2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = expected[0][0]
    np.testing.assert_allclose(_sequence(opt2, s2, epochs=5), expected, rtol=1e-14)


def test_scheduler_argument_errors():
    opt = _opt()
    with pytest.raises(TypeError, match="Optimizer"):
        sched.StepLR(object(), 3)
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(opt, 0)
    with pytest.raises(ValueError, match="factor"):
        sched.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        sched.ReduceLROnPlateau(opt, mode="down")
    with pytest.raises(ValueError, match="same optimizer"):
        sched.LinearWarmup(opt, 3, after=sched.StepLR(_opt(), 3))
