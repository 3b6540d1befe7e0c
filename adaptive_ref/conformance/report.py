"""The optimizer x implementation matrix (table, JSON, JUnit) and the profile-distance table."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from xml.sax.saxutils import escape, quoteattr

import numpy as np

__all__ = ["matrix", "table", "to_json", "to_junit", "profile_distances", "distance_table"]


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf"
    return f"{x:.2g}"


def matrix(results) -> dict:
    """``{optimizer: {impl: cell}}`` with counts, the worst ULP and relative errors."""
    cells: dict = defaultdict(lambda: defaultdict(lambda: {
        "pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "n/a": 0, "error": 0,
        "max_ulp": 0.0, "max_rel": 0.0, "reasons": set()}))
    for r in results:
        c = cells[r.optimizer][r.impl]
        c[r.status] += 1
        if r.status in ("pass", "fail", "xfail", "xpass"):
            c["max_ulp"] = max(c["max_ulp"], r.max_ulp)
            c["max_rel"] = max(c["max_rel"], r.max_rel)
        if r.status in ("n/a", "xfail") and r.reason:
            c["reasons"].add(r.reason)
    return cells


def cell_text(c: dict) -> str:
    ran = c["pass"] + c["fail"] + c["xfail"] + c["xpass"] + c["error"]
    if ran == 0:
        return "n/a"
    if c["fail"] or c["error"]:
        word = f"FAIL {c['fail'] + c['error']}/{ran}"
    elif c["xfail"]:
        word = f"xfail {c['xfail']}/{ran}"
    else:
        word = f"pass {ran}"
    return f"{word} {_fmt(c['max_ulp'])}u {_fmt(c['max_rel'])}r"


def table(results, impls) -> str:
    cells = matrix(results)
    opts = sorted(cells)
    head = ["optimizer"] + list(impls)
    rows = [[o] + [cell_text(cells[o][i]) if i in cells[o] else "-" for i in impls]
            for o in opts]
    widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=False))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    out.append("")
    out.append("cell: pass/FAIL/xfail count, then the largest error in ULPs of the "
               "implementation's dtype (u) and relative to the array's scale (r); "
               "n/a: the implementation cannot express those cases (see --format json)")
    return "\n".join(out)


def to_json(results, impls_info: dict, extra: dict | None = None) -> str:
    cells = matrix(results)
    doc = {
        "implementations": impls_info,
        "matrix": {o: {i: {**{k: v for k, v in c.items() if k != "reasons"},
                           "reasons": sorted(c["reasons"])} for i, c in row.items()}
                   for o, row in cells.items()},
        "results": [{"case": r.case_id, "optimizer": r.optimizer, "impl": r.impl,
                     "status": r.status, "reason": r.reason,
                     "max_ulp": None if math.isinf(r.max_ulp) else r.max_ulp,
                     "max_rel": None if math.isinf(r.max_rel) else r.max_rel,
                     "worst": r.worst, "seconds": round(r.seconds, 4),
                     "failures": [{"step": f.step, "what": f.what,
                                   "ulp": None if math.isinf(f.ulp) else f.ulp,
                                   "allowed": f.allowed} for f in r.failures[:20]]}
                    for r in results],
    }
    if extra:
        doc.update(extra)
    return json.dumps(doc, indent=1, sort_keys=True)


def to_junit(results) -> str:
    by_impl = defaultdict(list)
    for r in results:
        by_impl[r.impl].append(r)
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<testsuites>"]
    for impl, rs in by_impl.items():
        fails = sum(r.status in ("fail", "xpass") for r in rs)
        errors = sum(r.status == "error" for r in rs)
        skipped = sum(r.status in ("n/a", "xfail") for r in rs)
        out.append(f'<testsuite name={quoteattr("conformance." + impl)} tests="{len(rs)}" '
                   f'failures="{fails}" errors="{errors}" skipped="{skipped}">')
        for r in rs:
            out.append(f'<testcase classname={quoteattr(impl)} name={quoteattr(r.case_id)} '
                       f'time="{r.seconds:.4f}">')
            if r.status in ("fail", "xpass"):
                out.append(f"<failure message={quoteattr(r.report().splitlines()[0])}>"
                           f"{escape(r.report())}</failure>")
            elif r.status == "error":
                out.append(f"<error message={quoteattr(r.reason)}/>")
            elif r.status in ("n/a", "xfail"):
                out.append(f"<skipped message={quoteattr(r.status + ': ' + r.reason)}/>")
            out.append("</testcase>")
        out.append("</testsuite>")
    out.append("</testsuites>")
    return "\n".join(out)


def profile_distances(cases) -> list[dict]:
    """For each optimizer, the same base case under the torch and the optax profile:
    how far apart the two reference trajectories are, and which settings differ."""
    from adaptive_ref.registry import REGISTRY

    by_id = {c.id: c for c in cases}
    rows = []
    for c in cases:
        if c.profile != "torch" or c.dtype != "float64" or "base" not in c.tags:
            continue
        other = by_id.get(c.id.replace("[torch,", "[optax,"))
        if other is None:
            continue
        spec = REGISTRY.get(c.optimizer)
        ts = spec.profiles["torch"].settings if spec else {}
        os_ = spec.profiles["optax"].settings if spec and "optax" in spec.profiles else {}
        differ = sorted(k for k in set(ts) | set(os_) if k != "lr" and ts.get(k) != os_.get(k))
        dist = {}
        for t in c.checkpoints:
            worst = 0.0
            for k, v in c.expected[t]["params"].items():
                w = other.expected[t]["params"][k]
                p0 = next(p.init for p in c.params if p.name == k).reshape(np.shape(v))
                d_a, d_b = np.asarray(v) - p0, np.asarray(w) - p0  # displacements
                s = max(float(np.max(np.abs(d_a))), float(np.max(np.abs(d_b))))
                if s:
                    worst = max(worst, float(np.max(np.abs(d_a - d_b))) / s)
            dist[t] = worst
        rows.append({"optimizer": c.optimizer, "differing_settings": {
            k: [ts.get(k), os_.get(k)] for k in differ}, "distance": dist})
    return rows


def distance_table(rows) -> str:
    out = ["Why does my port differ? The reference under the torch profile vs the optax profile "
           "(same lr and gradients, float64): max relative difference of the displacement "
           "x_t - x_0",
           f"{'optimizer':10s} {'step 1':>9s} {'step 10':>9s} {'step 200':>9s}  settings that "
           "differ (torch -> optax)"]
    for r in rows:
        d = r["distance"]
        knobs = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in
                          r["differing_settings"].items()) or "(none)"
        out.append(f"{r['optimizer']:10s} {_fmt(d.get(1, 0)):>9s} {_fmt(d.get(10, 0)):>9s} "
                   f"{_fmt(d.get(200, 0)):>9s}  {knobs}")
    return "\n".join(out)
