r"""Schedule-free AdamW and schedule-free SGD: one wrapper, two base directions.

Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS 2024,
arXiv:2405.15682 (Algorithm 1; the code convention of facebookresearch/schedule_free after its
2024-11-04 change, the PyPI package ``schedulefree`` 1.4.1).

The wrapper keeps three sequences. The parameters hold the *training point* y (where gradients
are taken); the state holds the base sequence z; the *evaluation point* x (the average) is not
stored but recovered as :math:`x = (y - (1-\beta_1) z)/\beta_1`
(:func:`schedule_free_eval_params`). Per step :math:`k = 0, 1, \ldots` (``t = k + 1``):

.. math::

    s_t &= \min(1, t/W) \;(\text{warm-up; } 1 \text{ when } W = 0), \qquad
    \gamma_t = \mathrm{lr}\, s_t, \qquad \gamma^{\max}_t = \max(\gamma^{\max}_{t-1}, \gamma_t) \\
    w_t &= t^r\, (\gamma^{\max}_t)^{P}, \qquad \Sigma_t = \Sigma_{t-1} + w_t, \qquad
    c_t = w_t / \Sigma_t \;(0 \text{ while } \Sigma_t = 0) \\
    d &= u(g) + \lambda y \qquad (u = g \text{ for SGD};\;
        u = g / (\sqrt{v_t/(1-\beta_2^t)} + \epsilon),\;
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2 \text{ for AdamW}) \\
    y &\leftarrow y + c_t (z - y) + \gamma_t(\beta_1 (1 - c_t) - 1)\, d, \qquad
    z \leftarrow z - \gamma_t\, d

which is :math:`z_{t} = z_{t-1} - \gamma_t d`, :math:`x_t = (1-c_t) x_{t-1} + c_t z_t`,
:math:`y_t = (1-\beta_1) z_t + \beta_1 x_t` written on y and z only.

Knobs (the conventions on which the implementations differ):

* ``warmup_lag``: optax's wrapper evaluates the schedule at ``step_count = k + 1`` for the
  weights but its inner ``scale_by_learning_rate`` at ``count = k`` for the step, so z moves with
  :math:`\mathrm{lr}\,\min(1, k/W)` (not at all on step 1) while :math:`\gamma^{\max}` uses
  :math:`\min(1, (k+1)/W)`.
* ``warmup_precision``: ``"float32"``: optax's ``warmup_constant_schedule`` computes the
  warmed-up lr in float32 even for float64 parameters (and the lr after warm-up is then
  ``fl32(lr)``).
  ``"factor_float32"``: Keras on the torch backend rounds the factor ``min(t/W, 1)`` to float32.
* ``averaging``: ``"lr_max"`` (the weights above: upstream, optax with r = 0) or
  ``"uniform"``: :math:`c_t = 1/t` (Keras).
* ``weight_decay_form``: ``"direction"``: :math:`\lambda y` is added to the step direction d,
  so it moves z and y (upstream, optax: decay evaluated at y); ``"y"``: Keras' base class
  first sets :math:`y \leftarrow y - \mathrm{lr}\,\lambda\, y` (the un-warmed lr) and z is not
  decayed.
* ``x_from_updated_z``: Keras on the torch backend recovers x from the *updated* z (an aliasing
  bug), so :math:`y \leftarrow (1-c_t) y + c_t z_t`.
* ``factor_precision``: ``"float64"`` (upstream: Python floats) or ``"param"``: every scalar
  (warm-up factor, :math:`\gamma^{\max}`, the weights and their sum, :math:`c_t`,
  :math:`1-\beta_2^t`) in the parameter's dtype (optax keeps ``weight_sum`` and ``max_lr`` in the
  parameter dtype; Keras computes all of them in the variable dtype).

Every step-dependent scalar is a 0-d array, so the step runs under ``jax.jit`` without a host
synchronisation, and lazily on Dask.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _numerics as nx
from .._checks import is_array
from .._common import (
    EMA_WEIGHT_PRECISION,
    FACTOR_PRECISION,
    check_hparams,
    ema_weights,
    finish,
    init_zeros,
    is_zero,
    prelude,
    scalars,
)
from .._spec import HParam, OptimizerSpec, Profile

__all__ = ["ScheduleFreeState", "schedule_free_adamw_init", "schedule_free_adamw_step",
           "schedule_free_sgd_init", "schedule_free_sgd_step", "schedule_free_eval_params",
           "SCHEDULE_FREE_ADAMW", "SCHEDULE_FREE_SGD"]


class ScheduleFreeState(NamedTuple):
    """State of schedule-free AdamW and SGD (the parameters themselves hold y).

    count:      0-d integer step count (0 after init).
    z:          the base sequence z, the parameter's shape, the state dtype (starts at y_0).
    weight_sum: 0-d, scalar dtype: the sum of the averaging weights w_1 + ... + w_t.
    lr_max:     0-d, scalar dtype: the largest (warmed-up) lr so far.
    nu:         AdamW's second moment v (raw, not bias-corrected); None for SGD.
    """

    count: Any
    z: Any
    weight_sum: Any
    lr_max: Any
    nu: Any = None

    # 0-d state kept in the scalar dtype, not the state dtype (see _common.prelude)
    SCALAR_FIELDS = ("weight_sum", "lr_max")


def _init(op: str, param, state_dtype, adam: bool) -> ScheduleFreeState:
    xp, zeros, count = init_zeros(op, param, state_dtype)
    z = xp.astype(param, zeros.dtype, copy=True)
    sd = nx.scalar_dtype(xp, param, zeros.dtype)
    zero = nx.as_scalar(xp, 0.0, sd, param)
    return ScheduleFreeState(count, z, zero, xp.asarray(zero, copy=True),
                             zeros if adam else None)


def schedule_free_adamw_init(param, /, *, state_dtype=None) -> ScheduleFreeState:
    """z = y_0 (a copy of ``param``), v = 0, weight sum 0, lr_max 0."""
    return _init("schedule_free_adamw_init", param, state_dtype, True)


def schedule_free_sgd_init(param, /, *, state_dtype=None) -> ScheduleFreeState:
    """z = y_0 (a copy of ``param``), weight sum 0, lr_max 0 (no second moment)."""
    return _init("schedule_free_sgd_init", param, state_dtype, False)


def schedule_free_eval_params(param, state: ScheduleFreeState, /, *, beta1=0.9):
    r"""The evaluation point :math:`x = (y - (1-\beta_1) z)/\beta_1` of ``param`` (= y) and
    ``state`` (upstream ``optimizer.eval()``, optax ``schedule_free_eval_params``). Pure: y and
    the state are not modified. Keras has no counterpart."""
    check_hparams("schedule_free_eval_params", (_BETA1,), (beta1,))
    if not isinstance(state, ScheduleFreeState):
        msg = (f"schedule_free_eval_params: state is a {type(state).__name__}, not a "
               f"ScheduleFreeState (make it with schedule_free_adamw_init or "
               f"schedule_free_sgd_init)")
        raise TypeError(msg)
    import array_api_compat as aac

    xp = aac.array_namespace(param, state.z)
    dtype = state.z.dtype
    y = param if param.dtype == dtype else xp.astype(param, dtype)
    (b1,) = scalars(xp, nx.scalar_dtype(xp, param, dtype), param, beta1)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    x = y - c(1 - b1) * state.z
    x = x / c(b1)
    return finish(xp, x, param.dtype)


_BETA1 = HParam("beta1", 0.9, "interpolation between z and the average x in y (upstream "
                "AdamW's beta1, upstream SGD's momentum, optax b1)", low=0.0, high=1.0,
                low_open=True)

_WRAPPER = (
    _BETA1,
    HParam("weight_decay", 0.0, "weight decay coefficient (form: weight_decay_form)", low=0.0),
    HParam("warmup_steps", 0.0, "W: linear warm-up of the lr over the first W steps, "
           "s_t = min(1, t/W); 0: none", low=0.0),
    HParam("r", 0.0, "polynomial weighting of the average: w_t = t^r lr_max^P", low=0.0),
    HParam("weight_lr_power", 2.0, "P: the average's weights are lr_max^P (0: uniform in lr)",
           low=0.0),
    HParam("warmup_lag", False, "True: the step of z uses the warm-up factor of the previous "
           "step, lr*min(1, k/W) for the 0-based step k, while lr_max uses min(1, (k+1)/W), so "
           "z does not move on step 1 (optax: the wrapper calls the schedule with step_count = "
           "k + 1, the inner scale_by_learning_rate with count = k); False: both use "
           "min(1, (k+1)/W) (upstream, Keras)", kind="bool", knob=True),
    HParam("warmup_precision", "scalar", "how the warmed-up lr lr*min(1, t/W) is computed: "
           "'scalar': in the scalar dtype (factor_precision; upstream, Keras); 'float32': as "
           "optax.warmup_constant_schedule evaluates it, in float32 whatever the parameters' "
           "dtype: fl32(fl32(-lr)*fl32(1 - fl32(t/W)) + fl32(lr)) during warm-up and fl32(lr) "
           "after it; 'factor_float32': the factor min(t/W, 1) rounded to float32, times lr "
           "in the scalar dtype (Keras on the torch backend, whose ops.minimum(x, 1.0) "
           "returns float32) (acts only with warmup_steps > 0)", kind="choice",
           choices=("scalar", "float32", "factor_float32"), knob=True),
    HParam("averaging", "lr_max", "averaging weight c_t: 'lr_max': w_t / sum w with w_t = "
           "t^r lr_max^P (upstream, optax); 'uniform': c_t = 1/t (Keras)", kind="choice",
           choices=("lr_max", "uniform"), knob=True),
    HParam("weight_decay_form", "direction", "'direction': wd*y is added to the step "
           "direction d, which moves z and y (upstream, optax: decay evaluated at y); 'y': "
           "y <- y - lr*wd*y with the un-warmed lr before the step, z not decayed (Keras' "
           "base-class decoupled decay)", kind="choice", choices=("direction", "y"), knob=True),
    FACTOR_PRECISION,
    HParam("x_from_updated_z", False, "True: the previous average x is recovered from y and the "
           "z *after* this step's update, which makes y <- (1 - c) y + c z_new, i.e. the "
           "coefficient of d is -c*lr instead of lr*(b1 (1 - c) - 1) (Keras on the torch "
           "backend, where momentum_old = momentum.value aliases the variable that assign_sub "
           "then updates in place); False: the z before the update (the algorithm)",
           kind="bool", knob=True),
)

SCHEDULE_FREE_ADAMW_HPARAMS = (
    HParam("lr", 2.5e-3, "learning rate (peak, after warm-up)", low=0.0),
    HParam("beta2", 0.999, "decay rate of the second moment", low=0.0, high=1.0,
           high_open=True),
    HParam("eps", 1e-8, "denominator guard, added to sqrt(v_hat)", low=0.0),
) + _WRAPPER + (EMA_WEIGHT_PRECISION,)

SCHEDULE_FREE_SGD_HPARAMS = (HParam("lr", 1.0, "learning rate (peak, after warm-up)",
                                    low=0.0),) + _WRAPPER


def _schedule_free(op, param, grad, state, direction, lr, beta1, weight_decay, warmup_steps, r,
                   weight_lr_power, warmup_lag, warmup_precision, averaging, weight_decay_form,
                   factor_precision, x_from_updated_z, adam):
    """The wrapper around a base direction ``direction(xp, g, nu, t, s, c) -> (u, nu)`` (``s``
    makes a 0-d array of the scalar dtype, ``c`` casts a scalar to the compute dtype).
    Arguments by position (a call with 13 keywords costs about 0.7 µs more)."""
    pre = prelude(op, param, grad, state, ScheduleFreeState, op.replace("_step", "_init"))
    xp, dtype = pre.xp, pre.dtype
    if adam == (state.nu is None):
        made = "schedule_free_sgd_init" if state.nu is None else "schedule_free_adamw_init"
        msg = f"{op}: the state was made by {made}; make it with {op.replace('_step', '_init')}"
        raise TypeError(msg)
    sd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, beta1, weight_decay, warmup_steps, r, power = scalars(
        xp, sd, param, lr, beta1, weight_decay, warmup_steps, r, weight_lr_power)
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN after an unreadable count overflowed
    c = nx.caster(xp, dtype)  # scalar -> an operand for dtype arrays
    s = nx.scalar_maker(xp, sd, param)  # anything -> 0-d, sd

    # the step's scalars, all 0-d arrays of dtype sd (no host synchronisation)
    if is_zero(warmup_steps):
        lr_t = lr_z = s(lr)
    else:
        lr_t = _warmed_lr(xp, s, lr, t, warmup_steps, warmup_precision)
        lr_z = (_warmed_lr(xp, s, lr, t - 1.0, warmup_steps, warmup_precision) if warmup_lag
                else lr_t)
    lr_max = xp.maximum(nx.astype(xp, state.lr_max, sd), lr_t)
    if averaging == "uniform":
        weight = s(1.0)
        weight_sum = nx.astype(xp, state.weight_sum, sd) + weight
        ck = s(1.0) / t
    else:
        weight = xp.pow(lr_max, s(power))
        if not is_zero(r):
            weight = xp.pow(t, s(r)) * weight
        weight_sum = nx.astype(xp, state.weight_sum, sd) + weight
        positive = weight_sum > 0
        ck = nx.choose(xp, positive, weight / nx.choose(xp, positive, weight_sum, s(1.0)), s(0.0))
    if x_from_updated_z:
        coef = -(ck * lr_z)  # y <- (1 - c) y + c (z - gamma d)
    else:
        coef = lr_z * (s(beta1) * (1.0 - ck) - 1.0)  # gamma (beta1 (1 - c) - 1)

    y, g = pre.p, pre.g
    decay_on_y = weight_decay_form == "y" and not is_zero(weight_decay)
    if decay_on_y:  # Keras: variable - variable * wd * lr, the un-warmed lr
        y = y - y * c(s(weight_decay) * s(lr))
    u, nu = direction(xp, g, state.nu, t, s, c)
    if weight_decay_form == "direction" and not is_zero(weight_decay):
        u = u + c(weight_decay) * y
    y_new = y + c(ck) * (state.z - y)  # lerp(y, z, c)
    y_new = y_new + c(coef) * u
    z_new = state.z - c(lr_z) * u
    new = ScheduleFreeState(count, z_new, nx.astype(xp, weight_sum, state.weight_sum.dtype),
                            nx.astype(xp, lr_max, state.lr_max.dtype), nu)
    return finish(xp, y_new, pre.param_dtype), new


def _warmed_lr(xp, s, lr, k, warmup_steps, precision):
    """``lr * min(1, k/W)`` as a 0-d array of the scalar dtype: in that dtype; (``"float32"``)
    as ``optax.warmup_constant_schedule(0, lr, W)(k)`` evaluates it, in float32 whatever the
    parameters' dtype: ``(-lr) * (1 - k/W) + lr`` while ``k < W``, then ``lr``; or
    (``"factor_float32"``) with the factor ``min(k/W, 1)`` rounded to float32 (Keras, torch
    backend)."""
    w = s(warmup_steps)
    on = w > 0  # an array W of 0 (traced) means no warm-up, as a Python 0 does
    w = xp.where(on, w, s(1.0))
    if precision == "scalar":
        return xp.where(on, s(lr) * xp.minimum(k / w, s(1.0)), s(lr))
    if precision == "factor_float32":
        factor = xp.astype(xp.astype(xp.minimum(k / w, s(1.0)), xp.float32), k.dtype)
        return xp.where(on, s(lr) * factor, s(lr))
    f32 = xp.float32
    lr32 = xp.astype(s(lr), f32)
    frac = 1.0 - xp.astype(k, f32) / xp.astype(w, f32)
    ramp = (-lr32) * frac
    ramp = ramp + lr32
    return xp.where(on, xp.astype(xp.where(k < w, ramp, lr32), k.dtype), s(lr))


def _adam_direction(beta2, eps, ema_weight_precision):
    def direction(xp, g, nu, t, s, c):
        b2 = s(beta2) if is_array(beta2) else beta2
        bc2 = nx.bias_correction(xp, b2, t)
        _, w2 = ema_weights(xp, b2, g, t.dtype, ema_weight_precision)
        v = c(b2) * nu
        v = v + c(w2) * (g * g)  # v_t = b2 v + (1 - b2) g^2
        return g / (xp.sqrt(v / c(bc2)) + c(s(eps) if is_array(eps) else eps)), v
    return direction


def _sgd_direction(xp, g, nu, t, s, c):
    return g, None


def schedule_free_adamw_step(param, grad, state: ScheduleFreeState, /, *, lr=2.5e-3, beta2=0.999,
                             eps=1e-8, beta1=0.9, weight_decay=0.0, warmup_steps=0.0, r=0.0,
                             weight_lr_power=2.0, warmup_lag=False, warmup_precision="scalar",
                             averaging="lr_max", weight_decay_form="direction",
                             factor_precision="float64", x_from_updated_z=False,
                             ema_weight_precision="float64"):
    r"""One schedule-free AdamW step (module docstring: the y/z/x sequences and the knobs).

    The base direction is Adam's without momentum:
    :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2`,
    :math:`u = g/(\sqrt{v_t/(1-\beta_2^t)} + \epsilon)`, then
    :math:`d = u + \lambda y` (``weight_decay_form="direction"``) and

    .. math::

        y \leftarrow y + c_t (z - y) + \gamma_t(\beta_1(1-c_t) - 1)\, d, \qquad
        z \leftarrow z - \gamma_t d, \qquad c_t = \frac{t^r (\gamma^{\max}_t)^P}
        {\sum_{i \le t} i^r (\gamma^{\max}_i)^P}

    Defaults (upstream ``AdamWScheduleFree``): lr=2.5e-3, beta1=0.9, beta2=0.999, eps=1e-8,
    weight_decay=0, warmup_steps=0, r=0, weight_lr_power=2.
    Profiles: ``upstream`` (schedulefree 1.4.1 ``AdamWScheduleFree``); ``optax``
    (``optax.contrib.schedule_free_adamw``: warm-up lag, float32 scalars); ``keras``
    (``keras.optimizers.ScheduleFreeAdamW``: uniform averaging c_t = 1/t, decay on y, no x,
    v updated as ``v + (g^2 - v)(1 - beta2)`` with ``1 - beta2`` in the variable dtype:
    ``ema_weight_precision="param"``); ``keras-torch`` (the same on Keras' torch backend,
    which recovers x from the updated z: ``x_from_updated_z``).
    Paper: Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv:2405.15682).
    """
    check_hparams("schedule_free_adamw_step", SCHEDULE_FREE_ADAMW_HPARAMS,
                  (lr, beta2, eps, beta1, weight_decay, warmup_steps, r, weight_lr_power,
                   warmup_lag, warmup_precision, averaging, weight_decay_form,
                   factor_precision, x_from_updated_z, ema_weight_precision))
    return _schedule_free(
        "schedule_free_adamw_step", param, grad, state,
        _adam_direction(beta2, eps, ema_weight_precision), lr, beta1, weight_decay,
        warmup_steps, r, weight_lr_power, warmup_lag, warmup_precision, averaging,
        weight_decay_form, factor_precision, x_from_updated_z, True)


def schedule_free_sgd_step(param, grad, state: ScheduleFreeState, /, *, lr=1.0, beta1=0.9,
                           weight_decay=0.0, warmup_steps=0.0, r=0.0, weight_lr_power=2.0,
                           warmup_lag=False, warmup_precision="scalar", averaging="lr_max",
                           weight_decay_form="direction", factor_precision="float64",
                           x_from_updated_z=False):
    r"""One schedule-free SGD step: the wrapper of the module docstring with the base
    direction :math:`d = g + \lambda y`:

    .. math::

        y \leftarrow y + c_t (z - y) + \gamma_t(\beta_1(1-c_t) - 1)\, d, \qquad
        z \leftarrow z - \gamma_t d

    Defaults (upstream ``SGDScheduleFree``): lr=1, beta1 (upstream ``momentum``)=0.9,
    weight_decay=0, warmup_steps=0, r=0, weight_lr_power=2.
    Profiles: ``upstream`` (schedulefree 1.4.1 ``SGDScheduleFree``); ``optax``
    (``optax.contrib.schedule_free_sgd``: warm-up lag, float32 scalars). Keras has no
    schedule-free SGD. Paper: Defazio et al., The Road Less Scheduled, NeurIPS 2024.
    """
    check_hparams("schedule_free_sgd_step", SCHEDULE_FREE_SGD_HPARAMS,
                  (lr, beta1, weight_decay, warmup_steps, r, weight_lr_power, warmup_lag,
                   warmup_precision, averaging, weight_decay_form, factor_precision,
                   x_from_updated_z))
    return _schedule_free(
        "schedule_free_sgd_step", param, grad, state, _sgd_direction, lr, beta1, weight_decay,
        warmup_steps, r, weight_lr_power, warmup_lag, warmup_precision, averaging,
        weight_decay_form, factor_precision, x_from_updated_z, False)


def _eval_point(param, state, **settings):
    """The evaluation point x for the goldens (``OptimizerSpec.observables``)."""
    return schedule_free_eval_params(param, state, beta1=settings.get("beta1", 0.9))


_UPSTREAM = dict(beta1=0.9, weight_decay=0.0, warmup_steps=0.0, r=0.0, weight_lr_power=2.0,
                 warmup_lag=False, warmup_precision="scalar", averaging="lr_max",
                 weight_decay_form="direction", factor_precision="float64",
                 x_from_updated_z=False)
_OPTAX = dict(_UPSTREAM, warmup_lag=True, warmup_precision="float32", factor_precision="param")
_KERAS = dict(_UPSTREAM, averaging="uniform", weight_decay_form="y", factor_precision="param")
_KERAS_NOTE = ("c_t = 1/t; weight_decay is the base class's y - y*wd*lr (un-warmed lr) before "
               "update_step; no evaluation point x; no r, no weight_lr_power")
_ADAM = dict(beta2=0.999, eps=1e-8, ema_weight_precision="float64")
_PAPER = ("Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, The Road Less Scheduled, "
          "NeurIPS 2024 (arXiv:2405.15682), Algorithm 1")
_UPSTREAM_SRC = ("schedulefree 1.4.1 (facebookresearch/schedule_free after the 2024-11-04 "
                 "change), schedulefree/{}.py {}.step")
_OPTAX_NOTE = ("warmup_steps enters through warmup_constant_schedule(0, lr, W), which the "
               "wrapper reads at step_count = k + 1 and the inner scale_by_learning_rate at "
               "count = k (warmup_lag), and computes it in float32 (warmup_precision); "
               "weight_sum and max_lr are in the parameter dtype; "
               "no r (r = 0)")

def _spec(name, title, init, step, hparams, summary, profiles) -> OptimizerSpec:
    """The two variants share the state, the paper and the observable x."""
    return OptimizerSpec(name=name, title=title, init=init, step=step,
                         state_type=ScheduleFreeState, hparams=hparams, paper=_PAPER,
                         summary=summary, observables={"x": _eval_point}, profiles=profiles)


SCHEDULE_FREE_ADAMW = _spec(
    "schedule_free_adamw", "Schedule-free AdamW", schedule_free_adamw_init,
    schedule_free_adamw_step, SCHEDULE_FREE_ADAMW_HPARAMS,
    "Adam's normalised step on z; y interpolates z and the lr_max-weighted average x.",
    {
        "upstream": Profile("upstream", dict(lr=2.5e-3, **_ADAM, **_UPSTREAM),
                            _UPSTREAM_SRC.format("adamw_schedulefree", "AdamWScheduleFree"),
                            "evaluation point via optimizer.eval() (y <- lerp(y, z, 1 - 1/b1))"),
        "optax": Profile("optax", dict(lr=2.5e-3, **_ADAM, **_OPTAX),
                         "optax/contrib/_schedule_free.py schedule_free_adamw, schedule_free "
                         "(optax 0.2.8)", _OPTAX_NOTE),
        "keras": Profile("keras", dict(_ADAM, lr=2.5e-3, ema_weight_precision="param",
                                       **_KERAS),
                         "keras/src/optimizers/schedule_free_adamw.py "
                         "ScheduleFreeAdamW.update_step (keras 3.15.1)",
                         _KERAS_NOTE),
        "keras-torch": Profile("keras-torch", dict(_ADAM, lr=2.5e-3, ema_weight_precision="param",
                                                   **dict(_KERAS, x_from_updated_z=True,
                                                          warmup_precision="factor_float32")),
                               "keras/src/optimizers/schedule_free_adamw.py update_step on the "
                               "torch backend (keras 3.15.1): momentum_old = momentum.value is "
                               "the variable's own tensor (keras/src/backend/torch/core.py "
                               "Variable.value), updated in place by assign_sub",
                               _KERAS_NOTE + "; x_from_updated_z; ops.minimum(t/W, 1.0) is "
                               "float32 on the torch backend (warmup_precision)"),
    },
)

SCHEDULE_FREE_SGD = _spec(
    "schedule_free_sgd", "Schedule-free SGD", schedule_free_sgd_init, schedule_free_sgd_step,
    SCHEDULE_FREE_SGD_HPARAMS, "SGD on z; y interpolates z and the lr_max-weighted average x.",
    {
        "upstream": Profile("upstream", dict(lr=1.0, **_UPSTREAM),
                            _UPSTREAM_SRC.format("sgd_schedulefree", "SGDScheduleFree"),
                            "beta1 is upstream's momentum"),
        "optax": Profile("optax", dict(lr=1.0, **_OPTAX),
                         "optax/contrib/_schedule_free.py schedule_free_sgd, schedule_free "
                         "(optax 0.2.8)", _OPTAX_NOTE),
    },
)

