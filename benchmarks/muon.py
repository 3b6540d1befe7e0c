"""Muon: time one optimizer step on a model-like tree, the reference against torch and optax.

Run (the OpenBLAS variables this machine sets slow NumPy's BLAS: unset them for this command
only, never in tests or CI)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.muon

The tree: hidden matrices (1024, 1024) x 2, (1024, 4096), (4096, 1024) and a bias per matrix,
float32, as in a transformer block. Each variant steps the whole tree (matrices by Muon, biases
by its AdamW fallback) with lr 0.02, wd 0.1, momentum 0.95, Nesterov, 5 Newton–Schulz steps:

* ``ref numpy f32``: ``make_routed("muon", profile="torch", ns_dtype="float32")`` on NumPy
  (NumPy has no bfloat16);
* ``ref torch bf16``: the torch profile on torch tensors (bfloat16 Newton–Schulz, as torch);
* ``ref torch f32``: the same with ``ns_dtype="float32"``;
* ``ref jax jit f32``: the reference's routed step under ``jax.jit`` (float32);
* ``torch.optim.Muon``: torch's Muon (bfloat16 forced) on the matrices + ``torch.optim.AdamW``;
* ``optax.contrib.muon jit``: optax's Muon under ``jax.jit`` (float32; biases by its AdamW).

Times are medians of ``--rounds`` steps after one warm-up step, on this machine's CPU; the BLAS
that ran (threadpoolctl's ``threadpool_info()``) and the thread counts are printed with them.
Results go to ``benchmarks/results/muon-<UTC time>.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

SHAPES = [(1024, 1024), (1024, 1024), (1024, 4096), (4096, 1024)]
HP = dict(lr=0.02, weight_decay=0.1, momentum=0.95)


def _tree(shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for i, s in enumerate(shapes):
        kernel = (rng.standard_normal(s) / np.sqrt(s[1])).astype(np.float32)
        params[f"layer{i}"] = {"kernel": kernel, "bias": np.zeros(s[0], np.float32)}
    return params


def _grads(params, seed=1):
    rng = np.random.default_rng(seed)
    return {k: {n: rng.standard_normal(a.shape).astype(np.float32) for n, a in v.items()}
            for k, v in params.items()}


def _map(fn, tree):
    return {k: {n: fn(a) for n, a in v.items()} for k, v in tree.items()}


def opt_variant(make_opt, asarray=None):
    """A variant stepping the tree with the reference optimizer ``make_opt()`` (an object with
    ``init`` and ``step`` over trees): eagerly on ``asarray``'s arrays, or, without ``asarray``,
    under ``jax.jit`` on JAX arrays."""
    def make(params):
        opt = make_opt()
        if asarray is None:
            import jax
            import jax.numpy as jnp

            to, step_fn = jnp.asarray, jax.jit(opt.step)
        else:
            to, step_fn = asarray, opt.step
        p = _map(to, params)
        g = _map(to, _grads(params))
        box = [p, opt.init(p)]

        def step():
            box[0], box[1] = step_fn(box[0], g, box[1])
            return box[0] if asarray is None else None
        return step
    return make


def _routed_muon(**settings):
    from adaptive_ref.routing import make_routed

    return lambda: make_routed("muon", profile="torch", **HP, **settings)


def ref_variant(asarray, **settings):
    return opt_variant(_routed_muon(**settings), asarray)


ref_jax = opt_variant(_routed_muon(ns_dtype="float32"))


def torch_muon(params):
    import torch

    mats = [torch.nn.Parameter(torch.tensor(v["kernel"])) for v in params.values()]
    biases = [torch.nn.Parameter(torch.tensor(v["bias"])) for v in params.values()]
    grads = _grads(params)
    for p, v in zip(mats, grads.values(), strict=True):
        p.grad = torch.tensor(v["kernel"])
    for p, v in zip(biases, grads.values(), strict=True):
        p.grad = torch.tensor(v["bias"])
    muon = torch.optim.Muon(mats, **HP)
    adamw = torch.optim.AdamW(biases, lr=HP["lr"])

    def step():
        muon.step()
        adamw.step()
    return step


def optax_variant(make_tx):
    """A variant stepping the tree with the optax transformation ``make_tx(optax)`` under
    ``jax.jit`` (float32)."""
    def make(params):
        import jax
        import jax.numpy as jnp
        import optax

        tx = make_tx(optax)
        p = _map(jnp.asarray, params)
        g = _map(jnp.asarray, _grads(params))
        box = [p, tx.init(p)]

        @jax.jit
        def jstep(p, s):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        def step():
            box[0], box[1] = jstep(box[0], box[1])
            return box[0]
        return step
    return make


optax_muon = optax_variant(lambda optax: optax.contrib.muon(
    learning_rate=HP["lr"], weight_decay=HP["weight_decay"], beta=HP["momentum"]))


def _block(x):
    if x is None:
        return
    import jax

    jax.block_until_ready(x)


def _time(make, params, rounds):
    step = make(params)
    _block(step())  # warm-up (and jit compilation)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        _block(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _blas_info() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl is not installed"]
    lines = []
    for pool in threadpool_info():
        lines.append(f"{pool.get('internal_api')} {pool.get('version')} "
                     f"kernel={pool.get('architecture', '-')} threads={pool.get('num_threads')} "
                     f"({Path(pool.get('filepath', '')).name})")
    return lines


def write_report(kind: str, title: str, setup: str, results: dict, ratios: list,
                 out: Path | None, columns: tuple[str, str, str]) -> Path:
    """Print and write ``benchmarks/results/<kind>-<UTC time>.md`` (or ``out``): the setup, the
    machine, the OpenBLAS variables, the BLAS that ran (threadpoolctl), a table of ``results``
    (name -> (seconds, seconds), headed by ``columns[:2]``) and the ``ratios`` (pairs of names,
    of the first value, headed by ``columns[2]``)."""
    import jax
    import torch

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OMP_NUM_THREADS")}
    lines = [f"# {title} ({stamp})", "", setup, "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
             f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
             f"threads), jax {jax.__version__}.",
             f"Environment: {env}.", "", "BLAS (threadpoolctl.threadpool_info()):", ""]
    lines += [f"- {x}" for x in _blas_info()]
    lines += ["", f"| variant | {columns[0]} | {columns[1]} |", "|---|---:|---:|"]
    lines += [f"| {k} | {v[0] * 1e3:.1f} | {v[1] * 1e3:.1f} |" for k, v in results.items()]
    lines += ["", f"| ratio | {columns[2]} |", "|---|---:|"]
    lines += [f"| {a} / {b} | {results[a][0] / results[b][0]:.2f}x |" for a, b in ratios]
    text = "\n".join(lines) + "\n"
    print(text)
    out = out or Path(__file__).parent / "results" / f"{kind}-{stamp}.md"
    out.write_text(text, encoding="utf-8")
    print(f"written: {out}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from adaptive_ref._numerics import scalar_dtype  # noqa: F401  (import before timing)

    params = _tree(SHAPES)
    variants = {
        "ref numpy f32": ref_variant(np.asarray, ns_dtype="float32"),
        "ref torch bf16": ref_variant(torch.tensor),
        "ref torch f32": ref_variant(torch.tensor, ns_dtype="float32"),
        "ref jax jit f32": ref_jax,
        "torch.optim.Muon (bf16)": torch_muon,
        "optax.contrib.muon jit": optax_muon,
    }
    results = {}
    for name, make in variants.items():
        results[name] = _time(make, params, args.rounds)
        print(f"{name:26s} median {results[name][0] * 1e3:9.1f} ms  min "
              f"{results[name][1] * 1e3:9.1f} ms", flush=True)
    ratios = [("ref numpy f32", "optax.contrib.muon jit"),
              ("ref jax jit f32", "optax.contrib.muon jit"),
              ("ref torch bf16", "torch.optim.Muon (bf16)"),
              ("ref torch f32", "torch.optim.Muon (bf16)")]
    setup = (f"Tree: matrices {SHAPES} + one bias each, float32; lr 0.02, wd 0.1, momentum "
             f"0.95, 5 Newton-Schulz steps. Median of {args.rounds} steps after one warm-up.")
    write_report("muon", "Muon step benchmark", setup, results, ratios, args.out,
                 ("median ms", "min ms", "median"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
