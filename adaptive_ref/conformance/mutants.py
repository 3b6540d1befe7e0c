"""Deliberately wrong implementations: how small a change of the update the suite catches.

:class:`PerturbedUpdate` is the reference with every update from step ``start`` on multiplied by
``1 + delta`` (the value subtracted from the parameter is ``(1 + delta)`` times the reference's);
:func:`detection_threshold` finds the smallest such ``delta`` that fails a case.
"""

from __future__ import annotations

import numpy as np

from adaptive_ref.backends import Backend

from .adapters.reference import ReferenceAdapter
from .runner import run_case

__all__ = ["PerturbedUpdate", "detection_threshold"]


class PerturbedUpdate(ReferenceAdapter):
    """The reference on NumPy, every update from step ``start`` on times ``(1 + delta)``."""

    def __init__(self, delta: float, start: int = 51):
        super().__init__(Backend.NUMPY)
        self.name, self.delta, self.start = f"update*(1+{delta:g})", delta, start

    def step(self, h, grads, lr):
        before = {k: np.asarray(v) for k, v in h["params"].items()}
        super().step(h, grads, lr)
        if h["step"] >= self.start:
            for k, p in h["params"].items():
                p = np.asarray(p)
                d = p - before[k]
                h["params"][k] = np.asarray(before[k] + d * (1.0 + self.delta), dtype=p.dtype)


def detection_threshold(case, *, start: int = 51, lo: float = 1e-16, hi: float = 1e-2,
                        iters: int = 14) -> float:
    """The smallest ``delta`` (to a factor ``(hi/lo)**(2**-iters)``) whose perturbed run fails
    ``case`` at a checkpoint after ``start``; ``inf`` if even ``hi`` passes."""
    def caught(delta):
        res = run_case(PerturbedUpdate(delta, start), case)
        return any(f.step >= start for f in res.failures)

    if not caught(hi):
        return float("inf")
    a, b = np.log10(lo), np.log10(hi)
    for _ in range(iters):
        m = 0.5 * (a + b)
        if caught(10.0 ** m):
            b = m
        else:
            a = m
    return float(10.0 ** b)
