"""The golden format: reader round trip, schema errors, checksums, the gradient generator, and
the fidelity of the committed goldens against their own derived budget."""

import gzip
import json

import numpy as np
import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance import rng, tolerance
from adaptive_ref.conformance.cases import catalogue


@pytest.fixture(scope="module")
def cases():
    return fmt.load_cases()


def test_manifest_lists_every_file_and_checksums_verify(cases):
    man = fmt.read_manifest()
    assert man["schema_version"] == fmt.SCHEMA_VERSION
    files = sorted(p.name for p in fmt.GOLDEN_DIR.glob("*.json.gz"))
    assert sorted(man["files"]) == files
    assert sum(e["cases"] for e in man["files"].values()) == len(cases)


def test_goldens_cover_the_catalogue(cases):
    """Every case the registry-driven catalogue defines has a golden, and nothing else does."""
    assert sorted(c.id for c in catalogue()) == sorted(c.id for c in cases)


def test_round_trip(cases):
    for case in cases[::37]:
        back = fmt.case_from_dict(json.loads(json.dumps(fmt.case_to_dict(case))))
        assert back.id == case.id and back.hparams == case.hparams
        for t, snap in case.expected.items():
            for k, v in snap["params"].items():
                np.testing.assert_array_equal(back.expected[t]["params"][k], v)
        assert fmt.case_to_dict(back) == fmt.case_to_dict(case)


def _one(cases):
    return json.loads(json.dumps(fmt.case_to_dict(cases[0])))


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d.pop("dtype"), r"missing field 'dtype'"),
    (lambda d: d.update(dtype="float16"), r"dtype 'float16' is not one of float64, float32"),
    (lambda d: d.update(kind="online"), r"kind 'online'"),
    (lambda d: d.update(checkpoints=[5, 2]), r"checkpoints must be increasing"),
    (lambda d: d["params"][0].update(init=[1.0, 2.0]), r"params\[0\] init: expected a list of 1"),
    (lambda d: d["params"][0]["grad"].update(generator="mt19937"), r"is not 'splitmix64-v1'"),
    (lambda d: d["expected"]["1"]["params"].update(zz=[0.0]), r"unknown param 'zz'"),
    (lambda d: d.update(steps="200"), r"field 'steps' must be int"),
])
def test_schema_errors_name_the_field(cases, mutate, match):
    d = _one(cases)
    mutate(d)
    with pytest.raises(fmt.FormatError, match=match):
        fmt.case_from_dict(d)


def test_nonfinite_and_version_errors(cases):
    d = _one(cases)
    d["params"][0]["init"] = [float("nan")]
    with pytest.raises(fmt.FormatError, match="not a finite JSON number"):
        fmt.case_from_dict(d)
    text = json.dumps({"schema_version": 99, "cases": []})
    with pytest.raises(fmt.FormatError, match="schema_version 99 is not supported"):
        fmt.parse(text)
    with pytest.raises(fmt.FormatError, match="not valid JSON"):
        fmt.parse("{")


def test_checksum_mismatch_is_reported(tmp_path):
    src = fmt.GOLDEN_DIR / "sgd.json.gz"
    (tmp_path / "MANIFEST.json").write_text((fmt.GOLDEN_DIR / "MANIFEST.json").read_text())
    text = gzip.decompress(src.read_bytes()).decode().replace('"lr": 0.001', '"lr": 0.002', 1)
    fmt.write_file(tmp_path / "sgd.json.gz", text)
    with pytest.raises(fmt.FormatError, match="sha256 .* does not match the manifest"):
        fmt.read_file(tmp_path / "sgd.json.gz")


def test_write_is_deterministic(tmp_path):
    fmt.write_file(tmp_path / "a.gz", "x" * 100)
    fmt.write_file(tmp_path / "b.gz", "x" * 100)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_splitmix64_reference_values():
    # first outputs of splitmix64 seeded with 0 (the published test vector)
    got = rng.splitmix64(0, np.arange(3, dtype=np.uint64))
    assert [int(x) for x in got] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_gradient_generator_properties():
    spec = {"seed": 7, "scale": 1e-6, "offset": 0.1, "zero_fraction": 0.5}
    g1 = rng.gradient(spec, (4, 5), 3)
    assert g1.shape == (4, 5) and g1.dtype == np.float64
    np.testing.assert_array_equal(g1, rng.gradient(spec, (4, 5), 3))
    assert not np.array_equal(g1, rng.gradient(spec, (4, 5), 4))
    assert 0 < np.count_nonzero(g1 == 0) < g1.size  # exact zeros, not all
    assert np.max(np.abs(g1)) <= 1.1e-6
    sparse = {**spec, "zero_fraction": 0.0, "row_fraction": 0.3}
    g = rng.gradient(sparse, (10, 4), 2)
    rows = rng.active_rows(sparse, (10, 4), 2)
    assert set(np.nonzero(np.any(g != 0, axis=1))[0]) == set(rows)


def test_float32_inputs_are_representable(cases):
    for c in cases:
        if c.dtype == "float32":
            for p in c.params:
                np.testing.assert_array_equal(p.init.astype(np.float32).astype(np.float64),
                                              p.init)


# Finding (docs/conformance.md, "the budget"): NAdam's update is the difference of two terms,
# lr(1-mu_t)/(1-P_t) g/d and lr mu_{t+1}/(1-P_t mu_{t+1}) m/d; where they cancel (parameter "a"
# starts at 0 and the second gradient has the opposite sign) the rounding error is relative to
# the terms, not to their difference, and the counted budget (k t with k = 20) undercounts: the
# float64 golden itself is 42.75 ULP from the 50-digit value at step 2 (budget 40).
KNOWN_OVER_BUDGET = {
    "nadam[torch,float64,schedule]": "two-term cancellation at step 2",
    "nadam[torch,float32,schedule]": "two-term cancellation at step 2",
    # the same case under Keras' schedule (psi = 1) and its torch backend's profile
    "nadam[keras,float64,schedule]": "two-term cancellation at step 2",
    "nadam[keras-torch,float64,schedule]": "two-term cancellation at step 2",
}


def _float32_factors(case) -> bool:
    """A float32 case whose scalar factors (or EMA weights) are float32 values by definition
    (``factor_precision`` / ``ema_weight_precision`` = 'param'; see fidelity.py)."""
    return case.dtype == "float32" and "param" in (
        case.hparams.get("factor_precision"), case.hparams.get("ema_weight_precision"))


def test_fidelity_recorded_and_within_the_float64_budget(cases):
    """The goldens are the oracle only if their own error (vs 50 digits) fits the budget at the
    step where it was measured; the exceptions are listed findings.

    A float32 case with float32 factors is generated by the float64 reference with those factors
    computed in float32 arithmetic, while the oracle rounds only beta and beta**t (fidelity.py):
    the two differ by the float32 rounding of the remaining factor operations, which the float32
    budget counts. Its golden may use at most the half of the float32 budget that covers the
    golden's own operand order (tolerance.py); measured: 8.8 % at most (RAdam, step 10)."""
    over = {}
    for c in cases:
        fid = c.fidelity
        assert fid is not None and fid["digits"] >= 50, c.id
        if fid["max_ulp"] == 0:
            continue
        step = int(fid["at"].rsplit("step", 1)[1])
        allowed = tolerance.budget(c.optimizer, step, "float64", c.hparams)
        if _float32_factors(c):  # float64 ULPs per float32 ULP: 2**29
            allowed = 0.5 * tolerance.budget(c.optimizer, step, "float32", c.hparams) * 2.0**29
        if fid["max_ulp"] > allowed:
            over[c.id] = (fid["max_ulp"], allowed, fid["at"])
    assert set(over) == set(KNOWN_OVER_BUDGET), over
    for cid, (got, allowed, _) in over.items():
        assert got <= 1.25 * allowed, (cid, got, allowed)  # a new, larger excess is news
