"""The golden-file format (schema version 1): reading, validation, writing and checksums.

One gzip-compressed JSON file per optimizer, ``goldens/<optimizer>.json.gz``, holds its cases;
``goldens/MANIFEST.json`` records the sha256 of each file's *uncompressed* JSON text (so the
checksum does not depend on the zlib version), the schema version, the generator and the
measured fidelity. The spec is docs/conformance-format.md; this module is its executable form.

Floats are JSON numbers written with the shortest decimal that round-trips (at most 17
significant digits, Python's ``repr``): any JSON reader with correctly rounded parsing gets the
exact float64 back. float32 cases store float32-representable inputs as float64 numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import objectives, rng

__all__ = ["SCHEMA_VERSION", "GoldenCase", "ParamSpec", "FormatError", "GOLDEN_DIR",
           "case_from_dict", "case_to_dict", "read_file", "write_file", "read_manifest",
           "load_cases", "dumps", "sha256_text"]

SCHEMA_VERSION = 1
GOLDEN_DIR = Path(__file__).resolve().parent / "goldens"
DTYPES = ("float64", "float32")
KINDS = ("replay", "closed_loop")

#: Bounds a reader enforces before it spends time or memory on a file (the goldens shipped use
#: at most 0.8 MB of JSON per file, 200 steps and 128 elements per parameter).
MAX_TEXT_BYTES = 64 * 2**20  # uncompressed JSON text of one golden file or the manifest
MAX_STEPS = 100_000  # steps of one case
MAX_ELEMENTS = 10**6  # elements of one parameter


# State fields that hold one number per parameter (0-d state, stored as a one-element list):
# NAdam's ``mu_product`` (every ``*product``), schedule-free's ``weight_sum`` and ``lr_max``.
SCALAR_STATE_FIELDS = frozenset({"weight_sum", "lr_max"})
# Whole-model optimizers' scalars, the same number in every parameter's record (Prodigy)
SCALAR_STATE_FIELDS |= {"d", "d_max", "d_numerator"}


def is_scalar_field(name: str) -> bool:
    """Whether state field ``name`` is one number per parameter (see SCALAR_STATE_FIELDS)."""
    return name.endswith("product") or name in SCALAR_STATE_FIELDS


class FormatError(ValueError):
    """A golden file or case that does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter array of a case: its name, shape, starting value, gradient and overrides."""

    name: str
    shape: tuple[int, ...]
    init: np.ndarray  # float64, already rounded to the case dtype
    grad: dict | None = None  # replay: the rng.gradient spec; closed loop: None
    hparams: dict = field(default_factory=dict)  # per-parameter (per-group) overrides
    # state fields whose shape is not the parameter's (Adafactor's factors): {field: shape}
    state_shapes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GoldenCase:
    """One golden case. ``expected`` maps a checkpoint step to ``{"params": {name: array},
    "state": {name: {field: array or int}}}`` (float64 arrays, the reference's values)."""

    id: str
    optimizer: str
    profile: str
    dtype: str
    kind: str
    hparams: dict
    overrides: dict
    steps: int
    checkpoints: tuple[int, ...]
    params: tuple[ParamSpec, ...]
    lr_schedule: tuple[float, ...] | None = None
    objective: dict | None = None
    tags: tuple[str, ...] = ()
    expected: dict = field(default_factory=dict)
    fidelity: dict | None = None

    # ---- inputs, regenerated from the data -------------------------------------------------
    def np_dtype(self):
        return np.dtype(self.dtype)

    def param_hparams(self, name: str) -> dict:
        """The full keyword set for the step function of parameter ``name``."""
        for p in self.params:
            if p.name == name:
                return {**self.hparams, **p.hparams}
        raise KeyError(name)

    def lr_at(self, step: int) -> float | None:
        """The case-level lr of ``step`` (1-based) when the case has a schedule, else None."""
        return None if self.lr_schedule is None else self.lr_schedule[step - 1]

    def gradients(self, step: int, params: dict | None = None) -> dict[str, np.ndarray]:
        """Gradients of ``step`` in the case dtype: replayed, or evaluated at ``params``."""
        dt = self.np_dtype()
        if self.kind == "replay":
            return {p.name: _replay_grad(json.dumps(p.grad, sort_keys=True), p.shape, step,
                                         self.dtype).copy() for p in self.params}
        if params is None:
            msg = f"{self.id}: a closed-loop case needs the current params to give a gradient"
            raise ValueError(msg)
        g = objectives.gradient(self.objective, {k: np.asarray(v, dtype=np.float64)
                                                 for k, v in params.items()})
        return {k: np.asarray(v).astype(dt) for k, v in g.items()}

    def truncated(self, steps: int) -> GoldenCase:
        """The first ``steps`` steps of this case (a prefix of the trajectory: the expected
        values at the checkpoints up to ``steps`` are unchanged)."""
        import dataclasses

        cps = tuple(c for c in self.checkpoints if c <= steps)
        if not cps:
            msg = f"{self.id}: no checkpoint within the first {steps} steps"
            raise ValueError(msg)
        sched = None if self.lr_schedule is None else self.lr_schedule[:cps[-1]]
        return dataclasses.replace(self, steps=cps[-1], checkpoints=cps, lr_schedule=sched,
                                   expected={t: self.expected[t] for t in cps
                                             if t in self.expected})

    def init_params(self) -> dict[str, np.ndarray]:
        return {p.name: p.init.astype(self.np_dtype()).reshape(p.shape) for p in self.params}

    def row_sparse(self) -> bool:
        return any(p.grad is not None and p.grad.get("row_fraction") is not None
                   for p in self.params)


@lru_cache(maxsize=8192)
def _replay_grad(grad_json: str, shape: tuple, step: int, dtype: str) -> np.ndarray:
    # Many cases share a parameter's gradient stream, so the arrays are cached (read-only).
    g = rng.gradient(json.loads(grad_json), shape, step).astype(dtype)
    g.flags.writeable = False
    return g


# ---- dict <-> case ---------------------------------------------------------------------------
def _need(d: dict, key: str, types, where: str):
    if not isinstance(d, dict):
        msg = f"{where}: must be a JSON object, got {type(d).__name__}"
        raise FormatError(msg)
    if key not in d:
        msg = f"{where}: missing field {key!r}"
        raise FormatError(msg)
    v = d[key]
    if not isinstance(v, types) or isinstance(v, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        tn = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        msg = f"{where}: field {key!r} must be {tn}, got {type(v).__name__} {v!r:.60}"
        raise FormatError(msg)
    return v


def _floats(values, n: int, where: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        msg = f"{where}: expected a list of {n} numbers, got {got}"
        raise FormatError(msg)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            msg = f"{where}: {v!r} is not a finite JSON number"
            raise FormatError(msg)
    return np.asarray(values, dtype=np.float64)


def case_from_dict(d: dict) -> GoldenCase:
    """Validate one case record and build a :class:`GoldenCase`; errors name the field."""
    if not isinstance(d, dict):
        msg = f"a case must be a JSON object, got {type(d).__name__}"
        raise FormatError(msg)
    cid = _need(d, "id", str, "case")
    where = f"case {cid}"
    opt = _need(d, "optimizer", str, where)
    prof = _need(d, "profile", str, where)
    dtype = _need(d, "dtype", str, where)
    if dtype not in DTYPES:
        msg = f"{where}: dtype {dtype!r} is not one of {', '.join(DTYPES)}"
        raise FormatError(msg)
    kind = _need(d, "kind", str, where)
    if kind not in KINDS:
        msg = f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}"
        raise FormatError(msg)
    hp = _need(d, "hparams", dict, where)
    steps = _need(d, "steps", int, where)
    if not 1 <= steps <= MAX_STEPS:
        msg = f"{where}: steps={steps} is outside the accepted range [1, {MAX_STEPS}]"
        raise FormatError(msg)
    cps = _need(d, "checkpoints", list, where)
    if not cps or any(not isinstance(c, int) or not 1 <= c <= steps for c in cps) or \
            cps != sorted(set(cps)):
        msg = (
            f"{where}: checkpoints must be increasing steps in [1, {steps}], "
                          f"got {cps}"
        )
        raise FormatError(msg)
    params = []
    for i, p in enumerate(_need(d, "params", list, where)):
        pw = f"{where} params[{i}]"
        name = _need(p, "name", str, pw)
        shape = tuple(_need(p, "shape", list, pw))
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
            msg = f"{pw}: shape must be a list of integers >= 0, got {list(shape)!r:.80}"
            raise FormatError(msg)
        n = math.prod(shape)
        if n > MAX_ELEMENTS:
            msg = (f"{pw}: shape {list(shape)} has {n} elements, more than the {MAX_ELEMENTS} "
                   f"a golden parameter may have")
            raise FormatError(msg)
        init = _floats(_need(p, "init", list, pw), n, f"{pw} init")
        grad = p.get("grad")
        if kind == "replay":
            if not isinstance(grad, dict):
                msg = f"{pw}: a replay case needs a 'grad' object"
                raise FormatError(msg)
            if grad.get("generator") != "splitmix64-v1":
                msg = (
                    f"{pw}: grad generator {grad.get('generator')!r} is not "
                                  "'splitmix64-v1'"
                )
                raise FormatError(msg)
            for key in ("seed", "scale"):
                if key not in grad:
                    msg = f"{pw}: grad is missing {key!r}"
                    raise FormatError(msg)
        params.append(ParamSpec(name, shape, init, grad, _hp_in(_opt(p, "hparams", dict, pw)),
                                _state_shapes(p, pw)))
    sched = d.get("lr_schedule")
    if sched is not None:
        sched = tuple(_floats(sched, steps, f"{where} lr_schedule").tolist())
    objective = d.get("objective")
    if kind == "closed_loop":
        if not isinstance(objective, dict) or objective.get("name") not in objectives.OBJECTIVES:
            msg = (
                f"{where}: a closed-loop case needs an objective named one of "
                              f"{', '.join(objectives.OBJECTIVES)}"
            )
            raise FormatError(msg)
    expected = {}
    shapes = {p.name: p.shape for p in params}
    own = {p.name: p.state_shapes for p in params}
    for key, snap in _opt(d, "expected", dict, where).items():
        sw = f"{where} expected[{key}]"
        if not key.isdigit() or int(key) not in cps:
            msg = f"{sw}: {key!r} is not one of the checkpoints {cps}"
            raise FormatError(msg)
        out_p = {}
        for name, vals in _need(snap, "params", dict, sw).items():
            if name not in shapes:
                msg = f"{sw}: unknown param {name!r}"
                raise FormatError(msg)
            n = int(np.prod(shapes[name], dtype=np.int64)) if shapes[name] else 1
            out_p[name] = _floats(vals, n, f"{sw} params.{name}").reshape(shapes[name])
        out_s = {}
        for name, fields in _need(snap, "state", dict, sw).items():
            if name not in shapes:
                msg = f"{sw}: state for unknown param {name!r}"
                raise FormatError(msg)
            if not isinstance(fields, dict):
                msg = f"{sw}: state.{name} must be a JSON object, got {type(fields).__name__}"
                raise FormatError(msg)
            out_s[name] = {}
            for fname, vals in fields.items():
                if fname == "count":
                    if not isinstance(vals, int) or isinstance(vals, bool):
                        msg = f"{sw} state.{name}.count must be an integer"
                        raise FormatError(msg)
                    out_s[name][fname] = vals
                elif isinstance(vals, list) and len(vals) == 1 and not shapes[name] or \
                        is_scalar_field(fname):
                    out_s[name][fname] = _floats(vals, 1, f"{sw} state.{name}.{fname}")[0]
                else:
                    fshape = own[name].get(fname, shapes[name])
                    n = int(np.prod(fshape, dtype=np.int64)) if fshape else 1
                    out_s[name][fname] = _floats(vals, n, f"{sw} state.{name}.{fname}").reshape(
                        fshape)
        rec = {"params": out_p, "state": out_s}
        for record in ("scale", "error"):  # per-array records, passed through as they are
            if record not in snap:
                continue
            val = snap[record]
            if not isinstance(val, dict) or not isinstance(val.get("params", {}), dict):
                msg = f"{sw}: {record!r} must be an object with 'params' and 'state'"
                raise FormatError(msg)
            rec[record] = val
        expected[int(key)] = rec
    tags = _opt(d, "tags", list, where)
    if not all(isinstance(t, str) for t in tags):
        msg = f"{where}: tags must be a list of strings"
        raise FormatError(msg)
    return GoldenCase(cid, opt, prof, dtype, kind, _hp_in(hp),
                      _hp_in(_opt(d, "overrides", dict, where)),
                      steps, tuple(cps), tuple(params), sched, objective, tuple(tags),
                      expected, d.get("fidelity"))


def _state_shapes(p: dict, where: str) -> dict:
    """A parameter's optional ``state_shapes``: ``{field: [int, ...]}`` (as tuples)."""
    out = {}
    for f, shp in _opt(p, "state_shapes", dict, where).items():
        if not isinstance(shp, list) or any(isinstance(s, bool) or not isinstance(s, int)
                                            or s < 0 for s in shp):
            msg = f"{where}: state_shapes.{f} must be a list of integers >= 0, got {shp!r:.80}"
            raise FormatError(msg)
        out[f] = tuple(shp)
    return out


def _opt(d: dict, key: str, tp: type, where: str):
    """An optional field: a fresh ``tp()`` when absent, else it must be a ``tp``."""
    if key not in d:
        return tp()
    return tp(_need(d, key, tp, where))


def _flat(a) -> list:
    return [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


# An infinite hyperparameter (Prodigy's default growth_rate: unbounded) is the string "inf"
# (or "-inf") in a golden file: JSON has no infinity.
_INF = {"inf": float("inf"), "-inf": float("-inf")}


def _hp_out(hp: dict) -> dict:
    return {k: (("inf" if v > 0 else "-inf") if isinstance(v, float) and np.isinf(v) else v)
            for k, v in hp.items()}


def _hp_in(hp: dict) -> dict:
    return {k: (_INF[v] if isinstance(v, str) and v in _INF else v) for k, v in hp.items()}


def case_to_dict(c: GoldenCase) -> dict:
    out: dict[str, Any] = {
        "id": c.id, "optimizer": c.optimizer, "profile": c.profile, "dtype": c.dtype,
        "kind": c.kind, "hparams": _hp_out(c.hparams), "overrides": _hp_out(c.overrides),
        "steps": c.steps,
        "checkpoints": list(c.checkpoints), "tags": list(c.tags),
        "params": [{"name": p.name, "shape": list(p.shape), "init": _flat(p.init),
                    **({"grad": p.grad} if p.grad is not None else {}),
                    **({"hparams": _hp_out(p.hparams)} if p.hparams else {}),
                    **({"state_shapes": {f: list(v) for f, v in p.state_shapes.items()}}
                       if p.state_shapes else {})} for p in c.params],
    }
    if c.lr_schedule is not None:
        out["lr_schedule"] = list(c.lr_schedule)
    if c.objective is not None:
        out["objective"] = c.objective
    exp = {}
    for step in sorted(c.expected):
        snap = c.expected[step]
        exp[str(step)] = {
            "params": {k: _flat(v) for k, v in snap["params"].items()},
            "state": {k: {f: (v if f == "count" else _flat(v)) for f, v in fields.items()}
                      for k, fields in snap["state"].items()},
        }
        for extra in ("scale", "error"):
            if extra in snap:
                exp[str(step)][extra] = snap[extra]
    out["expected"] = exp
    if c.fidelity is not None:
        out["fidelity"] = c.fidelity
    return out


# ---- files -------------------------------------------------------------------------------
def dumps(optimizer: str, cases: list[GoldenCase], generator: dict) -> str:
    """The canonical JSON text of one golden file (sorted keys, one case per line)."""
    head = {"schema_version": SCHEMA_VERSION, "optimizer": optimizer, "generator": generator}
    lines = [json.dumps(case_to_dict(c), sort_keys=True, allow_nan=False) for c in cases]
    body = ",\n".join(lines)
    return json.dumps(head, sort_keys=True)[:-1] + ', "cases": [\n' + body + "\n]}\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_file(path: Path, text: str) -> None:
    """gzip with a fixed header (mtime 0, no name) so identical text gives identical bytes."""
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                               compresslevel=9) as gz:
        gz.write(text.encode())


def read_text(path: Path, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The (uncompressed) text of ``path``; at most ``limit`` bytes are read or decompressed
    (a gzip bomb stops there), and a truncated or corrupt gzip stream, a file that is not
    UTF-8 or a missing file is a :class:`FormatError` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    data = gz.read(limit + 1)
            else:
                data = raw.read(limit + 1)
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise FormatError(msg) from None
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        msg = f"{path.name}: not a readable gzip file ({type(err).__name__}: {err})"
        raise FormatError(msg) from None
    if len(data) > limit:
        msg = (f"{path.name}: more than {limit} bytes of text (uncompressed); a golden file is "
               f"far smaller, so this is not one (a corrupt or hostile file)")
        raise FormatError(msg)
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        msg = f"{path.name}: not UTF-8 text ({err})"
        raise FormatError(msg) from None


def parse(text: str, where: str = "golden file") -> tuple[dict, list[GoldenCase]]:
    """Parse a golden file's text; returns its header and cases."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"{where}: not valid JSON ({err})"
        raise FormatError(msg) from None
    if not isinstance(doc, dict):
        msg = f"{where}: the top level must be a JSON object"
        raise FormatError(msg)
    ver = doc.get("schema_version")
    if ver != SCHEMA_VERSION:
        msg = (
            f"{where}: schema_version {ver!r} is not supported (this reader "
                          f"reads version {SCHEMA_VERSION})"
        )
        raise FormatError(msg)
    cases = doc.get("cases")
    if not isinstance(cases, list):
        msg = f"{where}: missing field 'cases' (a list)"
        raise FormatError(msg)
    return {k: v for k, v in doc.items() if k != "cases"}, [case_from_dict(c) for c in cases]


def read_file(path: Path, *, verify: bool = True) -> tuple[dict, list[GoldenCase]]:
    """Read one golden file, checking its sha256 against the manifest when ``verify``."""
    path = Path(path)
    text = read_text(path)
    if verify:
        man = read_manifest(path.parent)
        entry = man.get("files", {}).get(path.name)
        if entry is None:
            msg = f"{path.name} is not listed in {path.parent / 'MANIFEST.json'}"
            raise FormatError(msg)
        got = sha256_text(text)
        if got != entry["sha256"]:  # read_manifest checked that every entry has one
            msg = (
                f"{path.name}: sha256 {got[:12]}... does not match the manifest "
                              f"({entry['sha256'][:12]}...); the file was edited or corrupted. "
                              "Regenerate with "
                              "`python -m adaptive_ref.conformance.generate --force`"
            )
            raise FormatError(msg)
    return parse(text, str(path.name))


_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.json\.gz")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_manifest(directory: Path = GOLDEN_DIR) -> dict:
    """The manifest of ``directory``, validated: ``files`` maps plain file names (no path
    separators, no ``..``: a manifest cannot point outside its directory) ending in
    ``.json.gz`` to objects with a 64-hex-digit ``sha256``."""
    p = Path(directory) / "MANIFEST.json"
    if not p.exists():
        msg = (
            f"{p} does not exist; generate the goldens with "
                          f"`python -m adaptive_ref.conformance.generate`"
        )
        raise FormatError(msg)
    try:
        man = json.loads(read_text(p))
    except json.JSONDecodeError as err:
        msg = f"{p}: not valid JSON ({err})"
        raise FormatError(msg) from None
    files = man.get("files") if isinstance(man, dict) else None
    if not isinstance(files, dict):
        msg = f"{p}: the manifest must be a JSON object with a 'files' object"
        raise FormatError(msg)
    for name, entry in files.items():
        if not _FILE_NAME.fullmatch(name) or ".." in name:
            msg = (f"{p}: file name {name!r:.80} is not accepted; a manifest lists plain "
                   f"'<name>.json.gz' names in its own directory (no '/', '\\' or '..')")
            raise FormatError(msg)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not _SHA256.fullmatch(entry["sha256"]):
            msg = f"{p}: files[{name!r}] needs a 'sha256' of 64 lowercase hex digits"
            raise FormatError(msg)
    return man


def load_cases(optimizer: str | None = None, *, directory: Path = GOLDEN_DIR,
               dtype: str | None = None, verify: bool = True) -> list[GoldenCase]:
    """All golden cases (of ``optimizer`` / ``dtype`` if given), checksums verified."""
    man = read_manifest(directory)
    out = []
    for fname, entry in sorted(man.get("files", {}).items()):
        if optimizer is not None and entry.get("optimizer") != optimizer:
            continue
        _, cases = read_file(Path(directory) / fname, verify=verify)
        out.extend(c for c in cases if dtype is None or c.dtype == dtype)
    if optimizer is not None and not out:
        known = sorted({e.get("optimizer") for e in man.get("files", {}).values()})
        msg = (
            f"no golden cases for optimizer {optimizer!r}; goldens exist for "
                       f"{', '.join(known)}"
        )
        raise KeyError(msg)
    return out
