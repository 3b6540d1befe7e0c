"""The numba kernels are generated from the elementwise bodies (one description per optimizer).

Bit-identity with the reference is tested in ``test_fused.py``; here: the generator accepts
exactly the body grammar, every flag set of every body renders and keeps the wrappers' argument
order, and the compiled kernels are cached on disk (a second process loads, does not compile).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

from adaptive_ref.fused import _kernels as K  # noqa: E402
from adaptive_ref.fused import elementwise as E  # noqa: E402

# every flag value each body function takes (ints: the values its code distinguishes)
FLAG_VALUES = {"wd_mode": (0, 1, 2), "ams": (0, 1, 2)}


def _flag_sets(fn):
    import inspect

    names = list(inspect.signature(fn).parameters)
    for values in itertools.product(*[FLAG_VALUES.get(n, (False, True)) for n in names]):
        yield dict(zip(names, values, strict=True))


@pytest.mark.parametrize("name", sorted(E.BODIES))
def test_every_flag_set_renders_valid_python(name):
    fn = E.BODIES[name]
    for flags in _flag_sets(fn):
        body = fn(**flags)
        consts = tuple((s, True) for s in body.scalars if s in E.BOOL_SCALARS)
        assert [a for a, _ in body.writes] == ["p", *body.arrays[2:]]
        for inplace, parallel in itertools.product((False, True), repeat=2):
            src = K.render(body, inplace, parallel, consts)
            compile(src, body.name, "exec")
            assert "cache=True" in src and "fastmath=False" in src


def _body(expr: str) -> E.Body:
    return E.Body("t", ("p", "g"), ("lr",), (("x", "g"), ("pn", expr)), (("p", "pn"),))


@pytest.mark.parametrize("expr", ["p - 0.5 * g", "p - lr * g ** 2", "exp(g)", "p[0]",
                                  "p if g else lr"])
def test_generator_rejects_what_the_body_grammar_does_not_have(expr):
    with pytest.raises(ValueError, match="body expression|unknown function"):
        K.render(_body(expr), False, False)


def test_generator_keeps_grouping_and_maps_functions():
    src = K.render(_body("p - lr * (sqrt(x * x) / fabs(maxnan(g, sel(g > lr, g, lr))))"),
                   True, False)
    assert "pn = p - lr * (np.sqrt(x * x) / abs(_maxnan(g, _sel(g > lr, g, lr))))" in src


def test_bool_scalars_need_a_value():
    with pytest.raises(ValueError, match="first"):
        K.render(E.sgd_body(has_buf=True), False, False)


def test_compiled_kernels_are_cached_on_disk(tmp_path):
    code = textwrap.dedent("""
        import numpy as np
        import adaptive_ref as ar
        from adaptive_ref import fused
        from adaptive_ref.fused import _kernels as K
        p = np.ones(8, np.float32)
        fused.adam_step(p, p, ar.adam_init(p))
        k = K.kernel_for("adam", (False, 0, 0, True, False, False), False, False)
        print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))
    """)
    env = dict(os.environ, ADAPTIVE_REF_KERNEL_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.split() for r in runs)
    assert first[1] != "0" and second == ["1", "0"], (first, second)
    assert list(tmp_path.glob("*.py")) and list((tmp_path / "__pycache__").glob("*.nbi"))
