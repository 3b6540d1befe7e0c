"""The conformance suite: golden trajectories of the float64 reference in a language-neutral
format (docs/conformance-format.md), adapters for torch.optim, optax and the reference on every
backend, and the ``adaptive-ref conform`` report (docs/conformance.md)."""

from .adapters import Adapter, all_adapters, get_adapter
from .compare import CaseResult, compare
from .format import FormatError, GoldenCase, load_cases
from .runner import run_all, run_case

__all__ = ["Adapter", "all_adapters", "get_adapter", "CaseResult", "compare", "FormatError",
           "GoldenCase", "load_cases", "run_all", "run_case"]
