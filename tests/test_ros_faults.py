"""Faults on a live graph over DDS: the simulated world's camera, arm and hand nodes (one process, as
``sim_devices`` runs them) and the supervisor, driven by an observer node that publishes chunks and calls
services. E-stop, a stale camera and a NaN chunk must each bring the robot to a hold; the hold must be commanded
within 100 ms of the supervisor's detection, and the arm must then stand still."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("hardware.sim.world")  # sets MUJOCO_GL before mujoco is imported

from tests.helpers import use_ros_packages  # noqa: E402

use_ros_packages()

from jala_bringup.ros_env import apply_loopback_env  # noqa: E402

DOMAIN = 37
HOLD_BUDGET_S = 0.100


class Rig:
    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from hardware.sim import world as simworld
        from jala_ros.conversions import CHUNK_QOS, LATCHED_QOS, STATE_QOS
        from jala_ros.node_utils import BackgroundSpin, values_of
        from jala_ros.sim_devices import build_sim_nodes
        from jala_ros.supervisor_node import SupervisorNode

        apply_loopback_env(DOMAIN)
        rclpy.init(domain_id=DOMAIN)
        self.rclpy = rclpy
        world = simworld.SimWorld(simworld.SimWorldConfig(task="water_plant", render_width=64, render_height=48,
                                                          camera_fps=15.0))
        self.world = world
        self.sim, self.cams, self.arm, self.hand = build_sim_nodes(
            overrides={"render_width": 64, "render_height": 48, "camera_fps": 15.0}, world=world)
        self.sup = SupervisorNode(overrides={"camera_timeout_ms": 600.0, "joint_state_timeout_ms": 1500.0,
                                             "policy_timeout_ms": 500.0, "watch_sensors_when_idle": True,
                                             "startup_grace_s": 10.0})
        self.obs = rclpy.create_node("fault_observer", namespace="/test")
        self.q: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.diag: dict[str, dict] = {}
        self.status: list[str] = []
        self.obs.create_subscription(JointState, "/jala/arm/joint_states", lambda m: self.q.append(
            (time.monotonic(), np.array(m.position), np.array(m.velocity))), STATE_QOS)

        def on_diag(msg):
            for st in msg.status:
                self.diag[st.name] = values_of(st) | {"message": st.message}

        self.obs.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
        self.obs.create_subscription(String, "/jala/status", lambda m: self.status.append(m.data), LATCHED_QOS)
        self.chunk_pub = self.obs.create_publisher(JointTrajectory, "/jala/action_chunk", CHUNK_QOS)
        from std_msgs.msg import Bool

        # stands in for the policy node's latched "running" flag (the policy itself is tested in test_ros_runtime)
        self.running_pub = self.obs.create_publisher(Bool, "/jala/policy/running", LATCHED_QOS)
        self.Bool = Bool
        # one executor per process of the real graph (sim devices, supervisor, observer), each on its thread
        self.spins = [BackgroundSpin(list(nodes)) for nodes in
                      ((self.sim, *self.cams, self.arm, self.hand), (self.sup,), (self.obs,))]

    def call(self, service: str, timeout: float = 5.0):
        from std_srvs.srv import Trigger

        client = self.obs.create_client(Trigger, service)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
            fut = client.call_async(Trigger.Request())
            end = time.monotonic() + timeout
            while not fut.done() and time.monotonic() < end:
                time.sleep(0.005)
            assert fut.done(), f"{service} timed out"
            return fut.result()
        finally:
            self.obs.destroy_client(client)

    def wait(self, cond, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}")

    def reset(self):
        """Clear the supervisor's hold (after the inputs are fresh again) and recover arm and hand."""
        end = time.monotonic() + 10.0
        while True:
            r = self.call("/jala/supervisor/reset")
            if r.success:
                break
            assert time.monotonic() < end, r.message
            time.sleep(0.2)
        self.wait(lambda: not self.arm.held and not self.hand.held, 2.0, "arm and hand to accept chunks")

    def latest_q(self) -> np.ndarray:
        return self.q[-1][1]

    def publish_move(self, dq0: float, duration: float, hand: float = 500.0, nan_at: tuple | None = None):
        """Chunk moving joint 1 by ``dq0`` rad over ``duration`` s (from now), hand to ``hand``."""
        from jala_ros.conversions import chunk_to_trajectory
        from jala_ros.core import CHUNK_JOINT_NAMES

        q0 = self.latest_q()
        stamp = self.obs.get_clock().now().nanoseconds * 1e-9
        n = 15
        ts = stamp + duration * np.arange(1, n + 1) / n
        arm = q0[None].repeat(n, 0)
        arm[:, 0] += dq0 * np.arange(1, n + 1) / n
        actions = np.hstack([arm, np.full((n, 6), hand)])
        if nan_at is not None:
            actions[nan_at] = np.nan
        self.chunk_pub.publish(chunk_to_trajectory(actions, ts, stamp, CHUNK_JOINT_NAMES))
        return q0

    def close(self):
        for spin in self.spins:
            spin.close(timeout=2.0)
        for n in (*self.cams, self.arm, self.hand, self.sup, self.obs, self.sim):
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        self.world.close()
        self.rclpy.try_shutdown()


@pytest.fixture(scope="module")
def rig():
    r = Rig()
    try:
        r.wait(lambda: len(r.q) > 20 and r.cams[0].frames > 3, 30.0, "joint states and camera frames")
        yield r
    finally:
        r.close()


def _assert_arm_holds(rig, q_target_0: float, start_q0: float):
    """After the hold, the arm stops well short of the chunk's target and stands still."""
    hold_t = time.monotonic()
    time.sleep(0.4)  # deceleration
    window = [(t, q, v) for t, q, v in rig.q if t > hold_t]
    assert window, "no joint states after the hold"
    q_end = window[-1][1][0]
    speeds = np.array([abs(v[0]) for _, _, v in window[-10:]])
    assert speeds.max() < 0.03, f"arm still moving after hold: {speeds}"
    assert abs(q_end - start_q0) < 0.6 * abs(q_target_0 - start_q0), "arm kept following the chunk"
    time.sleep(0.3)
    assert abs(rig.latest_q()[0] - q_end) < 0.005


def _hold_latencies(rig) -> dict[str, float]:
    return {dev.get_name(): dev.hold_stamp - rig.sup.detected_at for dev in (rig.arm, rig.hand)}


def _within_budget(trial, attempts: int = 3) -> None:
    """Run ``trial`` (returns detection -> hold latencies) until arm and hand both hold within the budget. A
    shared 2-core CI box can stall a process for longer than the budget now and then, so a miss is retried
    (at most ``attempts`` times); every attempt must still hold within 1 s."""
    seen = []
    for _ in range(attempts):
        lat = trial()
        seen.append({k: round(v * 1e3, 1) for k, v in lat.items()})
        assert all(0.0 <= v < 1.0 for v in lat.values()), f"hold latencies (ms): {seen}"
        if all(v < HOLD_BUDGET_S for v in lat.values()):
            return
    raise AssertionError(f"no attempt held within {HOLD_BUDGET_S * 1e3:.0f} ms of detection; latencies (ms): {seen}")


def test_estop_holds_within_100ms(rig):
    def trial():
        rig.reset()
        q0 = rig.publish_move(0.4, 2.0)
        rig.wait(lambda: abs(rig.latest_q()[0] - q0[0]) > 0.05, 3.0, "the arm to follow the chunk")
        assert rig.arm.chunks_executed >= 1 and rig.hand.chunks_executed >= 1
        assert rig.call("/jala/supervisor/estop").success
        rig.wait(lambda: rig.arm.held and rig.hand.held, 2.0, "arm and hand to hold")
        assert "estop" in rig.sup.hold_reason
        _assert_arm_holds(rig, q0[0] + 0.4, q0[0])
        return _hold_latencies(rig)

    _within_budget(trial)
    # the arm node reports it: diagnostics with its hold stamp
    rig.wait(lambda: rig.diag.get("jala/arm", {}).get("held") == "True", 2.0, "arm diagnostics to report held")
    assert float(rig.diag["jala/arm"]["hold_stamp"]) == pytest.approx(rig.arm.hold_stamp, abs=1e-5)
    # held: new chunks are refused
    refused = rig.arm.chunks_refused
    q_before = rig.latest_q()[0]
    rig.publish_move(0.3, 1.0)
    rig.wait(lambda: rig.arm.chunks_refused > refused, 2.0, "the chunk to be refused")
    time.sleep(0.3)
    assert abs(rig.latest_q()[0] - q_before) < 0.005


def test_stale_camera_holds_within_100ms(rig):
    cam = rig.cams[0]

    def trial():
        rig.reset()
        q0 = rig.publish_move(0.4, 2.0)
        rig.wait(lambda: abs(rig.latest_q()[0] - q0[0]) > 0.03, 3.0, "the arm to follow the chunk")
        cam.stop()  # the camera stops delivering frames
        try:
            rig.wait(lambda: rig.sup.holding, 3.0, "the supervisor to detect the stale camera")
            assert "stale camera" in rig.sup.hold_reason
            rig.wait(lambda: rig.arm.held and rig.hand.held, 2.0, "arm and hand to hold")
            lat = _hold_latencies(rig)
            _assert_arm_holds(rig, q0[0] + 0.4, q0[0])
            assert any("HOLD: stale camera" in s for s in rig.status)
            r = rig.call("/jala/supervisor/reset")
            assert not r.success and "stale camera" in r.message  # cannot clear while the camera is still stale
        finally:
            cam.start(rig.world.cameras[rig.sim.sim_cameras[0]])
        return lat

    _within_budget(trial)


def test_nan_chunk_is_refused_with_a_clear_error_and_hold(rig):
    rig.reset()
    executed = rig.arm.chunks_executed
    q_before = rig.latest_q()[0]
    rig.publish_move(0.3, 1.0, nan_at=(5, 2))
    rig.wait(lambda: rig.arm.held, 2.0, "the arm to refuse the NaN chunk")
    assert rig.arm.chunks_executed == executed
    assert "NaN" in rig.arm.fault and "fr3_joint3" in rig.arm.fault and "waypoint 5" in rig.arm.fault
    # the arm and the hand both refuse it and report ERROR; the supervisor holds on them
    rig.wait(lambda: rig.sup.holding and "NaN" in rig.sup.device_faults.get("jala/arm", ""), 2.0,
             "the supervisor to hold on the arm's ERROR")
    rig.wait(lambda: rig.hand.held, 2.0, "the hand to hold")
    time.sleep(0.5)
    assert abs(rig.latest_q()[0] - q_before) < 0.005  # nothing of it was executed
    rig.reset()  # recoverable: the fault was the input, not the device
    assert not rig.arm.fault


def test_stale_policy_holds(rig):
    """While the policy reports running, a gap in chunks longer than policy_timeout_ms is a fault."""
    def trial():
        rig.reset()
        q0 = rig.publish_move(0.3, 2.0)
        rig.running_pub.publish(rig.Bool(data=True))
        try:
            rig.wait(lambda: abs(rig.latest_q()[0] - q0[0]) > 0.03, 3.0, "the arm to follow the chunk")
            rig.wait(lambda: rig.sup.holding, 3.0, "the supervisor to detect the stale policy")
            assert "stale policy" in rig.sup.hold_reason
            rig.wait(lambda: rig.arm.held and rig.hand.held, 2.0, "arm and hand to hold")
            _assert_arm_holds(rig, q0[0] + 0.3, q0[0])
        finally:
            rig.running_pub.publish(rig.Bool(data=False))
        return _hold_latencies(rig)

    _within_budget(trial)


def test_joint_states_carry_the_time_the_device_measured_them(rig):
    """A hand driver whose loop is slower than the publisher (the Inspire over RTU) hands out states that are
    already old: the JointState header says when the state was measured, not when it was published."""
    import dataclasses

    from sensor_msgs.msg import JointState

    from jala_ros.conversions import STATE_QOS, from_time_msg
    from jala_ros.node_utils import HAND_STATE_TOPIC

    class OldStates:  # the simulated hand, reporting every state as measured 80 ms before it is read
        def __init__(self, hand):
            self._hand = hand

        def read_state(self):
            st = self._hand.read_state()
            return dataclasses.replace(st, stamp=time.monotonic() - 0.080)

        def __getattr__(self, name):
            return getattr(self._hand, name)

    ages: list[float] = []
    clock = rig.obs.get_clock()
    sub = rig.obs.create_subscription(JointState, HAND_STATE_TOPIC, lambda m: ages.append(
        clock.now().nanoseconds * 1e-9 - from_time_msg(m.header.stamp)), STATE_QOS)
    try:
        rig.wait(lambda: len(ages) > 20, 5.0, "hand joint states")
        fresh = float(np.median(ages))
        real_hand = rig.hand.device
        rig.hand.device = OldStates(real_hand)
        try:
            n = len(ages)
            rig.wait(lambda: len(ages) > n + 20, 5.0, "hand joint states")
            old = float(np.median(ages[n + 5:]))
        finally:
            rig.hand.device = real_hand
    finally:
        rig.obs.destroy_subscription(sub)
    assert fresh < 0.05, f"fresh states arrive {fresh * 1e3:.1f} ms after their stamp"
    assert 0.080 <= old < 0.080 + 0.05 + fresh, f"80 ms old states stamped {old * 1e3:.1f} ms before arrival"
