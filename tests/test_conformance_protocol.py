"""The adapter protocol, expected-failure files, ULP helpers and the third-party entry points."""

import numpy as np
import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters.base import Adapter
from adaptive_ref.conformance.runner import load_xfails, match, run_all, run_case
from adaptive_ref.testing import assert_close_ulp, ulp_distance, ulp_error

SGD = [c for c in fmt.load_cases("sgd") if c.id == "sgd[torch,float64,base]"][0]


class NumpySGD(Adapter):
    """The smallest complete adapter: plain SGD in NumPy, answering the torch profile."""

    name, profile = "numpy-sgd", "torch"

    def supports(self, case):
        hp = case.hparams
        if case.optimizer != "sgd" or hp["momentum"] or hp["weight_decay"] or hp["maximize"]:
            return "unsupported: plain SGD only"
        return None

    def build(self, case):
        return {"p": case.init_params(), "lr": {p.name: case.param_hparams(p.name)["lr"]
                                                for p in case.params}}

    def step(self, h, grads, lr):
        for k, g in grads.items():
            h["p"][k] = h["p"][k] - (lr if lr is not None else h["lr"][k]) * g

    def read(self, h):
        return {k: v.copy() for k, v in h["p"].items()}, {}


def test_minimal_adapter_passes_and_reports_unsupported():
    cases = fmt.load_cases("sgd", dtype="float64")
    results = run_all([NumpySGD()], cases)
    by_status = {r.status for r in results}
    assert "pass" in by_status and "n/a" in by_status and "fail" not in by_status
    assert all(r.reason.startswith("unsupported: ") for r in results if r.status == "n/a")
    assert all(r.case_id.startswith("sgd[torch,") for r in results)  # its profile only


def test_a_crashing_implementation_is_an_error_row_not_a_crash():
    class Crashes(NumpySGD):
        def step(self, h, grads, lr):
            raise RuntimeError("boom")

    res = run_case(Crashes(), SGD)
    assert res.status == "error" and "boom" in res.reason


def test_xfail_file(tmp_path):
    (tmp_path / "x-xfails.txt").write_text("# comment\n\nsgd[torch,*]  # a reviewed reason\n")
    assert load_xfails("x", tmp_path) == [("sgd[torch,*]", "a reviewed reason")]
    (tmp_path / "y-xfails.txt").write_text("sgd[torch,*]\n")
    with pytest.raises(ValueError, match="needs a reason"):
        load_xfails("y", tmp_path)
    assert match("sgd[torch,*]", "sgd[torch,float64,base]")
    assert not match("sgd[torch,*]", "sgd[optax,float64,base]")


def test_xfail_and_stale_entries():
    class Wrong(NumpySGD):
        def step(self, h, grads, lr):
            super().step(h, {k: 1.01 * g for k, g in grads.items()}, lr)

    res = run_case(Wrong(), SGD, xfails=[("sgd[torch,float64,base]", "known")])
    assert res.status == "xfail" and res.reason == "known"
    res = run_case(NumpySGD(), SGD, xfails=[("sgd[torch,float64,base]", "known")])
    assert res.status == "xpass"


def test_ulp_helpers():
    a = np.array([1.0, -0.0, 2.0], dtype=np.float32)
    b = np.nextafter(a, np.float32(np.inf))
    np.testing.assert_array_equal(ulp_distance(a, b), [1, 1, 1])
    assert ulp_distance(np.array([-0.0]), np.array([0.0]))[0] == 0
    assert ulp_error([1.0 + 2**-52], [1.0], "float64") == 1.0
    assert ulp_error([1.0 + 2**-23], [1.0], "float32") == 1.0
    assert ulp_error([0.0], [0.0], "float32") == 0.0
    assert ulp_error([np.nan], [1.0], "float64") == np.inf
    assert_close_ulp(np.float32([1, 2]), [1, 2], max_ulp=0)
    with pytest.raises(AssertionError, match=r"error 2 ULP \(float32\) > allowed 1 ULP"):
        assert_close_ulp(np.float32([1 + 2**-22]), [1.0], max_ulp=1, what="x")


def test_replay_helper_drives_a_functional_optimizer():
    from adaptive_ref.testing import assert_matches_golden, replay

    def init(name, p, hp):
        return {}

    def step(name, p, g, s, hp):
        return p - hp["lr"] * g, s

    assert_matches_golden(SGD, replay(SGD, init=init, step=step))


@pytest.mark.golden("sgd", profile="torch", dtype="float32", tags=("base",))
def test_golden_marker_parametrises(golden_case):
    """The pytest-plugin form: one test per golden case (here the single float32 base case)."""
    from adaptive_ref.testing import assert_matches_golden, replay

    result = replay(golden_case, init=lambda n, p, hp: {},
                    step=lambda n, p, g, s, hp: (p - np.float32(hp["lr"]) * g, s))
    assert_matches_golden(golden_case, result)


def test_the_documented_adapter_example_runs():
    """docs/conformance.md's worked adapter (the reference on torch) passes its cases."""
    pytest.importorskip("torch")
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text()
    block = text.split("## Writing an adapter", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 35
    ns = {}
    exec(compile(block, "docs/conformance.md", "exec"), ns)
    adapter = ns["MyReferenceOnTorch"]()
    cases = [c for c in fmt.load_cases() if "groups" in c.tags][:6]
    cases.append([c for c in fmt.load_cases("lazy_adam")][0])
    results = run_all([adapter], [c.truncated(10) for c in cases])
    assert [r.status for r in results] == ["pass"] * 6 + ["n/a"], [r.report() for r in results]
