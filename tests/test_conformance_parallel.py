"""Worker processes for the conformance run, and the JAX reference under jit.

The pool must change nothing but where the cases run: the same rows, in the same order, with the
same statuses and errors as the serial run.
"""

from __future__ import annotations

import argparse

import pytest

from adaptive_ref.backends import Backend
from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance import parallel
from adaptive_ref.conformance.adapters.base import Adapter
from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
from adaptive_ref.conformance.runner import run_all, run_case

CASES = fmt.load_cases("sgd", dtype="float64") + fmt.load_cases("adamax", dtype="float32")


def _rows(results):
    return [(r.impl, r.case_id, r.status, r.reason, r.max_ulp) for r in results]


def test_pool_gives_the_serial_results():
    adapters = [ReferenceAdapter(Backend.NUMPY)]
    serial = run_all(adapters, CASES, jobs=1)
    seen = []
    pooled = run_all(adapters, CASES, jobs=2, progress=lambda *a: seen.append(a[:3]))
    assert _rows(pooled) == _rows(serial)
    assert {r.status for r in serial} == {"pass"}
    assert len(seen) == len(serial)  # progress reported as the workers' results arrive


def test_an_adapter_that_does_not_pickle_runs_in_this_process():
    class Local(Adapter):  # a local class does not pickle: it cannot go to a worker
        name, profile = "local-crash", "torch"

        def build(self, case):
            raise RuntimeError("boom")

    results = run_all([Local(), ReferenceAdapter(Backend.NUMPY)], CASES[:4], jobs=2)
    local = [r for r in results if r.impl == "local-crash"]
    assert local and all(r.status == "error" and "boom" in r.reason for r in local)
    assert [r.impl for r in results] == ["local-crash"] * len(local) + ["reference-numpy"] * 4


def test_jobs_argument_and_automatic_choice():
    assert parallel.jobs_arg("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="--jobs"):
            parallel.jobs_arg(bad)
    small = [ReferenceAdapter(Backend.NUMPY)]
    assert parallel.auto_jobs(None, small, CASES[:3]) == 1
    assert parallel.auto_jobs(2, small, CASES[:3]) == 2
    assert parallel.auto_jobs(None, small, CASES * 10) == parallel.default_jobs()


# one per-group case per optimizer (float64), the first 10 steps: jitted and eager
_JAX_SAMPLE = [c.truncated(10) for c in fmt.load_cases(dtype="float64") if "groups" in c.tags]


@pytest.mark.parametrize("case", _JAX_SAMPLE, ids=lambda c: c.id)
def test_jax_reference_jitted_and_eager_both_conform(case):
    jitted, eager = ReferenceAdapter(Backend.JAX), ReferenceAdapter(Backend.JAX, jit=False)
    if jitted.missing():
        pytest.skip(jitted.missing())
    assert jitted.name == "reference-jax" and eager.name == "reference-jax-eager"
    assert eager.opt_in and not jitted.opt_in
    for adapter in (jitted, eager):
        res = run_case(adapter, case)
        assert res.status == "pass", res.report()


def test_jit_needs_jax():
    with pytest.raises(ValueError, match="JAX"):
        ReferenceAdapter(Backend.NUMPY, jit=True)


def test_a_worker_keeps_the_adapters_it_was_sent():
    """Each chunk arrives as the adapter's pickle; a worker makes the adapter once and reuses it
    for the later chunks (the Keras adapter's worker process is started once per worker)."""
    import pickle

    blob = pickle.dumps(ReferenceAdapter(Backend.NUMPY))
    other = pickle.dumps(ReferenceAdapter(Backend.TORCH))
    first = parallel._live_adapter(blob)
    assert parallel._live_adapter(blob) is first
    assert parallel._live_adapter(other) is not first
    assert parallel._live_adapter(other).name == "reference-torch"
