"""Sparse step vs dense step on NumPy: lazy Adam on an embedding table (issue 5's benchmark).

One command (from the repository root)::

    python -m benchmarks.bench_sparse            # 1e6 x 64 float32 table, 1,000 rows a step
    python -m benchmarks.bench_sparse --quick    # small sizes, seconds

Measured in one process, medians over repeated steps:

1. the dense Adam step (``adam_step``, eps-hat, on the zero-filled gradient) against the lazy
   step (``lazy_adam_step`` on a :class:`RowSparse` of the touched rows), pure (``donate=False``,
   the default: the inputs are not changed, so each of param, m and v is copied once) and
   donating (``donate=True``: NumPy writes the touched rows in place);
2. the lazy step's time for tables of 1e4, 1e5 and 1e6 rows at a fixed 1,000 touched rows, pure
   and donating; and sparse Adagrad likewise.

The pure step's cost is one table copy per state array (memory bandwidth, O(table)); only the
donating step's cost follows the touched rows. Every step gets fresh random indices (unique rows);
the same gradients are replayed for each variant. The zero pages of a fresh state are written
once before timing, so the donating step is timed in its steady state, not on first-touch page
faults.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from adaptive_ref import adam_init, adam_step
from adaptive_ref.sparse import (
    RowSparse,
    lazy_adam_init,
    lazy_adam_step,
    sparse_adagrad_init,
    sparse_adagrad_step,
)


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _grads(rng, n: int, d: int, k: int, count: int):
    return [RowSparse(rng.choice(n, size=k, replace=False).astype(np.int64),
                      rng.standard_normal((k, d)).astype(np.float32)) for _ in range(count)]


def _sparse_time(step, init, n: int, d: int, k: int, reps: int, donate: bool) -> float:
    rng = np.random.default_rng(1)
    p = rng.standard_normal((n, d)).astype(np.float32)
    st = init(p)
    for a in st[1:]:
        if a is not None:
            a[...] = 0  # fault in the zero pages now: steady-state steps, not first touches
    state = [p, st]
    grads = iter(_grads(rng, n, d, k, reps + 2))

    def one():
        state[0], state[1] = step(state[0], next(grads), state[1], donate=donate)

    one()  # warm-up
    return _median_time(one, reps)


def _dense_time(n: int, d: int, k: int, reps: int) -> float:
    rng = np.random.default_rng(1)
    p = rng.standard_normal((n, d)).astype(np.float32)
    state = [p, adam_init(p)]
    g = np.zeros((n, d), dtype=np.float32)
    rows = _grads(rng, n, d, k, reps + 1)
    it = iter(rows)

    def one():
        r = next(it)
        g[...] = 0
        g[r.indices] = r.values  # the zero-filled gradient (filling it is not timed below)
        t0 = time.perf_counter()
        state[0], state[1] = adam_step(state[0], g, state[1], eps_placement="hat")
        return time.perf_counter() - t0

    one()
    return statistics.median(one() for _ in range(reps))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args(argv)
    d, k = 64, 1000
    big = 10**4 if args.quick else 10**6
    sizes = [10**3, 10**4] if args.quick else [10**4, 10**5, 10**6]
    reps_dense, reps_sparse = (3, 10) if args.quick else (5, 30)

    print(f"# sparse vs dense Adam step, NumPy {np.__version__}, float32, row width {d}, "
          f"{k} touched rows per step")
    print(f"# machine: {platform.machine()} {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.2f}; medians of {reps_dense} dense / {reps_sparse} sparse steps")
    dense = _dense_time(big, d, k, reps_dense)
    pure = _sparse_time(lazy_adam_step, lazy_adam_init, big, d, k, reps_sparse, donate=False)
    don = _sparse_time(lazy_adam_step, lazy_adam_init, big, d, k, reps_sparse, donate=True)
    print(f"\n## table {big:.0e} x {d}\n")
    print("| step | median time | dense / this |")
    print("|---|---|---|")
    print(f"| dense adam_step (eps-hat, zero-filled gradient) | {dense * 1e3:.2f} ms | 1.0 |")
    print(f"| lazy_adam_step, pure (donate=False) | {pure * 1e3:.2f} ms | {dense / pure:.1f}x |")
    print(f"| lazy_adam_step, donate=True | {don * 1e3:.3f} ms | {dense / don:.0f}x |")

    print(f"\n## sparse step time vs table size ({k} touched rows, width {d})\n")
    print("| rows | lazy Adam pure | lazy Adam donate | sparse Adagrad pure | "
          "sparse Adagrad donate |")
    print("|---|---|---|---|---|")
    for n in sizes:
        row = [_sparse_time(lazy_adam_step, lazy_adam_init, n, d, k, reps_sparse, False),
               _sparse_time(lazy_adam_step, lazy_adam_init, n, d, k, reps_sparse, True),
               _sparse_time(sparse_adagrad_step, sparse_adagrad_init, n, d, k, reps_sparse,
                            False),
               _sparse_time(sparse_adagrad_step, sparse_adagrad_init, n, d, k, reps_sparse,
                            True)]
        print(f"| {n:.0e} | " + " | ".join(f"{t * 1e3:.3f} ms" for t in row) + " |")


if __name__ == "__main__":
    main()
