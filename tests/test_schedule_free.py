"""Schedule-free AdamW and SGD: the training point y and the evaluation point x follow the
authors' package (``schedulefree``) and optax over a trajectory, under each one's profile."""

from __future__ import annotations

import numpy as np
import pytest

import adaptive_ref as ar
from adaptive_ref.registry import REGISTRY

STEPS = 30
NAMES = ("schedule_free_adamw", "schedule_free_sgd")
# warm-up, weight decay and (upstream) polynomial weights all acting
SETTINGS = {"schedule_free_adamw": dict(lr=1e-2, warmup_steps=5.0, weight_decay=0.1),
            "schedule_free_sgd": dict(lr=0.1, warmup_steps=5.0, weight_decay=0.1)}


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 4)), rng.standard_normal((STEPS, 3, 4))


def _reference(name, profile, y, grads, **over):
    spec = REGISTRY[name]
    settings = spec.settings(profile, **{**SETTINGS[name], **over})
    state = spec.init(y, **spec.init_kwargs(settings))
    ys, xs = [], []
    for g in grads:
        y, state = spec.step(y, g, state, **settings)
        ys.append(y)
        xs.append(ar.schedule_free_eval_params(y, state, beta1=settings["beta1"]))
    return ys, xs


def _close(got, want, what, rtol=1e-13):
    for t, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        err = np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b)))
        assert err <= rtol, f"{what}: step {t}: relative difference {err:.3g}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r", [0.0, 1.0])
def test_y_and_x_follow_upstream(name, r):
    torch = pytest.importorskip("torch")
    schedulefree = pytest.importorskip("schedulefree")
    y0, grads = _problem()
    hp = {**SETTINGS[name], "r": r}
    p = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
    if name == "schedule_free_adamw":
        opt = schedulefree.AdamWScheduleFree([p], lr=hp["lr"], warmup_steps=5,
                                             weight_decay=hp["weight_decay"], r=r)
    else:
        opt = schedulefree.SGDScheduleFree([p], lr=hp["lr"], warmup_steps=5,
                                           weight_decay=hp["weight_decay"], r=r)
    ys, xs = [], []
    for g in grads:
        opt.train()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        ys.append(p.detach().numpy().copy())
        opt.eval()  # the user's evaluation point, in place
        xs.append(p.detach().numpy().copy())
    ref_y, ref_x = _reference(name, "upstream", y0, grads, r=r)
    # upstream's eval()/train() round trip re-rounds y each step: a few ULP of drift
    _close(ys, ref_y, f"{name} y vs schedulefree", rtol=1e-12)
    _close(xs, ref_x, f"{name} x vs schedulefree.eval()", rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_y_and_x_follow_optax(name, dtype):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    y0, grads = _problem(1)
    y0, grads = y0.astype(dtype), grads.astype(dtype)
    hp = SETTINGS[name]
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", dtype == "float64")
    try:
        make = getattr(optax.contrib, name)
        tx = make(hp["lr"], warmup_steps=5, weight_decay=hp["weight_decay"])
        p = jnp.asarray(y0)
        s = tx.init(p)
        ys, xs = [], []
        for g in grads:
            u, s = tx.update(jnp.asarray(g), s, p)
            p = p + u
            ys.append(np.asarray(p))
            xs.append(np.asarray(optax.contrib.schedule_free_eval_params(s, p)))
    finally:
        jax.config.update("jax_enable_x64", old)
    ref_y, ref_x = _reference(name, "optax", y0, grads)
    rtol = 1e-13 if dtype == "float64" else 3e-6
    _close(ys, ref_y, f"{name} y vs optax", rtol)
    _close(xs, ref_x, f"{name} x vs optax.contrib.schedule_free_eval_params", rtol)


def test_profiles_differ_where_the_findings_say():
    """The knobs are not decorative: each profile's own convention moves the trajectory."""
    y0, grads = _problem(2)
    name = "schedule_free_adamw"
    up = _reference(name, "upstream", y0, grads)[0][-1]
    for over in (dict(warmup_lag=True), dict(averaging="uniform"),
                 dict(weight_decay_form="y"), dict(averaging="uniform", x_from_updated_z=True)):
        other = _reference(name, "upstream", y0, grads, **over)[0][-1]
        assert np.max(np.abs(other - up)) > 1e-6, over


def test_eval_point_is_pure_and_validated():
    y0, grads = _problem(3)
    st = ar.schedule_free_sgd_init(y0)
    y, st = ar.schedule_free_sgd_step(y0, grads[0], st, lr=0.1)
    z = st.z.copy()
    y_copy = y.copy()
    x = ar.schedule_free_eval_params(y, st, beta1=0.9)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(st.z, z)
    np.testing.assert_allclose(0.9 * x + 0.1 * st.z, y, rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="beta1"):
        ar.schedule_free_eval_params(y, st, beta1=0.0)
    with pytest.raises(TypeError, match="ScheduleFreeState"):
        ar.schedule_free_eval_params(y, ar.adam_init(y0))


def test_state_of_the_other_variant_is_refused():
    y0, grads = _problem(4)
    with pytest.raises(TypeError, match="schedule_free_adamw_init"):
        ar.schedule_free_adamw_step(y0, grads[0], ar.schedule_free_sgd_init(y0))
    with pytest.raises(TypeError, match="schedule_free_sgd_init"):
        ar.schedule_free_sgd_step(y0, grads[0], ar.schedule_free_adamw_init(y0))
    with pytest.raises(ValueError, match="warmup_steps"):
        ar.schedule_free_sgd_step(y0, grads[0], ar.schedule_free_sgd_init(y0), warmup_steps=-1)


def test_fused_paths_decline():
    """No fused kernel: the fused module offers no schedule-free step (callers use the
    reference), rather than a wrong one."""
    fused = pytest.importorskip("adaptive_ref.fused")
    for name in NAMES:
        assert not hasattr(fused, f"{name}_step")
        assert not hasattr(fused, f"{name}_step_")


@pytest.mark.parametrize("name", NAMES)
def test_upstream_adapter_answers_partial_cases(name):
    """The convention diagnosis hands adapters cases that name only some settings: the upstream
    adapter leaves the others at schedulefree's defaults (no KeyError) and is identified."""
    pytest.importorskip("schedulefree")
    pytest.importorskip("torch")
    from adaptive_ref.conformance.adapters.schedulefree_adapter import (
        UpstreamScheduleFreeAdapter,
    )
    from adaptive_ref.conformance.diagnose import diagnose

    res = diagnose(UpstreamScheduleFreeAdapter(), name)
    assert res.verdict == "profile" and "upstream" in res.profiles, res.report()
