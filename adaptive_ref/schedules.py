r"""Learning-rate schedules: functions of the step index that give the lr for that step.

Each factory returns ``f(step)``, where ``step`` is the 0-based index of the step about to be
taken (a Python int or a 0-d integer array, e.g. ``state.count``), so a schedule can be traced
under ``jax.jit``. With an array the result is a 0-d float array of the same namespace, in float64
where the backend has it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["constant", "exponential_decay", "cosine_decay", "linear_warmup", "join"]


def _is_int(step) -> bool:
    return isinstance(step, int) and not isinstance(step, bool)


def _xp_float(step):
    import array_api_compat as aac

    from ._numerics import scalar_dtype

    xp = aac.array_namespace(step)
    dt = scalar_dtype(xp, step, xp.float32)
    return xp, xp.astype(step, dt)


def _check(name: str, value: float, low: float = 0.0, *, open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or (
            value < low or (open_low and value == low)):
        rng = f"({low:g}, inf)" if open_low else f"[{low:g}, inf)"
        msg = f"{name}={value!r} is outside the accepted range {rng}"
        raise ValueError(msg)


def constant(value: float) -> Callable:
    """``lr(t) = value``."""
    _check("value", value)

    def schedule(step):
        if _is_int(step):
            return float(value)
        xp, s = _xp_float(step)
        return xp.zeros_like(s) + value

    return schedule


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int = 1) -> Callable:
    """``lr(t) = init_value * decay_rate ** (t / transition_steps)`` (continuous decay)."""
    _check("init_value", init_value)
    _check("decay_rate", decay_rate)
    _check("transition_steps", transition_steps, open_low=True)

    def schedule(step):
        if _is_int(step):
            return init_value * decay_rate ** (step / transition_steps)
        xp, s = _xp_float(step)
        base = xp.zeros_like(s) + decay_rate
        return init_value * xp.pow(base, s / transition_steps)

    return schedule


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Callable:
    """``lr(t) = init_value * ((1-alpha) * (1 + cos(pi * min(t, T)/T)) / 2 + alpha)``."""
    _check("init_value", init_value)
    _check("decay_steps", decay_steps, open_low=True)
    _check("alpha", alpha)

    def schedule(step):
        if _is_int(step):
            frac = min(step, decay_steps) / decay_steps
            return init_value * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * frac)) + alpha)
        xp, s = _xp_float(step)
        frac = xp.minimum(s, xp.zeros_like(s) + decay_steps) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + xp.cos(math.pi * frac)) + alpha)

    return schedule


def linear_warmup(peak_value: float, warmup_steps: int, init_value: float = 0.0) -> Callable:
    """Linear from ``init_value`` at t=0 to ``peak_value`` at t=warmup_steps, then constant."""
    _check("peak_value", peak_value)
    _check("init_value", init_value)
    _check("warmup_steps", warmup_steps, open_low=True)

    def schedule(step):
        if _is_int(step):
            frac = min(step, warmup_steps) / warmup_steps
            return init_value + (peak_value - init_value) * frac
        xp, s = _xp_float(step)
        frac = xp.minimum(s, xp.zeros_like(s) + warmup_steps) / warmup_steps
        return init_value + (peak_value - init_value) * frac

    return schedule


def join(first: Callable, second: Callable, boundary: int) -> Callable:
    """``first(t)`` for t < boundary, then ``second(t - boundary)`` (e.g. warm-up then cosine)."""
    _check("boundary", boundary)

    def schedule(step):
        if _is_int(step):
            return first(step) if step < boundary else second(step - boundary)
        import array_api_compat as aac

        xp = aac.array_namespace(step)
        a = first(step)
        b = second(xp.maximum(step - boundary, xp.zeros_like(step)))
        return xp.where(step < boundary, a, b)

    return schedule
