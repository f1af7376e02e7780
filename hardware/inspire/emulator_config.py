"""InspireEmulatorConfig: how the emulated Inspire hand is served (transport, address, Modbus unit id, byte order)
and how it behaves (travel time, initial settings, objects under the fingers, current and temperature figures).
The driver's own settings are ``hardware.inspire.config.InspireHandConfig``."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from embodiment import HAND_DOF, INSPIRE_BAUDRATE, INSPIRE_DEVICE_ID, INSPIRE_MODBUS_PORT
from hardware.inspire import registers as R


@dataclass
class InspireEmulatorConfig:
    transport: str = "tcp"  # "tcp" or "rtu"
    host: str = "127.0.0.1"
    port: int = INSPIRE_MODBUS_PORT  # 0: pick a free port (read it back from ``InspireHandEmulator.port``)
    serial_port: str = ""  # RTU: device path the server opens (e.g. one end of a VirtualSerialPair)
    baudrate: int = INSPIRE_BAUDRATE
    device_id: int = INSPIRE_DEVICE_ID
    byte_order: str = R.ByteOrder.LOW_FIRST.value
    full_travel_time_s: float = 1.0  # time for 1000 units at SPEED_SET 1000 (see the plant module)
    initial_angles: Sequence[float] = (1000.0,) * HAND_DOF
    initial_speed: int = 1000
    initial_force_limit: int = 1000
    contact_angles: Sequence[float | None] = (None,) * HAND_DOF  # angle where an object is touched per DoF
    contact_stiffness: float = 4.0  # force units per angle unit closed past the contact angle
    reached_tolerance: float = 2.0  # |angle - target| within this -> "position_reached"
    force_tolerance: float = 8.0  # force within this of FORCE_SET while still closing -> "force_reached"
    ambient_temperature_c: int = 32
    over_temperature_c: int = 80
    idle_current_ma: int = 15
    moving_current_ma: int = 250
    current_per_force_ma: float = 0.6
    stall_current_ma: int = 900
    overcurrent_ma: int = 1600
    external_physics: bool = False  # use an ExternalPlant (world pushes set_actual) instead of KinematicPlant

    def __post_init__(self) -> None:
        problems = []
        if self.transport not in ("tcp", "rtu"):
            problems.append(f"transport must be 'tcp' or 'rtu', got {self.transport!r}")
        if self.transport == "tcp" and not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            problems.append(f"port must be 0..65535, got {self.port!r}")
        if self.transport == "rtu" and not self.serial_port:
            problems.append("rtu transport needs serial_port")
        if not (isinstance(self.device_id, int) and 1 <= self.device_id <= 247):
            problems.append(f"device_id must be 1..247, got {self.device_id!r}")
        try:
            self.byte_order = R.ByteOrder(self.byte_order).value
        except ValueError:
            problems.append(f"byte_order must be one of {[b.value for b in R.ByteOrder]}")
        if not (math.isfinite(self.full_travel_time_s) and self.full_travel_time_s > 0):
            problems.append("full_travel_time_s must be > 0")
        if len(self.initial_angles) != HAND_DOF or not all(0 <= a <= 1000 for a in self.initial_angles):
            problems.append(f"initial_angles must be {HAND_DOF} values in 0..1000")
        if not 0 <= self.initial_speed <= 1000 or not 0 <= self.initial_force_limit <= 1000:
            problems.append("initial_speed and initial_force_limit must be in 0..1000")
        if len(self.contact_angles) != HAND_DOF:
            problems.append(f"contact_angles must have {HAND_DOF} entries (None = no object)")
        if not (self.contact_stiffness > 0):
            problems.append("contact_stiffness must be > 0")
        if problems:
            raise ValueError("invalid InspireEmulatorConfig: " + "; ".join(problems))

