"""Activation names shared by ops.linear's fused epilogue and the element-wise ops.
The index of a name is its pynn_act code in csrc/include/pynn/pynn.h."""
ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh", "silu", "gelu", "gelu_tanh")


def activation_code(name, approximate="none"):
    """pynn_act code for an activation name (None means "none"); gelu with
    approximate="tanh" is "gelu_tanh"."""
    if name is None:
        name = "none"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be None or one of {ACTIVATIONS}, got {name!r}")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    if name == "gelu" and approximate == "tanh":
        name = "gelu_tanh"
    return ACTIVATIONS.index(name)
