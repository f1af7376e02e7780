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

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool  # noqa: F401 - the hold topic type (see HoldListener)
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from hardware.interfaces import HAND_RANGE

from .conversions import CHUNK_QOS, STATE_QOS, joint_state_msg, trajectory_to_chunk
from .core import HAND_JOINT_NAMES, ChunkError, HandPlayer
from .node_utils import (CHUNK_TOPIC, DIAGNOSTICS_TOPIC, ERROR, HAND_STATE_TOPIC, HOLD_TOPIC, OK, WARN, HoldListener,
                         declare, diag_array, diag_status, init_ros, now_s, spin_nodes)

HAND_DEFAULTS = {
    "chunk_topic": CHUNK_TOPIC,
    "joint_state_topic": HAND_STATE_TOPIC,
    "hold_topic": HOLD_TOPIC,
    "joint_state_rate_hz": 100.0,
    "diagnostics_rate_hz": 5.0,
    "max_chunk_age_s": 1.0,
    # real device (hardware.inspire); ignored in simulation
    "transport": "tcp",  # tcp | rtu
    "hand_host": "127.0.0.1",
    "hand_port": 6000,
    "serial_port": "/dev/ttyUSB0",
    "driver_options": "",  # JSON object passed verbatim to InspireHandConfig
}


class HandNode(Node):
    def __init__(self, hand=None, name: str = "hand", namespace: str = "/jala", overrides: dict | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, HAND_DEFAULTS, overrides)
        self.hand = hand
        self.player: HandPlayer | None = None
        self._lock = threading.RLock()
        self.held = False
        self.hold_reason = ""
        self.hold_stamp = 0.0
        self.fault = ""
        self.chunks_executed = 0
        self.chunks_refused = 0
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
        if hand is not None:
            self.start(hand)

    def start(self, hand) -> None:
        self.hand = hand
        self.player = HandPlayer(hand, on_error=lambda exc: self._fault(f"hand refused a target: {exc}"))
        self._state_thread = threading.Thread(target=self._state_loop, name="hand-state", daemon=True)
        self._state_thread.start()

    def _state_loop(self) -> None:
        period = 1.0 / float(self.p["joint_state_rate_hz"])
        next_t = time.monotonic()
        last_err = ""
        while not self._stop.is_set():
            try:
                st = self.hand.read_state()
                self.last_state = st
                self.state_pub.publish(joint_state_msg(HAND_JOINT_NAMES, st.angles, None, st.forces, now_s(self)))
                if st.has_error and not self.fault:
                    errs = {HAND_JOINT_NAMES[i]: sorted(e) for i, e in enumerate(st.errors) if e}
                    self._fault(f"hand reports errors: {errs}")
                last_err = ""
            except Exception as exc:  # noqa: BLE001
                if self._stop.is_set() or not self.context.ok():
                    return
                if str(exc) != last_err:
                    self.get_logger().error(f"reading the hand state failed: {exc}")
                    last_err = str(exc)
                    self._fault(f"hand state read failed: {exc}", hold=False)
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:
                next_t = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self._lock:
            if self.held or self.player is None:
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
                self.chunks_refused += 1
                self.get_logger().error(f"refusing action chunk: {exc}")
                self._fault(f"refused chunk: {exc}")
                return
            if now - chunk.stamp > self.p["max_chunk_age_s"]:  # late, not malformed: skip it
                self.chunks_refused += 1
                return
            rel, keep, _ = chunk.upcoming(now)
            if keep.size == 0:
                self.chunks_refused += 1
                return
            self.player.load(time.monotonic() + rel, angles[keep])
            self.chunks_executed += 1

    def _on_hold_cmd(self, msg: Bool) -> None:
        if msg.data:
            self.hold("supervisor hold")

    def hold(self, reason: str) -> None:
        """Hold the current angles and refuse chunks until recover() (``hold_stamp`` as in ArmNode.hold)."""
        with self._lock:
            first = not self.held
            if self.player is not None:
                self.player.clear()
            try:
                if self.hand is not None:
                    self.hand.hold()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"hand hold failed: {exc}")
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
                if self.hand is not None:
                    self.hand.clear_errors()
                    st = self.hand.read_state()
                    if st.has_error:
                        return False, f"hand still reports errors after clear_errors: {st.errors}"
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

    def publish_diagnostics(self) -> None:
        level = ERROR if self.fault else (WARN if self.held else OK)
        msg = self.fault or (f"holding: {self.hold_reason}" if self.held else "following chunks")
        sent = self.player.commands_sent if self.player else 0
        self.diag_pub.publish(diag_array(self, diag_status(
            "jala/hand", level, msg, "", held=self.held, hold_reason=self.hold_reason,
            hold_stamp=f"{self.hold_stamp:.6f}", chunks_executed=self.chunks_executed,
            chunks_refused=self.chunks_refused, commands_sent=sent)))

    def destroy_node(self):
        self.hold_listener.close()
        self._stop.set()
        if self.player is not None:
            self.player.close()
        if self._state_thread is not None:
            self._state_thread.join(timeout=1.0)
        return super().destroy_node()


def main(args=None) -> None:
    """Real hand (hardware.inspire) as its own process."""
    from .devices import make_real_hand

    init_ros(args)
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

    spin_nodes([node], num_threads=3, on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
