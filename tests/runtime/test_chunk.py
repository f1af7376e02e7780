"""TimedChunk: the one chunk type from predict to the drivers."""
from __future__ import annotations

import numpy as np
import pytest

from embodiment import ACTION_DT, ARM_JOINT_NAMES, CHUNK_JOINT_NAMES, HAND_JOINT_NAMES
from hardware.interfaces import arm_waypoints
from jala_runtime.chunk import ChunkError, TimedChunk


def chunk(stamp=100.0, n=16):
    return TimedChunk.at_rate(np.arange(n * 13, dtype=float).reshape(n, 13), stamp, ACTION_DT)


def test_policy_chunk_times_are_absolute_from_the_observation_stamp():
    c = chunk()
    np.testing.assert_allclose(c.times, 100.0 + ACTION_DT * np.arange(1, 17))
    np.testing.assert_allclose(c.time_from_start, ACTION_DT * np.arange(1, 17))
    assert c.joint_names == CHUNK_JOINT_NAMES and c.stamp == 100.0


def test_validation_names_the_bad_value():
    pos = np.zeros((16, 13))
    pos[3, 8] = np.nan
    with pytest.raises(ChunkError, match=r"waypoint 3 joint inspire_ring"):
        TimedChunk.at_rate(pos, 100.0, ACTION_DT)
    with pytest.raises(ChunkError, match="increasing"):
        TimedChunk.from_relative(100.0, ACTION_DT * np.arange(16, 0, -1), np.zeros((16, 13)), CHUNK_JOINT_NAMES)
    with pytest.raises(ChunkError, match=">= 0"):
        TimedChunk.from_relative(100.0, [-0.1, 0.1], np.zeros((2, 13)), CHUNK_JOINT_NAMES)
    with pytest.raises(ChunkError, match="duplicate"):
        TimedChunk.at_rate(np.zeros((2, 2)), 1.0, ACTION_DT, ("a", "a"))
    with pytest.raises(ChunkError, match="lacks joints"):
        TimedChunk.at_rate(np.zeros((2, 2)), 1.0, ACTION_DT, ("a", "b")).select(("fr3_joint1",))


def test_select_keeps_times_and_stamp_and_reorders_columns():
    c = chunk()
    hand = c.select(HAND_JOINT_NAMES)
    assert hand.joint_names == HAND_JOINT_NAMES and hand.stamp == c.stamp
    np.testing.assert_array_equal(hand.times, c.times)
    np.testing.assert_array_equal(hand.positions, c.positions[:, 7:])
    swapped = c.select(("fr3_joint2", "fr3_joint1"))
    np.testing.assert_array_equal(swapped.positions, c.positions[:, [1, 0]])


def test_past_waypoints_are_dropped_and_the_rest_made_relative_for_the_arm():
    c = chunk()
    now = 100.0 + 0.2  # waypoints at 0.067, 0.133 and 0.2 (rounded: 0.19999) are due
    ahead, dropped = c.upcoming(now)
    assert dropped == 3 and ahead.horizon == 13
    np.testing.assert_array_equal(ahead.positions, c.positions[3:])
    ahead, dropped = c.upcoming(now, min_lead=0.07)  # 0.2667 is only 0.0667 ahead: dropped too
    assert dropped == 4
    assert c.upcoming(100.0 + 2.0) == (None, 16)
    rel, q = arm_waypoints(c.upcoming(now)[0], now)
    np.testing.assert_allclose(rel, ACTION_DT * np.arange(4, 17) - 0.2)
    np.testing.assert_array_equal(q, c.positions[3:, :7])
    with pytest.raises(ChunkError, match="in the past"):
        arm_waypoints(c, now)  # drivers run only what lies ahead
    assert ARM_JOINT_NAMES == c.joint_names[:7]
