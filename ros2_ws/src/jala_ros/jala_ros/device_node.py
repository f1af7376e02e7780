"""DeviceNode: what the arm and hand nodes share.

- The hold latch: ``hold(reason)`` (from the ``~/estop`` service, the supervisor's latched ``/jala/hold`` topic,
  or a fault) makes the device hold position and the node refuse chunks until ``recover()`` (``~/recover``)
  clears the device's errors. ``hold_stamp`` is the ROS time at which the device accepted the hold command;
  ``held`` turns True only after that, so observers see a consistent stamp.
- Joint states published from the node's own thread at ``joint_state_rate_hz`` (not an executor timer, so a
  busy executor does not thin them out), stamped with the time the device measured them. A device that cannot
  be read is reported at ERROR without a hold command (one it could not deliver); the supervisor holds the rest
  of the robot on that ERROR.
- A hold wins over anything queued: chunks are refused while held, and a chunk computed from an observation
  taken before the last ``recover()`` is refused too (nothing queued before a reset runs after it).
- Stall guard: a watch thread ticks every 10 ms; when the process's threads were stopped for longer than
  ``stall_hold_s`` (SIGSTOP, a frozen host), the node holds the device at once on resume, and ``_on_chunk``
  checks the same before executing anything, so a chunk or a hold queued during the stall cannot let the old
  motion play out first.
- Diagnostics (``DIAG_NAME``) periodically and at once on every hold: level, hold reason and stamp, chunk
  counters, ``states_published`` (joint-state messages sent, for the publish rate at the source).

Subclasses implement ``_on_chunk`` and the device hooks ``_hold_device``, ``_recover_device``,
``_publish_state`` and ``_diag_values``.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from .conversions import CHUNK_QOS, STATE_QOS
from .node_utils import (DIAGNOSTICS_TOPIC, ERROR, OK, WARN, HoldListener, MonotonicToRosTime, declare, diag_array,
                         diag_status, now_s)


class DeviceNode(Node):
    LABEL = "device"  # in log lines and fault messages: "arm", "hand"
    DIAG_NAME = "jala/device"

    def __init__(self, device, name: str, namespace: str, defaults: dict[str, Any],
                 overrides: dict[str, Any] | None = None, allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, defaults, overrides, allowed_parameters)
        self.device = device
        self._lock = threading.RLock()
        self.held = False
        self.hold_reason = ""
        self.hold_stamp = 0.0
        self.fault = ""  # non-empty: an ERROR-level condition (refused chunk, device error)
        self.chunks_executed = 0
        self.chunks_refused = 0
        self.states_published = 0
        self.recovered_at = 0.0  # ROS time of the last successful recover(): older chunks are refused
        self._tick = time.monotonic()  # the stall guard's last tick
        self.state_pub = self.create_publisher(JointState, self.p["joint_state_topic"], STATE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(JointTrajectory, self.p["chunk_topic"], self._on_chunk, CHUNK_QOS)
        self.hold_listener = HoldListener(self, self.p["hold_topic"], self._on_hold_cmd)
        self.create_service(Trigger, "~/estop", self._srv_estop)
        self.create_service(Trigger, "~/recover", self._srv_recover)
        self.create_timer(1.0 / self.p["diagnostics_rate_hz"], self.publish_diagnostics)
        self._stop = threading.Event()
        self._state_thread: threading.Thread | None = None
        self._ros_time = MonotonicToRosTime(self)
        self._stall_thread = threading.Thread(target=self._stall_loop, name=f"{self.LABEL}-stall-guard", daemon=True)
        self._stall_thread.start()

    # ------------------------------------------------------------------------------ subclass hooks
    def _on_chunk(self, msg: JointTrajectory) -> None:
        raise NotImplementedError

    def _hold_device(self) -> None:
        raise NotImplementedError

    def _recover_device(self) -> str:
        """Clear the device's errors; '' when it is fine afterwards, else why not."""
        raise NotImplementedError

    def _publish_state(self) -> None:
        """Read the device, publish its joint state, and call ``_fault`` on an error it reports."""
        raise NotImplementedError

    def _diag_values(self) -> dict[str, Any]:
        return {}

    def _hardware_id(self) -> str:
        return ""

    # ------------------------------------------------------------------------------ state publishing
    def _measured_at(self, device_stamp: float) -> float:
        """ROS time at which a device state stamped with ``time.monotonic()`` was measured (now when the device
        gives no stamp): joint states carry their measurement time, so a driver loop slower than the publisher
        (the Inspire hand over RTU) shows up as age, not as fresh data."""
        return self._ros_time(min(device_stamp, time.monotonic()) if device_stamp > 0 else time.monotonic())

    def start(self, device) -> None:
        self.device = device
        self._state_thread = threading.Thread(target=self._state_loop, name=f"{self.LABEL}-state", daemon=True)
        self._state_thread.start()

    def _state_loop(self) -> None:
        period = 1.0 / float(self.p["joint_state_rate_hz"])
        next_t = time.monotonic()
        last_err = ""
        while not self._stop.is_set():
            try:
                self._publish_state()
                self.states_published += 1
                last_err = ""
            except Exception as exc:  # noqa: BLE001 - a device that cannot be read is a fault
                if self._stop.is_set() or not self.context.ok():
                    return
                if str(exc) != last_err:
                    self.get_logger().error(f"reading the {self.LABEL} state failed: {exc}")
                    last_err = str(exc)
                    self._fault(f"{self.LABEL} state read failed: {exc}", hold=False)
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:  # fell behind (loaded machine): do not burst to catch up
                next_t = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    # ------------------------------------------------------------------------------ the stall guard
    def _stall_loop(self, period: float = 0.01) -> None:
        while not self._stop.wait(period):
            self.check_stall()

    def check_stall(self) -> bool:
        """Hold when the node's threads were stopped for longer than ``stall_hold_s`` since the last check;
        True when it held. Called by the watch thread and before a chunk is executed."""
        now = time.monotonic()
        with self._lock:
            gap, self._tick = now - self._tick, now
        if gap > self.p["stall_hold_s"] and self.device is not None:
            self._fault(f"{self.LABEL} node stalled for {gap:.2f} s (process stopped or starved): holding before "
                        "anything queued runs")
            return True
        return False

    # ------------------------------------------------------------------------------ the hold latch
    def _on_hold_cmd(self, msg: Bool) -> None:
        if msg.data:
            self.hold("supervisor hold")

    def hold(self, reason: str) -> None:
        """Hold position and refuse chunks until recover()."""
        with self._lock:
            first = not self.held
            try:
                if self.device is not None:
                    self._hold_device()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"{self.LABEL} hold failed: {exc}")
                self.fault = self.fault or f"hold failed: {exc}"
            if first:
                self.hold_stamp = now_s(self)
                self.hold_reason = reason
            self.held = True
        if first:
            self.get_logger().warn(f"HOLD: {reason}")
            self.publish_diagnostics()

    def _fault(self, reason: str, hold: bool = True) -> None:
        self.fault = reason
        if hold:
            self.hold(reason)
        else:
            self.publish_diagnostics()

    def _refuse(self, reason: str) -> None:
        """A chunk that must not run (malformed, or refused by the device): count it, hold, report ERROR."""
        self.chunks_refused += 1
        self.get_logger().error(reason)
        self._fault(reason)

    def recover(self) -> tuple[bool, str]:
        with self._lock:
            try:
                problem = self._recover_device() if self.device is not None else ""
            except Exception as exc:  # noqa: BLE001
                return False, f"recover failed: {exc}"
            if problem:
                return False, problem
            self.recovered_at = now_s(self)
            self.held = False
            self.fault = ""
            self.hold_reason = ""
        self.get_logger().info("recovered: accepting chunks")
        self.publish_diagnostics()
        return True, "recovered"

    def _srv_estop(self, _req, resp):
        self.hold("estop service")
        resp.success, resp.message = True, "holding; call recover to resume"
        return resp

    def _srv_recover(self, _req, resp):
        resp.success, resp.message = self.recover()
        return resp

    # ------------------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        level = ERROR if self.fault else (WARN if self.held else OK)
        msg = self.fault or (f"holding: {self.hold_reason}" if self.held else "following chunks")
        self.diag_pub.publish(diag_array(self, diag_status(
            self.DIAG_NAME, level, msg, self._hardware_id(), held=self.held, hold_reason=self.hold_reason,
            hold_stamp=f"{self.hold_stamp:.6f}", chunks_executed=self.chunks_executed,
            chunks_refused=self.chunks_refused, states_published=self.states_published, **self._diag_values())))

    def chunk_refusal(self, stamp: float, now: float) -> str:
        """Why a chunk computed from the observation at ``stamp`` must not run now ('' = it may): held, the
        node stalled, computed before the last recover, or older than ``max_chunk_age_s``."""
        if self.check_stall() or self.held:
            return f"held ({self.hold_reason})"
        if stamp < self.recovered_at:
            return "computed before the last recover"
        if now - stamp > self.p["max_chunk_age_s"]:
            return f"stale: its observation is {now - stamp:.3f} s old (max_chunk_age_s {self.p['max_chunk_age_s']})"
        return ""

    def destroy_node(self):
        self.hold_listener.close()
        self._stop.set()
        if self._state_thread is not None:
            self._state_thread.join(timeout=1.0)
        return super().destroy_node()
