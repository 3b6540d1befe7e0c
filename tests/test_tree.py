"""Parameter trees: tree_init / tree_step / make over nested dicts, lists and tuples."""

from __future__ import annotations

import numpy as np
import optree
import pytest

from adaptive_ref import (
    Group,
    make,
    schedules,
    state_from_dict,
    state_to_dict,
    tree_init,
    tree_step,
)
from adaptive_ref.registry import REGISTRY
from adaptive_ref.testing.invariants import assert_bitwise_equal


def _params():
    rng = np.random.default_rng(3)
    return {
        "encoder": {"weight": rng.standard_normal((3, 2)), "bias": rng.standard_normal(2)},
        "layers": [rng.standard_normal(4), (rng.standard_normal(()), rng.standard_normal((2, 2)))],
    }


def _grads(seed):
    rng = np.random.default_rng(seed)
    return optree.tree_map(lambda p: rng.standard_normal(np.shape(p)), _params())


def _leaves(tree):
    return optree.tree_leaves(tree, none_is_leaf=True)


def _is_state(x):
    return hasattr(x, "_fields")


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam",
                                  "radam", "adamax", "amsgrad"])
def test_tree_step_equals_leafwise_steps(name):
    spec = REGISTRY[name]
    kw = {"lr": 1e-2, "weight_decay": 0.1}
    params = _params()
    state = tree_init(name, params, **kw)
    p_leaves = _leaves(params)
    settings = spec.settings(None, **kw)  # includes the spec's fixed knobs (AMSGrad's)
    s_leaves = [spec.init(p, **spec.init_kwargs(settings)) for p in p_leaves]
    for seed in range(3):
        grads = _grads(seed)
        params, state = tree_step(name, params, grads, state, **kw)
        out = [spec.step(p, g, s, **settings)
               for p, g, s in zip(p_leaves, _leaves(grads), s_leaves, strict=True)]
        p_leaves, s_leaves = [o[0] for o in out], [o[1] for o in out]
    assert optree.tree_structure(params) == optree.tree_structure(_params())
    for a, b in zip(_leaves(params), p_leaves, strict=True):
        assert_bitwise_equal(a, b, "param leaf")
    flat_states = optree.tree_leaves(state, is_leaf=_is_state)
    assert all(isinstance(s, spec.state_type) for s in flat_states)


def test_none_grads_skip_leaves():
    params = _params()
    state = tree_init("adam", params)
    grads = _grads(0)
    grads["encoder"]["bias"] = None
    grads["layers"][1] = (None, grads["layers"][1][1])
    new_p, new_s = tree_step("adam", params, grads, state, lr=0.1)
    assert new_p["encoder"]["bias"] is params["encoder"]["bias"]
    assert new_s["encoder"]["bias"] is state["encoder"]["bias"]
    assert new_p["layers"][1][0] is params["layers"][1][0]
    assert int(new_s["layers"][1][0].count) == 0
    assert int(new_s["layers"][1][1].count) == 1
    assert not np.array_equal(new_p["encoder"]["weight"], params["encoder"]["weight"])


def test_structure_mismatch_errors():
    params = _params()
    state = tree_init("sgd", params)
    with pytest.raises(ValueError, match="grads must have the parameters' tree structure"):
        tree_step("sgd", params, {"encoder": _grads(0)["encoder"]}, state)
    with pytest.raises(ValueError, match="state must have the parameters' tree structure"):
        tree_step("sgd", params, _grads(0), {"encoder": state["encoder"]})
    with pytest.raises(ValueError, match=r"at leaf \('encoder', 'bias'\): .*grad has shape"):
        g = _grads(0)
        g["encoder"]["bias"] = np.ones(5)
        tree_step("sgd", params, g, state)


def test_group_overrides_with_a_callable():
    """Later groups win; a group changes only the leaves it selects."""
    params = _params()
    groups = [Group(lambda path, leaf: path[0] == "layers", lr=0.5),
              Group(lambda path, leaf: path[-1] == "bias", lr=0.0)]
    state = tree_init("sgd", params, groups=groups)
    grads = _grads(1)
    new_p, _ = tree_step("sgd", params, grads, state, lr=0.1, groups=groups)
    assert_bitwise_equal(new_p["encoder"]["bias"], params["encoder"]["bias"], "lr=0 leaf")
    assert_bitwise_equal(new_p["encoder"]["weight"],
                         params["encoder"]["weight"] - 0.1 * grads["encoder"]["weight"], "w")
    assert_bitwise_equal(new_p["layers"][0], params["layers"][0] - 0.5 * grads["layers"][0], "l")


def test_group_overrides_with_a_bool_tree_and_init_knobs():
    """A bool tree selects leaves; an init knob in a group (momentum) shapes those leaves' state."""
    params = _params()
    select = optree.tree_map(lambda p: False, params)
    select["layers"][0] = True
    groups = [Group(select, momentum=0.9)]
    state = tree_init("sgd", params, groups=groups)
    assert state["layers"][0].momentum_buffer is not None
    assert state["encoder"]["weight"].momentum_buffer is None
    new_p, new_s = tree_step("sgd", params, _grads(0), state, lr=0.1, groups=groups)
    assert new_s["layers"][0].momentum_buffer is not None
    bad = optree.tree_map(lambda p: 1, params)
    with pytest.raises(TypeError, match="must be True or False"):
        tree_step("sgd", params, _grads(0), state, groups=[Group(bad, lr=0.1)])
    with pytest.raises(ValueError, match="must have the parameters' tree structure"):
        tree_step("sgd", params, _grads(0), state, groups=[Group({"encoder": True}, lr=0.1)])
    with pytest.raises(KeyError, match="has no hyperparameter 'bogus'"):
        tree_step("sgd", params, _grads(0), state, groups=[Group(select, bogus=1.0)])


@pytest.mark.parametrize("as_tree", [False, True])
def test_decay_mask(as_tree):
    """Leaves outside the mask get weight_decay = 0: AdamW with zero gradients then leaves them
    exactly unchanged and decays the others by (1 - lr*wd) exactly, as a first step of zero
    gradients gives m = v = 0 and a zero Adam direction."""
    params = _params()
    if as_tree:
        mask = optree.tree_map(lambda p: np.ndim(p) >= 2, params)
    else:
        mask = lambda path, leaf: np.ndim(leaf) >= 2  # noqa: E731
    opt = make("adamw", profile="torch", lr=0.1, weight_decay=0.5, decay_mask=mask)
    state = opt.init(params)
    zeros = optree.tree_map(np.zeros_like, params)
    new_p, _ = opt.step(params, zeros, state)
    for p, q in zip(_leaves(params), _leaves(new_p), strict=True):
        expected = p * (1 - 0.1 * 0.5) if np.ndim(p) >= 2 else p
        assert_bitwise_equal(q, expected, "decayed leaf")


def test_make_with_a_schedule_as_lr():
    """make(..., lr=schedule) evaluates the schedule at each step's count (0-based)."""
    sched = schedules.join(schedules.linear_warmup(0.1, 3), schedules.cosine_decay(0.1, 5), 3)
    params = {"w": np.ones(3)}
    opt = make("sgd", lr=sched)
    state = opt.init(params)
    p_ref = np.ones(3)
    for t in range(8):
        g = {"w": np.full(3, 0.5 + t)}
        params, state = opt.step(params, g, state)
        p_ref = p_ref - sched(t) * g["w"]
        np.testing.assert_allclose(params["w"], p_ref, rtol=4e-16, atol=0)  # one rounding
    assert int(state["w"].count) == 8


def test_make_binds_profile_and_overrides():
    opt = make("adam", profile="optax", lr=1e-3)
    assert opt.settings["amsgrad_max_over"] == "corrected"
    with pytest.raises(TypeError, match="needs lr to be given"):
        make("adam", profile="optax")
    with pytest.raises(KeyError, match="no profile 'bogus'"):
        make("adam", profile="bogus")
    with pytest.raises(KeyError, match="unknown optimizer 'bogus'"):
        make("bogus")


def test_tree_state_is_serialisable():
    """Map state_to_dict over the state leaves, go through NumPy, map back, continue: bitwise
    the same as not saving."""
    params = _params()
    opt = make("nadam", profile="torch", weight_decay=0.01)
    state = opt.init(params)
    params, state = opt.step(params, _grads(0), state)
    saved = optree.tree_map(lambda s: state_to_dict(s, to_numpy=True), state, is_leaf=_is_state)
    loaded = optree.tree_map(lambda d: state_from_dict(d, like=np.zeros(1)), saved,
                             is_leaf=lambda x: isinstance(x, dict) and "type" in x)
    p1, s1 = opt.step(params, _grads(1), state)
    p2, s2 = opt.step(params, _grads(1), loaded)
    for a, b in zip(_leaves(p1), _leaves(p2), strict=True):
        assert_bitwise_equal(a, b, "param")
    for a, b in zip(optree.tree_leaves(s1, is_leaf=_is_state),
                    optree.tree_leaves(s2, is_leaf=_is_state), strict=True):
        for f in a._fields:
            assert_bitwise_equal(getattr(a, f), getattr(b, f), f)


# ---- issue 10 item 8 and issue 13: per-leaf schedules, group lrs, JAX pytrees, tree states ----

def test_schedule_is_evaluated_at_each_leafs_own_count():
    """A leaf skipped for 3 steps (None gradient) keeps its warm-up at its own count; the other
    leaf's lr follows its own count (issue 10, item 8: both used the first leaf's count)."""
    sched = schedules.linear_warmup(1.0, 4)
    opt = make("sgd", lr=sched)
    params = {"a": np.zeros(1), "b": np.zeros(1)}
    state = opt.init(params)
    for _ in range(3):
        params, state = opt.step(params, {"a": None, "b": np.ones(1)}, state)
    assert int(state["a"].count) == 0 and int(state["b"].count) == 3
    p, s = opt.step(params, {"a": np.ones(1), "b": np.ones(1)}, state)
    # a: lr(0) = 0, so no move; b: lr(3) = 0.75
    assert_bitwise_equal(p["a"], np.zeros(1), "a at its count 0")
    assert_bitwise_equal(p["b"], params["b"] - 0.75, "b at its count 3")


def test_group_schedules_and_lr_scale():
    """A group may bring its own schedule; lr_scale scales the base schedule (torch's groups:
    every group follows one schedule, each at its own initial lr). Scales of groups multiply."""
    base = schedules.exponential_decay(1.0, 0.5)
    own = schedules.constant(0.25)
    groups = [Group(lambda path, leaf: path[0] == "scaled", lr_scale=0.1),
              Group(lambda path, leaf: path[0] == "own", lr=own),
              Group(lambda path, leaf: path[0] == "scaled", lr_scale=0.5)]
    opt = make("sgd", lr=base, groups=groups)
    params = {"plain": np.zeros(1), "scaled": np.zeros(1), "own": np.zeros(1)}
    state = opt.init(params)
    ones = {k: np.ones(1) for k in params}
    for t in range(3):
        new, state = opt.step(params, ones, state)
        assert_bitwise_equal(new["plain"], params["plain"] - base(t), f"plain t={t}")
        assert_bitwise_equal(new["scaled"], params["scaled"] - base(t) * (0.1 * 0.5), "scaled")
        assert_bitwise_equal(new["own"], params["own"] - 0.25, "own")
        params = new
    with pytest.raises(ValueError, match=r"lr_scale=-1.0 is outside the accepted range"):
        make("sgd", lr=0.1, groups=[Group(lambda p, x: True, lr_scale=-1.0)]).step(
            params, ones, state)


def test_a_selector_returning_an_array_is_a_clear_error():
    params = _params()
    state = tree_init("sgd", params)
    grp = [Group(lambda path, leaf: leaf > 0, lr=0.0)]
    with pytest.raises(TypeError, match=r"groups\[0\]: the selector must return True or False "
                                        r"for each leaf; at leaf \('encoder', 'bias'\) it "
                                        r"returned an array of shape \(2,\)"):
        tree_step("sgd", params, _grads(0), state, groups=grp)
    with pytest.raises(TypeError, match="decay_mask: the selector must return True or False"):
        make("adamw", decay_mask=lambda path, leaf: np.ones(1)).step(params, _grads(0),
                                                                     tree_init("adamw", params))
    # NumPy bools (np.ndim(leaf) >= 2) are accepted, as before
    make("adamw", decay_mask=lambda path, leaf: np.ndim(leaf) >= 2).step(
        params, _grads(0), tree_init("adamw", params))


def _jax_linear():
    jax = pytest.importorskip("jax")
    from jax import tree_util as jtu

    @jtu.register_pytree_with_keys_class
    class Linear:  # what flax.struct / equinox.Module register: a node with named children
        def __init__(self, weight, bias):
            self.weight, self.bias = weight, bias

        def tree_flatten_with_keys(self):
            children = ((jtu.GetAttrKey("weight"), self.weight),
                        (jtu.GetAttrKey("bias"), self.bias))
            return children, None

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(*children)

    return jax, Linear


def test_jax_registered_pytree_nodes():
    """A JAX-registered node is a tree node (optree alone would see one opaque leaf): each of
    its children is stepped as a leaf, paths name attributes, the result has the node's type,
    and the state serialises as a tree."""
    jax, Linear = _jax_linear()
    import jax.numpy as jnp

    params = {"lin": Linear(jnp.ones((2, 2)), jnp.zeros(2)), "scale": jnp.ones(())}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    groups = [Group(lambda path, leaf: path[-1] == "bias", lr=0.0)]
    opt = make("adam", lr=0.1, groups=groups)
    state = opt.init(params)
    assert isinstance(state["lin"], Linear)
    jitted, _ = jax.jit(opt.step)(params, grads, state)  # traceable: a node is no obstacle
    assert isinstance(jitted["lin"], Linear)
    new, state = opt.step(params, grads, state)
    assert isinstance(new["lin"], Linear)
    assert_bitwise_equal(new["lin"].bias, params["lin"].bias, "bias (lr 0)")
    spec = REGISTRY["adam"]
    ref, _ = spec.step(params["lin"].weight, grads["lin"].weight,
                       spec.init(params["lin"].weight), **spec.settings(None, lr=0.1))
    assert_bitwise_equal(new["lin"].weight, ref, "weight stepped as a leaf")
    from adaptive_ref.tree import leaf_paths

    assert leaf_paths(params) == [("lin", "weight"), ("lin", "bias"), ("scale",)]
    saved = state_to_dict(state, to_numpy=True)
    assert isinstance(saved["lin"], Linear) and saved["lin"].weight["type"] == "AdamState"
    loaded = state_from_dict(saved, like=jnp.zeros(()))
    p1, _ = opt.step(new, grads, state)
    p2, _ = opt.step(new, grads, loaded)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2), strict=True):
        assert_bitwise_equal(a, b, "after reload")


def test_tree_state_through_state_to_dict_directly():
    """state_to_dict/state_from_dict take a whole tree state (no tree_map needed)."""
    params = _params()
    opt = make("adam", lr=0.1)
    state = opt.init(params)
    params, state = opt.step(params, _grads(0), state)
    saved = state_to_dict(state, to_numpy=True)
    assert saved["encoder"]["weight"]["type"] == "AdamState"
    loaded = state_from_dict(saved)
    p1, _ = opt.step(params, _grads(1), state)
    p2, _ = opt.step(params, _grads(1), loaded)
    for a, b in zip(_leaves(p1), _leaves(p2), strict=True):
        assert_bitwise_equal(a, b, "param")
    with pytest.raises(TypeError, match="state_to_dict: a tree leaf, int 3, is not the state of"):
        state_to_dict({"a": 3})
    with pytest.raises(TypeError, match="state_to_dict: NoneType is not the state of a regis"):
        state_to_dict(None)
    with pytest.raises(TypeError, match="state_from_dict: a tree leaf, int 3, is not a dict"):
        state_from_dict({"a": 3})


def test_per_leaf_schedules_trace_under_jit():
    """Under jax.jit each leaf's count is a traced array; the schedule and lr_scale trace too.
    The compiled step may fuse operations differently from the eager one, so the two agree to a
    few float32 ulps (rtol 4 * 2**-23), while the counts agree exactly."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    opt = make("adam", lr=schedules.linear_warmup(0.1, 3),
               groups=[Group(lambda path, leaf: path == ("b",), lr_scale=0.5)])
    params = {"a": jnp.ones(3, dtype=jnp.float32), "b": jnp.ones(2, dtype=jnp.float32)}
    grads = {"a": jnp.full(3, 0.5, dtype=jnp.float32), "b": None}
    state = opt.init(params)
    eager_p, eager_s = params, state
    step = jax.jit(opt.step)
    for t in range(4):
        g = grads if t == 0 else {"a": grads["a"], "b": jnp.full(2, 0.25, dtype=jnp.float32)}
        params, state = step(params, g, state)
        eager_p, eager_s = opt.step(eager_p, g, eager_s)
    assert int(state["a"].count) == 4 and int(state["b"].count) == 3
    for k in params:
        np.testing.assert_allclose(np.asarray(params[k]), np.asarray(eager_p[k]),
                                   rtol=4 * 2.0**-23, atol=0)


WHOLE_MODEL = [(n, prof) for n, spec in REGISTRY.items() if spec.coupling == "tree"
               for prof in spec.profiles]


@pytest.mark.parametrize(("name", "profile"), WHOLE_MODEL)
def test_tree_api_hands_a_whole_model_optimizer_every_leaf(name, profile):
    """``tree.make`` of an optimizer coupled across leaves (``coupling == "tree"``) calls its step
    once with every leaf, in optree's sorted-key order: the same parameters and state as the
    step called on that list."""
    from adaptive_ref import tree

    spec = REGISTRY[name]
    params = {"w": np.ones((2, 3)), "b": np.zeros(3)}
    grads = {"w": np.full((2, 3), 0.1), "b": np.full(3, -0.2)}
    opt = tree.make(name, profile=profile)
    new, st = opt.step(params, grads, opt.init(params))
    leaves = [params["b"], params["w"]]
    ref, rst = spec.step(leaves, [grads["b"], grads["w"]], spec.init(leaves), **opt.settings)
    np.testing.assert_array_equal(new["b"], ref[0])
    np.testing.assert_array_equal(new["w"], ref[1])
    for field in type(st).SCALAR_FIELDS:
        assert float(getattr(st, field)) == float(getattr(rst, field)), field


@pytest.mark.parametrize("name", sorted({n for n, _ in WHOLE_MODEL}))
def test_whole_model_step_errors_name_the_leaf_and_the_argument(name):
    """The checks every whole-model step shares (adaptive_ref._global): the leaf and the
    argument in the message."""
    spec = REGISTRY[name]
    p = [np.ones(2), np.ones(3)]
    st = spec.init(p)
    with pytest.raises(ValueError, match=r"\(leaf 1\): grad has shape"):
        spec.step(p, [np.ones(2), np.ones(2)], st)
    with pytest.raises(ValueError, match="params has 2 leaves but grads has 1"):
        spec.step(p, [np.ones(2)], st)
    with pytest.raises(TypeError, match=f"not a {spec.state_type.__name__}"):
        spec.step(p, p, (1, 2))
