"""Per-tensor optimizers (LAMB, LARS): the trust ratio, its exact oracle and its error model.

* the reference's zero-norm rules and decay placements do what the profiles say;
* the exact oracle (``fidelity.TENSOR_STEPS``) steps a whole parameter: one step agrees with the
  float64 reference to rounding, and moving one element moves every element's update;
* the error model propagates through the coupling (its Jacobian has the off-diagonal entries
  of the norms) and charges the ratio's own roundings: a norm accumulated in the worst order
  (sequentially, in float32) passes the float32 goldens, while a ratio off by 1e-4 (float32) or
  1e-11 (float64) does not.
"""

import dataclasses

import mpmath
import numpy as np
import pytest

from adaptive_ref import registry
from adaptive_ref.conformance import cases, error_model, fidelity
from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance.adapters.reference import ReferenceAdapter
from adaptive_ref.conformance.runner import run_case
from adaptive_ref.testing.backends import Backend

TENSOR = [n for n in registry.names() if registry.get(n).coupling == "tensor"]


def test_per_tensor_optimizers_are_in_the_catalogue():
    assert set(TENSOR) >= {"lamb", "lars"}
    for name in TENSOR:
        assert cases.in_catalogue(registry.get(name)) == (True, "")
    # the flag, not the name, admits them: without it a non-elementwise spec stays out
    plain = dataclasses.replace(registry.get("lamb"), coupling="element")
    assert cases.in_catalogue(plain) == (False, "not elementwise")


@pytest.mark.parametrize(("name", "profile", "moved"), [
    ("lamb", "optax", True), ("lars", "optax", True), ("lars", "paper", False)])
def test_zero_norm_rule(name, profile, moved):
    spec = registry.get(name)
    hp = spec.settings(profile, lr=0.5)
    p = np.zeros(3)
    new, _ = spec.step(p, np.array([1.0, -2.0, 3.0]), spec.init(p), **hp)
    assert bool(np.any(new != 0)) == moved
    if name == "lars" and moved:  # the ratio is 1, not the trust coefficient
        np.testing.assert_allclose(new, -0.5 * np.array([1.0, -2.0, 3.0]))


def test_lamb_decay_placement_reads_the_decayed_norm():
    spec = registry.get("lamb")
    p, g = np.array([3.0, -4.0]), np.array([1.0, 1.0])
    kw = dict(lr=0.1, weight_decay=0.5, eps=0.0)
    out, _ = spec.step(p, g, spec.init(p), decay_placement="decoupled", **kw)
    pd = p * (1 - 0.1 * 0.5)
    r = np.sign(g)  # m_hat / sqrt(v_hat) at step 1
    np.testing.assert_allclose(out, pd - 0.1 * np.linalg.norm(pd) / np.linalg.norm(r) * r)
    out, _ = spec.step(p, g, spec.init(p), decay_placement="trust", **kw)
    r = np.sign(g) + 0.5 * p
    np.testing.assert_allclose(out, p - 0.1 * np.linalg.norm(p) / np.linalg.norm(r) * r)


def _exact_step(name, hp, p, g, t=1):
    with mpmath.workdps(40):
        hp = {**fidelity._FILL, **hp, "_case_dtype": "float64"}
        es = [fidelity._Elem(mpmath.mpf(float(x)), fidelity._init_fields(name, hp)) for x in p]
        fidelity.TENSOR_STEPS[name](es, [mpmath.mpf(float(x)) for x in g], t, hp, hp["lr"])
        return np.array([float(e.p) for e in es])


@pytest.mark.parametrize(("name", "profile"), [("lamb", "optax"), ("lamb", "keras"),
                                               ("lars", "optax"), ("lars", "paper")])
def test_the_exact_step_sees_the_whole_tensor(name, profile):
    spec = registry.get(name)
    hp = spec.settings(profile, lr=0.1, weight_decay=0.01)
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=6), rng.normal(size=6)
    ref, _ = spec.step(p, g, spec.init(p), **hp)
    np.testing.assert_allclose(_exact_step(name, hp, p, g), ref, rtol=1e-14)
    q = p.copy()
    q[0] *= 2.0  # one element changes the norm, hence every element's update
    moved, before = _exact_step(name, hp, q, g) - q, _exact_step(name, hp, p, g) - p
    assert np.all(moved[1:] != before[1:])


def _case(cid):
    (case,) = [c for c in fmt.load_cases(cid.split("[")[0]) if c.id == cid]
    return case


def test_the_error_model_propagates_through_the_norms():
    case = _case("lamb[optax,float64,base]")
    spec = registry.get("lamb")
    pp = error_model._Param(case, spec, case.params[2])  # "c", (3, 5)
    g = np.asarray(case.gradients(1)["c"], dtype=np.float64)
    old = pp.values()
    new, _ = pp.step(old, g, 1, None)
    jac = error_model._tensor_jacobian(pp, old, new, g, 1, None)
    n = old["p"].size
    dp = jac[:n, :n]  # d p_new / d p_old
    off = dp - np.diag(np.diag(dp))
    assert np.count_nonzero(np.abs(off) > 1e-12) > n * (n - 1) // 2  # dense: the norm couples
    # d p_new_i / d p_old_j = -lr r_i p_j / (||p|| ||r||) for i != j (decay 0)
    p0 = old["p"].reshape(-1)
    step = (old["p"] - new["p"]).reshape(-1)  # lr * ratio * r = lr * ||p|| r / ||r||
    expect = -np.outer(step, p0) / np.sum(p0 * p0)
    # (one-sided differences with a 2**-20 relative step: agreement to ~1e-4)
    np.testing.assert_allclose(off, expect - np.diag(np.diag(expect)), rtol=1e-3,
                               atol=1e-9 * np.max(np.abs(expect)))


# the trust-ratio optimizers, whose norm _norm_patched replaces (Muon's norm: tests/test_muon.py)
FLOAT32 = [c for n in ("lamb", "lars") for c in fmt.load_cases(n) if c.dtype == "float32"
           and c.kind == "replay"]


def _norm_patched(monkeypatch, norm):
    for mod in ("adaptive_ref.optimizers.lamb", "adaptive_ref.optimizers.lars"):
        monkeypatch.setattr(f"{mod}.tensor_norm", norm)


def _sequential_float32_norm(xp, x):
    """The worst summation order: one float32 running sum, then the root."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    return np.sqrt(np.cumsum(flat * flat, dtype=np.float32)[-1:].reshape(()))


@pytest.mark.parametrize("case", FLOAT32, ids=lambda c: c.id)
def test_a_sequential_float32_norm_passes(monkeypatch, case):
    _norm_patched(monkeypatch, _sequential_float32_norm)
    res = run_case(ReferenceAdapter(Backend.NUMPY), case)
    assert res.status == "pass", res.report()


@pytest.mark.parametrize("cid", ["lamb[optax,float32,base]", "lars[optax,float32,base]",
                                 "lamb[keras,float64,base]", "lars[paper,float64,base]"])
def test_a_trust_ratio_off_by_a_little_is_caught(monkeypatch, cid):
    from adaptive_ref._trust import trust_ratio

    rel = 1e-4 if "float32" in cid else 1e-11

    def off(*args):
        return trust_ratio(*args) * (1 + rel)

    case = _case(cid)
    assert run_case(ReferenceAdapter(Backend.NUMPY), case).status == "pass"
    for mod in ("adaptive_ref.optimizers.lamb", "adaptive_ref.optimizers.lars"):
        monkeypatch.setattr(f"{mod}.trust_ratio", off)
    res = run_case(ReferenceAdapter(Backend.NUMPY), case)
    assert res.status == "fail", res.report()


def test_per_parameter_layout_matches_the_closed_loop_one():
    """The closed-loop path embeds the same per-parameter ratio covariance."""
    case = _case("lars[optax,float64,base]")
    spec = registry.get("lars")
    prm = [error_model._Param(case, spec, p) for p in case.params]
    grads = {k: np.asarray(v, dtype=np.float64) for k, v in case.gradients(1).items()}
    olds = [pp.values() for pp in prm]
    news = [pp.step(o, grads[pp.name], 1, None)[0] for pp, o in zip(prm, olds, strict=True)]
    per = error_model._shared_cov(case, prm, olds, news, None, joint=False)
    full = error_model._shared_cov(case, prm, olds, news, None, joint=True)
    off = 0
    for c in per:
        np.testing.assert_array_equal(full[off:off + len(c), off:off + len(c)], c)
        off += len(c)
    assert any(np.any(c) for c in per)
