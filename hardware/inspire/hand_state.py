"""Controller-side state of the emulated Inspire hand: the written settings (ANGLE_SET, SPEED_SET, FORCE_SET,
POS_SET), latched per-DoF errors, and what the hand reports from a plant reading (status codes, currents,
temperatures). Not thread-safe: ``InspireHandEmulator`` holds its lock around every use."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embodiment import HAND_DOF, HAND_DOF_NAMES
from hardware.inspire import registers as R
from hardware.inspire.emulator_config import InspireEmulatorConfig
from hardware.inspire.plant import PlantCommand, PlantReading, speed_to_units_per_s


class EmulatedHandState:
    """Controller-side state of the emulated hand (registers, latched errors). Not thread-safe."""

    def __init__(self, cfg: InspireEmulatorConfig):
        self.cfg = cfg
        self.target = np.asarray(cfg.initial_angles, dtype=np.float64).copy()
        self.speed = np.full(HAND_DOF, cfg.initial_speed, dtype=np.float64)
        self.force_set = np.full(HAND_DOF, cfg.initial_force_limit, dtype=np.float64)
        self.pos_set = np.zeros(HAND_DOF, dtype=np.int64)  # stored, not modelled
        self.errors = np.zeros(HAND_DOF, dtype=np.int64)  # latched ERROR bits
        self.hot = np.zeros(HAND_DOF, dtype=bool)  # over-temperature cause present
        self.reading = PlantReading(self.target.copy(), np.zeros(HAND_DOF))

    def command(self) -> PlantCommand:
        return PlantCommand(self.target.copy(), self.speed.copy(),
                            speed_to_units_per_s(self.speed, self.cfg.full_travel_time_s),
                            self.force_set.copy(), self.errors != 0)

    def status_codes(self) -> np.ndarray:
        c, tol = self.cfg, self.cfg.reached_tolerance
        angle, force = self.reading.angles, self.reading.forces
        out = np.zeros(HAND_DOF, dtype=np.int64)
        for i in range(HAND_DOF):
            e = int(self.errors[i])
            if e & (1 << R.ERROR_BIT_OF["overcurrent"]):
                out[i] = R.STATUS_CODES["overcurrent"]
            elif e & (1 << R.ERROR_BIT_OF["stall"]):
                out[i] = R.STATUS_CODES["stall"]
            elif e:
                out[i] = R.STATUS_CODES["fault"]
            elif self.target[i] < angle[i] - tol and force[i] > 0 and force[i] >= self.force_set[i] - c.force_tolerance:
                out[i] = R.STATUS_CODES["force_reached"]
            elif abs(angle[i] - self.target[i]) <= tol:
                out[i] = R.STATUS_CODES["position_reached"]
            elif self.target[i] < angle[i]:
                out[i] = R.STATUS_CODES["grasping"]
            else:
                out[i] = R.STATUS_CODES["releasing"]
        return out

    def currents(self, status: np.ndarray) -> np.ndarray:
        c = self.cfg
        if self.reading.currents is not None:
            base = np.asarray(self.reading.currents, dtype=np.float64)
        else:
            moving = (status == R.STATUS_CODES["grasping"]) | (status == R.STATUS_CODES["releasing"])
            base = c.idle_current_ma + moving * c.moving_current_ma + c.current_per_force_ma * np.abs(
                self.reading.forces)
        base = np.where(status == R.STATUS_CODES["stall"], c.stall_current_ma, base)
        base = np.where(status == R.STATUS_CODES["overcurrent"], c.overcurrent_ma, base)
        return np.clip(np.rint(base), 0, 0xFFFF).astype(np.int64)

    def temperatures(self) -> np.ndarray:
        c = self.cfg
        return np.where(self.hot, c.over_temperature_c + 5, c.ambient_temperature_c).astype(np.int64)

    def clear_errors(self) -> None:
        """CLEAR_ERROR: drop latched errors whose cause is gone; over-temperature stays while hot."""
        self.errors = self.errors & np.where(self.hot, 1 << R.ERROR_BIT_OF["over_temperature"], 0)



def dof_index(dof: int | str) -> int:
    """A DoF given by index (0..5) or name (``HAND_DOF_NAMES``) as its index; ValueError otherwise."""
    if isinstance(dof, str):
        if dof not in HAND_DOF_NAMES:
            raise ValueError(f"unknown DoF {dof!r}; known: {HAND_DOF_NAMES}")
        return HAND_DOF_NAMES.index(dof)
    if not (isinstance(dof, (int, np.integer)) and 0 <= dof < HAND_DOF):
        raise ValueError(f"DoF index must be 0..{HAND_DOF - 1}, got {dof!r}")
    return int(dof)


def dof_indices(dofs: Sequence[int | str] | int | str | None) -> list[int]:
    """One DoF, several, or all of them (None) as indices."""
    if dofs is None:
        return list(range(HAND_DOF))
    if isinstance(dofs, (int, str, np.integer)):
        return [dof_index(dofs)]
    return [dof_index(d) for d in dofs]
