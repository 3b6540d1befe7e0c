"""VON (Bayesian learning rule, diagonal Gaussian), IVON and root-free RMSProp: limits,
guarantees and the invariance each keeps (root-free: diagonal reparametrisation; Adam: loss
scale, used as the negative control for the former).

Tolerances: float64; exact identities are asserted bit-for-bit or in ULPs; trajectories that
amplify rounding (closed loop on a quadratic) use the stated relative bound.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive_ref import (
    adam_init,
    adam_step,
    ivon_init,
    ivon_sample,
    ivon_step,
    rootfree_init,
    rootfree_step,
    von_init,
    von_step,
)
from adaptive_ref.optimizers.ivon import ivon_hess_update
from adaptive_ref.registry import REGISTRY

NEW = ("von", "ivon", "rootfree_rmsprop", "shampoo", "full_matrix_adagrad")


def _ulps(a, b, start=None) -> float:
    """max |a - b| in ulps of b, or of max(|b|, |start|) when ``start`` (the iterate before the
    step) is given: a result near 0 by cancellation is not charged for the cancellation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ref = np.abs(b) if start is None else np.maximum(np.abs(b), np.abs(np.asarray(start)))
    return float(np.max(np.abs(a - b) / np.spacing(np.maximum(ref, 1e-300))))


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("shape", [(), (3, 4)])
def test_registry_call_shape(name, shape, backend):
    """The call shape registry-driven tests use: spec.step(param, grad, state, **settings)."""
    from adaptive_ref.testing.backends import Backend

    spec = REGISTRY[name]
    if not spec.elementwise and backend is Backend.DASK:
        pytest.skip("dask.array has no linalg.eigh")
    rng = np.random.default_rng(0)
    settings = spec.settings()
    param = backend.asarray(rng.normal(size=shape))
    state = spec.init(param, **spec.init_kwargs(settings))
    for _ in range(2):
        param, state = spec.step(param, backend.asarray(rng.normal(size=shape)), state, **settings)
    out = backend.to_numpy(param)
    assert out.shape == shape and np.all(np.isfinite(out))
    assert int(backend.to_numpy(state.count)) == 2


# --- VON / Bayesian learning rule -----------------------------------------------------------


def test_von_is_newton_in_the_limit(backend):
    """beta1 = beta2 = 0, lr = 1, exact Hessian, no prior: one Newton step, which solves a
    diagonal quadratic f = sum h (theta - c)^2 / 2 in one step."""
    rng = np.random.default_rng(1)
    h, c = 10.0 ** rng.uniform(-3, 3, size=6), rng.normal(size=6)
    theta = rng.normal(size=6)
    p = backend.asarray(theta)
    state = von_init(p)
    p1, _ = von_step(p, backend.asarray(h * (theta - c)), state, lr=1.0, beta1=0.0, beta2=0.0,
                     prior_precision=0.0, hess=backend.asarray(h))
    # measured max 3 ulp over 200 random cases (tests/identity_ulps.py); bound 2x, power of two
    assert _ulps(backend.to_numpy(p1), c, theta) <= 8


def test_von_without_momentum_is_rootfree(backend):
    """beta1 = 0, prior 0, hess = B g^2, same S_0 and damping: bit-for-bit root-free RMSProp."""
    rng = np.random.default_rng(2)
    b, damping = 32.0, 1e-3
    p_von = p_rf = backend.asarray(rng.normal(size=5))
    s_von, s_rf = von_init(p_von), rootfree_init(p_rf)
    for _ in range(5):
        g = backend.asarray(rng.normal(size=5))
        p_von, s_von = von_step(p_von, g, s_von, lr=0.1, beta1=0.0, beta2=0.99,
                                prior_precision=0.0, damping=damping, hess=b * g * g)
        p_rf, s_rf = rootfree_step(p_rf, g, s_rf, lr=0.1, beta2=0.99, damping=damping,
                                   batch_size=b)
    np.testing.assert_array_equal(backend.to_numpy(p_von), backend.to_numpy(p_rf))


def test_von_large_damping_is_sgd():
    """g/(s + delta + damping) -> g/damping: relative gap <= (s + delta)/damping."""
    rng = np.random.default_rng(3)
    p, g = np.zeros(5), rng.normal(size=5)  # p = 0: the step is read off without cancellation
    d = 1e8
    p1, st1 = von_step(p, g, von_init(p), lr=1.0, beta1=0.0, prior_precision=0.0, damping=d)
    gap = np.abs((p1 - p) - (-g / d)) / np.abs(g / d)
    assert np.all(gap <= st1.hess / d * (1 + 1e-12) + 1e-15)


def test_von_sample_has_the_posterior_scale():
    p = np.zeros(4)
    st_ = von_init(p, hess_init=3.0)
    z = np.array([1.0, -1.0, 2.0, 0.0])
    smp = __import__("adaptive_ref").von_sample(p, st_, z, prior_precision=2.0, ess=10.0)
    np.testing.assert_allclose(smp, z / np.sqrt(10.0 * (3.0 + 0.2)), rtol=1e-15)


# --- IVON -------------------------------------------------------------------------------------


@given(h=st.floats(0.0, 1e6), h_hat=st.floats(-1e12, 1e12), wd=st.floats(1e-8, 1.0),
       beta2=st.floats(0.0, 0.9999999))
def test_ivon_hessian_stays_positive(h, h_hat, wd, beta2):
    """h' + wd >= (h + wd)/2 for any h_hat (Shen et al. 2024): x((1 - r d)^2 + 1)/2 >= x/2."""
    h_new = ivon_hess_update(h, h_hat, beta2=beta2, weight_decay=wd)
    x, r = h + wd, 1 - beta2
    # the float result may sit a few ulp below the exact bound
    assert h_new + wd >= (x / 2) * (1 - 8 * np.finfo(float).eps)
    d = (x - (h_hat + wd)) / x
    np.testing.assert_allclose(h_new + wd, x * ((1 - r * d) ** 2 + 1) / 2, rtol=1e-9,
                               atol=1e-9 * x)


def test_ivon_fixed_point_and_sgd_first_step(backend):
    """h_hat = h leaves h unchanged; then with rescale_lr the first step is SGD on g + wd theta."""
    rng = np.random.default_rng(4)
    theta, g = rng.normal(size=6), rng.normal(size=6)
    p = backend.asarray(theta)
    state = ivon_init(p, hess_init=0.5)
    wd, lr = 1e-2, 0.1
    p1, s1 = ivon_step(p, backend.asarray(g), state, lr=lr, hess_init=0.5, weight_decay=wd,
                       hess=backend.asarray(np.full(6, 0.5)))
    assert _ulps(backend.to_numpy(s1.hess), np.full(6, 0.5)) <= 1
    assert _ulps(backend.to_numpy(p1), theta - lr * (g + wd * theta)) <= 4


def test_ivon_price_estimate_is_unbiased_on_a_quadratic():
    """E_z[g(theta + sigma z) z / sigma] = diag Hessian for f = sum h (theta - c)^2/2, the
    estimate ivon_step forms with hess_approx='price'. 20000 draws: the sample mean is within
    5 standard errors (estimated from the draws themselves)."""
    rng = np.random.default_rng(5)
    hdiag, c = np.array([0.5, 2.0, 7.0]), np.array([1.0, -1.0, 0.5])
    theta = np.array([0.3, 0.2, -0.4])
    ess, wd = 100.0, 1e-3
    state = ivon_init(theta, hess_init=1.0)
    draws = []
    for _ in range(20000):
        z = rng.standard_normal(3)
        sample = ivon_sample(theta, state, z, ess=ess, weight_decay=wd)
        g = hdiag * (sample - c)
        draws.append(g * z * np.sqrt(ess * (state.hess + wd)))  # = g z / sigma
    draws = np.array(draws)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - hdiag) <= 5 * se)


def test_ivon_zero_noise_default_is_deterministic():
    p, g = np.ones(3), np.array([1.0, -2.0, 3.0])
    a = ivon_step(p, g, ivon_init(p))
    b = ivon_step(p, g, ivon_init(p), noise=np.zeros(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1].hess, b[1].hess)


# --- root-free RMSProp ------------------------------------------------------------------------


def _quadratic(n, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(10.0 ** rng.uniform(-1, 1, size=n)) @ q.T
    return a, rng.normal(size=n)


def _run(step, init_state, theta0, grad_fn, backend, steps, **kw):
    """Closed loop; parameter and state are materialised after every step, so that a lazy
    backend (Dask) does not rebuild the whole history's graph at each gradient evaluation."""
    p = backend.asarray(theta0)
    state = init_state(p)
    for _ in range(steps):
        g = backend.asarray(grad_fn(backend.to_numpy(p)))
        p, state = step(p, g, state, **kw)
        p = backend.asarray(backend.to_numpy(p))
        state = type(state)(*(None if x is None else backend.asarray(backend.to_numpy(x))
                              for x in state))
    return backend.to_numpy(p)


def test_rootfree_diagonal_reparametrisation_equivariance(backend):
    """theta' = D theta, f'(theta') = f(D^-1 theta'), S_0' = S_0/D^2, damping 0, wd 0:
    root-free gives exactly D theta_t (measured relative gap ~1e-14 after 20 steps; bound 1e-10
    allows for the rounding amplified along the closed loop). Adam (negative control) misses by
    more than 1e-2."""
    a, b = _quadratic(4, 6)
    dvec = np.array([1e-2, 0.5, 3.0, 40.0])
    theta0 = np.array([1.0, -2.0, 0.5, 1.5])
    grad = lambda th: a @ th - b  # noqa: E731
    grad_d = lambda thd: (a @ (thd / dvec) - b) / dvec  # noqa: E731
    kw = dict(lr=0.05, beta2=0.9, damping=0.0, momentum=0.9)

    def init_d(p):
        s = rootfree_init(p, momentum=0.9)
        return s._replace(precond=s.precond / backend.asarray(dvec ** 2))

    t1 = _run(rootfree_step, lambda p: rootfree_init(p, momentum=0.9), theta0, grad, backend,
              20, **kw)
    t2 = _run(rootfree_step, init_d, dvec * theta0, grad_d, backend, 20, **kw)
    assert np.max(np.abs(t2 - dvec * t1) / np.abs(dvec * t1)) <= 1e-10

    a1 = _run(adam_step, adam_init, theta0, grad, backend, 20, lr=0.05)
    a2 = _run(adam_step, adam_init, dvec * theta0, grad_d, backend, 20, lr=0.05)
    assert np.max(np.abs(a2 - dvec * a1) / np.abs(dvec * a1)) > 1e-2


def test_rootfree_loss_scaling_scales_the_step():
    """f -> c f with S -> c^2 S (damping 0): the step becomes step/c (Fisher-type scaling);
    Adam's step (eps 0) is unchanged."""
    rng = np.random.default_rng(7)
    g, s0 = rng.normal(size=5), 10.0 ** rng.uniform(-2, 2, size=5)
    p = np.zeros(5)  # the step is read off without cancellation
    c = 8.0  # a power of two: the scaled computation is exact, so equality is bit-for-bit
    st1 = rootfree_init(p)._replace(precond=s0)
    st2 = rootfree_init(p)._replace(precond=c * c * s0)
    d1 = rootfree_step(p, g, st1, lr=0.1, damping=0.0)[0] - p
    d2 = rootfree_step(p, c * g, st2, lr=0.1, damping=0.0)[0] - p
    np.testing.assert_array_equal(d2 * c, d1)
    e1 = adam_step(p, g, adam_init(p), eps=0.0)[0]
    e2 = adam_step(p, c * g, adam_init(p), eps=0.0)[0]
    np.testing.assert_array_equal(e1, e2)


def test_rootfree_matches_exact_rational_oracle():
    """Root-free RMSProp is a rational map: Fraction arithmetic on the same float64 inputs gives
    the exact trajectory. Over 5 steps with momentum and wd float64 stays within 9 ulp of it
    (maximum over 200 random cases, tests/identity_ulps.py); bound 2x that, a power of two."""
    rng = np.random.default_rng(8)
    p = rng.normal(size=6)
    grads = [rng.normal(size=6) * 10.0 ** rng.uniform(-3, 3, size=6) for _ in range(5)]
    kw = dict(lr=0.01, beta2=0.99, damping=1e-3, batch_size=16.0, momentum=0.9,
              weight_decay=1e-2)
    state = rootfree_init(p, momentum=0.9)
    F = Fraction
    fp = [F(x) for x in p]
    fs = [F(1)] * 6
    fb = [F(0)] * 6
    b2, lr, d, bs, mu, wd = (F(kw[k]) for k in ("beta2", "lr", "damping", "batch_size",
                                                "momentum", "weight_decay"))
    for g in grads:
        p, state = rootfree_step(p, g, state, **kw)
        for i, gi in enumerate(map(F, g)):
            fs[i] = b2 * fs[i] + (1 - b2) * bs * gi * gi
            fb[i] = mu * fb[i] + gi / (fs[i] + d) + wd * fp[i]
            fp[i] = fp[i] - lr * fb[i]
    assert _ulps(p, np.array([float(x) for x in fp])) <= 32


def test_rootfree_large_damping_is_sgd():
    """g/(S + damping) -> g/damping: relative gap S/(S + damping) (Lin et al.: a large damping
    turns the method into SGD with lr/damping)."""
    rng = np.random.default_rng(9)
    p, g = np.zeros(5), rng.normal(size=5)
    d = 1e8
    p1, st1 = rootfree_step(p, g, rootfree_init(p), lr=1.0, damping=d)
    gap = np.abs(p1 - (-g / d)) / np.abs(g / d)
    assert np.all(gap <= st1.precond / d * (1 + 1e-12) + 4 * np.finfo(float).eps)
