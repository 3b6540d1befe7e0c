"""The Adam step variants the benchmark compares, each as ``make(params) -> step()``.

``params`` is a list of float32 NumPy arrays (one array, or a model-like tree of many). Every
``step()`` performs one optimizer step on all of them, feeding its outputs back as the next
inputs (donated JAX buffers must not be reused), and returns something to block on (JAX) or None.
Hyperparameters: Adam defaults, lr = 1e-3, fp32 state. A variant whose library is missing is
skipped with the reason.
"""

from __future__ import annotations

from functools import partial

import numpy as np

LR = 1e-3


def _grads(params, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


# ------------------------------------------------------------------------------- the limit

def make_limit(n_elements: int, threads: int):
    """In-place ``a += b`` (read a, read b, write a: 12 bytes per fp32 element), the traffic pattern
    of a read-modify-write optimizer step. Adam moves 28 bytes per element, so its limit is this
    time x 28/12. The limit is the fastest of NumPy's add, numba's loop and (with more than one
    thread) numba's prange loop, since NumPy's ufuncs run on one core."""
    a = np.ones(n_elements, np.float32)
    b = np.ones(n_elements, np.float32)
    fns = {"numpy": lambda: np.add(a, b, out=a)}
    try:
        from ._numba_add import add_parallel, add_serial
        add_serial(a, b)
        add_parallel(a, b)
        fns["numba"] = lambda: add_serial(a, b)
        fns["numba_prange"] = lambda: add_parallel(a, b)
    except ImportError:
        pass
    if threads == 1:
        fns.pop("numba_prange", None)
    return fns


# ------------------------------------------------------------------------------- NumPy paths

def reference(params):
    import adaptive_ref as ar

    grads = _grads(params)
    ps = list(params)
    ss = [ar.adam_init(p) for p in ps]

    if len(ps) == 1:  # one array: time the call itself, not a loop around it
        box = [ps[0], ss[0]]
        g0 = grads[0]

        def step1():
            box[0], box[1] = ar.adam_step(box[0], g0, box[1], lr=LR)
        return step1

    def step():
        for i, (p, g, s) in enumerate(zip(ps, grads, ss, strict=True)):
            ps[i], ss[i] = ar.adam_step(p, g, s, lr=LR)
    return step


def fused_pure(params):
    import adaptive_ref as ar
    from adaptive_ref import fused

    grads = _grads(params)
    ps = list(params)
    ss = [ar.adam_init(p) for p in ps]

    if len(ps) == 1:
        box = [ps[0], ss[0]]
        g0 = grads[0]

        def step1():
            box[0], box[1] = fused.adam_step(box[0], g0, box[1], lr=LR)
        return step1

    def step():
        for i, (p, g, s) in enumerate(zip(ps, grads, ss, strict=True)):
            ps[i], ss[i] = fused.adam_step(p, g, s, lr=LR)
    return step


def fused_inplace(params):
    import adaptive_ref as ar
    from adaptive_ref import fused

    grads = _grads(params)
    ps = [p.copy() for p in params]
    ss = [ar.adam_init(p) for p in ps]

    if len(ps) == 1:
        p0, g0, box = ps[0], grads[0], [ss[0]]

        def step1():
            _, box[0] = fused.adam_step_(p0, g0, box[0], lr=LR)
        return step1

    def step():
        for i, (p, g, s) in enumerate(zip(ps, grads, ss, strict=True)):
            _, ss[i] = fused.adam_step_(p, g, s, lr=LR)
    return step


def fused_flat(params):
    """The whole tree in one call: leaves laid out in one buffer (fused.flat_tree)."""
    import adaptive_ref as ar
    from adaptive_ref import fused

    flat, _ = fused.flat_tree(params)
    gflat, _ = fused.flat_tree(_grads(params))
    box = [ar.adam_init(flat)]

    def step():
        _, box[0] = fused.adam_step_(flat, gflat, box[0], lr=LR)
    return step


# ------------------------------------------------------------------------------- torch

def _torch(params, **opt_kw):
    import torch

    ps = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    for p, g in zip(ps, _grads(params), strict=True):
        p.grad = torch.from_numpy(g)
    opt = torch.optim.Adam(ps, lr=LR, **opt_kw)

    def step():
        opt.step()
    return step


torch_forloop = partial(_torch, foreach=False)
torch_foreach = partial(_torch, foreach=True)
torch_fused = partial(_torch, fused=True)


# ------------------------------------------------------------------------------- JAX

def optax_jit_donate(params):
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(LR)
    ps = [jnp.asarray(p) for p in params]
    gs = [jnp.asarray(g) for g in _grads(params)]
    box = [ps, opt.init(ps)]

    @partial(jax.jit, donate_argnums=(0, 2))
    def update(p, g, s):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    def step():
        box[0], box[1] = update(box[0], gs, box[1])
        return box[0]
    return step


def reference_jit_donate(params):
    """The reference step function under jax.jit with the parameters and state donated."""
    import jax
    import jax.numpy as jnp

    import adaptive_ref as ar

    ps = [jnp.asarray(p) for p in params]
    gs = [jnp.asarray(g) for g in _grads(params)]
    box = [ps, [ar.adam_init(p) for p in ps]]

    @partial(jax.jit, donate_argnums=(0, 2))
    def update(p, g, s):
        out = [ar.adam_step(pi, gi, si, lr=LR) for pi, gi, si in zip(p, g, s, strict=True)]
        return [o[0] for o in out], [o[1] for o in out]

    def step():
        box[0], box[1] = update(box[0], gs, box[1])
        return box[0]
    return step


def reference_ufunc(params):
    """The reference with the fused hand-off of large arrays turned off
    (:func:`adaptive_ref._blockwise.unfused`, as ``ADAPTIVE_REF_FUSED=0``): its blocked ufunc
    evaluation."""
    from adaptive_ref import _blockwise

    step = reference(params)

    def run():
        with _blockwise.unfused():
            return step()
    return run


#: key -> (label, make). Keys are what ``--variants`` takes.
VARIANTS = {
    "ref": ("reference (NumPy)", reference),
    "ref_ufunc": ("reference, ufunc form (NumPy)", reference_ufunc),
    "fused": ("fused (pure)", fused_pure),
    "fused_": ("fused (in place)", fused_inplace),
    "fused_flat": ("fused (flat buffer, 1 call)", fused_flat),
    "torch_loop": ("torch for-loop", torch_forloop),
    "torch_foreach": ("torch foreach", torch_foreach),
    "torch_fused": ("torch fused", torch_fused),
    "optax_jit": ("optax jit+donate", optax_jit_donate),
    "ref_jit": ("reference jit+donate", reference_jit_donate),
}
TREE_ONLY = {"fused_flat"}
