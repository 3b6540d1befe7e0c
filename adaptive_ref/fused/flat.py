"""One contiguous buffer behind a whole parameter tree, so that one fused call steps every leaf.

``flat, views = flat_tree(params)`` copies the leaves of ``params`` (NumPy arrays of one dtype)
into one 1-D buffer and returns a tree of the same structure whose leaves are views into it.
Keep using ``views`` as the parameters; step ``flat`` (with a state made by ``<name>_init(flat)``
and a gradient buffer laid out the same way, e.g. ``gflat, gviews = flat_tree(grads)``) with one
in-place call such as ``adam_step_(flat, gflat, state)``: every view sees the update. This is
what torch's fused optimizers do over their parameter lists, with one hyperparameter set per
buffer (make one buffer per parameter group).
"""

from __future__ import annotations

import numpy as np
import optree

__all__ = ["flat_tree"]


def flat_tree(tree, dtype=None):
    """Return ``(flat, views)``: a 1-D buffer holding every leaf and a tree of views into it."""
    leaves, treedef = optree.tree_flatten(tree, namespace="adaptive_ref")
    if not leaves:
        msg = "flat_tree: the tree has no leaves"
        raise ValueError(msg)
    if dtype is None:
        dtype = leaves[0].dtype
    sizes = [int(np.size(x)) for x in leaves]
    flat = np.empty(sum(sizes), dtype=dtype)
    views, start = [], 0
    for x, n in zip(leaves, sizes, strict=True):
        v = flat[start:start + n].reshape(np.shape(x))
        v[...] = x
        views.append(v)
        start += n
    return flat, optree.tree_unflatten(treedef, views)
