"""ArmIK (mink on the FR3 + hand model): reaching, joint limits, the workspace clip and the step limit that keeps
every teleop command inside the FR3 safety gate."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from embodiment import ACTION_DT, FR3_Q_MAX, FR3_Q_MIN, READY_Q
from hardware.franka.safety import ArmSafetyGate
from teleop.arm_ik import ArmIK, ArmIKConfig, rotation_exp, rotation_log

pytestmark = pytest.mark.safety

READY = np.asarray(READY_Q)


@pytest.fixture(scope="module")
def ik():
    return ArmIK()


def _converge(ik, q, target, n=60):
    for _ in range(n):
        q_next = ik.solve(q, target, ACTION_DT)
        assert np.all(np.abs(q_next - q) <= ik.config.max_step + 1e-9)
        assert np.all(q_next >= ik.q_low - 1e-9) and np.all(q_next <= ik.q_high + 1e-9)
        q = q_next
    return q


def test_fk_matches_the_simulated_hand_base_and_franka_kinematics(ik):
    from hardware.franka.kinematics import fr3_flange_poses

    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(ik.q_low, ik.q_high)
        np.testing.assert_allclose(ik.fk(q), fr3_flange_poses(q[None])[0], atol=1e-6)


@pytest.mark.parametrize("offset,rot", [
    ((0.10, 0.15, -0.10), (0.0, 0.0, 0.0)),
    ((-0.05, -0.20, -0.25), (0.0, 0.0, 0.6)),
    ((0.15, 0.0, -0.30), (0.3, -0.2, 0.0)),
])
def test_reaches_reachable_targets_within_joint_limits(ik, offset, rot):
    t0 = ik.fk(READY)
    target = t0.copy()
    target[:3, 3] += offset
    target[:3, :3] = rotation_exp(np.asarray(rot)) @ t0[:3, :3]
    q = _converge(ik, READY.copy(), target)
    reached = ik.fk(q)
    assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 2e-3
    assert np.linalg.norm(rotation_log(target[:3, :3] @ reached[:3, :3].T)) < 1e-2
    # inside the FR3 datasheet limits by the configured margin (more than the gate's 0.02 rad)
    assert np.all(q >= np.asarray(FR3_Q_MIN) + ik.config.joint_margin - 1e-9)
    assert np.all(q <= np.asarray(FR3_Q_MAX) - ik.config.joint_margin + 1e-9)


def test_unreachable_orientation_keeps_joint_limits(ik):
    target = ik.fk(READY)
    target[:3, :3] = rotation_exp(np.array([0.0, 0.0, 3.0])) @ target[:3, :3]  # joint 7 would have to leave its range
    target[:3, 3] = (0.3, 0.45, 0.3)
    _converge(ik, READY.copy(), target, n=80)  # asserts the range and the step on every command


def test_target_outside_the_workspace_is_clipped_onto_the_box(ik, caplog):
    cfg = ik.config
    target = ik.fk(READY)
    target[:3, 3] = (0.45, 0.05, -0.40)  # below the table
    ik.workspace_clips = 0
    with caplog.at_level(logging.WARNING, logger="teleop.arm_ik"):
        res = ik.solve_target(READY, target)
        ik.solve_target(READY, target)
    assert res.workspace_clipped
    np.testing.assert_allclose(res.target[:3, 3], (0.45, 0.05, cfg.workspace_min[2]))
    np.testing.assert_allclose(res.target[:3, :3], target[:3, :3], atol=1e-9)  # orientation kept
    assert ik.workspace_clips == 2
    assert len([r for r in caplog.records if "workspace" in r.getMessage()]) == 1  # logged once
    q = _converge(ik, READY.copy(), target)
    p = ik.fk(q)[:3, 3]
    np.testing.assert_allclose(p, (0.45, 0.05, cfg.workspace_min[2]), atol=2e-3)  # ends on the box face
    # every axis: the clipped position lies on the box
    far = ik.fk(READY)
    far[:3, 3] = (2.0, -3.0, 5.0)
    res = ik.solve_target(READY, far)
    np.testing.assert_allclose(res.target[:3, 3], (cfg.workspace_max[0], cfg.workspace_min[1], cfg.workspace_max[2]))


def test_big_jump_is_step_limited_so_the_gate_accepts_it(ik):
    gate = ArmSafetyGate()
    target = ik.fk(READY)
    target[:3, 3] += (0.25, -0.3, -0.3)
    target[:3, :3] = rotation_exp(np.array([0.0, 0.0, 1.5])) @ target[:3, :3]
    res = ik.solve_target(READY, target)
    assert np.max(np.abs(res.q_solution - READY)) > 0.3  # raw, the gate would refuse it
    with pytest.raises(Exception):
        gate.check([ACTION_DT], res.q_solution[None], READY)
    assert res.step_clipped
    assert np.max(np.abs(res.q - READY)) <= ik.config.max_step + 1e-9
    q = READY.copy()
    for _ in range(40):
        q_next = ik.solve(q, target)
        gate.check([ACTION_DT], q_next[None], q)  # raises SafetyViolation if refused
        q = q_next


def test_joint_targets_are_clipped_to_range_workspace_and_step(ik):
    q_bad = READY + np.array([0, 0, 0, 0, 0, 0, 3.0])  # joint 7 above its upper limit (the hand base stays put)
    goal = ik.joint_goal(q_bad)
    assert goal[6] == pytest.approx(ik.q_high[6])
    np.testing.assert_allclose(goal[:6], READY[:6])
    q_low = np.array([0.0, 1.6, 0.0, -0.8, 0.0, 1.8, 0.785])  # hand base below the table
    assert ik.fk(q_low)[2, 3] < ik.config.workspace_min[2]
    goal = ik.joint_goal(q_low)
    assert ik.in_workspace(ik.fk(goal)[:3, 3], tol=3e-3)
    cmd = ik.joint_target(READY, q_low)
    assert np.max(np.abs(cmd - READY)) <= ik.config.max_step + 1e-9


def test_config_refuses_steps_the_gate_would_refuse():
    with pytest.raises(ValueError):
        ArmIKConfig(max_step=0.15)
    with pytest.raises(ValueError):
        ArmIKConfig(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))
