"""Franka Research 3 driver through franky-control (bundled libfranka), implementing hardware.interfaces.Arm.

Chunk execution
    ``execute(chunk, now)`` takes the chunk's FR3 columns with waypoint times relative to ``now`` (the current time
    on the chunk's clock; ``hardware.interfaces.arm_waypoints``). Every chunk becomes one franky
    ``JointWaypointMotion`` (joint-position control signal, Ruckig-planned, run by franky's 1 kHz control thread)
    started with ``robot.move(motion, asynchronous=True)``. Waypoint i gets
    ``minimum_time`` = t[i] - t[i-1] (ms resolution; cumulative rounding so the chunk does not drift) and, with
    ``ChunkInterpolation.VIA_VELOCITY``, a pass-through velocity from the central difference of its neighbours
    (the robot's current commanded position counts as the point at t = 0; zero at the last waypoint, so a chunk
    that is not followed by another ends at rest and the arm holds there). Each waypoint also gets
    ``max_total_duration`` = its segment, and an untimed waypoint at the final target closes the motion; so the
    chunk keeps its schedule when 1 kHz cycles are missed (see ``_build_motion``). Via-point speeds are scaled down
    (direction kept, positions untouched) to ``via_velocity_fraction`` of franky's effective velocity limits,
    because Ruckig refuses target velocities above them.

    A new chunk is sent the same way while the old one runs: franky hands control to the new motion in the next
    1 kHz cycle, starting from the current commanded position/velocity/acceleration, so the arm does not stop
    (same control-signal type, joint positions, throughout). ``hold()`` sends a ``JointMotion`` (also joint
    positions) to where the joints come to rest braking together within the hold's limits, so the arm decelerates
    along its path (franky's own ``JointStopMotion`` would drive back to the pose at the call); after it the robot
    idles and holds its position.

Safety
    Every chunk passes ``ArmSafetyGate`` (joint limits, velocity, step size, workspace) against the measured
    joint positions before anything is sent; a violation raises SafetyViolation and sends nothing.

Errors
    Exceptions from franky's control thread (libfranka ``ControlException`` on reflexes / aborted or preempted
    moves, planner failures, network loss) are picked up on every call (``join_motion(0)``), kept, reported in
    ``ArmState.in_error`` / ``error_message``, and make ``execute`` raise DeviceError with the franky message
    until ``recover()`` (``robot.recover_from_errors()``) succeeds. A lost connection (libfranka NetworkException,
    e.g. no robot state for 1 s) is recovered by reconnecting with the same configuration.

Note: franky 2.0.0's ``poll_motion()`` returns True once the motion has *finished* (its docstring says the
opposite); this driver uses ``join_motion(0.0)``, whose return value is documented and observed the same way.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import franky
import numpy as np

from embodiment import ARM_DOF
from hardware.franka.config import ChunkInterpolation, FrankaArmConfig, RealtimeMode
from hardware.franka.safety import ArmSafetyGate
from hardware.interfaces import Arm, ArmState, DeviceError, DeviceTimeout, SafetyViolation, arm_waypoints
from jala_runtime.chunk import TimedChunk

log = logging.getLogger(__name__)


@dataclass
class MotionRecord:
    """Bookkeeping of the latest motion sent: when it was submitted and (with ``record_motion_start``) when
    franky's control thread ran its first cycle."""

    kind: str
    submitted: float  # time.monotonic() just before robot.move
    returned: float = 0.0  # time.monotonic() when robot.move returned
    started: float | None = None  # time.monotonic() of the motion's first control cycle
    started_robot_time: float | None = None  # robot clock [s] of that cycle


def braking_targets(q: np.ndarray, dq: np.ndarray, ddq: np.ndarray, max_acc: np.ndarray,
                    max_jerk: np.ndarray) -> tuple[np.ndarray, float]:
    """Where each joint of an arm at (q, dq, ddq) comes to rest when all of them brake together, and when.

    A joint brakes fastest by jerking its acceleration down to -max_acc, holding it, and jerking back to zero
    (below max_acc^2 / max_jerk, a pure jerk profile), after first jerking away any acceleration along its motion.
    That takes it T_i. The slowest joint sets the common stopping time T, and every joint's target is then as far
    ahead as a smooth decelerating profile of length T carries it, v * T / 2 (exact for the slowest joint): a
    synchronising planner (Ruckig, in franky) stretches the other joints' profiles to T without reversing them."""
    q, dq, ddq = (np.asarray(x, dtype=np.float64) for x in (q, dq, ddq))
    sign = np.sign(dq)
    speed = np.abs(dq)
    a0 = np.clip(ddq * sign, 0.0, max_acc)  # acceleration along the motion, jerked away first
    t1 = a0 / max_jerk
    d1 = speed * t1 + a0 * t1**2 / 2 - max_jerk * t1**3 / 6
    v1 = speed + a0**2 / (2 * max_jerk)
    t_brake = np.where(v1 >= max_acc**2 / max_jerk, v1 / max_acc + max_acc / max_jerk, 2 * np.sqrt(v1 / max_jerk))
    stop_time = float(np.max(t1 + t_brake)) if q.size else 0.0
    distance = np.where(speed > 0, d1 + v1 * (stop_time - t1) / 2, 0.0)
    return q + sign * distance, stop_time


def _fmt_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _link_lost(message: str) -> bool:
    """Whether an error text means the libfranka connection is gone (so only reconnecting can recover)."""
    return any(k in message for k in ("NetworkException", "Net Exception", "UDP receive", "TCP send", "TCP receive"))


@contextlib.contextmanager
def _keep_thread_scheduling():
    """Give the calling thread its scheduling policy back after franky/libfranka touched it.

    libfranka's Robot constructor raises the *calling* thread to SCHED_FIFO at the highest priority whenever it
    may (as root, even with RealtimeConfig.Ignore). Every thread started later from that thread (the ROS
    executor, camera/SDK threads, torch workers) would inherit it, and busy threads at real-time priority
    starve everything else on the machine. libfranka raises its own control-loop thread when a motion runs, so
    the caller does not need the elevated priority.
    """
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # not Linux
        yield
        return
    try:
        yield
    finally:
        try:
            if os.sched_getscheduler(0) != policy or os.sched_getparam(0).sched_priority != param.sched_priority:
                os.sched_setscheduler(0, policy, param)
        except OSError as exc:
            log.warning("could not restore the thread's scheduling policy after connecting: %s", exc)


class FrankaArm(Arm):
    def __init__(self, config: FrankaArmConfig | None = None):
        self.config = config if config is not None else FrankaArmConfig()
        self.gate = ArmSafetyGate(self.config.safety)
        self._robot: franky.Robot | None = None
        self._lock = threading.RLock()
        self._error = ""
        self._via_cap = np.full(ARM_DOF, np.inf)
        self.last_motion: MotionRecord | None = None
        self.motions_sent = 0

    # ------------------------------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        return self._robot is not None

    @property
    def robot(self) -> franky.Robot:
        """The franky Robot (advanced use: model, Desk, fault injection in tests)."""
        return self._require()

    def connect(self) -> None:
        cfg = self.config
        with self._lock:
            if self._robot is not None:
                return
            rt = franky.RealtimeConfig.Enforce if cfg.realtime == RealtimeMode.ENFORCE else franky.RealtimeConfig.Ignore
            try:
                with _keep_thread_scheduling():
                    robot = franky.Robot(cfg.robot_ip, relative_dynamics_factor=float(cfg.relative_dynamics_factor),
                                         realtime_config=rt)
            except Exception as exc:  # franky.NetworkException, IncompatibleVersionException, RealtimeException
                raise DeviceError(f"FR3 at {cfg.robot_ip}: could not connect ({_fmt_exc(exc)})") from exc
            try:
                robot.set_collision_behavior([float(v) for v in cfg.collision_torque_thresholds],
                                             [float(v) for v in cfg.collision_force_thresholds])
                vmax = np.asarray(robot.joint_velocity_limit.get(), dtype=np.float64).reshape(ARM_DOF)
            except Exception as exc:
                raise DeviceError(f"FR3 at {cfg.robot_ip}: setup after connect failed ({_fmt_exc(exc)})") from exc
            self._via_cap = vmax * cfg.relative_dynamics_factor * cfg.via_velocity_fraction
            self._robot = robot
            self._error = ""
            log.info("connected to FR3 at %s (realtime %s, dynamics %.2f)", cfg.robot_ip, cfg.realtime.value,
                     cfg.relative_dynamics_factor)

    def disconnect(self) -> None:
        with self._lock:
            if self._robot is None:
                return
            try:
                if not self._poll():
                    self.hold()
            except DeviceError as exc:
                log.warning("hold before disconnect failed: %s", exc)
            finally:
                self._robot = None  # franky closes the connection when the Robot is destroyed

    def _require(self) -> franky.Robot:
        if self._robot is None:
            raise DeviceError("FR3 is not connected; call connect() first")
        return self._robot

    # ------------------------------------------------------------------------------------------ errors
    def _poll(self) -> bool:
        """Collect an exception from franky's control thread, if any. True when the arm is in error."""
        robot = self._require()
        try:
            robot.join_motion(0.0)
        except Exception as exc:  # ControlException (reflex, aborted/preempted move), planner errors, network
            self._error = _fmt_exc(exc)
            log.error("FR3 motion failed: %s", self._error)
        return bool(self._error)

    @property
    def error_message(self) -> str:
        return self._error

    def recover(self) -> None:
        """Clear the error: ``robot.recover_from_errors()``. If the connection itself was lost (libfranka
        NetworkException, e.g. no robot state for 1 s), reconnect first with the same configuration."""
        with self._lock:
            robot = self._require()
            self._poll()  # drain a pending exception so it cannot resurface after recovery
            previous = self._error
            if _link_lost(previous):
                robot = self._reconnect(previous)
            try:
                ok = robot.recover_from_errors()
            except Exception as exc:
                if not _link_lost(_fmt_exc(exc)):
                    raise DeviceError(f"FR3 error recovery failed ({_fmt_exc(exc)}); previous error: {previous}") \
                        from exc
                robot = self._reconnect(_fmt_exc(exc))
                try:
                    ok = robot.recover_from_errors()
                except Exception as exc2:
                    raise DeviceError(f"FR3 error recovery failed after reconnecting ({_fmt_exc(exc2)})") from exc2
            if not ok or robot.has_errors:
                raise DeviceError(f"FR3 error recovery did not clear the errors: {robot.state.current_errors}")
            log.info("FR3 recovered from: %s", previous or "no error")
            self._error = ""

    def _reconnect(self, reason: str) -> franky.Robot:
        log.warning("FR3 connection lost (%s); reconnecting to %s", reason, self.config.robot_ip)
        self._robot = None  # drop the dead connection (franky closes it on destruction)
        try:
            self.connect()
        except DeviceError as exc:
            self._robot = None
            raise DeviceError(f"{exc}; the connection had been lost ({reason}), connect() again") from exc
        return self._require()

    # ------------------------------------------------------------------------------------------ state
    def read_state(self) -> ArmState:
        with self._lock:
            robot = self._require()
            self._poll()
            try:
                s = robot.state
                has_errors = robot.has_errors
            except Exception as exc:
                if not self._error:
                    self._error = _fmt_exc(exc)
                raise DeviceError(f"FR3 state read failed ({_fmt_exc(exc)}); arm error: {self._error}") from exc
            msg = self._error
            if has_errors and not msg:
                msg = f"robot reports errors: {s.current_errors}"
            return ArmState(
                q=np.asarray(s.q, dtype=np.float64).reshape(ARM_DOF).copy(),
                dq=np.asarray(s.dq, dtype=np.float64).reshape(ARM_DOF).copy(),
                ee_pose=np.asarray(s.O_T_EE.matrix, dtype=np.float64).reshape(4, 4).copy(),
                tau_ext=np.asarray(s.tau_ext_hat_filtered, dtype=np.float64).reshape(ARM_DOF).copy(),
                stamp=time.monotonic(),
                in_error=bool(msg),
                error_message=msg,
            )

    def motion_finished(self) -> bool:
        """True when no motion is running (the last chunk was reached, hold() completed, or it failed)."""
        with self._lock:
            robot = self._require()
            try:
                return bool(robot.join_motion(0.0))
            except Exception as exc:
                self._error = _fmt_exc(exc)
                return True

    # ------------------------------------------------------------------------------------------ commands
    def execute(self, chunk: TimedChunk, now: float) -> None:
        if not isinstance(chunk, TimedChunk):
            raise TypeError(f"execute() needs a TimedChunk, got {type(chunk).__name__}")
        rel_times, positions = arm_waypoints(chunk, now)  # ChunkError: no FR3 columns, or nothing ahead of now
        cfg = self.config
        with self._lock:
            robot = self._require()
            if self._poll():
                raise DeviceError(f"FR3 is in error ({self._error}); call recover() first")
            try:
                s = robot.state
                has_errors = robot.has_errors
            except Exception as exc:
                self._error = self._error or _fmt_exc(exc)
                raise DeviceError(f"FR3 state read failed ({_fmt_exc(exc)})") from exc
            if has_errors:  # e.g. a reflex while no motion was running
                raise DeviceError(f"FR3 reports errors ({s.current_errors}); call recover() first")
            q_meas = np.asarray(s.q, dtype=np.float64).reshape(ARM_DOF)
            q_cmd = np.asarray(s.q_d, dtype=np.float64).reshape(ARM_DOF)
            # the gate sees the times that will actually be executed (time_scale applied)
            times, pos = self.gate.check(rel_times * cfg.time_scale, positions, q_meas)
            motion = self._build_motion(times, pos, q_cmd)
            self._send(motion, "chunk")

    def _build_motion(self, times: np.ndarray, pos: np.ndarray, q_start: np.ndarray) -> franky.JointWaypointMotion:
        ms = np.rint(times * 1000.0).astype(np.int64)
        seg_ms = np.diff(np.concatenate([[0], ms]))
        if np.any(seg_ms < 1):
            i = int(np.argmin(seg_ms))
            raise SafetyViolation(f"waypoint {i} is less than 1 ms after the previous one (franky's resolution)")
        vel = np.zeros_like(pos)
        if self.config.interpolation == ChunkInterpolation.VIA_VELOCITY and pos.shape[0] > 1:
            P = np.vstack([q_start, pos])
            T = np.concatenate([[0.0], times])
            vel[:-1] = (P[2:] - P[:-2]) / (T[2:] - T[:-2])[:, None]
            over = np.max(np.abs(vel) / self._via_cap, axis=1)
            scale = np.where(over > 1.0, 1.0 / np.maximum(over, 1e-12), 1.0)
            vel *= scale[:, None]
        # Each timed waypoint hands over to the next at its nominal time (max_total_duration) even when franky has
        # not called it reached: after a missed 1 kHz cycle franky extrapolates the state and Ruckig re-plans the
        # segment with its full minimum_time from that moment, so under frequent misses a segment would never finish
        # and the arm would crawl. A last, untimed waypoint at the final target then brings the arm to rest there.
        waypoints = [
            franky.JointWaypoint(franky.JointState(pos[i].astype(np.float64), vel[i].astype(np.float64)),
                                 minimum_time=franky.Duration(int(seg_ms[i])),
                                 max_total_duration=franky.Duration(int(seg_ms[i])))
            for i in range(pos.shape[0])
        ]
        waypoints.append(franky.JointWaypoint(franky.JointState(pos[-1].astype(np.float64), np.zeros(ARM_DOF))))
        return franky.JointWaypointMotion(waypoints, return_when_finished=True)

    def _stop_motion(self, robot: franky.Robot) -> franky.JointMotion:
        """Brake along the current path and rest where the joints come to a stop.

        franky's JointStopMotion targets the pose at the moment of the call (a relative zero), so a moving arm
        overshoots that pose and then drives back to it: 0.08 rad out and back on a joint moving at 0.57 rad/s in
        franky-sim. Here the target is where the joints come to rest braking together under the hold's limits
        (``braking_targets``), at zero velocity, so the arm decelerates along its path."""
        f = float(self.config.hold_dynamics_factor) * float(self.config.relative_dynamics_factor)
        acc = f * np.asarray(robot.joint_acceleration_limit.get(), dtype=np.float64).reshape(ARM_DOF)
        jerk = f * np.asarray(robot.joint_jerk_limit.get(), dtype=np.float64).reshape(ARM_DOF)
        state = robot.state
        q, dq, ddq = (np.asarray(x, dtype=np.float64).reshape(ARM_DOF) for x in (state.q_d, state.dq_d, state.ddq_d))
        target, _ = braking_targets(q, dq, ddq, acc, jerk)
        return franky.JointMotion(franky.JointState(target, np.zeros(ARM_DOF)),
                                  relative_dynamics_factor=float(self.config.hold_dynamics_factor))

    def _send(self, motion, kind: str) -> MotionRecord:
        cfg = self.config
        robot = self._require()
        rec = MotionRecord(kind=kind, submitted=0.0)
        if cfg.record_motion_start:
            def first_cycle(state, _dt, _rel, _abs, _signal, rec=rec):
                if rec.started is None:
                    rec.started = time.monotonic()
                    rec.started_robot_time = state.time.to_sec()
            motion.register_callback(first_cycle)
        rec.submitted = time.monotonic()
        try:
            robot.move(motion, asynchronous=True, limit_rate=bool(cfg.limit_rate),
                       cutoff_frequency=float(cfg.cutoff_frequency))
        except Exception as exc:
            self._error = _fmt_exc(exc)
            raise DeviceError(f"FR3 refused the {kind} motion ({self._error})") from exc
        rec.returned = time.monotonic()
        self.last_motion = rec
        self.motions_sent += 1
        return rec

    def hold(self, wait: bool = True) -> None:
        """Decelerate to rest along the current path (preempting any chunk) and hold there. With ``wait`` returns once
        the arm is at rest; DeviceTimeout if that takes longer than ``hold_timeout_s``. In error the robot has
        already stopped (reflex), so nothing is sent."""
        cfg = self.config
        with self._lock:
            robot = self._require()
            if self._poll():
                log.warning("hold(): FR3 is in error (%s); the robot stopped itself, nothing sent", self._error)
                return
            self._send(self._stop_motion(robot), "stop")
        if not wait:
            return
        # Wait outside the lock so read_state() from other threads keeps working meanwhile.
        try:
            done = robot.join_motion(float(cfg.hold_timeout_s))
        except Exception as exc:
            self._error = _fmt_exc(exc)
            raise DeviceError(f"FR3 failed while stopping ({self._error})") from exc
        if self._error:
            raise DeviceError(f"FR3 failed while stopping ({self._error})")
        if not done:
            raise DeviceTimeout(f"FR3 did not come to rest within {cfg.hold_timeout_s:.1f} s")
