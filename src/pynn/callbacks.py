"""Callbacks for pynn.fit, as in Keras: History (always present, returned by fit),
EarlyStopping, ModelCheckpoint and LambdaCallback.

A callback receives `model`, `optimizer` and `params` (epochs, batch_size, steps,
samples, validation) before training, and its hooks are called with the epoch or batch
index (from 0) and a `logs` dict: per batch {"loss", "accuracy", "size"}, per epoch
{"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"} (the keys that apply).
Setting `self.stop_training = True` ends training after the current epoch.
"""
import math
import numbers
import os

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "LambdaCallback"]


class Callback:
    """Base class: override the hooks you need."""

    def __init__(self):
        self.model = None
        self.optimizer = None
        self.params = {}
        self.stop_training = False

    def set_context(self, model, optimizer, params):
        self.model, self.optimizer, self.params = model, optimizer, dict(params)
        self.stop_training = False

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Per-epoch records: `history` maps each log key ("loss", "accuracy", "val_loss",
    "val_accuracy", "lr", "time") to a list with one value per epoch; `epoch` lists the
    epoch indices."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, path=None):
        """Loss and accuracy curves (train and validation) as a matplotlib Figure, saved to
        `path` when given. The figure is built without pyplot, so no global matplotlib
        state (the backend, open figures) changes."""
        from matplotlib.figure import Figure

        panels = [k for k in ("loss", "accuracy")
                  if k in self.history or f"val_{k}" in self.history]
        fig = Figure(figsize=(5 * max(len(panels), 1), 3.6), layout="tight")
        epochs = [e + 1 for e in self.epoch]
        for i, key in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            for name, label in ((key, "train"), (f"val_{key}", "validation")):
                if name in self.history:
                    ax.plot(epochs, self.history[name], marker="o", markersize=3, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _monitored(logs, monitor, who):
    value = (logs or {}).get(monitor)
    if value is None:
        raise ValueError(f"{who} monitors {monitor!r}, which training does not report "
                         f"(it reports {sorted(logs or {})}); pass validation data to fit "
                         "or choose another monitor")
    return float(value)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs.
    With restore_best=True the model gets back the weights of its best epoch when
    training ends (stopped early or not).

    Attributes after training: best (the best value), best_epoch, stopped_epoch (None if
    training ran all epochs), restored (whether the best weights were put back). They are
    put back also when training ends by an interrupt or a non-finite loss.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best=False):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, not {type(monitor).__name__}")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"patience must be a non-negative int, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or min_delta < 0:
            raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = _resolve_mode(mode, monitor)
        self.restore_best = bool(restore_best)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_state = None
        self.restored = False

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_state = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            self.restored = True


class ModelCheckpoint(Callback):
    """Save the model with pynn.save after each epoch, or only when `monitor` improves
    (save_best_only). `path` may hold format fields: {epoch} (from 1) and any log key,
    e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.pynn"; missing directories are created.
    save_optimizer adds the optimizer state."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto",
                 save_optimizer=False):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, not {type(monitor).__name__}")
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError("path must be a str or a path-like of str")
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, monitor)
        self.save_optimizer = bool(save_optimizer)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved = []

    def on_epoch_end(self, epoch, logs=None):
        from pynn.io import save

        logs = logs or {}
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} cannot be filled from "
                             f"this epoch's logs {sorted(logs)} and epoch ({exc!r}); pass "
                             "validation data to fit for val_ fields") from None
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        save(self.model, path, optimizer=self.optimizer if self.save_optimizer else None)
        self.saved.append(path)


class LambdaCallback(Callback):
    """A callback from functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...).
    Hooks: on_train_begin(logs), on_train_end(logs), on_epoch_begin(epoch, logs),
    on_epoch_end(epoch, logs), on_batch_begin(batch, logs), on_batch_end(batch, logs)."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                raise TypeError(f"unknown hook {name!r}; expected one of {self._HOOKS}")
            if not callable(fn):
                raise TypeError(f"{name} must be callable")
            setattr(self, name, fn)

