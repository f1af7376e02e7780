"""Hand node: follows the Inspire part of each action chunk on an ``hardware.interfaces.Hand``.

- Subscribes the chunk topic; each chunk, as the TimedChunk the policy produced, goes to a ``HandFollower``
  (``jala_runtime.executor``): the Inspire columns (inspire_pinky .. inspire_thumb_rotation, native 0..1000)
  become the hand's waypoint schedule, and a ``HandTicker`` thread commands ``Hand.set_angles`` following the
  waypoint times (waypoints already past are dropped; a new chunk preempts the old one).
- Publishes sensor_msgs/JointState (``/jala/hand/joint_states``, positions in the hand's 0..1000 units,
  effort = force) at ``joint_state_rate_hz``.
- ``~/estop`` / ``~/recover`` services and the latched ``/jala/hold`` topic, as the arm node.
- Malformed chunks (NaN, missing joints, values outside 0..1000) are refused: hold + ERROR diagnostics.
"""
from __future__ import annotations

from embodiment import HAND_JOINT_NAMES
from jala_runtime.executor import HandFollower, HandTicker

from .conversions import joint_state_msg
from .device_node import DeviceNode
from .node_utils import now_s
from .parameters import HandNodeConfig



class HandNode(DeviceNode):
    LABEL = "hand"
    DIAG_NAME = "jala/hand"
    FOLLOWER = HandFollower
    CONFIG = HandNodeConfig
    ticker: HandTicker | None = None  # set by start()

    def __init__(self, hand=None, name: str = "hand", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(hand, name, namespace, overrides, allowed_parameters, **node_kwargs)
        if hand is not None:
            self.start(hand)

    @property
    def hand(self):
        return self.device

    def start(self, hand) -> None:
        super().start(hand)
        self.ticker = HandTicker(self.follower, clock=lambda: now_s(self))

    def _publish_state(self) -> None:
        st = self.hand.read_state()
        self.state_pub.publish(joint_state_msg(HAND_JOINT_NAMES, st.angles, None, st.forces,
                                               self._measured_at(st.stamp)))
        if st.has_error and not self.fault:
            errs = {HAND_JOINT_NAMES[i]: sorted(e) for i, e in enumerate(st.errors) if e}
            self._fault(f"hand reports errors: {errs}")

    def _diag_values(self) -> dict:
        return {"commands_sent": self.follower.commands_sent if self.follower else 0}

    def destroy_node(self):
        if self.ticker is not None:
            self.ticker.close()
        return super().destroy_node()


def main(args=None) -> None:
    """The real hand (``device_kind``, default inspire_rh56) as its own process."""
    HandNode.run_process(args)


if __name__ == "__main__":
    main()
