"""GPU Adam fp32 step: reference on CuPy, fused CuPy kernels, torch CUDA, vs copy bandwidth.

Run by ``benchmarks/gpu_check.sh`` (or ``python -m benchmarks.gpu_bench``). The limit is the
time of a device-to-device copy of the same number of elements (read 4 + write 4 bytes per fp32
element), measured in the same process and scaled to Adam's 28 bytes per element. Times are
medians over batches of steps, synchronised at the end of each batch. Writes a markdown table to
stdout and to ``benchmarks/results/gpu-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LR = 1e-3


def _sync():
    try:
        import cupy
        cupy.cuda.Device().synchronize()
    except ImportError:
        pass
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def measure(step, budget=0.3, min_samples=5):
    for _ in range(3):
        step()
    _sync()
    t0 = time.perf_counter()
    step()
    _sync()
    one = max(time.perf_counter() - t0, 1e-6)
    k = max(1, int(0.005 / one))
    samples, start = [], time.perf_counter()
    while len(samples) < min_samples or (time.perf_counter() - start < budget
                                         and len(samples) < 40):
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        _sync()
        samples.append((time.perf_counter() - t0) / k)
    return float(np.median(samples))


def variants(n: int):
    import cupy

    import adaptive_ref as ar
    from adaptive_ref.fused import cupy_kernels as ck

    rng = cupy.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=cupy.float32)
    g = rng.standard_normal(n, dtype=cupy.float32)
    out = {}

    def copy_limit():
        dst = cupy.empty_like(p0)
        return lambda: dst.__setitem__(Ellipsis, p0)
    out["limit (D2D copy x 28/8)"] = ("limit", copy_limit())

    def ref():
        box = [p0.copy(), ar.adam_init(p0)]

        def step():
            box[0], box[1] = ar.adam_step(box[0], g, box[1], lr=LR)
        return step
    out["reference (CuPy)"] = ("ref", ref())

    def fused(inplace):
        box = [p0.copy(), ar.adam_init(p0)]
        fn = ck.adam_step_ if inplace else ck.adam_step

        def step():
            box[0], box[1] = fn(box[0], g, box[1], lr=LR)
        return step
    out["fused CuPy (pure)"] = ("fused", fused(False))
    out["fused CuPy (in place)"] = ("fused_", fused(True))
    try:
        import torch
        if torch.cuda.is_available():
            for label, kw in (("torch for-loop", dict(foreach=False)),
                              ("torch foreach", dict(foreach=True)),
                              ("torch fused", dict(fused=True))):
                tp = torch.nn.Parameter(torch.as_tensor(p0.get(), device="cuda"))
                tp.grad = torch.as_tensor(g.get(), device="cuda")
                opt = torch.optim.Adam([tp], lr=LR, **kw)
                out[label] = ("torch", opt.step)
    except ImportError:
        pass
    return out


def check_equal(n: int = 4099) -> str:
    """One quick bit-identity check outside pytest, reported with the timings."""
    import cupy

    import adaptive_ref as ar
    from adaptive_ref.fused import cupy_kernels as ck

    rng = cupy.random.default_rng(1)
    p = rng.standard_normal(n, dtype=cupy.float32)
    s = ar.adam_init(p)
    pr, sr, pf, sf = p, s, p, s
    for _ in range(5):
        g = rng.standard_normal(n, dtype=cupy.float32)
        pr, sr = ar.adam_step(pr, g, sr)
        pf, sf = ck.adam_step(pf, g, sf)
    diff = int((pr != pf).sum()) + int((sr.mu != sf.mu).sum()) + int((sr.nu != sf.nu).sum())
    return f"fused vs reference on CuPy, 5 Adam steps, {n} elements: {diff} differing elements"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e4,1e6,1e7,1e8")
    ap.add_argument("--budget", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    import cupy

    dev = cupy.cuda.runtime.getDeviceProperties(0)
    name = dev["name"].decode() if isinstance(dev["name"], bytes) else dev["name"]
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    rows: dict[str, dict[int, float]] = {}
    for n in sizes:
        for label, (_, step) in variants(n).items():
            rows.setdefault(label, {})[n] = measure(step, args.budget)
        cupy.get_default_memory_pool().free_all_blocks()
    lim_key = "limit (D2D copy x 28/8)"
    for n in sizes:
        rows[lim_key][n] *= 28 / 8
    versions = {"cupy": cupy.__version__}
    try:
        import torch
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    lines = [f"## GPU Adam fp32 step, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"Device: {name}; versions: {versions}", check_equal(), "",
             "| variant | " + " | ".join(f"{n:.0e}" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for label, row in rows.items():
        cells = []
        for n in sizes:
            t, lim = row.get(n), rows[lim_key][n]
            cells.append("" if t is None else (f"{t * 1e6:.1f} µs" + (
                "" if label == lim_key else f" ({t / lim:.2f}x)")))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    (args.out / f"gpu-{stamp}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
