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
    """Return ``(flat, views)``: a 1-D buffer holding every leaf and a tree of views into it.

    Every leaf must be a ``numpy.ndarray`` of a real floating dtype. With ``dtype=None`` all
    leaves must share one dtype (leaves of mixed dtypes are an error, not a silent cast to the
    first leaf's); an explicit ``dtype`` casts every leaf to it, as asked.
    """
    leaves, treedef = optree.tree_flatten(tree, namespace="adaptive_ref")
    if not leaves:
        msg = "flat_tree: the tree has no leaves"
        raise ValueError(msg)
    paths = optree.tree_paths(tree, namespace="adaptive_ref")
    for path, x in zip(paths, leaves, strict=True):
        if type(x) is not np.ndarray:
            msg = (f"flat_tree: the leaf at {path} is a {type(x).__module__}."
                   f"{type(x).__name__}; the fused path takes numpy.ndarray leaves only "
                   f"(convert it with numpy.asarray, or step it with the reference functions)")
            raise TypeError(msg)
        if x.dtype.kind != "f":
            msg = (f"flat_tree: the leaf at {path} has dtype {x.dtype}; only real floating "
                   f"leaves are accepted")
            raise TypeError(msg)
    if dtype is None:
        dtypes = sorted({str(x.dtype) for x in leaves})
        if len(dtypes) > 1:
            msg = (f"flat_tree: the leaves have the dtypes {', '.join(dtypes)}; one buffer holds "
                   f"one dtype: pass dtype= to cast them (or make one buffer per dtype)")
            raise TypeError(msg)
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
