"""Learning-rate schedules: values at chosen steps; Python int and 0-d array steps agree.

Expected values are exact decimal numbers chosen so that float64 evaluation is exact or within a
couple of ulps; int and array steps go through different code (Python ``math``/``**`` versus the
array namespace's ``pow``/``cos``), which may differ in the last bit, so they are compared within
4 ulps (rtol 4 * 2**-52).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptive_ref import schedules

ULP4 = 4 * 2.0**-52

CASES = [
    ("constant", schedules.constant(0.3), {0: 0.3, 7: 0.3, 10**6: 0.3}),
    ("exponential", schedules.exponential_decay(1.0, 0.5, 2),
     {0: 1.0, 1: math.sqrt(0.5), 2: 0.5, 4: 0.25, 10: 0.5**5}),
    ("cosine", schedules.cosine_decay(2.0, 10, alpha=0.1),
     {0: 2.0, 5: 2.0 * (0.9 * 0.5 + 0.1), 10: 0.2, 25: 0.2}),
    ("warmup", schedules.linear_warmup(1.0, 4, init_value=0.2),
     {0: 0.2, 1: 0.4, 2: 0.6, 4: 1.0, 100: 1.0}),
    ("join", schedules.join(schedules.linear_warmup(1.0, 4), schedules.cosine_decay(1.0, 8), 4),
     {0: 0.0, 2: 0.5, 4: 1.0, 8: 0.5, 12: 0.0, 20: 0.0}),
]


# issue 13: the schedules of the theory and of practice
CASES += [
    ("staircase", schedules.exponential_decay(1.0, 0.5, 3, staircase=True),
     {0: 1.0, 2: 1.0, 3: 0.5, 5: 0.5, 6: 0.25}),
    ("inverse_time", schedules.inverse_time_decay(1.0, 0.5, 2),
     {0: 1.0, 2: 1 / 1.5, 4: 0.5, 8: 1 / 3}),
    ("inverse_time_staircase", schedules.inverse_time_decay(1.0, 1.0, 2, staircase=True),
     {0: 1.0, 1: 1.0, 2: 0.5, 3: 0.5, 4: 1 / 3}),
    ("inverse_sqrt", schedules.inverse_sqrt_decay(0.5), {0: 0.5, 3: 0.25, 15: 0.125}),
    ("inverse_sqrt_T", schedules.inverse_sqrt_decay(2.0, 4), {0: 2.0, 12: 1.0, 60: 0.5}),
    ("piecewise", schedules.piecewise_constant([3, 7], [1.0, 0.1, 0.01]),
     {0: 1.0, 2: 1.0, 3: 0.1, 6: 0.1, 7: 0.01, 1000: 0.01}),
    ("polynomial", schedules.polynomial_decay(1.0, 0.2, 4, power=2.0),
     {0: 1.0, 2: 0.8 * 0.25 + 0.2, 4: 0.2, 9: 0.2}),
    ("polynomial_linear", schedules.polynomial_decay(1.0, 0.0, 10),
     {0: 1.0, 5: 0.5, 10: 0.0}),
    ("restarts", schedules.cosine_restarts(1.0, 4),
     {0: 1.0, 2: 0.5, 4: 1.0, 6: 0.5, 8: 1.0}),
    ("restarts_mult", schedules.cosine_restarts(2.0, 2, period_mult=2.0, alpha=0.5),
     {0: 2.0, 1: 1.5, 2: 2.0, 4: 1.5, 6: 2.0, 10: 1.5, 14: 2.0}),
    ("sequence", schedules.sequence([schedules.linear_warmup(1.0, 2), schedules.constant(0.5),
                                     schedules.exponential_decay(0.5, 0.5)], [2, 5]),
     {0: 0.0, 1: 0.5, 2: 0.5, 4: 0.5, 5: 0.5, 6: 0.25, 8: 0.0625}),
]

@pytest.mark.parametrize(("name", "schedule", "values"), CASES, ids=[c[0] for c in CASES])
def test_values_at_chosen_steps(name, schedule, values):
    for step, expected in values.items():
        got = schedule(step)
        assert isinstance(got, float)
        assert got == pytest.approx(expected, rel=ULP4, abs=1e-16), (name, step)


@pytest.mark.parametrize(("name", "schedule", "values"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32])
def test_int_and_0d_array_steps_agree(name, schedule, values, int_dtype):
    for step in list(values) + [3, 9]:
        if step > np.iinfo(int_dtype).max:
            continue
        a = schedule(np.asarray(step, dtype=int_dtype))
        assert np.ndim(a) == 0 and np.asarray(a).dtype == np.float64, (name, step)
        np.testing.assert_allclose(float(a), schedule(step), rtol=ULP4, atol=1e-16)


def test_array_steps_with_torch():
    torch = pytest.importorskip("torch")
    s = schedules.join(schedules.linear_warmup(1.0, 4), schedules.exponential_decay(1.0, 0.5), 4)
    for step in (0, 3, 4, 6):
        v = s(torch.tensor(step))
        assert isinstance(v, torch.Tensor) and v.dtype == torch.float64
        assert float(v) == pytest.approx(s(step), rel=ULP4, abs=1e-16)


@pytest.mark.parametrize(("factory", "kwargs", "name"), [
    (schedules.constant, {"value": -1.0}, "value"),
    (schedules.constant, {"value": float("nan")}, "value"),
    (schedules.exponential_decay, {"init_value": 1.0, "decay_rate": -0.5}, "decay_rate"),
    (schedules.exponential_decay, {"init_value": 1.0, "decay_rate": 0.5, "transition_steps": 0},
     "transition_steps"),
    (schedules.cosine_decay, {"init_value": 1.0, "decay_steps": 0}, "decay_steps"),
    (schedules.cosine_decay, {"init_value": 1.0, "decay_steps": 5, "alpha": -1.0}, "alpha"),
    (schedules.linear_warmup, {"peak_value": 1.0, "warmup_steps": 0}, "warmup_steps"),
    (schedules.linear_warmup, {"peak_value": -1.0, "warmup_steps": 3}, "peak_value"),
])
def test_bad_arguments_name_the_argument_and_range(factory, kwargs, name):
    with pytest.raises(ValueError, match=rf"{name}=.* is outside the accepted range"):
        factory(**kwargs)


def test_join_rejects_negative_boundary():
    with pytest.raises(ValueError, match=r"boundary=-1 is outside the accepted range \[0, inf\)"):
        schedules.join(schedules.constant(1.0), schedules.constant(0.5), -1)


# ---- schedules of issue 13: restarts, tracing, bad arguments ---------------------------------

def test_cosine_restarts_array_steps_at_every_restart():
    """period_mult != 1: arrays use a log for the period index; at each restart step (2, 6, 14,
    30, ...) the value must be init_value exactly as with ints, for the first 12 restarts."""
    s = schedules.cosine_restarts(1.0, 2, period_mult=2.0)
    start = 0
    for i in range(12):
        start += 2 * 2**i
        assert float(s(np.asarray(start))) == pytest.approx(1.0, rel=ULP4), start
        assert s(start) == 1.0


def test_schedules_trace_under_jax_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    s = schedules.sequence([schedules.linear_warmup(1.0, 4),
                            schedules.cosine_restarts(1.0, 3, period_mult=2.0)], [4])
    f = jax.jit(s)
    for t in range(20):
        assert float(f(jnp.asarray(t))) == pytest.approx(s(t), rel=1e-6), t


@pytest.mark.parametrize(("factory", "kwargs", "match"), [
    (schedules.piecewise_constant, {"boundaries": [3, 2], "values": [1.0, 0.5, 0.1]},
     "boundaries must be strictly increasing"),
    (schedules.piecewise_constant, {"boundaries": [3], "values": [1.0]},
     r"len\(values\) == len\(boundaries\) \+ 1"),
    (schedules.piecewise_constant, {"boundaries": [-1], "values": [1.0, 2.0]},
     r"boundaries\[0\]=-1 is outside"),
    (schedules.polynomial_decay, {"init_value": 1.0, "end_value": 0.0, "decay_steps": 5,
                                  "power": 0.0}, r"power=0.0 is outside the accepted range \(0"),
    (schedules.cosine_restarts, {"init_value": 1.0, "period": 4, "period_mult": 0.5},
     r"period_mult=0.5 is outside the accepted range \[1, inf\)"),
    (schedules.inverse_sqrt_decay, {"init_value": float("inf")}, "init_value=inf is outside"),
    (schedules.inverse_time_decay, {"init_value": 1.0, "decay_rate": -1.0}, "decay_rate=-1.0"),
    (schedules.sequence, {"schedules": [schedules.constant(1.0)], "boundaries": [2]},
     r"len\(schedules\) == len\(boundaries\) \+ 1"),
])
def test_new_schedules_reject_bad_arguments(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_sequence_rejects_a_non_callable():
    with pytest.raises(TypeError, match=r"schedules\[1\]=0.5 is not a schedule"):
        schedules.sequence([schedules.constant(1.0), 0.5], [2])
