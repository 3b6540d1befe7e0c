"""Run golden cases against implementations and collect :class:`CaseResult` rows."""

from __future__ import annotations

import re
import shlex
import time
import traceback
import warnings
from pathlib import Path
from typing import NamedTuple

from . import objectives
from .compare import CaseResult, compare, pytest_node

__all__ = ["run_case", "run_all", "load_xfails", "read_expected_failures", "Expected",
           "StaleExpectedFailure", "match", "reproduce_command", "EXPECTED_DIR"]

EXPECTED_DIR = Path(__file__).resolve().parent / "expected"


class StaleExpectedFailure(UserWarning):
    """An expected-failure entry whose selected cases all pass (or that matches no case)."""


class Expected(NamedTuple):
    """One reviewed expected failure: a case-id pattern, its reason, and where it is written."""

    pattern: str
    reason: str
    where: str = ""


def match(pattern: str, case_id: str) -> bool:
    """``*`` matches any run of characters; everything else (brackets too) is literal."""
    rx = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(rx, case_id) is not None


def read_expected_failures(path) -> list[Expected]:
    """The entries of an expected-failures file.

    One entry per line: a pattern over case ids (``*`` is the only wildcard), whitespace, ``#``,
    the reason. Blank lines and lines starting with ``#`` are ignored. An entry without a reason
    is an error (``ValueError`` naming the file and line).
    """
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition("#")
        if not sep or not reason.strip() or not pattern.strip():
            msg = (f"{path}:{n}: an expected failure needs a reason after '#' (and a case-id "
                   "pattern before it)")
            raise ValueError(msg)
        out.append(Expected(pattern.strip(), reason.strip(), f"{path}:{n}"))
    return out


def load_xfails(impl: str, directory: Path = EXPECTED_DIR) -> list[tuple[str, str]]:
    """``(pattern, reason)`` entries of the shipped ``expected/<impl>-xfails.txt`` (the format of
    :func:`read_expected_failures`); none if there is no such file."""
    path = Path(directory) / f"{impl}-xfails.txt"
    if not path.exists():
        return []
    try:
        return [(e.pattern, e.reason) for e in read_expected_failures(path)]
    except ValueError as err:
        msg = str(err).replace(str(path), path.name, 1)
        raise ValueError(msg) from None


def _q(text: str) -> str:
    return shlex.quote(str(text))


def reproduce_command(adapter, case) -> str:
    """A command that runs this case again: under pytest the test's node id; for a shipped or
    entry-point adapter, or one whose class is importable, ``adaptive-ref conform``; otherwise
    the Python call."""
    node = pytest_node()
    if node:
        return f"python -m pytest {_q(node)}"
    cls = type(adapter)
    spec = getattr(adapter, "conformance_spec", None)
    shipped = cls.__module__.startswith("adaptive_ref.conformance.adapters")
    importable = cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__
    if not spec and not shipped and not hasattr(adapter, "conformance_source") and importable:
        spec = f"{cls.__module__}:{cls.__qualname__}"
    if spec or shipped or hasattr(adapter, "conformance_source"):
        return " ".join(["adaptive-ref conform", *(["--adapter", _q(spec)] if spec else []),
                         "--impl", _q(adapter.name), "--optimizer", _q(case.optimizer),
                         "--case", _q(case.id), "-v"])
    return (f"adaptive_ref.conformance.run_case(<your {cls.__qualname__}>, case).report() with "
            f"case = the {case.id!r} element of adaptive_ref.conformance.load_cases("
            f"{case.optimizer!r})")


def evaluate(adapter, case) -> CaseResult:
    """One case on one adapter, compared with its golden: pass / fail / error / n/a, before any
    expected failure applies (what a worker process computes: :mod:`.parallel`)."""
    t0, c0 = time.perf_counter(), time.process_time()
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
    res.cpu_seconds = time.process_time() - c0
    return res


def expect(res: CaseResult, adapter, case, *, xfails=(), reproduce=None) -> CaseResult:
    """Apply the first matching expected failure to ``res`` (fail/error -> xfail, pass -> xpass)
    and attach the reproduce command to a result that did not pass."""
    for entry in xfails:
        pattern, reason = entry[0], entry[1]
        if match(pattern, case.id):
            if res.status in ("fail", "error"):
                res.status, res.reason = "xfail", reason
            elif res.status == "pass":
                res.status, res.reason = "xpass", f"expected to fail ({reason}) but passed"
            break
    if res.status not in ("pass", "n/a"):
        res.reproduce = reproduce if reproduce is not None else reproduce_command(adapter, case)
    return res


def run_case(adapter, case, *, xfails=(), reproduce=None) -> CaseResult:
    """One case on one adapter. ``xfails``: ``(pattern, reason)`` pairs (or :class:`Expected`);
    ``reproduce``: the command to print in the failure report (default:
    :func:`reproduce_command`)."""
    return expect(evaluate(adapter, case), adapter, case, xfails=xfails, reproduce=reproduce)


def run_all(adapters, cases, *, progress=None, xfails=None, reproduce=None,
            warn_unmatched: bool = False, jobs: int | None = 1) -> list[CaseResult]:
    """Every case against every adapter whose profile it belongs to (others are skipped).

    Each adapter's shipped ``expected/<name>-xfails.txt`` applies, then ``xfails[name]`` (a list
    of :class:`Expected`, e.g. from a user's file). An entry whose matching cases all pass draws a
    :class:`StaleExpectedFailure` warning; with ``warn_unmatched`` (a run over the whole
    catalogue) so does an entry that matches no case. ``progress(impl, i, n, result)`` is called
    after each case; ``reproduce(adapter, case)`` gives the command for failure reports.
    ``jobs`` > 1 (or None: every core) runs the cases in worker processes (:mod:`.parallel`);
    expected failures and reproduce lines are applied here either way.
    """
    done = {}
    if jobs != 1:
        from .parallel import run_in_pool

        done, progress = run_in_pool(adapters, cases, jobs=jobs, progress=progress), None
    results = []
    for adapter in adapters:
        xf = [Expected(p, r, f"expected/{adapter.name}-xfails.txt")
              for p, r in load_xfails(adapter.name)]
        xf += list((xfails or {}).get(adapter.name, ()))
        mine = [c for c in cases if adapter.applies_to(c)]
        matched, used = set(), set()
        for i, case in enumerate(mine):
            rep = reproduce(adapter, case) if reproduce else None
            raw = done.get((adapter.name, case.id))
            res = (expect(raw, adapter, case, xfails=xf, reproduce=rep) if raw is not None
                   else run_case(adapter, case, xfails=xf, reproduce=rep))
            for e in xf:
                if match(e.pattern, case.id):
                    matched.add(e)
                    if res.status == "xfail":
                        used.add(e)
            results.append(res)
            if progress:
                progress(adapter.name, i + 1, len(mine), res)
        for e in xf:
            if e in matched and e not in used:  # every matching case passed
                warnings.warn(f"{e.where}: stale entry {e.pattern!r} ({e.reason}): no selected "
                              f"case of {adapter.name} fails any more", StaleExpectedFailure,
                              stacklevel=2)
            elif warn_unmatched and e not in matched:
                warnings.warn(f"{e.where}: entry {e.pattern!r} matches no case of "
                              f"{adapter.name}", StaleExpectedFailure, stacklevel=2)
    return results
