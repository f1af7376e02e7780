"""SimWorld: the MuJoCo task world with devices that implement hardware.interfaces (Arm, Hand, Camera).

Two ways to run physics:
* manual: ``world.step(n)`` advances n physics steps (deterministic; used by evaluation and tests). Cameras
  render the current state when read.
* real time: ``world.start_realtime()`` runs physics in a background thread paced to the wall clock and a
  render thread that produces frames at ``camera_fps``; ``Camera.read(timeout)`` then blocks for the next
  frame, and ``Arm.execute`` returns at once while the chunk plays out, like the real devices.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "osmesa")  # CPU default; set MUJOCO_GL=egl on a GPU machine

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from hardware.franka import safety as _safety  # noqa: E402
from hardware.franka.safety import ArmSafetyGate, ArmSafetyLimits  # noqa: E402
from hardware.interfaces import (  # noqa: E402
    HAND_DOF, Arm, ArmState, Camera, CameraFrame, CameraIntrinsics, DeviceError, DeviceTimeout, Hand,
    HandState, JointTrajectoryChunk, SafetyViolation,
)

from .scene import (  # noqa: E402
    ARM_JOINTS, HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE, TASKS, VARIANTS, SceneSpec, build_scene_xml,
    camera_fovy,
)
from .tasks import TASK_CLASSES, Completion  # noqa: E402

log = logging.getLogger(__name__)

# FR3 datasheet limits, shared with the real arm's safety gate (hardware/franka/safety.py)
FR3_Q_MIN = np.array(_safety.FR3_Q_MIN)
FR3_Q_MAX = np.array(_safety.FR3_Q_MAX)
FR3_DQ_MAX = np.array(_safety.FR3_DQ_MAX)  # rad/s

# Start posture: the FR3 "home" posture (flange pointing down, hand ~0.3 m above the table).
READY_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


@dataclass
class SimWorldConfig:
    task: str = "water_plant"
    variant: str = "seen"  # "seen" or "unseen"
    seed: int = 0
    render_width: int = 640
    render_height: int = 480
    camera_fps: float = 30.0
    timestep: float = 0.002  # physics step [s]
    realtime_factor: float = 1.0  # sim seconds per wall second in start_realtime()
    hand_full_travel_s: float = 0.8  # time for a hand DoF to travel 0..1000 (Inspire RH56: ~0.8-1 s)
    grasp_assist: bool = True  # weld a grasped object to the palm (see GraspAssist)
    render_depth: bool = False  # also render depth (metres) into CameraFrame.depth
    task_tick_steps: int = 5  # physics steps per control tick: servo setpoints, detectors, ink and grasp logic
    arm_velocity_margin: float = 1.0  # chunk joint speeds may reach this share of the FR3 velocity limits
    # start_realtime(): when physics falls further behind the wall clock than this (a starved CPU), the simulated
    # clock slips instead of fast-forwarding, so a chunk never plays out in a burst that holds cannot interrupt
    max_realtime_lag_s: float = 0.05
    # start_realtime() sets the interpreter's GIL switch interval (sys.setswitchinterval) to this until stop(); 0
    # leaves it alone. The default 5 ms lets busy Python threads (an rclpy executor, state publishers) keep the
    # physics thread off the GIL for 5 ms after every MuJoCo call, and physics then falls behind the wall clock
    realtime_switch_interval_s: float = 0.001

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {TASKS}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if self.render_width < 16 or self.render_height < 16:
            raise ValueError("render size must be at least 16x16")
        if self.camera_fps <= 0 or self.timestep <= 0 or self.realtime_factor <= 0:
            raise ValueError("camera_fps, timestep and realtime_factor must be positive")
        if not self.realtime_switch_interval_s >= 0:
            raise ValueError(f"realtime_switch_interval_s must be >= 0, got {self.realtime_switch_interval_s}")
        if not self.max_realtime_lag_s >= self.timestep:
            raise ValueError(f"max_realtime_lag_s must be at least one timestep ({self.timestep} s), "
                             f"got {self.max_realtime_lag_s}")


# ------------------------------------------------------------------------------------------ grasp assist
class GraspAssist:
    """Stands in for friction-limited grasp stability of primitive fingers: when the hand is commanded closed
    (mean of the pinky/ring/middle/thumb-bend targets below ``close_below``) and a hand geom touches a graspable
    body whose grasp point is within ``radius`` of the hand's grasp site, that body is welded to the palm at its
    current relative pose. Opening the hand (mean target above ``open_above``) releases it. Fingers still
    close and collide physically; only slip is removed."""

    close_below = 700.0
    position_only = ("drawer",)
    open_above = 850.0

    def __init__(self, world: "SimWorld", enabled: bool = True):
        self.world = world
        self.enabled = enabled
        m = world.model
        self.eq = {}
        for i in range(m.neq):
            name = m.equality(i).name
            if name.startswith("grasp_"):
                self.eq[name[len("grasp_"):]] = i
        self.hand_bodies = set()
        hb = m.body("hand_base").id
        for b in range(m.nbody):
            x = b
            while x != 0:
                if x == hb:
                    self.hand_bodies.add(b)
                    break
                x = m.body_parentid[x]
        self.radius = {"bottle": 0.09, "drawer": 0.08, "fruit1": 0.08, "fruit2": 0.09, "fruit3": 0.08,
                       "cloth": 0.09}
        self.held: str | None = None

    def holding(self, body: str) -> bool:
        return self.held == body

    def reset(self):
        self.release()

    def _grasp_point(self, body: str) -> np.ndarray:
        m, d = self.world.model, self.world.data
        if body == "drawer":
            return d.site_xpos[m.site("handle").id]
        return d.xipos[m.body(body).id]

    def _touching(self, body: str) -> bool:
        m, d = self.world.model, self.world.data
        bid = m.body(body).id
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            if (b1 == bid and b2 in self.hand_bodies) or (b2 == bid and b1 in self.hand_bodies):
                return True
            # bodies attached to the object (e.g. the bottle trigger) count as the object
            if (m.body_parentid[b1] == bid and b2 in self.hand_bodies) or \
               (m.body_parentid[b2] == bid and b1 in self.hand_bodies):
                return True
        return False

    def update(self):
        if not self.enabled:
            return
        w = self.world
        m, d = w.model, w.data
        t = w.hand_ctrl.target
        grip = float(np.mean(t[[0, 1, 2, 4]]))
        if self.held is not None:
            if grip > self.open_above:
                self.release()
            return
        if grip > self.close_below:
            return
        site = d.site_xpos[m.site("grasp_site").id]
        for body, eq in self.eq.items():
            if np.linalg.norm(self._grasp_point(body) - site) > self.radius.get(body, 0.08):
                continue
            if not self._touching(body):
                continue
            self.attach(body)
            return

    def attach(self, body: str) -> None:
        """Weld ``body`` to the palm at its current relative pose (what a successful grasp does)."""
        m, d = self.world.model, self.world.data
        if body not in self.eq:
            raise ValueError(f"{body!r} is not graspable here; graspable: {sorted(self.eq)}")
        self.release()
        eq = self.eq[body]
        b1, b2 = m.body("hand_base").id, m.body(body).id
        r1 = d.xmat[b1].reshape(3, 3)
        rel_pos = r1.T @ (d.xpos[b2] - d.xpos[b1])
        q1inv = np.zeros(4)
        mujoco.mju_negQuat(q1inv, d.xquat[b1])
        rel_q = np.zeros(4)
        mujoco.mju_mulQuat(rel_q, q1inv, d.xquat[b2])
        # weld data: anchor (3, in body2), relpose pos (3), relpose quat (4), torquescale
        m.eq_data[eq, 0:3] = 0.0
        m.eq_data[eq, 3:6] = rel_pos
        m.eq_data[eq, 6:10] = rel_q
        # articulated objects (the drawer) are held by position only, so the grip does not fight the slide
        m.eq_data[eq, 10] = 0.0 if body in self.position_only else 1.0
        d.eq_active[eq] = 1
        self.held = body

    def release(self) -> None:
        for i in self.eq.values():
            self.world.data.eq_active[i] = 0
        self.held = None


# -------------------------------------------------------------------------------------------- controllers
class _ArmController:
    """Joint-space setpoint generator: linear interpolation through the timed waypoints of the current chunk
    (from the setpoint at the moment it was accepted), holding the last waypoint afterwards."""

    def __init__(self, q0: np.ndarray):
        self.setpoint = q0.copy()
        self.velocity = np.zeros_like(q0)  # of the setpoint (feed-forward for the joint servos)
        self.t0 = 0.0
        self.times: np.ndarray | None = None
        self.knots: np.ndarray | None = None

    def start(self, t_now: float, times: np.ndarray, positions: np.ndarray):
        self.t0 = t_now
        self.times = np.concatenate([[0.0], times])
        self.knots = np.vstack([self.setpoint[None], positions])

    def hold(self, q: np.ndarray):
        self.times = None
        self.knots = None
        self.setpoint = q.copy()
        self.velocity = np.zeros_like(q)

    @property
    def active(self) -> bool:
        return self.times is not None

    def update(self, t_now: float) -> np.ndarray:
        if self.times is None:
            self.velocity[:] = 0.0
            return self.setpoint
        tau = t_now - self.t0
        if tau >= self.times[-1]:
            self.setpoint = self.knots[-1].copy()
            self.velocity[:] = 0.0
            self.times = None
            self.knots = None
            return self.setpoint
        k = int(np.searchsorted(self.times, tau, side="right")) - 1
        k = max(0, min(k, len(self.times) - 2))
        a = (tau - self.times[k]) / (self.times[k + 1] - self.times[k])
        self.setpoint = (1 - a) * self.knots[k] + a * self.knots[k + 1]
        self.velocity = (self.knots[k + 1] - self.knots[k]) / (self.times[k + 1] - self.times[k])
        return self.setpoint


class _HandController:
    def __init__(self, full_travel_s: float):
        self.target = np.full(HAND_DOF, 1000.0)
        self.command = np.full(HAND_DOF, 1000.0)  # rate-limited internal target
        self.rate = np.full(HAND_DOF, 1000.0 / full_travel_s)  # units per second, per DoF

    def update(self, dt: float) -> np.ndarray:
        step = self.rate * dt
        self.command += np.clip(self.target - self.command, -step, step)
        return (1.0 - self.command / 1000.0) * HAND_CLOSED_ANGLE


# ---------------------------------------------------------------------------------------------- devices
class SimArm(Arm):
    """FR3 in the simulator. Chunks are checked like a real arm's safety gate before anything is sent."""

    def __init__(self, world: "SimWorld"):
        self._w = world
        self.connected = True
        self._gate = ArmSafetyGate(ArmSafetyLimits(velocity_scale=world.config.arm_velocity_margin))

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def _require(self):
        if not self.connected:
            raise DeviceError("simulated arm is disconnected; call connect() first")
        if self._w.closed:
            raise DeviceError("simulated world is closed")

    def read_state(self) -> ArmState:
        self._require()
        w = self._w
        with w.lock:
            q = w.data.qpos[w.arm_qadr].copy()
            dq = w.data.qvel[w.arm_dadr].copy()
            tau_ext = -w.data.qfrc_constraint[w.arm_dadr].copy()
            ee = np.eye(4)
            bid = w.model.body("hand_base").id
            ee[:3, :3] = w.data.xmat[bid].reshape(3, 3)
            ee[:3, 3] = w.data.xpos[bid]
        return ArmState(q=q, dq=dq, ee_pose=ee, tau_ext=tau_ext, stamp=time.monotonic())

    def check(self, chunk: JointTrajectoryChunk, q_measured: np.ndarray) -> None:
        """Raise SafetyViolation when ``chunk`` breaks a limit: the FR3 driver's own ArmSafetyGate (joint position
        limits with margin, joint speeds, per-step and first-step size from the measured position, horizon)."""
        self._gate.check(chunk.times, chunk.positions, q_measured)

    def execute(self, chunk: JointTrajectoryChunk) -> None:
        self._require()
        w = self._w
        with w.lock:
            self.check(chunk, w.data.qpos[w.arm_qadr].copy())
            w.arm_ctrl.start(float(w.data.time), np.asarray(chunk.times, float), np.asarray(chunk.positions, float))

    def hold(self) -> None:
        self._require()
        w = self._w
        with w.lock:
            q = w.data.qpos[w.arm_qadr].copy()
            w.arm_ctrl.hold(q)
            w.data.ctrl[w.arm_act] = q  # now, not at the next control tick

    def recover(self) -> None:
        self._require()  # the simulated arm has no reflexes to recover from


class SimHand(Hand):
    """Inspire-style hand: 0..1000 (1000 = open) mapped linearly onto each actuated joint's range, rate-limited
    like the real hand's speed setting."""

    force_per_nm = 1000.0 / (9.81 * 0.05)  # joint torque [Nm] -> grams-force at a 5 cm lever

    def __init__(self, world: "SimWorld"):
        self._w = world
        self.connected = True

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def _require(self):
        if not self.connected:
            raise DeviceError("simulated hand is disconnected; call connect() first")
        if self._w.closed:
            raise DeviceError("simulated world is closed")

    def _angles(self) -> np.ndarray:
        w = self._w
        q = w.data.qpos[w.hand_qadr]
        return np.clip((1.0 - q / HAND_CLOSED_ANGLE) * 1000.0, 0.0, 1000.0)

    def read_state(self) -> HandState:
        self._require()
        w = self._w
        with w.lock:
            angles = self._angles()
            torque = w.data.actuator_force[w.hand_act].copy()
            target = w.hand_ctrl.target.copy()
            command = w.hand_ctrl.command.copy()
        forces = np.abs(torque) * self.force_per_nm
        status = []
        for a, t, c, f in zip(angles, target, command, forces):
            if abs(a - t) <= 20.0:
                status.append("position_reached")
            elif abs(c - t) < 1e-6 and f > 150.0:
                status.append("force_reached")
            elif t > a:
                status.append("releasing")
            else:
                status.append("grasping")
        currents = 15.0 + 0.6 * forces
        return HandState(angles=angles, forces=forces, currents=currents, status=tuple(status),
                         errors=tuple(frozenset() for _ in range(HAND_DOF)), temperatures=np.full(HAND_DOF, 32.0),
                         stamp=time.monotonic())

    def set_angles(self, angles: np.ndarray) -> None:
        self._require()
        a = np.asarray(angles, dtype=np.float64)
        if a.shape != (HAND_DOF,):
            raise SafetyViolation(f"hand targets need shape ({HAND_DOF},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise SafetyViolation("hand targets contain NaN or inf")
        if np.any(a < 0.0) or np.any(a > 1000.0):
            raise SafetyViolation(f"hand targets must be within 0..1000, got {a.tolist()}")
        with self._w.lock:
            self._w.hand_ctrl.target = a.copy()

    def hold(self) -> None:
        self._require()
        with self._w.lock:
            a = self._angles()
            self._w.hand_ctrl.target = a.copy()
            self._w.hand_ctrl.command = a.copy()

    def clear_errors(self) -> None:
        self._require()


class SimCamera(Camera):
    """Offscreen MuJoCo camera with L515-like intrinsics (70 deg horizontal FoV, square pixels)."""

    def __init__(self, world: "SimWorld", name: str):
        self._w = world
        self.name = name
        self.connected = True
        w, h = world.config.render_width, world.config.render_height
        _, f = camera_fovy(w, h)
        self.intrinsics = CameraIntrinsics(width=w, height=h, fx=f, fy=f, cx=w / 2.0, cy=h / 2.0)
        self._cond = threading.Condition()
        self._latest: CameraFrame | None = None
        self._last_returned = -1
        self._count = 0

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def extrinsics(self) -> np.ndarray:
        """T_world_camera (4x4) in the OpenCV convention (x right, y down, z forward)."""
        w = self._w
        with w.lock:
            cid = w.model.camera(self.name).id
            rot = w.data.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
            pos = w.data.cam_xpos[cid].copy()
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = rot, pos
        return t

    def _publish(self, color, depth, stamp):
        with self._cond:
            self._count += 1
            self._latest = CameraFrame(color=color, timestamp=stamp, frame_number=self._count,
                                       intrinsics=self.intrinsics, depth=depth, received=time.monotonic())
            self._cond.notify_all()

    def read(self, timeout: float = 1.0) -> CameraFrame:
        if not self.connected:
            raise DeviceError(f"simulated camera {self.name} is disconnected")
        w = self._w
        if w.closed:
            raise DeviceError("simulated world is closed")
        if not w.realtime:
            color, depth, stamp = w.render(self.name)
            self._publish(color, depth, stamp)
            with self._cond:
                self._last_returned = self._latest.frame_number
                return self._latest
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.frame_number <= self._last_returned:
                left = deadline - time.monotonic()
                if left <= 0 or not w.realtime:
                    raise DeviceTimeout(f"no frame from {self.name} within {timeout:.3f} s")
                self._cond.wait(left)
            self._last_returned = self._latest.frame_number
            return self._latest


# ------------------------------------------------------------------------------------------------ world
class SimWorld:
    def __init__(self, config: SimWorldConfig | None = None):
        self.config = config or SimWorldConfig()
        cfg = self.config
        self.lock = threading.RLock()
        self.closed = False
        self.realtime = False
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._renderers = threading.local()
        self._all_renderers: list = []

        task_cls = TASK_CLASSES[cfg.task]
        self.task = task_cls(self, cfg.variant)
        kwargs = self.task.scene_kwargs(np.random.default_rng(cfg.seed))
        xml = build_scene_xml(SceneSpec(cfg.task, cfg.variant, cfg.render_width, cfg.render_height, cfg.timestep),
                              **kwargs)
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.arm_qadr = np.array([m.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.arm_dadr = np.array([m.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.arm_act = np.array([m.actuator(j).id for j in ARM_JOINTS])
        self.hand_qadr = np.array([m.joint(j).qposadr[0] for j in HAND_ACTUATED_JOINTS])
        self.hand_act = np.array([m.actuator(f"hand_{n}").id for n in
                                  ("pinky", "ring", "middle", "index", "thumb_bend", "thumb_rotation")])
        self._kv_over_kp = -m.actuator_biasprm[self.arm_act, 2] / m.actuator_gainprm[self.arm_act, 0]
        self.grasp = GraspAssist(self, cfg.grasp_assist)
        self.arm_ctrl = _ArmController(READY_Q)
        self.hand_ctrl = _HandController(cfg.hand_full_travel_s)
        self.arm = SimArm(self)
        self.hand = SimHand(self)
        self.cameras: dict[str, SimCamera] = {n: SimCamera(self, n) for n in self.task.cameras}
        self._steps = 0
        self._tick_hooks: list = []
        self.realtime_slip_s = 0.0  # simulated time given up to keep within max_realtime_lag_s (see _physics_loop)
        self.realtime_slips = 0
        self._last_slip_log = float("-inf")
        self._saved_switch_interval: float | None = None
        self.reset(cfg.seed)

    # ------------------------------------------------------------------------------------------ episode
    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    @property
    def episode_seconds(self) -> float:
        return self.task.episode_seconds

    def reset(self, seed: int | None = None) -> None:
        """New episode: robot at the ready posture, hand open, objects placed from ``seed``."""
        seed = self.config.seed if seed is None else int(seed)
        with self.lock:
            mujoco.mj_resetData(self.model, self.data)
            self.data.qpos[self.arm_qadr] = READY_Q
            self.data.ctrl[self.arm_act] = READY_Q
            self.arm_ctrl = _ArmController(READY_Q)
            self.hand_ctrl = _HandController(self.config.hand_full_travel_s)
            self.grasp.reset()
            self.task.randomize(np.random.default_rng(seed))
            self.task.reset_progress()
            mujoco.mj_forward(self.model, self.data)
            # let objects settle on the table with the robot holding still
            self._advance(int(0.3 / self.model.opt.timestep))
            self.data.time = 0.0
            self.task.reset_progress()
            self._steps = 0

    def _advance(self, n: int) -> None:
        """Advance ``n`` physics steps (world lock held). Control runs in ticks of ``task_tick_steps`` steps: at the
        start of a tick the servo setpoints are taken at the tick's midpoint and held for the tick, which MuJoCo
        then runs in one ``mj_step(nstep=...)`` call; at its end the tick hooks, grasp logic and task detectors
        run. (One mj_step call per tick matters in real time: each call gives up the GIL and must win it back.)"""
        k = self.config.task_tick_steps
        dt = self.model.opt.timestep
        d = self.data
        while n > 0:
            phase = self._steps % k
            if phase == 0:
                # joint servos (MuJoCo position actuators: kp from fr3.xml, kv capped in scene.arm_servo_kv) with
                # velocity feed-forward: the kv term damps absolute joint velocity, so without it the arm would lag
                # a moving setpoint by kv/kp * velocity
                setpoint = self.arm_ctrl.update(float(d.time) + 0.5 * k * dt)
                d.ctrl[self.arm_act] = setpoint + self._kv_over_kp * self.arm_ctrl.velocity
                d.ctrl[self.hand_act] = self.hand_ctrl.update(k * dt)
            m = min(n, k - phase)
            mujoco.mj_step(self.model, d, nstep=m)
            self._steps += m
            n -= m
            if self._steps % k == 0:
                for hook in self._tick_hooks:
                    hook()
                self.grasp.update()
                self.task.tick()

    def step(self, n: int = 1) -> None:
        """Advance physics by ``n`` steps (``n * config.timestep`` seconds)."""
        if self.realtime:
            raise RuntimeError("step() is not available while the real-time loop runs; call stop() first")
        if self.closed:
            raise DeviceError("simulated world is closed")
        with self.lock:
            self._advance(int(n))

    def step_seconds(self, seconds: float) -> None:
        self.step(max(1, int(round(seconds / self.model.opt.timestep))))

    def add_tick_hook(self, fn) -> None:
        """Call ``fn()`` (with the world lock held) every ``task_tick_steps`` physics steps, e.g. to bridge a device
        emulator to the simulated devices."""
        with self.lock:
            self._tick_hooks.append(fn)

    def remove_tick_hook(self, fn) -> None:
        with self.lock:
            self._tick_hooks = [h for h in self._tick_hooks if h != fn]

    def forward(self) -> None:
        """Recompute derived quantities after editing qpos directly (tests)."""
        with self.lock:
            mujoco.mj_forward(self.model, self.data)

    def completion(self) -> Completion:
        with self.lock:
            return self.task.completion()

    def conditions(self) -> list[bool]:
        """Un-latched subtask detectors on the current state."""
        with self.lock:
            return self.task.conditions()

    # --------------------------------------------------------------------------------------- rendering
    def _renderer(self):
        r = getattr(self._renderers, "r", None)
        if r is None:
            r = mujoco.Renderer(self.model, self.config.render_height, self.config.render_width)
            self._renderers.r = r
            rd = None
            if self.config.render_depth:
                rd = mujoco.Renderer(self.model, self.config.render_height, self.config.render_width)
                rd.enable_depth_rendering()
            self._renderers.rd = rd
            self._all_renderers.append((r, rd))
        return r, self._renderers.rd

    def render(self, camera: str) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(RGB uint8 HxWx3, depth HxW float32 metres or None, sim time) from ``camera``."""
        r, rd = self._renderer()
        with self.lock:
            r.update_scene(self.data, camera)
            if rd is not None:
                rd.update_scene(self.data, camera)
            stamp = float(self.data.time)
        color = r.render().copy()
        depth = rd.render().astype(np.float32) if rd is not None else None
        return color, depth, stamp

    # ---------------------------------------------------------------------------------------- real time
    def start_realtime(self) -> None:
        """Run physics paced to the wall clock in a background thread, plus a camera thread at camera_fps. Lowers
        the GIL switch interval to ``config.realtime_switch_interval_s`` until stop() (see SimWorldConfig)."""
        if self.closed:
            raise DeviceError("simulated world is closed")
        if self.realtime:
            return
        self._stop.clear()
        self.realtime = True
        if self.config.realtime_switch_interval_s > 0:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_switch_interval, self.config.realtime_switch_interval_s))
        phys = threading.Thread(target=self._physics_loop, name="simworld-physics", daemon=True)
        cam = threading.Thread(target=self._camera_loop, name="simworld-cameras", daemon=True)
        self._threads = [phys, cam]
        for t in self._threads:
            t.start()

    # physics steps per hold of the world lock in real time: 10 x 2 ms keeps every other user of the lock (holds,
    # state reads, renders) waiting a few milliseconds at most
    _STEPS_PER_LOCK = 10

    def _physics_loop(self):
        dt = self.model.opt.timestep
        rate = self.config.realtime_factor
        max_lag = self.config.max_realtime_lag_s
        wall0, sim0 = time.perf_counter(), self.sim_time
        while not self._stop.is_set():
            target = sim0 + (time.perf_counter() - wall0) * rate
            lag = target - float(self.data.time)
            if lag > max_lag:  # starved of CPU: let the simulated clock slip rather than fast-forward
                slip = lag - max_lag
                sim0 -= slip
                target -= slip
                self.realtime_slip_s += slip
                self.realtime_slips += 1
                now = time.monotonic()
                if now - self._last_slip_log > 5.0:
                    self._last_slip_log = now
                    log.warning("simulated world: physics fell %.0f ms behind the wall clock (CPU starved); the "
                                "simulated clock slipped (%.2f s in total so far)", lag * 1e3, self.realtime_slip_s)
            with self.lock:
                n = min(self._STEPS_PER_LOCK, int((target - float(self.data.time)) / dt + 0.5))
                if n > 0:
                    self._advance(n)
            # sleep even when behind: threading locks are not fair, and a thread that re-acquires at once can keep
            # a waiting hold() or read_state() out for as long as it is behind
            time.sleep(0.0005 if n < self._STEPS_PER_LOCK else 0.0001)

    def _camera_loop(self):
        period = 1.0 / self.config.camera_fps
        next_t = time.perf_counter()
        while not self._stop.is_set():
            for cam in self.cameras.values():
                color, depth, stamp = self.render(cam.name)
                cam._publish(color, depth, stamp)
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_t = time.perf_counter()  # rendering is slower than camera_fps: run as fast as possible
        self._close_thread_renderers()

    def stop(self) -> None:
        """Stop the real-time threads (state is kept; step() works again)."""
        if not self.realtime:
            return
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        self.realtime = False
        if self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None
        for cam in self.cameras.values():
            with cam._cond:
                cam._cond.notify_all()

    def _close_thread_renderers(self):
        r = getattr(self._renderers, "r", None)
        if r is not None:
            for x in (r, self._renderers.rd):
                if x is not None:
                    x.close()
            self._all_renderers = [p for p in self._all_renderers if p[0] is not r]
            self._renderers.r = None

    def close(self) -> None:
        self.stop()
        self._close_thread_renderers()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------- observation
    def proprio(self) -> np.ndarray:
        """13-D robot state: 7 FR3 joint angles [rad] + 6 hand angles (0..1000)."""
        with self.lock:
            q = self.data.qpos[self.arm_qadr].copy()
            h = self.hand._angles()
        return np.concatenate([q, h])

    def images(self) -> list[np.ndarray]:
        return [cam.read().color for cam in self.cameras.values()]
