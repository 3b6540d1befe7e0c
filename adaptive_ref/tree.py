"""Any step function applied over a parameter tree: nested dicts, lists and tuples of arrays.

The state is a tree of the same structure whose leaves are the per-leaf optimizer states. A leaf
whose gradient is ``None`` is skipped: its parameter and state are returned unchanged (as torch
skips parameters with ``grad is None``). Per-group overrides and a weight-decay mask pick
hyperparameters per leaf. Flattening uses optree (``none_is_leaf=True`` so a ``None`` gradient
stays in place).

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

__all__ = ["Group", "Optimizer", "make", "tree_init", "tree_step", "leaf_paths"]

_NONE_LEAF = dict(none_is_leaf=True, namespace="adaptive_ref")


@dataclass(frozen=True)
class Group:
    """Hyperparameter overrides for the leaves that ``select`` picks.

    ``select`` is a callable ``(path, leaf) -> bool`` (``path`` a tuple of dict keys and sequence
    indices) or a tree of bools with the parameters' structure. Later groups win over earlier ones.
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
    paths, _, _ = optree.tree_flatten_with_path(params, **_NONE_LEAF)
    return paths


def _selection(select: Any, params: Any, paths: list[tuple], leaves: list[Any]) -> list[bool]:
    if callable(select):
        return [bool(select(path, leaf)) for path, leaf in zip(paths, leaves, strict=True)]
    treedef = optree.tree_structure(params, **_NONE_LEAF)
    try:
        flags = treedef.flatten_up_to(select)
    except (ValueError, TypeError) as err:
        msg = f"a mask or group selection must have the parameters' tree structure: {err}"
        raise ValueError(msg) from None
    for path, f in zip(paths, flags, strict=True):
        if not isinstance(f, bool):
            msg = f"mask entry at {path} must be True or False, got {f!r}"
            raise TypeError(msg)
    return list(flags)


def _leaf_settings(spec, base, params, paths, leaves, groups, decay_mask):
    per_leaf = [dict(base) for _ in leaves]
    for group in groups:
        for k in group.overrides:
            spec.hparam(k)
        chosen = _selection(group.select, params, paths, leaves)
        for settings, on in zip(per_leaf, chosen, strict=True):
            if on:
                settings.update(group.overrides)
    if decay_mask is not None:
        if "weight_decay" not in spec.hparam_names:
            msg = f"{spec.name} has no weight_decay, so decay_mask does not apply"
            raise ValueError(msg)
        decayed = _selection(decay_mask, params, paths, leaves)
        for settings, on in zip(per_leaf, decayed, strict=True):
            if not on:
                settings["weight_decay"] = 0.0
    return per_leaf


def tree_init(optimizer, params, *, groups: Sequence[Group] = (), state_dtype=None,
              **hparams) -> Any:
    """Per-leaf states, in a tree of the parameters' structure."""
    spec = _spec(optimizer)
    paths, leaves, treedef = optree.tree_flatten_with_path(params, **_NONE_LEAF)
    base = spec.settings(None, **hparams)
    per_leaf = _leaf_settings(spec, base, params, paths, leaves, groups, None)
    states = [None if leaf is None else
              spec.init(leaf, **spec.init_kwargs(s), state_dtype=state_dtype)
              for leaf, s in zip(leaves, per_leaf, strict=True)]
    return optree.tree_unflatten(treedef, states)


def tree_step(optimizer, params, grads, state, *, groups: Sequence[Group] = (),
              decay_mask: Any = None, **hparams) -> tuple[Any, Any]:
    """One step of every leaf; ``None`` gradients leave their leaf and state unchanged."""
    spec = _spec(optimizer)
    paths, leaves, treedef = optree.tree_flatten_with_path(params, **_NONE_LEAF)
    try:
        g_leaves = treedef.flatten_up_to(grads)
    except (ValueError, TypeError) as err:
        msg = f"grads must have the parameters' tree structure: {err}"
        raise ValueError(msg) from None
    try:
        s_leaves = treedef.flatten_up_to(state)
    except (ValueError, TypeError) as err:
        msg = f"state must have the parameters' tree structure (made by tree_init): {err}"
        raise ValueError(msg) from None
    base = spec.settings(None, **hparams)
    per_leaf = _leaf_settings(spec, base, params, paths, leaves, groups, decay_mask)
    new_p, new_s = [], []
    for path, p, g, s, kw in zip(paths, leaves, g_leaves, s_leaves, per_leaf, strict=True):
        if g is None or p is None:
            new_p.append(p)
            new_s.append(s)
            continue
        try:
            p2, s2 = spec.step(p, g, s, **kw)
        except (TypeError, ValueError) as err:
            msg = f"at leaf {path}: {err}"
            raise type(err)(msg) from None
        new_p.append(p2)
        new_s.append(s2)
    return optree.tree_unflatten(treedef, new_p), optree.tree_unflatten(treedef, new_s)


@dataclass(frozen=True)
class Optimizer:
    """An optimizer bound to its settings: ``init(params)`` and ``step(params, grads, state)``.

    ``lr`` may be a schedule (a callable of the step index, see :mod:`adaptive_ref.schedules`);
    it is evaluated at each leaf state's count.
    """

    spec: OptimizerSpec
    settings: Mapping[str, Any]
    groups: tuple = ()
    decay_mask: Any = None
    state_dtype: Any = None

    def init(self, params):
        kw = {k: v for k, v in self.settings.items() if not callable(v)}
        return tree_init(self.spec, params, groups=self.groups, state_dtype=self.state_dtype,
                         **{k: v for k, v in kw.items() if k in self.spec.init_names})

    def step(self, params, grads, state, **overrides):
        settings = {**self.settings, **overrides}
        lr = settings.get("lr")
        if callable(lr):
            count = _first_count(state)
            settings["lr"] = lr(count)
        return tree_step(self.spec, params, grads, state, groups=self.groups,
                         decay_mask=self.decay_mask, **settings)


def _first_count(state):
    leaves = optree.tree_leaves(state, is_leaf=lambda x: hasattr(x, "_fields"), **_NONE_LEAF)
    for leaf in leaves:
        if leaf is not None:
            return leaf.count
    msg = "a schedule needs at least one leaf state"
    raise ValueError(msg)


def make(optimizer: str, *, profile: str | None = None, groups: Sequence[Group] = (),
         decay_mask: Any = None, state_dtype=None, **hparams) -> Optimizer:
    """Bind ``optimizer`` to a profile's settings plus ``hparams`` (a callable lr = a schedule)."""
    spec = _spec(optimizer)
    schedule = hparams.get("lr") if callable(hparams.get("lr")) else None
    if schedule is not None:
        hparams = {**hparams, "lr": 0.0}
    settings = spec.settings(profile, **hparams)
    if schedule is not None:
        settings["lr"] = schedule
    return Optimizer(spec, settings, tuple(groups), decay_mask, state_dtype)
