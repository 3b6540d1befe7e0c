"""Validation shared by the sparse step functions (the sparse counterpart of ``_common.prelude``).

A step accepts a :class:`~adaptive_ref.sparse.rows.RowSparse`, a sparse object that
:func:`~adaptive_ref.sparse.rows.as_row_sparse` converts (torch sparse COO, scipy.sparse, pydata
sparse), or a dense array of the parameter's shape, which means "every row present".

Checks, each error naming the argument: the state type; one namespace and device for every
array; real floating param and state dtypes; ``grad.values`` in the parameter's dtype and of
shape ``(k, *param.shape[1:])``; ``grad.indices`` a 1-d integer array of length k; and, wherever
the indices can be read without forcing a trace or a lazy graph (NumPy, torch, CuPy,
array-api-strict, eager JAX), every index in ``[0, param.shape[0])``. On Dask the indices are
lazy: the range check becomes a task of the graph that every use of the indices depends on, so
nothing is computed during the step, and computing the new parameter or a moment (or any chunk of
one; not the step count alone, which does not read the indices) raises the same ``IndexError``
instead of dropping the row (index >= N) or wrapping it (negative index). Inside ``jax.jit`` the
range cannot be checked (an out-of-range row is the caller's error: JAX drops the write).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._checks import check_arrays, is_array
from ._rowops import is_concrete
from .rows import RowSparse, as_row_sparse

__all__ = ["SparsePrelude", "sparse_prelude"]


class SparsePrelude(NamedTuple):
    xp: Any
    param_dtype: Any
    dtype: Any  # compute dtype = state dtype
    sdtype: Any  # scalar dtype (float64 where available)
    rows: Any  # RowSparse, or None for a dense gradient
    grad: Any  # the dense gradient, or None


def sparse_prelude(op: str, param, grad, state, state_type: type, init_name: str, *,
                   full_shape_moments: tuple[str, ...], row_moments: tuple[str, ...] = ()):
    """Validate the inputs of a sparse step; ``full_shape_moments`` have the param's shape,
    ``row_moments`` have shape ``param.shape[:1]`` (one entry per row)."""
    if not isinstance(state, state_type):
        got = type(state).__name__
        msg = (f"{op}: state is a {got}, not a {state_type.__name__}; make it with {init_name} "
               f"(a state made by another optimizer cannot be used here)")
        raise TypeError(msg)
    grad = as_row_sparse(grad, like=param if is_array(param) else None)
    arrays: dict[str, Any] = {"param": param}
    rows = grad if isinstance(grad, RowSparse) else None
    if rows is None:
        arrays["grad"] = grad
    else:
        arrays["grad.indices"] = rows.indices
        arrays["grad.values"] = rows.values
    moments = [f"state.{m}" for m in (*full_shape_moments, *row_moments)]
    for m in (*full_shape_moments, *row_moments):
        arrays[f"state.{m}"] = getattr(state, m)
    same = (["grad"] if rows is None else []) + [f"state.{m}" for m in full_shape_moments]
    xp, pdtype, sdtype_state = check_arrays(op, arrays, same_shape=same,
                                            state_dtype_names=moments)
    shape = tuple(param.shape)
    for m in row_moments:
        got = tuple(getattr(state, m).shape)
        if got != shape[:1]:
            msg = (f"{op}: state.{m} has shape {got} but a parameter of shape {shape} needs "
                   f"{shape[:1]} (one entry per row); make the state with {init_name}")
            raise ValueError(msg)
    count = state.count
    if not is_array(count) or tuple(count.shape) != () or not xp.isdtype(count.dtype, "integral"):
        msg = f"{op}: state.count must be a 0-d integer array, got {count!r}"
        raise TypeError(msg)
    if rows is not None:
        _check_rows(op, xp, rows, param)
        rows = _lazy_range_checked(op, _single_chunk_rows(rows), tuple(param.shape))
    sdtype = nx.scalar_dtype(xp, param, sdtype_state)
    return SparsePrelude(xp, pdtype, sdtype_state, sdtype, rows, None if rows is not None
                         else grad)


def _single_chunk_rows(rows: RowSparse) -> RowSparse:
    """Dask: the k touched rows in one chunk along axis 0.

    dask 2026.8 ``take``/``__getitem__`` with a dask integer index of several chunks on a table
    of several row chunks fails while unifying chunks ("Chunks do not add up to shape"); k is
    small, so one chunk is also the natural layout.
    """
    import array_api_compat as aac

    if not aac.is_dask_array(rows.indices):
        return rows
    vals = rows.values
    return RowSparse(rows.indices.rechunk(-1),
                     vals.rechunk({0: -1}) if aac.is_dask_array(vals) else vals)


def _range_error(op: str, bad: int, shape: tuple) -> IndexError:
    return IndexError(f"{op}: grad.indices contains {bad}, outside the accepted range "
                      f"[0, {shape[0]}) of rows of param (shape {shape})")


def _checked_block(block, *, op: str, shape: tuple):
    """Dask task: ``block`` of indices unchanged, or ``IndexError`` if one is out of range."""
    if block.size:
        lo, hi = int(block.min()), int(block.max())
        if lo < 0 or hi >= shape[0]:
            raise _range_error(op, lo if lo < 0 else hi, shape)
    return block


def _lazy_range_checked(op: str, rows: RowSparse, shape: tuple) -> RowSparse:
    """Dask: the indices behind a range-check task (lazy; raises when computed)."""
    import array_api_compat as aac

    if not aac.is_dask_array(rows.indices) or rows.indices.shape[0] == 0:
        return rows
    checked = rows.indices.map_blocks(_checked_block, op=op, shape=shape,
                                      dtype=rows.indices.dtype)
    return RowSparse(checked, rows.values)


def _check_rows(op: str, xp, rows: RowSparse, param) -> None:
    idx, val = rows.indices, rows.values
    shape = tuple(param.shape)
    if len(shape) == 0:
        msg = (f"{op}: a row-sparse gradient needs a parameter with at least one axis; param "
               f"is 0-d (pass a dense gradient)")
        raise ValueError(msg)
    if not xp.isdtype(idx.dtype, "integral"):
        msg = f"{op}: grad.indices must have an integer dtype, got {idx.dtype}"
        raise TypeError(msg)
    if idx.ndim != 1:
        msg = f"{op}: grad.indices must be 1-d, got shape {tuple(idx.shape)}"
        raise ValueError(msg)
    if val.dtype != param.dtype:
        msg = (f"{op}: grad.values has dtype {val.dtype} but param has dtype {param.dtype}; "
               f"cast the gradient to the parameter's dtype")
        raise TypeError(msg)
    want = (idx.shape[0], *shape[1:])
    if tuple(val.shape) != want:
        msg = (f"{op}: grad.values has shape {tuple(val.shape)}; with {idx.shape[0]} indices "
               f"and param shape {shape} it must be {want} (one row of shape {shape[1:]} per "
               f"index)")
        raise ValueError(msg)
    if idx.shape[0] and is_concrete(idx):
        lo, hi = int(xp.min(idx)), int(xp.max(idx))
        if lo < 0 or hi >= shape[0]:
            raise _range_error(op, lo if lo < 0 else hi, shape)
