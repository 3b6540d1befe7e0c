r"""``minimize``: any registered optimizer as a SciPy-style driver for a function with a gradient.

::

    from adaptive_ref import minimize
    res = minimize(fun, x0, method="adam", jac=grad, lr=1e-2, maxiter=2000, gtol=1e-8)
    res.x, res.fun, res.nit, res.success, res.message, res.history["fun"]

The loop, for ``k = 0, 1, ...``: evaluate ``f_k = fun(x_k)`` and ``g_k = jac(x_k)`` (on
``batch_k`` when ``batches`` is given); record ``f_k`` and the stationarity measure ``r_k``;
stop if ``r_k <= gtol``, if ``k == maxiter`` or on a callback's request; otherwise clip ``g_k``
(by value, then by global norm), take one step of ``method`` and project the result onto the
feasible set:

.. math::

    x_{k+1} = P\bigl(\mathrm{step}(x_k, \mathrm{clip}(g_k))\bigr), \qquad
    r_k = \lVert x_k - P(x_k - g_k) \rVert_2 .

Without constraints ``P`` is the identity and ``r_k = ||g_k||_2``; with box bounds ``r_k`` is the
norm of the projected gradient (zero exactly at a KKT point of the box, as in L-BFGS-B). ``x_0``
outside the bounds is projected first. The step is :func:`adaptive_ref.make`'s (method names come
from the registry, ``profile=`` and hyperparameters pass through, ``lr`` may be a schedule of the
0-based step index), so the driver runs on every array-API backend the step functions run on:
NumPy, array-api-strict, torch, JAX (``jit=True`` compiles clip + step + projection once), Dask
(``x`` and the state are persisted after each step, so the task graph does not grow with the
number of steps) and CuPy.

Stochastic and online problems: ``batches`` is a callable of the step index (``batches(k)``,
e.g. indices drawn from a ``numpy.random.Generator`` it closes over) or an iterable; ``fun`` and
``jac`` are then called as ``fun(x, batch, *args)``. ``gtol`` then tests a noisy gradient; set
``gtol=0`` to run the whole budget.

``status`` / ``message``: 0 the stationarity measure fell to ``gtol``; 1 ``maxiter`` steps were
taken (or the iterable of batches ran out); 2 a step moved no coordinate by more than ``xtol``; 3
``fun`` or ``jac`` returned a non-finite value; 99 the callback asked to stop. ``success`` is true
for 0 and 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["minimize", "OptimizeResult"]


class OptimizeResult(dict):
    """The result, a dict with attribute access, like ``scipy.optimize.OptimizeResult``.

    Fields: ``x`` (the last iterate, in ``x0``'s namespace), ``fun`` (float, ``f(x)``), ``jac``
    (the gradient at ``x``), ``nit`` (steps taken), ``nfev``/``njev`` (evaluations), ``status``,
    ``success``, ``message``, ``history`` (``{"fun": [...], "grad_norm": [...]}``: ``f`` and the
    stationarity measure at ``x_0 ... x_nit``, as floats), ``state`` (the optimizer state: pass it
    back as ``state=`` to continue) and ``method``.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __repr__(self) -> str:
        keys = [k for k in ("message", "success", "status", "fun", "x", "nit", "nfev", "njev")
                if k in self]
        width = max(map(len, keys), default=0)
        return "\n".join(f"{k.rjust(width)}: {self[k]!r}" for k in keys)

    def __dir__(self):
        return list(self.keys())


_MESSAGES = {
    0: "the stationarity measure fell to gtol",
    1: "the iteration budget (maxiter) was used",
    2: "the last step moved no coordinate by more than xtol",
    3: "fun or jac returned a non-finite value",
    99: "the callback asked to stop",
}


def _check_number(name: str, value: Any, *, low: float = 0.0, open_low: bool = False,
                  integer: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value) and (value > low if open_low else value >= low)
    if not ok:
        rng = f"({low:g}, inf)" if open_low else f"[{low:g}, inf)"
        what = "an int" if integer else "a finite number"
        msg = f"minimize: {name}={value!r} is not accepted; it must be {what} in {rng}"
        raise ValueError(msg)


def _as_float_array(x0: Any):
    """``x0`` as a floating array of its own namespace (lists and Python numbers: NumPy)."""
    import array_api_compat as aac

    if isinstance(x0, (list, tuple, int, float)) and not isinstance(x0, bool):
        import numpy as np

        x0 = np.asarray(x0, dtype=np.float64)
    try:
        xp = aac.array_namespace(x0)
    except TypeError:
        msg = (f"minimize: x0 must be an array (NumPy, array-api-strict, torch, JAX, Dask, CuPy) "
               f"or a list of numbers, got {type(x0).__name__}")
        raise TypeError(msg) from None
    if xp.isdtype(x0.dtype, "real floating"):
        return xp, x0
    if xp.isdtype(x0.dtype, ("integral", "bool")):
        from ._numerics import scalar_dtype

        return xp, xp.astype(x0, scalar_dtype(xp, x0, xp.float32))
    msg = f"minimize: x0 has dtype {x0.dtype}; a real floating (or integer) dtype is needed"
    raise TypeError(msg)


def _box(bounds: Any, xp, x):
    """``(lb, ub)`` arrays shaped like ``x`` from a pair, a sequence of pairs or a Bounds."""
    import numpy as np

    shape = tuple(x.shape)
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        lo, hi = bounds.lb, bounds.ub
    else:
        try:
            pairs = list(bounds)
        except TypeError:
            msg = (f"minimize: bounds must be a (low, high) pair, a sequence of such pairs (one "
                   f"per element of x0) or a scipy.optimize.Bounds; got {type(bounds).__name__}")
            raise TypeError(msg) from None
        # (low, high) with scalars, None or arrays, versus a sequence of per-element pairs
        if len(pairs) == 2 and not any(isinstance(b, (tuple, list)) for b in pairs):
            lo, hi = pairs
        else:
            if len(pairs) != math.prod(shape) or not all(
                    isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
                msg = (f"minimize: bounds as a sequence must hold one (low, high) pair per element "
                       f"of x0 ({math.prod(shape)}), got {len(pairs)} entries")
                raise ValueError(msg)
            lo = [p[0] for p in pairs]
            hi = [p[1] for p in pairs]

    def side(v, fill):
        if v is None:
            return np.full(shape, fill)
        a = np.asarray([fill if e is None else e for e in v] if isinstance(v, list) else v,
                       dtype=np.float64)
        if a.size == math.prod(shape) and a.shape != shape:
            a = a.reshape(shape)
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            msg = f"minimize: bounds of shape {a.shape} do not fit x0's shape {shape}"
            raise ValueError(msg) from None

    lb, ub = side(lo, -np.inf), side(hi, np.inf)
    if np.any(np.isnan(lb)) or np.any(np.isnan(ub)) or np.any(lb > ub):
        bad = np.argwhere(np.isnan(lb) | np.isnan(ub) | (lb > ub))[0]
        idx = tuple(int(i) for i in bad)
        msg = (f"minimize: bounds must satisfy low <= high (no NaN); at index {idx}: "
               f"low={lb[idx]!r}, high={ub[idx]!r}")
        raise ValueError(msg)
    import array_api_compat as aac

    dev = aac.device(x)
    return (xp.asarray(lb.astype(np.float64), dtype=x.dtype, device=dev),
            xp.asarray(ub.astype(np.float64), dtype=x.dtype, device=dev))


def _projection(bounds, project, xp, x) -> Callable | None:
    if bounds is not None and project is not None:
        msg = "minimize: give bounds or project, not both (project may clip to the box itself)"
        raise ValueError(msg)
    if project is not None:
        if not callable(project):
            msg = f"minimize: project must be a callable x -> x, got {type(project).__name__}"
            raise TypeError(msg)
        return project
    if bounds is None:
        return None
    lb, ub = _box(bounds, xp, x)
    return lambda z: xp.minimum(xp.maximum(z, lb), ub)


def _clipper(clip_value, clip_norm, xp) -> Callable | None:
    _check_number("clip_value", clip_value, open_low=True, allow_none=True)
    _check_number("clip_norm", clip_norm, open_low=True, allow_none=True)
    if clip_value is None and clip_norm is None:
        return None

    def clip(g):
        if clip_value is not None:
            g = xp.minimum(xp.maximum(g, -clip_value), clip_value)
        if clip_norm is not None:
            norm = xp.sqrt(xp.sum(g * g))
            # optax's clip_by_global_norm: unchanged below the threshold, else scaled onto it
            g = xp.where(norm <= clip_norm, g, g * (clip_norm / xp.where(norm > 0, norm, 1.0)))
        return g

    return clip


def _batch_source(batches):
    if batches is None:
        return None
    if callable(batches):
        return batches
    if isinstance(batches, Iterable):
        it = iter(batches)
        return lambda k: next(it)
    msg = (f"minimize: batches must be a callable of the step index or an iterable, "
           f"got {type(batches).__name__}")
    raise TypeError(msg)


class _Progress:
    def __init__(self, total: int, method: str):
        try:
            from rich.progress import Progress
        except ImportError:
            msg = ("minimize: progress=True needs the 'rich' package "
                   "(pip install 'adaptive-ref[progress]')")
            raise ImportError(msg) from None
        self.bar = Progress(transient=False)
        self.bar.start()
        self.task = self.bar.add_task(method, total=total)

    def update(self, k: int, f: float, r: float) -> None:
        self.bar.update(self.task, completed=k, description=f"f={f:.6g} |g|={r:.3g}")

    def close(self) -> None:
        self.bar.stop()


def minimize(fun: Callable, x0: Any, method: str = "adam", *, jac: Callable | bool | None = None,
             args: tuple = (), profile: str | None = None, maxiter: int = 1000,
             gtol: float = 1e-6, xtol: float = 0.0, bounds: Any = None,
             project: Callable | None = None, clip_value: float | None = None,
             clip_norm: float | None = None, batches: Any = None,
             callback: Callable | None = None, progress: bool = False, jit: bool = False,
             state: Any = None, **hparams: Any) -> OptimizeResult:
    """Minimise ``fun`` from ``x0`` with a registered optimizer; see the module docstring.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)`` (or ``fun(x, batch, *args)``) returning a scalar; with ``jac=True`` it
        returns ``(f, g)``.
    x0 : array or list
        The start; any array-API backend (a list becomes a NumPy float64 array). Not modified.
    method : str
        A registered optimizer (``adaptive_ref.registry.names()``).
    jac : callable or True
        The gradient, same signature as ``fun``, returning an array like ``x``.
    profile, **hparams
        Passed to :func:`adaptive_ref.make` (``lr`` may be a schedule).
    maxiter, gtol, xtol
        Step budget; stop when ``||x - P(x - g)||_2 <= gtol`` or when a step moves no
        coordinate by more than ``xtol`` (0 disables it).
    bounds, project
        Box bounds (a ``(low, high)`` pair, one pair per element, or ``scipy.optimize.Bounds``;
        ``None`` means unbounded) or any projection ``project(x) -> x``, applied after each step.
    clip_value, clip_norm
        Clip each gradient element to ``[-clip_value, clip_value]``, then scale the gradient
        onto the ball of radius ``clip_norm`` if it is outside (optax's order and formula).
    batches
        ``batches(k)`` or an iterable; each step's batch is passed to ``fun`` and ``jac``.
    callback
        ``callback(intermediate_result)`` after each step (an :class:`OptimizeResult` with
        ``x``, ``fun``, ``jac``, ``nit``); returning True or raising ``StopIteration`` stops.
    progress
        Show a progress bar (needs ``rich``: the ``progress`` extra).
    jit
        JAX only: compile clip + step + projection with ``jax.jit``.
    state
        An optimizer state to continue from (``result.state`` of an earlier call).
    """
    from . import registry
    from .tree import make

    if not callable(fun):
        msg = f"minimize: fun must be callable, got {type(fun).__name__}"
        raise TypeError(msg)
    if not isinstance(method, str):
        msg = f"minimize: method must be a registered optimizer's name, got {method!r}"
        raise TypeError(msg)
    if method not in registry.REGISTRY:
        msg = (f"minimize: method={method!r} is not a registered optimizer; "
               f"registered: {', '.join(registry.names())}")
        raise ValueError(msg)
    if jac is None or jac is False:
        msg = ("minimize: jac is required: a callable returning the gradient, or jac=True when "
               "fun returns (f, g) (finite differences are not provided)")
        raise TypeError(msg)
    if jac is not True and not callable(jac):
        msg = f"minimize: jac must be callable or True, got {type(jac).__name__}"
        raise TypeError(msg)
    if not isinstance(args, tuple):
        args = (args,)
    _check_number("maxiter", maxiter, integer=True)
    _check_number("gtol", gtol)
    _check_number("xtol", xtol)
    if callback is not None and not callable(callback):
        msg = f"minimize: callback must be callable, got {type(callback).__name__}"
        raise TypeError(msg)

    xp, x = _as_float_array(x0)
    x_shape = tuple(x.shape)
    proj = _projection(bounds, project, xp, x)
    clip = _clipper(clip_value, clip_norm, xp)
    source = _batch_source(batches)
    opt = make(method, profile=profile, **hparams)
    is_jax = type(x).__module__.startswith("jax")
    if jit and not is_jax:
        msg = f"minimize: jit=True needs JAX arrays; x0 is a {type(x0).__module__} array"
        raise ValueError(msg)
    persist = hasattr(x, "persist") and hasattr(x, "dask")

    if proj is not None:
        x = proj(x)
    if state is None:
        state = opt.init(x)

    def update(x, g, state):
        if clip is not None:
            g = clip(g)
        x_new, state = opt.step(x, g, state)
        if proj is not None:
            x_new = proj(x_new)
        return x_new, state

    if jit:
        import jax

        update = jax.jit(update)

    def evaluate(x, batch):
        call = (x,) if source is None else (x, batch)
        if jac is True:
            out = fun(*call, *args)
            if not (isinstance(out, tuple) and len(out) == 2):
                msg = "minimize: with jac=True, fun must return a pair (f, g)"
                raise TypeError(msg)
            f, g = out
        else:
            f, g = fun(*call, *args), jac(*call, *args)
        if tuple(getattr(f, "shape", ())) not in ((),):
            msg = f"minimize: fun must return a scalar, got shape {tuple(f.shape)}"
            raise ValueError(msg)
        if tuple(getattr(g, "shape", ())) != x_shape:
            msg = (f"minimize: jac must return an array of x's shape {x_shape}, got "
                   f"{type(g).__name__} of shape {tuple(getattr(g, 'shape', ()))}")
            raise ValueError(msg)
        return f, g

    def measure(x, f, g):
        """``(float(f), ||x - P(x - g)||_2)``, in one computation on Dask."""
        r = g if proj is None else x - proj(x - g)
        r = xp.sqrt(xp.sum(r * r))
        if persist:
            import dask

            f, r = dask.compute(f, r)
        return float(f), float(r)

    bar = _Progress(maxiter, method) if progress else None
    hist_f: list[float] = []
    hist_r: list[float] = []
    nit, status = 0, None
    batch = None
    try:
        if source is not None:
            try:
                batch = source(0)
            except StopIteration:
                msg = "minimize: the iterable of batches is empty"
                raise ValueError(msg) from None
        for k in range(maxiter + 1):
            f, g = evaluate(x, batch)
            fval, r = measure(x, f, g)
            hist_f.append(fval)
            hist_r.append(r)
            if bar is not None:
                bar.update(k, fval, r)
            if not (math.isfinite(fval) and math.isfinite(r)):
                status = 3
                break
            if k > 0 and callback is not None:
                try:
                    stop = callback(OptimizeResult(x=x, fun=fval, jac=g, nit=nit))
                except StopIteration:
                    stop = True
                if stop is True:
                    status = 99
                    break
            if status == 2 or r <= gtol:
                status = 0 if status is None else status
                break
            if k == maxiter:
                status = 1
                break
            if source is not None:  # the next point's batch first: never step without one
                try:
                    batch = source(k + 1)
                except StopIteration:
                    status = 1
                    break
            x_new, state = update(x, g, state)
            if persist:
                import dask

                x_new, state = dask.persist(x_new, state)
            nit += 1
            if xtol > 0 and float(xp.max(xp.abs(x_new - x))) <= xtol:
                status = 2  # evaluate f and g at the final x, then stop
            x = x_new
    finally:
        if bar is not None:
            bar.close()
    message = _MESSAGES[status]
    if status == 1 and source is not None and nit < maxiter:
        message = "the iterable of batches ran out"
    if status == 3:
        message = (f"{message} at iteration {len(hist_f) - 1} "
                   f"(f = {hist_f[-1]!r}, stationarity = {hist_r[-1]!r})")
    return OptimizeResult(
        x=x, fun=hist_f[-1], jac=g, nit=nit,
        nfev=len(hist_f), njev=len(hist_f), status=status, success=status in (0, 2),
        message=message, history={"fun": hist_f, "grad_norm": hist_r}, state=state,
        method=method)
