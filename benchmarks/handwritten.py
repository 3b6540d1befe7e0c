"""Hand-written NumPy steps: what a user would type for each elementwise optimizer.

The yardstick of the reference's per-call cost (issue 14, target 1): plain NumPy expressions,
the reference's default hyperparameters, no validation, no namespace lookup. Each
``make(p) -> step(g)`` keeps its own state and updates it like the reference's default knobs do
(the same work per element, not the same rounding order: these are timed, not compared).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STEPS"]


def _adam(p, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, ams=False, wd=0.0):
    s = {"p": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "vmax": np.zeros_like(p), "t": 0}

    def step(g):
        s["t"] += 1
        t = s["t"]
        p = s["p"] * (1 - lr * wd) if wd else s["p"]
        m = b1 * s["m"] + (1 - b1) * g
        v = b2 * s["v"] + (1 - b2) * (g * g)
        s["m"], s["v"] = m, v
        if ams:  # the running maximum of the raw v (torch's), v itself stays the EMA
            s["vmax"] = v = np.maximum(s["vmax"], v)
        s["p"] = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return step


def _sgd(p, *, lr=1e-3):
    s = {"p": p}

    def step(g):
        s["p"] = s["p"] - lr * g
    return step


def _adagrad(p, *, lr=1e-2, eps=1e-10):
    s = {"p": p, "s": np.zeros_like(p)}

    def step(g):
        s["s"] = s["s"] + g * g
        s["p"] = s["p"] - lr * (g / (np.sqrt(s["s"]) + eps))
    return step


def _rmsprop(p, *, lr=1e-2, alpha=0.99, eps=1e-8):
    s = {"p": p, "v": np.zeros_like(p)}

    def step(g):
        s["v"] = alpha * s["v"] + (1 - alpha) * (g * g)
        s["p"] = s["p"] - lr * (g / (np.sqrt(s["v"]) + eps))
    return step


def _adamax(p, *, lr=2e-3, b1=0.9, b2=0.999, eps=1e-8):
    s = {"p": p, "m": np.zeros_like(p), "u": np.zeros_like(p), "t": 0}

    def step(g):
        s["t"] += 1
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = np.maximum(b2 * s["u"], np.abs(g) + eps)
        s["p"] = s["p"] - lr / (1 - b1 ** s["t"]) * (s["m"] / s["u"])
    return step


def _nadam(p, *, lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, decay=4e-3):
    s = {"p": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0, "prod": 1.0}

    def step(g):
        s["t"] += 1
        t = s["t"]
        mu = b1 * (1 - 0.5 * 0.96 ** (t * decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * decay))
        s["prod"] *= mu
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * (g * g)
        den = np.sqrt(s["v"] / (1 - b2**t)) + eps
        s["p"] = (s["p"] - lr * (1 - mu) / (1 - s["prod"]) * (g / den)
                  - lr * mu_next / (1 - s["prod"] * mu_next) * (s["m"] / den))
    return step


def _radam(p, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    s = {"p": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0}
    rho_inf = 2 / (1 - b2) - 1

    def step(g):
        s["t"] += 1
        t = s["t"]
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * (g * g)
        bc2 = 1 - b2**t
        mh = s["m"] / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / bc2
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            s["p"] = s["p"] - mh * lr * (math.sqrt(bc2) / (np.sqrt(s["v"]) + eps)) * r
        else:
            s["p"] = s["p"] - mh * lr
    return step


# ---- the newer family (issue 11): the reference's defaults -------------------------------

def _adadelta(p, *, lr=1.0, rho=0.95, eps=1e-6):
    s = {"p": p, "v": np.zeros_like(p), "u": np.zeros_like(p)}

    def step(g):
        s["v"] = rho * s["v"] + (1 - rho) * (g * g)
        delta = np.sqrt(s["u"] + eps) / np.sqrt(s["v"] + eps) * g
        s["u"] = rho * s["u"] + (1 - rho) * (delta * delta)
        s["p"] = s["p"] - lr * delta
    return step


def _lion(p, *, lr=1e-4, b1=0.9, b2=0.99):
    s = {"p": p, "m": np.zeros_like(p)}

    def step(g):
        s["p"] = s["p"] - lr * np.sign(b1 * s["m"] + (1 - b1) * g)
        s["m"] = b2 * s["m"] + (1 - b2) * g
    return step


def _adopt(p, *, lr=1e-3, b1=0.9, b2=0.9999, eps=1e-6):
    s = {"p": p, "m": np.zeros_like(p), "v": None, "t": 0}

    def step(g):
        if s["v"] is None:  # the first step only sets v
            s["v"] = g * g
            return
        s["t"] += 1
        clip = s["t"] ** 0.25
        n = np.clip(g / np.maximum(np.sqrt(s["v"]), eps), -clip, clip)
        s["m"] = b1 * s["m"] + (1 - b1) * n
        s["p"] = s["p"] - lr * s["m"]
        s["v"] = b2 * s["v"] + (1 - b2) * (g * g)
    return step


def _adabelief(p, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16):
    s = {"p": p, "m": np.zeros_like(p), "s": np.zeros_like(p), "t": 0}

    def step(g):
        s["t"] += 1
        t = s["t"]
        s["m"] = b1 * s["m"] + (1 - b1) * g
        r = g - s["m"]
        s["s"] = b2 * s["s"] + (1 - b2) * (r * r) + eps_root
        s["p"] = s["p"] - lr * (s["m"] / (1 - b1**t)) / (np.sqrt(s["s"] / (1 - b2**t)) + eps)
    return step


def _adan(p, *, lr=1e-3, b1=0.98, b2=0.92, b3=0.99, eps=1e-8):
    s = {"p": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "n": np.zeros_like(p),
         "g": None, "t": 0}

    def step(g):
        s["t"] += 1
        t = s["t"]
        d = g - s["g"] if s["g"] is not None else np.zeros_like(g)
        s["g"] = g
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * d
        x = g + b2 * d
        s["n"] = b3 * s["n"] + (1 - b3) * (x * x)
        den = np.sqrt(s["n"]) / math.sqrt(1 - b3**t) + eps
        s["p"] = s["p"] - lr * (s["m"] / (1 - b1**t) + b2 * s["v"] / (1 - b2**t)) / den
    return step


def _schedule_free(p, *, adam: bool, lr, b1=0.9, b2=0.999, eps=1e-8, power=2.0):
    s = {"y": p, "z": p.copy(), "v": np.zeros_like(p), "t": 0, "wsum": 0.0, "lr_max": 0.0}

    def step(g):
        s["t"] += 1
        s["lr_max"] = max(s["lr_max"], lr)
        w = s["lr_max"] ** power
        s["wsum"] += w
        c = w / s["wsum"]
        if adam:
            s["v"] = b2 * s["v"] + (1 - b2) * (g * g)
            d = g / (np.sqrt(s["v"] / (1 - b2 ** s["t"])) + eps)
        else:
            d = g
        y = s["y"] * (1 - c) + s["z"] * c
        s["y"] = y + lr * (b1 * (1 - c) - 1) * d
        s["z"] = s["z"] - lr * d
    return step


# ---- the Bayesian and sparse ones: the reference's defaults ---------------------------------

def _von(p, *, lr=1e-3, b1=0.9, b2=0.999, prior=1.0, ess=1.0, hess_init=1.0):
    delta = prior / ess  # the Vadam form: the squared gradient as the Hessian estimate
    s = {"p": p, "m": np.zeros_like(p), "s": np.zeros_like(p) + hess_init, "t": 0}

    def step(g):
        s["t"] += 1
        s["s"] = b2 * s["s"] + (1 - b2) * (g * g)
        s["m"] = b1 * s["m"] + (1 - b1) * (g + delta * s["p"])
        s["p"] = s["p"] - lr * (s["m"] / (1 - b1 ** s["t"])) / (s["s"] + delta)
    return step


def _ivon(p, *, lr=0.1, hess_init=1.0, b1=0.9, b2=0.99999, wd=1e-4):
    s = {"p": p, "m": np.zeros_like(p), "h": np.zeros_like(p) + hess_init, "t": 0}

    def step(g):  # the gradient at the mean (no noise draw): the 'price' estimate is 0
        s["t"] += 1
        h, h_hat = s["h"], np.zeros_like(g)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        e = (1 - b2) * (h - h_hat)
        s["h"] = b2 * h + (1 - b2) * h_hat + 0.5 * e * (e / (h + wd))
        d = (s["m"] / (1 - b1 ** s["t"]) + wd * s["p"]) / (s["h"] + wd)
        s["p"] = s["p"] - lr * (hess_init + wd) * d
    return step


def _rootfree(p, *, lr=1e-2, b2=0.99, damping=1e-8):
    s = {"p": p, "S": np.ones_like(p)}

    def step(g):
        s["S"] = b2 * s["S"] + (1 - b2) * (g * g)
        s["p"] = s["p"] - lr * (g / (s["S"] + damping))
    return step


def _lazy_adam(p, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """A dense gradient (every row present): Adam with eps on the uncorrected sqrt(v)."""
    s = {"p": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0}

    def step(g):
        s["t"] += 1
        t = s["t"]
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * (g * g)
        s["p"] = s["p"] - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * (s["m"] / (np.sqrt(s["v"])
                                                                              + eps))
    return step


STEPS = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam,
         "amsgrad": lambda p: _adam(p, ams=True), "adamw": lambda p: _adam(p, wd=1e-2),
         "adamax": _adamax, "nadam": _nadam, "radam": _radam,
         "adadelta": _adadelta, "lion": _lion, "adopt": _adopt, "adabelief": _adabelief,
         "adan": _adan,
         "schedule_free_adamw": lambda p: _schedule_free(p, adam=True, lr=2.5e-3),
         "schedule_free_sgd": lambda p: _schedule_free(p, adam=False, lr=1.0),
         "von": _von, "ivon": _ivon, "rootfree_rmsprop": _rootfree, "lazy_adam": _lazy_adam,
         "sparse_adagrad": _adagrad}  # a dense gradient: every row present
