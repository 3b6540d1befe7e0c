"""The optimizer x implementation matrix (table, JSON, JUnit) and the profile-distance table."""

from __future__ import annotations

import itertools
import json
import math
import textwrap
from collections import defaultdict
from xml.sax.saxutils import escape, quoteattr

import numpy as np

__all__ = ["matrix", "table", "cell_text", "legend", "LEGEND", "summary", "wrap", "to_json",
           "to_junit", "profile_distances", "distance_table", "findings", "timings",
           "impl_seconds"]


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


def _ulp_text(x: float) -> str:
    """At most 5 characters: 0, <0.1, 6.4, 460, 4.1e3, inf."""
    if x == 0:
        return "0"
    if math.isinf(x) or math.isnan(x):
        return "inf"
    if x < 0.095:
        return "<0.1"
    if x < 9.95:
        return f"{x:.2g}"
    if x < 999.5:
        return f"{x:.0f}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def cell_text(c: dict) -> str:
    """One matrix cell (see :func:`legend`)."""
    ran = c["pass"] + c["fail"] + c["xfail"] + c["xpass"] + c["error"]
    if ran == 0:
        return "n/a"
    if c["fail"] or c["error"]:
        return f"FAIL {c['fail'] + c['error']}/{ran}"
    if c["xpass"]:
        return f"XPASS {c['xpass']}/{ran}"
    if c["xfail"]:
        return f"xfail {c['xfail']}/{ran}"
    return f"ok {_ulp_text(c['max_ulp'])}"


LEGEND = (
    ("ok U", "every case that ran passed; U = the largest error in ULPs of the case dtype "
             "(normwise)"),
    ("FAIL n/m", "n of the m cases that ran failed or crashed (their reports are on stderr)"),
    ("xfail n/m", "n reviewed expected failures (shipped or --expected-failures), the rest "
                  "passed"),
    ("XPASS n/m", "n cases listed as expected failures passed"),
    ("n/a", "the implementation cannot express these cases"),
    ("-", "no case of the implementation's profile"),
)


def legend(width: int = 100) -> str:
    """What the matrix cells mean, one line per kind of cell."""
    w = max(len(k) for k, _ in LEGEND)
    out = ["cells:"] + [wrap(f"  {k:{w}s}  {v}", width, " " * (w + 4)) for k, v in LEGEND]
    out.append("per-case counts, relative errors and the reasons: --format json")
    return "\n".join(out)


def wrap(text: str, width: int = 100, indent: str = "") -> str:
    """``text`` wrapped to ``width`` columns (continuation lines indented by ``indent``)."""
    return textwrap.fill(text, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _split_name(name: str) -> tuple[str, str]:
    group, sep, rest = name.partition("-")
    return (group, rest) if sep and rest else ("", name)


def _block(head: list[str], groups: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
    # a group label spans its columns: widen the group's last column if the label is longer
    j = 1
    while j < len(head):
        k = j
        while k + 1 < len(head) and groups[k + 1] == groups[j]:
            k += 1
        span = sum(widths[j:k + 1]) + 2 * (k - j)
        if len(groups[j]) > span:
            widths[k] += len(groups[j]) - span
        j = k + 1

    def line(r):
        return "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()

    out = []
    if any(groups[1:]):
        top = [""] + [g if j == 1 or groups[j - 1] != g else "" for j, g in
                      enumerate(groups[1:], 1)]
        out.append(line(top))
    out += [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return out


def table(results, impls, width: int = 100) -> str:
    """The optimizer x implementation matrix, at most ``width`` columns wide (more
    implementations than fit side by side go into further blocks), then the legend.

    An implementation ``group-rest`` (``torch-forloop``) is headed ``rest`` under a ``group``
    label shared by its neighbours."""
    cells = matrix(results)
    opts = sorted(cells)
    impls = list(impls)
    col0 = max([len("optimizer")] + [len(o) for o in opts])
    cols = []
    for i in impls:
        group, sub = _split_name(i)
        body = [cell_text(cells[o][i]) if i in cells[o] else "-" for o in opts]
        cols.append((group, sub, body))

    def render(block):
        head = ["optimizer".ljust(col0)] + [c[1] for c in block]
        groups = [""] + [c[0] for c in block]
        return _block(head, groups, [[o] + [c[2][r] for c in block] for r, o in enumerate(opts)])

    def fits(block):
        return max(map(len, render(block))) <= width

    # units: a group's consecutive columns (cut where one group alone is too wide); blocks: the
    # fewest runs of whole units that fit, the most even of those
    units = []
    for _, members in itertools.groupby(cols, key=lambda c: c[0]):
        units.append([])
        for c in members:
            if units[-1] and not fits([*units[-1], c]):
                units.append([])
            units[-1].append(c)
    blocks = [[]]
    for k in range(1, len(units) + 1):
        options = []
        for cuts in itertools.combinations(range(1, len(units)), k - 1):
            bounds = (0, *cuts, len(units))
            split = [[c for u in units[a:b] for c in u] for a, b in itertools.pairwise(bounds)]
            if all(fits(b) for b in split):
                options.append((max(max(map(len, render(b))) for b in split), split))
        if options:
            blocks = min(options, key=lambda o: o[0])[1]
            break
    out = []
    for b in blocks:
        out += ([""] if out else []) + render(b)
    out.append("")
    out.append(legend(width))
    return "\n".join(out)


STATUSES = ("pass", "fail", "error", "xfail", "xpass", "n/a")


def summary(results, *, cases: int, impls, seconds: float, width: int = 100) -> str:
    """The closing lines: what ran, the counts per status, and the verdict."""
    n = {k: sum(r.status == k for r in results) for k in STATUSES}
    bad = n["fail"] + n["error"]
    if bad:
        verdict = "FAIL: " + ", ".join(f"{n[k]} {w}" for k, w in (
            ("fail", "failed"), ("error", "crashed")) if n[k])
    elif n["pass"] + n["xfail"] + n["xpass"] == 0:
        verdict = "NOTHING CHECKED: no case ran"
    else:
        verdict = "PASS"
    text = (f"summary: {len(results)} runs of {cases} golden cases on {len(impls)} "
            f"implementation{'s' if len(impls) != 1 else ''} ({', '.join(impls)}) in "
            f"{seconds:.1f} s: {n['pass']} passed, {n['fail']} failed, {n['error']} crashed, "
            f"{n['xfail']} xfail, {n['xpass']} xpass, {n['n/a']} n/a")
    return wrap(text, width, "  ") + f"\nresult: {verdict}"


def impl_seconds(results) -> dict:
    """``{implementation: (runs, seconds, cpu seconds)}``: the cases that ran (not n/a) and the
    sums of their wall and CPU seconds (build, steps, reads and comparison), in the order of
    ``results``."""
    out: dict = {}
    for r in results:
        runs, secs, cpu = out.get(r.impl, (0, 0.0, 0.0))
        out[r.impl] = (runs + (r.status != "n/a"), secs + r.seconds, cpu + r.cpu_seconds)
    return out


def timings(results, width: int = 100) -> str:
    """Where the time went, per implementation, the most CPU first (``--timings``)."""
    per = impl_seconds(results)
    total = sum(c for _, _, c in per.values()) or 1.0
    w = max((len(k) for k in per), default=0)
    lines = [wrap("time per implementation: the sums of its cases' wall and CPU seconds (build, "
                  "steps, reads, comparison; CPU of the process that ran them, not of the Keras "
                  "worker processes; worker processes run side by side, so the sums exceed the "
                  "wall time, and a loaded machine stretches the wall seconds)", width),
             f"  {'':{w}s} {'wall':>8s}   {'CPU':>8s}  {'share':>6s}  {'runs':>5s}  CPU per run"]
    for impl, (runs, secs, cpu) in sorted(per.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"  {impl:{w}s} {secs:8.1f} s {cpu:8.1f} s  {100 * cpu / total:5.1f}%  "
                     f"{runs:5d}" + (f"  {1000 * cpu / runs:7.1f} ms" if runs else ""))
    lines.append(f"  {'total':{w}s} {sum(s for _, s, _ in per.values()):8.1f} s "
                 f"{sum(c for _, _, c in per.values()):8.1f} s")
    return "\n".join(lines)


def findings(results, cases, width: int = 100) -> str:
    """The cases that pin a documented finding down (tag ``finding``, see
    :data:`adaptive_ref.conformance.cases.FINDING_CASES`), as the implementations ran them: a
    pass means the implementation still does what the finding says ("" when none ran)."""
    tagged = {c.id for c in cases if "finding" in c.tags}
    rows = [r for r in results if r.case_id in tagged and not r.impl.startswith("reference")
            and r.status != "n/a"]
    if not rows:
        return ""
    out = [wrap("Findings pinned by a case (docs/conformance.md, Findings): the implementation's "
                "own default, against the reference settings that describe it; pass = the "
                "finding holds", width)]
    out += [f"  {r.case_id}  {r.impl}: {r.status}" for r in rows]
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
                     "cpu_seconds": round(r.cpu_seconds, 4),
                     **({"reproduce": r.reproduce} if r.reproduce else {}),
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


def distance_table(rows, width: int = 100) -> str:
    """Why does my port differ? (torch profile vs optax profile), at most ``width`` columns."""
    col0 = max([len("optimizer")] + [len(r["optimizer"]) for r in rows])
    out = [wrap("Why does my port differ? The reference under the torch profile vs the optax "
                "profile (same lr and gradients, float64): max relative difference of the "
                "displacement x_t - x_0, and the settings that differ (torch -> optax)", width),
           f"{'optimizer':{col0}s} {'step 1':>9s} {'step 10':>9s} {'step 200':>9s}  settings"]
    indent = " " * (col0 + 3 * 10 + 2)
    for r in rows:
        d = r["distance"]
        knobs = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in r["differing_settings"].items()]
        lines, cur = [], f"{r['optimizer']:{col0}s} {_fmt(d.get(1, 0)):>9s} " \
            f"{_fmt(d.get(10, 0)):>9s} {_fmt(d.get(200, 0)):>9s}  "
        first = True
        for k in knobs or ["(none)"]:
            piece = k if first else ", " + k
            if not first and len(cur) + len(piece) > width:
                lines.append(cur + ",")
                cur, piece = indent, k
            cur += piece
            first = False
        out += lines + [cur]
    return "\n".join(out)
