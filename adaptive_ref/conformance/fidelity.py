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

import mpmath

__all__ = ["case_hparams"]  # the rest: private helpers of adaptive_ref.conformance.exact


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
    """The exact state of one element of one parameter."""

    def __init__(self, p, init_fields):
        self.p = p
        self.s = dict(init_fields)


def _init_fields(opt: str, hp: dict) -> dict:
    z = mpmath.mpf(0)
    if opt in TENSOR_FIELDS:
        return {f: z for f in TENSOR_FIELDS[opt]}
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
    raise KeyError(opt)


def _sqrt(x):
    return mpmath.sqrt(x)


def _step(opt: str, e: _Elem, g, t: int, hp: dict, lr, shared: dict) -> None:
    """One exact step of element ``e`` (``shared`` holds per-parameter scalars: NAdam's product)."""
    lr = _m(lr)
    S = e.s
    if hp.get("maximize"):
        g = -g
    wd = _m(hp.get("weight_decay", 0.0))
    mode = hp.get("weight_decay_mode", "coupled")
    if opt != "adamw" and mode == "coupled":
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
        rinf = 2 / (1 - b2) - 1
        if _param_factors(hp):  # rho_t evaluated in float32 (see the module doc)
            rinf = _f32(rinf)
            rho = _f32(rinf - _f32(_f32(2 * T * _pow(b2, T, hp)) / _f32(bc2)))
        else:
            rho = rinf - 2 * T * b2 ** T / bc2
        thr = _m(hp["threshold"])
        rect = rho >= thr if hp["threshold_inclusive"] else rho > thr
        mhat = S["mu"] / bc1
        if rect:
            r = _sqrt((rho - 4) * (rho - 2) * rinf / ((rinf - 4) * (rinf - 2) * rho))
            if hp["eps_placement"] == "hat":
                ad = _sqrt(bc2) / (_sqrt(S["nu"] + er) + eps)
            else:
                ad = 1 / (_sqrt(S["nu"] / bc2 + er) + eps)
            e.p = e.p - lr * r * mhat * ad
        else:
            e.p = e.p - lr * mhat
    else:
        raise KeyError(opt)


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
    return {**_FILL, **case.param_hparams(name), "_case_dtype": case.dtype}
