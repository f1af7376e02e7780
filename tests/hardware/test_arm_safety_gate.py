"""FR3 safety gate (hardware/franka/safety.py ArmSafetyGate) on its own: joint position and velocity limits, step
sizes, the Cartesian workspace box, malformed chunks, and the limits/config validation. Pure numpy: no franky, no
franky-sim, no robot, so these run (and must pass) wherever the project's tests run. The gate in front of the
driven arm (refused chunks never reach franky-sim) is tested in tests/hardware/test_franka_arm.py."""
from __future__ import annotations


import numpy as np
import pytest

from embodiment import ARM_JOINT_NAMES, CHUNK_JOINT_NAMES
from hardware.franka import (FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN, ArmSafetyGate, ArmSafetyLimits, FrankaArmConfig,
                             fr3_forward_kinematics)
from hardware.interfaces import SafetyViolation, arm_waypoints
from jala_runtime.chunk import ChunkError, TimedChunk
from tests.helpers import run_python

pytestmark = pytest.mark.safety

DT = 1.0 / 15.0  # the policy's action rate
N = 16  # steps per chunk
TIMES = DT * np.arange(1, N + 1)
HOME = np.array([0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])  # franky-sim's initial pose (DEFAULT_INITIAL_JOINT_POS)


STAMP = 1000.0  # the chunks' clock: the time of the observation they were computed from


def smooth_move(q_start: np.ndarray, delta, times=TIMES) -> TimedChunk:
    """From q_start to q_start + delta along a smoothstep profile (rest to rest), ``times`` after STAMP."""
    s = times / times[-1]
    s = 3 * s**2 - 2 * s**3
    return TimedChunk.from_relative(STAMP, times, q_start + np.outer(s, np.asarray(delta, dtype=float)),
                                    ARM_JOINT_NAMES)


def test_the_gate_imports_and_works_without_franky():
    """hardware.franka and its safety gate load with franky and franky-sim unimportable (as on a machine without
    the robot stack), and do not import them behind the caller's back."""
    code = (
        "import sys\n"
        "for name in ('franky', 'franky_sim'):\n"
        "    sys.modules[name] = None  # import of these now raises ImportError\n"
        "import numpy as np\n"
        "import hardware.franka\n"
        "from hardware.franka.safety import ArmSafetyGate\n"
        "from hardware.interfaces import SafetyViolation\n"
        "q = np.array([0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])\n"
        "ArmSafetyGate().check([0.5], [q], q)\n"
        "try:\n"
        "    ArmSafetyGate().check([0.5], [q + 0.3], q)\n"
        "except SafetyViolation as exc:\n"
        "    print('refused:', exc)\n"
        "assert sys.modules['franky'] is None and sys.modules['franky_sim'] is None\n"
    )
    proc = run_python(code)
    assert "refused: measured position -> waypoint 0" in proc.stdout


@pytest.fixture
def gate():
    return ArmSafetyGate(ArmSafetyLimits())


def test_gate_passes_a_valid_chunk_unchanged(gate):
    chunk = smooth_move(HOME, [0.1, -0.1, 0.1, 0.1, -0.1, 0.1, 0.1])
    rel, pos = arm_waypoints(chunk, STAMP)
    np.testing.assert_allclose(rel, TIMES, rtol=0, atol=1e-9)
    t, p = gate.check(rel, pos, HOME)
    assert np.array_equal(t, rel) and np.array_equal(p, chunk.positions)  # no clipping


def test_arm_waypoints_feed_the_gate_from_a_full_action_chunk(gate):
    """A policy chunk (13 columns: arm then hand, absolute times) reaches the gate as the FR3 columns with times
    relative to now; waypoints already due are the caller's to drop (``upcoming``), never silently shifted."""
    arm = smooth_move(HOME, [0.1, 0.0, -0.1, 0.0, 0.1, 0.0, 0.1]).positions
    hand = np.full((N, 6), 500.0)
    chunk = TimedChunk.at_rate(np.hstack([arm, hand]), STAMP, DT, CHUNK_JOINT_NAMES)
    now = STAMP + 0.01
    rel, pos = arm_waypoints(chunk, now)
    assert pos.shape == (N, 7) and np.array_equal(pos, arm)
    np.testing.assert_allclose(rel, TIMES - 0.01, atol=1e-9)
    gate.check(rel, pos, HOME)
    # reordered columns are put back into FR3 joint order
    swapped = TimedChunk(chunk.times, np.hstack([hand, arm[:, ::-1]]),
                         tuple(CHUNK_JOINT_NAMES[7:]) + tuple(ARM_JOINT_NAMES[::-1]), STAMP)
    assert np.array_equal(arm_waypoints(swapped, now)[1], arm)
    later = STAMP + 1.5 * DT  # waypoint 0 is past: the chunk must be trimmed first
    with pytest.raises(ChunkError, match="in the past"):
        arm_waypoints(chunk, later)
    rest, dropped = chunk.upcoming(later)
    assert dropped == 1 and arm_waypoints(rest, later)[1].shape == (N - 1, 7)
    with pytest.raises(ChunkError, match="lacks joints"):
        arm_waypoints(TimedChunk(chunk.times, hand, CHUNK_JOINT_NAMES[7:], STAMP), now)


def test_fr3_limits_are_the_embodiments():
    import embodiment

    assert (FR3_Q_MIN, FR3_Q_MAX, FR3_DQ_MAX) == (embodiment.FR3_Q_MIN, embodiment.FR3_Q_MAX, embodiment.FR3_DQ_MAX)
    lim = ArmSafetyLimits()
    assert (lim.q_min, lim.q_max, lim.dq_max) == (embodiment.FR3_Q_MIN, embodiment.FR3_Q_MAX, embodiment.FR3_DQ_MAX)


@pytest.mark.parametrize("joint", range(7))
@pytest.mark.parametrize("side", ["min", "max"])
def test_gate_position_limits_every_joint(joint, side):
    lim = ArmSafetyLimits(position_margin=0.0, max_step=10.0, max_first_step=10.0, dq_max=(100.0,) * 7)
    gate = ArmSafetyGate(lim)
    bound = (FR3_Q_MIN if side == "min" else FR3_Q_MAX)[joint]
    q = np.array([(a + b) / 2 for a, b in zip(FR3_Q_MIN, FR3_Q_MAX)])
    inside, outside = q.copy(), q.copy()
    eps = 1e-3 if side == "max" else -1e-3
    inside[joint], outside[joint] = bound - eps, bound + eps
    gate.check([1.0], [inside], q)  # just inside: allowed
    word = "lower" if side == "min" else "upper"
    with pytest.raises(SafetyViolation, match=rf"waypoint 0 .*joint {joint + 1} target .*{word} limit"):
        gate.check([1.0], [outside], q)


def test_gate_position_margin(gate):
    q = HOME.copy()
    target = HOME.copy()
    target[5] = FR3_Q_MIN[5] + 0.01  # inside the joint range but inside the 0.02 rad margin
    with pytest.raises(SafetyViolation, match="joint 6"):
        ArmSafetyGate(ArmSafetyLimits(max_first_step=10, max_step=10, dq_max=(100.0,) * 7)).check([2.0], [target], q)
    gate_no_margin = ArmSafetyGate(ArmSafetyLimits(position_margin=0.0, max_first_step=10, dq_max=(100.0,) * 7))
    gate_no_margin.check([2.0], [target], q)


@pytest.mark.parametrize("joint", range(7))
def test_gate_velocity_limit_every_joint(joint):
    gate = ArmSafetyGate(ArmSafetyLimits(max_step=10.0, max_first_step=10.0))
    q = HOME.copy()
    p = np.tile(q, (3, 1))
    t = np.array([0.1, 0.2, 0.3])
    p[2, joint] += FR3_DQ_MAX[joint] * 0.1 * 0.98  # 98 % of the limit between waypoints 1 and 2: fine
    gate.check(t, p, q)
    p[2, joint] = q[joint] + FR3_DQ_MAX[joint] * 0.1 * 1.05  # 105 %: refused
    with pytest.raises(SafetyViolation,
                       match=rf"waypoint 1 -> waypoint 2: joint {joint + 1} .* over the velocity limit"):
        gate.check(t, p, q)


def test_gate_velocity_scale_and_first_segment():
    gate = ArmSafetyGate(ArmSafetyLimits(velocity_scale=0.5))
    q = HOME.copy()
    p = q + np.array([[0.1, 0, 0, 0, 0, 0, 0]])  # 0.1 rad in 0.05 s = 2 rad/s > 0.5 * 2.62 from the measured q
    with pytest.raises(SafetyViolation, match="measured position -> waypoint 0: joint 1 .*1.310 rad/s"):
        gate.check([0.05], p, q)
    gate.check([0.1], p, q)  # 1 rad/s is fine


def test_gate_step_limits(gate):
    q = HOME.copy()
    p = np.tile(q, (3, 1)) + np.array([0.05, 0.1, 0.2])[:, None] * np.eye(7)[2]  # joint 3: steps .05 .05 .1
    t = np.array([1.0, 2.0, 3.0])  # slow: well inside the velocity limit
    with pytest.raises(SafetyViolation, match=r"waypoint 1 -> waypoint 2: joint 3 step \+0.1000 rad exceeds max_step"):
        ArmSafetyGate(ArmSafetyLimits(max_step=0.08)).check(t, p, q)
    ArmSafetyGate(ArmSafetyLimits(max_step=0.12)).check(t, p, q)
    far = q.copy()
    far[1] += 0.25
    with pytest.raises(SafetyViolation, match="measured position -> waypoint 0: joint 2 .*max_first_step"):
        gate.check([2.0], [far], q)  # 0.25 rad from where the arm is, even slowly


def test_gate_workspace_box():
    q = HOME.copy()
    flange = fr3_forward_kinematics(q)[:3, 3]
    box = dict(workspace_min=tuple(flange - 0.05), workspace_max=tuple(flange + 0.05))
    gate = ArmSafetyGate(ArmSafetyLimits(**box))
    gate.check([0.5], [q], q)
    moved = q.copy()
    moved[0] += 0.15  # joint 1 swings the flange sideways by ~0.08 m
    with pytest.raises(SafetyViolation, match=r"waypoint 0 .*flange y = .* outside the workspace"):
        gate.check([0.5], [moved], q)
    # TCP 0.2 m below the flange (along flange z, pointing down here): outside the box although the flange is in
    tcp = np.eye(4)
    tcp[2, 3] = 0.2
    gate_tcp = ArmSafetyGate(ArmSafetyLimits(**box, flange_to_tcp=tuple(tcp.ravel())))
    with pytest.raises(SafetyViolation, match=r"TCP z = .* outside the workspace"):
        gate_tcp.check([0.5], [q], q)


def test_gate_rejects_nan_inf_shape_and_times(gate):
    q = HOME.copy()
    p = np.tile(q, (2, 1))
    p[1, 6] = np.nan
    with pytest.raises(SafetyViolation, match="waypoint 1: joint 7 .*NaN"):
        gate.check([0.1, 0.2], p, q)
    p[1, 6] = np.inf
    with pytest.raises(SafetyViolation, match="NaN/inf"):
        gate.check([0.1, 0.2], p, q)
    with pytest.raises(SafetyViolation, match="measured joint positions"):
        gate.check([0.1], [q], np.full(7, np.nan))
    with pytest.raises(SafetyViolation, match=r"\(N, 7\)"):
        gate.check([0.1], [q[:6]], q)
    with pytest.raises(SafetyViolation, match="strictly increasing"):
        gate.check([0.2, 0.1], [q, q], q)
    with pytest.raises(SafetyViolation, match="max_horizon_s"):
        gate.check([6.0], [q], q)
    with pytest.raises(ValueError, match="NaN"):  # the chunk type refuses NaN on construction as well
        TimedChunk.from_relative(STAMP, np.array([0.1]), np.full((1, 7), np.nan), ARM_JOINT_NAMES)


def test_limits_and_config_validation():
    with pytest.raises(ValueError, match="q_min"):
        ArmSafetyLimits(q_min=(0.0,) * 6)
    with pytest.raises(ValueError, match="velocity_scale"):
        ArmSafetyLimits(velocity_scale=1.5)
    with pytest.raises(ValueError, match="both workspace"):
        ArmSafetyLimits(workspace_min=(0, 0, 0))
    with pytest.raises(ValueError, match="realtime"):
        FrankaArmConfig(realtime="sometimes")
    with pytest.raises(ValueError, match="relative_dynamics_factor"):
        FrankaArmConfig(relative_dynamics_factor=0)
    with pytest.raises(ValueError, match="collision_torque_thresholds"):
        FrankaArmConfig(collision_torque_thresholds=(20.0,) * 6)
    cfg = FrankaArmConfig(collision_force_thresholds=25, safety={"velocity_scale": 0.5})
    assert cfg.collision_force_thresholds == (25.0,) * 6 and cfg.safety.velocity_scale == 0.5
