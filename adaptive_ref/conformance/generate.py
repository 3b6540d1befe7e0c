"""Write the golden files: ``python -m adaptive_ref.conformance.generate``.

Refuses to overwrite existing goldens unless ``--force`` is given, and always prints a summary
of what changed (cases added, removed, and changed with their largest difference). ``--check``
only compares (exit 1 on any difference): the drift guard's command-line form.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import fidelity
from .adapters.reference import ReferenceAdapter
from .cases import catalogue
from .format import (
    GOLDEN_DIR,
    SCHEMA_VERSION,
    FormatError,
    dumps,
    parse,
    read_text,
    sha256_text,
    write_file,
)

__all__ = ["build", "diff_summary", "main"]

GENERATOR = {"name": "adaptive-ref", "command": "python -m adaptive_ref.conformance.generate",
             "reference": "adaptive_ref on NumPy, float64"}


def build(optimizers=None, *, with_fidelity: bool = True, progress=None) -> dict[str, list]:
    """All cases with expected values (and fidelity), grouped by optimizer."""
    ref = ReferenceAdapter(compute_dtype="float64")
    out: dict[str, list] = {}
    cases = catalogue(optimizers)
    for i, case in enumerate(cases):
        expected = _run_with_scale(ref, case)
        case = dataclasses.replace(case, expected=expected)
        if with_fidelity:
            case = dataclasses.replace(case, fidelity=fidelity.measure(case))
        out.setdefault(case.optimizer, []).append(case)
        if progress:
            progress(i + 1, len(cases), case.id)
    return out


def _absmax(v) -> float:
    a = np.asarray(v, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def _run_with_scale(ref, case) -> dict:
    """Expected values at the checkpoints, with each array's largest magnitude so far.

    The ``scale`` record is the unit of the normwise ULP error: a rounding at step s is
    relative to the magnitudes at step s, so an array that shrinks (a parameter passing
    through 0, a first moment cancelling) keeps the unit of its largest earlier value.
    """
    h = ref.build(case)
    p0, s0 = ref.read(h)
    sp = {k: _absmax(v) for k, v in p0.items()}
    ss = {k: {f: _absmax(v) for f, v in fs.items() if f != "count"} for k, fs in s0.items()}
    out = {}
    for t in range(1, case.steps + 1):
        grads = case.gradients(t) if case.kind == "replay" else case.gradients(t, p0)
        ref.step(h, grads, case.lr_at(t))
        p0, s0 = ref.read(h)
        for k, v in p0.items():
            sp[k] = max(sp[k], _absmax(v))
        for k, fs in s0.items():
            for f, v in fs.items():
                if f != "count":
                    ss[k][f] = max(ss[k].get(f, 0.0), _absmax(v))
        if t in case.checkpoints:
            out[t] = {"params": {k: np.asarray(v, dtype=np.float64) for k, v in p0.items()},
                      "state": {k: dict(fs) for k, fs in s0.items()},
                      "scale": {"params": dict(sp), "state": {k: dict(v) for k, v in ss.items()}}}
    return out


def texts(groups: dict[str, list]) -> dict[str, str]:
    return {f"{opt}.json.gz": dumps(opt, cases, GENERATOR) for opt, cases in groups.items()}


def _case_map(text: str) -> dict:
    try:
        _, cases = parse(text)
    except FormatError:
        return {}
    return {c.id: c for c in cases}


def diff_summary(old: dict[str, str], new: dict[str, str]) -> tuple[list[str], bool]:
    """Lines describing the differences between two sets of golden texts; and whether any."""
    lines, changed = [], False
    for fname in sorted(set(old) | set(new)):
        if fname not in new:
            lines.append(f"{fname}: removed")
            changed = True
            continue
        if fname not in old:
            lines.append(f"{fname}: new ({len(_case_map(new[fname]))} cases)")
            changed = True
            continue
        if old[fname] == new[fname]:
            continue
        changed = True
        a, b = _case_map(old[fname]), _case_map(new[fname])
        added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        diffs = []
        for cid in sorted(set(a) & set(b)):
            worst = _max_diff(a[cid], b[cid])
            if worst is not None:
                diffs.append((cid, worst))
        lines.append(f"{fname}: {len(added)} added, {len(removed)} removed, {len(diffs)} changed")
        for cid in added[:5]:
            lines.append(f"  + {cid}")
        for cid in removed[:5]:
            lines.append(f"  - {cid}")
        for cid, w in diffs[:10]:
            lines.append(f"  ~ {cid}: {w}")
    return lines, changed


def _max_diff(a, b) -> str | None:
    from adaptive_ref.ulp import ulp_error

    if a.hparams != b.hparams or a.checkpoints != b.checkpoints:
        return "inputs changed (hparams/checkpoints)"
    worst, where = 0.0, None
    for t in a.checkpoints:
        ea, eb = a.expected.get(t), b.expected.get(t)
        if ea is None or eb is None:
            return "checkpoint missing"
        for k in ea["params"]:
            e = ulp_error(eb["params"][k], ea["params"][k], "float64")
            if e > worst:
                worst, where = e, f"step {t} params.{k}"
        for k, fields in ea["state"].items():
            for f, v in fields.items():
                w = eb["state"].get(k, {}).get(f)
                if w is None:
                    return f"state.{k}.{f} missing"
                if f == "count":
                    if w != v:
                        return f"step {t} state.{k}.count {v} -> {w}"
                    continue
                e = ulp_error(np.asarray(w), np.asarray(v), "float64")
                if e > worst:
                    worst, where = e, f"step {t} state.{k}.{f}"
    if where is None and a.fidelity == b.fidelity and all(
            a.expected[t].get("scale") == b.expected[t].get("scale") for t in a.checkpoints):
        return None
    return (f"max {worst:.3g} float64 ULP at {where}" if where
            else "fidelity or scale record changed")


def committed_texts(directory: Path = GOLDEN_DIR) -> dict[str, str]:
    directory = Path(directory)
    return {p.name: read_text(p) for p in sorted(directory.glob("*.json.gz"))}


def write(new: dict[str, str], groups: dict[str, list], directory: Path = GOLDEN_DIR) -> None:
    import adaptive_ref

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.glob("*.json.gz"):
        if p.name not in new:
            p.unlink()
    files = {}
    for fname, text in sorted(new.items()):
        write_file(directory / fname, text)
        opt = fname.split(".")[0]
        fid = [c.fidelity["max_ulp"] for c in groups[opt] if c.fidelity]
        files[fname] = {"optimizer": opt, "sha256": sha256_text(text), "cases": len(groups[opt]),
                        "fidelity_max_ulp_float64": max(fid) if fid else None}
    manifest = {"schema_version": SCHEMA_VERSION, "generator": {
        **GENERATOR, "adaptive_ref_version": adaptive_ref.__version__,
        "numpy_version": np.__version__, "fidelity_digits": fidelity.DIGITS},
        "checksum": "sha256 of each file's uncompressed JSON text", "files": files}
    (directory / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adaptive_ref.conformance.generate",
                                 description=__doc__)
    ap.add_argument("--force", action="store_true", help="overwrite existing goldens")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on differences")
    ap.add_argument("--dir", type=Path, default=GOLDEN_DIR, help="golden directory")
    ap.add_argument("--no-fidelity", action="store_true",
                    help="skip the 50-digit recomputation (fidelity fields are then absent)")
    args = ap.parse_args(argv)
    t0 = time.time()

    def progress(i, n, cid):
        if i % 25 == 0 or i == n:
            print(f"[{i}/{n}] {cid} ({time.time() - t0:.0f} s)", file=sys.stderr)

    groups = build(with_fidelity=not args.no_fidelity, progress=progress)
    new = texts(groups)
    old = committed_texts(args.dir)
    lines, changed = diff_summary(old, new)
    n = sum(len(v) for v in groups.values())
    print(f"{n} cases in {len(new)} files; generated in {time.time() - t0:.1f} s")
    print("\n".join(lines) if lines else "no differences from the committed goldens")
    if args.check:
        return 1 if changed else 0
    if not changed:
        return 0
    if old and not args.force:
        print("refusing to overwrite the committed goldens; review the summary above and pass "
              "--force to write them", file=sys.stderr)
        return 2
    write(new, groups, args.dir)
    print(f"wrote {len(new)} files and MANIFEST.json to {args.dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
