r"""RAdam: Adam with a rectified adaptive learning rate.

Liu et al., "On the variance of the adaptive learning rate and beyond", ICLR 2020, Algorithm 2.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
    check_hparams,
    finish,
    init_zeros,
    is_zero,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["RAdamState", "radam_init", "radam_step", "RADAM"]


class RAdamState(NamedTuple):
    """count: 0-d integer step count. mu, nu: first and second moments."""

    count: Any
    mu: Any
    nu: Any


RADAM_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-8, "denominator guard", low=0.0),
    HParam("eps_root", 0.0, "guard inside the square root (optax eps_root)", low=0.0),
    HParam("eps_placement", "hat", "'hat': sqrt(1-b2^t)/(sqrt(v) + eps), eps on the "
           "uncorrected root (torch); 'outside': 1/(sqrt(v_hat) + eps) (optax)", kind="choice",
           choices=("hat", "outside"), knob=True),
    HParam("threshold", 5.0, "rectify when rho_t exceeds it (paper 4; official code, torch and "
           "optax 5); at least 4, since r_t is imaginary for 2 < rho_t < 4", low=4.0),
    HParam("threshold_inclusive", False, "rectify when rho_t >= threshold (optax) instead of > "
           "(torch)", kind="bool", knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    FACTOR_PRECISION,
)


def radam_init(param, /, *, state_dtype=None) -> RAdamState:
    """Step count 0; zero moments."""
    xp, z, count = init_zeros("radam_init", param, state_dtype)
    return RAdamState(count, z, xp.zeros_like(z))


def radam_step(param, grad, state: RAdamState, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_root=0.0, eps_placement="hat", threshold=5.0, threshold_inclusive=False,
               weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
               factor_precision="float64"):
    r"""One RAdam step (Liu et al. 2020, Algorithm 2).

    .. math::

        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \qquad
        \hat m_t = \frac{m_t}{1-\beta_1^t} \\
        r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
        \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\, r_t\, \hat m_t\, l_t \quad\text{if } \rho_t >
        \text{threshold}, \qquad \theta_{t-1} - \mathrm{lr}\, \hat m_t \quad\text{otherwise}

    with :math:`l_t = \sqrt{1-\beta_2^t}/(\sqrt{v_t + \epsilon_{root}}+\epsilon)` (``"hat"``, torch) or
    :math:`l_t = 1/(\sqrt{\hat v_t + \epsilon_{root}}+\epsilon)` (``"outside"``, optax). Both branches
    are evaluated and selected with ``where`` (no Python branching on t).
    ``factor_precision="param"`` computes :math:`1-\beta^t` and :math:`\rho_t` in the
    parameter's dtype (optax).

    Defaults (torch.optim.RAdam): lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, threshold 5 (>).
    Profiles: ``torch``; ``optax`` (optax.radam: eps on sqrt(v_hat), rho_t >= 5).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(radam_step, locals())
    check_hparams("radam_step", RADAM_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  threshold, threshold_inclusive, weight_decay, weight_decay_mode, maximize,
                  factor_precision))
    pre = prelude("radam_step", param, grad, state, RAdamState, "radam_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, eps, eps_root, threshold, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, threshold, weight_decay)
    decoupled = weight_decay_mode == "decoupled"
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    count, t = nx.advance(xp, state.count, sd)
    beta1_t, beta2_t = nx.powers(xp, (beta1, beta2), t)
    bc1 = 1.0 - beta1_t
    bc2 = 1.0 - beta2_t  # nx.bias_correction(xp, beta2, t), reusing beta2^t
    rectify, rect = rectifier(xp, beta2, t, beta2_t, threshold, threshold_inclusive)

    def update(p, g, m, v):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=not decoupled)
        if decoupled:
            p = p * c(1 - lr * weight_decay)
        mu = c(beta1) * m
        mu += c(1 - beta1) * g
        nu = c(beta2) * v
        nu += c(1 - beta2) * (g * g)
        m_hat = mu / c(bc1)
        if eps_placement == "hat":
            root = xp.sqrt(nu + c(eps_root)) if not is_zero(eps_root) else xp.sqrt(nu)
            adaptive = c(xp.sqrt(bc2)) / (root + c(eps))
        else:
            v_hat = nu / c(bc2)
            root = xp.sqrt(v_hat + c(eps_root)) if not is_zero(eps_root) else xp.sqrt(v_hat)
            adaptive = 1.0 / (root + c(eps))
        plain = m_hat * c(lr)
        rectified = plain * adaptive
        rectified *= c(rect)  # m_hat * lr * adaptive * rect, left to right
        return p - xp.where(rectify, rectified, plain), mu, nu

    p_new, mu, nu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu, state.nu))
    return finish(xp, p_new, pre.param_dtype), RAdamState(count, mu, nu)


def rectifier(xp, beta2, t, beta2_t, threshold, inclusive: bool):
    """RAdam's switch and rectifier as 0-d arrays: ``(rho_t > threshold, r_t)`` (``>=`` when
    ``inclusive``), r_t = 1 where the switch is off; ``beta2_t`` is ``beta2**t`` (the caller's,
    so that ``1 - beta2**t`` and rho_t use one power). Shared with AdaBelief's ``rectify=True``
    (adabelief-pytorch forks it from RAdam)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    rectify = rho_t >= threshold if inclusive else rho_t > threshold
    ratio = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
             / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    one = nx.ones_like(xp, rho_t)
    return rectify, xp.sqrt(nx.choose(xp, rectify, ratio, one))


def rho(beta2: float, t: int) -> float:
    """RAdam's :math:`\\rho_t` in Python float64 (for tests and docs)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return rho_inf - 2.0 * t * beta2**t / (1.0 - beta2**t) if t > 0 else math.nan


_COMMON = dict(beta1=0.9, beta2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0,
               weight_decay=0.0, weight_decay_mode="coupled", maximize=False)

RADAM = OptimizerSpec(
    name="radam", title="RAdam", init=radam_init, step=radam_step, state_type=RAdamState,
    hparams=RADAM_HPARAMS,
    paper="Liu et al., On the variance of the adaptive learning rate and beyond, ICLR 2020, "
          "Algorithm 2",
    summary="Adam whose adaptive step is switched on, and rectified, once its variance is finite.",
    profiles={
        "torch": Profile("torch", dict(lr=1e-3, eps_placement="hat", threshold_inclusive=False,
                                       factor_precision="float64", **_COMMON),
                         "torch/optim/radam.py _single_tensor_radam (torch 2.13.0)"),
        "optax": Profile("optax", dict(lr=REQUIRED, eps_placement="outside",
                                       threshold_inclusive=True, factor_precision="param",
                                       **_COMMON),
                         "optax/_src/transform.py scale_by_radam (optax 0.2.8)"),
    },
)
