"""Configuration of the Inspire RH56 Modbus driver (one dataclass, validated on construction)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embodiment import HAND_DOF, INSPIRE_BAUDRATE, INSPIRE_DEVICE_ID, INSPIRE_MODBUS_PORT
from hardware.config_checks import ConfigProblems, is_int, is_number
from hardware.inspire.registers import FORCE_LIMIT_MAX, FORCE_LIMIT_MIN, READ_PLANS, SPEED_MAX, ByteOrder

TRANSPORTS = ("tcp", "rtu")


def _per_dof(value: Any) -> tuple | None:
    """An int for all DoFs or HAND_DOF ints -> tuple of HAND_DOF ints; None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value,) * HAND_DOF
    try:
        vals = tuple(value)
    except TypeError:
        return None
    if len(vals) != HAND_DOF or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return None
    return vals


@dataclass
class InspireHandConfig:
    """Everything the driver needs to reach and set up one hand. Bad values raise ValueError naming them."""

    transport: str = "tcp"  # "tcp" (Modbus TCP) or "rtu" (Modbus RTU on a USB serial adapter)
    host: str = "127.0.0.1"  # TCP: the hand's address (set it for your unit; 192.168.11.210 is often quoted)
    port: int = INSPIRE_MODBUS_PORT  # TCP
    serial_port: str = "/dev/ttyUSB0"  # RTU
    baudrate: int = INSPIRE_BAUDRATE  # RTU
    device_id: int = INSPIRE_DEVICE_ID  # Modbus unit id of the hand (1..247)
    timeout: float = 0.2  # seconds per request: no answer within this -> retry, then DeviceTimeout
    retries: int = 1  # re-sends of a timed-out request (on a fresh connection) before DeviceTimeout
    reconnect: bool = True  # reopen a lost connection automatically
    reconnect_attempts: int = 3  # connection attempts per request before DeviceError
    reconnect_delay_s: float = 0.05  # wait before the 2nd attempt; doubles per attempt ...
    reconnect_delay_max_s: float = 0.5  # ... up to this
    # Background command+read loop rate; 0 = no loop (every call talks to the bus). RTU at 115200 baud cannot
    # go much above ~50 Hz (wire time, see benchmarks/inspire_loop_rate.py); the loop then runs back to back.
    rate_hz: float = 100.0
    speed: int | Sequence[int] = 1000  # SPEED_SET (1..1000), one for all DoFs or 6; written on (re)connect
    force_limits: int | Sequence[int] = 500  # FORCE_SET (1..1000), one for all DoFs or 6; written on (re)connect
    byte_order: str = ByteOrder.LOW_FIRST.value  # packing of the 8-bit ERROR/STATUS/TEMP blocks (unverified)
    read_plan: str = "contiguous"  # how state is read: "contiguous" (2 requests), "single", "per_block" (6)
    hold_on_device_error: bool = True  # loop: on ERROR bits, hold and refuse targets until clear_errors()
    stale_hold_s: float | None = None  # loop: hold at the measured angles when no target came for this long
    state_max_age_s: float = 0.5  # loop: read_state() raises DeviceTimeout when its last state is older

    def __post_init__(self) -> None:
        problems = ConfigProblems()
        need = problems.need

        need(self.transport in TRANSPORTS, f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if self.transport == "tcp":
            need(isinstance(self.host, str) and bool(self.host.strip()), "host must be a non-empty string")
            need(is_int(self.port) and 1 <= self.port <= 65535, f"port must be 1..65535, got {self.port!r}")
        if self.transport == "rtu":
            need(isinstance(self.serial_port, str) and bool(self.serial_port.strip()),
                 "serial_port must be a non-empty string")
            need(is_int(self.baudrate) and self.baudrate > 0, f"baudrate must be a positive int, got {self.baudrate!r}")
        need(is_int(self.device_id) and 1 <= self.device_id <= 247, f"device_id must be 1..247, got {self.device_id!r}")
        need(is_number(self.timeout) and self.timeout > 0, f"timeout must be > 0 s, got {self.timeout!r}")
        need(is_int(self.retries) and self.retries >= 0, f"retries must be an int >= 0, got {self.retries!r}")
        need(isinstance(self.reconnect, bool), f"reconnect must be a bool, got {self.reconnect!r}")
        need(is_int(self.reconnect_attempts) and self.reconnect_attempts >= 1,
             f"reconnect_attempts must be an int >= 1, got {self.reconnect_attempts!r}")
        need(is_number(self.reconnect_delay_s) and self.reconnect_delay_s >= 0,
             f"reconnect_delay_s must be >= 0, got {self.reconnect_delay_s!r}")
        need(is_number(self.reconnect_delay_max_s) and self.reconnect_delay_max_s >= (
            self.reconnect_delay_s if is_number(self.reconnect_delay_s) else 0),
            f"reconnect_delay_max_s must be >= reconnect_delay_s, got {self.reconnect_delay_max_s!r}")
        need(is_number(self.rate_hz) and 0 <= self.rate_hz <= 1000,
             f"rate_hz must be in [0, 1000], got {self.rate_hz!r}")
        speed = _per_dof(self.speed)
        need(speed is not None and all(1 <= v <= SPEED_MAX for v in speed),
             f"speed must be an int or {HAND_DOF} ints in 1..{SPEED_MAX}, got {self.speed!r}")
        limits = _per_dof(self.force_limits)
        need(limits is not None and all(FORCE_LIMIT_MIN < v <= FORCE_LIMIT_MAX for v in limits),
             f"force_limits must be an int or {HAND_DOF} ints in {FORCE_LIMIT_MIN + 1}..{FORCE_LIMIT_MAX}, "
             f"got {self.force_limits!r}")
        try:
            self.byte_order = ByteOrder(self.byte_order).value
        except ValueError:
            problems.append(f"byte_order must be one of {[b.value for b in ByteOrder]}, got {self.byte_order!r}")
        need(self.read_plan in READ_PLANS, f"read_plan must be one of {sorted(READ_PLANS)}, got {self.read_plan!r}")
        need(isinstance(self.hold_on_device_error, bool), "hold_on_device_error must be a bool")
        need(self.stale_hold_s is None or (is_number(self.stale_hold_s) and self.stale_hold_s > 0),
             f"stale_hold_s must be None or > 0, got {self.stale_hold_s!r}")
        need(is_number(self.state_max_age_s) and self.state_max_age_s > 0,
             f"state_max_age_s must be > 0, got {self.state_max_age_s!r}")
        problems.raise_if_any(ValueError, "InspireHandConfig")
        self.speed = speed
        self.force_limits = limits

    @property
    def endpoint(self) -> str:
        """Human-readable address of the hand, used in error messages."""
        if self.transport == "tcp":
            return f"{self.host}:{self.port} (Modbus TCP, device {self.device_id})"
        return f"{self.serial_port} @ {self.baudrate} baud (Modbus RTU, device {self.device_id})"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> InspireHandConfig:
        """Build from a dict (e.g. parsed YAML); unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown InspireHandConfig keys {unknown}; known: {sorted(known)}")
        return cls(**dict(values))
