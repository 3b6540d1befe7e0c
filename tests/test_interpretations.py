"""Adam's step reached four other ways (adaptive_ref.interpretations), on every backend.

Tolerances: float64 throughout; each comparison is stated in ULPs (``_ulps``): of the reference
value, or for an iterate of max(|reference|, |previous iterate|), so that an iterate landing near
0 by cancellation is not charged for the cancellation. Each route rounds differently (a solve
divides once, Adam divides then multiplies), so bounds are small integers: twice the maximum
measured over 200 random cases per backend by ``python tests/identity_ulps.py`` (least squares 2,
tilt mean 2, tilt covariance 2, exact-gain mean 1, gain 3, posterior variance 4, decoupled mean
6), rounded up to a power of two.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive_ref import adam_init, adam_step
from adaptive_ref import interpretations as it
from adaptive_ref.testing.backends import Backend

N = 7


def _ulps(a, b, start=None) -> float:
    """max |a - b| in ulps of b, or of max(|b|, |start|) when ``start`` is given (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ref = np.abs(b) if start is None else np.maximum(np.abs(b), np.abs(np.asarray(start)))
    return float(np.max(np.abs(a - b) / np.spacing(np.maximum(ref, np.finfo(float).tiny))))


def _needs_linalg(backend):
    if backend is Backend.DASK:
        pytest.skip("dask.array.linalg.solve/inv run an LU that needs uniform square chunks; "
                    "the test vectors are chunked unevenly, as the backend fixture makes them")
    if not hasattr(backend.xp, "linalg"):
        pytest.skip(f"{backend.value} has no linalg extension")


def _adam_case(backend, *, lr=1e-3, eps=1e-8, steps=4, seed=0, scale=None):
    """Adam from a random start over ``steps`` random gradients (scales spanning 1e-6..1e3).

    Returns (phi_t, phi_next, m_hat, v_hat) as backend arrays, the last three after the final step.
    """
    rng = np.random.default_rng(seed)
    if scale is None:
        scale = 10.0 ** rng.uniform(-6, 3, size=N)
    param = backend.asarray(rng.normal(size=N))
    state = adam_init(param)
    for _ in range(steps):
        phi_t = param
        grad = backend.asarray(rng.normal(size=N) * scale)
        param, state = adam_step(param, grad, state, lr=lr, eps=eps)
    m_hat, v_hat = it.adam_moments_hat(state)
    return phi_t, param, m_hat, v_hat


def test_least_squares_equals_adam(backend):
    _needs_linalg(backend)
    phi_t, phi_next, m_hat, v_hat = _adam_case(backend)
    got = it.least_squares_step(phi_t, m_hat, v_hat, lr=1e-3, eps=1e-8)
    p0 = backend.to_numpy(phi_t)
    assert _ulps(backend.to_numpy(got), backend.to_numpy(phi_next), p0) <= 4
    # the surrogate's gradient vanishes at the Adam iterate (relative to |m_hat|)
    gr = backend.to_numpy(it.least_squares_objective_grad(phi_next, phi_t, m_hat, v_hat,
                                                          lr=1e-3, eps=1e-8))
    m = backend.to_numpy(m_hat)
    # |grad| <= |m_hat| * (2 ulp of phi) * H / lr / |delta| ~ a few 1e-13 relative for these scales
    assert np.all(np.abs(gr) <= 1e-9 * np.abs(m) + 1e-300)


def test_bayes_tilt_equals_adam(backend):
    _needs_linalg(backend)
    phi_t, phi_next, m_hat, v_hat = _adam_case(backend, seed=1)
    post = it.bayes_tilt_step(phi_t, m_hat, v_hat, lr=1e-3, eps=1e-8)
    assert _ulps(backend.to_numpy(post.mean), backend.to_numpy(phi_next),
                 backend.to_numpy(phi_t)) <= 4
    h = np.sqrt(backend.to_numpy(v_hat)) + 1e-8
    cov = backend.to_numpy(post.cov)
    np.testing.assert_array_equal(cov - np.diag(np.diag(cov)), 0.0)
    # posterior covariance = prior covariance lr/H (two inversions)
    assert _ulps(np.diag(cov), 1e-3 / h) <= 4


def test_gaussian_tilt_full_covariance():
    """Exact tilt of a non-diagonal Gaussian: log prior - a.phi - log posterior is constant."""
    rng = np.random.default_rng(3)
    a_ = rng.normal(size=(4, 4))
    cov = a_ @ a_.T + 0.5 * np.eye(4)
    mu, a = rng.normal(size=4), rng.normal(size=4)
    post = it.gaussian_tilt(mu, cov, a)
    np.testing.assert_allclose(post.mean, mu - cov @ a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(post.cov, cov, rtol=1e-12)

    def logn(x, m, c):
        d = x - m
        return -0.5 * d @ np.linalg.solve(c, d)

    vals = [logn(x, mu, cov) - a @ x - logn(x, post.mean, post.cov)
            for x in rng.normal(size=(5, 4)) * 3]
    assert np.ptp(vals) <= 1e-11 * max(1.0, np.max(np.abs(vals)))


def test_kalman_exact_gain_is_adam_with_lr_eq_eps(backend):
    _needs_linalg(backend)
    s2 = 1e-3
    phi_t, phi_next, m_hat, v_hat = _adam_case(backend, lr=s2, eps=s2, seed=2)
    post = it.kalman_adam_step(phi_t, m_hat, v_hat, s2=s2)
    assert _ulps(backend.to_numpy(post.mean), backend.to_numpy(phi_next),
                 backend.to_numpy(phi_t)) <= 2
    v = backend.to_numpy(v_hat)
    k = np.diag(backend.to_numpy(it.kalman_gain(v_hat, s2=s2)))
    assert _ulps(k, s2 / (np.sqrt(v) + s2)) <= 8
    assert np.all((k >= 0) & (k < 1))
    # posterior variance s2 v/(sqrt v + s2) <= min(prior, observation noise)
    var = np.diag(backend.to_numpy(post.cov))
    assert _ulps(var, s2 * v / (np.sqrt(v) + s2)) <= 8
    assert np.all(var <= np.minimum(s2 * np.sqrt(v), v))


@given(logv=st.floats(-12, 12), logs2=st.floats(-10, 2))
def test_kalman_approximation_relative_error(logv, logs2):
    """The seed's K ~ Sigma V^{-1}: relative error w.r.t. the approximation is
    eps/(sqrt v + eps) (eps = s^2), w.r.t. the exact gain eps/sqrt(v)."""
    v = np.array([10.0 ** logv])
    s2 = 10.0 ** logs2
    k = np.diag(it.kalman_gain(v, s2=s2))
    k_apx = it.kalman_gain_approx(v, s2=s2)
    # 1 - k/k_apx is formed from two roundings of numbers near 1: absolute error a few 2^-52
    tol = 4 * np.finfo(float).eps
    assert abs((1 - k / k_apx)[0] - (s2 / (np.sqrt(v) + s2))[0]) <= tol
    assert abs((k_apx / k - 1)[0] - (s2 / np.sqrt(v))[0]) <= tol * max(1.0, k_apx[0] / k[0])


def test_kalman_decoupled_is_adam(backend):
    _needs_linalg(backend)
    for lr, eps in ((1e-3, 1e-8), (3e-2, 1e-1), (1e-4, 10.0)):
        phi_t, phi_next, m_hat, v_hat = _adam_case(backend, lr=lr, eps=eps, seed=4)
        post = it.kalman_adam_step_decoupled(phi_t, m_hat, v_hat, lr=lr, eps=eps)
        assert _ulps(backend.to_numpy(post.mean), backend.to_numpy(phi_next),
                     backend.to_numpy(phi_t)) <= 16, (lr, eps)


def test_adabayes_fp_sandwich(backend):
    """|Adam(lr=eta, eps=eta/sigma2)| <= |AdaBayes-FP| <= 2 |Adam(...)|, same sign (exact algebra;
    checked with a 4-ulp allowance at both ends)."""
    eta, sigma2 = 1e-3, 1e-1
    phi_t, phi_next, m_hat, v_hat = _adam_case(backend, lr=eta, eps=eta / sigma2, seed=5)
    fp = backend.to_numpy(it.adabayes_fp_step(phi_t, m_hat, v_hat, eta=eta, sigma2=sigma2))
    p0 = backend.to_numpy(phi_t)
    d_fp, d_adam = fp - p0, backend.to_numpy(phi_next) - p0
    tol = 4 * np.spacing(np.abs(p0))
    assert np.all(np.sign(d_fp) == np.sign(d_adam))
    assert np.all(np.abs(d_adam) <= np.abs(d_fp) + tol)
    assert np.all(np.abs(d_fp) <= 2 * np.abs(d_adam) + tol)


def test_adabayes_fp_limits():
    rng = np.random.default_rng(6)
    phi, m, v = rng.normal(size=5), rng.normal(size=5), 10.0 ** rng.uniform(-4, 2, size=5)
    eta = 1e-3
    # sigma^2 -> inf: Adam with lr eta, eps 0 (relative error eta/(2 sigma^2 sqrt v) -> 1e-13 here)
    big = it.adabayes_fp_step(phi, m, v, eta=eta, sigma2=1e12)
    np.testing.assert_allclose(big - phi, -eta * m / np.sqrt(v), rtol=1e-9)
    # v -> 0: SGD with lr sigma^2
    small = it.adabayes_fp_step(phi, m, np.zeros(5), eta=eta, sigma2=0.3)
    np.testing.assert_allclose(small - phi, -0.3 * m, rtol=1e-14)


def test_dask_or_missing_linalg_reports_cleanly():
    class NoLinalg:
        __name__ = "fake"

    with pytest.raises(TypeError, match="linalg"):
        it._linalg("least_squares_step", NoLinalg())


@pytest.mark.parametrize("b", [Backend.NUMPY])
def test_adam_moments_hat_matches_definition(b):
    phi_t, _, m_hat, v_hat = _adam_case(b, steps=1, seed=7)
    assert m_hat.shape == v_hat.shape == phi_t.shape


def test_adabayes_filter_reaches_its_steady_state_and_fp_approximates_it():
    """The AdaBayes filter with a constant squared gradient converges to the exact fixed point
    (adabayes_steady_state; rtol 1e-12 after 5000 steps, contraction ~(1 + eta|g|)^-2 per
    step); AdaBayes-FP's 1/lambda differs from it by eta*|g|/2 to leading order (measured ratio
    to eta|g|/2: 0.998, 1.006, 1.024, 1.074 for eta|g| = 0.01, 0.03, 0.1, 0.3; asserted within
    10 %)."""
    eta, sigma2 = 1e-2, 1.0
    g = np.array([1.0, 3.0, 10.0, 30.0])
    x = np.full(4, sigma2)
    phi = np.zeros(4)
    for _ in range(5000):
        phi, x = it.adabayes_filter_step(phi, x, np.zeros(4), g * g, eta=eta, sigma2=sigma2)
    exact = it.adabayes_steady_state(g * g, eta=eta, sigma2=sigma2)
    np.testing.assert_allclose(x, exact, rtol=1e-12)
    rel = np.abs(1 / it.adabayes_fp_rate(g * g, eta=eta, sigma2=sigma2) - exact) / exact
    ratio = rel / (eta * g / 2)
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
