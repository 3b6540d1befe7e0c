"""numba kernels: one pass over memory per step, the reference's per-element operations in order.

Each ``<name>_kernel(flags)`` returns a compiled function specialised on the convention knobs
(the flags are closure constants, so numba folds every knob branch out of the loop and LLVM can
vectorise it; a loop with run-time knob branches runs about 5x slower). Kernels are compiled on
first use and cached on disk (``cache=True``).

Rules that keep the kernels bit-identical to the reference (docs/performance.md):

* ``fastmath=False`` (no FMA contraction, no reassociation) and ``error_model="numpy"``;
* every scalar arrives already cast to the array dtype (the wrappers do it, as NumPy 2 does when a
  Python float meets a float32 array), so no expression is silently promoted to float64;
* each expression copies the reference's grouping: ``b2 * v + omb2 * (g * g)``, never
  ``omb2 * g * g``; ``max`` follows ``numpy.maximum`` (a NaN in either argument wins).

Kernel arguments: ``(n, p, g, <state arrays>, <outputs>, c)``, all arrays 1-D and
C-contiguous; ``c`` holds the scalars, already in the array dtype (one array argument dispatches
faster than a dozen scalars). In the in-place kernels the output arguments are ignored (pass
empty arrays) and ``p`` and the state arrays are overwritten; separate outputs would alias the
inputs and defeat LLVM's vectoriser (its overlap check fails and it runs the scalar loop).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit, prange

__all__ = ["adam_kernel", "sgd_kernel", "adagrad_kernel", "rmsprop_kernel", "adamax_kernel",
           "nadam_kernel", "radam_kernel", "BLOCK"]

_OPTS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)
BLOCK = 1 << 16  # elements per parallel work item (256 KiB of float32 per array)


def _flag_name(prefix: str, flags: tuple) -> str:
    return prefix + "_" + "_".join(str(int(f)) if isinstance(f, bool) else str(f) for f in flags)


def _compile(block, name: str, parallel: bool):
    """Wrap ``block(lo, hi, *args)`` in a serial or a ``prange``-over-blocks driver."""
    block.__name__ = block.__qualname__ = name + "_block"
    blk = njit(**_OPTS)(block)
    if parallel:
        def driver(n, *args):
            nb = (n + BLOCK - 1) // BLOCK
            for b in prange(nb):
                lo = b * BLOCK
                hi = min(n, lo + BLOCK)
                blk(lo, hi, *args)
    else:
        def driver(n, *args):
            blk(0, n, *args)
    driver.__name__ = driver.__qualname__ = name + ("_par" if parallel else "_ser")
    return njit(parallel=parallel, **_OPTS)(driver)


def _max(a, b):
    return a if (a >= b or a != a) else b


_nmax = njit(inline="always", **_OPTS)(_max)


@cache
def adam_kernel(maximize: bool, wd_mode: int, ams: int, bc: bool, hat: bool, use_er: bool,
                inplace: bool, parallel: bool):
    """Adam/AMSGrad/AdamW. wd_mode: 0 none, 1 coupled (g + wd p), 2 decoupled (p * decay).
    ams: 0 off, 1 max over raw v, 2 max over corrected v."""

    def block(lo, hi, p, g, m, v, vmax, po, mo, vo, vmo, c):
        b1 = c[0]
        omb1 = c[1]
        b2 = c[2]
        omb2 = c[3]
        bc1 = c[4]
        bc2 = c[5]
        lr = c[6]
        eps = c[7]
        eps_root = c[8]
        wd = c[9]
        decay = c[10]
        step = c[11]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if wd_mode == 1:
                gi = gi + wd * pi
            if wd_mode == 2:
                pi = pi * decay
            mi = b1 * m[i] + omb1 * gi
            vi = b2 * v[i] + omb2 * (gi * gi)
            if ams == 1:
                vm = _nmax(vmax[i], vi)
                raw = vm
                corr = vm / bc2 if bc else vm
            elif ams == 2:
                nh = vi / bc2 if bc else vi
                vm = _nmax(vmax[i], nh)
                raw = vm * bc2 if bc else vm
                corr = vm
            else:
                vm = vi
                raw = vi
                corr = vi / bc2 if bc else vi
            if hat:
                root = np.sqrt(raw + eps_root) if use_er else np.sqrt(raw)
                pn = pi - step * (mi / (root + eps))
            else:
                root = np.sqrt(corr + eps_root) if use_er else np.sqrt(corr)
                mh = mi / bc1 if bc else mi
                pn = pi - lr * (mh / (root + eps))
            if inplace:
                p[i] = pn
                m[i] = mi
                v[i] = vi
                if ams:
                    vmax[i] = vm
            else:
                po[i] = pn
                mo[i] = mi
                vo[i] = vi
                if ams:
                    vmo[i] = vm

    flags = (maximize, wd_mode, ams, bc, hat, use_er, inplace)
    return _compile(block, _flag_name("adam", flags), parallel)


@cache
def sgd_kernel(maximize: bool, coupled: bool, has_buf: bool, inside: bool, nesterov: bool,
               first: bool, inplace: bool, parallel: bool):
    """SGD. ``first``: the step where the buffer is set to x (count == 0, no dampen_first_step)."""

    def block(lo, hi, p, g, b, po, bo, c):
        lr = c[0]
        wd = c[1]
        mom = c[2]
        omd = c[3]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            if not has_buf:
                pn = pi - lr * gi
                bi = gi  # unused
            else:
                x = lr * gi if inside else gi
                bi = mom * b[i] + omd * x
                if first:
                    bi = x
                d = x + mom * bi if nesterov else bi
                pn = pi - d if inside else pi - lr * d
            if inplace:
                p[i] = pn
                if has_buf:
                    b[i] = bi
            else:
                po[i] = pn
                if has_buf:
                    bo[i] = bi

    flags = (maximize, coupled, has_buf, inside, nesterov, first, inplace)
    return _compile(block, _flag_name("sgd", flags), parallel)


@cache
def adagrad_kernel(maximize: bool, coupled: bool, inside: bool, inplace: bool, parallel: bool):
    """Adagrad; ``inside``: g / sqrt(s + eps), 0 where s is not > 0."""

    def block(lo, hi, p, g, s, po, so, c):
        clr = c[0]
        eps = c[1]
        wd = c[2]
        zero = c[3]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            si = s[i] + gi * gi
            if inside:
                if si > 0:
                    u = gi / np.sqrt(si + eps)
                else:
                    u = gi * zero  # g * 0: a NaN or inf gradient still gives NaN
                pn = pi - clr * u
            else:
                pn = pi - clr * (gi / (np.sqrt(si) + eps))
            if inplace:
                p[i] = pn
                s[i] = si
            else:
                po[i] = pn
                so[i] = si

    flags = (maximize, coupled, inside, inplace)
    return _compile(block, _flag_name("adagrad", flags), parallel)


@cache
def rmsprop_kernel(maximize: bool, coupled: bool, centered: bool, bc: bool, inside_eps: bool,
                   has_buf: bool, lr_inside: bool, nesterov: bool, inplace: bool,
                   parallel: bool):
    """RMSprop: plain, centred, with momentum; bias correction divides both averages."""

    def block(lo, hi, p, g, v, m, b, po, vo, mo, bo, c):
        lr = c[0]
        alpha = c[1]
        oma = c[2]
        eps = c[3]
        mom = c[4]
        wd = c[5]
        bcf = c[6]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            vi = alpha * v[i] + oma * (gi * gi)
            mi = alpha * m[i] + oma * gi if centered else vi
            vh = vi / bcf if bc else vi
            if centered:
                mh = mi / bcf if bc else mi
                w = vh - mh * mh
            else:
                w = vh
            den = np.sqrt(w + eps) if inside_eps else np.sqrt(w) + eps
            u = gi / den
            if not has_buf:
                pn = pi - lr * u
                bi = u  # unused
            else:
                x = lr * u if lr_inside else u
                bi = mom * b[i] + x
                d = x + mom * bi if nesterov else bi
                pn = pi - d if lr_inside else pi - lr * d
            if inplace:
                p[i] = pn
                v[i] = vi
                if centered:
                    m[i] = mi
                if has_buf:
                    b[i] = bi
            else:
                po[i] = pn
                vo[i] = vi
                if centered:
                    mo[i] = mi
                if has_buf:
                    bo[i] = bi

    flags = (maximize, coupled, centered, bc, inside_eps, has_buf, lr_inside, nesterov, inplace)
    return _compile(block, _flag_name("rmsprop", flags), parallel)


@cache
def adamax_kernel(maximize: bool, coupled: bool, eps_in_max: bool, inplace: bool,
                  parallel: bool):
    """Adamax; ``eps_in_max``: u = max(b2 u, |g| + eps), else max(b2 u, |g|) and u + eps."""

    def block(lo, hi, p, g, m, u, po, mo, uo, c):
        b1 = c[0]
        omb1 = c[1]
        b2 = c[2]
        eps = c[3]
        clr = c[4]
        wd = c[5]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            mi = b1 * m[i] + omb1 * gi
            if eps_in_max:
                ui = _nmax(b2 * u[i], abs(gi) + eps)
                den = ui
            else:
                ui = _nmax(b2 * u[i], abs(gi))
                den = ui + eps
            pn = pi - clr * (mi / den)
            if inplace:
                p[i] = pn
                m[i] = mi
                u[i] = ui
            else:
                po[i] = pn
                mo[i] = mi
                uo[i] = ui

    flags = (maximize, coupled, eps_in_max, inplace)
    return _compile(block, _flag_name("adamax", flags), parallel)


@cache
def nadam_kernel(maximize: bool, coupled: bool, decoupled: bool, inplace: bool, parallel: bool):
    """NAdam (torch form): p - coef_g (g/d) - coef_m (m/d), d = sqrt(v / bc2) + eps."""

    def block(lo, hi, p, g, m, v, po, mo, vo, c):
        b1 = c[0]
        omb1 = c[1]
        b2 = c[2]
        omb2 = c[3]
        bc2 = c[4]
        eps = c[5]
        cg = c[6]
        cm = c[7]
        wd = c[8]
        decay = c[9]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            if decoupled:
                pi = pi * decay
            mi = b1 * m[i] + omb1 * gi
            vi = b2 * v[i] + omb2 * (gi * gi)
            den = np.sqrt(vi / bc2) + eps
            pn = pi - cg * (gi / den) - cm * (mi / den)
            if inplace:
                p[i] = pn
                m[i] = mi
                v[i] = vi
            else:
                po[i] = pn
                mo[i] = mi
                vo[i] = vi

    flags = (maximize, coupled, decoupled, inplace)
    return _compile(block, _flag_name("nadam", flags), parallel)


@cache
def radam_kernel(maximize: bool, coupled: bool, decoupled: bool, hat: bool, use_er: bool,
                 rectify: bool, inplace: bool, parallel: bool):
    """RAdam; ``rectify`` (rho_t above the threshold) is a per-step scalar, hence a flag."""

    def block(lo, hi, p, g, m, v, po, mo, vo, c):
        b1 = c[0]
        omb1 = c[1]
        b2 = c[2]
        omb2 = c[3]
        bc1 = c[4]
        bc2 = c[5]
        sbc2 = c[6]
        lr = c[7]
        eps = c[8]
        eps_root = c[9]
        rect = c[10]
        one = c[11]
        wd = c[12]
        decay = c[13]
        for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap
            gi = g[i]
            if maximize:
                gi = -gi
            pi = p[i]
            if coupled:
                gi = gi + wd * pi
            if decoupled:
                pi = pi * decay
            mi = b1 * m[i] + omb1 * gi
            vi = b2 * v[i] + omb2 * (gi * gi)
            mh = mi / bc1
            if rectify:
                if hat:
                    root = np.sqrt(vi + eps_root) if use_er else np.sqrt(vi)
                    ad = sbc2 / (root + eps)
                else:
                    vh = vi / bc2
                    root = np.sqrt(vh + eps_root) if use_er else np.sqrt(vh)
                    ad = one / (root + eps)
                pn = pi - mh * lr * ad * rect
            else:
                pn = pi - mh * lr
            if inplace:
                p[i] = pn
                m[i] = mi
                v[i] = vi
            else:
                po[i] = pn
                mo[i] = mi
                vo[i] = vi

    flags = (maximize, coupled, decoupled, hat, use_er, rectify, inplace)
    return _compile(block, _flag_name("radam", flags), parallel)
