"""Agreement with torch.optim.SparseAdam and torch.optim.Adagrad on sparse COO gradients.

Setup: a (20, 4) float64 table, 100 steps, each touching a random set of 1-8 rows drawn with
replacement (so duplicate indices occur and torch's coalesce sums them), gradient scale 1 and
1e-6 (where eps matters). torch gets the hybrid sparse COO tensor an ``nn.Embedding(sparse=True)``
produces (``sparse_dim=1``); the reference gets the same tensor (converted by ``from_torch``) and,
separately, the same indices and values as a :class:`RowSparse` of uncoalesced NumPy arrays.

Tolerance: relative difference ``max|a-b| / max|b|`` <= 1e-14 for the parameter's movement and
the moments after 100 steps. The two implementations order the arithmetic differently (torch:
``m + (1-b1)(g - m)``, a separate ``numer``, a Python-float step size; the reference:
``b1 m + (1-b1) g``), a few ULP per step. Measured (torch 2.13.0): SparseAdam param 1.8e-15
(scale 1) and 2.0e-15 (scale 1e-6), m <= 1.9e-16, v <= 4.3e-16; Adagrad param 7.4e-16 and 0,
accumulator 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_ref.sparse import (
    RowSparse,
    from_torch,
    lazy_adam_init,
    lazy_adam_step,
    sparse_adagrad_init,
    sparse_adagrad_step,
)

torch = pytest.importorskip("torch")

ROWS, COLS, STEPS = 20, 4, 100
RTOL = 1e-14


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _batches(seed, scale):
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        k = int(rng.integers(1, 9))
        idx = rng.integers(0, ROWS, size=k)
        yield idx, scale * rng.standard_normal((k, COLS))


def _coo(idx, vals):
    return torch.sparse_coo_tensor(torch.as_tensor(idx)[None, :], torch.as_tensor(vals),
                                   (ROWS, COLS), check_invariants=True)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_sparse_adam_matches_torch_over_100_steps(scale):
    p0 = np.random.default_rng(0).standard_normal((ROWS, COLS))
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.SparseAdam([tp], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    p_np, s_np = p0, lazy_adam_init(p0)
    p_t, s_t = torch.tensor(p0), lazy_adam_init(torch.tensor(p0))
    kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)  # the torch profile's eps-hat
    for idx, vals in _batches(1, scale):
        g = _coo(idx, vals)
        tp.grad = g
        with torch.sparse.check_sparse_tensor_invariants():
            opt.step()
        p_np, s_np = lazy_adam_step(p_np, RowSparse(idx, vals), s_np, **kw)
        p_t, s_t = lazy_adam_step(p_t, g, s_t, **kw)  # torch sparse COO accepted directly
    st = opt.state[tp]
    assert st["step"] == STEPS and int(s_np.count) == STEPS
    want_p, want_m, want_v = tp.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy()
    for p, s in ((p_np, s_np), (p_t.numpy(), s_t)):
        assert _rel(p - p0, want_p - p0) <= RTOL
        assert _rel(np.asarray(s.mu), want_m) <= RTOL
        assert _rel(np.asarray(s.nu), want_v) <= RTOL
    untouched = np.setdiff1d(np.arange(ROWS), np.concatenate([i for i, _ in _batches(1, 1)]))
    assert np.array_equal(p_np[untouched], p0[untouched])


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_sparse_adagrad_matches_torch_over_100_steps(scale):
    p0 = np.random.default_rng(2).standard_normal((ROWS, COLS))
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.Adagrad([tp], lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                              eps=1e-10)
    p, s = p0, sparse_adagrad_init(p0, initial_accumulator_value=0.1)
    for idx, vals in _batches(3, scale):
        tp.grad = _coo(idx, vals)
        with torch.sparse.check_sparse_tensor_invariants():
            opt.step()
        p, s = sparse_adagrad_step(p, RowSparse(idx, vals), s, lr=0.1, lr_decay=0.01, eps=1e-10)
    assert _rel(p - p0, tp.detach().numpy() - p0) <= RTOL
    assert _rel(s.sum, opt.state[tp]["sum"].numpy()) <= RTOL


def test_lazy_adam_differs_from_torch_adam_on_zero_rows():
    """conventions.md Sec. 12: SparseAdam vs dense Adam on zero-filled gradients is O(1) apart,
    and the reference's dense_equivalent option reproduces the dense side."""
    p0 = np.random.default_rng(4).standard_normal((ROWS, COLS))
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.Adam([tp], lr=1e-2, eps=1e-8)
    p_l, s_l = p0, lazy_adam_init(p0)
    p_d, s_d = p0, lazy_adam_init(p0)
    for idx, vals in _batches(5, 1.0):
        tp.grad = _coo(idx, vals).to_dense()
        with torch.sparse.check_sparse_tensor_invariants():
            opt.step()
        p_l, s_l = lazy_adam_step(p_l, RowSparse(idx, vals), s_l, lr=1e-2)
        p_d, s_d = lazy_adam_step(p_d, RowSparse(idx, vals), s_d, lr=1e-2,
                                  eps_placement="outside", absent_rows="dense_equivalent")
    want = tp.detach().numpy()
    assert _rel(p_d - p0, want - p0) <= RTOL
    assert _rel(p_l - p0, want - p0) > 0.1


def test_from_torch_element_sparse_groups_rows():
    i = torch.tensor([[0, 0, 3, 3], [1, 1, 0, 2]])
    v = torch.tensor([1.0, 2.0, 5.0, 7.0], dtype=torch.float64)
    rs = from_torch(torch.sparse_coo_tensor(i, v, (4, 3), check_invariants=True))
    assert rs.indices.tolist() == [0, 3]
    assert rs.values.tolist() == [[0.0, 3.0, 0.0], [5.0, 0.0, 7.0]]
