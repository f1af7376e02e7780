"""Following chunks without ROS: the refusal rules, the hold latch on both devices, the hand's schedule."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from embodiment import ACTION_DT, CHUNK_JOINT_NAMES, HAND_JOINT_NAMES
from jala_runtime.chunk import TimedChunk
from jala_runtime.executor import ChunkExecutor, FollowerConfig, HandFollower, HandTicker
from tests.runtime.fakes import RecordingArm, RecordingHand

pytestmark = pytest.mark.safety


def chunk(stamp: float, hand=500.0, n: int = 16, names=CHUNK_JOINT_NAMES) -> TimedChunk:
    pos = np.zeros((n, 13))
    pos[:, 7:] = hand if np.isscalar(hand) else np.asarray(hand)[:, None]
    return TimedChunk.at_rate(pos, stamp, ACTION_DT, names)


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def make(events=None, **cfg):
    clock = Clock()
    arm, hand = RecordingArm(), RecordingHand()
    config = FollowerConfig(**({"stall_hold_s": math.inf} | cfg))
    ex = ChunkExecutor(arm, hand, config, config, on_event=(lambda lvl, m: events.append((lvl, m)))
                       if events is not None else None, clock=clock)
    return ex, arm, hand, clock


def test_a_stale_chunk_is_skipped_without_a_hold():
    events = []
    ex, arm, hand, clock = make(events, max_chunk_age_s=1.0)
    assert not ex.submit(chunk(98.5), now=100.0)  # its observation is 1.5 s old
    assert arm.executed == [] and not ex.held and ex.arm.chunks_refused == 1
    assert any("stale: its observation is 1.500 s old" in m for _, m in events)
    assert ex.submit(chunk(99.9), now=100.0) and len(arm.executed) == 1


def test_waypoints_already_due_are_dropped_and_the_rest_run_at_their_times():
    ex, arm, _, _ = make(min_lead_s=0.03)
    c = chunk(100.0)
    assert ex.submit(c, now=100.0 + 3 * ACTION_DT + 0.01)  # 3 waypoints past, the 4th is 0.057 s ahead
    rel, q = arm.executed[-1]
    assert ex.arm.waypoints_dropped == 3 and len(rel) == 13
    np.testing.assert_allclose(rel, c.times[3:] - (100.0 + 3 * ACTION_DT + 0.01))


def test_hand_over_a_new_chunk_replaces_the_hand_schedule_at_its_times():
    ex, _, hand, clock = make()
    first = chunk(100.0, hand=np.full(16, 300.0))
    ex.submit(first, now=100.0)
    for k in range(8):  # the first chunk's first 8 actions
        ex.tick(100.0 + k * ACTION_DT)
    second = chunk(100.0 + 8 * ACTION_DT, hand=np.full(16, 700.0))
    ex.submit(second, now=100.0 + 8 * ACTION_DT)
    for k in range(8, 12):
        ex.tick(100.0 + k * ACTION_DT)
    sent = [a[0] for a in hand.sent]
    assert sent == [300.0] * 8 + [700.0] * 4  # one target per action step, the new chunk from its first action


def test_hand_target_i_is_commanded_during_its_interval():
    hand = RecordingHand()
    f = HandFollower(hand, FollowerConfig(stall_hold_s=math.inf, schedule_tolerance_s=0.0))
    c = TimedChunk(np.array([1.15, 1.30, 1.45]), np.array([[900.0] * 6, [700.0] * 6, [500.0] * 6]),
                   HAND_JOINT_NAMES, 1.0)
    assert f.submit(c, now=1.0)
    for now in (1.0, 1.05, 1.15, 1.2, 1.3, 1.31, 1.45, 1.5):
        f.tick(now)
    assert [a[0] for a in hand.sent] == [900.0, 700.0, 500.0]  # each once, at its interval's start
    assert f.tick(1.6) is None  # past the last waypoint: nothing scheduled, the last target stays


def test_a_hold_stops_both_devices_and_refuses_until_recover():
    ex, arm, hand, clock = make()
    ex.submit(chunk(100.0), now=100.0)
    ex.tick(100.0)
    sent = len(hand.sent)
    clock.t = 100.2
    ex.hold("estop")
    assert arm.holds == 1 and hand.holds == 1 and ex.arm.hold_stamp == 100.2
    ex.tick(100.0 + 5 * ACTION_DT)
    assert len(hand.sent) == sent  # the hand schedule was cleared: nothing more is commanded
    assert not ex.submit(chunk(100.25), now=100.3) and len(arm.executed) == 1
    clock.t = 101.0
    assert ex.recover() == (True, "recovered")
    assert not ex.submit(chunk(100.9), now=101.05)  # computed before the recover: never runs after it
    assert ex.submit(chunk(101.01), now=101.05)


def test_an_unsafe_or_malformed_chunk_holds_both_devices():
    events = []
    ex, arm, hand, _ = make(events)
    arm.refuse = "joint 4 above its limit"
    assert not ex.submit(chunk(100.0), now=100.0)
    assert ex.held and arm.holds == 1 and hand.holds == 1 and "joint 4 above its limit" in ex.fault
    assert any(lvl == "error" for lvl, _ in events)
    ex2, arm2, hand2, _ = make()
    assert not ex2.submit(chunk(100.0, hand=1200.0), now=100.0)  # hand outside 0..1000
    assert "outside 0..1000" in ex2.fault and arm2.holds == 1 and hand2.holds == 1
    ex3, *_ = make()
    names = list(CHUNK_JOINT_NAMES)
    names[9] = "inspire_mid"
    assert not ex3.submit(chunk(100.0, names=tuple(names)), now=100.0)
    assert "lacks joints ['inspire_middle']" in ex3.fault and ex3.held


def test_each_chunk_not_run_is_counted_with_its_reason_and_timing_skips_apart():
    ex, arm, _, _ = make(max_chunk_age_s=1.5)
    assert not ex.submit(chunk(98.0), now=100.0)  # stale
    assert ex.arm.last_refusal == "skipped: stale: its observation is 2.000 s old (max_chunk_age_s 1.5)"
    assert not ex.submit(chunk(100.0), now=100.0 + 17 * ACTION_DT)  # not stale, but all 16 waypoints are due
    a = ex.arm
    assert (a.chunks_refused, a.chunks_skipped_late) == (2, 2) and not ex.held
    assert a.last_refusal.startswith("skipped: chunk arrived after its last waypoint")
    arm.refuse = "step of 0.150 rad on joint 2 above max_step 0.1"
    assert not ex.submit(chunk(100.0), now=100.0)  # the gate: not a timing skip, and it holds
    assert (a.chunks_refused, a.chunks_skipped_late) == (3, 2) and ex.held
    assert "safety gate refused chunk: step of 0.150 rad" in a.last_refusal
    assert not ex.submit(chunk(100.1), now=100.1)  # refused while held, and said so
    assert (a.chunks_refused, a.chunks_skipped_late) == (4, 2) and a.last_refusal.startswith("held (safety gate")


def test_a_stalled_process_holds_before_anything_queued_runs():
    ex, arm, hand, _ = make(stall_hold_s=0.05)
    ex.arm.check_stall()  # the guard ticks ...
    time.sleep(0.1)  # ... then the process stands still for longer than stall_hold_s
    assert not ex.arm.submit(chunk(100.0), now=100.0)
    assert ex.arm.held and "arm node stalled" in ex.arm.hold_reason and arm.executed == []


def test_the_stall_guard_counts_from_when_the_device_is_attached():
    """A robot node makes its follower, then connects the device (seconds of imports and handshake that can keep
    the watch thread from ticking): that wait is not a stall of anything that could move."""
    follower = HandFollower(None, FollowerConfig(stall_hold_s=0.05))
    follower.check_stall()
    time.sleep(0.1)  # connecting
    follower.attach(RecordingHand())
    assert not follower.check_stall() and not follower.held
    time.sleep(0.1)  # a stall once attached still holds
    assert follower.check_stall() and follower.held and "hand node stalled" in follower.hold_reason


def test_a_slow_device_call_is_not_taken_for_a_stall():
    """The watch thread keeps ticking while a chunk's device call holds the follower's lock for longer than
    stall_hold_s (the FR3's hold waiting for the arm to come to rest): the process did not stand still, no hold."""
    ex, arm, _, _ = make(stall_hold_s=0.05)
    slow_execute = arm.execute

    def execute(chunk, now):
        time.sleep(0.2)
        slow_execute(chunk, now)

    arm.execute = execute
    stop = threading.Event()
    held_by_guard = []

    def watch():
        while not stop.wait(0.005):
            held_by_guard.append(ex.arm.check_stall())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert ex.arm.submit(chunk(100.0), now=100.0)
        time.sleep(0.05)
    finally:
        stop.set()
        watcher.join()
    assert len(held_by_guard) > 20 and not any(held_by_guard) and not ex.arm.held, ex.arm.hold_reason
    assert len(arm.executed) == 1


def test_the_hand_ticker_follows_the_schedule_on_the_simulated_hand():
    """The thread the hand node runs, on the simulated world's hand (no physics stepping)."""
    pytest.importorskip("hardware.sim.world")
    from hardware.sim.world import SimWorld, SimWorldConfig

    world = SimWorld(SimWorldConfig(task="water_plant", render_width=32, render_height=24))
    try:
        f = HandFollower(world.hand, FollowerConfig(stall_hold_s=math.inf))
        ticker = HandTicker(f, clock=time.monotonic)
        t0 = time.monotonic()
        c = TimedChunk(t0 + np.array([0.15, 0.30, 0.45]), np.array([[900.0] * 6, [700.0] * 6, [500.0] * 6]),
                       HAND_JOINT_NAMES, t0)
        assert f.submit(c, now=t0)
        seen = []
        while time.monotonic() < t0 + 0.6:
            seen.append((time.monotonic() - t0, float(world.hand_ctrl.target[0])))
            time.sleep(0.005)
        ticker.close()
    finally:
        world.close()

    def target_at(t):
        return next(v for tt, v in seen if tt >= t)

    assert target_at(0.05) == 900.0 and target_at(0.22) == 700.0 and target_at(0.38) == 500.0
    assert seen[-1][1] == 500.0  # the last target stays commanded
