"""The one action-chunk type: from ``JalaPolicy.predict`` through the ROS chunk topic to the arm and hand drivers.

A ``TimedChunk`` holds waypoint ``positions`` (N, J) for the named joints, each to be reached at an absolute
time ``times[i]`` on one clock, and the ``stamp`` of the observation it was computed from, on the same clock.
On the robot that clock is the ROS clock (system time on one machine: what ``header.stamp`` carries); in the
simulated evaluation it is the world's simulated time. Only the device drivers turn it into what the hardware
takes (franky's millisecond segments, one Modbus write per hand target), at the last moment, from ``now`` on the
same clock. ROS messages: ``jala_ros.conversions.chunk_to_trajectory`` / ``trajectory_to_chunk``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from embodiment import CHUNK_JOINT_NAMES


class ChunkError(ValueError):
    """A chunk is malformed (NaN, wrong or duplicate joints, times not increasing, nothing left to run, ...)."""


@dataclass(frozen=True)
class TimedChunk:
    times: np.ndarray  # (N,) absolute seconds, strictly increasing
    positions: np.ndarray  # (N, J) float64: positions[i] is the target for times[i]
    joint_names: tuple[str, ...]  # the J columns
    stamp: float  # time of the observation the chunk was computed from

    def __post_init__(self):
        names = tuple(self.joint_names)
        t = np.asarray(self.times, dtype=np.float64)
        pos = np.asarray(self.positions, dtype=np.float64)
        if not math.isfinite(self.stamp):
            raise ChunkError(f"chunk stamp {self.stamp} is not a valid time")
        if len(set(names)) != len(names):
            raise ChunkError(f"chunk has duplicate joint names {names}")
        if t.ndim != 1 or t.size == 0:
            raise ChunkError("chunk has no waypoints")
        if pos.shape != (t.size, len(names)):
            raise ChunkError(f"chunk positions are {pos.shape}, expected ({t.size}, {len(names)}) for joints {names}")
        bad = np.argwhere(~np.isfinite(pos))
        if bad.size:
            i, j = bad[0]
            raise ChunkError(f"chunk contains NaN/inf: waypoint {int(i)} joint {names[int(j)]} = {pos[i, j]} "
                             f"({len(bad)} bad value(s))")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ChunkError(f"chunk times must be finite and strictly increasing, got {t.tolist()}")
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "stamp", float(self.stamp))

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def at_rate(cls, positions, stamp: float, dt: float,
                joint_names: tuple[str, ...] = CHUNK_JOINT_NAMES) -> "TimedChunk":
        """The policy's chunk: action ``i`` applies ``dt * (i + 1)`` after the observation at ``stamp``."""
        n = np.asarray(positions).shape[0]
        return cls(stamp + dt * np.arange(1, n + 1, dtype=np.float64), positions, joint_names, stamp)

    @classmethod
    def from_relative(cls, stamp: float, time_from_start, positions, joint_names) -> "TimedChunk":
        """From times relative to ``stamp`` (a ROS JointTrajectory's ``time_from_start``), which must be >= 0."""
        rel = np.asarray(time_from_start, dtype=np.float64)
        if rel.size and (not np.all(np.isfinite(rel)) or rel[0] < 0):
            raise ChunkError(f"chunk time_from_start must be >= 0 and strictly increasing, got {rel.tolist()}")
        return cls(stamp + rel, positions, joint_names, stamp)

    # ------------------------------------------------------------------------------------------ reading
    @property
    def horizon(self) -> int:
        return int(self.times.size)

    @property
    def time_from_start(self) -> np.ndarray:
        """Waypoint times relative to the observation stamp."""
        return self.times - self.stamp

    def select(self, names: tuple[str, ...]) -> "TimedChunk":
        """The same chunk with only the columns ``names`` (in that order); ChunkError when one is missing."""
        names = tuple(names)
        missing = [n for n in names if n not in self.joint_names]
        if missing:
            raise ChunkError(f"chunk lacks joints {missing} (has {list(self.joint_names)})")
        idx = [self.joint_names.index(n) for n in names]
        return TimedChunk(self.times, self.positions[:, idx], names, self.stamp)

    def upcoming(self, now: float, min_lead: float = 0.0) -> tuple["TimedChunk | None", int]:
        """(the waypoints due later than ``now + min_lead``, or None when none is; how many were dropped)."""
        keep = np.flatnonzero(self.times > now + min_lead)
        dropped = int(self.times.size - keep.size)
        if keep.size == 0:
            return None, dropped
        if dropped == 0:
            return self, 0
        return TimedChunk(self.times[keep], self.positions[keep], self.joint_names, self.stamp), dropped

    def relative_to(self, now: float) -> np.ndarray:
        """Waypoint times as seconds from ``now``; ChunkError when one is not in the future (drivers execute only
        what lies ahead: ``upcoming`` first)."""
        rel = self.times - now
        if rel[0] <= 0:
            raise ChunkError(f"chunk waypoint 0 is {-rel[0]:.3f} s in the past")
        return rel
