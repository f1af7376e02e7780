"""The mechanics behind the emulated Inspire hand: the ``HandPlant`` hook, the built-in ``KinematicPlant`` and the
``ExternalPlant`` fed by a simulation, and the emulator's SPEED_SET mapping.

Built-in plant (``KinematicPlant``)
* Speed mapping: each DoF moves toward ANGLE_SET at a constant rate of
  ``SPEED_SET / 1000 * 1000 / full_travel_time_s`` angle units per second, i.e. SPEED_SET 1000 crosses the
  whole 0..1000 range in ``full_travel_time_s`` (default 1.0 s; an assumption, not a measured figure).
  Angle units map linearly onto each joint's range, so in degrees per second:
  ``deg_per_s = units_per_s * DOF_RANGE_DEG[dof] / 1000`` (see :func:`speed_to_deg_per_s`). With the
  default 1.0 s, SPEED_SET 1000 is about 158 deg/s for a finger, 67 deg/s thumb bend, 75 deg/s thumb rotation.
* Objects: ``set_contact(dof, angle, stiffness)`` puts an object under a DoF. Closing past ``angle`` produces
  the force ``stiffness * (angle - actual)`` (hand force units); the finger stops where that force equals
  FORCE_SET (it stalls on the object) and reports status ``force_reached``.
* The plant is stepped by the elapsed wall time on every Modbus request and every Python API call (motion is
  piecewise linear and targets only change at those moments, so this is exact without a physics thread).

Other plants (a physics simulation, e.g. the MuJoCo hand): the ``HandPlant`` hook
    Pass ``plant=`` any object with ``step(dt, command: PlantCommand) -> PlantReading``. The emulator calls it
    (under its lock, on the server thread or an API caller's thread) with the commanded targets, speeds
    (also as units/s), force limits and a per-DoF ``halted`` flag (faulted DoFs must not move), and serves the
    returned angles/forces (and currents, if given) over Modbus; status, errors, temperatures and current (when
    not given) are derived by the emulator as for the built-in plant. A world that runs its own clock can use
    ``ExternalPlant`` instead: it reads ``emu.get_targets()`` each of its steps and pushes its measurements with
    ``emu.set_actual(angles, forces, currents=None)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from embodiment import HAND_DOF

if TYPE_CHECKING:
    from hardware.inspire.emulator_config import InspireEmulatorConfig

# Nominal joint range covered by 0..1000 units per DoF, degrees (RH56 manual figures as commonly quoted:
# fingers about 19..176.7 deg, thumb bend -13..53.6 deg, thumb rotation 90..165 deg; unverified on hardware).
DOF_RANGE_DEG = np.array([157.7, 157.7, 157.7, 157.7, 66.6, 75.0])


def speed_to_units_per_s(speed, full_travel_time_s: float = 1.0) -> np.ndarray:
    """SPEED_SET (0..1000) -> angle units per second in the emulator."""
    return np.asarray(speed, dtype=np.float64) / 1000.0 * (1000.0 / full_travel_time_s)


def speed_to_deg_per_s(speed, full_travel_time_s: float = 1.0) -> np.ndarray:
    """SPEED_SET per DoF (6,) -> nominal degrees per second per DoF in the emulator."""
    return speed_to_units_per_s(speed, full_travel_time_s) * DOF_RANGE_DEG / 1000.0



@dataclass(frozen=True)
class PlantCommand:
    """What the hand's controller has been told (what a plant acts on)."""

    angles: np.ndarray  # (6,) ANGLE_SET targets, 0..1000
    speeds: np.ndarray  # (6,) SPEED_SET, 0..1000
    units_per_s: np.ndarray  # (6,) the same speeds as angle units per second (the emulator's mapping)
    force_limits: np.ndarray  # (6,) FORCE_SET, hand force units
    halted: np.ndarray  # (6,) bool: DoF halted by a fault; hold it where it is


@dataclass(frozen=True)
class PlantReading:
    """What the hand measures."""

    angles: np.ndarray  # (6,) actual angles, 0..1000
    forces: np.ndarray  # (6,) signed force, hand units
    currents: np.ndarray | None = None  # (6,) mA; None: the emulator derives it from motion and force


@runtime_checkable
class HandPlant(Protocol):
    """The mechanics behind the emulated hand. ``step`` advances by ``dt`` seconds under ``command``."""

    def step(self, dt: float, command: PlantCommand) -> PlantReading: ...


class KinematicPlant:
    """Built-in plant: constant-speed motion to the target, spring contact with per-DoF objects."""

    def __init__(self, cfg: InspireEmulatorConfig):
        self.angle = np.asarray(cfg.initial_angles, dtype=np.float64).copy()
        self.contact = np.array([np.nan if c is None else float(c) for c in cfg.contact_angles])
        self.stiffness = np.full(HAND_DOF, float(cfg.contact_stiffness))

    def set_contact(self, i: int, angle: float | None, stiffness: float | None = None) -> None:
        self.contact[i] = np.nan if angle is None else float(angle)
        if stiffness is not None:
            if not stiffness > 0:
                raise ValueError("stiffness must be > 0")
            self.stiffness[i] = float(stiffness)

    def forces(self) -> np.ndarray:
        pen = self.contact - self.angle
        return np.where(np.isnan(pen) | (pen <= 0), 0.0, self.stiffness * np.nan_to_num(pen))

    def step(self, dt: float, command: PlantCommand) -> PlantReading:
        if dt > 0:
            stop_at = self.contact - command.force_limits / self.stiffness  # where force == FORCE_SET
            goal = np.where(np.isnan(stop_at), command.angles, np.fmax(command.angles, stop_at))
            move = np.clip(goal - self.angle, -command.units_per_s * dt, command.units_per_s * dt)
            self.angle = np.clip(np.where(command.halted, self.angle, self.angle + move), 0.0, 1000.0)
        return PlantReading(self.angle.copy(), self.forces())


class ExternalPlant:
    """A plant fed from outside (``InspireHandEmulator.set_actual``); ``step`` returns the last reading."""

    def __init__(self, cfg: InspireEmulatorConfig):
        self.reading = PlantReading(np.asarray(cfg.initial_angles, dtype=np.float64).copy(), np.zeros(HAND_DOF))

    def step(self, dt: float, command: PlantCommand) -> PlantReading:
        return self.reading
