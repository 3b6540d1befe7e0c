r"""Adan: adaptive Nesterov momentum.

Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
Models", arXiv:2208.06677 (2022; IEEE TPAMI 2024), Algorithm 1, in the authors' code convention
(sail-sg/Adan ``adan.py``: each beta is the weight of the *old* moment, betas (0.98, 0.92, 0.99),
i.e. the paper's (0.02, 0.08, 0.01)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    check_hparams,
    decoupled_decay,
    finish,
    init_zeros,
    is_zero,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["AdanState", "adan_init", "adan_step", "ADAN"]


class AdanState(NamedTuple):
    """count: 0-d integer step count. m: EMA of the gradients. v: EMA of the gradient
    differences. n: EMA of the squared Nesterov gradient. prev_grad: the previous step's
    gradient (as the update saw it: after coupled decay; 0 after init)."""

    count: Any
    m: Any
    v: Any
    n: Any
    prev_grad: Any


_BETA = dict(low=0.0, high=1.0, high_open=True)

ADAN_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("beta1", 0.98, "decay rate of the gradient EMA m (the weight of the old m)", **_BETA),
    HParam("beta2", 0.92, "decay rate of the gradient-difference EMA v", **_BETA),
    HParam("beta3", 0.99, "decay rate of n, the EMA of the squared Nesterov gradient", **_BETA),
    HParam("eps", 1e-8, "denominator guard, added to sqrt(n_hat)", low=0.0),
    HParam("eps_root", 0.0, "guard added to n_hat inside the square root (optax.adan: 1e-8; "
           "sail-sg/Adan has none)", low=0.0, knob=True),
    HParam("diff_coefficient", "beta2", "coefficient k of the gradient difference d in "
           "n <- b3 n + (1 - b3)(g + k d)^2 and in the update's k v_hat: 'beta2' (the paper's "
           "1 - beta2 written in the code convention; sail-sg/Adan), '1-beta2' (optax.adan)",
           kind="choice", choices=("beta2", "1-beta2"), knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    HParam("weight_decay_mode", "proximal",
           "'proximal': p <- (p - lr u)/(1 + lr wd) (the paper; sail-sg/Adan no_prox=False); "
           "'decoupled': p <- p (1 - lr wd) - lr u (sail-sg/Adan no_prox=True; optax.adan's "
           "p - lr (u + wd p)); 'coupled': L2, g += wd p before the moments",
           kind="choice", choices=("proximal", "decoupled", "coupled"), knob=True),
    FACTOR_PRECISION,
)


def adan_init(param, /, *, state_dtype=None) -> AdanState:
    """Step count 0; zero moments and a zero previous gradient (the first step ignores it)."""
    xp, z, count = init_zeros("adan_init", param, state_dtype)
    return AdanState(count, z, xp.zeros_like(z), xp.zeros_like(z), xp.zeros_like(z))


def adan_step(param, grad, state: AdanState, /, *, lr=1e-3, beta1=0.98, beta2=0.92, beta3=0.99,
              eps=1e-8, eps_root=0.0, diff_coefficient="beta2", weight_decay=0.0,
              weight_decay_mode="proximal", factor_precision="float64"):
    r"""One Adan step (Xie et al. 2022/2024, Algorithm 1; sail-sg/Adan's code convention).

    .. math::

        d_t &= g_t - g_{t-1} \quad (d_1 = 0), \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3) (g_t + k\, d_t)^2, \qquad
        D_t = \sqrt{n_t/(1-\beta_3^t) + \epsilon_{root}} + \epsilon \\
        u_t &= \Big(\frac{m_t}{1-\beta_1^t} + k\,\frac{v_t}{1-\beta_2^t}\Big) \Big/ D_t, \qquad
        \theta_t = \frac{\theta_{t-1} - \mathrm{lr}\, u_t}{1 + \mathrm{lr}\,\lambda}

    with :math:`k = \beta_2` (``diff_coefficient="beta2"``: the paper's :math:`1-\beta_2` in its
    own convention, where :math:`\beta_2 = 0.08`; sail-sg/Adan) or :math:`k = 1-\beta_2`
    (``"1-beta2"``: optax.adan). ``weight_decay_mode``: ``"proximal"`` (above; the paper and
    sail-sg/Adan), ``"decoupled"`` :math:`\theta_t = \theta_{t-1}(1-\mathrm{lr}\,\lambda) -
    \mathrm{lr}\,u_t` (sail-sg/Adan ``no_prox=True``; optax.adan's
    :math:`\theta - \mathrm{lr}(u + \lambda\theta)`), ``"coupled"`` (L2: :math:`g \mathrel{+}=
    \lambda\theta` first; the previous gradient stored is that g). :math:`d_1 = 0` is selected
    with ``where(count == 0, ...)``, not a Python branch (traceable). ``factor_precision="param"``
    computes :math:`1-\beta_i^t` in the parameter's dtype (optax).

    Defaults (sail-sg/Adan): lr=1e-3, betas (0.98, 0.92, 0.99), eps=1e-8, eps_root=0,
    diff_coefficient="beta2", weight_decay=0, proximal decay. Profiles: ``upstream``
    (sail-sg/Adan's ``_single_tensor_adan``; its global-norm clipping ``max_grad_norm``, off by
    default, is not modelled) and ``optax`` (optax.adan: k = 1 - b2, eps_root=1e-8 inside the
    root, decay ``+ wd p`` before the lr, float32 factors, no default lr).
    """
    check_hparams("adan_step", ADAN_HPARAMS, (lr, beta1, beta2, beta3, eps, eps_root,
                  diff_coefficient, weight_decay, weight_decay_mode, factor_precision))
    pre = prelude("adan_step", param, grad, state, AdanState, "adan_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, beta3, eps, eps_root, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, beta3, eps, eps_root, weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    k = beta2 if diff_coefficient == "beta2" else 1 - beta2
    beta1_t, beta2_t, beta3_t = nx.powers(xp, (beta1, beta2, beta3), t)
    coef_m = lr / (1.0 - beta1_t)  # lr / nx.bias_correction(xp, beta1, t)
    coef_v = lr * k / (1.0 - beta2_t)
    bc3 = 1.0 - beta3_t
    first = state.count == 0  # 0-d bool: the first step has no previous gradient
    decay = None if is_zero(weight_decay) or weight_decay_mode == "coupled" else (
        1 + lr * weight_decay if weight_decay_mode == "proximal"
        else decoupled_decay(lr, weight_decay))

    def update(p, g, m, v, n, prev):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=False, weight_decay=weight_decay,
                         coupled=weight_decay_mode == "coupled")
        d = nx.where(xp, first, xp.zeros_like(g), g - prev)
        m_new = c(beta1) * m
        m_new += c(1 - beta1) * g
        v_new = c(beta2) * v
        v_new += c(1 - beta2) * d
        s = g + c(k) * d
        n_new = c(beta3) * n
        n_new += c(1 - beta3) * (s * s)
        nh = n_new / c(bc3)
        denom = xp.sqrt(nh if is_zero(eps_root) else nh + c(eps_root)) + c(eps)
        step = c(coef_m) * m_new
        step += c(coef_v) * v_new
        step /= denom
        if decay is not None and weight_decay_mode == "decoupled":
            p = p * c(decay)
        p_new = p - step
        if decay is not None and weight_decay_mode == "proximal":
            p_new /= c(decay)
        return p_new, m_new, v_new, n_new, g

    p_new, m, v, n, prev = _blockwise.run(
        xp, update, (pre.p, pre.g, state.m, state.v, state.n, state.prev_grad))
    return finish(xp, p_new, pre.param_dtype), AdanState(count, m, v, n, prev)


_COMMON = dict(beta1=0.98, beta2=0.92, beta3=0.99, eps=1e-8, weight_decay=0.0)

ADAN = OptimizerSpec(
    name="adan", title="Adan", init=adan_init, step=adan_step, state_type=AdanState,
    hparams=ADAN_HPARAMS,
    paper="Xie, Zhou, Li, Lin & Yan, Adan: Adaptive Nesterov Momentum Algorithm for Faster "
          "Optimizing Deep Models, arXiv:2208.06677 (2022), IEEE TPAMI 2024, Algorithm 1",
    summary="Nesterov momentum estimated from gradient differences, with an adaptive "
            "denominator of the look-ahead gradient and proximal weight decay.",
    profiles={
        "upstream": Profile(
            "upstream", dict(_COMMON, lr=1e-3, eps_root=0.0, diff_coefficient="beta2",
                             weight_decay_mode="proximal", factor_precision="float64"),
            "sail-sg/Adan adan.py _single_tensor_adan (adan.py last changed in commit "
            "f0b1b818913a89888d59aeeddb9315bf90a23192; read at 2c65beaf400775753b155da4082c3819"
            "fea689b9)",
            "no installed implementation: its cases are run by the reference; no_prox=True is "
            "weight_decay_mode='decoupled'; max_grad_norm (global-norm clipping, default 0 = "
            "off) is not modelled"),
        "optax": Profile(
            "optax", dict(_COMMON, lr=REQUIRED, eps_root=1e-8, diff_coefficient="1-beta2",
                          weight_decay_mode="decoupled", factor_precision="param"),
            "optax/_src/alias.py adan = chain(scale_by_adan, add_decayed_weights, "
            "scale_by_learning_rate); optax/_src/transform.py scale_by_adan (optax 0.2.8)",
            "k = 1 - b2 on the gradient difference in n and in the update (finding A1); "
            "eps_root = 1e-8 inside the root; decay p - lr (u + wd p)"),
    },
)
