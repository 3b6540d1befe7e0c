"""Issue 14's targets, each with its measured figure and verdict (met / missed), in one command.

    python -m benchmarks.issue14              # everything (the conformance run takes minutes)
    python -m benchmarks.issue14 --no-conform # the timing targets only (about a minute)

1. per call at N = 100: the reference / a hand-written NumPy step (:mod:`.handwritten`), every
   elementwise optimizer that has one, <= 2x; the tree API (50 leaves) / the sum of its leaves'
   steps, <= 1.5x. The ratio is the median over interleaved rounds of the two sides' CPU
   times (measuring thread), each round's pair timed back to back (:func:`_paired`); the times
   shown are each side's minimum.
2. the reference Adam fp32 at N = 1e7 on NumPy <= 4x the bandwidth limit: as users call it
   (large arrays go to the generated fused kernel, ``adaptive_ref._blockwise.fused``), and, for
   comparison, its blocked ufunc form (what runs without numba).
3. the fused in-place Adam (numba kernels generated from the elementwise bodies) at N = 1e7:
   <= 1.1x the limit (it stays at the limit), and its time / torch fused's.
4. ``python -m adaptive_ref conform`` (everything installed, default options): wall time <= 60 s,
   and the torch + optax implementations' share <= 60 s (sum of their per-case CPU seconds, from
   the report's ``cpu_seconds``; their wall seconds, which a loaded machine stretches, beside).
5. the CuPy path on a GPU: run by ``benchmarks/gpu_check.sh`` where a GPU is present.

Targets 2 and 3 are ratios of CPU times of the measuring thread (``time.thread_time``), limit and
step measured side by side in interleaved rounds, median: on a shared machine a wall clock
counts the other jobs' time slices as well. One thread (numba, torch). The table is printed and,
with ``--out``, written to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BYTES_ADAM, BYTES_ADD = 28, 12


def _paired(fns: dict, rounds: int, number: int) -> tuple[dict, float]:
    """``(seconds, ratio)`` of two functions timed in ``rounds`` interleaved batches of
    ``number`` calls, in CPU time of the measuring thread (as targets 2 and 3: a wall clock
    would count the time slices of the machine's other jobs). ``seconds``: each one's per-call
    time, the minimum over the batches; ``ratio``: the median over the rounds of the first's
    batch time / the second's, each pair taken back to back, so that a slow spell of the
    machine (they last seconds here) slows both sides of a pair rather than one side's best."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(timeit.Timer(f, timer=time.thread_time).timeit(number=number) / number)
    a, b = list(fns)
    ratio = float(np.median([x / y for x, y in zip(times[a], times[b], strict=True)]))
    return {k: min(v) for k, v in times.items()}, ratio


def per_call(rounds: int) -> list[tuple]:
    import adaptive_ref as ar
    from adaptive_ref import registry

    from .handwritten import STEPS

    rows = []
    rng = np.random.default_rng(0)
    g = rng.standard_normal(100)
    for name, spec in registry.REGISTRY.items():
        if not spec.elementwise:
            continue
        if name not in STEPS:
            rows.append((f"per call N=100, {name}: reference / hand-written NumPy <= 2x", None,
                         "no hand-written counterpart", None))
            continue
        box = [rng.standard_normal(100), None]
        box[1] = spec.init(box[0], **spec.init_kwargs({}))

        def ref(box=box, spec=spec):
            box[0], box[1] = spec.step(box[0], g, box[1])

        hand = STEPS[name](rng.standard_normal(100))
        t, ratio = _paired({"ref": ref, "hand": lambda hand=hand: hand(g)}, 3 * rounds, 100)
        rows.append((f"per call N=100, {name}: reference / hand-written NumPy <= 2x", ratio,
                     f"{t['ref'] * 1e6:.1f} / {t['hand'] * 1e6:.1f} µs", ratio <= 2.0))
    leaves = {f"w{i}": rng.standard_normal(100) for i in range(50)}
    grads = {k: rng.standard_normal(100) for k in leaves}
    tstate = ar.tree_init("adam", leaves)
    lstates = {k: ar.adam_init(v) for k, v in leaves.items()}

    def tree():
        ar.tree_step("adam", leaves, grads, tstate)

    def loop():
        for k, v in leaves.items():
            ar.adam_step(v, grads[k], lstates[k])

    t, ratio = _paired({"tree": tree, "loop": loop}, 3 * rounds, 4)
    rows.append(("tree API, Adam, 50 leaves of 100: tree_step / sum of the leaves' steps <= 1.5x",
                 ratio, f"{t['tree'] * 1e3:.2f} / {t['loop'] * 1e3:.2f} ms", ratio <= 1.5))
    return rows


def large(rounds: int) -> list[tuple]:
    from . import adam_variants as V
    from .run import _set_runtime_threads

    _set_runtime_threads(1, ["torch_fused"])
    n = 10**7
    params = [np.random.default_rng(0).standard_normal(n).astype(np.float32)]
    steps = {f"limit:{k}": f for k, f in V.make_limit(n, 1).items()}
    errors = {}
    for key in ("ref", "ref_ufunc", "fused_", "torch_fused"):
        try:
            steps[key] = V.VARIANTS[key][1](params)
            steps[key]()
        except Exception as err:  # noqa: BLE001 - a missing library: reported, not fatal
            errors[key] = f"{type(err).__name__}: {err}"
            steps.pop(key, None)
    samples = {k: [] for k in steps}
    for _ in range(rounds):
        for k, f in steps.items():
            t0 = time.thread_time()
            f()
            samples[k].append(time.thread_time() - t0)
    med = {k: float(np.median(v)) for k, v in samples.items()}
    limit = min(v for k, v in med.items() if k.startswith("limit:")) * BYTES_ADAM / BYTES_ADD
    rows = []
    for key, text, goal in (("ref", "reference Adam fp32, NumPy, N=1e7 <= 4x limit", 4.0),
                            ("ref_ufunc", "the same, ufunc form (ADAPTIVE_REF_FUSED=0 or no "
                             "numba), <= 4x limit", 4.0),
                            ("fused_", "fused in-place Adam fp32 (numba), N=1e7 <= 1.1x limit",
                             1.1)):
        if key in med:
            r = med[key] / limit
            rows.append((text, r, f"{med[key] * 1e3:.1f} ms, limit {limit * 1e3:.1f} ms",
                         r <= goal))
        else:
            rows.append((text, None, errors.get(key, "not measured"), None))
    if "fused_" in med and "torch_fused" in med:
        r = med["fused_"] / med["torch_fused"]
        rows.append(("fused in-place Adam / torch fused Adam, N=1e7, 1 thread (was 0.96)", r,
                     f"{med['torch_fused'] * 1e3:.1f} ms torch", r <= 1.1))
    return rows


def conform() -> list[tuple]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "conform.json"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "adaptive_ref", "conform", "-q", "--format",
                            "json", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                           timeout=1800)
        wall = time.perf_counter() - t0
        data = json.loads(out.read_text()) if out.exists() else None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if data is None:
        last = (r.stderr.strip().splitlines() or [""])[-1]
        return [("conform default run wall time <= 60 s", None,
                 f"no report (exit {r.returncode}): {last}", None)]
    per, wall_per = {}, {}
    for res in data["results"]:
        per[res["impl"]] = per.get(res["impl"], 0.0) + (res.get("cpu_seconds") or 0.0)
        wall_per[res["impl"]] = wall_per.get(res["impl"], 0.0) + (res.get("seconds") or 0.0)
    peers = sum(v for k, v in per.items() if k.startswith(("torch-", "optax-")))
    peers_wall = sum(v for k, v in wall_per.items() if k.startswith(("torch-", "optax-")))
    detail = ", ".join(f"{k} {v:.0f}" for k, v in per.items())
    bad = sum(1 for res in data["results"] if res["status"] in ("fail", "error"))
    return [(f"conform default run wall time <= 60 s (CPU {cpu:.0f} s; {bad} fail/error; "
             f"load avg {os.getloadavg()[0]:.1f})", wall, f"{wall:.0f} s", wall <= 60),
            ("conform: torch + optax share <= 60 s (per-case CPU seconds, summed)", peers,
             f"{peers:.0f} s CPU ({peers_wall:.0f} s wall); CPU s per implementation (Keras: "
             f"without its worker processes): {detail}", peers <= 60)]


def gpu() -> list[tuple]:
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # noqa: BLE001 - no CuPy or no driver
        n, why = 0, f"{type(err).__name__}"
    else:
        why = "no device"
    text = "CuPy fused kernels on a GPU >= 80% of copy bandwidth (benchmarks/gpu_check.sh)"
    if n < 1:
        return [(text, None, f"not run: no GPU here ({why})", None)]
    return [(text, None, "GPU present: run bash benchmarks/gpu_check.sh", None)]


def table(rows) -> str:
    out = ["| issue 14 target | measured | detail | verdict |", "|---|---:|---|---|"]
    for text, value, detail, ok in rows:
        v = "-" if value is None else (f"{value:.2f}x" if value < 20 else f"{value:.0f}")
        if "wall time" in text or "share" in text:
            v = "-" if value is None else f"{value:.0f} s"
        verdict = "not measured" if ok is None else ("met" if ok else "MISSED")
        out.append(f"| {text} | {v} | {detail} | {verdict} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.issue14",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-conform", action="store_true", help="skip the conformance run")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    rows = per_call(args.rounds) + large(args.rounds)
    if not args.no_conform:
        rows += conform()
    rows += gpu()
    text = (f"Issue 14 targets, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n\n" + table(rows))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
