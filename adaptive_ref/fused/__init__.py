"""Fused fast paths, tested bit-identical to the reference step functions.

* NumPy (CPU): numba kernels, one pass over memory per step, optionally multi-threaded
  (``numba.set_num_threads``). ``adam_step`` etc. have the reference's signature and return;
  ``adam_step_`` etc. update ``param`` and the state in place (the fastest form). Needs the
  ``fused`` extra (numba); importing this package without numba raises ImportError.
* CuPy (NVIDIA GPU): :mod:`adaptive_ref.fused.cupy_kernels` (imported on its own, needs CuPy).
* Trees: :func:`flat_tree` lays a tree's leaves into one contiguous buffer so that one fused call
  steps the whole tree.

See ``docs/performance.md`` for the measured speed and the bit-identity argument.
"""

try:
    import numba  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without numba
    msg = ("adaptive_ref.fused needs numba (install the 'fused' extra: "
           "pip install 'adaptive-ref[fused]')")
    raise ImportError(msg) from err

from .flat import flat_tree
from .numba_path import *  # noqa: F401,F403
from .numba_path import __all__ as _steps

__all__ = [*_steps, "flat_tree"]
