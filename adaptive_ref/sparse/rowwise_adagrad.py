r"""Row-wise Adagrad: one accumulator per row of an embedding table (FBGEMM semantics).

FBGEMM ``fbgemm_gpu`` ``EXACT_ROWWISE_ADAGRAD`` (``codegen/genscript/optimizers.py``
``rowwise_adagrad``; defaults of ``SplitTableBatchedEmbeddingBagsCodegen``: learning_rate 0.01,
eps 1e-8, weight_decay 0, weight_decay_mode NONE). Duchi, Hazan & Singer, JMLR 12 (2011), for
Adagrad itself. The accumulator of a row is the running sum of the row's *mean* squared gradient,
so its memory is one number per row instead of one per entry.

(The Python ``RowWiseAdagrad`` of some TorchRec versions uses the row-mean *gradient* for both
the accumulator and the update; it is a different method and is not reproduced here.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._common import check_hparams, init_number, init_zeros, is_zero, scalars
from .._spec import HParam, OptimizerSpec
from ._prelude import sparse_prelude
from ._rowops import put_rows, row_totals, take_rows

__all__ = ["RowwiseAdagradState", "rowwise_adagrad_init", "rowwise_adagrad_step",
           "ROWWISE_ADAGRAD", "ROWWISE_ADAGRAD_HPARAMS"]


class RowwiseAdagradState(NamedTuple):
    """count: 0-d integer step count. sum: shape ``param.shape[:1]``, one accumulator per row
    (for a 0-d parameter, a 0-d accumulator)."""

    count: Any
    sum: Any


ROWWISE_ADAGRAD_HPARAMS = (
    HParam("lr", 1e-2, "learning rate", low=0.0),
    HParam("initial_accumulator_value", 0.0, "starting value of each row's accumulator",
           low=0.0, init=True, knob=True),
    HParam("eps", 1e-8, "denominator guard, added to sqrt of the row accumulator", low=0.0),
    HParam("weight_decay", 0.0, "weight decay coefficient (applied to present rows only)",
           low=0.0),
    HParam("weight_decay_mode", "coupled", "'coupled': g += wd*p before the accumulator (FBGEMM "
           "L2); 'decoupled': p *= 1 - lr*wd before the update (FBGEMM DECOUPLED)",
           kind="choice", choices=("coupled", "decoupled"), knob=True),
    HParam("maximize", False, "ascend instead of descend (the gradient is negated first)",
           kind="bool", knob=True),
)


def rowwise_adagrad_init(param, /, *, initial_accumulator_value=0.0,
                         state_dtype=None) -> RowwiseAdagradState:
    """Step count 0; one accumulator per row (shape ``param.shape[:1]``) at the initial value."""
    xp, z, count = init_zeros("rowwise_adagrad_init", param, state_dtype)
    initial_accumulator_value = init_number("rowwise_adagrad_init", ROWWISE_ADAGRAD_HPARAMS,
                                            "initial_accumulator_value",
                                            initial_accumulator_value)
    acc = z if z.ndim == 0 else z[(slice(None),) + (0,) * (z.ndim - 1)]
    return RowwiseAdagradState(count, xp.asarray(acc + float(initial_accumulator_value),
                                                 copy=True))


def _rowwise_rows(xp, dtype, p, g, s_old, *, lr, eps, weight_decay, decoupled):
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    wd_on = not is_zero(weight_decay)
    if wd_on and not decoupled:
        g = g + c(weight_decay) * p
    sq = g * g
    ms = xp.mean(sq, axis=tuple(range(1, sq.ndim))) if sq.ndim > 1 else sq
    s = s_old + ms
    mult = c(lr) / (xp.sqrt(s) + c(eps))
    if wd_on and decoupled:
        p = p * c(1 - lr * weight_decay)
    if p.ndim > 1:
        mult = xp.reshape(mult, (mult.shape[0],) + (1,) * (p.ndim - 1))
    return p - mult * g, s


def rowwise_adagrad_step(param, grad, state: RowwiseAdagradState, /, *, lr=1e-2,
                         initial_accumulator_value=0.0, eps=1e-8, weight_decay=0.0,
                         weight_decay_mode="coupled", maximize=False, donate=False):
    r"""One row-wise Adagrad step on the rows :math:`I` of the gradient (duplicates summed).

    .. math::

        g_r &\leftarrow \pm g_r\; (+\,\lambda\theta_r \text{ if coupled}), \qquad
        s_r = s_r + \tfrac{1}{D}\textstyle\sum_{j=1}^{D} g_{rj}^2 \\
        \theta_r &= (1 - \mathrm{lr}\,\lambda\,[\text{decoupled}])\,\theta_r
                    - \frac{\mathrm{lr}}{\sqrt{s_r} + \epsilon}\, g_r
        \qquad (r \in I)

    with :math:`D` the number of entries in a row; rows not in :math:`I` keep
    :math:`\theta_r, s_r`. With :math:`D = 1` (a 1-d parameter) this is Adagrad; with equal
    :math:`|g_{rj}|` across a row it equals element-wise Adagrad. A dense gradient means every row
    present. Weight decay, when set, acts on present rows only (as FBGEMM, which sees only the
    rows of the batch). Decoupled decay uses the plain lr; FBGEMM writes the coupled form as
    ``(1 - lr*wd/(sqrt(s)+eps)) * theta - lr*g/(sqrt(s)+eps)``, the same number up to rounding.

    Defaults (FBGEMM): lr=1e-2, eps=1e-8, weight_decay=0, initial accumulator 0. No framework
    profile: FBGEMM is not among the conformance frameworks. ``donate`` as in
    :func:`~adaptive_ref.sparse.lazy_adam_step`. Returns ``(new_param, new_state)``.
    """
    check_hparams("rowwise_adagrad_step", ROWWISE_ADAGRAD_HPARAMS, (lr,
                  initial_accumulator_value, eps, weight_decay, weight_decay_mode, maximize))
    if not isinstance(donate, bool):
        msg = f"rowwise_adagrad_step: donate must be True or False, got {donate!r}"
        raise TypeError(msg)
    pre = sparse_prelude("rowwise_adagrad_step", param, grad, state, RowwiseAdagradState,
                         "rowwise_adagrad_init", full_shape_moments=(), row_moments=("sum",))
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, eps, weight_decay = scalars(xp, sd, param, lr, eps, weight_decay)
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if an unreadable count overflows
    cast = lambda a: a if a.dtype == dtype else xp.astype(a, dtype)  # noqa: E731
    back = lambda a: a if a.dtype == pre.param_dtype else xp.astype(a, pre.param_dtype)  # noqa
    kw = dict(lr=lr, eps=eps, weight_decay=weight_decay,
              decoupled=weight_decay_mode == "decoupled")
    if pre.rows is None:
        g = -cast(pre.grad) if maximize else cast(pre.grad)
        p_new, s = _rowwise_rows(xp, dtype, cast(param), g, state.sum, **kw)
        return back(p_new), RowwiseAdagradState(count, s)
    idx = pre.rows.indices
    g = cast(row_totals(xp, idx, pre.rows.values))
    if maximize:
        g = -g
    p_rows, s_rows = _rowwise_rows(xp, dtype, cast(take_rows(xp, param, idx)), g,
                                   take_rows(xp, state.sum, idx), **kw)
    p_new = put_rows(xp, param, idx, back(p_rows), donate=donate)
    s = put_rows(xp, state.sum, idx, s_rows, donate=donate)
    return p_new, RowwiseAdagradState(count, s)


ROWWISE_ADAGRAD = OptimizerSpec(
    name="rowwise_adagrad", title="Row-wise Adagrad", init=rowwise_adagrad_init,
    step=rowwise_adagrad_step, state_type=RowwiseAdagradState, hparams=ROWWISE_ADAGRAD_HPARAMS,
    paper="Duchi, Hazan & Singer, JMLR 12 (2011) (Adagrad); row-wise form of FBGEMM "
          "EXACT_ROWWISE_ADAGRAD (fbgemm_gpu codegen/genscript/optimizers.py rowwise_adagrad)",
    summary="Adagrad with one accumulator per row: s_r += mean_j g_rj^2, "
            "step lr*g_r/(sqrt(s_r)+eps).",
    elementwise=False,
)
