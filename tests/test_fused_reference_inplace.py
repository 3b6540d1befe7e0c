"""The reference Adam written without waste equals its functional form, bit for bit.

``adam_step`` evaluates its update with in-place operators on fresh buffers (``x = a * b;
x += c * d``) and, on large NumPy arrays, block by block (``adaptive_ref._blockwise``). Both
round exactly as the functional expression (``a * b + c * d``): the same IEEE operations on the
same operands, only the storage differs. This file keeps the functional text of the update (as it
was before the rewrite) and checks equality on NumPy (small arrays, and arrays larger than one
block, with and without blocking), on array-api-strict and on torch.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from fused_cases import _quiet, _same, cases
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptive_ref as ar
from adaptive_ref import _blockwise
from adaptive_ref import _numerics as nx
from adaptive_ref._common import finish, prelude, prepare_grad, scalars
from adaptive_ref.optimizers.adam import AdamState


def adam_functional(param, grad, state, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    eps_root=0.0, eps_placement="outside", bias_correction=True, amsgrad=False,
                    amsgrad_max_over="raw", maximize=False, weight_decay=0.0,
                    weight_decay_mode="coupled"):
    """The functional form of the reference Adam update (a new array per operation)."""
    zero = lambda x: isinstance(x, (int, float)) and x == 0  # noqa: E731
    coupled = weight_decay_mode == "coupled"
    decay = None if coupled or zero(weight_decay) else (lambda lr_, wd: 1 - lr_ * wd)
    pre = prelude("adam_step", param, grad, state, AdamState, "adam_init")
    xp, dtype, sd = pre.xp, pre.dtype, pre.sdtype
    lr, beta1, beta2, eps, eps_root, weight_decay = scalars(
        xp, sd, param, lr, beta1, beta2, eps, eps_root, weight_decay)
    p = pre.p
    g = prepare_grad(xp, pre.g, p, dtype, maximize=maximize, weight_decay=weight_decay,
                     coupled=coupled)
    if decay is not None:
        p = p * nx.to(xp, decay(lr, weight_decay), dtype)
    count, t = nx.advance(xp, state.count, sd)
    c = lambda v: nx.to(xp, v, dtype)  # noqa: E731
    mu = c(beta1) * state.mu + c(1 - beta1) * g
    nu = c(beta2) * state.nu + c(1 - beta2) * (g * g)
    if bias_correction:
        bc1 = nx.bias_correction(xp, beta1, t)
        bc2 = nx.bias_correction(xp, beta2, t)
    else:
        bc1 = bc2 = 1.0
    nu_max = None
    if amsgrad:
        if amsgrad_max_over == "raw":
            nu_max = xp.maximum(state.nu_max, nu)
            raw_v, corrected_v = nu_max, (nu_max / c(bc2) if bias_correction else nu_max)
        else:
            nu_hat = nu / c(bc2) if bias_correction else nu
            nu_max = xp.maximum(state.nu_max, nu_hat)
            raw_v, corrected_v = (nu_max * c(bc2) if bias_correction else nu_max), nu_max
    else:
        raw_v = nu
        corrected_v = nu / c(bc2) if bias_correction else nu
    if eps_placement == "outside":
        root = xp.sqrt(corrected_v + c(eps_root)) if not zero(eps_root) else xp.sqrt(corrected_v)
        m_hat = mu / c(bc1) if bias_correction else mu
        p_new = p - c(lr) * (m_hat / (root + c(eps)))
    else:
        root = xp.sqrt(raw_v + c(eps_root)) if not zero(eps_root) else xp.sqrt(raw_v)
        step_size = lr * xp.sqrt(bc2) / bc1 if bias_correction else lr
        p_new = p - c(step_size) * (mu / (root + c(eps)))
    return finish(xp, p_new, pre.param_dtype), AdamState(count, mu, nu, nu_max)


def _np(result):
    p, s = result
    conv = lambda x: None if x is None else np.asarray(x)  # noqa: E731
    return conv(p), type(s)(*[conv(x) for x in s])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@settings(max_examples=40)
@given(data=st.data())
def test_adam_equals_functional_form_on_numpy(dtype, data):
    p, g, state, kw = data.draw(cases("adam", dtype))
    _same(_np(_quiet(adam_functional, p, g, state, **kw)),
          _np(_quiet(ar.adam_step, p, g, state, **kw)))


@pytest.mark.parametrize("form", ["default", "blocked", "whole"])
@settings(max_examples=8)
@given(data=st.data())
def test_adam_large_arrays_blocked_and_whole(form, data):
    """Arrays of 2.5 blocks: the step as called (the fused kernel where numba is installed), its
    blocked ufunc evaluation and the unblocked one equal the functional form."""
    _, _, _, kw = data.draw(cases("adam", np.float32))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = 5 * _blockwise.BLOCK // 2 + 3
    p = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-20, 10, n)).astype(np.float32)
    state = ar.adam_init(p, amsgrad=kw.get("amsgrad", False))
    state = state._replace(count=np.asarray(3), mu=rng.standard_normal(n).astype(np.float32),
                           nu=np.abs(rng.standard_normal(n)).astype(np.float32))
    if state.nu_max is not None:
        state = state._replace(nu_max=state.nu * 1.5)
    want = _quiet(adam_functional, p, g, state, **kw)
    context = {"default": contextlib.nullcontext, "blocked": _blockwise.unfused,
               "whole": _blockwise.functional}[form]
    with context():
        got = _quiet(ar.adam_step, p, g, state, **kw)
    _same(_np(want), _np(got))


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@settings(max_examples=15)
@given(data=st.data())
def test_adam_equals_functional_form_on_other_backends(backend, data):
    mod = pytest.importorskip(backend)
    p, g, state, kw = data.draw(cases("adam", np.float32))
    conv = lambda x: None if x is None else mod.asarray(np.array(x))  # noqa: E731
    pb, gb = conv(p), conv(g)
    sb = type(state)(*[conv(x) for x in state])
    want = _np(_quiet(adam_functional, pb, gb, sb, **kw))
    got = _np(_quiet(ar.adam_step, pb, gb, sb, **kw))
    _same(want, got)


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "radam", "sgd", "adagrad",
                                  "rmsprop", "adamax"])
@settings(max_examples=6)
@given(data=st.data())
def test_blocked_reference_equals_whole_arrays_and_fused(name, data):
    """Large arrays (2.5 blocks): blocked = unblocked reference = fused kernel = the step as
    called (which hands such arrays to the fused kernel), bit for bit."""
    from fused_cases import INIT_KNOBS

    numba = pytest.importorskip("numba")  # noqa: F841
    from adaptive_ref import fused

    _, _, _, kw = data.draw(cases(name, np.float32))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = 5 * _blockwise.BLOCK // 2 + 3
    p = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-20, 10, n)).astype(np.float32)
    state = getattr(ar, f"{name}_init")(p, **{k: kw[k] for k in INIT_KNOBS if k in kw})
    state = state._replace(count=np.asarray(data.draw(st.integers(0, 20))), **{
        f: np.abs(rng.standard_normal(n)).astype(np.float32)
        for f, x in zip(state._fields, state, strict=True)
        if x is not None and f not in ("count", "mu_product")})
    step = getattr(ar, f"{name}_step")
    with _blockwise.unfused():
        blocked = _quiet(step, p, g, state, **kw)
    with _blockwise.functional():
        whole = _quiet(step, p, g, state, **kw)
    _same(_np(whole), _np(blocked))
    _same(_np(whole), _quiet(getattr(fused, f"{name}_step"), p, g, state, **kw))
    _same(_np(whole), _quiet(step, p, g, state, **kw))
