r"""Sparse Adagrad: Adagrad that touches only the rows present in a row-sparse gradient.

Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning and stochastic
optimization", JMLR 12 (2011) 2121-2159. Sparse path: torch ``torch/optim/adagrad.py``
``_single_tensor_adagrad`` with a sparse COO gradient (torch 2.13.0).

Equal to dense Adagrad by construction: an absent row has :math:`g = 0`, which adds nothing to
the accumulator and moves nothing (:math:`0/(\sqrt{s}+\epsilon) = 0`). The one exception is
dense Adagrad's own ``0/0``: with ``eps=0``, ``eps_placement="outside"`` and a coordinate whose
accumulator is still 0, dense Adagrad writes NaN there; the sparse step leaves the row alone.
"""

from __future__ import annotations

from .. import _numerics as nx
from .._common import check_hparams, scalars
from .._spec import HParam, OptimizerSpec, Profile
from ..optimizers.adagrad import AdagradState, adagrad_init
from ._prelude import sparse_prelude
from ._rowops import put_rows, row_totals, take_rows

__all__ = ["sparse_adagrad_init", "sparse_adagrad_step", "SPARSE_ADAGRAD",
           "SPARSE_ADAGRAD_HPARAMS"]

SPARSE_ADAGRAD_HPARAMS = (
    HParam("lr", 1e-2, "learning rate", low=0.0),
    HParam("lr_decay", 0.0, "lr at step t is lr / (1 + (t-1)*lr_decay), t global", low=0.0),
    HParam("initial_accumulator_value", 0.0, "starting value of the accumulator (torch 0, "
           "optax 0.1)", low=0.0, init=True, knob=True),
    HParam("eps", 1e-10, "denominator guard", low=0.0),
    HParam("eps_placement", "outside", "'outside': sqrt(sum) + eps (torch); 'inside': "
           "sqrt(sum + eps), zero update where sum = 0 (optax)", kind="choice",
           choices=("outside", "inside"), knob=True),
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
)


def sparse_adagrad_init(param, /, *, initial_accumulator_value=0.0,
                        state_dtype=None) -> AdagradState:
    """Adagrad's state: sparse and dense Adagrad can take over from each other."""
    return adagrad_init(param, initial_accumulator_value=initial_accumulator_value,
                        state_dtype=state_dtype)


def _adagrad_rows(xp, dtype, p, g, s_old, *, clr, eps, eps_placement):
    """Adagrad on some rows; the same operations, in the same order, as ``adagrad_step``."""
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    s = s_old + g * g
    if eps_placement == "outside":
        p_new = p - c(clr) * (g / (xp.sqrt(s) + c(eps)))
    else:
        safe = xp.where(s > 0, s, xp.ones_like(s))
        # g * 0 where s is not > 0, as adagrad_step: a NaN gradient still propagates
        u = xp.where(s > 0, g / xp.sqrt(safe + c(eps)), g * 0.0)
        p_new = p - c(clr) * u
    return p_new, s


def sparse_adagrad_step(param, grad, state: AdagradState, /, *, lr=1e-2, lr_decay=0.0,
                        initial_accumulator_value=0.0, eps=1e-10, eps_placement="outside",
                        maximize=False, donate=False):
    r"""One sparse Adagrad step on the rows :math:`I` of the gradient (duplicates summed).

    .. math::

        s_I &= s_I + g_I^2, \qquad \eta_t = \mathrm{lr}/(1 + (t-1)\,\mathrm{lr\_decay}) \\
        \theta_I &= \theta_I - \eta_t\, g_I / (\sqrt{s_I} + \epsilon)
        \quad\text{or, eps\_placement='inside',}\quad
        \theta_I - \eta_t\, g_I / \sqrt{s_I + \epsilon}\ (0 \text{ where } s_I = 0)

    with :math:`t` the global step count (every call counts) and every other row unchanged. This
    equals :func:`~adaptive_ref.adagrad_step` on the zero-filled gradient (module note).

    Defaults (torch.optim.Adagrad): lr=1e-2, lr_decay=0, initial value 0, eps=1e-10, outside.
    Profile ``torch``: Adagrad with a sparse COO gradient (torch refuses weight decay with sparse
    gradients, so there is none here). ``donate`` as in
    :func:`~adaptive_ref.sparse.lazy_adam_step`. Returns ``(new_param, new_state)``.
    """
    check_hparams("sparse_adagrad_step", SPARSE_ADAGRAD_HPARAMS, (lr, lr_decay,
                  initial_accumulator_value, eps, eps_placement, maximize))
    if not isinstance(donate, bool):
        msg = f"sparse_adagrad_step: donate must be True or False, got {donate!r}"
        raise TypeError(msg)
    pre = sparse_prelude("sparse_adagrad_step", param, grad, state, AdagradState,
                         "sparse_adagrad_init", full_shape_moments=("sum",))
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, lr_decay, eps = scalars(xp, sd, param, lr, lr_decay, eps)
    count, t = nx.advance(xp, state.count, sd)
    clr = lr / (1.0 + (t - 1.0) * lr_decay)
    cast = lambda a: a if a.dtype == dtype else xp.astype(a, dtype)  # noqa: E731
    back = lambda a: a if a.dtype == pre.param_dtype else xp.astype(a, pre.param_dtype)  # noqa
    kw = dict(clr=clr, eps=eps, eps_placement=eps_placement)
    if pre.rows is None:
        g = -cast(pre.grad) if maximize else cast(pre.grad)
        p_new, s = _adagrad_rows(xp, dtype, cast(param), g, state.sum, **kw)
        return back(p_new), AdagradState(count, s)
    idx = pre.rows.indices
    g = cast(row_totals(xp, idx, pre.rows.values))
    if maximize:
        g = -g
    p_rows, s_rows = _adagrad_rows(xp, dtype, cast(take_rows(xp, param, idx)), g,
                                   take_rows(xp, state.sum, idx), **kw)
    p_new = put_rows(xp, param, idx, back(p_rows), donate=donate)
    s = put_rows(xp, state.sum, idx, s_rows, donate=donate)
    return p_new, AdagradState(count, s)


SPARSE_ADAGRAD = OptimizerSpec(
    name="sparse_adagrad", title="Sparse Adagrad", init=sparse_adagrad_init,
    step=sparse_adagrad_step, state_type=AdagradState, hparams=SPARSE_ADAGRAD_HPARAMS,
    paper="Duchi, Hazan & Singer, Adaptive subgradient methods for online learning and "
          "stochastic optimization, JMLR 12 (2011); sparse path of torch.optim.Adagrad",
    summary="Adagrad on the rows of a row-sparse gradient; identical to dense Adagrad.",
    profiles={
        "torch": Profile("torch", dict(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0,
                                       eps=1e-10, eps_placement="outside", maximize=False),
                         "torch/optim/adagrad.py _single_tensor_adagrad, sparse branch "
                         "(torch 2.13.0)",
                         "gradient coalesced; sum and param updated at its indices only; "
                         "weight_decay with sparse gradients raises"),
    },
)
