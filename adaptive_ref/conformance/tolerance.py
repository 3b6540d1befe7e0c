"""The error budget of the suite, derived from a count of roundings (docs/conformance.md).

Every implementation is compared with the float64 golden (the exact trajectory to within the
fidelity recorded in the manifest) in units of its *own* dtype, using the normwise ULP of
:func:`adaptive_ref.ulp.ulp_error`.

Derivation. Each floating-point operation rounds its result with a relative error of at most
half a ULP. Counting, per element and per step, the operations on the longest path of the
update when every knob is on (the weight-decay term, the moment EMAs, the bias-correction
divisions, the root, eps, the division, lr and the subtraction; casts of float64 scalars to the
dtype count as one rounding each) gives :data:`ROUNDINGS`. Errors carried in the state are
multiplied by contractive factors (beta < 1) or added (Adagrad's sum, the parameter), so after
``t`` steps the normwise error of params and state is at most ``ROUNDINGS[opt] * t`` ULP
(half a ULP per rounding, doubled to cover the same error in the golden's own operand order).
The budget therefore grows linearly in ``t``:

    budget(opt, t, dtype) = ROUNDINGS[opt] * t   ULP of dtype.

This assumes the implementation computes the scalar factors (``1 - beta**t``, NAdam's
``mu_t``, RAdam's ``rho_t``) in float64, as the reference and torch do; those factors are
ill-conditioned in float32 (the condition number of ``1 - beta**t`` in ``beta`` is about
``beta*t/(1 - beta**t)``, 999 for beta = 0.999 at t = 1), so an implementation that computes
them in float32 is expected to exceed the budget: that is reported as a finding, not absorbed.
The integer step count must match exactly. Closed-loop cases run in float64 only.
"""

from __future__ import annotations

__all__ = ["ROUNDINGS", "budget", "budget_table"]

# Operations per element per step on the longest update path (see the docstring; the table with
# its breakdown is published in docs/conformance.md).
ROUNDINGS: dict[str, int] = {
    "sgd": 9,       # wd: mul+add; buffer: 2 mul + add; Nesterov: mul+add; lr mul; subtract
    "adagrad": 10,  # wd 2; g*g, add; lr/(1+(t-1)d) cast; sqrt, +eps, divide, mul, subtract
    "rmsprop": 24,  # wd 2; nu 4; centred mu 3; /bc 2; mu^2, subtract; sqrt, +eps; divide;
                    # momentum mul+add; Nesterov 2; lr mul; subtract; casts 2
    "adam": 19,     # wd 2; mu 3; nu 4; bc1, bc2 casts; /bc2; sqrt; +eps; /bc1; divide; lr mul;
                    # subtract; decoupled mul
    "amsgrad": 19,  # as adam (the running max is exact)
    "adamw": 19,    # as adam (decoupled multiply instead of the L2 add)
    "adamax": 11,   # wd 2; mu 3; b2*u, |g|+eps (max exact); lr/bc1 cast; divide; mul; subtract
    "nadam": 20,    # wd 2; mu 3; nu 4; /bc2, sqrt, +eps; two divisions, two coefficient casts,
                    # two muls, two subtractions
    "radam": 20,    # wd 2; mu 3; nu 4; /bc1; sqrt, +eps; sqrt(bc2) cast, divide; lr, adaptive,
                    # rectifier muls; subtract; casts 2
    "lazy_adam": 19,       # as adam, on the rows present
    "sparse_adagrad": 10,  # as adagrad, on the rows present
}
DEFAULT_ROUNDINGS = 20


def budget(optimizer: str, step: int, dtype: str, hparams: dict | None = None) -> float:
    """Allowed normwise ULP error (in units of ``dtype``) after ``step`` steps.

    RAdam adds, for every rectified step s, the condition number of its rectifier r(rho_s):
    rho_s = rho_inf - 2 s b2^s/(1 - b2^s) cancels (rho_inf is ~2000 for b2 = 0.999, rho_s is
    ~5 at the switch), so rho_s carries an absolute error of about rho_inf ULP, and
    d ln r / d rho = (1/(rho-4) + 1/(rho-2) - 1/rho)/2 turns it into a relative error of r.
    This is inherent to the formula (the float64 goldens carry it too: see their fidelity).
    """
    k = ROUNDINGS.get(optimizer, DEFAULT_ROUNDINGS)
    total = float(k * step)
    if optimizer == "radam":
        hp = hparams or {}
        total += _radam_conditioning(float(hp.get("beta2", 0.999)),
                                     float(hp.get("threshold", 5.0)), step)
    return total


def _radam_conditioning(beta2: float, threshold: float, step: int) -> float:
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    extra = 0.0
    for s in range(1, step + 1):
        rho = rho_inf - 2.0 * s * beta2**s / (1.0 - beta2**s)
        if rho > max(threshold, 4.0) and rho > 4.0:
            extra += rho_inf * 0.5 * abs(1.0 / (rho - 4.0) + 1.0 / (rho - 2.0) - 1.0 / rho)
    return extra


def budget_table(steps=(1, 10, 50, 200)) -> list[tuple]:
    """Rows ``(optimizer, k, budget at each of steps, relative float32 bound at the last)``."""
    rows = []
    for opt, k in ROUNDINGS.items():
        rows.append((opt, k, *[k * s for s in steps], k * steps[-1] * 2.0 ** -24))
    return rows
