"""The training loop: pynn.fit, pynn.evaluate and pynn.predict.

    history = pynn.fit(model, X, y, loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=20,
                       batch_size=128, validation_data=(Xv, yv),
                       callbacks=[pynn.callbacks.EarlyStopping(patience=5, restore_best=True)])

One training step is the model's forward, the fused loss, the model's backward and the
optimizer's fused update.
"""
import copy
import math
import sys
import time

import numpy as np

from pynn import _config, nn, optim
from pynn.callbacks import Callback, EarlyStopping, History, _monitored
from pynn.data import BatchIterator
from pynn.nn.containers import backward_through
from pynn.ops._validate import INT64, NATIVE_DTYPES, check_int
from pynn.optim.lr_scheduler import LinearWarmup, ReduceLROnPlateau, _Schedule

__all__ = ["fit", "evaluate", "predict"]


# -- arguments ---------------------------------------------------------------------------

def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def _inputs(X, dtype, name="X"):
    try:
        X = np.asarray(X)
    except Exception as exc:
        raise TypeError(f"{name}: cannot convert {type(X).__name__} to an array ({exc})") from None
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim < 1 or len(X) == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {X.shape}")
    return X if X.dtype == dtype else X.astype(dtype)


def _targets(y, n, name="y"):
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    if y.ndim < 1 or len(y) != n:
        raise ValueError(f"{name} must have one entry per sample ({n}), got shape {y.shape}")
    return y


def _check_module(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a pynn.nn.Module, not {type(model).__name__}")


def _check_optimizer_for(model, optimizer, scheduler):
    owned = {id(p) for p in model.parameters()}
    updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if owned and not owned & updated:
        raise ValueError("the optimizer updates none of the model's parameters; build it "
                         "from model.parameters()")
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("the scheduler schedules another optimizer than the one given to fit")


def _default_loss(y):
    return nn.CrossEntropyLoss() if y.dtype.kind in "iu" else nn.MSELoss()


def _accuracy_kind(loss_fn, metrics):
    """How to count correct predictions for this loss, or None for no accuracy."""
    if metrics is None:
        wanted = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss))
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in names if m not in ("accuracy", "loss")]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; pynn.fit reports 'loss' and 'accuracy'")
        wanted = "accuracy" in names
        if wanted and not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss)):
            raise ValueError("accuracy needs a classification loss (CrossEntropyLoss or "
                             f"BCEWithLogitsLoss), not {type(loss_fn).__name__}")
    if not wanted:
        return None
    return "argmax" if isinstance(loss_fn, nn.CrossEntropyLoss) else "threshold"


def _soft(target):
    """Whether a cross-entropy target holds class probabilities (soft labels, axis 1)
    rather than class indices."""
    return np.asarray(target).dtype.kind == "f"


def _correct(kind, output, target):
    if kind == "argmax":
        if _soft(target):  # the most probable class is the label
            target = np.asarray(target).argmax(axis=1)
        if type(output) is np.ndarray and type(target) is np.ndarray and output.ndim == 2 \
                and output.dtype in NATIVE_DTYPES and target.dtype is INT64 \
                and target.shape == output.shape[:1] and output.flags.c_contiguous \
                and target.flags.c_contiguous:
            # a batch of (N, C) logits: one backend call (three NumPy calls and their
            # temporaries cost ten microseconds inside a training loop)
            return _config.backend_module().argmax_hits(output, target)
        # the method, not np.argmax: at a small batch NumPy's Python wrapper costs more
        output = output if type(output) is np.ndarray else np.asarray(output)
        return int(np.count_nonzero(output.argmax(axis=1) == target))
    return int(np.count_nonzero((np.asarray(output) > 0) == (np.asarray(target) > 0.5)))


def _counted(kind, target):
    """Predictions an accuracy is taken over: elements for multi-label BCE, labels (one a
    sample, or one a position of (N, d1, ...) targets) for cross-entropy."""
    size = int(np.size(target))
    if kind == "argmax" and _soft(target):
        return size // np.shape(target)[1]  # one label a row of class probabilities
    return size


def _ignored(loss_fn):
    """The label a cross-entropy loss ignores, or None."""
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return loss_fn.ignore_index
    return None


def _every_sample_counts(loss_fn, y):
    """Whether every sample of y counts once in the loss and the accuracy: no class
    weights, no label the loss ignores. Then a batch's loss weight is its size and its
    accuracy plain, decided once for the set instead of batch by batch (the checks cost
    ~20 us a batch of 32 inside a training loop)."""
    ignore = _ignored(loss_fn)
    return ignore is None or _soft(y) or (loss_fn.weight is None
                                          and not np.any(np.asarray(y) == ignore))


def _hits(kind, loss_fn, output, target, plain):
    """(correct predictions, samples counted) of a batch; samples whose label the loss
    ignores count for neither (none are, where `plain`: _every_sample_counts)."""
    ignore = None if plain or kind != "argmax" else _ignored(loss_fn)
    if ignore is not None and not _soft(target):
        keep = target != ignore
        if not keep.all():
            output, target = np.asarray(output)[keep], target[keep]
    return _correct(kind, output, target), _counted(kind, target)


def _loss_weight(loss_fn, target, n, plain):
    """What a batch's mean loss was divided by: the summed class weight of the samples
    counted (cross-entropy with a weight or ignored labels), else the batch size. Summing
    value * weight over batches and dividing by the summed weight gives the loss of the
    whole set, as one call on all of it would. Where `plain`, the batch size."""
    if not plain and isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.reduction == "mean" \
            and not _soft(target):  # probabilities: the mean is over the samples
        target = np.asarray(target)
        keep = target != loss_fn.ignore_index
        if loss_fn.weight is None:
            return float(np.count_nonzero(keep))
        return float(np.sum(np.asarray(loss_fn.weight)[target[keep]], dtype=np.float64))
    return float(n)


def _loss_total(loss_fn, value, weight):
    """The batch's summed loss, whatever the loss's reduction (weight: _loss_weight)."""
    if getattr(loss_fn, "reduction", "mean") == "mean":
        return float(value) * weight if weight else 0.0
    return float(np.sum(value))


# -- progress ------------------------------------------------------------------------------

class _PlainBar:
    """A one-line text progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n, self._last = total, desc, 0, 0.0
        self._postfix = ""

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.n == self.total:
            self._last = now
            width = 30
            filled = int(width * self.n / max(self.total, 1))
            sys.stderr.write(f"\r{self.desc} [{'=' * filled}{'.' * (width - filled)}] "
                             f"{self.n}/{self.total} {self._postfix}")
            sys.stderr.flush()

    def set_postfix_str(self, text):
        self._postfix = text

    def close(self):
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _format_logs(epoch, epochs, logs):
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs['time']:.2f}s"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key} {logs[key]:.4f}")
    parts.append(f"lr {logs['lr']:.3g}")
    return "  ".join(parts)


# -- fit -----------------------------------------------------------------------------------

def fit(model, X, y, *, loss=None, optimizer=None, epochs=10, batch_size=32,
        validation_data=None, validation_split=0.0, shuffle=True, scheduler=None,
        callbacks=None, metrics=None, augment=None, progress=None, verbose=1, seed=None):
    """Train `model` on (X, y) and return a History.

    loss: a loss module (default: CrossEntropyLoss for integer y, MSELoss otherwise).
    optimizer: default Adam(model.parameters(), lr=1e-3).
    validation_data: (X_val, y_val), or validation_split: the fraction of samples taken
    from the end of (X, y), before shuffling, as in Keras.
    shuffle: a new order every epoch, drawn from `seed` (None: pynn's generator). A model
    with batch norm never trains on a last batch of one sample: it joins the batch before
    (BatchIterator's min_last).
    scheduler: a schedule from pynn.optim.lr_scheduler for `optimizer`, stepped after
    every epoch, or after every batch for per-batch schedules (warm restarts, also after a
    warm-up), which go on from their position, so a second fit continues the cycle.
    ReduceLROnPlateau is stepped with its `monitor` (default val_loss, or loss without
    validation data; val_accuracy or accuracy for mode="max").
    callbacks: Callback instances (EarlyStopping, ModelCheckpoint, LambdaCallback, ...).
    metrics: None (accuracy for classification losses), or names from {"loss", "accuracy"}.
    The loss of an epoch is that of the whole set (with class weights, weighted as one
    call would weight it); samples whose label the loss ignores count for neither.
    augment: a callable applied to each training batch of X (e.g. data.GaussianNoise).
    progress: a progress bar per epoch (tqdm when installed, else a plain one); None
    shows it only when stderr is a terminal. verbose: 1 prints one line per epoch.

    History.history holds per epoch: loss, accuracy, val_loss, val_accuracy, lr (the rate
    used during the epoch) and time (seconds). Gradients are cleared when training starts.

    A non-finite training loss (or weights) stops training with FloatingPointError, and
    the model's parameters and buffers, the optimizer's state and the schedule's go back
    to where they were at the start of the latest epoch whose loss was finite. (A batch
    whose labels are all ignored is skipped, not an error.) A KeyboardInterrupt stops
    training between steps and is raised again. Either way the callbacks still end
    training (EarlyStopping(restore_best=True) puts the best weights back), gradients are
    cleared, and the exception's `history` attribute holds the History so far. The
    model's train/eval mode is restored at the end.
    """
    _check_module(model)
    dtype = _model_dtype(model)
    X = _inputs(X, dtype)
    y = _targets(y, len(X))
    batch_size = check_int(batch_size, "batch_size", 1)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    loss_fn = _default_loss(y) if loss is None else loss
    if not isinstance(loss_fn, nn.Module):
        raise TypeError(f"loss must be a pynn loss module, not {type(loss_fn).__name__}")
    if optimizer is None:
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be a pynn Optimizer, not {type(optimizer).__name__}")
    if scheduler is not None and not isinstance(scheduler, _Schedule):
        raise TypeError(f"scheduler must come from pynn.optim.lr_scheduler, "
                        f"not {type(scheduler).__name__}")
    _check_optimizer_for(model, optimizer, scheduler)
    accuracy = _accuracy_kind(loss_fn, metrics)

    if validation_data is not None and validation_split:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_data is not None:
        try:
            Xv, yv = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        Xv = _inputs(Xv, dtype, "validation X")
        yv = _targets(yv, len(Xv), "validation y")
    elif validation_split:
        if not 0.0 < float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
        # as Keras splits: the first floor(n * (1 - split)) samples train
        n_val = len(X) - int(math.floor(len(X) * (1.0 - float(validation_split))))
        if not 0 < n_val < len(X):
            raise ValueError(f"validation_split={validation_split} leaves no samples on one "
                             f"side of {len(X)}")
        X, Xv = X[:-n_val], X[-n_val:]
        y, yv = y[:-n_val], y[-n_val:]
    else:
        Xv = yv = None

    if seed is None:
        generator = _config.rng()
    elif isinstance(seed, np.random.Generator):
        generator = seed
    else:
        generator = np.random.default_rng(seed)
    batches = BatchIterator(X, y, batch_size=batch_size, shuffle=shuffle, seed=generator,
                            transform=augment, min_last=2 if _needs_batch_statistics(model) else 1)
    history = History()
    callbacks = [history] + list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, not {type(cb).__name__}")
    plateau = _plateau_monitor(scheduler, Xv is not None, accuracy is not None)
    params = {"epochs": int(epochs), "batch_size": batch_size, "steps": len(batches),
              "samples": len(X), "validation": Xv is not None}
    for cb in callbacks:
        cb.set_context(model, optimizer, params)
    show_bar = sys.stderr.isatty() if progress is None else bool(progress)
    was_training = model.training
    # a per-batch schedule goes on from where it is (a second fit continues its cycle)
    offset = max(getattr(scheduler, "last_epoch", 0), 0) if scheduler is not None else 0
    rollback = _Rollback(model, optimizer, scheduler)
    plain = _every_sample_counts(loss_fn, y)

    model.zero_grad()
    for cb in callbacks:
        cb.on_train_begin({})
    stopped = None
    try:
        for epoch in range(int(epochs)):
            rollback.begin_epoch(epoch, history)
            logs = _train_epoch(model, batches, loss_fn, optimizer, scheduler, accuracy,
                                callbacks, epoch, int(epochs), show_bar, history, rollback,
                                offset, plain)
            if Xv is not None:
                val = evaluate(model, Xv, yv, loss=loss_fn, batch_size=max(batch_size, 256),
                               metrics=metrics)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if scheduler is not None:
                if plateau is not None:
                    scheduler.step(_monitored(logs, plateau, "ReduceLROnPlateau"))
                elif not scheduler.per_batch:
                    scheduler.step()
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if verbose:
                print(_format_logs(epoch, int(epochs), logs), flush=True)
            if any(cb.stop_training for cb in callbacks):
                break
        rollback.end_training(history)
    except (FloatingPointError, KeyboardInterrupt) as exc:
        # training stopped, the model in a consistent state: the callbacks still end
        # training below (EarlyStopping(restore_best=True) restores the best weights),
        # stale gradients go, and the error carries the History so far
        model.zero_grad()
        stopped = exc
    finally:
        model.train(was_training)
    for cb in callbacks:
        cb.on_train_end({})
    if stopped is not None:
        restored = [cb for cb in callbacks if isinstance(cb, EarlyStopping) and cb.restored]
        if isinstance(stopped, FloatingPointError) and restored and stopped.args:
            stopped.args = (f"{stopped.args[0]}; then EarlyStopping(restore_best=True) "
                            f"restored the weights of epoch {restored[0].best_epoch + 1}",)
        stopped.history = history
        raise stopped
    return history


def _needs_batch_statistics(model):
    """Whether training the model needs more than one sample per batch (batch norm)."""
    return any(isinstance(m, nn.BatchNorm1d) for m in model.modules())


def _plateau_monitor(scheduler, validation, accuracy):
    """The log key a ReduceLROnPlateau (alone or after a warm-up) is stepped with: its
    `monitor`, else val_loss (loss without validation data), or val_accuracy (accuracy)
    for mode="max". None for the other schedules."""
    inner = scheduler.after if isinstance(scheduler, LinearWarmup) else scheduler
    if not isinstance(inner, ReduceLROnPlateau):
        return None
    monitor = inner.monitor
    if monitor is None:
        monitor = "accuracy" if inner.mode == "max" else "loss"
        if monitor == "accuracy" and not accuracy:
            raise ValueError("ReduceLROnPlateau(mode='max') is stepped with the accuracy, "
                             "which this training does not report; pass monitor=")
        if validation:
            monitor = "val_" + monitor
    return monitor


def _overrides(callback, hook):
    """Whether callback's `hook` does anything: a method of its class other than
    Callback's no-op, or a function set on the instance (as LambdaCallback does)."""
    return getattr(getattr(callback, hook), "__func__", None) is not getattr(Callback, hook)


def _train_epoch(model, batches, loss_fn, optimizer, scheduler, accuracy, callbacks, epoch,
                 epochs, show_bar, history, rollback, offset, plain):
    model.train()
    lr = optimizer.param_groups[0]["lr"]
    for cb in callbacks:
        cb.on_epoch_begin(epoch, {})
    steps = len(batches)
    bar = _progress_bar(steps, f"Epoch {epoch + 1}/{epochs}", show_bar)
    start = time.perf_counter()
    loss_sum, weight_sum, correct, counted = 0.0, 0.0, 0, 0
    # only the callbacks that do something per batch are called per batch (History and
    # most others act per epoch): a step at a small batch takes well under a millisecond
    begin = [cb for cb in callbacks if _overrides(cb, "on_batch_begin")]
    end = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    per_batch_schedule = scheduler is not None and scheduler.per_batch
    try:
        for b, (xb, yb) in enumerate(batches):
            for cb in begin:
                cb.on_batch_begin(b, {})
            output = model(xb)
            value = loss_fn(output, yb)
            n = len(xb)
            weight = _loss_weight(loss_fn, yb, n, plain)
            if not (math.isfinite(value) if type(value) is float else np.all(np.isfinite(value))):
                if weight == 0:   # every label ignored or weighted 0: nothing to learn
                    model.zero_grad()
                    continue
                rollback.stop(value, xb, epoch, b, history)
            rollback.loss_finite()
            backward_through(model, loss_fn.backward(), False)
            optimizer.step()
            optimizer.zero_grad()
            if per_batch_schedule:
                scheduler.step(epoch=offset + epoch + (b + 1) / steps)
            loss_sum += _loss_total(loss_fn, value, weight)
            weight_sum += weight
            if accuracy is not None:
                hits, batch_counted = _hits(accuracy, loss_fn, output, yb, plain)
                correct += hits
                counted += batch_counted
            if end:
                batch_logs = {"loss": value if type(value) is float else float(np.mean(value)),
                              "size": n}
                if accuracy is not None:
                    batch_logs["accuracy"] = hits / max(batch_counted, 1)
                for cb in end:
                    cb.on_batch_end(b, batch_logs)
            if bar is not None:
                bar.set_postfix_str(f"loss {loss_sum / max(weight_sum, 1e-300):.4f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    logs = {"loss": loss_sum / weight_sum if weight_sum else math.nan}
    if accuracy is not None:
        logs["accuracy"] = correct / max(counted, 1)
    logs["lr"] = lr
    logs["time"] = time.perf_counter() - start
    return logs


class _Rollback:
    """Where training goes back to when its loss stops being finite: the parameters and
    buffers of the model, the optimizer's state and the schedule's, as they were at the
    start of the latest epoch that began with finite values and a finite first loss.

    Weights can be finite and still give a NaN loss (a huge learning rate makes them
    huge), so an epoch's starting state becomes the one to go back to only once its
    first batch's loss is finite; until then the previous one is kept. Two copies of
    the model and optimizer state at most, taken once per epoch."""

    def __init__(self, model, optimizer, scheduler):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.saved = None      # (epoch, model state, optimizer state, schedule state)
        self.candidate = None  # the same, of the current epoch, before a finite loss

    def _arrays(self):
        return [p.data for p in self.model.parameters()] + list(self.model.buffers())

    def _finite(self):
        return all(a.dtype.kind not in "fc" or np.isfinite(a).all() for a in self._arrays())

    def begin_epoch(self, epoch, history):
        if not self._finite():
            self.stop_nonfinite_weights(epoch, history)
        schedule = None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict())
        self.candidate = (epoch, self.model.state_dict(), self.optimizer.state_dict(), schedule)

    def loss_finite(self):
        """The epoch's state gave a finite loss: it becomes the one to go back to."""
        if self.candidate is not None:
            self.saved, self.candidate = self.candidate, None

    def _restore(self):
        """Go back to the saved state; returns its epoch (None if nothing was saved).
        Training stops right after, so the saved state is handed over, not copied."""
        state = self.saved or self.candidate
        if state is None:
            return None
        epoch, model_state, optimizer_state, schedule = state
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        if schedule is not None:
            self.scheduler.load_state_dict(schedule)
        return epoch

    def _raise(self, what, hint, history):
        epoch = self._restore()
        kept = ("the model, optimizer and schedule are back at their state at the start "
                f"of epoch {epoch + 1}" if epoch is not None else "the model is unchanged")
        error = FloatingPointError(f"{what}: training stopped and {kept}; {hint}")
        error.history = history
        raise error

    def stop(self, value, xb, epoch, batch, history):
        hint = ("the batch contains NaN or inf inputs" if not np.isfinite(xb).all()
                else "try a lower learning rate, gradient clipping or checking the targets")
        self._raise(f"training loss is {value} at epoch {epoch + 1}, batch {batch + 1}", hint,
                    history)

    def stop_nonfinite_weights(self, epoch, history):
        self._raise(f"the weights are not finite after epoch {epoch}",
                    "try a lower learning rate or gradient clipping", history)

    def end_training(self, history):
        if not self._finite():
            self.stop_nonfinite_weights(len(history.history.get("loss", ())), history)


# -- evaluate / predict --------------------------------------------------------------------

def evaluate(model, X, y, *, loss=None, batch_size=256, metrics=None):
    """Loss (and accuracy for classification losses) of `model` on (X, y), in evaluation
    mode and in batches. Returns {"loss": float, "accuracy": float}."""
    _check_module(model)
    X = _inputs(X, _model_dtype(model))
    y = _targets(y, len(X))
    batch_size = check_int(batch_size, "batch_size", 1)
    loss_fn = _default_loss(y) if loss is None else loss
    accuracy = _accuracy_kind(loss_fn, metrics)
    plain = _every_sample_counts(loss_fn, y)
    was_training = model.training
    model.eval()
    total, weight_sum, correct, counted = 0.0, 0.0, 0, 0
    try:
        with nn.no_grad():
            for xb, yb in BatchIterator(X, y, batch_size=batch_size):
                output = model(xb)
                weight = _loss_weight(loss_fn, yb, len(xb), plain)
                total += _loss_total(loss_fn, loss_fn(output, yb), weight)
                weight_sum += weight
                if accuracy is not None:
                    hits, batch_counted = _hits(accuracy, loss_fn, output, yb, plain)
                    correct += hits
                    counted += batch_counted
    finally:
        model.train(was_training)
    result = {"loss": total / weight_sum if weight_sum else math.nan}
    if accuracy is not None:
        result["accuracy"] = correct / max(counted, 1)
    return result


def predict(model, X, *, batch_size=256):
    """The model's outputs for X, computed in evaluation mode in batches and stacked."""
    _check_module(model)
    X = _inputs(X, _model_dtype(model))
    batch_size = check_int(batch_size, "batch_size", 1)
    was_training = model.training
    model.eval()
    try:
        with nn.no_grad():
            outputs = [np.asarray(model(xb)) for xb in BatchIterator(X, batch_size=batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outputs)
