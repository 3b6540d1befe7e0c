"""Parameter sets larger than memory: the reference step on Dask arrays backed by zarr.

The step functions run unchanged on Dask arrays: they build a lazy graph, one fused task per
chunk (each output chunk depends only on the same chunk of the parameter, gradient and state),
so a step over a parameter set of any size holds a few chunks per worker in memory. This module
adds the I/O around it, with the on-disk protocol of :mod:`adaptive_ref.zarr_store`:

* :func:`step_to_zarr` applies one step to every leaf of a ``{name: array}`` tree and writes the
  new parameters and state as a new **generation** of a run store in one ``dask.compute`` (inputs
  are read once), then commits it by writing its commit record last. The inputs are never
  written, so a task that is retried after a worker died re-reads intact inputs and the result is
  the same as an undisturbed run; a step that is interrupted leaves a half-written generation that
  no reader sees and that the next step discards.
* :func:`open_run` opens the newest committed generation (parameters and state together);
  :func:`open_tree` / :func:`open_state` open a committed tree or one part of a generation;
* :func:`write_tree` writes ``{name: array}`` as a committed tree (gradients, initial
  parameters);
* the scalar state fields (step count, NAdam's product) are kept, with their dtype, in the commit
  record.

Everything runs on whatever Dask scheduler is active: a ``dask.distributed.Client`` connected to
a ``LocalCluster`` or to a real scheduler (``Client("tcp://scheduler:8786")``), whose workers must
see the same storage path (a shared POSIX file system: the commit protocol needs an atomic rename
and ``flock``). docs/scaleout.md states the guarantees and the layout; benchmarks/dask_scale.py
is a 1.5e9-parameter run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import registry
from . import zarr_store as zs

__all__ = ["open_tree", "open_state", "open_run", "step_to_zarr", "write_tree", "Run"]


def _da():
    import dask.array as da

    return da


class Run(NamedTuple):
    """One committed generation of a run store, opened lazily."""

    params: dict
    state: dict
    generation: int
    optimizer: str


# ------------------------------------------------------------------------------ locating data


def _locate(url: str, part: str, generation: int | None, require_commit: bool, *, fn: str):
    """``(directory, record or None, key prefix)`` of the arrays ``fn`` reads at ``url``.

    ``part`` is ``"params"`` or ``"state"``. ``<run>/params`` and ``<run>/state`` name the parts
    of the newest committed generation (or of ``generation``); ``<run>/gen-.../params`` those of
    that generation, which must be committed.
    """
    url = os.path.normpath(str(url))
    body = zs.read_record(url, what=f"{fn}: url={url!r}")
    if body is not None and body.get("kind") == "tree":
        return url, body, ""
    parent, leaf = os.path.split(url)
    if leaf == part and zs.is_run(parent):
        gen_dir, body = zs.committed(parent, generation, what=f"{fn}: url's run store")
        return gen_dir, body, f"{part}/"
    if leaf == part and zs.parse_generation_dir(parent) is not None:
        body = zs.read_record(parent, what=f"{fn}: url={url!r}")
        if body is None:
            msg = (f"{fn}: url={url!r} belongs to a half-written generation (no commit record: "
                   f"its step was interrupted or is still running); it is never read. Open the "
                   f"run store's newest committed generation with open_run")
            raise zs.StoreError(msg)
        return parent, body, f"{part}/"
    if zs.is_run(url):
        msg = (f"{fn}: url={url!r} is a run store; open_run(url) gives the parameters and state "
               f"of its newest committed generation (or {fn}(url + '/{part}', ...))")
        raise zs.StoreError(msg)
    if require_commit:
        msg = (f"{fn}: url={url!r} has no commit record ({zs.COMMIT}): it holds "
               f"{zs.describe(url)}. Either it was not written by write_tree/step_to_zarr or its "
               f"write did not finish (unwritten chunks would read as fill values). Rewrite it, "
               f"or pass require_commit=False for zarr arrays you know to be complete")
        raise zs.StoreError(msg)
    return url, None, ""


def _check_names(fn: str, url: str, body: dict, keys: dict[str, list[str]]) -> None:
    have = set(body["arrays"]) | set(body["scalars"])
    missing = [n for n, ks in keys.items() if not any(k in have for k in ks)]
    if missing:
        msg = (f"{fn}: names {missing} are not in the committed data at url={url!r} (it holds "
               f"{sorted(body.get('names', []))})")
        raise zs.StoreError(msg)


def _scalar(entry):
    import numpy as np

    value, dtype = entry
    return _da().from_array(np.asarray(value, dtype=dtype))


def open_tree(url: str, names, chunks=None, *, generation: int | None = None,
              require_commit: bool = True) -> dict:
    """``{name: lazy Dask array}`` for the committed arrays ``url/<name>``.

    ``url`` is a tree written by :func:`write_tree`, or ``<run>/params`` for the parameters of
    the newest committed generation of a run store (``generation`` picks another). A directory
    without a commit record (a write that did not finish) is refused with
    :class:`~adaptive_ref.zarr_store.StoreError`; ``require_commit=False`` opens plain zarr
    arrays written by other tools (then nothing guarantees they are complete: unwritten chunks
    read as the fill value); a half-written generation of a run store is refused even then.
    """
    da = _da()
    directory, body, prefix = _locate(url, "params", generation, require_commit,
                                      fn="open_tree")
    names = list(names)
    if body is None:
        return {n: da.from_zarr(os.path.join(directory, n), chunks=chunks) for n in names}
    keys = {n: [f"{prefix}{n}"] for n in names}
    _check_names("open_tree", url, body, keys)
    out = {}
    for n in names:
        key = f"{prefix}{n}"
        if key in body["scalars"]:
            out[n] = _scalar(body["scalars"][key])
        else:
            zs.check_arrays(directory, body, [key], what=f"open_tree: url={url!r}")
            out[n] = da.from_zarr(os.path.join(directory, key), chunks=chunks)
    return out


def open_state(optimizer: str, url: str, names, chunks=None, *, generation: int | None = None,
               require_commit: bool = True) -> dict:
    """The state tree of a run store: ``url`` is ``<run>/state`` (the newest committed
    generation, or ``generation``). Per leaf a State whose array fields are lazy Dask arrays on
    zarr and whose scalar fields come from the commit record.

    ``require_commit=False`` reads the layout written before generations (``url/scalars.json``
    and ``url/<name>/<field>``), which has no commit record: nothing then guarantees it is
    complete or from one step.
    """
    spec = registry.get(optimizer)
    directory, body, prefix = _locate(url, "state", generation, require_commit,
                                      fn="open_state")
    names = list(names)
    if body is None:
        return _open_state_uncommitted(spec, directory, names, chunks)
    if body.get("optimizer") not in (None, optimizer):
        msg = (f"open_state: optimizer={optimizer!r} but url={url!r} holds the state of "
               f"{body['optimizer']!r}")
        raise zs.StoreError(msg)
    fields = spec.state_type._fields
    keys = {n: [f"{prefix}{n}/{f}" for f in fields] for n in names}
    _check_names("open_state", url, body, keys)
    return {n: _state_from(spec, directory, body, prefix, n, chunks,
                           what=f"open_state: url={url!r}") for n in names}


def _state_from(spec, directory, body, prefix, name, chunks, *, what):
    da = _da()
    fields = {}
    for f in spec.state_type._fields:
        key = f"{prefix}{name}/{f}"
        if key in body["scalars"]:
            fields[f] = _scalar(body["scalars"][key])
        elif key in body["arrays"]:
            zs.check_arrays(directory, body, [key], what=what)
            fields[f] = da.from_zarr(os.path.join(directory, key), chunks=chunks)
        else:
            fields[f] = None
    return spec.state_type(**fields)


def _open_state_uncommitted(spec, url, names, chunks):
    import json

    import numpy as np

    da = _da()
    with open(os.path.join(url, "scalars.json")) as fh:
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


def open_run(url: str, *, generation: int | None = None, chunks=None) -> Run:
    """Parameters and state of the newest committed generation of the run store ``url`` (or of
    ``generation``), read from one commit record, so both always belong to the same step.

    Half-written generations are never read. ``chunks``: as for ``dask.array.from_zarr``.
    """
    url = os.path.normpath(str(url))
    gen_dir, body = zs.committed(url, generation, what="open_run: url")
    spec = registry.get(body["optimizer"])
    names = body["names"]
    what = f"open_run: url={url!r}"
    params = open_tree(os.path.join(gen_dir, "params"), names, chunks)
    state = {n: _state_from(spec, gen_dir, body, "state/", n, chunks, what=what) for n in names}
    return Run(params, state, body["generation"], body["optimizer"])


# ----------------------------------------------------------------------------------- writing


def _refuse_own_inputs(fn: str, inputs: dict[str, Any], forbidden, why: str) -> None:
    """Raise if any input reads zarr arrays for which ``forbidden(path)`` is true."""
    for label, x in inputs.items():
        if x is None or not hasattr(x, "__dask_graph__"):
            continue
        for src in zs.zarr_sources(x):
            if forbidden(src):
                msg = f"{fn}: {label} reads {src}, {why}"
                raise zs.StoreError(msg)


def _inside(path: str, root: str) -> bool:
    root = os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def write_tree(tree: Mapping[str, Any], url: str, *, compute: bool = True):
    """Write ``{name: Dask array}`` to zarr arrays ``url/<name>`` and commit them (one compute).

    The commit record is written after every chunk, so :func:`open_tree` never reads a tree whose
    write did not finish. Writing over an existing tree first removes its commit record. Refuses
    a ``url`` inside a run store and arrays that read ``url`` itself. With ``compute=False``
    returns a one-element list holding a Dask ``Delayed`` that writes the arrays and then the
    record when computed (on a worker: it must see ``url``).
    """
    import dask

    url = os.path.normpath(str(url))
    if zs.is_run(url) or zs.parse_generation_dir(os.path.dirname(url)) is not None or \
            zs.is_run(os.path.dirname(url)):
        msg = (f"write_tree: url={url!r} is inside a run store; its generations are written "
               f"only by step_to_zarr")
        raise zs.StoreError(msg)
    _refuse_own_inputs("write_tree", {f"tree[{n!r}]": x for n, x in tree.items()},
                       lambda src: _inside(src, url),
                       f"which is inside url={url!r} and would be overwritten")
    os.makedirs(url, exist_ok=True)
    body = zs.read_record(url, what=f"write_tree: url={url!r}")
    if body is not None:  # uncommit before any array changes
        os.unlink(os.path.join(url, zs.COMMIT))
    arrays = {n: x for n, x in tree.items() if x.ndim > 0}
    scalars = {n: x for n, x in tree.items() if x.ndim == 0}
    crcs, meta = zs.prepare_writes(arrays, url)
    head = {"format": zs.FORMAT, "kind": "tree", "names": list(tree), "arrays": meta}
    commit = dask.delayed(_commit_tree, pure=False)(url, head, list(scalars), crcs,
                                                    list(scalars.values()))
    if not compute:
        return [commit]
    return dask.compute(commit)


def _commit_tree(url, head, scalar_names, crcs, scalar_values):
    body = {**head, "arrays": zs.finish_meta(head["arrays"], crcs),
            "scalars": {n: zs.scalar_entry(v)
                        for n, v in zip(scalar_names, scalar_values, strict=True)}}
    zs.write_record(url, body)


def _keep_arg(in_place: bool, keep) -> int | None:
    if not isinstance(in_place, bool):
        msg = f"step_to_zarr: in_place={in_place!r} is not accepted; give True or False"
        raise TypeError(msg)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        msg = (f"step_to_zarr: keep={keep!r} is not accepted; give an integer >= 1 (the "
               f"newest committed generations to keep) or None (keep all)")
        raise ValueError(msg)
    if in_place:
        if keep not in (None, 1):
            msg = (f"step_to_zarr: in_place=True means keep=1; it cannot be combined with "
                   f"keep={keep}")
            raise ValueError(msg)
        return 1
    return keep


def step_to_zarr(optimizer: str, params: Mapping[str, Any], grads: Mapping[str, Any],
                 state: Mapping[str, Any], url: str, *, in_place: bool = False,
                 keep: int | None = None, **hyperparameters) -> tuple[dict, dict]:
    """One step of ``optimizer`` on every leaf, committed as a new generation of the run store
    ``url``; returns the new ``(params, state)`` re-opened lazily from disk.

    ``params``, ``grads`` and the state's arrays are Dask arrays with matching chunks (the state
    may be a fresh ``<name>_init`` of the Dask parameters: lazy zeros, nothing on disk), from
    anywhere: a tree, an earlier generation of ``url`` (:func:`open_run`), another run.
    ``url`` must be a new or empty directory or a run store. The step writes
    ``url/gen-<n>-<token>/params/<name>`` and ``.../state/<name>/<field>`` (never its inputs) and
    then commits the generation (its commit record, written last). Readers see the previous
    generation until the commit and this one after it; a worker that dies mid-step only makes
    tasks rerun on intact inputs; an interrupted step (client killed, an error, disk full) leaves
    no committed trace, and the next step discards its files. One writer at a time per run store
    (a lock; a second writer gets :class:`~adaptive_ref.zarr_store.StoreError`). Inputs that read
    a half-written generation of ``url`` are refused, naming the argument.

    ``keep``: after the commit, delete all but the newest ``keep`` committed generations (``None``,
    the default: keep all). ``in_place=True`` is ``keep=1``: the disk holds one generation between
    steps and two during a step. (Before generations, ``in_place=True`` overwrote the input zarr
    arrays chunk by chunk, which a worker death or an interruption corrupted silently.)
    """
    import dask

    keep = _keep_arg(in_place, keep)
    spec = registry.get(optimizer)
    url = os.path.normpath(str(url))
    names = list(params)
    for where, tree in (("grads", grads), ("state", state)):
        missing = [n for n in names if n not in tree]
        if missing:
            msg = f"step_to_zarr: {where} has no entry for {missing} (params has {names})"
            raise KeyError(msg)
    inputs = {}
    for n in names:
        inputs[f"params[{n!r}]"] = params[n]
        inputs[f"grads[{n!r}]"] = grads[n]
        for f, x in zip(state[n]._fields, state[n], strict=True):
            inputs[f"state[{n!r}].{f}"] = x
    if not zs.is_run(url):
        _refuse_own_inputs("step_to_zarr", inputs, lambda src: _inside(src, url),
                           f"inside url={url!r}, which is not a run store; step_to_zarr never "
                           f"writes where its inputs are: give a new directory")
    zs.create_run(url, what="step_to_zarr: url")
    with zs.writer_lock(url, what="step_to_zarr: url"):
        committed_dirs = {os.path.realpath(g.path) for g in zs.list_generations(url)
                          if g.committed}
        _refuse_own_inputs(
            "step_to_zarr", inputs,
            lambda src: _inside(src, url) and not any(_inside(src, d) for d in committed_dirs),
            f"inside url={url!r} but not in a committed generation (a half-written generation "
            f"is discarded before a step and never read as data)")
        number, gen_dir = zs.new_generation(url, what="step_to_zarr: url")
        try:
            arrays, scalars = {}, {}
            for name in names:
                new_p, new_s = spec.step(params[name], grads[name], state[name],
                                         **hyperparameters)
                outs = {f"params/{name}": new_p}
                for f, x in zip(new_s._fields, new_s, strict=True):
                    if isinstance(x, (tuple, list)):
                        msg = (f"step_to_zarr: {optimizer}'s state field {f!r} is a "
                               f"{type(x).__name__} of arrays; only array fields are stored")
                        raise TypeError(msg)
                    if x is not None:
                        outs[f"state/{name}/{f}"] = x
                for rel, x in outs.items():
                    (scalars if x.ndim == 0 else arrays)[rel] = x
            crcs, meta = zs.prepare_writes(arrays, gen_dir)
            keys = list(scalars)
            results = dask.compute(*crcs, *[scalars[k] for k in keys])
            body = {"format": zs.FORMAT, "kind": "generation", "generation": number,
                    "optimizer": optimizer, "names": names,
                    "hyperparameters": {k: _json_value(v) for k, v in hyperparameters.items()},
                    "arrays": zs.finish_meta(meta, results[:len(crcs)]),
                    "scalars": {k: zs.scalar_entry(v)
                                for k, v in zip(keys, results[len(crcs):], strict=True)}}
            zs.write_record(gen_dir, body)
        except BaseException:
            zs.discard(gen_dir)
            raise
        if keep is not None:
            zs.collect_garbage(url, keep=keep, _locked=True)
    chunks = {n: params[n].chunks for n in names}
    run = open_run(url, generation=number)
    new_params = {n: _rechunked(run.params[n], chunks[n]) for n in names}
    new_state = {n: type(s)(*(_rechunked(x, chunks[n]) for x in s))
                 for n, s in run.state.items()}
    return new_params, new_state


def _rechunked(x, chunks):
    if x is None or x.ndim == 0 or x.chunks == chunks:
        return x
    return x.rechunk(chunks)


def _json_value(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return repr(v)
