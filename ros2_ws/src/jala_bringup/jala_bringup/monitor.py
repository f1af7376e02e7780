"""The runner's monitor: an rclpy node in the runner's process watching the graph's topics (frames, joint states,
chunks, diagnostics, status), asking for holds and calling services; plus the rate statistics it reports."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

@dataclass
class Metrics:
    camera_stamps: dict[str, list[float]] = field(default_factory=dict)  # arrival times (monotonic)
    arm_state_times: list[float] = field(default_factory=list)
    hand_state_times: list[float] = field(default_factory=list)
    chunk_latency: list[float] = field(default_factory=list)  # frame stamp -> chunk received [s]
    chunks_received: int = 0
    arm_diag: dict[str, str] = field(default_factory=dict)
    hand_diag: dict[str, str] = field(default_factory=dict)
    supervisor_diag: dict[str, str] = field(default_factory=dict)
    policy_diag: dict[str, str] = field(default_factory=dict)
    status: list[tuple[float, str]] = field(default_factory=list)  # (monotonic arrival, text), every change
    diag_times: dict[str, float] = field(default_factory=dict)  # status name -> last arrival (monotonic)
    completion: dict | None = None
    arm_q: list = field(default_factory=list)  # (t, q) samples while running
    # (arrival time, states_published) from the arm / hand diagnostics: the publish rate at the source
    arm_published: list = field(default_factory=list)
    hand_published: list = field(default_factory=list)


class Monitor:
    """An rclpy node (in this process) watching the graph's topics. Call ``rclpy.init`` first."""

    def __init__(self, info_topics: list[str], name: str = "jala_run_monitor"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, JointState
        from std_msgs.msg import Bool, String
        from trajectory_msgs.msg import JointTrajectory

        from jala_ros.conversions import CHUNK_QOS, IMAGE_SUB_QOS, LATCHED_QOS, STATE_QOS, from_time_msg
        from jala_ros.node_utils import (ARM_STATE_TOPIC, CHUNK_TOPIC, HAND_STATE_TOPIC, HOLD_REQUEST_TOPIC, HOLD_TOPIC,
                                         STATUS_TOPIC, BackgroundSpin, values_of)

        self.rclpy = rclpy
        self.m = Metrics()
        self.recording = False
        self._lock = threading.Lock()
        self.node = rclpy.create_node(name)
        node = self.node

        def clock() -> float:
            return node.get_clock().now().nanoseconds * 1e-9

        for t in info_topics:
            self.m.camera_stamps[t] = []
            node.create_subscription(CameraInfo, t, lambda _m, t=t: self.m.camera_stamps[t].append(time.monotonic()),
                                     IMAGE_SUB_QOS)

        def on_arm(msg):
            now = time.monotonic()
            self.m.arm_state_times.append(now)
            if self.recording:
                self.m.arm_q.append((now, list(msg.position)))

        node.create_subscription(JointState, ARM_STATE_TOPIC, on_arm, STATE_QOS)
        node.create_subscription(JointState, HAND_STATE_TOPIC, lambda _m: self.m.hand_state_times.append(
            time.monotonic()), STATE_QOS)

        def on_chunk(msg):
            self.m.chunks_received += 1
            if self.recording:
                self.m.chunk_latency.append(clock() - from_time_msg(msg.header.stamp))

        node.create_subscription(JointTrajectory, CHUNK_TOPIC, on_chunk, CHUNK_QOS)

        def on_diag(msg):
            for st in msg.status:
                self.m.diag_times[st.name] = time.monotonic()
                if st.name in ("jala/arm", "jala/hand"):
                    values = values_of(st) | {"message": st.message}
                    dev = st.name.split("/")[1]
                    setattr(self.m, f"{dev}_diag", values)
                    if "states_published" in values:
                        getattr(self.m, f"{dev}_published").append((time.monotonic(), int(values["states_published"])))
                elif st.name == "jala/policy":
                    self.m.policy_diag = values_of(st) | {"message": st.message}
                elif st.name == "jala/supervisor":
                    self.m.supervisor_diag = values_of(st) | {"message": st.message}

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)

        def on_status(msg):
            if not self.m.status or self.m.status[-1][1] != msg.data:
                self.m.status.append((time.monotonic(), msg.data))

        node.create_subscription(String, STATUS_TOPIC, on_status, LATCHED_QOS)
        self._hold_request_pub = node.create_publisher(String, HOLD_REQUEST_TOPIC, 10)
        self._hold_pub = node.create_publisher(Bool, HOLD_TOPIC, LATCHED_QOS)
        self._String, self._Bool = String, Bool
        node.create_subscription(String, "/jala/sim/completion",
                                 lambda msg: setattr(self.m, "completion", json.loads(msg.data)), LATCHED_QOS)
        self._spin = BackgroundSpin([node], name=name)

    def call_trigger(self, service: str, timeout: float = 5.0) -> tuple[bool, str]:
        from std_srvs.srv import Trigger

        from jala_ros.node_utils import call_trigger

        client = self.node.create_client(Trigger, service)
        try:
            return call_trigger(client, timeout)
        finally:
            self.node.destroy_client(client)

    def request_hold(self, reason: str) -> None:
        """Hold the robot: the supervisor with ``reason`` (on /jala/status and in its diagnostics), and the arm
        and hand directly on /jala/hold (they act on it even when the supervisor is gone)."""
        self._hold_request_pub.publish(self._String(data=reason))
        self._hold_pub.publish(self._Bool(data=True))

    def devices_held(self) -> bool:
        return self.m.arm_diag.get("held") == "True" and self.m.hand_diag.get("held") == "True"

    def service_ready(self, service: str) -> bool:
        names = {n for n, _ in self.node.get_service_names_and_types()}
        return service in names

    def close(self) -> None:
        self._spin.close()
        self.node.destroy_node()


def published_rate(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Messages per second between the first and the last (time, count) sample inside [t0, t1]."""
    inside = [(t, n) for t, n in samples if t0 <= t <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def rate_stats(times: list[float], t0: float, t1: float) -> dict:
    ts = np.array([t for t in times if t0 <= t <= t1])
    if ts.size < 2:
        return {"hz": 0.0, "n": int(ts.size), "period_p50_ms": float("nan"), "period_p99_ms": float("nan")}
    dt = np.diff(ts)
    return {"hz": float((ts.size - 1) / (ts[-1] - ts[0])), "n": int(ts.size),
            "period_p50_ms": float(np.percentile(dt, 50) * 1e3), "period_p99_ms": float(np.percentile(dt, 99) * 1e3)}
