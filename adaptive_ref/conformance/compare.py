"""Compare one implementation's trajectory with a golden case under the error budget."""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, field

import numpy as np

from adaptive_ref.ulp import ulp_error

from . import tolerance

__all__ = ["CaseResult", "compare", "Failure", "pytest_node"]


@dataclass
class Failure:
    step: int
    what: str  # "params.c" / "state.c.nu" / "state.a.count"
    ulp: float
    rel: float
    allowed: float


@dataclass
class CaseResult:
    case_id: str
    optimizer: str
    impl: str = "?"
    status: str = "pass"  # pass / fail / xfail / xpass / n/a / error
    reason: str = ""
    max_ulp: float = 0.0
    max_rel: float = 0.0
    worst: str = ""
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the process that ran the case (not its subprocesses)
    suspect: str = ""  # the convention that explains the failure (diagnose.suspect), if found
    reproduce: str = ""  # a command that runs this case again (set by the runner)

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "xfail")

    def report(self) -> str:
        """A readable account: which optimizer, which step, which array, how big, and a command
        that runs the case again (:attr:`reproduce`; under pytest, the current test)."""
        if self.status in ("pass", "n/a"):
            return f"{self.case_id} [{self.impl}]: {self.status} {self.reason}".rstrip()
        lines = []
        if self.status == "error":
            lines.append(f"{self.case_id} [{self.impl}]: error: {self.reason}")
        else:
            lines.append(f"{self.case_id} [{self.impl}]: {self.status}; max error "
                         f"{self.max_ulp:.3g} ULP (relative {self.max_rel:.3g}) at {self.worst}")
            if self.status == "xfail" and self.reason:
                lines.append(f"  expected failure: {self.reason}")
        if self.status != "error" and self.failures:
            f0 = self.failures[0]
            lines.append(f"  first divergence: step {f0.step}, {f0.what}: {f0.ulp:.3g} ULP "
                         f"(relative {f0.rel:.3g}) > budget {f0.allowed:g} ULP")
            if self.suspect:
                lines.append(f"  suspected knob: {self.suspect}")
            for f in self.failures[1:6]:
                lines.append(f"  step {f.step}, {f.what}: {f.ulp:.3g} ULP (relative "
                             f"{f.rel:.3g}) > {f.allowed:g}")
            if len(self.failures) > 6:
                lines.append(f"  ... {len(self.failures) - 6} more")
        if self.reproduce:
            lines.append(f"  reproduce: {self.reproduce}")
        elif pytest_node():
            lines.append(f"  reproduce: python -m pytest {shlex.quote(pytest_node())}")
        else:
            lines.append(f"  case: the {self.case_id!r} element of "
                         f"adaptive_ref.conformance.load_cases({self.optimizer!r})")
        return "\n".join(lines)


def pytest_node() -> str | None:
    """The node id of the pytest test running now (``PYTEST_CURRENT_TEST``), or None."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    node = current.rsplit(" (", 1)[0].strip()
    return node or None


def _rel(a, e, s) -> float:
    a = np.asarray(a, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    d = float(np.max(np.abs(a - e))) if e.size else 0.0
    if not np.all(np.isfinite(a)):
        return math.inf
    return d / s if s else (0.0 if d == 0 else math.inf)


def compare(case, result, *, dtype: str | None = None, budget=None, impl: str = "?",
            state: bool = True, explain: bool = True) -> CaseResult:
    """Compare ``result`` (``{step: (params, state)}``) with ``case.expected``.

    The budget of each array is derived from the golden's error record
    (:func:`tolerance.array_budget`); ``budget`` (a callable ``(optimizer, step, dtype[,
    hparams]) -> ULP``) replaces it with one number per checkpoint, and is what goldens without
    an error record use (:func:`tolerance.counted_budget`). With ``explain``, a failure also
    names the suspected knob (:func:`.diagnose.suspect`).
    """
    dtype = dtype or case.dtype
    out = CaseResult(case.id, case.optimizer, impl)
    for step in case.checkpoints:
        exp = case.expected.get(step)
        if exp is None:
            continue
        if step not in result:
            out.failures.append(Failure(step, "missing checkpoint", math.inf, math.inf, 0))
            continue
        record = exp.get("error") if budget is None else None
        allowed = None
        if record is None:
            fn = budget or tolerance.counted_budget
            try:
                allowed = fn(case.optimizer, step, dtype, case.hparams)
            except TypeError:  # a user budget with the three-argument form
                allowed = fn(case.optimizer, step, dtype)
        got_p, got_s = result[step]
        scales = exp.get("scale", {})
        rec = record or {}
        pairs = [(f"params.{k}", got_p.get(k), v, scales.get("params", {}).get(k),
                  rec.get("params", {}).get(k)) for k, v in exp["params"].items()]
        if state:
            for k, fields in exp["state"].items():
                for f, v in fields.items():
                    g = (got_s or {}).get(k, {}).get(f)
                    if g is not None:
                        pairs.append((f"state.{k}.{f}", g, v,
                                      scales.get("state", {}).get(k, {}).get(f),
                                      rec.get("state", {}).get(k, {}).get(f)))
        for what, got, want, scale, err_rec in pairs:
            if got is None:
                out.failures.append(Failure(step, f"{what} missing", math.inf, math.inf, 0))
                continue
            # the unit: the ULP of the largest magnitude the array had up to this step
            sc = max(float(np.max(np.abs(want))) if np.size(want) else 0.0, scale or 0.0)
            if what.endswith(".count"):
                err = 0.0 if int(np.asarray(got)) == int(want) else math.inf
                rel = 0.0 if err == 0 else abs(int(np.asarray(got)) - int(want))
                limit = 0.0
            else:
                got_a = np.asarray(got, dtype=np.float64).reshape(np.shape(want))
                err = ulp_error(got_a, want, dtype, scale=sc)
                rel = _rel(got_a, want, sc)
                if allowed is not None:
                    limit = allowed
                elif err_rec is not None:
                    limit = tolerance.array_budget(dtype, sc, err_rec)
                else:  # an array the error record does not cover
                    limit = tolerance.counted_budget(case.optimizer, step, dtype)
            if err > out.max_ulp or (err == out.max_ulp and not out.worst):
                out.max_ulp, out.worst = err, f"step {step}, {what}"
            out.max_rel = max(out.max_rel, rel)
            if not err <= limit:
                out.failures.append(Failure(step, what, err, rel, limit))
    out.status = "fail" if out.failures else "pass"
    if out.failures and explain:
        from .diagnose import suspect

        out.suspect = suspect(case, result) or ""
    return out
