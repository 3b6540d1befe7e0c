"""The exported invariant catalogue (adaptive_ref.testing): it holds for every registered
optimizer it applies to, and it catches, with no golden file, two hand-written Adams with
classic bugs: the bias correction one step late and eps inside the square root. A correct
hand-written Adam passes (no false alarm). Also: a minimal spec for one's own optimizer,
re-registering, the golden cases an implementation can run, NaN-aware ULP assertions."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest

from adaptive_ref import registry
from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing import (
    INVARIANTS,
    applicable_invariants,
    assert_close_ulp,
    assert_matches_golden,
    budget,
    check_invariants,
    minimal_spec,
    replay_spec,
    runnable_cases,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_registered_optimizer_satisfies_its_invariants(name, dtype):
    ran = check_invariants(REGISTRY[name], dtype=dtype)
    assert "pure" in ran and "resume" in ran


def test_the_catalogue_is_driven_by_the_registry():
    """Which optimizer gets which invariant, read off the declarative table."""
    def names(opt):
        return {inv.name for inv, s in applicable_invariants(REGISTRY[opt]) if isinstance(s, dict)}

    assert {"first_step_sign", "loss_scale", "constant_gradient", "step_bound"} <= names("adam")
    assert "first_step_sign" not in names("nadam") and "loss_scale" in names("nadam")
    assert "first_step_sign" in names("adagrad") and "loss_scale" not in names("adagrad")
    assert "permutation" not in names("shampoo")  # not element-wise
    assert names("sgd") >= {"pure", "resume", "permutation", "sign_flip", "zero_gradient"}
    reasons = dict((inv.name, s) for inv, s in applicable_invariants(REGISTRY["radam"]))
    assert reasons["first_step_sign"] == "not a property of radam"
    assert len({inv.name for inv in INVARIANTS}) == len(INVARIANTS)


# ---- hand-written Adams, as a user of another library would write them -------------------

class MyAdamState(NamedTuple):
    count: int
    mu: np.ndarray
    nu: np.ndarray


def my_init(param):
    return MyAdamState(0, np.zeros_like(param), np.zeros_like(param))


def _make_step(*, late: bool = False, eps_inside: bool = False):
    def step(param, grad, state, *, lr, beta1, beta2, eps):
        t = state.count + 1
        mu = beta1 * state.mu + (1 - beta1) * grad
        nu = beta2 * state.nu + (1 - beta2) * grad * grad
        k = state.count if late else t  # the bug: the correction of the previous step
        mu_hat = mu / (1 - beta1**k)
        nu_hat = nu / (1 - beta2**k)
        denom = np.sqrt(nu_hat + eps) if eps_inside else np.sqrt(nu_hat) + eps
        return param - lr * mu_hat / denom, MyAdamState(t, mu, nu)

    return step


HP = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def _spec(name, step):
    return minimal_spec(name, my_init, step, like="adam", hparams=HP)


def test_a_correct_hand_written_adam_passes():
    ran = check_invariants(_spec("my_adam", _make_step()), reference="adam")
    assert {"first_step_sign", "loss_scale", "constant_gradient", "step_bound", "pure",
            "permutation", "sign_flip", "zero_gradient"} <= set(ran)
    assert "resume" not in ran  # its state type is not registered: not saved by state_to_dict


def test_invariants_catch_bias_correction_one_step_late():
    with pytest.raises(AssertionError) as info:
        check_invariants(_spec("late_adam", _make_step(late=True)), reference="adam")
    text = str(info.value)
    assert "first_step_sign: late_adam: first step is not -lr*sign(g)" in text
    assert "constant_gradient:" in text


def test_invariants_catch_eps_inside_the_square_root():
    with pytest.raises(AssertionError) as info:
        check_invariants(_spec("inside_adam", _make_step(eps_inside=True)), reference="adam")
    text = str(info.value)
    assert "loss_scale: inside_adam: loss scale c = 2**" in text
    # eps = 0 hides the bug: the eps = 0 invariants pass
    assert "first_step_sign" not in text and "constant_gradient" not in text


def test_conditions_a_minimal_spec_cannot_meet_are_skipped_with_the_reason():
    """AdamW's default decay is 1e-2; an implementation without weight_decay implements that,
    so the invariants that need weight_decay = 0 do not apply."""
    spec = minimal_spec("my_adamw", my_init, _make_step(), like="adamw", hparams=HP)
    reasons = dict((inv.name, s) for inv, s in applicable_invariants(spec, reference="adamw"))
    assert reasons["loss_scale"] == ("needs weight_decay=0.0; my_adamw has no weight_decay, so "
                                     "it implements the default 0.01")


# ---- minimal spec, registering, runnable golden cases ----------------------------------------

def test_minimal_spec_errors():
    with pytest.raises(ValueError, match="adam has no hyperparameter 'momentum'"):
        minimal_spec("x", my_init, _make_step(), like="adam", hparams=["lr", "momentum"])
    with pytest.raises(ValueError, match="like='bogus' is not a registered optimizer"):
        minimal_spec("x", my_init, _make_step(), like="bogus")
    with pytest.raises(ValueError, match="reference='bogus' is not a registered optimizer"):
        check_invariants(_spec("x", _make_step()), reference="bogus")


def test_registering_again_in_a_notebook():
    """The same definition run again replaces silently; a different one under a taken name, or
    any built-in name, needs replace=True."""
    first = _spec("notebook_adam", _make_step())
    second = _spec("notebook_adam", _make_step())  # a re-executed cell: same qualified names
    try:
        registry.register(first)
        registry.register(first)
        registry.register(second)
        assert REGISTRY["notebook_adam"] is second
        other = minimal_spec("notebook_adam", my_init, lambda p, g, s, **k: (p, s), like="adam")
        with pytest.raises(ValueError, match="already registered .*pass replace=True"):
            registry.register(other)
        registry.register(other, replace=True)
        assert REGISTRY["notebook_adam"] is other
        with pytest.raises(ValueError, match="'adam' is a built-in optimizer; pass replace=True"):
            registry.register(_spec("adam", _make_step()))
    finally:
        REGISTRY.pop("notebook_adam", None)
    assert REGISTRY["adam"].init.__name__ == "adam_init"


def test_runnable_cases_and_replay_of_a_hand_written_adam():
    """The correct hand-written Adam takes lr, betas and eps only: it can run the float64
    Adam cases whose other knobs sit at the defaults, and it matches them within the suite's
    budget; the others are listed with the knob that rules them out."""
    spec = _spec("my_adam", _make_step())
    run = runnable_cases(spec, reference="adam", dtype="float64")
    assert run.cases, run.skipped
    assert all("has no" in why or "row-sparse" in why for _, why in run.skipped)
    assert any("amsgrad" in why or "weight_decay" in why or "eps_root" in why
               for _, why in run.skipped)
    for case in run.cases:
        assert_matches_golden(case, replay_spec(case, spec))
    late = _spec("late_adam", _make_step(late=True))
    with pytest.raises(AssertionError):
        assert_matches_golden(run.cases[0], replay_spec(run.cases[0], late))


# ---- budgets and NaN-aware ULP assertions -----------------------------------------------------

def test_public_budget():
    assert budget("adam", 10, "float32") == 190.0
    assert budget("sgd", 1, "float64") == 9.0


def test_assert_close_ulp_treats_equal_nans_as_equal():
    a = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    assert_close_ulp(a, np.array([1.0, np.nan, np.inf, 2.0]), max_ulp=0)
    with pytest.raises(AssertionError, match=r"non-finite mismatch at \(1,\)"):
        assert_close_ulp(a, np.array([1.0, 3.0, np.inf, 2.0]), max_ulp=0)
    with pytest.raises(AssertionError, match=r"non-finite mismatch at \(2,\)"):
        assert_close_ulp(a, np.array([1.0, np.nan, -np.inf, 2.0]), max_ulp=0)
    with pytest.raises(AssertionError, match="nan_equal=False"):
        assert_close_ulp(a, np.array([1.0, np.nan, np.inf, 2.0]), max_ulp=0, nan_equal=False)
    with pytest.raises(AssertionError, match=r"error 1 ULP .* > allowed 0 ULP"):
        assert_close_ulp(np.float32([1, math.nan, 1 + 2**-23]), [1, math.nan, 1], max_ulp=0)


@pytest.mark.parametrize("name", ["adam", "adamax", "rmsprop", "sgd"])
def test_registered_optimizers_on_the_backends(backend, name):
    """The catalogue runs on each backend's arrays (the exact properties are bitwise there too)."""
    ran = check_invariants(REGISTRY[name], backend=backend)
    assert "permutation" in ran and "shape_dtype" not in ran


def test_a_torch_adam_written_by_hand():
    """An implementation in torch, checked as it is: the correct one passes, eps inside the
    square root is caught by the loss-scale identity."""
    torch = pytest.importorskip("torch")

    def init(param):
        return MyAdamState(0, torch.zeros_like(param), torch.zeros_like(param))

    def make(eps_inside):
        def step(param, grad, state, *, lr, beta1, beta2, eps):
            t = state.count + 1
            mu = beta1 * state.mu + (1 - beta1) * grad
            nu = beta2 * state.nu + (1 - beta2) * grad * grad
            nu_hat = nu / (1 - beta2**t)
            denom = torch.sqrt(nu_hat + eps) if eps_inside else torch.sqrt(nu_hat) + eps
            return param - lr * (mu / (1 - beta1**t)) / denom, MyAdamState(t, mu, nu)

        return step

    good = minimal_spec("torch_adam", init, make(False), like="adam", hparams=HP)
    assert "loss_scale" in check_invariants(good, reference="adam", backend="torch")
    bad = minimal_spec("torch_adam_inside", init, make(True), like="adam", hparams=HP)
    with pytest.raises(AssertionError, match="loss_scale: torch_adam_inside: loss scale"):
        check_invariants(bad, reference="adam", backend="torch")
    with pytest.raises(ValueError, match="backend='bogus' is not one of"):
        check_invariants(good, reference="adam", backend="bogus")
