"""Stale-input detection for the supervisor (plain Python): every watched input must be fed within its timeout
while active; what is not is a ``Fault`` naming the input and its age."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class WatchItem:
    timeout: float  # seconds
    last: float | None = None  # last time it was fed (monotonic)
    armed_at: float = 0.0  # when it became active (for items never fed)
    active: bool = True


@dataclass(frozen=True)
class Fault:
    source: str
    reason: str
    detected_at: float  # monotonic


class Watchdog:
    """Stale-input detector: each item must be fed at least every ``timeout`` seconds while active.

    An item never fed counts from when it was armed (start or activation), so a camera that never sends a
    frame is also a fault once its timeout has passed."""

    def __init__(self, now: float | None = None):
        self.items: dict[str, WatchItem] = {}
        self._now0 = time.monotonic() if now is None else now
        self._lock = threading.Lock()

    def add(self, name: str, timeout: float, active: bool = True, now: float | None = None,
            grace: float = 0.0) -> None:
        """Watch ``name``; an item never fed faults ``grace + timeout`` after ``now`` (startup allowance)."""
        if timeout <= 0:
            raise ValueError(f"watchdog timeout for {name} must be positive")
        with self._lock:
            self.items[name] = WatchItem(timeout, None, (self._now0 if now is None else now) + grace, active)

    def feed(self, name: str, t: float | None = None) -> None:
        with self._lock:
            self.items[name].last = time.monotonic() if t is None else t

    def set_active(self, name: str, active: bool, now: float | None = None, keep_last: bool = False) -> None:
        """(De)activate an item. On activation its clock restarts (``keep_last``: messages received while it was
        inactive still count, so an input that is already stale faults at once)."""
        with self._lock:
            item = self.items[name]
            if active and not item.active:
                item.armed_at = time.monotonic() if now is None else now
                if not keep_last:
                    item.last = None
            item.active = active

    def check(self, now: float | None = None) -> list[Fault]:
        now = time.monotonic() if now is None else now
        faults = []
        with self._lock:
            for name, it in self.items.items():
                if not it.active:
                    continue
                ref = it.last if it.last is not None else it.armed_at
                age = now - ref
                if age > it.timeout:
                    what = "no message yet" if it.last is None else f"last message {age * 1e3:.0f} ms ago"
                    faults.append(Fault(name, f"stale {name}: {what} (timeout {it.timeout * 1e3:.0f} ms)", now))
        return faults
