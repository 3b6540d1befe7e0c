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
