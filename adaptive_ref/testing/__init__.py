"""Tools for other libraries' test suites: backends, a pytest plugin, assertions, golden cases,
strategies.

``from adaptive_ref.testing import golden_cases, replay, assert_matches_golden`` parametrises a
test over the golden trajectories of an optimizer (docs/conformance.md). ``strategies`` (the
hypothesis strategies) is imported on first use, so this package works without hypothesis.
"""

from .assertions import assert_close_ulp, assert_matches_golden, ulp, ulp_distance, ulp_error
from .backends import Backend, selected_backends
from .golden import FormatError, GoldenCase, golden_cases, load_golden_cases, replay

__all__ = ["Backend", "selected_backends", "ulp", "ulp_distance", "ulp_error",
           "assert_close_ulp", "assert_matches_golden", "GoldenCase", "FormatError",
           "golden_cases", "load_golden_cases", "replay", "strategies"]


def __getattr__(name):
    if name == "strategies":  # needs hypothesis (a test extra)
        import importlib

        return importlib.import_module(".strategies", __name__)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
