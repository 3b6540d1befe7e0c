"""The docs build: Sphinx's html and doctest builders on docs/, with warnings as errors.

This is the CI check for the documentation site: the registry-generated pages, the figures drawn
by the build (matplotlib), autodoc of the public API (the step functions' ``.. math::`` blocks)
and every ``{doctest}`` block and ``>>>`` example must build and pass. Both builders share one
doctree directory, so the sources (and the figures) are read once. Skipped, with the reason, when
the ``docs`` extra (sphinx, furo, myst-parser, matplotlib) is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NEEDED = ("sphinx", "furo", "myst_parser", "matplotlib")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"docs extra not installed (missing: {', '.join(MISSING)}); "
                          f"pip install -e '.[docs]'")


def _sphinx(builder: str, out: Path, doctrees: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
           "-d", str(doctrees), str(DOCS), str(out / builder)]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    doctrees = out / "doctrees"
    return out, {b: _sphinx(b, out, doctrees) for b in ("html", "doctest")}


def _report(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n" \
           f"--- stdout ---\n{proc.stdout[-4000:]}"


def test_html_builds_without_warnings(built):
    out, procs = built
    proc = procs["html"]
    assert proc.returncode == 0, _report(proc)
    html = out / "html"
    # one page per registered optimizer, generated from the registry
    from adaptive_ref.registry import REGISTRY

    for name in REGISTRY:
        assert (html / "optimizers" / f"{name}.html").is_file(), name
    # the figures drawn by the build
    images = {p.name for p in (html / "_images").iterdir()}
    for fig in ("trajectories_quadratic.png", "trajectories_rosenbrock.png",
                "kalman_gain_main.png"):
        assert fig in images, sorted(images)
    # math from the step functions' docstrings is rendered (MathJax markup, not raw reST)
    adam = (html / "optimizers" / "adam.html").read_text(encoding="utf-8")
    assert 'class="math' in adam and ".. math::" not in adam


def test_doctests_pass(built):
    out, procs = built
    proc = procs["doctest"]
    assert proc.returncode == 0, _report(proc) + "\n" + _doctest_output(out)
    summary = _doctest_output(out)
    assert "0 failures in tests" in summary, summary


def _doctest_output(out: Path) -> str:
    path = out / "doctest" / "output.txt"
    return path.read_text(encoding="utf-8")[-4000:] if path.exists() else "(no output.txt)"
