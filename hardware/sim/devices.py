"""The simulated devices: SimArm, SimHand and SimCamera implement hardware.interfaces (Arm, Hand, Camera) on a
SimWorld, with the same safety checks and error behaviour as the real drivers."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from embodiment import HAND_DOF
from hardware.franka.safety import ArmSafetyGate, ArmSafetyLimits
from hardware.interfaces import (
    Arm, ArmState, Camera, CameraFrame, CameraIntrinsics, DeviceError, DeviceTimeout, Hand, HandState,
    SafetyViolation, arm_waypoints,
)
from jala_runtime.chunk import TimedChunk

from .scene import HAND_CLOSED_ANGLE, camera_fovy

if TYPE_CHECKING:
    from .world import SimWorld


class _SimDevice:
    """Connection state shared by the simulated arm and hand: both are views of one SimWorld."""

    label = "device"

    def __init__(self, world: "SimWorld"):
        self._w = world
        self.connected = True

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def _require(self):
        if not self.connected:
            raise DeviceError(f"simulated {self.label} is disconnected; call connect() first")
        if self._w.closed:
            raise DeviceError("simulated world is closed")


class SimArm(_SimDevice, Arm):
    """FR3 in the simulator. Chunks are checked like a real arm's safety gate before anything is sent."""

    label = "arm"

    def __init__(self, world: "SimWorld"):
        super().__init__(world)
        self._gate = ArmSafetyGate(ArmSafetyLimits(velocity_scale=world.config.arm_velocity_margin))

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

    def check(self, times: np.ndarray, positions: np.ndarray, q_measured: np.ndarray) -> None:
        """Raise SafetyViolation when the waypoints (``times`` relative to now, (N, 7) ``positions``) break a limit:
        the FR3 driver's own ArmSafetyGate (joint position limits with margin, joint speeds, per-step and first-step
        size from the measured position, horizon)."""
        self._gate.check(times, positions, q_measured)

    def execute(self, chunk: TimedChunk, now: float) -> None:
        """Start ``chunk``'s FR3 columns; ``now`` is the current time on the chunk's clock (the world's sim time in
        the evaluation loop). The waypoints are played from the current sim time at their offsets from ``now``.
        ChunkError when the chunk lacks an FR3 joint or its first waypoint is not after ``now``; SafetyViolation
        (nothing changes) when it breaks a limit."""
        self._require()
        times, positions = arm_waypoints(chunk, now)
        w = self._w
        with w.lock:
            self.check(times, positions, w.data.qpos[w.arm_qadr].copy())
            w.arm_ctrl.start(float(w.data.time), np.asarray(times, float), np.asarray(positions, float))

    def hold(self) -> None:
        self._require()
        w = self._w
        with w.lock:
            q = w.data.qpos[w.arm_qadr].copy()
            w.arm_ctrl.hold(q)
            w.data.ctrl[w.arm_act] = q  # now, not at the next control tick

    def recover(self) -> None:
        self._require()  # the simulated arm has no reflexes to recover from


class SimHand(_SimDevice, Hand):
    """Inspire-style hand: 0..1000 (1000 = open) mapped linearly onto each actuated joint's range, rate-limited
    like the real hand's speed setting."""

    label = "hand"
    force_per_nm = 1000.0 / (9.81 * 0.05)  # joint torque [Nm] -> grams-force at a 5 cm lever

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

