"""SOAP: basis-free unit checks, the invariances that make its trajectory well-posed, the report
of a degenerate spectrum, and the reference against upstream's loop transcribed in NumPy.

nikhilvyas/SOAP is not installed (no package of it is a dependency), so the ``upstream`` profile
is checked against :func:`upstream_soap`, a NumPy float64 transcription of ``SOAP.step``,
``init_preconditioner``, ``update_preconditioner``, ``project``, ``project_back``,
``merge_dims``, ``get_orthogonal_matrix`` and ``get_orthogonal_matrix_QR`` in ``soap.py``
(commit a1e553530fde97d0e6b307d7c82ac6d38b072340), written from reading that file: the first call
that only accumulates, ``step`` counting Adam steps only, the first moment rotated back and into
the (new) basis in every ``update_preconditioner``, the re-sort of ``exp_avg_sq`` by
``diag(o^T GG o)`` before ``qr(GG o)``, the ``GG.float()`` / ``Q.float()`` cast (its ``eigh_dtype``
argument), the decay ``p += -lr*wd*p`` after the update, ``lerp_`` as
``start + w*(end - start)`` (torch's form for w < 0.5).

Well-posedness. Every problem here has separated spectra: first gradients of full rank, with at
most one zero eigenvalue per statistic (a matrix with one row more than columns), and the
reference is run with ``on_degenerate="raise"`` so that a degenerate spectrum could not pass
unnoticed. Column signs and order are free (the property tests show the trajectory ignores
them); upstream keeps LAPACK's QR signs and ``flip``'s order, the reference fixes both.

Tolerances. Against the transcription: both sides call NumPy's LAPACK (``eigh``, ``qr``) on
statistics that agree to a few ULP (the projections associate their sums differently: upstream
cycles ``tensordot`` over axis 0, the reference applies each mode in place). With eigenvalues
separated by a relative gap ``gap``, eigenvectors move by about ``ULPs / gap``; the spectra here
are separated (``on_degenerate="raise"`` would stop a run whose were not), and the measured
differences, relative to the distance travelled, are 3.5e-15 to 7.0e-14 with float64 eigh and
4.7e-15 to 8.4e-14 with float32 eigh on both sides (the float32 inputs of ``eigh`` are the same
float32 numbers unless a statistic sits on a float32 rounding boundary). Bound: ``RTOL = 1e-11``.
Against the real upstream (torch, run from a scratch copy outside the repository, not part of
this suite): 9e-15 to 4.4e-14 with its casts removed, 3e-7 to 3e-5 with them (torch's and
NumPy's float32 LAPACKs differ), see docs/conformance.md.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_ref import registry, soap_init, soap_step
from adaptive_ref.optimizers.soap import (
    SOAP,
    SoapDegenerateSpectrumError,
    SoapDegenerateSpectrumWarning,
    merge_shape,
    soap_eigenbasis,
    soap_layout,
    soap_refresh,
)

RTOL = 1e-11
STRICT = {"on_degenerate": "raise"}


# ---- upstream's loop, transcribed ----------------------------------------------------------
def _up_merge(shape, max_precond_dim):
    new_shape, curr = [], 1
    for sh in shape:
        temp = curr * sh
        if temp > max_precond_dim:
            if curr > 1:
                new_shape.append(curr)
                curr = sh
            else:
                new_shape.append(sh)
                curr = 1
        else:
            curr = temp
    if curr > 1 or len(new_shape) == 0:
        new_shape.append(curr)
    return new_shape


def upstream_soap(p0, grads, *, lr=3e-3, betas=(0.95, 0.95), shampoo_beta=-1.0, eps=1e-8,
                  weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000,
                  merge_dims=False, precondition_1d=False, normalize_grads=False,
                  correct_bias=True, eigh_dtype=np.float32):
    """nikhilvyas/SOAP ``SOAP.step`` on one parameter, NumPy float64 (``eigh_dtype``: the dtype
    of ``GG.float()``; pass np.float64 for a run without the cast). Returns the parameter."""
    p = np.array(p0, dtype=np.float64)
    beta1, beta2 = betas
    sb = shampoo_beta if shampoo_beta >= 0 else beta2
    shape = p.shape
    step, exp_avg, exp_avg_sq = 0, np.zeros_like(p), np.zeros_like(p)
    GG, Q = None, None

    def merged(x):
        return x.reshape(_up_merge(x.shape, max_precond_dim)) if merge_dims else x

    def project(x):
        x = merged(x)
        for mat in Q:
            x = (np.tensordot(x, mat, axes=([0], [0])) if mat is not None
                 else np.transpose(x, list(range(1, x.ndim)) + [0]))
        return x.reshape(shape)

    def project_back(x):
        x = merged(x)
        for mat in Q:
            x = (np.tensordot(x, mat, axes=([0], [1])) if mat is not None
                 else np.transpose(x, list(range(1, x.ndim)) + [0]))
        return x.reshape(shape)

    def eigenbases():
        out = []
        for m in GG:
            if m is None:
                out.append(None)
                continue
            m32 = m.astype(eigh_dtype)
            _, q = np.linalg.eigh(m32 + 1e-30 * np.eye(m.shape[0], dtype=eigh_dtype))
            out.append(np.flip(q, 1).astype(np.float64))
        return out

    def qr_bases():
        nonlocal exp_avg_sq
        v = merged(exp_avg_sq)
        out = []
        for ind, (m, o) in enumerate(zip(GG, Q, strict=True)):
            if m is None:
                out.append(None)
                continue
            m32, o32 = m.astype(eigh_dtype), o.astype(eigh_dtype)
            est = np.diag(o32.T @ m32 @ o32)
            idx = np.argsort(-est, kind="stable")
            v = np.take(v, idx, axis=ind)
            q, _ = np.linalg.qr(m32 @ o32[:, idx])
            out.append(q.astype(np.float64))
        exp_avg_sq = v.reshape(shape)
        return out

    def update_preconditioner(grad):
        nonlocal exp_avg, Q
        if Q is not None:
            exp_avg = project_back(exp_avg)
        g = merged(grad) if grad.ndim > 1 else grad
        for idx, m in enumerate(GG):
            if m is None:
                continue
            if g.ndim == 1:
                outer = np.outer(g, g)
            else:
                others = [a for a in range(g.ndim) if a != idx]
                outer = np.tensordot(g, g, axes=(others, others))
            GG[idx] = m + (1 - sb) * (outer - m)
        if Q is None:
            Q = eigenbases()
        if step > 0 and step % precondition_frequency == 0:
            Q = qr_bases()
        if step > 0:
            exp_avg = project(exp_avg)

    for grad in grads:
        grad = np.asarray(grad, dtype=np.float64)
        if GG is None:  # init_preconditioner, then the first update: no step
            if grad.ndim == 1:
                n = grad.shape[0]
                GG = [np.zeros((n, n)) if precondition_1d and n <= max_precond_dim else None]
            else:
                g = merged(grad)
                GG = [np.zeros((n, n)) if n <= max_precond_dim else None for n in g.shape]
            update_preconditioner(grad)
            continue
        gp = project(grad)
        step += 1
        exp_avg = exp_avg * beta1 + gp * (1.0 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + gp * gp * (1.0 - beta2)
        denom = np.sqrt(exp_avg_sq) + eps
        step_size = lr
        if correct_bias:
            step_size = step_size * (1.0 - beta2**step) ** 0.5 / (1.0 - beta1**step)
        norm_grad = project_back(exp_avg / denom)
        if normalize_grads:
            norm_grad = norm_grad / (1e-30 + np.mean(norm_grad**2) ** 0.5)
        p = p + norm_grad * -step_size
        if weight_decay > 0.0:
            p = p + p * (-lr * weight_decay)
        update_preconditioner(grad)
    return p


def _reference(p0, grads, **kw):
    init = {k: kw[k] for k in ("max_precond_dim", "merge_dims", "precondition_1d") if k in kw}
    p, s = p0, soap_init(p0, **init)
    for g in grads:
        p, s = soap_step(p, g, s, **kw)
    return p, s


def _problem(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(steps)]


def _rel(a, b, p0):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b - p0)))


# shape, settings (the reference's names; upstream's are derived), steps
UPSTREAM_CASES = [
    ((5, 4), {"precondition_frequency": 3}, 20),
    ((6, 6), {}, 25),
    ((3, 2, 5), {"merge_dims": True, "max_precond_dim": 6, "precondition_frequency": 4}, 20),
    ((4, 12, 3), {"max_precond_dim": 4, "precondition_frequency": 2}, 12),
    ((7,), {}, 12),
    ((9, 8), {"normalize_grads": True, "weight_decay": 0.1, "shampoo_beta": 0.9,
              "precondition_frequency": 5}, 21),
    ((8, 7), {"correct_bias": False, "lr": 0.01, "beta1": 0.9, "beta2": 0.99}, 15),
]


def _upstream_kwargs(kw):
    out = {k: v for k, v in kw.items() if k not in ("beta1", "beta2")}
    out["betas"] = (kw.get("beta1", 0.95), kw.get("beta2", 0.95))
    return out


@pytest.mark.parametrize("eigh_dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "kw", "steps"), UPSTREAM_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1]) or 'defaults'}" for c in UPSTREAM_CASES])
def test_reference_matches_upstream_transcription(shape, kw, steps, eigh_dtype):
    p0, grads = _problem(shape, steps, seed=len(shape) + steps)
    up = upstream_soap(p0, grads, eigh_dtype=np.dtype(eigh_dtype), **_upstream_kwargs(kw))
    settings_ = SOAP.settings("upstream" if eigh_dtype == "float32" else None, **kw, **STRICT)
    ref, state = _reference(p0, grads, **settings_)
    assert int(state.count) == steps and float(state.degenerate) == 0.0
    assert _rel(ref, up, p0) <= RTOL


def test_upstream_profile_is_the_float32_cast_and_it_shows_in_float64():
    """The profile differs from the defaults by the cast alone; on float64 parameters the cast
    moves a 40-step trajectory by far more than float64 rounding, and by about float32's."""
    assert SOAP.profiles["upstream"].settings == {"eigh_dtype": "float32"}
    p0, grads = _problem((11, 10), 40, seed=3)
    a, _ = _reference(p0, grads, **SOAP.settings(None, precondition_frequency=5, **STRICT))
    b, _ = _reference(p0, grads, **SOAP.settings("upstream", precondition_frequency=5,
                                                    **STRICT))
    assert 1e-9 < _rel(b, a, p0) < 1e-4


# ---- basis-free unit checks ------------------------------------------------------------------
def test_first_call_only_accumulates():
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    s0 = soap_init(p)
    p1, s1 = soap_step(p, g, s0, weight_decay=0.5, shampoo_beta=0.8, **STRICT)
    np.testing.assert_array_equal(p1, p)  # no update, no decay
    np.testing.assert_array_equal(s1.exp_avg, 0.0)
    np.testing.assert_array_equal(s1.exp_avg_sq, 0.0)
    assert int(s1.count) == 1
    np.testing.assert_array_equal(s1.gg[0], (1 - 0.8) * (g @ g.T))
    np.testing.assert_array_equal(s1.gg[1], (1 - 0.8) * (g.T @ g))
    for gg, q in zip(s1.gg, s1.q, strict=True):
        n = gg.shape[0]
        np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-15 * n)
        lam = np.diag(q.T @ gg @ q)
        assert np.all(np.diff(lam) <= 1e-15 * lam[0])  # columns by decreasing eigenvalue
        # Q Lambda Q^T = GG
        np.testing.assert_allclose(q @ np.diag(lam) @ q.T, gg, atol=1e-14 * np.abs(gg).max())


def test_eigenbasis_reconstructs_orders_signs_and_flags():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 6))
    a = a @ a.T
    q, lam, degenerate = soap_eigenbasis(a)
    np.testing.assert_allclose(q @ np.diag(lam) @ q.T, a, atol=1e-13 * np.abs(a).max())
    assert np.all(np.diff(lam) < 0) and not bool(degenerate)
    big = np.argmax(np.abs(q), axis=0)
    assert np.all(q[big, np.arange(6)] > 0)  # each column's largest entry positive
    _, _, degenerate = soap_eigenbasis(np.diag([3.0, 1.0, 1.0]))
    assert bool(degenerate)
    _, _, degenerate = soap_eigenbasis(np.diag([3.0, 1.0 + 1e-9, 1.0]))
    assert not bool(degenerate)  # separated (if badly): not reported by default


def _orth(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _state_at(rng, count, shape=(4, 3)):
    """A state after ``count`` calls with random bases, moments and statistics."""
    qs = tuple(_orth(rng, n) for n in shape)
    ggs = []
    for n in shape:
        b = rng.standard_normal((n, n))
        ggs.append(b @ b.T)
    s = soap_init(np.zeros(shape))
    return s._replace(count=np.asarray(count, dtype=np.int64),
                      exp_avg=rng.standard_normal(shape),
                      exp_avg_sq=rng.standard_normal(shape) ** 2, gg=tuple(ggs), q=qs)


def test_one_step_for_given_bases():
    """Call 6 (Adam step s = 5, no refresh at frequency 10): the step written with matrices."""
    rng = np.random.default_rng(3)
    s = _state_at(rng, 5)
    p, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    lr, b1, b2, eps, wd, sb = 0.01, 0.9, 0.99, 1e-6, 0.1, 0.7
    p1, s1 = soap_step(p, g, s, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd,
                       shampoo_beta=sb)
    ql, qr = s.q
    gt = ql.T @ g @ qr
    m = b1 * s.exp_avg + (1 - b1) * gt
    v = b2 * s.exp_avg_sq + (1 - b2) * gt**2
    u = ql @ (m / (np.sqrt(v) + eps)) @ qr.T
    step = lr * np.sqrt(1 - b2**5) / (1 - b1**5)
    expected = (p - step * u) * (1 - lr * wd)
    np.testing.assert_allclose(p1, expected, rtol=0, atol=1e-15 * np.abs(p).max() * 8)
    np.testing.assert_allclose(s1.exp_avg, ql.T @ (ql @ m @ qr.T) @ qr, atol=1e-14)
    np.testing.assert_allclose(s1.exp_avg_sq, v, rtol=1e-15)
    np.testing.assert_allclose(s1.gg[0], s.gg[0] + (1 - sb) * (g @ g.T - s.gg[0]), rtol=1e-14)
    np.testing.assert_allclose(s1.gg[1], s.gg[1] + (1 - sb) * (g.T @ g - s.gg[1]), rtol=1e-14)
    for a, b in zip(s1.q, s.q, strict=True):
        np.testing.assert_array_equal(a, b)  # no refresh


def test_qr_refresh_sorts_then_takes_one_power_step_with_nonnegative_r():
    rng = np.random.default_rng(4)
    gg = rng.standard_normal((5, 5))
    gg = gg @ gg.T
    q = _orth(rng, 5)
    v = rng.standard_normal((3, 5)) ** 2
    qn, vn = soap_refresh(gg, q, v, 1)
    est = np.diag(q.T @ gg @ q)
    order = np.argsort(-est, kind="stable")
    np.testing.assert_array_equal(vn, v[:, order])
    np.testing.assert_allclose(qn.T @ qn, np.eye(5), atol=1e-14)
    r = qn.T @ (gg @ q[:, order])
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-13 * np.abs(r).max())
    assert np.all(np.diag(r) >= 0)
    np.testing.assert_allclose(qn @ r, gg @ q[:, order], atol=1e-13 * np.abs(gg).max())


def test_refresh_happens_every_frequency_adam_steps():
    """Call 11 is Adam step 10: the bases are refreshed from the updated statistics, the second
    moment permuted with them and the first moment carried into the new bases."""
    rng = np.random.default_rng(5)
    s = _state_at(rng, 10)
    p, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    _, s1 = soap_step(p, g, s)
    _, s_no = soap_step(p, g, s, precondition_frequency=3)  # 10 % 3 != 0: no refresh
    v = s_no.exp_avg_sq
    for i in (0, 1):
        qi, v = soap_refresh(s1.gg[i], s.q[i], v, i)
        np.testing.assert_array_equal(s1.q[i], qi)
        np.testing.assert_array_equal(s_no.q[i], s.q[i])
    np.testing.assert_array_equal(s1.exp_avg_sq, v)
    m_orig = s.q[0] @ s_no.exp_avg @ s.q[1].T  # the first moment in the original basis
    np.testing.assert_allclose(s1.exp_avg, s1.q[0].T @ m_orig @ s1.q[1], atol=1e-13)


def test_layout_and_merging():
    assert merge_shape((2, 3, 4), 6) == (6, 4)
    assert merge_shape((3, 2, 5), 6) == (6, 5)
    assert merge_shape((2, 3, 4), 100) == (24,)
    assert merge_shape((1, 5), 10) == (5,)
    assert merge_shape((20000, 3), 10000) == (20000, 3)
    for shape, m in [((2, 3, 4), 6), ((3, 2, 5), 6), ((7, 20000, 2, 2), 10000), ((5,), 3)]:
        assert list(merge_shape(shape, m)) == _up_merge(shape, m)
    assert soap_layout((5,)) == ((5,), (False,))
    assert soap_layout((5,), precondition_1d=True) == ((5,), (True,))
    assert soap_layout((5,), precondition_1d=True, max_precond_dim=4) == ((5,), (False,))
    assert soap_layout((3, 20000)) == ((3, 20000), (True, False))
    assert soap_layout(()) == ((), ())
    s = soap_init(np.zeros((3, 20000)))
    assert s.gg[1] is None and s.q[1] is None and s.gg[0].shape == (3, 3)


def test_scalar_and_unpreconditioned_vector_take_adams_step_after_a_skipped_first_call():
    p0 = np.array([0.5, -1.0, 2.0])
    g1, g2 = np.array([1.0, 2.0, -3.0]), np.array([0.25, -0.5, 1.0])
    p, s = _reference(p0, [g1, g2], lr=0.1, weight_decay=0.0)
    m, v = 0.05 * g2, 0.05 * g2**2
    expected = p0 - 0.1 * np.sqrt(0.05) / 0.05 * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-15)
    assert s.gg == (None,)
    ps, _ = _reference(np.asarray(0.5), [np.asarray(1.0), np.asarray(0.25)], lr=0.1,
                       weight_decay=0.0)
    np.testing.assert_allclose(ps, expected[0], rtol=1e-15)


# ---- invariances (hypothesis) ----------------------------------------------------------------
SHAPE = (5, 4)  # L: 5 x 5 of rank 4 after one step (one simple zero), R: 4 x 4 of full rank


def _continue(p, s, grads, **kw):
    for g in grads:
        p, s = soap_step(p, g, s, precondition_frequency=3, **kw)
    return p, s


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_eigenvector_signs_and_column_order_leave_the_trajectory_unchanged(seed, data):
    """After 2 calls, flip the signs and permute the columns of each basis (the rotated moments
    with them); the next 7 calls (two refreshes) give the same parameters, to rounding."""
    rng = np.random.default_rng(seed)
    p, s = rng.standard_normal(SHAPE), soap_init(np.zeros(SHAPE))
    grads = [rng.standard_normal(SHAPE) for _ in range(9)]
    p, s = _continue(p, s, grads[:2], **STRICT)
    m, v, qs = s.exp_avg, s.exp_avg_sq, []
    for axis, n in enumerate(SHAPE):
        perm = np.array(data.draw(st.permutations(range(n)), label=f"perm{axis}"))
        signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n,
                                            max_size=n), label=f"signs{axis}"))
        qs.append(s.q[axis][:, perm] * signs)
        shape = [1] * len(SHAPE)
        shape[axis] = n
        m = np.take(m, perm, axis=axis) * signs.reshape(shape)
        v = np.take(v, perm, axis=axis)
    t = s._replace(q=tuple(qs), exp_avg=m, exp_avg_sq=v)
    p0 = p
    a, _ = _continue(p, s, grads[2:])
    b, _ = _continue(p, t, grads[2:])
    assert _rel(b, a, p0) <= 1e-12


def test_rotation_inside_a_repeated_eigenvalue_changes_the_trajectory():
    """Why a degenerate spectrum is reported: a (4, 2) parameter's first left statistic has a
    double zero eigenvalue; rotating the basis inside it (as another eigensolver may) moves the
    trajectory by far more than rounding."""
    rng = np.random.default_rng(6)
    p, grads = rng.standard_normal((4, 2)), [rng.standard_normal((4, 2)) for _ in range(6)]
    with pytest.warns(SoapDegenerateSpectrumWarning):
        p1, s = soap_step(p, grads[0], soap_init(p))
    c, sn = np.cos(0.7), np.sin(0.7)
    rot = np.eye(4)
    rot[2:, 2:] = [[c, -sn], [sn, c]]
    t = s._replace(q=(s.q[0] @ rot, s.q[1]))
    a, _ = _continue(p1, s, grads[1:])
    b, _ = _continue(p1, t, grads[1:])
    assert _rel(b, a, p) > 1e-3


# ---- the degenerate report -------------------------------------------------------------------
def test_degenerate_spectrum_is_warned_raised_or_counted():
    p, g = np.zeros(4), np.array([1.0, -2.0, 0.5, 3.0])
    s0 = soap_init(p, precondition_1d=True)
    with pytest.warns(SoapDegenerateSpectrumWarning, match="degenerate spectrum"):
        _, s = soap_step(p, g, s0, precondition_1d=True)
    assert float(s.degenerate) == 1.0
    with pytest.raises(SoapDegenerateSpectrumError, match="on_degenerate='ignore'"):
        soap_step(p, g, s0, precondition_1d=True, on_degenerate="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, s = soap_step(p, g, s0, precondition_1d=True, on_degenerate="ignore")
        assert float(s.degenerate) == 1.0
        # later calls do not report again (the eigh is on the first call only)
        soap_step(p, g, s, precondition_1d=True)
    _, s = soap_step(np.zeros((3, 3)), np.eye(3) + np.diag([1.0, 0.5, 0.0]),
                     soap_init(np.zeros((3, 3))), **STRICT)
    assert float(s.degenerate) == 0.0


def test_degenerate_count_is_kept_under_jit():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    jax.config.update("jax_enable_x64", True)
    p, g = jnp.zeros(4), jnp.asarray([1.0, -2.0, 0.5, 3.0])
    step = jax.jit(lambda p, g, s: soap_step(p, g, s, precondition_1d=True))
    _, s = step(p, g, soap_init(p, precondition_1d=True))  # no warning can be raised here
    assert float(s.degenerate) == 1.0


def test_upstream_profile_under_jit_on_a_well_posed_problem():
    """test_jax skips the upstream profile on its problem (float32 cannot separate the 1e-8
    and 0 eigenvalues there); here it runs jitted against the eager steps."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    jax.config.update("jax_enable_x64", True)
    p0, grads = _problem((5, 4), 8, seed=9)
    kw = SOAP.settings("upstream", precondition_frequency=3, **STRICT)
    jstep = jax.jit(lambda p, g, s: soap_step(p, g, s, **kw))
    pe = pj = jnp.asarray(p0)
    se = sj = soap_init(pe)
    for g in grads:
        pe, se = soap_step(pe, jnp.asarray(g), se, **kw)
        pj, sj = jstep(pj, jnp.asarray(g), sj)
    assert _rel(np.asarray(pj), np.asarray(pe), p0) <= 1e-6  # float32 eigh inside


# ---- backends and bad input ------------------------------------------------------------------
def test_dask_error_names_eigh_and_vectors_without_statistics_run_lazily():
    da = pytest.importorskip("dask.array")
    p = da.from_array(np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"has no linalg\.eigh.*docs/backends\.md"):
        soap_step(p, p, soap_init(p))
    v = da.from_array(np.array([1.0, 2.0, 3.0]))
    out, s = soap_step(v, v, soap_init(v))
    out, s = soap_step(out, v, s)
    assert isinstance(out, da.Array)
    ref, _ = _reference(np.array([1.0, 2.0, 3.0]), [np.array([1.0, 2.0, 3.0])] * 2)
    np.testing.assert_array_equal(out.compute(), ref)


def test_bad_input_names_the_argument():
    p = np.zeros((3, 2))
    s = soap_init(p)
    with pytest.raises(TypeError, match="precondition_frequency must be a Python int"):
        soap_step(p, p, s, precondition_frequency=2.0)
    with pytest.raises(ValueError, match="precondition_frequency"):
        soap_step(p, p, s, precondition_frequency=0)
    with pytest.raises(ValueError, match="eigh_dtype"):
        soap_step(p, p, s, eigh_dtype="float16")
    with pytest.raises(ValueError, match=r"state.gg has shapes .* needs"):
        soap_step(p, p, s, max_precond_dim=2)
    with pytest.raises(ValueError, match="beta2"):
        soap_step(p, p, s, beta2=1.0)
    with pytest.raises(TypeError, match="max_precond_dim must be a Python int"):
        soap_init(p, max_precond_dim=10.0)


# ---- the exact oracle (adaptive_ref.conformance.fidelity, TENSOR_STEPS["soap"]) -------------
# mpmath at 40 digits (eigsy, qr) against the float64 reference (LAPACK) on well-posed problems:
# square statistics of full-rank first gradients, or only the small side preconditioned. Both
# make the same canonical choices (decreasing order, signs), so the state agrees too. Measured
# (relative to the distance travelled / the field's scale): 4e-16 to 2.3e-15; bound 1e-12.

ORACLE_CASES = [
    ((3, 3), dict(precondition_frequency=3)),
    ((3, 5), dict(precondition_frequency=2, max_precond_dim=4)),
    ((4,), dict(precondition_frequency=2)),
    ((3, 3), dict(precondition_frequency=2, normalize_grads=True, correct_bias=False,
                  shampoo_beta=0.9)),
    ((2, 2, 4), dict(precondition_frequency=2, merge_dims=True, max_precond_dim=4)),
    ((2, 3, 2), dict(precondition_frequency=2, weight_decay=0.1)),
]


def _oracle_run(shape, hp, p0, grads):
    import mpmath

    from adaptive_ref.conformance import fidelity

    with mpmath.workdps(40):
        h = {**fidelity._FILL, **hp, "_case_dtype": "float64", "_shape": shape}
        es = fidelity.tensor_of("soap", h, [
            fidelity._Elem(mpmath.mpf(float(x)), fidelity._init_fields("soap", h))
            for x in p0.reshape(-1)])
        for t, g in enumerate(grads, 1):
            fidelity.TENSOR_STEPS["soap"](es, [mpmath.mpf(float(x)) for x in g.reshape(-1)], t,
                                          h, h["lr"])
    return es


@pytest.mark.parametrize(("shape", "kw"), ORACLE_CASES)
def test_exact_oracle_matches_the_float64_reference(shape, kw):
    from adaptive_ref.conformance import fidelity

    spec = registry.get("soap")
    rng = np.random.default_rng(1)
    p0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(7)]
    hp = spec.settings(None, lr=0.1, on_degenerate="raise", **kw)
    assert fidelity.soap_well_posed(grads, shape, hp)
    p, st = p0, spec.init(p0, **spec.init_kwargs(hp))
    for g in grads:
        p, st = spec.step(p, g, st, **hp)
    es = _oracle_run(shape, hp, p0, grads)
    exact = np.array([float(e.p) for e in es]).reshape(shape)
    assert np.max(np.abs(exact - p)) <= 1e-12 * np.max(np.abs(p - p0))
    for f in ("exp_avg", "exp_avg_sq"):
        got = getattr(st, f)
        want = np.array([float(e.s[f]) for e in es]).reshape(shape)
        assert np.max(np.abs(want - got)) <= 1e-12 * np.max(np.abs(got)), f
    assert set(es.own) == set(fidelity.soap_state_shapes(hp, shape))
    for f, xs in es.own.items():
        got = getattr(st, f[:-1])[int(f[-1])]
        want = np.array([float(x) for x in xs]).reshape(es.own_shapes[f])
        assert np.max(np.abs(want - got)) <= 1e-12 * np.max(np.abs(got)), f


def test_well_posed_screen_refuses_repeated_eigenvalues():
    from adaptive_ref.conformance import fidelity

    hp = registry.get("soap").settings(None, lr=0.1, precondition_frequency=2)
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=(3, 5)) for _ in range(4)]
    # a (3, 5) gradient's 5 x 5 statistic has rank 3 at the first eigh: two zero eigenvalues
    assert not fidelity.soap_well_posed(grads, (3, 5), hp)
    assert fidelity.soap_well_posed(grads, (3, 5), {**hp, "max_precond_dim": 4})
    # a vector's statistic g g^T under precondition_1d has rank one
    vec = [rng.normal(size=4) for _ in range(3)]
    assert not fidelity.soap_well_posed(vec, (4,), {**hp, "precondition_1d": True})
    assert fidelity.soap_well_posed(vec, (4,), hp)  # no statistic: nothing to screen
    # a rank-one first gradient of a square matrix: repeated zero eigenvalue
    grads = [np.outer([1.0, 2.0, 3.0], [1.0, -1.0, 0.5])] + [rng.normal(size=(3, 3))
                                                              for _ in range(3)]
    assert not fidelity.soap_well_posed(grads, (3, 3), hp)


def test_upstream_transcription_in_float64_passes_the_goldens():
    """Another float64 implementation (upstream's loop: tensordot cycling the axes, LAPACK's own
    eigenvector signs and QR signs, no casts) is within the goldens' budget on every case's
    parameters (measured: 10 to 27 ULP; the state's signs and layout are upstream's own)."""
    from adaptive_ref.conformance import format as fmt
    from adaptive_ref.conformance.compare import compare

    for case in fmt.load_cases("soap"):
        hp = case.hparams
        kw = dict(lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                  **{k: hp[k] for k in ("shampoo_beta", "weight_decay", "precondition_frequency",
                                        "max_precond_dim", "merge_dims", "precondition_1d",
                                        "normalize_grads", "correct_bias")})
        res = {t: ({p.name: upstream_soap(p.init.reshape(p.shape),
                                          [case.gradients(s)[p.name] for s in range(1, t + 1)],
                                          eigh_dtype=np.float64, **kw)
                    for p in case.params}, {}) for t in case.checkpoints}
        out = compare(case, res, state=False, explain=False)
        assert out.status == "pass", out.report()
