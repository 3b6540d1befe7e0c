"""Slack of the conformance budget: how far the derived budget is above real errors.

    python -m benchmarks.conformance_budget [--impl torch-forloop,...] [--optimizer adam ...]
                                            [--min-step 10] [--per-case]
    python -m benchmarks.conformance_budget --detect [--dtype float32]
    python -m benchmarks.conformance_budget --pow

``--pow`` measures the array power beta**y in float32 of every evaluation method a supported
implementation uses (:func:`pow_errors`) against the golden's value of it and the error model's
bound (docs/conformance.md, "The scalar factors in the parameter dtype").

For every golden case, checkpoint >= ``--min-step`` and stored array, runs each named
implementation (those whose profile the case belongs to) and takes the largest normwise ULP error
any of them makes on that array. A case's slack at a checkpoint is the smallest ratio
budget / largest error over its arrays (the array whose budget the implementations come closest
to; arrays nobody gets wrong, error 0, have no ratio). Printed per optimizer, dtype and
checkpoint: the median and the maximum of that slack over the cases, and the median ratio over
all arrays. Also prints the correctly rounded trajectory's worst error/budget (must be < 1).
"""

from __future__ import annotations

import argparse
import functools
import math
from collections import defaultdict

import numpy as np

from adaptive_ref.conformance import format as fmt
from adaptive_ref.conformance import tolerance
from adaptive_ref.conformance.adapters import get_adapter
from adaptive_ref.conformance.objectives import missing_requirement
from adaptive_ref.ulp import ulp_error

DEFAULT_IMPLS = "reference-numpy,torch-forloop,torch-foreach,torch-fused,optax-eager"


def rounded(case) -> dict:
    """The correctly rounded trajectory: every golden value rounded to the case dtype."""
    def r(v):
        return np.asarray(np.asarray(v, dtype=np.float64).astype(case.dtype), dtype=np.float64)

    out = {}
    for t, snap in case.expected.items():
        state = {k: {f: (v if f == "count" else r(v)) for f, v in fields.items()}
                 for k, fields in snap["state"].items()}
        out[t] = ({k: r(v) for k, v in snap["params"].items()}, state)
    return out


def arrays(case, result, t):
    """``(name, error ULP, budget ULP)`` of every stored float array at checkpoint ``t``."""
    exp = case.expected[t]
    got_p, got_s = result[t]
    sc, er = exp["scale"], exp["error"]
    for k, want in exp["params"].items():
        s = max(float(np.max(np.abs(want))), sc["params"][k])
        yield (f"params.{k}", ulp_error(np.reshape(got_p[k], np.shape(want)), want, case.dtype,
                                        scale=s),
               tolerance.array_budget(case.dtype, s, er["params"][k]))
    for k, fields in exp["state"].items():
        for f, want in fields.items():
            if f == "count" or f not in (got_s or {}).get(k, {}):
                continue
            s = max(float(np.max(np.abs(want))), sc["state"][k][f])
            got = np.reshape(np.asarray(got_s[k][f], dtype=np.float64), np.shape(want))
            yield (f"state.{k}.{f}", ulp_error(got, want, case.dtype, scale=s),
                   tolerance.array_budget(case.dtype, s, er["state"][k][f]))


def detect(args) -> int:
    from adaptive_ref.conformance.mutants import detection_threshold

    print("| case | smallest delta caught (update * (1 + delta) from step 51) |")
    print("|---|---|")
    for case in fmt.load_cases(dtype=args.dtype):
        if "base" not in case.tags or case.steps < 200:
            continue
        if args.optimizer is not None and case.optimizer not in args.optimizer:
            continue
        print(f"| {case.id} | {detection_threshold(case):.2g} |", flush=True)
    return 0


# (base, psi): beta**t (psi = 1) and NAdam's 0.96**(t psi) (psi = 0.004, torch's schedule)
POW_BASES = ((0.9, 1.0), (0.99, 1.0), (0.999, 1.0), (0.9999, 1.0), (0.96, 1.0), (0.96, 0.004))


@functools.cache
def _integer_pows(steps: tuple) -> dict:
    """``{base: float32 values of base**t}`` for the integer-exponent bases of POW_BASES, as
    optax's eager RAdam computes ``b2**count_inc`` (a Python float to the power of a concrete
    int32 array: lax.integer_pow; one compilation per t, all bases at once)."""
    import jax.numpy as jnp

    bases = [b for b, psi in POW_BASES if psi == 1.0]
    vals = np.array([np.asarray(jnp.asarray(bases, jnp.float32) ** jnp.asarray(t, jnp.int32))
                     for t in steps], dtype=np.float64)
    return {b: vals[:, i] for i, b in enumerate(bases)}


def pow_methods(base: float, psi: float, steps: np.ndarray) -> dict:
    """``{method: float32 values of base**(t psi)}`` for t in ``steps``, as the supported
    implementations compute them (each from fl32(base); a float exponent is fl32(t) fl32(psi)
    rounded to float32, an integer one is t itself)."""
    import jax
    import jax.numpy as jnp
    import torch

    from adaptive_ref.conformance.error_model import _binary_power

    b = np.float32(base)
    y = (steps.astype(np.float32) * np.float32(psi)).astype(np.float32)
    out = {}
    if psi == 1.0:
        # optax: tree_bias_correction is jitted, so decay**count is lax.pow(f32, int32)
        out["lax.pow int (optax)"] = jax.jit(lambda c: b ** c)(jnp.asarray(steps, jnp.int32))
        # optax's RAdam, eager: b2**count_inc with a concrete count is lax.integer_pow
        ip = _integer_pows(tuple(int(t) for t in steps))[base]
        emulated = np.array([_binary_power(base, int(t), np.float32) for t in steps])
        emulated[emulated < np.finfo(np.float32).tiny] = 0.0  # XLA flushes subnormals
        if not np.array_equal(ip, emulated):
            msg = f"error_model._binary_power({base}, t) is not jax's integer_pow"
            raise AssertionError(msg)
        out["lax.integer_pow (optax radam eager)"] = ip
    # Keras (jax backend): ops.power(beta, local_step), both float32
    out["jnp.power f32 (keras-jax)"] = jax.jit(jnp.power)(jnp.full(y.shape, b), jnp.asarray(y))
    # Keras (torch backend): torch.pow on 0-d tensors; also the vectorised kernel
    out["torch.pow 0-d (keras-torch)"] = np.array(
        [float(torch.pow(torch.tensor(b), torch.tensor(v))) for v in y])
    out["torch.pow vector"] = torch.pow(torch.full(y.shape, float(b)), torch.from_numpy(y))
    out["numpy.power"] = np.power(b, y)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def pow_errors(steps: np.ndarray = np.arange(1, 1001)) -> list[tuple]:
    """Per (base, psi, method): ``(base, psi, method, worst error in u beta**y over the normal
    results, worst error / the error model's bound over all results, its step)``. The reference
    is the golden's value: fl32(base)**(t fl32(psi)), exact, rounded to float32."""
    import mpmath

    from adaptive_ref.conformance.error_model import UNIT, FactorPrecision, _pow_error

    u = UNIT["float32"]
    fp = FactorPrecision((u, True))
    rows = []
    for base, psi in POW_BASES:
        b = float(np.float32(base))
        yex = [int(t) if psi == 1.0 else int(t) * float(np.float32(psi)) for t in steps]
        ref = np.empty(len(steps))
        for i, y in enumerate(yex):
            with mpmath.workprec(160):
                v = mpmath.mpf(b) ** y
            with mpmath.workprec(24):
                ref[i] = float(+v)
        for method, got in pow_methods(base, psi, steps).items():
            binary = "integer_pow" in method
            bound = np.array([_pow_error(base, y, fp, binary=binary) for y in yex])
            err = np.abs(got - ref)
            ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0),
                             np.where(err > 0, np.inf, 0.0))
            normal = ref >= np.finfo(np.float32).tiny
            rel = np.where(normal, err / np.where(normal, ref, 1.0) / u, 0.0)
            i = int(np.argmax(ratio))
            rows.append((base, psi, method, float(rel.max()), float(ratio[i]), int(steps[i])))
    return rows


def print_pow_errors() -> int:
    rows = pow_errors()
    print("| beta | exponent | method | max error (u beta^y) | max error / bound (at t) |")
    print("|---|---|---|---|---|")
    for base, psi, method, rel, ratio, t in rows:
        expo = "t" if psi == 1.0 else f"{psi:g} t"
        print(f"| {base:g} | {expo} | {method} | {rel:.2f} | {ratio:.2f} (t = {t}) |")
    return 0 if all(r[4] <= 1.0 for r in rows) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", default=DEFAULT_IMPLS)
    ap.add_argument("--optimizer", action="append", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--min-step", type=int, default=10)
    ap.add_argument("--per-case", action="store_true", help="print every array's slack")
    ap.add_argument("--detect", action="store_true",
                    help="instead: the smallest update perturbation (from step 51) each long "
                         "base case catches")
    ap.add_argument("--pow", action="store_true",
                    help="instead: the float32 error of beta**t of each array-power method "
                         "against the error model's bound")
    args = ap.parse_args(argv)
    if args.pow:
        return print_pow_errors()
    if args.detect:
        return detect(args)
    adapters = [get_adapter(n) for n in args.impl.split(",")]
    adapters = [a for a in adapters if not a.missing()]
    cases = [c for c in fmt.load_cases(dtype=args.dtype)
             if args.optimizer is None or c.optimizer in args.optimizer]
    slack = defaultdict(list)  # (optimizer, dtype, step) -> [(tightest ratio of a case, where)]
    per_array = defaultdict(list)  # (optimizer, dtype, step) -> every array's ratio
    exact_zero = defaultdict(int)
    worst_rounded = (0.0, "")
    for case in cases:
        if missing_requirement(case.objective):
            continue
        res_r = rounded(case)
        for t in case.checkpoints:
            for name, err, bud in arrays(case, res_r, t):
                if err / bud > worst_rounded[0]:
                    worst_rounded = (err / bud, f"{case.id} step {t} {name}")
        runs = []
        for a in adapters:
            if not a.applies_to(case) or a.supports(case):
                continue
            try:
                runs.append((a.name, a.run(case)))
            except Exception:  # noqa: BLE001 - an implementation that cannot run the case
                continue
        if not runs:
            continue
        for t in case.checkpoints:
            if t < args.min_step:
                continue
            per = defaultdict(lambda: [0.0, 0.0, ""])
            for impl, res in runs:
                for name, err, bud in arrays(case, res, t):
                    rec = per[name]
                    rec[1] = bud
                    if err >= rec[0]:
                        rec[0], rec[2] = err, impl
            key = (case.optimizer, case.dtype, t)
            ratios = [(bud / err, name, impl, err, bud)
                      for name, (err, bud, impl) in per.items() if err > 0]
            exact_zero[key] += len(per) - len(ratios)
            if not ratios:
                continue
            # the array whose budget the implementations come closest to
            r, name, impl, err, bud = min(ratios)
            slack[key].append((r, f"{case.id} {name} ({impl} {err:.3g} ULP, budget {bud:.3g})"))
            per_array[key].extend(x[0] for x in ratios)
            if args.per_case:
                print(f"{r:8.2f}  {case.id} step {t} {name} {impl} {err:.3g} {bud:.3g}")
    print(f"correctly rounded trajectory: worst error/budget {worst_rounded[0]:.3f} "
          f"({worst_rounded[1]})")
    print("| optimizer | dtype | step | cases | slack: median | max | array median | where max |")
    print("|---|---|---|---|---|---|---|---|")
    for key in sorted(slack):
        vals = sorted(slack[key])
        arr = sorted(per_array[key])
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(vals)} | {vals[len(vals) // 2][0]:.1f} "
              f"| {vals[-1][0]:.1f} | {arr[len(arr) // 2]:.1f} | {vals[-1][1]} |")
    over = [k for k, v in slack.items() if max(v)[0] > 10]
    print(f"checkpoints (optimizer, dtype, step) whose loosest case has slack > 10: {len(over)} "
          f"of {len(slack)}; arrays no implementation gets wrong (error 0): "
          f"{sum(exact_zero.values())}")
    return 0 if not math.isnan(worst_rounded[0]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
