"""The Kalman-gain reading of Adam: per-coordinate damping K = s^2 / (sqrt(v) + s^2).

Procedure 2 of the seed note: with prior covariance Sigma = s^2 diag(sqrt(v)) and observation
covariance V = diag(v), the gain K = Sigma (V + Sigma)^-1 is diagonal with entries
K = s^2 / (sqrt(v) + s^2), and the update K m is exactly Adam's step with lr = eps = s^2. The
approximation Sigma << V gives K ~ s^2 / sqrt(v); its relative error is exactly
s^2 / (sqrt(v) + s^2) = eps / (sqrt(v) + eps).

Drawn by the docs build. The markers are measured two ways: the circles by one ``adam_step``
with ``beta1 = beta2 = 0`` and no bias correction, so m = g and sqrt(v) = |g|, and
K = (param - new_param) / g; the crosses by the Kalman solve K = Sigma (V + Sigma)^-1 of
:func:`adaptive_ref.interpretations.kalman_gain` (a general linear solve, diagonal read off).
``main`` draws the figure and returns the largest relative gap between the two (also printed
under the figure).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from adaptive_ref import adam_init, adam_step
from adaptive_ref.interpretations import kalman_gain, kalman_gain_approx

S2 = (1e-3, 1e-2, 1e-1)  # s^2 = lr = eps


def gain_formula(root_v, s2):
    return s2 / (root_v + s2)


def gain_from_adam(root_v, s2):
    """K measured through one Adam step with lr = eps = s2, m = g, sqrt(v) = |g| = root_v."""
    g = np.asarray(root_v, dtype=np.float64)
    p = np.zeros_like(g)
    new, _ = adam_step(p, g, adam_init(p), lr=s2, eps=s2, beta1=0.0, beta2=0.0,
                       bias_correction=False)
    return (p - new) / g


def gain_from_kalman_solve(root_v, s2):
    """The diagonal of the full gain matrix computed by ``solve``."""
    v = np.asarray(root_v, dtype=np.float64) ** 2
    return np.diagonal(np.asarray(kalman_gain(v, s2=s2))).copy()


def main():
    root_v = np.geomspace(1e-5, 1e1, 200)
    marks = np.geomspace(1e-5, 1e1, 13)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    worst = 0.0
    for i, s2 in enumerate(S2):
        color = f"C{i}"
        ax1.loglog(root_v, gain_formula(root_v, s2), color=color, label=f"K, s² = {s2:g}")
        ax1.loglog(root_v, np.asarray(kalman_gain_approx(root_v**2, s2=s2)), ":", color=color,
                   lw=1)
        measured = gain_from_adam(marks, s2)
        solved = gain_from_kalman_solve(marks, s2)
        ax1.loglog(marks, measured, "o", color=color, ms=5, mfc="none")
        ax1.loglog(marks, solved, "x", color=color, ms=4)
        formula = gain_formula(marks, s2)
        for got in (measured, solved):
            worst = max(worst, float((np.abs(got - formula) / formula).max()))
        approx = np.asarray(kalman_gain_approx(root_v**2, s2=s2))
        exact = gain_from_adam(root_v, s2)  # measured through adam_step
        ax2.semilogx(root_v, (approx - exact) / approx, color=color, label=f"s² = eps = {s2:g}")
        ax2.semilogx(marks, s2 / (marks + s2), "o", color=color, ms=4, mfc="none")
    ax1.set_ylim(1e-4, 2)
    ax1.axhline(1.0, color="0.6", lw=0.8)
    ax1.set_xlabel("sqrt(v)")
    ax1.set_ylabel("per-coordinate gain K")
    ax1.set_title("K = s²/(sqrt(v)+s²) (line), Adam step / g (circles), Kalman solve (crosses);\n"
                  "approximation s²/sqrt(v) for Σ ≪ V (dotted)", fontsize=9)
    ax1.legend(fontsize=8, loc="lower left")
    ax2.set_xlabel("sqrt(v)")
    ax2.set_ylabel("relative error of s²/sqrt(v)")
    ax2.set_title("error of s²/sqrt(v) against the Adam-measured K (line)\n"
                  "and the closed form eps/(sqrt(v)+eps) (circles)", fontsize=9)
    ax2.legend(fontsize=8)
    fig.text(0.5, -0.02, "largest relative gap between the measured K (Adam step, Kalman solve) "
             f"and the formula: {worst:.1e} (float64)", ha="center", fontsize=8)
    fig.tight_layout()
    return worst

