"""The report a person reads: the conform matrix within 100 columns with a legend and a summary,
the progress display, and an aligned `adaptive-ref list`."""

import io
import itertools

from adaptive_ref.cli import main
from adaptive_ref.conformance.adapters import all_adapters
from adaptive_ref.conformance.compare import CaseResult
from adaptive_ref.conformance.format import read_manifest
from adaptive_ref.conformance.progress import Progress
from adaptive_ref.conformance.report import (
    LEGEND,
    cell_text,
    distance_table,
    matrix,
    summary,
    table,
)

WIDTH = 100

# the widest cell of each kind: 46 cases (the most any optimizer has per profile)
CELLS = {"fail": ("fail", 46), "xfail": ("xfail", 46), "xpass": ("xpass", 46),
         "n/a": ("n/a", 46), "big": ("pass", 46), "error": ("error", 46)}


def _results(opts, impls):
    """Every optimizer x every shipped implementation, cycling through the widest cells."""
    out = []
    kinds = itertools.cycle(CELLS)
    for o in opts:
        for i in impls:
            status, n = CELLS[next(kinds)]
            for k in range(n):
                out.append(CaseResult(f"{o}[x,float32,{k}]", o, i, status=status,
                                      max_ulp=4123.0 if status == "pass" else 5e9))
    return out


def _width(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_full_default_table_fits_100_columns():
    """Every shipped implementation (opt-in ones too) as a column, every optimizer with goldens
    as a row, the widest cells: at most 100 columns, with the legend."""
    impls = [a.name for a in all_adapters()]
    opts = sorted({e["optimizer"] for e in read_manifest()["files"].values()})
    results = _results(opts, impls)
    text = table(results, impls)
    assert _width(text) <= WIDTH, text
    for i in impls:  # every implementation is a column: "rest" under its "group" label
        group, rest = i.split("-", 1)
        assert any(group in line.split() for line in text.splitlines())
        assert any(rest in line.split() for line in text.splitlines())
    assert "FAIL 46/46" in text and "xfail 46/46" in text and "XPASS 46/46" in text
    assert "ok 4.1e3" in text and "n/a" in text
    for symbol, meaning in LEGEND:  # each kind of cell is explained
        assert any(line.split()[:len(symbol.split())] == symbol.split() and meaning[:20] in line
                   for line in text.splitlines()), symbol
    s = summary(results, cases=398, impls=impls, seconds=12.3)
    assert _width(s) <= WIDTH
    n_fail = sum(r.status == "fail" for r in results)
    n_err = sum(r.status == "error" for r in results)
    assert n_fail and n_err
    assert s.splitlines()[-1] == f"result: FAIL: {n_fail} failed, {n_err} crashed"


def test_more_implementations_than_fit_go_to_further_blocks():
    impls = [f"lib{k}-variant{k}" for k in range(20)]
    text = table(_results(["adam", "sparse_adagrad"], impls), impls)
    assert _width(text) <= WIDTH
    blocks = text.split("\n\n")
    assert len(blocks) >= 3  # at least two blocks of columns, then the legend
    assert all("optimizer" in b for b in blocks[:-1])
    assert all(f"variant{k}" in text for k in range(20))


def test_cells():
    base = {"pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "n/a": 0, "error": 0,
            "max_ulp": 0.0, "max_rel": 0.0}
    assert cell_text({**base, "n/a": 3}) == "n/a"
    assert cell_text({**base, "pass": 3, "max_ulp": 6.4}) == "ok 6.4"
    assert cell_text({**base, "pass": 3, "max_ulp": 0.0004}) == "ok <0.1"
    assert cell_text({**base, "pass": 3, "max_ulp": 460.2}) == "ok 460"
    assert cell_text({**base, "pass": 3, "fail": 1, "error": 1}) == "FAIL 2/5"
    assert cell_text({**base, "pass": 3, "xfail": 2}) == "xfail 2/5"
    assert cell_text({**base, "pass": 3, "xpass": 1, "xfail": 1}) == "XPASS 1/5"


def test_summary_counts_and_verdicts():
    rs = [CaseResult("a", "sgd", "x", status=s) for s in
          ["pass", "pass", "xfail", "n/a", "xpass"]]
    s = summary(rs, cases=4, impls=["x"], seconds=1.0)
    assert ("5 runs of 4 golden cases on 1 implementation (x) in 1.0 s: 2 passed, 0 failed, "
            "0 crashed, 1 xfail, 1 xpass, 1 n/a") in " ".join(s.split())
    assert s.endswith("result: PASS")
    na = summary([CaseResult("a", "sgd", "x", status="n/a")], cases=1, impls=["x"], seconds=0)
    assert na.endswith("result: NOTHING CHECKED: no case ran")


def test_distance_table_wraps_its_settings():
    rows = [{"optimizer": "sparse_adagrad", "distance": {1: 1.0, 10: 0.5, 200: 0.25},
             "differing_settings": {f"knob_number_{k}": ["outside", "inside"]
                                    for k in range(8)}}]
    text = distance_table(rows)
    assert _width(text) <= WIDTH
    flat = " ".join(text.split())
    assert all(f"knob_number_{k}: 'outside' -> 'inside'" in flat for k in range(8))
    lines = text.splitlines()
    head = next(k for k, x in enumerate(lines) if x.startswith("optimizer"))
    assert lines[head].split() == ["optimizer", "step", "1", "step", "10", "step", "200",
                                   "settings"]
    col = lines[head].index("settings")
    assert lines[head + 1].startswith("sparse_adagrad")
    for x in lines[head + 2:]:  # continuation lines start under "settings"
        assert x[:col].strip() == "" and x[col] != " ", x


def test_real_report_fits(capsys):
    """A real run with the widest rows of the profile-distance table (adagrad, rmsprop)."""
    assert main(["conform", "--impl", "reference-numpy", "--optimizer", "adagrad,rmsprop,sgd",
                 "--dtype", "float64", "-q"]) == 0
    out = capsys.readouterr().out
    assert _width(out) <= WIDTH, out
    assert "cells:" in out and "summary: " in out and out.rstrip().endswith("result: PASS")
    assert "eps_placement: 'outside' -> 'inside'" in out


def test_progress_plain_lines_off_a_terminal():
    buf = io.StringIO()
    p = Progress(3, buf, interval=1e9)
    for i, status in enumerate(["pass", "fail", "pass"], 1):
        p("impl-a", i, 3, CaseResult("c", "sgd", "impl-a", status=status))
    p.close()
    assert buf.getvalue() == "[impl-a] 3/3 cases, 3/3 runs, 1 failed (0 s)\n"


def test_progress_redraws_one_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    buf = Tty()
    p = Progress(4, buf)
    for i in (1, 2):
        p("optax-eager", i, 2, CaseResult("c", "sgd", "optax-eager", status="pass"))
    assert buf.getvalue().startswith("\r[")
    assert "2/4 runs  optax-eager 2/2  0 failed" in buf.getvalue()
    assert "\n" not in buf.getvalue()
    assert all(len(x) <= WIDTH for x in buf.getvalue().split("\r"))
    p.close()
    assert buf.getvalue().endswith("\r" + " " * (WIDTH - 1) + "\r")


def test_matrix_keeps_counts_for_json():
    rs = _results(["adam"], ["a-b"])
    assert matrix(rs)["adam"]["a-b"]["fail"] == 46


def test_list_aligns(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["optimizer", "profiles", "title"]
    col_p, col_t = lines[0].index("profiles"), lines[0].index("title")
    for line in lines[1:]:
        assert line[col_p - 2:col_p] == "  " and line[col_p] != " ", line
        assert line[col_t - 2:col_t] == "  " and line[col_t] != " ", line
    assert main(["list", "-v"]) == 0
    hp = [x for x in capsys.readouterr().out.splitlines() if x.startswith("    ")]
    assert len({x.index(" default=") for x in hp}) == 1

    def range_column(x):
        end = x.index("  ", x.index("default="))  # the default's repr is padded to one width
        return end + len(x[end:]) - len(x[end:].lstrip())

    assert len({range_column(x) for x in hp}) == 1


def test_blocks_keep_an_implementation_group_together():
    """When the shipped columns do not fit side by side, a block break falls between groups
    (reference backends | torch paths, optax modes), never inside one."""
    impls = [a.name for a in all_adapters() if not a.opt_in]
    opts = ["adagrad", "adam", "sparse_adagrad"]
    results = [CaseResult(f"{o}-{i}", o, i, status="pass", max_ulp=131.0)
               for o in opts for i in impls]
    results += [CaseResult("adam-2", "adam", i, status="xfail") for i in impls]
    text = table(results, impls)
    assert _width(text) <= WIDTH
    blocks = [b.splitlines() for b in text.split("\n\n")[:-1]]
    assert len(blocks) >= 2
    # each block's first line names its groups; a group's columns sit under its name, so a
    # group split across blocks would be named in two of them (column names alone are ambiguous:
    # "torch" is a reference backend and a Keras backend)
    for group in {i.split("-", 1)[0] for i in impls}:
        holding = [k for k, b in enumerate(blocks) if group in b[0].split()]
        assert len(holding) == 1, (group, text)


def test_timings_per_implementation():
    from adaptive_ref.conformance.report import impl_seconds, timings

    rs = [CaseResult("a", "sgd", "x", seconds=1.0, cpu_seconds=1.0),
          CaseResult("b", "sgd", "x", seconds=2.0, cpu_seconds=2.0),
          CaseResult("a", "sgd", "y", status="n/a", seconds=0.5, cpu_seconds=0.5),
          CaseResult("a", "sgd", "z", seconds=9.0, cpu_seconds=6.0)]
    assert impl_seconds(rs) == {"x": (2, 3.0, 3.0), "y": (0, 0.5, 0.5), "z": (1, 9.0, 6.0)}
    text = timings(rs)
    rows = [line.split()[0] for line in text.splitlines()[1:] if line.startswith("  ")]
    assert rows == ["wall", "z", "x", "y", "total"]  # a header, then the most CPU first
    assert "1500.0 ms" in text and "12.5 s" in text and "9.5 s" in text
    assert max(len(line) for line in text.splitlines()) <= 100
