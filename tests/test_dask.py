"""Dask: steps stay lazy (nothing is computed inside a step) and give the NumPy result.

Every optimizer x every knob value of the backend matrix (``test_backends.knob_cases``) runs
``init`` and 3 steps with Dask's scheduler replaced by a function that raises, so any
``compute`` (explicit, or hidden in ``bool()``/``float()``/``int()`` of an array) during init or a
step fails the test. The results must be Dask arrays whose graphs still hold the work. They are
then computed (synchronously) and compared with NumPy running the same steps: Dask's chunks run
the same NumPy kernels in the same operation order, so the results must be **bit-identical**
(matrix optimizers need ``linalg``, which Dask's array-API namespace lacks; they are skipped with
that reason). Muon needs only ``matmul``: a chunked matmul sums its blocks' partial products in
another order than NumPy's BLAS, so Muon is held to test_backends' ``RTOL_MATRIX`` instead.
Per-tensor optimizers (``coupling == "tensor"``: LAMB, LARS) sum over a chunked
array, chunk by chunk and then across chunks, an order NumPy does not use: their norms differ in
the last bits, so they are compared to ``RTOL_REDUCTION`` (a 12-term sum in another order is
within 12 u; the ratio carries that relative difference into the step).
Adafactor's means (along an axis, and whole-tensor RMS) add chunk sums in another order too; as
a non-elementwise optimizer it is held to ``RTOL_MATRIX``, as Muon is.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_backends import ILL_POSED, knob_cases

from adaptive_ref import registry
from adaptive_ref.testing.backends import Backend

da = pytest.importorskip("dask.array", reason="dask is not installed")
dask = pytest.importorskip("dask")

STEPS = 3
SHAPE = (4, 3)
RTOL_REDUCTION = 1e-13


def _no_compute(dsk, keys, **kwargs):
    msg = f"a step computed a Dask graph (keys {list(keys)[:3]}...); steps must stay lazy"
    raise AssertionError(msg)


CASES = [
    pytest.param(spec.name, overrides, profile, id=f"{spec.name}-{cid}")
    for spec in registry._SPECS
    for cid, overrides, profile in knob_cases(spec)
]


def _leaves(state):
    out = []
    for v in state:
        if isinstance(v, (tuple, list)):
            out.extend(_leaves(v))
        else:
            out.append(v)
    return out


@pytest.mark.parametrize(("name", "overrides", "profile"), CASES)
def test_dask_steps_stay_lazy_and_match_numpy(name, overrides, profile):
    spec = registry.get(name)
    settings = spec.settings(profile, **overrides)
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal(SHAPE)
    grads = [rng.normal(0.1, 1.0, SHAPE) * np.array([1.0, 1.0, 1e-4]) for _ in range(STEPS)]

    # NumPy reference.
    p_np, s_np = p0, spec.init(p0, **spec.init_kwargs(settings))
    try:
        for g in grads:
            p_np, s_np = spec.step(p_np, g, s_np, **settings)
    except TypeError as err:  # Muon's ns_dtype='bfloat16': neither NumPy nor Dask has it
        if "has no bfloat16" in str(err):
            pytest.skip(f"numpy and dask: {err}")
        raise
    except ILL_POSED as err:  # reported by the step (SOAP), and Dask has no eigh anyway
        pytest.skip(f"ill-posed on this problem, and reported by the step: {err}")

    # Dask, with computing forbidden.
    b = Backend.DASK
    p, gs = b.asarray(p0), [b.asarray(g) for g in grads]
    try:
        with dask.config.set(scheduler=_no_compute):
            s = spec.init(p, **spec.init_kwargs(settings))
            for g in gs:
                p, s = spec.step(p, g, s, **settings)
    except TypeError as err:
        if "has no linalg" in str(err):
            pytest.skip(f"dask: {err}")
        raise
    assert isinstance(p, da.Array)
    leaves, ref_leaves = _leaves(s), _leaves(s_np)
    assert len(leaves) == len(ref_leaves)
    for x, ref in zip(leaves, ref_leaves, strict=True):
        assert (x is None) == (ref is None)
        assert x is None or (isinstance(x, da.Array) and x.dtype == ref.dtype), (x, ref)
    assert p.dtype == p_np.dtype
    assert len(p.__dask_graph__()) > STEPS  # the work is still in the graph

    computed = dask.compute(p, *[x for x in leaves if x is not None], scheduler="synchronous")
    refs = [x for x in ref_leaves if x is not None]
    assert len(refs) == len(computed) - 1
    for got, ref in zip(computed, [p_np, *refs], strict=True):
        assert got.dtype == ref.dtype
        if spec.coupling == "tensor" and spec.param_ndim is None \
                and not _float32_inside(name, settings):  # chunked reductions: another order
            np.testing.assert_allclose(got, ref, rtol=RTOL_REDUCTION, atol=0)
        elif spec.elementwise or got.dtype.kind != "f":
            np.testing.assert_array_equal(got, ref)
        else:  # a chunked matmul adds its blocks' partial products in another order (Muon)
            _assert_matrix_close(name, settings, got, ref)


def _float32_inside(name, settings) -> bool:
    """Whether these settings compute in float32 inside a float64 step (Adafactor's float32
    means): test_backends' FLOAT32_INSIDE."""
    from test_backends import FLOAT32_INSIDE

    return FLOAT32_INSIDE.get(name, lambda s: False)(settings)


def _assert_matrix_close(name, settings, got, ref):
    """test_backends' allowance for non-elementwise optimizers (and per-tensor ones computing in
    float32 inside), relative to the array's size."""
    from test_backends import RTOL_MATRIX

    rtol = RTOL_MATRIX["float32" if _float32_inside(name, settings) else str(ref.dtype)]
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    assert float(np.max(np.abs(got - ref), initial=0.0)) <= rtol * scale


def test_raising_scheduler_catches_a_hidden_compute():
    """The guard works: a ``bool()`` of a Dask array inside the block raises."""
    x = da.ones((2, 2), chunks=1)
    with dask.config.set(scheduler=_no_compute), pytest.raises(AssertionError, match="lazy"):
        bool((x > 0).all())
