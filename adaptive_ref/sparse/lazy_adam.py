r"""Lazy Adam on row-sparse gradients (torch.optim.SparseAdam, TF Addons LazyAdam).

Kingma & Ba, "Adam: A method for stochastic optimization", ICLR 2015, arXiv:1412.6980: Algorithm 1
and the eps-hat form at the end of Sec. 2. Lazy updates: torch ``torch/optim/sparse_adam.py``
``SparseAdam`` + ``torch/optim/_functional.py`` ``sparse_adam`` (torch 2.13.0); TF Addons
``LazyAdam``.

Step counting is **global per tensor**: ``count`` goes up by one at every step, whether a row is
present or not (even for a gradient with no rows, as torch's ``state["step"]``). The alternative,
one count per row (bias corrections with the number of times *that row* was touched), is not the
default because no framework implements it and it changes the trajectory by O(1) (0.43 relative
after 200 steps in the measurement of conventions.md Sec. 12); it would also need a state array
of counts the size of the table.

The update itself is Adam's one text (``adaptive_ref.optimizers.adam``): a dense gradient goes to
it directly, and a row-sparse one runs it on the gathered rows (and, for
``absent_rows="dense_equivalent"``, on the whole table with a zero gradient), so lazy Adam with
every row present is ``adam_step`` by construction.
"""

from __future__ import annotations

from .._checks import is_array
from .._common import check_hparams
from .._spec import HParam, OptimizerSpec, Profile
from ..optimizers.adam import AdamState, _adam_update, adam_init
from ._prelude import sparse_prelude
from ._rowops import put_rows, row_totals, take_rows
from .rows import RowSparse, as_row_sparse

__all__ = ["lazy_adam_init", "lazy_adam_step", "LAZY_ADAM", "LAZY_ADAM_HPARAMS"]

LAZY_ADAM_HPARAMS = (
    HParam("lr", 1e-3, "learning rate (alpha)", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "denominator guard", low=0.0),
    HParam("eps_placement", "hat", "'hat': sqrt(v) + eps on the uncorrected v with step "
           "lr*sqrt(1-b2^t)/(1-b1^t) (torch SparseAdam, TF LazyAdam); 'outside': "
           "sqrt(v_hat) + eps after bias correction (Algorithm 1, torch Adam)",
           kind="choice", choices=("hat", "outside"), knob=True),
    HParam("bias_correction", True, "divide m by 1-b1^t and v by 1-b2^t (global t)",
           kind="bool", knob=True),
    HParam("absent_rows", "lazy", "'lazy': rows absent from the gradient keep param, m and v "
           "bit for bit (torch SparseAdam); 'dense_equivalent': they move as dense Adam moves "
           "them on the zero-filled gradient (O(table) per step; for comparison)",
           kind="choice", choices=("lazy", "dense_equivalent"), knob=True),
    HParam("maximize", False, "ascend instead of descend (the gradient is negated first)",
           kind="bool", knob=True),
)


def lazy_adam_init(param, /, *, state_dtype=None) -> AdamState:
    """Adam's state (zero m and v, count 0): lazy and dense Adam can take over from each other."""
    return adam_init(param, amsgrad=False, state_dtype=state_dtype)


def _adam(param, grad, state, lr, beta1, beta2, eps, eps_placement, bias_correction, maximize):
    """Adam itself (:mod:`adaptive_ref.optimizers.adam`'s one update, its checks named for
    lazy_adam_step) on ``param`` and the state: the whole table, or the gathered rows."""
    return _adam_update("lazy_adam_step", param, grad, state, lr, beta1, beta2, eps, 0.0,
                        eps_placement, bias_correction, False, "raw", maximize, 0.0, True, None,
                        "float64")


def lazy_adam_step(param, grad, state: AdamState, /, *, lr=1e-3, beta1=0.9, beta2=0.999,
                   eps=1e-8, eps_placement="hat", bias_correction=True, absent_rows="lazy",
                   maximize=False, donate=False):
    r"""One lazy Adam step: only the rows :math:`I` present in the gradient move.

    .. math::

        g_I &\leftarrow \pm \textstyle\sum_{\text{duplicates}} g \qquad
              (t \leftarrow t + 1 \text{ globally, every step}) \\
        m_I &= \beta_1 m_I + (1-\beta_1) g_I, \qquad v_I = \beta_2 v_I + (1-\beta_2) g_I^2 \\
        \theta_I &= \theta_I - \mathrm{lr}\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
              \frac{m_I}{\sqrt{v_I} + \hat\epsilon} \quad\text{(eps\_placement='hat')} \\
        \theta_I &= \theta_I - \mathrm{lr}\,\frac{m_I/(1-\beta_1^t)}
              {\sqrt{v_I/(1-\beta_2^t)} + \epsilon} \quad\text{('outside')}

    and :math:`\theta, m, v` unchanged, bit for bit, on every row not in :math:`I`. With every
    row present this *is* :func:`~adaptive_ref.adam_step` with the same ``eps_placement`` (bit for
    bit). ``absent_rows="dense_equivalent"`` instead moves the absent rows with :math:`g = 0`
    (:math:`m \leftarrow \beta_1 m`, :math:`v \leftarrow \beta_2 v`, and a step of
    :math:`-\mathrm{lr}\,\hat m/(\sqrt{\hat v}+\epsilon)`), which is dense Adam on the
    zero-filled gradient: O(table) per step, there for comparison.

    ``grad``: a :class:`~adaptive_ref.sparse.RowSparse` (duplicates are summed), a torch sparse
    COO tensor, a scipy/pydata sparse array, or a dense array (every row present).

    Defaults: torch SparseAdam's, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, eps-hat (TF Addons
    LazyAdam: eps=1e-7, also eps-hat). Profile ``torch`` = torch.optim.SparseAdam. optax has no
    sparse optimizer.

    ``donate=True`` (not a hyperparameter; default False): the caller gives up ``param`` and the
    state arrays, which are then updated in place where the backend allows it (NumPy, torch,
    CuPy), so the step costs O(touched rows) instead of one copy of the table per array. With the
    default the inputs are never changed. Returns ``(new_param, new_state)``.
    """
    check_hparams("lazy_adam_step", LAZY_ADAM_HPARAMS, (lr, beta1, beta2, eps, eps_placement,
                  bias_correction, absent_rows, maximize))
    if not isinstance(donate, bool):
        msg = f"lazy_adam_step: donate must be True or False, got {donate!r}"
        raise TypeError(msg)
    if isinstance(state, AdamState) and state.nu_max is not None:
        msg = ("lazy_adam_step: the state was made with amsgrad=True; lazy Adam has no AMSGrad "
               "(make the state with lazy_adam_init)")
        raise ValueError(msg)
    hp = (lr, beta1, beta2, eps, eps_placement, bias_correction, maximize)
    grad = as_row_sparse(grad, like=param if is_array(param) else None)
    if not isinstance(grad, RowSparse):  # a dense gradient: every row present, which is Adam
        return _adam(param, grad, state, *hp)
    pre = sparse_prelude("lazy_adam_step", param, grad, state, AdamState, "lazy_adam_init",
                         full_shape_moments=("mu", "nu"))
    xp, idx = pre.xp, pre.rows.indices
    rows = AdamState(state.count, take_rows(xp, state.mu, idx), take_rows(xp, state.nu, idx))
    p_rows, rows = _adam(take_rows(xp, param, idx), row_totals(xp, idx, pre.rows.values), rows,
                         *hp)
    if absent_rows == "lazy":
        base_p, base_mu, base_nu, own = param, state.mu, state.nu, donate
    else:  # every row moves with g = 0 (dense Adam); then the present rows are overwritten
        base_p, base = _adam(param, xp.zeros_like(param), state, *hp)
        base_mu, base_nu, own = base.mu, base.nu, True  # fresh arrays: safe to write into
    p_new = put_rows(xp, base_p, idx, p_rows, donate=own)
    mu = put_rows(xp, base_mu, idx, rows.mu, donate=own)
    nu = put_rows(xp, base_nu, idx, rows.nu, donate=own)
    return p_new, AdamState(rows.count, mu, nu, None)


LAZY_ADAM = OptimizerSpec(
    name="lazy_adam", title="Lazy Adam (SparseAdam)", init=lazy_adam_init, step=lazy_adam_step,
    state_type=AdamState, hparams=LAZY_ADAM_HPARAMS,
    paper="Kingma & Ba, Adam: A method for stochastic optimization, ICLR 2015 "
          "(arXiv:1412.6980), Algorithm 1 and the eps-hat form of Sec. 2; lazy row updates as in "
          "torch.optim.SparseAdam and TF Addons LazyAdam",
    summary="Adam that updates only the rows present in a row-sparse gradient; global step "
            "count; eps on the uncorrected sqrt(v) by default.",
    profiles={
        "torch": Profile("torch", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                       eps_placement="hat", bias_correction=True,
                                       absent_rows="lazy", maximize=False),
                         "torch/optim/sparse_adam.py SparseAdam + torch/optim/_functional.py "
                         "sparse_adam (torch 2.13.0)",
                         "sparse COO gradients only; coalesced first; one step count per "
                         "tensor; no weight decay, no amsgrad"),
    },
)
