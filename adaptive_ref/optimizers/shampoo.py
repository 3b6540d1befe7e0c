r"""Shampoo: Kronecker-factored full-matrix AdaGrad for matrix and order-k tensor parameters.

Gupta, Koren & Singer, "Shampoo: preconditioned stochastic tensor optimization", ICML 2018,
arXiv:1802.09568 (Algorithm 1 for matrices, Algorithm 2 for order-k tensors).

Not elementwise: each mode of the parameter gets an ``n_i x n_i`` statistic
:math:`H_i = \epsilon I + \sum_s G_{(i)} G_{(i)}^\top` (``G_(i)``: the mode-i matricisation) and the
update multiplies the gradient along every mode by :math:`H_i^{-1/(2k)}`. The inverse roots are
computed by ``xp.linalg.eigh`` in float64 (where the backend has float64). Order 1 is full-matrix
AdaGrad with eps inside the root, :math:`(\epsilon I + \sum g g^\top)^{-1/2} g`; order 0 (a scalar)
is treated as a vector of length 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat as aac

from .. import _numerics as nx
from .._checks import check_arrays, check_count, check_finite, is_array, readable
from .._common import check_hparams, finish
from .._spec import HParam, OptimizerSpec

__all__ = ["ShampooState", "shampoo_init", "shampoo_step", "inverse_root", "mode_product",
           "shampoo_direction", "kronecker", "shampoo_direction_vec", "SHAMPOO"]


class ShampooState(NamedTuple):
    """count: 0-d integer step count. stats: one ``n_i x n_i`` statistic per mode (starting at
    eps*I). roots: the preconditioners ``stats_i^(-1/(2k))`` last computed (refreshed every
    ``update_freq`` steps, at steps 1, 1 + f, 1 + 2f, ...)."""

    count: Any
    stats: tuple
    roots: tuple


SHAMPOO_HPARAMS = (
    HParam("lr", 1e-3, "learning rate (eta)", low=0.0),
    HParam("eps", 1e-6, "regularisation: each statistic starts at eps*I (Algorithm 1)",
           low=0.0, low_open=True, init=True),
    HParam("update_freq", 1, "recompute the inverse roots every this many steps (an integer "
           ">= 1); statistics are accumulated every step", low=1.0),
)


_INIT_HPARAMS = (SHAMPOO_HPARAMS[1],)  # eps


def _dims(shape) -> tuple[int, ...]:
    return tuple(shape) if len(shape) else (1,)


def shampoo_init(param, /, *, eps=1e-6, state_dtype=None) -> ShampooState:
    r"""Count 0; one statistic :math:`\epsilon I_{n_i}` per mode and its root
    :math:`\epsilon^{-1/(2k)} I` (the state dtype: the param's unless ``state_dtype``)."""
    if not is_array(param):
        msg = f"shampoo_init: param must be an array, got {type(param).__name__}"
        raise TypeError(msg)
    check_hparams("shampoo_init", _INIT_HPARAMS, (eps,))
    if not readable(eps):
        msg = f"shampoo_init: eps must be a concrete number (not traced or lazy), got {eps!r}"
        raise TypeError(msg)
    eps = float(eps)  # a NumPy float64 (a float subclass) would turn the state into NumPy arrays
    xp = aac.array_namespace(param)
    dtype = param.dtype if state_dtype is None else state_dtype
    if not xp.isdtype(dtype, "real floating"):
        msg = f"shampoo_init: dtype {dtype} is not real floating"
        raise TypeError(msg)
    dev = aac.device(param)
    dims = _dims(param.shape)
    k = len(dims)
    stats = tuple(eps * xp.eye(n, dtype=dtype, device=dev) for n in dims)
    roots = tuple(eps ** (-1.0 / (2 * k)) * xp.eye(n, dtype=dtype, device=dev) for n in dims)
    return ShampooState(nx.new_count(xp, param), stats, roots)


def inverse_root(mat, power: float, *, floor=None):
    r"""``mat ** (-1/power)`` for a symmetric positive-definite matrix, via ``xp.linalg.eigh``
    in float64 where the backend has it (cast back to ``mat``'s dtype).

    Eigenvalues are clamped below at ``floor`` (default: none beyond 0 -> tiny): for Shampoo's
    statistics :math:`\epsilon I + \text{PSD}`, ``floor = eps`` changes nothing in exact
    arithmetic and removes the rounding that can push an eigenvalue below eps.
    """
    xp = aac.array_namespace(mat)
    la = getattr(xp, "linalg", None)
    if la is None or not hasattr(la, "eigh"):
        msg = f"inverse_root: the namespace {xp.__name__} has no linalg.eigh"
        raise TypeError(msg)
    sd = nx.scalar_dtype(xp, mat, mat.dtype)
    a = mat if mat.dtype == sd else xp.astype(mat, sd)
    a = (a + xp.permute_dims(a, (1, 0))) / 2  # symmetric to the last bit
    lam, q = la.eigh(a)
    lo = float(floor) if floor is not None else float(xp.finfo(sd).smallest_normal)
    lam = xp.maximum(lam, xp.asarray(lo, dtype=sd, device=aac.device(lam)))
    scaled = q * (lam ** (-1.0 / power))[None, :]
    out = xp.matmul(scaled, xp.permute_dims(q, (1, 0)))
    return out if out.dtype == mat.dtype else xp.astype(out, mat.dtype)


def mode_product(tensor, mat, mode: int):
    """``tensor`` with ``mat`` applied along axis ``mode`` (``mat @ T_(mode)``, refolded)."""
    xp = aac.array_namespace(tensor, mat)
    return xp.moveaxis(xp.tensordot(mat, tensor, axes=((1,), (mode,))), 0, mode)


def shampoo_direction(grad, roots):
    r"""The preconditioned gradient :math:`G \times_1 P_1 \times_2 P_2 \cdots \times_k P_k`
    (matrix case: :math:`P_L\, G\, P_R`, the roots being symmetric)."""
    xp = aac.array_namespace(grad)
    g = xp.reshape(grad, _dims(grad.shape))
    for i, r in enumerate(roots):
        g = mode_product(g, r, i)
    return xp.reshape(g, grad.shape)


def kronecker(a, b):
    """The Kronecker product ``a ⊗ b`` of two matrices (array API has no ``kron``)."""
    xp = aac.array_namespace(a, b)
    (m, n), (p, q) = a.shape, b.shape
    return xp.reshape(a[:, None, :, None] * b[None, :, None, :], (m * p, n * q))


def shampoo_direction_vec(grad, roots):
    r"""The same direction in Kronecker/vec form:
    :math:`(P_1 \otimes \cdots \otimes P_k)\,\mathrm{vec}(G)` with row-major ``vec``
    (``xp.reshape``). For matrices, :math:`\mathrm{vec}(P_L G P_R) =
    (P_L \otimes P_R^\top)\mathrm{vec}(G)` and :math:`P_R^\top = P_R`.
    Builds the full ``N x N`` matrix: for checking the identity on small shapes only."""
    xp = aac.array_namespace(grad)
    big = roots[0]
    for r in roots[1:]:
        big = kronecker(big, r)
    v = xp.reshape(grad, (-1, 1))
    return xp.reshape(xp.matmul(big, v), grad.shape)


def shampoo_step(param, grad, state: ShampooState, /, *, lr=1e-3, eps=1e-6, update_freq=1):
    r"""One Shampoo step (Gupta et al. 2018, Algorithms 1 and 2).

    For an order-k parameter (k = ``param.ndim``, 0 treated as 1):

    .. math::

        H_i &\leftarrow H_i + G_{(i)} G_{(i)}^\top, \qquad H_i^{(0)} = \epsilon I \\
        P_i &= H_i^{-1/(2k)} \quad\text{(recomputed when } (t-1) \bmod f = 0\text{)} \\
        W &\leftarrow W - \eta\; G \times_1 P_1 \cdots \times_k P_k

    Matrices (k = 2): :math:`W \leftarrow W - \eta L^{-1/4} G R^{-1/4}`; vectors (k = 1):
    full-matrix AdaGrad :math:`(\epsilon I + \sum g g^\top)^{-1/2} g`. Many implementations use
    exponent -1/2 per side for matrices; that is an override, not the paper.

    ``update_freq`` is honoured without branching on the step count: the new roots are computed
    every step and selected with ``xp.where`` (a reference keeps semantics, not speed).
    Defaults: lr 1e-3, eps 1e-6, update_freq 1 (the paper's algorithms refresh every step).
    """
    check_hparams("shampoo_step", SHAMPOO_HPARAMS, (lr, eps, update_freq))
    if isinstance(update_freq, bool) or not isinstance(update_freq, int):
        msg = f"shampoo_step: update_freq must be an int >= 1, got {update_freq!r}"
        raise TypeError(msg)
    if not isinstance(state, ShampooState):
        msg = (f"shampoo_step: state is a {type(state).__name__}, not a ShampooState; make it "
               f"with shampoo_init")
        raise TypeError(msg)
    for field in ("stats", "roots"):
        if not isinstance(getattr(state, field), tuple):
            msg = (f"shampoo_step: state.{field} must be a tuple of arrays (one per mode), got "
                   f"{type(getattr(state, field)).__name__}; make the state with shampoo_init")
            raise TypeError(msg)
    arrays = {"param": param, "grad": grad}
    arrays.update({f"state.stats[{i}]": s for i, s in enumerate(state.stats)})
    arrays.update({f"state.roots[{i}]": s for i, s in enumerate(state.roots)})
    xp, pdtype, _ = check_arrays("shampoo_step", arrays, same_shape=["grad"])
    dims = _dims(param.shape)
    for field in ("stats", "roots"):
        mats = getattr(state, field)
        if len(mats) != len(dims) or any(tuple(s.shape) != (n, n)
                                         for s, n in zip(mats, dims, strict=True)):
            msg = (f"shampoo_step: state.{field} have shapes {[tuple(s.shape) for s in mats]}, "
                   f"param needs {[(n, n) for n in dims]}")
            raise ValueError(msg)
    check_count("shampoo_step", xp, state.count)
    check_finite("shampoo_step", "grad", grad)
    dtype = state.stats[0].dtype
    sd = nx.scalar_dtype(xp, param, dtype)
    k = len(dims)
    g = xp.reshape(grad if grad.dtype == dtype else xp.astype(grad, dtype), dims)
    p = param if param.dtype == dtype else xp.astype(param, dtype)
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if an unreadable count overflows
    refresh = (state.count % update_freq) == 0
    axes = tuple(range(k))
    stats, roots = [], []
    for i in range(k):
        others = tuple(a for a in axes if a != i)
        h = state.stats[i] + xp.tensordot(g, g, axes=(others, others))
        check_finite("shampoo_step", f"state.stats[{i}] + G G^T (the new statistic)", h,
                     hint="the gradient is too large for the state dtype")
        fresh = inverse_root(h, 2.0 * k, floor=eps)
        stats.append(h)
        roots.append(fresh if update_freq == 1 else xp.where(refresh, fresh, state.roots[i]))
    direction = xp.reshape(shampoo_direction(g, roots), param.shape)
    p_new = p - nx.to(xp, nx.as_scalar(xp, lr, sd, param), dtype) * direction
    return finish(xp, p_new, pdtype), ShampooState(count, tuple(stats), tuple(roots))


SHAMPOO = OptimizerSpec(
    name="shampoo", title="Shampoo", init=shampoo_init, step=shampoo_step,
    state_type=ShampooState, hparams=SHAMPOO_HPARAMS, elementwise=False,
    paper="Gupta, Koren & Singer, Shampoo: preconditioned stochastic tensor optimization, "
          "ICML 2018 (arXiv:1802.09568), Algorithms 1-2",
    summary="Kronecker-factored full-matrix AdaGrad: one gradient-outer-product statistic per "
            "mode, preconditioner H_i^(-1/(2k)).",
)
