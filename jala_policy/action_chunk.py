"""The policy's output: a chunk of future actions with the times they apply to."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARM_DOF = 7  # FR3 joint positions, radians (absolute targets)
HAND_DOF = 6  # Inspire angles, native 0..1000 (1000 = open), DoF order pinky, ring, middle, index, thumb bend, thumb rot
ACTION_DIM = ARM_DOF + HAND_DOF
# The Inspire's command range: predict clamps the hand columns into it (the hand cannot close past 0 or open past
# 1000; an untrained or extrapolating head can ask for -12). Arm targets are never clamped: the FR3 safety gate
# refuses what is out of its limits.
HAND_COMMAND_RANGE = (0.0, 1000.0)
HAND_SIDE = "right"  # the FR3 carries one right Inspire RH56 hand: its Latent State Perceiver head is the right one


@dataclass(frozen=True)
class ActionChunk:
    """``actions[i]`` is the target for time ``timestamps[i]`` (seconds, same clock as the observation stamp).

    The default robot action layout is 13 = 7 FR3 joint targets (rad) + 6 Inspire angles (0..1000).
    """

    actions: np.ndarray  # (horizon, action_dim) float32
    timestamps: np.ndarray  # (horizon,) float64, strictly increasing

    def __post_init__(self):
        a = np.asarray(self.actions, dtype=np.float32)
        t = np.asarray(self.timestamps, dtype=np.float64)
        if a.ndim != 2 or t.shape != (a.shape[0],):
            raise ValueError(f"actions must be (horizon, dim) with one timestamp per step; got {a.shape}, {t.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action chunk contains NaN or inf")
        if a.shape[0] > 1 and np.any(np.diff(t) <= 0):
            raise ValueError("action chunk timestamps must be strictly increasing")
        object.__setattr__(self, "actions", a)
        object.__setattr__(self, "timestamps", t)

    @classmethod
    def at_rate(cls, actions: np.ndarray, start_time: float, dt: float) -> "ActionChunk":
        """Chunk whose first action applies ``dt`` after ``start_time`` and each next one ``dt`` later."""
        n = np.asarray(actions).shape[0]
        return cls(actions, start_time + dt * np.arange(1, n + 1, dtype=np.float64))

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def arm(self) -> np.ndarray:
        """(horizon, 7) FR3 joint targets in radians (default action layout)."""
        return self.actions[:, :ARM_DOF]

    @property
    def hand(self) -> np.ndarray:
        """(horizon, 6) Inspire angle targets, 0..1000 (default action layout)."""
        return self.actions[:, ARM_DOF:ARM_DOF + HAND_DOF]
