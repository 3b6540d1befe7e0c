"""Route the leaves of a parameter tree to a matrix optimizer or to an AdamW fallback.

Muon (and any optimizer defined for matrices only) takes the hidden 2-D weights; every other leaf
(biases, gains, scalars, higher-order tensors, and by name embeddings or the output head) takes a
fallback optimizer with its own settings. Each framework writes this rule in its own place
(torch: two optimizers, Muon raising on non-2-D; optax ``contrib.muon``: ``param_labels`` and
``partition``; Keras ``Muon._should_use_adamw``; upstream ``MuonWithAuxAdam`` groups); here it is
one description, :class:`Routing`, used by each profile (``adaptive_ref.optimizers.muon.ROUTES``)
and applied by :func:`make_routed` on top of :func:`adaptive_ref.tree.tree_step`.

Example::

    opt = make_routed("muon", profile="keras")
    state = opt.init(params)          # RoutedState(primary=..., fallback=...)
    params, state = opt.step(params, grads, state)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Routing", "RoutedState", "RoutedOptimizer", "make_routed"]


@dataclass(frozen=True)
class Routing:
    """Which leaves take the primary (matrix) optimizer; the fallback for the others.

    A leaf goes to the primary optimizer when its ``ndim`` equals ``ndim`` and no pattern of
    ``exclude`` (regular expressions, searched case-insensitively in the leaf's path joined by
    ``"/"``) matches. The fallback is the registered optimizer ``fallback`` under
    ``fallback_profile`` with ``fallback_settings`` on top; the names in ``share`` are copied from
    the primary's settings first (optax's fallback uses Muon's lr and eps). ``source`` names the
    framework code the rule was read from.
    """

    fallback: str = "adamw"
    fallback_profile: str | None = None
    fallback_settings: Mapping[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    ndim: int = 2
    share: tuple[str, ...] = ()
    source: str = ""

    def selects(self, path: tuple, leaf: Any) -> bool:
        """True: ``leaf`` at ``path`` takes the primary optimizer's step."""
        if getattr(leaf, "ndim", None) != self.ndim:
            return False
        text = "/".join(str(k) for k in path)
        return not any(re.search(p, text, re.IGNORECASE) for p in self.exclude)

    def mask(self, params: Any) -> Any:
        """A tree of bools with ``params``' structure: True where the primary optimizer steps."""
        from .tree import _flatten

        flat = _flatten(params)
        return flat.rebuild(_flags(flat, self))


class RoutedState(NamedTuple):
    """The primary optimizer's per-leaf states and the fallback's, each a tree of the parameters'
    structure with ``None`` at the other optimizer's leaves."""

    primary: Any
    fallback: Any


@dataclass(frozen=True)
class RoutedOptimizer:
    """Two optimizers over one tree: ``routing`` picks each leaf's."""

    primary: Any  # adaptive_ref.tree.Optimizer
    fallback: Any  # adaptive_ref.tree.Optimizer
    routing: Routing

    def init(self, params: Any) -> RoutedState:
        mine, other = _split_like(params, params, self.routing)
        return RoutedState(self.primary.init(mine), self.fallback.init(other))

    def step(self, params: Any, grads: Any, state: RoutedState) -> tuple[Any, RoutedState]:
        if not isinstance(state, RoutedState):
            msg = (f"state must be the RoutedState made by init, got {type(state).__name__}")
            raise TypeError(msg)
        g_mine, g_other = _split_like(params, grads, self.routing)
        params, s1 = self.primary.step(params, g_mine, state.primary)
        params, s2 = self.fallback.step(params, g_other, state.fallback)
        return params, RoutedState(s1, s2)


def _flags(flat, routing: Routing) -> list[bool]:
    return [leaf is not None and routing.selects(path, leaf)
            for path, leaf in zip(flat.paths, flat.leaves, strict=True)]


def _split_like(params: Any, tree: Any, routing: Routing) -> tuple[Any, Any]:
    """``tree`` (``params``' structure) twice: with the fallback's leaves as None, and with the
    primary's leaves as None."""
    from .tree import _flatten

    flat = _flatten(params)
    try:
        leaves = flat.up_to(tree)
    except (ValueError, TypeError) as err:
        msg = f"grads must have the parameters' tree structure: {err}"
        raise ValueError(msg) from None
    on = _flags(flat, routing)
    return (flat.rebuild([x if o else None for x, o in zip(leaves, on, strict=True)]),
            flat.rebuild([None if o else x for x, o in zip(leaves, on, strict=True)]))


def make_routed(primary: str = "muon", *, profile: str | None = None,
                routing: Routing | None = None, fallback: Mapping[str, Any] | None = None,
                **hparams: Any) -> RoutedOptimizer:
    """Bind ``primary`` (default Muon) under ``profile`` with ``hparams``, and the fallback of
    ``routing`` (default: the profile's entry of the primary module's ``ROUTES``, else the
    torch one) with ``fallback`` overrides."""
    from . import registry
    from .tree import make

    spec = registry.get(primary)
    if routing is None:
        import importlib

        routes = getattr(importlib.import_module(spec.step.__module__), "ROUTES", {})
        if not routes:
            msg = f"{primary} has no ROUTES; pass routing=Routing(...)"
            raise ValueError(msg)
        routing = routes.get(profile if profile is not None else "torch",
                             next(iter(routes.values())))
    first = make(primary, profile=profile, **hparams)
    shared = {k: first.settings[k] for k in routing.share if k in first.settings}
    second = make(routing.fallback, profile=routing.fallback_profile,
                  **{**shared, **routing.fallback_settings, **(fallback or {})})
    return RoutedOptimizer(first, second, routing)
