"""The update formulas written out again, element by element, in mpmath arithmetic.

This is the independent transcription the exact goldens are computed with
(:mod:`adaptive_ref.conformance.exact`): it does not call the reference. ``_init_fields`` gives
an element's initial state, ``_step`` applies one exact step to it, ``_nadam_shared`` computes
NAdam's per-parameter scalars and ``_grad_mp`` the closed-loop objectives' exact gradients.
Hyperparameters enter as their exact binary float64 values; the working precision is the
caller's (``mpmath.workdps``).

``factor_precision="param"`` in a float32 case (optax, Keras) is defined exactly as follows: each
beta that enters a scalar factor (and NAdam's 0.96) is rounded to float32, each power
``beta**t`` is rounded to float32 (the correctly rounded float32 value of the exact power), and
everything after that (``1 - beta**t``, NAdam's mu_t and their product, the step) is exact.
One exception: RAdam's ``rho_t = rho_inf - 2t beta2^t/(1 - beta2^t)`` cancels (rho_inf is ~2000,
rho_t ~5 at the switch), so the float32 rounding of its operands is amplified ~400 times into
r_t; it is therefore the float32 evaluation of that formula in this order, every operation
correctly rounded: ``rho_inf = fl(2/(1 - beta2) - 1)`` (from the unrounded beta2, a Python
constant in optax and the reference), ``q = fl(fl(2t fl(beta2^t)) / fl(1 - fl(beta2^t)))``,
``rho_t = fl(rho_inf - q)``; the rectifier r_t is then exact from these values. (With rho_t
exact from the rounded inputs, optax's float32 RAdam is 2.1e3 ULP from the golden at step 10.)
The moment EMAs keep the exact betas, and their weights ``1 - beta``
are exact too, except under ``ema_weight_precision="param"`` (Keras Nadam), where the weight is
``1 - fl32(beta)`` (exact). In float64 cases, and with
``"float64"``, every factor is exact. :func:`case_hparams` adds the case dtype to the settings
(key ``"_case_dtype"``), which the functions below read.
"""

from __future__ import annotations

import functools
import json
from fractions import Fraction

import mpmath
import numpy as np

__all__ = ["case_hparams", "lion_well_posed", "lion_sign_bounds", "lion_sign_margin",
           "IllPosedSign"]  # the rest: private helpers of adaptive_ref.conformance.exact


def _m(x) -> mpmath.mpf:
    return mpmath.mpf(float(x))


def _f32(x) -> mpmath.mpf:
    """``x`` rounded to the nearest 24-bit significand (float32; ties to even), exactly."""
    with mpmath.workprec(24):
        return +mpmath.mpf(x)


def _param_factors(hp: dict) -> bool:
    """Whether the scalar factors are float32 values (factor_precision 'param', float32 case)."""
    return hp.get("factor_precision", "float64") == "param" and \
        hp.get("_case_dtype", "float64") == "float32"


def _fbase(b, hp: dict) -> mpmath.mpf:
    """A base of the scalar factors (a beta, NAdam's 0.96) as the factors see it."""
    return _f32(b) if _param_factors(hp) else mpmath.mpf(b)


def _ema_weight(b, hp: dict) -> mpmath.mpf:
    """The weight ``1 - beta`` of a moment EMA: exact, or ``1 - fl32(beta)`` (exact) with
    ``ema_weight_precision="param"`` in a float32 case (Keras Nadam); beta itself stays exact."""
    f32 = hp.get("ema_weight_precision", "float64") == "param" and \
        hp.get("_case_dtype", "float64") == "float32"
    return 1 - (_f32(b) if f32 else b)


def _pow(b, x, hp: dict) -> mpmath.mpf:
    """``b**x`` as the scalar factors see it: exact, or float32-rounded (see the module doc)."""
    p = _fbase(b, hp) ** x
    return _f32(p) if _param_factors(hp) else p


class _Elem:
    """The exact state of one element of one parameter (an initial field given as
    :data:`_PARAM` starts at the element's parameter value)."""

    def __init__(self, p, init_fields):
        self.p = p
        self.s = {k: (p if v is _PARAM else v) for k, v in init_fields.items()}


_PARAM = object()  # an initial state field equal to the parameter (schedule-free's z and x)


def _init_fields(opt: str, hp: dict) -> dict:
    z = mpmath.mpf(0)
    if opt in TENSOR_FIELD_FNS:
        return TENSOR_FIELD_FNS[opt](hp)
    if opt in TENSOR_FIELDS:
        return {f: z for f in TENSOR_FIELDS[opt]}
    if opt in TREE_STEPS:
        return _tree_init_fields(opt, hp)
    if opt == "sgd":
        return {"momentum_buffer": z} if hp["momentum"] != 0 else {}
    if opt == "adagrad":
        return {"sum": _m(hp["initial_accumulator_value"])}
    if opt == "rmsprop":
        out = {"nu": _m(hp["initial_accumulator_value"])}
        if hp["centered"]:
            out["mu"] = z
        if hp["momentum"] != 0:
            out["momentum_buffer"] = z
        return out
    if opt in ("adam", "amsgrad", "adamw"):
        out = {"mu": z, "nu": z}
        if hp.get("amsgrad"):
            out["nu_max"] = z
        return out
    if opt in ("adamax", "radam"):
        return {"mu": z, "nu": z}
    if opt == "nadam":
        return {"mu": z, "nu": z}
    if opt in _OWN_STEP:
        return {"mu": z, "nu": z}
    if opt == "adan":
        return {"m": z, "v": z, "n": z, "prev_grad": z}
    if opt == "adadelta":
        return {"nu": z, "acc_delta": z}
    if opt == "lion":
        return {"mu": z}
    if opt in SCHEDULE_FREE:
        out = {"z": _PARAM, "weight_sum": z, "lr_max": z}
        if opt == "schedule_free_adamw":
            out["nu"] = z
        out["x"] = _PARAM  # the evaluation point (an observable, recorded with the state)
        return out
    raise KeyError(opt)


def _sqrt(x):
    return mpmath.sqrt(x)


def _step(opt: str, e: _Elem, g, t: int, hp: dict, lr, shared: dict) -> None:
    """One exact step of element ``e`` (``shared`` holds per-parameter scalars: NAdam's product)."""
    if opt == "adan":  # its own decay forms (proximal): the whole step below
        _adan_step(e, g, t, hp, _m(lr))
        return
    lr = _m(lr)
    if opt in _OWN_STEP:  # optimizers whose decay does not follow the common form below
        _OWN_STEP[opt](e, _signed_coupled(e, g, hp), t, hp, lr)
        return
    S = e.s
    if opt in SCHEDULE_FREE:
        _schedule_free_step(opt, e, g, t, hp, lr, shared)
        return
    if hp.get("maximize"):
        g = -g
    wd = _m(hp.get("weight_decay", 0.0))
    mode = hp.get("weight_decay_mode", "coupled")
    if opt not in DECOUPLED_ONLY and mode == "coupled":
        g = g + wd * e.p
    elif opt == "adamw":
        s = lr if hp["decay_scaling"] == "lr" else _m(hp["schedule_multiplier"])
        e.p = e.p * (1 - s * wd)
    else:  # decoupled
        e.p = e.p * (1 - lr * wd)
    T = mpmath.mpf(t)
    if opt == "sgd":
        mom = _m(hp["momentum"])
        if mom == 0:
            e.p = e.p - lr * g
            return
        inside = hp["lr_placement"] == "inside"
        x = lr * g if inside else g
        if t == 1 and not hp["dampen_first_step"]:
            buf = x
        else:
            buf = mom * S["momentum_buffer"] + (1 - _m(hp["dampening"])) * x
        S["momentum_buffer"] = buf
        d = x + mom * buf if hp["nesterov"] else buf
        e.p = e.p - d if inside else e.p - lr * d
    elif opt == "adagrad":
        S["sum"] = S["sum"] + g * g
        clr = lr / (1 + (T - 1) * _m(hp["lr_decay"]))
        eps = _m(hp["eps"])
        if hp["eps_placement"] == "outside":
            e.p = e.p - clr * g / (_sqrt(S["sum"]) + eps)
        else:
            u = g / _sqrt(S["sum"] + eps) if S["sum"] > 0 else mpmath.mpf(0)
            e.p = e.p - clr * u
    elif opt == "rmsprop":
        a = _m(hp["alpha"])
        S["nu"] = a * S["nu"] + (1 - a) * g * g
        bc = 1 - _pow(a, T, hp) if hp["bias_correction"] else mpmath.mpf(1)
        w = S["nu"] / bc
        if hp["centered"]:
            S["mu"] = a * S["mu"] + (1 - a) * g
            w = w - (S["mu"] / bc) ** 2
        eps = _m(hp["eps"])
        den = _sqrt(w) + eps if hp["eps_placement"] == "outside" else _sqrt(w + eps)
        u = g / den
        mom = _m(hp["momentum"])
        if mom == 0:
            e.p = e.p - lr * u
            return
        inside = hp["lr_placement"] == "inside"
        x = lr * u if inside else u
        S["momentum_buffer"] = mom * S["momentum_buffer"] + x
        d = x + mom * S["momentum_buffer"] if hp["nesterov"] else S["momentum_buffer"]
        e.p = e.p - d if inside else e.p - lr * d
    elif opt in ("adam", "amsgrad", "adamw"):
        b1, b2 = _m(hp["beta1"]), _m(hp["beta2"])
        S["mu"] = b1 * S["mu"] + (1 - b1) * g
        S["nu"] = b2 * S["nu"] + (1 - b2) * g * g
        bcorr = hp["bias_correction"]
        bc1 = 1 - _pow(b1, T, hp) if bcorr else mpmath.mpf(1)
        bc2 = 1 - _pow(b2, T, hp) if bcorr else mpmath.mpf(1)
        if hp.get("amsgrad"):
            if hp["amsgrad_max_over"] == "raw":
                S["nu_max"] = max(S["nu_max"], S["nu"])
                raw, corr = S["nu_max"], S["nu_max"] / bc2
            else:
                S["nu_max"] = max(S["nu_max"], S["nu"] / bc2)
                raw, corr = S["nu_max"] * bc2, S["nu_max"]
        else:
            raw, corr = S["nu"], S["nu"] / bc2
        er, eps = _m(hp["eps_root"]), _m(hp["eps"])
        if hp["eps_placement"] == "outside":
            e.p = e.p - lr * (S["mu"] / bc1) / (_sqrt(corr + er) + eps)
        else:
            e.p = e.p - lr * _sqrt(bc2) / bc1 * S["mu"] / (_sqrt(raw + er) + eps)
    elif opt == "adamax":
        b1, b2, eps = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"])
        S["mu"] = b1 * S["mu"] + (1 - b1) * g
        if hp["eps_placement"] == "max":
            S["nu"] = max(b2 * S["nu"], abs(g) + eps)
            den = S["nu"]
        else:
            S["nu"] = max(b2 * S["nu"], abs(g))
            den = S["nu"] + eps
        e.p = e.p - lr / (1 - _pow(b1, T, hp)) * S["mu"] / den
    elif opt == "nadam":
        b1, b2, eps = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"])
        mu_t, mu_n, prod = shared["mu_t"], shared["mu_next"], shared["mu_product"]
        w1, w2 = _ema_weight(b1, hp), _ema_weight(b2, hp)
        S["mu"] = b1 * S["mu"] + w1 * g
        S["nu"] = b2 * S["nu"] + w2 * g * g
        den = _sqrt(S["nu"] / (1 - _pow(b2, T, hp))) + eps
        e.p = (e.p - lr * (1 - mu_t) / (1 - prod) * g / den
               - lr * mu_n / (1 - prod * mu_n) * S["mu"] / den)
        S["mu_product"] = prod
    elif opt == "radam":
        b1, b2, eps, er = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"]), _m(hp["eps_root"])
        S["mu"] = b1 * S["mu"] + (1 - b1) * g
        S["nu"] = b2 * S["nu"] + (1 - b2) * g * g
        bc1, bc2 = 1 - _pow(b1, T, hp), 1 - _pow(b2, T, hp)
        rinf, rho = _rho(b2, T, bc2, hp)
        thr = _m(hp["threshold"])
        rect = rho >= thr if hp["threshold_inclusive"] else rho > thr
        mhat = S["mu"] / bc1
        if rect:
            r = _rectifier(rinf, rho)
            if hp["eps_placement"] == "hat":
                ad = _sqrt(bc2) / (_sqrt(S["nu"] + er) + eps)
            else:
                ad = 1 / (_sqrt(S["nu"] / bc2 + er) + eps)
            e.p = e.p - lr * r * mhat * ad
        else:
            e.p = e.p - lr * mhat
    elif opt == "adadelta":
        rho, eps = _m(hp["rho"]), _m(hp["eps"])
        S["nu"] = rho * S["nu"] + (1 - rho) * g * g
        delta = _sqrt(S["acc_delta"] + eps) / _sqrt(S["nu"] + eps) * g
        S["acc_delta"] = rho * S["acc_delta"] + (1 - rho) * delta * delta
        e.p = e.p - lr * delta
    elif opt == "lion":
        _lion_step(e, g, t, hp, lr)
    else:
        raise KeyError(opt)


def _rho(b2, T, bc2, hp: dict) -> tuple:
    """RAdam's ``(rho_inf, rho_t)`` (``bc2 = 1 - beta2**t`` as the factors see it); with
    float32 factors, rho_t evaluated in float32 (see the module doc)."""
    rinf = 2 / (1 - b2) - 1
    if _param_factors(hp):
        rinf = _f32(rinf)
        return rinf, _f32(rinf - _f32(_f32(2 * T * _pow(b2, T, hp)) / _f32(bc2)))
    return rinf, rinf - 2 * T * b2 ** T / bc2


def _rectifier(rinf, rho):
    """RAdam's r_t."""
    return _sqrt((rho - 4) * (rho - 2) * rinf / ((rinf - 4) * (rinf - 2) * rho))


# -- issue 11 (the newer family): optimizers with their own step function below ------------

def _signed_coupled(e, g, hp: dict):
    """``g`` with the sign of ``maximize`` and coupled L2 (``g + wd * p``) applied."""
    if hp.get("maximize"):
        g = -g
    if hp.get("weight_decay_mode", "coupled") == "coupled":
        g = g + _m(hp.get("weight_decay", 0.0)) * e.p
    return g


def _decoupled(e, hp: dict, scale) -> None:
    """Decoupled decay ``p * (1 - scale * wd)`` (no-op unless weight_decay_mode is decoupled)."""
    if hp.get("weight_decay_mode", "coupled") == "decoupled":
        e.p = e.p * (1 - scale * _m(hp.get("weight_decay", 0.0)))


def _adopt_step(e, g, t: int, hp: dict, lr) -> None:
    """ADOPT: v_0 = g^2 and no update on the first step; then n = clip(g / max(sqrt(v), eps),
    +-s^e), m = b1 m + (1 - b1) n, p -= lr m (or lr (b1 m + (1 - b1) n), Nesterov), and only then
    v = b2 v + (1 - b2) g^2."""
    S = e.s
    if t == 1:
        S["nu"] = g * g
        return
    _decoupled(e, hp, lr)
    eps, root = _m(hp["eps"]), _sqrt(S["nu"])
    n = g / (max(root, eps) if hp["eps_placement"] == "max" else root + eps)
    if hp["clipping"]:
        s = t - 1 if hp["clip_index"] == "previous" else t
        c = mpmath.mpf(s) ** _m(hp["clip_exponent"])
        n = min(max(n, -c), c)
    b1, b2 = _m(hp["beta1"]), _m(hp["beta2"])
    w1, w2 = _ema_weight(b1, hp), _ema_weight(b2, hp)
    S["mu"] = b1 * S["mu"] + w1 * n
    u = b1 * S["mu"] + w1 * n if hp["nesterov"] else S["mu"]
    e.p = e.p - lr * u
    S["nu"] = b2 * S["nu"] + w2 * g * g


def _adabelief_step(e, g, t: int, hp: dict, lr) -> None:
    """AdaBelief: s = b2 s + (1 - b2)(g - m)^2 + eps_root; the Adam step on (m, s) with eps
    outside sqrt(s_hat) or on sqrt(s) ('hat'); optionally RAdam's rectification (rho_t >=
    threshold, else lr m_hat or nothing) and Nesterov's m_hat."""
    S = e.s
    _decoupled(e, hp, lr if hp["decay_scaling"] == "lr" else 1)
    b1, b2, T = _m(hp["beta1"]), _m(hp["beta2"]), mpmath.mpf(t)
    S["mu"] = b1 * S["mu"] + (1 - b1) * g
    r = g - S["mu"]
    S["nu"] = b2 * S["nu"] + (1 - b2) * r * r + _m(hp["eps_root"])
    bc1, bc2 = 1 - _pow(b1, T, hp), 1 - _pow(b2, T, hp)
    if hp["nesterov"]:
        mhat = b1 * S["mu"] / (1 - _pow(b1, T + 1, hp)) + (1 - b1) * g / bc1
    else:
        mhat = S["mu"] / bc1
    eps = _m(hp["eps"])
    if hp["eps_placement"] == "outside":
        step = lr * mhat / (_sqrt(S["nu"] / bc2) + eps)
    else:
        step = lr * _sqrt(bc2) * mhat / (_sqrt(S["nu"]) + eps)
    if hp["rectify"]:
        rinf, rho = _rho(b2, T, bc2, hp)
        if rho >= _m(hp["threshold"]):
            step = step * _rectifier(rinf, rho)
        else:
            step = lr * mhat if hp["degenerated_to_sgd"] else mpmath.mpf(0)
    e.p = e.p - step


_OWN_STEP = {"adopt": _adopt_step, "adabelief": _adabelief_step}


def _adan_step(e: _Elem, g, t: int, hp: dict, lr) -> None:
    """Adan (Xie et al., Algorithm 1, sail-sg/Adan's convention): d = 0 on step 1, the
    coefficient k of d (beta2 or 1 - beta2), eps_root inside the root, three decay forms."""
    S, T = e.s, mpmath.mpf(t)
    b1, b2, b3 = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["beta3"])
    wd, mode = _m(hp["weight_decay"]), hp["weight_decay_mode"]
    if mode == "coupled":
        g = g + wd * e.p
    d = g - S["prev_grad"] if t > 1 else mpmath.mpf(0)
    k = b2 if hp["diff_coefficient"] == "beta2" else 1 - b2
    S["m"] = b1 * S["m"] + (1 - b1) * g
    S["v"] = b2 * S["v"] + (1 - b2) * d
    S["n"] = b3 * S["n"] + (1 - b3) * (g + k * d) ** 2
    S["prev_grad"] = g
    den = _sqrt(S["n"] / (1 - _pow(b3, T, hp)) + _m(hp["eps_root"])) + _m(hp["eps"])
    u = (S["m"] / (1 - _pow(b1, T, hp)) + k * S["v"] / (1 - _pow(b2, T, hp))) / den
    if mode == "proximal":
        e.p = (e.p - lr * u) / (1 + lr * wd)
    elif mode == "decoupled":
        e.p = e.p * (1 - lr * wd) - lr * u
    else:
        e.p = e.p - lr * u


def _nadam_shared(hp: dict, t: int, shared: dict) -> None:
    b1 = _fbase(_m(hp["beta1"]), hp)
    if hp["momentum_schedule"] == "torch":
        psi = _fbase(_m(hp["momentum_decay"]), hp)
        # 0.96 is the Python float (binary64) torch and Keras use, not the decimal 0.96
        d = _m(0.96)
        mu_t = b1 * (1 - mpmath.mpf("0.5") * _pow(d, t * psi, hp))
        mu_n = b1 * (1 - mpmath.mpf("0.5") * _pow(d, (t + 1) * psi, hp))
    else:
        mu_t = mu_n = b1
    shared["mu_product"] = shared.get("mu_product", mpmath.mpf(1)) * mu_t
    shared["mu_t"], shared["mu_next"] = mu_t, mu_n


# ---- Lion: the sign of c = beta1*m + (1 - beta1)*g is well-posed only away from 0 ------------
# Optimizers with no coupled-L2 form: weight_decay is always decoupled, p * (1 - lr*wd).
DECOUPLED_ONLY = ("adamw", "lion")
#: ``|c|`` must exceed the worst-case error of an implementation's ``c`` by this factor
LION_SAFETY = 8.0
#: roundings, relative to the sum of the terms' magnitudes, of ``c = beta1*m + w1*g`` (the two
#: constants rounded to the dtype, the two products, the sum) and of ``m``'s own update
LION_C_ROUNDINGS = 5
LION_M_ROUNDINGS = 5
#: closed loops: the harness's gradient at an implementation's iterate may differ from the exact
#: one by this many units u of the case dtype per step and unit of ``max(abs(g), 1)`` (the
#: evaluation error, 2n + 4 roundings, plus the iterate's rounding drift times the objective's
#: curvature, at most 1.2e3 on the catalogue's objectives, with a margin)
LION_LOOP_G_UNITS = 1e4
_UNIT = {"float64": mpmath.mpf(2) ** -53, "float32": mpmath.mpf(2) ** -24}


class IllPosedSign(ValueError):
    """A Lion case where some implementation's sign(c) may differ from the exact one."""


def lion_sign_bounds(u, beta1, w1, beta2, w2, g, m, m_err, g_err=0):
    """``(c_err, m_err_new)``: worst-case bounds on ``|c_impl - c|`` at this step and on the
    implementation's momentum error after it, for an implementation that rounds each operation
    of ``c = beta1*m + w1*g`` and ``m' = beta2*m + w2*g`` in the unit roundoff ``u`` and starts
    from a momentum off by ``m_err`` and a gradient off by ``g_err``. Works elementwise on
    mpmath numbers and on NumPy float64 arrays."""
    c_err = LION_C_ROUNDINGS * u * (abs(beta1 * m) + abs(w1 * g)) + beta1 * m_err + w1 * g_err
    m_new = (beta2 * m_err + LION_M_ROUNDINGS * u * (abs(beta2 * m) + abs(w2 * g))
             + w2 * g_err)
    return c_err, m_new


def lion_sign_margin(c, c_err):
    """``|c| / c_err``: how many times the worst-case error of c its distance from 0 is (inf
    where c and its error are both exactly 0: every implementation computes sign(0) = 0 then,
    its terms being exact zeros). A case is well-posed where this exceeds LION_SAFETY."""
    if c_err == 0:
        return mpmath.inf if c == 0 else mpmath.mpf(0)
    return abs(c) / c_err


@functools.lru_cache(maxsize=4096)
def _lion_screen(grad_json: str, shape: tuple, steps: int, dtype: str, beta1: float,
                 beta2: float, ema_weight_precision: str) -> bool:
    from .rng import gradient

    grad = json.loads(grad_json)
    hp = {"_case_dtype": dtype, "ema_weight_precision": ema_weight_precision}
    b1, b2 = float(beta1), float(beta2)
    w1, w2 = (float(_ema_weight(_m(b), hp)) for b in (b1, b2))
    u, u64 = float(_UNIT[dtype]), 2.0 ** -53
    m = m_err = m_err64 = np.zeros(shape)
    for t in range(1, steps + 1):
        g = gradient(grad, shape, t).astype(dtype).astype(np.float64)
        c = b1 * m + w1 * g
        c_err, m_err_new = lion_sign_bounds(u, b1, w1, b2, w2, g, m, m_err)
        c_err64, m_err64 = lion_sign_bounds(u64, b1, w1, b2, w2, g, m, m_err64)
        # this float64 c is itself off by <= c_err64; ask for twice the oracle's margin
        zero = (c_err == 0) & (c == 0)
        if not np.all(zero | (np.abs(c) - c_err64 > 2 * LION_SAFETY * c_err)):
            return False
        m, m_err = b2 * m + w2 * g, m_err_new
    return True


def lion_well_posed(grad: dict, shape: tuple, steps: int, dtype: str, hp: dict) -> bool:
    """Whether the replayed gradients ``grad`` (a golden's generator record) keep Lion's c at
    least 2*LION_SAFETY times its worst-case error away from 0 (or exactly 0) for every element
    and step, screened in float64 (whose own error of c is in the bound); the exact oracle then
    checks LION_SAFETY again (:func:`_lion_step`)."""
    return _lion_screen(json.dumps(grad, sort_keys=True), tuple(shape), int(steps), dtype,
                        float(hp["beta1"]), float(hp["beta2"]),
                        hp.get("ema_weight_precision", "float64"))


def _lion_step(e, g, t, hp, lr) -> None:
    """One exact Lion step; raises :class:`IllPosedSign` where the margin is below
    LION_SAFETY (the case must not be generated)."""
    S = e.s
    b1, b2 = _m(hp["beta1"]), _m(hp["beta2"])
    w1, w2 = _ema_weight(b1, hp), _ema_weight(b2, hp)
    u = _UNIT[hp.get("_case_dtype", "float64")]
    g_err = hp.get("_lion_g_units", 0) * u * t * max(abs(g), 1)
    m_err = getattr(e, "lion_m_err", mpmath.mpf(0))
    c = b1 * S["mu"] + w1 * g
    c_err, e.lion_m_err = lion_sign_bounds(u, b1, w1, b2, w2, g, S["mu"], m_err, g_err)
    if lion_sign_margin(c, c_err) <= LION_SAFETY:
        msg = (f"lion: at step {t} c = {float(c)!r} is within {LION_SAFETY:g} times the "
               f"worst-case rounding error of c ({float(c_err)!r}) in "
               f"{hp.get('_case_dtype', 'float64')}: its sign is not well-posed")
        raise IllPosedSign(msg)
    e.p = e.p - lr * mpmath.sign(c)
    S["mu"] = b2 * S["mu"] + w2 * g


# ---- schedule-free AdamW and SGD (adaptive_ref.optimizers.schedule_free) -----------------------
SCHEDULE_FREE = ("schedule_free_adamw", "schedule_free_sgd")


def _sf_lr(hp: dict, lr, k) -> mpmath.mpf:
    """The warmed-up lr ``lr * min(1, k/W)`` of step index ``k`` (``t`` or, lagged, ``t - 1``):
    exact, or with ``warmup_precision="float32"`` optax's float32 evaluation, every operation
    rounded to float32: ``fl(fl(-fl(lr) fl(1 - fl(k/W))) + fl(lr))`` while ``k < W``, then
    ``fl(lr)``; with ``"factor_float32"`` ``lr fl(min(k/W, 1))`` (Keras, torch backend)."""
    w = _m(hp["warmup_steps"])
    if w == 0:
        return lr
    k = mpmath.mpf(k)
    if hp["warmup_precision"] == "float32":
        lr32 = _f32(lr)
        if k >= w:
            return lr32
        return _f32(_f32(-lr32 * _f32(1 - _f32(k / w))) + lr32)
    if hp["warmup_precision"] == "factor_float32":  # fl32(min(k/W, 1)); k/W is no float32 tie
        return lr * _f32(min(mpmath.mpf(1), k / w))
    return lr * min(mpmath.mpf(1), k / w)


def _schedule_free_shared(hp: dict, t: int, shared: dict, lr) -> None:
    """One parameter's scalars of step ``t``: the lr of the weights (``lr_t``) and of the step
    (``lr_z``), lr_max, the weight sum and c_t. Exact, except under ``factor_precision="param"``
    in a float32 case, where each is the float32 evaluation of its formula, every operation
    correctly rounded, as optax and Keras compute them: ``fl(fl(lr) fl(min(1, k/W)))`` (or
    optax's float32 schedule), ``w = fl(fl(t^r) fl(lr_max^P))``, ``fl(sum + w)``,
    ``c = fl(w/sum)`` (Keras: ``fl(1/t)``). The rest of the update keeps exact scalars (the error
    model charges their rounding)."""
    f = _f32 if _param_factors(hp) else (lambda v: v)
    lr = _m(lr)

    def warm(k):
        if hp["warmup_precision"] == "float32" or _m(hp["warmup_steps"]) == 0:
            return f(_sf_lr(hp, f(lr), k))
        return f(f(lr) * f(_sf_lr(hp, mpmath.mpf(1), k)))

    lr_t = warm(t)
    lr_z = warm(t - 1) if hp["warmup_lag"] else lr_t
    lr_max = max(shared.get("lr_max", mpmath.mpf(0)), lr_t)
    ws = shared.get("weight_sum", mpmath.mpf(0))
    if hp["averaging"] == "uniform":
        ws, c = ws + 1, f(1 / mpmath.mpf(t))
    else:
        w = f(lr_max ** _m(hp["weight_lr_power"]))
        if _m(hp["r"]) != 0:
            w = f(f(mpmath.mpf(t) ** _m(hp["r"])) * w)
        ws = f(ws + w)
        c = f(w / ws) if ws > 0 else mpmath.mpf(0)
    shared.update(lr_t=lr_t, lr_z=lr_z, lr_max=lr_max, weight_sum=ws, c=c)


def _schedule_free_step(opt: str, e: _Elem, g, t: int, hp: dict, lr, shared: dict) -> None:
    S = e.s
    b1, wd, c, lr_z = _m(hp["beta1"]), _m(hp["weight_decay"]), shared["c"], shared["lr_z"]
    y = e.p
    if hp["weight_decay_form"] == "y":  # Keras: y - lr*wd*y (the un-warmed lr) first
        y = y * (1 - lr * wd)
    if opt == "schedule_free_adamw":
        b2 = _m(hp["beta2"])
        S["nu"] = b2 * S["nu"] + _ema_weight(b2, hp) * g * g
        u = g / (_sqrt(S["nu"] / (1 - _pow(b2, mpmath.mpf(t), hp))) + _m(hp["eps"]))
    else:
        u = g
    if hp["weight_decay_form"] == "direction":
        u = u + wd * y
    coef = -c * lr_z if hp["x_from_updated_z"] else lr_z * (b1 * (1 - c) - 1)
    e.p = y + c * (S["z"] - y) + coef * u
    S["z"] = S["z"] - lr_z * u
    S["x"] = (e.p - (1 - b1) * S["z"]) / b1
    S["weight_sum"], S["lr_max"] = shared["weight_sum"], shared["lr_max"]


def shared_scalars(opt: str, hp: dict, t: int, shared: dict, lr) -> None:
    """Before step ``t`` of one parameter: its per-parameter scalars (NAdam's momentum product,
    schedule-free's weights) into ``shared``; ``lr`` is the step's lr."""
    if opt == "nadam":
        _nadam_shared(hp, t, shared)
    elif opt in SCHEDULE_FREE:
        _schedule_free_shared(hp, t, shared, lr)


# Per-tensor optimizers (``OptimizerSpec.coupling == "tensor"``): one exact step sees every
# element of a parameter (``es``, a list of _Elem; ``gs`` their gradients). The norms are
# exact (``sqrt(fsum(x**2))`` at the working precision); everything after them is the
# elementwise update as above.
TENSOR_FIELDS = {"lamb": ("mu", "nu"), "lars": ("momentum_buffer",)}


def _norm(xs) -> mpmath.mpf:
    return _sqrt(mpmath.fsum(x * x for x in xs))


def _trust(num, den, update_norm, hp: dict) -> mpmath.mpf:
    """The trust ratio num/den with the zero-norm rule (adaptive_ref._trust.ZERO_NORM)."""
    if hp["zero_norm"] == "one":
        return mpmath.mpf(1) if num == 0 or update_norm == 0 else num / den
    return mpmath.mpf(0) if den == 0 else num / den


def _lamb_tensor(es, gs, t: int, hp: dict, lr) -> None:
    lr, wd = _m(lr), _m(hp["weight_decay"])
    b1, b2, eps, er = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"]), _m(hp["eps_root"])
    T = mpmath.mpf(t)
    bc1, bc2 = 1 - _pow(b1, T, hp), 1 - _pow(b2, T, hp)
    trust_decay = hp["decay_placement"] == "trust"
    r = []
    for e, g in zip(es, gs, strict=True):
        if not trust_decay:
            e.p = e.p * (1 - lr * wd)
        S = e.s
        S["mu"] = b1 * S["mu"] + (1 - b1) * g
        S["nu"] = b2 * S["nu"] + (1 - b2) * g * g
        r.append(S["mu"] / bc1 / (_sqrt(S["nu"] / bc2 + er) + eps)
                 + (wd * e.p if trust_decay else 0))
    rn = _norm(r)
    ratio = _trust(_norm([e.p for e in es]), rn, rn, hp)
    for e, ri in zip(es, r, strict=True):
        e.p = e.p - lr * ratio * ri


def _lars_tensor(es, gs, t: int, hp: dict, lr) -> None:
    lr, wd, mom = _m(lr), _m(hp["weight_decay"]), _m(hp["momentum"])
    eta, eps = _m(hp["trust_coefficient"]), _m(hp["eps"])
    gd = [g + wd * e.p for e, g in zip(es, gs, strict=True)]
    pn, gdn = _norm([e.p for e in es]), _norm(gd)
    den = gdn + eps if hp["trust_denominator"] == "update" else _norm(gs) + wd * pn + eps
    ratio = _trust(eta * pn, den, gdn, hp)
    inside = hp["lr_placement"] == "inside"
    for e, x in zip(es, gd, strict=True):
        x = (lr * ratio if inside else ratio) * x
        buf = mom * e.s["momentum_buffer"] + x
        e.s["momentum_buffer"] = buf
        d = x + mom * buf if hp["nesterov"] else buf
        e.p = e.p - d if inside else e.p - lr * d


TENSOR_STEPS = {"lamb": _lamb_tensor, "lars": _lars_tensor}


# ---- Adafactor (Shazeer & Stern 2018, Algorithms 4-5): a per-tensor step whose factored state
# fields (the row and column factors) have shapes of their own. ``es`` is then a _Tensor: the
# elements (p, and the full v / momentum mu where present) plus ``own`` fields, each a flat
# C-order list of mpf of shape ``own_shapes[f]`` (the reference's: the parameter's shape with
# the averaged axis of size 1). The factoring rule, the means, RMS values, beta2_hat and the
# clamps are written out again from the paper and the knobs' definitions (not from the
# reference).

class _Tensor(list):
    """A parameter's elements (_Elem) and its state fields of other shapes (``own``)."""

    def __init__(self, elems, own_shapes=None):
        super().__init__(elems)
        self.own_shapes = dict(own_shapes or {})
        self.own = {f: [mpmath.mpf(0)] * int(np.prod(s, dtype=np.int64))
                    for f, s in self.own_shapes.items()}


def _af_axes(hp: dict, shape: tuple):
    """The factored axes ``(a0, a1)`` (a0: the row factor averages over it) or None: tensors
    of order >= 2 when ``factored``; 'last_two' = (ndim-1, ndim-2), 'two_largest' = the largest
    and second largest axis, ties to the later one; both at least min_dim_size_to_factor."""
    if not hp["factored"] or len(shape) < 2:
        return None
    if hp["factor_axes"] == "last_two":
        a0, a1 = len(shape) - 1, len(shape) - 2
    else:
        order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
        a0, a1 = order[-1], order[-2]
    if min(shape[a0], shape[a1]) < float(hp["min_dim_size_to_factor"]):
        return None
    return a0, a1


def _keep(shape: tuple, axis: int) -> tuple:
    return tuple(1 if i == axis else n for i, n in enumerate(shape))


def adafactor_state_shapes(hp: dict, shape: tuple) -> dict:
    """``{field: shape}`` of the factored fields of a parameter of ``shape`` (empty if it is not
    factored): what a golden records as the parameter's ``state_shapes``."""
    axes = _af_axes(hp, tuple(shape))
    if axes is None:
        return {}
    return {"v_row": _keep(tuple(shape), axes[0]), "v_col": _keep(tuple(shape), axes[1])}


def _af_mean_f32(hp: dict) -> bool:
    """mean_precision='float32' acts on float64 parameters only (a float32 one is float32)."""
    return hp["mean_precision"] == "float32" and hp.get("_case_dtype") == "float64"


def _af_mean(xs, hp: dict) -> mpmath.mpf:
    """The mean of ``xs``: exact, or (mean_precision 'float32', float64 case) the correctly
    rounded float32 mean of the float32-rounded inputs (Keras' float32 ``ops.mean``)."""
    if _af_mean_f32(hp):
        # float32 inputs make their exact mean a float32 tie now and then: it is rounded from
        # the exact rational (ties to even), not from a working-precision quotient
        s = sum(Fraction(float(_f32(x))) for x in xs)  # a float32 value is a float exactly
        num, den = s.numerator, s.denominator * len(xs)
        with mpmath.workprec(max(num.bit_length(), den.bit_length(), 53) + 8):
            a, b = mpmath.mpf(num), mpmath.mpf(den)
        return mpmath.fdiv(a, b, prec=24)
    return mpmath.fsum(xs) / len(xs)


def _af_rms(xs, hp: dict) -> mpmath.mpf:
    return _sqrt(_af_mean([x * x for x in xs], hp))


def _f64(x) -> mpmath.mpf:
    with mpmath.workprec(53):
        return +mpmath.mpf(x)


def _af_beta2(t: int, hp: dict) -> tuple:
    """``(beta2_hat_t, 1 - beta2_hat_t)``: exact ('float64'), or evaluated in precision P
    ('float32': always float32, optax; 'param': the case dtype, Keras) as those do it, every
    operation correctly rounded: c rounded to P, p = fl(t^-c), b = fl(1 - p), w = fl(1 - b)."""
    prec = hp["beta2_precision"]
    c = _m(hp["decay_rate"])
    if prec == "float64":
        p = mpmath.mpf(t) ** -c
        return 1 - p, p
    r = _f32 if prec == "float32" or hp.get("_case_dtype") == "float32" else _f64
    p = r(mpmath.mpf(t) ** -r(c))
    b = r(1 - p)
    return b, r(1 - b)


def _af_eps1(hp: dict):
    """``(clamp, eps1)``: eps1_mode 'add' adds eps1 to G^2; 'clamp' clamps with eps1;
    'clamp_machine_eps' with the machine epsilon of the case dtype."""
    mode = hp["eps1_mode"]
    if mode == "clamp_machine_eps":
        return True, mpmath.mpf(2) ** (-52 if hp.get("_case_dtype") == "float64" else -23)
    return mode == "clamp", _m(hp["eps1"])


def _af_index(shape: tuple, i: int, axis: int) -> int:
    """The flat index, in the kept-axis shape, of element ``i`` of ``shape`` (axis -> 0)."""
    idx = list(np.unravel_index(i, shape))
    idx[axis] = 0
    return int(np.ravel_multi_index(idx, _keep(shape, axis)))


def _af_groups(shape: tuple, axis: int) -> list:
    """For each entry of the kept-axis shape, the flat indices of ``shape`` it averages."""
    out = [[] for _ in range(int(np.prod(_keep(shape, axis), dtype=np.int64)))]
    for i in range(int(np.prod(shape, dtype=np.int64))):
        out[_af_index(shape, i, axis)].append(i)
    return out


def _adafactor_tensor(es, gs, t: int, hp: dict, lr) -> None:
    """One exact Adafactor step of a whole parameter (adaptive_ref.optimizers.adafactor's
    docstring): decay, alpha from RMS(theta) before or after it, the factored (or full) second
    moment, U = G/sqrt(V_hat), clipping by RMS(U)/d, momentum, theta' - update."""
    shape = tuple(hp["_shape"])
    lr, wd, T = _m(lr), _m(hp["weight_decay"]), mpmath.mpf(t)
    g = [-x for x in gs] if hp["maximize"] else list(gs)
    coupled = hp["weight_decay_mode"] == "coupled"
    p = [e.p for e in es]
    if coupled:
        g = [gi + wd * pi for gi, pi in zip(g, p, strict=True)]
        p_dec = p
    else:
        s = lr if hp["decay_scaling"] == "lr" else mpmath.mpf(1)
        p_dec = [pi * (1 - s * wd) for pi in p]
    rho = min(lr, 1 / _sqrt(T)) if hp["relative_step"] else lr
    alpha = rho
    if hp["multiply_by_parameter_scale"]:
        src = p if hp["param_scale_from"] == "before_decay" else p_dec
        alpha = max(_m(hp["eps2"]), _af_rms(src, hp)) * rho
    b, w = _af_beta2(t, hp)
    clamp, e1 = _af_eps1(hp)
    q = [gi * gi if clamp else gi * gi + e1 for gi in g]
    axes = _af_axes(hp, shape)
    if axes is None:
        vhat = []
        for e, qi in zip(es, q, strict=True):
            e.s["v"] = b * e.s["v"] + w * qi
            vhat.append(max(e.s["v"], e1 * e1) if clamp else e.s["v"])
    else:
        a0, a1 = axes
        R, C = es.own["v_row"], es.own["v_col"]
        for name, axis in (("v_row", a0), ("v_col", a1)):
            old = es.own[name]
            es.own[name] = [b * old[k] + w * _af_mean([q[i] for i in grp], hp)
                            for k, grp in enumerate(_af_groups(shape, axis))]
        R, C = es.own["v_row"], es.own["v_col"]
        rshape = _keep(shape, a0)
        norm = [_af_mean([R[i] for i in grp], hp) for grp in _af_groups(rshape, a1)]
        vhat = []
        for i in range(len(es)):
            ir, ic = _af_index(shape, i, a0), _af_index(shape, i, a1)
            nk = norm[_af_index(rshape, ir, a1)]
            if clamp:
                vhat.append(max(R[ir] * C[ic] / max(nk, e1), e1 * e1))
            else:
                vhat.append(R[ir] * C[ic] / nk)
    u = [gi / _sqrt(vh) for gi, vh in zip(g, vhat, strict=True)]
    denom = max(mpmath.mpf(1), _af_rms(u, hp) / _m(hp["clip_threshold"]))
    b1 = _m(hp["beta1"])
    for e, pd, ui in zip(es, p_dec, u, strict=True):
        upd = alpha * ui / denom
        if "mu" in e.s:
            e.s["mu"] = b1 * e.s["mu"] + (1 - b1) * upd
            upd = e.s["mu"]
        e.p = pd - upd


def _adafactor_fields(hp: dict) -> dict:
    """Adafactor's per-element fields: the full v (unfactored) and the momentum (beta1 > 0)."""
    z = mpmath.mpf(0)
    out = {} if _af_axes(hp, tuple(hp["_shape"])) else {"v": z}
    if float(hp["beta1"]) > 0:
        out["mu"] = z
    return out


TENSOR_STEPS["adafactor"] = _adafactor_tensor
#: per-tensor optimizers whose fields depend on the parameter (shape, settings)
TENSOR_FIELD_FNS = {"adafactor": _adafactor_fields}
#: state fields of shapes other than the parameter's: (hp, shape) -> {field: shape}
STATE_SHAPES = {"adafactor": adafactor_state_shapes}


def tensor_of(opt: str, hp: dict, elems: list) -> _Tensor:
    """A parameter's elements with its fields of other shapes (zeros, as after init)."""
    fn = STATE_SHAPES.get(opt)
    out = _Tensor(elems, fn(hp, tuple(hp["_shape"])) if fn else None)
    if opt in OWN_INIT:  # fields of their own shape that do not start at zero (SOAP's bases)
        OWN_INIT[opt](out)
    return out


# Whole-model optimizers (``OptimizerSpec.coupling == "tree"``): one exact step sees every
# element of every parameter (``model``: parameter name -> list of _Elem; ``grads``: name ->
# their gradients) under the model's one setting ``hp``. The model's scalars (Prodigy's d,
# d_max, r) are kept in every element's state (the goldens store them per parameter) and read
# from the first; the sums over the model are exact (``fsum``).
def _tree_init_fields(opt: str, hp: dict) -> dict:
    z = mpmath.mpf(0)
    d0 = _m(hp["d0"])
    if opt == "dadapt_adamw":
        return {"mu": z, "nu": z, "s": z, "d": d0, "d_numerator": z}
    return {"mu": z, "nu": z, "s": z, "p0": _PARAM, "d": d0, "d_max": d0, "d_numerator": z}


def _tree_inputs(model: dict, grads: dict, t: int, hp: dict, lr) -> tuple:
    """``(es, gs, dlr, coupled)`` of a whole-model step: every element and its gradient (plus
    wd * p where the decay is coupled), and d lr c_t with c_t = sqrt(1 - b2^t) / (1 - b1^t)
    under bias correction, else 1 (Prodigy and D-Adapt AdamW alike)."""
    es = [e for name in model for e in model[name]]
    gs = [g for name in model for g in grads[name]]
    dlr = es[0].s["d"] * _m(lr)
    if hp["bias_correction"]:
        T, b1, b2 = mpmath.mpf(t), _m(hp["beta1"]), _m(hp["beta2"])
        dlr = dlr * _sqrt(1 - _pow(b2, T, hp)) / (1 - _pow(b1, T, hp))
    coupled = hp["weight_decay_mode"] == "coupled"
    if coupled:
        wd = _m(hp["weight_decay"])
        gs = [g + wd * e.p for e, g in zip(es, gs, strict=True)]
    return es, gs, dlr, coupled


def _prodigy_tree(model: dict, grads: dict, t: int, hp: dict, lr) -> None:
    """prodigyopt.Prodigy.step (adaptive_ref.optimizers.prodigy), exactly; slice_p = 1."""
    es, gs, dlr, coupled = _tree_inputs(model, grads, t, hp, lr)
    S0 = es[0].s
    d, d_max, num = S0["d"], S0["d_max"], S0["d_numerator"]
    b1, b2, eps = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"])
    b3 = _sqrt(b2) if hp["beta3"] == -1.0 else _m(hp["beta3"])
    wd, d0, coef = _m(hp["weight_decay"]), _m(hp["d0"]), _m(hp["d_coef"])
    ratio = d / d0
    s_coef = ratio * (d if hp["safeguard_warmup"] else dlr)
    dot = mpmath.fsum(g * (e.s["p0"] - e.p) for e, g in zip(es, gs, strict=True))
    for e, g in zip(es, gs, strict=True):
        S = e.s
        S["mu"] = b1 * S["mu"] + d * (1 - b1) * g
        S["nu"] = b2 * S["nu"] + d * d * (1 - b2) * g * g
        S["s"] = b3 * S["s"] + s_coef * g
    den = mpmath.fsum(abs(e.s["s"]) for e in es)
    if den == 0:  # the authors' step returns early: m, v, s only
        return
    num = b3 * num + ratio * dlr * dot
    d_hat = coef * num / den
    d_new = max(d, d_hat) if d == d0 else d
    d_max = max(d_max, d_hat)
    growth = hp["growth_rate"]
    d_new = d_max if growth == float("inf") else min(d_max, d_new * _m(growth))
    for e in es:
        S = e.s
        step = dlr * S["mu"] / (_sqrt(S["nu"]) + d_new * eps)
        e.p = e.p - (0 if coupled else dlr * wd * e.p) - step
        S["d"], S["d_max"], S["d_numerator"] = d_new, d_max, num


TREE_STEPS = {"prodigy": _prodigy_tree}


def _dadapt_adamw_tree(model: dict, grads: dict, t: int, hp: dict, lr) -> None:
    """dadaptation.DAdaptAdam.step / optax.contrib.dadapt_adamw
    (adaptive_ref.optimizers.dadapt_adamw), exactly."""
    es, gs, dlr, coupled = _tree_inputs(model, grads, t, hp, lr)
    d, num = es[0].s["d"], es[0].s["d_numerator"]
    b1, b2, eps = _m(hp["beta1"]), _m(hp["beta2"]), _m(hp["eps"])
    wd, sb2 = _m(hp["weight_decay"]), _sqrt(_m(hp["beta2"]))
    acc = mpmath.fsum(g * e.s["s"] / (_sqrt(e.s["nu"]) + eps) for e, g in zip(es, gs, strict=True))
    for e, g in zip(es, gs, strict=True):
        S = e.s
        S["mu"] = b1 * S["mu"] + dlr * (1 - b1) * g
        S["nu"] = b2 * S["nu"] + (1 - b2) * g * g
        S["s"] = sb2 * S["s"] + (1 - sb2) * dlr * g
    den = mpmath.fsum(abs(e.s["s"]) for e in es)
    if den == 0:  # the authors' step returns early: m, v, s only
        return
    num = sb2 * num + (1 - sb2) * dlr * acc
    d_hat = num / ((1 - sb2) * den)
    growth = hp["growth_rate"]
    d_new = max(d, d_hat if growth == float("inf") else min(d_hat, d * _m(growth)))
    for e in es:
        S = e.s
        step = S["mu"] / (_sqrt(S["nu"]) + eps)
        e.p = e.p - (0 if coupled else dlr * wd * e.p) - step
        S["d"], S["d_numerator"] = d_new, num


TREE_STEPS["dadapt_adamw"] = _dadapt_adamw_tree
# ---- Muon (adaptive_ref.optimizers.muon): the momentum, its Nesterov direction D, the exact
# Newton-Schulz iteration on D (a 2-D parameter, its shape in hp["_shape"]), the shape scale and
# the decoupled decay. Every knob that changes the exact values is honoured: momentum_form,
# nesterov, eps and eps_form, (ns_a, ns_b, ns_c), ns_steps, shape_scale with layout and
# rms_scale, weight_decay, and factor_precision (1 - mu^t as in the module doc). The precision
# knobs (ns_dtype, ns_rounding, scale_dtype, norm_precision) do not change the exact values: the
# error model charges their roundings. The Gram-side transpose (A = X X^T the smaller Gram
# matrix) commutes with the iteration; it is applied here as in the reference all the same.
TENSOR_FIELDS["muon"] = ("mu",)
DECOUPLED_ONLY += ("muon",)


def muon_scale(shape, hp: dict) -> mpmath.mpf:
    """The exact shape scale of the lr (``adaptive_ref.optimizers.muon.shape_factor``)."""
    rows, cols = shape
    if hp["shape_scale"] == "none":
        return mpmath.mpf(1)
    if hp["shape_scale"] == "rms":
        return _m(hp["rms_scale"]) * _sqrt(mpmath.mpf(max(rows, cols)))
    fan_out, fan_in = (rows, cols) if hp["layout"] == "out_in" else (cols, rows)
    return _sqrt(max(mpmath.mpf(1), mpmath.mpf(fan_out) / fan_in))


def _matmul(a, b):
    return [[mpmath.fsum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))]
            for i in range(len(a))]


def _transpose(a):
    return [list(col) for col in zip(*a, strict=True)]


def muon_newton_schulz(d, shape, hp: dict) -> list:
    """The exact iteration on ``d`` (a flat row-major list of ``shape``); returns it flat."""
    rows, cols = shape
    x = [d[i * cols:(i + 1) * cols] for i in range(rows)]
    wide = rows <= cols
    if not wide:
        x = _transpose(x)
    norm, eps = _norm(d), _m(hp["eps"])
    den = norm + eps if hp["eps_form"] == "add" else max(norm, eps)
    x = [[v / den for v in row] for row in x]
    a, b, c = _m(hp["ns_a"]), _m(hp["ns_b"]), _m(hp["ns_c"])
    for _ in range(int(hp["ns_steps"])):
        gram = _matmul(x, _transpose(x))
        gram2 = _matmul(gram, gram)
        poly = [[b * g + c * g2 for g, g2 in zip(r1, r2, strict=True)]
                for r1, r2 in zip(gram, gram2, strict=True)]
        px = _matmul(poly, x)
        x = [[a * v + w for v, w in zip(r1, r2, strict=True)] for r1, r2 in zip(x, px, strict=True)]
    if not wide:
        x = _transpose(x)
    return [v for row in x for v in row]


def _muon_tensor(es, gs, t: int, hp: dict, lr) -> None:
    lr, mu, wd, T = _m(lr), _m(hp["momentum"]), _m(hp["weight_decay"]), mpmath.mpf(t)
    form, nesterov = hp["momentum_form"], hp["nesterov"]
    d = []
    for e, g in zip(es, gs, strict=True):
        m = mu * e.s["mu"] + (g if form == "sum" else (1 - mu) * g)
        e.s["mu"] = m
        if nesterov == "nadam":
            d.append(mu * m / (1 - _pow(mu, T + 1, hp)) + (1 - mu) * g / (1 - _pow(mu, T, hp)))
            continue
        m_hat = m / (1 - _pow(mu, T, hp)) if form == "ema_bias_corrected" else m
        d.append((1 - mu) * g + mu * m_hat if nesterov == "lerp" else
                 g + mu * m_hat if nesterov == "add" else m_hat)
    o = muon_newton_schulz(d, hp["_shape"], hp)
    step = lr * muon_scale(hp["_shape"], hp)
    for e, oi in zip(es, o, strict=True):
        e.p = e.p * (1 - lr * wd) - step * oi


TENSOR_STEPS["muon"] = _muon_tensor


def _grad_mp(objective: dict, params: dict) -> dict:
    name = objective["name"]
    if name == "quadratic":
        A, b = objective["A"], objective["b"]
        x = params["x"]
        return {"x": [mpmath.fsum(_m(A[i][j]) * x[j] for j in range(len(x))) - _m(b[i])
                      for i in range(len(x))]}
    if name == "rosenbrock":
        x = params["x"]
        n = len(x)
        g = [mpmath.mpf(0)] * n
        for i in range(n - 1):
            g[i] += -400 * x[i] * (x[i + 1] - x[i] ** 2) - 2 * (1 - x[i])
            g[i + 1] += 200 * (x[i + 1] - x[i] ** 2)
        return {"x": g}
    if name == "logistic":
        X, y, l2 = objective["X"], objective["y"], _m(objective["l2"])
        w = params["w"]
        n, d = len(y), len(w)
        r = []
        for i in range(n):
            z = mpmath.fsum(_m(X[i][j]) * w[j] for j in range(d))
            r.append(1 / (1 + mpmath.exp(-z)) - _m(y[i]))
        return {"w": [mpmath.fsum(_m(X[i][j]) * r[i] for i in range(n)) / n + l2 * w[j]
                      for j in range(d)]}
    raise KeyError(name)


_FILL = {"weight_decay": 0.0, "weight_decay_mode": "coupled", "amsgrad": False,
         "amsgrad_max_over": "raw", "eps_root": 0.0, "factor_precision": "float64"}


def case_hparams(case, name: str) -> dict:
    """The settings :func:`_init_fields`, :func:`_step` and :func:`_nadam_shared` take for
    parameter ``name`` of ``case``: its hyperparameters, defaults for the fields some optimizers
    lack, and the case dtype (``"_case_dtype"``, read by ``factor_precision="param"``)."""
    out = {**_FILL, **case.param_hparams(name), "_case_dtype": case.dtype,
           "_shape": next(tuple(p.shape) for p in case.params if p.name == name)}
    if case.optimizer == "lion" and case.kind == "closed_loop":
        out["_lion_g_units"] = LION_LOOP_G_UNITS
    return out


# ---- SOAP (Vyas et al. 2024, Algorithm 3; adaptive_ref.optimizers.soap's docstring): a
# per-tensor step in the layout's (merged) shape. Per-element fields: the moments exp_avg and
# exp_avg_sq (in the rotated basis); fields of their own shape: gg<i> and q<i> (n_i x n_i, flat
# C order) for each preconditioned dimension i. Written out again from the paper and the knobs'
# definitions with numpy object arrays of mpf (every sum and product at the working precision):
# eigh by mpmath.eigsy (Jacobi), QR by mpmath.qr (Householder). The canonical choices of the
# reference are the oracle's too: eigenvector columns by decreasing eigenvalue, each signed so
# that its entry of largest magnitude is positive; QR with R's diagonal >= 0. The eigenvectors
# are those of GG_i itself (the reference's + 1e-30 I moves no eigenvector). Only well-posed
# spectra give a golden: ``es.gaps`` collects, at every eigh and refresh, the smallest relative
# separation the step depends on (see :func:`soap_well_posed`).

def _soap_layout(hp: dict, shape: tuple) -> tuple:
    """``(dims, active)``: upstream's merge_dims (consecutive dimensions multiplied while the
    product stays <= max_precond_dim) and which dimensions have a statistic."""
    mpd = int(hp["max_precond_dim"])
    if len(shape) == 0:
        return (), ()
    if len(shape) == 1:
        return tuple(shape), (bool(hp["precondition_1d"]) and shape[0] <= mpd,)
    dims = list(shape)
    if hp["merge_dims"]:
        dims, cur = [], 1
        for n in shape:
            if cur * n <= mpd:
                cur *= n
            elif cur > 1:
                dims, cur = [*dims, cur], n
            else:
                dims.append(n)
        if cur > 1 or not dims:
            dims.append(cur)
    return tuple(dims), tuple(n <= mpd for n in dims)


def soap_state_shapes(hp: dict, shape: tuple) -> dict:
    """``{"gg<i>": (n, n), "q<i>": (n, n)}`` for each preconditioned dimension of the layout."""
    dims, active = _soap_layout(hp, tuple(shape))
    return {f"{f}{i}": (n, n) for i, (n, a) in enumerate(zip(dims, active, strict=True)) if a
            for f in ("gg", "q")}


def _soap_init_own(es) -> None:
    for f, s in es.own_shapes.items():  # the bases start as the identity (soap_init)
        if f.startswith("q"):
            es.own[f] = [mpmath.mpf(int(k // s[0] == k % s[0])) for k in range(s[0] * s[0])]


def _mode(x, mat, i: int):
    """``x`` with ``mat`` applied along axis ``i`` (object arrays)."""
    return np.moveaxis(np.tensordot(mat, x, axes=([1], [i])), 0, i)


def _soap_eigh(a) -> tuple:
    """Eigenvectors of the symmetric object array ``a``: columns by decreasing eigenvalue, each
    with its largest-magnitude entry positive; and the smallest relative gap."""
    n = a.shape[0]
    lam, vec = mpmath.eigsy(mpmath.matrix(a.tolist()))
    order = sorted(range(n), key=lambda j: -lam[j])
    q = np.empty((n, n), dtype=object)
    for c, j in enumerate(order):
        col = [vec[r, j] for r in range(n)]
        sign = 1 if max(col) >= -min(col) else -1
        for r in range(n):
            q[r, c] = sign * col[r]
    ls = [lam[j] for j in order]
    top = max(abs(x) for x in ls)
    gap = min((ls[k] - ls[k + 1] for k in range(n - 1)), default=top) / top if top else 0
    return q, gap


def _soap_refresh(a, q, v, axis: int) -> tuple:
    """Re-sort by diag(Q^T GG Q) (decreasing; v's slices along ``axis`` with it), then
    Q <- qr(GG Q) with R's diagonal >= 0. Returns (Q, v, smallest relative gap of the sorted
    estimates, smallest |R_jj| / max |R_jj|)."""
    n = a.shape[0]
    power = a.dot(q)
    est = [mpmath.fsum(q[r, j] * power[r, j] for r in range(n)) for j in range(n)]
    order = sorted(range(n), key=lambda j: -est[j])  # stable: ties keep their order
    v = np.take(v, order, axis=axis)
    qn, r = mpmath.qr(mpmath.matrix(power[:, order].tolist()))
    out = np.empty((n, n), dtype=object)
    for j in range(n):
        sign = -1 if r[j, j] < 0 else 1
        for i in range(n):
            out[i, j] = sign * qn[i, j]
    es_ = [est[j] for j in order]
    top = max(abs(x) for x in es_)
    gap = min((es_[k] - es_[k + 1] for k in range(n - 1)), default=top) / top if top else 0
    rd = [abs(r[j, j]) for j in range(n)]
    return out, v, gap, min(rd) / max(rd) if max(rd) else 0


def _soap_tensor(es, gs, t: int, hp: dict, lr) -> None:
    """One exact SOAP step of a whole parameter (call ``t``; Adam step s = t - 1)."""
    shape = tuple(hp["_shape"])
    dims, active = _soap_layout(hp, shape)
    if not hasattr(es, "gaps"):
        es.gaps = []
    lr, wd, eps = _m(lr), _m(hp["weight_decay"]), _m(hp["eps"])
    b1, b2 = _m(hp["beta1"]), _m(hp["beta2"])
    sb = _m(hp["shampoo_beta"]) if float(hp["shampoo_beta"]) >= 0 else b2
    g = np.array(list(gs), dtype=object).reshape(dims)
    own = {f: np.array(x, dtype=object).reshape(es.own_shapes[f]) for f, x in es.own.items()}
    qs = [own.get(f"q{i}") for i in range(len(dims))]

    def project(x, back=False):
        for i, q in enumerate(qs):
            if q is not None:
                x = _mode(x, q if back else q.T, i)
        return x

    m = np.array([e.s["exp_avg"] for e in es], dtype=object).reshape(dims)
    v = np.array([e.s["exp_avg_sq"] for e in es], dtype=object).reshape(dims)
    if t >= 2:  # the first call only accumulates
        s = mpmath.mpf(t - 1)
        gt = project(g)
        m = b1 * m + (1 - b1) * gt
        v = b2 * v + (1 - b2) * gt * gt
        u = project(m / (np.vectorize(_sqrt, otypes=[object])(v) + eps), back=True).reshape(-1)
        if hp["normalize_grads"]:
            u = u / (mpmath.mpf(1e-30) + _sqrt(mpmath.fsum(x * x for x in u) / len(u)))
        size = lr * _sqrt(1 - b2 ** s) / (1 - b1 ** s) if hp["correct_bias"] else lr
        for e, ui in zip(es, u, strict=True):
            e.p = (e.p - size * ui) * (1 - lr * wd)  # decoupled decay after the update
        m = project(m, back=True)  # in the identity basis until the new bases are known
    refresh = t >= 2 and (t - 1) % int(hp["precondition_frequency"]) == 0
    for i, a in enumerate(active):
        if not a:
            continue
        others = [k for k in range(g.ndim) if k != i]
        stat = np.multiply.outer(g, g) if g.ndim == 1 else np.tensordot(g, g, axes=(others,
                                                                                    others))
        gg = own[f"gg{i}"]
        gg = gg + (1 - sb) * (stat - gg)
        own[f"gg{i}"] = gg
        if t == 1:
            qs[i], gap = _soap_eigh(gg)
            es.gaps.append(("eigh", t, i, gap))
        elif refresh:
            qs[i], v, gap, rmin = _soap_refresh(gg, qs[i], v, i)
            es.gaps += [("refresh", t, i, gap), ("qr", t, i, rmin)]
        own[f"q{i}"] = qs[i]
    if t >= 2:
        m = project(m)
    for e, mi, vi in zip(es, m.reshape(-1), v.reshape(-1), strict=True):
        e.s["exp_avg"], e.s["exp_avg_sq"] = mi, vi
    for f, x in own.items():
        es.own[f] = list(x.reshape(-1))


TENSOR_STEPS["soap"] = _soap_tensor
TENSOR_FIELDS["soap"] = ("exp_avg", "exp_avg_sq")
STATE_SHAPES["soap"] = soap_state_shapes
OWN_INIT = {"soap": _soap_init_own}


def soap_well_posed(grads: list, shape: tuple, hp: dict, *, tol: float = 1e-3,
                    digits: int = 20) -> bool:
    """Whether SOAP's trajectory under the gradients ``grads`` (one array per call) is
    well-posed: at every eigh the eigenvalues, at every refresh the sorted estimates
    diag(Q^T GG Q), separated by more than ``tol`` relative to the largest, and every QR's R
    diagonal at least ``tol`` times its largest (full rank). The trajectory depends on the basis
    inside a repeated eigenvalue and on the order of tied estimates: an ill-posed case has no
    golden (docs/conformance.md, S2)."""
    hp = {**hp, "_shape": tuple(shape)}
    with mpmath.workdps(digits):
        es = _Tensor([_Elem(mpmath.mpf(0), _init_fields("soap", hp))
                      for _ in range(int(np.prod(shape, dtype=np.int64)))],
                     soap_state_shapes(hp, shape))
        _soap_init_own(es)
        for t, gr in enumerate(grads, 1):
            _soap_tensor(es, [mpmath.mpf(float(x)) for x in np.asarray(gr).reshape(-1)], t, hp,
                         hp["lr"])
        return all(x > tol for *_, x in getattr(es, "gaps", []))
