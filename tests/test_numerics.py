"""dtypes, state dtypes, float64 bias corrections, array hyperparameters and the step counter.

The precision policy under test is stated in :mod:`adaptive_ref._numerics`: moments are kept in
the state dtype (the param's unless ``state_dtype`` is given), scalar factors such as
``1 - beta**t`` are computed in float64 and rounded once when they meet an array, and the count
is an integer that turns every t-dependent update into NaN instead of wrapping silently.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref import _numerics as nx
from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing.invariants import assert_bitwise_equal

CORE = ("sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam", "radam")


def _run(name, p, grads, profile="torch", state_dtype=None, **kw):
    spec = REGISTRY[name]
    settings = spec.settings(profile, **({"lr": 1e-2} if profile == "optax" else {}), **kw)
    s = spec.init(p, **spec.init_kwargs(settings), state_dtype=state_dtype)
    for g in grads:
        p, s = spec.step(p, g, s, **settings)
    return p, s


def _grads(dtype, n=3, shape=(4,)):
    rng = np.random.default_rng(5)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("profile", ["torch", "optax"])
def test_result_dtype_is_param_dtype(name, dtype, profile):
    p0 = np.linspace(-1, 1, 4).astype(dtype)
    p, s = _run(name, p0, _grads(dtype), profile)
    assert p.dtype == np.dtype(dtype)
    for f, v in zip(s._fields, s, strict=True):
        if f == "count":
            assert v.dtype == np.int64
        elif v is not None and np.ndim(v) > 0:
            assert v.dtype == np.dtype(dtype), f


@pytest.mark.parametrize("name", CORE)
def test_float32_state_for_float16_params(name):
    """state_dtype=float32 with float16 params: the state is float32, the result float16, and the
    step is the float32 step on the upcast param and gradient, rounded once to float16."""
    p16 = np.linspace(-1, 1, 4).astype(np.float16)
    grads = _grads(np.float16)
    p, s = _run(name, p16, grads, state_dtype=np.float32)
    assert p.dtype == np.float16
    for f, v in zip(s._fields, s, strict=True):
        if f != "count" and v is not None and np.ndim(v) > 0:
            assert v.dtype == np.float32, f
    spec = REGISTRY[name]
    settings = spec.settings("torch")
    s16 = spec.init(p16, **spec.init_kwargs(settings), state_dtype=np.float32)
    s32 = spec.init(p16.astype(np.float32), **spec.init_kwargs(settings))
    q16 = p16
    for g in grads:
        q32, s32 = spec.step(q16.astype(np.float32), g.astype(np.float32), s32, **settings)
        q16, s16 = spec.step(q16, g, s16, **settings)
        assert_bitwise_equal(q16, q32.astype(np.float16), f"{name}: float16 result")
        assert_bitwise_equal(s16[1], s32[1], f"{name}: first moment")


def test_torch_bfloat16_params_with_float32_state():
    torch = pytest.importorskip("torch")
    spec = REGISTRY["adam"]
    p = torch.linspace(-1, 1, 4, dtype=torch.bfloat16)
    s = spec.init(p, state_dtype=torch.float32)
    p2, s2 = spec.step(p, torch.full((4,), 0.5, dtype=torch.bfloat16), s, lr=0.1)
    assert p2.dtype == torch.bfloat16 and s2.mu.dtype == torch.float32
    assert s2.count.dtype == torch.int64


def _adam_f32_by_hand(p, grads, lr, b1, b2, eps, bias_dtype):
    """Adam in float32 in the reference's operation order; bias corrections in ``bias_dtype``
    (float64 rounded once to float32, or float32 throughout)."""
    f = np.float32
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = f(b1) * m + f(1 - b1) * g
        v = f(b2) * v + f(1 - b2) * (g * g)
        if bias_dtype == np.float64:
            bc1 = f(1.0 - np.power(np.float64(b1), np.float64(t)))
            bc2 = f(1.0 - np.power(np.float64(b2), np.float64(t)))
        else:
            bc1 = f(1) - np.power(f(b1), f(t))
            bc2 = f(1) - np.power(f(b2), f(t))
        p = p - f(lr) * ((m / bc1) / (np.sqrt(v / bc2) + f(eps)))
    return p


def test_bias_corrections_are_computed_in_float64():
    """A float32 Adam step equals the float32 computation with float64 bias corrections rounded
    once, bit for bit. With float32 bias corrections it differs measurably: float32(0.999) =
    0.99900001, so 1 - 0.999**1 in float32 is 9.9998713e-4, 1.3e-5 relative off, and sqrt(v_hat)
    carries half of that (6.4e-6 relative, ~50 float32 ulps) into the step."""
    p0 = np.zeros(4, np.float32)  # so that the float32 result resolves the step itself
    grads = _grads(np.float32, n=3)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p, _ = _run("adam", p0, grads, lr=lr, beta1=b1, beta2=b2, eps=eps)
    assert_bitwise_equal(p, _adam_f32_by_hand(p0, grads, lr, b1, b2, eps, np.float64), "f64 bc")
    p_f32bc = _adam_f32_by_hand(p0, grads, lr, b1, b2, eps, np.float32)
    step, step_f32bc = p - p0, p_f32bc - p0
    rel = np.abs(step - step_f32bc) / np.abs(step)
    assert np.all(rel > 1e-6), rel


@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_array_hyperparameters_give_the_python_float_result(name, dtype):
    """Every real hyperparameter passed as a 0-d float64 array (as a traced schedule would be)
    gives bitwise the Python-float result: both enter the scalar computations in float64."""
    spec = REGISTRY[name]
    kw = {"lr": 0.05, "weight_decay": 0.01} if "weight_decay" in spec.hparam_names else {}
    settings = spec.settings("torch", **kw)
    as_arrays = {h.name: np.asarray(float(settings[h.name])) for h in spec.hparams
                 if h.kind == "real" and not h.init and h.name in settings}
    p0 = np.linspace(-1, 1, 4).astype(dtype)
    grads = _grads(dtype)
    p1, s1 = _run(name, p0, grads, **kw)
    p2, s2 = _run(name, p0, grads, **{**kw, **as_arrays})
    assert_bitwise_equal(p2, p1, f"{name}: array hyperparameters")


def test_count_is_int64_and_step_index_exact_beyond_float32_range():
    """float32 counters stop at 2**24; the int64 count and float64 t do not."""
    import array_api_compat.numpy as xp

    count = np.asarray(2**24, dtype=np.int64)
    nxt, t = nx.advance(xp, count, xp.float64)
    assert int(nxt) == 2**24 + 1 and float(t) == 2**24 + 1
    assert REGISTRY["adam"].init(np.zeros(1)).count.dtype == np.int64


# The step-count overflow policy (an error on eager backends, poison under jit, the same for every
# optimizer) is tested in tests/test_reliability.py.


def _same(x, y):
    """The same value (bits, NaN payload aside), type, dtype and shape."""
    return (type(x) is type(y) and x.dtype == y.dtype and np.shape(x) == np.shape(y)
            and np.asarray(x).tobytes() == np.asarray(y).tobytes()
            or bool(np.all(np.isnan(x)) and np.all(np.isnan(y))) and type(x) is type(y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_where_choose_and_scalars_equal_numpy(dtype):
    """The NumPy shortcuts give numpy.where's / as_scalar's values and types (where), or the same
    values as NumPy scalars (choose, scalar_maker), and fall back elsewhere (broadcasting)."""
    xp = nx.NP.xp
    a, b = np.array([1.5, -0.0, np.inf], dtype), np.array([np.nan, 2.0, -3.0], dtype)
    for cond in (np.bool_(True), np.bool_(False), np.asarray(5) == 0):
        for x, y in ((a, b), (a[:1].reshape(()), b[:1].reshape(())), (a[0], b[1]),
                     (a, b[0].reshape(()))):
            got = nx.where(xp, cond, x, y)
            assert _same(got, np.where(cond, x, y))
            if type(x) is type(y) and np.ndim(x) == np.ndim(y):
                assert got is not x and got is not y  # a new array, as numpy.where's
        got = nx.choose(xp, cond, a[1], b[1])
        assert type(got) is dtype and got == np.where(cond, a[1], b[1])
    # the dtype as a NumPy dtype or as the namespace's scalar type (xp.float64 is numpy.float64)
    for s in (nx.scalar_maker(xp, np.dtype(dtype), a), nx.scalar_maker(xp, dtype, a)):
        for v in (0.1, 3, True, 1e300):
            with np.errstate(over="ignore"):
                want = nx.as_scalar(xp, v, np.dtype(dtype), a)
                assert s(v) == want and s(v).dtype == want.dtype
    assert _same(nx.ones_like(xp, a[0]), a[0].dtype.type(1.0))
    assert type(nx.as_scalar(xp, 0.5, np.dtype(dtype), a)) is np.ndarray


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_powers_equal_power_one_by_one(dtype):
    """One ufunc call over the bases gives each base's power bit for bit (Adam's, RAdam's,
    AdaBelief's and Adan's bias corrections rely on it)."""
    xp = nx.NP.xp
    rng = np.random.default_rng(0)
    bases = [0.0, 0.5, 0.9, 0.999, 0.9999, 1.0 - 1e-16, 1.0, 1]
    bases += rng.uniform(0.0, 1.0, 40).tolist()
    for t in [1.0, 7.0, 2.0**40, 1e6 + 3, *rng.integers(1, 10**7, 60).tolist()]:
        t = dtype(t)
        got = nx.powers(xp, bases, t)
        for b, g in zip(bases, got, strict=True):
            want = nx.power(xp, b, t)
            assert type(g) is type(want) and g.tobytes() == want.tobytes(), (b, t)
    arr = np.asarray(0.9)  # a 0-d array base: one by one
    assert nx.powers(xp, (0.9, arr), dtype(3.0))[1] == nx.power(xp, arr, dtype(3.0))


def test_powers_keeps_signed_zeros_and_repeated_bases_apart():
    """powers remembers the array of its bases; -0.0 and 0.0 (equal as keys) still give their own
    powers, and a list of bases gives what the tuple does."""
    xp = nx.NP.xp
    t = np.float64(3.0)
    plus = nx.powers(xp, (0.0, 0.5), t)
    minus = nx.powers(xp, (-0.0, 0.5), t)
    assert not np.signbit(plus[0]) and np.signbit(minus[0])
    assert nx.powers(xp, [0.9, 0.999], t) == nx.powers(xp, (0.9, 0.999), t)
    assert [type(x) for x in nx.powers(xp, (0.9, 0.999, 0.5), t)] == [np.float64] * 3
