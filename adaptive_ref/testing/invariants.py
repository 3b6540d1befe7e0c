"""Reusable invariant checks for optimizers described by an :class:`OptimizerSpec`.

Each check is a plain function that runs ``spec.init`` / ``spec.step`` on the arrays it is given
(any array-API backend) and raises ``AssertionError`` with a message naming the optimizer, the
step and the first offending element. They are used by ``tests/test_properties.py`` and are meant
for other libraries' suites too (combine them with :mod:`adaptive_ref.testing.strategies`).

Every check that says *bitwise* compares the bit patterns of the results (so ``-0.0 != 0.0`` and
NaN equals NaN at the same position): the property is exact in floating point, not only in real
arithmetic, and the docstring of each check says why.

The catalogue :data:`INVARIANTS` says which property holds for which registered optimizer and
under which hyperparameter values (a declarative table read by :func:`applicable_invariants`);
:func:`check_invariants` runs every applicable one on NumPy inputs drawn from a seeded generator,
for a registered optimizer or for your own implementation described by
:func:`adaptive_ref.testing.minimal_spec` (``reference="adam"``: the optimizer it claims to be).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._spec import OptimizerSpec
from ..state import state_from_dict, state_to_dict

__all__ = [
    "as_numpy", "assert_bitwise_equal", "run_steps", "check_shape_dtype_preserved", "check_pure",
    "check_maximize_is_negated_minimize", "check_resume_equals_uninterrupted",
    "check_permutation_equivariant", "check_zero_gradient_fixed_point", "check_monotone_field",
    "check_first_step_is_minus_lr_sign", "check_loss_scale_identity",
    "check_constant_gradient_closed_form", "check_step_bound", "check_sign_flip_equivariant",
    "adam_step_bound", "adamax_step_bound", "unit_roundoff", "ema_roundings",
    "Invariant", "INVARIANTS", "applicable_invariants", "check_invariants", "NUMPY_ONLY",
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


def _state_arrays(state: Any) -> dict[str, Any]:
    """The array fields of a NamedTuple or dict state (``{}`` for any other state type)."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        items = zip(state._fields, state, strict=True)
    elif isinstance(state, dict):
        items = state.items()
    else:
        return {}
    return {k: v for k, v in items if v is not None and hasattr(v, "shape")}


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
        extra = {} if state_dtype is None else {"state_dtype": state_dtype}
        state = spec.init(param, **spec.init_kwargs(settings), **extra)
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
        before_s = {k: as_numpy(v).copy() for k, v in _state_arrays(state).items()}
        new_p, new_s = spec.step(param, g, state, **settings)
        assert_bitwise_equal(param, before_p, f"{spec.name} step {t}: param was modified")
        assert_bitwise_equal(g, before_g, f"{spec.name} step {t}: grad was modified")
        for name, v in _state_arrays(state).items():
            assert_bitwise_equal(v, before_s[name], f"{spec.name} step {t}: state.{name} was "
                                                    f"modified")
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
    f2 = _state_arrays(s2)
    for name, a in _state_arrays(s1).items():
        if name == "count" or np.ndim(a) == 0 or name not in f2:
            continue
        assert_bitwise_equal(f2[name], as_numpy(a)[perm], f"{spec.name}: permuted state.{name}")


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


# ---------------------------------------------------------------------------------------------
# Semantic invariants with their exact conditions, and the registry-driven catalogue

def unit_roundoff(dtype: Any) -> float:
    """``u``: half the spacing of 1.0 in ``dtype`` (2**-53 for float64, 2**-24 for float32)."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2.0


def ema_roundings(beta1: float, beta2: float) -> float:
    """Relative error, in units of ``u``, of ``m_hat / sqrt(v_hat)`` from the two moving averages
    of same-sign inputs: each EMA step adds about ``3u``, damped by ``beta``, so ``m`` carries
    ``3/(1-b1)`` and ``v`` ``2/(1-b2)`` after the square root halves its ``4/(1-b2)``."""
    return 3.0 / (1.0 - beta1) + 2.0 / (1.0 - beta2)


def _fresh(spec: OptimizerSpec, param: Any, settings: dict[str, Any]) -> Any:
    return spec.init(param, **spec.init_kwargs(settings))


def check_first_step_is_minus_lr_sign(spec: OptimizerSpec, grad: np.ndarray,
                                      settings: dict[str, Any], *, roundings: float = 10.0
                                      ) -> None:
    """From ``p = 0`` and a fresh state, with ``eps = 0`` and bias correction on, one step gives
    ``-lr * sign(g)`` for every nonzero ``g``, whatever ``beta1`` and ``beta2``: ``m_hat = g``
    and ``sqrt(v_hat) = |g|`` in real arithmetic. Holds for Adam, AMSGrad, AdamW (any eps
    placement), Adamax and Adagrad (``initial_accumulator_value = 0``); not for NAdam (its first
    step is ``1.0565 lr`` under torch's schedule), RAdam (``lr * g``) or RMSprop
    (``lr / sqrt(1 - alpha)``). Tolerance: ``roundings * u * lr`` (default 10: two roundings in
    ``m_hat``, four in ``v_hat`` halved by the root plus the root itself, the division, the
    multiplication by lr, and three in the 'hat' form's step size). ``g = 0`` gives 0/0 = NaN (as
    torch and optax do), so zeros are not allowed in ``grad``."""
    g = np.asarray(grad)
    if np.any(g == 0):
        msg = "check_first_step_is_minus_lr_sign needs nonzero gradients (0/0 is NaN at eps = 0)"
        raise ValueError(msg)
    p0 = np.zeros_like(g)
    p1, _ = spec.step(p0, g, _fresh(spec, p0, settings), **settings)
    lr = float(settings["lr"])
    err = np.abs(as_numpy(p1) + lr * np.sign(g))
    tol = roundings * unit_roundoff(g.dtype) * lr
    bad = ~(err <= tol)
    if np.any(bad):
        i = int(np.argmax(bad))
        msg = (f"{spec.name}: first step is not -lr*sign(g) (eps = 0): at element {i}, g = "
               f"{g.flat[i]!r}, step = {as_numpy(p1).flat[i]!r}, expected "
               f"{-lr * np.sign(g.flat[i])!r} (allowed error {tol:.3g})")
        raise AssertionError(msg)


def check_loss_scale_identity(spec: OptimizerSpec, param: Any, grads: Sequence[Any],
                              settings: dict[str, Any], scale_exponent: int) -> None:
    """``step(c*g, eps) == step(g, eps/c)`` (and ``eps_root/c**2``) for ``c = 2**k``, bitwise, for
    the parameters after every step. Real arithmetic: ``m`` scales by ``c``, ``v`` by ``c**2``,
    ``sqrt(v) + eps`` by ``c``, so the update is unchanged; a power of two commutes with
    rounding as long as no value overflows or becomes subnormal (where rounding is absolute: a
    ``beta1`` of 1e-320 makes ``beta1*m`` subnormal), hence bitwise. Holds for Adam,
    AMSGrad, AdamW, NAdam and Adamax without weight decay (L2 adds ``wd*p``, which does not
    scale). An eps inside the square root (``sqrt(v + eps)``) breaks it: that needs ``eps/c**2``.
    """
    c = 2.0 ** scale_exponent
    scaled = {**settings, "eps": settings["eps"] / c}
    if "eps_root" in settings:
        scaled["eps_root"] = settings["eps_root"] / c**2
    p1, s1 = run_steps(spec, param, [c * g for g in grads], settings)
    p2, s2 = run_steps(spec, param, list(grads), scaled)
    assert_bitwise_equal(p1, p2, f"{spec.name}: loss scale c = 2**{scale_exponent}: step(c*g, "
                                 f"eps) vs step(g, eps/c), params")


def check_constant_gradient_closed_form(spec: OptimizerSpec, param: np.ndarray, grad_value: float,
                                        steps: int, settings: dict[str, Any]) -> None:
    """A constant gradient ``g`` with ``eps = 0`` and bias correction: ``theta_t = theta_0 - t *
    lr * sign(g)`` at every step ``t``, bitwise, when ``g``, ``lr`` and ``theta_0`` are powers of
    two (or 0) and ``beta1, beta2`` are dyadic with few bits (``1 - 2**-k``), ``t <= 12``:
    ``m_t = (1 - b1**t) g``, ``v_t = (1 - b2**t) g**2`` and both bias corrections are then exact,
    so ``m_hat = g`` and ``sqrt(v_hat) = |g|`` exactly. Holds for Adam, AMSGrad and AdamW
    (without decay). The caller chooses such values; :func:`check_invariants` does."""
    lr = float(settings["lr"])
    p = np.asarray(param)
    g = np.full_like(p, grad_value)

    def check(t, pt, s):
        want = p - t * lr * math.copysign(1.0, grad_value)
        assert_bitwise_equal(pt, want, f"{spec.name}: constant gradient {grad_value!r}, step {t}: "
                                       f"theta_t != theta_0 - t*lr*sign(g)")

    run_steps(spec, p, [g] * steps, settings, callback=check)


def adam_step_bound(t: int, beta1: float, beta2: float) -> float:
    """``R_t``: the supremum of ``|Delta_t| / lr`` over all gradient sequences for Adam with
    ``eps = 0`` (Cauchy-Schwarz; attained by ``g_j ~ (b1/b2)**(t-j)``)::

        R_t = (1-b1)/(1-b1**t) * sqrt((1-b2**t)/(1-b2)) * sqrt(sum_{k<t} (b1**2/b2)**k)

    ``R_1 = 1``; unbounded in ``t`` when ``b1**2 >= b2``. Kingma & Ba's ``lr (1-b1)/sqrt(1-b2)``
    is a heuristic that ``R_t`` exceeds (7.27 lr with the defaults, as ``t`` grows)."""
    if beta2 == 0.0:  # v_t = g_t**2: the step is sign(g) with b1 = 0, unbounded otherwise
        return 1.0 if beta1 == 0.0 or t == 1 else math.inf
    total = math.fsum((beta1 * beta1 / beta2) ** k for k in range(t))
    return ((1.0 - beta1) / (1.0 - beta1**t) * math.sqrt((1.0 - beta2**t) / (1.0 - beta2))
            * math.sqrt(total))


def adamax_step_bound(t: int, beta1: float, beta2: float) -> float:
    """The supremum of ``|Delta_t| / lr`` for Adamax with ``eps = 0``:
    ``(1-b1)/(1-b1**t) * sum_{k<t} (b1/b2)**k`` (attained by ``g_j = b2**(j-t)``)."""
    return (1.0 - beta1) / (1.0 - beta1**t) * sum((beta1 / beta2) ** k for k in range(t))


def check_step_bound(spec: OptimizerSpec, grads: Sequence[np.ndarray], settings: dict[str, Any],
                     bound: Callable[[int, dict[str, Any]], float]) -> list[float]:
    """``|Delta_t| <= lr * bound(t, settings)`` at every step, for any gradients. The step is
    measured from ``p = 0`` with the running state (exact: no parameter addition), and the bound
    gets the EMA's rounding allowance ``(ema_roundings + 10) u`` relative. Returns each step's
    ``max |Delta_t| / lr`` (to check that an extremal sequence attains the bound)."""
    state = None
    ratios = []
    lr = float(settings["lr"])
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g)
        p0 = np.zeros_like(g)
        if state is None:
            state = _fresh(spec, p0, settings)
        delta, state = spec.step(p0, g, state, **settings)
        b = bound(t, settings)
        slack = (ema_roundings(settings.get("beta1", 0.0),
                               settings.get("beta2", settings.get("alpha", 0.0))) + 10)
        limit = lr * b * (1.0 + slack * unit_roundoff(g.dtype))
        d = np.abs(as_numpy(delta))
        if np.any(d > limit):
            i = int(np.argmax(d))
            msg = (f"{spec.name}: step {t} moved element {i} by {d.flat[i]!r} > lr * bound = "
                   f"{lr * b!r} (bound {b:.6g}, rounding allowance included)")
            raise AssertionError(msg)
        ratios.append(float(np.max(d)) / lr if d.size else 0.0)
    return ratios


def check_sign_flip_equivariant(spec: OptimizerSpec, param: np.ndarray,
                                grads: Sequence[np.ndarray], settings: dict[str, Any]) -> None:
    """Negating the start and every gradient negates every iterate, bitwise: each update is an
    odd function of ``(p, g)`` built from exact negations, squares and absolute values."""
    p1, _ = run_steps(spec, param, grads, settings)
    p2, _ = run_steps(spec, -param, [-g for g in grads], settings)
    assert_bitwise_equal(p2, -as_numpy(p1), f"{spec.name}: sign-flipped run")


# ---- the catalogue -------------------------------------------------------------------------
#: The optimizers of the core table (their properties are proven in the theory notes and tested
#: in the project's own suite). Other registered optimizers get the generic invariants only.
CORE = frozenset({"sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam",
                  "radam"})
ADAM_LIKE = frozenset({"adam", "amsgrad", "adamw"})
#: Optimizers whose state arrays all have the parameter's shape (Shampoo, full-matrix Adagrad
#: and row-wise Adagrad keep matrices or one value per row).
#: Elementwise optimizers of issue 11 (the newer family): the core table's generic properties
#: (permutation, sign flip, maximize, zero gradient) hold for them as written (Adadelta's
#: averages are of squares and its step is odd in g; Lion's sign is odd and sign(0) = 0); ADOPT's
#: step is also invariant under g -> 2^k g with eps -> eps/2^k (n = g/max(sqrt(v), eps) is).
NEWER = frozenset({"adadelta", "lion", "adopt", "adabelief", "adan", "schedule_free_adamw",
                   "schedule_free_sgd"})
PARAM_SHAPED_STATE = CORE | NEWER | {"von", "ivon", "rootfree_rmsprop", "lazy_adam",
                                     "sparse_adagrad"}
DYADIC_BETAS = (0.5, 0.75, 0.875, 0.9375)


@dataclass(frozen=True)
class Invariant:
    """One property, the optimizers it holds for and the exact settings it needs.

    ``holds_for``: registry names (``None``: every optimizer). ``conditions``: hyperparameter
    values the property needs; an implementation without that hyperparameter qualifies only if the
    reference's default is that value (it then implements the default). ``needs``: spec metadata
    (``"elementwise"``, ``"maximize"``, ``"registered_state"``). ``run(spec, settings, rng,
    dtype)`` draws inputs and calls the ``check_*`` function named in ``statement``.
    """

    name: str
    statement: str
    run: Callable
    holds_for: frozenset | None = None
    conditions: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


def _grads(rng, shape, steps, dtype, lo=-6.0, hi=2.0, zeros=False):
    out = []
    for _ in range(steps):
        g = rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(lo, hi, size=shape)
        if zeros:
            g[rng.random(shape) < 0.2] = 0.0
        out.append(g.astype(dtype))
    return out


def _param(rng, shape, dtype):
    return (rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(-3, 1, size=shape)
            ).astype(dtype)


def _shape(spec, n):
    """``(n,)``, or ``(2, n)`` for an optimizer of matrices (``spec.param_ndim == 2``: Muon)."""
    return (2, n) if getattr(spec, "param_ndim", None) == 2 else (n,)


def _run_pure(spec, settings, rng, dtype):
    p = _param(rng, _shape(spec, 5), dtype)
    p.flags.writeable = False
    grads = _grads(rng, _shape(spec, 5), 3, dtype)
    for g in grads:
        g.flags.writeable = False
    check_pure(spec, p, grads, settings)


def _run_shape(spec, settings, rng, dtype):
    check_shape_dtype_preserved(spec, _param(rng, (2, 3), dtype), _grads(rng, (2, 3), 3, dtype),
                                settings)


def _run_resume(spec, settings, rng, dtype):
    grads = _grads(rng, _shape(spec, 4), 6, dtype)
    check_resume_equals_uninterrupted(spec, _param(rng, _shape(spec, 4), dtype), grads, settings, 3,
                                      to_numpy=True)


def _run_permutation(spec, settings, rng, dtype):
    check_permutation_equivariant(spec, _param(rng, (6,), dtype), _grads(rng, (6,), 5, dtype),
                                  settings, rng.permutation(6))


def _run_sign_flip(spec, settings, rng, dtype):
    check_sign_flip_equivariant(spec, _param(rng, (6,), dtype), _grads(rng, (6,), 5, dtype),
                                settings)


def _run_maximize(spec, settings, rng, dtype):
    check_maximize_is_negated_minimize(spec, _param(rng, (5,), dtype),
                                       _grads(rng, (5,), 4, dtype), settings, neg=lambda g: -g)


def _run_zero_gradient(spec, settings, rng, dtype):
    check_zero_gradient_fixed_point(spec, _param(rng, (5,), dtype), np.zeros(5, dtype), settings)


def _run_first_step(spec, settings, rng, dtype):
    for beta1, beta2 in ((0.9, 0.999), (0.0, 0.5), (0.5, 0.99)):
        kw = {**settings, **{k: v for k, v in (("beta1", beta1), ("beta2", beta2))
                             if k in settings}}
        check_first_step_is_minus_lr_sign(spec, _grads(rng, (8,), 1, dtype)[0], kw)


def _run_loss_scale(spec, settings, rng, dtype):
    # magnitudes where eps matters (|g| near eps's scale and above): a misplaced eps shows
    for k in (-7, 3, 10):
        check_loss_scale_identity(spec, _param(rng, (6,), dtype),
                                  _grads(rng, (6,), 6, dtype, lo=-9.0, hi=0.0), settings, k)


def _run_constant_gradient(spec, settings, rng, dtype):
    for beta1, beta2 in ((0.5, 0.75), (0.875, 0.9375), (0.75, 0.5)):
        kw = {**settings, **{k: v for k, v in (("beta1", beta1), ("beta2", beta2))
                             if k in settings}, "lr": 2.0**-5}
        g = float(rng.choice([-1.0, 1.0]) * 2.0 ** int(rng.integers(-20, 20)))
        check_constant_gradient_closed_form(spec, np.zeros(3, dtype), g, 12, kw)


def _adam_bound(t, s):
    return adam_step_bound(t, s["beta1"], s["beta2"])


def _run_adam_bound(spec, settings, rng, dtype):
    for beta1, beta2 in ((0.9, 0.999), (0.9, 0.99), (0.5, 0.9)):
        kw = {**settings, "beta1": beta1, "beta2": beta2}
        # the extremal sequence g_j ~ (b1/b2)**(t-j) for t = 12 and random ones
        t_end = 12
        extremal = [np.full(3, (beta1 / beta2) ** (t_end - j), dtype) for j in range(1, t_end + 1)]
        reached = check_step_bound(spec, extremal, kw, _adam_bound)[-1]
        tight = adam_step_bound(t_end, beta1, beta2)
        slack = (ema_roundings(beta1, beta2) + 10) * unit_roundoff(dtype)
        assert reached >= tight * (1 - slack), (
            f"{spec.name}: the extremal sequence reaches |Delta|/lr = {reached!r} at t = {t_end}, "
            f"below the supremum R_t = {tight!r} (b1 = {beta1}, b2 = {beta2})")
        check_step_bound(spec, _grads(rng, (6,), 20, dtype), kw, _adam_bound)


def _run_adamax_bound(spec, settings, rng, dtype):
    def bound(t, s):
        return adamax_step_bound(t, s["beta1"], s["beta2"])

    check_step_bound(spec, _grads(rng, (6,), 20, dtype), settings, bound)


def _run_rmsprop_bound(spec, settings, rng, dtype):
    def bound(t, s):
        return 1.0 / math.sqrt(1.0 - s["alpha"])

    check_step_bound(spec, _grads(rng, (6,), 20, dtype), settings, bound)


_NO_DECAY = {"weight_decay": 0.0}

INVARIANTS: tuple[Invariant, ...] = (
    Invariant("pure", "check_pure: no input is modified (read-only NumPy inputs, same bits "
              "after)", _run_pure),
    Invariant("shape_dtype", "check_shape_dtype_preserved: namespace, shape and dtype of the "
              "param and the state arrays kept; count advances by one", _run_shape,
              PARAM_SHAPED_STATE, needs=("registered_state",)),
    Invariant("resume", "check_resume_equals_uninterrupted: save after 3 steps through NumPy, "
              "load, continue: bitwise the uninterrupted run", _run_resume,
              needs=("registered_state",)),
    Invariant("permutation", "check_permutation_equivariant: permuting the coordinates permutes "
              "the result, bitwise (element-wise methods)", _run_permutation, CORE | NEWER,
              needs=("elementwise",)),
    Invariant("sign_flip", "check_sign_flip_equivariant: negating p and every g negates every "
              "iterate, bitwise (element-wise methods)", _run_sign_flip, CORE | NEWER,
              needs=("elementwise",)),
    Invariant("maximize", "check_maximize_is_negated_minimize: maximize=True on g equals "
              "minimize on -g, bitwise", _run_maximize, CORE | NEWER, needs=("maximize",)),
    Invariant("zero_gradient", "check_zero_gradient_fixed_point: from a fresh state, zero "
              "gradients leave p unchanged (eps > 0, no weight decay)", _run_zero_gradient,
              CORE | NEWER, {"eps": 1e-8, **_NO_DECAY}),
    Invariant("first_step_sign", "check_first_step_is_minus_lr_sign: the first step from p = 0 "
              "is -lr*sign(g) at eps = 0 with bias correction", _run_first_step,
              ADAM_LIKE | {"adamax", "adagrad"},
              {"eps": 0.0, "eps_root": 0.0, "bias_correction": True, "maximize": False,
               "initial_accumulator_value": 0.0, **_NO_DECAY}),
    Invariant("loss_scale", "check_loss_scale_identity: step(c*g, eps) == step(g, eps/c) "
              "bitwise for c = 2**k, no weight decay", _run_loss_scale,
              ADAM_LIKE | {"nadam", "adamax", "adopt"}, {"eps": 1e-8, **_NO_DECAY}),
    Invariant("constant_gradient", "check_constant_gradient_closed_form: theta_t = theta_0 - "
              "t*lr*sign(g), bitwise for dyadic inputs, eps = 0", _run_constant_gradient,
              ADAM_LIKE, {"eps": 0.0, "eps_root": 0.0, "bias_correction": True,
                          "eps_placement": "outside", "maximize": False, **_NO_DECAY}),
    Invariant("step_bound", "check_step_bound with adam_step_bound: |Delta_t| <= lr*R_t at "
              "eps = 0, attained by the extremal sequence", _run_adam_bound, frozenset({"adam"}),
              {"eps": 0.0, "eps_root": 0.0, "bias_correction": True, "eps_placement": "outside",
               "amsgrad": False, "maximize": False, **_NO_DECAY}),
    Invariant("step_bound_adamax", "check_step_bound with adamax_step_bound: |Delta_t| <= lr*"
              "(1-b1)/(1-b1^t) sum_k (b1/b2)^k at eps = 0", _run_adamax_bound,
              frozenset({"adamax"}), {"eps": 0.0, "maximize": False, **_NO_DECAY}),
    Invariant("step_bound_rmsprop", "check_step_bound: plain RMSprop moves at most "
              "lr/sqrt(1-alpha) per step", _run_rmsprop_bound, frozenset({"rmsprop"}),
              {"centered": False, "momentum": 0.0, "bias_correction": False,
               "initial_accumulator_value": 0.0, "maximize": False, **_NO_DECAY}),
)


# ---- issue 11: Lion's closed form ----------------------------------------------------------
# Lion's c has the sign of a constant gradient, so its closed form is Adam's
# (theta_0 - t*lr*sign(g)) for any betas.
INVARIANTS = INVARIANTS + (
    Invariant("constant_gradient_lion", "check_constant_gradient_closed_form: Lion's c has the "
              "sign of a constant g, so theta_t = theta_0 - t*lr*sign(g), bitwise for dyadic "
              "inputs", _run_constant_gradient, frozenset({"lion"}),
              {"maximize": False, **_NO_DECAY}),)


def _reference(spec: OptimizerSpec, reference: str | None) -> OptimizerSpec | None:
    from .. import registry

    name = reference if reference is not None else spec.name
    if reference is not None and name not in registry.REGISTRY:
        msg = (f"reference={reference!r} is not a registered optimizer; registered: "
               f"{', '.join(registry.names())}")
        raise ValueError(msg)
    return registry.REGISTRY.get(name)


def _has(spec: OptimizerSpec, need: str) -> bool:
    if need == "elementwise":
        return bool(spec.elementwise)
    if need == "maximize":
        return "maximize" in spec.hparam_names
    if need == "registered_state":
        from ..state import state_types

        tp = state_types().get(getattr(spec.state_type, "__name__", ""))
        return tp is spec.state_type
    raise AssertionError(need)


def applicable_invariants(spec: OptimizerSpec, *, reference: str | None = None
                          ) -> list[tuple[Invariant, dict[str, Any] | str]]:
    """Every invariant with either the settings to check it under or the reason it does not apply.

    ``reference`` names the registered optimizer that ``spec`` implements (default: ``spec.name``,
    for the registry's own optimizers); the catalogue's ``holds_for`` is read for that name.
    """
    ref = _reference(spec, reference)
    ref_name = ref.name if ref is not None else None
    out: list[tuple[Invariant, dict[str, Any] | str]] = []
    for inv in INVARIANTS:
        if inv.holds_for is not None and ref_name not in inv.holds_for:
            out.append((inv, f"not a property of {ref_name or spec.name}"))
            continue
        missing = [n for n in inv.needs if not _has(spec, n)]
        if missing:
            out.append((inv, f"needs {', '.join(missing)}"))
            continue
        settings = spec.settings(None)
        reason = None
        for k, v in inv.conditions.items():
            if k in spec.hparam_names:
                h = spec.hparam(k)
                if h.kind == "choice" and v not in h.choices:
                    reason = f"needs {k}={v!r}, not among {spec.name}'s choices"
                    break
                if k in spec.fixed and spec.fixed[k] != v:
                    reason = f"needs {k}={v!r}; {spec.name} fixes {k}={spec.fixed[k]!r}"
                    break
                settings[k] = v
            elif ref is not None and k in ref.hparam_names and ref.hparam(k).default != v:
                reason = (f"needs {k}={v!r}; {spec.name} has no {k}, so it implements the "
                          f"default {ref.hparam(k).default!r}")
                break
        out.append((inv, settings if reason is None else reason))
    return out


#: Invariants that compare NumPy objects directly (dtypes, saved states): run with NumPy only.
NUMPY_ONLY = frozenset({"shape_dtype", "resume"})


def _on_backend(spec: OptimizerSpec, backend: Any) -> OptimizerSpec:
    """``spec`` with its functions fed arrays of ``backend`` and its params read back as NumPy
    (an exact copy both ways); the state stays the backend's own."""
    import dataclasses

    from ..backends import Backend

    try:
        b = backend if isinstance(backend, Backend) else Backend(backend)
    except ValueError:
        msg = (f"backend={backend!r} is not one of "
               f"{', '.join(repr(x.value) for x in Backend)}")
        raise ValueError(msg) from None
    reason = b.missing_reason()
    if reason is not None:
        msg = f"backend={b.value!r} is not usable here: {reason}"
        raise ValueError(msg)
    b.setup()

    def init(param, **kw):
        return spec.init(b.asarray(param), **kw)

    def step(param, grad, state, **kw):
        p, st = spec.step(b.asarray(param), b.asarray(grad), state, **kw)
        return b.to_numpy(p), st

    return dataclasses.replace(spec, init=init, step=step)


def check_invariants(spec: OptimizerSpec, *, reference: str | None = None, seed: int = 0,
                     dtype: Any = np.float64, only: Sequence[str] | None = None,
                     backend: Any = None) -> list[str]:
    """Run every invariant that applies to ``spec`` (see :func:`applicable_invariants`) on inputs
    drawn from ``numpy.random.default_rng(seed)``; return the names run. All failures are
    collected and raised together as one ``AssertionError``, one line per invariant.

    ``backend`` (a :class:`adaptive_ref.backends.Backend` or its name, e.g. ``"torch"``): the
    inputs are handed to ``spec`` as that library's arrays and its parameters are read back
    (exact copies both ways), so an implementation written for torch or JAX is checked as it
    is. :data:`NUMPY_ONLY` invariants are then skipped, and ``pure`` checks the state only (the
    inputs it sees are copies).
    """
    ran, failures = [], []
    known = {inv.name for inv in INVARIANTS}
    unknown = sorted(set(only or ()) - known)
    if unknown:
        msg = f"only= names unknown invariants {unknown}; known: {', '.join(sorted(known))}"
        raise ValueError(msg)
    applicable = applicable_invariants(spec, reference=reference)
    if backend is not None:
        spec = _on_backend(spec, backend)
    for inv, settings in applicable:
        if isinstance(settings, str) or (only is not None and inv.name not in only):
            continue
        if backend is not None and inv.name in NUMPY_ONLY:
            continue
        rng = np.random.default_rng(seed)
        try:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                inv.run(spec, settings, rng, np.dtype(dtype))
        except AssertionError as err:
            failures.append(f"{inv.name}: {err}")
        ran.append(inv.name)
    if failures:
        msg = f"{spec.name} violates {len(failures)} invariant(s):\n" + "\n".join(failures)
        raise AssertionError(msg)
    return ran
