"""The authors' AdaBelief package (``adabelief-pytorch``, ``AdaBelief``) as an implementation
under AdaBelief's ``upstream`` profile: ``adabelief-pytorch``.

It is a torch optimizer, so the torch adapter's machinery drives it (per-parameter groups, a
scheduled lr written into every group, the state read back from ``optimizer.state``). Its
conventions are constructor arguments (``weight_decouple``, ``fixed_decay``, ``rectify``,
``degenerated_to_sgd``), shared by all groups; ``eps`` is both the denominator guard and the
``eps_root`` it adds into ``exp_avg_var`` on every step; a rectified step puts eps on the
uncorrected root and an unrectified package puts it on sqrt(s_hat). The package prints its
settings when constructed; that output is swallowed. Not installed: every case is skipped with
the reason (``pip install adabelief-pytorch==0.2.1``, the ``upstream`` extra).
"""

from __future__ import annotations

import contextlib
import io

from .base import ABSENT, Given, present, unsupported
from .torch_optim import TorchAdapter

__all__ = ["AdaBeliefPytorchAdapter"]

# settings that are constructor arguments of the package (shared by every group), by the same
# name; the decay form (weight_decay_mode, decay_scaling) is one too, under other names
_CONSTRUCTOR = ("rectify", "degenerated_to_sgd")


def _why_not(hp: dict, dtype: str) -> str | None:
    hp = Given(hp)
    rectify = hp.get("rectify", True)
    fixed = {"nesterov": (False, "adabelief-pytorch has no Nesterov option"),
             "maximize": (False, "adabelief-pytorch has no maximize option"),
             "threshold": (5.0, "adabelief-pytorch rectifies when rho_t >= 5 (hard-coded)"),
             "eps_placement": ("hat" if rectify else "outside",
                               "adabelief-pytorch puts eps on sqrt(s) in the rectified step "
                               "(eps_placement='hat') and on sqrt(s_hat) without rectify "
                               "('outside')")}
    if dtype != "float64":
        fixed["factor_precision"] = ("float64", "adabelief-pytorch computes 1 - beta**t and "
                                     "rho_t in Python float64 (factor_precision='float64')")
    for name, (value, why) in fixed.items():
        if name in hp and hp[name] != value:
            return why
    if "eps_root" in hp and hp["eps_root"] != hp.get("eps", 1e-16):
        return "adabelief-pytorch adds its eps into exp_avg_var (eps_root = eps)"
    return None


class AdaBeliefPytorchAdapter(TorchAdapter):
    profile = "upstream"

    def __init__(self):
        self.mode = "forloop"
        self.name = "adabelief-pytorch"
        self.description = "adabelief_pytorch.AdaBelief (the authors' package)"

    def applies_to(self, case):
        return case.optimizer == "adabelief" and case.profile == self.profile

    def missing(self):
        try:
            import adabelief_pytorch  # noqa: F401
        except Exception as err:
            return (f"adabelief-pytorch is not installed ({type(err).__name__}; pip install "
                    f"adabelief-pytorch==0.2.1)")
        return None

    def version(self):
        import importlib.metadata

        return importlib.metadata.version("adabelief-pytorch")

    def supports(self, case):
        if case.optimizer != "adabelief":
            return unsupported(f"adabelief-pytorch has no counterpart of {case.optimizer}")
        top = {k: case.hparams.get(k) for k in (*_CONSTRUCTOR, "weight_decay_mode",
                                                "decay_scaling")}
        for p in case.params:
            hp = case.param_hparams(p.name)
            if any(hp.get(k) != v for k, v in top.items()):
                return unsupported("adabelief-pytorch takes rectify, degenerated_to_sgd and the "
                                   "decay form for the whole optimizer, not per group")
            why = _why_not(hp, case.dtype)
            if why:
                return unsupported(why)
        return None

    def build(self, case):
        import torch
        from adabelief_pytorch import AdaBelief

        hp = Given(case.hparams)
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()))
                  for k, v in case.init_params().items()}
        groups = []
        for k, p in params.items():
            g = Given(case.param_hparams(k))
            groups.append({"params": [p], **present({
                "lr": g["lr"], "betas": (g["beta1"], g["beta2"]), "eps": g["eps"],
                "weight_decay": g["weight_decay"]})})
        mode, scaling = hp["weight_decay_mode"], hp["decay_scaling"]
        top = present({**{k: hp[k] for k in _CONSTRUCTOR},
                       "weight_decouple": mode if mode is ABSENT else mode == "decoupled",
                       "fixed_decay": scaling if scaling is ABSENT else scaling == "fixed"})
        with self._dtype(case), contextlib.redirect_stdout(io.StringIO()):
            opt = AdaBelief(groups, print_change_log=False, **top)
        return {"case": case, "params": params, "opt": opt}

