r"""NAdam: Adam with Nesterov momentum.

Dozat, "Incorporating Nesterov momentum into Adam", ICLR 2016 workshop, Algorithm 2.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _blockwise
from .. import _numerics as nx
from .._common import (
    EMA_WEIGHT_PRECISION,
    FACTOR_PRECISION,
    WEIGHT_DECAY_MODE,
    check_hparams,
    ema_weights,
    finish,
    init_zeros,
    prelude,
    prepare_grad,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile

__all__ = ["NAdamState", "nadam_init", "nadam_step", "NADAM"]


class NAdamState(NamedTuple):
    """count: 0-d integer step count. mu, nu: first and second moments.
    mu_product: 0-d array in the scalar dtype (float64 where available), the product of the
    momentum coefficients mu_1 ... mu_t (1 after init)."""

    count: Any
    mu: Any
    nu: Any
    mu_product: Any

    # 0-d state kept in the scalar dtype, not the state dtype (see _common.prelude)
    SCALAR_FIELDS = ("mu_product",)


NADAM_HPARAMS = (
    HParam("lr", 2e-3, "learning rate", low=0.0),
    HParam("beta1", 0.9, "decay rate of the first moment", low=0.0, high=1.0, high_open=True),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-8, "denominator guard, outside the root of v_hat", low=0.0),
    HParam("momentum_schedule", "torch", "'torch': mu_t = b1*(1 - 0.5*0.96^(t*psi)) "
           "(torch.optim.NAdam); 'constant': mu_t = b1 (Dozat's constant form, optax.nadam)",
           kind="choice", choices=("torch", "constant"), knob=True),
    HParam("momentum_decay", 4e-3, "psi of the torch schedule (psi=0 gives mu_t = b1/2, not b1)",
           low=0.0),
    HParam("weight_decay", 0.0, "weight decay coefficient", low=0.0),
    WEIGHT_DECAY_MODE,
    HParam("maximize", False, "ascend instead of descend", kind="bool", knob=True),
    FACTOR_PRECISION,
    EMA_WEIGHT_PRECISION,
)


def nadam_init(param, /, *, state_dtype=None) -> NAdamState:
    """Step count 0; zero moments; mu_product = 1."""
    xp, z, count = init_zeros("nadam_init", param, state_dtype)
    sd = nx.scalar_dtype(xp, param, z.dtype)
    return NAdamState(count, z, xp.zeros_like(z), nx.as_scalar(xp, 1.0, sd, param))


def nadam_coefficients(xp, sd, param, mu_product, t, *, lr, beta1, beta2, momentum_schedule,
                       momentum_decay):
    """The step's scalars in the scalar dtype ``sd``: ``(mu_product_t, 1 - b2^t, coef_g, coef_m)``
    with ``coef_g = lr (1-mu_t)/(1-Pi_t)`` and ``coef_m = lr mu_{t+1}/(1-Pi_t mu_{t+1})``.
    Shared with the fused paths, which must use the same scalars bit for bit."""
    if momentum_schedule == "torch":
        mu_t = beta1 * (1.0 - 0.5 * nx.power(xp, 0.96, t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * nx.power(xp, 0.96, (t + 1.0) * momentum_decay))
    else:
        mu_t = mu_next = nx.as_scalar(xp, beta1, sd, param)
    mu_product = nx.astype(xp, mu_product, sd) * mu_t
    bc2 = nx.bias_correction(xp, beta2, t)
    coef_g = lr * (1.0 - mu_t) / (1.0 - mu_product)
    coef_m = lr * mu_next / (1.0 - mu_product * mu_next)
    return mu_product, bc2, coef_g, coef_m


def nadam_step(param, grad, state: NAdamState, /, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               momentum_schedule="torch", momentum_decay=4e-3, weight_decay=0.0,
               weight_decay_mode="coupled", maximize=False, factor_precision="float64",
               ema_weight_precision="float64"):
    r"""One NAdam step in torch's form (torch.optim.NAdam; Dozat 2016, Algorithm 2).

    .. math::

        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}) \;\text{('torch')}
                 \quad\text{or}\quad \mu_t = \beta_1 \;\text{('constant')}, \qquad
        \Pi_t = \textstyle\prod_{i\le t} \mu_i \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2,
        \qquad d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon \\
        \theta_t &= \theta_{t-1} - \mathrm{lr}\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g}{d_t}
                   - \mathrm{lr}\,\frac{\mu_{t+1}}{1-\Pi_t\,\mu_{t+1}}\,\frac{m_t}{d_t}

    With ``"constant"`` this is optax's ``nadam``:
    :math:`\bar m = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)`,
    :math:`\theta_t = \theta_{t-1} - \mathrm{lr}\,\bar m/(\sqrt{\hat v_t}+\epsilon)`.
    The moment EMA uses :math:`\beta_1`, not :math:`\mu_t`, in both.

    ``weight_decay_mode="decoupled"`` multiplies :math:`\theta` by :math:`1-\mathrm{lr}\,\lambda`
    first (NAdamW). ``factor_precision="param"`` computes :math:`\mu_t`, :math:`\Pi_t`,
    :math:`1-\beta_2^t` and the two coefficients in the parameter's dtype (optax, Keras);
    ``ema_weight_precision="param"`` forms the EMA weights :math:`1-\beta` in the parameter's
    dtype from the rounded :math:`\beta` (Keras Nadam, unlike Keras Adam).

    Defaults (torch.optim.NAdam): lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, psi=4e-3.
    Profiles: ``torch``; ``optax`` (constant schedule, no default lr); ``keras``
    (keras.optimizers.Nadam: :math:`\psi = 1`, i.e. :math:`\mu_t = \beta_1(1-\tfrac12 0.96^t)`);
    ``keras-torch`` (Keras' torch backend, whose own Nadam forms the EMA weights in float64).

    .. warning:: torch keeps ``mu_product`` in its default dtype (float32 unless set to
       float64); the reference keeps it in float64 where the backend has it.
    """
    if _blockwise.fusable(param):  # a large NumPy array: its fused kernel, bit for bit
        return _blockwise.fused(nadam_step, locals())
    check_hparams("nadam_step", NADAM_HPARAMS, (lr, beta1, beta2, eps, momentum_schedule,
                  momentum_decay, weight_decay, weight_decay_mode, maximize, factor_precision,
                  ema_weight_precision))
    pre = prelude("nadam_step", param, grad, state, NAdamState, "nadam_init")
    xp, dtype = pre.xp, pre.dtype
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, beta2, eps, momentum_decay, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, momentum_decay, weight_decay)
    decoupled = weight_decay_mode == "decoupled"
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    count, t = nx.advance(xp, state.count, sd)
    mu_product, bc2, coef_g, coef_m = nadam_coefficients(
        xp, sd, param, state.mu_product, t, lr=lr, beta1=beta1, beta2=beta2,
        momentum_schedule=momentum_schedule, momentum_decay=momentum_decay)

    _, w1 = ema_weights(xp, beta1, param, pre.sdtype, ema_weight_precision)
    _, w2 = ema_weights(xp, beta2, param, pre.sdtype, ema_weight_precision)

    def update(p, g, m, v):
        # in-place operators on fresh arrays round as the expressions in the docstring
        # (x = a * b; x += c * d is a * b + c * d); large NumPy arrays go block by block
        g = prepare_grad(xp, g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                         coupled=not decoupled)
        if decoupled:
            p = p * c(1 - lr * weight_decay)
        mu = c(beta1) * m
        mu += c(w1) * g
        nu = c(beta2) * v
        nu += c(w2) * (g * g)
        denom = xp.sqrt(nu / c(bc2)) + c(eps)
        step_g = g / denom
        step_g *= c(coef_g)
        step_m = mu / denom
        step_m *= c(coef_m)
        p_new = p - step_g
        p_new -= step_m  # p - coef_g g / d - coef_m m / d, left to right
        return p_new, mu, nu

    p_new, mu, nu = _blockwise.run(xp, update, (pre.p, pre.g, state.mu, state.nu))
    return (finish(xp, p_new, pre.param_dtype),
            NAdamState(count, mu, nu, nx.astype(xp, mu_product, state.mu_product.dtype)))


_COMMON = dict(beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3, weight_decay=0.0,
               weight_decay_mode="coupled", maximize=False, factor_precision="float64",
               ema_weight_precision="float64")

NADAM = OptimizerSpec(
    name="nadam", title="NAdam", init=nadam_init, step=nadam_step, state_type=NAdamState,
    hparams=NADAM_HPARAMS,
    paper="Dozat, Incorporating Nesterov momentum into Adam, ICLR 2016 workshop, Algorithm 2",
    summary="Adam with a Nesterov look-ahead on the first moment.",
    profiles={
        "torch": Profile("torch", dict(lr=2e-3, momentum_schedule="torch", **_COMMON),
                         "torch/optim/nadam.py _single_tensor_nadam (torch 2.13.0)",
                         "torch momentum_decay=1e9 makes mu_t = b1, i.e. the optax form"),
        "optax": Profile("optax", dict(_COMMON, lr=REQUIRED, momentum_schedule="constant",
                                       factor_precision="param"),
                         "optax/_src/alias.py nadam = adam(nesterov=True) (optax 0.2.8)"),
        "keras": Profile("keras", dict(_COMMON, lr=1e-3, eps=1e-7, momentum_schedule="torch",
                                       momentum_decay=1.0, weight_decay_mode="decoupled",
                                       factor_precision="param", ema_weight_precision="param"),
                         "keras/src/optimizers/nadam.py Nadam.update_step (keras 3.15.1)",
                         "torch's schedule with psi = 1 hard-coded (0.96**t); u_product in the "
                         "first variable's dtype; decoupled lr-scaled weight decay"),
        # Keras' torch backend reimplements Nadam (torch._foreach_*): its EMA weights are the
        # Python floats 1 - beta, as in Keras Adam, not 1 - beta cast to the variable dtype
        "keras-torch": Profile(
            "keras-torch", dict(_COMMON, lr=1e-3, eps=1e-7, momentum_schedule="torch",
                                momentum_decay=1.0, weight_decay_mode="decoupled",
                                factor_precision="param", ema_weight_precision="float64"),
            "keras/src/backend/torch/optimizers/torch_nadam.py Nadam._parallel_update_step "
            "(keras 3.15.1)", "as 'keras' except the EMA weights 1 - beta (Python floats)"),
    },
)
