"""D-Adapt AdamW (a whole-model optimizer, ``coupling == "tree"``, built on Prodigy's machinery):
hand-derived first steps, and the whole model against optax.contrib.dadapt_adamw and the
authors' dadaptation.DAdaptAdam (each where installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptive_ref.optimizers.dadapt_adamw import dadapt_adamw_init, dadapt_adamw_step


def test_first_step_by_hand():
    """Step 1 from d0: r = 0 (s = 0), so d stays d0; dlr = d0 lr c_1, m = dlr (1 - b1) g,
    v = (1 - b2) g^2, s = (1 - sqrt(b2)) dlr g; p -= m / (sqrt(v) + eps)."""
    p, g = [np.array([1.0, -2.0]), np.array(0.5)], [np.array([0.3, -0.1]), np.array(2.0)]
    d0, lr, b1, b2, eps = 1e-6, 0.5, 0.9, 0.999, 1e-8
    new, st = dadapt_adamw_step(p, g, dadapt_adamw_init(p, d0=d0), lr=lr, d0=d0)
    dlr = d0 * lr * math.sqrt(1 - b2) / (1 - b1)
    for pi, gi, ni in zip(p, g, new, strict=True):
        m, v = dlr * (1 - b1) * gi, (1 - b2) * gi * gi
        np.testing.assert_allclose(ni, pi - m / (np.sqrt(v) + eps), rtol=1e-15)
    assert float(st.d) == d0 and float(st.d_numerator) == 0.0 and int(st.count) == 1
    np.testing.assert_allclose(st.s[0], (1 - math.sqrt(b2)) * dlr * g[0], rtol=1e-15)


def test_second_step_estimates_d_from_every_leaf():
    """Step 2 (no bias correction): r = (1 - sb2) dlr sum_i <g_i, s_i / (sqrt(v_i) + eps)>,
    d = max(d0, r / ((1 - sb2) sum_i ||s_i||_1)): one leaf's gradient moves the other's d."""
    p = [np.array([1.0, -2.0]), np.array([0.5])]
    g = [np.array([0.3, -0.1]), np.array([2.0])]
    kw = dict(bias_correction=False)
    p1, s1 = dadapt_adamw_step(p, g, dadapt_adamw_init(p), **kw)
    _, s2 = dadapt_adamw_step(p1, g, s1, **kw)
    sb2, b2, d0 = math.sqrt(0.999), 0.999, 1e-6
    s_old = [(1 - sb2) * d0 * gi for gi in g]
    v_old = [(1 - b2) * gi * gi for gi in g]
    acc = sum(float(np.sum(gi * si / (np.sqrt(vi) + 1e-8)))
              for gi, si, vi in zip(g, s_old, v_old, strict=True))
    r = (1 - sb2) * d0 * acc
    den = sum(float(np.sum(np.abs(sb2 * si + (1 - sb2) * d0 * gi)))
              for si, gi in zip(s_old, g, strict=True))
    assert float(s2.d_numerator) == pytest.approx(r, rel=1e-13)
    assert float(s2.d) == pytest.approx(max(d0, r / ((1 - sb2) * den)), rel=1e-13)
    _, q2 = dadapt_adamw_step(p1, [g[0], np.array([-2.0])], s1, **kw)
    assert float(q2.d) != float(s2.d)


def test_decoupled_decay_scales_with_dlr():
    """The decay is p (1 - wd dlr), dlr = d lr c_t (not lr); coupled L2 enters the gradient."""
    p, g = np.array([0.75, -1.25]), np.array([0.1, 0.2])
    a, _ = dadapt_adamw_step(p, g, dadapt_adamw_init(p), lr=0.5, weight_decay=0.1)
    b, _ = dadapt_adamw_step(p, g, dadapt_adamw_init(p), lr=0.5)
    dlr = 1e-6 * 0.5 * math.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(a - b, -0.1 * dlr * p, rtol=0, atol=4e-16)
    c, _ = dadapt_adamw_step(p, g, dadapt_adamw_init(p), lr=0.5, weight_decay=0.1,
                             weight_decay_mode="coupled")
    assert not np.array_equal(c, a)


def test_growth_rate_and_zero_gradient():
    """d grows by at most growth_rate per step; a zero gradient from a fresh state is the
    authors' early return: nothing moves, the count stays."""
    p, st = np.array([0.75, -1.25]), None
    st = dadapt_adamw_init(p)
    q = p
    for _ in range(6):
        q, st2 = dadapt_adamw_step(q, np.array([1.0, -1.0]), st, growth_rate=1.5)
        assert float(st2.d) <= 1.5 * float(st.d) * (1 + 1e-15)
        st = st2
    assert float(st.d) > 1e-6
    z, st0 = dadapt_adamw_step(p, np.zeros(2), dadapt_adamw_init(p), weight_decay=0.1)
    np.testing.assert_array_equal(z, p)
    assert int(st0.count) == 0


def test_init_checks_d0():
    """(The errors every whole-model step shares, and the tree API's hand-off of every leaf,
    are tested in tests/test_tree.py for each whole-model optimizer.)"""
    with pytest.raises(ValueError, match=r"d0=0.0 is outside the accepted range \(0, inf\)"):
        dadapt_adamw_init([np.ones(2), np.ones(3)], d0=0.0)


def _run(p, gs, **kw):
    st, q = dadapt_adamw_init(p), list(p)
    for g in gs:
        q, st = dadapt_adamw_step(q, g, st, **kw)
    return q, st


def _data():
    rng = np.random.default_rng(0)
    p = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    gs = [[1 + 0.3 * rng.normal(size=(3, 4)), -1 + 0.3 * rng.normal(size=5)] for _ in range(8)]
    return p, gs


def test_matches_optax_float64():
    pytest.importorskip("optax")
    import jax
    from optax import contrib
    p, gs = _data()
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        jnp = jax.numpy
        tx = contrib.dadapt_adamw(1.0, weight_decay=0.01)
        q = [jnp.asarray(x) for x in p]
        st = tx.init(q)
        for g in gs:
            u, st = tx.update([jnp.asarray(x) for x in g], st, q)
            q = [a + b for a, b in zip(q, u, strict=True)]
        ref, rs = _run(p, gs, weight_decay=0.01, factor_precision="param")
        assert float(rs.d) > 1e-5  # d has grown
        assert float(st.estim_lr) == pytest.approx(float(rs.d), rel=1e-14)
        for a, b in zip(q, ref, strict=True):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-14)
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.mark.parametrize("kw, up", [
    (dict(weight_decay=0.01, weight_decay_mode="coupled", bias_correction=False),
     dict(weight_decay=0.01)),
    (dict(weight_decay=0.01, growth_rate=1.5),
     dict(weight_decay=0.01, decouple=True, use_bias_correction=True, growth_rate=1.5))])
def test_matches_dadaptation_float64(kw, up, capsys):
    torch = pytest.importorskip("torch")
    dadaptation = pytest.importorskip("dadaptation")
    p, gs = _data()
    tp = [torch.nn.Parameter(torch.tensor(x)) for x in p]
    opt = dadaptation.DAdaptAdam(tp, **up)
    for g in gs:
        for t, x in zip(tp, g, strict=True):
            t.grad = torch.tensor(x)
        opt.step()
    ref, rs = _run(p, gs, **kw)
    assert float(rs.d) > 1e-5
    assert opt.param_groups[0]["d"] == pytest.approx(float(rs.d), rel=1e-14)
    for t, b in zip(tp, ref, strict=True):
        np.testing.assert_allclose(t.detach().numpy(), b, rtol=1e-14)
