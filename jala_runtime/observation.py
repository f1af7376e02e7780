"""Observation assembly: the newest camera frame(s) and joint states, checked for staleness, as one
``Observation`` the policy takes. The ROS policy node feeds it from its subscriptions; the simulated evaluation
from the world."""
from __future__ import annotations

import threading
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
    """Newest-only store of frames and joint states; ``assemble(now)`` applies the staleness rules:
    every view must have a frame, the oldest view's frame and the joint states (by arrival) must be at most
    ``max_age_s`` old. Frames are kept as given and decoded (``decode``) only when an observation is built,
    so a frame that is never used costs nothing. Thread-safe."""

    def __init__(self, num_views: int, max_age_s: float, decode: Callable[[Any], np.ndarray] | None = None):
        if num_views < 1:
            raise ValueError("an observation needs at least one camera view")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.max_age_s = float(max_age_s)
        self._decode = decode or (lambda x: x)
        self._frames: list[tuple[float, Any] | None] = [None] * num_views
        self._arm: tuple[float, np.ndarray] | None = None
        self._hand: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()

    def set_frame(self, view: int, stamp: float, frame: Any) -> None:
        with self._lock:
            self._frames[view] = (float(stamp), frame)

    def set_arm(self, q: np.ndarray, received_at: float) -> None:
        value = _state(q, ARM_DOF, "arm")
        with self._lock:
            self._arm = (float(received_at), value)

    def set_hand(self, angles: np.ndarray, received_at: float) -> None:
        value = _state(angles, HAND_DOF, "hand")
        with self._lock:
            self._hand = (float(received_at), value)

    def newest_stamp(self) -> float | None:
        with self._lock:
            f = self._frames[0]
        return None if f is None else f[0]

    def assemble(self, now: float, instruction: str) -> tuple[Observation | None, str]:
        """(the observation, "") or (None, why not)."""
        with self._lock:
            frames, arm, hand = list(self._frames), self._arm, self._hand
        if any(f is None for f in frames):
            return None, "waiting for camera frames"
        if arm is None or hand is None:
            return None, "waiting for joint states"
        oldest = min(f[0] for f in frames)
        if now - oldest > self.max_age_s:
            return None, f"newest camera frame is {now - oldest:.3f} s old"
        if now - min(arm[0], hand[0]) > self.max_age_s:
            return None, "joint states are stale"
        images = [np.asarray(self._decode(f[1])) for f in frames]
        return Observation(images, np.concatenate([arm[1], hand[1]]), frames[0][0], instruction), ""


def _state(values, dof: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (dof,):
        raise ValueError(f"{what} state must be ({dof},), got {v.shape}")
    return v
