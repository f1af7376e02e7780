"""Arm node: executes the FR3 part of each action chunk on an ``hardware.interfaces.Arm``.

- Subscribes the chunk topic (trajectory_msgs/JointTrajectory, header.stamp = observation time, waypoints at
  stamp + time_from_start) and hands each chunk, as the TimedChunk the policy produced, to an ``ArmFollower``
  (``jala_runtime.executor``): the FR3 columns (fr3_joint1..7) are taken by name, waypoints due within
  ``min_lead_s`` are dropped and the rest go to ``Arm.execute(chunk, now)``; a new chunk preempts the running one
  without a stop.
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

from embodiment import ARM_JOINT_NAMES
from jala_runtime.executor import ArmFollower

from .conversions import joint_state_msg
from .device_node import DeviceNode
from .parameters import ArmNodeConfig



class ArmNode(DeviceNode):
    LABEL = "arm"
    DIAG_NAME = "jala/arm"
    FOLLOWER = ArmFollower
    CONFIG = ArmNodeConfig

    def __init__(self, arm=None, name: str = "arm", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(arm, name, namespace, overrides, allowed_parameters, **node_kwargs)
        if arm is not None:
            self.start(arm)

    @property
    def arm(self):
        return self.device

    @property
    def waypoints_dropped(self) -> int:
        return self.follower.waypoints_dropped if self.follower else 0

    def _publish_state(self) -> None:
        st = self.arm.read_state()
        self.state_pub.publish(joint_state_msg(ARM_JOINT_NAMES, st.q, st.dq, st.tau_ext,
                                               self._measured_at(st.stamp)))
        if st.in_error and not self.fault:
            self._fault(f"arm reports an error: {st.error_message or 'unknown'}")

    def _hardware_id(self) -> str:
        return self.p["robot_ip"]

    def _diag_values(self) -> dict:
        return {"waypoints_dropped": self.waypoints_dropped}


def main(args=None) -> None:
    """The real arm (``device_kind``, default franka_fr3) as its own process."""
    ArmNode.run_process(args)


if __name__ == "__main__":
    main()
