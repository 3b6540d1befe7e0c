r"""Continuous-time limits of Adam, integrated with :mod:`scipy.integrate`, and the discrete
trajectories that converge to them.

Two scalings (see ``docs/derivations/gradient_flow.md``):

* **Fixed betas, lr = h -> 0** (time :math:`\tau = k h`). The moments average over a fixed number
  of steps, during which the parameter moves only :math:`O(h)`; in the limit they equal the
  current gradient and its square, and Adam follows
  :math:`\dot\theta = -\nabla f/(|\nabla f| + \epsilon)` (elementwise), which for
  :math:`\epsilon = 0` is sign-gradient flow :math:`\dot\theta = -\operatorname{sign}\nabla f`
  (in Filippov's sense where a component of the gradient vanishes). For :math:`\epsilon > 0` the
  right-hand side is Lipschitz and the discrete trajectory converges at order 1.
* **beta1 = 1 - a h, beta2 = 1 - b h, lr = h -> 0** (time :math:`t = k h`): the moments become
  state variables,

  .. math::

     \dot m = a(\nabla f - m), \quad \dot v = b(\nabla f^2 - v), \quad
     \dot\theta = -\frac{m/(1-e^{-a t})}{\sqrt{v/(1-e^{-b t})} + \epsilon},

  a first-order system in :math:`(m, v, \theta)`, i.e. a second-order-in-time equation for
  :math:`\theta`, not a gradient flow of f in any fixed metric. Convergence is again order 1.

This module is NumPy/SciPy (it integrates ODEs; the discrete side calls
:func:`adaptive_ref.adam_step` on NumPy arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.integrate import solve_ivp

from .optimizers.adam import adam_init, adam_step

__all__ = ["sign_flow", "adam_ode", "adam_trajectory", "observed_orders"]

Grad = Callable[[np.ndarray], np.ndarray]


def sign_flow(grad_f: Grad, theta0, t_end: float, *, eps: float, rtol=1e-12, atol=1e-14):
    r"""Solve :math:`\dot\theta = -\nabla f(\theta)/(|\nabla f(\theta)| + \epsilon)` on
    ``[0, t_end]`` (DOP853); returns :math:`\theta(t_\text{end})`. ``eps = 0`` is the
    sign-gradient flow, valid while no gradient component changes sign (then the solution is
    piecewise linear; use ``eps > 0`` otherwise)."""
    theta0 = np.asarray(theta0, dtype=np.float64)

    def rhs(_t, th):
        g = grad_f(th)
        return -g / (np.abs(g) + eps) if eps > 0 else -np.sign(g)

    sol = solve_ivp(rhs, (0.0, t_end), theta0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        msg = f"sign_flow: integration failed: {sol.message}"
        raise RuntimeError(msg)
    return sol.y[:, -1]


def adam_ode(grad_f: Grad, theta0, t_end: float, *, a: float, b: float, eps: float,
             t_start: float = 1e-9, rtol=1e-12, atol=1e-14):
    r"""Solve the momentum ODE (scaling :math:`\beta_1 = 1 - a h`, :math:`\beta_2 = 1 - b h`,
    lr = h) on ``[0, t_end]``; returns :math:`\theta(t_\text{end})`.

    At :math:`t = 0` the bias corrections are 0/0; the integration starts at ``t_start`` from
    the first-order series :math:`m = a t g_0`, :math:`v = b t g_0^2`,
    :math:`\theta = \theta_0 - t\,g_0/(|g_0|+\epsilon)` (error :math:`O(t_\text{start}^2)`).
    """
    theta0 = np.asarray(theta0, dtype=np.float64)
    n = theta0.size
    g0 = grad_f(theta0)
    y0 = np.concatenate([a * t_start * g0, b * t_start * g0 * g0,
                         theta0 - t_start * g0 / (np.abs(g0) + eps)])

    def rhs(t, y):
        m, v, th = y[:n], y[n:2 * n], y[2 * n:]
        g = grad_f(th)
        m_hat = m / -math.expm1(-a * t)
        v_hat = np.maximum(v, 0.0) / -math.expm1(-b * t)
        return np.concatenate([a * (g - m), b * (g * g - v), -m_hat / (np.sqrt(v_hat) + eps)])

    sol = solve_ivp(rhs, (t_start, t_end), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        msg = f"adam_ode: integration failed: {sol.message}"
        raise RuntimeError(msg)
    return sol.y[2 * n:, -1]


def adam_trajectory(grad_f: Grad, theta0, steps: int, *, lr: float, beta1: float,
                    beta2: float, eps: float):
    """Discrete Adam (:func:`adaptive_ref.adam_step`, bias-corrected, eps outside) on the
    deterministic gradient ``grad_f`` for ``steps`` steps; returns the last iterate."""
    p = np.array(theta0, dtype=np.float64)
    state = adam_init(p)
    for _ in range(steps):
        p, state = adam_step(p, grad_f(p), state, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    return p


def observed_orders(errors) -> np.ndarray:
    r"""``log2(e(h)/e(h/2))`` for errors measured at step sizes h, h/2, h/4, ...: the observed
    order of convergence (1 for a first-order method)."""
    e = np.asarray(errors, dtype=np.float64)
    return np.log2(e[:-1] / e[1:])
