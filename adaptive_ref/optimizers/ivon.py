r"""IVON: improved variational online Newton.

Shen, Daheim, Cong, Nickl, Marconi, Bazan, Yokota, Gurevych, Cremers, Khan & Möllenhoff,
"Variational learning is effective for large deep networks", ICML 2024 (code:
team-approx-bayes/ivon, ``ivon/_ivon.py``, whose conventions are followed here).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _numerics as nx
from .._checks import check_arrays, is_array
from .._common import check_hparams, finish, init_number, init_zeros, prelude, scalars
from .._spec import HParam, OptimizerSpec

__all__ = ["IVONState", "ivon_init", "ivon_step", "ivon_sample", "ivon_hess_update", "IVON"]


class IVONState(NamedTuple):
    """count: 0-d integer step count. momentum: EMA of the gradient. hess: the Hessian estimate
    h (initialised at ``hess_init``); the posterior is N(theta, 1/(ess*(h + wd)))."""

    count: Any
    momentum: Any
    hess: Any


IVON_HPARAMS = (
    HParam("lr", 0.1, "learning rate (the code requires one; 0.1-0.2 in the paper's runs)",
           low=0.0, low_open=True),
    HParam("ess", 1e4, "effective sample size (usually the number of training examples)",
           low=0.0, low_open=True),
    HParam("hess_init", 1.0, "h_0, the initial Hessian estimate", low=0.0, low_open=True,
           init=True),
    HParam("beta1", 0.9, "momentum of the gradient", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.99999, "EMA factor of the Hessian estimate", low=0.0, high=1.0,
           high_open=True),
    HParam("weight_decay", 1e-4, "delta: prior precision per example (the code requires > 0)",
           low=0.0, low_open=True),
    HParam("hess_approx", "price", "'price': reparametrisation estimate g*z*sqrt(ess*(h+wd)) "
           "from the sample's noise z; 'gradsq': ess * g^2", kind="choice",
           choices=("price", "gradsq"), knob=True),
    HParam("rescale_lr", True, "multiply lr by (hess_init + wd), so the first step is an SGD "
           "step (the code always does)", kind="bool", knob=True),
    HParam("debias", True, "divide the momentum by 1 - beta1^t", kind="bool", knob=True),
    HParam("clip_radius", math.inf, "elementwise clip of the preconditioned direction "
           "(inf: no clipping)", low=0.0, low_open=True, allow_inf=True),
)


def ivon_init(param, /, *, hess_init=1.0, state_dtype=None) -> IVONState:
    """Count 0, zero momentum, Hessian filled with ``hess_init``."""
    xp, z, count = init_zeros("ivon_init", param, state_dtype)
    hess_init = init_number("ivon_init", IVON_HPARAMS, "hess_init", hess_init)
    return IVONState(count, z, z + hess_init)


def ivon_sample(param, state: IVONState, noise, /, *, ess=1e4, weight_decay=1e-4):
    r"""The sample :math:`\theta + \sigma z`, :math:`\sigma = 1/\sqrt{\text{ess}(h + \delta)}`,
    at which the caller evaluates the gradient that it then passes to :func:`ivon_step`
    with the same ``noise = z`` (standard normal, drawn by the caller)."""
    xp, _, _ = check_arrays("ivon_sample", {"param": param, "noise": noise, "state.hess":
                                            state.hess}, same_shape=["noise", "state.hess"])
    prec = ess * (state.hess + weight_decay)
    return param + noise / xp.sqrt(xp.astype(prec, param.dtype))


def ivon_hess_update(h, h_hat, *, beta2, weight_decay):
    r"""IVON's Hessian update with the Riemannian correction term:

    .. math:: h' = \beta_2 h + (1-\beta_2)\hat h + \tfrac12 (1-\beta_2)^2 (h-\hat h)^2/(h+\delta)

    With :math:`x = h + \delta > 0`, :math:`r = 1-\beta_2`, :math:`d = (x - (\hat h+\delta))/x`:
    :math:`h' + \delta = x\,((1 - r d)^2 + 1)/2 \ge x/2`, so :math:`h'+\delta > 0` for *any*
    :math:`\hat h`, negative ones included.

    The correction is evaluated as :math:`\tfrac12 e\,(e/(h+\delta))` with
    :math:`e = (1-\beta_2)(h-\hat h)`, never forming :math:`(h-\hat h)^2`, which overflows
    (float32: beyond |h - h_hat| ~ 1.8e19) long before the correction does.
    """
    r = 1 - beta2
    e = r * (h - h_hat)
    return beta2 * h + r * h_hat + 0.5 * e * (e / (h + weight_decay))


def ivon_step(param, grad, state: IVONState, /, *, lr=0.1, ess=1e4, hess_init=1.0, beta1=0.9,
              beta2=0.99999, weight_decay=1e-4, hess_approx="price", rescale_lr=True,
              debias=True, clip_radius=math.inf, noise=None, hess=None):
    r"""One IVON step (Shen et al. 2024, Algorithm 1; the code's conventions).

    ``grad`` is the gradient at the sample :math:`\theta + \sigma z` (:func:`ivon_sample`),
    ``noise`` the standard-normal draw ``z`` used for that sample (default: zeros, i.e. the
    gradient was taken at the mean, and then the 'price' estimate is 0). ``hess`` overrides the
    estimate (e.g. an average over several Monte-Carlo samples). With :math:`\delta` = wd:

    .. math::

        \hat h &= g\,z\,\sqrt{\text{ess}(h+\delta)} \;(= g\,e/\sigma^2,\ e = \sigma z)
            \quad\text{or}\quad \text{ess}\;g^2 \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
        h_t = \texttt{ivon\_hess\_update}(h_{t-1}, \hat h) \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\,(h_0+\delta)\;
            \operatorname{clip}\big((m_t/(1-\beta_1^t) + \delta\theta_{t-1})/(h_t+\delta)\big)

    :math:`h_t + \delta \ge (h_{t-1}+\delta)/2 > 0` for any :math:`\hat h` (see
    :func:`ivon_hess_update`); :math:`\hat h = h` leaves h unchanged.
    Defaults: the code's (hess_init 1, beta1 0.9, beta2 0.99999, wd 1e-4, price, clip inf);
    lr and ess have none there: 0.1 and 1e4 here.
    """
    check_hparams("ivon_step", IVON_HPARAMS, (lr, ess, hess_init, beta1, beta2, weight_decay,
                  hess_approx, rescale_lr, debias, clip_radius))
    pre = prelude("ivon_step", param, grad, state, IVONState, "ivon_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    extra = {k: v for k, v in (("noise", noise), ("hess", hess)) if v is not None}
    if extra:
        check_arrays("ivon_step", {"param": param, **extra}, same_shape=list(extra))
    lr, ess, hess_init, beta1, beta2, weight_decay = scalars(xp, sd, param, lr, ess, hess_init,
                                                             beta1, beta2, weight_decay)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    cast = lambda a: a if a.dtype == dtype else xp.astype(a, dtype)  # noqa: E731
    p, g = pre.p, pre.g
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    h = state.hess
    if hess is not None:
        h_hat = cast(hess)
    elif hess_approx == "gradsq":
        h_hat = c(ess) * (g * g)
    elif noise is None:
        h_hat = xp.zeros_like(g)
    else:
        h_hat = g * cast(noise) * xp.sqrt(c(ess) * (h + c(weight_decay)))
    mom = c(beta1) * state.momentum + c(1 - beta1) * g
    h_new = ivon_hess_update(h, h_hat, beta2=c(beta2), weight_decay=c(weight_decay))
    m_hat = mom / c(nx.bias_correction(xp, beta1, t)) if debias else mom
    direction = (m_hat + c(weight_decay) * p) / (h_new + c(weight_decay))
    if is_array(clip_radius) or clip_radius != math.inf:  # a traced radius cannot be compared
        (radius,) = scalars(xp, sd, param, clip_radius)
        direction = xp.clip(direction, -c(radius), c(radius))
    step_lr = lr * (hess_init + weight_decay) if rescale_lr else lr
    p_new = p - c(step_lr) * direction
    return finish(xp, p_new, pre.param_dtype), IVONState(count, mom, h_new)


IVON = OptimizerSpec(
    name="ivon", title="IVON", init=ivon_init, step=ivon_step, state_type=IVONState,
    hparams=IVON_HPARAMS,
    paper="Shen et al., Variational learning is effective for large deep networks, ICML 2024",
    summary="Variational online Newton with a reparametrisation Hessian estimate and a "
            "Riemannian correction that keeps h + wd positive.",
)
