"""Every registered optimizer, random knobs and values in and out of range (the registry drives it).

Property: a call either raises a ValueError/TypeError (OverflowError for the step count) whose
message names the argument that was out of range, or, for a valid keyword set and finite moderate
input (|param| <= 10, 1e-3 <= |grad| <= 10, no exact zeros), returns finite parameters and a
finite state, over two steps. Bounded: a fixed number of examples, no deadline
(docs/reliability.md, "What the tests guarantee").
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing import strategies as ars

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

NAMES = sorted(REGISTRY)


def _bad_values(h):
    """Values ``h`` does not accept, each with the exception type the step must raise."""
    if h.kind == "bool":
        return [("yes", TypeError), (1, TypeError), (None, TypeError)]
    if h.kind == "choice":
        return [("bogus", ValueError), (None, ValueError)]
    out = [(math.nan, ValueError), ("0.1", TypeError), (True, TypeError), (None, TypeError),
           (np.float64(math.nan), ValueError), (np.asarray(math.nan), ValueError)]
    if not h.allow_inf:
        out += [(math.inf, ValueError), (-math.inf, ValueError)]
    if math.isfinite(h.low):
        below = h.low if h.low_open else h.low - max(1.0, abs(h.low)) * 0.5
        out += [(below, ValueError), (np.float32(below), ValueError),
                (np.asarray(below), ValueError)]
    if math.isfinite(h.high):
        above = h.high if h.high_open else h.high + 0.5
        out += [(above, ValueError), (np.asarray(above), ValueError)]
    return out


def _finite(tree) -> bool:
    if tree is None:
        return True
    if isinstance(tree, tuple):
        return all(_finite(x) for x in tree)
    return bool(np.all(np.isfinite(np.asarray(tree, dtype=np.float64))))


def _documented_nan(name, s) -> bool:
    """Centred RMSprop with bias correction and eps outside the root can be NaN at step 1
    (docs/reliability.md): v_hat - m_hat^2 is 0 exactly and rounds to a tiny negative."""
    return (name == "rmsprop" and s.get("centered") and s.get("bias_correction")
            and (s.get("eps_placement") == "outside" or s.get("eps") == 0))


@st.composite
def _calls(draw):
    name = draw(st.sampled_from(NAMES), label="optimizer")
    spec = REGISTRY[name]
    s = draw(ars.hparams(spec), label="settings")
    for h in spec.hparams:  # integer hyperparameters (an int default: Shampoo's update_freq)
        if h.kind == "real" and type(h.default) is int and h.name not in spec.fixed:
            s[h.name] = draw(st.integers(max(1, int(h.low)), 5), label=h.name)
    bad = None
    mutable = [h for h in spec.hparams if h.name not in spec.fixed]
    if mutable and draw(st.booleans(), label="out of range"):
        h = draw(st.sampled_from(mutable), label="hparam")
        value, err = draw(st.sampled_from(_bad_values(h)), label="bad value")
        s[h.name] = value
        bad = (h.name, err)
    # an optimizer of one parameter rank (OptimizerSpec.param_ndim; Muon: matrices) gets that rank
    shapes = [(3,), (2, 3), (4, 1)]
    shape = draw(st.sampled_from([x for x in shapes
                                  if spec.param_ndim in (None, len(x))]), label="shape")
    dtype = draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    p = draw(ars.params_arrays(shape, dtype, exponents=(-3.0, 1.0)), label="param")
    grads = draw(ars.gradient_sequences(shape, steps=2, dtype=dtype, exponents=(-3.0, 1.0),
                                        zeros=False), label="grads")
    return name, s, bad, p, grads


# 150 examples keep CI at a few seconds; FAULT_EXAMPLES=2000 explores further by hand
@settings(max_examples=int(os.environ.get("FAULT_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_calls())
def test_every_call_raises_a_named_error_or_gives_finite_output(call):
    name, s, bad, p, grads = call
    spec = REGISTRY[name]
    try:
        state = spec.init(p, **spec.init_kwargs(s))
        for g in grads:
            p, state = spec.step(p, g, state, **s)
    except (ValueError, TypeError) as err:
        assert bad is not None, f"{name}: a valid keyword set {s} raised {err!r}"
        hname, etype = bad
        assert isinstance(err, etype), (name, hname, err)
        assert hname in str(err), f"{name}: the error does not name {hname}: {err}"
        return
    assert bad is None, f"{name}: {bad[0]}={s[bad[0]]!r} was accepted"
    if _documented_nan(name, s):
        return
    assert _finite(p), (name, s, p)
    assert all(_finite(v) for f, v in zip(state._fields, state, strict=True) if f != "count"), \
        (name, s, state)
