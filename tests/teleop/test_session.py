"""TeleopSession: operator samples -> TimedChunks through the devices' path; deadman, clutch, DART noise, hand
sources, latency, and a stalled stream holding the simulated arm."""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from embodiment import ACTION_DT, CHUNK_JOINT_NAMES, READY_Q
from hardware.franka.safety import ArmSafetyGate
from teleop.arm_ik import ArmIK, rotation_exp
from teleop.operator import Button, OperatorSample
from teleop.session import TeleopConfig, TeleopSession

pytestmark = pytest.mark.safety

READY = np.asarray(READY_Q)
OPEN = np.full(6, 1000.0)
DT = ACTION_DT


class QueueSource:
    """Samples pushed by the test; ``read`` returns the next one or None (a stalled stream)."""

    name = "queue"

    def __init__(self):
        self.q: deque[OperatorSample] = deque()
        self.closed = False

    def push(self, **kw) -> None:
        kw.setdefault("stamp", 0.0)
        self.q.append(OperatorSample(**kw))

    def read(self):
        return self.q.popleft() if self.q else None

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def ik():
    return ArmIK()


def _pose(ik, q=READY, dp=(0, 0, 0), rot=(0, 0, 0)):
    t = ik.fk(q)
    t[:3, 3] += dp
    t[:3, :3] = rotation_exp(np.asarray(rot, float)) @ t[:3, :3]
    return t


def _gate_ok(chunk, now, q_measured):
    arm = chunk.select(CHUNK_JOINT_NAMES[:7])
    ArmSafetyGate().check(arm.times - now, arm.positions, q_measured)


def test_with_a_lead_every_chunk_passes_the_gate_after_50_ms_of_transport(ik):
    """The ROS teleop node sends its chunks with lead_s = one period: a chunk that reaches the arm node 50 ms late
    (DDS on a loaded machine) still passes the FR3 gate, which judges speeds over the time left to each waypoint.
    Without the lead the same full-speed steps would be refused."""
    def run(lead):
        src = QueueSource()
        s = TeleopSession(src, ik, config=TeleopConfig(lead_s=lead))
        q = np.array(READY, dtype=float)
        refused = 0
        for k in range(20):  # the expert-style operator asks for a far joint target: full-size steps every time
            src.push(arm_q=q + 0.6)
            cmd = s.step(10.0 + k * DT, q, OPEN)
            arm = cmd.chunk.select(CHUNK_JOINT_NAMES[:7])
            try:
                ArmSafetyGate().check(arm.times - (10.0 + k * DT + 0.05), arm.positions, q)
            except Exception:  # noqa: BLE001 - SafetyViolation
                refused += 1
            q = arm.positions[0]
        return refused

    assert run(DT) == 0
    assert run(0.0) > 0


def test_chunk_layout_and_relative_motion(ik):
    src = QueueSource()
    s = TeleopSession(src, ik, config=TeleopConfig(horizon=3))
    op0 = np.eye(4)  # the operator's device frame: anything; motion is taken relative to the clutch point
    src.push(wrist_pose=op0)
    cmd = s.step(10.0, READY, OPEN)
    assert cmd.hold == "" and cmd.chunk is not None
    c = cmd.chunk
    assert c.joint_names == CHUNK_JOINT_NAMES and c.stamp == 10.0
    np.testing.assert_allclose(c.times, 10.0 + s.config.lead_s + DT * np.arange(1, 4))
    assert s.config.lead_s == 0.0  # in-process (no transport): the first waypoint one period ahead
    np.testing.assert_allclose(cmd.clean[:7], READY, atol=2e-3)  # anchored: no motion yet
    np.testing.assert_allclose(cmd.clean[7:], OPEN)
    op1 = op0.copy()
    op1[:3, 3] += (0.02, 0.0, -0.03)
    src.push(wrist_pose=op1)
    cmd = s.step(10.0 + DT, READY, OPEN)
    np.testing.assert_allclose(cmd.target_pose[:3, 3], ik.fk(READY)[:3, 3] + (0.02, 0.0, -0.03), atol=1e-9)
    _gate_ok(cmd.chunk, 10.0 + DT, READY)


def test_position_scaling(ik):
    src = QueueSource()
    s = TeleopSession(src, ik, config=TeleopConfig(position_scale=0.5))
    src.push(wrist_pose=np.eye(4))
    s.step(0.0, READY, OPEN)
    op = np.eye(4)
    op[:3, 3] = (0.1, 0.0, 0.0)
    src.push(wrist_pose=op)
    cmd = s.step(DT, READY, OPEN)
    np.testing.assert_allclose(cmd.target_pose[:3, 3] - ik.fk(READY)[:3, 3], (0.05, 0.0, 0.0), atol=1e-9)


def test_deadman_holds_within_deadman_time_and_sends_nothing_after(ik):
    src = QueueSource()
    cfg = TeleopConfig()
    s = TeleopSession(src, ik, config=cfg)
    q = READY.copy()
    last_sample_t = None
    hold_t = None
    for k in range(40):
        now = k * DT
        if k < 15:  # the stream runs for 1 s, then stops (network drop, app closed)
            src.push(wrist_pose=_pose(ik, dp=(0.002 * k, 0, 0)))
            last_sample_t = now
        cmd = s.step(now, q, OPEN)
        if hold_t is None and cmd.hold:
            hold_t = now
            assert "deadman" in cmd.hold
        if hold_t is not None:
            assert cmd.chunk is None and cmd.hold, f"a chunk at {now:.3f} s after the deadman hold"
        elif cmd.chunk is not None:
            q = cmd.chunk.positions[0, :7]  # perfect tracking
    assert hold_t is not None
    assert hold_t - last_sample_t <= cfg.deadman_s + cfg.period + 1e-9
    assert hold_t - last_sample_t >= cfg.deadman_s - 1e-9
    # the stream comes back: motion resumes from where the robot is (re-anchored, no jump)
    src.push(wrist_pose=_pose(ik, dp=(0.3, 0.2, 0.0)))
    cmd = s.step(40 * DT, q, OPEN)
    assert cmd.hold == "" and cmd.chunk is not None
    np.testing.assert_allclose(cmd.chunk.positions[0, :7], q, atol=2e-3)


def test_no_sample_yet_holds(ik):
    s = TeleopSession(QueueSource(), ik)
    cmd = s.step(0.0, READY, OPEN)
    assert cmd.chunk is None and cmd.clean is None and "no operator sample" in cmd.hold


def test_clutch_release_holds_and_reengage_does_not_jump(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    q = READY.copy()
    op = np.eye(4)
    now = 0.0
    for k in range(10):  # move 2 cm along x with the clutch held
        op[0, 3] = 0.002 * (k + 1)
        src.push(wrist_pose=op.copy())
        cmd = s.step(now, q, OPEN)
        q = cmd.chunk.positions[0, :7]
        now += DT
    p_engaged = ik.fk(q)[:3, 3]
    # released: the operator repositions the device by 30 cm and turns it; the robot holds
    for k in range(5):
        op[:3, 3] += (0.06, -0.04, 0.02)
        op[:3, :3] = rotation_exp(np.array([0, 0, 0.1])) @ op[:3, :3]
        src.push(wrist_pose=op.copy(), clutch=False)
        cmd = s.step(now, q, OPEN)
        assert cmd.hold == "clutch released" and cmd.chunk is None
        now += DT
    # engaged again: the first command starts where the robot is
    src.push(wrist_pose=op.copy())
    cmd = s.step(now, q, OPEN)
    assert cmd.hold == ""
    np.testing.assert_allclose(cmd.chunk.positions[:, :7], np.repeat(q[None], 2, axis=0), atol=2e-3)
    np.testing.assert_allclose(cmd.target_pose[:3, 3], p_engaged, atol=1e-6)
    # and from there the motion is relative again
    op2 = op.copy()
    op2[2, 3] += 0.01
    src.push(wrist_pose=op2)
    cmd = s.step(now + DT, q, OPEN)
    np.testing.assert_allclose(cmd.target_pose[:3, 3], p_engaged + (0, 0, 0.01), atol=1e-6)


def test_workspace_and_step_limits_through_the_session(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    src.push(wrist_pose=np.eye(4))
    s.step(0.0, READY, OPEN)
    wild = np.eye(4)
    wild[:3, 3] = (0.0, 0.0, -2.0)  # 2 m down: through the table
    wild[:3, :3] = rotation_exp(np.array([0, 0, 2.0]))
    q = READY.copy()
    for k in range(1, 60):
        src.push(wrist_pose=wild)
        cmd = s.step(k * DT, q, OPEN)
        assert cmd.workspace_clipped
        assert cmd.target_pose[2, 3] == pytest.approx(ik.config.workspace_min[2])
        _gate_ok(cmd.chunk, k * DT, q)  # never refused: steps limited by design
        q = cmd.chunk.positions[0, :7]
    assert ik.fk(q)[2, 3] == pytest.approx(ik.config.workspace_min[2], abs=5e-3)


def test_dart_noise_is_smooth_and_leaves_the_clean_command_alone(ik):
    def run(noise):
        src = QueueSource()
        s = TeleopSession(src, ik, config=TeleopConfig(dart_noise=noise, dart_smoothness=0.9, seed=3))
        q = READY.copy()
        cleans, executed = [], []
        for k in range(60):
            src.push(wrist_pose=_pose(ik, dp=(0.1 * math.sin(k / 10), 0.0, 0.0)), stamp=float(k))
            cmd = s.step(k * DT, q, OPEN)
            _gate_ok(cmd.chunk, k * DT, q)
            cleans.append(cmd.clean)
            executed.append(cmd.chunk.positions[0])
            q = cmd.clean[:7]  # the robot follows the clean command here, so both runs see the same states
        return np.array(cleans), np.array(executed)

    clean0, exec0 = run(0.0)
    clean1, exec1 = run(0.02)
    np.testing.assert_allclose(clean1, clean0)  # the recorded action is the operator's, not the noisy one
    np.testing.assert_allclose(exec0, clean0)
    offset = exec1[:, :7] - clean1[:, :7]
    assert np.abs(offset).max() > 0.005  # noise is there
    assert np.abs(offset).max() < 0.1
    np.testing.assert_allclose(exec1[:, 7:], clean1[:, 7:])  # hand untouched
    # smooth: the offset changes little from one command to the next, compared with its size
    assert np.abs(np.diff(offset, axis=0)).max() < 0.6 * np.abs(offset).max()
    assert np.abs(np.diff(offset, axis=0)).mean() < 0.5 * np.abs(offset).mean()


def test_hand_targets_keypoints_buttons_and_keep(ik):
    src = QueueSource()
    calls = []

    def retarget(kp):
        calls.append(kp)
        return np.full(6, 400.0)

    s = TeleopSession(src, ik, retargeter=retarget)
    hand_now = np.full(6, 700.0)
    src.push(arm_q=READY)  # no hand information: keep the current hand
    np.testing.assert_allclose(s.step(0.0, READY, hand_now).clean[7:], hand_now)
    src.push(arm_q=READY, hand_targets=np.array([1200, 500, 500, 500, -5, 300.0]))  # clipped to 0..1000
    np.testing.assert_allclose(s.step(DT, READY, hand_now).clean[7:], [1000, 500, 500, 500, 0, 300])
    src.push(arm_q=READY, hand_keypoints=np.zeros((21, 3)))
    np.testing.assert_allclose(s.step(2 * DT, READY, hand_now).clean[7:], 400.0)
    assert len(calls) == 1
    src.push(arm_q=READY, buttons=frozenset({Button.HAND_CLOSE}))
    cmd = s.step(3 * DT, READY, hand_now)
    np.testing.assert_allclose(cmd.clean[7:], 0.0)
    assert cmd.buttons == {Button.HAND_CLOSE}
    src.push(arm_q=READY)  # nothing new: the last hand target stays
    np.testing.assert_allclose(s.step(4 * DT, READY, hand_now).clean[7:], 0.0)

    class Obj:  # an object with .retarget (HandRetargeter's interface)
        def retarget(self, kp):
            return np.full(6, 10.0)

    s2 = TeleopSession(src, ik, retargeter=Obj())
    src.push(arm_q=READY, hand_keypoints=np.zeros((21, 3)))
    np.testing.assert_allclose(s2.step(0.0, READY, hand_now).clean[7:], 10.0)


def test_arm_q_is_step_limited(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    goal = READY + 0.5
    src.push(arm_q=goal)
    cmd = s.step(0.0, READY, OPEN)
    assert cmd.step_clipped
    steps = np.diff(np.vstack([READY, cmd.chunk.positions[:, :7]]), axis=0)
    assert np.abs(steps).max() <= ik.config.max_step + 1e-9
    _gate_ok(cmd.chunk, 0.0, READY)


def test_latency_is_measured_from_the_sample_stamp(ik):
    src = QueueSource()
    t = [100.0]
    s = TeleopSession(src, ik, latency_clock=lambda: t[0])
    src.push(arm_q=READY, stamp=99.98)
    cmd = s.step(0.0, READY, OPEN)
    assert cmd.latency_s == pytest.approx(0.02) and cmd.new_sample
    cmd = s.step(DT, READY, OPEN)  # no new sample: the last one is reused, no latency
    assert cmd.latency_s is None and cmd.chunk is not None
    stats = s.latency_stats()
    assert stats["count"] == 1 and stats["p50"] == pytest.approx(0.02)


def test_stalled_stream_holds_the_simulated_arm(ik):
    """Through the real device path: ChunkExecutor -> SimArm (FR3 gate). The operator sweeps the wrist, then the
    stream stops: the executor holds within the deadman time (+ one period) and the arm stops."""
    from hardware.sim.world import SimWorld, SimWorldConfig
    from jala_runtime.executor import ChunkExecutor, FollowerConfig

    world = SimWorld(SimWorldConfig(render_width=32, render_height=32))
    try:
        clock = [world.sim_time]
        ex = ChunkExecutor(world.arm, world.hand, FollowerConfig(min_lead_s=0.03, stall_hold_s=math.inf),
                           FollowerConfig(stall_hold_s=math.inf), clock=lambda: clock[0])
        src = QueueSource()
        cfg = TeleopConfig()
        s = TeleopSession(src, ik, config=cfg)
        t0, steps, last_sample, held_at = world.sim_time, 0, None, None
        op = np.eye(4)
        for k in range(45):
            now = t0 + k * DT
            clock[0] = now
            if k < 25:
                op[1, 3] = 0.004 * k  # 6 cm/s sideways
                src.push(wrist_pose=op.copy())
                last_sample = now
            p = world.proprio()
            cmd = s.step(now, p[:7], p[7:])
            accepted = s.apply(cmd, ex, now)
            if cmd.chunk is not None and k > 0:
                assert accepted, ex.fault
            if ex.held and held_at is None:
                held_at = now
            ex.tick(now)
            assert not ex.fault
            target = int(round((k + 1) * DT / world.model.opt.timestep))
            world.step(target - steps)
            steps = target
        assert held_at is not None and "deadman" in ex.arm.hold_reason
        assert held_at - last_sample <= cfg.deadman_s + cfg.period + 1e-9
        q_before = world.proprio()[:7]
        world.step_seconds(0.3)
        assert np.abs(world.proprio()[:7] - q_before).max() < 2e-3  # holding still
        # fresh input after the hold: the session recovers the devices (no fault) and motion resumes
        resumed = False
        for k in range(45, 50):
            now = t0 + k * DT
            clock[0] = now
            src.push(wrist_pose=op.copy())
            p = world.proprio()
            resumed |= s.apply(s.step(now, p[:7], p[7:]), ex, now)
            ex.tick(now)
        assert resumed and not ex.held
    finally:
        world.close()


def _executor(refuse: str = ""):
    from jala_runtime.executor import ChunkExecutor, FollowerConfig
    from tests.runtime.fakes import RecordingArm, RecordingHand

    clock = [0.0]
    ex = ChunkExecutor(RecordingArm(refuse), RecordingHand(), FollowerConfig(stall_hold_s=math.inf),
                       FollowerConfig(stall_hold_s=math.inf), clock=lambda: clock[0])
    return ex, clock


def test_apply_holds_on_clutch_and_recovers_only_its_own_hold(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    ex, clock = _executor()
    src.push(arm_q=READY)
    assert s.apply(s.step(0.0, READY, OPEN), ex, 0.0)
    src.push(arm_q=READY, clutch=False)
    assert not s.apply(s.step(DT, READY, OPEN), ex, DT)
    assert ex.held and ex.arm.hold_reason == "teleop: clutch released" and ex.arm.device.holds == 1
    clock[0] = 2 * DT
    src.push(arm_q=READY)
    s.apply(s.step(2 * DT, READY, OPEN), ex, 2 * DT)  # recovers; this chunk or the next one runs
    assert not ex.held
    src.push(arm_q=READY)
    assert s.apply(s.step(3 * DT, READY, OPEN), ex, 3 * DT)
    # a hold someone else asked for (e-stop, watchdog) is not cleared by teleop input
    ex.hold("e-stop pressed")
    for k in range(4, 8):
        src.push(arm_q=READY)
        assert not s.apply(s.step(k * DT, READY, OPEN), ex, k * DT)
    assert ex.held and ex.arm.hold_reason == "e-stop pressed"


def test_a_refused_chunk_holds_like_a_policy_chunk_and_stays_held(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    ex, clock = _executor(refuse="joint 4 over the limit")
    src.push(arm_q=READY)
    assert not s.apply(s.step(0.0, READY, OPEN), ex, 0.0)
    assert ex.held and "safety gate refused" in ex.fault
    for k in range(1, 4):
        clock[0] = k * DT
        src.push(arm_q=READY)
        assert not s.apply(s.step(k * DT, READY, OPEN), ex, k * DT)
    assert ex.held and ex.arm.chunks_executed == 0


def test_a_broken_sample_holds_instead_of_being_sent(ik):
    src = QueueSource()
    s = TeleopSession(src, ik)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    src.push(wrist_pose=bad)
    cmd = s.step(0.0, READY, OPEN)
    assert cmd.chunk is None and "invalid operator sample" in cmd.hold
    src.push(arm_q=np.zeros(6))
    assert "invalid" in s.step(DT, READY, OPEN).hold
    src.push(arm_q=READY)
    assert s.step(2 * DT, READY, OPEN).chunk is not None
