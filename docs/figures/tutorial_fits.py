"""Figures of the tutorials (docs/tutorials/): fits drawn from the runs the pages describe.

* :func:`poisson` -- the Poisson regression of ``fit-a-model.md``: the counts, the mean curves
  fitted by ``adaptive_ref.minimize`` (Adam) and by SciPy's BFGS, and the gradient norm per step;
* :func:`amsgrad` -- Reddi, Kale & Kumar's counterexample of ``amsgrad-counterexample.md``: the
  iterates of Adam and AMSGrad on ``[-1, 1]`` and their average regret.

The data and settings are those of the pages (the pages' doctests check the numbers); matplotlib's
``plot`` directive runs this file as ``__main__`` and then calls the function a page names.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize

from adaptive_ref import minimize, schedules


def poisson_data(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0, n)
    y = rng.poisson(np.exp(0.5 + 1.2 * x)).astype(float)
    return x, y


def poisson_nll(x, y):
    X = np.stack([np.ones_like(x), x], axis=1)

    def nll(w):  # mean negative log-likelihood, up to the constant log(y!)
        eta = X @ w
        return float(np.mean(np.exp(eta) - y * eta))

    def grad(w):
        return X.T @ (np.exp(X @ w) - y) / len(y)

    return nll, grad


def poisson():
    x, y = poisson_data()
    nll, grad = poisson_nll(x, y)
    ours = minimize(nll, np.zeros(2), "adam", jac=grad, lr=0.05, maxiter=5000, gtol=1e-8)
    ref = scipy.optimize.minimize(nll, np.zeros(2), jac=grad, method="BFGS",
                                  options={"gtol": 1e-10})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax.scatter(x, y, s=9, color="0.55", label="counts")
    grid = np.linspace(0.0, 2.0, 100)
    ax.plot(grid, np.exp(ours.x[0] + ours.x[1] * grid), color="C0", lw=2.5,
            label=f"minimize(adam): a={ours.x[0]:.4f}, b={ours.x[1]:.4f}")
    ax.plot(grid, np.exp(ref.x[0] + ref.x[1] * grid), color="C3", ls="--",
            label=f"SciPy BFGS: a={ref.x[0]:.4f}, b={ref.x[1]:.4f}")
    ax.set(xlabel="x", ylabel="count y", title="Poisson regression: mean exp(a + b x)")
    ax.set_ylim(0, max(y) * 1.25)
    ax.legend(loc="upper left", fontsize=8)
    k = np.arange(len(ours.history["grad_norm"]))
    bx.semilogy(k, ours.history["grad_norm"], color="C0", label="minimize(adam), lr = 0.05")
    bx.axhline(1e-8, color="0.4", ls=":", label="gtol = 1e-8")
    bx.set(xlabel="step", ylabel="||gradient||", title=f"stopped after {ours.nit} steps "
           f"(BFGS: {ref.nit} iterations)")
    bx.legend(fontsize=8)
    fig.tight_layout()


C = 3.0


def reddi_runs(steps: int = 3000):
    def fun(x, t):
        return float(np.sum((C if t % 3 == 0 else -1.0) * x))

    def jac(x, t):
        return np.full_like(x, C if t % 3 == 0 else -1.0)

    out = {}
    for method in ("adam", "amsgrad"):
        xs = [0.0]
        res = minimize(fun, [0.0], method, jac=jac, batches=lambda k: k, bounds=(-1.0, 1.0),
                       gtol=0.0, maxiter=steps, lr=schedules.inverse_sqrt_decay(0.5),
                       beta1=0.0, beta2=1.0 / (1.0 + C**2), eps=1e-8,
                       callback=lambda r, xs=xs: xs.append(float(r.x[0])))
        out[method] = (np.array(xs), np.array(res.history["fun"]))
    return out


def amsgrad():
    runs = reddi_runs()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"adam": ("C3", "Adam"), "amsgrad": ("C0", "AMSGrad")}
    for method, (xs, losses) in runs.items():
        color, label = styles[method]
        ax.plot(np.arange(len(xs)), xs, color=color, lw=1.0, label=label)
        t = np.arange(1, len(losses) + 1)
        # regret against the best fixed point x* = -1, whose loss is -(C - 2)/3 per step on average
        best = np.cumsum([-(C if k % 3 == 0 else -1.0) for k in range(len(losses))])
        bx.plot(t, (np.cumsum(losses) - best) / t, color=color, label=label)
    ax.axhline(-1.0, color="0.3", ls=":", lw=1, label="minimiser x* = -1")
    ax.set(xlabel="step $t$", ylabel="$x_t$", ylim=(-1.15, 1.15),
           title=r"iterates on $[-1, 1]$ ($C = 3$, $\beta_2 = 1/(1+C^2)$)")
    ax.legend(loc="center right", fontsize=8)
    bx.set(xlabel="$T$", ylabel="$R_T / T$", title="average regret", ylim=(0, None))
    bx.set_xscale("log")
    bx.legend(fontsize=8)
    fig.tight_layout()
