"""SOAP: time optimizer steps on a model-like tree, side by side with Adam and Muon.

Run (the OpenBLAS variables this machine sets slow NumPy's BLAS: unset them for this command
only, never in tests or CI)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.soap \
        [--upstream /path/outside/the/repo/soap.py] [--threads 1]

torch, optax and Keras have no SOAP (optax PRs #1617, #1692 are open), so the reference's SOAP is
compared with the upstream torch code (nikhilvyas/SOAP ``soap.py``, loaded from ``--upstream``:
a scratch copy outside the repository; never commit it; skipped when not given) and with an
Adam step and a Muon step on the same tree. The tree: matrices (256, 256) x 2, (256, 1024),
(1024, 256) and a bias per matrix, float32 (a transformer block at a quarter of
``benchmarks.muon``'s width: SOAP's statistics are n x n per dimension, up to 1024 x 1024 here).

SOAP variants (lr 3e-3, betas (0.95, 0.95), wd 0.01, precondition_frequency 10, the ``upstream``
profile: float32 eigh and QR, as upstream; biases take SOAP's Adam path, as upstream):

* ``ref numpy``, ``ref torch``: the reference on NumPy / torch tensors. Where the step count is
  readable the first-call ``eigh`` and the refresh run only when due (as upstream);
* ``ref jax jit``: the reference under ``jax.jit``; the count is traced, so *every* step computes
  the ``eigh`` and the QR refresh and selects with ``where`` (the price of no host syncs);
* ``upstream torch``: ``SOAP`` from ``--upstream``.

Time per step is the mean over ``--windows`` windows of ``precondition_frequency`` steps (each
window holds one refresh), after the first call (the eigh) and one warm-up window; under ``jit``
the mean of ``--jit-steps`` steps after the first two calls (every step costs the same there;
the second call compiles again, for the committed state arrays the first returns).
Adam (``torch.optim.Adam``, ``optax.adam`` under jit, the reference's ``adam`` on NumPy) and
Muon (``torch.optim.Muon`` + AdamW, ``optax.contrib.muon`` under jit, the reference's routed
Muon on NumPy in float32) are timed the same way on the same tree. The BLAS that ran
(threadpoolctl) is printed with the times; results go to ``benchmarks/results/soap-<UTC>.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.muon import (
    _block,
    _grads,
    _tree,
    opt_variant,
    optax_muon,
    optax_variant,
    ref_variant,
    torch_muon,
    write_report,
)

SHAPES = [(256, 256), (256, 256), (256, 1024), (1024, 256)]
FREQ = 10
SOAP_HP = dict(lr=3e-3, beta1=0.95, beta2=0.95, weight_decay=0.01, eps=1e-8,
               precondition_frequency=FREQ)
# the benchmark's random gradients are rank-deficient on the first call (a 256 x 1024 matrix):
# the report is about the trajectory, not the time, so it is switched off here
QUIET = dict(on_degenerate="ignore")


def _soap():
    from adaptive_ref import make as make_opt

    return make_opt("soap", profile="upstream", **SOAP_HP, **QUIET)


def ref_soap(asarray):
    return opt_variant(_soap, asarray)


ref_soap_jax = opt_variant(_soap)


def _torch_params(params):
    import torch

    grads = _grads(params)
    out = []
    for k, v in params.items():
        for n, a in v.items():
            t = torch.nn.Parameter(torch.tensor(a))
            t.grad = torch.tensor(grads[k][n])
            out.append(t)
    return out


def upstream_soap(path: Path):
    def make(params):
        spec = importlib.util.spec_from_file_location("soap_upstream_scratch", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ps = _torch_params(params)
        opt = mod.SOAP(ps, lr=SOAP_HP["lr"], betas=(0.95, 0.95), weight_decay=0.01,
                       precondition_frequency=FREQ)
        return opt.step
    return make


def torch_adam(params):
    import torch

    return torch.optim.Adam(_torch_params(params), lr=1e-3).step


optax_adam = optax_variant(lambda optax: optax.adam(1e-3))


def _adam():
    from adaptive_ref import make as make_opt

    return make_opt("adam", lr=1e-3)


ref_adam_numpy = opt_variant(_adam, np.asarray)


def _time(make, params, windows: int, single: int | None = None):
    """Mean seconds per step over ``windows`` windows of FREQ steps (one refresh each), after
    the first call and one warm-up window; also the slowest single step seen. With ``single``
    (a step whose cost does not depend on the phase: SOAP under ``jit`` computes the eigh and
    the refresh on every step), the mean of that many steps after the first two calls."""
    step = make(params)
    _block(step())  # the first call (SOAP: accumulate + eigh; jit: compilation)
    if single is not None:
        # under jit the second call compiles again: its state arrays are committed jit outputs
        _block(step())
        times = []
        for _ in range(single):
            s0 = time.perf_counter()
            _block(step())
            times.append(time.perf_counter() - s0)
        return float(np.mean(times)), max(times)
    for _ in range(FREQ):
        _block(step())
    per_step, worst = [], 0.0
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(FREQ):
            s0 = time.perf_counter()
            _block(step())
            worst = max(worst, time.perf_counter() - s0)
        per_step.append((time.perf_counter() - t0) / FREQ)
    return float(np.mean(per_step)), worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--upstream", type=Path, default=None,
                    help="a scratch copy of nikhilvyas/SOAP soap.py, outside the repository")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--jit-steps", type=int, default=3,
                    help="steps timed for the reference under jit (each computes the eigh and "
                         "the QR refresh, whatever the phase)")
    ap.add_argument("--threads", type=int, default=None,
                    help="limit BLAS/LAPACK (threadpoolctl), torch and XLA to this many threads "
                         "(on a shared, oversubscribed machine spinning BLAS threads make "
                         "LAPACK 10-20x slower)")
    args = ap.parse_args(argv)

    if args.threads is not None:  # before jax starts its thread pool
        multi = "true" if args.threads > 1 else "false"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_cpu_multi_thread_eigen={multi}"
                                   f" intra_op_parallelism_threads={args.threads}")
    import jax
    import torch

    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)

    jax.config.update("jax_enable_x64", True)  # the reference's float64 scalars, as in tests
    params = _tree(SHAPES)
    variants = {
        "SOAP ref numpy": ref_soap(np.asarray),
        "SOAP ref torch": ref_soap(torch.tensor),
        "SOAP ref jax jit": ref_soap_jax,
    }
    if args.upstream is not None:
        variants["SOAP upstream torch"] = upstream_soap(args.upstream)
    variants.update({
        "Adam ref numpy": ref_adam_numpy,
        "torch.optim.Adam": torch_adam,
        "optax.adam jit": optax_adam,
        "Muon ref numpy f32": ref_variant(np.asarray, ns_dtype="float32"),
        "torch.optim.Muon + AdamW": torch_muon,
        "optax.contrib.muon jit": optax_muon,
    })
    results = {}
    for name, make in variants.items():
        single = args.jit_steps if name == "SOAP ref jax jit" else None
        results[name] = _time(make, params, args.windows, single)
        print(f"{name:26s} {results[name][0] * 1e3:9.1f} ms/step  slowest "
              f"{results[name][1] * 1e3:9.1f} ms", flush=True)
    ratios = [("SOAP ref numpy", "SOAP upstream torch"),
              ("SOAP ref torch", "SOAP upstream torch"),
              ("SOAP ref jax jit", "SOAP upstream torch"),
              ("SOAP ref numpy", "Adam ref numpy"), ("SOAP ref numpy", "Muon ref numpy f32"),
              ("SOAP upstream torch", "torch.optim.Adam"),
              ("SOAP upstream torch", "torch.optim.Muon + AdamW"),
              ("SOAP ref jax jit", "optax.adam jit"),
              ("SOAP ref jax jit", "optax.contrib.muon jit")]
    ratios = [(a, b) for a, b in ratios if a in results and b in results]
    threads = f"{args.threads} thread(s) per library" if args.threads else "default threads"
    setup = (f"Tree: matrices {SHAPES} + one bias each, float32, {threads}. SOAP: lr 3e-3, "
             f"betas (0.95, 0.95), wd 0.01, precondition_frequency {FREQ}, float32 eigh/QR "
             f"(profile upstream). Mean ms per step over {args.windows} windows of {FREQ} steps "
             f"(one refresh each) after the first call and a warm-up window (under jit: the "
             f"mean of {args.jit_steps} steps after the first two calls, each computing eigh and "
             f"QR); the slowest single step seen is also given (a refresh).")
    write_report("soap", "SOAP step benchmark", setup, results, ratios, args.out,
                 ("ms per step", "slowest step ms", "per step"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
