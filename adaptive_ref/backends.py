"""The array backends adaptive-ref knows, as an enum with one way to build arrays on each.

:meth:`Backend.missing_reason` says why a backend is not usable here (not installed, no CUDA
device). ``NUMPY_READONLY`` hands out read-only NumPy arrays, so any write into an
input fails loudly. The test fixture over these (:mod:`adaptive_ref.testing.backends`) and the
conformance adapters (:mod:`adaptive_ref.conformance.adapters.reference`) both build on it.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any

__all__ = ["Backend"]


class Backend(enum.Enum):
    NUMPY = "numpy"
    NUMPY_READONLY = "numpy_readonly"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"
    DASK = "dask"
    CUPY = "cupy"

    @property
    def module_name(self) -> str:
        return {
            "numpy": "numpy", "numpy_readonly": "numpy", "array_api_strict": "array_api_strict",
            "torch": "torch", "jax": "jax.numpy", "dask": "dask.array", "cupy": "cupy",
        }[self.value]

    def missing_reason(self) -> str | None:
        """None if usable here, else why not (for the skip message)."""
        try:
            mod = importlib.import_module(self.module_name)
        except Exception as err:  # ImportError or a broken install
            return f"{self.value} is not installed ({type(err).__name__}: {err})"
        if self is Backend.CUPY:
            try:
                if mod.cuda.runtime.getDeviceCount() < 1:
                    return "cupy is installed but no CUDA device is present"
            except Exception as err:
                return f"cupy is installed but CUDA is unusable ({err})"
        return None

    @property
    def xp(self) -> Any:
        """The array-API namespace (array-api-compat's wrapper where there is one)."""
        import array_api_compat as aac

        self.setup()
        mod = importlib.import_module(self.module_name)
        if self is Backend.ARRAY_API_STRICT:
            return mod
        return aac.array_namespace(self.asarray([0.0]))

    def setup(self) -> None:
        """Backend-wide settings the tests rely on (JAX: float64 enabled)."""
        if self is Backend.JAX:
            import jax

            jax.config.update("jax_enable_x64", True)

    def asarray(self, a, dtype: str | None = None) -> Any:
        """Build an array of this backend from a NumPy array or nested list."""
        import numpy as np

        a = np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a)
        if self in (Backend.NUMPY, Backend.NUMPY_READONLY):
            a = a.copy()
            if self is Backend.NUMPY_READONLY:
                a.flags.writeable = False
            return a
        if self is Backend.ARRAY_API_STRICT:
            import array_api_strict

            return array_api_strict.asarray(a)
        if self is Backend.TORCH:
            import torch

            return torch.asarray(a.copy())
        if self is Backend.JAX:
            self.setup()
            import jax.numpy as jnp

            return jnp.asarray(a)
        if self is Backend.DASK:
            import dask.array as da

            chunks = tuple(max(1, (n + 1) // 2) for n in a.shape) if a.ndim else ()
            return da.from_array(a, chunks=chunks) if a.ndim else da.from_array(a)
        if self is Backend.CUPY:
            import cupy

            return cupy.asarray(a)
        raise AssertionError(self)

    def to_numpy(self, x) -> Any:
        """Bring any array (of this or another backend) back as NumPy, computing if lazy."""
        import numpy as np

        if self is Backend.DASK and hasattr(x, "compute"):
            x = x.compute()
        if self is Backend.CUPY and hasattr(x, "get"):
            return x.get()
        if self is Backend.ARRAY_API_STRICT:
            return np.asarray(x._array) if hasattr(x, "_array") else np.asarray(x)
        if self is Backend.TORCH and hasattr(x, "detach"):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    @property
    def float_dtypes(self) -> tuple[str, ...]:
        """Floating dtypes of parameters this backend can hold (low precision where offered)."""
        if self is Backend.TORCH:
            return ("float16", "bfloat16", "float32", "float64")
        if self is Backend.JAX:
            return ("float16", "bfloat16", "float32", "float64")
        if self is Backend.ARRAY_API_STRICT:
            return ("float32", "float64")
        return ("float16", "float32", "float64")
