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

from . import _numerics as nx
from ._checks import check_arrays, check_hparams, is_array
from ._spec import HParam

__all__ = ["model_leaves", "unpack_model", "leaves_namespace", "global_sum", "global_vdot",
           "global_abs_sum", "global_norm", "clip_by_global_norm", "CLIP_HPARAMS", "pack",
           "init_leaves", "check_leaves", "leaf_inputs", "adapted_lr", "step_leaves"]


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


# ---- what the whole-model steps (Prodigy, D-Adapt AdamW) share ------------------------------

def pack(values: Sequence[Any], single: bool):
    """A state field or the parameters in the model's structure: the one leaf of a one-leaf
    model, else a tuple."""
    return values[0] if single else tuple(values)


def init_leaves(op: str, leaves: Sequence[Any], state_dtype, make) -> tuple:
    """``(xp, count, zero, columns)`` of a whole-model init: ``make(xp, leaf, zeros)`` gives a
    leaf's state arrays (``zeros``: ``init_zeros``' zeros of the leaf in the state dtype);
    ``columns[k]`` lists field k of every leaf (None for a leaf that is None); ``zero`` is the
    last leaf's zeros (its dtype is the state dtype) and ``count`` the new step count."""
    from ._common import init_zeros

    arrays = [leaf for leaf in leaves if leaf is not None]  # None: a leaf without a state
    xp = leaves_namespace(op, arrays)
    rows = []
    for leaf in leaves:
        if leaf is None:
            rows.append(None)
            continue
        _, z, count = init_zeros(op, leaf, state_dtype)
        rows.append(make(xp, leaf, z))
    width = len(next(r for r in rows if r is not None))
    columns = [[None if r is None else r[k] for r in rows] for k in range(width)]
    return xp, count, z, columns


def check_leaves(op: str, ps, gs, fields: dict, live: Sequence[int], same_shape: Sequence[str],
                 extra=None) -> tuple:
    """Check every live leaf's parameter, gradient and state arrays (one namespace and device,
    float dtypes, the state fields in one dtype, ``same_shape`` fields of the parameter's
    shape), then ``extra(i)`` if given; return the first live leaf's parameter and state
    dtypes."""
    pdtype = sdtype = None
    for i in live:
        names = {"param": ps[i], "grad": gs[i], **{f"state.{f}": fields[f][i] for f in fields}}
        _, pd, sdt = check_arrays(f"{op} (leaf {i})", names,
                                  same_shape=["grad", *(f"state.{f}" for f in same_shape)],
                                  state_dtype_names=[f"state.{f}" for f in fields])
        if pdtype is None:
            pdtype, sdtype = pd, sdt
        if extra is not None:
            extra(i)
    return pdtype, sdtype


def leaf_inputs(xp, p, g, dtype, coupled_decay=None) -> tuple:
    """A leaf's parameter and gradient in the compute ``dtype``; with ``coupled_decay`` (the
    coupled weight decay as an operand) the gradient is ``g + coupled_decay * p``."""
    p = p if p.dtype == dtype else xp.astype(p, dtype)
    g = g if g.dtype == dtype else xp.astype(g, dtype)
    return p, (g if coupled_decay is None else g + coupled_decay * p)


def adapted_lr(xp, d, lr, to_scalar, count, t, *, bias_correction: bool, beta1, beta2):
    """``dlr = d * lr * c_t``, ``c_t = sqrt(1 - beta2^t) / (1 - beta1^t)`` with the bias
    correction, else 1; ``to_scalar`` makes a 0-d scalar of the step's scalar dtype. Without the
    correction lr carries the poison of an overflowed unreadable count (NaN: every parameter
    NaN); with it, t carries it."""
    dlr = d * to_scalar(lr if bias_correction else nx.poison(xp, lr, count, t))
    if bias_correction:
        dlr = dlr * (xp.sqrt(nx.bias_correction(xp, beta2, t)) / nx.bias_correction(xp, beta1, t))
    return dlr


def step_leaves(xp, ps, live: Sequence[int], inputs: dict, direction, decay, moved,
                pdtype) -> list:
    """The new parameters: ``p - (direction(i) + decay * p)`` for each live leaf i (``inputs[i]``
    its parameter in the compute dtype; ``decay``: the decoupled weight decay's operand, or None)
    where ``moved``, else ``p`` (the authors' steps return early where the denominator is 0),
    cast to ``pdtype``; the other leaves as they are."""
    out = list(ps)
    for i in live:
        p = inputs[i]
        upd = direction(i)
        if decay is not None:
            upd = upd + decay * p
        p_new = xp.where(moved, p - upd, p)
        out[i] = p_new if p_new.dtype == pdtype else xp.astype(p_new, pdtype)
    return out


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
