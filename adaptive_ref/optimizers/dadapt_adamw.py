r"""D-Adapt AdamW: Adam whose step size d is a lower bound on the distance to the solution,
estimated from the whole model.

Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023
(arXiv:2301.07733), Algorithm 4 (D-Adapted Adam), in the form of the authors' package
(``dadaptation.DAdaptAdam``) and of ``optax.contrib.dadapt_adamw``.

Like Prodigy (:mod:`adaptive_ref.optimizers.prodigy`, the same authors' successor), its scalars
d and the numerator r and the denominator :math:`\|s\|_1` are sums over *every* parameter of the
model (``OptimizerSpec.coupling == "tree"``): :func:`dadapt_adamw_step` takes and returns the
whole model, a list or tuple of arrays (one array is a one-leaf model); the sums are taken by
:mod:`adaptive_ref._global`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _global as gl
from .. import _numerics as nx
from .._checks import check_count, check_hparams
from .._common import is_zero, scalars
from .._spec import HParam, OptimizerSpec, Profile

__all__ = ["DAdaptAdamWState", "dadapt_adamw_init", "dadapt_adamw_step", "DADAPT_ADAMW"]


class DAdaptAdamWState(NamedTuple):
    """count: 0-d integer step count. d: 0-d distance estimate (starts at d0); d_numerator: 0-d
    r, the weighted sum of <g, s / (sqrt(v) + eps)> (both in the scalar dtype, see
    ``factor_precision``). mu, nu: Adam's moments (mu of dlr*g); s: the weighted sum of dlr*g.
    For a one-leaf model these are arrays of the parameter's shape, else tuples with one array
    per leaf."""

    count: Any
    d: Any
    d_numerator: Any
    mu: Any
    nu: Any
    s: Any

    SCALAR_FIELDS = ("d", "d_numerator")


DADAPT_ADAMW_HPARAMS = (
    HParam("lr", 1.0, "multiplier of the estimated step size d (1: use d as it is)", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment (s and r decay by sqrt(beta2))",
           low=0.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "added to sqrt(v)", low=0.0),
    HParam("weight_decay", 0.0, "weight decay coefficient (where: weight_decay_mode)", low=0.0),
    HParam("d0", 1e-6, "initial estimate of d", low=0.0, low_open=True, init=True),
    HParam("growth_rate", math.inf, "d grows by at most this factor per step (inf: unbounded; "
           "upstream only)", low=1.0, allow_inf=True),
    HParam("weight_decay_mode", "decoupled",
           "'decoupled': p <- p - wd*dlr*p with the update (optax, upstream decouple=True); "
           "'coupled': g <- g + wd*p before everything else, the sums included (upstream's "
           "default decouple=False)", kind="choice", choices=("decoupled", "coupled"),
           knob=True),
    HParam("bias_correction", True,
           "dlr = d*lr*sqrt(1 - beta2^t)/(1 - beta1^t) (optax always; upstream "
           "use_bias_correction=True) or d*lr (upstream's default)", kind="bool", knob=True),
    HParam("factor_precision", "float64",
           "dtype of the scalars d, r, the cross-leaf sums and 1 - beta^t: 'float64' "
           "(upstream: Python floats; per-leaf sums in the leaf's dtype, read back with .item()) "
           "or 'param': the parameters' dtype (optax: estim_lr, numerator_weighted and "
           "optax.tree.vdot/sum in the parameter dtype); the same for float64 parameters",
           kind="choice", choices=nx.FACTOR_PRECISIONS, knob=True),
)

_FIELDS = ("mu", "nu", "s")


def dadapt_adamw_init(params, /, *, d0=1e-6, state_dtype=None) -> DAdaptAdamWState:
    """Count 0, d = d0, r = 0, zero moments and s."""
    op = "dadapt_adamw_init"
    leaves, single = gl.model_leaves(op, "params", params)
    check_hparams(op, (DADAPT_ADAMW_HPARAMS[5],), (d0,))
    xp, count, z, columns = gl.init_leaves(
        op, leaves, state_dtype, lambda xp, leaf, z: (z, xp.zeros_like(z), xp.zeros_like(z)))
    like = next(leaf for leaf in leaves if leaf is not None)
    d = nx.as_scalar(xp, d0, nx.scalar_dtype(xp, like, z.dtype), like)
    return DAdaptAdamWState(count, d, xp.zeros_like(d), *(gl.pack(v, single) for v in columns))


def dadapt_adamw_step(params, grads, state: DAdaptAdamWState, /, *, lr=1.0, beta1=0.9,
                      beta2=0.999, eps=1e-8, weight_decay=0.0, d0=1e-6, growth_rate=math.inf,
                      weight_decay_mode="decoupled", bias_correction=True,
                      factor_precision="float64"):
    r"""One D-Adapt AdamW step of the whole model (Defazio & Mishchenko 2023, Algorithm 4, as in
    ``dadaptation.DAdaptAdam`` and ``optax.contrib.dadapt_adamw``).

    With sums over every leaf :math:`i` of the model, :math:`t` the step number and
    :math:`\sqrt{\beta_2}` the decay of s and r:

    .. math::

        \hat d &= d_{t-1}\,\mathrm{lr}\,c_t, \quad c_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t)
                  \text{ (bias\_correction) or } 1 \\
        a &= \textstyle\sum_i \langle g_i,\, s_i / (\sqrt{v_i} + \epsilon) \rangle
             \quad \text{(the previous } s_i, v_i\text{)} \\
        m_i &\leftarrow \beta_1 m_i + \hat d(1-\beta_1)\, g_i, \qquad
        v_i \leftarrow \beta_2 v_i + (1-\beta_2)\, g_i^2, \qquad
        s_i \leftarrow \sqrt{\beta_2}\, s_i + (1-\sqrt{\beta_2})\,\hat d\, g_i \\
        r &\leftarrow \sqrt{\beta_2}\, r + (1-\sqrt{\beta_2})\,\hat d\, a, \qquad
        \tilde d = r / \big((1-\sqrt{\beta_2}) \textstyle\sum_i \|s_i\|_1\big), \qquad
        d_t = \max(d_{t-1},\, \min(\tilde d,\, \gamma\, d_{t-1})) \\
        p_i &\leftarrow p_i - \hat d\,\lambda\, p_i - m_i / (\sqrt{v_i} + \epsilon)

    (:math:`\hat d` is ``dlr``, :math:`\gamma` ``growth_rate``, :math:`\lambda` the decoupled
    weight decay; the new d first acts at the next step.) ``weight_decay_mode="coupled"`` adds
    :math:`\lambda p_i` to :math:`g_i` first (the sums then see it) and drops the decay term.
    Where :math:`\sum_i\|s_i\|_1 = 0` (no gradient yet), the authors' step returns after
    updating m, v and s: d, r, the count and the parameters keep their values (so does this one;
    optax divides by 0).

    ``params``: an array (a one-leaf model) or a list/tuple of arrays; ``grads`` of the same
    structure (``None`` entries: leaves without a gradient, left out of the sums and left
    unchanged). Returns ``(params, state)`` of the same structure. Every scalar stays a 0-d
    array (no host reads).

    Defaults (optax.contrib.dadapt_adamw, optax 0.2.8): lr=1, betas (0.9, 0.999), eps=1e-8,
    wd=0 decoupled, d0 (optax estim_lr0)=1e-6, growth_rate=inf, bias correction on.
    Profiles: ``optax`` (every scalar in the parameter dtype) and ``upstream``
    (dadaptation 3.2 ``DAdaptAdam``: no bias correction, coupled decay by default, d and r in
    Python floats, per-leaf sums in the leaf dtype).
    """
    op = "dadapt_adamw_step"
    check_hparams(op, DADAPT_ADAMW_HPARAMS, (lr, beta1, beta2, eps, weight_decay, d0,
                                             growth_rate, weight_decay_mode, bias_correction,
                                             factor_precision))
    ps, gs, fields, single, live = gl.unpack_model(op, params, grads, state, DAdaptAdamWState,
                                                   _FIELDS, "dadapt_adamw_init")
    if not live:
        return params, state
    xp = gl.leaves_namespace(op, [ps[i] for i in live])
    pdtype, sdtype = gl.check_leaves(op, ps, gs, fields, live, _FIELDS)
    check_count(op, xp, state.count)
    like = ps[live[0]]
    sd = nx.factor_dtype(xp, nx.scalar_dtype(xp, like, sdtype), pdtype, factor_precision)
    # array hyperparameters (a NumPy scalar with torch leaves) as 0-d arrays of xp; numbers kept
    lr, beta1, beta2, eps, weight_decay, d0, growth_rate = scalars(
        xp, sd, like, lr, beta1, beta2, eps, weight_decay, d0, growth_rate)
    s0 = lambda v: nx.as_scalar(xp, v, sd, like)  # noqa: E731
    d, num = xp.astype(state.d, sd), xp.astype(state.d_numerator, sd)
    count, t = nx.advance(xp, state.count, sd)
    if isinstance(beta2, (int, float)):  # sqrt(beta2) and 1 - sqrt(beta2) as Python floats
        sb2, one_m = s0(math.sqrt(beta2)), s0(1 - math.sqrt(beta2))  # (both implementations)
    else:
        sb2 = xp.sqrt(s0(beta2))
        one_m = 1 - sb2
    dlr = gl.adapted_lr(xp, d, lr, s0, state.count, t, bias_correction=bias_correction,
                        beta1=beta1, beta2=beta2)
    c = lambda v: nx.to(xp, v, sdtype)  # noqa: E731
    coupled = weight_decay_mode == "coupled"
    p_in, dots, new = {}, [], {f: list(v) for f, v in fields.items()}
    for i in live:
        p, g = gl.leaf_inputs(xp, ps[i], gs[i], sdtype, c(weight_decay) if coupled else None)
        p_in[i] = p
        dots.append(xp.sum(g * (fields["s"][i] / (xp.sqrt(fields["nu"][i]) + c(eps)))))
        new["mu"][i] = c(beta1) * fields["mu"][i] + c(dlr * (1 - beta1)) * g
        new["nu"][i] = c(beta2) * fields["nu"][i] + c(1 - beta2) * (g * g)
        new["s"][i] = c(sb2) * fields["s"][i] + c(one_m * dlr) * g
    num_new = sb2 * num + one_m * dlr * gl.global_sum(xp, dots, sd)
    den = gl.global_abs_sum(xp, [new["s"][i] for i in live], sd)
    moved = den != 0
    safe_den = xp.where(moved, den, xp.ones_like(den))
    d_hat = num_new / (one_m * safe_den)
    d_new = xp.maximum(d, xp.minimum(d_hat, d * s0(growth_rate)))
    d_new, num_new = xp.where(moved, d_new, d), xp.where(moved, num_new, num)
    count = xp.where(moved, count, state.count)
    decay = None if coupled or is_zero(weight_decay) else c(dlr * weight_decay)
    out = gl.step_leaves(xp, ps, live, p_in,
                         lambda i: new["mu"][i] / (xp.sqrt(new["nu"][i]) + c(eps)),
                         decay, moved, pdtype)
    return gl.pack(out, single), DAdaptAdamWState(
        count, d_new, num_new, *(gl.pack(new[f], single) for f in _FIELDS))


DADAPT_ADAMW = OptimizerSpec(
    name="dadapt_adamw", title="D-Adapt AdamW", init=dadapt_adamw_init, step=dadapt_adamw_step,
    state_type=DAdaptAdamWState, hparams=DADAPT_ADAMW_HPARAMS,
    paper="Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023 "
          "(arXiv:2301.07733), Algorithm 4",
    summary="Adam with its step size d, a lower bound on the distance to the solution, "
            "estimated from sums over the whole model.",
    elementwise=False, coupling="tree",
    profiles={
        "optax": Profile("optax", dict(
            lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, d0=1e-6,
            growth_rate=math.inf, weight_decay_mode="decoupled", bias_correction=True,
            factor_precision="param"),
            "optax/contrib/_dadapt_adamw.py dadapt_adamw (optax 0.2.8)",
            "bc always applied in dlr; estim_lr and numerator_weighted in the params' lowest "
            "dtype; optax.tree.vdot/sum in the parameter dtype; decay AdamW-style only"),
        "upstream": Profile("upstream", dict(
            lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, d0=1e-6,
            growth_rate=math.inf, weight_decay_mode="coupled", bias_correction=False,
            factor_precision="float64"),
            "dadaptation 3.2 dadaptation/dadapt_adam.py DAdaptAdam.step (the authors' package, "
            "facebookresearch/dadaptation)",
            "d, numerator_weighted are Python floats; torch.dot and s.abs().sum() per tensor "
            "in its dtype, read with .item() (dadapt_adam.py:184, :191); decouple=False and "
            "use_bias_correction=False by default (:63-:64)"),
    },
)
