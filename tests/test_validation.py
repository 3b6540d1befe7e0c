"""Bad input gets a clear error naming the argument (and, for numbers, the accepted range).

Driven by the registry, like torch's ``optim_error_inputs``: every real hyperparameter of every
optimizer is tried below and above its declared range, as NaN, as a string and as a bool; every
knob with a value it does not accept. Then arrays: integer/bool dtypes, shape and dtype mismatches
between param, grad and state, a state made by another optimizer, arrays of two namespaces, and an
init/step layout mismatch. NaN/Inf gradients propagate without an exception, and zero-size and
0-d arrays work for every optimizer.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from adaptive_ref.registry import REGISTRY

# NaN/Inf propagation is documented behaviour; NumPy reports it as RuntimeWarnings.
pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]

CORE = ("sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam", "radam")
NAMES = [n for n in CORE if n in REGISTRY]


def _run(spec, p=None, g=None, state=None, **kw):
    p = np.ones(3) if p is None else p
    g = np.full(p.shape, 0.5) if g is None else g
    settings = spec.settings(None, **kw)
    if state is None:
        state = spec.init(p, **spec.init_kwargs(spec.settings(None)))
    return spec.step(p, g, state, **settings)


def _bad_real_values():
    """(optimizer, hparam, bad value, error type, what the message must contain)."""
    out = []
    for name in NAMES:
        spec = REGISTRY[name]
        for h in spec.hparams:
            if h.kind != "real" or h.name in spec.fixed:
                continue
            rng = re.escape(h.range_text())
            if math.isfinite(h.low):
                below = h.low if h.low_open else h.low - max(1.0, abs(h.low)) * 1e-3
                out.append((name, h.name, below, ValueError, rng))
            if math.isfinite(h.high):
                above = h.high if h.high_open else h.high + 1e-3
                out.append((name, h.name, above, ValueError, rng))
            out.append((name, h.name, float("nan"), ValueError, rng))
            out.append((name, h.name, "0.1", TypeError, rng))
            out.append((name, h.name, True, TypeError, rng))
    return out


BAD_REALS = _bad_real_values()


@pytest.mark.parametrize(("name", "hparam", "value", "error", "rng"), BAD_REALS,
                         ids=[f"{n}-{h}-{v!r}" for n, h, v, _, _ in BAD_REALS])
def test_bad_real_hyperparameter(name, hparam, value, error, rng):
    spec = REGISTRY[name]
    with pytest.raises(error, match=rf"{hparam}\b.*{rng}|{rng}.*{hparam}\b"):
        _run(spec, **{hparam: value})


def test_issue_list_of_bad_numbers_is_covered():
    """The issue's list: negative or NaN lr, betas outside [0, 1), eps < 0, weight_decay < 0."""
    ids = {(n, h, str(v)) for n, h, v, _, _ in BAD_REALS}
    for name in NAMES:
        names = REGISTRY[name].hparam_names
        assert (name, "lr", "nan") in ids
        assert any(i[:2] == (name, "lr") and i[2].startswith("-") for i in ids)
        for b in ("beta1", "beta2"):
            if b in names:
                assert (name, b, "1.0") in ids
        for h in ("eps", "weight_decay"):
            if h in names:
                assert any(i[:2] == (name, h) and i[2].startswith("-") for i in ids)


@pytest.mark.parametrize("name", NAMES)
def test_array_hyperparameters_are_checked_for_shape_and_dtype(name):
    spec = REGISTRY[name]
    with pytest.raises(ValueError, match=r"lr must be a Python number or a 0-d array"):
        _run(spec, lr=np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match=r"lr as an array must have a real floating dtype"):
        _run(spec, lr=np.array(1))


@pytest.mark.parametrize("name", NAMES)
def test_bad_knob_values(name):
    spec = REGISTRY[name]
    for h in spec.hparams:
        if h.name in spec.fixed:
            continue
        if h.kind == "choice":
            with pytest.raises(ValueError, match=rf"{h.name}='bogus' is not accepted; use one of"):
                _run(spec, **{h.name: "bogus"})
        elif h.kind == "bool":
            with pytest.raises(TypeError, match=rf"{h.name} must be True or False"):
                _run(spec, **{h.name: 1})


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyperparameter_names(name):
    spec = REGISTRY[name]
    with pytest.raises(KeyError, match="has no hyperparameter 'bogus'"):
        spec.settings(None, bogus=1.0)
    with pytest.raises(TypeError, match="bogus"):
        spec.step(np.ones(2), np.ones(2), spec.init(np.ones(2)), bogus=1.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "complex128"])
def test_non_real_floating_dtypes_are_rejected(name, dtype):
    spec = REGISTRY[name]
    bad = np.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match=r"param has dtype .*only real floating dtypes"):
        spec.init(bad)
    with pytest.raises(TypeError, match=r"state_dtype has dtype .*only real floating dtypes"):
        spec.init(np.ones(3), state_dtype=np.dtype(dtype))
    state = spec.init(np.ones(3))
    with pytest.raises(TypeError, match=r"param has dtype .*only real floating dtypes"):
        spec.step(bad, np.ones(3), state)
    with pytest.raises(TypeError, match=r"grad has dtype"):
        spec.step(np.ones(3), bad, state)


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_dtype_mismatches(name):
    spec = REGISTRY[name]
    p = np.ones(3)
    state = spec.init(p)
    with pytest.raises(ValueError, match=r"grad has shape \(2,\) but param has shape \(3,\)"):
        spec.step(p, np.ones(2), state)
    with pytest.raises(TypeError, match=r"grad has dtype float32 but param has dtype float64"):
        spec.step(p, np.ones(3, np.float32), state)
    other = spec.init(np.ones(4))
    if not any(v is not None and np.ndim(v) > 0 for v in other):
        return  # plain SGD keeps no arrays: there is no state shape to check
    with pytest.raises(ValueError, match=r"state\.\w+ has shape \(4,\) but param has shape"):
        spec.step(p, np.ones(3), other)
    arrays = [f for f, v in zip(state._fields, state, strict=True)
              if f != "count" and v is not None and np.ndim(v) > 0]
    if len(arrays) >= 2:  # one state array in another dtype than the others
        mixed = state._replace(**{arrays[-1]: getattr(state, arrays[-1]).astype(np.float32)})
        with pytest.raises(TypeError, match=rf"state\.{arrays[-1]} has dtype float32 but the "
                                            rf"other state arrays have dtype float64"):
            spec.step(p, np.ones(3), mixed)
    with pytest.raises(TypeError, match=r"state\.count must be a 0-d integer array"):
        spec.step(p, np.ones(3), state._replace(count=np.zeros(())))


@pytest.mark.parametrize("name", NAMES)
def test_state_of_another_optimizer(name):
    spec = REGISTRY[name]
    for other_name in NAMES:
        other = REGISTRY[other_name]
        if other.state_type is spec.state_type:
            continue  # Adam, AMSGrad and AdamW share AdamState (same layout, by design)
        with pytest.raises(TypeError, match=rf"state is a {other.state_type.__name__}, not a "
                                            rf"{spec.state_type.__name__}"):
            spec.step(np.ones(2), np.ones(2), other.init(np.ones(2)))
    with pytest.raises(TypeError, match=r"state is a dict"):
        spec.step(np.ones(2), np.ones(2), {"count": 0})


def test_arrays_from_two_namespaces():
    torch = pytest.importorskip("torch")
    spec = REGISTRY["adam"]
    p = np.ones(3)
    state = spec.init(p)
    with pytest.raises(TypeError, match=r"grad is a .*torch.* array but param is a .*numpy"):
        spec.step(p, torch.ones(3, dtype=torch.float64), state)
    tstate = spec.init(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"state\.mu is a .*torch.* array but param is a"):
        spec.step(p, np.ones(3), tstate)


@pytest.mark.parametrize(("name", "init_kw", "step_kw", "match"), [
    ("adam", {}, {"amsgrad": True}, "amsgrad=True but the state was made with amsgrad=False"),
    ("adam", {"amsgrad": True}, {"amsgrad": False},
     "amsgrad=False but the state was made with amsgrad=True"),
    ("adamw", {}, {"amsgrad": True}, "amsgrad=True but the state was made"),
    ("amsgrad", {"amsgrad": False}, {}, "amsgrad=True but the state was made"),
    ("rmsprop", {}, {"centered": True}, "centered=True but the state was made"),
    ("rmsprop", {"centered": True}, {"centered": False}, "centered=False but the state was made"),
    ("rmsprop", {}, {"momentum": 0.9}, "momentum is not 0 but the state has no momentum buffer"),
    ("sgd", {}, {"momentum": 0.9}, "momentum is not 0 but the state has no momentum buffer"),
])
def test_init_step_layout_mismatch(name, init_kw, step_kw, match):
    spec = REGISTRY[name]
    state = spec.init(np.ones(2), **init_kw)
    with pytest.raises(ValueError, match=match):
        spec.step(np.ones(2), np.ones(2), state, **spec.settings(None, **step_kw))


def test_sgd_nesterov_needs_momentum_and_no_dampening():
    spec = REGISTRY["sgd"]
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        spec.step(np.ones(2), np.ones(2), spec.init(np.ones(2)), nesterov=True)
    st = spec.init(np.ones(2), momentum=0.9)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        spec.step(np.ones(2), np.ones(2), st, nesterov=True, momentum=0.9, dampening=0.1)


def test_adagrad_init_rejects_bad_initial_accumulator_value():
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"initial_accumulator_value=.* is outside the "
                                             r"accepted range \[0, inf\) \(finite\)"):
            REGISTRY["adagrad"].init(np.ones(2), initial_accumulator_value=bad)
    with pytest.raises(TypeError, match="initial_accumulator_value must be a real number"):
        REGISTRY["adagrad"].init(np.ones(2), initial_accumulator_value="1")


# --------------------------------------------------------------------------- NaN / Inf, sizes

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", ["torch", "optax"])
def test_nan_and_inf_gradients_propagate_without_error(name, profile):
    """A NaN gradient makes its coordinate's parameter NaN (as in torch and optax); +-Inf gives
    +-Inf or NaN there. Other coordinates are untouched by it (every method here is element-wise):
    bitwise what a run on the finite coordinates alone gives."""
    spec = REGISTRY[name]
    settings = spec.settings(profile, lr=1e-2)
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    for g in grads:
        g[1], g[3] = np.nan, np.inf
    grads[1][4] = -np.inf
    p, s = p0, spec.init(p0, **spec.init_kwargs(settings))
    for g in grads:
        p, s = spec.step(p, g, s, **settings)
    assert np.isnan(p[1])
    assert not np.isfinite(p[3]) and not np.isfinite(p[4])
    keep = [0, 2]
    q, s2 = p0[keep], spec.init(p0[keep], **spec.init_kwargs(settings))
    for g in grads:
        q, s2 = spec.step(q, g[keep], s2, **settings)
    assert np.array_equal(p[keep], q)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (0, 2, 1)], ids=str)
@pytest.mark.parametrize("profile", ["torch", "optax"])
def test_zero_size_and_0d_arrays(name, shape, profile):
    spec = REGISTRY[name]
    settings = spec.settings(profile, lr=1e-2)
    p = np.full(shape, 0.5)
    s = spec.init(p, **spec.init_kwargs(settings))
    for _ in range(3):
        p, s = spec.step(p, np.full(shape, 0.25), s, **settings)
        assert np.shape(p) == shape and np.asarray(p).dtype == np.float64
    assert int(np.asarray(s.count)) == 3
    for v in s:
        if v is not None and np.ndim(v) > 0:
            assert np.shape(v) == shape
    if shape == ():
        assert np.isfinite(p) and p != 0.5


def test_validation_cache_keeps_bools_and_numbers_apart():
    """The hyperparameter check is cached per tuple of values; 1 == True and 0.0 == False as
    keys, so a valid call must not make the equal-but-invalid one pass."""
    spec = REGISTRY["adam"]
    p = np.zeros(2)
    s = spec.init(p)
    spec.step(p, p, s, maximize=True, weight_decay=0.0)
    with pytest.raises(TypeError, match="maximize must be True or False, got 1"):
        spec.step(p, p, s, maximize=1, weight_decay=0.0)
    with pytest.raises(TypeError, match="weight_decay must be a real number"):
        spec.step(p, p, s, maximize=True, weight_decay=False)
