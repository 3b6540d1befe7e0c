r"""Sparse Adagrad: Adagrad that touches only the rows present in a row-sparse gradient.

Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning and stochastic
optimization", JMLR 12 (2011) 2121-2159. Sparse path: torch ``torch/optim/adagrad.py``
``_single_tensor_adagrad`` with a sparse COO gradient (torch 2.13.0).

Equal to dense Adagrad by construction: an absent row has :math:`g = 0`, which adds nothing to
the accumulator and moves nothing (:math:`0/(\sqrt{s}+\epsilon) = 0`). The one exception is
dense Adagrad's own ``0/0``: with ``eps=0``, ``eps_placement="outside"`` and a coordinate whose
accumulator is still 0, dense Adagrad writes NaN there; the sparse step leaves the row alone.

The update is Adagrad's one text (``adaptive_ref.optimizers.adagrad``), run on the whole table
for a dense gradient and on the gathered rows for a row-sparse one.
"""

from __future__ import annotations

from .._checks import is_array
from .._common import check_hparams
from .._spec import HParam, OptimizerSpec, Profile
from ..optimizers.adagrad import AdagradState, _adagrad_update, adagrad_init
from ._prelude import sparse_prelude
from ._rowops import put_rows, row_totals, take_rows
from .rows import RowSparse, as_row_sparse

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


def _adagrad(param, grad, state, lr, lr_decay, eps, eps_placement, maximize):
    """Adagrad itself (:mod:`adaptive_ref.optimizers.adagrad`'s one update, its checks named
    for sparse_adagrad_step) on ``param`` and the state: the whole table, or the gathered rows."""
    return _adagrad_update("sparse_adagrad_step", param, grad, state, lr, lr_decay, eps,
                           eps_placement, 0.0, "coupled", maximize)


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
    hp = (lr, lr_decay, eps, eps_placement, maximize)
    grad = as_row_sparse(grad, like=param if is_array(param) else None)
    if not isinstance(grad, RowSparse):  # a dense gradient: every row present, which is Adagrad
        return _adagrad(param, grad, state, *hp)
    pre = sparse_prelude("sparse_adagrad_step", param, grad, state, AdagradState,
                         "sparse_adagrad_init", full_shape_moments=("sum",))
    xp, idx = pre.xp, pre.rows.indices
    p_rows, rows = _adagrad(take_rows(xp, param, idx), row_totals(xp, idx, pre.rows.values),
                            AdagradState(state.count, take_rows(xp, state.sum, idx)), *hp)
    p_new = put_rows(xp, param, idx, p_rows, donate=donate)
    s = put_rows(xp, state.sum, idx, rows.sum, donate=donate)
    return p_new, AdagradState(rows.count, s)


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
