r"""Adam's step computed four other ways: each function here builds the next iterate by its own
route (a linear solve, a Gaussian tilt, a Kalman update, a fixed point), so that a test can check
that the route lands on Adam.

All functions take the *bias-corrected* moments :math:`\hat m_t, \hat v_t` of one Adam step
(:func:`adam_moments_hat` reads them off an :class:`~adaptive_ref.optimizers.adam.AdamState`) and
the current parameter :math:`\phi_t`, and work on any array-API namespace (taken from the
inputs). The matrix routes flatten the parameter to a vector of length ``n`` and build full
``n x n`` matrices: they are for checking identities on small problems, not for training.

* :func:`least_squares_step`:
  ``argmin_phi m^T(phi - phi_t) + (1/(2 lr)) (phi - phi_t)^T H (phi - phi_t)`` with ``H =
  diag(sqrt(v_hat) + eps)``, solved with ``xp.linalg.solve`` on the full matrix.
* :func:`gaussian_tilt` / :func:`bayes_tilt_step`: prior ``N(phi_t, lr H^{-1})`` times
  ``exp(-m_hat^T phi)``, posterior computed in natural parameters; mean = Adam's iterate,
  covariance = the prior's.
* :func:`kalman_update` / :func:`kalman_adam_step` / :func:`kalman_adam_step_decoupled`: the
  Kalman update of a Gaussian prior by a pseudo-observation of ``phi``; with
  ``Sigma = s^2 diag(sqrt(v_hat))``, ``V = diag(v_hat)`` it is exactly Adam with ``lr = eps = s^2``.
* :func:`adabayes_fp_step`: Aitchison's (2020) steady-state AdaBayes step, sandwiched between
  Adam with ``lr = eta, eps = eta/sigma^2`` and twice that step.

The derivations are in ``docs/derivations/``; the tests are ``tests/test_interpretations.py``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat as aac

__all__ = [
    "adam_moments_hat", "least_squares_step", "least_squares_objective_grad",
    "GaussianPosterior", "gaussian_tilt", "bayes_tilt_step",
    "kalman_update", "kalman_gain", "kalman_gain_approx", "kalman_adam_step",
    "kalman_adam_step_decoupled", "adabayes_fp_step", "adabayes_fp_rate",
    "adabayes_filter_step", "adabayes_steady_state",
]


def _linalg(op: str, xp):
    """The linalg extension of ``xp``, or a TypeError saying that it is missing."""
    la = getattr(xp, "linalg", None)
    if la is None:
        msg = f"{op}: the namespace {xp.__name__} has no linalg extension (needed for solve)"
        raise TypeError(msg)
    return la


def _flat(xp, x):
    return xp.reshape(x, (-1,))


def _diag(xp, d):
    """The full diagonal matrix with ``d`` on its diagonal (not a diagonal-aware shortcut)."""
    n = d.shape[0]
    eye = xp.eye(n, dtype=d.dtype, device=aac.device(d))
    return eye * d[None, :]


def _solve_vec(la, xp, a, b):
    """``a^{-1} b`` for a vector ``b``, through the general solver (b passed as a column)."""
    return xp.reshape(la.solve(a, xp.reshape(b, (-1, 1))), (-1,))


def _matvec(xp, a, b):
    return xp.reshape(xp.matmul(a, xp.reshape(b, (-1, 1))), (-1,))


def adam_moments_hat(state, *, beta1: float = 0.9, beta2: float = 0.999):
    r"""``(m_hat, v_hat)`` of an Adam state after ``state.count`` steps (Kingma & Ba, Sec. 3).

    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`, with ``t`` read
    from the state (a 0-d integer array) and the factors computed in the moments' dtype.
    """
    xp = aac.array_namespace(state.mu)
    t = xp.astype(state.count, state.mu.dtype)
    one = xp.ones((), dtype=state.mu.dtype, device=aac.device(state.mu))
    bc1 = one - xp.pow(one * beta1, t)
    bc2 = one - xp.pow(one * beta2, t)
    return state.mu / bc1, state.nu / bc2


# ---------------------------------------------------------------------------------------------
# (a) regularised least squares


def least_squares_step(phi, m_hat, v_hat, *, lr, eps):
    r"""Minimiser of the Adam surrogate, by a general linear solve.

    .. math::

        \phi_{t+1} = \arg\min_\phi\; \hat m^\top(\phi-\phi_t)
            + \tfrac{1}{2\,\mathrm{lr}}(\phi-\phi_t)^\top H (\phi-\phi_t),
        \qquad H = \operatorname{diag}(\sqrt{\hat v}+\epsilon)

    Setting the gradient to zero gives the linear system
    :math:`H(\phi-\phi_t) = -\mathrm{lr}\,\hat m`, solved here with ``xp.linalg.solve`` on the
    full ``n x n`` matrix ``H`` (no use is made of its
    being diagonal). Returns the new parameter in ``phi``'s shape. Equals
    :func:`~adaptive_ref.adam_step`'s iterate (eps outside the root, bias-corrected moments).
    """
    xp = aac.array_namespace(phi, m_hat, v_hat)
    la = _linalg("least_squares_step", xp)
    h = _diag(xp, xp.sqrt(_flat(xp, v_hat)) + eps)
    delta = _solve_vec(la, xp, h, -lr * _flat(xp, m_hat))
    return phi + xp.reshape(delta, phi.shape)


def least_squares_objective_grad(phi, phi_t, m_hat, v_hat, *, lr, eps):
    r"""Gradient of the surrogate at ``phi``: :math:`\hat m + H(\phi-\phi_t)/\mathrm{lr}`
    (full matrix product). It vanishes at the Adam iterate."""
    xp = aac.array_namespace(phi, phi_t, m_hat, v_hat)
    h = _diag(xp, xp.sqrt(_flat(xp, v_hat)) + eps)
    d = _flat(xp, phi - phi_t)
    return xp.reshape(_flat(xp, m_hat) + _matvec(xp, h, d) / lr, phi.shape)


# ---------------------------------------------------------------------------------------------
# (b) Bayes procedure 1: exact exponential tilting of a Gaussian


class GaussianPosterior(NamedTuple):
    """Mean (parameter's shape) and full covariance (``n x n``) of a Gaussian."""

    mean: Any
    cov: Any


def gaussian_tilt(mean, cov, a) -> GaussianPosterior:
    r"""Normalise :math:`\mathcal N(\phi;\mu,\Sigma)\,\exp(-a^\top\phi)` (exact, any SPD ``cov``).

    In natural parameters :math:`(\Lambda, \eta) = (\Sigma^{-1}, \Sigma^{-1}\mu)` the factor
    :math:`\exp(-a^\top\phi)` only shifts :math:`\eta \to \eta - a`; so the product is Gaussian with
    precision :math:`\Lambda` (unchanged) and mean :math:`\Lambda^{-1}(\eta - a) = \mu - \Sigma a`.
    Computed that way: precision by ``inv``, mean by ``solve`` against the precision.
    ``mean`` and ``a`` have one shape; ``cov`` is ``n x n`` with ``n = mean.size``.
    """
    xp = aac.array_namespace(mean, cov, a)
    la = _linalg("gaussian_tilt", xp)
    precision = la.inv(cov)
    eta = _matvec(xp, precision, _flat(xp, mean)) - _flat(xp, a)
    new_mean = _solve_vec(la, xp, precision, eta)
    return GaussianPosterior(xp.reshape(new_mean, mean.shape), la.inv(precision))


def bayes_tilt_step(phi, m_hat, v_hat, *, lr, eps) -> GaussianPosterior:
    r"""Bayes procedure 1, stated exactly: prior :math:`\mathcal N(\phi_t, \mathrm{lr}\,H^{-1})`,
    pseudo-likelihood :math:`\exp(-\hat m^\top\phi)`,
    :math:`H = \operatorname{diag}(\sqrt{\hat v}+\epsilon)`.

    The posterior is :math:`\mathcal N(\phi_t - \mathrm{lr}\,H^{-1}\hat m,\; \mathrm{lr}\,H^{-1})`:
    its mean is Adam's iterate and its covariance is the prior's (the step learns nothing about
    ``H``; ``v`` comes from outside). Returns a :class:`GaussianPosterior`.
    """
    xp = aac.array_namespace(phi, m_hat, v_hat)
    la = _linalg("bayes_tilt_step", xp)
    h = _diag(xp, xp.sqrt(_flat(xp, v_hat)) + eps)
    prior_cov = lr * la.inv(h)
    return gaussian_tilt(phi, prior_cov, m_hat)


# ---------------------------------------------------------------------------------------------
# (c) Bayes procedure 2: the Kalman gain


def kalman_update(mean, cov, y, obs_cov) -> GaussianPosterior:
    r"""Kalman update of the prior :math:`\mathcal N(\mu, \Sigma)` by the observation
    :math:`y = \phi + \varepsilon`, :math:`\varepsilon\sim\mathcal N(0, V)` (observation matrix I).

    :math:`K = \Sigma(V+\Sigma)^{-1}` (by ``solve``), mean :math:`\mu + K(y-\mu)`, covariance
    :math:`(I-K)\Sigma`, computed as the equal :math:`V(V+\Sigma)^{-1}\Sigma`, which avoids the
    cancellation in :math:`I-K` when :math:`K \to I`. Full matrices; ``y`` has ``mean``'s shape.
    """
    xp = aac.array_namespace(mean, cov, y, obs_cov)
    la = _linalg("kalman_update", xp)
    s = cov + obs_cov
    # K = Sigma S^{-1}  <=>  K^T = S^{-T} Sigma^T; S and Sigma are symmetric.
    s_inv_cov = la.solve(s, cov)  # S^{-1} Sigma
    gain = xp.permute_dims(s_inv_cov, (1, 0))  # (S^{-1} Sigma)^T = Sigma S^{-1}
    innov = _flat(xp, y) - _flat(xp, mean)
    new_mean = _flat(xp, mean) + _matvec(xp, gain, innov)
    return GaussianPosterior(xp.reshape(new_mean, mean.shape), xp.matmul(obs_cov, s_inv_cov))


def kalman_gain(v_hat, *, s2):
    r"""The full gain :math:`K = \Sigma(V+\Sigma)^{-1}` for
    :math:`\Sigma = s^2\operatorname{diag}(\sqrt{\hat v})`, :math:`V = \operatorname{diag}(\hat
    v)`, as an ``n x n`` matrix computed by ``solve``.
    Exactly :math:`\operatorname{diag}(s^2/(\sqrt{\hat v}+s^2))`."""
    xp = aac.array_namespace(v_hat)
    la = _linalg("kalman_gain", xp)
    v = _flat(xp, v_hat)
    sigma = _diag(xp, s2 * xp.sqrt(v))
    obs = _diag(xp, v)
    return xp.permute_dims(la.solve(sigma + obs, sigma), (1, 0))


def kalman_gain_approx(v_hat, *, s2):
    r"""The seed's approximate gain :math:`\Sigma V^{-1} = s^2/\sqrt{\hat v}` (per coordinate)."""
    xp = aac.array_namespace(v_hat)
    return s2 / xp.sqrt(v_hat)


def kalman_adam_step(phi, m_hat, v_hat, *, s2) -> GaussianPosterior:
    r"""Bayes procedure 2 with the full gain: prior
    :math:`\mathcal N(\phi_t, s^2\operatorname{diag}(\sqrt{\hat v}))`, pseudo-observation
    :math:`y = \phi_t - \hat m` with noise :math:`V = \operatorname{diag}(\hat v)`.

    Mean :math:`\phi_t - K\hat m = \phi_t - s^2\hat m/(\sqrt{\hat v}+s^2)`: exactly Adam with
    ``lr = eps = s2``. Covariance :math:`s^2\hat v/(\sqrt{\hat v}+s^2)` on the diagonal, below
    both the prior variance and the observation noise.
    """
    xp = aac.array_namespace(phi, m_hat, v_hat)
    v = _flat(xp, v_hat)
    sigma = _diag(xp, s2 * xp.sqrt(v))
    return kalman_update(phi, sigma, phi - m_hat, _diag(xp, v))


def kalman_adam_step_decoupled(phi, m_hat, v_hat, *, lr, eps) -> GaussianPosterior:
    r"""Kalman form with ``lr`` and ``eps`` decoupled: prior covariance
    :math:`\epsilon\operatorname{diag}(\sqrt{\hat v})`, pseudo-observation
    :math:`y = \phi_t - (\mathrm{lr}/\epsilon)\hat m`, noise :math:`\operatorname{diag}(\hat v)`.

    Gain :math:`\epsilon/(\sqrt{\hat v}+\epsilon)`, so the mean is
    :math:`\phi_t - \mathrm{lr}\,\hat m/(\sqrt{\hat v}+\epsilon)`: Adam with any ``lr``,
    ``eps > 0``.
    """
    xp = aac.array_namespace(phi, m_hat, v_hat)
    v = _flat(xp, v_hat)
    sigma = _diag(xp, eps * xp.sqrt(v))
    return kalman_update(phi, sigma, phi - (lr / eps) * m_hat, _diag(xp, v))


# ---------------------------------------------------------------------------------------------
# (d) Aitchison's AdaBayes, fixed-point (steady-state) form


def adabayes_fp_rate(v_hat, *, eta, sigma2):
    r"""AdaBayes-FP's precision
    :math:`\lambda = \frac{1}{2\sigma^2} + \sqrt{\hat v/\eta^2 + \frac{1}{4\sigma^4}}`
    (Aitchison 2020): the steady state of a Kalman filter whose prior drifts with variance
    :math:`\eta^2` per step towards a stationary :math:`\sigma^2`."""
    xp = aac.array_namespace(v_hat)
    a = 1.0 / (2.0 * sigma2)
    return a + xp.sqrt(v_hat / (eta * eta) + a * a)


def adabayes_fp_step(phi, m_hat, v_hat, *, eta, sigma2):
    r"""One AdaBayes-FP step, :math:`\phi_{t+1} = \phi_t - \hat m/\lambda` (weight drift off).

    With :math:`a = 1/(2\sigma^2)`, :math:`b = \sqrt{\hat v}/\eta`:
    :math:`\lambda = a + \sqrt{a^2+b^2}`, while Adam with ``lr = eta``, ``eps = eta/sigma2``
    divides by :math:`D = 2a + b`. Since
    :math:`D/2 \le a+\sqrt{a^2+b^2} \le D`, the AdaBayes-FP step lies between that Adam step and
    twice it (per coordinate, same sign). Limits: :math:`\sigma^2\to\infty` is Adam
    (lr ``eta``, eps 0); :math:`\hat v\to 0` is momentum SGD with lr :math:`\sigma^2`.
    """
    return phi - m_hat / adabayes_fp_rate(v_hat, eta=eta, sigma2=sigma2)


def adabayes_filter_step(phi, s2_post, m_hat, g2, *, eta, sigma2):
    r"""One step of Aitchison's AdaBayes filter (not the fixed point): returns
    ``(phi_new, s2_post_new)``.

    .. math::

        s^2_\text{prior} = s^2_\text{post}\,e^{-\eta^2/\sigma^2}
            + \sigma^2\,(1 - e^{-\eta^2/\sigma^2}), \qquad
        1/s^{2\prime}_\text{post} = 1/s^2_\text{prior} + g^2, \qquad
        \phi' = \phi - s^{2\prime}_\text{post}\,\hat m

    ``g2`` is the squared gradient of the summed loss (or its running average).
    """
    xp = aac.array_namespace(phi, s2_post, m_hat, g2)
    kappa = (eta * eta) / sigma2
    decay = math.exp(-kappa)
    prior = s2_post * decay + sigma2 * (-math.expm1(-kappa))
    post = 1.0 / (1.0 / prior + g2)
    return phi - post * m_hat, xp.asarray(post)


def adabayes_steady_state(v, *, eta, sigma2):
    r"""The exact fixed point :math:`x = s^2_\text{post}` of :func:`adabayes_filter_step` for a
    constant ``g2 = v``: the positive root of
    :math:`v\,c\,x^2 + (1 - c + v d)\,x - d = 0` with :math:`c = e^{-\eta^2/\sigma^2}`,
    :math:`d = \sigma^2(1-c)` (written to avoid cancellation). AdaBayes-FP's
    :math:`1/\lambda` is its first-order approximation; their relative difference is about
    :math:`\eta\sqrt v/2` when the gradient dominates (:math:`\sqrt v/\eta \gg 1/\sigma^2`).
    """
    xp = aac.array_namespace(v)
    kappa = (eta * eta) / sigma2
    c = math.exp(-kappa)
    d = sigma2 * (-math.expm1(-kappa))
    b = -math.expm1(-kappa) + v * d
    # x = 2d / (b + sqrt(b^2 + 4 v c d)): the root without subtracting nearly equal numbers
    return 2.0 * d / (b + xp.sqrt(b * b + 4.0 * v * c * d))
