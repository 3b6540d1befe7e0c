r"""Learning-rate schedules: functions of the step index that give the lr for that step.

Each factory returns ``f(step)``, where ``step`` is the 0-based index of the step about to be
taken (a Python int or a 0-d integer array, e.g. ``state.count``), so a schedule can be traced
under ``jax.jit``. With an int the result is a Python float; with an array it is a 0-d float array
of the same namespace, in float64 where the backend has it. Each formula is written once (below,
``t`` is the step index) and evaluated with Python's ``math`` for ints and with the array's
namespace for arrays, so the two agree to a few ulps (the libraries' ``cos``/``pow`` may differ
in the last bit).

* :func:`constant`: ``value``.
* :func:`exponential_decay`: ``init * rate ** (t / T)``; ``staircase=True`` floors ``t / T``
  (torch's StepLR).
* :func:`inverse_time_decay`: ``init / (1 + rate * t / T)`` (Keras' InverseTimeDecay).
* :func:`inverse_sqrt_decay`: ``init / sqrt(1 + t / T)``; with ``T = 1`` this is
  ``init / sqrt(k)`` at the 1-based step ``k = t + 1``, the 1/sqrt(t) of the regret bounds.
* :func:`piecewise_constant`: ``values[i]`` for ``boundaries[i-1] <= t < boundaries[i]``
  (torch's MultiStepLR).
* :func:`polynomial_decay`: ``(init - end) * (1 - min(t, T) / T) ** power + end``.
* :func:`cosine_decay`: ``init * ((1 - alpha) * (1 + cos(pi * min(t, T) / T)) / 2 + alpha)``.
* :func:`cosine_restarts`: the cosine restarted at each period's end, periods ``T, T*mult,
  ...`` (SGDR; torch's CosineAnnealingWarmRestarts).
* :func:`linear_warmup`: linear from ``init`` to ``peak`` over ``T`` steps, then ``peak``.
* :func:`sequence` (and :func:`join`, two of them): the ``i``-th schedule from
  ``boundaries[i-1]`` on, counting from 0 at its boundary (optax's join_schedules).

Every argument is checked when the schedule is made; a bad one is a ``ValueError`` naming it and
its accepted range. In the tree API (:func:`adaptive_ref.make`) a schedule is evaluated at each
leaf state's own count; ``Group(select, lr=schedule)`` gives a group its own schedule and
``Group(select, lr_scale=c)`` scales the base schedule for a group (torch's way).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["constant", "exponential_decay", "inverse_time_decay", "inverse_sqrt_decay",
           "piecewise_constant", "polynomial_decay", "cosine_decay", "cosine_restarts",
           "linear_warmup", "sequence", "join"]


def _is_int(step) -> bool:
    return isinstance(step, int) and not isinstance(step, bool)


class _PyOps:
    """Python-float versions of the operations the formulas use (steps given as ints)."""

    floor = staticmethod(lambda x: float(math.floor(x)))
    sqrt = staticmethod(math.sqrt)
    cos = staticmethod(math.cos)
    log = staticmethod(math.log)
    pow = staticmethod(lambda a, b: float(a) ** b)
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    where = staticmethod(lambda cond, a, b: a if cond else b)

    def lift(self, x):
        return float(x)


class _ArrayOps:
    """The same operations in an array namespace; Python numbers are lifted to 0-d arrays."""

    def __init__(self, xp, like):
        self.xp, self.like = xp, like

    def lift(self, x):
        return x if hasattr(x, "shape") else self.xp.zeros_like(self.like) + x

    def floor(self, x):
        return self.xp.floor(self.lift(x))

    def sqrt(self, x):
        return self.xp.sqrt(self.lift(x))

    def cos(self, x):
        return self.xp.cos(self.lift(x))

    def log(self, x):
        return self.xp.log(self.lift(x))

    def pow(self, a, b):
        return self.xp.pow(self.lift(a), self.lift(b))

    def minimum(self, a, b):
        return self.xp.minimum(self.lift(a), self.lift(b))

    def maximum(self, a, b):
        return self.xp.maximum(self.lift(a), self.lift(b))

    def where(self, cond, a, b):
        return self.xp.where(cond, self.lift(a), self.lift(b))


def _ops(step):
    """``(ops, t)``: the operations for ``step``'s kind and the step as a float (array)."""
    if _is_int(step):
        return _PyOps(), float(step)
    import array_api_compat as aac

    from ._numerics import scalar_dtype

    xp = aac.array_namespace(step)
    t = xp.astype(step, scalar_dtype(xp, step, xp.float32))
    return _ArrayOps(xp, t), t


def _check(name: str, value: float, low: float = 0.0, *, open_low: bool = False,
           high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or (
            value < low or (open_low and value == low) or value > high
            or math.isinf(value)):
        lo = f"({low:g}" if open_low else f"[{low:g}"
        hi = "inf)" if high == math.inf else f"{high:g}]"
        msg = f"{name}={value!r} is outside the accepted range {lo}, {hi} (a finite number)"
        raise ValueError(msg)


def _schedule(formula: Callable, doc: str) -> Callable:
    def schedule(step):
        ops, t = _ops(step)
        out = formula(ops, t)
        return float(out) if _is_int(step) else ops.lift(out)

    schedule.__doc__ = doc
    return schedule


def constant(value: float) -> Callable:
    """``lr(t) = value``."""
    _check("value", value)
    return _schedule(lambda ops, t: ops.lift(value), f"lr(t) = {value!r}")


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int = 1, *,
                      staircase: bool = False) -> Callable:
    """``lr(t) = init_value * decay_rate ** (t / transition_steps)`` (continuous decay); with
    ``staircase=True`` the exponent is ``floor(t / transition_steps)`` (torch's StepLR with
    ``step_size = transition_steps``, ``gamma = decay_rate``)."""
    _check("init_value", init_value)
    _check("decay_rate", decay_rate)
    _check("transition_steps", transition_steps, open_low=True)

    def formula(ops, t):
        k = t / transition_steps
        return init_value * ops.pow(decay_rate, ops.floor(k) if staircase else k)

    return _schedule(formula, exponential_decay.__doc__)


def inverse_time_decay(init_value: float, decay_rate: float, transition_steps: int = 1, *,
                       staircase: bool = False) -> Callable:
    """``lr(t) = init_value / (1 + decay_rate * t / transition_steps)`` (``floor(t / T)`` with
    ``staircase=True``), as Keras' InverseTimeDecay."""
    _check("init_value", init_value)
    _check("decay_rate", decay_rate)
    _check("transition_steps", transition_steps, open_low=True)

    def formula(ops, t):
        k = t / transition_steps
        return init_value / (1.0 + decay_rate * (ops.floor(k) if staircase else k))

    return _schedule(formula, inverse_time_decay.__doc__)


def inverse_sqrt_decay(init_value: float, transition_steps: int = 1) -> Callable:
    """``lr(t) = init_value / sqrt(1 + t / transition_steps)``. With the default
    ``transition_steps = 1`` this is ``init_value / sqrt(k)`` at the 1-based step ``k = t + 1``:
    the ``alpha_t = alpha / sqrt(t)`` of Adam's and AMSGrad's regret bounds."""
    _check("init_value", init_value)
    _check("transition_steps", transition_steps, open_low=True)
    return _schedule(lambda ops, t: init_value / ops.sqrt(1.0 + t / transition_steps),
                     inverse_sqrt_decay.__doc__)


def _check_increasing(name: str, values: Sequence, low: float = 0.0) -> list:
    out = list(values)
    for i, b in enumerate(out):
        _check(f"{name}[{i}]", b, low)
        if i and b <= out[i - 1]:
            msg = f"{name} must be strictly increasing; {name}[{i}]={b!r} <= {out[i - 1]!r}"
            raise ValueError(msg)
    return out


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Callable:
    """``lr(t) = values[i]`` for ``boundaries[i-1] <= t < boundaries[i]``: ``values[0]`` before
    the first boundary, ``values[-1]`` from the last one on (so ``len(values) ==
    len(boundaries) + 1``). The value changes *at* the boundary step, as in torch's MultiStepLR."""
    bounds = _check_increasing("boundaries", boundaries)
    vals = list(values)
    if len(vals) != len(bounds) + 1:
        msg = (f"piecewise_constant needs len(values) == len(boundaries) + 1; got "
               f"{len(vals)} values for {len(bounds)} boundaries")
        raise ValueError(msg)
    for i, v in enumerate(vals):
        _check(f"values[{i}]", v)

    def formula(ops, t):
        out = ops.lift(vals[-1])
        for b, v in zip(reversed(bounds), reversed(vals[:-1]), strict=True):
            out = ops.where(t < b, v, out)
        return out

    return _schedule(formula, piecewise_constant.__doc__)


def polynomial_decay(init_value: float, end_value: float, decay_steps: int,
                     power: float = 1.0) -> Callable:
    """``lr(t) = (init_value - end_value) * (1 - min(t, T) / T) ** power + end_value`` with
    ``T = decay_steps``: ``end_value`` from step ``T`` on (power 1: linear decay)."""
    _check("init_value", init_value)
    _check("end_value", end_value)
    _check("decay_steps", decay_steps, open_low=True)
    _check("power", power, open_low=True)

    def formula(ops, t):
        frac = ops.minimum(t, decay_steps) / decay_steps
        return (init_value - end_value) * ops.pow(1.0 - frac, power) + end_value

    return _schedule(formula, polynomial_decay.__doc__)


def _cosine(ops, frac, init_value, alpha):
    return init_value * ((1 - alpha) * 0.5 * (1 + ops.cos(math.pi * frac)) + alpha)


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Callable:
    """``lr(t) = init_value * ((1-alpha) * (1 + cos(pi * min(t, T)/T)) / 2 + alpha)``."""
    _check("init_value", init_value)
    _check("decay_steps", decay_steps, open_low=True)
    _check("alpha", alpha)
    return _schedule(lambda ops, t: _cosine(ops, ops.minimum(t, decay_steps) / decay_steps,
                                            init_value, alpha), cosine_decay.__doc__)


def cosine_restarts(init_value: float, period: int, period_mult: float = 1.0,
                    alpha: float = 0.0) -> Callable:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over each period, restarting
    at ``init_value``; the periods are ``period, period*period_mult, period*period_mult**2, ...``
    (SGDR, Loshchilov & Hutter 2017; torch's CosineAnnealingWarmRestarts with ``T_0 = period``,
    ``T_mult = period_mult``, ``eta_min = alpha * init_value``). With ``period_mult != 1`` the
    period index is ``floor(log(1 + t (m - 1) / T) / log m)``; at a restart step this log may
    round to just below the integer, so integer ``period_mult`` with integer ``period`` is
    computed from the exact cumulative boundaries where the step is an int."""
    _check("init_value", init_value)
    _check("period", period, open_low=True)
    _check("period_mult", period_mult, low=1.0)
    _check("alpha", alpha)

    def formula(ops, t):
        if period_mult == 1.0:
            i = ops.floor(t / period)
            start, length = i * period, ops.lift(period)
        elif isinstance(ops, _PyOps):
            start, length = 0.0, float(period)
            while t >= start + length:
                start, length = start + length, length * period_mult
        else:
            m = period_mult
            i = ops.floor(ops.log(1.0 + t * (m - 1.0) / period) / math.log(m))
            start = period * (ops.pow(m, i) - 1.0) / (m - 1.0)
            # a restart step whose log rounded down lands at frac == 1; move it to the next period
            length = period * ops.pow(m, i)
            over = t >= start + length
            start = ops.where(over, start + length, start)
            length = ops.where(over, length * m, length)
        return _cosine(ops, (t - start) / length, init_value, alpha)

    return _schedule(formula, cosine_restarts.__doc__)


def linear_warmup(peak_value: float, warmup_steps: int, init_value: float = 0.0) -> Callable:
    """Linear from ``init_value`` at t=0 to ``peak_value`` at t=warmup_steps, then constant."""
    _check("peak_value", peak_value)
    _check("init_value", init_value)
    _check("warmup_steps", warmup_steps, open_low=True)

    def formula(ops, t):
        frac = ops.minimum(t, warmup_steps) / warmup_steps
        return init_value + (peak_value - init_value) * frac

    return _schedule(formula, linear_warmup.__doc__)


def sequence(schedules: Sequence[Callable], boundaries: Sequence[int]) -> Callable:
    """``schedules[i](t - boundaries[i-1])`` for ``boundaries[i-1] <= t < boundaries[i]``: each
    schedule starts counting from 0 at its boundary (``len(schedules) == len(boundaries) + 1``).
    E.g. warm-up, then a plateau, then a cosine."""
    parts = list(schedules)
    bounds = _check_increasing("boundaries", boundaries)
    if len(parts) != len(bounds) + 1:
        msg = (f"sequence needs len(schedules) == len(boundaries) + 1; got {len(parts)} "
               f"schedules for {len(bounds)} boundaries")
        raise ValueError(msg)
    for i, s in enumerate(parts):
        if not callable(s):
            msg = f"schedules[{i}]={s!r} is not a schedule (a callable of the step index)"
            raise TypeError(msg)
    starts = [0, *bounds]

    def schedule(step):
        if _is_int(step):
            i = sum(step >= b for b in bounds)
            return float(parts[i](step - starts[i]))
        import array_api_compat as aac

        xp = aac.array_namespace(step)
        zero = xp.zeros_like(step)
        out = parts[-1](xp.maximum(step - starts[-1], zero))
        for b, start, part in zip(reversed(bounds), reversed(starts[:-1]), reversed(parts[:-1]),
                                  strict=True):
            out = xp.where(step < b, part(xp.maximum(step - start, zero)), out)
        return out

    schedule.__doc__ = sequence.__doc__
    return schedule


def join(first: Callable, second: Callable, boundary: int) -> Callable:
    """``first(t)`` for t < boundary, then ``second(t - boundary)`` (e.g. warm-up then cosine):
    :func:`sequence` of two."""
    _check("boundary", boundary)
    return sequence([first, second], [boundary])
