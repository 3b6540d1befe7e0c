"""Fused NumPy step functions: the reference's signatures and results, one pass over memory.

``<name>_step(param, grad, state, **hparams) -> (param, state)`` takes and returns what the
reference :mod:`adaptive_ref.optimizers` function does, bit for bit, and never modifies its
inputs. ``<name>_step_`` (trailing underscore) is the in-place variant: it overwrites ``param``
and the state's arrays and returns them with the new count; it is the one that reaches the
memory-bandwidth limit (fresh output arrays cost page faults and write-allocate traffic).

Scalars (bias corrections, NAdam's schedule, RAdam's rho) are computed in double precision with
the reference's formulas and operation order, then cast to the array dtype once, as the reference
does; the kernels in :mod:`._kernels` copy the per-element operations. Inputs the kernels do not
cover (see :mod:`._dispatch`) go to the reference step function, and so do
``factor_precision="param"`` (float32 factors) and decoupled weight decay for SGD, Adagrad,
RMSprop and Adamax.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks
from ..optimizers import adagrad as _adagrad
from ..optimizers import adam as _adam
from ..optimizers import adamax as _adamax
from ..optimizers import nadam as _nadam
from ..optimizers import radam as _radam
from ..optimizers import rmsprop as _rmsprop
from ..optimizers import sgd as _sgd
from . import _kernels as K
from ._dispatch import (
    EMPTY,
    advance,
    fast_dtype,
    flat,
    is_zero,
    numbers,
    outputs,
    parallel_for,
    power,
    write_back,
)

__all__ = []


def _coupled_or_none(weight_decay_mode, weight_decay) -> bool:
    """The kernels of SGD, Adagrad, RMSprop and Adamax have coupled L2 only: decoupled decay
    (Keras' form) takes the reference (the same result, one pass more over memory)."""
    return weight_decay_mode == "coupled" or is_zero(weight_decay)


def _export(f):
    __all__.append(f.__name__)
    return f


# ----------------------------------------------------------------------------------------- Adam

def _adam_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_root, eps_placement,
              bias_correction, amsgrad, amsgrad_max_over, maximize, wd_mode, wd, decay):
    if type(state) is not _adam.AdamState or amsgrad != (state.nu_max is not None):
        return None
    dt = fast_dtype(param, grad, (state.mu, state.nu, state.nu_max), state.count, inplace)
    if dt is None:
        return None
    count, t = advance(state.count)
    if bias_correction:
        bc1 = 1.0 - power(beta1, t)
        bc2 = 1.0 - power(beta2, t)
        step = lr * math.sqrt(bc2) / bc1
    else:
        bc1 = bc2 = 1.0
        step = lr
    ams = 0 if not amsgrad else (1 if amsgrad_max_over == "raw" else 2)
    n = param.size
    kern = K.adam_kernel(maximize, wd_mode, ams, bool(bias_correction),
                         eps_placement == "hat", not is_zero(eps_root), inplace, parallel_for(n))
    scal = np.array((beta1, (1 - beta1), beta2, (1 - beta2), bc1, bc2, lr,
            eps, eps_root, wd, decay, step), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        vm = state.nu_max.reshape(-1) if amsgrad else e
        kern(n, param.reshape(-1), grad.reshape(-1) if grad.flags.c_contiguous else flat(grad),
             state.mu.reshape(-1), state.nu.reshape(-1), vm, e, e, e, e, scal)
        return param, _adam.AdamState(count, state.mu, state.nu, state.nu_max)
    outs, fo = outputs(param.shape, dt, 4 if amsgrad else 3)
    kern(n, flat(param), flat(grad), flat(state.mu), flat(state.nu),
         flat(state.nu_max) if amsgrad else e, fo[0], fo[1], fo[2], fo[3] if amsgrad else e,
         scal)
    return outs[0], _adam.AdamState(count, outs[1], outs[2], outs[3] if amsgrad else None)


def _adam_common(op, inplace, param, grad, state, lr, beta1, beta2, eps, eps_root,
                 eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                 weight_decay, weight_decay_mode, factor_precision="float64"):
    _checks.check_hparams(op, _adam.ADAM_HPARAMS, (
        lr, beta1, beta2, eps, eps_root, eps_placement, bias_correction, amsgrad,
        amsgrad_max_over, maximize, factor_precision, weight_decay, weight_decay_mode))
    out = None
    if factor_precision == "float64" and numbers(lr, beta1, beta2, eps, eps_root, weight_decay):
        if is_zero(weight_decay):
            wd_mode, decay = 0, 1.0
        elif weight_decay_mode == "decoupled":
            wd_mode, decay = 2, 1 - lr * weight_decay
        else:
            wd_mode, decay = 1, 1.0
        out = _adam_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_root,
                        eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                        wd_mode, weight_decay, decay)
    if out is None:
        out = _adam.adam_step(
            param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root,
            eps_placement=eps_placement, bias_correction=bias_correction, amsgrad=amsgrad,
            amsgrad_max_over=amsgrad_max_over, maximize=maximize, weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode, factor_precision=factor_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def adam_step(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
              amsgrad_max_over="raw", maximize=False, factor_precision="float64",
              weight_decay=0.0, weight_decay_mode="coupled"):
    """Fused :func:`adaptive_ref.adam_step` (bit-identical; inputs not modified)."""
    return _adam_common("adam_step", False, param, grad, state, lr, beta1, beta2, eps, eps_root,
                        eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                        weight_decay, weight_decay_mode, factor_precision)


@_export
def adam_step_(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
               amsgrad_max_over="raw", maximize=False, factor_precision="float64",
               weight_decay=0.0, weight_decay_mode="coupled"):
    """In-place fused Adam: overwrites ``param`` and ``state``'s arrays; returns them."""
    return _adam_common("adam_step_", True, param, grad, state, lr, beta1, beta2, eps, eps_root,
                        eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                        weight_decay, weight_decay_mode, factor_precision)


def _adamw_common(op, inplace, param, grad, state, lr, beta1, beta2, eps, eps_root,
                  eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                  weight_decay, decay_scaling, schedule_multiplier, factor_precision="float64"):
    _checks.check_hparams(op, _adam.ADAMW_HPARAMS, (
        lr, beta1, beta2, eps, eps_root, eps_placement, bias_correction, amsgrad,
        amsgrad_max_over, maximize, factor_precision, weight_decay, decay_scaling,
        schedule_multiplier))
    out = None
    if factor_precision == "float64" and numbers(lr, beta1, beta2, eps, eps_root, weight_decay,
                                                 schedule_multiplier):
        if is_zero(weight_decay):
            wd_mode, decay = 0, 1.0
        elif decay_scaling == "lr":
            wd_mode, decay = 2, 1 - lr * weight_decay
        else:
            wd_mode, decay = 2, 1 - schedule_multiplier * weight_decay
        out = _adam_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_root,
                        eps_placement, bias_correction, amsgrad, amsgrad_max_over, maximize,
                        wd_mode, weight_decay, decay)
    if out is None:
        out = _adam.adamw_step(
            param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root,
            eps_placement=eps_placement, bias_correction=bias_correction, amsgrad=amsgrad,
            amsgrad_max_over=amsgrad_max_over, maximize=maximize, weight_decay=weight_decay,
            decay_scaling=decay_scaling, schedule_multiplier=schedule_multiplier,
            factor_precision=factor_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def adamw_step(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
               amsgrad_max_over="raw", maximize=False, factor_precision="float64",
               weight_decay=1e-2, decay_scaling="lr", schedule_multiplier=1.0):
    """Fused :func:`adaptive_ref.adamw_step` (bit-identical; inputs not modified)."""
    return _adamw_common("adamw_step", False, param, grad, state, lr, beta1, beta2, eps,
                         eps_root, eps_placement, bias_correction, amsgrad, amsgrad_max_over,
                         maximize, weight_decay, decay_scaling, schedule_multiplier,
                         factor_precision)


@_export
def adamw_step_(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
                amsgrad_max_over="raw", maximize=False, factor_precision="float64",
                weight_decay=1e-2, decay_scaling="lr", schedule_multiplier=1.0):
    """In-place fused AdamW."""
    return _adamw_common("adamw_step_", True, param, grad, state, lr, beta1, beta2, eps,
                         eps_root, eps_placement, bias_correction, amsgrad, amsgrad_max_over,
                         maximize, weight_decay, decay_scaling, schedule_multiplier,
                         factor_precision)


# ------------------------------------------------------------------------------------------ SGD

def _sgd_run(param, grad, state, inplace, lr, momentum, dampening, nesterov, weight_decay,
             maximize, lr_placement, dampen_first_step):
    if type(state) is not _sgd.SGDState:
        return None
    buf = state.momentum_buffer
    has_mom = not is_zero(momentum)
    if nesterov and (not has_mom or not is_zero(dampening)):
        return None  # the reference raises
    if has_mom and buf is None:
        return None
    dt = fast_dtype(param, grad, (buf,), state.count, inplace)
    if dt is None:
        return None
    count = state.count + 1
    has_buf = buf is not None
    first = has_buf and not dampen_first_step and bool(state.count == 0)
    n = param.size
    kern = K.sgd_kernel(maximize, not is_zero(weight_decay), has_buf, lr_placement == "inside",
                        bool(nesterov), first, inplace, parallel_for(n))
    scal = np.array((lr, weight_decay, momentum, (1 - dampening)), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        kern(n, param.reshape(-1), flat(grad), buf.reshape(-1) if has_buf else e, e, e, scal)
        return param, _sgd.SGDState(count, buf)
    outs, fo = outputs(param.shape, dt, 2 if has_buf else 1)
    kern(n, flat(param), flat(grad), flat(buf) if has_buf else e, fo[0],
         fo[1] if has_buf else e, scal)
    return outs[0], _sgd.SGDState(count, outs[1] if has_buf else None)


def _sgd_common(op, inplace, param, grad, state, lr, momentum, dampening, nesterov,
                weight_decay, maximize, lr_placement, dampen_first_step,
                weight_decay_mode="coupled"):
    _checks.check_hparams(op, _sgd.SGD_HPARAMS, (lr, momentum, dampening, nesterov,
                                                 weight_decay, weight_decay_mode, maximize,
                                                 lr_placement, dampen_first_step))
    out = None
    if _coupled_or_none(weight_decay_mode, weight_decay) and numbers(lr, momentum, dampening,
                                                                     weight_decay):
        out = _sgd_run(param, grad, state, inplace, lr, momentum, dampening, nesterov,
                       weight_decay, maximize, lr_placement, dampen_first_step)
    if out is None:
        out = _sgd.sgd_step(param, grad, state, lr=lr, momentum=momentum, dampening=dampening,
                            nesterov=nesterov, weight_decay=weight_decay,
                            weight_decay_mode=weight_decay_mode, maximize=maximize,
                            lr_placement=lr_placement, dampen_first_step=dampen_first_step)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def sgd_step(param, grad, state, /, *, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, maximize=False, lr_placement="outside", dampen_first_step=False,
             weight_decay_mode="coupled"):
    """Fused :func:`adaptive_ref.sgd_step` (bit-identical; inputs not modified)."""
    return _sgd_common("sgd_step", False, param, grad, state, lr, momentum, dampening, nesterov,
                       weight_decay, maximize, lr_placement, dampen_first_step,
                       weight_decay_mode)


@_export
def sgd_step_(param, grad, state, /, *, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
              weight_decay=0.0, maximize=False, lr_placement="outside", dampen_first_step=False,
             weight_decay_mode="coupled"):
    """In-place fused SGD."""
    return _sgd_common("sgd_step_", True, param, grad, state, lr, momentum, dampening, nesterov,
                       weight_decay, maximize, lr_placement, dampen_first_step,
                       weight_decay_mode)


# -------------------------------------------------------------------------------------- Adagrad

def _adagrad_run(param, grad, state, inplace, lr, lr_decay, eps, eps_placement, weight_decay,
                 maximize):
    if type(state) is not _adagrad.AdagradState:
        return None
    dt = fast_dtype(param, grad, (state.sum,), state.count, inplace)
    if dt is None:
        return None
    count, t = advance(state.count)
    clr = lr / (1.0 + (t - 1.0) * lr_decay)
    n = param.size
    kern = K.adagrad_kernel(maximize, not is_zero(weight_decay), eps_placement == "inside",
                            inplace, parallel_for(n))
    scal = np.array((clr, eps, weight_decay, 0), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        kern(n, param.reshape(-1), flat(grad), state.sum.reshape(-1), e, e, scal)
        return param, _adagrad.AdagradState(count, state.sum)
    outs, fo = outputs(param.shape, dt, 2)
    kern(n, flat(param), flat(grad), flat(state.sum), fo[0], fo[1], scal)
    return outs[0], _adagrad.AdagradState(count, outs[1])


def _adagrad_common(op, inplace, param, grad, state, lr, lr_decay, initial_accumulator_value,
                    eps, eps_placement, weight_decay, maximize, weight_decay_mode="coupled"):
    _checks.check_hparams(op, _adagrad.ADAGRAD_HPARAMS, (
        lr, lr_decay, initial_accumulator_value, eps, eps_placement, weight_decay,
        weight_decay_mode, maximize))
    out = None
    if _coupled_or_none(weight_decay_mode, weight_decay) and numbers(lr, lr_decay, eps,
                                                                     weight_decay):
        out = _adagrad_run(param, grad, state, inplace, lr, lr_decay, eps, eps_placement,
                           weight_decay, maximize)
    if out is None:
        out = _adagrad.adagrad_step(
            param, grad, state, lr=lr, lr_decay=lr_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps,
            eps_placement=eps_placement, weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode, maximize=maximize)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def adagrad_step(param, grad, state, /, *, lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, eps_placement="outside", weight_decay=0.0, maximize=False,
                 weight_decay_mode="coupled"):
    """Fused :func:`adaptive_ref.adagrad_step` (bit-identical; inputs not modified)."""
    return _adagrad_common("adagrad_step", False, param, grad, state, lr, lr_decay,
                           initial_accumulator_value, eps, eps_placement, weight_decay, maximize,
                           weight_decay_mode)


@_export
def adagrad_step_(param, grad, state, /, *, lr=1e-2, lr_decay=0.0,
                  initial_accumulator_value=0.0, eps=1e-10, eps_placement="outside",
                  weight_decay=0.0, maximize=False, weight_decay_mode="coupled"):
    """In-place fused Adagrad."""
    return _adagrad_common("adagrad_step_", True, param, grad, state, lr, lr_decay,
                           initial_accumulator_value, eps, eps_placement, weight_decay, maximize,
                           weight_decay_mode)


# -------------------------------------------------------------------------------------- RMSprop

def _rmsprop_run(param, grad, state, inplace, lr, alpha, eps, eps_placement, centered, momentum,
                 nesterov, lr_placement, bias_correction, weight_decay, maximize):
    if type(state) is not _rmsprop.RMSpropState or centered != (state.mu is not None):
        return None
    buf = state.momentum_buffer
    if not is_zero(momentum) and buf is None:
        return None
    dt = fast_dtype(param, grad, (state.nu, state.mu, buf), state.count, inplace)
    if dt is None:
        return None
    count, t = advance(state.count)
    bcf = 1.0 - power(alpha, t) if bias_correction else 1.0
    has_buf = buf is not None
    n = param.size
    kern = K.rmsprop_kernel(maximize, not is_zero(weight_decay), bool(centered),
                            bool(bias_correction), eps_placement == "inside", has_buf,
                            lr_placement == "inside", bool(nesterov), inplace, parallel_for(n))
    scal = np.array((lr, alpha, (1 - alpha), eps, momentum, weight_decay, bcf), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        kern(n, param.reshape(-1), flat(grad), state.nu.reshape(-1),
             state.mu.reshape(-1) if centered else e, buf.reshape(-1) if has_buf else e,
             e, e, e, e, scal)
        return param, _rmsprop.RMSpropState(count, state.nu, state.mu, buf)
    k = 2 + bool(centered) + has_buf
    outs, fo = outputs(param.shape, dt, k)
    mo = fo[2] if centered else e
    bo = fo[-1] if has_buf else e
    kern(n, flat(param), flat(grad), flat(state.nu), flat(state.mu) if centered else e,
         flat(buf) if has_buf else e, fo[0], fo[1], mo, bo, scal)
    return outs[0], _rmsprop.RMSpropState(count, outs[1], outs[2] if centered else None,
                                          outs[-1] if has_buf else None)


def _rmsprop_common(op, inplace, param, grad, state, lr, alpha, eps, eps_placement, centered,
                    momentum, nesterov, lr_placement, bias_correction,
                    initial_accumulator_value, weight_decay, maximize,
                    weight_decay_mode="coupled", factor_precision="float64"):
    _checks.check_hparams(op, _rmsprop.RMSPROP_HPARAMS, (
        lr, alpha, eps, eps_placement, centered, momentum, nesterov, lr_placement,
        bias_correction, initial_accumulator_value, weight_decay, weight_decay_mode, maximize,
        factor_precision))
    out = None
    if factor_precision == "float64" and _coupled_or_none(weight_decay_mode, weight_decay) \
            and numbers(lr, alpha, eps, momentum, weight_decay):
        out = _rmsprop_run(param, grad, state, inplace, lr, alpha, eps, eps_placement, centered,
                           momentum, nesterov, lr_placement, bias_correction, weight_decay,
                           maximize)
    if out is None:
        out = _rmsprop.rmsprop_step(
            param, grad, state, lr=lr, alpha=alpha, eps=eps, eps_placement=eps_placement,
            centered=centered, momentum=momentum, nesterov=nesterov, lr_placement=lr_placement,
            bias_correction=bias_correction, initial_accumulator_value=initial_accumulator_value,
            weight_decay=weight_decay, weight_decay_mode=weight_decay_mode, maximize=maximize,
            factor_precision=factor_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def rmsprop_step(param, grad, state, /, *, lr=1e-2, alpha=0.99, eps=1e-8,
                 eps_placement="outside", centered=False, momentum=0.0, nesterov=False,
                 lr_placement="outside", bias_correction=False, initial_accumulator_value=0.0,
                 weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
                 factor_precision="float64"):
    """Fused :func:`adaptive_ref.rmsprop_step` (bit-identical; inputs not modified)."""
    return _rmsprop_common("rmsprop_step", False, param, grad, state, lr, alpha, eps,
                           eps_placement, centered, momentum, nesterov, lr_placement,
                           bias_correction, initial_accumulator_value, weight_decay, maximize,
                           weight_decay_mode, factor_precision)


@_export
def rmsprop_step_(param, grad, state, /, *, lr=1e-2, alpha=0.99, eps=1e-8,
                  eps_placement="outside", centered=False, momentum=0.0, nesterov=False,
                  lr_placement="outside", bias_correction=False, initial_accumulator_value=0.0,
                  weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
                  factor_precision="float64"):
    """In-place fused RMSprop."""
    return _rmsprop_common("rmsprop_step_", True, param, grad, state, lr, alpha, eps,
                           eps_placement, centered, momentum, nesterov, lr_placement,
                           bias_correction, initial_accumulator_value, weight_decay, maximize,
                           weight_decay_mode, factor_precision)


# --------------------------------------------------------------------------------------- Adamax

def _adamax_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_placement, weight_decay,
                maximize):
    if type(state) is not _adamax.AdamaxState:
        return None
    dt = fast_dtype(param, grad, (state.mu, state.nu), state.count, inplace)
    if dt is None:
        return None
    count, t = advance(state.count)
    clr = lr / (1.0 - power(beta1, t))
    n = param.size
    kern = K.adamax_kernel(maximize, not is_zero(weight_decay), eps_placement == "max", inplace,
                           parallel_for(n))
    scal = np.array((beta1, (1 - beta1), beta2, eps, clr, weight_decay), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        kern(n, param.reshape(-1), flat(grad), state.mu.reshape(-1), state.nu.reshape(-1),
             e, e, e, scal)
        return param, _adamax.AdamaxState(count, state.mu, state.nu)
    outs, fo = outputs(param.shape, dt, 3)
    kern(n, flat(param), flat(grad), flat(state.mu), flat(state.nu), *fo, scal)
    return outs[0], _adamax.AdamaxState(count, outs[1], outs[2])


def _adamax_common(op, inplace, param, grad, state, lr, beta1, beta2, eps, eps_placement,
                   weight_decay, maximize, weight_decay_mode="coupled",
                   factor_precision="float64"):
    _checks.check_hparams(op, _adamax.ADAMAX_HPARAMS, (lr, beta1, beta2, eps, eps_placement,
                                                       weight_decay, weight_decay_mode, maximize,
                                                       factor_precision))
    out = None
    if factor_precision == "float64" and _coupled_or_none(weight_decay_mode, weight_decay) \
            and numbers(lr, beta1, beta2, eps, weight_decay):
        out = _adamax_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_placement,
                          weight_decay, maximize)
    if out is None:
        out = _adamax.adamax_step(param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                  eps_placement=eps_placement, weight_decay=weight_decay,
                                  weight_decay_mode=weight_decay_mode, maximize=maximize,
                                  factor_precision=factor_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def adamax_step(param, grad, state, /, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                eps_placement="max", weight_decay=0.0, weight_decay_mode="coupled",
                maximize=False, factor_precision="float64"):
    """Fused :func:`adaptive_ref.adamax_step` (bit-identical; inputs not modified)."""
    return _adamax_common("adamax_step", False, param, grad, state, lr, beta1, beta2, eps,
                          eps_placement, weight_decay, maximize, weight_decay_mode,
                          factor_precision)


@_export
def adamax_step_(param, grad, state, /, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 eps_placement="max", weight_decay=0.0, weight_decay_mode="coupled",
                 maximize=False, factor_precision="float64"):
    """In-place fused Adamax."""
    return _adamax_common("adamax_step_", True, param, grad, state, lr, beta1, beta2, eps,
                          eps_placement, weight_decay, maximize, weight_decay_mode,
                          factor_precision)


# ---------------------------------------------------------------------------------------- NAdam

def _nadam_run(param, grad, state, inplace, lr, beta1, beta2, eps, momentum_schedule,
               momentum_decay, weight_decay, weight_decay_mode, maximize):
    if type(state) is not _nadam.NAdamState:
        return None
    mp = state.mu_product
    if type(mp) not in (np.ndarray, np.float64) or np.ndim(mp) != 0 \
            or mp.dtype != np.float64:
        return None
    dt = fast_dtype(param, grad, (state.mu, state.nu), state.count, inplace)
    if dt is None:
        return None
    decoupled = weight_decay_mode == "decoupled"
    count, t = advance(state.count)
    if momentum_schedule == "torch":
        mu_t = beta1 * (1.0 - 0.5 * power(0.96, t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * power(0.96, (t + 1.0) * momentum_decay))
    else:
        mu_t = mu_next = float(beta1)
    mu_product = float(mp) * mu_t
    bc2 = 1.0 - power(beta2, t)
    coef_g = lr * (1.0 - mu_t) / (1.0 - mu_product)
    coef_m = lr * mu_next / (1.0 - mu_product * mu_next)
    n = param.size
    kern = K.nadam_kernel(maximize, not decoupled and not is_zero(weight_decay), decoupled,
                          inplace, parallel_for(n))
    scal = np.array((beta1, (1 - beta1), beta2, (1 - beta2), bc2, eps, coef_g,
            coef_m, weight_decay, (1 - lr * weight_decay)), dtype=dt)
    e = EMPTY[dt]
    new_mp = np.float64(mu_product)
    if inplace:
        kern(n, param.reshape(-1), flat(grad), state.mu.reshape(-1), state.nu.reshape(-1),
             e, e, e, scal)
        return param, _nadam.NAdamState(count, state.mu, state.nu, new_mp)
    outs, fo = outputs(param.shape, dt, 3)
    kern(n, flat(param), flat(grad), flat(state.mu), flat(state.nu), *fo, scal)
    return outs[0], _nadam.NAdamState(count, outs[1], outs[2], new_mp)


def _nadam_common(op, inplace, param, grad, state, lr, beta1, beta2, eps, momentum_schedule,
                  momentum_decay, weight_decay, weight_decay_mode, maximize,
                  factor_precision="float64", ema_weight_precision="float64"):
    _checks.check_hparams(op, _nadam.NADAM_HPARAMS, (
        lr, beta1, beta2, eps, momentum_schedule, momentum_decay, weight_decay,
        weight_decay_mode, maximize, factor_precision, ema_weight_precision))
    out = None
    if factor_precision == ema_weight_precision == "float64" and \
            numbers(lr, beta1, beta2, eps, momentum_decay, weight_decay):
        out = _nadam_run(param, grad, state, inplace, lr, beta1, beta2, eps, momentum_schedule,
                         momentum_decay, weight_decay, weight_decay_mode, maximize)
    if out is None:
        out = _nadam.nadam_step(
            param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
            momentum_schedule=momentum_schedule, momentum_decay=momentum_decay,
            weight_decay=weight_decay, weight_decay_mode=weight_decay_mode, maximize=maximize,
            factor_precision=factor_precision, ema_weight_precision=ema_weight_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def nadam_step(param, grad, state, /, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               momentum_schedule="torch", momentum_decay=4e-3, weight_decay=0.0,
               weight_decay_mode="coupled", maximize=False, factor_precision="float64",
               ema_weight_precision="float64"):
    """Fused :func:`adaptive_ref.nadam_step` (bit-identical; inputs not modified)."""
    return _nadam_common("nadam_step", False, param, grad, state, lr, beta1, beta2, eps,
                         momentum_schedule, momentum_decay, weight_decay, weight_decay_mode,
                         maximize, factor_precision, ema_weight_precision)


@_export
def nadam_step_(param, grad, state, /, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                momentum_schedule="torch", momentum_decay=4e-3, weight_decay=0.0,
                weight_decay_mode="coupled", maximize=False, factor_precision="float64",
                ema_weight_precision="float64"):
    """In-place fused NAdam."""
    return _nadam_common("nadam_step_", True, param, grad, state, lr, beta1, beta2, eps,
                         momentum_schedule, momentum_decay, weight_decay, weight_decay_mode,
                         maximize, factor_precision, ema_weight_precision)


# ---------------------------------------------------------------------------------------- RAdam

def _radam_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_root, eps_placement,
               threshold, threshold_inclusive, weight_decay, weight_decay_mode, maximize):
    if type(state) is not _radam.RAdamState:
        return None
    dt = fast_dtype(param, grad, (state.mu, state.nu), state.count, inplace)
    if dt is None:
        return None
    decoupled = weight_decay_mode == "decoupled"
    count, t = advance(state.count)
    bc1 = 1.0 - power(beta1, t)
    bc2 = 1.0 - power(beta2, t)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * power(beta2, t) / bc2
    rectify = rho_t >= threshold if threshold_inclusive else rho_t > threshold
    if rectify:
        ratio = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                 / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        rect = math.sqrt(ratio) if ratio >= 0 else math.nan
    else:
        rect = 1.0
    n = param.size
    kern = K.radam_kernel(maximize, not decoupled and not is_zero(weight_decay), decoupled,
                          eps_placement == "hat", not is_zero(eps_root), bool(rectify), inplace,
                          parallel_for(n))
    scal = np.array((beta1, (1 - beta1), beta2, (1 - beta2), bc1, bc2,
            (math.sqrt(bc2) if bc2 >= 0 else math.nan), lr, eps, eps_root,
            rect, 1.0, weight_decay, (1 - lr * weight_decay)), dtype=dt)
    e = EMPTY[dt]
    if inplace:
        kern(n, param.reshape(-1), flat(grad), state.mu.reshape(-1), state.nu.reshape(-1),
             e, e, e, scal)
        return param, _radam.RAdamState(count, state.mu, state.nu)
    outs, fo = outputs(param.shape, dt, 3)
    kern(n, flat(param), flat(grad), flat(state.mu), flat(state.nu), *fo, scal)
    return outs[0], _radam.RAdamState(count, outs[1], outs[2])


def _radam_common(op, inplace, param, grad, state, lr, beta1, beta2, eps, eps_root,
                  eps_placement, threshold, threshold_inclusive, weight_decay,
                  weight_decay_mode, maximize, factor_precision="float64"):
    _checks.check_hparams(op, _radam.RADAM_HPARAMS, (
        lr, beta1, beta2, eps, eps_root, eps_placement, threshold, threshold_inclusive,
        weight_decay, weight_decay_mode, maximize, factor_precision))
    out = None
    if factor_precision == "float64" and numbers(lr, beta1, beta2, eps, eps_root, threshold,
                                                 weight_decay):
        out = _radam_run(param, grad, state, inplace, lr, beta1, beta2, eps, eps_root,
                         eps_placement, threshold, threshold_inclusive, weight_decay,
                         weight_decay_mode, maximize)
    if out is None:
        out = _radam.radam_step(
            param, grad, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root,
            eps_placement=eps_placement, threshold=threshold,
            threshold_inclusive=threshold_inclusive, weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode, maximize=maximize,
            factor_precision=factor_precision)
        if inplace:
            out = write_back(param, state, *out, op)
    return out


@_export
def radam_step(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_root=0.0, eps_placement="hat", threshold=5.0, threshold_inclusive=False,
               weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
               factor_precision="float64"):
    """Fused :func:`adaptive_ref.radam_step` (bit-identical; inputs not modified)."""
    return _radam_common("radam_step", False, param, grad, state, lr, beta1, beta2, eps,
                         eps_root, eps_placement, threshold, threshold_inclusive, weight_decay,
                         weight_decay_mode, maximize, factor_precision)


@_export
def radam_step_(param, grad, state, /, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                eps_root=0.0, eps_placement="hat", threshold=5.0, threshold_inclusive=False,
                weight_decay=0.0, weight_decay_mode="coupled", maximize=False,
                factor_precision="float64"):
    """In-place fused RAdam."""
    return _radam_common("radam_step_", True, param, grad, state, lr, beta1, beta2, eps,
                         eps_root, eps_placement, threshold, threshold_inclusive, weight_decay,
                         weight_decay_mode, maximize, factor_precision)
