"""Sparse variants: lazy Adam, sparse Adagrad and row-wise Adagrad on row-sparse gradients.

A :class:`RowSparse` gradient names the rows (along axis 0) a step touches and gives their
values; the steps gather those rows, update them, and write them back, so their cost grows with
the touched rows, not the table (with ``donate=True`` on backends that can write in place; see
:mod:`adaptive_ref.sparse._rowops` for the cost of the pure default). Each step also accepts a
dense gradient (every row present) and the sparse objects of torch, scipy and pydata ``sparse``.
"""

from .lazy_adam import LAZY_ADAM, lazy_adam_init, lazy_adam_step
from .rows import RowSparse, as_row_sparse, coalesce, from_pydata, from_scipy, from_torch, to_dense
from .rowwise_adagrad import (
                   ROWWISE_ADAGRAD,
                   RowwiseAdagradState,
                   rowwise_adagrad_init,
                   rowwise_adagrad_step,
)
from .sparse_adagrad import SPARSE_ADAGRAD, sparse_adagrad_init, sparse_adagrad_step

__all__ = [
    "RowSparse", "as_row_sparse", "coalesce", "from_pydata", "from_scipy", "from_torch",
    "to_dense", "lazy_adam_init", "lazy_adam_step", "sparse_adagrad_init", "sparse_adagrad_step",
    "RowwiseAdagradState", "rowwise_adagrad_init", "rowwise_adagrad_step",
    "LAZY_ADAM", "SPARSE_ADAGRAD", "ROWWISE_ADAGRAD",
]
