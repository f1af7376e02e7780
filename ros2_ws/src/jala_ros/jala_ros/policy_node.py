"""Policy node: runs JalaPolicy on the newest camera frame(s) + joint states and publishes action chunks.

- Subscribes the camera image topics (newest frame only), ``/jala/arm/joint_states``,
  ``/jala/hand/joint_states`` and the instruction (std_msgs/String, latched; the ``instruction`` parameter is
  the default).
- Publishes trajectory_msgs/JointTrajectory on ``/jala/action_chunk``: joints fr3_joint1..7 + the 6 Inspire
  DoFs, header.stamp = the stamp of the (first) camera frame the chunk was computed from, time_from_start =
  the chunk's action times relative to it (action_dt * 1..H).
- Pipelining: chunk k+1 is computed while chunk k executes. Inference for k+1 starts at
  stamp_k + action_dt * execute_steps - (measured inference latency), so k+1 lands about when ``execute_steps``
  actions of chunk k have been executed, and the arm switches to it without pausing.
- ``~/start`` / ``~/stop`` (std_srvs/Trigger) start and stop inference; ``/jala/policy/running`` (Bool, latched)
  tells the supervisor. A hold (``/jala/hold`` True, on a side node so it never waits behind other callbacks)
  stops the policy, and ``~/start`` is refused while the hold lasts (the reply names the hold's reason from
  ``/jala/status``): clearing the hold (supervisor ``~/reset``) never resumes motion by itself, only an explicit
  ``~/start`` after it does.
- The model is loaded before the services are offered: ``~/start`` appearing means the node is ready.
"""
from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from embodiment import ARM_JOINT_NAMES, HAND_JOINT_NAMES
from jala_runtime.loop import InferenceLoop, PolicyRunner
from jala_runtime.observation import ObservationAssembler
from jala_runtime.scheduler import ChunkScheduler, execute_steps_for

from .conversions import (CHUNK_QOS, IMAGE_SUB_QOS, LATCHED_QOS, STATE_QOS, chunk_to_trajectory, from_time_msg,
                          image_to_array, joint_positions)
from jala_runtime.stats import percentiles
from .node_utils import (DIAGNOSTICS_TOPIC, OK, POLICY_RUNNING_TOPIC, WARN, HoldListener, declare, diag_array,
                         diag_status, log_at, now_s, run_node)
from .parameters import PolicyNodeConfig



def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class PolicyNode(Node):
    def __init__(self, policy=None, name: str = "policy", namespace: str = "/jala", overrides: dict | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, PolicyNodeConfig, overrides)
        if policy is None:
            policy = self._load_policy()
        self.policy = policy
        self.action_dt = float(policy.config.action_dt)
        self.horizon = int(policy.config.action_head.action_horizon)
        topics = list(self.p["image_topics"])
        from jala_policy import check_camera_views  # one check and message with evaluation.simulated

        check_camera_views(policy.config.num_views, topics)
        self.instruction = self.p["instruction"]
        # the runtime core (jala_runtime): observation assembly, scheduling, the inference thread
        self.observations = ObservationAssembler(len(topics), self.p["max_obs_age_s"], decode=image_to_array)
        if self.p["execute_steps"] < 0:
            raise ValueError(f"execute_steps must be >= 0 (0: the checkpoint's choice), got {self.p['execute_steps']}")
        self.execute_steps = execute_steps_for(policy, self.p["execute_steps"])
        self.runner = PolicyRunner(policy, ChunkScheduler(self.action_dt, self.execute_steps, self.horizon),
                                   self.observations, seed=None if self.p["seed"] < 0 else int(self.p["seed"]))
        self._run_lock = threading.RLock()  # running / held and publishing a chunk
        self.running = False
        self.held = False
        self.hold_reason = ""
        self.chunks_published = 0
        self.errors = 0
        self.last_error = ""
        self.latencies: list[float] = []  # frame stamp -> chunk published [s]
        self.infer_ms: list[float] = []
        self.loop = InferenceLoop(self.runner, clock=lambda: now_s(self), running=lambda: self.running,
                                  instruction=lambda: self.instruction, publish=self._publish_chunk,
                                  log=self._log, on_error=self._on_inference_error, on_published=self._on_published)

        for i, t in enumerate(topics):
            self.create_subscription(Image, t, lambda m, i=i: self._on_image(i, m), IMAGE_SUB_QOS)
        self.create_subscription(JointState, self.p["arm_state_topic"], self._on_arm, STATE_QOS)
        self.create_subscription(JointState, self.p["hand_state_topic"], self._on_hand, STATE_QOS)
        self.create_subscription(String, self.p["instruction_topic"], self._on_instruction, LATCHED_QOS)
        self.create_subscription(String, self.p["status_topic"], self._on_status, LATCHED_QOS)
        self.hold_listener = HoldListener(self, self.p["hold_topic"], self._on_hold)
        self.chunk_pub = self.create_publisher(JointTrajectory, self.p["chunk_topic"], CHUNK_QOS)
        self.running_pub = self.create_publisher(Bool, POLICY_RUNNING_TOPIC, LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_timer(1.0 / self.p["diagnostics_rate_hz"], self.publish_diagnostics)
        self._stop = threading.Event()
        self.loop.start()
        self._stall_tick = time.monotonic()
        self._stall_thread = threading.Thread(target=self._stall_loop, name="policy-stall-guard", daemon=True)
        self._stall_thread.start()
        if self.p["autostart"]:
            self.start("autostart")
        else:
            self._set_running(False, "")
        # Offered last: their presence means the model is loaded and the node is ready.
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        self.get_logger().info(f"policy ready ({policy.config.num_views} view(s), horizon {self.horizon}, "
                               f"dt {self.action_dt:.4f} s, execute_steps {self.execute_steps}, "
                               f"device {policy.device})")

    def _load_policy(self):
        import dataclasses

        from jala_policy import JalaPolicy

        ckpt = self.p["checkpoint"]
        if not ckpt:
            raise ValueError("parameter 'checkpoint' is empty: give a JALA policy checkpoint directory "
                             "(python -m jala_policy.demo_checkpoint --out DIR makes a tiny random one)")
        device = _resolve_device(self.p["device"])
        t0 = time.perf_counter()
        policy = JalaPolicy.from_pretrained(ckpt, device=device)
        self.get_logger().info(f"loaded {ckpt} on {device} in {time.perf_counter() - t0:.1f} s")
        if policy.device.type == "cuda":
            # The fast path by default on CUDA (jala_policy.InferenceConfig.fast): torch preprocessing from one
            # upload, the instruction cached while unchanged, the head's Euler steps captured in a CUDA graph here
            # (warm-up and capture at load). The checkpoint's other inference settings (head_backend) are kept.
            policy.configure_inference(dataclasses.replace(policy.config.inference, fast=True))
        # Warm-up (first call builds caches / kernels) so the first real chunk is not late.
        h, w = policy.config.input_image_hw or (240, 320)
        imgs = [np.zeros((h, w, 3), np.uint8)] * policy.config.num_views
        state = np.zeros(policy.config.action_head.state_dim)
        policy.predict(imgs if len(imgs) > 1 else imgs[0], self.p["instruction"], state)
        return policy

    # -------------------------------------------------------------------------------------------- inputs
    def _on_image(self, i: int, msg: Image) -> None:
        self.observations.set_frame(i, from_time_msg(msg.header.stamp), msg)  # decoded only when used
        self.loop.wake()

    def _on_arm(self, msg: JointState) -> None:
        self.observations.set_arm(joint_positions(msg, ARM_JOINT_NAMES), now_s(self))

    def _on_hand(self, msg: JointState) -> None:
        self.observations.set_hand(joint_positions(msg, HAND_JOINT_NAMES), now_s(self))

    def _on_instruction(self, msg: String) -> None:
        if msg.data.strip():
            self.instruction = msg.data
            self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_hold(self, msg: Bool) -> None:
        with self._run_lock:
            self.held = bool(msg.data)
            if self.held and self.running:
                self._set_running(False, "hold")

    def _stall_loop(self, period: float = 0.02) -> None:
        while not self._stop.wait(period):
            self.check_stall()

    def check_stall(self) -> bool:
        """Stop the policy when this process's threads were stopped for longer than ``stall_stop_s`` (checked by
        a 20 ms watch thread and before each chunk is published): on resume, the hold that came meanwhile may
        already be overwritten by a reset, so the policy never carries on by itself. True when it stopped."""
        now = time.monotonic()
        with self._run_lock:
            gap, self._stall_tick = now - self._stall_tick, now
            if gap > self.p["stall_stop_s"] and self.running:
                self._set_running(False, f"the policy process stalled for {gap:.2f} s")
                return True
        return False

    def _on_status(self, msg: String) -> None:
        if msg.data.startswith("HOLD: "):
            self.hold_reason = msg.data[len("HOLD: "):]

    def _set_running(self, running: bool, why: str) -> None:
        with self._run_lock:
            self.running = running
            if running:
                self.runner.scheduler.reset()  # start with a fresh chunk at once
                self.loop.wake()
            self.running_pub.publish(Bool(data=running))
        if why:
            self.get_logger().info(f"{'running' if running else 'stopped'} ({why})")

    def start(self, why: str = "start service") -> tuple[bool, str]:
        """Start inference unless the robot is held (then: refused, with the hold's reason)."""
        with self._run_lock:
            if self.held:
                reason = self.hold_reason or "hold active"
                self.get_logger().warn(f"start refused: holding ({reason})")
                return False, (f"refused: the robot is held ({reason}); clear it with /jala/supervisor/reset, "
                               "then start again")
            self._set_running(True, why)
        return True, "running"

    def _srv_start(self, _req, resp):
        resp.success, resp.message = self.start()
        return resp

    def _srv_stop(self, _req, resp):
        self._set_running(False, "stop service")
        resp.success, resp.message = True, "stopped"
        return resp

    # ------------------------------------------------------------------------------------------ inference
    def _publish_chunk(self, chunk) -> bool:
        """Called by the inference thread: publish unless stopped, held or stalled meanwhile (then dropped)."""
        with self._run_lock:
            if self.check_stall() or not self.running:
                return False
            self.chunk_pub.publish(chunk_to_trajectory(chunk))
        self.chunks_published += 1
        return True

    def _on_published(self, chunk, latency: float, infer_s: float) -> None:
        self.latencies.append(latency)
        self.infer_ms.append(infer_s * 1e3)
        if len(self.latencies) > 2000:
            del self.latencies[:1000], self.infer_ms[:1000]

    def _on_inference_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def _log(self, level: str, message: str) -> None:
        log_at(self.get_logger(), level, message)

    def publish_diagnostics(self) -> None:
        lat = percentiles(self.latencies[-200:])
        inf = percentiles(self.infer_ms[-200:])
        # Inference errors are WARN: no chunk is published, and the supervisor's stale-policy watchdog acts.
        level = WARN if self.last_error else OK
        msg = self.last_error or ("running" if self.running else "stopped")
        self.diag_pub.publish(diag_array(self, diag_status(
            "jala/policy", level, msg, str(self.policy.device), running=self.running, held=self.held,
            chunks_published=self.chunks_published, errors=self.errors, execute_steps=self.execute_steps,
            latency_p50_ms=f"{lat['p50'] * 1e3:.1f}", latency_p99_ms=f"{lat['p99'] * 1e3:.1f}",
            inference_p50_ms=f"{inf['p50']:.1f}", inference_p99_ms=f"{inf['p99']:.1f}")))

    def destroy_node(self):
        self.hold_listener.close()
        self._stop.set()
        self.loop.close()
        self._stall_thread.join(timeout=1.0)
        return super().destroy_node()


def main(args=None) -> None:
    run_node(PolicyNode, "policy", args)


if __name__ == "__main__":
    main()
