"""numba kernels generated from the per-element update bodies of :mod:`.elementwise`.

The update of each optimizer is written once, as a :class:`~.elementwise.Body`; the CUDA kernels
(:mod:`.cupy_kernels`) and these CPU kernels are both rendered from it. :func:`kernel` renders a
body into the Python source of a numba block loop (the body's statements, in order, on one
element), writes it to a file and compiles it with ``cache=True``, so a flag set is compiled once
per machine, not once per process. Adding an optimizer's fast path is one body.

The knobs are fixed when the body is built (a body per flag set), and the body's boolean scalars
(``first``, ``rectify``) become constants of the kernel, so numba folds every knob branch out of
the loop and LLVM can vectorise it (a loop with run-time knob branches runs about 5x slower).

Rules that keep the kernels bit-identical to the reference (docs/performance.md):

* ``fastmath=False`` (no FMA contraction, no reassociation) and ``error_model="numpy"``;
* every scalar arrives already cast to the array dtype (the wrappers do it, as NumPy 2 does when a
  Python float meets a float32 array), and the bodies hold no numeric literal (checked here), so
  no expression is silently promoted to float64;
* each expression keeps the reference's grouping (the body's parentheses are kept: the source is
  rendered from the parsed expression); ``maxnan`` follows ``numpy.maximum`` (a NaN in either
  argument wins).

Kernel arguments: ``(n, <body arrays>, [<outputs>], c)``, all arrays 1-D and C-contiguous, in the
body's order; ``c`` holds the body's non-boolean scalars in the body's order, already in the array
dtype (one array argument dispatches faster than a dozen scalars). The in-place kernels take no
outputs and overwrite ``p`` and the state arrays; separate outputs would alias the inputs and
defeat LLVM's vectoriser (its overlap check fails and it runs the scalar loop).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

from . import elementwise as E

__all__ = ["kernel", "kernel_for", "render", "kernel_dir", "BLOCK"]

BLOCK = 1 << 16  # elements per parallel work item (256 KiB of float32 per array)
_OPTS = 'cache={cache}, error_model="numpy", fastmath=False, nogil=True'

# body functions -> Python names in the generated module
_CALLS = {"sqrt": "np.sqrt", "fabs": "abs", "sel": "_sel", "maxnan": "_maxnan"}
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Load,
          ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub, ast.Gt, ast.GtE, ast.Lt, ast.LtE,
          ast.Eq, ast.NotEq)


class _Rename(ast.NodeTransformer):
    def visit_Call(self, node):  # noqa: N802 (ast API)
        self.generic_visit(node)
        name = _CALLS[node.func.id]
        node.func = ast.parse(name, mode="eval").body
        return node


def _expr(text: str, where: str) -> str:
    """``text`` (a body expression) as Python source for numba; rejects anything outside the
    body grammar (numeric literals included: they would be typed float64)."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            msg = f"{where}: {type(node).__name__} is not allowed in a body expression: {text!r}"
            raise ValueError(msg)
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name)
                                           or node.func.id not in _CALLS or node.keywords):
            msg = f"{where}: unknown function in {text!r} (known: {', '.join(_CALLS)})"
            raise ValueError(msg)
    return ast.unparse(_Rename().visit(tree))


def render(body: E.Body, inplace: bool, parallel: bool, consts: tuple = (),
           cache: bool = True) -> str:
    """The Python source of the numba kernel ``run`` for ``body``.

    ``consts``: ``(name, bool)`` pairs for the body's boolean scalars (compiled in)."""
    fixed = dict(consts)
    names = [*body.arrays, *body.scalars, *(local for local, _ in body.statements)]
    bad = [x for x in names if not x.isidentifier() or x.startswith(("_", "a_", "o_"))
           or x in ("np", "njit", "prange", "block", "run", "BLOCK")]
    if bad:
        msg = f"{body.name}: names {bad} clash with the generated kernel's own names"
        raise ValueError(msg)
    missing = [s for s in body.scalars if s in E.BOOL_SCALARS and s not in fixed]
    if missing:
        msg = f"{body.name}: boolean scalar(s) {missing} need a value in consts"
        raise ValueError(msg)
    numeric = [s for s in body.scalars if s not in E.BOOL_SCALARS]
    written = [a for a, _ in body.writes]
    arr = {a: f"a_{a}" for a in body.arrays}
    out = {a: (arr[a] if inplace else f"o_{a}") for a in written}
    params = [arr[a] for a in body.arrays] + ([] if inplace else [out[a] for a in written])
    opts = _OPTS.format(cache=cache)
    lines = [
        f"# generated by adaptive_ref.fused._kernels from the body {body.name!r}; do not edit",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        f"BLOCK = {BLOCK}",
        "",
        "",
        f"@njit(inline='always', {opts})",
        "def _maxnan(a, b):",
        "    return a if (a >= b or a != a) else b",
        "",
        "",
        f"@njit(inline='always', {opts})",
        "def _sel(c, a, b):",
        "    return a if c else b",
        "",
        "",
        f"@njit({opts})",
        f"def block(_lo, _hi, {', '.join(params)}, _c):",
    ]
    lines += [f"    {s} = _c[{k}]" for k, s in enumerate(numeric)]
    lines += [f"    {s} = {bool(fixed[s])}" for s in body.scalars if s in E.BOOL_SCALARS]
    lines.append("    for _i in range(np.uint64(_lo), np.uint64(_hi)):  # unsigned: no wrap")
    lines += [f"        {a} = {arr[a]}[_i]" for a in body.arrays]
    for local, text in body.statements:
        lines.append(f"        {local} = {_expr(text, body.name)}")
    lines += [f"        {out[a]}[_i] = {local}" for a, local in body.writes]
    args = ", ".join(params)
    lines += ["", "", f"@njit(parallel={parallel}, {opts})", f"def run(_n, {args}, _c):"]
    if parallel:
        lines += ["    _nb = (_n + BLOCK - 1) // BLOCK",
                  "    for _b in prange(_nb):",
                  "        _lo = _b * BLOCK",
                  "        block(_lo, min(_n, _lo + BLOCK), " + args + ", _c)"]
    else:
        lines.append(f"    block(0, _n, {args}, _c)")
    return "\n".join(lines) + "\n"


def kernel_dir() -> Path | None:
    """Where generated kernel sources (and numba's cache, in ``__pycache__`` beside them) go:
    ``$ADAPTIVE_REF_KERNEL_DIR``, else ``~/.cache/adaptive_ref/kernels``, else a per-user folder
    in the temporary directory; None when none is writable (then nothing is cached)."""
    env = os.environ.get("ADAPTIVE_REF_KERNEL_DIR")
    tries = [Path(env)] if env else []
    tries += [Path.home() / ".cache" / "adaptive_ref" / "kernels",
              Path(tempfile.gettempdir()) / f"adaptive_ref-kernels-{os.getuid()}"]
    for d in tries:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    return None


def _load(name: str, source: str, directory: Path | None):
    """Import ``source`` as a module from a file named by its content (so a file, once written,
    never changes: numba's cache checks the file's time stamp), or exec it without a file."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    modname = f"_adaptive_ref_kernel_{name}_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    if directory is not None:
        path = directory / f"{modname}.py"
        try:
            if not path.exists() or path.read_text() != source:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(source)
                os.replace(tmp, path)  # atomic: another process never sees half a file
        except OSError:
            directory = None
    if directory is None:  # no writable folder: compile from memory, no disk cache
        source = source.replace("cache=True", "cache=False")
        module = type(sys)(modname)
        exec(compile(source, f"<{modname}>", "exec"), module.__dict__)  # noqa: S102
    else:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    sys.modules[modname] = module
    return module


@cache
def kernel(body: E.Body, inplace: bool, parallel: bool, consts: tuple = ()):
    """The compiled kernel for ``body`` (compiled on the first call with given array types)."""
    suffix = ("i" if inplace else "o") + ("p" if parallel else "s") + "".join(
        str(int(v)) for _, v in consts)
    source = render(body, inplace, parallel, consts)
    return _load(f"{body.name}_{suffix}", source, kernel_dir()).run


@cache
def kernel_for(name: str, flags: tuple, inplace: bool, parallel: bool, consts: tuple = ()):
    """:func:`kernel` for ``BODIES[name](*flags)``, looked up by the flags (cheap per call).

    The wrappers of :mod:`.numba_path` pass ``p, g`` and the state arrays, and receive the
    outputs, in one order: the body must write ``p`` and then each state array in input order."""
    body = E.BODIES[name](*flags)
    if [a for a, _ in body.writes] != ["p", *body.arrays[2:]]:
        msg = f"{body.name}: writes {body.writes} do not follow the arrays {body.arrays}"
        raise ValueError(msg)
    return kernel(body, inplace, parallel, consts)
