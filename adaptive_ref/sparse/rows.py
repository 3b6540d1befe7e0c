r"""Row-sparse gradients: the indices of the rows a step touches, and those rows' values.

A :class:`RowSparse` ``(indices, values)`` stands for the dense gradient ``G`` of a parameter of
shape ``(N, *row_shape)`` with

.. math::  G_r = \sum_{i:\ \mathrm{indices}_i = r} \mathrm{values}_i ,

and zero rows elsewhere: duplicate indices are **summed** (what torch's ``coalesce`` does before
SparseAdam and sparse Adagrad use a gradient). ``indices`` is a 1-d integer array of length k,
``values`` has shape ``(k, *row_shape)`` and the parameter's dtype; both come from the
parameter's array namespace. It is a NamedTuple of two arrays, hence a pytree for JAX and optree
with no registration, so a step that takes one can be ``jax.jit``-compiled.

Conversions (each returns a coalesced gradient: unique, ascending indices):

* :func:`from_scipy`: a ``scipy.sparse`` matrix or array (2-d, or a 1-d ``coo_array``);
* :func:`from_pydata`: a pydata ``sparse`` array (``COO``, or anything with ``.tocoo()``);
* :func:`from_torch`: a torch sparse COO tensor, any ``sparse_dim``; the result stays in torch,
  on the tensor's device.

The scipy and pydata conversions give NumPy arrays, or arrays of ``like``'s namespace and device
when ``like`` (the parameter) is given, in which case the source's shape must equal ``like``'s.

**Granularity.** The unit of presence is a row. An element-sparse source (scipy, pydata, torch
with ``sparse_dim > 1``) becomes one row per row that has at least one stored entry; the entries
of that row that were not stored become zeros. For Adagrad this changes nothing (a zero adds
nothing to the accumulator and moves nothing). For lazy Adam it does: the moments of a zero
entry in a present row decay, whereas torch SparseAdam given the same element-sparse tensor
leaves every unstored element untouched. Embedding gradients (``nn.Embedding(sparse=True)``,
``sparse_dim == 1``) are row-sparse already, and then the two agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["RowSparse", "from_scipy", "from_pydata", "from_torch", "to_dense", "coalesce",
           "is_row_sparse", "as_row_sparse"]


class RowSparse(NamedTuple):
    """A gradient that is zero outside the rows ``indices``; duplicate indices are summed.

    indices: 1-d integer array of length k (row numbers along axis 0 of the parameter).
    values:  array of shape ``(k, *param.shape[1:])`` in the parameter's dtype.
    """

    indices: Any
    values: Any


def is_row_sparse(x: Any) -> bool:
    return isinstance(x, RowSparse)


# ------------------------------------------------------------------------------------ helpers


def _check_shape(op: str, shape: tuple, like: Any) -> None:
    if like is None:
        return
    if tuple(shape) != tuple(like.shape):
        msg = (f"{op}: the sparse gradient has shape {tuple(shape)} but the parameter (like) "
               f"has shape {tuple(like.shape)}")
        raise ValueError(msg)


def _rows_from_coords(op: str, rows, rest, data, shape: tuple):
    """NumPy: one value row per distinct row number; entries at ``(row, *rest)`` summed.

    ``rows`` (nnz,) int, ``rest`` a tuple of (nnz,) int arrays (the within-row coordinates),
    ``data`` shape (nnz, *dense_tail). Out-of-range coordinates are errors.
    """
    import numpy as np

    if len(shape) == 0:
        msg = f"{op}: a row-sparse gradient needs a parameter with at least one axis"
        raise ValueError(msg)
    rows = np.asarray(rows, dtype=np.int64)
    for axis, (c, n) in enumerate(zip((rows, *rest), shape, strict=False)):
        c = np.asarray(c)
        if c.size and (c.min() < 0 or c.max() >= n):
            msg = (f"{op}: index {int(c.min() if c.min() < 0 else c.max())} on axis {axis} is "
                   f"outside [0, {n}) for shape {tuple(shape)}")
            raise IndexError(msg)
    uniq, inv = np.unique(rows, return_inverse=True)
    data = np.asarray(data)
    dtype = data.dtype if data.dtype.kind == "f" else np.result_type(data.dtype, np.float64)
    values = np.zeros((uniq.shape[0], *shape[1:]), dtype=dtype)
    np.add.at(values, (inv.reshape(-1), *(np.asarray(c, dtype=np.int64) for c in rest)), data)
    return uniq, values


def _to_like(indices, values, like):
    """Move NumPy ``indices``/``values`` to ``like``'s namespace and device (if given)."""
    if like is None:
        return RowSparse(indices, values)
    import array_api_compat as aac

    xp = aac.array_namespace(like)
    dev = aac.device(like)
    if values.dtype != _np_dtype(like):
        msg = (f"the sparse gradient has dtype {values.dtype} but the parameter (like) has "
               f"dtype {like.dtype}; cast one of them")
        raise TypeError(msg)
    return RowSparse(xp.asarray(indices, device=dev), xp.asarray(values, device=dev))


def _np_dtype(like):
    import numpy as np

    try:
        return np.dtype(str(like.dtype).rsplit(".", 1)[-1])
    except TypeError:
        return None


# -------------------------------------------------------------------------------- conversions


def from_scipy(m, /, *, like=None) -> RowSparse:
    """A ``scipy.sparse`` matrix or array as a coalesced :class:`RowSparse`.

    Every row with a stored entry is present (see the module note on granularity); duplicate
    entries are summed. ``like`` (optional): the parameter, whose shape must match and whose
    namespace and device the result takes.
    """
    import scipy.sparse as sp

    if not sp.issparse(m):
        msg = f"from_scipy: expected a scipy.sparse matrix or array, got {type(m).__name__}"
        raise TypeError(msg)
    coo = m.tocoo()
    shape = tuple(coo.shape)
    _check_shape("from_scipy", shape, like)
    coords = coo.coords if hasattr(coo, "coords") else (coo.row, coo.col)
    if len(shape) == 1:  # a 1-d coo_array: each row is a scalar
        idx, vals = _rows_from_coords("from_scipy", coords[0], (), coo.data, shape)
    else:
        idx, vals = _rows_from_coords("from_scipy", coords[0], tuple(coords[1:]), coo.data,
                                      shape)
    return _to_like(idx, vals, like)


def from_pydata(s, /, *, like=None) -> RowSparse:
    """A pydata ``sparse`` array (``sparse.COO`` or convertible by ``.tocoo()``) as RowSparse."""
    mod = type(s).__module__ or ""
    if not mod.startswith("sparse"):
        msg = f"from_pydata: expected a pydata sparse array, got {type(s).__name__}"
        raise TypeError(msg)
    coo = s if hasattr(s, "coords") else s.tocoo()
    shape = tuple(coo.shape)
    _check_shape("from_pydata", shape, like)
    coords = coo.coords
    idx, vals = _rows_from_coords("from_pydata", coords[0], tuple(coords[1:]), coo.data, shape)
    return _to_like(idx, vals, like)


def from_torch(t, /, *, like=None) -> RowSparse:
    """A torch sparse COO tensor as a coalesced RowSparse of torch tensors on its device.

    ``sparse_dim == 1`` (embedding gradients) maps directly onto rows; a larger ``sparse_dim``
    is grouped by row (module note on granularity). ``like`` must then be a torch tensor of the
    same shape.
    """
    import torch

    if not isinstance(t, torch.Tensor) or t.layout != torch.sparse_coo:
        got = getattr(t, "layout", type(t).__name__)
        msg = f"from_torch: expected a torch sparse COO tensor, got {got}"
        raise TypeError(msg)
    shape = tuple(t.shape)
    _check_shape("from_torch", shape, like)
    if like is not None and not isinstance(like, torch.Tensor):
        msg = f"from_torch: like must be a torch tensor, got {type(like).__name__}"
        raise TypeError(msg)
    if len(shape) == 0:
        msg = "from_torch: a row-sparse gradient needs a parameter with at least one axis"
        raise ValueError(msg)
    t = t.detach().coalesce()  # duplicates summed; indices sorted and unique
    ind, val = t.indices(), t.values()
    for axis in range(ind.shape[0]):
        c = ind[axis]
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= shape[axis]):
            msg = f"from_torch: an index on axis {axis} is outside [0, {shape[axis]})"
            raise IndexError(msg)
    if t.sparse_dim() == 1:
        return RowSparse(ind[0], val)
    rows, inv = torch.unique(ind[0], sorted=True, return_inverse=True)
    values = torch.zeros((rows.shape[0], *shape[1:]), dtype=val.dtype, device=val.device)
    values.index_put_((inv, *ind[1:]), val, accumulate=True)
    return RowSparse(rows, values)


def as_row_sparse(grad, /, *, like=None):
    """``grad`` as a RowSparse if it is a sparse object; dense arrays and RowSparse pass through.

    Recognises torch sparse COO tensors, scipy.sparse and pydata sparse arrays without importing
    their libraries unless the object comes from them.
    """
    if isinstance(grad, RowSparse):
        return grad
    mod = type(grad).__module__ or ""
    if mod.startswith("torch") and getattr(grad, "is_sparse", False):
        return from_torch(grad, like=like)
    if mod.startswith("scipy.sparse"):
        return from_scipy(grad, like=like)
    if mod == "sparse" or mod.startswith("sparse."):
        return from_pydata(grad, like=like)
    return grad


# ------------------------------------------------------------------------------ dense / coalesce


def to_dense(grad: RowSparse, like) -> Any:
    """The dense gradient (duplicates summed) with ``like``'s shape, namespace and device.

    For tests and comparisons: it allocates the full table.
    """
    import array_api_compat as aac

    from ._rowops import put_rows, row_totals

    xp = aac.array_namespace(like)
    z = xp.zeros(like.shape, dtype=grad.values.dtype, device=aac.device(like))
    return put_rows(xp, z, grad.indices, row_totals(xp, grad.indices, grad.values), donate=True)


def coalesce(grad: RowSparse) -> RowSparse:
    """Unique, ascending indices with duplicates summed (as torch ``Tensor.coalesce``).

    The number of distinct rows depends on the values, so this runs on eager backends only (not
    inside ``jax.jit``; Dask computes the indices). The step functions do not need it: they sum
    duplicates themselves with static shapes.
    """
    import array_api_compat as aac

    from ._rowops import row_totals

    xp = aac.array_namespace(grad.indices, grad.values)
    idx = grad.indices
    if idx.shape[0] == 0:
        return grad
    order = xp.argsort(idx, stable=True)
    s = xp.take(idx, order)
    tot = xp.take(row_totals(xp, idx, grad.values), order, axis=0)
    uniq = xp.unique_values(s)
    uniq = xp.sort(uniq)
    first = xp.searchsorted(s, uniq, side="left")
    return RowSparse(uniq, xp.take(tot, first, axis=0))
