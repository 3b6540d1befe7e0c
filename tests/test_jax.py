"""Every step function runs under ``jax.jit`` unchanged and gives the eager result.

Two ways of passing hyperparameters, for every registered optimizer under its defaults and each
profile:

* static: every hyperparameter is a Python value captured by a closure; params, grads and the
  state are the jit arguments;
* traced: every real hyperparameter that does not decide the state layout is a 0-d float64 jit
  argument, and lr comes from a schedule evaluated at ``state.count`` inside the jitted function.
  The function must be traced once for all 10 steps (no recompilation as the values change).

Tolerance, jit against eager (float64): XLA fuses the elementwise ops of a jitted step into one
loop and may contract ``a*b + c`` into a fused multiply-add (one rounding instead of two), so a
jitted step can differ from the eager one by a few ULP; over 10 steps that stays below
``RTOL = 64 * 2**-52 = 1.4e-14`` relative to the distance travelled (state arrays: relative to
their size). RAdam's rectifier near its threshold amplifies a 1-ULP difference of ``b2**t`` by up
to 1e5 (see ``test_frameworks.radam_tolerance``); XLA's fused ``pow`` makes that visible, so RAdam
cases get that derived allowance as well.

A last test runs with x64 disabled (the JAX default): float32 params, an int32 step count, and
float32 scalars, since float64 does not exist there.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from adaptive_ref import registry, schedules

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")

STEPS = 10
SHAPE = (2, 3)
RTOL = 64 * 2.0**-52
RTOL_MATRIX = 1e-8  # non-elementwise optimizers (matrix roots): see test_backends.RTOL_MATRIX


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _cases():
    out = []
    for spec in registry._SPECS:
        out.append(pytest.param(spec.name, None, id=f"{spec.name}-defaults"))
        for profile in spec.profiles:
            out.append(pytest.param(spec.name, profile, id=f"{spec.name}-{profile}"))
    return out


def _settings(name, profile):
    spec = registry.get(name)
    return spec.settings(profile, lr=0.01) if profile == "optax" else spec.settings(profile)


def _problem(dtype="float64"):
    rng = np.random.default_rng(2)
    scale = np.array([[1.0], [1e-4]])
    p0 = rng.standard_normal(SHAPE).astype(dtype)
    grads = [(rng.normal(0.1, 1.0, SHAPE) * scale).astype(dtype) for _ in range(STEPS)]
    return _committed(jnp.asarray(p0)), [_committed(jnp.asarray(g)) for g in grads]


def _leaves(state):
    return jax.tree_util.tree_leaves(state)


def _radam_extra(beta2):
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    worst = 0.0
    for t in range(1, STEPS + 1):
        x = beta2**t
        bc2 = 1.0 - x
        rho = rho_inf - 2.0 * t * x / bc2
        if rho > 4.0:
            worst = max(worst, (t / bc2**2) * (1 / (rho - 4) + 1 / (rho - 2) - 1 / rho))
    return worst * 2.0**-52


def _tol(name, settings):
    if not registry.get(name).elementwise:
        from test_backends import FLOAT32_INSIDE
        from test_backends import RTOL_MATRIX as BY_DTYPE

        # float32 inside a float64 step (Muon's keras profile: its norm): XLA fuses the float32
        # sum differently under jit, so the float32 matrix allowance applies
        inside = FLOAT32_INSIDE.get(name, lambda s: False)(settings)
        return BY_DTYPE["float32"] if inside else RTOL_MATRIX
    return RTOL + (_radam_extra(settings["beta2"]) if name == "radam" else 0.0)


def _committed(tree):
    """Place arrays on the device explicitly: jit outputs are committed, and mixing committed
    and uncommitted inputs would add a second cache entry that is not a change of values."""
    return jax.device_put(tree, jax.devices()[0])


def _param_allowance(tol, p0, p):
    """tol relative to the distance travelled, plus STEPS * 2 ULP of |p| for the rounding of the
    final ``p - u`` of each step (one FMA in place of a multiply and a subtract)."""
    travelled = float(jnp.max(jnp.abs(p - p0)))
    ulp = float(jnp.max(jnp.abs(p))) * float(jnp.finfo(p.dtype).eps)
    return tol * travelled + STEPS * 2 * ulp


def _assert_close(name, settings, p0, eager, jitted):
    (pe, se), (pj, sj) = eager, jitted
    assert pj.dtype == pe.dtype and pj.shape == pe.shape
    assert jax.tree_util.tree_structure(sj) == jax.tree_util.tree_structure(se)
    tol = _tol(name, settings)
    assert float(jnp.max(jnp.abs(pj - pe))) <= _param_allowance(tol, p0, pe)
    for a, b in zip(_leaves(sj), _leaves(se), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        if jnp.issubdtype(a.dtype, jnp.integer):
            assert int(a) == int(b) == STEPS
        else:
            scale = float(jnp.max(jnp.abs(b))) if b.size else 0.0
            assert float(jnp.max(jnp.abs(a - b), initial=0.0)) <= tol * scale


@pytest.mark.parametrize(("name", "profile"), _cases())
def test_jit_static_hyperparameters(name, profile):
    spec = registry.get(name)
    settings = _settings(name, profile)
    p0, grads = _problem()
    traces = []

    def step(p, g, s):
        traces.append(1)
        return spec.step(p, g, s, **settings)

    jstep = jax.jit(step)
    pe = pj = p0
    se = sj = _committed(spec.init(p0, **spec.init_kwargs(settings)))
    with _ill_posed_skips():
        for g in grads:
            pe, se = spec.step(pe, g, se, **settings)
            pj, sj = jstep(pj, g, sj)
    assert len(traces) == 1
    assert jstep._cache_size() == 1
    _assert_close(name, settings, p0, (pe, se), (pj, sj))


@contextlib.contextmanager
def _ill_posed_skips():
    """Skip a case whose problem the eager step reports as ill-posed (test_backends.ILL_POSED:
    SOAP's float32 eigh cannot separate this problem's eigenvalues 1e-8 and 0)."""
    from test_backends import ILL_POSED

    try:
        yield
    except ILL_POSED as err:
        pytest.skip(f"ill-posed on this problem, and reported by the eager step: {err}")


# Real hyperparameters that stay Python values under jit, with the reason.
STATIC_ONLY = {
    ("shampoo", "update_freq"): "an integer period, validated as a Python int by shampoo_step",
    ("muon", "ns_steps"): "the number of Newton-Schulz iterations, a Python int (a loop count)",
    ("soap", "precondition_frequency"): "an integer period, validated as a Python int by "
                                        "soap_step",
}


def _traced_names(spec):
    """Real hyperparameters that may be arrays: not layout (init) knobs, not fixed."""
    return [h.name for h in spec.hparams
            if h.kind == "real" and not h.init and h.name not in spec.fixed
            and (spec.name, h.name) not in STATIC_ONLY]


@pytest.mark.parametrize(("name", "profile"), _cases())
def test_jit_traced_hyperparameters_and_schedule(name, profile):
    spec = registry.get(name)
    settings = _settings(name, profile)
    arrays = {k: settings[k] for k in _traced_names(spec) if k != "lr"}
    static = {k: v for k, v in settings.items() if k not in arrays and k != "lr"}
    peak = float(settings["lr"])
    lr_of = schedules.join(schedules.linear_warmup(peak, 3, peak / 10),
                           schedules.cosine_decay(peak, 7, alpha=0.1), 3)
    p0, grads = _problem()
    traces = []

    def step(p, g, s, hp):
        traces.append(1)
        return spec.step(p, g, s, lr=lr_of(s.count), **hp, **static)

    jstep = jax.jit(step)
    hp = _committed({k: jnp.asarray(float(v), dtype=jnp.float64) for k, v in arrays.items()})
    pe = pj = p0
    se = sj = _committed(spec.init(p0, **spec.init_kwargs(settings)))
    with _ill_posed_skips():
        for g in grads:
            pe, se = step(pe, g, se, hp)  # eager, with the same 0-d arrays
            pj, sj = jstep(pj, g, sj, hp)
    assert len(traces) == 1 + STEPS  # one trace for jit, then one eager call per step
    assert jstep._cache_size() == 1
    _assert_close(name, settings, p0, (pe, se), (pj, sj))

    # The schedule was followed: the eager array-hyperparameter run equals a run with the
    # schedule's values passed as Python floats.
    pf = p0
    sf = spec.init(p0, **spec.init_kwargs(settings))
    for t, g in enumerate(grads):
        pf, sf = spec.step(pf, g, sf, **{**settings, "lr": float(lr_of(t))})
    assert float(jnp.max(jnp.abs(pf - pe))) <= _param_allowance(_tol(name, settings), p0, pe)


# No float64/int64 request may reach JAX while x64 is off (it would be truncated with a warning).
@pytest.mark.filterwarnings("error:.*Explicitly requested dtype")
@pytest.mark.parametrize("name", [s.name for s in registry._SPECS])
def test_x64_disabled_float32_int32_count(name):
    """With x64 off, float64 does not exist: state and scalars are float32, count is int32.

    Elementwise optimizers: jit equals eager to 1e-6 (a few float32 ULP, 2**-23 = 1.2e-7, from
    XLA's fused multiply-adds). Matrix optimizers are only checked for dtypes and finiteness
    here: in float32 their eigh-based roots of rank-deficient early statistics are too
    ill-conditioned for jit and eager to agree closely (full_matrix_adagrad: 6e-2 after 3 steps).
    """
    spec = registry.get(name)
    settings = spec.settings(None)
    rng = np.random.default_rng(3)
    with jax.enable_x64(False):
        p = jnp.asarray(rng.standard_normal(SHAPE).astype(np.float32))
        s = spec.init(p, **spec.init_kwargs(settings))
        assert s.count.dtype == jnp.int32
        jstep = jax.jit(lambda p, g, s: spec.step(p, g, s, **settings))
        for _ in range(3):
            g = jnp.asarray(rng.standard_normal(SHAPE).astype(np.float32))
            p_eager, s_eager = spec.step(p, g, s, **settings)
            p, s = jstep(p, g, s)
            if spec.elementwise:
                np.testing.assert_allclose(np.asarray(p), np.asarray(p_eager), rtol=1e-6,
                                           atol=1e-6)
        assert p.dtype == jnp.float32
        assert s.count.dtype == jnp.int32 and int(s.count) == 3
        for leaf in _leaves(s):
            assert leaf.dtype in (jnp.int32, jnp.float32), leaf.dtype
        assert bool(jnp.all(jnp.isfinite(p)))
    # Switching x64 back on gives int64 counts and float64 scalar state again (the dtype
    # choice is not frozen by whichever mode ran first).
    p64 = jnp.asarray(rng.standard_normal(SHAPE))
    s64 = spec.init(p64, **spec.init_kwargs(settings))
    assert s64.count.dtype == jnp.int64
    for leaf in _leaves(s64):
        assert leaf.dtype in (jnp.int64, jnp.float64), leaf.dtype
