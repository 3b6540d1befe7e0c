r"""RMSprop: plain, centred, with momentum.

Tieleman & Hinton, Coursera "Neural networks for machine learning", lecture 6.5 (2012);
centred form and momentum: Graves, "Generating sequences with recurrent neural networks",
arXiv:1308.0850 (2013).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise, _common
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
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

__all__ = ["RMSpropState", "rmsprop_init", "rmsprop_step", "RMSPROP"]


class RMSpropState(NamedTuple):
    """count: 0-d integer step count. nu: EMA of g^2. mu: EMA of g (centred only, else None).
    momentum_buffer: the momentum buffer (momentum > 0 only, else None)."""

    count: Any
    nu: Any
    mu: Any = None
    momentum_buffer: Any = None


RMSPROP_HPARAMS = (
    HParam("lr", 1e-2, "learning rate", low=0.0),
    HParam("alpha", 0.99, "decay rate of the squared-gradient average (optax: decay)",
           low=0.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "denominator guard", low=0.0),
    HParam("eps_placement", "outside", "'outside': sqrt(v) + eps (torch; optax "
           "eps_in_sqrt=False); 'inside': sqrt(v + eps) (optax default)", kind="choice",
           choices=("outside", "inside"), knob=True),
    HParam("centered", False, "divide by the root of the variance estimate v - mean(g)^2",
           kind="bool", init=True, knob=True),
    HParam("momentum", 0.0, "momentum factor (0 = none, no buffer)", low=0.0, init=True),
    HParam("nesterov", False, "Nesterov form of the momentum (optax rmsprop nesterov)",
           kind="bool", knob=True),
    HParam("lr_placement", "outside", "'outside': buf accumulates g/denom, p -= lr*buf (torch); "
           "'inside': buf accumulates lr*g/denom (optax: trace after the lr scaling)",
           kind="choice", choices=("outside", "inside"), knob=True),
    HParam("bias_correction", False, "divide the averages by 1 - alpha^t (optax option)",
           kind="bool", knob=True),
    HParam("initial_accumulator_value", 0.0, "starting value of nu (optax initial_scale)",
           low=0.0, init=True, knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    FACTOR_PRECISION,
)


def rmsprop_init(param, /, *, centered=False, momentum=0.0, initial_accumulator_value=0.0,
                 state_dtype=None) -> RMSpropState:
    """Step count 0; nu = initial value; zero mu (centred) and momentum buffer (momentum > 0)."""
    xp, z, count = init_zeros("rmsprop_init", param, state_dtype)
    has_buf = not is_zero(momentum)
    iav = _common.init_number("rmsprop_init", RMSPROP_HPARAMS, "initial_accumulator_value",
                              initial_accumulator_value)
    return RMSpropState(count, xp.full_like(z, iav),
                        xp.zeros_like(z) if centered else None,
                        xp.zeros_like(z) if has_buf else None)


def rmsprop_step(param, grad, state: RMSpropState, /, *, lr=1e-2, alpha=0.99, eps=1e-8,
                 eps_placement="outside", centered=False, momentum=0.0, nesterov=False,
                 lr_placement="outside", bias_correction=False, initial_accumulator_value=0.0,
                 weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
                 factor_precision="float64"):
    r"""One RMSprop step.

    .. math::

        g &\leftarrow \pm g + \lambda\theta, \qquad
        v_t = \alpha v_{t-1} + (1-\alpha) g^2, \qquad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g \;\text{(centred)} \\
        w_t &= v_t - \bar g_t^2 \text{ (centred) or } v_t
        \quad (\text{each average divided by } 1-\alpha^t \text{ if bias\_correction}) \\
        d_t &= \sqrt{w_t} + \epsilon \;\text{(outside) or}\; \sqrt{w_t + \epsilon} \;\text{(inside)} \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\, g/d_t \quad\text{(no momentum)}, \qquad
        b_t = \mu b_{t-1} + g/d_t,\; \theta_t = \theta_{t-1} - \mathrm{lr}\, b_t \quad\text{(momentum)}

    With ``lr_placement="inside"`` the buffer accumulates :math:`\mathrm{lr}\, g/d_t`
    and :math:`\theta_t = \theta_{t-1} - b_t`; Nesterov steps along :math:`u + \mu b_t`.
    The centred variance is not clamped at 0 (neither framework does).
    ``weight_decay_mode="decoupled"`` (Keras) replaces the :math:`\lambda\theta` term of g by
    :math:`\theta \leftarrow \theta - \mathrm{lr}\,\lambda\theta` before the step;
    ``factor_precision="param"`` computes :math:`1-\alpha^t` in the parameter's dtype (optax).

    Defaults (torch.optim.RMSprop): lr=1e-2, alpha=0.99, eps=1e-8 outside the root.
    Profiles: ``torch``; ``optax`` (optax.rmsprop: decay 0.9, eps inside the root, lr inside the
    momentum buffer); ``keras`` (keras.optimizers.RMSprop: as optax with lr 1e-3, eps 1e-7,
    decoupled decay).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(rmsprop_step, locals())
    check_hparams("rmsprop_step", RMSPROP_HPARAMS, (lr, alpha, eps, eps_placement, centered,
                  momentum, nesterov, lr_placement, bias_correction, initial_accumulator_value,
                  weight_decay, weight_decay_mode, maximize, factor_precision))
    pre = prelude("rmsprop_step", param, grad, state, RMSpropState, "rmsprop_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    has_mom = not is_zero(momentum)
    if centered != (state.mu is not None):
        msg = (f"rmsprop_step: centered={centered} but the state was made with "
               f"centered={not centered}; pass the same value to rmsprop_init")
        raise ValueError(msg)
    if has_mom and state.momentum_buffer is None:
        msg = ("rmsprop_step: momentum is not 0 but the state has no momentum buffer; "
               "pass the same momentum to rmsprop_init")
        raise ValueError(msg)
    lr, alpha, eps, momentum, weight_decay = scalars(xp, sd, param, lr, alpha, eps, momentum,
                                                     weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    bc = nx.bias_correction(xp, alpha, t) if bias_correction else None
    inside = lr_placement == "inside"
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)

    def update(p, g, v, m, b):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        nu = c(alpha) * v
        nu += c(1 - alpha) * (g * g)
        mu = None
        if centered:
            mu = c(alpha) * m
            mu += c(1 - alpha) * g
        nu_hat = nu / c(bc) if bias_correction else nu
        if centered:
            mu_hat = mu / c(bc) if bias_correction else mu
            w = nu_hat - mu_hat * mu_hat
        else:
            w = nu_hat
        denom = xp.sqrt(w) + c(eps) if eps_placement == "outside" else xp.sqrt(w + c(eps))
        u = g / denom
        if b is None:
            return p - c(lr) * u, nu, mu, None
        x = c(lr) * u if inside else u
        buf = c(momentum) * b
        buf += x
        if nesterov:
            direction = c(momentum) * buf
            direction += x  # x + momentum * buf
        else:
            direction = buf
        p_new = p - direction if inside else p - c(lr) * direction
        return p_new, nu, mu, buf

    p_new, nu, mu, buf = _blockwise.run(
        xp, update, (pre.p, pre.g, state.nu, state.mu, state.momentum_buffer))
    return finish(xp, p_new, pre.param_dtype), RMSpropState(count, nu, mu, buf)


_COMMON = dict(centered=False, momentum=0.0, nesterov=False, bias_correction=False,
               initial_accumulator_value=0.0, weight_decay=0.0, weight_decay_mode="coupled",
               maximize=False)

RMSPROP = OptimizerSpec(
    name="rmsprop", title="RMSprop", init=rmsprop_init, step=rmsprop_step,
    state_type=RMSpropState, hparams=RMSPROP_HPARAMS,
    paper="Tieleman & Hinton, Coursera lecture 6.5 (2012); Graves, arXiv:1308.0850 (2013)",
    summary="Divide the gradient by a running root-mean-square of recent gradients.",
    profiles={
        "torch": Profile("torch", dict(lr=1e-2, alpha=0.99, eps=1e-8, eps_placement="outside",
                                       lr_placement="outside", factor_precision="float64",
                                       **_COMMON),
                         "torch/optim/rmsprop.py _single_tensor_rmsprop (torch 2.13.0)"),
        "optax": Profile("optax", dict(lr=REQUIRED, alpha=0.9, eps=1e-8, eps_placement="inside",
                                       lr_placement="inside", factor_precision="param",
                                       **_COMMON),
                         "optax/_src/alias.py rmsprop -> scale_by_rms / scale_by_stddev, trace",
                         "eps_in_sqrt=False gives eps_placement='outside'"),
        "keras": Profile("keras", dict(_COMMON, lr=1e-3, alpha=0.9, eps=1e-7,
                                       eps_placement="inside", lr_placement="inside",
                                       factor_precision="param", weight_decay_mode="decoupled"),
                         "keras/src/optimizers/rmsprop.py RMSprop.update_step (keras 3.15.1)",
                         "centred: sqrt(v - mean^2 + eps); momentum buffer holds lr*g/denom"),
    },
)
