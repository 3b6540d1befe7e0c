"""`adaptive-ref conform`: matrix, JSON, JUnit, exit status, and the base-install default."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from adaptive_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_table(capsys):
    assert main(["conform", "--impl", "reference-numpy", "--optimizer", "sgd,adagrad",
                 "--dtype", "float64", "-q"]) == 0
    out = capsys.readouterr().out
    # the column of reference-numpy is headed "numpy" under the group label "reference"
    group, head = out.splitlines()[:2]
    assert group.split() == ["reference"] and head.split() == ["optimizer", "numpy"]
    assert "sgd" in out and "ok " in out and "result: PASS" in out
    assert "Why does my port differ?" in out and "eps_placement: 'outside' -> 'inside'" in out


def test_json_and_junit(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["conform", "--impl", "reference-numpy", "--optimizer", "sgd", "--format",
                 "json", "-o", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["matrix"]["sgd"]["reference-numpy"]["pass"] > 0
    assert {r["status"] for r in doc["results"]} == {"pass"}
    assert doc["profile_distances"]
    assert main(["conform", "--impl", "reference-numpy", "--optimizer", "adamax", "--format",
                 "junit", "-q"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert root.find("testsuite").get("failures") == "0"


def test_failure_gives_exit_1_and_a_report(monkeypatch, capsys):
    from adaptive_ref.conformance import adapters
    from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
    from adaptive_ref.testing.backends import Backend

    class Wrong(ReferenceAdapter):
        name = "wrong"

        def __init__(self):
            super().__init__(Backend.NUMPY)
            self.name = "wrong"

        def step(self, h, grads, lr):
            super().step(h, {k: g * 1.001 for k, g in grads.items()}, lr)

    monkeypatch.setattr(adapters, "all_adapters", lambda: [Wrong()])
    assert main(["conform", "--impl", "wrong", "--optimizer", "sgd", "--case",
                 "sgd[torch,float64,base]", "-q"]) == 1
    err = capsys.readouterr().err
    assert "sgd[torch,float64,base] [wrong]: fail" in err and "first divergence" in err


def test_bad_arguments(capsys):
    assert main(["conform", "--impl", "nope", "-q"]) == 2
    assert "unknown implementation" in capsys.readouterr().err
    assert main(["conform", "--optimizer", "nope", "-q"]) == 2
    assert main(["conform", "--list"]) == 0
    assert "torch-fused" in capsys.readouterr().out


def test_base_install_checks_the_reference_only():
    """Without torch, jax, optax and dask the default run checks the reference on NumPy (and
    array-api-strict when present) and reports the rest as not available."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'jax', 'optax', 'dask'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from adaptive_ref.cli import main\n"
            "sys.exit(main(['conform', '--optimizer', 'sgd', '--dtype', 'float32', '-q']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reference-numpy" in r.stdout and "pass" in r.stdout
    assert "not available" in r.stdout and "torch-forloop" in r.stdout
