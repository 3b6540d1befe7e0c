"""Scalar numerics shared by the step functions: the step count, bias corrections, scalar casts.

Policy (stated once, tested in ``tests/test_numerics.py``):

* The step count is a 0-d integer array: int64 where the backend has it, else int32 (JAX without
  x64). Overflow policy, one for every optimizer: where the count is readable (NumPy,
  array-api-strict, torch CPU, concrete JAX on the CPU) a count that is negative or at its dtype's
  maximum is an error before anything is computed (:func:`adaptive_ref._checks.check_count`).
  Where it is not (traced under ``jax.jit``, Dask, GPU arrays), :func:`advance` poisons: the
  float step index ``t`` becomes NaN and the count stays where it is (it never wraps to a
  negative number), and optimizers whose update does not use ``t`` multiply their lr by
  :func:`poison` (1, or NaN after an overflow), so every parameter becomes NaN, at that step and
  at every later one.
* Scalar factors (``1 - beta**t``, ``lr / (1 - beta1**t)``, NAdam's momentum schedule, RAdam's
  rho) are computed as 0-d arrays in the *scalar dtype*: float64 wherever the backend offers it on
  the parameter's device (NumPy, array-api-strict, torch CPU, Dask, CuPy; JAX only with x64),
  otherwise the state dtype. Each factor is cast to the compute dtype once, just before it meets
  an array, the way torch's Python-float bias corrections are rounded when they meet a tensor.
* Hyperparameters may be Python numbers or 0-d arrays; either way they enter the scalar
  computations in the scalar dtype, so a float32 step does not depend on how lr was passed.
* The knob ``factor_precision`` (:func:`factor_dtype`) chooses the dtype of those factors:
  ``"float64"`` is the policy above (torch's Python floats); ``"param"`` computes them in the
  parameter's dtype, as optax and Keras do (``1 - 0.999f`` carries a 1.3e-5 relative error in
  float32, finding F1 of docs/conformance.md). In float64 the two are the same.
"""

from __future__ import annotations

import contextlib
import contextvars
from functools import lru_cache
from typing import Any

from ._checks import NP
from ._checks import _device as _device_key  # None where x reports no device
from ._checks import readable as _readable

__all__ = ["scalar_dtype", "count_dtype", "as_scalar", "scalar_maker", "where", "choose",
           "ones_like", "advance", "power", "powers", "bias_correction", "to",
           "factor_dtype", "FACTOR_PRECISIONS", "param_factor_dtype"]

FACTOR_PRECISIONS = ("float64", "param")

# The dtype name that factor_precision="param" stands for while a float32 case is run in float64
# (the golden generator's emulation: float32 factors, float64 arithmetic); None: the param dtype.
_PARAM_FACTOR_DTYPE: contextvars.ContextVar = contextvars.ContextVar(
    "param_factor_dtype", default=None)


def _dtypes(xp, kind: str, device: Any):
    info = xp.__array_namespace_info__()
    try:
        return info.dtypes(device=device, kind=kind)
    except Exception:
        return info.dtypes(kind=kind)


def _mode(xp):
    """Process-wide switches that change a namespace's dtypes: JAX's x64 flag (it can be toggled
    at run time, e.g. with ``jax.enable_x64``), so the dtype caches below are keyed on it."""
    if getattr(xp, "__name__", "").startswith("jax"):
        import jax

        return bool(jax.config.jax_enable_x64)
    return None


@lru_cache(maxsize=64)
def _scalar_dtype_cached(xp, device, fallback, mode):
    fl = _dtypes(xp, "real floating", device)
    return fl["float64"] if "float64" in fl else fallback


def scalar_dtype(xp, like, fallback):
    """float64 where ``xp`` offers it on the device of ``like``, else ``fallback``."""
    dev = _device_key(like)
    try:
        return _scalar_dtype_cached(xp, dev, fallback, _mode(xp))
    except TypeError:  # unhashable device
        fl = _dtypes(xp, "real floating", dev)
        return fl["float64"] if "float64" in fl else fallback


@lru_cache(maxsize=64)
def _count_dtype_cached(xp, mode):
    ints = _dtypes(xp, "signed integer", None)
    return ints["int64"] if "int64" in ints else ints["int32"]


def count_dtype(xp):
    """int64 where the backend has it, else int32."""
    return _count_dtype_cached(xp, _mode(xp))


def new_count(xp, like):
    """A fresh step count (0) on the device of ``like``."""
    return xp.zeros((), dtype=count_dtype(xp), device=_device_key(like))


def as_scalar(xp, value, dtype, like):
    """``value`` (Python number or 0-d array) as a 0-d array of ``dtype`` on ``like``'s device."""
    if isinstance(value, (bool, int, float)):
        if xp is NP.xp and xp is not None:  # the same 0-d array, without the wrapper and device
            return NP.asarray(float(value), dtype=dtype)
        return xp.asarray(float(value), dtype=dtype, device=_device_key(like))
    if _foreign(xp, value):
        # e.g. a NumPy scalar lr with torch parameters: read it (it is on the host) and rebuild
        # it in the parameters' namespace; an unreadable foreign array cannot be moved here
        if not _readable(value):
            msg = (f"a hyperparameter is a {type(value).__module__}.{type(value).__name__} but "
                   f"the parameters belong to {getattr(xp, '__name__', xp)}; pass a Python "
                   f"float or a 0-d array of the parameters' namespace")
            raise TypeError(msg)
        return xp.asarray(float(value), dtype=dtype, device=_device_key(like))
    return xp.astype(value, dtype)


def scalar_maker(xp, dtype, like):
    """``s(v)``: :func:`as_scalar` with ``xp``, ``dtype`` and ``like`` bound. On NumPy a Python
    number becomes a NumPy scalar of ``dtype`` (``dtype.type(float(v))``, the value
    ``as_scalar`` rounds to), which NumPy treats as a 0-d array: arithmetic on NumPy scalars
    gives the same IEEE results as on 0-d arrays at a tenth of the cost (no array wrapper, no
    device lookup)."""
    if xp is not NP.xp or xp is None:
        return lambda v: as_scalar(xp, v, dtype, like)
    make = getattr(dtype, "type", dtype)  # a NumPy dtype, or its scalar type (numpy.float64)

    def s(v):
        if isinstance(v, (bool, int, float)):
            return make(float(v))
        return as_scalar(xp, v, dtype, like)
    return s


def where(xp, cond, a, b):
    """``xp.where(cond, a, b)`` with a 0-d ``cond``. On a NumPy bool scalar ``cond`` (what a
    readable step count's comparison gives) choosing between two arrays of one shape and dtype,
    a copy of the chosen one; between two NumPy scalars of one type, the chosen one as a 0-d
    array: what ``numpy.where`` returns, value and type, without its cost (about 1 µs on small
    arrays, 1.5 µs on scalars). Anything else (traced and lazy values, broadcasting, mixed
    dtypes): ``xp.where``."""
    if type(cond) is NP.bool_:
        kind = type(a)
        if kind is type(b):
            if kind is NP.ndarray and a.shape == b.shape and a.dtype is b.dtype:
                return (a if cond else b).copy(order="K")
            if kind in NP.scalar_floats:
                return NP.asarray(a if cond else b)
    return xp.where(cond, a, b)


def choose(xp, cond, a, b):
    """:func:`where` for a step's scalar factors, whose result only enters scalar arithmetic:
    between two NumPy scalars of one type, the chosen one itself (the same value; arithmetic
    on it gives what it gives on ``numpy.where``'s 0-d array)."""
    if type(cond) is NP.bool_ and type(a) is type(b) and type(a) in NP.scalar_floats:
        return a if cond else b
    return where(xp, cond, a, b)


def ones_like(xp, x):
    """``xp.ones_like(x)`` for a 0-d ``x``; a NumPy scalar of ``x``'s type for a NumPy scalar
    (what :func:`choose` can choose without ``numpy.where``)."""
    if type(x) in NP.scalar_floats:
        return x.dtype.type(1.0)
    return xp.ones_like(x)


def _foreign(xp, value) -> bool:
    import array_api_compat as aac

    try:
        return aac.array_namespace(value) is not xp
    except TypeError:
        return True


def to(xp, value, dtype):
    """Cast a 0-d scalar array (or pass a Python number through) for use with ``dtype`` arrays."""
    if isinstance(value, (int, float)):
        # A NumPy float64 scalar (what 0-d NumPy arithmetic returns) subclasses float but is
        # not weakly typed under NEP 50: float32 array * np.float64 would compute in float64.
        return float(value) if hasattr(value, "dtype") else value
    if xp is not NP.xp and (type(value) is NP.ndarray or type(value) in NP.scalar_floats):
        return xp.asarray(float(value), dtype=dtype)  # a host NumPy value with other arrays
    if value.dtype == dtype:  # already an operand of dtype: astype would only copy it
        return value
    return xp.astype(value, dtype)


def astype(xp, x, dtype):
    """``xp.astype(x, dtype)``; on NumPy, the array's (or scalar's) own ``astype``, which is what
    NumPy's array-API ``astype`` calls, without the wrapper (about half a microsecond)."""
    if xp is NP.xp and (type(x) is NP.ndarray or type(x) in NP.scalar_floats):
        if x.dtype is dtype and type(x) is not NP.ndarray:
            return x  # a NumPy scalar is immutable: the cast to its own dtype is itself
        return x.astype(dtype)
    return xp.astype(x, dtype)


def sign(xp, x):
    """``xp.sign(x)``; on a float32/float64 NumPy array, ``numpy.sign`` itself, which is what
    NumPy's array-API ``sign`` calls for real dtypes, without the wrapper's dtype checks (about
    1.6 µs of a small step's cost)."""
    if xp is NP.xp and type(x) is NP.ndarray and x.dtype in NP.floats:
        return NP.sign(x)
    return xp.sign(x)


def advance(xp, count, sdtype):
    """Return ``(count + 1, t)``: the new count and the float step index ``t`` (1 at step one).

    On a readable count (checked beforehand by ``check_count``) this is plain arithmetic. On an
    unreadable one, a negative count or an increment that overflows the count's dtype gives
    ``t = NaN`` and leaves the count unchanged (saturated), so the poison persists.
    """
    nxt = count + 1
    if xp is NP.xp and type(count) in NP.counts:  # readable; the same cast, minus wrappers
        return nxt, (NP.f64.type(nxt) if sdtype is NP.f64 else nxt.astype(sdtype))
    t = xp.astype(nxt, sdtype)
    if _readable(count):
        return nxt, t
    ok = (nxt > count) & (count >= 0)
    t = xp.where(ok, t, xp.asarray(float("nan"), dtype=sdtype, device=_device_key(t)))
    return xp.where(ok, nxt, count), t


def poison(xp, value, count, t):
    """``value`` unchanged where ``count`` is readable (an overflow has raised already); else
    ``value * (t - t + 1)``: the same value while ``t`` is finite, NaN after an overflow. For the
    optimizers whose update does not use ``t`` (applied to their lr)."""
    if type(count) in NP.counts or _readable(count):
        return value
    one = t - t + 1.0
    return one * value if isinstance(value, (int, float)) else one * xp.astype(value, t.dtype)


def advance_count(xp, count, sdtype, lr):
    """``(count + 1, lr)`` for the optimizers whose update does not use the step index: on a
    readable count (checked by ``check_count``) just the increment; otherwise :func:`advance`'s
    saturating count and ``lr`` poisoned by :func:`poison`."""
    if type(count) in NP.counts or _readable(count):
        return count + 1, lr
    nxt, t = advance(xp, count, sdtype)
    return nxt, poison(xp, lr, count, t)


def power(xp, base, t):
    """``base ** t`` with ``t`` a 0-d array; ``base`` a Python number or a 0-d array."""
    if isinstance(base, (int, float)):
        if type(t) in NP.scalar_floats:  # a NumPy scalar t: the same base, made directly
            base = t.dtype.type(float(base))
        else:
            base = xp.asarray(float(base), dtype=t.dtype, device=_device_key(t))
    elif _foreign(xp, base):  # a NumPy scalar or 0-d array with another namespace's t
        base = as_scalar(xp, base, t.dtype, t)
    return xp.pow(base, t)


def powers(xp, bases, t):
    """``tuple(power(xp, b, t) for b in bases)``. On NumPy, with a NumPy scalar ``t`` and Python
    number bases, one ``power`` call on the array of the bases (in ``t``'s dtype), whose
    elements are the NumPy scalars ``power`` gives one by one: the ufunc computes each element
    alone (the same SVML or libm routine for one element or many), so the values are the same,
    bit for bit, for a third of the cost of three calls."""
    if type(t) in NP.scalar_floats:
        for b in bases:
            if not isinstance(b, (int, float)) or not b:  # a zero: -0.0 == 0.0 as keys
                break
        else:
            key = (tuple(bases), type(t))  # the array of the bases, made once (read-only)
            arr = _BASES.get(key)
            if arr is None:
                if len(_BASES) >= 256:
                    _BASES.clear()
                arr = _BASES[key] = NP.asarray([float(b) for b in bases], dtype=t.dtype)
                arr.flags.writeable = False
            r = xp.pow(arr, t)
            # indexing gives the NumPy scalars (tuple(r) costs four times as much)
            return (r[0], r[1]) if len(bases) == 2 else tuple([r[i] for i in range(len(bases))])
    return tuple(power(xp, b, t) for b in bases)


_BASES: dict = {}  # (bases, dtype) -> powers' array of the bases


def bias_correction(xp, beta, t):
    """``1 - beta**t``: the factor that unbiases an EMA started at zero (Kingma & Ba, Sec. 3)."""
    return 1.0 - power(xp, beta, t)


def caster(xp, dtype):
    """``c(v)``: a scalar ``v`` (Python number, NumPy scalar or 0-d array) ready to meet arrays
    of ``dtype`` in an update: :func:`to` in general. On NumPy, a Python or NumPy scalar becomes
    a 0-d array of ``dtype`` (read-only; built once per value): NumPy (NEP 50) rounds a Python
    float to the array's dtype when it meets it, so the result of every operation is the same,
    bit for bit, and the ufunc skips its slow weak-scalar conversion (about half an operation's
    cost on small arrays). Use the result only as an operand with arrays of ``dtype``: unlike a
    Python float it is not weakly typed against arrays of another dtype."""
    if xp is not NP.xp or xp is None:
        return lambda v: to(xp, v, dtype)
    c = _CASTERS.get(dtype)
    if c is None:
        c = _CASTERS[dtype] = _numpy_caster(dtype)
    return c


_CASTERS: dict = {}  # NumPy dtype -> its caster


def _numpy_caster(dtype):
    xp = NP.xp
    cache = {}
    asarray = NP.asarray
    floats = NP.scalar_floats
    ndarray = NP.ndarray

    def c(v):
        kind = type(v)
        if kind is float or kind is int:  # a hyperparameter: built once per value
            a = cache.get(v) if v else None  # 0: -0.0 == 0.0 as keys, but not as operands
            if a is None:
                if len(cache) >= 256:
                    cache.clear()
                a = asarray(v, dtype=dtype)
                a.flags.writeable = False
                if v:
                    cache[v] = a
            return a
        if kind in floats:  # a step's factor (NumPy scalar): new every step, not cached
            return asarray(v, dtype=dtype)
        if kind is ndarray:  # a 0-d factor: to()'s astype, without the wrapper
            return v.astype(dtype)
        return to(xp, v, dtype)
    return c


def factor_dtype(xp, sdtype, param_dtype, factor_precision: str):
    """The dtype of the step's scalar factors (``1 - beta**t``, NAdam's ``mu_t`` and product,
    RAdam's ``rho_t``, and the hyperparameters that enter them).

    ``"float64"``: ``sdtype``, the scalar dtype of the policy above. ``"param"``: the parameter's
    dtype (optax, Keras) but at least float32 (optax's Python-float betas meet an int32 count,
    which gives float32 for 16-bit parameters; in float16, RAdam's rho_t products overflow), or
    the dtype named by :func:`param_factor_dtype` while one is active.
    """
    if factor_precision == "float64":
        return sdtype
    name = _PARAM_FACTOR_DTYPE.get()
    if name is not None:
        return getattr(xp, name)
    return param_dtype if xp.finfo(param_dtype).bits >= 32 else xp.float32


@contextlib.contextmanager
def param_factor_dtype(name: str | None):
    """Within the block, ``factor_precision="param"`` computes the factors in dtype ``name``
    (e.g. ``"float32"``) whatever the arrays' dtype: how a float32 case is emulated with float64
    arithmetic (:class:`adaptive_ref.conformance.adapters.reference.ReferenceAdapter` with
    ``compute_dtype="float64"``). ``None`` restores the parameter's dtype."""
    token = _PARAM_FACTOR_DTYPE.set(name)
    try:
        yield
    finally:
        _PARAM_FACTOR_DTYPE.reset(token)
