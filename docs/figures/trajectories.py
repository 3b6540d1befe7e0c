"""Trajectories of registered optimizers on two 2-D problems, under the torch and optax profiles.

Drawn by the docs build (matplotlib's ``plot`` directive calls :func:`quadratic` and
:func:`rosenbrock`); every point is a step of the reference's own step function, run through
``spec.settings(profile, lr=...)`` in float64 on NumPy. The legends give each run's final loss.

matplotlib's ``plot`` directive runs this file as ``__main__`` before calling the function a page
names, so the module has no ``__main__`` block (it would draw everything twice).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from adaptive_ref import get

# (registry name, learning rate on the quadratic, on Rosenbrock, extra settings). One lr per
# optimizer and problem, the same for both profiles, since optax has no default lr.
OPTIMIZERS = (
    ("sgd", 0.01, 5e-4, {"momentum": 0.9}),
    ("adagrad", 0.5, 0.5, {}),
    ("rmsprop", 0.02, 2e-3, {}),
    ("adam", 0.05, 0.02, {}),
    ("amsgrad", 0.05, 0.02, {}),
    ("adamw", 0.05, 0.02, {"weight_decay": 0.01}),
    ("adamax", 0.05, 0.02, {}),
    ("nadam", 0.05, 0.02, {}),
    ("radam", 0.05, 5e-3, {}),
)
# RAdam's first steps (until rho_t passes the threshold) are un-adapted momentum steps of size
# lr * m_hat; on Rosenbrock, where |grad| is about 200 at the start, the common lr of 0.02 makes
# them diverge. The figure runs that setting too and prints its final loss in the panel.
ALSO_RUN = {("radam", 1): 0.02}
PROFILES = (("torch", "-", "C0"), ("optax", "--", "C3"))


class Quadratic:
    """f(x) = x^T H x / 2 with H = R diag(1, 30) R^T, R a rotation by 30 degrees (condition 30)."""

    title = "ill-conditioned quadratic (condition number 30, rotated 30°)"
    start = (-2.0, 1.5)
    optimum = (0.0, 0.0)
    steps = 200
    box = (-2.3, 2.3, -1.6, 1.9)

    def __init__(self) -> None:
        c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
        rot = np.array([[c, -s], [s, c]])
        self.h = rot @ np.diag([1.0, 30.0]) @ rot.T

    def f(self, x, y):
        h = self.h
        return 0.5 * (h[0, 0] * x * x + 2 * h[0, 1] * x * y + h[1, 1] * y * y)

    def grad(self, p):
        return self.h @ p

    def levels(self):
        return np.geomspace(1e-3, 80, 14)


class Rosenbrock:
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1)."""

    title = "Rosenbrock"
    start = (-1.2, 1.0)
    optimum = (1.0, 1.0)
    steps = 2000
    box = (-1.6, 1.5, -0.4, 1.6)

    def f(self, x, y):
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    def grad(self, p):
        x, y = p
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    def levels(self):
        return np.geomspace(1e-2, 800, 14)


def run(name: str, profile: str, problem, lr: float, extra: dict) -> np.ndarray:
    """The iterates of ``name`` under ``profile`` from ``problem.start``, float64 NumPy."""
    spec = get(name)
    settings = spec.settings(profile, lr=lr, **extra)
    p = np.array(problem.start, dtype=np.float64)
    state = spec.init(p, **spec.init_kwargs(settings))
    path = [p]
    for _ in range(problem.steps):
        p, state = spec.step(p, problem.grad(p), state, **settings)
        path.append(p)
    return np.array(path)


def draw(problem, column: int):
    fig, axes = plt.subplots(3, 3, figsize=(11, 10), sharex=True, sharey=True)
    x0, x1, y0, y1 = problem.box
    gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    fz = problem.f(gx, gy)
    for ax, (name, lr_q, lr_r, extra) in zip(axes.flat, OPTIMIZERS, strict=True):
        lr = (lr_q, lr_r)[column]
        ax.contour(gx, gy, fz, levels=problem.levels(), colors="0.8", linewidths=0.6)
        for profile, style, color in PROFILES:
            path = run(name, profile, problem, lr, extra)
            final = problem.f(*path[-1])
            ax.plot(path[:, 0], path[:, 1], style, color=color, lw=1.1,
                    label=f"{profile}: f = {final:.1e}")
        if (name, column) in ALSO_RUN:
            other = ALSO_RUN[name, column]
            with np.errstate(over="ignore", invalid="ignore"):
                final = problem.f(*run(name, "torch", problem, other, extra)[-1])
            ax.text(0.03, 0.03, f"at lr = {other:g} (torch): f = {final:.1e}", fontsize=7,
                    transform=ax.transAxes)
        ax.plot(*problem.start, "ko", ms=4)
        ax.plot(*problem.optimum, "k*", ms=8)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{get(name).title}, lr = {lr:g}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{problem.title}: {problem.steps} steps; final loss per profile", fontsize=12)
    fig.tight_layout()
    return fig


def quadratic():
    draw(Quadratic(), 0)


def rosenbrock():
    draw(Rosenbrock(), 1)

