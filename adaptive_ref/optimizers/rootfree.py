r"""Root-free RMSProp: the diagonal square-root-free adaptive method of Lin et al. (2024).

Lin, Dangel, Eschenhagen, Bae, Turner & Makhzani, "Can we remove the square-root in adaptive
gradient methods? A second-order perspective", ICML 2024, arXiv:2402.03496 (the diagonal method;
conventions as in the authors' code, yorkerlin/remove-the-square-root, ``myoptim/rfrmsprop.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._common import check_hparams, finish, init_number, init_zeros, is_zero, prelude, scalars
from .._spec import HParam, OptimizerSpec

__all__ = ["RootFreeState", "rootfree_init", "rootfree_step", "ROOTFREE"]


class RootFreeState(NamedTuple):
    """count: 0-d integer step count. precond: the preconditioner S (an empirical-Fisher
    estimate of the *summed* loss, i.e. batch_size * EMA of g^2), initialised at ``precond_init``
    (1, not 0). momentum_buffer: the momentum buffer, or None when momentum == 0."""

    count: Any
    precond: Any
    momentum_buffer: Any = None


ROOTFREE_HPARAMS = (
    HParam("lr", 1e-2, "learning rate", low=0.0),
    HParam("beta2", 0.99, "EMA factor of the preconditioner; rho = 1 - beta2 is the paper's "
           "preconditioner step size (code: alpha)", low=0.0, high=1.0, high_open=True),
    HParam("damping", 1e-8, "damping added to S before dividing (code: eps)", low=0.0),
    HParam("batch_size", 1.0, "B: the gradient is of the batch-mean loss, S estimates the "
           "Fisher of the summed loss via B*g^2", low=0.0, low_open=True),
    HParam("momentum", 0.0, "heavy-ball momentum on the preconditioned direction (0 = none)",
           low=0.0, init=True),
    HParam("weight_decay", 0.0, "added to the preconditioned direction (after the division)",
           low=0.0),
    HParam("precond_init", 1.0, "S_0 (the paper and code use 1; 0 makes the first step 1/B g)",
           low=0.0, init=True, knob=True),
)


def rootfree_init(param, /, *, momentum=0.0, precond_init=1.0, state_dtype=None) -> RootFreeState:
    """Count 0; S filled with ``precond_init`` (default 1); zero momentum buffer if momentum > 0."""
    xp, z, count = init_zeros("rootfree_init", param, state_dtype)
    has_buf = not is_zero(momentum)
    precond_init = init_number("rootfree_init", ROOTFREE_HPARAMS, "precond_init", precond_init)
    return RootFreeState(count, z + precond_init, xp.zeros_like(z) if has_buf else None)


def rootfree_step(param, grad, state: RootFreeState, /, *, lr=1e-2, beta2=0.99, damping=1e-8,
                  batch_size=1.0, momentum=0.0, weight_decay=0.0, precond_init=1.0):
    r"""One step of root-free RMSProp (Lin et al. 2024).

    .. math::

        S_t &= \beta_2 S_{t-1} + (1-\beta_2)\, B\, g_t^2, \qquad S_0 = 1 \\
        d_t &= g_t/(S_t + \lambda) + \text{wd}\,\theta_{t-1} \\
        b_t &= \mu\, b_{t-1} + d_t \;(\mu>0), \qquad \theta_t = \theta_{t-1} - \mathrm{lr}\, b_t

    No square root: S estimates a (Fisher) *curvature*, not its root, so the step is a
    Newton-like step of the summed loss. Consequences checked in ``tests/test_natural_gradient.py``:
    with ``damping = 0`` and ``wd = 0`` the method is equivariant under a diagonal rescaling
    ``theta' = D theta`` (with ``S_0' = S_0/D^2``), which Adam is not; under loss scaling
    ``f -> c f`` its step scales as ``1/c`` where Adam's is invariant; as ``damping -> inf`` it
    becomes SGD with lr ``lr/damping``.

    Defaults are the authors' code's (lr 1e-2, alpha = beta2 = 0.99, eps = damping = 1e-8,
    momentum 0, wd 0); the code stores S/B and multiplies by B before dividing (same numbers).
    """
    check_hparams("rootfree_step", ROOTFREE_HPARAMS, (lr, beta2, damping, batch_size, momentum,
                  weight_decay, precond_init))
    pre = prelude("rootfree_step", param, grad, state, RootFreeState, "rootfree_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    has_buf = not is_zero(momentum)
    if has_buf != (state.momentum_buffer is not None):
        msg = ("rootfree_step: momentum > 0 needs a momentum buffer (and momentum == 0 none); "
               "pass the same momentum to rootfree_init and rootfree_step")
        raise ValueError(msg)
    lr, beta2, damping, batch_size, momentum, weight_decay = scalars(
        xp, sd, param, lr, beta2, damping, batch_size, momentum, weight_decay)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    p, g = pre.p, pre.g
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if an unreadable count overflows
    s = c(beta2) * state.precond + c((1 - beta2) * batch_size) * (g * g)
    d = g / (s + c(damping))
    if not is_zero(weight_decay):
        d = d + c(weight_decay) * p
    buf = None
    if has_buf:
        buf = c(momentum) * state.momentum_buffer + d
        d = buf
    p_new = p - c(lr) * d
    return finish(xp, p_new, pre.param_dtype), RootFreeState(count, s, buf)


ROOTFREE = OptimizerSpec(
    name="rootfree_rmsprop", title="Root-free RMSProp", init=rootfree_init, step=rootfree_step,
    state_type=RootFreeState, hparams=ROOTFREE_HPARAMS,
    paper="Lin, Dangel, Eschenhagen, Bae, Turner & Makhzani, Can we remove the square-root in "
          "adaptive gradient methods? A second-order perspective, ICML 2024 (arXiv:2402.03496)",
    summary="RMSProp without the square root: g/(S + damping), S an EMA of B g^2 started at 1.",
)
