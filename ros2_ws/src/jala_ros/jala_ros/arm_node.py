"""Arm node: executes the arm part of each action chunk on an ``hardware.interfaces.Arm``.

- Subscribes the chunk topic (trajectory_msgs/JointTrajectory, header.stamp = observation time, waypoints at
  stamp + time_from_start). The FR3 columns (fr3_joint1..7) are taken by name, waypoints already in the past
  are dropped and the rest go to ``Arm.execute`` with times relative to now; a new chunk preempts the running
  one without a stop.
- Publishes sensor_msgs/JointState (``/jala/arm/joint_states``) at ``joint_state_rate_hz`` from its own thread.
- Services ``~/estop`` (hold and refuse chunks until ``~/recover``) and ``~/recover`` (clear device errors and
  accept chunks again); ``/jala/hold`` (std_msgs/Bool, latched) True from the supervisor does the same as estop.
- A malformed chunk (NaN, missing joints, bad times) or one the arm's safety gate refuses is not executed: the
  arm holds, the node refuses chunks until recovered, and reports the reason at ERROR on ``/diagnostics``.
- Diagnostics (``jala/arm``): level, hold reason, ``hold_stamp`` (ROS time ``Arm.hold()`` returned: at once for
  the simulated arm; for FrankaArm, which waits until the arm is at rest, after the deceleration), counters.
  Published periodically and at once on every hold.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool  # noqa: F401 - the hold topic type (see HoldListener)
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from hardware.interfaces import JointTrajectoryChunk, SafetyViolation

from .conversions import CHUNK_QOS, STATE_QOS, joint_state_msg, trajectory_to_chunk
from .core import ARM_JOINT_NAMES, ChunkError
from .node_utils import (ARM_STATE_TOPIC, CHUNK_TOPIC, DIAGNOSTICS_TOPIC, ERROR, HOLD_TOPIC, OK, WARN, HoldListener,
                         declare, diag_array, diag_status, init_ros, now_s, spin_nodes)

ARM_DEFAULTS = {
    "chunk_topic": CHUNK_TOPIC,
    "joint_state_topic": ARM_STATE_TOPIC,
    "hold_topic": HOLD_TOPIC,
    "joint_state_rate_hz": 200.0,
    "diagnostics_rate_hz": 5.0,
    "min_lead_s": 0.03,  # waypoints due sooner than this are dropped (no near-instant first segment)
    "max_chunk_age_s": 1.0,  # a chunk whose observation is older than this is refused (stale)
    # real device (hardware.franka); ignored in simulation
    "robot_ip": "",
    "driver_options": "",  # JSON object passed verbatim to the driver config
}


class ArmNode(Node):
    def __init__(self, arm=None, name: str = "arm", namespace: str = "/jala", overrides: dict | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, ARM_DEFAULTS, overrides)
        self.arm = arm
        self._lock = threading.RLock()
        self.held = False
        self.hold_reason = ""
        self.hold_stamp = 0.0
        self.fault = ""  # non-empty: an ERROR-level condition (refused chunk, device error)
        self.chunks_executed = 0
        self.chunks_refused = 0
        self.waypoints_dropped = 0
        self.last_chunk_stamp = 0.0
        self.last_state = None
        cmd_group = MutuallyExclusiveCallbackGroup()
        self.state_pub = self.create_publisher(JointState, self.p["joint_state_topic"], STATE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(JointTrajectory, self.p["chunk_topic"], self._on_chunk, CHUNK_QOS,
                                 callback_group=cmd_group)
        self.hold_listener = HoldListener(self, self.p["hold_topic"], self._on_hold_cmd)
        self.create_service(Trigger, "~/estop", self._srv_estop, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, "~/recover", self._srv_recover, callback_group=cmd_group)
        self.create_timer(1.0 / self.p["diagnostics_rate_hz"], self.publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self._stop = threading.Event()
        self._state_thread: threading.Thread | None = None
        if arm is not None:
            self.start(arm)

    # ------------------------------------------------------------------------------------- state publishing
    def start(self, arm) -> None:
        self.arm = arm
        self._state_thread = threading.Thread(target=self._state_loop, name="arm-state", daemon=True)
        self._state_thread.start()

    def _state_loop(self) -> None:
        period = 1.0 / float(self.p["joint_state_rate_hz"])
        next_t = time.monotonic()
        last_err = ""
        while not self._stop.is_set():
            try:
                st = self.arm.read_state()
                self.last_state = st
                self.state_pub.publish(joint_state_msg(ARM_JOINT_NAMES, st.q, st.dq, st.tau_ext, now_s(self)))
                if st.in_error and not self.fault:
                    self._fault(f"arm reports an error: {st.error_message or 'unknown'}")
                last_err = ""
            except Exception as exc:  # noqa: BLE001 - a device that cannot be read is a fault
                if self._stop.is_set() or not self.context.ok():
                    return
                if str(exc) != last_err:
                    self.get_logger().error(f"reading the arm state failed: {exc}")
                    last_err = str(exc)
                    self._fault(f"arm state read failed: {exc}", hold=False)
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:  # fell behind (loaded machine): do not burst to catch up
                next_t = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    # ------------------------------------------------------------------------------------------ commands
    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self._lock:
            if self.held:
                self.chunks_refused += 1
                return
            now = now_s(self)
            try:
                chunk = trajectory_to_chunk(msg)
                q = chunk.select(ARM_JOINT_NAMES)
            except ChunkError as exc:
                self.chunks_refused += 1
                self.get_logger().error(f"refusing action chunk: {exc}")
                self._fault(f"refused chunk: {exc}")
                return
            if now - chunk.stamp > self.p["max_chunk_age_s"]:  # late, not malformed: skip it, keep going
                self.chunks_refused += 1
                self.get_logger().warn(f"skipping a stale chunk: its observation is {now - chunk.stamp:.3f} s old "
                                       f"(max_chunk_age_s {self.p['max_chunk_age_s']})")
                return
            rel, keep, dropped = chunk.upcoming(now, self.p["min_lead_s"])
            self.waypoints_dropped += dropped
            if keep.size == 0:
                self.get_logger().warn(f"chunk arrived after its last waypoint ({now - chunk.times[-1]:.3f} s late); "
                                       "skipped")
                self.chunks_refused += 1
                return
            try:
                self.arm.execute(JointTrajectoryChunk(rel, q[keep]))
            except SafetyViolation as exc:
                self.chunks_refused += 1
                self.get_logger().error(f"arm safety gate refused the chunk: {exc}")
                self._fault(f"safety gate refused chunk: {exc}")
                return
            except Exception as exc:  # noqa: BLE001
                self.chunks_refused += 1
                self.get_logger().error(f"arm refused the chunk: {exc}")
                self._fault(f"arm error: {exc}")
                return
            self.chunks_executed += 1
            self.last_chunk_stamp = chunk.stamp

    def _on_hold_cmd(self, msg: Bool) -> None:
        if msg.data:
            self.hold("supervisor hold")

    def hold(self, reason: str) -> None:
        """Hold position and refuse chunks until recover(). ``hold_stamp`` is the ROS time at which the device
        accepted the hold command; ``held`` turns True only after that (observers see a consistent stamp)."""
        with self._lock:
            first = not self.held
            try:
                if self.arm is not None:
                    self.arm.hold()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"arm hold failed: {exc}")
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

    def recover(self) -> tuple[bool, str]:
        with self._lock:
            try:
                if self.arm is not None:
                    self.arm.recover()
                    st = self.arm.read_state()
                    if st.in_error:
                        return False, f"arm still in error after recover: {st.error_message}"
            except Exception as exc:  # noqa: BLE001
                return False, f"recover failed: {exc}"
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

    # ------------------------------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        level = ERROR if self.fault else (WARN if self.held else OK)
        msg = self.fault or (f"holding: {self.hold_reason}" if self.held else "following chunks")
        self.diag_pub.publish(diag_array(self, diag_status(
            "jala/arm", level, msg, self.p["robot_ip"], held=self.held, hold_reason=self.hold_reason,
            hold_stamp=f"{self.hold_stamp:.6f}", chunks_executed=self.chunks_executed,
            chunks_refused=self.chunks_refused, waypoints_dropped=self.waypoints_dropped)))

    def destroy_node(self):
        self.hold_listener.close()
        self._stop.set()
        if self._state_thread is not None:
            self._state_thread.join(timeout=1.0)
        return super().destroy_node()


def main(args=None) -> None:
    """Real arm (hardware.franka) as its own process."""
    from .devices import make_real_arm

    init_ros(args)
    node = ArmNode(name="arm")
    arm = make_real_arm({"robot_ip": node.p["robot_ip"]}, node.p["driver_options"])
    arm.connect()
    node.start(arm)

    def _shutdown():
        node.destroy_node()  # stops the state thread
        try:
            arm.hold()
        finally:
            arm.disconnect()

    spin_nodes([node], num_threads=3, on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
