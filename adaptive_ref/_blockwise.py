"""Evaluate an elementwise update block by block, so its temporaries stay in the CPU cache.

A step function's per-element update, written with array operations, allocates a temporary the
size of the parameter for each operation; on large NumPy arrays each such temporary costs a trip
through main memory (and page faults for a fresh allocation), about 12x the memory-bandwidth
limit for Adam. :func:`run` applies the same update to slices of 64 Ki elements and writes the
results into fresh output arrays: every temporary is then small and cache-resident, the
per-element operations and their order are unchanged (so are the results, bit for bit), and the
step reads and writes each large array about once.

It applies where it helps and is safe: NumPy arrays (writeable, eager, on the CPU) larger than
one block. Other namespaces evaluate the update on whole arrays, as written (JAX and Dask fuse or
chunk it themselves; GPU backends would pay a kernel launch per block). The context manager
:func:`functional` turns blocking off, so tests can compare both forms.

A pure step that evaluates one ufunc per rounding step cannot come near the memory-bandwidth
limit even blocked (docs/performance.md, issue 14: writing the fresh outputs and the ufunc passes
cost about 7x the limit for Adam). So the step functions that have a generated fused kernel
(:mod:`adaptive_ref.fused`, numba) hand such arrays to it, through :func:`fused`: one pass over
memory, the same per-element operations in the same order from the same description, tested bit
for bit against the blocked ufunc evaluation. Without numba, inside :func:`functional` or
:func:`unfused`, or with ``ADAPTIVE_REF_FUSED=0`` in the environment, the ufunc evaluation runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Callable, Sequence

import array_api_compat as aac

from ._checks import NP

__all__ = ["BLOCK", "run", "functional", "unfused", "fusable", "fused", "in_fused"]

BLOCK = 1 << 16
_ENABLED = [True]
_FUSE = [os.environ.get("ADAPTIVE_REF_FUSED", "1") != "0"]
_IN_FUSED = contextvars.ContextVar("adaptive_ref_in_fused", default=False)
_KERNELS: list = []  # [adaptive_ref.fused.numba_path, or None without numba], filled on first use


@contextlib.contextmanager
def functional():
    """Within this block, :func:`run` evaluates updates on whole arrays (for tests)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


@contextlib.contextmanager
def unfused():
    """Within this block, large NumPy arrays take the blocked ufunc evaluation, not the fused
    kernel (for tests that compare the two, and for users who want the ufunc form)."""
    _FUSE.append(False)
    try:
        yield
    finally:
        _FUSE.pop()


def fusable(param) -> bool:
    """True when a step with a fused kernel should hand ``param`` to :func:`fused`: a NumPy
    array larger than one block, outside :func:`functional` and :func:`unfused`, and not already
    inside a fused call (whose fallback is the plain reference)."""
    return type(param) is NP.ndarray and param.size > BLOCK and _ENABLED[-1] and _FUSE[-1] \
        and not _IN_FUSED.get()


def in_fused() -> bool:
    """True while :func:`fused` runs: the fused kernels then use one thread (a step called from
    several threads at once, as Dask does, must not launch nested thread pools)."""
    return _IN_FUSED.get()


def fused(step: Callable, args: dict):
    """``step``'s result computed by its fused kernel (the function of the same name in
    :mod:`adaptive_ref.fused`), one thread; ``args``: the step's arguments by name (its
    ``locals()`` on entry). The fused function takes inputs it covers to its kernel and the rest
    to the reference, which this call marks so that it does not come back here. Without numba:
    ``step`` itself, evaluated by ufuncs. Should the fused function fail where the ufunc
    evaluation succeeds (a broken numba install, a kernel that cannot compile here), the ufunc
    result is returned with a RuntimeWarning naming the failure; invalid input raises the
    reference's own error either way."""
    if not _KERNELS:
        try:
            from .fused import numba_path
        except ImportError:
            numba_path = None
        _KERNELS.append(numba_path)
    kernels = _KERNELS[0]
    target = step if kernels is None else getattr(kernels, step.__name__)
    args = dict(args)
    param, grad, state = args.pop("param"), args.pop("grad"), args.pop("state")
    token = _IN_FUSED.set(True)
    try:
        try:
            return target(param, grad, state, **args)
        except Exception as err:
            if target is step:
                raise
            out = step(param, grad, state, **args)  # invalid input raises its error here
            msg = (f"{step.__name__}: the fused kernel failed ({type(err).__name__}: {err}); "
                   f"the result is the ufunc evaluation's (ADAPTIVE_REF_FUSED=0 skips the kernel)")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            return out
    finally:
        _IN_FUSED.reset(token)


def run(xp, update: Callable, arrays: Sequence, *, block: int | None = None) -> tuple:
    """``update(*arrays)`` (arrays of one shape, or None) -> tuple of arrays of that shape (or
    None); evaluated per block of ``block`` elements (default :data:`BLOCK`) on large NumPy
    arrays."""
    block = BLOCK if block is None else block
    first = arrays[0]
    if type(first) is not NP.ndarray or not _ENABLED[-1] or first.size <= block \
            or not aac.is_numpy_namespace(xp) or first.ndim == 0:
        return update(*arrays)
    shape, n = first.shape, first.size
    flat = [None if a is None else xp.reshape(a, (-1,)) for a in arrays]
    outs = None
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        res = update(*[None if a is None else a[lo:hi] for a in flat])
        if outs is None:
            outs = [None if r is None else xp.empty((n,), dtype=r.dtype) for r in res]
        for o, r in zip(outs, res, strict=True):
            if o is not None:
                o[lo:hi] = r
    return tuple(None if o is None else xp.reshape(o, shape) for o in outs)
