"""Per-call time of one ``adam_step`` at N=100: the reference's fixed overhead per call.

Not a test: prints figures. For each backend (NumPy float64 and float32, array-api-strict
float64, torch CPU float64 and float32) it times one Adam step on a parameter of 100 elements
(defaults of Algorithm 1), reporting the median over ``--repeats`` timeit runs of ``--number``
calls each, in microseconds per call. At N=100 the arithmetic is negligible, so the figure is the
cost of validation, namespace resolution, scalar handling and one array operation per line.

    python benchmarks/bench_call_overhead.py [--repeats 31] [--number 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import numpy as np  # noqa: E402

from adaptive_ref import adam_init, adam_step  # noqa: E402

N = 100


def _arrays(backend: str, dtype: str):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(N).astype(dtype)
    g = rng.standard_normal(N).astype(dtype)
    if backend == "numpy":
        return p, g
    if backend == "array_api_strict":
        import array_api_strict as xps

        return xps.asarray(p), xps.asarray(g)
    if backend == "torch":
        import torch

        return torch.asarray(p), torch.asarray(g)
    raise ValueError(backend)


def per_call_us(backend: str, dtype: str, repeats: int, number: int) -> float:
    p, g = _arrays(backend, dtype)
    s = adam_init(p)
    p, s = adam_step(p, g, s)  # warm caches (namespace, dtype look-ups)
    timer = timeit.Timer(lambda: adam_step(p, g, s, lr=1e-3))
    runs = timer.repeat(repeat=repeats, number=number)
    return statistics.median(runs) / number * 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--number", type=int, default=200)
    args = ap.parse_args(argv)
    cases = [("numpy", "float64"), ("numpy", "float32"), ("array_api_strict", "float64"),
             ("torch", "float64"), ("torch", "float32")]
    print(f"adam_step per-call time, N={N}, median of {args.repeats} x {args.number} calls "
          f"(python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()})")
    for backend, dtype in cases:
        if importlib.util.find_spec(backend) is None:
            print(f"  {backend:17s} {dtype:8s}  skipped: {backend} is not installed")
            continue
        us = per_call_us(backend, dtype, args.repeats, args.number)
        print(f"  {backend:17s} {dtype:8s} {us:9.1f} us/call")


if __name__ == "__main__":
    main()
