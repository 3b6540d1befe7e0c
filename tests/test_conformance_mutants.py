"""The suite can fail: deliberately wrong implementations are caught, with a readable report
(optimizer, first divergent step, array, size of the error)."""

import numpy as np
import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
from adaptive_ref.conformance.runner import run_case
from adaptive_ref.testing import assert_matches_golden, replay
from adaptive_ref.testing.backends import Backend


def _case(cid):
    (case,) = [c for c in fmt.load_cases(cid.split("[")[0]) if c.id == cid]
    return case


class _Mutant(ReferenceAdapter):
    """The reference with one setting silently changed."""

    def __init__(self, name, **change):
        super().__init__(Backend.NUMPY)
        self.name, self.change = name, change

    def build(self, case):
        h = super().build(case)
        orig = case.param_hparams
        h["case"] = type("C", (), {"param_hparams": lambda _, k: {**orig(k), **self.change},
                                   "params": case.params})()
        return h


def _adam_wrong_bias_correction(case):
    """A hand-written NumPy Adam whose bias correction is one step late (uses t - 1 + 1e-300)."""

    def init(name, p, hp):
        return {"mu": np.zeros_like(p), "nu": np.zeros_like(p), "count": 0}

    def step(name, p, g, s, hp):
        t = s["count"] + 1
        mu = hp["beta1"] * s["mu"] + (1 - hp["beta1"]) * g
        nu = hp["beta2"] * s["nu"] + (1 - hp["beta2"]) * g * g
        tb = t + 1  # BUG: off by one
        m_hat, v_hat = mu / (1 - hp["beta1"] ** tb), nu / (1 - hp["beta2"] ** tb)
        return p - hp["lr"] * m_hat / (np.sqrt(v_hat) + hp["eps"]), {"mu": mu, "nu": nu,
                                                                      "count": t}

    return replay(case, init=init, step=step)


def test_eps_in_the_wrong_place_is_caught():
    case = _case("adam[torch,float64,base]")
    res = run_case(_Mutant("eps-hat-adam", eps_placement="hat"), case)
    assert res.status == "fail"
    text = res.report()
    assert "adam[torch,float64,base]" in text and "first divergence: step 1" in text
    assert "params.b" in text  # the O(1e-6) gradients: where eps placement dominates
    assert "reproduce:" in text


def test_bias_correction_off_by_one_is_caught():
    case = _case("adam[optax,float64,base]")
    with pytest.raises(AssertionError, match=r"first divergence: step 1, (params|state)\.\w"):
        assert_matches_golden(case, _adam_wrong_bias_correction(case))


def test_wrong_nadam_schedule_is_caught():
    case = _case("nadam[torch,float64,base]")
    res = run_case(_Mutant("nadam-psi", momentum_decay=4e-2), case)
    assert res.status == "fail" and res.failures[0].step == 1, res.report()
    res = run_case(_Mutant("nadam-constant", momentum_schedule="constant"), case)
    assert res.status == "fail" and res.max_rel > 0.1, res.report()


def test_a_tiny_float32_error_beyond_the_budget_is_caught():
    """Rounding lr to float16 precision (a 1e-4 relative change) fails a float32 case."""
    case = _case("sgd[torch,float32,base]")
    lr = float(np.float16(case.hparams["lr"]))
    res = run_case(_Mutant("sgd-lr16", lr=lr), case)
    assert res.status == "fail", res.report()


def test_the_unchanged_reference_passes_the_same_cases():
    for cid in ("adam[torch,float64,base]", "nadam[torch,float64,base]",
                "sgd[torch,float32,base]"):
        assert run_case(ReferenceAdapter(Backend.NUMPY), _case(cid)).status == "pass"


@pytest.mark.parametrize(("cid", "change"), [
    # Keras' parameter scale (AF4) under torch's convention, with weight decay
    ("adafactor[torch,float64,weight_decay=0.01]", {"param_scale_from": "after_decay"}),
    # Keras' float32 means (AF6) in a float64 run
    ("adafactor[torch,float64,base]", {"mean_precision": "float32"}),
    # torch's eps1 clamp at eps1 = 1e-3 where the golden adds it
    ("adafactor[paper,float32,eps1_mode=clamp]", {"eps1_mode": "add"}),
])
def test_a_wrong_adafactor_convention_is_caught(cid, change):
    """Per-tensor goldens with factored state (issue 12): another convention fails the case,
    and the unchanged reference passes it."""
    case = _case(cid)
    assert run_case(ReferenceAdapter(Backend.NUMPY), case).status == "pass"
    res = run_case(_Mutant("adafactor-" + "-".join(change.values()), **change), case)
    assert res.status == "fail", res.report()
    assert "first divergence" in res.report()


def test_soap_float32_eigenbasis_and_a_tiny_update_error_are_caught():
    """SOAP's float64 goldens: upstream's float32 eigh/QR cast (finding S1) fails at the first
    call's basis, and an update off by 1e-12 relative from step 6 on fails too."""
    from adaptive_ref.conformance.mutants import PerturbedUpdate

    case = _case("soap[reference,float64,base]")
    res = run_case(_Mutant("soap-f32-eigh", eigh_dtype="float32"), case)
    assert res.status == "fail" and res.failures[0].step == 1, res.report()
    assert ".q" in res.failures[0].what
    res = run_case(PerturbedUpdate(1e-12, start=6), case)
    assert res.status == "fail" and all(f.step >= 10 for f in res.failures), res.report()
