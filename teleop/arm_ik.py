"""Wrist pose target -> FR3 joint targets, by differential IK with ``mink`` on the FR3 + hand MuJoCo model.

``ArmIK.solve(q_now, target_pose, dt)`` gives the joint targets of the next teleop command (one ``dt`` ahead): a
frame task on the hand base (the frame ``OperatorSample.wrist_pose`` targets, robot base frame = MuJoCo world
frame), a light posture task toward the configured rest posture (``READY_Q``), the FR3 datasheet joint limits
shrunk by ``joint_margin``, and the FR3 joint speed limits, solved as a QP (``mink.solve_ik``) and iterated
from ``q_now`` until the pose is reached (or ``max_iters``).

The documented rule for commands that leave the workspace or exceed limits (nothing is ever sent raw):
1. Workspace: the TARGET POSITION (hand base origin, base frame, metres) is CLIPPED to the box
   ``[workspace_min, workspace_max]`` before the IK; the orientation is kept. The first clip is logged (warning),
   later ones are only counted (``workspace_clips``).
2. Joint limits: the IK keeps every joint inside the FR3 limits shrunk by ``joint_margin`` (0.05 rad by default,
   more than the safety gate's 0.02 rad margin); the result is clipped to that range as well.
3. Step: the joint step of each command (from the measured ``q_now``, and between consecutive waypoints of a
   chunk) is SCALED DOWN UNIFORMLY (the joint-space direction is kept) so that no joint moves more than
   ``min(max_step, velocity_scale * FR3_DQ_MAX * dt)``. ``max_step`` defaults to 0.08 rad, below the gate's
   0.1 rad between waypoints and 0.2 rad from the measured position, and 0.08 rad per 1/15 s is 1.2 rad/s, below
   every FR3 joint's speed limit: a teleop chunk built from these steps passes the FR3 safety gate by design.
4. Anything the gate still refuses (it never clips) is not executed and holds the robot, exactly as for a policy
   chunk (``jala_runtime.executor``).
Direct joint targets (``OperatorSample.arm_q``, the scripted expert) go through ``joint_goal`` / ``joint_target``:
rules 2 and 3, and rule 1 through forward kinematics (a joint target whose hand base lies outside the box is
replaced by the IK solution of its pose clipped to the box).
"""
from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass

import numpy as np

import hardware.sim  # noqa: F401  (first: it picks MuJoCo's rendering backend before mujoco is imported)
import mink  # noqa: E402
import mujoco  # noqa: E402

from embodiment import ACTION_DT, ARM_DOF, ARM_JOINT_NAMES, FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN, READY_Q

__all__ = ["ArmIK", "ArmIKConfig", "IKResult", "fr3_hand_model", "rotation_exp", "rotation_log"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- rotations
def rotation_log(r: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle) of the rotation matrix ``r``."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(r, dtype=np.float64).reshape(-1))
    v = np.zeros(3)
    mujoco.mju_quat2Vel(v, q, 1.0)
    return v


def rotation_exp(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``v``."""
    v = np.asarray(v, dtype=np.float64)
    th = float(np.linalg.norm(v))
    if th < 1e-12:
        return np.eye(3)
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, v / th, th)
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, q)
    return m.reshape(3, 3)


# ------------------------------------------------------------------------------------------- the model
@functools.lru_cache(maxsize=1)
def _fr3_hand_model_cached() -> mujoco.MjModel:
    from hardware.sim.scene import SceneSpec, build_scene_xml

    spec = mujoco.MjSpec.from_string(build_scene_xml(SceneSpec("water_plant", "seen", 64, 48, 0.002)))
    for b in list(spec.worldbody.bodies):  # keep the robot (body "base" holds fr3_link0)
        if b.name != "base":
            spec.delete(b)
    for el in list(spec.equalities) + list(spec.actuators) + list(spec.tendons) + list(spec.cameras):
        spec.delete(el)
    hand = spec.body("hand_base")
    for b in list(hand.bodies):  # fingers: they do not move the hand base or its sites
        spec.delete(b)

    def strip(body):
        for g in list(body.geoms):
            spec.delete(g)
        for child in body.bodies:
            strip(child)

    strip(spec.worldbody)  # kinematics only (the bodies keep their explicit inertials)
    for el in list(spec.meshes) + list(spec.textures) + list(spec.materials):
        spec.delete(el)
    return spec.compile()


def fr3_hand_model() -> mujoco.MjModel:
    """A kinematic model of the FR3 with the simulated hand's ``hand_base`` body and ``grasp_site`` (the simulated
    world's robot, without objects, fingers or geometry): a fresh copy, built once per process."""
    return copy.deepcopy(_fr3_hand_model_cached())


# ------------------------------------------------------------------------------------------- config
@dataclass
class ArmIKConfig:
    frame_name: str = "hand_base"  # the frame OperatorSample.wrist_pose targets
    frame_type: str = "body"  # "body" | "site" | "geom"
    # workspace box of the target position (base frame, metres): targets outside are clipped onto it
    workspace_min: tuple[float, float, float] = (0.15, -0.60, 0.05)
    workspace_max: tuple[float, float, float] = (0.85, 0.60, 0.90)
    position_cost: float = 1.0
    orientation_cost: float = 0.5
    posture_cost: float = 1e-2  # pull toward ``posture`` (resolves the FR3's redundancy)
    posture: tuple[float, ...] = READY_Q
    frame_lm_damping: float = 1.0  # Levenberg-Marquardt damping of the frame task (unreachable targets)
    damping: float = 1e-3  # mink.solve_ik damping (regularises every joint velocity)
    joint_margin: float = 0.05  # rad kept clear of the FR3 datasheet limits (the gate keeps 0.02)
    velocity_scale: float = 1.0  # share of FR3_DQ_MAX per command period
    max_step: float = 0.08  # rad per joint per command (the gate refuses > 0.1 between waypoints)
    max_iters: int = 20  # QP iterations per solve
    position_tol: float = 1e-3  # m: converged
    orientation_tol: float = 1e-2  # rad
    solver: str = "daqp"

    def __post_init__(self):
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(lo >= hi) or not np.all(np.isfinite(np.r_[lo, hi])):
            raise ValueError(f"workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max}")
        if not 0 < self.max_step <= 0.1:
            raise ValueError(f"max_step must be in (0, 0.1] rad (the FR3 gate's step limit), got {self.max_step}")
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        if not 0 <= self.joint_margin < 0.5:
            raise ValueError(f"joint_margin must be in [0, 0.5) rad, got {self.joint_margin}")
        if len(self.posture) != ARM_DOF:
            raise ValueError(f"posture needs {ARM_DOF} joint angles")
        if self.max_iters < 1:
            raise ValueError("max_iters must be >= 1")


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray  # (7,) the command (limited step from q_now)
    q_solution: np.ndarray  # (7,) the IK solution before the step limit
    target: np.ndarray  # (4, 4) the target after workspace clipping
    workspace_clipped: bool
    step_clipped: bool
    position_error: float  # m, of q_solution to the (clipped) target
    orientation_error: float  # rad
    iterations: int


class ArmIK:
    """FR3 IK with mink. ``model``: a MuJoCo model that contains the FR3 joints and the frame (a SimWorld's
    ``model`` works; it is copied, never modified); None builds ``fr3_hand_model()``."""

    def __init__(self, config: ArmIKConfig | None = None, model: mujoco.MjModel | None = None):
        self.config = cfg = config or ArmIKConfig()
        self.model = fr3_hand_model() if model is None else copy.deepcopy(model)
        m = self.model
        self.qadr = np.array([m.joint(j).qposadr[0] for j in ARM_JOINT_NAMES])
        self.dadr = np.array([m.joint(j).dofadr[0] for j in ARM_JOINT_NAMES])
        self.q_low = np.asarray(FR3_Q_MIN) + cfg.joint_margin
        self.q_high = np.asarray(FR3_Q_MAX) - cfg.joint_margin
        for i, j in enumerate(ARM_JOINT_NAMES):  # mink's ConfigurationLimit reads the model's joint ranges
            jid = m.joint(j).id
            m.jnt_range[jid] = (self.q_low[i], self.q_high[i])
            m.jnt_limited[jid] = 1
        self.ws_min = np.asarray(cfg.workspace_min, float)
        self.ws_max = np.asarray(cfg.workspace_max, float)
        self.dq_max = np.asarray(FR3_DQ_MAX) * cfg.velocity_scale
        self.configuration = mink.Configuration(m)
        self._q_full = m.qpos0.copy()
        self.frame_task = mink.FrameTask(cfg.frame_name, cfg.frame_type, position_cost=cfg.position_cost,
                                         orientation_cost=cfg.orientation_cost, lm_damping=cfg.frame_lm_damping)
        posture_cost = np.zeros(m.nv)
        posture_cost[self.dadr] = cfg.posture_cost
        self.posture_task = mink.PostureTask(m, cost=posture_cost)
        q_post = m.qpos0.copy()
        q_post[self.qadr] = np.clip(cfg.posture, self.q_low, self.q_high)
        self.posture_task.set_target(q_post)
        self.tasks = [self.frame_task, self.posture_task]
        self.limits = [mink.ConfigurationLimit(m),
                       mink.VelocityLimit(m, {j: float(v) for j, v in zip(ARM_JOINT_NAMES, self.dq_max)})]
        self._fk_data = mujoco.MjData(m)
        self.workspace_clips = 0
        self.step_clips = 0
        self.solver_failures = 0
        self.last: IKResult | None = None

    # ------------------------------------------------------------------------------------ kinematics
    def _full(self, q: np.ndarray) -> np.ndarray:
        full = self._q_full.copy()
        full[self.qadr] = q
        return full

    def fk(self, q) -> np.ndarray:
        """(4, 4) pose of the IK frame (hand base) in the robot base frame at joint angles ``q`` (7,)."""
        d = self._fk_data
        d.qpos[:] = self._full(np.asarray(q, dtype=np.float64))
        mujoco.mj_kinematics(self.model, d)
        t = np.eye(4)
        kind, name = self.config.frame_type, self.config.frame_name
        if kind == "body":
            i = self.model.body(name).id
            t[:3, :3], t[:3, 3] = d.xmat[i].reshape(3, 3), d.xpos[i]
        elif kind == "site":
            i = self.model.site(name).id
            t[:3, :3], t[:3, 3] = d.site_xmat[i].reshape(3, 3), d.site_xpos[i]
        else:
            i = self.model.geom(name).id
            t[:3, :3], t[:3, 3] = d.geom_xmat[i].reshape(3, 3), d.geom_xpos[i]
        return t

    def in_workspace(self, position, tol: float = 0.0) -> bool:
        p = np.asarray(position, dtype=np.float64)
        return bool(np.all(p >= self.ws_min - tol) and np.all(p <= self.ws_max + tol))

    def clip_to_workspace(self, pose: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the pose with its position clipped to the workspace box, whether it was clipped); rule 1."""
        pose = np.array(pose, dtype=np.float64)
        p = pose[:3, 3]
        clipped = np.clip(p, self.ws_min, self.ws_max)
        if np.array_equal(clipped, p):
            return pose, False
        self.workspace_clips += 1
        if self.workspace_clips == 1:
            log.warning("teleop target %s m is outside the workspace box [%s, %s]: clipped to %s (logged once per "
                        "ArmIK instance; its workspace_clips counts them)", np.round(p, 3).tolist(),
                        self.ws_min.tolist(), self.ws_max.tolist(), np.round(clipped, 3).tolist())
        pose[:3, 3] = clipped
        return pose, True

    # ------------------------------------------------------------------------------------ limits
    def step_limit(self, dt: float = ACTION_DT) -> np.ndarray:
        """Per-joint largest step of one command of ``dt`` seconds (rule 3)."""
        return np.minimum(self.config.max_step, self.dq_max * float(dt))

    def limit_step(self, q_from, q_to, dt: float = ACTION_DT) -> tuple[np.ndarray, bool]:
        """``q_to`` clipped into the joint range (rule 2), then the step from ``q_from`` scaled down uniformly so that
        no joint moves more than ``step_limit(dt)`` (rule 3). Returns (q, whether the step was scaled)."""
        q_from = np.asarray(q_from, dtype=np.float64)
        q_to = np.clip(np.asarray(q_to, dtype=np.float64), self.q_low, self.q_high)
        delta = q_to - q_from
        lim = self.step_limit(dt)
        ratio = float(np.max(np.abs(delta) / lim))
        if ratio <= 1.0:
            return q_to, False
        self.step_clips += 1
        # scaling the step keeps q inside the range whenever q_from is inside it; clip again for a q_from outside
        return np.clip(q_from + delta / ratio * (1.0 - 1e-9), self.q_low, self.q_high), True

    # ------------------------------------------------------------------------------------ IK
    def solve_target(self, q_now, target_pose, dt: float = ACTION_DT) -> IKResult:
        """Full IK toward ``target_pose`` (after workspace clipping) from ``q_now``: ``q_solution`` is the converged
        (or best after max_iters) joint solution, ``q`` the limited-step command toward it."""
        cfg = self.config
        q_now = np.asarray(q_now, dtype=np.float64).reshape(ARM_DOF)
        target = np.asarray(target_pose, dtype=np.float64)
        if target.shape != (4, 4) or not np.all(np.isfinite(target)):
            raise ValueError(f"target pose must be a finite (4, 4) matrix, got shape {target.shape}")
        target, ws_clipped = self.clip_to_workspace(target)
        target[:3, :3] = _orthonormal(target[:3, :3])
        self.frame_task.set_target(mink.SE3.from_matrix(target))
        conf = self.configuration
        q = np.clip(q_now, self.q_low + 1e-6, self.q_high - 1e-6)  # mink needs a start inside the limits
        conf.update(self._full(q))
        it = 0
        for it in range(1, cfg.max_iters + 1):
            try:
                v = mink.solve_ik(conf, self.tasks, dt, cfg.solver, damping=cfg.damping, limits=self.limits)
            except mink.NoSolutionFound:
                self.solver_failures += 1
                log.warning("teleop IK: the QP found no solution; keeping the current joint targets")
                break
            conf.integrate_inplace(v, dt)
            pe, oe = self._errors(conf.q[self.qadr], target)
            if pe < cfg.position_tol and oe < cfg.orientation_tol:
                break
        q_sol = np.clip(conf.q[self.qadr].copy(), self.q_low, self.q_high)
        pe, oe = self._errors(q_sol, target)
        q_cmd, step_clipped = self.limit_step(q_now, q_sol, dt)
        self.last = IKResult(q_cmd, q_sol, target, ws_clipped, step_clipped, pe, oe, it)
        return self.last

    def solve(self, q_now, target_pose, dt: float = ACTION_DT) -> np.ndarray:
        """(7,) joint targets for the next command toward ``target_pose`` ((4, 4), base frame) from the measured
        ``q_now`` (7,), ``dt`` seconds ahead: workspace-clipped, inside the joint range, step-limited."""
        return self.solve_target(q_now, target_pose, dt).q

    def joint_goal(self, q_target, dt: float = ACTION_DT) -> np.ndarray:
        """A direct joint target (the scripted expert) made acceptable, without the step limit: clipped into the
        joint range (rule 2); a target whose hand base lies outside the workspace box is replaced by the IK
        solution of its pose with the position clipped onto the box (rule 1)."""
        q_target = np.asarray(q_target, dtype=np.float64).reshape(ARM_DOF)
        if not np.all(np.isfinite(q_target)):
            raise ValueError(f"joint target is not finite: {q_target.tolist()}")
        q_target = np.clip(q_target, self.q_low, self.q_high)
        pose = self.fk(q_target)
        if not self.in_workspace(pose[:3, 3]):
            q_target = self.solve_target(q_target, pose, dt).q_solution  # clips the pose, solves from the target
        return q_target

    def joint_target(self, q_now, q_target, dt: float = ACTION_DT) -> np.ndarray:
        """(7,) the next command toward a direct joint target: ``joint_goal`` (rules 1, 2), then the step limit from
        the measured ``q_now`` (rule 3)."""
        return self.limit_step(q_now, self.joint_goal(q_target, dt), dt)[0]

    def _errors(self, q: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        t = self.fk(q)
        pe = float(np.linalg.norm(target[:3, 3] - t[:3, 3]))
        oe = float(np.linalg.norm(rotation_log(target[:3, :3] @ t[:3, :3].T)))
        return pe, oe


def _orthonormal(r: np.ndarray) -> np.ndarray:
    """The nearest rotation matrix (a target assembled from floats drifts off SO(3))."""
    u, _, vt = np.linalg.svd(r)
    m = u @ vt
    if np.linalg.det(m) < 0:
        u[:, -1] *= -1
        m = u @ vt
    return m
