"""The authors' code as an implementation under the ``upstream`` profile: ``upstream-schedulefree``
drives ``schedulefree.AdamWScheduleFree`` and ``schedulefree.SGDScheduleFree`` (the PyPI package
of facebookresearch/schedule_free; pinned to 1.4.1, after the 2024-11-04 change) on torch, CPU.

Each parameter is a torch tensor of the case dtype with its own optimizer (its own group: the
weights ``weight_sum``/``lr_max`` are per group upstream, as they are per parameter in the
reference). The optimizer is put in train mode once; a scheduled lr is written into the group's
``lr`` before each step (upstream multiplies it by its warm-up factor). The default ``foreach``
path runs. At a checkpoint the evaluation point x is computed as ``optimizer.eval()`` computes
it, ``y.lerp(z, 1 - 1/beta1)``, on a copy: an ``eval()``/``train()`` round trip would re-round y
and perturb the rest of the trajectory.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .base import ABSENT, Adapter, Given, present, unsupported
from .torch_optim import one_thread

__all__ = ["UpstreamScheduleFreeAdapter", "VERSION"]

VERSION = "1.4.1"  # the schedulefree release the upstream profiles were read from
_CLASSES = {"schedule_free_adamw": "AdamWScheduleFree", "schedule_free_sgd": "SGDScheduleFree"}


def _kwargs(opt: str, hp: dict) -> dict:
    """schedulefree keyword arguments for the canonical settings ``hp`` (those ``hp`` does not
    name are left at the package's defaults)."""
    hp = Given(hp)

    def num(name, kind=float):
        return hp[name] if hp[name] is ABSENT else kind(hp[name])

    kw = dict(lr=num("lr"), weight_decay=num("weight_decay"),
              warmup_steps=num("warmup_steps", int), r=num("r"),
              weight_lr_power=num("weight_lr_power"))
    if opt == "schedule_free_adamw":
        kw.update(betas=(num("beta1"), num("beta2")), eps=num("eps"))
    else:
        kw["momentum"] = num("beta1")
    return present(kw)


class UpstreamScheduleFreeAdapter(Adapter):
    profile = "upstream"
    name = "upstream-schedulefree"
    description = f"schedulefree {VERSION} (facebookresearch/schedule_free) on torch, CPU"

    def missing(self):
        for mod in ("schedulefree", "torch"):
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError) as err:  # a broken or blocked install
                return f"{mod} is not importable ({type(err).__name__}: {err})"
            if not found:
                return (f"{mod} is not installed (pip install schedulefree=={VERSION}: the "
                        f"authors' schedule-free optimizers)")
        return None

    def version(self):
        from importlib.metadata import version

        return version("schedulefree")

    def supports(self, case):
        from adaptive_ref import registry

        if case.optimizer not in _CLASSES:
            return unsupported(f"schedulefree has no counterpart of {case.optimizer}")
        spec = registry.get(case.optimizer)
        own = spec.profiles["upstream"].settings
        for p in case.params:
            hp = Given(case.param_hparams(p.name))  # a setting the case does not name: built in
            for knob in spec.knobs:
                if hp[knob.name] is ABSENT:
                    continue
                if knob.name == "factor_precision" and case.dtype == "float64":
                    continue  # 'param' is float64 here: the two values compute the same numbers
                if knob.name in ("warmup_lag", "warmup_precision") and not hp["warmup_steps"]:
                    continue  # no warm-up: the knob does not act
                if knob.name == "weight_decay_form" and not hp["weight_decay"]:
                    continue
                if hp[knob.name] != own[knob.name]:
                    return unsupported(f"schedulefree.{_CLASSES[case.optimizer]} has "
                                       f"{knob.name}={own[knob.name]!r} built in (the case sets "
                                       f"{hp[knob.name]!r})")
            if hp["warmup_steps"] and float(hp["warmup_steps"]) != int(hp["warmup_steps"]):
                return unsupported("schedulefree takes an integer warmup_steps")
        return None

    def run(self, case):
        with one_thread():  # as the torch.optim adapter (restored afterwards)
            return super().run(case)

    def build(self, case):
        import schedulefree
        import torch

        dtype = getattr(torch, case.dtype)
        cls = getattr(schedulefree, _CLASSES[case.optimizer])
        h = {"params": {}, "opts": {}, "beta1": {}}
        for k, v in case.init_params().items():
            p = torch.tensor(np.asarray(v), dtype=dtype, requires_grad=True)
            hp = case.param_hparams(k)
            opt = cls([p], **_kwargs(case.optimizer, hp))
            opt.train()
            group = opt.param_groups[0]  # beta1: the case's, else the package's default
            beta1 = group["betas"][0] if "betas" in group else group["momentum"]
            h["params"][k], h["opts"][k], h["beta1"][k] = p, opt, float(beta1)
        h["dtype"] = dtype
        return h

    def step(self, h, grads, lr):
        import torch

        for k, g in grads.items():
            p, opt = h["params"][k], h["opts"][k]
            p.grad = torch.tensor(np.asarray(g), dtype=h["dtype"])
            if lr is not None:
                opt.param_groups[0]["lr"] = float(lr)
            opt.step()

    def read_params(self, h):
        return {k: p.detach().numpy().copy() for k, p in h["params"].items()}

    def read(self, h):
        state = {}
        for k, p in h["params"].items():
            opt = h["opts"][k]
            group, st = opt.param_groups[0], opt.state[p]
            y = p.detach()
            fields = {"count": int(group["k"]), "weight_sum": float(group["weight_sum"]),
                      "lr_max": float(group["lr_max"]), "z": st["z"].numpy().copy(),
                      # optimizer.eval(): y.lerp_(z, 1 - 1/beta1), here on a copy
                      "x": y.clone().lerp_(st["z"], 1 - 1 / h["beta1"][k]).numpy()}
            if "exp_avg_sq" in st:
                fields["nu"] = st["exp_avg_sq"].numpy().copy()
            state[k] = fields
        return self.read_params(h), state
