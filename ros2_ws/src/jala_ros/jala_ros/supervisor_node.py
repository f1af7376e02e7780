"""Supervisor node: watchdog over cameras, policy, joint states and device diagnostics.

Faults and what is watched
- stale camera: no CameraInfo (published with every frame) on a camera's info topic for > camera_timeout_ms;
- stale policy: no chunk for > policy_timeout_ms while the policy reports running (``/jala/policy/running``);
- stale joint states: no arm / hand JointState for > joint_state_timeout_ms;
  (cameras and joint states are watched while the policy runs, or always with watch_sensors_when_idle)
- device fault: an ERROR (or STALE) status on ``/diagnostics`` whose name starts with one of
  ``fault_diagnostics_prefixes`` (the arm, hand and camera nodes report there);
- ``~/estop`` service; a reason on ``/jala/hold_request`` (std_msgs/String: the runner asks for a hold with
  why, e.g. on SIGTERM or when a node process died).
On the first fault it publishes ``/jala/hold`` = True (latched std_msgs/Bool; the arm and hand nodes hold and
refuse chunks, the policy stops), the reason on ``/jala/status`` (std_msgs/String) and a ``jala/supervisor``
ERROR status on ``/diagnostics`` whose ``detected_at`` value is the ROS time of detection.
``~/reset`` clears the hold once no input is stale: calls the arm and hand ``recover`` services (they fail while
a device is still in error), then publishes hold False.
"""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from .conversions import CHUNK_QOS, IMAGE_SUB_QOS, LATCHED_QOS, STATE_QOS, from_time_msg
from jala_runtime.watchdog import Fault, Watchdog
from .node_utils import (DIAGNOSTICS_TOPIC, ERROR, OK, POLICY_RUNNING_TOPIC, SideNode, call_trigger, declare,
                         diag_array, diag_status, level_of, now_s, run_node)
from .parameters import SupervisorNodeConfig



class SupervisorNode(Node):
    def __init__(self, name: str = "supervisor", namespace: str = "/jala", overrides: dict | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, SupervisorNodeConfig, overrides)
        self.watchdog = Watchdog()
        grace = float(self.p["startup_grace_s"])
        self._lock = threading.Lock()
        self.holding = False
        self.hold_reason = ""
        self.detected_at = 0.0
        self.holds = 0
        self.last_fault: Fault | None = None  # the stale input that caused the current hold
        self.device_faults: dict[str, str] = {}
        self.policy_running = False
        self._reset_at = 0.0
        for topic in self.p["camera_info_topics"]:
            key = f"camera {topic}"
            self.watchdog.add(key, self.p["camera_timeout_ms"] / 1e3, grace=grace)
            self.create_subscription(CameraInfo, topic, lambda _m, k=key: self.watchdog.feed(k), IMAGE_SUB_QOS)
        for topic in self.p["joint_state_topics"]:
            key = f"joint states {topic}"
            self.watchdog.add(key, self.p["joint_state_timeout_ms"] / 1e3, grace=grace)
            self.create_subscription(JointState, topic, lambda _m, k=key: self.watchdog.feed(k), STATE_QOS)
        self.sensor_keys = [k for k in self.watchdog.items]
        if not self.p["watch_sensors_when_idle"]:
            for k in self.sensor_keys:
                self.watchdog.items[k].active = False
        self.watchdog.add("policy", self.p["policy_timeout_ms"] / 1e3, active=False)
        self.create_subscription(JointTrajectory, self.p["chunk_topic"], lambda _m: self.watchdog.feed("policy"),
                                 CHUNK_QOS)
        self.create_subscription(Bool, POLICY_RUNNING_TOPIC, self._on_running, LATCHED_QOS)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)
        self.create_subscription(String, self.p["hold_request_topic"],
                                 lambda m: self.trigger_hold(m.data or "hold requested"), 10)
        self.hold_pub = self.create_publisher(Bool, self.p["hold_topic"], LATCHED_QOS)
        self.status_pub = self.create_publisher(String, self.p["status_topic"], LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        # the reset service waits for the devices' recover services: their answers arrive on a side node's thread
        self._recover_side = SideNode(self, "recover_client")
        self._recover_clients = [self._recover_side.node.create_client(Trigger, s) for s in self.p["recover_services"]]
        self.create_timer(1.0 / self.p["check_rate_hz"], self._check)
        self.create_timer(0.5, self._publish_status)
        self.create_service(Trigger, "~/estop", self._srv_estop)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.hold_pub.publish(Bool(data=False))
        self._publish_status()

    # ----------------------------------------------------------------------------------------------- inputs
    def _on_running(self, msg: Bool) -> None:
        self.policy_running = bool(msg.data)
        self.watchdog.set_active("policy", self.policy_running)
        if not self.p["watch_sensors_when_idle"]:
            for k in self.sensor_keys:
                self.watchdog.set_active(k, self.policy_running, keep_last=True)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if from_time_msg(msg.header.stamp) < self._reset_at:
            return  # reported before the last reset recovered the devices
        prefixes = tuple(self.p["fault_diagnostics_prefixes"])
        for st in msg.status:
            if not st.name.startswith(prefixes):
                continue
            if level_of(st) >= ERROR:
                reason = f"device fault {st.name}: {st.message}"
                self.device_faults[st.name] = reason
                self.trigger_hold(reason)
            else:
                self.device_faults.pop(st.name, None)

    # ------------------------------------------------------------------------------------------------ checks
    def _check(self) -> None:
        faults = self.watchdog.check()
        if faults and not self.holding:
            self.last_fault = faults[0]
            self.trigger_hold(faults[0].reason)

    def trigger_hold(self, reason: str) -> None:
        with self._lock:
            if self.holding:
                return
            self.holding = True
            self.holds += 1
            self.hold_reason = reason
            self.detected_at = now_s(self)
        self.hold_pub.publish(Bool(data=True))
        self.get_logger().error(f"HOLD: {reason}")
        self.status_pub.publish(String(data=f"HOLD: {reason}"))
        self.diag_pub.publish(diag_array(self, diag_status(
            "jala/supervisor", ERROR, reason, "", holding=True, detected_at=f"{self.detected_at:.6f}",
            holds=self.holds)))

    def _publish_status(self) -> None:
        if self.holding:
            text = f"HOLD: {self.hold_reason}"
        else:
            text = "RUNNING" if self.policy_running else "READY"
        self.status_pub.publish(String(data=text))
        self.diag_pub.publish(diag_array(self, diag_status(
            "jala/supervisor", ERROR if self.holding else OK, text, "", holding=self.holding,
            detected_at=f"{self.detected_at:.6f}", holds=self.holds)))

    # ---------------------------------------------------------------------------------------------- services
    def _srv_estop(self, _req, resp):
        self.trigger_hold("estop requested")
        resp.success, resp.message = True, "holding"
        return resp

    def _srv_reset(self, _req, resp):
        """Clear the hold: refused while an input is stale; device faults are cleared by the devices' recover
        services (which fail while a device is still in error)."""
        active = [f.reason for f in self.watchdog.check()]
        if active:
            resp.success, resp.message = False, "faults still active: " + "; ".join(active)
            return resp
        for client in self._recover_clients:
            ok, msg = call_trigger(client, timeout=3.0)
            if not ok:
                resp.success, resp.message = False, f"{client.srv_name}: {msg}"
                return resp
        with self._lock:
            self._reset_at = now_s(self)
            self.device_faults.clear()
            self.holding = False
            self.hold_reason = ""
        self.hold_pub.publish(Bool(data=False))
        self._publish_status()
        resp.success, resp.message = True, "hold cleared; start the policy to resume"
        return resp

    def destroy_node(self):
        self._recover_side.close()
        return super().destroy_node()


def main(args=None) -> None:
    run_node(SupervisorNode, "supervisor", args)


if __name__ == "__main__":
    main()
