"""Implementations the conformance suite can check; see
:mod:`adaptive_ref.conformance.adapters.base`.

Three sources: the adapters shipped here (:func:`all_adapters`), adapters that installed libraries
declare in the entry-point group ``adaptive_ref.adapters`` (:func:`entry_point_adapters`), and
``adaptive-ref conform --adapter MODULE:ATTR`` (:func:`load_adapter_spec`). ``MODULE:ATTR`` (an
entry point's value has the same form) names an :class:`Adapter` subclass, made with no arguments,
an :class:`Adapter` instance, or a function of no arguments returning one adapter or a list.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from .base import Adapter, unsupported

__all__ = ["Adapter", "unsupported", "all_adapters", "get_adapter", "known_adapters",
           "entry_point_adapters", "load_adapter_spec", "AdapterSpecError",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "adaptive_ref.adapters"


def all_adapters() -> list[Adapter]:
    """Every shipped implementation (whether installed or not; ``missing()`` tells)."""
    from adaptive_ref.backends import Backend

    from .keras_adapter import KerasAdapter
    from .optax_adapter import OptaxAdapter
    from .reference import ReferenceAdapter
    from .torch_optim import TorchAdapter

    out: list[Adapter] = [ReferenceAdapter(b) for b in (
        Backend.NUMPY, Backend.ARRAY_API_STRICT, Backend.TORCH, Backend.JAX, Backend.DASK,
        Backend.CUPY)]
    out.append(ReferenceAdapter(Backend.JAX, jit=False))  # opt-in: eager JAX
    out += [TorchAdapter(mode) for mode in ("forloop", "foreach", "fused")]
    out += [OptaxAdapter(jit=False), OptaxAdapter(jit=True)]
    out += [KerasAdapter("jax"), KerasAdapter("torch")]
    from .adabelief_pytorch import AdaBeliefPytorchAdapter

    out.append(AdaBeliefPytorchAdapter())  # the authors' package (issue 11)

    from .schedulefree_adapter import UpstreamScheduleFreeAdapter

    out.append(UpstreamScheduleFreeAdapter())  # the authors' schedule-free code (upstream profile)

    from .prodigyopt_adapter import ProdigyoptAdapter

    out.append(ProdigyoptAdapter())  # the authors' Prodigy package (issue 12)

    from .dadaptation_adapter import DAdaptationAdapter

    out.append(DAdaptationAdapter())  # the authors' D-Adaptation package (issue 12)
    return out


class AdapterSpecError(ValueError):
    """A ``MODULE:ATTR`` that does not give adapters; the message names the value and why."""


def _check_name(adapter: Adapter, spec: str) -> None:
    name = getattr(adapter, "name", None)
    if not isinstance(name, str) or not name or name == "?" or any(
            ch.isspace() or ch == "," for ch in name):
        msg = (f"{spec!r} gives an adapter named {name!r}; set its `name` to a non-empty string "
               "without spaces or commas (it is what --impl selects)")
        raise AdapterSpecError(msg)


def load_adapter_spec(spec: str) -> list[Adapter]:
    """The adapters that ``MODULE:ATTR`` names (see the module docstring).

    Raises :class:`AdapterSpecError` (one line naming ``spec``) when there is no colon, the module
    does not import, the attribute is missing, or it gives no :class:`Adapter`.
    """
    module_name, sep, attr = str(spec).partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        msg = (f"{spec!r} is not MODULE:CLASS (e.g. mylib.conformance:MyAdapter; the module must "
               "be importable, e.g. on PYTHONPATH)")
        raise AdapterSpecError(msg)
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # the module's own import error, whatever it is, in one line
        msg = f"{spec!r}: cannot import module {module_name!r} ({type(err).__name__}: {err})"
        raise AdapterSpecError(msg) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            msg = f"{spec!r}: module {module_name!r} has no attribute {attr!r}"
            raise AdapterSpecError(msg)
        obj = getattr(obj, part)
    if isinstance(obj, Adapter):
        made = obj
    elif isinstance(obj, type) and not issubclass(obj, Adapter):
        msg = (f"{spec!r} is the class {obj.__qualname__}, which is not a subclass of "
               "adaptive_ref.conformance.adapters.base.Adapter")
        raise AdapterSpecError(msg)
    elif callable(obj):
        try:
            made = obj()
        except Exception as err:
            msg = f"{spec!r}: calling it with no arguments failed ({type(err).__name__}: {err})"
            raise AdapterSpecError(msg) from None
    else:
        msg = (f"{spec!r} is a {type(obj).__name__}, not an Adapter subclass, an Adapter or a "
               "function returning Adapters")
        raise AdapterSpecError(msg)
    made = list(made) if isinstance(made, list | tuple) else [made]
    bad = [type(a).__name__ for a in made if not isinstance(a, Adapter)]
    if bad or not made:
        msg = (f"{spec!r} returned {', '.join(bad) or 'nothing'}; expected an Adapter "
               "(adaptive_ref.conformance.adapters.base.Adapter) or a list of them")
        raise AdapterSpecError(msg)
    for a in made:
        _check_name(a, spec)
    return made


class UnusableEntryPoint(Adapter):
    """An entry point that failed to load: listed as not available, with the reason."""

    def __init__(self, name: str, why: str):
        self.name, self.why = name, why
        self.description = "entry point in group " + ENTRY_POINT_GROUP

    def missing(self) -> str:
        return self.why


def entry_point_adapters() -> list[Adapter]:
    """Adapters that installed distributions declare in the ``adaptive_ref.adapters`` group.

    An entry point that cannot be loaded becomes an adapter that is "not available" with the
    reason (the run goes on without it). Each adapter's ``conformance_source`` says where it came
    from.
    """
    out: list[Adapter] = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                     key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        where = f"entry point {ep.name!r}" + (f" of {dist.name} {dist.version}" if dist else "")
        try:
            made = load_adapter_spec(ep.value)
        except AdapterSpecError as err:
            made = [UnusableEntryPoint(ep.name, f"{where} ({ep.value}) failed: {err}")]
        for a in made:
            a.conformance_source = f"{where}: {ep.value}"
            a.conformance_entry_point = ep.name
        out += made
    return out


def known_adapters(specs=()) -> list[Adapter]:
    """The shipped adapters, then the entry-point ones, then those of ``specs`` (``MODULE:ATTR``).

    Names must be unique: an entry-point adapter whose name is taken is listed as not available;
    a ``spec`` whose adapter takes a known name raises :class:`AdapterSpecError`, unless it is the
    very entry point already found (then it is not added twice).
    """
    out = all_adapters()
    names = {a.name: "shipped with adaptive-ref" for a in out}
    for a in entry_point_adapters():
        if a.name in names:  # listed under the entry point's name, not the taken one
            ep_name = getattr(a, "conformance_entry_point", a.name)
            a = UnusableEntryPoint(ep_name if ep_name not in names else f"{ep_name} (entry point)",
                                   f"{a.conformance_source}: the name {a.name!r} is taken "
                                   f"({names[a.name]})")
        names[a.name] = getattr(a, "conformance_source", "an entry point that does not load")
        out.append(a)
    for spec in specs:
        for a in load_adapter_spec(spec):
            if names.get(a.name, "").endswith(f": {spec}"):  # that entry point, named again:
                found = next(b for b in out if b.name == a.name)  # it is the one --adapter runs
                found.conformance_spec = spec
                continue
            if a.name in names:
                msg = (f"{spec!r} gives an adapter named {a.name!r}, a name already taken "
                       f"({names[a.name]}); give yours another name")
                raise AdapterSpecError(msg)
            a.conformance_source = f"--adapter {spec}"
            a.conformance_spec = spec
            names[a.name] = a.conformance_source
            out.append(a)
    return out


def get_adapter(name: str) -> Adapter:
    adapters = known_adapters()
    for a in adapters:
        if a.name == name:
            return a
    names = ", ".join(a.name for a in adapters)
    msg = f"unknown implementation {name!r}; known: {names}"
    raise KeyError(msg)
