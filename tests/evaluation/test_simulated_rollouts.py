"""Seeded rollouts in the simulated task world through the runtime core (evaluation/): the scripted expert
completes each task, the CLI prints JSON and writes a video, a JalaPolicy checkpoint runs through the same
observation / scheduler / executor pieces as the robot, and an unsafe chunk stops the episode with both devices
held."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("hardware.sim.world")  # sets MUJOCO_GL before mujoco is imported

from hardware.sim import SimWorld, SimWorldConfig  # noqa: E402
from tests.helpers import ROOT as REPO  # noqa: E402

W, H = 64, 48


def make(task="water_plant", **kw) -> SimWorld:
    kw.setdefault("render_width", W)
    kw.setdefault("render_height", H)
    return SimWorld(SimWorldConfig(task=task, **kw))


# ------------------------------------------------------------------------------------------- experts
def _expert_cr(task, seeds, arm_targets: list | None = None):
    """The expert's Completion Ratio per seed; ``arm_targets`` (a list) collects the arm rows of its chunks."""
    from evaluation.policies import ExpertPolicy
    from evaluation.simulated import run_episode

    class Recorded(ExpertPolicy):
        def predict(self, *args, **kw):
            chunk = super().predict(*args, **kw)
            if arm_targets is not None:
                arm_targets.append(chunk.positions[:, :7])
            return chunk

    w = make(task)
    try:
        expert = Recorded(w)
        return [run_episode(w, expert, s).completion_ratio for s in seeds]
    finally:
        w.close()


def test_expert_water_plant():
    crs = _expert_cr("water_plant", [0, 1, 2])
    assert np.mean(crs) >= 0.9, crs


def test_expert_wipe_board():
    crs = _expert_cr("wipe_board", [0, 1, 2])
    assert np.mean(crs) >= 0.9, crs


@pytest.mark.slow
def test_expert_put_three_obj():
    """It finishes, and its plans keep one arm configuration: joint 5 (the forearm roll) stays on the branch near
    the task's rest posture. IK restarts from random seeds used to flip it below -1.5 rad in some episodes and not
    in others, so that the demonstrations of one task disagreed on the posture for the same poses. The drawer pull
    leaves the elbow (joint 4) clear of the gate's limit (-3.02 rad): pulled further, it ended at -2.91."""
    arm = []
    crs = _expert_cr("put_three_obj", [0, 4], arm)  # with restarts, seed 4 flipped it
    assert np.mean(crs) >= 0.9, crs
    q = np.concatenate(arm)
    assert q[:, 4].min() > -1.0, q[:, 4].min()
    assert q[:, 3].min() > -2.87, q[:, 3].min()


def test_evaluate_cli_json_and_video(tmp_path):
    video = tmp_path / "wp.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"))
    out = subprocess.run([sys.executable, "-m", "evaluation", "--task", "water_plant", "--episodes", "1",
                          "--seed", "4", "--width", "64", "--height", "48", "--json", "--video", str(video),
                          "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["task"] == "water_plant" and len(doc["episodes"]) == 1
    assert doc["mean_completion_ratio"] == doc["episodes"][0]["completion_ratio"] >= 2 / 3
    assert video.stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "evaluation", "--task", "water_plant", "--policy",
                          str(tmp_path / "missing")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "checkpoint" in bad.stderr


@pytest.mark.slow
def test_evaluate_runs_a_jala_checkpoint(tmp_path):
    """A (tiny, untrained) JalaPolicy checkpoint runs through the same chunk loop: observations in, chunks out,
    executed until the episode limit or a safety stop."""
    from evaluation.simulated import evaluate
    from jala_policy.config import JalaPolicyConfig
    from jala_policy.policy import JalaPolicy

    cfg = JalaPolicyConfig.from_preset("tiny", num_views=2, input_image_hw=(H, W))
    cfg.inference.execute_steps = 12  # what the checkpoint asks the runtime for
    JalaPolicy.build(cfg, device="cpu").save_pretrained(tmp_path / "ckpt")
    summary = evaluate("wipe_board", "unseen", str(tmp_path / "ckpt"), episodes=1, seed=0, width=W, height=H,
                       progress=False, device="cpu", max_seconds=1.5)
    ep = summary.episodes[0]
    assert ep.chunks >= 1
    assert summary.execute_steps == 12 and summary.to_json()["execute_steps"] == 12
    assert ep.stopped in ("timeout", "success") or ep.stopped.startswith("safety:")
    assert 0.0 <= summary.mean_completion_ratio <= 1.0


def test_a_rollout_samples_with_seeds_set_by_the_episode_seed_and_the_sampling_seed():
    """The flow head's noise is seeded per chunk: the same episode seed gives the same seeds (a checkpoint scores
    the same on a re-run), another episode or --sampling-seed gives other ones (seeded predict is reproducible:
    tests/policy/test_fast_inference.py)."""
    from evaluation.policies import ExpertPolicy
    from evaluation.simulated import SAMPLING_SEEDS_PER_EPISODE, run_episode

    class SeedRecorder(ExpertPolicy):
        uses_images = False

        def __init__(self, world):
            super().__init__(world)
            self.seeds = []

        def predict(self, images, instruction, proprio, timestamp=None, seed=None):
            self.seeds.append(seed)
            return super().predict(images, instruction, proprio, timestamp=timestamp, seed=seed)

    w = make()
    try:
        policy = SeedRecorder(w)

        def seeds(seed, **kw):
            policy.seeds = []
            run_episode(w, policy, seed, max_seconds=2.0, **kw)
            return list(policy.seeds)

        first = seeds(7)
        assert len(first) >= 3 and first == list(range(7 * SAMPLING_SEEDS_PER_EPISODE,
                                                       7 * SAMPLING_SEEDS_PER_EPISODE + len(first)))
        assert seeds(7) == first
        assert set(seeds(8)).isdisjoint(first)
        assert seeds(7, sampling_seed=5) == [s + 5 for s in first]
    finally:
        w.close()


def test_a_rollout_replans_after_the_checkpoints_execute_steps_unless_told_otherwise():
    """The scheduler takes over after ``execute_steps`` actions: the policy's own (a checkpoint's
    inference.execute_steps) unless the caller gives one; with neither, embodiment.EXECUTE_STEPS (8)."""
    from embodiment import ACTION_DT
    from evaluation.policies import ExpertPolicy
    from evaluation.simulated import run_episode

    class Stamps(ExpertPolicy):
        uses_images = False
        execute_steps = None

        def predict(self, images, instruction, proprio, timestamp=None, seed=None):
            self.stamps.append(timestamp)
            return super().predict(images, instruction, proprio, timestamp=timestamp, seed=seed)

    w = make()
    try:
        policy = Stamps(w)

        def periods(**kw):
            policy.stamps = []
            run_episode(w, policy, 3, max_seconds=2.5, **kw)
            return set(np.round(np.diff(policy.stamps) / ACTION_DT).astype(int).tolist())

        assert periods() == {8}
        policy.execute_steps = 12
        assert periods() == {12}
        assert periods(execute_steps=4) == {4}
    finally:
        w.close()


def test_a_played_latency_delivers_each_chunk_late_one_at_a_time_while_the_world_goes_on():
    """--latency-s: a chunk reaches the arm that long after its observation (rounded up to the action grid), the
    arm moved meanwhile, the next chunk is computed only after it went out, and the expert still does the task."""
    from embodiment import ACTION_DT
    from evaluation.policies import ExpertPolicy
    from evaluation.simulated import run_episode

    w = make()
    try:
        policy = ExpertPolicy(w)
        policy.uses_images = False
        predicted, executed = [], []
        predict, execute = policy.predict, w.arm.execute

        def recording_predict(images, instruction, proprio, timestamp=None, seed=None):
            predicted.append(np.asarray(proprio, dtype=float)[:7].copy())
            return predict(images, instruction, proprio, timestamp=timestamp, seed=seed)

        def recording_execute(chunk, now):
            executed.append((chunk.stamp, now, w.arm.read_state().q.copy()))
            return execute(chunk, now)

        policy.predict, w.arm.execute = recording_predict, recording_execute
        res = run_episode(w, policy, 3, latency_s=0.15)
        assert res.completion_ratio == 1.0, res
        assert len(executed) >= 5 and len(predicted) == len(executed)
        for (stamp, now, _), (next_stamp, _, _) in zip(executed, executed[1:]):
            assert now - stamp == pytest.approx(3 * ACTION_DT)  # 0.15 s rounded up to the 15 Hz grid
            assert next_stamp >= now  # computed after this one went out: one inference at a time
        # the world went on between the observation and the chunk's arrival: the arm had moved on
        assert max(np.abs(q - q_obs).max() for (_, _, q), q_obs in zip(executed, predicted)) > 0.05
    finally:
        w.close()


def test_an_unsafe_chunk_stops_the_rollout_with_both_devices_held():
    """A policy whose chunk the FR3 gate refuses (a 1 rad jump of joint 1): the episode ends with a safety stop
    naming the gate's reason, arm and hand hold, and nothing of that chunk ran."""
    from embodiment import ACTION_DT
    from evaluation.simulated import run_episode
    from jala_runtime.chunk import TimedChunk

    class JumpPolicy:
        def __init__(self, world):
            self.world = world

        def predict(self, images, instruction, proprio, timestamp=None, seed=None):
            actions = np.tile(np.asarray(proprio, dtype=float), (16, 1))
            actions[:, 0] += 1.0
            return TimedChunk.at_rate(actions, timestamp, ACTION_DT)

    w = make()
    try:
        res = run_episode(w, JumpPolicy(w), seed=3, max_seconds=2.0)
        q_start = w.arm.read_state().q
        assert res.stopped.startswith("safety: safety gate refused chunk"), res.stopped
        assert res.chunks == 1  # the first chunk was refused: the episode stopped there
        w.step(200)
        assert np.abs(w.arm.read_state().q - q_start).max() < 1e-3  # held: nothing moves
    finally:
        w.close()
