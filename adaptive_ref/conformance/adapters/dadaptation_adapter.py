"""The authors' D-Adaptation package (``dadaptation``, ``DAdaptAdam``) as an implementation under
D-Adapt AdamW's ``upstream`` profile: ``upstream-dadaptation``.

Driven as the authors' Prodigy package is (:mod:`.prodigyopt_adapter`: one group, so d and
numerator_weighted are the group's Python floats and the sums run over every parameter; the
state read back from ``optimizer.state`` and the group). The package prints a line when
decoupled decay is on; that output is swallowed. Not installed: every case is skipped with the
reason (``pip install dadaptation==3.2``, the ``upstream`` extra).
"""

from __future__ import annotations

from .base import present
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

    def _optimizer_class(self):
        from dadaptation import DAdaptAdam

        return DAdaptAdam

    def _kwargs(self, hp, decouple) -> dict:
        return present(dict(
            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"], d0=hp["d0"], growth_rate=hp["growth_rate"],
            use_bias_correction=hp["bias_correction"], decouple=decouple))
