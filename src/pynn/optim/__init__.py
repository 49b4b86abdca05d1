"""pynn.optim: optimizers (SGD, RMSprop, Adam, AdamW) with PyTorch's names, options and
update rules, each step one fused in-place update of all the parameters (one per param
group and dtype); gradient clipping; and learning-rate schedules in
pynn.optim.lr_scheduler.

    opt = optim.Adam(model.parameters(), lr=1e-3)
    opt.step(); opt.zero_grad()
"""
from pynn.optim import lr_scheduler
from pynn.optim.optimizer import Optimizer, clip_grad_norm_, clip_grad_value_
from pynn.optim.optimizers import SGD, Adam, AdamW, RMSprop

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "clip_grad_norm_",
           "clip_grad_value_", "lr_scheduler"]
