"""The reference itself as an implementation, on any array backend (and the worked example of
an adapter: docs/conformance.md shows this class).

It runs every profile's cases (the reference has every convention as a knob). On NumPy in float64
it is one more implementation under test (the goldens are exact: :mod:`..exact`). With
``compute_dtype="float64"`` a float32 case runs in float64 arithmetic, and
``factor_precision="param"`` then still means float32 factors (the case's parameter dtype; see
:func:`adaptive_ref._numerics.param_factor_dtype`).

On JAX the step functions run under ``jax.jit`` by default (``reference-jax``), the way JAX users
run them: one jitted function per case steps all of its parameters, with the case's
hyperparameters as Python numbers baked in (as the eager adapter passes them) and, for a
scheduled case, the step's lr as an argument (a 0-d array, which the reference accepts; its
value is cast exactly as a Python float would be). Cases with the same optimizer, hyperparameters
and shapes share one trace. XLA contracts ``a * b + c`` into a fused multiply-add on the CPU
(tests/test_fused_jax.py), which only removes roundings from the count the tolerance allows.
Row-sparse cases (the active rows change shape every step) run eagerly. The eager form on every
case is ``reference-jax-eager`` (opt-in: about 10x slower).
"""

from __future__ import annotations

import contextlib

import numpy as np

from adaptive_ref import _numerics, registry
from adaptive_ref.backends import Backend

from ..format import is_scalar_field
from .base import Adapter

__all__ = ["ReferenceAdapter"]

# optimizers a backend's namespace cannot run, with the reason (reported as n/a)
NOT_ON = {Backend.DASK: {"soap": "Dask's array-API namespace has no linalg.eigh, which SOAP's "
                                 "eigenbasis needs (docs/backends.md, SOAP on Dask)"}}


class ReferenceAdapter(Adapter):
    profile = None

    def __init__(self, backend: Backend = Backend.NUMPY, compute_dtype: str | None = None,
                 jit: bool | None = None):
        self.backend = backend
        self.compute_dtype = compute_dtype  # "float64": run float32 cases in float64 (goldens)
        self.jit = backend is Backend.JAX if jit is None else jit
        if self.jit and backend is not Backend.JAX:
            msg = f"jit=True needs the JAX backend, got {backend.value}"
            raise ValueError(msg)
        eager = backend is Backend.JAX and not self.jit
        self.name = f"reference-{backend.value}" + ("-eager" if eager else "")
        self.description = f"adaptive_ref step functions on {backend.value}" + (
            " under jax.jit" if self.jit else (", eager" if eager else ""))
        if eager:
            self.opt_in = ("slow: eager JAX dispatches every operation, about 10x the jitted "
                           "run; name it with --impl reference-jax-eager")
        if backend is Backend.DASK:
            self.opt_in = ("slow: Dask builds a task graph per operation, about 3 s per case; "
                           "name it with --impl reference-dask")

    def missing(self):
        return self.backend.missing_reason()

    def version(self):
        import adaptive_ref

        return adaptive_ref.__version__

    def supports(self, case):
        if case.optimizer not in registry.REGISTRY:
            return f"unsupported: {case.optimizer} is not registered"
        if case.optimizer in NOT_ON.get(self.backend, {}):
            return f"unsupported: {NOT_ON[self.backend][case.optimizer]}"
        if self.backend not in (Backend.TORCH, Backend.JAX) and any(
                case.param_hparams(p.name).get("ns_dtype") == "bfloat16" for p in case.params):
            return (f"unsupported: ns_dtype='bfloat16' (Muon finding M1): {self.backend.value} "
                    f"has no bfloat16 (the reference raises BFloat16Unavailable)")
        return None

    def build(self, case):
        spec = registry.get(case.optimizer)
        b = self.backend
        params = {k: b.asarray(self._cast(v)) for k, v in case.init_params().items()}
        if spec.coupling == "tree":  # one state for the whole model (Prodigy)
            states = spec.init(tuple(params.values()),
                               **spec.init_kwargs(case.param_hparams(next(iter(params)))))
        else:
            states = {k: spec.init(params[k], **spec.init_kwargs(case.param_hparams(k)))
                      for k in params}
        h = {"spec": spec, "case": case, "params": params, "states": states}
        if self.jit and not case.row_sparse():
            import jax

            h["jitted"] = _jitted_step(case)
            # committed to the device, as the jitted step's outputs are: else the second step
            # (committed inputs) would not hit the first step's compiled code
            h["params"], h["states"] = jax.device_put((params, states), jax.devices()[0])
        return h

    def step(self, h, grads, lr):
        spec, case = h["spec"], h["case"]
        step = h.get("step", 0) + 1
        h["step"] = step
        if "jitted" in h:
            # NumPy arrays straight into the jitted call: jit moves them to the device itself,
            # without one jnp.asarray dispatch per array (the same values reach the same code)
            garr = {k: np.asarray(self._cast(g)) for k, g in grads.items()}
            h["params"], h["states"] = h["jitted"](h["params"], h["states"], garr, lr)
            return
        if spec.coupling == "tree":
            h["params"], h["states"] = _model_step(spec, case, h["params"], h["states"], {
                k: self.backend.asarray(self._cast(g)) for k, g in grads.items()}, lr)
            return
        sparse = {p.name: p.grad for p in case.params
                  if p.grad is not None and p.grad.get("row_fraction") is not None}
        for k, g in grads.items():
            kw = case.param_hparams(k)
            if lr is not None:
                kw["lr"] = lr
            g = self._cast(g)
            if k in sparse:  # row-sparse: hand over the active rows only (indices + value rows)
                from adaptive_ref.sparse import RowSparse

                from ..rng import active_rows

                rows = active_rows(sparse[k], g.shape, step)
                garr = RowSparse(self.backend.asarray(rows.astype(np.int64)),
                                 self.backend.asarray(g[rows]))
            else:
                garr = self.backend.asarray(g)
            with self._factor_dtype(case):
                p, st = spec.step(h["params"][k], garr, h["states"][k], **kw)
            h["params"][k], h["states"][k] = p, st

    def _factor_dtype(self, case):
        if self.compute_dtype is None or self.compute_dtype == case.dtype:
            return contextlib.nullcontext()
        return _numerics.param_factor_dtype(case.dtype)

    def _cast(self, a):
        return a if self.compute_dtype is None else np.asarray(a).astype(self.compute_dtype)

    def read(self, h):
        b = self.backend
        if b is Backend.DASK:
            # Compute the lazy trajectory once per checkpoint and continue from the persisted
            # arrays, so each checkpoint does not recompute the whole graph from step 1 (the
            # step functions themselves stay lazy; only the adapter materialises).
            import dask

            keys = list(h["params"])
            tree = h["spec"].coupling == "tree"
            flat = [h["params"][k] for k in keys] + (
                [h["states"]] if tree else [h["states"][k] for k in keys])
            flat = dask.persist(*flat)
            h["params"] = dict(zip(keys, flat[:len(keys)], strict=True))
            h["states"] = flat[-1] if tree else dict(zip(keys, flat[len(keys):], strict=True))
        params = {k: np.asarray(b.to_numpy(v)) for k, v in h["params"].items()}
        state = {}
        states = h["states"]
        if h["spec"].coupling == "tree":  # each parameter's share of the model's state
            states = {k: _leaf_state(states, j) for j, k in enumerate(h["params"])}
        for k, st in states.items():
            fields = {}
            for name, v in zip(st._fields, st, strict=False):
                if v is None:
                    continue
                if isinstance(v, tuple):  # one array per dimension (SOAP's gg, q): name<i>
                    fields.update({f"{name}{i}": np.asarray(b.to_numpy(x))
                                   for i, x in enumerate(v) if x is not None})
                    continue
                a = np.asarray(b.to_numpy(v))
                fields[name] = int(a) if name == "count" else (
                    float(a) if is_scalar_field(name) else a)
            settings = h["case"].param_hparams(k)
            for name, fn in h["spec"].observables.items():  # e.g. schedule-free's x
                fields[name] = np.asarray(b.to_numpy(fn(h["params"][k], st, **settings)))
            state[k] = fields
        return params, state


def _model_step(spec, case, params: dict, state, grads: dict, lr):
    """A whole-model optimizer's step (``coupling == "tree"``): every parameter at once, under
    the model's one setting (the first parameter's; tree cases have no per-parameter ones)."""
    keys = list(params)
    kw = case.param_hparams(keys[0])
    if lr is not None:
        kw["lr"] = lr
    new_p, new_s = spec.step(tuple(params.values()), tuple(grads[k] for k in keys), state, **kw)
    return dict(zip(keys, new_p, strict=True)), new_s


def _leaf_state(state, j: int):
    """Leaf ``j``'s fields of a whole-model state: its arrays, and the model's 0-d scalars."""
    return state._replace(**{f: v[j] for f, v in zip(state._fields, state, strict=True)
                             if isinstance(v, tuple)})


_JITTED: dict = {}


def _jitted_step(case):
    """``f(params, states, grads, lr) -> (params, states)`` under ``jax.jit``: every parameter
    of ``case`` stepped with its hyperparameters (lr from the argument when the case has a
    schedule). One function per optimizer and hyperparameter set, so cases that differ only in
    their data share the trace."""
    import jax

    names = tuple(p.name for p in case.params)
    hps = {k: case.param_hparams(k) for k in names}
    scheduled = case.lr_schedule is not None
    key = (case.optimizer, scheduled,
           tuple((k, tuple(sorted((n, repr(v)) for n, v in hps[k].items()))) for k in names))
    fn = _JITTED.get(key)
    if fn is None:
        spec = registry.get(case.optimizer)

        def step_all(params, states, grads, lr):
            if spec.coupling == "tree":
                return _model_step(spec, case, params, states, grads, lr if scheduled else None)
            new_p, new_s = {}, {}
            for k in names:
                kw = dict(hps[k])
                if scheduled:
                    kw["lr"] = lr
                new_p[k], new_s[k] = spec.step(params[k], grads[k], states[k], **kw)
            return new_p, new_s

        fn = _JITTED[key] = jax.jit(step_all)
    return fn
