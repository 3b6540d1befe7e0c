r"""Adadelta: a per-dimension step size from running averages of squared gradients and updates.

Zeiler, "ADADELTA: An adaptive learning rate method", arXiv:1212.5701, 2012, Algorithm 1.
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
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["AdadeltaState", "adadelta_init", "adadelta_step", "ADADELTA"]


class AdadeltaState(NamedTuple):
    """count: 0-d integer step count. nu: running average of g**2 (torch ``square_avg``, optax
    ``e_g``, Keras ``accumulated_grad``). acc_delta: running average of the squared update
    (torch ``acc_delta``, optax ``e_x``, Keras ``accumulated_delta_var``)."""

    count: Any
    nu: Any
    acc_delta: Any


ADADELTA_HPARAMS = (
    HParam("lr", 1.0, "learning rate (the paper has none: 1)", low=0.0),
    HParam("rho", 0.95, "decay rate of both running averages", low=0.0, high=1.0),
    HParam("eps", 1e-6, "added inside both roots (it also seeds the first step: > 0)", low=0.0,
           low_open=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode)", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
)


def adadelta_init(param, /, *, state_dtype=None) -> AdadeltaState:
    """Step count 0; both running averages zero."""
    xp, z, count = init_zeros("adadelta_init", param, state_dtype)
    return AdadeltaState(count, z, xp.zeros_like(z))


def adadelta_step(param, grad, state: AdadeltaState, /, *, lr=1.0, rho=0.95, eps=1e-6,
                  weight_decay=0.0, weight_decay_mode="coupled", maximize=False):
    r"""One Adadelta step (Zeiler 2012, Algorithm 1, with a learning rate).

    .. math::

        v_t &= \rho v_{t-1} + (1-\rho) g^2, \qquad
        \Delta_t = \frac{\sqrt{u_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\, g \\
        u_t &= \rho u_{t-1} + (1-\rho) \Delta_t^2, \qquad
        \theta_t = \theta_{t-1} - \mathrm{lr}\,\Delta_t

    (:math:`v` is ``nu``, :math:`u` is ``acc_delta``; :math:`\Delta_t` uses the previous
    :math:`u`). The paper's update is ``lr = 1``. ``weight_decay_mode``: ``"coupled"`` adds
    :math:`\lambda\theta` to g (torch, optax); ``"decoupled"`` first sets
    :math:`\theta \leftarrow \theta(1 - \mathrm{lr}\,\lambda)` (Keras' base class).

    Defaults (the paper, Sec. 4.1): lr=1, rho=0.95, eps=1e-6.
    Profiles: ``torch`` (torch.optim.Adadelta: rho=0.9); ``optax`` (optax.adadelta: rho=0.9,
    lr required here: optax's default ``learning_rate=None`` scales by +1 and so *ascends*,
    a finding, docs/conformance.md); ``keras`` (keras.optimizers.Adadelta: lr=1e-3, rho=0.95,
    eps=1e-7, decoupled decay).
    """
    check_hparams("adadelta_step", ADADELTA_HPARAMS, (lr, rho, eps, weight_decay,
                  weight_decay_mode, maximize))
    pre = prelude("adadelta_step", param, grad, state, AdadeltaState, "adadelta_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, rho, eps, weight_decay = scalars(xp, sd, param, lr, rho, eps, weight_decay)
    count, lr = nx.advance_count(xp, state.count, sd, lr)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)

    def update(p, g, v, u):
        # in-place operators on fresh arrays round as the expressions in the docstring
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        nu = c(rho) * v
        nu += c(1 - rho) * (g * g)
        delta = xp.sqrt(u + c(eps)) / xp.sqrt(nu + c(eps))
        delta *= g
        acc = c(rho) * u
        acc += c(1 - rho) * (delta * delta)
        return p - c(lr) * delta, nu, acc

    p_new, nu, acc = _blockwise.run(xp, update, (pre.p, pre.g, state.nu, state.acc_delta))
    return finish(xp, p_new, pre.param_dtype), AdadeltaState(count, nu, acc)


_COMMON = dict(eps=1e-6, weight_decay=0.0, weight_decay_mode="coupled", maximize=False)

ADADELTA = OptimizerSpec(
    name="adadelta", title="Adadelta", init=adadelta_init, step=adadelta_step,
    state_type=AdadeltaState, hparams=ADADELTA_HPARAMS,
    paper="Zeiler, ADADELTA: An adaptive learning rate method, arXiv:1212.5701, 2012, "
          "Algorithm 1",
    summary="Step size sqrt(E[update^2] + eps)/sqrt(E[g^2] + eps) per coordinate.",
    profiles={
        "torch": Profile("torch", dict(_COMMON, lr=1.0, rho=0.9),
                         "torch/optim/adadelta.py _single_tensor_adadelta (torch 2.13.0)"),
        "optax": Profile("optax", dict(_COMMON, lr=REQUIRED, rho=0.9),
                         "optax/_src/alias.py adadelta = chain(add_decayed_weights, "
                         "transform.py scale_by_adadelta, scale_by_learning_rate) (optax 0.2.8)",
                         "learning_rate=None is optax's default: scale_by_learning_rate(None) "
                         "is the identity, so the update +Delta ascends (equals maximize=True, "
                         "lr=1); required here"),
        "keras": Profile("keras", dict(_COMMON, lr=1e-3, rho=0.95, eps=1e-7,
                                       weight_decay_mode="decoupled"),
                         "keras/src/optimizers/adadelta.py Adadelta.update_step and "
                         "base_optimizer.py _apply_weight_decay (keras 3.15.1)",
                         "decoupled decay p - p*wd*lr before the step"),
    },
)
