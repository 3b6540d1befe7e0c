"""adaptive_ref.minimize: every backend, SciPy's answer, the projected AMSGrad counterexample,
clipping, batches, stopping rules and input errors.

Tolerances. A run stops when the stationarity measure ``r = ||x - P(x - g)||_2`` is at most
``gtol``. For a ``mu``-strongly convex function with ``L``-Lipschitz gradient on a convex set, the
distance to the minimiser is at most ``(1 + L) / mu * r`` (the error bound of the projected-gradient
natural residual with unit step); without constraints ``r = ||g||`` and the bound is ``r / mu``.
Those are the tolerances below, not fitted numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptive_ref import OptimizeResult, minimize, schedules

A = np.array([[3.0, 1.0], [1.0, 2.0]])
B = np.array([1.0, -1.0])
EIG = np.linalg.eigvalsh(A)  # mu = 1.38, L = 3.62
X_BOX = np.array([0.5, -0.75])  # argmin of x.Ax/2 - b.x subject to x[0] <= 0.5 (x[1] = -(1+.5)/2)


def _quadratic(xp, backend):
    a, b = backend.asarray(A), backend.asarray(B)
    return (lambda x: 0.5 * xp.sum(x * (a @ x)) - xp.sum(b * x)), (lambda x: a @ x - b)


def test_every_backend_box_constrained_quadratic(backend, xp):
    fun, jac = _quadratic(xp, backend)
    x0 = backend.asarray(np.zeros(2))
    gtol = 1e-9
    res = minimize(fun, x0, "adam", jac=jac, lr=0.1, beta1=0.5, maxiter=1000, gtol=gtol,
                   bounds=(None, 0.5), clip_norm=1.0)
    assert isinstance(res, OptimizeResult) and res.success and res.status == 0, res.message
    assert type(res.x) is type(x0)
    assert res.nfev == res.nit + 1 == len(res.history["fun"]) == len(res.history["grad_norm"])
    assert res.history["grad_norm"][-1] <= gtol
    x = backend.to_numpy(res.x)
    bound = (1 + EIG[-1]) / EIG[0] * gtol
    assert np.linalg.norm(x - X_BOX) <= bound, (x, bound)
    np.testing.assert_array_equal(backend.to_numpy(x0), np.zeros(2))  # input not modified
    assert res.fun == pytest.approx(float(0.5 * X_BOX @ A @ X_BOX - B @ X_BOX), abs=1e-12)


def test_jax_under_jit_matches_the_bound():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    a, b = jnp.asarray(A), jnp.asarray(B)
    fun = jax.jit(lambda x: 0.5 * x @ a @ x - b @ x)
    res = minimize(fun, jnp.zeros(2), "amsgrad", jac=jax.jit(jax.grad(fun)), lr=0.05,
                   maxiter=5000, gtol=1e-9, bounds=(None, 0.5), jit=True)
    assert res.success and isinstance(res.x, jax.Array)
    assert np.linalg.norm(np.asarray(res.x) - X_BOX) <= (1 + EIG[-1]) / EIG[0] * 1e-9


def test_dask_graph_does_not_grow_with_the_steps():
    """x and the state are persisted after each step: the final x's graph is its chunks alone."""
    da = pytest.importorskip("dask.array")
    a, b = da.from_array(A, chunks=1), da.from_array(B, chunks=1)
    res = minimize(lambda x: 0.5 * (x * (a @ x)).sum() - (b * x).sum(), da.zeros(2, chunks=1),
                   "adam", jac=lambda x: a @ x - b, lr=0.05, maxiter=30, gtol=0)
    assert res.nit == 30
    assert len(res.x.__dask_graph__()) <= 2  # one task per chunk, not 30 steps' worth


def _logistic_problem():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((200, 4))
    y = (X @ np.array([1.0, -0.5, 0.25, 0.0]) + rng.standard_normal(200) > 0).astype(float)

    def f(w):
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z)) / len(y)

    def g(w):
        return X.T @ (1.0 / (1.0 + np.exp(-(X @ w))) - y) / len(y)

    def hess(w):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        return (X * (p * (1 - p))[:, None]).T @ X / len(y)

    return f, g, hess


def test_agrees_with_scipy_on_a_smooth_problem():
    """Logistic regression: BFGS (gtol 1e-10) and Adam (gtol 1e-9). With mu the smallest
    Hessian eigenvalue along the segment between the two answers (sampled at 21 points, the
    Hessian is smooth), ||x_adam - x_bfgs|| <= (||g(x_adam)|| + ||g(x_bfgs)||) / mu."""
    so = pytest.importorskip("scipy.optimize")
    f, g, hess = _logistic_problem()
    ref = so.minimize(f, np.zeros(4), jac=g, method="BFGS", options={"gtol": 1e-10})
    res = minimize(f, np.zeros(4), "adam", jac=g, lr=0.05, maxiter=20000, gtol=1e-9)
    assert ref.success and res.success, (ref.message, res.message)
    mu = min(np.linalg.eigvalsh(hess(ref.x + s * (res.x - ref.x)))[0]
             for s in np.linspace(0, 1, 21))
    bound = (np.linalg.norm(g(res.x)) + np.linalg.norm(g(ref.x))) / mu
    assert np.linalg.norm(res.x - ref.x) <= bound, (res.x, ref.x, bound)
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)


C = 3.0  # Reddi, Kale & Kumar (2018), Theorem 1: f_t(x) = C x if t = 1 mod 3, else -x


def _reddi(method, steps=3000):
    def fun(x, t):
        return float(np.sum((C if t % 3 == 0 else -1.0) * x))

    def jac(x, t):
        return np.full_like(x, C if t % 3 == 0 else -1.0)

    return minimize(fun, [0.0], method, jac=jac, batches=lambda k: k, bounds=(-1.0, 1.0),
                    gtol=0.0, maxiter=steps, lr=schedules.inverse_sqrt_decay(0.5), beta1=0.0,
                    beta2=1.0 / (1.0 + C**2), eps=1e-8)


def test_amsgrad_counterexample_projected():
    """The feasible set is [-1, 1] and the average loss (C - 2) x / 3 is minimised at x = -1.
    With beta1 = 0, beta2 = 1/(1 + C^2) and lr_t = alpha/sqrt(t), Adam goes to +1 (the theorem's
    non-convergence) and stays there; AMSGrad approaches -1 (its regret bound: the average regret
    falls like 1/sqrt(T); after 3000 steps it is within 0.01 of -1, measured)."""
    adam, ams = _reddi("adam"), _reddi("amsgrad")
    assert adam.status == ams.status == 1 and adam.nit == ams.nit == 3000
    assert float(adam.x[0]) == 1.0
    assert float(ams.x[0]) < -0.99
    # the average loss over the last 300 steps has the sign of the iterate
    assert np.mean(adam.history["fun"][-300:]) > 0 > np.mean(ams.history["fun"][-300:])


def test_clipping_by_value_then_by_norm_with_sgd(backend, xp):
    """SGD with lr = 1 from 0 makes the step -clip(g): checkable exactly, on every backend (the
    norm-clipped ones within one rounding of the norm and of the division: 2 ulp)."""
    g0 = np.array([3.0, -4.0, 0.5])
    g = backend.asarray(g0)

    def run(**clip):
        res = minimize(lambda x: xp.sum(g * x), backend.asarray(np.zeros(3)), "sgd",
                       jac=lambda x: g, lr=1.0, maxiter=1, gtol=0, **clip)
        return backend.to_numpy(res.x)

    np.testing.assert_array_equal(run(clip_value=1.0), [-1.0, 1.0, -0.5])
    np.testing.assert_allclose(run(clip_norm=1.0), -g0 / np.linalg.norm(g0), rtol=2**-51, atol=0)
    np.testing.assert_array_equal(run(clip_norm=10.0), -g0)
    v = np.array([1.0, -1.0, 0.5])
    np.testing.assert_allclose(run(clip_value=1.0, clip_norm=1.0), -v / np.linalg.norm(v),
                               rtol=2**-51, atol=0)


def test_jac_true_callback_xtol_and_resume():
    def fg(x):
        return float(x @ x), 2 * x

    seen = []
    res = minimize(fg, [1.0, -2.0], "adam", jac=True, lr=0.1, gtol=0, maxiter=50,
                   callback=lambda r: seen.append(r.nit) or r.nit == 7)
    assert res.status == 99 and res.nit == 7 and seen == list(range(1, 8)) and not res.success
    # xtol: a schedule that decays to 0 makes the steps vanish
    res = minimize(fg, [1.0], "sgd", jac=True, gtol=0, maxiter=100, xtol=1e-3,
                   lr=schedules.exponential_decay(0.1, 0.5))
    assert res.status == 2 and res.success and res.nit < 20
    # resuming from result.state is the same run (bitwise on NumPy)
    full = minimize(fg, [1.0, -2.0], "adam", jac=True, lr=0.1, gtol=0, maxiter=20)
    half = minimize(fg, [1.0, -2.0], "adam", jac=True, lr=0.1, gtol=0, maxiter=10)
    rest = minimize(fg, half.x, "adam", jac=True, lr=0.1, gtol=0, maxiter=10, state=half.state)
    np.testing.assert_array_equal(rest.x, full.x)
    assert int(rest.state.count) == 20


def test_minibatches_from_an_iterable_and_from_an_rng():
    """An iterable that runs out ends the run (status 1, with its own message)."""
    data = np.arange(10.0)

    def f(x, batch):
        return float(np.mean((x - batch) ** 2))

    def g(x, batch):
        return np.full_like(x, 2 * np.mean(x - batch))

    res = minimize(f, [0.0], "adam", jac=g, batches=iter([data[:5], data[5:]]), lr=0.1,
                   gtol=0, maxiter=100)
    assert res.status == 1 and res.nit == 1 and res.message == "the iterable of batches ran out"
    rng = np.random.default_rng(0)
    res = minimize(f, [0.0], "adam", jac=g, batches=lambda k: rng.choice(data, 4), gtol=0,
                   maxiter=2000, lr=schedules.inverse_sqrt_decay(0.5))
    assert abs(float(res.x[0]) - 4.5) < 0.3  # the mean of the data, up to SGD noise


def test_non_finite_values_stop_with_status_3():
    res = minimize(lambda x: float(x[0]) if x[0] > 0 else math.inf, [1.0], "sgd",
                   jac=lambda x: np.ones(1), lr=2.0, gtol=0, maxiter=5)
    assert res.status == 3 and not res.success and "non-finite" in res.message


def test_progress_bar_runs():
    pytest.importorskip("rich")
    res = minimize(lambda x: float(x @ x), [1.0], "adam", jac=lambda x: 2 * x, lr=0.1,
                   maxiter=5, gtol=0, progress=True)
    assert res.nit == 5


def test_integer_x0_and_projection_callable():
    res = minimize(lambda x: float(x @ x), np.array([3, 4]), "adam", jac=lambda x: 2 * x,
                   lr=0.5, gtol=0, maxiter=3,
                   project=lambda x: x / max(1.0, float(np.linalg.norm(x))))  # unit ball
    assert res.x.dtype == np.float64 and np.linalg.norm(res.x) <= 1.0 + 1e-15


def _f(x):
    return float(x @ x)


def _g(x):
    return 2 * x


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "bogus"}, ValueError, r"method='bogus' is not a registered optimizer; "
                                      r"registered: sgd, "),
    ({"method": 3}, TypeError, "method must be a registered optimizer's name"),
    ({"jac": None}, TypeError, "jac is required"),
    ({"jac": "2-point"}, TypeError, "jac must be callable or True"),
    ({"maxiter": -1}, ValueError, r"maxiter=-1 is not accepted; it must be an int in \[0, inf\)"),
    ({"maxiter": 2.5}, ValueError, "maxiter=2.5 is not accepted"),
    ({"gtol": math.nan}, ValueError, r"gtol=nan is not accepted"),
    ({"clip_norm": 0.0}, ValueError, r"clip_norm=0.0 is not accepted; .*\(0, inf\)"),
    ({"clip_value": -1.0}, ValueError, "clip_value=-1.0 is not accepted"),
    ({"bounds": (1.0, -1.0)}, ValueError, "bounds must satisfy low <= high"),
    ({"bounds": [(0, 1)] * 3}, ValueError, "one \\(low, high\\) pair per element of x0 \\(2\\)"),
    ({"bounds": 5}, TypeError, "bounds must be a"),
    ({"bounds": (0, 1), "project": lambda x: x}, ValueError, "bounds or project, not both"),
    ({"jac": lambda x: np.zeros(3)}, ValueError, r"jac must return an array of x's shape \(2,\)"),
    ({"jit": True}, ValueError, "jit=True needs JAX arrays"),
    ({"callback": 1}, TypeError, "callback must be callable"),
    ({"batches": 3}, TypeError, "batches must be a callable of the step index or an iterable"),
    ({"lr": 0.1, "bogus": 1.0}, KeyError, "adam has no hyperparameter 'bogus'"),
])
def test_bad_input_names_the_argument(kwargs, error, match):
    kw = {"method": "adam", "jac": _g, **kwargs}
    method = kw.pop("method")
    with pytest.raises(error, match=match):
        minimize(_f, np.zeros(2), method, **kw)


def test_bad_x0_and_fun():
    with pytest.raises(TypeError, match="x0 must be an array"):
        minimize(_f, "abc", jac=_g)
    with pytest.raises(TypeError, match="x0 has dtype complex128"):
        minimize(_f, np.zeros(2, complex), jac=_g)
    with pytest.raises(ValueError, match=r"fun must return a scalar, got shape \(2,\)"):
        minimize(lambda x: x, np.zeros(2), jac=_g)
    with pytest.raises(TypeError, match=r"with jac=True, fun must return a pair"):
        minimize(_f, np.zeros(2), jac=True)
    with pytest.raises(ValueError, match="lr"):  # a range error from the step function itself
        minimize(_f, np.ones(2), jac=_g, lr=-1.0)
    with pytest.raises(ValueError, match="the iterable of batches is empty"):
        minimize(_f, np.ones(2), jac=_g, batches=[])
