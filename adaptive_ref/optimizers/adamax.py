r"""Adamax: Adam with the infinity norm.

Kingma & Ba, "Adam: A method for stochastic optimization", ICLR 2015, Sec. 7.1, Algorithm 2.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
    check_hparams,
    decoupled_decay,
    finish,
    init_zeros,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["AdamaxState", "adamax_init", "adamax_step", "ADAMAX"]


class AdamaxState(NamedTuple):
    """count: 0-d integer step count. mu: first moment. nu: exponentially weighted infinity norm u."""

    count: Any
    mu: Any
    nu: Any


ADAMAX_HPARAMS = (
    HParam("lr", 2e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the infinity norm", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-8, "denominator guard", low=0.0),
    HParam("eps_placement", "max", "'max': u = max(b2*u, |g| + eps) (torch, optax); "
           "'outside': u = max(b2*u, |g|), step m/(u + eps)", kind="choice",
           choices=("max", "outside"), knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    FACTOR_PRECISION,
)


def adamax_init(param, /, *, state_dtype=None) -> AdamaxState:
    """Step count 0; zero moments."""
    xp, z, count = init_zeros("adamax_init", param, state_dtype)
    return AdamaxState(count, z, xp.zeros_like(z))


def adamax_step(param, grad, state: AdamaxState, /, *, lr=2e-3, beta1=0.9, beta2=0.999,
                eps=1e-8, eps_placement="max", weight_decay=0.0, weight_decay_mode="coupled",
                maximize=False, factor_precision="float64"):
    r"""One Adamax step (Kingma & Ba 2015, Algorithm 2).

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
        u_t = \max(\beta_2 u_{t-1}, |g| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\mathrm{lr}}{1-\beta_1^t}\, \frac{m_t}{u_t}

    The paper has no eps; torch and optax put it inside the max (``eps_placement="max"``);
    ``"outside"`` uses :math:`u_t = \max(\beta_2 u_{t-1}, |g|)` and divides by :math:`u_t + \epsilon`
    (Keras). ``weight_decay_mode``: ``"coupled"`` adds :math:`\lambda\theta` to g (torch);
    ``"decoupled"`` first sets :math:`\theta \leftarrow \theta - \mathrm{lr}\,\lambda\theta`
    (Keras). ``factor_precision="param"`` computes :math:`1-\beta_1^t` in the parameter's dtype.

    Defaults (Algorithm 2, torch.optim.Adamax): lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8.
    Profiles: ``torch``; ``optax`` (optax.adamax: the same formula, no default lr); ``keras``
    (keras.optimizers.Adamax: eps after the max, eps=1e-7, decoupled decay, float32 factors).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(adamax_step, locals())
    check_hparams("adamax_step", ADAMAX_HPARAMS, (lr, beta1, beta2, eps, eps_placement,
                  weight_decay, weight_decay_mode, maximize, factor_precision))
    pre = prelude("adamax_step", param, grad, state, AdamaxState, "adamax_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, eps, weight_decay = scalars(xp, sd, param, lr, beta1, beta2, eps,
                                                  weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    clr = lr / nx.bias_correction(xp, beta1, t)
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)

    def update(p, g, m, u):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        mu = c(beta1) * m
        mu += c(1 - beta1) * g
        if eps_placement == "max":
            nu = xp.maximum(c(beta2) * u, xp.abs(g) + c(eps))
            denom = nu
        else:
            nu = xp.maximum(c(beta2) * u, xp.abs(g))
            denom = nu + c(eps)
        step = mu / denom
        step *= c(clr)
        return p - step, mu, nu

    p_new, mu, nu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu, state.nu))
    return finish(xp, p_new, pre.param_dtype), AdamaxState(count, mu, nu)


ADAMAX = OptimizerSpec(
    name="adamax", title="Adamax", init=adamax_init, step=adamax_step, state_type=AdamaxState,
    hparams=ADAMAX_HPARAMS,
    paper="Kingma & Ba, Adam: A method for stochastic optimization, ICLR 2015, Sec. 7.1, "
          "Algorithm 2",
    summary="Adam with an exponentially weighted infinity norm instead of the second moment.",
    profiles={
        "torch": Profile("torch", dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                       eps_placement="max", weight_decay=0.0,
                                       weight_decay_mode="coupled", maximize=False,
                                       factor_precision="float64"),
                         "torch/optim/adamax.py _single_tensor_adamax (torch 2.13.0)"),
        "optax": Profile("optax", dict(lr=REQUIRED, beta1=0.9, beta2=0.999, eps=1e-8,
                                       eps_placement="max", weight_decay=0.0,
                                       weight_decay_mode="coupled", maximize=False,
                                       factor_precision="param"),
                         "optax/_src/transform.py scale_by_adamax (optax 0.2.8)"),
        "keras": Profile("keras", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7,
                                       eps_placement="outside", weight_decay=0.0,
                                       weight_decay_mode="decoupled", maximize=False,
                                       factor_precision="param"),
                         "keras/src/optimizers/adamax.py Adamax.update_step (keras 3.15.1)",
                         "u = max(b2*u, |g|); step lr*m/((1-b1^t)(u + eps)): eps after the max"),
    },
)
