"""Issue 11, part 1: what the registry-driven suites do not cover for Adadelta and Lion.

* Lion's golden is ill-posed where c = beta1*m + (1 - beta1)*g is within rounding of 0; the exact
  oracle refuses such a case and the catalogue re-seeds a gradient stream that comes near it.
* optax.adadelta() with its default learning_rate=None ascends (a finding, docs/conformance.md).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from adaptive_ref import adadelta_init, adadelta_step, lion_init, lion_step
from adaptive_ref.conformance import fidelity
from adaptive_ref.conformance.cases import LION_RESEED, REPLAY_PARAMS, catalogue


def _lion_elem():
    return fidelity._Elem(mpmath.mpf(0), fidelity._init_fields("lion", {}))


HP = {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "ema_weight_precision": "float64",
      "_case_dtype": "float64"}


def test_lion_oracle_refuses_a_sign_within_rounding_of_zero():
    e = _lion_elem()
    fidelity._lion_step(e, mpmath.mpf(1.0), 1, HP, 1e-3)
    m = float(e.s["mu"])
    g = -0.9 * m / (1 - 0.9)  # c = 0.9 m + 0.1 g cancels to rounding level
    with pytest.raises(fidelity.IllPosedSign, match="not well-posed"):
        fidelity._lion_step(e, mpmath.mpf(g), 2, HP, 1e-3)


def test_lion_oracle_accepts_exact_zero_and_clear_signs():
    e = _lion_elem()
    fidelity._lion_step(e, mpmath.mpf(0), 1, HP, 1e-3)  # c = 0 exactly: sign(0) = 0
    assert e.p == 0 and e.s["mu"] == 0
    fidelity._lion_step(e, mpmath.mpf(-2.0), 2, HP, 1e-3)
    assert e.p == mpmath.mpf(1e-3)


def test_lion_margin_grows_with_the_dtype_unit():
    b1, w1 = 0.9, 0.1
    c64, _ = fidelity.lion_sign_bounds(2.0 ** -53, b1, w1, 0.99, 0.01, 1.0, 0.5, 0.0)
    c32, _ = fidelity.lion_sign_bounds(2.0 ** -24, b1, w1, 0.99, 0.01, 1.0, 0.5, 0.0)
    assert c32 / c64 == 2.0 ** 29
    assert fidelity.lion_sign_margin(mpmath.mpf(0), 0) == mpmath.inf
    assert fidelity.lion_sign_margin(mpmath.mpf(1e-3), 1e-4) == pytest.approx(10.0)


def test_lion_catalogue_is_well_posed_and_reseeds_where_needed():
    seeds = {name: g["seed"] for name, _, g in REPLAY_PARAMS}
    reseeded = set()
    for case in catalogue(["lion"]):
        if case.kind != "replay":
            continue
        for p in case.params:
            assert fidelity.lion_well_posed(p.grad, p.shape, case.steps, case.dtype,
                                            case.param_hparams(p.name)), case.id
            if p.grad["seed"] != seeds[p.name]:
                assert (p.grad["seed"] - seeds[p.name]) % LION_RESEED == 0
                orig = {**p.grad, "seed": seeds[p.name]}
                assert not fidelity.lion_well_posed(orig, p.shape, case.steps, case.dtype,
                                                    case.param_hparams(p.name))
                reseeded.add((case.dtype, p.name))
    # float32's unit makes the 200-step (8, 16) stream come within the margin; float64 does not
    assert reseeded and all(dtype == "float32" for dtype, _ in reseeded)


def test_optax_adadelta_default_learning_rate_ascends():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    import jax

    with jax.enable_x64(True):
        p0 = np.array([1.0, -2.0, 0.5])
        tx = optax.adadelta()  # learning_rate=None, optax's default
        p, st = jnp.asarray(p0), tx.init(jnp.asarray(p0))
        ref, rst = p0, adadelta_init(p0)
        for _ in range(5):
            g = 2.0 * np.asarray(p)  # the gradient of |p|^2
            u, st = tx.update(jnp.asarray(g), st, p)
            p = optax.apply_updates(p, u)
            ref, rst = adadelta_step(ref, 2.0 * ref, rst, lr=1.0, rho=0.9, eps=1e-6,
                                     maximize=True)
        np.testing.assert_allclose(np.asarray(p), ref, rtol=1e-14, atol=0)
        assert np.sum(np.asarray(p) ** 2) > np.sum(p0 ** 2)  # uphill


def test_bad_hyperparameters_name_the_range():
    p = np.ones(2)
    with pytest.raises(ValueError, match=r"eps=0.0 is outside the accepted range \(0, inf\)"):
        adadelta_step(p, p, adadelta_init(p), eps=0.0)
    with pytest.raises(ValueError, match=r"rho=1.5 is outside the accepted range \[0, 1\]"):
        adadelta_step(p, p, adadelta_init(p), rho=1.5)
    with pytest.raises(ValueError, match=r"beta1=-0.1 is outside the accepted range"):
        lion_step(p, p, lion_init(p), beta1=-0.1)
