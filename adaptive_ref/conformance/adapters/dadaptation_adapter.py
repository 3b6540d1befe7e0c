"""The authors' D-Adaptation package (``dadaptation``, ``DAdaptAdam``) as an implementation under
D-Adapt AdamW's ``upstream`` profile: ``upstream-dadaptation``.

Driven as the authors' Prodigy package is (:mod:`.prodigyopt_adapter`: one group, so d and
numerator_weighted are the group's Python floats and the sums run over every parameter; the
state read back from ``optimizer.state`` and the group). The package prints a line when
decoupled decay is on; that output is swallowed. Not installed: every case is skipped with the
reason (``pip install dadaptation==3.2``, the ``upstream`` extra).
"""

from __future__ import annotations

import contextlib
import io

from .base import Given, present
from .prodigyopt_adapter import ProdigyoptAdapter

__all__ = ["DAdaptationAdapter"]


class DAdaptationAdapter(ProdigyoptAdapter):
    optimizer = "dadapt_adamw"
    package = "dadaptation==3.2"
    scalars = {"d": "d", "d_numerator": "numerator_weighted"}

    def __init__(self):
        super().__init__()
        self.name = "upstream-dadaptation"
        self.description = "dadaptation.DAdaptAdam (the authors' package)"

    def build(self, case):
        import torch
        from dadaptation import DAdaptAdam

        hp = Given(case.hparams)
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()))
                  for k, v in case.init_params().items()}
        mode = hp["weight_decay_mode"]
        kw = present(dict(
            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"], d0=hp["d0"], growth_rate=hp["growth_rate"],
            use_bias_correction=hp["bias_correction"],
            decouple=mode if not mode else mode == "decoupled"))
        with self._dtype(case), contextlib.redirect_stdout(io.StringIO()):
            opt = DAdaptAdam(list(params.values()), **kw)
        return {"case": case, "params": params, "opt": opt}
