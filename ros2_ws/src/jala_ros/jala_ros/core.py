"""Plain-Python runtime logic shared by the nodes (no ROS imports here).

Times: chunk waypoint times are absolute seconds on the ROS clock (system time on one machine, what
``header.stamp`` carries); the device-facing helpers convert them to relative times or to ``time.monotonic()``.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

ARM_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8))
HAND_JOINT_NAMES = ("inspire_pinky", "inspire_ring", "inspire_middle", "inspire_index", "inspire_thumb_bend",
                    "inspire_thumb_rotation")
CHUNK_JOINT_NAMES = ARM_JOINT_NAMES + HAND_JOINT_NAMES


class ChunkError(ValueError):
    """A received action chunk is malformed (NaN, wrong joints, times not increasing, ...)."""


@dataclass(frozen=True)
class TimedChunk:
    """A chunk with absolute waypoint times (ROS clock seconds)."""

    stamp: float  # time of the observation the chunk was computed from
    times: np.ndarray  # (N,) absolute times, strictly increasing
    positions: np.ndarray  # (N, J)
    joint_names: tuple[str, ...]

    @classmethod
    def from_parts(cls, stamp: float, time_from_start: np.ndarray, positions: np.ndarray,
                   joint_names: tuple[str, ...] | list[str]) -> "TimedChunk":
        """Validate a received chunk; raises ChunkError with the reason."""
        names = tuple(joint_names)
        tfs = np.asarray(time_from_start, dtype=np.float64)
        pos = np.asarray(positions, dtype=np.float64)
        if not math.isfinite(stamp) or stamp <= 0:
            raise ChunkError(f"chunk header stamp {stamp} is not a valid time")
        if len(set(names)) != len(names):
            raise ChunkError(f"chunk has duplicate joint names {names}")
        if tfs.ndim != 1 or tfs.size == 0:
            raise ChunkError("chunk has no waypoints")
        if pos.shape != (tfs.size, len(names)):
            raise ChunkError(f"chunk positions are {pos.shape}, expected ({tfs.size}, {len(names)}) for joints {names}")
        bad = np.argwhere(~np.isfinite(pos))
        if bad.size:
            i, j = bad[0]
            raise ChunkError(f"chunk contains NaN/inf: waypoint {int(i)} joint {names[int(j)]} = {pos[i, j]} "
                             f"({len(bad)} bad value(s))")
        if not np.all(np.isfinite(tfs)) or tfs[0] < 0 or np.any(np.diff(tfs) <= 0):
            raise ChunkError(f"chunk time_from_start must be >= 0 and strictly increasing, got {tfs.tolist()}")
        return cls(float(stamp), stamp + tfs, pos, names)

    def select(self, names: tuple[str, ...]) -> np.ndarray:
        """(N, len(names)) columns for ``names``; ChunkError when one is missing."""
        missing = [n for n in names if n not in self.joint_names]
        if missing:
            raise ChunkError(f"chunk lacks joints {missing} (has {list(self.joint_names)})")
        idx = [self.joint_names.index(n) for n in names]
        return self.positions[:, idx]

    def upcoming(self, now: float, min_lead: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
        """Waypoints still ahead of ``now``: (times relative to now, row indices, number dropped)."""
        keep = np.flatnonzero(self.times > now + min_lead)
        return self.times[keep] - now, keep, int(self.times.size - keep.size)


def next_inference_time(obs_stamp: float, action_dt: float, execute_steps: int, latency_estimate: float) -> float:
    """When to start computing the next chunk so that it arrives after ``execute_steps`` of the current one:
    the chunk computed from the observation at ``obs_stamp`` applies at obs_stamp + dt * (1..H); its successor
    should be ready at obs_stamp + dt * execute_steps, so inference starts one latency earlier (never before the
    current observation)."""
    return max(obs_stamp, obs_stamp + action_dt * execute_steps - max(0.0, latency_estimate))


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


# ------------------------------------------------------------------------------------------------ watchdog
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


# --------------------------------------------------------------------------------------------- hand player
@dataclass
class _Schedule:
    times: np.ndarray  # monotonic
    angles: np.ndarray  # (N, 6)
    next_index: int = 0


class HandPlayer:
    """Follows a timed hand trajectory: during (t[i-1], t[i]] the hand is commanded to ``angles[i]`` (the
    target it must reach at t[i]). Runs its own thread; ``load`` replaces the schedule (a new chunk preempts
    the old one), ``hold`` clears it and holds the hand. Device errors are reported through ``on_error``."""

    def __init__(self, hand, on_error=None, period: float = 0.005):
        self.hand = hand
        self.on_error = on_error
        self.period = period
        self._sched: _Schedule | None = None
        self._cv = threading.Condition()
        self._stop = False
        self.commands_sent = 0
        self._thread = threading.Thread(target=self._run, name="hand-player", daemon=True)
        self._thread.start()

    def load(self, times_monotonic: np.ndarray, angles: np.ndarray) -> None:
        with self._cv:
            self._sched = _Schedule(np.asarray(times_monotonic, dtype=np.float64), np.asarray(angles, np.float64))
            self._cv.notify_all()

    def clear(self) -> None:
        with self._cv:
            self._sched = None
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._sched = None
            self._cv.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and self._sched is None:
                    self._cv.wait()
                if self._stop:
                    return
                s = self._sched
                now = time.monotonic()
                # The target for "now" is the first waypoint not yet reached in time.
                i = int(np.searchsorted(s.times, now, side="left"))
                if i >= len(s.times):  # past the last waypoint: its target stays commanded
                    self._sched = None
                    continue
                send = None
                if i >= s.next_index:
                    send = s.angles[i]
                    s.next_index = i + 1
                wait = min(self.period, max(0.0, s.times[i] - now))
            if send is not None:
                try:
                    self.hand.set_angles(send)
                    self.commands_sent += 1
                except Exception as exc:  # noqa: BLE001 - reported, then the schedule is dropped
                    self.clear()
                    if self.on_error:
                        self.on_error(exc)
                    continue
            with self._cv:
                if self._sched is s and not self._stop:
                    self._cv.wait(timeout=max(wait, 0.001))
