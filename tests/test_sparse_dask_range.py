"""Row-sparse steps on Dask: an out-of-range row index raises (lazily), it is never dropped.

Before, Dask's gather/scatter silently dropped a row index >= N and wrapped a negative one to
row N - 1. Now the range check is a task that every array output depends on: the step itself
stays lazy (a scheduler that raises on any compute is active during the step), and computing the
parameter, a moment, or a chunk of either that the bad row does not touch raises the same
``IndexError`` the eager backends raise at the call.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref.sparse import (
    RowSparse,
    lazy_adam_init,
    lazy_adam_step,
    rowwise_adagrad_init,
    rowwise_adagrad_step,
    sparse_adagrad_init,
    sparse_adagrad_step,
)

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

STEPS = [(lazy_adam_init, lazy_adam_step), (sparse_adagrad_init, sparse_adagrad_step),
         (rowwise_adagrad_init, rowwise_adagrad_step)]


def _no_compute(dsk, keys, **kwargs):
    raise AssertionError("a sparse step computed a Dask graph; steps must stay lazy")


@pytest.mark.parametrize(("init", "step"), STEPS, ids=[s.__name__ for _, s in STEPS])
@pytest.mark.parametrize("bad", [10, 12, -1, -11])
def test_out_of_range_row_raises_when_computed(init, step, bad):
    p = da.from_array(np.ones((10, 3)), chunks=(4, 3))
    g = RowSparse(da.from_array(np.array([1, bad]), chunks=1),
                  da.from_array(np.ones((2, 3)), chunks=1))
    with dask.config.set(scheduler=_no_compute):
        new_p, new_s = step(p, g, init(p), lr=0.1)
    outputs = {"param": new_p, "param[8:] (untouched rows)": new_p[8:]}
    outputs.update({f: x for f, x in zip(new_s._fields, new_s, strict=True)
                    if x is not None and x.ndim > 0})
    for what, x in outputs.items():
        with pytest.raises(IndexError, match=rf"grad\.indices contains {bad}, outside the "
                                             rf"accepted range \[0, 10\)"):
            x.compute(scheduler="synchronous")
        assert what  # each output was checked


@pytest.mark.parametrize(("init", "step"), STEPS, ids=[s.__name__ for _, s in STEPS])
def test_in_range_rows_still_equal_numpy(init, step):
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((10, 3))
    idx, vals = np.array([9, 0, 9]), rng.standard_normal((3, 3))
    got, _ = step(da.from_array(p0, chunks=(4, 3)),
                  RowSparse(da.from_array(idx, chunks=1), da.from_array(vals, chunks=1)),
                  init(da.from_array(p0, chunks=(4, 3))), lr=0.1)
    want, _ = step(p0, RowSparse(idx, vals), init(p0), lr=0.1)
    assert np.array_equal(got.compute(scheduler="synchronous"), want)
