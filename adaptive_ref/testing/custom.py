"""Plugging in your own optimizer: a minimal spec, the golden cases it can run, and a replay.

Three steps take an implementation of, say, Adam written in your own library through the
project's invariants and goldens::

    from adaptive_ref.testing import minimal_spec, check_invariants, runnable_cases
    from adaptive_ref.testing import assert_matches_golden

    spec = minimal_spec("my_adam", my_init, my_step, like="adam",
                        hparams={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    check_invariants(spec, reference="adam")          # no golden file needed
    for case in runnable_cases(spec, reference="adam").cases:
        assert_matches_golden(case, replay_spec(case, spec))

``my_init(param)`` returns any state (a NamedTuple or dict of arrays is also compared field by
field where its names are the reference's: ``mu``, ``nu``, ...); ``my_step(param, grad, state,
**hparams)`` returns ``(param, state)`` and takes exactly the hyperparameters named in
``hparams``. Hyperparameters of the reference that the spec does not name are taken to be at
the reference's default: a case or invariant that needs another value is skipped, with the
reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .._spec import HParam, OptimizerSpec

__all__ = ["minimal_spec", "runnable_cases", "Runnable", "replay_spec"]


def _reference(name: str) -> OptimizerSpec:
    from .. import registry

    if name not in registry.REGISTRY:
        msg = (f"like={name!r} is not a registered optimizer; registered: "
               f"{', '.join(registry.names())}")
        raise ValueError(msg)
    return registry.REGISTRY[name]


def minimal_spec(name: str, init: Callable, step: Callable, *, like: str,
                 hparams: Mapping[str, Any] | Sequence[str | HParam] | None = None,
                 state_type: type = object, elementwise: bool | None = None) -> OptimizerSpec:
    """An :class:`~adaptive_ref._spec.OptimizerSpec` for your ``init``/``step``, borrowing the
    hyperparameter declarations (meaning, range, knob) of the registered optimizer ``like``.

    ``hparams``: the names your ``step`` takes, as a mapping to your defaults, a sequence of
    names (the reference's defaults) or of :class:`HParam` objects (new hyperparameters);
    default: all of the reference's. ``init`` is called as ``init(param)`` plus only those of
    the names that the reference marks as init knobs (``amsgrad``); nothing else is passed.
    """
    ref = _reference(like)
    if not callable(init) or not callable(step):
        msg = "minimal_spec: init and step must be callables"
        raise TypeError(msg)
    if hparams is None:
        hparams = ref.hparam_names
    declared: list[HParam] = []
    items = hparams.items() if isinstance(hparams, Mapping) else [(h, None) for h in hparams]
    for key, default in items:
        if isinstance(key, HParam):
            declared.append(key)
            continue
        if key not in ref.hparam_names:
            msg = (f"minimal_spec: {like} has no hyperparameter {key!r} (it has "
                   f"{', '.join(ref.hparam_names)}); pass an HParam to declare a new one")
            raise ValueError(msg)
        h = ref.hparam(key)
        if isinstance(hparams, Mapping):
            h = HParam(**{**h.__dict__, "default": default})
        declared.append(h)
    names = {h.name for h in declared}
    return OptimizerSpec(
        name=name, title=f"{name} (an implementation of {ref.title})", init=init, step=step,
        state_type=state_type, hparams=tuple(declared), paper=ref.paper,
        summary=f"user implementation checked against {like}",
        fixed={k: v for k, v in ref.fixed.items() if k in names},
        elementwise=ref.elementwise if elementwise is None else elementwise)


class Runnable(NamedTuple):
    """``cases``: golden cases the implementation can express; ``skipped``: ``(case id,
    reason)`` for the others."""

    cases: list
    skipped: list[tuple[str, str]]


def _case_reason(case, spec: OptimizerSpec, ref: OptimizerSpec) -> str | None:
    for p in case.params:
        for k, v in case.param_hparams(p.name).items():
            if k in spec.hparam_names:
                h = spec.hparam(k)
                if h.kind == "choice" and v not in h.choices:
                    return f"sets {k}={v!r}; {spec.name} accepts {h.range_text()}"
                continue
            if k in ref.hparam_names and ref.hparam(k).default != v:
                return (f"sets {k}={v!r}; {spec.name} has no {k} (it implements "
                        f"{ref.hparam(k).default!r})")
    if getattr(case, "row_sparse", lambda: False)():
        return "row-sparse gradients"
    return None


def runnable_cases(spec: OptimizerSpec, *, reference: str | None = None,
                   profile: str | None = None, dtype: str | None = None) -> Runnable:
    """The committed golden cases of ``reference`` (default ``spec.name``) that ``spec`` can run,
    and the reasons for the rest (a knob it lacks set to a non-default value, or a value outside
    its choices)."""
    from .golden import load_golden_cases

    ref = _reference(reference or spec.name)
    ok, skipped = [], []
    for case in load_golden_cases(ref.name, profile=profile, dtype=dtype):
        why = _case_reason(case, spec, ref)
        if why is None:
            ok.append(case)
        else:
            skipped.append((case.id, why))
    return Runnable(ok, skipped)


def replay_spec(case, spec: OptimizerSpec) -> dict:
    """:func:`adaptive_ref.testing.replay` with ``spec``'s functions, each called with only the
    hyperparameters ``spec`` declares (from the case's canonical settings)."""
    from .golden import replay

    names = set(spec.hparam_names)

    def init(name, param, hp):
        return spec.init(param, **{k: v for k, v in hp.items() if k in spec.init_names})

    def step(name, param, grad, state, hp):
        return spec.step(param, grad, state, **{k: v for k, v in hp.items() if k in names})

    return replay(case, init=init, step=step)
