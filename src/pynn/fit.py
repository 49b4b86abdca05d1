"""The training loop: pynn.fit, pynn.evaluate and pynn.predict.

    history = pynn.fit(model, X, y, loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=20,
                       batch_size=128, validation_data=(Xv, yv),
                       callbacks=[pynn.callbacks.EarlyStopping(patience=5, restore_best=True)])

One training step is the model's forward, the fused loss, the model's backward and the
optimizer's fused update.
"""
import math
import sys
import time

import numpy as np

from pynn import _config, nn, optim
from pynn.callbacks import Callback, History
from pynn.data import BatchIterator
from pynn.nn.containers import backward_through
from pynn.ops._validate import INT64, NATIVE_DTYPES
from pynn.optim.lr_scheduler import _Schedule

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


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return int(batch_size)


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


def _correct(kind, output, target):
    if kind == "argmax":
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
    """Samples an accuracy is taken over (elements, for multi-label BCE)."""
    return int(np.size(target)) if kind == "threshold" else len(target)


def _loss_total(loss_fn, value, n):
    """The batch's summed loss, whatever the loss's reduction."""
    if getattr(loss_fn, "reduction", "mean") == "mean":
        return float(value) * n
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

def _finite_params(model):
    return all(np.isfinite(p.data).all() for p in model.parameters())


def fit(model, X, y, *, loss=None, optimizer=None, epochs=10, batch_size=32,
        validation_data=None, validation_split=0.0, shuffle=True, scheduler=None,
        callbacks=None, metrics=None, augment=None, progress=None, verbose=1, seed=None):
    """Train `model` on (X, y) and return a History.

    loss: a loss module (default: CrossEntropyLoss for integer y, MSELoss otherwise).
    optimizer: default Adam(model.parameters(), lr=1e-3).
    validation_data: (X_val, y_val), or validation_split: the fraction of samples taken
    from the end of (X, y), before shuffling, as in Keras.
    shuffle: a new order every epoch, drawn from `seed` (None: pynn's generator).
    scheduler: a schedule from pynn.optim.lr_scheduler, stepped after every epoch (after
    every batch for per-batch schedules; ReduceLROnPlateau gets val_loss, else loss).
    callbacks: Callback instances (EarlyStopping, ModelCheckpoint, LambdaCallback, ...).
    metrics: None (accuracy for classification losses), or names from {"loss", "accuracy"}.
    augment: a callable applied to each training batch of X (e.g. data.GaussianNoise).
    progress: a progress bar per epoch (tqdm when installed, else a plain one); None
    shows it only when stderr is a terminal. verbose: 1 prints one line per epoch.

    History.history holds per epoch: loss, accuracy, val_loss, val_accuracy, lr (the rate
    used during the epoch) and time (seconds). A non-finite training loss stops training
    with FloatingPointError; the model keeps its last finite weights (those at the start
    of the epoch if the current ones are not finite) and the error's `history` attribute
    holds the History so far. The model's train/eval mode is restored at the end.
    """
    _check_module(model)
    dtype = _model_dtype(model)
    X = _inputs(X, dtype)
    y = _targets(y, len(X))
    batch_size = _check_batch_size(batch_size)
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
        n_val = int(round(len(X) * float(validation_split)))
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
                            transform=augment)
    history = History()
    callbacks = [history] + list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, not {type(cb).__name__}")
    params = {"epochs": int(epochs), "batch_size": batch_size, "steps": len(batches),
              "samples": len(X), "validation": Xv is not None}
    for cb in callbacks:
        cb.set_context(model, optimizer, params)
    show_bar = sys.stderr.isatty() if progress is None else bool(progress)
    was_training = model.training

    for cb in callbacks:
        cb.on_train_begin({})
    try:
        for epoch in range(int(epochs)):
            logs = _train_epoch(model, batches, loss_fn, optimizer, scheduler, accuracy,
                                callbacks, epoch, int(epochs), show_bar, history)
            if Xv is not None:
                val = evaluate(model, Xv, yv, loss=loss_fn, batch_size=max(batch_size, 256),
                               metrics=metrics)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if scheduler is not None:
                if scheduler.needs_metric:
                    scheduler.step(logs.get("val_loss", logs["loss"]))
                elif not scheduler.per_batch:
                    scheduler.step()
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if verbose:
                print(_format_logs(epoch, int(epochs), logs), flush=True)
            if any(cb.stop_training for cb in callbacks):
                break
    finally:
        model.train(was_training)
    for cb in callbacks:
        cb.on_train_end({})
    return history


def _overrides(callback, hook):
    """Whether callback's `hook` does anything: a method of its class other than
    Callback's no-op, or a function set on the instance (as LambdaCallback does)."""
    return getattr(getattr(callback, hook), "__func__", None) is not getattr(Callback, hook)


def _train_epoch(model, batches, loss_fn, optimizer, scheduler, accuracy, callbacks, epoch,
                 epochs, show_bar, history):
    model.train()
    lr = optimizer.param_groups[0]["lr"]
    for cb in callbacks:
        cb.on_epoch_begin(epoch, {})
    snapshot = [p.data.copy() for p in model.parameters()]
    bar = _progress_bar(len(batches), f"Epoch {epoch + 1}/{epochs}", show_bar)
    start = time.perf_counter()
    loss_sum, correct, seen, counted = 0.0, 0, 0, 0
    steps = len(batches)
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
            if not (math.isfinite(value) if type(value) is float else np.all(np.isfinite(value))):
                _stop_on_nonfinite(model, snapshot, value, xb, epoch, b, history)
            backward_through(model, loss_fn.backward(), False)
            optimizer.step()
            optimizer.zero_grad()
            if per_batch_schedule:
                scheduler.step(epoch + (b + 1) / steps)
            n = len(xb)
            loss_sum += _loss_total(loss_fn, value, n)
            seen += n
            if accuracy is not None:
                hits = _correct(accuracy, output, yb)
                correct += hits
                batch_counted = _counted(accuracy, yb)
                counted += batch_counted
            if end:
                batch_logs = {"loss": value if type(value) is float else float(np.mean(value)),
                              "size": n}
                if accuracy is not None:
                    batch_logs["accuracy"] = hits / max(batch_counted, 1)
                for cb in end:
                    cb.on_batch_end(b, batch_logs)
            if bar is not None:
                bar.set_postfix_str(f"loss {loss_sum / seen:.4f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    logs = {"loss": loss_sum / seen}
    if accuracy is not None:
        logs["accuracy"] = correct / max(counted, 1)
    logs["lr"] = lr
    logs["time"] = time.perf_counter() - start
    return logs


def _stop_on_nonfinite(model, snapshot, value, xb, epoch, batch, history):
    if not _finite_params(model):
        for p, saved in zip(model.parameters(), snapshot):
            p.data[...] = saved
        kept = f"the weights from the start of epoch {epoch + 1} (the latest ones are not finite)"
    else:
        kept = "its latest weights (all finite)"
    hint = ("the batch contains NaN or inf inputs" if not np.isfinite(xb).all()
            else "try a lower learning rate, gradient clipping or checking the targets")
    error = FloatingPointError(f"training loss is {value} at epoch {epoch + 1}, batch {batch + 1}: "
                               f"training stopped and the model keeps {kept}; {hint}")
    error.history = history
    raise error


# -- evaluate / predict --------------------------------------------------------------------

def evaluate(model, X, y, *, loss=None, batch_size=256, metrics=None):
    """Loss (and accuracy for classification losses) of `model` on (X, y), in evaluation
    mode and in batches. Returns {"loss": float, "accuracy": float}."""
    _check_module(model)
    X = _inputs(X, _model_dtype(model))
    y = _targets(y, len(X))
    batch_size = _check_batch_size(batch_size)
    loss_fn = _default_loss(y) if loss is None else loss
    accuracy = _accuracy_kind(loss_fn, metrics)
    was_training = model.training
    model.eval()
    total, correct, counted = 0.0, 0, 0
    try:
        with nn.no_grad():
            for xb, yb in BatchIterator(X, y, batch_size=batch_size):
                output = model(xb)
                total += _loss_total(loss_fn, loss_fn(output, yb), len(xb))
                if accuracy is not None:
                    correct += _correct(accuracy, output, yb)
                    counted += _counted(accuracy, yb)
    finally:
        model.train(was_training)
    result = {"loss": total / len(X)}
    if accuracy is not None:
        result["accuracy"] = correct / max(counted, 1)
    return result


def predict(model, X, *, batch_size=256):
    """The model's outputs for X, computed in evaluation mode in batches and stacked."""
    _check_module(model)
    X = _inputs(X, _model_dtype(model))
    batch_size = _check_batch_size(batch_size)
    was_training = model.training
    model.eval()
    try:
        with nn.no_grad():
            outputs = [np.asarray(model(xb)) for xb in BatchIterator(X, batch_size=batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outputs)
