"""Faults in the Dask/zarr path: nothing a reader or a resume sees is ever silently wrong.

* a worker process SIGKILLed once ~30 % of a step's chunks are written (a LocalCluster of two
  single-thread worker processes on this machine): the step completes with the NumPy result,
  bit for bit, in every element;
* the client process SIGKILLed mid-step (a subprocess): reopening gives the previous committed
  step bit for bit, a partly written new url is refused (never zeros), and resuming gives the
  undisturbed result;
* a write that fails partway (disk full): the same;
* two steps on one url; inputs that read a half-written generation; damaged records; a second
  writer; garbage collection.

Every comparison is exact: Dask runs the same NumPy kernels per chunk in the same order, so the
results must be bit-identical (tests/test_dask_scale.py). Every test that can block on a cluster
runs under a SIGALRM deadline, so a hung cluster fails the test instead of hanging CI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
pytest.importorskip("zarr")

import adaptive_ref as ar  # noqa: E402
from adaptive_ref import distributed as ard  # noqa: E402
from adaptive_ref import zarr_store as zs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHUNK, NCHUNKS = 4_096, 64
N = CHUNK * NCHUNKS  # 256 Ki float32 parameters: 64 chunks per array, 192 chunk writes a step
LR = 1e-2


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise TimeoutError in the main thread after ``seconds`` (a hung cluster fails the test)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded its {seconds} s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def written_chunks(url, since: float) -> int:
    """Chunk files (zarr ``c/...`` keys) under ``url`` modified at or after ``since``."""
    n = 0
    for dirpath, _, files in os.walk(url):
        if f"{os.sep}c" not in dirpath:
            continue
        for f in files:
            try:
                if os.stat(os.path.join(dirpath, f)).st_mtime >= since:
                    n += 1
            except FileNotFoundError:
                pass
    return n


def host_data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal(N).astype(np.float32),
            rng.standard_normal(N).astype(np.float32))


def numpy_steps(p0, g, steps):
    p, s = p0, ar.adam_init(p0)
    for _ in range(steps):
        p, s = ar.adam_step(p, g, s, lr=LR)
    return p, s


def write_inputs(tmp_path):
    p0, g = host_data()
    ard.write_tree({"w": da.from_array(p0, chunks=CHUNK), "g": da.from_array(g, chunks=CHUNK)},
                   str(tmp_path / "in"))
    return p0, g


def inputs(tmp_path):
    t = ard.open_tree(str(tmp_path / "in"), ["w", "g"])
    return {"w": t["w"]}, {"w": t["g"]}


def assert_equal_numpy(params, state, p0, g, steps):
    want_p, want_s = numpy_steps(p0, g, steps)
    got = dask.compute(params["w"], state["w"].mu, state["w"].nu, state["w"].count)
    for name, x, ref in zip(("param", "mu", "nu"), got[:3], (want_p, want_s.mu, want_s.nu),
                            strict=True):
        bad = np.flatnonzero(x.view(np.uint32) != ref.view(np.uint32))
        assert bad.size == 0, (f"{name}: {bad.size} elements differ from NumPy after {steps} "
                               f"steps, in chunks {sorted(set((bad // CHUNK).tolist()))}")
    assert int(got[3]) == steps


# ------------------------------------------------------------------- a worker dies mid-step


def kill_at_progress(url, t0, at, marker):
    """A worker plugin: the first worker that sees ``at`` chunk files written since ``t0`` under
    ``url`` records the count and its pid in ``marker`` and SIGKILLs its own process (once per
    cluster: a restarted worker finds the marker)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class KillAtProgress(WorkerPlugin):
        def __init__(self):
            self._last = 0.0

        def transition(self, key, start, finish, **kwargs):
            if finish != "memory" or os.path.exists(marker):
                return
            now = time.monotonic()
            if now - self._last < 0.005:
                return
            self._last = now
            n = written_chunks(url, t0)
            if n < at:
                return
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{n} {os.getpid()}".encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)

    return KillAtProgress()


def test_worker_killed_mid_step_gives_the_numpy_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    p0, g = write_inputs(tmp_path)
    url = str(tmp_path / "run")
    total = 3 * NCHUNKS  # param, mu, nu
    marker = str(tmp_path / "killed")
    with deadline(150), distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=50) as cluster, distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        params, grads = inputs(tmp_path)
        state = {"w": ar.adam_init(params["w"])}
        params, state = ard.step_to_zarr("adam", params, grads, state, url, lr=LR)
        time.sleep(0.05)  # step 2's files get later mtimes than step 1's
        t0 = time.time()
        client.register_plugin(kill_at_progress(url, t0, int(0.3 * total), marker),
                               name="kill")
        params, state = ard.step_to_zarr("adam", params, grads, state, url, in_place=True,
                                         lr=LR)
        assert os.path.exists(marker), "the fault was not injected (no worker was killed)"
        at, pid = map(int, Path(marker).read_text().split())
        assert at < total, f"the worker was killed after the step's writes ({at}/{total})"
        assert pid in pids  # one of the two worker processes killed itself (SIGKILL)
        assert_equal_numpy(params, state, p0, g, 2)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# -------------------------------------------------------------- the client dies mid-step

CLIENT = r"""
import os, signal, sys, time
import dask
import adaptive_ref as ar
from adaptive_ref import distributed as ard
sys.path.insert(0, {tests!r})
from test_dask_faults import written_chunks, LR

root, url, step, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.time()


def hook(block):
    if written_chunks(url, t0) >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return block


t = ard.open_tree(os.path.join(root, "in"), ["w", "g"])
grads = {{"w": t["g"].map_blocks(hook, dtype=t["g"].dtype)}}
if step == 1:
    params = {{"w": t["w"]}}
    state = {{"w": ar.adam_init(params["w"])}}
else:
    params = ard.open_tree(os.path.join(url, "params"), ["w"])
    state = ard.open_state("adam", os.path.join(url, "state"), ["w"])
with dask.config.set(scheduler="synchronous"):
    ard.step_to_zarr("adam", params, grads, state, url, in_place=step > 1, lr=LR)
sys.exit(3)
"""


def run_client_killed(tmp_path, url, step):
    code = CLIENT.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), url, str(step),
                           str(int(0.3 * 3 * NCHUNKS))], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (
        f"the client was not killed mid-step (rc {proc.returncode}): {proc.stderr[-2000:]}")


def test_client_killed_in_a_first_step_leaves_nothing_readable(tmp_path):
    p0, g = write_inputs(tmp_path)
    url = str(tmp_path / "run")
    run_client_killed(tmp_path, url, 1)
    assert written_chunks(url, 0) > 0  # it was killed part-way through the writes
    with pytest.raises(zs.StoreError, match="no committed generation"):
        ard.open_tree(os.path.join(url, "params"), ["w"])
    with pytest.raises(zs.StoreError, match="no committed generation"):
        ard.open_state("adam", os.path.join(url, "state"), ["w"])
    params, grads = inputs(tmp_path)
    with dask.config.set(scheduler="synchronous"), \
            pytest.warns(zs.DiscardedGenerationWarning, match="half-written generation 1"):
        params, state = ard.step_to_zarr("adam", params, grads,
                                          {"w": ar.adam_init(params["w"])}, url, lr=LR)
    assert_equal_numpy(params, state, p0, g, 1)
    assert [(x.number, x.committed) for x in zs.list_generations(url)] == [(2, True)]


def test_client_killed_in_an_in_place_step_keeps_the_previous_step(tmp_path):
    p0, g = write_inputs(tmp_path)
    url = str(tmp_path / "run")
    params, grads = inputs(tmp_path)
    with dask.config.set(scheduler="synchronous"):
        ard.step_to_zarr("adam", params, grads, {"w": ar.adam_init(params["w"])}, url, lr=LR)
    time.sleep(0.05)
    run_client_killed(tmp_path, url, 2)
    # a reader (the pre-generation way of reopening still works) sees step 1, bit for bit
    params = ard.open_tree(os.path.join(url, "params"), ["w"])
    state = ard.open_state("adam", os.path.join(url, "state"), ["w"])
    with dask.config.set(scheduler="synchronous"):
        assert_equal_numpy(params, state, p0, g, 1)
        with pytest.warns(zs.DiscardedGenerationWarning):
            params, state = ard.step_to_zarr("adam", params, grads, state, url, in_place=True,
                                             lr=LR)
        assert_equal_numpy(params, state, p0, g, 2)
    assert [(x.number, x.committed) for x in zs.list_generations(url)] == [(3, True)]


# ---------------------------------------------------------------- a write fails (disk full)


def test_disk_full_partway_keeps_the_previous_step(tmp_path, monkeypatch):
    p0, g = write_inputs(tmp_path)
    url = str(tmp_path / "run")
    params, grads = inputs(tmp_path)
    real = zs.write_block
    calls = []

    def full_after_ten(block, path, block_info=None):
        calls.append(path)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(block, path, block_info=block_info)

    with dask.config.set(scheduler="synchronous"):
        params, state = ard.step_to_zarr("adam", params, grads,
                                         {"w": ar.adam_init(params["w"])}, url, lr=LR)
        monkeypatch.setattr(zs, "write_block", full_after_ten)
        with pytest.raises(OSError, match="No space left"):
            ard.step_to_zarr("adam", params, grads, state, url, lr=LR)
        assert len(calls) > 10
        monkeypatch.setattr(zs, "write_block", real)
        # the failed generation is gone; readers and a resume see step 1
        assert [(x.number, x.committed) for x in zs.list_generations(url)] == [(1, True)]
        run = ard.open_run(url)
        assert run.generation == 1
        assert_equal_numpy(run.params, run.state, p0, g, 1)

        def no_room(directory, body):
            raise OSError(errno.ENOSPC, "No space left on device (injected, commit record)")

        monkeypatch.setattr(zs, "write_record", no_room)
        with pytest.raises(OSError, match="commit record"):
            ard.step_to_zarr("adam", run.params, grads, run.state, url, lr=LR)
        monkeypatch.undo()
        assert ard.open_run(url).generation == 1
        params, state = ard.step_to_zarr("adam", run.params, grads, run.state, url, lr=LR)
        assert_equal_numpy(params, state, p0, g, 2)
        assert zs.verify(url) == 3 * NCHUNKS


# ------------------------------------------------------------------------ same url, twice


def test_two_steps_on_one_url_without_in_place(tmp_path):
    """Before generations the second step overwrote the arrays it was reading."""
    p0, g = write_inputs(tmp_path)
    url = str(tmp_path / "run")
    params, grads = inputs(tmp_path)
    state = {"w": ar.adam_init(params["w"])}
    with dask.config.set(scheduler="synchronous"):
        for _ in range(2):
            params, state = ard.step_to_zarr("adam", params, grads, state, url, lr=LR)
        assert_equal_numpy(params, state, p0, g, 2)
        first = ard.open_run(url, generation=1)  # step 1 is still there, untouched
        assert_equal_numpy(first.params, first.state, p0, g, 1)


# ---------------------------------------------------------------- refusals and bookkeeping


def _small(tmp_path):
    x = np.arange(40, dtype=np.float32)
    ard.write_tree({"w": da.from_array(x, chunks=8), "g": da.from_array(x / 7, chunks=8)},
                   str(tmp_path / "in"))
    t = ard.open_tree(str(tmp_path / "in"), ["w", "g"])
    return {"w": t["w"]}, {"w": t["g"]}


def test_refusals_name_the_argument(tmp_path):
    params, grads = _small(tmp_path)
    state = {"w": ar.adam_init(params["w"])}
    url = str(tmp_path / "run")
    with dask.config.set(scheduler="synchronous"):
        # the url holding the inputs is a tree, not a run store: never written over
        with pytest.raises(zs.StoreError, match=r"step_to_zarr: params\['w'\] reads .*in/w, "
                                                r"inside url=.*never writes where its inputs"):
            ard.step_to_zarr("adam", params, grads, state, str(tmp_path / "in"))
        with pytest.raises(zs.StoreError, match=r"step_to_zarr: url=.*not empty and not a run "
                                                r"store \(a committed tree\)"):
            fresh = da.zeros(40, chunks=8, dtype=np.float32)
            ard.step_to_zarr("adam", {"w": fresh}, {"w": fresh}, {"w": ar.adam_init(fresh)},
                             str(tmp_path / "in"))
        params, state = ard.step_to_zarr("adam", params, grads, state, url)
        # a half-written generation: never read, and refused as an input
        half = Path(url) / "gen-00000009-0123abcd"
        (half / "params").mkdir(parents=True)
        shutil.copytree(Path(zs.committed(url)[0]) / "params" / "w", half / "params" / "w")
        with pytest.raises(zs.StoreError, match="half-written generation"):
            ard.open_tree(str(half / "params"), ["w"])
        with pytest.raises(zs.StoreError, match="half-written generation"):
            ard.open_tree(str(half / "params"), ["w"], require_commit=False)
        stale = {"w": da.from_zarr(str(half / "params" / "w"))}  # read by hand
        with pytest.raises(zs.StoreError, match=r"params\['w'\] reads .*not in a committed "
                                                r"generation"):
            ard.step_to_zarr("adam", stale, grads, state, url)
        assert ard.open_run(url).generation == 1  # newest committed, not the half-written 9
        with pytest.raises(zs.StoreError, match="is a run store; open_run"):
            ard.open_tree(url, ["w"])
        with pytest.raises(zs.StoreError, match="inside a run store"):
            ard.write_tree({"g": grads["w"]}, str(Path(url) / "grads"))
        with pytest.raises(zs.StoreError, match=r"tree\['w'\] reads .* would be overwritten"):
            ard.write_tree({"w": grads["w"] + params["w"]}, str(tmp_path / "in"))
        with pytest.raises(zs.StoreError, match=r"names \['v'\] are not in"):
            ard.open_tree(str(tmp_path / "in"), ["v"])
        with pytest.raises(zs.StoreError, match=r"optimizer='sgd' but url=.* holds .*'adam'"):
            ard.open_state("sgd", os.path.join(url, "state"), ["w"])
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match=rf"keep={bad!r} is not accepted"):
                ard.step_to_zarr("adam", params, grads, state, url, keep=bad)
        with pytest.raises(ValueError, match="in_place=True means keep=1"):
            ard.step_to_zarr("adam", params, grads, state, url, in_place=True, keep=2)
        with zs.writer_lock(url), pytest.raises(zs.StoreError, match="another process"):
            ard.step_to_zarr("adam", params, grads, state, url)


def test_pre_generation_layout_needs_an_explicit_opt_in(tmp_path):
    """A store written before generations (no commit record) is refused unless asked for."""
    old = tmp_path / "old"
    x = np.arange(16, dtype=np.float32)
    with dask.config.set(scheduler="synchronous"):
        da.to_zarr(da.from_array(x, chunks=4), str(old / "params" / "w"))
        da.to_zarr(da.from_array(x * 0, chunks=4), str(old / "state" / "w" / "mu"))
        da.to_zarr(da.from_array(x * 0, chunks=4), str(old / "state" / "w" / "nu"))
        (old / "state" / "scalars.json").write_text(json.dumps({"w/count": [3, "int64"]}))
        with pytest.raises(zs.StoreError, match="no commit record.*layout step_to_zarr wrote "
                                                "before generations"):
            ard.open_state("adam", str(old / "state"), ["w"])
        with pytest.raises(zs.StoreError, match="no commit record"):
            ard.open_tree(str(old / "params"), ["w"])
        s = ard.open_state("adam", str(old / "state"), ["w"], require_commit=False)["w"]
        p = ard.open_tree(str(old / "params"), ["w"], require_commit=False)["w"]
        assert int(s.count.compute()) == 3 and np.array_equal(p.compute(), x)
        with pytest.raises(zs.StoreError, match=r"params\['w'\] reads .* never writes where"):
            ard.step_to_zarr("adam", {"w": p}, {"w": p}, {"w": s}, str(old))


def test_damage_is_detected_not_read(tmp_path):
    params, grads = _small(tmp_path)
    url = str(tmp_path / "run")
    with dask.config.set(scheduler="synchronous"):
        ard.step_to_zarr("adam", params, grads, {"w": ar.adam_init(params["w"])}, url)
        gen, body = zs.committed(url)
        assert zs.verify(url) == 3 * 5
        z = __import__("zarr").open_array(os.path.join(gen, "state", "w", "mu"), mode="r+")
        z[8:16] = 1.0  # a chunk changed behind the record's back
        with pytest.raises(zs.StoreError, match=r"state/w/mu chunk 1"):
            zs.verify(url)
        rec = Path(gen) / zs.COMMIT
        doc = json.loads(rec.read_text())
        doc["body"]["scalars"]["state/w/count"][0] = 5  # the SHA-256 no longer matches
        rec.write_text(json.dumps(doc))
        with pytest.raises(zs.StoreError, match="commit record .* is damaged"):
            ard.open_run(url)


def test_keep_collects_only_committed_old_generations(tmp_path):
    params, grads = _small(tmp_path)
    state = {"w": ar.adam_init(params["w"])}
    url = str(tmp_path / "run")
    with dask.config.set(scheduler="synchronous"):
        for _ in range(3):
            params, state = ard.step_to_zarr("adam", params, grads, state, url)
        assert [g.number for g in zs.list_generations(url)] == [1, 2, 3]
        old = params["w"]  # generation 3
        params, state = ard.step_to_zarr("adam", params, grads, state, url, keep=2)
        assert [g.number for g in zs.list_generations(url)] == [3, 4]
        assert np.isfinite(old.compute()).all()
        assert zs.collect_garbage(url, keep=1) == [3]
        assert np.isnan(old.compute()).all()  # a deleted generation reads NaN, never stale data
        with pytest.raises(ValueError, match="keep=0 is not accepted"):
            zs.collect_garbage(url, keep=0)
        run = ard.open_run(url)
        assert run.generation == 4 and int(run.state["w"].count.compute()) == 4


def test_interrupted_write_tree_is_refused_not_read_as_zeros(tmp_path, monkeypatch):
    x = np.arange(40, dtype=np.float32) + 1
    url = str(tmp_path / "t")
    real = zs.write_block
    calls = []

    def fail_third(block, path, block_info=None):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(block, path, block_info=block_info)

    with dask.config.set(scheduler="synchronous"):
        ard.write_tree({"w": da.from_array(x, chunks=8)}, url)
        monkeypatch.setattr(zs, "write_block", fail_third)
        with pytest.raises(OSError, match="No space left"):
            ard.write_tree({"w": da.from_array(2 * x, chunks=8)}, url)  # overwrite fails
        with pytest.raises(zs.StoreError, match="no commit record"):
            ard.open_tree(url, ["w"])
        monkeypatch.undo()
        ard.write_tree({"w": da.from_array(2 * x, chunks=8)}, url)
        assert np.array_equal(ard.open_tree(url, ["w"])["w"].compute(), 2 * x)
