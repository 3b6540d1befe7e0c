"""The exact trajectory of a golden case: the values every golden file stores.

A case's inputs are exact binary numbers (the starting values and replayed gradients, already
rounded to the case dtype; the hyperparameters and lr schedule as their float64 values). The
*exact trajectory* applies the optimizer's update to those numbers in real arithmetic; the
golden stores each value of it rounded once to float64 (round to nearest, ties to even), so a
stored value is within half a float64 ULP of the exact one by construction
(docs/conformance-format.md, "What exact means").

Real arithmetic is emulated with :mod:`mpmath` at two working precisions (:data:`DIGITS`, 40 and
60 significant decimal digits). The update itself is the independent per-element transcription
of :mod:`adaptive_ref.conformance.fidelity` (``_init_fields``, ``_step``, ``_nadam_shared``,
``_grad_mp``), which does not call the reference; a per-tensor optimizer (LAMB, LARS:
``fidelity.TENSOR_STEPS``) steps a whole parameter at once, its norms exact, and a whole-model
optimizer (Prodigy: ``fidelity.TREE_STEPS``) every parameter at once, its sums exact. A value is
*certified* when both precisions
round to the same float64: the 40-digit result then differs from the real one by far less than
its distance to the nearest rounding boundary. :func:`certified` reports every element where
the two disagree (none in the committed catalogue).

Closed-loop cases: at step ``t`` the gradient is the objective's gradient evaluated exactly at
the exact iterate, then rounded to the case dtype (what the harness hands an implementation is
the gradient at *its* iterate, rounded to the case dtype); the update then proceeds exactly.
"""

from __future__ import annotations

import dataclasses
import os

import mpmath
import numpy as np

from . import fidelity
from .format import is_scalar_field
from .rng import active_rows

__all__ = ["DIGITS", "trajectory", "certified", "expected_values", "build_all", "pool_map"]

DIGITS = (40, 60)

# sparse optimizers are their dense counterparts restricted to the rows present at each step
DENSE_OF = {"lazy_adam": "adam", "sparse_adagrad": "adagrad"}
_BITS = {"float64": 53, "float32": 24}


def _round_to(x: mpmath.mpf, dtype: str) -> mpmath.mpf:
    """``x`` rounded to the nearest ``dtype`` number (ties to even), as an exact mpf."""
    with mpmath.workprec(_BITS[dtype]):
        return +x


def _absmax(values) -> float:
    return max((abs(float(v)) for v in values), default=0.0)


def trajectory(case, digits: int) -> dict:
    """The exact trajectory of ``case`` at ``digits`` significant digits.

    Returns ``{step: {"params": {name: [float, ...]}, "state": {name: {field: value}},
    "scale": {...}}}`` at the checkpoints, every float the working-precision value rounded to
    float64; ``scale`` holds each array's largest magnitude from step 0 to that step (the unit
    of the normwise ULP error, see :mod:`adaptive_ref.conformance.compare`).
    """
    with mpmath.workdps(digits):
        opt = DENSE_OF.get(case.optimizer, case.optimizer)
        elems, shared, hps = {}, {}, {}
        for p in case.params:
            hp = fidelity.case_hparams(case, p.name)
            hps[p.name] = hp
            flat = np.asarray(p.init, dtype=np.float64).reshape(-1)
            elems[p.name] = fidelity.tensor_of(opt, hp, [
                fidelity._Elem(mpmath.mpf(float(x)), fidelity._init_fields(opt, hp))
                for x in flat])
            shared[p.name] = {}
        scale = {"params": {k: _absmax(e.p for e in v) for k, v in elems.items()},
                 "state": {k: {f: _absmax(x) for f, x in _fields(v)} for k, v in elems.items()}}
        out = {}
        cps = set(case.checkpoints)
        for t in range(1, case.steps + 1):
            if case.kind == "replay":
                grads = {k: [mpmath.mpf(float(x)) for x in np.asarray(v).reshape(-1)]
                         for k, v in case.gradients(t).items()}
            else:
                exact = fidelity._grad_mp(case.objective,
                                          {k: [e.p for e in v] for k, v in elems.items()})
                grads = {k: [_round_to(x, case.dtype) for x in v] for k, v in exact.items()}
            if opt in fidelity.TREE_STEPS:  # a whole-model step sees every parameter at once
                hp = hps[case.params[0].name]
                lr = case.lr_at(t) if case.lr_schedule is not None else hp["lr"]
                fidelity.TREE_STEPS[opt](elems, grads, t, hp, lr)
            for p in (() if opt in fidelity.TREE_STEPS else case.params):
                hp = hps[p.name]
                lr = case.lr_at(t) if case.lr_schedule is not None else hp["lr"]
                fidelity.shared_scalars(opt, hp, t, shared[p.name], lr)
                if opt in fidelity.TENSOR_STEPS:  # a per-tensor step sees the whole parameter
                    fidelity.TENSOR_STEPS[opt](elems[p.name], grads[p.name], t, hp, lr)
                    continue
                rows = None
                if (p.grad is not None and p.grad.get("row_fraction") is not None
                        and hp.get("absent_rows", "lazy") == "lazy"):
                    rows = set(active_rows(p.grad, p.shape, t).tolist())
                    per_row = int(np.prod(p.shape[1:], dtype=np.int64))
                for i, (e, g) in enumerate(zip(elems[p.name], grads[p.name], strict=True)):
                    if rows is not None and i // per_row not in rows:
                        continue  # a lazy step leaves absent rows untouched
                    fidelity._step(opt, e, g, t, hp, lr, shared[p.name])
            for k, v in elems.items():
                scale["params"][k] = max(scale["params"][k], _absmax(e.p for e in v))
                for f, x in _fields(v):
                    scale["state"][k][f] = max(scale["state"][k].get(f, 0.0), _absmax(x))
            if t in cps:
                out[t] = _snapshot(case, elems, t, scale)
        return out


def _fields(es):
    """``(field, values)`` of a parameter's state: the per-element fields, then (per-tensor
    optimizers) the fields of other shapes, flat in C order."""
    out = [(f, [e.s[f] for e in es]) for f in (es[0].s if es else {})]
    return out + list(getattr(es, "own", {}).items())


def _snapshot(case, elems, t, scale) -> dict:
    params, state = {}, {}
    for p in case.params:
        es = elems[p.name]
        params[p.name] = [float(e.p) for e in es]
        fields = {"count": t}
        for f, xs in _fields(es):
            if is_scalar_field(f):  # one scalar per parameter (NAdam's running product)
                fields[f] = float(xs[0])
            else:
                fields[f] = [float(x) for x in xs]
        state[p.name] = fields
    return {"params": params, "state": state,
            "scale": {"params": dict(scale["params"]),
                      "state": {k: dict(v) for k, v in scale["state"].items()}}}


def _flat_items(snap):
    for k, v in snap["params"].items():
        yield f"params.{k}", v
    for k, fields in snap["state"].items():
        for f, v in fields.items():
            if f != "count":
                yield f"state.{k}.{f}", v


def certified(case) -> tuple[dict, list[str]]:
    """The trajectory at the lower precision and the elements where the two disagree."""
    lo, hi = (trajectory(case, d) for d in DIGITS)
    bad = []
    for t in lo:
        a, b = dict(_flat_items(lo[t])), dict(_flat_items(hi[t]))
        for what, va in a.items():
            va, vb = np.atleast_1d(va), np.atleast_1d(b[what])
            for i in np.nonzero(va != vb)[0]:
                bad.append(f"{case.id}: step {t} {what}[{i}]: {va[i]!r} ({DIGITS[0]} digits) "
                           f"vs {vb[i]!r} ({DIGITS[1]} digits)")
    return lo, bad


def expected_values(case) -> tuple[dict, list[str]]:
    """``case.expected`` in the golden's layout (float64 arrays), and the certification
    failures (an empty list when every value is certified)."""
    traj, bad = certified(case)
    shapes = {p.name: p.shape for p in case.params}
    own = {p.name: dict(p.state_shapes or {}) for p in case.params}
    out = {}
    for t, snap in traj.items():
        state = {}
        for k, fields in snap["state"].items():
            state[k] = {f: (v if f == "count" or is_scalar_field(f)
                            else np.asarray(v, dtype=np.float64).reshape(
                                own[k].get(f, shapes[k])))
                        for f, v in fields.items()}
        out[t] = {"params": {k: np.asarray(v, dtype=np.float64).reshape(shapes[k])
                             for k, v in snap["params"].items()},
                  "state": state, "scale": snap["scale"]}
    return out, bad


def _one(case):
    expected, bad = expected_values(case)
    return dataclasses.replace(case, expected=expected), bad


def pool_map(fn, items, *, processes: int | None = None, progress=None) -> list:
    """``[fn(x) for x in items]`` in a pool of ``processes`` (default: up to 2) processes."""
    processes = processes or min(2, os.cpu_count() or 1)
    out = []
    if processes <= 1 or len(items) <= 1:
        results = map(fn, items)
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(processes)
        results = pool.imap(fn, items, chunksize=1)
    try:
        for i, r in enumerate(results):
            out.append(r)
            if progress:
                progress(i + 1, len(items), getattr(items[i], "id", str(i)))
    finally:
        if processes > 1 and len(items) > 1:
            pool.close()
            pool.join()
    return out


def build_all(cases, *, processes: int | None = None, progress=None) -> tuple[list, list[str]]:
    """Every case with its exact expected values (in a process pool); and all certification
    failures."""
    results = pool_map(_one, list(cases), processes=processes, progress=progress)
    return [c for c, _ in results], [b for _, bad in results for b in bad]
