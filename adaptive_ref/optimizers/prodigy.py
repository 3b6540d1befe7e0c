r"""Prodigy: Adam whose step size d is estimated from the whole model's distance travelled.

Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024
(arXiv:2306.06101), Algorithm 4 (the Adam version), in the form of the authors' package.

Prodigy's scalars d, the numerator r and the denominator ||s||_1 are sums over *every* parameter
of the model, so the step of one leaf depends on all leaves (``OptimizerSpec.coupling ==
"tree"``): :func:`prodigy_step` takes and returns the whole model, a list or tuple of arrays
(one array is a one-leaf model), and the sums are taken by :mod:`adaptive_ref._global`.
:func:`adaptive_ref.tree.tree_step` hands it every leaf of a parameter tree.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _global as gl
from .. import _numerics as nx
from .._checks import check_count, check_hparams
from .._common import is_zero, scalars
from .._spec import HParam, OptimizerSpec, Profile

__all__ = ["ProdigyState", "prodigy_init", "prodigy_step", "PRODIGY"]


class ProdigyState(NamedTuple):
    """count: 0-d integer step count. d: 0-d step-size estimate (starts at d0); d_max: the
    largest estimate seen; d_numerator: 0-d r, the weighted sum of <g, p0 - p> (all three in the
    scalar dtype, see ``factor_precision``). mu, nu: Adam's moments of d*g; s: the weighted sum
    of gradients; p0: the starting point. For a one-leaf model these are arrays of the
    parameter's shape, else tuples with one array per leaf; with ``slice_p > 1``, s and p0 hold
    every slice_p-th element of the flattened leaf (1-D)."""

    count: Any
    d: Any
    d_max: Any
    d_numerator: Any
    mu: Any
    nu: Any
    s: Any
    p0: Any

    SCALAR_FIELDS = ("d", "d_max", "d_numerator")


PRODIGY_HPARAMS = (
    HParam("lr", 1.0, "multiplier of the estimated step size d (1: use d as it is)", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("beta3", -1.0, "decay rate of s and r; -1: sqrt(beta2) (both implementations' "
           "default, beta3=None)", low=-1.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "added to sqrt(v), times d", low=0.0),
    HParam("weight_decay", 0.0, "weight decay coefficient (where: weight_decay_mode)", low=0.0),
    HParam("d0", 1e-6, "initial estimate of d", low=0.0, low_open=True, init=True),
    HParam("d_coef", 1.0, "d_hat = d_coef * r / ||s||_1", low=0.0, low_open=True),
    HParam("growth_rate", math.inf, "d grows by at most this factor per step (inf: unbounded; "
           "upstream only)", low=1.0, allow_inf=True),
    HParam("slice_p", 1, "s, p0 and the sums read every slice_p-th element of each flattened "
           "leaf (upstream; 1: every element)", kind="choice", choices=(1, 2, 3, 11),
           init=True),
    HParam("weight_decay_mode", "decoupled",
           "'decoupled': p <- p - wd*dlr*p with the update (optax, upstream decouple=True); "
           "'coupled': g <- g + wd*p before everything else, the sums included (upstream "
           "decouple=False)", kind="choice", choices=("decoupled", "coupled"), knob=True),
    HParam("bias_correction", False,
           "dlr = d*lr*sqrt(1 - beta2^t)/(1 - beta1^t) (optax always; upstream "
           "use_bias_correction=True) or d*lr (upstream's default)", kind="bool", knob=True),
    HParam("safeguard_warmup", False,
           "s gains (d/d0)*d*g instead of (d/d0)*dlr*g (lr removed from the denominator of d)",
           kind="bool", knob=True),
    HParam("factor_precision", "float64",
           "dtype of the scalars d, d_max, r, the cross-leaf sums and 1 - beta^t: 'float64' "
           "(upstream: Python floats; per-leaf sums in the leaf's dtype, read back with .item()) "
           "or 'param': the parameters' dtype (optax: estim_lr, numerator_weighted and "
           "optax.tree.vdot/sum in the parameter dtype); the same for float64 parameters",
           kind="choice", choices=nx.FACTOR_PRECISIONS, knob=True),
)


def _slice(xp, x, slice_p: int):
    return x if slice_p == 1 else xp.reshape(x, (-1,))[::slice_p]


def prodigy_init(params, /, *, d0=1e-6, slice_p=1, state_dtype=None) -> ProdigyState:
    """Count 0, d = d_max = d0, r = 0, zero moments and s, p0 = the parameters."""
    leaves, single = gl.model_leaves("prodigy_init", "params", params)
    check_hparams("prodigy_init", (PRODIGY_HPARAMS[6], PRODIGY_HPARAMS[9]), (d0, slice_p))

    def make(xp, leaf, z):
        return (z, xp.zeros_like(z), xp.zeros_like(_slice(xp, z, slice_p)),
                _slice(xp, xp.astype(leaf, z.dtype, copy=True), slice_p))

    xp, count, z, columns = gl.init_leaves("prodigy_init", leaves, state_dtype, make)
    like = next(leaf for leaf in leaves if leaf is not None)
    d = nx.as_scalar(xp, d0, nx.scalar_dtype(xp, like, z.dtype), like)
    return ProdigyState(count, d, d, xp.zeros_like(d), *(gl.pack(v, single) for v in columns))


def prodigy_step(params, grads, state: ProdigyState, /, *, lr=1.0, beta1=0.9, beta2=0.999,
                 beta3=-1.0, eps=1e-8, weight_decay=0.0, d0=1e-6, d_coef=1.0,
                 growth_rate=math.inf, slice_p=1, weight_decay_mode="decoupled",
                 bias_correction=False, safeguard_warmup=False, factor_precision="float64"):
    r"""One Prodigy step of the whole model (Mishchenko & Defazio 2024, Algorithm 4, as in the
    authors' ``prodigyopt.Prodigy``).

    With sums over every leaf :math:`i` of the model, :math:`t` the step number and
    :math:`\beta_3 = \sqrt{\beta_2}` unless given:

    .. math::

        \hat d &= d_{t-1}\,\mathrm{lr}\,c_t, \quad c_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t)
                  \text{ (bias\_correction) or } 1 \\
        m_i &\leftarrow \beta_1 m_i + d_{t-1}(1-\beta_1)\, g_i, \qquad
        v_i \leftarrow \beta_2 v_i + d_{t-1}^2(1-\beta_2)\, g_i^2 \\
        s_i &\leftarrow \beta_3 s_i + \tfrac{d_{t-1}}{d_0}\,\hat d\, g_i, \qquad
        r \leftarrow \beta_3 r + \tfrac{d_{t-1}}{d_0}\,\hat d
              \textstyle\sum_i \langle g_i, p_{0,i} - p_i \rangle \\
        \tilde d &= d_{coef}\, r / \textstyle\sum_i \|s_i\|_1, \quad
        d_{max} \leftarrow \max(d_{max}, \tilde d), \quad
        d_t = \min(d_{max},\, \gamma\, d') \text{ with } d' = \max(d_{t-1}, \tilde d)
              \text{ if } d_{t-1} = d_0 \text{ else } d_{t-1} \\
        p_i &\leftarrow p_i - \hat d\,\lambda\, p_i - \hat d\, m_i / (\sqrt{v_i} + d_t\,\epsilon)

    (:math:`\hat d` is ``dlr``, :math:`\gamma` ``growth_rate``, :math:`\lambda` the decoupled
    weight decay; with the default :math:`\gamma = \infty`, :math:`d_t = \max(d_{t-1},
    \tilde d)`.) ``safeguard_warmup`` replaces :math:`\hat d` by :math:`d_{t-1}` in the update of
    s. ``weight_decay_mode="coupled"`` adds :math:`\lambda p_i` to :math:`g_i` first (the sums
    then see it) and drops the decay term. ``slice_p = k`` takes s, :math:`p_0` and the
    numerator's dot on every k-th element of each flattened leaf only. Where
    :math:`\sum_i\|s_i\|_1 = 0` (no gradient yet), the authors' step returns after updating
    m, v and s: d, :math:`d_{max}`, r, the count and the parameters keep their values (so does
    this one; optax divides by 0).

    ``params``: an array (a one-leaf model) or a list/tuple of arrays; ``grads`` of the same
    structure (``None`` entries: leaves without a gradient, left out of the sums and left
    unchanged, as the authors' loop skips ``p.grad is None``). Returns ``(params, state)`` of the
    same structure (a tuple for a sequence). Every scalar stays a 0-d array (no host reads).

    Defaults (the authors' package, prodigyopt 1.1.2): lr=1, betas (0.9, 0.999), beta3 =
    sqrt(beta2), eps=1e-8, wd=0 decoupled, d0=1e-6, d_coef=1, growth_rate=inf, no bias
    correction, no safeguard. Profiles: ``upstream`` (prodigyopt.Prodigy: d, r in Python
    floats, per-leaf sums in the leaf dtype) and ``optax`` (optax.contrib.prodigy: bias
    correction always on, every scalar in the parameter dtype, no growth_rate or slice_p).
    """
    op = "prodigy_step"
    check_hparams(op, PRODIGY_HPARAMS, (lr, beta1, beta2, beta3, eps, weight_decay, d0, d_coef,
                                        growth_rate, slice_p, weight_decay_mode,
                                        bias_correction, safeguard_warmup, factor_precision))
    ps, gs, fields, single, live = gl.unpack_model(op, params, grads, state, ProdigyState,
                                                   ("mu", "nu", "s", "p0"), "prodigy_init")
    if not live:
        return params, state
    xp = gl.leaves_namespace(op, [ps[i] for i in live])

    def sliced_shapes(i):
        n_sl = len(range(0, math.prod(ps[i].shape), slice_p))
        want = tuple(ps[i].shape) if slice_p == 1 else (n_sl,)
        for f in ("s", "p0"):
            if tuple(fields[f][i].shape) != want:
                msg = (f"{op} (leaf {i}): state.{f} has shape {tuple(fields[f][i].shape)}, "
                       f"expected {want} for slice_p={slice_p}; make the state with "
                       f"prodigy_init(..., slice_p={slice_p})")
                raise ValueError(msg)

    pdtype, sdtype = gl.check_leaves(op, ps, gs, fields, live, ("mu", "nu"), sliced_shapes)
    check_count(op, xp, state.count)
    like = ps[live[0]]
    sd = nx.factor_dtype(xp, nx.scalar_dtype(xp, like, sdtype), pdtype, factor_precision)
    # array hyperparameters (a NumPy scalar with torch leaves) as 0-d arrays of xp; numbers kept
    lr, beta1, beta2, beta3, eps, weight_decay, d0, d_coef, growth_rate = scalars(
        xp, sd, like, lr, beta1, beta2, beta3, eps, weight_decay, d0, d_coef, growth_rate)
    s0 = lambda v: nx.as_scalar(xp, v, sd, like)  # noqa: E731
    d, d_max, num = (xp.astype(x, sd) for x in (state.d, state.d_max, state.d_numerator))
    count, t = nx.advance(xp, state.count, sd)
    if isinstance(beta3, (int, float)):  # -1: sqrt(beta2), as a Python float (upstream)
        b3 = math.sqrt(beta2) if beta3 == -1.0 and isinstance(beta2, (int, float)) else beta3
    if not isinstance(beta3, (int, float)) or not isinstance(b3, (int, float)):
        b3 = xp.where(s0(beta3) == -1.0, xp.sqrt(s0(beta2)), s0(beta3))  # a 0-d array
    dlr = gl.adapted_lr(xp, d, lr, s0, state.count, t, bias_correction=bias_correction,
                        beta1=beta1, beta2=beta2)
    ratio = d / s0(d0)
    c = lambda v: nx.to(xp, v, sdtype)  # noqa: E731
    coupled = weight_decay_mode == "coupled"
    p_in, dots, new = {}, [], {f: list(v) for f, v in fields.items()}
    s_coef = ratio * (d if safeguard_warmup else dlr)
    for i in live:
        p, g = gl.leaf_inputs(xp, ps[i], gs[i], sdtype, c(weight_decay) if coupled else None)
        p_in[i] = p
        g_sl = _slice(xp, g, slice_p)
        dots.append(xp.sum(g_sl * (fields["p0"][i] - _slice(xp, p, slice_p))))
        new["mu"][i] = c(beta1) * fields["mu"][i] + c(d * (1 - beta1)) * g
        new["nu"][i] = c(beta2) * fields["nu"][i] + c(d * d * (1 - beta2)) * (g * g)
        new["s"][i] = c(b3) * fields["s"][i] + c(s_coef) * g_sl
    num_new = s0(b3) * num + ratio * dlr * gl.global_sum(xp, dots, sd)
    den = gl.global_abs_sum(xp, [new["s"][i] for i in live], sd)
    moved = den != 0
    safe_den = xp.where(moved, den, xp.ones_like(den))
    d_hat = s0(d_coef) * num_new / safe_den
    d_first = xp.where(d == s0(d0), xp.maximum(d, d_hat), d)
    d_max_new = xp.maximum(d_max, d_hat)
    d_new = xp.minimum(d_max_new, d_first * s0(growth_rate))
    d_new, d_max_new = xp.where(moved, d_new, d), xp.where(moved, d_max_new, d_max)
    num_new = xp.where(moved, num_new, num)
    count = xp.where(moved, count, state.count)
    decay = None if coupled or is_zero(weight_decay) else c(dlr * weight_decay)
    out = gl.step_leaves(
        xp, ps, live, p_in,
        lambda i: c(dlr) * new["mu"][i] / (xp.sqrt(new["nu"][i]) + c(d_new * eps)),
        decay, moved, pdtype)
    return gl.pack(out, single), ProdigyState(
        count, d_new, d_max_new, num_new, *(gl.pack(new[f], single) for f in ("mu", "nu", "s",
                                                                               "p0")))


_UPSTREAM_SRC = ("prodigyopt 1.1.2 prodigyopt/prodigy.py Prodigy.step (the authors' package, "
                 "konstmish/prodigy)")

PRODIGY = OptimizerSpec(
    name="prodigy", title="Prodigy", init=prodigy_init, step=prodigy_step,
    state_type=ProdigyState, hparams=PRODIGY_HPARAMS,
    paper="Mishchenko & Defazio, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, "
          "ICML 2024 (arXiv:2306.06101), Algorithm 4",
    summary="Adam with its step size d estimated from sums over the whole model.",
    elementwise=False, coupling="tree",
    profiles={
        "upstream": Profile("upstream", dict(
            lr=1.0, beta1=0.9, beta2=0.999, beta3=-1.0, eps=1e-8, weight_decay=0.0, d0=1e-6,
            d_coef=1.0, growth_rate=math.inf, slice_p=1, weight_decay_mode="decoupled",
            bias_correction=False, safeguard_warmup=False, factor_precision="float64"),
            _UPSTREAM_SRC,
            "d, d_max, d_numerator are Python floats; torch.dot and s.abs().sum() per tensor "
            "in its dtype, read with .item() (prodigy.py:194, :206)"),
        "optax": Profile("optax", dict(
            lr=1.0, beta1=0.9, beta2=0.999, beta3=-1.0, eps=1e-8, weight_decay=0.0, d0=1e-6,
            d_coef=1.0, growth_rate=math.inf, slice_p=1, weight_decay_mode="decoupled",
            bias_correction=True, safeguard_warmup=False, factor_precision="param"),
            "optax/contrib/_prodigy.py prodigy (optax 0.2.8)",
            "bc always applied in dlr; estim_lr and numerator_weighted in the params' lowest "
            "dtype; optax.tree.vdot/sum in the parameter dtype"),
    },
)
