"""The authors' Prodigy package (``prodigyopt``, ``Prodigy``) as an implementation under
Prodigy's ``upstream`` profile: ``upstream-prodigyopt``.

It is a torch optimizer, so the torch adapter's machinery drives it (a scheduled lr written into
every group, the gradients set on the parameters). All parameters are one group: Prodigy's d,
d_max and d_numerator are the group's (Python floats), its sums run over every parameter. The
state is read back from ``optimizer.state`` (``s`` and ``p0`` are kept flattened, and ``p0`` as
a 0-d zero for a parameter that starts at 0: both are given the parameter's shape) and the
group. The package prints a line when decoupled decay is on; that output is swallowed. Not
installed: every case is skipped with the reason (``pip install prodigyopt==1.1.2``, the
``upstream`` extra).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from .base import Given, present, unsupported
from .torch_optim import TorchAdapter

__all__ = ["ProdigyoptAdapter"]

_STATE = {"exp_avg": "mu", "exp_avg_sq": "nu", "s": "s", "p0": "p0", "step": "count"}


class ProdigyoptAdapter(TorchAdapter):
    profile = "upstream"
    optimizer = "prodigy"
    package = "prodigyopt==1.1.2"
    scalars = {"d": "d", "d_max": "d_max", "d_numerator": "d_numerator"}  # ours: the group's

    def __init__(self):
        self.mode = "forloop"
        self.name = "upstream-prodigyopt"
        self.description = "prodigyopt.Prodigy (the authors' package)"

    def applies_to(self, case):
        return case.optimizer == self.optimizer and case.profile == self.profile

    def missing(self):
        import importlib

        module = self.package.split("==")[0]
        try:
            importlib.import_module(module)
        except Exception as err:
            return (f"{module} is not installed ({type(err).__name__}; pip install "
                    f"{self.package})")
        return None

    def version(self):
        import importlib.metadata

        return importlib.metadata.version(self.package.split("==")[0])

    def supports(self, case):
        module = self.package.split("==")[0]
        if case.optimizer != self.optimizer:
            return unsupported(f"{module} has no counterpart of {case.optimizer}")
        hp = Given(case.hparams)
        if case.dtype != "float64" and hp.get("factor_precision", "float64") != "float64":
            return unsupported(f"{module} keeps {', '.join(self.scalars)} in Python floats and "
                               "sums the per-tensor reductions in float64 "
                               "(factor_precision='float64')")
        return None

    def build(self, case):
        import torch

        hp = Given(case.hparams)
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()))
                  for k, v in case.init_params().items()}
        mode = hp["weight_decay_mode"]
        kw = self._kwargs(hp, decouple=mode if not mode else mode == "decoupled")
        with self._dtype(case), contextlib.redirect_stdout(io.StringIO()):
            opt = self._optimizer_class()(list(params.values()), **kw)
        return {"case": case, "params": params, "opt": opt}

    def _optimizer_class(self):
        from prodigyopt import Prodigy

        return Prodigy

    def _kwargs(self, hp, decouple) -> dict:
        """The package's constructor arguments for the case's settings (those it names)."""
        kw = present(dict(
            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"], d0=hp["d0"], d_coef=hp["d_coef"],
            growth_rate=hp["growth_rate"], slice_p=hp["slice_p"],
            use_bias_correction=hp["bias_correction"], safeguard_warmup=hp["safeguard_warmup"],
            decouple=decouple))
        b3 = hp["beta3"]
        if b3 and b3 != -1.0:
            kw["beta3"] = b3
        return kw

    def read(self, h):
        group = h["opt"].param_groups[0]
        state = {}
        for k, p in h["params"].items():
            out = {}
            for name, v in h["opt"].state.get(p, {}).items():
                canon = _STATE.get(name)
                if canon is None:
                    continue
                if canon == "count":
                    out[canon] = int(v)
                    continue
                a = v.detach().numpy().copy()
                out[canon] = np.broadcast_to(a.reshape(p.shape) if a.size == p.numel() else a,
                                             tuple(p.shape)).copy()
            out.update({ours: float(group[theirs]) for ours, theirs in self.scalars.items()})
            state[k] = out
        return self.read_params(h), state
