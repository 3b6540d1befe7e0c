"""Implementations the conformance suite can check; see
:mod:`adaptive_ref.conformance.adapters.base`."""

from .base import Adapter, unsupported

__all__ = ["Adapter", "unsupported", "all_adapters", "get_adapter"]


def all_adapters() -> list[Adapter]:
    """Every shipped implementation (whether installed or not; ``missing()`` tells)."""
    from adaptive_ref.backends import Backend

    from .optax_adapter import OptaxAdapter
    from .reference import ReferenceAdapter
    from .torch_optim import TorchAdapter

    out: list[Adapter] = [ReferenceAdapter(b) for b in (
        Backend.NUMPY, Backend.ARRAY_API_STRICT, Backend.TORCH, Backend.JAX, Backend.DASK,
        Backend.CUPY)]
    out.append(ReferenceAdapter(Backend.JAX, jit=False))  # opt-in: eager JAX
    out += [TorchAdapter(mode) for mode in ("forloop", "foreach", "fused")]
    out += [OptaxAdapter(jit=False), OptaxAdapter(jit=True)]
    return out


def get_adapter(name: str) -> Adapter:
    for a in all_adapters():
        if a.name == name:
            return a
    names = ", ".join(a.name for a in all_adapters())
    msg = f"unknown implementation {name!r}; known: {names}"
    raise KeyError(msg)
