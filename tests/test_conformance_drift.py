"""Drift guard: the committed goldens are the exact trajectories of their inputs, bit for bit.

The whole catalogue takes minutes to recompute (``python -m adaptive_ref.conformance.generate
--check``); this test recomputes a sample: every closed-loop case on the logistic objective (its
gradient involves exp, so a golden that depended on a library's exp would drift), one short case
per optimizer and one long base case, with the exact generator (mpmath, not the float64
reference, whose output is just another implementation under test).
"""

import dataclasses
import json

import numpy as np
import pytest

from adaptive_ref.conformance import error_model, exact, generate
from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.cases import catalogue

COMMITTED = {c.id: c for c in fmt.load_cases()}


def _sample():
    cases = catalogue()
    out, seen = [], set()
    for c in cases:
        if c.kind == "closed_loop" and "logistic" in c.tags:
            out.append(c)
        elif "knob" in c.tags and c.optimizer not in seen:
            seen.add(c.optimizer)
            out.append(c)
    out.append(next(c for c in cases if c.id == "adam[torch,float32,base]"))
    return out


SAMPLE = _sample()


def test_the_catalogue_and_the_committed_goldens_have_the_same_inputs():
    cases = {c.id: c for c in catalogue()}
    assert sorted(cases) == sorted(COMMITTED)
    for cid, c in cases.items():
        old = COMMITTED[cid]
        a = fmt.case_to_dict(dataclasses.replace(c, expected={}, fidelity=None))
        b = fmt.case_to_dict(dataclasses.replace(old, expected={}, fidelity=None))
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), cid


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_committed_goldens_are_the_exact_trajectory(case):
    old = COMMITTED[case.id]
    traj = exact.trajectory(case, exact.DIGITS[0])
    drift = []
    for t, snap in traj.items():
        for k, v in snap["params"].items():
            if not np.array_equal(old.expected[t]["params"][k].reshape(-1), v):
                drift.append(f"step {t} params.{k}")
        for k, fields in snap["state"].items():
            for f, v in fields.items():
                if not np.array_equal(np.asarray(old.expected[t]["state"][k][f]).reshape(-1),
                                      np.asarray(v).reshape(-1)):
                    drift.append(f"step {t} state.{k}.{f}")
        assert snap["scale"] == old.expected[t]["scale"], (case.id, t)
    assert not drift, (f"{case.id}: the exact trajectory differs from the committed golden at "
                       + ", ".join(drift[:10]) + "; review, then regenerate with "
                       "`python -m adaptive_ref.conformance.generate --force`")


@pytest.mark.parametrize("cid", ["sgd[torch,float64,closed:quadratic]",
                                 "adagrad[optax,float32,schedule]",
                                 "nadam[torch,float32,groups]",
                                 # per-tensor (full per-parameter Jacobian, shared ratio terms)
                                 "lars[optax,float32,schedule]", "lamb[keras,float64,groups]",
                                 # per-tensor with factored fields of their own shapes
                                 "adafactor[torch,float32,groups]"])
def test_error_record_reproduces(cid):
    old = COMMITTED[cid]
    rec = error_model.propagate(old)
    for t in old.checkpoints:
        a, b = rec[t], old.expected[t]["error"]
        for k in a["params"]:
            np.testing.assert_allclose(a["params"][k], b["params"][k], rtol=1e-6, atol=0)
        for k, fields in a["state"].items():
            for f, v in fields.items():
                np.testing.assert_allclose(v, b["state"][k][f], rtol=1e-6, atol=0)


def test_every_committed_case_is_certified():
    man = fmt.read_manifest()
    assert man["generator"]["exact_digits"] == list(exact.DIGITS)
    assert all(e["certified"] for e in man["files"].values())
    for c in COMMITTED.values():
        assert c.fidelity == {"method": "exact", "digits": list(exact.DIGITS),
                              "elements": "all", "certified": True}, c.id


@pytest.fixture
def tiny(monkeypatch):
    """``generate.build`` replaced by the committed sgd goldens (no recomputation)."""
    groups = {"sgd": [c for c in COMMITTED.values() if c.optimizer == "sgd"]}
    monkeypatch.setattr(generate, "build", lambda *a, **kw: (groups, []))
    return groups


def test_generate_refuses_a_directory_holding_only_a_manifest(tmp_path, capsys, tiny):
    (tmp_path / "MANIFEST.json").write_text("{}\n")
    assert generate.main(["--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "MANIFEST.json").read_text() == "{}\n"
    assert not list(tmp_path.glob("*.json.gz"))


def test_generate_force_leaves_unrelated_files_alone(tmp_path, capsys, tiny):
    (tmp_path / "notes.json.gz").write_bytes(b"not ours")
    (tmp_path / "adam.json.gz").write_bytes(b"an old golden of a registered optimizer")
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"files": {"../escape.json.gz": {}}}))
    assert generate.main(["--dir", str(tmp_path)]) == 2  # occupied: needs --force
    assert generate.main(["--dir", str(tmp_path), "--force"]) == 0
    out = capsys.readouterr().out
    assert "adam.json.gz: removed" in out and "notes.json.gz" not in out
    assert (tmp_path / "notes.json.gz").read_bytes() == b"not ours"
    assert not (tmp_path / "adam.json.gz").exists()
    assert sorted(p.name for p in tmp_path.glob("*.json.gz")) == ["notes.json.gz",
                                                                   "sgd.json.gz"]
    assert fmt.load_cases("sgd", directory=tmp_path)  # the new manifest verifies


def test_generate_check_reports_a_changed_golden(tmp_path, capsys, tiny):
    assert generate.main(["--dir", str(tmp_path)]) == 0  # an empty directory: written
    assert generate.main(["--dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "rmsprop.json.gz").write_bytes((tmp_path / "sgd.json.gz").read_bytes())
    assert generate.main(["--dir", str(tmp_path), "--check"]) == 1
    assert "rmsprop.json.gz: removed" in capsys.readouterr().out


def test_generate_optimizer_force_rewrites_only_that_optimizer(tmp_path, capsys, tiny):
    import shutil

    for name in ("adam.json.gz", "MANIFEST.json"):
        shutil.copy(fmt.GOLDEN_DIR / name, tmp_path / name)
    before = (tmp_path / "adam.json.gz").read_bytes()
    assert generate.main(["--dir", str(tmp_path), "--optimizer", "sgd", "--force"]) == 0
    assert "sgd.json.gz: new" in capsys.readouterr().out
    assert (tmp_path / "adam.json.gz").read_bytes() == before  # the other optimizer untouched
    files = json.loads((tmp_path / "MANIFEST.json").read_text())["files"]
    assert sorted(files) == ["adam.json.gz", "sgd.json.gz"]  # entries of absent files dropped
    assert fmt.load_cases("sgd", directory=tmp_path) and fmt.load_cases("adam", directory=tmp_path)
