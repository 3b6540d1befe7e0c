"""Adam's continuous-time limits (adaptive_ref.gradient_flow): the discrete trajectory converges
to the ODE solution at order 1 as the step h halves.

Problem: f = (theta - c)^T A (theta - c)/2 with a non-diagonal A (cond ~ 11), theta in R^2.
The ODE is integrated with DOP853 at rtol 1e-12 (its own error, checked below, is < 1e-8, far
below the discretisation errors 1e-3..1e-2 being measured). Observed orders are
log2(e(h)/e(h/2)); measured values (numpy float64) are in each test's docstring; the asserted
window [0.9, 1.1] on the finest pairs is what "order 1" means here, and the errors must also
decrease monotonically.
"""

from __future__ import annotations

import numpy as np

from adaptive_ref.gradient_flow import adam_ode, adam_trajectory, observed_orders, sign_flow

A = np.array([[4.0, 1.5], [1.5, 1.0]])
C = np.array([1.0, -0.5])


def grad_f(th):
    return A @ (th - C)


def test_momentum_ode_first_order():
    """beta1 = 1 - 10h, beta2 = 1 - h, lr = h, T = 1, eps = 1e-8.
    Measured errors 7.0e-3, 3.5e-3, 1.75e-3, 8.8e-4, 4.4e-4 for n = 50..800;
    orders 0.996, 0.998, 0.999, 0.999."""
    th0, t_end = np.array([-1.0, 2.0]), 1.0
    ref = adam_ode(grad_f, th0, t_end, a=10.0, b=1.0, eps=1e-8)
    errs = []
    for n in (50, 100, 200, 400, 800):
        h = t_end / n
        th = adam_trajectory(grad_f, th0, n, lr=h, beta1=1 - 10 * h, beta2=1 - h, eps=1e-8)
        errs.append(np.max(np.abs(th - ref)))
    orders = observed_orders(errs)
    assert np.all(np.diff(errs) < 0)
    assert np.all((orders > 0.9) & (orders < 1.1)), orders


def test_ode_integration_error_is_negligible():
    th0 = np.array([-1.0, 2.0])
    a = adam_ode(grad_f, th0, 1.0, a=10.0, b=1.0, eps=1e-8, rtol=1e-12, atol=1e-14)
    b = adam_ode(grad_f, th0, 1.0, a=10.0, b=1.0, eps=1e-8, rtol=1e-10, atol=1e-12)
    c = adam_ode(grad_f, th0, 1.0, a=10.0, b=1.0, eps=1e-8, t_start=1e-7)
    assert np.max(np.abs(a - b)) < 1e-8
    assert np.max(np.abs(a - c)) < 1e-8


def test_fixed_betas_tend_to_eps_smoothed_sign_flow():
    """beta1 = 0.5, beta2 = 0.9 fixed, lr = h = 1/n, T = 1, eps = 0.5 (Lipschitz limit
    -g/(|g|+eps)). Measured errors 2.5e-2, 1.3e-2, 6.6e-3, 3.3e-3, 1.7e-3 for n = 200..3200;
    orders 0.93, 0.97, 0.98, 0.99. (With beta2 = 0.999 the averaging window, 1000 steps, spans
    the whole run at these n, and no convergence is visible: the limit needs h << 1 - beta2.)"""
    th0 = np.array([-1.0, 2.0])
    ref = sign_flow(grad_f, th0, 1.0, eps=0.5)
    errs = [np.max(np.abs(adam_trajectory(grad_f, th0, n, lr=1.0 / n, beta1=0.5, beta2=0.9,
                                          eps=0.5) - ref)) for n in (200, 400, 800, 1600, 3200)]
    orders = observed_orders(errs)
    assert np.all(np.diff(errs) < 0)
    assert np.all((orders[1:] > 0.9) & (orders[1:] < 1.1)), orders


def test_sign_flow_eps_zero():
    """eps = 0 on [0, 0.5] from (-5, 6): no gradient component changes sign, so the sign flow is
    the straight line theta0 - t sign(g0). Adam (beta1 0.5, beta2 0.9) converges to it:
    measured errors 2.2e-2 .. 1.7e-3 for n = 200..3200 per unit time; orders 0.84, 0.92, 0.96,
    0.98 (the first pair is still pre-asymptotic)."""
    th0, t_end = np.array([-5.0, 6.0]), 0.5
    line = th0 - t_end * np.sign(grad_f(th0))
    assert np.all(np.sign(grad_f(line)) == np.sign(grad_f(th0)))
    ref = sign_flow(grad_f, th0, t_end, eps=0.0)
    np.testing.assert_allclose(ref, line, rtol=1e-12)
    errs = [np.max(np.abs(adam_trajectory(grad_f, th0, int(n * t_end), lr=1.0 / n, beta1=0.5,
                                          beta2=0.9, eps=0.0) - ref))
            for n in (200, 400, 800, 1600, 3200)]
    orders = observed_orders(errs)
    assert np.all(np.diff(errs) < 0)
    assert np.all((orders[1:] > 0.9) & (orders[1:] < 1.1)), orders
