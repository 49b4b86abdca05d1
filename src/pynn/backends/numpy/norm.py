"""Reference batch normalisation and bias gradient (csrc/norm.c).

Arrays are viewed as (N, C, S): pynn.ops reshapes an (N, C, ...) input so that S is the
product of the trailing extents (S = 1 for (N, C)). Statistics are per channel over the
N*S values of that channel, computed here in float64 with the two-pass formula and
rounded once to the array dtype. Batch norm follows torch.nn.functional.batch_norm:

    training:  mean, var = batch statistics (var biased, divided by N*S)
               running_mean = (1 - momentum) * running_mean + momentum * mean
               running_var  = (1 - momentum) * running_var + momentum * var * M / (M - 1)
    eval:      mean, var = running_mean, running_var
    invstd = 1 / sqrt(var + eps);  y = (x - mean) * invstd * gamma + beta

With xhat = (x - mean) * invstd and M = N*S, the backward pass is

    dbeta = sum(dy);  dgamma = sum(dy * xhat)
    training:  dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M)
    eval:      dx = gamma * invstd * dy          (the statistics are constants)
"""
import numpy as np

__all__ = ["batch_norm_forward", "batch_norm_backward", "bias_backward"]


def _per_channel(a):
    """A (C,) array as (1, C, 1), to broadcast against (N, C, S)."""
    return a.reshape(1, -1, 1)


def batch_norm_forward(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta,
                       training, momentum, eps):
    """Batch norm of x (N, C, S) into y (N, C, S).

    gamma, beta (C,) or None (no scale, no shift). running_mean, running_var (C,): read in
    eval mode; updated in place in training mode, unless None. saved_mean, saved_invstd
    (C,) receive the statistics used (batch or running), which batch_norm_backward takes.
    Training needs N*S > 1; an empty batch (N*S == 0) leaves the running statistics alone
    and saves zeros.
    """
    N, C, S = x.shape
    M = N * S
    if training and M == 1:
        raise ValueError("batch_norm_forward: argument out of range (one value per channel)")
    if C == 0:
        return
    if training:
        if M == 0:
            saved_mean[...] = 0
            saved_invstd[...] = 0
            return
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=(0, 2))
        var = np.square(x64 - _per_channel(mean)).mean(axis=(0, 2))
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * (var * M / (M - 1))
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = 1 / np.sqrt(var + eps)
    saved_mean[...] = mean
    saved_invstd[...] = invstd
    scale = invstd if gamma is None else invstd * gamma
    shift = np.zeros(C) if beta is None else beta
    y[...] = (x - _per_channel(mean)) * _per_channel(scale) + _per_channel(shift)


def batch_norm_backward(dx, dgamma, dbeta, dy, x, gamma, saved_mean, saved_invstd, training):
    """Gradients of batch_norm_forward: dx (N, C, S) from dy (N, C, S).

    x is the forward input; saved_mean, saved_invstd (C,) what the forward pass saved;
    gamma (C,) or None. dgamma, dbeta (C,) receive the parameter gradients unless None.
    training says whether the statistics came from the batch (and so depend on x).
    """
    N, C, S = x.shape
    M = N * S
    if C == 0:
        return
    mean = _per_channel(saved_mean.astype(np.float64))
    invstd = _per_channel(saved_invstd.astype(np.float64))
    dy64 = dy.astype(np.float64)
    xhat = (x - mean) * invstd
    sum_dy = dy64.sum(axis=(0, 2))
    sum_dy_xhat = (dy64 * xhat).sum(axis=(0, 2))
    k = invstd if gamma is None else invstd * _per_channel(gamma)
    if training and M > 0:
        dx[...] = k * (dy64 - _per_channel(sum_dy) / M - xhat * _per_channel(sum_dy_xhat) / M)
    else:
        dx[...] = k * dy64
    if dgamma is not None:
        dgamma[...] = sum_dy_xhat
    if dbeta is not None:
        dbeta[...] = sum_dy


def bias_backward(db, dy):
    """db (C,) = sum of dy (N, C, S) over axes 0 and 2: the gradient of a per-channel bias."""
    db[...] = dy.sum(axis=(0, 2), dtype=np.float64)
