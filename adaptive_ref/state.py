"""State save/load: every optimizer state to and from a plain dict of arrays and scalars.

``state_to_dict(state)`` gives ``{"type": "AdamState", "count": ..., "mu": ..., ...}`` (``None``
for absent buffers); ``state_from_dict(d)`` rebuilds the NamedTuple. Arrays are kept as they are
(same namespace, dtype and device), so save/load is exact; ``to_numpy=True`` converts leaves for
writing to disk with ``numpy.savez``. A tree of states (what :func:`adaptive_ref.make`'s
``init`` returns: dicts, lists, tuples and JAX-registered nodes with states at the leaves) maps
leaf-wise: ``state_to_dict`` returns the same tree with a dict in place of each state, and
``state_from_dict`` takes such a tree back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["state_to_dict", "state_from_dict", "state_types"]


def state_types() -> dict[str, type]:
    """Every registered optimizer's state type, by class name (a user type whose class name is
    taken by a built-in one: by ``module.qualname``); see
    :func:`adaptive_ref.registry.state_types`."""
    from .registry import state_types as types

    return types()


def _is_state(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields") and hasattr(x, "count")


def _is_saved_state(x: Any) -> bool:
    return isinstance(x, dict) and isinstance(x.get("type"), str)


def _not_a_leaf(fn: str, x: Any, want: str) -> Any:
    msg = f"{fn}: a tree leaf, {type(x).__name__} {x!r:.60}, is not {want}"
    raise TypeError(msg)


def state_to_dict(state: Any, *, to_numpy: bool = False) -> dict[str, Any]:
    if not _is_state(state):  # a tree of states (adaptive_ref.tree): map over its leaves
        from .tree import map_tree

        found: list[Any] = []

        def one(s: Any) -> Any:
            if not _is_state(s):
                return _not_a_leaf("state_to_dict", s, "the state of a registered optimizer")
            found.append(s)
            return state_to_dict(s, to_numpy=to_numpy)

        out = map_tree(one, state, _is_state)
        if not found:
            msg = (f"state_to_dict: {type(state).__name__} is not the state of a registered "
                   f"optimizer, nor a tree of such states")
            raise TypeError(msg)
        return out
    from .registry import state_type_key

    name = state_type_key(type(state))
    if name is None:
        msg = (f"state_to_dict: {type(state).__name__} is not the state of a registered "
               f"optimizer")
        raise TypeError(msg)
    out: dict[str, Any] = {"type": name}
    for field, value in zip(state._fields, state, strict=True):
        if to_numpy and value is not None:
            import numpy as np

            # a tuple field (Shampoo: one statistic per mode) is converted leaf by leaf; None
            # entries (SOAP: a dimension without a statistic) stay None
            value = (tuple(None if v is None else np.asarray(v) for v in value)
                     if isinstance(value, tuple) else np.asarray(value))
        out[field] = value
    return out


def state_from_dict(d: dict[str, Any], *, like: Any = None) -> Any:
    """Rebuild a state; with ``like`` (an array), numpy leaves are moved to its namespace/device.

    A tree whose leaves are such dicts (from ``state_to_dict`` of a tree state) gives the tree
    of states back."""
    # a dict with a "type" or a "count" is one (maybe malformed) saved state, not a tree
    if isinstance(d, (list, tuple)) or (isinstance(d, dict) and "type" not in d
                                          and "count" not in d):
        from .tree import map_tree

        return map_tree(lambda x: state_from_dict(x, like=like) if _is_saved_state(x) else
                        _not_a_leaf("state_from_dict", x, "a dict from state_to_dict"), d,
                        _is_saved_state)
    if not isinstance(d, Mapping):
        msg = (f"state_from_dict: d must be a dict (as state_to_dict returns), got "
               f"{type(d).__name__}")
        raise TypeError(msg)
    types = state_types()
    name = d.get("type")
    if not isinstance(name, str) or name not in types:
        msg = f"state_from_dict: type {name!r} is not one of {', '.join(sorted(types))}"
        raise ValueError(msg)
    tp = types[name]
    missing = [f for f in tp._fields if f not in d and f not in tp._field_defaults]
    if missing:
        msg = f"state_from_dict: {name} needs the fields {', '.join(missing)}"
        raise ValueError(msg)
    extra = sorted(set(d) - set(tp._fields) - {"type"})
    if extra:
        msg = f"state_from_dict: {name} has no fields {', '.join(extra)}"
        raise ValueError(msg)
    values = {f: d.get(f, tp._field_defaults.get(f)) for f in tp._fields}
    _check_loaded_count(values.get("count"))
    if like is not None:
        import array_api_compat as aac

        xp = aac.array_namespace(like)
        dev = aac.device(like)
        move = lambda v: None if v is None else xp.asarray(v, device=dev)  # noqa: E731
        values = {f: (None if v is None else tuple(map(move, v)) if isinstance(v, tuple)
                      else move(v)) for f, v in values.items()}
    return tp(**values)


def _check_loaded_count(count: Any) -> None:
    """A loaded count must be a 0-d integer (array) and, where readable, not negative."""
    import array_api_compat as aac

    from ._checks import is_array, readable

    if count is None:
        return
    if isinstance(count, bool) or not (isinstance(count, int) or is_array(count)):
        msg = f"state_from_dict: count must be a 0-d integer array, got {type(count).__name__}"
        raise TypeError(msg)
    if is_array(count) and not isinstance(count, int):
        xp = aac.array_namespace(count)
        if tuple(count.shape) != () or not xp.isdtype(count.dtype, "integral"):
            msg = (f"state_from_dict: count must be a 0-d integer array, got shape "
                   f"{tuple(count.shape)} and dtype {count.dtype}")
            raise TypeError(msg)
    if readable(count) and int(count) < 0:
        msg = (f"state_from_dict: count={int(count)} is negative; a step count is >= 0 (the "
               f"file is corrupt or was edited)")
        raise ValueError(msg)
