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

from trajectory_msgs.msg import JointTrajectory

from hardware.interfaces import JointTrajectoryChunk, SafetyViolation

from .conversions import joint_state_msg, trajectory_to_chunk
from .core import ARM_JOINT_NAMES, ChunkError
from .device_node import DeviceNode
from .node_utils import init_ros, now_s, spin_nodes, startup_errors
from .parameters import ARM_DEFAULTS



class ArmNode(DeviceNode):
    LABEL = "arm"
    DIAG_NAME = "jala/arm"
    # class defaults: the hold listener may publish diagnostics before __init__ has run to the end
    waypoints_dropped = 0

    def __init__(self, arm=None, name: str = "arm", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(arm, name, namespace, ARM_DEFAULTS, overrides, allowed_parameters, **node_kwargs)
        if arm is not None:
            self.start(arm)

    @property
    def arm(self):
        return self.device

    # ------------------------------------------------------------------------------------------ device hooks
    def _publish_state(self) -> None:
        st = self.arm.read_state()
        self.state_pub.publish(joint_state_msg(ARM_JOINT_NAMES, st.q, st.dq, st.tau_ext,
                                               self._measured_at(st.stamp)))
        if st.in_error and not self.fault:
            self._fault(f"arm reports an error: {st.error_message or 'unknown'}")

    def _hold_device(self) -> None:
        self.arm.hold()

    def _recover_device(self) -> str:
        self.arm.recover()
        st = self.arm.read_state()
        return f"arm still in error after recover: {st.error_message}" if st.in_error else ""

    def _hardware_id(self) -> str:
        return self.p["robot_ip"]

    def _diag_values(self) -> dict:
        return {"waypoints_dropped": self.waypoints_dropped}

    # ------------------------------------------------------------------------------------------ commands
    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self._lock:
            if self.check_stall() or self.held:
                self.chunks_refused += 1
                return
            now = now_s(self)
            try:
                chunk = trajectory_to_chunk(msg)
                q = chunk.select(ARM_JOINT_NAMES)
            except ChunkError as exc:
                self._refuse(f"refused chunk: {exc}")
                return
            why = self.chunk_refusal(chunk.stamp, now)
            if why:  # late or from before a reset, not malformed: skip it, keep going
                self.chunks_refused += 1
                self.get_logger().warn(f"skipping a chunk: {why}")
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
                self._refuse(f"safety gate refused chunk: {exc}")
                return
            except Exception as exc:  # noqa: BLE001
                self._refuse(f"arm error: {exc}")
                return
            self.chunks_executed += 1


def main(args=None) -> None:
    """Real arm (hardware.franka) as its own process."""
    from .devices import make_real_arm

    init_ros(args)
    with startup_errors("arm_node"):
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

    spin_nodes([node], on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
