"""Zarr arrays on disk that a reader sees whole or not at all: commit records and generations.

Two kinds of directory hold arrays written by :mod:`adaptive_ref.distributed`:

* a **tree** (:func:`~adaptive_ref.distributed.write_tree`): zarr arrays ``<dir>/<name>`` and a
  commit record ``<dir>/commit.json``;
* a **run store** (:func:`~adaptive_ref.distributed.step_to_zarr`): a marker ``<run>/run.json``
  and one directory per step, a *generation* ``<run>/gen-<8-digit number>-<random token>/``,
  holding ``params/<name>``, ``state/<name>/<field>`` and the generation's ``commit.json``.

A commit record is written **last**, after every chunk of every array in it has been written and
the writing tasks have returned: to a temporary file, flushed and ``fsync``-ed, then renamed over
``commit.json`` (an atomic replace on POSIX file systems, NFS included), then the directory is
``fsync``-ed. It lists every array (shape, chunk shape, dtype, and the CRC-32 of every chunk as
the writing task computed it), the 0-d values (step counts) and a SHA-256 of its own content, so a
damaged record is detected rather than trusted. Readers open only directories with a valid
record; a generation without one is *half-written* (its step was interrupted, or is still
running) and is never read as data. The writer discards half-written generations the next time it
runs (with a :class:`DiscardedGenerationWarning`); generation numbers are never reused within one
run, and the random token makes every generation directory new, so a task orphaned by a dead
client cannot write into a later generation.

Only a committed generation is ever deleted, by :func:`collect_garbage`, and its record is
removed first (then the arrays), so a deletion interrupted half-way leaves a half-written
generation, which is discarded, never a committed one with chunks missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import warnings
import zlib
from typing import Any, NamedTuple

try:
    # Imported with this module, not first inside a task: a Dask worker unpickles the write
    # tasks (importing this module) on its event-loop thread, and a first ``import zarr`` in a
    # task thread at the same time as zarr objects are unpickled fails with a circular-import
    # ImportError (zarr 3.1 is not safe to import from two threads at once).
    import zarr
except ImportError:  # pragma: no cover - the module still imports; using it needs zarr
    zarr = None

__all__ = ["StoreError", "DiscardedGenerationWarning", "Generation", "list_generations",
           "collect_garbage", "verify", "is_run", "COMMIT", "RUN"]

FORMAT = "adaptive-ref-zarr/1"
COMMIT = "commit.json"
RUN = "run.json"
LOCK = ".writer.lock"
_GEN = re.compile(r"^gen-(\d{8,})-([0-9a-f]{8})$")


class StoreError(ValueError):
    """A zarr directory that cannot be read or written as asked (half-written, damaged, in use,
    or not of the expected kind); the message names the argument and the path."""


class DiscardedGenerationWarning(UserWarning):
    """A half-written generation (an interrupted step) was found and deleted by the writer."""


class Generation(NamedTuple):
    """One generation directory of a run store."""

    number: int
    path: str
    committed: bool


# ----------------------------------------------------------------------------- commit records


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_record(directory: str, body: dict) -> None:
    """Commit ``directory``: write ``commit.json`` atomically (temporary file, fsync, rename)."""
    text = json.dumps({"body": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()})
    tmp = os.path.join(directory, COMMIT + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(directory, COMMIT))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def read_record(directory: str, *, what: str) -> dict | None:
    """The body of ``directory``'s commit record; ``None`` if it has none; :class:`StoreError` if
    the record is damaged (bad JSON, checksum mismatch) or of an unknown format."""
    path = os.path.join(directory, COMMIT)
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    try:
        rec = json.loads(text)
        body = rec["body"]
        ok = hashlib.sha256(_canonical(body)).hexdigest() == rec["sha256"]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        msg = (f"{what}: the commit record {path} is damaged (its SHA-256 does not match its "
               f"content); the arrays it describes cannot be trusted. Restore it from a copy, "
               f"or delete the directory")
        raise StoreError(msg)
    if body.get("format") != FORMAT:
        msg = f"{what}: {path} has format {body.get('format')!r}, not {FORMAT!r}"
        raise StoreError(msg)
    return body


# -------------------------------------------------------------------------------- run stores


def is_run(url: str) -> bool:
    """True when ``url`` is a run store (made by ``step_to_zarr``)."""
    return os.path.isfile(os.path.join(url, RUN))


def parse_generation_dir(path: str) -> int | None:
    """The generation number if ``path`` is a generation directory of a run store."""
    m = _GEN.match(os.path.basename(os.path.normpath(path)))
    if m is None or not is_run(os.path.dirname(os.path.normpath(path))):
        return None
    return int(m.group(1))


def list_generations(url: str) -> list[Generation]:
    """Every generation directory of the run store ``url``, oldest first, committed or not.

    A generation with a damaged commit record raises :class:`StoreError` (it is neither trusted
    nor silently skipped).
    """
    if not is_run(url):
        msg = f"url={url!r} is not a run store (no {RUN}); step_to_zarr makes one"
        raise StoreError(msg)
    out = []
    for entry in os.listdir(url):
        m = _GEN.match(entry)
        if m is None:
            continue
        path = os.path.join(url, entry)
        body = read_record(path, what=f"url={url!r}")
        out.append(Generation(int(m.group(1)), path, body is not None))
    return sorted(out)


def committed(url: str, generation: int | None = None, *, what: str = "url") -> tuple[str, dict]:
    """``(path, record)`` of the newest committed generation of ``url`` (or of ``generation``)."""
    gens = list_generations(url)
    done = [g for g in gens if g.committed]
    if generation is not None:
        done = [g for g in done if g.number == generation]
        if not done:
            have = ", ".join(str(g.number) for g in gens if g.committed) or "none"
            msg = (f"generation={generation} is not a committed generation of {what}={url!r} "
                   f"(committed: {have})")
            raise StoreError(msg)
    if not done:
        half = [g.number for g in gens if not g.committed]
        extra = (f"; generation(s) {half} are half-written (a step was interrupted or is "
                 f"running) and are never read") if half else ""
        msg = f"{what}={url!r} has no committed generation{extra}"
        raise StoreError(msg)
    g = done[-1]
    return g.path, read_record(g.path, what=f"{what}={url!r}")


def _remove_generation(path: str) -> None:
    """Uncommit (record first), then delete the arrays."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, COMMIT))
    _fsync_dir(path)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def writer_lock(url: str, *, what: str = "url"):
    """Hold the run store's writer lock (``flock`` on ``<url>/.writer.lock``; released when the
    process dies, so a killed writer leaves no stale lock)."""
    import fcntl

    fd = os.open(os.path.join(url, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = (f"{what}={url!r}: another process is writing this run store (it holds "
                   f"{LOCK}); one writer at a time")
            raise StoreError(msg) from None
        yield
    finally:
        os.close(fd)


def create_run(url: str, *, what: str = "url") -> None:
    """Make ``url`` a run store: it must be new, empty, or a run store already."""
    if is_run(url):
        return
    if os.path.exists(url):
        if not os.path.isdir(url):
            msg = f"{what}={url!r} is a file; give a new directory or a run store"
            raise StoreError(msg)
        content = os.listdir(url)
        if content:
            kind = describe(url)
            msg = (f"{what}={url!r} is not empty and not a run store ({kind}); step_to_zarr "
                   f"writes a run store of committed generations into a new or empty directory "
                   f"and never writes over what is there")
            raise StoreError(msg)
    os.makedirs(url, exist_ok=True)
    write_json_atomic(os.path.join(url, RUN), {"format": FORMAT, "kind": "run"})


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def describe(url: str) -> str:
    """A few words on what ``url`` holds (for error messages)."""
    if not os.path.exists(url):
        return "nothing: it does not exist"
    try:
        body = read_record(url, what="url")
    except StoreError:
        return "a directory with a damaged commit record"
    if body is not None:
        return f"a committed {body.get('kind', '?')}"
    if os.path.isfile(os.path.join(url, "state", "scalars.json")) or os.path.isfile(
            os.path.join(url, "scalars.json")):
        return ("arrays in the layout step_to_zarr wrote before generations, which has no "
                "commit record, so whether it is complete cannot be known")
    return "arrays or files without a commit record"


def new_generation(url: str, *, what: str = "url") -> tuple[int, str]:
    """Discard half-written generations (warning) and create the next one's directory.

    Call with the writer lock held. The number is one more than the highest number present,
    committed or not, so numbers are never reused.
    """
    gens = list_generations(url)
    number = max((g.number for g in gens), default=0) + 1
    for g in gens:
        if not g.committed:
            warnings.warn(f"{what}={url!r}: discarding half-written generation {g.number} "
                          f"({os.path.basename(g.path)}: no commit record; its step was "
                          f"interrupted)", DiscardedGenerationWarning, stacklevel=3)
            _remove_generation(g.path)
    path = os.path.join(url, f"gen-{number:08d}-{secrets.token_hex(4)}")
    os.makedirs(path)
    return number, path


def discard(path: str) -> None:
    """Delete an uncommitted generation directory (best effort; a failed step's leftovers)."""
    _remove_generation(path)


def collect_garbage(url: str, *, keep: int, _locked: bool = False) -> list[int]:
    """Delete all but the newest ``keep`` committed generations of the run store ``url`` (and
    any half-written one); returns the numbers deleted.

    ``keep`` must be an integer >= 1: the newest committed generation is never deleted. Takes the
    writer lock, so it never runs during a step. Arrays opened earlier from a deleted generation
    then read as missing (NaN-filled chunks): keep enough generations for such readers.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        msg = f"collect_garbage: keep={keep!r} is not accepted; give an integer >= 1"
        raise ValueError(msg)
    if not is_run(url):
        msg = f"collect_garbage: url={url!r} is not a run store (no {RUN})"
        raise StoreError(msg)
    lock = contextlib.nullcontext() if _locked else writer_lock(url)
    with lock:
        gens = list_generations(url)
        done = [g for g in gens if g.committed]
        drop = done[:-keep] + [g for g in gens if not g.committed]
        for g in drop:
            _remove_generation(g.path)
        return sorted(g.number for g in drop)


# --------------------------------------------------------------------------- chunked arrays


def fill_value(dtype) -> Any:
    """NaN for floating arrays (a chunk that was never written reads as NaN, not as plausible
    zeros), 0 otherwise."""
    import numpy as np

    return float("nan") if np.dtype(dtype).kind in "fc" else 0


def _block_crc(block) -> int:
    import numpy as np

    b = np.ascontiguousarray(block)
    return zlib.crc32(b.reshape(-1).view(np.uint8))


def write_block(block, path, block_info=None):
    """Dask task: write one block into the zarr array at ``path``; return its CRC-32."""
    import numpy as np

    loc = block_info[0]["array-location"]
    z = zarr.open_array(path, mode="r+")
    z[tuple(slice(a, b) for a, b in loc)] = block
    return np.full((1,) * block.ndim, _block_crc(block), dtype=np.int64)


def _read_crc(block):
    import numpy as np

    return np.full((1,) * block.ndim, _block_crc(block), dtype=np.int64)


def _regular(x):
    """``x`` rechunked, if needed, so that every chunk but the last along each axis has the
    same size (zarr's grid)."""
    ok = all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in x.chunks)
    return x if ok else x.rechunk(tuple(max(c) for c in x.chunks))


def prepare_writes(arrays: dict[str, Any], root: str) -> tuple[list, dict]:
    """Create an empty zarr array under ``root`` for every n-d Dask array of ``arrays``
    (``{relative path: array}``) and build the write tasks.

    Returns ``(crcs, meta)``: one lazy array of per-chunk CRC-32s per written array (computing it
    writes the chunks) and the record entries without their CRCs.
    """
    import dask.array as da
    import numpy as np
    import zarr
    from dask.base import tokenize

    crcs, meta = [], {}
    for rel, x in arrays.items():
        x = _regular(da.asarray(x))
        path = os.path.join(root, rel)
        chunks = tuple(max(1, c[0]) for c in x.chunks)
        zarr.create_array(store=path, shape=x.shape, chunks=chunks, dtype=x.dtype,
                          fill_value=fill_value(x.dtype), overwrite=True)
        crc = da.map_blocks(write_block, x, path, dtype=np.int64,
                            chunks=tuple((1,) * len(c) for c in x.chunks),
                            name=f"adaptive-ref-write-{tokenize(x, path)}")
        crcs.append(crc)
        meta[rel] = {"shape": list(x.shape), "chunks": list(chunks), "dtype": str(x.dtype)}
    return crcs, meta


def scalar_entry(value) -> list:
    import numpy as np

    v = np.asarray(value)
    return [v.item(), str(v.dtype)]


def finish_meta(meta: dict, crcs) -> dict:
    """``meta`` with each array's computed CRCs (C order of the chunk grid)."""
    import numpy as np

    out = {}
    for (rel, m), c in zip(meta.items(), crcs, strict=True):
        out[rel] = {**m, "crc32": [int(v) for v in np.asarray(c).reshape(-1)]}
    return out


def check_arrays(directory: str, body: dict, rels, *, what: str) -> None:
    """Each array ``rels`` of the record exists with the recorded shape, chunks and dtype, and
    the record holds one CRC per chunk (a cheap check; :func:`verify` reads the data)."""
    import math

    import zarr

    for rel in rels:
        m = body["arrays"][rel]
        path = os.path.join(directory, rel)
        try:
            z = zarr.open_array(path, mode="r")
        except Exception as err:  # noqa: BLE001 - any failure to open is reported the same way
            msg = f"{what}: the committed array {path} cannot be opened ({err})"
            raise StoreError(msg) from err
        got = {"shape": list(z.shape), "chunks": list(z.chunks), "dtype": str(z.dtype)}
        want = {k: m[k] for k in got}
        n = math.prod(-(-s // c) for s, c in zip(m["shape"], m["chunks"], strict=True))
        if got != want or len(m["crc32"]) != n:
            msg = (f"{what}: the array {path} does not match its commit record (on disk "
                   f"{got}, recorded {want} with {len(m['crc32'])} chunk checksums for {n} "
                   f"chunks); it was changed after its commit")
            raise StoreError(msg)


def verify(url: str, generation: int | None = None) -> int:
    """Read every chunk of a committed tree or run-store generation and compare its CRC-32 with
    the commit record; returns the number of chunks checked, raises :class:`StoreError` naming
    the first differing chunks. Runs on the active Dask scheduler (it reads all the data)."""
    import dask
    import dask.array as da
    import numpy as np

    if is_run(url):
        directory, body = committed(url, generation)
    else:
        directory, body = url, read_record(url, what=f"url={url!r}")
        if body is None:
            msg = f"verify: url={url!r} has no commit record; nothing committed to check"
            raise StoreError(msg)
    rels = list(body["arrays"])
    check_arrays(directory, body, rels, what=f"url={url!r}")
    lazy = []
    for rel in rels:
        x = da.from_zarr(os.path.join(directory, rel))
        lazy.append(da.map_blocks(_read_crc, x, dtype=np.int64,
                                  chunks=tuple((1,) * len(c) for c in x.chunks)))
    got = dask.compute(*lazy)
    bad, n = [], 0
    for rel, c in zip(rels, got, strict=True):
        flat = np.asarray(c).reshape(-1)
        want = np.asarray(body["arrays"][rel]["crc32"], dtype=np.int64)
        n += flat.size
        bad += [f"{rel} chunk {int(i)}" for i in np.flatnonzero(flat != want)]
    if bad:
        msg = (f"verify: {len(bad)} chunk(s) of {directory} differ from their commit record: "
               f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
        raise StoreError(msg)
    return n


# ------------------------------------------------------------------ where a Dask array reads


def zarr_sources(x) -> set[str]:
    """Absolute local paths of the zarr arrays a Dask array's graph reads (``from_zarr``)."""
    import zarr

    out = set()
    graph = x.__dask_graph__()
    for layer in getattr(graph, "layers", {"": graph}).values():
        for v in layer.values():
            if isinstance(v, zarr.Array):
                store = v.store
                root = getattr(store, "root", None) or getattr(store, "path", None)
                if root is None:
                    continue
                root = str(root)
                if root.startswith("file://"):
                    root = root[len("file://"):]
                out.add(os.path.realpath(os.path.join(root, v.path)))
    return out
