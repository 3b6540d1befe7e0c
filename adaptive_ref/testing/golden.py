"""Golden cases for other libraries' test suites.

Three lines parametrise a test over every golden case of an optimizer::

    from adaptive_ref.testing import golden_cases, assert_matches_golden, replay

    @pytest.mark.parametrize("case", golden_cases("adam", profile="torch"))
    def test_my_adam(case):
        assert_matches_golden(case, replay(case, init=my_init, step=my_step))

or, with the pytest plugin loaded, ``@pytest.mark.golden("adam", profile="torch")`` on a test
that takes the ``golden_case`` fixture. :class:`GoldenCase` (the format's reader) gives the
case's settings in canonical names (``case.param_hparams(name)``), its inputs
(``case.init_params()``, ``case.gradients(step)``) and the expected values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from adaptive_ref.conformance.format import FormatError, GoldenCase

__all__ = ["GoldenCase", "FormatError", "load_golden_cases", "golden_cases", "replay"]


def load_golden_cases(optimizer: str | None = None, *, profile: str | None = None,
                      dtype: str | None = None, kind: str | None = None,
                      tags: tuple[str, ...] = ()) -> list:
    """The committed golden cases (checksums verified), filtered."""
    from adaptive_ref.conformance.format import load_cases

    out = load_cases(optimizer, dtype=dtype)
    return [c for c in out if (profile is None or c.profile == profile)
            and (kind is None or c.kind == kind) and all(t in c.tags for t in tags)]


def golden_cases(optimizer: str | None = None, **filters) -> list:
    """``pytest.param`` objects (id = the case id) for ``@pytest.mark.parametrize``."""
    import pytest

    return [pytest.param(c, id=c.id) for c in load_golden_cases(optimizer, **filters)]


def replay(case, *, init: Callable, step: Callable, to_numpy: Callable = np.asarray) -> dict:
    """Drive a functional optimizer through ``case``; returns ``{step: (params, state)}``.

    ``init(name, param, hparams) -> state`` and ``step(name, param, grad, state, hparams) ->
    (param, state)`` are called per parameter with NumPy inputs in the case dtype and the
    parameter's canonical hyperparameters (``hparams["lr"]`` already set to the scheduled lr).
    A state that is a mapping of canonical field names is compared too; any other state is not.
    """
    params = dict(case.init_params())
    states = {k: init(k, v, case.param_hparams(k)) for k, v in params.items()}
    out: dict[int, Any] = {}
    for t in range(1, case.steps + 1):
        np_params = {k: np.asarray(to_numpy(v)) for k, v in params.items()}
        grads = case.gradients(t) if case.kind == "replay" else case.gradients(t, np_params)
        for k in params:
            hp = case.param_hparams(k)
            if case.lr_schedule is not None:
                hp["lr"] = case.lr_at(t)
            params[k], states[k] = step(k, params[k], grads[k], states[k], hp)
        if t in case.checkpoints:
            st = {k: ({f: to_numpy(v) for f, v in s.items()} if isinstance(s, dict) else {})
                  for k, s in states.items()}
            out[t] = ({k: np.asarray(to_numpy(v)) for k, v in params.items()}, st)
    return out
