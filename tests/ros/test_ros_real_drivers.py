"""Real-robot mode of the graph with the real drivers against their simulators: the arm node process runs
hardware.franka.FrankaArm (franky) against franky-sim, the hand node process runs the Inspire Modbus driver
against the Modbus emulator, the camera node process runs the RealSense driver on a synthetic L515 recording
(.bag played back in real time). All started from the same graph specs the launch files use."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("franky")
pytest.importorskip("pymodbus")

from tests.helpers import use_ros_packages  # noqa: E402

use_ros_packages()

from jala_bringup.graph import GraphArgs, build_graph  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env, loopback_env  # noqa: E402
from jala_bringup.run import GraphProcesses  # noqa: E402

DOMAIN = 47


@pytest.fixture(scope="module")
def real_graph(tmp_path_factory):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from hardware.franka.sim_server import FrankySimProcess
    from hardware.inspire.emulator import InspireEmulatorConfig, InspireHandEmulator
    from jala_ros.conversions import CHUNK_QOS, STATE_QOS
    from jala_ros.parameters import DIAGNOSTICS_TOPIC

    workdir = tmp_path_factory.mktemp("ros_real")
    sim = FrankySimProcess()
    sim.start()
    emu = InspireHandEmulator(InspireEmulatorConfig(port=0)).start()
    procs = None
    try:
        args = GraphArgs(task="water_plant", sim=False, robot_ip=sim.hostname, hand_transport="tcp",
                         hand_host="127.0.0.1", hand_port=emu.port,
                         overrides={"arm": {"driver_options": json.dumps({"realtime": "ignore"})}})
        specs = [s for s in build_graph(args) if s.role in ("arm", "hand")]
        procs = GraphProcesses(specs, loopback_env(DOMAIN), workdir)
        procs.start()
        apply_loopback_env(DOMAIN)
        rclpy.init(domain_id=DOMAIN)
        node = rclpy.create_node("real_driver_observer")
        state = {"arm": [], "hand": [], "diagnostics": {}}
        node.create_subscription(JointState, "/jala/arm/joint_states", lambda m: state["arm"].append(m), STATE_QOS)
        node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, lambda m: state["diagnostics"].update(
            {s.name: {"message": s.message} | {kv.key: kv.value for kv in s.values} for s in m.status}), 10)
        node.create_subscription(JointState, "/jala/hand/joint_states", lambda m: state["hand"].append(m),
                                 STATE_QOS)
        pub = node.create_publisher(JointTrajectory, "/jala/action_chunk", CHUNK_QOS)
        from jala_ros.node_utils import BackgroundSpin

        spin = BackgroundSpin([node])
        end = time.monotonic() + 60
        while not (len(state["arm"]) > 10 and len(state["hand"]) > 10):
            dead = procs.dead()
            assert not dead, f"{dead[0].spec.role} exited:\n{procs.tail(dead[0])}"
            assert time.monotonic() < end, "no joint states from the real-driver nodes"
            time.sleep(0.05)
        while pub.get_subscription_count() < 2:  # the arm and hand nodes discovered the chunk publisher
            assert time.monotonic() < end, "the arm and hand nodes did not subscribe to the chunk topic"
            time.sleep(0.05)
        yield node, pub, state
        spin.close()
        node.destroy_node()
        rclpy.try_shutdown()
    finally:
        if procs is not None:
            procs.stop()
        emu.stop()
        sim.stop()


def node_diagnostics(state, device: str = "arm") -> dict[str, str]:
    """The ``device`` node's last diagnostics (arm or hand): its message and values ({} before the first)."""
    return next((values for name, values in state["diagnostics"].items() if f"jala/{device}" in name), {})


def arm_diagnostics(state) -> dict[str, str]:
    return node_diagnostics(state, "arm")


def arm_report(state) -> str:
    """What the arm node last said about itself (held, fault, chunks executed / skipped late / refused)."""
    keys = ("message", "held", "hold_reason", "chunks_executed", "chunks_skipped_late", "chunks_refused",
            "last_refusal")
    diag = arm_diagnostics(state)
    return ", ".join(f"{k}={diag[k]}" for k in keys if k in diag) or "none"


def wait_for_joint0(state, target: float, timeout_s: float = 10.0, tol: float = 0.005) -> np.ndarray:
    """Wait until the FR3's joint 0 is at ``target`` and has stopped, or ``timeout_s`` passed; the last position.
    franky-sim runs slower than real time on a loaded machine, and franky times a motion on the robot's clock, so
    a chunk's motion can end well after its last waypoint's wall-clock time: wait on the motion, not on a sleep."""
    end = time.monotonic() + timeout_s
    while True:
        msgs = state["arm"][-20:]
        q = np.array(msgs[-1].position)
        still = max(abs(m.position[0] - q[0]) for m in msgs) < 1e-4
        if (abs(q[0] - target) < tol and still) or time.monotonic() > end:
            return q
        time.sleep(0.05)


def trigger(node, name: str):
    """Call the std_srvs/Trigger service ``name``; its response (None when it did not answer within 10 s)."""
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, name)
    assert client.wait_for_service(timeout_sec=10.0), name
    fut = client.call_async(Trigger.Request())
    end = time.monotonic() + 10.0
    while not fut.done() and time.monotonic() < end:
        time.sleep(0.01)
    node.destroy_client(client)
    return fut.result()


def recover_if_stalled(node, state) -> bool:
    """CPU starvation on a loaded machine (2 cores, franky-sim and the nodes): a node whose threads stood still for
    longer than stall_hold_s holds, as it must. Recover the arm and hand nodes from such a hold (only that one);
    True when one was recovered."""
    recovered = False
    for device in ("arm", "hand"):
        if "stalled" in node_diagnostics(state, device).get("hold_reason", ""):
            response = trigger(node, f"/jala/{device}/recover")
            assert response is not None and response.success, response
            recovered = True
    return recovered


def test_real_arm_and_hand_nodes_follow_a_chunk(real_graph):
    from jala_ros.conversions import trajectory_msg
    from embodiment import CHUNK_JOINT_NAMES

    node, pub, state = real_graph
    for _ in range(3):  # after a stall hold (a starved machine) or a chunk skipped late: recover, send again
        q0 = np.array(state["arm"][-1].position)
        stamp = node.get_clock().now().nanoseconds * 1e-9
        n = 15
        ts = stamp + 0.3 + 1.5 * np.arange(1, n + 1) / n
        arm = q0[None].repeat(n, 0)
        arm[:, 0] += 0.15 * np.arange(1, n + 1) / n
        actions = np.hstack([arm, np.full((n, 6), 300.0)])
        pub.publish(trajectory_msg(actions, ts, stamp, CHUNK_JOINT_NAMES))
        time.sleep(1.8)  # the chunk's last waypoint
        q = wait_for_joint0(state, q0[0] + 0.15)
        hand_there = np.all(np.abs(np.array(state["hand"][-1].position) - 300.0) < 30.0)
        if abs(q[0] - (q0[0] + 0.15)) < 0.02 and hand_there:
            break
        recover_if_stalled(node, state)
    assert abs(q[0] - (q0[0] + 0.15)) < 0.02, (q0, q, arm_report(state))
    assert np.abs(q[1:] - q0[1:]).max() < 0.02
    angles = np.array(state["hand"][-1].position)
    assert np.all(np.abs(angles - 300.0) < 30.0), angles
    t = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in state["arm"][-200:]])
    assert (len(t) - 1) / (t[-1] - t[0]) > 50.0  # franky state read + publish loop (200 Hz configured)


def test_real_arm_estop_holds_and_refuses_chunks_until_recover(real_graph):
    from jala_ros.conversions import trajectory_msg
    from embodiment import CHUNK_JOINT_NAMES

    node, pub, state = real_graph

    def move(dq, expect_motion=True):
        """Send a chunk that moves joint 0 by ``dq`` over 1 s; the start and the position once it is over (or after
        waiting 10 s for it; 2 s when it should be refused)."""
        q0 = np.array(state["arm"][-1].position)
        stamp = node.get_clock().now().nanoseconds * 1e-9
        ts = stamp + 0.3 + np.arange(1, 11) / 10
        arm = q0[None].repeat(10, 0)
        arm[:, 0] += dq * np.arange(1, 11) / 10
        pub.publish(trajectory_msg(np.hstack([arm, np.full((10, 6), 500.0)]), ts, stamp, CHUNK_JOINT_NAMES))
        time.sleep(1.3 if expect_motion else 2.0)  # the chunk's last waypoint
        return q0, wait_for_joint0(state, q0[0] + dq) if expect_motion else np.array(state["arm"][-1].position)

    assert trigger(node, "/jala/arm/estop").success
    q0, q = move(-0.1, expect_motion=False)
    assert abs(q[0] - q0[0]) < 0.005, arm_report(state)  # refused while held
    r = trigger(node, "/jala/arm/recover")
    assert r.success, r.message
    # CPU starvation on a loaded machine: a chunk delivered > max_chunk_age_s late is skipped, and a node whose
    # threads stood still > stall_hold_s holds (the stall guard, a hold of its own): send a fresh chunk, after a
    # recover from a stall hold. A recover that did not clear the estop shows as "held (estop service)".
    for _ in range(3):
        q0, q = move(-0.1)
        if abs(q[0] - (q0[0] - 0.1)) < 0.02:
            break
        recover_if_stalled(node, state)
    assert abs(q[0] - (q0[0] - 0.1)) < 0.02, (q0, q, arm_report(state))  # accepted again


def test_real_camera_node_streams_the_recording(real_graph, tmp_path):
    """The camera node process with the RealSense driver on a synthetic L515 recording (960x540 @ 30 fps, played
    back in real time)."""
    from sensor_msgs.msg import Image

    from hardware.realsense.synthetic import write_synthetic_bag
    from jala_ros.conversions import IMAGE_SUB_QOS

    node, pub, state = real_graph
    bag = tmp_path / "l515.bag"
    # recorded at 30 fps of wall time, so real-time playback delivers 30 fps (an unpaced recording is one burst)
    write_synthetic_bag(bag, n_frames=60, color_size=(960, 540), depth_size=None, fps=30, paced=True)
    playback = {"playback_file": str(bag), "playback_real_time": True, "playback_repeat": True}
    args = GraphArgs(task="water_plant", sim=False, robot_ip="127.0.0.1",
                     overrides={"camera": {"driver_options": json.dumps(playback)}})
    procs = GraphProcesses([s for s in build_graph(args) if s.role == "camera"], loopback_env(DOMAIN), tmp_path)
    frames = []
    sub = node.create_subscription(Image, "/camera/camera/color/image_raw", lambda m: frames.append(
        (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, bytes(m.data[:3]), m.width, m.height, m.encoding)),
        IMAGE_SUB_QOS)
    procs.start()
    try:
        end = time.monotonic() + 60
        while len(frames) < 3:
            dead = procs.dead()
            assert not dead, f"camera exited:\n{procs.tail(dead[0])}"
            assert time.monotonic() < end, "no frames from the camera node"
            time.sleep(0.05)
        n0, t0 = len(frames), time.monotonic()
        time.sleep(2.0)
        frames = frames[n0:]
        rate = len(frames) / (time.monotonic() - t0)
    finally:
        procs.stop()
        node.destroy_subscription(sub)
    assert 15.0 < rate < 36.0, f"{rate:.1f} Hz from a 30 fps recording"  # best-effort delivery on a loaded box
    _, px, w, h, enc = frames[-1]
    assert (w, h, enc) == (960, 540, "rgb8")
    # pixel (0, 0) of recorded frame n is (n % 256, n // 256 % 256, 0): the frames carry many different n
    ns = [f[1][0] for f in frames]
    assert len(set(ns)) > 10 and px[2] == 0
    stamps = [f[0] for f in frames]
    assert np.all(np.diff(stamps) > 0)
