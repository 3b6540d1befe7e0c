"""Run golden cases against implementations and collect :class:`CaseResult` rows."""

from __future__ import annotations

import re
import time
import traceback
import warnings
from pathlib import Path

from . import objectives
from .compare import CaseResult, compare

__all__ = ["run_case", "run_all", "load_xfails", "match", "EXPECTED_DIR"]

EXPECTED_DIR = Path(__file__).resolve().parent / "expected"


def match(pattern: str, case_id: str) -> bool:
    """``*`` matches any run of characters; everything else (brackets too) is literal."""
    rx = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(rx, case_id) is not None


def load_xfails(impl: str, directory: Path = EXPECTED_DIR) -> list[tuple[str, str]]:
    """``(pattern, reason)`` entries of ``expected/<impl>-xfails.txt``.

    One entry per line: a pattern over case ids (``*`` is the only wildcard), whitespace,
    ``#``, the reason. Blank
    lines and lines starting with ``#`` are ignored. An entry without a reason is an error.
    """
    path = Path(directory) / f"{impl}-xfails.txt"
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition("#")
        if not sep or not reason.strip():
            msg = f"{path.name}:{n}: an expected failure needs a reason after '#'"
            raise ValueError(msg)
        out.append((pattern.strip(), reason.strip()))
    return out


def run_case(adapter, case, *, xfails=()) -> CaseResult:
    t0 = time.perf_counter()
    why = objectives.missing_requirement(case.objective) or adapter.supports(case)
    if why:
        return CaseResult(case.id, case.optimizer, adapter.name, status="n/a", reason=why)
    try:
        result = adapter.run(case)
    except Exception as err:  # an implementation crash is a result, not the suite's crash
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        res = CaseResult(case.id, case.optimizer, adapter.name, status="error", reason=tb)
    else:
        res = compare(case, result, impl=adapter.name)
    res.seconds = time.perf_counter() - t0
    for pattern, reason in xfails:
        if match(pattern, case.id):
            if res.status in ("fail", "error"):
                res.status, res.reason = "xfail", reason
            elif res.status == "pass":
                res.status, res.reason = "xpass", f"expected to fail ({reason}) but passed"
            break
    return res


def run_all(adapters, cases, *, progress=None, jobs=1) -> list[CaseResult]:
    """Every case against every adapter whose profile it belongs to (others are skipped).
    ``jobs`` > 1 (or None: every core) runs the cases in worker processes (:mod:`.parallel`)."""
    done = {}
    if jobs != 1:
        from .parallel import run_in_pool

        done, progress = run_in_pool(adapters, cases, jobs=jobs, progress=progress), None
    results = []
    for adapter in adapters:
        xf = load_xfails(adapter.name)
        mine = [c for c in cases if adapter.applies_to(c)]
        matched, used = set(), set()
        for i, case in enumerate(mine):
            res = done.get((adapter.name, case.id)) or run_case(adapter, case, xfails=xf)
            for pattern, _ in xf:
                if match(pattern, case.id):
                    matched.add(pattern)
                    if res.status == "xfail":
                        used.add(pattern)
            results.append(res)
            if progress:
                progress(adapter.name, i + 1, len(mine), res)
        for pattern, reason in xf:
            if pattern in matched and pattern not in used:  # every matching case passed
                warnings.warn(f"{adapter.name}-xfails.txt: stale entry {pattern!r} ({reason}): "
                              "no selected case fails any more", stacklevel=2)
    return results
