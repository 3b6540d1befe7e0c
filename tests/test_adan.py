"""Adan under the ``upstream`` profile against sail-sg/Adan's own loop, transcribed here.

sail-sg/Adan is not installed (no package of it is a project dependency), so the conformance
suite runs the ``upstream`` cases on the reference alone. This test checks the reference against
a NumPy transcription of ``_single_tensor_adan`` in sail-sg/Adan's ``adan.py`` (lines 238-293 at
commit f0b1b818913a89888d59aeeddb9315bf90a23192, the file's last change; read at
2c65beaf400775753b155da4082c3819fea689b9), operation by operation, in float64: the
``neg_pre_grad = -g`` trick that makes the first difference 0, the in-place EMAs, the
denominator ``sqrt(n)/sqrt(1 - b3^t) + eps``, the two ``addcdiv`` steps with ``lr/(1 - b1^t)``
and ``lr*b2/(1 - b2^t)``, and the proximal ``div_(1 + lr*wd)`` (or ``no_prox``'s
``mul_(1 - lr*wd)`` first). Its ``max_grad_norm`` clipping is off (the default).

Tolerance. The moments are computed by the same operations in the same order (bit for bit up to
the association of ``g + b2*d``, which is exact to reorder), so they are compared to 4 ULP. The
parameter update is associated differently: upstream subtracts ``lr/bc1 * m/D`` and then
``lr*b2/bc2 * v/D`` from p (two roundings of p, three of each term, one of D's division by
``sqrt(bc3)``), the reference forms ``(c1 m + c2 v)/D`` first. Each step's two computations of
the new p therefore differ by at most ``(2 + 8) u`` times ``|p| + |term_m| + |term_v|`` (about
10 roundings, each relative to one of those magnitudes), and the errors add over the steps
(the map p -> p/(1 + lr wd) does not amplify them). The check is that bound with a 2x margin:
``|p_ref - p_up| <= 20 u sum_t (|p_t| + |term_m,t| + |term_v,t|)``, u = 2**-53.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref.registry import REGISTRY

U = 2.0**-53
SPEC = REGISTRY["adan"]


def upstream_adan(p0, grads, *, lr, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0,
                  no_prox=False):
    """sail-sg/Adan ``_single_tensor_adan`` (one parameter, clip factor 1), in NumPy float64.
    Returns the parameters after each step, the final state and the per-step magnitudes
    ``|p| + |term_m| + |term_v|`` of the bound above."""
    beta1, beta2, beta3 = betas
    param = np.array(p0, dtype=np.float64)
    exp_avg = np.zeros_like(param)
    exp_avg_sq = np.zeros_like(param)
    exp_avg_diff = np.zeros_like(param)
    neg_pre_grad = None
    out, mags = [], []
    for step, grad in enumerate(grads, start=1):
        grad = np.array(grad, dtype=np.float64)
        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        bias_correction3_sqrt = np.sqrt(1.0 - beta3**step)
        if neg_pre_grad is None or step == 1:
            neg_pre_grad = -grad  # p.grad.clone().mul_(-clip_global_grad_norm)
        neg_grad_or_diff = neg_pre_grad + grad  # .add_(grad): the difference, 0 on step 1
        exp_avg = exp_avg * beta1 + grad * (1 - beta1)
        exp_avg_diff = exp_avg_diff * beta2 + neg_grad_or_diff * (1 - beta2)
        neg_grad_or_diff = neg_grad_or_diff * beta2 + grad
        exp_avg_sq = exp_avg_sq * beta3 + (1 - beta3) * (neg_grad_or_diff * neg_grad_or_diff)
        denom = np.sqrt(exp_avg_sq) / bias_correction3_sqrt + eps
        step_size_diff = lr * beta2 / bias_correction2
        step_size = lr / bias_correction1
        term_m = step_size * (exp_avg / denom)
        term_v = step_size_diff * (exp_avg_diff / denom)
        mags.append(np.abs(param) + np.abs(term_m) + np.abs(term_v))
        if no_prox:
            param = param * (1 - lr * weight_decay)
            param = param - term_m
            param = param - term_v
        else:
            param = param - term_m
            param = param - term_v
            param = param / (1 + lr * weight_decay)
        neg_pre_grad = -grad  # neg_grad_or_diff.zero_().add_(grad, alpha=-1.0)
        out.append(param.copy())
    return out, (exp_avg, exp_avg_diff, exp_avg_sq, -neg_pre_grad), mags


def _problem(steps=8):
    assert steps >= 5
    rng = np.random.default_rng(11)
    p0 = rng.normal(size=7)
    scale = np.array([1.0, 1.0, 1e-3, 1e-6, 10.0, 1.0, 1.0])
    grads = [rng.normal(0.05, 1.0, size=7) * scale for _ in range(steps)]
    grads[3][5] = 0.0  # an exact zero gradient and a repeated one (d = 0 after step 1)
    grads[4][6] = grads[3][6]
    return p0, grads


@pytest.mark.parametrize("weight_decay,no_prox", [(0.0, False), (0.05, False), (0.05, True)])
def test_reference_upstream_profile_matches_sail_sg_loop(weight_decay, no_prox):
    p0, grads = _problem()
    lr = 1e-2
    expect, (m, v, n, prev), mags = upstream_adan(p0, grads, lr=lr, weight_decay=weight_decay,
                                                  no_prox=no_prox)
    settings = SPEC.settings("upstream", lr=lr, weight_decay=weight_decay,
                             weight_decay_mode="decoupled" if no_prox else "proximal")
    p, state = p0.copy(), SPEC.init(p0)
    bound = np.zeros_like(p0)
    for t, g in enumerate(grads):
        p, state = SPEC.step(p, g, state, **settings)
        bound += 20 * U * mags[t]
        err = np.abs(p - expect[t])
        assert np.all(err <= bound), f"step {t + 1}: error {err.max():.3g} > bound {bound}"
    for name, want in (("m", m), ("v", v), ("n", n)):
        got = getattr(state, name)
        np.testing.assert_allclose(got, want, rtol=4 * 2 * U, atol=0, err_msg=name)
    np.testing.assert_array_equal(state.prev_grad, prev)
    assert int(state.count) == len(grads)


def test_first_difference_is_zero_and_later_ones_are_g_minus_previous():
    """Step 1 has no difference (v stays 0, n = (1 - b3) g^2); step 2 uses g2 - g1."""
    p0 = np.array([0.5, -1.0])
    g1, g2 = np.array([1.0, -2.0]), np.array([0.25, 1.0])
    s0 = SPEC.init(p0)
    _, s1 = SPEC.step(p0, g1, s0)
    np.testing.assert_array_equal(s1.v, 0.0)
    np.testing.assert_array_equal(s1.n, (1 - 0.99) * g1 * g1)
    _, s2 = SPEC.step(p0, g2, s1)
    np.testing.assert_array_equal(s2.v, 0.92 * s1.v + (1 - 0.92) * (g2 - g1))
    np.testing.assert_array_equal(s2.prev_grad, g2)


def test_upstream_and_optax_profiles_differ_by_the_difference_coefficient():
    """Finding A1: with every other setting equal, diff_coefficient alone separates the two
    conventions from step 2 on (step 1 has d = 0)."""
    p0, grads = _problem()
    grads = grads[:3]
    runs = {}
    for k in ("beta2", "1-beta2"):
        p, s = p0.copy(), SPEC.init(p0)
        traj = []
        for g in grads:
            p, s = SPEC.step(p, g, s, lr=1e-2, diff_coefficient=k)
            traj.append(p)
        runs[k] = traj
    np.testing.assert_array_equal(runs["beta2"][0], runs["1-beta2"][0])
    assert np.max(np.abs(runs["beta2"][1] - runs["1-beta2"][1])) > 1e-4


@pytest.mark.parametrize("bad,match", [
    (dict(beta3=1.0), "beta3"), (dict(eps_root=-1.0), "eps_root"),
    (dict(diff_coefficient="b2"), "diff_coefficient"),
    (dict(weight_decay_mode="l2"), "weight_decay_mode")])
def test_bad_hyperparameters_name_the_argument(bad, match):
    p = np.zeros(2)
    with pytest.raises((ValueError, TypeError), match=match):
        SPEC.step(p, p, SPEC.init(p), **bad)


# ---- invariants that hold for Adan (elementwise, odd in (p, g)); the catalogue's core table
# lists the 2014-2019 family only, so they are checked here with the catalogue's functions
def _inv():
    from adaptive_ref.testing import invariants

    return invariants


@pytest.mark.parametrize("profile", ["upstream", "optax"])
def test_sign_flip_and_permutation_equivariance(profile):
    inv = _inv()
    settings = SPEC.settings(profile, lr=1e-2, weight_decay=0.05)
    p0, grads = _problem()
    inv.check_sign_flip_equivariant(SPEC, p0, grads, settings)
    inv.check_permutation_equivariant(SPEC, p0, grads, settings,
                                      np.random.default_rng(0).permutation(p0.size))


def test_zero_gradient_fixed_point_and_first_step_sign():
    """From a fresh state: zero gradients leave p unchanged (eps > 0, no decay); with eps = 0
    the first step is -lr*sign(g) (m_hat = g, v = 0, n_hat = g^2)."""
    inv = _inv()
    p0, grads = _problem()
    inv.check_zero_gradient_fixed_point(SPEC, p0, np.zeros_like(p0), SPEC.settings("upstream"))
    g = np.where(grads[0] == 0, 1.0, grads[0])
    inv.check_first_step_is_minus_lr_sign(SPEC, g, SPEC.settings("upstream", eps=0.0))


@pytest.mark.parametrize("k", [-7, 3])
def test_loss_scale_identity(k):
    """step(c g, eps, eps_root) == step(g, eps/c, eps_root/c^2) bitwise for c = 2^k: m, v and
    the difference scale by c, n by c^2."""
    p0, grads = _problem()
    _inv().check_loss_scale_identity(SPEC, p0, grads, SPEC.settings("optax", lr=1e-2), k)


def test_fused_paths_decline_adan():
    """No fused kernel for Adan: the numba module has no adan_step, and a fused step of
    another optimizer handed an AdanState refuses it by name."""
    fused = pytest.importorskip("adaptive_ref.fused", exc_type=ImportError)
    assert not hasattr(fused, "adan_step")
    p = np.zeros(3)
    with pytest.raises(TypeError, match="AdanState"):
        fused.adam_step(p, p, SPEC.init(p))
