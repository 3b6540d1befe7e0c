r"""Adafactor: a factored second moment, a relative step size and update clipping.

Shazeer & Stern, "Adafactor: Adaptive learning rates with sublinear memory cost", ICML 2018,
arXiv:1804.04235 (Algorithm 4: matrices, Algorithm 5: vectors; Sections 5-7 for
:math:`\hat\beta_{2t}`, update clipping and the relative step size).

Not elementwise: for a factored parameter the second moment is kept as a row factor and a column
factor (means of :math:`G^2` over one axis each, kept with that axis of size 1), and the update
divides by the RMS of the whole update and multiplies by the RMS of the whole parameter (0-d
arrays, no host reads: the step runs under ``jax.jit``). ``elementwise=False``,
``coupling="tensor"``: its exact goldens (``adaptive-ref conform --optimizer adafactor``) come
from a per-tensor oracle (``conformance.fidelity._adafactor_tensor``) whose row and column factors
are state fields of their own shapes (the golden's ``state_shapes``); ``tests/test_adafactor.py``
also checks it against a float64 transcription of Algorithms 4/5, an mpmath evaluation and the
installed torch, optax and Keras implementations.

The frameworks differ in almost every convention; each is a knob here (see :func:`adafactor_step`
and the ``torch``, ``optax``, ``keras`` and ``paper`` profiles).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import array_api_compat as aac

from .. import _numerics as nx
from .._checks import is_array
from .._common import (
    WEIGHT_DECAY_MODE,
    check_hparams,
    decoupled_decay_factor,
    finish,
    init_number,
    init_zeros,
    is_zero,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["AdafactorState", "adafactor_init", "adafactor_step", "factored_axes", "ADAFACTOR"]


class AdafactorState(NamedTuple):
    """State of Adafactor.

    count: 0-d integer array, the number of steps taken (0 after init).
    v_row:  factored parameters: the EMA of ``mean(G^2, axis=a0)``, the parameter's shape with
            axis ``a0`` of size 1 (the "row" factor, R/m of the paper); else None.
    v_col:  factored parameters: the EMA of ``mean(G^2, axis=a1)``, axis ``a1`` of size 1 (the
            column factor, C/n of the paper); else None. ``(a0, a1)`` = :func:`factored_axes`.
    v:      unfactored parameters (vectors, scalars, tensors not factored by the rule): the full
            EMA of ``G^2``; else None.
    mu:     the momentum (EMA of the scaled update) when made with ``beta1 > 0``; else None.
    """

    count: Any
    v_row: Any = None
    v_col: Any = None
    v: Any = None
    mu: Any = None


_FACTORING = (
    HParam("beta1", 0.0, "momentum: EMA coefficient of the scaled update alpha*U_hat (optax "
           "momentum, tensor2tensor beta1; 0 = none, as in the paper, torch and Keras); a "
           "state with a momentum buffer is made when beta1 > 0", low=0.0, high=1.0,
           high_open=True, init=True),
    HParam("factored", True, "keep the second moment factored for tensors of order >= 2 "
           "(optax factored); False: a full v for every parameter", kind="bool", init=True,
           knob=True),
    HParam("factor_axes", "last_two", "which two axes are factored: 'last_two' (torch, Keras, "
           "the paper's matrices; leading axes are batch axes) or 'two_largest' (optax: the two "
           "largest, ties to the later axis, as a stable argsort)", kind="choice",
           choices=("last_two", "two_largest"), init=True, knob=True),
    HParam("min_dim_size_to_factor", 0, "factor only if both chosen axes have at least this "
           "size (an integer; optax 128, torch/Keras/paper 0 = always); otherwise a full v",
           low=0.0, init=True, knob=True),
)

ADAFACTOR_HPARAMS = (
    HParam("lr", 1e-2, "learning rate: the cap of the relative step rho_t = min(lr, 1/sqrt(t)) "
           "with relative_step, else rho_t = lr (the paper's rho_t = min(1e-2, 1/sqrt(t)))",
           low=0.0),
    HParam("decay_rate", 0.8, "c of beta2_hat_t = 1 - t^(-c) (torch beta2_decay = -c, Keras "
           "beta_2_decay = -c, optax decay_rate = c)", low=0.0),
    HParam("eps1", 1e-30, "epsilon_1, the regulariser of the squared gradient (see eps1_mode)",
           low=0.0),
    HParam("eps2", 1e-3, "epsilon_2, the floor of the parameter scale max(eps2, RMS(theta))",
           low=0.0),
    HParam("clip_threshold", 1.0, "d: the update is divided by max(1, RMS(U)/d); inf = no "
           "clipping (optax clipping_threshold=None)", low=1.0, allow_inf=True),
    HParam("weight_decay", 0.0, "weight decay coefficient (see weight_decay_mode, "
           "decay_scaling)", low=0.0),
    replace(WEIGHT_DECAY_MODE, default="decoupled", meaning=(
        "'decoupled': theta <- theta (1 - s wd) before the update, s per decay_scaling (every "
        "framework's Adafactor: torch, optax, Keras); 'coupled': L2, g += wd*theta before the "
        "second moment (optax chain(add_decayed_weights(wd), adafactor(...)))")),
    HParam("maximize", False, "ascend instead of descend (the gradient is negated first)",
           kind="bool", knob=True),
    HParam("relative_step", True, "rho_t = min(lr, 1/sqrt(t)) (the paper, torch, Keras) or "
           "rho_t = lr (optax: a plain multiplier, 1 when its learning_rate is None)",
           kind="bool", knob=True),
    HParam("multiply_by_parameter_scale", True, "alpha_t = max(eps2, RMS(theta)) * rho_t (the "
           "paper, all three frameworks by default) or alpha_t = rho_t", kind="bool", knob=True),
    HParam("param_scale_from", "before_decay", "RMS(theta) of the parameter before the weight "
           "decay ('before_decay': torch, optax) or after it ('after_decay': Keras, whose base "
           "class decays the variable before update_step)", kind="choice",
           choices=("before_decay", "after_decay"), knob=True),
    HParam("eps1_mode", "add", "'add': G^2 + eps1 enters the moments (the paper, optax, Keras); "
           "'clamp': G^2 enters unchanged, the row-factor normaliser is clamped at eps1 and "
           "V_hat at eps1^2 (torch with eps=(eps1, eps2)); 'clamp_machine_eps': 'clamp' with "
           "eps1 = the machine epsilon of the parameter's dtype, eps1 ignored (torch's default "
           "eps=(None, 1e-3))", kind="choice", choices=("add", "clamp", "clamp_machine_eps"),
           knob=True),
    HParam("beta2_precision", "float64", "dtype of beta2_hat_t = 1 - t^(-c) and 1 - beta2_hat_t: "
           "'float64' (torch's Python floats, the reference), 'param' (the variable's dtype, "
           "Keras), 'float32' (optax, always, even for float64 parameters)", kind="choice",
           choices=("float64", "param", "float32"), knob=True),
    HParam("mean_precision", "compute", "dtype of every mean (the factors' means of G^2, their "
           "normaliser, RMS(theta), RMS(U)): 'compute' (the state dtype: torch, optax, the "
           "reference) or 'float32' (Keras: keras.ops.mean computes in result_type(x.dtype, "
           "'float32'), which is float32 for float64 input, then casts back)", kind="choice",
           choices=("compute", "float32"), knob=True),
    HParam("decay_scaling", "lr", "decoupled decay theta <- theta (1 - s wd) before the update: "
           "s = lr (torch, Keras: the raw lr, not rho_t) or s = 1 ('none': optax "
           "add_decayed_weights, the update becomes u + wd*theta, not multiplied by lr)",
           kind="choice", choices=("lr", "none"), knob=True),
) + _FACTORING

_INIT_HPARAMS = _FACTORING


def _check_min_dim(op: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        msg = f"{op}: min_dim_size_to_factor must be an int >= 0, got {value!r}"
        raise TypeError(msg)
    return value


def factored_axes(shape, *, factored: bool = True, factor_axes: str = "last_two",
                  min_dim_size_to_factor: int = 0):
    """``(a0, a1)``: the axis the row factor averages over (``a0``) and the one the column
    factor averages over (``a1``), or None for a full second moment.

    ``"last_two"``: ``(ndim - 1, ndim - 2)`` (torch: ``row_var`` is ``mean(G^2, -1)``, Keras the
    same). ``"two_largest"``: ``a0`` the largest axis, ``a1`` the second largest, ties going to
    the later axis (optax ``_factored_dims``: ``np.argsort(shape)[-1], [-2]``). Either way the
    tensor is factored only if ``ndim >= 2`` and both axes have at least
    ``min_dim_size_to_factor`` elements (optax checks the second largest against 128).
    """
    shape = tuple(shape)
    if not factored or len(shape) < 2:
        return None
    if factor_axes == "last_two":
        a0, a1 = len(shape) - 1, len(shape) - 2
    else:
        order = sorted(range(len(shape)), key=lambda i: shape[i])  # stable, like a small argsort
        a0, a1 = order[-1], order[-2]
    if min(shape[a0], shape[a1]) < min_dim_size_to_factor:
        return None
    return a0, a1


def _keep(shape, axis):
    return tuple(1 if i == axis else n for i, n in enumerate(shape))


def adafactor_init(param, /, *, beta1=0.0, factored=True, factor_axes="last_two",
                   min_dim_size_to_factor=0, state_dtype=None) -> AdafactorState:
    """Zero factors (or a zero full ``v``) for ``param``, a zero momentum buffer if
    ``beta1 > 0``; ``state_dtype`` (default: the param's) for all of them."""
    op = "adafactor_init"
    check_hparams(op, _INIT_HPARAMS, (beta1, factored, factor_axes, min_dim_size_to_factor))
    beta1 = init_number(op, _INIT_HPARAMS, "beta1", beta1)
    min_dim = _check_min_dim(op, min_dim_size_to_factor)
    xp, z, count = init_zeros(op, param, state_dtype)
    axes = factored_axes(param.shape, factored=factored, factor_axes=factor_axes,
                         min_dim_size_to_factor=min_dim)
    mu = xp.zeros_like(z) if beta1 > 0 else None
    if axes is None:
        return AdafactorState(count, v=z, mu=mu)
    dev = aac.device(param)
    v_row, v_col = (xp.zeros(_keep(param.shape, a), dtype=z.dtype, device=dev) for a in axes)
    return AdafactorState(count, v_row=v_row, v_col=v_col, mu=mu)


def _check_layout(op, param, state, axes) -> None:
    """The state layout (which fields, their shapes) for the factored ``axes``; the namespace,
    dtypes and count are :func:`prelude`'s."""
    shape = tuple(param.shape)
    want = {"v": shape if axes is None else None,
            "v_row": None if axes is None else _keep(shape, axes[0]),
            "v_col": None if axes is None else _keep(shape, axes[1])}
    for name, expect in want.items():
        got = getattr(state, name)
        if (got is None) != (expect is None) or (got is not None and tuple(got.shape) != expect):
            have = None if got is None else tuple(getattr(got, "shape", ()))
            msg = (f"{op}: state.{name} has shape {have} but a parameter of shape {shape} with "
                   f"these factoring settings (factored axes {axes}) needs {expect}; pass the "
                   f"same factored/factor_axes/min_dim_size_to_factor to adafactor_init and "
                   f"adafactor_step")
            raise ValueError(msg)


def _mean(xp, x, precision, axis=None):
    """The mean over ``axis`` (kept, size 1), or over every element when ``axis`` is None,
    taken one axis at a time from the last (a mean of equal-sized means: the same number, in
    an order every namespace follows the same way, Dask's chunked reductions included). With
    ``precision="float32"``: computed on ``x`` rounded to float32 and cast back (Keras'
    ``ops.mean`` on float64 input)."""
    low = precision == "float32" and x.dtype != xp.float32
    y = xp.astype(x, xp.float32) if low else x
    if axis is not None:
        y = xp.mean(y, axis=axis, keepdims=True)
    else:
        for _ in range(y.ndim):
            y = xp.mean(y, axis=-1)
    return xp.astype(y, x.dtype) if low else y


def _rms(xp, x, precision):
    """RMS of the whole tensor as a 0-d array (no host read)."""
    return xp.sqrt(_mean(xp, x * x, precision))


def _beta2_hat(xp, t, c):
    """:math:`\\hat\\beta_{2t} = 1 - t^{-c}` in the dtype of ``t`` and ``c`` (0-d)."""
    return 1 - xp.pow(t, -c)


def adafactor_step(param, grad, state: AdafactorState, /, *, lr=1e-2, decay_rate=0.8,
                   eps1=1e-30, eps2=1e-3, clip_threshold=1.0, weight_decay=0.0,
                   weight_decay_mode="decoupled", maximize=False,
                   relative_step=True, multiply_by_parameter_scale=True,
                   param_scale_from="before_decay", eps1_mode="add", beta2_precision="float64",
                   mean_precision="compute", decay_scaling="lr", beta1=0.0, factored=True,
                   factor_axes="last_two", min_dim_size_to_factor=0):
    r"""One Adafactor step (Shazeer & Stern 2018, Algorithms 4 and 5).

    With :math:`t` the 1-based step, :math:`G` the gradient (negated if ``maximize``):

    .. math::

        \hat\beta_{2t} &= 1 - t^{-c}, \qquad
        \rho_t = \min(\mathrm{lr}, 1/\sqrt t)\ \text{(relative\_step) or } \mathrm{lr} \\
        \theta' &= \theta\,(1 - s\,\lambda), \qquad s = \mathrm{lr}\ \text{or}\ 1
        \quad(\text{decay\_scaling; with weight\_decay\_mode='coupled' instead }
        \theta' = \theta,\ G \leftarrow G + \lambda\theta) \\
        \alpha_t &= \max(\epsilon_2, \mathrm{RMS}(\theta \text{ or } \theta'))\,\rho_t
        \quad(\text{or } \rho_t \text{ without the parameter scale}) \\
        Q &= G^2 + \epsilon_1 \quad(\text{eps1\_mode='add'; } G^2 \text{ for 'clamp'}) \\
        \text{factored:}\quad R_t &= \hat\beta_{2t} R_{t-1} + (1-\hat\beta_{2t})\,
        \mathrm{mean}_{a_0}(Q), \quad
        C_t = \hat\beta_{2t} C_{t-1} + (1-\hat\beta_{2t})\, \mathrm{mean}_{a_1}(Q), \quad
        \hat V_t = R_t C_t / \mathrm{mean}_{a_1}(R_t) \\
        \text{otherwise:}\quad \hat V_t &= \hat\beta_{2t} \hat V_{t-1} + (1-\hat\beta_{2t})\, Q \\
        U_t &= G / \sqrt{\hat V_t}, \qquad
        \hat U_t = U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,\alpha_t \hat U_t
        \quad(\text{only with momentum; else } m_t = \alpha_t \hat U_t) \\
        \theta_t &= \theta' - m_t

    The means are the paper's sums divided by the axis length: :math:`R C / 1^\top R` is the same
    matrix (Algorithm 4 line 8). ``eps1_mode='clamp'`` (torch) replaces the regulariser by
    :math:`\hat V_t = R_t C_t/\max(\mathrm{mean}_{a_1}(R_t), \epsilon_1)` and
    :math:`U_t = G/\sqrt{\max(\hat V_t, \epsilon_1^2)}`. The whole-tensor RMS values are 0-d
    arrays of the compute dtype (no ``.item()``). For order > 2 the two factored axes
    (:func:`factored_axes`) are chosen by ``factor_axes`` and ``min_dim_size_to_factor``; the
    other axes are batch axes (one pair of factors per slice).

    Defaults (the paper's, Section 9): lr 1e-2 with the relative step, so
    :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)`; c = 0.8; :math:`\epsilon_1 = 10^{-30}` added;
    :math:`\epsilon_2 = 10^{-3}`; d = 1; no momentum, no decay; the last two axes factored.

    Profiles:

    * ``torch`` (torch.optim.Adafactor): lr 1e-2, relative step, ``eps1_mode="clamp_machine_eps"``,
      decay :math:`\theta(1-\mathrm{lr}\lambda)` with :math:`\alpha` from the undecayed
      :math:`\theta`, last two axes always factored, no momentum.
    * ``optax`` (optax.adafactor): no relative step (lr is a plain multiplier; its
      ``learning_rate=None`` is lr = 1), :math:`\hat\beta_{2t}` in float32, the two largest axes
      factored only from 128 up, decay ``u + wd*theta`` not scaled by lr, optional momentum.
    * ``keras`` (keras.optimizers.Adafactor): lr 1e-3 with the relative step, always (its
      ``relative_step=False`` changes nothing: docs/conformance.md), :math:`\alpha` from the
      decayed :math:`\theta`, :math:`\hat\beta_{2t}` in the variable dtype, last two axes.
    * ``paper``: the defaults above.

    In the exact-golden catalogue as a per-tensor optimizer (``coupling="tensor"``). Returns
    ``(new_param, new_state)``; the inputs are not modified.
    """
    op = "adafactor_step"
    check_hparams(op, ADAFACTOR_HPARAMS, (
        lr, decay_rate, eps1, eps2, clip_threshold, weight_decay, weight_decay_mode, maximize,
        relative_step, multiply_by_parameter_scale, param_scale_from, eps1_mode,
        beta2_precision, mean_precision, decay_scaling, beta1, factored, factor_axes,
        min_dim_size_to_factor))
    min_dim = _check_min_dim(op, min_dim_size_to_factor)
    axes = factored_axes(param.shape if is_array(param) else (), factored=factored,
                         factor_axes=factor_axes, min_dim_size_to_factor=min_dim)
    pre = prelude(op, param, grad, state, AdafactorState, "adafactor_init",
                  own_shape=("v_row", "v_col"))
    _check_layout(op, param, state, axes)
    xp, pdtype, dtype, sd = pre.xp, pre.param_dtype, pre.dtype, pre.sdtype
    if state.mu is None and not is_zero(beta1):
        msg = (f"{op}: beta1={beta1!r} asks for momentum but the state has no momentum buffer; "
               f"make it with adafactor_init(param, beta1={beta1!r})")
        raise ValueError(msg)
    c = nx.caster(xp, dtype)
    p = pre.p
    coupled = weight_decay_mode == "coupled"
    g = prepare_grad(xp, pre.g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                     coupled=coupled)
    count, t = nx.advance(xp, state.count, sd)  # t NaN after an unreadable count overflowed

    def scalar(v, d=sd):
        return nx.as_scalar(xp, v, d, param)

    # beta2_hat_t = 1 - t^(-c) and its complement, in the chosen precision
    bd = {"float64": sd, "float32": xp.float32,
          "param": nx.factor_dtype(xp, sd, pdtype, "param")}[beta2_precision]
    beta2 = _beta2_hat(xp, nx.astype(xp, t, bd), scalar(decay_rate, bd))
    one_minus_beta2 = 1 - beta2
    # relative step and parameter scale (0-d arrays in the scalar dtype)
    lr_ = nx.poison(xp, scalar(lr), state.count, t)  # NaN after an unreadable overflow
    rho = xp.minimum(lr_, 1 / xp.sqrt(t)) if relative_step else lr_
    # decay_scaling "none": 1 - 1.0*wd ("schedule" with the multiplier 1; 1.0*wd is exact)
    factor = None if coupled else decoupled_decay_factor(
        weight_decay, "lr" if decay_scaling == "lr" else "schedule")
    p_dec = p if factor is None else p * c(factor(lr_, scalar(weight_decay)))
    if multiply_by_parameter_scale:
        scale_of = p if param_scale_from == "before_decay" else p_dec
        rms_p = nx.astype(xp, _rms(xp, scale_of, mean_precision), sd)
        alpha = xp.maximum(scalar(eps2), rms_p) * rho
    else:
        alpha = rho
    # second moment
    clamp = eps1_mode != "add"
    e1 = float(xp.finfo(dtype).eps) if eps1_mode == "clamp_machine_eps" else scalars(
        xp, sd, param, eps1)[0]  # a NumPy scalar eps1 is read once, as every hyperparameter
    q = g * g if clamp else g * g + c(e1)
    # eps1^2 formed in the scalar precision and rounded to the dtype once (torch's Python-float
    # eps1 * eps1): c(e1) * c(e1) would square the rounded eps1 on NumPy (whose caster gives a
    # 0-d array of the dtype) but not on the others (a Python float), 1 ULP apart in float32
    e1sq = c(e1 * e1) if clamp else None
    b2, w = c(beta2), c(one_minus_beta2)
    v_row = v_col = v = None
    if axes is None:
        v = b2 * state.v + w * q
        v_hat = xp.maximum(v, e1sq) if clamp else v
    else:
        a0, a1 = axes
        v_row = b2 * state.v_row + w * _mean(xp, q, mean_precision, a0)
        v_col = b2 * state.v_col + w * _mean(xp, q, mean_precision, a1)
        norm = _mean(xp, v_row, mean_precision, a1)
        if clamp:
            v_hat = xp.maximum(v_row * v_col / xp.maximum(norm, c(e1)), e1sq)
        else:
            v_hat = v_row * v_col / norm
    u = g / xp.sqrt(v_hat)
    # update clipping: U / max(1, RMS(U)/d), a 0-d array
    rms_u = nx.astype(xp, _rms(xp, u, mean_precision), sd)
    denom = xp.maximum(scalar(1.0), rms_u / scalar(clip_threshold))
    upd = u * c(alpha / denom)
    mu = None
    if state.mu is not None:
        mu = c(beta1) * state.mu + c(1 - scalar(beta1)) * upd
        upd = mu
    p_new = p_dec - upd
    return finish(xp, p_new, pdtype), AdafactorState(count, v_row, v_col, v, mu)


_SRC_TORCH = "torch/optim/_adafactor.py _single_tensor_adafactor (torch 2.13.0)"
_SRC_OPTAX = ("optax/_src/alias.py adafactor, optax/_src/factorized.py scale_by_factored_rms "
              "(optax 0.2.8)")
_SRC_KERAS = ("keras/src/optimizers/adafactor.py Adafactor.update_step, "
              "base_optimizer.py _apply_weight_decay (keras 3.15.1)")
# The paper's settings (every knob written out); each framework's profile is this plus the
# conventions where it differs.
_PAPER = dict(lr=1e-2, decay_rate=0.8, eps1=1e-30, eps2=1e-3, clip_threshold=1.0,
              weight_decay=0.0, weight_decay_mode="decoupled", maximize=False,
              relative_step=True,
              multiply_by_parameter_scale=True, param_scale_from="before_decay", eps1_mode="add",
              beta2_precision="float64", mean_precision="compute", decay_scaling="lr",
              beta1=0.0, factored=True, factor_axes="last_two", min_dim_size_to_factor=0)

ADAFACTOR = OptimizerSpec(
    name="adafactor", title="Adafactor", init=adafactor_init, step=adafactor_step,
    state_type=AdafactorState, hparams=ADAFACTOR_HPARAMS, elementwise=False, coupling="tensor",
    paper="Shazeer & Stern, Adafactor: Adaptive learning rates with sublinear memory cost, "
          "ICML 2018 (arXiv:1804.04235), Algorithms 4-5",
    summary="Factored (row x column) second moment, relative step size scaled by RMS(theta), "
            "update clipping by RMS(U)/d.",
    profiles={
        "torch": Profile("torch", {**_PAPER, "eps1_mode": "clamp_machine_eps"},
                         _SRC_TORCH,
                         "eps=(eps1, eps2) with eps1 given is eps1_mode='clamp'; torch takes "
                         "eps1 = finfo.eps from the first parameter's dtype and reuses it for "
                         "the others; no momentum"),
        "optax": Profile("optax", {**_PAPER, "lr": REQUIRED, "relative_step": False,
                                   "beta2_precision": "float32", "decay_scaling": "none",
                                   "factor_axes": "two_largest", "min_dim_size_to_factor": 128},
                         _SRC_OPTAX,
                         "learning_rate=None is lr=1; momentum's accumulator defaults to "
                         "float32 (dtype_momentum); clipping_threshold=None is inf"),
        "keras": Profile("keras", {**_PAPER, "lr": 1e-3, "param_scale_from": "after_decay",
                                   "beta2_precision": "param", "mean_precision": "float32"},
                         _SRC_KERAS,
                         "relative_step=False in Keras changes nothing (rho_t = min(lr, "
                         "1/sqrt(t)) is applied unconditionally); weight_decay is the base "
                         "class's p - p*wd*lr before update_step"),
        "paper": Profile("paper", dict(_PAPER),
                         "Shazeer & Stern 2018, arXiv:1804.04235, Algorithms 4-5, Section 9",
                         "order > 2: the last two axes factored, leading axes batched"),
    },
)
