"""pynn.nn: layers, containers and losses with PyTorch's names, shapes and state_dict
layouts, and an explicit, layer-wise backward.

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)              # a float
    model.backward(loss_fn.backward())       # fills p.grad for every parameter
"""
from pynn.nn.activation import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from pynn.nn.containers import ModuleList, Residual, Sequential
from pynn.nn.layers import BatchNorm1d, Dropout, Flatten, Identity, Linear
from pynn.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from pynn.nn.module import Module, Parameter, StateDictError, is_grad_enabled, no_grad

__all__ = [
    "Module", "Parameter", "StateDictError", "no_grad", "is_grad_enabled",
    "Sequential", "ModuleList", "Residual",
    "Linear", "BatchNorm1d", "Dropout", "Flatten", "Identity",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "SiLU", "GELU", "Softmax",
    "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss",
]
