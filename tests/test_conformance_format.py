"""The golden format: reader round trip, schema errors, checksums and the gradient generator
(the goldens' exactness: tests/test_conformance_drift.py)."""

import gzip
import json

import numpy as np
import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance import rng
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


def test_state_fields_of_their_own_shapes_round_trip(cases):
    """Adafactor's factors: stored flat with the parameter's ``state_shapes``, read back in
    those shapes; a field whose length does not match its shape, or a malformed shape, is an
    error naming it."""
    case = next(c for c in cases if c.id == "adafactor[torch,float64,base]")
    c = next(p for p in case.params if p.name == "c")
    assert c.state_shapes == {"v_row": (3, 1), "v_col": (1, 5)}
    d = json.loads(json.dumps(fmt.case_to_dict(case)))
    back = fmt.case_from_dict(d)
    snap = back.expected[200]["state"]["c"]
    assert snap["v_row"].shape == (3, 1) and snap["v_col"].shape == (1, 5)
    np.testing.assert_array_equal(snap["v_row"], case.expected[200]["state"]["c"]["v_row"])
    d["expected"]["1"]["state"]["c"]["v_col"].append(1.0)
    with pytest.raises(fmt.FormatError, match=r"state\.c\.v_col"):
        fmt.case_from_dict(d)
    d = fmt.case_to_dict(case)
    d["params"][2]["state_shapes"] = {"v_row": [3, "1"]}
    with pytest.raises(fmt.FormatError, match=r"state_shapes\.v_row must be a list of integers"):
        fmt.case_from_dict(d)
