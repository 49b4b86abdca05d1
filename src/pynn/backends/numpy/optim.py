"""Reference optimizer steps (csrc/optim.c): in place on parameters and their state.

Each function is one step of the torch.optim algorithm of the same name over a list of
parameters, each updated operation for operation as torch.optim's single-tensor code
performs it, in the parameters' dtype (the hyperparameters are rounded to it, as ATen
rounds Python scalars). Every argument named in the plural is a list with one entry per
parameter (an optional state: such a list, or None when its option is off); entry i's
arrays are C-contiguous and of params[i]'s size, all arrays are of one float dtype, and
none overlaps another. The gradients are only read.
"""
import math

import numpy as np

__all__ = ["sgd_update", "adam_update", "rmsprop_update"]


def _lerp(start, end, weight):
    """ATen's lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def _entry(arrays, i):
    """Entry i of an optional state list (None when the state is unused)."""
    return None if arrays is None else arrays[i]


def sgd_update(params, momentum_buffers, grads, lr, momentum, dampening, nesterov, weight_decay,
               first_step):
    """SGD with momentum (Sutskever et al. 2013) as torch.optim.SGD, for each parameter:

        g = grad + weight_decay * param
        buf = g (first_step) or momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf
        param -= lr * g

    momentum_buffers is None exactly when momentum == 0 (plain SGD).
    """
    for i, param in enumerate(params):
        _sgd(param, _entry(momentum_buffers, i), grads[i], lr, momentum, dampening, nesterov,
             weight_decay, first_step)


def _sgd(param, momentum_buffer, grad, lr, momentum, dampening, nesterov, weight_decay,
         first_step):
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay != 0 else grad
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer[...] = momentum_buffer * t(momentum) + t(1 - dampening) * g
        g = g + t(momentum) * momentum_buffer if nesterov else momentum_buffer
    param -= t(lr) * g


def adam_update(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, step, lr, beta1, beta2,
                eps, weight_decay, decoupled_weight_decay):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam, step >= 1 counting this step, for each
    parameter:

        param *= 1 - lr * weight_decay        (decoupled_weight_decay: AdamW,
        or g = grad + weight_decay * param     Loshchilov & Hutter 2019)
        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)       (AMSGrad, when given)
        denom = sqrt(max_exp_avg_sq or exp_avg_sq) / sqrt(1 - beta2^step) + eps
        param -= lr / (1 - beta1^step) * exp_avg / denom
    """
    for i, param in enumerate(params):
        _adam(param, exp_avgs[i], exp_avg_sqs[i], _entry(max_exp_avg_sqs, i), grads[i], step, lr,
              beta1, beta2, eps, weight_decay, decoupled_weight_decay)


def _adam(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
          weight_decay, decoupled_weight_decay):
    t = param.dtype.type
    g = grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= t(1 - lr * weight_decay)
        else:
            g = grad + t(weight_decay) * param
    exp_avg[...] = _lerp(exp_avg, g, t(1 - beta1))
    exp_avg_sq[...] = exp_avg_sq * t(beta2) + t(1 - beta2) * g * g
    v = exp_avg_sq
    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    step_size = t(lr / (1 - beta1 ** step))
    denom = np.sqrt(v) / t(math.sqrt(1 - beta2 ** step)) + t(eps)
    param -= step_size * (exp_avg / denom)


def rmsprop_update(params, square_avgs, momentum_buffers, grad_avgs, grads, lr, alpha, eps,
                   weight_decay, momentum):
    """RMSprop (Hinton, Coursera lecture 6e; centered: Graves 2013) as torch.optim.RMSprop,
    for each parameter:

        g = grad + weight_decay * param
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        grad_avg = lerp(grad_avg, g, 1 - alpha)                  (centered: grad_avgs given)
        avg = sqrt(square_avg - grad_avg^2 if centered else square_avg) + eps
        buf = momentum * buf + g / avg; param -= lr * buf       (momentum_buffers given)
        or param -= lr * g / avg
    """
    for i, param in enumerate(params):
        _rmsprop(param, square_avgs[i], _entry(momentum_buffers, i), _entry(grad_avgs, i),
                 grads[i], lr, alpha, eps, weight_decay, momentum)


def _rmsprop(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, eps, weight_decay,
             momentum):
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay != 0 else grad
    square_avg[...] = square_avg * t(alpha) + t(1 - alpha) * g * g
    if grad_avg is not None:
        grad_avg[...] = _lerp(grad_avg, g, t(1 - alpha))
        avg = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg = avg + t(eps)
    if momentum_buffer is not None:
        momentum_buffer[...] = momentum_buffer * t(momentum) + g / avg
        param -= t(lr) * momentum_buffer
    else:
        param -= t(lr) * (g / avg)
