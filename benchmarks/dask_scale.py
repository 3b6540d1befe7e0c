"""A parameter set larger than this machine's free memory, stepped on Dask + zarr.

    python -m benchmarks.dask_scale                # 1.5e9 fp32 parameters (6 GB per array)
    python -m benchmarks.dask_scale --n 2e8        # smaller
    python -m benchmarks.dask_scale --scheduler tcp://host:8786 --path /shared/dir

Writes the parameters and gradients to zarr (random, chunked), then runs two Adam steps with the
reference step function through a ``dask.distributed`` cluster (a LocalCluster of 2 single-thread
worker processes unless ``--scheduler`` is given): step 1 from a fresh (lazy, all-zero) state,
writing the new parameters and state to zarr as generation 1 of a run store; step 2 reads
parameters, gradients and both moments from disk (the whole set, 4 arrays), commits generation 2
and then deletes generation 1 (``in_place=True``, i.e. ``keep=1``). It samples
the resident memory (RSS) of the client and every worker process every 0.25 s, checks a sample of
chunks against NumPy, and reports times and peak RSS. The data is deleted at the end unless
``--keep``. Check free disk first: the run needs 8 arrays of 4 N bytes (p, g and two
generations of p, m, v during step 2).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class RSSMonitor:
    """Peak RSS of this process and all its descendants (sum, and the largest single one)."""

    def __init__(self, interval=0.25):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak_total = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil

        total = one = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                r = p.memory_info().rss
            except psutil.Error:
                continue
            total += r
            one = max(one, r)
        self.peak_total = max(self.peak_total, total)
        self.peak_one = max(self.peak_one, one)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float, default=1.5e9, help="parameters (fp32)")
    ap.add_argument("--chunk", type=float, default=2**23, help="elements per chunk")
    ap.add_argument("--path", type=Path, default=Path("/work/scratch_dask_scale"))
    ap.add_argument("--scheduler", default=None, help="address of a running scheduler")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="1.5GiB", help="per LocalCluster worker")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    import dask
    import dask.array as da
    import distributed
    import psutil

    import adaptive_ref as ar
    from adaptive_ref import distributed as ard

    n, chunk = int(args.n), int(args.chunk)
    need = 8 * 4 * n
    args.path.mkdir(parents=True, exist_ok=True)
    free_disk = shutil.disk_usage(args.path).free
    if need > free_disk - 10 * 2**30:
        print(f"not enough disk: need {need / 2**30:.1f} GiB + 10 GiB margin, "
              f"have {free_disk / 2**30:.1f} GiB free; use --n")
        return 2
    avail = psutil.virtual_memory().available
    lines = [f"## Dask + zarr scale run, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"Command: `python -m benchmarks.dask_scale {' '.join(argv or sys.argv[1:])}`",
             f"N = {n:.3g} fp32 parameters ({4 * n / 2**30:.1f} GiB per array; parameter set "
             f"p, g, m, v = {16 * n / 2**30:.1f} GiB), chunks of {chunk} elements; memory "
             f"available at start {avail / 2**30:.1f} GiB; free disk {free_disk / 2**30:.0f} GiB",
             f"Versions: dask {dask.__version__}, distributed {distributed.__version__}"]
    if args.scheduler:
        cluster = None
        client = distributed.Client(args.scheduler)
        lines.append(f"Scheduler: {args.scheduler}")
    else:
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, memory_limit=args.memory_limit,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        lines.append(f"LocalCluster: {args.workers} worker processes x 1 thread, "
                     f"memory_limit {args.memory_limit} each")
    root = str(args.path)
    try:
        t0 = time.perf_counter()
        with RSSMonitor() as mon:
            p0 = da.random.default_rng(1).standard_normal(n, chunks=chunk, dtype=np.float32)
            g = da.random.default_rng(2).standard_normal(n, chunks=chunk, dtype=np.float32)
            ard.write_tree({"p": p0, "g": g}, os.path.join(root, "in"))
        lines.append(f"write p, g: {time.perf_counter() - t0:.0f} s, peak RSS (client + workers)"
                     f" {mon.peak_total / 2**30:.2f} GiB")
        params = ard.open_tree(os.path.join(root, "in"), ["p"])
        grads = {"p": ard.open_tree(os.path.join(root, "in"), ["g"])["g"]}
        state = {"p": ar.adam_init(params["p"])}
        for step in (1, 2):
            t0 = time.perf_counter()
            with RSSMonitor() as mon:
                params, state = ard.step_to_zarr("adam", params, grads, state,
                                                 os.path.join(root, "run"), in_place=step == 2,
                                                 lr=1e-3)
            what = ("reads p, g (disk), zero state; writes p, m, v" if step == 1 else
                    "reads p, g, m, v (disk); commits a new generation of p, m, v and deletes "
                    "the first")
            lines.append(f"Adam step {step} ({what}): {time.perf_counter() - t0:.0f} s, peak "
                         f"RSS client + workers {mon.peak_total / 2**30:.2f} GiB (largest "
                         f"single process {mon.peak_one / 2**30:.2f} GiB)")
        # sample check against NumPy, two steps from the same inputs
        nchunks = len(params["p"].chunks[0])
        bad = 0
        for c in sorted({0, nchunks // 2, nchunks - 1}):
            sl = slice(c * chunk, min(n, (c + 1) * chunk))
            p_ref = np.asarray(ard.open_tree(os.path.join(root, "in"), ["p"])["p"][sl])
            g_ref = np.asarray(grads["p"][sl])
            s_ref = ar.adam_init(p_ref)
            for _ in range(2):
                p_ref, s_ref = ar.adam_step(p_ref, g_ref, s_ref, lr=1e-3)
            bad += int((np.asarray(params["p"][sl]) != p_ref).sum())
            bad += int((np.asarray(state["p"].mu[sl]) != s_ref.mu).sum())
            bad += int((np.asarray(state["p"].nu[sl]) != s_ref.nu).sum())
        lines.append(f"Sample of chunks (first, middle, last) vs NumPy after 2 steps: {bad} "
                     f"differing elements")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        if not args.keep:
            shutil.rmtree(args.path, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    (args.out / f"dask-{stamp}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
