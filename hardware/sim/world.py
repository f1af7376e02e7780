"""SimWorld: the MuJoCo task world with devices that implement hardware.interfaces (Arm, Hand, Camera).

Two ways to run physics:
* manual: ``world.step(n)`` advances n physics steps (deterministic; used by evaluation and tests). Cameras
  render the current state when read.
* real time: ``world.start_realtime()`` runs physics in a background thread paced to the wall clock and a
  render thread that produces frames at ``camera_fps``; ``Camera.read(timeout)`` then blocks for the next
  frame, and ``Arm.execute`` returns at once while the chunk plays out, like the real devices.

The parts live next to it: ``config`` (SimWorldConfig, re-exported here), ``devices`` (SimArm, SimHand,
SimCamera), ``controllers`` (the arm and hand setpoint generators), ``grasp`` (GraspAssist), ``scene`` (the MJCF)
and ``tasks`` (objects, detectors, completion). Robot constants (READY_Q, joint limits) come from ``embodiment``.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")  # CPU default; set MUJOCO_GL=egl on a GPU machine

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from embodiment import ARM_JOINT_NAMES, HAND_DOF_NAMES, READY_Q  # noqa: E402
from hardware.interfaces import DeviceError  # noqa: E402

from .config import SimWorldConfig  # noqa: E402
from .controllers import ArmController, HandController  # noqa: E402
from .devices import SimArm, SimCamera, SimHand  # noqa: E402
from .grasp import GraspAssist  # noqa: E402
from .scene import HAND_ACTUATED_JOINTS, SceneSpec, build_scene_xml  # noqa: E402
from .tasks import TASK_CLASSES, Completion  # noqa: E402

__all__ = ["SimWorld", "SimWorldConfig"]

log = logging.getLogger(__name__)


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
        self.arm_qadr = np.array([m.joint(j).qposadr[0] for j in ARM_JOINT_NAMES])
        self.arm_dadr = np.array([m.joint(j).dofadr[0] for j in ARM_JOINT_NAMES])
        self.arm_act = np.array([m.actuator(j).id for j in ARM_JOINT_NAMES])
        self.hand_qadr = np.array([m.joint(j).qposadr[0] for j in HAND_ACTUATED_JOINTS])
        self.hand_act = np.array([m.actuator(f"hand_{n}").id for n in HAND_DOF_NAMES])
        self._kv_over_kp = -m.actuator_biasprm[self.arm_act, 2] / m.actuator_gainprm[self.arm_act, 0]
        self.grasp = GraspAssist(self, cfg.grasp_assist)
        self.arm_ctrl = ArmController(np.asarray(READY_Q))
        self.hand_ctrl = HandController(cfg.hand_full_travel_s)
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
            self.arm_ctrl = ArmController(np.asarray(READY_Q))
            self.hand_ctrl = HandController(self.config.hand_full_travel_s)
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
