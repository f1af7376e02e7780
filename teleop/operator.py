"""What an operator input source gives, whatever the device: one ``OperatorSample`` per reading."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Button(str, enum.Enum):
    """Episode and hand buttons an operator can press (each source maps its own keys / gestures onto these)."""

    START = "start"  # start recording an episode
    SAVE = "save"  # stop the episode and keep it
    DISCARD = "discard"  # stop the episode and drop it
    HAND_OPEN = "hand_open"
    HAND_CLOSE = "hand_close"
    QUIT = "quit"


@dataclass(frozen=True)
class OperatorSample:
    """One reading of an operator input. ``stamp``: when the input was sampled (``time.monotonic()`` of this
    machine, or of the recording for a replay), the start of the teleop latency.

    Exactly what a source knows is filled in; the rest stays None:
    - ``wrist_pose``: (4, 4) target pose of the robot's hand base in the robot base frame (after the source's own
      calibration / scaling), for the arm IK;
    - ``arm_q``: (7,) FR3 joint targets directly (the scripted expert), bypassing the IK;
    - ``hand_keypoints``: (21, 3) human hand keypoints (MANO / MediaPipe order, metres, wrist frame), for
      retargeting;
    - ``hand_targets``: (6,) Inspire angles 0..1000 directly (buttons, presets, the expert).
    ``clutch``: True while the operator enables motion (a released clutch holds the robot where it is).
    ``buttons``: the buttons pressed since the previous sample."""

    stamp: float
    wrist_pose: np.ndarray | None = None
    arm_q: np.ndarray | None = None
    hand_keypoints: np.ndarray | None = None
    hand_targets: np.ndarray | None = None
    clutch: bool = True
    buttons: frozenset[Button] = field(default_factory=frozenset)


class OperatorSource(Protocol):
    """An operator input device. ``read()`` returns the newest sample, or None when there is none newer than the
    last one returned (the session's deadman counts from the last sample). ``close()`` releases the device."""

    name: str

    def read(self) -> OperatorSample | None: ...

    def close(self) -> None: ...
