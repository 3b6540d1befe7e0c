"""Row gathers, row scatters and duplicate sums that run on every array-API backend.

* ``row_totals`` gives, at each position ``i`` of a k-row gradient, the sum of the value rows
  whose index equals ``indices[i]``. It uses only static shapes (a stable sort, a segmented
  doubling scan of ``ceil(log2 k)`` passes, ``searchsorted``), so it runs inside ``jax.jit`` and
  on Dask; its cost is O(k log k) in the touched rows. Every duplicate position then computes the
  same new row, so scattering all k positions writes one consistent value per row: duplicates
  behave as summed without a data-dependent number of rows. Where the indices are readable
  (eager backends) and have no duplicates, the scan is skipped.
* ``put_rows`` writes rows into a table. Where the namespace has integer-array assignment
  (NumPy, torch, CuPy, Dask) or ``.at`` (JAX) it uses ``array_api_extra.at``; with
  ``donate=False`` (the default everywhere) it copies the table first, so inputs are never
  changed, and the cost is then one table copy (on JAX the copy is XLA's, and inside ``jit``
  with donated buffers it can vanish). With ``donate=True`` a writeable table is updated in
  place, in O(k) work: the caller gives the input up. A namespace with neither (the strict
  array API, ``array_api_strict``) gets a standard-only ``where`` over the table, O(N).
"""

from __future__ import annotations

from typing import Any

import array_api_compat as aac

__all__ = ["row_totals", "take_rows", "put_rows", "is_concrete", "row_shape_of"]


def is_concrete(x: Any) -> bool:
    """True when reading ``x``'s values forces no trace or lazy graph (eager JAX is concrete)."""
    if aac.is_jax_array(x):
        import jax

        return not isinstance(x, jax.core.Tracer)
    return not aac.is_lazy_array(x)


def row_shape_of(shape: tuple) -> tuple:
    return tuple(shape[1:])


def _bcast(xp, a, ndim: int):
    """A (k,) array reshaped to broadcast against (k, ...) of ``ndim`` axes."""
    return xp.reshape(a, (a.shape[0],) + (1,) * (ndim - 1)) if ndim > 1 else a


def row_totals(xp, indices, values):
    """At each position, the sum of the value rows with the same index (duplicates summed)."""
    k = indices.shape[0]
    if k is None or k <= 1:
        return values
    order = xp.argsort(indices, stable=True)
    s = xp.take(indices, order)
    if is_concrete(s) and not bool(xp.any(s[1:] == s[:-1])):
        return values  # no duplicates (readable without a trace or a lazy graph): nothing to sum
    v = xp.take(values, order, axis=0)
    nd = v.ndim
    d = 1
    while d < k:  # inclusive segmented scan (Hillis-Steele): v[i] += v[i-d] within a segment
        same = _bcast(xp, s[d:] == s[:-d], nd)
        v = xp.concat([v[:d, ...], xp.where(same, v[d:, ...] + v[:-d, ...], v[d:, ...])], axis=0)
        d *= 2
    last = xp.searchsorted(s, s, side="right") - 1  # each segment's total sits at its end
    tot_sorted = xp.take(v, last, axis=0)
    inverse = xp.argsort(order)  # back to the caller's positions
    return xp.take(tot_sorted, inverse, axis=0)


def take_rows(xp, table, indices):
    if aac.is_dask_array(indices) and indices.shape[0] == 1:
        # dask 2026.8: taking one row with a 1-element dask index from a table stored in a
        # single row chunk reports the table's shape ((N, ...)) instead of (1, ...), and the
        # graph then fails downstream. Two copies of the index, then the first row, avoid it.
        two = xp.concat([indices, indices])
        return xp.take(table, two, axis=0)[:1, ...]
    return xp.take(table, indices, axis=0)


def _has_index_assignment(table) -> bool:
    return (aac.is_numpy_array(table) or aac.is_torch_array(table) or aac.is_cupy_array(table)
            or aac.is_dask_array(table) or aac.is_jax_array(table))


def put_rows(xp, table, indices, rows, *, donate: bool):
    """``table`` with ``table[indices] = rows``; ``table`` itself changes only if ``donate``.

    Duplicate indices must carry identical rows (as ``row_totals`` ensures).
    """
    if indices.shape[0] == 0:  # nothing to write (Dask rejects an empty assignment)
        # still a new array unless donated: the caller may keep the input and later donate the
        # output, which must then not be the input itself
        return table if donate or not _mutable(table) else xp.asarray(table, copy=True)
    if rows.dtype != table.dtype:
        rows = xp.astype(rows, table.dtype)
    if _has_index_assignment(table):
        import array_api_extra as xpx

        return xpx.at(table, indices).set(rows, copy=None if donate else True)
    return _put_rows_where(xp, table, indices, rows)


def _mutable(table) -> bool:
    """Arrays a later in-place (donated) write could change: NumPy, torch, CuPy, and
    array-api-strict (not JAX, not lazy Dask)."""
    return not (aac.is_jax_array(table) or aac.is_dask_array(table))


def _put_rows_where(xp, table, indices, rows):
    """Standard-only scatter: every table row looks itself up in the sorted indices. O(N)."""
    k = indices.shape[0]
    if k == 0:
        return table
    n = table.shape[0]
    order = xp.argsort(indices, stable=True)
    s = xp.take(indices, order)
    r = xp.take(rows, order, axis=0)
    ar = xp.arange(n, dtype=s.dtype, device=aac.device(table))
    pos = xp.searchsorted(s, ar, side="left")
    pos = xp.minimum(pos, xp.asarray(k - 1, dtype=pos.dtype, device=aac.device(table)))
    hit = xp.take(s, pos) == ar
    return xp.where(_bcast(xp, hit, table.ndim), xp.take(r, pos, axis=0), table)
