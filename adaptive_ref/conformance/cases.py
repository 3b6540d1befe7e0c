"""The case catalogue, as data driven by the registry.

For every registered optimizer, under each framework profile it has (``torch``, ``optax``,
``keras``), and
for each dtype (float64, float32):

* ``base``: the profile's own settings, 200 steps, four parameters (see :data:`REPLAY_PARAMS`:
  a scalar with O(1) gradients, a (7,) vector with O(1e-6) gradients where eps placement
  dominates, a (3, 5) matrix with O(1e6) gradients, exact zeros and mixed signs, and a larger
  (8, 16) sparse-ish tensor);
* one case per value of every convention knob (``HParam.knob``) that differs from the profile's,
  50 steps, the first three parameters; a knob that only acts together with another setting
  (Nesterov needs momentum) gets that setting from :data:`KNOB_CONTEXT`; a knob that acts on
  float32 parameters only (:data:`FLOAT32_ONLY_KNOBS`) has float32 cases only;
* ``EXTRA`` algorithm variants (momentum, centred, lr_decay, ...), ``wd`` (weight decay),
  ``schedule`` (a per-step lr list: warm-up then cosine), ``groups`` (per-parameter
  hyperparameters), and float64 closed-loop cases on three objectives (100 steps).

The checkpoints (steps 1, 2, 5, 10, 50, 200) keep the golden data small while covering the first
bias-corrected steps, RAdam's switch to the rectified step (step 6 for beta2 = 0.999) and long-run
drift. Nothing here runs an optimizer: :mod:`adaptive_ref.conformance.generate` adds the
expected values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from . import objectives
from .fidelity import STATE_SHAPES
from .format import GoldenCase, ParamSpec
from .rng import uniform

__all__ = ["catalogue", "in_catalogue", "is_sparse", "REPLAY_PARAMS", "KNOB_CONTEXT", "EXTRA",
           "UNOBSERVABLE", "case_lr", "FINDING_CASES", "WELL_POSED", "WITHIN_BUDGET"]

LONG_CHECKPOINTS = (1, 2, 5, 10, 50, 200)
SHORT_CHECKPOINTS = (1, 2, 5, 10, 50)
LOOP_CHECKPOINTS = (1, 10, 100)

# name, shape, gradient generator parameters (docs/conformance-format.md, "grad")
REPLAY_PARAMS = (
    ("a", (), dict(seed=101, scale=1.0, offset=0.1, zero_fraction=0.0)),
    ("b", (7,), dict(seed=102, scale=1e-6, offset=0.1, zero_fraction=0.0)),
    ("c", (3, 5), dict(seed=103, scale=1e6, offset=-0.2, zero_fraction=0.3)),
    ("d", (8, 16), dict(seed=104, scale=1.0, offset=0.0, zero_fraction=0.6)),
    # row-sparse tables (embedding-like) for the sparse optimizers: whole rows absent per step
    ("e", (10, 4), dict(seed=105, scale=1.0, offset=0.1, zero_fraction=0.0, row_fraction=0.3)),
    ("f", (6, 3), dict(seed=106, scale=1e-6, offset=0.0, zero_fraction=0.0, row_fraction=0.5)),
)

# Optimizers defined for one parameter rank only (OptimizerSpec.param_ndim; Muon: 2) take the
# REPLAY_PARAMS of that rank: (base cases, short cases). Muon's short cases take "c" alone: its
# exact Newton-Schulz on the (8, 16) "d" costs ~30 ms per step at each working precision.
PARAM_NAMES = {2: ("cd", "c")}

# Settings a knob needs in order to act at all (keyed by (optimizer, knob)).
KNOB_CONTEXT: dict[tuple[str, str], dict] = {
    ("sgd", "nesterov"): {"momentum": 0.9},
    ("sgd", "lr_placement"): {"momentum": 0.9, "_schedule": True},
    ("sgd", "dampen_first_step"): {"momentum": 0.9, "dampening": 0.5},
    ("rmsprop", "nesterov"): {"momentum": 0.9},
    ("rmsprop", "lr_placement"): {"momentum": 0.9, "_schedule": True},
    ("adam", "amsgrad_max_over"): {"amsgrad": True},
    ("adamw", "amsgrad_max_over"): {"amsgrad": True},
    # optax's initial accumulator 0.1 hides eps = 1e-7 (a 3e-7 relative effect, under the
    # float32 budget); from 0 the O(1e-6) gradients of "b" make the placement dominate
    ("adagrad", "eps_placement"): {"initial_accumulator_value": 0.0},
    ("adam", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("nadam", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("radam", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("amsgrad", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("adamw", "decay_scaling"): {"schedule_multiplier": 0.5},
    # without momentum, SGD's decoupled decay p - lr*wd*p - lr*g equals coupled L2
    ("sgd", "weight_decay_mode"): {"weight_decay": 1e-2, "momentum": 0.9},
    ("adagrad", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("rmsprop", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("adamax", "weight_decay_mode"): {"weight_decay": 1e-2},
    # float32 factors matter where 1 - beta^t is ill-conditioned (beta near 1); at Adamax's
    # beta1 = 0.9 and RMSprop's alpha = 0.9 / 0.99 the effect is below a rounding budget
    ("rmsprop", "factor_precision"): {"bias_correction": True, "alpha": 0.999},
    ("adamax", "factor_precision"): {"beta1": 0.999},
    # issue 11
    ("adopt", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("adabelief", "weight_decay_mode"): {"weight_decay": 1e-2},
    ("adabelief", "decay_scaling"): {"weight_decay": 1e-2, "weight_decay_mode": "decoupled"},
    # adabelief-pytorch puts eps outside sqrt(s_hat) when it does not rectify: the rectify=False
    # case of the upstream profile is then the package's rectify=False
    ("adabelief", "rectify"): {"eps_placement": "outside"},
    ("adabelief", "degenerated_to_sgd"): {"rectify": True, "eps_placement": "hat"},
    # at eps = 1e-16 the placement moves a float32 step by ~1e-9 relative, below its budget;
    # at the authors' other recommended eps, 1e-8, the O(1e-6) gradients of "b" expose it
    # (eps_root stays 1e-16: 1e-8 added into s every step would swamp their (g - m)^2 ~ 1e-12)
    ("adabelief", "eps_placement"): {"eps": 1e-8},
    ("adadelta", "weight_decay_mode"): {"weight_decay": 1e-2},
    # per-tensor trust ratios: LAMB's decay placement needs a decay; LARS's lr placement a
    # changing lr, its denominator a decay (without one ||g'|| = ||g|| + 0)
    ("lamb", "decay_placement"): {"weight_decay": 1e-2},
    ("lars", "lr_placement"): {"_schedule": True},
    ("lars", "trust_denominator"): {"weight_decay": 1e-2},
}
# Adafactor (per-tensor): the decay knobs need a decay; eps1's placement acts on the O(1e-6)
# gradients of "b" with eps1 = 1e-3 (at 1e-30 'add' and torch's clamps differ only where G^2 is
# below ~1e-30 or the machine epsilon, which no catalogue gradient reaches); rho_t = min(lr,
# 1/sqrt(t)) differs from lr only once 1/sqrt(t) < lr: lr 0.5 from step 5 on
KNOB_CONTEXT.update({("adafactor", "weight_decay_mode"): {"weight_decay": 1e-2},
                     ("adafactor", "param_scale_from"): {"weight_decay": 1e-2},
                     ("adafactor", "decay_scaling"): {"weight_decay": 1e-2},
                     ("adafactor", "eps1_mode"): {"eps1": 1e-3},
                     ("adafactor", "relative_step"): {"lr": 0.5},
                     # optax factors nothing below 128: 'factored' acts from a lower threshold
                     ("adafactor", "factored"): {"min_dim_size_to_factor": 0}})
# Prodigy (coupling "tree": every case is one model of all its parameters, a-d or a-c): the
# decay's placement needs a decay
KNOB_CONTEXT[("prodigy", "weight_decay_mode")] = {"weight_decay": 1e-2}
KNOB_CONTEXT[("dadapt_adamw", "weight_decay_mode")] = {"weight_decay": 1e-2}
# Adan: (p - lr u)/(1 + lr wd) and p (1 - lr wd) - lr u differ by about lr^2 wd |u| per step;
# at wd = 1e-2 (lr 1e-3) that is below a float32 rounding of p, at 0.1 it is not
KNOB_CONTEXT[("adan", "weight_decay_mode")] = {"weight_decay": 0.1}
# fl32(0.98) and fl32(0.99) move 1 - beta^t by < 1e-6 relative, inside the float32 budget (as
# at Adamax's 0.9); at beta1 = 0.999 float32 factors are 1.3e-5 off (finding F1)
KNOB_CONTEXT[("adan", "factor_precision")] = {"beta1": 0.999}
# schedule-free: the warm-up knobs and the averaging act only with a warm-up (W = 5: steps 1-5
# of every case are in it), Keras' decay form only with weight decay
for _sf in ("schedule_free_adamw", "schedule_free_sgd"):
    KNOB_CONTEXT.update({(_sf, "warmup_lag"): {"warmup_steps": 5.0},
                         (_sf, "warmup_precision"): {"warmup_steps": 5.0},
                         (_sf, "weight_decay_form"): {"weight_decay": 1e-2},
                         # with a constant lr every weight is lr^P: c_t = 1/t either way
                         (_sf, "averaging"): {"warmup_steps": 5.0}})

# Knobs that act only on float32 parameters: for float64 ones both values compute the same
# numbers ('param' precision is float64), so their knob cases exist for float32 only.
FLOAT32_ONLY_KNOBS = frozenset({"factor_precision", "ema_weight_precision"})
# Knobs that act on float64 parameters only: schedule-free's warmup_precision rounds the warmed-up
# lr (or its factor) to float32, which in a float32 case is within a float32 rounding of the
# other values (below the budget), so their knob cases exist for float64 only.
FLOAT64_ONLY_KNOBS = frozenset({"warmup_precision"})
# Adafactor's mean_precision='float32' computes the means of float64 parameters in float32; a
# float32 parameter's means are float32 under either value
FLOAT64_ONLY_KNOBS |= {"mean_precision"}

# Knobs that cannot change an exact trajectory, with the proof's summary (docs/conformance.md,
# "Coverage"); the catalogue has no case for them, since such a case would equal its base.
UNOBSERVABLE: dict[tuple[str, str], str] = {
    ("radam", "threshold_inclusive"):
        "rho_1 = 1 < 4 <= threshold, and for t >= 2 rho_t is not a dyadic rational, so it never "
        "equals a float threshold: >= and > select the same steps",
    ("schedule_free_sgd", "factor_precision"):
        "the goldens hold schedule-free's scalars (warm-up, weights, their sum, c_t) exactly for "
        "both values (their float32 rounding is charged by the error model), and SGD has no "
        "1 - beta^t: both values give the same golden",
    ("adafactor", "factor_axes"):
        "on the catalogue's matrices, (3, 5) and (8, 16), the last axis is the largest, so "
        "'last_two' and 'two_largest' factor the same two axes (a0 = 1, a1 = 0); "
        "tests/test_adafactor.py checks the rule on an (8, 2, 3) tensor against optax",
}
# Knobs that change the exact trajectory by no more than the budget's own allowance for rounding
# the hyperparameters to the case dtype, with the reason: their cases are kept (each
# implementation still runs under its setting) but no golden can tell the two values apart.
WITHIN_BUDGET: dict[tuple[str, str], str] = {
    ("lion", "ema_weight_precision"):
        "Lion's step is a sign, so the EMA weights act on the momentum only, as 1 - fl32(beta) "
        "against fl32(1 - beta): exactly the change the budget's float32 hyperparameter shift "
        "makes (error_model._shifted rounds beta2 and forms 1 - beta2 from it); measured 9.5e-7 "
        "relative in the momentum at beta2 = 0.99, 1.3e-5 at 0.999, inside the budget both times",
    ("adopt", "ema_weight_precision"):
        "1 - fl32(beta) is the EMA weight of beta rounded to float32, and moves a float32 run "
        "(1.9e-5 of the displacement at the defaults, 7e-5 at beta1 = 0.999) by what the budget's "
        "hyperparameter-rounding shift allows: optax (1 - fl32(beta)) passes every "
        "upstream-profile (1 - beta) float32 golden; the knob makes the reference bit-identical "
        "to optax",
    ("adafactor", "beta2_precision"):
        "a float32 beta2_hat = 1 - t^-c (AF2: 1.1e-8 to 2.4e-7 from the float64 one) is inside "
        "the allowance for the float32 power every implementation may use (error_model "
        "_pow_error: 1.5 ULP + 4 |c ln t| u32, 17 u32 at t = 200), and in float32 cases 'param' "
        "and 'float32' are the same numbers; each implementation still runs under its own value",
    ("adafactor", "mean_precision"):
        "'float32' goldens hold Keras' float32 means (AF6) and allow any float32 summation order "
        "(error_model: (N + ...)/3 u32^2 per mean), which contains the float64 mean; the other "
        "way round a float32 mean fails a float64 golden (tests/test_conformance_mutants.py)",
}

# Prodigy: float32 scalars (optax) against Python floats (upstream) move a float32 run by the
# float32 bias correction when it is on (5.7e-6 of the displacement at step 1: the optax-profile
# knob case sees it) and, without it, by d's float32 rounding only: 0 while d = d0, 1.6e-7 of
# the displacement at step 50, 7.4e-7 at step 200 (finding R2), below the float32 budget of the
# upstream-profile knob case, whose d is uncertain to ~1e-3 once it grows (finding R6)
WITHIN_BUDGET[("prodigy", "factor_precision")] = (
    "without bias correction (the upstream profile) float32 scalars change a float32 run by d's "
    "float32 rounding only (1.6e-7 of the displacement at step 50), inside the budget; with it "
    "(optax) by the float32 bias correction, 5.7e-6 (docs/conformance.md R2)")
# D-Adapt AdamW: as Prodigy's, float32 scalars without bias correction (upstream) change a float32
# run by d's float32 rounding only (docs/conformance.md D3)
WITHIN_BUDGET[("dadapt_adamw", "factor_precision")] = (
    "without bias correction (the upstream profile) float32 scalars change a float32 run by d's "
    "float32 rounding only, inside the budget; with it (optax) the float32 bias correction is "
    "seen (docs/conformance.md D3)")
# Muon: the momentum form only scales D uniformly (a sum is 1/(1 - mu) times the EMA; the bias
# correction 1/(1 - mu^t)) unless a Nesterov form mixes it with g, and Newton-Schulz removes the
# scale (up to eps); optax's NAdam-style form reads m without m_hat. The layout acts only through
# the fan ratio (Keras' profile scales by rms).
KNOB_CONTEXT.update({("muon", "momentum_form"): {"nesterov": "lerp"},
                     ("muon", "layout"): {"shape_scale": "fan_ratio"}})
WITHIN_BUDGET.update({
    ("muon", "eps_form"): "X/(||X|| + eps) and X/max(||X||, eps) differ only where ||X|| is near "
    "eps (finding M7): with ||D|| ~ 1e6 (parameter c) the scale of X_0 moves by eps/||D|| <= "
    "1e-13 relative, inside the budget",
    ("muon", "factor_precision"): "the bias corrections (optax's profile) weigh the two terms of "
    "D: their float32 rounding turns D by ~u32, which the float32 budget of the iteration "
    "allows; Keras' profile has no bias correction",
})

# Muon's precision knobs say where an implementation rounds (the iteration's dtype, where
# bfloat16 rounds, where the scale multiplies, the norm's dtype), not what it computes: the
# exact trajectory is the same for every value, and the golden's budget charges the roundings of
# the value the case sets. A knob case is observable only where it narrows the profile's
# precision (the reference at the profile's bfloat16 or float32 fails the narrower budget);
# where it widens it, both values pass. Their cases are kept: each implementation runs the
# precision it has, under that precision's budget.
WITHIN_BUDGET.update({("muon", k): (
    "a precision knob: the exact trajectory is the same for every value (docs/conformance.md, "
    "Muon); the golden charges the case's roundings, so the profile's value, when wider, "
    "passes too") for k in ("ns_dtype", "ns_rounding", "scale_dtype", "norm_precision")})

# Algorithm variants that are not convention knobs but change the code path.
EXTRA: dict[str, tuple[tuple[str, dict], ...]] = {
    "sgd": (("momentum", {"momentum": 0.9}),
            ("dampening", {"momentum": 0.9, "dampening": 0.5})),
    "rmsprop": (("momentum", {"momentum": 0.9}), ("centered+momentum",
                                                  {"centered": True, "momentum": 0.9})),
    "adagrad": (("lr_decay", {"lr_decay": 1e-2}),),
    "nadam": (("momentum_decay=1e9", {"momentum_decay": 1e9}),),
    # each profile's own warm-up (optax: lagged, float32), and upstream's polynomial weights
    "schedule_free_adamw": (("warmup", {"warmup_steps": 5.0}), ("r=1", {"r": 1.0})),
    "schedule_free_sgd": (("warmup", {"warmup_steps": 5.0}), ("r=1", {"r": 1.0})),
    "adafactor": (("momentum", {"beta1": 0.9}),),  # optax's momentum (torch and Keras: none)
}

WEIGHT_DECAY = 1e-2

# Cases that pin a documented finding down (docs/conformance.md, "Findings"): under one profile,
# a variant whose expected values are the reference's with the given settings; the profile's
# adapter runs the implementation's own default that the finding is about (the tag says which).
# optax.adadelta() with its default learning_rate=None applies +Delta: it ascends, which is the
# reference's maximize=True with lr=1 (optax/_src/transform.py scale_by_learning_rate).
FINDING_CASES: dict[str, tuple[tuple[str, str, dict, str], ...]] = {
    "adadelta": (("optax", "FINDING:optax-default-lr=None-ascends", {"lr": 1.0,
                  "maximize": True}, "optax_default_lr_none"),),
    # AF5: keras.optimizers.Adafactor(relative_step=False) still applies rho_t = min(lr,
    # 1/sqrt(t)): the reference's relative_step=True (the keras profile's) at lr 0.5, where the
    # two differ from step 5 on; the adapter passes relative_step=False
    "adafactor": (("keras", "FINDING:keras-relative_step=False-ignored", {"lr": 0.5},
                   "keras_relative_step_false"),),
}

# Lion's step is lr*sign(c): where c is within rounding of 0 the golden is ill-posed (another
# order of the operations flips the step by 2 lr). A parameter whose gradient stream comes near
# that is re-seeded: seed + LION_RESEED*k with the smallest k >= 0 that passes the screen
# (adaptive_ref.conformance.fidelity.lion_well_posed; the exact oracle checks it again).
LION_RESEED = 1000


def _lion_well_posed(params, settings: dict, steps: int, dtype: str) -> tuple:
    from .fidelity import lion_well_posed

    out = []
    for p in params:
        hp = {**settings, **p.hparams}
        grad = p.grad
        k = 0
        while not lion_well_posed(grad, p.shape, steps, dtype, hp):
            k += 1
            if k > 10000:
                msg = f"lion: no well-posed gradient stream for {p.name} within 10000 seeds"
                raise AssertionError(msg)
            grad = {**p.grad, "seed": p.grad["seed"] + LION_RESEED * k}
        out.append(ParamSpec(p.name, p.shape, p.init, grad, p.hparams))
    return tuple(out)


# optimizer -> (params, settings, steps, dtype) -> params whose gradients make the case
# well-posed
WELL_POSED = {"lion": _lion_well_posed}


# The lr of every case of these optimizers, where the profiles' default does not serve.
# schedule_free_sgd: upstream's and optax's lr = 1 keeps z (a sum of float64 gradients) short
# dyadic numbers, so the uniform average x = (z_1 + ... + z_t)/t is now and then exactly a
# float64 tie, which no working precision certifies (exact.certified); 0.1 (53 significant
# bits) is not.
CASE_LR = {"schedule_free_sgd": 0.1}
# prodigy: a replayed gradient never changes sign as p moves, so <g, p0 - p> grows without bound
# and d with it (at the authors' lr = 1: d = 27 at step 50, 6e20 at step 200, each step's
# rounding amplified ~1e6 times by step 50); at 0.1 d grows from d0 = 1e-6 to ~10 in 200 steps,
# so every case sees d's estimate act while the trajectory stays well-posed
CASE_LR["prodigy"] = 0.1
CASE_LR["dadapt_adamw"] = 0.1  # D-Adapt AdamW: the same growth of d (its r sums <g, s/sqrt(v)>)


def case_lr(spec) -> float:
    """The lr of every case of ``spec``: the torch profile's default (optax has none), so the
    torch- and optax-profile cases are comparable."""
    if spec.name in CASE_LR:
        return CASE_LR[spec.name]
    torch = spec.profiles.get("torch")
    if torch is not None and isinstance(torch.settings.get("lr"), float):
        return torch.settings["lr"]
    return float(spec.defaults()["lr"])


def _round(x: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(dtype).astype(np.float64)


# Starting values in units of the case's lr: "a" starts at 0 and "b", "d", "e", "f" at O(lr), so
# their values stay of the size of the displacement and an error in the update is not hidden
# below the rounding of a large parameter; "c" starts at O(1) (the usual situation).
INIT_SCALE = {"a": 0.0, "b": "lr", "c": 1.0, "d": "lr", "e": "lr", "f": "lr"}


# The size of one step in units of lr, where it is not ~1: Prodigy's step is d*lr with d from
# d0 = 1e-6 (so its "b" and "d" start at O(step), as every optimizer's do; its dynamics read
# p0 - p only, so the starting values change nothing but the decay)
STEP_UNIT = {"prodigy": 1e-6}
STEP_UNIT["dadapt_adamw"] = 1e-6  # D-Adapt AdamW: d*lr from d0 = 1e-6, as Prodigy


def _replay_params(dtype: str, names: str, lr: float, unit: float = 1.0
                   ) -> tuple[ParamSpec, ...]:
    out = []
    for i, (name, shape, grad) in enumerate(REPLAY_PARAMS):
        if name not in names:
            continue
        n = int(np.prod(shape)) if shape else 1
        grad = {k: v for k, v in grad.items() if v is not None}
        scale = INIT_SCALE[name]
        scale = 10.0 * lr * unit if scale == "lr" else scale
        init = (2.0 * uniform(900 + i, np.arange(n, dtype=np.uint64)) - 1.0) * scale
        out.append(ParamSpec(name, shape, _round(init, dtype),
                             {"generator": "splitmix64-v1", **grad}))
    return tuple(out)


def _schedule(lr: float, steps: int, warmup: int = 5) -> tuple[float, ...]:
    """Linear warm-up from lr/5 to lr over ``warmup`` steps, then cosine decay to lr/10."""
    out = []
    for t in range(1, steps + 1):
        if t <= warmup:
            out.append(lr * (0.2 + 0.8 * (t - 1) / (warmup - 1)))
        else:
            frac = (t - warmup) / (steps - warmup)
            out.append(lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac))))
    return tuple(out)


def _knob_values(h, spec) -> list:
    if h.kind == "bool":
        return [False, True]
    if h.kind == "choice":
        return list(h.choices)
    vals = {float(h.default)}
    for prof in spec.profiles.values():
        v = prof.settings.get(h.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.add(float(v))
    return sorted(vals)


def _make(spec, profile: str, dtype: str, variant: str, overrides: dict, *, steps: int,
          checkpoints, names: str, tags: tuple, schedule: bool = False,
          param_hparams: dict | None = None) -> GoldenCase:
    lr = case_lr(spec)
    over = {k: v for k, v in overrides.items() if not k.startswith("_")}
    settings = spec.settings(profile, **{"lr": lr, **over})
    params = _replay_params(dtype, names, lr, STEP_UNIT.get(spec.name, 1.0))
    if param_hparams:
        params = tuple(ParamSpec(p.name, p.shape, p.init, p.grad, param_hparams.get(p.name, {}))
                       for p in params)
    sched = _schedule(lr, steps) if schedule or overrides.get("_schedule") else None
    if spec.name in WELL_POSED:
        params = WELL_POSED[spec.name](params, settings, steps, dtype)
    if spec.name in STATE_SHAPES:  # state fields of other shapes (Adafactor's factors)
        params = tuple(dataclasses.replace(p, state_shapes=STATE_SHAPES[spec.name](
            {**settings, **p.hparams}, p.shape)) for p in params)
    return GoldenCase(
        id=f"{spec.name}[{profile},{dtype},{variant}]", optimizer=spec.name, profile=profile,
        dtype=dtype, kind="replay", hparams=settings, overrides=over, steps=steps,
        checkpoints=tuple(checkpoints), params=params, lr_schedule=sched, tags=tags)


def _closed_loop(spec, profile: str, objective: str) -> GoldenCase:
    # A small lr keeps every closed loop contractive (SGD: lr * L < 2 with L = 1e4), so the
    # golden is not chaotic: the fidelity check would expose a chaotic one.
    lr = 1e-4 if spec.name in ("sgd", "schedule_free_sgd") else min(case_lr(spec), 1e-3)
    obj, start = objectives.make_objective(objective)
    params = tuple(ParamSpec(k, v.shape, v.astype(np.float64)) for k, v in start.items())
    return GoldenCase(
        id=f"{spec.name}[{profile},float64,closed:{objective}]", optimizer=spec.name,
        profile=profile, dtype="float64", kind="closed_loop",
        hparams=spec.settings(profile, lr=lr), overrides={"lr": lr}, steps=100,
        checkpoints=LOOP_CHECKPOINTS, params=params, objective=obj,
        tags=("closed_loop", objective))


def is_sparse(spec) -> bool:
    """Optimizers of :mod:`adaptive_ref.sparse` take row-sparse gradients (lazy updates)."""
    return spec.step.__module__.startswith("adaptive_ref.sparse")


def in_catalogue(spec) -> tuple[bool, str]:
    """Whether the catalogue covers ``spec``, and why not."""
    if not spec.profiles:
        return False, "no framework profile (nothing to conform to; checked by its own tests)"
    if not spec.elementwise and not is_sparse(spec) and spec.coupling not in ("tensor", "tree"):
        return False, "not elementwise"
    return True, ""


def _sparse_cases_for(spec) -> Iterator[GoldenCase]:
    for profile in spec.profiles:
        base = spec.profiles[profile].settings
        for dtype in ("float64", "float32"):
            yield _make(spec, profile, dtype, "base", {}, tags=("base", "sparse"), steps=200,
                        checkpoints=LONG_CHECKPOINTS, names="ef")
            short = dict(steps=50, checkpoints=SHORT_CHECKPOINTS, names="ef")
            for h in spec.knobs:
                for value in _knob_values(h, spec):
                    if base.get(h.name, h.default) == value:
                        continue
                    yield _make(spec, profile, dtype, f"{h.name}={value}", {h.name: value},
                                tags=("knob", "sparse", h.name), **short)
            yield _make(spec, profile, dtype, "schedule", {}, schedule=True,
                        tags=("schedule", "sparse"), **short)


def _cases_for(spec) -> Iterator[GoldenCase]:
    if is_sparse(spec):
        yield from _sparse_cases_for(spec)
        return
    if spec.name in OWN_CASES:  # a catalogue of its own (SOAP: well-posed problems only)
        yield from OWN_CASES[spec.name](spec)
        return
    names = set(spec.hparam_names)
    long_names, short_names = PARAM_NAMES.get(spec.param_ndim, ("abcd", "abc"))
    for profile in spec.profiles:
        base = spec.profiles[profile].settings
        for dtype in ("float64", "float32"):
            kw = dict(steps=200, checkpoints=LONG_CHECKPOINTS, names=long_names)
            yield _make(spec, profile, dtype, "base", {}, tags=("base",), **kw)
            short = dict(steps=50, checkpoints=SHORT_CHECKPOINTS, names=short_names)
            for h in spec.knobs:
                if h.name in spec.fixed:
                    continue
                if h.name in FLOAT32_ONLY_KNOBS and dtype == "float64":
                    continue
                if h.name in FLOAT64_ONLY_KNOBS and dtype == "float32":
                    continue
                for value in _knob_values(h, spec):
                    if base.get(h.name, h.default) == value:
                        continue
                    if (spec.name, h.name) in UNOBSERVABLE:
                        continue
                    ctx = KNOB_CONTEXT.get((spec.name, h.name), {})
                    over = {**ctx, h.name: value}
                    yield _make(spec, profile, dtype, f"{h.name}={value}", over,
                                tags=("knob", h.name), **short)
            for label, over in EXTRA.get(spec.name, ()):
                yield _make(spec, profile, dtype, label, over, tags=("variant",), **short)
            for prof, label, over, tag in FINDING_CASES.get(spec.name, ()):
                if prof == profile:
                    yield _make(spec, profile, dtype, label, over, tags=("finding", tag),
                                **short)
            if "weight_decay" not in names:
                continue
            wd = 0.1 if spec.name == "adamw" else WEIGHT_DECAY
            yield _make(spec, profile, dtype, f"weight_decay={wd}", {"weight_decay": wd},
                        tags=("weight_decay",), **short)
            sched_over = {"momentum": 0.9} if spec.name in ("sgd", "rmsprop") else {}
            yield _make(spec, profile, dtype, "schedule", sched_over, schedule=True,
                        tags=("schedule",), **short)
            lr = case_lr(spec)
            if spec.coupling == "tree":  # one setting for the whole model: no groups
                continue
            yield _make(spec, profile, dtype, "groups", {"weight_decay": WEIGHT_DECAY},
                        param_hparams={"b": {"weight_decay": 0.0}, "c": {"lr": lr * 0.1}},
                        tags=("groups",), **short)
        if spec.coupling == "tree":  # error model: replay cases only so far (closed loops'
            continue  # gradient-evaluation term is per parameter; not yet for a whole model)
        if spec.param_ndim is not None:  # the objectives' parameters are vectors
            continue
        for objective in objectives.OBJECTIVES:
            yield _closed_loop(spec, profile, objective)


def catalogue(optimizers=None) -> list[GoldenCase]:
    """Every case (without expected values) of ``optimizers`` (default: the whole registry)."""
    from adaptive_ref.registry import REGISTRY

    names = list(REGISTRY) if optimizers is None else list(optimizers)
    out = []
    for name in names:
        if in_catalogue(REGISTRY[name])[0]:
            out.extend(_cases_for(REGISTRY[name]))
    ids = [c.id for c in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        msg = f"duplicate case ids: {sorted(dup)}"
        raise AssertionError(msg)
    return out


# ---- SOAP (per-tensor, eigenbases): goldens only where the problem is well-posed -----------
# Its trajectory depends on the basis inside a repeated eigenvalue (finding S2), and the
# catalogue's (3, 5) and (8, 16) matrices have rank-deficient statistics on their long side
# (a (3, 5) gradient's 5 x 5 statistic has rank <= 3 at the first eigh). So SOAP has a catalogue
# of its own: max_precond_dim = 4 everywhere (the long sides 5, 7, 16 get no statistic), on
#   "s" (3, 3): both sides preconditioned, full rank; "c": the catalogue's (3, 5) (O(1e6)
#   gradients, 30 % zeros): only its 3-side; "t" (2, 2, 4): three statistics (merge_dims: one
#   4 x 4 and the 4-side); "b": the catalogue's (7,) (no statistic: Adam's step);
# float64 only, profile "reference" (eigh in float64: upstream's float32 cast rounds the basis
# to float32, which no float64 golden can hold: finding S1). Each parameter's gradient stream is
# screened in float64 (fidelity.soap_well_posed: separated eigenvalues at the eigh, separated
# estimates and a full-rank R at every refresh, relative margin SOAP_GAP) and re-seeded
# (seed + SOAP_RESEED*k) until it passes; the exact oracle records the same margins.
SOAP_PARAMS = (
    ("s", (3, 3), dict(seed=111, scale=1.0, offset=0.1, zero_fraction=0.0), 1.0),
    ("c", (3, 5), dict(seed=103, scale=1e6, offset=-0.2, zero_fraction=0.3), 1.0),
    ("t", (2, 2, 4), dict(seed=112, scale=1e-3, offset=0.0, zero_fraction=0.0), "lr"),
    ("b", (7,), dict(seed=102, scale=1e-6, offset=0.1, zero_fraction=0.0), "lr"),
)
SOAP_SETTINGS = {"max_precond_dim": 4, "on_degenerate": "raise"}
SOAP_VARIANTS = (("precondition_frequency=1", {"precondition_frequency": 1}),
                 ("correct_bias=False", {"correct_bias": False}),
                 ("normalize_grads=True", {"normalize_grads": True}),
                 ("merge_dims=True", {"merge_dims": True}),
                 ("shampoo_beta=0.9", {"shampoo_beta": 0.9}))
SOAP_GAP = 1e-3
SOAP_RESEED = 1000


def _soap_params(settings: dict, steps: int, lr: float) -> tuple:
    import json

    from .fidelity import soap_state_shapes, soap_well_posed
    from .format import _replay_grad

    out = []
    for i, (name, shape, grad, scale) in enumerate(SOAP_PARAMS):
        n = int(np.prod(shape))
        scale = 10.0 * lr if scale == "lr" else scale
        init = (2.0 * uniform(950 + i, np.arange(n, dtype=np.uint64)) - 1.0) * scale
        g = {"generator": "splitmix64-v1", **grad}
        for k in range(10001):
            if k == 10000:
                msg = f"soap: no well-posed gradient stream for {name} within 10000 seeds"
                raise AssertionError(msg)
            g = {**g, "seed": grad["seed"] + SOAP_RESEED * k}
            js = json.dumps(g, sort_keys=True)
            if soap_well_posed([_replay_grad(js, shape, t, "float64") for t in
                                range(1, steps + 1)], shape, settings, tol=SOAP_GAP):
                break
        out.append(ParamSpec(name, shape, _round(init, "float64"), g, {},
                             soap_state_shapes(settings, shape)))
    return tuple(out)


def _soap_cases(spec) -> Iterator[GoldenCase]:
    lr = case_lr(spec)
    for variant, over, steps, cps in (("base", {}, 200, LONG_CHECKPOINTS),
                                      *((v, o, 50, SHORT_CHECKPOINTS)
                                        for v, o in SOAP_VARIANTS)):
        over = {**SOAP_SETTINGS, **over}
        settings = spec.settings("reference", **{"lr": lr, **over})
        yield GoldenCase(
            id=f"soap[reference,float64,{variant}]", optimizer="soap", profile="reference",
            dtype="float64", kind="replay", hparams=settings, overrides=over, steps=steps,
            checkpoints=cps, params=_soap_params(settings, steps, lr), lr_schedule=None,
            tags=("base",) if variant == "base" else ("variant", variant.split("=")[0]))


OWN_CASES = {"soap": _soap_cases}
