"""The language-neutral gradient generator of the golden files (``splitmix64-v1``).

A golden case stores no gradient arrays, only a few numbers per parameter; any language with
unsigned 64-bit integers regenerates the exact same float64 gradients (docs/conformance-format.md):

* draw ``k`` (``k = 0, 1, 2, ...``) of a stream with seed ``s`` is
  ``mix(s + (k + 1) * G) mod 2**64`` with ``G = 0x9E3779B97F4A7C15`` and ``mix`` the
  splitmix64 finaliser;
* ``u = (draw >> 11) * 2**-53`` is a float64 in ``[0, 1)`` (exact);
* at step ``t`` (1-based) element ``i`` (row-major) of a parameter with ``n`` elements uses the
  draws ``k = 2*((t-1)*n + i)`` (value) and ``k + 1`` (zero mask):
  ``g = (2*u_value - 1 + offset) * scale``, then ``g = 0`` where ``u_mask < zero_fraction``.
  Each operation is one correctly rounded IEEE-754 float64 operation, so every language agrees.
* float32 cases round that float64 gradient to the nearest float32 (ties to even).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAMMA", "splitmix64", "uniform", "gradient"]

GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def splitmix64(seed: int, k: np.ndarray) -> np.ndarray:
    """Draws ``k`` (uint64 array of indices) of the stream with ``seed`` (Python int)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed & _MASK) + (k.astype(np.uint64) + np.uint64(1)) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, k: np.ndarray) -> np.ndarray:
    """float64 in [0, 1) from draws ``k``: the top 53 bits times 2**-53."""
    return (splitmix64(seed, k) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def gradient(spec: dict, shape: tuple, step: int) -> np.ndarray:
    """The float64 gradient at ``step`` (1-based) of a parameter with ``shape``.

    ``spec`` holds ``seed``, ``scale``, ``offset`` and ``zero_fraction``; with ``row_fraction``
    (row-sparse gradients) whole rows (first axis) are zero unless their own draw is below it.
    """
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    base = np.uint64(2 * (step - 1) * n)
    k = base + np.uint64(2) * np.arange(n, dtype=np.uint64)
    u_val = uniform(spec["seed"], k)
    u_mask = uniform(spec["seed"], k + np.uint64(1))
    g = (2.0 * u_val - 1.0 + spec.get("offset", 0.0)) * spec["scale"]
    g = np.where(u_mask < spec.get("zero_fraction", 0.0), 0.0, g)
    g = g.reshape(shape)
    if spec.get("row_fraction") is not None and len(shape) >= 1:
        rows = active_rows(spec, shape, step)
        keep = np.zeros(shape[0], dtype=bool)
        keep[rows] = True
        g = np.where(keep.reshape((-1,) + (1,) * (len(shape) - 1)), g, 0.0)
    return g


def active_rows(spec: dict, shape: tuple, step: int) -> np.ndarray:
    """Row indices (sorted) that carry values at ``step`` in a row-sparse gradient.

    The row draws come from the stream ``seed + 1`` at ``k = (t-1)*rows + r``.
    """
    rows = shape[0]
    k = np.uint64((step - 1) * rows) + np.arange(rows, dtype=np.uint64)
    u = uniform(spec["seed"] + 1, k)
    return np.nonzero(u < spec["row_fraction"])[0]
