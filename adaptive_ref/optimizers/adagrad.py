r"""Adagrad (diagonal).

Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning and stochastic
optimization", JMLR 12 (2011) 2121-2159.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise, _common
from .. import _numerics as nx
from .._common import (
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

__all__ = ["AdagradState", "adagrad_init", "adagrad_step", "ADAGRAD"]


class AdagradState(NamedTuple):
    """count: 0-d integer step count. sum: accumulated squared gradients (+ initial value)."""

    count: Any
    sum: Any


ADAGRAD_HPARAMS = (
    HParam("lr", 1e-2, "learning rate", low=0.0),
    HParam("lr_decay", 0.0, "lr at step t is lr / (1 + (t-1)*lr_decay)", low=0.0),
    HParam("initial_accumulator_value", 0.0, "starting value of the accumulator (torch 0, "
           "optax 0.1)", low=0.0, init=True, knob=True),
    HParam("eps", 1e-10, "denominator guard", low=0.0),
    HParam("eps_placement", "outside", "'outside': sqrt(sum) + eps (torch); 'inside': "
           "sqrt(sum + eps), zero update where sum = 0 (optax)", kind="choice",
           choices=("outside", "inside"), knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
)


def adagrad_init(param, /, *, initial_accumulator_value=0.0, state_dtype=None) -> AdagradState:
    """Step count 0; accumulator filled with ``initial_accumulator_value``."""
    xp, z, count = init_zeros("adagrad_init", param, state_dtype)
    initial_accumulator_value = _common.init_number("adagrad_init", ADAGRAD_HPARAMS,
                                            "initial_accumulator_value",
                                            initial_accumulator_value)
    return AdagradState(count, xp.full_like(z, float(initial_accumulator_value)))


def adagrad_step(param, grad, state: AdagradState, /, *, lr=1e-2, lr_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, eps_placement="outside",
                 weight_decay=0.0, weight_decay_mode="coupled", maximize=False):
    r"""One Adagrad step.

    .. math::

        g &\leftarrow \pm g + \lambda\theta, \qquad s_t = s_{t-1} + g^2, \qquad
        \eta_t = \mathrm{lr} / (1 + (t-1)\,\mathrm{lr\_decay}) \\
        \theta_t &= \theta_{t-1} - \eta_t\, g / (\sqrt{s_t} + \epsilon)
        \quad\text{or, eps\_placement='inside',}\quad
        \theta_{t-1} - \eta_t\, g / \sqrt{s_t + \epsilon}

    :math:`s_0` = ``initial_accumulator_value`` (an init knob; step ignores it). With
    ``"inside"`` the update is 0 where :math:`s_t = 0`, as optax's ``scale_by_rss`` does.
    ``weight_decay_mode="decoupled"`` (Keras) replaces the :math:`\lambda\theta` term of g by
    :math:`\theta \leftarrow \theta - \mathrm{lr}\,\lambda\theta` before the step (with lr, not
    the lr_decay-adjusted :math:`\eta_t`).

    Defaults (torch.optim.Adagrad): lr=1e-2, lr_decay=0, initial value 0, eps=1e-10, outside.
    Profiles: ``torch``; ``optax`` (optax.adagrad: initial value 0.1, eps=1e-7 inside the root);
    ``keras`` (keras.optimizers.Adagrad: as optax, lr 1e-3, decoupled decay).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(adagrad_step, locals())
    check_hparams("adagrad_step", ADAGRAD_HPARAMS, (lr, lr_decay, initial_accumulator_value, eps,
                  eps_placement, weight_decay, weight_decay_mode, maximize))
    return _adagrad_update("adagrad_step", param, grad, state, lr, lr_decay, eps, eps_placement,
                           weight_decay, weight_decay_mode, maximize)


def _adagrad_update(op, param, grad, state, lr, lr_decay, eps, eps_placement, weight_decay,
                    weight_decay_mode, maximize):
    """Adagrad's update after the hyperparameter check (arguments by position): the one text
    that :func:`adagrad_step` and sparse Adagrad (on the gradient's rows) both run."""
    pre = prelude(op, param, grad, state, AdagradState, op.replace("_step", "_init"))
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, lr_decay, eps, weight_decay = scalars(xp, sd, param, lr, lr_decay, eps, weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    clr = lr / (1.0 + (t - 1.0) * lr_decay)
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)

    def update(p, g, s_old):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        s = g * g
        s += s_old  # s_{t-1} + g^2
        if eps_placement == "outside":
            u = g / (xp.sqrt(s) + c(eps))
        else:
            safe = xp.where(s > 0, s, xp.ones_like(s))
            # g * 0, not 0, where s is not > 0: a NaN gradient (s = NaN) still propagates, as
            # in optax's where(s > 0, rsqrt(s + eps), 0) * g
            u = xp.where(s > 0, g / xp.sqrt(safe + c(eps)), g * 0.0)
        u *= c(clr)
        return p - u, s

    p_new, s = _blockwise.run(xp, update, (pre.p, pre.g, state.sum))
    return finish(xp, p_new, pre.param_dtype), AdagradState(count, s)


ADAGRAD = OptimizerSpec(
    name="adagrad", title="Adagrad", init=adagrad_init, step=adagrad_step,
    state_type=AdagradState, hparams=ADAGRAD_HPARAMS,
    paper="Duchi, Hazan & Singer, Adaptive subgradient methods for online learning and "
          "stochastic optimization, JMLR 12 (2011)",
    summary="Per-coordinate step lr/sqrt(sum of squared gradients).",
    profiles={
        "torch": Profile("torch", dict(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0,
                                       eps=1e-10, eps_placement="outside", weight_decay=0.0,
                                       weight_decay_mode="coupled", maximize=False),
                         "torch/optim/adagrad.py _single_tensor_adagrad (torch 2.13.0)"),
        "optax": Profile("optax", dict(lr=REQUIRED, lr_decay=0.0, initial_accumulator_value=0.1,
                                       eps=1e-7, eps_placement="inside", weight_decay=0.0,
                                       weight_decay_mode="coupled", maximize=False),
                         "optax/_src/transform.py scale_by_rss (optax 0.2.8)"),
        "keras": Profile("keras", dict(lr=1e-3, lr_decay=0.0, initial_accumulator_value=0.1,
                                       eps=1e-7, eps_placement="inside", weight_decay=0.0,
                                       weight_decay_mode="decoupled", maximize=False),
                         "keras/src/optimizers/adagrad.py Adagrad.update_step (keras 3.15.1)"),
    },
)
