"""The knobs that make Keras 3 (and optax in float32) expressible: ``weight_decay_mode``,
``factor_precision`` and ``ema_weight_precision``; every optimizer of the registry that has one is
checked (the lists come from the registry, not from this file)."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref.registry import REGISTRY

WD_MODE = [n for n, s in REGISTRY.items() if "weight_decay_mode" in s.hparam_names]
F32_KNOBS = [(n, k) for n, s in REGISTRY.items()
             for k in ("factor_precision", "ema_weight_precision") if k in s.hparam_names]
# The parameter shape an optimizer's step takes (Muon: matrices only).
SHAPE = {"muon": (2, 3)}


def _run(spec, p, grads, **kw):
    settings = spec.settings(None, **kw)
    state = spec.init(p, **spec.init_kwargs(settings))
    for g in grads:
        p, state = spec.step(p, g, state, **kw)
    return p, state


# optimizers whose decay conventions are another knob: LAMB's decay inside or outside the trust
# ratio (``decay_placement``: optax vs Keras); LARS's decay is g + wd*theta inside the ratio in
# the paper and in optax (its convention is the ratio's denominator, ``trust_denominator``)
OWN_DECAY_KNOB = {"lamb": ("decay_placement",), "lars": ("trust_denominator",)}


def test_every_framework_optimizer_with_weight_decay_has_weight_decay_mode():
    """Optimizers with a framework profile (AdamW and Lion are decoupled by definition, and so
    is Muon's decay in torch, optax, Keras and upstream; IVON and the root-free RMSprop have no
    framework counterpart, their decay is part of their algorithm)."""
    # schedule-free: weight_decay_form ('direction': wd*y in the step of z and y, upstream and
    # optax; 'y': Keras' y - lr*wd*y, which the interpolation toward z partly undoes)
    own_form = ("adamw", "lion", "muon", "schedule_free_adamw", "schedule_free_sgd")
    # SOAP: decoupled decay after the update (upstream's only form; no framework has SOAP)
    own_form += ("soap",)
    lacking = [n for n, s in REGISTRY.items() if "weight_decay" in s.hparam_names
               and s.profiles and n not in own_form and n not in WD_MODE
               and not set(s.hparam_names) & set(OWN_DECAY_KNOB.get(n, ()))]
    assert not lacking, f"weight_decay without weight_decay_mode: {lacking}"
    assert {"sgd", "adagrad", "rmsprop", "adamax", "adam", "nadam", "radam"} <= set(WD_MODE)


# ADOPT's first step only sets v (no update, no decay): its decay shows on the second step
UPDATE_FREE_STEPS = {"adopt": 2}
# Prodigy's decoupled decay is p (1 - wd d lr) with its estimated d, and a zero gradient from a
# fresh state is the authors' early return (no step at all): tests/test_prodigy.py checks both
DECAY_NOT_LR_WD = {"prodigy"}
DECAY_NOT_LR_WD.add("dadapt_adamw")  # the same: p (1 - wd dlr) (tests/test_dadapt_adamw.py)


@pytest.mark.parametrize("name", WD_MODE)
def test_decoupled_decay_on_a_zero_gradient_is_exactly_p_times_1_minus_lr_wd(name):
    """From a fresh state a zero gradient moves nothing but the decay: p (1 - lr wd) bit for
    bit (Keras writes p - lr wd p: the same number up to one rounding); coupled L2 differs."""
    if name in DECAY_NOT_LR_WD:
        pytest.skip("decay is p (1 - wd d lr): tests/test_prodigy.py")
    spec = REGISTRY[name]
    p = np.array([0.75, -1.25, 3.0, 1e-3])
    lr, wd = 0.05, 0.1
    zeros = [np.zeros(4)] * UPDATE_FREE_STEPS.get(name, 1)
    got, _ = _run(spec, p, zeros, lr=lr, weight_decay=wd, weight_decay_mode="decoupled")
    np.testing.assert_array_equal(got, p * (1 - lr * wd))
    if name in ("sgd", "radam"):
        return  # plain SGD and RAdam's unrectified step 1 are p - lr (g + wd p) either way
    coupled, _ = _run(spec, p, zeros, lr=lr, weight_decay=wd, weight_decay_mode="coupled")
    assert not np.array_equal(coupled, got)


@pytest.mark.parametrize("name", WD_MODE)
def test_weight_decay_mode_is_inert_without_decay(name):
    spec = REGISTRY[name]
    rng = np.random.default_rng(3)
    p, grads = rng.normal(size=5), [rng.normal(size=5) for _ in range(4)]
    a, _ = _run(spec, p, grads, weight_decay=0.0, weight_decay_mode="coupled")
    b, _ = _run(spec, p, grads, weight_decay=0.0, weight_decay_mode="decoupled")
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "knob"), F32_KNOBS)
def test_precision_knobs_are_inert_in_float64(name, knob):
    """'param' is float64 for float64 parameters: the two values give the same bits."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(7)
    shape = SHAPE.get(name, 6)
    p, grads = rng.normal(size=shape), [rng.normal(size=shape) for _ in range(12)]
    extra = PRECISION_CONTEXT.get(name, {})
    a, sa = _run(spec, p, grads, **extra, **{knob: "float64"})
    b, sb = _run(spec, p, grads, **extra, **{knob: "param"})
    np.testing.assert_array_equal(a, b)
    for x, y in zip(sa, sb, strict=True):
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# Settings under which a precision knob moves float32 parameters within 12 steps: RMSprop's
# factor needs bias_correction; ADOPT's 1 - fl32(b1) is 2e-7 off at b1 = 0.9, 1.7e-5 at 0.999,
# and its clipped, lr-scaled steps need lr = 1 to show it in O(1) parameters; LAMB's trust ratio
# cancels a uniform scaling of r = m_hat/(sqrt(v_hat) + eps) (up to eps), so its factors act
# through the decay inside the ratio (seen in 12 float32 steps with a large lr and decay)
PRECISION_CONTEXT = {"rmsprop": {"bias_correction": True}, "adopt": {"beta1": 0.999, "lr": 1.0},
                     "muon": {"momentum_form": "ema_bias_corrected", "nesterov": "nadam"},
                     "lamb": {"lr": 0.1, "weight_decay": 1.0}}


@pytest.mark.parametrize(("name", "knob"), F32_KNOBS)
def test_precision_knobs_act_in_float32(name, knob):
    spec = REGISTRY[name]
    rng = np.random.default_rng(11)
    shape = SHAPE.get(name, 6)
    p = rng.normal(size=shape).astype(np.float32)
    grads = [rng.normal(size=shape).astype(np.float32) for _ in range(12)]
    extra = PRECISION_CONTEXT.get(name, {})
    a, sa = _run(spec, p, grads, **extra, **{knob: "float64"})
    b, sb = _run(spec, p, grads, **extra, **{knob: "param"})
    assert a.dtype == b.dtype == np.float32
    # the parameters, or the state (Lion's step is a sign: its weights show in the momentum)
    changed = not np.array_equal(a, b) or any(
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(sa, sb, strict=True) if x is not None)
    assert changed, f"{name}: {knob}='param' changed nothing in float32"


def test_factor_precision_known_answer_adam_eps_hat_float32():
    """One eps-hat step (Keras Adam) with eps = 0 from a zero state: the update is
    lr sqrt(1 - b2)/(1 - b1) (1 - b1) g / sqrt((1 - b2) g^2), so 'param' / 'float64' is
    sqrt(1 - fl32(b2)) / sqrt(1 - b2) * (1 - b1) / (1 - fl32(b1)), about 1 - 4.6e-6; checked to
    4 float32 ULP (the few roundings of each float32 step)."""
    spec = REGISTRY["adam"]
    p = np.zeros(3, dtype=np.float32)
    g = np.array([0.5, -2.0, 3.0], dtype=np.float32)
    kw = dict(lr=1e-3, eps=0.0, eps_placement="hat")
    a, _ = _run(spec, p, [g], factor_precision="float64", **kw)
    b, _ = _run(spec, p, [g], factor_precision="param", **kw)
    b1, b2 = 0.9, 0.999
    f1, f2 = float(np.float32(b1)), float(np.float32(b2))
    expected = np.sqrt((1 - f2) / (1 - b2)) * (1 - b1) / (1 - f1)
    ratio = b.astype(np.float64) / a.astype(np.float64)
    assert abs(expected - 1) > 1e-6  # the effect is ~80 float32 ULP, not noise
    np.testing.assert_allclose(ratio, expected, rtol=4 * 2.0**-23, atol=0)


def test_ema_weight_precision_known_answer_nadam_float32():
    """Keras Nadam's v = (1 - fl32(b2)) g^2 on step 1, the reference's default (1 - b2 as a
    float64 number, cast once) gives fl32(1 - b2) g^2: relative 1.3e-5 apart."""
    spec = REGISTRY["nadam"]
    p = np.zeros(2, dtype=np.float32)
    g = np.array([0.5, -2.0], dtype=np.float32)
    _, sa = _run(spec, p, [g], ema_weight_precision="float64")
    _, sb = _run(spec, p, [g], ema_weight_precision="param")
    g2 = g.astype(np.float64) ** 2
    np.testing.assert_array_equal(sa.nu, (np.float32(1 - 0.999) * (g * g)))
    np.testing.assert_array_equal(sb.nu, (np.float32(1) - np.float32(0.999)) * (g * g))
    assert abs(float(sb.nu[0]) / float(sa.nu[0]) - 1) > 1e-5
    assert np.all(sb.nu > 0) and np.all(g2 > 0)


def test_bad_knob_values_name_the_argument_and_the_choices():
    spec = REGISTRY["sgd"]
    p = np.zeros(2)
    st = spec.init(p)
    with pytest.raises(ValueError, match="weight_decay_mode.*'coupled', 'decoupled'"):
        spec.step(p, p, st, weight_decay_mode="keras")
    spec = REGISTRY["adam"]
    with pytest.raises(ValueError, match="factor_precision.*'float64', 'param'"):
        spec.step(p, p, spec.init(p), factor_precision="float32")
