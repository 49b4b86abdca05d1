"""Kernel backends. `numpy` is the pure-NumPy reference; the native one is pynn._native."""
