"""Package layout: the conformance suite installs inside ``adaptive_ref`` (no top-level package
named ``conformance`` in site-packages) and the suite and ``adaptive_ref.testing`` do not import
each other in a cycle (testing uses the suite; the suite uses only the core)."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_top_level_conformance_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = cfg["options.packages.find"]["include"].split()
    assert all(p == "adaptive_ref" or p.startswith("adaptive_ref.") for p in include), include
    data = cfg["options.package_data"]
    assert "conformance" not in data and "adaptive_ref.conformance" in data
    assert not (ROOT / "conformance").exists()
    from setuptools import find_packages

    found = find_packages(str(ROOT), include=include)
    assert "adaptive_ref.conformance" in found
    assert not [p for p in found if p.split(".")[0] != "adaptive_ref"]


def test_conformance_does_not_import_testing():
    """Importing the whole suite (CLI, adapters, generator) never loads adaptive_ref.testing."""
    code = ("import sys, adaptive_ref.conformance as c, adaptive_ref.conformance.cli, "
            "adaptive_ref.conformance.generate, adaptive_ref.conformance.adapters as a; "
            "a.all_adapters(); "
            "bad = [m for m in sys.modules if m.startswith('adaptive_ref.testing')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
