"""DeviceNode: the ROS shell the arm and hand nodes share, over a ``jala_runtime.executor`` follower.

The follower (``ArmFollower`` / ``HandFollower``, plain Python) owns the rules: the hold latch (``hold`` from the
``~/estop`` service, the supervisor's latched ``/jala/hold`` topic, or a fault; chunks refused until ``~/recover``
clears the device's errors), refusal of chunks computed before the last recover or older than
``max_chunk_age_s``, malformed chunks (hold + ERROR), and the stall guard (a 10 ms watch thread here; a stall
longer than ``stall_hold_s`` holds before anything queued runs). This node adds the ROS side:
- the chunk subscription (``trajectory_to_chunk``: one conversion, into the TimedChunk the policy produced);
- joint states published from the node's own thread at ``joint_state_rate_hz`` (not an executor timer, so a busy
  executor does not thin them out), stamped with the time the device measured them. A device that cannot be
  read is reported at ERROR without a hold command (one it could not deliver); the supervisor holds the rest of
  the robot on that ERROR;
- diagnostics (``DIAG_NAME``) periodically and at once on every hold and recover: level, hold reason and stamp
  (``hold_stamp``: ROS time at which the device accepted the hold), chunk counters, ``states_published``.

Subclasses set ``FOLLOWER`` and implement ``_publish_state`` (and ``_diag_values``, ``_hardware_id``).
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

from jala_runtime.chunk import ChunkError
from jala_runtime.executor import DeviceFollower, FollowerConfig

from .conversions import CHUNK_QOS, STATE_QOS, trajectory_to_chunk
from .node_utils import (DIAGNOSTICS_TOPIC, ERROR, OK, WARN, HoldListener, MonotonicToRosTime, declare, diag_array,
                         diag_status, init_ros, log_at, now_s, spin_nodes, startup_errors)


class DeviceNode(Node):
    LABEL = "device"  # in log lines and fault messages: "arm", "hand"
    DIAG_NAME = "jala/device"
    FOLLOWER: type[DeviceFollower] = DeviceFollower
    CONFIG: type  # the node's parameter dataclass (jala_ros.parameters)
    follower: DeviceFollower | None = None  # class default: the hold listener may call in before __init__ ends

    def __init__(self, device, name: str, namespace: str, overrides: dict[str, Any] | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, self.CONFIG, overrides, allowed_parameters)
        self.follower = self.FOLLOWER(device, FollowerConfig(
            max_chunk_age_s=float(self.p["max_chunk_age_s"]), min_lead_s=float(self.p.get("min_lead_s", 0.0)),
            stall_hold_s=float(self.p["stall_hold_s"])), on_event=self._on_event, clock=lambda: now_s(self))
        self.states_published = 0
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

    # ------------------------------------------------------------------------------ the follower's state
    @property
    def device(self):
        return self.follower.device if self.follower is not None else None

    held = property(lambda self: self.follower is not None and self.follower.held)
    hold_reason = property(lambda self: self.follower.hold_reason if self.follower else "")
    hold_stamp = property(lambda self: self.follower.hold_stamp if self.follower else 0.0)
    fault = property(lambda self: self.follower.fault if self.follower else "")
    chunks_executed = property(lambda self: self.follower.chunks_executed if self.follower else 0)
    chunks_refused = property(lambda self: self.follower.chunks_refused if self.follower else 0)
    chunks_skipped_late = property(lambda self: self.follower.chunks_skipped_late if self.follower else 0)
    last_refusal = property(lambda self: self.follower.last_refusal if self.follower else "")
    recovered_at = property(lambda self: self.follower.recovered_at if self.follower else 0.0)

    def _on_event(self, level: str, message: str) -> None:
        log_at(self.get_logger(), level, message)
        if message.startswith("HOLD: ") or message.startswith("recovered"):
            self.publish_diagnostics()

    # ------------------------------------------------------------------------------ subclass hooks
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
        self.follower.attach(device)
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
        return self.follower.check_stall()

    # ------------------------------------------------------------------------------ hold / recover / chunks
    def _on_hold_cmd(self, msg: Bool) -> None:
        if msg.data:
            self.hold("supervisor hold")

    def hold(self, reason: str) -> None:
        """Hold position and refuse chunks until recover()."""
        if self.follower is not None:
            self.follower.hold(reason)

    def _fault(self, reason: str, hold: bool = True) -> None:
        self.follower.set_fault(reason, hold)
        if not hold:
            self.publish_diagnostics()

    def recover(self) -> tuple[bool, str]:
        return self.follower.recover()

    def _on_chunk(self, msg: JointTrajectory) -> None:
        f = self.follower
        with f.lock:
            if f.refused_while_held():  # before parsing: a held device does not judge the chunk
                return
            try:
                chunk = trajectory_to_chunk(msg)
            except ChunkError as exc:
                f.refuse(f"refused chunk: {exc}")
                return
            f.submit(chunk, now_s(self))

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
            chunks_refused=self.chunks_refused, chunks_skipped_late=self.chunks_skipped_late,
            last_refusal=self.last_refusal, states_published=self.states_published, **self._diag_values())))

    @classmethod
    def run_process(cls, args=None) -> None:
        """The node as its own process, on the real device its ``device_kind`` names (made through
        ``hardware.registry`` from the parameters marked ``driver``). On shutdown the device holds, then
        disconnects."""
        from .devices import make_device
        from .parameters import driver_params

        init_ros(args)
        with startup_errors(f"{cls.LABEL}_node"):
            node = cls(name=cls.LABEL)
            p = node.p
            device = make_device(cls.LABEL, p["device_kind"], driver_params(cls.CONFIG, p), p["driver_options"])
            device.connect()
        node.start(device)

        def _shutdown():
            node.destroy_node()  # stops the state (and hand schedule) threads
            try:
                device.hold()
            finally:
                device.disconnect()

        spin_nodes([node], on_shutdown=_shutdown)

    def destroy_node(self):
        self.hold_listener.close()
        self._stop.set()
        if self._state_thread is not None:
            self._state_thread.join(timeout=1.0)
        return super().destroy_node()
