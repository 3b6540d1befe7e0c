r"""AdaBelief: Adam whose second moment tracks the squared deviation of g from its EMA.

Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
NeurIPS 2020 (arXiv:2010.07468), Algorithm 2; the rectified form of the authors' package
(adabelief-pytorch, forked from RAdam: Liu et al., ICLR 2020).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
    check_hparams,
    decoupled_decay_factor,
    finish,
    init_zeros,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile
from .radam import rectifier

__all__ = ["AdaBeliefState", "adabelief_init", "adabelief_step", "ADABELIEF"]


class AdaBeliefState(NamedTuple):
    """count: 0-d integer step count. mu: first moment m. nu: the "belief" s, the EMA of
    (g - m)**2 plus eps_root added on every step (raw, not bias-corrected)."""

    count: Any
    mu: Any
    nu: Any


ADABELIEF_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the belief s", low=0.0, high=1.0, high_open=True),
    HParam("eps", 1e-16, "denominator guard, added to the square root (form: eps_placement)",
           low=0.0),
    HParam("eps_root", 1e-16, "added into s on every step and kept in the state (optax "
           "eps_root; adabelief-pytorch's in-place exp_avg_var.add_(eps), i.e. eps_root = eps)",
           low=0.0),
    HParam("eps_placement", "outside", "'outside': m_hat/(sqrt(s_hat) + eps) (the paper, optax, "
           "adabelief-pytorch with rectify=False); 'hat': sqrt(1-b2^t)/(1-b1^t) m/(sqrt(s) + eps), "
           "eps on the uncorrected root (adabelief-pytorch's rectified step)", kind="choice",
           choices=("outside", "hat"), knob=True),
    HParam("rectify", False, "RAdam's rectification (adabelief-pytorch rectify=True): the "
           "adaptive step times r_t once rho_t >= threshold, else the un-adapted step (see "
           "degenerated_to_sgd)", kind="bool", knob=True),
    HParam("threshold", 5.0, "with rectify: the adaptive step is taken when rho_t >= threshold "
           "(adabelief-pytorch: 5); at least 4, since r_t is imaginary for 2 < rho_t < 4",
           low=4.0),
    HParam("degenerated_to_sgd", True, "with rectify, on the steps with rho_t < threshold: "
           "True steps lr*m/(1-b1^t) (SGD with momentum), False takes no step",
           kind="bool", knob=True),
    HParam("nesterov", False, "Nesterov: m_hat = b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t) "
           "(optax nesterov=True)", kind="bool", knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("decay_scaling", "lr", "decoupled decay factor: 'lr': p *= 1 - lr*wd; 'fixed': p *= "
           "1 - wd (adabelief-pytorch fixed_decay=True)", kind="choice", choices=("lr", "fixed"),
           knob=True),
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    FACTOR_PRECISION,
)


def adabelief_init(param, /, *, state_dtype=None) -> AdaBeliefState:
    """Step count 0; zero moments."""
    xp, z, count = init_zeros("adabelief_init", param, state_dtype)
    return AdaBeliefState(count, z, xp.zeros_like(z))


def adabelief_step(param, grad, state: AdaBeliefState, /, *, lr=1e-3, beta1=0.9, beta2=0.999,
                   eps=1e-16, eps_root=1e-16, eps_placement="outside", rectify=False,
                   threshold=5.0, degenerated_to_sgd=True, nesterov=False, weight_decay=0.0,
                   weight_decay_mode="coupled", decay_scaling="lr", maximize=False,
                   factor_precision="float64"):
    r"""One AdaBelief step (Zhuang et al. 2020, Algorithm 2).

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g - m_t)^2 + \epsilon_{root} \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\; \frac{m_t/(1-\beta_1^t)}
                    {\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    :math:`\epsilon_{root}` is added into the state on every step (optax ``eps_root``; the
    authors' package adds its ``eps`` in place). ``eps_placement="hat"`` puts :math:`\epsilon` on
    the uncorrected root: :math:`\mathrm{lr}\sqrt{1-\beta_2^t}/(1-\beta_1^t)\; m_t/(\sqrt{s_t}+\epsilon)`.
    ``rectify=True`` is RAdam's rule (:func:`adaptive_ref.optimizers.radam.rectifier`, switch
    :math:`\rho_t \ge` ``threshold``): the adaptive step times :math:`r_t`, and on earlier steps
    :math:`\mathrm{lr}\, m_t/(1-\beta_1^t)` (``degenerated_to_sgd=True``) or no step; both
    branches are evaluated and selected with ``where``. ``nesterov`` replaces
    :math:`m_t/(1-\beta_1^t)` by :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)`.
    ``weight_decay_mode``: ``"coupled"`` adds :math:`\lambda\theta` to g; ``"decoupled"`` first
    multiplies :math:`\theta` by :math:`1-\mathrm{lr}\,\lambda` (``decay_scaling="lr"``) or
    :math:`1-\lambda` (``"fixed"``). ``factor_precision="param"`` computes :math:`1-\beta^t` and
    :math:`\rho_t` in the parameter's dtype (optax).

    Defaults (the paper's Algorithm 2, optax.adabelief): lr=1e-3, beta1=0.9, beta2=0.999,
    eps=1e-16, eps_root=1e-16, no rectification, no decay.
    Profiles: ``optax`` (optax.adabelief: no default lr, no decay, no rectification) and
    ``upstream`` (adabelief-pytorch 0.2.1 ``AdaBelief``: rectify=True with eps on the
    uncorrected root, decoupled lr-scaled decay, eps_root = eps).
    """
    check_hparams("adabelief_step", ADABELIEF_HPARAMS, (
        lr, beta1, beta2, eps, eps_root, eps_placement, rectify, threshold, degenerated_to_sgd,
        nesterov, weight_decay, weight_decay_mode, decay_scaling, maximize, factor_precision))
    pre = prelude("adabelief_step", param, grad, state, AdaBeliefState, "adabelief_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, eps, eps_root, threshold, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, threshold, weight_decay)
    coupled = weight_decay_mode == "coupled"
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    count, t = nx.advance(xp, state.count, sd)
    beta1_t, beta2_t = nx.powers(xp, (beta1, beta2), t)
    bc1 = 1.0 - beta1_t
    bc2 = 1.0 - beta2_t  # nx.bias_correction(xp, beta2, t), reusing beta2^t
    bc1_next = nx.bias_correction(xp, beta1, t + 1.0) if nesterov else None
    factor = None if coupled else decoupled_decay_factor(
        weight_decay, "lr" if decay_scaling == "lr" else "schedule")
    decay = None if factor is None else factor(lr, weight_decay)
    if rectify:
        on, rect = rectifier(xp, beta2, t, beta2_t, threshold, True)

    def update(p, g, m, s):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        mu = c(beta1) * m
        mu += c(1 - beta1) * g  # m_t = b1 m + (1 - b1) g
        r = g - mu
        nu = c(beta2) * s
        nu += c(1 - beta2) * (r * r)  # s_t = b2 s + (1 - b2) (g - m_t)^2
        nu += c(eps_root)  # ... + eps_root, kept in the state
        if nesterov:
            m_hat = mu * c(beta1 / bc1_next)
            m_hat += g * c((1 - beta1) / bc1)
        else:
            m_hat = mu / c(bc1)
        if eps_placement == "outside":
            adaptive = m_hat / (xp.sqrt(nu / c(bc2)) + c(eps))
        else:
            adaptive = m_hat / (xp.sqrt(nu) + c(eps))
            adaptive *= c(xp.sqrt(bc2))
        u = adaptive * c(lr)
        if rectify:
            u *= c(rect)
            plain = m_hat * c(lr) if degenerated_to_sgd else xp.zeros_like(m_hat)
            u = xp.where(on, u, plain)
        return p - u, mu, nu

    p_new, mu, nu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu, state.nu))
    return finish(xp, p_new, pre.param_dtype), AdaBeliefState(count, mu, nu)


_COMMON = dict(beta1=0.9, beta2=0.999, eps=1e-16, eps_root=1e-16, threshold=5.0,
               degenerated_to_sgd=True, nesterov=False, weight_decay=0.0, decay_scaling="lr",
               maximize=False)

ADABELIEF = OptimizerSpec(
    name="adabelief", title="AdaBelief", init=adabelief_init, step=adabelief_step,
    state_type=AdaBeliefState, hparams=ADABELIEF_HPARAMS,
    paper="Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed "
          "Gradients, NeurIPS 2020 (arXiv:2010.07468), Algorithm 2",
    summary="Adam with the EMA of the squared prediction error (g - m)^2 as second moment.",
    profiles={
        "optax": Profile("optax", dict(lr=REQUIRED, eps_placement="outside", rectify=False,
                                       weight_decay_mode="coupled", factor_precision="param",
                                       **_COMMON),
                         "optax/_src/transform.py scale_by_belief, optax/_src/alias.py "
                         "adabelief (optax 0.2.8)",
                         "no weight decay (coupled L2 = chain(add_decayed_weights, adabelief)), "
                         "no rectification; 1 - b**t in the parameter dtype"),
        "upstream": Profile("upstream", dict(lr=1e-3, eps_placement="hat", rectify=True,
                                             weight_decay_mode="decoupled",
                                             factor_precision="float64", **_COMMON),
                            "adabelief_pytorch/AdaBelief.py AdaBelief.step (adabelief-pytorch "
                            "0.2.1)",
                            "eps is both eps and eps_root (exp_avg_var.add_(eps) in place); "
                            "rectified steps divide by sqrt(s) + eps with sqrt(1-b2^t) in the "
                            "step size; rho_t >= 5, else lr*m/(1-b1^t) (degenerated_to_sgd); "
                            "weight_decouple=True, fixed_decay=False; factors in Python float64"),
    },
)
