"""First cross-check: each torch.optim and optax counterpart, run through its profile, agrees with
the reference for 100 steps of random float64 gradients.

Setup (the one of ``shared/reference/conventions.md`` section 11, plus a parameter with zero
gradient entries): three parameters, ``a`` (7,) with O(1) gradients ~ N(0.1, 1), ``c`` (3, 5) with
tiny gradients ~ N(0.1, 1) * 1e-6 (this exposes eps placement) and ``z`` (4,) whose first two
entries always get a zero gradient (this exposes guards such as optax Adagrad's
``where(sum > 0)``). Everything runs in float64: torch float64 tensors (and, for NAdam, whose
``mu_product`` takes torch's default dtype, ``torch.set_default_dtype(torch.float64)``, restored
after), JAX with x64.

Metric, per parameter and step t: ``|D_ref - D_fw|_inf / max(|D_ref|_inf, |D_fw|_inf)`` with
``D = x_t - x_0``; the test takes the maximum over the 100 steps and the three parameters.

Tolerance ``REL = 1e-12``. Both sides evaluate the same formula in IEEE float64 but in a different
operation order (torch ``lerp``/``addcdiv``, optax ``rsqrt`` and ``(1-b)*g + b*m``, our
``b*m + (1-b)*g`` and ``g / sqrt``), so each step differs by a few ULP (1 ULP = 2.2e-16 relative)
and the differences accumulate at worst linearly over 100 steps: ~100 * 4 ULP ~ 1e-13 (largest
observed here: 1.8e-13, optax ``adamw`` under a changing lr; most cases are below 2e-14).
1e-12 leaves a 5x margin above that and sits four orders of magnitude below the smallest
convention difference measured between the frameworks (2e-7, NAdam's float32 ``mu_product``).

RAdam is the one exception, for a numerical reason, not a convention: near the rectification
threshold ``rho_t = rho_inf - 2t b2^t/(1 - b2^t)`` is a difference of two nearly equal numbers
(1999 - 1994 at t=6 for b2=0.999), so one ULP in ``b2**t`` moves the rectifier ``r_t`` by
``K_t * ULP`` with ``K_t = (t/bc2^2) (1/(rho-4) + 1/(rho-2) - 1/rho)``, up to 1e5 at t=6. Python's
``0.999**7`` (libm, correctly rounded: torch uses it) and NumPy's SIMD ``pow`` (AVX-512 builds)
differ by one ULP, which shows as 6e-12 in ``r_7``. :func:`radam_tolerance` adds that propagated
bound (2 ULP of ``b2**t``, maximised over the rectified steps) to ``REL``; it is computed from the
formula, not fitted to the observed difference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from adaptive_ref.registry import REGISTRY

STEPS = 100
REL = 1e-12
SHAPES = {"a": (7,), "c": (3, 5), "z": (4,)}


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = {k: rng.normal(0.1, 1.0, (STEPS, *s)) for k, s in SHAPES.items()}
    grads["c"] = grads["c"] * 1e-6
    grads["z"][:, :2] = 0.0
    return p0, grads


# A strongly changing learning rate: linear warm-up over 10 steps, then cosine decay to 1e-4.
def _lr_schedule(peak: float) -> np.ndarray:
    t = np.arange(STEPS, dtype=np.float64)
    warm = peak * (t + 1) / 10
    cos = 1e-4 + 0.5 * (peak - 1e-4) * (1 + np.cos(np.pi * (t - 10) / (STEPS - 10)))
    return np.where(t < 10, warm, cos)


def run_reference(name: str, settings: dict, p0, grads, lrs=None) -> dict:
    """Our trajectory on NumPy float64: {param: array (STEPS, *shape)}."""
    spec = REGISTRY[name]
    out = {}
    for k in p0:
        p = p0[k].copy()
        s = spec.init(p, **spec.init_kwargs(settings))
        traj = []
        for t in range(STEPS):
            kw = settings if lrs is None else {**settings, "lr": float(lrs[t])}
            p, s = spec.step(p, grads[k][t], s, **kw)
            traj.append(p)
        out[k] = np.stack(traj)
    return out


def radam_tolerance(beta2: float) -> float:
    """REL plus the first-order effect of 2 ULP in ``beta2**t`` on RAdam's rectifier."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    worst = 0.0
    for t in range(1, STEPS + 1):
        x = beta2**t
        bc2 = 1.0 - x
        rho = rho_inf - 2.0 * t * x / bc2
        if rho > 5.0:
            k = (t / bc2**2) * (1 / (rho - 4) + 1 / (rho - 2) - 1 / rho)
            worst = max(worst, k)
    return REL + worst * 2 * np.spacing(1.0) / 2  # 2 ULP of a number just below 1


def tolerance(name: str, settings: dict) -> float:
    return radam_tolerance(settings["beta2"]) if name == "radam" else REL


def rel_diff(ref: dict, fw: dict, p0: dict) -> float:
    worst = 0.0
    for k in ref:
        d_ref = ref[k] - p0[k]
        d_fw = fw[k] - p0[k]
        axes = tuple(range(1, d_ref.ndim))
        num = np.max(np.abs(d_ref - d_fw), axis=axes)
        den = np.maximum(np.max(np.abs(d_ref), axis=axes), np.max(np.abs(d_fw), axis=axes))
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), num)
        worst = max(worst, float(np.max(r)))
    return worst


# ---------------------------------------------------------------------------------------------
# torch.optim
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchCase:
    id: str
    cls: str
    kwargs: dict
    name: str
    ours: dict  # overrides on top of the "torch" profile
    schedule: float | None = None  # peak lr of a changing-lr schedule
    f64_default: bool = False  # torch.set_default_dtype(float64): NAdam's mu_product


TC = TorchCase
TORCH_CASES = [
    TC("sgd-defaults", "SGD", {}, "sgd", {}),
    TC("sgd", "SGD", dict(lr=0.05), "sgd", dict(lr=0.05)),
    TC("sgd-momentum", "SGD", dict(lr=0.05, momentum=0.9), "sgd", dict(lr=0.05, momentum=0.9)),
    TC("sgd-momentum-dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3), "sgd",
      dict(lr=0.05, momentum=0.9, dampening=0.3)),
    TC("sgd-nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True), "sgd",
      dict(lr=0.05, momentum=0.9, nesterov=True)),
    TC("sgd-momentum-wd-maximize", "SGD",
      dict(lr=0.05, momentum=0.9, weight_decay=0.1, maximize=True), "sgd",
      dict(lr=0.05, momentum=0.9, weight_decay=0.1, maximize=True)),
    TC("sgd-momentum-dampening-schedule", "SGD", dict(momentum=0.9, dampening=0.3), "sgd",
      dict(momentum=0.9, dampening=0.3), schedule=0.05),
    TC("sgd-nesterov-schedule", "SGD", dict(momentum=0.9, nesterov=True), "sgd",
      dict(momentum=0.9, nesterov=True), schedule=0.05),
    TC("adagrad-defaults", "Adagrad", {}, "adagrad", {}),
    TC("adagrad-lr_decay-wd-init", "Adagrad",
      dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-8),
      "adagrad",
      dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-8)),
    TC("adagrad-maximize-schedule", "Adagrad", dict(maximize=True, lr_decay=0.05), "adagrad",
      dict(maximize=True, lr_decay=0.05), schedule=0.05),
    TC("rmsprop-defaults", "RMSprop", {}, "rmsprop", {}),
    TC("rmsprop-alpha-eps", "RMSprop", dict(lr=0.003, alpha=0.9, eps=1e-6), "rmsprop",
      dict(lr=0.003, alpha=0.9, eps=1e-6)),
    TC("rmsprop-centered", "RMSprop", dict(lr=0.003, centered=True), "rmsprop",
      dict(lr=0.003, centered=True)),
    TC("rmsprop-momentum", "RMSprop", dict(lr=0.003, momentum=0.9), "rmsprop",
      dict(lr=0.003, momentum=0.9)),
    TC("rmsprop-centered-momentum-wd-maximize", "RMSprop",
      dict(lr=0.003, centered=True, momentum=0.5, weight_decay=0.1, maximize=True), "rmsprop",
      dict(lr=0.003, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
    TC("rmsprop-momentum-schedule", "RMSprop", dict(momentum=0.9), "rmsprop",
      dict(momentum=0.9), schedule=0.003),
    TC("adam-defaults", "Adam", {}, "adam", {}),
    TC("adam-betas-eps", "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), "adam",
      dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)),
    TC("adam-wd-coupled", "Adam", dict(lr=0.01, weight_decay=0.1), "adam",
      dict(lr=0.01, weight_decay=0.1)),
    TC("adam-wd-decoupled", "Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
      "adam", dict(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled")),
    TC("adam-maximize", "Adam", dict(lr=0.01, maximize=True), "adam",
      dict(lr=0.01, maximize=True)),
    TC("adam-schedule", "Adam", {}, "adam", {}, schedule=0.01),
    TC("amsgrad", "Adam", dict(lr=0.01, amsgrad=True), "amsgrad", dict(lr=0.01)),
    TC("amsgrad-wd", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1), "amsgrad",
      dict(lr=0.01, weight_decay=0.1)),
    TC("adamw-defaults", "AdamW", {}, "adamw", {}),
    TC("adamw-wd", "AdamW", dict(lr=0.01, weight_decay=0.1), "adamw",
      dict(lr=0.01, weight_decay=0.1)),
    TC("adamw-amsgrad-maximize", "AdamW", dict(lr=0.01, amsgrad=True, maximize=True), "adamw",
      dict(lr=0.01, amsgrad=True, maximize=True)),
    TC("adamw-schedule", "AdamW", dict(weight_decay=0.5), "adamw", dict(weight_decay=0.5),
      schedule=0.01),
    TC("adamax-defaults", "Adamax", {}, "adamax", {}),
    TC("adamax-betas-wd-maximize", "Adamax",
      dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, maximize=True), "adamax",
      dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, maximize=True)),
    TC("nadam-defaults", "NAdam", {}, "nadam", {}, f64_default=True),
    TC("nadam-momentum_decay", "NAdam", dict(lr=0.01, momentum_decay=0.02), "nadam",
      dict(lr=0.01, momentum_decay=0.02), f64_default=True),
    TC("nadam-wd-coupled", "NAdam", dict(lr=0.01, weight_decay=0.1), "nadam",
      dict(lr=0.01, weight_decay=0.1), f64_default=True),
    TC("nadam-wd-decoupled", "NAdam",
      dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True), "nadam",
      dict(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled"), f64_default=True),
    TC("nadam-maximize-schedule", "NAdam", dict(maximize=True), "nadam", dict(maximize=True),
      schedule=0.01, f64_default=True),
    TC("radam-defaults", "RAdam", {}, "radam", {}),
    TC("radam-betas-eps", "RAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), "radam",
      dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)),
    TC("radam-wd-coupled", "RAdam", dict(lr=0.01, weight_decay=0.1), "radam",
      dict(lr=0.01, weight_decay=0.1)),
    TC("radam-wd-decoupled", "RAdam",
      dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True), "radam",
      dict(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled")),
    TC("radam-maximize-schedule", "RAdam", dict(maximize=True), "radam", dict(maximize=True),
      schedule=0.01),
]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch is not installed")


class _DefaultDtype:
    """``torch.set_default_dtype`` for the duration of a block, restored afterwards."""

    def __init__(self, torch, dtype):
        self.torch, self.dtype = torch, dtype

    def __enter__(self):
        self.saved = self.torch.get_default_dtype()
        self.torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        self.torch.set_default_dtype(self.saved)


def run_torch(torch, cls: str, kwargs: dict, p0, grads, lrs=None) -> dict:
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in p0.items()}
    opt = getattr(torch.optim, cls)(list(params.values()), foreach=False, **kwargs)
    traj = {k: [] for k in params}
    for t in range(STEPS):
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = float(lrs[t])
        for k, p in params.items():
            p.grad = torch.tensor(grads[k][t], dtype=torch.float64)
        opt.step()
        for k, p in params.items():
            traj[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in traj.items()}


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.id)
def test_torch_profile_reproduces_torch(torch, case: TorchCase):
    p0, grads = _problem()
    lrs = _lr_schedule(case.schedule) if case.schedule is not None else None
    settings = REGISTRY[case.name].settings("torch", **case.ours)
    dtype = torch.float64 if case.f64_default else torch.get_default_dtype()
    with _DefaultDtype(torch, dtype):
        fw = run_torch(torch, case.cls, case.kwargs, p0, grads, lrs)
    ref = run_reference(case.name, settings, p0, grads, lrs)
    assert rel_diff(ref, fw, p0) <= tolerance(case.name, settings)


def test_torch_rmsprop_lr_placement_matters_under_schedule(torch):
    """With a changing lr, torch's RMSprop momentum (lr outside the buffer) is reproduced only by
    lr_placement='outside'; 'inside' (optax's) is far off, so the knob is what makes it match."""
    p0, grads = _problem()
    lrs = _lr_schedule(0.003)
    fw = run_torch(torch, "RMSprop", dict(momentum=0.9), p0, grads, lrs)
    spec = REGISTRY["rmsprop"]
    good = run_reference("rmsprop", spec.settings("torch", momentum=0.9), p0, grads, lrs)
    bad = run_reference("rmsprop", spec.settings("torch", momentum=0.9, lr_placement="inside"),
                        p0, grads, lrs)
    assert rel_diff(good, fw, p0) <= REL
    assert rel_diff(bad, fw, p0) > 1e-3


def test_torch_nadam_float32_mu_product_artifact(torch):
    """Under torch's default float32 default dtype, NAdam keeps ``mu_product`` in float32 even for
    float64 params; the reference keeps it in float64, so the two differ by ~1e-7 relative (a
    state-dtype artifact, conventions.md section 8), far above float64 noise and far below any
    convention difference. Documented here so that a change in either shows up."""
    p0, grads = _problem()
    with _DefaultDtype(torch, torch.float32):
        fw = run_torch(torch, "NAdam", {}, p0, grads)
    ref = run_reference("nadam", REGISTRY["nadam"].settings("torch"), p0, grads)
    assert 1e-9 < rel_diff(ref, fw, p0) < 1e-5


# The profile's defaults against the installed constructors' signatures.
TORCH_DEFAULTS = {
    "sgd": ("SGD", dict(lr="lr", momentum="momentum", dampening="dampening",
                        nesterov="nesterov", weight_decay="weight_decay", maximize="maximize")),
    "adagrad": ("Adagrad", dict(lr="lr", lr_decay="lr_decay", eps="eps",
                                initial_accumulator_value="initial_accumulator_value",
                                weight_decay="weight_decay", maximize="maximize")),
    "rmsprop": ("RMSprop", dict(lr="lr", alpha="alpha", eps="eps", momentum="momentum",
                                centered="centered", weight_decay="weight_decay",
                                maximize="maximize")),
    "adam": ("Adam", dict(lr="lr", eps="eps", weight_decay="weight_decay", maximize="maximize",
                          betas=("beta1", "beta2"))),
    "amsgrad": ("Adam", dict(lr="lr", eps="eps", weight_decay="weight_decay",
                             maximize="maximize", betas=("beta1", "beta2"))),
    "adamw": ("AdamW", dict(lr="lr", eps="eps", weight_decay="weight_decay", maximize="maximize",
                            amsgrad="amsgrad", betas=("beta1", "beta2"))),
    "adamax": ("Adamax", dict(lr="lr", eps="eps", weight_decay="weight_decay",
                              maximize="maximize", betas=("beta1", "beta2"))),
    "nadam": ("NAdam", dict(lr="lr", eps="eps", weight_decay="weight_decay",
                            maximize="maximize", momentum_decay="momentum_decay",
                            betas=("beta1", "beta2"))),
    "radam": ("RAdam", dict(lr="lr", eps="eps", weight_decay="weight_decay",
                            maximize="maximize", betas=("beta1", "beta2"))),
}


@pytest.mark.parametrize("name", list(TORCH_DEFAULTS))
def test_torch_profile_defaults_match_signature(torch, name):
    cls, mapping = TORCH_DEFAULTS[name]
    sig = inspect.signature(getattr(torch.optim, cls).__init__).parameters
    settings = REGISTRY[name].settings("torch")
    for torch_kw, ours in mapping.items():
        default = sig[torch_kw].default
        if isinstance(ours, tuple):
            assert tuple(settings[o] for o in ours) == tuple(default), torch_kw
        else:
            assert settings[ours] == default, (torch_kw, settings[ours], default)


# ---------------------------------------------------------------------------------------------
# optax
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptaxCase:
    id: str
    make: Callable  # (optax, lr) -> GradientTransformation; lr is a float or a schedule
    name: str
    ours: dict = field(default_factory=dict)  # overrides on top of the "optax" profile
    lr: float = 0.01
    schedule: bool = False


def _wd_before(wd, factory):
    return lambda ox, lr: ox.chain(ox.add_decayed_weights(wd), factory(ox, lr))


OC = OptaxCase
OPTAX_CASES = [
    OC("sgd", lambda ox, lr: ox.sgd(lr), "sgd", lr=0.05),
    OC("sgd-momentum", lambda ox, lr: ox.sgd(lr, momentum=0.9), "sgd", dict(momentum=0.9),
      lr=0.05),
    OC("sgd-nesterov", lambda ox, lr: ox.sgd(lr, momentum=0.9, nesterov=True), "sgd",
      dict(momentum=0.9, nesterov=True), lr=0.05),
    OC("sgd-momentum-wd", _wd_before(0.1, lambda ox, lr: ox.sgd(lr, momentum=0.9)), "sgd",
      dict(momentum=0.9, weight_decay=0.1), lr=0.05),
    OC("sgd-momentum-schedule", lambda ox, lr: ox.sgd(lr, momentum=0.9), "sgd",
      dict(momentum=0.9), lr=0.05, schedule=True),
    OC("adagrad", lambda ox, lr: ox.adagrad(lr), "adagrad", lr=0.05),
    OC("adagrad-init0-eps0", lambda ox, lr: ox.adagrad(lr, initial_accumulator_value=0.0,
                                                      eps=0.0), "adagrad",
      dict(initial_accumulator_value=0.0, eps=0.0), lr=0.05),
    OC("adagrad-wd-schedule", _wd_before(0.1, lambda ox, lr: ox.adagrad(lr)), "adagrad",
      dict(weight_decay=0.1), lr=0.05, schedule=True),
    OC("rmsprop", lambda ox, lr: ox.rmsprop(lr), "rmsprop", lr=0.003),
    OC("rmsprop-eps_out", lambda ox, lr: ox.rmsprop(lr, eps_in_sqrt=False), "rmsprop",
      dict(eps_placement="outside"), lr=0.003),
    OC("rmsprop-centered", lambda ox, lr: ox.rmsprop(lr, centered=True), "rmsprop",
      dict(centered=True), lr=0.003),
    OC("rmsprop-centered-eps_out", lambda ox, lr: ox.rmsprop(lr, centered=True,
                                                            eps_in_sqrt=False), "rmsprop",
      dict(centered=True, eps_placement="outside"), lr=0.003),
    OC("rmsprop-momentum", lambda ox, lr: ox.rmsprop(lr, momentum=0.9), "rmsprop",
      dict(momentum=0.9), lr=0.003),
    OC("rmsprop-nesterov", lambda ox, lr: ox.rmsprop(lr, momentum=0.9, nesterov=True), "rmsprop",
      dict(momentum=0.9, nesterov=True), lr=0.003),
    OC("rmsprop-bias_correction", lambda ox, lr: ox.rmsprop(lr, bias_correction=True,
                                                           decay=0.99), "rmsprop",
      dict(bias_correction=True, alpha=0.99), lr=0.003),
    # Centred with bias correction: at t=1 the variance estimate v_hat - mu_hat^2 is 0 in exact
    # arithmetic (rounding noise in float64), so eps must dominate that noise for the update to
    # be well conditioned; eps=1e-3 inside the root makes the noise a 1e-13 effect.
    OC("rmsprop-centered-bias_correction", lambda ox, lr: ox.rmsprop(
        lr, centered=True, bias_correction=True, eps=1e-3), "rmsprop",
      dict(centered=True, bias_correction=True, eps=1e-3), lr=0.003),
    OC("rmsprop-initial_scale", lambda ox, lr: ox.rmsprop(lr, initial_scale=0.1), "rmsprop",
      dict(initial_accumulator_value=0.1), lr=0.003),
    OC("rmsprop-momentum-schedule", lambda ox, lr: ox.rmsprop(lr, momentum=0.9), "rmsprop",
      dict(momentum=0.9), lr=0.003, schedule=True),
    OC("rmsprop-centered-nesterov-schedule", lambda ox, lr: ox.rmsprop(
        lr, momentum=0.9, nesterov=True, centered=True, eps_in_sqrt=False), "rmsprop",
      dict(momentum=0.9, nesterov=True, centered=True, eps_placement="outside"), lr=0.003,
      schedule=True),
    OC("adam", lambda ox, lr: ox.adam(lr), "adam"),
    OC("adam-betas-eps-eps_root", lambda ox, lr: ox.adam(lr, b1=0.8, b2=0.99, eps=1e-6,
                                                        eps_root=1e-10), "adam",
      dict(beta1=0.8, beta2=0.99, eps=1e-6, eps_root=1e-10)),
    OC("adam-wd-coupled", _wd_before(0.1, lambda ox, lr: ox.adam(lr)), "adam",
      dict(weight_decay=0.1)),
    OC("adam-maximize", lambda ox, lr: ox.chain(ox.scale(-1.0), ox.adam(lr)), "adam",
      dict(maximize=True)),
    OC("adam-schedule", lambda ox, lr: ox.adam(lr), "adam", schedule=True),
    OC("amsgrad", lambda ox, lr: ox.amsgrad(lr), "amsgrad"),
    OC("amsgrad-eps_root", lambda ox, lr: ox.amsgrad(lr, eps_root=1e-10), "amsgrad",
      dict(eps_root=1e-10)),
    OC("adamw", lambda ox, lr: ox.adamw(lr), "adamw"),
    OC("adamw-wd", lambda ox, lr: ox.adamw(lr, weight_decay=0.1), "adamw",
      dict(weight_decay=0.1)),
    OC("adamw-schedule", lambda ox, lr: ox.adamw(lr, weight_decay=0.5), "adamw",
      dict(weight_decay=0.5), schedule=True),
    OC("adamax", lambda ox, lr: ox.adamax(lr), "adamax"),
    OC("adamax-betas", lambda ox, lr: ox.adamax(lr, b1=0.8, b2=0.99, eps=1e-6), "adamax",
      dict(beta1=0.8, beta2=0.99, eps=1e-6)),
    OC("nadam", lambda ox, lr: ox.nadam(lr), "nadam"),
    OC("nadam-betas", lambda ox, lr: ox.nadam(lr, b1=0.8, b2=0.99, eps=1e-6), "nadam",
      dict(beta1=0.8, beta2=0.99, eps=1e-6)),
    OC("nadamw", lambda ox, lr: ox.nadamw(lr, weight_decay=0.1), "nadam",
      dict(weight_decay=0.1, weight_decay_mode="decoupled")),
    OC("nadam-schedule", lambda ox, lr: ox.nadam(lr), "nadam", schedule=True),
    OC("radam", lambda ox, lr: ox.radam(lr), "radam"),
    OC("radam-betas-eps_root-threshold", lambda ox, lr: ox.radam(
        lr, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10, threshold=6.0), "radam",
      dict(beta1=0.8, beta2=0.99, eps=1e-6, eps_root=1e-10, threshold=6.0)),
    OC("radam-wd-schedule", _wd_before(0.1, lambda ox, lr: ox.radam(lr)), "radam",
      dict(weight_decay=0.1), schedule=True),
]


@pytest.fixture(scope="module")
def optax():
    ox = pytest.importorskip("optax", reason="optax is not installed")
    import jax

    jax.config.update("jax_enable_x64", True)
    return ox


def run_optax(optax, make, lr, p0, grads, lrs=None) -> dict:
    import jax
    import jax.numpy as jnp

    if lrs is not None:
        table = jnp.asarray(lrs)
        lr = lambda count: table[count]  # noqa: E731  (the schedule sees the 0-based count)
    opt = make(optax, lr)
    params = {k: jnp.asarray(v) for k, v in p0.items()}
    gs = {k: jnp.asarray(v) for k, v in grads.items()}

    def body(carry, g):
        p, s = carry
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), p

    @jax.jit
    def trajectory(p, gs):
        return jax.lax.scan(body, (p, opt.init(p)), gs)[1]

    out = trajectory(params, gs)
    assert all(v.dtype == jnp.float64 for v in out.values())
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("case", OPTAX_CASES, ids=lambda c: c.id)
def test_optax_profile_reproduces_optax(optax, case: OptaxCase):
    p0, grads = _problem()
    lrs = _lr_schedule(case.lr) if case.schedule else None
    settings = REGISTRY[case.name].settings("optax", lr=case.lr, **case.ours)
    fw = run_optax(optax, case.make, case.lr, p0, grads, lrs)
    ref = run_reference(case.name, settings, p0, grads, lrs)
    assert rel_diff(ref, fw, p0) <= tolerance(case.name, settings)


def test_optax_rmsprop_lr_placement_matters_under_schedule(optax):
    """optax.rmsprop puts lr inside the momentum buffer (trace after the lr scaling): only
    lr_placement='inside' reproduces it under a changing lr."""
    p0, grads = _problem()
    lrs = _lr_schedule(0.003)
    fw = run_optax(optax, lambda ox, lr: ox.rmsprop(lr, momentum=0.9), 0.003, p0, grads, lrs)
    spec = REGISTRY["rmsprop"]
    good = run_reference("rmsprop", spec.settings("optax", lr=0.003, momentum=0.9), p0, grads,
                         lrs)
    bad = run_reference("rmsprop", spec.settings("optax", lr=0.003, momentum=0.9,
                                                 lr_placement="outside"), p0, grads, lrs)
    assert rel_diff(good, fw, p0) <= REL
    assert rel_diff(bad, fw, p0) > 1e-3


OPTAX_DEFAULTS = {
    "sgd": ("sgd", dict(nesterov="nesterov")),
    "adagrad": ("adagrad", dict(initial_accumulator_value="initial_accumulator_value",
                                eps="eps")),
    "rmsprop": ("rmsprop", dict(decay="alpha", eps="eps", initial_scale="initial_accumulator_value",
                                centered="centered", nesterov="nesterov",
                                bias_correction="bias_correction")),
    "adam": ("adam", dict(b1="beta1", b2="beta2", eps="eps", eps_root="eps_root")),
    "amsgrad": ("amsgrad", dict(b1="beta1", b2="beta2", eps="eps", eps_root="eps_root")),
    "adamw": ("adamw", dict(b1="beta1", b2="beta2", eps="eps", eps_root="eps_root",
                            weight_decay="weight_decay")),
    "adamax": ("adamax", dict(b1="beta1", b2="beta2", eps="eps")),
    "nadam": ("nadam", dict(b1="beta1", b2="beta2", eps="eps")),
    "radam": ("radam", dict(b1="beta1", b2="beta2", eps="eps", eps_root="eps_root",
                            threshold="threshold")),
}


@pytest.mark.parametrize("name", list(OPTAX_DEFAULTS))
def test_optax_profile_defaults_match_signature(optax, name):
    fn, mapping = OPTAX_DEFAULTS[name]
    sig = inspect.signature(getattr(optax, fn)).parameters
    settings = REGISTRY[name].settings("optax", lr=1.0)
    for optax_kw, ours in mapping.items():
        assert settings[ours] == sig[optax_kw].default, (optax_kw, settings[ours])
    assert sig["learning_rate"].default is inspect.Parameter.empty  # optax requires lr
