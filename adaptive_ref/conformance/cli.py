"""``adaptive-ref conform``: run the golden catalogue against every installed implementation.

Prints the optimizer x implementation matrix (pass / FAIL / xfail / n/a, the largest error in
ULPs and in relative terms) and the torch-vs-optax profile distances; exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from .parallel import jobs_arg

__all__ = ["add_conform_parser", "run_conform", "main"]


def add_conform_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "conform", help="check implementations against the golden trajectories",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", action="append", default=None, metavar="NAME",
                   help="implementation(s) to check (repeat or comma-separate; default: every "
                        "installed one that is not opt-in; see --list)")
    p.add_argument("--optimizer", action="append", default=None, metavar="NAME",
                   help="optimizer(s) to check (default: all with goldens)")
    p.add_argument("--dtype", choices=("float64", "float32"), default=None)
    p.add_argument("--case", default=None, metavar="PATTERN",
                   help="only cases whose id matches this pattern ('*' is the wildcard)")
    p.add_argument("--format", choices=("table", "json", "junit"), default="table")
    p.add_argument("-o", "--output", default=None, help="write the report to this file")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print a readable report for every failing case")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--list", action="store_true", help="list implementations and exit")
    p.add_argument("-j", "--jobs", type=jobs_arg, default=None, metavar="N",
                   help="worker processes (default: one per core for a large selection; "
                        "1: run everything in this process)")
    p.add_argument("--no-profiles", action="store_true",
                   help="omit the torch-vs-optax profile distance table")
    p.set_defaults(func=run_conform)
    return p


def _split(values):
    if not values:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def run_conform(args) -> int:
    from .adapters import all_adapters
    from .format import load_cases
    from .parallel import auto_jobs
    from .report import distance_table, profile_distances, table, to_json, to_junit
    from .runner import match, run_all

    adapters = all_adapters()
    if args.list:
        for a in adapters:
            miss = a.missing()
            print(f"{a.name:26s} {'available' if miss is None else 'not available: ' + miss}"
                  f"  ({a.description}; profile {a.profile or 'any'})"
                  + (f"  [opt-in: {a.opt_in}]" if a.opt_in else ""))
        return 0
    wanted = _split(args.impl)
    if wanted:
        names = {a.name for a in adapters}
        bad = [w for w in wanted if w not in names]
        if bad:
            print(f"unknown implementation(s) {', '.join(bad)}; known: {', '.join(sorted(names))}",
                  file=sys.stderr)
            return 2
        adapters = [a for a in adapters if a.name in wanted]
    else:
        opted_out = [(a.name, a.opt_in) for a in adapters if a.opt_in]
        adapters = [a for a in adapters if not a.opt_in]
    chosen, skipped = [], []
    for a in adapters:
        miss = a.missing()
        (skipped.append((a.name, miss)) if miss else chosen.append(a))
    opts = _split(args.optimizer)
    cases = []
    try:
        for o in (opts or [None]):
            cases += load_cases(o, dtype=args.dtype)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    if args.case:
        cases = [c for c in cases if match(args.case, c.id)]
    if not cases:
        print("no golden cases selected", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    last = [0.0]

    def progress(impl, i, n, res):
        if args.quiet:
            return
        now = time.perf_counter()
        if i == n or now - last[0] > 2.0:
            last[0] = now
            print(f"[{impl}] {i}/{n} cases ({now - t0:.0f} s)", file=sys.stderr)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_all(chosen, cases, progress=progress,
                          jobs=auto_jobs(args.jobs, chosen, cases))
    elapsed = time.perf_counter() - t0
    impls = [a.name for a in chosen]
    info = {a.name: {"version": a.version(), "description": a.description,
                     "profile": a.profile} for a in chosen}
    info.update({n: {"missing": why} for n, why in skipped})
    if args.format == "json":
        text = to_json(results, info, {"seconds": elapsed, "cases": len(cases),
                                       "profile_distances": profile_distances(cases)})
    elif args.format == "junit":
        text = to_junit(results)
    else:
        parts = [table(results, impls)]
        if skipped:
            parts.append("not available: " + "; ".join(f"{n} ({w})" for n, w in skipped))
        if not wanted and opted_out:
            parts.append("not in the default run: "
                         + "; ".join(f"{n} ({w})" for n, w in opted_out))
        if not args.no_profiles:
            rows = profile_distances(cases)
            if rows:
                parts.append("")
                parts.append(distance_table(rows))
        parts.append("")
        parts.append(f"{len(cases)} golden cases, {len(results)} runs on "
                     f"{len(impls)} implementations in {elapsed:.1f} s")
        text = "\n".join(parts)
    for w in caught:
        if "stale" in str(w.message) or "xfails" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    bad = [r for r in results if r.status in ("fail", "error")]
    if args.verbose or (bad and args.format == "table"):
        for r in bad if not args.verbose else [r for r in results if r.status != "pass"]:
            print(r.report(), file=sys.stderr)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive_ref.conformance")
    sub = parser.add_subparsers(dest="command", required=True)
    add_conform_parser(sub)
    args = parser.parse_args(["conform", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
