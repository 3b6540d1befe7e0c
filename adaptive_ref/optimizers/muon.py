r"""Muon: momentum orthogonalised by a Newton–Schulz iteration, with its conventions as knobs.

Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
(https://kellerjordan.github.io/posts/muon/, code: KellerJordan/Muon).
Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982, 2025 (the RMS-matching scale
0.2·sqrt(max(rows, cols)) and decoupled weight decay).

Not elementwise: the step of a 2-D parameter replaces its (Nesterov) momentum by an approximately
orthogonal matrix computed with five matmul-only iterations of a quintic polynomial
(:func:`newton_schulz`). Every operation is in the array API (``matmul``, ``matrix_transpose``,
``sum``, ``sqrt``), so the step runs on NumPy, array-api-strict, torch, JAX (under ``jit``: the
norm is a 0-d array, no host synchronisation), CuPy and Dask. Only 2-D parameters take a Muon
step; which leaves of a model go to Muon and which to an AdamW fallback is a tree-level rule
(:mod:`adaptive_ref.routing`, :data:`ROUTES`).

bfloat16. ``ns_dtype="bfloat16"`` (torch's and upstream's forced Newton–Schulz dtype) uses the
namespace's native ``bfloat16`` (torch, JAX). NumPy, array-api-strict, Dask and CuPy have none:
there it raises :class:`BFloat16Unavailable` (a ``TypeError`` naming ``ns_dtype`` and the
namespaces that have it). The reference does not emulate bfloat16 rounding: torch's bfloat16
matmul accumulates in float32 and rounds once per product, which an elementwise emulation would
not reproduce either, so an emulation would be a fourth convention, not torch's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat as aac

from .. import _numerics as nx
from .._common import (
    FACTOR_PRECISION,
    check_hparams,
    decoupled_decay_factor,
    finish,
    init_zeros,
    prelude,
    scalars,
)
from .._spec import REQUIRED, HParam, OptimizerSpec, Profile
from ..routing import Routing

__all__ = ["MuonState", "muon_init", "muon_step", "newton_schulz", "resolve_ns_dtype",
           "shape_factor", "BFloat16Unavailable", "NS_COEFFICIENTS", "MUON_HPARAMS", "MUON",
           "ROUTES"]

#: (a, b, c) of the quintic X <- aX + b(XX^T)X + c(XX^T)^2 X (KellerJordan/Muon muon.py)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_DTYPES = ("float64", "float32", "bfloat16", "param")
_BF16_NAMESPACES = "torch, JAX"


class BFloat16Unavailable(TypeError):
    """``ns_dtype="bfloat16"`` on a namespace without a bfloat16 dtype."""


class MuonState(NamedTuple):
    """State of Muon.

    count: 0-d integer array, the number of steps taken (0 after init).
    mu:    the momentum buffer, the parameter's shape, the state dtype (an EMA of the gradients,
           or their geometric sum with ``momentum_form="sum"``).
    """

    count: Any
    mu: Any


def muon_init(param, /, *, state_dtype=None) -> MuonState:
    """A zero momentum buffer of ``param``'s shape; ``state_dtype`` (default: the param's)."""
    _, z, count = init_zeros("muon_init", param, state_dtype)
    return MuonState(count, z)


MUON_HPARAMS = (
    HParam("lr", 0.02, "learning rate (in units of spectral norm per update before the shape "
           "scale)", low=0.0),
    HParam("momentum", 0.95, "momentum coefficient mu", low=0.0, high=1.0, high_open=True),
    HParam("weight_decay", 0.0, "decoupled weight decay: p <- p*(1 - lr*wd) before the update "
           "(lr before the shape scale)", low=0.0),
    HParam("momentum_form", "ema", "the buffer: 'ema': m <- mu*m + (1-mu)*g (torch lerp_, "
           "upstream, optax); 'sum': m <- mu*m + g (Keras); 'ema_bias_corrected': the EMA, used "
           "as m/(1-mu^t) (optax)", kind="choice", choices=("ema", "sum", "ema_bias_corrected"),
           knob=True),
    HParam("nesterov", "lerp", "the direction fed to Newton-Schulz: 'lerp': (1-mu)*g + mu*m "
           "(torch, upstream: g.lerp(m, mu)); 'nadam': mu*m/(1-mu^(t+1)) + (1-mu)*g/(1-mu^t) "
           "(optax, NAdam-style bias-corrected); 'add': g + mu*m (Keras); 'none': m",
           kind="choice", choices=("lerp", "nadam", "add", "none"), knob=True),
    HParam("ns_steps", 5, "Newton-Schulz iterations (a Python int >= 1)", low=1.0),
    HParam("ns_a", NS_COEFFICIENTS[0], "Newton-Schulz coefficient a (of X)"),
    HParam("ns_b", NS_COEFFICIENTS[1], "Newton-Schulz coefficient b (of (XX^T)X)"),
    HParam("ns_c", NS_COEFFICIENTS[2], "Newton-Schulz coefficient c (of (XX^T)^2 X)"),
    HParam("ns_dtype", "float64", "dtype of the Newton-Schulz iteration: 'bfloat16' (torch and "
           "upstream force it; only namespaces with bfloat16: torch, JAX), 'float32', 'float64' "
           "(where the namespace has it on the device, else the parameter's dtype), 'param' "
           "(the state dtype: optax, Keras)", kind="choice", choices=NS_DTYPES, knob=True),
    HParam("ns_rounding", "line", "where a bfloat16 iteration rounds (no effect in float32/64): "
           "'line': once per line, X X^T, bA + cA^2 and aX + BX each float32 arithmetic rounded "
           "once (torch: @ and addmm); 'op': after every operation, b*A, c*A, (cA)A, the sums, "
           "a*X, B X (upstream's b * A + c * A @ A)", kind="choice", choices=("line", "op"),
           knob=True),
    HParam("scale_dtype", "param", "where the shape scale multiplies the orthogonalised update: "
           "'param': with lr, in the parameter dtype (torch, optax, Keras); 'ns': on the update "
           "in the Newton-Schulz dtype (upstream: update *= max(1, rows/cols)**0.5 on bfloat16)",
           kind="choice", choices=("param", "ns"), knob=True),
    HParam("eps", 1e-7, "normalisation guard of X/||X||_F before the iteration", low=0.0),
    HParam("eps_form", "add", "'add': X/(||X||_F + eps) (upstream, optax, Keras); 'clamp': "
           "X/max(||X||_F, eps) (torch)", kind="choice", choices=("add", "clamp"), knob=True),
    HParam("norm_precision", "ns_dtype", "dtype of the Frobenius norm that normalises X: "
           "'ns_dtype' (torch, optax, upstream) or 'float32' (Keras on JAX: ops.norm casts to "
           "result_type(x.dtype, float), float32 even for float64 x)", kind="choice",
           choices=("ns_dtype", "float32"), knob=True),
    HParam("shape_scale", "fan_ratio", "factor on lr per matrix: 'fan_ratio': "
           "sqrt(max(1, fan_out/fan_in)) (torch, upstream, optax; fans read by 'layout'); 'rms': "
           "rms_scale*sqrt(max(rows, cols)) (Keras rms_rate, torch match_rms_adamw, optax "
           "consistent_rms; Liu et al. 2025); 'none': 1", kind="choice",
           choices=("fan_ratio", "rms", "none"), knob=True),
    HParam("layout", "out_in", "which axis of a 2-D parameter is the output: 'out_in' "
           "(rows = fan_out: torch Linear.weight, upstream) or 'in_out' (rows = fan_in: optax, "
           "x @ W); only 'fan_ratio' reads it", kind="choice", choices=("out_in", "in_out"),
           knob=True),
    HParam("rms_scale", 0.2, "the constant of shape_scale='rms' (Keras rms_rate)", low=0.0),
    FACTOR_PRECISION,
)


def resolve_ns_dtype(xp, name: str, like_dtype, like=None):
    """The dtype that ``ns_dtype=name`` stands for on namespace ``xp`` (``like_dtype``: the
    state dtype, used by ``"param"`` and by ``"float64"`` where float64 is missing)."""
    if name == "param":
        return like_dtype
    if name == "float32":
        return xp.float32
    if name == "float64":
        return nx.scalar_dtype(xp, like, like_dtype)
    if name == "bfloat16":
        bf16 = getattr(xp, "bfloat16", None)
        if bf16 is None:
            msg = (f"ns_dtype='bfloat16': the namespace {getattr(xp, '__name__', xp)} has no "
                   f"bfloat16 (namespaces with one: {_BF16_NAMESPACES}); pass torch or JAX "
                   f"arrays, or ns_dtype='float32' / 'float64' / 'param'")
            raise BFloat16Unavailable(msg)
        return bf16
    msg = (f"ns_dtype={name!r} is outside the accepted range: one of "
           f"{', '.join(map(repr, NS_DTYPES))}")
    raise ValueError(msg)


def _mT(xp, x):
    return xp.matrix_transpose(x) if hasattr(xp, "matrix_transpose") else xp.permute_dims(x, (1, 0))


def _accumulation_dtype(xp, dt):
    """float32 for bfloat16 (what torch's and XLA's bfloat16 kernels accumulate in), else dt."""
    bf16 = getattr(xp, "bfloat16", None)
    return xp.float32 if bf16 is not None and dt == bf16 else dt


def _norm(xp, x, acc, out):
    """Frobenius norm of x as a 0-d array of dtype ``out``, computed in ``acc`` (x cast to it)."""
    y = x if acc == x.dtype else xp.astype(x, acc)
    n = xp.sqrt(xp.sum(y * y))
    return n if acc == out else xp.astype(n, out)


def newton_schulz(x, /, *, steps: int = 5, coefficients=NS_COEFFICIENTS, eps=1e-7,
                  eps_form: str = "add", dtype: str = "param",
                  norm_precision: str = "ns_dtype", rounding: str = "line"):
    r"""The quintic Newton–Schulz iteration of Muon on a 2-D array; returns it in ``dtype``.

    .. math::

        X_0 &= \tilde G / (\lVert \tilde G\rVert_F + \epsilon)
        \quad(\text{or } / \max(\lVert \tilde G\rVert_F, \epsilon)),
        \qquad \tilde G = G \text{ if rows} \le \text{cols else } G^\top \\
        A_k &= X_k X_k^\top, \qquad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k, \qquad k < s

    and the result is :math:`X_s` (transposed back). Transposing makes :math:`A` the smaller
    Gram matrix; the map commutes with transposition, so it changes rounding only. On the
    singular values :math:`\sigma` of :math:`X_0` (all :math:`\le 1`) it applies
    :math:`p(\sigma) = a\sigma + b\sigma^3 + c\sigma^5` ``steps`` times; with (a, b, c) =
    (3.4445, -4.7750, 2.0315) and 5 steps every :math:`\sigma` not below about 2e-3 ends in
    about [0.68, 1.13], not at 1 (Jordan et al.: "US'V^T with S' ~ Uniform(0.5, 1.5)").

    ``coefficients`` are Python numbers or 0-d arrays; ``dtype`` is an ``ns_dtype`` name
    (:func:`resolve_ns_dtype`: ``"param"`` = x's dtype, ``"float32"``, ``"float64"``,
    ``"bfloat16"``).
    In bfloat16 each line above is float32 arithmetic on bfloat16 values, rounded to bfloat16
    once (torch's and XLA's bfloat16 matmul and addmm accumulate in float32); the norm is summed
    in float32 and rounded once (``Tensor.norm``). ``rounding="op"`` rounds after every
    operation instead (upstream's ``b * A + c * A @ A``). ``norm_precision="float32"`` computes
    the norm in float32 whatever the dtype (Keras).
    """
    xp = aac.array_namespace(x)
    if x.ndim != 2:
        msg = f"newton_schulz: x must be a 2-D array, got shape {tuple(x.shape)}"
        raise ValueError(msg)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        msg = f"newton_schulz: steps must be a Python int >= 1, got {steps!r}"
        raise ValueError(msg)
    if eps_form not in ("add", "clamp"):
        msg = (f"newton_schulz: eps_form={eps_form!r} is outside the accepted range: 'add' or "
               f"'clamp'")
        raise ValueError(msg)
    dt = resolve_ns_dtype(xp, dtype, x.dtype, x)
    acc = _accumulation_dtype(xp, dt)
    up = (lambda v: v) if acc == dt else (lambda v: xp.astype(v, acc))  # noqa: E731
    down = (lambda v: v) if acc == dt else (lambda v: xp.astype(v, dt))  # noqa: E731
    c = lambda v: nx.to(xp, v, acc)  # noqa: E731  (scalar -> accumulation dtype)
    a, b, cc = (c(v) for v in coefficients)
    y = x if x.dtype == dt else xp.astype(x, dt)
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        y = _mT(xp, y)
    nd = xp.float32 if norm_precision == "float32" else dt  # where the norm and eps meet
    norm = _norm(xp, y, xp.float32 if norm_precision == "float32" else acc, nd)
    guard = (xp.asarray(float(eps), dtype=nd, device=aac.device(y))
             if isinstance(eps, (int, float)) else xp.astype(eps, nd))
    den = norm + guard if eps_form == "add" else xp.maximum(norm, guard)
    y = down(up(y) / xp.astype(den, acc))
    r = (lambda v: v) if rounding == "line" else (lambda v: up(down(v)))  # noqa: E731
    for _ in range(steps):  # float32 arithmetic on bfloat16 values, rounded per line or op
        ya = up(y)
        gram = up(down(xp.matmul(ya, _mT(xp, ya))))
        poly = up(down(r(b * gram) + r(xp.matmul(r(cc * gram), gram))))
        y = down(r(a * ya) + r(xp.matmul(poly, ya)))
    return y if wide else _mT(xp, y)


def muon_direction(xp, g, mu_old, t, momentum, momentum_form: str, nesterov: str, c):
    """``(m, D)``: the new momentum buffer and the direction fed to Newton-Schulz (the first
    two lines of :func:`muon_step`'s math); ``t`` the 1-based step as a 0-d array, ``c`` casts
    a scalar to the compute dtype. Also the error model's source of D
    (:mod:`adaptive_ref.conformance.error_model`)."""
    mu = momentum
    m = c(mu) * mu_old
    m += g if momentum_form == "sum" else c(1 - mu) * g
    if nesterov == "nadam":  # reads m and g with their own corrections, not m_hat
        return m, (c(mu) * (m / c(nx.bias_correction(xp, mu, t + 1.0)))
                   + c(1 - mu) * (g / c(nx.bias_correction(xp, mu, t))))
    m_hat = (m / c(nx.bias_correction(xp, mu, t)) if momentum_form == "ema_bias_corrected"
             else m)
    if nesterov == "lerp":
        return m, c(1 - mu) * g + c(mu) * m_hat
    if nesterov == "add":
        return m, g + c(mu) * m_hat
    return m, m_hat


def shape_factor(shape, shape_scale: str = "fan_ratio", layout: str = "out_in", rms_scale=0.2):
    """The factor on lr for a 2-D parameter of ``shape`` (a Python float, or ``rms_scale`` times
    one when ``rms_scale`` is a 0-d array)."""
    rows, cols = shape
    if shape_scale == "none":
        return 1.0
    if shape_scale == "rms":
        return rms_scale * math.sqrt(max(rows, cols))
    fan_out, fan_in = (rows, cols) if layout == "out_in" else (cols, rows)
    return math.sqrt(max(1.0, fan_out / fan_in))


def muon_step(param, grad, state: MuonState, /, *, lr=0.02, momentum=0.95, weight_decay=0.0,
              momentum_form="ema", nesterov="lerp", ns_steps=5, ns_a=NS_COEFFICIENTS[0],
              ns_b=NS_COEFFICIENTS[1], ns_c=NS_COEFFICIENTS[2], ns_dtype="float64", eps=1e-7,
              ns_rounding="line", scale_dtype="param", eps_form="add",
              norm_precision="ns_dtype", shape_scale="fan_ratio", layout="out_in", rms_scale=0.2,
              factor_precision="float64"):
    r"""One Muon step on a 2-D parameter (Jordan et al. 2024; Liu et al. 2025).

    .. math::

        m_t &= \mu m_{t-1} + (1-\mu) g \;\text{('ema')} \quad\text{or}\quad
               \mu m_{t-1} + g \;\text{('sum')}, \qquad
        \hat m_t = m_t / (1-\mu^t) \text{ ('ema\_bias\_corrected') else } m_t \\
        D_t &= (1-\mu) g + \mu \hat m_t \;\text{('lerp')},\;
               \frac{\mu\, m_t}{1-\mu^{t+1}} + \frac{(1-\mu)\, g}{1-\mu^t} \;\text{('nadam')},\;
               g + \mu \hat m_t \;\text{('add')},\; \hat m_t \;\text{('none')} \\
        O_t &= \mathrm{NS}^{(a,b,c)}_{s}(D_t;\ \epsilon)
               \quad\text{(newton\_schulz, in ns\_dtype)} \\
        \theta_t &= (1 - \mathrm{lr}\,\lambda)\,\theta_{t-1} - \mathrm{lr}\; r(\text{shape})\; O_t

    with the shape scale :math:`r = \sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}`
    ('fan_ratio'; ``layout`` says whether rows are fan_out ('out_in') or fan_in ('in_out')),
    :math:`\rho\sqrt{\max(\text{rows}, \text{cols})}` ('rms', :math:`\rho` = rms_scale) or 1.

    Symbols: lr, momentum = :math:`\mu`, weight_decay = :math:`\lambda`, (ns_a, ns_b, ns_c) =
    (a, b, c), ns_steps = s, eps = :math:`\epsilon`.

    Defaults are upstream's (KellerJordan/Muon): lr 0.02, momentum 0.95, no decay, 'ema' with
    'lerp' Nesterov, 5 steps of (3.4445, -4.7750, 2.0315), eps 1e-7 added, sqrt(max(1,
    rows/cols)) with rows = fan_out, except ``ns_dtype="float64"`` (upstream: bfloat16): the
    reference computes the iteration exactly enough to serve as an oracle.
    Profiles: ``torch`` (torch.optim.Muon: lr 1e-3, wd 0.1, forced bfloat16, eps clamped),
    ``optax`` (optax.contrib.muon: bias-corrected EMA, NAdam-style Nesterov, eps 1e-8, the
    in x out layout), ``keras`` (keras.optimizers.Muon: sum momentum, g + mu*m, scale
    0.2*sqrt(max(rows, cols)), float32 norm, wd 0.004), ``upstream`` (bfloat16 rounded after
    every operation, the shape scale on the bfloat16 update, the defaults otherwise).
    Non-2-D leaves are not Muon's: :func:`adaptive_ref.routing.make_routed` sends them to the
    AdamW fallback of each profile (:data:`ROUTES`).

    Returns ``(new_param, new_state)``; the inputs are not modified.
    """
    check_hparams("muon_step", MUON_HPARAMS, (lr, momentum, weight_decay, momentum_form,
                  nesterov, ns_steps, ns_a, ns_b, ns_c, ns_dtype, ns_rounding, scale_dtype, eps,
                  eps_form, norm_precision, shape_scale, layout, rms_scale, factor_precision))
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int):
        msg = f"muon_step: ns_steps must be a Python int >= 1, got {ns_steps!r}"
        raise TypeError(msg)
    pre = prelude("muon_step", param, grad, state, MuonState, "muon_init")
    xp, dtype = pre.xp, pre.dtype
    if param.ndim != 2:
        msg = (f"muon_step: param has shape {tuple(param.shape)}; Muon's step is defined for 2-D "
               f"matrices only. Send other leaves to the AdamW fallback: "
               f"adaptive_ref.routing.make_routed / adaptive_ref.optimizers.muon.ROUTES")
        raise ValueError(msg)
    resolve_ns_dtype(xp, ns_dtype, dtype, param)  # raise before any work
    fd = nx.factor_dtype(xp, pre.sdtype, pre.param_dtype, factor_precision)
    lr, momentum, weight_decay, eps, ns_a, ns_b, ns_c, rms_scale = scalars(
        xp, fd, param, lr, momentum, weight_decay, eps, ns_a, ns_b, ns_c, rms_scale)
    count, t = nx.advance(xp, state.count, fd)
    lr = nx.poison(xp, lr, state.count, t)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731  (scalar -> compute dtype)
    m, d = muon_direction(xp, pre.g, state.mu, t, momentum, momentum_form, nesterov, c)
    o = newton_schulz(d, steps=ns_steps, coefficients=(ns_a, ns_b, ns_c), eps=eps,
                      eps_form=eps_form, dtype=ns_dtype, norm_precision=norm_precision,
                      rounding=ns_rounding)
    scale = shape_factor(tuple(param.shape), shape_scale, layout, rms_scale)
    if scale_dtype == "ns":  # the update scaled in the iteration's dtype (upstream)
        acc = _accumulation_dtype(xp, o.dtype)
        o = xp.astype(xp.astype(o, acc) * nx.to(xp, scale, acc), o.dtype)
        scale = 1.0
    o = o if o.dtype == dtype else xp.astype(o, dtype)
    lr_eff = lr * scale
    p = pre.p
    decay = decoupled_decay_factor(weight_decay)
    if decay is not None:
        p = p * c(decay(lr, weight_decay))
    p_new = p - c(lr_eff) * o
    return finish(xp, p_new, pre.param_dtype), MuonState(count, m)


# ---- profiles -------------------------------------------------------------------------------
_TORCH = dict(lr=1e-3, momentum=0.95, weight_decay=0.1, momentum_form="ema", nesterov="lerp",
              ns_steps=5, ns_a=3.4445, ns_b=-4.7750, ns_c=2.0315, ns_dtype="bfloat16",
              ns_rounding="line", scale_dtype="param", eps=1e-7,
              eps_form="clamp", norm_precision="ns_dtype", shape_scale="fan_ratio",
              layout="out_in", rms_scale=0.2, factor_precision="float64")
_OPTAX = dict(_TORCH, lr=REQUIRED, weight_decay=0.0, momentum_form="ema_bias_corrected",
              nesterov="nadam", ns_dtype="param", eps=1e-8, eps_form="add", layout="in_out",
              factor_precision="param")
_KERAS = dict(_TORCH, lr=1e-3, weight_decay=0.004, momentum_form="sum", nesterov="add",
              ns_dtype="param", eps=1e-7, eps_form="add", norm_precision="float32",
              shape_scale="rms", factor_precision="param")
_UPSTREAM = dict(_TORCH, lr=0.02, weight_decay=0.0, eps_form="add", ns_rounding="op",
                 scale_dtype="ns")

MUON = OptimizerSpec(
    name="muon", title="Muon", init=muon_init, step=muon_step, state_type=MuonState,
    hparams=MUON_HPARAMS, elementwise=False, param_ndim=2, coupling="tensor",
    paper="Jordan et al., Muon: An optimizer for hidden layers in neural networks, 2024 "
          "(kellerjordan.github.io/posts/muon); Liu et al., Muon is Scalable for LLM Training, "
          "arXiv:2502.16982, 2025",
    summary="Momentum (optionally Nesterov) orthogonalised by a quintic Newton-Schulz iteration, "
            "scaled per matrix shape; 2-D parameters only (others: an AdamW fallback).",
    profiles={
        "torch": Profile("torch", _TORCH,
                         "torch/optim/_muon.py _single_tensor_muon, _zeropower_via_newtonschulz "
                         "(torch 2.13.0)",
                         "Newton-Schulz forced to bfloat16 (grad.bfloat16()); X/clamp(||X||, "
                         "eps); adjust_lr_fn='match_rms_adamw' is shape_scale='rms'; "
                         "non-2-D parameters are an error (route them: ROUTES['torch'])"),
        "optax": Profile("optax", _OPTAX,
                         "optax/contrib/_muon.py scale_by_muon, scale_by_shape, muon "
                         "(optax 0.2.8)",
                         "EMA with Adam bias correction, NAdam-style Nesterov; weights read as "
                         "in x out (MuonDimensionNumbers(reduction_axis=0, output_axis=1)); "
                         "consistent_rms=rho is shape_scale='rms', rms_scale=rho"),
        "keras": Profile("keras", _KERAS,
                         "keras/src/optimizers/muon.py Muon._muon_update_step, "
                         "zeropower_via_newtonschulz5, lr_adjust (keras 3.15.1)",
                         "m <- m + g + m*(mu - 1); rms_rate=None is shape_scale='none'; decay "
                         "p - p*wd*lr by _apply_weight_decay before the step"),
        "upstream": Profile("upstream", _UPSTREAM,
                            "KellerJordan/Muon muon.py muon_update, zeropower_via_newtonschulz5 "
                            "(commit 857d1adc159e098212f828d927460782d3da59e9)",
                            "bfloat16 Newton-Schulz; Nesterov via grad.lerp_ (overwrites the "
                            "gradient in place); 4-D conv weights flattened to (out, -1)"),
    },
)

#: The tree-level rule of each profile: which leaves take Muon's step and the AdamW fallback's
#: optimizer and settings for the rest (one :class:`adaptive_ref.routing.Routing` each).
ROUTES = {
    # torch.optim.Muon raises on non-2-D parameters; its docstring pairs it with torch AdamW
    "torch": Routing(fallback="adamw", fallback_profile="torch",
                     source="torch/optim/_muon.py Muon.__init__ (ndim != 2 is an error) and "
                            "its docstring example (torch 2.13.0)"),
    # optax.contrib.muon: 'muon' if x.ndim == 2 else 'adam' -> alias.adamw(b1, b2, eps=eps,
    # eps_root, weight_decay=adam_weight_decay (0), nesterov=True), Muon's lr and eps
    "optax": Routing(fallback="nadam", fallback_profile="optax",
                     fallback_settings={"weight_decay": 0.0, "weight_decay_mode": "decoupled"},
                     share=("lr", "eps"),
                     source="optax/contrib/_muon.py muon: param_labels, combine.partition "
                            "(optax 0.2.8)"),
    # keras Muon._should_use_adamw: ndim != 2, 'embedding' in the lower-cased path,
    # exclude_layers; _adamw_update_step: eps-hat Adam, adam_weight_decay 0.004
    "keras": Routing(fallback="adamw", fallback_profile="keras",
                     fallback_settings={"weight_decay": 0.004}, exclude=("embedding",),
                     share=("lr",),
                     source="keras/src/optimizers/muon.py Muon._should_use_adamw, "
                            "_adamw_update_step (keras 3.15.1)"),
    # MuonWithAuxAdam: use_muon groups; hidden matrices to Muon; embeddings, head, gains and
    # biases to adam_update (lr 3e-4, betas (0.9, 0.95), eps 1e-10, wd 0, decoupled decay)
    "upstream": Routing(fallback="adamw", fallback_profile="torch",
                        fallback_settings={"lr": 3e-4, "beta1": 0.9, "beta2": 0.95,
                                           "eps": 1e-10, "weight_decay": 0.0},
                        exclude=("embed", "head"),
                        source="KellerJordan/Muon muon.py MuonWithAuxAdam, adam_update "
                               "(commit 857d1adc)"),
}
