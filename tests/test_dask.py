"""Dask: steps stay lazy (nothing is computed inside a step) and give the NumPy result.

Every optimizer x every knob value of the backend matrix (``test_backends.knob_cases``) runs
``init`` and 3 steps with Dask's scheduler replaced by a function that raises, so any
``compute`` (explicit, or hidden in ``bool()``/``float()``/``int()`` of an array) during init or a
step fails the test. The results must be Dask arrays whose graphs still hold the work. They are
then computed (synchronously) and compared with NumPy running the same steps: Dask's chunks run
the same NumPy kernels in the same operation order, so the results must be **bit-identical**
(matrix optimizers need ``linalg``, which Dask's array-API namespace lacks; they are skipped with
that reason), except where a step reduces over chunks (``REDUCING``: a derived rounding bound).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_backends import knob_cases

from adaptive_ref import registry
from adaptive_ref.testing.backends import Backend

da = pytest.importorskip("dask.array", reason="dask is not installed")
dask = pytest.importorskip("dask")

STEPS = 3
SHAPE = (4, 3)


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
    for g in grads:
        p_np, s_np = spec.step(p_np, g, s_np, **settings)

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
    _assert_same(name, settings, computed[0], p_np, p0)
    refs = [x for x in ref_leaves if x is not None]
    assert len(refs) == len(computed) - 1
    for got, ref in zip(computed[1:], refs, strict=True):
        assert got.dtype == ref.dtype
        _assert_same(name, settings, got, ref, 0 * ref)


# Optimizers whose step reduces over axes (Adafactor: means of G^2 along an axis, whole-tensor
# RMS): Dask sums each chunk, then the chunk sums, another order than NumPy's, so they agree to
# rounding, not bit for bit. A mean of n positive terms (squares and their EMAs: condition 1) in
# two orders differs by at most 2 n eps relative; Adafactor takes five means per step and the
# differences add over the steps: rtol = STEPS * 5 * 2 * n * eps, n = 12 elements here.
# For the parameter, relative to the distance travelled. eps: float64's, or float32's where
# the means are taken in float32 (mean_precision="float32", the Keras profile).
REDUCING = ("adafactor",)


def _assert_same(name, settings, got, ref, start):
    if name not in REDUCING:
        np.testing.assert_array_equal(got, ref)
        return
    eps = 2.0**-24 if settings.get("mean_precision") == "float32" else 2.0**-52
    rtol = STEPS * 5 * 2 * SHAPE[0] * SHAPE[1] * eps
    scale = float(np.max(np.abs(ref - start))) if ref.size else 0.0
    assert float(np.max(np.abs(got - ref), initial=0.0)) <= rtol * scale, name


def test_raising_scheduler_catches_a_hidden_compute():
    """The guard works: a ``bool()`` of a Dask array inside the block raises."""
    x = da.ones((2, 2), chunks=1)
    with dask.config.set(scheduler=_no_compute), pytest.raises(AssertionError, match="lazy"):
        bool((x > 0).all())
