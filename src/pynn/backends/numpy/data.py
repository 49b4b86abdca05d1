"""Reference gather of rows by index (csrc/gather.c): the mini-batch a shuffled epoch
takes from its data set.

take_rows(out, x, idx) writes out[i] = x[idx[i]] for C-contiguous x and out of one dtype
(any but object) with out.shape == (len(idx),) + x.shape[1:], and a 1-D array of integer
indices (negative ones count from the end, as in NumPy). Bad arguments raise before
anything is written: TypeError for types and dtypes, ValueError for shapes, layouts and
an out that overlaps x, IndexError for an index outside [-len(x), len(x)).
"""
import numpy as np

__all__ = ["take_rows"]


def take_rows(out, x, idx):
    """out[i] = x[idx[i]]; see the module docstring."""
    idx = check_take_rows(out, x, idx)
    np.take(x, idx, axis=0, out=out)


def check_take_rows(out, x, idx):
    """The checks of take_rows; returns idx as a 1-D int64 array."""
    if type(x) is not np.ndarray or type(out) is not np.ndarray:
        raise TypeError("take_rows: x and out must be NumPy arrays")
    if x.dtype.hasobject or out.dtype != x.dtype:
        raise TypeError(f"take_rows: x and out must share a dtype without objects, got "
                        f"{x.dtype} and {out.dtype}")
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take_rows: indices must be integers, not {idx.dtype}")
    if idx.ndim != 1:
        raise ValueError(f"take_rows: idx must be 1-D, got {idx.ndim}-D")
    if x.ndim < 1:
        raise ValueError("take_rows: x must have at least one dimension")
    if out.shape != idx.shape + x.shape[1:]:
        raise ValueError(f"take_rows: out has shape {out.shape}, expected "
                         f"{idx.shape + x.shape[1:]}")
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("take_rows: x and out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("take_rows: out is read-only")
    if out.size and x.size and np.may_share_memory(out, x):
        raise ValueError("take_rows: out overlaps x")
    n = x.shape[0]
    if idx.size:
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(f"index {int(bad[0])} is out of bounds for axis 0 with size {n}")
    return idx.astype(np.int64, copy=False)
