"""Prodigy (a whole-model optimizer, ``coupling == "tree"``): hand-derived first steps, the
whole-model API, the tree API's dispatch and the global reductions it is built on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptive_ref import _global as gl
from adaptive_ref import tree
from adaptive_ref.optimizers.prodigy import prodigy_init, prodigy_step


def test_first_step_by_hand():
    """Step 1 from d0: m = d0 (1 - b1) g, v = d0^2 (1 - b2) g^2, s = d0 lr g (d/d0 = 1),
    r = 0 (p = p0), so d_hat = 0 and d stays d0; p -= d0 lr m / (sqrt(v) + d0 eps)."""
    p, g = [np.array([1.0, -2.0]), np.array(0.5)], [np.array([0.3, -0.1]), np.array(2.0)]
    d0, lr, b1, b2, eps = 1e-6, 0.5, 0.9, 0.999, 1e-8
    new, st = prodigy_step(p, g, prodigy_init(p, d0=d0), lr=lr, d0=d0)
    for pi, gi, ni in zip(p, g, new, strict=True):
        m, v = d0 * (1 - b1) * gi, d0 * d0 * (1 - b2) * gi * gi
        np.testing.assert_allclose(ni, pi - d0 * lr * m / (np.sqrt(v) + d0 * eps), rtol=1e-15)
    assert float(st.d) == d0 and float(st.d_numerator) == 0.0 and int(st.count) == 1
    np.testing.assert_allclose(st.s[0], d0 * lr * g[0], rtol=1e-15)


def test_second_step_estimates_d_from_every_leaf():
    """Step 2: r = b3 * 0 + (d/d0) dlr sum_i <g_i, p0_i - p_i> over both leaves, d_hat =
    r / sum_i ||s_i||_1, d = max(d0, d_hat): a change in one leaf moves the other's step."""
    p = [np.array([1.0, -2.0]), np.array([0.5])]
    g = [np.array([0.3, -0.1]), np.array([2.0])]
    kw = dict(lr=1.0, d0=1e-6)
    p1, s1 = prodigy_step(p, g, prodigy_init(p), **kw)
    p2, s2 = prodigy_step(p1, g, s1, **kw)
    b3 = math.sqrt(0.999)
    r = 1e-6 * sum(float(np.sum(gi * (pi - qi))) for gi, pi, qi in zip(g, p, p1, strict=True))
    den = sum(float(np.sum(np.abs(b3 * 1e-6 * gi + 1e-6 * gi))) for gi in g)
    assert float(s2.d_numerator) == pytest.approx(r, rel=1e-14)
    assert float(s2.d) == pytest.approx(max(1e-6, r / den), rel=1e-14)
    other = [g[0], np.array([-2.0])]  # the second leaf's gradient flips at step 2
    q2, _ = prodigy_step(p1, other, s1, **kw)
    assert not np.array_equal(q2[0], p2[0])  # ... and the first leaf's step changes


def test_decoupled_decay_scales_with_d_and_zero_gradient_is_no_step():
    """The decay is p (1 - wd dlr), dlr = d lr (not lr); a zero gradient from a fresh state is
    the authors' early return: nothing moves, the count stays."""
    p, g = np.array([0.75, -1.25]), np.array([0.1, 0.2])
    a, _ = prodigy_step(p, g, prodigy_init(p), lr=0.5, weight_decay=0.1)
    b, _ = prodigy_step(p, g, prodigy_init(p), lr=0.5)
    np.testing.assert_allclose(a - b, -0.1 * 1e-6 * 0.5 * p, rtol=0, atol=4e-16)
    z, st = prodigy_step(p, np.zeros(2), prodigy_init(p), lr=0.5, weight_decay=0.1)
    np.testing.assert_array_equal(z, p)
    assert int(st.count) == 0


def test_tree_api_refuses_groups():
    """A whole-model step takes one setting for every leaf: groups and masks are refused (its
    hand-off of every leaf is tested in tests/test_tree.py, for each whole-model optimizer)."""
    params = {"w": np.ones((2, 3)), "b": np.zeros(3)}
    grads = {"w": np.full((2, 3), 0.1), "b": np.full(3, -0.2)}
    st = tree.make("prodigy", profile="optax").init(params)
    with pytest.raises(ValueError, match="groups and decay_mask are not supported"):
        tree.make("prodigy", decay_mask={"w": True, "b": False}).step(params, grads, st)


def test_none_gradient_leaves_are_left_out():
    p = [np.array([1.0, 2.0]), np.array([3.0])]
    g = [np.array([0.5, 0.5]), None]
    new, st = prodigy_step(p, g, prodigy_init(p))
    assert new[1] is p[1] and st.mu[1] is not None and not np.any(st.mu[1])
    alone, _ = prodigy_step([p[0]], [g[0]], prodigy_init([p[0]]))
    np.testing.assert_array_equal(new[0], alone[0])


def test_errors_name_the_argument():
    """(The errors every whole-model step shares: tests/test_tree.py.)"""
    p = [np.ones(2), np.ones(3)]
    st = prodigy_init(p)
    with pytest.raises(ValueError, match=r"d0=0.0 is outside the accepted range \(0, inf\)"):
        prodigy_step(p, p, st, d0=0.0)
    with pytest.raises(ValueError, match=r"\(leaf 0\): state.s has shape \(2,\), "
                                         r"expected \(1,\) for slice_p=2"):
        prodigy_step(p, p, st, slice_p=2)


def test_global_reductions():
    xs = [np.array([3.0, -4.0]), np.array([[12.0]])]
    assert float(gl.global_norm(np, xs, np.float64)) == 13.0
    assert float(gl.global_abs_sum(np, xs, np.float64)) == 19.0
    assert float(gl.global_vdot(np, xs, xs, np.float64)) == 169.0
    with pytest.raises(ValueError, match="holds no arrays"):
        gl.leaves_namespace("f", [])


# ---- conformance: the goldens catch a Prodigy whose sums are not the whole model's ----------

def _per_leaf_prodigy():
    """Mutant: each parameter stepped as its own one-leaf model (d from that leaf's sums only),
    the mistake a per-tensor optimizer API invites."""
    import dataclasses

    from adaptive_ref.conformance.adapters.reference import ReferenceAdapter

    class PerLeaf(ReferenceAdapter):
        name = "per-leaf-prodigy"

        def build(self, case):
            h = super().build(case)
            h["spec"] = dataclasses.replace(h["spec"], coupling="element")  # per-leaf states
            d0 = case.param_hparams(case.params[0].name)["d0"]
            h["states"] = {k: prodigy_init(p, d0=d0) for k, p in h["params"].items()}
            return h

    return PerLeaf()


@pytest.mark.parametrize("cid", ["prodigy[upstream,float64,base]",
                                 "prodigy[optax,float32,weight_decay=0.01]"])
def test_per_leaf_sums_are_caught(cid):
    from adaptive_ref.conformance import format as fmt
    from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
    from adaptive_ref.conformance.runner import run_case

    (case,) = [c for c in fmt.load_cases("prodigy") if c.id == cid]
    assert run_case(ReferenceAdapter(), case).status == "pass"
    res = run_case(_per_leaf_prodigy(), case)
    assert res.status == "fail"
    assert cid in res.report() and "first divergence" in res.report()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_global_norm_clipping_matches_optax_and_torch(dtype, scale):
    """clip_by_global_norm (built on _global.global_norm) under each rule against the
    framework's own function, below and above the threshold."""
    optax = pytest.importorskip("optax")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    gs = [np.asarray(scale * rng.normal(size=s), dtype=dtype) for s in [(3,), (2, 4), ()]]
    ours, norm = gl.clip_by_global_norm(gs, 1.0, rule="optax")
    import jax

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", dtype == "float64")
    try:
        ref, _ = optax.clip_by_global_norm(1.0).update([jax.numpy.asarray(g) for g in gs], None)
        ref = [np.asarray(r) for r in ref]
    finally:
        jax.config.update("jax_enable_x64", old)
    for a, b in zip(ours, ref, strict=True):
        assert b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps)
    ts = [torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, dtype))) for g in gs]
    for t, g in zip(ts, gs, strict=True):
        t.grad = torch.from_numpy(g.copy())
    tn = torch.nn.utils.clip_grad_norm_(ts, 1.0, foreach=False)
    ours, norm = gl.clip_by_global_norm(gs, 1.0, rule="torch")
    np.testing.assert_allclose(norm, tn.numpy(), rtol=4 * np.finfo(dtype).eps)
    for a, t in zip(ours, ts, strict=True):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=4 * np.finfo(dtype).eps)
    with pytest.raises(ValueError, match=r"max_norm=0.0 is outside the accepted range"):
        gl.clip_by_global_norm(gs, 0.0)
