r"""Adam, AMSGrad and AdamW: one update with its conventions as named knobs.

Kingma & Ba, "Adam: A method for stochastic optimization", ICLR 2015, arXiv:1412.6980, Algorithm 1.
Reddi, Kale & Kumar, "On the convergence of Adam and beyond", ICLR 2018 (AMSGrad).
Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019, Algorithm 2 (AdamW).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
    check_hparams,
    decoupled_decay_factor,
    finish,
    init_zeros,
    is_zero,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["AdamState", "adam_init", "adam_step", "amsgrad_init", "amsgrad_step", "adamw_init",
           "adamw_step",
           "ADAM", "AMSGRAD", "ADAMW"]


class AdamState(NamedTuple):
    """State of Adam, AMSGrad and AdamW.

    count:  0-d integer array, the number of steps taken (0 after init).
    mu:     first moment m, the parameter's shape, the state dtype.
    nu:     second moment v (raw, not bias-corrected), shape and dtype as mu.
    nu_max: AMSGrad's running maximum (of raw v or of bias-corrected v, per ``amsgrad_max_over``),
            or None when AMSGrad is off.
    """

    count: Any
    mu: Any
    nu: Any
    nu_max: Any = None


def adam_init(param, /, *, amsgrad: bool = False, state_dtype=None) -> AdamState:
    """Zero moments of ``param``'s shape; ``state_dtype`` (default: the param's dtype) for m, v."""
    xp, z, count = init_zeros("adam_init", param, state_dtype)
    return AdamState(count, z, xp.zeros_like(z), xp.zeros_like(z) if amsgrad else None)


_COMMON = (
    HParam("lr", 1e-3, "learning rate (alpha)", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "denominator guard, added to sqrt of the second moment", low=0.0),
    HParam("eps_root", 0.0, "guard added inside the square root (optax eps_root)", low=0.0),
    HParam("eps_placement", "outside", "where eps is added: 'outside' = sqrt(v_hat) + eps "
           "(Algorithm 1, torch Adam, optax); 'hat' = sqrt(v) + eps on the uncorrected v with "
           "step lr*sqrt(1-b2^t)/(1-b1^t) (Kingma & Ba end of Sec. 2, torch SparseAdam)",
           kind="choice", choices=("outside", "hat"), knob=True),
    HParam("bias_correction", True, "divide m by 1-b1^t and v by 1-b2^t", kind="bool", knob=True),
    HParam("amsgrad", False, "AMSGrad: use the running maximum of the second moment",
           kind="bool", init=True, knob=True),
    HParam("amsgrad_max_over", "raw", "AMSGrad maximum over the raw v ('raw', torch) or over "
           "the bias-corrected v_hat ('corrected', optax)", kind="choice",
           choices=("raw", "corrected"), knob=True),
    HParam("maximize", False, "ascend instead of descend (the gradient is negated first)",
           kind="bool", knob=True),
    FACTOR_PRECISION,
)

ADAM_HPARAMS = _COMMON + (
    HParam("weight_decay", 0.0, "weight decay coefficient", low=0.0),
    WEIGHT_DECAY_MODE,
)

ADAMW_HPARAMS = _COMMON + (
    HParam("weight_decay", 1e-2, "decoupled weight decay coefficient (lambda)", low=0.0),
    HParam("decay_scaling", "lr", "'lr': p *= 1 - lr*wd (torch AdamW, optax adamw); 'schedule': "
           "p *= 1 - schedule_multiplier*wd, independent of lr (Loshchilov & Hutter Alg. 2)",
           kind="choice", choices=("lr", "schedule"), knob=True),
    HParam("schedule_multiplier", 1.0, "eta_t of Loshchilov & Hutter, used by "
           "decay_scaling='schedule' (pass lr = eta_t * alpha for the paper's form)", low=0.0),
)


def _adam_update(op, param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement,
                 bias_correction, amsgrad, amsgrad_max_over, maximize, weight_decay, coupled,
                 decay_factor, factor_precision):
    """The shared Adam update; ``decay_factor`` is the scalar that multiplies p, or None.

    Its callers pass the arguments by position, in this order: one call with 14 keywords costs
    about 0.75 µs more than the same call by position, a tenth of a small step's fixed cost.

    The per-element part is written with in-place operators on arrays it has just created
    (``x = a * b; x += c * d`` rounds exactly as ``a * b + c * d``; the inputs are never
    modified, and immutable arrays such as JAX's simply rebind), and on large NumPy arrays it
    runs block by block (:mod:`adaptive_ref._blockwise`), so a step does not allocate and sweep
    a parameter-sized temporary per operation.
    """
    pre = prelude(op, param, grad, state, AdamState, op.replace("_step", "_init"))
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    if amsgrad != (state.nu_max is not None):
        msg = (f"{op}: amsgrad={amsgrad} but the state was made with amsgrad={not amsgrad}; "
               f"pass the same amsgrad to init and step")
        raise ValueError(msg)
    lr, beta1, beta2, eps, eps_root, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, weight_decay)
    decay = None if decay_factor is None else decay_factor(lr, weight_decay)
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    if bias_correction:
        beta1_t, beta2_t = nx.powers(xp, (beta1, beta2), t)
        bc1, bc2 = 1.0 - beta1_t, 1.0 - beta2_t  # nx.bias_correction of each
    else:
        bc1 = bc2 = 1.0
    if eps_placement == "hat":  # eps on the uncorrected sqrt(v), corrections in the step size
        step_size = lr * xp.sqrt(bc2) / bc1 if bias_correction else lr

    def update(p, g, m, v, v_max):
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=coupled)
        if decay is not None:
            p = p * c(decay)
        mu = c(beta1) * m
        mu += c(1 - beta1) * g  # m_t = b1 m + (1 - b1) g
        nu = c(beta2) * v
        nu += c(1 - beta2) * (g * g)  # v_t = b2 v + (1 - b2) g^2
        nu_max = None
        if amsgrad:
            if amsgrad_max_over == "raw":
                nu_max = xp.maximum(v_max, nu)
                raw_v, corrected_v = nu_max, (nu_max / c(bc2) if bias_correction else nu_max)
            else:
                nu_hat = nu / c(bc2) if bias_correction else nu
                nu_max = xp.maximum(v_max, nu_hat)
                raw_v, corrected_v = (nu_max * c(bc2) if bias_correction else nu_max), nu_max
        else:
            raw_v = nu
            corrected_v = nu / c(bc2) if bias_correction else nu
        v = corrected_v if eps_placement == "outside" else raw_v
        root = xp.sqrt(v + c(eps_root)) if not is_zero(eps_root) else xp.sqrt(v)
        if eps_placement == "outside":
            m_hat = mu / c(bc1) if bias_correction else mu
            u = m_hat / (root + c(eps))
            u *= c(lr)  # lr * m_hat / (sqrt(v_hat) + eps)
        else:
            u = mu / (root + c(eps))
            u *= c(step_size)
        return p - u, mu, nu, nu_max

    p_new, mu, nu, nu_max = _blockwise.run(
        xp, update, (pre.p, pre.g, state.mu, state.nu, state.nu_max))
    return finish(xp, p_new, pre.param_dtype), AdamState(count, mu, nu, nu_max)


def adam_step(param, grad, state: AdamState, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
              amsgrad_max_over="raw", maximize=False, factor_precision="float64",
              weight_decay=0.0, weight_decay_mode="coupled"):
    r"""One Adam step (Kingma & Ba 2015, Algorithm 1), optionally AMSGrad.

    .. math::

        g &\leftarrow \pm g \;(+\, \lambda\theta \text{ if coupled}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2 \\
        \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t) \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\; \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    With ``eps_placement="hat"`` the last line is
    :math:`\theta_t = \theta_{t-1} - \mathrm{lr}\sqrt{1-\beta_2^t}/(1-\beta_1^t)\; m_t/(\sqrt{v_t}+\hat\epsilon)`,
    which equals the line above with :math:`\epsilon = \hat\epsilon/\sqrt{1-\beta_2^t}`.
    AMSGrad replaces :math:`v` by its running maximum, taken over the raw :math:`v_t`
    (``amsgrad_max_over="raw"``, torch) or over :math:`\hat v_t` (``"corrected"``, optax).
    ``weight_decay_mode="decoupled"`` multiplies :math:`\theta` by :math:`1-\mathrm{lr}\,\lambda`
    before the update (torch ``decoupled_weight_decay=True``; Keras ``weight_decay``, written
    :math:`\theta - \mathrm{lr}\,\lambda\theta`) instead of adding :math:`\lambda\theta` to g.
    ``factor_precision="param"`` computes :math:`1-\beta_1^t`, :math:`1-\beta_2^t` (and the
    'hat' step size) in the parameter's dtype, as optax and Keras do; ``"float64"`` in float64.

    Symbols: lr = alpha, beta1 = :math:`\beta_1`, beta2 = :math:`\beta_2`, eps = :math:`\epsilon`,
    eps_root = :math:`\epsilon_{root}`, weight_decay = :math:`\lambda`.

    Defaults are Algorithm 1's: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8.
    Profiles: ``torch`` (torch.optim.Adam) is these defaults with amsgrad_max_over='raw';
    ``optax`` (optax.adam) has no default lr and takes amsgrad's maximum over 'corrected' v;
    ``keras`` (keras.optimizers.Adam) is eps-hat with eps=1e-7, decoupled decay, float32 factors.

    .. warning:: torch.optim.SparseAdam and torch RAdam put eps on the *uncorrected* sqrt(v)
       (``eps_placement="hat"``); torch and optax Adam do not.

    Returns ``(new_param, new_state)``; the inputs are not modified.
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(adam_step, locals())
    return _adam(param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement,
                 bias_correction, amsgrad, amsgrad_max_over, maximize, factor_precision,
                 weight_decay, weight_decay_mode)


def _adam(param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement, bias_correction,
          amsgrad, amsgrad_max_over, maximize, factor_precision, weight_decay, weight_decay_mode):
    """:func:`adam_step` after its hand-off to the fused kernel (arguments by position, in its
    signature's order; :func:`amsgrad_step` calls it too)."""
    check_hparams("adam_step", ADAM_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  bias_correction, amsgrad, amsgrad_max_over, maximize, factor_precision,
                  weight_decay, weight_decay_mode))
    decoupled = weight_decay_mode == "decoupled"
    return _adam_update(
        "adam_step", param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement,
        bias_correction, amsgrad, amsgrad_max_over, maximize, weight_decay, not decoupled,
        decoupled_decay_factor(weight_decay) if decoupled else None, factor_precision)


def amsgrad_init(param, /, *, amsgrad: bool = True, state_dtype=None) -> AdamState:
    """Adam's state with the running maximum ``nu_max`` (zeros)."""
    return adam_init(param, amsgrad=amsgrad, state_dtype=state_dtype)


def amsgrad_step(param, grad, state: AdamState, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=True,
                 amsgrad_max_over="raw", maximize=False, factor_precision="float64",
                 weight_decay=0.0, weight_decay_mode="coupled"):
    r"""One AMSGrad step (Reddi, Kale & Kumar 2018): :func:`adam_step` with ``amsgrad=True``.

    .. math::

        v^{max}_t &= \max(v^{max}_{t-1}, v_t) \;\text{('raw', torch)} \quad\text{or}\quad
        \max(v^{max}_{t-1}, \hat v_t) \;\text{('corrected', optax)} \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\; \hat m_t / (\sqrt{\tilde v_t} + \epsilon),
        \qquad \tilde v_t = v^{max}_t/(1-\beta_2^t) \text{ ('raw') or } v^{max}_t
        \text{ ('corrected')}

    with :math:`m_t, v_t, \hat m_t, \hat v_t` as in :func:`adam_step`. The paper (Algorithm 2) has
    no bias correction and a decaying lr; torch and optax add Adam's corrections and differ in
    which v the maximum is taken over (0.35 apart at step 10 in the conformance catalogue).
    Defaults as Adam. Profiles: ``torch`` (Adam(amsgrad=True)) and ``optax`` (optax.amsgrad).
    """
    if _blockwise.fusable(param):  # a large NumPy array: Adam's fused kernel, bit for bit
        return _blockwise.fused(adam_step, locals())
    return _adam(param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement,
                 bias_correction, amsgrad, amsgrad_max_over, maximize, factor_precision,
                 weight_decay, weight_decay_mode)


def adamw_init(param, /, *, amsgrad: bool = False, state_dtype=None) -> AdamState:
    """Same state as Adam."""
    return adam_init(param, amsgrad=amsgrad, state_dtype=state_dtype)


def adamw_step(param, grad, state: AdamState, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
               amsgrad_max_over="raw", maximize=False, factor_precision="float64",
               weight_decay=1e-2, decay_scaling="lr", schedule_multiplier=1.0):
    r"""One AdamW step (Loshchilov & Hutter 2019, Algorithm 2): Adam with decoupled weight decay.

    .. math::

        \theta' &= (1 - s\,\lambda)\,\theta_{t-1}, \qquad
        s = \mathrm{lr} \text{ (decay\_scaling='lr')} \text{ or } \eta_t \text{ ('schedule')} \\
        \theta_t &= \theta' - \mathrm{lr}\; \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    with :math:`m, v, \hat m, \hat v` as in :func:`adam_step` (the gradient gets no decay term).
    The paper writes :math:`\theta_t = \theta_{t-1} - \eta_t(\alpha\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)
    + \lambda\theta_{t-1})`: pass ``lr = eta_t * alpha``, ``schedule_multiplier = eta_t`` and
    ``decay_scaling="schedule"``. torch and optax multiply the decay by lr (``"lr"``), so their
    ``weight_decay`` equals the paper's :math:`\lambda/\alpha`.

    Defaults: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2 (torch's; the paper
    leaves lambda free). Profiles: ``torch`` (torch.optim.AdamW: wd 1e-2) and ``optax``
    (optax.adamw: wd 1e-4, no default lr).
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(adamw_step, locals())
    check_hparams("adamw_step", ADAMW_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  bias_correction, amsgrad, amsgrad_max_over, maximize, factor_precision,
                  weight_decay, decay_scaling, schedule_multiplier))
    factor = decoupled_decay_factor(weight_decay, decay_scaling, schedule_multiplier)
    return _adam_update(
        "adamw_step", param, grad, state, lr, beta1, beta2, eps, eps_root, eps_placement,
        bias_correction, amsgrad, amsgrad_max_over, maximize, weight_decay, False, factor,
        factor_precision)


_ADAM_TORCH = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, eps_root=0.0,
                   eps_placement="outside", bias_correction=True, amsgrad_max_over="raw",
                   maximize=False, factor_precision="float64")
_ADAM_OPTAX = dict(lr=REQUIRED, beta1=0.9, beta2=0.999, eps=1e-8, eps_root=0.0,
                   eps_placement="outside", bias_correction=True,
                   amsgrad_max_over="corrected", maximize=False, factor_precision="param")
# Keras 3: eps-hat (eps on the uncorrected sqrt(v)), eps 1e-7, the maximum over the raw v,
# 1 - beta^t in the variable dtype, and weight_decay as the base class's decoupled lr-scaled decay
_ADAM_KERAS = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, eps_root=0.0, eps_placement="hat",
                   bias_correction=True, amsgrad_max_over="raw", maximize=False,
                   factor_precision="param")
_KERAS_NOTE = ("weight_decay is applied by the base class as p - lr*wd*p before the step "
               "(decoupled, lr-scaled) in every Keras optimizer")

ADAM = OptimizerSpec(
    name="adam", title="Adam", init=adam_init, step=adam_step, state_type=AdamState,
    hparams=ADAM_HPARAMS,
    paper="Kingma & Ba, Adam: A method for stochastic optimization, ICLR 2015 "
          "(arXiv:1412.6980), Algorithm 1",
    summary="Bias-corrected first and second moment estimates; step m_hat/(sqrt(v_hat)+eps).",
    profiles={
        "torch": Profile("torch", {**_ADAM_TORCH, "weight_decay": 0.0,
                                   "weight_decay_mode": "coupled"},
                         "torch/optim/adam.py _single_tensor_adam (torch 2.13.0)",
                         "weight_decay is coupled L2; decoupled_weight_decay=True is 'decoupled'"),
        "optax": Profile("optax", {**_ADAM_OPTAX, "weight_decay": 0.0,
                                   "weight_decay_mode": "coupled"},
                         "optax/_src/transform.py scale_by_adam (optax 0.2.8)",
                         "coupled L2 = chain(add_decayed_weights(wd), adam(...))"),
        "keras": Profile("keras", {**_ADAM_KERAS, "weight_decay": 0.0,
                                   "weight_decay_mode": "decoupled"},
                         "keras/src/optimizers/adam.py Adam.update_step (keras 3.15.1)",
                         _KERAS_NOTE),
    },
)

AMSGRAD = OptimizerSpec(
    name="amsgrad", title="AMSGrad", init=amsgrad_init, step=amsgrad_step, state_type=AdamState,
    hparams=ADAM_HPARAMS, fixed={"amsgrad": True},
    paper="Reddi, Kale & Kumar, On the convergence of Adam and beyond, ICLR 2018, Algorithm 2",
    summary="Adam with the running maximum of the second moment in the denominator.",
    profiles={
        "torch": Profile("torch", {**_ADAM_TORCH, "amsgrad": True, "weight_decay": 0.0,
                                   "weight_decay_mode": "coupled"},
                         "torch/optim/adam.py _single_tensor_adam, amsgrad=True",
                         "maximum over the raw v, then divided by sqrt(1-b2^t)"),
        "optax": Profile("optax", {**_ADAM_OPTAX, "amsgrad": True, "weight_decay": 0.0,
                                   "weight_decay_mode": "coupled"},
                         "optax/_src/transform.py scale_by_amsgrad (bias_correction_nu=True)",
                         "maximum over the bias-corrected v_hat (optax#1389)"),
        "keras": Profile("keras", {**_ADAM_KERAS, "amsgrad": True, "weight_decay": 0.0,
                                   "weight_decay_mode": "decoupled"},
                         "keras/src/optimizers/adam.py Adam(amsgrad=True).update_step",
                         "maximum over the raw v (velocity_hat), then the eps-hat step"),
    },
)

ADAMW = OptimizerSpec(
    name="adamw", title="AdamW", init=adamw_init, step=adamw_step, state_type=AdamState,
    hparams=ADAMW_HPARAMS,
    paper="Loshchilov & Hutter, Decoupled weight decay regularization, ICLR 2019, Algorithm 2",
    summary="Adam with weight decay applied to the parameters, not added to the gradient.",
    profiles={
        "torch": Profile("torch", {**_ADAM_TORCH, "weight_decay": 1e-2, "decay_scaling": "lr",
                                   "schedule_multiplier": 1.0},
                         "torch/optim/adamw.py AdamW (Adam with decoupled_weight_decay=True)"),
        "optax": Profile("optax", {**_ADAM_OPTAX, "weight_decay": 1e-4, "decay_scaling": "lr",
                                   "schedule_multiplier": 1.0},
                         "optax/_src/alias.py adamw = chain(scale_by_adam, "
                         "add_decayed_weights, scale_by_learning_rate)"),
        "keras": Profile("keras", {**_ADAM_KERAS, "weight_decay": 4e-3, "decay_scaling": "lr",
                                   "schedule_multiplier": 1.0},
                         "keras/src/optimizers/adamw.py AdamW (Adam's update_step, keras 3.15.1)",
                         _KERAS_NOTE),
    },
)
