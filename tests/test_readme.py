"""The README's example runs as written and prints what the README says."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example(capsys):
    pytest.importorskip("torch", reason="the README example steps a torch tensor too")
    text = README.read_text()
    block = re.search(r"## Ten lines.*?```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ndarray [ 0.70158627 -1.70062339] 3")
    assert out[1].startswith("Tensor tensor([ 0.7016, -1.7006], dtype=torch.float64) 3")
    assert "[ 0.70158627 -1.70062339]" in text


def test_readme_first_lines_are_the_two_commands():
    lines = README.read_text().splitlines()
    commands = [ln for ln in lines[:6] if ln.startswith("pip install")]
    assert any("adaptive-ref conform" in c for c in commands)
    assert any("python -m pytest -q" in c for c in commands)
