"""Pipelined inference without ROS: when chunks are due, hand-over at execute_steps, staleness of inputs."""
from __future__ import annotations

import numpy as np
import pytest

from embodiment import ACTION_DT, CHUNK_JOINT_NAMES
from jala_runtime.chunk import TimedChunk
from jala_runtime.loop import PolicyRunner
from jala_runtime.observation import ObservationAssembler
from jala_runtime.scheduler import ChunkScheduler, next_inference_time


class CountingPolicy:
    """Returns a chunk of zeros stamped with the observation; records what it was asked."""

    def __init__(self):
        self.calls: list[tuple[float, int | None, int]] = []  # (stamp, seed, number of images)

    def predict(self, images, instruction, proprio, timestamp=None, seed=None):
        self.calls.append((timestamp, seed, 1 if isinstance(images, np.ndarray) else len(images)))
        return TimedChunk.at_rate(np.zeros((16, 13)), timestamp, ACTION_DT, CHUNK_JOINT_NAMES)


def feed(obs: ObservationAssembler, stamp: float, now: float | None = None, views: int = 1):
    now = stamp if now is None else now
    for v in range(views):
        obs.set_frame(v, stamp, np.zeros((4, 4, 3), np.uint8))
    obs.set_arm(np.zeros(7), now)
    obs.set_hand(np.zeros(6), now)


def test_next_chunk_starts_one_latency_before_the_hand_over():
    # chunk from an observation at t=10 s, 15 Hz, hand-over after 8 actions (t = 10.533), 120 ms latency
    assert next_inference_time(10.0, 1 / 15, 8, 0.12) == pytest.approx(10.0 + 8 / 15 - 0.12)
    assert next_inference_time(10.0, 1 / 15, 8, 5.0) == 10.0  # slower than a chunk: start at once


def test_hand_over_at_execute_steps_with_measured_latency():
    sched = ChunkScheduler(ACTION_DT, execute_steps=8, horizon=16)
    assert sched.due(0.0)
    sched.computing(10.0)
    assert sched.chunk_out(10.0, at=10.1) == pytest.approx(0.1)
    assert sched.next_time == pytest.approx(10.0 + 8 * ACTION_DT - 0.1)
    assert not sched.due(10.3) and sched.due(10.0 + 8 * ACTION_DT - 0.1)
    assert sched.wait_s(10.3) == pytest.approx(10.0 + 8 * ACTION_DT - 0.1 - 10.3)
    with pytest.raises(ValueError, match="execute_steps must be 1..16"):
        ChunkScheduler(ACTION_DT, execute_steps=17, horizon=16)


def test_runner_computes_once_per_frame_and_only_when_due():
    policy = CountingPolicy()
    obs = ObservationAssembler(1, max_age_s=0.5)
    runner = PolicyRunner(policy, ChunkScheduler(ACTION_DT, 8, 16), obs, seed=7)
    assert runner.poll(0.0, "x") == (None, "waiting for camera frames")
    feed(obs, 1.0)
    chunk, why = runner.poll(1.0, "x")
    assert why == "" and chunk.stamp == 1.0
    assert runner.poll(1.01, "x")[1] == "same frame"  # never twice from one frame, even when due
    runner.chunk_out(chunk, at=1.0)  # zero latency: the next one is due 8 actions later
    feed(obs, 1.3)
    assert runner.poll(1.3, "x") == (None, "not due")
    feed(obs, 1.0 + 8 * ACTION_DT)
    chunk2, _ = runner.poll(1.0 + 8 * ACTION_DT, "x")
    assert chunk2.stamp == pytest.approx(1.0 + 8 * ACTION_DT)
    assert [c[1] for c in policy.calls] == [7, 8]  # seed + chunk index


def test_stale_frames_and_joint_states_block_inference():
    policy = CountingPolicy()
    obs = ObservationAssembler(2, max_age_s=0.5)
    runner = PolicyRunner(policy, ChunkScheduler(ACTION_DT, 8, 16), obs)
    obs.set_frame(0, 1.0, np.zeros((4, 4, 3), np.uint8))
    obs.set_arm(np.zeros(7), 1.0)
    obs.set_hand(np.zeros(6), 1.0)
    assert runner.poll(1.0, "x")[1] == "waiting for camera frames"  # the second view is missing
    obs.set_frame(1, 0.3, np.zeros((4, 4, 3), np.uint8))
    assert "camera frame is 0.700 s old" in runner.poll(1.0, "x")[1]
    obs.set_frame(1, 1.0, np.zeros((4, 4, 3), np.uint8))
    assert runner.poll(1.6, "x")[1].startswith("newest camera frame")
    feed(obs, 1.6, now=1.0, views=2)  # fresh frames, joint states from 0.6 s ago
    assert runner.poll(1.6, "x")[1] == "joint states are stale"
    feed(obs, 1.6, views=2)
    chunk, why = runner.poll(1.6, "x")
    assert why == "" and policy.calls[-1][2] == 2  # both views go to the policy


def test_restart_makes_the_next_chunk_due_at_once():
    sched = ChunkScheduler(ACTION_DT, 8, 16)
    sched.computing(5.0)
    sched.chunk_out(5.0, 5.05)
    assert not sched.due(5.1)
    sched.reset()
    assert sched.due(5.1)


def test_the_inference_loop_survives_an_error_outside_predict():
    """A bug in a callback (here the publish hook raises once) is reported and the loop carries on: the thread
    must never die while the node still reports "running"."""
    import threading
    import time

    from jala_runtime.loop import InferenceLoop

    policy = CountingPolicy()
    obs = ObservationAssembler(1, max_age_s=5.0)
    runner = PolicyRunner(policy, ChunkScheduler(ACTION_DT, 1, 16), obs)
    published, errors = [], []
    clock = [1.0]

    def publish(chunk):
        if not errors:
            errors.append("first")
            raise RuntimeError("a bug in publish")
        published.append(chunk.stamp)
        return True

    loop = InferenceLoop(runner, clock=lambda: clock[0], running=lambda: True, instruction=lambda: "x",
                         publish=publish, log=lambda level, m: None, on_error=errors.append)
    loop.start()
    try:
        for k in range(40):
            clock[0] = 1.0 + k * 0.1
            feed(obs, clock[0])
            loop.wake()
            time.sleep(0.02)
            if published:
                break
        assert published, "the loop stopped after the error"
        assert any("unexpected error" in e for e in errors)
    finally:
        loop.close()
    assert not any(t.name == "policy-inference" and t.is_alive() for t in threading.enumerate())


def test_the_joint_states_are_taken_at_the_frames_capture_time():
    """The policy learnt from frames and joint states recorded together, and its chunk is anchored at the frame's
    stamp: a frame 100 ms old goes with the joint states of 100 ms ago (interpolated between 200 Hz samples), not
    the newest ones, which would shift every waypoint 100 ms early."""
    obs = ObservationAssembler(1, max_age_s=0.5)
    velocity = np.array([1.0, -0.5, 0, 0, 0, 0, 0])  # rad/s
    for k in range(201):  # 1 s of arm states at 200 Hz along a ramp; the hand closes at 500 /s
        t = 10.0 + k * 0.005
        obs.set_arm(velocity * (t - 10.0), t)
        obs.set_hand(np.full(6, 500.0 * (t - 10.0)), t)
    obs.set_frame(0, 10.9025, np.zeros((4, 4, 3), np.uint8))  # between two state samples, 97.5 ms before the last
    o, why = obs.assemble(11.0, "x")
    assert why == "" and o.stamp == 10.9025
    np.testing.assert_allclose(o.proprio[:7], velocity * 0.9025, atol=1e-9)
    np.testing.assert_allclose(o.proprio[7:], 500.0 * 0.9025, atol=1e-6)
    obs.set_frame(0, 11.02, np.zeros((4, 4, 3), np.uint8))  # newer than every joint state: the newest
    np.testing.assert_allclose(obs.assemble(11.02, "x")[0].proprio[:7], velocity * 1.0, atol=1e-9)
    obs.set_arm(np.zeros(7), 3.0)  # a restarted clock: the history starts over
    obs.set_hand(np.zeros(6), 3.0)
    obs.set_frame(0, 3.0, np.zeros((4, 4, 3), np.uint8))
    np.testing.assert_allclose(obs.assemble(3.0, "x")[0].proprio, 0.0)


def test_execute_steps_come_from_the_request_else_the_checkpoint_else_the_runtime_default():
    """A node parameter / evaluation flag (> 0) wins; else a checkpoint's inference.execute_steps (a JalaPolicy's
    config, or an evaluation wrapper's attribute); else embodiment.EXECUTE_STEPS."""
    from types import SimpleNamespace

    from embodiment import EXECUTE_STEPS
    from jala_runtime.scheduler import execute_steps_for

    def checkpoint(n):
        return SimpleNamespace(config=SimpleNamespace(inference=SimpleNamespace(execute_steps=n)))

    assert execute_steps_for(CountingPolicy()) == EXECUTE_STEPS
    assert execute_steps_for(checkpoint(None)) == EXECUTE_STEPS
    assert execute_steps_for(checkpoint(12)) == 12
    assert execute_steps_for(checkpoint(12), 4) == 4
    assert execute_steps_for(checkpoint(12), 0) == 12  # the node parameter's "not given"
    assert execute_steps_for(SimpleNamespace(execute_steps=6), None) == 6
    assert execute_steps_for(CountingPolicy(), None, default=10) == 10
