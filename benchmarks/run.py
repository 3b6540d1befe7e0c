"""Adam fp32 step: the reference, the fused paths, torch.optim and optax vs the bandwidth limit.

One command (from the repository root)::

    python -m benchmarks.run            # default run, a few minutes
    python -m benchmarks.run --quick    # smoke run, small sizes, seconds

Each threading mode (one thread; the default thread count) runs in its own worker process, since
XLA fixes its thread pool at start-up; within a worker every variant and the bandwidth limit
(in-place ``a += b``, scaled from 12 to Adam's 28 bytes per element) are measured side by side,
so each ratio comes from one process. Times are medians over batches of steps (a batch lasts at
least 2 ms; per-call figures at N = 100 are batch means), taken in interleaved rounds (one batch
of every variant per round) so that the load of other jobs on a shared machine hits all variants
alike. The tables go to stdout and to
``benchmarks/results/<date>.md`` (with the raw numbers as JSON and a PNG plot); the machine
(lscpu), the library versions and the load average are recorded with them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BYTES_ADAM, BYTES_ADD = 28, 12

DEFAULT_SIZES = [10**2, 10**3, 10**4, 10**5, 10**6, 10**7]
QUICK_SIZES = [10**2, 10**4]
TREE = (100, 10**7)  # a model-like tree: 100 tensors totalling 1e7 elements
QUICK_TREE = (10, 10**4)


# ------------------------------------------------------------------------------ worker side

def _configure_threads(threads: int) -> None:
    """Before importing torch/jax/numba: pin every library to ``threads`` threads."""
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                                   "=false intra_op_parallelism_threads=1").strip()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    # OpenMP threads that spin while waiting starve every other thread pool in the process
    # (torch's and numba's) on a machine with few cores: measured 20 ms for a 100-element step.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _set_runtime_threads(threads: int, keys) -> None:
    if any(k.startswith("torch") for k in keys):
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    try:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def tree_shapes(n_leaves: int, total: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Leaf shapes of a model-like tree: log-normal sizes (biases to big matrices) summing to
    ``total``."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 2.0, n_leaves)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(int)
    sizes[np.argmax(sizes)] += total - sizes.sum()
    shapes = []
    for s in sizes:
        s = int(s)
        cols = next((c for c in (512, 256, 128, 64, 32, 16, 8) if s % c == 0 and s > c), 1)
        shapes.append((s // cols, cols) if cols > 1 else (s,))
    return shapes


def _block(out) -> None:
    if out is not None and not isinstance(out, np.ndarray):
        try:
            import jax
            jax.block_until_ready(out)
        except ImportError:
            pass


def _calibrate(step) -> int:
    """Warm ``step`` up; return how many steps make a batch of >= 2 ms."""
    for _ in range(2):
        _block(step())
    t0 = time.perf_counter()
    _block(step())
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(0.002 / one))


def _batch(step, k: int) -> float:
    t0 = time.perf_counter()
    out = None
    for _ in range(k):
        out = step()
    _block(out)
    return (time.perf_counter() - t0) / k


def measure_interleaved(steps: dict, budget: float, min_rounds: int) -> dict:
    """Median seconds per step of each entry of ``steps``, measured in rounds: each round times
    one batch of every entry in turn, so a change in the machine's load (other jobs) hits every
    entry alike instead of whichever happened to run at the time. Rounds continue until
    ``min_rounds`` are done and ``budget`` seconds per entry have passed (at most 40)."""
    ks = {key: _calibrate(step) for key, step in steps.items()}
    samples = {key: [] for key in steps}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() - start < budget * len(steps)
                                  and rounds < 40):
        for key, step in steps.items():
            samples[key].append(_batch(step, ks[key]))
        rounds += 1
    return {key: float(np.median(v)) for key, v in samples.items()}


def worker(args) -> dict:
    _configure_threads(args.threads)
    from . import adam_variants as V

    keys = [k for k in V.VARIANTS if not args.variants or k in args.variants]
    _set_runtime_threads(args.threads, keys)
    cases = [(f"{n:.0e}".replace("e+0", "e"), [(n,)]) for n in args.sizes]
    if args.tree:
        leaves, total = args.tree
        cases.append((f"tree {leaves}x ({total:.0e})".replace("e+0", "e"),
                      tree_shapes(leaves, total)))
    rng = np.random.default_rng(0)
    results = {"threads": args.threads, "cases": {}, "errors": {}, "compile_s": {},
               "rounds": args.samples}
    for name, shapes in cases:
        total = int(sum(np.prod(s) for s in shapes))
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        row = {"n": total, "leaves": len(shapes)}
        steps = {f"limit:{lname}": fn for lname, fn in V.make_limit(total, args.threads).items()}
        for key in keys:
            if key in V.TREE_ONLY and len(shapes) == 1:
                continue
            try:
                t0 = time.perf_counter()
                step = V.VARIANTS[key][1](params)
                _block(step())  # first call: jit / numba compile (or cache load)
                if name == cases[0][0]:
                    results["compile_s"][key] = time.perf_counter() - t0
                steps[key] = step
            except Exception as err:  # a missing library or an unsupported option
                results["errors"][key] = f"{type(err).__name__}: {err}"[:200]
        times = measure_interleaved(steps, args.budget, args.samples)
        limits = {k.split(":", 1)[1]: v * BYTES_ADAM / BYTES_ADD for k, v in times.items()
                  if k.startswith("limit:")}
        row["limit"] = min(limits.values())
        row["limit_by"] = min(limits, key=limits.get)
        row.update({k: v for k, v in times.items() if not k.startswith("limit:")})
        results["cases"][name] = row
        params = steps = None
    return results


# ------------------------------------------------------------------------------ parent side

def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("numpy", "numba", "torch", "jax", "jaxlib", "optax", "array-api-compat"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _machine() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or platform.machine()
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L1d", "L2",
            "L3", "Flags")
    lines = []
    for line in text.splitlines():
        key = line.split(":")[0].strip()
        if key in keep:
            if key == "Flags":
                flags = set(line.split(":", 1)[1].split())
                line = "SIMD: " + " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f")
                                            if f in flags)
            lines.append(" ".join(line.split()))
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        lines.append(f"Memory: {mem:.0f} GiB")
    except (ValueError, OSError):
        pass
    return "; ".join(lines)


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e3:.2f} ms"


def tables(runs: list[dict]) -> str:
    from .adam_variants import VARIANTS

    out = []
    for run in runs:
        label = f"{run['threads']} thread" + ("s" if run["threads"] > 1 else "")
        cases = list(run["cases"])
        keys = [k for k in VARIANTS if any(k in run["cases"][c] for c in cases)]
        out.append(f"\n### Adam fp32, {label}: time per step (x the bandwidth limit)\n")
        out.append("| variant | " + " | ".join(cases) + " |")
        out.append("|---|" + "---:|" * len(cases))
        lim = [run["cases"][c]["limit"] for c in cases]
        out.append("| **limit** (28 B/elem at in-place a+=b bandwidth) | "
                   + " | ".join(_fmt_time(x) for x in lim) + " |")
        for k in keys:
            cells = []
            for c, L in zip(cases, lim, strict=True):
                t = run["cases"][c].get(k)
                cells.append("" if t is None else f"{_fmt_time(t)} ({t / L:.2f}x)")
            out.append(f"| {VARIANTS[k][0]} | " + " | ".join(cells) + " |")
        peers = [p for p in ("torch_fused", "optax_jit") if p in keys]
        big = [c for c in cases if run["cases"][c]["n"] >= 10**6]
        if peers and big:
            out.append(f"\n#### {label}: ratio of times to each peer (lower is faster)\n")
            head = [f"{c} / {VARIANTS[p][0]}" for c in big for p in peers]
            out.append("| variant | " + " | ".join(head) + " |")
            out.append("|---|" + "---:|" * len(head))
            for k in keys:
                cells = []
                for c in big:
                    for p in peers:
                        t, tp = run["cases"][c].get(k), run["cases"][c].get(p)
                        cells.append("" if t is None or tp is None else f"{t / tp:.2f}")
                out.append(f"| {VARIANTS[k][0]} | " + " | ".join(cells) + " |")
        if run["errors"]:
            out.append("\nSkipped: " + "; ".join(f"{k}: {v}" for k, v in run["errors"].items()))
        if run["compile_s"]:
            out.append("\nFirst call (compile or cache load, import excluded): " + ", ".join(
                f"{VARIANTS[k][0]} {v:.2f} s" for k, v in run["compile_s"].items()))
    return "\n".join(out)


def targets(runs: list[dict]) -> str:
    """The issue's targets, each with the measured figure and PASS / MISS."""
    by = {r["threads"]: r for r in runs}
    lines = ["\n### Targets\n", "| target | measured | verdict |", "|---|---:|---|"]

    def get(threads, case, key):
        r = by.get(threads)
        c = r["cases"].get(case) if r else None
        return None if c is None else c.get(key), (None if c is None else c["limit"])

    def row(text, value, ok, fmt):
        if value is None:
            lines.append(f"| {text} | not measured | - |")
        else:
            lines.append(f"| {text} | {fmt(value)} | {'PASS' if ok(value) else 'MISS'} |")

    t, L = get(1, "1e7", "fused_")
    row("fused Adam fp32 N=1e7, 1 thread, <= 1.1x limit (in place)",
        None if t is None else t / L, lambda v: v <= 1.1, lambda v: f"{v:.2f}x")
    t, L = get(1, "1e7", "fused")
    row("(the same, pure form: fresh outputs)", None if t is None else t / L,
        lambda v: v <= 1.1, lambda v: f"{v:.2f}x")
    multi = max(by) if by and max(by) > 1 else None
    if multi:
        t, _ = get(multi, "1e7", "fused_")
        tt, _ = get(multi, "1e7", "torch_fused")
        row(f"fused (in place) {multi} threads no slower than torch fused {multi} threads",
            None if t is None or tt is None else t / tt, lambda v: v <= 1.0,
            lambda v: f"{v:.2f}x torch")
    t, L = get(1, "1e7", "ref")
    row("reference on NumPy N=1e7 <= 4x limit", None if t is None else t / L,
        lambda v: v <= 4.0, lambda v: f"{v:.2f}x")
    t, _ = get(1, "1e2", "fused")
    row("per call N=100, fused (pure, public API) <= 10 µs", t, lambda v: v <= 10e-6, _fmt_time)
    t, _ = get(1, "1e2", "fused_")
    row("per call N=100, fused (in place) <= 10 µs", t, lambda v: v <= 10e-6, _fmt_time)
    t, _ = get(1, "1e2", "ref")
    row("per call N=100, reference <= 20 µs", t, lambda v: v <= 20e-6, _fmt_time)
    for case in ("1e7", next((c for r in runs for c in r["cases"] if c.startswith("tree")),
                             None)):
        if case is None:
            continue
        t, _ = get(1, case, "ref_jit")
        to, _ = get(1, case, "optax_jit")
        row(f"reference jit+donate no slower than optax jit+donate ({case}, 1 thread)",
            None if t is None or to is None else t / to, lambda v: v <= 1.0,
            lambda v: f"{v:.2f}x optax")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from .adam_variants import VARIANTS

    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.8), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        cases = [c for c in run["cases"] if not c.startswith("tree")]
        ns = [run["cases"][c]["n"] for c in cases]
        for k, (label, _) in VARIANTS.items():
            pts = [(n, run["cases"][c][k] / run["cases"][c]["limit"])
                   for n, c in zip(ns, cases, strict=True) if k in run["cases"][c]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(xscale="log", yscale="log", xlabel="elements N",
               ylabel="time / bandwidth limit",
               title=f"Adam fp32, {run['threads']} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, short budget")
    ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                    help="comma-separated element counts (default 1e2..1e7)")
    ap.add_argument("--tree", type=lambda s: tuple(int(float(x)) for x in s.split(",")),
                    help="LEAVES,TOTAL of the model-like tree (default 100,1e7); 0 for none")
    ap.add_argument("--variants", type=lambda s: s.split(","), default=None,
                    help="comma-separated keys: ref, fused, fused_, fused_flat, torch_loop, "
                         "torch_foreach, torch_fused, optax_jit, ref_jit (default all)")
    ap.add_argument("--modes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="thread counts, one worker each (default: 1 and os.cpu_count())")
    ap.add_argument("--budget", type=float, default=None, help="seconds per measurement")
    ap.add_argument("--samples", type=int, default=None, help="minimum batches per measurement")
    ap.add_argument("--out", type=Path, default=HERE / "results",
                    help="where <date>.md/.json/.png go (default benchmarks/results)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.tree is None:
        args.tree = QUICK_TREE if args.quick else TREE
    elif args.tree == (0,):
        args.tree = None
    if args.budget is None:
        args.budget = 0.03 if args.quick else 0.3
    if args.samples is None:
        args.samples = 3 if args.quick else 5

    if args.worker:
        res = worker(args)
        args.json_out.write_text(json.dumps(res))
        return 0

    modes = args.modes or sorted({1, os.cpu_count() or 1})
    started = _dt.datetime.now(_dt.timezone.utc)
    load0 = os.getloadavg()
    runs = []
    args.out.mkdir(parents=True, exist_ok=True)
    for threads in modes:
        jpath = args.out / f".worker-{os.getpid()}-{threads}.json"
        cmd = [sys.executable, "-m", "benchmarks.run", "--worker", "--threads", str(threads),
               "--json-out", str(jpath), "--sizes", ",".join(str(n) for n in args.sizes),
               "--tree", ",".join(str(x) for x in args.tree) if args.tree else "0",
               "--budget", str(args.budget), "--samples", str(args.samples)]
        if args.variants:
            cmd += ["--variants", ",".join(args.variants)]
        subprocess.run(cmd, check=True, cwd=HERE.parent)
        runs.append(json.loads(jpath.read_text()))
        jpath.unlink()
    load1 = os.getloadavg()
    elapsed = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    stamp = started.strftime("%Y-%m-%dT%H%MZ")
    header = [f"## Adam step benchmark, {started:%Y-%m-%d %H:%M} UTC",
              "", f"Command: `python -m benchmarks.run {' '.join(argv or sys.argv[1:])}`".strip(),
              f"Machine: {_machine()}",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
              f"Load average (1 min) before/after: {load0[0]:.1f} / {load1[0]:.1f}; "
              f"wall time {elapsed:.0f} s",
              "Cells: median time per step (ratio to the bandwidth limit measured in the same "
              "process). Limit = in-place a += b time x 28/12."]
    text = "\n".join(header) + "\n" + tables(runs) + "\n" + targets(runs) + "\n"
    (args.out / f"{stamp}.json").write_text(json.dumps({"runs": runs, "header": header}))
    png = args.out / f"{stamp}.png"
    if plot(runs, png):
        text += f"\n![Adam time / limit]({png.name})\n"
    (args.out / f"{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
