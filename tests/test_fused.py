"""The fused NumPy path (numba) is bit-identical to the reference step functions.

Cases and the equality check live in ``fused_cases.py`` (shared with the CuPy tests).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fused_cases import INIT_KNOBS, NAMES, _quiet, _same, cases  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import adaptive_ref as ar  # noqa: E402
from adaptive_ref import _blockwise, fused  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40)
@given(data=st.data())
def test_fused_step_is_bit_identical(name, dtype, data):
    p, g, state, kw = data.draw(cases(name, dtype))
    copies = [np.copy(x) for x in (p, g, *[s for s in state if s is not None])]
    ref = _quiet(getattr(ar, f"{name}_step"), p, g, state, **kw)
    got = _quiet(getattr(fused, f"{name}_step"), p, g, state, **kw)
    _same(ref, got)
    for before, after in zip(copies, (p, g, *[s for s in state if s is not None]), strict=True):
        assert np.array_equal(before, after, equal_nan=True), "an input was modified"


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15)
@given(data=st.data())
def test_in_place_equals_pure(name, data):
    p, g, state, kw = data.draw(cases(name, np.float32))
    kw = {k: v for k, v in kw.items() if k in ("lr", *INIT_KNOBS)}  # the default knobs
    ref = _quiet(getattr(fused, f"{name}_step"), p, g, state, **kw)
    p2 = p.copy()
    s2 = type(state)(*[x.copy() if isinstance(x, np.ndarray) and x.ndim else x for x in state])
    got = _quiet(getattr(fused, f"{name}_step_"), p2, g, s2, **kw)
    _same(ref, got)
    assert got[0] is p2  # updated in place


def test_several_steps_match_and_parallel_kernel(monkeypatch):
    """Many steps in a row, and the prange kernel (forced on a small array) on two threads."""
    import numba

    from adaptive_ref.fused import _dispatch

    monkeypatch.setattr(_dispatch, "PARALLEL_MIN", 0)
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        rng = np.random.default_rng(1)
        n = 3 * fused._kernels.BLOCK + 5
        p = rng.standard_normal(n).astype(np.float32)
        sr = sf = ar.adamw_init(p, amsgrad=True)
        pr = pf = p
        pi, si = p.copy(), ar.adamw_init(p, amsgrad=True)
        for _ in range(4):
            g = rng.standard_normal(n).astype(np.float32)
            with _blockwise.unfused():  # the ufunc reference, not its hand-off to the kernel
                pr, sr = ar.adamw_step(pr, g, sr, amsgrad=True)
            pf, sf = fused.adamw_step(pf, g, sf, amsgrad=True)
            pi, si = fused.adamw_step_(pi, g, si, amsgrad=True)
        _same((pr, sr), (pf, sf))
        _same((pr, sr), (pi, si))
    finally:
        numba.set_num_threads(threads)


def test_falls_back_to_the_reference():
    """Array hyperparameters, mixed dtypes and other layouts give the reference's result."""
    p = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    g = np.cos(p)
    s = ar.adam_init(p)
    _same(ar.adam_step(p, g, s, lr=np.asarray(0.01)), fused.adam_step(p, g, s,
                                                                        lr=np.asarray(0.01)))
    s64 = ar.adam_init(p, state_dtype=np.float64)
    _same(ar.adam_step(p, g, s64), fused.adam_step(p, g, s64))
    pt, gt = p.T, g.T  # non-contiguous: copied, same values
    st_ = ar.adam_init(pt)
    _same(ar.adam_step(pt, gt, st_), fused.adam_step(pt, gt, st_))
    pi, si = p.copy(), ar.adam_init(p, state_dtype=np.float64)
    out = fused.adam_step_(pi, g, si)
    _same(ar.adam_step(p, g, s64), out)


def test_errors_are_the_references():
    p = np.zeros(3, np.float32)
    s = ar.adam_init(p)
    with pytest.raises(ValueError, match="lr"):
        fused.adam_step(p, p, s, lr=-1.0)
    with pytest.raises(ValueError, match="amsgrad"):
        fused.adam_step(p, p, s, amsgrad=True)
    with pytest.raises(TypeError, match="grad"):
        fused.adam_step(p, p.astype(np.float64), s)
    with pytest.raises(ValueError, match="nesterov"):
        fused.sgd_step(p, p, ar.sgd_init(p), nesterov=True)


def test_flat_tree_steps_every_leaf_in_one_call():
    rng = np.random.default_rng(2)
    tree = {"w": rng.standard_normal((4, 3)).astype(np.float32),
            "b": [rng.standard_normal(3).astype(np.float32)]}
    grads = {"w": np.ones((4, 3), np.float32), "b": [np.full(3, -2.0, np.float32)]}
    flat, views = fused.flat_tree(tree)
    gflat, _ = fused.flat_tree(grads)
    state = ar.adam_init(flat)
    flat2, state = fused.adam_step_(flat, gflat, state, lr=0.1)
    assert flat2 is flat
    for leaf, view, gr in ((tree["w"], views["w"], grads["w"]),
                           (tree["b"][0], views["b"][0], grads["b"][0])):
        want, _ = ar.adam_step(leaf, gr, ar.adam_init(leaf), lr=0.1)
        assert np.array_equal(view, want)


# Knob values the kernels do not cover take the reference: Keras' decoupled decay on SGD, Adagrad,
# RMSprop and Adamax, and float32 factors / EMA weights (factor_precision, ema_weight_precision).
_REFERENCE_ONLY = [
    ("sgd", dict(momentum=0.9, weight_decay=0.1, weight_decay_mode="decoupled")),
    ("adagrad", dict(weight_decay=0.1, weight_decay_mode="decoupled")),
    ("rmsprop", dict(weight_decay=0.1, weight_decay_mode="decoupled", factor_precision="param",
                     bias_correction=True)),
    ("adamax", dict(weight_decay=0.1, weight_decay_mode="decoupled", factor_precision="param")),
    ("adam", dict(factor_precision="param", eps_placement="hat")),
    ("adamw", dict(factor_precision="param")),
    ("nadam", dict(factor_precision="param", ema_weight_precision="param", momentum_decay=1.0)),
    ("radam", dict(factor_precision="param", threshold_inclusive=True)),
]


@pytest.mark.parametrize(("name", "kw"), _REFERENCE_ONLY, ids=[n for n, _ in _REFERENCE_ONLY])
@pytest.mark.parametrize("inplace", [False, True], ids=["pure", "inplace"])
def test_new_knob_values_fall_back_to_the_reference_bit_for_bit(name, kw, inplace):
    rng = np.random.default_rng(5)
    p = rng.normal(size=9).astype(np.float32)
    init = getattr(ar, f"{name}_init")
    ref_p, ref_s = p.copy(), init(p, **{k: v for k, v in kw.items() if k in INIT_KNOBS})
    got_p, got_s = p.copy(), init(p, **{k: v for k, v in kw.items() if k in INIT_KNOBS})
    for _ in range(8):
        g = rng.normal(size=9).astype(np.float32)
        ref_p, ref_s = getattr(ar, f"{name}_step")(ref_p, g, ref_s, lr=1e-2, **kw)
        step = getattr(fused, f"{name}_step_" if inplace else f"{name}_step")
        got_p, got_s = step(got_p, g, got_s, lr=1e-2, **kw)
    _same((ref_p, ref_s), (got_p, got_s))


def test_cupy_declines_new_knob_values_with_the_knob_named():
    from adaptive_ref.fused import cupy_kernels

    with pytest.raises(ValueError, match="weight_decay_mode='decoupled' is not fused on CuPy"):
        cupy_kernels._fusable("sgd", "sgd_step", {"weight_decay": 0.1,
                                                  "weight_decay_mode": "decoupled"})
    with pytest.raises(ValueError, match="factor_precision='param'.*adaptive_ref.adam_step"):
        cupy_kernels._fusable("adam", "adam_step", {"factor_precision": "param"})
    # default values and decay-free settings are simply dropped for the plans
    assert cupy_kernels._fusable("sgd", "sgd_step", {"weight_decay_mode": "decoupled"}) == {}
    assert cupy_kernels._fusable("adam", "adam_step", {"factor_precision": "float64"}) == {}


@pytest.mark.parametrize("name", ["adopt", "adabelief"])
def test_optimizers_without_a_kernel_are_declined(name):
    """Issue 11's optimizers have no fused kernel: the fused namespace does not offer them (an
    ImportError naming the function), so nothing runs a kernel of another optimizer instead."""
    assert name not in NAMES
    assert not hasattr(fused, f"{name}_step") and not hasattr(fused, f"{name}_step_")
    with pytest.raises(ImportError, match=f"{name}_step"):
        exec(f"from adaptive_ref.fused import {name}_step")  # noqa: S102


def test_the_reference_hands_large_arrays_to_the_kernel_on_one_thread(monkeypatch):
    """Above one block the reference step calls its fused function (on the caller's thread: no
    nested thread pools under Dask's threads); inputs the kernel does not cover come back to the
    reference's ufunc evaluation without looping; ``unfused()`` keeps the ufunc form."""
    from adaptive_ref.fused import _dispatch, numba_path

    calls = []
    real = numba_path.adam_step

    def spy(*args, **kw):
        calls.append(_dispatch.parallel_for(10**9))
        return real(*args, **kw)

    monkeypatch.setattr(numba_path, "adam_step", spy)
    rng = np.random.default_rng(3)
    n = 2 * _blockwise.BLOCK + 1
    p, g = rng.standard_normal((2, n)).astype(np.float32)
    s = ar.adam_init(p)
    for kw in ({}, {"factor_precision": "param"}):  # the second: no kernel, the reference
        got = ar.adam_step(p, g, s, **kw)
        with _blockwise.unfused():
            want = ar.adam_step(p, g, s, **kw)
        _same(want, got)
    assert calls == [False, False]
    small = ar.adam_step(p[:100], g[:100], ar.adam_init(p[:100]))
    assert len(calls) == 2 and small[0].shape == (100,)


def test_reference_hand_off_from_several_threads():
    """Steps of large arrays called from several threads at once (as Dask's threaded scheduler
    does) give each thread the same result as one thread."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    n = 5 * _blockwise.BLOCK
    p, g = rng.standard_normal((2, n))
    s = ar.nadam_init(p)
    want = ar.nadam_step(p, g, s)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: ar.nadam_step(p, g, s), range(8)))
    for r in got:
        _same(want, r)


def test_reference_survives_a_failing_kernel(monkeypatch):
    """A fused function that fails (a broken numba install) leaves the reference correct: the
    ufunc result, with a warning naming the failure; invalid input still raises the reference's
    own error, without a warning."""
    import warnings

    from adaptive_ref.fused import numba_path

    def broken(*args, **kw):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(numba_path, "adam_step", broken)
    rng = np.random.default_rng(5)
    p, g = rng.standard_normal((2, 2 * _blockwise.BLOCK + 1))
    s = ar.adam_init(p)
    with pytest.warns(RuntimeWarning, match="adam_step: the fused kernel failed.*no LLVM here"):
        got = ar.adam_step(p, g, s)
    with _blockwise.unfused():
        _same(ar.adam_step(p, g, s), got)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="lr"):
            ar.adam_step(p, g, s, lr=-1.0)
