"""Per-element update bodies, written once, rendered as CUDA C (CuPy) or run on NumPy arrays.

Each ``<name>_body(**flags)`` returns a :class:`Body`: the input arrays, the scalar names, the
statements ``(local, expression)`` in the reference's operation order, and which local each state
array receives. Expressions use only ``+ - * /``, unary minus, parentheses, comparisons and the
functions ``sqrt``, ``fabs``, ``sel(c, a, b)`` (``c ? a : b``) and ``maxnan(a, b)``
(``numpy.maximum``: a NaN in either argument wins), so that the same text is valid CUDA C++ and
Python. :func:`emulate` evaluates a body with NumPy arrays: the tests run it against the
reference on the CPU, which checks the operation order of the CUDA kernels without a GPU (the
GPU tests then check the compiled kernels on CuPy arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Body", "emulate", "BODIES", "BOOL_SCALARS"]

BOOL_SCALARS = frozenset({"first", "rectify"})  # per-step flags, not numbers of the array dtype


@dataclass(frozen=True)
class Body:
    name: str
    arrays: tuple[str, ...]  # inputs, in order; the first is p, the second g
    scalars: tuple[str, ...]
    statements: tuple[tuple[str, str], ...]
    writes: tuple[tuple[str, str], ...]  # (array, local): array receives local

    def key(self) -> str:
        return self.name


def _wd(maximize: bool, coupled: bool, decoupled: bool):
    s = [("gi", "g"), ("pi", "p")]
    if maximize:
        s.append(("gi", "-gi"))
    if coupled:
        s.append(("gi", "gi + wd * pi"))
    if decoupled:
        s.append(("pi", "pi * decay"))
    return s


def adam_body(maximize=False, wd_mode=0, ams=0, bc=True, hat=False, use_er=False) -> Body:
    s = _wd(maximize, wd_mode == 1, wd_mode == 2)
    s += [("mi", "b1 * m + omb1 * gi"), ("vi", "b2 * v + omb2 * (gi * gi)")]
    if ams == 1:
        s += [("vm", "maxnan(vmax, vi)"), ("raw", "vm"),
              ("corr", "vm / bc2" if bc else "vm")]
    elif ams == 2:
        s += [("nh", "vi / bc2" if bc else "vi"), ("vm", "maxnan(vmax, nh)"),
              ("raw", "vm * bc2" if bc else "vm"), ("corr", "vm")]
    else:
        s += [("raw", "vi"), ("corr", "vi / bc2" if bc else "vi")]
    x = "raw" if hat else "corr"
    s.append(("root", f"sqrt({x} + eps_root)" if use_er else f"sqrt({x})"))
    if hat:
        s.append(("pn", "pi - step * (mi / (root + eps))"))
    else:
        s.append(("mh", "mi / bc1" if bc else "mi"))
        s.append(("pn", "pi - lr * (mh / (root + eps))"))
    arrays = ("p", "g", "m", "v") + (("vmax",) if ams else ())
    writes = (("p", "pn"), ("m", "mi"), ("v", "vi")) + ((("vmax", "vm"),) if ams else ())
    flags = f"{int(maximize)}{wd_mode}{ams}{int(bc)}{int(hat)}{int(use_er)}"
    return Body(f"adaptive_ref_adam_{flags}", arrays,
                ("b1", "omb1", "b2", "omb2", "bc1", "bc2", "lr", "eps", "eps_root", "wd",
                 "decay", "step"), tuple(s), writes)


def sgd_body(maximize=False, coupled=False, has_buf=False, inside=False, nesterov=False) -> Body:
    """``first`` is a 0-d bool input (count == 0 and not dampen_first_step), read on device."""
    s = _wd(maximize, coupled, False)
    if not has_buf:
        s.append(("pn", "pi - lr * gi"))
        arrays, writes = ("p", "g"), (("p", "pn"),)
    else:
        s.append(("x", "lr * gi" if inside else "gi"))
        s.append(("bi", "mom * b + omd * x"))
        s.append(("bi", "sel(first, x, bi)"))
        s.append(("d", "x + mom * bi" if nesterov else "bi"))
        s.append(("pn", "pi - d" if inside else "pi - lr * d"))
        arrays, writes = ("p", "g", "b"), (("p", "pn"), ("b", "bi"))
    flags = f"{int(maximize)}{int(coupled)}{int(has_buf)}{int(inside)}{int(nesterov)}"
    return Body(f"adaptive_ref_sgd_{flags}", arrays, ("lr", "wd", "mom", "omd", "first"),
                tuple(s), writes)


def adagrad_body(maximize=False, coupled=False, inside=False) -> Body:
    s = _wd(maximize, coupled, False)
    s.append(("si", "s + gi * gi"))
    if inside:
        s.append(("safe", "sel(si > zero, si, one)"))
        s.append(("u", "sel(si > zero, gi / sqrt(safe + eps), gi * zero)"))
        s.append(("pn", "pi - clr * u"))
    else:
        s.append(("pn", "pi - clr * (gi / (sqrt(si) + eps))"))
    flags = f"{int(maximize)}{int(coupled)}{int(inside)}"
    return Body(f"adaptive_ref_adagrad_{flags}", ("p", "g", "s"),
                ("clr", "eps", "wd", "zero", "one"), tuple(s), (("p", "pn"), ("s", "si")))


def rmsprop_body(maximize=False, coupled=False, centered=False, bc=False, inside_eps=False,
                 has_buf=False, lr_inside=False, nesterov=False) -> Body:
    s = _wd(maximize, coupled, False)
    s.append(("vi", "alpha * v + oma * (gi * gi)"))
    if centered:
        s.append(("mi", "alpha * m + oma * gi"))
    s.append(("vh", "vi / bcf" if bc else "vi"))
    if centered:
        s.append(("mh", "mi / bcf" if bc else "mi"))
        s.append(("w", "vh - mh * mh"))
    else:
        s.append(("w", "vh"))
    s.append(("den", "sqrt(w + eps)" if inside_eps else "sqrt(w) + eps"))
    s.append(("u", "gi / den"))
    if not has_buf:
        s.append(("pn", "pi - lr * u"))
    else:
        s.append(("x", "lr * u" if lr_inside else "u"))
        s.append(("bi", "mom * b + x"))
        s.append(("d", "x + mom * bi" if nesterov else "bi"))
        s.append(("pn", "pi - d" if lr_inside else "pi - lr * d"))
    arrays = ("p", "g", "v") + (("m",) if centered else ()) + (("b",) if has_buf else ())
    writes = (("p", "pn"), ("v", "vi")) + ((("m", "mi"),) if centered else ()) \
        + ((("b", "bi"),) if has_buf else ())
    flags = "".join(str(int(f)) for f in (maximize, coupled, centered, bc, inside_eps, has_buf,
                                          lr_inside, nesterov))
    return Body(f"adaptive_ref_rmsprop_{flags}", arrays,
                ("lr", "alpha", "oma", "eps", "mom", "wd", "bcf"), tuple(s), writes)


def adamax_body(maximize=False, coupled=False, eps_in_max=True) -> Body:
    s = _wd(maximize, coupled, False)
    s.append(("mi", "b1 * m + omb1 * gi"))
    if eps_in_max:
        s += [("ui", "maxnan(b2 * u, fabs(gi) + eps)"), ("den", "ui")]
    else:
        s += [("ui", "maxnan(b2 * u, fabs(gi))"), ("den", "ui + eps")]
    s.append(("pn", "pi - clr * (mi / den)"))
    flags = f"{int(maximize)}{int(coupled)}{int(eps_in_max)}"
    return Body(f"adaptive_ref_adamax_{flags}", ("p", "g", "m", "u"),
                ("b1", "omb1", "b2", "eps", "clr", "wd"), tuple(s),
                (("p", "pn"), ("m", "mi"), ("u", "ui")))


def nadam_body(maximize=False, coupled=False, decoupled=False) -> Body:
    s = _wd(maximize, coupled, decoupled)
    s += [("mi", "b1 * m + omb1 * gi"), ("vi", "b2 * v + omb2 * (gi * gi)"),
          ("den", "sqrt(vi / bc2) + eps"), ("pn", "pi - cg * (gi / den) - cm * (mi / den)")]
    flags = f"{int(maximize)}{int(coupled)}{int(decoupled)}"
    return Body(f"adaptive_ref_nadam_{flags}", ("p", "g", "m", "v"),
                ("b1", "omb1", "b2", "omb2", "bc2", "eps", "cg", "cm", "wd", "decay"), tuple(s),
                (("p", "pn"), ("m", "mi"), ("v", "vi")))


def radam_body(maximize=False, coupled=False, decoupled=False, hat=True, use_er=False) -> Body:
    """``rectify`` is a 0-d bool input (rho_t above the threshold), read on device."""
    s = _wd(maximize, coupled, decoupled)
    s += [("mi", "b1 * m + omb1 * gi"), ("vi", "b2 * v + omb2 * (gi * gi)"),
          ("mh", "mi / bc1")]
    if hat:
        s.append(("root", "sqrt(vi + eps_root)" if use_er else "sqrt(vi)"))
        s.append(("ad", "sbc2 / (root + eps)"))
    else:
        s.append(("vh", "vi / bc2"))
        s.append(("root", "sqrt(vh + eps_root)" if use_er else "sqrt(vh)"))
        s.append(("ad", "one / (root + eps)"))
    s += [("rd", "mh * lr * ad * rect"), ("pl", "mh * lr"), ("pn", "pi - sel(rectify, rd, pl)")]
    flags = f"{int(maximize)}{int(coupled)}{int(decoupled)}{int(hat)}{int(use_er)}"
    return Body(f"adaptive_ref_radam_{flags}", ("p", "g", "m", "v"),
                ("b1", "omb1", "b2", "omb2", "bc1", "bc2", "sbc2", "lr", "eps", "eps_root",
                 "rect", "one", "wd", "decay", "rectify"), tuple(s),
                (("p", "pn"), ("m", "mi"), ("v", "vi")))


BODIES = {"adam": adam_body, "sgd": sgd_body, "adagrad": adagrad_body, "rmsprop": rmsprop_body,
          "adamax": adamax_body, "nadam": nadam_body, "radam": radam_body}


def _maxnan(a, b):
    return np.where((a >= b) | (a != a), a, b)


_FUNCS = {"sqrt": np.sqrt, "fabs": np.abs, "sel": np.where, "maxnan": _maxnan}


def emulate(body: Body, arrays: dict, scalars: dict) -> dict:
    """Run ``body`` on NumPy arrays (scalars as NumPy scalars or 0-d arrays of the array dtype);
    return ``{array name: new value}``."""
    env = dict(_FUNCS)
    env.update(arrays)
    env.update(scalars)
    with np.errstate(all="ignore"):
        for local, expr in body.statements:
            env[local] = np.asarray(eval(expr, {"__builtins__": {}}, env))  # noqa: S307
    return {a: env[local] for a, local in body.writes}
