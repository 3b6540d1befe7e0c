"""The adapter protocol: how the conformance suite drives one implementation.

An adapter is a small class with a ``name``, the ``profile`` whose cases it answers to, and four
methods. The suite calls, for each case:

1. ``supports(case)``: ``None`` if the implementation can express the case, else a reason string
   (shown as ``n/a`` in the matrix with the reason, never a crash);
2. ``build(case)``: make the implementation's optimizer and parameters (``case.init_params()``,
   NumPy arrays in the case dtype) and return any handle;
3. ``step(handle, grads, lr)`` once per step: ``grads`` maps parameter names to NumPy arrays in
   the case dtype; ``lr`` is the step's learning rate when the case has a schedule, else None;
4. ``read(handle)`` at each checkpoint: ``(params, state)`` as NumPy arrays, ``state`` mapping
   each parameter name to ``{canonical field: value}`` (the reference's field names: ``mu``,
   ``nu``, ``nu_max``, ``sum``, ``momentum_buffer``, ``mu_product``, ``count``; schedule-free's
   ``z``, ``weight_sum``, ``lr_max`` and its evaluation point ``x``). Report the fields you
   have; missing ones are not compared.

A case may carry only some settings: the convention diagnosis
(:mod:`adaptive_ref.conformance.diagnose`) passes only the common numeric hyperparameters (lr,
betas, alpha, momentum, dampening, weight_decay) so that the implementation's own conventions act.
An adapter then leaves every setting the case does not name at the implementation's default
(:class:`Given` and :func:`present` help), and may state its own numeric defaults in
``declared_settings(optimizer)`` (canonical names, e.g. ``{"eps": 1e-7}``).

Closed-loop cases call ``read`` before each step to evaluate the gradient at the iterate. An
adapter may override ``run`` (e.g. to compile the whole trajectory) as long as it returns the
same ``{step: (params, state)}`` mapping.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Adapter", "Snapshot", "unsupported", "ABSENT", "Given", "present"]

Snapshot = tuple  # (params: dict[str, ndarray], state: dict[str, dict[str, Any]])


def unsupported(reason: str) -> str:
    return reason if reason.startswith("unsupported") else f"unsupported: {reason}"


class _Absent:
    """A setting the case does not name (falsy; keywords holding it are dropped by present)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT = _Absent()


class Given(dict):
    """A case's settings where a missing name reads as :data:`ABSENT` instead of a KeyError."""

    def __missing__(self, key):
        return ABSENT


def present(kwargs: dict) -> dict:
    """``kwargs`` without the keywords built from absent settings (ABSENT, or a tuple holding
    it), so that the implementation's own defaults act for those."""
    return {k: v for k, v in kwargs.items()
            if v is not ABSENT and not (isinstance(v, tuple) and ABSENT in v)}


class Adapter:
    """Base class; subclasses set ``name`` and ``profile`` and implement build/step/read."""

    name: str = "?"
    profile: str | None = None  # the profile whose cases this implementation answers; None: all
    description: str = ""
    # None: part of the default run. A string: why it runs only when named with --impl.
    opt_in: str | None = None

    def missing(self) -> str | None:
        """None if the implementation is importable here, else why not (e.g. not installed)."""
        return None

    def version(self) -> str:
        return "?"

    def supports(self, case) -> str | None:
        return None

    def declared_settings(self, optimizer: str) -> dict:
        """Numeric settings the implementation uses by default for ``optimizer``, by canonical
        name (e.g. ``{"eps": 1e-7}``); the convention diagnosis tries them. {}: none stated."""
        return {}

    def build(self, case) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, handle: Any, grads: dict[str, np.ndarray], lr: float | None) -> None:
        raise NotImplementedError  # pragma: no cover

    def read(self, handle: Any) -> Snapshot:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_params(self, handle: Any) -> dict[str, np.ndarray]:
        return self.read(handle)[0]

    def run(self, case) -> dict[int, Snapshot]:
        """Drive one case: build, feed every step's gradients, read back at the checkpoints."""
        handle = self.build(case)
        cps = set(case.checkpoints)
        out = {}
        replay = case.kind == "replay"
        for t in range(1, case.steps + 1):
            grads = case.gradients(t) if replay else case.gradients(t, self.read_params(handle))
            self.step(handle, grads, case.lr_at(t))
            if t in cps:
                out[t] = self.read(handle)
        return out

    def applies_to(self, case) -> bool:
        """Whether the case belongs to this implementation's profile (else it is not shown)."""
        return self.profile is None or case.profile == self.profile
