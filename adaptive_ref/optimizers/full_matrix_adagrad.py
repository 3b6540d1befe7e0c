r"""Full-matrix AdaGrad.

Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning and stochastic
optimization", JMLR 12 (2011) 2121-2159, Sec. 1.1 (unconstrained, no regulariser).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat as aac

from .. import _numerics as nx
from .._checks import check_arrays, check_count, check_finite, is_array
from .._common import check_hparams, finish, init_number, scalars
from .._spec import HParam, OptimizerSpec

__all__ = ["FullMatrixAdagradState", "full_matrix_adagrad_init", "full_matrix_adagrad_step",
           "FULL_MATRIX_ADAGRAD"]


class FullMatrixAdagradState(NamedTuple):
    """count: 0-d integer step count. stats: G_t = sum of g g^T over the flattened parameter
    (``n x n``, n = param.size), starting at ``initial_accumulator_value * I``."""

    count: Any
    stats: Any


FMA_HPARAMS = (
    HParam("lr", 1e-2, "learning rate (eta)", low=0.0),
    HParam("eps", 1e-8, "delta: added to the matrix root (outside) or to G (inside)",
           low=0.0),
    HParam("eps_placement", "outside", "'outside': (delta I + G^(1/2))^(-1) g (Duchi et al.; "
           "the matrix form of torch's sqrt(sum)+eps); 'inside': (delta I + G)^(-1/2) g (Shampoo "
           "for vectors, optax's eps-in-root)", kind="choice", choices=("outside", "inside"),
           knob=True),
    HParam("initial_accumulator_value", 0.0, "G_0 = this times I", low=0.0, init=True),
)


def full_matrix_adagrad_init(param, /, *, initial_accumulator_value=0.0, state_dtype=None):
    """Count 0; an ``n x n`` statistic ``initial_accumulator_value * I``."""
    if not is_array(param):
        msg = f"full_matrix_adagrad_init: param must be an array, got {type(param).__name__}"
        raise TypeError(msg)
    xp = aac.array_namespace(param)
    dtype = param.dtype if state_dtype is None else state_dtype
    n = 1
    for d in param.shape:
        n *= d
    eye = xp.eye(n, dtype=dtype, device=aac.device(param))
    iav = init_number("full_matrix_adagrad_init", FMA_HPARAMS, "initial_accumulator_value",
                      initial_accumulator_value)
    return FullMatrixAdagradState(nx.new_count(xp, param), iav * eye)


def full_matrix_adagrad_step(param, grad, state: FullMatrixAdagradState, /, *, lr=1e-2, eps=1e-8,
                             eps_placement="outside", initial_accumulator_value=0.0):
    r"""One full-matrix AdaGrad step on the flattened parameter.

    .. math::

        G_t = G_{t-1} + g g^\top, \qquad
        \theta_t = \theta_{t-1} - \eta\,(\delta I + G_t^{1/2})^{-1} g
        \quad\text{or ('inside')}\quad \theta_{t-1} - \eta\,(\delta I + G_t)^{-1/2} g

    via one ``eigh`` of :math:`G_t` in float64 (eigenvalues clamped at 0). With
    :math:`\delta = 0` the inverse is the pseudo-inverse: eigenvalues at or below
    :math:`n\,\epsilon_{mach}\,\lambda_{max}` count as zero (g has no component there). Equivariant under
    every orthogonal change of coordinates (diagonal AdaGrad only under permutations and sign
    flips); equals Shampoo on a vector with ``'inside'`` placement.
    Defaults: lr 1e-2, delta 1e-8 outside, G_0 = 0.
    """
    check_hparams("full_matrix_adagrad_step", FMA_HPARAMS, (lr, eps, eps_placement,
                  initial_accumulator_value))
    if not isinstance(state, FullMatrixAdagradState):
        msg = (f"full_matrix_adagrad_step: state is a {type(state).__name__}, not a "
               f"FullMatrixAdagradState; make it with full_matrix_adagrad_init")
        raise TypeError(msg)
    xp, pdtype, _ = check_arrays("full_matrix_adagrad_step",
                                 {"param": param, "grad": grad, "state.stats": state.stats},
                                 same_shape=["grad"])
    n = 1
    for d in param.shape:
        n *= d
    if tuple(state.stats.shape) != (n, n):
        msg = (f"full_matrix_adagrad_step: state.stats has shape {tuple(state.stats.shape)}, "
               f"the parameter needs ({n}, {n})")
        raise ValueError(msg)
    la = getattr(xp, "linalg", None)
    if la is None or not hasattr(la, "eigh"):
        msg = f"full_matrix_adagrad_step: the namespace {xp.__name__} has no linalg.eigh"
        raise TypeError(msg)
    check_count("full_matrix_adagrad_step", xp, state.count)
    check_finite("full_matrix_adagrad_step", "grad", grad)
    dtype = state.stats.dtype
    sd = nx.scalar_dtype(xp, param, dtype)
    g = xp.reshape(grad if grad.dtype == dtype else xp.astype(grad, dtype), (n,))
    p = param if param.dtype == dtype else xp.astype(param, dtype)
    lr, eps = scalars(xp, sd, param, lr, eps)
    count, lr = nx.advance_count(xp, state.count, sd, lr)  # lr NaN if an unreadable count overflows
    stats = state.stats + g[:, None] * g[None, :]
    check_finite("full_matrix_adagrad_step", "state.stats + g g^T (the new statistic)", stats,
                 hint="the gradient is too large for the state dtype")
    a = xp.astype(stats, sd) if stats.dtype != sd else stats
    a = (a + xp.permute_dims(a, (1, 0))) / 2
    lam, q = la.eigh(a)
    lam = xp.maximum(lam, xp.zeros_like(lam))
    if eps_placement == "outside":
        scale = 1.0 / (eps + xp.sqrt(lam))
    else:
        scale = 1.0 / xp.sqrt(lam + eps)
    if is_array(eps) or eps == 0:
        # delta = 0: the pseudo-inverse. g lies in the range of G_t (G_t includes g g^T), so
        # eigenvalues at or below n * machine-eps * lambda_max are zero up to rounding and g
        # has no component there; without the cut, 1/sqrt(0) = inf times that ~0 is NaN
        cut = float(n) * float(xp.finfo(lam.dtype).eps) * xp.max(lam)
        keep = lam > cut if not is_array(eps) else (lam > cut) | (eps > 0)
        scale = xp.where(keep, scale, xp.zeros_like(scale))
    g64 = xp.astype(g, sd) if g.dtype != sd else g
    coef = xp.reshape(xp.matmul(xp.permute_dims(q, (1, 0)), xp.reshape(g64, (n, 1))), (n,))
    direction = xp.reshape(xp.matmul(q, xp.reshape(scale * coef, (n, 1))), (n,))
    direction = xp.reshape(direction if direction.dtype == dtype else xp.astype(direction, dtype),
                           param.shape)
    p_new = p - nx.to(xp, nx.as_scalar(xp, lr, sd, param), dtype) * direction
    return finish(xp, p_new, pdtype), FullMatrixAdagradState(count, stats)


FULL_MATRIX_ADAGRAD = OptimizerSpec(
    name="full_matrix_adagrad", title="Full-matrix AdaGrad", init=full_matrix_adagrad_init,
    step=full_matrix_adagrad_step, state_type=FullMatrixAdagradState, hparams=FMA_HPARAMS,
    elementwise=False,
    paper="Duchi, Hazan & Singer, Adaptive subgradient methods for online learning and "
          "stochastic optimization, JMLR 12 (2011), Sec. 1.1",
    summary="AdaGrad with the full outer-product statistic: (delta I + G^(1/2))^(-1) g.",
)
