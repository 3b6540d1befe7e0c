"""Inputs shared by the fused-path tests (numba and CuPy): knob combos, cases, exact equality.

Equality is exact: the same bits (+0 and -0 differ), except that NaN equals NaN whatever its
payload (a NaN's payload carries no meaning); same dtype, same per-element operations in the same
order, same scalars. Inputs are drawn across magnitudes 1e-30..1e15 with zeros, subnormals, infs
and NaNs, so overflow and NaN propagation must match too. Knob settings come from a covering
list per optimizer (every knob value, most pairs), not all combinations: each combination
compiles its own kernel (~0.3 s).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import strategies as st

import adaptive_ref as ar

_LOG = lambda lo, hi: st.floats(lo, hi).map(lambda e: 10.0 ** e)  # noqa: E731
LR = _LOG(-4, -1)
WD = _LOG(-4, -1)
BETA = st.one_of(st.sampled_from([0.9, 0.999, 0.0, 0.5]), st.floats(0.0, 0.9999))
EPS = st.one_of(st.just(0.0), _LOG(-12, -3))
POS_EPS = _LOG(-12, -3)

# Per optimizer: the init keywords a combo needs, and covering knob combos. A value of WD/LR/...
# (a strategy) is drawn; plain values are used as given.
COMBOS = {
    "adam": [
        dict(),
        dict(eps_placement="hat", amsgrad=True, amsgrad_max_over="raw", maximize=True,
             weight_decay=WD, eps_root=POS_EPS),
        dict(bias_correction=False, amsgrad=True, amsgrad_max_over="corrected",
             weight_decay=WD, weight_decay_mode="decoupled"),
        dict(eps_placement="hat", bias_correction=False, amsgrad=True,
             amsgrad_max_over="corrected", maximize=True, weight_decay=WD,
             weight_decay_mode="decoupled", eps_root=POS_EPS),
        dict(amsgrad=True, amsgrad_max_over="corrected", weight_decay=WD, eps_root=POS_EPS),
        dict(bias_correction=False, amsgrad=True, maximize=True, eps=EPS),
    ],
    "adamw": [
        dict(),
        dict(decay_scaling="schedule", schedule_multiplier=st.floats(0, 1), amsgrad=True,
             eps_placement="hat"),
        dict(weight_decay=0.0, maximize=True, bias_correction=False),
    ],
    "sgd": [
        dict(weight_decay=WD),
        dict(momentum=st.floats(0.01, 0.99), dampening=st.floats(0, 1), maximize=True),
        dict(momentum=0.9, nesterov=True, lr_placement="inside", weight_decay=WD),
        dict(momentum=st.floats(0.01, 0.99), dampen_first_step=True, lr_placement="inside",
             dampening=st.floats(0, 1)),
    ],
    "adagrad": [
        dict(),
        dict(eps_placement="inside", lr_decay=WD, weight_decay=WD, maximize=True, eps=EPS),
        dict(maximize=True, lr_decay=WD, eps=POS_EPS),
    ],
    "rmsprop": [
        dict(),
        dict(centered=True, bias_correction=True, eps_placement="inside",
             momentum=st.floats(0.01, 0.99), alpha=BETA.filter(lambda b: b > 0)),
        dict(momentum=0.9, nesterov=True, lr_placement="inside", maximize=True, weight_decay=WD),
        dict(centered=True, momentum=0.5, nesterov=True, eps=EPS),
    ],
    "adamax": [
        dict(),
        dict(eps_placement="outside", weight_decay=WD, maximize=True, eps=POS_EPS),
    ],
    "nadam": [
        dict(),
        dict(momentum_schedule="constant", weight_decay=WD, weight_decay_mode="decoupled",
             maximize=True),
        dict(weight_decay=WD, momentum_decay=_LOG(-4, -1)),
    ],
    "radam": [
        dict(),
        dict(eps_placement="outside", threshold_inclusive=True, eps_root=POS_EPS,
             weight_decay=WD, weight_decay_mode="decoupled", threshold=st.floats(4, 8)),
        dict(eps_root=POS_EPS, weight_decay=WD, maximize=True),
    ],
}
INIT_KNOBS = {"amsgrad", "centered", "momentum"}
NAMES = sorted(COMBOS)


def _init_fn(name):
    return getattr(ar, f"{name}_init")


def _magnitudes(rng, n, dtype, positive=False):
    mag = 10.0 ** rng.uniform(-30, 15, n)
    x = mag * (1.0 if positive else rng.choice([-1.0, 1.0], n))
    kind = rng.integers(0, 30, n)
    x[kind < 3] = 0.0
    tiny = np.finfo(dtype).smallest_subnormal
    x[(kind == 3) | (kind == 4)] = tiny * rng.integers(1, 100, ((kind == 3) | (kind == 4)).sum())
    x[kind == 5] = np.inf if positive else np.inf * rng.choice([-1.0, 1.0], (kind == 5).sum())
    x[kind == 6] = np.nan
    with np.errstate(over="ignore"):
        return x.astype(dtype)


@st.composite
def cases(draw, name, dtype):
    combo = draw(st.sampled_from(COMBOS[name]))
    kw = {k: (draw(v) if isinstance(v, st.SearchStrategy) else v) for k, v in combo.items()}
    kw.setdefault("lr", draw(LR))
    seed = draw(st.integers(0, 2**32 - 1))
    count = draw(st.one_of(st.integers(0, 30), st.integers(0, 2**40)))
    shape = draw(st.sampled_from([(), (0,), (7,), (3, 5), (33,)]))
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    p = _magnitudes(rng, n, dtype).reshape(shape)
    g = _magnitudes(rng, n, dtype).reshape(shape)
    init_kw = {k: kw[k] for k in INIT_KNOBS if k in kw}
    state = _init_fn(name)(p, **init_kw)
    fields = {}
    for f, value in zip(state._fields, state, strict=True):
        if f == "count":
            fields[f] = np.asarray(count, dtype=value.dtype)
        elif value is None or f == "mu_product":
            fields[f] = value
        else:  # second moments, sums and maxima are >= 0; momenta have any sign
            pos = f in ("nu", "sum", "nu_max") or (name == "adamax" and f == "nu")
            fields[f] = _magnitudes(rng, n, dtype, positive=pos).reshape(shape)
    if name == "nadam":
        fields["mu_product"] = np.asarray(draw(st.floats(0.0, 0.999)))
    return p, g, type(state)(**fields), kw


def _same(ref, got):
    """Equal bits, dtypes and shapes. Types may differ for 0-d values only: the reference on NumPy
    returns some 0-d results as NumPy scalars (a ufunc on 0-d arrays returns a scalar); the fused
    path returns 0-d arrays."""
    (rp, rs), (fp, fs) = ref, got
    assert type(fs) is type(rs)
    assert isinstance(fp, np.ndarray)
    assert fp.dtype == rp.dtype and fp.shape == rp.shape
    assert _bits_equal(fp, rp), "param differs"
    for f, a, b in zip(rs._fields, rs, fs, strict=True):
        if a is None:
            assert b is None, f
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f
        assert _bits_equal(a, b), f"state.{f} differs"


def _bits_equal(a, b) -> bool:
    """Same bits (so +0 and -0 differ), except that any NaN equals any NaN."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        return False
    it = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    return bool(np.array_equal(a[~na].view(it), b[~nb].view(it)))


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)
