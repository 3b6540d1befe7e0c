"""ULP-aware comparisons for optimizer trajectories.

Two measures, both in units of the *implementation's* dtype:

* :func:`ulp_distance` -- elementwise distance between two arrays of the same float dtype, in
  representable numbers between them (0 means bit-equal; works across zero).
* :func:`ulp_error` -- the *normwise* ULP error of an array against a (higher precision)
  expected array: ``max_i |a_i - e_i| / ulp(max_i |e_i|)``. An array's rounding errors scale with
  its largest entries, not with entries that cancel near zero (a first moment of mixed-sign
  gradients), so this is the measure every conformance tolerance is stated in.

:func:`assert_close_ulp` checks one array; :func:`assert_matches_golden` checks a whole
trajectory (params and state at every checkpoint) against a golden case with the suite's error
budget and raises an ``AssertionError`` whose message says which optimizer, which step, which
array and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ulp", "ulp_distance", "ulp_error", "assert_close_ulp", "assert_matches_golden"]


def ulp(x, dtype="float64") -> np.ndarray:
    """The spacing of ``dtype`` at ``|x|`` (at 0: the smallest subnormal)."""
    dt = np.dtype(dtype)
    return np.spacing(np.abs(np.asarray(x, dtype=np.float64)).astype(dt)).astype(np.float64)


def ulp_distance(a, b) -> np.ndarray:
    """Elementwise number of representable values between ``a`` and ``b`` (same float dtype)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype.kind != "f":
        msg = f"ulp_distance needs two arrays of one float dtype, got {a.dtype} and {b.dtype}"
        raise TypeError(msg)
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]

    def ordered(x):
        i = x.view(ints).astype(np.int64)
        return np.where(i < 0, np.iinfo(ints).min - i, i)

    d = np.abs(ordered(a).astype(object) - ordered(b).astype(object)) if a.dtype.itemsize == 8 \
        else np.abs(ordered(a) - ordered(b))
    return np.asarray(d, dtype=np.float64)


def ulp_error(actual, expected, dtype, *, scale: float | None = None) -> float:
    """Normwise ULP error of ``actual`` against ``expected`` in units of ``dtype``.

    ``scale`` (default ``max |expected|``) is the magnitude whose ULP is the unit. If the scale
    is 0 (an all-zero expected array) the result is 0 for an exact match and ``inf`` otherwise.
    NaN anywhere in ``actual`` gives ``inf``.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        msg = f"shape {a.shape} does not match the expected shape {e.shape}"
        raise ValueError(msg)
    if a.size == 0:
        return 0.0
    if not np.all(np.isfinite(a)):
        return math.inf
    diff = float(np.max(np.abs(a - e)))
    s = float(np.max(np.abs(e))) if scale is None else float(scale)
    if diff == 0.0:
        return 0.0
    if s == 0.0:
        return math.inf
    return diff / float(ulp(s, dtype))


def assert_close_ulp(actual, expected, *, max_ulp: float, dtype=None, what: str = "array"):
    """Assert the normwise ULP error is at most ``max_ulp`` (``dtype``: that of ``actual``)."""
    dt = np.asarray(actual).dtype if dtype is None else np.dtype(dtype)
    err = ulp_error(actual, expected, dt)
    if not err <= max_ulp:
        rel = _rel(actual, expected)
        msg = (f"{what}: error {err:.3g} ULP ({dt}) > allowed {max_ulp:g} ULP "
               f"(max relative error {rel:.3g})")
        raise AssertionError(msg)


def _rel(actual, expected) -> float:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    s = float(np.max(np.abs(e))) if e.size else 0.0
    d = float(np.max(np.abs(a - e))) if e.size else 0.0
    return d / s if s else (0.0 if d == 0 else math.inf)


def assert_matches_golden(case, result: Mapping[int, Any], *, dtype: str | None = None,
                          budget=None) -> None:
    """Check a trajectory against a golden case; raise a readable ``AssertionError`` if not.

    ``result`` maps checkpoint steps to ``(params, state)`` as an adapter's ``read`` returns
    them (see :mod:`conformance.adapters.base`). ``dtype`` defaults to the case's; ``budget`` is
    a callable ``(optimizer, step, dtype) -> max ULP`` (default: the suite's derived budget,
    :func:`conformance.tolerance.budget`).
    """
    from conformance.compare import compare

    res = compare(case, result, dtype=dtype, budget=budget)
    if not res.passed:
        raise AssertionError(res.report())
