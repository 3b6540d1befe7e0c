"""The array backends the tests run on (the enum lives in :mod:`adaptive_ref.backends`).

``Backend.available()`` lists those importable here; ``ADAPTIVE_REF_BACKENDS=numpy,torch``
narrows the set (an unknown name is an error listing the valid ones). A backend that is not
installed is skipped with a reason, never silently passed. ``NUMPY_READONLY`` hands out
read-only NumPy arrays, so any write into an input fails loudly.
"""

from __future__ import annotations

import os

from ..backends import Backend

__all__ = ["Backend", "selected_backends"]


def selected_backends() -> list[Backend]:
    """All backends, or those named in ``ADAPTIVE_REF_BACKENDS`` (comma-separated)."""
    raw = os.environ.get("ADAPTIVE_REF_BACKENDS", "").strip()
    if not raw:
        return list(Backend)
    out = []
    valid = [b.value for b in Backend]
    for name in (s.strip() for s in raw.split(",") if s.strip()):
        if name not in valid:
            msg = f"ADAPTIVE_REF_BACKENDS names {name!r}; valid names: {', '.join(valid)}"
            raise ValueError(msg)
        out.append(Backend(name))
    return out
