"""Units in the last place: the measure every comparison in adaptive-ref is stated in.

* :func:`ulp` -- the spacing of a dtype at a magnitude;
* :func:`ulp_distance` -- elementwise distance between two arrays of the same float dtype, in
  representable numbers between them (0 means bit-equal; works across zero);
* :func:`ulp_error` -- the *normwise* ULP error of an array against a (higher precision)
  expected array: ``max_i |a_i - e_i| / ulp(max_i |e_i|)``. An array's rounding errors scale with
  its largest entries, not with entries that cancel near zero (a first moment of mixed-sign
  gradients), so this is the measure every conformance tolerance is stated in.

This module depends on NumPy only, so the conformance suite and :mod:`adaptive_ref.testing`
can both use it without importing each other.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ulp", "ulp_distance", "ulp_error"]


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
