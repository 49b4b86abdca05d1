"""Reference softmax, log-softmax and fused softmax + cross-entropy (csrc/softmax_xent.c).

Softmax runs along the middle axis of a C-contiguous (M, C, K) array: pynn.ops views any
array and axis that way (M = product of the axes before it, K = of those after it), so
no transpose is ever needed. Rows are shifted by their maximum before exp, so large
logits do not overflow; NaN or inf anywhere in a row makes that row's output NaN
(inf - inf), as in PyTorch.

The fused cross-entropy follows torch.nn.functional.cross_entropy with class-index
targets exactly. With w the class weights (ones when absent), eps the label smoothing,
p_i = softmax(x_i), lse_i = logsumexp(x_i), and y_i the label of row i, a row that is
not ignored has

    loss_i = (1 - eps) w[y_i] (lse_i - x_i[y_i]) + eps / C * sum_c w[c] (lse_i - x_i[c])
    dloss_i / dx_i = a_i p_i - (1 - eps) w[y_i] onehot(y_i) - eps / C * w,
    a_i = (1 - eps) w[y_i] + eps / C * sum_c w[c];

an ignored row (label == ignore_index) has loss 0 and gradient 0. "mean" divides the sum
by W = sum of w[y_i] over the rows not ignored; when W is 0 (every row ignored, or every
counted row's class weighted 0) the loss and the gradient of each row not ignored are
NaN (0 / 0), as in PyTorch. "sum" does not divide, "none" keeps the rows apart.
"""
import numpy as np

__all__ = ["softmax_forward", "softmax_backward", "softmax_xent_forward_backward",
           "argmax_hits"]

# Reduction codes as PyTorch numbers them (pynn_reduction in pynn.h; pynn.ops maps names).
REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2


def _sum_c(a):
    """a summed along axis 1 in double, back in a's dtype: NumPy sums a middle axis one
    value after another in the array's dtype (pairwise only along the last axis), which
    for float32 was 0.1% off over 2^23 values."""
    return a.sum(axis=1, keepdims=True, dtype=np.float64).astype(a.dtype, copy=False)


def softmax_forward(y, x, log):
    """y = softmax(x) (log=False) or log_softmax(x) (log=True) along axis 1.

    x, y: (M, C, K), one float dtype; y must not overlap x (the native kernel's rule).
    """
    if x.size == 0:
        return
    with np.errstate(invalid="ignore"):  # inf - inf: NaN is the documented answer
        shifted = x - x.max(axis=1, keepdims=True)
        if log:
            y[...] = shifted - np.log(_sum_c(np.exp(shifted)))
        else:
            e = np.exp(shifted)
            y[...] = e / _sum_c(e)


def softmax_backward(dx, dy, y, log):
    """Input gradient of softmax_forward from its output y, along axis 1.

    softmax:      dx = y * (dy - sum_c dy * y)
    log_softmax:  dx = dy - exp(y) * sum_c dy
    dx, dy, y: (M, C, K), one float dtype; dx must not overlap dy or y.
    """
    if y.size == 0:
        return
    if log:
        dx[...] = dy - np.exp(y) * _sum_c(dy)
    else:
        dx[...] = y * (dy - _sum_c(dy * y))


def softmax_xent_forward_backward(losses, dlogits, logits, labels, weight, reduction,
                                  label_smoothing, ignore_index):
    """Fused softmax + cross-entropy: loss and its gradient in one call.

    logits, dlogits: (N, C) with C >= 1; labels: (N,) int64, each in [0, C) or ignore_index;
    weight: (C,) or None; losses: (N,) or None (written for REDUCTION_NONE).
    reduction: REDUCTION_NONE, REDUCTION_MEAN or REDUCTION_SUM.
    dlogits gets the gradient of the returned float: the mean or the sum of the row
    losses (for REDUCTION_NONE the sum, so row i of dlogits is dloss_i / dlogits_i).
    """
    n, c = logits.shape
    dtype = logits.dtype
    keep = labels != ignore_index
    bad = keep & ((labels < 0) | (labels >= c))
    if bad.any():
        raise ValueError(f"labels: label {labels[bad][0]} is out of range [0, {c})")
    eps = dtype.type(label_smoothing)
    w = np.ones(c, dtype) if weight is None else weight
    target = np.where(keep, labels, 0)
    rows = np.arange(n)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1)
        log_s = np.log(s)
        w_target = np.where(keep, w[target], 0).astype(dtype)
        row_loss = (1 - eps) * w_target * (log_s - shifted[rows, target])
        if eps > 0:
            row_loss += eps / c * (w.sum() * log_s - shifted @ w)
        row_loss = np.where(keep, row_loss, 0).astype(dtype)
        total = row_loss.sum(dtype=np.float64)

        scale = np.float64(1.0)
        if reduction == REDUCTION_MEAN:
            w_total = w_target.sum(dtype=np.float64)
            # no target weight at all: 0 / 0, NaN, even where smoothing adds a loss
            scale = 1 / w_total if w_total != 0 else np.float64(np.nan)
            total = total / w_total if w_total != 0 else np.nan
        scale = dtype.type(scale)

        a = (1 - eps) * w_target + eps / c * w.sum()
        dlogits[...] = e * (a / s)[:, None] - eps / c * w
        dlogits[rows, target] -= (1 - eps) * w_target
        dlogits *= scale
    dlogits[~keep] = 0
    if losses is not None:
        losses[...] = row_loss
    return float(total)


def argmax_hits(logits, labels):
    """How many rows i have logits[i].argmax() == labels[i] (np.argmax's rule: the first
    largest value, and the first NaN where a row has one): a classifier's correct
    predictions in a batch, as pynn.fit counts them.

    logits: (N, C) C-contiguous float; labels: (N,) C-contiguous int64 (any values).
    """
    if logits.shape[0] == 0:
        return 0
    return int(np.count_nonzero(logits.argmax(axis=1) == labels))
