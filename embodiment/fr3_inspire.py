"""Franka Research 3 + Inspire RH56 (6-DoF, right hand): the one place these numbers are written.

Action layout (13 numbers per action): FR3 joints 1..7 as absolute joint targets in radians, then the six Inspire
DoFs in the hand's own order (pinky, ring, middle, index, thumb bend, thumb rotation) in its native units 0..1000
(1000 = open / extended, 0 = closed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTION_DIM", "ACTION_DT", "ACTION_HORIZON", "ARM_DOF", "ARM_JOINT_NAMES", "CHUNK_JOINT_NAMES", "DEVICE_KINDS",
    "EXECUTE_STEPS",
    "Embodiment", "FR3_DQ_MAX", "FR3_INSPIRE", "FR3_Q_MAX", "FR3_Q_MIN", "HAND_DOF", "HAND_DOF_NAMES",
    "HAND_JOINT_NAMES", "HAND_RANGE", "HAND_SIDE", "INSPIRE_BAUDRATE", "INSPIRE_DEVICE_ID", "INSPIRE_MODBUS_PORT",
    "READY_Q", "action_limits",
]

# ---------------------------------------------------------------------------------------------- arm: FR3
ARM_DOF = 7
ARM_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, ARM_DOF + 1))
# FR3 datasheet joint limits ("Robot and interface specifications"); identical to the joint ranges in franky-sim's
# assets/fr3.xml. franka_description's fr3.urdf carries slightly wider ranges, so these are the conservative ones.
FR3_Q_MIN = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)  # rad
FR3_Q_MAX = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)  # rad
FR3_DQ_MAX = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)  # rad/s
# Ready posture: the FR3 "home" posture (flange pointing down, the hand ~0.3 m above the table); the simulated
# world starts here and the demo checkpoint centres its action statistics on it.
READY_Q = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)  # rad

# --------------------------------------------------------------------------------------- hand: Inspire RH56
HAND_DOF = 6
HAND_DOF_NAMES = ("pinky", "ring", "middle", "index", "thumb_bend", "thumb_rotation")  # the register order
HAND_JOINT_NAMES = tuple(f"inspire_{n}" for n in HAND_DOF_NAMES)  # joint names on the wire (ROS, datasets)
HAND_RANGE = (0.0, 1000.0)  # native angle units; the policy's hand outputs are clamped into it
HAND_SIDE = "right"  # the Latent State Perceiver reads the frame through this hand's head
INSPIRE_MODBUS_PORT = 6000  # Modbus TCP
INSPIRE_BAUDRATE = 115200  # Modbus RTU
INSPIRE_DEVICE_ID = 1

# ------------------------------------------------------------------------------------------- device kinds
# the registered driver (hardware.registry) of each device of this robot: a node's device_kind default and the
# hardware check's
DEVICE_KINDS = {"arm": "franka_fr3", "hand": "inspire_rh56", "camera": "realsense_l515"}

# ---------------------------------------------------------------------------------------------- actions
CHUNK_JOINT_NAMES = ARM_JOINT_NAMES + HAND_JOINT_NAMES  # the 13 columns of an action, in order
ACTION_DIM = len(CHUNK_JOINT_NAMES)
ACTION_DT = 1.0 / 15.0  # s between consecutive actions of a chunk (15 Hz)
ACTION_HORIZON = 16  # actions per chunk
EXECUTE_STEPS = 8  # actions of a chunk executed before its successor takes over


def action_limits() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per action column: FR3 joint limits, then the hand's 0..1000."""
    lo = np.concatenate([FR3_Q_MIN, np.full(HAND_DOF, HAND_RANGE[0])])
    hi = np.concatenate([FR3_Q_MAX, np.full(HAND_DOF, HAND_RANGE[1])])
    return lo, hi


@dataclass(frozen=True)
class Embodiment:
    """The layout as one value, for code that takes an embodiment as a parameter."""

    name: str = "fr3_inspire_rh56"
    arm_joint_names: tuple[str, ...] = ARM_JOINT_NAMES
    hand_joint_names: tuple[str, ...] = HAND_JOINT_NAMES
    action_dt: float = ACTION_DT
    action_horizon: int = ACTION_HORIZON
    execute_steps: int = EXECUTE_STEPS
    hand_range: tuple[float, float] = HAND_RANGE
    hand_side: str = HAND_SIDE

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.arm_joint_names + self.hand_joint_names


FR3_INSPIRE = Embodiment()
