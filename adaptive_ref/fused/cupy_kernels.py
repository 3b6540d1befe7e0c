"""CuPy fused steps: one ``cupy.ElementwiseKernel`` launch per step, the reference's result.

``adam_step(param, grad, state, **hparams)`` (and ``adamw``, ``sgd``, ``adagrad``, ``rmsprop``,
``adamax``, ``nadam``, ``radam``) take CuPy arrays and return what the reference step function
returns on them; ``<name>_step_`` updates ``param`` and the state arrays in place (the parameter
and state must then share one dtype).

How the result stays the reference's:

* validation, casts and every scalar factor (bias corrections, NAdam's schedule, RAdam's rho and
  its rectify flag) are computed by the reference's own helpers on the device, in the same order,
  as 0-d arrays; nothing is copied to the host, so a step never synchronises;
* the per-element update is the text of :mod:`adaptive_ref.fused.elementwise`, the reference's
  operations in order, compiled with ``--fmad=false`` so that NVRTC does not contract
  ``a * b + c`` into one fused multiply-add (CuPy's own ufuncs, one kernel per operation, never
  contract across operations); ``sqrt`` and ``/`` are IEEE-rounded (NVRTC's default
  ``-prec-sqrt=true -prec-div=true``).

The construction (``_plan_*``) is backend-generic and is tested on NumPy against the reference by
evaluating the same update text with :func:`adaptive_ref.fused.elementwise.emulate`; the compiled
kernels are tested on a GPU by ``tests/test_cupy_fused.py`` (``benchmarks/gpu_check.sh``).
Importing this module does not import CuPy.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

from .. import _numerics as nx
from .._common import check_hparams, finish, is_zero, prelude, scalars
from ..optimizers import adagrad as _adagrad
from ..optimizers import adam as _adam
from ..optimizers import adamax as _adamax
from ..optimizers import nadam as _nadam
from ..optimizers import radam as _radam
from ..optimizers import rmsprop as _rmsprop
from ..optimizers import sgd as _sgd
from . import elementwise as E

__all__ = ["adam_step", "adam_step_", "adamw_step", "adamw_step_", "sgd_step", "sgd_step_",
           "adagrad_step", "adagrad_step_", "rmsprop_step", "rmsprop_step_", "adamax_step",
           "adamax_step_", "nadam_step", "nadam_step_", "radam_step", "radam_step_",
           "NVRTC_OPTIONS"]

NVRTC_OPTIONS = ("--fmad=false",)

_PREAMBLE = """
template <typename T> __device__ __forceinline__ T sel(bool c, T a, T b) { return c ? a : b; }
template <typename T> __device__ __forceinline__ T maxnan(T a, T b) {
    return (a >= b || a != a) ? a : b;
}
"""


class Plan(NamedTuple):
    """Everything one step needs: the update body, its inputs, and how to rebuild the state."""

    xp: Any
    body: E.Body
    arrays: dict  # name -> array in the compute dtype (p is pre.p, g the prepared-free grad)
    scalars: dict  # name -> 0-d array of the compute dtype, scalar of it, or 0-d bool array
    param_dtype: Any
    make_state: Any  # callable(new arrays dict) -> State


def _cast(xp, dtype, v):
    """The reference's ``c(v)``: a 0-d array cast to the compute dtype; a Python number stays as
    it is (the reference lets NumPy-style weak promotion round it to the dtype)."""
    return nx.to(xp, v, dtype)


def _typed(xp, dtype, v):
    """A scalar for the kernel: 0-d arrays as they are, Python numbers as a scalar of ``dtype``
    (what weak promotion does with them)."""
    if isinstance(v, (bool, int, float)):
        import numpy as np  # dtype objects of NumPy/CuPy arrays are NumPy dtypes

        return np.dtype(dtype).type(v) if not isinstance(v, bool) else v
    return v


# ----------------------------------------------------------------------------------------- plans

def _plan_adam(op, param, grad, state, *, lr, beta1, beta2, eps, eps_root, eps_placement,
               bias_correction, amsgrad, amsgrad_max_over, maximize, weight_decay, coupled,
               decay_factor):
    pre = prelude(op, param, grad, state, _adam.AdamState, op.replace("_step", "_init"))
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    if amsgrad != (state.nu_max is not None):
        msg = (f"{op}: amsgrad={amsgrad} but the state was made with amsgrad={not amsgrad}; "
               f"pass the same amsgrad to init and step")
        raise ValueError(msg)
    lr, beta1, beta2, eps, eps_root, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    wd_on = coupled and (not is_zero(weight_decay))
    decay = decay_factor(lr, weight_decay) if decay_factor is not None else 1.0
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN if the count overflows (t unused without bc)
    if bias_correction:
        bc1 = nx.bias_correction(xp, beta1, t)
        bc2 = nx.bias_correction(xp, beta2, t)
        step = lr * xp.sqrt(bc2) / bc1
    else:
        bc1 = bc2 = 1.0
        step = lr
    ams = 0 if not amsgrad else (1 if amsgrad_max_over == "raw" else 2)
    body = E.adam_body(bool(maximize), 1 if wd_on else (2 if decay_factor else 0), ams,
                       bool(bias_correction), eps_placement == "hat", not is_zero(eps_root))
    arrays = {"p": pre.p, "g": pre.g, "m": state.mu, "v": state.nu}
    if amsgrad:
        arrays["vmax"] = state.nu_max
    sc = dict(b1=c(beta1), omb1=c(1 - beta1), b2=c(beta2), omb2=c(1 - beta2), bc1=c(bc1),
              bc2=c(bc2), lr=c(lr), eps=c(eps), eps_root=c(eps_root), wd=c(weight_decay),
              decay=c(decay), step=c(step))
    return Plan(xp, body, arrays, sc, pre.param_dtype, lambda new: _adam.AdamState(
        count, new["m"], new["v"], new.get("vmax")))


def _plan_sgd(op, param, grad, state, *, lr, momentum, dampening, nesterov, weight_decay,
              maximize, lr_placement, dampen_first_step):
    pre = prelude(op, param, grad, state, _sgd.SGDState, "sgd_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    has_mom = not is_zero(momentum)
    if nesterov and (not has_mom or not is_zero(dampening)):
        msg = "sgd_step: nesterov=True needs momentum > 0 and dampening = 0"
        raise ValueError(msg)
    if has_mom and state.momentum_buffer is None:
        msg = ("sgd_step: momentum is not 0 but the state has no momentum buffer; "
               "pass the same momentum to sgd_init")
        raise ValueError(msg)
    lr, momentum, dampening, weight_decay = scalars(xp, sd, param, lr, momentum, dampening,
                                                    weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if the count overflows
    has_buf = state.momentum_buffer is not None
    first = (state.count == 0) if not dampen_first_step else xp.asarray(False)
    body = E.sgd_body(bool(maximize), not is_zero(weight_decay), has_buf,
                      lr_placement == "inside", bool(nesterov))
    arrays = {"p": pre.p, "g": pre.g}
    if has_buf:
        arrays["b"] = state.momentum_buffer
    sc = dict(lr=c(lr), wd=c(weight_decay), mom=c(momentum), omd=c(1 - dampening), first=first)
    return Plan(xp, body, arrays, sc, pre.param_dtype,
                lambda new: _sgd.SGDState(count, new.get("b")))


def _plan_adagrad(op, param, grad, state, *, lr, lr_decay, eps, eps_placement, weight_decay,
                  maximize):
    pre = prelude(op, param, grad, state, _adagrad.AdagradState, "adagrad_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, lr_decay, eps, weight_decay = scalars(xp, sd, param, lr, lr_decay, eps, weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    count, t = nx.advance(xp, state.count, sd)
    clr = lr / (1.0 + (t - 1.0) * lr_decay)
    body = E.adagrad_body(bool(maximize), not is_zero(weight_decay), eps_placement == "inside")
    sc = dict(clr=c(clr), eps=c(eps), wd=c(weight_decay), zero=c(0.0), one=c(1.0))
    return Plan(xp, body, {"p": pre.p, "g": pre.g, "s": state.sum}, sc, pre.param_dtype,
                lambda new: _adagrad.AdagradState(count, new["s"]))


def _plan_rmsprop(op, param, grad, state, *, lr, alpha, eps, eps_placement, centered, momentum,
                  nesterov, lr_placement, bias_correction, weight_decay, maximize):
    pre = prelude(op, param, grad, state, _rmsprop.RMSpropState, "rmsprop_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    if centered != (state.mu is not None):
        msg = (f"rmsprop_step: centered={centered} but the state was made with "
               f"centered={not centered}; pass the same value to rmsprop_init")
        raise ValueError(msg)
    if not is_zero(momentum) and state.momentum_buffer is None:
        msg = ("rmsprop_step: momentum is not 0 but the state has no momentum buffer; "
               "pass the same momentum to rmsprop_init")
        raise ValueError(msg)
    lr, alpha, eps, momentum, weight_decay = scalars(xp, sd, param, lr, alpha, eps, momentum,
                                                     weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    count, t = nx.advance(xp, state.count, sd)
    lr = nx.poison(xp, lr, state.count, t)  # NaN if the count overflows (t unused without bc)
    bcf = nx.bias_correction(xp, alpha, t) if bias_correction else 1.0
    has_buf = state.momentum_buffer is not None
    body = E.rmsprop_body(bool(maximize), not is_zero(weight_decay), bool(centered),
                          bool(bias_correction), eps_placement == "inside", has_buf,
                          lr_placement == "inside", bool(nesterov))
    arrays = {"p": pre.p, "g": pre.g, "v": state.nu}
    if centered:
        arrays["m"] = state.mu
    if has_buf:
        arrays["b"] = state.momentum_buffer
    sc = dict(lr=c(lr), alpha=c(alpha), oma=c(1 - alpha), eps=c(eps), mom=c(momentum),
              wd=c(weight_decay), bcf=c(bcf))
    return Plan(xp, body, arrays, sc, pre.param_dtype, lambda new: _rmsprop.RMSpropState(
        count, new["v"], new.get("m"), new.get("b")))


def _plan_adamax(op, param, grad, state, *, lr, beta1, beta2, eps, eps_placement, weight_decay,
                 maximize):
    pre = prelude(op, param, grad, state, _adamax.AdamaxState, "adamax_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, eps, weight_decay = scalars(xp, sd, param, lr, beta1, beta2, eps,
                                                  weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    count, t = nx.advance(xp, state.count, sd)
    clr = lr / nx.bias_correction(xp, beta1, t)
    body = E.adamax_body(bool(maximize), not is_zero(weight_decay), eps_placement == "max")
    sc = dict(b1=c(beta1), omb1=c(1 - beta1), b2=c(beta2), eps=c(eps), clr=c(clr),
              wd=c(weight_decay))
    return Plan(xp, body, {"p": pre.p, "g": pre.g, "m": state.mu, "u": state.nu}, sc,
                pre.param_dtype, lambda new: _adamax.AdamaxState(count, new["m"], new["u"]))


def _plan_nadam(op, param, grad, state, *, lr, beta1, beta2, eps, momentum_schedule,
                momentum_decay, weight_decay, weight_decay_mode, maximize):
    pre = prelude(op, param, grad, state, _nadam.NAdamState, "nadam_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, eps, momentum_decay, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, momentum_decay, weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    decoupled = weight_decay_mode == "decoupled"
    count, t = nx.advance(xp, state.count, sd)
    mu_product, bc2, coef_g, coef_m = _nadam.nadam_coefficients(
        xp, sd, param, state.mu_product, t, lr=lr, beta1=beta1, beta2=beta2,
        momentum_schedule=momentum_schedule, momentum_decay=momentum_decay)
    body = E.nadam_body(bool(maximize), not decoupled and not is_zero(weight_decay), decoupled)
    sc = dict(b1=c(beta1), omb1=c(1 - beta1), b2=c(beta2), omb2=c(1 - beta2), bc2=c(bc2),
              eps=c(eps), cg=c(coef_g), cm=c(coef_m), wd=c(weight_decay),
              decay=c(1 - lr * weight_decay))
    mp = xp.astype(mu_product, state.mu_product.dtype)
    return Plan(xp, body, {"p": pre.p, "g": pre.g, "m": state.mu, "v": state.nu}, sc,
                pre.param_dtype, lambda new: _nadam.NAdamState(count, new["m"], new["v"], mp))


def _plan_radam(op, param, grad, state, *, lr, beta1, beta2, eps, eps_root, eps_placement,
                threshold, threshold_inclusive, weight_decay, weight_decay_mode, maximize):
    pre = prelude(op, param, grad, state, _radam.RAdamState, "radam_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, eps, eps_root, threshold, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, threshold, weight_decay)
    c = lambda v: _typed(xp, dtype, _cast(xp, dtype, v))  # noqa: E731
    decoupled = weight_decay_mode == "decoupled"
    count, t = nx.advance(xp, state.count, sd)
    bc1 = nx.bias_correction(xp, beta1, t)
    bc2 = nx.bias_correction(xp, beta2, t)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * nx.power(xp, beta2, t) / bc2
    rectify = rho_t >= threshold if threshold_inclusive else rho_t > threshold
    ratio = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
             / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    rect = xp.sqrt(xp.where(rectify, ratio, xp.ones_like(rho_t)))
    body = E.radam_body(bool(maximize), not decoupled and not is_zero(weight_decay), decoupled,
                        eps_placement == "hat", not is_zero(eps_root))
    sc = dict(b1=c(beta1), omb1=c(1 - beta1), b2=c(beta2), omb2=c(1 - beta2), bc1=c(bc1),
              bc2=c(bc2), sbc2=c(xp.sqrt(bc2)), lr=c(lr), eps=c(eps), eps_root=c(eps_root),
              rect=c(rect), one=c(1.0), wd=c(weight_decay), decay=c(1 - lr * weight_decay),
              rectify=rectify)
    return Plan(xp, body, {"p": pre.p, "g": pre.g, "m": state.mu, "v": state.nu}, sc,
                pre.param_dtype, lambda new: _radam.RAdamState(count, new["m"], new["v"]))


# ------------------------------------------------------------------------------- the kernels

def _c_source(body: E.Body, inplace: bool) -> tuple[str, str, str]:
    """``(in_params, out_params, operation)`` for ``cupy.ElementwiseKernel``."""
    written = [a for a, _ in body.writes]
    bools = E.BOOL_SCALARS
    scal = ", ".join(("bool " if s in bools else "T ") + s for s in body.scalars)
    if inplace:
        ins = [a for a in body.arrays if a not in written]
        outs = written
        rename = {}
    else:
        ins = list(body.arrays)
        outs = [a + "_out" for a in written]
        rename = {a: a + "_out" for a in written}
    lines, declared = [], set()
    for local, expr in body.statements:
        lines.append(f"{local} = {expr};" if local in declared else f"T {local} = {expr};")
        declared.add(local)
    for a, local in body.writes:
        lines.append(f"{rename.get(a, a)} = {local};")
    in_params = ", ".join([f"T {a}" for a in ins] + ([scal] if scal else []))
    out_params = ", ".join(f"T {a}" for a in outs)
    return in_params, out_params, "\n".join(lines)


@cache
def _kernel(body: E.Body, inplace: bool):
    import cupy

    in_params, out_params, op = _c_source(body, inplace)
    return cupy.ElementwiseKernel(in_params, out_params, op,
                                  name=body.name + ("_inplace" if inplace else ""),
                                  preamble=_PREAMBLE, options=NVRTC_OPTIONS)


def _run(plan: Plan, inplace: bool, op: str, param, state):
    xp, body = plan.xp, plan.body
    written = [a for a, _ in body.writes]
    scal = [plan.scalars[s] for s in body.scalars]
    kern = _kernel(body, inplace)
    if inplace:
        if plan.arrays["p"] is not param:
            msg = (f"{op}: in place needs the parameter and the state in one dtype, got "
                   f"{param.dtype} and {plan.arrays['p'].dtype}; use the pure form")
            raise TypeError(msg)
        ins = [plan.arrays[a] for a in body.arrays if a not in written]
        outs = [plan.arrays[a] for a in written]
        kern(*ins, *scal, *outs)
        new = dict(zip(written, outs, strict=True))
        return param, plan.make_state(new)
    outs = kern(*[plan.arrays[a] for a in body.arrays], *scal)
    outs = outs if isinstance(outs, tuple) else (outs,)
    new = dict(zip(written, outs, strict=True))
    return finish(xp, new["p"], plan.param_dtype), plan.make_state(new)


def emulate_plan(plan: Plan):
    """Evaluate a plan with NumPy (the tests' CPU check of the kernel text and its scalars)."""
    new = E.emulate(plan.body, plan.arrays, plan.scalars)
    return finish(plan.xp, new["p"], plan.param_dtype), plan.make_state(new)


# ------------------------------------------------------------------------------- public steps

def adam_plan(param, grad, state, /, *, op="adam_step", lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, eps_root=0.0, eps_placement="outside", bias_correction=True,
              amsgrad=False, amsgrad_max_over="raw", maximize=False, weight_decay=0.0,
              weight_decay_mode="coupled"):
    check_hparams(op, _adam.ADAM_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  bias_correction, amsgrad, amsgrad_max_over, maximize, "float64",
                  weight_decay, weight_decay_mode))
    decoupled = weight_decay_mode == "decoupled"
    factor = _adam.decoupled_decay_factor(weight_decay) if decoupled else None
    return _plan_adam(op, param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                      eps_root=eps_root, eps_placement=eps_placement,
                      bias_correction=bias_correction, amsgrad=amsgrad,
                      amsgrad_max_over=amsgrad_max_over, maximize=maximize,
                      weight_decay=weight_decay, coupled=not decoupled, decay_factor=factor)


def adamw_plan(param, grad, state, /, *, op="adamw_step", lr=1e-3, beta1=0.9, beta2=0.999,
               eps=1e-8, eps_root=0.0, eps_placement="outside", bias_correction=True,
               amsgrad=False, amsgrad_max_over="raw", maximize=False, weight_decay=1e-2,
               decay_scaling="lr", schedule_multiplier=1.0):
    check_hparams(op, _adam.ADAMW_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  bias_correction, amsgrad, amsgrad_max_over, maximize, "float64",
                  weight_decay, decay_scaling, schedule_multiplier))
    factor = _adam.decoupled_decay_factor(weight_decay, decay_scaling, schedule_multiplier)
    return _plan_adam(op, param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                      eps_root=eps_root, eps_placement=eps_placement,
                      bias_correction=bias_correction, amsgrad=amsgrad,
                      amsgrad_max_over=amsgrad_max_over, maximize=maximize,
                      weight_decay=weight_decay, coupled=False, decay_factor=factor)


def sgd_plan(param, grad, state, /, *, op="sgd_step", lr=1e-3, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, maximize=False, lr_placement="outside",
             dampen_first_step=False):
    check_hparams(op, _sgd.SGD_HPARAMS, (lr, momentum, dampening, nesterov, weight_decay,
                                         "coupled", maximize, lr_placement, dampen_first_step))
    return _plan_sgd(op, param, grad, state, lr=lr, momentum=momentum, dampening=dampening,
                     nesterov=nesterov, weight_decay=weight_decay, maximize=maximize,
                     lr_placement=lr_placement, dampen_first_step=dampen_first_step)


def adagrad_plan(param, grad, state, /, *, op="adagrad_step", lr=1e-2, lr_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, eps_placement="outside",
                 weight_decay=0.0, maximize=False):
    check_hparams(op, _adagrad.ADAGRAD_HPARAMS, (lr, lr_decay, initial_accumulator_value, eps,
                                                 eps_placement, weight_decay, "coupled",
                                                 maximize))
    return _plan_adagrad(op, param, grad, state, lr=lr, lr_decay=lr_decay, eps=eps,
                         eps_placement=eps_placement, weight_decay=weight_decay,
                         maximize=maximize)


def rmsprop_plan(param, grad, state, /, *, op="rmsprop_step", lr=1e-2, alpha=0.99, eps=1e-8,
                 eps_placement="outside", centered=False, momentum=0.0, nesterov=False,
                 lr_placement="outside", bias_correction=False, initial_accumulator_value=0.0,
                 weight_decay=0.0, maximize=False):
    check_hparams(op, _rmsprop.RMSPROP_HPARAMS, (lr, alpha, eps, eps_placement, centered,
                  momentum, nesterov, lr_placement, bias_correction, initial_accumulator_value,
                  weight_decay, "coupled", maximize, "float64"))
    return _plan_rmsprop(op, param, grad, state, lr=lr, alpha=alpha, eps=eps,
                         eps_placement=eps_placement, centered=centered, momentum=momentum,
                         nesterov=nesterov, lr_placement=lr_placement,
                         bias_correction=bias_correction, weight_decay=weight_decay,
                         maximize=maximize)


def adamax_plan(param, grad, state, /, *, op="adamax_step", lr=2e-3, beta1=0.9, beta2=0.999,
                eps=1e-8, eps_placement="max", weight_decay=0.0, maximize=False):
    check_hparams(op, _adamax.ADAMAX_HPARAMS, (lr, beta1, beta2, eps, eps_placement,
                                               weight_decay, "coupled", maximize, "float64"))
    return _plan_adamax(op, param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                        eps_placement=eps_placement, weight_decay=weight_decay,
                        maximize=maximize)


def nadam_plan(param, grad, state, /, *, op="nadam_step", lr=2e-3, beta1=0.9, beta2=0.999,
               eps=1e-8, momentum_schedule="torch", momentum_decay=4e-3, weight_decay=0.0,
               weight_decay_mode="coupled", maximize=False):
    check_hparams(op, _nadam.NADAM_HPARAMS, (lr, beta1, beta2, eps, momentum_schedule,
                  momentum_decay, weight_decay, weight_decay_mode, maximize, "float64",
                  "float64"))
    return _plan_nadam(op, param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                       momentum_schedule=momentum_schedule, momentum_decay=momentum_decay,
                       weight_decay=weight_decay, weight_decay_mode=weight_decay_mode,
                       maximize=maximize)


def radam_plan(param, grad, state, /, *, op="radam_step", lr=1e-3, beta1=0.9, beta2=0.999,
               eps=1e-8, eps_root=0.0, eps_placement="hat", threshold=5.0,
               threshold_inclusive=False, weight_decay=0.0, weight_decay_mode="coupled",
               maximize=False):
    check_hparams(op, _radam.RADAM_HPARAMS, (lr, beta1, beta2, eps, eps_root, eps_placement,
                  threshold, threshold_inclusive, weight_decay, weight_decay_mode, maximize,
                  "float64"))
    return _plan_radam(op, param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                       eps_root=eps_root, eps_placement=eps_placement, threshold=threshold,
                       threshold_inclusive=threshold_inclusive, weight_decay=weight_decay,
                       weight_decay_mode=weight_decay_mode, maximize=maximize)


PLANS = {"adam": adam_plan, "adamw": adamw_plan, "sgd": sgd_plan, "adagrad": adagrad_plan,
         "rmsprop": rmsprop_plan, "adamax": adamax_plan, "nadam": nadam_plan,
         "radam": radam_plan}


# Knob values the kernels do not cover: (knob, value the kernels implement, optimizers).
_NOT_FUSED = (("factor_precision", "float64", ("adam", "adamw", "rmsprop", "adamax", "nadam",
                                                "radam")),
              ("weight_decay_mode", "coupled", ("sgd", "adagrad", "rmsprop", "adamax")),
              ("ema_weight_precision", "float64", ("nadam",)))


def _fusable(name: str, op: str, hparams: dict) -> dict:
    """``hparams`` without the knobs the plans do not take, or a ValueError naming the knob
    when its value needs the reference (float32 factors; Keras' decoupled decay)."""
    out = dict(hparams)
    for knob, fused, names in _NOT_FUSED:
        if name not in names or knob not in out:
            continue
        value = out.pop(knob)
        inert = knob == "weight_decay_mode" and is_zero(out.get("weight_decay", 0.0))
        if value != fused and not inert:
            msg = (f"adaptive_ref.fused.cupy_kernels.{op}: {knob}={value!r} is not fused on "
                   f"CuPy (the kernels implement {knob}={fused!r}); call "
                   f"adaptive_ref.{name}_step, which runs on CuPy arrays")
            raise ValueError(msg)
    return out


def _steps(name):
    plan_fn = PLANS[name]

    def step(param, grad, state, /, **hparams):
        hparams = _fusable(name, f"{name}_step", hparams)
        plan = plan_fn(param, grad, state, op=f"{name}_step", **hparams)
        return _run(plan, False, f"{name}_step", param, state)

    def step_(param, grad, state, /, **hparams):
        hparams = _fusable(name, f"{name}_step_", hparams)
        plan = plan_fn(param, grad, state, op=f"{name}_step_", **hparams)
        return _run(plan, True, f"{name}_step_", param, state)

    step.__name__, step_.__name__ = f"{name}_step", f"{name}_step_"
    step.__doc__ = (f"Fused CuPy :func:`adaptive_ref.{name}_step`: the reference's keywords and "
                    f"result, one kernel launch.")
    step_.__doc__ = f"In-place fused CuPy {name} step: overwrites ``param`` and the state."
    return step, step_


adam_step, adam_step_ = _steps("adam")
adamw_step, adamw_step_ = _steps("adamw")
sgd_step, sgd_step_ = _steps("sgd")
adagrad_step, adagrad_step_ = _steps("adagrad")
rmsprop_step, rmsprop_step_ = _steps("rmsprop")
adamax_step, adamax_step_ = _steps("adamax")
nadam_step, nadam_step_ = _steps("nadam")
radam_step, radam_step_ = _steps("radam")
