"""Learning-rate schedules with PyTorch's names, arguments and update formulas (the same
recursive forms as torch.optim.lr_scheduler, so the sequences agree), plus LinearWarmup,
which composes with any of them.

Call scheduler.step() once per epoch after optimizer.step() (ReduceLROnPlateau:
step(metric)). pynn.fit does this, stepping per batch where the schedule is meant to
(`per_batch`: CosineAnnealingWarmRestarts, with fractional epochs).
"""
import math

from pynn.ops._validate import check_float, check_int
from pynn.optim.optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR",
           "CosineAnnealingWarmRestarts", "LinearWarmup", "ReduceLROnPlateau"]


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a pynn Optimizer, not {type(optimizer).__name__}")
    return optimizer


class _Schedule:
    """What every schedule shares: the optimizer, the last learning rates, state_dict."""

    per_batch = False
    needs_metric = False

    def get_last_lr(self):
        """The learning rate of each param group after the latest step."""
        return list(self._last_lr)

    def _set_lrs(self, values):
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Every attribute except the optimizer."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class LRScheduler(_Schedule):
    """Base of the epoch-indexed schedules. Construction records each group's
    initial_lr (base_lrs) and applies the epoch-0 value; step() advances one epoch."""

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        last_epoch = check_int(last_epoch, "last_epoch", minimum=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr'; resuming with "
                                   "last_epoch >= 0 needs the optimizer's saved state")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self):
        """The learning rates for last_epoch, from the current ones (recursive form)."""
        raise NotImplementedError

    def _get_closed_form_lr(self):
        """The learning rates for last_epoch, from base_lrs."""
        raise NotImplementedError

    def step(self, epoch=None):
        """Advance one epoch, or jump to `epoch` (closed form)."""
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = check_int(epoch, "epoch", minimum=0)
            values = self._get_closed_form_lr()
        self._set_lrs(values)

    def _current(self):
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = check_int(step_size, "step_size", minimum=1)
        self.gamma = check_float(gamma, "gamma", low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Exponential decay: lr = base_lr * gamma ** epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = check_float(gamma, "gamma", low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing (Loshchilov and Hutter, "SGDR", ICLR 2017) without restarts:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2; past T_max
    the cosine continues (rising again), as in PyTorch."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = check_int(T_max, "T_max", minimum=1)
        self.eta_min = check_float(eta_min, "eta_min", low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and self.last_epoch > 0:
            return self._get_closed_form_lr()
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [lr + (base - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base, lr in zip(self.base_lrs, self._current())]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (lr - self.eta_min) + self.eta_min
                for lr in self._current()]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter, ICLR 2017):
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2, where T_cur
    counts epochs since the last restart and the period T_i starts at T_0 and is
    multiplied by T_mult at each restart. step(epoch) accepts fractional epochs, and
    pynn.fit steps it after every batch (per_batch)."""

    per_batch = True

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        self.T_0 = check_int(T_0, "T_0", minimum=1)
        self.T_i = self.T_0
        self.T_mult = check_int(T_mult, "T_mult", minimum=1)
        self.eta_min = check_float(eta_min, "eta_min", low=0.0)
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        phase = math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base - self.eta_min) * (1 + phase) / 2 for base in self.base_lrs]

    def step(self, epoch=None):
        """Advance one epoch, or go to `epoch` (a float is a position within an epoch)."""
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            epoch = check_float(epoch, "epoch", low=0.0)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())

    def _update_lr(self, epoch=None):
        self.step(epoch)


class LinearWarmup(LRScheduler):
    """Linear warm-up for `warmup_epochs`, then another schedule (`after`, optional):

        lr = base_lr * (start_factor + (1 - start_factor) * epoch / warmup_epochs)

    for epoch < warmup_epochs; at warmup_epochs the `after` schedule starts from its own
    epoch 0 (base_lr) and runs as if it had been alone, offset by warmup_epochs; without
    it the rate stays at base_lr. This is PyTorch's SequentialLR([LinearLR(start_factor,
    1.0, warmup_epochs), after], milestones=[warmup_epochs]), ReduceLROnPlateau included
    (step(metric) then reaches it once the warm-up is over).

        sched = LinearWarmup(opt, 5, after=CosineAnnealingLR(opt, T_max=45))
    """

    def __init__(self, optimizer, warmup_epochs, start_factor=0.1, after=None):
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=1)
        self.start_factor = check_float(start_factor, "start_factor", 0.0, 1.0)
        if after is not None:
            if not isinstance(after, _Schedule):
                raise TypeError(f"after must be a schedule, not {type(after).__name__}")
            if after.optimizer is not optimizer:
                raise ValueError("after must schedule the same optimizer")
            if isinstance(after, LinearWarmup):
                raise ValueError("after cannot itself be a LinearWarmup")
        self.after = after
        super().__init__(optimizer, -1)

    @property
    def needs_metric(self):
        return self.after is not None and self.after.needs_metric

    @property
    def per_batch(self):
        return self.after is not None and self.after.per_batch

    def _get_closed_form_lr(self):
        t = min(self.last_epoch, self.warmup_epochs)
        factor = self.start_factor + (1.0 - self.start_factor) * t / self.warmup_epochs
        return [base * factor for base in self.base_lrs]

    def step(self, metrics=None, epoch=None):
        """Advance one epoch; `metrics` is passed on to a ReduceLROnPlateau after the
        warm-up (and required then). With a per-batch `after` (warm restarts), `epoch`
        may be a position within an epoch instead, as pynn.fit steps it after every
        batch: the warm-up still changes the rate once per epoch, then `after` gets the
        position less warmup_epochs."""
        if epoch is not None:
            self._step_to(epoch)
            return
        self._step_count += 1
        self.last_epoch += 1
        if self.after is None or self.last_epoch < self.warmup_epochs:
            self._set_lrs(self._get_closed_form_lr())
            return
        if self.last_epoch == self.warmup_epochs:
            self._set_lrs(self.base_lrs)
            if isinstance(self.after, LRScheduler):
                self.after._update_lr(0)
        elif self.after.needs_metric:
            if metrics is None:
                raise ValueError("LinearWarmup.step needs the metric for ReduceLROnPlateau")
            self.after.step(metrics)
        else:
            self.after.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _step_to(self, epoch):
        if not self.per_batch:
            raise ValueError("LinearWarmup.step(epoch=) needs a per-batch `after` schedule")
        position = check_float(epoch, "epoch", low=0.0)
        self._step_count += 1
        self.last_epoch = math.floor(position)
        if position < self.warmup_epochs:
            self._set_lrs(self._get_closed_form_lr())
            return
        self.after.step(position - self.warmup_epochs)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "after")}
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        after = state.pop("after", None)
        self.__dict__.update(state)
        if after is not None and self.after is not None:
            self.after.load_state_dict(after)


class ReduceLROnPlateau(_Schedule):
    """Multiply the learning rate by `factor` when a metric (step(metric)) has not
    improved for more than `patience` epochs, as in PyTorch: improvement is relative
    (threshold_mode="rel") or absolute; after a reduction, `cooldown` epochs pass before
    counting again; the rate never goes below min_lr and changes smaller than eps are
    skipped.

    monitor (a pynn addition, for pynn.fit): the log key fit steps it with, e.g.
    "val_accuracy"; None means val_loss (loss without validation data), or val_accuracy
    (accuracy) for mode="max"."""

    needs_metric = True

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8, monitor=None):
        self.optimizer = _check_optimizer(optimizer)
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str or None, not {type(monitor).__name__}")
        self.monitor = monitor
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = check_float(factor, "factor", 0.0, 1.0, high_open=True)
        self.patience = check_int(patience, "patience", minimum=0)
        self.threshold = check_float(threshold, "threshold", low=0.0)
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.eps = check_float(eps, "eps", low=0.0)
        groups = optimizer.param_groups
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"expected {len(groups)} min_lr values, got {len(min_lr)}")
            self.min_lrs = [check_float(v, "min_lr", low=0.0) for v in min_lr]
        else:
            self.min_lrs = [check_float(min_lr, "min_lr", low=0.0)] * len(groups)
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in groups]

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics):
        """Record this epoch's metric (e.g. the validation loss) and reduce if due."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
