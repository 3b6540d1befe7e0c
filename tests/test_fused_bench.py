"""The benchmark runner works end to end (tiny sizes, NumPy variants only; no timing asserts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_run_writes_tables(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--sizes", "100", "--tree", "3,300",
           "--variants", "ref,fused,fused_,fused_flat", "--modes", "1", "--budget", "0.01",
           "--samples", "2", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| fused (in place) |" in out.stdout
    assert "### Targets" in out.stdout
    md = list(tmp_path.glob("*.md"))
    assert len(md) == 1 and "reference (NumPy)" in md[0].read_text()
