"""pynn.fit / evaluate / predict and the callbacks."""
import time

import numpy as np
import pytest

import pynn
from pynn import callbacks, nn, optim
from pynn.optim import lr_scheduler


def _toy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def _model(seed=0):
    pynn.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_digits_mlp_reaches_97_percent_quickly(backend):
    """The issue's target: an MLP on the shipped digits, >= 97% test accuracy in seconds."""
    pynn.manual_seed(0)
    X, y = pynn.datasets.load_digits()
    X_train, X_test, y_train, y_test = pynn.data.train_test_split(X, y, test_size=0.2,
                                                                  stratify=y, seed=0)
    X_train, X_test = pynn.data.standardize(X_train, X_test)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    opt = optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    history = pynn.fit(model, X_train, y_train, loss=nn.CrossEntropyLoss(label_smoothing=0.1),
                       optimizer=opt, epochs=30, batch_size=32,
                       scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=30),
                       verbose=0, progress=False)
    elapsed = time.perf_counter() - start
    result = pynn.evaluate(model, X_test, y_test)
    assert result["accuracy"] >= 0.97, result
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert elapsed < 60


def test_history_records_every_epoch(backend):
    X, y = _toy()
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = pynn.fit(model, X, y, optimizer=opt, epochs=4, batch_size=32,
                       validation_split=0.25, scheduler=lr_scheduler.StepLR(opt, 2, gamma=0.5),
                       verbose=0, progress=False)
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert all(len(v) == 4 for v in h.values()) and history.epoch == [0, 1, 2, 3]
    assert h["lr"] == [0.1, 0.1, 0.05, 0.05]
    assert all(0.0 <= a <= 1.0 for a in h["accuracy"] + h["val_accuracy"])
    assert all(t > 0 for t in h["time"])


@pytest.mark.parametrize("n, split, held_out", [(10, 0.25, 3), (10, 0.45, 5), (10, 0.12, 2),
                                                 (10, 0.01, 1), (1797, 0.2, 360)])
def test_validation_split_holds_out_what_keras_holds_out(n, split, held_out):
    X, y = _toy(n)
    record = callbacks.Callback()
    pynn.fit(_model(), X, y, epochs=1, validation_split=split, callbacks=[record],
             verbose=0, progress=False)
    assert record.params["samples"] == n - held_out
    with pytest.raises(ValueError, match="no samples"):
        pynn.fit(_model(), X[:10], y[:10], epochs=1, validation_split=0.95, verbose=0)


def test_validation_metrics_equal_evaluate(backend):
    X, y = _toy()
    Xv, yv = _toy(60, seed=1)
    model = _model()
    history = pynn.fit(model, X, y, epochs=2, validation_data=(Xv, yv), verbose=0, progress=False)
    result = pynn.evaluate(model, Xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(result["loss"], rel=1e-6)
    assert history.history["val_accuracy"][-1] == result["accuracy"]
    assert model.training


def test_predict_matches_forward_in_eval_mode(backend):
    X, _ = _toy(50)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    out = pynn.predict(model, X, batch_size=7)
    model.eval()
    np.testing.assert_allclose(out, model(X), rtol=1e-6, atol=1e-7)
    assert out.shape == (50, 3)


def test_early_stopping_restores_the_best_weights(backend):
    X, y = _toy()
    model = _model()
    values = iter([0.9, 0.5, 0.7, 0.8, 0.6, 0.4])
    snapshots = {}

    class FakeValidation(callbacks.Callback):
        """Replaces val_loss by a scripted sequence (best at epoch 1) and records the
        weights at the end of each epoch."""

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)
            snapshots[epoch] = self.model.state_dict()

    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best=True)
    history = pynn.fit(model, X, y, epochs=6, callbacks=[FakeValidation(), stopper],
                       verbose=0, progress=False)
    assert len(history.epoch) == 4          # epochs 2 and 3 did not improve on epoch 1
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3 and stopper.best == 0.5
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[1][key])
    assert not np.array_equal(snapshots[3]["0.weight"], snapshots[1]["0.weight"])


def test_early_stopping_needs_a_reported_metric():
    X, y = _toy()
    with pytest.raises(ValueError, match="val_loss"):
        pynn.fit(_model(), X, y, epochs=2, callbacks=[callbacks.EarlyStopping()], verbose=0,
                 progress=False)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_nonfinite_loss_stops_with_clear_error_and_finite_weights(backend):
    X, y = _toy()
    model = _model()
    opt = optim.SGD(model.parameters(), lr=1e6)    # diverges within a few steps
    with pytest.raises(FloatingPointError, match="training loss is (nan|inf)") as info:
        pynn.fit(model, X * 1e3, y, optimizer=opt, epochs=5, verbose=0, progress=False)
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert isinstance(info.value.history, callbacks.History)

    X_bad = X.copy()
    X_bad[3, 1] = np.nan
    with pytest.raises(FloatingPointError, match="NaN or inf inputs"):
        pynn.fit(_model(), X_bad, y, epochs=1, batch_size=8, shuffle=False, verbose=0,
                 progress=False)


def _state(model, opt):
    return ([a.copy() for a in model.state_dict().values()],
            {k: {n: np.copy(v) for n, v in st.items()}
             for k, st in opt.state_dict()["state"].items()})


def _assert_same_state(a, b):
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        for n in a[1][k]:
            np.testing.assert_array_equal(a[1][k][n], b[1][k][n])


class _Explode(callbacks.Callback):
    """Sets a huge learning rate at the start of epoch `at`: the weights stay finite for a
    step and the loss then turns NaN."""

    def __init__(self, at, lr=1e30):
        super().__init__()
        self.at, self.lr = at, lr

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            self.optimizer.param_groups[0]["lr"] = self.lr


class _Record(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.states = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.states[epoch] = _state(self.model, self.optimizer)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_nonfinite_loss_rolls_back_model_buffers_and_optimizer(backend):
    """Finite but huge weights give a NaN loss: training goes back to the start of the
    epoch (parameters, batch-norm statistics and Adam's state), not to the latest
    weights; the best weights of EarlyStopping come back on top."""
    X, y = _toy()
    pynn.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    record = _Record()
    with pytest.raises(FloatingPointError, match="start of epoch 3") as info:
        pynn.fit(model, X, y, optimizer=opt, epochs=6, batch_size=20,
                 callbacks=[record, _Explode(2)], verbose=0, progress=False)
    _assert_same_state(_state(model, opt), record.states[2])
    assert opt.param_groups[0]["lr"] == 1e-2          # the schedule's state went back too
    assert len(info.value.history.history["loss"]) == 2
    assert all(p.grad is None for p in model.parameters())

    pynn.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    stop = callbacks.EarlyStopping(monitor="loss", restore_best=True)
    record = _Record()
    with pytest.raises(FloatingPointError, match="restored the weights of epoch 2"):
        pynn.fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=6,
                 batch_size=20, callbacks=[record, stop, _Explode(2)], verbose=0,
                 progress=False)
    assert stop.restored and stop.best_epoch == 1
    for a, b in zip(model.state_dict().values(), stop._best_state.values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_nonfinite_weights_after_the_last_step_are_not_kept(backend):
    """The last step of an epoch makes the weights inf (no loss sees them): the next
    epoch's start, or the end of training, finds them and goes back."""
    X, y = _toy(40)

    class LastStepInf(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1 and self.epoch == 1:
                next(iter(self.model.parameters())).data[0, 0] = np.inf

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    for epochs in (2, 3):
        model = _model()
        record = _Record()
        with pytest.raises(FloatingPointError, match="not finite after epoch 2"):
            pynn.fit(model, X, y, epochs=epochs, batch_size=20, verbose=0, progress=False,
                     callbacks=[record, LastStepInf()])
        assert all(np.isfinite(p.data).all() for p in model.parameters())
        _assert_same_state(_state(model, record.optimizer), record.states[1])


def test_interrupt_keeps_a_consistent_model(backend):
    """Ctrl-C between steps: the exception goes on with the History so far, the best
    weights come back, no gradient is left to leak into the next fit."""
    X, y = _toy()
    model = _model()
    stop = callbacks.EarlyStopping(monitor="loss", restore_best=True)

    class Interrupt(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if self.epochs_seen == 3 and batch == 2:
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs_seen = epoch

    with pytest.raises(KeyboardInterrupt) as info:
        pynn.fit(model, X, y, epochs=10, batch_size=20, callbacks=[stop, Interrupt()],
                 verbose=0, progress=False)
    assert len(info.value.history.history["loss"]) == 3
    assert stop.restored
    for a, b in zip(model.state_dict().values(), stop._best_state.values()):
        np.testing.assert_array_equal(a, b)
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_batch_of_ignored_labels_is_skipped_and_metrics_leave_them_out(backend):
    X, y = _toy(60)
    y = y.copy()
    y[:20] = -100                               # the first batch of 20: all ignored
    model = _model()
    history = pynn.fit(model, X, y, epochs=2, batch_size=20, shuffle=False, verbose=0,
                       progress=False)
    assert np.isfinite(history.history["loss"]).all()
    labelled = pynn.evaluate(model, X[20:], y[20:])
    assert pynn.evaluate(model, X, y) == pytest.approx(labelled)
    weighted = nn.CrossEntropyLoss(weight=np.array([0.3, 2.0], np.float32))
    whole = weighted(model(X[20:]), y[20:])
    for batch_size in (7, 40, 60):
        assert pynn.evaluate(model, X, y, loss=weighted, batch_size=batch_size)["loss"] \
            == pytest.approx(whole, rel=1e-5)


def test_probability_targets_train_and_score_by_their_most_probable_class(backend):
    X, y = _toy(90)
    soft = np.full((90, 2), 0.1, np.float32)
    soft[np.arange(90), y] = 0.9                # smoothed one-hot labels
    loss_fn = nn.CrossEntropyLoss(weight=np.array([0.5, 2.0], np.float32))
    model = _model()
    history = pynn.fit(model, X, soft, loss=loss_fn, epochs=5, batch_size=16, verbose=0,
                       optimizer=optim.Adam(model.parameters(), lr=0.02), progress=False,
                       validation_data=(X[:30], soft[:30]))
    assert history.history["accuracy"][-1] > 0.8
    # accuracy is that of the most probable class; the loss is the mean over samples
    # (not over the weights, as with class indices), whatever the batches
    scored = pynn.evaluate(model, X, soft, loss=loss_fn, batch_size=7)
    assert scored["accuracy"] == pynn.evaluate(model, X, y)["accuracy"]
    assert scored["loss"] == pytest.approx(loss_fn(model.eval()(X), soft), rel=1e-5)
    assert history.history["val_accuracy"][-1] == pytest.approx(
        pynn.evaluate(model, X[:30], y[:30])["accuracy"])


class _TwoPositions(nn.Module):
    """Logits (N, C, 2): the input's, and the input's reversed along C."""

    def forward(self, x):
        return np.stack([x, x[:, ::-1]], axis=2)


def test_accuracy_of_targets_with_positions_counts_every_position():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((8, 3))
    right = np.stack([logits.argmax(axis=1), logits[:, ::-1].argmax(axis=1)], axis=1)
    wrong = right.copy()
    wrong[:4, 1] = (wrong[:4, 1] + 1) % 3         # 4 of the 16 positions wrong
    assert pynn.evaluate(_TwoPositions(), logits, right)["accuracy"] == 1.0
    assert pynn.evaluate(_TwoPositions(), logits, wrong)["accuracy"] == 0.75


def test_batch_norm_never_trains_on_one_sample(backend):
    X, y = _toy(41)
    pynn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    sizes = []
    log = callbacks.LambdaCallback(on_batch_end=lambda b, logs: sizes.append(logs["size"]))
    pynn.fit(model, X, y, epochs=1, batch_size=20, callbacks=[log], verbose=0, progress=False)
    assert sizes == [20, 21]
    sizes.clear()
    pynn.fit(_model(), X, y, epochs=1, batch_size=20, callbacks=[log], verbose=0,
             progress=False)
    assert sizes == [20, 20, 1]                 # without batch norm, batches as asked


def test_fit_refuses_an_optimizer_or_schedule_of_something_else():
    X, y = _toy()
    model, other = _model(), _model(1)
    with pytest.raises(ValueError, match="none of the model's parameters"):
        pynn.fit(model, X, y, optimizer=optim.Adam(other.parameters()), verbose=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(optim.SGD(other.parameters(), lr=0.1), 2)
    with pytest.raises(ValueError, match="another optimizer"):
        pynn.fit(model, X, y, optimizer=opt, scheduler=sched, verbose=0)


def test_schedules_continue_across_fits_and_plateau_monitors(backend):
    """Warm restarts (also after a warm-up) go on per batch from where they are, so two
    fits of 2 epochs step the same rates as one of 4; ReduceLROnPlateau(mode="max")
    follows the accuracy, or the key it is told to."""
    X, y = _toy()

    def rates(splits, warmup):
        model = _model()
        opt = optim.SGD(model.parameters(), lr=0.1)
        sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3)
        if warmup:
            sched = lr_scheduler.LinearWarmup(opt, 1, after=sched)
        seen = []
        log = callbacks.LambdaCallback(
            on_batch_end=lambda b, logs: seen.append(opt.param_groups[0]["lr"]))
        for epochs in splits:
            pynn.fit(model, X, y, optimizer=opt, scheduler=sched, epochs=epochs,
                     batch_size=50, callbacks=[log], verbose=0, progress=False)
        return seen

    for warmup in (False, True):
        one, two = rates([4], warmup), rates([2, 2], warmup)
        assert one == two and len(set(one)) > 8     # per batch, after the warm-up too
    warm = rates([2], True)
    assert warm[:3] == [pytest.approx(0.01)] * 3  # the warm-up holds for its epoch

    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, threshold=10.0,
                                             threshold_mode="abs")
    pynn.fit(model, X, y, optimizer=opt, epochs=2, scheduler=plateau, verbose=0,
             progress=False)
    assert 0.0 < plateau.best <= 1.0               # an accuracy, not a loss
    plateau = lr_scheduler.ReduceLROnPlateau(opt, monitor="val_nothing")
    with pytest.raises(ValueError, match="val_nothing"):
        pynn.fit(model, X, y, optimizer=opt, epochs=1, scheduler=plateau, verbose=0,
                 progress=False)


def test_lambda_callback_and_checkpoint(tmp_path, backend):
    X, y = _toy()
    seen = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["loss"])),
                                  on_batch_end=lambda batch, logs: seen.append(("b", logs["size"])))
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.pynn"), monitor="loss",
                                           save_best_only=True)
    model = _model()
    pynn.fit(model, X, y, epochs=3, batch_size=100, callbacks=[cb, checkpoint], verbose=0,
             progress=False)
    assert [s for s in seen if s[0] == "b"] == [("b", 100)] * 6
    assert [s[0] for s in seen if s[0] != "b"] == [0, 1, 2]
    assert checkpoint.saved and all((tmp_path / p.split("/")[-1]).exists() for p in checkpoint.saved)
    loaded = pynn.load(checkpoint.saved[-1])
    np.testing.assert_array_equal(loaded.state_dict()["0.weight"], model.state_dict()["0.weight"])
    with pytest.raises(TypeError, match="unknown hook"):
        callbacks.LambdaCallback(on_epoch_finish=print)


def test_checkpoint_paths(tmp_path):
    X, y = _toy(40)
    nested = callbacks.ModelCheckpoint(tmp_path / "runs" / "a" / "m-{epoch}.pynn")
    pynn.fit(_model(), X, y, epochs=1, validation_data=(X, y), callbacks=[nested], verbose=0)
    assert (tmp_path / "runs" / "a" / "m-1.pynn").exists()      # directories created
    missing = callbacks.ModelCheckpoint(str(tmp_path / "m-{val_loss:.2f}.pynn"), monitor="loss")
    with pytest.raises(ValueError, match="val_loss"):
        pynn.fit(_model(), X, y, epochs=1, callbacks=[missing], verbose=0)
    with pytest.raises(TypeError, match="monitor"):
        callbacks.ModelCheckpoint(str(tmp_path / "m.pynn"), monitor=5)


def test_per_batch_and_plateau_schedules_step(backend):
    X, y = _toy()
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    warm = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2)
    pynn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=50, scheduler=warm, verbose=0,
             progress=False)
    assert warm.T_cur == pytest.approx(1.0)       # four batch steps of a quarter epoch
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=0, threshold=10.0, threshold_mode="abs")
    pynn.fit(model, X, y, optimizer=opt, epochs=2, scheduler=plateau, verbose=0, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_progress_and_verbose_output(capsys, backend):
    X, y = _toy(64)
    pynn.fit(_model(), X, y, epochs=2, batch_size=16, progress=True, verbose=1)
    captured = capsys.readouterr()
    assert "Epoch 1/2" in captured.out and "Epoch 2/2" in captured.out
    assert "loss" in captured.out and "accuracy" in captured.out
    assert captured.err   # the progress bar
    pynn.fit(_model(), X, y, epochs=1, progress=False, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_plain_progress_bar_without_tqdm(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    X, y = _toy(64)
    pynn.fit(_model(), X, y, epochs=1, batch_size=16, progress=True, verbose=0)
    assert "4/4" in capsys.readouterr().err


def test_regression_with_mse_and_augmentation(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 3)).astype(np.float32)
    y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.3
    pynn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1))
    history = pynn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=30,
                       augment=pynn.data.GaussianNoise(0.01, seed=0), verbose=0, progress=False)
    assert "accuracy" not in history.history
    assert history.history["loss"][-1] < 1e-3
    np.testing.assert_allclose(model[0].weight.data, [[1.0, -2.0, 0.5]], atol=0.05)


def test_fit_argument_errors():
    X, y = _toy()
    model = _model()
    with pytest.raises(ValueError, match="one entry per sample"):
        pynn.fit(model, X, y[:-1], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        pynn.fit(model, X, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        pynn.fit(model, X, y, validation_data=(X, y), validation_split=0.2, verbose=0)
    with pytest.raises(TypeError, match="Module"):
        pynn.fit(lambda x: x, X, y, verbose=0)
    with pytest.raises(ValueError, match="classification loss"):
        pynn.fit(model, X, y.astype(np.float32), loss=nn.MSELoss(), metrics=["accuracy"],
                 verbose=0)
    with pytest.raises(TypeError, match="Callback"):
        pynn.fit(model, X, y, callbacks=[print], verbose=0)


def test_subclass_batch_hooks_are_called_every_batch(backend):
    """fit skips the per-batch hooks a callback does not override, and calls those it does
    (defined on a subclass, or set on the instance) once per batch, in order."""
    class Counter(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_batch_begin(self, batch, logs):
            self.events.append(("begin", batch))

    counter = Counter()
    counter.on_batch_end = lambda batch, logs: counter.events.append(("end", batch))
    X, y = _toy()
    pynn.fit(_model(), X, y, epochs=2, batch_size=100, callbacks=[counter], verbose=0,
             progress=False)
    assert counter.events == [(kind, b) for _ in range(2) for b in range(2)
                              for kind in ("begin", "end")]
