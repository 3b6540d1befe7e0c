r"""LAMB: Adam's direction scaled per tensor by the trust ratio ||theta|| / ||r||.

You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh, "Large Batch
Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020 (arXiv:1904.00962),
Algorithm 2.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    check_hparams,
    decoupled_decay,
    finish,
    init_zeros,
    is_zero,
    prelude,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile
from .._trust import ZERO_NORM, tensor_norm, trust_ratio

__all__ = ["LambState", "lamb_init", "lamb_step", "LAMB"]


class LambState(NamedTuple):
    """count: 0-d integer step count. mu, nu: Adam's first and second moments."""

    count: Any
    mu: Any
    nu: Any


LAMB_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-6, "added to sqrt(v_hat)", low=0.0),
    HParam("eps_root", 0.0, "added to v_hat inside the square root (optax)", low=0.0),
    HParam("weight_decay", 0.0, "weight decay coefficient (where: decay_placement)", low=0.0),
    HParam("decay_placement", "trust", "'trust': r = m_hat/(sqrt(v_hat) + eps) + wd*theta, "
           "inside the trust ratio (the paper, optax.lamb); 'decoupled': theta <- theta - "
           "lr*wd*theta first, outside the trust ratio, whose ||theta|| is then the decayed "
           "parameter's (Keras' base-class weight decay)",
           kind="choice", choices=("trust", "decoupled"), knob=True),
    ZERO_NORM,
    FACTOR_PRECISION,
)


def lamb_init(param, /, *, state_dtype=None) -> LambState:
    """Step count 0; zero moments."""
    xp, z, count = init_zeros("lamb_init", param, state_dtype)
    return LambState(count, z, xp.zeros_like(z))


def lamb_step(param, grad, state: LambState, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6,
              eps_root=0.0, weight_decay=0.0, decay_placement="trust", zero_norm="one",
              factor_precision="float64"):
    r"""One LAMB step (You et al. 2020, Algorithm 2) on one parameter (one "layer").

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2 \\
        r_t &= \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}
               + \lambda\theta_{t-1} \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\; \frac{\|\theta_{t-1}\|}{\|r_t\|}\; r_t

    The norms are Euclidean norms over the whole parameter (0-d arrays). ``zero_norm="one"``
    sets the ratio to 1 where either norm is 0 (optax, Keras), ``"formula"`` keeps the paper's
    ratio (0 where ``||theta|| = 0``). ``decay_placement="decoupled"`` drops ``lambda theta``
    from ``r`` and first sets :math:`\theta \leftarrow \theta(1 - \mathrm{lr}\,\lambda)`; the
    ratio then reads the decayed parameter's norm (Keras). ``factor_precision="param"`` computes
    :math:`1-\beta^t` in the parameter's dtype. The paper's scaling function phi is the identity
    here (as in optax and Keras).

    Defaults (the paper's BERT settings without decay; optax.lamb): lr=1e-3, beta1=0.9,
    beta2=0.999, eps=1e-6, wd=0. Profiles: ``optax`` (optax.lamb: scale_by_adam,
    add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate; no default lr) and
    ``keras`` (keras.optimizers.Lamb: eps=1e-7, decoupled base-class decay, float32 factors).
    """
    check_hparams("lamb_step", LAMB_HPARAMS, (lr, beta1, beta2, eps, eps_root, weight_decay,
                  decay_placement, zero_norm, factor_precision))
    pre = prelude("lamb_step", param, grad, state, LambState, "lamb_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, eps, eps_root, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    bc1, bc2 = nx.bias_correction(xp, beta1, t), nx.bias_correction(xp, beta2, t)
    p, g = pre.p, pre.g
    has_wd = not is_zero(weight_decay)
    if has_wd and decay_placement == "decoupled":
        p = p * c(decoupled_decay(lr, weight_decay))
    mu = c(beta1) * state.mu
    mu += c(1 - beta1) * g
    nu = c(beta2) * state.nu
    nu += c(1 - beta2) * (g * g)
    v_hat = nu / c(bc2)
    root = xp.sqrt(v_hat) if is_zero(eps_root) else xp.sqrt(v_hat + c(eps_root))
    r = (mu / c(bc1)) / (root + c(eps))
    if has_wd and decay_placement == "trust":
        r = r + c(weight_decay) * p
    p_norm, r_norm = tensor_norm(xp, p), tensor_norm(xp, r)
    trust = trust_ratio(xp, p_norm, r_norm, r_norm, zero_norm)
    p_new = p - c(lr) * (trust * r)
    return finish(xp, p_new, pre.param_dtype), LambState(count, mu, nu)


LAMB = OptimizerSpec(
    name="lamb", title="LAMB", init=lamb_init, step=lamb_step, state_type=LambState,
    hparams=LAMB_HPARAMS,
    paper="You et al., Large Batch Optimization for Deep Learning: Training BERT in 76 minutes, "
          "ICLR 2020 (arXiv:1904.00962), Algorithm 2",
    summary="Adam's direction (plus decay) rescaled per tensor by ||theta|| / ||r||.",
    elementwise=False, coupling="tensor",
    profiles={
        "optax": Profile("optax", dict(lr=REQUIRED, beta1=0.9, beta2=0.999, eps=1e-6,
                                       eps_root=0.0, weight_decay=0.0, decay_placement="trust",
                                       zero_norm="one", factor_precision="param"),
                         "optax/_src/alias.py lamb -> transform.py scale_by_adam, "
                         "add_decayed_weights, scale_by_trust_ratio (optax 0.2.8)",
                         "trust = ||theta||/||r||, 1 where either is 0 (jnp.where)"),
        "keras": Profile("keras", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7,
                                       eps_root=0.0, weight_decay=0.0,
                                       decay_placement="decoupled", zero_norm="one",
                                       factor_precision="param"),
                         "keras/src/optimizers/lamb.py Lamb.update_step (keras 3.15.1)",
                         "decay by the base class before update_step; w_norm of the decayed "
                         "variable; ratio 1 where w_norm or g_norm is 0"),
    },
)
