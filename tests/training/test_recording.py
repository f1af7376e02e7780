"""The recorder core (training/recording/recorder.py) and the fast simulated ``record`` command: episodes begin
only with fresh inputs, dropped frames are counted, save / discard, and N expert demonstrations land in a LeRobot
v3.0 dataset whose frames, features and episode boundaries are right (the ROS path: tests/ros/test_ros_recording.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embodiment import ACTION_DIM, CHUNK_JOINT_NAMES
from training.recording.lerobot_v3 import LeRobotV3Dataset, LeRobotV3Writer, robot_features
from training.recording.recorder import EpisodeRecorder

H, W = 24, 32


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _feed(rec: EpisodeRecorder, clock: Clock, k: int, stamp: float | None = None) -> None:
    clock.t += 0.1
    rec.set_image("cam", clock.t if stamp is None else stamp, np.full((H, W, 3), 10 * k % 250, np.uint8))
    rec.set_state(np.full(ACTION_DIM, k, np.float32))
    rec.set_action(np.full(ACTION_DIM, k + 0.5, np.float32))


def test_an_episode_begins_only_with_inputs_newer_than_the_request(tmp_path):
    clock = Clock()
    writer = LeRobotV3Writer.create(tmp_path / "ds", fps=10, features=robot_features({"cam": (H, W)}))
    rec = EpisodeRecorder(writer, ["cam"], clock=clock)
    _feed(rec, clock, 0)  # inputs from before the request: the previous episode's last command
    assert rec.start("pick")[0] and rec.starting
    clock.t += 0.1
    assert not rec.tick() and set(rec.stale()) == {"camera cam", "joint states", "operator command"}
    rec.set_action(np.ones(ACTION_DIM))
    clock.t += 0.1
    assert not rec.tick() and set(rec.stale()) == {"camera cam", "joint states"}
    for k in range(1, 6):
        _feed(rec, clock, k)
        assert rec.tick()
    assert rec.recording and rec.status().frames == 5
    ok, msg = rec.save()
    assert ok and "5 frames" in msg
    writer.close()
    ds = LeRobotV3Dataset(tmp_path / "ds")
    np.testing.assert_allclose(ds.data["action"][:, 0], [1.5, 2.5, 3.5, 4.5, 5.5])  # nothing from before start


def test_dropped_frames_save_and_discard(tmp_path):
    clock = Clock()
    writer = LeRobotV3Writer.create(tmp_path / "ds", fps=10, features=robot_features({"cam": (H, W)}))
    rec = EpisodeRecorder(writer, ["cam"], episodes_target=2, clock=clock)
    assert rec.save() == (False, "no episode is being recorded")
    rec.start("first")
    for k in range(4):
        _feed(rec, clock, k, stamp=1.0 if k >= 2 else None)  # the camera stalls from frame 2 on
        rec.tick()
    st = rec.status()
    assert st.frames == 4 and st.dropped_frames == 1 and "episode 1/2" in st.line()
    assert rec.discard()[0] and writer.num_episodes == 0
    rec.start("second")
    for k in range(3):
        _feed(rec, clock, k)
        rec.tick()
    assert rec.save()[0] and writer.num_episodes == 1 and rec.status().saved_this_run == 1
    assert not rec.start("")[0]  # an episode needs its instruction
    writer.close()


def test_a_failed_save_is_one_line_and_recording_goes_on(tmp_path, monkeypatch):
    """The writer refusing an episode (here: its video check fails) discards that episode only: save() says so in
    one line instead of raising into the recorder node, the saved episodes stay, and the next episode records."""
    clock = Clock()
    writer = LeRobotV3Writer.create(tmp_path / "ds", fps=10, features=robot_features({"cam": (H, W)}))
    rec = EpisodeRecorder(writer, ["cam"], clock=clock)

    def episode(task):
        assert rec.start(task)[0]
        for k in range(3):
            _feed(rec, clock, k)
            rec.tick()

    episode("first")
    assert rec.save()[0]
    episode("second")
    real_stage = writer._stage_episode

    def failing_stage(*args, **kw):
        raise RuntimeError("cam: episode video lasts 0.2 s, expected 0.3 s")

    monkeypatch.setattr(writer, "_stage_episode", failing_stage)
    ok, msg = rec.save()
    assert not ok and "discarded" in msg and "episode video lasts" in msg and "\n" not in msg
    assert writer.num_episodes == 1 and not rec.recording
    monkeypatch.setattr(writer, "_stage_episode", real_stage)
    episode("third")
    assert rec.save()[0] and writer.num_episodes == 2
    writer.close()
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert [list(e["tasks"]) for e in ds.episodes] == [["first"], ["third"]]


@pytest.mark.slow
def test_record_command_collects_expert_demonstrations(tmp_path, capsys):
    pytest.importorskip("hardware.sim.world")
    from training.recording.record import main

    root = tmp_path / "wp"
    assert main(["--task", "water_plant", "--episodes", "2", "--root", str(root), "--width", "64", "--height",
                 "48", "--no-progress"]) == 0
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 15 and info["total_episodes"] == 2
    assert info["features"]["action"]["names"] == list(CHUNK_JOINT_NAMES)
    ds = LeRobotV3Dataset(root)
    for e in range(2):
        d = ds.episode_data(e)
        n = len(d["frame_index"])
        assert n > 15 and list(d["frame_index"]) == list(range(n))
        np.testing.assert_allclose(d["timestamp"], np.arange(n) / 15, atol=1e-4)
        frames = ds.decode_frames(e, "observation.images.camera")
        assert frames.shape == (n, 48, 64, 3)
        # the recorded action leads the state: the arm follows the operator's command
        act, state = np.stack(d["action"])[:, :7], np.stack(d["observation.state"])[:, :7]
        assert np.abs(act[:-3] - state[3:]).mean() < np.abs(act[3:] - state[:-3]).mean()
    assert main(["--task", "water_plant", "--episodes", "1", "--root", str(root), "--width", "64", "--height",
                 "48", "--no-progress", "--seed", "5"]) == 0  # appends
    assert LeRobotV3Dataset(root).num_episodes == 3
    # --min-clearance: a success whose actions come closer to the gate's joint limits is discarded, with a line
    capsys.readouterr()
    assert main(["--task", "water_plant", "--episodes", "1", "--root", str(root), "--width", "64", "--height",
                 "48", "--no-progress", "--min-clearance", "2.0", "--max-attempts", "1"]) == 1
    err = capsys.readouterr().err
    assert "seed 0: succeeded but discarded, too close to a joint limit (joint" in err and "< 2)" in err, err
    assert LeRobotV3Dataset(root).num_episodes == 3


def test_action_margin_measures_steps_within_episodes_and_joint_limit_clearance(tmp_path, capsys):
    """``python -m training.recording.action_margin``: the largest step between consecutive actions of an episode
    (not across an episode boundary), the count of steps near the gate's max_step, and the smallest distance of
    any action to the gate's joint limits (datasheet limit less the margin)."""
    from embodiment import FR3_Q_MAX, READY_Q
    from hardware.franka.safety import ArmSafetyLimits
    from training.recording.action_margin import action_margin, main

    lim = ArmSafetyLimits()
    writer = LeRobotV3Writer.create(tmp_path / "ds", fps=15, features=robot_features({"cam": (H, W)}),
                                    video_codec="h264")
    episodes = [np.array(READY_Q) + np.outer(np.arange(10) * 0.05, np.eye(7)[1]),  # joint 2: 0.05 rad a step
                np.array(READY_Q) + 1.0 + np.outer([0, 0.02, 0.115, 0.12], np.eye(7)[3])]  # 0.095 step, joint 4
    episodes[1][:, 5] = FR3_Q_MAX[5] - lim.position_margin - 0.004  # joint 6 just inside the gate's limit
    for arm in episodes:
        writer.start_episode("t")
        for q in arm:
            action = np.concatenate([q, np.full(6, 500.0)]).astype(np.float32)
            writer.add_frame({"observation.images.cam": np.zeros((H, W, 3), np.uint8),
                              "observation.state": action, "action": action})
        writer.save_episode()
    writer.close()

    m = action_margin(tmp_path / "ds", lim, near=0.9)
    assert m.frames == 14 and m.fps == 15.0
    # the +1.0 jump between the two episodes is not a step
    np.testing.assert_allclose(m.max_step, [0, 0.05, 0, 0.095, 0, 0, 0], atol=1e-5)
    assert m.near_steps == 1
    assert m.limit_clearance[5] == pytest.approx(0.004, abs=1e-5) and m.limit_clearance.min() == m.limit_clearance[5]
    assert main([str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "max 0.095 (gate max_step 0.100)" in out and "1 step(s) above 0.9 x max_step" in out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])
