r"""ADOPT: Adam with the second moment updated after it is used, and an update-free first step.

Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate",
NeurIPS 2024 (arXiv:2411.02853), Algorithm 1 and, with clipping, the update of the authors'
code after their Nov 2024 change (iShohei220/adopt, "add clipping", ``clip_lambda = step**0.25``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    EMA_WEIGHT_PRECISION,
    WEIGHT_DECAY_MODE,
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

__all__ = ["AdoptState", "adopt_init", "adopt_step", "ADOPT"]


class AdoptState(NamedTuple):
    """count: 0-d integer step count. mu: first moment of the normalised gradient.
    nu: second moment of the raw gradient (g_0**2 after the first step)."""

    count: Any
    mu: Any
    nu: Any


ADOPT_HPARAMS = (
    HParam("lr", 1e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.9999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-6, "denominator guard", low=0.0),
    HParam("eps_placement", "max", "'max': g / max(sqrt(v), eps) (the paper, upstream, optax); "
           "'outside': g / (sqrt(v) + eps) (Adam's placement)", kind="choice",
           choices=("max", "outside"), knob=True),
    HParam("clipping", True, "clip the normalised gradient to [-c_s, c_s], c_s = s**clip_exponent "
           "(upstream after Nov 2024, optax use_clipping=True); False: the unclipped update of "
           "the paper's Algorithm 1", kind="bool", knob=True),
    HParam("clip_exponent", 0.25, "exponent of the clip schedule c_s = s**clip_exponent "
           "(upstream clip_lambda, optax clip_value_fn: s**0.25)", low=0.0),
    HParam("clip_index", "previous", "the s of c_s: 'previous' = the number of steps taken before "
           "this one (upstream's state['step'], optax's count; c = 1 on the first update), "
           "'current' = the 1-based step t", kind="choice", choices=("previous", "current"),
           knob=True),
    HParam("nesterov", False, "Nesterov: the update is b1*m_t + (1 - b1)*n_t instead of m_t "
           "(optax nesterov=True)", kind="bool", knob=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_mode); decoupled "
           "decay skips the update-free first step, as upstream", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    EMA_WEIGHT_PRECISION,
)


def adopt_init(param, /, *, state_dtype=None) -> AdoptState:
    """Step count 0; zero moments."""
    xp, z, count = init_zeros("adopt_init", param, state_dtype)
    return AdoptState(count, z, xp.zeros_like(z))


def adopt_step(param, grad, state: AdoptState, /, *, lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6,
               eps_placement="max", clipping=True, clip_exponent=0.25, clip_index="previous",
               nesterov=False, weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
               ema_weight_precision="float64"):
    r"""One ADOPT step (Taniguchi et al. 2024, Algorithm 1; clipping as the authors' code).

    With :math:`s` the number of steps taken before this one (``state.count``):

    .. math::

        s = 0:&\quad v_0 = g_0^2, \quad m \text{ and } \theta \text{ unchanged} \\
        s \ge 1:&\quad n = \mathrm{clip}\big(g / \max(\sqrt{v_{s-1}}, \epsilon),\;
                   \pm s^{1/4}\big), \qquad m_s = \beta_1 m_{s-1} + (1-\beta_1)\, n \\
                &\quad \theta_s = \theta_{s-1} - \mathrm{lr}\, m_s, \qquad
                   v_s = \beta_2 v_{s-1} + (1-\beta_2)\, g^2

    v enters the update *before* it is updated with the current g; there is no bias correction.
    Knobs: ``eps_placement="outside"`` divides by :math:`\sqrt v + \epsilon`; ``clipping=False``
    drops the clip (the paper's Algorithm 1); ``clip_index="current"`` clips at
    :math:`(s+1)^{1/4}`; ``nesterov`` steps along :math:`\beta_1 m_s + (1-\beta_1) n` (optax);
    ``weight_decay_mode="coupled"`` adds :math:`\lambda\theta` to g on every step (the first
    included), ``"decoupled"`` multiplies :math:`\theta` by :math:`1-\mathrm{lr}\,\lambda` on the
    steps that update it (upstream ``decouple=True``); ``ema_weight_precision="param"`` forms the
    EMA weights :math:`1-\beta` from :math:`\beta` rounded to the parameter dtype (optax in float32).
    The first step is selected with ``where`` on the 0-d count (no Python branch on its value),
    and :math:`s^{1/4}` is a 0-d array: the step runs under ``jax.jit`` without host syncs.

    Defaults (the authors' code, optax.contrib.adopt): lr=1e-3, beta1=0.9, beta2=0.9999,
    eps=1e-6, clip s**0.25, no weight decay.
    Profiles: ``upstream`` (iShohei220/adopt ``ADOPT``, commit 6468572, torch-adopt 0.1.0) and
    ``optax`` (optax.contrib.adopt: no default lr, EMA weights in the parameter dtype).
    """
    check_hparams("adopt_step", ADOPT_HPARAMS, (lr, beta1, beta2, eps, eps_placement, clipping,
                  clip_exponent, clip_index, nesterov, weight_decay, weight_decay_mode, maximize,
                  ema_weight_precision))
    pre = prelude("adopt_step", param, grad, state, AdoptState, "adopt_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, eps, clip_exponent, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, clip_exponent, weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    first = state.count == 0  # 0-d boolean: the update-free first step
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    _, w1 = ema_weights(xp, beta1, param, sd, ema_weight_precision)
    _, w2 = ema_weights(xp, beta2, param, sd, ema_weight_precision)
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled else decoupled_decay(lr, weight_decay)
    bound = None
    if clipping:
        s = t - 1.0 if clip_index == "previous" else t
        bound = c(s ** clip_exponent)
    one = nx.as_scalar(xp, 1.0, dtype, param)

    def update(p, g, m, v):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        g2 = g * g
        root = xp.sqrt(v)
        den = xp.maximum(root, c(eps)) if eps_placement == "max" else root + c(eps)
        n = g / xp.where(first, one, den)  # v = 0 on the first step: no division by it
        if bound is not None:
            n = xp.minimum(xp.maximum(n, -bound), bound)
        mu = c(beta1) * m
        mu += c(w1) * n  # m_s = b1 m + (1 - b1) n
        nu = c(beta2) * v
        nu += c(w2) * g2  # v_s = b2 v + (1 - b2) g^2, after its use above
        if nesterov:
            u = c(beta1) * mu
            u += c(w1) * n
        else:
            u = mu
        q = p if decay is None else p * c(decay)
        u = u * c(lr)
        return (nx.where(xp, first, p, q - u), nx.where(xp, first, m, mu),
                nx.where(xp, first, g2, nu))

    p_new, mu, nu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu, state.nu))
    return finish(xp, p_new, pre.param_dtype), AdoptState(count, mu, nu)


_COMMON = dict(beta1=0.9, beta2=0.9999, eps=1e-6, eps_placement="max", clipping=True,
               clip_exponent=0.25, clip_index="previous", nesterov=False, weight_decay=0.0,
               weight_decay_mode="coupled", maximize=False)

ADOPT = OptimizerSpec(
    name="adopt", title="ADOPT", init=adopt_init, step=adopt_step, state_type=AdoptState,
    hparams=ADOPT_HPARAMS,
    paper="Taniguchi et al., ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal "
          "Rate, NeurIPS 2024 (arXiv:2411.02853), Algorithm 1",
    summary="Adam-like step normalised by the previous second moment (v updated after use), "
            "clipped at s^(1/4); the first step only sets v.",
    profiles={
        "upstream": Profile("upstream", dict(lr=1e-3, ema_weight_precision="float64", **_COMMON),
                            "iShohei220/adopt src/adopt/adopt.py _single_tensor_adopt, commit "
                            "6468572b (2024-12-13, after the 2024-11-21 'add clipping' change; "
                            "torch-adopt 0.1.0)",
                            "clip = step**0.25 in Python float64 with step the steps taken; "
                            "decouple=True skips the first step's decay; not installed here "
                            "(not on the package index): no adapter"),
        "optax": Profile("optax", dict(lr=REQUIRED, ema_weight_precision="param", **_COMMON),
                         "optax/contrib/_adopt.py scale_by_adopt (optax 0.2.8)",
                         "b1_, b2_ = jnp.where(count > 0, b, ...) are arrays of the parameter "
                         "dtype, so 1 - b is formed from the rounded b; no weight decay "
                         "(coupled L2 = chain(add_decayed_weights, adopt))"),
    },
)
