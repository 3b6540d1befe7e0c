"""The one registry of optimizers: tests, conformance cases, the CLI and the docs iterate over it.

Adding an optimizer is one module (State, init, step, ``SPEC``) plus one line in ``_SPECS``.
"""

from __future__ import annotations

from ._spec import REQUIRED, HParam, OptimizerSpec, Profile
from .optimizers.adagrad import ADAGRAD
from .optimizers.adam import ADAM, ADAMW, AMSGRAD
from .optimizers.adamax import ADAMAX
from .optimizers.full_matrix_adagrad import FULL_MATRIX_ADAGRAD
from .optimizers.ivon import IVON
from .optimizers.nadam import NADAM
from .optimizers.radam import RADAM
from .optimizers.rmsprop import RMSPROP
from .optimizers.rootfree import ROOTFREE
from .optimizers.sgd import SGD
from .optimizers.shampoo import SHAMPOO
from .optimizers.von import VON
from .sparse import LAZY_ADAM, ROWWISE_ADAGRAD, SPARSE_ADAGRAD

__all__ = ["REGISTRY", "get", "names", "OptimizerSpec", "HParam", "Profile", "REQUIRED"]

_SPECS: tuple[OptimizerSpec, ...] = (SGD, ADAGRAD, RMSPROP, ADAM, AMSGRAD, ADAMW, ADAMAX, NADAM,
                                     RADAM, VON, IVON, ROOTFREE, SHAMPOO, FULL_MATRIX_ADAGRAD)

_SPECS += (LAZY_ADAM, SPARSE_ADAGRAD, ROWWISE_ADAGRAD)  # adaptive_ref.sparse (row-sparse)
REGISTRY: dict[str, OptimizerSpec] = {s.name: s for s in _SPECS}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Add an optimizer (used by the modules of other issues: sparse, natural-gradient, ...)."""
    if spec.name in REGISTRY and REGISTRY[spec.name] is not spec:
        msg = f"an optimizer named {spec.name!r} is already registered"
        raise ValueError(msg)
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> OptimizerSpec:
    """The spec of ``name``; a KeyError lists the registered names."""
    try:
        return REGISTRY[name]
    except KeyError:
        msg = f"unknown optimizer {name!r}; registered: {', '.join(REGISTRY)}"
        raise KeyError(msg) from None


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)
