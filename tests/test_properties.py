"""hypothesis property tests of the reference on NumPy float64 (the oracle backend).

Tolerances. A property that is exact in floating point (the two sides run the same operations
on the same bits, or differ only by exact operations such as negation, scaling by a power of two
or adding an exact zero) is checked *bitwise*. Otherwise the bound is stated in units of
``U = 2**-53`` (the float64 unit roundoff) with its derivation next to the test:

* one correctly rounded operation (+, *, /, sqrt) on positive operands adds at most ``U``
  relative error;
* an exponential moving average ``m_t = b*m_{t-1} + (1-b)*x_t`` of same-sign inputs carries at
  most about ``3U/(1-b)`` relative error (each step adds ~3U, damped by ``b``); a square root
  halves that. :func:`ema_ulps` gives ``3/(1-b1) + 2/(1-b2)`` for Adam-type steps.

All gradient magnitudes come from :func:`adaptive_ref.testing.strategies.gradient_sequences`
(``sign * 10**uniform(-6, 6)`` and exact zeros).
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adaptive_ref.optimizers.radam import rho
from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing import invariants as inv
from adaptive_ref.testing import strategies as ars

# NaN and Inf propagate (documented: 0/0 with eps = 0 gives NaN, as in torch and optax); NumPy
# reports them as RuntimeWarnings, which the suite's filterwarnings=error would turn into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

U = 2.0**-53  # float64 unit roundoff
# The optimizers of issue 2 (other issues register more; their suites test them).
CORE = ("sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax", "nadam", "radam")
ALL = [n for n in CORE if n in REGISTRY]
ADAM_LIKE = ["adam", "amsgrad", "adamw"]

# Properties parametrised over every optimizer draw a third of the profile's examples per
# optimizer (20 under "ci"): 9 optimizers x 20 = 180 draws per property, within the time budget.
per_optimizer = settings(max_examples=max(10, settings.default.max_examples // 3))


# Relative error (in U) of m_hat / sqrt(v_hat) from the two EMAs for same-sign inputs.
ema_ulps = inv.ema_roundings


def seq(grads: np.ndarray) -> list[np.ndarray]:
    """A drawn ``(steps, *shape)`` array as a list of per-step arrays (0-d ones stay arrays)."""
    return [np.array(g) for g in grads]


def bias_correction(beta: float, t: int) -> float:
    """1 - beta**t exactly as the core computes it (NumPy's float64 pow). Python's ``beta**t``
    can differ by an ulp of beta**t, which 1 - beta**t amplifies by beta**t/(1 - beta**t)
    (33x at beta = 0.99, t = 3): identities that pass t-dependent hyperparameters must use the
    same value."""
    return float(1.0 - np.power(np.float64(beta), np.float64(t)))


def _with(spec, settings, **kw):
    """``settings`` with ``kw`` applied where ``spec`` has those hyperparameters."""
    return {**settings, **{k: v for k, v in kw.items() if k in spec.hparam_names}}


@st.composite
def case(draw, name, shape=None, steps=(1, 6), zeros=True, **fixed):
    spec = REGISTRY[name]
    settings = draw(ars.hparams(spec, **{k: v for k, v in fixed.items()
                                         if k in spec.hparam_names}))
    shape = draw(ars.shapes(max_dims=2)) if shape is None else shape
    p = draw(ars.params_arrays(shape))
    grads = draw(ars.gradient_sequences(shape, steps, zeros=zeros))
    return spec, settings, p, seq(grads)


# ---------------------------------------------------------------------------------------------
# Generic invariants over the whole registry

@pytest.mark.parametrize("name", ALL)
@per_optimizer
@given(data=st.data())
def test_shape_dtype_preserved(name, data):
    spec, settings, p, grads = data.draw(case(name))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    p = p.astype(dtype)
    grads = [g.astype(dtype) for g in grads]
    inv.check_shape_dtype_preserved(spec, p, grads, settings)


@pytest.mark.parametrize("name", ALL)
@per_optimizer
@given(data=st.data())
def test_pure(name, data):
    """Read-only inputs (a write raises) and unchanged bits afterwards."""
    spec, settings, p, grads = data.draw(case(name, steps=(1, 3)))
    p.flags.writeable = False
    for g in grads:
        g.flags.writeable = False
    inv.check_pure(spec, p, grads, settings)


@pytest.mark.parametrize("name", ALL)
@per_optimizer
@given(data=st.data())
def test_zero_gradient_from_fresh_state(name, data):
    """From a fresh state zero gradients give a zero update (every moment stays 0, every update
    is 0/positive) when there is no weight decay and eps > 0."""
    spec = REGISTRY[name]
    eps = data.draw(st.floats(-12, -3).map(lambda e: 10.0**e))
    settings = data.draw(ars.hparams(spec, **_with(spec, {}, weight_decay=0.0, eps=eps)))
    p = data.draw(ars.params_arrays((4,)))
    inv.check_zero_gradient_fixed_point(spec, p, np.zeros(4), settings, steps=7)


@pytest.mark.parametrize("name", ALL)
@per_optimizer
@given(data=st.data())
def test_zero_gradient_after_history_without_momentum(name, data):
    """Methods whose update is proportional to the current gradient (SGD without momentum,
    Adagrad, RMSprop without momentum, the Adam family with beta1 = 0) stop dead on a zero
    gradient whatever their history, given eps > 0 and no weight decay."""
    spec = REGISTRY[name]
    eps = data.draw(st.floats(-12, -3).map(lambda e: 10.0**e))
    fixed = _with(spec, {}, weight_decay=0.0, eps=eps, beta1=0.0, momentum=0.0, nesterov=False,
                  centered=False)
    settings = data.draw(ars.hparams(spec, **fixed))
    p = data.draw(ars.params_arrays((4,)))
    history = data.draw(ars.gradient_sequences((4,), (1, 5)))
    p, state = inv.run_steps(spec, p, seq(history), settings)
    inv.check_zero_gradient_fixed_point(spec, p, np.zeros(4), settings, steps=3, state=state)


@pytest.mark.parametrize("name", [n for n in ALL if "maximize" in REGISTRY[n].hparam_names])
@per_optimizer
@given(data=st.data())
def test_maximize_is_minimize_of_negated_gradient(name, data):
    spec, settings, p, grads = data.draw(case(name))
    inv.check_maximize_is_negated_minimize(spec, p, grads, settings, neg=lambda g: -g)


@pytest.mark.parametrize("name", ALL)
@per_optimizer
@given(data=st.data())
def test_resume_from_saved_state_is_bit_identical(name, data):
    spec, settings, p, grads = data.draw(case(name, steps=(1, 8)))
    stop = data.draw(st.integers(0, len(grads)))
    to_numpy = data.draw(st.booleans())
    inv.check_resume_equals_uninterrupted(spec, p, grads, settings, stop, to_numpy=to_numpy)


@pytest.mark.parametrize("name", [n for n in ALL if REGISTRY[n].elementwise])
@per_optimizer
@given(data=st.data())
def test_elementwise_methods_are_permutation_equivariant(name, data):
    spec, settings, p, grads = data.draw(case(name, shape=(5,)))
    perm = np.array(data.draw(st.permutations(range(5))))
    inv.check_permutation_equivariant(spec, p, grads, settings, perm)


@pytest.mark.parametrize("name", ["amsgrad", "adagrad"])
@given(data=st.data())
def test_accumulators_never_decrease(name, data):
    """AMSGrad's running maximum (raw or bias-corrected v) and Adagrad's sum of squares."""
    field = {"amsgrad": "nu_max", "adagrad": "sum"}[name]
    spec, settings, p, grads = data.draw(case(name, shape=(4,), steps=(2, 10)))
    inv.check_monotone_field(spec, p, grads, settings, field)


# ---------------------------------------------------------------------------------------------
# Adam: first step, constant gradient, loss scaling, eps-hat, AdamW(wd=0)

@pytest.mark.parametrize("name", ADAM_LIKE)
@given(data=st.data())
def test_adam_first_step_is_minus_lr_sign_g(name, data):
    """eps = 0, bias correction on: the first step is -lr*sign(g), whatever beta1, beta2 and the
    eps placement. From p = 0: m_hat (2 roundings), v_hat (3, halved by sqrt, +1 for sqrt),
    division and lr (1 each) give at most 6.5 U relative, and the 'hat' form's step size
    lr*sqrt(bc2)/bc1 three more: bound 10 U. Where g = 0 the step is 0/0 = NaN, as in torch and
    optax (documented; eps > 0 avoids it). AdamW's decay multiplies p = 0, so it drops out."""
    spec = REGISTRY[name]
    settings = data.draw(ars.hparams(spec, eps=0.0, eps_root=0.0, bias_correction=True,
                                     maximize=False, **_with(spec, {}, weight_decay_mode="coupled",
                                             weight_decay=0.0) if name != "adamw" else {}))
    g = data.draw(ars.gradient_sequences((6,), 1))[0]
    nz = g != 0
    if np.any(nz):
        inv.check_first_step_is_minus_lr_sign(spec, g[nz], settings, roundings=10.0)
    p0 = np.zeros(6)
    p1, _ = spec.step(p0, g, spec.init(p0, **spec.init_kwargs(settings)), **settings)
    assert np.all(np.isnan(p1[~nz]))


@given(data=st.data())
def test_nadam_first_step_closed_form(data):
    """NAdam's first step is NOT -lr*sign(g) (issue 2's list says it is; that is false for both
    schedules). With eps = 0 it is -lr*sign(g)*(1 + mu_2*(1-b1)/(1 - mu_1*mu_2)), where
    mu_t = b1*(1 - 0.5*0.96**(t*psi)) (torch) or b1 (optax). Only b1 = 0 gives -lr*sign(g).
    Bound: 16 U (two update terms of ~7 roundings each, same sign, plus the coefficient)."""
    spec = REGISTRY["nadam"]
    settings = data.draw(ars.hparams(spec, eps=0.0, weight_decay=0.0, maximize=False))
    g = data.draw(ars.gradient_sequences((6,), 1, zeros=False))[0]
    p0 = np.zeros(6)
    p1, _ = spec.step(p0, g, spec.init(p0), **settings)
    b1, psi = settings["beta1"], settings["momentum_decay"]
    if settings["momentum_schedule"] == "torch":
        mu1, mu2 = (b1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in (1, 2))
    else:
        mu1 = mu2 = b1
    factor = 1.0 + mu2 * (1.0 - b1) / (1.0 - mu1 * mu2)
    expected = -settings["lr"] * np.sign(g) * factor
    np.testing.assert_array_less(np.abs(p1 - expected), 16 * U * np.abs(expected))


def test_nadam_first_step_factor_at_defaults():
    """The numbers behind the closed form: 1.0565 lr (torch, psi = 4e-3), 1 + 0.9/1.9 (optax)."""
    g = np.array([3.0, -1e-4])
    for schedule, factor in (("torch", 1.0565), ("constant", 1 + 0.9 / 1.9)):
        p1, _ = REGISTRY["nadam"].step(np.zeros(2), g, REGISTRY["nadam"].init(np.zeros(2)),
                                       lr=1.0, eps=0.0, momentum_schedule=schedule)
        np.testing.assert_allclose(-p1 * np.sign(g), factor, rtol=5e-5 if schedule == "torch"
                                   else 16 * U)


DYADIC_BETAS = (0.0, 0.5, 0.75, 0.875, 0.9375)


@pytest.mark.parametrize("name", ADAM_LIKE)
@given(data=st.data())
def test_adam_constant_gradient_exact_with_dyadic_inputs(name, data):
    """Constant g, eps = 0: theta_t = theta_0 - t*lr*sign(g), bit-exact when g, lr and the betas
    are dyadic with few bits (b = 1 - 2**-k, t <= 12): every m_t = (1-b1^t) g, v_t and bias
    correction is then exactly representable, so m_hat = g, sqrt(v_hat) = |g| exactly."""
    spec = REGISTRY[name]
    b1, b2 = data.draw(st.sampled_from(DYADIC_BETAS)), data.draw(st.sampled_from(DYADIC_BETAS[1:]))
    lr = 2.0 ** -data.draw(st.integers(1, 12))
    gval = data.draw(st.sampled_from((-1.0, 1.0))) * 2.0 ** data.draw(st.integers(-20, 20))
    settings = data.draw(ars.hparams(spec, lr=lr, beta1=b1, beta2=b2, eps=0.0, eps_root=0.0,
                                     eps_placement="outside", bias_correction=True,
                                     weight_decay=0.0, maximize=False))
    T = data.draw(st.integers(1, 12))
    inv.check_constant_gradient_closed_form(spec, np.zeros(3), gval, T, settings)


@pytest.mark.parametrize("placement", ["outside", "hat"])
@given(data=st.data())
def test_adam_constant_gradient_general(placement, data):
    """Any beta1 <= 0.99, beta2 <= 0.999, g: |theta_T - (theta_0 - T lr sign g)| is within
    sum_t lr*(ema_ulps + 10) U (the EMA bound plus the per-step roundings) + sum_t U |theta_t|
    (the parameter additions)."""
    spec = REGISTRY["adam"]
    b1 = data.draw(st.floats(0.0, 0.99))
    b2 = data.draw(st.floats(0.5, 0.999))
    settings = data.draw(ars.hparams(spec, beta1=b1, beta2=b2, eps=0.0, eps_root=0.0,
                                     eps_placement=placement, bias_correction=True,
                                     weight_decay=0.0, amsgrad=False, maximize=False))
    g = data.draw(ars.gradient_sequences((4,), 1, zeros=False))[0]
    p0 = data.draw(ars.params_arrays((4,)))
    T = data.draw(st.integers(1, 20))
    lr = settings["lr"]
    bound = np.zeros(4)
    p = p0

    def add(t, pt, s):
        bound[...] += lr * (ema_ulps(b1, b2) + 10) * U + U * np.abs(pt)

    p, _ = inv.run_steps(spec, p0, [g] * T, settings, callback=add)
    err = np.abs(p - (p0 - T * lr * np.sign(g)))
    np.testing.assert_array_less(err, bound + 1e-300)


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamw", "nadam", "adamax"])
@given(data=st.data())
def test_loss_scale_identity_power_of_two(name, data):
    """Adam(c*g, eps) == Adam(g, eps/c) (and eps_root/c**2), bitwise for c = 2**k: scaling by a
    power of two commutes with rounding (no overflow or underflow at these magnitudes), so m
    scales by c, v by c**2, sqrt(v) by c, and the update's bits are the same. Holds for NAdam and
    Adamax (eps inside the max) too; not with weight decay (issue: L2 breaks it)."""
    spec = REGISTRY[name]
    k = data.draw(st.integers(-10, 10))
    c = 2.0**k
    settings = data.draw(ars.hparams(spec, weight_decay=0.0))
    scaled = _with(spec, settings, eps=settings["eps"] / c,
                   eps_root=settings.get("eps_root", 0.0) / c**2)
    p = data.draw(ars.params_arrays((4,)))
    grads = seq(data.draw(ars.gradient_sequences((4,), (1, 6))))
    inv.check_loss_scale_identity(spec, p, grads, settings, k)  # the params, bitwise
    _, s1 = inv.run_steps(spec, p, [c * g for g in grads], settings)
    _, s2 = inv.run_steps(spec, p, grads, scaled)
    # scaling commutes with rounding only above the subnormal range: a tiny beta1 (5e-324 is
    # drawn) makes beta1*m subnormal, where rounding is absolute, not relative
    tiny = np.finfo(np.float64).tiny
    for a in (s1.mu, s2.mu, s1.nu, s2.nu):
        assume(not np.any((a != 0) & (np.abs(a) < tiny)))
    inv.assert_bitwise_equal(s1.mu, c * s2.mu, "mu")
    inv.assert_bitwise_equal(s1.nu, (c if name == "adamax" else c * c) * s2.nu, "nu")


@given(data=st.data())
def test_loss_scale_identity_any_c_single_step(data):
    """For any c > 0 one Adam step from p = 0: both sides are products and quotients of positive
    rounded quantities (~10 U each), so they agree within 24 U relative (eps >= 0)."""
    spec = REGISTRY["adam"]
    c = data.draw(st.floats(-4, 4).map(lambda e: 10.0**e))
    settings = data.draw(ars.hparams(spec, weight_decay=0.0, eps_root=0.0, amsgrad=False))
    g = data.draw(ars.gradient_sequences((6,), 1, zeros=False))[0]
    p0 = np.zeros(6)
    s0 = spec.init(p0)
    p1, _ = spec.step(p0, c * g, s0, **settings)
    p2, _ = spec.step(p0, g, s0, **{**settings, "eps": settings["eps"] / c})
    np.testing.assert_array_less(np.abs(p1 - p2), 24 * U * np.abs(p2) + 1e-300)


@pytest.mark.parametrize("name", ["adam", "amsgrad"])
@given(data=st.data())
def test_eps_hat_form_equals_algorithm_1(name, data):
    """eps_placement='hat' with eps_hat_t = eps*sqrt(1-b2^t), passed per step, equals the
    Algorithm-1 form with eps. One step is the issue's statement; since eps_hat is passed per step,
    the identity holds along the whole run (a constant eps_hat would not). The states are
    bitwise equal (the same recursions); each step's updates agree within 16 U of the step (each
    form is ~8 roundings of positive quantities), plus U |theta| per parameter addition."""
    spec = REGISTRY[name]
    settings = data.draw(ars.hparams(spec, eps_root=0.0, bias_correction=True,
                                     weight_decay=0.0, eps_placement="outside"))
    eps, b2 = settings["eps"], settings["beta2"]
    p0 = data.draw(ars.params_arrays((4,)))
    grads = seq(data.draw(ars.gradient_sequences((4,), (1, 6))))
    pa, pb = p0, p0
    sa = sb = spec.init(p0, **spec.init_kwargs(settings))
    for t, g in enumerate(grads, start=1):
        eps_hat = eps * math.sqrt(bias_correction(b2, t))
        qa, sa = spec.step(pa, g, sa, **settings)
        qb, sb = spec.step(pb, g, sb, **{**settings, "eps_placement": "hat", "eps": eps_hat})
        for f in ("mu", "nu", "nu_max"):
            if getattr(sa, f) is not None:
                inv.assert_bitwise_equal(getattr(sa, f), getattr(sb, f), f)
        step = np.abs(qa - pa)
        tol = 16 * U * step + 2 * U * np.abs(qa) + 1e-300  # + one rounding per addition
        ok = np.abs(qa - qb) <= tol
        assert np.all(ok | (np.isnan(qa) & np.isnan(qb))), (t, qa - pa, qb - pb)
        pa, pb = qa, qa  # continue both from the same parameters: the update is what is compared


@given(data=st.data())
def test_adamw_without_decay_equals_adam_bitwise(data):
    spec = REGISTRY["adamw"]
    settings = data.draw(ars.hparams(spec, weight_decay=0.0))
    adam_settings = {k: v for k, v in settings.items()
                     if k not in ("decay_scaling", "schedule_multiplier")}
    p = data.draw(ars.params_arrays((5,)))
    grads = seq(data.draw(ars.gradient_sequences((5,), (1, 6))))
    p1, s1 = inv.run_steps(spec, p, grads, settings)
    p2, s2 = inv.run_steps(REGISTRY["adam"], p, grads, adam_settings)
    inv.assert_bitwise_equal(p1, p2, "params")
    inv._assert_states_bitwise(s1, s2, "state")


# ---------------------------------------------------------------------------------------------
# theory.md section 13: closed forms, equivalences, bounds

@given(data=st.data())
def test_nadam_beta1_zero_equals_adam_beta1_zero(data):
    """Both schedules give mu_t = 0, so NAdam's momentum term is 0 * finite = +-0 and its gradient
    term is Adam's m_hat/(sqrt(v_hat)+eps) with m_hat = g: bitwise equal (eps > 0, g != 0 not
    required: 0/eps = 0)."""
    nadam = REGISTRY["nadam"]
    settings = data.draw(ars.hparams(nadam, beta1=0.0, weight_decay=0.0, maximize=False))
    assume(settings["eps"] > 0)
    p = data.draw(ars.params_arrays((5,), zeros=False))
    grads = seq(data.draw(ars.gradient_sequences((5,), (1, 6))))
    adam_kw = dict(lr=settings["lr"], beta1=0.0, beta2=settings["beta2"], eps=settings["eps"])
    p1, s1 = inv.run_steps(nadam, p, grads, settings)
    p2, s2 = inv.run_steps(REGISTRY["adam"], p, grads, adam_kw)
    inv.assert_bitwise_equal(p1, p2, "params")
    inv.assert_bitwise_equal(s1.nu, s2.nu, "nu")


@given(data=st.data())
def test_adam_beta1_zero_is_rmsprop_with_rescaled_lr_and_eps(data):
    """Adam(b1 = 0) == RMSprop(alpha = b2, lr_t = lr*sqrt(1-b2^t), eps_t = eps*sqrt(1-b2^t)).
    The second moments are bitwise equal; each update agrees within 16 U of its size (two
    chains of ~8 roundings of positive quantities)."""
    settings = data.draw(ars.hparams(REGISTRY["adam"], beta1=0.0, eps_root=0.0,
                                     eps_placement="outside", bias_correction=True,
                                     amsgrad=False, weight_decay=0.0, maximize=False))
    lr, b2, eps = settings["lr"], settings["beta2"], settings["eps"]
    p = data.draw(ars.params_arrays((5,)))
    grads = seq(data.draw(ars.gradient_sequences((5,), (1, 6), zeros=eps > 0)))
    sa = REGISTRY["adam"].init(p)
    sr = REGISTRY["rmsprop"].init(p)
    for t, g in enumerate(grads, start=1):
        k = math.sqrt(bias_correction(b2, t))
        qa, sa = REGISTRY["adam"].step(p, g, sa, **settings)
        qr, sr = REGISTRY["rmsprop"].step(p, g, sr, lr=lr * k, alpha=b2, eps=eps * k)
        inv.assert_bitwise_equal(sa.nu, sr.nu, "nu")
        step = np.abs(qa - p)
        # 16 U of the update, plus one rounding of each parameter addition
        assert np.all(np.abs(qa - qr) <= 16 * U * step + 2 * U * np.abs(qa) + 1e-300), t
        p = qa


@given(data=st.data())
def test_adagrad_constant_gradient_closed_form(data):
    """Constant g, eps = 0, s_0 = 0: theta_T = theta_0 - lr*sign(g)*sum_{k<=T} k**-0.5.
    s_t = t*g**2 is a sum of t equal terms ((t-1) U relative), halved by sqrt, plus ~4
    roundings per step; the reference sum is exact (Decimal, 40 digits)."""
    getcontext().prec = 40
    settings = data.draw(ars.hparams(REGISTRY["adagrad"], eps=0.0, lr_decay=0.0,
                                     initial_accumulator_value=0.0, weight_decay=0.0,
                                     maximize=False))
    g = data.draw(ars.gradient_sequences((4,), 1, zeros=False))[0]
    T = data.draw(st.integers(1, 25))
    lr = settings["lr"]
    p0 = np.zeros(4)
    p, _ = inv.run_steps(REGISTRY["adagrad"], p0, [g] * T, settings)
    exact = float(sum(Decimal(1) / Decimal(k).sqrt() for k in range(1, T + 1)))
    bound = sum(lr * k**-0.5 * ((k - 1) / 2 + 5) * U for k in range(1, T + 1)) + T * U * lr * exact
    np.testing.assert_array_less(np.abs(p + lr * np.sign(g) * exact), bound)


def test_adagrad_constant_gradient_exact_for_powers_of_two():
    """g = 2**k: s_t = t*g**2 and sqrt(s_t) = sqrt(t)*|g| exactly, so the reference follows the
    float64 recursion theta -= lr*(1/sqrt(t)) bit for bit."""
    for gval in (1.0, -2.0**-7, 2.0**9):
        p, s = np.zeros(1), REGISTRY["adagrad"].init(np.zeros(1))
        ref = 0.0
        for t in range(1, 30):
            p, s = REGISTRY["adagrad"].step(p, np.array([gval]), s, lr=0.1, eps=0.0)
            ref = ref - 0.1 * (math.copysign(1.0, gval) / math.sqrt(t))
            inv.assert_bitwise_equal(p, np.array([ref]), f"t={t}")


@pytest.mark.parametrize("placement", ["outside", "inside"])
@given(data=st.data())
def test_rmsprop_first_step_and_bound(placement, data):
    """Plain RMSprop (no centring or momentum, v_0 = 0): |Delta_1| = lr/sqrt(1-alpha) when
    eps = 0 (6 U: g*g, the EMA product, sqrt, division, lr), and |Delta_t| <= lr/sqrt(1-alpha)
    for every t and eps >= 0 (v_t >= (1-alpha) g_t**2), up to the same 6 U."""
    spec = REGISTRY["rmsprop"]
    settings = data.draw(ars.hparams(spec, eps_placement=placement, centered=False,
                                     momentum=0.0, nesterov=False, bias_correction=False,
                                     initial_accumulator_value=0.0, weight_decay=0.0,
                                     maximize=False))
    lr, a = settings["lr"], settings["alpha"]
    limit = lr / math.sqrt(1.0 - a)
    grads = seq(data.draw(ars.gradient_sequences((5,), (1, 8), zeros=False)))
    s = spec.init(np.zeros(5))
    first, _ = spec.step(np.zeros(5), grads[0], s, **{**settings, "eps": 0.0})
    np.testing.assert_array_less(np.abs(first + np.sign(grads[0]) * limit), 6 * U * limit)
    for g in grads:
        delta, s = spec.step(np.zeros(5), g, s, **settings)
        assert np.all(np.abs(delta) <= limit * (1 + 6 * U))


def test_radam_rho_1_is_one_and_first_rectified_step():
    """rho_1 = 1 for every beta2; with beta2 = 0.999 rho_5 = 4.996 and rho_6 = 5.994, so the
    first rectified step is t = 6 for threshold 5 and t = 5 for the paper's threshold 4.
    Constant g = 2 and eps = 0 make the phases visible: un-rectified steps are lr*m_hat = 2 lr,
    rectified ones lr*r_t*sign(g) < lr."""
    for b2 in (0.5, 0.9, 0.99, 0.999, 0.9999):
        # rho_inf - 2 b2/(1-b2) cancels: ~ rho_inf * U relative error
        assert abs(rho(b2, 1) - 1.0) <= 4 * (2 / (1 - b2)) * U
    spec = REGISTRY["radam"]
    for threshold, inclusive, first in ((5.0, False, 6), (5.0, True, 6), (4.0, False, 5)):
        s = spec.init(np.zeros(1))
        rectified = []
        for _t in range(1, 10):
            d, s = spec.step(np.zeros(1), np.array([2.0]), s, lr=1.0, eps=0.0,
                             threshold=threshold, threshold_inclusive=inclusive)
            rectified.append(abs(d[0]) < 1.5)
        assert rectified.index(True) + 1 == first
        assert all(rectified[first - 1:])


@pytest.mark.parametrize("placement", ["hat", "outside"])
def test_radam_rectified_step_matches_decimal_r_t(placement):
    """Constant gradient, eps = 0: the rectified step is lr*r_t, compared with a 50-digit
    Decimal evaluation of r_t. The float64 formula (the frameworks' too) is ill-conditioned at
    small t: 1 - b2^t carries an absolute error ~U, i.e. relative U/(t(1-b2)), and the term
    2 t b2^t/(1-b2^t) ~ rho_inf = 2/(1-b2) turns it into an absolute error
    ~ 2U/(t(1-b2)**2) in rho_t (3.7e-11 at b2 = 0.999, t = 6), which r_t's factors
    (rho_t - 4), (rho_t - 2), rho_t pass on with weights 1/2 each. Bound: twice that estimate."""
    getcontext().prec = 50
    b2 = 0.999
    spec = REGISTRY["radam"]
    s = spec.init(np.zeros(1))
    B2 = Decimal(b2)
    rinf = 2 / (1 - B2) - 1
    for t in range(1, 15):
        d, s = spec.step(np.zeros(1), np.array([0.5]), s, lr=1.0, eps=0.0, beta2=b2,
                         eps_placement=placement)
        rt = rinf - 2 * t * B2**t / (1 - B2**t)
        if rt > 5:
            r = ((rt - 4) * (rt - 2) * rinf / ((rinf - 4) * (rinf - 2) * rt)).sqrt()
            rf = float(rt)
            drho = 2 * U / (t * (1 - b2) ** 2)
            rtol = 2 * 0.5 * drho * (1 / (rf - 4) + 1 / (rf - 2) + 1 / rf) + 16 * U
            np.testing.assert_allclose(-d[0], float(r), rtol=rtol)


@given(data=st.data())
def test_adam_step_bound_R_t(data):
    """|Delta_t| <= lr*R_t(b1, b2) for every gradient sequence (eps = 0; Cauchy-Schwarz), with a
    relative slack of (ema_ulps + 10) U for the rounding of the EMAs and the step."""
    b1 = data.draw(st.floats(0.0, 0.99))
    b2 = data.draw(st.floats(0.5, 0.999))
    grads = seq(data.draw(ars.gradient_sequences((6,), (1, 12), zeros=False)))
    inv.check_step_bound(REGISTRY["adam"], grads, {"lr": 1.0, "beta1": b1, "beta2": b2,
                                                   "eps": 0.0},
                         lambda t, s: inv.adam_step_bound(t, s["beta1"], s["beta2"]))


@pytest.mark.parametrize(("b1", "b2"), [(0.9, 0.999), (0.5, 0.9), (0.9, 0.9), (0.95, 0.8)])
def test_adam_step_bound_R_t_is_attained(b1, b2):
    """The extremal sequence g_j = (b1/b2)**(t-j) attains |Delta_t| = lr*R_t; R_t = 1 at t = 1
    and for b1 = b2."""
    for t in (1, 2, 5, 30):
        spec = REGISTRY["adam"]
        s = spec.init(np.zeros(1))
        for j in range(1, t + 1):
            d, s = spec.step(np.zeros(1), np.array([(b1 / b2) ** (t - j)]), s, lr=1.0,
                             beta1=b1, beta2=b2, eps=0.0)
        R = inv.adam_step_bound(t, b1, b2)
        np.testing.assert_allclose(-d[0], R, rtol=(ema_ulps(b1, b2) + 20) * U)
        if t == 1 or b1 == b2:
            assert pytest.approx(1.0, rel=1e-14) == R
