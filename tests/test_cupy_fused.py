"""The CuPy fused kernels: their text and scalars on the CPU, their compiled form on a GPU.

On every machine: each kernel body (the text that is compiled to CUDA) is evaluated with NumPy
on the plan that the CuPy wrapper builds (same validation, same device-side scalars), and must
equal the reference bit for bit; the generated CUDA source is checked for shape. With CuPy and a
GPU: the compiled kernels must equal the reference run on CuPy arrays, bit for bit (the
reference's CuPy ufuncs round each operation; the kernels are compiled with ``--fmad=false``).
"""

from __future__ import annotations

import numpy as np
import pytest
from fused_cases import NAMES, _quiet, _same, cases
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptive_ref as ar
from adaptive_ref.fused import cupy_kernels as ck
from adaptive_ref.fused import elementwise as E


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30)
@given(data=st.data())
def test_kernel_text_is_bit_identical_on_numpy(name, dtype, data):
    p, g, state, kw = data.draw(cases(name, dtype))
    ref = _quiet(getattr(ar, f"{name}_step"), p, g, state, **kw)
    plan = _quiet(ck.PLANS[name], p, g, state, **kw)
    got = _quiet(ck.emulate_plan, plan)
    _same(ref, got)


def test_cuda_source_shape():
    body = E.adam_body(maximize=True, wd_mode=1, ams=1, bc=True, hat=False, use_er=True)
    ins, outs, op = ck._c_source(body, inplace=False)
    assert ins.startswith("T p, T g, T m, T v, T vmax, T b1")
    assert outs == "T p_out, T m_out, T v_out, T vmax_out"
    assert "T mi = b1 * m + omb1 * gi;" in op and "gi = -gi;" in op
    assert op.rstrip().endswith("vmax_out = vm;")
    ins, outs, op = ck._c_source(body, inplace=True)
    assert ins.startswith("T g, T b1") and outs == "T p, T m, T v, T vmax"
    _, _, op = ck._c_source(E.sgd_body(has_buf=True), inplace=False)
    assert "sel(first, x, bi)" in op
    assert ck.NVRTC_OPTIONS == ("--fmad=false",)


def _gpu():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as err:  # no driver
        pytest.skip(f"no CUDA device ({type(err).__name__})")
    return cupy


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25)
@given(data=st.data())
def test_cupy_kernels_bit_identical_on_gpu(name, dtype, data):
    cupy = _gpu()
    p, g, state, kw = data.draw(cases(name, dtype))
    to = lambda x: cupy.asarray(x) if isinstance(x, np.ndarray) else x  # noqa: E731
    pc, gc = to(p), to(g)
    sc = type(state)(*[to(x) for x in state])
    ref = _quiet(getattr(ar, f"{name}_step"), pc, gc, sc, **kw)
    got = _quiet(getattr(ck, f"{name}_step"), pc, gc, sc, **kw)
    back = lambda r: (cupy.asnumpy(r[0]), type(r[1])(  # noqa: E731
        *[cupy.asnumpy(x) if x is not None else None for x in r[1]]))
    _same(back(ref), back(got))
    p2 = pc.copy()
    s2 = type(sc)(*[x.copy() if x is not None else None for x in sc])
    got2 = _quiet(getattr(ck, f"{name}_step_"), p2, gc, s2, **kw)
    assert got2[0] is p2
    _same(back(ref), back(got2))
