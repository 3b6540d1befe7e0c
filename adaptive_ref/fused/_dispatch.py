"""What every fused wrapper shares: the fast-path check, the step count, scalar casts, threading.

The fused path takes NumPy float32/float64 arrays of one dtype (parameter, gradient and state)
and Python-number hyperparameters. Anything else (another backend, mixed dtypes, 0-d array
hyperparameters, invalid input) goes to the reference step function, which validates it and
raises the reference's errors; the pure wrappers then return exactly what the reference returns.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

from .. import _blockwise
from .._common import is_zero
from ._kernels import BLOCK

__all__ = ["fast_dtype", "advance", "power", "is_zero", "numbers", "parallel_for", "flat",
           "outputs", "launch", "write_back"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
PARALLEL_MIN = 4 * BLOCK  # below this a thread launch costs more than it saves


def fast_dtype(param, grad, arrays, count, inplace: bool):
    """The common dtype when the fused kernels apply, else None (use the reference)."""
    if type(param) is not np.ndarray or type(grad) is not np.ndarray:
        return None
    dt = param.dtype
    if dt not in _FLOATS or grad.dtype != dt:
        return None
    shape = param.shape
    if grad.shape != shape:
        return None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or a.dtype != dt or a.shape != shape:
            return None
        if inplace and not (a.flags.c_contiguous and a.flags.writeable):
            return None
    if inplace and not (param.flags.c_contiguous and param.flags.writeable):
        return None
    if not isinstance(count, (np.ndarray, np.integer)) or count.ndim != 0 \
            or count.dtype.kind != "i":
        return None
    if not 0 <= int(count) < _IMAX.get(count.dtype, 0):
        return None  # a negative or saturated count: the reference raises its error
    return dt


_IMAX = {np.dtype(t): np.iinfo(t).max for t in (np.int8, np.int16, np.int32, np.int64)}


def advance(count):
    """``(count + 1, t)`` exactly as :func:`adaptive_ref._numerics.advance` (t NaN on overflow):
    the new count a NumPy scalar of the count's dtype, as ``count + 1`` gives."""
    dt = count.dtype
    c = int(count)
    if c < _IMAX.get(dt, c):
        return dt.type(c + 1), float(c + 1)
    nxt = count + 1
    return nxt, (float(nxt) if nxt > count else math.nan)


@lru_cache(maxsize=4096)
def power(base: float, t: float) -> float:
    """``base ** t`` by NumPy's float64 ``power`` ufunc on 0-d arrays, as the reference computes
    it (:func:`adaptive_ref._numerics.power`); Python's ``**`` (the C library's ``pow``) differs
    from it in the last bit for some arguments (0.999 ** 7)."""
    return float(np.power(np.asarray(base, dtype=np.float64), np.asarray(t, dtype=np.float64)))


def numbers(*values) -> bool:
    """True when every value is a Python int or float (array hyperparameters use the reference)."""
    for v in values:
        if type(v) is not float and type(v) is not int:
            return False
    return True


def parallel_for(n: int) -> bool:
    """Threads for large arrays, except for a reference step handed here
    (:func:`adaptive_ref._blockwise.fused`), which stays on its caller's thread."""
    return n >= PARALLEL_MIN and numba.get_num_threads() > 1 and not _blockwise.in_fused()


def flat(a):
    """A 1-D C-contiguous view (or copy, for a non-contiguous input) of ``a``."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def outputs(shape, dt, k: int):
    """``k`` fresh arrays of ``shape`` and their flat views."""
    outs = [np.empty(shape, dt) for _ in range(k)]
    return outs, [o.reshape(-1) for o in outs]


def launch(kern, inplace: bool, n: int, param, grad, state_arrays: tuple, scal, dt):
    """Run a generated kernel (arguments: the body's arrays ``p, g, <state arrays>``, then, for
    the pure form, one output per written array, then the scalars). Returns ``(p, state arrays)``:
    the inputs themselves in place, else fresh arrays of ``param``'s shape."""
    if inplace:
        kern(n, param.reshape(-1), flat(grad), *[a.reshape(-1) for a in state_arrays], scal)
        return param, state_arrays
    outs, fo = outputs(param.shape, dt, 1 + len(state_arrays))
    kern(n, flat(param), flat(grad), *[flat(a) for a in state_arrays], *fo, scal)
    return outs[0], tuple(outs[1:])


def in_place_targets(param, state, what: str):
    """``[(name, array)]``: every array an in-place step overwrites (the parameter and each
    moment; not the count, not the state type's ``SCALAR_FIELDS`` such as NAdam's
    ``mu_product``, which the returned state replaces). Raises, naming the argument, unless each
    is a writeable ``numpy.ndarray`` of the parameter's shape: checked for all of them before
    anything is written, so a failing in-place step changes nothing."""
    scalar = ("count", *getattr(type(state), "SCALAR_FIELDS", ()))
    out = [("param", param)] + [(f"state.{f}", o) for f, o in
                                zip(state._fields, state, strict=True)
                                if f not in scalar and o is not None]
    shape = np.shape(param)
    for name, a in out:
        if type(a) is not np.ndarray:
            msg = (f"{what}: {name} must be a numpy.ndarray to be updated in place, got "
                   f"{type(a).__name__}")
            raise TypeError(msg)
        if not a.flags.writeable:
            msg = f"{what}: {name} is read-only; an in-place step needs a writeable array"
            raise ValueError(msg)
        if a.shape != shape:
            msg = f"{what}: {name} has shape {a.shape} but param has shape {shape}"
            raise ValueError(msg)
    return out


def write_back(param, state, new_param, new_state, what: str):
    """In-place fallback: copy the reference's result into ``param`` and the state arrays,
    after checking every destination (:func:`in_place_targets`), so nothing is half-written."""
    targets = in_place_targets(param, state, what)
    news = dict(zip(state._fields, new_state, strict=True))
    news["param"] = new_param
    for name, old in targets:
        new = news[name.removeprefix("state.")]
        if np.shape(new) != old.shape:  # pragma: no cover - the reference keeps shapes
            msg = f"{what}: internal error, {name} changed shape"
            raise AssertionError(msg)
    for name, old in targets:
        np.copyto(old, news[name.removeprefix("state.")], casting="unsafe")
    written = {name.removeprefix("state.") for name, _ in targets}
    fields = {f: (o if f in written else n)
              for f, o, n in zip(state._fields, state, new_state, strict=True)}
    return param, type(state)(**fields)
