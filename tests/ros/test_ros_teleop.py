"""The teleop node over DDS: its commands are TimedChunks on the chunk topic (the policy's device path) plus the
clean command for the recorder; when the operator stream stalls, no further chunk goes out and a hold is requested
within the deadman time."""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.safety

pytest.importorskip("rclpy")

from tests.helpers import use_ros_packages, wait_until  # noqa: E402

use_ros_packages()

from embodiment import ARM_JOINT_NAMES, CHUNK_JOINT_NAMES, HAND_JOINT_NAMES, READY_Q  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env  # noqa: E402

DOMAIN = 67
DEADMAN_S = 0.2
RATE_HZ = 15.0


class StallingSource:
    """Streams joint targets near the ready pose at 60 Hz until ``stall()``; then nothing (a dropped stream)."""

    name = "stalling"

    def __init__(self):
        self.live = True
        self.last_stamp = 0.0

    def read(self):
        from teleop.operator import OperatorSample

        if not self.live:
            return None
        self.last_stamp = time.monotonic()
        q = np.asarray(READY_Q) + 0.02 * np.sin(self.last_stamp)
        return OperatorSample(stamp=self.last_stamp, arm_q=q, hand_targets=np.full(6, 700.0))

    def stall(self) -> float:
        self.live = False
        return self.last_stamp

    def close(self):
        self.live = False


@contextlib.contextmanager
def teleop_graph(domain: int, source, observer: str, **teleop_kwargs):
    """A real teleop node driven by ``source`` and an observer node, both spun in the background, with the robot
    standing at the ready pose (arm and hand joint states at 100 Hz from the observer); yields (teleop, observer)
    and shuts it all down afterwards."""
    import rclpy
    from sensor_msgs.msg import JointState

    from jala_ros.conversions import STATE_QOS, joint_state_msg
    from jala_ros.node_utils import BackgroundSpin
    from jala_ros.teleop_node import TeleopNode

    apply_loopback_env(domain)
    rclpy.init(domain_id=domain)
    teleop = TeleopNode(source, **teleop_kwargs)
    obs = rclpy.create_node(observer, namespace="/test")
    arm_pub = obs.create_publisher(JointState, "/jala/arm/joint_states", STATE_QOS)
    hand_pub = obs.create_publisher(JointState, "/jala/hand/joint_states", STATE_QOS)
    stop = threading.Event()

    def states():
        while not stop.wait(0.01):
            now = obs.get_clock().now().nanoseconds * 1e-9
            arm_pub.publish(joint_state_msg(ARM_JOINT_NAMES, READY_Q, stamp=now))
            hand_pub.publish(joint_state_msg(HAND_JOINT_NAMES, np.full(6, 700.0), stamp=now))

    threading.Thread(target=states, daemon=True).start()
    spins = [BackgroundSpin([teleop]), BackgroundSpin([obs])]
    try:
        yield teleop, obs
    finally:
        stop.set()
        for s in spins:
            s.close()
        teleop.destroy_node()
        obs.destroy_node()
        rclpy.try_shutdown()


def test_teleop_publishes_chunks_and_holds_within_the_deadman_when_the_stream_stalls():
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from jala_ros.conversions import CHUNK_QOS, STATE_QOS, trajectory_to_chunk

    source = StallingSource()
    chunks: list[tuple[float, object]] = []
    commands: list[np.ndarray] = []
    holds: list[tuple[float, str]] = []
    with teleop_graph(DOMAIN, source, "teleop_observer",
                      overrides={"deadman_s": DEADMAN_S, "rate_hz": RATE_HZ}) as (_teleop, obs):
        obs.create_subscription(JointTrajectory, "/jala/action_chunk",
                                lambda m: chunks.append((time.monotonic(), trajectory_to_chunk(m))), CHUNK_QOS)
        obs.create_subscription(JointState, "/jala/teleop/command",
                                lambda m: commands.append(np.array(m.position)), STATE_QOS)
        obs.create_subscription(String, "/jala/hold_request", lambda m: holds.append((time.monotonic(), m.data)),
                                10)
        wait_until(lambda: len(chunks) >= 10 and len(commands) >= 10, 20.0)
        _, c = chunks[-1]
        assert c.joint_names == CHUNK_JOINT_NAMES and c.times[0] > c.stamp  # a TimedChunk for the devices
        assert commands[-1].shape == (13,) and np.all(np.isfinite(commands[-1]))
        assert not holds
        t_stall = source.stall()
        wait_until(lambda: holds, 5.0)
        t_hold, reason = holds[0]
        assert "teleop" in reason and "deadman" in reason.lower()
        # the hold comes within the deadman + one teleop period (+ a DDS hop)
        assert t_hold - t_stall <= DEADMAN_S + 1.0 / RATE_HZ + 0.1, f"{(t_hold - t_stall) * 1e3:.0f} ms"
        n = len(chunks)
        time.sleep(0.5)
        assert all(t <= t_hold for t, _ in chunks[n:]) and len(chunks) == n  # nothing after the hold
        assert len(holds) == 1  # requested once, the supervisor latches it


class ButtonSource(StallingSource):
    """Streams like StallingSource; ``press(button)`` adds the button to the next sample."""

    def __init__(self):
        super().__init__()
        self.pending: set = set()

    def press(self, button) -> None:
        self.pending.add(button)

    def read(self):
        import dataclasses

        sample = super().read()
        buttons, self.pending = frozenset(self.pending), set()
        return None if sample is None else dataclasses.replace(sample, buttons=buttons)


def test_a_start_the_recorder_does_not_answer_is_reported_as_unanswered_a_refusal_is_not():
    """The sim expert starts an episode over when the recorder did not answer START (not up yet, or restarted
    after a crash): the teleop node must tell a START nobody answered from one the recorder refused."""
    from std_srvs.srv import Trigger

    from jala_ros.node_utils import unanswered
    from teleop.operator import Button

    source = ButtonSource()
    failed: list[str] = []
    with teleop_graph(DOMAIN + 1, source, "teleop_button_observer", overrides={"rate_hz": RATE_HZ},
                      on_start_failed=failed.append) as (_teleop, obs):
        source.press(Button.START)  # no recorder in the graph
        wait_until(lambda: failed, 15.0)
        assert unanswered(failed[0]) and "/jala/recorder/start" in failed[0], failed

        def refuse(_req, resp):
            resp.success, resp.message = False, "an episode is already being recorded (save or discard it first)"
            return resp

        obs.create_service(Trigger, "/jala/recorder/start", refuse)
        source.press(Button.START)
        wait_until(lambda: len(failed) >= 2, 15.0)
        assert not unanswered(failed[1]) and "already being recorded" in failed[1], failed
