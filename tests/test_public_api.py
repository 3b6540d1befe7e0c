"""The public surface: ``__all__``, the registry's functions exported, no backend imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import adaptive_ref
from adaptive_ref.registry import REGISTRY

CORE = ("sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam", "radam")


def test_all_names_exist():
    assert len(set(adaptive_ref.__all__)) == len(adaptive_ref.__all__)
    for name in adaptive_ref.__all__:
        assert hasattr(adaptive_ref, name), name


@pytest.mark.parametrize("name", CORE)
def test_registry_functions_are_exported(name):
    spec = REGISTRY[name]
    for fn in (spec.init, spec.step):
        assert fn.__name__ in adaptive_ref.__all__, fn.__name__
        assert getattr(adaptive_ref, fn.__name__) is fn
    assert spec.state_type.__name__ in adaptive_ref.__all__
    assert spec.step.__doc__ and spec.init.__doc__


@pytest.mark.parametrize("name", CORE)
def test_every_spec_describes_itself(name):
    """One registry drives tests, CLI and docs: every entry has a paper, a summary, both
    profiles, and a meaning and a valid default for every hyperparameter."""
    spec = REGISTRY[name]
    assert spec.name == name and spec.paper and spec.summary
    assert {"torch", "optax"} <= set(spec.profiles)
    for h in spec.hparams:
        assert h.meaning, h.name
        if h.kind == "real":
            assert h.contains(float(h.default)), (name, h.name)
        elif h.kind == "choice":
            assert h.default in h.choices, (name, h.name)
    for profile in spec.profiles.values():
        for k in profile.settings:
            spec.hparam(k)  # profiles only name real hyperparameters


def test_import_and_numpy_step_load_no_other_backend():
    code = (
        "import sys, json\n"
        "import numpy as np\n"
        "import adaptive_ref\n"
        "p = np.zeros(3)\n"
        "s = adaptive_ref.adam_init(p)\n"
        "p, s = adaptive_ref.adam_step(p, np.ones(3), s, lr=0.1)\n"
        "opt = adaptive_ref.make('adamw', profile='torch')\n"
        "st = opt.init({'w': p})\n"
        "opt.step({'w': p}, {'w': np.ones(3)}, st)\n"
        "banned = ('torch', 'jax', 'jaxlib', 'cupy', 'dask', 'array_api_strict', 'optax',\n"
        "          'tensorflow')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in banned)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).parents[1]))
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
