"""Every optimizer x every knob value x every installed backend matches NumPy.

Cases come from the registry (``registry._SPECS``): the defaults; each value of every ``bool`` and
``choice`` hyperparameter (others at their defaults, plus the companions a value needs to have an
effect, e.g. ``momentum`` for ``nesterov``); a representative non-zero value of every real
hyperparameter that defaults to 0 or is a convention number (weight decay, momentum, dampening,
lr_decay, eps_root, ...); one case with every scale hyperparameter changed (lr, betas, eps,
alpha); and the ``torch`` and ``optax`` profiles. Each case runs a 10-step trajectory of random
gradients (rows of scale 1 and 1e-4, so eps placement matters) on a (2, 3) parameter, on the
backend and on NumPy, in float64 and in float32.

Besides the values, every result and every state array is checked for its namespace (the
backend's, through ``array_api_compat.array_namespace``), its dtype (the parameter's for the
parameter and the moments; a signed integer for ``count``; float64 for 0-d scalar state such as
NAdam's ``mu_product``) and its device (the parameter's). The inputs must be left unchanged.

Tolerances (metric: ``|x_b - x_np|_inf / |x_np - x_0|_inf`` for the parameter, and
``|s_b - s_np|_inf / |s_np|_inf`` for each state array):

* float64: ``+ - * /`` and ``sqrt`` are correctly rounded in IEEE 754 on every backend and the
  step functions fix the operation order, so those agree bit for bit. What may differ is
  ``pow`` in the float64 scalars (``beta**t``, NAdam's ``0.96**(t*psi)``): NumPy's SIMD pow, torch,
  XLA and libm are not all correctly rounded, so a scalar may be 1 ULP apart. A 1-ULP scalar moves
  each step by a few ULP of the result, so 10 steps stay below ``RTOL64 = 64 * 2**-52 = 1.4e-14``.
  RAdam's rectifier amplifies a 1-ULP change of ``beta2**t`` by ``K_t`` (up to 1e5 near the
  threshold, see ``test_frameworks.radam_tolerance``); its cases add that derived bound.
* float32: the scalars are computed in float64 on every backend (JAX runs with x64 here), then
  rounded once to float32, so both sides see the same float32 scalars except where a float64
  scalar sits next to a float32 rounding boundary. Under ``factor_precision="param"`` (the optax
  and keras profiles, and that knob's cases) the scalars are float32 on every backend and a
  float32 ``pow`` may differ by 1 ULP between libraries; these cases pass the same bound.
  Elementwise float32 arithmetic is correctly rounded.
  Bound: ``RTOL32 = 10 steps * 8 ULP(float32) ~ 1e-5`` (2**-23 = 1.2e-7 per ULP).
* Optimizers that are not elementwise (``spec.elementwise`` False: full-matrix Adagrad, Shampoo,
  ...) take matrix roots or solves. Those are backward stable, not correctly rounded: two LAPACKs
  agree to about ``cond * n * eps``, and during the first ``n`` steps the accumulated statistics
  have rank < n, so their condition number is about ``|G|^2 / eps_reg``. ``RTOL_MATRIX`` (1e-8
  in float64, 1e-3 in float32) states that allowance; it applies to those optimizers only.
"""

from __future__ import annotations

import functools

import array_api_compat as aac
import numpy as np
import pytest

from adaptive_ref import registry
from adaptive_ref._spec import OptimizerSpec
from adaptive_ref.optimizers.soap import SoapDegenerateSpectrumWarning

STEPS = 10
SHAPE = (2, 3)
RTOL64 = 64 * 2.0**-52
RTOL32 = STEPS * 8 * 2.0**-23
RTOL_MATRIX = {"float64": 1e-8, "float32": 1e-3}
# Settings that run part of a float64 step in float32 (Muon's Newton-Schulz or its norm): float32
# sums and matmuls in another order round differently, so those cases get the float32 allowance.
FLOAT32_INSIDE = {"muon": lambda s: "float32" in (s.get("ns_dtype"), s.get("norm_precision"))}
# Adafactor's Keras profile takes its means in float32 (mean_precision), summed in another order.
FLOAT32_INSIDE["adafactor"] = lambda s: s.get("mean_precision") == "float32"
# SOAP's upstream eigh/QR cast (eigh_dtype='float32'): float32 LAPACKs differ in their rounding.
FLOAT32_INSIDE["soap"] = lambda s: s.get("eigh_dtype") == "float32"
# Cases whose problem is ill-posed here and which the step reports (a warning, an error under
# filterwarnings=error): SOAP's merge_dims turns the (2, 3) parameter into one 6-vector, whose
# first statistic g g^T has rank 1, a five-fold zero eigenvalue; the basis inside it, and the
# trajectory, are each eigensolver's own choice (tests/test_soap.py checks the report).
ILL_POSED = (SoapDegenerateSpectrumWarning,)

# Values a knob needs beside itself to have any effect (only names the spec has are used).
COMPANIONS = {
    "nesterov": {"momentum": 0.9},
    "lr_placement": {"momentum": 0.9},
    "dampen_first_step": {"momentum": 0.9, "dampening": 0.3},
    "amsgrad_max_over": {"amsgrad": True},
    "weight_decay_mode": {"weight_decay": 0.1},
    "decay_scaling": {"schedule_multiplier": 0.5},
}

# A representative non-default value for real hyperparameters (with their own companions).
REPRESENTATIVE = {
    "weight_decay": ({"weight_decay": 0.1}),
    "momentum": ({"momentum": 0.9}),
    "dampening": ({"dampening": 0.3, "momentum": 0.9}),
    "lr_decay": ({"lr_decay": 0.05}),
    "initial_accumulator_value": ({"initial_accumulator_value": 0.1}),
    "eps_root": ({"eps_root": 1e-10}),
    "momentum_decay": ({"momentum_decay": 0.02}),
    "threshold": ({"threshold": 4.0}),
    "schedule_multiplier": ({"schedule_multiplier": 0.5, "decay_scaling": "schedule"}),
}

# Scale hyperparameters, all changed together in one case.
SCALES = {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "alpha": 0.9}


def _fit(spec: OptimizerSpec, overrides: dict) -> dict:
    return {k: v for k, v in overrides.items() if k in spec.hparam_names}


def knob_cases(spec: OptimizerSpec) -> list[tuple[str, dict, str | None]]:
    """``(case id, overrides, profile)`` for one optimizer."""
    cases = [("defaults", {}, None)]
    for h in spec.hparams:
        if h.name in spec.fixed:
            continue
        if h.kind in ("bool", "choice"):
            values = (False, True) if h.kind == "bool" else h.choices
            for v in values:
                extra = _fit(spec, COMPANIONS.get(h.name, {}))
                cases.append((f"{h.name}={v}", {**extra, h.name: v}, None))
        elif h.name in REPRESENTATIVE:
            ov = _fit(spec, REPRESENTATIVE[h.name])
            cases.append((f"{h.name}={ov[h.name]}", ov, None))
    scales = _fit(spec, SCALES)
    if scales:
        cases.append(("scales", scales, None))
    for profile in spec.profiles:
        cases.append((f"profile={profile}", {"lr": 0.01} if profile == "optax" else {}, profile))
    return cases


CASES = [
    pytest.param(spec.name, overrides, profile, id=f"{spec.name}-{cid}")
    for spec in registry._SPECS
    for cid, overrides, profile in knob_cases(spec)
]


def _problem(dtype: str):
    rng = np.random.default_rng(1)
    scale = np.array([[1.0], [1e-4]])
    p0 = rng.standard_normal(SHAPE).astype(dtype)
    grads = [(rng.normal(0.1, 1.0, SHAPE) * scale).astype(dtype) for _ in range(STEPS)]
    return p0, grads


def _settings(name: str, overrides: dict, profile: str | None) -> dict:
    return registry.get(name).settings(profile, **overrides)


def _trajectory(spec: OptimizerSpec, settings: dict, p, grads):
    s = spec.init(p, **spec.init_kwargs(settings))
    for g in grads:
        p, s = spec.step(p, g, s, **settings)
    return p, s


@functools.cache
def _numpy_result(name: str, overrides_key: tuple, profile: str | None, dtype: str):
    spec = registry.get(name)
    settings = _settings(name, dict(overrides_key), profile)
    p0, grads = _problem(dtype)
    p, s = _trajectory(spec, settings, p0, grads)
    return p0, p, s


def _rel(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    den = float(np.max(np.abs(scale)))
    num = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return num / den if den > 0 else num


def _radam_extra(settings: dict) -> float:
    beta2 = settings["beta2"]
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    worst = 0.0
    for t in range(1, STEPS + 1):
        x = beta2**t
        bc2 = 1.0 - x
        rho = rho_inf - 2.0 * t * x / bc2
        if rho > max(settings["threshold"], 4.0):
            worst = max(worst, (t / bc2**2) * (1 / (rho - 4) + 1 / (rho - 2) - 1 / rho))
    return worst * 2.0**-52


def _adafactor_extra(settings: dict) -> float:
    """Adafactor with ``beta2_precision="float32"`` (optax): beta2_hat = 1 - t**-c
    in float32, whose ``pow`` is correctly rounded in no library, so two backends may differ
    by 1 ULP (<= 2**-24 for beta2_hat < 1) at any step t >= 2 (t = 1 gives 0 exactly). That
    moves v_t = b v + (1 - b) q relatively by at most 2**-24 / min(b, 1 - b); the moments
    average, so over the steps the changes add. (``mean_precision="float32"``, Keras: in
    ``FLOAT32_INSIDE``.)"""
    if settings.get("beta2_precision") != "float32":
        return 0.0
    c = settings["decay_rate"]
    return sum(2.0**-24 / min(1 - t**-c, t**-c) for t in range(2, STEPS + 1))


def _to_numpy(backend, p, leaves: dict) -> dict:
    """The parameter and every state array as NumPy; one ``dask.compute`` for a lazy backend."""
    arrays = {"param": p, **{f: v for f, v in leaves.items() if v is not None}}
    if backend.value == "dask":
        import dask

        keys = list(arrays)
        values = dask.compute(*arrays.values(), scheduler="synchronous")
        return {k: np.asarray(v) for k, v in zip(keys, values, strict=True)}
    return {k: backend.to_numpy(v) for k, v in arrays.items()}


def _check_array(backend, x, *, xp, dtype, device, what: str):
    assert aac.array_namespace(x) is xp, f"{what}: namespace {aac.array_namespace(x)}"
    assert x.dtype == dtype, f"{what}: dtype {x.dtype}, expected {dtype}"
    assert aac.device(x) == device, f"{what}: device {aac.device(x)}, expected {device}"


def _leaves(state) -> dict:
    """Every entry of a state record by name (``stats[0]`` for tuples); absent buffers are None."""
    out = {}

    def walk(name, value):
        if isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                walk(f"{name}[{i}]", v)
        else:
            out[name] = value

    for field, value in zip(state._fields, state, strict=True):
        walk(field, value)
    return out


# float32 on the slow-dispatch backends (eager JAX, graph-building Dask) only for these cases;
# float64 runs every case everywhere (Dask: in tests/test_dask.py, which also proves laziness
# and demands bit-identical results), and float32 every case on the other backends.
SLOW_BACKENDS = ("jax", "dask")
FLOAT32_SLOW_CASES = ("defaults", "profile=torch", "profile=optax")


@pytest.mark.parametrize(("name", "overrides", "profile"), CASES)
def test_backend_matches_numpy(backend, request, name, overrides, profile):
    spec = registry.get(name)
    settings = _settings(name, overrides, profile)
    xp = backend.xp
    case_id = request.node.callspec.id.split("-", 2)[-1]
    dtypes = [("float64", RTOL64), ("float32", RTOL32)]
    if backend.value in SLOW_BACKENDS and case_id not in FLOAT32_SLOW_CASES:
        if backend.value == "dask":
            pytest.skip("Dask runs every knob value in tests/test_dask.py (lazy, and "
                        "bit-identical to NumPy); here only the defaults and profiles")
        dtypes = dtypes[:1]
    for dtype, rtol in dtypes:
        if name == "radam" and dtype == "float64":
            rtol = rtol + _radam_extra(settings)
        if not spec.elementwise:
            inside = FLOAT32_INSIDE.get(name, lambda s: False)(settings)
            rtol = RTOL_MATRIX["float32" if inside else dtype]
        if name == "adafactor":
            rtol = rtol + _adafactor_extra(settings)
        try:
            p0_np, p_np, s_np = _numpy_result(name, tuple(sorted(overrides.items())), profile,
                                              dtype)
        except TypeError as err:  # e.g. Muon's ns_dtype='bfloat16': NumPy has no bfloat16
            if "has no bfloat16" in str(err):
                pytest.skip(f"no NumPy result to compare with ({err}); bfloat16 is checked "
                            f"against the frameworks in tests/test_muon.py")
            raise
        except ILL_POSED as err:
            pytest.skip(f"ill-posed on this problem, and reported by the step: {err}")
        _, grads_np = _problem(dtype)
        p0 = backend.asarray(p0_np)
        grads = [backend.asarray(g) for g in grads_np]
        device = aac.device(p0)
        try:
            p, s = _trajectory(spec, settings, p0, grads)
        except TypeError as err:
            if "has no linalg" in str(err):
                pytest.skip(f"{backend.value}: {err}")
            raise

        where = f"{backend.value} {dtype}"
        assert isinstance(s, spec.state_type)
        leaves, ref_leaves = _leaves(s), _leaves(s_np)
        assert leaves.keys() == ref_leaves.keys()
        computed = _to_numpy(backend, p, leaves)
        _check_array(backend, p, xp=xp, dtype=p0.dtype, device=device, what=f"{where} param")
        for field, value in leaves.items():
            ref = ref_leaves[field]
            if ref is None:
                assert value is None, f"{where} state.{field} should be None"
                continue
            if field == "count":
                assert tuple(value.shape) == ()
                assert xp.isdtype(value.dtype, "signed integer"), f"{where} count {value.dtype}"
                assert aac.array_namespace(value) is xp
                assert aac.device(value) == device
                assert int(computed[field]) == int(ref) == STEPS
                continue
            if value.ndim > 0:  # moments (and matrix statistics) are in the param's dtype
                _check_array(backend, value, xp=xp, dtype=p0.dtype, device=device,
                             what=f"{where} state.{field}")
            else:  # 0-d scalar state: the scalar dtype (float64 here) or the param's dtype
                assert value.dtype in (xp.float64, p0.dtype), f"{where} state.{field}"
                _check_array(backend, value, xp=xp, dtype=value.dtype, device=device,
                             what=f"{where} state.{field}")
            err = _rel(computed[field], ref, ref)
            assert err <= rtol, (where, field, err)

        # Parameter: relative to the distance travelled, plus the final rounding of p - u
        # (STEPS * 2 ULP of |p|), which is not small against a short distance in float32.
        diff = float(np.max(np.abs(computed["param"].astype(np.float64) - p_np)))
        travelled = float(np.max(np.abs(p_np.astype(np.float64) - p0_np)))
        ulp = float(np.spacing(np.max(np.abs(p_np)).astype(dtype)))
        assert diff <= rtol * travelled + STEPS * 2 * ulp, (where, diff, travelled)
        # The inputs are untouched (a step function is pure).
        assert np.array_equal(backend.to_numpy(p0), p0_np)
        for g, gn in zip(grads, grads_np, strict=True):
            assert np.array_equal(backend.to_numpy(g), gn)


def test_case_matrix_covers_every_knob_value():
    """The matrix above names every value of every bool/choice knob of every optimizer."""
    ids = {p.id for p in CASES}
    for spec in registry._SPECS:
        for h in spec.hparams:
            if h.name in spec.fixed or h.kind not in ("bool", "choice"):
                continue
            values = (False, True) if h.kind == "bool" else h.choices
            for v in values:
                assert f"{spec.name}-{h.name}={v}" in ids
