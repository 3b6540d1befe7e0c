"""Write the golden files: ``python -m adaptive_ref.conformance.generate``.

Every stored value is the case's exact trajectory rounded once to float64
(:mod:`adaptive_ref.conformance.exact`, certified at two working precisions), with each
checkpoint's error-model record (:mod:`adaptive_ref.conformance.error_model`).

Refuses to write into a directory that already holds goldens (a MANIFEST.json or golden files)
unless ``--force`` is given, and always prints a summary of what changed (cases added, removed,
and changed with their largest difference). ``--force`` replaces only golden files: those the
old manifest lists and ``<optimizer>.json.gz`` of registered optimizers; other files in ``--dir``
are left alone. ``--check`` only compares (exit 1 on any difference): the drift guard's
command-line form. ``--optimizer NAME`` (repeatable) limits the run to those optimizers; with
``--force`` it rewrites only their files and their manifest entries.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from . import error_model, exact
from .cases import catalogue
from .format import (
    GOLDEN_DIR,
    SCHEMA_VERSION,
    FormatError,
    case_to_dict,
    dumps,
    parse,
    read_text,
    sha256_text,
    write_file,
)

__all__ = ["build", "diff_summary", "main", "golden_files"]

GENERATOR = {"name": "adaptive-ref", "command": "python -m adaptive_ref.conformance.generate",
             "reference": "exact trajectory (mpmath, adaptive_ref.conformance.exact), "
                          "rounded once to float64"}


def _inputs_key(case) -> str:
    d = case_to_dict(dataclasses.replace(case, expected={}, fidelity=None))
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:24]


def build(optimizers=None, *, progress=None, processes: int | None = None,
          cache: Path | None = None) -> tuple[dict[str, list], list[str]]:
    """All cases with their exact expected values, grouped by optimizer; and the certification
    failures (elements where the two working precisions round differently; none expected).

    ``cache``: a directory of exact trajectories keyed by the case's inputs, so a rerun (e.g.
    after a change of the error model) recomputes only cases whose inputs changed.
    """
    cases = catalogue(optimizers)
    done: dict[int, object] = {}
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(cases):
            f = Path(cache) / f"{_inputs_key(c)}.pkl"
            if f.exists():
                done[i] = dataclasses.replace(c, expected=pickle.loads(f.read_bytes()))
    todo = [i for i in range(len(cases)) if i not in done]
    computed, bad = exact.build_all([cases[i] for i in todo], processes=processes,
                                    progress=progress)
    for i, c in zip(todo, computed, strict=True):
        done[i] = c
        if cache is not None:
            (Path(cache) / f"{_inputs_key(c)}.pkl").write_bytes(pickle.dumps(c.expected))
    annotated = exact.pool_map(_annotated, [done[i] for i in range(len(cases))],
                               processes=processes)
    out: dict[str, list] = {}
    fid = {"method": "exact", "digits": list(exact.DIGITS), "elements": "all"}
    for c in annotated:
        c = dataclasses.replace(c, fidelity={**fid, "certified": not any(
            b.startswith(c.id + ":") for b in bad)})
        out.setdefault(c.optimizer, []).append(c)
    return out, bad


def _annotated(case):
    return dataclasses.replace(case, expected=error_model.annotate(case))


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
                diffs.append((cid, *worst))
        values = [d for d in diffs if d[1] is not None]
        top = max(values, key=lambda d: d[1]) if values else None
        lines.append(f"{fname}: {len(added)} added, {len(removed)} removed, {len(diffs)} changed"
                     + (f"; largest value change {top[1]:.3g} float64 ULP ({top[0]}, {top[2]})"
                        if top else ""))
        for cid in added[:5]:
            lines.append(f"  + {cid}")
        for cid in removed[:5]:
            lines.append(f"  - {cid}")
        for cid, w, where in diffs[:10]:
            lines.append(f"  ~ {cid}: " + (f"max {w:.3g} float64 ULP at {where}"
                                            if w is not None else where))
    return lines, changed


def _max_diff(a, b) -> tuple[float | None, str] | None:
    """The largest change of a stored value between two versions of a case (float64 ULPs of
    the array's magnitude), or what else changed; None if nothing did."""
    from adaptive_ref.ulp import ulp_error

    if a.hparams != b.hparams or a.checkpoints != b.checkpoints:
        return None, "inputs changed (hparams/checkpoints)"
    worst, where = 0.0, None
    for t in a.checkpoints:
        ea, eb = a.expected.get(t), b.expected.get(t)
        if ea is None or eb is None:
            return None, "checkpoint missing"
        for k in ea["params"]:
            e = ulp_error(eb["params"][k], ea["params"][k], "float64")
            if e > worst:
                worst, where = e, f"step {t} params.{k}"
        for k, fields in ea["state"].items():
            for f, v in fields.items():
                w = eb["state"].get(k, {}).get(f)
                if w is None:
                    return None, f"state.{k}.{f} missing"
                if f == "count":
                    if w != v:
                        return None, f"step {t} state.{k}.count {v} -> {w}"
                    continue
                e = ulp_error(np.asarray(w), np.asarray(v), "float64")
                if e > worst:
                    worst, where = e, f"step {t} state.{k}.{f}"
    if where is not None:
        return worst, where
    if a.fidelity == b.fidelity and all(
            {k: v for k, v in a.expected[t].items() if k not in ("params", "state")}
            == {k: v for k, v in b.expected[t].items() if k not in ("params", "state")}
            for t in a.checkpoints):
        return None
    return None, "fidelity, scale or error-model record changed"


def golden_files(directory: Path = GOLDEN_DIR) -> list[Path]:
    """The golden files in ``directory``: those its manifest lists and ``<optimizer>.json.gz``
    of registered optimizers (nothing else there is ours to read, replace or delete)."""
    from adaptive_ref.registry import REGISTRY

    directory = Path(directory)
    names = {f"{n}.json.gz" for n in REGISTRY}
    man = directory / "MANIFEST.json"
    if man.exists():
        try:
            listed = json.loads(man.read_text()).get("files", {})
        except (ValueError, AttributeError):
            listed = {}
        # only plain file names (a manifest key must not reach outside the directory)
        names |= {n for n in listed if isinstance(n, str) and Path(n).name == n
                  and n.endswith(".json.gz")}
    return sorted(p for p in directory.glob("*.json.gz") if p.name in names)


def committed_texts(directory: Path = GOLDEN_DIR) -> dict[str, str]:
    out = {}
    for p in golden_files(directory):
        try:
            out[p.name] = read_text(p)
        except FormatError:  # not gzip, truncated, too large, not UTF-8: replaced by --force
            out[p.name] = "<unreadable>"
    return out


def write(new: dict[str, str], groups: dict[str, list], directory: Path = GOLDEN_DIR, *,
          partial: bool = False) -> None:
    """Write the golden files and the manifest. ``partial``: ``new`` holds only some optimizers'
    files; the others (and their manifest entries) stay as they are."""
    import adaptive_ref

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    if partial:
        man = directory / "MANIFEST.json"
        if man.exists():
            files = {k: v for k, v in json.loads(man.read_text()).get("files", {}).items()
                     if (directory / k).exists()}
    else:
        for p in golden_files(directory):
            if p.name not in new:
                p.unlink()
    for fname, text in sorted(new.items()):
        write_file(directory / fname, text)
        opt = fname.split(".")[0]
        cert = all(c.fidelity and c.fidelity.get("certified") for c in groups[opt])
        files[fname] = {"optimizer": opt, "sha256": sha256_text(text), "cases": len(groups[opt]),
                        "certified": cert}
    manifest = {"schema_version": SCHEMA_VERSION, "generator": {
        **GENERATOR, "adaptive_ref_version": adaptive_ref.__version__,
        "numpy_version": np.__version__, "exact_digits": list(exact.DIGITS)},
        "checksum": "sha256 of each file's uncompressed JSON text", "files": files}
    (directory / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adaptive_ref.conformance.generate",
                                 description=__doc__)
    ap.add_argument("--force", action="store_true", help="overwrite existing goldens")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on differences")
    ap.add_argument("--dir", type=Path, default=GOLDEN_DIR, help="golden directory")
    ap.add_argument("--optimizer", action="append", default=None,
                    help="only these optimizers (repeatable; --check compares their files, "
                         "--force rewrites only their files and manifest entries)")
    ap.add_argument("--processes", type=int, default=None,
                    help="worker processes for the exact trajectories (default: 2)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="directory caching exact trajectories by their inputs")
    args = ap.parse_args(argv)
    t0 = time.time()

    def progress(i, n, cid):
        if i % 25 == 0 or i == n:
            print(f"[{i}/{n}] {cid} ({time.time() - t0:.0f} s)", file=sys.stderr)

    groups, bad = build(args.optimizer, progress=progress, processes=args.processes,
                        cache=args.cache)
    new = texts(groups)
    old = committed_texts(args.dir)
    if args.optimizer:
        old = {k: v for k, v in old.items() if k in new}
    lines, changed = diff_summary(old, new)
    n = sum(len(v) for v in groups.values())
    print(f"{n} cases in {len(new)} files; generated in {time.time() - t0:.1f} s")
    print("\n".join(lines) if lines else "no differences from the committed goldens")
    if bad:
        print(f"{len(bad)} values not certified (the two working precisions round differently):",
              file=sys.stderr)
        print("\n".join(bad[:20]), file=sys.stderr)
        return 3
    if args.check:
        return 1 if changed else 0
    if not changed:
        return 0
    occupied = old or (args.dir / "MANIFEST.json").exists()
    if occupied and not args.force:
        print("refusing to overwrite the goldens in " + str(args.dir) + "; review the summary "
              "above and pass --force to write them", file=sys.stderr)
        return 2
    write(new, groups, args.dir, partial=bool(args.optimizer))
    print(f"wrote {len(new)} files and " + ("updated " if args.optimizer else "")
          + f"MANIFEST.json in {args.dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
