"""Any step function applied over a parameter tree: nested dicts, lists and tuples of arrays.

Whole-model optimizers (``OptimizerSpec.coupling == "tree"``: Prodigy, whose scalars are sums
over every parameter) get the flattened leaves at once: their state is one state for the whole
model (not a tree of per-leaf states) and their step takes and returns the tuple of leaves;
groups and a decay mask do not apply to them.

The state is a tree of the same structure whose leaves are the per-leaf optimizer states. A leaf
whose gradient is ``None`` is skipped: its parameter and state are returned unchanged (as torch
skips parameters with ``grad is None``). Per-group overrides and a weight-decay mask pick
hyperparameters per leaf.

Flattening uses optree (``none_is_leaf=True`` so a ``None`` gradient stays in place). Nodes that
are registered with JAX (``jax.tree_util.register_pytree_node``, flax ``struct.dataclass``,
equinox ``Module``) are recognised too: when ``jax`` has been imported and a tree holds a node
that optree sees as a leaf but JAX flattens, the whole tree is flattened with
``jax.tree_util`` (``None`` still a leaf). Paths are plain tuples either way: dict keys,
sequence indices, and attribute names (JAX's ``GetAttrKey``) for registered nodes.

Learning rates. ``lr`` (in :func:`make`, :func:`tree_step` or a :class:`Group`) may be a
schedule: a callable of the step index (:mod:`adaptive_ref.schedules`), evaluated at *each leaf
state's own* ``count``, so a leaf that was skipped (``None`` gradient) does not hold back the
others. ``Group(select, lr_scale=c)`` multiplies the selected leaves' lr (a number or the
schedule's value) by ``c``: the torch way of giving groups lrs that follow one base schedule.

Example::

    opt = make("adamw", profile="torch", lr=1e-3,
               groups=[Group(lambda path, leaf: path[-1] == "bias", weight_decay=0.0)])
    state = opt.init(params)
    params, state = opt.step(params, grads, state)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optree

from . import registry
from ._spec import OptimizerSpec

__all__ = ["Group", "Optimizer", "make", "tree_init", "tree_step", "leaf_paths", "map_tree"]

_NONE_LEAF = dict(none_is_leaf=True, namespace="adaptive_ref")


class _Flat:
    """A flattened tree: leaf paths and leaves, and its structure's two operations."""

    __slots__ = ("paths", "leaves", "up_to", "rebuild")

    def __init__(self, paths, leaves, up_to, rebuild):
        self.paths, self.leaves, self.up_to, self.rebuild = paths, leaves, up_to, rebuild


def map_tree(fn, tree: Any, is_leaf) -> Any:
    """``fn`` applied to every ``is_leaf`` node (and ``None``) of ``tree``, structure kept;
    JAX-registered nodes are recognised as in :func:`tree_step`."""
    flat = _flatten(tree, is_leaf)
    return flat.rebuild([None if x is None else fn(x) for x in flat.leaves])


def _jax_tree_util():
    """``jax.tree_util`` if JAX is already imported (never imports it), else None."""
    import sys

    if "jax" not in sys.modules:
        return None
    try:
        from jax import tree_util
    except Exception:  # a broken or partial install: optree alone
        return None
    return tree_util


def _is_jax_node(jtu, x) -> bool:
    if x is None:
        return False
    try:
        return not jtu.treedef_is_leaf(jtu.tree_structure(x))
    except Exception:
        return False


def _plain_key(k) -> Any:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def _flatten(params: Any, is_leaf=None) -> _Flat:
    """Flatten with optree, or with ``jax.tree_util`` when the tree holds JAX-registered nodes.

    ``None`` is always a leaf; ``is_leaf`` marks more leaves (e.g. optimizer states).
    """
    paths, leaves, treedef = optree.tree_flatten_with_path(params, is_leaf=is_leaf, **_NONE_LEAF)
    jtu = _jax_tree_util()
    if jtu is not None and any(_is_jax_node(jtu, leaf) for leaf in leaves
                               if is_leaf is None or not is_leaf(leaf)):
        stop = (lambda x: x is None) if is_leaf is None else (
            lambda x: x is None or is_leaf(x))
        flat, jdef = jtu.tree_flatten_with_path(params, is_leaf=stop)
        return _Flat([tuple(_plain_key(k) for k in path) for path, _ in flat],
                     [leaf for _, leaf in flat], jdef.flatten_up_to, jdef.unflatten)
    return _Flat(paths, leaves, treedef.flatten_up_to,
                 lambda new: optree.tree_unflatten(treedef, new))


@dataclass(frozen=True)
class Group:
    """Hyperparameter overrides for the leaves that ``select`` picks.

    ``select`` is a callable ``(path, leaf) -> bool`` (``path`` a tuple of dict keys, sequence
    indices and attribute names; it must return a Python or NumPy bool, not an array) or a tree
    of bools with the parameters' structure. Later groups win over earlier ones. Overrides are
    hyperparameters of the optimizer (``lr`` may be a schedule) plus ``lr_scale``, a factor on
    the selected leaves' lr (scales of several groups multiply).
    """

    select: Any
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, select: Any, **overrides: Any):
        object.__setattr__(self, "select", select)
        object.__setattr__(self, "overrides", dict(overrides))


def _spec(optimizer: str | OptimizerSpec) -> OptimizerSpec:
    return optimizer if isinstance(optimizer, OptimizerSpec) else registry.get(optimizer)


def leaf_paths(params: Any) -> list[tuple]:
    """The path (tuple of keys/indices) of every leaf, in flattening order."""
    return _flatten(params).paths


def _is_bool(x) -> bool:
    return isinstance(x, bool) or (type(x).__module__ == "numpy"
                                   and type(x).__name__ in ("bool", "bool_"))


def _selection(select: Any, flat: _Flat, what: str) -> list[bool]:
    if callable(select):
        out = []
        for path, leaf in zip(flat.paths, flat.leaves, strict=True):
            chosen = select(path, leaf)
            if not _is_bool(chosen):
                kind = (f"an array of shape {tuple(chosen.shape)}" if hasattr(chosen, "shape")
                        else f"{type(chosen).__name__} {chosen!r}")
                msg = (f"{what}: the selector must return True or False for each leaf; at leaf "
                       f"{path} it returned {kind} (reduce it, e.g. with bool(...) on a 0-d "
                       f"result or a test on the path)")
                raise TypeError(msg)
            out.append(bool(chosen))
        return out
    try:
        flags = flat.up_to(select)
    except (ValueError, TypeError) as err:
        msg = f"a mask or group selection must have the parameters' tree structure: {err}"
        raise ValueError(msg) from None
    for path, f in zip(flat.paths, flags, strict=True):
        if not _is_bool(f):
            msg = f"mask entry at {path} must be True or False, got {f!r}"
            raise TypeError(msg)
    return [bool(f) for f in flags]


def _check_scale(value: Any) -> None:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        msg = f"Group lr_scale={value!r} is outside the accepted range [0, inf) (a finite number)"
        raise ValueError(msg)


def _leaf_settings(spec, base, flat, groups, decay_mask):
    per_leaf = [dict(base) for _ in flat.leaves]
    for i, group in enumerate(groups):
        for k in group.overrides:
            if k == "lr_scale":
                _check_scale(group.overrides[k])
            else:
                spec.hparam(k)
        chosen = _selection(group.select, flat, f"groups[{i}]")
        for settings, on in zip(per_leaf, chosen, strict=True):
            if on:
                scale = settings.get("lr_scale", 1.0) * group.overrides.get("lr_scale", 1.0)
                settings.update(group.overrides)
                settings["lr_scale"] = scale
    if decay_mask is not None:
        if "weight_decay" not in spec.hparam_names:
            msg = f"{spec.name} has no weight_decay, so decay_mask does not apply"
            raise ValueError(msg)
        decayed = _selection(decay_mask, flat, "decay_mask")
        for settings, on in zip(per_leaf, decayed, strict=True):
            if not on:
                settings["weight_decay"] = 0.0
    return per_leaf


def _resolve_lr(settings: dict, state: Any) -> dict:
    """The leaf's keyword set for ``step``: a schedule evaluated at this leaf's count, times the
    group's ``lr_scale``."""
    scale = settings.pop("lr_scale", 1.0)
    lr = settings.get("lr")
    if callable(lr):
        count = getattr(state, "count", None)
        if count is None:
            msg = (f"a schedule as lr needs the leaf state's step count; "
                   f"{type(state).__name__} has no count")
            raise TypeError(msg)
        lr = lr(count)
    if scale != 1.0:
        lr = lr * scale
    if "lr" in settings:
        settings["lr"] = lr
    return settings


def tree_init(optimizer, params, *, groups: Sequence[Group] = (), state_dtype=None,
              **hparams) -> Any:
    """Per-leaf states, in a tree of the parameters' structure (a whole-model optimizer:
    its one state)."""
    spec = _spec(optimizer)
    flat = _flatten(params)
    base = spec.settings(None, **hparams)
    # state_dtype only when asked for: a user's ``init(param)`` need not take it
    extra = {} if state_dtype is None else {"state_dtype": state_dtype}
    if spec.coupling == "tree":
        _whole_model_only(spec, groups, None)
        return spec.init(tuple(flat.leaves), **spec.init_kwargs(base), **extra)
    per_leaf = _leaf_settings(spec, base, flat, groups, None)
    states = [None if leaf is None else spec.init(leaf, **spec.init_kwargs(s), **extra)
              for leaf, s in zip(flat.leaves, per_leaf, strict=True)]
    return flat.rebuild(states)


def tree_step(optimizer, params, grads, state, *, groups: Sequence[Group] = (),
              decay_mask: Any = None, **hparams) -> tuple[Any, Any]:
    """One step of every leaf; ``None`` gradients leave their leaf and state unchanged.

    A callable ``lr`` (here or in a group) is a schedule, evaluated at each leaf state's count.
    """
    spec = _spec(optimizer)
    flat = _flatten(params)
    try:
        g_leaves = flat.up_to(grads)
    except (ValueError, TypeError) as err:
        msg = f"grads must have the parameters' tree structure: {err}"
        raise ValueError(msg) from None
    if spec.coupling == "tree":
        return _whole_model_step(spec, flat, g_leaves, state, groups, decay_mask, hparams)
    try:
        s_leaves = flat.up_to(state)
    except (ValueError, TypeError) as err:
        msg = f"state must have the parameters' tree structure (made by tree_init): {err}"
        raise ValueError(msg) from None
    base = spec.settings(None, **hparams)
    per_leaf = _leaf_settings(spec, base, flat, groups, decay_mask)
    new_p, new_s = [], []
    for path, p, g, s, kw in zip(flat.paths, flat.leaves, g_leaves, s_leaves, per_leaf,
                                 strict=True):
        if g is None or p is None:
            new_p.append(p)
            new_s.append(s)
            continue
        try:
            p2, s2 = spec.step(p, g, s, **_resolve_lr(kw, s))
        except (TypeError, ValueError) as err:
            msg = f"at leaf {path}: {err}"
            raise type(err)(msg) from None
        new_p.append(p2)
        new_s.append(s2)
    return flat.rebuild(new_p), flat.rebuild(new_s)


def _whole_model_only(spec, groups, decay_mask) -> None:
    if groups or decay_mask is not None:
        msg = (f"{spec.name} couples every leaf through its whole-model scalars "
               f"(coupling='tree'): one setting for the whole model; groups and decay_mask are "
               f"not supported")
        raise ValueError(msg)


def _whole_model_step(spec, flat, g_leaves, state, groups, decay_mask, hparams):
    """A ``coupling == "tree"`` optimizer (Prodigy): its one state is the whole model's, and its
    step takes every leaf at once (sums over the model: :mod:`adaptive_ref._global`); a schedule
    lr is evaluated at the model's count."""
    _whole_model_only(spec, groups, decay_mask)
    kw = _resolve_lr(spec.settings(None, **hparams), state)
    new_p, new_s = spec.step(tuple(flat.leaves), tuple(g_leaves), state, **kw)
    return flat.rebuild(list(new_p)), new_s


@dataclass(frozen=True)
class Optimizer:
    """An optimizer bound to its settings: ``init(params)`` and ``step(params, grads, state)``.

    ``lr`` may be a schedule (a callable of the step index, see :mod:`adaptive_ref.schedules`);
    it is evaluated at each leaf state's own count.
    """

    spec: OptimizerSpec
    settings: Mapping[str, Any]
    groups: tuple = ()
    decay_mask: Any = None
    state_dtype: Any = None

    def init(self, params):
        return tree_init(self.spec, params, groups=self.groups, state_dtype=self.state_dtype,
                         **{k: v for k, v in self.settings.items() if k in self.spec.init_names})

    def step(self, params, grads, state, **overrides):
        settings = {**self.settings, **overrides}
        return tree_step(self.spec, params, grads, state, groups=self.groups,
                         decay_mask=self.decay_mask, **settings)


def make(optimizer: str, *, profile: str | None = None, groups: Sequence[Group] = (),
         decay_mask: Any = None, state_dtype=None, **hparams) -> Optimizer:
    """Bind ``optimizer`` to a profile's settings plus ``hparams`` (a callable lr = a schedule,
    evaluated at each leaf's count; groups may set their own schedule or an ``lr_scale``)."""
    spec = _spec(optimizer)
    settings = spec.settings(profile, **hparams)
    return Optimizer(spec, settings, tuple(groups), decay_mask, state_dtype)
