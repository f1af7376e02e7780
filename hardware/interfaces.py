"""One small interface per device kind.

The real drivers (franky / Modbus / pyrealsense2) and the simulated task world implement these, so the
runtime does not care which it talks to. All arrays are numpy; all times are seconds.

Conventions
- Arm joint order is FR3 joints 1..7, radians.
- Hand DoF order is the Inspire order: pinky, ring, middle, index, thumb bend, thumb rotation; angles in the
  hand's native 0..1000 units (1000 = fully open / extended, 0 = fully closed).
- Camera colour is HxWx3 uint8 RGB; depth, when present, is HxW float32 metres aligned to colour.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from embodiment import ARM_JOINT_NAMES
from jala_runtime.chunk import TimedChunk


class DeviceError(RuntimeError):
    """A device refused a command, faulted, or could not be reached. The message says which and why."""


class SafetyViolation(DeviceError):
    """A command was refused by a safety gate (limits, step size, workspace). Nothing was sent."""


class DeviceTimeout(DeviceError):
    """A device did not answer in time."""


# ----------------------------------------------------------------------------------------------- arm
@dataclass(frozen=True)
class ArmState:
    q: np.ndarray  # (7,) joint positions [rad]
    dq: np.ndarray  # (7,) joint velocities [rad/s]
    ee_pose: np.ndarray  # (4, 4) end-effector pose in the base frame
    tau_ext: np.ndarray  # (7,) estimated external joint torques [Nm]
    stamp: float  # time.monotonic() when read
    in_error: bool = False
    error_message: str = ""


def arm_waypoints(chunk: TimedChunk, now: float) -> tuple[np.ndarray, np.ndarray]:
    """What an arm driver executes of ``chunk``: (times relative to ``now``, (N, 7) joint targets in FR3 joint
    order). ``now`` is the current time on the chunk's clock. ChunkError (a ValueError) when the chunk lacks an FR3
    joint or its first waypoint is not in the future (``TimedChunk.upcoming`` drops past ones first)."""
    arm = chunk.select(ARM_JOINT_NAMES)
    return arm.relative_to(now), arm.positions


class Device(abc.ABC):
    """What every device has: connect / disconnect, and use as a context manager (connected inside)."""

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.disconnect()


class Arm(Device):
    """A 7-DoF arm that executes timed joint-space chunks asynchronously."""

    @abc.abstractmethod
    def read_state(self) -> ArmState: ...

    @abc.abstractmethod
    def execute(self, chunk: TimedChunk, now: float) -> None:
        """Start executing ``chunk`` (its FR3 columns; waypoints at absolute times on the clock ``now`` was read
        from: ``arm_waypoints``) and return at once. A new chunk preempts the running one without a stop. Raises
        SafetyViolation (nothing sent) when the chunk breaks a limit, ChunkError when it is malformed."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Stop following commands and hold the current position (decelerating smoothly)."""

    @abc.abstractmethod
    def recover(self) -> None:
        """Clear a recoverable error (e.g. a reflex) so commands are accepted again."""



# ---------------------------------------------------------------------------------------------- hand
@dataclass(frozen=True)
class HandState:
    angles: np.ndarray  # (6,) actual angles, 0..1000
    forces: np.ndarray  # (6,) actual forces (grams-force units of the hand, signed)
    currents: np.ndarray  # (6,) mA
    status: tuple[str, ...]  # per DoF, e.g. "position_reached", "force_reached", "stall", "fault"
    errors: tuple[frozenset[str], ...]  # per DoF set of active error names ("stall", "over_temperature", ...)
    temperatures: np.ndarray  # (6,) deg C
    stamp: float = field(default=0.0)

    @property
    def has_error(self) -> bool:
        return any(self.errors)


class Hand(Device):
    """A 6-DoF dexterous hand commanded by target angles."""

    @abc.abstractmethod
    def read_state(self) -> HandState: ...

    @abc.abstractmethod
    def set_angles(self, angles: np.ndarray) -> None:
        """Command target angles (6,), 0..1000. Out-of-range or NaN values raise SafetyViolation."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Hold the current angles (set targets to the measured angles)."""

    @abc.abstractmethod
    def clear_errors(self) -> None: ...


# -------------------------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "plumb_bob"
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


@dataclass(frozen=True)
class CameraFrame:
    color: np.ndarray  # (H, W, 3) uint8 RGB
    timestamp: float  # device timestamp [s]
    frame_number: int
    intrinsics: CameraIntrinsics
    depth: np.ndarray | None = None  # (H, W) float32 metres, aligned to colour
    received: float = 0.0  # time.monotonic() on arrival, for staleness checks


class Camera(Device):
    """A colour (+ optional depth) camera."""

    name: str

    @abc.abstractmethod
    def read(self, timeout: float = 1.0) -> CameraFrame:
        """The next frame; raises DeviceTimeout when none arrives within ``timeout`` seconds."""
