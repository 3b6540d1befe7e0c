"""Parameter sets larger than memory: the reference step on Dask arrays backed by zarr.

The step functions run unchanged on Dask arrays: they build a lazy graph, one fused task per
chunk (each output chunk depends only on the same chunk of the parameter, gradient and state),
so a step over a parameter set of any size holds a few chunks per worker in memory. This module
adds the I/O around it:

* :func:`open_tree` / :func:`open_state` open zarr arrays on disk as chunked Dask arrays;
* :func:`step_to_zarr` applies one step to every leaf of a ``{name: array}`` tree and writes the
  new parameters and state with ``dask.array.to_zarr`` in one ``dask.compute`` (inputs are read
  once), or, with ``in_place=True``, into the existing zarr arrays the inputs came from (each
  chunk is read and rewritten by the same task; no second copy on disk);
* the scalar state fields (step count, NAdam's product) are kept as 0-d arrays in a small JSON
  file next to the arrays.

Everything runs on whatever Dask scheduler is active: a ``dask.distributed.Client`` connected to
a ``LocalCluster`` or to a real scheduler (``Client("tcp://scheduler:8786")``), whose workers must
see the same storage path (a shared file system or an object store URL that zarr understands).
See docs/performance.md for the recipe and benchmarks/dask_scale.py for a 1.5e9-parameter run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from . import registry

__all__ = ["open_tree", "open_state", "step_to_zarr", "write_tree"]


def _da():
    import dask.array as da

    return da


def open_tree(url: str, names, chunks=None) -> dict:
    """``{name: dask array}`` for the zarr arrays ``url/<name>``."""
    da = _da()
    return {n: da.from_zarr(os.path.join(url, n), chunks=chunks) for n in names}


def write_tree(tree: Mapping[str, Any], url: str, *, compute: bool = True):
    """Write ``{name: dask array}`` to zarr arrays ``url/<name>`` (one compute for all)."""
    import dask

    da = _da()
    targets = [da.to_zarr(x, os.path.join(url, n), overwrite=True, compute=False)
               for n, x in tree.items()]
    return dask.compute(*targets) if compute else targets


def _scalar_path(url: str) -> str:
    return os.path.join(url, "scalars.json")


def open_state(optimizer: str, url: str, names, chunks=None) -> dict:
    """The state tree written by :func:`step_to_zarr` under ``url``: per leaf a State whose array
    fields are lazy Dask arrays on zarr and whose scalar fields come from ``scalars.json``."""
    import numpy as np

    da = _da()
    spec = registry.get(optimizer)
    with open(_scalar_path(url)) as fh:
        scalars = json.load(fh)
    out = {}
    for n in names:
        fields = {}
        for f in spec.state_type._fields:
            key = f"{n}/{f}"
            if key in scalars:
                value, dtype = scalars[key]
                fields[f] = da.from_array(np.asarray(value, dtype=dtype))
            elif os.path.exists(os.path.join(url, n, f)):
                fields[f] = da.from_zarr(os.path.join(url, n, f), chunks=chunks)
            else:
                fields[f] = None
        out[n] = spec.state_type(**fields)
    return out


def step_to_zarr(optimizer: str, params: Mapping[str, Any], grads: Mapping[str, Any],
                 state: Mapping[str, Any], url: str, *, in_place: bool = False,
                 **hyperparameters) -> tuple[dict, dict]:
    """One step of ``optimizer`` on every leaf, written to zarr; returns the new ``(params,
    state)`` re-opened lazily from disk.

    ``params``, ``grads`` and the state's arrays are Dask arrays with matching chunks (the state
    may be a fresh ``<name>_init`` of the Dask parameters: lazy zeros, nothing on disk). The new
    parameters go to ``url/params/<name>`` and the state to ``url/state/<name>/<field>``. With
    ``in_place=True`` the outputs are stored into the zarr arrays the inputs were read from
    (``params`` and the state must come from :func:`open_tree` / :func:`open_state` on ``url``):
    a chunk is read and rewritten by one task, so the step needs no second copy on disk; an
    interrupted in-place step leaves a mix of old and new chunks.
    """
    import dask
    import numpy as np
    import zarr

    da = _da()
    spec = registry.get(optimizer)
    stores, scalars = [], {}
    sources, targets = [], []
    for name, p in params.items():
        new_p, new_s = spec.step(p, grads[name], state[name], **hyperparameters)
        outs = [(os.path.join(url, "params", name), new_p)]
        for f, x in zip(new_s._fields, new_s, strict=True):
            if x is None:
                continue
            if x.ndim == 0:
                scalars[f"{name}/{f}"] = x
            else:
                outs.append((os.path.join(url, "state", name, f), x))
        for path, x in outs:
            if in_place and os.path.exists(path):
                sources.append(x)
                targets.append(zarr.open_array(path, mode="r+"))
            else:
                stores.append(da.to_zarr(x, path, overwrite=True, compute=False))
    keys = list(scalars)
    if sources:
        stores.append(da.store(sources, targets, lock=False, compute=False))
    results = dask.compute(*stores, *[scalars[k] for k in keys])
    values = results[len(stores):]
    os.makedirs(os.path.join(url, "state"), exist_ok=True)
    with open(_scalar_path(os.path.join(url, "state")), "w") as fh:
        json.dump({k: [np.asarray(v).item(), str(np.asarray(v).dtype)]
                   for k, v in zip(keys, values, strict=True)}, fh)
    names = list(params)
    chunks = {n: params[n].chunks for n in names}
    new_params = {n: da.from_zarr(os.path.join(url, "params", n), chunks=chunks[n])
                  for n in names}
    new_state = {n: open_state(optimizer, os.path.join(url, "state"), [n],
                               chunks=chunks[n])[n] for n in names}
    return new_params, new_state
