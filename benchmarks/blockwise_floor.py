"""Where the reference's time goes at N = 1e7 (Adam fp32, NumPy), against the bandwidth limit.

    python -m benchmarks.blockwise_floor [--rounds 7] [--n 10000000]

Issue 14, target 2 asks for the reference within 4x of the limit. The reference is pure: it
returns three fresh parameter-sized arrays (p, m, v), and it evaluates its update with one NumPy
ufunc per rounding step, block by block (:mod:`adaptive_ref._blockwise`). This prints, each as
a ratio to the limit (medians of interleaved rounds of the measuring thread's CPU time):

- ``reference``: ``adam_step`` itself;
- ``fresh outputs only``: the blocked driver with an update that does no arithmetic (it returns
  its p, m, v slices): three fresh arrays written block by block, their page faults included,
  and the input reads; no update can cost less than this;
- ``ufunc floor``: Adam's 14 rounding steps as ufuncs with ``out=`` into two reused scratch
  blocks and the state itself (in place: no fresh memory, no temporaries, no copies), the least
  a ufunc-per-operation evaluation can cost;

so that ``fresh outputs only + ufunc floor`` bounds what a pure ufunc reference can reach.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

BLOCK = 1 << 16


def _ufunc_floor(p, g, m, v):
    """One in-place Adam step (default hyperparameters, step 1's factors) with ``out=``."""
    f = lambda x: np.asarray(x, np.float32)  # noqa: E731
    b1, w1, b2, w2, eps, lr = map(f, (0.9, 0.1, 0.999, 0.001, 1e-8, 1e-3))
    bc1, bc2 = f(0.1), f(0.001)
    s1, s2 = np.empty(BLOCK, np.float32), np.empty(BLOCK, np.float32)

    def step():
        for lo in range(0, p.size, BLOCK):
            hi = min(p.size, lo + BLOCK)
            P, G, M, V, a, b = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], s1[:hi - lo], s2[:hi - lo]
            np.multiply(b1, M, out=M)
            np.multiply(w1, G, out=a)
            np.add(M, a, out=M)
            np.multiply(b2, V, out=V)
            np.multiply(G, G, out=a)
            np.multiply(w2, a, out=a)
            np.add(V, a, out=V)
            np.divide(V, bc2, out=a)
            np.sqrt(a, out=a)
            np.add(a, eps, out=a)
            np.divide(M, bc1, out=b)
            np.divide(b, a, out=b)
            np.multiply(b, lr, out=b)
            np.subtract(P, b, out=P)
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.blockwise_floor",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=10**7)
    args = ap.parse_args(argv)

    import array_api_compat.numpy as xp

    import adaptive_ref as ar
    from adaptive_ref import _blockwise

    rng = np.random.default_rng(0)
    p, g = (rng.standard_normal(args.n).astype(np.float32) for _ in range(2))
    state = ar.adam_init(p)
    a, b = np.ones(args.n, np.float32), np.ones(args.n, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    steps = {
        "limit": lambda: np.add(a, b, out=a),
        "reference": lambda: ar.adam_step(p, g, state),
        "fresh outputs only": lambda: _blockwise.run(
            xp, lambda p_, g_, m_, v_: (p_, m_, v_), (p, g, state.mu, state.nu)),
        "ufunc floor": _ufunc_floor(p.copy(), g, m, v),
    }
    samples = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, f in steps.items():
            t0 = time.thread_time()
            f()
            samples[k].append(time.thread_time() - t0)
    med = {k: float(np.median(s)) for k, s in samples.items()}
    limit = med.pop("limit") * 28 / 12
    print(f"Adam fp32, N = {args.n:.0e}, limit {limit * 1e3:.1f} ms "
          f"(load average {os.getloadavg()[0]:.1f})")
    for k, t in med.items():
        print(f"  {k:20s} {t * 1e3:6.1f} ms  {t / limit:5.2f}x limit")
    bound = med["fresh outputs only"] + med["ufunc floor"]
    print(f"  {'outputs + floor':20s} {bound * 1e3:6.1f} ms  {bound / limit:5.2f}x limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
