"""Reusable invariant checks for optimizers described by an :class:`OptimizerSpec`.

Each check is a plain function that runs ``spec.init`` / ``spec.step`` on the arrays it is given
(any array-API backend) and raises ``AssertionError`` with a message naming the optimizer, the
step and the first offending element. They are used by ``tests/test_properties.py`` and are meant
for other libraries' suites too (combine them with :mod:`adaptive_ref.testing.strategies`).

Every check that says *bitwise* compares the bit patterns of the results (so ``-0.0 != 0.0`` and
NaN equals NaN at the same position): the property is exact in floating point, not only in real
arithmetic, and the docstring of each check says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._spec import OptimizerSpec
from ..state import state_from_dict, state_to_dict

__all__ = [
    "as_numpy", "assert_bitwise_equal", "run_steps", "check_shape_dtype_preserved", "check_pure",
    "check_maximize_is_negated_minimize", "check_resume_equals_uninterrupted",
    "check_permutation_equivariant", "check_zero_gradient_fixed_point", "check_monotone_field",
]


def as_numpy(x: Any) -> np.ndarray:
    """Any backend's array as a NumPy array (computing Dask graphs, copying from devices)."""
    if hasattr(x, "compute") and not isinstance(x, np.ndarray):
        x = x.compute()
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    if type(x).__module__.startswith("array_api_strict"):
        return np.asarray(x._array)
    return np.asarray(x)


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype.kind != "f":
        return a
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def assert_bitwise_equal(actual: Any, expected: Any, what: str = "") -> None:
    """Same shape, dtype and bit pattern (NaN == NaN at one position; ``-0.0 != 0.0``)."""
    a, e = as_numpy(actual), as_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != {e.dtype}"
    a_bits, e_bits = _bits(a), _bits(e)
    both_nan = np.isnan(a) & np.isnan(e) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    bad = (a_bits != e_bits) & ~both_nan
    if np.any(bad):
        idx = tuple(int(i[0]) for i in np.nonzero(bad)) if a.ndim else ()
        msg = (f"{what}: {int(np.sum(bad))} of {a.size} elements differ bitwise; "
               f"first at {idx}: {a[idx]!r} != {e[idx]!r}")
        raise AssertionError(msg)


def _assert_states_bitwise(s1: Any, s2: Any, what: str) -> None:
    assert type(s1) is type(s2), f"{what}: state types {type(s1)} != {type(s2)}"
    for name, a, b in zip(s1._fields, s1, s2, strict=True):
        if a is None or b is None:
            assert a is None and b is None, f"{what}: state.{name} is None in only one state"
            continue
        assert_bitwise_equal(a, b, f"{what}: state.{name}")


def run_steps(spec: OptimizerSpec, param: Any, grads: Sequence[Any], settings: dict[str, Any],
              *, state: Any = None, state_dtype: Any = None,
              callback: Callable[[int, Any, Any], None] | None = None) -> tuple[Any, Any]:
    """Run ``len(grads)`` steps from ``param`` (fresh state unless ``state`` is given).

    ``callback(t, param, state)`` is called after step ``t`` (1-based). Returns the last
    ``(param, state)``.
    """
    if state is None:
        state = spec.init(param, **spec.init_kwargs(settings), state_dtype=state_dtype)
    for t, g in enumerate(grads, start=1):
        param, state = spec.step(param, g, state, **settings)
        if callback is not None:
            callback(t, param, state)
    return param, state


def check_shape_dtype_preserved(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
                                settings: dict[str, Any], *, state_dtype: Any = None) -> None:
    """Each step returns a param of the input's namespace, shape and dtype; every state array has
    the param's shape and the state dtype (default: the param's dtype); the count advances by 1."""
    import array_api_compat as aac

    xp = aac.array_namespace(param)

    def check(t, p, s):
        assert aac.array_namespace(p) is xp, f"{spec.name} step {t}: namespace changed"
        assert tuple(p.shape) == tuple(param.shape), (
            f"{spec.name} step {t}: param shape {tuple(p.shape)} != {tuple(param.shape)}")
        assert p.dtype == param.dtype, f"{spec.name} step {t}: dtype {p.dtype} != {param.dtype}"
        want = param.dtype if state_dtype is None else state_dtype
        for name, v in zip(s._fields, s, strict=True):
            if name == "count":
                assert int(as_numpy(v)) == t, f"{spec.name}: count {v} after step {t}"
                continue
            if v is None or tuple(v.shape) == ():
                continue  # absent buffer, or a scalar such as NAdam's mu_product
            assert tuple(v.shape) == tuple(param.shape), (
                f"{spec.name} step {t}: state.{name} shape {tuple(v.shape)}")
            assert v.dtype == want, f"{spec.name} step {t}: state.{name} dtype {v.dtype} != {want}"

    run_steps(spec, param, grads, settings, state_dtype=state_dtype, callback=check)


def check_pure(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
               settings: dict[str, Any]) -> None:
    """Stepping changes none of its inputs: the param, the gradient and every state array keep
    their bits (the functions are pure; mutation would break JAX and shared references)."""
    state = spec.init(param, **spec.init_kwargs(settings))
    for t, g in enumerate(grads, start=1):
        before_p, before_g = as_numpy(param).copy(), as_numpy(g).copy()
        before_s = [None if v is None else as_numpy(v).copy() for v in state]
        new_p, new_s = spec.step(param, g, state, **settings)
        assert_bitwise_equal(param, before_p, f"{spec.name} step {t}: param was modified")
        assert_bitwise_equal(g, before_g, f"{spec.name} step {t}: grad was modified")
        for name, v, b in zip(state._fields, state, before_s, strict=True):
            if v is not None:
                assert_bitwise_equal(v, b, f"{spec.name} step {t}: state.{name} was modified")
        param, state = new_p, new_s


def check_maximize_is_negated_minimize(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
                                       settings: dict[str, Any], neg: Callable[[Any], Any]
                                       ) -> None:
    """``maximize=True`` on ``g`` equals ``maximize=False`` on ``neg(g) = -g``, bitwise, for the
    params and the state: the sign is applied first (torch's order) and negation is exact."""
    up = {**settings, "maximize": True}
    down = {**settings, "maximize": False}
    p1, s1 = run_steps(spec, param, grads, up)
    p2, s2 = run_steps(spec, param, [neg(g) for g in grads], down)
    assert_bitwise_equal(p1, p2, f"{spec.name}: maximize(g) vs minimize(-g) params")
    _assert_states_bitwise(s1, s2, f"{spec.name}: maximize(g) vs minimize(-g)")


def check_resume_equals_uninterrupted(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
                                      settings: dict[str, Any], stop: int, *,
                                      to_numpy: bool = False) -> None:
    """Stop after ``stop`` steps, save the state with :func:`state_to_dict` (optionally as NumPy
    arrays), load it with :func:`state_from_dict` (``like=param`` then) and continue: bitwise
    the same params and state as the uninterrupted run."""
    p_full, s_full = run_steps(spec, param, grads, settings)
    p_mid, s_mid = run_steps(spec, param, grads[:stop], settings)
    saved = state_to_dict(s_mid, to_numpy=to_numpy)
    loaded = state_from_dict(dict(saved), like=p_mid if to_numpy else None)
    p_end, s_end = run_steps(spec, p_mid, grads[stop:], settings, state=loaded)
    assert_bitwise_equal(p_end, p_full, f"{spec.name}: resumed at {stop} vs uninterrupted")
    _assert_states_bitwise(s_end, s_full, f"{spec.name}: resumed at {stop} vs uninterrupted")


def check_permutation_equivariant(spec: OptimizerSpec, param: np.ndarray,
                                  grads: Sequence[np.ndarray], settings: dict[str, Any],
                                  perm: np.ndarray) -> None:
    """For an element-wise method on 1-D NumPy arrays: permuting the inputs permutes the
    outputs, bitwise (each coordinate sees the same operations in the same order)."""
    p1, s1 = run_steps(spec, param, grads, settings)
    p2, s2 = run_steps(spec, param[perm], [g[perm] for g in grads], settings)
    assert_bitwise_equal(p2, as_numpy(p1)[perm], f"{spec.name}: permuted params")
    for name, a, b in zip(s1._fields, s1, s2, strict=True):
        if a is None or name == "count" or np.ndim(a) == 0:
            continue
        assert_bitwise_equal(b, as_numpy(a)[perm], f"{spec.name}: permuted state.{name}")


def check_zero_gradient_fixed_point(spec: OptimizerSpec, param: Any, zero: Any,
                                    settings: dict[str, Any], steps: int = 3,
                                    state: Any = None) -> None:
    """Zero gradients leave the params bitwise unchanged (from ``state``, default fresh).

    Holds exactly when every update term is ``0 / positive``: no weight decay, a positive
    denominator (eps > 0 or a positive accumulator), and no momentum left in the state.
    """
    def check(t, p, s):
        assert_bitwise_equal(p, param, f"{spec.name}: params moved at zero-gradient step {t}")

    run_steps(spec, param, [zero] * steps, settings, state=state, callback=check)


def check_monotone_field(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
                         settings: dict[str, Any], field: str) -> None:
    """State array ``field`` never decreases, element-wise, from step to step."""
    prev = [None]

    def check(t, p, s):
        cur = as_numpy(getattr(s, field))
        if prev[0] is not None:
            bad = cur < prev[0]
            assert not np.any(bad), (
                f"{spec.name}: state.{field} decreased at step {t}: "
                f"{prev[0][bad][:3]} -> {cur[bad][:3]}")
        prev[0] = cur

    run_steps(spec, param, grads, settings, callback=check)
