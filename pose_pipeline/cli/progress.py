"""A one-line progress bar on stderr (no dependency), throttled to a few redraws a second, and
drawn only on a terminal: elsewhere (a CI log, a file) it writes one line when it closes."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, stream: TextIO = sys.stderr, min_interval_s: float = 0.2,
                 unit: str = "frames", rate_unit: str = "fps") -> None:
        self.label = label
        self.unit, self.rate_unit = unit, rate_unit
        self._stream = stream
        self._interval = min_interval_s
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._enabled = stream.isatty()
        self._last: tuple[int, int, str] | None = None

    def __call__(self, done: int, total: int, stage: str = "") -> None:
        self._last = (done, total, stage)
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < self._interval and done < total:
            return
        self._last_draw = now
        fraction = min(1.0, done / total) if total else 0.0
        bar = "#" * int(fraction * 30)
        rate = done / max(now - self._start, 1e-9)
        extra = f" {stage}" if stage else ""
        self._stream.write(f"\r{self.label} [{bar:<30}] {fraction:4.0%} {done}/{total} {self.unit} "
                           f"{rate:6.1f} {self.rate_unit}{extra}   ")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
        elif not self._enabled and self._last is not None:
            done, total, stage = self._last
            fraction = min(1.0, done / total) if total else 0.0
            extra = f" {stage}" if stage else ""
            self._stream.write(f"{self.label}: {done}/{total} {self.unit} ({fraction:.0%}){extra}\n")
        self._stream.flush()
