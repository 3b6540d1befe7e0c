"""Reductions over every leaf of a model, for steps whose scalars depend on the whole model.

Whole-model optimizers (``OptimizerSpec.coupling == "tree"``: Prodigy) and global-norm gradient
clipping need sums over all parameters. They take them here, so that every such sum is formed
the same way: each leaf is reduced in its own dtype by the backend (``xp.sum``: the summation
order inside a leaf is the backend's), the per-leaf results are cast to the requested dtype
(float64 where the step's scalars live there) and added left to right in leaf order. The result
is a 0-d array: nothing is read back to the host, so ``jax.jit`` traces it and Dask stays lazy.

Global-norm clipping reuses :func:`global_norm`: ``n = global_norm(xp, grads, dtype)``, then each
leaf times ``min(1, max_norm / (n + eps))`` (torch ``clip_grad_norm_``: eps 1e-6) or
``where(n < max_norm, g, g * max_norm / n)`` (optax ``clip_by_global_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import check_arrays

__all__ = ["leaves_namespace", "global_sum", "global_vdot", "global_abs_sum", "global_norm"]


def leaves_namespace(op: str, leaves: Sequence[Any], what: str = "params"):
    """The one array namespace of ``leaves`` (a non-empty sequence of arrays); a clear error
    naming the leaf that comes from another namespace or device."""
    if not leaves:
        msg = f"{op}: {what} holds no arrays"
        raise ValueError(msg)
    xp, _, _ = check_arrays(op, {f"{what}[{i}]": x for i, x in enumerate(leaves)})
    return xp


def global_sum(xp, per_leaf: Sequence[Any], dtype):
    """``per_leaf[0] + per_leaf[1] + ...`` (0-d arrays) in ``dtype``, left to right."""
    total = None
    for v in per_leaf:
        v = xp.astype(v, dtype)
        total = v if total is None else total + v
    if total is None:
        msg = "global_sum of no leaves"
        raise ValueError(msg)
    return total


def global_vdot(xp, xs: Sequence[Any], ys: Sequence[Any], dtype):
    """``sum_i <x_i, y_i>``: each leaf's dot in its own dtype, then :func:`global_sum`."""
    return global_sum(xp, [xp.sum(x * y) for x, y in zip(xs, ys, strict=True)], dtype)


def global_abs_sum(xp, xs: Sequence[Any], dtype):
    """``sum_i ||x_i||_1``."""
    return global_sum(xp, [xp.sum(xp.abs(x)) for x in xs], dtype)


def global_norm(xp, xs: Sequence[Any], dtype):
    """``sqrt(sum_i ||x_i||_2^2)``: the model's Euclidean norm (global-norm clipping)."""
    return xp.sqrt(global_sum(xp, [xp.sum(x * x) for x in xs], dtype))
