"""Operator sources: keyboard (a fed key sequence), replay of a recorded file, and the simulated world's scripted
expert driving the arm through the session and a ChunkExecutor."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

from embodiment import ACTION_DT, READY_Q
from teleop.arm_ik import ArmIK, rotation_log
from teleop.operator import Button, OperatorSample
from teleop.session import TeleopConfig, TeleopSession
from teleop.sources.keyboard import KeyboardSource, ready_wrist_pose
from teleop.sources.replay import ReplaySource, load_samples, record_samples

READY = np.asarray(READY_Q)
OPEN = np.full(6, 1000.0)
DT = ACTION_DT


@pytest.fixture(scope="module")
def ik():
    return ArmIK()


# ------------------------------------------------------------------------------------------------ keyboard
def test_keyboard_keys_move_the_wrist_and_press_buttons():
    kb = KeyboardSource(clock=lambda: 5.0)
    p0 = kb.pose.copy()
    np.testing.assert_allclose(p0, ready_wrist_pose())
    kb.feed("wwwar")
    s = kb.read()
    assert s.stamp == 5.0 and s.clutch and s.buttons == frozenset()
    np.testing.assert_allclose(s.wrist_pose[:3, 3] - p0[:3, 3], (0.03, 0.01, 0.01), atol=1e-12)
    np.testing.assert_allclose(s.wrist_pose[:3, :3], p0[:3, :3])
    kb.feed("jj")
    s = kb.read()
    np.testing.assert_allclose(rotation_log(s.wrist_pose[:3, :3] @ p0[:3, :3].T), (0, 0, 0.1), atol=1e-9)
    kb.feed("c1")
    s = kb.read()
    assert s.buttons == {Button.HAND_CLOSE, Button.START}
    np.testing.assert_allclose(s.hand_targets, 0.0)
    kb.feed(" ")
    assert kb.read().clutch is False
    kb.feed(" x2")
    s = kb.read()
    assert s.clutch and s.buttons == {Button.HAND_OPEN, Button.SAVE}
    np.testing.assert_allclose(s.hand_targets, 1000.0)
    s = kb.read()  # no key: a heartbeat with the same pose, no buttons
    assert s is not None and s.buttons == frozenset()
    kb.feed("q")
    assert Button.QUIT in kb.read().buttons
    kb.close()
    assert kb.read() is None


def test_keyboard_stream_end_stops_the_samples():
    kb = KeyboardSource(io.StringIO("dd3"))
    kb._thread.join(timeout=2.0)
    s = kb.read()
    assert s.buttons == {Button.DISCARD}
    np.testing.assert_allclose(s.wrist_pose[1, 3] - ready_wrist_pose()[1, 3], -0.02, atol=1e-12)
    assert kb.read() is None  # stdin closed: the session's deadman holds


def test_keyboard_through_the_session_moves_the_hand_base(ik):
    kb = KeyboardSource()
    s = TeleopSession(kb, ik)
    q = READY.copy()
    s.step(0.0, q, OPEN)  # anchors
    kb.feed("www" + "fff")
    for k in range(1, 15):
        cmd = s.step(k * DT, q, OPEN)
        q = cmd.chunk.positions[0, :7]
    np.testing.assert_allclose(ik.fk(q)[:3, 3] - ik.fk(READY)[:3, 3], (0.03, 0.0, -0.03), atol=2e-3)


# ------------------------------------------------------------------------------------------------ replay
def _samples():
    out = []
    for i in range(6):
        pose = np.eye(4)
        pose[0, 3] = 0.01 * i
        out.append(OperatorSample(
            stamp=100.0 + i / 30.0, wrist_pose=pose,
            hand_targets=np.full(6, 100.0 * i) if i % 2 == 0 else None,
            hand_keypoints=np.full((21, 3), 0.01 * i) if i == 3 else None,
            clutch=i != 4, buttons=frozenset({Button.START}) if i == 1 else frozenset()))
    return out


def test_record_and_load_round_trip(tmp_path):
    path = record_samples(tmp_path / "ops", _samples())
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"stamp", "clutch", "buttons", "wrist_pose", "hand_targets", "hand_keypoints"}
    back = load_samples(path)
    for a, b in zip(_samples(), back):
        assert a.stamp == b.stamp and a.clutch == b.clutch and a.buttons == b.buttons
        np.testing.assert_allclose(a.wrist_pose, b.wrist_pose)
        assert b.arm_q is None
        for name in ("hand_targets", "hand_keypoints"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None) == (vb is None)
            if va is not None:
                np.testing.assert_allclose(va, vb)


def test_replay_one_sample_per_read_then_stops(tmp_path):
    path = record_samples(tmp_path / "ops.npz", _samples())
    src = ReplaySource(path, realtime=False, restamp=False)
    got = [src.read() for _ in range(6)]
    assert [g.stamp for g in got] == [s.stamp for s in _samples()]
    assert src.done and src.read() is None
    looped = ReplaySource(path, realtime=False, loop=True, clock=lambda: 7.0)
    stamps = [looped.read().stamp for _ in range(8)]
    assert stamps == [7.0] * 8


def test_replay_in_real_time_keeps_the_timing_and_the_buttons(tmp_path):
    path = record_samples(tmp_path / "ops.npz", _samples())
    t = [50.0]
    src = ReplaySource(path, realtime=True, clock=lambda: t[0])
    s = src.read()  # t = 0: the first sample
    assert s.wrist_pose[0, 3] == 0.0 and s.stamp == 50.0
    assert src.read() is None  # nothing newer yet
    t[0] = 50.0 + 0.07  # samples 1 and 2 are due: the newest comes, with sample 1's START
    s = src.read()
    assert s.wrist_pose[0, 3] == pytest.approx(0.02) and s.buttons == {Button.START}
    assert s.stamp == pytest.approx(50.0 + 2 / 30.0)
    t[0] = 60.0
    s = src.read()
    assert s.wrist_pose[0, 3] == pytest.approx(0.05)
    assert src.read() is None and src.done


def test_replay_through_the_session_holds_after_the_file_ends(ik, tmp_path):
    path = record_samples(tmp_path / "ops.npz", _samples()[:4])
    src = ReplaySource(path, realtime=False)
    s = TeleopSession(src, ik, config=TeleopConfig())
    holds = [s.step(k * DT, READY, OPEN).hold for k in range(12)]
    assert all(h == "" for h in holds[:4])
    assert any("deadman" in h for h in holds[4:])


# ------------------------------------------------------------------------------------------------ expert
@pytest.mark.parametrize("follow,dart", [("plan", 0.0), ("plan", 0.01), ("act", 0.0)])
def test_expert_operator_completes_the_first_water_plant_subtask(ik, follow, dart):
    from hardware.sim.world import SimWorld, SimWorldConfig
    from jala_runtime.executor import ChunkExecutor, FollowerConfig
    from teleop.sources.expert import ExpertOperator

    world = SimWorld(SimWorldConfig(task="water_plant", render_width=32, render_height=32))
    try:
        op = ExpertOperator(world, follow=follow)
        s = TeleopSession(op, ik, config=TeleopConfig(dart_noise=dart, seed=0))
        clock = [world.sim_time]
        events = []
        ex = ChunkExecutor(world.arm, world.hand, FollowerConfig(min_lead_s=0.03, stall_hold_s=math.inf),
                           FollowerConfig(stall_hold_s=math.inf), clock=lambda: clock[0],
                           on_event=lambda level, msg: events.append((level, msg)))
        t0, steps, buttons, accepted = world.sim_time, 0, [], 0
        for k in range(int(10.0 / DT)):
            now = t0 + k * DT
            clock[0] = now
            p = world.proprio()
            cmd = s.step(now, p[:7], p[7:])
            assert cmd.hold == "" and cmd.chunk is not None
            assert cmd.clean.shape == (13,)
            buttons += [(k, b) for b in cmd.buttons]
            accepted += s.apply(cmd, ex, now)
            ex.tick(now)
            assert not ex.fault, ex.fault
            target = int(round((k + 1) * DT / world.model.opt.timestep))
            world.step(target - steps)
            steps = target
            if Button.SAVE in cmd.buttons:
                break
        done = world.completion().done
        assert done[0], f"grasp_bottle not completed: {world.completion()}"
        assert buttons[0] == (0, Button.START)
        assert any(b == Button.SAVE for _, b in buttons)  # the task succeeded (or the plan played out)
        assert accepted == k + 1 and not [e for e in events if e[0] == "error"]
        # a new episode presses START again
        world.reset(1)
        op.reset()
        assert Button.START in op.read().buttons
    finally:
        world.close()
