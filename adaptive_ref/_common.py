"""The prelude and epilogue every step function shares.

``prelude`` validates the inputs and resolves the namespace; ``prepare_grad`` applies the sign
(``maximize``) and coupled L2 decay in the order torch uses (sign first, then ``g + wd * p``);
``scalars`` turns array hyperparameters into 0-d arrays of the scalar dtype. Each step function
keeps its own update in its own module so its math can be read in one place.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _numerics as nx
from ._checks import NP as _NP
from ._checks import check_arrays, check_count, check_hparams, is_array
from ._spec import HParam

__all__ = ["Prelude", "prelude", "prepare_grad", "scalars", "finish"]


class Prelude(NamedTuple):
    xp: Any
    param_dtype: Any
    dtype: Any  # compute dtype = state dtype
    sdtype: Any  # scalar dtype (float64 where available)
    p: Any  # param in the compute dtype
    g: Any  # grad in the compute dtype


def prelude(op: str, param, grad, state, state_type: type, init_name: str, *,
            own_shape: tuple = ()) -> Prelude:
    """Validate ``param``, ``grad`` and ``state``; return the namespace and the cast inputs.

    ``own_shape``: state fields whose shape is not the parameter's (Adafactor's factors); their
    namespace and dtype are checked here, their shapes by the caller."""
    fast = _numpy_prelude(param, grad, state, state_type)
    if fast is not None:
        return fast
    if not isinstance(state, state_type):
        got = type(state).__name__
        msg = (f"{op}: state is a {got}, not a {state_type.__name__}; make it with {init_name} "
               f"(a state made by another optimizer cannot be used here)")
        raise TypeError(msg)
    arrays = {"param": param, "grad": grad}
    moment_names = []
    # the count and a state type's SCALAR_FIELDS (0-d, scalar dtype) are not moment arrays
    skip = ("count", *getattr(state_type, "SCALAR_FIELDS", ()))
    optional = state_type._field_defaults
    for name, value in zip(state._fields, state, strict=True):
        if name in skip or (value is None and name in optional):
            continue
        if not is_array(value):
            msg = (f"{op}: state.{name} must be an array, got {type(value).__name__}; make the "
                   f"state with {init_name} (or load it with state_from_dict)")
            raise TypeError(msg)
        key = f"state.{name}"
        arrays[key] = value
        moment_names.append(key)
    same = [m for m in moment_names if m[6:] not in own_shape]
    xp, pdtype, sdtype_state = check_arrays(
        op, arrays, same_shape=["grad", *same], state_dtype_names=moment_names)
    check_count(op, xp, state.count)
    sdtype = nx.scalar_dtype(xp, param, sdtype_state)
    p = param if sdtype_state == pdtype else xp.astype(param, sdtype_state)
    g = grad if sdtype_state == pdtype else xp.astype(grad, sdtype_state)
    return Prelude(xp, pdtype, sdtype_state, sdtype, p, g)


_MOMENTS: dict = {}  # state type -> ((field index, optional), ...) of its moment arrays


def _moment_fields(state_type: type) -> tuple:
    """The fields :func:`prelude` checks as moment arrays: not the count, not ``SCALAR_FIELDS``."""
    got = _MOMENTS.get(state_type)
    if got is None:
        skip = ("count", *getattr(state_type, "SCALAR_FIELDS", ()))
        optional = state_type._field_defaults
        got = _MOMENTS[state_type] = tuple(
            (i, name in optional) for i, name in enumerate(state_type._fields) if name not in skip)
    return got


_new_prelude = tuple.__new__  # Prelude's fields in order, without NamedTuple's Python __new__


def _numpy_prelude(param, grad, state, state_type: type):
    """:func:`prelude`'s result when ``param``, ``grad`` and every moment are float32/float64
    ``numpy.ndarray`` of one shape, the state is a ``state_type`` and every check passes; None
    otherwise (the general path then runs every check and raises its errors). The same checks as
    the general path, written for this one signature: no namespace or device lookups (a NumPy
    array's namespace is NumPy and its device the CPU), which are most of a small step's cost.
    Dtypes are compared by identity (NumPy's built-in dtypes are singletons; another dtype
    object, e.g. a byte-swapped one, takes the general path)."""
    nd = _NP.ndarray
    if nd is None or type(param) is not nd or type(grad) is not nd \
            or not isinstance(state, state_type):
        return None
    pdtype, shape = param.dtype, param.shape
    f32, f64 = _NP.floats
    if (pdtype is not f64 and pdtype is not f32) or grad.dtype is not pdtype \
            or grad.shape != shape:
        return None
    sdtype = None
    for i, optional in _MOMENTS.get(state_type) or _moment_fields(state_type):
        x = state[i]
        if x is None and optional:
            continue
        if type(x) is not nd or x.shape != shape:
            return None
        if sdtype is None:
            sdtype = x.dtype
            if sdtype is not f64 and sdtype is not f32:
                return None
        elif x.dtype is not sdtype:
            return None
    count = state.count
    if type(count) not in _NP.counts or count.ndim != 0:
        return None
    top = _NP.count_top.get(count.dtype)
    if top is None or not 0 <= int(count) < top:
        return None  # the general path raises check_count's error
    if sdtype is None or sdtype is pdtype:
        return _new_prelude(Prelude, (_NP.xp, pdtype, pdtype, f64, param, grad))
    xp = _NP.xp
    return Prelude(xp, pdtype, sdtype, f64, xp.astype(param, sdtype), xp.astype(grad, sdtype))


def scalars(xp, sdtype, like, *values):
    """Array hyperparameters as 0-d arrays of the scalar dtype; Python numbers unchanged."""
    for v in values:
        if type(v) is not float and type(v) is not int:  # rare: an array or a NumPy scalar
            return tuple(nx.as_scalar(xp, v, sdtype, like) if is_array(v) else v for v in values)
    return values


def prepare_grad(xp, g, p, dtype, *, maximize: bool, weight_decay, coupled: bool):
    """Sign first, then coupled L2 (``g + wd * p``), as every torch ``_single_tensor_*`` does."""
    if maximize:
        g = -g
    if coupled and (is_array(weight_decay) or weight_decay != 0):
        g = g + nx.to(xp, weight_decay, dtype) * p
    return g


def finish(xp, p_new, param_dtype):
    """Cast the updated parameter back to the parameter's dtype."""
    d = p_new.dtype
    return p_new if d is param_dtype or d == param_dtype else xp.astype(p_new, param_dtype)


__all__ += ["check_hparams"]


def init_zeros(op: str, param, state_dtype=None):
    """Validate ``param`` for ``<name>_init``; return ``(xp, zeros, count)`` for its state."""
    import array_api_compat as aac

    if not is_array(param):
        msg = f"{op}: param must be an array of an array-API namespace, got {type(param).__name__}"
        raise TypeError(msg)
    xp = aac.array_namespace(param)
    dtype = param.dtype if state_dtype is None else state_dtype
    for what, d in (("param", param.dtype), ("state_dtype", dtype)):
        if not xp.isdtype(d, "real floating"):
            msg = f"{op}: {what} has dtype {d}; only real floating dtypes are accepted"
            raise TypeError(msg)
    z = xp.zeros(param.shape, dtype=dtype, device=aac.device(param))
    return xp, z, nx.new_count(xp, param)


__all__ += ["init_zeros"]


def init_number(op: str, specs, name: str, value) -> float:
    """An ``init`` hyperparameter (``specs`` holds its HParam) checked like a step's, as a
    Python float: a Python number or a readable 0-d array (the state is built from it)."""
    from ._checks import readable

    spec = next(h for h in specs if h.name == name)
    check_hparams(op, (spec,), (value,))
    if not readable(value):
        msg = f"{op}: {name} must be a concrete number (not traced or lazy), got {value!r}"
        raise TypeError(msg)
    return float(value)


__all__ += ["init_number"]


# Knobs several optimizers share: one definition each (registry, docs and tests read them).
WEIGHT_DECAY_MODE = HParam(
    "weight_decay_mode", "coupled",
    "'coupled': L2, g += wd*p before the update (torch weight_decay); 'decoupled': "
    "p <- p - lr*wd*p before the update, with the step's (scheduled) lr (torch AdamW and "
    "decoupled_weight_decay=True; Keras weight_decay in every optimizer)",
    kind="choice", choices=("coupled", "decoupled"), knob=True)

FACTOR_PRECISION = HParam(
    "factor_precision", "float64",
    "dtype of the scalar factors (1 - beta^t, NAdam's mu_t and their product, RAdam's rho_t): "
    "'float64': computed in float64 and cast once (torch, the reference); 'param': computed in "
    "the parameter's dtype (optax, Keras); the two agree for float64 parameters",
    kind="choice", choices=nx.FACTOR_PRECISIONS, knob=True)


EMA_WEIGHT_PRECISION = HParam(
    "ema_weight_precision", "float64",
    "how the moment EMAs' weight 1 - beta is formed: 'float64': 1 - beta in float64, cast once "
    "(torch, optax, Keras Adam: a Python float); 'param': 1 - beta computed in the parameter's "
    "dtype from beta rounded to it (Keras Nadam); the two agree for float64 parameters",
    kind="choice", choices=nx.FACTOR_PRECISIONS, knob=True)


def ema_weights(xp, beta, like, sdtype, ema_weight_precision: str):
    """``(beta, 1 - beta)`` for a moment EMA: ``1 - beta`` as a Python float (float64) or, with
    ``"param"``, ``1 - beta`` computed in the parameter's dtype (0-d array; both cast by the
    caller like any scalar)."""
    if ema_weight_precision == "float64":
        return beta, 1 - beta
    b = nx.as_scalar(xp, beta, nx.factor_dtype(xp, sdtype, like.dtype, "param"), like)
    return beta, 1 - b


def is_zero(x) -> bool:
    """True for a Python number equal to 0 (a hyperparameter that switches its term off); an
    array, even a zero one, is never treated so (its value may change or be traced)."""
    return isinstance(x, (int, float)) and x == 0


def decoupled_decay_factor(weight_decay, decay_scaling: str = "lr", schedule_multiplier=1.0):
    """``(lr, wd) -> factor`` that multiplies p for decoupled decay, or None when wd is 0.

    ``decay_scaling="lr"``: 1 - lr*wd (torch AdamW, optax adamw, Keras' ``p - lr*wd*p``: the
    same number up to one rounding); ``"schedule"``: 1 - schedule_multiplier*wd
    (Loshchilov & Hutter). Used by every optimizer's ``weight_decay_mode="decoupled"`` and by the
    fused paths.
    """
    if is_zero(weight_decay):
        return None
    if decay_scaling == "lr":
        return lambda lr_, wd: 1 - lr_ * wd
    return lambda lr_, wd: 1 - schedule_multiplier * wd


def decoupled_decay(lr, weight_decay):
    """The factor ``1 - lr*wd`` that multiplies p for ``weight_decay_mode="decoupled"`` (the
    lr-scaled form of :func:`decoupled_decay_factor`), or None when wd is 0."""
    factor = decoupled_decay_factor(weight_decay)
    return None if factor is None else factor(lr, weight_decay)


__all__ += ["WEIGHT_DECAY_MODE", "FACTOR_PRECISION", "EMA_WEIGHT_PRECISION", "ema_weights",
            "decoupled_decay_factor", "decoupled_decay", "is_zero"]
