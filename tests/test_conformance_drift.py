"""Drift guard: the committed goldens equal what the reference produces now, bit for bit."""

import dataclasses

import numpy as np
import pytest

from adaptive_ref.conformance import fidelity, generate
from adaptive_ref.conformance import format as fmt


@pytest.fixture(scope="module")
def regenerated():
    return generate.build(with_fidelity=False)


def test_committed_goldens_equal_the_reference_now(regenerated):
    committed = {c.id: c for c in fmt.load_cases()}
    drift = []
    for cases in regenerated.values():
        for case in cases:
            old = committed.pop(case.id, None)
            if old is None:
                drift.append(f"{case.id}: not in the committed goldens")
                continue
            if old.hparams != case.hparams or old.checkpoints != case.checkpoints:
                drift.append(f"{case.id}: inputs changed")
                continue
            for t, snap in case.expected.items():
                for k, v in snap["params"].items():
                    if not np.array_equal(old.expected[t]["params"][k], v):
                        drift.append(f"{case.id}: step {t} params.{k}")
                for k, fields in snap["state"].items():
                    for f, v in fields.items():
                        if not np.array_equal(np.asarray(old.expected[t]["state"][k][f]),
                                              np.asarray(v)):
                            drift.append(f"{case.id}: step {t} state.{k}.{f}")
    drift += [f"{cid}: committed but no longer in the catalogue" for cid in committed]
    assert not drift, ("the reference no longer reproduces the committed goldens; review, then "
                       "regenerate with `python -m adaptive_ref.conformance.generate --force`:\n  "
                       + "\n  ".join(drift[:30]))


def test_fidelity_record_reproduces(regenerated):
    committed = {c.id: c for c in fmt.load_cases()}
    for opt in ("adam", "radam", "sgd"):
        case = regenerated[opt][0]
        fid = fidelity.measure(dataclasses.replace(case, expected=committed[case.id].expected))
        assert fid == committed[case.id].fidelity


def test_generate_refuses_to_overwrite(tmp_path, capsys, monkeypatch, regenerated):
    monkeypatch.setattr(generate, "build", lambda **kw: regenerated)  # reuse the fixture's run
    for p in fmt.GOLDEN_DIR.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    text = (tmp_path / "MANIFEST.json").read_text()
    # a changed golden directory: generate reports the difference and refuses without --force
    (tmp_path / "extra.json.gz").write_bytes((tmp_path / "sgd.json.gz").read_bytes())
    assert generate.main(["--dir", str(tmp_path), "--no-fidelity", "--check"]) == 1
    assert generate.main(["--dir", str(tmp_path), "--no-fidelity"]) == 2
    out = capsys.readouterr()
    assert "extra.json.gz: removed" in out.out
    assert "refusing to overwrite" in out.err
    assert (tmp_path / "MANIFEST.json").read_text() == text
