"""Keras 3 on its jax and torch backends passes its profile's goldens (a bounded sample: every
optimizer and dtype, the base, per-group and schedule cases and one closed loop; ``adaptive-ref
conform --impl keras-jax,keras-torch`` runs the whole catalogue), declines what it cannot
express with a reason, and reports a missing install or a Keras error plainly."""

from __future__ import annotations

import importlib.util

import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters import get_adapter
from adaptive_ref.conformance.adapters.keras_adapter import KERAS_CLASSES, KerasAdapter
from adaptive_ref.conformance.runner import load_xfails, run_case

BACKENDS = ("jax", "torch")
ALL = [c for c in fmt.load_cases() if c.profile.startswith("keras")]


def _adapter(backend: str) -> KerasAdapter:
    a = get_adapter(f"keras-{backend}")
    if a.missing():
        pytest.skip(a.missing())
    return a


def _sample(adapter):
    return [c for c in ALL if adapter.applies_to(c) and (
        "base" in c.tags or "groups" in c.tags or "schedule" in c.tags
        or (c.kind == "closed_loop" and "logistic" in c.tags))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_sample_passes(backend):
    adapter = _adapter(backend)
    cases = _sample(adapter)
    assert {c.optimizer for c in cases} == set(KERAS_CLASSES)  # every Keras counterpart
    assert {c.dtype for c in cases} == {"float32", "float64"}
    xf = load_xfails(adapter.name)
    assert not xf, "the keras profile has no expected failures"
    bad, ran = [], 0
    for case in cases:
        res = run_case(adapter, case)
        if res.status == "n/a":
            continue
        ran += 1
        if res.status != "pass":
            bad.append(res.report())
    assert ran >= 40, f"only {ran} cases ran"
    assert not bad, "\n".join(bad)


def test_torch_backend_answers_to_its_own_nadam_profile():
    jax_a, torch_a = KerasAdapter("jax"), KerasAdapter("torch")
    nadam = [c for c in ALL if c.optimizer == "nadam" and "base" in c.tags]
    assert {c.profile for c in nadam if torch_a.applies_to(c)} == {"keras-torch"}
    assert {c.profile for c in nadam if jax_a.applies_to(c)} == {"keras"}
    adam = [c for c in ALL if c.optimizer == "adam" and "base" in c.tags]
    assert {c.profile for c in adam if torch_a.applies_to(c)} == {"keras"}


@pytest.mark.parametrize(("case_id", "words"), [
    ("sgd[keras,float64,maximize=True]", "maximize"),
    ("sgd[keras,float32,lr_placement=outside]", "lr_placement='inside' built in"),
    ("adam[keras,float32,eps_placement=outside]", "eps_placement='hat'"),
    ("adagrad[keras,float64,lr_decay]", "lr_decay"),
    ("adam[keras,float32,factor_precision=float64]", "factor_precision='param'"),
    ("rmsprop[keras,float64,weight_decay_mode=coupled]", "weight_decay_mode='decoupled'"),
])
def test_what_keras_cannot_express_is_na_with_the_reason(case_id, words):
    case = next(c for c in ALL if c.id == case_id)
    why = KerasAdapter("jax").supports(case)
    assert why is not None and why.startswith("unsupported") and words in why, why


def test_missing_keras_is_reported(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "keras" else real(name, *a))
    why = KerasAdapter("torch").missing()
    assert why is not None and "Keras 3 is not installed" in why


def test_bad_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be 'jax' or 'torch'"):
        KerasAdapter("numpy")


def test_a_keras_error_comes_back_with_its_traceback():
    adapter = _adapter("jax")
    with pytest.raises(RuntimeError, match="Keras raised while build"):
        adapter.worker().call("build", {"dtype": "float32", "optimizer": "NoSuchOptimizer",
                                        "params": {}, "groups": [], "fields": []})
    assert adapter.worker().alive()  # the worker survives and serves the next case


def test_keras_profiles_match_the_installed_constructors():
    """Each keras profile's numbers are the defaults of the installed keras.optimizers class
    (read in a subprocess: Keras fixes its backend at import)."""
    import json
    import os
    import subprocess
    import sys

    from adaptive_ref.conformance.adapters.keras_adapter import _ARGS, KERAS_CLASSES, _kwargs
    from adaptive_ref.registry import REGISTRY

    _adapter("jax")
    code = ("import inspect, json, keras\n"
            "out = {}\n"
            f"for name in {sorted(set(KERAS_CLASSES.values()))!r}:\n"
            "    sig = inspect.signature(getattr(keras.optimizers, name))\n"
            "    out[name] = {k: p.default for k, p in sig.parameters.items()\n"
            "                 if isinstance(p.default, (int, float, bool, type(None)))}\n"
            "print(json.dumps(out))\n")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sigs = json.loads(r.stdout.strip().splitlines()[-1])
    for opt, cls in KERAS_CLASSES.items():
        settings = REGISTRY[opt].settings("keras")
        kw = _kwargs(opt, settings)  # the profile as the adapter passes it (Adafactor: -c)
        for ours, theirs in _ARGS[opt].items():
            if ours == "amsgrad" and opt == "amsgrad":
                continue  # Adam(amsgrad=True) is the AMSGrad profile
            assert kw[theirs] == sigs[cls][theirs], (opt, ours, kw[theirs], sigs[cls])
        wd = sigs[cls]["weight_decay"]
        assert settings["weight_decay"] == (0.0 if wd is None else wd), (opt, wd)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replayed_case_in_one_request_equals_the_step_by_step_run(backend):
    """``run`` sends a replayed case's steps in one request; the snapshots are the ones the
    step-by-step protocol (build, step, read) gives, bit for bit."""
    import numpy as np

    from adaptive_ref.conformance.adapters.base import Adapter

    adapter = _adapter(backend)
    case = next(c for c in ALL if adapter.applies_to(c) and c.kind == "replay"
                and "schedule" in c.tags and c.dtype == "float32")
    batched, stepwise = adapter.run(case), Adapter.run(adapter, case)
    assert sorted(batched) == sorted(stepwise) == sorted(set(case.checkpoints))
    for t, (params, state) in stepwise.items():
        bp, bs = batched[t]
        assert bp.keys() == params.keys() and bs.keys() == state.keys()
        for k in params:
            np.testing.assert_array_equal(bp[k], params[k])
            assert bs[k].keys() == state[k].keys()
            for f, v in state[k].items():
                np.testing.assert_array_equal(bs[k][f], v)
