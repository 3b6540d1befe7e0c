"""The error budget of the suite, derived per array and checkpoint (docs/conformance.md).

Every implementation is compared with the golden (the exact trajectory rounded once to float64)
in units of its *own* dtype, using the normwise ULP of :func:`adaptive_ref.ulp.ulp_error` with
the array's largest magnitude so far (the golden's ``scale`` record) as the unit.

The budget of one array (a parameter or a state field) at one checkpoint is

    budget = 1/2 ulp64(S)/ulp(S)                       the golden's own rounding
           + 1/2                                       the implementation's rounding of its value
           + u (LAMBDA * rand + sys) / ulp(S)          accumulated rounding errors

where ``S`` is the scale, ``ulp`` the dtype's spacing at S, ``u`` its unit roundoff and
``rand``, ``sys`` the golden's ``error`` record (:mod:`adaptive_ref.conformance.error_model`):
the standard deviation of the independent roundings propagated along the case's own trajectory
(moments contract, sums and parameters accumulate, each field's errors move the others as the
update's Jacobian says) and the systematic shift of rounding the hyperparameters to the dtype.

Confidence. Under the probabilistic model of Higham & Mary (independent roundings, uniform in
[-u, u]) the accumulated error of one element is a sum of many independent terms, close to
normal; ``LAMBDA = 6`` standard deviations is exceeded with probability 2e-9 per element and
checkpoint, so a correct implementation fails one of the ~1.5e6 element checks of the whole
catalogue with probability below 0.3 %. For few roundings (one step) 6 sigma is also above the
worst case: k roundings of at most u each sum to at most k u, and 6 sqrt(k/3) u >= k u for
k <= 12.

Goldens without an ``error`` record (schema-1 files from elsewhere) fall back to
:func:`counted_budget`, the earlier count of roundings times the step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAMBDA", "UNIT", "array_budget", "budget", "counted_budget", "ROUNDINGS"]

LAMBDA = 6.0
UNIT = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}


def _ulp(x: float, dtype: str) -> float:
    return float(np.spacing(np.asarray(abs(x), dtype=dtype)))


def array_budget(dtype: str, scale: float, error: tuple[float, float] | list) -> float:
    """Allowed normwise ULP error (units of ``dtype`` at ``scale``) of one array."""
    if scale == 0.0:
        return 1.0
    rand, sys = float(error[0]), float(error[1])
    unit = _ulp(scale, dtype)
    return (0.5 * _ulp(scale, "float64") / unit + 0.5
            + UNIT[dtype] * (LAMBDA * rand + sys) / unit)


# The earlier counted budget (k roundings per step, k * t ULP), kept for goldens that carry no
# error record.
ROUNDINGS: dict[str, int] = {
    "sgd": 9, "adagrad": 10, "rmsprop": 24, "adam": 19, "amsgrad": 19, "adamw": 19,
    "adamax": 11, "nadam": 20, "radam": 20, "lazy_adam": 19, "sparse_adagrad": 10,
}
DEFAULT_ROUNDINGS = 20


def counted_budget(optimizer: str, step: int, dtype: str, hparams: dict | None = None) -> float:
    """``ROUNDINGS[optimizer] * step`` ULP: the budget of a golden without an error record."""
    return float(ROUNDINGS.get(optimizer, DEFAULT_ROUNDINGS) * step)


budget = counted_budget  # the callable form ``(optimizer, step, dtype[, hparams])``
