"""Teleop node: an operator drives the robot through the same chunk topic as the policy.

- An operator input source (``teleop.sources``: keyboard, SpaceMouse, WebXR, Apple Vision Pro, a replayed file;
  in simulation the world's scripted expert, run inside ``sim_devices``) feeds a ``teleop.session.TeleopSession``
  at ``rate_hz``: wrist pose -> FR3 joint targets (IK, workspace and step limits), fingers -> RH56 angles
  (retargeting), clutch, deadman.
- Its ``TimedChunk`` commands go on ``/jala/action_chunk``, so the arm and hand nodes execute them with the same
  refusal rules, safety gate and holds as a policy chunk (no second way to move the robot). The operator's clean
  command goes on ``/jala/teleop/command`` (sensor_msgs/JointState, 13 joints) for the recorder; with DART noise
  the executed chunk differs from it.
- Deadman / released clutch: no chunk is published and a hold is requested on ``/jala/hold_request`` with the
  reason (the supervisor holds arm and hand); motion resumes after ``/jala/supervisor/reset`` and fresh input.
- The operator's episode buttons call the recorder's ``~/start``, ``~/save`` and ``~/discard``.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from embodiment import ARM_JOINT_NAMES, CHUNK_JOINT_NAMES, HAND_JOINT_NAMES

from .conversions import CHUNK_QOS, STATE_QOS, chunk_to_trajectory, joint_positions, joint_state_msg
from .node_utils import SideNode, call_trigger, declare, now_s, run_node
from .parameters import TeleopNodeConfig


class TeleopNode(Node):
    """``source``: an OperatorSource (tests, sim_devices' expert); else made from the ``source`` parameter.
    ``on_episode_end``: called after the operator's SAVE or DISCARD, with True when the recorder saved the episode
    (the simulated world resets for the next one either way: a recorder that was restarted mid-episode answers
    SAVE with "no episode", and the expert simply starts over). ``on_start_failed``: called with the message when
    the recorder did not start an episode on START (it refused, or did not answer: ``node_utils.unanswered``)."""

    def __init__(self, source=None, name: str = "teleop", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None,
                 on_episode_end: Callable[[bool], None] | None = None,
                 on_start_failed: Callable[[str], None] | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = p = declare(self, TeleopNodeConfig, overrides, allowed_parameters)
        from teleop.session import TeleopConfig, TeleopSession

        self.source = source if source is not None else make_source(p["source"], p["source_options"])
        self.session = TeleopSession(self.source, config=TeleopConfig(
            rate_hz=float(p["rate_hz"]), deadman_s=float(p["deadman_s"]), dart_noise=float(p["dart_noise"]),
            lead_s=float(p["lead_s"])))
        self.on_episode_end = on_episode_end
        self.on_start_failed = on_start_failed
        self._lock = threading.Lock()
        self._arm: np.ndarray | None = None
        self._hand: np.ndarray | None = None
        self.chunks_published = 0
        self.holds_requested = 0
        self.latencies_ms: list[float] = []
        self._held = ""
        self._commanding = False  # a chunk went out since the last hold
        self.chunk_pub = self.create_publisher(JointTrajectory, p["chunk_topic"], CHUNK_QOS)
        self.command_pub = self.create_publisher(JointState, p["command_topic"], STATE_QOS)
        self.hold_pub = self.create_publisher(String, p["hold_request_topic"], 10)
        self.create_subscription(JointState, p["arm_state_topic"], self._on_arm, STATE_QOS)
        self.create_subscription(JointState, p["hand_state_topic"], self._on_hand, STATE_QOS)
        self._side = SideNode(self, "recorder_client")  # service calls answered while this node's thread waits
        self.side_node = self._side.node
        self._recorder_clients = {b: self._side.node.create_client(Trigger, f"{p['recorder'].rstrip('/')}/{b}")
                         for b in ("start", "save", "discard")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="teleop", daemon=True)
        self._thread.start()
        self.get_logger().info(f"teleop: {getattr(self.source, 'name', type(self.source).__name__)} at "
                               f"{p['rate_hz']:g} Hz, deadman {p['deadman_s'] * 1e3:.0f} ms")

    def _on_arm(self, msg: JointState) -> None:
        with self._lock:
            self._arm = joint_positions(msg, ARM_JOINT_NAMES)

    def _on_hand(self, msg: JointState) -> None:
        with self._lock:
            self._hand = joint_positions(msg, HAND_JOINT_NAMES)

    def _loop(self) -> None:
        period = 1.0 / float(self.p["rate_hz"])
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - reported; no command goes out, the deadman holds
                self.get_logger().error(f"teleop step failed: {type(exc).__name__}: {exc}")
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:
                next_t = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    def step(self) -> None:
        with self._lock:
            arm, hand = self._arm, self._hand
        if arm is None or hand is None:
            return
        now = now_s(self)
        cmd = self.session.step(now, arm, hand)
        for button in sorted(getattr(cmd, "buttons", ()) or (), key=str):
            self._on_button(button)
        if cmd.hold:
            # once per hold (its reason's text changes as it lasts; the supervisor latches it), and only when teleop
            # was commanding motion: before the operator's first sample there is nothing to stop
            if not self._held and self._commanding:
                self._held = cmd.hold
                self.holds_requested += 1
                self.hold_pub.publish(String(data=f"teleop: {cmd.hold}"))
                self.get_logger().warning(f"HOLD requested: {cmd.hold}")
            self._commanding = False
            return
        self._held = ""
        if cmd.clean is not None:
            self.command_pub.publish(joint_state_msg(CHUNK_JOINT_NAMES, cmd.clean, stamp=now))
        if cmd.chunk is not None:
            self.chunk_pub.publish(chunk_to_trajectory(cmd.chunk))
            self.chunks_published += 1
            self._commanding = True
            latency = getattr(cmd, "latency_s", None)
            if latency is not None:
                self.latencies_ms.append(latency * 1e3)
                del self.latencies_ms[:-2000]

    def _on_button(self, button) -> None:
        name = getattr(button, "value", str(button))
        service = {"start": "start", "save": "save", "discard": "discard"}.get(name)
        if service is None:
            return
        ok, msg = call_trigger(self._recorder_clients[service], timeout=5.0)
        if ok:  # separate call sites: rclpy refuses one call site logging at two severities
            self.get_logger().info(f"recorder {service}: {msg}")
        else:
            self.get_logger().warning(f"recorder {service} failed: {msg}")
        if service in ("save", "discard") and self.on_episode_end is not None:
            self.on_episode_end(ok and service == "save")
        if service == "start" and not ok and self.on_start_failed is not None:
            self.on_start_failed(msg)

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._side.close()
        try:
            self.source.close()
        finally:
            return super().destroy_node()


def make_source(kind: str, options: str | dict | None = None):
    """An operator source by name (``teleop.sources``), with its options (JSON text or dict)."""
    opts = json.loads(options) if isinstance(options, str) and options.strip() else dict(options or {})
    if kind == "keyboard":
        from teleop.sources.keyboard import KeyboardSource as cls
    elif kind == "replay":
        from teleop.sources.replay import ReplaySource as cls
    elif kind == "spacemouse":
        from teleop.sources.spacemouse import SpaceMouseSource as cls
    elif kind == "webxr":
        from teleop.sources.webxr import WebXRSource as cls
    elif kind == "avp":
        from teleop.sources.avp import VisionProSource as cls
    elif kind == "expert":
        raise ValueError("the expert operator runs inside sim_devices (simulation only): use --sim with "
                         "--operator expert")
    else:
        raise ValueError(f"unknown operator source {kind!r}: keyboard | spacemouse | webxr | avp | replay | expert")
    return cls(**opts)


def main(args=None) -> None:
    run_node(TeleopNode, "teleop", args)


if __name__ == "__main__":
    main()
