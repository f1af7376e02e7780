"""Hand node: follows the hand part of each action chunk on an ``hardware.interfaces.Hand``.

- Subscribes the chunk topic; the Inspire columns (inspire_pinky .. inspire_thumb_rotation, native 0..1000) are
  played by a ``HandPlayer`` thread that commands ``Hand.set_angles`` following the waypoint timestamps
  (waypoints already past are dropped; a new chunk preempts the old one).
- Publishes sensor_msgs/JointState (``/jala/hand/joint_states``, positions in the hand's 0..1000 units,
  effort = force) at ``joint_state_rate_hz``.
- ``~/estop`` / ``~/recover`` services and the latched ``/jala/hold`` topic, as the arm node.
- Malformed chunks (NaN, missing joints, values outside 0..1000) are refused: hold + ERROR diagnostics.
"""
from __future__ import annotations

import time

from trajectory_msgs.msg import JointTrajectory

from hardware.interfaces import HAND_RANGE

from .conversions import joint_state_msg, trajectory_to_chunk
from .core import HAND_JOINT_NAMES, ChunkError, HandPlayer
from .device_node import DeviceNode
from .node_utils import init_ros, now_s, spin_nodes, startup_errors
from .parameters import HAND_DEFAULTS



class HandNode(DeviceNode):
    LABEL = "hand"
    DIAG_NAME = "jala/hand"
    player: HandPlayer | None = None  # set by start(); a class default, as the hold listener may call in first

    def __init__(self, hand=None, name: str = "hand", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(hand, name, namespace, HAND_DEFAULTS, overrides, allowed_parameters, **node_kwargs)
        if hand is not None:
            self.start(hand)

    @property
    def hand(self):
        return self.device

    def start(self, hand) -> None:
        self.player = HandPlayer(hand, on_error=lambda exc: self._fault(f"hand refused a target: {exc}"))
        super().start(hand)

    # ------------------------------------------------------------------------------------------ device hooks
    def _publish_state(self) -> None:
        st = self.hand.read_state()
        self.state_pub.publish(joint_state_msg(HAND_JOINT_NAMES, st.angles, None, st.forces,
                                               self._measured_at(st.stamp)))
        if st.has_error and not self.fault:
            errs = {HAND_JOINT_NAMES[i]: sorted(e) for i, e in enumerate(st.errors) if e}
            self._fault(f"hand reports errors: {errs}")

    def _hold_device(self) -> None:
        if self.player is not None:
            self.player.clear()
        self.hand.hold()

    def _recover_device(self) -> str:
        self.hand.clear_errors()
        st = self.hand.read_state()
        return f"hand still reports errors after clear_errors: {st.errors}" if st.has_error else ""

    def _diag_values(self) -> dict:
        return {"commands_sent": self.player.commands_sent if self.player else 0}

    # ------------------------------------------------------------------------------------------ commands
    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self._lock:
            if self.check_stall() or self.held or self.player is None:
                self.chunks_refused += 1
                return
            now = now_s(self)
            try:
                chunk = trajectory_to_chunk(msg)
                angles = chunk.select(HAND_JOINT_NAMES)
                lo, hi = HAND_RANGE
                if angles.min() < lo or angles.max() > hi:
                    raise ChunkError(f"hand targets outside {lo:.0f}..{hi:.0f}: min {angles.min():.1f}, "
                                     f"max {angles.max():.1f}")
            except ChunkError as exc:
                self._refuse(f"refused chunk: {exc}")
                return
            why = self.chunk_refusal(chunk.stamp, now)
            if why:  # late or from before a reset: skip it
                self.chunks_refused += 1
                self.get_logger().warn(f"skipping a chunk: {why}")
                return
            rel, keep, _ = chunk.upcoming(now)
            if keep.size == 0:
                self.chunks_refused += 1
                return
            self.player.load(time.monotonic() + rel, angles[keep])
            self.chunks_executed += 1

    def destroy_node(self):
        if self.player is not None:
            self.player.close()
        return super().destroy_node()


def main(args=None) -> None:
    """Real hand (hardware.inspire) as its own process."""
    from .devices import make_real_hand

    init_ros(args)
    with startup_errors("hand_node"):
        node = HandNode(name="hand")
        p = node.p
        hand = make_real_hand({k: p[k] for k in ("transport", "hand_host", "hand_port", "serial_port")},
                              p["driver_options"])
        hand.connect()
    node.start(hand)

    def _shutdown():
        node.destroy_node()  # stops the state and player threads
        try:
            hand.hold()
        finally:
            hand.disconnect()

    spin_nodes([node], on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
