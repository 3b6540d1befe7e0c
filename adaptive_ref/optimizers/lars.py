r"""LARS: SGD with momentum whose step is scaled per tensor by eta ||theta|| / ||g + wd theta||.

You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", arXiv:1708.03888
(2017), Algorithm 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._common import check_hparams, finish, init_zeros, prelude, scalars
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile
from .._trust import ZERO_NORM, tensor_norm, trust_ratio

__all__ = ["LarsState", "lars_init", "lars_step", "LARS"]


class LarsState(NamedTuple):
    """count: 0-d integer step count. momentum_buffer: the momentum trace."""

    count: Any
    momentum_buffer: Any


LARS_HPARAMS = (
    HParam("lr", 1.0, "learning rate (global, multiplies the local rate)", low=0.0),
    HParam("momentum", 0.9, "momentum factor mu", low=0.0, high=1.0),
    HParam("nesterov", False, "Nesterov momentum: step along x + mu*buf", kind="bool",
           knob=True),
    HParam("trust_coefficient", 1e-3, "eta, the trust coefficient", low=0.0, low_open=True),
    HParam("eps", 0.0, "added to the trust ratio's denominator", low=0.0),
    HParam("weight_decay", 0.0, "L2 coefficient beta: g' = g + beta*theta", low=0.0),
    HParam("trust_denominator", "update", "'update': ||g + wd*theta|| + eps (optax); 'sum': "
           "||g|| + wd*||theta|| + eps (the paper's Algorithm 1)", kind="choice",
           choices=("update", "sum"), knob=True),
    HParam("lr_placement", "inside", "'inside': the buffer accumulates lr*ratio*g', p -= buf "
           "(the paper, optax's trace after scale_by_learning_rate); 'outside': it accumulates "
           "ratio*g', p -= lr*buf (differs under a changing lr)", kind="choice",
           choices=("inside", "outside"), knob=True),
    ZERO_NORM,
)


def lars_init(param, /, *, state_dtype=None) -> LarsState:
    """Step count 0; zero momentum buffer."""
    xp, z, count = init_zeros("lars_init", param, state_dtype)
    return LarsState(count, z)


def lars_step(param, grad, state: LarsState, /, *, lr=1.0, momentum=0.9, nesterov=False,
              trust_coefficient=1e-3, eps=0.0, weight_decay=0.0, trust_denominator="update",
              lr_placement="inside", zero_norm="one"):
    r"""One LARS step (You, Gitman & Ginsburg 2017, Algorithm 1) on one parameter (one layer).

    .. math::

        g' &= g + \beta\theta, \qquad
        \rho = \frac{\eta\,\|\theta\|}{\|g'\| + \epsilon} \;\text{('update')} \quad\text{or}\quad
        \frac{\eta\,\|\theta\|}{\|g\| + \beta\|\theta\| + \epsilon} \;\text{('sum')} \\
        x &= \mathrm{lr}\,\rho\, g', \qquad b_t = \mu b_{t-1} + x, \qquad
        \theta_t = \theta_{t-1} - b_t \quad(\text{Nesterov: } - (x + \mu b_t))

    The norms are Euclidean norms over the whole parameter (0-d arrays). With
    ``lr_placement="outside"`` the buffer accumulates :math:`\rho g'` and the step is
    :math:`\mathrm{lr}\, b_t` (the same under a constant lr). ``zero_norm="one"`` sets
    :math:`\rho = 1` (not eta) where ``||theta||`` or the update's norm is 0 (optax);
    ``"formula"`` keeps the paper's ratio (0 where ``||theta|| = 0``: such a layer never moves).

    Defaults (optax.lars): momentum=0.9, eta=1e-3, eps=0, wd=0, no Nesterov; lr=1 (the paper
    schedules a global rate; optax requires one). Profiles: ``optax`` (optax.lars:
    add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate, trace) and ``paper``
    (Algorithm 1: denominator ||g|| + wd ||theta||, the ratio as written).
    """
    check_hparams("lars_step", LARS_HPARAMS, (lr, momentum, nesterov, trust_coefficient, eps,
                  weight_decay, trust_denominator, lr_placement, zero_norm))
    pre = prelude("lars_step", param, grad, state, LarsState, "lars_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, momentum, trust_coefficient, eps, weight_decay = scalars(
        xp, sd, param, lr, momentum, trust_coefficient, eps, weight_decay)
    count, lr = nx.advance_count(xp, state.count, sd, lr)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    p, g = pre.p, pre.g
    gd = g + c(weight_decay) * p
    p_norm, gd_norm = tensor_norm(xp, p), tensor_norm(xp, gd)
    if trust_denominator == "update":
        den = gd_norm + c(eps)
    else:
        den = tensor_norm(xp, g) + c(weight_decay) * p_norm + c(eps)
    trust = trust_ratio(xp, c(trust_coefficient) * p_norm, den, gd_norm, zero_norm)
    inside = lr_placement == "inside"
    x = (c(lr) * trust) * gd if inside else trust * gd
    buf = c(momentum) * state.momentum_buffer + x
    direction = x + c(momentum) * buf if nesterov else buf
    p_new = p - direction if inside else p - c(lr) * direction
    return finish(xp, p_new, pre.param_dtype), LarsState(count, buf)


LARS = OptimizerSpec(
    name="lars", title="LARS", init=lars_init, step=lars_step, state_type=LarsState,
    hparams=LARS_HPARAMS,
    paper="You, Gitman & Ginsburg, Large Batch Training of Convolutional Networks, "
          "arXiv:1708.03888 (2017), Algorithm 1",
    summary="Momentum SGD with a per-tensor local rate eta ||theta|| / ||g + wd theta||.",
    elementwise=False, coupling="tensor",
    profiles={
        "optax": Profile("optax", dict(lr=REQUIRED, momentum=0.9, nesterov=False,
                                       trust_coefficient=1e-3, eps=0.0, weight_decay=0.0,
                                       trust_denominator="update", lr_placement="inside",
                                       zero_norm="one"),
                         "optax/_src/alias.py lars -> transform.py scale_by_trust_ratio, "
                         "transforms/_accumulation.py trace (optax 0.2.8)",
                         "trust = eta*||theta||/(||g'|| + eps), 1 (not eta) where ||theta|| or "
                         "||g'|| is 0; the trace runs after scale_by_learning_rate, so it holds "
                         "the signed step -lr*ratio*g'"),
        "paper": Profile("paper", dict(lr=1.0, momentum=0.9, nesterov=False,
                                       trust_coefficient=1e-3, eps=0.0, weight_decay=0.0,
                                       trust_denominator="sum", lr_placement="inside",
                                       zero_norm="formula"),
                         "You, Gitman & Ginsburg 2017, Algorithm 1 (arXiv:1708.03888v3)",
                         "local lr = eta*||w||/(||grad|| + beta*||w||); v <- m*v + "
                         "gamma*lambda*(grad + beta*w); w <- w - v"),
    },
)
