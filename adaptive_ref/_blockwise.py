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
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import array_api_compat as aac

from ._checks import NP

__all__ = ["BLOCK", "run", "functional"]

BLOCK = 1 << 16
_ENABLED = [True]


@contextlib.contextmanager
def functional():
    """Within this block, :func:`run` evaluates updates on whole arrays (for tests)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


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
