"""Tools for other libraries' test suites: backends, a pytest plugin, assertions, golden cases,
strategies, the invariant catalogue and a minimal spec for your own optimizer.

``budget(optimizer, step, dtype)`` is the suite's error budget in ULP (derived from a count of
roundings, :data:`ROUNDINGS`; see docs/conformance.md); ``check_invariants(spec)`` runs every
property of :data:`INVARIANTS` that applies to an optimizer (docs/tutorials/property-testing.md).

``from adaptive_ref.testing import golden_cases, replay, assert_matches_golden`` parametrises a
test over the golden trajectories of an optimizer (docs/conformance.md). ``strategies`` (the
hypothesis strategies) is imported on first use, so this package works without hypothesis.
"""

from adaptive_ref.conformance.tolerance import ROUNDINGS, budget

from .assertions import assert_close_ulp, assert_matches_golden, ulp, ulp_distance, ulp_error
from .backends import Backend, selected_backends
from .custom import Runnable, minimal_spec, replay_spec, runnable_cases
from .golden import FormatError, GoldenCase, golden_cases, load_golden_cases, replay
from .invariants import INVARIANTS, Invariant, applicable_invariants, check_invariants

__all__ = ["Backend", "selected_backends", "ulp", "ulp_distance", "ulp_error",
           "assert_close_ulp", "assert_matches_golden", "GoldenCase", "FormatError",
           "golden_cases", "load_golden_cases", "replay", "strategies", "budget", "ROUNDINGS",
           "minimal_spec", "runnable_cases", "Runnable", "replay_spec", "Invariant",
           "INVARIANTS", "applicable_invariants", "check_invariants"]


def __getattr__(name):
    if name == "strategies":  # needs hypothesis (a test extra)
        import importlib

        return importlib.import_module(".strategies", __name__)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
