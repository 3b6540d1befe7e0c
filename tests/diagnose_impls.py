"""Hand-written NumPy optimizers with known conventions, as adapters for the convention
diagnosis tests (tests/test_diagnose.py). Each takes only what a user passes (lr, betas,
weight_decay) and keeps its own eps and conventions, as a library would."""

from __future__ import annotations

import numpy as np

from adaptive_ref.conformance.adapters.base import Adapter


class NumpyAdam(Adapter):
    """torch-style Adam (Algorithm 1, coupled L2 weight decay, eps 1e-8 outside the root);
    subclasses change one thing."""

    profile = None
    eps = 1e-8

    def supports(self, case):
        return None if case.optimizer == self.optimizer else f"unsupported: only {self.optimizer}"

    optimizer = "adam"

    def build(self, case):
        params = {k: v.astype(np.float64).copy() for k, v in case.init_params().items()}
        state = {k: {"m": np.zeros_like(v), "v": np.zeros_like(v)} for k, v in params.items()}
        return {"case": case, "params": params, "state": state, "t": 0, "extra": {}}

    def step(self, h, grads, lr):
        h["t"] += 1
        self.begin_step(h)
        for k, g in grads.items():
            hp = h["case"].param_hparams(k)
            hp["lr"] = hp["lr"] if lr is None else lr
            h["params"][k] = self.update(h["params"][k], np.asarray(g, np.float64),
                                         h["state"][k], h["t"], hp, h["extra"])

    def begin_step(self, h):
        pass

    def update(self, p, g, s, t, hp, extra):
        b1, b2 = hp["beta1"], hp["beta2"]
        g = g + hp["weight_decay"] * p
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return p - hp["lr"] * m_hat / self.denominator(v_hat)

    def denominator(self, v_hat):
        return np.sqrt(v_hat) + self.eps

    def read(self, h):
        return {k: v.copy() for k, v in h["params"].items()}, {}


class EpsInSqrtAdam(NumpyAdam):
    """Adam with eps inside the square root: m_hat / sqrt(v_hat + eps)."""

    name = "test-adam-eps-in-sqrt"

    def denominator(self, v_hat):
        return np.sqrt(v_hat + self.eps)


class DropsWeightDecayAdam(NumpyAdam):
    """Adam that accepts weight_decay and silently does nothing with it."""

    name = "test-adam-drops-weight-decay"

    def update(self, p, g, s, t, hp, extra):
        return super().update(p, g, s, t, {**hp, "weight_decay": 0.0}, extra)


class KerasLikeAdam(NumpyAdam):
    """keras.md's Adam: decoupled lr-scaled decay first (p -= lr*wd*p), then the eps-hat step
    lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps) with eps 1e-7."""

    name = "test-keras-like-adam"
    eps = 1e-7

    def declared_settings(self, optimizer):
        return {"eps": self.eps}

    def update(self, p, g, s, t, hp, extra):
        b1, b2, lr = hp["beta1"], hp["beta2"], hp["lr"]
        p = p - p * hp["weight_decay"] * lr
        s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
        s["v"] = s["v"] + (g * g - s["v"]) * (1 - b2)
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - alpha * s["m"] / (np.sqrt(s["v"]) + self.eps)


class KerasLikeNadam(KerasLikeAdam):
    """keras.md's Nadam: torch's momentum schedule with psi = 1 hard-coded,
    mu_t = b1 (1 - 0.5 * 0.96^t), eps 1e-7 outside sqrt(v_hat), decoupled lr-scaled decay."""

    name = "test-keras-like-nadam"
    optimizer = "nadam"

    def begin_step(self, h):
        b1 = h["case"].hparams["beta1"]
        t = h["t"]
        ex = h["extra"]
        ex["u_t"] = b1 * (1 - 0.5 * 0.96**t)
        ex["u_t1"] = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        ex["prod"] = ex.get("prod", 1.0) * ex["u_t"]

    def update(self, p, g, s, t, hp, ex):
        b1, b2, lr = hp["beta1"], hp["beta2"], hp["lr"]
        p = p - p * hp["weight_decay"] * lr
        s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
        s["v"] = s["v"] + (g * g - s["v"]) * (1 - b2)
        m_hat = (ex["u_t1"] * s["m"] / (1 - ex["prod"] * ex["u_t1"])
                 + (1 - ex["u_t"]) * g / (1 - ex["prod"]))
        v_hat = s["v"] / (1 - b2**t)
        return p - m_hat * lr / (np.sqrt(v_hat) + self.eps)


class OffByOneAdam(NumpyAdam):
    """Adam whose bias correction uses t + 1 (a bug no setting of the reference reproduces)."""

    name = "test-adam-off-by-one"

    def update(self, p, g, s, t, hp, extra):
        return super().update(p, g, s, t + 1, hp, extra)
