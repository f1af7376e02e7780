"""Inspire RH56 hand driver over Modbus TCP/RTU (pymodbus sync clients) with a fixed-rate background loop.

Use::

    hand = InspireHand(InspireHandConfig(host="192.168.11.210"))   # or transport="rtu", serial_port=...
    with hand:                       # connect(): open, write speed + force limits, start the loop
        hand.set_angles([0] * 6)     # validated now (SafetyViolation), written by the loop every cycle
        state = hand.read_state()    # the loop's latest state (DeviceError/DeviceTimeout if it is not fresh)
        hand.hold()                  # targets := measured angles

Loop (``rate_hz`` > 0, the default): every period it writes the latest target to ANGLE_SET (if one was ever
given) and reads the state (``read_plan``). When commands stop coming it keeps re-sending the last target, so
the hand holds it; nothing is extrapolated. It holds at the measured angles (targets := measured) and drops the
last target when
* ``hold()`` is called;
* the hand reports an ERROR bit (``hold_on_device_error``): ``set_angles`` then raises DeviceError until
  ``clear_errors()``;
* the link came back after a communication failure (the runtime must send a new target; while the link is
  down ``set_angles`` and ``read_state`` raise the DeviceTimeout/DeviceError of the failed cycle);
* optionally, no target arrived for ``stale_hold_s``.
With ``rate_hz = 0`` there is no loop and every call talks to the hand directly.

Errors
* A request without an answer within ``timeout`` is re-sent on a fresh connection ``retries`` times (the old
  connection is dropped so a late answer cannot be taken for the next one), then DeviceTimeout.
* A lost or refused connection is reopened up to ``reconnect_attempts`` times with exponential back-off, then
  DeviceError naming the endpoint. After every (re)connect, speed and force limits are written again (the hand
  may have been power-cycled).
* A Modbus exception answer (the hand refused a request) is a DeviceError naming the register block.
* NaN / out-of-range / wrongly shaped commands raise SafetyViolation before anything is sent.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from embodiment import HAND_DOF, HAND_DOF_NAMES
from hardware.interfaces import DeviceError, DeviceTimeout, Hand, HandState, SafetyViolation
from hardware.inspire import registers as R
from hardware.inspire.config import InspireHandConfig

log = logging.getLogger(__name__)

_MODBUS_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                           4: "device failure", 5: "acknowledge", 6: "device busy", 10: "gateway path unavailable",
                           11: "gateway target failed to respond"}


def validate_angles(angles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Check a target-angle command; returns it as (6,) ints. Raises SafetyViolation (nothing is sent)."""
    try:
        a = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SafetyViolation(f"hand angles must be {HAND_DOF} numbers: {exc}") from None
    if a.shape != (HAND_DOF,):
        raise SafetyViolation(f"hand angles must have shape ({HAND_DOF},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SafetyViolation(f"hand angles contain NaN/inf: {a.tolist()}")
    if np.any(a < R.ANGLE_MIN) or np.any(a > R.ANGLE_MAX):
        raise SafetyViolation(f"hand angles must be within {R.ANGLE_MIN}..{R.ANGLE_MAX}, got {a.tolist()}")
    return np.rint(a).astype(np.int64)


def _validate_per_dof(values, lo: int, hi: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SafetyViolation(f"{what} must be numbers: {exc}") from None
    if v.ndim == 0:
        v = np.full(HAND_DOF, float(v))
    if v.shape != (HAND_DOF,):
        raise SafetyViolation(f"{what} must be a scalar or shape ({HAND_DOF},), got {v.shape}")
    if not np.all(np.isfinite(v)) or np.any(v != np.rint(v)):
        raise SafetyViolation(f"{what} must be finite integers, got {v.tolist()}")
    if np.any(v < lo) or np.any(v > hi):
        raise SafetyViolation(f"{what} must be within {lo}..{hi}, got {v.tolist()}")
    return v.astype(np.int64)


@dataclass(frozen=True)
class LoopStats:
    cycles: int
    failed_cycles: int
    overruns: int  # cycles that did not finish within the period
    achieved_rate_hz: float
    cycle_p50_s: float
    cycle_p99_s: float


class InspireHand(Hand):
    """Inspire RH56 over Modbus. See the module docstring. All public methods are thread-safe."""

    def __init__(self, config: InspireHandConfig | None = None):
        self.config = config or InspireHandConfig()
        self._io_lock = threading.RLock()  # all bus traffic; the loop holds it for a whole cycle
        self._client: ModbusTcpClient | ModbusSerialClient | None = None
        self._link_up = False  # connection open and settings applied on it
        self._ever_linked = False
        self._speeds = np.asarray(self.config.speed, dtype=np.int64)
        self._force_limits = np.asarray(self.config.force_limits, dtype=np.int64)
        self._plan = R.READ_PLANS[self.config.read_plan]
        self.reconnects = 0  # connections opened after the first one since connect() (diagnostics)
        # optional diagnostics hook: called with (what, seconds) after every answered Modbus transaction
        self.on_transaction: Callable[[str, float], None] | None = None
        # loop state (guarded by _cmd_lock, never held during I/O)
        self._cmd_lock = threading.Lock()
        self._state_cond = threading.Condition()
        self._target: np.ndarray | None = None
        self._target_stamp = 0.0
        self._hold_reason: str | None = "no target yet"
        self._device_fault: str | None = None
        self._comm_error: DeviceError | None = None  # set while the loop's last cycle failed
        self._hold_after_comm_loss = False
        self._state: HandState | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._crash: BaseException | None = None
        self._cycle_times: deque[float] = deque(maxlen=20000)
        self._cycles = self._failed = self._overruns = 0
        self._loop_started = 0.0

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Open the connection, write speed and force limits, read the state, start the loop (rate_hz > 0)."""
        with self._io_lock:
            if self._client is not None:
                return
            c = self.config
            if c.transport == "tcp":
                client = ModbusTcpClient(c.host, port=c.port, timeout=c.timeout, retries=0)
            else:
                client = ModbusSerialClient(c.serial_port, framer=FramerType.RTU, baudrate=c.baudrate,
                                            timeout=c.timeout, retries=0)
            self._client = client
            self._link_up = self._ever_linked = False
            self.reconnects = 0
            try:
                state = self._read_state_io()  # opens the link, applies settings, proves the hand answers
            except BaseException:
                self._close_client()
                raise
        with self._cmd_lock:
            self._target, self._hold_reason = None, "no target yet"
            self._device_fault = self._comm_error = None
            self._hold_after_comm_loss = False
        self._publish(state)
        if c.rate_hz > 0:
            self._start_loop()

    def disconnect(self) -> None:
        """Stop the loop and close the connection. The hand keeps its last target (it holds it)."""
        self._stop_loop()
        with self._io_lock:
            self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                self._link_up = False

    # ---------------------------------------------------------------------------------- I/O
    def _drop_link(self) -> None:
        """Close the socket/port (discarding any late answer); the next request reconnects if allowed."""
        if self._client is not None:
            self._client.close()
        self._link_up = False

    def _open_link(self) -> None:
        """(Re)open the connection and write the settings; bounded attempts with back-off. DeviceError if none
        opens. A timeout while writing the settings propagates as ModbusIOException (counted as a timeout)."""
        assert self._client is not None
        c = self.config
        attempts = c.reconnect_attempts if c.reconnect else 1
        delay = c.reconnect_delay_s
        last_problem = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(delay)
                delay = min(delay * 2, c.reconnect_delay_max_s)
            try:
                ok = self._client.connect()
            except OSError as exc:
                ok, last_problem = False, f"could not open the connection: {exc}"
            if not ok:
                last_problem = "could not open the connection (refused, unreachable or port missing)"
                continue
            try:
                self._apply_settings_raw()
            except (ConnectionException, OSError) as exc:
                self._client.close()
                last_problem = f"connection dropped while writing settings: {exc}"
                continue
            except BaseException:
                self._client.close()
                raise
            if self._ever_linked:
                self.reconnects += 1
                log.info("reconnected to Inspire hand at %s", self.endpoint)
            self._ever_linked = self._link_up = True
            return
        raise DeviceError(f"Inspire hand at {self.endpoint} unreachable after {attempts} connection attempt(s): "
                          f"{last_problem}")

    def _apply_settings_raw(self) -> None:
        assert self._client is not None
        for block, values in ((R.SPEED_SET, self._speeds), (R.FORCE_SET, self._force_limits)):
            rsp = self._client.write_registers(block.address, R.encode_block(block, values.tolist(),
                                                                             self.config.byte_order),
                                               device_id=self.config.device_id)
            self._check_response(rsp, f"write {block.name}")

    def _check_response(self, rsp, what: str):
        if rsp.isError():
            code = getattr(rsp, "exception_code", None)
            name = _MODBUS_EXCEPTION_NAMES.get(code, "unknown")
            raise DeviceError(f"Inspire hand at {self.endpoint} refused {what}: Modbus exception {code} ({name})")
        return rsp

    def _execute(self, what: str, op: Callable[[ModbusTcpClient | ModbusSerialClient], object]):
        """One Modbus request with timeout retries and reconnects. ``what`` names it in errors."""
        with self._io_lock:
            if self._client is None:
                raise DeviceError(f"Inspire hand at {self.endpoint} is not connected; call connect() first")
            timeouts = link_losses = 0
            while True:
                if not self._link_up and not self.config.reconnect and self._ever_linked:
                    raise DeviceError(f"connection to Inspire hand at {self.endpoint} was lost and reconnect is "
                                      f"disabled; call disconnect() and connect()")
                try:
                    if not self._link_up:
                        self._open_link()
                    t0 = time.perf_counter()
                    rsp = op(self._client)
                    if self.on_transaction is not None:
                        self.on_transaction(what, time.perf_counter() - t0)
                except ModbusIOException as exc:  # no (valid) answer within timeout
                    self._drop_link()
                    timeouts += 1
                    if timeouts > self.config.retries or not self.config.reconnect:
                        raise DeviceTimeout(
                            f"Inspire hand at {self.endpoint} did not answer {what} within {self.config.timeout} s "
                            f"({timeouts} attempt(s)): {exc}") from None
                    continue
                except (ConnectionException, OSError) as exc:  # connection closed or failed mid-request
                    self._drop_link()
                    link_losses += 1
                    if link_losses > self.config.reconnect_attempts or not self.config.reconnect:
                        raise DeviceError(f"lost connection to Inspire hand at {self.endpoint} during {what}: "
                                          f"{exc}") from None
                    continue
                except ModbusException as exc:
                    self._drop_link()
                    raise DeviceError(f"Modbus error talking to Inspire hand at {self.endpoint} during {what}: "
                                      f"{exc}") from None
                return self._check_response(rsp, what)

    def _read_registers(self, address: int, count: int, what: str) -> list[int]:
        dev = self.config.device_id
        rsp = self._execute(what, lambda cl: cl.read_holding_registers(address, count=count, device_id=dev))
        if len(rsp.registers) != count:
            raise DeviceError(f"Inspire hand at {self.endpoint} answered {what} with {len(rsp.registers)} "
                              f"registers, expected {count}")
        return list(rsp.registers)

    def _read(self, block: R.RegisterBlock) -> np.ndarray:
        regs = self._read_registers(block.address, block.registers, f"read {block.name} ({block.address})")
        return R.decode_block(block, regs, self.config.byte_order)

    def _write(self, block: R.RegisterBlock, values: Sequence[int]) -> None:
        regs = R.encode_block(block, [int(v) for v in values], self.config.byte_order)
        dev = self.config.device_id
        self._execute(f"write {block.name} ({block.address})",
                      lambda cl: cl.write_registers(block.address, regs, device_id=dev))

    def _read_state_io(self) -> HandState:
        raw: dict[R.RegisterBlock, np.ndarray] = {}
        with self._io_lock:
            for span in self._plan:
                names = "+".join(b.name for b in span.blocks)
                regs = self._read_registers(span.address, span.registers, f"read {names} ({span.address})")
                raw.update(R.decode_span(span, regs, self.config.byte_order))
        return HandState(
            angles=raw[R.ANGLE_ACT].astype(np.float64),
            forces=raw[R.FORCE_ACT].astype(np.float64),
            currents=raw[R.CURRENT].astype(np.float64),
            status=tuple(R.status_name(s) for s in raw[R.STATUS]),
            errors=tuple(R.error_names(e) for e in raw[R.ERROR]),
            temperatures=raw[R.TEMP].astype(np.float64),
            stamp=time.monotonic(),
        )

    def _hold_io(self, reason: str) -> np.ndarray:
        """targets := measured angles, on the hand and in the loop. Caller may hold _io_lock."""
        with self._io_lock:
            measured = np.clip(self._read(R.ANGLE_ACT), R.ANGLE_MIN, R.ANGLE_MAX)
            self._write(R.ANGLE_SET, measured.tolist())
        with self._cmd_lock:
            self._target, self._target_stamp, self._hold_reason = measured, time.monotonic(), reason
        return measured

    # ------------------------------------------------------------------------- Hand interface
    def read_state(self) -> HandState:
        """The loop's latest state (raises if it is not fresh), or a direct read when there is no loop."""
        if not self._loop_running():
            return self._read_state_io()
        deadline = time.monotonic() + self.config.state_max_age_s
        with self._state_cond:
            while True:
                self._raise_if_link_down()
                state = self._state
                age = time.monotonic() - state.stamp if state is not None else float("inf")
                if age <= self.config.state_max_age_s:
                    return state
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeout(f"no fresh state from Inspire hand at {self.endpoint}: the last one is "
                                        f"{age:.3f} s old (limit {self.config.state_max_age_s} s)")
                self._state_cond.wait(min(left, 0.05))

    def set_angles(self, angles: Sequence[float] | np.ndarray) -> None:
        """Command target angles (6,), 0..1000 (rounded to the hand's integer units)."""
        targets = validate_angles(angles)
        if not self._loop_running():
            self._write(R.ANGLE_SET, targets.tolist())
            return
        self._raise_if_link_down()
        with self._cmd_lock:
            if self._device_fault is not None:
                raise DeviceError(f"Inspire hand at {self.endpoint} is held after a device error "
                                  f"({self._device_fault}); call clear_errors() first")
            self._target, self._target_stamp, self._hold_reason = targets, time.monotonic(), None

    def hold(self) -> None:
        """Hold the current angles: targets := measured angles (the loop then re-sends those)."""
        self._raise_if_loop_crashed()
        self._hold_io("hold() requested")

    def clear_errors(self) -> None:
        """Hold first (cleared DoFs must not resume an old target), then write CLEAR_ERROR; targets are
        accepted again."""
        self._raise_if_loop_crashed()
        with self._io_lock:
            self._hold_io("errors cleared; waiting for a new target")
            self._write(R.CLEAR_ERROR, [1])
            with self._cmd_lock:
                self._device_fault = None
            cleared_at = time.monotonic()
        if self._loop_running():  # return once read_state() reflects the clear
            self.wait_for_state(cleared_at, timeout=self.config.state_max_age_s + 2.0 / self.config.rate_hz)

    # ----------------------------------------------------------------------------- extras
    def set_speed(self, speed: int | Sequence[int]) -> None:
        """SPEED_SET for all DoFs (scalar) or per DoF, 1..1000. Re-applied after reconnects."""
        speeds = _validate_per_dof(speed, 1, R.SPEED_MAX, "speed")
        with self._io_lock:
            self._write(R.SPEED_SET, speeds.tolist())
            self._speeds = speeds

    def set_force_limits(self, limits: int | Sequence[int]) -> None:
        """FORCE_SET for all DoFs (scalar) or per DoF, 1..1000. Re-applied after reconnects."""
        lims = _validate_per_dof(limits, R.FORCE_LIMIT_MIN + 1, R.FORCE_LIMIT_MAX, "force limits")
        with self._io_lock:
            self._write(R.FORCE_SET, lims.tolist())
            self._force_limits = lims

    @property
    def speeds(self) -> np.ndarray:
        return self._speeds.copy()

    @property
    def force_limits(self) -> np.ndarray:
        return self._force_limits.copy()

    def read_angles(self) -> np.ndarray:
        """ANGLE_ACT, read directly (bypasses the loop's state)."""
        return self._read(R.ANGLE_ACT).astype(np.float64)

    def read_targets(self) -> np.ndarray:
        """ANGLE_SET as the hand holds it, read directly."""
        return self._read(R.ANGLE_SET).astype(np.float64)

    def read_hand_id(self) -> int:
        return int(self._read(R.HAND_ID)[0])

    # ------------------------------------------------------------------------------ loop
    @property
    def target(self) -> np.ndarray | None:
        """The target the loop re-sends (None before the first command)."""
        with self._cmd_lock:
            return None if self._target is None else self._target.copy()

    @property
    def hold_reason(self) -> str | None:
        """Why the hand is holding at measured angles; None while it follows a commanded target."""
        with self._cmd_lock:
            return self._hold_reason

    @property
    def device_fault(self) -> str | None:
        with self._cmd_lock:
            return self._device_fault

    @property
    def last_error(self) -> DeviceError | None:
        """The error of the loop's last cycle; None when it succeeded."""
        with self._cmd_lock:
            return self._comm_error

    def wait_for_state(self, newer_than: float, timeout: float = 2.0) -> HandState:
        """Block until the loop has a state read after ``newer_than`` (time.monotonic()); DeviceTimeout else."""
        deadline = time.monotonic() + timeout
        with self._state_cond:
            while self._state is None or self._state.stamp <= newer_than:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeout(f"no fresh state from Inspire hand at {self.endpoint} within {timeout} s "
                                        f"(last error: {self.last_error})")
                self._state_cond.wait(left)
            return self._state

    def loop_stats(self) -> LoopStats:
        times = np.asarray(self._cycle_times, dtype=np.float64)
        elapsed = max(time.monotonic() - self._loop_started, 1e-9)
        return LoopStats(
            cycles=self._cycles, failed_cycles=self._failed, overruns=self._overruns,
            achieved_rate_hz=self._cycles / elapsed,
            cycle_p50_s=float(np.percentile(times, 50)) if times.size else float("nan"),
            cycle_p99_s=float(np.percentile(times, 99)) if times.size else float("nan"),
        )

    def _loop_running(self) -> bool:
        self._raise_if_loop_crashed()
        return self._thread is not None and self._thread.is_alive()

    def _raise_if_loop_crashed(self) -> None:
        if self._crash is not None:
            raise DeviceError(f"the Inspire hand control loop stopped unexpectedly: {self._crash!r}; "
                              f"call disconnect() and connect()")

    def _raise_if_link_down(self) -> None:
        with self._cmd_lock:
            err = self._comm_error
        if err is not None:
            raise type(err)(f"Inspire hand link is down (the loop retries every cycle): {err}")

    def _publish(self, state: HandState) -> None:
        with self._state_cond:
            self._state = state
            self._state_cond.notify_all()

    def _start_loop(self) -> None:
        self._stop.clear()
        self._crash = None
        self._cycle_times.clear()
        self._cycles = self._failed = self._overruns = 0
        self._loop_started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="inspire-hand-loop", daemon=True)
        self._thread.start()

    def _stop_loop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            c = self.config
            t.join(timeout=5.0 + (c.retries + 2) * c.timeout * 4 + c.reconnect_attempts * c.reconnect_delay_max_s)
        self._thread = None

    def _run(self) -> None:
        try:
            period = 1.0 / self.config.rate_hz
            next_t = time.monotonic()
            while not self._stop.is_set():
                t0 = time.monotonic()
                self._cycle()
                self._cycle_times.append(time.monotonic() - t0)
                self._cycles += 1
                next_t += period
                wait = next_t - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                else:
                    self._overruns += 1
                    if wait < -period:  # far behind: do not try to catch up with a burst
                        next_t = time.monotonic()
        except BaseException as exc:  # a bug, not a device problem: record it so commands are refused
            self._crash = exc
            log.exception("Inspire hand loop crashed")

    def _cycle(self) -> None:
        c = self.config
        try:
            with self._io_lock:
                if self._client is None:
                    return
                with self._cmd_lock:
                    target, stamp = self._target, self._target_stamp
                    hold_now = self._hold_after_comm_loss
                    if (not hold_now and c.stale_hold_s is not None and self._hold_reason is None
                            and target is not None and time.monotonic() - stamp > c.stale_hold_s):
                        hold_now = True
                if hold_now:
                    reason = ("link restored after a communication failure; waiting for a new target"
                              if self._hold_after_comm_loss else f"no new target for {c.stale_hold_s} s")
                    self._hold_io(reason)
                    with self._cmd_lock:
                        self._hold_after_comm_loss = False
                elif target is not None:
                    self._write(R.ANGLE_SET, target.tolist())
                state = self._read_state_io()
                if c.hold_on_device_error and state.has_error and self.device_fault is None:
                    bad = {HAND_DOF_NAMES[i]: sorted(e) for i, e in enumerate(state.errors) if e}
                    self._hold_io(f"device error: {bad}")
                    with self._cmd_lock:
                        self._device_fault = f"errors per DoF {bad}"
                    log.warning("Inspire hand at %s reports errors %s; holding", self.endpoint, bad)
        except DeviceError as exc:
            self._failed += 1
            with self._cmd_lock:
                first = self._comm_error is None
                self._comm_error = exc
                self._hold_after_comm_loss = True
                self._hold_reason = f"communication failed: {exc}"
            if first:
                log.warning("Inspire hand loop: %s", exc)
            with self._state_cond:
                self._state_cond.notify_all()
            return
        with self._cmd_lock:
            self._comm_error = None
        self._publish(state)
