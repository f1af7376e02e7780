"""Observation assembly: the newest camera frame(s) and joint states, checked for staleness, as one
``Observation`` the policy takes. The ROS policy node feeds it from its subscriptions; the simulated evaluation
from the world."""
from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embodiment import ARM_DOF, HAND_DOF


@dataclass(frozen=True)
class Observation:
    images: list[np.ndarray]  # one HxWx3 uint8 RGB frame per camera view, in the configured order
    proprio: np.ndarray  # (13,) FR3 joint positions (rad) + Inspire angles (0..1000)
    stamp: float  # capture time of the main (first) view's frame: the chunk computed from it carries this stamp
    instruction: str


class ObservationAssembler:
    """Newest-only store of frames, and a short history of joint states; ``assemble(now)`` applies the staleness
    rules: every view must have a frame, the oldest view's frame and the joint states (by arrival) must be at most
    ``max_age_s`` old. The joint states go into the observation as they were when the main view's frame was
    captured (interpolated in the history; the newest when the frame is newer): the policy learnt from frames and
    states recorded together, and its chunk is anchored at the frame's stamp, so states newer than the frame would
    shift every waypoint early by the frame's age. Frames are kept as given and decoded (``decode``) only when an
    observation is built, so a frame that is never used costs nothing. Thread-safe."""

    STATE_HISTORY_S = 1.0  # joint states kept for matching a frame's capture time

    def __init__(self, num_views: int, max_age_s: float, decode: Callable[[Any], np.ndarray] | None = None):
        if num_views < 1:
            raise ValueError("an observation needs at least one camera view")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.max_age_s = float(max_age_s)
        self._decode = decode or (lambda x: x)
        self._frames: list[tuple[float, Any] | None] = [None] * num_views
        self._arm: deque[tuple[float, np.ndarray]] = deque()  # (arrival time, value), oldest first
        self._hand: deque[tuple[float, np.ndarray]] = deque()
        self._lock = threading.Lock()

    def set_frame(self, view: int, stamp: float, frame: Any) -> None:
        with self._lock:
            self._frames[view] = (float(stamp), frame)

    def set_arm(self, q: np.ndarray, received_at: float) -> None:
        self._add(self._arm, float(received_at), _state(q, ARM_DOF, "arm"))

    def set_hand(self, angles: np.ndarray, received_at: float) -> None:
        self._add(self._hand, float(received_at), _state(angles, HAND_DOF, "hand"))

    def _add(self, history: deque, t: float, value: np.ndarray) -> None:
        with self._lock:
            if history and t < history[-1][0]:  # out of order (a restarted clock): start over
                history.clear()
            history.append((t, value))
            while history[0][0] < t - self.STATE_HISTORY_S:
                history.popleft()

    def newest_stamp(self) -> float | None:
        with self._lock:
            f = self._frames[0]
        return None if f is None else f[0]

    def assemble(self, now: float, instruction: str) -> tuple[Observation | None, str]:
        """(the observation, "") or (None, why not)."""
        with self._lock:
            frames, arm, hand = list(self._frames), list(self._arm), list(self._hand)
        if any(f is None for f in frames):
            return None, "waiting for camera frames"
        if not arm or not hand:
            return None, "waiting for joint states"
        oldest = min(f[0] for f in frames)
        if now - oldest > self.max_age_s:
            return None, f"newest camera frame is {now - oldest:.3f} s old"
        if now - min(arm[-1][0], hand[-1][0]) > self.max_age_s:
            return None, "joint states are stale"
        stamp = frames[0][0]
        images = [np.asarray(self._decode(f[1])) for f in frames]
        proprio = np.concatenate([_state_at(arm, stamp), _state_at(hand, stamp)])
        return Observation(images, proprio, stamp, instruction), ""


def _state_at(history: list[tuple[float, np.ndarray]], t: float) -> np.ndarray:
    """The state at time ``t``, linearly interpolated in the (time-ordered) history; its first or newest value
    outside it."""
    times = [h[0] for h in history]
    i = bisect.bisect_right(times, t)
    if i == 0:
        return history[0][1]
    if i == len(history):
        return history[-1][1]
    (t0, v0), (t1, v1) = history[i - 1], history[i]
    w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
    return v0 + w * (v1 - v0)


def _state(values, dof: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (dof,):
        raise ValueError(f"{what} state must be ({dof},), got {v.shape}")
    return v
