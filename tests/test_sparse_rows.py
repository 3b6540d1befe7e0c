"""Row-sparse gradients: conversions, coalescing, and property tests over random index sets.

The hypothesis tests use values that are multiples of 1/4 in [-2, 2], so every sum of
duplicates is exact in any order and every comparison below is exact (``==``).
"""

from __future__ import annotations

import array_api_compat as aac
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive_ref import adagrad_init, adagrad_step, adam_step
from adaptive_ref.optimizers.adam import AdamState
from adaptive_ref.sparse import (
    RowSparse,
    as_row_sparse,
    coalesce,
    from_pydata,
    from_scipy,
    from_torch,
    lazy_adam_init,
    lazy_adam_step,
    rowwise_adagrad_init,
    rowwise_adagrad_step,
    sparse_adagrad_init,
    sparse_adagrad_step,
    to_dense,
)
from adaptive_ref.testing.backends import Backend

# ------------------------------------------------------------------------------ conversions


def test_from_scipy_sums_duplicates_and_groups_rows():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.coo_array((np.array([1.0, 2.0, 4.0, 8.0]), (np.array([3, 0, 3, 3]),
                                                       np.array([1, 2, 1, 0]))), shape=(5, 3))
    rs = from_scipy(m)
    assert rs.indices.tolist() == [0, 3]
    assert np.array_equal(to_dense(rs, np.zeros((5, 3))), m.toarray())
    rs_csr = from_scipy(m.tocsr())
    assert np.array_equal(rs_csr.values, rs.values)
    one_d = from_scipy(sp.coo_array((np.array([1.0, 2.0]), (np.array([4, 4]),)), shape=(6,)))
    assert one_d.indices.tolist() == [4] and one_d.values.tolist() == [3.0]


def test_from_scipy_like_moves_to_the_backend(backend):
    sp = pytest.importorskip("scipy.sparse")
    like = backend.asarray(np.zeros((4, 2)))
    rs = from_scipy(sp.csr_array(np.array([[0, 1.0], [0, 0], [2.0, 3.0], [0, 0]])), like=like)
    assert aac.array_namespace(rs.values) is aac.array_namespace(like)
    assert backend.to_numpy(rs.indices).tolist() == [0, 2]
    p, s = sparse_adagrad_step(like, rs, sparse_adagrad_init(like))
    assert np.all(backend.to_numpy(p)[[1, 3]] == 0)


def test_conversion_errors():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.csr_array(np.eye(3))
    with pytest.raises(ValueError, match=r"shape \(3, 3\) but the parameter .* \(4, 3\)"):
        from_scipy(m, like=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="dtype float64 but the parameter"):
        from_scipy(m, like=np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="expected a scipy.sparse"):
        from_scipy(np.eye(3))
    with pytest.raises(TypeError, match="expected a pydata sparse"):
        from_pydata(np.eye(3))


def test_from_pydata():
    sparse = pytest.importorskip("sparse")
    coords = np.array([[2, 0, 2, 2], [1, 1, 0, 1], [0, 1, 1, 0]])
    s = sparse.COO(coords, np.array([1.0, 2.0, 4.0, 8.0]), shape=(4, 2, 2))
    rs = from_pydata(s)
    assert rs.indices.tolist() == [0, 2]
    assert np.array_equal(to_dense(rs, np.zeros((4, 2, 2))), s.todense())
    assert as_row_sparse(s).indices.tolist() == [0, 2]


def test_from_torch_embedding_gradient_and_dispatch():
    torch = pytest.importorskip("torch")
    emb = torch.nn.Embedding(6, 3, sparse=True, dtype=torch.float64)
    emb(torch.tensor([4, 1, 4])).sum().backward()
    g = emb.weight.grad
    rs = from_torch(g)
    assert rs.indices.tolist() == [1, 4]
    assert rs.values.tolist() == [[1.0] * 3, [2.0] * 3]
    assert isinstance(as_row_sparse(g), RowSparse)
    with pytest.raises(TypeError, match="like must be a torch tensor"):
        from_torch(g, like=np.zeros((6, 3)))
    with pytest.raises(TypeError, match="expected a torch sparse COO"):
        from_torch(torch.zeros(6, 3))


def test_coalesce(backend):
    if backend is Backend.DASK:
        pytest.skip("coalesce has a data-dependent size; Dask would need to compute it")
    rs = RowSparse(backend.asarray(np.array([5, 1, 5, 0, 1])),
                   backend.asarray(np.arange(10.0).reshape(5, 2)))
    c = coalesce(rs)
    assert backend.to_numpy(c.indices).tolist() == [0, 1, 5]
    assert backend.to_numpy(c.values).tolist() == [[6, 7], [10, 12], [4, 6]]


def test_a_dense_gradient_means_every_row(backend):
    rng = np.random.default_rng(0)
    p = backend.asarray(rng.standard_normal((4, 2)))
    g = rng.standard_normal((4, 2))
    s = lazy_adam_init(p)
    a, _ = lazy_adam_step(p, backend.asarray(g), s)
    b, _ = lazy_adam_step(p, RowSparse(backend.asarray(np.arange(4)), backend.asarray(g)), s)
    assert np.array_equal(backend.to_numpy(a), backend.to_numpy(b))


# ------------------------------------------------------------------------- property tests

_HYPO_BACKENDS = [Backend.NUMPY, Backend.ARRAY_API_STRICT, Backend.TORCH]


@st.composite
def _problems(draw):
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 3))
    quarter = st.integers(-8, 8).map(lambda i: i / 4)
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        idx = draw(st.lists(st.integers(0, n - 1), max_size=2 * n))
        vals = draw(st.lists(st.lists(quarter, min_size=d, max_size=d), min_size=len(idx),
                             max_size=len(idx)))
        steps.append((np.asarray(idx, dtype=np.int64),
                      np.asarray(vals, dtype=np.float64).reshape(len(idx), d)))
    p0 = np.asarray(draw(st.lists(quarter, min_size=n * d, max_size=n * d))).reshape(n, d)
    return p0, steps


def _dense(n, idx, vals):
    out = np.zeros((n, vals.shape[1]))
    np.add.at(out, idx, vals)
    return out


def _lazy_adam_oracle(b, p, idx, vals, s, **kw):
    """Dense adam_step (on backend ``b``) on exactly the present rows; every other row kept.

    NumPy arrays in and out; the arithmetic runs on ``b`` because backends may round the same
    expression differently (torch and NumPy differ by an ulp on some of these).
    """
    rows = np.unique(idx)
    g = _dense(p.shape[0], idx, vals)[rows]
    sub = AdamState(b.asarray(np.asarray(s.count)), b.asarray(s.mu[rows]), b.asarray(s.nu[rows]),
                    None)
    pr, sr = adam_step(b.asarray(p[rows]), b.asarray(g), sub, **kw)
    p, mu, nu = p.copy(), s.mu.copy(), s.nu.copy()
    p[rows], mu[rows], nu[rows] = b.to_numpy(pr), b.to_numpy(sr.mu), b.to_numpy(sr.nu)
    return p, AdamState(b.to_numpy(sr.count), mu, nu, None)


@pytest.mark.parametrize("backend_", _HYPO_BACKENDS, ids=lambda b: b.value)
@pytest.mark.parametrize("eps_placement", ["hat", "outside"])
@given(problem=_problems())
def test_lazy_adam_equals_dense_adam_on_present_rows(backend_, eps_placement, problem):
    if backend_.missing_reason():
        pytest.skip(backend_.missing_reason())
    p0, steps = problem
    p, s = backend_.asarray(p0), lazy_adam_init(backend_.asarray(p0))
    pr, sr = p0, lazy_adam_init(p0)
    for idx, vals in steps:
        rs = RowSparse(backend_.asarray(idx), backend_.asarray(vals))
        p, s = lazy_adam_step(p, rs, s, lr=0.1, eps_placement=eps_placement)
        pr, sr = _lazy_adam_oracle(backend_, pr, idx, vals, sr, lr=0.1, eps_placement=eps_placement)
    assert np.array_equal(backend_.to_numpy(p), pr)
    assert np.array_equal(backend_.to_numpy(s.mu), sr.mu)
    assert np.array_equal(backend_.to_numpy(s.nu), sr.nu)
    assert int(backend_.to_numpy(s.count)) == len(steps)


@pytest.mark.parametrize("backend_", _HYPO_BACKENDS, ids=lambda b: b.value)
@given(problem=_problems())
def test_sparse_adagrad_equals_dense_adagrad_on_random_rows(backend_, problem):
    if backend_.missing_reason():
        pytest.skip(backend_.missing_reason())
    p0, steps = problem
    p, s = backend_.asarray(p0), sparse_adagrad_init(backend_.asarray(p0))
    pr, sr = backend_.asarray(p0), adagrad_init(backend_.asarray(p0))
    for idx, vals in steps:
        rs = RowSparse(backend_.asarray(idx), backend_.asarray(vals))
        p, s = sparse_adagrad_step(p, rs, s, lr=0.1)
        pr, sr = adagrad_step(pr, backend_.asarray(_dense(p0.shape[0], idx, vals)), sr, lr=0.1)
    assert np.array_equal(backend_.to_numpy(p), backend_.to_numpy(pr))
    assert np.array_equal(backend_.to_numpy(s.sum), backend_.to_numpy(sr.sum))


@given(problem=_problems())
def test_rowwise_adagrad_on_random_rows(problem):
    p0, steps = problem
    p, s = p0, rowwise_adagrad_init(p0)
    pr, acc = p0.copy(), np.zeros(p0.shape[0])
    for idx, vals in steps:
        before = np.asarray(s.sum).copy()
        p, s = rowwise_adagrad_step(p, RowSparse(idx, vals), s, lr=0.1)
        # accumulators never shrink, so each row's step lr/(sqrt(s)+eps) never grows (Sec. 11)
        assert np.all(s.sum >= before)
        rows = np.unique(idx)
        g = _dense(p0.shape[0], idx, vals)[rows]
        acc[rows] = acc[rows] + np.mean(g * g, axis=1)
        pr[rows] = pr[rows] - (0.1 / (np.sqrt(acc[rows]) + 1e-8))[:, None] * g
    assert np.array_equal(p, pr)
    assert np.array_equal(s.sum, acc)
