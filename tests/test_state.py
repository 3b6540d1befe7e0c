"""State save/load: plain dicts of arrays, NumPy files, and bit-identical continuation."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import pytest

from adaptive_ref import state_from_dict, state_to_dict
from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing.invariants import assert_bitwise_equal

CORE = ("sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam", "radam")

# Every state layout: the defaults, each framework profile, and the init knobs that add buffers.
LAYOUTS = [(n, None, {}) for n in CORE] + [(n, prof, {}) for n in CORE
                                          for prof in ("torch", "optax")] + [
    ("adam", None, {"amsgrad": True}), ("amsgrad", "optax", {}),
    ("sgd", None, {"momentum": 0.9}), ("sgd", None, {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", None, {"centered": True, "momentum": 0.9}),
    ("rmsprop", None, {"initial_accumulator_value": 0.1}),
    ("adagrad", None, {"initial_accumulator_value": 0.1}),
]
IDS = [f"{n}-{p}-{kw}" for n, p, kw in LAYOUTS]


def _settings(name, profile, kw):
    spec = REGISTRY[name]
    return spec, spec.settings(profile, **({"lr": 1e-2} if profile == "optax" else {}), **kw)


def _problem(steps):
    rng = np.random.default_rng(7)
    return rng.standard_normal((2, 3)), [rng.standard_normal((2, 3)) for _ in range(steps)]


def _trajectory(spec, settings, steps):
    p, grads = _problem(steps)
    s = spec.init(p, **spec.init_kwargs(settings))
    for g in grads:
        p, s = spec.step(p, g, s, **settings)
    return p, s, grads


def _assert_same_state(a, b):
    assert type(a) is type(b)
    for f, x, y in zip(a._fields, a, b, strict=True):
        if x is None or y is None:
            assert x is None and y is None, f
        else:
            assert_bitwise_equal(y, x, f)


@pytest.mark.parametrize(("name", "profile", "kw"), LAYOUTS, ids=IDS)
def test_round_trip(name, profile, kw):
    spec, settings = _settings(name, profile, kw)
    _, s, _ = _trajectory(spec, settings, 3)
    d = state_to_dict(s)
    assert d["type"] == spec.state_type.__name__
    assert set(d) == {"type", *s._fields}
    back = state_from_dict(d)
    assert type(back) is type(s)
    for f in s._fields:
        assert getattr(back, f) is getattr(s, f)  # no copies, same arrays
    dn = state_to_dict(s, to_numpy=True)
    for f, v in dn.items():
        if f != "type" and v is not None:
            assert type(v) is np.ndarray
    _assert_same_state(s, state_from_dict(dn, like=np.zeros(1)))


@pytest.mark.parametrize(("name", "profile", "kw"), LAYOUTS, ids=IDS)
def test_stop_save_load_continue_is_bit_identical(name, profile, kw):
    """Stop after 4 of 9 steps, write the state to an .npz file (None fields left out, the type
    stored as a string), read it back and continue: the same bits as the uninterrupted run."""
    spec, settings = _settings(name, profile, kw)
    p_full, s_full, grads = _trajectory(spec, settings, 9)
    p, _ = _problem(9)
    s = spec.init(p, **spec.init_kwargs(settings))
    for g in grads[:4]:
        p, s = spec.step(p, g, s, **settings)
    buf = io.BytesIO()
    d = state_to_dict(s, to_numpy=True)
    np.savez(buf, param=p, **{k: v for k, v in d.items() if v is not None})
    buf.seek(0)
    with np.load(buf) as f:
        loaded = {k: f[k] for k in f.files}
    p = loaded.pop("param")
    loaded["type"] = str(loaded["type"])
    s = state_from_dict(loaded)
    for g in grads[4:]:
        p, s = spec.step(p, g, s, **settings)
    assert_bitwise_equal(p, p_full, "params")
    _assert_same_state(s_full, s)


def test_like_moves_arrays_to_the_namespace_of_like():
    torch = pytest.importorskip("torch")
    spec = REGISTRY["adam"]
    p = torch.linspace(-1, 1, 6, dtype=torch.float64)
    s = spec.init(p, amsgrad=True)
    g = torch.full((6,), 0.25, dtype=torch.float64)
    p, s = spec.step(p, g, s, amsgrad=True)
    d = state_to_dict(s, to_numpy=True)
    assert all(isinstance(v, np.ndarray) for k, v in d.items() if k != "type")
    back = state_from_dict(d, like=p)
    for f, v in zip(back._fields, back, strict=True):
        assert isinstance(v, torch.Tensor), f
        assert v.dtype == getattr(s, f).dtype, f
    p1, s1 = spec.step(p, g, s, amsgrad=True)
    p2, s2 = spec.step(p, g, back, amsgrad=True)
    assert torch.equal(p1, p2) and torch.equal(s1.nu_max, s2.nu_max)


class NotAState(NamedTuple):
    count: int
    mu: int


def test_state_to_dict_rejects_other_objects():
    for bad in ({"count": 0}, (0, 1), NotAState(0, 1), None):
        with pytest.raises(TypeError, match="is not the state of a registered optimizer"):
            state_to_dict(bad)


def test_state_from_dict_errors():
    s = REGISTRY["adam"].init(np.zeros(2))
    d = state_to_dict(s)
    with pytest.raises(ValueError, match=r"type 'Bogus' is not one of .*AdamState"):
        state_from_dict({**d, "type": "Bogus"})
    with pytest.raises(ValueError, match=r"type None is not one of"):
        state_from_dict({k: v for k, v in d.items() if k != "type"})
    with pytest.raises(ValueError, match=r"AdamState needs the fields mu"):
        state_from_dict({k: v for k, v in d.items() if k != "mu"})
    with pytest.raises(ValueError, match=r"AdamState has no fields extra"):
        state_from_dict({**d, "extra": 1})
    # optional buffers (None by default) may be left out, as an .npz file does
    assert state_from_dict({k: v for k, v in d.items() if k != "nu_max"}).nu_max is None
