"""Run the conformance cases in worker processes, so a run uses every core.

:func:`run_in_pool` cuts each implementation's cases into chunks of neighbouring cases (same
optimizer, so a worker reuses what it compiled for the previous case), hands the chunks to
``jobs`` worker processes (started with ``spawn``: the parent has torch's and XLA's threads
running, which ``fork`` would copy in an undefined state) and returns every result, keyed by
``(implementation, case id)``. Each case runs exactly as in a serial run
(:func:`.runner.evaluate`), only in another process; :func:`.runner.run_all` then walks the
results in the serial order and applies the expected failures and reproduce lines there, so the
report is the same. An adapter that cannot be sent to a worker (it does not pickle) is left out
of the pool and runs in the parent as before.

A worker keeps each adapter it receives for the rest of the run (:func:`_live_adapter`): its next
chunk of that implementation reuses what the first one started (the Keras adapter's worker
process, whose start costs seconds) instead of unpickling a fresh copy.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

__all__ = ["run_in_pool", "default_jobs", "auto_jobs", "jobs_arg", "jax_cache_dir", "CHUNK",
           "POOL_MIN_RUNS"]

CHUNK = 16  # cases per work item: small enough to balance the load, large enough to reuse traces
POOL_MIN_RUNS = 200  # below this many (implementation, case) runs, starting workers costs more


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_jobs(jobs: int | None, adapters, cases) -> int:
    """``jobs`` if given, else one per core for a selection of at least :data:`POOL_MIN_RUNS`
    runs and 1 (no workers) for a smaller one."""
    if jobs is not None:
        return jobs
    runs = sum(1 for a in adapters for c in cases if a.applies_to(c))
    return default_jobs() if runs >= POOL_MIN_RUNS else 1


def jobs_arg(text: str) -> int:
    """The ``--jobs`` argument: a whole number >= 1 (argparse reports the error)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"--jobs must be a whole number of worker processes >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def jax_cache_dir() -> str:
    """Where the workers keep JAX's persistent compilation cache (``$JAX_COMPILATION_CACHE_DIR``
    if set): a later run loads the jitted steps (the reference's and optax's) instead of
    compiling them again. The compiled programs are the same either way."""
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "adaptive_ref", "jax")


def _start_worker() -> None:
    # One thread per library per worker: the workers already fill the cores, and the cases'
    # arrays are far too small for intra-op threads to pay off.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # set before the worker imports JAX (a fresh interpreter: spawn), read by JAX at import
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", jax_cache_dir())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


_LIVE: dict = {}  # in a worker: the adapters received so far, by the digest of their pickle


def _live_adapter(blob: bytes):
    """The adapter pickled as ``blob``: the one this worker already made from the same bytes,
    else a new one (kept for the next chunk)."""
    key = hashlib.sha256(blob).digest()
    adapter = _LIVE.get(key)
    if adapter is None:
        adapter = _LIVE[key] = pickle.loads(blob)
    return adapter


def _run_chunk(blob: bytes, cases):
    from .runner import evaluate

    adapter = _live_adapter(blob)
    return [evaluate(adapter, case) for case in cases]


def _chunks(adapters, cases):
    for adapter in adapters:
        try:
            blob = pickle.dumps(adapter)
        except Exception:  # noqa: BLE001 - any pickling failure: run it in the parent
            continue
        mine = [c for c in cases if adapter.applies_to(c)]
        for lo in range(0, len(mine), CHUNK):
            yield adapter, blob, mine[lo:lo + CHUNK]


def run_in_pool(adapters, cases, *, jobs: int | None = None, progress=None) -> dict:
    """``{(adapter name, case id): CaseResult}`` for every case of every picklable adapter,
    computed by ``jobs`` worker processes (default: :func:`default_jobs`). ``progress(impl, i,
    n, result)`` is called as results arrive (``i`` counts that implementation's results)."""
    work = list(_chunks(adapters, cases))
    totals: dict[str, int] = {}
    for adapter, _, chunk in work:
        totals[adapter.name] = totals.get(adapter.name, 0) + len(chunk)
    done: dict = {}
    if not work:
        return done
    counts = dict.fromkeys(totals, 0)
    with ProcessPoolExecutor(max_workers=jobs or default_jobs(), mp_context=get_context("spawn"),
                             initializer=_start_worker) as pool:
        futures = {pool.submit(_run_chunk, blob, chunk): a.name for a, blob, chunk in work}
        for fut in as_completed(futures):
            name = futures[fut]
            for res in fut.result():
                done[(name, res.case_id)] = res
                counts[name] += 1
                if progress:
                    progress(name, counts[name], totals[name], res)
    return done
