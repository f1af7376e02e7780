"""Small measurements the nodes and benchmarks report: event rates and latency percentiles."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateMeter:
    """Counts events over a sliding window; ``rate()`` in Hz."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self._t: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        with self._lock:
            self._t.append(t)
            self.count += 1
            while self._t and self._t[0] < t - self.window:
                self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            ts = [t for t in self._t if t >= now - self.window]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)


def percentiles(values, ps=(50, 99)) -> dict[str, float]:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {f"p{p}": float("nan") for p in ps}
    return {f"p{p}": float(np.percentile(v, p)) for p in ps}
