"""The error model behind the budget: rounding errors propagated along a case's own trajectory.

For each checkpoint and each stored array (a parameter or one state field) this module computes
two numbers, stored in the golden's ``error`` record in units of the case dtype's unit roundoff
``u`` (2**-24 for float32, 2**-53 for float64) times the array's absolute values:

* ``rand`` -- the standard deviation of the accumulated *independent* roundings. Each
  floating-point operation of an implementation rounds with a relative error of at most ``u``;
  following Higham & Mary (2019) each such error is modelled as an independent random variable,
  uniform on ``[-u, u]`` (variance ``u**2/3``), in the size of the quantity it rounds. Per step
  and element, a field ``x`` gains ``K[x]/3 * (|x_old| + |x_new|)**2`` (its update's ``K[x]``
  roundings, each on a term no larger than ``|x_old| + |x_new|``); the parameter gains
  ``|p_new|**2/3`` (the subtraction; the decoupled decay multiply adds ``|p_old|**2/3``) plus
  ``UPDATE_ROUNDINGS/3 * delta**2`` (the update's own roundings, relative to its size). These
  errors then travel with the linearisation of the step: ``C_t = J_t C_{t-1} J_t^T +
  diag(local_t)``, ``J_t`` the Jacobian of one step of the (field, element) state, taken by
  finite differences of the float64 reference along the trajectory. So a contractive EMA
  forgets its old errors at the rate beta, Adagrad's sum and the parameters keep them, and a
  moment's error moves the parameter as the update's own structure dictates.
* ``sys`` -- a bound on the *systematic* errors, those that do not average out, propagated with
  ``|J_t|``: ``B_t = |J_t| B_{t-1} + b_t``. ``b_t`` holds (a) the scalar factors: ``1 - beta**t``
  computed in precision P with ``beta**t`` off by up to ``e`` (:class:`FactorPrecision`:
  host float64 with a libm pow, ``e = ulp(beta**t)``; or, when ``factor_precision == "param"``,
  the framework's array power in the parameter dtype, ``e = 1.5 ulp(beta**t) + 4 |t ln beta|
  u_P beta**t`` for exp(t ln beta) with faithful exp and log, the exact error of binary
  powering where an implementation uses it (:func:`_pow_error`); exact at t = 1) is off by up to
  ``e / (1 - beta**t)`` relative (plus ``u_P`` when ``beta**t < 1/2``),
  entering the update with the power of
  :data:`FACTORS`; NAdam's torch schedule adds the error of its mu_t, mu_{t+1} (0.96**(t psi)
  off by the same ``e``) in the update's coefficients and in the stored product of the mu_t;
  RAdam's rectifier adds that error of rho_t (which cancels) times
  ``d ln r / d rho``; AMSGrad's maximum over the corrected v carries the error of ``1 -
  beta2**t``; (b) constants rounded once and used on every step: the decoupled decay factor
  ``1 - s wd`` and, in float32, the EMA's ``1 - beta`` (exact in float64). To ``B`` is added
  the shift of the whole float64 trajectory when every hyperparameter (and scheduled lr) is
  rounded to the dtype (float32 cases; in float64 the hyperparameters are the inputs).

Per-tensor optimizers (``coupling == "tensor"``: LAMB, LARS) take the Jacobian over a whole
parameter's (field, element) state and add the roundings of the per-tensor scalars they compute
(trust ratios) as rank-one covariance terms (the block at the end of this module).

Muon (``coupling == "tensor"``) adds the roundings of its Newton-Schulz iteration the same way,
as a batch of independent terms, each moved to the update by the linearised remaining
iterations. The derivation: a k-term dot product computed in any order makes k roundings (k
products, k - 1 additions) on terms no larger than ``S = sum_l |a_l| |b_l|``, so its variance
is at most k/3 u**2 S**2 (a probabilistic sqrt(k/3) u on S); A = X X^T, P = bA + cA^2 and
X' = aX + PX are such sums per entry (c, r + 3 and r + 2 roundings), each rounded once more to
bfloat16 in a bfloat16 iteration (u = 2^-8; float32 accumulation), or after every operation
with upstream's ``ns_rounding="op"``. The Frobenius norm that normalises X is a shared scalar
(rank one, as a trust ratio), in the precision it is summed and stored in (Keras: float32).
See the Muon block at the end.

Closed-loop cases add the harness's float64 gradient evaluation error, ``(2n + 4)`` roundings on
the magnitude of the gradient's terms, moved into each field by ``d(step)/d(g)``.

:mod:`adaptive_ref.conformance.tolerance` turns the two numbers into a budget.
"""

from __future__ import annotations

import functools

import numpy as np

from adaptive_ref import registry

from .fidelity import DECOUPLED_ONLY, SCHEDULE_FREE

__all__ = ["annotate", "propagate", "FIELD_ROUNDINGS", "UPDATE_ROUNDINGS", "FACTORS"]

UNIT = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}
ETA = 2.0 ** -20  # relative finite-difference step

# Roundings per element and step in a field's own update (on terms <= |x_old| + |x_new|).
FIELD_ROUNDINGS = {"mu": 3, "nu": 4, "sum": 2, "momentum_buffer": 3, "nu_max": 1,
                   "mu_product": 4}
# schedule-free: z - lr*d (d's own roundings included), the weight sum's addition and the
# weight's power, lr_max's warm-up product; x = (y - (1 - b1) z)/b1 from the stored y, z
FIELD_ROUNDINGS.update({"z": 9, "weight_sum": 4, "lr_max": 3, "x": 4})
FIELD_ROUNDINGS_OF = {("adamax", "nu"): 2, ("rmsprop", "momentum_buffer"): 10}
# Adadelta's acc_delta adds (1 - rho)*Delta**2, Delta = sqrt(u + eps)/sqrt(v + eps)*g carrying
# six roundings (two adds, two roots, a divide, a multiply), doubled by the square, plus its own
# EMA's three
FIELD_ROUNDINGS_OF.update({("adadelta", "acc_delta"): 15})
# Roundings of the update delta itself (from the state to the value subtracted from p).
UPDATE_ROUNDINGS = {"sgd": 3, "adagrad": 6, "rmsprop": 10, "adam": 9, "amsgrad": 9, "adamw": 9,
                    "adamax": 5, "nadam": 14, "radam": 11, "lazy_adam": 9, "sparse_adagrad": 6,
                    "schedule_free_adamw": 14, "schedule_free_sgd": 8}
# Adadelta: Delta's six and lr*Delta; Lion: lr*sign(c) (+ optax's u + wd*theta, then lr*(...))
UPDATE_ROUNDINGS.update({"adadelta": 7, "lion": 3})
# per-tensor optimizers: Adam's 9 + eps_root + the trust-ratio multiply (LAMB); lr*ratio,
# its product with g', Nesterov's mu*buf + x or the lr multiply outside (LARS); the coupled
# decay's 2 are added as for every optimizer
UPDATE_ROUNDINGS.update({"lamb": 11, "lars": 4})
DEFAULT_ROUNDINGS = 14
# issue 11. ADOPT's mu: sqrt(v), the max (exact), the division, the clip value s**e (an array
# power: up to 1.5 roundings; the clip itself is exact) and the EMA's three. AdaBelief's nu:
# g - m, its square, the EMA's three and + eps_root. Their updates: ADOPT lr * m (Nesterov: +3)
# and the decay; AdaBelief Adam's 9 plus the rectifier and Nesterov's second term.
FIELD_ROUNDINGS_OF.update({("adopt", "mu"): 7, ("adabelief", "nu"): 6})
UPDATE_ROUNDINGS.update({"adopt": 6, "adabelief": 13})
# Optimizers whose parameter step is a constant, lr*sign(c) (Lion): p - lr rounds lr to the grid
# of p's binade, the same error on every step while p stays in it (measured: 54.6 ULP after 200
# float32 steps at lr 1e-4, in every implementation alike), so the subtraction's rounding
# (at most u|p_new|) is a systematic error, added linearly, not an independent one.
SYSTEMATIC_STEP = frozenset({"lion"})
# Scalar factors 1 - h**t of each optimizer: (hyperparameter, power with which the factor enters
# the parameter's update, power with which it enters a stored state field or None).
FACTORS = {
    "adam": (("beta1", -1.0), ("beta2", 0.5)), "amsgrad": (("beta1", -1.0), ("beta2", 0.5)),
    "adamw": (("beta1", -1.0), ("beta2", 0.5)), "lazy_adam": (("beta1", -1.0), ("beta2", 0.5)),
    "radam": (("beta1", -1.0), ("beta2", 0.5)), "nadam": (("beta2", 0.5),),
    "adamax": (("beta1", -1.0),), "rmsprop": (("alpha", 0.5),),
    "schedule_free_adamw": (("beta2", 0.5),),
    # LAMB: bounded as in Adam although the trust ratio cancels a uniform scaling of r (exactly
    # when wd = 0 and eps is negligible): a sound, not a tight, bound (docs/conformance.md)
    "lamb": (("beta1", -1.0), ("beta2", 0.5)),
    # Prodigy's dlr = d lr sqrt(1 - b2^t)/(1 - b1^t) (with bias_correction)
    "prodigy": (("beta1", -1.0), ("beta2", 0.5)),
}
FACTORS["adabelief"] = (("beta1", -1.0), ("beta2", 0.5))  # ADOPT has no bias correction

# Adan (issue 11): m, v, n are EMAs (m: 3 roundings; v: d = g - g_prev, (1 - b2) d, b2 v, +;
# n: d, k d, g + k d, its square, (1 - b3) x, b3 n, +); prev_grad is g itself (no rounding, or
# the coupled decay's two). The update: n / bc3, + eps_root, sqrt, + eps, the two scaled terms,
# their sum, the division (reference); optax forms m_hat, v_hat, k v_hat, +, /, + wd p, * lr.
# Both bias corrections of the numerator enter the update with power -1, the one of n with 1/2.
FIELD_ROUNDINGS_OF.update({("adan", "m"): 3, ("adan", "v"): 4, ("adan", "n"): 7,
                           ("adan", "prev_grad"): 0})
UPDATE_ROUNDINGS["adan"] = 12
FACTORS["adan"] = (("beta1", -1.0), ("beta2", -1.0), ("beta3", 0.5))


def _ulp(x: float, unit: float) -> float:
    """The spacing at |x| of the precision whose unit roundoff is ``unit``."""
    dt = np.float32 if unit == UNIT["float32"] else np.float64
    return float(np.spacing(dt(abs(x))))


class FactorPrecision(tuple):
    """How an implementation computes its scalar factors: ``(u_P, array_pow)``.

    ``factor_precision == "float64"`` (torch, the reference): host-side float64 with a libm
    ``pow``, within one ULP. ``"param"`` (optax, Keras): the framework's array ``pow`` in the
    parameter dtype (:func:`_pow_error` says which algorithms and what each costs). A case that
    does not declare ``factor_precision`` gets the array power in float64 (it does not say how
    its factors are computed; that bound contains the libm one)."""

    @classmethod
    def of(cls, hp: dict, dtype: str):
        fp = hp.get("factor_precision")
        return cls((UNIT[dtype] if fp == "param" else UNIT["float64"], fp != "float64"))


# The array power b**y in the parameter dtype, as the supported implementations evaluate it
# (installed sources; measured in benchmarks/conformance_budget.py --pow, docs/conformance.md):
# * "exp_log": XLA's pow (optax's jitted bias correction ``1 - decay**count``, count int32 ->
#   lax.pow -> stablehlo.power; Keras' jax backend ``ops.power(beta, local_step)``, a float
#   exponent) and torch.pow (Keras' torch backend), also NumPy: exp(y ln b) with faithful
#   exp and log. With ln b off by <= 2u|ln b| (one ULP), the product y ln b by u|y ln b| and a
#   non-integer exponent's own rounding by u|y ln b|, the argument of exp is off by at most
#   POW_EXP_LOG_SLOPE u |y ln b|, which moves the power by that much relative; exp's own
#   rounding is below one ULP of the result and the golden's rounding of the exact power half
#   an ULP: |result - golden| <= POW_ULPS ulp(b**y) + POW_EXP_LOG_SLOPE u |y ln b| b**y (first
#   order in u). b**1 is exact in all of them (measured).
#   XLA on CPU flushes subnormal results to zero: below the smallest normal number the error
#   is up to that number.
# * "binary": ``jnp.power(b, n)`` with a concrete integer n (outside jit) is lax.integer_pow,
#   binary powering in the dtype. Its error is not small (the first squaring's rounding is
#   raised to the power n/2: measured 141 u for 0.999**1000) but it is deterministic IEEE
#   arithmetic, so it is charged exactly: the emulated loop's distance from the golden's value.
#   Only optax's RAdam, eagerly, computes ``b2**count_inc`` this way (its rho_t); every bias
#   correction in optax goes through the jitted ``tree_bias_correction``, and the reference's
#   ``xp.pow`` takes a float exponent. So it is charged for RAdam's rho_t in the cases of the
#   profiles in POW_BY_SQUARING (the implementations that run a case are its profile's).
POW_EXP_LOG_SLOPE = 4.0
POW_ULPS = 1.5
POW_BY_SQUARING = {"radam": ("optax",)}


def _binary_power(b, n: int, dt):
    """jax.lax.integer_pow's loop (square-and-multiply, low bit first) in dtype ``dt``."""
    x, acc = dt(b), None
    while n > 0:
        if n & 1:
            acc = x if acc is None else dt(acc * x)
        n >>= 1
        if n > 0:
            x = dt(x * x)
    return acc


@functools.cache
def _binary_power_error(beta: float, t: int, u_p: float) -> float:
    """``|binary power - golden's beta**t|``: in float32 the golden holds fl32(fl32(beta)**t)
    (:mod:`adaptive_ref.conformance.fidelity`), in float64 the exact power."""
    import mpmath

    dt = np.float32 if u_p == UNIT["float32"] else np.float64
    with mpmath.workprec(160):
        exact = mpmath.mpf(float(dt(beta))) ** t
    if dt is np.float32:
        with mpmath.workprec(24):
            exact = +exact
    return abs(float(mpmath.mpf(float(_binary_power(beta, t, dt))) - exact))


def _pow_error(beta: float, y: float, fp, binary: bool = False) -> float:
    """Bound on the absolute error of ``beta**y`` against the golden's value of it.

    Host float64 (``fp[1]`` false): one ULP. Array power: ``POW_ULPS`` ULPs plus ``SLOPE
    |y ln beta| u_P`` relative (exp/log; exact for y = 1) and, with ``binary`` (an integer
    exponent some implementation powers by squaring), the exact error of that loop."""
    u_p, array_pow = fp
    bt = beta ** y
    if not array_pow:
        return 0.0 if y == 1 else _ulp(bt, u_p)
    if y == 1:
        return 0.0
    err = POW_ULPS * _ulp(bt, u_p) + POW_EXP_LOG_SLOPE * abs(y * np.log(beta)) * u_p * bt
    tiny = float(np.finfo(np.float32 if u_p == UNIT["float32"] else np.float64).tiny)
    if bt < tiny:  # XLA on CPU flushes subnormal results to zero
        err = max(err, tiny)
    if binary and float(y).is_integer():
        err = max(err, _binary_power_error(float(beta), int(y), u_p))
    return err


def _factor_error(beta: float, t: int, fp) -> float:
    """Bound on the relative error of ``1 - beta**t``: :func:`_pow_error` times the condition
    number ``beta**t / (1 - beta**t)``, then the subtraction (exact when ``beta**t >= 1/2``)."""
    u_p = fp[0]
    bt = beta ** t
    if not 0.0 < bt < 1.0:
        return 0.0
    err = _pow_error(beta, t, fp)
    if bt < 0.5:
        err += u_p * (1.0 - bt)
    return err / (1.0 - bt)


def _radam_rect_error(beta2: float, threshold: float, t: int, fp, binary: bool) -> float:
    """Bound on the relative error of RAdam's rectifier r(rho_t) (0 if not rectified):
    rho_t = rho_inf - T with T = 2 t b^t / (1 - b^t); T inherits the error of b^t amplified by
    1/(1 - b^t) and rho_t cancels, then d ln r / d rho turns it into a relative error of r."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    bt = beta2 ** t
    big = 2.0 * t * bt / (1.0 - bt)
    rho = rho_inf - big
    if not rho > max(threshold, 4.0):
        return 0.0
    u_p = fp[0]
    pow_rel = _pow_error(beta2, t, fp, binary=binary) / bt / (1.0 - bt)
    err_rho = big * (pow_rel + 2 * u_p) + _ulp(rho_inf, u_p) + _ulp(rho, u_p)
    return err_rho * 0.5 * abs(1.0 / (rho - 4.0) + 1.0 / (rho - 2.0) - 1.0 / rho)


def _nadam_mu_errors(hp: dict, t: int, prod: float, fp) -> tuple[float, float]:
    """NAdam's torch momentum schedule mu_s = b1 (1 - 0.96**(s psi)/2) with 0.96**y off by
    :func:`_pow_error`: ``(rel_update, rel_mu_t)``, bounds on the relative error of the update's
    two coefficients ``(1 - mu_t)/(1 - Pi_t)`` and ``mu_{t+1}/(1 - Pi_t mu_{t+1})`` (the larger)
    and of mu_t, which multiplies the stored product Pi_t = Pi_{t-1} mu_t (``prod``); Pi_{t-1}'s
    own error reaches the update through the step's Jacobian."""
    if hp.get("momentum_schedule", "torch") != "torch":
        return 0.0, 0.0
    b1, psi = float(hp["beta1"]), float(hp["momentum_decay"])

    def mu_and_error(s):
        y = s * psi
        return b1 * (1.0 - 0.5 * 0.96 ** y), 0.5 * b1 * _pow_error(0.96, y, fp)

    mu_t, d_t = mu_and_error(t)
    mu_n, d_n = mu_and_error(t + 1)
    r_t = d_t / mu_t if mu_t else 0.0
    r_n = d_n / mu_n if mu_n else 0.0
    pn = prod * mu_n
    rel_g = d_t / (1.0 - mu_t) + prod / (1.0 - prod) * r_t
    rel_m = r_n / (1.0 - pn) + pn / (1.0 - pn) * r_t
    return max(rel_g, rel_m), r_t


def _float_fields(st) -> list[str]:
    """The state's float fields; a tuple field (one array per dimension: SOAP's gg, q) is one
    field ``name<i>`` per array; counters (UNTRACKED: SOAP's degenerate) are not fields."""
    out = []
    for f, v in zip(st._fields, st, strict=True):
        if f == "count" or v is None or f in UNTRACKED:
            continue
        out += ([f"{f}{i}" for i, x in enumerate(v) if x is not None]
                if isinstance(v, tuple) else [f])
    return out


UNTRACKED = frozenset({"degenerate"})


def _part(st, f: str):
    """``(tuple field, index)`` when ``f`` names one array of a tuple field, else None."""
    if hasattr(st, f):
        return None
    name = f.rstrip("0123456789")
    return name, int(f[len(name):])


def _get(st, f: str):
    part = _part(st, f)
    return getattr(st, f) if part is None else getattr(st, part[0])[part[1]]


def _replaced(st, values: dict):
    """``st`` with its fields (tuple fields' arrays included) set from ``values``."""
    plain, parts = {}, {}
    for f, v in values.items():
        part = _part(st, f)
        if part is None:
            plain[f] = v
        else:
            parts.setdefault(part[0], list(getattr(st, part[0])))[part[1]] = v
    return st._replace(**plain, **{k: tuple(v) for k, v in parts.items()})


def _arr(v, shape):
    """A state field as float64: a field of a shape of its own (Adafactor's factors: as many
    axes as the parameter, some of size 1) keeps it; a 0-d one is broadcast to ``shape``."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim and a.shape != tuple(shape) and (a.ndim == len(shape) or a.ndim == 2):
        # (SOAP's n x n statistics and bases)
        return a.copy()
    return np.broadcast_to(a, shape).astype(np.float64)


class _Param:
    """The float64 reference run of one parameter, with a step that accepts perturbations."""

    def __init__(self, case, spec, pspec):
        self.case, self.spec, self.p = case, spec, pspec
        self.name, self.shape = pspec.name, pspec.shape
        self.hp = case.param_hparams(pspec.name)
        p0 = np.asarray(pspec.init, dtype=np.float64).reshape(pspec.shape)
        self.x = p0
        self.st = spec.init(p0, **spec.init_kwargs(self.hp))
        # observables (schedule-free's x) are fields computed from p and the state: their row of
        # the Jacobian is d(new x)/d(old state), their column is 0
        self.observables = dict(spec.observables)
        self.fields = ["p"] + _float_fields(self.st) + list(self.observables)
        self.scalar = {f for f in self.fields[1:] if f not in self.observables
                       and np.ndim(_get(self.st, f)) == 0
                       and pspec.shape != ()}
        self.lazy = (pspec.grad is not None and pspec.grad.get("row_fraction") is not None)

    def _observe(self, out: dict, p, st) -> dict:
        for f, fn in self.observables.items():
            out[f] = np.asarray(fn(p, st, **self.hp), dtype=np.float64)
        return out

    def values(self) -> dict:
        out = {"p": np.asarray(self.x, dtype=np.float64)}
        for f in self.fields[1:]:
            if f not in self.observables:
                out[f] = _arr(_get(self.st, f), self.shape)
        return self._observe(out, self.x, self.st)

    def step(self, values: dict, g, t: int, lr) -> tuple[dict, object]:
        kw = {**self.hp, **EXACT_RUN.get(self.case.optimizer, {})}
        if lr is not None:
            kw["lr"] = lr
        st = _replaced(self.st, {f: (np.float64(np.asarray(values[f]).reshape(-1)[0])
                                     if f in self.scalar else values[f])
                                 for f in self.fields[1:] if f not in self.observables})
        garr = g
        if self.lazy:
            from adaptive_ref.sparse import RowSparse

            from .rng import active_rows

            rows = active_rows(self.p.grad, self.shape, t)
            garr = RowSparse(rows.astype(np.int64), np.asarray(g)[rows])
        p, st2 = self.spec.step(values["p"], garr, st, **kw)
        out = {"p": np.asarray(p, dtype=np.float64)}
        for f in self.fields[1:]:
            if f not in self.observables:
                out[f] = _arr(_get(st2, f), out["p"].shape)
        return self._observe(out, p, st2), st2


def _perturbation(old, new):
    mag = np.maximum(np.abs(old), np.abs(new))
    floor = 1e-3 * float(np.max(mag)) if mag.size else 0.0
    return ETA * np.maximum(np.maximum(mag, floor), 1e-300)


def propagate(case) -> dict:
    """``{step: {"params": {k: (rand, sys)}, "state": {k: {f: (rand, sys)}}}}`` at the
    checkpoints (maxima over the array's elements, in units of u)."""
    spec = registry.get(case.optimizer)
    if spec.coupling == "tree":
        return _propagate_tree(case)
    dtype = case.dtype
    u = UNIT[dtype]
    opt = case.optimizer
    prm = [_Param(case, spec, p) for p in case.params]
    # the flat (parameter, field, element) layout of the linearised state
    slots = []
    for j, pp in enumerate(prm):
        n = int(np.prod(pp.shape, dtype=np.int64)) if pp.shape else 1
        for f in pp.fields:
            slots.append((j, f, n))
    closed = case.kind == "closed_loop"
    # replay cases of elementwise optimizers: per element an nf x nf system; closed loops couple
    # elements through the gradient, so their state is one vector of every (field, element)
    shifted = _shifted(case, spec, dtype)
    tensor = spec.coupling == "tensor"
    if closed:
        dim = sum(n for _, _, n in slots)
        cov, bnd = np.zeros((dim, dim)), np.zeros(dim)
    elif tensor:  # per-tensor norms couple a parameter's elements: one system per parameter
        dims = [sum(v.size for v in pp.values().values()) for pp in prm]
        cov, bnd = [np.zeros((d, d)) for d in dims], [np.zeros(d) for d in dims]
    else:
        cov = [np.zeros((int(np.prod(pp.shape, dtype=np.int64)) if pp.shape else 1,
                         len(pp.fields), len(pp.fields))) for pp in prm]
        bnd = [np.zeros(c.shape[:2]) for c in cov]
    prec = {}
    for pp in prm:
        prec[pp.name] = FactorPrecision.of(pp.hp, dtype)
    out = {}
    for t in range(1, case.steps + 1):
        lr = case.lr_at(t)
        olds = [pp.values() for pp in prm]
        if closed:
            grads = case.gradients(t, {pp.name: pp.x for pp in prm})
            grads = {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}
        else:
            grads = {k: np.asarray(v, dtype=np.float64) for k, v in case.gradients(t).items()}
        news, sts = [], []
        for pp, old in zip(prm, olds, strict=True):
            new, st2 = pp.step(old, grads[pp.name], t, lr)
            news.append(new)
            sts.append(st2)
        local = [_local(case, opt, pp, old, new, t, lr, prec[pp.name], u)
                 for pp, old, new in zip(prm, olds, news, strict=True)]
        if closed:
            cov, bnd = _closed_step(case, prm, olds, news, grads, t, lr, cov, bnd, local, u)
            if tensor:
                cov = cov + _shared_cov(case, prm, olds, news, lr, joint=True, grads=grads)
        elif tensor:
            shared = _shared_cov(case, prm, olds, news, lr, joint=False, grads=grads)
            for j, (pp, old, new) in enumerate(zip(prm, olds, news, strict=True)):
                jac = TENSOR_JACOBIANS.get(opt, _tensor_jacobian)(pp, old, new, grads[pp.name],
                                                                   t, lr)
                cov[j] = (jac @ cov[j] @ jac.T + np.diag(_flat_local(local[j][0]))
                          + shared[j])
                bnd[j] = np.abs(jac) @ bnd[j] + _flat_local(local[j][1])
        else:
            for j, (pp, old, new) in enumerate(zip(prm, olds, news, strict=True)):
                jac = _jacobian(pp, old, new, grads[pp.name], t, lr)
                c = np.einsum("nab,nbc,ndc->nad", jac, cov[j], jac)
                idx = np.arange(len(pp.fields))
                c[:, idx, idx] += local[j][0]
                cov[j] = c
                bnd[j] = np.einsum("nab,nb->na", np.abs(jac), bnd[j]) + local[j][1]
        shifts = None
        if shifted is not None:
            shifts = []
            for pp, q in zip(prm, shifted, strict=True):
                qnew, qst = q.step(q.values(), grads[pp.name], t, lr)
                q.x, q.st = qnew["p"], qst
                shifts.append(qnew)
        for j, pp in enumerate(prm):
            pp.x, pp.st = news[j]["p"], sts[j]
        if t in case.checkpoints:
            out[t] = _record(prm, news, cov, bnd, shifts, closed, u)
    return out


def _shifted(case, spec, dtype):
    """The float64 run with every scalar hyperparameter rounded to the dtype (None if that
    changes none: float64 cases, whose hyperparameters are the inputs themselves)."""
    def rounded(hp):
        return {k: (float(np.asarray(v, dtype=dtype)) if isinstance(v, float) else v)
                for k, v in hp.items()}

    if dtype == "float64":
        return None
    import dataclasses

    from .format import ParamSpec

    sched = None if case.lr_schedule is None else tuple(
        float(np.asarray(v, dtype=dtype)) for v in case.lr_schedule)
    c2 = dataclasses.replace(
        case, hparams=rounded(case.hparams), lr_schedule=sched,
        params=tuple(ParamSpec(p.name, p.shape, p.init, p.grad, rounded(p.hparams))
                     for p in case.params))
    if c2.hparams == case.hparams and sched == case.lr_schedule and \
            all(a.hparams == b.hparams for a, b in zip(c2.params, case.params, strict=True)):
        return None
    return [_Param(c2, spec, p) for p in c2.params]


# the EMA coefficient of a field (its x_new = c x_old + (1 - c) y): (1 - c) cast to the dtype
# is a constant error on every step's new term
_EMA = {"mu": "beta1", "nu": "beta2"}
_EMA_OF = {("rmsprop", "nu"): "alpha", ("rmsprop", "mu"): "alpha", ("adamax", "nu"): None}
_EMA_OF.update({("adan", "m"): "beta1", ("adan", "v"): "beta2", ("adan", "n"): "beta3",
                ("adan", "prev_grad"): None})
# the fields that see the coupled decay's g + wd p (its two roundings)
_COUPLED_FIELDS = {"adan": ("m", "v", "n", "prev_grad")}
_EMA_OF.update({("adadelta", "nu"): "rho", ("adadelta", "acc_delta"): "rho",
                ("lion", "mu"): "beta2"})


def _const_error(c: float, dtype: str) -> float:
    """Relative error of the constant ``c`` (a float64 value) rounded to ``dtype``."""
    return abs(float(np.asarray(c, dtype=dtype)) - c) / abs(c) if c else 0.0


def _flat_local(x: np.ndarray) -> np.ndarray:
    """A parameter's local errors in the per-tensor (field-major) layout: ``_local``'s (element,
    field) array transposed and flattened; a TENSOR_LOCAL result is that vector already."""
    return x if x.ndim == 1 else x.T.reshape(-1)


def _local(case, opt, pp, old, new, t, lr, fp, u) -> tuple[np.ndarray, np.ndarray]:
    """Per element and field, this step's new errors: the variance of the independent
    roundings (units u**2) and a bound on the systematic ones (units u). A per-tensor optimizer
    with fields of their own shapes (TENSOR_LOCAL) gives them field-major as one vector."""
    if opt in TENSOR_LOCAL:
        return TENSOR_LOCAL[opt](case, pp, old, new, t, lr, u)
    n = old["p"].size
    var = np.zeros((n, len(pp.fields)))
    bound = np.zeros((n, len(pp.fields)))
    hp = pp.hp
    touched = np.ones(n, dtype=bool)
    if pp.lazy and hp.get("absent_rows", "lazy") == "lazy":
        from .rng import active_rows

        rows = np.zeros(pp.shape[0], dtype=bool)
        rows[active_rows(pp.p.grad, pp.shape, t)] = True
        touched = np.repeat(rows, n // pp.shape[0])
    wd = float(hp.get("weight_decay", 0.0) or 0.0)
    mode = _decay_mode(opt, hp)
    coupled = wd != 0.0 and opt not in DECOUPLED_ONLY and mode in ("coupled", "update")
    if opt in SCHEDULE_FREE:  # wd*y in the direction, or Keras' y - lr*wd*y
        coupled = wd != 0.0 and hp["weight_decay_form"] == "direction"
        mode = "coupled" if coupled else "decoupled"
    decoupled = wd != 0.0 and not coupled
    delta = np.abs(old["p"] - new["p"]).reshape(-1)
    pold, pnew = np.abs(old["p"]).reshape(-1), np.abs(new["p"]).reshape(-1)
    k_upd = UPDATE_ROUNDINGS.get(opt, DEFAULT_ROUNDINGS) + (2 if coupled else 0)
    # the subtraction's rounding: independent per step, except where the step is a constant
    # (SYSTEMATIC_STEP): then it rounds the same number on the same grid every step
    systematic = opt in SYSTEMATIC_STEP
    var[:, 0] = ((not systematic) * pnew ** 2 + decoupled * pold ** 2 + k_upd * delta ** 2) / 3.0
    # the scalar factors: one error per step, shared by every element (a bound, not averaged)
    fac = 0.0
    corrected_max = hp.get("amsgrad") and hp.get("amsgrad_max_over") == "corrected"
    for h, power in FACTORS.get(opt, ()):
        if corrected_max and h == "beta2":
            continue  # the update reads max(v / (1 - b2**t)): the factor's error is nu_max's
        if h in hp and hp.get("bias_correction", True):
            fac += abs(power) * _factor_error(float(hp[h]), t, fp) / u
    mu_rel = 0.0
    if opt == "nadam":
        prod = float(np.asarray(new["mu_product"]).reshape(-1)[0])
        upd_rel, mu_rel = _nadam_mu_errors(hp, t, prod, fp)
        fac += upd_rel / u
    if opt == "radam" or (opt == "adabelief" and hp.get("rectify")):
        binary = case.profile in POW_BY_SQUARING.get(opt, ())
        fac += _radam_rect_error(float(hp["beta2"]), float(hp["threshold"]), t, fp, binary) / u
    if opt == "adabelief" and hp.get("nesterov"):
        fac += _factor_error(float(hp["beta1"]), t + 1, fp) / u  # Nesterov's 1 - b1**(t+1)
    bound[:, 0] = fac * delta + systematic * pnew
    if decoupled:  # p * (1 - s wd): the same rounded constant on every step
        s = float(lr if lr is not None else hp["lr"])
        if opt == "adamw" and hp.get("decay_scaling") == "schedule":
            s = float(hp["schedule_multiplier"])
        if opt == "adabelief" and hp.get("decay_scaling") == "fixed":
            s = 1.0  # p * (1 - wd)
        c = 1.0 - s * wd
        c_in = 1.0 - float(np.asarray(s, dtype=case.dtype)) * float(np.asarray(wd,
                                                                            dtype=case.dtype))
        err = max(_const_error(c, case.dtype), abs(c_in - c) / c + u)
        bound[:, 0] += err / u * pold
    base = DENSE.get(opt, opt)
    for i, f in enumerate(pp.fields[1:], 1):
        k = FIELD_ROUNDINGS_OF.get((base, f), FIELD_ROUNDINGS.get(f, DEFAULT_ROUNDINGS))
        if coupled and mode == "coupled" and f in _COUPLED_FIELDS.get(base, ("mu", "nu", "sum")):
            k += 2
        xo, xn = np.abs(old[f]).reshape(-1), np.abs(new[f]).reshape(-1)
        var[:, i] = k * (xo + xn) ** 2 / 3.0
        if f == "nu_max":  # a held maximum is not recomputed: no new error
            held = (new[f] == old[f]).reshape(-1)
            var[:, i] = np.where(held, 0.0, var[:, i])
            if corrected_max:
                fe = _factor_error(float(hp["beta2"]), t, fp) / u
                bound[:, i] = np.where(held, 0.0, fe * xn)
        if f == "mu_product":  # Pi_t = Pi_{t-1} mu_t: mu_t's error, relative
            bound[:, i] += mu_rel / u * xn
        name = _EMA_OF.get((base, f), _EMA.get(f))
        if name is not None and name in hp:
            c = float(hp[name])
            new_term = np.abs(new[f] - c * old[f]).reshape(-1)
            bound[:, i] += _const_error(1.0 - c, case.dtype) / u * new_term
    if opt in SCHEDULE_FREE:
        _schedule_free_local(pp, old, new, t, lr, fp, u, var, bound)
    return np.where(touched[:, None], var, 0.0), np.where(touched[:, None], bound, 0.0)


def _sf_lr_error(hp: dict, lr: float, k: float, u_p: float) -> float:
    """Bound on the relative error of the warmed-up lr ``lr min(1, k/W)`` of step index k: the
    quotient and the product in precision ``u_p``; with ``warmup_precision="float32"`` the golden
    holds optax's float32 evaluation itself, and an implementation that contracts
    ``(-lr) frac + lr`` into a fused multiply-add differs from it by one float32 rounding of the
    sum's terms. 0 without warm-up or after it (the lr itself: the shift of the rounded
    hyperparameters)."""
    w = float(hp["warmup_steps"])
    if w == 0 or k >= w or k <= 0:
        return 0.0
    if hp["warmup_precision"] == "float32":
        return 2.0 * UNIT["float32"] * w / k
    return 2.0 * u_p


def _schedule_free_local(pp, old, new, t, lr, fp, u, var, bound) -> None:
    """Schedule-free's per-step scalars (one error per step, shared by every element, a bound):
    the warmed-up lrs, c_t (the weight's power, the weight sum accumulated in precision u_P:
    at most t u_P relative; Keras' 1/t), the coefficient gamma (b1 (1 - c) - 1), which cancels
    by 1/(1 - b1 (1 - c)), and 1 - b2**t; then x = (y - (1 - b1) z)/b1 inherits this step's new
    errors of y and z (its own roundings are FIELD_ROUNDINGS["x"])."""
    hp = pp.hp
    u_p = fp[0]
    lr = float(lr if lr is not None else hp["lr"])
    b1, fi = float(hp["beta1"]), pp.fields.index
    ws_old = float(np.asarray(old["weight_sum"]).reshape(-1)[0])
    ws_new = float(np.asarray(new["weight_sum"]).reshape(-1)[0])
    err_t = _sf_lr_error(hp, lr, t, u_p)
    err_z = _sf_lr_error(hp, lr, t - 1 if hp["warmup_lag"] else t, u_p)
    lr_max = float(np.asarray(new["lr_max"]).reshape(-1)[0])
    bound[:, fi("lr_max")] += err_t / u * lr_max
    if hp["averaging"] == "uniform":
        c, err_c = 1.0 / t, u_p
    else:
        c = (ws_new - ws_old) / ws_new if ws_new > 0 else 0.0
        power, r = float(hp["weight_lr_power"]), float(hp["r"])
        # in a float32 case with float32 scalars the golden holds their float32 evaluation
        # (fidelity._schedule_free_shared): only the powers' own errors remain (lr_max**2 is a
        # correctly rounded square under jit and within one ULP eagerly: measured on 1e5
        # values); otherwise the sum accumulated in precision u_p is off by up to t u_p relative
        emulated = u_p == UNIT["float32"]
        ln = abs(power * np.log(lr_max)) if lr_max > 0 and not emulated else 0.0
        err_w = (2.0 + 4.0 * ln + 4.0 * abs(r * np.log(t))) * u_p + 2.0 * power * err_t
        err_c = 2.0 * err_w + (0.0 if emulated else (t + 1.0) * u_p)
        bound[:, fi("weight_sum")] += err_w / u * (ws_new - ws_old)  # this step's weight
    bc = 0.0
    if "beta2" in hp:
        bc = 0.5 * _factor_error(float(hp["beta2"]), t, fp)
    keep = c if hp["x_from_updated_z"] else 1.0 - b1 * (1.0 - c)  # |coefficient of d| / gamma
    err_coef = u_p * (2.0 + b1 / keep) if keep > 0 else 0.0
    y_old, z_old = old["p"].reshape(-1), old["z"].reshape(-1)
    dz = np.abs(new["z"] - old["z"]).reshape(-1)
    b_y = (err_c / u * c * (np.abs(z_old - y_old) + b1 * dz)
           + (err_z + err_coef + bc) / u * keep * dz)
    b_z = (err_z + bc) / u * dz
    j_y, j_z, j_x = fi("p"), fi("z"), fi("x")
    bound[:, j_y] += b_y
    bound[:, j_z] += b_z
    # x's share of this step's new errors of y and z (and its own roundings on |y|/b1)
    a = (1.0 - b1) / b1
    bound[:, j_x] += bound[:, j_y] / b1 + a * bound[:, j_z]
    y_new = np.abs(new["p"]).reshape(-1)
    var[:, j_x] += 2.0 * (var[:, j_y] / b1 ** 2 + a * a * var[:, j_z]) + (y_new / b1) ** 2


DENSE = {"lazy_adam": "adam", "sparse_adagrad": "adagrad"}


def _decay_mode(opt: str, hp: dict) -> str:
    """Where the decay enters: ``"coupled"`` (g + wd p before the moments), ``"decoupled"`` (p
    times 1 - s wd) or ``"update"`` (LAMB's r + wd p: the update only, not the moments)."""
    if opt == "lamb":
        return "update" if hp.get("decay_placement", "trust") == "trust" else "decoupled"
    return hp.get("weight_decay_mode", "coupled")


def _jacobian(pp, old, new, g, t, lr) -> np.ndarray:
    """Per element, d(new field a)/d(old field b): the array fields perturbed together in one
    batched step (a trailing axis of copies; the step is elementwise), scalars one by one.

    A perturbation that leaves the step's domain (centred RMSprop's mu**2 above nu where both
    are 0) is taken from the other side; where both sides fail the entry is 0 (such an element
    is exactly 0 in every implementation: its gradients were all 0)."""
    n = old["p"].size
    nf = len(pp.fields)
    jac = np.zeros((n, nf, nf))
    arrays = [f for f in pp.fields if f not in pp.scalar]
    hs = {f: _perturbation(old[f], new[f]) for f in pp.fields}
    gb = np.repeat(np.asarray(g, dtype=np.float64)[..., None], len(arrays), axis=-1)
    for sign in (1.0, -1.0):
        batch = {}
        for f in pp.fields:
            copies = [old[f]] * len(arrays)
            if f in arrays:
                copies[arrays.index(f)] = old[f] + sign * hs[f]
            batch[f] = np.stack(copies, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            res, _ = pp.step(batch, gb, t, lr)
        for b, f in enumerate(arrays):
            col = pp.fields.index(f)
            for a, f2 in enumerate(pp.fields):
                d = ((res[f2][..., b] - new[f2]) / (sign * hs[f])).reshape(-1)
                fill = (~np.isfinite(jac[:, a, col]) | (sign == 1.0)) & np.isfinite(d)
                jac[:, a, col] = np.where(fill, d, jac[:, a, col] if sign < 0 else np.nan)
        if np.all(np.isfinite(jac)):
            break
    for f in pp.scalar:
        h = float(np.max(hs[f]))
        moved = dict(old)
        moved[f] = old[f] + h
        res, _ = pp.step(moved, g, t, lr)
        col = pp.fields.index(f)
        for a, f2 in enumerate(pp.fields):
            jac[:, a, col] = ((res[f2] - new[f2]) / h).reshape(-1)
    return np.where(np.isfinite(jac), jac, 0.0)


def _record(prm, news, cov, bnd, shifts, closed, u) -> dict:
    rec = {"params": {}, "state": {}}
    off = 0
    for j, pp in enumerate(prm):
        n = int(np.prod(pp.shape, dtype=np.int64)) if pp.shape else 1
        for a, f in enumerate(pp.fields):
            if closed:
                var, b = np.diag(cov)[off:off + n], bnd[off:off + n]
                off += n
            elif cov[j].ndim == 2:  # per-tensor: one (field, element) system per parameter
                lo = sum(news[j][f2].size for f2 in pp.fields[:a])  # fields of their own size
                hi = lo + news[j][f].size
                var, b = np.diag(cov[j])[lo:hi], bnd[j][lo:hi]
            else:
                var, b = cov[j][:, a, a], bnd[j][:, a]
            if shifts is not None:
                b = b + np.abs(shifts[j][f] - news[j][f]).reshape(-1) / u
            pair = [float(np.sqrt(np.max(var))), float(np.max(b))]
            if f == "p":
                rec["params"][pp.name] = pair
            else:
                rec["state"].setdefault(pp.name, {})[f] = pair
    return rec


def _closed_step(case, prm, olds, news, grads, t, lr, cov, bnd, local, u):
    """The closed-loop step's full Jacobian over every (param, field, element)."""
    layout = []
    for j, pp in enumerate(prm):
        n = olds[j]["p"].size
        for f in pp.fields:
            for i in range(n):
                layout.append((j, f, i))
    dim = len(layout)
    newvec = np.concatenate([news[j][f].reshape(-1) for j, pp in enumerate(prm)
                             for f in pp.fields])

    def run(values_list):
        params = {pp.name: values_list[j]["p"] for j, pp in enumerate(prm)}
        g = {k: np.asarray(v, dtype=np.float64)
             for k, v in case.gradients(t, params).items()}
        res = [pp.step(values_list[j], g[pp.name], t, lr)[0] for j, pp in enumerate(prm)]
        return np.concatenate([res[j][f].reshape(-1) for j, pp in enumerate(prm)
                               for f in pp.fields])

    jac = np.zeros((dim, dim))
    for b, (j, f, i) in enumerate(layout):
        h = _perturbation(olds[j][f], news[j][f]).reshape(-1)[i]
        moved = [dict(o) for o in olds]
        arr = olds[j][f].copy().reshape(-1)
        arr[i] += h
        moved[j][f] = arr.reshape(olds[j][f].shape)
        jac[:, b] = (run(moved) - newvec) / h
    # the harness's float64 gradient at the implementation's iterate: its evaluation error
    # (2n + 4 roundings on the gradient's terms), moved into every field by d(step)/d(g)
    gvar = np.zeros(dim)
    params = {pp.name: olds[j]["p"] for j, pp in enumerate(prm)}
    terms = _gradient_terms(case.objective, params)
    for j, pp in enumerate(prm):
        n = olds[j]["p"].size
        for i in range(n):
            gg = grads[pp.name].copy().reshape(-1)
            hg = ETA * max(abs(gg[i]), terms[pp.name].reshape(-1)[i], 1e-300)
            gg[i] += hg
            res = pp.step(olds[j], gg.reshape(grads[pp.name].shape), t, lr)[0]
            col = np.zeros(dim)
            off = sum(olds[q]["p"].size * len(prm[q].fields) for q in range(j))
            for a, f in enumerate(pp.fields):
                col[off + a * n: off + (a + 1) * n] = (res[f] - news[j][f]).reshape(-1) / hg
            k_g = 2 * n + 4
            gvar += col ** 2 * k_g * terms[pp.name].reshape(-1)[i] ** 2 / 3.0
    loc = np.concatenate([_flat_local(local[j][0]) for j in range(len(prm))])
    loc = loc + gvar * (UNIT["float64"] / u) ** 2
    b = np.concatenate([_flat_local(local[j][1]) for j in range(len(prm))])
    return jac @ cov @ jac.T + np.diag(loc), np.abs(jac) @ bnd + b


def _gradient_terms(objective: dict, params: dict) -> dict:
    """Per element, the sum of the magnitudes of the terms of the objective's gradient."""
    name = objective["name"]
    if name == "quadratic":
        x = np.asarray(params["x"])
        return {"x": np.abs(np.asarray(objective["A"])) @ np.abs(x) + np.abs(objective["b"])}
    if name == "rosenbrock":
        x = np.asarray(params["x"])
        g = np.zeros_like(x)
        g[:-1] += 400 * np.abs(x[:-1]) * (np.abs(x[1:]) + x[:-1] ** 2) + 2 * np.abs(1 - x[:-1])
        g[1:] += 200 * (np.abs(x[1:]) + x[:-1] ** 2)
        return {"x": g}
    if name == "logistic":
        w = np.asarray(params["w"])
        x, y = np.asarray(objective["X"]), np.asarray(objective["y"])
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        return {"w": np.abs(x).T @ (np.abs(p - y) + np.abs(x) @ np.abs(w) * p * (1 - p))
                / len(y) + objective["l2"] * np.abs(w)}
    msg = f"unknown objective {name!r}"
    raise KeyError(msg)


def annotate(case) -> dict:
    """``case.expected`` with each checkpoint's ``error`` record added."""
    rec = propagate(case)
    return {t: {**snap, "error": rec[t]} for t, snap in case.expected.items()}


# ---- per-tensor optimizers (OptimizerSpec.coupling == "tensor": LAMB, LARS) ----------------
# A per-tensor step reads reductions of the whole parameter, so an error in one element moves
# every element. Two consequences, both modelled rather than bounded away:
# * propagation: the step's Jacobian is taken over the parameter's whole (field, element)
#   state (field-major), by one-sided finite differences of the float64 reference, and the
#   covariance is a full matrix per parameter: C_t = J_t C_{t-1} J_t^T + local;
# * the reductions' own roundings: a scalar computed from the whole parameter (a trust ratio;
#   later Adafactor's RMS, Muon's normalisation) carries one relative error per step, shared by
#   every element: a rank-one term sigma^2 v v^T with v = d(new state)/d(ln scalar).
#   SHARED_SCALARS[opt](pp, old, new, lr, g) lists an optimizer's (v as {field: array}, sigma^2);
#   a batch of m independent scalars is v with a trailing axis of m and sigma^2 of shape (m,).
# A 2-norm of n terms computed in any order (squares, n - 1 additions of partial sums <= S, one
# square root) has relative variance <= n/12 + 1/3 (units u**2, Higham & Mary's model);
# NORM_EXTRA adds a scaled algorithm's (LAPACK nrm2, Blue) division per element and final
# multiply. The elementwise roundings of the vector whose norm is taken (k per element,
# relative) add k/3 * sum v^4 / (sum v^2)^2, and the ratio's own operations one u each.
NORM_EXTRA = (4 / 12, 2 / 3)  # (per-element division: n -> n + 4 in n/12; final multiply)


def _norm_var(n: int) -> float:
    """Relative variance (units u**2) of a computed 2-norm of ``n`` elements."""
    return n / 12.0 + 1.0 / 3.0 + NORM_EXTRA[0] + NORM_EXTRA[1]


def _ratio_term(dirs: dict, ratio_in, k_r: int, ops: int, norms: int = 2):
    """One trust ratio ``||a|| / ||b||``-like scalar: ``(dirs, sigma^2)``, or None where the
    zero-norm rule sets it exactly (``ratio_in``, the norm's argument, is 0; or no update).
    ``k_r``: the roundings per element of the vector in the denominator's norm; ``ops``: the
    ratio's own operations; ``norms``: how many n-term norms it reads."""
    vp = np.asarray(dirs["p"], dtype=np.float64).reshape(-1)
    s2 = float(np.sum(vp ** 2))
    if not np.any(ratio_in) or s2 == 0.0:
        return None
    var = norms * _norm_var(vp.size) + k_r / 3.0 * float(np.sum(vp ** 4)) / s2 ** 2
    return dirs, var + ops / 3.0


def _lamb_ratio(pp, old, new, lr, g=None) -> list:
    """||theta|| / ||r||: moves the step -lr*ratio*r (the moments do not see it). r has 6
    roundings (m/bc1, v/bc2, + eps_root, sqrt, + eps, the division), 2 more with the decay
    inside; the ratio one (the division), one more with decoupled decay (the decayed theta's
    rounding, which its norm reads in the same step)."""
    hp = pp.hp
    wd = float(hp.get("weight_decay", 0.0) or 0.0)
    decoupled = hp.get("decay_placement", "trust") == "decoupled" and wd != 0.0
    p_in = old["p"] * (1.0 - float(lr if lr is not None else hp["lr"]) * wd) if decoupled \
        else old["p"]
    dirs = {"p": new["p"] - p_in, "mu": np.zeros_like(new["mu"]),
            "nu": np.zeros_like(new["nu"])}
    term = _ratio_term(dirs, p_in, 6 + (2 if wd and not decoupled else 0),
                       1 + (1 if decoupled else 0))
    return [term] if term else []


def _lars_ratio(pp, old, new, lr, g=None) -> list:
    """eta ||theta|| / (||g'|| + eps): x = (lr) ratio g' = buf_new - mu buf_old enters the
    buffer and the step. g' has the decay's 2 roundings; the ratio three (eta*, + eps, the
    division); the paper's denominator two more (wd*||theta||, +) and a third norm ||g||."""
    hp = pp.hp
    mom = float(hp["momentum"])
    x = new["momentum_buffer"] - mom * old["momentum_buffer"]
    step = x + mom * x if hp["nesterov"] else x
    if hp["lr_placement"] == "outside":
        step = float(lr if lr is not None else hp["lr"]) * step
    wd = float(hp.get("weight_decay", 0.0) or 0.0)
    paper = hp["trust_denominator"] == "sum"
    term = _ratio_term({"p": -step, "momentum_buffer": x}, old["p"], 2 if wd else 0,
                       5 if paper else 3, 3 if paper else 2)
    return [term] if term else []


SHARED_SCALARS = {"lamb": _lamb_ratio, "lars": _lars_ratio}
# an optimizer's own step Jacobian (field-major, one parameter) where the finite differences of
# _tensor_jacobian cost too much (Muon)
TENSOR_JACOBIANS: dict = {}


def _shared_cov(case, prm, olds, news, lr, *, joint: bool, grads=None):
    """The shared scalars' roundings as covariance: per parameter (``joint`` False, the
    per-parameter layout) or embedded in the closed loop's one state vector."""
    out = []
    for pp, old, new in zip(prm, olds, news, strict=True):
        dim = sum(old[f].size for f in pp.fields)
        c = np.zeros((dim, dim))
        g = None if grads is None else grads[pp.name]
        for dirs, var in SHARED_SCALARS[case.optimizer](pp, old, new, lr, g):
            m = np.size(var) if np.ndim(var) else None
            v = np.concatenate([np.asarray(dirs[f], dtype=np.float64).reshape(
                -1 if m is None else (old["p"].size, m)) for f in pp.fields])
            c += var * np.outer(v, v) if m is None else (v * var) @ v.T
        out.append(c)
    if not joint:
        return out
    dim = sum(c.shape[0] for c in out)
    full, off = np.zeros((dim, dim)), 0
    for c in out:
        full[off:off + c.shape[0], off:off + c.shape[0]] = c
        off += c.shape[0]
    return full


def _tensor_jacobian(pp, old, new, g, t, lr) -> np.ndarray:
    """d(new (field, element))/d(old (field, element)) over one whole parameter, field-major,
    one column per perturbed entry (the step is not elementwise). A perturbation that leaves the
    step's domain is taken from the other side; where both fail the entry is 0."""
    fields = pp.fields
    newvec = np.concatenate([new[f].reshape(-1) for f in fields])
    jac = np.zeros((newvec.size, newvec.size))
    off = 0  # the field's first column (fields of their own sizes: Adafactor's factors)
    for f in fields:
        hs = _perturbation(old[f], new[f]).reshape(-1)
        for i in range(old[f].size):
            for sign in (1.0, -1.0):
                arr = old[f].copy().reshape(-1)
                arr[i] += sign * hs[i]
                moved = dict(old)
                moved[f] = arr.reshape(old[f].shape)
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    res, _ = pp.step(moved, g, t, lr)
                    col = (np.concatenate([res[f2].reshape(-1) for f2 in fields]) - newvec) \
                        / (sign * hs[i])
                if np.all(np.isfinite(col)):
                    break
            jac[:, off + i] = np.where(np.isfinite(col), col, 0.0)
        off += old[f].size
    return jac


# ---- Adafactor (per-tensor; the row and column factors have shapes of their own) -----------
# One step (adaptive_ref.optimizers.adafactor): theta' = theta (1 - s wd); alpha = max(eps2,
# RMS(theta or theta')) rho; Q = G^2 (+ eps1); R = b R + w mean_a0(Q), C = b C + w mean_a1(Q)
# (or v = b v + w Q); V_hat = R C / N, N = mean_a1(R) (one per slice); U = G / sqrt(V_hat);
# x = (alpha / max(1, RMS(U)/d)) U; (mu = b1 mu + (1 - b1) x); theta_new = theta' - x (or mu).
# Its roundings, in units u of the case dtype (u_m for a mean: u32 under mean_precision
# 'float32' in a float64 case, whose means are float32 in the golden and in Keras):
# * a mean of N non-negative terms (G^2, R): N - 1 additions on partial sums <= the sum, the
#   division and the inputs' own k_q roundings (G^2, + eps1; coupled L2: g's 2, doubled by the
#   square): relative variance <= (N + k_q)/3 u_m^2; torch's norm(dim).square().div(N) adds
#   the scaled norm's extra operations (NORM_EXTRA, four times through the square) and its two
#   own: (N + 18 + k_q)/3, the bound used. Under float32 means, a float64 input within a few
#   ULP of a float32 rounding boundary may round to the neighbour: 2 u32 per input, 4/3 more.
#   These are each factor entry's own (independent per entry); the EMA adds 3 on (|old| + |new|).
# * the normaliser N and alpha/denom are one number per slice / per parameter: rank-one terms
#   (SHARED_SCALARS). alpha: RMS(theta) (a 2-norm-like reduction, _norm_var(n) + 2/3 for
#   torch's norm/sqrt(n)), times rho; denom: RMS(U) likewise plus U's own 4 roundings per
#   element (weighted as in _ratio_term), / d. Uniform scaling of U cancels in U/RMS(U), so
#   the normaliser's error reaches the step only where clipping is off (then x ~ N^(1/2): its
#   direction is x/2), RMS(U)'s only where it is on.
# * per element of the update: R C, / N, sqrt, G / (torch: rsqrt, *), * (alpha/denom): 6; the
#   subtraction and decay multiply as for every optimizer; momentum's EMA 3.
# * beta2_hat = b and 1 - b = w, one number per step, shared (systematic, added linearly):
#   'float64' (the golden exact): t^-c by an array or libm pow in the scalar precision P (the
#   case dtype where that has no float64), |E_p| <= _pow_error, b = 1 - p off by E_p + u_P b, w
#   (1 - b again, or p itself) by E_b + u_P w, and each cast to the dtype, u b and u w more;
#   'float32' / 'param' (the golden holds the evaluation in P, correctly rounded): in float32
#   b = fl(1 - p') and w = fl(1 - b) are the golden's numbers unless p' (within E_p of the
#   golden's p) takes 1 - p' across a rounding boundary (_af_b_may_flip: checked exactly per
#   step); then b, w are off by E_p plus one rounding each (in float64 P always charged).
#   t = 1: p = 1, b = 0, w = 1 exactly in every implementation.
AF_UPDATE_ROUNDINGS = 6
AF_EMA_ROUNDINGS = 3
AF_TORCH_MEAN_EXTRA = 18  # torch's per-axis means: norm, square, divide (see above)


def _af_hp(pp) -> dict:
    return {**pp.hp, "_case_dtype": pp.case.dtype, "_shape": tuple(pp.shape)}


def _af_beta2_errors(hp: dict, t: int, dtype: str) -> tuple[float, float, float, float]:
    """``(b, w, E_b, E_w)``: beta2_hat, its complement, and bounds on their absolute errors."""
    c, prec = float(hp["decay_rate"]), hp["beta2_precision"]
    p = float(t) ** -c
    b, w = 1.0 - p, p
    if t == 1:
        return b, w, 0.0, 0.0
    u_d = UNIT[dtype]
    if prec == "float64":
        u_p = UNIT["float64"] if dtype == "float64" else u_d  # no float64 scalars: the dtype's
        e_p = _pow_error(float(t), -c, (u_p, True))
        e_b = e_p + u_p * b + (u_d * b if dtype == "float32" else 0.0)
        e_w = e_p + u_p * (b + w) + (u_d * w if dtype == "float32" else 0.0)
        return b, w, e_b, e_w
    u_p = UNIT["float32"] if prec == "float32" or dtype == "float32" else UNIT["float64"]
    e_p = _pow_error(float(t), -c, (u_p, True))
    if u_p == UNIT["float32"] and not _af_b_may_flip(t, c, e_p):
        return b, w, 0.0, 0.0  # b = fl(1 - p) and w = fl(1 - b) are the golden's numbers
    e_b = e_p + _ulp(b, u_p)
    return b, w, e_b, e_b + _ulp(w, u_p)


def _af_b_may_flip(t: int, c: float, e_p: float) -> bool:
    """Whether a float32 power p' within ``e_p`` of the golden's p = fl32(t^-fl32(c)) can give
    another b = fl32(1 - p') (1 - p' crossing a rounding boundary; then w = fl32(1 - b) moves
    with it). Otherwise b and w are exactly the golden's, whatever the power's error. p from
    the float64 power (within 1e-16 of exact): a p near a float32 rounding boundary itself
    counts as a possible flip."""
    f32 = np.float32
    p64 = float(t) ** -float(f32(c))
    pg = float(f32(p64))
    if abs(p64 - pg) > 0.5 * _ulp(pg, UNIT["float32"]) - 8 * _ulp(p64, UNIT["float64"]):
        return True  # p itself near a float32 midpoint: the golden's rounding is not certain
    x = 1.0 - pg  # exact in float64 (p has 24 bits, 1 - p at most 24 + |log2 p| + 1)
    bg = f32(x)
    lo = 0.5 * (float(bg) + float(np.nextafter(bg, f32(-np.inf))))
    hi = 0.5 * (float(bg) + float(np.nextafter(bg, f32(np.inf))))
    return min(abs(x - lo), abs(hi - x)) <= e_p


def _af_state(pp, old, new, lr):
    """What the local and the shared terms read: ``(hp, axes, x, alpha, clip_on, k_q)`` with x
    the step's new update alpha*U_hat (before momentum) per element."""
    from . import fidelity

    hp = _af_hp(pp)
    axes = fidelity._af_axes(hp, tuple(pp.shape))
    lr = float(lr if lr is not None else hp["lr"])
    wd = float(hp["weight_decay"])
    coupled = hp["weight_decay_mode"] == "coupled"
    p = old["p"]
    p_dec = p if coupled else p * (1.0 - (lr if hp["decay_scaling"] == "lr" else 1.0) * wd)
    if "mu" in new:
        x = (new["mu"] - float(hp["beta1"]) * old["mu"]) / (1.0 - float(hp["beta1"]))
    else:
        x = p_dec - new["p"]
    rho = min(lr, 1.0 / np.sqrt(pp_t(pp))) if hp["relative_step"] else lr
    alpha = rho
    if hp["multiply_by_parameter_scale"]:
        src = p if hp["param_scale_from"] == "before_decay" else p_dec
        alpha = max(float(hp["eps2"]), float(np.sqrt(np.mean(src ** 2)))) * rho
    d = float(hp["clip_threshold"])
    rms_x = float(np.sqrt(np.mean(x ** 2)))
    clip_on = alpha > 0 and rms_x >= alpha * d * (1.0 - 1e-6)  # RMS(U_hat) = d: clipped
    k_q = (1 if hp["eps1_mode"] != "add" else 2) + (4 if coupled and wd else 0)
    return hp, axes, x, alpha, clip_on, k_q


def pp_t(pp) -> int:
    """The 1-based step the parameter's reference state is about to take."""
    return int(np.asarray(pp.st.count)) + 1


def _af_mean_units(hp: dict, dtype: str) -> float:
    """(u_m / u)^2 and the extra variance of float32 means (their inputs' rounding)."""
    f32 = hp["mean_precision"] == "float32" and dtype == "float64"
    return (UNIT["float32"] / UNIT[dtype]) ** 2 if f32 else 1.0, (4.0 if f32 else 0.0)


def _adafactor_local(case, pp, old, new, t, lr, u) -> tuple[np.ndarray, np.ndarray]:
    """Adafactor's new errors of this step, field-major over pp.fields (see the block above)."""
    hp, axes, x, alpha, clip_on, k_q = _af_state(pp, old, new, lr)
    dtype = case.dtype
    b, w, e_b, e_w = _af_beta2_errors(hp, t, dtype)
    scale_m, flips = _af_mean_units(hp, dtype)
    wd = float(hp["weight_decay"])
    coupled = hp["weight_decay_mode"] == "coupled" and wd != 0.0
    decoupled = wd != 0.0 and not coupled
    var, bound = {}, {}
    pold, pnew = np.abs(old["p"]), np.abs(new["p"])
    delta = np.abs(old["p"] - new["p"])
    k_upd = AF_UPDATE_ROUNDINGS + (2 if coupled else 0) + (AF_EMA_ROUNDINGS if "mu" in new
                                                           else 0)
    var["p"] = (pnew ** 2 + decoupled * pold ** 2 + k_upd * delta ** 2) / 3.0
    bound["p"] = np.zeros_like(pnew)
    if decoupled:  # p * (1 - s wd): one constant, rounded once
        s = float(lr if lr is not None else hp["lr"]) if hp["decay_scaling"] == "lr" else 1.0
        c = 1.0 - s * wd
        c_in = 1.0 - float(np.asarray(s, dtype=dtype)) * float(np.asarray(wd, dtype=dtype))
        bound["p"] = (max(_const_error(c, dtype), abs(c_in - c) / c + u) / u) * pold
    shape = tuple(pp.shape)
    for f in pp.fields[1:]:
        xo, xn = np.abs(old[f]), np.abs(new[f])
        if f == "mu":
            var[f] = (AF_EMA_ROUNDINGS * (xo + xn) ** 2 + k_upd * (xn - float(hp["beta1"])
                                                                   * xo) ** 2) / 3.0
            bound[f] = np.zeros_like(xn)
            continue
        fresh = np.abs(new[f] - b * old[f])  # w * mean(Q) (or w * Q)
        if f == "v":
            n_terms = 1
        else:
            n_terms = shape[axes[0] if f == "v_row" else axes[1]]
        if f == "v":
            mean_var = k_q
        else:
            mean_var = scale_m * (n_terms + AF_TORCH_MEAN_EXTRA + k_q + flips)
        var[f] = (AF_EMA_ROUNDINGS * (xo + xn) ** 2 + mean_var * fresh ** 2) / 3.0
        bound[f] = (e_b * b * xo + (e_w / w if w else 0.0) * fresh) / u
    return (np.concatenate([var[f].reshape(-1) for f in pp.fields]),
            np.concatenate([bound[f].reshape(-1) for f in pp.fields]))


def _adafactor_scalars(pp, old, new, lr, g=None) -> list:
    """alpha/denom (one per parameter) and the normaliser N (one per slice, factored): rank-one
    terms with their relative variances (units u**2; see the block above)."""
    from . import fidelity

    hp, axes, x, alpha, clip_on, _ = _af_state(pp, old, new, lr)
    if not np.any(x):
        return []
    n = x.size
    scale_m, flips = _af_mean_units(hp, pp.case.dtype)
    b1 = float(hp.get("beta1", 0.0))

    def dirs(v):
        out = {f: np.zeros_like(new[f]) for f in pp.fields}
        if "mu" in new:
            out["mu"], out["p"] = (1.0 - b1) * v, -(1.0 - b1) * v
        else:
            out["p"] = -v
        return out

    rms_var = scale_m * (_norm_var(n) + 2.0 / 3.0 + flips / 3.0)
    var = 1.0 / 3.0  # alpha/denom's division
    if hp["multiply_by_parameter_scale"]:
        var += rms_var + 1.0 / 3.0  # RMS(theta), times rho
    s2 = float(np.sum(x ** 2))
    if clip_on:
        var += rms_var + 4.0 / 3.0 * float(np.sum(x ** 4)) / s2 ** 2 + 1.0 / 3.0
    out = [(dirs(x), var)]
    if axes is not None and not (clip_on and float(hp["clip_threshold"]) != np.inf):
        # N = mean over a1 of R, one per slice of the other axes: its own error, the step ~ N^1/2
        a0, a1 = axes
        shape, rshape = tuple(pp.shape), fidelity._keep(tuple(pp.shape), a0)
        n1 = shape[a1]
        nvar = scale_m * (n1 + 1 + flips) / 3.0  # the R's own errors come by the Jacobian
        slices = np.array([fidelity._af_index(rshape, fidelity._af_index(shape, i, a0), a1)
                           for i in range(n)])
        for k in np.unique(slices):
            part = np.where((slices == k).reshape(shape), 0.5 * x, 0.0)
            out.append((dirs(part), nvar))
    return out


TENSOR_LOCAL = {"adafactor": _adafactor_local}
SHARED_SCALARS["adafactor"] = _adafactor_scalars


# ---- SOAP (per-tensor; statistics gg<i> and bases q<i> of shapes (n_i, n_i)) ----------------
# One call t (adaptive_ref.optimizers.soap; Adam step s = t - 1; Q_i old bases, R_i new):
#   s >= 1: G~ = G x_i Q_i^T; m = b1 m + (1-b1) G~; v = b2 v + (1-b2) G~^2;
#           U = (m / (sqrt v + eps)) x_i Q_i; (U /= 1e-30 + rms(U)); theta = (theta - a U) c,
#           a = lr sqrt(1 - b2^s)/(1 - b1^s) (or lr), c = 1 - lr wd;
#   GG_i = GG_i + w (G_(i) G_(i)^T - GG_i); t = 1: R_i = eigh(GG_i); refresh: v re-sorted,
#   R_i = qr(GG_i Q_i[:, order]); stored m = (m x_i Q_i) x_i R_i^T.
# Roundings (units u of float64; the random model of the module docstring, variance u^2/3 per
# rounding on the size of the quantity rounded). The errors in the old state (m, v, GG, Q, p)
# travel by the Jacobian (finite differences of the float64 reference over the whole state:
# that carries an error in Q or GG through the gap-dependent eigh / QR); here only this step's
# new roundings:
# * a mode product y = x x_i M: each entry an n_i-term dot product, n_i products and n_i - 1
#   additions on terms / partial sums bounded by (|x| x_i |M|): (2 n_i - 1)/3 (|x| x_i |M|)^2;
#   a whole projection chains them, an earlier error passing through the later |M|: bounded by
#   k_P = sum_i (2 n_i - 1) roundings on the chained magnitude |x| x_1 |M_1| ... x_k |M_k|;
#   independent input errors pass with the squares: var(y) = var(x) x_i M^2 (elementwise).
# * m, v: their EMAs' 3 and 4 roundings on |old| + |new|, plus G~'s projection error times
#   (1 - b1) (m) or (1 - b2) 2 |G~| (v); v's re-sort moves its entries (no rounding).
# * U: m / (sqrt v + eps) 3 roundings per entry, then the back projection; normalize_grads
#   divides (1 more) by an RMS (a shared scalar below); a U: 1; the subtraction and the decay
#   multiply one each on |theta|; the bias-corrected step size: FACTORS' bound (_factor_error
#   of 1 - b1^s, half that of 1 - b2^s) times the step, and its own 5 roundings (two powers'
#   subtractions, sqrt, product, division) as a shared scalar; the decay constant once rounded
#   (bound, as for every decoupled decay).
# * the stored m: back with Q_i, into R_i: two projections (2 k_P on the chained magnitudes).
# * GG_i: the statistic is a k-term dot product per entry (k = N / n_i): (2k - 1)/3
#   (|G_(i)| |G_(i)|^T)^2 times w^2; the lerp's 3 roundings on |old| + |new|.
# * eigh (t = 1): backward stable (Householder tridiagonalisation and the QR / divide and
#   conquer iteration of every LAPACK): R is the exact eigenbasis of GG + E with each entry of
#   the symmetric E of size n ||GG||_2 u (O(n) rotations or reflections per entry, each
#   rounding on terms <= ||GG||), and orthogonal to n u per entry ((I + F) R, F ~ n u). E
#   moves R by dR/dE (|dR/dE| ~ 1/gap: the catalogue's gaps are >= SOAP_GAP relative); the
#   derivative is taken by finite differences of the reference's soap_eigenbasis.
# * QR refresh: A = GG Q (n-term dot products: (2n - 1)/3 (|GG||Q|)^2 per entry), Householder
#   QR backward stable column by column (each entry of column j moved by n ||A_j||_2 u) and
#   orthogonal to n u per entry; moved by dR/dA (finite differences of the sign-fixed QR;
#   ~ 1 / sigma_min(R) relative, screened).
SOAP_EMA_ROUNDINGS = {"exp_avg": 3, "exp_avg_sq": 4}
SOAP_LERP_ROUNDINGS = 3
SOAP_RATIO_ROUNDINGS = 3
SOAP_SIZE_ROUNDINGS = 5


def _soap_chain(x, qs, *, back: bool, square: bool = False):
    """``x`` through every basis (x_i |Q_i|^T, or x_i |Q_i| with ``back``; squared entries with
    ``square``, for the variance of independent errors)."""
    from adaptive_ref.optimizers.shampoo import mode_product

    for i, q in enumerate(qs):
        if q is not None:
            m = np.abs(q) if not square else q * q
            x = mode_product(x, m if back else m.T, i)
    return x


def _soap_basis_var(fn, a, var_in, n: int) -> np.ndarray:
    """Variance (units u^2) of ``fn(a)`` (an n x n basis) for independent errors of the
    entries of ``a`` with variance ``var_in`` (units u^2), plus the loss of orthogonality n u
    per entry; dR/da by one-sided finite differences (relative step 2^-20 of ||a||)."""
    r0 = fn(a)
    h = ETA * max(float(np.max(np.abs(a))), 1e-300)
    out = np.full((n, n), float(n) ** 2)
    for i in range(n):
        for j in range(n):
            if var_in[i, j] == 0:
                continue
            b = a.copy()
            b[i, j] += h
            out += ((fn(b) - r0) / h) ** 2 * var_in[i, j]
    return out


def _soap_local(case, pp, old, new, t, lr, u) -> tuple[np.ndarray, np.ndarray]:
    """SOAP's new errors of this step, field-major over pp.fields (see the block above)."""
    from adaptive_ref.optimizers.soap import (
        soap_eigenbasis,
        soap_layout,
        soap_project,
        soap_project_back,
    )

    hp = pp.hp
    dims, active = soap_layout(pp.shape, max_precond_dim=hp["max_precond_dim"],
                               merge_dims=hp["merge_dims"], precondition_1d=hp["precondition_1d"])
    g = np.asarray(case.gradients(t)[pp.name], dtype=np.float64).reshape(dims)
    qo = [old[f"q{i}"] if a else None for i, a in enumerate(active)]
    qn = [new[f"q{i}"] if a else None for i, a in enumerate(active)]
    k_p = sum(2 * n - 1 for n, a in zip(dims, active, strict=True) if a)
    var = {f: np.zeros_like(new[f]) for f in pp.fields}
    bound = {f: np.zeros_like(new[f]) for f in pp.fields}
    lr = float(lr if lr is not None else hp["lr"])
    wd, b1, b2 = float(hp["weight_decay"]), float(hp["beta1"]), float(hp["beta2"])
    sb = float(hp["shampoo_beta"]) if float(hp["shampoo_beta"]) >= 0 else b2
    refresh = t >= 2 and (t - 1) % int(hp["precondition_frequency"]) == 0
    order = {}
    for i, a in enumerate(active):  # the refresh's re-sort of the columns
        if a and refresh:
            gg, q = new[f"gg{i}"], qo[i]
            order[i] = np.argsort(-np.sum(q * (gg @ q), axis=0), kind="stable")
    if t >= 2:
        s = t - 1
        mo, vo = old["exp_avg"].reshape(dims), old["exp_avg_sq"].reshape(dims)
        gt = soap_project(g, qo)
        var_gt = k_p / 3.0 * _soap_chain(np.abs(g), qo, back=False) ** 2
        m = b1 * mo + (1 - b1) * gt
        v = b2 * vo + (1 - b2) * gt * gt
        var_m = (SOAP_EMA_ROUNDINGS["exp_avg"] * (np.abs(mo) + np.abs(m)) ** 2 / 3.0
                 + (1 - b1) ** 2 * var_gt)
        var_v = (SOAP_EMA_ROUNDINGS["exp_avg_sq"] * (np.abs(vo) + np.abs(v)) ** 2 / 3.0
                 + (1 - b2) ** 2 * 4 * gt ** 2 * var_gt)
        for i, o in order.items():
            var_v = np.take(var_v, o, axis=i)
        var["exp_avg_sq"] = var_v.reshape(pp.shape)
        ratio = m / (np.sqrt(v) + float(hp["eps"]))
        upd = soap_project_back(ratio, qo)
        var_u = (_soap_chain(SOAP_RATIO_ROUNDINGS / 3.0 * ratio ** 2, qo, back=True, square=True)
                 + k_p / 3.0 * _soap_chain(np.abs(ratio), qo, back=True) ** 2)
        if hp["normalize_grads"]:
            # U's own errors move its RMS too (d ln rms = sum U dU / sum U^2): that relative
            # variance joins the RMS's rank-one term (_soap_scalars reads it for this step)
            s2 = float(np.sum(upd * upd))
            pp.soap_rms_input_var = (t, float(np.sum(upd * upd * var_u)) / s2 ** 2
                                     if s2 else 0.0)
            rms = 1e-30 + float(np.sqrt(np.mean(upd * upd)))
            upd, var_u = upd / rms, var_u / rms ** 2 + (upd / rms) ** 2 / 3.0
        size = lr
        fp = FactorPrecision.of(hp, case.dtype)
        fac = 0.0
        if hp["correct_bias"]:
            size = lr * np.sqrt(1 - b2 ** s) / (1 - b1 ** s)
            fac = (_factor_error(b1, s, fp) + 0.5 * _factor_error(b2, s, fp)) / u
        c = 1.0 - lr * wd
        step = np.abs(size * upd).reshape(pp.shape)
        p1 = np.abs(old["p"]) + step  # bounds |theta - a U|
        var["p"] = (c ** 2 * (size ** 2 * var_u.reshape(pp.shape) + step ** 2 / 3.0)
                    + p1 ** 2 / 3.0 + (wd != 0) * np.abs(new["p"]) ** 2 / 3.0)
        bound["p"] = fac * c * step
        if wd:
            c_in = 1.0 - float(np.float64(lr) * np.float64(wd))
            bound["p"] = bound["p"] + (max(_const_error(c, case.dtype), abs(c_in - c) / c + u)
                                       / u) * np.abs(old["p"])
        # the stored m: back with the old bases, into the new (two chained projections)
        back = soap_project_back(m, qo)
        var_back = (_soap_chain(var_m, qo, back=True, square=True)
                    + k_p / 3.0 * _soap_chain(np.abs(m), qo, back=True) ** 2)
        var["exp_avg"] = (_soap_chain(var_back, qn, back=False, square=True)
                          + k_p / 3.0 * _soap_chain(np.abs(back), qn, back=False) ** 2
                          ).reshape(pp.shape)
    for i, a in enumerate(active):
        if not a:
            continue
        n = dims[i]
        others = tuple(k for k in range(g.ndim) if k != i)
        ag = np.abs(g)
        mag = np.multiply.outer(ag, ag) if g.ndim == 1 else np.tensordot(ag, ag,
                                                                         axes=(others, others))
        k = g.size // n
        ggo, ggn = old[f"gg{i}"], new[f"gg{i}"]
        var[f"gg{i}"] = (SOAP_LERP_ROUNDINGS * (np.abs(ggo) + np.abs(ggn)) ** 2 / 3.0
                         + (1 - sb) ** 2 * (2 * k - 1) / 3.0 * mag ** 2)
        if t == 1:
            def eig(x):
                return soap_eigenbasis(x, eigh_dtype="float64")[0]

            e = (n * float(np.linalg.norm(ggn, 2))) ** 2
            var[f"q{i}"] = _soap_basis_var(eig, ggn, np.full((n, n), e), n)
        elif refresh:
            a_mat = ggn @ qo[i][:, order[i]]

            def qr(x):
                qq, r = np.linalg.qr(x)
                return qq * np.where(np.diagonal(r) < 0, -1.0, 1.0)[None, :]

            var_a = ((2 * n - 1) / 3.0 * (np.abs(ggn) @ np.abs(qo[i][:, order[i]])) ** 2
                     + (n * np.linalg.norm(a_mat, axis=0)[None, :]) ** 2)
            var[f"q{i}"] = _soap_basis_var(qr, a_mat, var_a, n)
    return (np.concatenate([var[f].reshape(-1) for f in pp.fields]),
            np.concatenate([bound[f].reshape(-1) for f in pp.fields]))


def _soap_scalars(pp, old, new, lr, g=None) -> list:
    """The step size (its 5 roundings) and normalize_grads' RMS: rank-one terms along the
    step (see the block above)."""
    hp = pp.hp
    t = pp_t(pp)
    if t < 2:
        return []
    lr = float(lr if lr is not None else hp["lr"])
    c = 1.0 - lr * float(hp["weight_decay"])
    d = new["p"] - c * old["p"]  # -c a U
    if not np.any(d):
        return []
    dirs = {f: np.zeros_like(new[f]) for f in pp.fields}
    dirs["p"] = d
    var = SOAP_SIZE_ROUNDINGS / 3.0 if hp["correct_bias"] else 0.0
    if hp["normalize_grads"]:
        var += _norm_var(d.size) + 1.0 / 3.0  # sqrt(mean(U^2)), + 1e-30
        t_in, v_in = getattr(pp, "soap_rms_input_var", (None, 0.0))
        var += v_in if t_in == t else 0.0
    return [(dirs, var)] if var else []


TENSOR_LOCAL["soap"] = _soap_local
SHARED_SCALARS["soap"] = _soap_scalars
# ---- whole-model optimizers (OptimizerSpec.coupling == "tree": Prodigy) -------------------
# Every element's step reads sums over the whole model (Prodigy's d from r / sum_i ||s_i||_1),
# so the linearised state is one vector: per parameter its p and TREE_FIELDS (field-major),
# then the model's scalars once. The Jacobian is taken over all of it by one-sided finite
# differences of the float64 reference's whole-model step. Local roundings per element as
# above (FIELD_ROUNDINGS_OF, UPDATE_ROUNDINGS); the shared scalars' roundings are rank-one
# terms (TREE_SHARED), as SHARED_SCALARS are for the per-tensor optimizers.
TREE_FIELDS = {"prodigy": ("mu", "nu", "s")}  # p0 is an exact copy of the start: no error
TREE_SCALARS = {"prodigy": ("d", "d_max", "d_numerator")}
# Prodigy's fields: mu = b1 mu + c g (c = d(1 - b1) a shared scalar: b1*, c*g, +); nu = b2 nu +
# c' g*g (g*g, c'*, b2*, +); s = b3 s + c'' g (as mu). Its update: sqrt(v), d_t*eps (shared),
# +, dlr*m, /, the decoupled wd*dlr*p (2) and their sum.
FIELD_ROUNDINGS_OF.update({("prodigy", "mu"): 3, ("prodigy", "nu"): 4, ("prodigy", "s"): 3})
UPDATE_ROUNDINGS["prodigy"] = 7
# the shared per-step scalars' own roundings, relative (units u): c = d(1 - b1) (one), c' =
# d*d*(1 - b2) (two), c'' = (d/d0)*dlr (two; dlr = d*lr one more, below); systematic: the same
# error in every element's new term of that field
TREE_SCALAR_ROUNDINGS = {("prodigy", "mu"): 1, ("prodigy", "nu"): 2, ("prodigy", "s"): 2}


class _Model:
    """The float64 reference run of a whole model as one vector (see the block comment)."""

    def __init__(self, case, spec):
        self.case, self.spec = case, spec
        self.names = [p.name for p in case.params]
        self.shapes = [p.shape for p in case.params]
        self.sizes = [int(np.prod(s, dtype=np.int64)) if s else 1 for s in self.shapes]
        self.hp = case.param_hparams(self.names[0])
        self.fields = TREE_FIELDS[case.optimizer]
        self.scalars = TREE_SCALARS[case.optimizer]
        params = tuple(np.asarray(p.init, dtype=np.float64).reshape(p.shape)
                       for p in case.params)
        self.st = spec.init(params, **spec.init_kwargs(self.hp))
        self.vec = self.pack(params, self.st)
        self.layout = [(j, f) for j in range(len(self.names)) for f in ("p", *self.fields)]

    def pack(self, params, st) -> np.ndarray:
        parts = []
        for j in range(len(self.names)):
            parts.append(np.asarray(params[j], dtype=np.float64).reshape(-1))
            for f in self.fields:
                parts.append(np.asarray(getattr(st, f)[j], dtype=np.float64).reshape(-1))
        parts.append(np.array([float(getattr(st, f)) for f in self.scalars]))
        return np.concatenate(parts)

    def unpack(self, vec):
        params, per, off = [], {f: [] for f in self.fields}, 0
        for j, n in enumerate(self.sizes):
            params.append(vec[off:off + n].reshape(self.shapes[j]))
            off += n
            for f in self.fields:
                per[f].append(vec[off:off + n].reshape(self.shapes[j]))
                off += n
        sc = {f: np.float64(vec[off + i]) for i, f in enumerate(self.scalars)}
        st = self.st._replace(**{f: tuple(v) for f, v in per.items()}, **sc)
        return tuple(params), st

    def slot(self, j: int, f: str) -> slice:
        off = sum(n * (1 + len(self.fields)) for n in self.sizes[:j])
        k = 0 if f == "p" else 1 + self.fields.index(f)
        return slice(off + k * self.sizes[j], off + (k + 1) * self.sizes[j])

    def scalar(self, f: str) -> int:
        return len(self.vec) - len(self.scalars) + self.scalars.index(f)

    def step(self, vec, grads, t, lr):
        kw = dict(self.hp)
        if lr is not None:
            kw["lr"] = lr
        params, st = self.unpack(vec)
        p2, st2 = self.spec.step(params, tuple(grads[k] for k in self.names), st, **kw)
        return self.pack(p2, st2), st2


def _partial_sq(terms) -> float:
    """sum_k S_k^2 with S_k the partial sums of |terms| (a bound on each partial sum of a
    summation in any order): the variance (units u^2, times 3) of a computed sum's additions."""
    return float(np.sum(np.cumsum(np.abs(np.asarray(terms, dtype=np.float64))) ** 2))


def _ratio_shared(m: _Model, opt: str, terms, s_new, r_pair, decay: float, k_terms: float,
                  jac, coupled: bool) -> tuple[list, float]:
    """``(terms, increment)``: the numerator r_t = decay r + (scalar) sum(terms) and d_hat =
    r_t / sum_i ||s_i||_1 of a whole-model step as rank-one terms (``([], inc)`` when r does not
    move): the terms' k_terms roundings each, their additions, the scalar product and the sum
    (four), along v = r_t J[:, r] / decay; the denominator's additions and the new s's roundings
    plus d_hat's two, along the same direction less the stored r."""
    ir = m.scalar("d_numerator")
    r_old, r_new = r_pair
    inc = r_new - decay * r_old
    if r_new == 0 or inc == 0:
        return [], inc
    dot = float(np.sum(terms))
    scale = inc / dot if dot else 0.0
    var_r = ((_partial_sq(terms) + k_terms * float(np.sum(terms ** 2))) * scale ** 2
             + 4.0 * max(abs(r_new), abs(decay * r_old)) ** 2) / 3.0 / r_new ** 2
    v_r = r_new * jac[:, ir] / decay
    out = [(v_r, var_r)]
    den = float(np.sum(np.abs(s_new)))
    if den > 0:
        k_s = FIELD_ROUNDINGS_OF[(opt, "s")] + (2 if coupled else 0)
        var_den = (_partial_sq(s_new) + k_s * float(np.sum(s_new ** 2))) / 3.0 / den ** 2
        v_d = v_r.copy()
        v_d[ir] -= r_new
        out.append((v_d, var_den + 2.0 / 3.0))
    return out, inc


def _tree_ratio(m: _Model, opt: str, old, new, grads, jac, term, decay: float,
                k_terms: float) -> tuple[list, float]:
    """:func:`_ratio_shared` of a whole-model step whose numerator's terms are ``term(j, g)``
    for leaf j and its gradient g (with the coupled ``wd * p`` added when the decay is coupled)."""
    hp = m.hp
    wd = float(hp["weight_decay"])
    coupled = hp["weight_decay_mode"] == "coupled"
    ir = m.scalar("d_numerator")
    params, _ = m.unpack(old)
    _, st_new = m.unpack(new)
    terms, s_new = [], []
    for j, k in enumerate(m.names):
        g = np.asarray(grads[k], dtype=np.float64) + (wd * params[j] if coupled else 0.0)
        terms.append(term(j, g).reshape(-1))
        s_new.append(np.asarray(st_new.s[j]).reshape(-1))
    return _ratio_shared(m, opt, np.concatenate(terms), np.concatenate(s_new),
                         (old[ir], new[ir]), decay, k_terms, jac, coupled)


def _with_lr_term(m: _Model, out: list, v_lr, inc: float) -> list:
    """``out`` and the term of dlr (which moves r by ``inc`` and the fields as ``v_lr``): one
    rounding of d lr, two more with the bias correction."""
    v_lr[m.scalar("d_numerator")] = inc
    out.append((v_lr, (1.0 + (2.0 if m.hp["bias_correction"] else 0.0)) / 3.0))
    return out


def _prodigy_shared(m: _Model, old, new, grads, jac, st_old, t, lr) -> list:
    """Prodigy's shared scalars as rank-one terms ``(v, sigma^2)`` (relative variance, units
    u^2, along v = d(new state)/d(ln scalar)):

    * r_t = b3 r + (d/d0) dlr <g, p0 - p>: the dot's terms g_i (p0_i - p_i) (two roundings
      each), its additions (:func:`_partial_sq`), the scalar product and b3 r + (four); r_t
      enters only the stored r and d_hat, so v = r_t J[:, r] / b3;
    * sum_i ||s_i||_1 (additions, and this step's roundings of the new s, which it reads in the
      same step) and d_hat = d_coef r / den's two: the same direction less the stored r;
    * dlr = d lr (c_t): the s increment, r's increment and the parameter's update scale with
      it."""
    hp = m.hp
    b3 = np.sqrt(float(hp["beta2"])) if hp["beta3"] == -1.0 else float(hp["beta3"])
    params, _ = m.unpack(old)
    out, inc = _tree_ratio(m, "prodigy", old, new, grads, jac,
                           lambda j, g: g * (np.asarray(st_old.p0[j]) - params[j]), b3, 2.0)
    if not out:
        return out
    v_lr = np.zeros_like(new)
    for j in range(len(m.names)):
        sp, ss = m.slot(j, "p"), m.slot(j, "s")
        v_lr[sp] = new[sp] - old[sp]
        if not hp["safeguard_warmup"]:
            v_lr[ss] = new[ss] - b3 * old[ss]
    return _with_lr_term(m, out, v_lr, inc)


TREE_SHARED = {"prodigy": _prodigy_shared}
# ---- D-Adapt AdamW (adaptive_ref.optimizers.dadapt_adamw): Prodigy's machinery --------------
# fields: mu = b1 mu + c g (c = dlr(1 - b1), one rounding on dlr's), nu = b2 nu + (1 - b2) g*g
# (g*g, (1 - b2) (a constant: one), *, b2*, +), s = sb2 s + c'' g (c'' = (1 - sb2) dlr: two);
# the update m / (sqrt(v) + eps): sqrt, +, /, the decoupled wd*dlr*p (2) and their sum. The
# bias correction scales dlr, hence this step's terms of mu and s (TREE_DLR_FIELDS).
TREE_FIELDS["dadapt_adamw"] = ("mu", "nu", "s")
TREE_SCALARS["dadapt_adamw"] = ("d", "d_numerator")
FIELD_ROUNDINGS_OF.update({("dadapt_adamw", "mu"): 3, ("dadapt_adamw", "nu"): 4,
                           ("dadapt_adamw", "s"): 3})
UPDATE_ROUNDINGS["dadapt_adamw"] = 6
TREE_SCALAR_ROUNDINGS.update({("dadapt_adamw", "mu"): 1, ("dadapt_adamw", "nu"): 1,
                              ("dadapt_adamw", "s"): 2})
FACTORS["dadapt_adamw"] = (("beta1", -1.0), ("beta2", 0.5))  # dlr = d lr sqrt(1-b2^t)/(1-b1^t)
TREE_DLR_FIELDS = {"dadapt_adamw": ("mu", "s")}  # default ("s",): Prodigy's


def _dadapt_adamw_shared(m: _Model, old, new, grads, jac, st_old, t, lr) -> list:
    """D-Adapt AdamW's shared scalars as rank-one terms, as :func:`_prodigy_shared`:

    * r_t = sb2 r + (1 - sb2) dlr a, a = sum_i <g_i, s_i / (sqrt(v_i) + eps)> (the old s, v):
      the terms' four roundings each (sqrt, +, /, *), their additions, the scalar products and
      sum (four); v = r_t J[:, r] / sb2;
    * sum_i ||s_i||_1 (additions, and the new s's roundings) and d_hat = r / ((1 - sb2) den)'s
      two: the same direction less the stored r;
    * dlr = d lr (c_t): this step's terms of mu and s, r's increment, the decay and the
      parameter's move through mu."""
    hp = m.hp
    sb2 = np.sqrt(float(hp["beta2"]))
    eps = float(hp["eps"])
    coupled = hp["weight_decay_mode"] == "coupled"

    def term(j, g):
        return g * np.asarray(st_old.s[j]) / (np.sqrt(np.asarray(st_old.nu[j])) + eps)

    out, inc = _tree_ratio(m, "dadapt_adamw", old, new, grads, jac, term, sb2, 4.0)
    if not out:
        return out
    v_lr = np.zeros_like(new)
    for j in range(len(m.names)):
        sp, sm, ss = m.slot(j, "p"), m.slot(j, "mu"), m.slot(j, "s")
        sv = m.slot(j, "nu")
        v_lr[sm] = new[sm] - float(hp["beta1"]) * old[sm]
        v_lr[ss] = new[ss] - sb2 * old[ss]
        v_lr[sp] = -v_lr[sm] / (np.sqrt(new[sv]) + eps)
        if not coupled:
            dlr_wd = (new[sp] - old[sp]) + new[sm] / (np.sqrt(new[sv]) + eps)  # -dlr wd p
            v_lr[sp] += dlr_wd
    return _with_lr_term(m, out, v_lr, inc)


TREE_SHARED["dadapt_adamw"] = _dadapt_adamw_shared


def _dadapt_adamw_one_minus(m: _Model, old, new, fp, u, bound) -> None:
    """1 - sqrt(b2), as both implementations form it (Python: sqrt rounded in float64, then the
    subtraction, exact by Sterbenz; optax casts it to the scalar dtype): the sqrt's float64
    rounding is amplified by sqrt(b2)/(1 - sqrt(b2)) (~2000 at b2 = 0.999: 8.6e-14 relative,
    measured in every implementation), plus one rounding in the scalar dtype. The same error at
    every step (systematic): a bound on this step's term of s, r's increment and d_hat =
    r / ((1 - sqrt(b2)) den), whose three factors all carry it. Likewise the decay sqrt(b2)'s
    own rounding (systematic: on the decayed s and r)."""
    sb2 = np.sqrt(float(m.hp["beta2"]))
    e = (UNIT["float64"] * sb2 / (1.0 - sb2) + fp[0]) / u
    # the decay sqrt(b2) itself: rounded to the scalar dtype from the float64 sqrt of the
    # unrounded b2 (the rounded-hyperparameter run takes sqrt of b2 rounded to the case dtype):
    # up to fp[0] + u/2 relative, the same at every step, on the decayed s and r
    e_dec = fp[0] / u + 0.5
    for j in range(len(m.names)):
        ss = m.slot(j, "s")
        bound[ss] += e * np.abs(new[ss] - sb2 * old[ss]) + e_dec * sb2 * np.abs(old[ss])
    ir, idd = m.scalar("d_numerator"), m.scalar("d")
    bound[ir] += e * abs(new[ir] - sb2 * old[ir]) + e_dec * sb2 * abs(old[ir])
    if new[idd] != old[idd]:
        bound[idd] += 3.0 * e * abs(new[idd])


TREE_LOCAL_EXTRA = {"dadapt_adamw": _dadapt_adamw_one_minus}


def _tree_local(m: _Model, old, new, t, lr, fp, u):
    """Per slot, this step's independent roundings (variance, units u^2) and systematic errors
    (bound, units u): the elementwise ones as in :func:`_local`, the shared scalars' roundings
    (TREE_SCALAR_ROUNDINGS) and the bias correction's factor errors (:data:`FACTORS`) as bounds
    on the terms they scale."""
    hp, opt = m.hp, m.case.optimizer
    var, bound = np.zeros_like(new), np.zeros_like(new)
    wd = float(hp.get("weight_decay", 0.0) or 0.0)
    coupled = wd != 0.0 and hp["weight_decay_mode"] == "coupled"
    decoupled = wd != 0.0 and not coupled
    fac = 0.0
    if hp.get("bias_correction"):
        fac = sum(abs(power) * _factor_error(float(hp[h]), t, fp)
                  for h, power in FACTORS.get(opt, ())) / u
    ema = {"mu": float(hp["beta1"]), "nu": float(hp["beta2"]),
           "s": np.sqrt(float(hp["beta2"])) if hp.get("beta3", -1.0) == -1.0
           else float(hp["beta3"])}
    for j in range(len(m.names)):
        sp = m.slot(j, "p")
        po, pn = np.abs(old[sp]), np.abs(new[sp])
        delta = np.abs(new[sp] - old[sp])
        var[sp] = (pn ** 2 + decoupled * po ** 2 + UPDATE_ROUNDINGS[opt] * delta ** 2) / 3.0
        bound[sp] = fac * delta
        for f in m.fields:
            sf = m.slot(j, f)
            k = FIELD_ROUNDINGS_OF[(opt, f)] + (2 if coupled else 0)
            var[sf] = k * (np.abs(old[sf]) + np.abs(new[sf])) ** 2 / 3.0
            term = np.abs(new[sf] - ema[f] * old[sf])
            bound[sf] = (TREE_SCALAR_ROUNDINGS[(opt, f)] * term
                         + (fac * term if f in TREE_DLR_FIELDS.get(opt, ("s",)) else 0))
    if opt in TREE_LOCAL_EXTRA:
        TREE_LOCAL_EXTRA[opt](m, old, new, fp, u, bound)
    return var, bound


def _propagate_tree(case) -> dict:
    """:func:`propagate` for ``coupling == "tree"`` (replay cases)."""
    spec = registry.get(case.optimizer)
    u = UNIT[case.dtype]
    m = _Model(case, spec)
    fp = FactorPrecision.of(m.hp, case.dtype)
    q = None  # the float64 run with every hyperparameter (and scheduled lr) rounded to the dtype
    if case.dtype != "float64":
        import dataclasses

        from .format import ParamSpec

        rounded = {k: (float(np.asarray(v, dtype=case.dtype)) if isinstance(v, float) else v)
                   for k, v in case.hparams.items()}
        q = _Model(dataclasses.replace(case, hparams=rounded, params=tuple(
            ParamSpec(p.name, p.shape, p.init, p.grad, rounded) for p in case.params)), spec)
    dim = len(m.vec)
    # the systematic errors: each slot's error keeps one sign over the steps (what makes it
    # systematic), of size up to its bound b_t; their effect is A sigma with A_t = J_t A_{t-1} +
    # diag(b_t), |sigma| <= 1, bounded row by row by sum_j |A_ij|. Propagating the bound itself
    # with |J_t| (as above) drops every cancellation of the model-wide sums: d's sensitivity to
    # the p_i has both signs (it is ~ g_i), and |J| compounds it (measured: 8e32 u after 200
    # steps of prodigy[upstream,float64,base], where A gives 1e2-1e4 u)
    cov, amat = np.zeros((dim, dim)), np.zeros((dim, dim))
    out = {}
    for t in range(1, case.steps + 1):
        lr = case.lr_at(t)
        grads = {k: np.asarray(v, dtype=np.float64) for k, v in case.gradients(t).items()}
        old, st_old = m.vec, m.st
        new, st_new = m.step(old, grads, t, lr)
        hs = np.empty(dim)  # per array (its own floor), and per scalar
        for j in range(len(m.names)):
            for f in ("p", *m.fields):
                sl = m.slot(j, f)
                hs[sl] = _perturbation(old[sl], new[sl])
        for f in m.scalars:
            i = m.scalar(f)
            hs[i] = _perturbation(old[i:i + 1], new[i:i + 1])[0]
        jac = np.zeros((dim, dim))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            for b in range(dim):
                moved = old.copy()
                moved[b] += hs[b]
                jac[:, b] = (m.step(moved, grads, t, lr)[0] - new) / hs[b]
        jac = np.where(np.isfinite(jac), jac, 0.0)
        var, bound = _tree_local(m, old, new, t, lr, fp, u)
        cov = jac @ cov @ jac.T + np.diag(var)
        for v, s2 in TREE_SHARED[case.optimizer](m, old, new, grads, jac, st_old, t, lr):
            cov += s2 * np.outer(v, v)
        amat = jac @ amat
        amat[np.diag_indices(dim)] += bound
        m.vec, m.st = new, st_new
        shift = np.zeros(dim)
        if q is not None:
            q.vec, q.st = q.step(q.vec, grads, t, None if lr is None else
                                 float(np.asarray(lr, dtype=case.dtype)))
            shift = np.abs(q.vec - new) / u
        if t in case.checkpoints:
            out[t] = _tree_record(m, np.diag(cov), np.sum(np.abs(amat), axis=1) + shift)
    return out


def _tree_record(m: _Model, var, b) -> dict:
    rec = {"params": {}, "state": {}}
    for j, name in enumerate(m.names):
        st = {}
        for f in ("p", *m.fields):
            sl = m.slot(j, f)
            pair = [float(np.sqrt(np.max(var[sl]))), float(np.max(b[sl]))]
            if f == "p":
                rec["params"][name] = pair
            else:
                st[f] = pair
        if "p0" in m.st._fields:
            st["p0"] = [0.0, 0.0]
        for f in m.scalars:
            i = m.scalar(f)
            st[f] = [float(np.sqrt(var[i])), float(b[i])]
        rec["state"][name] = st
    return rec
# ---- Muon (adaptive_ref.optimizers.muon): Newton-Schulz's roundings -------------------------
# Muon's step is linear in its momentum up to D (the Nesterov direction), then the iteration
# X_0 = D/(||D|| + eps), A_k = X_k X_k^T, P_k = b A_k + c A_k A_k, X_{k+1} = a X_k + P_k X_k
# (on D or D^T, whichever makes A the smaller Gram matrix), then -lr r X_s. Its roundings, each
# an independent relative error of variance u_x^2/3 in its own precision u_x (Higham & Mary):
# * a k-term dot product sum_l a_l b_l, in any order (k products, k - 1 additions of partial
#   sums), has k roundings on terms no larger than S = sum_l |a_l||b_l|: variance <= k/3 u^2 S^2
#   (the products' sum_l (a_l b_l)^2 <= S^2, each addition's partial sum <= S), i.e. a
#   probabilistic sqrt(k/3) u on S. So per entry: A_k (r x r): c/3 u_acc^2 (|X||X|^T)^2;
#   P_k: the r-term product, b*A, c*A and the sum, (r + 3)/3 u_acc^2 S_P^2 with
#   S_P = |b||A| + |c||A||A|; X_{k+1}: the r-term product, a*X and the sum, (r + 2)/3 u_acc^2
#   S_X^2 with S_X = |a||X| + |P||X| (r rows, c columns after the transpose);
# * in bfloat16 (ns_dtype) the lines are float32 arithmetic (u_acc = 2^-24) rounded to bfloat16
#   (u_ns = 2^-8): once per line (ns_rounding "line", torch's addmm) on |A|, S_P, S_X; or after
#   every operation ("op", upstream): A once, P four times (b*A, c*A, (cA)A, the sum), X three
#   (a*X, PX, the sum), each on a term <= S_P or S_X;
# * X_0 = D/den: D's own roundings (K_D per element on the sum of its terms' magnitudes: the
#   Nesterov form's products and sum, the bias corrections' divisions), its cast to ns_dtype
#   where that is narrower than the case dtype (one u_ns), and the division (u_acc, then u_ns);
# * the norm ||D|| (shared by every element): relative variance NORM_VAR(n) in the precision it
#   is summed in (float32 for a bfloat16 iteration and for norm_precision "float32"), one u of
#   the dtype it is stored in where that differs (bfloat16, or Keras' float32), + eps's one, and
#   with norm_precision "float32" on float64 D the cast of each element (k_r = 1);
# * the scale lr r (a shared scalar): fan ratio, sqrt (or rms_scale*sqrt), the product and its
#   cast, 4 roundings in the case dtype; with scale_dtype "ns" the scaled update's bfloat16
#   rounding per element;
# * 1 - mu^t and 1 - mu^(t+1) (bias-corrected EMA, NAdam-style Nesterov): each a shared error
#   bounded by _factor_error, entered as a standard deviation of that size (so LAMBDA sigma is
#   LAMBDA times the bound).
# Each rounding reaches the update through the linearised remaining iterations: J_k, the
# Jacobian of X_s in X_k, is built backwards from the one-iteration Jacobians L_k (dA = dX X^T +
# X dX^T, dP = b dA + c(dA A + A dA), dX' = a dX + dP X + P dX), at the float64 trajectory. The
# covariance they add is V diag(var) V^T over all of them (_muon_roundings's batched terms); the
# momentum's own errors travel through the step's Jacobian like every field's.
MUON_UNIT = {**UNIT, "bfloat16": 2.0 ** -8}
MUON_D_ROUNDINGS = {"lerp": 3, "add": 2, "none": 0, "nadam": 5}
MUON_SCALE_ROUNDINGS = 4
FIELD_ROUNDINGS_OF[("muon", "mu")] = 3
UPDATE_ROUNDINGS["muon"] = 2  # (lr r) * O and O's cast to the parameter dtype
# the float64 reference run of the error model: the iteration in float64 whatever the case says
# (the precision knobs only say which roundings to charge)
EXACT_RUN = {"muon": {"ns_dtype": "float64", "norm_precision": "ns_dtype"}}


def _muon_precisions(hp: dict, dtype: str) -> tuple[str, str]:
    """(the iteration's dtype, its accumulation dtype) for ns_dtype on a case of ``dtype``."""
    ns = {"param": dtype}.get(hp["ns_dtype"], hp["ns_dtype"])
    return ns, "float32" if ns == "bfloat16" else ns


class _MuonLinear:
    """One Muon step linearised at the float64 trajectory: D (in the orientation whose Gram
    matrix is the smaller), the iterates X_k, A_k, P_k and J_k = d vec(X_s)/d vec(X_k)."""

    def __init__(self, pp, old, new, lr, g):
        import array_api_compat.numpy as xpn

        from adaptive_ref.optimizers.muon import muon_direction, shape_factor

        hp = self.hp = pp.hp
        self.t = t = int(np.asarray(pp.st.count)) + 1
        self.mu = mu = float(hp["momentum"])
        form, nest = hp["momentum_form"], hp["nesterov"]
        lr = float(lr if lr is not None else hp["lr"])
        self.decay = 1.0 - lr * float(hp.get("weight_decay", 0.0) or 0.0)
        self.lr_eff = lr * shape_factor(pp.shape, hp["shape_scale"], hp["layout"],
                                        float(hp["rms_scale"]))
        g = np.asarray(g, dtype=np.float64)
        _, d = muon_direction(xpn, g, old["mu"], np.float64(t), mu, form, nest, lambda v: v)
        m_new = np.asarray(new["mu"], dtype=np.float64)
        bc = (lambda e: 1.0 - mu ** e)  # noqa: E731
        # |terms| of D; the terms that carry a factor 1/(1 - mu^e); dD/dm_new (a scalar)
        if nest == "nadam":
            self.terms = np.abs(mu * m_new / bc(t + 1)) + np.abs((1 - mu) * g / bc(t))
            self.factor_terms = [(mu * m_new / bc(t + 1), t + 1), ((1 - mu) * g / bc(t), t)]
            self.dd_dm = mu / bc(t + 1)
        else:
            corr = form == "ema_bias_corrected"
            coef = {"lerp": mu, "add": mu, "none": 1.0}[nest]
            gcoef = {"lerp": 1 - mu, "add": 1.0, "none": 0.0}[nest]
            m_hat = m_new / bc(t) if corr else m_new
            self.terms = np.abs(gcoef * g) + np.abs(coef * m_hat)
            self.factor_terms = [(coef * m_hat, t)] if corr else []
            self.dd_dm = coef / (bc(t) if corr else 1.0)
        self.k_d = MUON_D_ROUNDINGS[nest] + (form == "ema_bias_corrected" and nest != "nadam")
        self.wide = d.shape[0] <= d.shape[1]
        self.y = y = self.orient(d)
        self.r, self.c = y.shape
        self.n = n = float(np.sqrt(np.sum(y * y)))
        eps = float(hp["eps"])
        self.den = n + eps if hp["eps_form"] == "add" else max(n, eps)
        self.abc = a, b, c = tuple(float(hp[k]) for k in ("ns_a", "ns_b", "ns_c"))
        self.xs, self.grams, self.polys = [y / self.den], [], []
        for _ in range(int(hp["ns_steps"])):
            x = self.xs[-1]
            gram = x @ x.T
            poly = b * gram + c * (gram @ gram)
            self.grams.append(gram)
            self.polys.append(poly)
            self.xs.append(a * x + poly @ x)
        s, rc = len(self.grams), y.size
        self.eye = np.eye(rc).reshape(rc, self.r, self.c)
        self.jac = [None] * (s + 1)
        self.jac[s] = np.eye(rc)
        for k in range(s - 1, -1, -1):
            self.jac[k] = self.jac[k + 1] @ self.lin(k, self.eye).reshape(rc, rc).T

    def orient(self, z):
        return z if self.wide else np.swapaxes(z, -1, -2)

    def lin(self, k, dx):
        """One linearised iteration at X_k on a batch of perturbations (m, r, c)."""
        a, b, c = self.abc
        x, gram, poly = self.xs[k], self.grams[k], self.polys[k]
        da = dx @ x.T + x @ np.swapaxes(dx, -1, -2)
        dp = b * da + c * (da @ gram + gram @ da)
        return a * dx + dp @ x + poly @ dx

    def d_to_x0(self, dd):
        """Perturbations of D (m, r, c) as perturbations of X_0 = D/(||D|| + eps)."""
        inner = np.einsum("mij,ij->m", dd, self.y)
        return dd / self.den - (self.y / self.den)[None] * (inner / (self.n * self.den))[
            :, None, None]

    def to_param(self, v):
        """Columns of perturbations of vec(X_s) as columns of the parameter's update."""
        v = -self.lr_eff * v
        if self.wide:
            return v
        return v.reshape(self.r, self.c, -1).transpose(1, 0, 2).reshape(self.r * self.c, -1)


def _muon_jacobian(pp, old, new, g, t, lr) -> np.ndarray:
    """Muon's step Jacobian over (p, mu), field-major, from the linearisation (the generic
    finite differences need a reference step per column: 256 per step on the (8, 16) "d"):
    d p'/d p = (1 - lr wd) I, d mu'/d mu = mu I, d p'/d mu = -lr r J_0 N mu dD/dm' (N the
    normalisation's Jacobian), d mu'/d p = 0. tests/test_muon.py checks it against finite
    differences."""
    lin = _MuonLinear(pp, old, new, lr, g)
    n = old["p"].size
    dx0 = lin.d_to_x0(lin.orient(np.eye(n).reshape(n, *pp.shape)))  # D-basis, param order
    jac = np.zeros((2 * n, 2 * n))
    jac[:n, :n] = lin.decay * np.eye(n)
    jac[n:, n:] = lin.mu * np.eye(n)
    jac[:n, n:] = lin.to_param(lin.jac[0] @ dx0.reshape(n, n).T) * (lin.mu * lin.dd_dm)
    return jac


def _muon_roundings(pp, old, new, lr, g) -> list:
    lin = _MuonLinear(pp, old, new, lr, g)
    hp, dtype = pp.hp, pp.case.dtype
    u = UNIT[dtype]
    ns, acc = _muon_precisions(hp, dtype)
    u_ns, u_acc = MUON_UNIT[ns], MUON_UNIT[acc]
    narrow = u_ns > u  # D is rounded to the iteration's dtype
    two = u_ns != u_acc  # bfloat16: float32 arithmetic, then a bfloat16 rounding
    op = two and hp["ns_rounding"] == "op"
    a, b, cc = lin.abc
    r, c, y, eye = lin.r, lin.c, lin.y, lin.eye
    rc = r * c
    cols, var = [], []

    def add(k, dx, v):  # perturbations dx (m, r, c) of X_k with variances v (m,), units u^2
        cols.append(lin.jac[k] @ dx.reshape(len(v), rc).T)
        var.append(np.asarray(v, dtype=np.float64))

    # D's roundings and its cast, then the division's
    v_d = (lin.k_d * lin.orient(lin.terms) ** 2 + narrow * (u_ns / u) ** 2 * y ** 2) / 3.0
    add(0, lin.d_to_x0(eye), v_d.reshape(-1))
    x0 = lin.xs[0]
    add(0, eye, ((u_acc / u) ** 2 + two * (u_ns / u) ** 2) * (x0 ** 2).reshape(-1) / 3.0)
    eye_r = np.eye(r * r).reshape(r * r, r, r)
    for k in range(len(lin.grams)):
        x, gram, poly = lin.xs[k], lin.grams[k], lin.polys[k]
        s_a = np.abs(x) @ np.abs(x).T
        v_a = (c * (u_acc / u) ** 2 * s_a ** 2 + two * (u_ns / u) ** 2 * gram ** 2) / 3.0
        add(k + 1, (b * eye_r + cc * (eye_r @ gram + gram @ eye_r)) @ x, v_a.reshape(-1))
        s_p = abs(b) * np.abs(gram) + abs(cc) * (np.abs(gram) @ np.abs(gram))
        k_p = (4 if op else 1) if two else 0
        v_p = ((r + 3) * (u_acc / u) ** 2 + k_p * (u_ns / u) ** 2) * s_p ** 2 / 3.0
        add(k + 1, eye_r @ x, v_p.reshape(-1))
        s_x = abs(a) * np.abs(x) + np.abs(poly) @ np.abs(x)
        k_x = (3 if op else 1) if two else 0
        v_x = ((r + 2) * (u_acc / u) ** 2 + k_x * (u_ns / u) ** 2) * s_x ** 2 / 3.0
        add(k + 1, eye, v_x.reshape(-1))
    # the norm, shared by every element: X_0 scaled by (1 - d ln n . n/den)
    f32 = hp["norm_precision"] == "float32"
    u_sum = UNIT["float32"] if f32 else u_acc
    u_store = UNIT["float32"] if f32 else u_ns
    rel = _norm_var(rc) * u_sum ** 2 + (u_store != u_sum) * u_store ** 2 / 3.0
    rel += (hp["eps_form"] == "add") * u_store ** 2 / 3.0
    if f32 and u < UNIT["float32"]:  # Keras casts float64 D to float32 before summing
        rel += UNIT["float32"] ** 2 / 3.0 * float(np.sum(y ** 4)) / float(np.sum(y ** 2)) ** 2
    add(0, -(x0 * (lin.n / lin.den))[None], [rel / u ** 2])
    # 1 - mu^e's error (a bound, entered as a standard deviation)
    fp = FactorPrecision.of(hp, dtype)
    for term, power in lin.factor_terms:
        e = _factor_error(lin.mu, power, fp)
        if e:
            add(0, lin.d_to_x0(lin.orient(term)[None]), [(e / u) ** 2])
    o = lin.xs[-1].reshape(-1, 1)
    # the scale lr r (shared) and, with scale_dtype 'ns', the scaled update's own rounding
    cols.append(o)
    var.append(np.array([MUON_SCALE_ROUNDINGS / 3.0]))
    if hp["scale_dtype"] == "ns" and two:
        cols.append(np.diag(o[:, 0]))
        var.append(np.full(rc, (u_ns / u) ** 2 / 3.0))
    v_out, var_out = lin.to_param(np.concatenate(cols, axis=1)), np.concatenate(var)
    keep = var_out > 0
    v_p = v_out[:, keep].reshape(*pp.shape, -1)
    return [({"p": v_p, "mu": np.zeros_like(v_p)}, var_out[keep])]


SHARED_SCALARS["muon"] = _muon_roundings
TENSOR_JACOBIANS["muon"] = _muon_jacobian
