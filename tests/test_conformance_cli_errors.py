"""`adaptive-ref conform` never passes green on nothing, checks its output path before the run,
and turns damaged goldens into one ``error:`` line (exit 2), never a traceback."""

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_ref.cli import main
from adaptive_ref.conformance import adapters as adapters_mod
from adaptive_ref.conformance.adapters.base import Adapter
from adaptive_ref.conformance.format import GOLDEN_DIR, sha256_text

ROOT = Path(__file__).resolve().parents[1]


class Unusable(Adapter):
    name, description = "unusable", "installed but cannot run here"

    def missing(self):
        return "no device found"


class Counting(Adapter):
    """Records whether any case was run; supports nothing but SGD's float64 base cases."""

    name, profile = "counting", "torch"
    runs = 0

    def supports(self, case):
        return None if case.id == "sgd[torch,float64,base]" else "unsupported: base case only"

    def run(self, case):
        Counting.runs += 1
        from adaptive_ref.conformance.adapters.reference import ReferenceAdapter

        return ReferenceAdapter().run(case)


class NothingSupported(Counting):
    name = "nothing"

    def supports(self, case):
        return "unsupported: nothing"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(adapters_mod, "all_adapters",
                        lambda: [Unusable(), Counting(), NothingSupported()])
    Counting.runs = 0


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_every_requested_implementation_unavailable_is_not_a_pass(fake, capsys):
    assert main(["conform", "--impl", "unusable", "--optimizer", "sgd", "-q"]) == 2
    line = _one_error_line(capsys)
    assert "nothing to check" in line and "unusable (no device found)" in line


def test_reference_cupy_without_cupy_exits_nonzero(capsys):
    """The reported case: installed code, unusable backend (skipped where CuPy works)."""
    from adaptive_ref.backends import Backend

    if Backend.CUPY.missing_reason() is None:
        pytest.skip("CuPy is usable here")
    assert main(["conform", "--impl", "reference-cupy", "--optimizer", "sgd", "-q"]) == 2
    assert "nothing to check" in _one_error_line(capsys)


def test_some_requested_implementation_unavailable_warns(fake, capsys):
    assert main(["conform", "--impl", "unusable,counting", "--optimizer", "sgd", "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: unusable was asked for but is not available: no device found" in err


def test_no_case_ran_is_not_a_pass(fake, capsys):
    assert main(["conform", "--impl", "nothing", "--optimizer", "sgd", "-q"]) == 2
    cap = capsys.readouterr()
    assert "result: NOTHING CHECKED" in cap.out
    assert "error: no case ran: every selected case is n/a for nothing" in cap.err


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_impl_is_an_error(fake, capsys, value):
    assert main(["conform", "--impl", value, "-q"]) == 2
    assert "--impl" in _one_error_line(capsys)
    assert Counting.runs == 0


def test_output_path_is_checked_before_the_run(fake, tmp_path, capsys):
    for bad in [tmp_path / "missing" / "r.json", tmp_path]:  # no such folder; a folder
        assert main(["conform", "--impl", "counting", "--optimizer", "sgd", "-q", "-o",
                     str(bad)]) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"error: -o/--output {str(bad)!r}: cannot write there")
        assert Counting.runs == 0  # nothing was run and lost
    good = tmp_path / "r.txt"
    assert main(["conform", "--impl", "counting", "--optimizer", "sgd", "-q", "-o",
                 str(good)]) == 0
    assert Counting.runs == 1 and "result: PASS" in good.read_text()


def test_output_check_leaves_no_file_behind_when_the_run_cannot_start(fake, tmp_path, capsys):
    out = tmp_path / "r.txt"
    assert main(["conform", "--impl", "counting", "--optimizer", "nope", "-o", str(out)]) == 2
    assert not out.exists()
    capsys.readouterr()


def _golden_copy(tmp_path: Path) -> Path:
    """The shipped SGD goldens alone, with a manifest listing only them."""
    d = tmp_path / "goldens"
    d.mkdir()
    shutil.copy(GOLDEN_DIR / "sgd.json.gz", d / "sgd.json.gz")
    man = json.loads((GOLDEN_DIR / "MANIFEST.json").read_text())
    man["files"] = {"sgd.json.gz": man["files"]["sgd.json.gz"]}
    (d / "MANIFEST.json").write_text(json.dumps(man))
    return d


def _rewrite(d: Path, edit) -> None:
    """Apply ``edit`` to the decoded SGD file and record its new checksum (a valid file
    whose content is wrong, past the checksum)."""
    doc = json.loads(gzip.decompress((d / "sgd.json.gz").read_bytes()))
    edit(doc)
    text = json.dumps(doc)
    (d / "sgd.json.gz").write_bytes(gzip.compress(text.encode()))
    man = json.loads((d / "MANIFEST.json").read_text())
    man["files"]["sgd.json.gz"]["sha256"] = sha256_text(text)
    (d / "MANIFEST.json").write_text(json.dumps(man))


def _truncate(d):
    data = (d / "sgd.json.gz").read_bytes()
    (d / "sgd.json.gz").write_bytes(data[: len(data) // 2])


def _bad_json(d):
    (d / "sgd.json.gz").write_bytes(gzip.compress(b'{"schema_version": 1, "cases": ['))


def _no_sha(d):
    man = json.loads((d / "MANIFEST.json").read_text())
    del man["files"]["sgd.json.gz"]["sha256"]
    (d / "MANIFEST.json").write_text(json.dumps(man))


def _files_not_a_dict(d):
    man = json.loads((d / "MANIFEST.json").read_text())
    man["files"] = ["sgd.json.gz"]
    (d / "MANIFEST.json").write_text(json.dumps(man))


def _steps_a_string(doc):
    doc["cases"][0]["steps"] = "many"


def _cases_not_a_list(doc):
    doc["cases"] = {"sgd": 1}


def _no_manifest(d):
    (d / "MANIFEST.json").unlink()


def _manifest_bad_json(d):
    (d / "MANIFEST.json").write_text("{")


@pytest.mark.parametrize("damage", [
    _truncate, _bad_json, _no_sha, _files_not_a_dict, _no_manifest, _manifest_bad_json,
    lambda d: _rewrite(d, _steps_a_string), lambda d: _rewrite(d, _cases_not_a_list),
], ids=["truncated-gzip", "bad-json", "missing-sha256", "files-not-a-dict", "no-manifest",
        "manifest-bad-json", "steps-a-string", "cases-not-a-list"])
def test_damaged_goldens_are_one_error_line(fake, tmp_path, capsys, damage):
    d = _golden_copy(tmp_path)
    assert main(["conform", "--impl", "counting", "--goldens", str(d), "-q"]) == 0  # intact
    capsys.readouterr()
    damage(d)
    assert main(["conform", "--impl", "counting", "--goldens", str(d), "-q"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: cannot load the golden cases from {str(d)!r}: "), line
    assert Counting.runs == 1  # only the intact run


def test_missing_golden_directory(fake, tmp_path, capsys):
    assert main(["conform", "--impl", "counting", "--goldens", str(tmp_path / "no"), "-q"]) == 2
    assert "cannot load the golden cases" in _one_error_line(capsys)


def test_damaged_goldens_through_the_console_entry_point(tmp_path):
    """The same as a user sees it: a subprocess, stderr one line, no traceback."""
    d = _golden_copy(tmp_path)
    _truncate(d)
    r = subprocess.run([sys.executable, "-m", "adaptive_ref", "conform", "--impl",
                        "reference-numpy", "--goldens", str(d), "-q"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot load the golden cases")
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
