"""Measure the max error, in ULPs, of every identity in docs/derivations (not a test: a report).

Run:  python tests/identity_ulps.py [--cases N]

ULPs are elementwise, |a - b| / spacing(|b|) with b the reference (the optimizer's own result, an
exact Fraction oracle, or a 40-digit mpmath reference), maximised over N random cases (default
200) and, for the interpretations, over every installed backend with a linalg extension. Float64
throughout. Inverse matrix roots are reported normwise (max |X - Z| / spacing(max |Z|)), since
their elementwise error depends on the matrix's conditioning.
"""

from __future__ import annotations

import argparse
from fractions import Fraction

import numpy as np


def ulps(a, b, start=None) -> float:
    """max |a - b| in ulps of b; with ``start`` (the iterate before the step), in ulps of
    max(|b|, |start|): an iterate that lands near 0 by cancellation is then not charged for
    the cancellation, which no route can avoid."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ref = np.abs(b) if start is None else np.maximum(np.abs(b), np.abs(np.asarray(start)))
    return float(np.max(np.abs(a - b) / np.spacing(np.maximum(ref, 1e-300))))


def adam_case(backend, rng, lr, eps, n=6, steps=4):
    from adaptive_ref import adam_init, adam_step
    from adaptive_ref.interpretations import adam_moments_hat

    scale = 10.0 ** rng.uniform(-6, 3, size=n)
    p = backend.asarray(rng.normal(size=n))
    s = adam_init(p)
    for _ in range(steps):
        p_t = p
        p, s = adam_step(p, backend.asarray(rng.normal(size=n) * scale), s, lr=lr, eps=eps)
    m, v = adam_moments_hat(s)
    return p_t, p, m, v


def interpretations(cases):
    from adaptive_ref import interpretations as it
    from adaptive_ref.testing.backends import Backend

    rows = {}
    for b in Backend:
        if b.missing_reason() or b is Backend.DASK or not hasattr(b.xp, "linalg"):
            continue
        b.setup()
        rng = np.random.default_rng(0)
        for _ in range(cases):
            lr, eps = 10.0 ** rng.uniform(-4, -1), 10.0 ** rng.uniform(-9, 0)
            p_t, p, m, v = adam_case(b, rng, lr, eps)
            P, V, P0 = b.to_numpy(p), b.to_numpy(v), b.to_numpy(p_t)
            res = {
                "least squares == Adam": ulps(b.to_numpy(it.least_squares_step(
                    p_t, m, v, lr=lr, eps=eps)), P, P0),
            }
            post = it.bayes_tilt_step(p_t, m, v, lr=lr, eps=eps)
            res["Bayes tilt mean == Adam"] = ulps(b.to_numpy(post.mean), P, P0)
            res["Bayes tilt cov == lr/H"] = ulps(np.diag(b.to_numpy(post.cov)),
                                                 lr / (np.sqrt(V) + eps))
            post = it.kalman_adam_step_decoupled(p_t, m, v, lr=lr, eps=eps)
            res["Kalman decoupled mean == Adam(lr, eps)"] = ulps(b.to_numpy(post.mean), P, P0)
            p_t, p, m, v = adam_case(b, rng, lr, lr)
            P, V, P0 = b.to_numpy(p), b.to_numpy(v), b.to_numpy(p_t)
            post = it.kalman_adam_step(p_t, m, v, s2=lr)
            res["Kalman exact gain mean == Adam(lr = eps = s^2)"] = ulps(b.to_numpy(post.mean),
                                                                         P, P0)
            res["Kalman gain == s^2/(sqrt v + s^2)"] = ulps(
                np.diag(b.to_numpy(it.kalman_gain(v, s2=lr))), lr / (np.sqrt(V) + lr))
            res["Kalman posterior var == s^2 v/(sqrt v + s^2)"] = ulps(
                np.diag(b.to_numpy(post.cov)), lr * V / (np.sqrt(V) + lr))
            for k, val in res.items():
                rows.setdefault(k, {})
                rows[k][b.value] = max(rows[k].get(b.value, 0.0), val)
    return rows


def numpy_identities(cases):
    from adaptive_ref import adam_init, adam_step, rootfree_init, rootfree_step, von_init, von_step
    from adaptive_ref import interpretations as it
    from adaptive_ref.optimizers.ivon import ivon_hess_update

    rng = np.random.default_rng(1)
    out = {}

    def put(k, v, agg=max):
        out[k] = v if k not in out else agg(out[k], v)

    for _ in range(cases):
        # K ~ Sigma V^{-1}: 1 - K/K_apx vs eps/(sqrt v + eps), absolute error in units of 2^-52
        v = 10.0 ** rng.uniform(-12, 12, size=8)
        s2 = 10.0 ** rng.uniform(-10, 2)
        k = np.diag(it.kalman_gain(v, s2=s2))
        err = np.abs((1 - k / it.kalman_gain_approx(v, s2=s2)) - s2 / (np.sqrt(v) + s2))
        put("1 - K/K_approx == eps/(sqrt v + eps)  [units of 2^-52, absolute]",
            float(np.max(err) / np.finfo(float).eps))
        # AdaBayes-FP sandwich
        eta, sig = 10.0 ** rng.uniform(-5, -1), 10.0 ** rng.uniform(-3, 3)
        p = np.zeros(8)
        g = rng.normal(size=8) * 10.0 ** rng.uniform(-6, 2, size=8)
        a, s = adam_step(p, g, adam_init(p), lr=eta, eps=eta / sig)
        m, vv = it.adam_moments_hat(s)
        r = it.adabayes_fp_step(p, m, vv, eta=eta, sigma2=sig) / a
        put("AdaBayes-FP / Adam(eta, eta/sigma^2) ratio: min  [must be >= 1]", float(r.min()),
            min)
        put("AdaBayes-FP / Adam(eta, eta/sigma^2) ratio: max  [must be <= 2]", float(r.max()))
        # VON Newton limit
        h, c, th = 10.0 ** rng.uniform(-3, 3, size=6), rng.normal(size=6), rng.normal(size=6)
        new, _ = von_step(th, h * (th - c), von_init(th), lr=1.0, beta1=0.0, beta2=0.0,
                          prior_precision=0.0, hess=h)
        put("VON(beta1=beta2=0, lr=1, exact Hessian) == Newton solution", ulps(new, c, th))
        # VON == root-free
        pa = pb = rng.normal(size=5)
        sa, sb = von_init(pa), rootfree_init(pb)
        for _ in range(5):
            g = rng.normal(size=5)
            pa, sa = von_step(pa, g, sa, lr=0.1, beta1=0.0, beta2=0.99, prior_precision=0.0,
                              damping=1e-3, hess=32.0 * g * g)
            pb, sb = rootfree_step(pb, g, sb, lr=0.1, beta2=0.99, damping=1e-3, batch_size=32.0)
        put("VON(beta1=0, prior 0, hess=B g^2) == root-free RMSProp (5 steps)", ulps(pa, pb))
        # IVON
        hh = 10.0 ** rng.uniform(-6, 6, size=16)
        hat = rng.normal(size=16) * 10.0 ** rng.uniform(-6, 12, size=16)
        wd, b2 = 10.0 ** rng.uniform(-8, 0), rng.uniform(0, 1)
        hn = ivon_hess_update(hh, hat, beta2=b2, weight_decay=wd)
        put("IVON (h'+wd)/((h+wd)/2): min  [must be >= 1]",
            float(np.min((hn + wd) / ((hh + wd) / 2))), min)
        put("IVON fixed point h_hat = h", ulps(ivon_hess_update(hh, hh, beta2=b2,
                                                                weight_decay=wd), hh))
        # root-free vs Fraction oracle
        p = rng.normal(size=4)
        kw = dict(lr=0.01, beta2=0.99, damping=1e-3, batch_size=16.0, momentum=0.9,
                  weight_decay=1e-2)
        st = rootfree_init(p, momentum=0.9)
        F = Fraction
        fp, fs, fb = [F(x) for x in p], [F(1)] * 4, [F(0)] * 4
        for _ in range(5):
            g = rng.normal(size=4) * 10.0 ** rng.uniform(-3, 3, size=4)
            p, st = rootfree_step(p, g, st, **kw)
            for i, gi in enumerate(map(F, g)):
                fs[i] = F(0.99) * fs[i] + (1 - F(0.99)) * 16 * gi * gi
                fb[i] = F(0.9) * fb[i] + gi / (fs[i] + F(1e-3)) + F(1e-2) * fp[i]
                fp[i] = fp[i] - F(0.01) * fb[i]
        put("root-free RMSProp (5 steps) vs exact Fraction oracle",
            ulps(p, [float(x) for x in fp]))
    return out


def shampoo_identities(cases):
    import mpmath as mp
    import scipy.linalg as sl

    from adaptive_ref import shampoo_init, shampoo_step
    from adaptive_ref.optimizers.shampoo import (
        inverse_root,
        shampoo_direction,
        shampoo_direction_vec,
    )

    rng = np.random.default_rng(2)
    out = {}

    def put(k, v):
        out[k] = max(out.get(k, 0.0), v)

    mp.mp.dps = 40
    for i in range(cases):
        shape = ((3, 4), (2, 3, 2))[i % 2]
        roots = []
        for n in shape:
            q, _ = np.linalg.qr(rng.normal(size=(n, n)))
            roots.append(inverse_root(q @ np.diag(10.0 ** rng.uniform(-4, 0, n)) @ q.T, 4.0))
        g = rng.normal(size=shape)
        a, b = shampoo_direction(g, roots), shampoo_direction_vec(g, roots)
        put("Shampoo mode products == Kronecker/vec form  [normwise]",
            float(np.max(np.abs(a - b)) / np.spacing(np.max(np.abs(b)))))
        # rank-1 closed form
        u, v = rng.normal(size=4), rng.normal(size=3)
        u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
        sigma, eps = 10.0 ** rng.uniform(-1, 1), 10.0 ** rng.uniform(-3, 0)
        gg = sigma * np.outer(u, v)
        w, st = np.zeros((4, 3)), shampoo_init(np.zeros((4, 3)), eps=eps)
        for t in range(1, 4):
            w_new, st = shampoo_step(w, gg, st, lr=1.0, eps=eps)
            put("Shampoo rank-1 step == G (eps + t sigma^2)^(-1/2)  [normwise]",
                float(np.max(np.abs((w - w_new) - gg * (eps + t * sigma**2) ** -0.5))
                      / np.spacing(np.max(np.abs(gg * (eps + t * sigma**2) ** -0.5)))))
            w = w_new
    for cond in (1e2, 1e8):
        for p in (2, 4, 6):
            q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
            a = q @ np.diag(np.logspace(-np.log10(cond), 0, 6)) @ q.T
            a = (a + a.T) / 2
            e, qq = mp.eigsy(mp.matrix(a.tolist()))
            z = np.array((qq * mp.diag([x ** (mp.mpf(-1) / p) for x in e]) * qq.T).tolist(),
                         dtype=float)
            x = inverse_root(a, float(p))
            y = np.real(sl.fractional_matrix_power(a, -1.0 / p))
            den = np.spacing(np.max(np.abs(z)))
            out[f"inverse {p}-th root, cond {cond:.0e}: eigh vs mpmath  [normwise]"] = float(
                np.max(np.abs(x - z)) / den)
            out[f"inverse {p}-th root, cond {cond:.0e}: scipy vs mpmath  [normwise]"] = float(
                np.max(np.abs(y - z)) / den)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    args = ap.parse_args()
    for k, per in interpretations(args.cases).items():
        print(f"{k:58s} " + "  ".join(f"{b}={v:g}" for b, v in per.items()))
    for k, v in numpy_identities(args.cases).items():
        print(f"{k:58s} {v:.17g}")
    for k, v in shampoo_identities(max(2, args.cases // 4)).items():
        print(f"{k:58s} {v:g}")


if __name__ == "__main__":
    main()
