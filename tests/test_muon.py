"""Muon: the Newton–Schulz iteration against an exact evaluation, each profile against the
installed torch.optim.Muon, optax.contrib.muon and keras.optimizers.Muon, the layout ratio, the
tree-level routing, and bad input.

Tolerances (u = unit roundoff: 2^-53 float64, 2^-24 float32, 2^-8 bfloat16; s = NS steps = 5):

* Newton–Schulz in float64/float32 against a 200-bit mpmath evaluation of the same iteration:
  each iteration has three rounded lines (X X^T, bA + cA^2, aX + BX) whose inner products of
  length <= k (k = the larger dimension) commit a normwise relative error <= k*u each (standard
  matmul bound), and an error present before iteration j is amplified by at most
  L = max |p'(sigma)| over the band the singular values live in (p(s) = as + bs^3 + cs^5;
  L < 4, computed below) in each later iteration. Bound: 3 k u sum_{j<s} L^j. It is loose
  (measured 1.6e-15 and 8e-7 where it allows ~1e-12 and ~1e-3) but it is a bound, not a fit.
* Newton–Schulz in bfloat16: that bound is vacuous (u = 4e-3), so bfloat16 is checked against
  an evaluation *at bfloat16 precision*: the same lines computed in float64 from bfloat16-rounded
  values and rounded to bfloat16 once per line (the storage model of torch's kernels). The two
  may differ only where float32 accumulation moves a line's result across a bfloat16 rounding
  boundary; allowed: one bfloat16 ulp (2u) of the result's norm; measured 0. Against the exact
  result, bfloat16 is held to the first-order estimate 3 s u (three roundings per iteration,
  no amplification): measured 1.0e-2 to 2.2e-2, bound 5.9e-2.
* Trajectories against the frameworks (10 steps, float64 parameters): the reference performs the
  framework's operations in the same dtypes, so what remains is the order of roundings in the
  update (p*(1 - lr wd) - lr r O vs p - lr(rO + wd p), a lerp vs mu*m + (1-mu)*g): a few ulp of
  |p| per step. Allowed: ``64 u * travelled + STEPS * 2 ulp(|p|)``, as in test_backends. torch's
  forced bfloat16 is matched by ns_dtype='bfloat16' on torch tensors (measured 0 to 4e-16).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adaptive_ref import registry
from adaptive_ref.optimizers.muon import (
    NS_COEFFICIENTS,
    ROUTES,
    BFloat16Unavailable,
    muon_init,
    muon_step,
    newton_schulz,
    shape_factor,
)
from adaptive_ref.routing import Routing, make_routed

SPEC = registry.get("muon")
STEPS = 10
U = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8}
ROOT = Path(__file__).resolve().parent.parent


# ---- the iteration alone ----------------------------------------------------------------------

def _p(s, a=NS_COEFFICIENTS[0], b=NS_COEFFICIENTS[1], c=NS_COEFFICIENTS[2]):
    return a * s + b * s**3 + c * s**5


def _band(lo: float, steps: int = 5) -> tuple[float, float]:
    """Range of p applied ``steps`` times over [lo, 1] (dense grid: p^s is smooth)."""
    s = np.concatenate([np.geomspace(lo, 1.0, 200001), np.linspace(lo, 1.0, 200001)])
    for _ in range(steps):
        s = _p(s)
    return float(s.min()), float(s.max())


def _lipschitz(hi: float) -> float:
    s = np.linspace(0.0, hi, 100001)
    a, b, c = NS_COEFFICIENTS
    return float(np.max(np.abs(a + 3 * b * s**2 + 5 * c * s**4)))


def _scale_sensitivity(lo: float = 1e-2, steps: int = 5) -> float:
    """max over [lo, 1] of sigma * d/dsigma p^steps(sigma)."""
    s = np.linspace(lo, 1.0, 200001)
    y, d = s.copy(), np.ones_like(s)
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        d = d * (a + 3 * b * y**2 + 5 * c * y**4)
        y = _p(y)
    return float(np.max(np.abs(s * d)))


def _exact_ns(x: np.ndarray, eps=1e-7, steps=5) -> np.ndarray:
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(200):
        m = mpmath.matrix(x.tolist())
        wide = m.rows <= m.cols
        if not wide:
            m = m.T
        m = m / (mpmath.sqrt(sum(v**2 for v in m)) + mpmath.mpf(eps))
        a, b, c = (mpmath.mpf(v) for v in NS_COEFFICIENTS)
        for _ in range(steps):
            g = m * m.T
            m = a * m + (b * g + c * g * g) * m
        out = np.array(m.tolist(), dtype=float)
    return out if wide else out.T


SHAPES = [(4, 8), (8, 4), (16, 32), (12, 12)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_newton_schulz_matches_an_exact_evaluation(shape, dtype):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    exact = _exact_ns(x)
    got = newton_schulz(x.astype(dtype)).astype(np.float64)
    assert got.dtype == np.float64 and got.shape == shape
    lo, hi = _band(1e-3)
    bound = 3 * max(shape) * U[dtype] * sum(_lipschitz(hi) ** j for j in range(5))
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err <= bound, (err, bound)


def _bf16(a: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    return torch.tensor(a, dtype=torch.float32).bfloat16().double().numpy()


def _ns_at_bf16_precision(x: np.ndarray, eps=1e-7, steps=5) -> np.ndarray:
    """Each line in float64 from bfloat16 values, rounded to bfloat16 once."""
    a, b, c = NS_COEFFICIENTS
    y = _bf16(x)
    wide = y.shape[0] <= y.shape[1]
    y = y if wide else y.T
    y = _bf16(y / (_bf16(np.sqrt(np.sum(y * y))) + _bf16(np.array(eps))))
    for _ in range(steps):
        g = _bf16(y @ y.T)
        y = _bf16(a * y + _bf16(b * g + c * (g @ g)) @ y)
    return y if wide else y.T


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_bfloat16_on_torch(shape):
    torch = pytest.importorskip("torch")
    from torch.optim._muon import _zeropower_via_newtonschulz

    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    got_t = newton_schulz(torch.tensor(x), dtype="bfloat16")
    assert got_t.dtype == torch.bfloat16
    got = got_t.double().numpy()
    # torch's own kernel sequence: the reference reproduces it (same roundings)
    theirs = _zeropower_via_newtonschulz(torch.tensor(x), NS_COEFFICIENTS, 5, 1e-7)
    emulated = _ns_at_bf16_precision(x)
    scale = np.linalg.norm(emulated)
    assert np.linalg.norm(got - emulated) <= 2 * U["bfloat16"] * scale
    # torch clamps (eps_form='clamp'); with ||X|| >> eps both forms round to the same bfloat16
    assert np.linalg.norm(got - theirs.double().numpy()) <= 2 * U["bfloat16"] * scale
    exact = _exact_ns(x)
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err <= 3 * 5 * U["bfloat16"], err


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_singular_values_lie_in_the_quintic_band(shape):
    """In exact arithmetic NS maps each singular value sigma of X_0 to p^5(sigma); so the output's
    singular values lie in p^5([sigma_min, 1]) (about [0.68, 1.15] for sigma_min >= 2e-3)."""
    x = np.random.default_rng(sum(shape) + 1).standard_normal(shape)
    s0 = np.linalg.svd(x / (np.linalg.norm(x) + 1e-7), compute_uv=False)
    lo, hi = _band(float(s0.min()))
    assert 0.6 < lo and hi < 1.2
    s = np.linalg.svd(newton_schulz(x), compute_uv=False)
    slack = 1e-12
    assert lo - slack <= s.min() and s.max() <= hi + slack, (s.min(), s.max(), lo, hi)


def test_newton_schulz_commutes_with_transposition():
    x = np.random.default_rng(3).standard_normal((5, 9))
    assert np.array_equal(newton_schulz(x.T), newton_schulz(x).T)


# ---- the frameworks ---------------------------------------------------------------------------

def _problem(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(STEPS)]


def _reference(p0, grads, settings, asarray=np.asarray):
    p = asarray(p0)
    s = muon_init(p)
    for g in grads:
        p, s = muon_step(p, asarray(g), s, **settings)
    return p


def _allowance(p0, p_ref):
    travelled = float(np.max(np.abs(p_ref - p0)))
    return 64 * U["float64"] * travelled + STEPS * 2 * float(np.spacing(np.max(np.abs(p_ref))))


FRAMEWORK_SHAPES = [(4, 6), (6, 4), (5, 5)]


@pytest.mark.parametrize("shape", FRAMEWORK_SHAPES)
def test_torch_profile_matches_torch_optim_muon(shape):
    torch = pytest.importorskip("torch")
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    p0, grads = _problem(shape)
    w = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.Muon([w], lr=0.02, weight_decay=0.1)
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
    theirs = w.detach().numpy()
    settings = SPEC.settings("torch", lr=0.02)
    ours = _reference(p0, grads, settings, torch.tensor).numpy()
    assert np.max(np.abs(ours - theirs)) <= _allowance(p0, ours)
    # the forced bfloat16 is the whole difference to a float64 iteration (finding M1)
    f64 = _reference(p0, grads, {**settings, "ns_dtype": "float64"})
    assert np.max(np.abs(f64 - theirs)) > 1e-4


def _optax_run(p0, grads, **kw):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    tx = optax.contrib.muon(**kw)
    params = jnp.asarray(p0)
    state = tx.init(params)
    for g in grads:
        upd, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, upd)
    return np.asarray(params)


@pytest.mark.parametrize("shape", FRAMEWORK_SHAPES)
def test_optax_profile_matches_optax_contrib_muon(shape):
    p0, grads = _problem(shape)
    theirs = _optax_run(p0, grads, learning_rate=0.02, weight_decay=0.1)
    ours = _reference(p0, grads, SPEC.settings("optax", lr=0.02, weight_decay=0.1))
    assert np.max(np.abs(ours - theirs)) <= _allowance(p0, ours)
    rms = _optax_run(p0, grads, learning_rate=0.02, consistent_rms=0.2)
    ours = _reference(p0, grads, SPEC.settings("optax", lr=0.02, shape_scale="rms"))
    assert np.max(np.abs(ours - rms)) <= _allowance(p0, ours)


_KERAS_SCRIPT = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import keras
keras.config.set_floatx("float64")
from adaptive_ref import registry
from adaptive_ref.optimizers.muon import muon_init, muon_step
data = json.loads(sys.stdin.read())
p0, grads = np.array(data["p0"]), [np.array(g) for g in data["grads"]]
v = keras.Variable(p0, dtype="float64", name="kernel")
opt = keras.optimizers.Muon(learning_rate=0.02, weight_decay=0.1)
opt.build([v])
for g in grads:
    opt.apply_gradients([(jnp.asarray(g), v)])
settings = registry.get("muon").settings("keras", lr=0.02, weight_decay=0.1)
p = jnp.asarray(p0)
s = muon_init(p)
for g in grads:
    p, s = muon_step(p, jnp.asarray(g), s, **settings)
print(json.dumps({"keras": np.asarray(v.value).tolist(), "ours": np.asarray(p).tolist()}))
"""


@pytest.mark.parametrize("shape", FRAMEWORK_SHAPES)
def test_keras_profile_matches_keras_muon(shape):
    """In a subprocess (Keras picks its backend at import). The reference runs on JAX arrays
    there: Keras computes the normalising Frobenius norm in float32 (finding M4), and a float32
    sum in NumPy's order and in XLA's differ by an ulp that the iteration amplifies (1.8e-7 on a
    16x16 matrix); on JAX arrays the sums are XLA's in both."""
    for mod in ("keras", "jax"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")
    p0, grads = _problem(shape)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _KERAS_SCRIPT], capture_output=True, text=True,
                          input=json.dumps({"p0": p0.tolist(),
                                            "grads": [g.tolist() for g in grads]}),
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    theirs, ours = np.array(out["keras"]), np.array(out["ours"])
    # A rounding-level difference in the float64 direction (Keras' m + (g + m(mu - 1)) against
    # mu*m + g) can flip one float32 rounding in the norm: a relative change <= u32 of the scale
    # of X_0, which moves O by at most K u32 with K = max sigma |(p^5)'(sigma)| on the band
    # (|O| <= 1.2), per step, times lr * r. Measured 1.6e-9 to 2.2e-9.
    lr, r = 0.02, shape_factor(shape, "rms", rms_scale=0.2)
    extra = STEPS * lr * r * _scale_sensitivity() * U["float32"] * 1.2
    assert np.max(np.abs(ours - theirs)) <= _allowance(p0, ours) + extra


@pytest.mark.parametrize(("shape", "ratio"), [((8, 4), math.sqrt(2)), ((4, 8), 1 / math.sqrt(2)),
                                              ((6, 6), 1.0)])
def test_layout_ratio(shape, ratio):
    """The same array read as out x in (torch, upstream) or in x out (optax): the fan-ratio scale
    differs by sqrt(rows/cols) or its inverse, 1.41x / 0.71x for a 2:1 matrix."""
    p0, grads = _problem(shape)
    base = SPEC.settings(None, momentum=0.0, nesterov="none", weight_decay=0.0)
    a = _reference(p0, grads[:1], {**base, "layout": "out_in"}) - p0
    b = _reference(p0, grads[:1], {**base, "layout": "in_out"}) - p0
    assert np.linalg.norm(a) / np.linalg.norm(b) == pytest.approx(ratio, rel=1e-14)
    assert shape_factor(shape, "fan_ratio", "out_in") / shape_factor(shape, "fan_ratio", "in_out") \
        == pytest.approx(ratio, rel=1e-15)


def test_layout_ratio_between_torch_and_optax():
    """The frameworks themselves: first-step update norms of torch.optim.Muon over
    optax.contrib.muon on the same (8, 4) and (4, 8) arrays. The first NS input is a multiple of
    g in both (their Nesterov forms differ by a scalar), so only the layout and torch's bfloat16
    remain; the latter is held to the bfloat16 estimate 3 s u of the test above."""
    torch = pytest.importorskip("torch")
    for shape, ratio in (((8, 4), math.sqrt(2)), ((4, 8), 1 / math.sqrt(2))):
        p0, grads = _problem(shape)
        w = torch.nn.Parameter(torch.tensor(p0))
        opt = torch.optim.Muon([w], lr=0.02, weight_decay=0.0)
        w.grad = torch.tensor(grads[0])
        opt.step()
        t = np.linalg.norm(w.detach().numpy() - p0)
        o = np.linalg.norm(_optax_run(p0, grads[:1], learning_rate=0.02) - p0)
        assert t / o == pytest.approx(ratio, rel=3 * 5 * U["bfloat16"])


# ---- the tree-level routing -------------------------------------------------------------------

def test_routing_sends_non_matrices_and_excluded_names_to_the_fallback():
    rng = np.random.default_rng(5)
    params = {"embedding": rng.standard_normal((10, 4)), "dense": {"kernel": rng.standard_normal(
        (4, 6)), "bias": rng.standard_normal(6)}, "scale": rng.standard_normal(())}
    grads = {"embedding": rng.standard_normal((10, 4)), "dense": {"kernel": rng.standard_normal(
        (4, 6)), "bias": rng.standard_normal(6)}, "scale": rng.standard_normal(())}
    assert ROUTES["keras"].mask(params) == {"embedding": False, "dense": {"kernel": True,
                                                                            "bias": False},
                                            "scale": False}
    assert ROUTES["torch"].mask(params)["embedding"] is True
    opt = make_routed("muon", profile="keras")
    state = opt.init(params)
    new, state = opt.step(params, grads, state)
    # each leaf equals the single-leaf step of its optimizer
    kw = SPEC.settings("keras")
    k, _ = muon_step(params["dense"]["kernel"], grads["dense"]["kernel"],
                     muon_init(params["dense"]["kernel"]), **kw)
    assert np.array_equal(new["dense"]["kernel"], k)
    adamw = registry.get("adamw")
    akw = adamw.settings("keras", lr=kw["lr"], weight_decay=0.004)
    for name in ("embedding", "scale"):
        e, _ = adamw.step(params[name], grads[name], adamw.init(params[name]), **akw)
        assert np.array_equal(new[name], e)
    assert state.primary["embedding"] is None and state.fallback["dense"]["kernel"] is None


def test_routing_optax_fallback_shares_lr_and_eps():
    opt = make_routed("muon", profile="optax", lr=0.05)
    assert opt.fallback.spec.name == "nadam"
    assert opt.fallback.settings["lr"] == 0.05 and opt.fallback.settings["eps"] == 1e-8
    custom = make_routed("muon", routing=Routing(exclude=("head",)), fallback={"lr": 1e-4})
    assert custom.fallback.settings["lr"] == 1e-4


# ---- bad input --------------------------------------------------------------------------------

def test_bfloat16_on_numpy_is_a_clear_error():
    p = np.zeros((3, 4))
    with pytest.raises(BFloat16Unavailable, match=r"ns_dtype='bfloat16'.*torch, JAX"):
        muon_step(p, p, muon_init(p), ns_dtype="bfloat16")
    assert issubclass(BFloat16Unavailable, TypeError)


def test_non_matrix_parameter_is_a_clear_error():
    p = np.zeros(5)
    with pytest.raises(ValueError, match=r"2-D matrices only.*routing"):
        muon_step(p, p, muon_init(p))


@pytest.mark.parametrize(("kw", "match"), [
    ({"ns_dtype": "float16"}, "ns_dtype"), ({"momentum": 1.0}, "momentum"),
    ({"nesterov": True}, "nesterov"), ({"layout": "rows"}, "layout"), ({"lr": -1.0}, "lr"),
    ({"eps_form": "max"}, "eps_form"), ({"ns_steps": 0}, "ns_steps"),
])
def test_bad_hyperparameters_name_the_argument(kw, match):
    p = np.zeros((3, 4))
    with pytest.raises(ValueError, match=match):
        muon_step(p, p, muon_init(p), **kw)


def test_ns_steps_must_be_an_int():
    p = np.zeros((3, 4))
    with pytest.raises(TypeError, match="ns_steps"):
        muon_step(p, p, muon_init(p), ns_steps=5.0)
    with pytest.raises(ValueError, match="2-D"):
        newton_schulz(np.zeros(3))


# ---- the bfloat16 rounding knobs (upstream) ---------------------------------------------------

def test_rounding_knobs_change_nothing_above_bfloat16():
    """ns_rounding only moves bfloat16 roundings: in float64 and float32 'op' is 'line' bit for
    bit; scale_dtype='ns' reorders one product (lr*(r*O) against (lr*r)*O): a few ulp."""
    for dtype in ("float64", "float32"):
        x = np.random.default_rng(9).standard_normal((6, 9)).astype(dtype)
        assert np.array_equal(newton_schulz(x, rounding="op"), newton_schulz(x))
    p0, grads = _problem((8, 4))
    base = SPEC.settings(None)
    a = _reference(p0, grads, base)
    b = _reference(p0, grads, {**base, "scale_dtype": "ns"})
    assert np.max(np.abs(a - b)) <= _allowance(p0, a)


def test_upstream_rounding_differs_from_torch_in_bfloat16():
    """Upstream rounds every bfloat16 operation (b * A + c * A @ A) where torch's addmm rounds
    once per line: a bfloat16-sized difference (finding M9), zero in float64."""
    torch = pytest.importorskip("torch")
    x = torch.tensor(np.random.default_rng(4).standard_normal((8, 16)))
    line = newton_schulz(x, dtype="bfloat16").double()
    op = newton_schulz(x, dtype="bfloat16", rounding="op").double()
    rel = float(torch.linalg.norm(line - op) / torch.linalg.norm(line))
    assert 0 < rel <= 3 * 5 * U["bfloat16"]


# ---- the profiles' numbers are the frameworks' defaults ---------------------------------------

def _defaults(fn) -> dict:
    import inspect

    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_profile_defaults_match_torch_and_optax_signatures():
    torch = pytest.importorskip("torch")
    optax = pytest.importorskip("optax")
    t = _defaults(torch.optim.Muon)
    s = SPEC.profiles["torch"].settings
    assert (s["lr"], s["weight_decay"], s["momentum"], s["eps"], s["ns_steps"]) == (
        t["lr"], t["weight_decay"], t["momentum"], t["eps"], t["ns_steps"])
    assert (s["ns_a"], s["ns_b"], s["ns_c"]) == tuple(t["ns_coefficients"])
    assert t["nesterov"] is True and t["adjust_lr_fn"] is None  # 'lerp', 'fan_ratio'
    o = _defaults(optax.contrib.muon)
    s = SPEC.profiles["optax"].settings
    assert (s["momentum"], s["eps"], s["weight_decay"], s["ns_steps"]) == (
        o["beta"], o["eps"], o["weight_decay"], o["ns_steps"])
    assert (s["ns_a"], s["ns_b"], s["ns_c"]) == tuple(o["ns_coeffs"])
    assert o["nesterov"] is True and o["consistent_rms"] is None  # 'nadam', 'fan_ratio'


def test_profile_defaults_match_keras_signature():
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    code = ("import inspect, json, keras\n"
            "sig = inspect.signature(keras.optimizers.Muon)\n"
            "print(json.dumps({k: p.default for k, p in sig.parameters.items()\n"
            "                  if isinstance(p.default, (int, float, bool))}))\n")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    k = json.loads(proc.stdout.strip().splitlines()[-1])
    s = SPEC.profiles["keras"].settings
    assert (s["lr"], s["weight_decay"], s["momentum"], s["ns_steps"], s["rms_scale"]) == (
        k["learning_rate"], k["weight_decay"], k["momentum"], k["ns_steps"], k["rms_rate"])
    assert (s["ns_a"], s["ns_b"], s["ns_c"]) == (k["muon_a"], k["muon_b"], k["muon_c"])
    assert k["nesterov"] is True and k["exclude_embeddings"] is True
    assert ROUTES["keras"].fallback_settings["weight_decay"] == k["adam_weight_decay"]


# ---- the conformance error model's Muon Jacobian -----------------------------------------------

@pytest.mark.parametrize("cid", ["muon[optax,float64,base]", "muon[keras,float32,base]",
                                 "muon[torch,float64,nesterov=nadam]",
                                 "muon[torch,float64,weight_decay=0.01]"])
def test_error_model_jacobian_matches_finite_differences(cid):
    """error_model._muon_jacobian (the linearised Newton-Schulz iteration) against the generic
    finite differences of the float64 reference, at step 3 of each parameter of the case."""
    from adaptive_ref.conformance import cases, error_model

    case = next(c for c in cases.catalogue(["muon"]) if c.id == cid)
    for p in case.params:
        pp = error_model._Param(case, SPEC, p)
        for t in range(1, 4):
            old = pp.values()
            g = np.asarray(case.gradients(t)[p.name], dtype=np.float64)
            new, st = pp.step(old, g, t, case.lr_at(t))
            if t == 3:
                fd = error_model._tensor_jacobian(pp, old, new, g, t, case.lr_at(t))
                ours = error_model._muon_jacobian(pp, old, new, g, t, case.lr_at(t))
                # finite differences with a relative step of 2^-20: their own error ~1e-6
                assert np.max(np.abs(fd - ours)) <= 1e-6 * np.max(np.abs(fd)), (cid, p.name)
            pp.x, pp.st = new["p"], st
