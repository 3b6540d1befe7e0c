"""Progress of a long ``adaptive-ref conform`` run, on stderr.

On a terminal: one line redrawn in place (a bar, runs done, the implementation, failures so far,
elapsed and estimated remaining time). Elsewhere (CI logs, pipes): a plain line every
``interval`` seconds and at the end of each implementation. No dependency.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``progress(impl, i, n, result)`` as :func:`adaptive_ref.conformance.run_all` calls it."""

    def __init__(self, total: int, stream=None, *, interval: float = 10.0, width: int = 100):
        self.total, self.stream, self.interval, self.width = total, stream, interval, width
        if self.stream is None:
            self.stream = sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.done = self.failed = 0
        self.t0 = self.last = time.perf_counter()
        self.drawn = False

    def __call__(self, impl: str, i: int, n: int, res) -> None:
        self.done += 1
        self.failed += res.status in ("fail", "error", "xpass")
        now = time.perf_counter()
        if self.tty:
            if now - self.last >= 0.1 or i == n:
                self.last = now
                self._draw(impl, i, n, now)
        elif i == n or now - self.last >= self.interval:
            self.last = now
            print(f"[{impl}] {i}/{n} cases, {self.done}/{self.total} runs, {self.failed} failed "
                  f"({now - self.t0:.0f} s)", file=self.stream, flush=True)

    def _draw(self, impl: str, i: int, n: int, now: float) -> None:
        elapsed = now - self.t0
        frac = self.done / self.total if self.total else 1.0
        eta = f", ~{elapsed / frac - elapsed:.0f} s left" if 0 < frac < 1 else ""
        bar = "#" * round(20 * frac)
        text = (f"[{bar:20s}] {self.done}/{self.total} runs  {impl} {i}/{n}  "
                f"{self.failed} failed  {elapsed:.0f} s{eta}")
        self.stream.write("\r" + text[: self.width - 1].ljust(self.width - 1))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Clear the redrawn line (a terminal) so the report starts on a clean line."""
        if self.drawn:
            self.stream.write("\r" + " " * (self.width - 1) + "\r")
            self.stream.flush()
            self.drawn = False
