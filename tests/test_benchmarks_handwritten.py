"""The yardstick of issue 14's per-call target does the reference's math.

``benchmarks/handwritten.py`` holds what a user would type for each elementwise optimizer; the
reference's per-call cost is measured against it. A counterpart that did less (or other) work
would make the ratio mean nothing, so each is stepped beside the reference (default settings,
float64, six steps from the same start and gradients) and must land on the same parameters up to
the rounding of its own operation order. 1e-9 of the distance travelled: six float64 steps in
another order differ by a few hundred ulps at most (the schedule-free ones, which form their
weights differently, by 2e-12); a wrong recurrence (e.g. an AMSGrad that keeps the maximum as
its v) is off by 1e-3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from adaptive_ref import registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.handwritten import STEPS  # noqa: E402

ELEMENTWISE = [n for n, s in registry.REGISTRY.items() if s.elementwise]


def test_every_elementwise_optimizer_has_a_counterpart():
    assert sorted(set(ELEMENTWISE) - set(STEPS)) == []


@pytest.mark.parametrize("name", sorted(STEPS))
def test_counterpart_follows_the_reference(name):
    spec = registry.REGISTRY[name]
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(64)
    grads = [rng.standard_normal(64) for _ in range(6)]
    hand = STEPS[name](p0.copy())
    p, state = p0.copy(), spec.init(p0.copy(), **spec.init_kwargs({}))
    for g in grads:
        hand(g)
        p, state = spec.step(p, g, state)
    (kept,) = [c.cell_contents for c in hand.__closure__ if isinstance(c.cell_contents, dict)]
    got = kept["y" if "y" in kept else "p"]  # schedule-free: y, where gradients are taken
    moved = np.max(np.abs(p - p0))
    assert moved > 0
    assert np.max(np.abs(got - p)) <= 1e-9 * moved, name
