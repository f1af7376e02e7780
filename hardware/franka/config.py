"""Configuration of the FR3 driver (franky-control). One dataclass, validated on construction."""
from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hardware.franka.safety import ArmSafetyLimits


class RealtimeMode(str, enum.Enum):
    """libfranka's realtime requirement. ``ENFORCE`` on the robot PC (PREEMPT_RT kernel); ``IGNORE`` off-robot
    (simulators, CI). Maps to ``franky.RealtimeConfig``."""

    ENFORCE = "enforce"
    IGNORE = "ignore"


class ChunkInterpolation(str, enum.Enum):
    """How a chunk's waypoints become one franky JointWaypointMotion.

    ``VIA_VELOCITY``: pass through every waypoint with the finite-difference velocity of its neighbours (central
    difference, the measured position counting as the point at t = 0), stop at the last one. Smooth, no stop at
    intermediate waypoints. ``STOP_AT_WAYPOINTS``: zero velocity at every waypoint (franky's default; jerky at
    15 Hz, only for debugging).
    """

    VIA_VELOCITY = "via_velocity"
    STOP_AT_WAYPOINTS = "stop_at_waypoints"


def _floats(value, n: int, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * n
    vals = tuple(float(v) for v in value)
    if len(vals) != n or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"{name} needs one or {n} positive numbers, got {value!r}")
    return vals


@dataclass
class FrankaArmConfig:
    """Everything needed to reach and set up the FR3. Bad values raise ValueError naming them."""

    robot_ip: str = "172.16.0.2"  # FCI address of the controller (franky-sim: the address it prints)
    realtime: RealtimeMode | str = RealtimeMode.ENFORCE  # IGNORE off-robot
    relative_dynamics_factor: float = 0.5  # scales franky's velocity/acceleration/jerk limits (0, 1]
    # Collision behaviour (libfranka set_collision_behavior): contact/collision torque per joint [Nm] and force per
    # Cartesian axis [N, N, N, Nm, Nm, Nm]. Above these the robot stops with a reflex.
    collision_torque_thresholds: float | Sequence[float] = 20.0
    collision_force_thresholds: float | Sequence[float] = 30.0
    # Control / interpolation. libfranka's loop runs at a fixed 1 kHz; these shape what franky feeds it.
    interpolation: ChunkInterpolation | str = ChunkInterpolation.VIA_VELOCITY
    time_scale: float = 1.0  # multiply chunk times (>1 slows execution down uniformly)
    via_velocity_fraction: float = 0.95  # cap via-point speeds at this fraction of franky's (scaled) limits
    cutoff_frequency: float = 100.0  # libfranka low-pass filter on the commanded signal [Hz] (1000 = off)
    limit_rate: bool = False  # libfranka rate limiter (distorts motion; the safety gate checks limits instead)
    hold_dynamics_factor: float = 0.5  # relative dynamics of the stopping motion in hold()
    hold_timeout_s: float = 3.0  # hold() waits at most this long for the arm to stop
    record_motion_start: bool = False  # per-cycle franky callback stamping when each motion starts (benchmarks)
    safety: ArmSafetyLimits = field(default_factory=ArmSafetyLimits)

    def __post_init__(self) -> None:
        try:
            self.realtime = RealtimeMode(self.realtime)
        except ValueError:
            raise ValueError(f"realtime must be one of {[m.value for m in RealtimeMode]}, got {self.realtime!r}")
        try:
            self.interpolation = ChunkInterpolation(self.interpolation)
        except ValueError:
            raise ValueError(f"interpolation must be one of {[m.value for m in ChunkInterpolation]}, "
                             f"got {self.interpolation!r}")
        if not isinstance(self.robot_ip, str) or not self.robot_ip:
            raise ValueError(f"robot_ip must be a host name or address, got {self.robot_ip!r}")
        for name in ("relative_dynamics_factor", "hold_dynamics_factor", "via_velocity_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
            setattr(self, name, float(v))
        for name in ("time_scale", "cutoff_frequency", "hold_timeout_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
            setattr(self, name, float(v))
        if self.cutoff_frequency > 1000.0:
            raise ValueError(f"cutoff_frequency must be <= 1000 Hz, got {self.cutoff_frequency}")
        self.collision_torque_thresholds = _floats(self.collision_torque_thresholds, 7,
                                                   "collision_torque_thresholds")
        self.collision_force_thresholds = _floats(self.collision_force_thresholds, 6, "collision_force_thresholds")
        if isinstance(self.safety, dict):
            self.safety = ArmSafetyLimits(**self.safety)
        if not isinstance(self.safety, ArmSafetyLimits):
            raise ValueError(f"safety must be ArmSafetyLimits (or a dict of its fields), got {type(self.safety)}")
