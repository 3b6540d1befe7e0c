"""``adaptive-ref conform``: run the golden catalogue against every installed implementation.

Prints the optimizer x implementation matrix (pass / FAIL / xfail / n/a and the largest error in
ULPs, with a legend), the torch-vs-optax profile distances and a summary. Exit status: 0 when
every case that ran passed (or failed as reviewed), 1 when a case failed or crashed, 2 when
nothing could be checked (bad arguments, unreadable goldens, no implementation available, no
case ran).

Implementations come from adaptive-ref itself, from installed libraries that declare adapters in
the entry-point group 'adaptive_ref.adapters', and from --adapter MODULE:CLASS.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from .parallel import jobs_arg

__all__ = ["add_conform_parser", "run_conform", "main"]


class UsageError(Exception):
    """Something that stops the run before it starts; printed as one ``error:`` line."""


def add_conform_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "conform", help="check implementations against the golden trajectories",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", action="append", default=None, metavar="NAME",
                   help="implementation(s) to check (repeat or comma-separate; default: every "
                        "installed one that is not opt-in, or only the --adapter ones when "
                        "given; see --list)")
    p.add_argument("--adapter", action="append", default=None, metavar="MODULE:CLASS",
                   help="add an implementation from outside adaptive-ref: an Adapter subclass "
                        "(made with no arguments) or a function returning Adapter(s), importable "
                        "from where you run (repeatable)")
    p.add_argument("--expected-failures", action="append", default=None,
                   metavar="[IMPL=]FILE",
                   help="your reviewed expected failures for IMPL (default: FILE's name, "
                        "<impl>-xfails.txt), one '<case-id pattern>  # <reason>' per line, as "
                        "in adaptive_ref/conformance/expected/ (repeatable)")
    p.add_argument("--optimizer", action="append", default=None, metavar="NAME",
                   help="optimizer(s) to check (default: all with goldens)")
    p.add_argument("--dtype", choices=("float64", "float32"), default=None)
    p.add_argument("--case", default=None, metavar="PATTERN",
                   help="only cases whose id matches this pattern ('*' is the wildcard)")
    p.add_argument("--goldens", default=None, metavar="DIR",
                   help="golden directory (default: the catalogue shipped with adaptive-ref)")
    p.add_argument("--format", choices=("table", "json", "junit"), default="table")
    p.add_argument("-o", "--output", default=None,
                   help="write the report to this file (checked before the run)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print a readable report for every case that did not pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--list", action="store_true", help="list implementations and exit")
    p.add_argument("-j", "--jobs", type=jobs_arg, default=None, metavar="N",
                   help="worker processes (default: one per core for a large selection; "
                        "1: run everything in this process)")
    p.add_argument("--timings", action="store_true",
                   help="also print the seconds spent on each implementation")
    p.add_argument("--no-profiles", action="store_true",
                   help="omit the torch-vs-optax profile distance table")
    p.set_defaults(func=run_conform)
    return p


def _split(values, option: str):
    """Comma-separated, repeatable names; None if the option was not given."""
    if values is None:
        return None
    names = [x.strip() for v in values for x in v.split(",") if x.strip()]
    if not names:
        msg = f"{option} {values[-1]!r}: give at least one name (see --list)"
        raise UsageError(msg)
    return names


def _print_list(adapters) -> None:
    from .report import wrap

    rows = []
    for a in adapters:
        miss = a.missing()
        extra = [a.description, f"profile {a.profile or 'any'}"]
        if getattr(a, "conformance_source", None):
            extra.append(f"from {a.conformance_source}")
        if a.opt_in:
            extra.append(f"opt-in: {a.opt_in}")
        rows.append((a.name, "available" if miss is None else "not available", miss,
                     "; ".join(x for x in extra if x)))
    w = max(len(r[0]) for r in rows)
    indent = " " * (w + 2 + len("not available") + 2)
    for name, state, miss, extra in rows:
        for k, text in enumerate([miss, extra] if miss else [extra]):
            head = f"{name:{w}s}  {state:13s}  " if k == 0 else indent
            print(wrap(head + text, 100, indent))


def _check_output(path: str) -> None:
    """Fail before the run, not after it, if the report cannot be written to ``path``."""
    p = Path(path)
    existed = p.exists()
    try:
        with open(p, "a"):
            pass
    except OSError as err:
        msg = f"-o/--output {path!r}: cannot write there ({err.strerror or err})"
        raise UsageError(msg) from None
    if not existed:
        p.unlink()


def _expected_failures(values, names) -> tuple[dict, list]:
    """``{impl: [Expected, ...]}`` from the ``--expected-failures [IMPL=]FILE`` values, and the
    ``(impl, absolute path)`` of each file (for the reproduce lines)."""
    from .runner import read_expected_failures

    out: dict = {}
    files = []
    for v in values or ():
        impl, sep, fname = v.partition("=")
        if not sep:
            fname = v
            impl = Path(v).name.removesuffix(".txt").removesuffix("-xfails")
            if Path(v).name == impl or Path(v).name != f"{impl}-xfails.txt":
                msg = (f"--expected-failures {v!r}: name the file <impl>-xfails.txt or write "
                       "IMPL=FILE, so it applies to one implementation")
                raise UsageError(msg)
        if impl not in names:
            msg = (f"--expected-failures {v!r}: {impl!r} is not an implementation of this run "
                   f"({', '.join(names)})")
            raise UsageError(msg)
        try:
            entries = read_expected_failures(fname)
        except (OSError, ValueError) as err:
            msg = f"--expected-failures {v!r}: {err}"
            raise UsageError(msg) from None
        out.setdefault(impl, []).extend(entries)
        files.append((impl, os.path.abspath(fname)))
    return out, files


def _load(opts, dtype, pattern, directory):
    from .format import load_cases
    from .runner import match

    kw = {"dtype": dtype} if directory is None else {"dtype": dtype, "directory": directory}
    cases = []
    try:
        for o in (opts or [None]):
            cases += load_cases(o, **kw)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises: one line, no traceback
        from .format import FormatError

        text = str(err)
        if isinstance(err, KeyError) and err.args and " " in str(err.args[0]):
            text = err.args[0]  # load_cases: no goldens for that optimizer
        elif isinstance(err, KeyError):
            text = f"a required field is missing: {text}"
        elif not isinstance(err, FormatError):
            text = f"{type(err).__name__}: {text}"
        where = f" from {directory!r}" if directory else ""
        msg = f"cannot load the golden cases{where}: {text}"
        raise UsageError(msg) from None
    if pattern:
        cases = [c for c in cases if match(pattern, c.id)]
    if not cases:
        msg = "no golden cases selected (check --optimizer, --dtype and --case)"
        raise UsageError(msg)
    return cases


def _reproducer(args, xfail_files):
    """``reproduce(adapter, case)``: the command line that runs one case again as it ran."""
    q = shlex.quote

    def reproduce(adapter, case) -> str:
        parts = ["adaptive-ref conform"]
        if args.goldens:
            parts += ["--goldens", q(os.path.abspath(args.goldens))]
        spec = getattr(adapter, "conformance_spec", None)
        if spec:
            parts += ["--adapter", q(spec)]
        parts += ["--impl", q(adapter.name), "--optimizer", q(case.optimizer)]
        if args.dtype:
            parts += ["--dtype", args.dtype]
        parts += ["--case", q(case.id)]
        for impl, path in xfail_files:
            if impl == adapter.name:
                parts += ["--expected-failures", q(f"{impl}={path}")]
        return " ".join([*parts, "-v"])

    return reproduce


def run_conform(args) -> int:
    try:
        return _run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `adaptive-ref conform --list | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args) -> int:  # noqa: C901 - one linear pipeline: select, load, run, report
    from . import report
    from .adapters import AdapterSpecError, known_adapters
    from .parallel import auto_jobs
    from .progress import Progress
    from .runner import StaleExpectedFailure, run_all

    try:
        adapters = known_adapters(args.adapter or ())
    except AdapterSpecError as err:
        msg = f"--adapter {err}"
        raise UsageError(msg) from None
    if args.list:
        _print_list(adapters)
        return 0
    wanted = _split(args.impl, "--impl")
    opts = _split(args.optimizer, "--optimizer")
    from_cli = [a for a in adapters if getattr(a, "conformance_spec", None)]
    opted_out = []
    if wanted:
        names = {a.name for a in adapters}
        bad = [w for w in wanted if w not in names]
        if bad:
            msg = (f"--impl: unknown implementation(s) {', '.join(bad)}; known: "
                   f"{', '.join(sorted(names))}")
            raise UsageError(msg)
        adapters = [a for a in adapters if a.name in wanted]
    elif from_cli:
        adapters = from_cli
    else:
        opted_out = [(a.name, a.opt_in) for a in adapters if a.opt_in]
        adapters = [a for a in adapters if not a.opt_in]
    chosen, skipped = [], []
    for a in adapters:
        miss = a.missing()
        (skipped.append((a.name, miss)) if miss else chosen.append(a))
    if args.output:
        _check_output(args.output)
    xfails, xfail_files = _expected_failures(args.expected_failures,
                                             [a.name for a in adapters])
    cases = _load(opts, args.dtype, args.case, args.goldens)
    if not chosen:
        msg = ("nothing to check: none of the selected implementations is available here: "
               + "; ".join(f"{n} ({w})" for n, w in skipped))
        raise UsageError(msg)
    if wanted and skipped:
        for n, why in skipped:
            print(f"warning: {n} was asked for but is not available: {why}", file=sys.stderr)

    total = sum(a.applies_to(c) for a in chosen for c in cases)
    progress = None if args.quiet else Progress(total)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = run_all(chosen, cases, progress=progress, xfails=xfails,
                              reproduce=_reproducer(args, xfail_files),
                              warn_unmatched=not (opts or args.dtype or args.case),
                              jobs=auto_jobs(args.jobs, chosen, cases))
        finally:
            if progress:
                progress.close()
    elapsed = time.perf_counter() - t0
    impls = [a.name for a in chosen]
    info = {a.name: {"version": a.version(), "description": a.description,
                     "profile": a.profile,
                     **({"source": a.conformance_source}
                        if getattr(a, "conformance_source", None) else {})} for a in chosen}
    info.update({n: {"missing": why} for n, why in skipped})
    ran = [r for r in results if r.status != "n/a"]
    if args.format == "json":
        extra = {"seconds": elapsed, "cases": len(cases),
                 "impl_seconds": {k: {"wall": round(v, 4), "cpu": round(c, 4)} for k, (_, v, c)
                                  in report.impl_seconds(results).items()},
                 "profile_distances": report.profile_distances(cases)}
        text = report.to_json(results, info, extra)
    elif args.format == "junit":
        text = report.to_junit(results)
    else:
        parts = [report.table(results, impls)]
        if skipped:
            parts.append(report.wrap(
                "not available: " + "; ".join(f"{n} ({w})" for n, w in skipped), 100, "  "))
        if opted_out:
            parts.append(report.wrap(
                "not in the default run: " + "; ".join(f"{n} ({w})" for n, w in opted_out),
                100, "  "))
        if not args.no_profiles:
            rows = report.profile_distances(cases)
            if rows:
                parts += ["", report.distance_table(rows)]
        pinned = report.findings(results, cases)
        if pinned:
            parts += ["", pinned]
        if args.timings:
            parts += ["", report.timings(results)]
        parts += ["", report.summary(results, cases=len(cases), impls=impls, seconds=elapsed)]
        text = "\n".join(parts)
    for w in caught:
        if issubclass(w.category, StaleExpectedFailure):
            print(f"warning: {w.message}", file=sys.stderr)
    bad = [r for r in results if r.status in ("fail", "error")]
    if args.verbose or (bad and args.format == "table"):
        for r in bad if not args.verbose else [r for r in results if r.status != "pass"]:
            print(r.report(), file=sys.stderr)
    if args.output:
        try:
            with open(args.output, "w") as fh:
                fh.write(text + "\n")
        except OSError as err:  # checked before the run; if it fails now, keep the results
            print(text)
            print(f"error: -o/--output {args.output!r}: cannot write there "
                  f"({err.strerror or err}); the report is on stdout above", file=sys.stderr)
            return 2
    else:
        print(text)
    if not ran:
        print(f"error: no case ran: every selected case is n/a for {', '.join(impls)} "
              "(see the reasons with -v or --format json)", file=sys.stderr)
        return 2
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive_ref.conformance")
    sub = parser.add_subparsers(dest="command", required=True)
    add_conform_parser(sub)
    args = parser.parse_args(["conform", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
