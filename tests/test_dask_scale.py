"""Parameter trees on zarr, stepped by the reference through a dask.distributed LocalCluster.

Small sizes: results on a sample of chunks must equal the NumPy reference bit for bit (the same
operations run per chunk; the scalars are computed in float64 on both backends), the step must
stay lazy until it is written, and the client's memory must stay well below the parameter set.
The large run (1.5e9 parameters, more than this machine's free memory) is
benchmarks/dask_scale.py.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

import adaptive_ref as ar  # noqa: E402
from adaptive_ref import distributed as ard  # noqa: E402

N, CHUNK = 200_000, 25_000


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _tree(tmp_path, rng):
    host = {"w": rng.standard_normal(N).astype(np.float32),
            "b": rng.standard_normal(N // 4).astype(np.float32)}
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in host.items()}
    ard.write_tree({k: da.from_array(v, chunks=CHUNK) for k, v in host.items()},
                   str(tmp_path / "p0"))
    ard.write_tree({k: da.from_array(v, chunks=CHUNK) for k, v in grads.items()},
                   str(tmp_path / "g"))
    return host, grads


@pytest.mark.parametrize("name", ["adamw", "nadam"])
def test_zarr_steps_equal_numpy_on_sampled_chunks(client, tmp_path, name):
    rng = np.random.default_rng(0)
    host, hgrads = _tree(tmp_path, rng)
    params = ard.open_tree(str(tmp_path / "p0"), host)
    grads = ard.open_tree(str(tmp_path / "g"), host)
    init = getattr(ar, f"{name}_init")
    state = {k: init(v) for k, v in params.items()}
    ref_p = dict(host)
    ref_s = {k: init(v) for k, v in host.items()}
    url = str(tmp_path / "run")
    for step in range(2):
        params, state = ard.step_to_zarr(name, params, grads, state, url, in_place=step > 0,
                                         lr=1e-2)
        for k in host:
            ref_p[k], ref_s[k] = getattr(ar, f"{name}_step")(ref_p[k], hgrads[k], ref_s[k],
                                                             lr=1e-2)
    for k in host:
        nchunks = len(params[k].chunks[0])
        for c in sorted({0, nchunks // 2, nchunks - 1}):
            sl = slice(c * CHUNK, (c + 1) * CHUNK)
            np.testing.assert_array_equal(params[k][sl].compute(), ref_p[k][sl])
            np.testing.assert_array_equal(state[k].mu[sl].compute(), ref_s[k].mu[sl])
            np.testing.assert_array_equal(state[k].nu[sl].compute(), ref_s[k].nu[sl])
        assert int(state[k].count.compute()) == 2


def test_step_is_lazy_and_memory_stays_bounded(client, tmp_path):
    """The step builds a graph (no compute); writing it never holds the whole set at once."""
    import psutil

    n = 8_000_000  # 32 MB per array, 128 MB for p, g, m, v
    p = da.random.default_rng(1).standard_normal(n, chunks=250_000, dtype=np.float32)
    g = da.random.default_rng(2).standard_normal(n, chunks=250_000, dtype=np.float32)
    ard.write_tree({"p": p, "g": g}, str(tmp_path / "in"))
    params = ard.open_tree(str(tmp_path / "in"), ["p"])
    grads = {"p": ard.open_tree(str(tmp_path / "in"), ["g"])["g"]}
    state = {"p": ar.adam_init(params["p"])}
    new_p, new_s = ar.adam_step(params["p"], grads["p"], state["p"])
    assert isinstance(new_p, da.Array) and isinstance(new_s.mu, da.Array)  # lazy
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    import threading

    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.01)

    base = proc.memory_info().rss
    t = threading.Thread(target=watch)
    t.start()
    try:
        ard.step_to_zarr("adam", params, grads, state, str(tmp_path / "out"))
    finally:
        done.set()
        t.join()
    grew = (peak[0] - base) / 2**20
    assert grew < 96, f"RSS grew {grew:.0f} MiB for a 128 MiB parameter set"
