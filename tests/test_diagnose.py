"""The convention diagnosis (adaptive_ref.conformance.diagnose): it names the profile or the
settings an implementation follows, from probes that pass only the common hyperparameters."""

import importlib

import numpy as np
import pytest
from diagnose_impls import (
    DropsWeightDecayAdam,
    EpsInSqrtAdam,
    KerasLikeAdam,
    KerasLikeNadam,
    OffByOneAdam,
)

from adaptive_ref.conformance import diagnose, get_adapter, suspect
from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.cases import KNOB_CONTEXT, _knob_values, in_catalogue, is_sparse
from adaptive_ref.registry import REGISTRY, get

D = importlib.import_module("adaptive_ref.conformance.diagnose")


def _available(name):
    try:
        a = get_adapter(name)
    except KeyError:
        return None, f"no adapter named {name!r} on this branch yet"
    why = a.missing()
    return (None, why) if why else (a, "")


def _assert_identifies(res, optimizer, conventions):
    """A profile with exactly these conventions, if the registry has one; else the settings."""
    spec = get(optimizer)
    owners = [n for n, p in spec.profiles.items()
              if all(p.settings.get(k) == v for k, v in conventions.items())
              and not set(conventions) & set(D.PASSED)]  # ignoring an input is no profile
    if owners:
        assert res.verdict == "profile", res.report()
        assert set(owners) & set(res.profiles), res.report()
    else:
        assert res.verdict == "settings", res.report()
        assert res.changes == conventions, res.report()
        assert "which no profile has" in res.summary()
    assert res.distance <= D.EQUAL_TOL


# ---- the six identifications of issue 9 -----------------------------------------------------
def test_torch_radam_is_profile_torch():
    a, why = _available("torch-forloop")
    if a is None:
        pytest.skip(why)
    res = diagnose(a, "radam")
    assert res.verdict == "profile" and res.profiles == ("torch",), res.report()
    assert "equals profile torch" in res.report()


def test_optax_rmsprop_is_profile_optax():
    a, why = _available("optax-eager")
    if a is None:
        pytest.skip(why)
    res = diagnose(a, "rmsprop")
    # eps inside the root, accumulator starting at 0 (optax initial_scale), lr inside momentum
    assert res.verdict == "profile" and res.profiles == ("optax",), res.report()
    assert "momentum=0.9+schedule" in res.probes  # the probe that exercises lr_placement


def test_adam_with_eps_inside_the_root():
    res = diagnose(EpsInSqrtAdam(), "adam")
    _assert_identifies(res, "adam", {"eps": 0.0, "eps_root": 1e-8})
    assert "eps=0, eps_root=1e-08" in res.summary()


def test_adam_that_drops_its_weight_decay():
    res = diagnose(DropsWeightDecayAdam(), "adam")
    _assert_identifies(res, "adam", {"weight_decay": 0.0})
    assert "ignores the weight_decay it is given" in res.summary()


def _silent(cls):
    """The same implementation, declaring nothing (eps must then come from the numeric fit)."""
    return type(f"Silent{cls.__name__}", (cls,), {"declared_settings": lambda self, o: {}})()


@pytest.mark.parametrize("declares", [True, False])
def test_keras_like_adam(declares):
    a = KerasLikeAdam() if declares else _silent(KerasLikeAdam)
    res = diagnose(a, "adam")
    _assert_identifies(res, "adam", {"eps_placement": "hat", "weight_decay_mode": "decoupled",
                                     "eps": 1e-7})


@pytest.mark.parametrize("declares", [True, False])
def test_keras_like_nadam_psi_one_is_found_without_being_declared(declares):
    a = KerasLikeNadam() if declares else _silent(KerasLikeNadam)
    assert "momentum_decay" not in a.declared_settings("nadam")  # at most eps is declared
    res = diagnose(a, "nadam")
    _assert_identifies(res, "nadam", {"weight_decay_mode": "decoupled", "eps": 1e-7,
                                      "momentum_decay": 1.0})


@pytest.mark.parametrize("optimizer", ["adam", "nadam"])
def test_real_keras_is_profile_keras(optimizer):
    a, why = _available("keras-jax")
    if a is None:
        pytest.skip(why)
    res = diagnose(a, optimizer)
    assert res.verdict == "profile" and "keras" in res.profiles, res.report()


def _catalogued():
    return [s.name for s in REGISTRY.values() if in_catalogue(s)[0] and not is_sparse(s)
            and D.probe_limit(s) is None]


def test_optimizers_the_probes_cannot_run_are_refused_with_the_reason():
    for name in ("muon", "soap", "prodigy", "dadapt_adamw"):
        from adaptive_ref.conformance.adapters.reference import ReferenceAdapter

        with pytest.raises(ValueError, match="cannot probe it yet"):
            D.diagnose(ReferenceAdapter(), name)


# Optimizers whose float64 rounding alone exceeds EQUAL_TOL on the probes, with the measurement:
# optax's schedule_free_sgd forms y through x = (y - (1 - b1) z)/b1 (roundings on |y| ~ 1) while
# the probe's parameter b moves ~1e-7 per step (SGD at lr 0.1 on O(1e-6) gradients): 3.8e-9 of
# the displacement at step 4, equal within the conformance budget (docs/conformance.md, S-findings).
BELOW_RESOLUTION = {("optax-eager", "schedule_free_sgd")}


@pytest.mark.parametrize("impl, profile", [("torch-forloop", "torch"),
                                           ("optax-eager", "optax")])
def test_each_built_in_implementation_equals_its_own_profile(impl, profile):
    a, why = _available(impl)
    if a is None:
        pytest.skip(why)
    for opt in _catalogued():
        if a.supports(D.probe_cases(get(opt))[0].case):
            continue  # e.g. optax has no counterpart
        if (impl, opt) in BELOW_RESOLUTION:
            continue
        res = diagnose(a, opt)
        assert res.verdict == "profile" and profile in res.profiles, res.report()


# ---- what a non-match says ---------------------------------------------------------------------
def test_a_bug_matches_nothing_and_is_described():
    res = diagnose(OffByOneAdam(), "adam")
    assert res.verdict == "nothing", res.report()
    assert res.divergence is not None and res.divergence.step == 1
    text = res.report()
    assert "matches nothing; nearest: profile" in text
    assert "first divergence: probe plain, step 1" in text
    assert "about the same for every gradient magnitude" in text  # a scale, not eps
    assert "median ratio of displacements" in text


# ---- the probes see every knob ---------------------------------------------------------------
# Knobs no probe can show: threshold_inclusive acts only when rho_t equals the threshold exactly
# (issue 9 item 6); amsgrad_max_over acts only with amsgrad, which AdamW's probes cannot pass.
UNOBSERVABLE = {("radam", "threshold_inclusive"), ("adamw", "amsgrad_max_over")}
# Knobs that act on float32 parameters only cannot move the float64 probes.
FLOAT32_ONLY = getattr(importlib.import_module("adaptive_ref.conformance.cases"),
                       "FLOAT32_ONLY_KNOBS", frozenset())


def _knob_effects():
    for spec in REGISTRY.values():
        if not in_catalogue(spec)[0] or is_sparse(spec) or D.probe_limit(spec) is not None:
            continue
        probes = D.probe_cases(spec)
        for prof in spec.profiles:
            base = {k: v for k, v in spec.profiles[prof].settings.items()
                    if v is not D.REQUIRED}
            for h in spec.knobs:
                if h.name in spec.fixed or (spec.name, h.name) in UNOBSERVABLE \
                        or h.name in FLOAT32_ONLY:
                    continue
                ctx = {k: c for k, c in KNOB_CONTEXT.get((spec.name, h.name), {}).items()
                       if not k.startswith("_")}
                for v in _knob_values(h, spec):
                    if base.get(h.name, h.default) == v:
                        continue
                    worst = 0.0
                    for p in probes:
                        if any(p.case.hparams.get(k) != c for k, c in ctx.items()
                               if k in D.PASSED):
                            continue
                        s0 = {**spec.defaults(), **base, **p.case.hparams,
                              **{k: c for k, c in ctx.items() if k not in D.PASSED}}
                        try:
                            a = D.reference_trajectory(spec, p.case, s0)
                            b = D.reference_trajectory(spec, p.case, {**s0, h.name: v})
                        except ValueError:  # e.g. Nesterov without momentum
                            continue
                        worst = max(worst, float(np.max(D._rel_table(p.case, a, b))))
                    yield f"{spec.name}[{prof}] {h.name}={v!r}", worst


# Knobs whose whole effect is one float32 rounding of a scalar (schedule-free's warm-up lr or its
# factor: 1.5e-8 to 6e-8 relative): measured 4.5e-8 to 5.7e-8 of the probes' displacement,
# 45-57x EQUAL_TOL, so the margin asked of them is 10x, not 100x.
ONE_ROUNDING = {("schedule_free_adamw", "warmup_precision"),
                ("schedule_free_sgd", "warmup_precision")}


def _margin(effect: str) -> float:
    one = any(effect.startswith(f"{o}[") and f"] {k}=" in effect for o, k in ONE_ROUNDING)
    return 10.0 if one else 100.0


def test_every_knob_moves_the_probe_trajectories_far_above_the_equality_tolerance():
    effects = dict(_knob_effects())
    assert len(effects) > 50
    weak = {k: v for k, v in effects.items() if not v >= _margin(k) * D.EQUAL_TOL}
    assert not weak, weak


# ---- suspect: the knob named in a failing report ------------------------------------------------
def _golden(cid):
    (case,) = [c for c in fmt.load_cases(cid.split("[")[0]) if c.id == cid]
    return case


def _reference_with(case, **change):
    """The reference on NumPy in the case's dtype with ``change`` made: a wrong implementation."""
    import dataclasses

    from adaptive_ref.conformance.adapters.reference import ReferenceAdapter

    return ReferenceAdapter().run(dataclasses.replace(case, hparams={**case.hparams, **change}))


@pytest.mark.parametrize("cid, change, named", [
    ("adam[torch,float64,base]", {"eps_placement": "hat"}, "eps_placement='hat'"),
    ("adam[torch,float32,base]", {"eps_placement": "hat"}, "eps_placement='hat'"),
    ("radam[optax,float32,base]", {"eps_placement": "hat"}, "eps_placement='hat'"),
    ("nadam[torch,float64,weight_decay=0.01]", {"weight_decay_mode": "decoupled"},
     "weight_decay_mode='decoupled'"),
    ("adam[torch,float64,weight_decay=0.01]", {"weight_decay": 0.0}, "ignores the weight_decay"),
    ("rmsprop[optax,float64,base]", {"eps_placement": "outside"}, "eps_placement='outside'"),
])
def test_suspect_names_the_knob(cid, change, named):
    case = _golden(cid)
    text = suspect(case, _reference_with(case, **change))
    assert text is not None and named in text


def test_suspect_is_silent_for_what_no_single_setting_explains():
    case = _golden("adam[torch,float64,base]")
    assert suspect(case, _reference_with(case, beta2=0.99)) is None  # beta2 is not a convention
    assert suspect(case, _reference_with(case)) is None  # no failure at all


def test_failing_report_names_the_suspected_knob():
    from adaptive_ref.conformance.compare import compare

    case = _golden("adam[torch,float64,base]")
    res = compare(case, _reference_with(case, eps_placement="hat"))
    assert res.status == "fail"
    assert "suspected knob: eps_placement='hat'" in res.report()
    assert compare(case, _reference_with(case, eps_placement="hat"), explain=False).suspect == ""


# ---- adapters: settings a case does not name stay at the library's defaults ----------------------
def test_torch_adapter_leaves_unnamed_settings_at_torch_defaults():
    pytest.importorskip("torch")
    from adaptive_ref.conformance.adapters.torch_optim import _kwargs

    kw = _kwargs("nadam", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0})
    assert kw == {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0,
                  "decoupled_weight_decay": False}
    full = _kwargs("nadam", get("nadam").settings("optax", lr=1e-3))
    assert full["momentum_decay"] == 1e9 and full["eps"] == 1e-8


# ---- input checking and the command --------------------------------------------------------------
def test_bad_input_is_named():
    with pytest.raises(KeyError, match="unknown optimizer"):
        diagnose(EpsInSqrtAdam(), "nope")

    class Declares(EpsInSqrtAdam):
        def declared_settings(self, optimizer):
            return {"epsilon": 1e-7}

    with pytest.raises(KeyError, match="declared_settings.*no hyperparameter .epsilon."):
        diagnose(Declares(), "adam")
    with pytest.raises(ValueError, match="runs none of the probes"):
        diagnose(EpsInSqrtAdam(), "rmsprop")  # the adapter supports adam only

    class NeedsEps(EpsInSqrtAdam):
        def build(self, case):
            self.eps = case.hparams["eps"]  # an adapter that needs every setting named
            return super().build(case)

    with pytest.raises(RuntimeError, match="must leave every other setting at its library's"):
        diagnose(NeedsEps(), "adam")


def test_command(capsys):
    pytest.importorskip("torch")
    from adaptive_ref.cli import main

    assert main(["diagnose", "--impl", "torch-forloop", "--optimizer", "radam"]) == 0
    assert "radam [torch-forloop]: equals profile torch" in capsys.readouterr().out
    assert main(["diagnose", "--impl", "diagnose_impls:OffByOneAdam",
                 "--optimizer", "adam", "--time-limit", "5"]) == 1
    assert "matches nothing" in capsys.readouterr().out
    assert main(["diagnose", "--impl", "nope", "--optimizer", "adam"]) == 2
    assert "unknown implementation 'nope'" in capsys.readouterr().err
    assert main(["diagnose", "--impl", "no_such_module:Adam", "--optimizer", "adam"]) == 2
    assert "no_such_module" in capsys.readouterr().err
    assert main(["diagnose", "--impl", "diagnose_impls:OffByOneAdam", "--optimizer", "nope"]) == 2
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
