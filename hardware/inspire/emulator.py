"""Emulator of an Inspire RH56 hand: a real Modbus server (pymodbus, asyncio) with the hand's byte-addressed
register map (see ``registers``), a pluggable "plant" that moves the fingers, and fault injection.

Run it: ``python -m hardware.inspire.emulator --port 6000`` (or ``jala-inspire-emulator``; ``--help``), or in-process::

    emu = InspireHandEmulator(InspireEmulatorConfig(port=0)).start()   # port 0: any free port, see emu.port
    ...
    emu.stop()

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

Faults (``inject_fault`` / ``clear_fault``)
    Per DoF (latched in ERROR, the DoF halts, status shows it; written CLEAR_ERROR clears the latch unless the
    cause is still there, as for over-temperature while hot): "overcurrent", "stall", "over_temperature".
    Communication: "disconnect" (listener and open connections closed, new connections refused until cleared),
    "unresponsive" (connections accepted, requests never answered), "slow" (every answer delayed by
    ``delay_s``). ``drop_connections()`` closes open connections once but keeps listening (a cable glitch).
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hardware.interfaces import HAND_DOF, HAND_DOF_NAMES
from hardware.inspire import registers as R

log = logging.getLogger(__name__)

HALTING_FAULTS = ("overcurrent", "stall", "over_temperature")
COMM_FAULTS = ("disconnect", "unresponsive", "slow")
FAULT_KINDS = HALTING_FAULTS + COMM_FAULTS

# Nominal joint range covered by 0..1000 units per DoF, degrees (RH56 manual figures as commonly quoted:
# fingers about 19..176.7 deg, thumb bend -13..53.6 deg, thumb rotation 90..165 deg; unverified on hardware).
DOF_RANGE_DEG = np.array([157.7, 157.7, 157.7, 157.7, 66.6, 75.0])


def speed_to_units_per_s(speed, full_travel_time_s: float = 1.0) -> np.ndarray:
    """SPEED_SET (0..1000) -> angle units per second in the emulator."""
    return np.asarray(speed, dtype=np.float64) / 1000.0 * (1000.0 / full_travel_time_s)


def speed_to_deg_per_s(speed, full_travel_time_s: float = 1.0) -> np.ndarray:
    """SPEED_SET per DoF (6,) -> nominal degrees per second per DoF in the emulator."""
    return speed_to_units_per_s(speed, full_travel_time_s) * DOF_RANGE_DEG / 1000.0


@dataclass
class InspireEmulatorConfig:
    transport: str = "tcp"  # "tcp" or "rtu"
    host: str = "127.0.0.1"
    port: int = 6000  # 0: pick a free port (read it back from ``InspireHandEmulator.port``)
    serial_port: str = ""  # RTU: device path the server opens (e.g. one end of a VirtualSerialPair)
    baudrate: int = 115200
    device_id: int = 1
    byte_order: str = R.ByteOrder.LOW_FIRST.value
    full_travel_time_s: float = 1.0  # time for 1000 units at SPEED_SET 1000 (see the module docstring)
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


# ---------------------------------------------------------------------------------- plant hook
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


@dataclass(frozen=True)
class EmulatorTruth:
    """The emulator's internal state, for tests and debugging (not read over Modbus)."""

    angles: np.ndarray
    forces: np.ndarray
    currents: np.ndarray
    status_codes: np.ndarray
    error_codes: np.ndarray
    temperatures: np.ndarray
    angle_set_writes: int  # accepted writes touching ANGLE_SET
    last_angle_set_write: float  # time.monotonic() of the last one (0 if none)
    clear_error_writes: int
    requests: int  # Modbus requests answered


class _HandState:
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


# The blocks the emulator accepts writes to (HAND_ID is writable on the device, changing it is not emulated).
_EMU_WRITABLE = (R.CLEAR_ERROR, R.SAVE, R.POS_SET, R.ANGLE_SET, R.FORCE_SET, R.SPEED_SET)


class InspireHandEmulator:
    """A Modbus server (TCP or RTU) serving an emulated Inspire hand from a background thread."""

    def __init__(self, config: InspireEmulatorConfig | None = None, plant: HandPlant | None = None):
        self.config = config or InspireEmulatorConfig()
        if plant is not None and not isinstance(plant, HandPlant):
            raise TypeError("plant must have a step(dt, command) -> PlantReading method")
        self._plant_arg = plant
        self._lock = threading.RLock()
        self._reset_state()
        self._reply_delay_s = 0.0
        self._unresponsive = False
        self._disconnected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._port: int | None = None
        self._stopping = False

    def _reset_state(self) -> None:
        cfg = self.config
        self._plant: HandPlant = self._plant_arg or (ExternalPlant(cfg) if cfg.external_physics else KinematicPlant(cfg))
        self._hand = _HandState(cfg)
        self._hand.reading = self._plant.step(0.0, self._hand.command())
        self._mem = bytearray(R.MAP_END - R.MAP_START)
        self._last_advance = time.monotonic()
        self._angle_set_writes = 0
        self._last_angle_set_write = 0.0
        self._clear_error_writes = 0
        self._requests = 0

    @property
    def plant(self) -> HandPlant:
        return self._plant

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def endpoint(self) -> str:
        if self.config.transport == "rtu":
            return self.config.serial_port
        return f"{self.config.host}:{self._port if self._port is not None else self.config.port}"

    def start(self) -> InspireHandEmulator:
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._open_server())
            except BaseException as exc:  # report start failures to the caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="inspire-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(10.0):
            raise RuntimeError("Inspire emulator did not start within 10 s")
        if failure:
            self._thread.join(timeout=1.0)
            self._loop.close()
            self._thread = None
            raise RuntimeError(f"Inspire emulator could not listen on {self.endpoint}: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        loop = self._loop

        async def shutdown() -> None:
            await self._close_server()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5.0)
            loop.close()
            self._thread = None
            self._loop = None

    def __enter__(self) -> InspireHandEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _open_server(self) -> None:
        # One register per byte address over the whole map; the action below serves bytes two per register.
        simdata = SimData(R.MAP_START, values=[0] * (R.MAP_END - R.MAP_START), datatype=DataType.REGISTERS)
        device = SimDevice(id=self.config.device_id, simdata=[simdata], action=self._on_request)
        if self.config.transport == "tcp":
            port = self._port if self._port is not None else self.config.port
            server = ModbusTcpServer(device, address=(self.config.host, port))
        else:
            server = ModbusSerialServer(device, framer=FramerType.RTU, port=self.config.serial_port,
                                        baudrate=self.config.baudrate)
        await server.serve_forever(background=True)
        self._server = server
        if self.config.transport == "tcp":
            self._port = server.transport.sockets[0].getsockname()[1]
        else:
            self._port = 0

    async def _close_server(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def _drop_open_connections(self) -> None:
        if self._server is not None:
            for conn in list(self._server.active_connections.values()):
                conn.close()

    def _call_in_loop(self, coro_fn) -> None:
        if self._loop is None:
            raise RuntimeError("emulator not started")
        asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout=5.0)

    # ------------------------------------------------------------------------- modbus access
    async def _on_request(self, function_code: int, start_address: int, address: int, count: int,
                          registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus SimDevice action, run on the server loop before every register access.

        Reads: fills ``registers[address:address+count]`` from the byte image (bytes address..address+2*count-1).
        Writes: applies the written bytes to the hand state (validated as a whole first)."""
        while self._unresponsive and not self._stopping:
            await asyncio.sleep(0.02)  # swallow the request; the client times out
        if self._reply_delay_s > 0:
            await asyncio.sleep(self._reply_delay_s)
        if address + 2 * count > R.MAP_END:
            return ExcCodes.ILLEGAL_ADDRESS
        with self._lock:
            self._requests += 1
            self._advance()
            if set_values is None:
                self._render()
                off = address - R.MAP_START
                regs = R.bytes_to_registers(self._mem[off:off + 2 * count], self.config.byte_order)
                registers[address - start_address:address - start_address + count] = regs
                return None
            return self._apply_write(address, [int(v) for v in set_values])

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last_advance = now - self._last_advance, now
        reading = self._plant.step(max(dt, 0.0), self._hand.command())
        self._hand.reading = PlantReading(np.asarray(reading.angles, dtype=np.float64).copy(),
                                          np.asarray(reading.forces, dtype=np.float64).copy(),
                                          None if reading.currents is None else np.asarray(reading.currents))

    def _put(self, block: R.RegisterBlock, values) -> None:
        data = R.encode_values(block, [int(v) for v in values], self.config.byte_order)
        self._mem[block.address - R.MAP_START:block.end - R.MAP_START] = data

    def _render(self) -> None:
        """Write the hand state into the byte image."""
        h = self._hand
        status = h.status_codes()
        self._put(R.HAND_ID, [self.config.device_id])
        self._put(R.CLEAR_ERROR, [0])
        self._put(R.SAVE, [0])
        self._put(R.POS_SET, h.pos_set)
        self._put(R.ANGLE_SET, np.rint(h.target))
        self._put(R.FORCE_SET, np.rint(h.force_set))
        self._put(R.SPEED_SET, np.rint(h.speed))
        self._put(R.POS_ACT, np.zeros(HAND_DOF))  # actuator positions are not modelled
        self._put(R.ANGLE_ACT, np.clip(np.rint(h.reading.angles), 0, 1000))
        self._put(R.FORCE_ACT, np.clip(np.rint(h.reading.forces), -0x8000, 0x7FFF))
        self._put(R.CURRENT, h.currents(status))
        self._put(R.ERROR, h.errors)
        self._put(R.STATUS, status)
        self._put(R.TEMP, h.temperatures())

    def _apply_write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Validate a whole write (nothing changes if any part is bad), then apply it."""
        data = R.registers_to_bytes(values, self.config.byte_order)
        lo, hi = address, address + len(data)
        touched = [b for b in _EMU_WRITABLE if b.address < hi and lo < b.end]
        covered = sum(min(hi, b.end) - max(lo, b.address) for b in touched)
        if covered != hi - lo:
            return ExcCodes.ILLEGAL_ADDRESS  # some written byte is read-only or outside the documented map
        updates: list[tuple[R.RegisterBlock, list[int], list[int]]] = []
        for b in touched:
            a, z = max(lo, b.address), min(hi, b.end)
            if (a - b.address) % b.width or (z - b.address) % b.width:
                return ExcCodes.ILLEGAL_ADDRESS  # half of a 16-bit value
            chunk = data[a - lo:z - lo]
            idx0 = (a - b.address) // b.width
            if b.width == 2:
                vals = [int(v) for v in R.bytes_to_registers(chunk, self.config.byte_order)]
            else:
                vals = list(chunk)
            for k, v in enumerate(vals):
                if b is R.ANGLE_SET and not (v == R.ANGLE_UNCHANGED or R.ANGLE_MIN <= v <= R.ANGLE_MAX):
                    return ExcCodes.ILLEGAL_VALUE
                if b in (R.SPEED_SET, R.FORCE_SET) and not 0 <= v <= 1000:
                    return ExcCodes.ILLEGAL_VALUE
            updates.append((b, [idx0 + k for k in range(len(vals))], vals))
        h = self._hand
        for b, idxs, vals in updates:
            for i, v in zip(idxs, vals):
                if b is R.ANGLE_SET:
                    if v != R.ANGLE_UNCHANGED:
                        h.target[i] = v
                elif b is R.SPEED_SET:
                    h.speed[i] = v
                elif b is R.FORCE_SET:
                    h.force_set[i] = v
                elif b is R.POS_SET:
                    h.pos_set[i] = v
                elif b is R.CLEAR_ERROR and v:
                    self._clear_error_writes += 1
                    h.clear_errors()
            if b is R.ANGLE_SET:
                self._angle_set_writes += 1
                self._last_angle_set_write = time.monotonic()
        # Let the plant see the new command at once (dt = 0), so status reflects it on the next read.
        self._hand.reading = self._plant.step(0.0, self._hand.command())
        return None

    # ------------------------------------------------------------------------------ Python API
    def reset(self) -> None:
        """Like a power cycle: targets, speeds, force limits, errors and objects back to the config values.
        Communication faults and the open server are left as they are."""
        with self._lock:
            self._reset_state()

    def set_contact(self, dof: int | str, angle: float | None, stiffness: float | None = None) -> None:
        """Place (angle) or remove (None) the emulated object under one DoF (index or name). Built-in plant only."""
        i = _dof_index(dof)
        if not isinstance(self._plant, KinematicPlant):
            raise RuntimeError("set_contact needs the built-in KinematicPlant")
        with self._lock:
            self._advance()
            self._plant.set_contact(i, angle, stiffness)
            self._hand.reading = self._plant.step(0.0, self._hand.command())

    def set_contacts(self, angles: Sequence[float | None]) -> None:
        if len(angles) != HAND_DOF:
            raise ValueError(f"need {HAND_DOF} contact angles (None = no object)")
        for i, a in enumerate(angles):
            self.set_contact(i, a)

    def inject_fault(self, kind: str, dofs: Sequence[int | str] | int | str | None = None,
                     delay_s: float | None = None) -> None:
        """Inject a fault (see the module docstring). ``dofs`` for per-DoF faults (default: all), ``delay_s``
        for "slow"."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
        if kind in HALTING_FAULTS:
            idx = _dof_indices(dofs)
            with self._lock:
                self._advance()
                for i in idx:
                    self._hand.errors[i] |= 1 << R.ERROR_BIT_OF[kind]
                    if kind == "over_temperature":
                        self._hand.hot[i] = True
            return
        if kind == "slow":
            if delay_s is None or not delay_s > 0:
                raise ValueError("the 'slow' fault needs delay_s > 0")
            self._reply_delay_s = float(delay_s)
        elif kind == "unresponsive":
            self._unresponsive = True
        elif kind == "disconnect":
            if not self._disconnected:
                self._disconnected = True
                self._call_in_loop(self._close_server)

    def clear_fault(self, kind: str, dofs: Sequence[int | str] | int | str | None = None) -> None:
        """Remove the cause of a fault. Per-DoF faults: only over-temperature has a lasting cause (the DoF cools);
        the latched ERROR bits stay until CLEAR_ERROR is written, as on the device. Communication faults: the
        server answers normally again (after "disconnect" it listens again on the same port)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
        if kind == "over_temperature":
            with self._lock:
                for i in _dof_indices(dofs):
                    self._hand.hot[i] = False
        elif kind == "slow":
            self._reply_delay_s = 0.0
        elif kind == "unresponsive":
            self._unresponsive = False
        elif kind == "disconnect":
            if self._disconnected:
                self._call_in_loop(self._open_server)
                self._disconnected = False

    def drop_connections(self) -> None:
        """Close every open client connection once (TCP); the server keeps listening."""
        self._call_in_loop(self._drop_open_connections)

    def get_targets(self) -> PlantCommand:
        """The current command (ANGLE_SET, SPEED_SET, FORCE_SET, halted DoFs), e.g. for an external physics."""
        with self._lock:
            self._advance()
            return self._hand.command()

    def set_actual(self, angles: Sequence[float], forces: Sequence[float],
                   currents: Sequence[float] | None = None) -> None:
        """ExternalPlant: supply the measured angles/forces (and optionally currents in mA)."""
        if not isinstance(self._plant, ExternalPlant):
            raise RuntimeError("set_actual needs an ExternalPlant (InspireEmulatorConfig(external_physics=True))")
        a = np.asarray(angles, dtype=np.float64)
        f = np.asarray(forces, dtype=np.float64)
        if a.shape != (HAND_DOF,) or f.shape != (HAND_DOF,) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(f))):
            raise ValueError(f"set_actual needs finite ({HAND_DOF},) angles and forces")
        c = None if currents is None else np.asarray(currents, dtype=np.float64)
        if c is not None and c.shape != (HAND_DOF,):
            raise ValueError(f"currents must have shape ({HAND_DOF},)")
        with self._lock:
            self._plant.reading = PlantReading(np.clip(a, 0.0, 1000.0), f, c)
            self._advance()

    def truth(self) -> EmulatorTruth:
        """The emulator's current internal state (not read over Modbus)."""
        with self._lock:
            self._advance()
            h = self._hand
            status = h.status_codes()
            return EmulatorTruth(
                angles=h.reading.angles.copy(), forces=h.reading.forces.copy(), currents=h.currents(status),
                status_codes=status, error_codes=h.errors.copy(), temperatures=h.temperatures(),
                angle_set_writes=self._angle_set_writes, last_angle_set_write=self._last_angle_set_write,
                clear_error_writes=self._clear_error_writes, requests=self._requests,
            )


def _dof_index(dof: int | str) -> int:
    if isinstance(dof, str):
        if dof not in HAND_DOF_NAMES:
            raise ValueError(f"unknown DoF {dof!r}; known: {HAND_DOF_NAMES}")
        return HAND_DOF_NAMES.index(dof)
    if not (isinstance(dof, (int, np.integer)) and 0 <= dof < HAND_DOF):
        raise ValueError(f"DoF index must be 0..{HAND_DOF - 1}, got {dof!r}")
    return int(dof)


def _dof_indices(dofs: Sequence[int | str] | int | str | None) -> list[int]:
    if dofs is None:
        return list(range(HAND_DOF))
    if isinstance(dofs, (int, str, np.integer)):
        return [_dof_index(dofs)]
    return [_dof_index(d) for d in dofs]


# ------------------------------------------------------------------------------------------ CLI
def _parse_contacts(text: str) -> list[float | None]:
    parts = [p.strip().lower() for p in text.split(",")]
    if len(parts) != HAND_DOF:
        raise argparse.ArgumentTypeError(f"need {HAND_DOF} comma-separated values (number or 'none')")
    try:
        return [None if p in ("none", "") else float(p) for p in parts]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


_PROG = "jala-inspire-emulator"


def _tcp_listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (a one-line reason), or None. Binds a throw-away socket the way
    asyncio's server does (SO_REUSEADDR on POSIX: a port in TIME_WAIT is free, one with a listener is not)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host!r}: {getattr(exc, 'strerror', None) or exc}"
    try:
        with socket.socket(family, kind, proto) as s:
            if os.name == "posix":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is in use on {host} (another emulator or hand bridge?)"
        if exc.errno == errno.EACCES:
            return f"port {port} on {host}: permission denied (ports below 1024 need root; use e.g. 6000)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {host}: not an address of this machine"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=_PROG,
                                     description="Emulated Inspire RH56 hand served over Modbus TCP or RTU.")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to listen on (keep it loopback)")
    parser.add_argument("--port", type=int, default=6000, help="TCP port (0 = any free port)")
    parser.add_argument("--rtu", metavar="DEVICE", help="serve Modbus RTU on this serial device instead of TCP")
    parser.add_argument("--rtu-pty", action="store_true",
                        help="serve Modbus RTU on a virtual serial pair and print the path for the driver")
    parser.add_argument("--baudrate", type=int, default=115200)
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--byte-order", choices=[b.value for b in R.ByteOrder], default=R.ByteOrder.LOW_FIRST.value)
    parser.add_argument("--travel-time", type=float, default=1.0, help="seconds for 0..1000 at speed 1000")
    parser.add_argument("--contact", type=_parse_contacts, default=None,
                        help="object contact angle per DoF, e.g. 600,600,600,600,none,none")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())

    def fail(message: str) -> int:  # expected start-up errors: one line, no traceback
        print(f"{_PROG}: {message}", file=sys.stderr, flush=True)
        return 2

    tcp = not (args.rtu_pty or args.rtu)
    if tcp:
        if not 0 <= args.port <= 65535:
            return fail(f"port {args.port} is out of range 0-65535 (0 = any free port)")
        if args.port != 0 and (problem := _tcp_listen_problem(args.host, args.port)):
            return fail(problem)
    elif args.rtu and not args.rtu_pty and not os.path.exists(args.rtu):
        return fail(f"no such serial device {args.rtu}")
    pair = None
    transport, serial_port = "tcp", ""
    if args.rtu_pty:
        from hardware.inspire.virtual_serial import VirtualSerialPair

        pair = VirtualSerialPair().start()
        transport, serial_port = "rtu", pair.port_a
    elif args.rtu:
        transport, serial_port = "rtu", args.rtu
    # pymodbus logs its own warning on a failed listen; fail() says it in one line (unless a verbose log is asked)
    pymodbus_log = logging.getLogger("pymodbus")
    saved_level = pymodbus_log.level
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        pymodbus_log.setLevel(logging.CRITICAL)
    try:
        cfg = InspireEmulatorConfig(
            transport=transport, host=args.host, port=args.port, serial_port=serial_port, baudrate=args.baudrate,
            device_id=args.device_id, byte_order=args.byte_order, full_travel_time_s=args.travel_time,
            contact_angles=args.contact or (None,) * HAND_DOF)
        emu = InspireHandEmulator(cfg).start()
    except (ValueError, RuntimeError) as exc:
        if pair is not None:
            pair.close()
        if isinstance(exc, ValueError):
            return fail(str(exc).removeprefix("invalid InspireEmulatorConfig: "))
        # e.g. the port was taken between the check above and the listen, or the serial device cannot be opened
        problem = _tcp_listen_problem(args.host, args.port) if tcp and args.port else None
        return fail(problem or str(exc))
    finally:
        pymodbus_log.setLevel(saved_level)
    if pair is not None:
        print(f"Inspire emulator: Modbus RTU device {cfg.device_id}; connect the driver to {pair.port_b}", flush=True)
    elif transport == "rtu":
        print(f"Inspire emulator: Modbus RTU device {cfg.device_id} on {serial_port}", flush=True)
    else:
        print(f"Inspire emulator: Modbus TCP device {cfg.device_id} on {cfg.host}:{emu.port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
        if pair is not None:
            pair.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
