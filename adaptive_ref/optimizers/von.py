r"""The Bayesian learning rule with a diagonal Gaussian: variational online Newton (VON/VOGN).

Khan & Rue, "The Bayesian learning rule", JMLR 24 (2023), Sec. 4 (diagonal Gaussian, delta
method); Khan, Nielsen, Tangkaratt, Lin, Gal & Srivastava, "Fast and scalable Bayesian deep
learning by weight-perturbation in Adam", ICML 2018 (VON, VOGN, Vadam; code emtiyaz/vadam).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._checks import check_arrays, is_array
from .._common import check_hparams, finish, init_number, init_zeros, prelude, scalars
from .._spec import HParam, OptimizerSpec

__all__ = ["VONState", "von_init", "von_step", "von_sample", "VON"]


class VONState(NamedTuple):
    """count: 0-d integer step count. mu: momentum of the (prior-regularised) gradient.
    hess: s, the running estimate of the diagonal Hessian (or GGN) of the average loss; the
    posterior precision is ``ess * (s + prior_precision/ess + damping)``."""

    count: Any
    mu: Any
    hess: Any


VON_HPARAMS = (
    HParam("lr", 1e-3, "learning rate (alpha) of the mean", low=0.0),
    HParam("beta1", 0.9, "momentum of the gradient (0 = the plain Bayesian learning rule)",
           low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "EMA factor of the Hessian estimate (rho = 1 - beta2 is the natural-"
           "gradient step of the precision)", low=0.0, high=1.0, high_open=True),
    HParam("prior_precision", 1.0, "precision lambda of the Gaussian prior N(0, 1/lambda)",
           low=0.0),
    HParam("ess", 1.0, "effective sample size N (number of training examples): the loss is "
           "N times the average loss whose gradient is passed", low=0.0, low_open=True),
    HParam("damping", 0.0, "extra damping added to the precision per example", low=0.0),
    HParam("bias_correction", True, "divide the momentum by 1 - beta1^t", kind="bool", knob=True),
    HParam("hess_init", 1.0, "s_0, the initial Hessian estimate", low=0.0, init=True),
)


def von_init(param, /, *, hess_init=1.0, state_dtype=None) -> VONState:
    """Count 0, zero momentum, Hessian estimate filled with ``hess_init``."""
    xp, z, count = init_zeros("von_init", param, state_dtype)
    hess_init = init_number("von_init", VON_HPARAMS, "hess_init", hess_init)
    return VONState(count, z, z + hess_init)


def von_sample(param, state: VONState, noise, /, *, prior_precision=1.0, ess=1.0, damping=0.0):
    r"""The weight sample :math:`\tilde\theta = \theta + z/\sqrt{N(s + \lambda/N + \text{damping})}`
    at which the caller evaluates the gradient (and Hessian) for the next :func:`von_step`.

    ``noise`` is the standard-normal draw ``z`` (the caller's random numbers: the step functions
    stay pure and deterministic). ``noise = 0`` gives the mean, and with it the delta-method
    (MAP-like) variant of the rule.
    """
    xp, _, _ = check_arrays("von_sample", {"param": param, "noise": noise, "state.hess":
                                           state.hess}, same_shape=["noise", "state.hess"])
    prec = ess * (state.hess + (prior_precision / ess + damping))
    return param + noise / xp.sqrt(xp.astype(prec, param.dtype))


def von_step(param, grad, state: VONState, /, *, lr=1e-3, beta1=0.9, beta2=0.999,
             prior_precision=1.0, ess=1.0, damping=0.0, bias_correction=True, hess_init=1.0,
             hess=None):
    r"""One step of the Bayesian learning rule with a diagonal Gaussian posterior (VON).

    The posterior is :math:`q = \mathcal N(\theta, \operatorname{diag}(\sigma^2))`.

    ``grad`` is the gradient of the *average* loss at a sample of q (see :func:`von_sample`), and
    ``hess`` an estimate of its diagonal Hessian there (VON), or the mean of per-example squared
    gradients (VOGN's Gauss-Newton). Without ``hess`` the squared gradient ``grad**2`` is used
    (the Vprop/Vadam estimate: deterministic, but biased low for a mini-batch mean).
    With :math:`\delta = \lambda/N`:

    .. math::

        s_t &= \beta_2 s_{t-1} + (1-\beta_2)\,\hat h_t \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)(g_t + \delta\theta_{t-1}), \qquad
        \hat m_t = m_t/(1-\beta_1^t) \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\,\hat m_t / (s_t + \delta + \text{damping})

    and the posterior variance is :math:`\sigma_t^2 = 1/(N(s_t + \delta + \text{damping}))`.
    Square-root free: the natural gradient of the Gaussian's natural parameters divides by the
    precision itself (Khan & Rue 2023, Sec. 4); Vadam's square root is a later modification.
    Limits (tests): ``beta1 = beta2 = 0``, ``lr = 1``, exact Hessian, ``lambda = 0`` is one Newton
    step; with ``beta1 = 0``, ``lambda = 0``, ``hess = B g^2`` it is root-free RMSProp.

    Defaults: lr 1e-3, beta1 0.9, beta2 0.999, prior precision 1, ess 1 (set it to N), s_0 = 1.
    """
    check_hparams("von_step", VON_HPARAMS, (lr, beta1, beta2, prior_precision, ess, damping,
                  bias_correction, hess_init))
    pre = prelude("von_step", param, grad, state, VONState, "von_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    if hess is not None:
        check_arrays("von_step", {"param": param, "hess": hess}, same_shape=["hess"])
    lr, beta1, beta2, prior_precision, ess, damping = scalars(
        xp, sd, param, lr, beta1, beta2, prior_precision, ess, damping)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    p, g = pre.p, pre.g
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    h_hat = g * g if hess is None else (hess if hess.dtype == dtype else xp.astype(hess, dtype))
    s = c(beta2) * state.hess + c(1 - beta2) * h_hat
    delta = prior_precision / ess
    g_reg = g if (not is_array(delta) and delta == 0) else g + c(delta) * p
    mu = c(beta1) * state.mu + c(1 - beta1) * g_reg
    m_hat = mu / c(nx.bias_correction(xp, beta1, t)) if bias_correction else mu
    p_new = p - c(lr) * (m_hat / (s + c(delta + damping)))
    return finish(xp, p_new, pre.param_dtype), VONState(count, mu, s)


VON = OptimizerSpec(
    name="von", title="VON / Bayesian learning rule (diagonal Gaussian)", init=von_init,
    step=von_step, state_type=VONState, hparams=VON_HPARAMS,
    paper="Khan & Rue, The Bayesian learning rule, JMLR 24 (2023); Khan et al., Fast and "
          "scalable Bayesian deep learning by weight-perturbation in Adam, ICML 2018",
    summary="Natural-gradient VI with a diagonal Gaussian: momentum / (Hessian EMA + prior "
            "precision), no square root.",
)
