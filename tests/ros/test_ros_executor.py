"""The executor the nodes spin on keeps up with high-rate topics over real DDS.

rclpy 7.1.6's MultiThreadedExecutor (ros2/rclpy#1452) can fall to a few callbacks per second at 100% CPU under a
200 Hz subscription; ``node_utils.make_executor`` must not. A separate process publishes numbered joint states at
twice the arm's rate; the subscriber, spun on the project's executor, must receive nearly all of them."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("rclpy")

from tests.helpers import use_ros_packages, wait_until  # noqa: E402

use_ros_packages()

from jala_bringup.ros_env import apply_loopback_env, loopback_env  # noqa: E402
from jala_bringup.run import python_path  # noqa: E402

DOMAIN = 53
RATE_HZ = 400.0
SECONDS = 4.0

PUBLISHER = textwrap.dedent("""
    import sys, time
    import rclpy
    from sensor_msgs.msg import JointState
    from jala_ros.conversions import STATE_QOS
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("numbered_joint_states")
    pub = node.create_publisher(JointState, "/test/numbered_joint_states", STATE_QOS)
    end = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.5)  # let discovery settle on both sides
    msg = JointState(name=[f"j{i}" for i in range(7)], position=[0.0] * 7)
    t, n = time.monotonic(), 0
    stop = t + seconds
    while t < stop:
        msg.header.frame_id = str(n)
        pub.publish(msg)
        n += 1
        t += 1.0 / rate
        time.sleep(max(0.0, t - time.monotonic()))
    print(n, flush=True)
    time.sleep(0.5)
    rclpy.shutdown()
""")


def test_project_executor_receives_a_400hz_topic_without_losing_messages():
    import rclpy
    from sensor_msgs.msg import JointState

    from jala_ros.conversions import STATE_QOS
    from jala_ros.node_utils import BackgroundSpin

    apply_loopback_env(DOMAIN)
    env = loopback_env(DOMAIN)
    env["PYTHONPATH"] = python_path(env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    try:
        node = rclpy.create_node("numbered_joint_state_reader", context=context)
        seen: list[int] = []
        node.create_subscription(JointState, "/test/numbered_joint_states",
                                 lambda m: seen.append(int(m.header.frame_id)), STATE_QOS)
        spin = BackgroundSpin([node], context=context)
        pub = subprocess.run([sys.executable, "-c", PUBLISHER, str(RATE_HZ), str(SECONDS)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert pub.returncode == 0, pub.stderr[-2000:]
        published = int(pub.stdout.split()[-1])
        try:  # reliable QoS: the last message arrives too, unless the reader fell behind
            wait_until(lambda: seen and seen[-1] == published - 1, timeout=2.0)
        except AssertionError:
            pass
        assert published >= 0.5 * RATE_HZ * SECONDS
        assert seen == sorted(set(seen)), "messages duplicated or out of order"
        assert len(seen) >= 0.95 * published, f"received {len(seen)} of {published} messages"
        spin.close()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_a_callback_that_raises_does_not_stop_a_background_spin():
    """A side node's thread (the hold listener's) keeps spinning after a callback raised: a hold listener that
    died silently would let the robot carry on after the next hold."""
    import rclpy
    from std_msgs.msg import Bool

    from jala_ros.conversions import LATCHED_QOS
    from jala_ros.node_utils import BackgroundSpin

    apply_loopback_env(DOMAIN + 1)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN + 1)
    got: list[bool] = []

    def on_hold(msg):
        got.append(msg.data)
        if len(got) == 1:
            raise RuntimeError("a bug in a hold callback")

    try:
        node = rclpy.create_node("spin_survives", context=ctx)
        node.create_subscription(Bool, "/test/hold", on_hold, LATCHED_QOS)
        spin = BackgroundSpin([node], context=ctx)
        pub = node.create_publisher(Bool, "/test/hold", LATCHED_QOS)
        pub.publish(Bool(data=True))
        wait_until(lambda: len(got) >= 1, 10.0)
        time.sleep(0.2)
        pub.publish(Bool(data=False))  # after the exception: still delivered
        wait_until(lambda: len(got) >= 2, 10.0)
        assert got[1] is False
        spin.close()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
