"""Reductions over every leaf of a model, for steps whose scalars depend on the whole model.

Whole-model optimizers (``OptimizerSpec.coupling == "tree"``: Prodigy) and global-norm gradient
clipping need sums over all parameters. They take them here, so that every such sum is formed
the same way: each leaf is reduced in its own dtype by the backend (``xp.sum``: the summation
order inside a leaf is the backend's), the per-leaf results are cast to the requested dtype
(float64 where the step's scalars live there) and added left to right in leaf order. The result
is a 0-d array: nothing is read back to the host, so ``jax.jit`` traces it and Dask stays lazy.

:func:`clip_by_global_norm` is global-norm gradient clipping built on :func:`global_norm`, with
the two conventions in use as the knob ``rule``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import check_arrays, check_hparams, is_array
from ._spec import HParam

__all__ = ["model_leaves", "unpack_model", "leaves_namespace", "global_sum", "global_vdot",
           "global_abs_sum", "global_norm", "clip_by_global_norm", "CLIP_HPARAMS"]


def model_leaves(op: str, what: str, x) -> tuple[list, bool]:
    """``(leaves, single)`` of a whole model: one array is a one-leaf model, else a list/tuple."""
    if is_array(x):
        return [x], True
    if isinstance(x, (list, tuple)):
        return list(x), False
    msg = (f"{op}: {what} must be an array or a list/tuple of arrays (the whole model), got "
           f"{type(x).__name__}")
    raise TypeError(msg)


def unpack_model(op: str, params, grads, state, state_type, fields: Sequence[str], init: str):
    """The leaves of a whole-model step's arguments: ``(ps, gs, {field: leaves}, single, live)``
    with ``live`` the indices of the leaves that have a parameter and a gradient; clear errors
    for a state of another type or a leaf count that does not match."""
    if not isinstance(state, state_type):
        msg = (f"{op}: state is a {type(state).__name__}, not a {state_type.__name__}; make it "
               f"with {init}")
        raise TypeError(msg)
    ps, single = model_leaves(op, "params", params)
    gs = [grads] if single else model_leaves(op, "grads", grads)[0]
    per = {f: [getattr(state, f)] if single else list(getattr(state, f)) for f in fields}
    if len(gs) != len(ps) or any(len(v) != len(ps) for v in per.values()):
        msg = (f"{op}: params has {len(ps)} leaves but grads has {len(gs)} and the state "
               f"{', '.join(f'{f} {len(v)}' for f, v in per.items())}; make the state with "
               f"{init} on these params")
        raise ValueError(msg)
    live = [i for i, g in enumerate(gs) if g is not None and ps[i] is not None]
    return ps, gs, per, single, live


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


CLIP_HPARAMS = (
    HParam("max_norm", 1.0, "the largest global norm let through", low=0.0, low_open=True,
           allow_inf=True),
    HParam("rule", "optax", "'optax': g unchanged where ||g|| < max_norm, else (g / ||g||) * "
           "max_norm (optax.clip_by_global_norm); 'torch': g * min(1, max_norm / (||g|| + eps)) "
           "(torch.nn.utils.clip_grad_norm_)", kind="choice", choices=("optax", "torch"),
           knob=True),
    HParam("eps", 1e-6, "added to the norm under rule='torch'", low=0.0),
)


def clip_by_global_norm(grads, max_norm=1.0, *, rule="optax", eps=1e-6):
    """``(clipped, norm)``: the gradients (an array, or a list/tuple of arrays with ``None`` for
    leaves without one) scaled so that their global norm is at most ``max_norm``, and that norm
    (0-d, in the gradients' dtype, as both frameworks compute it). Pure, jit-traceable (no host
    read: ``xp.where``)."""
    op = "clip_by_global_norm"
    check_hparams(op, CLIP_HPARAMS, (max_norm, rule, eps))
    single = is_array(grads)
    leaves = [grads] if single else list(grads)
    live = [g for g in leaves if g is not None]
    xp = leaves_namespace(op, live, "grads")
    norm = global_norm(xp, live, live[0].dtype)
    if rule == "optax":
        def clip(g):
            return xp.where(norm < max_norm, g, (g / xp.astype(norm, g.dtype)) * max_norm)
    else:
        coef = xp.minimum(max_norm / (norm + eps), xp.ones_like(norm))

        def clip(g):
            return g * xp.astype(coef, g.dtype)
    out = [None if g is None else clip(g) for g in leaves]
    return (out[0] if single else type(grads)(out)), norm
