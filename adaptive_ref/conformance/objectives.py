"""Closed-loop objectives: the gradient is computed at the implementation's current iterate.

Each objective is defined by a formula (docs/conformance-format.md) and the data stored in the
golden case, so any language can evaluate it. The harness always evaluates the gradient in
float64 NumPy at the iterate the implementation reports and hands it over in the case dtype, so
the only arithmetic under test is the optimizer's.
"""

from __future__ import annotations

import numpy as np

from .rng import uniform

__all__ = ["OBJECTIVES", "make_objective", "gradient"]


def _quadratic_data(n: int = 6, condition: float = 1e4) -> dict:
    # A = Q diag(lambda) Q^T with Q a fixed Householder reflection, lambda log-spaced in
    # [1, condition]: an ill-conditioned, non-diagonal Hessian.
    lam = condition ** (np.arange(n) / (n - 1))
    v = 2.0 * uniform(11, np.arange(n, dtype=np.uint64)) - 1.0
    v = v / np.linalg.norm(v)
    q = np.eye(n) - 2.0 * np.outer(v, v)
    a = q @ np.diag(lam) @ q.T
    a = 0.5 * (a + a.T)
    b = 2.0 * uniform(12, np.arange(n, dtype=np.uint64)) - 1.0
    return {"A": a.tolist(), "b": b.tolist()}


def _logistic_data(n: int = 24, d: int = 3) -> dict:
    x = 2.0 * uniform(21, np.arange(n * d, dtype=np.uint64)).reshape(n, d) - 1.0
    w_true = np.array([1.5, -2.0, 0.5])
    y = (uniform(22, np.arange(n, dtype=np.uint64)) < 1.0 / (1.0 + np.exp(-(x @ w_true))))
    return {"X": x.tolist(), "y": y.astype(float).tolist(), "l2": 1e-3}


def make_objective(name: str) -> tuple[dict, dict]:
    """``(objective, params)``: the objective record and the starting point, both as data."""
    if name == "quadratic":
        return ({"name": "quadratic", **_quadratic_data()},
                {"x": np.array([1.0, -1.0, 0.5, -0.5, 0.25, -0.25])})
    if name == "rosenbrock":
        return {"name": "rosenbrock"}, {"x": np.array([-1.2, 1.0, -0.8, 1.1])}
    if name == "logistic":
        return ({"name": "logistic", **_logistic_data()},
                {"w": np.array([0.1, -0.1, 0.0])})
    msg = f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}"
    raise KeyError(msg)


OBJECTIVES = ("quadratic", "rosenbrock", "logistic")

# modules an objective's gradient imports (scipy is in the [test] extra, not the base install)
_REQUIRES = {"rosenbrock": "scipy"}


def missing_requirement(objective: dict | None) -> str | None:
    """None if the gradient of ``objective`` can be computed here, else why not."""
    if objective is None:
        return None
    module = _REQUIRES.get(objective.get("name"))
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return (f"unsupported: the {objective['name']} objective needs {module}, "
                f"which is not installed")
    return None


def gradient(objective: dict, params: dict) -> dict:
    """float64 gradients of ``objective`` at ``params`` (dict name -> float64 array)."""
    name = objective["name"]
    if name == "quadratic":
        x = np.asarray(params["x"], dtype=np.float64)
        return {"x": np.asarray(objective["A"]) @ x - np.asarray(objective["b"])}
    if name == "rosenbrock":
        from scipy.optimize import rosen_der

        return {"x": rosen_der(np.asarray(params["x"], dtype=np.float64))}
    if name == "logistic":
        w = np.asarray(params["w"], dtype=np.float64)
        x, y = np.asarray(objective["X"]), np.asarray(objective["y"])
        z = x @ w
        p = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))),
                     np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
        return {"w": x.T @ (p - y) / len(y) + objective["l2"] * w}
    msg = f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}"
    raise KeyError(msg)
