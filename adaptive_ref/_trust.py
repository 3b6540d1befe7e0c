"""Per-tensor norms and trust ratios (LAMB, LARS): written once, read by both steps.

Every quantity is a 0-d array of the parameter's compute dtype (no ``.item()``, no host
synchronisation, no Python branch on a value: the zero-norm rule is an ``xp.where``), so the
steps trace under ``jax.jit`` and stay lazy on Dask.
"""

from __future__ import annotations

from ._spec import HParam

__all__ = ["ZERO_NORM", "tensor_norm", "trust_ratio"]


ZERO_NORM = HParam(
    "zero_norm", "one",
    "the trust ratio where a norm vanishes: 'one': 1 where ||theta|| = 0 or the update's norm "
    "is 0 (optax scale_by_trust_ratio, Keras Lamb; without it a parameter that starts at 0 never "
    "moves); 'formula': the ratio as the papers write it, so 0 where ||theta|| = 0 (and 0 where "
    "its denominator is 0, where the update is 0 anyway)",
    kind="choice", choices=("one", "formula"), knob=True)


def tensor_norm(xp, x):
    """The Euclidean norm of all of ``x`` as a 0-d array: ``sqrt(sum(x * x))`` (every
    namespace has these; ``linalg.vector_norm`` is an optional extension)."""
    return xp.sqrt(xp.sum(x * x))


def trust_ratio(xp, num, den, update_norm, zero_norm: str):
    """``num / den`` with the zero-norm rule (see :data:`ZERO_NORM`); ``num`` is the (scaled)
    parameter norm, ``update_norm`` the norm whose vanishing makes the update 0."""
    one = xp.ones_like(num)
    zero = xp.zeros_like(num)
    safe = xp.where(den == 0, one, den)
    ratio = num / safe
    if zero_norm == "one":
        return xp.where((num == 0) | (update_norm == 0), one, ratio)
    return xp.where(den == 0, zero, ratio)
