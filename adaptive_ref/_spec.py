"""Data types of the registry: hyperparameter specs, framework profiles, optimizer specs.

Kept apart from :mod:`adaptive_ref.registry` so that each optimizer module can define its own
:class:`OptimizerSpec` next to its step function without a circular import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HParam", "Profile", "OptimizerSpec", "REQUIRED"]


class _Required:
    """Marker for a hyperparameter a framework requires (optax: every lr)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class HParam:
    """One hyperparameter or convention knob of an optimizer.

    ``kind`` is ``"real"`` (a Python float or a 0-d floating array), ``"bool"`` or ``"choice"``.
    A real value must lie in ``[low, high]``; ``low_open`` / ``high_open`` make an end open.
    A real value must also be finite (an infinite lr, eps or weight decay gives -inf/NaN
    parameters or a silent no-op), unless ``allow_inf`` (e.g. a clip radius, where inf means
    "no clipping"); :meth:`range_text` then prints the infinite end closed.
    ``init`` marks knobs that decide the state layout: ``<name>_init`` accepts them too.
    ``knob`` marks convention switches (where frameworks disagree), as opposed to numbers.
    """

    name: str
    default: Any
    meaning: str
    kind: str = "real"
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    init: bool = False
    knob: bool = False
    allow_inf: bool = False

    def range_text(self) -> str:
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = "(" if self.low_open or (self.low == -math.inf and not self.allow_inf) else "["
        hi = ")" if self.high_open or (self.high == math.inf and not self.allow_inf) else "]"
        text = f"{lo}{self.low:g}, {self.high:g}{hi}"
        if not self.allow_inf and math.inf in (-self.low, self.high):
            text += " (finite)"
        return text

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if math.isinf(value) and not self.allow_inf:
            return False
        if value < self.low or (self.low_open and value == self.low):
            return False
        if value > self.high or (self.high_open and value == self.high):
            return False
        return True


@dataclass(frozen=True)
class Profile:
    """Settings that make the reference reproduce one framework's optimizer exactly.

    ``settings`` maps canonical hyperparameter names to the framework's defaults and conventions;
    a value of :data:`REQUIRED` means the framework has no default (the caller must pass one).
    ``source`` names the framework's code that the profile was read from.
    """

    name: str
    settings: Mapping[str, Any]
    source: str
    notes: str = ""


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the tests, the CLI, the conformance suite and the docs need about an optimizer."""

    name: str
    title: str
    init: Callable
    step: Callable
    state_type: type
    hparams: tuple[HParam, ...]
    paper: str
    summary: str
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    elementwise: bool = True
    #: the parameter rank the step accepts (Muon: 2); None: any shape
    param_ndim: int | None = None
    # arrays derived from (param, state) that the goldens record next to the state fields
    # (schedule-free's evaluation point x): name -> f(param, state, **settings)
    observables: Mapping[str, Callable] = field(default_factory=dict)
    # What one element's step reads (the conformance oracle and error model follow it):
    # "element" -- its own state only; "tensor" -- also reductions over its whole parameter
    # (LAMB's and LARS's per-tensor norms: trust ratios; Muon's Newton-Schulz on the whole
    # matrix); "tree" -- reductions over every parameter of the model (Prodigy, D-Adapt
    # AdamW: adaptive_ref._global). Row-sparse and matrix optimizers (elementwise False,
    # coupling "element") are outside the catalogue or handled apart.
    coupling: str = "element"

    @property
    def hparam_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hparams)

    @property
    def init_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hparams if h.init) + ("state_dtype",)

    @property
    def knobs(self) -> tuple[HParam, ...]:
        return tuple(h for h in self.hparams if h.knob)

    def hparam(self, name: str) -> HParam:
        for h in self.hparams:
            if h.name == name:
                return h
        msg = f"{self.name} has no hyperparameter {name!r}; it has {', '.join(self.hparam_names)}"
        raise KeyError(msg)

    def defaults(self) -> dict[str, Any]:
        """The reference's own defaults (the paper's, where the paper gives one)."""
        out = {h.name: h.default for h in self.hparams}
        out.update(self.fixed)
        return out

    def settings(self, profile: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Full keyword set for ``step``: defaults, then the profile, then ``overrides``."""
        out = self.defaults()
        if profile is not None:
            if profile not in self.profiles:
                msg = (f"{self.name} has no profile {profile!r}; "
                       f"it has {', '.join(self.profiles) or 'none'}")
                raise KeyError(msg)
            out.update(self.profiles[profile].settings)
        for k in overrides:
            self.hparam(k)  # raises a KeyError naming the valid names
        out.update(overrides)
        for k, v in out.items():
            if v is REQUIRED:
                msg = f"{self.name} under profile {profile!r} needs {k} to be given"
                raise TypeError(msg)
        return out

    def init_kwargs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of ``settings`` that ``init`` accepts."""
        return {k: v for k, v in settings.items() if k in self.init_names}
