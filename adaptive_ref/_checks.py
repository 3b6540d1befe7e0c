"""Input validation shared by every step function.

Every error names the argument, the value received and what is accepted.

Hyperparameters given as NumPy scalars or 0-d arrays are range-checked like Python numbers
wherever their value is :func:`readable`: without a trace, a lazy graph or a device sync (NumPy,
array-api-strict, torch CPU tensors, concrete JAX arrays on the CPU). Elsewhere (values traced
under ``jax.jit`` or ``torch.func``, lazy Dask arrays, GPU arrays) only their shape and dtype are
checked; their range is the caller's responsibility (docs/reliability.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import array_api_compat as aac

from ._spec import HParam

__all__ = ["check_arrays", "check_hparams", "check_count", "check_finite", "is_array", "readable"]


_SCALARS = (int, float, complex, bool, str, type(None))


def is_array(x: Any) -> bool:
    if isinstance(x, _SCALARS):  # fast path: hyperparameters are mostly Python scalars
        # NumPy scalars (np.float64 subclasses float) are 0-d arrays: NumPy returns them from
        # arithmetic on 0-d arrays, so a step on a 0-d param must accept its own output.
        return type(x) not in _SCALARS and aac.is_numpy_array(x)
    return aac.is_array_api_obj(x)


def readable(x: Any) -> bool:
    """True when the value of ``x`` can be read on the host without a trace, a lazy graph or a
    device sync: Python numbers, NumPy arrays and scalars, array-api-strict arrays, torch tensors
    on the CPU (not meta, not under a ``torch.func`` transform), and concrete (non-traced) JAX
    arrays on the CPU. Not: traced JAX values (``jax.jit``), Dask arrays, CuPy and GPU arrays."""
    if isinstance(x, (int, float)):
        return True
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, (np.ndarray, np.generic)):
        return True
    mod = type(x).__module__ or ""
    if mod.startswith("array_api_strict"):
        return True
    if mod.startswith("torch"):
        import torch

        if type(x) is not torch.Tensor or x.device.type != "cpu" or x.is_meta:
            return False
        try:  # a torch.func (vmap/grad) wrapper cannot be read
            return not torch._C._functorch.is_functorch_wrapped_tensor(x)
        except AttributeError:  # pragma: no cover - older torch
            return True
    if aac.is_jax_array(x):
        import jax

        if isinstance(x, jax.core.Tracer):
            return False
        try:
            return all(d.platform == "cpu" for d in x.devices())
        except Exception:
            return False
    return False


class _NumPyTypes:
    """NumPy's types for the fast paths (this package does not import NumPy itself): looked up
    once NumPy is imported; empty while it is not (no value is then a NumPy value).

    ndarray; floats: the float32 and float64 dtypes (the fast paths compare dtypes by identity:
    NumPy's built-in dtypes are singletons, and any other dtype object takes the general path);
    f64: float64; counts: the types of a NumPy step count (0-d array, int64 and int32 scalars);
    count_tops: (dtype, maximum) of int64 and int32; count_top: the same as a dict;
    scalar_floats: the float64 and float32 scalar types (what 0-d NumPy arithmetic returns);
    xp: NumPy's array-API namespace; bool_: the bool scalar type (what a comparison of NumPy
    scalars returns); sign: ``numpy.sign``."""

    _EMPTY = dict(ndarray=None, floats=(), f64=None, counts=(), count_tops=(), count_top={},
                  scalar_floats=(), xp=None, asarray=None, bool_=None, sign=None)

    def __getattr__(self, name):
        np = sys.modules.get("numpy")
        if np is None:
            return self._EMPTY[name]
        import array_api_compat.numpy as xp

        self.ndarray = np.ndarray
        self.floats = (np.dtype(np.float32), np.dtype(np.float64))
        self.f64 = np.dtype(np.float64)
        self.counts = frozenset((np.ndarray, np.int64, np.int32))
        self.count_tops = tuple((np.dtype(t), int(np.iinfo(t).max)) for t in (np.int64, np.int32))
        self.count_top = dict(self.count_tops)
        self.scalar_floats = frozenset((np.float64, np.float32))
        self.xp = xp
        self.asarray = np.asarray
        self.bool_ = np.bool_
        self.sign = np.sign
        return getattr(self, name)


NP = _NumPyTypes()


_NAMESPACES: dict = {}  # array type -> its namespace (array_namespace, looked up once per type)


def _namespace(x: Any):
    """``array_namespace(x)``, remembered per array type: every array type the namespace
    helpers know maps to one namespace (array-api-strict's ``__array_namespace__`` alone costs
    several microseconds per call). NumPy arrays are not remembered: JAX's float0 gradients are
    NumPy arrays of another namespace."""
    kind = type(x)
    xp = _NAMESPACES.get(kind)
    if xp is None:
        xp = aac.array_namespace(x)
        if not aac.is_numpy_array(x):
            _NAMESPACES[kind] = xp
    return xp


_PLAIN_DEVICE: dict = {}  # array type -> whether array_api_compat.device(x) is x.device


def _device(x: Any):
    """``array_api_compat.device(x)``, or None where ``x`` reports no device (traced JAX
    arrays). For the array types whose device is their ``device`` attribute (all but NumPy, Dask,
    JAX and pydata/sparse arrays, which ``device`` treats apart: a per-type fact, remembered),
    the attribute is read directly, without ``device``'s checks of every other library."""
    kind = type(x)
    plain = _PLAIN_DEVICE.get(kind)
    if plain is None:
        plain = _PLAIN_DEVICE[kind] = not (
            aac.is_numpy_array(x) or aac.is_dask_array(x) or aac.is_jax_array(x)
            or aac.is_pydata_sparse_array(x))
    try:
        return x.device if plain else aac.device(x)
    except Exception:  # traced JAX arrays may not report a device
        return None


def _numpy_fast(arrays: Mapping[str, Any], same_shape, state_dtype_names):
    """What :func:`check_arrays` returns, when every entry is a float32/float64
    ``numpy.ndarray`` and every check passes; None otherwise (the general path then runs and
    raises the errors). It skips the per-array namespace and device lookups (~1-2 µs each), a
    large part of a step's cost on small arrays."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    nd = np.ndarray
    for x in arrays.values():
        if type(x) is not nd:
            return None
    floats = _numpy_floats()
    param = next(iter(arrays.values()))
    pdtype, shape = param.dtype, param.shape
    if pdtype not in floats:
        return None
    for name in same_shape:
        if arrays[name].shape != shape:
            return None
    if "grad" in arrays and arrays["grad"].dtype != pdtype:
        return None
    sdtype = None
    for name in state_dtype_names:
        d = arrays[name].dtype
        if sdtype is None:
            if d not in floats:
                return None
            sdtype = d
        elif d != sdtype:
            return None
    return _numpy_namespace(), pdtype, (sdtype if sdtype is not None else pdtype)


@lru_cache(maxsize=1)
def _numpy_floats():
    import numpy as np

    return (np.dtype(np.float32), np.dtype(np.float64))


@lru_cache(maxsize=1)
def _numpy_namespace():
    import array_api_compat.numpy as xp

    return xp


def check_arrays(op: str, arrays: Mapping[str, Any], *, same_shape: Iterable[str] = (),
                 state_dtype_names: Iterable[str] = ()):
    """Resolve the one array namespace of ``arrays`` and check them.

    ``arrays`` maps argument names (``"param"``, ``"grad"``, ``"state.mu"``) to arrays, the first
    being the parameter. Checks: every entry is an array of one namespace and one device; the
    parameter and gradient have one real floating dtype; every name in ``same_shape`` has the
    parameter's shape; the state arrays in ``state_dtype_names`` share one real floating dtype.
    Returns ``(xp, param_dtype, state_dtype)``.
    """
    fast = _numpy_fast(arrays, same_shape, state_dtype_names)
    if fast is not None:
        return fast
    names = list(arrays)
    first = names[0]
    xp = None
    for name in names:
        x = arrays[name]
        if not is_array(x):
            msg = (f"{op}: {name} must be an array of an array-API namespace, "
                   f"got {type(x).__name__}")
            raise TypeError(msg)
        x_xp = _namespace(x)
        if xp is None:
            xp = x_xp
        elif x_xp is not xp:
            msg = (f"{op}: {name} is a {x_xp.__name__} array but {first} is a {xp.__name__} "
                   f"array; all arrays of one step must come from one namespace")
            raise TypeError(msg)
    dev = _device(arrays[first])
    for name in names[1:]:
        d = _device(arrays[name])
        if dev is not None and d is not None and d != dev:
            msg = f"{op}: {name} is on device {d} but {first} is on device {dev}"
            raise ValueError(msg)
    param = arrays[first]
    pdtype = param.dtype
    if not xp.isdtype(pdtype, "real floating"):
        msg = (f"{op}: {first} has dtype {pdtype}; only real floating dtypes are accepted "
               f"(integer, bool and complex parameters are not)")
        raise TypeError(msg)
    shape = param.shape
    for name in same_shape:
        x = arrays[name]
        if x.shape != shape:
            msg = f"{op}: {name} has shape {tuple(x.shape)} but {first} has shape {tuple(shape)}"
            raise ValueError(msg)
    if "grad" in arrays and arrays["grad"].dtype != pdtype:
        msg = (f"{op}: grad has dtype {arrays['grad'].dtype} but {first} has dtype {pdtype}; "
               f"cast the gradient to the parameter's dtype")
        raise TypeError(msg)
    sdtype = None
    for name in state_dtype_names:
        d = arrays[name].dtype
        if sdtype is None:
            sdtype = d
            if not xp.isdtype(d, "real floating"):
                msg = f"{op}: {name} has dtype {d}; state arrays must be real floating"
                raise TypeError(msg)
        elif d != sdtype:
            msg = f"{op}: {name} has dtype {d} but the other state arrays have dtype {sdtype}"
            raise TypeError(msg)
    return xp, pdtype, (sdtype if sdtype is not None else pdtype)


def _check_one(op: str, spec: HParam, value: Any) -> None:
    if spec.kind == "bool":
        if not isinstance(value, bool):
            msg = f"{op}: {spec.name} must be True or False, got {value!r}"
            raise TypeError(msg)
        return
    if spec.kind == "choice":
        if value not in spec.choices:
            msg = f"{op}: {spec.name}={value!r} is not accepted; use {spec.range_text()}"
            raise ValueError(msg)
        return
    if is_array(value) and not isinstance(value, (int, float)):  # np.float64: a number
        shape = getattr(value, "shape", None)
        if shape is not None and tuple(shape) != ():
            msg = (f"{op}: {spec.name} must be a Python number or a 0-d array, "
                   f"got shape {tuple(shape)}")
            raise ValueError(msg)
        xp = _namespace(value)
        if not xp.isdtype(value.dtype, "real floating"):
            msg = (f"{op}: {spec.name} as an array must have a real floating dtype, "
                   f"got {value.dtype}")
            raise TypeError(msg)
        if readable(value):  # a 0-d read: cheap; traced/lazy/GPU values are not read
            number = float(value)
            if not spec.contains(number):
                msg = (f"{op}: {spec.name}={number!r} (a 0-d array of dtype {value.dtype}) "
                       f"is outside the accepted range {spec.range_text()}")
                raise ValueError(msg)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{op}: {spec.name} must be a real number in {spec.range_text()}, got {value!r}"
        raise TypeError(msg)
    if not spec.contains(float(value)):
        msg = (f"{op}: {spec.name}={value!r} is outside the accepted range "
               f"{spec.range_text()}")
        raise ValueError(msg)


# Verdicts of check_hparams: keys (op, id(specs), values, types) of tuples that passed. Only
# tuples of immutable values are stored (see check_hparams); ``types`` keeps 1 / True / 1.0 apart
# (they are equal as keys, but a bool is not a number and an int is not a bool). Keyed by the id
# of the spec tuple, which _SPECS_BY_ID keeps alive while a key names it (so its id is not
# reused): hashing the HParams themselves on every call would cost more than the check.
_PASSED: dict = {}
_PASSED_MAX = 4096
_SPECS_BY_ID: dict[int, tuple[HParam, ...]] = {}


def check_hparams(op: str, specs: tuple[HParam, ...], values: tuple) -> None:
    """Check ``values`` (in the order of ``specs``) against their ranges.

    Tuples of immutable values (Python scalars, strings, NumPy scalars) are checked once per
    distinct tuple (the verdict is cached; a failing tuple raises every time); a tuple holding an
    array is checked every call: an array is unhashable or, like a torch tensor (hashed by
    identity), mutable in place (a scheduler's ``lr.fill_(...)``), so a cached verdict could go
    stale.
    """
    types = tuple(map(type, values))
    key = (op, id(specs), values, types)
    try:
        if key in _PASSED:  # only immutable tuples are ever stored
            return
        hashable = True
    except TypeError:  # a NumPy array (or another unhashable value)
        hashable = False
    for spec, value in zip(specs, values, strict=True):
        _check_one(op, spec, value)
    if hashable and all(t in _IMMUTABLE or t.__module__ == "numpy" for t in types):
        if len(_PASSED) >= _PASSED_MAX:  # both at once: no key outlives the specs it names
            _PASSED.clear()
            _SPECS_BY_ID.clear()
        _SPECS_BY_ID.setdefault(id(specs), specs)
        _PASSED[key] = None


_IMMUTABLE = frozenset((int, float, bool, str, type(None)))


def check_count(op: str, xp, count: Any) -> None:
    """``state.count`` must be a 0-d integer array; where :func:`readable`, its value must lie in
    ``[0, max - 1]`` of its dtype, so that the step's ``count + 1`` cannot wrap around.

    This is the step-count overflow policy for every optimizer (docs/reliability.md): an error
    wherever the count can be read; elsewhere (under ``jax.jit``, on Dask, on a GPU)
    :func:`adaptive_ref._numerics.advance` poisons the step instead.
    """
    np = sys.modules.get("numpy")
    if np is not None and type(count) in (np.ndarray, np.int64, np.int32) and count.ndim == 0:
        top = _numpy_count_max().get(count.dtype)  # fast path: no namespace calls
        if top is not None:
            if 0 <= int(count) < top:
                return
            return _count_error(op, int(count), count.dtype, top)
    if not is_array(count) or tuple(getattr(count, "shape", (None,))) != () \
            or not xp.isdtype(count.dtype, "integral"):
        msg = f"{op}: state.count must be a 0-d integer array, got {count!r}"
        raise TypeError(msg)
    if not readable(count):
        return
    c = int(count)
    top = int(xp.iinfo(count.dtype).max)
    if not 0 <= c < top:
        _count_error(op, c, count.dtype, top)


def _count_error(op: str, c: int, dtype, top: int) -> None:
    if c < 0:
        msg = (f"{op}: state.count={c} is negative; a step count lies in [0, {top}) (was the "
               f"state edited or loaded from a bad file?)")
        raise ValueError(msg)
    msg = (f"{op}: state.count={c} is the largest {dtype} value: one more step would overflow "
           f"the step count (accepted: [0, {top}))")
    raise OverflowError(msg)


@lru_cache(maxsize=1)
def _numpy_count_max():
    import numpy as np

    return {np.dtype(t): int(np.iinfo(t).max) for t in (np.int64, np.int32)}


def check_finite(op: str, name: str, x: Any, *, hint: str = "") -> None:
    """Where ``x`` is :func:`readable`, every element must be finite (for the steps whose
    eigendecomposition fails on NaN/inf with a LinAlgError). One vectorised reduction; under a
    trace NaN/inf propagate into the result instead."""
    if not readable(x):
        return
    xp = _namespace(x)
    if bool(xp.all(xp.isfinite(x))):
        return
    bad = "NaN" if bool(xp.any(xp.isnan(x))) else "inf"
    msg = (f"{op}: {name} contains {bad} values; this step needs finite values (an "
           f"eigendecomposition of a non-finite matrix has no result)")
    if hint:
        msg += f"; {hint}"
    raise ValueError(msg)
