"""Sparse variants on every backend: lazy Adam, sparse Adagrad, row-wise Adagrad.

Tolerances: the identities "every row present == dense step", "duplicates == their sum",
"dense_equivalent == dense Adam on the zero-filled gradient" and "absent rows unchanged" are
exact (``==``, bit for bit) on the eager backends, because the sparse steps run the dense
step's own update (``adam``'s, ``adagrad``'s) on the gathered rows, and on a dense gradient on
the whole table. Under ``jax.jit`` XLA may fuse
and contract operations differently for the gathered and the full arrays, so jit results are
compared with a bound of 16 float64 ULP relative to the parameter's movement.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref import adagrad_init, adagrad_step, adam_init, adam_step
from adaptive_ref.registry import REGISTRY
from adaptive_ref.sparse import (
    RowSparse,
    lazy_adam_init,
    lazy_adam_step,
    rowwise_adagrad_init,
    rowwise_adagrad_step,
    sparse_adagrad_init,
    sparse_adagrad_step,
)
from adaptive_ref.testing.backends import Backend

N, D = 7, 3
STEPS = 4


def _dense(idx, vals, n=N):
    """NumPy reference densification; duplicates summed pairwise in index order."""
    out = np.zeros((n, *vals.shape[1:]), dtype=vals.dtype)
    np.add.at(out, idx, vals)
    return out


def _rs(backend, idx, vals):
    return RowSparse(backend.asarray(np.asarray(idx, dtype=np.int64)), backend.asarray(vals))


def _np_state(backend, s):
    return [None if x is None else backend.to_numpy(x) for x in s]


def _index_sets(rng, steps=STEPS, *, unique=True, n=N, k=3):
    """Random row sets of a fixed size k (fixed shapes keep JAX's eager compile cache warm;
    the property tests in test_sparse_rows.py vary k)."""
    return [rng.choice(n, size=k, replace=not unique) for _ in range(steps)]


# ------------------------------------------------------------------ every row present == dense


@pytest.mark.parametrize("eps_placement", ["hat", "outside"])
def test_lazy_adam_all_rows_equals_dense_adam(backend, eps_placement):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((N, D))
    p_s = p_d = backend.asarray(p0)
    s_s, s_d = lazy_adam_init(p_s), adam_init(p_d)
    for _ in range(STEPS):
        g = rng.standard_normal((N, D))
        perm = rng.permutation(N)
        p_s, s_s = lazy_adam_step(p_s, _rs(backend, perm, g[perm]), s_s,
                                  eps_placement=eps_placement, lr=1e-2)
        p_d, s_d = adam_step(p_d, backend.asarray(g), s_d, eps_placement=eps_placement, lr=1e-2)
    assert np.array_equal(backend.to_numpy(p_s), backend.to_numpy(p_d))
    for a, b in zip(_np_state(backend, s_s), _np_state(backend, s_d), strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("which", ["lazy_adam_hat", "lazy_adam_outside", "sparse_adagrad"])
def test_dense_gradient_is_the_dense_step(backend, which, maximize):
    """A dense gradient (every row present) goes to the dense update itself: the same arrays,
    bit for bit, over every element of the parameter and the state."""
    sparse_init, sparse_step, kw = _SPARSE_STEPS[which]
    if which == "sparse_adagrad":
        dense_init, dense_step = adagrad_init, adagrad_step
    else:  # lazy Adam's default is eps-hat, Adam's is 'outside': name it for both
        dense_init, dense_step = adam_init, adam_step
        kw = {"eps_placement": "hat", **kw}
    rng = np.random.default_rng(2)
    p_s = p_d = backend.asarray(rng.standard_normal((N, D)))
    s_s, s_d = sparse_init(p_s), dense_init(p_d)
    for _ in range(STEPS):
        g = backend.asarray(rng.standard_normal((N, D)))
        p_s, s_s = sparse_step(p_s, g, s_s, maximize=maximize, **kw)
        p_d, s_d = dense_step(p_d, g, s_d, maximize=maximize, **kw)
    assert type(s_s) is type(s_d)
    assert np.array_equal(backend.to_numpy(p_s), backend.to_numpy(p_d))
    for a, b in zip(_np_state(backend, s_s), _np_state(backend, s_d), strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_dense_gradient_errors_name_the_sparse_step():
    p = np.zeros((N, D))
    with pytest.raises(ValueError, match=r"lazy_adam_step: grad has shape \(7, 2\)"):
        lazy_adam_step(p, np.zeros((N, 2)), lazy_adam_init(p))
    with pytest.raises(TypeError, match="sparse_adagrad_step: state is a AdamState.*"
                                        "sparse_adagrad_init"):
        sparse_adagrad_step(p, np.zeros((N, D)), adam_init(p))


def test_lazy_adam_default_is_torch_sparseadam_eps_hat():
    spec = REGISTRY["lazy_adam"]
    assert spec.defaults()["eps_placement"] == "hat"
    assert spec.settings("torch")["eps_placement"] == "hat"


@pytest.mark.parametrize("eps_placement", ["outside", "inside"])
def test_sparse_adagrad_equals_dense_adagrad(backend, eps_placement):
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal((N, D))
    p_s = p_d = backend.asarray(p0)
    acc = 0.1 if eps_placement == "outside" else 0.0  # 'inside' from 0: the s = 0 branch too
    s_s = sparse_adagrad_init(p_s, initial_accumulator_value=acc)
    s_d = adagrad_init(p_d, initial_accumulator_value=acc)
    kw = dict(lr=0.1, lr_decay=0.01, eps_placement=eps_placement)
    for idx in _index_sets(rng, unique=True):
        vals = rng.standard_normal((idx.size, D))
        p_s, s_s = sparse_adagrad_step(p_s, _rs(backend, idx, vals), s_s, **kw)
        p_d, s_d = adagrad_step(p_d, backend.asarray(_dense(idx, vals)), s_d, **kw)
    assert np.array_equal(backend.to_numpy(p_s), backend.to_numpy(p_d))
    assert np.array_equal(backend.to_numpy(s_s.sum), backend.to_numpy(s_d.sum))
    assert int(backend.to_numpy(s_s.count)) == STEPS


def test_dense_equivalent_equals_dense_adam_on_zero_filled_grad(backend):
    rng = np.random.default_rng(3)
    p_s = p_d = backend.asarray(rng.standard_normal((N, D)))
    s_s, s_d = lazy_adam_init(p_s), adam_init(p_d)
    for idx in _index_sets(rng, unique=True):
        vals = rng.standard_normal((idx.size, D))
        p_s, s_s = lazy_adam_step(p_s, _rs(backend, idx, vals), s_s, lr=1e-2,
                                  absent_rows="dense_equivalent", eps_placement="outside")
        p_d, s_d = adam_step(p_d, backend.asarray(_dense(idx, vals)), s_d, lr=1e-2)
    assert np.array_equal(backend.to_numpy(p_s), backend.to_numpy(p_d))
    assert np.array_equal(backend.to_numpy(s_s.mu), backend.to_numpy(s_d.mu))
    assert np.array_equal(backend.to_numpy(s_s.nu), backend.to_numpy(s_d.nu))


def test_lazy_differs_from_dense_on_absent_rows():
    """Theory Sec. 11 property 3: dense Adam keeps moving absent rows, lazy Adam does not."""
    p = np.zeros((2, 1))
    s = lazy_adam_init(p)
    p, s = lazy_adam_step(p, RowSparse(np.array([0, 1]), np.ones((2, 1))), s, lr=0.1)
    p_l, _ = lazy_adam_step(p, RowSparse(np.array([0]), np.ones((1, 1))), s, lr=0.1)
    p_d, _ = lazy_adam_step(p, RowSparse(np.array([0]), np.ones((1, 1))), s, lr=0.1,
                            absent_rows="dense_equivalent")
    assert p_l[1, 0] == p[1, 0]
    assert p_d[1, 0] < p[1, 0]  # m = b1 * m > 0 keeps pushing the row down


# --------------------------------------------------------------- absent rows and duplicates

_SPARSE_STEPS = {
    "lazy_adam_hat": (lazy_adam_init, lazy_adam_step, dict(lr=1e-2)),
    "lazy_adam_outside": (lazy_adam_init, lazy_adam_step, dict(lr=1e-2, eps_placement="outside")),
    "sparse_adagrad": (sparse_adagrad_init, sparse_adagrad_step, dict(lr=0.1)),
    "rowwise_adagrad": (rowwise_adagrad_init, rowwise_adagrad_step,
                        dict(lr=0.1, weight_decay=0.01)),
}


@pytest.mark.parametrize("which", list(_SPARSE_STEPS))
def test_absent_rows_keep_param_and_state_bit_identical(backend, which):
    init, step, kw = _SPARSE_STEPS[which]
    rng = np.random.default_rng(4)
    p = backend.asarray(rng.standard_normal((N, D)))
    s = init(p)
    p, s = step(p, backend.asarray(rng.standard_normal((N, D))), s, **kw)  # all rows nonzero
    idx = np.array([5, 1, 5])
    p2, s2 = step(p, _rs(backend, idx, rng.standard_normal((3, D))), s, **kw)
    absent = np.setdiff1d(np.arange(N), idx)
    before, after = backend.to_numpy(p), backend.to_numpy(p2)
    assert before[absent].tobytes() == after[absent].tobytes()
    assert not np.array_equal(before[[1, 5]], after[[1, 5]])
    for name, a, b in zip(s._fields, _np_state(backend, s), _np_state(backend, s2), strict=True):
        if name == "count":
            assert int(b) == int(a) + 1
        elif a is not None:
            assert a[absent].tobytes() == b[absent].tobytes(), name


@pytest.mark.parametrize("which", list(_SPARSE_STEPS))
def test_duplicate_indices_behave_as_summed(backend, which):
    init, step, kw = _SPARSE_STEPS[which]
    rng = np.random.default_rng(5)
    p = backend.asarray(rng.standard_normal((N, D)))
    s = init(p)
    a, b, c, e = (rng.standard_normal((1, D)) for _ in range(4))
    dup = _rs(backend, [3, 0, 3, 6, 0], np.concatenate([a, c, b, e, -c]))
    summed = _rs(backend, [0, 3, 6], np.concatenate([c + -c, a + b, e]))
    p1, s1 = step(p, dup, s, **kw)
    p2, s2 = step(p, summed, s, **kw)
    assert np.array_equal(backend.to_numpy(p1), backend.to_numpy(p2))
    for x, y in zip(_np_state(backend, s1), _np_state(backend, s2), strict=True):
        assert (x is None and y is None) or np.array_equal(x, y)


def test_empty_gradient_counts_a_step_and_moves_nothing(backend):
    p = backend.asarray(np.arange(6.0).reshape(3, 2))
    s = lazy_adam_init(p)
    empty = RowSparse(backend.asarray(np.zeros(0, dtype=np.int64)),
                      backend.asarray(np.zeros((0, 2))))
    p2, s2 = lazy_adam_step(p, empty, s)
    assert int(backend.to_numpy(s2.count)) == 1
    assert np.array_equal(backend.to_numpy(p2), backend.to_numpy(p))


# ------------------------------------------------------------------------ the count is global


def test_first_touch_step_size_uses_global_count():
    """Theory Sec. 11 property 4: a row first touched at global step t moves by
    lr (1-b1)/(1-b1^t) sqrt(1-b2^t)/sqrt(1-b2) (eps negligible)."""
    lr, b1, b2, t = 1e-3, 0.9, 0.999, 50
    p = np.zeros((2, 1))
    s = lazy_adam_init(p)
    for _ in range(t - 1):
        p, s = lazy_adam_step(p, RowSparse(np.array([0]), np.ones((1, 1))), s, lr=lr, eps=0.0)
    p2, _ = lazy_adam_step(p, RowSparse(np.array([1]), np.ones((1, 1))), s, lr=lr, eps=0.0)
    want = lr * (1 - b1) / (1 - b1**t) * np.sqrt(1 - b2**t) / np.sqrt(1 - b2)
    # ~11 roundings on each side, and 1 - b2^t amplifies a 1-ulp difference in b2^t by
    # b2^t / (1 - b2^t) ~ 20 (halved by the square root): 32 ulp bounds all of it.
    assert abs(-p2[1, 0] - want) <= 32 * np.finfo(np.float64).eps * want


# ------------------------------------------------------------------------------- row-wise


def test_rowwise_adagrad_math():
    rng = np.random.default_rng(6)
    p0 = rng.standard_normal((4, 5))
    p, s = p0, rowwise_adagrad_init(p0)
    acc = np.zeros(4)
    for _ in range(3):
        g = rng.standard_normal((4, 5))
        acc = acc + np.mean(g * g, axis=1)
        want = p - 0.1 * g / (np.sqrt(acc) + 1e-8)[:, None]
        p, s = rowwise_adagrad_step(p, g, s, lr=0.1)
        np.testing.assert_allclose(s.sum, acc, rtol=4e-16, atol=0)
        np.testing.assert_allclose(p, want, rtol=0, atol=4e-16 * np.abs(want).max())


def test_rowwise_adagrad_one_column_and_equal_magnitudes_equal_adagrad():
    rng = np.random.default_rng(7)
    for shape, make_g in (((5,), lambda: rng.standard_normal(5)),
                          ((4, 3), lambda: rng.standard_normal((4, 1))
                           * rng.choice([-1.0, 1.0], size=(4, 3)))):
        p0 = rng.standard_normal(shape)
        pr, sr = p0, rowwise_adagrad_init(p0)
        pa, sa = p0, adagrad_init(p0)
        for _ in range(3):
            g = make_g()
            pr, sr = rowwise_adagrad_step(pr, g, sr, lr=0.1, eps=1e-10)
            pa, sa = adagrad_step(pa, g, sa, lr=0.1, eps=1e-10)
        # per step two roundings differ, lr*g/(sqrt(s)+eps) vs (lr/(sqrt(s)+eps))*g and
        # mean(g^2) vs g^2, each <= 1 ulp at the scale of p: 3 steps, bound 8 ulp of max|p|
        scale = max(np.abs(p0).max(), np.abs(pa).max())
        np.testing.assert_allclose(pr, pa, rtol=0, atol=8 * np.finfo(np.float64).eps * scale)


def test_rowwise_state_has_one_accumulator_per_row():
    p = np.zeros((6, 4), dtype=np.float32)
    s = rowwise_adagrad_init(p, initial_accumulator_value=0.5)
    assert s.sum.shape == (6,) and s.sum.dtype == np.float32 and np.all(s.sum == 0.5)
    with pytest.raises(ValueError, match=r"state\.sum has shape \(4,\)"):
        rowwise_adagrad_step(p, p, s._replace(sum=np.zeros(4, dtype=np.float32)))


# ----------------------------------------------------------------------- purity and donation


def test_inputs_untouched_by_default_and_donation_writes_in_place():
    rng = np.random.default_rng(8)
    p = rng.standard_normal((N, D))
    s = lazy_adam_init(p)
    g = RowSparse(np.array([2, 4]), rng.standard_normal((2, D)))
    p_copy, mu_copy = p.copy(), s.mu.copy()
    p1, s1 = lazy_adam_step(p, g, s)
    assert np.array_equal(p, p_copy) and np.array_equal(s.mu, mu_copy)
    p2, s2 = lazy_adam_step(p, g, s, donate=True)
    assert p2 is p and s2.mu is s.mu  # written in place
    assert np.array_equal(p1, p2) and np.array_equal(s1.nu, s2.nu)


# ------------------------------------------------------------------------------- validation


def test_errors_name_the_argument():
    p = np.zeros((4, 2))
    s = lazy_adam_init(p)
    with pytest.raises(IndexError, match=r"grad\.indices contains 4, outside .*\[0, 4\)"):
        lazy_adam_step(p, RowSparse(np.array([0, 4]), np.zeros((2, 2))), s)
    with pytest.raises(IndexError, match=r"contains -1"):
        lazy_adam_step(p, RowSparse(np.array([-1]), np.zeros((1, 2))), s)
    with pytest.raises(ValueError, match=r"grad\.values has shape \(2, 3\).*must be \(2, 2\)"):
        lazy_adam_step(p, RowSparse(np.array([0, 1]), np.zeros((2, 3))), s)
    with pytest.raises(TypeError, match=r"grad\.indices must have an integer dtype"):
        lazy_adam_step(p, RowSparse(np.array([0.0]), np.zeros((1, 2))), s)
    with pytest.raises(TypeError, match=r"grad\.values has dtype float32"):
        lazy_adam_step(p, RowSparse(np.array([0]), np.zeros((1, 2), np.float32)), s)
    with pytest.raises(ValueError, match=r"eps_placement='inside' is not accepted"):
        lazy_adam_step(p, p, s, eps_placement="inside")
    with pytest.raises(ValueError, match=r"beta2=1.0 is outside"):
        lazy_adam_step(p, p, s, beta2=1.0)
    with pytest.raises(TypeError, match=r"not a AdamState"):
        lazy_adam_step(p, p, sparse_adagrad_init(p))
    with pytest.raises(ValueError, match="amsgrad"):
        lazy_adam_step(p, p, adam_init(p, amsgrad=True))
    with pytest.raises(TypeError, match="donate"):
        sparse_adagrad_step(p, p, sparse_adagrad_init(p), donate=1)


def test_out_of_range_checked_on_eager_backends(backend):
    if backend in (Backend.DASK,):
        pytest.skip("Dask checks the range lazily, when computed: test_sparse_dask_range.py")
    p = backend.asarray(np.zeros((4, 2)))
    with pytest.raises(IndexError, match=r"grad\.indices contains 7"):
        sparse_adagrad_step(p, _rs(backend, [1, 7], np.zeros((2, 2))), sparse_adagrad_init(p))


# --------------------------------------------------------------------------- jax.jit


def test_jax_jit_matches_eager():
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    Backend.JAX.setup()
    rng = np.random.default_rng(9)
    p0 = rng.standard_normal((N, D))
    idx = np.array([6, 0, 6, 2])
    vals = rng.standard_normal((4, D))
    for init, step, kw in _SPARSE_STEPS.values():
        f = jax.jit(lambda p, g, s, step=step, kw=kw: step(p, g, s, **kw))
        pj, sj = jnp.asarray(p0), init(jnp.asarray(p0))
        pn, sn = p0, init(p0)
        for _ in range(3):
            pj, sj = f(pj, RowSparse(jnp.asarray(idx), jnp.asarray(vals)), sj)
            pn, sn = step(pn, RowSparse(idx, vals), sn, **kw)
        moved = np.abs(pn - p0).max()
        assert np.abs(np.asarray(pj) - pn).max() <= 16 * np.finfo(np.float64).eps * max(moved, 1)
        untouched = [1, 3, 4, 5]
        assert np.asarray(pj)[untouched].tobytes() == p0[untouched].tobytes()


# ------------------------------------------------------------------------------ dask layouts


@pytest.mark.parametrize("row_chunks", [(6,), (3, 3), (1, 2, 3)])
@pytest.mark.parametrize("idx", [[4], [0, 5], [5, 0, 2, 5]])
def test_dask_chunk_layouts(row_chunks, idx):
    """Regression for two dask 2026.8 indexing bugs the row gathers work around (_rowops)."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(10)
    p0 = rng.standard_normal((6, 3))
    vals = rng.standard_normal((len(idx), 3))
    p = da.from_array(p0, chunks=(row_chunks, (2, 1)))
    rs = RowSparse(da.from_array(np.asarray(idx), chunks=1), da.from_array(vals, chunks=1))
    got, s = lazy_adam_step(p, rs, lazy_adam_init(p))
    want, _ = lazy_adam_step(p0, RowSparse(np.asarray(idx), vals), lazy_adam_init(p0))
    assert got.shape == (6, 3)
    assert np.array_equal(got.compute(), want)
