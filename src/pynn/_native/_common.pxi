# Shared by every wrapper module (each `include`s it): the status codes, the ISA switch
# that pynn._native sets alike in every module, and the fused float type.
from pynn._config import _defaults as _config_defaults


cdef inline int _num_threads() except -1:
    """pynn.get_num_threads(), read from its dict without a Python call (a tenth of a
    product of small matrices)."""
    return _config_defaults["num_threads"]

cdef extern from "pynn/pynn.h" nogil:
    ctypedef int pynn_status
    ctypedef int pynn_isa
    pynn_status pynn_cpu_set_isa(pynn_isa isa)
    pynn_isa pynn_cpu_isa()
    pynn_isa pynn_cpu_best_isa()
    const char *pynn_isa_name(pynn_isa isa)

ctypedef fused real:
    float
    double


cdef inline char float_kind(const char *fmt) noexcept:
    """b'f' or b'd' for a buffer format of native float32 or float64 ('f', '@d', '=f'...);
    0 for any other."""
    if fmt[0] == b"@" or fmt[0] == b"=":
        fmt += 1
    if (fmt[0] == b"f" or fmt[0] == b"d") and fmt[1] == 0:
        return fmt[0]
    return 0


cdef int check_status(int status, str what) except -1:
    """Turn a kernel's status code into a Python exception naming the kernel."""
    if status == 0:
        return 0
    if status == 1:
        raise ValueError(f"{what}: argument out of range")
    if status == 2:
        raise MemoryError(f"{what}: could not allocate scratch space")
    if status == 3:
        raise ValueError(f"{what}: instruction set not supported by this CPU")
    raise RuntimeError(f"{what}: kernel failed with status {status}")


def _set_isa(int isa):
    check_status(pynn_cpu_set_isa(isa), "set_isa")


def _get_isa():
    return pynn_cpu_isa()


# Overlap of buffers held with strides (PyBUF_STRIDES or more: shape and strides set).

cdef void extent(const Py_buffer *v, char **lo, char **hi) noexcept:
    """The bytes [lo, hi) that v's elements lie in."""
    cdef char *a = <char *>v.buf
    cdef char *b = a + v.itemsize
    cdef Py_ssize_t d, step
    for d in range(v.ndim):
        if v.shape[d] == 0:
            lo[0] = hi[0] = a
            return
        step = (v.shape[d] - 1) * v.strides[d]
        if step < 0:
            a += step
        else:
            b += step
    lo[0], hi[0] = a, b


cdef bint disjoint(const Py_buffer *x, const Py_buffer *y) noexcept:
    """x and y share no byte."""
    cdef char *xlo
    cdef char *xhi
    cdef char *ylo
    cdef char *yhi
    extent(x, &xlo, &xhi)
    extent(y, &ylo, &yhi)
    return xhi <= ylo or yhi <= xlo
