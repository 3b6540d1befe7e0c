"""The suite passes for the reference on every installed backend and for torch.optim and optax
under their own profiles (documented findings are expected failures, see
adaptive_ref/conformance/expected).

The default run checks a fixed sample (every optimizer x dtype: the long base case where cheap,
the per-group, schedule and closed-loop cases); ``ADAPTIVE_REF_CONFORMANCE_FULL=1`` adds the
whole catalogue per implementation (what ``adaptive-ref conform`` runs; minutes on 2 cores).
"""

import os

import pytest

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters import get_adapter
from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
from adaptive_ref.conformance.runner import load_xfails, run_case
from adaptive_ref.testing.backends import Backend

ALL = fmt.load_cases()
SAMPLE_TAGS = ("groups", "schedule")


def _sample(profile=None, *, long=True):
    out = []
    for c in ALL:
        if profile is not None and c.profile != profile:
            continue
        if (long and "base" in c.tags) or any(t in c.tags for t in SAMPLE_TAGS) or \
                (c.kind == "closed_loop" and "logistic" in c.tags):
            out.append(c)
    return out


def _check(adapter, case):
    miss = adapter.missing()
    if miss:
        pytest.skip(miss)
    res = run_case(adapter, case, xfails=load_xfails(adapter.name))
    if res.status == "n/a":
        assert res.reason.startswith("unsupported"), res.reason
        return
    assert res.status in ("pass", "xfail"), res.report()


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_reference_numpy_every_case(case):
    res = run_case(ReferenceAdapter(Backend.NUMPY), case)
    if res.status == "n/a":  # Muon's forced bfloat16 (M1): NumPy has none; torch runs these
        assert "bfloat16" in res.reason, res.reason
        pytest.skip(res.reason)
    assert res.status == "pass", res.report()


_OTHER = [Backend.ARRAY_API_STRICT, Backend.TORCH, Backend.JAX, Backend.DASK]
# Eager JAX and lazy Dask take 10-100x NumPy's time per step (Dask's graph grows with the
# trajectory), so the default run checks the first 10 steps (5 on Dask) of one per-group case
# per optimizer and dtype; the slow run checks the whole catalogue.
_BACKEND_SAMPLE = [c for c in ALL if "groups" in c.tags or
                   ("sparse" in c.tags and "schedule" in c.tags)]


@pytest.mark.parametrize("backend", _OTHER, ids=lambda b: b.value)
@pytest.mark.parametrize("case", _BACKEND_SAMPLE, ids=lambda c: c.id)
def test_reference_on_backend(backend, case):
    if backend is Backend.DASK and case.dtype == "float32":
        pytest.skip("dask: float64 in the default run (float32 in the slow run)")
    _check(ReferenceAdapter(backend), case.truncated(5 if backend is Backend.DASK else 10))


FRAMEWORKS = ["torch-forloop", "torch-foreach", "torch-fused", "optax-eager", "optax-jit",
              "upstream-schedulefree"]


@pytest.mark.parametrize("impl", FRAMEWORKS)
def test_frameworks_sample(impl):
    adapter = get_adapter(impl)
    if adapter.missing():
        pytest.skip(adapter.missing())
    xf = load_xfails(impl)
    bad = []
    for case in _sample(adapter.profile, long=impl.startswith("torch")):
        res = run_case(adapter, case, xfails=xf)
        if res.status not in ("pass", "xfail", "n/a"):
            bad.append(res.report())
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ADAPTIVE_REF_CONFORMANCE_FULL"),
                    reason="the whole catalogue per implementation runs with "
                           "ADAPTIVE_REF_CONFORMANCE_FULL=1 (or `adaptive-ref conform`)")
@pytest.mark.parametrize("impl", FRAMEWORKS + [f"reference-{b.value}" for b in _OTHER])
def test_whole_catalogue(impl):
    adapter = get_adapter(impl)
    if adapter.missing():
        pytest.skip(adapter.missing())
    xf = load_xfails(impl)
    bad = [r.report() for c in ALL if adapter.applies_to(c)
           for r in [run_case(adapter, c, xfails=xf)] if r.status not in ("pass", "xfail", "n/a")]
    assert not bad, "\n".join(bad)
