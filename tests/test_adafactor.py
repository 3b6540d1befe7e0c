"""Adafactor (Shazeer & Stern 2018) against the paper, mpmath and torch / optax / Keras.

Adafactor is not elementwise, so the exact-golden catalogue does not cover it yet; these tests
are its conformance evidence until per-tensor goldens exist:

1. the factored second moment and the step against a float64 NumPy transcription of the
   paper's Algorithms 4 and 5 (sums and an explicit outer product, not the reference's means),
   and against mpmath at 50 digits on a small case;
2. every profile against the installed implementation with matched settings on a scalar, a
   vector, a matrix and a 3-D tensor, 20 steps, float64;
3. the factoring rules on a (8, 2, 3) tensor and a (4, 200) matrix;
4. bad input.

Tolerances are relative to the distance travelled, ``|a - b|_inf / |b - p0|_inf``, per tensor.
``U = 2**-53`` is the float64 unit roundoff, ``U32 = 2**-24`` float32's.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from adaptive_ref import adafactor_init, adafactor_step, registry
from adaptive_ref.optimizers import adafactor as A

SPEC = registry.get("adafactor")
SHAPES = {"scalar": (), "vector": (5,), "matrix": (4, 3), "tensor3": (8, 2, 3)}
STEPS = 20
U = 2.0**-53
U32 = 2.0**-24


def _problem(steps=STEPS, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(steps)]
    return p0, grads


def _run_ref(p0, grads, profile, **over):
    s = SPEC.settings(profile, **over)
    out = {}
    for k, p in p0.items():
        st = SPEC.init(p, **SPEC.init_kwargs(s))
        for g in grads:
            p, st = SPEC.step(p, g[k], st, **s)
        out[k] = np.asarray(p)
    return out


def _rel(a, b, p0):
    """Per tensor: max |a - b| over max |b - p0| (the distance travelled)."""
    return {k: float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k] - p0[k]))) for k in a}


# ---------------------------------------------------------------- 1. the paper, mpmath


def _paper(x, grads, *, lr_cap=1e-2, c=0.8, eps1=1e-30, eps2=1e-3, d=1.0, num=float,
           sqrt=math.sqrt):
    """Algorithms 4 (matrix) and 5 (vector) of Shazeer & Stern, transcribed with Python lists
    of ``num`` (float or mpmath.mpf): sums over rows/columns, V = R C / (1^T R)."""
    matrix = isinstance(x[0], list)
    x = [list(map(num, r)) for r in x] if matrix else list(map(num, x))
    rows = x if matrix else [x]
    n, m = len(rows), len(rows[0])
    R, C, V = [num(0)] * n, [num(0)] * m, [num(0)] * m
    for t, gg in enumerate(grads, start=1):
        G = [list(map(num, r)) for r in gg] if matrix else [list(map(num, gg))]
        X = x if matrix else [x]
        rho = min(num(lr_cap), 1 / sqrt(num(t)))
        rms_x = sqrt(sum(v * v for r in X for v in r) / (n * m))
        alpha = max(num(eps2), rms_x) * rho
        b2 = 1 - num(t) ** (-num(c))
        Q = [[v * v + num(eps1) for v in r] for r in G]
        if matrix:
            R = [b2 * R[i] + (1 - b2) * sum(Q[i]) for i in range(n)]
            C = [b2 * C[j] + (1 - b2) * sum(Q[i][j] for i in range(n)) for j in range(m)]
            tot = sum(R)
            Vh = [[R[i] * C[j] / tot for j in range(m)] for i in range(n)]
        else:
            V = [b2 * V[j] + (1 - b2) * Q[0][j] for j in range(m)]
            Vh = [V]
        Ut = [[G[i][j] / sqrt(Vh[i][j]) for j in range(m)] for i in range(n)]
        rms_u = sqrt(sum(v * v for r in Ut for v in r) / (n * m))
        den = max(num(1), rms_u / num(d))
        new = [[X[i][j] - alpha * Ut[i][j] / den for j in range(m)] for i in range(n)]
        x = new if matrix else new[0]
    return x, (R, C) if matrix else V


def _ref_paper(p, grads):
    s = SPEC.settings("paper")
    st = SPEC.init(p, **SPEC.init_kwargs(s))
    for g in grads:
        p, st = SPEC.step(p, g, st, **s)
    return p, st


def _bound(shape, steps, u=U):
    """Float64 allowance between two evaluations of the same step: every quantity is a chain
    of correctly rounded +, -, *, /, sqrt on positive terms (sums of squares, their EMAs and
    quotients: condition number 1), at most ``ops = 3 (m + n) + 30`` roundings per element and
    step (the sums over a row and a column, the RMS sums, ~30 scalar and elementwise ops), each
    within U relative. A step's relative error feeds the next only through RMS(theta) (a
    1-Lipschitz function, times rho <= 1e-2) and the second moments (an EMA: an average, not an
    amplifier), so the errors add over the steps: ``steps * ops * U`` of the distance."""
    n_el = sum(shape[-2:]) if len(shape) >= 2 else (shape[0] if shape else 1)
    return steps * (3 * n_el + 30) * u


@pytest.mark.parametrize("shape", [(4, 3), (1, 7), (6,)])
def test_factored_second_moment_matches_the_papers_algorithm(shape):
    p0, grads = _problem(STEPS, {"x": shape}, seed=1)
    gs = [g["x"] for g in grads]
    want_x, want_state = _paper(p0["x"].tolist(), [g.tolist() for g in gs])
    got_x, st = _ref_paper(p0["x"], gs)
    want_x = np.asarray(want_x)
    travel = np.max(np.abs(want_x - p0["x"]))
    assert np.max(np.abs(got_x - want_x)) <= _bound(shape, STEPS) * travel
    if len(shape) == 2:  # R = n * v_row (sums vs means), C = m * v_col
        R, C = (np.asarray(v) for v in want_state)
        np.testing.assert_allclose(st.v_row[:, 0] * shape[1], R, rtol=_bound(shape, STEPS))
        np.testing.assert_allclose(st.v_col[0, :] * shape[0], C, rtol=_bound(shape, STEPS))
        assert st.v is None
    else:
        np.testing.assert_allclose(st.v, np.asarray(want_state), rtol=_bound(shape, STEPS))
        assert st.v_row is None and st.v_col is None


def test_the_step_against_mpmath():
    """50-digit evaluation of Algorithm 4 from the same float64 inputs: the reference's float64
    result must lie within ``_bound`` (derived above) of the exact trajectory."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    p0, grads = _problem(5, {"x": (3, 2)}, seed=2)
    gs = [g["x"] for g in grads]
    exact, _ = _paper(p0["x"].tolist(), [g.tolist() for g in gs], num=mpmath.mpf,
                      sqrt=mpmath.sqrt)
    got, _ = _ref_paper(p0["x"], gs)
    err = max(abs(mpmath.mpf(float(got[i, j])) - exact[i][j]) for i in range(3) for j in range(2))
    travel = max(abs(exact[i][j] - mpmath.mpf(float(p0["x"][i, j])))
                 for i in range(3) for j in range(2))
    assert float(err / travel) <= _bound((3, 2), 5)


# ---------------------------------------------------------------- 2. the frameworks


def _run_torch(p0, grads, **kw):
    torch = pytest.importorskip("torch")
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.Adafactor(list(ps.values()), foreach=False, **kw)
    for g in grads:
        for k, p in ps.items():
            p.grad = torch.tensor(g[k])
        opt.step()
    return {k: p.detach().numpy().copy() for k, p in ps.items()}


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _run_optax(p0, grads, tx=None, **kw):
    _jax()
    import jax.numpy as jnp
    optax = pytest.importorskip("optax")
    tx = optax.adafactor(**kw) if tx is None else tx
    params = {k: jnp.asarray(v) for k, v in p0.items()}
    st = tx.init(params)
    for g in grads:
        u, st = tx.update({k: jnp.asarray(v) for k, v in g.items()}, st, params)
        params = optax.apply_updates(params, u)
    return {k: np.asarray(v) for k, v in params.items()}, st


_KERAS = r'''
import json, sys
import numpy as np
import keras
keras.config.set_floatx("float64")
with np.load(sys.argv[1], allow_pickle=True) as f:
    p0, grads = f["p0"].item(), list(f["grads"])
out = {}
for i, kw in enumerate(json.loads(sys.argv[2])):
    vs = {k: keras.Variable(np.asarray(v), dtype="float64") for k, v in p0.items()}
    opt = keras.optimizers.Adafactor(**kw)
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(np.asarray(g[k]), dtype="float64"),
                              vs[k]) for k in vs])
    out.update({f"{i}/{k}": np.asarray(v.numpy()) for k, v in vs.items()})
np.savez(sys.argv[3], **out)
'''


def _run_keras(p0, grads, configs, tmp_path, backend="jax"):
    """Keras picks its backend at import: one subprocess (KERAS_BACKEND, float64 floatx and
    JAX x64) runs every config in ``configs``; returns one dict of params per config."""
    if importlib.util.find_spec("keras") is None:  # imported in the subprocess only
        pytest.skip("keras is not installed")
    inp, outp = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, p0=np.array(p0, dtype=object), grads=np.array(grads, dtype=object))
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1",
               KERAS_TORCH_DEVICE="cpu")
    subprocess.run([sys.executable, "-c", _KERAS, str(inp), json.dumps(configs), str(outp)],
                   check=True, env=env, capture_output=True)
    with np.load(outp) as f:
        return [{k: f[f"{i}/{k}"] for k in p0} for i in range(len(configs))]


# torch: the same float64 formulas in another order (torch.norm(g, dim)^2 / n for the means,
# lerp for the EMA, rsqrt(v) * g, norm / sqrt(numel) for the RMS, Python floats for every
# scalar): a few roundings per operation, ``_bound`` per tensor (U * steps * ops).
TORCH_CASES = [
    ({}, {}),
    ({"lr": 0.5, "weight_decay": 0.1, "maximize": True},  # 1/sqrt(t) < lr: the relative step
     {"lr": 0.5, "weight_decay": 0.1, "maximize": True}),
    ({"eps1_mode": "clamp", "eps1": 1e-30}, {"eps": (1e-30, 1e-3)}),
    ({"clip_threshold": 2.0, "decay_rate": 0.5, "eps2": 1e-2},
     {"d": 2.0, "beta2_decay": -0.5, "eps": (None, 1e-2)}),
]


@pytest.mark.parametrize(("ours", "theirs"), TORCH_CASES)
def test_torch_profile_matches_torch_optim_adafactor(ours, theirs):
    p0, grads = _problem()
    got = _run_ref(p0, grads, "torch", **ours)
    for k, r in _rel(got, _run_torch(p0, grads, **theirs), p0).items():
        assert r <= _bound(SHAPES[k], STEPS), (k, r)


@pytest.mark.parametrize(("ours", "theirs"), TORCH_CASES[:2])
def test_torch_profile_float32(ours, theirs):
    """float32 parameters: torch's scalars are Python floats (float64) like the reference's;
    the tensor arithmetic is float32, so the same count of roundings with U32 in place of U."""
    p0, grads = _problem()
    p0 = {k: v.astype(np.float32) for k, v in p0.items()}
    grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads]
    got = _run_ref(p0, grads, "torch", **ours)
    assert all(v.dtype == np.float32 for v in got.values())
    for k, r in _rel(got, _run_torch(p0, grads, **theirs), p0).items():
        assert r <= _bound(SHAPES[k], STEPS, U32), (k, r)


OPTAX_CASES = [
    ({"lr": 1.0}, {}),  # learning_rate=None: no lr scaling; below 128: nothing factored
    ({"lr": 0.01, "beta1": 0.9, "weight_decay": 0.1, "min_dim_size_to_factor": 1},
     {"learning_rate": 0.01, "momentum": 0.9, "dtype_momentum": "float64",
      "weight_decay_rate": 0.1, "min_dim_size_to_factor": 1}),
    ({"lr": 0.01, "clip_threshold": math.inf, "multiply_by_parameter_scale": False,
      "min_dim_size_to_factor": 1},
     {"learning_rate": 0.01, "clipping_threshold": None, "multiply_by_parameter_scale": False,
      "min_dim_size_to_factor": 1}),
    ({"lr": 0.01, "factored": False}, {"learning_rate": 0.01, "factored": False}),
]


def _xla_beta2(xp, t, c):
    """optax's beta2_hat, 1 - t**-c in float32, evaluated by XLA (its pow is not NumPy's)."""
    import jax.numpy as jnp

    return xp.asarray(np.asarray(1.0 - jnp.asarray(np.asarray(t)) ** (-jnp.asarray(
        np.asarray(c)))))


def _optax_pow_steps(steps=STEPS, c=0.8):
    """Steps at which XLA's and NumPy's float32 ``1 - t**-c`` differ (1 ULP each)."""
    import jax.numpy as jnp

    t = np.arange(1, steps + 1, dtype=np.float32)
    xla = np.asarray(1.0 - jnp.asarray(t) ** jnp.float32(-c))
    return t[xla != 1 - t ** np.float32(-c)]


@pytest.mark.parametrize(("ours", "theirs"), OPTAX_CASES)
def test_optax_profile_matches_optax_adafactor(ours, theirs, monkeypatch):
    """optax computes beta2_hat in float32 (profile: ``beta2_precision="float32"``); float32
    ``pow`` is correctly rounded in neither NumPy nor XLA, and they differ by 1 ULP (2**-24 at
    beta2_hat in [0.5, 1)) at the steps :func:`_optax_pow_steps` lists. A 1-ULP change of
    beta2_hat at step t changes (1 - beta2_hat) relatively by U32 * t**0.8 and that step's
    update by at most that much: allowance ``_bound + sum_t 2 U32 t**0.8``. With XLA's pow
    substituted for the reference's, the float64 allowance ``_bound`` alone must hold."""
    _jax()
    p0, grads = _problem()
    theirs_p, _ = _run_optax(p0, grads, **theirs)
    pow_steps = _optax_pow_steps()
    extra = sum(2 * U32 * float(t) ** 0.8 for t in pow_steps)
    for k, r in _rel(_run_ref(p0, grads, "optax", **ours), theirs_p, p0).items():
        assert r <= _bound(SHAPES[k], STEPS) + extra, (k, r)
    monkeypatch.setattr(A, "_beta2_hat", _xla_beta2)
    for k, r in _rel(_run_ref(p0, grads, "optax", **ours), theirs_p, p0).items():
        assert r <= _bound(SHAPES[k], STEPS), (k, r)


def test_coupled_decay_matches_optax_add_decayed_weights_before_adafactor(monkeypatch):
    """``weight_decay_mode="coupled"``: L2 in the gradient, as optax users write it, chain
    (add_decayed_weights, adafactor); with XLA's float32 pow, the float64 bound."""
    _jax()
    import optax

    monkeypatch.setattr(A, "_beta2_hat", _xla_beta2)
    p0, grads = _problem()
    tx = optax.chain(optax.add_decayed_weights(0.1),
                     optax.adafactor(learning_rate=0.01, min_dim_size_to_factor=1))
    theirs, _ = _run_optax(p0, grads, tx=tx)
    got = _run_ref(p0, grads, "optax", lr=0.01, min_dim_size_to_factor=1, weight_decay=0.1,
                   weight_decay_mode="coupled")
    for k, r in _rel(got, theirs, p0).items():
        assert r <= _bound(SHAPES[k], STEPS), (k, r)


def _xla_mean(xp, x, precision, axis=None):
    """Keras' float32 mean of a float64 array, evaluated by XLA (its reduction order)."""
    import jax.numpy as jnp

    if precision == "compute":
        return xp.mean(x, axis=axis, keepdims=axis is not None)
    m = jnp.mean(jnp.asarray(np.asarray(x)), axis=axis, keepdims=axis is not None,
                 dtype=jnp.float32)
    return xp.asarray(np.asarray(m).astype(np.float64))


KERAS_CASES = [
    ({}, {}),
    ({"lr": 0.5, "weight_decay": 0.1}, {"learning_rate": 0.5, "weight_decay": 0.1}),
    ({"clip_threshold": 2.0, "eps2": 1e-2, "decay_rate": 0.5},
     {"clip_threshold": 2.0, "epsilon_2": 1e-2, "beta_2_decay": -0.5}),
]


def test_keras_profile_matches_keras_adafactor(tmp_path, monkeypatch):
    """Keras' ``ops.mean`` computes a float64 input in float32 (``mean_precision="float32"``)
    and XLA sums in another order than NumPy. Each float32 mean of n positive terms is within
    (n - 1) U32 of the exact mean in any order, so two orders differ by 2 n U32; a step has
    four means (the two factors, their normaliser, RMS(U)) and RMS(theta): per step and in total
    (the errors do not compound, see ``_bound``) at most ``10 n U32`` of the distance, with n
    the tensor's size. With XLA's mean substituted for the reference's, ``_bound`` must hold.
    """
    _jax()
    p0, grads = _problem()
    theirs = _run_keras(p0, grads, [kw for _, kw in KERAS_CASES], tmp_path)
    for (ours, _), their in zip(KERAS_CASES, theirs, strict=True):
        got = _run_ref(p0, grads, "keras", **ours)
        for k, r in _rel(got, their, p0).items():
            assert r <= _bound(SHAPES[k], STEPS) + 10 * max(math.prod(SHAPES[k]), 1) * U32, \
                (ours, k, r)
    monkeypatch.setattr(A, "_mean", _xla_mean)
    for (ours, _), their in zip(KERAS_CASES, theirs, strict=True):
        got = _run_ref(p0, grads, "keras", **ours)
        for k, r in _rel(got, their, p0).items():
            assert r <= _bound(SHAPES[k], STEPS), (ours, k, r)


def test_keras_relative_step_false_changes_nothing(tmp_path):
    """Keras applies rho_t = min(lr, 1/sqrt(t)) whatever relative_step says (finding): with
    lr = 0.5 the two Keras runs are identical, and the reference's relative_step=False (rho_t
    = lr) is far from both."""
    _jax()
    p0, grads = _problem()
    on, off = _run_keras(p0, grads, [{"learning_rate": 0.5},
                                     {"learning_rate": 0.5, "relative_step": False}], tmp_path)
    for k in p0:
        np.testing.assert_array_equal(on[k], off[k])
    plain = _run_ref(p0, grads, "keras", lr=0.5, relative_step=False)
    assert min(_rel(plain, off, p0).values()) > 0.1


# ---------------------------------------------------------------- 3. factoring rules


@pytest.mark.parametrize(("shape", "rule", "want"), [
    ((8, 2, 3), dict(factor_axes="last_two"), (2, 1)),
    ((8, 2, 3), dict(factor_axes="two_largest"), (0, 2)),
    ((8, 2, 3), dict(factor_axes="two_largest", min_dim_size_to_factor=128), None),
    ((8, 2, 3), dict(factor_axes="two_largest", min_dim_size_to_factor=3), (0, 2)),
    ((8, 2, 3), dict(factor_axes="last_two", min_dim_size_to_factor=3), None),
    ((4, 200), dict(factor_axes="last_two"), (1, 0)),
    ((4, 200), dict(factor_axes="two_largest"), (1, 0)),
    ((4, 200), dict(factor_axes="two_largest", min_dim_size_to_factor=128), None),
    ((4, 200), dict(factored=False), None),
    ((3, 3, 3), dict(factor_axes="two_largest"), (2, 1)),  # ties: the later axis is larger
    ((5,), dict(), None),
    ((), dict(), None),
])
def test_factoring_rules(shape, rule, want):
    assert A.factored_axes(shape, **rule) == want
    st = adafactor_init(np.zeros(shape), **rule)
    if want is None:
        assert st.v.shape == shape and st.v_row is None and st.v_col is None
    else:
        a0, a1 = want
        assert st.v_row.shape == tuple(1 if i == a0 else n for i, n in enumerate(shape))
        assert st.v_col.shape == tuple(1 if i == a1 else n for i, n in enumerate(shape))


@pytest.mark.parametrize("shape", [(8, 2, 3), (4, 200)])
def test_factoring_rules_match_the_frameworks_state(shape):
    """The state each framework builds has the shapes of the profile's rule (ours keep the
    reduced axis with size 1; optax drops it)."""
    torch = pytest.importorskip("torch")
    _jax()
    p = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    p.grad = torch.ones(shape, dtype=torch.float64)
    opt = torch.optim.Adafactor([p])
    opt.step()
    ts = opt.state[p]
    st = SPEC.init(np.zeros(shape), **SPEC.init_kwargs(SPEC.settings("torch")))
    assert tuple(ts["row_var"].shape) == st.v_row.shape
    assert tuple(ts["col_var"].shape) == st.v_col.shape
    for over in ({}, {"min_dim_size_to_factor": 1}):
        _, os_ = _run_optax({"x": np.zeros(shape)}, [], **over)
        fs = os_[0]
        st = SPEC.init(np.zeros(shape), **SPEC.init_kwargs(SPEC.settings("optax", lr=1.0,
                                                                         **over)))
        if st.v is not None:
            assert fs.v["x"].shape == shape
        else:
            a0, a1 = A.factored_axes(shape, factor_axes="two_largest", min_dim_size_to_factor=1)
            assert fs.v_row["x"].shape == tuple(np.squeeze(st.v_row, axis=a0).shape)
            assert fs.v_col["x"].shape == tuple(np.squeeze(st.v_col, axis=a1).shape)


def test_three_d_tensor_is_batched_over_leading_axes():
    """'last_two' on (8, 2, 3) is the matrix algorithm applied to each of the 8 slices."""
    p0, grads = _problem(5, {"x": (8, 2, 3)}, seed=3)
    s = SPEC.settings("paper")
    whole, _ = _ref_paper(p0["x"], [g["x"] for g in grads])
    # the slices share nothing but RMS(theta) and RMS(U): equal slices give equal results
    p = np.repeat(p0["x"][:1], 8, axis=0)
    gs = [np.repeat(g["x"][:1], 8, axis=0) for g in grads]
    rep, _ = _ref_paper(p, gs)
    one, st = p0["x"][0], SPEC.init(p0["x"][0], **SPEC.init_kwargs(s))
    for g in gs:
        one, st = SPEC.step(one, g[0], st, **s)
    np.testing.assert_allclose(rep, np.repeat(one[None], 8, axis=0), rtol=1e-13)
    assert whole.shape == (8, 2, 3)


# ---------------------------------------------------------------- 4. bad input


@pytest.mark.parametrize(("kw", "exc", "words"), [
    ({"lr": -1.0}, ValueError, "lr=-1.0 is outside the accepted range [0, inf)"),
    ({"clip_threshold": 0.5}, ValueError, "clip_threshold=0.5 is outside the accepted range [1"),
    ({"decay_rate": -0.8}, ValueError, "decay_rate=-0.8 is outside"),
    ({"eps2": float("nan")}, ValueError, "eps2=nan"),
    ({"eps1_mode": "max"}, ValueError, "eps1_mode='max' is not accepted; use one of 'add'"),
    ({"beta2_precision": "float16"}, ValueError, "beta2_precision='float16'"),
    ({"relative_step": 1}, TypeError, "relative_step must be True or False"),
    ({"min_dim_size_to_factor": 1.5}, TypeError, "min_dim_size_to_factor must be an int"),
    ({"beta1": 0.9}, ValueError, "beta1=0.9 asks for momentum but the state has no momentum"),
    ({"factor_axes": "two_largest"}, ValueError, "state.v_row has shape (8, 2, 1)"),
    ({"factored": False}, ValueError, "state.v has shape None"),
])
def test_bad_input_names_the_argument_and_range(kw, exc, words):
    p = np.ones((8, 2, 3))
    with pytest.raises(exc) as e:
        adafactor_step(p, p, adafactor_init(p), **kw)
    assert words in str(e.value)


def test_bad_arrays():
    p = np.ones((4, 3))
    with pytest.raises(ValueError, match="grad has shape"):
        adafactor_step(p, np.ones((3, 4)), adafactor_init(p))
    with pytest.raises(TypeError, match=r"not an? AdafactorState"):
        adafactor_step(p, p, (0, None))
    with pytest.raises(TypeError, match="adafactor_init: param has dtype"):
        adafactor_init(np.ones(3, dtype=np.int64))
    with pytest.raises(ValueError, match="beta1=1.0 is outside"):
        adafactor_init(p, beta1=1.0)
    st = adafactor_init(p)
    with pytest.raises(ValueError, match="state.count=-1 is negative"):
        adafactor_step(p, p, st._replace(count=np.asarray(-1)))
