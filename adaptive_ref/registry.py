"""The one registry of optimizers: tests, conformance cases, the CLI and the docs iterate over it.

Adding an optimizer is one module (State, init, step, ``SPEC``) plus one line in ``_SPECS``.
"""

from __future__ import annotations

from ._spec import REQUIRED, HParam, OptimizerSpec, Profile
from .optimizers.adabelief import ADABELIEF
from .optimizers.adadelta import ADADELTA
from .optimizers.adafactor import ADAFACTOR
from .optimizers.adagrad import ADAGRAD
from .optimizers.adam import ADAM, ADAMW, AMSGRAD
from .optimizers.adamax import ADAMAX
from .optimizers.adan import ADAN
from .optimizers.adopt import ADOPT
from .optimizers.dadapt_adamw import DADAPT_ADAMW
from .optimizers.full_matrix_adagrad import FULL_MATRIX_ADAGRAD
from .optimizers.ivon import IVON
from .optimizers.lamb import LAMB
from .optimizers.lars import LARS
from .optimizers.lion import LION
from .optimizers.muon import MUON
from .optimizers.nadam import NADAM
from .optimizers.prodigy import PRODIGY
from .optimizers.radam import RADAM
from .optimizers.rmsprop import RMSPROP
from .optimizers.rootfree import ROOTFREE
from .optimizers.schedule_free import SCHEDULE_FREE_ADAMW, SCHEDULE_FREE_SGD
from .optimizers.sgd import SGD
from .optimizers.shampoo import SHAMPOO
from .optimizers.soap import SOAP
from .optimizers.von import VON
from .sparse import LAZY_ADAM, ROWWISE_ADAGRAD, SPARSE_ADAGRAD

__all__ = ["REGISTRY", "get", "names", "state_types", "state_type_key", "OptimizerSpec", "HParam",
           "Profile", "REQUIRED"]

_SPECS: tuple[OptimizerSpec, ...] = (SGD, ADAGRAD, RMSPROP, ADAM, AMSGRAD, ADAMW, ADAMAX, NADAM,
                                     RADAM, VON, IVON, ROOTFREE, SHAMPOO, FULL_MATRIX_ADAGRAD)

_SPECS += (LAZY_ADAM, SPARSE_ADAGRAD, ROWWISE_ADAGRAD)  # adaptive_ref.sparse (row-sparse)
_SPECS += (ADADELTA, LION, ADOPT, ADABELIEF, ADAN, SCHEDULE_FREE_ADAMW,
           SCHEDULE_FREE_SGD)  # issue 11: the newer family (elementwise)
_SPECS += (MUON,)  # Newton-Schulz on 2-D parameters (coupling="tensor"; adaptive_ref.routing)
_SPECS += (LAMB, LARS)  # per-tensor trust ratios (coupling="tensor")
_SPECS += (ADAFACTOR,)  # factored second moments (coupling="tensor")
_SPECS += (SOAP,)  # eigh/QR eigenbases (Dask: no linalg.eigh); goldens for well-posed cases only
_SPECS += (PRODIGY,)  # whole-model sums (coupling="tree": adaptive_ref._global)
_SPECS += (DADAPT_ADAMW,)  # whole-model sums like Prodigy (coupling="tree")
REGISTRY: dict[str, OptimizerSpec] = {s.name: s for s in _SPECS}


_BUILTIN = frozenset(REGISTRY)


def _origin(spec: OptimizerSpec) -> tuple:
    return tuple((getattr(f, "__module__", None), getattr(f, "__qualname__", None))
                 for f in (spec.init, spec.step))


def register(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add an optimizer to the registry (tests, conformance cases, CLI and docs then see it).

    Registering a name again (a notebook cell run twice) follows one rule:

    * the same spec object: nothing happens;
    * a spec whose ``init`` and ``step`` have the same module and qualified names as the
      registered one's (the same definition, executed again): it replaces the old entry;
    * anything else under a taken name, including every built-in name, is a ``ValueError``
      unless ``replace=True`` (an explicit, deliberate replacement).
    """
    old = REGISTRY.get(spec.name)
    if old is not None and old is not spec and not replace:
        if spec.name in _BUILTIN:
            msg = (f"{spec.name!r} is a built-in optimizer; pass replace=True to replace it "
                   f"deliberately, or register yours under another name")
            raise ValueError(msg)
        if _origin(old) != _origin(spec):
            msg = (f"an optimizer named {spec.name!r} is already registered (init/step from "
                   f"{_origin(old)[1][0]}.{_origin(old)[1][1]}); pass replace=True to replace it")
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


def state_types() -> dict[str, type]:
    """Every registered optimizer's state type under a unique key: its class name, or, for a
    later-registered type whose class name is already taken (a user's ``AdamState``), its
    ``module.qualname``. Built-ins come first, so a user's optimizer never takes a built-in's key
    (a saved built-in state keeps loading)."""
    out: dict[str, type] = {}
    seen: set[int] = set()
    for spec in REGISTRY.values():
        tp = spec.state_type
        if id(tp) in seen:
            continue
        seen.add(id(tp))
        key = tp.__name__
        if key in out:
            key = f"{tp.__module__}.{tp.__qualname__}"
        out[key] = tp
    return out


def state_type_key(tp: type) -> str | None:
    """The key of ``tp`` in :func:`state_types` (None when no registered optimizer uses it)."""
    for key, known in state_types().items():
        if known is tp:
            return key
    return None
