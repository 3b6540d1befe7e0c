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

from ..ulp import ulp, ulp_distance, ulp_error

__all__ = ["ulp", "ulp_distance", "ulp_error", "assert_close_ulp", "assert_matches_golden"]


def assert_close_ulp(actual, expected, *, max_ulp: float, dtype=None, what: str = "array",
                     nan_equal: bool = True):
    """Assert the normwise ULP error is at most ``max_ulp`` (``dtype``: that of ``actual``).

    NaN-aware: with ``nan_equal`` (the default) a NaN in both arrays at the same position is
    equal, and so is an infinity of the same sign in both; those positions are left out of the
    error. A NaN or infinity in only one of them fails, naming the first such index. With
    ``nan_equal=False`` any NaN fails.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    dt = a.dtype if dtype is None else np.dtype(dtype)
    if a.shape != e.shape:
        msg = f"{what}: shape {a.shape} != expected {e.shape}"
        raise AssertionError(msg)
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    a_nan, e_nan = np.isnan(a64), np.isnan(e64)
    same_inf = np.isinf(a64) & (a64 == e64)
    special = (a_nan & e_nan) | same_inf if nan_equal else same_inf
    lone = (a_nan | e_nan | np.isinf(a64) | np.isinf(e64)) & ~special
    if np.any(lone):
        idx = tuple(int(i[0]) for i in np.nonzero(lone)) if a.ndim else ()
        msg = (f"{what}: non-finite mismatch at {idx}: {a64[idx]!r} vs expected {e64[idx]!r}"
               + ("" if nan_equal else " (nan_equal=False: NaN never equals NaN)"))
        raise AssertionError(msg)
    keep = ~special
    err = ulp_error(a64[keep], e64[keep], dt)
    if not err <= max_ulp:
        rel = _rel(a64[keep], e64[keep])
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
    them (see :mod:`adaptive_ref.conformance.adapters.base`). ``dtype`` defaults to the case's;
    ``budget`` is a callable ``(optimizer, step, dtype) -> max ULP`` (default: the suite's derived
    budget, :func:`adaptive_ref.conformance.tolerance.budget`).
    """
    from adaptive_ref.conformance.compare import compare

    res = compare(case, result, dtype=dtype, budget=budget)
    if not res.passed:
        raise AssertionError(res.report())
