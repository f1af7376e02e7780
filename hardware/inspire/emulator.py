"""Emulator of an Inspire RH56 hand: a real Modbus server (pymodbus, asyncio) with the hand's byte-addressed
register map (see ``registers``), a pluggable "plant" that moves the fingers, and fault injection.

Run it: ``python -m hardware.inspire.emulator --port 6000`` (or ``jala-inspire-emulator``; ``--help``), or in-process::

    emu = InspireHandEmulator(InspireEmulatorConfig(port=0)).start()   # port 0: any free port, see emu.port
    ...
    emu.stop()

The parts: ``emulator_config`` (InspireEmulatorConfig), ``plant`` (the ``HandPlant`` hook, the built-in
``KinematicPlant``, ``ExternalPlant`` for a simulation, the SPEED_SET mapping), ``hand_state`` (written settings,
latched errors, status/current/temperature), ``faults`` (the fault kinds) and ``emulator_cli`` (the command line).
This module is the Modbus server, ``InspireHandEmulator``, and its Python API (``set_contact``, ``inject_fault`` /
``clear_fault``, ``get_targets`` / ``set_actual``, ``truth``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from embodiment import HAND_DOF
from hardware.inspire import registers as R
from hardware.inspire.emulator_config import InspireEmulatorConfig
from hardware.inspire.faults import HALTING_FAULTS, check_fault_kind
from hardware.inspire.hand_state import EmulatedHandState, dof_index, dof_indices
from hardware.inspire.plant import ExternalPlant, HandPlant, KinematicPlant, PlantCommand, PlantReading

__all__ = [
    "EmulatorTruth", "ExternalPlant", "HandPlant", "InspireEmulatorConfig", "InspireHandEmulator", "KinematicPlant",
    "PlantCommand", "PlantReading",
]

log = logging.getLogger(__name__)


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
        self._hand = EmulatedHandState(cfg)
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
        i = dof_index(dof)
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
        check_fault_kind(kind)
        if kind in HALTING_FAULTS:
            idx = dof_indices(dofs)
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
        check_fault_kind(kind)
        if kind == "over_temperature":
            with self._lock:
                for i in dof_indices(dofs):
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


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``emulator_cli.main``), so ``python -m hardware.inspire.emulator`` keeps working."""
    from hardware.inspire.emulator_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
