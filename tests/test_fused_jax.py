"""On JAX the fast path is the reference itself under ``jax.jit`` with donated buffers.

XLA fuses the whole step into one loop and, with the parameter and state donated, writes the
results into the input buffers, so nothing is allocated per step (docs/performance.md has the
timings against optax). These tests check that donation takes effect (the donated inputs are
consumed, and JAX does not warn that a buffer was unusable) and that the jitted step equals the
eager one up to XLA's FMA contraction: XLA's CPU compiler turns ``a * b + c`` into one fused
multiply-add, skipping the rounding of the product (openxla/xla#41579; here ``b1 * m + o * g``
differs from eager JAX in about 30% of elements, in float32 and float64 alike), and there is no
flag to turn this off. Each contraction moves a result by at most half an ULP of the product; a
step has at most two contractions per updated value, and the test runs 4 steps, so the bound is
|jit - eager| <= 8 eps max|x| per array (eps of the dtype). The NumPy paths, reference and fused,
round every operation and agree bit for bit (tests/test_fused.py).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import adaptive_ref as ar  # noqa: E402
from adaptive_ref.testing.backends import Backend  # noqa: E402

NAMES = ["adam", "adamw", "sgd", "adagrad", "rmsprop", "adamax", "nadam", "radam"]
INIT = {"sgd": dict(momentum=0.9), "rmsprop": dict(momentum=0.9, centered=True)}


def _close(a, b, dtype):
    """|a - b| <= 8 eps max|a| (see the module docstring for the bound)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bound = 8 * np.finfo(dtype).eps * np.max(np.abs(a))
    return bool(np.all(np.abs(a - b) <= bound))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_reference_under_jit_with_donation(name, dtype):
    Backend.JAX.setup()
    import jax.numpy as jnp

    step_fn = getattr(ar, f"{name}_step")
    init_fn = getattr(ar, f"{name}_init")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((64, 33)).astype(dtype)
    grads = [rng.standard_normal(p0.shape).astype(dtype) for _ in range(4)]

    @partial(jax.jit, donate_argnums=(0, 2))
    def step(p, g, s):
        return step_fn(p, g, s, **INIT.get(name, {}))

    pe, se = jnp.asarray(p0), init_fn(jnp.asarray(p0), **INIT.get(name, {}))
    pj, sj = jnp.asarray(p0), init_fn(jnp.asarray(p0), **INIT.get(name, {}))
    for g in grads:
        g = jnp.asarray(g)
        pe, se = step_fn(pe, g, se, **INIT.get(name, {}))
        old_p, old_mu = pj, sj[1]
        pj, sj = step(pj, g, sj)
        assert old_p.is_deleted() and old_mu.is_deleted(), "donation did not take effect"
    assert _close(pe, pj, dtype)
    for a, b in zip(se, sj, strict=True):
        if a is not None and np.ndim(a) > 0:
            assert _close(a, b, dtype)
