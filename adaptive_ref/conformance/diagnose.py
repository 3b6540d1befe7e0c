"""Convention diagnosis: which settings of the reference does an implementation follow?

:func:`diagnose` runs an implementation (an :class:`~adaptive_ref.conformance.adapters.Adapter`)
on short *probe* cases that pass it only the common numeric hyperparameters (:data:`PASSED`: lr,
betas, alpha, momentum, dampening, weight decay), so that its own conventions act, and searches
the reference's settings for the trajectory it produced:

* the registry's convention knobs (``HParam(knob=True)``: every choice, both booleans);
* the numeric settings the implementation does not receive (eps, eps_root, momentum_decay,
  ...): the reference's default, every profile's value, the value the adapter declares
  (``Adapter.declared_settings``) and, when none of those fits, a fit on a log scale snapped to
  a round number;
* "ignores it": weight decay, momentum and dampening set to 0 although the probe passes them.

The search is coordinate-wise: it starts from every profile (with the declared settings laid
over it) and repeatedly takes the one single change that brings the trajectories closest
(fewer arrays that differ first, then a mean relative difference over every probe, array and
step at least 10 % smaller), then fits the numbers and searches the knobs again. Knobs that act only
together with another setting (:data:`adaptive_ref.conformance.cases.KNOB_CONTEXT`, e.g.
Nesterov needs momentum) get a probe that passes that setting.

The answer (:class:`Diagnosis`) is one of: ``equals profile X``; ``equals the reference with
settings {...}, which no profile has``; or ``matches nothing`` with the nearest settings, the
first step and array where the trajectories part, and what the difference looks like.
:func:`suspect` applies the same idea to one failing golden case (the conformance report names
the knob it finds). docs/conformance.md, "Diagnosing an implementation".
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from adaptive_ref._spec import REQUIRED

from .cases import KNOB_CONTEXT, _replay_params, _schedule, case_lr, is_sparse
from .format import GoldenCase

__all__ = ["diagnose", "Diagnosis", "suspect", "probe_cases", "reference_trajectory",
           "PASSED", "EQUAL_TOL", "add_diagnose_parser", "run_diagnose"]

# Hyperparameters a user passes to any library's optimizer; the probes pass exactly these (the
# implementation's own defaults decide everything else).
PASSED = ("lr", "beta1", "beta2", "alpha", "momentum", "dampening", "weight_decay")
# Passed hyperparameters an implementation may silently ignore (the search tries 0 for them).
IGNORABLE = ("weight_decay", "momentum", "dampening")
# Two float64 trajectories "equal" when every displacement x_t - x_0 agrees to this relative
# size. Measured on the probes: implementations that follow a profile differ from the reference
# by at most 1.1e-11 for torch and optax (optax RAdam: rho_t near its threshold loses ~3 digits
# to cancellation; the others <= 6e-13) and 4.6e-11 for Keras 3 on JAX (SGD), while every
# convention knob of every catalogued optimizer moves the trajectory by at least 1.8e-7
# (Adagrad's eps placement under optax's accumulator 0.1; checked by tests/test_diagnose.py).
# 1e-9 sits 20x above the first and 180x below the second.
EQUAL_TOL = 1e-9
STEPS = 30  # long enough for bias correction to fade and RAdam to rectify (step 6 at b2=0.999)
PROBE_WEIGHT_DECAY = 1e-2
GIVEN = "<given>"  # search value of a passed hyperparameter: what the probe passes
_FIT_DECADES = np.arange(-14.0, 10.5, 1.0)  # log10 grid of the numeric fit


# ---- probes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    name: str
    case: GoldenCase  # hparams: only the passed ones (and the optimizer's fixed settings)


def probe_cases(spec, dtype: str = "float64") -> list[Probe]:
    """Short replay cases for ``spec``: plain; weight decay with an lr schedule; and one per
    hyperparameter context of :data:`KNOB_CONTEXT` that a user can pass (with a schedule).

    Parameters a (O(1) gradients), b (O(1e-6): eps placement dominates) and c (O(1e6), zeros,
    mixed signs) of :data:`adaptive_ref.conformance.cases.REPLAY_PARAMS`, 30 steps, every step a
    checkpoint."""
    lr = case_lr(spec)
    names = set(spec.hparam_names)
    base = {k: v for k, v in spec.defaults().items() if k in PASSED}
    base.update(lr=lr, **spec.fixed)
    if "weight_decay" in names:
        base["weight_decay"] = 0.0
    variants = [("plain", {}, False)]
    if "weight_decay" in names:
        wd = 0.1 if spec.name == "adamw" else PROBE_WEIGHT_DECAY
        variants.append((f"weight_decay={wd:g}+schedule", {"weight_decay": wd}, True))
    for (opt, _knob), ctx in KNOB_CONTEXT.items():
        over = {k: v for k, v in ctx.items() if not k.startswith("_")}
        if opt != spec.name or not set(over) <= set(PASSED) & names:
            continue  # a context the user cannot pass (e.g. amsgrad) is searched, not probed
        if any(v == over and s for _, v, s in variants):
            continue
        label = "+".join(f"{k}={v:g}" for k, v in over.items()) + "+schedule"
        variants.append((label, over, True))
    out = []
    for label, over, sched in variants:
        case = GoldenCase(
            id=f"{spec.name}[probe,{dtype},{label}]", optimizer=spec.name, profile="probe",
            dtype=dtype, kind="replay", hparams={**base, **over}, overrides=over, steps=STEPS,
            checkpoints=tuple(range(1, STEPS + 1)), params=_replay_params(dtype, "abc", lr),
            lr_schedule=_schedule(lr, STEPS) if sched else None, tags=("probe",))
        out.append(Probe(label, case))
    return out


# ---- trajectories and their distance -------------------------------------------------------
def reference_trajectory(spec, case, settings: dict) -> dict[int, dict[str, np.ndarray]]:
    """Params of the float64 NumPy reference under the full ``settings`` at the checkpoints
    (a replay or closed-loop ``case``; a scheduled lr overrides ``settings['lr']``)."""
    if (spec.elementwise and case.kind == "replay" and not any(p.hparams for p in case.params)
            and len(case.params) > 1):
        return _flat_trajectory(spec, case, settings)
    params = {k: v.astype(np.float64) for k, v in case.init_params().items()}
    kws = {k: {**settings, **{n: v for n, v in p.hparams.items()}}
           for k in params for p in case.params if p.name == k}
    states = {k: spec.init(params[k], **spec.init_kwargs(kws[k])) for k in params}
    cps, out = set(case.checkpoints), {}
    with np.errstate(all="ignore"):
        for t in range(1, case.steps + 1):
            grads = (case.gradients(t) if case.kind == "replay"
                     else case.gradients(t, params))
            lr = case.lr_at(t)
            for k, g in grads.items():
                kw = kws[k] if lr is None else {**kws[k], "lr": lr}
                params[k], states[k] = spec.step(params[k], np.asarray(g, np.float64),
                                                 states[k], **kw)
            if t in cps:
                out[t] = {k: np.asarray(v, dtype=np.float64).copy() for k, v in params.items()}
    return out


def _flat_trajectory(spec, case, settings: dict) -> dict[int, dict[str, np.ndarray]]:
    """reference_trajectory for an elementwise optimizer whose parameters share their settings:
    one step call on the concatenated parameters per step (the same arithmetic, 3x faster)."""
    init = case.init_params()
    names = list(init)
    shapes = [init[k].shape for k in names]
    cuts = np.cumsum([init[k].size for k in names])[:-1]
    x = np.concatenate([init[k].astype(np.float64).ravel() for k in names])
    state = spec.init(x, **spec.init_kwargs(settings))
    cps, out = set(case.checkpoints), {}
    with np.errstate(all="ignore"):
        for t in range(1, case.steps + 1):
            grads = case.gradients(t)
            g = np.concatenate([np.asarray(grads[k], np.float64).ravel() for k in names])
            lr = case.lr_at(t)
            kw = settings if lr is None else {**settings, "lr": lr}
            x, state = spec.step(x, g, state, **kw)
            if t in cps:
                out[t] = {k: np.asarray(a).reshape(sh).copy() for k, a, sh in
                          zip(names, np.split(np.asarray(x, dtype=np.float64), cuts), shapes,
                              strict=True)}
    return out


def _rel_table(case, got, want) -> np.ndarray:
    """rel[step index, param index]: ||dG - dW||_inf / max(||dG||, ||dW||, largest ||dW|| so
    far), with d = x_t - x_0; 2 (the largest value) where anything is not finite."""
    x0 = case.init_params()
    names = [p.name for p in case.params]
    out = np.zeros((len(case.checkpoints), len(names)))
    for j, k in enumerate(names):
        peak = 0.0
        for i, t in enumerate(case.checkpoints):
            if t not in got:
                out[i, j] = 2.0
                continue
            g = np.asarray(got[t][k], dtype=np.float64).reshape(x0[k].shape) - x0[k]
            w = np.asarray(want[t][k], dtype=np.float64) - x0[k]
            if not (np.all(np.isfinite(g)) and np.all(np.isfinite(w))):
                out[i, j] = 2.0
                continue
            ng, nw = (float(np.max(np.abs(a))) if a.size else 0.0 for a in (g, w))
            peak = max(peak, nw)
            den = max(ng, nw, peak)
            d = float(np.max(np.abs(g - w))) if g.size else 0.0
            out[i, j] = 0.0 if d == 0 else min(2.0, d / den) if den else 2.0
    return out


@dataclass
class _Eval:
    unequal: int  # arrays (probe x parameter) that differ: the search's first objective
    score: float  # mean relative difference: its second
    max: float  # largest relative difference (the verdict's measure)
    tables: list  # one rel table per probe


# ---- the search space ------------------------------------------------------------------------
def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _numeric(h) -> bool:
    return h.kind == "real"


def _space(spec, declared: dict) -> dict[str, list]:
    """Candidate values of every searched name (knobs, numerics the implementation keeps to
    itself, passed hyperparameters it might ignore)."""
    out, ignorable = {}, {}
    for h in spec.hparams:
        if h.name in spec.fixed or h.name == "lr":
            continue
        if h.name in PASSED:
            if h.name in IGNORABLE:
                ignorable[h.name] = [GIVEN, 0.0]
            continue
        if h.kind == "bool":
            out[h.name] = [False, True]
        elif h.kind == "choice":
            out[h.name] = list(h.choices)
        else:
            vals = [float(h.default)]
            for prof in spec.profiles.values():
                v = prof.settings.get(h.name)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    vals.append(float(v))
            if h.name in declared:
                vals.append(float(declared[h.name]))
            if h.contains(0.0):
                vals.append(0.0)
            out[h.name] = sorted(set(vals))
    # an implementation may put its eps where the reference has another guard (eps inside the
    # root is the reference's eps_root): every eps-like name tries every eps-like value
    guards = [k for k in out if k.startswith("eps") and spec.hparam(k).kind == "real"]
    pooled = sorted({v for k in guards for v in out[k]})
    for k in guards:
        out[k] = [v for v in pooled if spec.hparam(k).contains(v)]
    knobs = {k: v for k, v in out.items() if spec.hparam(k).kind != "real"}
    return {**knobs, **{k: v for k, v in out.items() if k not in knobs}, **ignorable}


def _point(spec, settings: dict, space: dict) -> dict:
    """The searched names' values in ``settings`` (passed names: GIVEN)."""
    out = {}
    for name in space:
        if name in PASSED:
            out[name] = GIVEN
        else:
            v = settings.get(name, spec.defaults().get(name))
            out[name] = float(v) if isinstance(v, int) and not isinstance(v, bool) else v
    return out


def _full(spec, point: dict, case) -> dict:
    """Full reference settings for one probe: defaults, the point, the probe's passed values."""
    out = spec.defaults()
    out.update({k: v for k, v in point.items() if v is not GIVEN})
    for k, v in case.hparams.items():
        if point.get(k, GIVEN) is GIVEN:
            out[k] = v
    return out


def _profile_point(spec, name: str, space: dict) -> dict:
    settings = {k: v for k, v in spec.profiles[name].settings.items() if v is not REQUIRED}
    return _point(spec, settings, space)


def _changes(a: dict, b: dict) -> dict:
    return {k: b[k] for k in b if not _same(a.get(k), b[k])}


def _show(name: str, value) -> str:
    if name in IGNORABLE and value == 0.0:
        return f"{name}=0 (ignores the {name} it is given)"
    if isinstance(value, float):
        return f"{name}={value:.6g}"
    return f"{name}={value!r}"


def show_settings(changes: dict) -> str:
    return "{" + ", ".join(_show(k, v) for k, v in changes.items()) + "}"


# ---- the diagnosis ---------------------------------------------------------------------------
@dataclass
class Divergence:
    probe: str
    step: int
    array: str
    rel: float


@dataclass
class Diagnosis:
    """What :func:`diagnose` found. ``verdict``: ``"profile"`` (``profiles`` reproduce the
    implementation), ``"settings"`` (``settings`` do, no profile does) or ``"nothing"``
    (``settings`` are the nearest found; ``divergence`` and ``description`` say how they
    differ)."""

    optimizer: str
    impl: str
    verdict: str
    profiles: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    nearest_profile: str | None = None
    changes: dict = field(default_factory=dict)  # settings minus nearest_profile's
    distance: float = math.inf  # largest relative difference on the probes
    divergence: Divergence | None = None
    description: list[str] = field(default_factory=list)
    probes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # probes the implementation cannot run, with the reason
    evaluations: int = 0
    seconds: float = 0.0
    unexercised: tuple[str, ...] = ()  # settings in which the matching profiles differ

    def summary(self) -> str:
        head = f"{self.optimizer} [{self.impl}]: "
        if self.verdict == "profile":
            return head + f"equals profile {' and '.join(self.profiles)}"
        if self.verdict == "settings":
            return head + (f"equals the reference with settings {show_settings(self.changes)} "
                           f"(profile {self.nearest_profile} changed), which no profile has")
        near = f"profile {self.nearest_profile}" + (
            f" with {show_settings(self.changes)}" if self.changes else "")
        return head + (f"matches nothing; nearest: {near}, largest relative difference "
                       f"{self.distance:.3g}")

    def report(self) -> str:
        lines = [self.summary()]
        if self.verdict != "nothing":
            lines.append(f"  largest relative difference {self.distance:.2g} "
                         f"(equal: <= {EQUAL_TOL:g})")
        if self.verdict == "profile" and len(self.profiles) > 1:
            lines.append("  (" + (f"the profiles differ only in {', '.join(self.unexercised)}, "
                                  "which the probes do not exercise" if self.unexercised else
                                  "the profiles share these conventions") + ")")
        if self.divergence is not None:
            d = self.divergence
            lines.append(f"  first divergence: probe {d.probe}, step {d.step}, params.{d.array}"
                         f" (relative {d.rel:.3g})")
        lines += [f"  {x}" for x in self.description]
        lines.append(f"  probes: {', '.join(self.probes)}"
                     + (f"; skipped: {', '.join(self.skipped)}" if self.skipped else ""))
        lines.append(f"  {self.evaluations} reference runs in {self.seconds:.1f} s")
        return "\n".join(lines)


class _Search:
    def __init__(self, spec, probes, impl_runs, space):
        self.spec, self.probes, self.impl, self.space = spec, probes, impl_runs, space
        self.cache: dict = {}

    def key(self, point):
        return tuple((k, point[k]) for k in sorted(point))

    def eval(self, point) -> _Eval:
        k = self.key(point)
        if k not in self.cache:
            tables = []
            for probe in self.probes:
                try:
                    ref = reference_trajectory(self.spec, probe.case,
                                               _full(self.spec, point, probe.case))
                except (ValueError, TypeError):  # settings the reference rejects together
                    self.cache[k] = _Eval(10**9, math.inf, math.inf, [])
                    return self.cache[k]
                tables.append(_rel_table(probe.case, self.impl[probe.name], ref))
            allv = np.concatenate([t.ravel() for t in tables])
            unequal = sum(int(np.sum(np.max(t, axis=0) > EQUAL_TOL)) for t in tables)
            self.cache[k] = _Eval(unequal, float(np.mean(allv)), float(np.max(allv)), tables)
        return self.cache[k]

    def better(self, a: _Eval, b: _Eval) -> bool:
        """a is clearly closer than b: fewer arrays differ, or as many and the mean difference
        is at least 10 % smaller (so a change never spoils a probe that already matched, and
        the nearest settings of a non-match hold no change that only shaves the difference)."""
        if a.unequal != b.unequal:
            return a.unequal < b.unequal
        return a.score < 0.9 * b.score and b.score - a.score > EQUAL_TOL * 1e-3

    def coordinate(self, point, deadline):
        """Steepest descent over single changes: each round tries every other value of every
        searched name and keeps the one change that brings the trajectories closest."""
        cur, cur_e = dict(point), self.eval(point)
        for _ in range(len(self.space) + 2):
            best, best_e = None, cur_e
            for name, values in self.space.items():
                for v in values:
                    if _same(v, cur[name]):
                        continue
                    e = self.eval({**cur, name: v})
                    if self.better(e, best_e):
                        best, best_e = {**cur, name: v}, e
            if best is None:
                break
            cur, cur_e = best, best_e
            if cur_e.max <= EQUAL_TOL or time.perf_counter() > deadline:
                break
        return cur, cur_e

    def fit(self, point, name):
        """Best value of the numeric ``name`` on a log10 grid, refined by golden section and
        snapped to the roundest value that is as good."""
        cur_e = self.eval(point)
        grid = [(x, self.eval({**point, name: float(10.0 ** x)})) for x in _FIT_DECADES]
        i = min(range(len(grid)), key=lambda j: grid[j][1].score)
        if not self.better(grid[i][1], cur_e):
            return point, cur_e
        lo = grid[max(i - 1, 0)][0]
        hi = grid[min(i + 1, len(grid) - 1)][0]
        g = (math.sqrt(5) - 1) / 2
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa = self.eval({**point, name: float(10.0 ** a)}).score
        fb = self.eval({**point, name: float(10.0 ** b)}).score
        for _ in range(30):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - g * (hi - lo)
                fa = self.eval({**point, name: float(10.0 ** a)}).score
            else:
                lo, a, fa = a, b, fb
                b = lo + g * (hi - lo)
                fb = self.eval({**point, name: float(10.0 ** b)}).score
        x = float(10.0 ** ((lo + hi) / 2))
        best_e = self.eval({**point, name: x})
        for digits in (1, 2, 3):
            r = float(f"{x:.{digits - 1}e}")
            e = self.eval({**point, name: r})
            if e.max <= EQUAL_TOL or e.score <= best_e.score * (1 + 1e-9):
                x, best_e = r, e
                break
        if self.better(best_e, cur_e):
            return {**point, name: x}, best_e
        return point, cur_e


def _run_impl(adapter, probes):
    runs, used, skipped = {}, [], []
    for probe in probes:
        why = adapter.supports(probe.case)
        if why:
            skipped.append(f"{probe.name} ({why})")
            continue
        try:
            traj = adapter.run(probe.case)
        except KeyError as err:
            msg = (f"{adapter.name} failed on the {probe.name} probe of {probe.case.optimizer}: "
                   f"KeyError {err}. A probe names only {', '.join(sorted(probe.case.hparams))}; "
                   "the adapter must leave every other setting at its library's default "
                   "(adapters/base.py: Given, present)")
            raise RuntimeError(msg) from err
        runs[probe.name] = {t: {k: np.asarray(v) for k, v in snap[0].items()}
                            for t, snap in traj.items()}
        used.append(probe)
    return runs, used, skipped


# Optimizers in the catalogue that the diagnosis does not probe yet, with the reason (open work)
NOT_PROBED = {
    "adafactor": "its adapters take complete settings only (a probe names a few and leaves the "
                 "rest at the library's defaults), and beta2_precision, mean_precision and "
                 "relative_step act below the probes' resolution at the probes' lr",
}


def probe_limit(spec) -> str | None:
    """Why the probes (parameters a, b, c: a scalar, a vector and a matrix, each stepped on its
    own, on the catalogue's gradient streams) cannot run ``spec``; None where they can."""
    from .cases import OWN_CASES

    if spec.coupling == "tree":
        return "a whole-model optimizer: the probes step each parameter on its own"
    if spec.param_ndim is not None:
        return f"defined for {spec.param_ndim}-D parameters only: the probes include a scalar"
    if spec.name in NOT_PROBED:
        return NOT_PROBED[spec.name]
    if spec.name in OWN_CASES:
        return ("its goldens need gradient streams screened for well-posedness "
                "(cases.OWN_CASES); the probes' streams are not")
    return None


def diagnose(adapter, optimizer: str, *, time_limit: float = 30.0) -> Diagnosis:
    """Find the reference settings that reproduce ``adapter``'s ``optimizer`` (module docstring).

    ``time_limit`` (seconds) bounds the search; the best settings found by then are reported.
    """
    from adaptive_ref.registry import get

    t0 = time.perf_counter()
    spec = get(optimizer)
    if not spec.profiles:
        msg = f"{optimizer} has no framework profile to diagnose against"
        raise ValueError(msg)
    if is_sparse(spec):
        msg = f"{optimizer} takes row-sparse gradients; the diagnosis probes dense optimizers only"
        raise ValueError(msg)
    why = probe_limit(spec)
    if why:
        msg = f"{optimizer}: the convention diagnosis cannot probe it yet ({why})"
        raise ValueError(msg)
    miss = adapter.missing()
    if miss:
        msg = f"implementation {adapter.name} is not available: {miss}"
        raise RuntimeError(msg)
    declared = dict(adapter.declared_settings(optimizer) or {})
    for k in declared:
        try:
            spec.hparam(k)
        except KeyError as err:
            msg = f"{adapter.name}.declared_settings({optimizer!r}): {err.args[0]}"
            raise KeyError(msg) from None
    probes = probe_cases(spec)
    runs, probes, skipped = _run_impl(adapter, probes)
    if not probes:
        msg = f"{adapter.name} runs none of the probes of {optimizer}: {'; '.join(skipped)}"
        raise ValueError(msg)
    space = _space(spec, declared)
    search = _Search(spec, probes, runs, space)
    deadline = t0 + time_limit
    res = Diagnosis(optimizer, adapter.name, "nothing", probes=tuple(p.name for p in probes),
                    skipped=tuple(skipped))
    prof_points = {n: _profile_point(spec, n, space) for n in spec.profiles}
    exact = [n for n, pt in prof_points.items() if search.eval(pt).max <= EQUAL_TOL]
    if exact:
        pt = prof_points[exact[0]]
        res.verdict, res.profiles, res.settings = "profile", tuple(exact), pt
        res.nearest_profile, res.distance = exact[0], search.eval(pt).max
        res.unexercised = tuple(sorted({k for n in exact[1:]
                                        for k in _changes(pt, prof_points[n])}))
    else:
        starts = [{**pt, **{k: float(v) for k, v in declared.items() if k in pt}}
                  for pt in prof_points.values()]
        best, best_e = None, None
        for start in starts:
            pt, e = search.coordinate(start, deadline)
            for _ in range(2):  # numeric fits, then the knobs again
                if e.max <= EQUAL_TOL or time.perf_counter() > deadline:
                    break
                fitted = pt
                for name in [n for n in space if n not in PASSED and
                             _numeric(spec.hparam(n))]:
                    if time.perf_counter() > deadline:
                        break
                    fitted, e = search.fit(fitted, name)
                if fitted is pt:
                    break
                pt, e = search.coordinate(fitted, deadline)
            if best is None or search.better(e, best_e):
                best, best_e = pt, e
            if best_e.max <= EQUAL_TOL or time.perf_counter() > deadline:
                break
        near = min(prof_points, key=lambda n: len(_changes(prof_points[n], best)))
        if best_e.max <= EQUAL_TOL:  # drop changes the match does not need
            for k in _changes(prof_points[near], best):
                trial = {**best, k: prof_points[near][k]}
                if search.eval(trial).max <= EQUAL_TOL:
                    best, best_e = trial, search.eval(trial)
        res.settings, res.distance, res.nearest_profile = best, best_e.max, near
        res.changes = _changes(prof_points[near], best)
        res.verdict = "settings" if best_e.max <= EQUAL_TOL else "nothing"
        if res.verdict == "nothing":
            res.divergence, res.description = _describe(probes, best_e)
            if res.divergence is not None:
                res.description.append(_sign_pattern(spec, probes, runs, best,
                                                     res.divergence))
        if time.perf_counter() > deadline:
            res.description.append(f"(search stopped at the {time_limit:g} s limit)")
    res.evaluations, res.seconds = len(search.cache), time.perf_counter() - t0
    return res


def _scale_word(s: float) -> str:
    return f"~{s:g}"


def _describe(probes, e: _Eval) -> tuple[Divergence | None, list[str]]:
    """The first divergence and what the difference looks like (size, per gradient
    magnitude, per probe)."""
    first = None
    for probe, table in zip(probes, e.tables, strict=True):
        over = np.argwhere(table > EQUAL_TOL)
        if over.size:
            i, j = over[0]
            step = probe.case.checkpoints[i]
            if first is None or step < first.step:
                first = Divergence(probe.name, step, probe.case.params[j].name,
                                   float(table[i, j]))
    lines = [f"largest relative difference {e.max:.3g}; mean {e.score:.3g}"]
    params = probes[0].case.params
    per = {p.name: max(float(np.max(t[:, j])) for t in e.tables) for j, p in enumerate(params)}
    scale = {p.name: p.grad["scale"] for p in params}
    lines.append("by gradient magnitude: " + ", ".join(
        f"{_scale_word(scale[k])}: {per[k]:.2g}" for k in sorted(per, key=lambda k: scale[k])))
    worst = {p.name: float(np.max(t)) for p, t in zip(probes, e.tables, strict=True)}
    same = [k for k, v in worst.items() if v <= EQUAL_TOL]
    small = min(per, key=lambda k: scale[k])
    large = max(per, key=lambda k: scale[k])
    mid = [k for k in per if k not in (small, large)]
    ref = per[mid[0]] if mid else min(per.values())
    if same:
        pass  # the probes say more than the magnitudes (below)
    elif per[small] > 100 * max(ref, EQUAL_TOL):
        lines.append("  grows as the gradients shrink: the size or placement of eps (or "
                     "another additive guard) differs")
    elif per[large] > 100 * max(ref, EQUAL_TOL):
        lines.append("  grows with the gradient size")
    elif max(per.values()) < 10 * max(min(per.values()), EQUAL_TOL):
        lines.append("  about the same for every gradient magnitude: a scale (lr, bias "
                     "correction, momentum schedule) or the weight decay differs")
    lines.append("by probe: " + ", ".join(f"{k}: {v:.2g}" for k, v in worst.items()))
    if same:
        lines.append(f"  equal on {', '.join(same)}: the difference lies in what the other "
                     f"probes add (weight decay, an lr schedule, momentum)")
    return first, lines


def _sign_pattern(spec, probes, runs, point, div: Divergence) -> str:
    """How the displacements compare at the first divergence: further or shorter, by what
    ratio."""
    (probe,) = [p for p in probes if p.name == div.probe]
    ref = reference_trajectory(spec, probe.case, _full(spec, point, probe.case))
    x0 = probe.case.init_params()[div.array]
    got = np.asarray(runs[div.probe][div.step][div.array], dtype=np.float64).reshape(x0.shape)
    dg, dw = np.ravel(got - x0), np.ravel(ref[div.step][div.array] - x0)
    moving = np.abs(dg - dw) > EQUAL_TOL * np.maximum(np.abs(dw), 1e-300)
    if not np.any(moving):
        return ""
    further = int(np.sum((np.abs(dg) > np.abs(dw)) & moving))
    n = int(np.sum(moving))
    ratio = np.median(dg[moving] / np.where(dw[moving] == 0, np.nan, dw[moving]))
    return (f"at step {div.step}, params.{div.array}: the implementation has moved further than "
            f"the reference in {further} of {n} differing elements (median ratio of "
            f"displacements {ratio:.4g}; 1 = equal, < 1 = shorter steps, < 0 = opposite "
            f"direction)")


# ---- one failing golden case -----------------------------------------------------------------
def suspect(case, result) -> str | None:
    """The convention that explains a failing golden ``case``, or None.

    ``result`` maps checkpoint steps to ``(params, state)`` as an adapter's ``run`` returns it.
    Up to the checkpoint after the first one where the parameters fail, the float64 reference
    is rerun with one setting changed at a time (each knob value, where the setting it needs to
    act is there; eps-like numerics at 0 and at every profile's value; weight decay ignored), and
    each change whose trajectory the implementation matches within the case's own error budget
    (:func:`.compare.compare`, parameters only) is named.
    """
    import dataclasses

    from adaptive_ref._numerics import param_factor_dtype
    from adaptive_ref.registry import REGISTRY

    from .compare import compare

    spec = REGISTRY.get(case.optimizer)
    if spec is None or not case.expected or case.row_sparse():
        return None  # row-sparse cases (lazy updates) are not covered
    own = compare(case, result, explain=False, state=False)
    if not own.failures:
        return None  # only state fields differ: not a convention of the update
    steps = [t for t in case.checkpoints if t in case.expected]
    first = min(f.step for f in own.failures)
    # up to the checkpoint after the first failure: one more point of evidence, still short
    upto = steps[min(steps.index(first) + 1, len(steps) - 1)]
    short = case.truncated(upto)
    found = []
    for name, values in _space(spec, {}).items():
        cur = case.hparams.get(name)
        for v in values:
            if v is GIVEN or _same(v, cur) or (isinstance(cur, int) and v == cur):
                continue
            ctx = KNOB_CONTEXT.get((case.optimizer, name), {})
            if any(not k.startswith("_") and not _same(case.hparams.get(k), c)
                   for k, c in ctx.items()):
                continue  # the knob would not act on this case
            try:  # factor_precision="param" factors in the case dtype, as the golden has them
                with param_factor_dtype(case.dtype):
                    alt = reference_trajectory(spec, short, {**case.hparams, name: v})
            except (ValueError, TypeError):  # a combination the reference rejects
                continue
            expected = {t: {"params": alt[t], "state": {}} for t in short.checkpoints}
            # an alternative may diverge beyond the case dtype (Muon with other Newton-Schulz
            # coefficients): it then just does not pass
            with np.errstate(over="ignore", invalid="ignore"):
                res = compare(dataclasses.replace(short, expected=expected), result,
                              explain=False, state=False)
            if res.status == "pass":
                found.append((res.max_ulp, _show(name, v)))
    if not found:
        return None
    found.sort()
    return (" or ".join(s for _, s in found) + f" (the reference with this one change "
            f"reproduces the implementation within the case's budget up to step {upto}, "
            f"{found[0][0]:.3g} ULP at most; first failure at step {first})")


# ---- command line ----------------------------------------------------------------------------
def add_diagnose_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "diagnose", help="find which reference settings an implementation follows",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", required=True, metavar="NAME",
                   help="implementation (a name from `adaptive-ref conform --list`, or "
                        "module:Class of an adapter)")
    p.add_argument("--optimizer", action="append", required=True, metavar="NAME",
                   help="optimizer(s) to diagnose (repeat or comma-separate)")
    p.add_argument("--time-limit", type=float, default=30.0, metavar="S",
                   help="seconds per optimizer (default 30)")
    p.set_defaults(func=run_diagnose)
    return p


def _adapter(name: str):
    """A shipped or entry-point adapter by name, or the one ``MODULE:ATTR`` names."""
    from .adapters import get_adapter, load_adapter_spec

    if ":" not in name:
        return get_adapter(name)
    adapters = load_adapter_spec(name)
    if len(adapters) != 1:
        msg = f"--impl {name!r} gives {len(adapters)} adapters; diagnose takes one"
        raise ValueError(msg)
    return adapters[0]


def run_diagnose(args) -> int:
    try:
        adapter = _adapter(args.impl)
    except (KeyError, ImportError, AttributeError, ValueError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    status = 0
    for opt in [x.strip() for v in args.optimizer for x in v.split(",") if x.strip()]:
        try:
            res = diagnose(adapter, opt, time_limit=args.time_limit)
        except (KeyError, ValueError, RuntimeError) as err:
            print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
            status = 2
            continue
        print(res.report())
        if res.verdict == "nothing":
            status = max(status, 1)
    return status
