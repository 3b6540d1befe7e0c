"""The conformance suite: golden trajectories of the float64 reference in a language-neutral
format (docs/conformance-format.md), adapters for torch.optim, optax and the reference on every
backend, the ``adaptive-ref conform`` report and the ``adaptive-ref diagnose`` convention
diagnosis (docs/conformance.md)."""

from .adapters import Adapter, all_adapters, get_adapter
from .compare import CaseResult, compare
from .diagnose import Diagnosis, diagnose, suspect
from .format import FormatError, GoldenCase, load_cases
from .runner import run_all, run_case

__all__ = ["Adapter", "all_adapters", "get_adapter", "CaseResult", "compare", "Diagnosis",
           "diagnose", "suspect", "FormatError", "GoldenCase", "load_cases", "run_all", "run_case"]
