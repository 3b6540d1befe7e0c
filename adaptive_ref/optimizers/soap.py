r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner, with its conventions as knobs.

Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade, "SOAP: Improving and
Stabilizing Shampoo using Adam", arXiv:2409.11321, 2024 (Algorithm 3); code: nikhilvyas/SOAP
``soap.py`` (read at commit a1e553530fde97d0e6b307d7c82ac6d38b072340, 2 Dec 2024, the
"momentum change" that keeps the first moment in the rotated basis).

Not elementwise. Each dimension ``i`` of the (optionally merged) parameter whose size is at most
``max_precond_dim`` keeps a statistic :math:`GG_i` (an EMA of the gradient contracted with itself
over every other dimension: :math:`G G^\top` and :math:`G^\top G` for a matrix) and an
orthogonal basis :math:`Q_i` of its eigenvectors, sorted by decreasing eigenvalue. The gradient
is rotated into that basis, Adam runs there (elementwise), and the result is rotated back.
:math:`Q_i` comes from ``linalg.eigh`` on the first call (which only accumulates: no update) and
is then refreshed every ``precondition_frequency`` steps by one power iteration
:math:`Q_i \leftarrow \mathrm{qr}(GG_i Q_i)`, after re-sorting its columns by the estimated
eigenvalues :math:`\mathrm{diag}(Q_i^\top GG_i Q_i)` (the second moment is permuted with them).

Well-posedness. The trajectory does not depend on the signs of the eigenvectors or on the order
of columns with distinct eigenvalues (tests/test_soap.py checks both). It *does* depend on the
basis chosen inside a repeated eigenvalue (Adam's elementwise normalisation is not rotation
invariant), which ``eigh`` leaves arbitrary: a rank-deficient first gradient (a vector under
``precondition_1d``, a matrix with more rows than columns, ``merge_dims``) gives a repeated zero
eigenvalue. Such a spectrum is *reported*: the state counts the factors whose eigenvalues were
not separated at the ``eigh`` (``degenerate``), and where that count can be read without a host
sync (NumPy, array-api-strict, torch and JAX on the CPU, outside ``jit``) the step warns
(:class:`SoapDegenerateSpectrumWarning`) or, with ``on_degenerate="raise"``, raises
:class:`SoapDegenerateSpectrumError`. Under ``jax.jit``, on Dask and on GPUs read
``state.degenerate`` after the first step.

Backends. Every operation is in the array API (``tensordot``, ``matmul``, ``linalg.eigh``,
``linalg.qr``, ``argsort``, ``take``, ``where``). The first-call and refresh branches are
selected with ``xp.where`` on the step count (no host sync under ``jit``: both branches are
computed every step, an ``eigh`` and a QR per factor); where the count can be read the unused
branch is skipped, with the same result bit for bit. Dask's array-API namespace has no
``linalg.eigh``: the step raises a ``TypeError`` naming it (docs/backends.md says how a Dask user
runs SOAP).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import array_api_compat as aac

from .. import _numerics as nx
from .._checks import check_arrays, check_count, check_finite, readable
from .._common import check_hparams, decoupled_decay_factor, finish, init_zeros
from .._spec import HParam, OptimizerSpec, Profile
from .shampoo import mode_product

__all__ = ["SoapState", "soap_init", "soap_step", "soap_layout", "merge_shape",
           "soap_eigenbasis", "soap_refresh", "soap_project", "soap_project_back",
           "SoapDegenerateSpectrumWarning", "SoapDegenerateSpectrumError", "SOAP_HPARAMS", "SOAP"]

EIGH_DTYPES = ("float64", "float32")


class SoapDegenerateSpectrumWarning(UserWarning):
    """A factor's eigenvalues were not separated at the ``eigh``: the basis inside the repeated
    eigenvalue, and so the trajectory, depends on the eigensolver."""


class SoapDegenerateSpectrumError(ValueError):
    """``on_degenerate="raise"`` and a factor's spectrum was degenerate at the ``eigh``."""


class SoapState(NamedTuple):
    """State of SOAP.

    count:      0-d integer array, calls made (the first call only accumulates).
    exp_avg:    the first moment, the parameter's shape, **in the rotated basis**.
    exp_avg_sq: the second moment, the parameter's shape, in the rotated basis.
    gg:         one ``(n_i, n_i)`` statistic per dimension of the (merged) parameter, ``None``
                where the dimension is not preconditioned (size > ``max_precond_dim``, or a
                vector without ``precondition_1d``).
    q:          the eigenbasis of each statistic (columns by decreasing eigenvalue), ``None``
                likewise; the identity before the first call.
    degenerate: 0-d, the scalar dtype: how many factors had a degenerate spectrum at the
                ``eigh`` of the first call (0 before it).
    """

    count: Any
    exp_avg: Any
    exp_avg_sq: Any
    gg: tuple
    q: tuple
    degenerate: Any

    SCALAR_FIELDS = ("degenerate",)


SOAP_HPARAMS = (
    HParam("lr", 3e-3, "learning rate", low=0.0),
    HParam("beta1", 0.95, "first-moment EMA coefficient (upstream betas[0])", low=0.0, high=1.0,
           high_open=True),
    HParam("beta2", 0.95, "second-moment EMA coefficient (upstream betas[1])", low=0.0,
           high=1.0, high_open=True),
    HParam("shampoo_beta", -1.0, "EMA coefficient of the statistics GG_i; a negative value "
           "means beta2 (upstream's -1)", low=-1.0, high=1.0, high_open=True),
    HParam("eps", 1e-8, "added to sqrt(v) (not bias-corrected)", low=0.0),
    HParam("weight_decay", 0.01, "decoupled decay p <- p - lr*wd*p, applied after the update "
           "(with lr, not the bias-corrected step size)", low=0.0),
    HParam("precondition_frequency", 10, "re-sort and one QR power step every this many Adam "
           "steps (a Python int >= 1)", low=1.0),
    HParam("max_precond_dim", 10000, "dimensions larger than this get no statistic (identity "
           "basis); also the merge limit (a Python int >= 1)", low=1.0, init=True),
    HParam("merge_dims", False, "merge consecutive dimensions while their product stays <= "
           "max_precond_dim (upstream's channels_first order)", kind="bool", init=True),
    HParam("precondition_1d", False, "give vectors a statistic (else they take Adam's step in "
           "the identity basis)", kind="bool", init=True),
    HParam("normalize_grads", False, "divide the rotated-back update by "
           "1e-30 + sqrt(mean(update^2))", kind="bool"),
    HParam("correct_bias", True, "step size lr*sqrt(1 - beta2^s)/(1 - beta1^s) (s: Adam steps "
           "taken) instead of lr", kind="bool"),
    HParam("eigh_dtype", "float64", "dtype of eigh, the re-sort and the QR power step: "
           "'float64' (the reference; the state dtype where the namespace has no float64) or "
           "'float32' (upstream: GG.float() and Q.float() even for float64 parameters, cast back)",
           kind="choice", choices=EIGH_DTYPES, knob=True),
    HParam("degenerate_tol", 1.0, "a factor is degenerate when two adjacent eigenvalues "
           "differ by at most degenerate_tol * n * eps(eigh dtype) * max|eigenvalue|", low=0.0),
    HParam("on_degenerate", "warn", "what a degenerate spectrum does where it can be read: "
           "'warn' (SoapDegenerateSpectrumWarning), 'raise' (SoapDegenerateSpectrumError) or "
           "'ignore'; it is always counted in state.degenerate", kind="choice",
           choices=("warn", "raise", "ignore")),
)

_INIT = tuple(h for h in SOAP_HPARAMS if h.init)


def merge_shape(shape, max_precond_dim: int) -> tuple[int, ...]:
    """Upstream's ``merge_dims``: consecutive dimensions multiplied together while the product
    stays at most ``max_precond_dim`` (a dimension larger than it stays alone)."""
    out, cur = [], 1
    for n in shape:
        if cur * n > max_precond_dim:
            if cur > 1:
                out.append(cur)
                cur = n
            else:
                out.append(n)
                cur = 1
        else:
            cur *= n
    if cur > 1 or not out:
        out.append(cur)
    return tuple(out)


def soap_layout(shape, *, max_precond_dim: int = 10000, merge_dims: bool = False,
                precondition_1d: bool = False) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """``(dims, preconditioned)``: the shape the step works in and which of its dimensions have a
    statistic. A scalar has none (Adam's step; upstream's 1 x 1 basis under ``merge_dims`` is
    the same step)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return (), ()
    if len(shape) == 1:
        return shape, (bool(precondition_1d) and shape[0] <= max_precond_dim,)
    dims = merge_shape(shape, max_precond_dim) if merge_dims else shape
    return dims, tuple(n <= max_precond_dim for n in dims)


def _int_param(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{op}: {name} must be a Python int >= 1, got {value!r}"
        raise TypeError(msg)


def soap_init(param, /, *, max_precond_dim=10000, merge_dims=False, precondition_1d=False,
              state_dtype=None) -> SoapState:
    """Zero moments of ``param``'s shape, a zero statistic and an identity basis per
    preconditioned dimension (:func:`soap_layout`), count 0, ``degenerate`` 0; ``state_dtype``
    (default: the param's)."""
    check_hparams("soap_init", _INIT, (max_precond_dim, merge_dims, precondition_1d))
    _int_param("soap_init", "max_precond_dim", max_precond_dim)
    xp, z, count = init_zeros("soap_init", param, state_dtype)
    dtype, dev = z.dtype, aac.device(z)
    dims, active = soap_layout(param.shape, max_precond_dim=max_precond_dim,
                               merge_dims=merge_dims, precondition_1d=precondition_1d)
    gg = tuple(xp.zeros((n, n), dtype=dtype, device=dev) if a else None
               for n, a in zip(dims, active, strict=True))
    q = tuple(xp.eye(n, dtype=dtype, device=dev) if a else None
              for n, a in zip(dims, active, strict=True))
    sd = nx.scalar_dtype(xp, param, dtype)
    return SoapState(count, z, xp.zeros(param.shape, dtype=dtype, device=dev), gg, q,
                     xp.zeros((), dtype=sd, device=dev))


def _mT(xp, x):
    return xp.permute_dims(x, (1, 0))


def soap_project(x, qs):
    r"""Rotate ``x`` into the bases: :math:`x \times_1 Q_1^\top \cdots \times_k Q_k^\top`
    (``None``: that dimension is left alone). ``x`` has the layout's (merged) shape."""
    xp = aac.array_namespace(x)
    for i, q in enumerate(qs):
        if q is not None:
            x = mode_product(x, _mT(xp, q), i)
    return x


def soap_project_back(x, qs):
    r"""Rotate back: :math:`x \times_1 Q_1 \cdots \times_k Q_k`."""
    for i, q in enumerate(qs):
        if q is not None:
            x = mode_product(x, q, i)
    return x


def _statistic(xp, g, i: int):
    """G contracted with itself over every dimension but ``i`` (``g g^T`` for a vector)."""
    if g.ndim == 1:
        return g[:, None] * g[None, :]
    others = tuple(a for a in range(g.ndim) if a != i)
    return xp.tensordot(g, g, axes=(others, others))


def _eigh_dtype(xp, name: str, like, dtype):
    return xp.float32 if name == "float32" else nx.scalar_dtype(xp, like, dtype)


def soap_eigenbasis(gg, *, eigh_dtype: str = "float64", degenerate_tol=1.0):
    r"""``(Q, lam, degenerate)``: the eigenvectors of ``gg + 1e-30 I`` (symmetrised) as columns
    sorted by decreasing eigenvalue, computed in ``eigh_dtype`` and cast to ``gg``'s dtype; the
    eigenvalues (in ``eigh_dtype``); and a 0-d bool, True when two adjacent eigenvalues differ by
    at most ``degenerate_tol * n * eps * max|lam|`` (eps of ``eigh_dtype``). Upstream adds the
    1e-30 I and flips ``eigh``'s ascending order; the array API leaves the order unspecified,
    so the columns are sorted here (a stable sort: ties keep ``eigh``'s order), and each column's
    sign is chosen so that its entry of largest magnitude is positive (signs are unspecified too;
    the trajectory does not depend on them, the state does)."""
    xp = aac.array_namespace(gg)
    n = gg.shape[0]
    ed = _eigh_dtype(xp, eigh_dtype, gg, gg.dtype)
    a = gg if gg.dtype == ed else xp.astype(gg, ed)
    a = (a + _mT(xp, a)) / 2 + 1e-30 * xp.eye(n, dtype=ed, device=aac.device(a))
    lam, q = xp.linalg.eigh(a)
    order = xp.argsort(lam, descending=True, stable=True)
    lam = xp.take(lam, order)
    q = xp.take(q, order, axis=1)
    # signs: each column's entry of largest magnitude made positive (ties: +), so that the
    # state is the same on every backend (the trajectory does not depend on them)
    one = xp.ones_like(lam)
    q = q * xp.where(xp.max(q, axis=0) >= -xp.min(q, axis=0), one, -one)[None, :]
    if n > 1:
        gaps = lam[:-1] - lam[1:]
        bound = nx.to(xp, degenerate_tol, ed) * (n * float(xp.finfo(ed).eps)) \
            * xp.max(xp.abs(lam))
        degenerate = xp.any(gaps <= bound)
    else:
        degenerate = xp.asarray(False, device=aac.device(a))
    return (q if q.dtype == gg.dtype else xp.astype(q, gg.dtype)), lam, degenerate


def soap_refresh(gg, q, v, axis: int, *, eigh_dtype: str = "float64"):
    r"""One re-sort and QR power step of factor ``axis``: columns of ``q`` (and slices of the
    second moment ``v`` along ``axis``) sorted by decreasing :math:`\mathrm{diag}(Q^\top GG Q)`,
    then :math:`Q \leftarrow \mathrm{qr}(GG\,Q)` with the signs fixed so that R's diagonal is
    :math:`\ge 0` (the array API leaves them unspecified; upstream keeps LAPACK's, which only
    flips columns: the trajectory is the same). Computed in ``eigh_dtype``; returns
    ``(Q, v)``."""
    xp = aac.array_namespace(gg, q, v)
    ed = _eigh_dtype(xp, eigh_dtype, gg, gg.dtype)
    m = gg if gg.dtype == ed else xp.astype(gg, ed)
    o = q if q.dtype == ed else xp.astype(q, ed)
    power = xp.matmul(m, o)
    est = xp.sum(o * power, axis=0)  # diag(o^T m o)
    order = xp.argsort(est, descending=True, stable=True)
    v = xp.take(v, order, axis=axis)
    qn, r = xp.linalg.qr(xp.take(power, order, axis=1))  # m @ o[:, order]
    d = xp.linalg.diagonal(r)
    one = xp.ones_like(d)
    qn = qn * xp.where(d < 0, -one, one)[None, :]
    return (qn if qn.dtype == gg.dtype else xp.astype(qn, gg.dtype)), v


def _select(xp, cond, then, otherwise):
    """``then()`` where the 0-d bool ``cond`` holds, else ``otherwise()`` (each returns an array
    or a nested tuple of arrays and None). A Python branch where ``cond`` is readable (the unused
    side is not computed), ``xp.where`` leaf by leaf otherwise (both computed): the same values
    either way."""
    if readable(cond):
        return then() if bool(cond) else otherwise()
    return _where(xp, cond, then(), otherwise())


def _where(xp, cond, a, b):
    if isinstance(a, tuple):
        return tuple(_where(xp, cond, x, y) for x, y in zip(a, b, strict=True))
    return None if a is None else xp.where(cond, a, b)


def _report(degenerate, dims, on_degenerate: str) -> None:
    if on_degenerate == "ignore" or not readable(degenerate):
        return
    k = int(float(degenerate))
    if k == 0:
        return
    msg = (f"soap_step: {k} of the statistics of a parameter with (merged) shape {dims} had a "
           f"degenerate spectrum at the first call's eigh (repeated eigenvalues, e.g. a "
           f"rank-deficient first gradient): the basis inside a repeated eigenvalue is the "
           f"eigensolver's choice, and SOAP's trajectory depends on it (state.degenerate={k}). "
           f"Raise degenerate_tol to report less, on_degenerate='ignore' to accept it")
    if on_degenerate == "raise":
        raise SoapDegenerateSpectrumError(msg)
    warnings.warn(msg, SoapDegenerateSpectrumWarning, stacklevel=3)


def soap_step(param, grad, state: SoapState, /, *, lr=3e-3, beta1=0.95, beta2=0.95,
              shampoo_beta=-1.0, eps=1e-8, weight_decay=0.01, precondition_frequency=10,
              max_precond_dim=10000, merge_dims=False, precondition_1d=False,
              normalize_grads=False, correct_bias=True, eigh_dtype="float64",
              degenerate_tol=1.0, on_degenerate="warn"):
    r"""One SOAP step (Vyas et al. 2024, Algorithm 3; nikhilvyas/SOAP ``SOAP.step``).

    With :math:`G` the gradient in the layout's shape (:func:`soap_layout`), :math:`Q_i` the
    bases, :math:`\tilde X = X \times_1 Q_1^\top \cdots \times_k Q_k^\top` the rotation
    (:func:`soap_project`) and :math:`\bar X` its inverse (:func:`soap_project_back`),
    :math:`t` the call number and :math:`s = t - 1` the Adam step:

    .. math::

        t = 1:&\quad GG_i \leftarrow (1-\beta_s)\, G_{(i)} G_{(i)}^\top,\quad
               Q_i = \mathrm{eigh}(GG_i + 10^{-30} I)\ \text{(decreasing)};\ \theta
               \text{ unchanged} \\
        t \ge 2:&\quad m \leftarrow \beta_1 m + (1-\beta_1)\tilde G,\quad
               v \leftarrow \beta_2 v + (1-\beta_2)\tilde G^2 \\
        &\quad u = \overline{m / (\sqrt v + \epsilon)}\quad
               (u \leftarrow u / (10^{-30} + \mathrm{rms}(u)) \text{ with normalize\_grads}) \\
        &\quad \theta \leftarrow \theta - \eta_s u,\quad
               \eta_s = \mathrm{lr}\sqrt{1-\beta_2^s}/(1-\beta_1^s) \ (\mathrm{lr} \text{ without
               correct\_bias}),\quad
               \theta \leftarrow \theta - \mathrm{lr}\,\lambda\,\theta \\
        &\quad GG_i \leftarrow \mathrm{lerp}(GG_i, G_{(i)} G_{(i)}^\top, 1-\beta_s);\quad
               \text{if } s \bmod f = 0:\ \text{re-sort } Q_i, v;\
               Q_i \leftarrow \mathrm{qr}(GG_i Q_i) \\
        &\quad m \leftarrow \widetilde{\bar m}\ \text{(rotated back with the old bases, into the
               new)}

    Symbols: :math:`\beta_s` = shampoo_beta (beta2 when negative), :math:`\lambda` =
    weight_decay, :math:`f` = precondition_frequency; dimensions without a statistic keep the
    identity basis. The first moment is carried through every basis change (upstream rotates it
    back and forth every step; so does the reference).

    Defaults are upstream's (lr 3e-3, betas (0.95, 0.95), shampoo_beta -1, eps 1e-8, wd 0.01,
    frequency 10, max_precond_dim 10000, no merging, no 1-D statistics, no normalisation, bias
    correction), except ``eigh_dtype="float64"``: upstream casts to float32 for ``eigh`` and QR
    even for float64 parameters (profile ``upstream``; docs/conformance.md finding). Not
    supported: upstream's ``data_format="channels_last"`` (permute NHWC to NCHW before the step)
    and its retry of a failed float32 ``eigh`` in float64.
    Degenerate spectra: see the module docstring (``degenerate_tol``, ``on_degenerate``).

    Returns ``(new_param, new_state)``; the inputs are not modified.
    """
    op = "soap_step"
    check_hparams(op, SOAP_HPARAMS, (lr, beta1, beta2, shampoo_beta, eps, weight_decay,
                                     precondition_frequency, max_precond_dim, merge_dims,
                                     precondition_1d, normalize_grads, correct_bias, eigh_dtype,
                                     degenerate_tol, on_degenerate))
    _int_param(op, "precondition_frequency", precondition_frequency)
    _int_param(op, "max_precond_dim", max_precond_dim)
    if not isinstance(state, SoapState):
        msg = (f"{op}: state is a {type(state).__name__}, not a SoapState; make it with "
               f"soap_init")
        raise TypeError(msg)
    for field in ("gg", "q"):
        if not isinstance(getattr(state, field), tuple):
            msg = (f"{op}: state.{field} must be a tuple (one entry per dimension), got "
                   f"{type(getattr(state, field)).__name__}; make the state with soap_init")
            raise TypeError(msg)
    arrays = {"param": param, "grad": grad, "state.exp_avg": state.exp_avg,
              "state.exp_avg_sq": state.exp_avg_sq}
    for field in ("gg", "q"):
        arrays.update({f"state.{field}[{i}]": s for i, s in enumerate(getattr(state, field))
                       if s is not None})
    moments = [k for k in arrays if k.startswith("state.")]
    xp, pdtype, dtype = check_arrays(op, arrays, same_shape=["grad", "state.exp_avg",
                                                             "state.exp_avg_sq"],
                                     state_dtype_names=moments)
    dims, active = soap_layout(param.shape, max_precond_dim=max_precond_dim,
                               merge_dims=merge_dims, precondition_1d=precondition_1d)
    want = [(n, n) if a else None for n, a in zip(dims, active, strict=True)]
    for field in ("gg", "q"):
        got = [None if s is None else tuple(s.shape) for s in getattr(state, field)]
        if got != want:
            msg = (f"{op}: state.{field} has shapes {got}; a parameter of shape "
                   f"{tuple(param.shape)} with max_precond_dim={max_precond_dim}, "
                   f"merge_dims={merge_dims}, precondition_1d={precondition_1d} needs {want} "
                   f"(make the state with soap_init and the same settings)")
            raise ValueError(msg)
    check_count(op, xp, state.count)
    if any(active):
        la = getattr(xp, "linalg", None)
        missing = [f for f in ("eigh", "qr") if la is None or not hasattr(la, f)]
        if missing:
            msg = (f"{op}: the namespace {xp.__name__} has no linalg.{missing[0]}, which SOAP's "
                   f"eigenbasis needs; run the step on NumPy blocks (docs/backends.md, SOAP on "
                   f"Dask)")
            raise TypeError(msg)
    check_finite(op, "grad", grad)

    sd = nx.scalar_dtype(xp, param, dtype)
    c = nx.caster(xp, dtype)
    count, t = nx.advance(xp, state.count, sd)
    first = state.count == 0
    refresh = (state.count % precondition_frequency == 0) & ~first
    s = xp.maximum(t - 1.0, xp.ones_like(t))  # the Adam step (clamped: t = 1 takes no step)
    if isinstance(shampoo_beta, (int, float)):
        sb = shampoo_beta if shampoo_beta >= 0 else beta2
    else:  # a 0-d array (traced under jit): negative means beta2
        b = nx.as_scalar(xp, shampoo_beta, sd, param)
        sb = xp.where(b >= 0, b, nx.as_scalar(xp, beta2, sd, param))
    g = xp.reshape(grad if grad.dtype == dtype else xp.astype(grad, dtype), dims)
    p = param if param.dtype == dtype else xp.astype(param, dtype)
    qs = state.q

    def adam():
        m0 = xp.reshape(state.exp_avg, dims)
        gt = soap_project(g, qs)
        m = c(beta1) * m0 + c(1 - beta1) * gt
        v = c(beta2) * v0 + c(1 - beta2) * (gt * gt)
        u = soap_project_back(m / (xp.sqrt(v) + c(eps)), qs)
        if normalize_grads:
            u = u / (c(1e-30) + xp.sqrt(xp.mean(u * u)))
        size = lr
        if correct_bias:
            size = lr * xp.sqrt(nx.bias_correction(xp, beta2, s)) / nx.bias_correction(xp,
                                                                                       beta1, s)
        p1 = p - c(size) * xp.reshape(u, param.shape)
        decay = decoupled_decay_factor(weight_decay)
        if decay is not None:  # after the update, with lr (upstream: p.add_(p, -lr*wd))
            p1 = p1 * c(decay(lr, weight_decay))
        return p1, soap_project_back(m, qs), v

    v0 = xp.reshape(state.exp_avg_sq, dims)
    p_new, m_orig, v = _select(xp, first, lambda: (p, xp.reshape(state.exp_avg, dims), v0), adam)

    w = c(1 - sb) if isinstance(sb, (int, float)) else nx.to(xp, 1 - sb, dtype)
    gg = tuple(None if a is None else a + w * (_statistic(xp, g, i) - a)
               for i, a in enumerate(state.gg))

    def eigen():
        out = [None if a is None else soap_eigenbasis(a, eigh_dtype=eigh_dtype,
                                                      degenerate_tol=degenerate_tol)
               for a in gg]
        k = sum(xp.astype(o[2], sd) for o in out if o is not None)
        return tuple(None if o is None else o[0] for o in out), xp.reshape(k, ())

    def power():
        qn, vn = [], v
        for i, (a, q) in enumerate(zip(gg, qs, strict=True)):
            if a is None:
                qn.append(None)
                continue
            qi, vn = soap_refresh(a, q, vn, i, eigh_dtype=eigh_dtype)
            qn.append(qi)
        return tuple(qn), vn

    q_new, degenerate = qs, state.degenerate
    if any(active):
        q_new, v = _select(xp, refresh, power, lambda: (qs, v))
        q_new, degenerate = _select(xp, first, eigen, lambda: (q_new, state.degenerate))
    m_new = soap_project(m_orig, q_new)
    if readable(first) and bool(first):
        _report(degenerate, dims, on_degenerate)
    new = SoapState(count, xp.reshape(m_new, param.shape), xp.reshape(v, param.shape), gg,
                    tuple(q_new), degenerate)
    return finish(xp, p_new, pdtype), new


_UPSTREAM = dict(eigh_dtype="float32")

SOAP = OptimizerSpec(
    name="soap", title="SOAP", init=soap_init, step=soap_step, state_type=SoapState,
    hparams=SOAP_HPARAMS, elementwise=False, coupling="tensor",
    paper="Vyas et al., SOAP: Improving and Stabilizing Shampoo using Adam, arXiv:2409.11321, "
          "2024 (Algorithm 3)",
    summary="Adam in the eigenbasis of Shampoo's per-dimension statistics; eigh on the first "
            "call (which only accumulates), then a re-sort and one QR power step every k steps.",
    profiles={
        # the reference's own settings (eigh and QR in float64): the only profile with goldens,
        # since upstream's float32 cast has no exact golden (finding S1)
        "reference": Profile("reference", {"eigh_dtype": "float64"},
                             "adaptive_ref.optimizers.soap (this module)",
                             "eigh and QR in the parameter's float64; the goldens' profile"),
        "upstream": Profile("upstream", _UPSTREAM,
                            "nikhilvyas/SOAP soap.py SOAP.step, update_preconditioner, "
                            "get_orthogonal_matrix, get_orthogonal_matrix_QR (commit "
                            "a1e553530fde97d0e6b307d7c82ac6d38b072340)",
                            "eigh and QR on GG.float()/Q.float(), cast back; GG is created with "
                            "torch's default dtype, so float64 parameters need "
                            "torch.set_default_dtype(torch.float64) upstream (else lerp_ raises "
                            "a dtype error); data_format='channels_last' is not modelled"),
    },
)
