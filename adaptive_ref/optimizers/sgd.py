r"""SGD with momentum, dampening and Nesterov momentum.

Robbins & Monro 1951; heavy-ball momentum (Polyak 1964); Nesterov momentum in the form of
Sutskever et al., "On the importance of initialization and momentum in deep learning", ICML 2013.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
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

__all__ = ["SGDState", "sgd_init", "sgd_step", "SGD"]


class SGDState(NamedTuple):
    """count: 0-d integer step count. momentum_buffer: the param's shape, or None without momentum."""

    count: Any
    momentum_buffer: Any = None


SGD_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("momentum", 0.0, "momentum factor mu (0 = plain SGD, no buffer)", low=0.0, init=True),
    HParam("dampening", 0.0, "dampening d: the buffer adds (1-d)*g", low=0.0, high=1.0),
    HParam("nesterov", False, "Nesterov momentum: step along g + mu*buf", kind="bool", knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    HParam("lr_placement", "outside", "'outside': buf holds no lr, p -= lr*buf (torch, optax "
           "sgd); 'inside': buf accumulates lr*g, p -= buf (differs under a changing lr)",
           kind="choice", choices=("outside", "inside"), knob=True),
    HParam("dampen_first_step", False, "apply dampening on step 1 too; torch does not (it sets "
           "buf = g on step 1)", kind="bool", knob=True),
)


def sgd_init(param, /, *, momentum=0.0, state_dtype=None) -> SGDState:
    """Step count 0; a zero momentum buffer when ``momentum`` is not 0."""
    xp, z, count = init_zeros("sgd_init", param, state_dtype)
    has_buf = not is_zero(momentum)
    return SGDState(count, z if has_buf else None)


def sgd_step(param, grad, state: SGDState, /, *, lr=1e-3, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
             lr_placement="outside", dampen_first_step=False):
    r"""One SGD step with optional momentum.

    .. math::

        g &\leftarrow \pm g + \lambda\theta \;\text{(coupled)}, \qquad
        \theta \leftarrow \theta - \mathrm{lr}\,\lambda\theta \;\text{(decoupled)} \\
        b_t &= \begin{cases} g & t = 1 \text{ (unless dampen\_first\_step)} \\
                \mu b_{t-1} + (1-d)\, g & \text{otherwise} \end{cases} \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\,(g + \mu b_t \text{ if Nesterov else } b_t)

    Without momentum, :math:`\theta_t = \theta_{t-1} - \mathrm{lr}\, g`. With
    ``lr_placement="inside"`` the buffer accumulates :math:`\mathrm{lr}\,(1-d)\,g` and
    :math:`\theta_t = \theta_{t-1} - (\mathrm{lr}\,g + \mu b_t \text{ or } b_t)`; the two agree for a
    constant lr. Nesterov needs momentum > 0 and dampening 0 (as torch checks).
    ``weight_decay_mode="decoupled"`` (Keras) scales :math:`\theta` by :math:`1-\mathrm{lr}\,\lambda`
    before the step instead of adding :math:`\lambda\theta` to g; without momentum the two agree.

    Defaults (torch.optim.SGD): lr=1e-3, momentum=0, dampening=0, nesterov=False, wd=0.
    Profiles: ``torch``; ``optax`` (optax.sgd: no default lr, no dampening, the buffer starts at 0,
    which on step 1 gives the same b_1 = g); ``keras`` (keras.optimizers.SGD: lr 0.01, lr inside
    the buffer, which Keras stores negated, decoupled decay).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(sgd_step, locals())
    check_hparams("sgd_step", SGD_HPARAMS, (lr, momentum, dampening, nesterov, weight_decay,
                  weight_decay_mode, maximize, lr_placement, dampen_first_step))
    pre = prelude("sgd_step", param, grad, state, SGDState, "sgd_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    has_mom = not is_zero(momentum)
    if nesterov and (not has_mom or not is_zero(dampening)):
        msg = "sgd_step: nesterov=True needs momentum > 0 and dampening = 0"
        raise ValueError(msg)
    if has_mom and state.momentum_buffer is None:
        msg = ("sgd_step: momentum is not 0 but the state has no momentum buffer; "
               "pass the same momentum to sgd_init")
        raise ValueError(msg)
    lr, momentum, dampening, weight_decay = scalars(xp, sd, param, lr, momentum, dampening,
                                                    weight_decay)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if an unreadable count overflows
    first = state.count == 0
    inside = lr_placement == "inside"
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)

    def update(p, g, b):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        if b is None:
            return p - c(lr) * g, None
        x = c(lr) * g if inside else g
        buf = c(momentum) * b
        buf += c(1 - dampening) * x
        if not dampen_first_step:
            buf = nx.where(xp, first, x, buf)
        if nesterov:
            direction = c(momentum) * buf
            direction += x  # x + momentum * buf
        else:
            direction = buf
        p_new = p - direction if inside else p - c(lr) * direction
        return p_new, buf

    p_new, buf = _blockwise.run(xp, update, (pre.p, pre.g, state.momentum_buffer))
    return finish(xp, p_new, pre.param_dtype), SGDState(count, buf)


SGD = OptimizerSpec(
    name="sgd", title="SGD", init=sgd_init, step=sgd_step, state_type=SGDState,
    hparams=SGD_HPARAMS,
    paper="Robbins & Monro 1951; momentum: Polyak 1964; Nesterov form: Sutskever et al., ICML 2013",
    summary="Stochastic gradient descent with optional (Nesterov) momentum and dampening.",
    profiles={
        "torch": Profile("torch", dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                                       weight_decay=0.0, weight_decay_mode="coupled",
                                       maximize=False, lr_placement="outside",
                                       dampen_first_step=False),
                         "torch/optim/sgd.py _single_tensor_sgd (torch 2.13.0)"),
        "optax": Profile("optax", dict(lr=REQUIRED, momentum=0.0, dampening=0.0, nesterov=False,
                                       weight_decay=0.0, weight_decay_mode="coupled",
                                       maximize=False, lr_placement="outside",
                                       dampen_first_step=False),
                         "optax/_src/alias.py sgd -> optax/transforms/_accumulation.py trace",
                         "optax has no dampening; weight decay = add_decayed_weights chained "
                         "before sgd"),
        "keras": Profile("keras", dict(lr=1e-2, momentum=0.0, dampening=0.0, nesterov=False,
                                       weight_decay=0.0, weight_decay_mode="decoupled",
                                       maximize=False, lr_placement="inside",
                                       dampen_first_step=False),
                         "keras/src/optimizers/sgd.py SGD.update_step (keras 3.15.1)",
                         "Keras' buffer m = mu*m - lr*g is the negative of the canonical "
                         "lr-inside buffer; it starts at 0, which on step 1 gives b_1 = lr*g"),
    },
)
