r"""Lion: the sign of an interpolation of momentum and gradient.

Chen et al., "Symbolic discovery of optimization algorithms", NeurIPS 2023, Algorithm 2
(google/automl, lion/lion_pytorch.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    EMA_WEIGHT_PRECISION,
    check_hparams,
    decoupled_decay,
    ema_weights,
    finish,
    init_zeros,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["LionState", "lion_init", "lion_step", "LION"]


class LionState(NamedTuple):
    """count: 0-d integer step count. mu: the momentum, an EMA of g with rate beta2."""

    count: Any
    mu: Any


LION_HPARAMS = (
    HParam("lr", 1e-4, "learning rate (the size of every coordinate's step)", low=0.0),
    HParam("beta1", 0.9, "weight of the momentum in the interpolation whose sign is the step",
           low=0.0, high=1.0),
    HParam("beta2", 0.99, "decay rate of the momentum", low=0.0, high=1.0),
    HParam("weight_decay", 0.0, "decoupled weight decay: theta - lr*(sign(c) + wd*theta)",
           low=0.0),
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    EMA_WEIGHT_PRECISION,
)


def lion_init(param, /, *, state_dtype=None) -> LionState:
    """Step count 0; zero momentum."""
    xp, z, count = init_zeros("lion_init", param, state_dtype)
    return LionState(count, z)


def lion_step(param, grad, state: LionState, /, *, lr=1e-4, beta1=0.9, beta2=0.99,
              weight_decay=0.0, maximize=False, ema_weight_precision="float64"):
    r"""One Lion step (Chen et al. 2023, Algorithm 2).

    .. math::

        c_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
        \theta_t = \theta_{t-1} - \mathrm{lr}\,\bigl(\operatorname{sign}(c_t)
                   + \lambda\,\theta_{t-1}\bigr) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2) g

    with :math:`\operatorname{sign}(0) = 0`. The decay is decoupled (the paper's, optax's
    ``add_decayed_weights`` after the sign, Keras' base class); it is applied as
    :math:`\theta(1-\mathrm{lr}\,\lambda) - \mathrm{lr}\operatorname{sign}(c_t)`, equal in exact
    arithmetic. ``ema_weight_precision="param"`` forms both weights :math:`1-\beta` in the
    parameter's dtype from the rounded :math:`\beta` (Keras' ``update_step``).

    Where :math:`c_t` is within rounding of 0 the sign, and so the step, depends on the order of
    the operations; the conformance cases are generated where that cannot happen
    (:func:`adaptive_ref.conformance.fidelity.lion_sign_margin`).

    Defaults (the authors' lion_pytorch.py): lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.
    Profiles: ``upstream`` (the paper / google/automl); ``optax`` (optax.lion: lr required,
    weight_decay=1e-3); ``keras`` (keras.optimizers.Lion: lr=1e-3, EMA weights in the variable
    dtype); ``keras-torch`` (Keras' torch backend: EMA weights as Python floats).
    """
    check_hparams("lion_step", LION_HPARAMS, (lr, beta1, beta2, weight_decay, maximize,
                  ema_weight_precision))
    pre = prelude("lion_step", param, grad, state, LionState, "lion_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, weight_decay = scalars(xp, sd, param, lr, beta1, beta2, weight_decay)
    count, lr = nx.advance_count(xp, state.count, sd, lr)
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    _, w1 = ema_weights(xp, beta1, param, sd, ema_weight_precision)
    _, w2 = ema_weights(xp, beta2, param, sd, ema_weight_precision)
    decay = decoupled_decay(lr, weight_decay)  # Lion's decay is always decoupled

    def update(p, g, m):
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=0.0, coupled=False)
        interp = c(beta1) * m
        interp += c(w1) * g
        if decay is not None:
            p = p * c(decay)
        mu = c(beta2) * m
        mu += c(w2) * g
        return p - c(lr) * nx.sign(xp, interp), mu

    p_new, mu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu))
    return finish(xp, p_new, pre.param_dtype), LionState(count, mu)


_COMMON = dict(beta1=0.9, beta2=0.99, maximize=False, ema_weight_precision="float64")
_KERAS = dict(_COMMON, lr=1e-3, weight_decay=0.0, ema_weight_precision="param")

LION = OptimizerSpec(
    name="lion", title="Lion", init=lion_init, step=lion_step, state_type=LionState,
    hparams=LION_HPARAMS,
    paper="Chen et al., Symbolic discovery of optimization algorithms, NeurIPS 2023, "
          "Algorithm 2",
    summary="Sign of an interpolation of momentum and gradient; decoupled weight decay.",
    profiles={
        "upstream": Profile("upstream", dict(_COMMON, lr=1e-4, weight_decay=0.0),
                            "the paper's Algorithm 2 and google/automl lion/lion_pytorch.py "
                            "Lion.step (decay p*(1 - lr*wd) first; not installed: read from "
                            "the published code)"),
        "optax": Profile("optax", dict(_COMMON, lr=REQUIRED, weight_decay=1e-3),
                         "optax/_src/alias.py lion = chain(transform.py scale_by_lion(mode="
                         "'hard'), add_decayed_weights, scale_by_learning_rate) (optax 0.2.8)",
                         "theta - lr*(sign(c) + wd*theta); mode='smooth'/'refined' are not Lion "
                         "and are not covered"),
        "keras": Profile("keras", _KERAS,
                         "keras/src/optimizers/lion.py Lion.update_step (keras 3.15.1)",
                         "beta cast to the variable dtype, then 1 - beta: float32 EMA weights; "
                         "decoupled decay p - p*wd*lr by the base class"),
        # Keras' torch backend reimplements Lion (torch._foreach_*) with the Python floats
        # 1 - beta as weights
        "keras-torch": Profile("keras-torch", dict(_KERAS, ema_weight_precision="float64"),
                               "keras/src/backend/torch/optimizers/torch_lion.py "
                               "Lion._parallel_update_step (keras 3.15.1)",
                               "as 'keras' except the EMA weights 1 - beta (Python floats)"),
    },
)
