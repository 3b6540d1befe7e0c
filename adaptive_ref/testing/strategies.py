"""hypothesis strategies for testing optimizers against the registry.

Public: other projects import these to draw inputs for their own optimizers (register a spec with
:func:`adaptive_ref.registry.register`, then draw with :func:`hparams`).

* :func:`hparams` draws a full keyword set for ``spec.step``: every hyperparameter inside the range
  its :class:`~adaptive_ref._spec.HParam` declares, every knob among its accepted values.
* :func:`gradient_sequences` draws open-loop gradient sequences with magnitudes
  ``sign * 10**uniform(lo, hi)`` (default ``(-6, 6)``: both sides of a typical eps without
  overflowing ``g**2`` in float32) and exact zeros.
* :func:`params_arrays` draws finite parameter arrays of a shape and dtype.
* :func:`shapes` draws small shapes, including 0-d and zero-size ones.

All arrays are NumPy arrays; move them to a backend with
:meth:`adaptive_ref.testing.backends.Backend.asarray`.

Example::

    from hypothesis import given
    from adaptive_ref.registry import REGISTRY
    from adaptive_ref.testing import strategies as ars

    @given(ars.hparams(REGISTRY["adam"], eps=0.0),
           ars.gradient_sequences((3,), steps=4, zeros=False))
    def test_something(settings, grads): ...
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .._spec import REQUIRED, HParam, OptimizerSpec

__all__ = ["hparams", "real_values", "gradient_sequences", "params_arrays", "shapes",
           "magnitudes", "NAMED_RANGES"]

#: Sampling windows for well-known hyperparameter names, intersected with each HParam's range.
#: ``("log", lo, hi)``: ``10**uniform(lo, hi)``; ``("uniform", lo, hi)``; ``zero=True`` also
#: draws an exact 0 where the range allows it. Names not listed fall back to a window around
#: the default (see :func:`real_values`).
NAMED_RANGES: dict[str, tuple[str, float, float, bool]] = {
    "lr": ("log", -4.0, -1.0, False),
    "eps": ("log", -12.0, -3.0, True),
    "eps_root": ("log", -12.0, -3.0, True),
    "weight_decay": ("log", -4.0, -1.0, True),
    "lr_decay": ("log", -4.0, -1.0, True),
    "momentum_decay": ("log", -4.0, -1.0, True),
    "initial_accumulator_value": ("log", -3.0, 0.0, True),
    "beta1": ("uniform", 0.0, 0.99, True),
    "beta2": ("uniform", 0.5, 0.9999, False),
    "alpha": ("uniform", 0.5, 0.9999, False),
    "momentum": ("uniform", 0.0, 0.99, True),
    "dampening": ("uniform", 0.0, 1.0, True),
    "threshold": ("uniform", 0.0, 8.0, False),
    "schedule_multiplier": ("uniform", 0.0, 1.0, False),
}

#: Values always worth drawing for these names (defaults of torch/optax and the paper).
_TYPICAL: dict[str, tuple[float, ...]] = {
    "beta1": (0.9, 0.0),
    "beta2": (0.999, 0.99),
    "alpha": (0.99, 0.9),
    "threshold": (4.0, 5.0),
    "momentum": (0.9,),
}


def _clip(h: HParam, lo: float, hi: float) -> tuple[float, float]:
    lo = max(lo, h.low)
    hi = min(hi, h.high)
    if h.high_open and hi >= h.high:
        hi = math.nextafter(h.high, -math.inf)
    if h.low_open and lo <= h.low:
        lo = math.nextafter(h.low, math.inf)
    return lo, hi


def real_values(h: HParam) -> st.SearchStrategy[float]:
    """Python floats inside ``h``'s declared range.

    Uses :data:`NAMED_RANGES` for known names; otherwise a bounded range is sampled uniformly and
    a half-open one log-uniformly within a decade below and above the default (or in
    ``[1e-4, 1e-1]`` when the default is 0). The default itself, and the lower end when it is
    closed, are always candidates.
    """
    options: list[st.SearchStrategy[float]] = []
    if isinstance(h.default, (int, float)) and not isinstance(h.default, bool) and h.contains(
            float(h.default)):
        options.append(st.just(float(h.default)))
    named = NAMED_RANGES.get(h.name)
    if named is not None:
        kind, lo, hi, zero = named
    elif math.isfinite(h.low) and math.isfinite(h.high):
        kind, lo, hi, zero = "uniform", h.low, h.high, True
    else:
        d = float(h.default) if isinstance(h.default, (int, float)) else 0.0
        if d > 0:
            kind, lo, hi, zero = "log", math.log10(d) - 1.0, math.log10(d) + 1.0, True
        else:
            kind, lo, hi, zero = "log", -4.0, -1.0, True
    if zero and h.contains(0.0):
        options.append(st.just(0.0))
    for v in _TYPICAL.get(h.name, ()):
        if h.contains(v):
            options.append(st.just(v))
    if kind == "log":
        lo_v, hi_v = _clip(h, 10.0**lo, 10.0**hi)
        if lo_v <= hi_v and lo_v > 0:
            options.append(st.floats(math.log10(lo_v), math.log10(hi_v)).map(
                lambda e: float(10.0**e)).filter(h.contains))
    else:
        lo_v, hi_v = _clip(h, lo, hi)
        if lo_v <= hi_v:
            options.append(st.floats(lo_v, hi_v).filter(h.contains))
    if not options:
        msg = f"no value can be drawn for {h.name} in {h.range_text()}"
        raise ValueError(msg)
    return st.one_of(*options)


def _values(h: HParam) -> st.SearchStrategy[Any]:
    if h.kind == "bool":
        return st.booleans()
    if h.kind == "choice":
        return st.sampled_from(h.choices)
    return real_values(h)


def _repair(spec: OptimizerSpec, s: dict[str, Any]) -> dict[str, Any]:
    """Resolve the cross-constraints a step function checks (so draws are valid, not filtered).

    Nesterov momentum needs momentum > 0 (and, for SGD, dampening = 0), as torch requires.
    """
    names = spec.hparam_names
    if s.get("nesterov") is True:
        if "momentum" in names and s.get("momentum", 0.0) == 0.0:
            s["momentum"] = 0.9
        if "dampening" in names:
            s["dampening"] = 0.0
    return s


@st.composite
def _draw_hparams(draw, spec: OptimizerSpec, profile: str | None, fixed: dict[str, Any]):
    base = spec.settings(None)
    if profile is not None:
        prof = spec.profiles[profile].settings
    out: dict[str, Any] = {}
    for h in spec.hparams:
        if h.name in fixed:
            out[h.name] = fixed[h.name]
        elif h.name in spec.fixed:
            out[h.name] = spec.fixed[h.name]
        elif profile is not None and (h.knob or h.kind != "real") and h.name in prof:
            out[h.name] = prof[h.name]
        else:
            out[h.name] = draw(_values(h), label=h.name)
    for k, v in base.items():
        out.setdefault(k, v)
    out = _repair(spec, out)
    out.update(fixed)  # the caller's values win over any repair
    out.update(spec.fixed)
    for k, v in out.items():
        if v is REQUIRED:
            out[k] = draw(_values(spec.hparam(k)), label=k)
    return out


def hparams(spec: OptimizerSpec, profile: str | None = None, **fixed: Any):
    """A strategy for a complete, valid keyword set for ``spec.step``.

    ``fixed`` pins hyperparameters (e.g. ``eps=0.0``, ``amsgrad=True``); the spec's own ``fixed``
    entries (AMSGrad's ``amsgrad=True``) are always kept. With ``profile`` (``"torch"`` or
    ``"optax"``) the convention knobs (bools and choices) take that framework's values and only the
    numbers are drawn. Use ``spec.init_kwargs(settings)`` for the matching ``spec.init`` call.
    """
    for k in fixed:
        spec.hparam(k)  # KeyError naming the valid names
    if profile is not None and profile not in spec.profiles:
        msg = f"{spec.name} has no profile {profile!r}; it has {', '.join(spec.profiles)}"
        raise KeyError(msg)
    return _draw_hparams(spec, profile, dict(fixed))


def magnitudes(exponents: tuple[float, float] = (-6.0, 6.0), *, zeros: bool = True,
               signed: bool = True) -> st.SearchStrategy[float]:
    """Floats ``sign * 10**uniform(*exponents)``, plus exact zeros when ``zeros``."""
    lo, hi = exponents
    mag = st.floats(lo, hi).map(lambda e: float(10.0**e))
    if signed:
        mag = st.tuples(st.sampled_from((-1.0, 1.0)), mag).map(lambda t: t[0] * t[1])
    return st.one_of(st.just(0.0), mag) if zeros else mag


def _default_exponents(dtype) -> tuple[float, float]:
    # float16: max 65504, smallest normal 6.1e-5, so g**2 stays finite and normal for |g| in
    # [1e-2, 1e2]; float32 and float64 take the full (-6, 6) (g**2 <= 1e12).
    return (-2.0, 2.0) if np.dtype(dtype) == np.float16 else (-6.0, 6.0)


def gradient_sequences(shape: tuple[int, ...], steps: int | tuple[int, int] = 5,
                       dtype: Any = np.float64, *, exponents: tuple[float, float] | None = None,
                       zeros: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Open-loop gradient sequences: a NumPy array of shape ``(steps, *shape)``.

    Entries are ``sign * 10**uniform(*exponents)`` (default ``(-6, 6)``, ``(-2, 2)`` for float16)
    or, when ``zeros``, exact zeros. ``steps`` is a count or an inclusive ``(min, max)`` range.
    Index ``[t]`` is the gradient of step ``t + 1``.
    """
    exps = exponents if exponents is not None else _default_exponents(dtype)
    n = st.just(steps) if isinstance(steps, int) else st.integers(*steps)
    return n.flatmap(lambda k: hnp.arrays(
        np.dtype(dtype), (k, *shape), elements=magnitudes(exps, zeros=zeros)))


def params_arrays(shape: tuple[int, ...], dtype: Any = np.float64, *,
                  exponents: tuple[float, float] = (-3.0, 3.0),
                  zeros: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Finite parameter arrays: entries ``sign * 10**uniform(*exponents)`` or 0."""
    exps = exponents
    if np.dtype(dtype) == np.float16:
        exps = (max(exps[0], -4.0), min(exps[1], 4.0))
    return hnp.arrays(np.dtype(dtype), shape, elements=magnitudes(exps, zeros=zeros))


def shapes(*, min_dims: int = 0, max_dims: int = 3, min_side: int = 0,
           max_side: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    """Small array shapes, 0-d and zero-size included by default."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)
