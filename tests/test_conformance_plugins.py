"""Adapters from outside the package (--adapter, the entry-point group), a user's expected
failures, and failure reports whose reproduce line runs (CLI, plain Python, pytest)."""

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adaptive_ref.cli import main
from adaptive_ref.conformance import adapters as adapters_mod
from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters import AdapterSpecError, load_adapter_spec
from adaptive_ref.conformance.runner import reproduce_command, run_all, run_case

ROOT = Path(__file__).resolve().parents[1]
BASE = "sgd[torch,float64,base]"

# An adapter module as a user writes it, outside the package: plain SGD in NumPy (torch profile),
# a variant that scales the gradient of the base case only, and a factory giving both.
ADAPTER_MODULE = '''
import math

from adaptive_ref.conformance.adapters.base import Adapter


class MySGD(Adapter):
    name, profile = "my-sgd", "torch"
    description = "plain SGD in NumPy"

    def supports(self, case):
        hp = case.hparams
        if case.optimizer != "sgd" or hp["momentum"] or hp["weight_decay"] or hp["maximize"]:
            return "unsupported: plain SGD only"
        return None

    def build(self, case):
        self.scale = 1.001 if (self.wrong_on and self.wrong_on in case.id) else 1.0
        return {"p": case.init_params(),
                "lr": {p.name: case.param_hparams(p.name)["lr"] for p in case.params}}

    wrong_on = None

    def step(self, h, grads, lr):
        for k, g in grads.items():
            h["p"][k] = h["p"][k] - (lr if lr is not None else h["lr"][k]) * (self.scale * g)

    def read(self, h):
        return {k: v.copy() for k, v in h["p"].items()}, {}


class MyWrongSGD(MySGD):
    name, wrong_on = "my-wrong", "base"


def both():
    return [MySGD(), MyWrongSGD()]


NOT_AN_ADAPTER = 3


class NotASubclass:
    name = "nope"


def broken():
    raise RuntimeError("cannot start the device")


def unnamed():
    a = MySGD()
    a.name = "has space"
    return a
'''


def _write_module(directory: Path, name: str) -> Path:
    (directory / f"{name}.py").write_text(ADAPTER_MODULE)
    return directory


def _env(*paths) -> dict:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)  # the child is not this test
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *map(str, paths)])
    return env


def _conform(args, env, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "adaptive_ref", "conform", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def _run_reproduce_line(line: str, env):
    """Run a printed ``reproduce: adaptive-ref conform ...`` line with this checkout's code."""
    argv = shlex.split(line.split("reproduce:", 1)[1])
    assert argv[:2] == ["adaptive-ref", "conform"], line
    return _conform(argv[2:], env)


def test_an_adapter_outside_the_package_runs_through_the_cli(tmp_path):
    _write_module(tmp_path, "mymod")
    env = _env(tmp_path)
    r = _conform(["--adapter", "mymod:MySGD", "--optimizer", "sgd", "-q"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "my-sgd" in r.stdout and "result: PASS" in r.stdout
    assert "n/a" in r.stdout.split("summary:")[1]  # momentum etc. are n/a with their reason

    # a factory giving two adapters; the failing one's report reproduces what ran
    xf = tmp_path / "my-wrong-xfails.txt"
    xf.write_text("sgd[torch,float32,base]  # reviewed: float32 base scaled on purpose\n")
    r = _conform(["--adapter", "mymod:both", "--optimizer", "sgd", "--dtype", "float64",
                  "--expected-failures", str(xf), "-q"], env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL 1/" in r.stdout and "my-sgd" in r.stdout
    lines = [x for x in r.stderr.splitlines() if "reproduce:" in x]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    for part in ("--adapter mymod:both", "--impl my-wrong", "--optimizer sgd",
                 "--dtype float64", f"--case '{BASE}'",
                 "--expected-failures " + shlex.quote(f"my-wrong={xf}")):
        assert part in line, line
    again = _run_reproduce_line(line, env)  # the printed line runs, and fails the same way
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"{BASE} [my-wrong]: fail" in again.stderr and "first divergence" in again.stderr
    assert "FAIL 1/1" in again.stdout


def test_bad_adapter_values_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    _write_module(tmp_path, "badmod_cli")
    monkeypatch.syspath_prepend(str(tmp_path))
    for value, says in [
            ("badmod_cli", "is not MODULE:CLASS"),
            ("badmod_cli:", "is not MODULE:CLASS"),
            ("no_such_module_xyz:A", "cannot import module 'no_such_module_xyz'"),
            ("badmod_cli:Missing", "has no attribute 'Missing'"),
            ("badmod_cli:NOT_AN_ADAPTER", "is a int, not an Adapter"),
            ("badmod_cli:NotASubclass", "not a subclass of"),
            ("badmod_cli:broken", "RuntimeError: cannot start the device"),
            ("badmod_cli:unnamed", "without spaces or commas"),
            ("badmod_cli:math", "is a module, not an Adapter"),
    ]:
        assert main(["conform", "--adapter", value, "-q"]) == 2, value
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: --adapter '{value}'"), err
        assert says in err, (value, err)
        assert "Traceback" not in err


def test_adapter_name_clash_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "clashmod.py").write_text(ADAPTER_MODULE.replace('"my-sgd"', '"reference-numpy"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AdapterSpecError, match="already taken"):
        adapters_mod.known_adapters(["clashmod:MySGD"])


def _dist(directory: Path, module: str, entries: str) -> None:
    _write_module(directory, module)
    info = directory / "mylib-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylib\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[adaptive_ref.adapters]\n{entries}\n")


def test_an_entry_point_adapter_is_listed_and_runs(tmp_path):
    _dist(tmp_path, "mylib_adapters",
          "my-sgd = mylib_adapters:MySGD\nbroken = mylib_adapters_gone:X")
    env = _env(tmp_path)
    r = _conform(["--list"], env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    flat = " ".join(out.split())
    assert "my-sgd" in out and "entry point 'my-sgd' of mylib 1.0" in flat
    assert "mylib_adapters:MySGD" in flat
    # a broken entry point is listed as not available with the reason; nothing crashes
    broken = out.split("\nbroken", 1)[1]
    assert broken.split()[:2] == ["not", "available"]
    assert "cannot import module 'mylib_adapters_gone'" in " ".join(broken.split())
    assert max(len(x) for x in out.splitlines()) <= 100
    r = _conform(["--impl", "my-sgd", "--optimizer", "sgd", "-q"], env)
    assert r.returncode == 0 and "result: PASS" in r.stdout, r.stdout + r.stderr


def test_an_entry_point_adapter_is_in_the_default_run(tmp_path, monkeypatch, capsys):
    """In-process: the shipped list cut to the NumPy reference, the entry point on sys.path."""
    from adaptive_ref.backends import Backend
    from adaptive_ref.conformance.adapters.reference import ReferenceAdapter

    _dist(tmp_path, "mylib_adapters_default", "my-sgd = mylib_adapters_default:MySGD")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(adapters_mod, "all_adapters", lambda: [ReferenceAdapter(Backend.NUMPY)])
    assert main(["conform", "--optimizer", "sgd", "--dtype", "float32", "-q",
                 "--no-profiles"]) == 0
    out = capsys.readouterr().out
    assert "(reference-numpy, my-sgd)" in out and "result: PASS" in out


def test_user_expected_failures(tmp_path, monkeypatch, capsys):
    _write_module(tmp_path, "xfmod")
    monkeypatch.syspath_prepend(str(tmp_path))
    base = ["conform", "--adapter", "xfmod:MyWrongSGD", "--optimizer", "sgd", "--dtype",
            "float64", "-q"]
    assert main(base) == 1  # the base case fails
    capsys.readouterr()
    good = tmp_path / "reviewed.txt"
    good.write_text("# mine\nsgd[torch,float64,base]  # reviewed: scaled on purpose\n"
                    "sgd[torch,float64,groups]  # a stale entry: this case passes\n")
    assert main([*base, "--expected-failures", f"my-wrong={good}", "-v"]) == 0
    cap = capsys.readouterr()
    assert "xfail 1/" in cap.out
    assert f"{good}:3: stale entry 'sgd[torch,float64,groups]'" in cap.err
    assert "expected failure: reviewed: scaled on purpose" in cap.err
    # the xfail's reproduce line names the file
    assert "--expected-failures " + shlex.quote(f"my-wrong={good}") in cap.err
    # named <impl>-xfails.txt, the implementation comes from the file name
    named = tmp_path / "my-wrong-xfails.txt"
    named.write_text(good.read_text())
    assert main([*base, "--expected-failures", str(named)]) == 0
    capsys.readouterr()
    bad = [("sgd[torch,*]\n", "needs a reason"), ("sgd[torch,*]  #   \n", "needs a reason")]
    for text, says in bad:
        named.write_text(text)
        assert main([*base, "--expected-failures", str(named)]) == 2
        err = capsys.readouterr().err
        assert says in err and f"{named}:1" in err and len(err.strip().splitlines()) == 1
    for value, says in [(str(good), "name the file <impl>-xfails.txt or write IMPL=FILE"),
                        (f"torch-forloop={good}", "not an implementation of this run"),
                        (f"my-wrong={tmp_path / 'missing.txt'}", "No such file")]:
        assert main([*base, "--expected-failures", value]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


class _LocalWrong(adapters_mod.Adapter):
    name, profile = "local-wrong", "torch"

    def build(self, case):
        return {k: v.copy() for k, v in case.init_params().items()}

    def step(self, h, grads, lr):
        for k, g in grads.items():
            h[k] = h[k] - 2 * (lr or 0.01) * g

    def read(self, h):
        return dict(h), {}


def _sgd_base():
    return next(c for c in fmt.load_cases("sgd") if c.id == BASE)


def test_reproduce_under_pytest_names_the_test(request):
    res = run_case(_LocalWrong(), _sgd_base())
    assert res.status == "fail"
    node = shlex.quote(request.node.nodeid)
    assert f"reproduce: python -m pytest {node}" in res.report()
    from adaptive_ref.testing import assert_matches_golden

    with pytest.raises(AssertionError) as info:
        assert_matches_golden(_sgd_base(), _LocalWrong().run(_sgd_base()))
    assert f"reproduce: python -m pytest {node}" in str(info.value)


def test_reproduce_outside_pytest(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    case = _sgd_base()
    text = reproduce_command(_LocalWrong(), case)  # importable: this test module's class
    assert text == ("adaptive-ref conform --adapter test_conformance_plugins:_LocalWrong "
                    f"--impl local-wrong --optimizer sgd --case '{BASE}' -v")

    class Here(_LocalWrong):
        pass

    text = reproduce_command(Here(), case)  # not importable: the Python call
    assert text.startswith("adaptive_ref.conformance.run_case(<your ")
    assert repr(BASE) in text and "load_cases('sgd')" in text
    [res] = run_all([_LocalWrong()], [case])
    assert res.reproduce.startswith("adaptive-ref conform --adapter")
    assert res.report().splitlines()[-1] == "  reproduce: " + res.reproduce


def test_pytest_reproduce_line_runs(tmp_path):
    """A failing test in another project prints a line that, run as printed, selects it."""
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(f'''
        import pytest
        from adaptive_ref.conformance import load_cases
        from adaptive_ref.testing import assert_matches_golden, replay

        CASES = [c for c in load_cases("sgd") if c.id == {BASE!r}]

        @pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
        def test_sgd(case):
            result = replay(case, init=lambda n, p, hp: {{}},
                            step=lambda n, p, g, s, hp: (p - 1.01 * hp["lr"] * g, s))
            assert_matches_golden(case, result)

        def test_other():
            pass
    '''))
    env = _env()
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
           "addopts=", "-W", "ignore::DeprecationWarning"]
    r = subprocess.run([*run, "test_mine.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert "1 failed, 1 passed" in r.stdout, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if "reproduce:" in x)
    argv = shlex.split(line.split("reproduce:", 1)[1])
    assert argv[:3] == ["python", "-m", "pytest"], line
    again = subprocess.run([*run, *argv[3:]], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.stdout.strip().splitlines()[-1].startswith("1 failed in"), again.stdout


def test_load_adapter_spec_forms(tmp_path, monkeypatch):
    _write_module(tmp_path, "formsmod")
    monkeypatch.syspath_prepend(str(tmp_path))
    [a] = load_adapter_spec("formsmod:MySGD")
    assert a.name == "my-sgd"
    assert [a.name for a in load_adapter_spec("formsmod:both")] == ["my-sgd", "my-wrong"]
    import formsmod

    instance = formsmod.MySGD()
    monkeypatch.setattr(formsmod, "INSTANCE", instance, raising=False)
    assert load_adapter_spec("formsmod:INSTANCE") == [instance]


def test_known_adapters_are_the_shipped_ones_first():
    shipped = [a.name for a in adapters_mod.all_adapters()]
    assert [a.name for a in adapters_mod.known_adapters()][:len(shipped)] == shipped


def test_json_report_carries_the_reproduce_line(tmp_path, monkeypatch, capsys):
    import json

    _write_module(tmp_path, "jsonmod")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "r.json"
    assert main(["conform", "--adapter", "jsonmod:MyWrongSGD", "--optimizer", "sgd",
                 "--dtype", "float64", "--format", "json", "-o", str(out), "-q"]) == 1
    capsys.readouterr()
    doc = json.loads(out.read_text())
    [bad] = [r for r in doc["results"] if r["status"] == "fail"]
    assert bad["reproduce"] == ("adaptive-ref conform --adapter jsonmod:MyWrongSGD --impl "
                                f"my-wrong --optimizer sgd --dtype float64 --case '{BASE}' -v")
    assert doc["implementations"]["my-wrong"]["source"] == "--adapter jsonmod:MyWrongSGD"
    assert all("reproduce" not in r for r in doc["results"] if r["status"] == "pass")


def test_entry_point_names_are_unique(tmp_path, monkeypatch):
    """The same entry point named again with --adapter is not added twice; an entry point whose
    adapter takes a shipped name is listed as not available instead of replacing it."""
    (tmp_path / "eps_mod.py").write_text(
        ADAPTER_MODULE + '\n\nclass Clash(MySGD):\n    name = "reference-numpy"\n')
    _dist(tmp_path, "eps_other", "my-sgd = eps_mod:MySGD\nclash = eps_mod:Clash")
    monkeypatch.syspath_prepend(str(tmp_path))
    known = adapters_mod.known_adapters(["eps_mod:MySGD"])
    names = [a.name for a in known]
    assert names.count("my-sgd") == 1 and names.count("reference-numpy") == 1
    mine = next(a for a in known if a.name == "my-sgd")  # what a run with --adapter selects
    assert mine.conformance_spec == "eps_mod:MySGD"
    assert type(next(a for a in known if a.name == "reference-numpy")).__name__ == \
        "ReferenceAdapter"
    clash = next(a for a in known if a.name == "clash")
    assert "the name 'reference-numpy' is taken (shipped with adaptive-ref)" in clash.missing()
